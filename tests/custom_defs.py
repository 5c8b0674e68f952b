"""Formulas for the custom-loss tests: built-in losses written again with ``fusedloss.sym`` (checked against the
built-in reference) and losses that are not built in (checked against finite differences).

Each entry of ``REDEFINED``: built-in name -> (formula, ``params=`` of the definition, target domain). The
formulas use the built-in parameter names, so the same keyword arguments go to both.
"""

from __future__ import annotations

from fusedloss import sym


def mse(p, y):
    return (p - y) ** 2


def huber(p, y, delta):
    d = p - y
    return sym.where(abs(d) <= delta, d**2 / 2, delta * (abs(d) - delta / 2))


def pseudo_huber(p, y, delta):
    return delta**2 * (sym.sqrt(1 + ((p - y) / delta) ** 2) - 1)


def log_cosh(p, y):
    return sym.logcosh(p - y)


def quantile(p, y, quantile):
    return quantile * sym.maximum(y - p, 0) + (1 - quantile) * sym.maximum(p - y, 0)


def poisson_nll(p, y):
    return sym.exp(p) - y * p


def binary_cross_entropy_with_logits(p, y):
    return y * sym.softplus(-p) + (1 - y) * sym.softplus(p)


def binary_focal(p, y, alpha, gamma):
    s, sm = sym.sigmoid(p), sym.sigmoid(-p)
    ce = y * sym.softplus(-p) + (1 - y) * sym.softplus(p)
    q = s * (1 - y) + sm * y  # 1 - p_t, a sum of non-negative terms
    a_t = sym.where(alpha < 0, 1, alpha * y + (1 - alpha) * (1 - y))
    return a_t * ce * q**gamma


REDEFINED = {
    "mse": (mse, {}, "real"),
    "huber": (huber, {"delta": (1.0, "positive")}, "real"),
    "pseudo_huber": (pseudo_huber, {"delta": (1.0, "positive")}, "real"),
    "log_cosh": (log_cosh, {}, "real"),
    "quantile": (quantile, {"quantile": (0.5, "open_unit")}, "real"),
    "poisson_nll": (poisson_nll, {}, "nonnegative"),
    "binary_cross_entropy_with_logits": (binary_cross_entropy_with_logits, {}, "unit"),
    "binary_focal": (binary_focal, {"alpha": 0.25, "gamma": (2.0, "nonnegative")}, "unit"),
}

# parameter values tested besides the defaults
REDEFINED_VARIANTS = {
    "huber": [{"delta": 0.5}],
    "pseudo_huber": [{"delta": 2.0}],
    "quantile": [{"quantile": 0.1}],
    "binary_focal": [{"alpha": -1.0, "gamma": 0.0}, {"alpha": 0.5, "gamma": 1.5}],
}


# --- losses that are not built in ---------------------------------------------------------------------------


def asymmetric_squared(p, y, over):
    """Over-prediction costs ``over`` times more than under-prediction."""
    d = p - y
    return sym.where(d > 0, over * d**2, d**2)


def cauchy(p, y, c):
    return c**2 / 2 * sym.log(1 + ((p - y) / c) ** 2)


def tukey(p, y, c):
    """Tukey's biweight: constant beyond |d| = c."""
    d = p - y
    return sym.where(abs(d) <= c, c**2 / 6 * (1 - (1 - (d / c) ** 2) ** 3), c**2 / 6)


def three_params(p, y, a, b, c):
    """More than two parameters: they travel to the kernels as one tuple."""
    d = p - y
    return sym.where(d > 0, a * d**2, b * d**2) + c * sym.logcosh(d) + sym.exp(-(d**2)) * a * b


NOT_BUILT_IN = {
    "asymmetric_squared": (asymmetric_squared, {"over": (2.0, "positive")}, {"over": 3.0}, [0.0]),
    "cauchy": (cauchy, {"c": (1.0, "positive")}, {"c": 0.5}, []),
    "tukey": (tukey, {"c": (1.5, "positive")}, {"c": 2.0}, [0.0]),  # kinks at |d| = c added by the test
    "three_params": (three_params, {"a": 1.0, "b": 0.5, "c": (0.25, "nonnegative")}, {"a": 2.0, "b": 3.0, "c": 1.0},
                     [0.0]),
}
