"""The Numba CPU backend: the point and row functions of ``_pointwise.py`` compiled into generic loops.

Two loops: ``_loop`` (elementwise losses, calling the global ``point``) and ``_row_loop`` (multiclass
losses, calling the global ``row``). Per loss the loop is copied (``_jit.specialise``) with that name bound to
the loss's compiled function, and the copy is compiled with ``@njit(cache=True, nogil=True)``, lazily, on a
loss's first call, and cached on disk, one cache entry per loss.

Threads: a loop runs over a range of its fixed blocks ``[b0, b1)``, writing each block's partial sum. A call
on one thread runs every block; above ``PARALLEL_MIN`` elements the calling thread and helper threads of a
pool (``_on_threads``) claim chunks of blocks in order until none is left, so a thread that the system
preempts delays only its own chunk, and the others take the rest. The kernels release the GIL. There is no
``parallel=True`` copy: Numba's parfors compile took three to four times as long as the serial loop's, per
specialisation, and Numba's threading layer cannot hand out blocks dynamically.

Optional arrays are passed as ``None``: Numba compiles a specialisation per combination and removes the
``if x is not None`` branches at compile time, so one loop serves every combination of outputs without
paying for the ones not asked for (``reduce`` is passed as ``True`` or ``None`` for the same reason). The
row functions take their optional arrays as empty arrays with flags instead (their convention).

The point functions are compiled with ``_vecmath.overrides()`` in place of ``math``: elementary functions
emitted as plain arithmetic, without C-library calls or branches, so that the loops vectorise. Kernels use
``error_model="numpy"`` (a division by zero gives inf or nan, as in NumPy and C++, instead of a Python
exception check in every loop). The elementwise loop writes a run's values to a small buffer and sums it
after the run, so that the loop over elements holds no reduction.

Arithmetic is done in float64 whatever the input dtype (inputs are widened on load, outputs rounded once
on store), as the NumPy reference does. The reduction sums ``w * l`` over fixed blocks (``BLOCK``
elements, or the whole rows that fit in that many), one float64 partial per block, and adds the partials
in block order: whichever thread computed a block, the same additions happen in the same order, so the
result is bit-identical for any thread count. Inside a block, runs of ``SUB`` elements (or single rows)
are added with Neumaier's compensation, and so are the partials: the total is within a few ulp of the
exact sum, so a merge of partial results over pieces agrees with the whole call to 1e-15.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit
from numba.cpython.unsafe.tuple import tuple_setitem

from .. import _config, _overlap_rows, _pairwise_rows, _pointwise
from .._spec import REGISTRY
from . import _jit, _vecmath

NAME = "numba"
DEVICE = False

BLOCK = 4096  # elements per reduction block (a constant: the partial sums must not depend on threads)
PARALLEL_MIN = 1 << 17  # below this many elements a call runs on its own thread (handing out work would dominate)

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


SUB = 256  # elements per run inside a block (summed by `_run_sum`); the runs' sums are added with compensation


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


def _row_blocks(R: int, C: int) -> tuple[int, int]:
    """(rows per block, blocks) for the row loops: each block holds a whole number of rows, about ``BLOCK``
    elements, so the partial sums depend only on the shape, not on the threads."""
    per = max(1, BLOCK // C)
    return per, (R + per - 1) // per


@njit(inline="always")
def _zero_row(g, h, base, C, want_g, want_h):
    """An ignored row's gradient and Hessian: exactly 0, whatever the logits."""
    for j in range(C):
        if want_g:
            g[base + j] = 0.0
        if want_h:
            h[base + j] = 0.0


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


def _loop(p, y, w, params, scale, value_out, grad_out, hess_out, reduce, cols, partial, b0, b1):
    """The generic loop over blocks ``[b0, b1)``; ``point`` and ``VEC_SLOT`` are bound per loss (see the module
    docstring).

    ``params`` is the loss's tuple of scalar parameters (``LossSpec.packed``). ``cols`` (None or one value
    per column of the last axis, ``p`` read as rows of ``cols.size``) replaces ``params[VEC_SLOT]``.
    Writes each block's sum(w * l) to ``partial`` and returns those blocks' total (0 without reduce).
    """
    n = p.shape[0]
    for blk in range(b0, b1):
        start = blk * BLOCK
        stop = min(start + BLOCK, n)
        s = 0.0
        err = 0.0
        if reduce is not None:
            run = np.empty(SUB)  # a run's values: the loop over elements holds no reduction (it vectorises)
        for c0 in range(start, stop, SUB):
            c1 = min(c0 + SUB, stop)
            # The run through views of its own: LLVM's run-time check that outputs do not overlap inputs
            # is then exact per run. Indexing the whole arrays, it bounded the accesses conservatively (by a
            # run past the end) and took the scalar loop, 1.6x to 17x slower, whenever an output began
            # within SUB elements after an input, as two arrays allocated one after the other often do
            # (benchmarks/placement.py).
            pr = p[c0:c1]
            yr = y[c0:c1]
            if w is not None:
                wr = w[c0:c1]
            if value_out is not None:
                vr = value_out[c0:c1]
            if grad_out is not None:
                gr = grad_out[c0:c1]
            if hess_out is not None:
                hr = hess_out[c0:c1]
            for k in range(c1 - c0):
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
            if reduce is not None:
                s, err = _compensated_add(s, err, _run_sum(run, c1 - c0))
        if reduce is not None:
            partial[blk] = _compensated_total(s, err)
    return _loop_result(partial[b0:b1], reduce)


