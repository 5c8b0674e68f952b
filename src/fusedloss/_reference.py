"""NumPy reference: the executable specification and the test oracle.

Written for clarity and stability, not speed, and independently of the point functions that the compiled
backends use (so that a mistake in one does not hide in the other). Everything is computed in float64.

``elementwise(name, pred, target, **params)`` returns the per-element ``(value, gradient, hessian)``;
``reduce_elementwise`` applies weights and the reduction exactly as the public API documents.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from ._spec import REGISTRY

LN2 = np.log(2.0)


def _sign(d):
    return np.sign(d)  # sign(0) = 0, sign(nan) = nan


def mse(p, y):
    d = p - y
    return d * d, 2.0 * d, np.full_like(d, 2.0)


def mae(p, y):
    d = p - y
    return np.abs(d), _sign(d), np.zeros_like(d)


def huber(p, y, delta):
    d = p - y
    ad = np.abs(d)
    quad = ad <= delta
    value = np.where(quad, 0.5 * d * d, delta * (ad - 0.5 * delta))
    grad = np.where(quad, d, delta * _sign(d))
    return value, grad, quad.astype(np.float64)


def asymmetric_huber(p, y, delta, alpha_left, alpha_right):
    value, grad, hess = huber(p, y, delta)
    a = np.where(p - y < 0, alpha_left, alpha_right)
    return a * value, a * grad, a * hess


def smooth_l1(p, y, beta):
    d = p - y
    ad = np.abs(d)
    quad = ad < beta
    safe_beta = beta if beta > 0 else 1.0  # beta = 0 never takes the quadratic branch
    value = np.where(quad, 0.5 * d * d / safe_beta, ad - 0.5 * beta)
    grad = np.where(quad, d / safe_beta, _sign(d))
    return value, grad, np.where(quad, 1.0 / safe_beta, 0.0)


def pseudo_huber(p, y, delta):
    r = (p - y) / delta
    s = np.hypot(1.0, r)
    return delta**2 * r * (r / (1.0 + s)), delta * r / s, 1.0 / s**3


def log_cosh(p, y):
    d = p - y
    ad = np.abs(d)
    with np.errstate(over="ignore"):
        em = np.expm1(np.minimum(ad, 1.0))
    small = np.log1p(em * em / (2.0 * (1.0 + em)))
    large = ad + np.log1p(np.exp(-2.0 * ad)) - LN2
    e = np.exp(-2.0 * ad)
    return np.where(ad < 1.0, small, large), np.tanh(d), 4.0 * e / (1.0 + e) ** 2


def fair(p, y, c):
    """u - log1p(u) for u <= 1/2 through v = u / (2 + u): u = 2v / (1-v) and log1p(u) = 2 atanh(v), so
    u - log1p(u) = 2 v^2 / (1 - v) - 2 (atanh(v) - v), and atanh(v) - v = sum_k v^(2k+1) / (2k+1) summed as a
    series (v <= 1/5): no cancellation as u -> 0, where the direct form loses every digit."""
    d = p - y
    u = np.abs(d) / c
    v = u / (2.0 + u)
    w = v * v
    tail = sum(w**k / (2 * k + 1) for k in range(1, 25))  # (atanh(v) - v) / v
    small = 2.0 * w / (1.0 - v) - 2.0 * v * tail
    f = np.where(u <= 0.5, small, u - np.log1p(u))
    s = 1.0 / (1.0 + u)
    return c * c * f, d * s, s * s


def expectile(p, y, expectile):
    d = p - y
    w = np.where(d <= 0, expectile, 1.0 - expectile)
    return w * d * d, 2.0 * w * d, 2.0 * w


def cauchy(p, y, c):
    """In t = 1 / z beyond |z| = 1, where z^2 would overflow: g = c / (z + t), h = t^2 (t^2 - 1) / (1 + t^2)^2,
    and log1p(z^2) = 2 log|z| + log1p(t^2)."""
    d = p - y
    z = d / c
    a = np.abs(z)
    big = a > 1.0
    t = 1.0 / np.where(big, z, 1.0)
    t2 = t * t
    value = np.where(big, 2.0 * np.log(np.where(big, a, 1.0)) + np.log1p(t2), np.log1p(z * z))
    grad = np.where(big, c / (z + t), d / (1.0 + z * z))
    hess = np.where(big, t2 * (t2 - 1.0) / (1.0 + t2) ** 2, (1.0 - a) * (1.0 + a) / (1.0 + z * z) ** 2)
    return 0.5 * c * c * value, grad, hess


def general_robust(p, y, alpha, c):
    """Barron's rho, b/alpha (u^(alpha/2) - 1) with u = 1 + w^2, w = |d| / (c sqrt(b)), b = |alpha - 2|, in the form
    b/alpha expm1(a L) = (b/2) L exprel(a L), L = log u, a = alpha/2, whose limit at alpha = 0 is log1p(z/2); beyond
    w = 1 in t = 1/w (u = w^2 (1 + t^2), never formed), the powers of w as powers (|d| = inf gives the limits).
    alpha = 2 and +-inf: the paper's (and Barron's code's) limits."""
    r = (p - y) / c
    if alpha == 2.0:
        return 0.5 * r * r, r / c, np.full_like(r, 1.0 / c**2)
    if np.isinf(alpha):
        s = 1.0 if alpha > 0 else -1.0
        z = r * r
        e = np.exp(s * 0.5 * z)
        value = np.expm1(0.5 * z) if s > 0 else -np.expm1(-0.5 * z)
        out = e == 0  # z beyond exp's range (alpha = -inf): the limits 0, not 0 * inf at |d| = inf
        return value, np.where(out, 0.0, r * e) / c, np.where(out, 0.0, e * (1.0 + s * z)) / c**2
    b = abs(alpha - 2.0)
    a = 0.5 * alpha
    w = np.abs(r) / np.sqrt(b)
    big = w > 1.0
    wb = np.where(big, w, 2.0)
    t2 = 1.0 / (wb * wb)
    v = np.where(big, 0.0, w * w)
    z = np.where(big, 0.0, r * r)
    # (b/2) L; where w <= 1 as (z/2) log1p(v)/v, which keeps its digits where v = z/b underflows (huge |alpha|)
    ratio = np.where(v == 0, 1.0, np.log1p(v) / np.where(v == 0, 1.0, v))
    hl = np.where(big, 0.5 * b * (2.0 * np.log(wb) + np.log1p(t2)), 0.5 * z * ratio)
    aL = (alpha / b) * hl if alpha != 0 else np.zeros_like(hl)  # alpha = 0: not 0 * inf at |d| = inf
    exprel = np.where(aL == 0, 1.0, np.expm1(aL) / np.where(aL == 0, 1.0, aL))
    over = (b / alpha if alpha != 0 else 0.0) * np.where(big & (aL > 1.0), wb**alpha * (1.0 + t2) ** a - 1.0,
                                                         np.expm1(aL))
    value = np.where(np.abs(aL) <= 1.0, hl * exprel, over)
    e = np.exp(np.where(big, 0.0, np.sign(alpha - 2.0) * hl))  # u^(a - 1) = exp((alpha - 2)/2 L) where w <= 1
    f = (1.0 + t2) ** (a - 1.0)  # where w > 1: u^(a - 1) = w^(alpha - 2) f
    grad = np.where(big, np.sign(r) * np.sqrt(b) * wb ** (alpha - 1.0) * f, r * e) / c
    hess = np.where(big, wb ** (alpha - 2.0) * f * (t2 + (alpha - 1.0)) / (t2 + 1.0),
                    e * (1.0 + ((alpha - 1.0) / b) * z) / (1.0 + v)) / c**2
    return value, grad, hess


