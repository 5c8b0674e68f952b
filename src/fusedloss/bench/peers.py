"""The peers: the same value + gradient step as NumPy, PyTorch, JAX and scikit-learn users write it, one table
per peer (loss -> formulation), and the check that a peer is installed."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._spec import REGISTRY
from .cases import Case
from .contestants import Contestant, Unavailable
from .custom import DEFINITIONS as CUSTOM_DEFINITIONS


# NumPy as a user writes it: straightforward vectorised value + gradient of the mean, with temporaries.
def _np_mse(p, y):
    d = p - y
    return np.mean(d * d), d * (2.0 / d.size)


def _np_mae(p, y):
    d = p - y
    return np.mean(np.abs(d)), np.sign(d) / d.size


def _np_huber(p, y, delta):
    d = p - y
    ad = np.abs(d)
    quad = ad <= delta
    value = np.where(quad, 0.5 * d * d, delta * (ad - 0.5 * delta)).mean()
    return value, np.where(quad, d, delta * np.sign(d)) / d.size


def _np_asymmetric_huber(p, y, delta, alpha_left, alpha_right):
    d = p - y
    ad = np.abs(d)
    quad = ad <= delta
    a = np.where(d < 0, alpha_left, alpha_right)
    value = (a * np.where(quad, 0.5 * d * d, delta * (ad - 0.5 * delta))).mean()
    return value, a * np.where(quad, d, delta * np.sign(d)) / d.size


def _np_smooth_l1(p, y, beta):
    d = p - y
    ad = np.abs(d)
    quad = ad < beta
    value = np.where(quad, 0.5 * d * d / beta, ad - 0.5 * beta).mean()
    return value, np.where(quad, d / beta, np.sign(d)) / d.size


def _np_pseudo_huber(p, y, delta):
    d = p - y
    s = np.sqrt(1 + (d / delta) ** 2)
    return np.mean(delta**2 * (s - 1)), d / s / d.size


def _np_log_cosh(p, y):
    d = p - y
    ad = np.abs(d)
    return np.mean(ad + np.log1p(np.exp(-2 * ad)) - np.log(2)), np.tanh(d) / d.size


def _np_quantile(p, y, quantile):
    r = y - p
    value = np.mean(np.maximum(quantile * r, (quantile - 1) * r))
    return value, np.where(r > 0, -quantile, 1 - quantile) / r.size


def _np_poisson_nll(p, y, log_input, eps):
    if log_input:
        e = np.exp(p)
        return np.mean(e - y * p), (e - y) / p.size
    q = p + eps
    return np.mean(p - y * np.log(q)), (1 - y / q) / p.size


def _np_tweedie(p, y, power):
    e2 = np.exp((2 - power) * p)
    e1 = np.exp((1 - power) * p)
    return np.mean(e2 / (2 - power) - y * e1 / (1 - power)), (e2 - y * e1) / p.size


def _np_tweedie_identity(p, y, power):
    """scikit-learn's three terms, as a user would write them (powers 0, 1 and 2 excepted)."""
    k = 2 - power
    pk1 = p ** (1 - power)
    yk = np.where(y > 0, np.maximum(y, 0) ** k / ((1 - power) * k), 0)
    return np.mean(p * pk1 / k - y * pk1 / (1 - power) + yk), pk1 * (1 - y / p) / p.size


def _np_fair(p, y, c):
    d = p - y
    ad = np.abs(d)
    return np.mean(c * ad - c * c * np.log1p(ad / c)), c * d / (ad + c) / d.size


def _np_expectile(p, y, expectile):
    d = p - y
    w = np.where(d <= 0, expectile, 1.0 - expectile)
    return np.mean(w * d * d), 2.0 * w * d / d.size


def _np_cauchy(p, y, c):
    d = p - y
    z2 = (d / c) ** 2
    return np.mean(0.5 * c * c * np.log1p(z2)), d / (1.0 + z2) / d.size


