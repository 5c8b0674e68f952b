"""fusedloss against independent implementations: torch.nn.functional (values, autograd gradients and
second derivatives) and scikit-learn's private ``sklearn._loss`` module (loss, gradient, Hessian, weights).

Both are optional: each section skips cleanly when its library is absent. Run on every available host
backend, in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl

from conftest import loss_fn, require_support

REDUCTIONS = ("mean", "sum", "none")


def _residual_data(n=64, seed=0, zeros=False):
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.5, n)
    d = rng.normal(0, 2.0, n)
    # keep |d| away from the cut-offs 0, 0.5, 1 (torch and fusedloss may take different one-sided
    # derivatives exactly there; the conventions are pinned in test_spec_table)
    for c in (0.0, 0.5, 1.0):
        close = np.abs(np.abs(d) - c) < 1e-3
        d[close] += np.sign(d[close] + 1e-12) * 0.01
    if zeros:
        d[:3] = 0.0
    return y + d, y


# --- torch ---------------------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def _torch_case(fn, p, y, reduction, w=None):
    """(value, grad, hess diagonal) of a torch elementwise loss, reduced as fusedloss does it."""
    torch = _torch()
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.float64)
    per = fn(pt, yt, reduction="none")
    if w is not None:
        wt = torch.tensor(w, dtype=torch.float64)
        per = per * wt
        denom = wt.sum()
    else:
        denom = per.numel()
    if reduction == "none":
        out = per
        total = per.sum()
    elif reduction == "sum":
        out = total = per.sum()
    else:
        out = total = per.sum() / denom
    (g,) = torch.autograd.grad(total, pt, create_graph=True)
    h = None  # a gradient without a graph (piecewise constant, as hinge_embedding_loss's): Hessian 0
    if g.requires_grad:
        (h,) = torch.autograd.grad(g.sum(), pt, allow_unused=True)  # elementwise: the diagonal is all there is
    h = torch.zeros_like(pt) if h is None else h
    return (out.detach().numpy(force=True), g.detach().numpy(force=True), h.detach().numpy(force=True))


def _compare(name, kw, p, y, reduction, backend, torch_fn, w=None, hessian=True, hess_rtol=1e-12):
    loss = loss_fn(name)
    value, grad = loss.value_and_grad(p, y, reduction=reduction, sample_weight=w, backend=backend, **kw)
    tv, tg, th = _torch_case(torch_fn, p, y, reduction, w)
    np.testing.assert_allclose(value, tv, rtol=1e-12, atol=1e-14, err_msg=f"{name}{kw} {reduction} value")
    np.testing.assert_allclose(grad, tg, rtol=1e-12, atol=1e-14, err_msg=f"{name}{kw} {reduction} gradient")
    if hessian:
        _, hess = loss.grad_hess(p, y, reduction=reduction, sample_weight=w, backend=backend, **kw)
        np.testing.assert_allclose(hess, th, rtol=hess_rtol, atol=1e-14, err_msg=f"{name}{kw} {reduction} hessian")


def _F():
    return _torch().nn.functional


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_mse_l1(backend, reduction, weighted):
    F = _F()
    p, y = _residual_data()
    w = np.random.default_rng(1).uniform(0, 2, p.size) if weighted else None
    require_support(backend, "mse")
    _compare("mse", {}, p, y, reduction, backend, F.mse_loss, w)
    require_support(backend, "mae")
    _compare("mae", {}, p, y, reduction, backend, F.l1_loss, w)


def test_torch_l1_subgradient_at_zero(backend):
    """fusedloss documents sign(0) = 0 as PyTorch's convention: check it against PyTorch itself."""
    require_support(backend, "mae")
    F = _F()
    p, y = _residual_data(16, zeros=True)
    for reduction in REDUCTIONS:
        _compare("mae", {}, p, y, reduction, backend, F.l1_loss, hessian=False)


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_huber(backend, reduction, delta):
    require_support(backend, "huber")
    F = _F()
    p, y = _residual_data(seed=2)
    _compare("huber", {"delta": delta}, p, y, reduction, backend,
             lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=delta))


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_smooth_l1(backend, reduction, beta):
    require_support(backend, "smooth_l1")
    F = _F()
    p, y = _residual_data(seed=3, zeros=beta == 0.0)
    _compare("smooth_l1", {"beta": beta}, p, y, reduction, backend,
             lambda a, b, reduction: F.smooth_l1_loss(a, b, reduction=reduction, beta=beta))


