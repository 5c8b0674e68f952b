"""Scalar point functions shared by the Numba CPU and Numba-CUDA backends.

Plain Python on purpose: every function here uses only ``math`` and arithmetic, so that
``fusedloss.backends._jit.compile_namespace`` can compile the whole module with
``numba.njit(inline="always")`` or ``numba.cuda.jit(device=True)``. Calls between functions in this module
resolve to the compiled versions.

On the CPU the names ``math``, ``max_step`` and ``sum_step`` are replaced by versions LLVM vectorises
(``backends/_vecmath.py``); to keep that working, write powers as ``math.pow`` (not ``**``), accumulate
over a row with ``max_step`` / ``sum_step``, and keep row-invariant conditions and conditional loads or
stores out of the hot loops.

Each elementwise loss ``<name>`` has ``<name>_point(p, y, a, b) -> (value, gradient, hessian)`` where
``(a, b)`` are the loss's scalar parameters packed as ``LossSpec.pack`` says. Unused outputs cost nothing:
the functions are inlined and the compiler drops what is not stored. Names and branch cut-offs match the
C++ structs in ``cpp/include/fusedloss/losses.hpp`` and the formulas in ``_spec.py``.
"""

import math

LN2 = 0.6931471805599453


# --- numerically delicate helpers (their one home on the Python side) -------------------------------


