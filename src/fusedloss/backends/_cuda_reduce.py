"""The Numba-CUDA backend's grid and reductions: the grid of the grid-stride kernels, the sums over a block that
every reducing kernel ends with, and the sum of the blocks' partials (on the host, or on the device).

Grid: ``TPB`` threads a block, ``_blocks(n)`` blocks for n items (at most ``MAX_BLOCKS``; grid-stride beyond). It
depends only on the size, so the partials, and the reduced value, are reproducible. Each thread sums its ``w * l``
in float64, then a tree over the block in shared memory (``_segment_sum``, ``_store_block_sum``) leaves one
float64 partial per block. The partials are added (``_reduced``) either

- on the host with ``math.fsum`` (correctly rounded, so independent of their order): the public API's Python
  floats; reading them back waits for the kernel; or
- on the device (a ``DeviceTotal`` given as ``total=``: what ``fusedloss.torch`` asks for) by
  ``_final_sum_kernel``: one warp, each thread a strided compensated sum, thread 0 adding theirs in thread order
  (compensated too), then the division by "mean"'s divisor, into a 1-element device array. A fixed order, so the
  same bits run to run; it agrees with fsum to about one rounding (tests/test_cuda_device_value.py). Nothing
  waits for it.

Also here: the plain reductions that ``fusedloss._device`` calls (``device_sum``, ``kept_sum``), whose kernels are
cached by Numba keyed on this file alone, as is ``_final_sum_kernel``: what they compile (``TPB``, the block sum)
must stay in this file. The device functions here are also globals of the kernels that ``numba_cuda._build``
copies, so those kernels' cache keys hash this file.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba import cuda

from ._cuda_stream import _alloc, _stream, to_host

TPB = 256  # threads per block (a power of two: the block sum halves it)
MAX_BLOCKS = 1024  # grid-stride beyond this; also bounds the partial sums the host adds
# The device-side final sum's threads (a power of two): one warp adds the <= 1024 partials, 32 each, then a tree of
# 5 steps; a few microseconds of a single block at most.
FINAL_THREADS = 32


def _blocks(n: int) -> int:
    return min((n + TPB - 1) // TPB, MAX_BLOCKS)


class DeviceTotal(NamedTuple):
    """Where a reduction's value goes when it stays on the device: ``out``, a 1-element device array (float32 or
    float64), receives the sum of the kernel's float64 per-block partials (``_final_sum_kernel``), divided by
    ``denom`` ("mean"; nan when it is 0, as ``_validate.reduced_value``) unless that is None ("sum")."""

    out: object
    denom: float | None = None


def _reduced(partial, total: DeviceTotal | None):
    """The value of a reduction into ``partial``: on the host, the exactly rounded sum (``math.fsum``, which reads
    the partials back: a synchronisation); or, with ``total``, ``total.out`` written on the device."""
    if total is None:
        return math.fsum(to_host(partial))
    denom = total.denom
    _final_sum_kernel[1, FINAL_THREADS, _stream()](partial, 0.0 if denom is None else float(denom),
                                                   denom is not None, total.out)
    return total.out


@cuda.jit(device=True)
def _segment_sum(buf, s, width):
    """The sum of ``s`` over each run of ``width`` consecutive threads of the block (a power of two; every thread
    calls this), by a tree in ``buf`` (shared memory) in a fixed order. Every thread gets its run's total, and
    has read it before this returns, so ``buf`` may be written again at once."""
    t = cuda.threadIdx.x
    lane = t & (width - 1)
    buf[t] = s
    cuda.syncthreads()
    step = width // 2
    while step > 0:
        if lane < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2
    total = buf[t - lane]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _store_block_sum(s, partial):
    """Sum ``s`` over the threads of the block (fixed tree order) into ``partial[blockIdx.x]``."""
    buf = cuda.shared.array(TPB, numba.float64)
    total = _segment_sum(buf, s, TPB)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = total


@cuda.jit(device=True)
def _two_sum(a, b):
    """(a + b rounded, its rounding error exactly): Knuth's TwoSum, no branch on the magnitudes."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@cuda.jit(cache=True)
def _final_sum_kernel(partial, denom, divide, out):
    """``out[0]`` = the sum of ``partial`` (float64), over ``denom`` when ``divide`` (nan when it is 0). One block
    of ``FINAL_THREADS`` threads: thread k adds partial[k], partial[k + FINAL_THREADS], ..., then thread 0 adds the
    threads' sums in thread order; every addition is compensated (``_two_sum``: the rounding errors are summed
    apart and added at the end). A fixed order: the same bits run to run, depending on nothing but the partials;
    within about one rounding of the exactly rounded sum (``math.fsum``) for the <= 1024 partials of a grid unless
    they cancel. A non-finite sum is returned as it is (the compensation of inf is nan); finite partials whose sum
    overflows give inf (fsum raises)."""
    sm_s = cuda.shared.array(FINAL_THREADS, numba.float64)
    sm_c = cuda.shared.array(FINAL_THREADS, numba.float64)
    k = cuda.threadIdx.x
    s = 0.0
    c = 0.0
    for i in range(k, partial.shape[0], FINAL_THREADS):
        s, e = _two_sum(s, partial[i])
        c += e
    sm_s[k] = s
    sm_c[k] = c
    cuda.syncthreads()
    if k == 0:
        s = 0.0
        c = 0.0
        for j in range(FINAL_THREADS):  # the threads' sums, in thread order
            s, e = _two_sum(s, sm_s[j])
            c += sm_c[j] + e
        if s - s == 0.0:  # finite: every step was, and the errors are exact
            s += c
        if divide:
            s = s / denom if denom != 0.0 else math.nan
        out[0] = s


# --- the plain reductions of fusedloss._device --------------------------------------------------------------


def device_sum(x) -> float:
    """sum(x) in float64 (per-block partials, added with fsum on the host)."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    blocks = _blocks(n)
    partial = _alloc(blocks, np.float64)
    _sum_kernel[blocks, TPB, _stream()](x, partial)
    return _reduced(partial, None)


def kept_sum(labels, ignore: int, rw, cw) -> float:
    """sum over rows with ``labels != ignore`` of ``rw[r] * cw[labels[r]]`` (a missing factor is 1)."""
    R = labels.shape[0]
    if R == 0:
        return 0.0
    blocks = _blocks(R)
    partial = _alloc(blocks, np.float64)
    _kept_sum_kernel[blocks, TPB, _stream()](labels, int(ignore), labels if rw is None else rw, rw is not None,
                                             labels if cw is None else cw, cw is not None, partial)
    return _reduced(partial, None)


@cuda.jit(cache=True)
def _sum_kernel(x, partial):
    s = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        s += float(x[i])
    _store_block_sum(s, partial)


@cuda.jit(cache=True)
def _kept_sum_kernel(labels, ignore, rw, has_rw, cw, has_cw, partial):
    s = 0.0
    for r in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        t = labels[r]
        if t != ignore:
            v = 1.0
            if has_rw:
                v = float(rw[r])
            if has_cw:
                v *= float(cw[t])
            s += v
    _store_block_sum(s, partial)
