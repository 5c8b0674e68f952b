"""grad_hess with the outputs it allocates, against the same call writing into arrays it is given again.

    python benchmarks/fresh_outputs.py             # mse, binary_cross_entropy_with_logits, cross_entropy
    python benchmarks/fresh_outputs.py --quick     # small repeat counts (a smoke run)
    python benchmarks/fresh_outputs.py --json out.json

A call that allocates its outputs pays for new memory only if the allocator hands it back to the OS between
calls, and then page-faults it in again on the next one (at 100k float64 that was 12x the time of the
kernel). fusedloss returns the gradient and the Hessian as views of one allocation, which glibc keeps from
call to call. The ratio printed per case is the median time with fresh outputs over the median with reused
ones (1.0: allocation costs nothing), the two alternating call by call. One thread, float64 elementwise and
float32 cross-entropy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

import fusedloss as fl
from fusedloss.bench.timing import warm_and_time


def _cases(quick: bool):
    rng = np.random.default_rng(0)
    out = []
    for n in ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)):
        p = rng.standard_normal(n)
        for name, y in (("mse", rng.standard_normal(n)), ("binary_cross_entropy_with_logits",
                                                          (rng.random(n) < 0.5).astype(np.float64))):
            out.append((f"{name} n={n:.0e}", getattr(fl, name), p, y))
    for rows, classes in ((1000, 100),) if quick else ((1000, 100), (4096, 1000)):
        x = rng.standard_normal((rows, classes), dtype=np.float32)
        out.append((f"cross_entropy {rows}x{classes}", fl.cross_entropy, x, rng.integers(0, classes, rows)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=None, help="samples per contestant (default: by size)")
    ap.add_argument("--json", default=None, help="write the medians and ratios here")
    args = ap.parse_args(argv)
    before = fl.get_num_threads()
    fl.set_num_threads(1)
    rows = []
    try:
        print(f"{'case':<46} {'fresh':>10} {'reused':>10} {'ratio':>6}")
        for label, loss, p, y in _cases(args.quick):
            g, h = np.empty_like(p), np.empty_like(p)
            runs = {"fresh": lambda: loss.grad_hess(p, y, reduction="none"),
                    "reused": lambda: loss.grad_hess(p, y, reduction="none", grad_out=g, hess_out=h)}
            reps = args.repeat or int(min(300, max(7, (0.05 if args.quick else 0.5) / max(p.size * 2e-9, 1e-6))))
            values, samples = warm_and_time(runs, reps, warmup=3)
            for a, b in zip(values["fresh"], values["reused"]):
                np.testing.assert_array_equal(a, b)
            med = {k: statistics.median(v) for k, v in samples.items()}
            ratio = med["fresh"] / med["reused"]
            print(f"{label:<46} {med['fresh'] * 1e3:>8.3f}ms {med['reused'] * 1e3:>8.3f}ms {ratio:>6.2f}")
            rows.append({"case": label, "median_s": med, "ratio": ratio})
    finally:
        fl.set_num_threads(before)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cases": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
