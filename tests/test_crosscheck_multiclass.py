"""Multiclass losses against the libraries that define them, on every host backend in float64:

- ``multilabel_soft_margin`` against ``torch.nn.functional.multilabel_soft_margin_loss`` through the NumPy API
  (values, autograd gradients and second derivatives), with class weights, sample weights and every reduction;
- ``poly1`` against optax's ``poly_loss_cross_entropy`` and ``categorical_hinge`` against Keras 3's
  ``keras.losses.categorical_hinge``, each transcribed line by line in NumPy (neither library is installed here),
  values directly and gradients by central differences of the transcription.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl

from conftest import require_support

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_row, w, reduction, keep=None):
    """fusedloss's reduction of per-row values: weights w (None: 1), "mean" over the kept rows' weights."""
    w = np.ones(per_row.shape[0]) if w is None else w
    keep = np.ones(per_row.shape[0], dtype=bool) if keep is None else keep
    per_row = np.where(keep, per_row, 0.0)  # an ignored row counts for nothing
    if reduction == "none":
        return w * per_row
    total = np.sum(w * per_row)
    return total if reduction == "sum" else total / np.sum(np.where(keep, w, 0.0))


def _fd_grad(f, x, h=1e-6):
    """Central differences of the scalar f at x."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = h
        g[i] = (f(x + d) - f(x - d)) / (2 * h)
    return g


# --- torch: multilabel_soft_margin_loss ---------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("class_weight", [False, True], ids=["", "class_weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_is_torchs(backend, reduction, class_weight, weighted):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    require_support(backend, "multilabel_soft_margin", np.float64)
    rng = np.random.default_rng(11)
    x = rng.normal(0, 3, (9, 6))
    x[0] = [40.0, -40.0, 0.0, 1e-3, -700.0, 700.0]  # both tails of the softplus and the sigmoid
    y = (rng.random((9, 6)) < 0.4).astype(np.float64)
    y[1] = rng.random(6)  # soft targets
    cw = rng.uniform(0.2, 2.0, 6) if class_weight else None
    w = rng.uniform(0.5, 2.0, 9) if weighted else None
    xt = torch.tensor(x, requires_grad=True)
    per = F.multilabel_soft_margin_loss(xt, torch.tensor(y), weight=None if cw is None else torch.tensor(cw),
                                        reduction="none")
    wt = torch.ones(9, dtype=torch.float64) if w is None else torch.tensor(w)
    out = wt * per if reduction == "none" else (wt * per).sum() / (wt.sum() if reduction == "mean" else 1.0)
    (g_torch,) = torch.autograd.grad(out.sum(), xt, create_graph=True)
    h_torch = np.stack([torch.autograd.grad(g_torch[:, j].sum(), xt, retain_graph=True)[0][:, j].detach().numpy()
                        for j in range(6)], axis=1)
    kw = dict(class_weight=cw, sample_weight=w, reduction=reduction, backend=backend)
    v, g = fl.multilabel_soft_margin.value_and_grad(x, y, **kw)
    _, h = fl.multilabel_soft_margin.grad_hess(x, y, **kw)
    np.testing.assert_allclose(v, out.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, g_torch.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, h_torch, rtol=1e-12, atol=1e-15)


def test_multilabel_soft_margin_integer_targets_through_the_torch_layer():
    """torch computes with integer multi-hot targets; so does fusedloss.torch (cast to the input's dtype)."""
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fusedloss.torch")
    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = (torch.rand(7, 4, generator=torch.Generator().manual_seed(4)) < 0.5).long()
    want = torch.nn.functional.multilabel_soft_margin_loss(x, y)
    got = ft.multilabel_soft_margin_loss(x, y, backend="numpy")
    assert float(got) == pytest.approx(float(want), rel=1e-14)


# --- optax: poly_loss_cross_entropy, transcribed -------------------------------------------------------------


def _optax_poly_loss_cross_entropy(logits, labels, epsilon=2.0):
    """optax.poly_loss_cross_entropy: softmax_cross_entropy(logits, labels) + epsilon * (1 - sum(labels * softmax))."""
    log_p = logits - np.max(logits, -1, keepdims=True)
    log_p = log_p - np.log(np.sum(np.exp(log_p), -1, keepdims=True))
    cross_entropy = -np.sum(labels * log_p, -1)
    pt = np.sum(labels * np.exp(log_p), -1)
    return cross_entropy + epsilon * (1.0 - pt)


