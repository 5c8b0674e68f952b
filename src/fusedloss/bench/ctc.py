"""CTC benchmark cases and timing, shared by ``fusedloss bench --loss ctc`` and ``benchmarks/ctc.py``.

CTC has its own signature (scores, targets, lengths), so it has its own cases instead of the size grid of
``fusedloss.bench.cases``. What is timed, per call:

- torch (when installed, unless ``--no-peers``): ``log_softmax(x, 2)`` + ``ctc_loss`` ("mean") +
  ``backward()``, with ``torch.set_num_threads(threads)``;
- each fusedloss host backend: ``fl.ctc.value_and_grad(x, ..., grad_out=buf)`` ("mean"; the log-softmax is
  fused), with ``fl.set_num_threads(threads)``.

Every contestant runs ``warmup`` times outside the timed region (Numba compiles there), its value is checked
against the float64 loss of the same float32 scores (relative error below 1e-4: "ok"), then the contestants
are timed round-robin, one call per sample, so a change of machine load hits all of them alike. Rows give the
median, p20 and p80 and the speed-up over torch's median. Cases: warp-ctc's published CPU case
(T=150, N=128, C=28, S=40) and a subword vocabulary (T=400, N=32, C=5000, S=80); every sequence has its full
length and S labels. The cpp backend's scratch memory (beyond the gradient) is reported when it ran.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .cases import DTYPES
from .oracle import REFERENCE_BACKEND
from .plan import UsageError, split

CASES = {"warp": (150, 128, 28, 40), "subword": (400, 32, 5000, 80)}  # name -> (T, N, C, S)
QUICK_CASES = ("warp",)


def make_case(T, N, C, S, dtype=np.float32, seed=0):
    """(scores (T, N, C), padded targets (N, S) without the blank 0, input lengths T, target lengths S)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, N, C)).astype(dtype)
    targets = rng.integers(1, C, size=(N, S))
    return x, targets, np.full(N, T), np.full(N, S)


def parse_case(text: str) -> tuple[str, tuple]:
    """A case name ("warp", "subword") or TxNxCxS ("50x8x20x10") -> (label, (T, N, C, S))."""
    if text in CASES:
        return text, CASES[text]
    try:
        dims = tuple(int(float(p)) for p in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1 or dims[2] < 2:
        raise ValueError(f"ctc size: expected {' or '.join(CASES)} or TxNxCxS with C >= 2 (e.g. 50x8x20x10), "
                         f"got {text!r}")
    T, N, C, S = dims
    if T < S:
        raise ValueError(f"ctc size {text!r}: T = {T} frames cannot emit S = {S} labels")
    return text, dims


def bench_case(label, dims, threads, repeat, backends, *, torch=True, warmup=1, dtype=np.float32):
    """Rows for one case (module docstring); ``torch`` False leaves PyTorch out."""
    import fusedloss as fl
    from .. import _config

    T, N, C, S = dims
    x, targets, il, tl = make_case(T, N, C, S, dtype=dtype)
    ref = fl.ctc(x.astype(np.float64), targets, il, tl, backend=backends[0] if backends else "numpy")
    runs = {}
    saved_threads = _config._num_threads
    saved_torch = None
    if torch:
        import torch as _torch

        saved_torch = _torch.get_num_threads()
        _torch.set_num_threads(threads)
        xt = _torch.from_numpy(x).requires_grad_()
        tt, ilt, tlt = (_torch.from_numpy(a) for a in (targets, il, tl))

        def run_torch():
            xt.grad = None
            loss = _torch.nn.functional.ctc_loss(xt.log_softmax(2), tt, ilt, tlt)
            loss.backward()
            return float(loss.detach())

        runs["torch"] = run_torch
    buf = np.empty_like(x)
    for b in backends:
        runs[b] = (lambda b=b: fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend=b)[0])
    fl.set_num_threads(threads)
    try:
        values = {}
        for k, f in runs.items():
            for _ in range(max(warmup, 1)):
                values[k] = f()
        scratch = None
        if "cpp" in runs:
            fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend="cpp")
            scratch = fl.ctc.last_scratch_bytes
        samples = {k: [] for k in runs}
        for _ in range(repeat):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                samples[k].append(time.perf_counter() - t0)
    finally:
        _config.set_num_threads(saved_threads)
        if saved_torch is not None:
            _torch.set_num_threads(saved_torch)
    t_torch = float(np.median(samples["torch"])) if "torch" in samples else None
    rows = []
    for k, s in samples.items():
        med = float(np.median(s))
        err = abs(values[k] - ref) / abs(ref)
        rows.append({
            "case": label, "T": T, "N": N, "C": C, "S": S, "dtype": np.dtype(dtype).name, "contestant": k,
            "threads": threads, "median_s": med, "p20_s": float(np.percentile(s, 20)),
            "p80_s": float(np.percentile(s, 80)), "speedup_vs_torch": None if t_torch is None else t_torch / med,
            "value_rel_err": err, "check": "ok" if err < 1e-4 else f"value off by {err:.1e} (relative)",
            "scratch_bytes": scratch if k == "cpp" else None, "logits_bytes": x.nbytes,
        })
    return rows


