"""Every host backend against the NumPy reference (``_reference.reduce_elementwise``; for pairwise losses their
per-row reference, ``_reference.pairwise``, reduced here).

The matrix: backend x loss (with the variant parameter rows) x dtype x reduction x weighting (none,
same-shape weights, leading-axis broadcast weights) x shape (empty, one element, odd, 1000, 0-d and
multi-dimensional), each through the four entry points (``__call__``, ``value_and_grad``, ``grad``,
``grad_hess``). Arrays come back in the inputs' shape and dtype; reduced values are Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import (
    DTYPES,
    HOST_BACKENDS,
    assert_close,
    broadcast_weight,
    full_params,
    grads,
    loss_cases,
    loss_fn,
    magnitudes,
    make_case,
    make_data,
    make_weight,
    require_backend,
    require_support,
    supported,
    weightings,
)

SHAPES = [(0,), (1,), (17,), (1000,), (), (2, 0, 3), (4, 5, 3)]
ROWS = [(0,), (1,), (17,), (), (4, 5)]  # the rows of pairwise losses: none, one, odd, one without a leading axis
REDUCTIONS = ("mean", "sum", "none")


def _expected(name, params, p, y, w, reduction):
    """Reference (value, grad, hess) and the magnitudes for the tolerance of each."""
    kw = full_params(name, params)
    value, grad, hess = _reference.reduce_elementwise(name, p, y, reduction=reduction, sample_weight=w, **kw)
    wb = broadcast_weight(w, p.shape)
    m = magnitudes(name, params, p, y)
    if reduction == "mean":
        denom = float(np.sum(wb))
        scale = 1.0 / denom if denom else math.nan
    else:
        scale = 1.0
    mag_arr = wb * scale * m  # for grad and hess
    mag_value = wb * m if reduction == "none" else float(np.sum(wb * m)) * scale
    return value, grad, hess, mag_arr, mag_value


def _check_array(out, shape, dtype, what):
    assert type(out) is np.ndarray, f"{what}: expected a numpy.ndarray, got {type(out).__name__}"
    assert out.shape == shape, f"{what}: shape {out.shape}, expected {shape}"
    assert out.dtype == dtype, f"{what}: dtype {out.dtype}, expected pred's dtype {dtype}"


def _check_value(value, expected, mag, shape, dtype, reduction, what):
    if reduction == "none":
        _check_array(value, shape, dtype, what)
    else:
        assert type(value) is float, f"{what}: reduced value must be a Python float, got {type(value).__name__}"
    assert_close(value, expected, dtype, mag, err_msg=what)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params", loss_cases())
def test_backend_matches_reference(backend, name, params, dtype, reduction):
    """Loops over weighting x shape inside (one pytest item per combination would cost more in pytest
    than in the checks) and reports every failing combination, not just the first."""
    require_support(backend, name, dtype)
    # each kind that loss_cases() collects has its check here (a new one: a KeyError, not a skip)
    check, shapes = {"elementwise": (_check_backend_case, SHAPES),
                     "pairwise": (_check_pairwise_case, ROWS)}[REGISTRY[name].kind]
    failures = []
    for weighting in weightings(name):
        for shape in shapes:
            try:
                check(backend, name, params, dtype, reduction, weighting, shape)
            except AssertionError as exc:
                failures.append(f"[{weighting} {shape}] {exc}")
    if failures:
        raise AssertionError(f"{len(failures)} of {len(weightings(name)) * len(shapes)} cases failed:\n"
                             + "\n".join(failures[:12]))


def _check_backend_case(backend, name, params, dtype, reduction, weighting, shape):
    spec = REGISTRY[name]
    loss = loss_fn(name)
    p, y = make_data(name, params, shape, dtype, seed=len(shape) * 100 + math.prod(shape))
    w = make_weight(weighting, shape, dtype)
    value, grad, hess, mag_arr, mag_value = _expected(name, params, p, y, w, reduction)
    kwargs = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
    tag = f"{backend} {name}{params} {dtype} {reduction} {weighting} {shape}"

    v = loss(p, y, **kwargs)
    _check_value(v, value, mag_value, shape, dtype, reduction, f"{tag}: __call__ value")

    if not spec.differentiable:
        for entry in (loss.value_and_grad, loss.grad, loss.grad_hess):
            with pytest.raises(TypeError, match="not differentiable"):
                entry(p, y, **kwargs)
        return

    v2, g2 = loss.value_and_grad(p, y, **kwargs)
    _check_value(v2, value, mag_value, shape, dtype, reduction, f"{tag}: value_and_grad value")
    _check_array(g2, shape, dtype, f"{tag}: value_and_grad grad")
    assert_close(g2, grad, dtype, mag_arr, err_msg=f"{tag}: value_and_grad grad")

    g3 = loss.grad(p, y, **kwargs)
    _check_array(g3, shape, dtype, f"{tag}: grad")
    assert_close(g3, grad, dtype, mag_arr, err_msg=f"{tag}: grad")

    if spec.has_hessian:
        g4, h4 = loss.grad_hess(p, y, **kwargs)
        _check_array(g4, shape, dtype, f"{tag}: grad_hess grad")
        _check_array(h4, shape, dtype, f"{tag}: grad_hess hess")
        assert_close(g4, grad, dtype, mag_arr, err_msg=f"{tag}: grad_hess grad")
        assert_close(h4, hess, dtype, mag_arr, err_msg=f"{tag}: grad_hess hess")


def _pairwise_reference(name, params, arrays, rows):
    """The pairwise reference on these arrays: (float64 loss per row, of the rows' shape; the gradient of each
    row's loss with respect to each input, in the inputs' shapes)."""
    spec = REGISTRY[name]
    N = math.prod(rows)
    k = len(spec.inputs)
    flat = [np.reshape(a, (N, a.shape[-1]) if spec.vector_rows else (N,)) for a in arrays[:k]]
    y = np.reshape(arrays[k], N) if spec.row_target else None
    losses, gs = _reference.pairwise(name, flat, y, **full_params(name, params))
    return losses.reshape(rows), tuple(g.reshape(a.shape) for g, a in zip(gs, arrays))


def _check_pairwise_case(backend, name, params, dtype, reduction, weighting, rows):
    """A pairwise loss: its per-row reference, weighted and reduced here, against every entry point: the value,
    the gradient of every input, the types and shapes; no Hessian entry point."""
    spec = REGISTRY[name]
    loss = loss_fn(name)
    case = make_case(name, params, rows, dtype, seed=len(rows) * 100 + math.prod(rows))
    w = make_weight(weighting, rows, dtype)
    wb = np.ones(rows) if w is None else w.astype(np.float64)
    losses, row_grads = _pairwise_reference(name, params, case.arrays, rows)
    size = np.abs(losses) + sum(np.abs(g).reshape(rows + (math.prod(g.shape[len(rows):]),)).max(axis=-1, initial=0.0)
                                for g in row_grads)
    mag = wb * (1.0 + size)  # per row: the terms of its value and of its gradients
    if reduction == "none":
        value, coef, mag_value = wb * losses, wb, mag
    else:
        denom = math.fsum(wb.ravel()) if reduction == "mean" else 1.0
        coef = wb / denom if denom else np.full(rows, math.nan)
        value = math.fsum((wb * losses).ravel()) / denom if denom else math.nan
        mag_value = math.fsum(mag.ravel()) / (denom or 1.0)
    kwargs = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
    tag = f"{backend} {name}{params} {dtype} {reduction} {weighting} rows {rows}"
    _check_value(loss(*case.arrays, **kwargs), value, mag_value, rows, dtype, reduction, f"{tag}: __call__ value")
    v2, g2 = loss.value_and_grad(*case.arrays, **kwargs)
    _check_value(v2, value, mag_value, rows, dtype, reduction, f"{tag}: value_and_grad value")
    for what, got in (("value_and_grad", g2), ("grad", loss.grad(*case.arrays, **kwargs))):
        got = grads(got)
        assert len(got) == len(spec.inputs), f"{tag}: {what} gave {len(got)} gradients"
        for k, (g, want, x) in enumerate(zip(got, row_grads, case.arrays)):
            _check_array(g, x.shape, dtype, f"{tag}: {what} gradient {k}")
            lift = (...,) + (None,) * (x.ndim - len(rows))  # a row's factor along its vector axis
            assert_close(g, coef[lift] * want, dtype, np.abs(coef)[lift] * (1.0 + size)[lift],
                         err_msg=f"{tag}: {what} gradient {k}")
    with pytest.raises(TypeError, match="no Hessian"):
        loss.grad_hess(*case.arrays, **kwargs)


def test_backend_supports_every_loss(backend):
    """Every built-in loss, both dtypes: a gap shows here once (the matrix above skips it). A user's loss (one that
    another test in this process registered, e.g. ``fusedloss bench --loss custom_huber``) runs on the backends
    its definition compiles for, not on every one."""
    missing = [f"{name} ({dt})" for name, spec in REGISTRY.items() if spec.builtin for dt in DTYPES
               if not supported(backend, name, dt)]
    assert len([s for s in REGISTRY.values() if s.builtin]) >= 21
    assert not missing, f"backend {backend!r} does not implement: {', '.join(missing)}"


# --- numerically delicate regions, where an unstable formula in a backend would show --------------------

# (loss, params, pred, target): points where a naive formula cancels or overflows. Only losses in the
# registry are used, so the table can list losses that a given checkout does not have.
DELICATE = [
    ("log_cosh", {}, [1e-9, -3e-5, 2e-3, 0.5, 0.99, 1.01, 30.0, -700.0, 1e30, -3e38], 0.0),
    ("pseudo_huber", {}, [1e-9, -3e-5, 2e-3, 0.5, 30.0, 1e20, -3e38], 0.0),
    ("pseudo_huber", {"delta": 2.0}, [2e-9, -6e-5, 4e-3, 1.0, 60.0, 1e20], 0.0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row", DELICATE, ids=lambda r: f"{r[0]}{r[1]}" if isinstance(r, tuple) else None)
def test_delicate_regions_relative_accuracy(backend, row, dtype):
    """Elementwise values and gradients with relative error only (no absolute slack): tiny values must
    be right to the last few digits, huge ones must stay finite."""
    name, params, pred, target = row
    if name not in REGISTRY:
        pytest.skip(f"{name} is not registered")
    require_support(backend, name, dtype)
    p = np.array(pred, dtype=dtype)
    y = np.full_like(p, target)
    kw = full_params(name, params)
    ev, eg, eh = _reference.elementwise(name, p, y, **kw)
    loss = loss_fn(name)
    v = loss(p, y, reduction="none", backend=backend, **params)
    g, h = loss.grad_hess(p, y, reduction="none", backend=backend, **params)
    rtol = 50 * np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny
    for what, got, exp in (("value", v, ev), ("gradient", g, eg), ("hessian", h, eh)):
        exp32 = exp.astype(dtype)  # the exact answer rounded to dtype (an overflowing value becomes inf)
        assert np.all(np.isfinite(got) == np.isfinite(exp32)), f"{name} {what}: {got} vs {exp}"
        fin = np.isfinite(exp32)
        np.testing.assert_allclose(got[fin], exp[fin], rtol=rtol, atol=tiny, err_msg=f"{backend} {name} {what}")


def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logits_losses_stay_finite_for_huge_logits(backend, dtype):
    """BCE on logits for logits up to the largest float: finite, and right in absolute terms (softplus,
    sigmoid - y, s (1 - s) worked out with math). Relative accuracy of the tiny values is not asked for:
    the spec's form (1 - y) x + softplus(-x) cancels for y = 0, x << 0, as PyTorch's does."""
    name = "binary_cross_entropy_with_logits"
    if name not in REGISTRY:
        pytest.skip(f"{name} is not registered")
    require_support(backend, name, dtype)
    x = np.array([-3e38, -1e4, -80.0, -30.0, -1e-6, 1e-6, 30.0, 80.0, 1e4, 3e38], dtype)
    for target in (0.0, 1.0):
        y = np.full_like(x, target)
        v = loss_fn(name)(x, y, reduction="none", backend=backend)
        g, h = loss_fn(name).grad_hess(x, y, reduction="none", backend=backend)
        xs = x.astype(np.float64)
        ev = np.array([_softplus(z) if target == 0 else _softplus(-z) for z in xs])
        eg = np.array([_sigmoid(z) - target for z in xs])
        eh = np.array([_sigmoid(z) * _sigmoid(-z) for z in xs])
        atol = 1e-6 if dtype == np.float32 else 1e-13
        for what, got, exp in (("value", v, ev), ("gradient", g, eg), ("hessian", h, eh)):
            assert np.isfinite(got).all(), f"{backend} {name} y={target} {what}: {got}"
            np.testing.assert_allclose(got, exp, rtol=10 * np.finfo(dtype).eps, atol=atol,
                                       err_msg=f"{backend} {name} y={target} {what}")


# --- a property: the reductions agree with each other --------------------------------------------------

_elementwise = [c for c in loss_cases(variants=False) if REGISTRY[c.values[0]].kind == "elementwise"]


@pytest.mark.parametrize("backend_name", HOST_BACKENDS)
def test_reductions_are_consistent(backend_name):
    require_backend(backend_name)
    _reductions_property(backend_name)


@settings(max_examples=25, deadline=None)
@given(case=st.sampled_from(_elementwise), n=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(DTYPES), weighted=st.booleans())
def _reductions_property(backend, case, n, seed, dtype, weighted):
    """sum == fsum(none); mean == sum / sum(w); grad(mean) == grad(sum) / sum(w); grad(none) == grad(sum)."""
    name, params = case.values
    assume(supported(backend, name, dtype))
    loss = loss_fn(name)
    p, y = make_data(name, params, (n,), dtype, seed=seed)
    w = make_weight("full" if weighted else "unweighted", (n,), dtype, seed=seed + 1)
    wsum = float(np.sum(broadcast_weight(w, p.shape)))
    kw = dict(sample_weight=w, backend=backend, **params)
    none = loss(p, y, reduction="none", **kw)
    total = loss(p, y, reduction="sum", **kw)
    mean = loss(p, y, reduction="mean", **kw)
    mag = float(np.sum(broadcast_weight(w, p.shape) * magnitudes(name, params, p, y)))
    assert_close(total, math.fsum(none.astype(np.float64)), dtype, mag, "sum vs none")
    if wsum > 0:
        assert_close(mean, total / wsum, dtype, mag / wsum, "mean vs sum")
    else:
        assert math.isnan(mean)
    if REGISTRY[name].differentiable:
        g_sum = loss.grad(p, y, reduction="sum", **kw)
        g_none = loss.grad(p, y, reduction="none", **kw)
        g_mean = loss.grad(p, y, reduction="mean", **kw)
        np.testing.assert_array_equal(g_none, g_sum)
        if wsum > 0:
            assert_close(g_mean, g_sum.astype(np.float64) / wsum, dtype,
                         np.abs(g_sum.astype(np.float64)) / wsum + 1e-30, "grad mean vs sum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_row_max_lanes_is_the_plain_row_max(dtype):
    """The CPU backend's sixteen-lane row max returns the plain loop's max for every row length (the lanes'
    fold and the tail), with NaN skipped wherever it sits and -inf for rows of -inf or NaN only."""
    pytest.importorskip("numba")
    from fusedloss import _pointwise
    from fusedloss.backends import _numba_points

    rng = np.random.default_rng(5)
    for C in (1, 7, 15, 16, 17, 31, 32, 33, 100):
        rows = [rng.standard_normal(C), np.full(C, -np.inf), np.full(C, np.nan)]
        for _ in range(4):
            r = rng.standard_normal(C) * 10
            r[rng.integers(0, C, 2)] = np.nan
            r[rng.integers(0, C)] = -np.inf
            rows.append(r)
        big = rng.standard_normal(C)
        big[-1] = 50.0  # the max in the tail (C % 16 != 0) or in the last lane
        rows.append(big)
        x = np.concatenate(rows).astype(dtype)
        for i in range(len(rows)):
            got = _numba_points._row_max_lanes(x, i * C, C)
            want = _pointwise.row_max(x, i * C, C)
            assert got == want, (C, i, got, want)
