"""What ``sample_weight`` costs a call: value_and_grad with and without weights, the same data and outputs.

    python benchmarks/weighted_calls.py            # mse and bce with logits, 1e5 and 1e6, float32 and float64
    python benchmarks/weighted_calls.py --quick    # 1e4 elements, few repeats (a smoke run)

A weighted "mean" reads a third input in the kernel, and before it one pass over the weights checks them
(negative, infinite) and sums them (the divisor). Per case: the median time of each call, the two alternating
call by call (so both meet the same load), at 1 and 2 threads, and the ratio weighted over unweighted. The weights
are checked against the loss's own definition first (the weighted mean of the unweighted call's per-element
losses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

import fusedloss as fl
from fusedloss.bench.timing import warm_and_time

LOSSES = ("mse", "binary_cross_entropy_with_logits")


def _case(name: str, n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype) if name != "mse" else rng.standard_normal(n).astype(dtype)
    w = rng.uniform(0.0, 2.0, n).astype(dtype)
    return p, y, w


def _check(loss, p, y, w) -> None:
    per_element = loss(p, y, reduction="none").astype(np.float64)
    want = float(np.sum(w * per_element) / np.sum(w.astype(np.float64)))
    got = float(loss(p, y, sample_weight=w))
    tol = 1e-5 if p.dtype == np.float32 else 1e-12
    if abs(got - want) > tol * max(1.0, abs(want)):
        raise SystemExit(f"{loss.name}: weighted mean {got!r}, expected {want!r}")


def run(sizes, repeat: int) -> list:
    rows = []
    for name in LOSSES:
        loss = getattr(fl, name)
        for n in sizes:
            for dtype in (np.float32, np.float64):
                p, y, w = _case(name, n, dtype)
                _check(loss, p, y, w)
                g = np.empty_like(p)
                for threads in (1, 2):
                    fl.set_num_threads(threads)
                    _, samples = warm_and_time({
                        "plain": lambda: loss.value_and_grad(p, y, grad_out=g),
                        "weighted": lambda: loss.value_and_grad(p, y, sample_weight=w, grad_out=g),
                    }, repeat, warmup=3)
                    plain, weighted = (statistics.median(samples[k]) for k in ("plain", "weighted"))
                    rows.append((name, n, np.dtype(dtype).name, threads, plain, weighted))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes, repeat = ((10_000,), 5) if args.quick else ((100_000, 1_000_000), 101)
    try:
        from fusedloss import _core
        level = f"the cpp backend at {_core.simd()}"
    except ImportError:
        level = "no cpp backend (numba)"
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {level}")
    before = fl._config._num_threads
    try:
        rows = run(sizes, repeat)
    finally:
        fl.set_num_threads(before)
    print(f"{'loss':34s} {'n':>9s} {'dtype':8s} {'threads':>7s} {'plain':>10s} {'weighted':>10s} {'ratio':>6s}")
    for name, n, dtype, threads, plain, weighted in rows:
        print(f"{name:34s} {n:9d} {dtype:8s} {threads:7d} {plain * 1e3:8.3f} ms {weighted * 1e3:8.3f} ms "
              f"{weighted / plain:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
