"""The Numba-CUDA backend, on device arrays.

CI runs these kernels on Numba's CUDA simulator, which needs no GPU::

    NUMBA_ENABLE_CUDASIM=1 pytest -m cuda tests/test_cuda.py

(the variable must be set before numba is imported, hence a separate pass). In the normal pass, without
it and without a GPU, the whole module skips with the reason that ``fusedloss.backends()`` gives. On a
machine with a GPU the same tests run on the real device. The simulator runs every CUDA thread as a Python
thread, so the arrays here are tiny and the calls few.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import (
    DTYPES,
    assert_close,
    backend_skip_reason,
    broadcast_weight,
    elementwise_names,
    full_params,
    magnitudes,
    make_data,
    make_multiclass_data,
    make_weight,
)

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from fusedloss._validate import is_device_array  # noqa: E402

SHAPE = (2, 3)


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _host(a):
    assert is_device_array(a), f"expected a device array, got {type(a).__name__}"
    return a.copy_to_host()


def _supported(name, dtype):
    module = __import__("sys").modules["fusedloss.backends"].REGISTRY["cuda"].load()
    return module.supports(REGISTRY[name], np.dtype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", elementwise_names())
def test_cuda_matches_reference(name, dtype):
    if not _supported(name, dtype):
        pytest.skip(f"backend 'cuda' does not support {name} for {np.dtype(dtype)}")
    spec = REGISTRY[name]
    loss = getattr(fl, name)
    kw = full_params(name)
    p, y = make_data(name, {}, SHAPE, dtype, seed=4)
    w = make_weight("leading", SHAPE, dtype)
    dp, dy = _dev(p), _dev(y)
    m = magnitudes(name, {}, p, y)

    total = loss(dp, dy, reduction="sum")
    assert type(total) is float
    ref_total, _, _ = _reference.reduce_elementwise(name, p, y, reduction="sum", **kw)
    assert_close(total, ref_total, dtype, float(np.sum(m)), f"{name} sum")

    v = loss(dp, dy, reduction="none", sample_weight=w)
    ref_v, _, _ = _reference.reduce_elementwise(name, p, y, reduction="none", sample_weight=w, **kw)
    hv = _host(v)
    assert hv.shape == SHAPE and hv.dtype == dtype
    assert_close(hv, ref_v, dtype, broadcast_weight(w, SHAPE) * m, f"{name} none")

    if spec.differentiable and spec.has_hessian:
        g, h = loss.grad_hess(dp, dy, reduction="mean", sample_weight=_dev(w))
        _, ref_g, ref_h = _reference.reduce_elementwise(name, p, y, reduction="mean", sample_weight=w, **kw)
        wb = broadcast_weight(w, SHAPE)
        mag = wb * m / wb.sum()
        for what, out, ref in (("grad", g, ref_g), ("hess", h, ref_h)):
            host = _host(out)
            assert host.shape == SHAPE and host.dtype == dtype
            assert_close(host, ref, dtype, mag, f"{name} mean {what}")


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "multiclass"])
def test_cuda_multiclass_matches_reference(name):
    if not _supported(name, np.float64):
        pytest.skip(f"backend 'cuda' does not support {name}")
    spec = REGISTRY[name]
    form = "hard" if spec.hard_labels else "soft"
    kw = full_params(name)
    x, t = make_multiclass_data(name, {}, (3,), np.float64, form, seed=2, n_classes=4)
    w = np.array([1.0, 0.5, 2.0])
    total = getattr(fl, name)(_dev(x), _dev(t), reduction="sum", sample_weight=w)
    ref_total, _, _ = _reference.reduce_multiclass(name, x, t, reduction="sum", sample_weight=w, **kw)
    assert type(total) is float and total == pytest.approx(ref_total, rel=1e-12)
    if spec.differentiable:
        g, h = getattr(fl, name).grad_hess(_dev(x), _dev(t), reduction="mean", sample_weight=_dev(w))
        _, ref_g, ref_h = _reference.reduce_multiclass(name, x, t, reduction="mean", sample_weight=w, **kw)
        np.testing.assert_allclose(_host(g), ref_g, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(_host(h), ref_h, rtol=1e-12, atol=1e-15)


def test_a_cuda_target_that_cannot_load_is_reported_with_the_fix():
    from fusedloss.backends import numba_cuda

    def broken():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    why = numba_cuda.target_error(broken)
    assert why is not None
    assert f"NumPy {np.__version__}" in why and "row_stack" in why
    assert "numba-cuda" in why and "numpy<" in why
    assert numba_cuda.target_error(lambda: None) is None


def test_device_arrays_route_to_cuda_automatically():
    p, y = np.array([0.5, -1.0, 2.0]), np.array([0.0, 0.0, 1.0])
    dp, dy = _dev(p), _dev(y)
    value = fl.mse(dp, dy)  # no backend named: "auto" sends device arrays to the GPU
    assert type(value) is float and value == pytest.approx(fl.mse(p, y, backend="numpy"), rel=1e-14)
    with fl.use_backend("cuda"):
        assert fl.mse(dp, dy, reduction="sum") == pytest.approx(3 * value, rel=1e-14)
    assert fl.mse(dp, y, reduction="sum", backend="cuda") == pytest.approx(3 * value, rel=1e-14)  # host target


def test_each_kernel_copy_is_built_once(monkeypatch):
    """A kernel copy is built once per loss and flag set and then reused: building it again would load it from
    Numba's disk cache on every call (milliseconds of host time a call on a GPU)."""
    from fusedloss.backends import numba_cuda

    built = []
    build = numba_cuda._build
    monkeypatch.setattr(numba_cuda, "_build", lambda key: built.append(key) or build(key))
    rng = np.random.default_rng(5)
    p, y = _dev(rng.normal(size=SHAPE)), _dev(rng.normal(size=SHAPE))
    logits, labels = _dev(rng.normal(size=(3, 4))), _dev(np.array([0, 3, 1]))
    for _ in range(3):
        fl.mse.value_and_grad(p, y, backend="cuda")
        fl.cross_entropy.value_and_grad(logits, labels, backend="cuda")
    assert len(built) == len(set(built))  # none twice
    assert all(key in numba_cuda._KERNELS for key in built)


