"""general_robust (Barron 2019): its named special cases are the losses they name, and its removable
singularities at alpha = 0 and alpha = 2 are continuous down to the last bit of alpha, on every backend.

The mpmath sweep (test_extremes, EXTRA_VARIANTS) checks alpha next to 0 and 2, large |alpha| and inf at
|d| up to 1e30 against the formula at 60 digits; these tests pin what the limits are.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl

from conftest import require_support


def _data():
    rng = np.random.default_rng(21)
    y = rng.normal(0, 2.0, 64)
    d = rng.standard_t(2, 64) * 3.0
    d[:4] = [0.0, 1e-8, -1e-8, 2.5]
    p = y + d
    return p, y, p - y


def _all(backend, p, y, loss=fl.general_robust, **kw):
    v = loss(p, y, reduction="none", backend=backend, **kw)
    g, h = loss.grad_hess(p, y, reduction="none", backend=backend, **kw)
    return v, g, h


@pytest.mark.parametrize("c", [1.0, 0.3, 4.0])
def test_special_cases_are_the_losses_they_name(backend, c):
    for name in ("general_robust", "mse", "pseudo_huber", "cauchy"):
        require_support(backend, name)
    """alpha = 2: mse / (2 c^2); 1: pseudo_huber(delta=c) / c^2; 0: cauchy(c=sqrt(2) c) / c^2; -2: Geman-McClure
    2 z / (z + 4); -inf: Welsch 1 - exp(-z/2), z = (d/c)^2."""
    require_support(backend, "general_robust")
    p, y, d = _data()
    z = (d / c) ** 2
    for alpha, (wv, wg, wh) in (
        (2.0, tuple(o / (2 * c * c) for o in _all(backend, p, y, loss=fl.mse))),
        (1.0, tuple(o / (c * c) for o in _all(backend, p, y, loss=fl.pseudo_huber, delta=c))),
        (0.0, tuple(o / (c * c) for o in _all(backend, p, y, loss=fl.cauchy, c=math.sqrt(2) * c))),
        (-2.0, (2 * z / (z + 4), 16 * d / c**2 / (z + 4) ** 2, 16 * (4 - 3 * z) / c**2 / (z + 4) ** 3)),
        (-math.inf, (-np.expm1(-z / 2), d / c**2 * np.exp(-z / 2), (1 - z) * np.exp(-z / 2) / c**2)),
    ):
        v, g, h = _all(backend, p, y, alpha=alpha, c=c)
        for what, got, want in (("value", v, wv), ("grad", g, wg), ("hess", h, wh)):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300, err_msg=f"alpha={alpha} {what}")


@pytest.mark.parametrize("limit", [0.0, 2.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_removable_singularities_are_continuous(backend, limit, dtype):
    """Approaching alpha = 0 and alpha = 2 from both sides, down to the float64 neighbours of the limit, value,
    gradient and Hessian converge to the limit's own (no nan, no 0/0, no loss of digits): the distance shrinks
    with |alpha - limit|, and at the last bits it is rounding."""
    require_support(backend, "general_robust", dtype)
    p, y, _ = _data()
    p, y = p.astype(dtype), y.astype(dtype)
    at = _all(backend, p, y, alpha=limit)
    eps = float(np.finfo(dtype).eps)
    scale = [np.maximum(np.abs(o).astype(np.float64), 1.0) for o in at]
    previous = None
    steps = [2.0**-k for k in (4, 10, 20, 30, 40)] + ([2.0**-1074, 2.0**-52] if limit == 0 else [2.0**-52, 2.0**-51])
    for h in steps:
        for side in (1.0, -1.0):
            alpha = limit + side * h
            if alpha == limit:
                continue
            got = _all(backend, p, y, alpha=alpha)
            for k, what in enumerate(("value", "grad", "hess")):
                dist = np.abs(got[k].astype(np.float64) - at[k]) / scale[k]
                assert np.all(np.isfinite(got[k])), (alpha, what)
                # the exact distance is O(h) times a factor of log(1 + z) size (|d| / c up to about 200 here)
                assert np.max(dist) <= 100 * h + 16 * eps, (alpha, what, float(np.max(dist)))
        if h == 2.0**-4:
            previous = np.max(np.abs(got[0].astype(np.float64) - at[0]) / scale[0])
    assert previous > 1e-4  # alpha does make a difference: the comparison can fail


def test_alpha_is_checked():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="alpha"):
        fl.general_robust(p, p, alpha=math.nan)
    with pytest.raises(ValueError, match="c"):
        fl.general_robust(p, p, c=0.0)
    assert fl.general_robust(p, p + 1, alpha=math.inf) == pytest.approx(math.expm1(0.5))
