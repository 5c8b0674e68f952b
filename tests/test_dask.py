"""``fusedloss.dask``: every registered loss over dask arrays equals the in-memory call.

Two schedulers: the threaded one, and a ``distributed.LocalCluster`` of two single-threaded worker processes
(on loopback, no dashboard) that this module starts and closes. The in-memory call runs first in each test,
so the workers find Numba's compiled kernels in the on-disk cache.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="fusedloss.dask needs dask[array] (the test extra installs it)")
dask = pytest.importorskip("dask")

import fusedloss as fl  # noqa: E402
import fusedloss.dask as fld  # noqa: E402
from fusedloss._dask_graph import LazyLoss  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402

from conftest import (TOL, assert_close, grads, loss_cases, loss_fn, make_case, make_data,  # noqa: E402
                      make_multiclass_data, make_weight, multiclass_cases, weightings)

F64 = np.dtype(np.float64)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="the cluster tests need distributed (test extra)")
    old = os.environ.get("PYTHONPATH")
    # the worker processes import the fusedloss under test: it travels on PYTHONPATH
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, old]))
    try:
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                           dashboard_address=None, worker_dashboard_address=None,
                                           env={"FUSEDLOSS_NUM_THREADS": "1"})
        c = distributed.Client(cluster, set_as_default=False)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    yield c
    c.close()
    cluster.close()


@pytest.fixture(params=["threads", "cluster"])
def scheduler(request):
    """The ``scheduler=`` to compute with: the threaded scheduler, or the LocalCluster's client."""
    if request.param == "threads":
        return "threads"
    return request.getfixturevalue("client").get


def compute(scheduler, *arrays):
    return dask.compute(*arrays, scheduler=scheduler)


def assert_value(actual, expected, err="", rtol=TOL[F64].rtol):
    """Reduced values: float64, within rtol (1e-12 unless told) of the in-memory call."""
    assert isinstance(actual, float), f"{err}: {type(actual)}"
    if np.isnan(expected):
        assert np.isnan(actual), err
    else:
        assert abs(actual - expected) <= rtol * max(abs(expected), 1e-300), f"{err}: {actual} != {expected}"


# chunkings of a (rows, 3) array: odd sizes, one-row chunks, a split last axis, an empty chunk
CHUNKS = {"odd": ((7, 11, 5), (2, 1)), "rows1": (1, 3), "empty": ((0, 12, 11), (3,))}
ROWS = 23


# --- every loss, every reduction, both schedulers --------------------------------------------------------------


def lazy(a, chunks):
    """``a`` as a dask array: ``chunks`` along its first axes, its other axes (a row's vector) whole."""
    return da.from_array(a, chunks=tuple(chunks)[:a.ndim] + a.shape[len(chunks):])


def assert_grads(got, expected, err="", exact=True):
    got, expected = grads(got), grads(expected)
    assert len(got) == len(expected), err
    for k, (g, g0) in enumerate(zip(got, expected)):
        if exact:
            np.testing.assert_array_equal(g, g0, err_msg=f"{err} gradient {k}")
        else:
            assert_close(g, g0, F64, err_msg=f"{err} gradient {k}")


