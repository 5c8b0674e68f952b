"""A plain PyTorch training loop where the only change is the loss module.

The same MLP (same initial weights, same batches) is trained twice, the two models taking their steps in turn:
once with ``torch.nn.CrossEntropyLoss`` and once with ``fusedloss.torch.CrossEntropyLoss``; the script prints
loss, test accuracy and the median step time for both.

    python examples/torch_mlp.py                    # scikit-learn's digits (bundled, no download), seconds
    python examples/torch_mlp.py --classes 32000    # a synthetic problem with a 32000-way output layer,
                                                    # where the loss is a large part of the step
    python examples/torch_mlp.py --quick            # 2 epochs (also: FUSEDLOSS_EXAMPLE_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import fusedloss.torch as flt


def make_loss(kind: str):
    if kind == "torch":
        return torch.nn.CrossEntropyLoss()
    return flt.CrossEntropyLoss()  # <- the one-line change


def load_data(classes: int, seed: int = 0):
    if classes == 10:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        y = torch.tensor(digits.target, dtype=torch.int64)
    else:  # synthetic: labels from a random linear teacher on random features
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(4096, 64, generator=g)
        teacher = torch.randn(64, classes, generator=g)
        y = torch.argmax(X @ teacher + 0.5 * torch.randn(4096, classes, generator=g), dim=1)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(y))
    return X[perm[:n_train]], y[perm[:n_train]], X[perm[n_train:]], y[perm[n_train:]]


def train(kinds, data, classes: int, epochs: int, batch_size: int, hidden: int, seed: int = 0):
    """Train one model per loss kind on the same batches, taking their steps in turn (so that a change of
    load on a shared machine hits both alike); returns {kind: (median step time, train loss, accuracy)}."""
    Xtr, ytr, Xte, yte = data
    runs = {}
    for kind in kinds:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], hidden), torch.nn.ReLU(),
                                    torch.nn.Linear(hidden, classes))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2 if classes == 10 else 3e-3)
        runs[kind] = {"model": model, "opt": opt, "loss_fn": make_loss(kind), "times": []}
    order = torch.Generator().manual_seed(seed + 1)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(ytr), generator=order)
        totals = dict.fromkeys(kinds, 0.0)
        seen = 0
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = Xtr[idx], ytr[idx]
            for kind, r in runs.items():
                t0 = time.perf_counter()
                r["opt"].zero_grad()
                loss = r["loss_fn"](r["model"](xb), yb)
                loss.backward()
                r["opt"].step()
                r["times"].append(time.perf_counter() - t0)
                totals[kind] += loss.item() * len(idx)
            seen += len(idx)
        for kind, r in runs.items():
            with torch.no_grad():
                r["accuracy"] = (r["model"](Xte).argmax(dim=1) == yte).float().mean().item()
            r["loss"] = totals[kind] / seen
            print(f"  [{kind:9s}] epoch {epoch:3d}  train loss {r['loss']:.4f}  test accuracy {r['accuracy']:.3f}")
    out = {}
    for kind, r in runs.items():
        steady = r["times"][len(r["times"]) // 5:] or r["times"]  # leave out the first steps (warm-up)
        out[kind] = (float(np.median(steady)), r["loss"], r["accuracy"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10, help="10: digits; more: a synthetic problem")
    ap.add_argument("--threads", type=int, default=None, help="torch's and fusedloss's thread count")
    ap.add_argument("--quick", action="store_true", help="2 epochs (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.epochs = 2
    if args.threads:
        import fusedloss

        torch.set_num_threads(args.threads)
        fusedloss.set_num_threads(args.threads)
    data = load_data(args.classes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(data[1])} train / {len(data[3])} "
          f"test samples, {args.classes} classes")
    results = train(("torch", "fusedloss"), data, args.classes, args.epochs, args.batch_size, args.hidden)
    for kind, (step, loss, acc) in results.items():
        print(f"{kind:9s}: final train loss {loss:.4f}, test accuracy {acc:.3f}, median step {step * 1e3:.3f} ms")
    print(f"step time ratio torch / fusedloss: {results['torch'][0] / results['fusedloss'][0]:.2f}x")


if __name__ == "__main__":
    main()
