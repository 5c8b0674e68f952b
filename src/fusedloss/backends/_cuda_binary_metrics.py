"""The Numba-CUDA backend's binary metrics (``binary_metrics``; ``fusedloss._binary_metrics.table`` is their
specification, the interface ``numba_cuda.py``'s): the sums a loss on one binary score gives its metrics from.

One CUDA block per chunk of ``CHUNK`` elements (the host kernels' reduction block), its threads striding over the
chunk. Each thread adds its elements' NaN count, weight of the correct predictions and squared error; the block
adds those three by a tree in a fixed order (``_segment_sum``) into its own row of ``sums``, and the host adds the
chunks of a table row in order. The bins (the curves' weights of positives and negatives, the calibration
histogram) are added with atomics into a histogram of the block's in shared memory, then into the table row;
with more than ``SHARED_BINS`` bin columns they go straight to the table. Atomic float additions come in no
fixed order: bins of integer weights (no sample weights, hard targets) are exact counts, the others may differ
in their last bits from run to run. Chunk c belongs to table row ``c // per_row``, with ``per_row`` the host
kernels' rule (whole chunks, ``table_rows(n)`` rows), so the table has the host's shape.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from .. import _binary_metrics
from . import _jit
from ._cuda_reduce import TPB, _segment_sum
from ._cuda_stream import _stream, to_device, to_host

CHUNK = _binary_metrics.BLOCK  # elements per CUDA block
THREADS = TPB  # threads per CUDA block (a power of two, at most TPB)
SHARED_BINS = 2048  # bin columns a block can histogram in shared memory (16 KiB)
_KERNELS: dict = {}  # "binary" -> the kernel, built on first use


@cuda.jit(device=True)
def _add(hist, table, row, local, j, v):
    """Bin column ``j`` (counted from the first bin column) += v: the block's histogram, or the table row."""
    if local:
        cuda.atomic.add(hist, j, v)
    else:
        cuda.atomic.add(table, (row, 3 + j), v)


def _metrics_kernel(x, y, w, has_w, probabilities, nbins, ece_bins, chunk, per_row, table, sums):
    """Chunk ``blockIdx.x`` (module docstring); ``element_terms`` is bound to the compiled
    ``_binary_metrics.element_terms`` (``_jit.binary_metrics_kernel``), as in the Numba CPU backend."""
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    width = cuda.blockDim.x
    row = c // per_row
    ncols = 2 * nbins + 3 * ece_bins
    local = ncols <= SHARED_BINS
    hist = cuda.shared.array(SHARED_BINS, numba.float64)
    buf = cuda.shared.array(TPB, numba.float64)
    if local:
        for j in range(t, ncols, width):
            hist[j] = 0.0
    cuda.syncthreads()
    bad = 0.0
    hit = 0.0
    sq = 0.0
    for i in range(c * chunk + t, min(x.shape[0], (c + 1) * chunk), width):
        yv = numba.float64(y[i])
        wv = numba.float64(w[i]) if has_w else 1.0
        q, pr, nan, right, err = element_terms(numba.float64(x[i]), yv, wv, probabilities)  # noqa: F821
        bad += nan
        hit += right
        sq += err
        if nbins > 0:
            b = min(int(pr * nbins), nbins - 1)
            _add(hist, table, row, local, b, wv * yv)
            _add(hist, table, row, local, b + nbins, wv * (1.0 - yv))
        if ece_bins > 0:
            b = 2 * nbins + min(int(pr * ece_bins), ece_bins - 1)
            _add(hist, table, row, local, b, wv)
            _add(hist, table, row, local, b + ece_bins, wv * q)
            _add(hist, table, row, local, b + 2 * ece_bins, wv * yv)
    bad = _segment_sum(buf, bad, width)
    hit = _segment_sum(buf, hit, width)
    sq = _segment_sum(buf, sq, width)
    if t == 0:
        sums[c, 0] = bad
        sums[c, 1] = hit
        sums[c, 2] = sq
    if local:  # (the histogram is complete: _segment_sum's barriers came after the last atomic)
        for j in range(t, ncols, width):
            if hist[j] != 0.0:
                cuda.atomic.add(table, (row, 3 + j), hist[j])


def _build():
    kernel = _jit.binary_metrics_kernel(_metrics_kernel, __file__, globals(), cuda.jit(device=True),
                                        cuda.jit(cache=True))
    _KERNELS["binary"] = kernel
    return kernel


def binary_metrics(x, y, w, probabilities: bool, nbins: int, ece_bins: int, rows: int) -> np.ndarray:
    """The host table (``rows`` x ``3 + 2 nbins + 3 ece_bins`` float64, ``_binary_metrics.table``'s columns) of the
    1-D device arrays ``x`` (scores), ``y`` (targets) and ``w`` (weights, or None), for ``_binary_metrics.fold``."""
    n = x.shape[0]
    columns = 3 + 2 * nbins + 3 * ece_bins
    host = np.zeros((rows, columns))
    chunks = -(-n // CHUNK)
    if chunks == 0:
        return host
    per_row = -(-chunks // rows)
    table = to_device(host)
    sums = to_device(np.zeros((chunks, 3)))
    kernel = _KERNELS.get("binary") or _build()
    kernel[chunks, THREADS, _stream()](x, y, x if w is None else w, w is not None, probabilities, nbins,
                                       ece_bins, CHUNK, per_row, table, sums)
    host = to_host(table)
    # each row's scalar sums: its chunks' in order
    starts = np.arange(0, chunks, per_row)
    host[:len(starts), :3] = np.add.reduceat(to_host(sums), starts, axis=0)
    return host