@pytest.mark.parametrize("name, params", loss_cases(variants=False))
def test_every_loss(name, params, scheduler):
    """Values to 1e-14 (the merge of the blocks' states); per-row values and gradients bit for bit on the threaded
    scheduler (each block runs the in-memory kernel with the whole call's coefficients). On the LocalCluster, whose
    workers are other processes, within the float64 tolerance: in the CI run some per-row values and gradients
    differed there by 1-2 ulp from the test process's, for a reason not yet found."""
    exact = scheduler == "threads"
    case = make_case(name, params, (ROWS, 3), np.float64, seed=1)
    w = make_weight("full", case.rows, np.float64)
    loss, dloss = loss_fn(name), getattr(fld, name)
    arrays = tuple(lazy(a, CHUNKS["odd"]) for a in case.arrays)
    W = da.from_array(w, chunks=CHUNKS["odd"])
    calls = {("value", red): dloss(*arrays, sample_weight=W, reduction=red, **params)
             for red in ("mean", "sum", "none")}
    if REGISTRY[name].differentiable:
        # "none": the last array and the weights as NumPy arrays, the others lazy (wrapped in the first one's chunks)
        for red, args, weights in (("mean", arrays, W), ("none", (*arrays[:-1], case.arrays[-1]), w)):
            v, g = calls[("value_and_grad", red)] = dloss.value_and_grad(*args, sample_weight=weights, reduction=red,
                                                                         **params)
            for gk, xk in zip(grads(g), arrays):  # blocks of the input's first axis (elementwise: of every axis)
                assert gk.chunks == xk.chunks if REGISTRY[name].kind == "elementwise" else gk.chunks[0] == xk.chunks[0]
    results = dict(zip(calls, compute(scheduler, *calls.values())))  # one graph: one round trip to the cluster
    for (entry, red), got in results.items():
        what = f"{name} {entry} {red}"
        if entry == "value":
            expected = loss(*case.arrays, sample_weight=w, reduction=red, **params)
        else:
            expected, g0 = loss.value_and_grad(*case.arrays, sample_weight=w, reduction=red, **params)
            got, g = got
            assert_grads(g, g0, what, exact=exact)
        if red == "none":
            assert got.dtype == expected.dtype, what
            if exact:
                np.testing.assert_array_equal(got, expected, err_msg=what)
            else:
                assert_close(got, expected, F64, err_msg=what)
        else:
            assert_value(got, expected, what, rtol=1e-14)


@pytest.mark.parametrize("name, params, form", multiclass_cases())
def test_multiclass_every_loss(name, params, form, scheduler):
    x, t = make_multiclass_data(name, params, (ROWS,), np.float64, form, seed=2)
    w = np.random.default_rng(3).uniform(0.0, 2.0, ROWS)
    loss, dloss = loss_fn(name), getattr(fld, name)
    X = da.from_array(x, chunks=(6, 2))  # a split class axis: rechunked to one chunk
    T = da.from_array(t, chunks=(4,) * (t.ndim))  # rows chunked unlike the logits: rechunked to match
    W = da.from_array(w, chunks=9)
    for red in ("mean", "sum", "none"):
        v, g = dloss.value_and_grad(X, T, sample_weight=W, reduction=red, **params)
        v0, g0 = loss.value_and_grad(x, t, sample_weight=w, reduction=red, **params)
        v, g = compute(scheduler, v, g)
        if red == "none":
            assert v.shape == (ROWS,)
            assert_close(v, v0, F64, err_msg=f"{name} none")
        else:
            assert_value(v, v0, f"{name} {red}")
        assert_close(g, g0, F64, err_msg=f"{name} {red} grad")


# --- chunkings, weights, options (threaded scheduler: the cluster runs the same graphs) -------------------------


@pytest.mark.parametrize("weighting, chunking", [("unweighted", "rows1"), ("full", "odd"), ("leading", "empty")])
@pytest.mark.parametrize("name, params", loss_cases(variants=True))
def test_chunkings(name, params, weighting, chunking):
    if weighting not in weightings(name):  # weights of exactly one value per row: those of every row instead
        weighting = "full"
    case = make_case(name, params, (ROWS, 3), np.float64, seed=4)
    w = make_weight(weighting, case.rows, np.float64)
    loss, dloss = loss_fn(name), getattr(fld, name)
    X = lazy(case.arrays[0], CHUNKS[chunking])
    rest = tuple(da.from_array(a, chunks=5) for a in case.arrays[1:])  # unlike the first input's: rechunked
    W = None if w is None else da.from_array(w, chunks=4)
    for red in ("mean", "sum"):
        assert_value(dloss(X, *rest, sample_weight=W, reduction=red, **params).compute(scheduler="threads"),
                     loss(*case.arrays, sample_weight=w, reduction=red, **params), f"{name} {red}")
    if not REGISTRY[name].differentiable:
        return
    for red in ("mean", "sum", "none"):
        gs = grads(dloss.grad(X, *rest, sample_weight=W, reduction=red, **params))
        gs0 = grads(loss.grad(*case.arrays, sample_weight=w, reduction=red, **params))
        assert len(gs) == len(gs0)
        for k, (g, g0) in enumerate(zip(gs, gs0)):
            # blockwise: each gradient block equals the in-memory gradient's slice; the blocks of the first input's
            # first axis (elementwise: of its every axis)
            assert g.chunks == X.chunks if REGISTRY[name].kind == "elementwise" else g.chunks[0] == X.chunks[0]
            index = list(np.ndindex(*g.numblocks))
            blocks = dask.compute(*[g.blocks[idx] for idx in index], scheduler="threads")
            starts = [np.cumsum((0,) + c) for c in g.chunks]
            for idx, block in zip(index, blocks):
                expected = g0[tuple(slice(s[i], s[i + 1]) for s, i in zip(starts, idx))]
                np.testing.assert_array_equal(block, expected, err_msg=f"{name} {red} gradient {k} block {idx}")
    if REGISTRY[name].has_hessian:
        for hessian in ("exact", "ones"):
            g, h = dloss.grad_hess(X, *rest, sample_weight=W, hessian=hessian, **params)
            g0, h0 = loss.grad_hess(*case.arrays, sample_weight=w, hessian=hessian, **params)
            g, h = dask.compute(g, h, scheduler="threads")
            assert_close(g, g0, F64, err_msg=f"{name} grad_hess grad")
            assert_close(h, h0, F64, err_msg=f"{name} grad_hess hess ({hessian})")