def quantile(p, y, quantile):
    q = quantile
    r = y - p
    value = np.where(r >= 0, q * r, (q - 1.0) * r)
    grad = np.where(r > 0, -q, np.where(r < 0, 1.0 - q, 0.0 * r))
    return value, grad, np.zeros_like(r)


def poisson_nll(p, y, log_input, eps):
    if log_input:
        e = np.exp(p)
        return e - y * p, e - y, e
    q = p + eps  # q = 0: IEEE's values (y > 0: inf, -inf, inf; y = 0: nan), as the point functions
    return p - y * np.log(q), 1.0 - y / q, (y / q) / q  # not y / q**2: q**2 underflows for q < 1e-154


def tweedie(p, y, power):
    """scikit-learn's HalfTweedieLoss, whose value at rho = 0, 1 and 2 takes forms of its own (the general one
    divides by 0 at 1 and 2). With t2 = exp((2-rho) p) and t1 = y exp((1-rho) p): at rho = 2 and 1 those are 1
    and y exactly (not exp(0 * inf) at an infinite p); y exp(z) is the exact product where exp(z) alone
    overflows (``_y_exp``); and for rho < 1 or > 2, whose two exponents have one sign, where both terms
    overflow (inf - inf) the results are t2 times their forms in r = t1 / t2 = y exp(-p)."""
    rho = power
    c2, c1 = 2.0 - rho, 1.0 - rho
    with np.errstate(over="ignore", invalid="ignore"):
        e2 = np.ones_like(p) if rho == 2.0 else np.exp(c2 * p)
        if rho == 1.0:
            ye1 = y * 1.0
        elif 1.0 < rho < 2.0:
            ye1 = np.where(y == 0, 0.0, y * np.exp(c1 * p))  # y = 0: no y-terms (not 0 * inf for p << 0)
        else:
            ye1 = np.sign(y) * _y_exp(np.abs(y), c1 * p)
        if rho == 0.0:
            value = 0.5 * (np.exp(p) - y) ** 2
        elif rho == 1.0:
            value = e2 - y * p
        elif rho == 2.0:
            value = p + ye1
        else:
            value = e2 / c2 - ye1 / c1
        grad, hess = e2 - ye1, c2 * e2 - c1 * ye1
        if rho < 1.0 or rho > 2.0:
            both = np.isinf(e2) & np.isinf(ye1)
            if both.any():
                r = np.sign(y) * _y_exp(np.abs(y), -p)
                if rho != 0.0:
                    value = np.where(both, e2 * (1.0 / c2 - r / c1), value)
                grad = np.where(both, e2 * (1.0 - r), grad)
                hess = np.where(both, e2 * (c2 - c1 * r), hess)
    return value, grad, hess


def _y_exp(y, z):
    """y exp(z) for y >= 0 as the exact product: 0 for y = 0 at any z (not 0 * inf), and exp(log y + z) where
    exp(z) alone leaves the float range but the product does not (tiny y, very negative p)."""
    direct = y * np.exp(z)
    return np.where(y == 0, 0.0, np.where(np.abs(z) <= 700.0, direct, np.exp(np.log(y) + z)))


def gamma(p, y):
    ye = _y_exp(y, -p)
    return p + ye, 1.0 - ye, ye


def tweedie_identity(p, y, power):
    """scikit-learn's HalfTweedieLossIdentity (its forms of their own at rho = 0, 1 and 2).

    k = 2 - rho. For y > 0 the value is p^k S(u), u = log q, q = y/p (log1p((y - p)/p) for q in [1/2, 2]: exact
    next to p = y, where the value is ~ p^k u^2/2 and scikit-learn's three terms cancel; log y - log p where q
    leaves the range). S = sum_{n>=2} s_n u^n/n!, s_2 = 1, s_{n+1} = k s_n + 1, where |u| max(1, |k|) <= 1
    (twenty terms: the n-th is at most (n - 1) u^2/n!); elsewhere in closed form, (E(k)/k - E(1))/(1 - rho), or,
    for |1 - rho| < 1/2 (that form divides a difference by 1 - rho), (q E(1 - rho)/(1 - rho) - E(1))/k, with
    E(z) = expm1(z u) = q^z - 1 where |z u| >= 1 (pow of q rounded once: exp(z u) would cost |z u| ulp) and
    E(z)/z = u at z = 0. For y <= 0: p^k/k - y p^(k-1)/(k-1), two terms >= 0 (p at rho = 1).

    Every power of p is built from a = p^(-rho/2), whose exponent is exact (a rounded 2 - rho or rho + 1 would
    cost |log p| ulp at p = 1e30): p^k = (p a)^2, g = a (p - y) a, h = a ((1 - rho) + rho y/p) a; a product in
    halves does not overflow where the result does not (pow(p, k/2) where a alone leaves the range)."""
    rho = float(power)
    k, j = 2.0 - rho, 1.0 - rho
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    with np.errstate(all="ignore"):
        if rho == 0.0:
            d = p - y
            return 0.5 * d * d, d, np.where(np.isnan(d), np.nan, 1.0)
        a = np.power(p, -0.5 * rho)
        grad = (a * (p - y)) * a
        hess = (a * ((j * p + rho * y) / p)) * a
        c = np.where((a > 0) & (a < np.inf), p * a, np.power(p, 0.5 * k))  # p^(k/2)
        ypos = y > 0
        q = y / p
        qok = (q >= 2.2250738585072014e-308) & (q < np.inf)
        u = np.where((q >= 0.5) & (q <= 2.0), np.log1p((y - p) / p), np.where(qok, np.log(q), np.log(y) - np.log(p)))
        near = np.abs(u) * max(1.0, abs(k)) <= 1.0
        # the series, on every element (u clipped into its range where not used)
        v = np.where(near, u, 0.0)
        t = 0.5 * v * v
        s = 1.0
        series = t.copy()
        for n in range(3, 22):
            t = t * v * (1.0 / n)
            s = k * s + 1.0
            series = series + s * t

        def E(z):  # expm1(z u)
            zu = z * u
            return np.where(np.abs(zu) < 1.0, np.expm1(zu), np.where(qok, np.power(q, z), np.exp(zu)) - 1.0)

        if abs(j) >= 0.5:
            closed = ((u if k == 0.0 else E(k) / k) - E(1.0)) / j
        else:
            closed = (np.where(qok, q, np.exp(u)) * (u if j == 0.0 else E(j) / j) - E(1.0)) / k
        S = np.where(near, series, closed)
        positive = np.where(u == 0, 0.0, (c * S) * c)
        if rho == 1.0:  # y <= 0 is y = 0 here
            nonpos = p
        else:
            nonpos = (c * c) / k - np.where(y == 0, 0.0, y * ((c / p) * c) / j)
        value = np.where(ypos, positive, nonpos)
        value = np.where(np.isnan(p) | np.isnan(y), np.nan, value)
    return value, grad, hess


