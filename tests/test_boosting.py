"""fusedloss.boosting: the objectives' arrays (shapes, weights, layouts, Hessian options), and real LightGBM /
XGBoost training that reproduces the built-in objectives and trains a focal-loss model on imbalanced data.

Library tests skip (saying why) when LightGBM or XGBoost is not installed.
"""

from __future__ import annotations

import inspect
import math
import pickle
import re

import numpy as np
import pytest

import fusedloss as fl
import fusedloss.boosting as fb


def _lightgbm():
    return pytest.importorskip("lightgbm", reason="LightGBM is not installed (pip install lightgbm)")


def _xgboost():
    return pytest.importorskip("xgboost", reason="XGBoost is not installed (pip install xgboost-cpu)")


def _regression(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = X @ rng.normal(size=8) * 10 + 3 * np.sin(3 * X[:, 0]) + rng.normal(size=n) + 50.0
    return X, y


def _binary(n=2000, seed=0, pos=0.35):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    score = X[:, 0] * 1.5 - X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
    threshold = np.quantile(score, 1 - pos)
    y = (score + rng.normal(scale=0.7, size=n) > threshold).astype(np.float64)
    return X, y


def _assert_derivatives(got, want, rtol):
    """An objective's array against the float64 derivatives: float32 ones (a LightGBM objective's) are exactly
    those rounded, float64 ones within rtol."""
    if got.dtype == np.float32:
        np.testing.assert_array_equal(got, want.astype(np.float32))
    else:
        np.testing.assert_allclose(got, want, rtol=rtol)


def _weights(n, seed=5):
    return np.random.default_rng(seed).uniform(0.5, 2.0, n)


def _close_fraction(a, b):
    """max |a - b| relative to the spread of a."""
    return float(np.max(np.abs(a - b)) / np.std(a))


# --- the arrays ------------------------------------------------------------------------------------------


class FakeDataset:
    """What LightGBM / XGBoost hand an objective: labels and weights behind getters."""

    def __init__(self, label, weight=None, empty_weight=None):
        self._label = np.asarray(label, dtype=np.float32)
        self._weight = weight if weight is not None else empty_weight

    def get_label(self):
        return self._label

    def get_weight(self):
        return self._weight


@pytest.mark.parametrize("name, params", [
    ("mse", {}), ("huber", {"delta": 0.5}), ("poisson_nll", {}), ("tweedie", {"power": 1.3}),
    ("binary_cross_entropy_with_logits", {"pos_weight": 2.0}), ("binary_focal", {"gamma": 1.0}),
    ("log_cosh", {}), ("pseudo_huber", {}),
])
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_arrays_are_the_unreduced_weighted_derivatives(name, params, weighted):
    rng = np.random.default_rng(1)
    n = 50
    preds = rng.normal(size=n).astype(np.float32).astype(np.float64)  # XGBoost hands float32 scores
    label = rng.random(n).round() if name in ("binary_cross_entropy_with_logits", "binary_focal") else \
        (rng.poisson(2.0, n).astype(np.float64) if name in ("poisson_nll", "tweedie") else rng.normal(size=n))
    w = _weights(n) if weighted else None
    g_ref, h_ref = getattr(fl, name).grad_hess(preds, label.astype(np.float32).astype(np.float64), reduction="none",
                                               sample_weight=w, **params)
    if name == "binary_focal":
        h_ref = np.maximum(h_ref, fb.FOCAL_MIN_HESSIAN * (1.0 if w is None else w))
    lgb_obj = fb.lightgbm_objective(name, **params)
    xgb_obj = fb.xgboost_objective(name, **params)
    outs = [
        xgb_obj.sklearn(label.astype(np.float32), preds, **({} if w is None else {"sample_weight": w})),
        fb.gradient_hessian(name, label.astype(np.float32), preds, w, **params),
    ]
    for g, h in outs:
        assert g.dtype == np.float64 and h.dtype == np.float64
        assert g.shape == h.shape == preds.shape
        np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-15)
    # LightGBM keeps its derivatives in float32: its objectives return the float64 ones rounded, the arrays
    # LightGBM made of float64 ones
    for _ in range(2):  # the second round reuses the buffers
        for g, h in (lgb_obj(preds, FakeDataset(label, w)), lgb_obj.sklearn(label.astype(np.float32), preds, w)):
            assert g.dtype == np.float32 and h.dtype == np.float32 and g.shape == h.shape == preds.shape
            np.testing.assert_array_equal(g, g_ref.astype(np.float32))
            np.testing.assert_array_equal(h, h_ref.astype(np.float32))
    # float32 scores (XGBoost's margins) are computed in float32, the dtype XGBoost keeps gradients in: the
    # same arrays as the float32 kernels give, and within float32's budget of the float64 reference
    p32 = preds.astype(np.float32)
    w32 = None if w is None else w.astype(np.float32)
    g32, h32 = getattr(fl, name).grad_hess(p32, label.astype(np.float32), reduction="none", sample_weight=w32,
                                           **params)
    if name == "binary_focal":
        h32 = np.maximum(h32, np.float32(fb.FOCAL_MIN_HESSIAN) * (1.0 if w32 is None else w32))
    for _ in range(2):  # the second round reuses the buffers and the converted labels
        g, h = xgb_obj(p32, FakeDataset(label.astype(np.float32), w32, empty_weight=np.array([], np.float32)))
        assert g.dtype == np.float32 and h.dtype == np.float32 and g.shape == h.shape == preds.shape
        np.testing.assert_array_equal(g, g32)
        np.testing.assert_array_equal(h, h32)
        np.testing.assert_allclose(g, g_ref, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(h, h_ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name, params", [("huber", {"delta": 0.7}), ("binary_focal", {"gamma": 2.0}),
                                          ("cross_entropy", {})])