def _np_gamma(p, y):
    ye = y * np.exp(-p)
    return np.mean(p + ye), (1.0 - ye) / p.size


def _np_exponential(x, y):
    em = y * np.exp(-x)
    ep = (1 - y) * np.exp(x)
    return np.mean(em + ep), (ep - em) / x.size


def _np_squared_log(p, y):
    r = np.log1p(p) - np.log1p(y)
    return np.mean(0.5 * r * r), r / (1.0 + p) / p.size


def _np_msle(p, y):
    r = np.log1p(p) - np.log1p(y)
    return np.mean(r * r), 2.0 * r / (1.0 + p) / p.size


def _np_mape(p, y, epsilon):
    m = np.maximum(np.abs(y), epsilon)
    return np.mean(np.abs(p - y) / m), np.sign(p - y) / m / p.size


def _np_general_robust(p, y, alpha, c):
    d = p - y
    z = (d / c) ** 2
    b = abs(alpha - 2.0)
    u = 1.0 + z / b
    return np.mean(b / alpha * (u ** (alpha / 2) - 1.0)), d / (c * c) * u ** (alpha / 2 - 1.0) / d.size


def _np_bce(p, y):
    value = -np.mean(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log(1 - p), -100))
    return value, (p - y) / np.maximum(p * (1 - p), 1e-12) / p.size


def _np_bce_with_logits(x, y):
    # log(1 + exp(x)) - y x, written stably as users learn to
    value = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    return value, (1 / (1 + np.exp(-x)) - y) / x.size


def _np_binary_focal(x, y, alpha, gamma):
    # torchvision's sigmoid_focal_loss, with its gradient by the chain rule: q = 1 - p_t, dq/dx = (1 - 2y) p (1 - p)
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    q = p * (1 - y) + (1 - p) * y
    a_t = 1.0 if alpha < 0 else alpha * y + (1 - alpha) * (1 - y)
    f = q**gamma
    grad = a_t * ((p - y) * f + ce * gamma * q ** (gamma - 1) * (1 - 2 * y) * p * (1 - p))
    return np.mean(a_t * ce * f), grad / x.size


def _np_hinge_embedding(x, y, margin):
    m = margin - x
    own, mar = y != -1, y != 1
    value = np.where(own, x, 0) + np.where(mar, np.maximum(m, 0), 0)
    return np.mean(value), (own.astype(x.dtype) - (mar & (m >= 0))) / x.size


def _np_hinge(x, y):
    t = np.where(y > 0, 1, -1).astype(x.dtype)
    m = 1 - t * x
    return np.mean(np.maximum(m, 0)), np.where(m > 0, -t, 0) / x.size


def _np_squared_hinge(x, y):
    t = np.where(y > 0, 1, -1).astype(x.dtype)
    m = np.maximum(1 - t * x, 0)
    return np.mean(m * m), -2 * t * m / x.size


def _np_cross_entropy(logits, labels):
    rows = np.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    value = np.mean(np.log(s[:, 0]) - shifted[rows, labels])
    grad = e / s
    grad[rows, labels] -= 1
    grad /= logits.shape[0]
    return value, grad


def _np_categorical_focal(logits, labels, gamma):
    # -(1 - p_t)^gamma log p_t per row; its gradient is d (onehot - p) with d = gamma o^(gamma-1) p_t log p_t - o^gamma
    rows = np.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    log_pt = shifted[rows, labels] - np.log(s[:, 0])
    o = 1 - np.exp(log_pt)
    d = gamma * o ** (gamma - 1) * np.exp(log_pt) * log_pt - o**gamma
    grad = -d[:, None] * (e / s)
    grad[rows, labels] += d
    grad /= logits.shape[0]
    return np.mean(-(o**gamma) * log_pt), grad


