"""fusedloss's objectives against the boosting libraries' own built-in ones: the same data, the same base
margin, a few rounds with the library's objective and with ``fusedloss.boosting``'s; the trees see the same
gradients and Hessians, so the predictions agree to float32 rounding.

Both libraries are optional: a test skips when its library is absent. ``tree_method="exact"`` (XGBoost) and one
thread keep the split search deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
import fusedloss.boosting as fb


def _xgboost():
    return pytest.importorskip("xgboost", reason="XGBoost is not installed (pip install xgboost)")


def _regression(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.exp(0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)) + shift
    return X, y


def _xgb_pair(xgb, X, y, base, builtin: dict, obj, rounds=4, eta=0.1):
    """Raw predictions after ``rounds`` rounds: the built-in objective and ``obj``, from one base margin."""
    params = {"tree_method": "exact", "max_depth": 3, "eta": eta, "nthread": 1, "disable_default_eval_metric": 1}
    d = xgb.DMatrix(X, y, base_margin=np.full(len(y), base))
    want = xgb.train({**params, **builtin}, d, num_boost_round=rounds)
    got = xgb.train(params, d, num_boost_round=rounds, obj=obj)
    return want.predict(d, output_margin=True), got.predict(d, output_margin=True)


def test_xgboost_squaredlogerror():
    """reg:squaredlogerror: XGBoost floors the Hessian at 1e-6 (min_hessian=1e-6 here). From the base margin 1,
    8% of the samples lie where 1 + p > e (1 + y), so the floor is exercised, not only the smooth part (more of
    them, and the floored leaves step below p = -1, where XGBoost clamps p and fusedloss refuses it)."""
    xgb = _xgboost()
    X, y = _regression(800, 0, shift=-0.5)
    base = 1.0
    h = fl.squared_log.grad_hess(np.full(len(y), base), y, reduction="none")[1]
    assert np.mean(h < 0) > 0.05  # the floor matters on this data
    want, got = _xgb_pair(xgb, X, y, base, {"objective": "reg:squaredlogerror"},
                          fb.xgboost_objective("squared_log", min_hessian=1e-6))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert fl.squared_log(got, y) < fl.squared_log(np.full(len(y), base), y)  # it trained
    # another floor (the default, 0.02) gives another model from the same rounds: the comparison can fail
    _, other = _xgb_pair(xgb, X, y, base, {"objective": "reg:squaredlogerror"}, fb.xgboost_objective("squared_log"))
    assert np.max(np.abs(other - want)) > 1e-2


def _lightgbm():
    return pytest.importorskip("lightgbm", reason="LightGBM is not installed (pip install lightgbm)")


def _lgb_raw(lgb, X, y, init, objective, rounds=5, **extra):
    """Raw scores (init score included) after ``rounds`` rounds with ``objective`` (a name or a callable)."""
    params = {"objective": objective, "verbose": -1, "num_threads": 1, "num_leaves": 8, "learning_rate": 0.1,
              "boost_from_average": False, "deterministic": True, "force_row_wise": True, **extra}
    booster = lgb.train(params, lgb.Dataset(X, y, init_score=np.full(len(y), init)), num_boost_round=rounds)
    return booster.predict(X, raw_score=True) + init


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_lightgbm_fair(c):
    """objective='fair' with fair_c = c: LightGBM's gradient c d / (|d| + c) and Hessian c^2 / (|d| + c)^2 are
    fusedloss's d / (1 + u) and 1 / (1 + u)^2, u = |d| / c; its fair metric is the value."""
    lgb = _lightgbm()
    X, y = _regression(800, 1)
    y = 3.0 * np.log(y) + np.random.default_rng(2).standard_t(2, len(y))  # heavy tails, where fair differs from mse
    init = float(np.median(y))
    want = _lgb_raw(lgb, X, y, init, "fair", fair_c=c)
    got = _lgb_raw(lgb, X, y, init, fb.lightgbm_objective("fair", c=c))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert fl.fair(got, y, c=c) < fl.fair(np.full(len(y), init), y, c=c)  # it trained
    other = _lgb_raw(lgb, X, y, init, fb.lightgbm_objective("fair", c=2 * c))  # the comparison can fail
    assert np.max(np.abs(other - want)) > 1e-2
    # LightGBM's own fair metric on the final scores is fusedloss's mean value
    metric = lgb.train({"objective": "fair", "fair_c": c, "metric": "fair", "verbose": -1, "num_threads": 1,
                        "boost_from_average": False}, lgb.Dataset(X, y, init_score=np.full(len(y), init)),
                       num_boost_round=1, valid_sets=[lgb.Dataset(X, y, init_score=np.full(len(y), init))],
                       callbacks=[lgb.record_evaluation(history := {})])
    first = metric.predict(X, raw_score=True) + init
    assert history["valid_0"]["fair"][-1] == pytest.approx(fl.fair(first, y, c=c), rel=1e-6)


