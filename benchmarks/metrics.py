"""fusedloss.metrics against sklearn.metrics: the same call, the same data, timed in one run.

    python benchmarks/metrics.py                     # n = 1e3, 1e5, 1e6; medians of 15 interleaved calls
    python benchmarks/metrics.py --sizes 1e3 --repeat 5 --json out.json

Each row times one metric at one size, unweighted and with sample weights, float64; the calls of both libraries
alternate (so load changes hit both alike) and each result is checked to agree within 1e-12 relative before
anything is timed. The ratio is scikit-learn's median over fusedloss's (above 1: fusedloss is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

import fusedloss
import fusedloss.metrics as fm
from fusedloss.bench.timing import warm_and_time


def _cases(n: int, rng):
    y, p = rng.normal(size=n), rng.normal(size=n)
    counts, mu = rng.poisson(2.0, n).astype(np.float64), rng.uniform(0.3, 4.0, n)
    binary, proba = rng.integers(0, 2, n), rng.uniform(0.01, 0.99, n)
    classes, proba10 = rng.integers(0, 10, n), rng.dirichlet(np.ones(10), n)
    return [
        ("mean_squared_error", (y, p), {}),
        ("root_mean_squared_error", (y, p), {}),
        ("mean_absolute_error", (y, p), {}),
        ("mean_absolute_percentage_error", (y, p), {}),
        ("mean_squared_log_error", (counts, mu), {}),
        ("mean_pinball_loss", (y, p), {"alpha": 0.9}),
        ("mean_poisson_deviance", (counts, mu), {}),
        ("mean_tweedie_deviance", (counts, mu), {"power": 1.5}),
        ("d2_absolute_error_score", (y, p), {}),
        ("d2_tweedie_score", (counts, mu), {"power": 1.5}),
        ("log_loss", (binary, proba), {}),
        ("log_loss", (classes, proba10), {}),
        ("d2_log_loss_score", (classes, proba10), {}),
        ("hinge_loss", (binary, p), {}),
        ("zero_one_loss", (classes, rng.integers(0, 10, n)), {}),
    ]


def _interleaved(fns: dict, reps: int) -> dict:
    samples = warm_and_time(fns, reps, warmup=1)[1]
    return {k: statistics.median(v) for k, v in samples.items()}


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e3,1e5,1e6", help="comma-separated sample counts")
    ap.add_argument("--repeat", type=int, default=15, help="timed calls per function (>= 1)")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes must be numbers separated by commas, got {args.sizes!r}")
    import sklearn
    import sklearn.metrics as skm

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"fusedloss {fusedloss.__version__} (backend {fusedloss.get_backend()}, "
          f"{fusedloss.get_num_threads()} threads), scikit-learn {sklearn.__version__}, "
          f"load average {load:.2f}, medians of {args.repeat}")
    print(f"{'metric':30s} {'params':14s} {'n':>8s} {'weights':>7s} {'scikit-learn':>13s} {'fusedloss':>11s} "
          f"{'ratio':>7s}")
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        for name, a, kw in _cases(n, rng):
            for weighted in (False, True):
                kwargs = dict(kw, sample_weight=rng.uniform(0.0, 2.0, n)) if weighted else dict(kw)
                ours = getattr(fm, name)(*a, **kwargs)
                theirs = getattr(skm, name)(*a, **kwargs)
                if not abs(ours - theirs) <= 1e-12 * abs(theirs):
                    print(f"MISMATCH {name} n={n}: fusedloss {ours!r} scikit-learn {theirs!r}", file=sys.stderr)
                    return 1
                t = _interleaved({"sklearn": lambda: getattr(skm, name)(*a, **kwargs),
                                  "fusedloss": lambda: getattr(fm, name)(*a, **kwargs)}, args.repeat)
                params = ",".join(f"{k}={v}" for k, v in kw.items()) or "-"
                if name == "log_loss" or name == "d2_log_loss_score":
                    params = f"C={1 if a[1].ndim == 1 else a[1].shape[1]}"
                ratio = t["sklearn"] / t["fusedloss"]
                print(f"{name:30s} {params:14s} {n:>8d} {'yes' if weighted else 'no':>7s} "
                      f"{_fmt(t['sklearn']):>13s} {_fmt(t['fusedloss']):>11s} {ratio:>6.1f}x")
                rows.append({"metric": name, "params": params, "n": n, "weighted": weighted,
                             "sklearn_s": t["sklearn"], "fusedloss_s": t["fusedloss"], "ratio": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": load, "repeat": args.repeat, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
