"""CTC benchmark cases and timing, shared by ``fusedloss bench --loss ctc`` and ``benchmarks/ctc.py``.

CTC has its own signature (scores, targets, lengths), so it has its own cases instead of the size grid of
``fusedloss.bench.cases``. What is timed, per call:

- torch (when installed, unless ``--no-peers``): ``log_softmax(x, 2)`` + ``ctc_loss`` ("mean") +
  ``backward()``, with ``torch.set_num_threads(threads)``;
- each fusedloss host backend: ``fl.ctc.value_and_grad(x, ..., grad_out=buf)`` ("mean"; the log-softmax is
  fused), with ``fl.set_num_threads(threads)``.

The warm-up, the value check (against the float64 loss of the same float32 scores) and the round-robin timing
are ``bench.own_cases``'s. Rows give the median, p20 and p80 and the speed-up over torch's median. Cases: warp-ctc's published CPU case
(T=150, N=128, C=28, S=40) and a subword vocabulary (T=400, N=32, C=5000, S=80); every sequence has its full
length and S labels. The cpp backend's scratch memory (beyond the gradient) is reported when it ran.
"""

from __future__ import annotations

import numpy as np

from .own_cases import (check_status, common_options, fmt_speedup, host_backends, load_average, named_or_dims,
                        report, thread_counts, timing_columns, torch_peer)
from .plan import UsageError, split
from .report import table
from .timing import warm_and_time

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
    label, dims = named_or_dims(text, CASES)
    if len(dims) != 4 or min(dims) < 1 or dims[2] < 2:
        raise ValueError(f"ctc size: expected {' or '.join(CASES)} or TxNxCxS with C >= 2 (e.g. 50x8x20x10), "
                         f"got {text!r}")
    T, N, C, S = dims
    if T < S:
        raise ValueError(f"ctc size {text!r}: T = {T} frames cannot emit S = {S} labels")
    return label, dims


def bench_case(label, dims, threads, repeat, backends, *, torch=True, warmup=1, dtype=np.float32):
    """Rows for one case (module docstring); ``torch`` False leaves PyTorch out."""
    import fusedloss as fl

    T, N, C, S = dims
    x, targets, il, tl = make_case(T, N, C, S, dtype=dtype)
    ref = fl.ctc(x.astype(np.float64), targets, il, tl, backend=backends[0] if backends else "numpy")
    runs = {}
    buf = np.empty_like(x)
    with thread_counts(threads, torch):
        if torch:
            import torch as _torch

            xt = _torch.from_numpy(x).requires_grad_()
            tt, ilt, tlt = (_torch.from_numpy(a) for a in (targets, il, tl))

            def run_torch():
                xt.grad = None
                loss = _torch.nn.functional.ctc_loss(xt.log_softmax(2), tt, ilt, tlt)
                loss.backward()
                return float(loss.detach())

            runs["torch"] = run_torch
        for b in backends:
            runs[b] = (lambda b=b: fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend=b)[0])
        values, samples = warm_and_time(runs, repeat, warmup)
        scratch = None
        if "cpp" in runs:
            fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend="cpp")
            scratch = fl.ctc.last_scratch_bytes
    return [{"case": label, "T": T, "N": N, "C": C, "S": S, "dtype": np.dtype(dtype).name, "contestant": k,
             "threads": threads, **columns, "scratch_bytes": scratch if k == "cpp" else None,
             "logits_bytes": x.nbytes} for k, columns in timing_columns(samples, values, ref).items()]


def _ms(s):
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def _bytes(n):
    if n is None:
        return ""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


HEADER = ["case", "T", "N", "C", "S", "contestant", "thr", "median", "p20", "p80", "vs torch", "check", "scratch"]


def _cells(r) -> list:
    return [r["case"], r["T"], r["N"], r["C"], r["S"], r["contestant"], r["threads"], _ms(r["median_s"]),
            _ms(r["p20_s"]), _ms(r["p80_s"]), fmt_speedup(r["speedup_vs_torch"]), r["check"],
            _bytes(r["scratch_bytes"])]


def format_rows(rows) -> str:
    return table(HEADER, [_cells(r) for r in rows])


def cmd_bench_ctc(args) -> int:
    """``fusedloss bench --loss ctc``: the options that apply to CTC (``--size`` takes case names or TxNxCxS,
    ``--backend``, ``--threads``, ``--dtype``, ``--repeat``, ``--warmup``, ``--peer torch`` / ``--no-peers``,
    ``--quick``, ``--json``); a bad option raises ``UsageError``."""
    from .._spec import REGISTRY as LOSSES

    others = [n for n in split(args.loss) if n != "ctc"]
    if others:
        raise UsageError(f"ctc has its own cases: run `fusedloss bench --loss ctc` alone (also given: "
                          f"{', '.join(others)})")
    cases, threads, dtypes, repeat, warmup = common_options(args, parse_case, CASES, QUICK_CASES)
    backends = host_backends(args, LOSSES["ctc"])
    with_torch, notes = torch_peer(args, "ctc")

    load = load_average()
    rows = []
    for label, dims in cases:
        for dtype in dtypes:
            for t in threads:
                rows += bench_case(label, dims, t, repeat, backends, torch=with_torch, warmup=warmup,
                                   dtype=np.dtype(dtype))
    report("ctc", "timed: CTC forward + backward, reduction='mean': fusedloss value_and_grad (log-softmax fused, "
           "grad_out reused) and, as the peer, torch log_softmax + ctc_loss + backward; 'vs torch' = torch's median "
           "/ this row's median; 'scratch' = the cpp kernel's memory beyond the gradient", rows, HEADER, _cells,
           load, args.json, notes)
    return check_status(rows, lambda r: f"{r['case']} {r['contestant']}")
