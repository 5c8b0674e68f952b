"""The progress bar of ``fusedloss bench`` on stderr, with an estimate of the time left."""

from __future__ import annotations

import shutil
import sys
import time

from .cases import minimal_bytes


def fmt_duration(s):
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def case_weight(case, backends, peers, repeat=7):
    """A rough cost of a case in seconds, for the ETA: each contestant takes ``repeat`` samples of at least
    2 ms or one call (moving the case's bytes at about 2 GB/s), plus the float64 reference."""
    nbytes = minimal_bytes(case)
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
                f"{fmt_duration(time.perf_counter() - self.started)} "
                f"ETA {'?' if eta is None else fmt_duration(eta)}  {label}  {step}")
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        sys.stderr.write("\r" + text[:cols].ljust(cols))
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            cols = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r" + " " * cols + "\r")
            sys.stderr.flush()
