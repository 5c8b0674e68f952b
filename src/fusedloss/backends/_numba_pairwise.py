"""The Numba CPU backend's pairwise losses (``pairwise``, ``pairwise_elements``; the contract is
``fusedloss._pairwise``'s, the interface ``numba_cpu.py``'s).

``pairwise`` runs the losses whose rows are vectors (cosine_embedding, triplet_margin), row by row: ``row`` bound
to the loss's compiled ``_pairwise_rows.<loss>_row``, each row writing only its own loss and gradients, so the
threads (``_numba_blocks._on_threads``) cannot change the results. ``pairwise_elements`` runs those whose row is
one element (margin_ranking, gaussian_nll; not ``vector_rows``) as the elementwise loop runs a loss, through
``point`` (``_pairwise_rows.<loss>_point``) in ``_numba_blocks``'s one loop over fixed blocks (``block_kernel``),
with no float64 array per element in or out; ``pairwise`` refuses them, as the C++ binding does. The CUDA backend
still runs them row by row (``_pairwise_rows.<loss>_row``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import _pairwise_rows
from .._spec import REGISTRY
from . import _jit, _numba_blocks, _vecmath
# the loops' globals (bound through globals() by _jit.specialise)
from ._numba_blocks import (_EMPTY, BLOCK, PARALLEL_MIN, SUB, _blocks, _on_threads, block_kernel,  # noqa: F401
                            run_view)

_KERNELS: dict = {}  # ("pairwise" or "pairwise_elements", loss) -> its kernel
# the pairwise losses whose row is one element: pairwise_elements runs them, pairwise refuses them
_ELEMENTS = frozenset(name for name in _pairwise_rows.row_names() if not REGISTRY[name].vector_rows)


def _pairwise_batch(x1, x2, x3, y, has_y, D, prm, gscale, want_grad, loss_out, g1, g2, g3, i0, i1):
    """Rows ``[i0, i1)``; ``row`` is bound to the loss's compiled ``_pairwise_rows.<loss>_row``."""
    for i in range(i0, i1):
        yi = y[i] if has_y else 0.0
        gn = gscale[i] if want_grad else 0.0
        loss_out[i] = row(x1, x2, x3, i * D, D, yi, prm, gn, want_grad, g1, g2, g3)  # noqa: F821


def _build_pairwise(loss: str):
    # the row functions inlined into the loop: a call per row (a dozen arguments, arrays among them) cost more
    # than a one-element row's arithmetic when those rows ran here (gaussian_nll, margin_ranking: now
    # pairwise_elements); kept for the vector rows, not measured again
    kernel = _jit.pairwise_kernel(loss, _pairwise_batch, __file__, globals(),
                                  njit(inline="always", error_model="numpy"),
                                  njit(cache=True, nogil=True, error_model="numpy"))
    _KERNELS[("pairwise", loss)] = kernel
    return kernel


def pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads):
    """``fusedloss._pairwise``'s contract for the losses whose rows are vectors; those whose row is one element
    run in ``pairwise_elements`` (as the C++ binding's ``pairwise``, this refuses them)."""
    if loss in _ELEMENTS:
        raise ValueError(f"pairwise {loss}: its rows are single elements: call pairwise_elements")
    kernel = _KERNELS.get(("pairwise", loss)) or _build_pairwise(loss)
    args = _jit.pairwise_args(packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, _EMPTY[x1.dtype],
                              _EMPTY[np.dtype(np.float64)])
    N = loss_out.shape[0]
    if N * D < PARALLEL_MIN or nthreads < 2:
        kernel(*args, 0, N)
    else:
        _on_threads(lambda i0, i1: kernel(*args, i0, i1), N, nthreads, max(1, BLOCK // max(D, 1)))
    return None


def _pairwise_elements_run(run, c0, c1, reduce, x1, x2, x3, y, w, prm, denom, value_out, g1, g2, g3):
    """Elements ``[c0, c1)`` of a loss whose row is one element, the body of ``_numba_blocks._block_loop`` as
    ``numba_cpu._run`` is an elementwise loss's: ``point`` (bound to the loss's ``_pairwise_rows.<loss>_point``)
    on each element, with ``w_i / denom`` as its gradient factor; ``value_out`` receives ``w_i l_i``. Optional
    arrays (``x3``, ``y``, ``w``, the outputs) and ``reduce`` are None when not in use (``g3`` with ``x3``).
    With reduce, the run's values go to ``run``."""
    a, b, c = x1[c0:c1], x2[c0:c1], run_view(x3, c0, c1)  # views of the run's own, as in numba_cpu._run
    yr, wr, vr = run_view(y, c0, c1), run_view(w, c0, c1), run_view(value_out, c0, c1)
    h1, h2, h3 = run_view(g1, c0, c1), run_view(g2, c0, c1), run_view(g3, c0, c1)
    for k in range(c1 - c0):
        ck = 0.0
        if x3 is not None:
            ck = np.float64(c[k])
        yk = 0.0
        if y is not None:
            yk = np.float64(yr[k])
        wk = 1.0
        if w is not None:
            wk = wr[k]
        l, d1, d2, d3 = point(np.float64(a[k]), np.float64(b[k]), ck, yk, prm, wk / denom)  # noqa: F821
        if w is not None:
            l = wk * l
        if value_out is not None:
            vr[k] = l
        if g1 is not None:
            h1[k] = d1
            h2[k] = d2
            if x3 is not None:
                h3[k] = d3
        if reduce is not None:
            run[k] = l


def _build_pairwise_elements(loss: str):
    # the loop is _numba_blocks's (block_kernel), the body this file's: both are hashed into the cache entry
    kernel = _jit.pairwise_kernel(loss, _pairwise_elements_run, __file__, globals(),
                                  njit(inline="always", error_model="numpy"),
                                  lambda body: block_kernel(body, SUB, body.__qualname__),
                                  overrides=_vecmath.overrides(),
                                  kind="pairwise_elements", files=(_vecmath.__file__, _numba_blocks.__file__),
                                  bind="point")
    _KERNELS[("pairwise_elements", loss)] = kernel
    return kernel


def pairwise_elements(loss, packed, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3, nthreads):
    """``fusedloss._pairwise``'s contract for the losses whose row is one element (margin_ranking, gaussian_nll)."""
    if loss not in _ELEMENTS:
        raise ValueError(f"pairwise_elements: {loss!r} is not a loss whose rows are single elements")
    kernel = _KERNELS.get(("pairwise_elements", loss)) or _build_pairwise_elements(loss)
    n = x1.shape[0]
    args = (n, BLOCK, True if reduce else None,
            (x1, x2, x3, y, w, tuple(float(v) for v in packed), float(denom), value_out, g1, g2, g3))
    return _blocks(kernel, args, (n + BLOCK - 1) // BLOCK, n >= PARALLEL_MIN, nthreads, reduce)
