"""The Numba CPU backend's multiclass losses: the row loops and cross_entropy's row tiles (``multiclass``,
``multiclass_metrics``; the interface is ``numba_cpu.py``'s).

Two loops over rows of ``C`` logits, ``_numba_blocks``'s one loop (``block_kernel``) a row at a time, with one of
two bodies: ``_row``, calling the global ``row`` (``<loss>_row`` of the compiled namespace, ``_numba_points``), and
``_row_metrics``, calling ``row_metrics`` (``<loss>_row_metrics``), which also gives the row's metrics. Per loss
the body is copied (``_jit.specialise``) with that name bound, and the loop compiled with
``@njit(cache=True, nogil=True)`` on the loss's first call. The row functions take their optional arrays as
empty arrays with flags (their convention); the loops' own optional arrays are ``None``, as in the elementwise loop.
cross_entropy's short rows take a third loop, ``_ce_tile_loop``, TILE rows at a time.

A block is the whole rows that fit in ``BLOCK`` elements (``_row_blocks``); rows are added into a block's partial
sum with compensation, and the blocks are handed out and added as ``_numba_blocks`` does for every loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import _pointwise
from . import _jit, _numba_points
# the loops' globals (bound through globals() by _jit.specialise)
from ._numba_blocks import (_EMPTY, BLOCK, PARALLEL_MIN, _blocks, _compensated_add, _compensated_total,  # noqa: F401
                            _sum_partials, block_kernel)

_KERNELS: dict = {}  # loss, (loss, "metrics") or "tiles" -> its kernel


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


def _row(run, r, r1, reduce, x, labels, q, w, cw, has_cw, soft, C, ignore, params, scale, value_out, g, h, want_g,
         want_h):
    """Row ``r`` of ``C`` logits, the body of the multiclass loop (``_numba_blocks._block_loop``, one row a step:
    ``r1`` is ``r + 1``); ``row`` is bound per loss. Its value goes to ``run[0]``.

    ``labels`` is None for soft targets ``q``; ``q``, ``cw``, ``g`` and ``h`` are always arrays (empty when
    not in use, with the flags saying so), as the row functions take them. Rows labelled ``ignore`` or
    weighted 0 get value, gradient and Hessian 0.
    """
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
        value = row(x, base, C, t, q, cw, has_cw, soft, params, rw, scale, g, h, want_g, want_h)  # noqa: F821
    if value_out is not None:
        value_out[r] = value
    run[0] = value


def _row_metrics(run, r, r1, reduce, x, labels, w, cw, has_cw, C, ignore, params, scale, value_out, g, want_g,
                 rank_out, conf_out, nll_out, entropy_out):
    """``_row`` for hard labels without a Hessian, through ``row_metrics`` (``<loss>_row_metrics``, bound per
    loss), which also gives the row's metrics: written to ``rank_out`` (None: not asked for), ``conf_out``,
    ``nll_out`` and ``entropy_out`` (None: not asked for); an ignored row gets rank -1 and 0.0."""
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
        value, rank, conf, nll, ent = row_metrics(x, base, C, t, cw, has_cw, params, rw, scale, g,  # noqa: F821
                                                  want_g, rank_out is not None, entropy_out is not None)
    if rank_out is not None:
        rank_out[r] = rank
    conf_out[r] = conf
    nll_out[r] = nll
    if entropy_out is not None:
        entropy_out[r] = ent
    if value_out is not None:
        value_out[r] = value
    run[0] = value


# cross_entropy's rows of at most TILE_MAX_C classes run TILE at a time (_ce_tile_loop). The bound is where the
# row loops catch up (value_and_grad, float32, 1 thread: 2.7x at 10 classes, 1.05x at 24, 0.86x at 32); the
# C++ kernel's is higher (rows.hpp kTileMaxC), its tile loops being vectorised throughout.
TILE = 16
TILE_MAX_C = 24


def _ce_tile_loop(x, labels, w, has_w, cw, has_cw, C, ignore, params, scale, value_out, want_v, g, h, want_g, want_h,
                  want_m, want_r, want_e, rank_out, conf_out, nll_out, entropy_out, reduce, per, partial, b0, b1):
    """The multiclass loop of cross_entropy with hard labels, no softcap and no penalty, for rows of at most TILE_MAX_C
    classes (and, with ``want_m``, that of ``_row_metrics``: the same values and gradients): TILE rows at a time,
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


def _build(loss: str, metrics: bool = False):
    """The kernel of ``loss`` (Numba compiles it on its first call); ``metrics``: that of its metrics pass
    (``_row_metrics``)."""
    ns = _numba_points.namespace()
    namespace = dict(globals())
    if metrics:
        body, kind = _row_metrics, "metrics"
        namespace["row_metrics"] = ns[f"{loss}_row_metrics"]
    else:
        body, kind = _row, "multiclass"
        namespace["row"] = ns[f"{loss}_row"]
    key = f"{loss}__{_numba_points.digest(__file__)}"
    kernel = block_kernel(_jit.specialise(body, namespace, f"{kind}_row__{key}"), 1, f"{kind}__{key}")
    _KERNELS[(loss, "metrics") if metrics else loss] = kernel
    return kernel


def multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
               nthreads):
    if labels is not None and _tiled(loss, packed, C):
        return _tiles(x, labels, w, cw, C, ignore_index, packed, scale, reduce, value_out, grad_out, hess_out,
                      None, None, None, None, nthreads)
    kernel = _KERNELS.get(loss) or _build(loss)
    empty = _EMPTY[x.dtype]
    per, nblocks = _row_blocks(x.shape[0] // C, C)
    body_args = (
        x, labels, empty if q is None else q, w, empty if cw is None else cw, cw is not None, labels is None,
        C, ignore_index, packed, scale, value_out,
        empty if grad_out is None else grad_out, empty if hess_out is None else hess_out,
        grad_out is not None, hess_out is not None,
    )
    args = (x.shape[0] // C, per, True if reduce else None, body_args)
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
    ns = _numba_points.namespace()
    namespace = dict(globals())
    namespace.update({k: ns[k] for k in (
        "row_shift", "exp_diff_as", "ce_elem_sums", "row_state", "no_softmax", "nan_row", "ce_row_finish",
        "row_log_p", "ce_entropy", "ce_elem_grad")})
    kernel = njit(cache=True, nogil=True, error_model="numpy")(
        _jit.specialise(_ce_tile_loop, namespace, f"tiles__cross_entropy__{_numba_points.digest(__file__)}"))
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
    body_args = (x, labels, w, empty if cw is None else cw, cw is not None, C, ignore_index, packed, scale,
                 value_out, empty if grad_out is None else grad_out, grad_out is not None, rank_out, conf_out, nll_out,
                 entropy_out)
    args = (x.shape[0] // C, per, True if reduce else None, body_args)
    return _blocks(kernel, args, nblocks, x.shape[0] >= PARALLEL_MIN, nthreads, reduce)
