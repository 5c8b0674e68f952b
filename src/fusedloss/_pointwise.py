"""Scalar point functions shared by the Numba CPU and Numba-CUDA backends.

Plain Python on purpose: every function here uses only ``math`` and arithmetic, so that
``fusedloss.backends._jit.compile_namespace`` can compile the whole module with
``numba.njit(inline="always")`` or ``numba.cuda.jit(device=True)``. Calls between functions in this module
resolve to the compiled versions.

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