def hinge_embedding(x, y, margin):
    """torch.nn.functional.hinge_embedding_loss's masks: x where y != -1, max(0, margin - x) where y != 1 (both
    for any other y, whose sum x + max(0, margin - x) is max(x, margin), taken as that: exact where torch's sum
    rounds, margin at x = -inf where torch's is nan); the gradient of the margin term is -1 where margin - x >= 0
    (torch's clamp_min passes it at the kink); nan x or y gives nan value, gradient and Hessian (torch reads a nan
    target as "neither 1 nor -1")."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = margin - x
    own = y != -1.0
    mar = y != 1.0
    with np.errstate(invalid="ignore"):
        # both terms (y neither 1 nor -1): x + max(0, m) = max(x, margin), taken as that (no rounding in the sum)
        value = np.where(own & mar, np.where(m < 0, x, margin),
                         np.where(own, x, 0.0) + np.where(mar, np.where(m < 0, 0.0, m), 0.0))
        grad = np.where(own, 1.0, 0.0) - np.where(mar & (m >= 0), 1.0, 0.0)
    nan = np.isnan(x) | np.isnan(y)
    return np.where(nan, np.nan, value), np.where(nan, np.nan, grad), np.where(nan, np.nan, 0.0)


def squared_log(p, y):
    """r = log((1 + p) / (1 + y)) in a form without cancellation: log1p((p - y) / (1 + y)) where the ratio is
    within [1/2, 2], log of the ratio elsewhere (|r| >= log 2), and the difference of the logs where the ratio
    leaves the float range (|r| > 700)."""
    a, b = 1.0 + p, 1.0 + y
    q = a / b
    near = (q >= 0.5) & (q <= 2.0)
    r = np.where(near, np.log1p((p - y) / b), np.log(q))
    r = np.where(np.isfinite(q) & (q > 1e-300), r, np.log1p(p) - np.log1p(y))
    return 0.5 * r * r, r / a, (1.0 - r) / a / a


def msle(p, y):
    """Twice squared_log (the same r without cancellation)."""
    value, grad, hess = squared_log(p, y)
    return 2.0 * value, 2.0 * grad, 2.0 * hess


def mape(p, y, epsilon):
    d = p - y
    m = np.maximum(np.abs(y), epsilon)
    return np.abs(d) / m, _sign(d) / m, np.zeros_like(d)


def _log1pexp(x):
    """softplus log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exp of a non-positive number only."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logcosh(x):
    """log(cosh(x)) for any finite x (the same two forms as log_cosh below)."""
    ad = np.abs(x)
    with np.errstate(over="ignore"):
        em = np.expm1(np.minimum(ad, 1.0))
    return np.where(ad < 1.0, np.log1p(em * em / (2.0 * (1.0 + em))), ad + np.log1p(np.exp(-2.0 * ad)) - LN2)


def _sech2(x):
    """1 / cosh(x)^2 as 4 e / (1 + e)^2, e = exp(-2|x|): no cancellation, no overflow."""
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / (1.0 + e) ** 2


def _bce_logits(x, y, pw):
    """(1 - y) x + lw softplus(-x), written as lw softplus(x) - pw y x for x < 0 (no cancellation)."""
    lw = 1.0 + (pw - 1.0) * y
    sp = np.log1p(np.exp(-np.abs(x)))  # each side's softplus, where np.where keeps it (its max(., 0) part is 0)
    return np.where(x >= 0, (1.0 - y) * x + lw * sp, lw * sp - pw * y * x)


# PyTorch's clamp of the denominator in the BCE gradient: ATen's EPSILON, 1e-12 as a float32
BCE_EPS = 9.999999960041972e-13


def binary_cross_entropy(p, y, pos_weight):
    pw = 1.0 if pos_weight is None else pos_weight
    log_p = np.maximum(np.log(p), -100.0)
    log_1mp = np.maximum(np.log1p(-p), -100.0)
    value = -(pw * y * log_p + (1.0 - y) * log_1mp)
    grad = ((1.0 - y) * p - pw * y * (1.0 - p)) / np.maximum(p * (1.0 - p), BCE_EPS)
    hess = pw * y / np.maximum(p * p, BCE_EPS) + (1.0 - y) / np.maximum((1.0 - p) ** 2, BCE_EPS)
    return value, grad, hess


def binary_cross_entropy_with_logits(x, y, pos_weight, label_smoothing):
    pw = 1.0 if pos_weight is None else pos_weight
    y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    lw = 1.0 + (pw - 1.0) * y
    value = _bce_logits(x, y, pw)
    s, sm = _sigmoid(x), _sigmoid(-x)
    # (1 - y) - lw sigmoid(-x) written as (1 - y) sigmoid(x) - pw y sigmoid(-x): no cancellation for y = 0, x << 0
    return value, (1.0 - y) * s - pw * y * sm, lw * s * sm


