"""Custom losses (``fusedloss.elementwise_loss``): built-in losses written again as formulas must match the
built-in reference on every backend, dtype, reduction and weighting, extreme inputs included; losses that are
not built in must match finite differences; and the whole built-in API works on them.

Compilation dominates the cost, so each loss is defined once per module (``defined``), and the tests reuse it.
Generated modules go to a temporary cache directory, so every run derives the formulas again (the Numba
cache, keyed on the formula, still spares recompiling).
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import sym
from fusedloss._spec import REGISTRY

from conftest import DTYPES, assert_close, broadcast_weight, full_params, magnitudes, make_data, require_backend
from custom_defs import NOT_BUILT_IN, REDEFINED, REDEFINED_VARIANTS

BACKENDS = ("numba", "numpy")
SHAPE = (7, 9)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("fusedloss-cache")
    mp.setenv("FUSEDLOSS_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def defined(cache):
    """Every REDEFINED and NOT_BUILT_IN formula as a custom loss named ``custom_<name>``."""
    losses = {}
    for name, (fn, params, domain) in REDEFINED.items():
        losses[name] = fl.elementwise_loss(fn, params=params, target_domain=domain, name=f"custom_{name}")
    for name, (fn, params, _, _) in NOT_BUILT_IN.items():
        losses[name] = fl.elementwise_loss(fn, params=params, name=f"custom_{name}")
    yield losses
    for loss in losses.values():
        loss.unregister()


def _cases():
    return [pytest.param(name, params, id=name + "".join(f"-{k}={v}" for k, v in params.items()))
            for name in REDEFINED for params in [{}] + REDEFINED_VARIANTS.get(name, [])]


def _builtin_reference(name, params, p, y, reduction, w):
    loss = getattr(fl, name)
    kw = dict(reduction=reduction, sample_weight=w, backend="numpy", **params)
    value, grad = loss.value_and_grad(p, y, **kw)
    _, hess = loss.grad_hess(p, y, **kw)
    return value, grad, hess


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name, params", _cases())
def test_matches_builtin(defined, name, params, dtype, backend):
    require_backend(backend)
    custom = defined[name]
    p, y = make_data(name, params, SHAPE, dtype)
    p0, y0 = p.copy(), y.copy()
    mag = magnitudes(name, params, p, y)
    for reduction in ("mean", "sum", "none"):
        ev, eg, eh = _builtin_reference(name, params, p, y, reduction, None)
        v, g = custom.value_and_grad(p, y, reduction=reduction, backend=backend, **params)
        g2, h = custom.grad_hess(p, y, reduction=reduction, backend=backend, **params)
        scale = 1.0 / p.size if reduction == "mean" else 1.0
        assert g.dtype == h.dtype == dtype and g.shape == h.shape == p.shape
        if reduction == "none":
            assert v.dtype == dtype and v.shape == p.shape
            assert_close(v, ev, dtype, mag, f"{name} value none")
        else:
            assert isinstance(v, float)
            assert_close(v, ev, dtype, float(np.sum(mag)) * scale, f"{name} value {reduction}")
        assert_close(g, eg, dtype, mag * scale, f"{name} grad {reduction}")
        np.testing.assert_array_equal(g, g2)
        assert_close(h, eh, dtype, mag * scale, f"{name} hess {reduction}")
    assert np.array_equal(p, p0) and np.array_equal(y, y0), "inputs were modified"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighting", ("full", "leading"))
@pytest.mark.parametrize("name", list(REDEFINED))
def test_weighted_matches_builtin(defined, name, weighting, backend):
    require_backend(backend)
    dtype = np.dtype(np.float64)
    p, y = make_data(name, {}, SHAPE, dtype, seed=3)
    rng = np.random.default_rng(4)
    w = rng.uniform(0.0, 2.0, SHAPE if weighting == "full" else SHAPE[:1])
    mag = magnitudes(name, {}, p, y) * broadcast_weight(w, SHAPE)
    for reduction in ("mean", "none"):
        ev, eg, eh = _builtin_reference(name, {}, p, y, reduction, w)
        v, g = defined[name].value_and_grad(p, y, reduction=reduction, sample_weight=w, backend=backend)
        _, h = defined[name].grad_hess(p, y, reduction=reduction, sample_weight=w, backend=backend)
        scale = 1.0 / float(np.sum(broadcast_weight(w, SHAPE))) if reduction == "mean" else 1.0
        assert_close(v, ev, dtype, float(np.sum(mag)) * scale if reduction == "mean" else mag, f"{name} value")
        assert_close(g, eg, dtype, mag * scale, f"{name} grad")
        assert_close(h, eh, dtype, mag * scale, f"{name} hess")


EXTREME = np.array([0.0, 1e-300, -1e-8, 0.5, -3.0, 40.0, -40.0, 1e4, -1e4, 1e30, -1e30])


def _extreme_targets(domain):
    return {"real": [0.0, 1.0, -2.5], "nonnegative": [0.0, 1.0, 7.0], "unit": [0.0, 0.25, 1.0]}[domain]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(REDEFINED))
def test_extreme_inputs(defined, name, backend):
    """|pred| up to 1e4 and 1e30: where the built-in reference is finite, the custom loss agrees with it."""
    require_backend(backend)
    domain = REDEFINED[name][2]
    p, y = (a.ravel() for a in np.meshgrid(EXTREME, _extreme_targets(domain)))
    with np.errstate(all="ignore"):
        ev, eg, eh = _builtin_reference(name, {}, p, y, "none", None)
        v, g = defined[name].value_and_grad(p, y, reduction="none", backend=backend)
        _, h = defined[name].grad_hess(p, y, reduction="none", backend=backend)
    for what, actual, expected in (("value", v, ev), ("grad", g, eg), ("hess", h, eh)):
        finite = np.isfinite(expected)
        assert finite.sum() >= p.size // 2, f"{name}: the reference is finite at too few points to test"
        assert_close(actual[finite], expected[finite], np.float64, 1.0 + np.abs(expected[finite]),
                     f"{name} {what} at extreme inputs")


def _fd_data(name, params, n=64, seed=5):
    """Points at least 1e-3 away from every kink (|d| = 0 and |d| = c for the losses that have them)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 1.5, n)
    d = rng.normal(0.0, 2.0, n)
    kinks = list(NOT_BUILT_IN[name][3]) + ([params.get("c", full_c(name))] if name == "tukey" else [])
    for c in kinks:
        close = np.abs(np.abs(d) - c) < 1e-3
        d[close] = np.sign(d[close] + 0.5) * (c + 5e-3)
    return y + d, y


