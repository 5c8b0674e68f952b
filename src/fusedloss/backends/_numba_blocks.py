"""The Numba CPU backend's blocks and threads: the fixed reduction blocks every loop writes, the compensated
sums that add them, and the pool that hands blocks out to threads. Each loop module (``numba_cpu.py``'s
elementwise loop, ``_numba_rows.py``, ``_numba_ctc.py``, ``_numba_pairwise.py``, ``_numba_overlap.py``) runs
its kernel through ``_blocks`` or ``_on_threads``; the loops that reduce inline this module's helpers, so their
cache keys hash this file (``_numba_points.digest``).

Threads: a loop runs over a range of its fixed blocks ``[b0, b1)``, writing each block's partial sum. A call
on one thread runs every block; above ``PARALLEL_MIN`` elements the calling thread and helper threads of a
pool (``_on_threads``) claim chunks of blocks in order until none is left, so a thread that the system
preempts delays only its own chunk, and the others take the rest. The kernels release the GIL. A call that still
had to wait for a helper's chunk much longer than its own chunks took (the helper was preempted by another
process) makes the next calls run on the calling thread alone for a while (``_BACKOFF``: 1 ms doubling to
256 ms while the helpers keep being late), as the cpp backend's pool does; the blocks, hence the results, are
the same. There is no ``parallel=True`` copy: Numba's parfors compile took three to four times as long as the serial loop's, per
specialisation, and Numba's threading layer cannot hand out blocks dynamically.

The reduction sums ``w * l`` over fixed blocks (``BLOCK`` elements, or the whole rows that fit in that many),
one float64 partial per block, and adds the partials in block order: whichever thread computed a block, the
same additions happen in the same order, so the result is bit-identical for any thread count. Inside a block,
runs of ``SUB`` elements (or single rows) are added with Neumaier's compensation, and so are the partials: the
total is within a few ulp of the exact sum, so a merge of partial results over pieces agrees with the whole
call to 1e-15.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from . import _jit

BLOCK = 4096  # elements per reduction block (a constant: the partial sums must not depend on threads)
PARALLEL_MIN = 1 << 17  # below this many elements a call runs on its own thread (handing out work would dominate)
SUB = 256  # elements per run inside a block (summed by `_run_sum`); the runs' sums are added with compensation

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_EMPTY = {dt: np.empty(0, dt) for dt in (*_DTYPES, np.dtype(np.int64))}  # stand-ins for arrays not in use


@njit(inline="always")
def _compensated_add(s, c, x):
    """Neumaier's step: (s + x, c plus the rounding error of that addition, which it recovers exactly).
    A running sum kept this way, s + c at the end, is within a few ulp of the exact sum in any order."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


@njit(inline="always")
def _compensated_total(s, c):
    """s + c, or s itself when it is inf or nan (c is then nan: inf - inf)."""
    if abs(s) < np.inf:
        return s + c
    return s


@njit(inline="always")
def _loop_result(partial, reduce):
    """What a loop returns: the partial sums of its blocks added (``_sum_partials``), or 0 without reduce."""
    if reduce is None:
        return 0.0
    return _sum_partials(partial)


@njit(inline="always", cache=True, nogil=True)  # inlined into the loops; cached for the call after a threaded run
def _sum_partials(partial):
    """The blocks' partial sums added in block order, with compensation (the same additions for any thread count)."""
    total = 0.0
    err = 0.0
    for blk in range(partial.shape[0]):
        total, err = _compensated_add(total, err, partial[blk])
    return _compensated_total(total, err)


@njit(inline="always")
def _run_sum(run, m):
    """The sum of ``run[:m]``: a full run as eight interleaved running sums (element k into sum k % 8) added
    pairwise at the end, a shorter one (an array's last) in element order. Eight independent additions per
    step instead of one chain: the chain's latency, not memory, bounded a reduced elementwise call (numba mse
    at 1e6 float32 took 1.3 ms, 0.95 ms of it in the sums). The order is fixed, so the result still does not
    depend on the thread count."""
    if m == SUB:
        a0 = run[0]
        a1 = run[1]
        a2 = run[2]
        a3 = run[3]
        a4 = run[4]
        a5 = run[5]
        a6 = run[6]
        a7 = run[7]
        for k in range(8, SUB, 8):
            a0 += run[k]
            a1 += run[k + 1]
            a2 += run[k + 2]
            a3 += run[k + 3]
            a4 += run[k + 4]
            a5 += run[k + 5]
            a6 += run[k + 6]
            a7 += run[k + 7]
        return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    t = 0.0
    for k in range(m):
        t += run[k]
    return t


@njit(forceinline=True)
def run_view(a, c0, c1):
    """``a[c0:c1]``, or None for None (optional arrays: the branch folds away per type). A run's arrays are taken
    through views of their own: LLVM's run-time check that outputs do not overlap inputs is then exact per run.
    Indexing the whole arrays, it bounded the accesses conservatively (by a run past the end) and took the
    scalar loop, 1.6x to 17x slower, whenever an output began within SUB elements after an input, as two arrays
    allocated one after the other often do (benchmarks/placement.py)."""
    if a is None:
        return None
    return a[c0:c1]


