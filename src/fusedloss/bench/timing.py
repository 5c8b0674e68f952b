"""The timing loop: contestants timed round-robin, samples calibrated to a minimum duration."""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Timing:
    samples: list = field(default_factory=list)  # seconds per call, one entry per sample
    number: int = 1  # calls per sample
    spent: float = 0.0

    def stats(self) -> tuple[float, float, float]:
        s = np.asarray(self.samples)
        return float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_round_robin(runs: dict, repeat: int, warmup: int, min_sample_s: float = 2e-3,
                     budget_s: float = 2.0, on_step: Callable[[str], None] | None = None,
                     pause_s: float = 2e-3, clock: str = "wall") -> dict:
    """Time each callable in ``runs`` (name -> fn), already called once (compiled, checked): ``warmup`` more
    untimed calls, then ``repeat`` samples taken in turn (one sample of each, then the next round). Returns
    name -> Timing (seconds per call).

    A sample is ``number`` back-to-back calls, ``number`` chosen so that a sample lasts about ``min_sample_s``
    (timer resolution and loop overhead stay negligible for microsecond calls); a sample that runs past
    10 ``min_sample_s`` (a stalled machine) ends early and ``number`` is recalibrated. A callable whose samples
    have cost more than ``budget_s`` stops after 3 samples, and one slower than ``budget_s / 4`` per call gets
    a single warm-up call. Between samples of different callables the loop sleeps ``pause_s``, untimed, so
    that the spinning worker threads of one threading runtime (OpenMP, XLA, Numba) go to sleep before the
    next one is timed: on a 2-core machine they would otherwise compete.

    ``clock="cpu"`` measures the CPU time of this process (all its threads) instead of wall time: time spent
    waiting while other processes run does not count, which makes single-threaded measurements on a shared
    machine far steadier (the regression guard uses it with one thread). Spinning worker threads would count,
    so it suits single-threaded runs.
    """
    now = CLOCKS[clock]
    timings = {}
    for name, fn in runs.items():
        if on_step:
            on_step(f"warm-up {name}")
        tm = Timing()
        for i in range(max(warmup, 1)):
            t0 = now()
            fn()
            once = max(now() - t0, 1e-9)
            if once > budget_s / 4:  # a slow call: it was warm already (the check call ran first), so it
                tm.samples.append(once)  # counts as the first sample
                tm.spent += once
                break
        tm.number = max(1, min(1_000_000, math.ceil(min_sample_s / once)))
        timings[name] = tm
    cap = 10 * min_sample_s
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeat):
            for name, fn in runs.items():
                tm = timings[name]
                if len(tm.samples) >= min(3, repeat) and tm.spent > budget_s:
                    continue
                if on_step:
                    on_step(f"{name} {r + 1}/{repeat}")
                if pause_s and len(runs) > 1:
                    time.sleep(pause_s)
                number = tm.number
                chunk = max(1, number // 8)
                done = 0
                t0 = now()
                while done < number:
                    k = min(chunk, number - done)
                    for _ in range(k):
                        fn()
                    done += k
                    if done < number and now() - t0 > cap:
                        break
                dt = now() - t0
                tm.spent += dt
                tm.samples.append(dt / done)
                if done < number:  # slower than calibrated (or a stall): shrink, by at most 4x at a time
                    tm.number = max(1, number // 4, math.ceil(min_sample_s / (dt / done)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def warm_and_time(runs: dict, repeat: int, warmup: int) -> tuple[dict, dict]:
    """(each contestant's value after ``warmup`` untimed calls (at least one), its ``repeat`` samples in seconds
    taken round-robin); ``runs``: name -> a call returning the value."""
    values = {}
    for key, f in runs.items():
        for _ in range(max(warmup, 1)):
            values[key] = f()
    samples = {key: [] for key in runs}
    for _ in range(repeat):
        for key, f in runs.items():
            t0 = time.perf_counter()
            f()
            samples[key].append(time.perf_counter() - t0)
    return values, samples
