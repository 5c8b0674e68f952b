"""A custom asymmetric loss as a LightGBM objective: fusedloss derives and compiles it from one formula; the same
objective written in NumPy (the way LightGBM's documentation shows custom objectives) trains the same model.

    python examples/custom_objective_lightgbm.py            # 1,000,000 samples, 40 rounds
    python examples/custom_objective_lightgbm.py --quick    # smaller (also: FUSEDLOSS_EXAMPLE_QUICK=1)

The loss: under-forecasting costs ``over`` times less than over-forecasting (say, stock that is left over
costs more than a missed sale)::

    @fl.elementwise_loss(params={"over": (3.0, "positive")})
    def asymmetric(p, y, over):
        return sym.where(p > y, over * (p - y) ** 2, (p - y) ** 2)

Both objectives are timed inside LightGBM's training loop; the script prints the time per boosting round
spent in each objective, the whole round, and how far apart the two models' predictions are.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

try:
    import lightgbm as lgb
except ImportError:  # pragma: no cover - depends on the environment
    raise SystemExit("this example needs LightGBM: pip install lightgbm")

import fusedloss as fl
import fusedloss.boosting as fb
from fusedloss import sym


@fl.elementwise_loss(params={"over": (3.0, "positive")})
def asymmetric(p, y, over):
    return sym.where(p > y, over * (p - y) ** 2, (p - y) ** 2)


def numpy_objective(over):
    """The same loss's gradient and Hessian, written by hand in NumPy."""

    def objective(preds, train_data):
        y = train_data.get_label()
        d = preds - y
        grad = np.where(d > 0, 2.0 * over * d, 2.0 * d)
        hess = np.where(d > 0, 2.0 * over, 2.0)
        return grad, hess

    return objective


def timed(objective, seconds):
    def wrapper(preds, train_data):
        t0 = time.perf_counter()
        out = objective(preds, train_data)
        seconds.append(time.perf_counter() - t0)
        return out

    return wrapper


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--over", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="a small run (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.samples, args.rounds = 20_000, 10

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, 8))
    y = X[:, 0] * 3 + np.sin(X[:, 1] * 2) + rng.gumbel(size=args.samples)
    print(f"{args.samples} samples, {args.rounds} rounds; LightGBM {lgb.__version__}, fusedloss {fl.__version__}")
    print(asymmetric.formula)

    fused = fb.lightgbm_objective(asymmetric, over=args.over)
    fused(np.zeros(16), lgb.Dataset(X[:16], y[:16], params={"verbose": -1}).construct())  # compile (or load) first
    common = {"verbose": -1, "learning_rate": 0.1, "num_leaves": 31, "seed": 0, "num_threads": 0}
    results = {}
    for label, objective in (("fusedloss", fused), ("NumPy", numpy_objective(args.over))):
        seconds = []
        dtrain = lgb.Dataset(X, y, params={"verbose": -1}).construct()  # binning is not part of a round
        t0 = time.perf_counter()
        booster = lgb.train({**common, "objective": timed(objective, seconds)}, dtrain, num_boost_round=args.rounds)
        total = time.perf_counter() - t0
        results[label] = (booster.predict(X[:2000]), np.median(seconds), total / args.rounds)
        print(f"{label:10s} objective per round {1e3 * np.median(seconds):8.3f} ms (median)   "
              f"whole round {1e3 * total / args.rounds:8.2f} ms")
    ratio = results["NumPy"][1] / results["fusedloss"][1]
    diff = np.max(np.abs(results["fusedloss"][0] - results["NumPy"][0]))
    print(f"objective speed-up: {ratio:.1f}x; max |prediction difference| between the two models: {diff:.2e}")


if __name__ == "__main__":
    main()
