"""Every bad input raises a clear exception that names the argument (and the offending value or shape).

Validation happens once, in the dispatcher, before any backend runs; the checks are repeated for every
host backend asked for explicitly, so that no backend path skips them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import backend_skip_reason, elementwise_names, full_params, loss_fn, make_data

P = np.array([0.5, 1.0, 2.0])
Y = np.array([0.0, 1.0, 3.0])


def _raises(exc, *fragments):
    """pytest.raises that also requires every fragment (plain text, not a regex) in the message."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# --- shapes and dtypes ------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes(backend):
    with _raises(ValueError, "mse", "pred", "target", "(3,)", "(4,)"):
        fl.mse(P, np.zeros(4), backend=backend)
    with _raises(ValueError, "(2, 3)", "(3, 2)"):
        fl.huber.grad(np.zeros((2, 3)), np.zeros((3, 2)), backend=backend)
    with _raises(ValueError, "(3,)", "(1, 3)"):  # no broadcasting between pred and target
        fl.mae.grad_hess(P, Y[None, :], backend=backend)


@pytest.mark.parametrize("bad", [np.arange(3), np.arange(3, dtype=np.uint8), np.array([True, False, True]),
                                 P.astype(np.complex128)], ids=["int64", "uint8", "bool", "complex"])
def test_non_floating_pred_is_rejected(backend, bad):
    with _raises(TypeError, "mse", "pred", str(bad.dtype)):
        fl.mse(bad, Y, backend=backend)
    with _raises(TypeError, "pred"):
        fl.mse.value_and_grad(bad, Y, backend=backend)


def test_float16_pred_is_rejected(backend):
    with _raises(TypeError, "pred", "float16", "float32"):
        fl.mse(P.astype(np.float16), Y, backend=backend)


@pytest.mark.parametrize("what", ["target", "sample_weight"])
def test_complex_or_object_second_operands_are_rejected(backend, what):
    kw = {"target": Y, "sample_weight": None}
    kw[what] = Y.astype(np.complex128)
    with _raises(TypeError, what, "complex"):
        fl.mse(P, kw["target"], sample_weight=kw["sample_weight"], backend=backend)
    kw[what] = np.array(["a", "b", "c"])
    with _raises(TypeError, what):
        fl.mse(P, kw["target"], sample_weight=kw["sample_weight"], backend=backend)


def test_wrong_sample_weight_shape(backend):
    with _raises(ValueError, "sample_weight", "(3,)", "(2,)"):
        fl.mse(P, Y, sample_weight=np.ones(2), backend=backend)
    with _raises(ValueError, "sample_weight", "(2, 3)", "(3,)"):  # a trailing part is not a leading part
        fl.mse(np.zeros((2, 3)), np.zeros((2, 3)), sample_weight=np.ones(3), backend=backend)
    with _raises(ValueError, "sample_weight", "(3, 1)"):  # more axes than pred
        fl.mse(P, Y, sample_weight=np.ones((3, 1)), backend=backend)


def test_negative_weights_name_value_and_index(backend):
    with _raises(ValueError, "sample_weight", ">= 0", "-2.0", "(1,)"):
        fl.mse(P, Y, sample_weight=np.array([1.0, -2.0, 1.0]), backend=backend)
    with _raises(ValueError, "sample_weight", "-0.5", "(1, 0)"):
        fl.mse.grad(np.zeros((2, 2)), np.zeros((2, 2)), sample_weight=np.array([[1.0, 1.0], [-0.5, 1.0]]),
                    backend=backend)


def test_negative_weight_is_found_next_to_a_nan(backend):
    """A NaN weight must not hide a negative one (min() of an array with a NaN is NaN)."""
    with _raises(ValueError, "sample_weight", "-1.0"):
        fl.mse(P, Y, sample_weight=np.array([np.nan, -1.0, 1.0]), backend=backend)