def _np_multi_margin(x, labels, p, margin):
    # torch's multi_margin_loss: sum over j != y of max(0, margin - x_y + x_j)^p / C per row
    rows = np.arange(x.shape[0])
    v = np.maximum(margin - x[rows, labels][:, None] + x, 0)
    v[rows, labels] = 0
    g = (v > 0).astype(x.dtype) if p == 1 else p * v ** (p - 1)
    g[rows, labels] = -g.sum(axis=1)
    C = x.shape[1]
    return np.mean(np.sum(v**p, axis=1) / C), g / (C * x.shape[0])


def _np_kl_div_with_logits(logits, q, temperature):
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    value = np.sum(q * (np.log(q) - logp)) / logits.shape[0]
    return value, (np.exp(logp) * q.sum(axis=1, keepdims=True) - q) / (temperature * logits.shape[0])


def _np_jensen_shannon(logits, q, beta):
    # Liger's generalised JSD written plainly on logits: log-softmax, the mixture's log by logaddexp, mean over rows
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    logq = np.log(q)
    if beta == 0.0:  # KL(q || p)
        return np.sum(q * (logq - logp)) / n, (p * q.sum(axis=1, keepdims=True) - q) / n
    if beta == 1.0:  # KL(p || q)
        r = logp - logq
        return np.sum(p * r) / n, p * (r - np.sum(p * r, axis=1, keepdims=True)) / n
    logm = np.logaddexp(np.log(beta) + logq, np.log1p(-beta) + logp)
    r = logp - logm
    value = np.sum(beta * q * (logq - logm) + (1 - beta) * p * r) / n
    return value, (1 - beta) * p * (r - np.sum(p * r, axis=1, keepdims=True)) / n


def _np_multilabel_soft_margin(x, y):
    # torch's multilabel_soft_margin_loss: -(y log sigmoid(x) + (1 - y) log sigmoid(-x)), mean over classes and rows
    sp = np.logaddexp(0, x)  # softplus(x) = -log sigmoid(-x); softplus(-x) = sp - x
    value = np.mean(y * (sp - x) + (1 - y) * sp)
    return value, (1 / (1 + np.exp(-x)) - y) / x.size


def _np_poly1(logits, labels, epsilon):
    # optax's poly_loss_cross_entropy: cross-entropy + epsilon (1 - p_t), mean over rows
    rows = np.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    p_t = p[rows, labels]
    value = np.mean(-np.log(p_t) + epsilon * (1 - p_t))
    grad = (1 + epsilon * p_t)[:, None] * p
    grad[rows, labels] -= 1 + epsilon * p_t
    return value, grad / logits.shape[0]


def _np_categorical_hinge(x, labels):
    # Keras's categorical_hinge on one-hot labels: max(max(0, max_{j != t} x_j) - x_t + 1, 0)
    rows = np.arange(x.shape[0])
    b = x.copy()
    b[rows, labels] = 0.0
    m = np.argmax(b, axis=1)
    v = b[rows, m] - x[rows, labels] + 1
    grad = np.zeros_like(x)
    grad[rows, m] += (v > 0) & (m != labels)  # the true class's 0 in the max has no x_t in it
    grad[rows, labels] -= v > 0
    return np.mean(np.maximum(v, 0)), grad / x.shape[0]


