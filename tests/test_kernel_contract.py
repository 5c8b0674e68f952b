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


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [1, 37, 70_001])
@pytest.mark.parametrize("loss, params", [("huber", (0.7,)), ("binary_cross_entropy_with_logits", (2.0, 0.1)),
                                          ("poisson_nll", (1.0, 1e-8))])
def test_float32_outputs_of_a_float64_call_are_its_outputs_rounded(loss, params, n, weighted):
    """Outputs given as float32 for float64 arrays (what a LightGBM objective returns) hold the float64 outputs
    rounded to nearest, as NumPy's astype rounds them, for every output combination; the reduced value is the
    float64 call's, to the bit."""
    core = _core()
    rng = np.random.default_rng(5)
    p = rng.standard_normal(n) * 30  # some derivatives beyond float32's range or below its normal numbers
    y = rng.random(n) if "binary" in loss else rng.poisson(2.0, n).astype(np.float64)
    w = rng.random(n) if weighted else None
    for V, R, G, H in itertools.product([False, True], repeat=4):
        if not (V or G or H):
            continue
        wide = [np.full(n, np.nan) if flag else None for flag in (V, G, H)]
        narrow = [np.full(n, np.nan, np.float32) if flag else None for flag in (V, G, H)]
        want = core.elementwise(loss, params, p, y, w, 1.0 / n, R, *wide, 2)
        with np.errstate(over="ignore"):  # astype warns where a value rounds to inf; the kernel stores inf
            rounded = [None if a is None else a.astype(np.float32) for a in wide]
        assert core.elementwise(loss, params, p, y, w, 1.0 / n, R, *narrow, 2) == want
        for got, exp in zip(narrow, rounded):
            if got is not None:
                np.testing.assert_array_equal(got, exp, err_msg=str((V, R, G, H)))


def test_float32_outputs_stream_and_take_column_parameters():
    """The rounded outputs of a call large enough for streaming stores, of a misaligned output, and of a loss
    with a parameter per column are the float64 outputs rounded."""
    core = _core()
    rng = np.random.default_rng(6)
    n = (16 << 20) // 8 + 1001  # two float32 outputs of 16 MiB and more: streamed
    p, y = rng.standard_normal(n), rng.random(n)
    g64, h64 = np.empty(n), np.empty(n)
    core.elementwise("binary_cross_entropy_with_logits", (1.0, 0.0), p, y, None, 1.0, False, None, g64, h64, 2)
    g32, h32 = np.empty(n, np.float32), np.empty(n, np.float32)
    core.elementwise("binary_cross_entropy_with_logits", (1.0, 0.0), p, y, None, 1.0, False, None, g32, h32, 2)
    np.testing.assert_array_equal(g32, g64.astype(np.float32))
    np.testing.assert_array_equal(h32, h64.astype(np.float32))
    m = 3 * 1000
    cols = np.array([0.5, 1.0, 3.0])
    buf = np.zeros(4 * m + 2, np.uint8)
    odd = buf[1:1 + 4 * m].view(np.float32)  # an address that is not a multiple of 4
    core.elementwise("binary_cross_entropy_with_logits", (1.0, 0.0), p[:m], y[:m], None, 1.0, False, None, g64[:m],
                     None, 1, cols)
    core.elementwise("binary_cross_entropy_with_logits", (1.0, 0.0), p[:m], y[:m], None, 1.0, False, None, odd,
                     None, 1, cols)
    np.testing.assert_array_equal(odd, g64[:m].astype(np.float32))


def test_float32_outputs_are_refused_where_they_do_not_apply():
    core = _core()
    p64, y64 = np.linspace(-1, 1, 8), np.zeros(8)
    p32, y32 = p64.astype(np.float32), y64.astype(np.float32)
    with pytest.raises(TypeError, match="hess_out must be .* float32 .*all float64 or all float32.*float64"):
        core.elementwise("mse", (), p64, y64, None, 1.0, False, None, np.empty(8, np.float32), np.empty(8), 1)
    with pytest.raises(TypeError, match="grad_out must be .* float32 .*dtype of p.*float64"):
        core.elementwise("mse", (), p32, y32, None, 1.0, False, None, np.empty(8), None, 1)
    with pytest.raises(ValueError, match="grad_out must have length 8"):
        core.elementwise("mse", (), p64, y64, None, 1.0, False, None, np.empty(7, np.float32), None, 1)
    with pytest.raises(ValueError, match="grad_out partly overlaps an input"):
        core.elementwise("mse", (), p64, y64, None, 1.0, False, None, p64.view(np.float32)[:8], None, 1)
    # the public API keeps one dtype: a float32 output of float64 predictions is refused there
    with pytest.raises(TypeError, match="grad_out must have the dtype of pred, float64, got float32"):
        fl.mse.grad(p64, y64, grad_out=np.empty(8, np.float32))