@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_poisson_nll(backend, reduction, log_input):
    require_support(backend, "poisson_nll")
    F = _F()
    rng = np.random.default_rng(4)
    y = rng.poisson(2.0, 64).astype(np.float64)
    y[:5] = 0.0
    p = rng.uniform(-2, 2, 64) if log_input else rng.uniform(0.05, 4, 64)
    if not log_input:
        p[0] = 0.0  # the rate 0: only eps keeps log finite
    _compare("poisson_nll", {"log_input": log_input}, p, y, reduction, backend,
             lambda a, b, reduction: F.poisson_nll_loss(a, b, log_input=log_input, full=False, eps=1e-8,
                                                        reduction=reduction))


def test_torch_poisson_nll_eps(backend):
    require_support(backend, "poisson_nll")
    F = _F()
    p = np.array([0.0, 0.01, 1.0])
    y = np.array([1.0, 2.0, 3.0])
    _compare("poisson_nll", {"log_input": False, "eps": 0.1}, p, y, "sum", backend,
             lambda a, b, reduction: F.poisson_nll_loss(a, b, log_input=False, full=False, eps=0.1,
                                                        reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_registry_twins(backend, reduction):
    """Every registry entry that names a torch.nn.functional twin (elementwise, default parameters, no
    special arguments) agrees with it; new losses with a ``torch_name`` are picked up here."""
    from fusedloss._spec import REGISTRY

    from conftest import full_params, make_data

    F = _F()
    checked = 0
    for name, spec in REGISTRY.items():
        if spec.kind != "elementwise" or not spec.torch_name or not hasattr(F, spec.torch_name):
            continue
        if not spec.differentiable:
            continue
        if not all(v is None or isinstance(v, (int, float)) for v in full_params(name).values()):
            continue
        from conftest import supported

        if not supported(backend, name, np.float64):
            continue
        p, y = make_data(name, {}, (40,), np.float64, seed=8, near_kinks=False)
        fn = getattr(F, spec.torch_name)
        kw = {k: v for k, v in full_params(name).items() if v is not None}
        torch_kw = dict(kw)
        if name == "poisson_nll":
            torch_kw["full"] = False
        if "label_smoothing" in torch_kw:
            continue  # torch's binary_cross_entropy_with_logits has no label smoothing
        if "pos_weight" in torch_kw:
            torch_kw.pop("pos_weight")
        # torch's double-backward formulas for the BCE family add its 1e-12 clamp in a different place:
        # second derivatives agree to ~1e-10 only
        _compare(name, {}, p, y, reduction, backend,
                 lambda a, b, reduction, fn=fn, torch_kw=torch_kw: fn(a, b, reduction=reduction, **torch_kw),
                 hess_rtol=1e-9)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("margin", [1.0, 0.5, -0.75, 2.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_hinge_embedding(backend, reduction, weighted, margin):
    """torch's masks: targets 1 and -1, and others (0, 2, -0.5: both terms, as torch computes them); points on
    the kink margin - x = 0 take torch's gradient there (-1: clamp_min passes it)."""
    require_support(backend, "hinge_embedding")
    F = _F()
    rng = np.random.default_rng(3)
    n = 60
    y = rng.choice([1.0, -1.0, 1.0, -1.0, 0.0, 2.0, -0.5], n)
    x = rng.normal(0, 2, n)
    x[:6] = margin  # on the kink, every kind of target
    y[:6] = [-1.0, -1.0, 1.0, 0.0, 2.0, -0.5]
    w = _weights(n, weighted)
    torch = _torch()
    xt = torch.tensor(x, requires_grad=True)
    per = F.hinge_embedding_loss(xt, torch.tensor(y), margin=margin, reduction="none")
    if w is not None:
        per = per * torch.tensor(w)
    denom = n if w is None else float(w.sum())
    total = per.sum() / (denom if reduction == "mean" else 1.0)
    (tg,) = torch.autograd.grad(total, xt)  # torch's gradient is piecewise constant: no graph for a second one
    want = {"none": per, "sum": per.sum(), "mean": total}[reduction].detach().numpy()
    value, grad = fl.hinge_embedding.value_and_grad(x, y, reduction=reduction, sample_weight=w, backend=backend,
                                                    margin=margin)
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, tg.numpy(), rtol=1e-12, atol=1e-14)
    _, hess = fl.hinge_embedding.grad_hess(x, y, reduction=reduction, sample_weight=w, backend=backend, margin=margin)
    np.testing.assert_array_equal(hess, 0.0)


# --- scikit-learn -----------------------------------------------------------------------------------------


def _sk():
    pytest.importorskip("sklearn")
    return pytest.importorskip("sklearn._loss.loss")


def _sk_compare(name, kw, sk_loss, p, y, w, backend, factor=1.0, unit_hessian=False):
    """fusedloss "none" (per-element w*l) and "sum" derivatives vs sklearn's loss/gradient/hessian,
    and "mean" vs sklearn's weighted average (its __call__). ``factor`` scales sklearn's loss."""
    loss = loss_fn(name)
    raw = np.ascontiguousarray(p)
    yt = np.ascontiguousarray(y)
    sk_l = sk_loss.loss(y_true=yt, raw_prediction=raw, sample_weight=w)
    sk_g, sk_h = sk_loss.gradient_hessian(y_true=yt, raw_prediction=raw, sample_weight=w)
    v = loss(p, y, reduction="none", sample_weight=w, backend=backend, **kw)
    g, h = loss.grad_hess(p, y, reduction="sum", sample_weight=w, backend=backend,
                          hessian="ones" if unit_hessian else "exact", **kw)
    np.testing.assert_allclose(v, factor * sk_l, rtol=1e-12, atol=1e-14, err_msg=f"{name} loss")
    np.testing.assert_allclose(g, factor * sk_g, rtol=1e-12, atol=1e-14, err_msg=f"{name} gradient")
    np.testing.assert_allclose(h, (1.0 if unit_hessian else factor) * sk_h, rtol=1e-12, atol=1e-14,
                               err_msg=f"{name} hessian")
    mean = loss(p, y, reduction="mean", sample_weight=w, backend=backend, **kw)
    assert mean == pytest.approx(factor * sk_loss(y_true=yt, raw_prediction=raw, sample_weight=w), rel=1e-12)


def _weights(n, weighted):
    return np.random.default_rng(7).uniform(0.1, 2.0, n) if weighted else None


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("power", [1.5, 1.2, 1.8, 0.0, -1.5, 1.0, 2.0, 3.0, 2.5])
def test_sklearn_half_tweedie(backend, power, weighted):
    """Every power scikit-learn's Tweedie distributions take (its loss() has forms of its own at 0, 1, 2)."""
    require_support(backend, "tweedie")
    sk = _sk()
    rng = np.random.default_rng(5)
    y = rng.gamma(1.0, 2.0, 50)
    if power < 2:
        y[:5] = 0.0
    if power <= 0:
        y[5:20] = -y[5:20]
    p = rng.uniform(-2, 2, 50)
    _sk_compare("tweedie", {"power": power}, sk.HalfTweedieLoss(power=power), p, y, _weights(50, weighted), backend)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("q", [0.5, 0.1, 0.9])
def test_sklearn_pinball(backend, q, weighted):
    """PinballLoss; its Hessian is 1 (fusedloss: hessian="ones"); its gradient at r = 0 is -q where ours
    is 0, so the data keep r away from 0."""
    require_support(backend, "quantile")
    sk = _sk()
    p, y = _residual_data(50, seed=6)
    _sk_compare("quantile", {"quantile": q}, sk.PinballLoss(quantile=q), p, y, _weights(50, weighted), backend,
                unit_hessian=True)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_absolute_error(backend, weighted):
    require_support(backend, "mae")
    sk = _sk()
    p, y = _residual_data(50, seed=7)
    _sk_compare("mae", {}, sk.AbsoluteError(), p, y, _weights(50, weighted), backend, unit_hessian=True)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_half_squared_error(backend, weighted):
    """mse = 2 * HalfSquaredError, in value, gradient and Hessian."""
    require_support(backend, "mse")
    sk = _sk()
    p, y = _residual_data(50, seed=8)
    _sk_compare("mse", {}, sk.HalfSquaredError(), p, y, _weights(50, weighted), backend, factor=2.0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_half_poisson(backend, weighted):
    """poisson_nll(log_input=True) is HalfPoissonLoss without its constant term (which is 0 for y in {0, 1}
    and is left out of HalfPoissonLoss.loss too)."""
    require_support(backend, "poisson_nll")
    sk = _sk()
    rng = np.random.default_rng(9)
    y = rng.poisson(2.0, 50).astype(np.float64)
    p = rng.uniform(-2, 2, 50)
    _sk_compare("poisson_nll", {}, sk.HalfPoissonLoss(), p, y, _weights(50, weighted), backend)


def test_sklearn_tweedie_constant_term_is_left_out(backend):
    """HalfTweedieLoss.loss omits y^(2-rho)/((1-rho)(2-rho)); adding sklearn's constant gives the half
    deviance, which is 0 at the optimum p = log(y): so ours at the optimum is minus that constant."""
    require_support(backend, "tweedie")
    sk = _sk()
    y = np.array([0.5, 1.0, 3.0])
    p = np.log(y)
    const = sk.HalfTweedieLoss(power=1.5).constant_to_optimal_zero(y)
    v = fl.tweedie(p, y, reduction="none", backend=backend)
    np.testing.assert_allclose(v + const, 0.0, atol=1e-14)
    assert fl.tweedie.grad(p, y, reduction="sum", backend=backend) == pytest.approx(np.zeros(3), abs=1e-14)
    assert math.isfinite(fl.tweedie(p, y, backend=backend))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_half_gamma(backend, weighted):
    """gamma is HalfGammaLoss (log link) in value, gradient and Hessian, its constant left out as there."""
    require_support(backend, "gamma")
    sk = _sk()
    rng = np.random.default_rng(10)
    y = rng.gamma(2.0, 1.5, 50)
    y[:3] = [1e-3, 0.25, 40.0]
    p = rng.uniform(-3, 3, 50)
    _sk_compare("gamma", {}, sk.HalfGammaLoss(), p, y, _weights(50, weighted), backend)


def test_sklearn_gamma_constant_term_is_left_out(backend):
    """HalfGammaLoss's constant is -log(y) - 1: with it the loss is the half deviance, 0 at the optimum
    p = log(y), where our gradient is 0 too."""
    require_support(backend, "gamma")
    sk = _sk()
    y = np.array([0.5, 1.0, 3.0, 1e3])
    p = np.log(y)
    const = sk.HalfGammaLoss().constant_to_optimal_zero(y)
    np.testing.assert_allclose(const, -np.log(y) - 1.0, rtol=1e-15)
    v = fl.gamma(p, y, reduction="none", backend=backend)
    np.testing.assert_allclose(v + const, 0.0, atol=1e-13)
    assert fl.gamma.grad(p, y, reduction="sum", backend=backend) == pytest.approx(np.zeros(4), abs=1e-14)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_exponential(backend, weighted):
    """exponential is ExponentialLoss in value, gradient and Hessian, for hard and soft targets in [0, 1]."""
    require_support(backend, "exponential")
    sk = _sk()
    rng = np.random.default_rng(11)
    y = np.where(rng.random(50) < 0.5, rng.integers(0, 2, 50), rng.random(50)).astype(np.float64)
    p = rng.uniform(-4, 4, 50)
    _sk_compare("exponential", {}, sk.ExponentialLoss(), p, y, _weights(50, weighted), backend)



@pytest.mark.parametrize("tau", [0.5, 0.2, 0.9])
def test_scipy_expectile_is_the_minimiser(backend, tau):
    """scipy.stats.expectile(y, alpha=tau) minimises the mean expectile loss: the gradient of the mean there is 0
    (so tau weighs the residuals y - p > 0, as scipy's alpha), and it is the boosting initial score."""
    require_support(backend, "expectile")
    stats = pytest.importorskip("scipy.stats")
    import fusedloss.boosting as fb

    y = np.random.default_rng(12).exponential(2.0, 200)
    e = stats.expectile(y, alpha=tau)
    g = fl.expectile.grad(np.full(200, e), y, expectile=tau, backend=backend)
    assert abs(np.sum(g)) < 1e-12 * np.mean(np.abs(y - e))
    assert fb.initial_score("expectile", y, expectile=tau) == pytest.approx(e, rel=1e-12)
    other = stats.expectile(y, alpha=1.0 - tau) if tau != 0.5 else y.mean() + 0.1  # the other side is not
    assert abs(np.sum(fl.expectile.grad(np.full(200, other), y, expectile=tau, backend=backend))) > 1e-3


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_mean_squared_log_error(backend, weighted):
    """msle's mean is sklearn.metrics.mean_squared_log_error (its sample_weight too), including p and y in (-1, 0)
    and ties, and twice squared_log; both refuse a value at -1."""
    require_support(backend, "msle")
    pytest.importorskip("sklearn")
    from sklearn.metrics import mean_squared_log_error

    rng = np.random.default_rng(13)
    y = rng.exponential(2.0, 80) - 0.5
    p = rng.uniform(-0.99, 6.0, 80)
    p[:3] = y[:3]
    w = _weights(80, weighted)
    want = mean_squared_log_error(y, p, sample_weight=w)
    assert fl.msle(p, y, sample_weight=w, backend=backend) == pytest.approx(want, rel=1e-13)
    assert fl.msle(p, y, reduction="sum", backend=backend) == pytest.approx(
        2 * fl.squared_log(p, y, reduction="sum", backend=backend), rel=1e-14)
    bad = y.copy()
    bad[5] = -1.0
    with pytest.raises(ValueError, match="-1"):
        mean_squared_log_error(bad, p)
    with pytest.raises(ValueError, match="> -1"):
        fl.msle(p, bad, backend=backend)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_mean_absolute_percentage_error(backend, weighted):
    """mape's mean is sklearn.metrics.mean_absolute_percentage_error: a fraction, not times 100, over
    max(|y|, float64 eps); y = 0 is divided by that eps, as there. Another epsilon gives another number."""
    require_support(backend, "mape")
    pytest.importorskip("sklearn")
    from sklearn.metrics import mean_absolute_percentage_error

    rng = np.random.default_rng(14)
    y = rng.normal(0, 3.0, 80)
    y[:3] = [0.0, 1e-20, -1e-17]
    p = y + rng.normal(0, 1.0, 80)
    p[5:8] = y[5:8]
    w = _weights(80, weighted)
    want = mean_absolute_percentage_error(y, p, sample_weight=w)
    assert fl.mape(p, y, sample_weight=w, backend=backend) == pytest.approx(want, rel=1e-13)
    keep = slice(3, None)  # without the targets below 1e-7, Keras's floor: 100 times its value is Keras's
    keras = 100 * np.mean(np.abs(y[keep] - p[keep]) / np.maximum(np.abs(y[keep]), 1e-7))
    assert 100 * fl.mape(p[keep], y[keep], epsilon=1e-7, backend=backend) == pytest.approx(keras, rel=1e-13)
    assert fl.mape(p, y, epsilon=1e-7, backend=backend) < 1e-3 * want


def _sk_tweedie_identity_terms(p, y, power):
    """The size of the terms scikit-learn's HalfTweedieLossIdentity.loss adds: its rounding error is a few ulp of
    it (its terms cancel next to p = y, where fusedloss's series form does not)."""
    if power == 0:
        return 1.0 + (p - y) ** 2
    if power in (1.0, 2.0):
        with np.errstate(divide="ignore"):
            lg = np.where(y > 0, np.abs(np.log(np.where(y > 0, y, 1.0) / p)), 0.0)
        return 1.0 + p + np.abs(y) * (1 + lg) + (1 + np.abs(y) / p) * (power == 2.0) + lg
    k = 2.0 - power
    terms = p**k / abs(k) + np.abs(y) * p ** (k - 1) / abs(k - 1) + np.maximum(y, 0) ** k / abs(k * (k - 1))
    return 1.0 + terms


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("power", [1.5, 0.0, 1.0, 2.0, 3.0, 0.5, 1.2, -1.5, 2.5])
def test_sklearn_half_tweedie_identity(backend, power, weighted):
    """HalfTweedieLossIdentity (the prediction is the mean, > 0 but at power 0) in value (its y-only term
    included: 0 at p = y), gradient and Hessian, at every kind of power it takes (forms of its own at 0, 1, 2;
    Hessians negative somewhere for power > 1 and < 0). The values agree within scikit-learn's own rounding of
    its three terms (``_sk_tweedie_identity_terms``); gradient and Hessian to 1e-12."""
    require_support(backend, "tweedie_identity")
    sk = _sk()
    rng = np.random.default_rng(11)
    n = 60
    y = rng.gamma(1.0, 2.0, n) + (0.01 if power >= 2 else 0.0)
    if power < 2:
        y[:5] = 0.0
    if power <= 0:
        y[5:20] = -y[5:20]
    p = rng.uniform(0.1, 4.0, n) if power != 0 else rng.uniform(-3.0, 3.0, n)
    p[20:23] = y[20:23]  # the minimum, 0
    w = _weights(n, weighted)
    loss = sk.HalfTweedieLossIdentity(power=power)
    assert loss.in_y_true_range(y) and loss.in_y_pred_range(p)
    kw = {"power": power}
    sk_l = loss.loss(y_true=y, raw_prediction=p, sample_weight=w)
    sk_g, sk_h = loss.gradient_hessian(y_true=y, raw_prediction=p, sample_weight=w)
    v = fl.tweedie_identity(p, y, reduction="none", sample_weight=w, backend=backend, **kw)
    g, h = fl.tweedie_identity.grad_hess(p, y, reduction="sum", sample_weight=w, backend=backend, **kw)
    scale = _sk_tweedie_identity_terms(p, y, power) * (1.0 if w is None else w)
    assert np.all(np.abs(v - sk_l) <= 1e-13 * scale), np.max(np.abs(v - sk_l) / scale)
    np.testing.assert_array_equal(v[20:23], 0.0)
    np.testing.assert_allclose(g, sk_g, rtol=1e-12, atol=1e-14, err_msg="gradient")
    np.testing.assert_allclose(h, sk_h, rtol=1e-12, atol=1e-14, err_msg="hessian")
    mean = fl.tweedie_identity(p, y, reduction="mean", sample_weight=w, backend=backend, **kw)
    assert mean == pytest.approx(loss(y_true=y, raw_prediction=p, sample_weight=w), rel=1e-12)


@pytest.mark.parametrize("power", [1.5, 1.0, 2.0, 3.0, -1.0, 0.5])
def test_sklearn_tweedie_identity_prediction_domain(backend, power):
    """scikit-learn's prediction interval (0, inf) for power != 0, refused here with a clear error; any real at
    power 0. Next to the minimum its three terms cancel: ours stay exact (p^k u^2/2 and up, u = log(y/p))."""
    require_support(backend, "tweedie_identity")
    sk = _sk()
    loss = sk.HalfTweedieLossIdentity(power=power)
    for bad in (0.0, -1.0):
        assert not loss.in_y_pred_range(np.array([bad]))
        with pytest.raises(ValueError, match=rf"tweedie_identity: pred must be > 0, got {bad}"):
            fl.tweedie_identity(np.array([1.0, bad]), np.array([1.0, 1.0]), power=power, backend=backend)
    assert sk.HalfTweedieLossIdentity(power=0.0).in_y_pred_range(np.array([-1.0, 0.0]))
    assert fl.tweedie_identity(np.array([-1.0, 0.0]), np.array([1.0, -2.0]), power=0.0, reduction="sum",
                               backend=backend) == 4.0
    y = np.array([3.0])
    p = y * (1 + 2.0**-30)
    k = 2.0 - power
    exact = p**k * math.log(p[0] / y[0]) ** 2 / 2  # the leading term: the next is 1e-9 of it
    got = fl.tweedie_identity(p, y, power=power, reduction="none", backend=backend)
    np.testing.assert_allclose(got, exact, rtol=1e-8)
