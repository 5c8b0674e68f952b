"""The thread policy where users meet it: 1- vs 2-thread calls, idle and under a competing load.

    python benchmarks/thread_policy.py                    # every case, idle and loaded, 1 and 2 threads
    python benchmarks/thread_policy.py --quick            # small repeat counts (a smoke run)
    python benchmarks/thread_policy.py --json out.json
    python benchmarks/thread_policy.py --backend numba    # the numba backend's threads (default: cpp)

Conditions (each started and stopped by this script):
- idle: nothing else runs (the script says the load average it saw before starting);
- busy: one busy-looping process per core, at the same priority as this one, for the duration of the case
  (bounded: each exits after --busy-seconds even if this script dies);
- torch: a PyTorch loop whose own ops (a matmul and a ReLU on torch's 2-thread pool) run between our calls,
  as in a training step; only our call is timed.

Cases: mse value_and_grad (float32, 1e4, 1e6, 1e7 elements), cross_entropy value_and_grad (4096 x 1000
float32) and binary_cross_entropy_with_logits grad_hess (float64, 1e5: a boosting objective's call), with the
outputs reused, at fl.set_num_threads(1) and (2), the two thread counts alternating call by call
under one condition (so that both meet the same load). The ratio printed per row is the 2-thread median over the
1-thread median under the same condition (and, in parentheses, the ratio of the means, which counts the rare
slow calls too); the thread policy's goal is that it never exceeds
about 1.3 (a loaded machine must not make threads a loss), while the idle 2-thread speed is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import fusedloss as fl
from fusedloss._load import BusyLoad


def _cases(quick: bool):
    rng = np.random.default_rng(0)
    out = []
    for n in (10_000, 1_000_000, 10_000_000):
        p = rng.standard_normal(n, dtype=np.float32)
        y = rng.standard_normal(n, dtype=np.float32)
        g = np.empty_like(p)
        out.append((f"mse n={n:.0e}", lambda p=p, y=y, g=g: fl.mse.value_and_grad(p, y, grad_out=g),
                    n))
    x = rng.standard_normal((4096, 1000), dtype=np.float32)
    t = rng.integers(0, 1000, 4096)
    gx = np.empty_like(x)
    out.append(("cross_entropy 4096x1000", lambda: fl.cross_entropy.value_and_grad(x, t, grad_out=gx), x.size))
    # a boosting objective's call: float64, 100k rows, gradient and Hessian
    s = rng.standard_normal(100_000)
    y01 = (rng.random(100_000) < 0.5).astype(np.float64)
    gs, hs = np.empty_like(s), np.empty_like(s)
    out.append(("bce_with_logits grad_hess n=1e+05 float64",
                lambda: fl.binary_cross_entropy_with_logits.grad_hess(s, y01, grad_out=gs, hess_out=hs), s.size))
    return out


def _repeats(size: int, quick: bool) -> int:
    budget = 0.3 if quick else 1.5  # seconds per (case, threads, condition), about
    per_call = max(size * 1e-9, 2e-6)
    return int(min(2000, max(7, budget / per_call / 2)))


def _time(fn, reps: int, between=None) -> dict[int, list[float]]:
    """Samples of ``fn`` at 1 and 2 threads, interleaved call by call (so that both meet the same load and
    the same scheduler state), after two warm-up calls at each."""
    samples = {1: [], 2: []}
    for threads in (1, 2):
        fl.set_num_threads(threads)
        fn()
        fn()
    for i in range(reps):
        for threads in ((1, 2) if i % 2 else (2, 1)):
            fl.set_num_threads(threads)
            if between is not None:
                between()
            t0 = time.perf_counter()
            fn()
            samples[threads].append(time.perf_counter() - t0)
    fl.set_num_threads(None)
    return samples


def _torch_between():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)

    def step():
        torch.relu(a @ b)

    return step


def run(quick: bool, busy_seconds: float) -> list[dict]:
    cores = len(os.sched_getaffinity(0))
    conditions = ["idle", "busy"]
    torch_step = _torch_between()
    if torch_step is not None:
        conditions.append("torch")
    rows = []
    for name, fn, size in _cases(quick):
        reps = _repeats(size, quick)
        for cond in conditions:
            if cond == "busy":
                with BusyLoad(cores, busy_seconds):
                    by_threads = _time(fn, reps)
            else:
                by_threads = _time(fn, reps, torch_step if cond == "torch" else None)
            medians, means = {}, {}
            for threads, s in by_threads.items():
                medians[threads] = statistics.median(s)
                means[threads] = statistics.fmean(s)
                q = statistics.quantiles(s, n=5)
                rows.append({"case": name, "condition": cond, "threads": threads, "median_s": medians[threads],
                             "mean_s": means[threads], "p20_s": q[0], "p80_s": q[-1], "repeat": reps})
            print(f"{name:26s} {cond:6s}  1 thread {medians[1] * 1e3:9.3f} ms   2 threads {medians[2] * 1e3:9.3f} ms"
                  f"   2t/1t {medians[2] / medians[1]:5.2f}   (means: {means[2] / means[1]:5.2f})", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    ap.add_argument("--busy-seconds", type=float, default=60.0, help="upper bound on each busy period")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--backend", default="cpp", choices=("cpp", "numba"), help="the backend whose threads to time")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"fusedloss {fl.__version__}, {len(os.sched_getaffinity(0))} cores, load average before: {load:.2f}, "
          f"backend {args.backend}")
    with fl.use_backend(args.backend):
        rows = run(args.quick, args.busy_seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_before": load, "backend": args.backend, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
