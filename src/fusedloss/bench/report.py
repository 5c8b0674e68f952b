"""The results: the table printed, the CSV, and the JSON document (``--json``, read back by ``--compare``)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np

from .cases import case_key
from .peers import PEERS


FORMAT = "fusedloss-bench/1"


def load_results(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path}: not a fusedloss bench JSON file (no 'rows')")
    return data


def _plain(x):
    """JSON-safe: NumPy scalars to Python numbers, nan to None."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def results_document(rows: list[dict], machine: dict, settings: dict) -> dict:
    """The --json file (and the --compare baseline): flat rows plus where and how they were measured."""
    return _plain({"format": FORMAT, "machine": machine, "settings": settings, "rows": rows})


def fmt_time(s):
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def fmt_number(x, spec, suffix=""):
    return "-" if x is None else f"{x:{spec}}{suffix}"


def fmt_ratio(x, unreliable=False):
    """3 significant digits and an x; a trailing ? when the ratio is not to be trusted (see format_rows)."""
    if x is None:
        return "-"
    text = f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"
    return text + ("?" if unreliable else "")


def table(header, lines, align=None):
    """A plain-text table; a ``None`` line is a blank separator."""
    body = [line for line in lines if line is not None]  # None: a blank separator line
    widths = [max([len(str(h))] + [len(str(line[i])) for line in body]) for i, h in enumerate(header)]
    align = align or ["<"] * len(header)

    def text(cells):
        return "  ".join(f"{str(c):{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [text(header), text(["-" * w for w in widths])]
    out += [text(line) if line is not None else "" for line in lines]
    return "\n".join(out)


def format_rows(rows):
    """The result table: one line per contestant, a blank line between cases."""
    peers = [p for p in PEERS if any(f"speedup_vs_{p}" in r for r in rows)]
    header = ["loss", "backend", "dtype", "n", "thr", "median", "p20", "p80", "GB/s", "of bw",
              *[f"vs {p}" for p in peers], "check"]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", ">", ">", *[">"] * len(peers), "<"]
    lines, last = [], None
    for r in rows:
        key = case_key(r)
        if last is not None and key != last:
            lines.append(None)
        last = key
        lines.append([
            r["loss"], r["backend"], r["dtype"], r["size"], r["threads"], fmt_time(r["median_s"]),
            fmt_time(r["p20_s"]), fmt_time(r["p80_s"]), fmt_number(r["gbps"], ".1f"),
            fmt_number(None if r["frac_triad"] is None else 100 * r["frac_triad"], ".0f", "%"),
            *[fmt_ratio(r.get(f"speedup_vs_{p}"), bool(r.get(f"unreliable_vs_{p}"))) for p in peers],
            r["check"] + (f" ({r['note']})" if r.get("note") and r["check"] == "ok" else ""),
        ])
    return table(header, lines, align)


def write_csv(rows, path):
    """The rows as CSV; the columns are every key of any row, in order of first appearance."""
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
