"""Softmax regression on scikit-learn's digits, trained by a pure NumPy loop with fusedloss's cross-entropy.

Each step computes the logits into one preallocated buffer and calls

    loss, grad = fl.cross_entropy.value_and_grad(logits, labels, grad_out=logits)

so the gradient overwrites the logits in place: no array is allocated for the loss in the loop. For comparison
the same step's loss and gradient are also computed by a NumPy-written cross-entropy (not used for training) and
both are timed.

    python examples/numpy_softmax_regression.py            # 30 epochs, a few seconds
    python examples/numpy_softmax_regression.py --quick    # 2 epochs (also: FUSEDLOSS_EXAMPLE_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.datasets import load_digits

import fusedloss as fl


def numpy_cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient, as one writes it in NumPy."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1.0
    grad /= n
    return loss, grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--backend", default=None, help="fusedloss backend (default: auto)")
    ap.add_argument("--quick", action="store_true", help="2 epochs (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.epochs = 2

    digits = load_digits()  # 1797 images of 8x8 pixels, bundled with scikit-learn (no download)
    dtype = np.dtype(args.dtype)
    X = (digits.data / 16.0).astype(dtype)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:1400], order[1400:]
    Xtr, ytr, Xte, yte = X[train], y[train], X[test], y[test]
    n_features, n_classes = X.shape[1], 10

    W = np.zeros((n_features, n_classes), dtype)
    b = np.zeros(n_classes, dtype)
    logits_buf = np.empty((args.batch_size, n_classes), dtype)  # reused by every step: logits, then gradient

    backend = args.backend
    # warm-up outside the timed loop: a JIT backend compiles on its first call
    fl.cross_entropy.value_and_grad(logits_buf.copy(), np.zeros(args.batch_size, np.int64), backend=backend)
    print(f"fusedloss {fl.__version__}, backend {backend or fl.get_backend()}, dtype {dtype}, "
          f"{len(ytr)} train / {len(yte)} test digits")
    t_fused = t_numpy = 0.0
    calls = 0
    for epoch in range(1, args.epochs + 1):
        perm = rng.permutation(len(ytr))
        total, seen = 0.0, 0
        for start in range(0, len(perm), args.batch_size):
            idx = perm[start:start + args.batch_size]
            xb, yb = Xtr[idx], ytr[idx]
            logits = logits_buf[: len(idx)]
            np.matmul(xb, W, out=logits)
            logits += b

            t0 = time.perf_counter()
            ref_loss, _ = numpy_cross_entropy(logits, yb)  # the comparison, not used for training
            t1 = time.perf_counter()
            loss, grad = fl.cross_entropy.value_and_grad(logits, yb, grad_out=logits, backend=backend)
            t2 = time.perf_counter()
            t_numpy += t1 - t0
            t_fused += t2 - t1
            calls += 1
            assert abs(loss - ref_loss) <= 1e-4 * max(1.0, abs(ref_loss)), (loss, ref_loss)

            W -= args.lr * (xb.T @ grad)  # grad is the logits buffer, now holding d loss / d logits
            b -= args.lr * grad.sum(axis=0)
            total += loss * len(idx)
            seen += len(idx)
        accuracy = np.mean(np.argmax(Xte @ W + b, axis=1) == yte)
        print(f"epoch {epoch:3d}  train loss {total / seen:.4f}  test accuracy {accuracy:.3f}")

    print(f"time in the loss over {calls} steps: fusedloss {t_fused * 1e3:.2f} ms "
          f"({t_fused / calls * 1e6:.1f} us/step), NumPy-written {t_numpy * 1e3:.2f} ms "
          f"({t_numpy / calls * 1e6:.1f} us/step), ratio {t_numpy / t_fused:.2f}x")


if __name__ == "__main__":
    main()