@pytest.mark.parametrize("bad", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nonfinite_weights_are_refused_for_every_reduction(backend, bad, reduction):
    """A nan or infinite weight is refused (as ctc, the pairwise and the overlap losses refuse it), named with its
    value and index, by every method and reduction; weights of a leading shape are indexed in pred's shape. Finite
    weights whose sum overflows are not refused."""
    x = np.zeros((2, 3))
    w = np.ones((2, 3))
    w[1, 2] = bad
    for method in (fl.mse, fl.mse.value_and_grad, fl.mse.grad, fl.mse.grad_hess):
        with _raises(ValueError, "mse: sample_weight must be finite and >= 0", repr(bad), "(1, 2)"):
            method(x, x, reduction=reduction, sample_weight=w, backend=backend)
        with _raises(ValueError, "sample_weight must be finite and >= 0", repr(bad), "(1, 0)"):
            method(x.astype(np.float32), x, reduction=reduction, sample_weight=np.array([1.0, bad]), backend=backend)
    with _raises(ValueError, "sample_weight must be finite and >= 0", repr(bad)):
        fl.mse.partial(x, x, sample_weight=w, backend=backend)
    # finite weights whose sum overflows are not refused (fit_weights scales them for "mean")
    big = np.array([np.finfo(np.float64).max] * 2)
    value = fl.mse(np.zeros(2), np.ones(2), reduction=reduction, sample_weight=big, backend=backend)
    if reduction == "none":
        assert np.array_equal(value, big)
    else:
        assert value == (pytest.approx(1.0) if reduction == "mean" else np.inf)


@pytest.mark.parametrize("bad", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nonfinite_row_weights_of_multiclass_losses_are_refused(backend, bad, reduction):
    """Also on a row that ignore_index leaves out, and with soft targets."""
    x = np.zeros((3, 4))
    w = np.array([1.0, bad, 1.0])
    targets = (np.array([0, 1, 2]), np.array([0, -100, 2]), np.full((3, 4), 0.25))
    for t in targets:
        for method in (fl.cross_entropy, fl.cross_entropy.value_and_grad, fl.cross_entropy.grad,
                       fl.cross_entropy.grad_hess):
            with _raises(ValueError, "cross_entropy: sample_weight must be finite and >= 0", repr(bad), "(1,)"):
                method(x, t, reduction=reduction, sample_weight=w, backend=backend)


@pytest.mark.parametrize("what", ["pred", "target", "sample_weight"])
def test_ragged_sequences_are_refused_by_name(backend, what):
    args = {"pred": [[0.5, 1.0], [2.0, 3.0]], "target": [[0.0, 1.0], [3.0, 2.0]],
            "sample_weight": [[1.0, 1.0], [1.0, 2.0]]}
    args[what] = [[1.0, 2.0], [3.0]]
    with _raises(ValueError, f"mse: {what} is a ragged sequence", "different lengths"):
        fl.mse(args["pred"], args["target"], sample_weight=args["sample_weight"], backend=backend)
    with _raises(ValueError, "cross_entropy: target is a ragged sequence"):
        fl.cross_entropy(np.zeros((2, 3)), [[0, 1], [2]], backend=backend)
    with _raises(ValueError, "margin_ranking: sample_weight is a ragged sequence"):
        fl.margin_ranking(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2)), sample_weight=[[1.0, 1.0], [1.0]])


# --- parameters, reduction, hessian mode ------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,fragments", [
    ("huber", {"delta": 0.0}, ["delta", "> 0", "0.0"]),
    ("huber", {"delta": -1.0}, ["delta", "-1.0"]),
    ("huber", {"delta": float("nan")}, ["delta", "nan"]),
    ("huber", {"delta": float("inf")}, ["delta", "inf"]),
    ("pseudo_huber", {"delta": 0.0}, ["delta", "0.0"]),
    ("smooth_l1", {"beta": -0.1}, ["beta", "-0.1"]),
    ("quantile", {"quantile": 0.0}, ["quantile", "(0, 1)", "0.0"]),
    ("quantile", {"quantile": 1.0}, ["quantile", "(0, 1)", "1.0"]),
    ("quantile", {"quantile": 1.5}, ["quantile", "1.5"]),
    ("tweedie", {"power": 0.5}, ["power", "<= 0 or >= 1", "0.5"]),
    ("tweedie", {"power": 1e-9}, ["power", "<= 0 or >= 1", "1e-09"]),
    ("tweedie", {"power": float("inf")}, ["power", "inf"]),
    ("tweedie", {"power": float("nan")}, ["power", "nan"]),
    ("poisson_nll", {"eps": -1e-3}, ["eps", "-0.001"]),
])
def test_invalid_parameter_values(backend, name, kw, fragments):
    loss = loss_fn(name)
    p, y = (np.abs(P), Y)
    with _raises(ValueError, name, *fragments):
        loss(p, y, backend=backend, **kw)
    with _raises(ValueError, name, *fragments):
        loss.grad_hess(p, y, backend=backend, **kw)


