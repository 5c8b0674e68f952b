"""The Numba-CUDA backend's overlap losses (``overlap_sums``, ``overlap_grad``; the contract is
``fusedloss._overlap``'s, the interface ``numba_cuda.py``'s): ``_overlap_rows``'s two passes compiled as device
functions, one thread per block of pixels of one sample (``OVERLAP_SUMS_PIXELS`` in the sums pass, one in the
gradient pass), grid-strided over the threads. Each block of the sums pass writes its own row of partial sums, added
per sample in block order on the host: the same sums for any grid. Launched, allocated and read back on the current
stream (``_cuda_stream``).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import _overlap_rows
from . import _jit
from ._cuda_reduce import TPB, _blocks
from ._cuda_stream import _alloc, _stream, to_host

_KERNELS: dict = {}  # "overlap" -> (sums kernel, gradient kernel)

OVERLAP_SUMS_PIXELS = 64  # pixels per thread of the sums pass (its partials: one row of C x 3 per thread)


def _overlap_sums_kernel(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, nblocks, partial):
    """``_overlap_rows.block_sums`` of blocks grid-strided over the threads."""
    for b in range(cuda.grid(1), nblocks, cuda.gridsize(1)):
        block_sums(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, partial)  # noqa: F821


def _overlap_grad_kernel(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, nblocks, coef, g):
    """``_overlap_rows.block_grad``, one pixel per block, grid-strided over the threads."""
    for b in range(cuda.grid(1), nblocks, cuda.gridsize(1)):
        block_grad(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, coef, g)  # noqa: F821


def _overlap_kernels():
    kernels = _KERNELS.get("overlap")
    if kernels is None:
        digest = _jit.source_hash(__file__, _overlap_rows.__file__)
        namespace = {**globals(), **_jit.compile_functions(_overlap_rows, cuda.jit(device=True), f"overlap__{digest}")}
        kernels = _KERNELS["overlap"] = tuple(
            cuda.jit(cache=True)(_jit.specialise(fn, namespace, f"{fn.__name__}__{digest}"))
            for fn in (_overlap_sums_kernel, _overlap_grad_kernel))
    return kernels


def _overlap_args(act, x, labels, y, C, S, has_ignore, ignore):
    return (x, _alloc(1, np.int64) if labels is None else labels, x if y is None else y,
            labels is not None, int(act), bool(has_ignore), int(ignore), int(C), int(S))


def overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore, sums, nthreads):
    """The overlap contract's first pass on device arrays; ``sums`` is a host float64 array (N * C * 3)."""
    nbs = -(-S // OVERLAP_SUMS_PIXELS)
    sums[...] = 0.0
    if N * nbs * C == 0:
        return
    partial = _alloc(N * nbs * C * 3, np.float64)
    args = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    _overlap_kernels()[0][_blocks(N * nbs), TPB, _stream()](*args, nbs, OVERLAP_SUMS_PIXELS, N * nbs, partial)
    part = to_host(partial).reshape(N, nbs, C * 3)
    total = sums.reshape(N, C * 3)
    for k in range(nbs):  # in block order: the same sums for any grid
        total += part[:, k]


def overlap_grad(act, x, labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads):
    """The overlap contract's gradient pass on device arrays (``coef`` float64, ``grad`` like ``x``)."""
    if N * S * C == 0:
        return
    args = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    _overlap_kernels()[1][_blocks(N * S), TPB, _stream()](*args, S, 1, N * S, coef, grad)
