"""``fl.ctc.partial`` (mergeable states) and ``fusedloss.dask.ctc`` (blocks along the batch axis) against the
in-memory call.

CTC's "mean" normalises each loss by its target length before the batch average, so its state is built for a
reduction: "mean" states merge to the whole batch's mean, "sum" states to its sum. The Dask version splits the
batch axis into blocks of whole sequences; its gradient blocks are computed with the whole batch's coefficients,
so they equal the in-memory gradient bit for bit on a given backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl


def _batch(seed=0, T=10, N=7, C=6, S=4, infeasible=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, N, C)) * 2
    targets = rng.integers(1, C, size=(N, S))
    tl = rng.integers(0, S + 1, size=N)
    il = rng.integers(2 * S + 1, T + 1, size=N)
    if infeasible:
        targets[-1, :2] = 3
        tl[-1] = 2
        il[-1] = 2  # "3 3" needs 3 frames
    return x, targets, il, tl


# --- partial ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_partial_states_merge_to_the_whole(reduction, weighted):
    x, targets, il, tl = _batch(1)
    w = np.random.default_rng(2).uniform(0, 2, size=x.shape[1]) if weighted else None
    whole = fl.ctc(x, targets, il, tl, reduction=reduction, sample_weight=w)
    cuts = [0, 2, 3, 7]
    states = [fl.ctc.partial(x[:, a:b], targets[a:b], il[a:b], tl[a:b], reduction=reduction,
                             sample_weight=None if w is None else w[a:b]) for a, b in zip(cuts, cuts[1:])]
    merged = fl.merge(states)
    assert merged.count == x.shape[1] and merged.loss == "ctc"
    assert merged.value(reduction) == pytest.approx(whole, rel=1e-14)
    one = fl.ctc.partial(x, targets, il, tl, reduction=reduction, sample_weight=w)
    assert one.value(reduction) == pytest.approx(whole, rel=1e-14)
    if reduction == "mean":
        assert merged.denominator == (x.shape[1] if w is None else pytest.approx(w.sum(), rel=1e-15))
    else:
        assert math.isnan(merged.value("mean"))  # a "sum" state cannot give CTC's mean


def test_partial_options_and_empty_piece():
    x, targets, il, tl = _batch(3, infeasible=True)
    concat = np.concatenate([r[:n] for r, n in zip(targets, tl)])
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))
    for zero_infinity in (False, True):
        whole = fl.ctc(xb, concat, il, tl, batch_first=True, zero_infinity=zero_infinity)
        state = fl.ctc.partial(xb, concat, il, tl, batch_first=True, zero_infinity=zero_infinity)
        assert state.value() == pytest.approx(whole, rel=1e-14) if zero_infinity else state.value() == math.inf
    empty = fl.ctc.partial(x[:, :0], targets[:0], il[:0], tl[:0])
    assert (empty.sum, empty.denominator, empty.count) == (0.0, 0.0, 0)
    assert math.isnan(empty.value())
    full = fl.ctc.partial(x[:, :3], targets[:3], il[:3], tl[:3])
    assert fl.merge([empty, full]).value() == full.value()


def test_partial_bad_input():
    x, targets, il, tl = _batch(4)
    with pytest.raises(ValueError, match="ctc: partial takes reduction 'mean' or 'sum'"):
        fl.ctc.partial(x, targets, il, tl, reduction="none")
    with pytest.raises(ValueError, match="ctc: target label [0-9]+ is outside"):
        fl.ctc.partial(x, targets + 5, il, tl)
    with pytest.raises(TypeError, match="ctc: unknown keyword"):
        fl.ctc.partial(x, targets, il, tl, ignore_index=0)


# --- fusedloss.dask -------------------------------------------------------------------------------------------

da = pytest.importorskip("dask.array", reason="fusedloss.dask needs dask[array] (the test extra installs it)")
dask = pytest.importorskip("dask")
fld = pytest.importorskip("fusedloss.dask")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dask_ctc_equals_in_memory(reduction, batch_first):
    x, targets, il, tl = _batch(5, N=9, infeasible=True)
    w = np.random.default_rng(6).uniform(0.5, 2, size=9)
    if batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    axis = 0 if batch_first else 1
    chunks = tuple((4, 3, 2) if a == axis else (5, 5) if a != 2 else 3 for a in range(3))  # T, C split too
    xd = da.from_array(x, chunks=chunks)
    concat = np.concatenate([r[:n] for r, n in zip(targets, tl)])
    for tg, kw in ((targets, dict(zero_infinity=True)), (concat, dict(zero_infinity=False, sample_weight=w))):
        kw = dict(kw, reduction=reduction, batch_first=batch_first, backend="numba")
        v_mem, g_mem = fl.ctc.value_and_grad(x, tg, il, tl, **kw)
        v, g = fld.ctc.value_and_grad(xd, tg, il, tl, **kw)
        v, g = dask.compute(v, g, scheduler="threads")
        assert g.shape == x.shape
        assert np.array_equal(g, g_mem, equal_nan=True)  # the whole batch's coefficients in every block
        if reduction == "none":
            assert np.array_equal(v, v_mem)
        else:
            assert v == pytest.approx(v_mem, rel=1e-14, nan_ok=True) if np.isfinite(v_mem) else v == v_mem
        value = fld.ctc(xd, tg, il, tl, **kw).compute(scheduler="threads")
        assert np.array_equal(value, v_mem) if reduction == "none" else value == pytest.approx(v_mem, rel=1e-14)
        assert np.array_equal(fld.ctc.grad(xd, tg, il, tl, **kw).compute(scheduler="threads"), g_mem,
                              equal_nan=True)


def test_dask_ctc_one_call_per_block_and_lengths_as_dask_arrays():
    from fusedloss import _dask_ctc, _dask_graph

    x, targets, il, tl = _batch(7)
    xd = da.from_array(x, chunks=(10, 3, 6))
    v, g = fld.ctc.value_and_grad(xd, da.from_array(targets, chunks=2), da.from_array(il), tl)
    tasks = dict(g.__dask_graph__())
    calls = sum(1 for task in tasks.values() if isinstance(task, tuple) and task and task[0] is _dask_graph.run_block)
    assert calls == 3
    ev, eg = fl.ctc.value_and_grad(x, targets, il, tl)
    v, g = dask.compute(v, g, scheduler="threads")
    assert v == pytest.approx(ev, rel=1e-14)
    np.testing.assert_allclose(g, eg, rtol=1e-14, atol=1e-16)
    assert "ctc" in fld.__all__ and isinstance(fld.ctc, _dask_ctc.DaskSequenceLoss)


def test_dask_ctc_errors_at_graph_construction():
    x, targets, il, tl = _batch(8)
    xd = da.from_array(x, chunks=(10, 3, 6))
    with pytest.raises(ValueError, match="ctc: target label [0-9]+ is outside"):
        fld.ctc(xd, targets + 5, il, tl)
    with pytest.raises(ValueError, match="ctc: input_lengths must have one entry per sequence"):
        fld.ctc(xd, targets, il[:3], tl)
    with pytest.raises(ValueError, match="backend 'cuda' is not supported here"):
        fld.ctc(xd, targets, il, tl, backend="cuda")
    with pytest.raises(TypeError, match="ctc: unknown keyword"):
        fld.ctc(xd, targets, il, tl, ignore_index=0)