def binary_focal(x, y, alpha, gamma):
    s, sm = _sigmoid(x), _sigmoid(-x)
    ce = _bce_logits(x, y, 1.0)
    q = s * (1.0 - y) + sm * y  # 1 - p_t, without cancellation
    a_t = np.ones_like(x) if alpha < 0 else alpha * y + (1.0 - alpha) * (1.0 - y)
    u = s * sm  # sigmoid'
    f = q**gamma
    pos = q > 0
    qs = np.where(pos, q, 1.0)
    # f' = gamma q^(gamma-1) dq = gamma f r and f'' = f' ((gamma-1) r + (1-2s)), r = dq / q = (1-2y) s (1-s) / q:
    # |r| <= 1, where q^(gamma-1), q^(gamma-2) overflow for tiny q (the same form as the point functions)
    r = (1.0 - 2.0 * y) * (u / qs)
    df = np.where(pos, gamma * f * r, 0.0)
    d2f = np.where(pos, gamma * f * r * ((gamma - 1.0) * r + (1.0 - 2.0 * s)), 0.0)
    smy = s * (1.0 - y) - sm * y  # s - y without its cancellation at y = 1, x >> 0
    value = a_t * ce * f
    grad = a_t * (smy * f + ce * df)
    hess = a_t * (u * f + 2.0 * smy * df + ce * d2f)
    return value, grad, hess


def _sign_target(y):
    return np.where(y > 0, 1.0, -1.0)


def exponential(x, y):
    em, ep = _y_exp(y, -x), _y_exp(1.0 - y, x)
    return em + ep, ep - em, em + ep


def hinge(x, y):
    t = _sign_target(y)
    m = 1.0 - t * x
    nan = np.isnan(m)
    return np.maximum(m, 0.0), np.where(m > 0, -t, np.where(nan, np.nan, 0.0)), np.where(nan, np.nan, 0.0)


def squared_hinge(x, y):
    t = _sign_target(y)
    m = np.maximum(1.0 - t * x, 0.0)
    return m * m, -2.0 * t * m, np.where(m > 0, 2.0, np.where(np.isnan(m), np.nan, 0.0))


def zero_one(x, y, threshold):
    wrong = (x > threshold) != (y > 0)
    value = np.where(np.isnan(x), np.nan, wrong.astype(np.float64))
    return value, np.zeros_like(value), np.zeros_like(value)


def _by_kind(kind: str) -> dict:
    """Every registry loss of ``kind`` that has a function of its own name in this module (the twin of the
    point and row functions of the same name; ``tests/test_spec_table.py`` fails for a loss without one)."""
    here = globals()
    return {name: here[name] for name, spec in REGISTRY.items() if spec.kind == kind and name in here}


ELEMENTWISE = _by_kind("elementwise")


def elementwise(name, pred, target, **params):
    """Per-element (value, gradient, hessian) in float64 for the loss ``name``."""
    p = np.asarray(pred, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    with np.errstate(all="ignore"):
        return ELEMENTWISE[name](p, y, **params)


def reduce_elementwise(name, pred, target, *, reduction="mean", sample_weight=None, **params):
    """(value, grad, hess) of the reduced loss in float64, following the public API's rules.

    value is a float for "mean"/"sum" and an array for "none"; grad and hess are the derivatives of the
    returned value with respect to pred (for "none": of each element's weighted loss).
    """
    value, grad, hess = elementwise(name, pred, target, **params)
    p = np.asarray(pred, dtype=np.float64)
    if sample_weight is None:
        w = np.ones_like(p)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        w = w.reshape(w.shape + (1,) * (p.ndim - w.ndim))
        w = np.broadcast_to(w, p.shape)
    with np.errstate(all="ignore"):
        if reduction == "none":
            return w * value, w * grad, w * hess
        total = float(np.sum(w * value))
        if reduction == "sum":
            return total, w * grad, w * hess
        denom = float(np.sum(w))
        return total / denom if denom != 0 else float("nan"), w * grad / denom, w * hess / denom


# --- multiclass (class axis last); rows are the flattened leading axes --------------------------------


def _softmax_rows(z, inv_t=1.0):
    """The rows' softmax without cancellation: ``(sh, e, s, sm1, log_s, p, omp)``, each per row or (R, C).

    sh = the row max (nan skipped; 0 for a row of -inf), e = exp((z - sh) inv_t), s = sum e and s - 1 =
    sm1 = (sum of the e != 1) + (number of e == 1) - 1, log s = log1p(sm1); p = e / s and 1 - p = (s - e) / s,
    with s - 1 for the maxima. Neither lse - z_t = (sh - z_t) + log s nor 1 - p nor exp(z - lse) then loses
    digits on a confident row (s = 1 + tiny) or a tied row of huge logits (sh + log s rounds to sh from
    |z| ~ 1e17). A row of -inf has s = 0: p = 0 there, log s = -inf. (C++: rows.hpp RowSum; the row
    functions: _pointwise.row_state.)
    """
    m = np.max(np.where(np.isnan(z), -np.inf, z), axis=1)
    sh = np.where(m == -np.inf, 0.0, m)
    e = np.exp((z - sh[:, None]) * inv_t)
    one = e == 1.0
    k = np.sum(one, axis=1)
    s1 = np.sum(np.where(one, 0.0, e), axis=1)
    s = s1 + k
    sm1 = s1 + (k - 1.0)
    empty = s == 0.0
    log_s = np.where(empty, -np.inf, np.log1p(np.where(empty, 0.0, sm1)))
    inv_s = np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, s))
    p = e * inv_s[:, None]
    omp = np.where(one, sm1[:, None], s[:, None] - e) * inv_s[:, None]
    return sh, e, s, sm1, log_s, p, omp


def _xmul(a, b):
    """a * b with 0 * (+-inf) taken as 0: a class with weight 0 contributes nothing, even at -inf."""
    return np.where(a == 0, 0.0, a * b)


