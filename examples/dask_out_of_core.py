"""Logistic regression on a data set larger than a worker's memory, by full-batch gradient steps on a Dask cluster.

The workers of a LocalCluster (a memory limit each) write the data set to disk as .npy chunks; every step then
streams the chunks from disk through

    z = X @ beta + b                                                  # logits, chunked like X's rows
    loss, g = fld.binary_cross_entropy_with_logits.value_and_grad(z, y)
    grad_beta, grad_b = X.T @ g, g.sum()                              # one more pass over each loaded chunk

so each worker holds a few chunks at a time, never the data set. The loss per step is printed, then one step of
the same model written with plain dask.array operations is timed against an fld step, and the peak resident
memory of each worker process is reported.

    python examples/dask_out_of_core.py            # 8M rows x 24 float32 features (~0.8 GB on disk), 5 steps
    python examples/dask_out_of_core.py --quick    # 1M rows x 8 features, 2 steps (also: FUSEDLOSS_EXAMPLE_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import dask
import dask.array as da
import numpy as np
from dask.utils import parse_bytes
from distributed import Client, LocalCluster

import fusedloss.dask as fld


def write_chunk(directory: str, i: int, rows: int, beta: np.ndarray, seed: int) -> int:
    """Draw chunk ``i`` (features and 0/1 labels of a logistic model) and save it; runs on a worker."""
    rng = np.random.default_rng([seed, i])
    X = rng.standard_normal((rows, beta.size), dtype=np.float32)
    p = 1.0 / (1.0 + np.exp(-(X @ beta + 0.5)))
    y = (rng.random(rows) < p).astype(np.float32)
    np.save(os.path.join(directory, f"X-{i:04d}.npy"), X)
    np.save(os.path.join(directory, f"y-{i:04d}.npy"), y)
    return X.nbytes + y.nbytes


def load_chunks(directory: str, prefix: str, sizes: list, tail: tuple) -> da.Array:
    """The .npy chunks as one dask array, each chunk loaded by the worker that needs it."""
    parts = [da.from_delayed(dask.delayed(np.load)(os.path.join(directory, f"{prefix}-{i:04d}.npy")),
                             shape=(rows,) + tail, dtype=np.float32) for i, rows in enumerate(sizes)]
    return da.concatenate(parts, axis=0)


def plain_step(X, y, beta, b):
    """The same loss and gradients written with dask.array operations."""
    z = X @ beta + b
    loss = (da.logaddexp(0, z) - y * z).mean()  # softplus(z) - y z, stable
    g = (1.0 / (1.0 + da.exp(-z)) - y) / z.shape[0]
    return loss, X.T @ g, g.sum()


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--features", type=int, default=24)
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=4.0, help="step size (1 / the loss's curvature bound 1/4)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="450MB", help="per worker")
    ap.add_argument("--dir", default=None, help="where to write the data (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="a small data set and 2 steps (for the test suite)")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("FUSEDLOSS_EXAMPLE_QUICK"):
        args.rows, args.features, args.steps = 1_000_000, 8, 2

    directory = tempfile.mkdtemp(prefix="fusedloss-ooc-", dir=args.dir)
    # single-threaded kernels: the cluster's parallelism is one task per worker thread
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, memory_limit=args.memory_limit,
                           env={"FUSEDLOSS_NUM_THREADS": "1"})
    client = Client(cluster)
    try:
        t0 = time.perf_counter()
        sizes = [min(args.chunk_rows, args.rows - s) for s in range(0, args.rows, args.chunk_rows)]
        beta_true = np.random.default_rng(0).normal(0.0, 1.0 / np.sqrt(args.features), args.features)
        written = sum(client.gather(client.map(write_chunk, [directory] * len(sizes), range(len(sizes)), sizes,
                                               [beta_true.astype(np.float32)] * len(sizes), [1] * len(sizes))))
        limit = parse_bytes(args.memory_limit)
        print(f"data on disk: {args.rows} rows x {args.features} features, {len(sizes)} chunks, "
              f"{written / 1e6:.0f} MB; worker memory limit {args.memory_limit} x {args.workers} workers "
              f"({'larger' if written > limit else 'smaller'} than one worker's limit); "
              f"written in {time.perf_counter() - t0:.1f} s")

        X = load_chunks(directory, "X", sizes, (args.features,))
        y = load_chunks(directory, "y", sizes, ())
        beta = np.zeros(args.features, np.float32)
        b = np.float32(0.0)
        step_times = []
        for step in range(args.steps):
            t = time.perf_counter()
            z = X @ beta + b
            loss, g = fld.binary_cross_entropy_with_logits.value_and_grad(z, y)
            loss, grad_beta, grad_b = dask.compute(loss, X.T @ g, g.sum())
            step_times.append(time.perf_counter() - t)
            print(f"step {step}  loss {loss:.6f}  |grad| {np.linalg.norm(grad_beta):.3e}  {step_times[-1]:.2f} s")
            beta = (beta - args.lr * grad_beta).astype(np.float32)
            b = np.float32(b - args.lr * grad_b)

        t = time.perf_counter()
        plain_loss, plain_gb, _ = dask.compute(*plain_step(X, y, beta, b))
        plain_time = time.perf_counter() - t
        t = time.perf_counter()
        z = X @ beta + b
        loss, g = fld.binary_cross_entropy_with_logits.value_and_grad(z, y)
        loss, grad_beta, _ = dask.compute(loss, X.T @ g, g.sum())
        fld_time = time.perf_counter() - t
        print(f"final loss {loss:.6f} (plain dask.array: {plain_loss:.6f}); |beta - beta_true| "
              f"{np.linalg.norm(beta - beta_true):.3f}")
        print(f"step time: fld {fld_time:.2f} s, plain dask.array {plain_time:.2f} s "
              f"(ratio {plain_time / fld_time:.2f})")
        peaks = client.run(peak_rss_mb)
        print("peak memory per worker: " + ", ".join(f"{mb:.0f} MB" for mb in peaks.values())
              + f" (limit {args.memory_limit}; data {written / 1e6:.0f} MB)")
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