def _row_loop(x, labels, q, w, cw, has_cw, soft, C, ignore, params, scale, value_out, g, h, want_g, want_h,
              reduce, per, partial, b0, b1):
    """The generic multiclass loop over rows of ``C`` logits; ``row`` is bound per loss.

    ``labels`` is None for soft targets ``q``; ``q``, ``cw``, ``g`` and ``h`` are always arrays (empty when
    not in use, with the flags saying so), as the row functions take them. Rows labelled ``ignore`` or
    weighted 0 get value, gradient and Hessian 0. Blocks ``[b0, b1)`` of ``per`` rows (``_row_blocks``), as
    ``_loop``'s.
    """
    R = x.shape[0] // C
    for blk in range(b0, b1):
        start = blk * per
        stop = min(start + per, R)
        s = 0.0
        err = 0.0
        for r in range(start, stop):
            base = r * C
            t = 0
            if labels is not None:
                t = labels[r]
            rw = 1.0
            if w is not None:
                rw = np.float64(w[r])
            if (labels is not None and t == ignore) or rw == 0.0:  # ignored: exactly 0, whatever the logits
                value = 0.0
                _zero_row(g, h, base, C, want_g, want_h)
            else:
                value = row(x, base, C, t, q, cw, has_cw, soft, params, rw, scale, g, h, want_g,  # noqa: F821
                            want_h)
            if value_out is not None:
                value_out[r] = value
            if reduce is not None:
                s, err = _compensated_add(s, err, value)
        if reduce is not None:
            partial[blk] = _compensated_total(s, err)
    return _loop_result(partial[b0:b1], reduce)


def _row_metrics_loop(x, labels, w, cw, has_cw, C, ignore, params, scale, value_out, g, want_g, rank_out, conf_out,
                      nll_out, entropy_out, reduce, per, partial, b0, b1):
    """``_row_loop`` for hard labels without a Hessian, through ``row_metrics`` (``<loss>_row_metrics``, bound per
    loss), which also gives each row's metrics: written to ``rank_out`` (None: not asked for), ``conf_out``,
    ``nll_out`` and ``entropy_out`` (None: not asked for); ignored rows get rank -1 and 0.0."""
    R = x.shape[0] // C
    for blk in range(b0, b1):
        start = blk * per
        stop = min(start + per, R)
        s = 0.0
        err = 0.0
        for r in range(start, stop):
            base = r * C
            t = labels[r]
            rw = 1.0
            if w is not None:
                rw = np.float64(w[r])
            if t == ignore or rw == 0.0:  # ignored: exactly 0, whatever the logits
                value = 0.0
                _zero_row(g, g, base, C, want_g, False)
                rank, conf, nll, ent = -1, 0.0, 0.0, 0.0
            else:
                value, rank, conf, nll, ent = row_metrics(x, base, C, t, cw, has_cw, params, rw,  # noqa: F821
                                                          scale, g, want_g, rank_out is not None,
                                                          entropy_out is not None)
            if rank_out is not None:
                rank_out[r] = rank
            conf_out[r] = conf
            nll_out[r] = nll
            if entropy_out is not None:
                entropy_out[r] = ent
            if value_out is not None:
                value_out[r] = value
            if reduce is not None:
                s, err = _compensated_add(s, err, value)
        if reduce is not None:
            partial[blk] = _compensated_total(s, err)
    return _loop_result(partial[b0:b1], reduce)


# cross_entropy's rows of at most TILE_MAX_C classes run TILE at a time (_ce_tile_loop). The bound is where the
# row loops catch up (value_and_grad, float32, 1 thread: 2.7x at 10 classes, 1.05x at 24, 0.86x at 32); the
# C++ kernel's is higher (rows.hpp kTileMaxC), its tile loops being vectorised throughout.
TILE = 16
TILE_MAX_C = 24