def cross_entropy(x, target, soft, cw, ignore_index, label_smoothing, z_loss, softcap, confidence_penalty=0.0):
    """The confidence penalty -beta H(p) (beta = ``confidence_penalty``) is taken in forms that stay exact on a
    confident row: H = log s + (1/s) sum_j e_j (sh - z_j), a sum of non-negative terms (0 where e_j underflows:
    the limit of p log p), and log p_j = (z_j - sh) - log s, never the log of a rounded p_j."""
    R, C = x.shape
    if softcap:  # None or 0 switch it off
        tau = np.tanh(x / softcap)
        dz = _sech2(x / softcap)  # 1 - tau^2 without cancellation
        z, d2z = softcap * tau, -2.0 * tau * dz / softcap
    else:
        z, dz, d2z = x, np.ones_like(x), np.zeros_like(x)
    cw = np.ones(C) if cw is None else cw
    e = label_smoothing
    sh, ex, s, _, log_s, p, omp = _softmax_rows(z)
    lse = sh + log_s
    rel = sh[:, None] - z  # lse - z = rel + log s, both terms >= 0
    beta = np.where(s == 0.0, 0.0, confidence_penalty)  # a row of -inf has no entropy: no penalty at all
    ent = np.where(s == 0.0, 0.0, log_s + np.sum(_xmul(ex, rel), axis=1) / np.where(s == 0.0, 1.0, s))  # H >= 0
    lp = np.where(ex == 0.0, 0.0, -rel - log_s[:, None])  # log p_j (0 where p_j = 0: the terms have p_j as factor)
    rows = np.arange(R)
    if soft:
        keep = np.ones(R, dtype=bool)
        qs = target * (1.0 - e) + e / C
        b = cw * qs
        coef = np.sum(b, axis=1)
        value = coef * log_s + np.sum(_xmul(b, rel), axis=1)
    else:
        keep = target != ignore_index
        t = np.where(keep, target, 0)
        onehot = np.zeros((R, C))
        onehot[rows, t] = 1.0
        cw_t = cw[t]
        W = np.sum(cw)
        coef = (1.0 - e) * cw_t + (e / C) * W
        b = (1.0 - e) * cw_t[:, None] * onehot + (e / C) * cw
        lp_t = np.where(s == 0.0, -np.inf, (z[rows, t] - sh) - log_s)
        value = (1.0 - e) * cw_t * -lp_t
        if e:  # without smoothing this term is absent (0 * inf would be nan on a row with masked classes)
            value = value + (e / C) * (W * log_s + np.sum(_xmul(cw, rel), axis=1))
    zg = np.where(s == 0.0, 0.0, z_loss)  # a row of -inf has lse = -inf: no z_loss in its derivatives
    lse_z = np.where(zg == 0.0, 0.0, lse)
    value = value + z_loss * lse * lse - beta * ent
    gz = coef[:, None] * p - b + 2.0 * (zg * lse_z)[:, None] * p
    hz = coef[:, None] * p * omp + 2.0 * zg[:, None] * (p * p + lse_z[:, None] * p * omp)
    # -beta H: d/dz_j = beta p_j (log p_j + H), d2/dz_j^2 = beta p_j ((1 - 2 p_j)(log p_j + H) + 1 - p_j)
    lph = lp + ent[:, None]
    gz = gz + beta[:, None] * p * lph
    hz = hz + beta[:, None] * p * ((omp - p) * lph + omp)
    if not soft:  # the label's element from log p_t: A p_t - b_t with p_t - 1 = expm1(log p_t)
        p_t, omp_t = np.exp(lp_t), -np.expm1(lp_t)
        k1 = (1.0 - e) * cw_t
        lph_t = np.where(p_t == 0.0, 0.0, lp_t) + ent
        gz[rows, t] = ((coef - k1) * p_t - (e / C) * cw_t - k1 * omp_t + 2.0 * zg * lse_z * p_t
                       + beta * p_t * lph_t)
        hz[rows, t] = (coef * p_t * omp_t + 2.0 * zg * (p_t * p_t + lse_z * p_t * omp_t)
                       + beta * p_t * ((omp_t - p_t) * lph_t + omp_t))
    grad = gz * dz
    hess = hz * dz * dz + gz * d2z
    return value, grad, hess, keep


def categorical_focal(x, target, soft, cw, ignore_index, gamma, rw, gscale, value_only=False):
    """With L = log p_t and o = 1 - p_t = -expm1(L), every power of o has an exponent >= 0:
    F = o^gamma (1 - gamma p_t L / o), D = F'(p_t) p_t o^2 = gamma o^gamma ((gamma-1) p_t (p_t L) - o (2 p_t + p_t L)),
    h_t = a_t (F p_t o - D), h_j = a_t (F p_j (1 - p_j) - D (p_j / o)^2) for j != t (p_j <= o), so confident rows
    (o^(gamma-2) beyond the float range) stay finite (the same forms as _pointwise.categorical_focal_row).
    Weighted here (``multiclass``): the row weight meets a_t first, rw a_t, as rows.hpp's value_factor, so an
    alpha of 1e308 whose row value overflows alone stays finite under a mean whose weights are 2^-k."""
    R, C = x.shape
    rows = np.arange(R)
    keep = target != ignore_index
    t = np.where(keep, target, 0)
    sh, _, s, _, log_s, p, omp_all = _softmax_rows(x)
    lp_t = np.where(s == 0.0, -np.inf, (x[rows, t] - sh) - log_s)
    p_t = np.exp(lp_t)
    o = -np.expm1(lp_t)  # 1 - p_t without cancellation
    a_t = np.ones(R) if cw is None else cw[t]
    pos = o > 0
    os_ = np.where(pos, o, 1.0)
    pow_g = np.where(pos, os_**gamma, 1.0 if gamma == 0 else 0.0)
    value = -(rw * a_t) * pow_g * lp_t
    if value_only:
        return value, None, None, keep
    plp = np.where(p_t > 0, p_t * lp_t, 0.0)  # p_t log p_t -> 0 at p_t = 0
    plo = np.where(p_t > 0, np.where(pos, plp / os_, -1.0), 0.0)  # p_t log(p_t) / (1 - p_t) -> -1 at p_t = 1
    F = pow_g * (1.0 - gamma * plo)
    D = gamma * pow_g * ((gamma - 1.0) * p_t * plp - o * (2.0 * p_t + plp))
    r = np.where(pos[:, None], p / os_[:, None], 0.0)
    fa = rw * gscale * a_t
    grad = (fa * F)[:, None] * p
    hess = fa[:, None] * (F[:, None] * p * omp_all - D[:, None] * r * r)
    grad[rows, t] = -fa * F * o
    hess[rows, t] = fa * (F * p_t * o - D)
    return value, grad, hess, keep


def multi_margin(x, target, soft, cw, ignore_index, margin, p, rw, gscale, value_only=False):
    """Weighted here (``multiclass``): the value is a factor times a sum, rw cw_t / C sum_j v_j^p, and the row
    weight meets the factor cw_t / C before the sum (the derivatives: rw gscale cw_t / C), so that nothing
    overflows on the way to a finite result (class weights 1e308 whose rows overflow alone, under a mean whose
    weights are 2^-k). A weight of inf times a 0 gives nan, as the generic w d (rows.hpp, _pointwise)."""
    R, C = x.shape
    rows = np.arange(R)
    w_t = np.ones(R) if cw is None else cw[target]
    k = w_t / C
    f = (rw * gscale * k)[:, None]
    v = margin + (x - x[rows, target][:, None])  # the logit difference first: exact for ties (1e30 - 1e30 + 1)
    active = v > 0
    active[rows, target] = False
    vp = np.where(active, v, 0.0)
    value = rw * k * np.sum(vp**p, axis=1)
    if value_only:
        return value, None, None, np.ones(R, dtype=bool)
    gj = p * vp ** (p - 1) if p == 2 else active.astype(np.float64)
    grad = f * gj
    grad[rows, target] = f[:, 0] * -np.sum(gj, axis=1)
    hj = 2.0 * active if p == 2 else np.zeros((R, C))
    hess = f * hj
    hess[rows, target] = f[:, 0] * np.sum(hj, axis=1)
    return value, grad, hess, np.ones(R, dtype=bool)