def test_wrongly_typed_parameters():
    with _raises(TypeError, "huber", "delta"):
        fl.huber(P, Y, delta="big")
    with _raises(TypeError, "poisson_nll", "log_input"):
        fl.poisson_nll(P, Y, log_input="yes")
    # numbers written as text are refused, not parsed (float("0.5") would take them)
    with _raises(TypeError, "huber", "delta", "expected a real number, got str '0.5'"):
        fl.huber(P, Y, delta="0.5")
    with _raises(TypeError, "cross_entropy", "label_smoothing", "got str '0.1'"):
        fl.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing="0.1")
    with _raises(TypeError, "multi_margin", "p", "expected an integer, got str '1'"):
        fl.multi_margin(np.zeros((2, 3)), np.array([0, 1]), p="1")
    with _raises(TypeError, "ctc", "blank", "expected an integer, got str '0'"):
        fl.ctc(np.zeros((8, 1, 5)), np.array([[1, 2]]), [8], [2], blank="0")
    assert fl.huber(P, Y, delta=np.float32(0.5)) == fl.huber(P, Y, delta=0.5)


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.kind != "sequence"))  # (pred, target) calls
def test_unknown_keyword_names_it_and_the_valid_ones(name):
    spec = REGISTRY[name]
    loss = loss_fn(name)
    with _raises(TypeError, name, "unknown keyword", "not_a_param", *spec.param_names):
        loss(P, Y, not_a_param=1.0)
    if spec.differentiable:
        with _raises(TypeError, "not_a_param"):
            loss.grad(P, Y, not_a_param=1.0)


def test_parameter_validation_does_not_depend_on_earlier_calls():
    """A value refused on its own is refused after an equal-comparing valid one was used (True == 1)."""
    if "multi_margin" not in REGISTRY:
        pytest.skip("multi_margin is not registered")
    x, t = np.zeros((2, 3)), np.array([0, 1])
    with _raises(TypeError, "multi_margin", "p", "bool"):
        fl.multi_margin(x, t, p=True)
    fl.multi_margin(x, t, p=1)
    with _raises(TypeError, "multi_margin", "p", "bool"):
        fl.multi_margin(x, t, p=True)


def test_positional_parameters_are_refused():
    with pytest.raises(TypeError):
        fl.huber(P, Y, "mean")  # reduction and every parameter are keyword-only


@pytest.mark.parametrize("reduction", ["avg", "MEAN", None, ""])
def test_unknown_reduction(backend, reduction):
    with _raises(ValueError, "reduction", "'mean', 'sum', 'none'", repr(reduction)):
        fl.mse(P, Y, reduction=reduction, backend=backend)
    with _raises(ValueError, "reduction"):
        fl.mse.grad(P, Y, reduction=reduction, backend=backend)


def test_unknown_hessian_mode(backend):
    with _raises(ValueError, "hessian", "'exact'", "'ones'", "'zero'"):
        fl.mse.grad_hess(P, Y, hessian="zero", backend=backend)


def test_non_differentiable_loss_refuses_derivatives():
    for name, spec in REGISTRY.items():
        if spec.differentiable or spec.kind != "elementwise":
            continue
        loss = loss_fn(name)
        p, y = make_data(name, {}, (4,), np.float64)
        loss(p, y)  # the value is fine
        for entry in (loss.value_and_grad, loss.grad, loss.grad_hess):
            with _raises(TypeError, name, "not differentiable"):
                entry(p, y)


