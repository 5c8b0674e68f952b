"""fusedloss objectives as LightGBM and XGBoost see them, against the NumPy objective of their docs.

    python benchmarks/boosting_objectives.py            # 100k rows: per-call time, then 100-round trainings
    python benchmarks/boosting_objectives.py --quick    # 20k rows, 10 rounds (a smoke run)

Per call: the objective called as the library calls it (LightGBM: float64 scores and the Dataset; XGBoost:
float32 margins and the DMatrix), binary log-loss, medians of interleaved samples. Per round: a whole
training of ``--rounds`` rounds with the built-in objective (``binary``, ``binary:logistic``), the NumPy
objective and fusedloss's, divided by the rounds (best of ``--trainings``). Both libraries use 2 threads.
Inside training: the median time of the objective's calls during those trainings, where the library calls it
between its own parallel work (its caches cold, its OpenMP threads still spinning), with fusedloss's default
threads (XGBoost's objectives: one, see ``xgboost_objective``), on 1 and on 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fusedloss as fl
import fusedloss.boosting as fb
from fusedloss import _config
from fusedloss.bench.timing import warm_and_time


def numpy_lightgbm_objective(preds, train_data):
    """LightGBM's documented custom binary log-loss objective."""
    labels = train_data.get_label()
    preds = 1.0 / (1.0 + np.exp(-preds))
    grad = preds - labels
    hess = preds * (1.0 - preds)
    return grad, hess


def numpy_xgboost_objective(predt, dtrain):
    """XGBoost's documented custom logistic objective."""
    y = dtrain.get_label()
    predt = 1.0 / (1.0 + np.exp(-predt))
    grad = predt - y
    hess = predt * (1.0 - predt)
    return grad, hess


