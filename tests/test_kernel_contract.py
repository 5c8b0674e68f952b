"""The cpp kernels' output combinations: every combination of value_out, reduce, grad_out and hess_out the
kernel contract allows gives the outputs (and the reduced value) of the one-pass calls the dispatcher makes,
bit for bit; combinations computed in several passes refuse an output that is an input array."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fusedloss as fl

from conftest import backend_skip_reason

pytestmark = pytest.mark.skipif(backend_skip_reason("cpp") is not None, reason=str(backend_skip_reason("cpp")))


def _core():
    from fusedloss import _core

    return _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss, params", [("huber", (0.7,)), ("binary_cross_entropy_with_logits", (2.0, 0.1)),
                                          ("log_cosh", ())])
def test_every_output_combination_matches_the_one_pass_calls(loss, params, dtype, weighted):
    core = _core()
    rng = np.random.default_rng(0)
    n = 70_001
    p = rng.standard_normal(n).astype(dtype)
    y = (rng.random(n) if "binary" in loss else rng.standard_normal(n)).astype(dtype)
    w = rng.random(n).astype(dtype) if weighted else None
    scale = 1.0 / n

    def call(V, R, G, H):
        outs = [np.full(n, np.nan, dtype) if flag else None for flag in (V, G, H)]
        total = core.elementwise(loss, params, p, y, w, scale, R, *outs, 2)
        return total, outs

    want_total, _ = call(False, True, False, False)
    _, (want_v, _, _) = call(True, False, False, False)
    _, (_, want_g, want_h) = call(False, False, True, True)
    for V, R, G, H in itertools.product([False, True], repeat=4):
        total, (v, g, h) = call(V, R, G, H)
        assert total == (want_total if R else 0.0), (V, R, G, H)
        for got, want in ((v, want_v), (g, want_g), (h, want_h)):
            if got is not None:
                np.testing.assert_array_equal(got, want, err_msg=str((V, R, G, H)))


def test_several_passes_refuse_an_input_as_output():
    core = _core()
    p = np.linspace(-2, 2, 10)
    y = np.zeros(10)
    v = np.empty(10)
    with pytest.raises(ValueError, match="grad_out is an input array, which this combination of outputs"):
        core.elementwise("mse", (), p, y, None, 1.0, True, v, p, None, 1)  # value + reduce + grad over p
    # one pass: in place is fine
    g = p.copy()
    total = core.elementwise("mse", (), g, y, None, 1.0, True, None, g, None, 1)
    assert total == pytest.approx(float(np.sum(p**2)))
    np.testing.assert_array_equal(g, 2 * p)


def test_weight_total_is_the_compiled_compensated_sum():
    """A weighted mean divides by the compiled compensated sum of the weights, within 2 ulp of the exact sum, where
    NumPy's pairwise sum is off by more: each block of it adds the 127 tiny weights after a 1.0 into running sums
    of which one holds the 1.0 and loses its share of them."""
    from fusedloss import _validate

    w = np.tile(np.r_[1.0, np.full(127, 1e-16)], 1000)
    exact = math.fsum(w)
    assert abs(float(np.sum(w)) - exact) > 2 * np.spacing(exact)  # the case shows the difference
    assert abs(_validate._weight_sum(w) - exact) <= 2 * np.spacing(exact)
    assert _validate._weight_sum(w) == _core().sum(w, 1) == _core().sum(w, 2)
    for dtype in (np.float32, np.float64):  # the divisor "mean" uses
        p = np.linspace(-1, 1, w.size).astype(dtype)
        got = fl.mse(p, np.zeros_like(p), sample_weight=w.astype(dtype), backend="cpp")
        total = _core().sum(w.astype(dtype), 1)
        want = _core().elementwise("mse", (), p, np.zeros_like(p), w.astype(dtype), 1.0, True, None, None, None, 1)
        assert got == pytest.approx(want / total, rel=1e-15)


def test_compensated_sum_overflows_to_inf():
    """The weights' sum (the divisor of a weighted mean) that overflows is inf, however many lanes overflow;
    nan only from a nan or inf - inf."""
    total = _core().sum
    assert total(np.full(1000, 1e308), 2) == np.inf
    assert total(np.full(1000, -1e308), 1) == -np.inf
    assert np.isnan(total(np.r_[np.full(100, 1e308), np.nan], 2))
    assert np.isnan(total(np.r_[np.full(100, 1e308), np.full(100, -np.inf)], 1))
    assert total(np.full(1000, 0.1), 2) == np.sum(np.full(1000, 0.1, dtype=np.longdouble)).astype(np.float64)
