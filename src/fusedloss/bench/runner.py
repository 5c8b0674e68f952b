"""Running cases into flat result rows: each contestant checked against the reference, then timed."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Callable

from .. import _config
from . import oracle
from .cases import Case, case_key, make_data, minimal_bytes
from .contestants import Contestant, Unavailable, backend_contestant, host_backends
from .machine import simd_level
from .oracle import check_result, reference
from .peers import PEERS, peer_contestant
from .timing import CLOCKS, Timing, time_round_robin


def make_contestant(name: str, case: Case, pred, target) -> Contestant:
    """A backend (``cpp``, ``numba``, ``numpy``) or a peer (``peer:numpy``, ``peer:torch``, ...)."""
    if name.startswith("peer:"):
        return peer_contestant(name[5:], case, pred, target)
    return backend_contestant(name, case, pred, target)


def contestant_names(include_unavailable: bool = True) -> list[str]:
    """Every host backend name (available or not) followed by every peer, as suite parameters."""
    names = [b["name"] for b in host_backends() if include_unavailable or b["available"]]
    return names + [f"peer:{p}" for p in PEERS]


@dataclass
class RunOptions:
    backends: list  # our backend names
    peers: list  # peer names ("numpy", "torch", ...)
    repeat: int = 7
    warmup: int = 2
    min_sample_s: float = 2e-3
    budget_s: float = 2.0
    triad_gbps: dict = field(default_factory=dict)  # threads -> GB/s
    # cases moving more than this are timed one contestant at a time (set up, checked, timed, freed), so
    # that memory holds one contestant's buffers, not all of them; smaller ones are timed round-robin
    interleave_max_bytes: int = 256 * 2**20
    clock: str = "wall"  # or "cpu" (see time_round_robin)
    # the numpy backend is the float64 reference: above REFERENCE_FULL_MAX elements it needs GBs (about ten
    # float64 copies of 8192 x 32000 logits), so it runs there only when asked for by name
    force_numpy_backend: bool = False


def _prepare(name, case, pred, target, ref, opts, progress):
    """(row, contestant or None if it cannot be timed, Timing or None); None if the contestant does not exist
    for the case. The first call is checked; when it took more than the time budget and compiled nothing
    (the float64 reference as the numpy backend on 10^7 elements takes a second) it is also the one timed
    sample."""
    if progress:
        progress(f"check {name}")
    if name == oracle.REFERENCE_BACKEND and case.n > oracle.REFERENCE_FULL_MAX and not opts.force_numpy_backend:
        row = base_row(case, name, opts)
        row["check"] = (f"skipped: the float64 reference backend on {case.n:.1e} elements needs GBs "
                        "(--backend numpy runs it)")
        return row, None, None
    try:
        c = make_contestant(name, case, pred, target)
    except Unavailable:
        return None
    row = base_row(case, name, opts)
    row["note"] = c.note
    now = CLOCKS[opts.clock]
    try:
        t0 = now()
        raw = c.run()
        first = now() - t0
        ok, text, verr, gerr = check_result(case, *c.result(raw), ref)
        del raw
    except Exception as exc:
        ok, text, verr, gerr = False, f"ERROR: {type(exc).__name__}: {exc}"[:200], math.nan, math.nan
    row.update(check=text, value_err=verr, grad_err=gerr)
    timing = None
    if ok and first > opts.budget_s and not c.compiles:
        timing = Timing(samples=[first], number=1, spent=first)
        row["note"] = "; ".join(x for x in (row["note"], "slow: timed once") if x)
    if not ok or timing is not None:
        _release(c)
        c = None
    return row, c, timing


def _release(c):
    if c is not None and c.cleanup:
        c.cleanup()


def run_case(case: Case, opts: RunOptions, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Check and time every contestant on one case; one flat row per contestant that exists for it."""
    if progress:
        progress("data and the float64 reference")
    pred, target = make_data(case)
    ref = reference(case, pred, target)
    previous_threads = _config._num_threads  # None when unset: set_num_threads(None) restores that
    _config.set_num_threads(case.threads)
    names = list(opts.backends) + [f"peer:{p}" for p in opts.peers]
    rows, timings = [], {}
    args = (opts.repeat, opts.warmup, opts.min_sample_s, opts.budget_s, progress, 2e-3, opts.clock)
    try:
        if minimal_bytes(case) <= opts.interleave_max_bytes:
            prepared = [p for p in (_prepare(n, case, pred, target, ref, opts, progress) for n in names) if p]
            rows = [row for row, _, _ in prepared]
            timings = {row["backend"]: t for row, _, t in prepared if t is not None}
            try:
                timings.update(time_round_robin({row["backend"]: c.run for row, c, _ in prepared if c}, *args))
            finally:
                for _, c, _ in prepared:
                    _release(c)
            del prepared
        else:
            for name in names:
                p = _prepare(name, case, pred, target, ref, opts, progress)
                if p is None:
                    continue
                row, c, timing = p
                rows.append(row)
                if timing is not None:
                    timings[name] = timing
                if c is not None:
                    try:
                        timings.update(time_round_robin({name: c.run}, *args))
                    finally:
                        _release(c)
                del p, c
                gc.collect()
    finally:
        _config.set_num_threads(previous_threads)
    nbytes = minimal_bytes(case)
    triad_gbps = opts.triad_gbps.get(case.threads)
    for row in rows:
        tm = timings.get(row["backend"])
        if tm is None or not tm.samples:
            continue
        med, p20, p80 = tm.stats()
        gbps = nbytes / med / 1e9
        row.update(median_s=med, p20_s=p20, p80_s=p80, min_s=float(min(tm.samples)), samples=len(tm.samples),
                   number=tm.number, gbps=gbps, frac_triad=(gbps / triad_gbps) if triad_gbps else None)
    peer_medians = {r["backend"][5:]: r["median_s"] for r in rows if r["role"] == "peer" and r["median_s"]}
    for row in rows:
        for peer, pm in peer_medians.items():
            if row["median_s"] and row["backend"] != f"peer:{peer}":
                row[f"speedup_vs_{peer}"] = pm / row["median_s"]
    return rows