def _ce_tile_loop(x, labels, w, has_w, cw, has_cw, C, ignore, params, scale, value_out, want_v, g, h, want_g, want_h,
                  want_m, want_r, want_e, rank_out, conf_out, nll_out, entropy_out, reduce, per, partial, b0, b1):
    """``_row_loop`` of cross_entropy with hard labels, no softcap and no penalty, for rows of at most TILE_MAX_C
    classes (and, with ``want_m``, ``_row_metrics_loop``: the same values and gradients): TILE rows at a time,
    the max and the sums of ``ce_row_from_max`` taken across the rows of a tile (a copy of its logits, class by
    class), then each row's scalars and gradient from ``_pointwise``'s functions. Row by row, a row of ten
    classes cost a call and its set-up, several times its arithmetic. C++ twin: rows.hpp cross_entropy::tile.
    Every argument has one type whatever the call asks for (flags beside empty arrays, ``reduce`` a bool), so
    that Numba compiles it once per dtype."""
    R = x.shape[0] // C
    L = TILE
    ls, zl = params[0], params[1]
    e_c = ls / C
    like = x[0]
    xt = np.zeros((C, L), x.dtype)
    m = np.empty(L, x.dtype)
    sh = np.empty(L)
    s1 = np.empty(L)
    k = np.empty(L)
    u = np.empty(L)
    v = np.empty(L)
    ent = np.empty(L)
    rank = np.empty(L, np.int64)
    t = np.empty(L, np.int64)
    rw = np.empty(L)
    kept = np.empty(L, np.bool_)
    bad = np.empty(L, np.bool_)
    f = np.empty(L)
    coef = np.empty(L)
    st_s = np.empty(L)
    st_sm1 = np.empty(L)
    st_inv = np.empty(L)
    st_log = np.empty(L)
    lg = np.empty(L, x.dtype)
    lh = np.empty(L, x.dtype)
    gt = np.empty((C, L), x.dtype)
    ht = np.empty((C, L), x.dtype)
    for blk in range(b0, b1):
        start = blk * per
        stop = min(start + per, R)
        s = 0.0
        err = 0.0
        for q0 in range(start, stop, L):
            nr = min(L, stop - q0)
            for r in range(L):
                kept[r] = False
                t[r] = 0
                rw[r] = 1.0
                if r < nr:
                    label = labels[q0 + r]
                    if has_w:
                        rw[r] = np.float64(w[q0 + r])
                    if label != ignore and rw[r] != 0.0:
                        kept[r] = True
                        t[r] = label
            for j in range(C):
                for r in range(nr):
                    xt[j, r] = x[(q0 + r) * C + j]
            # pass 1: the max (nan skipped, as row_max) and the label's rank (as row_max_rank)
            for r in range(L):
                m[r] = -np.inf
                rank[r] = 0
            for j in range(C):
                for r in range(L):
                    m[r] = xt[j, r] if xt[j, r] > m[r] else m[r]
            if want_r:
                for j in range(C):
                    for r in range(L):
                        x_t = xt[t[r], r]
                        if (j < t[r] and xt[j, r] >= x_t) or (j >= t[r] and xt[j, r] > x_t):
                            rank[r] += 1
            # pass 2: the exponentials' sums (row_exp_sums), smoothing's (ce_elem_sums), the entropy's
            for r in range(L):
                sh[r] = row_shift(m[r], 0.0)  # noqa: F821
                s1[r] = 0.0
                k[r] = 0.0
                u[r] = 0.0
                v[r] = 0.0
                ent[r] = 0.0
            for j in range(C):
                for r in range(L):
                    e = exp_diff_as(xt[j, r], sh[r], 1.0, like)  # noqa: F821
                    one = e == 1.0
                    k[r] += 1.0 if one else 0.0
                    s1[r] += 0.0 if one else e
            if ls != 0.0:
                for j in range(C):
                    cj = cw[j] if has_cw else 1.0
                    for r in range(L):
                        du, dv = ce_elem_sums(xt[j, r], 0.0, cj, False, ls, e_c, 0.0, sh[r])  # noqa: F821
                        u[r] += du
                        v[r] += dv
            if want_e:
                for j in range(C):
                    for r in range(L):
                        z = xt[j, r]
                        e = exp_diff_as(z, sh[r], 1.0, like)  # noqa: F821
                        if e != 0.0:
                            ent[r] += e * (sh[r] - z)
            # each row's scalars, then the gradient across the tile's rows (from the copy: g may be x)
            for r in range(L):
                value = 0.0
                rk, conf, nll, en = -1, 0.0, 0.0, 0.0
                st = row_state(sh[r], s1[r], k[r])  # noqa: F821
                bad[r] = False
                f[r] = 0.0
                st_s[r], st_sm1[r], st_inv[r], st_log[r] = st[1], st[2], st[3], st[4]
                coef[r] = 0.0
                if kept[r]:
                    if no_softmax(m[r], st[1]):  # noqa: F821
                        bad[r] = True
                        value = np.nan
                        conf, nll, en = np.nan, np.nan, np.nan
                    else:
                        tr = t[r]
                        x_t = xt[tr, r]
                        ct = cw[tr] if has_cw else 1.0
                        value, coef[r] = ce_row_finish(st, sh[r], False, u[r], v[r], ct, x_t, ls, e_c, zl)  # noqa: F821
                        rk, conf, nll = rank[r], st[3], -row_log_p(x_t, st)  # noqa: F821
                        en = ce_entropy(st, ent[r])  # noqa: F821
                        f[r] = rw[r] * scale
                        gx, hx = ce_elem_grad(x_t, True, 0.0, ct, False, ls, e_c, 0.0, zl, st,  # noqa: F821
                                              coef[r], want_h, 0.0, 0.0)
                        lg[r] = f[r] * gx
                        lh[r] = f[r] * hx
                    value = rw[r] * value
                if r < nr:
                    i = q0 + r
                    if want_m:
                        if want_r:
                            rank_out[i] = rk
                        conf_out[i] = conf
                        nll_out[i] = nll
                        if want_e:
                            entropy_out[i] = en
                    if want_v:
                        value_out[i] = value
                    if reduce:
                        s, err = _compensated_add(s, err, value)
            if want_g or want_h:
                for j in range(C):
                    cj = cw[j] if has_cw else 1.0
                    for r in range(L):
                        gx, hx = ce_elem_grad(xt[j, r], False, 0.0, cj, False, ls, e_c, 0.0, zl,  # noqa: F821
                                              (sh[r], st_s[r], st_sm1[r], st_inv[r], st_log[r]), coef[r], want_h,
                                              0.0, 0.0)
                        gt[j, r] = f[r] * gx
                        ht[j, r] = f[r] * hx
                for r in range(nr):
                    base = (q0 + r) * C
                    if not kept[r]:  # ignored: exactly 0, whatever the logits
                        _zero_row(g, h, base, C, want_g, want_h)
                    elif bad[r]:
                        nan_row(base, C, g, h, want_g, want_h)  # noqa: F821
                    else:
                        for j in range(C):
                            if want_g:
                                g[base + j] = gt[j, r]
                            if want_h:
                                h[base + j] = ht[j, r]
                        if want_g:
                            g[base + t[r]] = lg[r]
                        if want_h:
                            h[base + t[r]] = lh[r]
        if reduce:
            partial[blk] = _compensated_total(s, err)
    return _sum_partials(partial[b0:b1]) if reduce else 0.0