def kl_div_with_logits(x, target, soft, cw, ignore_index, log_target, temperature):
    """log p = (x - max x) / T - log s (``_softmax_rows``): no lse rounded next to large logits."""
    T = temperature
    sh, e, _, _, log_s, p, omp = _softmax_rows(x, 1.0 / T)
    lp = (x - sh[:, None]) / T - log_s[:, None]
    if log_target:
        q = np.exp(target)
        qlogq = q * target
    else:
        q = target
        qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    S = np.sum(q, axis=1)[:, None]
    value = np.sum(np.where(q > 0, qlogq - q * lp, q * 0.0), axis=1)  # q = 0 adds 0, nan stays nan
    # S p - q cancels at a maximum (e == 1) where target and softmax agree on a dominant class: there the
    # equal (S - q) p - q (1 - p), with 1 - p from s - 1
    grad = np.where(e == 1.0, (S - q) * p - q * omp, S * p - q) / T
    hess = S * p * omp / T**2
    return value, grad, hess, np.ones(x.shape[0], dtype=bool)


def _neg_log_mix(d, w):
    """-log((1 - w) + w e^d), 0 < w < 1: log(p / m) with d = log(q / p), w = beta (and log(q / m) with the roles
    swapped). Taken as the difference log p - log m it would lose its digits where it is small (beta -> 0, or
    q -> p): so -log1p(w expm1(d)) where w e^d <= 1 and d < 1, -log1p(w e^d - w) where w e^d <= 1 and d >= 1
    (nothing cancels: w e^d >= e w), and -logaddexp(log(1 - w), log w + d) where w e^d > 1 (no overflow)."""
    lw, lw1 = np.log(w), np.log1p(-w)
    u = lw + d
    dm = np.where(d < 1.0, d, 0.0)
    small = -np.log1p(w * np.expm1(dm))
    mid = -np.log1p(np.exp(np.minimum(u, 0.0)) - w)
    big = -np.logaddexp(lw1, u)
    return np.where(u > 0, big, np.where(d < 1.0, small, mid))


def jensen_shannon(x, target, soft, cw, ignore_index, beta):
    """``_jensen_shannon_rows``, and NaN in the value, gradient and Hessian of a row whose target holds an infinite
    entry (not a distribution: no limit of the formulas is meaningful there, and the backends' passes agree on
    NaN, as for a NaN target)."""
    value, grad, hess, kept = _jensen_shannon_rows(x, target, beta)
    bad = np.isinf(target).any(axis=1)
    if bad.any():
        value = np.where(bad, np.nan, value)
        grad = np.where(bad[:, None], np.nan, grad)
        hess = np.where(bad[:, None], np.nan, hess)
    return value, grad, hess, kept


def _jensen_shannon_rows(x, target, beta):
    """Liger's generalised JSD, m = beta q + (1 - beta) p, 0 log 0 = 0. r = log(p / m) and log(q / m) come from
    ``_neg_log_mix`` of log(q / p) (no m is formed, so nothing underflows, and a small r keeps its digits). At the
    row's first maximum a, where D_a = r_a - R cancels on a confident row (R -> r_a), D_a = r_a (1 - p_a) -
    sum_{k != a} p_k r_k; the Hessian's v_j (1 - 2 p_j) + p_j sum_k p_k v_k is v_j (1 - p_j)^2 + p_j sum_{k != j}
    p_k v_k, whose terms are all >= 0. The ends are the two KLs (Liger's beta = 0 and 1). At beta = 1 a class
    with q = 0 < p makes KL(p || q) inf; its gradient is the limit as those q go to 0 together: D_j = +inf on
    them and -inf on the classes with q > 0 (where the latter hold mass), else log p_j - sum p log p."""
    if beta == 0.0:  # KL(q || p)
        return kl_div_with_logits(x, target, True, None, -100, 0.0, 1.0)
    R, C = x.shape
    rows = np.arange(R)
    sh, e, s, _, log_s, p, omp = _softmax_rows(x)
    lp = np.where((s == 0.0)[:, None], -np.inf, (x - sh[:, None]) - log_s[:, None])
    q = target
    lq = np.log(q)
    a = np.argmax(e == 1.0, axis=1)  # the first maximum
    first = np.zeros((R, C), dtype=bool)
    first[rows, a] = True
    zero = q == 0
    if beta == 1.0:  # KL(p || q)
        c = 1.0
        r = lp - lq
        v = np.ones((R, C))
        value = np.sum(_xmul(p, r), axis=1)
    else:
        c = 1.0 - beta
        r = _neg_log_mix(lq - lp, beta)  # log(p / m)
        lqm = _neg_log_mix(lp - lq, 1.0 - beta)  # log(q / m)
        v = np.where(zero, 0.0, beta * np.exp(lqm))  # beta q / m, in [0, 1]
        value = np.sum(_xmul(beta * q, lqm) + _xmul(c * p, r), axis=1)
    pr = _xmul(p, r)
    Re = np.sum(np.where(first, 0.0, pr), axis=1)
    Rs = Re + pr[rows, a]
    D = r - Rs[:, None]
    D[rows, a] = r[rows, a] * omp[rows, a] - Re
    inf_rows = np.isinf(Rs)  # beta = 1, q_j = 0 < p_j: the limit (docstring)
    if inf_rows.any():
        P1 = np.sum(np.where(zero, 0.0, p), axis=1)
        Cbar = np.sum(_xmul(p, np.where(zero, lp, r)), axis=1)
        Dlim = np.where(zero, np.where((P1 > 0)[:, None], np.inf, lp - Cbar[:, None]), -np.inf)
        D = np.where(inf_rows[:, None], Dlim, D)
    pv = _xmul(p, v)
    Ve = np.sum(np.where(first, 0.0, pv), axis=1)
    Vx = (Ve + pv[rows, a])[:, None] - pv
    Vx[rows, a] = Ve
    grad = _xmul(c * p, D)
    hess = _xmul(c * p, (omp - p) * D + v * omp * omp + p * Vx)
    return value, grad, hess, np.ones(R, dtype=bool)


