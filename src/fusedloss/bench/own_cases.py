"""What the benchmarks of the losses with their own cases share (``bench.ctc``, ``bench.pairwise``: their calls
take other arrays than ``(pred, target)``, so they have their own cases instead of the size grid of
``fusedloss.bench.cases``).

Each contestant (PyTorch's forward + backward when installed, each fusedloss host backend's ``value_and_grad``)
runs ``warmup`` times outside the timed region (Numba compiles there) and its value is checked against the float64
reference (relative error below 1e-4: "ok"); then the contestants are timed round-robin, one call per sample, so
that a change of machine load hits all of them alike (``timing.warm_and_time``), with fusedloss and torch at the
given thread count.
"""

from __future__ import annotations

import importlib.util
import json
import os
from contextlib import contextmanager

import numpy as np

from .cases import DTYPES
from .oracle import REFERENCE_BACKEND
from .plan import UsageError, split
from .report import table

CHECK_RTOL = 1e-4  # a contestant's value within this of the reference's, relative: "ok"


@contextmanager
def thread_counts(threads: int, torch: bool):
    """fusedloss's thread count (and torch's, when ``torch``) at ``threads`` inside, restored after."""
    import fusedloss as fl
    from .. import _config

    saved = _config._num_threads
    saved_torch = None
    try:
        if torch:
            import torch as _torch

            saved_torch = _torch.get_num_threads()
            _torch.set_num_threads(threads)
        fl.set_num_threads(threads)
        yield
    finally:
        _config.set_num_threads(saved)
        if saved_torch is not None:
            _torch.set_num_threads(saved_torch)


def timing_columns(samples: dict, values: dict, ref: float) -> dict:
    """Per contestant, the timing and check columns of its row: median, p20, p80, speed-up over torch's median,
    the value's relative error against ``ref`` and the check."""
    t_torch = float(np.median(samples["torch"])) if "torch" in samples else None
    out = {}
    for key, s in samples.items():
        med = float(np.median(s))
        err = abs(values[key] - ref) / max(abs(ref), 1e-300)
        out[key] = {"median_s": med, "p20_s": float(np.percentile(s, 20)), "p80_s": float(np.percentile(s, 80)),
                    "speedup_vs_torch": None if t_torch is None else t_torch / med, "value_rel_err": err,
                    "check": "ok" if err < CHECK_RTOL else f"value off by {err:.1e} (relative)"}
    return out


def fmt_speedup(x) -> str:
    return "" if x is None else f"{x:.2f}x"


def named_or_dims(text: str, cases: dict) -> tuple[str, tuple]:
    """A case name -> (the name, its dimensions); else (``text``, the integers of "AxBx..."; () if it is not
    one): the caller checks their number and range."""
    if text in cases:
        return text, cases[text]
    try:
        return text, tuple(int(float(p)) for p in text.lower().split("x"))
    except ValueError:
        return text, ()


