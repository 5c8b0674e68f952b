"""CTC forward + backward: fusedloss (cpp, numba) against PyTorch on the CPU, and the float32 accuracy budget.

    python benchmarks/ctc.py                  # both cases, float32, 2 threads everywhere
    python benchmarks/ctc.py --case warp      # one case
    python benchmarks/ctc.py --accuracy       # float32 error at T = 2000, C = 5000 (against float64)

What is timed, per call:
- torch: ``log_softmax(x, 2)`` + ``ctc_loss`` ("mean") + ``backward()`` (torch.set_num_threads(threads));
- fusedloss: ``fl.ctc.value_and_grad(x, ..., grad_out=buf)`` (the log-softmax is fused; fl.set_num_threads).
Every contestant runs once outside the timed region, its value is checked against torch's, then the calls are
timed round-robin (so a change of machine load hits all of them alike); the rows give the median, p20 and p80
of the per-call times and the speed-up over torch's median. Cases: warp-ctc's published CPU case
(T=150, N=128, C=28, S=40) and a subword vocabulary (T=400, N=32, C=5000, S=80); every sequence has its full
length and S labels. The C++ kernel's peak scratch memory (beyond the gradient) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import fusedloss as fl
from fusedloss import _reference_ctc

CASES = {"warp": (150, 128, 28, 40), "subword": (400, 32, 5000, 80)}


def make_case(T, N, C, S, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, N, C)).astype(dtype)
    targets = rng.integers(1, C, size=(N, S))
    return x, targets, np.full(N, T), np.full(N, S)


def _timed(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def bench_case(name, threads, repeat, backends):
    import torch

    T, N, C, S = CASES[name]
    x, targets, il, tl = make_case(T, N, C, S)
    torch.set_num_threads(threads)
    fl.set_num_threads(threads)
    xt = torch.from_numpy(x).requires_grad_()
    tt, ilt, tlt = (torch.from_numpy(a) for a in (targets, il, tl))

    def run_torch():
        xt.grad = None
        loss = torch.nn.functional.ctc_loss(xt.log_softmax(2), tt, ilt, tlt)
        loss.backward()
        return float(loss)

    buf = np.empty_like(x)
    runs = {"torch": run_torch}
    for b in backends:
        runs[b] = (lambda b=b: fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend=b)[0])
    values = {k: f() for k, f in runs.items()}  # warm-up (and Numba's compilation) outside the timed region
    scratch = None
    if "cpp" in backends:
        fl.ctc.value_and_grad(x, targets, il, tl, grad_out=buf, backend="cpp")
        scratch = fl.ctc.last_scratch_bytes
    samples = {k: [] for k in runs}
    for _ in range(repeat):
        for k, f in runs.items():
            samples[k].append(_timed(f, 1))
    rows = []
    t_med = float(np.median(samples["torch"]))
    for k, s in samples.items():
        med = float(np.median(s))
        rows.append({
            "case": name, "T": T, "N": N, "C": C, "S": S, "dtype": "float32", "contestant": k, "threads": threads,
            "median_ms": round(med * 1e3, 3), "p20_ms": round(float(np.percentile(s, 20)) * 1e3, 3),
            "p80_ms": round(float(np.percentile(s, 80)) * 1e3, 3), "speedup_vs_torch": round(t_med / med, 2),
            "value_rel_err_vs_torch": abs(values[k] - values["torch"]) / abs(values["torch"]),
            **({"cpp_scratch_bytes": scratch, "logits_bytes": x.nbytes} if k == "cpp" else {}),
        })
    return rows


def accuracy(T=2000, C=5000, S=400, N=2, seed=1):
    """float32 against float64 on one input (the float32 scores, widened): fusedloss cpp and torch."""
    import torch

    x, targets, il, tl = make_case(T, N, C, S, seed=seed)
    x = x * np.float32(3.0)  # a spread of scores as a trained model has
    v64, g64 = fl.ctc.value_and_grad(x.astype(np.float64), targets, il, tl, reduction="sum", backend="cpp")
    rows = []
    for inputs in ("logits", "log_probs"):
        xin = x if inputs == "logits" else _reference_ctc.log_softmax(x).astype(np.float32)
        ref_v, ref_g = fl.ctc.value_and_grad(xin.astype(np.float64), targets, il, tl, reduction="sum",
                                             inputs=inputs, backend="cpp")
        v32, g32 = fl.ctc.value_and_grad(xin, targets, il, tl, reduction="sum", inputs=inputs, backend="cpp")
        xt = torch.from_numpy(xin).requires_grad_()
        lp = xt.log_softmax(2) if inputs == "logits" else xt
        out = torch.nn.functional.ctc_loss(lp, torch.from_numpy(targets), torch.from_numpy(il), torch.from_numpy(tl),
                                           reduction="sum")
        out.backward()
        scale = float(np.abs(ref_g).max())
        for who, v, g in (("fusedloss cpp float32", v32, g32), ("torch float32", float(out), xt.grad.numpy())):
            rows.append({"inputs": inputs, "who": who, "T": T, "C": C, "S": S, "N": N, "loss64": ref_v,
                         "value_rel_err": abs(v - ref_v) / abs(ref_v),
                         "grad_max_abs_err": float(np.abs(g.astype(np.float64) - ref_g).max()),
                         "grad_max_abs": scale})
    del v64, g64
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--backend", action="append", help="fusedloss backends (default: cpp and numba)")
    ap.add_argument("--accuracy", action="store_true", help="the float32 accuracy budget instead of timings")
    args = ap.parse_args(argv)
    print(json.dumps({"loadavg": os.getloadavg(), "cpus": os.cpu_count()}))
    if args.accuracy:
        for row in accuracy():
            print(json.dumps(row))
        return
    backends = args.backend or [b for b in ("cpp", "numba") if any(r["name"] == b and r["available"]
                                                                   for r in fl.backends())]
    for case in args.case or list(CASES):
        for row in bench_case(case, args.threads, args.repeat, backends):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
