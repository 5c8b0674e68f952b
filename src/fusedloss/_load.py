"""A competing load for benchmarks: busy-looping processes, started and stopped by the caller.

``with BusyLoad(n, seconds):`` runs ``n`` processes that each spin on a core at the caller's priority, and ends
them on exit; each also stops by itself after ``seconds`` (so none outlives a crashed benchmark by long).
Used by ``fusedloss bench --busy N`` and ``benchmarks/thread_policy.py`` to measure the thread policy as users
meet it on a shared machine.
"""

from __future__ import annotations

import multiprocessing as mp
import time


def _spin(deadline: float) -> None:  # pragma: no cover - runs in a child process
    x = 0
    while time.time() < deadline:
        for _ in range(10_000):
            x += 1


class BusyLoad:
    def __init__(self, n: int, seconds: float = 600.0):
        if n < 0:
            raise ValueError(f"BusyLoad: n must be >= 0, got {n}")
        self.n, self.seconds, self.procs = n, seconds, []

    def __enter__(self):
        ctx = mp.get_context("spawn")  # a clean interpreter: nothing of the caller's state (threads, pools)
        deadline = time.time() + self.seconds
        self.procs = [ctx.Process(target=_spin, args=(deadline,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        if self.procs:
            time.sleep(0.3)  # let them reach their loops
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()
        self.procs = []
