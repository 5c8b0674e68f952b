"""CTC for one sequence, as plain Python that Numba compiles (``backends/_numba_ctc.py``), and the per-state
pieces that the Numba-CUDA block kernel (``backends/numba_cuda_ctc.py``) also compiles, so both run one definition.

The same algorithm as the C++ kernel (``cpp/include/fusedloss/ctc.hpp``) and the same mathematics as the
reference (``_reference_ctc.py``), whose docstring holds the notation. Per sequence: pass A computes each
frame's softmax shift (log-sum-exp; 0 for log-probability inputs), stores exp(x - max) in the gradient row
and runs the forward recursion, keeping all of alpha (T_n x (2 S_n + 1) doubles, allocated per sequence);
pass B runs the backward recursion and writes the gradient rows, ``gn * (p - gamma)``. Arithmetic in
float64 whatever the input dtype. Only ``math`` and arithmetic, plus ``np.empty`` for the scratch.

The pieces, each about one extended state ``s`` (``0 <= s < L = 2 S + 1``; even states are the blank, odd
state ``s`` is label ``s // 2``): ``ext_label``, ``can_skip`` (the s - 2 -> s transition),
``repeat_count``, ``degenerate`` (no frames, or fewer frames than the labels need), ``alpha_cell``,
``beta_cell``, ``final_nll``, ``nonfinite`` (what an infinite or NaN loss becomes) and ``occupancy``
(alpha * beta / p(target) of one state, with beta including the frame's emission).
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


def ext_label(lab, s, blank):
    """The class of extended state ``s``: the blank on even states, label ``s // 2`` on odd ones."""
    return lab[s // 2] if s % 2 == 1 else blank


def can_skip(lab, s):
    """Whether state ``s`` may be entered from ``s - 2``: an odd state whose label differs from the previous
    label (a blank between two equal labels cannot be skipped)."""
    return s % 2 == 1 and s >= 3 and lab[s // 2] != lab[s // 2 - 1]


def repeat_count(lab):
    """The number of neighbouring equal labels (each needs a blank frame between them)."""
    repeats = 0
    for j in range(1, lab.shape[0]):
        if lab[j] == lab[j - 1]:
            repeats += 1
    return repeats


def degenerate(Tn, S, repeats, zero_infinity):
    """(is degenerate, its loss, its gradient fill) for a sequence with no frames or too few for its labels:
    loss 0 (gradient 0) for no frames and no labels, else inf (NaN gradient), or 0 (gradient 0) with
    ``zero_infinity``."""
    if Tn == 0 or Tn < S + repeats:
        if Tn == 0 and S == 0:
            return True, 0.0, 0.0
        if zero_infinity:
            return True, 0.0, 0.0
        return True, math.inf, math.nan
    return False, 0.0, 0.0


def alpha_cell(t, s, a, b, c, e):
    """alpha[t, s] from alpha[t - 1] at s, s - 1 and s - 2 (``a``, ``b``, ``c``; -inf where no such
    transition) and the emission ``e`` (log-probability of state s's class at frame t); frame 0 starts in
    states 0 and 1."""
    if t == 0:
        a = 0.0 if s == 0 else NEG_INF
        b = 0.0 if s == 1 else NEG_INF
        c = NEG_INF
    return lse3(a, b, c) + e


def beta_cell(last, s, L, a, b, c, e):
    """beta[t, s] (the frame's emission included) from beta[t + 1] at s, s + 1 and s + 2 (``a``, ``b``,
    ``c``; -inf where no such transition); on the ``last`` frame only the two final states end a path."""
    if last:
        return e if s >= L - 2 else NEG_INF
    return lse3(a, b, c) + e


def final_nll(a_last, a_second, L):
    """-log p(target) from alpha on the last frame at states L - 1 and L - 2."""
    if L > 1:
        return -lse3(a_last, a_second, NEG_INF)
    return -a_last


def nonfinite(nll, zero_infinity):
    """(loss, gradient fill) for a loss that is not finite: inf -> inf and NaN (0 and 0 with
    ``zero_infinity``), NaN -> NaN and NaN."""
    if nll == math.inf and zero_infinity:
        return 0.0, 0.0
    return nll, math.nan


def occupancy(alpha, beta, e, nll):
    """The posterior probability of being in a state at a frame: exp(alpha + beta - e - log p)."""
    return math.exp(alpha + beta - e + nll)


def fill_frames(g, base, tstride, t0, t1, C, value):
    """Write ``value`` into the gradient rows of frames ``t0`` to ``t1 - 1`` of one sequence."""
    for t in range(t0, t1):
        row = base + t * tstride
        for k in range(C):
            g[row + k] = value


def ctc_sequence(x, base, tstride, T, C, Tn, lab, blank, log_probs, zero_infinity, gn, want_grad, g):
    """One sequence of the flat scores ``x``: frame ``t``'s C scores start at ``base + t * tstride``; labels
    ``lab``. Returns its loss; writes its rows of ``g`` (same layout as ``x``) when ``want_grad``, zeros on
    the padding frames t >= Tn."""
    S = lab.shape[0]
    L = 2 * S + 1
    if want_grad:
        fill_frames(g, base, tstride, Tn, T, C, 0.0)
    bad, loss, fill = degenerate(Tn, S, repeat_count(lab), zero_infinity)
    if bad:
        if want_grad:
            fill_frames(g, base, tstride, 0, Tn, C, fill)
        return loss

    ext = np.empty(L, np.int64)
    jump = np.zeros(L, np.bool_)
    for s in range(L):
        ext[s] = ext_label(lab, s, blank)
        jump[s] = can_skip(lab, s)
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
            a = NEG_INF
            b = NEG_INF
            c = NEG_INF
            if t > 0:
                a = alpha[t - 1, s]
                if s >= 1:
                    b = alpha[t - 1, s - 1]
                if jump[s]:
                    c = alpha[t - 1, s - 2]
            alpha[t, s] = alpha_cell(t, s, a, b, c, e)
    nll = final_nll(alpha[Tn - 1, L - 1], alpha[Tn - 1, L - 2] if L > 1 else NEG_INF, L)
    if not nll < math.inf:  # inf (no path with nonzero probability) or nan
        loss, fill = nonfinite(nll, zero_infinity)
        if want_grad:
            fill_frames(g, base, tstride, 0, Tn, C, fill)
        return loss
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
            c = bnext[s + 2] if (s + 2 < L and jump[s + 2]) else NEG_INF
            bcur[s] = beta_cell(t == Tn - 1, s, L, bnext[s], bnext[s + 1], c, e[s])
        for s in range(L):
            acc[ext[s]] += occupancy(alpha[t, s], bcur[s], e[s], nll)
        f = gn * inv[t]
        for k in range(C):
            g[row + k] = np.float64(g[row + k]) * f
        for s in range(L):
            k = ext[s]
            g[row + k] = np.float64(g[row + k]) - gn * acc[k]
            acc[k] = 0.0
        bnext, bcur = bcur, bnext
    return nll


# Every function above, in the order they are defined (each backend compiles these by name).
FUNCTIONS = ("lse3", "ext_label", "can_skip", "repeat_count", "degenerate", "alpha_cell", "beta_cell", "final_nll",
             "nonfinite", "occupancy", "fill_frames", "ctc_sequence")
