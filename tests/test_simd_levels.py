"""Every SIMD level of the C++ backend that this build has and this CPU runs passes the C++ accuracy tests.

The level is chosen once, at import of fusedloss._core (FUSEDLOSS_SIMD=baseline|avx2|avx512|auto), so the
other levels run in subprocesses: the C++ cases of the reference, multiclass, thread and cross-check
modules, the same tests the level in use passes in this process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

core = pytest.importorskip("fusedloss._core", reason="C++ backend not built")

LEVELS = core.build_info().get("simd_levels", ["baseline"])
HERE = Path(__file__).parent
MODULES = ["test_backends.py", "test_multiclass.py", "test_threads.py", "test_crosscheck.py"]
LACKS = "this CPU lacks"


def _python(level, code):
    env = dict(os.environ, FUSEDLOSS_SIMD=level)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("level", [lv for lv in LEVELS if lv != core.simd()])
def test_other_level_passes_the_cpp_tests(level):
    probe = _python(level, "import fusedloss._core as c; print(c.simd())")
    if probe.returncode != 0 and LACKS in probe.stderr:
        pytest.skip(f"this CPU cannot run the {level} kernels")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == level
    env = dict(os.environ, FUSEDLOSS_SIMD=level)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-k", "cpp", "-p", "no:cacheprovider",
           "-p", "no:randomly", *[str(HERE / m) for m in MODULES]]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


GRADS = r"""
import json, sys
import numpy as np
import fusedloss as fl
rng = np.random.default_rng(3)
out = {}
for name in ("mse", "huber", "log_cosh", "binary_cross_entropy_with_logits"):
    for dt in ("float32", "float64"):
        p = rng.normal(0, 3, 10_007).astype(dt)
        y = (rng.random(10_007) < 0.5).astype(dt)
        v, g = getattr(fl, name).value_and_grad(p, y, backend="cpp")
        out[f"{name}/{dt}"] = [float(v), g.view(np.uint8).tobytes().hex()]
# the pairwise losses whose row is one element run as elementwise loops too (cpp/src/pairwise.cpp), weighted here
w = rng.uniform(0, 2, 10_007)
for name, third in (("margin_ranking", "target"), ("gaussian_nll", "var")):
    for dt in ("float32", "float64"):
        a, b = rng.normal(0, 3, (2, 10_007)).astype(dt)
        c = (rng.uniform(0, 2, 10_007) if third == "var" else rng.choice([-1.0, 1.0, 0.5], 10_007)).astype(dt)
        v, gs = getattr(fl, name).value_and_grad(a, b, c, sample_weight=w, backend="cpp")
        out[f"{name}/{dt}"] = [float(v), *(g.view(np.uint8).tobytes().hex() for g in gs)]
# the scans of the validation and of the weighted mean's divisor (reduce.hpp: block_sum, block_extremes)
import fusedloss._core as core
# float32 derivatives of a float64 call (a LightGBM objective's), rounded through the chunk buffers
p, y = rng.normal(0, 30, 10_007), (rng.random(10_007) < 0.5).astype(np.float64)
g32, h32 = np.empty(10_007, np.float32), np.empty(10_007, np.float32)
core.elementwise("binary_cross_entropy_with_logits", (2.0, 0.1), p, y, w, 1.0, False, None, g32, h32, 2)
out["float32 outputs"] = [g32.view(np.uint8).tobytes().hex(), h32.view(np.uint8).tobytes().hex()]
for dt in ("float32", "float64"):
    x = rng.uniform(0, 1e3, 100_003).astype(dt)
    x[::7919] = np.nan
    kept = x[x == x]
    out[f"scans/{dt}"] = [core.sum(kept, 1).hex(), core.sum(kept, 2).hex(), core.extremes(x, 1),
                          core.extremes_and_sum(kept, 2)[2].hex()]
print(json.dumps(out))
"""


def test_elementwise_results_are_the_same_bits_on_every_level():
    # -ffp-contract=off and the fixed-lane sum make each element the same IEEE operations on every level (the
    # elementwise losses, and the pairwise ones whose row is one element)
    results = {}
    for level in LEVELS:
        r = _python(level, GRADS)
        if r.returncode != 0 and LACKS in r.stderr:
            continue
        assert r.returncode == 0, r.stderr
        results[level] = json.loads(r.stdout)
    assert core.simd() in results
    first = results[core.simd()]
    for level, res in results.items():
        assert res == first, f"{level} differs from {core.simd()}"


def test_auto_picks_the_best_level_the_cpu_runs():
    r = _python("auto", "import fusedloss._core as c; print(c.simd())")
    assert r.returncode == 0, r.stderr
    best = r.stdout.strip()
    assert best in LEVELS
    for level in LEVELS[: LEVELS.index(best)]:  # every better level must be one this CPU cannot run
        assert LACKS in _python(level, "import fusedloss._core").stderr


def test_unknown_level_fails_the_import_with_its_name():
    r = _python("sse9", "import fusedloss._core")
    assert r.returncode != 0
    assert "FUSEDLOSS_SIMD=sse9" in r.stderr


def test_unknown_level_leaves_the_package_importable_without_cpp():
    code = ("import fusedloss as fl, numpy as np; fl.set_backend('auto');"
            "print(fl.mse(np.ones(3), np.zeros(3)))")
    r = _python("sse9", code)
    assert r.returncode == 0, r.stderr
    assert np.isclose(float(r.stdout.split()[0]), 1.0)