def sign(x):
    """sign(x) with sign(0) = 0 (PyTorch's subgradient) and sign(nan) = nan."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return x * 0.0  # 0 for 0, nan for nan


def log1pexp(x):
    """softplus: log(1 + exp(x)) without overflow (exp only of a non-positive number).

    log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}); for x = -inf it is 0, for x = +inf it is +inf.
    """
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid(x):
    """1 / (1 + exp(-x)) evaluated so that exp never overflows (exp of -|x| only)."""
    e = math.exp(-abs(x))
    if x >= 0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)


def bce_logits_value(x, y, pw):
    """(1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y: binary cross-entropy on a logit.

    For x >= 0 both terms of that form are >= 0. For x < 0 it would cancel (x + softplus(-x) loses all
    digits of a tiny result), so use the equal lw softplus(x) - pw y x, whose terms are both >= 0 there.
    """
    lw = 1.0 + (pw - 1.0) * y
    if x >= 0:
        return (1.0 - y) * x + lw * log1pexp(-x)
    return lw * log1pexp(x) - pw * y * x


def log_cosh_value(ad):
    """log(cosh(d)) for ad = |d| >= 0, accurate to a few ulp for every finite ad.

    For ad >= 1: ad + log1p(exp(-2 ad)) - log 2 (no overflow: exp of a negative number only).
    For ad < 1 that form cancels (it subtracts log 2 from something close to it), so use
    cosh(d) - 1 = em^2 / (2 (1 + em)) with em = expm1(ad), and log1p of that.
    """
    if ad < 1.0:
        em = math.expm1(ad)
        return math.log1p(em * em / (2.0 * (1.0 + em)))
    return ad + math.log1p(math.exp(-2.0 * ad)) - LN2


def sech2(x):
    """1 / cosh(x)^2 = 1 - tanh(x)^2, as 4 e / (1 + e)^2 with e = exp(-2|x|): no cancellation for large |x|
    (where 1 - tanh^2 rounds to 0 long before the true value underflows) and no overflow."""
    e = math.exp(-2.0 * abs(x))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


# --- regression losses ------------------------------------------------------------------------------


def mse_point(p, y, a, b):
    d = p - y
    return d * d, 2.0 * d, 2.0


def mae_point(p, y, a, b):
    d = p - y
    return abs(d), sign(d), 0.0


def huber_point(p, y, a, b):
    delta = a
    d = p - y
    ad = abs(d)
    if ad <= delta:
        return 0.5 * d * d, d, 1.0
    return delta * (ad - 0.5 * delta), delta * sign(d), 0.0


def smooth_l1_point(p, y, a, b):
    beta = a
    d = p - y
    ad = abs(d)
    if ad < beta:
        return 0.5 * d * d / beta, d / beta, 1.0 / beta
    return ad - 0.5 * beta, sign(d), 0.0


def pseudo_huber_point(p, y, a, b):
    delta = a
    r = (p - y) / delta
    s = math.hypot(1.0, r)  # sqrt(1 + r^2) without overflow
    # delta^2 (s - 1) = delta^2 r^2 / (s + 1): no cancellation for small r, no overflow for large r
    return delta * delta * r * (r / (1.0 + s)), delta * (r / s), 1.0 / (s * s * s)


def log_cosh_point(p, y, a, b):
    d = p - y
    ad = abs(d)
    e = math.exp(-2.0 * ad)
    # 1 - tanh^2 = 4 e / (1 + e)^2: no cancellation when |d| is large
    return log_cosh_value(ad), math.tanh(d), 4.0 * e / ((1.0 + e) * (1.0 + e))


def quantile_point(p, y, a, b):
    q = a
    r = y - p
    if r > 0:
        return q * r, -q, 0.0
    if r < 0:
        return (q - 1.0) * r, 1.0 - q, 0.0
    return r * 0.0, r * 0.0, 0.0  # r = 0: value 0, subgradient 0; nan stays nan


def poisson_nll_point(p, y, a, b):
    if a != 0.0:  # log_input: p = log(rate)
        e = math.exp(p)
        return e - y * p, e - y, e
    q = p + b  # rate + eps
    return p - y * math.log(q), 1.0 - y / q, y / (q * q)


def tweedie_point(p, y, a, b):
    rho = a
    e2 = math.exp((2.0 - rho) * p)
    e1 = math.exp((1.0 - rho) * p)
    return (
        e2 / (2.0 - rho) - y * e1 / (1.0 - rho),
        e2 - y * e1,
        (2.0 - rho) * e2 - (1.0 - rho) * y * e1,
    )


# --- binary classification (elementwise) ------------------------------------------------------------

BCE_EPS = 1e-12  # PyTorch's clamp of p (1 - p) in the BCE gradient


def binary_cross_entropy_point(p, y, a, b):
    pw = a
    if p != p:  # the clamps below would turn nan into a finite number
        return p, p, p
    log_p = max(math.log(p), -100.0) if p > 0 else -100.0
    log_1mp = max(math.log1p(-p), -100.0) if p < 1 else -100.0
    return (
        -(pw * y * log_p + (1.0 - y) * log_1mp),
        ((1.0 - y) * p - pw * y * (1.0 - p)) / max(p * (1.0 - p), BCE_EPS),
        pw * y / max(p * p, BCE_EPS) + (1.0 - y) / max((1.0 - p) * (1.0 - p), BCE_EPS),
    )


def binary_cross_entropy_with_logits_point(x, y, a, b):
    pw = a
    ys = y * (1.0 - b) + 0.5 * b  # label smoothing
    lw = 1.0 + (pw - 1.0) * ys
    sm = sigmoid(-x)
    return bce_logits_value(x, ys, pw), (1.0 - ys) - lw * sm, lw * sigmoid(x) * sm


def binary_focal_point(x, y, a, b):
    alpha = a
    gamma = b
    s = sigmoid(x)
    sm = sigmoid(-x)
    ce = bce_logits_value(x, y, 1.0)
    q = s * (1.0 - y) + sm * y  # 1 - p_t, as a sum of two non-negative terms: no cancellation
    a_t = 1.0 if alpha < 0 else alpha * y + (1.0 - alpha) * (1.0 - y)
    u = s * sm
    dq = (1.0 - 2.0 * y) * u
    d2q = dq * (1.0 - 2.0 * s)
    if q > 0:
        f = math.pow(q, gamma)
        q1 = math.pow(q, gamma - 1.0)
        df = gamma * q1 * dq
        d2f = gamma * (gamma - 1.0) * math.pow(q, gamma - 2.0) * dq * dq + gamma * q1 * d2q
    else:  # q underflowed: the limits of q^gamma and of its derivatives times ce
        f = 1.0 if gamma == 0 else 0.0
        df = 0.0
        d2f = 0.0
    return a_t * ce * f, a_t * ((s - y) * f + ce * df), a_t * (u * f + 2.0 * (s - y) * df + ce * d2f)


def hinge_point(x, y, a, b):
    t = 1.0 if y > 0 else -1.0
    m = 1.0 - t * x
    if m > 0:
        return m, -t, 0.0
    if m <= 0:
        return 0.0, 0.0, 0.0
    return m, m, m  # nan


def squared_hinge_point(x, y, a, b):
    t = 1.0 if y > 0 else -1.0
    m = 1.0 - t * x
    if m > 0:
        return m * m, -2.0 * t * m, 2.0
    if m <= 0:
        return 0.0, 0.0, 0.0
    return m, m, m  # nan


def zero_one_point(x, y, a, b):
    if x != x:
        return x, 0.0, 0.0
    if (x > a) != (y > 0):
        return 1.0, 0.0, 0.0
    return 0.0, 0.0, 0.0


# --- multiclass: one row at a time -------------------------------------------------------------------
#
# Every row function has the same signature, so one generic row loop per backend serves them all:
#   <loss>_row(x, base, C, t, q, cw, has_cw, soft, a, b, c, d, rw, gscale, g, h, want_g, want_h) -> value
# x: flat logits, the row is x[base : base + C]; t: the row's label (unused for soft targets; ignored rows
# never reach a row function); q: flat soft targets (same layout as x) when soft; cw: the per-class vector
# when has_cw; (a, b, c, d): packed parameters (LossSpec.pack); rw: the row's sample weight. Writes
# g[base + j] = rw * gscale * dl/dx_j (if want_g) and h likewise (if want_h), each element of x read
# before the same element of g is written (so g may be x itself), and returns rw * value.
# Arrays not in use are passed as empty arrays. Row sums accumulate in float64.


def capped(v, cap):
    """softcap: cap * tanh(v / cap), or v when cap == 0."""
    if cap > 0.0:
        return cap * math.tanh(v / cap)
    return v


def max_step(m, z):
    """The running maximum of a row: z if z > m else m (a nan z is skipped).

    With ``sum_step`` below, the one way row loops accumulate, so that a backend can substitute versions
    its compiler vectorises (the CPU backend: LLVM's maxnum, and an addition that LLVM may reassociate).
    """
    return z if z > m else m


def sum_step(s, v):
    """The running sum of a row: s + v (see ``max_step``)."""
    return s + v


def row_lse(x, base, C, cap, inv_t):
    """logsumexp over the row of z_j = capped(x_j) * inv_t, in two passes over the (cached) row.

    The max is taken first so that every exp has a non-positive argument; a row whose max is -inf (all
    classes masked) gets lse = -inf instead of nan. The softcap is tested once per row, not per element,
    so that the loops have no branch (the CPU backend's compiler vectorises them).
    """
    m = -math.inf
    if cap > 0.0:
        for j in range(C):
            m = max_step(m, capped(x[base + j], cap) * inv_t)
    else:
        for j in range(C):
            m = max_step(m, x[base + j] * inv_t)
    if m == -math.inf or m == math.inf:
        return m
    s = 0.0
    if cap > 0.0:
        for j in range(C):
            s = sum_step(s, math.exp(capped(x[base + j], cap) * inv_t - m))
    else:
        for j in range(C):
            s = sum_step(s, math.exp(x[base + j] * inv_t - m))
    return m + math.log(s)


def lse_push(m, s, z):
    """One step of the online logsumexp: (m, s) with s = sum exp(z_i - m) over the z seen, then z added.

    The running max only grows; when it does, the sum so far is rescaled. -inf adds nothing (and never makes
    exp(-inf - -inf) = nan); nan makes s nan, as in ``row_lse``.
    """
    if z > m:
        s = s * math.exp(m - z) + 1.0
        m = z
    elif z != -math.inf:
        s += math.exp(z - m)
    return m, s


def lse_merge(m1, s1, m2, s2):
    """Two online-logsumexp states (m, s) combined into one (the block reduction's step)."""
    m = max(m1, m2)
    if m == -math.inf or m == math.inf:
        return m, s1 + s2
    return m, s1 * math.exp(m1 - m) + s2 * math.exp(m2 - m)


def lse_finish(m, s):
    """logsumexp from an online state: m + log(s); a max of -inf (all masked) or +inf gives that."""
    if m == -math.inf or m == math.inf:
        return m
    return m + math.log(s)


# cross_entropy in per-element pieces, so that a loop over one row (``cross_entropy_row``, one thread per row)
# and a block of threads sharing a row (the CUDA block kernel) run the same math:
#   ce_elem_sums:  class j's terms of the row sums (u, v) (summed in any order)
#   ce_row_finish: value and the coefficient A from lse and the sums
#   ce_elem_grad:  class j's gradient and Hessian from lse and A


def ce_elem_sums(xj, qj, cj, soft, ls, e_c, cap):
    """Class j's terms (u_j, v_j) of the row sums. Soft targets: u = b_j, v = b_j z_j with b_j the weight of
    z_j in the target distribution; hard labels: u = c_j (sum W), v = c_j z_j (needed only with smoothing)."""
    if soft:
        bj = cj * (qj * (1.0 - ls) + e_c)
        if bj != 0.0:
            return bj, bj * capped(xj, cap)
        return bj, 0.0
    if ls != 0.0 and cj != 0.0:
        return cj, cj * capped(xj, cap)
    return cj, 0.0


def ce_row_finish(lse, soft, u, v, ct, z_t, ls, e_c, zl):
    """(value, A) of a row from its logsumexp and sums (u, v); ``ct``, ``z_t``: the label's class weight and
    capped logit (hard labels). The hard-label value keeps lse - z_t together (no cancellation of two large
    terms)."""
    if soft:
        coef = u
        value = coef * lse - v
    else:
        coef = (1.0 - ls) * ct + e_c * u
        value = (1.0 - ls) * ct * (lse - z_t) + e_c * (u * lse - v)
    return value + zl * lse * lse, coef


def ce_elem_grad(xj, is_t, qj, cj, soft, ls, e_c, cap, zl, lse, coef, want_h):
    """(dl/dx_j, d2l/dx_j^2) of a row (before the row weight and scale)."""
    z = capped(xj, cap)
    pj = math.exp(z - lse)
    if soft:
        bj = cj * (qj * (1.0 - ls) + e_c)
    else:
        bj = e_c * cj
        if is_t:
            bj += (1.0 - ls) * cj
    gz = coef * pj - bj + 2.0 * zl * lse * pj
    if cap > 0.0:
        tau = z / cap
        dz = 1.0 - tau * tau
        gx = gz * dz
    else:
        dz = 1.0
        gx = gz
    hx = 0.0
    if want_h:
        hz = coef * pj * (1.0 - pj) + 2.0 * zl * (pj * pj + lse * pj * (1.0 - pj))
        hx = hz * dz * dz
        if cap > 0.0:
            hx += gz * (-2.0 * (z / cap) * dz / cap)
    return gx, hx


def ce_grad_plain(x, base, C, t, ls, e_c, cap, zl, lse, coef, f, g):
    """cross_entropy_row's gradient (times f) for hard labels without class weights and without the Hessian
    (the common case), with those settings as constants: a loop without conditional loads or stores, which
    the CPU backend's compiler vectorises."""
    for j in range(C):
        gx, hx = ce_elem_grad(x[base + j], j == t, 0.0, 1.0, False, ls, e_c, cap, zl, lse, coef, False)
        g[base + j] = f * gx


def cross_entropy_row(x, base, C, t, q, cw, has_cw, soft, a, b, c, d, rw, gscale, g, h, want_g, want_h):
    ls = a
    zl = b
    cap = c
    lse = row_lse(x, base, C, cap, 1.0)
    e_c = ls / C
    u = 0.0
    v = 0.0
    for j in range(C):
        cj = cw[j] if has_cw else 1.0
        qj = q[base + j] if soft else 0.0
        du, dv = ce_elem_sums(x[base + j], qj, cj, soft, ls, e_c, cap)
        u = sum_step(u, du)
        v = sum_step(v, dv)
    ct = 1.0
    z_t = 0.0
    if not soft:
        ct = cw[t] if has_cw else 1.0
        z_t = capped(x[base + t], cap)
    value, coef = ce_row_finish(lse, soft, u, v, ct, z_t, ls, e_c, zl)
    if want_g and not (want_h or soft or has_cw):  # the common case, in a loop without branches
        ce_grad_plain(x, base, C, t, ls, e_c, cap, zl, lse, coef, rw * gscale, g)
        return rw * value
    if want_g or want_h:
        f = rw * gscale
        for j in range(C):
            cj = cw[j] if has_cw else 1.0
            qj = q[base + j] if soft else 0.0
            gx, hx = ce_elem_grad(x[base + j], (not soft) and j == t, qj, cj, soft, ls, e_c, cap, zl, lse, coef,
                                  want_h)
            if want_h:
                h[base + j] = f * hx
            if want_g:
                g[base + j] = f * gx
    return rw * value


def categorical_focal_row(x, base, C, t, q, cw, has_cw, soft, a, b, c, d, rw, gscale, g, h, want_g, want_h):
    gamma = a
    lse = row_lse(x, base, C, 0.0, 1.0)
    lp_t = x[base + t] - lse
    p_t = math.exp(lp_t)
    omp = -math.expm1(lp_t)  # 1 - p_t without cancellation
    a_t = cw[t] if has_cw else 1.0
    if omp > 0:
        pow_g = math.pow(omp, gamma)
        pow_g1 = math.pow(omp, gamma - 1.0)
        pow_g2 = math.pow(omp, gamma - 2.0)
    else:  # p_t == 1: the limits (every term with a negative power is multiplied by something smaller)
        pow_g = 1.0 if gamma == 0 else 0.0
        pow_g1 = 0.0
        pow_g2 = 0.0
    F = pow_g - gamma * p_t * lp_t * pow_g1
    dF = -gamma * pow_g1 * (2.0 + lp_t) + gamma * (gamma - 1.0) * p_t * lp_t * pow_g2
    if want_g or want_h:
        f = rw * gscale * a_t
        for j in range(C):
            pj = math.exp(x[base + j] - lse)
            diff = pj - 1.0 if j == t else pj
            if want_h:
                h[base + j] = f * (F * pj * (1.0 - pj) - dF * p_t * diff * diff)
            if want_g:
                g[base + j] = f * F * diff
    return -rw * a_t * pow_g * lp_t


def multi_margin_row(x, base, C, t, q, cw, has_cw, soft, a, b, c, d, rw, gscale, g, h, want_g, want_h):
    margin = a
    power = b
    x_t = x[base + t]
    w_t = cw[t] if has_cw else 1.0
    k = w_t / C
    f = rw * gscale * k
    value = 0.0
    g_t = 0.0
    h_t = 0.0
    for j in range(C):
        if j == t:
            continue
        v = margin - x_t + x[base + j]
        if v > 0:
            if power == 2.0:
                value += v * v
                gj = 2.0 * v
                hj = 2.0
            else:
                value += v
                gj = 1.0
                hj = 0.0
        else:
            gj = 0.0
            hj = 0.0
        g_t -= gj
        h_t += hj
        if want_g:
            g[base + j] = f * gj
        if want_h:
            h[base + j] = f * hj
    if want_g:
        g[base + t] = f * g_t
    if want_h:
        h[base + t] = f * h_t
    return rw * k * value


def kl_div_row(x, base, C, t, q, cw, has_cw, soft, a, b, c, d, rw, gscale, g, h, want_g, want_h):
    log_target = a != 0.0
    inv_t = 1.0 / b
    lse = row_lse(x, base, C, 0.0, inv_t)
    S = 0.0
    value = 0.0
    for j in range(C):
        tj = q[base + j]
        if log_target:
            qj = math.exp(tj)
            if qj > 0.0:
                value += qj * (tj - (x[base + j] * inv_t - lse))
        else:
            qj = tj
            if qj > 0.0:
                value += qj * (math.log(qj) - (x[base + j] * inv_t - lse))
        S += qj
    if want_g or want_h:
        f = rw * gscale
        for j in range(C):
            pj = math.exp(x[base + j] * inv_t - lse)
            qj = math.exp(q[base + j]) if log_target else q[base + j]
            if want_h:
                h[base + j] = f * S * pj * (1.0 - pj) * inv_t * inv_t
            if want_g:
                g[base + j] = f * (S * pj - qj) * inv_t
    return rw * value