def multilabel_soft_margin(x, target, soft, cw, ignore_index):
    """Per class y softplus(-x) + (1 - y) softplus(x): two terms >= 0, nothing cancels at any |x|, and a zero
    coefficient (y = 0 or 1, cw = 0) adds 0 where its softplus is infinite."""
    C = x.shape[1]
    w = np.ones(C) if cw is None else cw
    a, b = w * target, w * (1.0 - target)
    value = np.sum(_xmul(a, _log1pexp(-x)) + _xmul(b, _log1pexp(x)), axis=1) / C
    grad = (b * _sigmoid(x) - a * _sigmoid(-x)) / C
    hess = w * _sigmoid(x) * _sigmoid(-x) / C
    nan = np.isnan(target).any(axis=1)  # a nan target makes its whole row nan, as in the softmax losses
    value = np.where(nan, np.nan, value)
    grad = np.where(nan[:, None], np.nan, grad)
    hess = np.where(nan[:, None], np.nan, hess)
    return value, grad, hess, np.ones(x.shape[0], dtype=bool)


def poly1(x, target, soft, cw, ignore_index, epsilon):
    """CE + epsilon (1 - P), P = sum q p, as optax (a hard label is its one-hot row). Without cancellation:
    1 - P = (1 - S) + sum q (1 - p); at the row's first maximum m, where S p_m - q_m and q_m - P would cancel on
    a confident row, S p_m - q_m = (S - q_m) p_m - q_m (1 - p_m) and q_m - P = q_m (1 - p_m) - sum_{j != m} q_j p_j.
    Labels: -log p_t + epsilon o, o = 1 - p_t = -expm1(log p_t), g = (1 + epsilon p_t) (p - onehot), in forms
    without cancellation at epsilon = -1 (the value there is about o^2 / 2)."""
    R, C = x.shape
    rows = np.arange(R)
    sh, e, s, _, log_s, p, omp = _softmax_rows(x)
    eps = epsilon
    if not soft:
        keep = target != ignore_index
        t = np.where(keep, target, 0)
        lp_t = np.where(s == 0.0, -np.inf, (x[rows, t] - sh) - log_s)
        p_t, o_t = np.exp(lp_t), -np.expm1(lp_t)
        F = (1.0 + eps) - eps * o_t  # 1 + eps p_t
        grad = F[:, None] * p
        hess = p * (omp * F[:, None] - (eps * p_t)[:, None] * p)
        grad[rows, t] = -F * o_t
        hess[rows, t] = p_t * o_t * ((1.0 + eps) - 2.0 * eps * o_t)
        # -log p_t - o_t = expm1(L) - L (its series where |L| < 1/2, a difference that cancels), + (1 + eps) o_t
        L = lp_t
        small = np.abs(L) < 0.5
        Ls = np.where(small, L, 0.0)
        series = sum(Ls**n / math.factorial(n) for n in range(26, 1, -1))
        value = np.where(small, series, np.expm1(L) - L) + (1.0 + eps) * o_t
        return value, grad, hess, keep
    q = target
    m = np.argmax(e == 1.0, axis=1)  # the first maximum
    first = np.zeros((R, C), dtype=bool)
    first[rows, m] = True
    S = np.sum(q, axis=1)
    Sx = np.sum(np.where(first, 0.0, q), axis=1)
    Pe = np.sum(np.where(first, 0.0, q * p), axis=1)
    P = Pe + q[rows, m] * p[rows, m]
    value = S * log_s + np.sum(_xmul(q, sh[:, None] - x), axis=1) + eps * ((1.0 - S) + np.sum(q * omp, axis=1))
    D = q - P[:, None]
    D[rows, m] = q[rows, m] * omp[rows, m] - Pe
    grad = S[:, None] * p - q
    grad[rows, m] = Sx * p[rows, m] - q[rows, m] * omp[rows, m]
    grad = grad - eps * p * D
    hess = S[:, None] * p * omp - eps * p * (omp - p) * D
    return value, grad, hess, np.ones(R, dtype=bool)


def categorical_hinge(x, target, soft, cw, ignore_index):
    """Keras's pos = sum y x and neg = max (1 - y) x over every class (a label: its one-hot row, whose true class
    adds (1 - 1) x_t = 0 to the max); the subgradient takes the first index attaining neg. 0 * inf is 0."""
    R, C = x.shape
    rows = np.arange(R)
    keep = np.ones(R, dtype=bool)
    if soft:
        y = target
    else:
        keep = target != ignore_index
        y = np.zeros((R, C))
        y[rows, np.where(keep, target, 0)] = 1.0
    pos = np.sum(_xmul(y, x), axis=1)
    b = _xmul(1.0 - y, x)
    m = np.argmax(np.where(np.isnan(b), -np.inf, b), axis=1)  # the first maximum
    neg = b[rows, m]
    v = (neg - pos) + 1.0
    active = v > 0
    grad = -y
    grad[rows, m] += 1.0 - y[rows, m]
    grad = np.where(active[:, None], grad, 0.0)
    undefined = np.isnan(v)  # inf - inf (+inf logits on both sides): a nan row
    value = np.where(active | undefined, v, 0.0)
    grad = np.where(undefined[:, None], np.nan, grad)
    return value, grad, np.where(undefined[:, None], np.nan, np.zeros((R, C))), keep


MULTICLASS = _by_kind("multiclass")


def multiclass(name, logits, target, soft, class_vector=None, ignore_index=-100, row_weight=None, grad_scale=1.0,
               **params):
    """Per-row value (R,), gradient and Hessian diagonal (R, C), and the kept-rows mask, in float64.

    ``logits`` is (R, C); ``target`` is (R,) integer labels or, with ``soft``, (R, C) floats. ``row_weight``
    (R,) multiplies each row's value, gradient and Hessian, and ``grad_scale`` (the mean's 1 / denominator) the
    derivatives: w d (a weight of inf gives +-inf where d is not 0, nan where it is 0), in a loss function that
    takes ``rw`` and ``gscale`` where it does (its value is a factor times a sum: the weights meet the factor
    first, as rows.hpp's value_factor), else after it. Ignored rows have value, gradient and Hessian 0. A kept row with a nan logit, or whose logits are all -inf (nothing to
    normalise), has value nan and nan in every element of its gradient and Hessian, in every loss (README,
    "Guarantees"; the rule of rows.hpp and _pointwise's row functions).
    """
    return _multiclass_rows(name, logits, target, soft, class_vector, ignore_index, row_weight, grad_scale,
                            params)[:4]


