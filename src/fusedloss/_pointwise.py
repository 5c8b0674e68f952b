"""Scalar point functions shared by the Numba CPU and Numba-CUDA backends.

Plain Python on purpose: every function here uses only ``math`` and arithmetic, so that
``fusedloss.backends._jit.compile_namespace`` can compile the whole module with
``numba.njit(inline="always")`` or ``numba.cuda.jit(device=True)``. Calls between functions in this module
resolve to the compiled versions.

On the CPU the name ``math`` is replaced by a module whose exp, expm1, log, log1p, tanh and pow LLVM
vectorises (``backends/_vecmath.py``); to keep that working, call them through ``math`` (a power in a hot
loop as ``math.pow``: ``**`` stays a libm call) and keep row-invariant conditions and conditional loads or
stores out of the hot loops.

Each elementwise loss ``<name>`` has ``<name>_point(p, y, params) -> (value, gradient, hessian)`` where
``params`` is the tuple of the loss's scalar parameters, in the registry's order, as ``LossSpec.packed`` gives
it (its own number of them: none for mse, two for binary_focal); the function names them by unpacking it
on its first line (``alpha, gamma = params``). Unused outputs cost nothing:
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


def mul_exp(a, z):
    """a exp(z) for a >= 0, finite wherever the product is: a = 0 gives 0 for any z (not 0 * inf), and for
    |z| > 80, where exp(z) alone leaves float32's normal range (float64's from 709) while a exp(z) may not
    (a tiny target times a huge exponential), it is exp(log(a) + z). Below the cut-off the product of two
    normal numbers rounds once; above it the error is that of exp at log(a) + z, about |log a| + |z| eps,
    which the rounding of z itself already costs."""
    if a == 0.0:
        return 0.0
    if abs(z) <= 80.0:
        return a * math.exp(z)
    return math.exp(math.log(a) + z)


def logaddexp(a, b):
    """log(e^a + e^b) without overflow or underflow: the larger plus log1p(e^(smaller - larger)), so a mixture
    whose parts underflow (e^-800) keeps its log; -inf and -inf give -inf (not -inf - -inf = nan), a nan
    operand gives nan. C++ twin: math.hpp logaddexp."""
    if a != a or b != b:
        return a + b
    hi = max(a, b)
    if hi == -math.inf:
        return hi
    return hi + math.log1p(math.exp(min(a, b) - hi))


def neg_log_mix(d, w, lw, lw1):
    """-log((1 - w) + w e^d) for 0 < w < 1 (lw = log w, lw1 = log(1 - w)): log(p / m) of a mixture m = w q +
    (1 - w) p from d = log(q / p). As log p - log m it would lose its digits where it is small (w -> 0, or
    q -> p): so -log1p(w expm1(d)) where w e^d <= 1 and d < 1, -log1p(w e^d - w) where w e^d <= 1 and d >= 1
    (w e^d >= e w: nothing cancels), -logaddexp(lw1, lw + d) where w e^d > 1 (no overflow). C++ twin:
    math.hpp neg_log_mix."""
    u = lw + d
    if u > 0.0:
        return -logaddexp(lw1, u)
    if d < 1.0:
        return -math.log1p(w * math.expm1(d))
    return -math.log1p(math.exp(u) - w)


def sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), sigmoid(x) = 1 / (1 + exp(-x)), from one exp of -|x| (no overflow) and one
    division: i = 1 / (1 + e), and e i on the other side; each keeps its relative precision (nothing is formed as
    1 - s). C++ twin: math.hpp sigmoid_pair, which rounds them the same way."""
    e = math.exp(-abs(x))
    i = 1.0 / (1.0 + e)
    ei = e * i
    if x >= 0:
        return i, ei
    return ei, i


def sigmoid(x):
    """sigmoid(x) alone (custom losses' formulas: fusedloss.sym.sigmoid), rounded as sigmoid_pair's."""
    return sigmoid_pair(x)[0]


def bce_logits_value(x, y, pw):
    """(1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y: binary cross-entropy on a logit.

    For x >= 0 both terms of that form are >= 0. For x < 0 it would cancel (x + softplus(-x) loses all
    digits of a tiny result), so use the equal lw softplus(x) - pw y x, whose terms are both >= 0 there.
    """
    lw = 1.0 + (pw - 1.0) * y
    sp = math.log1p(math.exp(-abs(x)))  # on either side of the cut-off, the softplus there is exactly this
    if x >= 0:
        return (1.0 - y) * x + lw * sp
    return lw * sp - pw * y * x


def log_cosh_value(ad):
    """log(cosh(d)) for ad = |d| >= 0, within 8 ulp for every finite ad (mpmath, tests/test_vecmath.py).

    For ad >= 1: ad + log1p(e) - log 2 with e = exp(-2 ad) (no overflow: exp of a negative number only).
    For ad < 1 that form cancels (it subtracts log 2 from something close to it), so use
    log cosh = -log(1 - tanh^2) / 2 = -log1p(-t^2) / 2, t = tanh(ad) (computed without cancellation).
    One log1p serves both sides (its argument is selected), and tanh and e are those a point function
    computes for the gradient and Hessian anyway, so a compiled point shares them: three transcendental
    functions for value, gradient and Hessian, in a loop that vectorises (no branch around a call).
    (C++ twin: math.hpp log_cosh_value, which branches: the C++ kernels vectorise the two sides apart.)
    """
    t = math.tanh(ad)
    e = math.exp(-2.0 * ad)
    small = ad < 1.0
    L = math.log1p(-t * t if small else e)
    return -0.5 * L + 0.0 if small else ad + L - LN2  # (+ 0.0: log cosh 0 is +0)


def sech2(x):
    """1 / cosh(x)^2 = 1 - tanh(x)^2, as 4 e / (1 + e)^2 with e = exp(-2|x|): no cancellation for large |x|
    (where 1 - tanh^2 rounds to 0 long before the true value underflows) and no overflow."""
    e = math.exp(-2.0 * abs(x))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def expm1_minus(L):
    """expm1(L) - L = L^2/2 + L^3/6 + ... >= 0: the difference cancels for small |L| (the value of a confident row
    of poly1 with epsilon = -1), so there the series (|L| < 1/2: 24 terms reach the last bit). C++ twin:
    math.hpp expm1_minus."""
    if abs(L) < 0.5:
        term = 0.5 * L * L
        total = term
        for n in range(3, 27):
            term = term * L / n
            total += term
        return total
    return math.expm1(L) - L


def exprel(t):
    """expm1(t) / t, and its limit 1 at t = 0: keeps expm1's relative accuracy for every t (t = -inf gives 0), where
    (exp(t) - 1) / t would lose every digit as t -> 0 and 0 / 0 is undefined at t = 0."""
    if t == 0.0:
        return 1.0
    return math.expm1(t) / t


def log1p_ratio(v):
    """log1p(v) / v for v >= 0, and its limit 1 at v = 0: a v so small that any multiple of it would lose bits to
    gradual underflow still gives its ratio to full precision (log1p(v) = v there)."""
    if v == 0.0:
        return 1.0
    return math.log1p(v) / v


# --- regression losses ------------------------------------------------------------------------------


def mse_point(p, y, params):
    d = p - y
    return d * d, 2.0 * d, 2.0


def mae_point(p, y, params):
    d = p - y
    return abs(d), sign(d), 0.0


def huber_point(p, y, params):
    (delta,) = params
    d = p - y
    ad = abs(d)
    if ad <= delta:
        return 0.5 * d * d, d, 1.0
    return delta * (ad - 0.5 * delta), delta * sign(d), 0.0


def asymmetric_huber_point(p, y, params):
    delta, alpha_left, alpha_right = params
    d = p - y
    a = alpha_left if d < 0 else alpha_right  # nan: alpha_right (the value stays nan)
    ad = abs(d)
    if ad <= delta:
        return a * (0.5 * d * d), a * d, a
    return a * (delta * (ad - 0.5 * delta)), a * (delta * sign(d)), 0.0


def smooth_l1_point(p, y, params):
    (beta,) = params
    d = p - y
    ad = abs(d)
    if ad < beta:
        return 0.5 * d * d / beta, d / beta, 1.0 / beta
    return ad - 0.5 * beta, sign(d), 0.0


def pseudo_huber_point(p, y, params):
    (delta,) = params
    r = (p - y) / delta
    s = math.hypot(1.0, r)  # sqrt(1 + r^2) without overflow
    # delta^2 (s - 1) = delta^2 r^2 / (s + 1): no cancellation for small r, no overflow for large r
    return delta * delta * r * (r / (1.0 + s)), delta * (r / s), 1.0 / (s * s * s)