def _tiled(loss: str, packed, C: int) -> bool:
    """Whether a call of ``loss`` with hard labels runs ``_ce_tile_loop``."""
    return loss == "cross_entropy" and C <= TILE_MAX_C and packed[2] == 0.0 and packed[3] == 0.0


RUN = 256  # exponentials per run in ``_row_exp_sums_runs`` (shorter runs: 30% slower at 256 x 32000)
RUNS_MIN = 16  # shorter rows take the plain loop (the run buffer's allocation costs more than it saves)


@njit(nogil=True, error_model="numpy", fastmath={"reassoc"})
def _run_exp_sums(buf, n):
    """(s1, k) of the exponentials ``buf[:n]`` as ``row_exp_sums`` defines them (s1 sums those that are not 1,
    k counts those that are), the ones selected out rather than branched on.

    In float64, with reassociation allowed in this function alone (not inlined in Numba's IR, so the flag stays
    on its own instructions): LLVM then sums in vector lanes of the CPU's width, 3.8x faster than eight
    hand-interleaved scalar sums, which it did not vectorise. The order is LLVM's, fixed for a given CPU: the
    same bits for any thread count, possibly other last bits on a CPU of another vector width.
    """
    s1 = 0.0
    k = 0.0
    for j in range(n):
        e = np.float64(buf[j])
        one = e == 1.0
        s1 += 0.0 if one else e
        k += 1.0 if one else 0.0
    return s1, k


def _row_exp_sums_runs(x, base, C, sh, cap, inv_t, like):
    """``_pointwise.row_exp_sums`` as the CPU backend compiles it: the same two sums, faster, in another fixed
    order (so a row's result does not depend on the thread count either).

    The plain loop adds each exponential to ``s1`` in turn, a reduction in strict order that LLVM does not
    vectorise, so the exponentials in it (``_vecmath``'s, vectorisable) run one at a time and the additions
    wait on each other. Here each run of ``RUN`` exponentials is written to a buffer by a loop without a
    reduction, which vectorises, and summed by ``_run_exp_sums`` (vector lanes); the runs' sums are added in
    row order. Shorter rows take the plain loop (``row_exp_sums_plain``: the module's own
    function under another name).
    """
    if C < RUNS_MIN:
        return row_exp_sums_plain(x, base, C, sh, cap, inv_t, like)  # noqa: F821 (bound in the namespace)
    buf = np.full(min(RUN, C), like)  # like's type: the exponentials are exact in it (exp_diff_as)
    s1 = 0.0
    k = 0.0
    for c0 in range(0, C, RUN):
        n = min(RUN, C - c0)
        xr = x[base + c0:base + c0 + n]
        for j in range(n):
            buf[j] = exp_diff_as(capped(xr[j], cap), sh, inv_t, like)  # noqa: F821 (vectorisable, bound)
        r1, rk = _run_exp_sums(buf, n)
        s1 += r1
        k += rk
    return s1, k


NEG_INF32 = np.float32(-np.inf)  # the lanes' start: float32 for float32 data, so the comparisons stay float32