def full_c(name):
    return NOT_BUILT_IN[name][1]["c"][0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ("defaults", "params"))
@pytest.mark.parametrize("name", list(NOT_BUILT_IN))
def test_not_built_in_against_finite_differences(defined, name, variant, backend):
    require_backend(backend)
    loss = defined[name]
    params = NOT_BUILT_IN[name][2] if variant == "params" else {}
    p, y = _fd_data(name, params)
    eps = 1e-6
    v = loss(p, y, reduction="none", backend=backend, **params)
    g, h = loss.grad_hess(p, y, reduction="none", backend=backend, **params)
    vp, gp = loss.value_and_grad(p + eps, y, reduction="none", backend=backend, **params)
    vm, gm = loss.value_and_grad(p - eps, y, reduction="none", backend=backend, **params)
    np.testing.assert_allclose(g, (vp - vm) / (2 * eps), rtol=1e-6, atol=1e-6 * (1 + np.abs(v)).max())
    np.testing.assert_allclose(h, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-5 * (1 + np.abs(g)).max())
    # and the value itself against the formula evaluated in plain float64 Python
    fn = NOT_BUILT_IN[name][0]
    kw = {**{k: spec[0] if isinstance(spec, tuple) else spec for k, spec in NOT_BUILT_IN[name][1].items()}, **params}
    expected = _evaluate_plain(fn, p, y, kw)
    np.testing.assert_allclose(v, expected, rtol=1e-12, atol=1e-14)


