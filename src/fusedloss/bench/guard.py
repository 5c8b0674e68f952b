"""The regression guard (``--compare`` / ``--max-slowdown``): ratios to the NumPy peer measured in one run,
compared with the same ratios in a baseline file. Absolute times are never compared."""

from __future__ import annotations

from dataclasses import dataclass

from .cases import case_key
from .report import table


GUARD_STAT = "min_s"


def numpy_ratios(rows: list[dict], stat: str = GUARD_STAT) -> dict:
    """(case key, backend) -> our time / the NumPy peer's time in the same run, by ``stat`` (a row field)."""
    peer = {case_key(r): r.get(stat) for r in rows if r["backend"] == "peer:numpy" and r.get(stat)}
    out = {}
    for r in rows:
        if r["role"] != "backend" or not r.get(stat):
            continue
        base = peer.get(case_key(r))
        if base:
            level = r.get("simd") or ""
            out[(case_key(r), r["backend"] + (f"@{level}" if level else ""))] = r[stat] / base
    return out


@dataclass
class Comparison:
    lines: list  # one dict per compared (case, backend)
    failures: list  # the subset over the threshold
    missing: list  # baseline entries with no counterpart in this run


def compare(rows: list[dict], baseline_rows: list[dict], max_slowdown: float, stat: str = GUARD_STAT) -> Comparison:
    """Per case and backend: slowdown = (ours / NumPy now) / (ours / NumPy in the baseline); a failure when it
    exceeds ``max_slowdown``. Absolute times are never compared.

    The statistic is the fastest sample (``min_s``) by default: on a shared machine noise only ever adds
    time, and a sample that ran undisturbed is the one that says what the code costs; medians of short calls
    on a busy 2-core machine move by factors of several between runs."""
    now = numpy_ratios(rows, stat)
    then = numpy_ratios(baseline_rows, stat)
    lines, failures = [], []
    for key, ratio in now.items():
        base = then.get(key)
        if base is None:
            continue
        (loss, params, dtype, size, threads, clock), backend = key
        slowdown = ratio / base
        line = {"loss": loss, "params": params, "dtype": dtype, "size": size, "threads": threads, "clock": clock,
                "backend": backend, "ratio_baseline": base, "ratio_now": ratio, "slowdown": slowdown,
                "ok": slowdown <= max_slowdown}
        lines.append(line)
        if not line["ok"]:
            failures.append(line)
    missing = [{"loss": k[0][0], "dtype": k[0][2], "size": k[0][3], "threads": k[0][4], "backend": k[1]}
               for k in then if k not in now]
    return Comparison(lines, failures, missing)


def print_comparison(cmp, path, max_slowdown):
    """The comparison table, and the baseline cases this run did not measure."""
    print()
    print(f"regression guard vs {path}: ratio = backend / NumPy peer (fastest samples, same run and clock); "
          f"slowdown = ratio now / ratio in the baseline, allowed <= {max_slowdown:g}")
    lines = [[c["loss"], c["backend"], c["dtype"], c["size"], c["threads"], f"{c['ratio_baseline']:.4f}",
              f"{c['ratio_now']:.4f}", f"{c['slowdown']:.2f}", "ok" if c["ok"] else "SLOWER"] for c in cmp.lines]
    print(table(["loss", "backend", "dtype", "n", "thr", "ratio base", "ratio now", "slowdown", ""], lines,
                 ["<", "<", "<", ">", ">", ">", ">", ">", "<"]))
    if cmp.missing:
        print("in the baseline but not measured now: "
              + "; ".join(f"{m['loss']} {m['backend']} {m['dtype']} {m['size']} t={m['threads']}"
                          for m in cmp.missing[:10]) + (" ..." if len(cmp.missing) > 10 else ""))


def check_against(rows: list[dict], baseline_rows: list[dict], path: str, max_slowdown: float) -> int:
    """Compare a run with the baseline read from ``path`` and print the comparison and the verdict: 0 when
    every case is within ``max_slowdown``, 1 on a regression, 2 when no case of the run is in the baseline."""
    cmp = compare(rows, baseline_rows, max_slowdown)
    print_comparison(cmp, path, max_slowdown)
    if not cmp.lines:
        print("no case of this run is in the baseline: nothing compared")
        return 2
    if cmp.failures:
        print(f"\nREGRESSION: {len(cmp.failures)} case(s) slower than {max_slowdown:g}x the baseline ratio: "
              + "; ".join(f"{c['loss']} {c['backend']} {c['dtype']} {c['size']} t={c['threads']} "
                          f"({c['slowdown']:.2f}x)" for c in cmp.failures))
        return 1
    print(f"guard passed: {len(cmp.lines)} case(s), worst slowdown "
          f"{max(c['slowdown'] for c in cmp.lines):.2f} (allowed {max_slowdown:g})")
    return 0
