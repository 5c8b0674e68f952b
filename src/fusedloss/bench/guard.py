"""The regression guard (``--compare`` / ``--max-slowdown``): ratios to the NumPy peer measured in one run,
compared with the same ratios in a baseline file. Absolute times are never compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cases import case_key
from .report import table


GUARD_STAT = "min_s"


def numpy_ratios(rows: list[dict], stat: str = GUARD_STAT) -> dict:
    """(case key, backend) -> our time / the NumPy peer's time in the same run, by ``stat`` (a row field).

    Rows from several baseline files (``--compare A,B``) carry the file's position (``baseline``) and whether
    it was measured on this machine's kind (``same_kind``: the same CPU model and SIMD flags). Each file's rows
    are divided by that file's own peer. For a case in several files, the highest ratio among the files of
    this machine's kind counts (the top of the range that kind has shown: the same VM model has measured an
    AVX-512-heavy kernel at 1.5 times the time in two runs minutes apart), and files of other kinds count only for cases
    that no file of this kind has (a SIMD level this kind lacks, a baseline of a kind never measured)."""
    peer = {(r.get("baseline"), case_key(r)): r.get(stat) for r in rows
            if r["backend"] == "peer:numpy" and r.get(stat)}
    found: dict = {}
    for r in rows:
        if r["role"] != "backend" or not r.get(stat):
            continue
        base = peer.get((r.get("baseline"), case_key(r)))
        if base:
            level = r.get("simd") or ""
            key = (case_key(r), r["backend"] + (f"@{level}" if level else ""))
            found.setdefault(key, []).append((r.get("same_kind", True), r[stat] / base))
    out = {}
    for key, ratios in found.items():
        ours = [ratio for same, ratio in ratios if same]
        out[key] = max(ours or [ratio for _, ratio in ratios])
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


REMEASURE = 2  # times the cases over the limit are measured again before they count as regressions


def _line_key(line: dict) -> tuple:
    return (line["loss"], line["params"], line["dtype"], line["size"], line["threads"], line["clock"], line["backend"])


def check_against(rows: list[dict], baseline_rows: list[dict], path: str, max_slowdown: float,
                  remeasure: Callable[[list], list[dict]] | None = None) -> int:
    """Compare a run with the baseline read from ``path`` and print the comparison and the verdict: 0 when
    every case is within ``max_slowdown``, 1 on a regression, 2 when no case of the run is in the baseline.

    ``remeasure(case_keys)`` (optional) times those cases again and returns their rows. A case over the limit
    is measured again up to ``REMEASURE`` times and is a regression only when it is over the limit every time:
    a lost fast path shows in every measurement, while a process that held the core through one case's samples
    (the CI machine is shared) does not recur on demand. Every measurement is printed."""
    cmp = compare(rows, baseline_rows, max_slowdown)
    print_comparison(cmp, path, max_slowdown)
    if not cmp.lines:
        print("no case of this run is in the baseline: nothing compared")
        return 2
    history = {_line_key(c): [c["slowdown"]] for c in cmp.failures}
    failing = list(cmp.failures)
    for attempt in range(1, REMEASURE + 1):
        if not failing or remeasure is None:
            break
        keys = sorted({_line_key(c)[:-1] for c in failing})
        print(f"\n{len(failing)} case(s) over the limit: measured again ({attempt} of {REMEASURE})")
        again = compare(remeasure(keys), baseline_rows, max_slowdown)
        print_comparison(Comparison(again.lines, again.failures, []), path, max_slowdown)  # only these cases
        now = {_line_key(c): c for c in again.lines}
        still = []
        for c in failing:
            line = now.get(_line_key(c))
            if line is None:  # not measured again (cannot happen with a correct remeasure): keep the verdict
                still.append(c)
                continue
            history[_line_key(c)].append(line["slowdown"])
            if not line["ok"]:
                still.append(line)
        failing = still
    if failing:
        print(f"\nREGRESSION: {len(failing)} case(s) slower than {max_slowdown:g}x the baseline ratio"
              + (" in every measurement" if remeasure is not None else "") + ": "
              + "; ".join(f"{c['loss']} {c['backend']} {c['dtype']} {c['size']} t={c['threads']} ("
                          + ", ".join(f"{x:.2f}x" for x in history[_line_key(c)]) + ")" for c in failing))
        return 1
    recovered = [k for k, h in history.items() if len(h) > 1]
    print(f"guard passed: {len(cmp.lines)} case(s), worst slowdown "
          f"{max(c['slowdown'] for c in cmp.lines):.2f} (allowed {max_slowdown:g})"
          + (f"; within the limit when measured again: "
             + "; ".join(f"{k[0]} {k[-1]} {k[2]} {k[3]} t={k[4]} ("
                         + ", ".join(f"{x:.2f}x" for x in history[k]) + ")" for k in recovered)
             if recovered else ""))
    return 0