@njit(inline="always")
def _row_max_lanes(x, base, C):
    """``_pointwise.row_max`` as the CPU backend compiles it: the max over the row in sixteen lanes (element j
    into lane j % 16), folded pairwise at the end, then the tail in order.

    The plain loop's running max is a chain of dependent compare-and-selects that LLVM does not vectorise (it
    would need to know there are no NaNs): one element per cycle or so, 1 ns per logit here against NumPy's
    0.14. The sixteen independent lanes vectorise. The result is the same number: the max of a set does not
    depend on the order, NaN is skipped in every lane as in the plain loop, and a row of -inf gives -inf (the
    one difference: which of two zeros of opposite sign is kept, which changes no softmax row's result).
    """
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = NEG_INF32
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = NEG_INF32
    xr = x[base:base + C]  # the row as a view of its own: exact bounds for LLVM
    j = 0
    while j + 16 <= C:
        v = xr[j]
        a0 = v if v > a0 else a0
        v = xr[j + 1]
        a1 = v if v > a1 else a1
        v = xr[j + 2]
        a2 = v if v > a2 else a2
        v = xr[j + 3]
        a3 = v if v > a3 else a3
        v = xr[j + 4]
        a4 = v if v > a4 else a4
        v = xr[j + 5]
        a5 = v if v > a5 else a5
        v = xr[j + 6]
        a6 = v if v > a6 else a6
        v = xr[j + 7]
        a7 = v if v > a7 else a7
        v = xr[j + 8]
        b0 = v if v > b0 else b0
        v = xr[j + 9]
        b1 = v if v > b1 else b1
        v = xr[j + 10]
        b2 = v if v > b2 else b2
        v = xr[j + 11]
        b3 = v if v > b3 else b3
        v = xr[j + 12]
        b4 = v if v > b4 else b4
        v = xr[j + 13]
        b5 = v if v > b5 else b5
        v = xr[j + 14]
        b6 = v if v > b6 else b6
        v = xr[j + 15]
        b7 = v if v > b7 else b7
        j += 16
    a0 = b0 if b0 > a0 else a0
    a1 = b1 if b1 > a1 else a1
    a2 = b2 if b2 > a2 else a2
    a3 = b3 if b3 > a3 else a3
    a4 = b4 if b4 > a4 else a4
    a5 = b5 if b5 > a5 else a5
    a6 = b6 if b6 > a6 else a6
    a7 = b7 if b7 > a7 else a7
    a0 = a4 if a4 > a0 else a0
    a1 = a5 if a5 > a1 else a1
    a2 = a6 if a6 > a2 else a2
    a3 = a7 if a7 > a3 else a3
    a0 = a2 if a2 > a0 else a0
    a1 = a3 if a3 > a1 else a1
    m = a1 if a1 > a0 else a0
    while j < C:
        v = xr[j]
        m = v if v > m else m
        j += 1
    return m


_state: dict = {}  # "ns": the compiled point functions, "hash": source hash (built on first use)
_STATE_LOCK = threading.Lock()  # guards the one-time build of _state
_KERNELS: dict = {}  # loss (or (loss, "metrics")) -> its kernel
_SUPPORTED = {**{name: "elementwise" for name in _jit.point_names()},
              **{name: "multiclass" for name in _jit.row_names()}, "ctc": "sequence",
              **{name: "pairwise" for name in _pairwise_rows.row_names()},
              # the overlap passes are the same for every overlap loss (they differ in combining the sums)
              **{name: "overlap" for name, spec in REGISTRY.items() if spec.kind == "overlap"}}
_EMPTY = {dt: np.empty(0, dt) for dt in (*_DTYPES, np.dtype(np.int64))}  # stand-ins for arrays not in use


def _decorate(fn):
    """How ``_pointwise``'s functions are compiled: inlined into their callers (in Numba's IR, so that a
    point function's unused outputs and constant arguments fold away), except the row functions, which
    are compiled once each as functions of their own that the row loops call (one call per row): a row
    function is large, and inlining it would type it again in every specialisation of the row loop."""
    if fn.__name__.endswith("_row"):
        return njit(nogil=True, error_model="numpy")(fn)
    return njit(inline="always", error_model="numpy")(fn)


