"""The cost of metrics from the loss pass, against the plain call and against NumPy afterwards.

    python benchmarks/logit_metrics.py                            # 8192 x 32000 float32, cpp, 2 threads, 7 rounds
    python benchmarks/logit_metrics.py --size 1024x32000 --backend numba --metrics accuracy,top5,ece15,entropy
    python benchmarks/logit_metrics.py --json out.json
    python benchmarks/logit_metrics.py --binary                   # binary_cross_entropy_with_logits, 1e7 float32,
                                                                  # accuracy,brier,roc256 (--size N)
    python benchmarks/logit_metrics.py --torch                    # through fusedloss.torch, forward + backward

Each round times, one after the other (so that load changes hit all alike):
  plain    fl.cross_entropy.value_and_grad(x, y, grad_out=g)
  fused    the same with metrics=(...)
  numpy    the plain call, then the same metrics computed afterwards with NumPy as a training loop would (the
           label's rank by one comparison with the label's logit, the max probability from one exp pass, ECE
           from np.bincount), checked against the fused metrics before anything is timed.
With --binary the loss is binary_cross_entropy_with_logits on N logits and targets in {0, 1}, and NumPy computes
accuracy, Brier score and the binned ROC AUC / average precision afterwards (one sigmoid pass, np.bincount).
With --torch the same three go through fusedloss.torch on CPU tensors, forward + backward, torch using
--threads threads: ``flt.cross_entropy(x, y)`` (or ``binary_cross_entropy_with_logits``) and ``backward()``,
the same with ``metrics=``, and the plain call followed by the metrics in NumPy on the tensors' memory.
Reported: the median of each, and the extra time over the plain call in percent. The load average is printed
with the result: on a shared machine, run it when it is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import fusedloss as fl


def numpy_metrics(x, y, names):
    """accuracy / topK / eceN / nll / confidence of logits x (R, C) and labels y, in NumPy after the loss."""
    rows = np.arange(x.shape[0])
    x_t = x[rows, y]
    out, rank, conf = {}, None, None
    ks = [1 if n == "accuracy" else int(n[3:]) for n in names if n == "accuracy" or n.startswith("top")]
    if ks or any(n.startswith("ece") for n in names):
        # ties broken as argmax does: a logit equal to the label's before it ranks ahead of it
        rank = np.count_nonzero(x > x_t[:, None], axis=1)
        tied = np.count_nonzero(x == x_t[:, None], axis=1) > 1
        for r in np.flatnonzero(tied):
            rank[r] += np.count_nonzero(x[r, :y[r]] == x_t[r])
    m = x.max(axis=1)
    if any(n.startswith("ece") or n in ("confidence", "nll", "entropy") for n in names):
        d = x - m[:, None]
        e = np.exp(d)
        s = e.sum(axis=1, dtype=np.float64)
        conf = 1.0 / s
        if "entropy" in names:  # H = log s - sum_j e_j (z_j - m) / s
            ent = np.log(s) - np.einsum("ij,ij->i", e, d, dtype=np.float64) / s
        del d, e
    for n in names:
        if n == "accuracy" or n.startswith("top"):
            out[n] = float(np.mean(rank < (1 if n == "accuracy" else int(n[3:]))))
        elif n.startswith("ece"):
            bins = int(n[3:])
            idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
            correct = (rank == 0).astype(np.float64)
            acc_b = np.bincount(idx, weights=correct, minlength=bins)
            conf_b = np.bincount(idx, weights=conf, minlength=bins)
            out[n] = float(np.sum(np.abs(acc_b - conf_b)) / x.shape[0])
        elif n == "confidence":
            out[n] = float(np.mean(conf))
        elif n == "entropy":
            out[n] = float(np.mean(ent))
        elif n == "nll":
            out[n] = float(np.mean(np.log(s) + (m - x_t)))
        else:
            raise SystemExit(f"numpy_metrics: {n!r} is not timed here")
    return out


def numpy_binary_metrics(x, y, names):
    """accuracy / brier / rocN / apN / eceN of logits x and targets y in {0, 1}, in NumPy after the loss."""
    from fusedloss._binary_metrics import binned_average_precision, binned_roc_auc

    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    out = {}
    for n in names:
        if n == "accuracy":
            out[n] = float(np.mean((x > 0) == (y > 0.5)))
        elif n == "brier":
            out[n] = float(np.mean((p - y) ** 2))
        elif n.startswith(("roc", "ap")):
            bins = int(n[3:] if n.startswith("roc") else n[2:])
            idx = np.minimum((p * bins).astype(np.int64), bins - 1)
            pos = np.bincount(idx, weights=y, minlength=bins)
            neg = np.bincount(idx, minlength=bins) - pos
            out[n] = (binned_roc_auc if n.startswith("roc") else binned_average_precision)(pos, neg)
        elif n.startswith("ece"):
            bins = int(n[3:])
            idx = np.minimum((p * bins).astype(np.int64), bins - 1)
            gap = np.bincount(idx, weights=p, minlength=bins) - np.bincount(idx, weights=y, minlength=bins)
            out[n] = float(np.sum(np.abs(gap)) / p.size)
        else:
            raise SystemExit(f"numpy_binary_metrics: {n!r} is not timed here")
    return out


def _torch_calls(name: str, x, y, names, reference, args):
    """(plain, fused, after) through fusedloss.torch: each a forward + backward on a leaf tensor over ``x``'s
    memory, returning (loss value, grad) or, with metrics, (loss value, grad, metrics)."""
    import torch

    import fusedloss.torch as flt

    torch.set_num_threads(args.threads)
    form = getattr(flt, name)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step(**kw):
        leaf = xt.detach().requires_grad_(True)
        out = form(leaf, yt, backend=args.backend, **kw)
        value, m = out if kw else (out, None)
        value.backward()
        return (float(value.detach()), leaf.grad) + ((m,) if kw else ())

    def after():
        v = step()
        return v, reference(x, y, names)

    return step, (lambda: step(metrics=names)), after


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", action="store_true", help="binary_cross_entropy_with_logits instead")
    ap.add_argument("--size", help="ROWSxCLASSES (default 8192x32000), or N with --binary (default 10000000)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--backend", default="cpp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--metrics", help="default accuracy,top5,ece15 (--binary: accuracy,brier,roc256)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--torch", action="store_true", help="through fusedloss.torch, forward + backward")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    args.size = args.size or ("10000000" if args.binary else "8192x32000")
    names = tuple((args.metrics or ("accuracy,brier,roc256" if args.binary else "accuracy,top5,ece15")).split(","))
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.binary:
        loss, reference = fl.binary_cross_entropy_with_logits, numpy_binary_metrics
        x = (rng.standard_normal(int(float(args.size)), dtype=np.float32) * 2.0).astype(args.dtype)
        y = (rng.uniform(size=x.size) < 1.0 / (1.0 + np.exp(-x))).astype(args.dtype)
    else:
        loss, reference = fl.cross_entropy, numpy_metrics
        R, C = (int(v) for v in args.size.lower().split("x"))
        x = (rng.standard_normal((R, C), dtype=np.float32) * 2.0).astype(args.dtype)
        y = rng.integers(0, C, R)
    if args.torch:
        plain, fused, after = _torch_calls(loss.name, x, y, names, reference, args)
    else:
        g = np.empty_like(x)

        def plain():
            return loss.value_and_grad(x, y, grad_out=g, backend=args.backend)

        def fused():
            return loss.value_and_grad(x, y, grad_out=g, backend=args.backend, metrics=names)

        def after():
            v = loss.value_and_grad(x, y, grad_out=g, backend=args.backend)
            return v, reference(x, y, names)

    # warm-up, and the check: the fused metrics are NumPy's
    v0, _ = plain()
    v1, _, m = fused()
    _, ref = after()
    assert v0 == v1, (v0, v1)
    for n in names:
        assert abs(m[n] - ref[n]) <= 1e-6 * max(1.0, abs(ref[n])), (n, m[n], ref[n])
    times = {"plain": [], "fused": [], "numpy": []}
    for _ in range(args.repeat):
        for key, fn in (("plain", plain), ("fused", fused), ("numpy", after)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()
    result = {
        "size": args.size, "dtype": args.dtype, "backend": args.backend, "threads": args.threads, "metrics": names,
        "through": "fusedloss.torch" if args.torch else "fusedloss",
        "repeat": args.repeat, "median_s": med, "all_s": times, "load": load,
        "fused_extra_pct": 100.0 * (med["fused"] / med["plain"] - 1.0),
        "numpy_extra_pct": 100.0 * (med["numpy"] / med["plain"] - 1.0),
    }
    call = f"fusedloss.torch {loss.name} forward + backward" if args.torch else f"{loss.name}.value_and_grad"
    print(f"{call} {args.size} {args.dtype}, backend {args.backend}, {args.threads} threads, "
          f"metrics {','.join(names)}; medians of {args.repeat}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  plain          {med['plain'] * 1e3:9.1f} ms")
    print(f"  fused metrics  {med['fused'] * 1e3:9.1f} ms   {result['fused_extra_pct']:+6.1f} %")
    print(f"  NumPy after    {med['numpy'] * 1e3:9.1f} ms   {result['numpy_extra_pct']:+6.1f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
