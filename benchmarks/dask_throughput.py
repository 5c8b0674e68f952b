"""Throughput of fusedloss.dask on a 2-worker LocalCluster, against the in-memory call and plain dask.array code.

    python benchmarks/dask_throughput.py                   # 1e8 float32 elements in chunks of 1e7
    python benchmarks/dask_throughput.py --size 2e7 --chunk 2e6 --repeat 5

Contestants, per case (each checked against the in-memory value before it is timed):

- ``fld``: ``fld.mse.value_and_grad(P, T)`` (value computed, gradient persisted on the workers) and
  ``fld.cross_entropy(X, L)`` on arrays persisted on the cluster;
- ``dask.array``: the same computation written with dask.array operations, persisted the same way;
- ``in-memory``: ``fl.mse.value_and_grad(p, t, grad_out=g)`` / ``fl.cross_entropy(x, l)`` on NumPy arrays in
  this process, with its default threads (every core).

The workers run one task each at a time with single-threaded kernels (FUSEDLOSS_NUM_THREADS=1), so both sides
use the machine's cores. Reported: median seconds over --repeat runs, GB/s (inputs read once, outputs written
once), and ratios. The machine's load is printed with the results: on a shared machine it moves every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

import fusedloss as fl
import fusedloss.dask as fld


def timed(fn, repeat: int, client=None) -> float:
    """Median seconds of ``fn()``. With a client, the results are cancelled outside the timed region and the
    scheduler given time to forget them, so that a repetition cannot find the previous one's results."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if client is not None:
            if isinstance(out, list):
                client.cancel(out)
            del out
            time.sleep(1.0)
    return statistics.median(times)


def on_cluster(client, *arrays):
    """Compute the arrays on the cluster and leave the results there (no transfer to this process)."""
    futures = client.persist(list(arrays))
    wait(futures)
    return futures


def plain_mse(P, T):
    d = P - T
    return (d * d).mean(dtype=np.float64), (2.0 / P.size) * d


def plain_cross_entropy(X, L):
    m = X.max(axis=1, keepdims=True)
    lse = da.log(da.exp(X - m).sum(axis=1)) + m[:, 0]
    picked = da.where(L[:, None] == da.arange(X.shape[1], chunks=X.chunks[1])[None, :], X, 0).sum(axis=1)
    return (lse - picked).mean(dtype=np.float64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=1e8, help="elements per array")
    ap.add_argument("--chunk", type=float, default=1e7, help="elements per chunk")
    ap.add_argument("--classes", type=int, default=100, help="cross_entropy classes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1e6 elements in chunks of 1e5, one repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.chunk, args.repeat = 1e6, 1e5, 1
    n, chunk, C = int(args.size), int(args.chunk), args.classes
    item = 4  # float32

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, env={"FUSEDLOSS_NUM_THREADS": "1"})
    client = Client(cluster)
    rows = []
    try:
        rng = da.random.default_rng(0)
        P, T = on_cluster(client, rng.standard_normal(n, chunks=chunk, dtype=np.float32),
                          rng.standard_normal(n, chunks=chunk, dtype=np.float32))
        X, L = on_cluster(client, rng.standard_normal((n // C, C), chunks=(chunk // C, C), dtype=np.float32),
                          rng.integers(0, C, n // C, chunks=chunk // C))
        p, t, x, labels = dask.compute(P, T, X, L)
        g = np.empty_like(p)

        # mse value_and_grad
        v0 = fl.mse.value_and_grad(p, t, grad_out=g)[0]
        cases = {
            "fld": lambda: on_cluster(client, *fld.mse.value_and_grad(P, T)),
            "dask.array": lambda: on_cluster(client, *plain_mse(P, T)),
        }
        for name, run in cases.items():
            out = run()
            value = out[0].compute()
            client.cancel(out)
            assert abs(value - v0) <= 1e-5 * abs(v0), (name, value, v0)
        mse_bytes = 3 * n * item
        rows.append(("mse.value_and_grad", "in-memory", timed(lambda: fl.mse.value_and_grad(p, t, grad_out=g),
                                                               args.repeat), mse_bytes))
        for name, run in cases.items():
            rows.append(("mse.value_and_grad", name, timed(run, args.repeat, client), mse_bytes))

        # cross_entropy value
        c0 = fl.cross_entropy(x, labels)
        cases = {
            "fld": lambda: fld.cross_entropy(X, L).compute(),
            "dask.array": lambda: plain_cross_entropy(X, L).compute(),
        }
        for name, run in cases.items():
            value = run()
            assert abs(value - c0) <= 1e-5 * abs(c0), (name, value, c0)
        ce_bytes = n * item + (n // C) * 8
        rows.append(("cross_entropy", "in-memory", timed(lambda: fl.cross_entropy(x, labels), args.repeat), ce_bytes))
        for name, run in cases.items():
            rows.append(("cross_entropy", name, timed(run, args.repeat, client), ce_bytes))
    finally:
        client.close()
        cluster.close()

    print(f"n={n:.0e} float32 elements, chunks of {chunk:.0e}, {C} classes for cross_entropy, 2 workers x 1 "
          f"thread, median of {args.repeat}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"backend on this process: {fl.LOSSES['mse']._backend(None, np.dtype(np.float32)).__name__}")
    print(f"{'case':<20} {'contestant':<12} {'median s':>9} {'GB/s':>7} {'time/in-memory':>15} {'time/fld':>9}")
    for case in dict.fromkeys(r[0] for r in rows):
        mine = {r[1]: r[2] for r in rows if r[0] == case}
        for case_, name, seconds, nbytes in (r for r in rows if r[0] == case):
            print(f"{case_:<20} {name:<12} {seconds:>9.3f} {nbytes / seconds / 1e9:>7.2f} "
                  f"{seconds / mine['in-memory']:>14.2f}x {seconds / mine['fld']:>8.2f}x")


if __name__ == "__main__":
    main()