def _evaluate_plain(fn, p, y, kw):
    """The formula evaluated point by point on Python floats (independent of SymPy and of the kernels)."""
    out = []
    for pi, yi in zip(p, y):
        out.append(float(_PlainSym.run(fn, pi, yi, kw)))
    return np.array(out)


class _PlainSym:
    """Runs a formula on floats by swapping fusedloss.sym's functions for float ones (independent of SymPy)."""

    @staticmethod
    def run(fn, p, y, kw):
        import math

        saved = {}
        plain = {
            "where": lambda c, a, b: a if c else b, "exp": math.exp, "log": math.log, "sqrt": math.sqrt,
            "logcosh": lambda x: math.log(math.cosh(x)), "tanh": math.tanh,
        }
        try:
            for k, f in plain.items():
                saved[k] = getattr(sym, k)
                setattr(sym, k, f)
            return fn(p, y, **kw)
        finally:
            for k, f in saved.items():
                setattr(sym, k, f)


@pytest.mark.parametrize("name", list(NOT_BUILT_IN))
def test_numba_matches_numpy(defined, name):
    require_backend("numba")
    loss = defined[name]
    p, y = _fd_data(name, {}, n=301, seed=8)
    for dtype in DTYPES:
        pp, yy = p.astype(dtype), y.astype(dtype)
        ref = loss.grad_hess(pp, yy, reduction="sum", backend="numpy")
        got = loss.grad_hess(pp, yy, reduction="sum", backend="numba")
        for a, b in zip(got, ref):
            assert a.dtype == dtype
            assert_close(a, b, dtype, 1.0 + np.abs(b), name)
        assert_close(loss(pp, yy, backend="numba"), loss(pp, yy, backend="numpy"), dtype, 1.0, name)


# --- the rest of the built-in API -----------------------------------------------------------------------------


def test_outputs_hessian_ones_and_threads(defined):
    require_backend("numba")
    huber = defined["huber"]
    p, y = make_data("huber", {}, (300_000,), np.float32)  # above the parallel threshold
    g_out = np.empty_like(p)
    h_out = np.empty_like(p)
    w = np.random.default_rng(0).uniform(0, 1, p.shape).astype(np.float32)
    g, h = huber.grad_hess(p, y, sample_weight=w, grad_out=g_out, hess_out=h_out, hessian="ones", delta=0.5)
    assert g is g_out and h is h_out
    np.testing.assert_allclose(h, w / w.astype(np.float64).sum(), rtol=1e-6)
    values = []
    for threads in (1, 2):
        fl.set_num_threads(threads)
        values.append(huber(p, y, delta=0.5))
    assert values[0] == values[1], "the reduction must not depend on the thread count"
    assert_close(values[0], fl.huber(p, y, delta=0.5, backend="numpy"), np.float32, 1.0)


def test_listed_and_unregistered(cache):
    @fl.elementwise_loss(params={"k": (2.0, "positive")})
    def temporary_loss(p, y, k):
        return k * (p - y) ** 2

    names = [row["name"] for row in fl.losses()]
    assert "temporary_loss" in names
    row = next(r for r in fl.losses() if r["name"] == "temporary_loss")
    assert row["params"] == {"k": 2.0} and "k*(p - y)**2" in row["formula"]
    assert "temporary_loss" in repr(temporary_loss) and "k=2.0" in repr(temporary_loss)
    assert str(temporary_loss.formula).splitlines()[1] == "gradient = 2*k*(p - y)"
    assert "def point(p, y, params):" in temporary_loss.source
    temporary_loss.unregister()
    assert "temporary_loss" not in REGISTRY
    assert "temporary_loss" not in [row["name"] for row in fl.losses()]
    with pytest.raises(ValueError, match="unknown loss 'temporary_loss'"):
        fusedloss_boosting().gradient_hessian("temporary_loss", np.zeros(2), np.zeros(2))


