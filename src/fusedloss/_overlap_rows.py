"""The overlap losses' two passes (kind "overlap": dice, tversky) block by block, as plain Python that Numba compiles
for the CPU (``backends/_numba_overlap.py``, ``njit``) and for CUDA (``backends/_cuda_overlap.py``,
``cuda.jit(device=True)``): one definition for both.

The same names and branches as the C++ kernels (``cpp/include/fusedloss/overlap.hpp``) and the mathematics of
steps 1 and 3 of the reference (``_reference_overlap.py``). Scores ``x`` are flat ``(N, C, S)``; a block is
``block`` consecutive pixels of one sample (block ``b`` of ``N * nbs``: sample ``b // nbs``), whose sums go, in
pixel order, into its own row of ``partial`` (``(N * nbs, C, 3)``: I, P, Y), added per sample in block order by the
caller, so the sums do not depend on the thread count or the grid. Each pixel's softmax is recomputed where needed
(no scratch array: CUDA device functions have none of variable size). Arithmetic in float64 whatever the input
dtype; only ``math`` and arithmetic.
"""

import math

FUNCTIONS = ("sigmoid", "softmax_stats", "prob", "target_of", "dmin", "block_sums", "block_grad")


def sigmoid(v):
    """1 / (1 + exp(-v)) without overflow (exp of -|v| only)."""
    e = math.exp(-abs(v))
    i = 1.0 / (1.0 + e)
    return i if v >= 0.0 else e * i


def softmax_stats(x, base, S, C):
    """(max, 1 / sum exp(x - max)) over the classes of the pixel whose class 0 is ``x[base]``."""
    m = float(x[base])
    for c in range(1, C):
        v = float(x[base + c * S])
        m = v if v > m else m
    s = 0.0
    for c in range(C):
        s += math.exp(float(x[base + c * S]) - m)
    return m, 1.0 / s


def prob(v, act, mx, inv):
    """The probability of score ``v``: softmax (act 2, with the pixel's stats), sigmoid (1) or ``v`` (0)."""
    if act == 2:
        return math.exp(v - mx) * inv
    if act == 1:
        return sigmoid(v)
    return v


def target_of(labels, y, has_labels, i, li, c, has_ignore, ignore):
    """(target, keep) of element ``i`` (class ``c``; ``li`` the pixel's index in ``labels``): 0 where ignored."""
    if has_labels:
        lab = labels[li]
        keep = not (has_ignore and lab == ignore)
        return (1.0 if (keep and lab == c) else 0.0), keep
    t = float(y[i])
    keep = not (has_ignore and t == ignore)
    return (t if keep else 0.0), keep


def dmin(pm, t):
    """d min(p, y) / dp as torch's (p + y - |p - y|) / 2: 1 below the target, 0 above, 1/2 at a tie."""
    if pm < t:
        return 1.0
    if pm == t:
        return 0.5
    return 0.0


def block_sums(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, partial):
    """Block ``b``'s I, P, Y per class into ``partial[b * C * 3:]``."""
    if C == 0:  # no element (the softmax would read a pixel's first class)
        return
    n = b // nbs
    s0 = (b % nbs) * block
    s1 = min(S, s0 + block)
    o = b * C * 3
    for k in range(C * 3):
        partial[o + k] = 0.0
    for s in range(s0, s1):
        base = n * C * S + s
        mx, inv = softmax_stats(x, base, S, C) if act == 2 else (0.0, 1.0)
        for c in range(C):
            i = base + c * S
            t, keep = target_of(labels, y, has_labels, i, n * S + s, c, has_ignore, ignore)
            pm = prob(float(x[i]), act, mx, inv) if keep else 0.0
            partial[o + c * 3] += t if t < pm else pm  # min(pm, t); nan in pm stays nan
            partial[o + c * 3 + 1] += pm
            partial[o + c * 3 + 2] += t


def block_grad(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, coef, g):
    """Block ``b``'s gradient of sum aI I + aP P (``coef[(n * C + c) * 2:]`` = aI, aP) into ``g``."""
    if C == 0:
        return
    n = b // nbs
    s0 = (b % nbs) * block
    s1 = min(S, s0 + block)
    for s in range(s0, s1):
        base = n * C * S + s
        mx, inv = softmax_stats(x, base, S, C) if act == 2 else (0.0, 1.0)
        dot = 0.0  # softmax: sum_k p_k d_k
        if act == 2:
            for c in range(C):
                i = base + c * S
                t, keep = target_of(labels, y, has_labels, i, n * S + s, c, has_ignore, ignore)
                if keep:
                    p = prob(float(x[i]), act, mx, inv)
                    dot += p * (coef[(n * C + c) * 2 + 1] + coef[(n * C + c) * 2] * dmin(p, t))
        for c in range(C):
            i = base + c * S
            t, keep = target_of(labels, y, has_labels, i, n * S + s, c, has_ignore, ignore)
            v = float(x[i])
            p = prob(v, act, mx, inv)
            d = coef[(n * C + c) * 2 + 1] + coef[(n * C + c) * 2] * dmin(p, t) if keep else 0.0
            if act == 2:
                g[i] = p * (d - dot)
            elif act == 1:
                g[i] = d * p * sigmoid(-v)
            else:
                g[i] = d
