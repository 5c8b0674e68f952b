"""The pieces of a Dask graph that every ``fusedloss.dask`` loss builds the same way.

Blocks run the in-memory call and return ``LossState`` partial results; ``_tree`` merges those by a fixed
tree of ``SPLIT_EVERY``-way nodes (the same order, so the same bits, on every run and scheduler), and
``reduced`` / ``to_arrays`` turn a layer of block results into the dask arrays a call returns.
"""

from __future__ import annotations

import math
from operator import getitem

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ._state import LossState, merge

SPLIT_EVERY = 8  # states merged per node of the reduction tree


def _located(exc: Exception, where: str) -> Exception:
    """The in-memory call's ValueError / TypeError (or a subclass that takes a message, as LabelRangeError) with
    the chunk it came from appended."""
    if isinstance(exc, (ValueError, TypeError)):
        try:
            return type(exc)(f"{exc} (in {where})")
        except TypeError:  # a subclass with another signature: as it is
            return exc
    return exc


def _merge_list(states) -> LossState:
    return merge(states)


def _finalize(state: LossState, reduction: str):
    return np.float64(state.value(reduction))


def _lift(x, like, what: str, name: str):
    """``x`` as a dask array. NumPy arrays and Python values are wrapped: chunked as the leading axes of
    ``like`` (a dask array, or None) when their shape is a leading part of its shape, else in one chunk."""
    if isinstance(x, da.Array):
        if any(math.isnan(c) for cs in x.chunks for c in cs):
            raise ValueError(f"{name}: {what} has unknown chunk sizes {x.chunks}; call .compute_chunk_sizes() "
                             "on it first")
        return x
    arr = x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x)
    fits = like is not None and arr.shape == like.shape[: arr.ndim]
    return da.from_array(arr, chunks=like.chunks[: arr.ndim] if fits else -1)


