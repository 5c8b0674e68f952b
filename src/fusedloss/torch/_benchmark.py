"""Benchmark of the PyTorch modules: forward + backward of ``torch.nn.<Loss>`` against ``fusedloss.torch.<Loss>``
on the same tensors (``fusedloss bench --torch-module``; ``python -m fusedloss.torch._benchmark`` by hand).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _config
from .._dispatch import resolve_host_backend
from .._spec import REGISTRY
from ._kernel import _NATIVE
from .modules import CrossEntropyLoss, MSELoss

# --- benchmark: PyTorch module, forward + backward ------------------------------------------------------------

# (loss, shape) of the PyTorch-module comparison (the README's figures); QUICK_: a run of seconds
TORCH_MODULE_CASES = (("cross_entropy", (8192, 32000)), ("cross_entropy", (65536, 1000)), ("mse", (10_000_000,)))
QUICK_TORCH_MODULE_CASES = (("cross_entropy", (1024, 1000)), ("mse", (100_000,)))

_TORCH_MODULE_PAIRS = {
    "cross_entropy": ("CrossEntropyLoss", lambda: torch.nn.CrossEntropyLoss(), lambda b: CrossEntropyLoss(backend=b)),
    "mse": ("MSELoss", lambda: torch.nn.MSELoss(), lambda b: MSELoss(backend=b)),
}


def _module_case_data(loss_name: str, shape: tuple, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)
    if loss_name == "cross_entropy":
        t = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    else:
        t = torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)
    return x, t


def bench_torch_module(cases=TORCH_MODULE_CASES, dtype="float32", *, repeat=7, warmup=2, threads=None, backend=None,
                       min_sample_s=2e-3, budget_s=20.0, progress=None) -> list[dict]:
    """Forward + backward of ``torch.nn.<Loss>`` vs ``fusedloss.torch.<Loss>`` on the same tensors.

    ``cases``: ``(loss, shape)`` pairs, ``loss`` in ("cross_entropy", "mse"). One timed call is
    ``x.grad = None; module(x, t).backward()`` on a leaf ``x`` (the gradient buffer is allocated in every call by
    both, as ``optimizer.zero_grad()`` leaves it). Contestants are timed round-robin with the shared timing loop
    (``fusedloss.bench.timing.time_round_robin``): ``warmup`` untimed calls, then ``repeat`` samples. ``threads`` sets
    both torch's and fusedloss's thread count for the run (None: leave them). ``backend``: fusedloss's backend
    (None: the current choice, usually "auto"; the row says which backend ran). ``progress``: called as
    ``progress(i, label, step)`` when case ``i`` starts and at each step of its timing (a progress bar's update).

    Returns flat rows: mode, loss, module, contestant ("torch" | "fusedloss"), backend, dtype, size, n, threads,
    median_s, p20_s, p80_s, samples, number, check, value_err, grad_err, speedup_vs_torch.
    """
    from ..bench.cases import format_shape
    from ..bench.timing import time_round_robin

    tdtype = getattr(torch, dtype)
    prev_torch_threads = torch.get_num_threads()
    prev_fl_threads = _config._num_threads
    if threads is not None:
        torch.set_num_threads(threads)
        _config.set_num_threads(threads)
    rows = []
    try:
        for i, (loss_name, shape) in enumerate(cases):
            shape = tuple(int(s) for s in shape)
            label, make_torch, make_ours = _TORCH_MODULE_PAIRS[loss_name]
            spec = REGISTRY[loss_name]
            backend_name = (backend if backend not in (None, "auto")
                            else resolve_host_backend(backend, spec, np.dtype(dtype if tdtype in _NATIVE
                                                                              else "float32")).NAME)
            x, t = _module_case_data(loss_name, shape, tdtype)
            x.requires_grad_(True)
            mods = {"torch": make_torch(), "fusedloss": make_ours(backend)}

            def step(mod):
                x.grad = None
                mod(x, t).backward()

            # correctness: value and gradient of ours against torch's, on the first call
            values, grads = {}, {}
            for name, mod in mods.items():
                x.grad = None
                out = mod(x, t)
                out.backward()
                values[name], grads[name] = out.detach().item(), x.grad
            v_err = abs(values["fusedloss"] - values["torch"]) / max(abs(values["torch"]), 1e-30)
            scale = float(grads["torch"].abs().max()) or 1e-30
            g_err = float((grads["fusedloss"] - grads["torch"]).abs().max()) / scale
            tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(tdtype, 2e-2)
            check = "ok" if (v_err <= tol and g_err <= tol) else f"MISMATCH value {v_err:.2g} grad {g_err:.2g}"
            del grads
            x.grad = None
            runs = {name: (lambda m=mod: step(m)) for name, mod in mods.items()}
            on_step = None
            if progress is not None:
                case = f"{loss_name} {format_shape(shape)} {dtype}"
                progress(i, case, "")
                on_step = lambda step, i=i, case=case: progress(i, case, step)  # noqa: E731
            timings = time_round_robin(runs, repeat, warmup, min_sample_s, budget_s, on_step)
            x.grad = None
            size = format_shape(shape)
            med = {name: tm.stats()[0] for name, tm in timings.items()}
            for name, tm in timings.items():
                m, p20, p80 = tm.stats()
                rows.append({
                    "mode": "torch-module", "loss": loss_name,
                    "module": f"{'torch.nn' if name == 'torch' else 'fusedloss.torch'}.{label}",
                    "contestant": name, "backend": "torch" if name == "torch" else backend_name,
                    "dtype": dtype, "size": size, "n": int(np.prod(shape)),
                    "threads": torch.get_num_threads() if name == "torch" else _config.get_num_threads(),
                    "median_s": m, "p20_s": p20, "p80_s": p80, "samples": len(tm.samples), "number": tm.number,
                    "check": check, "value_err": v_err, "grad_err": g_err,
                    "speedup_vs_torch": med["torch"] / m,
                })
            del x, t, mods, runs
    finally:
        torch.set_num_threads(prev_torch_threads)
        _config.set_num_threads(prev_fl_threads)
    return rows


def _main(argv=None):  # pragma: no cover - a convenience for measuring by hand
    import argparse
    import json

    ap = argparse.ArgumentParser(description="PyTorch-module forward+backward benchmark (fusedloss vs torch.nn)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    rows = bench_torch_module(QUICK_TORCH_MODULE_CASES if args.quick else TORCH_MODULE_CASES, args.dtype,
                              repeat=args.repeat, threads=args.threads, backend=args.backend)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":  # pragma: no cover
    _main()
