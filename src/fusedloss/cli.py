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
import time

from . import _bench, _bench_custom, _config
from ._load import BusyLoad


class UsageError(Exception):
    pass


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
    header = ["loss", "backend", "dtype", "n", "thr", "median", "p20", "p80", "GB/s", "triad",
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
            *[_fmt(r.get(f"speedup_vs_{p}"), ".2f", "x") for p in peers],
            r["check"] + (f" ({r['note']})" if r.get("note") and r["check"] == "ok" else ""),
        ])
    return _table(header, lines, align)


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (or when forced)."""

    def __init__(self, total, enabled):
        self.total = total
        self.enabled = enabled
        self.started = time.perf_counter()

    def update(self, done, label, step=""):
        if not self.enabled:
            return
        width = 20
        filled = int(width * done / max(self.total, 1))
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{time.perf_counter() - self.started:5.1f}s  {label}  {step}")
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
    print(f"cpu: {machine['cpu']} ({machine['machine']}, {machine['cores']} cores usable, "
          f"SIMD: {' '.join(machine['simd']) or '-'}), memory {machine['memory_gib']} GiB")
    env_threads = os.environ.get("FUSEDLOSS_NUM_THREADS")
    print(f"threads: {_config.get_num_threads()}"
          + (f" (FUSEDLOSS_NUM_THREADS={env_threads})" if env_threads else " (default: all usable cores)"))
    print(f"backend: {_config.get_backend()} (host arrays, mse float32 -> {auto})")
    print()
    lines = []
    for r in rows:
        extra = {k: v for k, v in r.items()
                 if k not in ("name", "available", "priority", "device", "version", "threads", "build", "reason")}
        build = r.get("build", "")
        if extra:
            build = (build + "  " if build else "") + " ".join(f"{k}={v}" for k, v in extra.items())
        lines.append([r["name"], "yes" if r["available"] else "no", r["priority"], "device" if r["device"] else "host",
                      r.get("version", "-"), r.get("threads", "-"),
                      build if r["available"] else r.get("reason", "")])
    print(_table(["backend", "available", "priority", "arrays", "version", "threads", "build flags / why not"],
                 lines))
    print()
    peers = {"torch": _dist_version("torch"), "jax": _dist_version("jax"),
             "scikit-learn": _dist_version("scikit-learn"), "matplotlib": _dist_version("matplotlib")}
    print("bench peers: numpy " + np.__version__ + ", "
          + ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in peers.items() if k != "matplotlib"))
    print(f"plots (--plot): matplotlib {peers['matplotlib'] or 'not installed'}")
    return 0


# --- bench -------------------------------------------------------------------------------------------


def _split(values):
    out = []
    for v in values or ():
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _select_defs(names, quick):
    from ._spec import REGISTRY

    if not names:
        defs = _bench.registered_case_defs(quick)
        if not defs:
            raise UsageError("no registered loss has a benchmark case")
        return defs
    defs = []
    for name in names:
        _bench_custom.ensure(name)  # custom_huber, custom_log_cosh: defined on request
        if name not in REGISTRY:
            if name in _bench.CASE_DEFS:
                raise UsageError(f"loss {name!r} has a benchmark case but is not registered in this build")
            raise UsageError(f"unknown loss {name!r}; registered: {', '.join(REGISTRY)}")
        if not REGISTRY[name].differentiable:
            raise UsageError(f"loss {name!r} has no gradient to benchmark")
        d = _bench.case_def(name)
        if d is None:
            raise UsageError(f"loss {name!r} has its own signature; benchmark it with benchmarks/{name}.py")
        defs.append(d)
    return defs


def _select_backends(names):
    table = {b["name"]: b for b in _bench.host_backends()}
    if not names:
        return [n for n, b in table.items() if b["available"]]
    for n in names:
        if n not in table:
            raise UsageError(f"unknown host backend {n!r}; choose from {', '.join(table)}")
        if not table[n]["available"]:
            raise UsageError(f"backend {n!r} is not available: {table[n].get('reason', '?')}")
    return names


def _select_peers(args):
    if args.no_peers:
        if args.peer:
            raise UsageError("--no-peers and --peer contradict each other")
        return []
    names = _split(args.peer)
    for n in names:
        if n not in _bench.PEERS:
            raise UsageError(f"unknown peer {n!r}; choose from {', '.join(_bench.PEERS)}")
        ok, why = _bench.peer_status(n)
        if not ok:
            raise UsageError(f"peer {n!r} is not installed: {why}")
    if names:
        return names
    return [p for p in _bench.PEERS if _bench.peer_status(p)[0]]


def _write_csv(rows, path):
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(r["loss"] for r in rows))
    threads = sorted({r["threads"] for r in rows})
    order = ["cpp", "numba", "numpy", "cuda"] + [f"peer:{p}" for p in _bench.PEERS]
    names = sorted({r["backend"] for r in rows}, key=lambda b: order.index(b) if b in order else len(order))
    colour = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(names)}
    styles = {"float32": "-", "float64": "--"}
    fig, axes = plt.subplots(1, len(losses), figsize=(4.6 * len(losses), 4.2), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        sub = [r for r in rows if r["loss"] == loss and r["gbps"]]
        groups = dict.fromkeys((r["backend"], r["dtype"], r["threads"]) for r in sub)
        for backend, dtype, t in groups:
            pts = sorted((r["n"], r["gbps"]) for r in sub
                         if (r["backend"], r["dtype"], r["threads"]) == (backend, dtype, t))
            label = f"{backend} {dtype}" + (f" t={t}" if len(threads) > 1 else "")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour[backend],
                    marker="s" if backend.startswith("peer:") else "o", markersize=4,
                    linestyle=styles.get(dtype, ":"), alpha=0.6 if backend.startswith("peer:") else 1.0,
                    label=label)
        for t in threads:
            tg = next((r["triad_gbps"] for r in sub if r["threads"] == t and r.get("triad_gbps")), None)
            if tg:
                ax.axhline(tg, color="grey", linewidth=0.8, linestyle=":")
                ax.annotate(f"triad {tg:.0f} GB/s ({t} thr)", (0.02, tg), xycoords=("axes fraction", "data"),
                            fontsize=7, color="grey", va="bottom")
        ax.set_xscale("log")
        ax.set_title(loss)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (minimal bytes)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7, frameon=False)
    fig.suptitle("fusedloss value_and_grad throughput, higher is better (float64 dashed; peers: squares, faded)",
                 fontsize=10)
    rows_of_legend = math.ceil(len(labels) / 4)
    fig.tight_layout(rect=(0, 0.05 * rows_of_legend, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    cases = flt.QUICK_TORCH_MODULE_CASES if args.quick else flt.TORCH_MODULE_CASES
    if args.size:  # ROWSxCLASSES sizes go to cross_entropy, N sizes to mse
        try:
            shapes = [_bench.parse_size(s) for s in _split(args.size)]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        cases = tuple(("cross_entropy" if len(shape) == 2 else "mse", shape) for shape in shapes)
    backend = (_split(args.backend) or [None])[0]
    rows = []
    for dtype in _split(args.dtype) or ["float32"]:
        for threads in [int(t) for t in _split(args.threads)] or [None]:
            rows += flt.bench_torch_module(
                cases, dtype, repeat=args.repeat or (5 if args.quick else 7),
                warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
                threads=threads, backend=backend)
    header = ("loss", "module", "contestant", "backend", "dtype", "size", "threads", "median", "p20", "p80",
              "check", "vs torch")
    lines = [(r["loss"], r["module"], r["contestant"], r["backend"], r["dtype"], r["size"], r["threads"],
              _fmt_time(r["median_s"]), _fmt_time(r["p20_s"]), _fmt_time(r["p80_s"]), r["check"],
              _fmt(r.get("speedup_vs_torch"), ".2f", "x")) for r in rows]
    print(_table(header, lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "torch-module", "rows": rows}, fh, indent=1, default=str)
    return 0 if all(r["check"] == "ok" for r in rows) else 1


def cmd_bench(args):
    if getattr(args, "torch_module", False):
        return _bench_torch_module(args)
    if "ctc" in _split(args.loss):  # its own signature and cases: _bench_ctc
        from ._bench_ctc import cmd_bench_ctc

        return cmd_bench_ctc(args, UsageError, _split)
    if args.max_slowdown <= 1.0:
        raise UsageError("--max-slowdown must be > 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install matplotlib (or the 'bench' extra: "
                             "pip install 'fusedloss[bench]')") from None
    baseline = None
    if args.compare:
        try:
            baseline = _bench.load_results(args.compare)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--compare: cannot read {args.compare}: {exc}") from None

    defs = _select_defs(_split(args.loss), args.quick)
    dtypes = _split(args.dtype) or ["float32"]
    for d in dtypes:
        if d not in _bench.DTYPES:
            raise UsageError(f"unknown dtype {d!r}; choose from {', '.join(_bench.DTYPES)}")
    try:
        sizes = [_bench.parse_size(s) for s in _split(args.size)]
        threads = [int(t) for t in _split(args.threads)] or [_config.get_num_threads()]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if any(t < 1 for t in threads):
        raise UsageError("--threads: expected positive integers")
    backends = _select_backends(_split(args.backend))
    peers = _select_peers(args)
    if baseline is not None and "numpy" not in peers:
        raise UsageError("--compare measures ratios to the NumPy peer: do not drop it (--no-peers / --peer)")
    cases = _bench.make_cases(defs, dtypes, sizes, threads, quick=args.quick)
    repeat = args.repeat or (5 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    budget = args.max_time or (0.5 if args.quick else 2.0)
    if repeat < 1 or warmup < 0 or not args.sample_time > 0:
        raise UsageError("--repeat must be >= 1, --warmup >= 0 and --sample-time > 0")
    if args.busy is not None and args.busy < 0:
        raise UsageError(f"--busy: expected a number of processes >= 0, got {args.busy}")

    allocator = _bench.steady_allocator()
    load_before = _bench.load_average()
    show = {"auto": sys.stderr.isatty(), "always": True, "never": False}[args.progress]
    progress = Progress(len(cases), show)
    triads = {}
    for t in threads:
        if args.triad:
            triads[t] = {"gbps": args.triad, "method": "given (--triad)", "threads": t}
        else:
            progress.update(0, f"measuring the triad bandwidth ({t} threads)")
            triads[t] = _bench.triad(t, refresh=args.refresh_triad)
    opts = _bench.RunOptions(backends=backends, peers=peers, repeat=repeat, warmup=warmup, budget_s=budget,
                             min_sample_s=args.sample_time / 1e3, clock=args.clock,
                             force_numpy_backend="numpy" in _split(args.backend),
                             triad_gbps={t: v["gbps"] for t, v in triads.items()})
    started = time.perf_counter()
    rows = []
    try:
        with BusyLoad(args.busy or 0):
            for i, case in enumerate(cases):
                progress.update(i, case.label())
                rows += _bench.run_case(case, opts,
                                        lambda step, i=i, case=case: progress.update(i, case.label(), step))
    finally:
        progress.close()
    elapsed = time.perf_counter() - started
    if args.busy:
        print(f"load: {args.busy} busy process(es) ran beside every timing (--busy)")

    for t, v in triads.items():
        how = v.get("method", "")
        cached = " (cached)" if v.get("cached") else ""
        print(f"triad bandwidth, {t} thread{'s' if t > 1 else ''}: {v['gbps']:.1f} GB/s [{how}{cached}]")
    if load_before is not None and load_before > 0.5 * _config.default_num_threads():
        print(f"note: load average {load_before:.1f} on {_config.default_num_threads()} cores when this run "
              "started: other processes compete for the CPU, so timings are noisy (ratios less so)")
    if args.clock == "cpu":
        print("clock: CPU time of this process (--clock cpu), not wall time")
    print("timed: value_and_grad (reduction='mean') with grad_out reused; GB/s counts each input read once and "
          "the gradient written once; 'triad' = GB/s / triad bandwidth; 'vs X' = X's median / this row's median")
    print()
    print(format_rows(rows))
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
        cmp = _bench.compare(rows, baseline["rows"], args.max_slowdown)
        _print_comparison(cmp, args.compare, args.max_slowdown)
        if not cmp.lines:
            print("no case of this run is in the baseline: nothing compared")
            return 2
        if cmp.failures:
            print(f"\nREGRESSION: {len(cmp.failures)} case(s) slower than {args.max_slowdown:g}x the baseline ratio: "
                  + "; ".join(f"{c['loss']} {c['backend']} {c['dtype']} {c['size']} t={c['threads']} "
                              f"({c['slowdown']:.2f}x)" for c in cmp.failures))
            status = 1
        else:
            print(f"guard passed: {len(cmp.lines)} case(s), worst slowdown "
                  f"{max(c['slowdown'] for c in cmp.lines):.2f} (allowed {args.max_slowdown:g})")
    return status


# --- entry point -------------------------------------------------------------------------------------


def build_parser():
    p = argparse.ArgumentParser(prog="fusedloss", description="fused loss + gradient kernels: info and benchmarks")
    sub = p.add_subparsers(dest="command")

    info = sub.add_parser("info", help="backends (available or why not, version, threads, build flags), versions")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    info.set_defaults(func=cmd_info)

    b = sub.add_parser(
        "bench", help="time value_and_grad on every available backend against NumPy, PyTorch, JAX, scikit-learn",
        description="Time loss.value_and_grad(pred, target, grad_out=g) (g reused) on each backend and each "
                    "installed peer, after warm-up and a correctness check against the float64 reference. "
                    "Lists take repeated options or commas: --loss mse,huber --loss log_cosh.")
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
                   help="elements for elementwise losses (1e3, 1e7, ...), ROWSxCLASSES for multiclass ones "
                        "(default: 1e3, 1e5, 1e7; cross_entropy 65536x1000, 8192x32000); with --torch-module: ROWSxCLASSES "
                        "times CrossEntropyLoss, N times MSELoss")
    b.add_argument("--threads", action="append",
                   help="thread counts (default: fusedloss's, i.e. FUSEDLOSS_NUM_THREADS or all cores)")
    b.add_argument("--repeat", type=int, help="timed samples per contestant (default 7, --quick 5)")
    b.add_argument("--warmup", type=int, help="untimed calls before timing (default 2, --quick 1)")
    b.add_argument("--max-time", type=float,
                   help="seconds of samples per contestant and case after which it stops at 3 samples "
                        "(default 2, --quick 0.5)")
    b.add_argument("--sample-time", type=float, default=2.0, metavar="MS",
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
    b.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    b.add_argument("--plot", metavar="FILE.png", help="plot GB/s against size per backend (needs matplotlib)")
    b.add_argument("--compare", metavar="BASELINE.json",
                   help="regression guard: fail when (backend / NumPy peer) grew by more than --max-slowdown "
                        "relative to the baseline's ratio")
    b.add_argument("--max-slowdown", type=float, default=1.25, help="allowed ratio growth (default 1.25)")
    b.add_argument("--note", help="free text stored in the JSON's machine info")
    b.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
