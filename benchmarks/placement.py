"""Does where an output lies in memory change the speed? ``value_and_grad(pred, target, grad_out=g)`` with ``g``
starting right after ``pred`` ends (two arrays allocated one after the other on the heap, as NumPy often
places them) against ``g`` far from it, on every host backend with a compiled loop.

A compiled loop that cannot prove its output does not overlap its inputs checks at run time, and falls back
to scalar code when the check says they might; a conservative check turns two merely adjacent arrays into a
several-fold slowdown that depends on allocation luck. This script times both placements round-robin in one
process and prints the ratio adjacent / far per loss and backend; with ``--max-ratio R`` it exits with status
1 when a ratio exceeds R (CI runs it so).

    python benchmarks/placement.py                      # the table
    python benchmarks/placement.py --max-ratio 1.5      # and fail above 1.5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fusedloss as fl

LOSSES = ("mse", "huber", "log_cosh", "binary_cross_entropy_with_logits")
GAPS = (0, 4, 16, 32)  # elements between the end of pred and the start of grad_out


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=1e6)
    ap.add_argument("--repeat", type=int, default=15, help="calls per placement and round; the minimum counts")
    ap.add_argument("--rounds", type=int, default=3, help="rounds alternating the placements; the median counts")
    ap.add_argument("--backend", default="numba,cpp")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-ratio", type=float, default=None)
    args = ap.parse_args(argv)
    n = int(args.size)
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    buf = np.empty(2 * n + 4096, np.float32)  # pred then grad_out, in one allocation
    pred = buf[:n]
    pred[:] = rng.standard_normal(n)
    target = rng.standard_normal(n).astype(np.float32)
    far = np.empty(n + 4096, np.float32)[1024: 1024 + n]  # 4 KiB into its own allocation
    worst = 0.0
    print(f"{'loss':34s} {'backend':8s} {'far':>9s} {'adjacent':>9s} {'ratio':>6s}   (size {n}, threads {args.threads})")
    for loss in LOSSES:
        f = getattr(fl, loss).value_and_grad
        y = (target > 0).astype(np.float32) if loss.startswith("binary") else target
        for backend in args.backend.split(","):
            if backend not in {b["name"] for b in fl.backends() if b["available"]}:
                continue
            times = {"far": [], "adjacent": []}
            outs = {"far": [far]} | {"adjacent": [buf[n + gap: 2 * n + gap] for gap in GAPS]}
            for place in outs:
                for g in outs[place]:
                    f(pred, y, grad_out=g, backend=backend)  # compile, first touch
            for _ in range(args.rounds):
                for place, gs in outs.items():
                    times[place].append(max(_time(lambda g=g: f(pred, y, grad_out=g, backend=backend),
                                                  args.repeat) for g in gs))
            t_far = float(np.median(times["far"]))
            t_adj = float(np.median(times["adjacent"]))
            ratio = t_adj / t_far
            worst = max(worst, ratio)
            print(f"{loss:34s} {backend:8s} {t_far * 1e3:7.2f}ms {t_adj * 1e3:7.2f}ms {ratio:6.2f}")
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"FAIL: an adjacent output is {worst:.2f}x slower than a distant one (limit {args.max_ratio})")
        return 1
    print(f"worst ratio {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