def _ms(s):
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def _bytes(n):
    if n is None:
        return ""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def format_rows(rows) -> str:
    header = ["case", "T", "N", "C", "S", "contestant", "thr", "median", "p20", "p80", "vs torch", "check",
              "scratch"]
    lines = [[r["case"], r["T"], r["N"], r["C"], r["S"], r["contestant"], r["threads"], _ms(r["median_s"]),
              _ms(r["p20_s"]), _ms(r["p80_s"]),
              "" if r["speedup_vs_torch"] is None else f"{r['speedup_vs_torch']:.2f}x", r["check"],
              _bytes(r["scratch_bytes"])] for r in rows]
    cells = [[str(c) for c in line] for line in [header] + lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def cmd_bench_ctc(args) -> int:
    """``fusedloss bench --loss ctc``: the options that apply to CTC (``--size`` takes case names or TxNxCxS,
    ``--backend``, ``--threads``, ``--dtype``, ``--repeat``, ``--warmup``, ``--peer torch`` / ``--no-peers``,
    ``--quick``, ``--json``); a bad option raises ``UsageError``."""
    import json

    others = [n for n in split(args.loss) if n != "ctc"]
    if others:
        raise UsageError(f"ctc has its own cases: run `fusedloss bench --loss ctc` alone (also given: "
                          f"{', '.join(others)})")
    try:
        cases = [parse_case(s) for s in split(args.size)] or [
            (n, CASES[n]) for n in (QUICK_CASES if args.quick else CASES)]
        threads = [int(t) for t in split(args.threads)] or [2]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if any(t < 1 for t in threads):
        raise UsageError("--threads: expected positive integers")
    dtypes = split(args.dtype) or ["float32"]
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    from .._spec import REGISTRY as LOSSES
    from ..backends import REGISTRY, host_order

    host = {name: e for name, e in REGISTRY.items() if not e.device}  # not fl.backends(): it imports CUDA too
    # default: every available host backend with a CTC kernel, in auto's order, but the float64 reference
    backends = split(args.backend) or [
        b for b in host_order() if b != REFERENCE_BACKEND and host[b].load() is not None
        and host[b].load().supports(LOSSES["ctc"], np.dtype(np.float32))]
    for b in backends:
        if b not in host:
            raise UsageError(f"unknown host backend {b!r}; choose from {', '.join(host)}")
        if host[b].load() is None:
            raise UsageError(f"backend {b!r} is not available: {type(host[b].error).__name__}: {host[b].error}")
    peers = split(args.peer)
    if args.no_peers and peers:
        raise UsageError("--no-peers and --peer contradict each other")
    if any(p != "torch" for p in peers):
        raise UsageError(f"ctc is compared with PyTorch only (--peer torch), got {', '.join(peers)}")
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    if peers and not have_torch:
        raise UsageError("peer 'torch' is not installed (pip install 'fusedloss[torch]')")
    with_torch = have_torch and not args.no_peers
    repeat = args.repeat or (3 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else 1
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for label, dims in cases:
        for dtype in dtypes:
            for t in threads:
                rows += bench_case(label, dims, t, repeat, backends, torch=with_torch, warmup=warmup,
                                   dtype=np.dtype(dtype))
    print("timed: CTC forward + backward, reduction='mean': fusedloss value_and_grad (log-softmax fused, grad_out "
          "reused) and, as the peer, torch log_softmax + ctc_loss + backward; 'vs torch' = torch's median / this "
          "row's median; 'scratch' = the cpp kernel's memory beyond the gradient")
    if load is not None:
        print(f"load average when the run started: {load:.1f} ({os.cpu_count()} cores)")
    if not with_torch:
        print("PyTorch is not " + ("installed" if not have_torch else "timed (--no-peers)") + ": no 'vs torch' column")
    print()
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "ctc", "load_avg_before": load, "rows": rows}, fh, indent=1, default=str)
            fh.write("\n")
        print(f"wrote {args.json}")
    failed = [r for r in rows if r["check"] != "ok"]
    if failed:
        print("\nFAILED correctness check: " + "; ".join(f"{r['case']} {r['contestant']}: {r['check']}"
                                                         for r in failed))
        return 1
    return 0
