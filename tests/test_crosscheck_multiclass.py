"""Multiclass losses against the libraries that define them, on every host backend in float64:

- ``multilabel_soft_margin`` against ``torch.nn.functional.multilabel_soft_margin_loss`` through the NumPy API
  (values, autograd gradients and second derivatives), with class weights, sample weights and every reduction;
- ``poly1`` against optax's ``poly_loss_cross_entropy`` and ``categorical_hinge`` against Keras 3's
  ``keras.losses.categorical_hinge``, each transcribed line by line in NumPy (neither library is installed here),
  values directly and gradients by central differences of the transcription;
- ``cross_entropy``'s ``confidence_penalty`` (Pereyra et al. 2017: CE - beta H(p), no library has it as an option)
  against its definition in torch autograd, with every other cross_entropy option: values, gradients and Hessian
  diagonals (double backward);
- ``jensen_shannon`` against SciPy's ``scipy.spatial.distance.jensenshannon`` squared at beta = 1/2 (natural log,
  the default base), and at every beta against Liger-Kernel's plain-torch form (log-softmax, the mixture's log by
  logsumexp, the two KLs), transcribed in torch: values, autograd gradients and Hessian diagonals.
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


# --- torch autograd: cross_entropy with confidence_penalty ---------------------------------------------------

CP_CASES = {
    # each with a confident row (p_t = 1 - 1e-17), class and sample weights; a masked class (-inf) where the
    # loss is finite there (not with smoothing: inf, as torch's); an ignored row (hard labels)
    "hard": dict(form="hard", kw=dict(ignore_index=2)),
    "every_option": dict(form="hard", kw=dict(ignore_index=2, label_smoothing=0.1, z_loss=1e-3, softcap=5.0)),
    "soft": dict(form="soft", kw=dict(label_smoothing=0.1)),
}


@pytest.mark.parametrize("case", CP_CASES)
def test_confidence_penalty_is_torch_autograds(backend, case):
    """l = CE - beta H(p), H = -sum p log p of the (softcapped) softmax, per row; its z_loss-like weighting: the
    sample weight only, an ignored row 0. The gradient and the Hessian diagonal come from torch's autograd (double
    backward), so the derived formulas are checked against the definition itself."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    require_support(backend, "cross_entropy", np.float64)
    form, kw = CP_CASES[case]["form"], dict(CP_CASES[case]["kw"])
    beta, R, C = 0.3, 6, 5
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, (R, C))
    x[1] = [40.0, 0.0, -1.0, 0.5, 0.0]  # confident
    if not kw.get("label_smoothing"):
        x[3, 4] = -np.inf
    cw = rng.uniform(0.3, 2.0, C)
    w = rng.uniform(0.5, 2.0, R)
    t = np.array([0, 0, 2, 1, 3, 4]) if form == "hard" else rng.dirichlet(np.ones(C), R)  # hard: row 2 ignored
    tt = torch.tensor(t)
    ignore = kw.pop("ignore_index", -100)
    ls, zl, cap = kw.get("label_smoothing", 0.0), kw.get("z_loss", 0.0), kw.get("softcap")
    xt = torch.tensor(x, requires_grad=True)
    z = cap * torch.tanh(xt / cap) if cap else xt
    lsm = torch.log_softmax(z, 1)
    p = lsm.exp()
    ce = F.cross_entropy(z, tt, weight=torch.tensor(cw), ignore_index=ignore, label_smoothing=ls, reduction="none")
    ent = -(p * lsm.masked_fill(p == 0, 0.0)).sum(1)
    keep = torch.tensor(t != ignore if form == "hard" else np.ones(R, bool))
    per = ce + torch.where(keep, zl * torch.logsumexp(z, 1) ** 2 - beta * ent, 0.0)
    wt = torch.tensor(w)
    # "mean": over the kept rows' sample weight times cw_t (hard labels), the sample weights (soft targets)
    row_den = torch.tensor(cw)[tt.clamp(0)] if form == "hard" else torch.ones(R, dtype=torch.float64)
    den = (wt * torch.where(keep, row_den, 0.0)).sum()
    for reduction in ("sum", "mean", "none"):
        out = wt * per if reduction == "none" else (wt * per).sum() / (den if reduction == "mean" else 1.0)
        (g_t,) = torch.autograd.grad(out.sum(), xt, create_graph=True)
        h_t = np.stack([torch.autograd.grad(g_t[:, j].sum(), xt, retain_graph=True)[0][:, j].detach().numpy()
                        for j in range(C)], axis=1)
        args = dict(kw, class_weight=cw, sample_weight=w, reduction=reduction, backend=backend,
                    confidence_penalty=beta, **({"ignore_index": ignore} if form == "hard" else {}))
        v, g = fl.cross_entropy.value_and_grad(x, t, **args)
        _, h = fl.cross_entropy.grad_hess(x, t, **args)
        what = f"{case} {reduction}"
        np.testing.assert_allclose(v, out.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=what)
        np.testing.assert_allclose(g, g_t.detach().numpy(), rtol=1e-10, atol=1e-14, err_msg=what)
        np.testing.assert_allclose(h, h_t, rtol=1e-10, atol=1e-14, err_msg=what)


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


