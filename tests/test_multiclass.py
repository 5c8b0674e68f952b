"""Multiclass losses (class axis last): the reference by calculus, every host backend against the reference,
and the multiclass rules of the API (per-row values, "mean" over rows / kept rows / class weights, ignored
labels, hessian="ones", label checks). Everything is parametrised from the registry (``kind ==
"multiclass"``) and the MC_VARIANTS table in conftest.
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
    N_CLASSES,
    assert_close,
    full_params,
    loss_fn,
    make_multiclass_data,
    multiclass_cases,
    require_support,
)

LEADS = [(0,), (1,), (17,), (4, 3)]
REDUCTIONS = ("mean", "sum", "none")


def _row_weight(lead, seed=2):
    if not lead:
        return None
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.25, 2.0, lead)
    if w.size >= 10:
        w.reshape(-1)[:2] = 0.0
    return w


def _reference_all(name, params, x, t, reduction, w, form):
    kw = full_params(name, params)
    return _reference.reduce_multiclass(name, x, t, reduction=reduction, sample_weight=w, soft=form == "soft",
                                        **kw)


# --- the reference by finite differences -------------------------------------------------------------


@pytest.mark.parametrize("name,params,form", multiclass_cases())
def test_multiclass_reference_gradient_and_hessian(name, params, form):
    if not REGISTRY[name].differentiable:
        pytest.skip(f"{name} is not differentiable")
    x, t = make_multiclass_data(name, params, (3,), np.float64, form, seed=21)
    w = np.array([0.5, 1.5, 1.0])
    for reduction in ("sum", "mean"):
        value, grad, hess = _reference_all(name, params, x, t, reduction, w, form)
        fd_g = np.empty_like(x)
        fd_h = np.empty_like(x)
        for i in np.ndindex(x.shape):
            step = 1e-6 * max(1.0, abs(x[i]))
            e = np.zeros_like(x)
            e[i] = step
            vp, gp, _ = _reference_all(name, params, x + e, t, reduction, w, form)
            vm, gm, _ = _reference_all(name, params, x - e, t, reduction, w, form)
            fd_g[i] = (vp - vm) / (2 * step)
            fd_h[i] = (gp[i] - gm[i]) / (2 * step)
        np.testing.assert_allclose(fd_g, grad, rtol=1e-5, atol=1e-6 * (1 + abs(value)),
                                   err_msg=f"{name}{params} {form} {reduction}: gradient")
        np.testing.assert_allclose(fd_h, hess, rtol=1e-5, atol=1e-6 * (1 + np.abs(grad).max()),
                                   err_msg=f"{name}{params} {form} {reduction}: Hessian diagonal")


# --- every backend against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", multiclass_cases())
def test_multiclass_backend_matches_reference(backend, name, params, form, dtype, reduction):
    require_support(backend, name, dtype)
    spec = REGISTRY[name]
    loss = loss_fn(name)
    failures = []
    for lead in LEADS:
        for weighted in (False, True):
            x, t = make_multiclass_data(name, params, lead, dtype, form, seed=len(lead) * 10 + sum(lead))
            w = _row_weight(lead) if weighted else None
            if w is not None:
                w = w.astype(dtype)
            tag = f"{backend} {name}{params} {form} {dtype} {reduction} lead={lead} weighted={weighted}"
            try:
                value, grad, hess = _reference_all(name, params, x, t, reduction, w, form)
                l0, g0, h0 = _reference_all(name, params, x, t, "none", None, form)
                wr = np.ones(lead) if w is None else w.astype(np.float64)
                if reduction == "mean":
                    # the scale that the reference applied, recovered from its sum and mean
                    total = _reference_all(name, params, x, t, "sum", w, form)[0]
                    scale = value / total if total else 1.0 / max(float(np.sum(wr)), 1e-300)
                else:
                    scale = 1.0
                scale = scale if math.isfinite(scale) else 1.0
                mag_rows = wr * (1.0 + np.abs(l0))
                mag_elem = (wr * scale)[..., None] * (1.0 + np.abs(g0) + np.abs(h0))
                kwargs = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
                v = loss(x, t, **kwargs)
                if reduction == "none":
                    assert type(v) is np.ndarray and v.shape == lead and v.dtype == dtype, f"{tag}: {v!r}"
                    assert_close(v, value, dtype, mag_rows, f"{tag}: value")
                else:
                    assert type(v) is float, f"{tag}: reduced value is {type(v).__name__}"
                    assert_close(v, value, dtype, float(np.sum(mag_rows)) * scale, f"{tag}: value")
                if spec.differentiable:
                    v2, g2 = loss.value_and_grad(x, t, **kwargs)
                    assert_close(v2, value, dtype, mag_rows if reduction == "none" else
                                 float(np.sum(mag_rows)) * scale, f"{tag}: value_and_grad value")
                    g3 = loss.grad(x, t, **kwargs)
                    g4, h4 = loss.grad_hess(x, t, **kwargs)
                    for what, got, exp in (("vg grad", g2, grad), ("grad", g3, grad), ("gh grad", g4, grad),
                                           ("hess", h4, hess)):
                        assert got.shape == x.shape and got.dtype == dtype, f"{tag}: {what} {got.shape} {got.dtype}"
                        assert_close(got, exp, dtype, mag_elem, f"{tag}: {what}")
            except AssertionError as exc:
                failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} cases failed:\n" + "\n".join(failures[:10]))


# --- multiclass API rules ------------------------------------------------------------------------------------


def _hard_names(with_ignore=False):
    return [n for n, s in REGISTRY.items() if s.kind == "multiclass" and s.hard_labels
            and (s.ignore_param or not with_ignore)]


@pytest.mark.parametrize("name", _hard_names(with_ignore=True))
def test_ignored_rows_count_for_nothing(backend, name):
    require_support(backend, name, np.float64)
    loss = loss_fn(name)
    ignore = full_params(name)[REGISTRY[name].ignore_param]
    x, t = make_multiclass_data(name, {}, (6,), np.float64, "hard", seed=3)
    t[:] = [0, 1, ignore, 2, ignore, 4]
    keep = t != ignore
    v = loss(x, t, reduction="none", backend=backend)
    g, h = loss.grad_hess(x, t, reduction="sum", backend=backend)
    assert (v[~keep] == 0).all() and (g[~keep] == 0).all() and (h[~keep] == 0).all()
    # the kept rows alone give the same sum; "mean" divides by the kept rows (no class weights here)
    assert loss(x, t, reduction="sum", backend=backend) == pytest.approx(
        loss(x[keep], t[keep], reduction="sum", backend=backend), rel=1e-14)
    if REGISTRY[name].mean_over in ("kept_rows", "class_weight"):
        assert loss(x, t, backend=backend) == pytest.approx(loss(x[keep], t[keep], backend=backend), rel=1e-14)
    _, h1 = loss.grad_hess(x, t, hessian="ones", backend=backend)
    expected = np.where(keep[:, None], 1.0 / keep.sum(), 0.0) * np.ones((1, x.shape[1]))
    if REGISTRY[name].mean_over == "rows":
        expected = np.where(keep[:, None], 1.0 / keep.size, 0.0) * np.ones((1, x.shape[1]))
    np.testing.assert_allclose(h1, expected, rtol=1e-15)


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "multiclass" and s.soft_labels])
def test_nan_in_a_soft_target_propagates(backend, name):
    """NaN in the data propagates (no exception, never dropped): a NaN target probability makes its row's value
    and gradient NaN, and leaves the other rows as they are."""
    require_support(backend, name, np.float64)
    loss = loss_fn(name)
    x, q = make_multiclass_data(name, {}, (3,), np.float64, "soft", seed=5)
    clean_v = loss(x, q, reduction="none", backend=backend)
    q[1, 0] = np.nan
    v, g = loss.value_and_grad(x, q, reduction="none", backend=backend)
    assert np.isnan(v[1]) and np.isnan(g[1]).all()
    np.testing.assert_array_equal(v[[0, 2]], clean_v[[0, 2]])
    assert np.isnan(loss(x, q, backend=backend))


@pytest.mark.parametrize("name", _hard_names(with_ignore=True))
def test_every_row_ignored_under_mean(backend, name):
    """Nothing counts: the mean is nan (0 / 0) and the derivatives of the ignored rows stay 0, as torch's
    cross_entropy gives; the same on every backend."""
    require_support(backend, name, np.float64)
    loss = loss_fn(name)
    ignore = full_params(name)[REGISTRY[name].ignore_param]
    x, t = make_multiclass_data(name, {}, (4,), np.float64, "hard", seed=4)
    t[:] = ignore
    value, g = loss.value_and_grad(x, t, backend=backend)
    assert math.isnan(value)
    np.testing.assert_array_equal(g, 0.0)
    g, h = loss.grad_hess(x, t, backend=backend)
    np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_array_equal(h, 0.0)


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "multiclass"])
def test_multiclass_unit_hessian_and_row_weights(backend, name):
    require_support(backend, name, np.float64)
    spec = REGISTRY[name]
    form = "hard" if spec.hard_labels else "soft"
    loss = loss_fn(name)
    x, t = make_multiclass_data(name, {}, (4, 2), np.float64, form, seed=5)
    if form == "hard" and spec.ignore_param:
        t[:] = np.arange(8).reshape(4, 2) % N_CLASSES  # no ignored rows here
    w = np.array([1.0, 0.5, 2.0, 0.0])  # a leading part (4,) of the rows' shape (4, 2)
    wr = np.broadcast_to(w[:, None], (4, 2))
    _, h = loss.grad_hess(x, t, reduction="sum", sample_weight=w, hessian="ones", backend=backend)
    np.testing.assert_allclose(h, np.broadcast_to(wr[..., None], x.shape), rtol=1e-15)
    v = loss(x, t, reduction="none", sample_weight=w, backend=backend)
    v1 = loss(x, t, reduction="none", backend=backend)
    np.testing.assert_allclose(v, wr * v1, rtol=1e-14)


def test_multiclass_label_errors(backend):
    require_support(backend, "cross_entropy", np.float64)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"(?s)label 4.*\(1,\).*\[0, 4\)"):
        fl.cross_entropy(x, np.array([0, 4, 1]), backend=backend)
    with pytest.raises(ValueError, match=r"(?s)label -1"):
        fl.cross_entropy(x, np.array([0, -1, 1]), backend=backend)
    with pytest.raises(ValueError, match=r"(?s)\(3,\).*\(2,\)"):
        fl.cross_entropy(x, np.array([0, 1]), backend=backend)
    with pytest.raises(ValueError, match=r"(?s)soft.*\(3, 4\).*\(3, 3\)"):
        fl.cross_entropy(x, np.full((3, 3), 0.25), backend=backend)
    with pytest.raises(ValueError, match=r"(?s)class_weight.*4.*\(3,\)"):
        fl.cross_entropy(x, np.array([0, 1, 2]), class_weight=[1.0, 1.0, 1.0], backend=backend)
    with pytest.raises(ValueError, match=r"(?s)target.*>= 0.*-0.5"):
        fl.cross_entropy(x, np.array([[1.5, -0.5, 0, 0]] * 3), backend=backend)
    with pytest.raises(TypeError, match="target"):
        fl.kl_div_with_logits(x, np.array([0, 1, 2]), backend=backend)  # probabilities only
    with pytest.raises(ValueError, match="class axis"):
        fl.cross_entropy(np.zeros((3, 0)), np.zeros(3, np.int64), backend=backend)


def test_labels_after_clean_calls(backend):
    """Labels all in [0, C) take a one-pass check and "mean" then counts every row; ignored rows, an
    ignore_index inside [0, C) and bad labels, coming after such calls, still get the exact treatment."""
    require_support(backend, "cross_entropy", np.float64)
    x = np.random.default_rng(2).normal(size=(6, 4))
    clean = np.array([0, 1, 2, 3, 1, 2])

    def expected(t, keep, **kw):  # the kept rows alone, with the gradient zero on the others
        v, g = fl.cross_entropy.value_and_grad(x[keep], t[keep], backend=backend, **kw)
        full = np.zeros_like(x)
        full[keep] = g
        return v, full

    for _ in range(2):
        v, g = fl.cross_entropy.value_and_grad(x, clean, backend=backend)
        ev, eg = expected(clean, np.ones(6, bool))
        assert v == pytest.approx(ev, rel=1e-14)
        np.testing.assert_allclose(g, eg, rtol=1e-14)
    for t, kw, keep in ((np.array([0, -100, 2, 3, -100, 2]), {}, None),
                        (clean, dict(ignore_index=1), clean != 1),  # every label in range, yet rows ignored
                        (clean.astype(np.int32), {}, None),
                        (np.array([[0, 1, 2], [3, 1, 2]]).T.copy().T, {}, None)):  # 2-D, not C-contiguous
        keep = (t != -100) if keep is None else keep
        v, g = fl.cross_entropy.value_and_grad(x.reshape(t.shape + (4,)), t, backend=backend, **kw)
        ev, eg = expected(t.reshape(-1), keep.reshape(-1), **kw)
        assert v == pytest.approx(ev, rel=1e-14), (t, kw)
        np.testing.assert_allclose(g.reshape(6, 4), eg, rtol=1e-14, err_msg=f"{t} {kw}")
    low = np.iinfo(np.int64).min
    for t, value, at in ((np.array([0, 1, 4, 3, 1, 2]), 4, 2), (np.array([0, 1, 2, 3, -1, 2]), -1, 4),
                         (np.array([0, low, 2, 3, 1, 2]), low, 1),
                         (np.array([0, 1, 2, 3, 1, 2 ** 63], np.uint64), 2 ** 63, 5)):  # as given, not wrapped
        with pytest.raises(ValueError, match=rf"(?s)label {value} at index \({at},\).*\[0, 4\)"):
            fl.cross_entropy.value_and_grad(x, t, backend=backend)
    with pytest.raises(ValueError, match=r"(?s)label 1 at index \(1,\).*ignore_index=-1"):
        fl.cross_entropy(x[:, :1], np.array([0, 1, -1, 0, 0, 0]), ignore_index=-1, backend=backend)


# --- extreme logits (issue 3's budget: finite where the math is finite, gradients never NaN) --------------


def _extreme_rows(dtype):
    x = np.zeros((5, 6), dtype=dtype)
    x[0] = [1e4, -1e4, 0.0, 1e4, -1e4, 3.0]  # +-1e4
    x[1] = [0.0, 0.0, 0.0, 8e3, 0.0, 0.0]  # one huge logit (not the target below)
    x[2] = 7.0  # all equal
    x[3] = [-np.inf, 1.0, -np.inf, 2.0, 0.5, -np.inf]  # masked classes
    x[4] = [-30.0, 30.0, -30.0, 29.0, 0.0, -29.0]  # scale 30
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_at_extreme_logits(backend, dtype):
    require_support(backend, "cross_entropy")
    x = _extreme_rows(dtype)
    t = np.array([1, 0, 4, 3, 0])
    value, grad = fl.cross_entropy.value_and_grad(x, t, reduction="none", backend=backend)
    g2, h = fl.cross_entropy.grad_hess(x, t, reduction="none", backend=backend)
    ref_v, ref_g, ref_h = _reference.reduce_multiclass("cross_entropy", x, t, reduction="none", class_weight=None,
                                                       ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                                                       softcap=None)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(h))
    np.testing.assert_allclose(value, ref_v, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    np.testing.assert_allclose(grad, ref_g, rtol=0, atol=1e-6)
    # the exact answers a wrong kernel would miss: rows 1 and 2 have closed forms
    assert abs(value[1] - 8e3) <= 1e-5 * 8e3  # target 0 against one logit of 8e3: lse - x_0 = 8e3
    assert abs(value[2] - np.log(6.0)) <= 1e-6  # all equal: log C
    assert np.all(grad[3][[0, 2, 5]] == 0)  # masked classes get no gradient
    # label smoothing reaches the masked classes: the math is +inf there, and the gradient stays finite
    v_ls, g_ls = fl.cross_entropy.value_and_grad(x[3:4], t[3:4], label_smoothing=0.1, backend=backend)
    assert v_ls == np.inf and np.all(np.isfinite(g_ls))


# --- long rows (the CPU backends sum a row's exponentials in runs once it has a few hundred classes) ---------


def _long_rows(C, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, (4, C))
    x[0, rng.permutation(C)[:7]] = x[0].max() + 1.0  # seven tied maxima, scattered over the runs
    x[1] = -40.0
    x[1, C // 2] = 0.0  # one confident class: every other p_j = e^-40, 1 - p = (C - 1) e^-40 / s
    x[2, -3:] = 9.0  # the maxima in the last, partial run
    return x.astype(dtype)


def _first_case_per_loss_and_form():
    """The first variant of each (loss, target form): the long rows exercise the row sums, which every
    variant of a loss shares; the variants themselves are checked at N_CLASSES above."""
    seen = {}
    for case in multiclass_cases():
        name, params, form = case.values if hasattr(case, "values") else case
        seen.setdefault((name, form), case)
    return list(seen.values())


@pytest.mark.parametrize("C", [256, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,params,form", _first_case_per_loss_and_form())
def test_long_rows_match_reference(backend, name, params, form, dtype, C):
    require_support(backend, name, dtype)
    spec = REGISTRY[name]
    loss = loss_fn(name)
    # per-class parameters (class_weight, ...) are written for N_CLASSES classes: repeated to C
    params = {k: np.resize(np.asarray(v), C) if np.ndim(v) == 1 and len(v) == N_CLASSES else v
              for k, v in params.items()}
    x = _long_rows(C, dtype, seed=C)
    if form == "hard":
        t = np.array([0, C // 2, C - 1, 5])
    else:
        _, t = make_multiclass_data(name, params, (4,), dtype, form, seed=C, n_classes=C)
    value, grad, hess = _reference_all(name, params, x, t, "none", None, form)
    tag = f"{backend} {name}{params} {form} {dtype} C={C}"
    v = loss(x, t, reduction="none", backend=backend, **params)
    assert_close(v, value, dtype, 1.0 + np.abs(value), f"{tag}: value")
    if spec.differentiable:
        g, h = loss.grad_hess(x, t, reduction="none", backend=backend, **params)
        mag = 1.0 + np.abs(grad) + np.abs(hess)
        assert_close(g, grad, dtype, mag, f"{tag}: gradient")
        assert_close(h, hess, dtype, mag, f"{tag}: Hessian")


@pytest.mark.parametrize("C", [255, 256, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_long_confident_row_keeps_its_small_terms(backend, dtype, C):
    """A row with one class 40 above the rest: lse - z_t = log1p((C - 1) e^-40) and 1 - p_t carry no rounding
    of a sum near 1, with the label on the confident class (the other classes' e_j summed apart from its 1)."""
    require_support(backend, "cross_entropy", dtype)
    x = np.full((1, C), -40.0, dtype)
    x[0, C // 3] = 0.0
    t = np.array([C // 3])
    v, g = fl.cross_entropy.value_and_grad(x, t, reduction="none", backend=backend)
    rest = (C - 1) * math.exp(-40.0)
    exact = math.log1p(rest)
    assert abs(v[0] - exact) <= 1e-5 * exact, (v[0], exact)
    assert abs(g[0, C // 3] + rest / (1.0 + rest)) <= 1e-5 * rest, (g[0, C // 3], -rest)


def _tile_params(loss, rng, C):
    if loss == "cross_entropy":
        return ({}, {"label_smoothing": 0.1, "class_weight": rng.uniform(0.5, 2.0, C), "z_loss": 1e-3})
    if loss == "poly1":
        return ({}, {"epsilon": -1.0}, {"epsilon": 3.0})
    return ({}, {"gamma": 0.5, "alpha": rng.uniform(0.5, 2.0, C)}, {"gamma": 0.0})


@pytest.mark.parametrize("C", [1, 2, 15, 16, 17, 127, 128, 129])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss", ["cross_entropy", "categorical_focal", "poly1"])
def test_rows_at_the_edges_of_row_tiles(backend, dtype, C, loss):
    """Rows of at most 128 classes run 16 at a time in the C++ kernel (lanes across rows), longer ones one by
    one: both sides of that bound, tiles cut short by the end of the call, ignored and zero-weight rows inside
    a tile, a confident row, and rows with nothing to normalise (a nan logit, all -inf) beside ordinary ones."""
    require_support(backend, loss, dtype)
    rng = np.random.default_rng(C)
    fn = getattr(fl, loss)
    for R in (1, 15, 16, 17, 33):
        x = rng.normal(0.0, 3.0, (R, C)).astype(dtype)
        t = rng.integers(0, C, R)
        t[3::5] = -100
        w = rng.uniform(0.5, 2.0, R)
        w[1::7] = 0.0
        if R > 8:
            x[2, C // 2] = np.nan
            x[4] = -np.inf
            x[5, t[5]] = 40.0  # 1 - p_t near e^-40: the powers and sums at their limits
            x[6, 0] = np.nan  # in a row whose weight is 0: ignored whatever it holds
            w[6] = 0.0
        for params in _tile_params(loss, rng, C):
            value, grad, hess = _reference_all(loss, params, x, t, "none", w, "hard")
            tag = f"{loss} {backend} {dtype} R={R} C={C} {params}"
            v = fn(x, t, reduction="none", sample_weight=w, backend=backend, **params)
            assert_close(v, value, dtype, 1.0 + np.abs(value), f"{tag}: value")
            g, h = fn.grad_hess(x, t, reduction="none", sample_weight=w, backend=backend, **params)
            mag = 1.0 + np.abs(grad) + np.abs(hess)
            assert_close(g, grad, dtype, mag, f"{tag}: gradient")
            assert_close(h, hess, dtype, mag, f"{tag}: Hessian")
            total = fn(x, t, reduction="sum", sample_weight=w, backend=backend, **params)
            assert_close(total, np.sum(value), dtype, 1.0 + np.sum(np.abs(value)), f"{tag}: sum")


@pytest.mark.parametrize("options", [{"softcap": 5.0}, {"confidence_penalty": 0.3},
                                     {"softcap": 5.0, "confidence_penalty": 0.3, "label_smoothing": 0.1}],
                         ids=["softcap", "penalty", "softcap-penalty-smoothing"])
@pytest.mark.parametrize("form", ["hard", "soft"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_unit_class_weight_gives_the_bits_of_none(compiled_backend, options, form, dtype):
    """class_weight of ones is no class_weight, bit for bit: a weight of 1 multiplies exactly. The cpp kernels run
    softcap and the confidence penalty with a class vector always (unit weights where none is given), so this
    holds only if that vector is built right, for every output, both label forms and the metrics pass."""
    require_support(compiled_backend, "cross_entropy", dtype)
    rng = np.random.default_rng(5)
    R, C = 37, 300
    x = rng.normal(0.0, 3.0, (R, C)).astype(dtype)
    if form == "hard":
        t = rng.integers(0, C, R)
    else:
        q = rng.uniform(0.0, 1.0, (R, C))
        t = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    w = rng.uniform(0.5, 2.0, R)
    kw = dict(sample_weight=w, backend=compiled_backend, **options)
    ones = np.ones(C)
    for reduction in ("none", "sum"):
        calls = [lambda **k: fl.cross_entropy.value_and_grad(x, t, reduction=reduction, **kw, **k),
                 lambda **k: fl.cross_entropy.grad_hess(x, t, reduction=reduction, **kw, **k),
                 lambda **k: fl.cross_entropy(x, t, reduction=reduction, **kw, **k)]
        if form == "hard":
            calls.append(lambda **k: fl.cross_entropy.value_and_grad(
                x, t, reduction=reduction, metrics=("accuracy", "top5", "nll", "entropy"), **kw, **k))
        for call in calls:
            plain, unit = call(), call(class_weight=ones)
            plain = plain if isinstance(plain, tuple) else (plain,)
            unit = unit if isinstance(unit, tuple) else (unit,)
            for a, b in zip(plain, unit):
                if isinstance(a, dict) or hasattr(a, "keys"):
                    assert {k: float(a[k]) for k in a} == {k: float(b[k]) for k in b}
                else:
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert np.isfinite(np.asarray(plain[0])).all()