def u_minus_log1p(u):
    """u - log1p(u) for u >= 0, accurate as u -> 0 where the direct form cancels (it is u^2/2 there).
    For u <= 1/2: v = u / (2 + u), u = 2v / (1 - v) and log1p(u) = 2 atanh(v), so the value is
    2 v^2 / (1 - v) - 2 v^3 P(v^2) with P(w) = sum_k w^(k-1) / (2k+1) = (atanh(v) - v) / v^3, 12 terms (v <= 1/5:
    the first term left out is below 1e-18 of the result); the second term is at most v/3 of the first, so nothing cancels.
    Above 1/2 the direct form loses at most a factor 5 (u - log1p(u) >= u / 5 there)."""
    if u <= 0.5:
        v = u / (2.0 + u)
        w = v * v
        P = (1.0 / 3 + w * (1.0 / 5 + w * (1.0 / 7 + w * (1.0 / 9 + w * (1.0 / 11 + w * (1.0 / 13 + w * (
            1.0 / 15 + w * (1.0 / 17 + w * (1.0 / 19 + w * (1.0 / 21 + w * (1.0 / 23 + w * (1.0 / 25))))))))))))
        return 2.0 * w / (1.0 - v) - 2.0 * v * w * P
    return u - math.log1p(u)


def fair_point(p, y, params):
    (c,) = params
    d = p - y
    u = abs(d) / c
    s = 1.0 / (1.0 + u)  # 1 / (1 + u), squared below: no overflow of (1 + u)^2
    return c * c * u_minus_log1p(u), d * s, s * s


def cauchy_point(p, y, params):
    (c,) = params
    d = p - y
    z = d / c
    a = abs(z)
    if a <= 1.0:
        s = 1.0 / (1.0 + z * z)
        return 0.5 * c * c * math.log1p(z * z), d * s, (1.0 - a) * (1.0 + a) * s * s
    # beyond |z| = 1 in t = 1 / z, so that z^2 never overflows: 1 + z^2 = z^2 (1 + t^2)
    t = 1.0 / z
    t2 = t * t
    s = 1.0 / (1.0 + t2)
    return 0.5 * c * c * (2.0 * math.log(a) + math.log1p(t2)), c / (z + t), t2 * (t2 - 1.0) * s * s


def general_robust_point(p, y, params):
    """Barron's rho in double precision. General alpha (b = |alpha - 2|, a = alpha/2, w = |d| / (c sqrt(b)),
    u = 1 + w^2, L = log u):
    l = b/alpha expm1(a L) = (b/2) L exprel(a L) for |a L| <= 1, which is exact at alpha = 0 (exprel(0) = 1) and
    has no 0/0 near it; beyond, b/alpha expm1(a L), and for a L > 1 with w > 1 b/alpha (u^a - 1) with u^a from a
    power (no cancellation: u^a > e).
    w <= 1: L = log1p(w^2), with (b/2) L = (z/2) log1p_ratio(w^2) and a L = alpha/(2b) z log1p_ratio(w^2), so that
    neither loses bits when w^2 underflows (|alpha| up to the float64 range); u^(a-1) = exp(+-(b/2) L).
    w > 1: in t = 1/w, L = 2 log w + log1p(t^2) (u never formed: no overflow), and the powers of w through ``**``
    (a correctly rounded pow: exp(y log w) would cost |y log w| ulp at |d| = 1e30).
    Near alpha = 2 nothing is singular: b/alpha and u^a are of the sizes of b and 1/b, their product z/2 (the
    limit is only alpha = 2 itself, b = 0). The limits alpha = 2 and +-inf have their own forms."""
    alpha, c = params
    r = (p - y) / c
    if alpha == 2.0:
        return 0.5 * r * r, r / c, 1.0 / c / c
    if alpha == math.inf or alpha == -math.inf:
        z = r * r
        s = 1.0 if alpha > 0 else -1.0
        e = math.exp(s * 0.5 * z)
        value = math.expm1(0.5 * z) if alpha > 0 else -math.expm1(-0.5 * z)
        if e == 0.0:  # z beyond exp's range (alpha = -inf): the limits 0, not 0 * inf at |d| = inf
            return value, 0.0, 0.0
        return value, r * e / c, e * (1.0 + s * z) / c / c
    b = abs(alpha - 2.0)
    a = 0.5 * alpha
    w = abs(r) / math.sqrt(b)
    if w <= 1.0:
        v = w * w
        z = r * r
        hl = 0.5 * z * log1p_ratio(v)  # (b/2) L
        al = (alpha / b) * hl  # a L
        e = math.exp(hl if alpha > 2.0 else -hl)  # u^(a - 1) = exp((alpha - 2)/2 L)
        ratio = (1.0 + ((alpha - 1.0) / b) * z) / (1.0 + v)  # (1 + (alpha - 1) z/b) / u
        value = hl * exprel(al) if abs(al) <= 1.0 else (b / alpha) * math.expm1(al)
        return value, r * e / c, e * ratio / c / c
    t = 1.0 / w
    t2 = t * t
    l1t = math.log1p(t2)
    al = a * (2.0 * math.log(w) + l1t) if alpha != 0.0 else 0.0  # alpha = 0: not 0 * inf at |d| = inf
    f = math.exp((a - 1.0) * l1t)  # u^(a - 1) = w^(alpha - 2) f
    ratio = (t2 + (alpha - 1.0)) / (t2 + 1.0)
    if abs(al) <= 1.0:
        value = 0.5 * b * (2.0 * math.log(w) + l1t) * exprel(al)
    elif al > 1.0:
        value = (b / alpha) * (w**alpha * math.exp(a * l1t) - 1.0)
    else:  # u^a < 1/e: expm1's error is small next to 1 (and |d| = inf gives its limit b / -alpha)
        value = (b / alpha) * math.expm1(al)
    # r u^(a - 1) = sign(r) sqrt(b) w^(alpha - 1) f: one power of the size of the result (no underflow of a factor)
    return value, math.copysign(math.sqrt(b) * w ** (alpha - 1.0) * f, r) / c, w ** (alpha - 2.0) * f * ratio / c / c


def log_cosh_point(p, y, params):
    d = p - y
    ad = abs(d)
    e = math.exp(-2.0 * ad)  # the same e as log_cosh_value's (computed once in compiled code)
    # tanh(d) as tanh(|d|) with d's sign (tanh is odd): the tanh log_cosh_value computes, shared in compiled code;
    # 1 - tanh^2 = 4 e / (1 + e)^2: no cancellation when |d| is large
    return log_cosh_value(ad), math.copysign(math.tanh(ad), d), 4.0 * e / ((1.0 + e) * (1.0 + e))


def quantile_point(p, y, params):
    (q,) = params
    r = y - p
    if r > 0:
        return q * r, -q, 0.0
    if r < 0:
        return (q - 1.0) * r, 1.0 - q, 0.0
    return r * 0.0, r * 0.0, 0.0  # r = 0: value 0, subgradient 0; nan stays nan


def expectile_point(p, y, params):
    (tau,) = params
    d = p - y
    w = tau if d <= 0 else 1.0 - tau  # nan: 1 - tau (the value stays nan)
    return w * (d * d), 2.0 * w * d, 2.0 * w


def poisson_nll_point(p, y, params):
    log_input, eps = params
    if log_input != 0.0:  # p = log(rate)
        e = math.exp(p)
        return e - y * p, e - y, e
    q = p + eps
    # q = 0 (rate 0 with eps = 0): IEEE's values, as the C++ twin (losses.hpp poisson_nll_mode) and PyTorch:
    # y > 0 gives l = inf, g = -inf, h = inf; y = 0 gives nan (0 * inf). Written without a division by 0 or a
    # log of 0, which Python (and Numba's Python error model) would raise instead.
    if q == 0.0:
        return p - y * -math.inf, 1.0 - y * math.inf, y * math.inf
    r = y / q
    return p - y * math.log(q), 1.0 - r, r / q  # r / q: q * q underflows to 0 for q < 1e-154