SPREAD_LIMIT = 1.5  # p80 / p20 of a contestant's samples above which its ratios are not trusted


def mark_unreliable_ratios(rows: list[dict], cores: int, busy: int = 0) -> str:
    """Mark the ``speedup_vs_<peer>`` ratios that the measurements do not support, in place: the row gets
    ``unreliable_vs_<peer>`` with the reason. Two reasons: the samples of the row or of the peer spread
    (p80 / p20 above ``SPREAD_LIMIT``: the machine stalled some of them), or other processes loaded the
    machine while the case ran (the 1-minute load average after the case, less this run's own threads and
    ``busy`` processes, above half the cores). Returns a one-line explanation for the table's footnote, or ""
    when every ratio stands."""
    reasons = set()
    peers = {(case_key(r), r["backend"][5:]): r for r in rows if r["role"] == "peer"}
    for r in rows:
        load = r.get("load_avg")
        others = None if load is None else load - min(r["threads"], cores) - busy
        for key in [k for k in r if k.startswith("speedup_vs_")]:
            peer = peers.get((case_key(r), key[len("speedup_vs_"):]))
            why = []
            for who in (r, peer):
                if who and who.get("p20_s") and who.get("p80_s") and who["p80_s"] > SPREAD_LIMIT * who["p20_s"]:
                    why.append(f"samples of {who['backend']} spread (p80/p20 {who['p80_s'] / who['p20_s']:.1f})")
            if others is not None and others > 0.5 * cores:
                why.append(f"load average {load:.1f} on {cores} cores")
            if why:
                r["unreliable_vs_" + key[len("speedup_vs_"):]] = "; ".join(why)
                reasons.update("spread" if "spread" in w else "load" for w in why)
    text = []
    if "load" in reasons:
        text.append("other processes loaded the machine during the case (load average, less this run's own "
                    "threads, above half the cores)")
    if "spread" in reasons:
        text.append(f"the timed samples spread (p80 above {SPREAD_LIMIT:g} x p20)")
    return " or ".join(text)


def base_row(case: Case, name: str, opts: RunOptions) -> dict:
    return {
        "loss": case.loss, "params": case.params_text, "backend": name, "simd": simd_level(name),
        "role": "peer" if name.startswith("peer:") else "backend", "dtype": case.dtype, "size": case.size_text,
        "n": case.n, "threads": case.threads, "median_s": None, "p20_s": None, "p80_s": None, "min_s": None,
        "samples": 0,
        "number": 0, "bytes": minimal_bytes(case), "gbps": None, "triad_gbps": opts.triad_gbps.get(case.threads),
        "frac_triad": None, "check": "", "value_err": None, "grad_err": None, "note": "", "clock": opts.clock,
    }
