"""The pairwise losses row by row, as plain Python that Numba compiles for the CPU (``backends/_numba_pairwise.py``,
``njit``) and for CUDA (``backends/_cuda_pairwise.py``, ``cuda.jit(device=True)``): one definition for both.

The same names and branches as the C++ structs (``cpp/include/fusedloss/pairwise.hpp``) and the same
mathematics as the reference (``_reference_pairwise.py``, whose docstring gives the conventions at the kinks).
Every row function has one signature, ``<loss>_row(x1, x2, x3, o, D, y, prm, gn, want_grad, g1, g2, g3)``:
the row's elements are ``x[o:o + D]`` of each input (``x3`` unused by two-input losses), ``y`` its target
(0.0 without one), ``prm`` the packed parameters (``LossSpec.packed``); it returns the row's loss and, with
``want_grad``, writes ``gn`` times its gradient into ``g1``, ``g2`` (``g3``) at the same places. Arithmetic in
float64 whatever the input dtype; only ``math`` and arithmetic.

A loss whose row is one element (D = 1: margin_ranking, gaussian_nll) has its mathematics in a point function on
numbers, ``<loss>_point(a, b, c, y, prm, gn) -> (loss, g1, g2, g3)`` (the element of each input, its target; the
gradient with respect to each input times ``gn``, 0.0 for an input it does not have); its row function applies
it to element ``o`` (the CUDA backend runs these rows). The CPU backend's elementwise loop for these losses
(``pairwise_elements``) calls the point function: numbers in and out, so that the loop vectorises (around the row
function, which takes arrays, Numba keeps reference counting in the loop and it runs about ten times slower).
"""

import math

COSINE_EPS = 9.999999960041972e-13  # ATen's EPSILON, 1e-12 as a float32 (_reference_pairwise.COSINE_EPS)

FUNCTIONS = ("sgn", "pnorm", "pnorm_ties", "pnorm_grad", "margin_ranking_point", "margin_ranking_row",
             "cosine_embedding_row", "triplet_margin_row", "gaussian_nll_point", "gaussian_nll_row")
HALF_LOG_2PI = 0.9189385332046727  # 0.5 log(2 pi)


def row_names():
    """The pairwise losses that have a row function here (what the Numba backends support)."""
    return tuple(name[:-len("_row")] for name in FUNCTIONS if name.endswith("_row"))


def sgn(e):
    """-1, 0 or 1 (nan stays nan)."""
    if e > 0:
        return 1.0
    if e < 0:
        return -1.0
    return e  # 0.0 or nan


def pnorm(u, v, o, D, p, eps):
    """||u - v + eps||_p over one row, as torch's norm: p = 1, p = 2, p = inf (the largest |e|), -inf (the
    smallest), 0 (the count of e != 0), else the p-th root of sum |e|^p (p < 0: a zero e makes the sum inf and
    the norm 0). A row of no element: 0, or inf for p < 0 and -inf (the limits of the finite p)."""
    if p == 2.0 or p == 1.0 or not (math.isinf(p) or p == 0.0):
        s = 0.0
        for k in range(D):
            e = float(u[o + k]) - float(v[o + k]) + eps
            if p == 2.0:
                s += e * e
            elif p == 1.0:
                s += abs(e)
            elif e != 0.0 or p > 0.0:
                s += math.pow(abs(e), p)
            else:
                s = math.inf
        if p == 2.0:
            return math.sqrt(s)
        if p == 1.0:
            return s
        if s == 0.0 and p < 0.0:
            return math.inf
        return math.pow(s, 1.0 / p)
    d = math.inf if p < 0.0 else 0.0
    for k in range(D):
        a = abs(float(u[o + k]) - float(v[o + k]) + eps)
        if p == 0.0:
            d += 1.0 if a != 0.0 else 0.0
        elif a != a or (a > d if p > 0.0 else a < d):
            d = a
            if a != a:
                break
    return d


def pnorm_ties(u, v, o, D, eps, d):
    """The number of elements where |u - v + eps| equals the distance d (p = +-inf: they share the gradient)."""
    n = 0.0
    for k in range(D):
        if abs(float(u[o + k]) - float(v[o + k]) + eps) == d:
            n += 1.0
    return n


def pnorm_grad(e, d, p, ties):
    """d ||e||_p / d e_k at distance d, as torch's norm backward: 0 where d = 0 (p > 1), where e_k = 0 (p < 1);
    p = +-inf: sign(e_k) / ties where |e_k| = d (``ties`` such elements), else 0; p = 0: 0."""
    if p == 1.0:
        return sgn(e)
    if math.isinf(p):
        return sgn(e) / ties if abs(e) == d else 0.0
    if p == 0.0:
        return 0.0
    if p < 1.0:
        if e == 0.0:
            return 0.0
        return sgn(e) * math.pow(abs(e), p - 1.0) * math.pow(d, 1.0 - p)
    if d == 0.0:
        return 0.0
    if p == 2.0:
        return e / d
    if p < 2.0:
        return sgn(e) * math.pow(abs(e), p - 1.0) / math.pow(d, p - 1.0)
    return e * math.pow(abs(e), p - 2.0) / math.pow(d, p - 1.0)


