"""Device benchmark: forward + backward of fusedloss's CUDA kernels against torch's, on one GPU.

How to run (one command, a few minutes on an H200; needs torch with CUDA and numba-cuda)::

    PYTHONPATH=src python benchmarks/gpu_bench.py            # table on stdout
    PYTHONPATH=src python benchmarks/gpu_bench.py --json out.json   # also the rows, in gpu_routing.json's form

Cases: cross_entropy at 8192 x 32000, 4096 x 128256, 65536 x 1000 and 1024 x 32000 (float32 logits, and bfloat16
logits that fusedloss computes in float32), mse and binary_cross_entropy_with_logits at 1e8 elements (float32).
For each:

- ``torch``: ``torch.nn.functional``'s loss, then ``backward()`` (what a user runs without fusedloss);
- ``fused``: ``fusedloss.torch``'s loss with ``backend="cuda"`` (the fused path forced), then ``backward()``;
- ``kernel``: the Numba kernels alone (``fusedloss.<loss>.value_and_grad`` on the tensors' device memory, the
  gradient into a preallocated buffer), float32 only;
- ``metrics``: ``kernel`` with ``metrics=`` (cross_entropy: accuracy, top-5, ECE; binary_cross_entropy_with_logits:
  accuracy, Brier, ROC over 256 bins, ECE).

Times are medians of CUDA-event-timed repetitions after a warm-up. GB/s counts the least traffic a fused
forward + backward needs (logits or inputs read once, targets read once, gradient written once, in the
caller's dtype), and is also given as a fraction of the device's copy bandwidth, measured here with a 1 GiB
device-to-device copy (read + write). The ``--json`` rows can be added to ``src/fusedloss/gpu_routing.json``
(widen ``numel`` / ``classes`` deliberately, by what was measured) to let ``fusedloss.torch`` route a case to
the fused kernels: only rows with ``fused_s <= torch_s`` change anything.

``--tiny`` runs the same code at tiny sizes on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``; no GPU):
the ``kernel`` rows on simulator arrays, the ``torch`` rows on CPU tensors, times meaningless. The test suite
runs it so that this script cannot rot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

CE_SHAPES = [(8192, 32000), (4096, 128256), (65536, 1000), (1024, 32000)]
ELEMENTWISE_N = 10**8
TINY_CE_SHAPES = [(4, 33), (2, 300)]
TINY_N = 500


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CUDA simulator (a smoke test)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repetitions per case (default 20, tiny 2)")
    ap.add_argument("--json", default=None, help="write the rows (gpu_routing.json's case form) to this file")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="also profile one call of each fused and kernel path (torch.profiler: the device time of "
                         "each kernel and runtime call, averaged over 3 calls; then cProfile's host functions) "
                         "into FILE")
    ap.add_argument("--row-elems", default=None, metavar="LIST",
                    help="also time the cross_entropy kernel alone (device time of back-to-back launches) for each "
                         "of these values of _cuda_rows.ROW_ELEMS (logits per thread and pass), e.g. 1,4,8,16; "
                         "E:B also sets MAX_ROW_BLOCKS to B")
    return ap.parse_args(argv)


class Device:
    """Where arrays live and how time is taken: a CUDA GPU through torch, or the simulator (--tiny)."""

    def __init__(self, tiny: bool, profile_to=None):
        import torch

        self.torch = torch
        self.tiny = tiny
        self.profile_to = profile_to  # an open file, or None
        if tiny:
            self.tdev = torch.device("cpu")
            self.name = "CUDA simulator (times meaningless)"
        else:
            if not torch.cuda.is_available():
                sys.exit("gpu_bench: torch sees no CUDA GPU; run with --tiny under NUMBA_ENABLE_CUDASIM=1 instead")
            self.tdev = torch.device("cuda")
            self.name = torch.cuda.get_device_name()

    def sync(self):
        if not self.tiny:
            self.torch.cuda.synchronize()

    def time(self, fn, repeat: int) -> float:
        """Median seconds of ``fn()`` over ``repeat`` runs, after one warm-up run."""
        fn()
        self.sync()
        times = []
        for _ in range(repeat):
            if self.tiny:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            else:
                start = self.torch.cuda.Event(enable_timing=True)
                stop = self.torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop) / 1e3)
        return statistics.median(times)

    def profile(self, fn, what: str) -> None:
        """Where one call of ``fn`` spends its time: torch.profiler's table of kernels and runtime calls (CUDA
        kernels that Numba launches included), per call over 3 calls, written to the profile file."""
        if self.profile_to is None:
            return
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([] if self.tiny else [ProfilerActivity.CUDA])
        fn()
        self.sync()
        with profile(activities=activities) as prof:
            for _ in range(3):
                fn()
            self.sync()
        key = "self_cpu_time_total" if self.tiny else "self_device_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=70)
        self.profile_to.write(f"\n=== {what} (3 calls)\n{table}\n")
        import cProfile
        import io
        import pstats

        host = cProfile.Profile()
        host.enable()
        for _ in range(3):
            fn()
        self.sync()
        host.disable()
        text = io.StringIO()
        pstats.Stats(host, stream=text).sort_stats("tottime").print_stats(16)
        self.profile_to.write(f"--- host functions, 3 calls (cProfile, by own time)\n{text.getvalue()}\n")
        self.profile_to.flush()

    def launches(self, fn, repeat: int, per: int = 10) -> float:
        """Median seconds per call of ``fn`` over ``per`` calls launched back to back between two events (the
        device time of a launch that does not synchronise, once the host runs ahead)."""
        return self.time(lambda: [fn() for _ in range(per)], repeat) / per

    def copy_bandwidth(self, repeat: int) -> float:
        """Bytes per second of a device-to-device copy (read + write counted)."""
        torch = self.torch
        n = (1 << 30) // 4 if not self.tiny else 1 << 12
        src = torch.empty(n, dtype=torch.float32, device=self.tdev).fill_(1.0)
        dst = torch.empty_like(src)
        return 2 * 4 * n / self.time(lambda: dst.copy_(src), repeat)

    def numba_view(self, t):
        """The tensor's memory as a Numba device array (zero-copy on a GPU; a copy on the simulator)."""
        from numba import cuda

        if self.tiny:
            return cuda.to_device(t.detach().numpy())
        return cuda.as_cuda_array(t.detach())