# --- backends -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpu", "Numpy", "", "c++"])
def test_unknown_backend(name):
    with _raises(ValueError, "backend", repr(name), "'numpy'", "'cpp'"):
        fl.mse(P, Y, backend=name)


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_explicit_unavailable_backend_raises_with_the_import_error(name):
    reason = backend_skip_reason(name)
    if reason is None:
        pytest.skip(f"backend {name!r} is available here (the forced case is in test_config)")
    with pytest.raises(fl.BackendUnavailable, match=name) as info:
        fl.mse(P, Y, backend=name)
    assert "not available" in str(info.value)
    assert info.value.__cause__ is not None, "the original import error must be chained"


def test_cuda_backend_with_host_arrays(backend):
    with _raises(ValueError, "cuda", "device arrays", "host"):
        fl.mse(P, Y, backend="cuda")
    with _raises(ValueError, "cuda", "device"):
        fl.huber.grad_hess(P, Y, backend="cuda")


# --- output buffers ------------------------------------------------------------------------------------------


def test_grad_out_checks(backend):
    kw = dict(backend=backend)
    with _raises(ValueError, "grad_out", "(3,)", "(4,)"):
        fl.mse.grad(P, Y, grad_out=np.empty(4), **kw)
    with _raises(ValueError, "grad_out", "(3,)", "(3, 1)"):
        fl.mse.grad(P, Y, grad_out=np.empty((3, 1)), **kw)
    with _raises(TypeError, "grad_out", "float64", "float32"):
        fl.mse.grad(P, Y, grad_out=np.empty(3, np.float32), **kw)
    with _raises(TypeError, "grad_out", "ndarray", "list"):
        fl.mse.grad(P, Y, grad_out=[0.0, 0.0, 0.0], **kw)
    with _raises(ValueError, "grad_out", "contiguous"):
        fl.mse.grad(P, Y, grad_out=np.empty(6)[::2], **kw)
    with _raises(ValueError, "grad_out", "contiguous"):
        fl.mse.grad(np.zeros((3, 2)), np.zeros((3, 2)), grad_out=np.empty((2, 3)).T, **kw)
    ro = np.empty(3)
    ro.flags.writeable = False
    with _raises(ValueError, "grad_out", "read-only"):
        fl.mse.grad(P, Y, grad_out=ro, **kw)
    with _raises(ValueError, "grad_out", "read-only"):
        fl.mse.value_and_grad(P, Y, grad_out=ro, **kw)
    class Sub(np.ndarray):
        pass

    with _raises(TypeError, "grad_out", "ndarray", "Sub"):  # a subclass could override writes
        fl.mse.value_and_grad(P, Y, grad_out=np.empty(3).view(Sub), **kw)


def test_arrays_changed_in_place_between_calls_are_checked_again(backend):
    """Nothing about an array is remembered from an earlier call that accepted it: a buffer made read-only
    or reshaped in place, or an input reshaped in place, is refused on the next call."""
    p, y, g = P.copy(), Y.copy(), np.empty(3)
    x, labels, gx = np.zeros((3, 4)), np.array([0, 1, 3]), np.empty((3, 4))
    for _ in range(2):
        fl.mse.value_and_grad(p, y, grad_out=g, backend=backend)
        fl.cross_entropy.value_and_grad(x, labels, grad_out=gx, backend=backend)
    g.flags.writeable = gx.flags.writeable = False
    with _raises(ValueError, "grad_out", "read-only"):
        fl.mse.value_and_grad(p, y, grad_out=g, backend=backend)
    with _raises(ValueError, "grad_out", "read-only"):
        fl.cross_entropy.value_and_grad(x, labels, grad_out=gx, backend=backend)
    g.flags.writeable = gx.flags.writeable = True
    g.shape, gx.shape = (3, 1), (4, 3)
    with _raises(ValueError, "grad_out", "(3,)", "(3, 1)"):
        fl.mse.value_and_grad(p, y, grad_out=g, backend=backend)
    with _raises(ValueError, "grad_out", "(3, 4)", "(4, 3)"):
        fl.cross_entropy.value_and_grad(x, labels, grad_out=gx, backend=backend)
    g.shape, gx.shape = (3,), (3, 4)
    y.shape = (1, 3)
    with _raises(ValueError, "same shape", "(3,)", "(1, 3)"):
        fl.mse.value_and_grad(p, y, grad_out=g, backend=backend)
    labels[1] = 4
    with _raises(ValueError, "label 4", "(1,)"):
        fl.cross_entropy.value_and_grad(x, labels, grad_out=gx, backend=backend)