def _block_loop(n, per, reduce, args, partial, b0, b1):
    """The one loop over fixed blocks, copied per loop (``block_kernel``) with ``body`` and ``STEP`` bound.

    Blocks ``[b0, b1)`` of ``per`` items (elements or rows) out of ``n``; a block's items in steps of ``STEP``
    (a run of ``SUB`` elements, or one row), each step ``body(run, i0, i1, reduce, *args)``: it writes the items'
    outputs and, with reduce, their values w * l to ``run[:i1 - i0]`` (a buffer of ``STEP`` float64s), whose
    sum (``_run_sum``; a row's value itself) is added into the block's partial sum with compensation. The loop
    over a run's elements thus holds no reduction (it vectorises). Writes each block's partial sum to
    ``partial`` and returns those blocks' total (0 without reduce)."""
    run = np.empty(STEP)  # noqa: F821 (bound per loop)
    for blk in range(b0, b1):
        start = blk * per
        stop = min(start + per, n)
        s = 0.0
        err = 0.0
        for i0 in range(start, stop, STEP):  # noqa: F821
            i1 = min(i0 + STEP, stop)  # noqa: F821
            body(run, i0, i1, reduce, *args)  # noqa: F821 (bound per loop)
            if reduce is not None:
                s, err = _compensated_add(s, err, _run_sum(run, i1 - i0))
        if reduce is not None:
            partial[blk] = _compensated_total(s, err)
    return _loop_result(partial[b0:b1], reduce)


def block_kernel(body, step: int, qualname: str):
    """The kernel of a loop: ``_block_loop`` with ``body`` (a plain function, specialised by its module with its
    ``point`` or ``row`` bound) and ``step`` bound, compiled with ``@njit(cache=True, nogil=True)`` and named
    ``qualname`` (its cache entry: give it the hash of the body's sources, ``_numba_points.digest``, which covers
    this file). Called as ``kernel(n, per, reduce, args, partial, b0, b1)``, ``args`` the body's own.

    The body is compiled on its own with its arguments' types, so that its ``if x is not None`` branches fold
    away as in a loop's own arguments (inlining it in Numba's IR, the star call would lose those types), and is
    inlined by LLVM (``forceinline``): no call per run or row is left."""
    namespace = dict(globals(), body=njit(forceinline=True, nogil=True, error_model="numpy")(body), STEP=step)
    return njit(cache=True, nogil=True, error_model="numpy")(_jit.specialise(_block_loop, namespace, qualname))


_POOL: dict = {}  # "executor", its "size" (helper threads) and the "pid" that made it
_POOL_LOCK = threading.Lock()


def _helpers(n: int) -> ThreadPoolExecutor:
    """A pool with at least ``n`` helper threads. A new one after a fork: the parent's threads are not in the
    child, and work handed to them would wait forever."""
    with _POOL_LOCK:
        if _POOL.get("pid") != os.getpid() or _POOL["size"] < n:
            old = _POOL.get("executor") if _POOL.get("pid") == os.getpid() else None
            _POOL.update(executor=ThreadPoolExecutor(n, thread_name_prefix="fusedloss-numba"), size=n,
                         pid=os.getpid())
            if old is not None:
                old.shutdown(wait=False)
        return _POOL["executor"]


# The back-off after a late helper: calls run on the caller alone until "until" (perf_counter seconds); "level"
# doubles the next period (1 ms << level, level <= 8); "late" and "solo" count such calls (tests read them).
_BACKOFF = {"until": 0.0, "level": 0, "late": 0, "solo": 0}
_LATE_CHUNKS = 4  # a wait longer than this many of the caller's own chunks (and _LATE_S) means a late helper
_LATE_S = 100e-6


def _on_threads(run, nitems: int, nthreads: int, chunk: int) -> None:
    """``run(i0, i1)`` over ``[0, nitems)`` in chunks of ``chunk`` items, claimed in order by the calling thread
    and up to ``nthreads - 1`` helpers until none is left (a preempted thread holds up one chunk, not a fixed
    share). Returns when every chunk is done. While backing off (``_BACKOFF``) the caller runs them all."""
    start = time.perf_counter()
    if start < _BACKOFF["until"]:
        _BACKOFF["solo"] += 1
        run(0, nitems)
        return
    claims = itertools.count()  # next() is atomic under the GIL

    def work():
        done = 0
        while True:
            i0 = next(claims) * chunk
            if i0 >= nitems:
                return done
            run(i0, min(i0 + chunk, nitems))
            done += 1

    helpers = min(nthreads, (nitems + chunk - 1) // chunk) - 1
    futures = [_helpers(helpers).submit(work) for _ in range(helpers)] if helpers > 0 else []
    own = 0
    try:
        own = work()
    finally:
        waiting = time.perf_counter()
        for future in futures:
            # a helper still queued (behind another caller's work) has nothing left to do: dropped, not awaited
            if not future.cancel():
                future.result()
    if futures:
        _back_off(start, waiting, time.perf_counter(), own)


def _back_off(start: float, waiting: float, end: float, own: int) -> None:
    """Start or end the back-off after a threaded call: the caller worked from ``start`` to ``waiting`` on
    ``own`` chunks, then waited for the helpers until ``end``."""
    if end - waiting > max(_LATE_S, _LATE_CHUNKS * (waiting - start) / max(own, 1)):
        _BACKOFF["late"] += 1
        _BACKOFF["until"] = end + 1e-3 * (1 << _BACKOFF["level"])
        _BACKOFF["level"] = min(_BACKOFF["level"] + 1, 8)
    else:
        _BACKOFF["level"] = 0


def _blocks(kernel, args: tuple, nblocks: int, threaded: bool, nthreads: int, reduce) -> float:
    """``kernel(*args, partial, b0, b1)`` over every block, on this thread or, if ``threaded``, on ``nthreads``
    (chunks of about a quarter of each thread's share); the total of the blocks' partial sums."""
    partial = np.zeros(nblocks)
    if not threaded or nthreads < 2 or nblocks < 2:
        return kernel(*args, partial, 0, nblocks)
    _on_threads(lambda b0, b1: kernel(*args, partial, b0, b1), nblocks, nthreads, max(1, nblocks // (4 * nthreads)))
    return _sum_partials(partial) if reduce else 0.0
