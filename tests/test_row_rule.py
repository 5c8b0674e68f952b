"""Non-finite logits in multiclass rows, and weighted means whose sums overflow (README, "Guarantees").

The rule, for every multiclass loss in the registry and every target form, option variant, backend, dtype and
reduction: a kept row with a NaN logit, or whose logits are all -inf, has value NaN and NaN in every element of
its gradient and Hessian; an ignored row (``ignore_index``, or sample weight 0) is exactly 0 whatever its logits
hold; every other row is what it would be alone. Masked classes (-inf logits beside finite ones) and +inf logits
follow the formula: every backend gives the reference's numbers there.

"mean" with weights whose sum (or the sum of weight times loss) leaves the float range, while the mean itself
does not, gives the mean of the same weights scaled by a power of two.

Torch's agreement on these rows (cross_entropy, kl_div) is in test_torch_row_rule.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import (DTYPES, assert_close, elementwise_names, full_params, grads, loss_cases, make_case,
                      make_multiclass_data, multiclass_cases, require_support)

MC_CASES = multiclass_cases()
REDUCTIONS = ("none", "sum", "mean")
R, C = 8, 5
NAN_ROWS = {1: "all -inf", 3: "nan beside finite", 4: "nan at the label", 6: "nan and -inf only"}
IGNORED = 5  # a nan row with sample weight 0 (and, where the loss has one, the ignored label at row 7)


def _data(name, params, form, dtype):
    """(logits, target, weights, bad rows, ignored rows) with the rows of NAN_ROWS and IGNORED."""
    spec = REGISTRY[name]
    x, t = make_multiclass_data(name, params, (R,), np.float64, form, seed=7)
    if form == "hard":
        t = np.where(t == full_params(name, params).get(spec.ignore_param, -100), 0, t) if spec.ignore_param else t
        t[4] = 2
    x[1] = -np.inf
    x[3, 0 if form == "soft" or t[3] != 0 else 1] = np.nan
    x[4, 2] = np.nan
    x[6] = [np.nan, -np.inf, -np.inf, np.nan, -np.inf]
    x[IGNORED, 1] = np.nan
    w = np.linspace(0.5, 2.0, R)
    w[IGNORED] = 0.0
    ignored = [IGNORED]
    if form == "hard" and spec.ignore_param:
        t[7] = full_params(name, params)[spec.ignore_param]
        x[7] = -np.inf
        ignored.append(7)
    return x.astype(dtype), t, w.astype(dtype), sorted(NAN_ROWS), ignored


def _kw(params, reduction, w):
    return dict(params, reduction=reduction, sample_weight=w)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", MC_CASES)
def test_nan_and_unnormalisable_rows_are_nan(backend, name, params, form, dtype):
    require_support(backend, name, dtype)
    x, t, w, bad, ignored = _data(name, params, form, dtype)
    good = [r for r in range(R) if r not in bad and r not in ignored]
    v, g = getattr(fl, name).value_and_grad(x, t, backend=backend, **_kw(params, "none", w))
    assert np.all(np.isnan(v[bad])) and np.all(np.isnan(g[bad])), f"rows {bad}: {v[bad]}, {g[bad]}"
    assert np.all(v[ignored] == 0) and np.all(g[ignored] == 0), "an ignored row must be exactly 0"
    # every other row is what it is alone
    v1, g1 = getattr(fl, name).value_and_grad(x[good], t[good], backend=backend,
                                              **_kw(params, "none", w[good]))
    assert_close(v[good], v1, dtype, err_msg="values of the finite rows")
    assert_close(g[good], g1, dtype, err_msg="gradients of the finite rows")
    if REGISTRY[name].has_hessian:
        g2, h = getattr(fl, name).grad_hess(x, t, backend=backend, **_kw(params, "none", w))
        assert np.all(np.isnan(h[bad])) and np.all(np.isnan(g2[bad]))
        assert np.all(h[ignored] == 0) and np.all(g2[ignored] == 0)


@pytest.mark.parametrize("reduction", ("sum", "mean"))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", MC_CASES)
def test_a_nan_row_makes_the_reduced_value_nan_not_the_other_gradients(backend, name, params, form, dtype,
                                                                        reduction):
    require_support(backend, name, dtype)
    x, t, w, bad, ignored = _data(name, params, form, dtype)
    v, g = getattr(fl, name).value_and_grad(x, t, backend=backend, **_kw(params, reduction, w))
    assert math.isnan(v)
    ref_v, ref_g, _ = _reference.reduce_multiclass(name, x, t, soft=form == "soft",
                                                   **_kw(full_params(name, params), reduction, w))
    assert math.isnan(ref_v)
    assert np.all(np.isnan(g[bad])) and np.all(g[ignored] == 0)
    keep = [r for r in range(R) if r not in bad]
    assert np.all(np.isfinite(g[keep]))
    assert_close(g[keep], ref_g[keep], dtype, err_msg="gradient of the other rows")
    # without the bad rows (the ignored ones stay): the same gradient on the rows that remain
    if reduction == "sum":
        g1 = getattr(fl, name).grad(x[keep], t[keep], backend=backend, **_kw(params, reduction, w[keep]))
        assert_close(g[keep], g1, dtype, err_msg="gradient against the call without the bad rows")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", MC_CASES)
def test_masked_classes_and_inf_logits_follow_the_reference(backend, name, params, form, dtype):
    """-inf at the label (or on a class without target mass) and +inf logits: the formula, the same numbers on
    every backend; a masked row never has a NaN value or gradient."""
    require_support(backend, name, dtype)
    x, t = make_multiclass_data(name, params, (4,), np.float64, form, seed=3)
    spec = REGISTRY[name]
    if form == "hard":
        if spec.ignore_param:
            t = np.where(t == full_params(name, params)[spec.ignore_param], 0, t)
        x[0, t[0]] = -np.inf  # the label's class masked
        x[1, (t[1] + 1) % C] = -np.inf  # another class masked
    else:
        lt = bool(full_params(name, params).get("log_target"))
        with np.errstate(divide="ignore"):
            t[0] = np.log([0.0, 0.5, 0.5, 0.0, 0.0]) if lt else [0.0, 0.5, 0.5, 0.0, 0.0]
        x[0, [0, 3]] = -np.inf  # masked where the target has no mass
    x[2, 1] = np.inf
    x[3, :2] = np.inf
    x, t = x.astype(dtype), (t if form == "hard" else t.astype(dtype))
    v, g = getattr(fl, name).value_and_grad(x, t, backend=backend, **dict(params, reduction="none"))
    ref_v, ref_g, _ = _reference.reduce_multiclass(name, x, t, soft=form == "soft", reduction="none",
                                                   **full_params(name, params))
    assert_close(v, ref_v, dtype, mag=1.0 + np.abs(np.where(np.isfinite(ref_v), ref_v, 0)), err_msg="value")
    assert_close(g, ref_g, dtype, err_msg="gradient")
    assert not np.isnan(v[:2]).any() and not np.isnan(g[:2]).any(), "a masked row is not a NaN row"


# --- weighted means whose sums overflow ---------------------------------------------------------------------

BIG = {np.dtype(np.float64): 2.0**1022, np.dtype(np.float32): 2.0**126}


def _big_and_small(w, dtype):
    """(weights whose sum leaves the float range of the kernels, the same weights times an exact power of two)."""
    big = np.asarray(w, np.float64) / np.max(w) * BIG[np.dtype(dtype)]
    return big.astype(dtype), np.ldexp(big, -1000 if np.dtype(dtype) == np.float64 else -120).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params", loss_cases(variants=False))
def test_mean_with_weights_whose_sum_overflows(backend, name, params, dtype):
    require_support(backend, name, dtype)
    arrays = make_case(name, params, (16,), dtype, seed=4).arrays
    rng = np.random.default_rng(5)
    big, small = _big_and_small(rng.uniform(0.5, 1.0, 16), dtype)
    loss = getattr(fl, name)
    if REGISTRY[name].differentiable:
        v, g = loss.value_and_grad(*arrays, sample_weight=big, backend=backend, **params)
        v1, g1 = loss.value_and_grad(*arrays, sample_weight=small, backend=backend, **params)
        for k, (a, b) in enumerate(zip(grads(g), grads(g1))):
            assert_close(a, b, dtype, err_msg=f"gradient {k}")
    else:
        v, v1 = (loss(*arrays, sample_weight=ww, backend=backend, **params) for ww in (big, small))
    assert_close(v, v1, dtype, mag=1.0 + abs(v1), err_msg="value")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", MC_CASES)
def test_mean_with_row_weights_whose_sum_overflows_multiclass(backend, name, params, form, dtype):
    require_support(backend, name, dtype)
    x, t = make_multiclass_data(name, params, (12,), dtype, form, seed=6)
    big, small = _big_and_small(np.linspace(0.5, 1.0, 12), dtype)
    loss = getattr(fl, name)
    v, g = loss.value_and_grad(x, t, sample_weight=big, backend=backend, **params)
    v1, g1 = loss.value_and_grad(x, t, sample_weight=small, backend=backend, **params)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    assert_close(v, v1, dtype, mag=1.0 + abs(v1), err_msg="value")
    assert_close(g, g1, dtype, err_msg="gradient")


def test_mse_with_weights_1e308(backend):
    """The exact answer: sum(w l) / sum(w) = (1 + 4) / 2, gradient 2 w (p - y) / sum(w) = (1, 2)."""
    p, y, w = np.array([1.0, 2.0]), np.zeros(2), np.array([1e308, 1e308])
    v, g = fl.mse.value_and_grad(p, y, sample_weight=w, backend=backend)
    assert v == 2.5 and g.tolist() == [1.0, 2.0]
    g, h = fl.mse.grad_hess(p, y, sample_weight=w, backend=backend)
    assert g.tolist() == [1.0, 2.0] and h.tolist() == [1.0, 1.0]
    assert fl.mse.grad(p, y, sample_weight=w, backend=backend).tolist() == [1.0, 2.0]


def test_mse_with_many_weights_1e308(backend):
    """64 weights of 1e308: their sum overflows inside the summation lanes, not only at the end. Exact answer:
    mean(p^2) = 1333.5 for p = 0..63, gradient 2 p / 64 (to rounding: w 2^-k is not exact)."""
    p, w = np.arange(64.0), np.full(64, 1e308)
    v, g = fl.mse.value_and_grad(p, np.zeros(64), sample_weight=w, backend=backend)
    assert v == pytest.approx(1333.5, rel=1e-15) and g == pytest.approx(p / 32, rel=1e-15)


def test_a_sum_that_overflows_is_inf(backend):
    """64 terms of 1e200 squared: "sum" and "mean" are inf, not nan, however the backend splits the sum into
    lanes; a nan term stays nan."""
    p, y = np.full(64, 1e200), np.zeros(64)
    assert fl.mse(p, y, reduction="sum", backend=backend) == np.inf
    assert fl.mse(p, y, backend=backend) == np.inf
    assert np.isnan(fl.mse(np.r_[p, np.nan], np.zeros(65), reduction="sum", backend=backend))


def test_weighted_sum_of_losses_overflowing_under_a_finite_sum_of_weights(backend):
    """sum(w l) = 8e308 overflows while sum(w) = 8 does not: the mean is 1e308."""
    p = np.array([1e154, 1e154])
    v, g = fl.mse.value_and_grad(p, np.zeros(2), sample_weight=np.array([4.0, 4.0]), backend=backend)
    assert v == pytest.approx(1e308, rel=1e-15) and g == pytest.approx([1e154, 1e154], rel=1e-15)
    x = np.array([[0.0, 1e306, 0.0], [1e306, 0.0, 0.0]])  # row losses of about 1e306, times weights 400
    t = np.array([0, 1])
    v, _ = fl.multi_margin.value_and_grad(x, t, sample_weight=np.array([400.0, 400.0]), backend=backend)
    v1 = fl.multi_margin(x, t, backend=backend)
    assert v == pytest.approx(v1, rel=1e-15)


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_rows_that_overflow_under_a_finite_class_weighted_mean(backend, p):
    """class_weight 2^1023, C = 2: the row values cw_t / C sum_j v_j^p = 2^1022 * 4 = 2^1024 (v = 4, or v = 2
    squared) and 0 (no active class), whose mean 2^1023 is finite. The row weight (2^-2 in refit_total's pass)
    meets cw_t / C before the sum, and the gradient's factor is rw / R cw_t / C before it meets 2 v (cw_t / C 2 v
    alone is 2^1024 at p = 2), so no backend overflows on the way. Every number is a power of two: exact."""
    x = np.array([[0.0, 3.0 if p == 1 else 1.0], [0.0, -5.0]])
    t = np.array([0, 0])
    kw = dict(class_weight=np.full(2, 2.0**1023), p=p, backend=backend)
    v, g = fl.multi_margin.value_and_grad(x, t, **kw)
    assert v == 2.0**1023
    d = 2.0**1021 * (1.0 if p == 1 else 4.0)  # cw_t / C (1 or 2 v) / R
    assert g.tolist() == [[-d, d], [0.0, 0.0]]
    assert fl.multi_margin(x, t, reduction="none", **kw).tolist() == [math.inf, 0.0]
    assert fl.multi_margin(x, t, reduction="sum", **kw) == math.inf
    w = np.array([2.0**-10, 2.0**-10])  # weighted rows: w cw_t / C sum = 2^1014, mean over sum(w) = 2^1023 again
    assert fl.multi_margin(x, t, reduction="none", sample_weight=w, **kw).tolist() == [2.0**1014, 0.0]
    assert fl.multi_margin(x, t, sample_weight=w, **kw) == 2.0**1023


def test_categorical_focal_alpha_rows_that_overflow_under_a_finite_mean(backend):
    """alpha 2^1023 on every class, gamma 0: the row values 2^1023 (-log p_t) are inf for the row with
    -log p_t > 2 and finite for the other, and their mean is finite. The row weight (2^-1 in refit_total's pass)
    meets alpha_t before -log p_t (rows.hpp value_factor), so the mean is 2^1023 times the mean with alpha 1,
    exactly, and so is the gradient."""
    x = np.array([[0.0, 3.5, 0.0], [3.0, 0.0, 0.0]])
    t = np.array([0, 0])  # -log p_t: about 3.56 and 0.095, mean 1.83 < 2
    big = 2.0**1023
    kw = dict(gamma=0.0, backend=backend)
    v, g = fl.categorical_focal.value_and_grad(x, t, alpha=np.full(3, big), **kw)
    v1, g1 = fl.categorical_focal.value_and_grad(x, t, alpha=np.ones(3), **kw)
    assert np.isfinite(v) and v == pytest.approx(math.ldexp(v1, 1023), rel=1e-15)
    assert np.all(np.isfinite(g)) and g == pytest.approx(np.ldexp(g1, 1023), rel=1e-15)
    none = fl.categorical_focal(x, t, alpha=np.full(3, big), reduction="none", **kw)
    assert none[0] == math.inf and np.isfinite(none[1])
    w = np.array([2.0**-4, 2.0**-4])  # weighted rows stay finite: w alpha_t first
    assert np.all(np.isfinite(fl.categorical_focal(x, t, alpha=np.full(3, big), sample_weight=w,
                                                   reduction="none", **kw)))
    ref, _, _ = _reference.reduce_multiclass("categorical_focal", x, t, alpha=np.full(3, big), gamma=0.0)
    assert ref == pytest.approx(v, rel=1e-15)  # the reference follows the same rule


def test_categorical_focal_row_weight_multiplies_each_hessian_element(backend):
    """A row weight multiplies the row's own Hessian and gradient elements (w h_j, w g_j), at a weight of 1e300
    too; the other rows are what they are alone, and the boosting floor is 0.02 w. An infinite weight is refused,
    as on every path."""
    import fusedloss.boosting as fb

    x = np.array([[0.2514604421867866, -0.2642097265826038, 1.2808453008865641, 0.20980023430607941,
                   -1.071338746322222],
                  [0.7231901098189695, 2.6080000902602745, 1.8941619262584843, -1.4074704716139852,
                   -2.530842942092105]])
    t = np.array([4, 3])
    g1, h1 = fl.categorical_focal.grad_hess(x, t, reduction="none", backend=backend)
    assert np.all(np.sign(h1[1]) == [1, 1, 1, -1, 1]) and np.all(np.sign(g1[1]) == [1, 1, 1, -1, 1])
    big = 1e300
    want_h, want_g = big * h1[1], big * g1[1]
    g, h = fl.categorical_focal.grad_hess(x, t, reduction="none", sample_weight=np.array([0.5, big]),
                                          backend=backend)
    assert not np.isnan(h).any() and not np.isnan(g).any()
    assert_close(h[1], want_h, np.float64, err_msg="Hessian")
    assert_close(g[1], want_g, np.float64, err_msg="gradient")
    assert_close(h[0], 0.5 * h1[0], np.float64, err_msg="Hessian")
    assert_close(g[0], 0.5 * g1[0], np.float64, err_msg="gradient")
    g, h = fb.gradient_hessian("categorical_focal", t, x, np.array([0.5, big]), backend=backend)
    assert not np.isnan(h).any() and np.all(h[1] >= 0.02 * big)  # the boosting floor, 0.02 w
    with pytest.raises(ValueError, match=r"categorical_focal: sample_weight must be finite and >= 0, got inf"):
        fl.categorical_focal.grad_hess(x, t, reduction="none", sample_weight=np.array([0.5, math.inf]),
                                       backend=backend)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_class_weights_whose_sum_overflows(backend, label_smoothing):
    """A class-weighted mean is invariant to the scale of the class weights (and of the row weights)."""
    x, t = make_multiclass_data("cross_entropy", {}, (6,), np.float64, "hard", seed=8)
    t = np.where(t < 0, 0, t)
    cw = np.linspace(0.5, 2.0, C)
    kw = dict(label_smoothing=label_smoothing, backend=backend)
    v1, g1 = fl.cross_entropy.value_and_grad(x, t, class_weight=cw, **kw)
    for big_cw, rw in ((cw * 2.0**1022, None), (cw * 2.0**600, np.full(6, 2.0**600))):
        v, g = fl.cross_entropy.value_and_grad(x, t, class_weight=big_cw, sample_weight=rw, **kw)
        assert_close(v, v1, np.float64, err_msg="value")
        assert_close(g, g1, np.float64, err_msg="gradient")


def test_every_multiclass_loss_is_covered():
    """The cases above come from the registry: a new multiclass loss is in them without editing this file."""
    names = {c.values[0] for c in MC_CASES}
    assert names == {n for n, s in REGISTRY.items() if s.kind == "multiclass"}
    assert set(elementwise_names()) <= {c.values[0] for c in loss_cases(variants=False)}
