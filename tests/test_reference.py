"""The NumPy reference checked by calculus and by float64 math it does not use.

- gradients against central finite differences of the value, Hessians against central finite differences
  of the gradient, in float64, away from branch cut-offs;
- the reduced reference (``reduce_elementwise``): its gradient is the derivative of its reduced value,
  including the 1/N or 1/sum(w) of "mean" and leading-axis broadcast weights;
- the cancellation-prone forms (log_cosh and pseudo_huber at small residuals, both at huge ones) against
  series and closed forms summed with ``math.fsum``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import broadcast_weight, full_params, loss_cases, make_data, make_weight


ELEMENTWISE = ("elementwise",)  # this file's subject: the elementwise reference, its derivatives and its forms


def _fd(f, x, h):
    """Central difference of an elementwise function, step h (an array)."""
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name,params", loss_cases(kinds=ELEMENTWISE))
def test_gradient_and_hessian_match_finite_differences(name, params):
    if not REGISTRY[name].differentiable:
        pytest.skip(f"{name} is not differentiable")
    kw = full_params(name, params)
    p, y = make_data(name, params, (400,), np.float64, seed=11, near_kinks=False)
    value, grad, hess = _reference.elementwise(name, p, y, **kw)
    h = 1e-6 * np.maximum(1.0, np.abs(p))
    if REGISTRY[name].pred_domain_for(kw) == "nonnegative":
        assert p.min() > 10 * h.max()  # the stencil stays inside the domain
    fd_grad = _fd(lambda x: _reference.elementwise(name, x, y, **kw)[0], p, h)
    fd_hess = _fd(lambda x: _reference.elementwise(name, x, y, **kw)[1], p, h)
    # error of a central difference: O(h^2 f''') + O(eps |f| / h)
    scale_g = 1.0 + np.abs(value) + np.abs(grad)
    scale_h = 1.0 + np.abs(grad) + np.abs(hess)
    np.testing.assert_array_less(np.abs(fd_grad - grad), 1e-6 * scale_g, err_msg=f"{name}{params}: gradient")
    np.testing.assert_array_less(np.abs(fd_hess - hess), 1e-6 * scale_h, err_msg=f"{name}{params}: Hessian")
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighting", ["unweighted", "full", "leading"])
@pytest.mark.parametrize("name,params", loss_cases(variants=False, kinds=ELEMENTWISE))
def test_reduced_gradient_is_derivative_of_reduced_value(name, params, weighting, reduction):
    """Perturb one element at a time: the reduced value moves by (its grad entry) * step."""
    if not REGISTRY[name].differentiable:
        pytest.skip(f"{name} is not differentiable")
    kw = full_params(name, params)
    shape = (3, 4)
    p, y = make_data(name, params, shape, np.float64, seed=5, near_kinks=False)
    w = make_weight(weighting, shape, np.float64, seed=6)
    value, grad, hess = _reference.reduce_elementwise(name, p, y, reduction=reduction, sample_weight=w, **kw)
    assert isinstance(value, float)
    fd_g = np.empty(shape)
    fd_h = np.empty(shape)
    for i in np.ndindex(shape):
        step = 1e-6 * max(1.0, abs(p[i]))
        e = np.zeros(shape)
        e[i] = step
        vp = _reference.reduce_elementwise(name, p + e, y, reduction=reduction, sample_weight=w, **kw)
        vm = _reference.reduce_elementwise(name, p - e, y, reduction=reduction, sample_weight=w, **kw)
        fd_g[i] = (vp[0] - vm[0]) / (2 * step)
        fd_h[i] = (vp[1][i] - vm[1][i]) / (2 * step)
    np.testing.assert_allclose(fd_g, grad, rtol=1e-5, atol=1e-6 * (1 + abs(value)))
    np.testing.assert_allclose(fd_h, hess, rtol=1e-5, atol=1e-6 * (1 + np.abs(grad).max()))

    # and the reduced numbers in closed form from the elementwise ones
    l, g, h = _reference.elementwise(name, p, y, **kw)
    wb = broadcast_weight(w, shape)
    total = math.fsum((wb * l).ravel())
    denom = math.fsum(wb.ravel()) if reduction == "mean" else 1.0
    assert value == pytest.approx(total / denom, rel=1e-13)
    np.testing.assert_allclose(grad, wb * g / denom, rtol=1e-14)
    np.testing.assert_allclose(hess, wb * h / denom, rtol=1e-14)


@pytest.mark.parametrize("name,params", loss_cases(variants=False, kinds=ELEMENTWISE))
def test_reduction_none_is_weighted_elementwise(name, params):
    kw = full_params(name, params)
    p, y = make_data(name, params, (4, 5), np.float64, seed=2)
    w = make_weight("leading", (4, 5), np.float64)
    l, g, h = _reference.elementwise(name, p, y, **kw)
    v2, g2, h2 = _reference.reduce_elementwise(name, p, y, reduction="none", sample_weight=w, **kw)
    wb = broadcast_weight(w, p.shape)
    np.testing.assert_array_equal(v2, wb * l)
    np.testing.assert_array_equal(g2, wb * g)
    np.testing.assert_array_equal(h2, wb * h)


# --- cancellation-prone forms against float64 math the reference does not use ------------------------


def _log_cosh_series(d):
    """log cosh d = d^2/2 - d^4/12 + d^6/45 - 17 d^8/2520 + 31 d^10/14175 - ..., for |d| <= 1e-2."""
    d2 = d * d
    return math.fsum([d2 / 2, -d2 * d2 / 12, d2**3 / 45, -17 * d2**4 / 2520, 31 * d2**5 / 14175])


@pytest.mark.parametrize("d", [1e-300, 1e-150, 1e-20, 1e-9, -3e-8, 1e-5, -2.5e-4, 1e-3, 7e-3])
def test_log_cosh_small_residual_is_accurate(d):
    value, grad, hess = _reference.elementwise("log_cosh", np.array([d]), np.array([0.0]))
    expected = _log_cosh_series(d)
    assert value[0] == pytest.approx(expected, rel=1e-14, abs=0.0), "log(cosh(d)) = log(1 + tiny) cancels"
    assert grad[0] == pytest.approx(math.fsum([d, -d**3 / 3, 2 * d**5 / 15, -17 * d**7 / 315]), rel=1e-14, abs=0.0)
    assert hess[0] == pytest.approx(math.fsum([1, -d * d, 2 * d**4 / 3, -17 * d**6 / 45]), rel=1e-14)


@pytest.mark.parametrize("d", [0.05, 0.3, 0.5, 0.9, 0.999999, 1.0, 1.000001, 1.5, 3.0, 10.0, 40.0])
def test_log_cosh_moderate_residual_and_branch_continuity(d):
    """Against log(cosh d) (accurate here: cosh d is not near 1 and not near overflow), on both sides of
    the reference's switch of form at |d| = 1."""
    for s in (1.0, -1.0):
        value = _reference.elementwise("log_cosh", np.array([s * d]), np.array([0.0]))[0][0]
        c = math.cosh(d)
        # log(cosh d) with cosh d = 1 + u computed as log1p(u) when u is small
        expected = math.log1p(math.fsum([math.exp(d) / 2, math.exp(-d) / 2, -1.0])) if d < 1 else math.log(c)
        assert value == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("d", [700.0, 1e4, 1e30, 1e300, 1.7e308])