def _tree(layer: dict, name: str, keys: list, merge_all=_merge_list):
    """Merge the states under ``keys`` by a fixed tree of ``SPLIT_EVERY``-way nodes (``merge_all(list of states)``
    at each node: LossStates unless told); the root's key."""
    level = 0
    while len(keys) > 1:
        keys_up = []
        for i in range(0, len(keys), SPLIT_EVERY):
            key = (name, level, i // SPLIT_EVERY)
            layer[key] = (merge_all, list(keys[i: i + SPLIT_EVERY]))
            keys_up.append(key)
        keys = keys_up
        level += 1
    return keys[0]


def reduced(layers: dict, deps: dict, work: str, vname: str, block_keys: list, final: tuple, slot: int = 0,
            merge_all=_merge_list, dtype=np.dtype(np.float64)):
    """Add the layer ``vname`` that merges slot ``slot`` (a LossState, unless ``merge_all`` merges other states) of
    every block under ``block_keys`` and applies ``final = (function, *args)`` to the root state; returns its (name,
    chunks, dtype) for ``to_arrays``: a 0-d array of ``dtype``."""
    states = {(vname + "-state", *key[1:]): (getitem, key, slot) for key in block_keys}
    tree: dict = {}
    root = _tree(tree, vname + "-tree", list(states), merge_all)
    layers[vname] = {**states, **tree, (vname,): (final[0], root, *final[1:])}
    deps[vname] = {work}
    return vname, (), dtype


def _sum_value(state: LossState):
    return np.float64(state.sum)


def host_backend(name: str, backend):
    """The backend the blocks run on (None: auto) for the call's ``backend=``; 'cuda' refused."""
    from . import _config

    requested = _config.get_backend() if backend is None else _config.check_backend_name(backend)
    if requested == "cuda":
        raise ValueError(f"{name}: fusedloss.dask runs the host kernels on NumPy blocks; backend 'cuda' is not "
                         "supported here (choose 'auto', 'cpp', 'numba' or 'numpy')")
    return None if requested == "auto" else requested


def on_host(v):
    """A small argument (targets, lengths, weights) as the in-memory call takes it: a dask array computed."""
    return v.compute() if isinstance(v, da.Array) else v


def run_block(name, mode, reduction, backend, params, where, count, partial_kw, w, coef, *arrays):
    """One block's in-memory call of loss ``name`` on its rows' ``arrays``: (value, or the LossState of "mean" /
    "sum"; gradients or None). Derivatives of a reduced value take the whole call's coefficient per row
    (``coef``) as weights with "sum", so every gradient block has the in-memory gradient's bits; ``coef`` None
    (no rows, or weights summing to 0): the block's own "mean", NaN as the in-memory one. ``partial_kw``: what
    the loss's ``partial`` takes besides the arrays (ctc: the reduction)."""
    from ._losses import LOSSES

    loss = LOSSES[name]
    kw = dict(params, backend=backend)
    try:
        if mode == "value":
            if reduction == "none":
                return loss(*arrays, reduction="none", sample_weight=w, **kw), None
            return loss.partial(*arrays, sample_weight=w, **partial_kw, **kw), None
        if reduction == "none":
            return loss.value_and_grad(*arrays, reduction="none", sample_weight=w, **kw)
        if coef is None:
            v, g = loss.value_and_grad(*arrays, reduction="mean", sample_weight=w, **kw)
        else:
            v, g = loss.value_and_grad(*arrays, reduction="sum", sample_weight=coef, **kw)
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc
    return LossState(name, v, math.nan, count), g


def block_outputs(work: str, layer: dict, collections: list, block_keys: list, mode: str, reduction: str,
                  value=None, derivatives=()):
    """The dask arrays of a graph whose blocks ``block_keys`` (tasks of ``layer``, reading ``collections``) each
    return (value or LossState, derivatives): with a value (``mode`` "value" or "value_and_grad"), for "none"
    the blocks' values, ``value = (key_of(block key) -> index, chunks, dtype)``, else the blocks' states merged
    by the fixed tree (the sum of their sums for "value_and_grad", whose blocks ran with the whole call's
    coefficients); then each of ``derivatives`` = (suffix, pick(block key) -> task, key_of, chunks, dtype)."""
    hlg = HighLevelGraph.from_collections(work, layer, dependencies=collections)
    layers = dict(hlg.layers)
    deps = dict(hlg.dependencies)
    results = []
    if mode in ("value", "value_and_grad"):
        vname = f"{work}-value"
        if reduction == "none":
            key_of, chunks, dtype = value
            layers[vname] = {(vname, *key_of(b)): (getitem, b, 0) for b in block_keys}
            deps[vname] = {work}
            results.append((vname, chunks, dtype))
        else:
            results.append(reduced(layers, deps, work, vname, block_keys,
                                   (_finalize, reduction) if mode == "value" else (_sum_value,)))
    for suffix, pick, key_of, chunks, dtype in derivatives:
        dname = f"{work}-{suffix}"
        layers[dname] = {(dname, *key_of(b)): pick(b) for b in block_keys}
        deps[dname] = {work}
        results.append((dname, chunks, dtype))
    return to_arrays(layers, deps, results)


def _metrics_result(state):
    return state.result()


def metrics_output(layers: dict, deps: dict, work: str, block_keys: list, slot: int):
    """Add the layer of the metrics, a 0-d object array whose one value is the ``Metrics`` (floats by name,
    ``.state``): the metric states in slot ``slot`` of the blocks ``block_keys`` merged by the fixed tree
    (``merge_metric_states`` at each node), as the loss states are; returns its (name, chunks, dtype) for
    ``to_arrays``. A dask array like the value, not a ``dask.delayed`` object: ``dask.compute`` of arrays and
    delayed objects together gave their results in the wrong order (dask 2026.8)."""
    from ._binary_metrics import merge_any

    return reduced(layers, deps, work, f"{work}-metrics", block_keys, (_metrics_result,), slot, merge_any,
                   np.dtype(object))


def to_arrays(layers: dict, deps: dict, results: list):
    """The dask arrays named by ``results`` ((name, chunks, dtype) each): one array, or a tuple of them."""
    hlg = HighLevelGraph(layers, deps)
    arrays = tuple(da.Array(hlg, n, chunks, dtype=dt, meta=np.empty((0,) * len(chunks), dt))
                   for n, chunks, dt in results)
    return arrays[0] if len(arrays) == 1 else arrays


class LazyLoss:
    """What fusedloss.dask's loss objects share: the in-memory loss they wrap, its name, and a docstring that
    says how the arrays split (``along``)."""

    def __init__(self, loss, along: str = ""):
        self.loss = loss
        self.name = loss.name
        self.__name__ = loss.name
        self.__doc__ = f"{loss.name} over dask arrays (lazy){along}. " + (loss.__doc__ or "")

    def __repr__(self):
        return f"<fusedloss.dask loss {self.name}>"
