"""CTC forward + backward: fusedloss (cpp, numba) against PyTorch on the CPU, and the float32 accuracy budget.

    python benchmarks/ctc.py                  # both cases, float32, 2 threads everywhere
    python benchmarks/ctc.py --case warp      # one case
    python benchmarks/ctc.py --accuracy       # float32 error at T = 2000, C = 5000 (against float64)

The timing is ``fusedloss.bench.ctc``'s, the same as ``fusedloss bench --loss ctc`` (which prints a table;
this script prints JSON rows): torch's log_softmax + ctc_loss ("mean") + backward against
``fl.ctc.value_and_grad(x, ..., grad_out=buf)`` on each backend, round-robin, each value checked against the
float64 loss; median, p20, p80 and the speed-up over torch. Cases: warp-ctc's published CPU case
(T=150, N=128, C=28, S=40) and a subword vocabulary (T=400, N=32, C=5000, S=80). The C++ kernel's peak
scratch memory (beyond the gradient) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import fusedloss as fl
from fusedloss import _reference_ctc

from fusedloss.bench.ctc import CASES, bench_case as _bench_case, make_case  # one setup with the CLI


def bench_case(name, threads, repeat, backends):
    """Rows of one named case (``fusedloss bench --loss ctc`` runs the same code)."""
    return _bench_case(name, CASES[name], threads, repeat, backends)


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