def test_hess_out_checks(backend):
    kw = dict(backend=backend)
    with _raises(ValueError, "hess_out", "(3,)", "(2,)"):
        fl.mse.grad_hess(P, Y, hess_out=np.empty(2), **kw)
    with _raises(TypeError, "hess_out", "float32"):
        fl.mse.grad_hess(P.astype(np.float32), Y, hess_out=np.empty(3), **kw)
    ro = np.empty(3)
    ro.flags.writeable = False
    with _raises(ValueError, "hess_out", "read-only"):
        fl.mse.grad_hess(P, Y, hess_out=ro, **kw)


def test_grad_out_overlapping_hess_out(backend):
    buf = np.empty(3)
    with _raises(ValueError, "grad_out", "hess_out", "overlap"):
        fl.mse.grad_hess(P, Y, grad_out=buf, hess_out=buf, backend=backend)
    big = np.empty(5)
    with _raises(ValueError, "overlap"):
        fl.mse.grad_hess(P, Y, grad_out=big[:3], hess_out=big[2:], backend=backend)
    # and an outright failure leaves no half-written output behind
    g = np.full(3, 7.0)
    with pytest.raises(ValueError):
        fl.mse.grad_hess(P, Y, grad_out=g, hess_out=g, backend=backend)
    np.testing.assert_array_equal(g, 7.0)


# --- domains -------------------------------------------------------------------------------------------------


def _target_domain(name: str) -> str:
    spec = REGISTRY[name]
    return spec.target_domain_for(spec.defaults())


# The domain checks read an array's extremes (NaN skipped) in one compiled pass over fixed blocks, on the
# kernels' threads: a value outside the domain is found in any block, next to NaNs, at every thread count.
@pytest.mark.skipif(backend_skip_reason("cpp") is not None, reason=str(backend_skip_reason("cpp")))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_extremes_skip_nan_and_match_numpy(dtype):
    from fusedloss import _core

    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 4096, 4097, 100_003):
        x = rng.normal(size=n).astype(dtype)
        x[rng.random(n) < 0.1] = np.nan
        for threads in (1, 2):
            lo, hi = _core.extremes(x, threads)
            if n == 0 or np.isnan(x).all():
                assert (lo, hi) == (np.inf, -np.inf)
            else:
                assert (lo, hi) == (float(np.nanmin(x)), float(np.nanmax(x)))
            # the weights' pass: the same extremes and the compensated sum's bits (nan in, nan out)
            lo2, hi2, total = _core.extremes_and_sum(x, threads)
            assert (lo2, hi2) == (lo, hi)
            assert total == _core.sum(x, threads) or (np.isnan(total) and np.isnan(_core.sum(x, threads)))
            kept = x[~np.isnan(x)]
            assert _core.extremes_and_sum(kept, threads)[2] == _core.sum(kept, 1)
    x = np.full(9000, np.nan, dtype)
    x[8999] = -3.0  # the last element of the last block, the only one that is not NaN
    assert _core.extremes(x, 2) == (-3.0, -3.0)
    raw = np.zeros(8 * 5000 + 1, np.uint8)[1:].view(dtype)  # misaligned
    raw[:] = 0.25
    raw[-1] = 7.0
    assert _core.extremes(raw, 2) == (0.25, 7.0)
    assert _core.extremes_and_sum(raw, 2) == (0.25, 7.0, 0.25 * (raw.size - 1) + 7.0)
    for scan in (_core.extremes, _core.extremes_and_sum):
        with pytest.raises(TypeError, match="float32 or float64"):
            scan(np.zeros(3, np.int64), 1)
        with pytest.raises(TypeError, match="C-contiguous"):
            scan(np.zeros((4, 4), dtype)[:, 0], 1)
        with pytest.raises(ValueError, match="nthreads must be >= 1"):
            scan(np.zeros(3, dtype), 0)