@pytest.mark.parametrize("chunks", [(1, 5), (5, 1), ((0, 9, 14), 3)], ids=["rows1", "classes1", "empty"])
@pytest.mark.parametrize("name, params, form", multiclass_cases())
def test_multiclass_chunkings(name, params, form, chunks):
    lead = (ROWS,)
    x, t = make_multiclass_data(name, params, lead, np.float64, form, seed=5)
    w = np.random.default_rng(6).uniform(0.0, 2.0, lead)
    loss, dloss = loss_fn(name), getattr(fld, name)
    X = da.from_array(x, chunks=chunks)
    for weights in (None, w):
        v, g = dloss.value_and_grad(X, t, sample_weight=weights, **params)
        v0, g0 = loss.value_and_grad(x, t, sample_weight=weights, **params)
        assert g.chunks[:-1] == X.chunks[:-1] and g.chunks[-1] == (x.shape[-1],)
        v, g = dask.compute(v, g, scheduler="threads")
        assert_value(v, v0, f"{name} {chunks}")
        assert_close(g, g0, F64, err_msg=f"{name} {chunks} grad")
        if REGISTRY[name].has_hessian:
            g, h = dloss.grad_hess(X, t, sample_weight=weights, **params)
            g0, h0 = loss.grad_hess(x, t, sample_weight=weights, **params)
            g, h = dask.compute(g, h, scheduler="threads")
            assert_close(h, h0, F64, err_msg=f"{name} {chunks} hess")


