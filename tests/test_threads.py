"""Reduced values do not depend on the thread count (compiled backends).

The kernel contract: reductions accumulate in float64 over fixed blocks combined in a fixed order, so
``set_num_threads(1)`` and ``set_num_threads(2)`` give bit-identical sums, and the elementwise outputs are
identical too. Sizes are above the backends' parallel thresholds (a 1e6+7 array for two losses, ~2.6e5 for
every loss), and odd, so that the last block is partial.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import (
    DTYPES,
    elementwise_names,
    loss_fn,
    make_data,
    make_multiclass_data,
    make_pairwise_data,
    make_weight,
    require_support,
)

BIG = 1_000_007
MEDIUM = (1 << 18) + 7


def _run_all(loss, p, y, w, backend):
    out = [loss(p, y, reduction=r, sample_weight=w, backend=backend) for r in ("sum", "mean")]
    out.append(loss(p, y, reduction="none", sample_weight=w, backend=backend))
    if loss.spec.differentiable:
        v, g = loss.value_and_grad(p, y, reduction="mean", sample_weight=w, backend=backend)
        out += [v, g]
        if loss.spec.has_hessian:
            out += list(loss.grad_hess(p, y, reduction="sum", sample_weight=w, backend=backend))
    return out


def _assert_identical(a, b, what):
    for i, (x, z) in enumerate(zip(a, b)):
        if isinstance(x, float):
            assert x == z or (np.isnan(x) and np.isnan(z)), (
                f"{what}, output {i}: {x!r} with 1 thread, {z!r} with 2 ({abs(x - z):.3g} apart)")
        else:
            np.testing.assert_array_equal(x, z, err_msg=f"{what}, output {i}")


def _compare(backend, name, n, dtype, weighted, threads=(1, 2)):
    loss = loss_fn(name)
    p, y = make_data(name, {}, (n,), dtype, seed=n % 97)
    w = make_weight("full" if weighted else "unweighted", (n,), dtype)
    results = []
    for t in threads:
        fl.set_num_threads(t)
        results.append(_run_all(loss, p, y, w, backend))
    for t, r in zip(threads[1:], results[1:]):
        _assert_identical(results[0], r, f"{backend} {name} {dtype} n={n} weighted={weighted} "
                                         f"threads {threads[0]} vs {t}")
    return results[0]


@pytest.mark.parametrize("name,dtype,weighted", [
    ("mse", np.dtype(np.float32), True),
    ("mse", np.dtype(np.float64), False),
    ("log_cosh", np.dtype(np.float64), True),
    ("log_cosh", np.dtype(np.float32), False),
], ids=str)
def test_big_reduction_is_thread_count_independent(compiled_backend, name, dtype, weighted):
    first = _compare(compiled_backend, name, BIG, dtype, weighted)
    # and the sum is accurate (float64 accumulation, not float32)
    p, y = make_data(name, {}, (BIG,), dtype, seed=BIG % 97)
    w = make_weight("full" if weighted else "unweighted", (BIG,), dtype)
    ref = loss_fn(name)(p, y, reduction="sum", sample_weight=w, backend="numpy")
    assert first[0] == pytest.approx(ref, rel=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", [n for n in elementwise_names()])
def test_every_loss_is_thread_count_independent(compiled_backend, name):
    require_support(compiled_backend, name)
    for dtype in DTYPES:
        _compare(compiled_backend, name, MEDIUM, dtype, weighted=(dtype == np.float64))


def test_more_threads_than_cores(compiled_backend):
    """Asking for more threads than there are cores (FUSEDLOSS_NUM_THREADS=64 on a laptop) still works and
    gives the same numbers."""
    many = (os.cpu_count() or 1) * 2 + 1
    _compare(compiled_backend, "huber", MEDIUM, np.float64, weighted=True, threads=(1, many))
    assert fl.get_num_threads() == many


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "multiclass"])
def test_multiclass_is_thread_count_independent(compiled_backend, name):
    require_support(compiled_backend, name)
    spec = REGISTRY[name]
    form = "hard" if spec.hard_labels else "soft"
    rows = (1 << 16) + 3
    for dtype in DTYPES:
        x, t = make_multiclass_data(name, {}, (rows,), dtype, form, seed=7)
        w = np.random.default_rng(8).uniform(0, 2, rows).astype(dtype)
        results = []
        for threads in (1, 2):
            fl.set_num_threads(threads)
            results.append(_run_all(loss_fn(name), x, t, w, compiled_backend))
        _assert_identical(results[0], results[1], f"{compiled_backend} {name} {dtype} rows={rows}")


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "pairwise"])
def test_pairwise_is_thread_count_independent(compiled_backend, name):
    """Every reduction, the per-row values, the gradients and the partial state's sum, above both backends'
    parallel thresholds (the one-element rows run as elementwise loops with the sum in the kernel)."""
    require_support(compiled_backend, name)
    loss = loss_fn(name)
    rows = MEDIUM if not REGISTRY[name].vector_rows else (1 << 16) + 3
    for dtype in DTYPES:
        arrays = make_pairwise_data(name, {}, (rows,), dtype, seed=7)
        w = np.random.default_rng(8).uniform(0, 2, rows)
        results = []
        for threads in (1, 2):
            fl.set_num_threads(threads)
            out = [loss(*arrays, reduction=r, sample_weight=w, backend=compiled_backend)
                   for r in ("sum", "mean", "none")]
            v, g = loss.value_and_grad(*arrays, sample_weight=w, backend=compiled_backend)
            out += [v, *g, loss.partial(*arrays, sample_weight=w, backend=compiled_backend).sum]
            results.append(out)
        _assert_identical(results[0], results[1], f"{compiled_backend} {name} {dtype} rows={rows}")


# Outputs of 16 MiB or more are written with streaming stores through chunk buffers (cpp: stream.hpp).
STREAMED = (1 << 22) + 19  # float32 gradient of 16.8 MB: streamed; its slices below are not


@pytest.mark.parametrize("name", ["mse", "huber", "log_cosh", "binary_focal"])
def test_streamed_outputs_match_the_plain_path(compiled_backend, name):
    loss = loss_fn(name)
    dtype = np.dtype(np.float32)
    p, y = make_data(name, {}, (STREAMED,), dtype, seed=5)
    buf = np.full(STREAMED + 1, 7.0, dtype)
    g = buf[1:]  # a 4-byte misaligned output: plain stores up to the first vector boundary
    v, got = loss.value_and_grad(p, y, reduction="sum", grad_out=g, backend=compiled_backend)
    assert got is g
    # the value alone (nothing streamed) is the same float64 sum, to the bit
    assert loss(p, y, reduction="sum", backend=compiled_backend) == v
    fl.set_num_threads(1)
    assert loss.value_and_grad(p, y, reduction="sum", backend=compiled_backend)[0] == v
    # every element is the one a small (not streamed) call computes, head, middle and tail
    for lo in (0, 1, 12_345, STREAMED - 70_001):
        small = loss.grad(p[lo:lo + 70_001], y[lo:lo + 70_001], reduction="sum", backend=compiled_backend)
        np.testing.assert_array_equal(g[lo:lo + 70_001], small, err_msg=f"{name} from {lo}")
    assert buf[0] == 7.0  # nothing written before the output
    # weighted, and the per-element values (reduction="none") streamed too
    w = make_weight("full", (STREAMED,), dtype)
    vals = loss(p, y, reduction="none", sample_weight=w, backend=compiled_backend)
    _, gw = loss.value_and_grad(p, y, reduction="sum", sample_weight=w, backend=compiled_backend)
    for lo in (0, STREAMED - 70_001):
        sl = slice(lo, lo + 70_001)
        np.testing.assert_array_equal(vals[sl], loss(p[sl], y[sl], reduction="none", sample_weight=w[sl],
                                                     backend=compiled_backend))
        np.testing.assert_array_equal(gw[sl], loss.grad(p[sl], y[sl], reduction="sum", sample_weight=w[sl],
                                                        backend=compiled_backend))
    if loss.spec.has_hessian:
        gg, hh = loss.grad_hess(p, y, reduction="sum", backend=compiled_backend)  # two streamed outputs
        np.testing.assert_array_equal(gg, g)
        np.testing.assert_array_equal(hh[:1000], loss.grad_hess(p[:1000], y[:1000], reduction="sum",
                                                                   backend=compiled_backend)[1])