def test_lightgbm_objectives_store_float32_in_their_pass_on_the_compiled_backend(backend, name, params):
    """A LightGBM objective returns float32 on every backend: the float64 derivatives rounded. The compiled
    backend stores them so in its pass (no float64 array is made); the others, and the multiclass losses,
    round a float64 array of theirs."""
    rng = np.random.default_rng(8)
    n, K = 300, 3
    preds = rng.normal(size=(n, K) if name == "cross_entropy" else n) * 4
    label = (rng.integers(0, K, n) if name == "cross_entropy" else rng.random(n).round()).astype(np.float32)
    w = _weights(n)
    target = label.astype(np.int64) if name == "cross_entropy" else label.astype(np.float64)
    g_ref, h_ref = getattr(fl, name).grad_hess(preds, target, reduction="none", sample_weight=w, backend=backend,
                                               **params)
    obj = fb.lightgbm_objective(name, backend=backend, **params)
    if obj.min_hessian is not None:
        h_ref = np.maximum(h_ref, obj.min_hessian * (w[:, None] if h_ref.ndim == 2 else w))
    for _ in range(2):
        g, h = obj(preds, FakeDataset(label, w))
        assert g.dtype == h.dtype == np.float32
        np.testing.assert_array_equal(g, g_ref.astype(np.float32))
        np.testing.assert_array_equal(h, h_ref.astype(np.float32))
    made = {dtype for _, dtype in obj._rounds._buffers}
    fused = backend == "cpp" and name != "cross_entropy"
    assert made == ({np.dtype(np.float32)} if fused else {np.dtype(np.float32), np.dtype(np.float64)})


@pytest.mark.parametrize("make", [fb.lightgbm_objective, fb.xgboost_objective])
def test_objectives_follow_new_labels_and_weights_between_rounds(make):
    """Labels and weights are converted once per array the library hands over: a new array (another data set,
    set_label / set_weight) is seen at once."""
    rng = np.random.default_rng(3)
    n = 40
    obj = make("huber", delta=0.7)
    preds = rng.normal(size=n)
    for _ in range(3):
        label = rng.normal(size=n).astype(np.float32)
        w = rng.random(n).astype(np.float32)
        g, h = obj(preds, FakeDataset(label, w, empty_weight=np.array([], np.float32)))
        g_ref, h_ref = fl.huber.grad_hess(preds, label.astype(np.float64), reduction="none",
                                          sample_weight=w.astype(np.float64), delta=0.7)
        _assert_derivatives(g, g_ref, 1e-12)
        _assert_derivatives(h, h_ref, 1e-12)
    g, _ = obj(preds, FakeDataset(label, None, empty_weight=np.array([], np.float32)))  # weights dropped
    _assert_derivatives(g, fl.huber.grad(preds, label.astype(np.float64), reduction="none", delta=0.7), 1e-12)


def test_objectives_check_the_labels_they_converted_once_and_any_other_labels_every_round(monkeypatch):
    """Labels the objective converted (LightGBM's float32 labels for float64 scores) are a copy of its own: their
    domain is checked when first used, not every round. Labels used as they are (the library's array) are checked
    every round. A new label array, or a bad one, is checked (and refused) at once."""
    from fusedloss import _validate

    seen = []
    check = _validate._check_domain
    monkeypatch.setattr(_validate, "_check_domain", lambda arr, *a: (seen.append(a[1]), check(arr, *a)))
    import fusedloss._boosting_math as bm
    import fusedloss._dispatch as dispatch

    monkeypatch.setattr(bm, "_check_domain", _validate._check_domain)
    monkeypatch.setattr(dispatch, "_check_domain", _validate._check_domain)
    n = 50
    preds = np.linspace(-3.0, 3.0, n)
    label = (np.arange(n) % 2).astype(np.float32)
    obj = fb.lightgbm_objective("binary_cross_entropy_with_logits")
    data = _Data(label, None)
    for _ in range(3):
        g, _ = obj(preds, data)
    assert seen.count("target") == 1  # converted once, checked once
    _assert_derivatives(g, fl.binary_cross_entropy_with_logits.grad(preds, label.astype(np.float64),
                                                                    reduction="none"), 1e-12)
    seen.clear()
    for _ in range(3):
        obj(preds, _Data(label.astype(np.float64), None))  # float64 labels: used as they are
    assert seen.count("target") == 3
    bad = label.copy()
    bad[7] = 2.0
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\], got 2.0 at index \(7,\)"):
        obj(preds, _Data(bad, None))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        obj(preds, _Data(bad.astype(np.float64), None))


@pytest.mark.parametrize("make", [fb.lightgbm_objective, fb.xgboost_objective])
def test_objectives_refuse_nonfinite_weights_in_every_round(make, monkeypatch):
    """A nan or infinite weight is refused, in weights the objective converted (checked once: a copy of its own)
    and in weights it uses as they are (checked every round)."""
    from fusedloss import _validate
    import fusedloss._boosting_math as bm

    sums = []
    monkeypatch.setattr(bm, "check_weight_values",
                        lambda a, *args: (sums.append(a.size), _validate.check_weight_values(a, *args))[1])
    preds, label = np.linspace(-1.0, 1.0, 6), np.ones(6, np.float32)
    obj = make("mse")
    w = np.ones(6, np.float32)  # converted to the scores' float64 once
    for _ in range(3):
        obj(preds, _Data(label, w))
    assert len(sums) == 1
    for bad in (np.nan, np.inf):
        for dtype in (np.float32, np.float64):
            w = np.ones(6, dtype)
            w[4] = bad
            with pytest.raises(ValueError, match=rf"mse: sample_weight must be finite and >= 0, got {bad!r} at "
                                                 r"index \(4,\)"):
                obj(preds, _Data(label, w))
    with pytest.raises(ValueError, match=r"cross_entropy: sample_weight must be finite and >= 0, got nan"):
        fb.gradient_hessian("cross_entropy", np.array([0, 1]), np.zeros((2, 3)), np.array([1.0, np.nan]))