def test_multiclass_leading_axes():
    """Logits with two leading axes, chunked along both; labels and row weights follow."""
    x, t = make_multiclass_data("cross_entropy", {}, (6, 7), np.float64, "hard", seed=7)
    w = np.random.default_rng(8).uniform(0.0, 2.0, (6, 7))
    X = da.from_array(x, chunks=(4, 3, 5))
    v, g = fld.cross_entropy.value_and_grad(X, t, sample_weight=w, label_smoothing=0.1)
    v0, g0 = fl.cross_entropy.value_and_grad(x, t, sample_weight=w, label_smoothing=0.1)
    v, g = dask.compute(v, g, scheduler="threads")
    assert_value(v, v0)
    assert_close(g, g0, F64)
    none = fld.cross_entropy(X, t, reduction="none").compute(scheduler="threads")
    assert_close(none, fl.cross_entropy(x, t, reduction="none"), F64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes(dtype):
    """float32 inputs: float64 values, float32 derivatives, as in memory (the same kernels, so equal)."""
    x, t = make_data("log_cosh", {}, (40,), dtype)
    X = da.from_array(x, chunks=7)
    v, g = fld.log_cosh.value_and_grad(X, t)
    assert v.dtype == np.float64 and g.dtype == dtype
    v, g = dask.compute(v, g, scheduler="threads")
    v0, g0 = fl.log_cosh.value_and_grad(x, t)
    assert g.dtype == dtype
    assert v == pytest.approx(v0, rel=1e-14)
    np.testing.assert_array_equal(g, g0)
    none = fld.log_cosh(X, t, reduction="none")
    assert none.dtype == dtype and none.compute(scheduler="threads").dtype == dtype


def test_numpy_inputs_and_inputs_unchanged():
    x, t = make_data("mse", {}, (30,), np.float64)
    x0, t0 = x.copy(), t.copy()
    X = da.from_array(x, chunks=4)
    v, g = fld.mse.value_and_grad(X, t)  # target a NumPy array: wrapped with pred's chunks
    dask.compute(v, g, scheduler="threads")
    assert np.array_equal(x, x0) and np.array_equal(t, t0)
    assert fld.mse(x, t).compute(scheduler="threads") == fl.mse(x, t)  # both NumPy: one chunk


def test_one_kernel_call_per_block():
    """value_and_grad runs each block once: the value merges the states of the gradient's own block calls."""
    x, t = make_data("mse", {}, (30,), np.float64)
    X = da.from_array(x, chunks=4)
    v, g = fld.mse.value_and_grad(X, t, sample_weight=np.ones(30))
    tasks = [task for layer in g.dask.layers.values() for task in dict(layer).values()]
    calls = sum(1 for task in tasks if isinstance(task, tuple) and task and task[0] is fld._block)
    assert calls == X.numblocks[0]


def test_import_fusedloss_does_not_import_dask():
    code = "import sys, fusedloss; assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_every_registered_loss_is_there():
    names = [name for name, spec in REGISTRY.items() if spec.kind in fld.KINDS]
    assert {"elementwise", "multiclass"} <= {REGISTRY[n].kind for n in names}
    for name in names:
        assert isinstance(getattr(fld, name), fld.DaskLoss), name
    # __all__ is fixed at import: the built-in losses of every kind (a user's loss registered later, e.g. by another
    # test in this process, is reached through the module's __getattr__ above)
    builtin = {name for name, spec in REGISTRY.items() if spec.builtin}
    assert set(fld.__all__) >= builtin
    for name in builtin:
        assert isinstance(getattr(fld, name), LazyLoss) and getattr(fld, name).loss is fl.LOSSES[name], name


# --- bad input ----------------------------------------------------------------------------------------------------


def test_errors_at_graph_construction():
    x = da.zeros((10, 3), chunks=4)
    with pytest.raises(ValueError, match="same shape"):
        fld.mse(x, da.zeros((10, 2)))
    with pytest.raises(TypeError, match="floating"):
        fld.mse(da.zeros((10,), dtype=np.int64), da.zeros(10))
    with pytest.raises(TypeError, match="real"):
        fld.mse(x, da.zeros((10, 3), dtype=complex))
    with pytest.raises(TypeError, match="unknown keyword"):
        fld.mse(x, x, delta=1.0)
    with pytest.raises(ValueError, match="delta must be"):
        fld.huber(x, x, delta=-1.0)
    with pytest.raises(ValueError, match="reduction must be"):
        fld.mse(x, x, reduction="avg")
    with pytest.raises(TypeError, match="not differentiable"):
        fld.zero_one.grad(x, x)
    with pytest.raises(ValueError, match="hessian must be"):
        fld.mse.grad_hess(x, x, hessian="diag")
    with pytest.raises(ValueError, match="leading part"):
        fld.mse(x, x, sample_weight=da.ones(3))
    with pytest.raises(ValueError, match="pos_weight"):
        fld.binary_cross_entropy_with_logits(x, x, pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="backend 'cuda'"):
        fld.mse(x, x, backend="cuda")
    logits = da.zeros((10, 4), chunks=(3, 4))
    with pytest.raises(ValueError, match="without the class axis"):
        fld.cross_entropy(logits, da.zeros(9, dtype=np.int64))
    with pytest.raises(TypeError, match="target must be"):
        fld.multi_margin(logits, da.zeros((10, 4)))
    with pytest.raises(ValueError, match="one entry per class"):
        fld.cross_entropy(logits, da.zeros(10, dtype=np.int64), class_weight=[1.0, 2.0])
    unknown = da.zeros(10, chunks=5)[da.zeros(10, chunks=5) > -1]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fld.mse(unknown, unknown)


def test_errors_at_compute_name_the_chunk(scheduler):
    x = np.zeros((12, 4))
    t = np.zeros(12, dtype=np.int64)
    t[9] = 7
    X = da.from_array(x, chunks=(4, 4))
    with pytest.raises(ValueError, match=r"label 7 at index \(1,\).*chunk \(2, 0\) of the logits, which starts at "
                                         r"index \(8, 0\)"):
        compute(scheduler, fld.cross_entropy(X, t))
    with pytest.raises(ValueError, match=r"label 7.*chunk \(2, 0\)"):
        compute(scheduler, fld.cross_entropy.grad(X, t))  # the "mean" divisor sees the labels first
    p = da.from_array(np.full(10, 0.5), chunks=3)
    y = np.zeros(10)
    y[4] = 2.0
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\].*chunk \(1,\)"):
        compute(scheduler, fld.binary_cross_entropy(p, y))
    w = np.ones(10)
    w[-1] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0.*chunk \(3,\)"):
        compute(scheduler, fld.mse.grad(p, y, sample_weight=w))
    for bad in (np.nan, np.inf):
        w[-1] = bad
        refused = rf"sample_weight must be finite and >= 0, got {bad!r}.*chunk \(3,\)"
        for reduction in ("mean", "sum", "none"):
            with pytest.raises(ValueError, match=refused):
                compute(scheduler, fld.mse.grad(p, y, reduction=reduction, sample_weight=w))
            with pytest.raises(ValueError, match=refused):
                compute(scheduler, fld.mse(p, y, reduction=reduction, sample_weight=w))