def _row_elems_case(dev: Device, R: int, C: int, values, repeat: int) -> dict:
    """The cross_entropy kernel alone (float32, mean, gradient only, no reduction read back) for each
    ``ROW_ELEMS``: seconds per launch."""
    import torch
    from numba import cuda

    from fusedloss.backends import _cuda_rows as rows
    from fusedloss.backends import numba_cuda as nc

    g = torch.Generator(device=dev.tdev).manual_seed(1)
    x = torch.randn(R * C, generator=g, device=dev.tdev)
    y = torch.randint(0, C, (R,), generator=g, device=dev.tdev)
    dx, dy = dev.numba_view(x), dev.numba_view(y)
    grad = cuda.device_array(R * C, np.float32)
    kept = rows.ROW_ELEMS, rows.MAX_ROW_BLOCKS
    out = {}
    try:
        for value in values:
            elems, _, blocks = value.partition(":")
            rows.ROW_ELEMS = int(elems)
            rows.MAX_ROW_BLOCKS = int(blocks) if blocks else kept[1]
            out[value] = dev.launches(lambda: nc.multiclass("cross_entropy", (0.0, 0.0, 0.0, 0.0), -100, C, dx, dy,
                                                            None, None, None, 1.0 / R, False, None, grad, None, 1),
                                      repeat)
    finally:
        rows.ROW_ELEMS, rows.MAX_ROW_BLOCKS = kept
    return out


