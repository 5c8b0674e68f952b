"""``fusedloss bench``: the run behind the command line, once ``plan`` has checked every option.

Exit status: 0 on success; 1 when one of our backends failed its correctness check or, with ``--compare``, a
case got slower than ``--max-slowdown`` allows; 2 for a usage error (``UsageError``, raised before any work,
including a ``--compare`` that found no case in common with the baseline).
"""

from __future__ import annotations

import json
import sys
import time

from .. import _config
from .._load import BusyLoad
from . import guard, machine, runner
from .cases import case_key
from .plan import UsageError, plan_bench, plan_torch_module, split
from .oracle import REFERENCE_BACKEND
from .peers import PEERS
from .progress import Progress, case_weight
from .report import fmt_ratio, fmt_time, format_rows, results_document, table, write_csv


def _plot(rows, path):
    from .plot import plot  # imports matplotlib

    plot(rows, path, PEERS)


def _show_progress(args) -> bool:
    return {"auto": sys.stderr.isatty(), "always": True, "never": False}[args.progress]


def _bench_torch_module(args):
    """--torch-module: forward + backward of torch.nn.<Loss> vs fusedloss.torch.<Loss> on the same tensors."""
    try:
        from .. import torch as flt
    except ImportError as exc:
        raise UsageError(f"--torch-module needs PyTorch (pip install 'fusedloss[torch]'): {exc}") from None
    plan = plan_torch_module(args, flt.QUICK_TORCH_MODULE_CASES, flt.TORCH_MODULE_CASES)
    runs = [(dtype, threads) for dtype in plan.dtypes for threads in plan.threads or [None]]
    progress = Progress(len(runs) * len(plan.cases), _show_progress(args))
    rows = []
    try:
        for k, (dtype, threads) in enumerate(runs):
            def update(i, label, step, first=k * len(plan.cases), threads=threads):
                progress.update(first + i, f"{label}{'' if threads is None else f' t={threads}'}", step)

            rows += flt.bench_torch_module(
                plan.cases, dtype, repeat=plan.repeat, warmup=plan.warmup, threads=threads, backend=plan.backend,
                min_sample_s=plan.sample_time_ms / 1e3, budget_s=plan.budget_s, progress=update)
    finally:
        progress.close()
    header = ("loss", "module", "contestant", "backend", "dtype", "size", "threads", "median", "p20", "p80",
              "check", "vs torch")
    lines = [(r["loss"], r["module"], r["contestant"], r["backend"], r["dtype"], r["size"], r["threads"],
              fmt_time(r["median_s"]), fmt_time(r["p20_s"]), fmt_time(r["p80_s"]), r["check"],
              fmt_ratio(r.get("speedup_vs_torch"))) for r in rows]
    print(table(header, lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "torch-module", "rows": rows}, fh, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0 if all(r["check"] == "ok" for r in rows) else 1


def bench_command(args) -> int:
    """Run ``fusedloss bench`` with the parsed ``args``; returns the exit status (module docstring)."""
    if getattr(args, "torch_module", False):
        return _bench_torch_module(args)
    if "ctc" in split(args.loss):  # its own signature and cases: bench.ctc
        from .ctc import cmd_bench_ctc

        return cmd_bench_ctc(args)
    from .pairwise import LOSSES as PAIRWISE, cmd_bench_pairwise

    if set(split(args.loss)) & set(PAIRWISE):  # two or three arrays per call: their own cases, bench.pairwise
        return cmd_bench_pairwise(args)
    from .overlap import LOSSES as OVERLAP, cmd_bench_overlap

    if set(split(args.loss)) & set(OVERLAP):  # scores with a class axis, a ratio of sums: their own cases
        return cmd_bench_overlap(args)
    plan = plan_bench(args)  # every option checked: nothing below fails on the command line
    cases, threads, backends, peers = plan.cases, plan.threads, plan.backends, plan.peers
    repeat, warmup, budget, baseline = plan.repeat, plan.warmup, plan.budget_s, plan.baseline
    for note in plan.notes:
        print(f"note: {note}")

    allocator = machine.steady_allocator()
    load_before = machine.load_average()
    show = _show_progress(args)
    progress = Progress(len(cases), show, weights=[case_weight(c, backends, peers, repeat) for c in cases])
    triads = {}
    for t in threads:
        if args.triad:
            triads[t] = {"gbps": args.triad, "method": "given (--triad)", "threads": t}
        else:
            progress.update(0, f"measuring the triad bandwidth ({t} threads)")
            triads[t] = machine.triad(t, refresh=args.refresh_triad)
    opts = runner.RunOptions(backends=backends, peers=peers, repeat=repeat, warmup=warmup, budget_s=budget,
                             min_sample_s=plan.sample_time_ms / 1e3, clock=args.clock,
                             force_numpy_backend=REFERENCE_BACKEND in split(args.backend),
                             triad_gbps={t: v["gbps"] for t, v in triads.items()})
    started = time.perf_counter()
    rows = []
    case_of = {}  # case key -> the case, for the guard's re-measurements
    try:
        with BusyLoad(args.busy or 0):
            for i, case in enumerate(cases):
                progress.update(i, case.label())
                case_rows = runner.run_case(case, opts,
                                            lambda step, i=i, case=case: progress.update(i, case.label(), step))
                load = machine.load_average()
                for r in case_rows:
                    r["load_avg"] = load
                rows += case_rows
                case_of.update((case_key(r), case) for r in case_rows)
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
    unreliable = runner.mark_unreliable_ratios(rows, _config.default_num_threads(), busy=args.busy or 0)
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
        where = machine.machine_info({str(t): v for t, v in triads.items()}, note=args.note or "")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results_document(rows, where, settings), f, indent=1, default=str)
                f.write("\n")
            print(f"wrote {args.json}")
        if args.csv:
            write_csv(rows, args.csv)
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
        def remeasure(keys):
            with BusyLoad(args.busy or 0):
                return [r for k in keys for r in runner.run_case(case_of[k], opts)]

        verdict = guard.check_against(rows, baseline["rows"], args.compare, plan.max_slowdown, remeasure)
        if verdict == 2:
            return 2
        status = max(status, verdict)
    return status