def tweedie_point(p, y, params):
    """The value takes scikit-learn's forms of its own at rho = 0, 1 and 2. t2 = exp((2-rho) p) and t1 =
    y exp((1-rho) p) are 1 and y exactly at rho = 2 and 1; for rho < 1 or >= 2, t1 is the exact product where
    exp alone overflows (``mul_exp``), and where both terms overflow (their exponents have one sign there) the
    results are t2 times their forms in r = t1 / t2 = y exp(-p). C++ twin: losses.hpp tweedie."""
    (rho,) = params
    c2 = 2.0 - rho
    c1 = 1.0 - rho
    e2 = 1.0 if rho == 2.0 else math.exp(c2 * p)
    # y exp((1 - rho) p): exp overflows for very negative p (1 - rho < 0), and 0 * inf would make the loss nan
    # for y = 0, where its y-terms are absent (the value is exp((2 - rho) p) / (2 - rho), 0 at p = -1e30).
    # Python's exp raises instead of returning inf, so it is not called for y = 0.
    ye1 = 0.0
    if rho == 1.0:
        ye1 = y
    elif 1.0 < rho < 2.0:
        if y != 0.0:
            ye1 = y * math.exp(c1 * p)
    elif y > 0.0:
        ye1 = mul_exp(y, c1 * p)
    elif y < 0.0:
        ye1 = -mul_exp(-y, c1 * p)
    if rho == 0.0:
        d = math.exp(p) - y
        value = 0.5 * d * d
    elif rho == 1.0:
        value = e2 - y * p
    elif rho == 2.0:
        value = p + ye1
    else:
        value = e2 / c2 - ye1 / c1
    grad = e2 - ye1
    hess = c2 * e2 - c1 * ye1
    if (rho < 1.0 or rho > 2.0) and math.isinf(e2) and math.isinf(ye1):
        r = mul_exp(y, -p) if y > 0.0 else -mul_exp(-y, -p)
        if rho != 0.0:
            value = e2 * (1.0 / c2 - r / c1)
        grad = e2 * (1.0 - r)
        hess = e2 * (c2 - c1 * r)
    return value, grad, hess


def gamma_point(p, y, params):
    ye = mul_exp(y, -p)  # y exp(-p)
    return p + ye, 1.0 - ye, ye


def expm1_pow(q, u, z):
    """expm1(z u) for u = log q: q^z - 1 (libm's pow of q, rounded once) where |z u| >= 1, for which exp(z u)
    would cost |z u| ulp; exp where q left the float range (u = log y - log p)."""
    zu = z * u
    if abs(zu) < 1.0:
        return math.expm1(zu)
    if 2.2250738585072014e-308 <= q < math.inf:
        return q**z - 1.0
    return math.exp(zu) - 1.0


def tweedie_identity_point(p, y, params):
    """scikit-learn's HalfTweedieLossIdentity; the value for y > 0 as p^k S(u), u = log(y/p), S the series
    next to p = y and a closed form beyond; every power of p from a = p^(-rho/2), whose exponent is exact
    (_reference.tweedie_identity has the reasoning). The powers as ``**`` (libm's pow: the vectorised math.pow
    costs up to 350 ulp at p = 1e30, rho = -7). C++ twin: losses.hpp tweedie_identity."""
    (rho,) = params
    if rho == 0.0:
        d = p - y
        return 0.5 * d * d, d, 1.0 if d == d else d
    k = 2.0 - rho
    j = 1.0 - rho
    a = p ** (-0.5 * rho)
    grad = (a * (p - y)) * a
    hess = (a * ((j * p + rho * y) / p)) * a
    c = p * a if 0.0 < a < math.inf else p ** (0.5 * k)  # p^(k/2)
    if not y > 0.0:
        if p != p or y != y:
            return p + y, grad, hess
        if rho == 1.0:
            return p, grad, hess
        value = (c * c) / k
        if y != 0.0:
            value -= y * ((c / p) * c) / j
        return value, grad, hess
    if p != p:
        return p, grad, hess
    q = y / p
    if 0.5 <= q <= 2.0:
        u = math.log1p((y - p) / p)
    elif 2.2250738585072014e-308 <= q < math.inf:
        u = math.log(q)
    else:  # y / p leaves the float range
        u = math.log(y) - math.log(p)
    if u == 0.0:
        return 0.0, grad, hess
    if abs(u) * max(1.0, abs(k)) <= 1.0:
        t = 0.5 * u * u
        s = 1.0
        S = t
        for n in range(3, 22):
            t = t * u * (1.0 / n)  # (1/n off the chain from term to term: no division on it)
            s = k * s + 1.0
            S += s * t
    elif abs(j) >= 0.5:
        ek = u if k == 0.0 else expm1_pow(q, u, k) / k
        S = (ek - expm1_pow(q, u, 1.0)) / j
    else:
        ej = u if j == 0.0 else expm1_pow(q, u, j) / j
        eu = q if 2.2250738585072014e-308 <= q < math.inf else math.exp(u)
        S = (eu * ej - expm1_pow(q, u, 1.0)) / k
    return (c * S) * c, grad, hess


def hinge_embedding_point(x, y, params):
    """torch's masks: x where y != -1, max(0, margin - x) where y != 1; gradient -1 from the margin term where
    margin - x >= 0 (torch's clamp_min at the kink); both terms (any other y) as max(x, margin), their exact sum;
    nan x or y: nan everywhere. C++ twin: losses.hpp hinge_embedding."""
    (margin,) = params
    if x != x or y != y:
        return x + y, x + y, x + y
    m = margin - x
    own = y != -1.0
    mar = y != 1.0
    if own and mar:  # both terms: x + max(0, m) = max(x, margin), without rounding the sum
        return (x if m < 0.0 else margin), (1.0 if m < 0.0 else 0.0), 0.0
    if own:
        return x, 1.0, 0.0
    return (0.0 if m < 0.0 else m), (0.0 if m < 0.0 else -1.0), 0.0


def log_ratio1p(p, y):
    """log((1 + p) / (1 + y)) for p, y > -1 without cancellation: where the ratio q lies in [1/2, 2] (r near 0),
    log1p((p - y) / (1 + y)), whose argument is exact but for three roundings; elsewhere |r| >= log 2 and log(q)
    is within a few ulp; where q leaves the normal range (1 + y near 0, |r| > 700), log1p(p) - log1p(y), whose
    rounding is small next to |r| there."""
    b = 1.0 + y
    q = (1.0 + p) / b
    if q >= 0.5 and q <= 2.0:
        return math.log1p((p - y) / b)
    if q < 2.2250738585072014e-308 or q > 1.7976931348623157e308:
        return math.log1p(p) - math.log1p(y)
    return math.log(q)


def squared_log_point(p, y, params):
    r = log_ratio1p(p, y)
    a = 1.0 + p
    return 0.5 * r * r, r / a, (1.0 - r) / a / a


def msle_point(p, y, params):
    value, grad, hess = squared_log_point(p, y, params)  # twice it (doubling is exact)
    return 2.0 * value, 2.0 * grad, 2.0 * hess


def mape_point(p, y, params):
    (epsilon,) = params
    d = p - y
    m = max(abs(y), epsilon)
    return abs(d) / m, sign(d) / m, 0.0


# --- binary classification (elementwise) ------------------------------------------------------------

BCE_EPS = 9.999999960041972e-13  # PyTorch's clamp of p (1 - p) in the BCE gradient: ATen's EPSILON, 1e-12 as a float32


def binary_cross_entropy_point(p, y, params):
    (pw,) = params
    if p != p:  # the clamps below would turn nan into a finite number
        return p, p, p
    log_p = max(math.log(p), -100.0) if p > 0 else -100.0
    log_1mp = max(math.log1p(-p), -100.0) if p < 1 else -100.0
    return (
        -(pw * y * log_p + (1.0 - y) * log_1mp),
        ((1.0 - y) * p - pw * y * (1.0 - p)) / max(p * (1.0 - p), BCE_EPS),
        pw * y / max(p * p, BCE_EPS) + (1.0 - y) / max((1.0 - p) * (1.0 - p), BCE_EPS),
    )


def binary_cross_entropy_with_logits_point(x, y, params):
    pw, smoothing = params
    ys = y * (1.0 - smoothing) + 0.5 * smoothing
    lw = 1.0 + (pw - 1.0) * ys
    s, sm = sigmoid_pair(x)
    # g = (1 - y) - lw sigmoid(-x) = (1 - y) sigmoid(x) - pw y sigmoid(-x) (as 1 - sigmoid(-x) = sigmoid(x)): the
    # first form cancels for y = 0, x << 0 (1 - (1 - tiny)), the second is a difference of two terms that
    # vanish where the gradient does, so a tiny gradient keeps its digits
    return bce_logits_value(x, ys, pw), (1.0 - ys) * s - pw * ys * sm, lw * s * sm


