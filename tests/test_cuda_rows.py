"""The block-per-row cross-entropy kernel of the Numba-CUDA backend, against the NumPy reference.

Runs on a GPU, or on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda``), which runs each
CUDA thread as a Python thread: sizes are small, but cover C = 1, C = 2, C below a warp, C not a multiple of the
block size, and a C larger than the block (4099, each thread striding over 17 logits), every option, sample
weights, and bitwise-equal results run to run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference

from conftest import assert_close, backend_skip_reason, full_params, make_multiclass_data

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

CE = "cross_entropy"
# (rows, C): C = 1, 2, across a warp, several strides of the block
SHAPES = [(3, 1), (3, 2), (2, 37), (2, 300), (2, 4099)]
EVERY_OPTION_SHAPES = [(3, 1), (2, 37)]  # the shapes that run every option (simulator time)
OPTIONS = {
    "plain": {},
    "class_weight": {"class_weight": "vector"},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 3.0},
    "confidence_penalty": {"confidence_penalty": 0.3},
    "all": {"class_weight": "vector", "label_smoothing": 0.2, "z_loss": 1e-3, "softcap": 4.0, "ignore_index": -1,
            "confidence_penalty": 0.2},
}


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _params(options, C):
    p = dict(options)
    if p.get("class_weight") == "vector":
        p["class_weight"] = np.linspace(0.5, 2.0, C)
    return p


def _run(x, t, params, sample_weight, dtype, with_sum=False):
    """(sum or None, rows' values, mean gradient, mean Hessian) on the device, as host arrays."""
    loss = fl.cross_entropy
    dx, dt = _dev(x), _dev(t)
    sw = None if sample_weight is None else _dev(sample_weight)
    total = loss(dx, dt, reduction="sum", sample_weight=sw, backend="cuda", **params) if with_sum else None
    rows = loss(dx, dt, reduction="none", sample_weight=sw, backend="cuda", **params).copy_to_host()
    g, h = loss.grad_hess(dx, dt, reduction="mean", sample_weight=sw, backend="cuda", **params)
    return total, rows, g.copy_to_host(), h.copy_to_host()


def _check(x, t, params, sample_weight, dtype, what, with_sum=False):
    kw = full_params(CE, params)
    got = _run(x, t, params, sample_weight, dtype, with_sum)
    ref_total, _, _ = _reference.reduce_multiclass(CE, x, t, reduction="sum", sample_weight=sample_weight, **kw)
    ref_rows, _, _ = _reference.reduce_multiclass(CE, x, t, reduction="none", sample_weight=sample_weight, **kw)
    _, ref_g, ref_h = _reference.reduce_multiclass(CE, x, t, reduction="mean", sample_weight=sample_weight, **kw)
    total, rows, g, h = got
    mag = np.abs(x).max() + 1.0
    if with_sum:
        assert_close(total, ref_total, dtype, mag * x.shape[0], f"{what} sum")
    assert_close(rows, ref_rows, dtype, mag, f"{what} none")
    assert g.dtype == dtype and g.shape == x.shape
    assert_close(g, ref_g, dtype, 1.0, f"{what} grad")
    assert_close(h, ref_h, dtype, 1.0, f"{what} hess")
    return got


def _hard(option, shape, dtype):
    R, C = shape
    params = _params(OPTIONS[option], C)
    x, t = make_multiclass_data(CE, {}, (R,), dtype, "hard", seed=C, n_classes=C)
    if "ignore_index" in params:
        t[t == -100] = params["ignore_index"]
        if R > 1:
            t[0] = params["ignore_index"]  # an ignored row (not all: "mean" over no row is 0 / 0)
    return x, t, params, np.linspace(0.5, 1.5, R)


# every option at the small shapes; plain and all options at the others; float32 with all options
HARD_CASES = ([(option, shape, np.float64) for option in OPTIONS for shape in EVERY_OPTION_SHAPES]
              + [("plain", (3, 2), np.float64), ("all", (3, 2), np.float64), ("plain", (2, 300), np.float64),
                 ("all", (2, 4099), np.float64)]
              + [("all", shape, np.float32) for shape in SHAPES[:4]])


@pytest.mark.parametrize("option, shape, dtype", HARD_CASES,
                         ids=[f"{o}-{s[0]}x{s[1]}-{np.dtype(d)}" for o, s, d in HARD_CASES])
def test_block_rows_match_reference_hard_labels(option, shape, dtype, small_blocks):
    x, t, params, sw = _hard(option, shape, dtype)
    _check(x, t, params, sw, dtype, f"{option} {shape}")


def test_block_rows_reduced_sum(small_blocks):
    option = "all"
    x, t, params, sw = _hard(option, (3, 37), np.float64)
    _check(x, t, params, sw, np.float64, f"sum {option}", with_sum=True)


@pytest.mark.parametrize("shape", [(1, 300)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_block_rows_full_block_and_reproducible(shape, monkeypatch):
    """The full block size (256 threads a row: a thread per logit), all options; a second run gives the same
    bits."""
    from fusedloss.backends import _cuda_rows
    from fusedloss.backends._cuda_rows import TPB, _row_launch

    monkeypatch.setattr(_cuda_rows, "ROW_ELEMS", 1)
    assert _row_launch(*shape)[1:] == (TPB, TPB)
    x, t, params, sw = _hard("all", shape, np.float32)
    got = _check(x, t, params, sw, np.float32, f"full block {shape}", with_sum=True)
    again = _run(x, t, params, sw, np.float32, with_sum=True)
    assert got[0] == again[0]
    for a, b in zip(got[1:], again[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(3, 2), (2, 37)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("option", ["plain", "all"])
def test_block_rows_match_reference_soft_targets(option, shape, small_blocks):
    R, C = shape
    params = _params(OPTIONS[option], C)
    params.pop("ignore_index", None)
    x, q = make_multiclass_data(CE, {}, (R,), np.float64, "soft", seed=C, n_classes=C)
    _check(x, q, params, None, np.float64, f"soft {option} {shape}")


def test_block_rows_many_rows_grid_stride(monkeypatch, small_blocks):
    """More rows than blocks: each block strides over several rows (and sums their values)."""
    from fusedloss.backends import _cuda_rows

    monkeypatch.setattr(_cuda_rows, "MAX_ROW_BLOCKS", 3)
    x, t = make_multiclass_data(CE, {}, (10,), np.float64, "hard", seed=5, n_classes=5)
    _check(x, t, {"label_smoothing": 0.1}, None, np.float64, "grid-stride")


def test_block_rows_gradient_over_the_logits(small_blocks):
    """grad_out may be the logits themselves (the multiclass contract): each logit is read before it is
    overwritten, the label's logit included."""
    x, t, params, _ = _hard("all", (2, 70), np.float64)
    kw = full_params(CE, params)
    dx = _dev(x)
    value, g = fl.cross_entropy.value_and_grad(dx, _dev(t), grad_out=dx, backend="cuda", **params)
    ref_v, ref_g, _ = _reference.reduce_multiclass(CE, x, t, reduction="mean", **kw)
    assert value == pytest.approx(ref_v, rel=1e-12)
    np.testing.assert_allclose(dx.copy_to_host(), ref_g, rtol=1e-12, atol=1e-15)


def test_block_rows_nonfinite_logits(small_blocks):
    """-inf logits (masked classes) add nothing; a row of -inf and +inf logits follows the reference."""
    x = np.array([[0.0, -np.inf, 1.0, 2.0], [-np.inf, -np.inf, 3.0, -np.inf], [0.5, np.nan, 1.0, 0.0]])
    t = np.array([2, 2, 0])
    _, rows, g, h = _run(x, t, {}, None, np.float64)
    kw = full_params(CE)
    ref_rows, _, _ = _reference.reduce_multiclass(CE, x, t, reduction="none", **kw)
    _, ref_g, _ = _reference.reduce_multiclass(CE, x, t, reduction="mean", **kw)
    np.testing.assert_allclose(rows, ref_rows, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)


def test_row_width_is_a_power_of_two_from_a_warp_to_the_block(monkeypatch):
    from fusedloss.backends import _cuda_rows
    from fusedloss.backends._cuda_rows import TPB, _row_width

    assert TPB == 256 and _cuda_rows.MAX_ROW_THREADS == TPB
    monkeypatch.setattr(_cuda_rows, "ROW_ELEMS", 1)  # a thread per logit up to the block
    assert [_row_width(c) for c in (1, 2, 32, 33, 100, 256, 257, 128256)] == [32, 32, 32, 64, 128, 256, 256, 256]
    monkeypatch.setattr(_cuda_rows, "ROW_ELEMS", 8)  # eight logits a thread
    assert [_row_width(c) for c in (1, 256, 257, 1000, 1024, 1025, 2048, 32000)] == [32, 32, 64, 128, 128, 256,
                                                                                      256, 256]


@pytest.mark.parametrize("elems", [1, 8, 1 << 20])
@pytest.mark.parametrize("C", [1, 31, 100, 1000, 128256])
@pytest.mark.parametrize("R", [1, 2, 3, 7, 8, 9, 100, 70000])
def test_row_launch_covers_every_row_once(R, C, elems, monkeypatch):
    """Blocks x rows a block cover R (or the grid strides), the block is the row width times a power of two,
    never more than MAX_ROW_THREADS, and rows a block never exceed what R needs."""
    from fusedloss.backends import _cuda_rows

    monkeypatch.setattr(_cuda_rows, "ROW_ELEMS", elems)
    blocks, threads, width = _cuda_rows._row_launch(R, C)
    per_block = threads // width
    assert width == _cuda_rows._row_width(C) and threads == width * per_block
    assert per_block & (per_block - 1) == 0 and threads <= _cuda_rows.MAX_ROW_THREADS
    assert per_block == 1 or per_block < 2 * R  # no power of two more than R needs
    assert threads == _cuda_rows.MAX_ROW_THREADS or per_block >= R
    assert blocks * per_block >= R or blocks == _cuda_rows.MAX_ROW_BLOCKS
    assert (blocks - 1) * per_block < R


def test_exponentials_of_float32_logits_are_taken_in_float32():
    """The block kernel's exponentials follow the data's precision, as the CPU backends' do: float32 arithmetic
    for float32 logits (the simulator runs this body; the GPU compiles the same rule as an overload)."""
    from fusedloss.backends.numba_cuda import exp_diff_as

    a, b = np.float32(-3.3), np.float32(0.7)
    single = exp_diff_as(a, b, 1.0, np.float32(0.0))
    assert single == float(np.exp(np.float32(a - b)))
    double = exp_diff_as(float(a), float(b), 1.0, 0.0)
    assert double == math.exp(float(a) - float(b))
    assert single != double and abs(single - double) <= 2 * np.spacing(np.float32(single))
    assert math.isnan(exp_diff_as(np.float32(-np.inf), np.float32(-np.inf), 1.0, np.float32(0.0)))
