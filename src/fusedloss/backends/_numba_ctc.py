"""The Numba CPU backend's CTC (``ctc``; the contract is ``fusedloss._ctc``'s, the interface ``numba_cpu.py``'s):
``_ctc_rows.ctc_sequence`` compiled and run one sequence at a time, longest first, on the calling thread and the
pool's helpers (``_numba_blocks._on_threads``) above ``PARALLEL_MIN`` units of work. Each sequence writes only its
own loss and gradient rows, so the results do not depend on the threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _jit
from ._numba_blocks import _EMPTY, PARALLEL_MIN, _on_threads

_KERNELS: dict = {}  # "ctc" -> its kernel


def _ctc_batch(x, T, N, C, batch_first, labels, offsets, tl, il, blank, log_probs, zero_infinity, gscale,
               want_grad, loss_out, g, order, i0, i1):
    """The sequences ``order[i0:i1]`` (``order``: longest first); ``ctc_sequence`` is bound to the compiled
    ``_ctc_rows.ctc_sequence``. ``x`` and ``g`` are flat, (T, N, C) or (N, T, C)."""
    for i in range(i0, i1):
        n = order[i]
        gn = gscale[n] if want_grad else 0.0
        lab = labels[offsets[n]:offsets[n] + tl[n]]
        base = n * T * C if batch_first else n * C
        tstride = C if batch_first else N * C
        loss_out[n] = ctc_sequence(x, base, tstride, T, C, il[n], lab, blank, log_probs,  # noqa: F821
                                   zero_infinity, gn, want_grad, g)


def _build_ctc():
    from .. import _ctc_rows

    digest = _jit.source_hash(__file__, _ctc_rows.__file__)
    rows = dict(vars(_ctc_rows))
    for name in _ctc_rows.FUNCTIONS:
        rows[name] = njit(cache=True, nogil=True)(
            _jit.specialise(getattr(_ctc_rows, name), rows, f"ctc__{name}__{digest}"))
    namespace = dict(globals())
    namespace["ctc_sequence"] = rows["ctc_sequence"]
    kernel = njit(cache=True, nogil=True)(_jit.specialise(_ctc_batch, namespace, f"sequence__ctc__{digest}"))
    _KERNELS["ctc"] = kernel
    return kernel


def ctc(x, T, N, C, batch_first, log_probs, labels, offsets, target_lengths, input_lengths, blank, zero_infinity,
        gscale, loss_out, grad_out, nthreads):
    kernel = _KERNELS.get("ctc") or _build_ctc()
    want_grad = grad_out is not None
    g = grad_out.reshape(-1) if want_grad else _EMPTY[x.dtype]
    if not want_grad:
        gscale = _EMPTY[np.dtype(np.float64)]
    work = input_lengths.astype(np.float64) * (2 * target_lengths + 1 + C)
    order = np.lexsort((np.arange(N), -work)).astype(np.int64)  # longest first, ties by index
    args = (x.reshape(-1), T, N, C, bool(batch_first), labels, offsets, target_lengths, input_lengths, blank,
            bool(log_probs), bool(zero_infinity), gscale, want_grad, loss_out, g, order)
    if float(work.sum()) < PARALLEL_MIN or nthreads < 2 or N < 2:
        kernel(*args, 0, N)
    else:  # one sequence at a time, longest first: balanced threads
        _on_threads(lambda i0, i1: kernel(*args, i0, i1), N, nthreads, 1)
    return 0.0