class _Data:
    """The two methods both libraries' data sets offer an objective."""

    def __init__(self, label, weight):
        self.label, self.weight = label, weight

    def get_label(self):
        return self.label

    def get_weight(self):
        return self.weight


@pytest.mark.parametrize("make", [fb.lightgbm_objective, fb.xgboost_objective, fb.lightgbm_metric, fb.xgboost_metric])
def test_objectives_and_metrics_survive_pickle(make):
    """A model saved with its objective, a scikit-learn clone and a worker process all pickle the callable:
    the copy computes what the original does, for both calling conventions."""
    rng = np.random.default_rng(5)
    y = (rng.random(50) > 0.5).astype(np.float64)
    preds, w = rng.normal(size=50), rng.random(50)
    native = make("binary_focal", gamma=1.5, alpha=0.3)
    copy = pickle.loads(pickle.dumps(native))
    assert type(copy) is type(native) and copy.__name__ == native.__name__
    for a, b in ((native(preds, _Data(y, w)), copy(preds, _Data(y, w))),
                 (native.sklearn(y, preds, w), copy.sklearn(y, preds, w))):
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))  # XGBoost's sklearn metric: the value alone
        assert len(a) == len(b)
        for x, z in zip(a, b):
            np.testing.assert_array_equal(x, z)
    a, b = native(preds, _Data(y, w)), make("binary_focal", gamma=2.5, alpha=0.3)(preds, _Data(y, w))
    assert not all(np.array_equal(x, z) for x, z in zip(a, b))  # the parameters travel with the copy


def test_signatures_are_what_the_libraries_inspect():
    """LightGBM's scikit-learn wrapper counts parameters (3: y_true, y_pred, weight); XGBoost's looks for a
    parameter named sample_weight."""
    assert list(inspect.signature(fb.lightgbm_objective("mse")).parameters) == ["preds", "train_data"]
    assert list(inspect.signature(fb.lightgbm_objective("mse", api="sklearn")).parameters) == \
        ["y_true", "y_pred", "weight"]
    assert list(inspect.signature(fb.lightgbm_metric("mse")).parameters) == ["preds", "eval_data"]
    assert len(inspect.signature(fb.lightgbm_metric("mse", api="sklearn")).parameters) == 3
    assert list(inspect.signature(fb.xgboost_objective("mse")).parameters) == ["predt", "dtrain"]
    assert "sample_weight" in inspect.signature(fb.xgboost_objective("mse", api="sklearn")).parameters
    assert list(inspect.signature(fb.xgboost_metric("mse")).parameters) == ["predt", "dmatrix"]
    assert fb.xgboost_metric("mse", api="sklearn", metric_name="fl_mse").__name__ == "fl_mse"


def test_hessian_defaults_and_focal_safeguard():
    x = np.array([-6.0, -3.0, -1.0, 0.0, 2.0, 6.0])
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    _, exact = fl.binary_focal.grad_hess(x, y, reduction="none")
    assert (exact < 0).any()  # confidently wrong positives: the exact Hessian is negative
    _, h = fb.gradient_hessian("binary_focal", y, x)
    np.testing.assert_allclose(h, np.maximum(exact, fb.FOCAL_MIN_HESSIAN))
    _, h_none = fb.gradient_hessian("binary_focal", y, x, min_hessian=None)
    np.testing.assert_array_equal(h_none, exact)
    w = np.linspace(0.0, 2.0, x.size)
    _, hw = fb.gradient_hessian("binary_focal", y, x, w, min_hessian=0.1)
    np.testing.assert_allclose(hw, np.maximum(exact * w, 0.1 * w))
    # mae and quantile: unit Hessians (times the weight) unless asked for the exact zeros
    _, h_mae = fb.gradient_hessian("mae", y, x, w)
    np.testing.assert_array_equal(h_mae, w)
    _, h_exact = fb.gradient_hessian("mae", y, x, hessian="exact")
    np.testing.assert_array_equal(h_exact, 0.0)
    # other losses: no clipping
    assert fb.lightgbm_objective("mse").min_hessian is None
    assert fb.lightgbm_objective("cross_entropy", softcap=5.0).min_hessian == fb.FOCAL_MIN_HESSIAN


def test_multiclass_layouts():
    rng = np.random.default_rng(2)
    n, K = 7, 4
    scores = rng.normal(size=(n, K))
    labels = rng.integers(0, K, n).astype(np.float32)
    g_ref, h_ref = fl.cross_entropy.grad_hess(scores, labels.astype(np.int64), reduction="none")
    # current LightGBM / XGBoost: (n, K) in and out (LightGBM's array is Fortran-ordered)
    for preds in (scores, np.asfortranarray(scores)):
        g, h = fb.lightgbm_objective("cross_entropy")(preds, FakeDataset(labels))
        assert g.shape == (n, K)
        _assert_derivatives(g, g_ref, 1e-13)
        _assert_derivatives(h, h_ref, 1e-13)
    # LightGBM < 4: flat, class-major
    g, h = fb.lightgbm_objective("cross_entropy")(scores.T.reshape(-1), FakeDataset(labels))
    _assert_derivatives(g, g_ref.T.reshape(-1), 1e-13)
    _assert_derivatives(h, h_ref.T.reshape(-1), 1e-13)
    # XGBoost flat: row-major
    g, h = fb.xgboost_objective("cross_entropy")(scores.reshape(-1), FakeDataset(labels, empty_weight=np.array([])))
    np.testing.assert_allclose(g, g_ref.reshape(-1), rtol=1e-13)
    # weights per row
    w = _weights(n)
    g, h = fb.gradient_hessian("categorical_focal", labels, scores, w, gamma=1.0)
    g_ref, h_ref = fl.categorical_focal.grad_hess(scores, labels.astype(np.int64), reduction="none",
                                                  sample_weight=w, gamma=1.0)
    np.testing.assert_allclose(g, g_ref, rtol=1e-13)
    np.testing.assert_allclose(h, np.maximum(h_ref, fb.FOCAL_MIN_HESSIAN * w[:, None]), rtol=1e-13)