@pytest.mark.parametrize("domain,bad", [("nonnegative", -1e-30), ("positive", 0.0), ("positive", -0.0),
                                        ("above_minus_one", -1.0), ("unit", 1.0000001), ("unit", -np.inf)])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_value_outside_the_domain_is_found_in_any_block(domain, bad, threads):
    from fusedloss._validate import _check_domain

    before = fl.get_num_threads()
    fl.set_num_threads(threads)
    try:
        for dtype in (np.float32, np.float64):
            ok = np.full(200_000, 0.5, dtype)
            ok[::7] = np.nan
            _check_domain(ok, domain, "target", "loss")  # NaN passes
            for at in (0, 4095, 4096, 123_457, 199_999):
                arr = ok.copy()
                arr[at] = bad
                with _raises(ValueError, "loss: target", f"at index ({at},)"):
                    _check_domain(arr, domain, "target", "loss")
    finally:
        fl.set_num_threads(before)


@pytest.mark.parametrize("name", [n for n in elementwise_names() if _target_domain(n) == "nonnegative"])
def test_negative_target_names_value_and_index(backend, name):
    loss = loss_fn(name)
    y = np.array([1.0, 0.0, -2.5, 3.0])
    p = np.full(4, 0.5)
    with _raises(ValueError, name, "target", ">= 0", "-2.5", "(2,)"):
        loss(p, y, backend=backend)
    if REGISTRY[name].differentiable:
        with _raises(ValueError, "target", "-2.5"):
            loss.grad_hess(p, y, backend=backend)
    with _raises(ValueError, "target", "-1.0", "(1, 0)"):
        loss(np.full((2, 2), 0.5), np.array([[1.0, 2.0], [-1.0, 0.0]]), backend=backend)
    # y = 0 is inside the domain
    loss(p[:2], y[:2], backend=backend)


@pytest.mark.parametrize("name", [n for n in elementwise_names() if _target_domain(n) == "nonnegative"])
def test_negative_target_is_found_next_to_a_nan(backend, name):
    """A NaN target passes (it propagates) but must not hide a negative one elsewhere in the array."""
    with _raises(ValueError, "target", "-3.0", "(2,)"):
        loss_fn(name)(np.full(3, 0.5), np.array([1.0, np.nan, -3.0]), backend=backend)


@pytest.mark.parametrize("name", [n for n in elementwise_names() if _target_domain(n) == "positive"])
def test_target_zero_or_negative_where_positive_is_required(backend, name):
    """Targets > 0: zero is outside the domain too (gamma: log y), found also next to a NaN."""
    loss = loss_fn(name)
    p = np.full(4, 0.5)
    with _raises(ValueError, name, "target", "> 0", "0.0", "(1,)"):
        loss(p, np.array([1.0, 0.0, 2.0, 3.0]), backend=backend)
    with _raises(ValueError, "target", "-2.5", "(1, 0)"):
        loss(np.full((2, 2), 0.5), np.array([[1.0, 2.0], [-2.5, np.nan]]), backend=backend)
    with _raises(ValueError, "target", "-1.0", "(2,)"):
        loss.grad_hess(p[:3], np.array([np.nan, 1.0, -1.0]), backend=backend)
    loss(p[:2], np.array([5e-324, 1e300]), backend=backend)  # the smallest positive number is inside


@pytest.mark.parametrize("name", [n for n in elementwise_names() if _target_domain(n) == "above_minus_one"])
def test_values_at_or_below_minus_one_where_above_is_required(backend, name):
    """pred and target > -1 (log1p of both): -1 itself is outside, found also next to a NaN."""
    loss = loss_fn(name)
    ok = np.array([0.5, -0.5, 2.0])
    with _raises(ValueError, name, "target", "> -1", "-1.0", "(1,)"):
        loss(ok, np.array([0.0, -1.0, 1.0]), backend=backend)
    with _raises(ValueError, name, "pred", "> -1", "-2.0", "(2,)"):
        loss(np.array([np.nan, 0.0, -2.0]), ok, backend=backend)
    with _raises(ValueError, "pred", "-1.0"):
        loss.grad_hess(np.array([-1.0, 0.0, 0.0]), ok, backend=backend)
    loss(np.array([np.nextafter(-1.0, 0.0), 1e300]), ok[:2], backend=backend)  # the next number up is inside


