"""Arrays at an address that is not a multiple of their item size: a float view of a byte buffer at an odd
offset, such as ``np.zeros(4001, np.uint8)[1:].view(np.float32)``. They are C-contiguous, so no layout check
copies them, but compiled code may not read or write a float through such an address (undefined behaviour,
which tools/sanitize.sh runs these tests to catch). The cpp backend reads such inputs from an aligned copy and
writes such outputs through an aligned buffer copied out afterwards: every loss kind gives the same bits as with
the aligned arrays, and an output (pred itself in place too) receives the result."""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import (DTYPES, HOST_BACKENDS, make_data, make_multiclass_data, make_pairwise_data, make_weight,
                      multiclass_cases, require_backend, require_support)

# The cpp backend by name: its test ids carry "cpp", which tools/sanitize.sh selects.
CPP = ("cpp",)


def at_offset(a, offset):
    """A copy of ``a`` (same shape and dtype, C-contiguous) at an address ``offset`` bytes past a 64-byte
    boundary."""
    a = np.ascontiguousarray(a)
    buf = np.zeros(a.nbytes + offset + 64, np.uint8)
    start = -buf.ctypes.data % 64 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and out.ctypes.data % 64 == offset
    return out


def offsets(dtype):
    """Offsets that misalign an array of ``dtype``: one byte, and half its item size (float64 at 4 bytes)."""
    size = np.dtype(dtype).itemsize
    return sorted({1, size // 2})


def same_bits(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), f"differs: {actual!r} vs {expected!r}"


def dtype_offset_cases():
    return [pytest.param(dt, off, id=f"{dt.name}-at{off}") for dt in DTYPES for off in offsets(dt)]


ELEMENTWISE = sorted(name for name, spec in REGISTRY.items() if spec.kind == "elementwise")


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise(backend, name, dtype, offset):
    require_backend(backend)
    require_support(backend, name, dtype)
    spec = REGISTRY[name]
    n = 1003  # vector loop, lanes and a tail
    p, y = make_data(name, {}, (n,), dtype)
    w = make_weight("full", (n,), dtype)
    mp, my, mw = at_offset(p, offset), at_offset(y, offset), at_offset(w, offset)
    loss = getattr(fl, name)
    for reduction in ("mean", "none"):
        same_bits(loss(mp, my, sample_weight=mw, reduction=reduction, backend=backend),
                  loss(p, y, sample_weight=w, reduction=reduction, backend=backend))
    if not spec.differentiable:
        return
    want_v, want_g = loss.value_and_grad(p, y, sample_weight=w, backend=backend)
    g = at_offset(np.zeros_like(p), offset)
    v, got = loss.value_and_grad(mp, my, sample_weight=mw, grad_out=g, backend=backend)
    assert got is g
    same_bits(v, want_v)
    same_bits(g, want_g)
    if spec.has_hessian:
        want_g, want_h = loss.grad_hess(p, y, backend=backend)
        g, h = at_offset(np.zeros_like(p), offset), at_offset(np.zeros_like(p), offset)
        got_g, got_h = loss.grad_hess(mp, my, grad_out=g, hess_out=h, backend=backend)
        assert got_g is g and got_h is h
        same_bits(g, want_g)
        same_bits(h, want_h)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
def test_elementwise_in_place_and_per_column_parameter(backend, dtype, offset):
    """grad_out is pred itself, misaligned; and a misaligned per-column parameter (pos_weight)."""
    require_backend(backend)
    name = "binary_cross_entropy_with_logits"
    p, y = make_data(name, {}, (201, 7), dtype)
    pos = np.linspace(0.5, 2.0, 7).astype(dtype)
    want = fl.binary_cross_entropy_with_logits.grad(p, y, pos_weight=pos, backend=backend)
    mp = at_offset(p, offset)
    got = fl.binary_cross_entropy_with_logits.grad(mp, at_offset(y, offset), pos_weight=at_offset(pos, offset),
                                                   grad_out=mp, backend=backend)
    assert got is mp
    same_bits(mp, want)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
def test_large_elementwise_streams_into_a_misaligned_output(backend, dtype, offset):
    """Outputs of 16 MiB and more take the streaming-store path, in parallel blocks."""
    require_backend(backend)
    n = (16 << 20) // np.dtype(dtype).itemsize + 5
    rng = np.random.default_rng(3)
    p, y = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    want_v, want_g = fl.mse.value_and_grad(p, y, backend=backend)
    g = at_offset(np.zeros_like(p), offset)
    v, _ = fl.mse.value_and_grad(at_offset(p, offset), at_offset(y, offset), grad_out=g, backend=backend)
    same_bits(v, want_v)
    same_bits(g, want_g)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
@pytest.mark.parametrize("name,params,form", multiclass_cases())
def test_multiclass(backend, name, params, form, dtype, offset):
    require_backend(backend)
    require_support(backend, name, dtype)
    spec = REGISTRY[name]
    x, t = make_multiclass_data(name, params, (37,), dtype, form)
    w = make_weight("full", (37,), dtype)
    mx, mt, mw = at_offset(x, offset), at_offset(t, offset), at_offset(w, offset)
    loss = getattr(fl, name)
    for reduction in ("mean", "none"):
        same_bits(loss(mx, mt, sample_weight=mw, reduction=reduction, backend=backend, **params),
                  loss(x, t, sample_weight=w, reduction=reduction, backend=backend, **params))
    want_v, want_g = loss.value_and_grad(x, t, sample_weight=w, backend=backend, **params)
    g = at_offset(np.zeros_like(x), offset)
    v, got = loss.value_and_grad(mx, mt, sample_weight=mw, grad_out=g, backend=backend, **params)
    assert got is g
    same_bits(v, want_v)
    same_bits(g, want_g)
    if spec.has_hessian:
        want_g, want_h = loss.grad_hess(x, t, backend=backend, **params)
        g, h = at_offset(np.zeros_like(x), offset), at_offset(np.zeros_like(x), offset)
        loss.grad_hess(mx, mt, grad_out=g, hess_out=h, backend=backend, **params)
        same_bits(g, want_g)
        same_bits(h, want_h)
    # in place: the gradient replaces the misaligned logits
    want = loss.grad(x, t, backend=backend, **params)
    loss.grad(mx, mt, grad_out=mx, backend=backend, **params)
    same_bits(mx, want)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
def test_ctc(backend, dtype, offset):
    require_backend(backend)
    require_support(backend, "ctc")
    rng = np.random.default_rng(5)
    T, N, C = 12, 3, 6
    x = rng.normal(size=(T, N, C)).astype(dtype)
    targets = rng.integers(1, C, size=(N, 4)).astype(np.int64)
    il, tl = np.array([12, 9, 10], np.int64), np.array([4, 2, 3], np.int64)
    want_v, want_g = fl.ctc.value_and_grad(x, targets, il, tl, reduction="none", backend=backend)
    g = at_offset(np.zeros_like(x), offset)
    v, got = fl.ctc.value_and_grad(at_offset(x, offset), at_offset(targets, offset), at_offset(il, offset),
                                   at_offset(tl, offset), reduction="none", grad_out=g, backend=backend)
    assert got is g
    same_bits(v, want_v)
    same_bits(g, want_g)


ONE_ELEMENT_ROWS = sorted(name for name, spec in REGISTRY.items() if spec.kind == "pairwise" and not spec.vector_rows)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("dtype,offset", dtype_offset_cases())
@pytest.mark.parametrize("name", ONE_ELEMENT_ROWS)
def test_pairwise_one_element_rows(backend, name, dtype, offset):
    """The pairwise losses whose row is one element (the binding's pairwise_elements): misaligned inputs, target,
    weights and gradient outputs."""
    require_backend(backend)
    require_support(backend, name, dtype)
    arrays = [a.astype(dtype) for a in make_pairwise_data(name, {}, (1003,), dtype)]
    w = make_weight("full", (1003,), np.float64)
    moved = [at_offset(a, offset) for a in arrays]
    mw = at_offset(w, offset)
    loss = getattr(fl, name)
    for reduction in ("mean", "none"):
        same_bits(loss(*moved, sample_weight=mw, reduction=reduction, backend=backend),
                  loss(*arrays, sample_weight=w, reduction=reduction, backend=backend))
    k = len(REGISTRY[name].inputs)
    want_v, want_g = loss.value_and_grad(*arrays, sample_weight=w, backend=backend)
    gs = tuple(at_offset(np.zeros_like(a), offset) for a in arrays[:k])
    v, got = loss.value_and_grad(*moved, sample_weight=mw, grad_out=gs, backend=backend)
    assert all(g is o for g, o in zip(got, gs))
    same_bits(v, want_v)
    for g, want in zip(gs, want_g):
        same_bits(g, want)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_every_backend_writes_misaligned_outputs(backend):
    """The same behaviour on every host backend: misaligned in, misaligned out (pred itself too)."""
    require_backend(backend)
    p, y = make_data("huber", {}, (101,), np.float64)
    want_g, want_h = fl.huber.grad_hess(p, y, backend=backend)
    mp, my = at_offset(p, 4), at_offset(y, 1)
    g, h = at_offset(np.zeros_like(p), 1), at_offset(np.zeros_like(p), 4)
    fl.huber.grad_hess(mp, my, grad_out=g, hess_out=h, backend=backend)
    same_bits(g, want_g)
    same_bits(h, want_h)
    fl.huber.grad(mp, my, grad_out=mp, backend=backend)
    same_bits(mp, want_g)
    x, t = make_multiclass_data("cross_entropy", {}, (9,), np.float32, "hard")
    want = fl.cross_entropy.grad(x, t, backend=backend)
    mx = at_offset(x, 2)
    fl.cross_entropy.grad(mx, at_offset(t, 3), grad_out=mx, backend=backend)
    same_bits(mx, want)