def test_xgboost_squaredlogerror_is_half_msle():
    """msle is twice reg:squaredlogerror: with reg_lambda and min_child_weight doubled too, leaf values
    -G / (H + lambda) and the split order do not see the factor 2, so the models agree when msle's Hessian floor is
    twice XGBoost's (min_hessian=2e-6)."""
    xgb = _xgboost()
    X, y = _regression(800, 0, shift=-0.5)
    base = 1.0
    params = {"tree_method": "exact", "max_depth": 3, "eta": 0.1, "nthread": 1, "disable_default_eval_metric": 1}
    d = xgb.DMatrix(X, y, base_margin=np.full(len(y), base))
    want = xgb.train({**params, "objective": "reg:squaredlogerror"}, d, num_boost_round=4)
    got = xgb.train({**params, "reg_lambda": 2.0, "min_child_weight": 2.0}, d, num_boost_round=4,
                    obj=fb.xgboost_objective("msle", min_hessian=2e-6))
    want_p, got_p = want.predict(d, output_margin=True), got.predict(d, output_margin=True)
    np.testing.assert_allclose(got_p, want_p, rtol=2e-5, atol=2e-5)
    assert fl.msle(got_p, y) < fl.msle(np.full(len(y), base), y)  # it trained
    # another floor (the default, 0.02) gives another model: the comparison can fail
    other = xgb.train({**params, "reg_lambda": 2.0, "min_child_weight": 2.0}, d, num_boost_round=4,
                      obj=fb.xgboost_objective("msle"))
    assert np.max(np.abs(other.predict(d, output_margin=True) - want_p)) > 1e-3


def test_lightgbm_mape():
    """objective='mape': LightGBM's gradient sign(d) / max(1, |y|) and unit Hessian are fb.lightgbm_objective('mape',
    epsilon=1.0)'s, so the first tree splits the same way; LightGBM then replaces each leaf value by a weighted
    median of its residuals (its mape is renewed as L1), which a custom objective cannot do. Its mape metric is
    fl.mape(epsilon=1.0)'s mean."""
    lgb = _lightgbm()
    X, y = _regression(800, 4)
    y = 3.0 * np.log(y) + 0.5
    init = float(np.median(y))

    def first_tree(objective, **extra):
        params = {"objective": objective, "verbose": -1, "num_threads": 1, "num_leaves": 8, "learning_rate": 0.1,
                  "boost_from_average": False, "deterministic": True, "force_row_wise": True, **extra}
        booster = lgb.train(params, lgb.Dataset(X, y, init_score=np.full(len(y), init)), num_boost_round=1)
        splits, todo = [], [booster.dump_model()["tree_info"][0]["tree_structure"]]
        while todo:  # the splits in preorder: (feature, threshold)
            node = todo.pop()
            if "split_feature" in node:
                splits.append((node["split_feature"], node["threshold"]))
                todo += [node["right_child"], node["left_child"]]
        return splits

    want = first_tree("mape")
    assert len(want) > 3
    assert first_tree(fb.lightgbm_objective("mape", epsilon=1.0)) == want
    assert first_tree(fb.lightgbm_objective("mape")) != want  # sklearn's floor: other weights, other splits
    history = {}
    metric = lgb.train({"objective": "mape", "metric": "mape", "verbose": -1, "num_threads": 1,
                        "boost_from_average": False}, lgb.Dataset(X, y, init_score=np.full(len(y), init)),
                       num_boost_round=1, valid_sets=[lgb.Dataset(X, y, init_score=np.full(len(y), init))],
                       callbacks=[lgb.record_evaluation(history)])
    scores = metric.predict(X, raw_score=True) + init
    assert history["valid_0"]["mape"][-1] == pytest.approx(fl.mape(scores, y, epsilon=1.0), rel=1e-6)