def common_options(args, parse_case, cases: dict, quick_cases) -> tuple[list, list, list, int, int]:
    """(cases as (label, dims), thread counts, dtypes, repeat, warmup) from ``--size``, ``--threads``, ``--dtype``,
    ``--repeat``, ``--warmup``, ``--quick``; a bad one raises ``UsageError``."""
    try:
        chosen = [parse_case(s) for s in split(args.size)] or [
            (n, cases[n]) for n in (quick_cases if args.quick else cases)]
        threads = [int(t) for t in split(args.threads)] or [2]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if any(t < 1 for t in threads):
        raise UsageError("--threads: expected positive integers")
    dtypes = split(args.dtype) or ["float32"]
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    repeat = args.repeat or (3 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else 1
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    return chosen, threads, dtypes, repeat, warmup


def host_backends(args, spec) -> list[str]:
    """``--backend``, checked, or every available host backend with a kernel for ``spec``, in auto's order, but
    the float64 reference."""
    from ..backends import REGISTRY, host_order

    host = {name: e for name, e in REGISTRY.items() if not e.device}  # not fl.backends(): it imports CUDA too
    backends = split(args.backend) or [
        b for b in host_order() if b != REFERENCE_BACKEND and host[b].load() is not None
        and host[b].load().supports(spec, np.dtype(np.float32))]
    for b in backends:
        if b not in host:
            raise UsageError(f"unknown host backend {b!r}; choose from {', '.join(host)}")
        if host[b].load() is None:
            raise UsageError(f"backend {b!r} is not available: {type(host[b].error).__name__}: {host[b].error}")
    return backends


def torch_peer(args, what: str) -> tuple[bool, list[str]]:
    """(whether PyTorch is timed, notes to print) from ``--peer`` (torch only: ``what`` is compared with PyTorch
    alone) and ``--no-peers``; a bad combination raises ``UsageError``."""
    peers = split(args.peer)
    if args.no_peers and peers:
        raise UsageError("--no-peers and --peer contradict each other")
    if any(p != "torch" for p in peers):
        raise UsageError(f"{what}: compared with PyTorch only (--peer torch), got {', '.join(peers)}")
    # found, not imported: with --no-peers a run does not pay torch's import (about 2 s)
    have_torch = importlib.util.find_spec("torch") is not None
    if peers and not have_torch:
        raise UsageError("peer 'torch' is not installed (pip install 'fusedloss[torch]')")
    with_torch = have_torch and not args.no_peers
    notes = [] if with_torch else [
        "PyTorch is not " + ("installed" if not have_torch else "timed (--no-peers)") + ": no 'vs torch' column"]
    return with_torch, notes


def bench_losses(args, what: str, losses, parse_case, cases: dict, quick_cases, bench_case) -> tuple:
    """(rows, the load average when the run started, notes) of ``fusedloss bench --loss`` for losses of one family
    with their own cases (``what``: its name, ``losses``: its members): each named loss on each case, dtype and
    thread count, ``bench_case(name, label, dims, threads, repeat, backends, torch=, warmup=, dtype=)`` giving the
    rows; a bad option raises ``UsageError`` before anything runs."""
    from .._spec import REGISTRY as LOSS_SPECS

    names = split(args.loss)
    others = [n for n in names if n not in losses]
    if others:
        raise UsageError(f"{what} have their own cases: run them without other losses (also given: "
                         f"{', '.join(others)})")
    chosen, threads, dtypes, repeat, warmup = common_options(args, parse_case, cases, quick_cases)
    backends = host_backends(args, LOSS_SPECS[names[0]])
    with_torch, notes = torch_peer(args, what)
    load = load_average()
    rows = [row for name in names for label, dims in chosen for dtype in dtypes for t in threads
            for row in bench_case(name, label, dims, t, repeat, backends, torch=with_torch, warmup=warmup,
                                  dtype=np.dtype(dtype))]
    return rows, load, notes


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def report(mode: str, timed: str, rows: list, header: list, cells, load, json_path, notes=()) -> None:
    """Print what was timed, the load average, ``notes`` and the table (``cells(row)`` gives a row's cells);
    write the rows to ``json_path`` when given."""
    print(timed)
    if load is not None:
        print(f"load average when the run started: {load:.1f} ({os.cpu_count()} cores)")
    for note in notes:
        print(note)
    print()
    print(table(header, [cells(r) for r in rows]))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"mode": mode, "load_avg_before": load, "rows": rows}, fh, indent=1, default=str)
            fh.write("\n")
        print(f"wrote {json_path}")


def check_status(rows: list, label) -> int:
    """The exit status of a run: 1 (after printing ``label(row)`` of each) when a row failed its value check, else
    0."""
    failed = [r for r in rows if r["check"] != "ok"]
    if failed:
        print("\nFAILED correctness check: " + "; ".join(f"{label(r)}: {r['check']}" for r in failed))
        return 1
    return 0