# loss -> (function, the parameters it models); a case whose other parameters differ from their defaults
# has no NumPy peer
NUMPY_PEER = {
    "mse": (_np_mse, ()), "mae": (_np_mae, ()), "huber": (_np_huber, ("delta",)),
    "asymmetric_huber": (_np_asymmetric_huber, ("delta", "alpha_left", "alpha_right")),
    "smooth_l1": (_np_smooth_l1, ("beta",)), "pseudo_huber": (_np_pseudo_huber, ("delta",)),
    "log_cosh": (_np_log_cosh, ()), "quantile": (_np_quantile, ("quantile",)),
    "poisson_nll": (_np_poisson_nll, ("log_input", "eps")), "tweedie": (_np_tweedie, ("power",)),
    "fair": (_np_fair, ("c",)), "cauchy": (_np_cauchy, ("c",)),
    "general_robust": (_np_general_robust, ("alpha", "c")), "expectile": (_np_expectile, ("expectile",)), "gamma": (_np_gamma, ()), "squared_log": (_np_squared_log, ()),
    "msle": (_np_msle, ()), "mape": (_np_mape, ("epsilon",)), "tweedie_identity": (_np_tweedie_identity, ("power",)),
    "hinge_embedding": (_np_hinge_embedding, ("margin",)),
    "binary_cross_entropy": (_np_bce, ()), "binary_cross_entropy_with_logits": (_np_bce_with_logits, ()),
    "binary_focal": (_np_binary_focal, ("alpha", "gamma")), "categorical_focal": (_np_categorical_focal, ("gamma",)),
    "exponential": (_np_exponential, ()), "hinge": (_np_hinge, ()), "squared_hinge": (_np_squared_hinge, ()),
    "multi_margin": (_np_multi_margin, ("p", "margin")),
    "cross_entropy": (_np_cross_entropy, ()), "kl_div_with_logits": (_np_kl_div_with_logits, ("temperature",)),
    "multilabel_soft_margin": (_np_multilabel_soft_margin, ()), "jensen_shannon": (_np_jensen_shannon, ("beta",)),
    "poly1": (_np_poly1, ("epsilon",)), "categorical_hinge": (_np_categorical_hinge, ()),
}
# the custom re-definitions of fusedloss.bench.custom: the same losses, so the same NumPy
NUMPY_PEER.update({name: NUMPY_PEER[builtin] for name, (_, _, builtin) in CUSTOM_DEFINITIONS.items()})


def _modeled_params(case, modeled, peer):
    """The case's parameters a peer models; Unavailable if another one differs from its default."""
    defaults = REGISTRY[case.loss].defaults()
    for k, v in case.params.items():
        if k not in modeled and v != defaults.get(k):
            raise Unavailable(f"peer {peer} does not model {case.loss}'s {k}={v!r}")
    return {k: v for k, v in case.params.items() if k in modeled}


def _numpy_peer(case, pred, target):
    if case.loss not in NUMPY_PEER:
        raise Unavailable(f"no NumPy peer for {case.loss}")
    fn, modeled = NUMPY_PEER[case.loss]
    params = _modeled_params(case, modeled, "numpy")
    return Contestant("peer:numpy", "peer", lambda: fn(pred, target, **params),
                      lambda r: (float(r[0]), r[1]), note="single-threaded")


# PyTorch: forward through torch.nn.functional, backward through autograd.
# loss -> (the parameters it models, make(F, kw) -> f(pred, target) returning the loss tensor)
TORCH_PEER = {
    "mse": ((), lambda F, kw: F.mse_loss),
    "mae": ((), lambda F, kw: F.l1_loss),
    "huber": (("delta",), lambda F, kw: lambda p, y: F.huber_loss(p, y, delta=kw["delta"])),
    "smooth_l1": (("beta",), lambda F, kw: lambda p, y: F.smooth_l1_loss(p, y, beta=kw["beta"])),
    "poisson_nll": (("log_input", "eps"), lambda F, kw: lambda p, y: F.poisson_nll_loss(
        p, y, log_input=kw["log_input"], eps=kw["eps"], full=False)),
    "binary_cross_entropy": ((), lambda F, kw: F.binary_cross_entropy),
    "binary_cross_entropy_with_logits": ((), lambda F, kw: F.binary_cross_entropy_with_logits),
    "cross_entropy": (("ignore_index", "label_smoothing"), lambda F, kw: lambda p, y: F.cross_entropy(
        p, y, ignore_index=kw["ignore_index"], label_smoothing=kw["label_smoothing"])),
    "multi_margin": (("p", "margin"), lambda F, kw: lambda x, y: F.multi_margin_loss(
        x, y, p=kw["p"], margin=kw["margin"])),
    "kl_div_with_logits": (("temperature", "log_target"), lambda F, kw: lambda x, q: F.kl_div(
        F.log_softmax(x / kw["temperature"], dim=-1), q, reduction="batchmean", log_target=kw["log_target"])),
    "multilabel_soft_margin": ((), lambda F, kw: F.multilabel_soft_margin_loss),
    "jensen_shannon": (("beta",), lambda F, kw: _torch_jsd(F, kw["beta"])),
    "hinge_embedding": (("margin",), lambda F, kw: lambda x, y: F.hinge_embedding_loss(x, y, margin=kw["margin"])),
}