def test_outputs_are_device_arrays_and_values_floats():
    p = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    y = np.zeros_like(p)
    dp, dy = _dev(p), _dev(y)
    v, g = fl.huber.value_and_grad(dp, dy, reduction="sum")
    assert type(v) is float and v == pytest.approx(0.125 + 0.5 + 1.5 + 0.03125, rel=1e-6)
    hg = _host(g)
    assert hg.dtype == np.float32 and hg.shape == (2, 2)
    np.testing.assert_array_equal(hg, [[0.5, -1.0], [1.0, 0.25]])
    none = fl.huber(dp, dy, reduction="none")
    np.testing.assert_allclose(_host(none), [[0.125, 0.5], [1.5, 0.03125]], rtol=1e-6)
    g1 = fl.mae.grad(dp, dy, reduction="mean")
    np.testing.assert_array_equal(_host(g1), np.sign(p) / 4)


def test_grad_out_and_hess_out_are_reused():
    g_out = cuda.device_array(4, np.float64)
    h_out = cuda.device_array(4, np.float64)
    rng = np.random.default_rng(1)
    for _ in range(2):
        p, y = rng.normal(size=4), rng.normal(size=4)
        g, h = fl.huber.grad_hess(_dev(p), _dev(y), reduction="sum", grad_out=g_out, hess_out=h_out)
        assert g is g_out and h is h_out
        np.testing.assert_allclose(g_out.copy_to_host(), np.clip(p - y, -1, 1), rtol=1e-15)
        np.testing.assert_array_equal(h_out.copy_to_host(), (np.abs(p - y) <= 1).astype(float))
    _, h = fl.mae.grad_hess(_dev(p), _dev(y), hessian="ones", hess_out=h_out)  # mean: 1/N each
    assert h is h_out
    np.testing.assert_array_equal(h_out.copy_to_host(), 0.25)


def test_inputs_on_device_are_not_modified():
    p, y, w = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 3.0]), np.array([1.0, 2.0, 0.5])
    dp, dy, dw = _dev(p), _dev(y), _dev(w)
    fl.poisson_nll.grad_hess(dp, dy, sample_weight=dw)
    fl.poisson_nll(dp, dy, sample_weight=dw, reduction="none")
    np.testing.assert_array_equal(dp.copy_to_host(), p)
    np.testing.assert_array_equal(dy.copy_to_host(), y)
    np.testing.assert_array_equal(dw.copy_to_host(), w)


def test_empty_device_input():
    dp = _dev(np.zeros(0))
    dy = _dev(np.zeros(0))
    assert fl.mse(dp, dy, reduction="sum") == 0.0
    assert math.isnan(fl.mse(dp, dy, reduction="mean"))
    g = fl.mse.grad(dp, dy)
    assert is_device_array(g) and g.shape == (0,)


def test_nan_propagates_on_device():
    p = np.array([np.nan, 1.0, 2.0])
    y = np.zeros(3)
    v, g = fl.mae.value_and_grad(_dev(p), _dev(y), reduction="sum")
    assert math.isnan(v)
    hg = _host(g)
    assert np.isnan(hg[0]) and (hg[1:] == 1.0).all()


# --- errors ----------------------------------------------------------------------------------------------


