"""Installs that never replace what the user has: the extras name ranges, not pins, no clashing distribution,
no CUDA packages outside the 'cuda' extra; and the README's test command is the one CI runs."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")


def _extras():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _name(requirement):
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_extras_are_ranges_not_pins():
    for extra, reqs in _extras().items():
        for req in reqs:
            assert "==" not in req, f"[{extra}] pins {req}: a user's own version would be replaced"


def test_cuda_packages_only_in_the_cuda_extra():
    cuda = re.compile(r"^(numba-cuda|cuda-|nvidia-|cupy)")
    for extra, reqs in _extras().items():
        if extra != "cuda":
            assert not [r for r in reqs if cuda.match(_name(r))], f"[{extra}] installs CUDA packages"
    assert "numba-cuda" in {_name(r) for r in _extras()["cuda"]}


def test_boosting_installs_the_xgboost_users_have():
    names = {_name(r) for r in _extras()["boosting"]}
    assert "xgboost" in names and "xgboost-cpu" not in names  # the two distributions clash
    assert {_name(r) for r in _extras()["torch"]} == {"torch"}


def _readme_test_command():
    text = (ROOT / "README.md").read_text()
    commands = [line for line in text.splitlines() if line.startswith("python -m pip install")]
    assert len(commands) == 1, "the README shows one test command"
    return commands[0]


def _ci_test_command():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("python -m pip install"))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command).removesuffix("|| exit 1").strip()


def test_readme_and_ci_run_the_same_command():
    assert shlex.split(_readme_test_command()) == shlex.split(_ci_test_command())


def test_the_test_command_installs_the_cpu_torch_and_what_the_cuda_simulator_needs():
    words = shlex.split(_readme_test_command())
    install = words[: words.index("&&")]
    assert "torch==2.13.0" in install  # named, so that the resolver takes the CPU wheel the machine holds
    extras = next(w for w in install if w.startswith(".["))[2:-1].split(",")
    assert {"test", "torch", "cuda"} <= set(extras) and "boosting" not in extras  # boosting: xgboost pulls nccl
    assert "xgboost-cpu>=2" in install and "lightgbm>=4" in install
    assert "NUMBA_ENABLE_CUDASIM=1" in words