def _multiclass_rows(name, logits, target, soft, class_vector, ignore_index, row_weight, grad_scale, params):
    """``multiclass``'s (value, grad, hess, keep), and ``revalue(w)``: the values ``multiclass`` gives with
    row weights ``w`` instead, without the gradient and Hessian (the weight retry of ``reduce_multiclass``
    needs the values alone). A loss function that takes ``rw`` computes its values again (the weights meet
    its factor inside), value only; for the others the values are ``w`` times the unweighted ones."""
    x = np.asarray(logits, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64 if soft else np.int64)
    cw = None if class_vector is None else np.broadcast_to(np.asarray(class_vector, np.float64), x.shape[1:])
    fn = MULTICLASS[name]
    rw = np.ones(x.shape[0]) if row_weight is None else np.asarray(row_weight, np.float64)
    bad = np.isnan(x).any(axis=1) | np.all(x == -np.inf, axis=1)
    with np.errstate(all="ignore"):
        if "rw" in _parameters(fn):
            value, grad, hess, keep = fn(x, tgt, soft, cw, ignore_index, **params, rw=rw, gscale=grad_scale)

            def weighted(w):
                return fn(x, tgt, soft, cw, ignore_index, **params, rw=w, gscale=grad_scale, value_only=True)[0]
        else:
            unweighted, grad, hess, keep = fn(x, tgt, soft, cw, ignore_index, **params)
            value = unweighted
            if row_weight is not None:
                value, grad, hess = rw * value, rw[:, None] * grad, rw[:, None] * hess
            grad, hess = grad * grad_scale, hess * grad_scale

            def weighted(w):
                return w * unweighted

    def finish(v):
        return np.where(keep, np.where(bad, np.nan, v), 0.0)

    def revalue(w):
        with np.errstate(all="ignore"):
            return finish(weighted(np.asarray(w, np.float64)))

    grad = np.where(keep[:, None], np.where(bad[:, None], np.nan, grad), 0.0)
    hess = np.where(keep[:, None], np.where(bad[:, None], np.nan, hess), 0.0)
    return finish(value), grad, hess, keep, revalue


@functools.cache
def _parameters(fn) -> frozenset:
    return frozenset(inspect.signature(fn).parameters)


def mean_denominator(mean_over, target, soft, keep, row_weight, class_vector):
    """What "mean" divides by (see LossSpec.mean_over), in float64."""
    w = np.ones(keep.shape[0]) if row_weight is None else np.asarray(row_weight, np.float64)
    if mean_over == "class_weight" and not soft and class_vector is not None:
        cw = np.broadcast_to(np.asarray(class_vector, np.float64), (np.size(class_vector),))
        t = np.where(keep, target, 0)
        return float(np.sum(np.where(keep, w * cw[t], 0.0)))
    if mean_over in ("class_weight", "kept_rows"):
        return float(np.sum(np.where(keep, w, 0.0)))
    return float(np.sum(w))


def reduce_multiclass(name, logits, target, *, reduction="mean", sample_weight=None, soft=None, **params):
    """(value, grad, hess) of the reduced multiclass loss, following the public API's rules.

    ``params`` are the loss's keyword parameters; the one named by the spec's ``vector_param`` and the
    ``ignore_param`` are taken out of them here.
    """
    from ._spec import get_spec

    spec = get_spec(name)
    x = np.asarray(logits, dtype=np.float64)
    C = x.shape[-1]
    lead = x.shape[:-1]
    tgt = np.asarray(target)
    if soft is None:
        soft = tgt.shape == x.shape and tgt.dtype.kind == "f"
    params = dict(params)
    vec = params.pop(spec.vector_param, None) if spec.vector_param else None
    ignore = params.pop(spec.ignore_param, -100) if spec.ignore_param else -100
    if vec is not None and np.ndim(vec) == 0:
        vec = np.full(C, float(vec))
    t2 = tgt.reshape(-1, C) if soft else tgt.reshape(-1)
    rw = None if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, np.float64).reshape(np.shape(sample_weight) + (1,) * (len(lead) - np.ndim(sample_weight))),
        lead).reshape(-1)
    value, grad, hess, keep, revalue = _multiclass_rows(name, x.reshape(-1, C), t2, soft, vec, ignore, rw, 1.0,
                                                        params)
    w = np.ones_like(value) if rw is None else rw
    live = (w != 0)[:, None]  # a row of weight 0 is ignored: 0, whatever its logits hold
    value, grad, hess = (np.where(live[:, 0], value, 0.0), np.where(live, grad, 0.0), np.where(live, hess, 0.0))
    with np.errstate(all="ignore"):
        if reduction == "none":
            return value.reshape(lead), grad.reshape(x.shape), hess.reshape(x.shape)
        total = float(np.sum(value))
        if reduction == "sum":
            return total, grad.reshape(x.shape), hess.reshape(x.shape)
        denom = mean_denominator(spec.mean_over, t2, soft, keep, rw, vec)
        scale = 1.0 / denom if denom != 0 else float("nan")
        if not np.isfinite(total) and denom > 1.0 and (rw is not None or vec is not None):
            # the same mean with the weights times 2^-k (sum in [1/2, 1)): finite where the mean is although
            # the sum of the weighted values overflowed (_validate.refit_total: the backends' rule for a call
            # with row or class weights)
            k = math.frexp(denom)[1]
            w2 = np.ldexp(np.ones(len(t2)) if rw is None else rw, -k)
            v2 = revalue(w2)
            value = float(np.sum(np.where(w2 != 0, v2, 0.0))) / math.ldexp(denom, -k)
        else:
            value = total * scale
        kept = keep[:, None]  # ignored rows: 0, also when nothing counts and the scale is nan (as torch)
        return (value, np.where(kept, grad * scale, 0.0).reshape(x.shape),
                np.where(kept, hess * scale, 0.0).reshape(x.shape))


# --- sequence losses: their oracle lives in _reference_ctc.py --------------------------------------

from ._reference_ctc import ctc, reduce_ctc  # noqa: E402

SEQUENCE = _by_kind("sequence")

# --- pairwise losses: their oracle lives in _reference_pairwise.py -------------------------------

from ._reference_pairwise import cosine_embedding, gaussian_nll, margin_ranking, triplet_margin  # noqa: E402

PAIRWISE = _by_kind("pairwise")


def pairwise(name, arrays, y, **params):
    """Per-row (loss, gradients) in float64 of the pairwise loss ``name``: ``arrays`` as rows (see
    ``_reference_pairwise``), ``y`` the target per row or None."""
    xs = [np.asarray(a, dtype=np.float64) for a in arrays]
    with np.errstate(all="ignore"):
        if y is None:
            return PAIRWISE[name](*xs, **params)
        return PAIRWISE[name](*xs, np.asarray(y, dtype=np.float64), **params)

# --- overlap losses: their oracle lives in _reference_overlap.py ---------------------------------

from ._reference_overlap import dice, overlap, tversky  # noqa: E402

OVERLAP = _by_kind("overlap")