def test_weights_near_float_max_merge_as_in_memory():
    """Weights near 1e308: the blocks' weighted sums leave the float range (each block's, and their merge), which
    the in-memory call avoids by scaling the weights by a power of two; the dask mean, sum and gradients agree."""
    x, t = make_data("mse", {}, (40,), np.float64, seed=9)
    w = np.random.default_rng(10).uniform(0.5, 1.0, 40) * 1e308
    X, T, W = (da.from_array(a, chunks=7) for a in (x, t, w))
    v, g = dask.compute(*fld.mse.value_and_grad(X, T, sample_weight=W), scheduler="sync")
    v0, g0 = fl.mse.value_and_grad(x, t, sample_weight=w)
    assert np.isfinite(v0)
    assert_value(v, v0, "mse value_and_grad")
    assert_close(g, g0, F64, err_msg="mse grad")
    assert_value(fld.mse(X, T, sample_weight=W).compute(scheduler="sync"), v0, "mse mean")
    assert fld.mse(X, T, sample_weight=W, reduction="sum").compute(scheduler="sync") == np.inf
    small = 1e308 * np.full(40, 2.0**-8)  # true sum below the float max, blocks' products still huge
    assert_value(fld.mse(X, T, sample_weight=small, reduction="sum").compute(scheduler="sync"),
                 fl.mse(x, t, sample_weight=small, reduction="sum"), "mse sum")
    # class weights whose sum overflows (scaling the divisor) and row weights that do too
    x, t = make_multiclass_data("cross_entropy", {}, (20,), np.float64, "hard", seed=11)
    rw = np.full(20, 1e308)
    kw = {"class_weight": np.full(x.shape[-1], 1e308), "label_smoothing": 0.1}
    X = da.from_array(x, chunks=(3, -1))
    for weights in (None, rw):
        v, g = dask.compute(*fld.cross_entropy.value_and_grad(X, t, sample_weight=weights, **kw), scheduler="sync")
        v0, g0 = fl.cross_entropy.value_and_grad(x, t, sample_weight=weights, **kw)
        assert np.isfinite(v0)
        assert_value(v, v0, "cross_entropy value_and_grad")
        assert_close(g, g0, F64, err_msg="cross_entropy grad")
        assert_value(fld.cross_entropy(X, t, sample_weight=weights, **kw).compute(scheduler="sync"), v0,
                     "cross_entropy mean")


# --- overlap losses (dice, tversky): blocks along the sample and spatial axes, sums combined once ----------------


def _overlap_data(mode, shape, dtype, ignore=None, seed=20):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=shape).astype(dtype)
    if mode == "multiclass":
        t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
        if ignore is not None:
            t[0, :2] = ignore
    else:
        t = (rng.random(shape) < 0.35).astype(dtype)
        if ignore is not None:
            t[-1, ..., :2] = ignore
    return x, t


