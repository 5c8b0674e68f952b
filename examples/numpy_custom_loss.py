"""Robust linear regression with a custom loss, trained by a plain NumPy gradient-descent loop.

The Cauchy loss c^2/2 log(1 + (d/c)^2) is not built in; one formula defines it, and fusedloss derives its
gradient. A tenth of the targets are wild outliers: the squared error is dragged away by them, the Cauchy fit
is not. The loop times the loss + gradient call against the same loss and gradient written in NumPy.

    python examples/numpy_custom_loss.py            # 200,000 samples, 200 steps
    python examples/numpy_custom_loss.py --quick    # smaller (also: FUSEDLOSS_EXAMPLE_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fusedloss as fl
from fusedloss import sym


@fl.elementwise_loss(params={"c": (1.0, "positive")}, name="my_cauchy")  # fl.cauchy is the built-in one
def cauchy(p, y, c):
    return c**2 / 2 * sym.log(1 + ((p - y) / c) ** 2)


def numpy_cauchy(p, y, c):
    """The same mean loss and gradient, written in NumPy."""
    r = (p - y) / c
    loss = np.mean(c * c / 2 * np.log1p(r * r))
    grad = (p - y) / (1 + r * r) / p.size
    return loss, grad


def fit(X, y, loss_and_grad, steps, lr):
    w = np.zeros(X.shape[1], dtype=X.dtype)
    seconds = []
    for _ in range(steps):
        p = X @ w
        t0 = time.perf_counter()
        loss, g = loss_and_grad(p, y)
        seconds.append(time.perf_counter() - t0)
        w -= lr * (X.T @ g)
    return w, loss, float(np.median(seconds))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--quick", action="store_true", help="a small run (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.samples, args.steps = 5_000, 60

    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    true_w = np.array([2.0, -1.0, 0.5, 3.0])
    X = rng.normal(size=(args.samples, 4)).astype(dtype)
    y = X @ true_w + rng.normal(scale=0.3, size=args.samples)
    outliers = rng.random(args.samples) < 0.1
    y[outliers] += rng.normal(scale=50.0, size=outliers.sum())
    y = y.astype(dtype)
    print(cauchy.formula)

    runs = {
        "mse (built-in)": lambda p, t: fl.mse.value_and_grad(p, t),
        "cauchy (custom)": lambda p, t: cauchy.value_and_grad(p, t, c=1.0),
        "cauchy (NumPy)": lambda p, t: numpy_cauchy(p, t, 1.0),
    }
    for fn in runs.values():
        fn(y[:8] * 0, y[:8])  # compile (or load from the cache) before timing
    times = {}
    for label, fn in runs.items():
        lr = 0.5 if "cauchy" in label else 0.25
        w, loss, times[label] = fit(X, y, fn, args.steps, lr)
        err = np.max(np.abs(w - true_w))
        print(f"{label:16s} final loss {loss:10.4f}   max |w - true w| {err:.3f}   "
              f"loss + gradient per step {1e3 * times[label]:7.3f} ms (median)")
    v_custom, g_custom = cauchy.value_and_grad(y * 0, y, c=1.0)
    v_builtin, g_builtin = fl.cauchy.value_and_grad(y * 0, y, c=1.0)
    print(f"custom Cauchy vs the built-in fl.cauchy: value {v_custom:.6g} vs {v_builtin:.6g}, "
          f"max gradient difference {np.max(np.abs(g_custom - g_builtin)):.1e}")
    print(f"custom Cauchy vs NumPy-written Cauchy: {times['cauchy (NumPy)'] / times['cauchy (custom)']:.1f}x faster")


if __name__ == "__main__":
    main()
