"""An imbalanced binary problem in LightGBM: the native binary objective vs fusedloss's ``binary_focal``.

    python examples/lightgbm_focal.py            # 20000 samples, 3% positives, 300 rounds: seconds
    python examples/lightgbm_focal.py --quick    # smaller (also: FUSEDLOSS_EXAMPLE_QUICK=1)

The focal objective comes from ``fusedloss.boosting.lightgbm_objective("binary_focal", alpha=..., gamma=...)``
(per-sample gradient and Hessian of the unreduced focal loss, with the Hessian clipped from below: see
``fusedloss.boosting``), and the matching validation metric from ``lightgbm_metric``. A custom objective makes
LightGBM predict raw scores and start from score 0, so both models here start from the same prior log-odds.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

try:
    import lightgbm as lgb
except ImportError:  # pragma: no cover - depends on the environment
    raise SystemExit("this example needs LightGBM: pip install lightgbm")
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score, roc_auc_score

import fusedloss as fl
import fusedloss.boosting as fb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--positives", type=float, default=0.03, help="fraction of positives")
    ap.add_argument("--alpha", type=float, default=0.25)
    ap.add_argument("--gamma", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="a small run (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.samples, args.rounds = 6000, 60

    X, y = make_classification(n_samples=args.samples, n_features=20, n_informative=8,
                               weights=[1 - args.positives], flip_y=0.01, class_sep=1.0, random_state=0)
    y = y.astype(np.float64)
    half = len(y) // 2
    Xtr, ytr, Xva, yva = X[:half], y[:half], X[half:], y[half:]
    prior = math.log(ytr.mean() / (1 - ytr.mean()))
    print(f"{len(ytr)} training / {len(yva)} validation samples, {ytr.mean():.1%} positives; "
          f"LightGBM {lgb.__version__}, fusedloss {fl.__version__}")

    common = {"verbose": -1, "learning_rate": 0.05, "num_leaves": 31, "seed": 0}
    focal = {"alpha": args.alpha, "gamma": args.gamma}
    models = {
        "native binary": {"objective": "binary"},
        f"binary_focal (alpha={args.alpha}, gamma={args.gamma})": {"objective": fb.lightgbm_objective("binary_focal",
                                                                                                       **focal)},
    }
    print(f"{'objective':40s} {'train s':>8s} {'avg precision':>14s} {'ROC AUC':>8s} {'log loss':>9s} "
          f"{'focal loss':>11s}")
    for label, params in models.items():
        custom = not isinstance(params["objective"], str)
        init = np.full(len(ytr), prior) if custom else None  # the native objective boosts from this average
        dtrain = lgb.Dataset(Xtr, ytr, init_score=init)
        t0 = time.perf_counter()
        booster = lgb.train({**common, **params}, dtrain, num_boost_round=args.rounds)
        seconds = time.perf_counter() - t0
        score = booster.predict(Xva) + prior if custom else booster.predict(Xva, raw_score=True)
        ap_ = average_precision_score(yva, score)
        auc = roc_auc_score(yva, score)
        logloss = fl.binary_cross_entropy_with_logits(score, yva)
        focal_loss = fl.binary_focal(score, yva, **focal)
        print(f"{label:40s} {seconds:8.2f} {ap_:14.4f} {auc:8.4f} {logloss:9.4f} {focal_loss:11.5f}")
    constant = np.full(len(yva), prior)
    print(f"(constant model at the prior: log loss {fl.binary_cross_entropy_with_logits(constant, yva):.4f}, "
          f"focal loss {fl.binary_focal(constant, yva, **focal):.5f}, average precision {yva.mean():.4f})")


if __name__ == "__main__":
    main()