def binary_focal_point(x, y, params):
    alpha, gamma = params
    s, sm = sigmoid_pair(x)
    ce = bce_logits_value(x, y, 1.0)
    q = s * (1.0 - y) + sm * y  # 1 - p_t, as a sum of two non-negative terms: no cancellation
    a_t = 1.0 if alpha < 0 else alpha * y + (1.0 - alpha) * (1.0 - y)
    u = s * sm
    if q > 0:
        # f' = gamma q^(gamma-1) dq and f'' = gamma (gamma-1) q^(gamma-2) dq^2 + gamma q^(gamma-1) dq (1-2s), with
        # dq = (1-2y) s (1-s), written as f' = gamma f r and f'' = f' ((gamma-1) r + (1-2s)) with r = dq / q:
        # |r| <= 1 (q >= min(s, 1-s) >= s (1-s)), while q^(gamma-1) and q^(gamma-2) overflow once q is tiny
        # (|x| > ~355 in float64: Hessian nan or -inf, and OverflowError from Python's **). The C++ twin
        # (losses.hpp binary_focal_mode) uses the same form, and the same power: exp(gamma log q) in float64
        # (math.pow, which the CPU backend vectorises; within 1e-13 relative wherever q^gamma is normal)
        f = math.pow(q, gamma)
        r = (1.0 - 2.0 * y) * (u / q)
        df = gamma * f * r
        d2f = df * ((gamma - 1.0) * r + (1.0 - 2.0 * s))
    else:  # q underflowed: the limits of q^gamma and of its derivatives times ce
        f = 1.0 if gamma == 0 else 0.0
        df = 0.0
        d2f = 0.0
    smy = s * (1.0 - y) - sm * y  # s - y without its cancellation at y = 1, x >> 0 (s - 1 = -sigmoid(-x))
    return a_t * ce * f, a_t * (smy * f + ce * df), a_t * (u * f + 2.0 * smy * df + ce * d2f)


def exponential_point(x, y, params):
    em = mul_exp(y, -x)  # y exp(-x); a hard target leaves out the other side (not 0 * inf)
    ep = mul_exp(1.0 - y, x)
    return em + ep, ep - em, em + ep


def hinge_point(x, y, params):
    t = 1.0 if y > 0 else -1.0
    m = 1.0 - t * x
    if m > 0:
        return m, -t, 0.0
    if m <= 0:
        return 0.0, 0.0, 0.0
    return m, m, m  # nan


def squared_hinge_point(x, y, params):
    t = 1.0 if y > 0 else -1.0
    m = 1.0 - t * x
    if m > 0:
        return m * m, -2.0 * t * m, 2.0
    if m <= 0:
        return 0.0, 0.0, 0.0
    return m, m, m  # nan


def zero_one_point(x, y, params):
    (threshold,) = params
    if x != x:
        return x, 0.0, 0.0
    if (x > threshold) != (y > 0):
        return 1.0, 0.0, 0.0
    return 0.0, 0.0, 0.0


# --- multiclass: one row at a time -------------------------------------------------------------------
#
# Every row function has the same signature, so one generic row loop per backend serves them all:
#   <loss>_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h) -> value
# x: flat logits, the row is x[base : base + C]; t: the row's label (unused for soft targets; ignored rows
# never reach a row function); q: flat soft targets (same layout as x) when soft; cw: the per-class vector
# when has_cw; params: the scalar parameters (LossSpec.packed); rw: the row's sample weight. Writes
# g[base + j] = rw * gscale * dl/dx_j (if want_g) and h likewise (if want_h), each element of x read
# before the same element of g is written (so g may be x itself), and returns rw * value.
# Arrays not in use are passed as empty arrays. Row sums accumulate in float64.
#
# Rows with nothing to normalise (README, "Guarantees"; rows.hpp has the same rule): a row with a NaN logit, or
# whose logits are all -inf, has value nan and nan in every element of its gradient and Hessian, in every loss.
# The softmax rows see it from their max and sum (``no_softmax``), one test per row; ignored rows (label
# ignore_index, weight 0) never reach a row function: the row loops give them 0.


def capped(v, cap):
    """softcap: cap * tanh(v / cap), or v when cap == 0."""
    if cap > 0.0:
        return cap * math.tanh(v / cap)
    return v


def row_max(x, base, C):
    """max_j x_j over the row; nan is skipped (a nan logit makes its exp, hence the row sum, nan later) and a
    row of -inf gives -inf. C++ twin: rows.hpp row_max."""
    m = -math.inf
    for j in range(C):
        v = float(x[base + j])  # float64, as compiled code widens it (and so the row state that uses it)
        if v > m:
            m = v
    return m


def nan_row(base, C, g, h, want_g, want_h):
    """A row under the rule above: nan in every element of g (if want_g) and h (if want_h); returns nan.
    C++ twin: rows.hpp nan_row."""
    for j in range(C):
        if want_g:
            g[base + j] = math.nan
        if want_h:
            h[base + j] = math.nan
    return math.nan


def no_softmax(m, s):
    """Whether a softmax row falls under the rule above, from its logits' max ``m`` (``row_max``, nan skipped)
    and its sum of exponentials ``s``: m = -inf (no logit above -inf), or s nan (a nan logit; also +inf, through
    exp(inf - inf), as the formula says). C++ twin: rows.hpp no_softmax."""
    return m == -math.inf or s != s


def row_shift(m, cap):
    """The shift of a row's exponentials: z of the row max ``m`` (softcap is increasing, so that is the max
    of z), or 0 when it is -inf, so that every exp is exp(-inf) = 0 instead of exp(-inf + inf) = nan and the
    row sum is 0. C++ twin: rows.hpp exp_shift."""
    sh = capped(m, cap)
    if sh == -math.inf:
        return 0.0
    return sh


def exp_diff_as(a, b, scale, like):
    """exp((a - b) scale) in the precision of ``like``'s type; here (plain Python) always float64's. The CPU
    backend replaces it with ``_vecmath.exp_diff_as`` and the CUDA backend with ``numba_cuda.exp_diff_as``, which
    take float32 arithmetic for a float32 ``like``: the cross_entropy rows' exponentials of float32 logits, as the
    C++ rows take them in the data's type."""
    return math.exp((a - b) * scale)


def row_exp_sums(x, base, C, sh, cap, inv_t, like):
    """(s1, k) of the row's exponentials e_j = exp((z_j - sh) inv_t), z_j = capped(x_j): s1 sums the e_j that
    are not 1, k counts those that are (the maxima). ``row_state``'s inputs. The difference z_j - sh is taken
    before the scaling by inv_t (one rounding, as rows.hpp kl_div_with_logits does). The exponentials are
    ``exp_diff_as(., like)``: cross_entropy passes a logit (its type: the data's), the rows whose value is a small
    difference of large sums (kl_div, jensen_shannon, ...) a float64 0.0 (``softmax_row``)."""
    s1 = 0.0
    k = 0.0
    for j in range(C):
        e = exp_diff_as(capped(x[base + j], cap), sh, inv_t, like)
        if e == 1.0:
            k += 1.0
        else:
            s1 += e
    return s1, k


def row_state(sh, s1, k):
    """The softmax state of a row, ``(sh, s, s - 1, 1 / s, log s)``, from its shift and ``row_exp_sums``.

    logsumexp = sh + log s with s = sum_j exp(z_j - sh) = s1 + k. When one class dominates, s = 1 + tiny and
    the usual forms (lse - z_t, p_t - 1, p (1 - p)) cancel, in float64 too; and at |z| ~ 1e17 and beyond,
    sh + log s rounds to sh, so exp(z_j - lse) of a tied row gives 1 for every class. Kept apart, s - 1 =
    s1 + (k - 1) has no cancellation: log s = log1p(s - 1), log p_j = (z_j - sh) - log s and 1 - p_t =
    -expm1(log p_t) are accurate to a few ulp however confident or large the row is (``row_log_p``,
    ``row_p``). A row whose logits are all -inf has s = 0: there 1/s is taken as 0 (every p_j = 0) and
    log s = -inf. C++ twin: rows.hpp RowSum.
    """
    s = s1 + k
    sm1 = s1 + (k - 1.0)
    if s == 0.0:
        return sh, s, sm1, 0.0, -math.inf
    return sh, s, sm1, 1.0 / s, math.log1p(sm1)


def lse_state(m, r):
    """``row_state`` from an online logsumexp state (m, r) (``lse_push``/``lse_merge``, the one-pass block
    kernel): the max's 1 is kept apart there too (r = s - 1), so a confident row keeps its s - 1 exactly. A
    state that saw no logit above -inf has s = 0 (r is 0, or nan when it saw a nan)."""
    if m == -math.inf:
        return row_state(0.0, r, 0.0)
    return row_state(row_shift(m, 0.0), r, 1.0)


