"""``_pointwise.py`` compiled for the Numba CPU backend: the namespace of compiled point and row functions that
every elementwise and multiclass kernel binds its ``point`` or ``row`` from, and the CPU's own versions of two
row helpers (``row_exp_sums``, ``row_max``) that vectorise where the plain ones do not, and of cross_entropy's
row (``cross_entropy_row``: its plain case takes each exponential once, not twice).

The point functions are compiled with ``_vecmath.overrides()`` in place of ``math``: elementary functions
emitted as plain arithmetic, without C-library calls or branches, so that the loops vectorise. Functions use
``error_model="numpy"`` (a division by zero gives inf or nan, as in NumPy and C++, instead of a Python
exception check in every loop).

Numba's disk cache checks only the time stamp of the file that holds a kernel's code object, so each kernel's
cache entry is named after a hash of every source it is compiled from (``digest``): ``_pointwise.py``,
``_jit.py``, this file, ``_vecmath.py`` and ``_numba_blocks.py`` (whose helpers the loops inline), plus the
loop's own module.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from numba import njit

from . import _jit, _numba_blocks, _vecmath

FILES = (__file__, _vecmath.__file__, _numba_blocks.__file__)  # hashed into every kernel built on the namespace


@functools.cache
def digest(*files: str) -> str:
    """The source hash that names the cache entries of a kernel whose loop is in ``files`` (its module's) and
    that calls the namespace's functions or ``_numba_blocks``'s helpers."""
    return _jit.source_hash(*files, *FILES)


def _decorate(fn):
    """How ``_pointwise``'s functions are compiled: inlined into their callers (in Numba's IR, so that a
    point function's unused outputs and constant arguments fold away), except the row functions, which
    are compiled once each as functions of their own that the row loops call (one call per row): a row
    function is large, and inlining it would type it again in every specialisation of the row loop."""
    if fn.__name__.endswith("_row"):
        return njit(nogil=True, error_model="numpy")(fn)
    return njit(inline="always", error_model="numpy")(fn)


_state: dict = {}  # "ns": the compiled point and row functions (built on first use)
_STATE_LOCK = threading.Lock()  # guards the one-time build of _state


def namespace() -> dict:
    """The compiled namespace (``_jit.compile_namespace``, with ``row_exp_sums`` and ``row_max`` replaced by the
    CPU's versions below). Nothing is compiled here: Numba compiles on the first call that needs a function."""
    ns = _state.get("ns")
    if ns is None:  # first use; several threads may get here at once
        with _STATE_LOCK:
            ns = _state.get("ns")
            if ns is None:
                ns = _jit.compile_namespace(_decorate, overrides=_vecmath.overrides())
                ns.update(np=np, RUN=RUN, RUNS_MIN=RUNS_MIN, _run_exp_sums=_run_exp_sums,
                          row_exp_sums_plain=ns["row_exp_sums"])
                ns["row_exp_sums"] = njit(inline="always", error_model="numpy")(
                    _jit.specialise(_row_exp_sums_runs, ns, "row_exp_sums_runs"))
                ns["row_max"] = _row_max_lanes
                ns.update(cross_entropy_row_plain=ns["cross_entropy_row"], _ce_exp_run=_ce_exp_run)
                ns["cross_entropy_row"] = njit(nogil=True, error_model="numpy")(
                    _jit.specialise(_cross_entropy_row_once, ns, "cross_entropy_row_once"))
                _state["ns"] = ns
    return ns


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


@njit(inline="always")
def _ce_exp_run(buf, n, dst):
    """The run's exponentials ``buf[:n]`` copied to ``dst`` (the row's gradient, read back by its last pass)."""
    for j in range(n):
        dst[j] = buf[j]


def _cross_entropy_row_once(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """``_pointwise.cross_entropy_row`` as the CPU backend compiles it: the same value and gradient, bit for
    bit, with each exponential taken once. Its plain case (hard labels; no class weights, softcap, z_loss or
    penalty; a gradient without a Hessian; rows of at least ``RUNS_MIN``) keeps the run exponentials that
    ``row_exp_sums`` sums in the row's gradient, and the gradient pass scales them (p_j = e_j / s) instead of
    taking exp again: a call at 256 x 32000 (float32, 1 thread) went from 11.8 to 8.2 ms, where numba had run
    at 0.93x NumPy by hand (``fusedloss bench --quick``). The gradient holds exactly the exponentials the plain
    pass takes (``exp_diff_as`` rounds to the data's type, which is the gradient's). Smoothing's sums are taken
    before the exponentials overwrite the row (g may be x). Any other case: the plain function
    (``cross_entropy_row_plain``).
    """
    ls, zl, cap, cp = params
    if soft or has_cw or cap != 0.0 or zl != 0.0 or cp != 0.0 or want_h or not want_g or C < RUNS_MIN:
        return cross_entropy_row_plain(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h,  # noqa: F821
                                       want_g, want_h)
    x_t = x[base + t]  # before any write (g may be x)
    like = x[base]
    e_c = ls / C
    m = row_max(x, base, C)  # noqa: F821 (bound in the namespace)
    sh = row_shift(m, 0.0)  # noqa: F821
    u = 0.0
    v = 0.0
    if ls != 0.0:
        for j in range(C):
            du, dv = ce_elem_sums(x[base + j], 0.0, 1.0, False, ls, e_c, 0.0, sh)  # noqa: F821
            u += du
            v += dv
    # row_exp_sums (_row_exp_sums_runs): the same runs, buffer and sums; each run also kept in the gradient
    xr = x[base:base + C]
    gr = g[base:base + C]
    buf = np.full(min(RUN, C), like)
    s1 = 0.0
    k = 0.0
    for c0 in range(0, C, RUN):
        n = min(RUN, C - c0)
        xs = xr[c0:c0 + n]
        for j in range(n):
            buf[j] = exp_diff_as(xs[j], sh, 1.0, like)  # noqa: F821
        r1, rk = _run_exp_sums(buf, n)
        s1 += r1
        k += rk
        _ce_exp_run(buf, n, gr[c0:c0 + n])  # noqa: F821
    st = row_state(sh, s1, k)  # noqa: F821
    if no_softmax(m, st[1]):  # noqa: F821
        return nan_row(base, C, g, h, want_g, want_h)  # noqa: F821
    value, coef = ce_row_finish(st, sh, False, u, v, 1.0, x_t, ls, e_c, zl)  # noqa: F821
    f = rw * gscale
    for j in range(C):  # ce_elem_grad of a class other than the label, its e_j read back
        pj, omp = row_p(gr[j], st)  # noqa: F821
        gr[j] = f * ((coef * pj - e_c) * 1.0)
    gx, hx = ce_elem_grad(x_t, True, 0.0, 1.0, False, ls, e_c, 0.0, 0.0, st, coef, False, 0.0, 0.0)  # noqa: F821
    g[base + t] = f * gx
    return rw * value


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
