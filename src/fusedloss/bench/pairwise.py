"""Benchmark of the pairwise losses (kind "pairwise": ``margin_ranking``, ``cosine_embedding``,
``triplet_margin``), for ``fusedloss bench --loss <name>``.

These take two or three arrays and a target instead of ``(pred, target)``, so they have their own cases
instead of the size grid of ``fusedloss.bench.cases``. What is timed, per call ("mean" reduction):

- torch (when installed, unless ``--no-peers``): ``torch.nn.functional.<torch_name>`` + ``backward()`` with
  every input requiring grad, ``torch.set_num_threads(threads)``;
- each fusedloss host backend: ``fl.<name>.value_and_grad(...)`` with ``fl.set_num_threads(threads)``.

Every contestant runs ``warmup`` times outside the timed region (Numba compiles there), its value is checked
against the float64 reference (relative error below 1e-4: "ok"), then the contestants are timed round-robin,
one call per sample. Data: rows of N(0, 1) embeddings, targets -1 or 1 (an input that must be >= 0: |N(0, 1)| + 0.1).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .._spec import REGISTRY
from .cases import DTYPES
from .oracle import REFERENCE_BACKEND
from .plan import UsageError, split

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
    from .. import _config

    spec = REGISTRY[name]
    loss = getattr(fl, name)
    N, D = dims
    arrays = make_case(name, N, D, dtype=dtype)
    ref = loss(*(a.astype(np.float64) for a in arrays), backend=REFERENCE_BACKEND)
    runs = {}
    saved_threads = _config._num_threads
    saved_torch = None
    if torch:
        import torch as _torch

        saved_torch = _torch.get_num_threads()
        _torch.set_num_threads(threads)
        fn = getattr(_torch.nn.functional, spec.torch_name)
        k = len(spec.inputs)
        ts = [_torch.from_numpy(a).requires_grad_() for a in arrays[:k]] + [_torch.from_numpy(a) for a in arrays[k:]]

        def run_torch():
            for t in ts[:k]:
                t.grad = None
            value = fn(*ts)
            value.backward()
            return float(value.detach())

        runs["torch"] = run_torch
    for b in backends:
        runs[b] = (lambda b=b: loss.value_and_grad(*arrays, backend=b)[0])
    fl.set_num_threads(threads)
    try:
        values = {}
        for key, f in runs.items():
            for _ in range(max(warmup, 1)):
                values[key] = f()
        samples = {key: [] for key in runs}
        for _ in range(repeat):
            for key, f in runs.items():
                t0 = time.perf_counter()
                f()
                samples[key].append(time.perf_counter() - t0)
    finally:
        _config.set_num_threads(saved_threads)
        if saved_torch is not None:
            _torch.set_num_threads(saved_torch)
    t_torch = float(np.median(samples["torch"])) if "torch" in samples else None
    rows = []
    for key, s in samples.items():
        med = float(np.median(s))
        err = abs(values[key] - ref) / max(abs(ref), 1e-300)
        rows.append({
            "loss": name, "case": label, "N": N, "D": D, "dtype": np.dtype(dtype).name, "contestant": key,
            "threads": threads, "median_s": med, "p20_s": float(np.percentile(s, 20)),
            "p80_s": float(np.percentile(s, 80)), "speedup_vs_torch": None if t_torch is None else t_torch / med,
            "value_rel_err": err, "check": "ok" if err < 1e-4 else f"value off by {err:.1e} (relative)",
        })
    return rows


def format_rows(rows) -> str:
    header = ["loss", "case", "N", "D", "contestant", "thr", "median", "vs torch", "check"]
    lines = [[r["loss"], r["case"], r["N"], r["D"], r["contestant"], r["threads"], f"{r['median_s'] * 1e3:.3f} ms",
              "" if r["speedup_vs_torch"] is None else f"{r['speedup_vs_torch']:.2f}x", r["check"]] for r in rows]
    cells = [[str(c) for c in line] for line in [header] + lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def parse_case(text: str) -> tuple[str, tuple]:
    """A case name or NxD ("1024x128") -> (label, (N, D))."""
    if text in CASES:
        return text, CASES[text]
    try:
        dims = tuple(int(float(p)) for p in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"pairwise size: expected {' or '.join(CASES)} or NxD (e.g. 1024x128), got {text!r}")
    return text, dims


def cmd_bench_pairwise(args) -> int:
    """``fusedloss bench --loss <pairwise loss>[,...]``: ``--size`` (case names or NxD), ``--backend``,
    ``--threads``, ``--dtype``, ``--repeat``, ``--warmup``, ``--no-peers``, ``--quick``, ``--json``."""
    import json

    names = split(args.loss)
    others = [n for n in names if n not in LOSSES]
    if others:
        raise UsageError(f"pairwise losses have their own cases: run them without other losses (also given: "
                         f"{', '.join(others)})")
    try:
        cases = [parse_case(s) for s in split(args.size)] or [
            (n, CASES[n]) for n in (QUICK_CASES if args.quick else CASES)]
        threads = [int(t) for t in split(args.threads)] or [2]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dtypes = split(args.dtype) or ["float32"]
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    from ..backends import REGISTRY as BACKENDS, host_order

    host = {name: e for name, e in BACKENDS.items() if not e.device}
    backends = split(args.backend) or [b for b in host_order() if b != REFERENCE_BACKEND and host[b].load() is not None]
    for b in backends:
        if b not in host or host[b].load() is None:
            raise UsageError(f"backend {b!r} is not an available host backend")
    try:
        import torch  # noqa: F401

        with_torch = not args.no_peers
    except ImportError:
        with_torch = False
    repeat = args.repeat or (3 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for name in names:
        for label, dims in cases:
            for dtype in dtypes:
                for t in threads:
                    rows += bench_case(name, label, dims, t, repeat, backends, torch=with_torch, warmup=warmup,
                                       dtype=np.dtype(dtype))
    print("timed: value and gradients of every input, reduction='mean'; 'vs torch' = torch's forward + backward "
          "median / this row's median")
    if load is not None:
        print(f"load average when the run started: {load:.1f} ({os.cpu_count()} cores)")
    print()
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "pairwise", "load_avg_before": load, "rows": rows}, fh, indent=1, default=str)
            fh.write("\n")
    return 0 if all(r["check"] == "ok" for r in rows) else 1
