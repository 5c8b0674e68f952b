"""Benchmark of the pairwise losses (kind "pairwise": ``margin_ranking``, ``cosine_embedding``,
``triplet_margin``), for ``fusedloss bench --loss <name>``.

These take two or three arrays and a target instead of ``(pred, target)``, so they have their own cases
instead of the size grid of ``fusedloss.bench.cases``. What is timed, per call ("mean" reduction):

- torch (when installed, unless ``--no-peers``): ``torch.nn.functional.<torch_name>`` + ``backward()`` with
  every input requiring grad, ``torch.set_num_threads(threads)``;
- each fusedloss host backend: ``fl.<name>.value_and_grad(...)`` with ``fl.set_num_threads(threads)``.

The warm-up, the value check and the round-robin timing are ``bench.own_cases``'s. Data: rows of N(0, 1)
embeddings, targets -1 or 1 (an input that must be >= 0: |N(0, 1)| + 0.1).
"""

from __future__ import annotations

import numpy as np

from .._spec import REGISTRY
from .oracle import REFERENCE_BACKEND
from .own_cases import bench_losses, fmt_speedup, named_or_dims, report, thread_counts, timing_columns
from .report import table
from .timing import warm_and_time

LOSSES = tuple(name for name, spec in REGISTRY.items() if spec.kind == "pairwise")
CASES = {"embeddings": (4096, 256), "small": (256, 64)}  # name -> (rows N, vector length D)
QUICK_CASES = ("small",)


def make_case(name, N, D, dtype=np.float32, seed=0):
    """The arrays of one call of ``name``: its inputs ((N, D), or (N * D,) for element rows) and its target."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(seed)
    shape = (N, D) if spec.vector_rows else (N * D,)
    arrays = [(np.abs(rng.normal(size=shape)) + 0.1 if what in spec.nonnegative_inputs else rng.normal(size=shape))
              .astype(dtype) for what in spec.inputs]
    if spec.row_target:
        arrays.append(rng.choice([-1.0, 1.0], size=shape[:-1] if spec.vector_rows else shape))
    return arrays


def bench_case(name, label, dims, threads, repeat, backends, *, torch=True, warmup=1, dtype=np.float32):
    """Rows for one loss and case (module docstring); ``torch`` False leaves PyTorch out."""
    import fusedloss as fl

    spec = REGISTRY[name]
    loss = getattr(fl, name)
    N, D = dims
    arrays = make_case(name, N, D, dtype=dtype)
    ref = loss(*(a.astype(np.float64) for a in arrays), backend=REFERENCE_BACKEND)
    runs = {}
    with thread_counts(threads, torch):
        if torch:
            import torch as _torch

            fn = getattr(_torch.nn.functional, spec.torch_name)
            k = len(spec.inputs)
            ts = [_torch.from_numpy(a).requires_grad_() for a in arrays[:k]] + [_torch.from_numpy(a)
                                                                                 for a in arrays[k:]]

            def run_torch():
                for t in ts[:k]:
                    t.grad = None
                value = fn(*ts)
                value.backward()
                return float(value.detach())

            runs["torch"] = run_torch
        for b in backends:
            runs[b] = (lambda b=b: loss.value_and_grad(*arrays, backend=b)[0])
        values, samples = warm_and_time(runs, repeat, warmup)
    return [{"loss": name, "case": label, "N": N, "D": D, "dtype": np.dtype(dtype).name, "contestant": key,
             "threads": threads, **columns} for key, columns in timing_columns(samples, values, ref).items()]


HEADER = ["loss", "case", "N", "D", "contestant", "thr", "median", "vs torch", "check"]


def _cells(r) -> list:
    return [r["loss"], r["case"], r["N"], r["D"], r["contestant"], r["threads"], f"{r['median_s'] * 1e3:.3f} ms",
            fmt_speedup(r["speedup_vs_torch"]), r["check"]]


def format_rows(rows) -> str:
    return table(HEADER, [_cells(r) for r in rows])


def parse_case(text: str) -> tuple[str, tuple]:
    """A case name or NxD ("1024x128") -> (label, (N, D))."""
    label, dims = named_or_dims(text, CASES)
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"pairwise size: expected {' or '.join(CASES)} or NxD (e.g. 1024x128), got {text!r}")
    return label, dims


def cmd_bench_pairwise(args) -> int:
    """``fusedloss bench --loss <pairwise loss>[,...]``: ``--size`` (case names or NxD), ``--backend``,
    ``--threads``, ``--dtype``, ``--repeat``, ``--warmup``, ``--peer torch`` / ``--no-peers``, ``--quick``,
    ``--json``; a bad option raises ``UsageError``."""
    rows, load, notes = bench_losses(args, "pairwise losses", LOSSES, parse_case, CASES, QUICK_CASES, bench_case)
    report("pairwise", "timed: value and gradients of every input, reduction='mean'; 'vs torch' = torch's forward "
           "+ backward median / this row's median", rows, HEADER, _cells, load, args.json, notes)
    return 0 if all(r["check"] == "ok" for r in rows) else 1