def test_metrics_are_weighted_means():
    rng = np.random.default_rng(3)
    preds, label, w = rng.normal(size=40), rng.random(40).round(), _weights(40)
    want = fl.binary_cross_entropy_with_logits(preds, label.astype(np.float32), sample_weight=w)
    name, value, higher = fb.lightgbm_metric("binary_cross_entropy_with_logits", metric_name="bce")(
        preds, FakeDataset(label, w))
    assert (name, higher) == ("bce", False) and math.isclose(value, want, rel_tol=1e-12)
    name, value = fb.xgboost_metric("binary_cross_entropy_with_logits")(preds, FakeDataset(label, w))
    assert name == "binary_cross_entropy_with_logits" and math.isclose(value, want, rel_tol=1e-12)
    assert math.isclose(fb.metric_value("binary_cross_entropy_with_logits", label, preds, w), want, rel_tol=1e-12)
    # a non-differentiable loss is a metric, not an objective
    assert fb.lightgbm_metric("zero_one", threshold=0.0)(preds, FakeDataset(label))[1] == \
        fl.zero_one(preds, label.astype(np.float32), threshold=0.0)
    with pytest.raises(ValueError, match="not differentiable"):
        fb.lightgbm_objective("zero_one")


def test_initial_scores():
    rng = np.random.default_rng(4)
    y = rng.poisson(3.0, 500).astype(np.float64)
    w = _weights(500)
    assert math.isclose(fb.initial_score("mse", y, w), np.average(y, weights=w), rel_tol=1e-12)
    assert math.isclose(fb.initial_score("poisson_nll", y, w), math.log(np.average(y, weights=w)), rel_tol=1e-10)
    yb = (y > 3).astype(np.float64)
    p = np.average(yb, weights=w)
    assert math.isclose(fb.initial_score("binary_cross_entropy_with_logits", yb, w), math.log(p / (1 - p)),
                        rel_tol=1e-10)
    assert fb.initial_score("mae", y) == np.median(y)
    with pytest.raises(ValueError):
        fb.initial_score("cross_entropy", y)