# --- jensen_shannon: SciPy at beta = 1/2, Liger's plain-torch form at every beta -----------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jensen_shannon_at_half_is_scipys_squared_distance(backend, reduction):
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    require_support(backend, "jensen_shannon", np.float64)
    rng = np.random.default_rng(13)
    R, C = 9, 6
    x = rng.normal(0, 2, (R, C))
    x[0] = [30.0, -30.0, 0.0, 5.0, -5.0, 1.0]  # a confident row
    q = rng.dirichlet(np.ones(C), R)
    q[1] = [0.0, 0.5, 0.0, 0.25, 0.25, 0.0]  # zeros in the target
    w = rng.uniform(0.5, 2.0, R)

    def want(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        # jensenshannon is the square root of (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2, natural log by default
        per_row = np.array([scipy_distance.jensenshannon(p[r], q[r]) ** 2 for r in range(R)])
        return _reduce(per_row, w, reduction)

    v, g = fl.jensen_shannon.value_and_grad(x, q, sample_weight=w, reduction=reduction, backend=backend)
    np.testing.assert_allclose(v, want(x), rtol=1e-12, atol=1e-15)
    fd = _fd_grad((lambda z: np.sum(want(z))) if reduction == "none" else want, x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def _liger_torch_jsd(torch, x, q, beta):
    """Per-row generalised JSD as Liger-Kernel's torch reference computes it, on logits: the model's log p =
    log_softmax(x), the target's log q, M = beta q + (1 - beta) p through logsumexp, beta KL(q || M) +
    (1 - beta) KL(p || M); the ends beta = 0 and 1 are KL(q || p) and KL(p || q)."""
    lp = torch.log_softmax(x, dim=-1)
    lq = torch.log(q)
    if beta == 0.0:
        return torch.sum(q * (lq - lp), dim=-1)
    if beta == 1.0:
        return torch.sum(lp.exp() * (lp - lq), dim=-1)
    lm = torch.logsumexp(torch.stack([lq + np.log(beta), lp + np.log1p(-beta)]), dim=0)
    return beta * torch.sum(q * (lq - lm), dim=-1) + (1 - beta) * torch.sum(lp.exp() * (lp - lm), dim=-1)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jensen_shannon_is_ligers_torch_form(backend, reduction, beta):
    torch = pytest.importorskip("torch")
    require_support(backend, "jensen_shannon", np.float64)
    rng = np.random.default_rng(17)
    R, C = 8, 5
    x = rng.normal(0, 2, (R, C))
    x[0] = [12.0, -3.0, 0.0, 1.0, -12.0]
    q = rng.dirichlet(np.ones(C), R)
    w = rng.uniform(0.5, 2.0, R)
    qt = torch.tensor(q)
    xt = torch.tensor(x, requires_grad=True)
    per_row = _liger_torch_jsd(torch, xt, qt, beta)
    want = _reduce(per_row.detach().numpy(), w, reduction)
    total = per_row @ torch.tensor(w)
    if reduction == "mean":
        total = total / w.sum()
    (want_g,) = torch.autograd.grad(total, xt)
    want_h = np.stack([np.diag(torch.autograd.functional.hessian(
        lambda z: _liger_torch_jsd(torch, z, qt[r], beta), xt[r].detach()).numpy()) for r in range(R)])
    want_h = want_h * (w / w.sum() if reduction == "mean" else w)[:, None]
    v, g = fl.jensen_shannon.value_and_grad(x, q, beta=beta, sample_weight=w, reduction=reduction, backend=backend)
    _, h = fl.jensen_shannon.grad_hess(x, q, beta=beta, sample_weight=w, reduction=reduction, backend=backend)
    np.testing.assert_allclose(v, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, want_g.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h, want_h, rtol=1e-10, atol=1e-14)


def test_jensen_shannon_reverse_kl_with_a_zero_target_is_inf(backend):
    """beta = 1 is KL(p || q): infinite where q_j = 0 < p_j. Its gradient is the limit as those q_j go to 0
    together: +inf on them, -inf on the classes with target mass, 0 on masked classes; where the target's mass
    sits on masked classes only, the infinite parts cancel and the gradient is p_j (log p_j - sum p log p). At
    beta < 1 the same rows are finite (m >= (1 - beta) p > 0 wherever p > 0)."""
    require_support(backend, "jensen_shannon", np.float64)
    x = np.array([[0.0, 1.0, -1.0], [0.0, 1.0, -np.inf], [0.0, 1.0, -1.0]])
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.2, 0.5, 0.3]])
    v = fl.jensen_shannon(x, q, beta=1.0, reduction="none", backend=backend)
    g = fl.jensen_shannon.grad(x, q, beta=1.0, reduction="none", backend=backend)
    assert v[0] == np.inf and v[1] == np.inf and np.isfinite(v[2])
    np.testing.assert_array_equal(g[0], [-np.inf, -np.inf, np.inf])
    p = np.exp(x[1] - np.logaddexp(0.0, 1.0))
    lp = np.log(p[:2])
    np.testing.assert_allclose(g[1], [*(p[:2] * (lp - np.sum(p[:2] * lp))), 0.0], rtol=1e-14, atol=0)
    assert np.isfinite(g[2]).all()
    v, g, h = (fl.jensen_shannon(x, q, beta=0.999, reduction="none", backend=backend),
               *fl.jensen_shannon.grad_hess(x, q, beta=0.999, reduction="none", backend=backend))
    assert np.isfinite(v).all() and np.isfinite(g).all() and np.isfinite(h).all()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_jensen_shannon_row_with_an_infinite_target_is_nan(backend, beta):
    """A target row holding inf is not a distribution: its value, gradient and Hessian are NaN on every backend
    (no limit of the formulas means anything there), and the other rows are untouched."""
    require_support(backend, "jensen_shannon", np.float64)
    x = np.array([[0.5, -1.0, 2.0], [0.2, 0.1, 0.0]])
    q = np.array([[np.inf, 0.5, 0.5], [0.2, 0.5, 0.3]])
    v = fl.jensen_shannon(x, q, beta=beta, reduction="none", backend=backend)
    g, h = fl.jensen_shannon.grad_hess(x, q, beta=beta, reduction="none", backend=backend)
    assert np.isnan(v[0]) and np.isnan(g[0]).all() and np.isnan(h[0]).all()
    v1 = fl.jensen_shannon(x[1:], q[1:], beta=beta, reduction="none", backend=backend)
    g1, h1 = fl.jensen_shannon.grad_hess(x[1:], q[1:], beta=beta, reduction="none", backend=backend)
    np.testing.assert_array_equal(v[1:], v1)
    np.testing.assert_array_equal(g[1:], g1)
    np.testing.assert_array_equal(h[1:], h1)