def _ce_case(dev: Device, R: int, C: int, dtype, repeat: int):
    import torch
    import torch.nn.functional as F

    import fusedloss as fl
    import fusedloss.torch as flt

    g = torch.Generator(device=dev.tdev).manual_seed(0)
    x = torch.randn(R, C, generator=g, device=dev.tdev, dtype=torch.float32).to(dtype).requires_grad_(True)
    y = torch.randint(0, C, (R,), generator=g, device=dev.tdev)

    def torch_step():
        x.grad = None
        F.cross_entropy(x, y).backward()

    def fused_step():
        x.grad = None
        flt.cross_entropy(x, y, backend="cuda").backward()

    label = f"cross_entropy {R}x{C} {str(dtype).rsplit('.', 1)[-1]}"
    rows = {"torch": dev.time(torch_step, repeat)}
    dev.profile(torch_step, f"{label} torch")
    if not dev.tiny:
        rows["fused"] = dev.time(fused_step, repeat)
        dev.profile(fused_step, f"{label} fused")
    kernel = None
    if dtype == torch.float32:
        dx, dy = dev.numba_view(x), dev.numba_view(y)
        from numba import cuda

        grad = cuda.device_array((R, C), np.float32)
        call = lambda: fl.cross_entropy.value_and_grad(dx, dy, grad_out=grad, backend="cuda")  # noqa: E731
        rows["kernel"] = dev.time(call, repeat)
        dev.profile(call, f"{label} kernel")
        metrics = ("accuracy", "top5", "ece15")
        rows["metrics"] = dev.time(lambda: fl.cross_entropy.value_and_grad(
            dx, dy, grad_out=grad, backend="cuda", metrics=metrics), repeat)

        def kernel(g):
            fl.cross_entropy.value_and_grad(dx, dy, grad_out=dev.numba_view(g), backend="cuda")
    errors = {}
    if not dev.tiny:
        errors = _errors(x, lambda z: F.cross_entropy(z, y), {"torch": torch_step, "fused": fused_step}, kernel)
    itemsize = torch.empty((), dtype=dtype).element_size()
    return rows, errors, 2 * R * C * itemsize + R * 8, R * C, C


def _errors(x, loss64, steps: dict, kernel=None) -> dict:
    """Relative error of each path's gradient, ||g - g64|| / ||g64||, against the same loss computed in float64
    on an upcast copy of the input (float32 arithmetic lands far below 1e-3, bf16 rounding near 4e-3).
    ``kernel``: a function that fills a given float32 torch tensor with the Numba kernel's gradient; the tensor
    is poisoned with NaN first, so an element the kernel leaves unwritten shows as NaN."""
    try:
        return _errors_of(x, loss64, steps, kernel)
    except Exception as exc:  # the check is extra: its failure is reported beside the times, not instead of them
        print(f"  (gradient check failed: {type(exc).__name__}: {exc})"[:300], flush=True)
        return {}


def _errors_of(x, loss64, steps: dict, kernel=None) -> dict:
    import torch

    z = x.detach().double().requires_grad_(True)
    loss64(z).backward()
    ref = z.grad
    out = {}
    for name, step in steps.items():
        step()
        out[name] = float((x.grad.double() - ref).norm() / ref.norm())
    if kernel is not None:
        g = torch.full(x.shape, float("nan"), dtype=torch.float32, device=x.device)
        kernel(g)
        out["kernel"] = float((g.double() - ref).norm() / ref.norm())
    x.grad = None
    del z, ref
    return out


def _elementwise_case(dev: Device, name: str, n: int, repeat: int):
    import torch
    import torch.nn.functional as F

    import fusedloss as fl
    import fusedloss.torch as flt

    g = torch.Generator(device=dev.tdev).manual_seed(0)
    p = torch.randn(n, generator=g, device=dev.tdev).requires_grad_(True)
    if name == "mse":
        y = torch.randn(n, generator=g, device=dev.tdev)
        theirs, ours, loss = F.mse_loss, flt.mse_loss, fl.mse
    else:
        y = (torch.rand(n, generator=g, device=dev.tdev) > 0.5).float()
        theirs, ours = F.binary_cross_entropy_with_logits, flt.binary_cross_entropy_with_logits
        loss = fl.binary_cross_entropy_with_logits

    def step(fn, **kw):
        def run():
            p.grad = None
            fn(p, y, **kw).backward()
        return run

    label = f"{name} {n}"
    rows = {"torch": dev.time(step(theirs), repeat)}
    dev.profile(step(theirs), f"{label} torch")
    if not dev.tiny:
        rows["fused"] = dev.time(step(ours, backend="cuda"), repeat)
        dev.profile(step(ours, backend="cuda"), f"{label} fused")
    dp, dy = dev.numba_view(p), dev.numba_view(y)
    from numba import cuda

    grad = cuda.device_array(n, np.float32)
    call = lambda: loss.value_and_grad(dp, dy, grad_out=grad, backend="cuda")  # noqa: E731
    rows["kernel"] = dev.time(call, repeat)
    dev.profile(call, f"{label} kernel")
    if name != "mse":
        metrics = ("accuracy", "brier", "roc256", "ece15")
        rows["metrics"] = dev.time(lambda: loss.value_and_grad(dp, dy, grad_out=grad, backend="cuda",
                                                               metrics=metrics), repeat)
    errors = {}
    if not dev.tiny:
        errors = _errors(p, lambda z: theirs(z, y.double()),
                         {"torch": step(theirs), "fused": step(ours, backend="cuda")},
                         lambda g: loss.value_and_grad(dp, dy, grad_out=dev.numba_view(g), backend="cuda"))
    return rows, errors, 3 * n * 4, n, None


