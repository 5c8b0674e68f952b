"""The Numba CPU backend's overlap losses (``overlap_sums``, ``overlap_grad``; the contract is
``fusedloss._overlap``'s, the interface ``numba_cpu.py``'s): ``_overlap_rows``'s two passes compiled, run over
blocks of about ``BLOCK`` scores of one sample (``block`` pixels) on the calling thread and the pool's helpers
(``_numba_blocks._on_threads``) above ``PARALLEL_MIN`` scores. Each block writes its own row of partial sums,
added per sample in block order here: the same sums for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import _overlap_rows
from . import _jit
from ._numba_blocks import _EMPTY, BLOCK, PARALLEL_MIN, _on_threads

_KERNELS: dict = {}  # "overlap" -> (sums kernel, gradient kernel)


def _overlap_sums_blocks(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, partial, b0, b1):
    """Blocks ``[b0, b1)`` of ``_overlap_rows.block_sums``."""
    for b in range(b0, b1):
        block_sums(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, partial)  # noqa: F821


def _overlap_grad_blocks(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, coef, g, b0, b1):
    """Blocks ``[b0, b1)`` of ``_overlap_rows.block_grad``."""
    for b in range(b0, b1):
        block_grad(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, coef, g)  # noqa: F821


def _overlap_kernels():
    kernels = _KERNELS.get("overlap")
    if kernels is None:
        digest = _jit.source_hash(__file__, _overlap_rows.__file__)
        namespace = {**globals(), **_jit.compile_functions(
            _overlap_rows, njit(cache=True, nogil=True, error_model="numpy"), f"overlap__{digest}")}
        kernels = _KERNELS["overlap"] = tuple(
            njit(cache=True, nogil=True, error_model="numpy")(
                _jit.specialise(fn, namespace, f"{fn.__name__}__{digest}"))
            for fn in (_overlap_sums_blocks, _overlap_grad_blocks))
    return kernels


def _overlap_args(act, x, labels, y, C, S, has_ignore, ignore):
    block = max(1, BLOCK // max(C, 1))
    nbs = -(-S // block)
    return (x, _EMPTY[np.dtype(np.int64)] if labels is None else labels, _EMPTY[x.dtype] if y is None else y,
            labels is not None, int(act), bool(has_ignore), int(ignore), int(C), int(S), nbs, block), nbs


def _overlap_run(kernel, args, nblocks, work, nthreads):
    if work < PARALLEL_MIN or nthreads < 2:
        kernel(*args, 0, nblocks)
    else:
        _on_threads(lambda b0, b1: kernel(*args, b0, b1), nblocks, nthreads, 1)


def overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore, sums, nthreads):
    args, nbs = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    partial = np.zeros((N * nbs, C, 3))
    _overlap_run(_overlap_kernels()[0], (*args, partial.reshape(-1)), N * nbs, N * C * S, nthreads)
    part = partial.reshape(N, nbs, C * 3)
    total = sums.reshape(N, C * 3)
    total[...] = 0.0
    for k in range(nbs):  # in block order: the same sums for any thread count
        total += part[:, k]


def overlap_grad(act, x, labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads):
    args, nbs = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    _overlap_run(_overlap_kernels()[1], (*args, coef, grad), N * nbs, N * C * S, nthreads)