def margin_ranking_point(a, b, c, y, prm, gn):
    """max(0, -y (a - b) + margin), and gn times its gradient with respect to a and b (c unused: 0.0)."""
    m = -y * (a - b) + prm[0]
    if m >= 0.0:  # nan: no gradient (torch's clamp_min backward)
        ga = -y * gn
        gb = y * gn
    else:
        ga = 0.0
        gb = 0.0
    if m > 0.0 or m != m:
        return m, ga, gb, 0.0
    return 0.0, ga, gb, 0.0


def margin_ranking_row(x1, x2, x3, o, D, y, prm, gn, want_grad, g1, g2, g3):
    """margin_ranking_point of one element (D = 1)."""
    loss, ga, gb, _ = margin_ranking_point(float(x1[o]), float(x2[o]), 0.0, y, prm, gn)
    if want_grad:
        g1[o] = ga
        g2[o] = gb
    return loss


def cosine_embedding_row(x1, x2, x3, o, D, y, prm, gn, want_grad, g1, g2, g3):
    """1 - cos (y = 1), max(0, cos - margin) (y = -1), 0 otherwise, with COSINE_EPS on each squared norm."""
    s = 0.0
    m1 = 0.0
    m2 = 0.0
    for k in range(D):
        a = float(x1[o + k])
        b = float(x2[o + k])
        s += a * b
        m1 += a * a
        m2 += b * b
    m1 += COSINE_EPS
    m2 += COSINE_EPS
    r = math.sqrt(m1 * m2)
    c = s / r
    neg = c - prm[0]
    loss = 0.0
    dl_dc = 0.0
    if y == 1.0:
        loss = 1.0 - c
        dl_dc = -1.0
    elif y == -1.0:
        loss = neg if (neg > 0.0 or neg != neg) else 0.0
        dl_dc = 1.0 if neg >= 0.0 else 0.0
    if want_grad:
        f = dl_dc * gn
        for k in range(D):
            a = float(x1[o + k])
            b = float(x2[o + k])
            g1[o + k] = f * (b / r - (c / m1) * a)
            g2[o + k] = f * (a / r - (c / m2) * b)
    return loss


def triplet_margin_row(x1, x2, x3, o, D, y, prm, gn, want_grad, g1, g2, g3):
    """max(0, d(a, p) - d(a, n) + margin), d(u, v) = ||u - v + eps||_p; swap: d(a, n) -> min(d(a, n), d(p, n))."""
    margin = prm[0]
    p = prm[1]
    eps = prm[2]
    swap = prm[3] != 0.0
    dp = pnorm(x1, x2, o, D, p, eps)
    dn = pnorm(x1, x3, o, D, p, eps)
    ds = 0.0
    wn = 1.0  # the shares of d(a, n) and d(p, n) in the negative distance (torch's minimum: halves at a tie)
    ws = 0.0
    dneg = dn
    if swap:
        ds = pnorm(x2, x3, o, D, p, eps)
        wn = 0.5 if dn == ds else (0.0 if dn > ds else 1.0)
        ws = 0.5 if dn == ds else (0.0 if ds > dn else 1.0)
        dneg = dn if (dn < ds or dn != dn) else ds
    m = margin + dp - dneg
    if want_grad:
        on = m >= 0.0
        tp = 1.0  # p = +-inf: the elements at each distance, which share its gradient
        tn = 1.0
        ts = 1.0
        if on and math.isinf(p):
            tp = pnorm_ties(x1, x2, o, D, eps, dp)
            tn = pnorm_ties(x1, x3, o, D, eps, dn)
            if swap:
                ts = pnorm_ties(x2, x3, o, D, eps, ds)
        for k in range(D):
            if on:
                a = float(x1[o + k])
                b = float(x2[o + k])
                c = float(x3[o + k])
                jp = pnorm_grad(a - b + eps, dp, p, tp)
                jn = pnorm_grad(a - c + eps, dn, p, tn)
                js = pnorm_grad(b - c + eps, ds, p, ts) if swap else 0.0
                g1[o + k] = gn * (jp - wn * jn)
                g2[o + k] = gn * (-jp - ws * js)
                g3[o + k] = gn * (wn * jn + ws * js)
            else:
                g1[o + k] = 0.0
                g2[o + k] = 0.0
                g3[o + k] = 0.0
    if m > 0.0 or m != m:
        return m
    return 0.0


def gaussian_nll_point(a, b, c, y, prm, gn):
    """0.5 (log v + (a - b)^2 / v), v = max(c, eps) (c: var; y unused), and gn times its gradient with respect to a,
    b and c (at the clamped v)."""
    v = prm[1] if c < prm[1] else c  # nan stays nan
    d = a - b
    loss = 0.5 * (math.log(v) + d * d / v)
    if prm[0] != 0.0:
        loss += HALF_LOG_2PI
    return loss, gn * (d / v), gn * (-d / v), gn * (0.5 * (1.0 / v - d * d / (v * v)))


def gaussian_nll_row(x1, x2, x3, o, D, y, prm, gn, want_grad, g1, g2, g3):
    """gaussian_nll_point of one element (D = 1); x3 holds var."""
    loss, ga, gb, gc = gaussian_nll_point(float(x1[o]), float(x2[o]), float(x3[o]), y, prm, gn)
    if want_grad:
        g1[o] = ga
        g2[o] = gb
        g3[o] = gc
    return loss