def fusedloss_boosting():
    import fusedloss.boosting

    return fusedloss.boosting


def test_defined_again_replaces(cache):
    @fl.elementwise_loss(name="replaced_loss")
    def first(p, y):
        return (p - y) ** 2

    @fl.elementwise_loss(name="replaced_loss")
    def second(p, y):
        return 3 * (p - y) ** 2

    p, y = np.array([1.0, 2.0]), np.zeros(2)
    assert second(p, y, reduction="sum", backend="numba") == 15.0
    assert second(p, y, reduction="sum", backend="numpy") == 15.0
    assert REGISTRY["replaced_loss"] is second.spec
    with pytest.raises(RuntimeError, match="replaced_loss: this custom loss was unregistered or defined again"):
        first(p, y)
    second.unregister()
    with pytest.raises(RuntimeError, match="unregistered"):
        second.grad(p, y)


def test_domains_checked(defined):
    p = np.array([0.5, 1.0])
    with pytest.raises(ValueError, match="custom_poisson_nll: target must be >= 0, got -1.0"):
        defined["poisson_nll"](p, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"custom_binary_cross_entropy_with_logits: target must lie in \[0, 1\]"):
        defined["binary_cross_entropy_with_logits"](p, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="custom_huber: delta must be a finite number > 0, got -1.0"):
        defined["huber"](p, p, delta=-1.0)
    with pytest.raises(ValueError, match=r"custom_quantile: quantile must be a number in the open interval \(0, 1\)"):
        defined["quantile"](p, p, quantile=1.0)
    with pytest.raises(TypeError, match="unknown keyword argument.*deltaa.*its parameters are: delta"):
        defined["huber"](p, p, deltaa=1.0)
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        defined["huber"](p, p[:1])
    with pytest.raises(TypeError, match="pred must be a floating array"):
        defined["huber"](np.array([1, 2]), p)


def test_cpp_backend_refused_with_reason(defined):
    p = np.zeros(3)
    with pytest.raises(fl.BackendUnavailable, match="custom loss: custom losses run on the numba, cuda and numpy"):
        defined["mse"](p, p, backend="cpp")
    with fl.use_backend("cpp"), pytest.raises(fl.BackendUnavailable, match="not on cpp"):
        defined["mse"].grad(p, p)
    with fl.use_backend("auto"):
        assert defined["mse"](p + 1, p) == 1.0  # auto picks a backend that runs it


@pytest.mark.cuda
def test_cuda_matches_numpy(defined):
    """The same point functions through Numba-CUDA (the simulator in CI: tiny arrays)."""
    require_backend("cuda")
    from numba import cuda

    for name in ("huber", "binary_focal", "three_params"):
        loss = defined[name]
        if name in REDEFINED:
            p, y = make_data(name, {}, (2, 5), np.float64)
        else:
            p, y = (a.reshape(2, 5) for a in _fd_data(name, {}, n=10))
        for dtype in DTYPES:
            pp, yy = p.astype(dtype), y.astype(dtype)
            w = np.linspace(0.5, 1.5, pp.size).reshape(pp.shape).astype(dtype)
            v, g = loss.value_and_grad(cuda.to_device(pp), cuda.to_device(yy), sample_weight=cuda.to_device(w))
            g2, h = loss.grad_hess(cuda.to_device(pp), cuda.to_device(yy), reduction="none")
            ev, eg = loss.value_and_grad(pp, yy, sample_weight=w, backend="numpy")
            _, eh = loss.grad_hess(pp, yy, reduction="none", backend="numpy")
            mag = 1.0 + np.abs(eh.astype(np.float64)) + np.abs(eg.astype(np.float64))
            assert_close(v, ev, dtype, 1.0, f"{name} cuda value")
            assert_close(g.copy_to_host(), eg, dtype, mag, f"{name} cuda grad")
            assert_close(h.copy_to_host(), eh, dtype, mag, f"{name} cuda hess")
