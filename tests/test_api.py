"""The public API's semantics, on every host backend.

The entry points agree with each other; "mean" divides by N (or sum(w)) in the value and in every
derivative; "none" returns w * l; outputs passed in are filled in place and returned; hessian="ones";
lists and scalars; dtype preservation; empty input; NaN and inf propagation; non-contiguous, big-endian and
read-only inputs; inputs never modified; the registry listing and the exported loss objects.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import (
    DTYPES,
    assert_close,
    broadcast_weight,
    elementwise_names,
    full_params,
    loss_cases,
    grads,
    loss_fn,
    magnitudes,
    make_case,
    make_data,
    make_weight,
    require_support,
    supported,
)

DIFFERENTIABLE = [n for n in elementwise_names() if REGISTRY[n].differentiable]
WITH_HESSIAN = [n for n in DIFFERENTIABLE if REGISTRY[n].has_hessian]


def _data(name, shape=(6, 7), dtype=np.float64, seed=3, params=None):
    return make_data(name, params or {}, shape, np.dtype(dtype), seed=seed)


# --- the entry points agree ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params", loss_cases(variants=False))
def test_entry_points_agree(backend, name, params, dtype):
    """__call__, value_and_grad, grad (and grad_hess) give one value and one gradient per input: within the
    rounding of the terms for elementwise losses (whose value-only kernels sum in another order), bit for bit
    for the other kinds (one kernel, the gradients optional)."""
    require_support(backend, name, dtype)
    spec = REGISTRY[name]
    loss = loss_fn(name)
    case = make_case(name, params, (33, 3), dtype, seed=3)
    w = make_weight("full", case.rows, dtype)
    elementwise = spec.kind == "elementwise"
    mag = magnitudes(name, params, *case.arrays) if elementwise else None
    for reduction in ("mean", "sum", "none"):
        kw = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
        v = loss(*case.arrays, **kw)
        if not spec.differentiable:
            continue
        v2, g2 = loss.value_and_grad(*case.arrays, **kw)
        g3 = loss.grad(*case.arrays, **kw)
        assert len(grads(g3)) == len(grads(g2)), f"{reduction}: grad gives another number of gradients"
        if not elementwise:
            np.testing.assert_array_equal(v2, v, err_msg=f"{reduction}: value_and_grad value vs __call__")
            for k, (a, b) in enumerate(zip(grads(g3), grads(g2))):
                np.testing.assert_array_equal(a, b, err_msg=f"{reduction}: grad vs value_and_grad, input {k}")
            continue
        vmag = float(np.sum(mag * w)) if reduction != "none" else mag * w
        assert_close(v2, v, dtype, vmag, f"{reduction}: value_and_grad value vs __call__")
        assert_close(g3, g2, dtype, mag * w, f"{reduction}: grad vs value_and_grad")
        if spec.has_hessian:
            g4, h4 = loss.grad_hess(*case.arrays, **kw)
            assert_close(g4, g2, dtype, mag * w, f"{reduction}: grad_hess grad vs value_and_grad")
            _, h5 = loss.grad_hess(*case.arrays, hessian="exact", **kw)
            np.testing.assert_array_equal(h5, h4)


# --- reductions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_mean_includes_one_over_n(backend, name):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (5, 4))
    n = p.size
    g_sum, h_sum = loss.grad_hess(p, y, reduction="sum", backend=backend)
    g_mean, h_mean = loss.grad_hess(p, y, reduction="mean", backend=backend)
    np.testing.assert_allclose(g_mean * n, g_sum, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(h_mean * n, h_sum, rtol=1e-13, atol=1e-300)
    assert loss(p, y, backend=backend) == pytest.approx(loss(p, y, reduction="sum", backend=backend) / n,
                                                         rel=1e-13)
    # and "sum" is not scaled at all: it is the elementwise derivative
    l, g, h = _reference.elementwise(name, p, y, **full_params(name))
    np.testing.assert_allclose(g_sum, g, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(h_sum, h, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("weighting", ["full", "leading"])
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_weighted_mean_divides_by_sum_of_weights(backend, name, weighting):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (5, 4))
    w = make_weight(weighting, p.shape, np.float64)
    wb = broadcast_weight(w, p.shape)
    wsum = math.fsum(wb.ravel())
    assert wsum != p.size  # otherwise 1/N and 1/sum(w) could not be told apart
    kw = dict(sample_weight=w, backend=backend)
    g_sum, h_sum = loss.grad_hess(p, y, reduction="sum", **kw)
    g_mean, h_mean = loss.grad_hess(p, y, reduction="mean", **kw)
    np.testing.assert_allclose(g_mean * wsum, g_sum, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(h_mean * wsum, h_sum, rtol=1e-13, atol=1e-300)
    none = loss(p, y, reduction="none", **kw)
    assert loss(p, y, reduction="sum", **kw) == pytest.approx(math.fsum(none.ravel()), rel=1e-13)
    assert loss(p, y, reduction="mean", **kw) == pytest.approx(math.fsum(none.ravel()) / wsum, rel=1e-13)


@pytest.mark.parametrize("name", elementwise_names())
def test_none_returns_weighted_elementwise_values(backend, name):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (5, 4))
    for weighting in ("full", "leading"):
        w = make_weight(weighting, p.shape, np.float64)
        plain = loss(p, y, reduction="none", backend=backend)
        weighted = loss(p, y, reduction="none", sample_weight=w, backend=backend)
        np.testing.assert_allclose(weighted, broadcast_weight(w, p.shape) * plain, rtol=1e-14, atol=0)
        if REGISTRY[name].differentiable:
            g_plain = loss.grad(p, y, reduction="none", backend=backend)
            g_w = loss.grad(p, y, reduction="none", sample_weight=w, backend=backend)
            np.testing.assert_allclose(g_w, broadcast_weight(w, p.shape) * g_plain, rtol=1e-14, atol=0)


def test_all_zero_weights_mean_is_nan(backend):
    p, y = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0])
    w = np.zeros(3)
    assert math.isnan(fl.mse(p, y, sample_weight=w, backend=backend))
    assert fl.mse(p, y, sample_weight=w, reduction="sum", backend=backend) == 0.0
    np.testing.assert_array_equal(fl.mse.grad(p, y, sample_weight=w, reduction="sum", backend=backend), 0.0)


# --- outputs passed in ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", WITH_HESSIAN)
def test_outputs_written_in_place_and_returned(backend, name, dtype):
    require_support(backend, name, dtype)
    loss = loss_fn(name)
    p, y = _data(name, (3, 5, 2), dtype)
    for reduction in ("mean", "sum", "none"):
        kw = dict(reduction=reduction, backend=backend)
        g_ref, h_ref = loss.grad_hess(p, y, **kw)
        v_ref = loss(p, y, **kw)

        g_out = np.full(p.shape, np.nan, dtype)
        got = loss.grad(p, y, grad_out=g_out, **kw)
        assert got is g_out
        np.testing.assert_array_equal(g_out, g_ref)

        g_out = np.full(p.shape, np.nan, dtype)
        v, got = loss.value_and_grad(p, y, grad_out=g_out, **kw)
        assert got is g_out
        np.testing.assert_array_equal(g_out, g_ref)
        np.testing.assert_array_equal(v, v_ref)

        g_out = np.full(p.shape, np.nan, dtype)
        h_out = np.full(p.shape, np.nan, dtype)
        g, h = loss.grad_hess(p, y, grad_out=g_out, hess_out=h_out, **kw)
        assert g is g_out and h is h_out
        np.testing.assert_array_equal(g_out, g_ref)
        np.testing.assert_array_equal(h_out, h_ref)

        h_out = np.full(p.shape, np.nan, dtype)  # hess_out alone
        g, h = loss.grad_hess(p, y, hess_out=h_out, **kw)
        assert h is h_out and g is not h_out
        np.testing.assert_array_equal(h_out, h_ref)


def test_output_buffer_reused_across_calls(backend):
    """A training loop passes the same buffers every step: each call overwrites them completely."""
    g_out = np.empty(50)
    h_out = np.empty(50)
    rng = np.random.default_rng(0)
    for step in range(3):
        p, y = rng.normal(size=50), rng.normal(size=50)
        fl.huber.grad_hess(p, y, grad_out=g_out, hess_out=h_out, reduction="sum", backend=backend)
        d = p - y
        np.testing.assert_allclose(g_out, np.clip(d, -1, 1), rtol=1e-15)
        np.testing.assert_array_equal(h_out, (np.abs(d) <= 1).astype(float))


def test_repeated_calls_with_changing_arguments(backend):
    """What the dispatcher caches between calls (checked parameters, the resolved backend) never carries one
    call's arguments into the next: each call of a loop that changes a parameter, the reduction, the dtype,
    the shape or the weights gets its own result, and the buffer it passed."""
    rng = np.random.default_rng(1)
    p64, y64, w64 = rng.normal(size=12), rng.normal(size=12), rng.uniform(size=12)
    for _ in range(2):  # the second round finds everything cached
        for dtype in DTYPES:
            require_support(backend, "huber", dtype)
            for shape in ((12,), (3, 4)):
                p, y = p64.astype(dtype).reshape(shape), y64.astype(dtype).reshape(shape)
                for delta in (0.5, 2.0, 2, 0.5):  # 2 (an int) equals 2.0: the same checked value
                    for reduction in ("mean", "sum", "none"):
                        for w in (None, w64.reshape(shape)):
                            g_out = np.full(shape, np.nan, dtype)
                            v, g = fl.huber.value_and_grad(p, y, delta=delta, reduction=reduction, sample_weight=w,
                                                           grad_out=g_out, backend=backend)
                            ev, eg, _ = _reference.reduce_elementwise(
                                "huber", p, y, reduction=reduction, sample_weight=w, delta=float(delta))
                            what = f"{dtype} {shape} delta={delta!r} {reduction} weighted={w is not None}"
                            assert g is g_out, what
                            assert_close(v, ev, dtype, err_msg=what)
                            assert_close(g, eg, dtype, err_msg=what)


# --- hessian="ones" -------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["unweighted", "full", "leading"])
@pytest.mark.parametrize("name", WITH_HESSIAN)
def test_unit_hessian_is_weight_times_scale(backend, name, weighting):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (6, 3))
    w = make_weight(weighting, p.shape, np.float64)
    wb = broadcast_weight(w, p.shape)
    for reduction, scale in (("sum", 1.0), ("none", 1.0), ("mean", 1.0 / math.fsum(wb.ravel()))):
        kw = dict(reduction=reduction, sample_weight=w, backend=backend)
        g_exact, _ = loss.grad_hess(p, y, **kw)
        g, h = loss.grad_hess(p, y, hessian="ones", **kw)
        np.testing.assert_array_equal(g, g_exact)
        np.testing.assert_allclose(h, wb * scale, rtol=1e-15, atol=0, err_msg=reduction)
        h_out = np.full(p.shape, np.nan)
        _, h2 = loss.grad_hess(p, y, hessian="ones", hess_out=h_out, **kw)
        assert h2 is h_out
        np.testing.assert_array_equal(h_out, h)


def test_unit_hessian_unweighted_mean_is_one_over_n(backend):
    p = np.linspace(-1, 1, 8).astype(np.float32)
    _, h = fl.mae.grad_hess(p, np.zeros(8, np.float32), hessian="ones", backend=backend)
    assert h.dtype == np.float32
    np.testing.assert_array_equal(h, np.float32(1 / 8))


# --- argument forms and dtypes --------------------------------------------------------------------------


def test_lists_are_accepted(backend):
    assert fl.mse([1, 2, 3], [1, 1, 1], backend=backend) == pytest.approx(5 / 3, rel=1e-15)
    assert fl.mse([1.0, 2.0], [0, 0], reduction="sum", backend=backend) == 5.0
    g, h = fl.mse.grad_hess([[1, 2], [3, 4]], [[0, 0], [0, 0]], reduction="sum", backend=backend)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [[2.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(h, 2.0)
    v = fl.mse([1, 2], [0, 0], reduction="none", sample_weight=[1, 3], backend=backend)
    assert v.dtype == np.float64
    np.testing.assert_array_equal(v, [1.0, 12.0])


def test_scalars_are_accepted(backend):
    assert fl.mae(2.0, 0.5, backend=backend) == 1.5
    assert fl.huber(3, 0, backend=backend) == 2.5
    assert fl.mse(np.float64(2.0), np.float32(0.5), backend=backend) == 2.25
    g = fl.mse.grad(2.0, 0.5, backend=backend)
    assert isinstance(g, np.ndarray) and g.shape == () and g.dtype == np.float64 and g == 3.0
    v = fl.mse(np.float32(2.0), 0.5, reduction="none", backend=backend)
    assert v.shape == () and v.dtype == np.float32 and v == 2.25


def test_scalar_target_with_array_pred_is_a_shape_error(backend):
    with pytest.raises(ValueError, match="same shape"):
        fl.mse(np.array([1.0, 2.0]), 0.5, backend=backend)


def test_scalar_sample_weight_broadcasts(backend):
    """A 0-d weight is a leading part () of any shape, so it weights every element."""
    p, y = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    assert fl.mse(p, y, reduction="sum", sample_weight=np.array(2.0), backend=backend) == 10.0
    assert fl.mse(p, y, reduction="sum", sample_weight=2.0, backend=backend) == 10.0
    assert fl.mse(p, y, reduction="sum", sample_weight=2, backend=backend) == 10.0


@pytest.mark.parametrize("name", elementwise_names())
def test_float32_stays_float32(backend, name):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (9,), np.float32)
    y64 = y.astype(np.float64)  # a float64 target follows pred's dtype
    w64 = np.ones(9)
    v = loss(p, y64, reduction="none", sample_weight=w64, backend=backend)
    assert v.dtype == np.float32
    assert type(loss(p, y64, backend=backend)) is float
    if REGISTRY[name].differentiable:
        g = loss.grad(p, y64, sample_weight=w64, backend=backend)
        assert g.dtype == np.float32
        if REGISTRY[name].has_hessian:
            g, h = loss.grad_hess(p, y64, backend=backend)
            assert g.dtype == np.float32 and h.dtype == np.float32
    # and a float64 pred with a float32 target stays float64
    p64 = p.astype(np.float64)
    assert loss(p64, y, reduction="none", backend=backend).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
def test_empty_input(backend, shape, dtype):
    p = np.zeros(shape, dtype)
    y = np.zeros(shape, dtype)
    for name in elementwise_names():
        if not supported(backend, name, dtype):
            continue
        loss = loss_fn(name)
        s = loss(p, y, reduction="sum", backend=backend)
        assert type(s) is float and s == 0.0, name
        m = loss(p, y, reduction="mean", backend=backend)
        assert type(m) is float and math.isnan(m), name
        v = loss(p, y, reduction="none", backend=backend)
        assert v.shape == shape and v.dtype == dtype, name
        if REGISTRY[name].differentiable:
            for reduction in ("mean", "sum", "none"):
                g = loss.grad(p, y, reduction=reduction, backend=backend)
                assert g.shape == shape and g.dtype == dtype, name
                if REGISTRY[name].has_hessian:
                    g, h = loss.grad_hess(p, y, reduction=reduction, backend=backend)
                    assert g.shape == h.shape == shape and h.dtype == dtype, name
        # empty weights of a leading shape are fine too
        w = np.zeros(shape[:1], dtype)
        assert loss(p, y, reduction="sum", sample_weight=w, backend=backend) == 0.0


# --- NaN and inf ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", elementwise_names())
def test_nan_in_pred_propagates(backend, name, dtype):
    """No exception and no warning; the NaN shows in the reduced value, in that element's value and
    gradient, and nowhere else."""
    require_support(backend, name, dtype)
    loss = loss_fn(name)
    p, y = _data(name, (12,), dtype)
    p[4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(loss(p, y, reduction="sum", backend=backend))
        assert math.isnan(loss(p, y, reduction="mean", backend=backend))
        v = loss(p, y, reduction="none", backend=backend)
        assert np.isnan(v[4]) and np.isfinite(np.delete(v, 4)).all()
        if REGISTRY[name].differentiable:
            g = loss.grad(p, y, reduction="sum", backend=backend)
            assert np.isnan(g[4]), f"{name}: gradient at a NaN prediction is {g[4]}, not NaN"
            assert np.isfinite(np.delete(g, 4)).all()
            # under "mean" every gradient entry is scaled by 1/N, which the NaN does not touch
            g = loss.grad(p, y, reduction="mean", backend=backend)
            assert np.isfinite(np.delete(g, 4)).all()


@pytest.mark.parametrize("name", elementwise_names())
def test_nan_in_target_propagates(backend, name):
    require_support(backend, name)
    if REGISTRY[name].target_domain == "sign":
        pytest.skip(f"{name}: class-sign targets are read as y > 0 (NaN counts as the negative class)")
    loss = loss_fn(name)
    p, y = _data(name, (12,))
    y[7] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = loss(p, y, reduction="none", backend=backend)
        assert np.isnan(v[7]) and np.isfinite(np.delete(v, 7)).all()
        if REGISTRY[name].differentiable:
            g = loss.grad(p, y, reduction="none", backend=backend)
            assert np.isnan(g[7]) and np.isfinite(np.delete(g, 7)).all()


def test_nan_and_inf_match_reference(backend):
    """Non-finite inputs through every loss give what the reference gives, element by element."""
    for name in elementwise_names():
        if not supported(backend, name, np.float64):
            continue
        spec = REGISTRY[name]
        kw = full_params(name)
        p, y = _data(name, (10,))
        bad_p = [np.nan, np.inf, -np.inf]
        if spec.pred_domain_for(kw) != "real":
            bad_p = [np.nan, np.inf] if spec.pred_domain_for(kw) == "nonnegative" else [np.nan]
        bad_y = [np.nan] if spec.target_domain == "sign" else ([np.nan, np.inf] if spec.target_domain != "unit"
                                                              else [np.nan])
        for i, b in enumerate(bad_p):
            p[i] = b
        for i, b in enumerate(bad_y):
            y[5 + i] = b
        loss = loss_fn(name)
        ev, eg, eh = _reference.elementwise(name, p, y, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            v = loss(p, y, reduction="none", backend=backend)
            assert_close(v, ev, np.float64, 1.0, f"{name} value")
            if spec.differentiable:
                g, h = loss.grad_hess(p, y, reduction="none", backend=backend)
                assert_close(g, eg, np.float64, 1.0, f"{name} gradient")
                assert_close(h, eh, np.float64, 1.0, f"{name} hessian")


def test_inf_in_mse(backend):
    v, g = fl.mse.value_and_grad(np.array([np.inf, 1.0]), np.array([0.0, 0.0]), reduction="sum", backend=backend)
    assert v == math.inf and g[0] == math.inf and g[1] == 2.0


# --- input layouts ----------------------------------------------------------------------------------------


def _all_results(loss, p, y, w, backend):
    out = [loss(p, y, reduction=r, sample_weight=w, backend=backend) for r in ("mean", "sum", "none")]
    if loss.spec.differentiable:
        out += list(loss.grad_hess(p, y, reduction="mean", sample_weight=w, backend=backend))
    return out


def _same(a, b, what):
    for x, z in zip(a, b):
        if isinstance(x, float):
            assert x == z or (math.isnan(x) and math.isnan(z)), what
        else:
            np.testing.assert_array_equal(x, z, err_msg=what)


@pytest.mark.parametrize("name", elementwise_names())
def test_noncontiguous_bigendian_readonly_inputs(backend, name):
    require_support(backend, name)
    loss = loss_fn(name)
    p, y = _data(name, (8, 6))
    w = make_weight("full", p.shape, np.float64)
    base = _all_results(loss, p, y, w, backend)

    # non-contiguous: every other column of a wider array, and a transposed (F-ordered) view
    wide_p, wide_y, wide_w = (np.repeat(a, 2, axis=1) for a in (p, y, w))
    _same(_all_results(loss, wide_p[:, ::2], wide_y[:, ::2], wide_w[:, ::2], backend), base, "strided")
    _same(_all_results(loss, p.T.copy().T, y.T.copy().T, w.T.copy().T, backend), base, "Fortran order")
    # big-endian
    be = [a.astype(">f8") for a in (p, y, w)]
    _same(_all_results(loss, *be, backend), base, "big-endian")
    # read-only
    ro = [a.copy() for a in (p, y, w)]
    for a in ro:
        a.flags.writeable = False
    _same(_all_results(loss, *ro, backend), base, "read-only")


@pytest.mark.parametrize("name,params", loss_cases())
def test_inputs_are_never_modified(backend, name, params):
    require_support(backend, name)
    spec = REGISTRY[name]
    loss = loss_fn(name)
    for dtype in DTYPES:
        case = make_case(name, params, (40,), dtype, seed=9)
        w = make_weight("full", case.rows, dtype)
        args = (*case.arrays, w)
        copies = [a.copy() for a in args]
        entries = [loss]
        if spec.differentiable:
            entries += [loss.value_and_grad, loss.grad]
        calls = [lambda r, entry=entry: entry(*case.arrays, reduction=r, sample_weight=w, backend=backend, **params)
                 for entry in entries]
        if spec.differentiable and spec.has_hessian:
            calls += [
                lambda r: loss.grad_hess(*case.arrays, reduction=r, sample_weight=w, backend=backend, **params),
                lambda r: loss.grad_hess(*case.arrays, reduction=r, sample_weight=w, backend=backend, hessian="ones",
                                         **params),
            ]
        for call in calls:
            for reduction in ("mean", "sum", "none"):
                call(reduction)
                for k, (a, c) in enumerate(zip(args, copies)):
                    what = "sample_weight" if k == len(case.arrays) else f"argument {k}"
                    np.testing.assert_array_equal(a, c, err_msg=f"{name}: {what} was modified")


# --- the registry listing and the exported objects --------------------------------------------------------


def test_losses_lists_every_registry_entry():
    listed = fl.losses()
    assert [d["name"] for d in listed] == list(REGISTRY)
    for d in listed:
        spec = REGISTRY[d["name"]]
        assert d["params"] == {p.name: p.default for p in spec.params}
        assert d["kind"] == spec.kind
        assert d["formula"] == spec.formula and d["summary"] == spec.summary
        assert d["differentiable"] == spec.differentiable and d["has_hessian"] == spec.has_hessian
    by_name = {d["name"]: d for d in listed}
    assert by_name["huber"]["params"] == {"delta": 1.0}
    assert by_name["quantile"]["params"] == {"quantile": 0.5}
    assert by_name["tweedie"]["params"] == {"power": 1.5}
    assert by_name["poisson_nll"]["params"] == {"log_input": True, "eps": 1e-8}
    assert by_name["smooth_l1"]["params"] == {"beta": 1.0}
    assert by_name["mse"]["params"] == {}


def test_loss_objects_exported_at_top_level():
    for name, spec in REGISTRY.items():
        obj = getattr(fl, name)
        assert isinstance(obj, fl.Loss)
        assert obj.name == name and obj.spec is spec
        assert name in fl.__all__
        assert spec.formula in obj.__doc__
        assert name in repr(obj)
        for p in spec.params:
            assert p.name in obj.__doc__ and f"{p.name}={p.default!r}" in repr(obj)
    for helper in ("backends", "losses", "set_backend", "use_backend", "get_backend", "set_num_threads",
                   "get_num_threads", "BackendUnavailable", "Loss"):
        assert hasattr(fl, helper) and helper in fl.__all__
    assert issubclass(fl.BackendUnavailable, RuntimeError)


def test_parameters_change_the_result(backend):
    """Keyword parameters reach the kernel (not only the defaults)."""
    p, y = np.array([0.0, 3.0]), np.array([0.0, 0.0])
    assert fl.huber(p, y, reduction="sum", delta=2.0, backend=backend) == pytest.approx(4.0)
    assert fl.huber(p, y, reduction="sum", backend=backend) == pytest.approx(2.5)
    assert fl.quantile(np.array([0.0]), np.array([1.0]), quantile=0.9, backend=backend) == pytest.approx(0.9)
    assert fl.smooth_l1(np.array([0.5]), np.array([0.0]), beta=0.0, backend=backend) == 0.5
    assert fl.poisson_nll(np.array([2.0]), np.array([2.0]), log_input=False, eps=0.0,
                          backend=backend) == pytest.approx(2 - 2 * math.log(2))
    assert fl.tweedie(np.array([0.0]), np.array([2.0]), power=1.25, backend=backend) == pytest.approx(4 / 3 + 8)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_losses_pickle_by_name(name):
    """A loss inside a pickled object (an objective, a module, a partial) comes back as the same object."""
    import pickle

    assert pickle.loads(pickle.dumps(getattr(fl, name))) is getattr(fl, name)