def test_host_backend_with_device_arrays_is_an_error():
    dp, dy = _dev(np.ones(3)), _dev(np.zeros(3))
    for name in ("numpy", "cpp", "numba"):
        with pytest.raises(ValueError, match=f"(?s)'{name}'.*device"):
            fl.mse(dp, dy, backend=name)
    fl.set_backend("numpy")
    with pytest.raises(ValueError, match="(?s)'numpy'.*device"):
        fl.mse(dp, dy)
    fl.set_backend(None)


def test_device_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"(?s)\(3,\).*\(4,\)"):
        fl.mse(_dev(np.ones(3)), _dev(np.zeros(4)))
    with pytest.raises(ValueError, match=r"(?s)\(3,\).*\(2,\)"):
        fl.mse(_dev(np.ones(3)), np.zeros(2))
    with pytest.raises(ValueError, match="sample_weight"):
        fl.mse(_dev(np.ones(3)), _dev(np.zeros(3)), sample_weight=_dev(np.ones(2)))


@pytest.mark.parametrize("bad", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_device_nonfinite_weights_are_refused_as_on_the_host(bad, reduction):
    w = np.ones((2, 2))
    w[1, 0] = bad
    rw = np.array([1.0, bad])
    x, t = _dev(np.zeros((2, 2))), _dev(np.array([0, 1]))
    for weight, row_weight in ((w, rw), (_dev(w), _dev(rw))):  # host and device weights
        with pytest.raises(ValueError, match=rf"(?s)mse: sample_weight must be finite and >= 0.*{bad!r}.*\(1, 0\)"):
            fl.mse.grad(x, x, reduction=reduction, sample_weight=weight)
        with pytest.raises(ValueError, match=rf"(?s)sample_weight must be finite and >= 0.*{bad!r}.*\(1,\)"):
            fl.cross_entropy(x, t, reduction=reduction, sample_weight=row_weight)


def test_device_output_checks():
    dp, dy = _dev(np.ones(3)), _dev(np.zeros(3))
    with pytest.raises(TypeError, match="grad_out"):
        fl.mse.grad(dp, dy, grad_out=np.empty(3))  # a host buffer for a device call
    with pytest.raises(ValueError, match=r"(?s)grad_out.*\(3,\).*\(4,\)"):
        fl.mse.grad(dp, dy, grad_out=cuda.device_array(4))
    with pytest.raises(TypeError, match="(?s)grad_out.*float32"):
        fl.mse.grad(dp, dy, grad_out=cuda.device_array(3, np.float32))
    buf = cuda.device_array(3)
    with pytest.raises(ValueError, match="overlap"):
        fl.mse.grad_hess(dp, dy, grad_out=buf, hess_out=buf)


def test_device_domain_and_dtype_errors():
    with pytest.raises(ValueError, match=r"(?s)target.*-2\.0.*\(1,\)"):
        fl.poisson_nll(_dev(np.ones(3)), _dev(np.array([1.0, -2.0, 0.0])))
    with pytest.raises(ValueError, match=r"(?s)target.*> 0.*0\.0.*\(1,\)"):  # "positive": 0 is outside
        fl.gamma(_dev(np.ones(3)), _dev(np.array([1.0, 0.0, 2.0])))
    tiny = np.array([np.nextafter(np.float32(0), np.float32(1)), 1.0], np.float32)  # inside, in float32 too
    with pytest.raises(ValueError, match=r"(?s)pred.*> -1.*-1\.0.*\(2,\)"):  # "above_minus_one"
        fl.squared_log(_dev(np.array([0.0, 1.0, -1.0])), _dev(np.zeros(3)))
    above = np.array([np.nextafter(np.float32(-1), np.float32(0)), 1.0], np.float32)
    assert np.isfinite(fl.squared_log(_dev(above), _dev(above)))
    assert np.isfinite(fl.gamma(_dev(np.zeros(2, np.float32)), _dev(tiny)))
    with pytest.raises(ValueError, match=r"(?s)tweedie_identity: pred must be > 0.*0\.0.*\(1,\)"):  # the mean
        fl.tweedie_identity(_dev(np.array([1.0, 0.0])), _dev(np.ones(2)))
    assert np.isfinite(fl.tweedie_identity(_dev(tiny), _dev(np.ones(2, np.float32))))
    assert np.isfinite(fl.tweedie_identity(_dev(np.array([-1.0, 0.0])), _dev(np.ones(2)), power=0.0))
    with pytest.raises(ValueError, match=r"(?s)sample_weight.*-1\.0"):
        fl.mse(_dev(np.ones(2)), _dev(np.zeros(2)), sample_weight=_dev(np.array([1.0, -1.0])))
    with pytest.raises(TypeError, match="(?s)pred.*int64"):
        fl.mse(_dev(np.arange(3)), _dev(np.zeros(3)))
