"""NumPy reference: the executable specification and the test oracle.

Written for clarity and stability, not speed, and independently of the point functions that the compiled
backends use (so that a mistake in one does not hide in the other). Everything is computed in float64.

``elementwise(name, pred, target, **params)`` returns the per-element ``(value, gradient, hessian)``;
``reduce_elementwise`` applies weights and the reduction exactly as the public API documents.
"""

from __future__ import annotations

import numpy as np

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
    q = p + eps
    return p - y * np.log(q), 1.0 - y / q, y / q**2


def tweedie(p, y, power):
    rho = power
    e2 = np.exp((2.0 - rho) * p)
    e1 = np.exp((1.0 - rho) * p)
    value = e2 / (2.0 - rho) - y * e1 / (1.0 - rho)
    return value, e2 - y * e1, (2.0 - rho) * e2 - (1.0 - rho) * y * e1


ELEMENTWISE = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "smooth_l1": smooth_l1,
    "pseudo_huber": pseudo_huber,
    "log_cosh": log_cosh,
    "quantile": quantile,
    "poisson_nll": poisson_nll,
    "tweedie": tweedie,
}


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
