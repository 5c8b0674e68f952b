"""The Numba CPU backend: the point and row functions of ``_pointwise.py`` compiled into generic loops.

This module is the backend's interface (the table in ``backends/__init__.py`` loads it): ``supports``, ``info``,
``forget`` and the kernels that write into preallocated outputs, the elementwise ones here and the others
imported from their modules, one concern each:

- ``_numba_blocks.py``: the one loop over fixed reduction blocks (``block_kernel``, run with a body per loss
  kind), the compensated sums, the thread pool (how every loop is cut, summed and handed out to threads);
- ``_numba_points.py``: ``_pointwise.py`` compiled for the CPU, the namespace the loops bind ``point`` and
  ``row`` from, and the hash that names their cache entries;
- here: the elementwise loop's body ``_run`` (``elementwise``, and ``elementwise_metrics`` with the binary
  metrics);
- ``_numba_rows.py``: the multiclass row bodies and cross_entropy's row tiles (``multiclass``,
  ``multiclass_metrics``);
- ``_numba_ctc.py``, ``_numba_pairwise.py``, ``_numba_overlap.py``: the sequence, pairwise and overlap losses,
  each with its own contract (``fusedloss._ctc``, ``._pairwise``, ``._overlap``).

Per loss a body is copied (``_jit.specialise``) with the name it calls (``point``, ``row``) bound to the loss's
compiled function, and ``_numba_blocks.block_kernel`` binds the copy into a copy of the one block loop, compiled
with ``@njit(cache=True, nogil=True)``, lazily, on a loss's first call, and cached on disk, one cache entry per
loss (named after a hash of the body's and the loop's sources, ``_numba_points.digest``).

Optional arrays are passed as ``None``: Numba compiles a specialisation per combination and removes the
``if x is not None`` branches at compile time, so one loop serves every combination of outputs without
paying for the ones not asked for (``reduce`` is passed as ``True`` or ``None`` for the same reason). The
elementwise body writes a run's values to a small buffer that the block loop sums after the run (``_run_sum``),
so that the loop over elements holds no reduction.

Arithmetic is done in float64 whatever the input dtype (inputs are widened on load, outputs rounded once
on store), as the NumPy reference does.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit
from numba.cpython.unsafe.tuple import tuple_setitem

from .. import _config, _pairwise_rows
from .._spec import REGISTRY
from . import _jit, _numba_points
# also the elementwise loop's globals (bound through globals() by _jit.specialise)
from ._numba_blocks import (_DTYPES, _POOL, BLOCK, PARALLEL_MIN, SUB, _blocks, _on_threads, _sum_partials,  # noqa: F401
                            block_kernel, run_view)
# the interface's other kernels, each in its module
from ._numba_ctc import ctc
from ._numba_overlap import overlap_grad, overlap_sums
from ._numba_pairwise import pairwise, pairwise_elements
from ._numba_rows import multiclass, multiclass_metrics

__all__ = ["NAME", "DEVICE", "info", "supports", "forget", "elementwise", "elementwise_metrics", "multiclass",
           "multiclass_metrics", "ctc", "pairwise", "pairwise_elements", "overlap_sums", "overlap_grad"]

NAME = "numba"
DEVICE = False

_KERNELS: dict = {}  # loss -> its elementwise kernel
_SUPPORTED = {**{name: "elementwise" for name in _jit.point_names()},
              **{name: "multiclass" for name in _jit.row_names()}, "ctc": "sequence",
              **{name: "pairwise" for name in _pairwise_rows.row_names()},
              # the overlap passes are the same for every overlap loss (they differ in combining the sums)
              **{name: "overlap" for name, spec in REGISTRY.items() if spec.kind == "overlap"}}


def info() -> dict:
    return {
        "version": numba.__version__,
        "threads": _config.get_num_threads(),
        "pool_workers": _POOL.get("size", 0) if _POOL.get("pid") == os.getpid() else 0,
        "build": f"njit(cache=True, nogil=True), blocks of {BLOCK} claimed by the threads above {PARALLEL_MIN} "
                 "elements",
    }


def supports(spec, dtype) -> bool:
    return (_SUPPORTED.get(spec.name) == spec.kind or spec.name in _jit.CUSTOM) and np.dtype(dtype) in _DTYPES


def forget(loss: str) -> None:
    """Drop the kernels of ``loss`` (a custom loss defined again or removed)."""
    _KERNELS.pop(loss, None)


def _run(run, c0, c1, reduce, p, y, w, params, scale, value_out, grad_out, hess_out, cols):
    """Elements ``[c0, c1)`` (a run of at most ``SUB``), the body of the elementwise loop
    (``_numba_blocks._block_loop``); ``point`` and ``VEC_SLOT`` are bound per loss (``_build``).

    ``params`` is the loss's tuple of scalar parameters (``LossSpec.packed``). ``cols`` (None or one value
    per column of the last axis, ``p`` read as rows of ``cols.size``) replaces ``params[VEC_SLOT]``.
    Writes the run's outputs and, with reduce, its values to ``run``.
    """
    pr, yr, wr = p[c0:c1], y[c0:c1], run_view(w, c0, c1)  # views of the run's own (run_view says why)
    vr, gr, hr = run_view(value_out, c0, c1), run_view(grad_out, c0, c1), run_view(hess_out, c0, c1)
    for k in range(c1 - c0):  # no reduction in this loop: the values go to `run` (it vectorises)
        prm = params
        if cols is not None:  # VEC_SLOT is bound per loss; the tuple keeps its type (float64s)
            prm = tuple_setitem(params, VEC_SLOT, np.float64(cols[(c0 + k) % cols.shape[0]]))  # noqa: F821
        l, g, h = point(np.float64(pr[k]), np.float64(yr[k]), prm)  # noqa: F821 (bound per loss)
        if w is not None:
            wi = np.float64(wr[k])
            l = l * wi
            g = g * wi
            h = h * wi
        if value_out is not None:
            vr[k] = l
        if grad_out is not None:
            gr[k] = g * scale
        if hess_out is not None:
            hr[k] = h * scale
        if reduce is not None:
            run[k] = l


def _build(loss: str):
    """The elementwise kernel of ``loss``, built-in or custom (Numba compiles it on its first call)."""
    ns = _numba_points.namespace()
    namespace = dict(globals())
    custom = _jit.custom_point(loss, ns, njit(inline="always", error_model="numpy"))
    key = _numba_points.digest(__file__)
    if custom is not None:  # a custom loss: its formula's key names the cache entry; x / 0 gives inf as in NumPy
        namespace["point"], formula_key = custom
        namespace["VEC_SLOT"] = 0
        key = f"{key}__{formula_key}"
    else:
        namespace["point"] = ns[f"{loss}_point"]
        namespace["VEC_SLOT"] = _jit.vector_slot(loss)
    kernel = block_kernel(_jit.specialise(_run, namespace, f"elementwise_run__{loss}__{key}"), SUB,
                          f"elementwise__{loss}__{key}")
    _KERNELS[loss] = kernel
    return kernel


def elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads, cols=None):
    kernel = _KERNELS.get(loss) or _build(loss)
    n = p.shape[0]
    args = (n, BLOCK, True if reduce else None, (p, y, w, params, scale, value_out, grad_out, hess_out, cols))
    return _blocks(kernel, args, (n + BLOCK - 1) // BLOCK, n >= PARALLEL_MIN, nthreads, reduce)


def _binary_metrics_rows(p, y, w, probabilities, nbins, ece_bins, table, span, r0, r1):
    """The binary metrics (fusedloss._binary_metrics: ``table`` is their specification) of table rows
    ``[r0, r1)``, row r summing elements ``[r span, (r + 1) span)`` (``span``: whole blocks). ``element_terms`` is
    bound to the compiled ``_binary_metrics.element_terms`` (``_jit.binary_metrics_kernel``)."""
    n = p.shape[0]
    for r in range(r0, r1):
        bad = 0.0
        hit = 0.0
        sq = 0.0
        for i in range(r * span, min(n, (r + 1) * span)):
            yv = np.float64(y[i])
            wv = 1.0
            if w is not None:
                wv = np.float64(w[i])
            q, pr, nan, right, err = element_terms(np.float64(p[i]), yv, wv, probabilities)  # noqa: F821
            bad += nan
            hit += right
            sq += err
            if nbins > 0:
                b = 3 + min(int(pr * nbins), nbins - 1)
                table[r, b] += wv * yv
                table[r, b + nbins] += wv * (1.0 - yv)
            if ece_bins > 0:
                b = 3 + 2 * nbins + min(int(pr * ece_bins), ece_bins - 1)
                table[r, b] += wv
                table[r, b + ece_bins] += wv * q
                table[r, b + 2 * ece_bins] += wv * yv
        table[r, 0] += bad
        table[r, 1] += hit
        table[r, 2] += sq


def elementwise_metrics(loss, params, p, y, w, scale, reduce, value_out, grad_out, nthreads, cols, table, nbins,
                        probabilities, ece_bins=0):
    """``elementwise`` with the binary metrics (the contract of ``fusedloss._binary_metrics.run``): each table
    row's metrics, then the loss over the same blocks (the metrics first: the gradient may overwrite ``p``). The
    blocks' partial sums and their total are those of ``elementwise``."""
    kernel = _KERNELS.get(loss) or _build(loss)
    n = p.shape[0]
    args = (n, BLOCK, True if reduce else None, (p, y, w, params, scale, value_out, grad_out, None, cols))
    nblocks = (n + BLOCK - 1) // BLOCK
    table[...] = 0.0
    rows = table.shape[0]
    per = max(1, (nblocks + rows - 1) // rows)
    used = (nblocks + per - 1) // per
    partial = np.zeros(nblocks)

    rows_kernel = _KERNELS.get(("binary", "metrics"))
    if rows_kernel is None:
        rows_kernel = _KERNELS[("binary", "metrics")] = _jit.binary_metrics_kernel(
            _binary_metrics_rows, __file__, globals(), njit(inline="always"), njit(cache=True, nogil=True))

    def run(r0, r1):
        for r in range(r0, r1):
            rows_kernel(p, y, w, probabilities, nbins, ece_bins, table, per * BLOCK, r, r + 1)
            kernel(*args, partial, r * per, min(nblocks, (r + 1) * per))

    if n >= PARALLEL_MIN and nthreads > 1 and used > 1:
        _on_threads(run, used, nthreads, 1)
    else:
        run(0, used)
    return _sum_partials(partial) if reduce else 0.0
