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
    """The in-memory call's ValueError / TypeError with the chunk it came from appended."""
    if type(exc) in (ValueError, TypeError):
        return type(exc)(f"{exc} (in {where})")
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


def _tree(layer: dict, name: str, keys: list):
    """Merge the states under ``keys`` by a fixed tree of ``SPLIT_EVERY``-way nodes; the root's key."""
    level = 0
    while len(keys) > 1:
        keys_up = []
        for i in range(0, len(keys), SPLIT_EVERY):
            key = (name, level, i // SPLIT_EVERY)
            layer[key] = (_merge_list, list(keys[i: i + SPLIT_EVERY]))
            keys_up.append(key)
        keys = keys_up
        level += 1
    return keys[0]


def reduced(layers: dict, deps: dict, work: str, vname: str, block_keys: list, final: tuple):
    """Add the layer ``vname`` that merges slot 0 (a LossState) of every block under ``block_keys`` and
    applies ``final = (function, *args)`` to the root state; returns its (name, chunks, dtype)."""
    states = {(vname + "-state", *key[1:]): (getitem, key, 0) for key in block_keys}
    tree: dict = {}
    root = _tree(tree, vname + "-tree", list(states))
    layers[vname] = {**states, **tree, (vname,): (final[0], root, *final[1:])}
    deps[vname] = {work}
    return vname, (), np.dtype(np.float64)


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