def _torch_jsd(F, beta):
    """Liger's generalised JSD in plain torch on logits (the form LigerJSD replaces): the mixture's log by
    logsumexp, the KLs by kl_div with log targets, summed and divided by the rows."""
    import torch

    def f(x, q):
        logp = F.log_softmax(x, dim=-1)
        logq = torch.log(q)
        if beta == 0.0:
            kl = F.kl_div(logp, logq, reduction="sum", log_target=True)
        elif beta == 1.0:
            kl = F.kl_div(logq, logp, reduction="sum", log_target=True)
        else:
            logm = torch.logsumexp(torch.stack([logq + math.log(beta), logp + math.log1p(-beta)]), dim=0)
            kl = (beta * F.kl_div(logm, logq, reduction="sum", log_target=True)
                  + (1 - beta) * F.kl_div(logm, logp, reduction="sum", log_target=True))
        return kl / x.shape[0]

    return f


def _torch_peer(case, pred, target):
    import torch
    import torch.nn.functional as F

    if case.loss not in TORCH_PEER:
        raise Unavailable(f"torch.nn.functional has no {case.loss}")
    modeled, make = TORCH_PEER[case.loss]
    _modeled_params(case, modeled, "torch")
    f = make(F, case.params)
    previous = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    p = torch.from_numpy(pred).requires_grad_(True)
    y = torch.from_numpy(target)

    def run():  # forward + backward, as a training step computes them
        loss = f(p, y)
        (g,) = torch.autograd.grad(loss, p)
        return loss.detach(), g

    return Contestant("peer:torch", "peer", run, lambda r: (float(r[0]), r[1].numpy()),
                      cleanup=lambda: torch.set_num_threads(previous), compiles=True)


# JAX: jax.jit(jax.value_and_grad(f)) of the mean loss, written as a JAX user writes it (optax's formulas).
def _jx_huber(jnp, kw, p, y):
    d = p - y
    ad = jnp.abs(d)
    delta = kw["delta"]
    return jnp.mean(jnp.where(ad <= delta, 0.5 * d * d, delta * (ad - 0.5 * delta)))


def _jx_smooth_l1(jnp, kw, p, y):
    d = p - y
    ad = jnp.abs(d)
    beta = kw["beta"]
    return jnp.mean(jnp.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta))


def _jx_quantile(jnp, kw, p, y):
    r = y - p
    q = kw["quantile"]
    return jnp.mean(jnp.maximum(q * r, (q - 1) * r))


def _jx_poisson(jnp, kw, p, y):
    if not kw["log_input"]:
        return jnp.mean(p - y * jnp.log(p + kw["eps"]))
    return jnp.mean(jnp.exp(p) - y * p)


def _jx_tweedie(jnp, kw, p, y):
    rho = kw["power"]
    return jnp.mean(jnp.exp((2 - rho) * p) / (2 - rho) - y * jnp.exp((1 - rho) * p) / (1 - rho))


def _jx_cross_entropy(jnp, kw, z, labels):
    m = z.max(axis=1)
    lse = jnp.log(jnp.sum(jnp.exp(z - m[:, None]), axis=1)) + m
    return jnp.mean(lse - jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0])