def test_initial_scores_refuses_labels_that_are_not_class_indices_before_counting():
    """The number of classes comes from num_class, or else from the labels, bounded by their number: one wrong
    label must not allocate a count per class up to it."""
    with pytest.raises(ValueError, match=r"(?s)label 5 is too large.*below the number of labels \(3\).*num_class=K"):
        fb.initial_scores("cross_entropy", np.array([0, 1, 5]))
    for huge in (10**9, 1e9, 2**63, 1e300, np.inf):
        with pytest.raises(ValueError, match="below the number of labels"):
            fb.initial_scores("cross_entropy", np.array([0, 1, huge]))
    with pytest.raises(ValueError, match=r"label 1000000000 is out of range.*0\.\.num_class-1 = 0\.\.2"):
        fb.initial_scores("cross_entropy", [0, 1, 10**9], num_class=3)
    with pytest.raises(ValueError, match=r"class indices 0\.\.K-1, got -1"):
        fb.initial_scores("categorical_focal", [0, -1, 1])
    with pytest.raises(ValueError, match="non-integer"):
        fb.initial_scores("cross_entropy", [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="ragged"):
        fb.initial_scores("cross_entropy", [[0, 1], [1]])
    with pytest.raises(ValueError, match="no labels"):
        fb.initial_scores("cross_entropy", np.array([], dtype=np.int64))
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"num_class must be an integer >= 1.*got {bad!r}"):
            fb.initial_scores("cross_entropy", [0, 1], num_class=bad)
    for bad in (2.0, True, "3"):
        with pytest.raises(TypeError, match=rf"num_class must be an integer >= 1.*got {bad!r}"):
            fb.initial_scores("cross_entropy", [0, 1], num_class=bad)
    with pytest.raises(ValueError, match="num_class is for the multiclass losses"):
        fb.initial_scores("mse", [0.0, 1.0], num_class=2)
    for w in ([1.0, np.nan, 1.0], [1.0, np.inf, 1.0], [1.0, -1.0, 1.0]):
        with pytest.raises(ValueError, match=r"weight must be finite and >= 0.*\(1,\)"):
            fb.initial_scores("cross_entropy", [0, 1, 1], w)
    with pytest.raises(ValueError, match=r"one entry per label \(3\), got shape \(2,\)"):
        fb.initial_scores("cross_entropy", [0, 1, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        fb.initial_scores("cross_entropy", [0, 1, 1], [0.0, 0.0, 0.0])


def test_initial_scores_with_num_class_has_a_score_for_every_class():
    tiny = np.log(np.finfo(np.float64).tiny)
    np.testing.assert_allclose(fb.initial_scores("cross_entropy", [0, 1, 1, 1], num_class=4),
                               [np.log(0.25), np.log(0.75), tiny, tiny])
    np.testing.assert_allclose(fb.initial_scores("cross_entropy", np.array([0.0, 1.0, 1.0]), num_class=np.int64(2)),
                               np.log([1 / 3, 2 / 3]))
    # without num_class, labels below their number (a class they lack in between gets the floor)
    np.testing.assert_allclose(fb.initial_scores("cross_entropy", [2, 0, 2]), [np.log(1 / 3), tiny, np.log(2 / 3)])


def test_scores_to_proba_checks_the_shape_of_the_scores():
    for name in ("cross_entropy", "categorical_focal"):
        with pytest.raises(ValueError, match=r"(?s)shape \(n_samples, n_classes\).*got shape \(6,\).*reshape"):
            fb.scores_to_proba(name, np.zeros(6))
        for shape in ((2, 3, 1), (3, 0), ()):
            with pytest.raises(ValueError, match=rf"{name}: raw must be .*got shape {re.escape(str(shape))}"):
                fb.scores_to_proba(name, np.zeros(shape))
    for name in ("binary_focal", "binary_cross_entropy_with_logits"):
        with pytest.raises(ValueError, match=r"one score per sample.*got shape \(3, 2\)"):
            fb.scores_to_proba(name, np.zeros((3, 2)))
        assert fb.scores_to_proba(name, np.zeros((3, 1))).shape == (3, 2)
    with pytest.raises(TypeError, match="raw must be real"):
        fb.scores_to_proba("cross_entropy", np.zeros((2, 2), complex))


_TARGETS = {  # targets in each target domain, far from 0 where the domain allows: a first step from 0 overshoots
    "real": lambda rng, n: rng.normal(50.0, 5.0, n), "nonnegative": lambda rng, n: rng.poisson(40.0, n) * 1.0,
    "positive": lambda rng, n: rng.gamma(4.0, 10.0, n), "unit": lambda rng, n: (rng.uniform(size=n) < 0.2) * 1.0,
    "sign": lambda rng, n: np.where(rng.uniform(size=n) < 0.3, -1.0, 1.0),
}
_RAW_SCORE_LOSSES = [n for n in fl.LOSSES if fl.LOSSES[n].spec.kind == "elementwise" and fl.LOSSES[n].spec.differentiable
                     and fl.LOSSES[n].spec.pred_domain_for(fl.LOSSES[n]._check_params({})[0]) == "real"]


@pytest.mark.parametrize("name", _RAW_SCORE_LOSSES)
def test_initial_score_minimises_the_weighted_mean_loss(name):
    """Every single-score loss on raw scores has an initial score, and no constant near it does better (the
    targets sit far from 0, where the Hessian of the bounded-gradient losses is small or negative)."""
    rng = np.random.default_rng(11)
    spec = fl.LOSSES[name].spec
    y = _TARGETS[spec.target_domain_for(spec.defaults())](rng, 400)
    w = _weights(400)
    c = fb.initial_score(name, y, w)
    assert math.isfinite(c)
    loss = fl.LOSSES[name]

    def mean(v):
        return loss(np.full(y.shape, v), y, sample_weight=w)

    for delta in (1e-3, 1e-1, 3.0):
        step = delta * max(1.0, abs(c))
        assert mean(c) <= min(mean(c - step), mean(c + step)) * (1 + 1e-12), (c, delta)


def test_initial_score_of_mape_is_the_median_weighted_by_the_inverse_targets():
    rng = np.random.default_rng(12)
    y = rng.gamma(2.0, 20.0, 301)
    w = _weights(301)
    order = np.argsort(y)
    v = (w / y)[order]
    median = y[order][np.searchsorted(np.cumsum(v), 0.5 * v.sum())]
    assert fb.initial_score("mape", y, w) == pytest.approx(median, rel=1e-12)
    assert fb.initial_score("hinge", np.array([1.0, 1.0, -1.0])) == pytest.approx(1.0, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss"):
        fb.lightgbm_objective("nope")
    with pytest.raises(ValueError, match="soft"):
        fb.xgboost_objective("kl_div_with_logits")
    with pytest.raises(ValueError, match="api"):
        fb.lightgbm_objective("mse", api="R")
    with pytest.raises(TypeError, match="unknown keyword"):
        fb.lightgbm_objective("huber", beta=1.0)
    with pytest.raises(ValueError, match="delta"):
        fb.xgboost_objective("huber", delta=-1.0)
    with pytest.raises(ValueError, match="min_hessian"):
        fb.lightgbm_objective("binary_focal", min_hessian=-1.0)
    with pytest.raises(TypeError, match="api='sklearn'"):
        fb.lightgbm_objective("mse")(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="class indices"):
        fb.gradient_hessian("cross_entropy", np.array([0.5, 1.0]), np.zeros((2, 3)))


def test_losses_without_a_score_per_sample_are_refused_by_name():
    """Every loss that is not one score per sample (per class) is refused when the objective is made, with a
    ValueError that says why, never later inside training."""
    from fusedloss._spec import REGISTRY

    others = sorted(n for n, spec in REGISTRY.items() if spec.kind not in ("elementwise", "multiclass"))
    assert {"ctc", "dice", "triplet_margin"} <= set(others)
    for name in others:
        for make in (fb.lightgbm_objective, fb.xgboost_objective, fb.lightgbm_metric, fb.xgboost_metric):
            with pytest.raises(ValueError, match=f"{name}: an? .* loss"):
                make(name)
        with pytest.raises(ValueError, match=f"{name}: an? .* loss"):
            fb.gradient_hessian(name, np.zeros(4), np.zeros(4))


# --- LightGBM training ---------------------------------------------------------------------------------------

LGB_BASE = {"verbose": -1, "num_threads": 1, "deterministic": True, "learning_rate": 0.1, "num_leaves": 15,
            "seed": 0}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("builtin, ours, data", [
    ("regression", "mse", _regression),
    ("binary", "binary_cross_entropy_with_logits", _binary),
], ids=["l2", "binary"])
def test_lightgbm_reproduces_builtin_objective(builtin, ours, data, weighted):
    """Same trees as LightGBM's own objective: fusedloss's mse is twice LightGBM's half squared error (both
    gradient and Hessian), so leaf values and split choices agree; the built-in boosts from the average, ours
    from the same initial score given as init_score."""
    lgb = _lightgbm()
    X, y = data()
    w = _weights(len(y)) if weighted else None
    ref = lgb.train({**LGB_BASE, "objective": builtin}, lgb.Dataset(X, y, weight=w), num_boost_round=40)
    init = fb.initial_score(ours, y, w)
    ds = lgb.Dataset(X, y, weight=w, init_score=np.full(len(y), init))
    model = lgb.train({**LGB_BASE, "objective": fb.lightgbm_objective(ours)}, ds, num_boost_round=40)
    want = ref.predict(X, raw_score=True)
    got = model.predict(X) + init  # a custom objective predicts raw scores, without the init_score
    assert _close_fraction(want, got) < 1e-6


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "cross_entropy"])
def test_lightgbm_trains_the_same_model_from_the_rounded_derivatives(name):
    """The float32 arrays of an objective are what LightGBM made of the float64 derivatives itself: the same
    model, to the bit, as from an objective that returns the float64 arrays of the loss's grad_hess."""
    lgb = _lightgbm()
    rng = np.random.default_rng(9)
    X = rng.normal(size=(600, 4))
    if name == "cross_entropy":
        y = np.argmax(X[:, :3] + rng.normal(size=(600, 3)), axis=1).astype(np.float64)
        extra = {"num_class": 3}
    else:
        y = (X[:, 0] + rng.normal(size=600) > 0).astype(np.float64)
        extra = {}
    w = _weights(600)
    loss = getattr(fl, name)
    ours = fb.lightgbm_objective(name)

    def float64_objective(preds, data):
        target = data.get_label().astype(np.int64 if name == "cross_entropy" else np.float64)
        g, h = loss.grad_hess(preds, target, reduction="none", sample_weight=data.get_weight().astype(np.float64))
        if ours.min_hessian is not None:
            h = np.maximum(h, ours.min_hessian * (w[:, None] if h.ndim == 2 else w))
        return g, h

    models = [lgb.train({**LGB_BASE, **extra, "objective": obj}, lgb.Dataset(X, y, weight=w), num_boost_round=15)
              for obj in (ours, float64_objective)]
    assert ours(np.zeros((600, 3)) if extra else np.zeros(600), lgb.Dataset(X, y, weight=w).construct())[0].dtype \
        == np.float32
    np.testing.assert_array_equal(models[0].predict(X, raw_score=True), models[1].predict(X, raw_score=True))
    assert models[0].model_to_string().split("parameters:")[0] == models[1].model_to_string().split("parameters:")[0]


def test_lightgbm_sklearn_api_reproduces_builtin():
    lgb = _lightgbm()
    X, y = _regression(seed=1)
    w = _weights(len(y))
    kw = dict(n_estimators=30, learning_rate=0.1, num_leaves=15, verbose=-1, n_jobs=1, deterministic=True)
    ref = lgb.LGBMRegressor(objective="regression", **kw).fit(X, y, sample_weight=w)
    init = fb.initial_score("mse", y, w)
    ours = lgb.LGBMRegressor(objective=fb.lightgbm_objective("mse", api="sklearn"), **kw)
    ours.fit(X, y, sample_weight=w, init_score=np.full(len(y), init),
             eval_set=[(X, y)], eval_sample_weight=[w], eval_init_score=[np.full(len(y), init)],
             eval_metric=fb.lightgbm_metric("mse", api="sklearn"))
    assert _close_fraction(ref.predict(X), ours.predict(X) + init) < 1e-6
    # the metric is the weighted mean squared error of the raw score (including the init score)
    recorded = ours.evals_result_["training"]["mse"][-1]
    assert math.isclose(recorded, np.average((ours.predict(X) + init - y) ** 2, weights=w), rel_tol=1e-5)


def test_lightgbm_feval_matches_builtin_metric():
    lgb = _lightgbm()
    X, y = _regression(seed=2)
    w = _weights(len(y))
    evals = {}
    ds = lgb.Dataset(X, y, weight=w)
    lgb.train({**LGB_BASE, "objective": "regression", "metric": "l2"}, ds, num_boost_round=10, valid_sets=[ds],
              valid_names=["train"], feval=fb.lightgbm_metric("mse"), callbacks=[lgb.record_evaluation(evals)])
    np.testing.assert_allclose(evals["train"]["mse"], evals["train"]["l2"], rtol=1e-6)


def test_lightgbm_multiclass_cross_entropy():
    """LightGBM hands custom multiclass objectives (n, K) scores: ours trains to the built-in's accuracy."""
    lgb = _lightgbm()
    rng = np.random.default_rng(6)
    X = rng.normal(size=(1500, 6))
    y = np.argmax(X[:, :3] + 0.5 * rng.normal(size=(1500, 3)), axis=1).astype(np.float64)
    base = {**LGB_BASE, "num_class": 3}
    ref = lgb.train({**base, "objective": "multiclass"}, lgb.Dataset(X, y), num_boost_round=30)
    evals = {}
    ds = lgb.Dataset(X, y)
    model = lgb.train({**base, "objective": fb.lightgbm_objective("cross_entropy")}, ds, num_boost_round=30,
                      valid_sets=[ds], valid_names=["train"], feval=fb.lightgbm_metric("cross_entropy"),
                      callbacks=[lgb.record_evaluation(evals)])
    scores = model.predict(X)
    assert scores.shape == (1500, 3)
    acc_ours = np.mean(np.argmax(scores, 1) == y)
    acc_ref = np.mean(np.argmax(ref.predict(X), 1) == y)
    # the built-in scales its Hessian by K / (K - 1); ours is the exact diagonal, so its steps are a bit longer
    assert acc_ours > 0.8 and acc_ours > acc_ref - 0.03
    curve = evals["train"]["cross_entropy"]
    assert curve[-1] < 0.6 * curve[0]
    assert math.isclose(curve[-1], fl.cross_entropy(scores, y.astype(np.int64)), rel_tol=1e-6)


def _imbalanced(n=6000, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=20, n_informative=8, weights=[0.97], flip_y=0.01,
                               class_sep=1.0, random_state=seed)
    half = n // 2
    return X[:half], y[:half].astype(np.float64), X[half:], y[half:].astype(np.float64)


def test_lightgbm_focal_trains_on_imbalanced_data():
    lgb = _lightgbm()
    from sklearn.metrics import average_precision_score

    Xtr, ytr, Xva, yva = _imbalanced()
    assert ytr.mean() < 0.05
    init = fb.initial_score("binary_focal", ytr)
    dtr = lgb.Dataset(Xtr, ytr, init_score=np.full(len(ytr), init))
    dva = lgb.Dataset(Xva, yva, init_score=np.full(len(yva), init), reference=dtr)
    evals = {}
    model = lgb.train({**LGB_BASE, "objective": fb.lightgbm_objective("binary_focal", alpha=0.25, gamma=2.0)},
                      dtr, num_boost_round=100, valid_sets=[dva], valid_names=["valid"],
                      feval=fb.lightgbm_metric("binary_focal", alpha=0.25, gamma=2.0),
                      callbacks=[lgb.record_evaluation(evals)])
    curve = np.array(evals["valid"]["binary_focal"])
    constant = fl.binary_focal(np.full(len(yva), init), yva)
    assert np.all(np.isfinite(curve))
    assert curve.min() < 0.5 * constant  # the focal loss on held-out data halves from the constant model
    score = model.predict(Xva) + init
    assert average_precision_score(yva, score) > 5 * yva.mean()  # far better than chance


# --- XGBoost training -------------------------------------------------------------------------------------------

XGB_BASE = {"tree_method": "hist", "max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0,
            # fusedloss's mse has twice XGBoost's gradient and Hessian: no L2 penalty and no minimum child
            # weight keep the leaf values and splits the same
            "reg_lambda": 0.0, "min_child_weight": 0.0}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("builtin, ours, data, tol", [
    ("reg:squarederror", "mse", _regression, 1e-5),
    # binary:logistic computes in float32 and ours in float64: near-ties between splits may resolve differently
    ("binary:logistic", "binary_cross_entropy_with_logits", _binary, 2e-3),
], ids=["l2", "binary"])
def test_xgboost_reproduces_builtin_objective(builtin, ours, data, tol, weighted):
    xgb = _xgboost()
    X, y = data()
    w = _weights(len(y)) if weighted else None
    init = fb.initial_score(ours, y, w)
    base_score = 1 / (1 + math.exp(-init)) if builtin == "binary:logistic" else init  # logistic: a probability
    dtrain = xgb.DMatrix(X, y, weight=w)
    ref = xgb.train({**XGB_BASE, "objective": builtin, "base_score": base_score}, dtrain, num_boost_round=40)
    model = xgb.train({**XGB_BASE, "base_score": init, "disable_default_eval_metric": 1}, dtrain,
                      num_boost_round=40, obj=fb.xgboost_objective(ours))
    dx = xgb.DMatrix(X)
    want = ref.predict(dx, output_margin=True).astype(np.float64)
    got = model.predict(dx, output_margin=True).astype(np.float64)
    assert _close_fraction(want, got) < tol
    assert np.mean(np.abs(want - got)) < tol * np.std(want) / 10


def test_xgboost_focal_trains_on_imbalanced_data():
    xgb = _xgboost()
    Xtr, ytr, Xva, yva = _imbalanced(seed=1)
    init = fb.initial_score("binary_focal", ytr)
    evals = {}
    dtr, dva = xgb.DMatrix(Xtr, ytr), xgb.DMatrix(Xva, yva)
    model = xgb.train({"tree_method": "hist", "max_depth": 4, "eta": 0.1, "nthread": 1, "base_score": init,
                       "disable_default_eval_metric": 1}, dtr, num_boost_round=100,
                      obj=fb.xgboost_objective("binary_focal"), custom_metric=fb.xgboost_metric("binary_focal"),
                      evals=[(dva, "valid")], evals_result=evals, verbose_eval=False)
    curve = np.array(evals["valid"]["binary_focal"])
    assert np.all(np.isfinite(curve))
    assert curve.min() < 0.5 * fl.binary_focal(np.full(len(yva), init), yva)
    assert model.predict(dva, output_margin=True).shape == yva.shape


def test_xgboost_objective_reads_the_dmatrix_without_keeping_it():
    """The objective reads a DMatrix's labels and weights in place (no get_label() copy): the same arrays as
    through the getters, the values XGBoost holds at each call (set_label / set_weight between rounds are seen),
    the DMatrix left as it was, and no conversion of XGBoost's memory kept once the call returns (a view is
    handed out again only while XGBoost reports the same pointer, shape and type)."""
    xgb = _xgboost()
    from fusedloss._boosting_math import _Borrowed

    rng = np.random.default_rng(11)
    n = 300
    y, w = rng.random(n).round(), rng.uniform(0.5, 2.0, n)
    dtrain = xgb.DMatrix(rng.normal(size=(n, 3)), y, weight=w)
    obj = fb.xgboost_objective("binary_cross_entropy_with_logits", pos_weight=1.5)
    preds = rng.normal(size=n).astype(np.float32)

    def expected(dm):
        return fl.binary_cross_entropy_with_logits.grad_hess(preds, dm.get_label(), reduction="none",
                                                             sample_weight=dm.get_weight(), pos_weight=1.5)

    for step in range(3):
        g, h = obj(preds, dtrain)
        g_ref, h_ref = expected(dtrain)
        np.testing.assert_array_equal(g, g_ref)
        np.testing.assert_array_equal(h, h_ref)
        np.testing.assert_array_equal(dtrain.get_label(), y.astype(np.float32))
        kept = [v for entry in obj._rounds._converted.values() for v in entry]
        assert not any(isinstance(getattr(a, "base", None), _Borrowed) for a in kept)
        y = 1.0 - y if step == 0 else y
        w = w[::-1].copy() if step == 1 else w
        dtrain.set_label(y)
        dtrain.set_weight(w)
    from fusedloss._boosting import _dmatrix_info

    first = _dmatrix_info(dtrain, "label")
    assert _dmatrix_info(dtrain, "label") is first  # unchanged: the view is reused
    dtrain.set_label(np.r_[y, 0.0][:-1] * 0.5)  # new values, new memory
    np.testing.assert_array_equal(_dmatrix_info(dtrain, "label"), (y * 0.5).astype(np.float32))
    unweighted = xgb.DMatrix(rng.normal(size=(n, 3)), y)
    g, _ = obj(preds, unweighted)
    np.testing.assert_array_equal(g, fl.binary_cross_entropy_with_logits.grad(
        preds, y.astype(np.float32), reduction="none", pos_weight=1.5))


def test_xgboost_multiclass_layout():
    xgb = _xgboost()
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 5))
    y = np.argmax(X[:, :3] + 0.5 * rng.normal(size=(900, 3)), axis=1)
    model = xgb.train({"tree_method": "hist", "max_depth": 3, "eta": 0.3, "nthread": 1, "num_class": 3,
                       "disable_default_eval_metric": 1}, xgb.DMatrix(X, y), num_boost_round=20,
                      obj=fb.xgboost_objective("cross_entropy"))
    scores = model.predict(xgb.DMatrix(X), output_margin=True)
    assert scores.shape == (900, 3)
    assert np.mean(np.argmax(scores, 1) == y) > 0.8