def softmax_row(x, base, C, inv_t):
    """(m, st) of a row without softcap: its max (``row_max``) and its softmax state (``row_state``) of the
    exponentials exp((x_j - sh) inv_t). The first passes of the softmax rows other than cross_entropy's."""
    m = row_max(x, base, C)
    sh = row_shift(m, 0.0)
    s1, k = row_exp_sums(x, base, C, sh, 0.0, inv_t, 0.0)
    return m, row_state(sh, s1, k)


def row_log_p(z, st):
    """log p = (z - sh) - log s for a class whose (capped) logit is z; -inf in a row of -inf (s = 0)."""
    sh, s, sm1, inv_s, log_s = st
    if s == 0.0:
        return -math.inf
    return (z - sh) - log_s


def row_p(e, st):
    """(p_j, 1 - p_j) from e_j = exp(z_j - sh): 1 - p_j = (s - e_j) / s, with s - 1 for a maximum (e_j == 1),
    so nothing cancels (for any other class s - e_j >= 1: s holds a maximum's 1 besides e_j).
    C++ twin: rows.hpp RowSum::one_minus_p."""
    sh, s, sm1, inv_s, log_s = st
    if e == 1.0:
        return inv_s, sm1 * inv_s
    return e * inv_s, (s - e) * inv_s


def lse_push(m, r, z, like):
    """One step of the online logsumexp: (m, r) with r = sum exp(z_i - m) - 1 over the z seen (the max's own 1
    kept apart, as ``row_state`` keeps it: s - 1 of a confident row is a sum of tiny terms, which 1 + them would
    round away), then z added. The empty state is (-inf, 0).

    The running max only grows; when it does, the sum so far (r + 1) is rescaled. -inf adds nothing (and never
    makes exp(-inf - -inf) = nan); nan makes r nan, as in ``row_exp_sums``. The exponentials are ``exp_diff_as(.,
    like)``: in the data's precision for a logit ``like``, as ``row_exp_sums`` takes them.
    """
    if z > m:
        r = (r + 1.0) * exp_diff_as(m, z, 1.0, like)  # the empty state: (0 + 1) exp(-inf) = 0
        m = z
    elif z != -math.inf:
        r += exp_diff_as(z, m, 1.0, like)
    return m, r


def lse_merge(m1, r1, m2, r2):
    """Two online-logsumexp states (m, r) combined into one (the block reduction's step): the smaller max's
    sum r + 1 rescaled into the larger's r."""
    if m1 == m2 and (m1 == -math.inf or m1 == math.inf):  # no mass on either side, or two +inf maxima
        return m1, r1 + r2
    if m1 >= m2:
        return m1, r1 + (r2 + 1.0) * math.exp(m2 - m1)
    return m2, r2 + (r1 + 1.0) * math.exp(m1 - m2)


def lse_finish(m, r):
    """logsumexp from an online state: m + log1p(r); a max of -inf (all masked) or +inf gives that."""
    if m == -math.inf or m == math.inf:
        return m
    return m + math.log1p(r)


# cross_entropy in per-element pieces, so that a loop over one row (``cross_entropy_row``, one thread per row)
# and a block of threads sharing a row (the CUDA block kernel) run the same math:
#   ce_elem_sums:  class j's terms of the row sums (u, v) (summed in any order)
#   ce_row_finish: value and the coefficient A from the row's softmax state and the sums
#   ce_elem_grad:  class j's gradient and Hessian from the state and A
# The state is ``row_state``'s tuple (sh, s, s - 1, 1/s, log s). v is summed relative to the row's shift s0 = sh,
# so that every term is >= 0 and nothing cancels (as in rows.hpp). The row loop knows sh before it sums; the
# one-pass block kernel sums relative to its running max and moves v along when the max grows (ce_sums_shift).


def ce_elem_sums(xj, qj, cj, soft, ls, e_c, cap, s0):
    """Class j's terms (u_j, v_j) of the row sums. Soft targets: u = b_j, v = b_j (s0 - z_j) with b_j the weight
    of z_j in the target distribution; hard labels: u = c_j (sum W), v = c_j (s0 - z_j) (needed only with
    smoothing). A weightless class adds nothing, even at z_j = -inf."""
    if soft:
        bj = cj * (qj * (1.0 - ls) + e_c)
        if bj != 0.0:
            return bj, bj * (s0 - capped(xj, cap))
        return bj, 0.0
    if ls != 0.0 and cj != 0.0:
        return cj, cj * (s0 - capped(xj, cap))
    return cj, 0.0


def ce_sums_shift(u, v, s_from, s_to):
    """The sum v = sum_j b_j (s_from - z_j) (``ce_elem_sums``, u = sum_j b_j) taken relative to s_to >= s_from
    instead: v + u (s_to - s_from), every term still >= 0. Nothing moves when u = 0 or the shift is the same
    (never 0 * inf)."""
    if u == 0.0 or s_to == s_from:
        return v
    return v + u * (s_to - s_from)


def ce_row_finish(st, s0, soft, u, v, ct, z_t, ls, e_c, zl):
    """(value, A) of a row from its softmax state ``st`` and sums (u, v) taken relative to ``s0``; ``ct``,
    ``z_t``: the label's class weight and capped logit (hard labels). sum_j b_j (lse - z_j) is
    u (lse - s0) + v; the hard-label term lse - z_t is -log p_t = (sh - z_t) + log s, a sum of two
    non-negative numbers (rows.hpp cross_entropy: the same forms)."""
    sh, s, sm1, inv_s, log_s = st
    rel = (sh - s0) + log_s  # lse - s0
    if soft:
        coef = u
        value = coef * rel + v
    else:
        coef = (1.0 - ls) * ct + e_c * u
        value = (1.0 - ls) * ct * -row_log_p(z_t, st)
        if ls != 0.0:
            value += e_c * (u * rel + v)
    if zl != 0.0:
        lse = sh + log_s
        value += zl * lse * lse
    return value, coef


def ce_entropy(st, ent):
    """The row's softmax entropy H = log s + (1/s) sum_j e_j (sh - z_j) from its state and that sum ``ent``
    (terms 0 where e_j = 0): two non-negative terms, so H >= 0 and exact on a confident row (s = 1 + tiny,
    every other e_j tiny or 0), where -sum p log p from rounded p_j would lose it. 0 for a row of -inf."""
    sh, s, sm1, inv_s, log_s = st
    if s == 0.0:
        return 0.0
    return log_s + ent * inv_s


def ce_elem_grad(xj, is_t, qj, cj, soft, ls, e_c, cap, zl, st, coef, want_h, cp, ent):
    """(dl/dx_j, d2l/dx_j^2) of a row (before the row weight and scale).

    p_j = exp(z_j - sh) / s and 1 - p_j from ``row_p``; the label's element uses p_t - 1 = expm1(log p_t), so
    that A p_t - b_t = (A - (1-e) c_t) p_t - (e/C) c_t - (1-e) c_t (1 - p_t) does not cancel when p_t -> 1
    (rows.hpp: the label's element in double). The softcap chain uses sech2 for 1 - tanh^2 (math.hpp
    tanh_sech2). A row of -inf (s = 0) has lse = -inf: z_loss is left out of its derivatives (0 * inf).
    ``cp``: the confidence penalty, ``ent``: the row's entropy H (``ce_entropy``); its terms b p_j (log p_j + H)
    and b p_j ((1 - 2 p_j)(log p_j + H) + 1 - p_j) take log p_j = (z_j - sh) - log s, and are 0 where p_j is.
    """
    sh, s, sm1, inv_s, log_s = st
    z = capped(xj, cap)
    dz = sech2(xj / cap) if cap > 0.0 else 1.0
    if is_t:
        lp = row_log_p(z, st)
        pj = math.exp(lp)
        omp = -math.expm1(lp)
        k1 = (1.0 - ls) * cj
        gz = (coef - k1) * pj - e_c * cj - k1 * omp
    else:
        pj, omp = row_p(exp_diff_as(z, sh, 1.0, xj), st)  # e_j as row_exp_sums took it (cross_entropy: like = x_t)
        if soft:
            bj = cj * (qj * (1.0 - ls) + e_c)
        else:
            bj = e_c * cj
        gz = coef * pj - bj
    zg = zl if s != 0.0 else 0.0
    lse = sh + log_s
    if zg != 0.0:
        gz += 2.0 * zg * lse * pj
    lph = 0.0
    if cp != 0.0 and pj != 0.0:
        lph = row_log_p(z, st) + ent  # log p_j + H
        gz += cp * pj * lph
    gx = gz * dz
    hx = 0.0
    if want_h:
        hz = coef * pj * omp
        if zg != 0.0:
            hz += 2.0 * zg * (pj * pj + lse * pj * omp)
        if cp != 0.0 and pj != 0.0:
            hz += cp * pj * ((omp - pj) * lph + omp)
        hx = hz * dz * dz
        if cap > 0.0:
            hx -= gz * (2.0 * (z / cap) * dz / cap)
    return gx, hx


