"""CTC for one sequence, as plain Python that Numba compiles (``backends/numba_cpu.py``).

The same algorithm as the C++ kernel (``cpp/include/fusedloss/ctc.hpp``) and the same mathematics as the
reference (``_reference_ctc.py``), whose docstring holds the notation. Per sequence: pass A computes each
frame's softmax shift (log-sum-exp; 0 for log-probability inputs), stores exp(x - max) in the gradient row
and runs the forward recursion, keeping all of alpha (T_n x (2 S_n + 1) doubles, allocated per sequence);
pass B runs the backward recursion and writes the gradient rows, ``gn * (p - gamma)``. Arithmetic in
float64 whatever the input dtype. Only ``math`` and arithmetic, plus ``np.empty`` for the scratch.
"""

import math

import numpy as np

NEG_INF = -math.inf


def lse3(a, b, c):
    """log(e^a + e^b + e^c), -inf when all three are -inf (no nan from -inf - -inf).

    With m the largest and mid, lo the others: m + log1p(e^(mid-m) + e^(lo-m)), two exp and one log1p
    (the C++ kernel's lse3). A NaN among a, b, c lands in m, mid or lo, so it propagates."""
    hi = a if a > b else b
    lo = b if a > b else a
    m = hi if hi > c else c
    mid = c if hi > c else hi
    if m == NEG_INF and mid == NEG_INF and lo == NEG_INF:
        return NEG_INF
    return m + math.log1p(math.exp(mid - m) + math.exp(lo - m))


def ctc_sequence(x, base, tstride, T, C, Tn, lab, blank, log_probs, zero_infinity, gn, want_grad, g):
    """One sequence of the flat scores ``x``: frame ``t``'s C scores start at ``base + t * tstride``; labels
    ``lab``. Returns its loss; writes its rows of ``g`` (same layout as ``x``) when ``want_grad``, zeros on
    the padding frames t >= Tn."""
    S = lab.shape[0]
    L = 2 * S + 1
    if want_grad:
        for t in range(Tn, T):
            row = base + t * tstride
            for k in range(C):
                g[row + k] = 0.0
    repeats = 0
    for j in range(1, S):
        if lab[j] == lab[j - 1]:
            repeats += 1
    if Tn == 0 or Tn < S + repeats:
        infinite = not (Tn == 0 and S == 0)
        fill = 0.0 if zero_infinity else math.nan
        if want_grad:
            for t in range(Tn):
                row = base + t * tstride
                for k in range(C):
                    g[row + k] = fill
        if infinite and not zero_infinity:
            return math.inf
        return 0.0

    ext = np.empty(L, np.int64)
    jump = np.zeros(L, np.bool_)
    for s in range(L):
        ext[s] = lab[s // 2] if s % 2 == 1 else blank
        if s % 2 == 1 and s >= 3 and lab[s // 2] != lab[s // 2 - 1]:
            jump[s] = True
    shift = np.empty(Tn)
    inv = np.empty(Tn)
    alpha = np.empty((Tn, L))

    # pass A
    for t in range(Tn):
        row = base + t * tstride
        if log_probs:
            shift[t] = 0.0
            inv[t] = 1.0
            if want_grad:
                for k in range(C):
                    g[row + k] = math.exp(np.float64(x[row + k]))
        else:
            m = NEG_INF
            for k in range(C):
                v = np.float64(x[row + k])
                if v > m:
                    m = v
            ms = 0.0 if m == NEG_INF else m
            total = 0.0
            for k in range(C):
                e = math.exp(np.float64(x[row + k]) - ms)
                total += e
                if want_grad:
                    g[row + k] = e
            shift[t] = ms + math.log(total)
            inv[t] = 1.0 / total if total > 0.0 else 0.0
        for s in range(L):
            e = np.float64(x[row + ext[s]]) - shift[t]
            if t == 0:
                a = 0.0 if s == 0 else NEG_INF
                b = 0.0 if s == 1 else NEG_INF
                c = NEG_INF
            else:
                a = alpha[t - 1, s]
                b = alpha[t - 1, s - 1] if s >= 1 else NEG_INF
                c = alpha[t - 1, s - 2] if jump[s] else NEG_INF
            alpha[t, s] = lse3(a, b, c) + e
    if L > 1:
        nll = -lse3(alpha[Tn - 1, L - 1], alpha[Tn - 1, L - 2], NEG_INF)
    else:
        nll = -alpha[Tn - 1, 0]
    if not nll < math.inf:  # inf (no path with nonzero probability) or nan
        inf = nll == math.inf
        if want_grad:
            fill = 0.0 if (inf and zero_infinity) else math.nan
            for t in range(Tn):
                row = base + t * tstride
                for k in range(C):
                    g[row + k] = fill
        return 0.0 if (inf and zero_infinity) else nll
    if not want_grad:
        return nll

    # pass B: beta (the frame's emission included), posteriors, gradient rows
    bnext = np.full(L + 2, NEG_INF)
    bcur = np.full(L + 2, NEG_INF)
    e = np.empty(L)
    acc = np.zeros(C)
    for t in range(Tn - 1, -1, -1):
        row = base + t * tstride
        for s in range(L):
            e[s] = np.float64(x[row + ext[s]]) - shift[t]
            if t == Tn - 1:
                bcur[s] = e[s] if s >= L - 2 else NEG_INF
            else:
                c = bnext[s + 2] if (s + 2 < L and jump[s + 2]) else NEG_INF
                bcur[s] = lse3(bnext[s], bnext[s + 1], c) + e[s]
        for s in range(L):
            acc[ext[s]] += math.exp(alpha[t, s] + bcur[s] - e[s] + nll)
        f = gn * inv[t]
        for k in range(C):
            g[row + k] = np.float64(g[row + k]) * f
        for s in range(L):
            k = ext[s]
            g[row + k] = np.float64(g[row + k]) - gn * acc[k]
            acc[k] = 0.0
        bnext, bcur = bcur, bnext
    return nll