JAX_PEER = {  # loss -> (the parameters it models, f(jnp, kw, pred, target))
    "mse": ((), lambda jnp, kw, p, y: jnp.mean((p - y) ** 2)),
    "mae": ((), lambda jnp, kw, p, y: jnp.mean(jnp.abs(p - y))),
    "huber": (("delta",), _jx_huber),
    "smooth_l1": (("beta",), _jx_smooth_l1),
    "pseudo_huber": (("delta",), lambda jnp, kw, p, y: jnp.mean(
        kw["delta"] ** 2 * (jnp.sqrt(1 + ((p - y) / kw["delta"]) ** 2) - 1))),
    "log_cosh": ((), lambda jnp, kw, p, y: jnp.mean(jnp.logaddexp(p - y, y - p) - math.log(2.0))),
    "quantile": (("quantile",), _jx_quantile),
    "poisson_nll": (("log_input", "eps"), _jx_poisson),
    "tweedie": (("power",), _jx_tweedie),
    "binary_cross_entropy_with_logits": ((), lambda jnp, kw, x, y: jnp.mean(
        jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))),
    "cross_entropy": ((), _jx_cross_entropy),
}

# the registered losses with a benchmark case that JAX_PEER leaves out (it times a selection, as a JAX user would
# write them): tests/test_bench_cases.py fails for such a loss in neither, so a new loss gets a decision here
JAX_LEFT_OUT = frozenset({
    "asymmetric_huber", "binary_cross_entropy", "binary_focal", "categorical_focal", "categorical_hinge", "cauchy",
    "expectile", "exponential", "fair", "gamma", "general_robust", "hinge", "hinge_embedding", "jensen_shannon",
    "kl_div_with_logits", "mape", "msle", "multi_margin", "multilabel_soft_margin", "poly1", "squared_hinge",
    "squared_log", "tweedie_identity",
})

_JAX_READY = False


def _jax_peer(case, pred, target):
    global _JAX_READY
    import functools

    import jax
    import jax.numpy as jnp

    if not _JAX_READY:
        jax.config.update("jax_enable_x64", True)  # else float64 inputs are silently computed in float32
        _JAX_READY = True
    if case.loss not in JAX_PEER:
        raise Unavailable(f"no JAX peer for {case.loss}")
    modeled, fn = JAX_PEER[case.loss]
    _modeled_params(case, modeled, "jax")
    step = jax.jit(jax.value_and_grad(functools.partial(fn, jnp, case.params)))
    p = jax.device_put(pred)
    y = jax.device_put(target)

    def run():
        value, grad = step(p, y)
        grad.block_until_ready()
        return value, grad

    return Contestant("peer:jax", "peer", run, lambda r: (float(r[0]), np.asarray(r[1])),
                      note="XLA picks its own thread count", compiles=True)


# scikit-learn's sklearn._loss: loss_gradient into preallocated per-sample outputs, with n_threads.
# loss -> (the parameters it models, factor from its convention to fusedloss's, make(L, kw, case))
SKLEARN_PEER = {
    "mse": ((), 2.0, lambda L, kw, case: L.HalfSquaredError()),  # 0.5 d^2 and d
    "mae": ((), 1.0, lambda L, kw, case: L.AbsoluteError()),
    "huber": (("delta",), 1.0, lambda L, kw, case: L.HuberLoss(delta=kw["delta"])),
    "quantile": (("quantile",), 1.0, lambda L, kw, case: L.PinballLoss(quantile=kw["quantile"])),
    "poisson_nll": (("eps",), 1.0, lambda L, kw, case: L.HalfPoissonLoss()),  # log link: log_input=True only
    "tweedie": (("power",), 1.0, lambda L, kw, case: L.HalfTweedieLoss(power=kw["power"])),
    "gamma": ((), 1.0, lambda L, kw, case: L.HalfGammaLoss()),
    "tweedie_identity": (("power",), 1.0, lambda L, kw, case: L.HalfTweedieLossIdentity(power=kw["power"])),
    "exponential": ((), 1.0, lambda L, kw, case: L.ExponentialLoss()),
    "binary_cross_entropy_with_logits": ((), 1.0, lambda L, kw, case: L.HalfBinomialLoss()),
    "cross_entropy": ((), 1.0, lambda L, kw, case: L.HalfMultinomialLoss(n_classes=case.shape[-1])),
}

