"""CTC on the Numba-CUDA backend (one block per sequence), against the NumPy reference and the cpp backend.

Runs on a GPU, or on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda``), which runs each
CUDA thread as a Python thread: shapes are tiny (T <= 12, N <= 3, C <= 7) and most tests run blocks of 8
threads (``small_blocks``), so that the extended label axis (L = 2 S + 1 up to 9) and the classes are
strided over the threads as on a GPU with long targets; one test runs the default block. T up to 12 gives
several alpha checkpoints (K = 4), so the backward pass recomputes segments. Tolerances: the CTC tests'
(float64: 1e-10 relative, gradients 1e-10 of their largest element), float32: ``conftest.TOL``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference_ctc as R

from conftest import TOL, backend_skip_reason

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 8 threads: L and C above 8 are strided (the simulator runs a Python thread per CUDA one)."""
    from fusedloss.backends import numba_cuda_ctc

    monkeypatch.setattr(numba_cuda_ctc, "MIN_CTC_THREADS", 8)
    monkeypatch.setattr(numba_cuda_ctc, "MAX_CTC_THREADS", 8)


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _case(seed, *, T=9, N=3, C=6, blank=0, repeats=False, empty=False, infeasible=False, S=3):
    """Scores (T, N, C), padded targets (N, S), input and target lengths; sequence 0 uses all T frames."""
    rng = np.random.default_rng(seed)
    labels = [k for k in range(C) if k != blank]
    tl = rng.integers(1, S + 1, size=N)
    tl[0] = S
    targets = rng.choice(labels, size=(N, S))
    if repeats:
        targets[0, 1] = targets[0, 0]
    if empty:
        tl[-1] = 0
    need = tl + np.array([np.count_nonzero(r[:n][1:] == r[:n][:-1]) for r, n in zip(targets, tl)])
    il = np.maximum(rng.integers(1, T + 1, size=N), need)
    il[0] = T
    if infeasible:
        il[-1] = max(int(need[-1]) - 1, 0)
    return rng.normal(size=(T, N, C)) * 2, targets, il, tl


def _check(x, targets, il, tl, *, dtype=np.float64, sample_weight=None, **kw):
    """Every reduction on the device against the reference (values and gradients)."""
    xd = _dev(x.astype(dtype))
    for reduction in ("mean", "sum", "none"):
        ev, eg = R.reduce_ctc(x.astype(dtype), targets, il, tl, reduction=reduction, sample_weight=sample_weight,
                              **kw)
        v, g = fl.ctc.value_and_grad(xd, targets, il, tl, reduction=reduction, sample_weight=sample_weight,
                                     backend="cuda", **kw)
        assert not isinstance(g, np.ndarray) and g.dtype == dtype and tuple(g.shape) == x.shape
        g = g.copy_to_host()
        if reduction == "none":
            assert not isinstance(v, np.ndarray) and v.dtype == dtype
            v = v.copy_to_host()
        else:
            assert isinstance(v, float)
        rtol = 1e-10 if dtype == np.float64 else TOL[np.dtype(dtype)].rtol
        np.testing.assert_allclose(v, ev, rtol=rtol, atol=0, err_msg=f"value, {reduction} {kw}")
        assert np.array_equal(np.isnan(g), np.isnan(eg)), f"NaN pattern, {reduction} {kw}"
        fin = np.isfinite(eg)
        scale = max(float(np.abs(eg[fin]).max(initial=0.0)), 1e-300)
        np.testing.assert_allclose(g[fin], eg[fin], rtol=rtol, atol=rtol * scale, err_msg=f"grad, {reduction} {kw}")


CASES = {
    "blank 0, repeats": (dict(repeats=True, T=12), {}),
    "blank C-1, log_probs": (dict(blank=6, C=7, S=4, T=11), dict(blank=6, inputs="log_probs")),
    "empty target": (dict(empty=True, N=2, T=5), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, small_blocks):
    make, kw = CASES[case]
    x, targets, il, tl = _case(list(CASES).index(case), **make)
    if kw.get("inputs") == "log_probs":
        x = R.log_softmax(x)
    _check(x, targets, il, tl, **kw)


def test_batch_first_concatenated_float32_weights(small_blocks):
    x, targets, il, tl = _case(5, T=8, blank=2, C=5)
    concat = np.concatenate([r[:n] for r, n in zip(targets, tl)])
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))
    w = np.array([0.5, 2.0, 0.0])
    _check(xb, concat, il, tl, batch_first=True, blank=2, sample_weight=w)
    _check(xb, concat, il, tl, batch_first=True, blank=2, dtype=np.float32)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_infeasible_target(zero_infinity, small_blocks):
    x, targets, il, tl = _case(6, T=6, N=2, repeats=True, infeasible=True)
    _check(x, targets, il, tl, zero_infinity=zero_infinity)
    v = fl.ctc(_dev(x), targets, il, tl, reduction="none", zero_infinity=zero_infinity, backend="cuda")
    assert v.copy_to_host()[-1] == (0.0 if zero_infinity else np.inf)


