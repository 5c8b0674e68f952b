"""Benchmark of the overlap losses (kind "overlap": ``dice``, ``tversky``), for ``fusedloss bench --loss dice``
(``python -m fusedloss.bench.overlap`` is the same run).

They take scores with a class axis ``(N, C, *spatial)`` and class indices, so they have their own cases instead
of the size grid of ``fusedloss.bench.cases``. What is timed, per call ("mean" reduction, mode "multiclass",
logits):

- torch (when installed, unless ``--no-peers``): segmentation_models_pytorch's computation in plain torch
  (softmax, one-hot, the sums, ``backward()``) with ``torch.set_num_threads(threads)``;
- each fusedloss host backend: ``fl.<name>.value_and_grad(x, t, grad_out=buf)`` with ``fl.set_num_threads(threads)``.

The warm-up, the value check and the round-robin timing are ``bench.own_cases``'s.
"""

from __future__ import annotations

import sys

import numpy as np

from .._spec import REGISTRY
from .oracle import REFERENCE_BACKEND
from .own_cases import (bench_losses, check_status, fmt_speedup, named_or_dims, report, thread_counts,
                        timing_columns)
from .plan import UsageError
from .timing import warm_and_time

LOSSES = tuple(name for name, spec in REGISTRY.items() if spec.kind == "overlap")
CASES = {"voc": (16, 21, 128, 128), "small": (4, 5, 32, 32)}  # name -> input shape (N, C, H, W)
QUICK_CASES = ("small",)


def make_case(shape, dtype=np.float32, seed=0):
    """(logits of ``shape``, int64 class indices of ``shape`` without the class axis)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    return x, t


def _torch_call(name, x, t, params):
    """segmentation_models_pytorch's computation in plain torch: a closure running forward and backward."""
    import torch

    C = x.shape[1]
    alpha, beta = (params.get("alpha", 0.5), params.get("beta", 0.5)) if name == "tversky" else (0.5, 0.5)

    def run():
        xt = x.detach().requires_grad_(True)
        N = xt.shape[0]
        p = xt.log_softmax(dim=1).exp().reshape(N, C, -1)
        y = torch.nn.functional.one_hot(t.reshape(N, -1), C).permute(0, 2, 1).to(p.dtype)
        P, Y = p.sum((0, 2)), y.sum((0, 2))
        inter = (P + Y - torch.linalg.vector_norm(p - y, ord=1, dim=(0, 2))) / 2
        score = inter / (inter + alpha * (P - inter) + beta * (Y - inter)).clamp_min(1e-7)
        loss = ((1.0 - score) * (Y > 0).to(p.dtype)).mean()
        loss.backward()
        return float(loss.detach())

    return run


def bench_case(name, label, shape, threads, repeat, backends, *, torch=True, warmup=1, dtype=np.float32,
               params=None):
    """Rows for one loss and case (module docstring); ``torch`` False leaves PyTorch out."""
    import fusedloss as fl

    params = params or {}
    loss = getattr(fl, name)
    x, t = make_case(shape, dtype)
    ref = loss(x.astype(np.float64), t, backend=REFERENCE_BACKEND, **params)
    buf = np.empty_like(x)
    runs = {}
    with thread_counts(threads, torch):
        if torch:
            import torch as _torch

            runs["torch"] = _torch_call(name, _torch.from_numpy(x), _torch.from_numpy(t), params)
        for b in backends:
            runs[b] = (lambda b=b: loss.value_and_grad(x, t, grad_out=buf, backend=b, **params)[0])
        values, samples = warm_and_time(runs, repeat, warmup)
    return [{"loss": name, "case": label, "shape": "x".join(map(str, shape)), "dtype": np.dtype(dtype).name,
             "contestant": key, "threads": threads, **columns}
            for key, columns in timing_columns(samples, values, ref).items()]


HEADER = ["loss", "case", "shape", "dtype", "contestant", "thr", "median", "p20", "p80", "vs torch", "check"]


def _cells(r) -> list:
    return [r["loss"], r["case"], r["shape"], r["dtype"], r["contestant"], r["threads"],
            *(f"{r[k] * 1e3:.3f} ms" for k in ("median_s", "p20_s", "p80_s")), fmt_speedup(r["speedup_vs_torch"]),
            r["check"]]


def parse_case(text: str) -> tuple[str, tuple]:
    """A case name or NxCxHx... ("4x5x32x32": samples, classes, spatial axes) -> (label, shape)."""
    label, dims = named_or_dims(text, CASES)
    if len(dims) < 3 or min(dims) < 1:
        raise ValueError(f"overlap size: expected {' or '.join(CASES)} or NxCxHx... with at least one spatial axis "
                         f"(e.g. 4x5x32x32), got {text!r}")
    return label, dims


def cmd_bench_overlap(args) -> int:
    """``fusedloss bench --loss dice[,tversky]``: ``--size`` (case names or NxCxHx...), ``--backend``,
    ``--threads``, ``--dtype``, ``--repeat``, ``--warmup``, ``--peer torch`` / ``--no-peers``, ``--quick``,
    ``--json``; a bad option raises ``UsageError``."""
    rows, load, notes = bench_losses(args, "overlap losses", LOSSES, parse_case, CASES, QUICK_CASES, bench_case)
    report("overlap", "timed: value and gradient, reduction='mean', mode='multiclass' on logits: fusedloss "
           "value_and_grad (grad_out reused) and, as the peer, segmentation_models_pytorch's computation in torch, "
           "forward + backward; 'vs torch' = torch's median / this row's median", rows, HEADER, _cells, load,
           args.json, notes)
    return check_status(rows, lambda r: f"{r['loss']} {r['case']} {r['dtype']} {r['contestant']}")


def main(argv=None) -> int:
    """``python -m fusedloss.bench.overlap``: the run of ``fusedloss bench --loss dice`` (``--loss`` for another),
    with its options for these cases; ``--case`` is ``--size`` and ``--no-torch`` is ``--no-peers``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m fusedloss.bench.overlap",
                                description="the run of `fusedloss bench --loss dice`: " + __doc__.split("\n")[0])
    p.add_argument("--loss", action="append", help=f"{' and/or '.join(LOSSES)} (default {LOSSES[0]})")
    p.add_argument("--size", "--case", dest="size", action="append", help=f"{', '.join(CASES)} or NxCxHx...")
    p.add_argument("--threads", action="append")
    p.add_argument("--repeat", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--backend", action="append")
    p.add_argument("--dtype", action="append")
    p.add_argument("--peer", action="append")
    p.add_argument("--no-peers", "--no-torch", dest="no_peers", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    args.loss = args.loss or [LOSSES[0]]
    try:
        return cmd_bench_overlap(args)
    except UsageError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
