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
