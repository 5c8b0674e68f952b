"""Smoke test of examples/: each script runs to the end in its quick mode (--quick) and prints what it promises.

The scripts run as subprocesses with the fusedloss under test on PYTHONPATH; one whose optional dependency
(torch, LightGBM, Dask) is missing is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

import fusedloss as fl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))

CASES = [
    ("numpy_softmax_regression.py", ("sklearn",),
     [r"epoch\s+2\s+train loss [0-9.]+\s+test accuracy 0\.\d+", r"time in the loss .* fusedloss .* NumPy-written"]),
    ("torch_mlp.py", ("torch", "sklearn"),
     [r"\[torch\s*\] epoch\s+2", r"\[fusedloss\] epoch\s+2", r"torch\s*: final train loss",
      r"fusedloss: final train loss .* median step", r"step time ratio"]),
    ("lightgbm_focal.py", ("lightgbm", "sklearn"),
     [r"native binary\s+[0-9.]+\s+0\.\d+", r"binary_focal \(alpha=0.25, gamma=2.0\)\s+[0-9.]+\s+0\.\d+"]),
    ("dask_out_of_core.py", ("dask", "distributed"),
     [r"step 1\s+loss 0\.\d+", r"step time: fld .* plain dask.array", r"peak memory per worker: \d+ MB, \d+ MB"]),
    ("custom_objective_lightgbm.py", ("lightgbm",),
     [r"fusedloss\s+objective per round\s+[0-9.]+ ms", r"NumPy\s+objective per round\s+[0-9.]+ ms",
      r"objective speed-up: [0-9.]+x; max \|prediction difference\| between the two models: 0\.00e\+00"]),
    ("numpy_custom_loss.py", (),
     [r"cauchy \(custom\)\s+final loss\s+[0-9.]+\s+max \|w - true w\| 0\.0", r"custom Cauchy vs NumPy-written"]),
]


@pytest.mark.parametrize("script, needs, expected", CASES, ids=[c[0] for c in CASES])
def test_example_runs(script, needs, expected):
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script} needs {module}, which is not installed")
    env = dict(os.environ, FUSEDLOSS_EXAMPLE_QUICK="1",
               PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--quick"], capture_output=True,
                            text=True, env=env, timeout=600, cwd=ROOT)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    for pattern in expected:
        assert re.search(pattern, result.stdout), f"{script}: no line matching {pattern!r} in:\n{result.stdout}"


def test_numpy_example_accuracy():
    """The NumPy example learns: the digits are separable enough for > 85% after 2 epochs of softmax regression."""
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("needs scikit-learn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "numpy_softmax_regression.py"), "--quick",
                             "--dtype", "float64"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    accuracies = [float(a) for a in re.findall(r"test accuracy (0\.\d+)", result.stdout)]
    assert accuracies and accuracies[-1] > 0.85, result.stdout