@pytest.mark.parametrize("epsilon", [2.0, 1.0, -1.0, 0.0])
@pytest.mark.parametrize("form", ["hard", "soft", "unnormalised"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poly1_is_optaxs(backend, reduction, form, epsilon):
    require_support(backend, "poly1", np.float64)
    rng = np.random.default_rng(5)
    R, C = 8, 5
    x = rng.normal(0, 2, (R, C))
    w = rng.uniform(0.5, 2.0, R)
    if form == "hard":
        t = rng.integers(0, C, R)
        t[2] = -100  # ignored
        keep = t != -100
        q = np.eye(C)[np.where(keep, t, 0)] * keep[:, None]
    else:
        q = rng.dirichlet(np.ones(C), R)
        if form == "unnormalised":  # optax does not normalise: 1 - sum q p as written
            q = q * rng.uniform(0.5, 1.5, (R, 1))
        t, keep = q, None

    def want(z):
        return _reduce(_optax_poly_loss_cross_entropy(z, q, epsilon), w, reduction, keep)

    v, g = fl.poly1.value_and_grad(x, t, epsilon=epsilon, sample_weight=w, reduction=reduction, backend=backend)
    np.testing.assert_allclose(v, want(x), rtol=1e-13, atol=1e-15)
    if reduction == "none":  # the gradient of each row's weighted value: of their sum
        np.testing.assert_allclose(g, _fd_grad(lambda z: np.sum(want(z)), x), rtol=1e-6, atol=1e-8)
    else:
        np.testing.assert_allclose(g, _fd_grad(want, x), rtol=1e-6, atol=1e-8)


def test_poly1_with_epsilon_0_is_cross_entropy(backend):
    require_support(backend, "poly1", np.float64)
    rng = np.random.default_rng(6)
    x, t = rng.normal(0, 2, (7, 4)), rng.integers(0, 4, 7)
    for a, b in zip(fl.poly1.grad_hess(x, t, epsilon=0.0, backend=backend),
                    fl.cross_entropy.grad_hess(x, t, backend=backend)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)


# --- Keras: categorical_hinge, transcribed ------------------------------------------------------------------


def _keras_categorical_hinge(y_true, y_pred):
    """keras.losses.categorical_hinge (Keras 3): pos = sum(y_true * y_pred), neg = max((1 - y_true) * y_pred)."""
    pos = np.sum(y_true * y_pred, axis=-1)
    neg = np.max((1.0 - y_true) * y_pred, axis=-1)
    return np.maximum(neg - pos + 1.0, 0.0)


@pytest.mark.parametrize("form", ["hard", "one_hot", "soft", "plus_minus_one"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_categorical_hinge_is_keras(backend, reduction, form):
    require_support(backend, "categorical_hinge", np.float64)
    rng = np.random.default_rng(8)
    R, C = 40, 5
    x = rng.normal(0, 1.5, (R, C))
    x[0] = [-1.0, -2.0, -0.5, -3.0, -0.25]  # every logit negative: neg is the true class's 0 (Keras's quirk)
    w = rng.uniform(0.5, 2.0, R)
    labels = rng.integers(0, C, R)
    labels[0] = 1
    keep = None
    if form == "hard":
        labels[3] = -100
        keep = labels != -100
        y = np.eye(C)[np.where(keep, labels, 0)] * keep[:, None]
        t = labels
    elif form == "one_hot":
        y = t = np.eye(C)[labels]
    elif form == "soft":
        y = t = rng.dirichlet(np.ones(C), R)
    else:
        y = t = 2.0 * np.eye(C)[labels] - 1.0

    def want(z):
        return _reduce(_keras_categorical_hinge(y, z), w, reduction, keep)

    v, g = fl.categorical_hinge.value_and_grad(x, t, sample_weight=w, reduction=reduction, backend=backend)
    np.testing.assert_allclose(v, want(x), rtol=1e-14, atol=1e-15)
    fd = _fd_grad((lambda z: np.sum(want(z))) if reduction == "none" else want, x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)  # no row of this data sits on a kink
    if form == "one_hot":
        np.testing.assert_allclose(g, fl.categorical_hinge.grad(x, labels, sample_weight=w, reduction=reduction,
                                                                backend=backend), rtol=0, atol=0)
    _, h = fl.categorical_hinge.grad_hess(x, t, sample_weight=w, reduction=reduction, backend=backend)
    assert not h.any()


def test_categorical_hinge_quirk_row(backend):
    """With every other logit negative, Keras's neg is the true class's (1 - 1) x_t = 0, not max_{j != t} x_j."""
    require_support(backend, "categorical_hinge", np.float64)
    x = np.array([[-1.0, -2.0, 0.5]])
    v, g = fl.categorical_hinge.value_and_grad(x, np.array([2]), reduction="sum", backend=backend)
    assert v == 0.5  # max(0 - 0.5 + 1, 0); the max over the other classes alone would give -1 - 0.5 + 1 = -0.5 -> 0
    np.testing.assert_array_equal(g, [[0.0, 0.0, -1.0]])