def test_negative_rate_for_poisson_without_log_input(backend):
    p = np.array([0.5, -0.25, 1.0])
    with _raises(ValueError, "poisson_nll", "pred", ">= 0", "-0.25", "(1,)"):
        fl.poisson_nll(p, Y, log_input=False, backend=backend)
    with _raises(ValueError, "pred", "-0.25"):
        fl.poisson_nll.grad(p, Y, log_input=False, backend=backend)
    # log_input=True takes any real pred
    fl.poisson_nll(p, Y, backend=backend)


@pytest.mark.parametrize("name", [n for n in elementwise_names() if _target_domain(n) == "unit"])
def test_target_outside_unit_interval(backend, name):
    loss = loss_fn(name)
    p, y = make_data(name, {}, (4,), np.float64)
    y = y.copy()
    y[3] = 1.5
    with _raises(ValueError, name, "target", "1.5", "(3,)"):
        loss(p, y, backend=backend)


@pytest.mark.parametrize("name", [n for n in elementwise_names()
                                  if REGISTRY[n].pred_domain_for(full_params(n)) == "unit"])
def test_pred_outside_unit_interval(backend, name):
    loss = loss_fn(name)
    p, y = make_data(name, {}, (4,), np.float64)
    p = p.copy()
    p[1] = -0.25
    with _raises(ValueError, name, "pred", "-0.25", "(1,)"):
        loss(p, y, backend=backend)


def test_uint64_labels_beyond_int64_are_out_of_range_not_ignored():
    """2**64 - 100 would wrap to -100 (the default ignore_index) in int64: it must be reported, not ignored."""
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"label 18446744073709551516 at index \(2,\) is out of range"):
        fl.cross_entropy(x, np.array([0, 1, 2**64 - 100], dtype=np.uint64))
    assert fl.cross_entropy(x, np.array([0, 1, 3], dtype=np.uint64)) == pytest.approx(np.log(4))


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70])
def test_ignore_index_must_fit_int64(value):
    with pytest.raises(ValueError, match="ignore_index must be an integer that fits int64"):
        fl.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=value)


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.vector_param))
@pytest.mark.parametrize("bad", [np.array([1.0, 2.0j, 1.0]), np.array(["1", "2", "3"])], ids=["complex", "text"])
def test_vector_parameters_must_be_real_numbers(name, bad):
    """A per-class or per-column vector of complex numbers or text is refused, naming it (a cast to float64
    would drop the imaginary part, or parse the text)."""
    spec = REGISTRY[name]
    loss = loss_fn(name)
    if spec.kind == "multiclass":
        x, t = np.zeros((2, 3)), np.array([0, 2])
    else:
        x, t = np.full((2, 3), 0.5), np.zeros((2, 3))
    with _raises(TypeError, name, spec.vector_param, "real numbers", str(bad.dtype)):
        loss(x, t, **{spec.vector_param: bad})


def test_tweedie_target_domain_follows_the_power(backend):
    """scikit-learn's Tweedie domains: y real for rho <= 0, y >= 0 for 1 <= rho < 2, y > 0 for rho >= 2."""
    p = np.array([0.5, -0.25, 1.0])
    for power in (0.0, -1.0):
        assert np.isfinite(fl.tweedie(p, np.array([-2.0, 0.0, 3.0]), power=power, backend=backend))
    for power in (1.0, 1.5):
        assert np.isfinite(fl.tweedie(p, np.array([0.0, 0.0, 3.0]), power=power, backend=backend))
        with pytest.raises(ValueError, match=r"tweedie.*target.*-2\.0"):
            fl.tweedie(p, np.array([1.0, -2.0, 3.0]), power=power, backend=backend)
    for power in (2.0, 3.0):
        with pytest.raises(ValueError, match=r"tweedie.*target.*0\.0"):
            fl.tweedie(p, np.array([1.0, 0.0, 3.0]), power=power, backend=backend)