def _build(loss: str, metrics: bool = False):
    """The kernel of ``loss`` (Numba compiles it on its first call); ``metrics``: that of its metrics pass
    (``_row_metrics_loop``)."""
    if "hash" not in _state:  # first use; several threads may get here at once
        with _STATE_LOCK:
            if "hash" not in _state:
                ns = _jit.compile_namespace(_decorate, overrides=_vecmath.overrides())
                ns.update(np=np, RUN=RUN, RUNS_MIN=RUNS_MIN, _run_exp_sums=_run_exp_sums,
                          row_exp_sums_plain=ns["row_exp_sums"])
                ns["row_exp_sums"] = njit(inline="always", error_model="numpy")(
                    _jit.specialise(_row_exp_sums_runs, ns, "row_exp_sums_runs"))
                ns["row_max"] = _row_max_lanes
                _state["ns"] = ns
                # last: its presence means "ns" is there
                _state["hash"] = _jit.source_hash(__file__, _vecmath.__file__)
    namespace = dict(globals())
    custom = _jit.custom_point(loss, _state["ns"], njit(inline="always", error_model="numpy"))
    key, options = _state["hash"], {"error_model": "numpy"}
    if custom is not None:  # a custom loss: its formula's key names the cache entry; x / 0 gives inf as in NumPy
        template, kind = _loop, "elementwise"
        namespace["point"], formula_key = custom
        namespace["VEC_SLOT"] = 0
        key = f"{key}__{formula_key}"
    elif metrics:
        template, kind = _row_metrics_loop, "metrics"
        namespace["row_metrics"] = _state["ns"][f"{loss}_row_metrics"]
    elif _SUPPORTED[loss] == "elementwise":
        template, kind = _loop, "elementwise"
        namespace["point"] = _state["ns"][f"{loss}_point"]
        namespace["VEC_SLOT"] = _jit.vector_slot(loss)
    else:
        template, kind = _row_loop, "multiclass"
        namespace["row"] = _state["ns"][f"{loss}_row"]
    kernel = njit(cache=True, nogil=True, **options)(_jit.specialise(template, namespace, f"{kind}__{loss}__{key}"))
    _KERNELS[(loss, "metrics") if metrics else loss] = kernel
    return kernel


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