# the registered losses with a benchmark case that sklearn._loss has no class for (the same check as JAX_LEFT_OUT)
SKLEARN_LEFT_OUT = frozenset({
    "asymmetric_huber", "binary_cross_entropy", "binary_focal", "categorical_focal", "categorical_hinge", "cauchy",
    "expectile", "fair", "general_robust", "hinge", "hinge_embedding", "jensen_shannon", "kl_div_with_logits",
    "log_cosh", "mape", "msle", "multi_margin", "multilabel_soft_margin", "poly1", "pseudo_huber", "smooth_l1",
    "squared_hinge", "squared_log",
})


def _sklearn_peer(case, pred, target):
    from sklearn._loss import loss as L

    if case.loss not in SKLEARN_PEER:
        raise Unavailable(f"sklearn._loss has no {case.loss}")
    modeled, factor, make = SKLEARN_PEER[case.loss]
    _modeled_params(case, modeled, "sklearn")
    obj = make(L, case.params, case)
    y = np.ascontiguousarray(target, dtype=pred.dtype)  # scikit-learn wants float labels of pred's dtype
    loss_out = np.empty(pred.shape[:1], pred.dtype)
    grad_out = np.empty_like(pred)
    threads = case.threads
    n_rows = pred.shape[0]

    def run():  # per-sample loss and gradient, then the mean a training step reports
        obj.loss_gradient(y_true=y, raw_prediction=pred, loss_out=loss_out, gradient_out=grad_out,
                          n_threads=threads)
        return loss_out.mean(), grad_out

    def result(r):  # scikit-learn's gradient is per sample (unreduced); its squared error is halved
        return factor * float(r[0]), r[1] * (factor / n_rows)

    return Contestant("peer:sklearn", "peer", run, result)


@dataclass(frozen=True)
class PeerFamily:
    """One peer: its table (loss -> formulation), the module whose import says it is installed, and the
    factory of its contestant for a case."""

    losses: dict
    module: str
    make: Callable


# the one list of peers, in the order of the table's columns
PEER_FAMILIES = {
    "numpy": PeerFamily(NUMPY_PEER, "numpy", _numpy_peer),
    "torch": PeerFamily(TORCH_PEER, "torch", _torch_peer),
    "jax": PeerFamily(JAX_PEER, "jax", _jax_peer),
    "sklearn": PeerFamily(SKLEARN_PEER, "sklearn._loss", _sklearn_peer),
}
PEERS = tuple(PEER_FAMILIES)
PEER_LOSSES = {name: family.losses for name, family in PEER_FAMILIES.items()}


def peer_has(peer: str, loss: str) -> bool:
    """Whether a peer has a formulation of ``loss`` at all (its parameters may still rule a case out)."""
    return loss in PEER_LOSSES[peer]


_peer_status: dict[str, tuple[bool, str]] = {}


def peer_status(name: str) -> tuple[bool, str]:
    """(importable, version or reason) for a peer; imports it on first call."""
    if name not in _peer_status:
        try:
            module = PEER_FAMILIES[name].module
            mod = __import__(module, fromlist=["_"])
            top = sys.modules[module.split(".")[0]]
            _peer_status[name] = (True, getattr(top, "__version__", "?"))
            del mod
        except Exception as exc:
            _peer_status[name] = (False, f"{type(exc).__name__}: {exc}")
    return _peer_status[name]


def peer_contestant(name: str, case: Case, pred, target) -> Contestant:
    ok, why = peer_status(name)
    if not ok:
        raise Unavailable(f"peer {name} not installed ({why})")
    return PEER_FAMILIES[name].make(case, pred, target)