# (loss, mode, params, input shape, chunkings): a split class axis (rechunked for multiclass), one-sample chunks, an
# empty chunk, spatial chunks; every reduction of each
OVERLAP_CASES = [
    ("dice", "multiclass", dict(ignore_index=255, smooth=0.5, class_weights=np.array([1.0, 0.0, 2.0, 0.5])),
     (5, 4, 6, 7), [(2, 3, 4, 5), ((0, 1, 4), 4, (0, 6), 7)]),
    ("tversky", "multiclass", dict(alpha=0.3, beta=0.7, per_sample=True, log_loss=True), (5, 4, 6, 7),
     [(2, 1, 3, (3, 4))]),
    ("tversky", "multilabel", dict(alpha=0.8, beta=0.2, ignore_index=-1, per_sample=True, from_logits=False),
     (4, 3, 5, 6), [(3, 2, (0, 5), 4)]),
    ("dice", "binary", dict(log_loss=True), (4, 9, 5), [(1, 4, 5)]),
]


@pytest.mark.parametrize("name, mode, params, shape, chunkings", OVERLAP_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in OVERLAP_CASES])
def test_overlap_equals_in_memory(name, mode, params, shape, chunkings):
    """Value and gradient of every reduction agree with the in-memory call: the blocks' sums are added, not their
    ratios; the gradient blocks take the whole call's coefficients."""
    x, t = _overlap_data(mode, shape, np.float64, params.get("ignore_index"))
    if not params.get("from_logits", True):
        x = np.random.default_rng(21).random(shape)
    kw = dict(params, mode=mode)
    w = np.random.default_rng(22).uniform(0.0, 2.0, shape[0]) if params.get("per_sample") else None
    loss, dloss = fl.LOSSES[name], getattr(fld, name)
    for chunks in chunkings:
        X = da.from_array(x, chunks=chunks)
        T = da.from_array(t, chunks=3)  # unlike the input's: rechunked to them
        for red in ("mean", "sum", "none"):
            v, g = dloss.value_and_grad(X, T, reduction=red, sample_weight=w, **kw)
            wanted = X.chunks[:1] + ((shape[1],),) + X.chunks[2:] if mode == "multiclass" else X.chunks
            assert g.chunks == wanted, (chunks, g.chunks)
            v, g = dask.compute(v, g, scheduler="sync")
            v0, g0 = loss.value_and_grad(x, t, reduction=red, sample_weight=w, **kw)
            if red == "none":
                assert v.dtype == v0.dtype and v.shape == v0.shape
                assert_close(v, v0, F64, err_msg=f"{name} {chunks} none")
            else:
                assert_value(v, v0, f"{name} {chunks} {red}")
            assert_close(g, g0, F64, mag=np.abs(g0).max(), err_msg=f"{name} {chunks} {red} grad")
        assert_value(dloss(X, T, sample_weight=w, **kw).compute(scheduler="sync"), loss(x, t, sample_weight=w, **kw))
        assert_close(dloss.grad(X, T, sample_weight=w, **kw).compute(scheduler="sync"),
                     loss.grad(x, t, sample_weight=w, **kw), F64, mag=np.abs(g0).max(), err_msg=f"{name} grad")


def test_overlap_sums_go_through_an_exact_tree(monkeypatch):
    """More blocks per sample and class than a task takes go through a tree of exact partial sums: the value and
    gradient are those of the one-task combination, to the bit, and every task takes at most SPLIT_EVERY inputs."""
    from fusedloss import _dask_overlap

    x, t = _overlap_data("multiclass", (3, 4, 40, 9), np.float64, seed=24)
    X = da.from_array(x, chunks=(2, 4, 2, 3))  # 2 x 20 x 3 blocks: 60 per sample range
    for red in ("mean", "none"):
        monkeypatch.setattr(_dask_overlap, "SPLIT_EVERY", 4)
        v, g = fld.dice.value_and_grad(X, t, reduction=red, smooth=0.25)
        graph = dict(g.__dask_graph__())
        partial = [task for key, task in graph.items() if isinstance(key, tuple) and "-partial" in key[0]]
        assert len(partial) >= 2 * 60 // 4  # two levels for each sample range
        assert all(len(getattr(task, "dependencies", task[1:])) <= 4 for task in partial)
        v, g = dask.compute(v, g, scheduler="sync")
        monkeypatch.setattr(_dask_overlap, "SPLIT_EVERY", 10_000)  # one combining task
        v1, g1 = dask.compute(*fld.dice.value_and_grad(X, t, reduction=red, smooth=0.25), scheduler="sync")
        np.testing.assert_array_equal(v, v1)
        np.testing.assert_array_equal(g, g1)
        v0, g0 = fl.dice.value_and_grad(x, t, reduction=red, smooth=0.25)
        assert_close(g, g0, F64, mag=np.abs(g0).max())