def cross_entropy_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """The row in passes over its logits that each do one thing (max; the exponentials' sums; the soft and
    smoothing sums, only when those options need them; the gradient), so that the plain case's loops hold no
    branch that depends on the class: the sums of ``row_exp_sums`` (which the CPU backend runs through a buffer
    that vectorises) and a gradient loop without the label's branch (the label's element is written after it)."""
    x_t = 0.0
    if not soft:
        x_t = x[base + t]  # before any write (g may be x)
    m = row_max(x, base, C)
    value, st, ent = ce_row_from_max(x, base, C, t, x_t, m, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g,
                                     want_h, False)
    return value


def ce_row_from_max(x, base, C, t, x_t, m, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h, want_e):
    """cross_entropy_row after its first pass (the row max ``m``; ``x_t`` read before any write): (rw * value,
    the row's ``row_state``, and with ``want_e`` the sum_j e_j (sh - z_j) of its entropy)."""
    ls, zl, cap, cp = params  # label_smoothing, z_loss, softcap (0: none), confidence_penalty
    e_c = ls / C
    sh = row_shift(m, cap)
    like = x[base]  # the data's type: the exponentials' precision (exp_diff_as), the same in every pass below
    if cap == 0.0:  # the constant lets the compilers drop softcap's branch from the loop (2x on the CPU)
        s1, k = row_exp_sums(x, base, C, sh, 0.0, 1.0, like)
    else:
        s1, k = row_exp_sums(x, base, C, sh, cap, 1.0, like)
    u = 0.0
    v = 0.0
    if soft or ls != 0.0:  # u and v enter the value and A only then
        for j in range(C):
            cj = cw[j] if has_cw else 1.0
            qj = q[base + j] if soft else 0.0
            du, dv = ce_elem_sums(x[base + j], qj, cj, soft, ls, e_c, cap, sh)
            u += du
            v += dv
    ent = 0.0
    if want_e or cp != 0.0:  # sum_j e_j (sh - z_j), before the gradient may overwrite x
        for j in range(C):
            z = capped(x[base + j], cap)
            e = exp_diff_as(z, sh, 1.0, like)
            if e != 0.0:
                ent += e * (sh - z)
    st = row_state(sh, s1, k)
    if no_softmax(m, st[1]):
        return nan_row(base, C, g, h, want_g, want_h), st, ent
    ct = 1.0
    z_t = 0.0
    if not soft:
        ct = cw[t] if has_cw else 1.0
        z_t = capped(x_t, cap)
    value, coef = ce_row_finish(st, sh, soft, u, v, ct, z_t, ls, e_c, zl)
    H = 0.0
    if cp != 0.0:
        H = ce_entropy(st, ent)
        value -= cp * H
    if want_g or want_h:
        f = rw * gscale
        # The row through views of its own, as the CPU backend's elementwise runs: LLVM's run-time check that
        # the outputs do not overlap the logits is then exact per row. Indexing the whole arrays it took the
        # scalar loop whenever the gradient was allocated right after the logits (1.9x slower at 256 x 32000).
        xr = x[base:base + C]
        gr = g[base:base + C]
        hr = h[base:base + C]
        if soft or has_cw or cap != 0.0 or zl != 0.0 or cp != 0.0:
            for j in range(C):
                cj = cw[j] if has_cw else 1.0
                qj = q[base + j] if soft else 0.0
                gx, hx = ce_elem_grad(xr[j], (not soft) and j == t, qj, cj, soft, ls, e_c, cap, zl, st,
                                      coef, want_h, cp, H)
                if want_h:
                    hr[j] = f * hx
                if want_g:
                    gr[j] = f * gx
        else:  # hard labels, no class weights, softcap, z_loss or penalty: every other class's element by one formula
            if want_h:
                for j in range(C):
                    gx, hx = ce_elem_grad(xr[j], False, 0.0, 1.0, False, ls, e_c, 0.0, 0.0, st, coef,
                                          True, 0.0, 0.0)
                    hr[j] = f * hx
                    if want_g:
                        gr[j] = f * gx
            else:
                for j in range(C):
                    gx, hx = ce_elem_grad(xr[j], False, 0.0, 1.0, False, ls, e_c, 0.0, 0.0, st, coef,
                                          False, 0.0, 0.0)
                    gr[j] = f * gx
            gx, hx = ce_elem_grad(x_t, True, 0.0, 1.0, False, ls, e_c, 0.0, 0.0, st, coef, want_h, 0.0, 0.0)
            if want_h:
                h[base + t] = f * hx
            if want_g:
                g[base + t] = f * gx
    return rw * value, st, ent


def row_max_rank(x, base, C, t, x_t):
    """``row_max`` and the label's rank #{j < t: x_j >= x_t} + #{j > t: x_j > x_t} (= #{j: x_j > x_t} +
    #{j < t: x_j == x_t}: among tied logits the first is the argmax, as NumPy's and PyTorch's), in the same
    loops. C++ twin: rows.hpp row_max_rank."""
    m = -math.inf
    r = 0
    for j in range(t):
        v = float(x[base + j])  # as row_max
        if v > m:
            m = v
        if v >= x_t:
            r += 1
    for j in range(t, C):
        v = float(x[base + j])
        if v > m:
            m = v
        if v > x_t:
            r += 1
    return m, r


def cross_entropy_row_metrics(x, base, C, t, cw, has_cw, params, rw, gscale, g, want_g, want_r, want_e):
    """``cross_entropy_row`` (hard labels, no Hessian: the same value and gradient) and the row's metrics:
    (rw * value, rank, max_j p_j, -log p_t, entropy); rank -1 and nan for a row with nothing to normalise.
    The rank (``want_r``) is counted in the max's pass, the entropy (``want_e``) is log s + (1/s) sum_j e_j
    (sh - z_j). C++ twin: rows.hpp cross_entropy::row_metrics; the specification: _logit_metrics.row_metrics."""
    x_t = x[base + t]  # before any write (g may be x)
    r = 0
    if want_r:
        m, r = row_max_rank(x, base, C, t, x_t)
    else:
        m = row_max(x, base, C)
    value, st, ent = ce_row_from_max(x, base, C, t, x_t, m, x, cw, has_cw, False, params, rw, gscale, g, g, want_g,
                                     False, want_e)
    if no_softmax(m, st[1]):
        return value, -1, math.nan, math.nan, math.nan
    nll = -row_log_p(capped(x_t, params[2]), st)
    return value, r, st[3], nll, ce_entropy(st, ent)


def categorical_focal_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """Row scalars from log p_t = (x_t - sh) - log s and o = 1 - p_t = -expm1(log p_t), as rows.hpp
    categorical_focal. No power of o has a negative exponent: with L = log p_t,
      F = o^gamma - gamma p_t L o^(gamma-1) = o^gamma (1 - gamma p_t L / o)          (L / o -> -1 as o -> 0)
      D = F'(p_t) p_t o^2 = gamma o^gamma ((gamma-1) p_t (p_t L) - o (2 p_t + p_t L))
      h_t = a_t (F p_t o - D),  h_j = a_t (F p_j (1 - p_j) - D (p_j / o)^2)  (j != t; p_j <= o)
    so a confident row (o tiny, o^(gamma-2) beyond the float range) stays finite and exact. p_t L -> 0 at
    p_t = 0 (a masked label)."""
    (gamma,) = params
    x_t = x[base + t]  # before any write (g may be x)
    m, st = softmax_row(x, base, C, 1.0)
    if no_softmax(m, st[1]):
        return nan_row(base, C, g, h, want_g, want_h)
    lp_t = row_log_p(x_t, st)
    p_t = math.exp(lp_t)
    omp = -math.expm1(lp_t)
    a_t = cw[t] if has_cw else 1.0
    if omp > 0:
        pow_g = omp**gamma
    else:  # p_t == 1: the limit
        pow_g = 1.0 if gamma == 0 else 0.0
    if p_t > 0.0:
        plp = p_t * lp_t
        plo = plp / omp if omp > 0 else -1.0  # p_t log(p_t) / (1 - p_t)
    else:
        plp = 0.0
        plo = 0.0
    F = pow_g * (1.0 - gamma * plo)
    D = gamma * pow_g * ((gamma - 1.0) * p_t * plp - omp * (2.0 * p_t + plp))
    if want_g or want_h:
        f = rw * gscale * a_t
        sh, s, sm1, inv_s, log_s = st
        for j in range(C):
            if j == t:
                gj = -F * omp
                hj = F * p_t * omp - D
            else:
                pj, ompj = row_p(math.exp(x[base + j] - sh), st)
                r = pj / omp if omp > 0 else 0.0
                gj = F * pj
                hj = F * pj * ompj - D * r * r
            if want_h:
                h[base + j] = f * hj
            if want_g:
                g[base + j] = f * gj
    return -rw * a_t * pow_g * lp_t


