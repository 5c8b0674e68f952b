"""NumPy oracle of the pairwise losses (kind "pairwise" in ``_spec.py``): written for clarity, in float64.

Each function takes the loss's arrays as rows, ``(N, D)`` (``margin_ranking``: ``(N,)``, one element a row),
the target ``y`` ``(N,)`` where the loss has one, and its keyword parameters, and returns ``(loss, grads)``:
the ``(N,)`` per-row losses and one gradient per input array, of its shape, of the per-row loss (unreduced and
unweighted). The formulas are PyTorch's (ATen's ``Loss.cpp``), with PyTorch's gradients at the kinks:
``clamp_min(m, 0)`` passes the gradient where ``m >= 0``, and ``minimum(a, b)`` (triplet's swap) splits it in
halves where ``a == b``. The per-row functions of ``_pairwise_rows.py`` (Numba) and ``pairwise.hpp`` (C++)
follow these names and branches.
"""

from __future__ import annotations

import numpy as np

# ATen's EPSILON, added to each squared norm (a zero vector has cosine 0, not nan): a float constant 1e-12, so
# 1e-12 rounded to float32, which PyTorch's float64 results show
COSINE_EPS = 9.999999960041972e-13


def margin_ranking(x1, x2, y, margin):
    m = -y * (x1 - x2) + margin
    on = m >= 0  # nan: no gradient, as torch's clamp_min backward
    return np.maximum(m, 0.0), (np.where(on, -y, 0.0), np.where(on, y, 0.0))


def cosine_embedding(x1, x2, y, margin):
    s = np.sum(x1 * x2, axis=-1)
    m1 = np.sum(x1 * x1, axis=-1) + COSINE_EPS
    m2 = np.sum(x2 * x2, axis=-1) + COSINE_EPS
    r = np.sqrt(m1 * m2)
    c = s / r
    loss = np.where(y == 1, 1.0 - c, 0.0) + np.where(y == -1, np.maximum(c - margin, 0.0), 0.0)
    dl_dc = np.where(y == 1, -1.0, np.where((y == -1) & (c - margin >= 0), 1.0, 0.0))
    g1 = dl_dc[:, None] * (x2 / r[:, None] - (c / m1)[:, None] * x1)
    g2 = dl_dc[:, None] * (x1 / r[:, None] - (c / m2)[:, None] * x2)
    return loss, (g1, g2)


def _distance(u, v, p, eps):
    """(||u - v + eps||_p per row, its derivative with respect to u, rows): torch's norm and norm backward.
    p = +-inf: the largest (smallest) |e|, whose gradient sign(e) the elements attaining it share; p = 0: the
    count of e != 0, no gradient. A row of no element has the finite p's limit: 0, or inf for p < 0."""
    e = u - v + eps
    a = np.abs(e)
    if np.isinf(p):
        d = np.min(a, axis=-1, initial=np.inf) if p < 0 else np.max(a, axis=-1, initial=0.0)
        at = a == d[:, None]
        ties = np.maximum(np.sum(at, axis=-1, keepdims=True), 1)
        return d, np.where(at, np.sign(e), 0.0) / ties
    if p == 0:
        return np.count_nonzero(e, axis=-1).astype(np.float64), np.zeros_like(e)
    if p == 2:
        d = np.sqrt(np.sum(e * e, axis=-1))
    elif p == 1:
        d = np.sum(a, axis=-1)
    else:
        d = np.sum(a ** p, axis=-1) ** (1.0 / p)  # p < 0: a ** p is inf at e = 0, and the norm 0
    dcol = d[:, None]
    if p == 1:
        j = np.sign(e)
    elif p < 1:  # |e|^(p-1) is infinite at e = 0: torch masks those elements
        j = np.where(e == 0, 0.0, np.sign(e) * a ** (p - 1)) * dcol ** (1 - p)
    else:  # a zero distance has no direction: torch masks the row (p = 2: e / d)
        num = e if p == 2 else (np.sign(e) * a ** (p - 1) if p < 2 else e * a ** (p - 2))
        j = np.where(dcol == 0, 0.0, num / (dcol if p == 2 else dcol ** (p - 1)))
    return d, j


def triplet_margin(anchor, positive, negative, margin, p, eps, swap):
    dp, jp = _distance(anchor, positive, p, eps)
    dn, jn = _distance(anchor, negative, p, eps)
    wn = np.ones_like(dn)  # the share of d(a, n) and of d(p, n) in the negative distance's gradient
    ws = np.zeros_like(dn)
    if swap:
        ds, js = _distance(positive, negative, p, eps)
        wn = np.where(dn == ds, 0.5, np.where(dn > ds, 0.0, 1.0))
        ws = np.where(dn == ds, 0.5, np.where(ds > dn, 0.0, 1.0))
        dneg = np.minimum(dn, ds)
    else:
        js = np.zeros_like(jn)
        dneg = dn
    m = margin + dp - dneg
    on = (m >= 0)[:, None]
    wn, ws = wn[:, None], ws[:, None]
    ga = np.where(on, jp - wn * jn, 0.0)
    gp = np.where(on, -jp - ws * js, 0.0)
    gn = np.where(on, wn * jn + ws * js, 0.0)
    return np.maximum(m, 0.0), (ga, gp, gn)



def gaussian_nll(input, target, var, full, eps):
    v = np.maximum(var, eps)  # nan stays nan, as torch's clamp
    d = input - target
    loss = 0.5 * (np.log(v) + d * d / v) + (0.5 * np.log(2 * np.pi) if full else 0.0)
    return loss, (d / v, -d / v, 0.5 * (1.0 / v - d * d / (v * v)))