def test_exact_partial_sums_round_once_as_fsum():
    """The tree's partial sums are exact: any grouping of the terms rounds to math.fsum's sum, through
    cancellation, subnormals and ties; a non-finite term gives NumPy's sum."""
    from fusedloss._dask_overlap import _exact_sum, _partial_sum

    rng = np.random.default_rng(25)
    terms = [np.array([[[1e16, 5e-324, 0.1]]]), np.array([[[1.0, 5e-324, 0.2]]]), np.array([[[-1e16, -1e-300, 0.3]]]),
             np.array([[[2.0 ** -53, 1e-300, -0.6]]]), np.array([[[1.0, 0.0, 1e-17]]])]
    terms += [rng.normal(scale=10.0 ** rng.integers(-20, 20), size=(1, 1, 3)) for _ in range(40)]
    want = np.array([math.fsum(t.reshape(-1)[j] for t in terms) for j in range(3)])
    for order in (terms, terms[::-1], terms[3:] + terms[:3]):
        tree = _partial_sum(_partial_sum(*order[:7]), _partial_sum(*order[7:20]), *order[20:])
        np.testing.assert_array_equal(_exact_sum([tree]).reshape(-1), want)
    with np.errstate(invalid="ignore"):
        odd = _exact_sum([_partial_sum(np.array([[[np.inf, 1.0, np.nan]]]), np.array([[[-np.inf, 2.0, 0.0]]]))])
    assert np.isnan(odd[0, 0, 0]) and np.isnan(odd[0, 0, 2]) and odd[0, 0, 1] == 3.0


def test_overlap_float32_and_gamma():
    """float32 input: float32 gradient, float64 value, within float32's tolerance of the in-memory call."""
    x, t = _overlap_data("multiclass", (3, 5, 8, 8), np.float32, seed=23)
    X = da.from_array(x, chunks=(2, 5, 3, 8))
    v, g = dask.compute(*fld.tversky.value_and_grad(X, t, alpha=0.3, beta=0.7, gamma=0.75), scheduler="sync")
    v0, g0 = fl.tversky.value_and_grad(x, t, alpha=0.3, beta=0.7, gamma=0.75)
    assert g.dtype == np.float32 and isinstance(v, float)
    assert v == pytest.approx(v0, rel=1e-12)
    assert_close(g, g0, np.float32, mag=np.abs(g0).max())


def test_overlap_errors():
    x = da.zeros((4, 3, 5, 5), chunks=2)
    t = np.zeros((4, 5, 5), np.int64)
    with pytest.raises(TypeError, match="integer class indices"):
        fld.dice(x, t.astype(np.float64))
    with pytest.raises(ValueError, match="shape without the class axis"):
        fld.dice(x, t[:, :3])
    with pytest.raises(ValueError, match="needs per_sample=True"):
        fld.dice(x, t, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="needs\\s+gamma=1"):
        fld.tversky(x, t, gamma=2.0, reduction="sum")
    with pytest.raises(ValueError, match="one weight per class"):
        fld.dice(x, t, class_weights=np.ones(4))
    with pytest.raises(TypeError, match="unknown keyword"):
        fld.dice(x, t, delta=1.0)
    with pytest.raises(ValueError, match="backend 'cuda'"):
        fld.dice(x, t, backend="cuda")
    with pytest.raises(TypeError, match="no Hessian"):
        fld.dice.grad_hess(x, t)
    with pytest.raises(TypeError, match="input must be"):
        fld.dice(da.zeros((4, 3, 5, 5), dtype=np.int64), t)
    t[3, 4, 1] = 3  # in the last chunk of the samples and of the first spatial axis
    with pytest.raises(ValueError, match=r"label 3 at index \(1, 0, 1\).*chunk \(1, 0, 2, 0\) of the input, which "
                                         r"starts at index \(2, 0, 4, 0\)"):
        fld.dice.grad(x, t).compute(scheduler="sync")