def multi_margin_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    margin, power = params
    x_t = x[base + t]
    w_t = cw[t] if has_cw else 1.0
    k = w_t / C
    f = rw * gscale * k
    value = 0.0
    g_t = 0.0
    h_t = 0.0
    nans = 0  # the rule above, counted on the way (g may be x: nothing to read again afterwards)
    ninfs = 0
    for j in range(C):
        if j == t:
            continue
        xj = x[base + j]
        if xj != xj:
            nans += 1
        elif xj == -math.inf:
            ninfs += 1
        v = margin + (xj - x_t)  # the logit difference first: exact for ties, however large
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
    if x_t != x_t or nans != 0 or (x_t == -math.inf and ninfs == C - 1):
        return nan_row(base, C, g, h, want_g, want_h)
    if want_g:
        g[base + t] = f * g_t
    if want_h:
        h[base + t] = f * h_t
    return rw * k * value


def kl_div_with_logits_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """log p_j = (x_j - max x) / T - log s with log s = log1p(s - 1) (``row_state``), as rows.hpp
    kl_div_with_logits: no lse rounded next to large logits, so each term q_j (log q_j - log p_j) keeps its
    digits. At a maximum (e_j == 1) S p_j - q_j cancels where target and softmax agree on a dominant class:
    there the equal (S - q_j) p_j - q_j (1 - p_j), with 1 - p_j from s - 1 (``row_p``). jensen_shannon_row at
    beta = 0 is this row at T = 1."""
    log_t, temperature = params
    log_target = log_t != 0.0
    inv_t = 1.0 / temperature
    m, st = softmax_row(x, base, C, inv_t)
    if no_softmax(m, st[1]):
        return nan_row(base, C, g, h, want_g, want_h)
    sh = st[0]
    log_s = st[4]
    S = 0.0
    value = 0.0
    for j in range(C):
        tj = q[base + j]
        if log_target:
            qj = math.exp(tj)
            if not qj <= 0.0:  # q = 0 adds 0; a NaN target makes the value NaN (not skipped)
                value += qj * (tj - ((x[base + j] - sh) * inv_t - log_s))
        else:
            qj = tj
            if not qj <= 0.0:
                value += qj * (math.log(qj) - ((x[base + j] - sh) * inv_t - log_s))
        S += qj
    if want_g or want_h:
        f = rw * gscale
        for j in range(C):
            e = math.exp((x[base + j] - sh) * inv_t)
            pj, ompj = row_p(e, st)
            qj = math.exp(q[base + j]) if log_target else q[base + j]
            if want_h:
                h[base + j] = f * S * pj * ompj * inv_t * inv_t
            if want_g:
                gj = (S - qj) * pj - qj * ompj if e == 1.0 else S * pj - qj
                g[base + j] = f * inv_t * gj
    return rw * value


MIX_TINY = 1e-290  # below it m = beta q + (1 - beta) p (or p, q) is no longer a normal number to divide by


def log_over_mix(z, a, m):
    """log(a / m) from z = (a - m) / m = a / m - 1: log1p(z) where |z| <= 1/2 (a small log keeps its digits, as
    beta -> 0 or q -> p), else log(a / m) (|log| > 0.4: the division's rounding is a few ulp of it); a below
    MIX_TINY: log(a) - log(m) (a / m could underflow). C++ twin: rows.hpp jensen_shannon::log_over_mix."""
    if abs(z) <= 0.5:
        return math.log1p(z)
    if a >= MIX_TINY:
        return math.log(a / m)
    if a == 0.0:
        return -math.inf
    return math.log(a) - math.log(m)


def jsd_logs(xj, qj, st, beta, c, lb, lb1, rev):
    """Class j's (e_j, p_j, 1 - p_j, r_j, v_j, log(q_j / m_j)) for jensen_shannon_row: r = log(p / m), v = beta q / m,
    from m = beta q + c p formed in double (one division, a log1p each: p - m = beta (p - q), q - m = c (q - p));
    where m is not a normal number (p and q both tiny or 0) from log(q / p) in log space (``neg_log_mix``). At
    beta = 1 (rev) r = log p - log q and v = 1. log 0 = -inf without a log call."""
    e = math.exp(xj - st[0])
    pj, ompj = row_p(e, st)
    if rev:
        lq = -math.inf
        if not qj == 0.0:
            lq = math.log(qj)
        return e, pj, ompj, row_log_p(xj, st) - lq, 1.0, 0.0
    m = beta * qj + c * pj
    if m >= MIX_TINY:
        d = (pj - qj) / m
        r = log_over_mix(beta * d, pj, m)
        if pj < MIX_TINY and pj != 0.0:
            r = row_log_p(xj, st) - math.log(m)  # p / m could underflow; log p from the logits
        lqm = 0.0
        v = 0.0
        if not qj == 0.0:
            lqm = log_over_mix(-c * d, qj, m)
            v = beta * qj / m
        return e, pj, ompj, r, v, lqm
    lp = row_log_p(xj, st)
    lq = -math.inf
    if not qj == 0.0:
        lq = math.log(qj)
    r = neg_log_mix(lq - lp, beta, lb, lb1)
    lqm = 0.0
    v = 0.0
    if not qj == 0.0:
        lqm = neg_log_mix(lp - lq, c, lb1, lb)
        v = beta * math.exp(lqm)
    return e, pj, ompj, r, v, lqm


def jensen_shannon_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """Liger's generalised JSD, m = beta q + (1 - beta) p, 0 log 0 = 0 (the reference's forms, as rows.hpp
    jensen_shannon): pass 2 sums R = sum p r (r = log(p / m)) and V = sum p v (v = beta q / m) with the row's
    first maximum a (its e_a == 1) kept apart, so that D_a = r_a - R = r_a (1 - p_a) - sum_{k != a} p_k r_k does
    not cancel on a confident row; pass 3 rebuilds class j's terms from x_j (read before g_j is written) and
    writes g_j = c p_j D_j, h_j = c p_j ((1 - 2 p_j) D_j + v_j (1 - p_j)^2 + p_j (V - p_j v_j)), c = 1 - beta.
    beta = 0 is KL(q || p), kl_div_with_logits_row at T = 1; beta = 1 is KL(p || q) (c = 1,
    v = 1), inf where q_j = 0 < p_j, and then D is the limit as those q go to 0 together: +inf on them and -inf
    on the classes with q > 0 where those hold mass (P1 > 0), else log p_j - sum p log p."""
    (beta,) = params
    for j in range(C):  # an infinite target entry: a nan row (not a distribution; as _reference.jensen_shannon)
        if abs(q[base + j]) == math.inf:
            return nan_row(base, C, g, h, want_g, want_h)
    if beta == 0.0:
        return kl_div_with_logits_row(x, base, C, t, q, cw, has_cw, soft, (0.0, 1.0), rw, gscale, g, h, want_g,
                                      want_h)
    m, st = softmax_row(x, base, C, 1.0)
    if no_softmax(m, st[1]):
        return nan_row(base, C, g, h, want_g, want_h)
    f = rw * gscale
    rev = beta == 1.0
    c = 1.0
    lb = 0.0
    lb1 = -math.inf
    if not rev:
        c = 1.0 - beta
        lb = math.log(beta)
        lb1 = math.log1p(-beta)
    value = 0.0
    Re = 0.0
    Ve = 0.0
    pr_a = 0.0
    pv_a = 0.0
    r_a = 0.0
    P1 = 0.0
    Cbar = 0.0
    found = False
    for j in range(C):
        qj = float(q[base + j])
        xj = float(x[base + j])
        e, pj, ompj, r, v, lqm = jsd_logs(xj, qj, st, beta, c, lb, lb1, rev)
        if not rev and not qj == 0.0:
            value += beta * qj * lqm
        pr = 0.0
        if pj != 0.0:
            pr = pj * r
            if qj == 0.0:
                Cbar += pj * row_log_p(xj, st)
            else:
                Cbar += pr
                P1 += pj
        if not found and e == 1.0:
            found = True
            pr_a = pr
            pv_a = pj * v
            r_a = r
        else:
            Re += pr
            Ve += pj * v
        value += c * pr
    R = Re + pr_a
    V = Ve + pv_a
    limit = R == math.inf  # beta = 1 and q_j = 0 < p_j (docstring)
    if want_g or want_h:
        found = False
        for j in range(C):
            qj = float(q[base + j])
            xj = float(x[base + j])
            e, pj, ompj, r, v, lqm = jsd_logs(xj, qj, st, beta, c, lb, lb1, rev)
            if not found and e == 1.0:
                found = True
                D = r_a * ompj - Re
                Vx = Ve
            else:
                D = r - R
                Vx = V - pj * v
            if limit:
                if not qj == 0.0:
                    D = -math.inf
                elif P1 > 0.0:
                    D = math.inf
                else:
                    D = row_log_p(xj, st) - Cbar
            gj = 0.0
            hj = 0.0
            if pj != 0.0:
                gj = c * pj * D
                hj = c * pj * ((ompj - pj) * D + v * ompj * ompj + pj * Vx)
            if want_g:
                g[base + j] = f * gj
            if want_h:
                h[base + j] = f * hj
    return rw * value