def main(argv=None) -> list[dict]:
    args = _args(argv)
    import torch

    dev = Device(args.tiny, open(args.profile, "w", encoding="utf-8") if args.profile else None)
    repeat = args.repeat or (2 if args.tiny else 20)
    copy_bw = dev.copy_bandwidth(repeat)
    print(f"device: {dev.name}; copy bandwidth {copy_bw / 1e9:.0f} GB/s (1 GiB device-to-device, read + write)")
    shapes = TINY_CE_SHAPES if args.tiny else CE_SHAPES
    n = TINY_N if args.tiny else ELEMENTWISE_N
    cases = [("cross_entropy", dt, (R, C)) for R, C in shapes for dt in (torch.float32, torch.bfloat16)]
    cases += [(name, torch.float32, (n,)) for name in ("mse", "binary_cross_entropy_with_logits")]
    print(f"{'case':<48} {'impl':<7} {'median ms':>10} {'GB/s':>8} {'of copy':>8} {'grad err':>9}")
    out = []
    failed = []
    for name, dtype, shape in cases:
        label = f"{name} {'x'.join(map(str, shape))} {str(dtype).rsplit('.', 1)[-1]}"
        try:
            if name == "cross_entropy":
                times, errors, nbytes, numel, classes = _ce_case(dev, *shape, dtype, repeat)
            else:
                times, errors, nbytes, numel, classes = _elementwise_case(dev, name, shape[0], repeat)
        except Exception as exc:  # report the case and go on: one broken case must not hide the others
            failed.append(label)
            print(f"{label:<48} FAILED: {type(exc).__name__}: {exc}"[:400], flush=True)
            if not dev.tiny:
                torch.cuda.empty_cache()
            continue
        for impl, t in times.items():
            gbs = nbytes / t
            err = f"{errors[impl]:>9.1e}" if impl in errors else f"{'':>9}"
            print(f"{label:<48} {impl:<7} {t * 1e3:>10.3f} {gbs / 1e9:>8.1f} {gbs / copy_bw:>8.2f} {err}",
                  flush=True)
        if "fused" in times:
            row = {"loss": name, "dtype": str(dtype).rsplit(".", 1)[-1], "options": [], "numel": [numel, numel],
                   "fused_s": times["fused"], "torch_s": times["torch"], "device": dev.name,
                   "command": "benchmarks/gpu_bench.py"}
            if classes is not None:
                row["classes"] = [classes, classes]
            row["grad_rel_err"] = errors
            out.append(row)
        elif args.tiny:
            out.append({"loss": name, "times": times})
        del times
        if not dev.tiny:
            torch.cuda.empty_cache()
    if args.row_elems:
        values = args.row_elems.split(",")
        print(f"\ncross_entropy kernel alone (float32, device time per launch, ms; in brackets the fraction of copy "
              f"bandwidth counting its own traffic: two reads of the logits, one write) by ROW_ELEMS: {values}")
        for R, C in shapes:
            try:
                per = _row_elems_case(dev, R, C, values, repeat)
            except Exception as exc:
                failed.append(f"row-elems {R}x{C}")
                print(f"  {R}x{C} FAILED: {type(exc).__name__}: {exc}"[:400], flush=True)
                continue
            nbytes = 3 * R * C * 4 + R * 8
            print(f"  {R:>6}x{C:<7}" + "".join(f"  e={e}: {t * 1e3:.3f} ({nbytes / t / copy_bw:.2f})"
                                               for e, t in per.items()), flush=True)
            if not dev.tiny:
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"schema": 1, "cases": [r for r in out if "fused_s" in r]}, f, indent=1)
    if failed:
        sys.exit(f"gpu_bench: {len(failed)} case(s) failed: {', '.join(failed)}")
    return out


if __name__ == "__main__":
    main()
