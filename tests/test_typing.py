"""The typed public API: the committed stub is the one the registry generates, the package says it is typed,
user code type-checks against it (mypy on tests/typing/usage.py), and mistakes are caught (each
tests/typing/bad_*.py must fail on the line marked ``# E: <message>``)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"


def _gen_stubs():
    spec = importlib.util.spec_from_file_location("gen_stubs", ROOT / "tools" / "gen_stubs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stub_is_current():
    gen = _gen_stubs()
    assert gen.STUB.read_text() == gen.generate(), "run: python tools/gen_stubs.py"


def test_every_loss_has_typed_keyword_parameters():
    text = (ROOT / "src" / "fusedloss" / "__init__.pyi").read_text()
    for name, spec in REGISTRY.items():
        if name not in fl.__all__:
            continue  # losses defined at run time (fl.elementwise_loss) are not in the stub
        assert f"\n{name}: _Loss_{name}\n" in text
        block = text.split(f"class _Loss_{name}(Loss):", 1)[1].split("\nclass ", 1)[0]
        for p in spec.params:
            assert re.search(rf"\b{p.name}: [^=]+ = ", block), f"{name}.{p.name} missing from the stub"


def test_package_is_marked_typed():
    assert (ROOT / "src" / "fusedloss" / "py.typed").exists()


def _mypy(files, tmp_path_factory):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install '.[test]'")
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary", "--cache-dir", str(cache),
           "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", *map(str, files)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_usage_type_checks(tmp_path_factory):
    r = _mypy([ROOT / "src" / "fusedloss" / "__init__.pyi", TYPING / "usage.py"], tmp_path_factory)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mistakes_fail_to_type_check(tmp_path_factory):
    bad = sorted(TYPING.glob("bad_*.py"))
    assert len(bad) >= 3
    r = _mypy(bad, tmp_path_factory)
    assert r.returncode == 1, r.stdout + r.stderr
    for path in bad:
        lines = path.read_text().splitlines()
        marked = [(i + 1, line.split("# E:", 1)[1].strip()) for i, line in enumerate(lines) if "# E:" in line]
        assert marked, f"{path.name} marks no expected error"
        for lineno, message in marked:
            errors = [e for e in r.stdout.splitlines() if e.startswith(f"tests/typing/{path.name}:{lineno}: error")]
            assert any(message.lower() in e.lower() for e in errors), (path.name, lineno, message, r.stdout)


# --- fl.losses() -------------------------------------------------------------------------------------------


def test_losses_are_readable_and_still_dicts():
    listed = fl.losses()
    huber = next(info for info in listed if info.name == "huber")
    assert isinstance(huber, dict) and huber["params"] == huber.params == {"delta": 1.0}
    assert repr(huber) == f"<huber (elementwise): delta=1.0 - {REGISTRY['huber'].summary}>"
    text = repr(listed)
    assert text.count("\n") == len(listed) + 1 and "<mse (elementwise): no parameters" in text
    assert [info.name for info in listed] == list(REGISTRY)
