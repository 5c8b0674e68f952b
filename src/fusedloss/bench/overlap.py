"""Benchmark of the overlap losses (kind "overlap": ``dice``, ``tversky``): ``python -m fusedloss.bench.overlap``.

They take scores with a class axis ``(N, C, *spatial)`` and class indices, so they have their own cases instead
of the size grid of ``fusedloss.bench.cases``. What is timed, per call ("mean" reduction, mode "multiclass",
logits): torch (when installed) as segmentation_models_pytorch computes the loss (softmax, one-hot, the sums,
``backward()``) with ``torch.set_num_threads(threads)``, and ``fl.<name>.value_and_grad`` on each host backend
with ``fl.set_num_threads(threads)``. Each contestant runs once outside the timed region (Numba compiles there)
and its value is checked against the float64 reference (relative error below 1e-4); then the contestants are
timed round-robin (``timing.time_round_robin``), and the median is reported.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from .._spec import REGISTRY
from .timing import time_round_robin

LOSSES = tuple(name for name, spec in REGISTRY.items() if spec.kind == "overlap")
CASES = {"voc": (16, 21, 128, 128), "small": (4, 5, 32, 32)}  # name -> input shape (N, C, H, W)


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


def bench_case(name, shape, threads=1, repeat=7, backends=("cpp", "numba", "numpy"), torch=True, dtype=np.float32,
               params=None):
    """Rows ``{loss, contestant, shape, dtype, threads, median_ms, p20_ms, p80_ms, ok}`` for one loss and shape."""
    import fusedloss as fl
    from .. import _config

    params = params or {}
    loss = getattr(fl, name)
    x, t = make_case(shape, dtype)
    ref = loss(x.astype(np.float64), t, backend="numpy", **params)
    calls = {}
    for b in backends:
        calls[b] = (lambda b=b: loss.value_and_grad(x, t, backend=b, **params)[0])
    saved_threads, saved_torch = _config._num_threads, None
    if torch:
        import torch as _torch

        saved_torch = _torch.get_num_threads()
        _torch.set_num_threads(threads)
        calls["torch"] = _torch_call(name, _torch.from_numpy(x), _torch.from_numpy(t), params)
    fl.set_num_threads(threads)
    try:
        ok = {k: abs(f() - ref) <= 1e-4 * abs(ref) for k, f in calls.items()}  # warm-up and check
        timings = time_round_robin(calls, repeat, warmup=1, budget_s=10.0)
    finally:
        _config._num_threads = saved_threads
        if saved_torch is not None:
            import torch as _torch

            _torch.set_num_threads(saved_torch)
    return [dict(loss=name, contestant=k, shape=shape, dtype=np.dtype(dtype).name, threads=threads,
                 **dict(zip(("median_ms", "p20_ms", "p80_ms"), (1e3 * v for v in tm.stats()))), ok=ok[k])
            for k, tm in timings.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedloss.bench.overlap", description=__doc__.split("\n")[0])
    parser.add_argument("--loss", default="dice", choices=LOSSES)
    parser.add_argument("--case", default="voc", choices=tuple(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backend", default="cpp,numba,numpy")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = bench_case(args.loss, CASES[args.case], args.threads, args.repeat, tuple(args.backend.split(",")),
                      not args.no_torch, np.dtype(args.dtype))
    print(f"{args.loss} value_and_grad, {CASES[args.case]} {args.dtype}, {args.threads} thread(s), load average "
          f"{load:.1f} when started ({os.cpu_count()} cores); medians of {args.repeat}")
    for r in rows:
        print(f"  {r['contestant']:>6}: {r['median_ms']:9.2f} ms  (p20 {r['p20_ms']:.2f}, p80 {r['p80_ms']:.2f})"
              f"{'' if r['ok'] else '  VALUE DIFFERS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