def test_default_block_device_arguments_and_repeatability():
    """The default block (32 threads: a warp), every argument a device array, grad_out and grad(), and the
    same bits on a second run (fixed-order reductions)."""
    x, targets, il, tl = _case(7, T=7, N=2)
    w = np.array([1.5, 0.5])
    args = [_dev(a) for a in (x, targets, il.astype(np.int32), tl)]
    ev, eg = R.reduce_ctc(x, targets, il, tl, sample_weight=w)
    v, g = fl.ctc.value_and_grad(*args, sample_weight=_dev(w), backend="cuda")
    np.testing.assert_allclose(v, ev, rtol=1e-10)
    np.testing.assert_allclose(g.copy_to_host(), eg, rtol=1e-10, atol=1e-10 * np.abs(eg).max())
    buf = cuda.device_array(x.shape, np.float64)
    v2, g2 = fl.ctc.value_and_grad(*args, sample_weight=_dev(w), grad_out=buf, backend="cuda")
    assert g2 is buf and v2 == v and np.array_equal(buf.copy_to_host(), g.copy_to_host())
    assert np.array_equal(fl.ctc.grad(*args, sample_weight=w, backend="cuda").copy_to_host(), g.copy_to_host())
    assert fl.ctc(*args, sample_weight=w, backend="cuda") == v


def test_matches_cpp(small_blocks):
    pytest.importorskip("fusedloss._core")
    x, targets, il, tl = _case(8, T=10, N=2, C=7, S=4)
    v, g = fl.ctc.value_and_grad(_dev(x), targets, il, tl, reduction="sum", backend="cuda")
    ev, eg = fl.ctc.value_and_grad(x, targets, il, tl, reduction="sum", backend="cpp")
    np.testing.assert_allclose(v, ev, rtol=1e-12)
    np.testing.assert_allclose(g.copy_to_host(), eg, rtol=1e-12, atol=1e-12 * np.abs(eg).max())


def test_zero_frames_and_empty_batch():
    x = np.random.default_rng(0).normal(size=(3, 2, 3))
    v, g = fl.ctc.value_and_grad(_dev(x), [[1], [2]], [0, 3], [0, 1], reduction="none", backend="cuda")
    assert v.copy_to_host()[0] == 0.0 and (g.copy_to_host()[:, 0] == 0).all()
    v, g = fl.ctc.value_and_grad(_dev(np.zeros((4, 0, 3))), np.zeros((0, 2), np.int64), [], [], reduction="sum",
                                 backend="cuda")
    assert v == 0.0 and tuple(g.shape) == (4, 0, 3)


def test_bad_inputs():
    x = np.random.default_rng(0).normal(size=(6, 2, 4))
    t, il, tl = np.array([[1, 2], [3, 3]]), np.array([6, 5]), np.array([2, 2])
    xd = _dev(x)
    with pytest.raises(ValueError, match="ctc: target label 4 is outside"):
        fl.ctc(xd, _dev(t + 1), il, tl, backend="cuda")
    with pytest.raises(ValueError, match="ctc: input_lengths"):
        fl.ctc(xd, t, _dev(il + 1), tl, backend="cuda")
    with pytest.raises(ValueError, match="ctc: grad_out must not overlap"):
        fl.ctc.value_and_grad(xd, t, il, tl, grad_out=xd, backend="cuda")
    with pytest.raises(TypeError, match="grad_out must be a device array"):
        fl.ctc.value_and_grad(xd, t, il, tl, grad_out=np.empty_like(x), backend="cuda")
    with pytest.raises(TypeError, match="ctc: logits must be float32 or float64"):
        fl.ctc(_dev(x.astype(np.int32)), t, il, tl, backend="cuda")
    with pytest.raises(ValueError, match="backend 'numba' runs on host arrays"):
        fl.ctc(xd, t, il, tl, backend="numba")
    with pytest.raises(ValueError, match="backend 'cuda' needs device arrays"):
        fl.ctc(x, t, il, tl, backend="cuda")