def multilabel_soft_margin_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """Per class y softplus(-x) + (1 - y) softplus(x): two terms >= 0, so nothing cancels at any |x|; a zero
    coefficient (y = 0 or 1, cw = 0) adds 0 where its softplus is infinite. The gradient (1 - y) sigmoid(x) -
    y sigmoid(-x) is exact for y in {0, 1}. No softmax: the row rule (and a nan target, which makes the row nan
    as in the softmax losses) is counted on the way (g may be x). As rows.hpp multilabel_soft_margin."""
    f = rw * gscale / C
    value = 0.0
    nans = 0
    ninfs = 0
    for j in range(C):
        xj = x[base + j]
        yj = q[base + j]
        wj = cw[j] if has_cw else 1.0
        if xj != xj or yj != yj:  # a nan target makes the row nan too, as in the softmax losses
            nans += 1
        elif xj == -math.inf:
            ninfs += 1
        a = wj * yj
        b = wj * (1.0 - yj)
        if a != 0.0:
            value += a * log1pexp(-xj)
        if b != 0.0:
            value += b * log1pexp(xj)
        if want_g or want_h:
            sp, sm = sigmoid_pair(xj)
            if want_g:
                g[base + j] = f * (b * sp - a * sm)
            if want_h:
                h[base + j] = f * wj * sp * sm
    if nans != 0 or ninfs == C:
        return nan_row(base, C, g, h, want_g, want_h)
    return rw * (value / C)


def poly1_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """CE + epsilon (1 - P), P = sum q p (optax's poly_loss_cross_entropy), from the softmax state
    (``row_state``) without cancellation, as rows.hpp poly1. A label t: l = -log p_t + epsilon o with
    o = 1 - p_t = -expm1(log p_t), g_j = F (p_j - [j=t]) with F = 1 + epsilon p_t = (1 + epsilon) - epsilon o,
    h_t = p_t o ((1 + epsilon) - 2 epsilon o), h_j = p_j ((1 - p_j) F - epsilon p_t p_j), and the value as
    (expm1(log p_t) - log p_t) + (1 + epsilon) o: no cancellation at epsilon = -1 either (where l ~ o^2 / 2). Soft targets: 1 - P = (1 - S) + sum q (1 - p), and at
    the row's first maximum m (where S p_m - q_m and q_m - P cancel on a confident row) S p_m - q_m =
    (S - q_m) p_m - q_m (1 - p_m), q_m - P = q_m (1 - p_m) - sum_{j != m} q_j p_j."""
    (eps,) = params
    x_t = 0.0
    if not soft:
        x_t = x[base + t]  # before any write (g may be x)
    m, st = softmax_row(x, base, C, 1.0)
    if no_softmax(m, st[1]):
        return nan_row(base, C, g, h, want_g, want_h)
    sh = st[0]
    f = rw * gscale
    if not soft:
        lp_t = row_log_p(x_t, st)
        p_t = math.exp(lp_t)
        o_t = -math.expm1(lp_t)
        if want_g or want_h:
            F1 = (1.0 + eps) - eps * o_t  # 1 + epsilon p_t, exact where epsilon = -1 and p_t -> 1
            F = f * F1
            ept = eps * p_t
            for j in range(C):
                pj, ompj = row_p(math.exp(x[base + j] - sh), st)
                if want_h:
                    h[base + j] = f * (pj * (ompj * F1 - ept * pj))
                if want_g:
                    g[base + j] = F * pj
            if want_h:
                h[base + t] = f * (p_t * o_t * ((1.0 + eps) - 2.0 * eps * o_t))
            if want_g:
                g[base + t] = -F * o_t
        # -log p_t - o_t = expm1(L) - L >= 0, plus (1 + epsilon) o_t: no cancellation for epsilon >= -1
        return rw * (expm1_minus(lp_t) + (1.0 + eps) * o_t)
    im = 0
    for j in range(C):
        if x[base + j] == m:
            im = j
            break
    S = 0.0
    Sx = 0.0  # sum_{j != m} q_j
    Pe = 0.0  # sum_{j != m} q_j p_j
    ce = 0.0  # sum q (sh - x)
    qo = 0.0  # sum q (1 - p)
    for j in range(C):
        qj = q[base + j]
        xj = x[base + j]
        pj, ompj = row_p(math.exp(xj - sh), st)
        S += qj
        if qj != 0.0:  # a class without target mass adds nothing, even at -inf
            ce += qj * (sh - xj)
            qo += qj * ompj
        if j != im:
            Sx += qj
            Pe += qj * pj
    q_m = q[base + im]
    p_m, omp_m = row_p(1.0, st)
    P = Pe + q_m * p_m
    value = S * st[4] + ce + eps * ((1.0 - S) + qo)
    if want_g or want_h:
        D_m = q_m * omp_m - Pe
        for j in range(C):
            qj = q[base + j]
            pj, ompj = row_p(math.exp(x[base + j] - sh), st)
            if j == im:
                D = D_m
                gj = Sx * pj - qj * ompj - eps * pj * D
            else:
                D = qj - P
                gj = S * pj - qj - eps * pj * D
            if want_h:
                h[base + j] = f * (S * pj * ompj - eps * pj * (ompj - pj) * D)
            if want_g:
                g[base + j] = f * gj
    return rw * value


def categorical_hinge_row(x, base, C, t, q, cw, has_cw, soft, params, rw, gscale, g, h, want_g, want_h):
    """Keras's categorical hinge: pos = sum y x, neg = max (1 - y) x over every class (a label t is its one-hot
    row: the true class adds (1 - 1) x_t = 0 to the max), l = max((neg - pos) + 1, 0), the difference first (exact
    for a tied row of huge logits, as multi_margin_row). g_j = (1 - y_j) [j = m] - y_j where l > 0, m the first
    index attaining neg; h = 0. A zero factor times an infinite logit counts 0. No softmax: the row rule is counted
    on the way (g may be x). As rows.hpp categorical_hinge."""
    pos = 0.0
    neg = -math.inf
    im = 0
    nans = 0
    ninfs = 0
    for j in range(C):
        xj = x[base + j]
        if xj != xj:
            nans += 1
        elif xj == -math.inf:
            ninfs += 1
        if soft:
            yj = q[base + j]
        else:
            yj = 1.0 if j == t else 0.0
        if yj != 0.0:
            pos += yj * xj
        b = 0.0
        if yj != 1.0:
            b = (1.0 - yj) * xj
        if b > neg:
            neg = b
            im = j
    v = (neg - pos) + 1.0
    if nans != 0 or ninfs == C or v != v:  # v nan: inf - inf (+inf logits on both sides)
        return nan_row(base, C, g, h, want_g, want_h)
    if want_g or want_h:
        f = rw * gscale
        for j in range(C):
            gj = 0.0
            if v > 0.0:
                if soft:
                    yj = q[base + j]
                else:
                    yj = 1.0 if j == t else 0.0
                gj = -yj
                if j == im:
                    gj += 1.0 - yj
            if want_g:
                g[base + j] = f * gj
            if want_h:
                h[base + j] = f * 0.0  # (nan with a nan or infinite weight, as the reference's w * 0)
    if v > 0.0:
        return rw * v
    return 0.0
