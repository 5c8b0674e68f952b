"""The ``fusedloss`` command (also ``python -m fusedloss``).

``fusedloss info``   the backend table (available or why not, version, threads, build flags) and versions.
``fusedloss bench``  time value_and_grad on every available backend against the peers; see ``--help``.

Exit status of ``bench``: 0 on success; 1 when one of our backends failed its correctness check or, with
``--compare``, a case got slower than ``--max-slowdown`` allows; 2 for a usage error (including a
``--compare`` that found no case in common with the baseline).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import textwrap
import time

from . import _bench, _config
from ._cli_options import UsageError, plan_bench, plan_torch_module, split as _split
from ._load import BusyLoad


# --- formatting --------------------------------------------------------------------------------------


def _fmt_time(s):
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def _fmt(x, spec, suffix=""):
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _fmt_ratio(x, unreliable=False):
    """3 significant digits and an x; a trailing ? when the ratio is not to be trusted (see format_rows)."""
    if x is None:
        return "-"
    text = f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"
    return text + ("?" if unreliable else "")


def _table(header, lines, align=None):
    body = [line for line in lines if line is not None]  # None: a blank separator line
    widths = [max([len(str(h))] + [len(str(line[i])) for line in body]) for i, h in enumerate(header)]
    align = align or ["<"] * len(header)

    def fmt(cells):
        return "  ".join(f"{str(c):{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) if line is not None else "" for line in lines]
    return "\n".join(out)


def format_rows(rows):
    """The result table: one line per contestant, a blank line between cases."""
    peers = [p for p in _bench.PEERS if any(f"speedup_vs_{p}" in r for r in rows)]
    header = ["loss", "backend", "dtype", "n", "thr", "median", "p20", "p80", "GB/s", "of bw",
              *[f"vs {p}" for p in peers], "check"]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", ">", ">", *[">"] * len(peers), "<"]
    lines, last = [], None
    for r in rows:
        key = _bench.case_key(r)
        if last is not None and key != last:
            lines.append(None)
        last = key
        lines.append([
            r["loss"], r["backend"], r["dtype"], r["size"], r["threads"], _fmt_time(r["median_s"]),
            _fmt_time(r["p20_s"]), _fmt_time(r["p80_s"]), _fmt(r["gbps"], ".1f"),
            _fmt(None if r["frac_triad"] is None else 100 * r["frac_triad"], ".0f", "%"),
            *[_fmt_ratio(r.get(f"speedup_vs_{p}"), bool(r.get(f"unreliable_vs_{p}"))) for p in peers],
            r["check"] + (f" ({r['note']})" if r.get("note") and r["check"] == "ok" else ""),
        ])
    return _table(header, lines, align)


def _fmt_duration(s):
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _case_weight(case, backends, peers, repeat=7):
    """A rough cost of a case in seconds, for the ETA: each contestant takes ``repeat`` samples of at least
    2 ms or one call (moving the case's bytes at about 2 GB/s), plus the float64 reference."""
    nbytes = _bench.minimal_bytes(case)
    return (len(backends) + len(peers)) * repeat * max(2e-3, nbytes / 2e9) + nbytes / 5e8


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (or when forced), with an
    estimate of the time left: the time spent so far, scaled by the estimated cost of the cases left over
    that of the cases done (``weights``, one per case; equal weights when not given)."""

    def __init__(self, total, enabled, weights=None):
        self.total = total
        self.enabled = enabled
        self.weights = list(weights) if weights is not None else [1.0] * total
        self.started = time.perf_counter()
        self.cases_started = None

    def eta(self, done, now=None):
        """Seconds left after ``done`` cases, or None before the first case ends."""
        if self.cases_started is None or done <= 0:
            return None
        spent = (now if now is not None else time.perf_counter()) - self.cases_started
        done_w = sum(self.weights[:done])
        left_w = sum(self.weights[done:])
        return spent * left_w / done_w if done_w > 0 else None

    def update(self, done, label, step=""):
        if self.cases_started is None and label and not label.startswith("measuring"):
            self.cases_started = time.perf_counter()
        if not self.enabled:
            return
        width = 20
        filled = int(width * done / max(self.total, 1))
        eta = self.eta(done)
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{_fmt_duration(time.perf_counter() - self.started)} "
                f"ETA {'?' if eta is None else _fmt_duration(eta)}  {label}  {step}")
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        sys.stderr.write("\r" + text[:cols].ljust(cols))
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            cols = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r" + " " * cols + "\r")
            sys.stderr.flush()


# --- info --------------------------------------------------------------------------------------------


def _dist_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


INFO_WIDTH = 100  # `fusedloss info` fits a 100-column terminal


def _wrap(text, indent="    "):
    return "\n".join(textwrap.wrap(text, INFO_WIDTH, subsequent_indent=indent, break_on_hyphens=False))


def _backend_table(rows):
    """One short line per backend, then what each one is built with (or why it is unavailable), wrapped."""
    lines = [[r["name"], "yes" if r["available"] else "no", r["priority"], "device" if r["device"] else "host",
              r.get("version", "-"), r.get("threads", "-")] for r in rows]
    out = [_table(["backend", "available", "priority", "arrays", "version", "threads"], lines), ""]
    for r in rows:
        extra = {k: v for k, v in r.items()
                 if k not in ("name", "available", "priority", "device", "version", "threads", "build", "reason")}
        if r["available"]:
            detail = r.get("build", "") + "".join(f"; {k}={v}" for k, v in extra.items())
            out.append(_wrap(f"{r['name']}: {detail.lstrip('; ') or '-'}"))
        else:
            out.append(_wrap(f"{r['name']}: unavailable: {r.get('reason', '?')}"))
    return "\n".join(out)


def cmd_info(args):
    import numpy as np

    from . import __version__, _dispatch
    from ._spec import REGISTRY
    from .backends import backends

    rows = backends()
    if args.json:
        machine = _bench.machine_info()
        print(json.dumps({"fusedloss": __version__, "threads": _config.get_num_threads(),
                          "backend": _config.get_backend(), "machine": machine, "backends": rows},
                         indent=1, default=str))
        return 0
    try:
        auto = _dispatch.resolve_host_backend(None, REGISTRY["mse"], np.dtype(np.float32)).NAME
    except Exception as exc:
        auto = f"none ({exc})"
    machine = _bench.machine_info()
    print(f"fusedloss {__version__}  python {machine['versions']['python']}  numpy {np.__version__}  "
          f"numba {_dist_version('numba') or 'not installed'}")
    print(_wrap(f"cpu: {machine['cpu']} ({machine['machine']}, {machine['cores']} cores usable, "
                f"SIMD: {' '.join(machine['simd']) or '-'}), memory {machine['memory_gib']} GiB"))
    env_threads = os.environ.get("FUSEDLOSS_NUM_THREADS")
    print(f"threads: {_config.get_num_threads()}"
          + (f" (FUSEDLOSS_NUM_THREADS={env_threads})" if env_threads else " (default: all usable cores)"))
    print(f"backend: {_config.get_backend()} (host arrays, mse float32 -> {auto})")
    print()
    print(_backend_table(rows))
    print()
    peers = {"torch": _dist_version("torch"), "jax": _dist_version("jax"),
             "scikit-learn": _dist_version("scikit-learn"), "matplotlib": _dist_version("matplotlib")}
    print(_wrap("bench peers: numpy " + np.__version__ + ", "
          + ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in peers.items() if k != "matplotlib")))
    print(f"plots (--plot): matplotlib {peers['matplotlib'] or 'not installed'}")
    return 0


# --- bench -------------------------------------------------------------------------------------------


def _write_csv(rows, path):
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _plot(rows, path):
    from ._bench_plot import plot

    plot(rows, path, _bench.PEERS)


def _print_comparison(cmp, path, max_slowdown):
    print()
    print(f"regression guard vs {path}: ratio = backend / NumPy peer (fastest samples, same run and clock); "
          f"slowdown = ratio now / ratio in the baseline, allowed <= {max_slowdown:g}")
    lines = [[c["loss"], c["backend"], c["dtype"], c["size"], c["threads"], f"{c['ratio_baseline']:.4f}",
              f"{c['ratio_now']:.4f}", f"{c['slowdown']:.2f}", "ok" if c["ok"] else "SLOWER"] for c in cmp.lines]
    print(_table(["loss", "backend", "dtype", "n", "thr", "ratio base", "ratio now", "slowdown", ""], lines,
                 ["<", "<", "<", ">", ">", ">", ">", ">", "<"]))
    if cmp.missing:
        print("in the baseline but not measured now: "
              + "; ".join(f"{m['loss']} {m['backend']} {m['dtype']} {m['size']} t={m['threads']}"
                          for m in cmp.missing[:10]) + (" ..." if len(cmp.missing) > 10 else ""))


def _bench_torch_module(args):
    """--torch-module: forward + backward of torch.nn.<Loss> vs fusedloss.torch.<Loss> on the same tensors."""
    try:
        from . import torch as flt
    except ImportError as exc:
        raise UsageError(f"--torch-module needs PyTorch (pip install 'fusedloss[torch]'): {exc}") from None
    plan = plan_torch_module(args, flt.QUICK_TORCH_MODULE_CASES, flt.TORCH_MODULE_CASES)
    rows = []
    for dtype in plan.dtypes:
        for threads in plan.threads or [None]:
            rows += flt.bench_torch_module(
                plan.cases, dtype, repeat=plan.repeat, warmup=plan.warmup, threads=threads, backend=plan.backend,
                min_sample_s=plan.sample_time_ms / 1e3, budget_s=plan.budget_s)
    header = ("loss", "module", "contestant", "backend", "dtype", "size", "threads", "median", "p20", "p80",
              "check", "vs torch")
    lines = [(r["loss"], r["module"], r["contestant"], r["backend"], r["dtype"], r["size"], r["threads"],
              _fmt_time(r["median_s"]), _fmt_time(r["p20_s"]), _fmt_time(r["p80_s"]), r["check"],
              _fmt_ratio(r.get("speedup_vs_torch"))) for r in rows]
    print(_table(header, lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "torch-module", "rows": rows}, fh, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.csv:
        _write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0 if all(r["check"] == "ok" for r in rows) else 1


def cmd_bench(args):
    if getattr(args, "torch_module", False):
        return _bench_torch_module(args)
    if "ctc" in _split(args.loss):  # its own signature and cases: _bench_ctc
        from ._bench_ctc import cmd_bench_ctc

        return cmd_bench_ctc(args, UsageError, _split)
    plan = plan_bench(args)  # every option checked: nothing below fails on the command line
    cases, threads, backends, peers = plan.cases, plan.threads, plan.backends, plan.peers
    repeat, warmup, budget, baseline = plan.repeat, plan.warmup, plan.budget_s, plan.baseline
    for note in plan.notes:
        print(f"note: {note}")

    allocator = _bench.steady_allocator()
    load_before = _bench.load_average()
    show = {"auto": sys.stderr.isatty(), "always": True, "never": False}[args.progress]
    progress = Progress(len(cases), show, weights=[_case_weight(c, backends, peers, repeat) for c in cases])
    triads = {}
    for t in threads:
        if args.triad:
            triads[t] = {"gbps": args.triad, "method": "given (--triad)", "threads": t}
        else:
            progress.update(0, f"measuring the triad bandwidth ({t} threads)")
            triads[t] = _bench.triad(t, refresh=args.refresh_triad)
    opts = _bench.RunOptions(backends=backends, peers=peers, repeat=repeat, warmup=warmup, budget_s=budget,
                             min_sample_s=plan.sample_time_ms / 1e3, clock=args.clock,
                             force_numpy_backend="numpy" in _split(args.backend),
                             triad_gbps={t: v["gbps"] for t, v in triads.items()})
    started = time.perf_counter()
    rows = []
    try:
        with BusyLoad(args.busy or 0):
            for i, case in enumerate(cases):
                progress.update(i, case.label())
                case_rows = _bench.run_case(case, opts,
                                            lambda step, i=i, case=case: progress.update(i, case.label(), step))
                load = _bench.load_average()
                for r in case_rows:
                    r["load_avg"] = load
                rows += case_rows
    finally:
        progress.close()
    elapsed = time.perf_counter() - started
    if args.busy:
        print(f"load: {args.busy} busy process(es) ran beside every timing (--busy)")

    for t, v in triads.items():
        how = v.get("method", "")
        cached = " (cached)" if v.get("cached") else ""
        print(f"memory bandwidth (STREAM triad), {t} thread{'s' if t > 1 else ''}: {v['gbps']:.1f} GB/s "
              f"[{how}{cached}]")
    if load_before is not None and load_before > 0.5 * _config.default_num_threads():
        print(f"note: load average {load_before:.1f} on {_config.default_num_threads()} cores when this run "
              "started: other processes compete for the CPU, so timings are noisy (ratios less so)")
    if args.clock == "cpu":
        print("clock: CPU time of this process (--clock cpu), not wall time")
    unreliable = _bench.mark_unreliable_ratios(rows, _config.default_num_threads(), busy=args.busy or 0)
    print("timed: value_and_grad (reduction='mean') with grad_out reused; GB/s counts each input read once and "
          "the gradient written once; 'of bw' = GB/s / the memory bandwidth (measured with a STREAM triad); "
          "'vs X' = X's median / this row's median (above 1: this row is faster)")
    print()
    print(format_rows(rows))
    if unreliable:
        print(f"\n?: ratio unreliable, {unreliable}")
    print(f"\n{len(cases)} case(s) in {elapsed:.1f} s; backends: {', '.join(backends) or 'none'}; "
          f"peers: {', '.join(peers) or 'none'}")

    settings = {"argv": sys.argv[1:], "quick": args.quick, "threads": threads, "clock": args.clock,
                "repeat": repeat, "warmup": warmup, "min_sample_s": opts.min_sample_s, "budget_s": budget,
                "allocator": allocator, "load_avg_before": load_before,
                "timed": "value_and_grad, reduction=mean, grad_out reused"}
    if args.json or args.csv:
        machine = _bench.machine_info({str(t): v for t, v in triads.items()}, note=args.note or "")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(_bench.results_document(rows, machine, settings), f, indent=1, default=str)
                f.write("\n")
            print(f"wrote {args.json}")
        if args.csv:
            _write_csv(rows, args.csv)
            print(f"wrote {args.csv}")
    if args.plot:
        _plot(rows, args.plot)
        print(f"wrote {args.plot}")

    status = 0
    failed = [r for r in rows if r["role"] == "backend" and r["check"] != "ok" and not r["check"].startswith("skipped")]
    if failed:
        print("\nFAILED correctness check: " + "; ".join(
            f"{r['loss']} {r['backend']} {r['dtype']} {r['size']}: {r['check']}" for r in failed))
        status = 1
    if baseline is not None:
        cmp = _bench.compare(rows, baseline["rows"], plan.max_slowdown)
        _print_comparison(cmp, args.compare, plan.max_slowdown)
        if not cmp.lines:
            print("no case of this run is in the baseline: nothing compared")
            return 2
        if cmp.failures:
            print(f"\nREGRESSION: {len(cmp.failures)} case(s) slower than {plan.max_slowdown:g}x the baseline ratio: "
                  + "; ".join(f"{c['loss']} {c['backend']} {c['dtype']} {c['size']} t={c['threads']} "
                              f"({c['slowdown']:.2f}x)" for c in cmp.failures))
            status = 1
        else:
            print(f"guard passed: {len(cmp.lines)} case(s), worst slowdown "
                  f"{max(c['slowdown'] for c in cmp.lines):.2f} (allowed {plan.max_slowdown:g})")
    return status


# --- entry point -------------------------------------------------------------------------------------


def build_parser():
    from . import __version__

    p = argparse.ArgumentParser(prog="fusedloss", description="fused loss + gradient kernels: info and benchmarks")
    p.add_argument("--version", action="version", version=f"fusedloss {__version__}")
    sub = p.add_subparsers(dest="command")

    info = sub.add_parser("info", help="backends (available or why not, version, threads, build flags), versions")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    info.set_defaults(func=cmd_info)

    b = sub.add_parser(
        "bench", help="time value_and_grad on every available backend against NumPy, PyTorch, JAX, scikit-learn",
        description="Time loss.value_and_grad(pred, target, grad_out=g) (g reused) on each backend and each "
                    "installed peer, after warm-up and a correctness check against the float64 reference. "
                    "Lists take repeated options or commas: --loss mse,huber --loss log_cosh. Every option is "
                    "checked before anything runs; a bad one exits with status 2 and says what is expected.",
        epilog="Sizes follow the kind of loss: elementwise losses take N (1e6), multiclass losses ROWSxCLASSES "
               "(4096x1000). Each --size must fit a loss of the run. With --loss, each named loss needs a size of "
               "its form (--loss cross_entropy --size 1e6 is an error); without --loss, only the losses of the "
               "forms given run (--size 1e6: the elementwise losses). Exit status: 0 success; 1 a failed "
               "correctness check or, with --compare, a regression; 2 a usage error.")
    b.add_argument("--quick", action="store_true",
                   help="a short run: mse, huber, log_cosh, binary_cross_entropy_with_logits at 1e3 and 1e7 and "
                        "cross_entropy at 256x32000 (those registered), float32, every available backend and "
                        "installed peer, 5 repeats")
    b.add_argument("--loss", action="append", help="losses (default: every registered loss with a gradient)")
    b.add_argument("--backend", action="append", help="our backends: cpp, numba, numpy (default: all available)")
    b.add_argument("--peer", action="append", help="peers: numpy, torch, jax, sklearn (default: all installed)")
    b.add_argument("--no-peers", action="store_true", help="time our backends only")
    b.add_argument("--torch-module", action="store_true",
                   help="PyTorch module mode: forward + backward of torch.nn.CrossEntropyLoss / MSELoss against "
                        "fusedloss.torch's on the same tensors (cross_entropy 8192x32000 and 65536x1000, mse 1e7; "
                        "--quick: 1024x1000 and 1e5)")
    b.add_argument("--dtype", action="append", help="float32 and/or float64 (default float32)")
    b.add_argument("--size", action="append",
                   help="N for elementwise losses (1e3, 1e7, ...), ROWSxCLASSES for multiclass ones (see below; "
                        "default: 1e3, 1e5, 1e7; cross_entropy 65536x1000, 8192x32000); with --torch-module: "
                        "ROWSxCLASSES times CrossEntropyLoss, N times MSELoss")
    b.add_argument("--threads", action="append",
                   help="thread counts, whole numbers >= 1 (default: fusedloss's, i.e. FUSEDLOSS_NUM_THREADS or all "
                        "cores)")
    b.add_argument("--repeat", type=int, help="timed samples per contestant, >= 1 (default 7, --quick 5)")
    b.add_argument("--warmup", type=int, help="untimed calls before timing, >= 0 (default 2, --quick 1)")
    b.add_argument("--max-time", type=float,
                   help="seconds of samples per contestant and case after which it stops at 3 samples "
                        "(default 2, --quick 0.5)")
    b.add_argument("--sample-time", type=float, metavar="MS",
                   help="a sample repeats a call until it lasts about this long (default 2 ms)")
    b.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default), or this process's CPU time: steadier on a shared machine, for "
                        "single-threaded runs (--threads 1) such as the regression guard")
    b.add_argument("--triad", type=float, metavar="GBPS",
                   help="this machine's memory bandwidth in GB/s instead of measuring a triad")
    b.add_argument("--refresh-triad", action="store_true", help="measure the triad again (ignore the cache)")
    b.add_argument("--busy", type=int, metavar="N",
                   help="run N busy-looping processes beside the timings (a competing load, as on a shared "
                        "machine; e.g. one per core)")
    b.add_argument("--json", metavar="FILE", help="write rows + machine info (the --compare baseline format)")
    b.add_argument("--csv", metavar="FILE", help="write the rows as CSV (also with --torch-module)")
    b.add_argument("--plot", metavar="FILE.png",
                   help="plot GB/s against size, one panel per loss family, log axes (needs matplotlib; not with "
                        "--torch-module)")
    b.add_argument("--compare", metavar="BASELINE.json",
                   help="regression guard: fail when (backend / NumPy peer) grew by more than --max-slowdown "
                        "relative to the baseline's ratio")
    b.add_argument("--max-slowdown", type=float, help="with --compare: allowed ratio growth, > 1 (default 1.25)")
    b.add_argument("--note", help="free text stored in the JSON's machine info")
    b.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error (status 2, message printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"fusedloss {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