@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
def test_complex_or_text_arrays_are_refused_not_cast(name):
    """Scores, labels and weights convert from any real numbers; complex numbers and text are refused, naming
    the argument (a cast would drop the imaginary part or parse the text)."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(6, 3)) if name == "cross_entropy" else rng.normal(size=6)
    labels, w = np.array([0.0, 1, 2, 0, 1, 2]), np.ones(6)
    fb.gradient_hessian(name, labels, scores, w)  # the real ones are fine
    for args, what in (((labels, scores.astype(complex), w), "y_pred"), ((labels.astype(complex), scores, w), "y_true"),
                       ((labels, scores, w.astype(complex)), "weight"), ((labels.astype(str), scores, w), "y_true"),
                       ((labels, scores, w.astype(str)), "weight")):
        with pytest.raises(TypeError, match=what):
            fb.gradient_hessian(name, *args)
        with pytest.raises(TypeError, match=what):
            fb.metric_value(name, *args)


def test_xgboost_objective_runs_on_one_thread_unless_a_count_is_chosen(monkeypatch):
    """XGBoost calls the objective while its OpenMP threads still spin after the round's prediction, so its
    objectives run on the calling thread by default; set_num_threads (or FUSEDLOSS_NUM_THREADS) chooses otherwise,
    and LightGBM's objectives use fusedloss's thread count. The results are the same bits either way."""
    from fusedloss import _config
    from fusedloss._dispatch import Loss

    seen = []
    run = Loss._run

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("nthreads"))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Loss, "_run", spy)
    monkeypatch.setattr(_config, "_env_threads_value", None)
    monkeypatch.setattr(_config, "_num_threads", None)
    monkeypatch.setattr(_config, "_cores", 2)
    monkeypatch.setattr(_config, "_omp_threads_value", None)
    rng = np.random.default_rng(4)
    y = (rng.random(70_000) < 0.4).astype(np.float32)
    margins = rng.normal(size=y.size).astype(np.float32)
    xgb_obj = fb.xgboost_objective("binary_cross_entropy_with_logits", api="sklearn")
    lgb_obj = fb.lightgbm_objective("binary_cross_entropy_with_logits", api="sklearn")
    default = [a.copy() for a in xgb_obj(y, margins)]
    assert seen[-1] == 1
    lgb_obj(y.astype(np.float64), margins.astype(np.float64), None)
    assert seen[-1] == 2
    fl.set_num_threads(2)
    try:
        chosen = xgb_obj(y, margins)
        assert seen[-1] == 2
    finally:
        fl.set_num_threads(None)
    monkeypatch.setattr(_config, "_env_threads_value", 2)  # FUSEDLOSS_NUM_THREADS=2
    xgb_obj(y, margins)
    assert seen[-1] == 2
    for a, b in zip(default, chosen):
        np.testing.assert_array_equal(a, b)