def _interleaved(fns: dict, reps: int) -> dict:
    samples = warm_and_time(fns, reps, warmup=2)[1]
    return {k: statistics.median(v) for k, v in samples.items()}


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    logit = X[:, 0] - 0.5 * X[:, 1] + 0.25 * X[:, 2] * X[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return X, y


def per_call(n: int, reps: int):
    import lightgbm as lgb
    import xgboost as xgb

    X, y = _data(n)
    ds = lgb.Dataset(X, y, free_raw_data=False).construct()
    dm = xgb.DMatrix(X, y, nthread=2)
    rng = np.random.default_rng(1)
    scores64 = rng.standard_normal(n)
    scores32 = scores64.astype(np.float32)
    ours_lgb = fb.lightgbm_objective("binary_cross_entropy_with_logits")
    ours_xgb = fb.xgboost_objective("binary_cross_entropy_with_logits")
    # the same numbers (to the dtype's precision)
    for a, b in zip(ours_lgb(scores64, ds), numpy_lightgbm_objective(scores64, ds)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    for a, b in zip(ours_xgb(scores32, dm), numpy_xgboost_objective(scores32, dm)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    t = _interleaved({
        "lightgbm numpy": lambda: numpy_lightgbm_objective(scores64, ds),
        "lightgbm fusedloss": lambda: ours_lgb(scores64, ds),
        "xgboost numpy": lambda: numpy_xgboost_objective(scores32, dm),
        "xgboost fusedloss": lambda: ours_xgb(scores32, dm),
    }, reps)
    print(f"per call, binary log-loss, {n} rows (median of {reps}):")
    for lib in ("lightgbm", "xgboost"):
        a, b = t[f"{lib} numpy"], t[f"{lib} fusedloss"]
        print(f"  {lib:9s} numpy objective {a * 1e3:7.3f} ms   fusedloss {b * 1e3:7.3f} ms   speed-up {a / b:5.2f}x")
    return t


def _timed(calls: list, objective):
    """``objective`` that appends the duration of each of its calls to ``calls``."""
    def timed(preds, data):
        t0 = time.perf_counter()
        out = objective(preds, data)
        calls.append(time.perf_counter() - t0)
        return out

    return timed


def _threads(n: int, train):
    """``train`` run with fusedloss's thread count set to ``n``, then the setting as it was."""
    def run():
        before = _config._num_threads
        fl.set_num_threads(n)
        try:
            return train()
        finally:
            fl.set_num_threads(before)

    return run


def per_round(n: int, rounds: int, trainings: int):
    import lightgbm as lgb
    import xgboost as xgb

    X, y = _data(n, seed=2)
    init = fb.initial_score("binary_cross_entropy_with_logits", y)
    base = {"verbose": -1, "num_threads": 2, "learning_rate": 0.1, "num_leaves": 31, "seed": 0}
    ds_builtin = lgb.Dataset(X, y, free_raw_data=False).construct()
    ds_custom = lgb.Dataset(X, y, init_score=np.full(n, init), free_raw_data=False).construct()
    calls = {k: [] for k in ("lightgbm numpy", "lightgbm fusedloss", "lightgbm fusedloss 1 thread",
                             "lightgbm fusedloss 2 threads", "xgboost numpy", "xgboost fusedloss",
                             "xgboost fusedloss 1 thread", "xgboost fusedloss 2 threads")}
    lgb_ours = fb.lightgbm_objective("binary_cross_entropy_with_logits")
    xgb_ours = fb.xgboost_objective("binary_cross_entropy_with_logits")

    def lgb_train(objective):
        return lambda: lgb.train({**base, "objective": objective}, ds_custom, rounds)

    runs = {
        "lightgbm built-in": lambda: lgb.train({**base, "objective": "binary"}, ds_builtin, rounds),
        "lightgbm numpy": lgb_train(_timed(calls["lightgbm numpy"], numpy_lightgbm_objective)),
        "lightgbm fusedloss": lgb_train(_timed(calls["lightgbm fusedloss"], lgb_ours)),
        "lightgbm fusedloss 1 thread": _threads(1, lgb_train(_timed(calls["lightgbm fusedloss 1 thread"], lgb_ours))),
        "lightgbm fusedloss 2 threads": _threads(2, lgb_train(_timed(calls["lightgbm fusedloss 2 threads"],
                                                                     lgb_ours))),
    }
    dm = xgb.DMatrix(X, y, nthread=2)
    xbase = {"tree_method": "hist", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 0}

    def xgb_train(objective):
        return lambda: xgb.train({**xbase, "base_score": init, "disable_default_eval_metric": 1}, dm, rounds,
                                 obj=objective)

    runs.update({
        "xgboost built-in": lambda: xgb.train({**xbase, "objective": "binary:logistic"}, dm, rounds),
        "xgboost numpy": xgb_train(_timed(calls["xgboost numpy"], numpy_xgboost_objective)),
        "xgboost fusedloss": xgb_train(_timed(calls["xgboost fusedloss"], xgb_ours)),
        "xgboost fusedloss 1 thread": _threads(1, xgb_train(_timed(calls["xgboost fusedloss 1 thread"], xgb_ours))),
        "xgboost fusedloss 2 threads": _threads(2, xgb_train(_timed(calls["xgboost fusedloss 2 threads"],
                                                                    xgb_ours))),
    })
    best = {k: float("inf") for k in runs}
    for _ in range(trainings):
        for k, f in runs.items():  # interleaved, so that load hits every contestant alike
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], (time.perf_counter() - t0) / rounds)
    print(f"per round, {rounds} rounds on {n} rows (best of {trainings} trainings):")
    for lib in ("lightgbm", "xgboost"):
        b = best[f"{lib} built-in"]
        print(f"  {lib:9s} built-in {b * 1e3:7.3f} ms   numpy objective {best[lib + ' numpy'] * 1e3:7.3f} ms"
              f"   fusedloss {best[lib + ' fusedloss'] * 1e3:7.3f} ms ({best[lib + ' fusedloss'] / b:5.3f}x built-in)")
    inside = {k: statistics.median(v) for k, v in calls.items()}
    print(f"objective call inside training (median of {len(calls['xgboost numpy'])} calls):")
    for lib in ("lightgbm", "xgboost"):
        a, b = inside[f"{lib} numpy"], inside[f"{lib} fusedloss"]
        c, d = inside[f"{lib} fusedloss 1 thread"], inside[f"{lib} fusedloss 2 threads"]
        print(f"  {lib:9s} numpy objective {a * 1e3:7.3f} ms   fusedloss {b * 1e3:7.3f} ms ({a / b:5.2f}x)"
              f"   on 1 thread {c * 1e3:7.3f} ms ({a / c:5.2f}x)   on 2 threads {d * 1e3:7.3f} ms ({a / d:5.2f}x)")
    return best, inside


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--trainings", type=int, default=3)
    args = ap.parse_args(argv)
    n, rounds, trainings, reps = args.rows, args.rounds, args.trainings, 300
    if args.quick:
        n, rounds, trainings, reps = 20_000, 10, 1, 20
    print(f"load average {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} cores")
    per_call(n, reps)
    per_round(n, rounds, trainings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
