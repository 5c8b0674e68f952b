"""Custom losses against the built-in kernels and NumPy, and what defining one costs.

    python benchmarks/custom_losses.py                 # 1e3 and 1e7 float32, 15 rounds, first calls
    python benchmarks/custom_losses.py --quick         # 1e3 and 1e5, 5 rounds

1. ``value_and_grad`` (mean, ``grad_out`` reused) of a custom huber and a custom log_cosh (written with
   ``fusedloss.sym``, as in fusedloss.bench.custom) against the built-in numba kernel of the same loss and
   against NumPy written by hand (the NumPy peers of fusedloss.bench.peers). The contestants run
   round-robin, one call each per round, so that load from other processes hits them alike; the ratios of
   medians are reported.
2. The first call of a new custom loss in a fresh process: cold (a formula never seen: SymPy import,
   derivation, Numba compilation) and warm (the same formula again: generated module and compiled kernel
   from the caches), next to the first call of a built-in loss in a fresh process (Numba's import and cache
   load, which every first call pays).

``fusedloss bench --loss huber,custom_huber,log_cosh,custom_log_cosh`` times the same kernels with the
benchmark's usual machinery, one case after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np


def _round_robin(runs: dict, rounds: int) -> dict:
    times = {k: [] for k in runs}
    for fn in runs.values():  # warm-up (compiles or loads from the cache)
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def kernels(sizes, rounds):
    import fusedloss as fl
    from fusedloss import bench
    from fusedloss._losses import LOSSES
    from fusedloss.bench import custom as bench_custom

    rows = []
    for custom, (_, _, builtin) in bench_custom.DEFINITIONS.items():
        bench_custom.ensure(custom)
        np_fn, modeled = bench.NUMPY_PEER[builtin]
        kw = {"delta": 1.0} if "delta" in modeled else {}
        for n in sizes:
            rng = np.random.default_rng(0)
            p = rng.normal(size=n).astype(np.float32)
            y = rng.normal(size=n).astype(np.float32)
            g1, g2 = np.empty_like(p), np.empty_like(p)
            runs = {
                "builtin numba": lambda: getattr(fl, builtin).value_and_grad(p, y, grad_out=g1, backend="numba", **kw),
                "custom numba": lambda: LOSSES[custom].value_and_grad(p, y, grad_out=g2, backend="numba", **kw),
                "NumPy by hand": lambda: np_fn(p, y, **kw),
            }
            med = _round_robin(runs, rounds)
            np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-12)
            rows.append({"loss": builtin, "n": n, **{k: v for k, v in med.items()},
                         "custom / builtin": med["custom numba"] / med["builtin numba"],
                         "NumPy / custom": med["NumPy by hand"] / med["custom numba"]})
            print(f"{builtin:9s} n={n:.0e}  builtin numba {1e3 * med['builtin numba']:9.3f} ms   "
                  f"custom numba {1e3 * med['custom numba']:9.3f} ms   NumPy by hand {1e3 * med['NumPy by hand']:9.3f} ms"
                  f"   custom/builtin {rows[-1]['custom / builtin']:.2f}x   NumPy/custom {rows[-1]['NumPy / custom']:.1f}x",
                  flush=True)
    return rows


FIRST_CALL = textwrap.dedent("""
    import json, time
    c0 = time.process_time()
    t0 = time.perf_counter()
    import numpy as np
    import fusedloss as fl
    from fusedloss import sym
    from fusedloss.backends import numba_cpu  # noqa: F401 (Numba's import, paid by every first call)
    t1 = time.perf_counter()
    c1 = time.process_time()
    p = np.linspace(-3, 3, 1000, dtype=np.float32)
    y = np.zeros(1000, dtype=np.float32)
    if {builtin}:
        t2 = time.perf_counter()
        fl.huber.value_and_grad(p, y, backend="numba")
    else:
        def bench_huber(p, y, delta):
            d = p - y
            return sym.where(abs(d) <= delta, d**2 / 2 * {k!r}, delta * (abs(d) - delta / 2) * {k!r})
        loss = fl.elementwise_loss(bench_huber, params={{"delta": (1.0, "positive")}}, name="bench_huber")
        t2 = time.perf_counter()
        loss.value_and_grad(p, y, backend="numba")
    t3 = time.perf_counter()
    c3 = time.process_time()
    print(json.dumps({{"import": t1 - t0, "define": t2 - t1, "first_call": t3 - t2, "total": t3 - t1,
                      "cpu_import": c1 - c0, "cpu_total": c3 - c1}}))
""")


def first_calls(cache: str) -> dict:
    env = {**os.environ, "FUSEDLOSS_CACHE_DIR": cache}
    k = 1.0 + int(time.time() * 1000) % 100000 * 1e-12  # a formula no process has compiled before

    def run(builtin):
        code = FIRST_CALL.format(builtin=builtin, k=k)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    results = {"builtin huber (warm cache)": run(True), "new custom loss, cold": run(False),
               "same custom loss, warm": run(False)}
    for label, r in results.items():
        print(f"{label:28s} import {r['import']:6.2f} s   define {r['define']:6.3f} s   "
              f"first call {r['first_call']:6.3f} s   define + first call {r['total']:6.3f} s "
              f"(CPU {r['cpu_total']:6.3f} s)", flush=True)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--only", choices=("kernels", "first-calls"), help="run one of the two parts")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    sizes = (1_000, 100_000) if args.quick else (1_000, 10_000_000)
    rounds = 5 if args.quick else args.rounds
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    rows = kernels(sizes, rounds) if args.only != "first-calls" else []
    firsts = {}
    if args.only != "kernels":
        with tempfile.TemporaryDirectory() as cache:
            firsts = first_calls(cache)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernels": rows, "first_calls": firsts}, f, indent=1)


if __name__ == "__main__":
    main()