def _on_threads(run, nitems: int, nthreads: int, chunk: int) -> None:
    """``run(i0, i1)`` over ``[0, nitems)`` in chunks of ``chunk`` items, claimed in order by the calling thread
    and up to ``nthreads - 1`` helpers until none is left (a preempted thread holds up one chunk, not a fixed
    share). Returns when every chunk is done."""
    claims = itertools.count()  # next() is atomic under the GIL

    def work():
        while True:
            i0 = next(claims) * chunk
            if i0 >= nitems:
                return
            run(i0, min(i0 + chunk, nitems))

    helpers = min(nthreads, (nitems + chunk - 1) // chunk) - 1
    futures = [_helpers(helpers).submit(work) for _ in range(helpers)] if helpers > 0 else []
    try:
        work()
    finally:
        for future in futures:
            # a helper still queued (behind another caller's work) has nothing left to do: dropped, not awaited
            if not future.cancel():
                future.result()


def _blocks(kernel, args: tuple, nblocks: int, threaded: bool, nthreads: int, reduce) -> float:
    """``kernel(*args, partial, b0, b1)`` over every block, on this thread or, if ``threaded``, on ``nthreads``
    (chunks of about a quarter of each thread's share); the total of the blocks' partial sums."""
    partial = np.zeros(nblocks)
    if not threaded or nthreads < 2 or nblocks < 2:
        return kernel(*args, partial, 0, nblocks)
    _on_threads(lambda b0, b1: kernel(*args, partial, b0, b1), nblocks, nthreads, max(1, nblocks // (4 * nthreads)))
    return _sum_partials(partial) if reduce else 0.0


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


def elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads, cols=None):
    kernel = _KERNELS.get(loss) or _build(loss)
    args = (p, y, w, params, scale, value_out, grad_out, hess_out, True if reduce else None, cols)
    n = p.shape[0]
    return _blocks(kernel, args, (n + BLOCK - 1) // BLOCK, n >= PARALLEL_MIN, nthreads, reduce)


@njit(cache=True, nogil=True)
def _binary_metrics_rows(p, y, w, probabilities, nbins, table, per, r0, r1):
    """The binary metrics (fusedloss._binary_metrics: ``table`` is their specification) of table rows
    ``[r0, r1)``, row r summing blocks ``[r per, (r + 1) per)``."""
    n = p.shape[0]
    for r in range(r0, r1):
        start = r * per * BLOCK
        stop = min(n, start + per * BLOCK)
        bad = 0.0
        hit = 0.0
        sq = 0.0
        for i in range(start, stop):
            xv = np.float64(p[i])
            yv = np.float64(y[i])
            wv = 1.0
            if w is not None:
                wv = np.float64(w[i])
            if probabilities:
                pr = xv
                positive = xv > 0.5
            else:
                e = np.exp(-abs(xv))  # sigmoid as the C++ kernels round it (math.hpp: sigmoid_pair)
                inv = 1.0 / (1.0 + e)
                pr = inv if xv >= 0.0 else e * inv
                positive = xv > 0.0
            hit += wv * (yv if positive else 1.0 - yv)
            d = pr - yv
            sq += wv * (d * d)
            if not pr >= 0.0:  # nan: counted, and in bin 0
                bad += 1.0
                pr = 0.0
            if nbins > 0:
                b = min(int(pr * nbins), nbins - 1)
                table[r, 3 + b] += wv * yv
                table[r, 3 + nbins + b] += wv * (1.0 - yv)
        table[r, 0] += bad
        table[r, 1] += hit
        table[r, 2] += sq


def elementwise_metrics(loss, params, p, y, w, scale, reduce, value_out, grad_out, nthreads, cols, table, nbins,
                        probabilities):
    """``elementwise`` with the binary metrics (the contract of ``fusedloss._binary_metrics.run``): each table
    row's metrics, then the loss over the same blocks (the metrics first: the gradient may overwrite ``p``). The
    blocks' partial sums and their total are those of ``elementwise``."""
    kernel = _KERNELS.get(loss) or _build(loss)
    args = (p, y, w, params, scale, value_out, grad_out, None, True if reduce else None, cols)
    n = p.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    table[...] = 0.0
    rows = table.shape[0]
    per = max(1, (nblocks + rows - 1) // rows)
    used = (nblocks + per - 1) // per
    partial = np.zeros(nblocks)

    def run(r0, r1):
        for r in range(r0, r1):
            _binary_metrics_rows(p, y, w, probabilities, nbins, table, per, r, r + 1)
            kernel(*args, partial, r * per, min(nblocks, (r + 1) * per))

    if n >= PARALLEL_MIN and nthreads > 1 and used > 1:
        _on_threads(run, used, nthreads, 1)
    else:
        run(0, used)
    return _sum_partials(partial) if reduce else 0.0


def multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
               nthreads):
    if labels is not None and _tiled(loss, packed, C):
        return _tiles(x, labels, w, cw, C, ignore_index, packed, scale, reduce, value_out, grad_out, hess_out,
                      None, None, None, None, nthreads)
    kernel = _KERNELS.get(loss) or _build(loss)
    empty = _EMPTY[x.dtype]
    per, nblocks = _row_blocks(x.shape[0] // C, C)
    args = (
        x, labels, empty if q is None else q, w, empty if cw is None else cw, cw is not None, labels is None,
        C, ignore_index, packed, scale, value_out,
        empty if grad_out is None else grad_out, empty if hess_out is None else hess_out,
        grad_out is not None, hess_out is not None, True if reduce else None, per,
    )
    return _blocks(kernel, args, nblocks, x.shape[0] >= PARALLEL_MIN, nthreads, reduce)


def _tiles(x, labels, w, cw, C, ignore_index, packed, scale, reduce, value_out, grad_out, hess_out, rank_out,
           conf_out, nll_out, entropy_out, nthreads):
    """``_ce_tile_loop`` over the call's blocks (whole tiles each), with the metrics when ``conf_out`` is given."""
    kernel = _KERNELS.get("tiles") or _build_tiles()
    empty = _EMPTY[x.dtype]
    f64, i64 = _EMPTY[np.dtype(np.float64)], _EMPTY[np.dtype(np.int64)]
    per, nblocks = _row_blocks(x.shape[0] // C, C)
    per = max(TILE, per // TILE * TILE)
    nblocks = (x.shape[0] // C + per - 1) // per
    want_m = conf_out is not None
    args = (x, labels, empty if w is None else w, w is not None, empty if cw is None else cw, cw is not None, C,
            ignore_index, tuple(float(p) for p in packed), float(scale), empty if value_out is None else value_out,
            value_out is not None, empty if grad_out is None else grad_out,
            empty if hess_out is None else hess_out, grad_out is not None, hess_out is not None, want_m,
            rank_out is not None, entropy_out is not None, i64 if rank_out is None else rank_out,
            f64 if conf_out is None else conf_out, f64 if nll_out is None else nll_out,
            f64 if entropy_out is None else entropy_out, bool(reduce), per)
    return _blocks(kernel, args, nblocks, x.shape[0] >= PARALLEL_MIN, nthreads, reduce)


def _build_tiles():
    _build("cross_entropy")  # the compiled namespace
    namespace = dict(globals())
    namespace.update({k: _state["ns"][k] for k in (
        "row_shift", "exp_diff_as", "ce_elem_sums", "row_state", "no_softmax", "nan_row", "ce_row_finish",
        "row_log_p", "ce_entropy", "ce_elem_grad")})
    kernel = njit(cache=True, nogil=True, error_model="numpy")(
        _jit.specialise(_ce_tile_loop, namespace, f"tiles__cross_entropy__{_state['hash']}"))
    _KERNELS["tiles"] = kernel
    return kernel


def multiclass_metrics(loss, packed, ignore_index, C, x, labels, w, cw, scale, reduce, value_out, grad_out,
                       rank_out, conf_out, nll_out, entropy_out, nthreads):
    """``multiclass`` with the per-row metrics (the contract of ``fusedloss._logit_metrics.run``)."""
    if not hasattr(_pointwise, f"{loss}_row_metrics"):
        raise ValueError(f"{loss} has no metrics pass")
    if _tiled(loss, packed, C):  # as the plain call, so that its value and gradient keep their bits
        return _tiles(x, labels, w, cw, C, ignore_index, packed, scale, reduce, value_out, grad_out, None, rank_out,
                      conf_out, nll_out, entropy_out, nthreads)
    kernel = _KERNELS.get((loss, "metrics")) or _build(loss, metrics=True)
    empty = _EMPTY[x.dtype]
    per, nblocks = _row_blocks(x.shape[0] // C, C)
    args = (x, labels, w, empty if cw is None else cw, cw is not None, C, ignore_index, packed, scale, value_out,
            empty if grad_out is None else grad_out, grad_out is not None, rank_out, conf_out, nll_out, entropy_out,
            True if reduce else None, per)
    return _blocks(kernel, args, nblocks, x.shape[0] >= PARALLEL_MIN, nthreads, reduce)


# --- CTC (its own contract: see fusedloss._ctc) ------------------------------------------------------------


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


# --- pairwise losses (their own contract: see fusedloss._pairwise) ----------------------------------------


def _pairwise_batch(x1, x2, x3, y, has_y, D, prm, gscale, want_grad, loss_out, g1, g2, g3, i0, i1):
    """Rows ``[i0, i1)``; ``row`` is bound to the loss's compiled ``_pairwise_rows.<loss>_row``."""
    for i in range(i0, i1):
        yi = y[i] if has_y else 0.0
        gn = gscale[i] if want_grad else 0.0
        loss_out[i] = row(x1, x2, x3, i * D, D, yi, prm, gn, want_grad, g1, g2, g3)  # noqa: F821


def _build_pairwise(loss: str):
    # the row functions inlined into the loop: a call per row (a dozen arguments, arrays among them) cost more
    # than a one-element row's arithmetic (gaussian_nll, margin_ranking)
    kernel = _jit.pairwise_kernel(loss, _pairwise_batch, __file__, globals(),
                                  njit(inline="always", error_model="numpy"),
                                  njit(cache=True, nogil=True, error_model="numpy"))
    _KERNELS[("pairwise", loss)] = kernel
    return kernel


def pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads):
    kernel = _KERNELS.get(("pairwise", loss)) or _build_pairwise(loss)
    args = _jit.pairwise_args(packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, _EMPTY[x1.dtype],
                              _EMPTY[np.dtype(np.float64)])
    N = loss_out.shape[0]
    if N * D < PARALLEL_MIN or nthreads < 2:
        kernel(*args, 0, N)
    else:
        _on_threads(lambda i0, i1: kernel(*args, i0, i1), N, nthreads, max(1, BLOCK // max(D, 1)))
    return None


def _pairwise_elements_loop(x1, x2, x3, y, w, prm, denom, value_out, g1, g2, g3, reduce, partial, b0, b1):
    """Blocks ``[b0, b1)`` of a loss whose row is one element, as ``_loop`` runs an elementwise loss: ``point``
    (bound to the loss's ``_pairwise_rows.<loss>_point``) on each element, with ``w_i / denom`` as its gradient
    factor; ``value_out`` receives ``w_i l_i``. Optional arrays (``x3``, ``y``, ``w``, the outputs) and ``reduce``
    are None when not in use (``g3`` with ``x3``)."""
    n = x1.shape[0]
    for blk in range(b0, b1):
        start = blk * BLOCK
        stop = min(start + BLOCK, n)
        s = 0.0
        err = 0.0
        if reduce is not None:
            run = np.empty(SUB)
        for c0 in range(start, stop, SUB):
            c1 = min(c0 + SUB, stop)
            a = x1[c0:c1]  # views of the run's own, as in _loop
            b = x2[c0:c1]
            if x3 is not None:
                c = x3[c0:c1]
            if y is not None:
                yr = y[c0:c1]
            if w is not None:
                wr = w[c0:c1]
            if value_out is not None:
                vr = value_out[c0:c1]
            if g1 is not None:
                h1 = g1[c0:c1]
                h2 = g2[c0:c1]
                if x3 is not None:
                    h3 = g3[c0:c1]
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
            if reduce is not None:
                s, err = _compensated_add(s, err, _run_sum(run, c1 - c0))
        if reduce is not None:
            partial[blk] = _compensated_total(s, err)
    return _loop_result(partial[b0:b1], reduce)


def _build_pairwise_elements(loss: str):
    kernel = _jit.pairwise_kernel(loss, _pairwise_elements_loop, __file__, globals(),
                                  njit(inline="always", error_model="numpy"),
                                  njit(cache=True, nogil=True, error_model="numpy"), overrides=_vecmath.overrides(),
                                  kind="pairwise_elements", files=(_vecmath.__file__,), bind="point")
    _KERNELS[("pairwise_elements", loss)] = kernel
    return kernel


def pairwise_elements(loss, packed, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3, nthreads):
    """``fusedloss._pairwise``'s contract for the losses whose row is one element (margin_ranking, gaussian_nll)."""
    if _SUPPORTED.get(loss) != "pairwise" or REGISTRY[loss].vector_rows:
        raise ValueError(f"pairwise_elements: {loss!r} is not a loss whose rows are single elements")
    kernel = _KERNELS.get(("pairwise_elements", loss)) or _build_pairwise_elements(loss)
    args = (x1, x2, x3, y, w, tuple(float(v) for v in packed), float(denom), value_out, g1, g2, g3,
            True if reduce else None)
    n = x1.shape[0]
    return _blocks(kernel, args, (n + BLOCK - 1) // BLOCK, n >= PARALLEL_MIN, nthreads, reduce)


# --- overlap losses (their own contract: see fusedloss._overlap) ------------------------------------------


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