def test_log_cosh_large_residual_is_finite(d):
    for s in (1.0, -1.0):
        value, grad, hess = _reference.elementwise("log_cosh", np.array([s * d]), np.array([0.0]))
        assert np.isfinite(value[0]) and value[0] == pytest.approx(d - math.log(2.0), rel=1e-15)
        assert grad[0] == s and hess[0] == 0.0


def _pseudo_huber_series(r, delta):
    """delta^2 (sqrt(1 + r^2) - 1) = delta^2 (r^2/2 - r^4/8 + r^6/16 - 5 r^8/128 + 7 r^10/256), |r| <= 1e-2."""
    r2 = r * r
    return delta * delta * math.fsum([r2 / 2, -r2 * r2 / 8, r2**3 / 16, -5 * r2**4 / 128, 7 * r2**5 / 256])


@pytest.mark.parametrize("delta", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("r", [1e-200, 1e-12, 1e-9, -1e-7, 1e-5, 1e-3, -8e-3])
def test_pseudo_huber_small_residual_is_accurate(r, delta):
    d = r * delta
    value, grad, hess = _reference.elementwise("pseudo_huber", np.array([d]), np.array([0.0]), delta=delta)
    assert value[0] == pytest.approx(_pseudo_huber_series(r, delta), rel=1e-14, abs=0.0), "sqrt(1+r^2)-1 cancels"
    # d / s = d (1 + r^2)^(-1/2) and 1 / s^3 = (1 + r^2)^(-3/2), binomial series
    r2 = r * r
    assert grad[0] == pytest.approx(d * math.fsum([1, -r2 / 2, 3 * r2**2 / 8, -5 * r2**3 / 16]), rel=1e-14, abs=0.0)
    assert hess[0] == pytest.approx(math.fsum([1, -1.5 * r2, 15 * r2**2 / 8, -35 * r2**3 / 16]), rel=1e-14)


@pytest.mark.parametrize("delta", [1.0, 2.0])
@pytest.mark.parametrize("r", [3.0, 1e3, 1e100, 1e200, 1e300])
def test_pseudo_huber_large_residual_does_not_overflow(r, delta):
    d = r * delta
    value, grad, hess = _reference.elementwise("pseudo_huber", np.array([d]), np.array([0.0]), delta=delta)
    # s = sqrt(1 + r^2) = r sqrt(1 + 1/r^2); value = delta^2 (s - 1), gradient d/s = delta / sqrt(1 + 1/r^2)
    s_over_r = math.sqrt(1 + 1 / (r * r))
    expected = delta * delta * (r * s_over_r - 1)
    assert np.isfinite(value[0]) and value[0] == pytest.approx(expected, rel=1e-14)
    assert grad[0] == pytest.approx(delta / s_over_r, rel=1e-15)
    assert hess[0] == pytest.approx((1 / (r * s_over_r)) ** 3, rel=1e-14, abs=1e-320)


def test_reference_propagates_nan_without_warnings():
    """A NaN prediction gives a NaN value (and gradient, for differentiable losses); so does a NaN target,
    except for class-sign targets, which the spec maps through y > 0 (NaN counts as the negative class)."""
    for name, spec in REGISTRY.items():
        if spec.kind != "elementwise":
            continue
        kw = full_params(name)
        p = np.array([np.nan, 0.5])
        y = np.array([1.0, np.nan])
        with np.errstate(all="raise"):
            value, grad, hess = _reference.elementwise(name, p, y, **kw)
        check = [0] if spec.target_domain == "sign" else [0, 1]
        assert np.isnan(value[check]).all(), name
        if spec.differentiable:
            assert np.isnan(grad[check]).all(), name
