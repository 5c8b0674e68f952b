"""``fusedloss.dask.<pairwise loss>``: a pairwise loss over Dask arrays, block by block along the first axis.

>>> v = fld.cosine_embedding(x1, x2, y)                          # a lazy 0-d dask array
>>> v, (g1, g2) = fld.triplet_margin.value_and_grad(a, p, n, swap=True)

- The inputs (the large arrays) stay lazy; they are rechunked to one chunk on every axis but the first (a row's
  vector is never split), with the first input's chunks of the first axis; those chunks are the blocks.
- The target and the sample weights hold one value per row (small): they are taken as NumPy arrays (a dask array
  among them is computed when the graph is built), checked there by the in-memory rules with the in-memory
  messages, and each block receives its rows' slice.
- "mean" and "sum" values are ``partial`` states of the blocks merged by ``fusedloss.dask``'s fixed tree; "none"
  is a dask array chunked like the first axis.
- Derivatives: each block runs ``value_and_grad`` with the whole call's coefficient per row as its weight (for
  "mean": ``w_i / sum w``, computed as the in-memory call computes it), so every gradient block has the bits of
  the in-memory gradient; the value of ``value_and_grad`` is the exactly rounded sum of the blocks' sums.
"""

from __future__ import annotations

import math
from operator import getitem

import numpy as np

from ._dask_graph import LazyLoss


def _block(name, mode, reduction, backend, params, where, count, y, w, coef, *xs):
    """One block's in-memory call: (value or LossState; gradients or None)."""
    from ._dask_graph import _located
    from ._losses import LOSSES
    from ._state import LossState

    loss = LOSSES[name]
    arrays = (*xs, *([] if y is None else [y]))
    kw = dict(params, backend=backend)
    try:
        if mode == "value":
            if reduction == "none":
                return loss(*arrays, reduction="none", sample_weight=w, **kw), None
            return loss.partial(*arrays, sample_weight=w, **kw), None
        if reduction == "none":
            return loss.value_and_grad(*arrays, reduction="none", sample_weight=w, **kw)
        if coef is None:  # no rows, or weights summing to 0: the in-memory "mean" is NaN, so is this block's
            v, g = loss.value_and_grad(*arrays, reduction="mean", sample_weight=w, **kw)
        else:
            v, g = loss.value_and_grad(*arrays, reduction="sum", sample_weight=coef, **kw)
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc
    return LossState(name, v, math.nan, count), g


def _sum_value(state):
    return np.float64(state.sum)


def graph(loss, mode, arrays, reduction, sample_weight, backend, params):
    """The dask arrays of one call: value / (value, grads) / grads, as ``fusedloss.dask._graph``."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    from . import _config
    from ._dask_graph import _finalize, _lift, reduced, to_arrays
    from ._validate import REDUCTIONS, _as_pred

    name, spec = loss.name, loss.spec
    checked = loss._params(params)[0] if params else loss._default_params[0]
    requested = _config.get_backend() if backend is None else _config.check_backend_name(backend)
    if requested == "cuda":
        raise ValueError(f"{name}: fusedloss.dask runs the host kernels on NumPy blocks; backend 'cuda' is not "
                         "supported here (choose 'auto', 'cpp', 'numba' or 'numpy')")
    backend = None if requested == "auto" else requested
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    k = len(spec.inputs)
    if len(arrays) != len(loss._args):
        raise TypeError(f"{name}() takes {len(loss._args)} arrays ({', '.join(loss._args)}), got {len(arrays)}")
    first = arrays[0] if isinstance(arrays[0], da.Array) or hasattr(arrays[0], "dtype") else _as_pred(arrays[0], name)
    x0 = _lift(first, None, spec.inputs[0], name)
    dtype = _as_pred(np.empty(0, x0.dtype), name).dtype
    xs = [x0.astype(dtype) if x0.dtype != dtype else x0]
    for a, what in zip(arrays[1:k], spec.inputs[1:]):
        x = _lift(a, None, what, name)
        if x.shape != x0.shape:
            raise ValueError(f"{name}: {what} must have {spec.inputs[0]}'s shape {x0.shape}, got {x.shape}")
        xs.append(x.astype(dtype) if x.dtype != dtype else x)

    def host(v):
        return v.compute() if isinstance(v, da.Array) else v

    rows, D, N, y, w = loss._check_rows(x0.shape, host(arrays[-1]) if spec.row_target else None, host(sample_weight))
    if x0.ndim == 0:
        raise ValueError(f"{name}: {spec.inputs[0]} must be an array, got a scalar")
    split = len(rows) > 0  # a single row (1-D vectors) is one block
    chunks = (xs[0].chunks[0] if split else (x0.shape[0],), *((s,) for s in x0.shape[1:]))
    xs = [x.rechunk(chunks) for x in xs]
    y_rows = None if y is None else y.reshape(rows)
    w_rows = None if w is None else w.reshape(rows)
    coef = None
    if mode != "value" and reduction != "none":
        coef = loss._coefficients(reduction, w, N)[0]
        if reduction == "mean" and not (N and np.isfinite(coef).all()):
            coef = None  # no rows, or weights that sum to 0: the in-memory "mean" is NaN
    coef_rows = None if coef is None else coef.reshape(rows)

    token = tokenize(name, mode, reduction, backend, sorted(checked.items()), *xs, y, w)
    work = f"fusedloss-{name}-{mode}-{token}"
    bounds = np.concatenate(([0], np.cumsum(chunks[0]))).astype(int)
    nb = len(chunks[0])
    zeros = (0,) * (x0.ndim - 1)
    layer: dict = {}
    keys = []
    for i in range(nb):
        n0, n1 = int(bounds[i]), int(bounds[i + 1])
        part = slice(n0, n1) if split else slice(None)

        def piece(a):
            return None if a is None else (a[part] if split else a)

        count = (n1 - n0) * math.prod(rows[1:]) if split else N
        layer[(work, i)] = (_block, name, mode, reduction, backend, checked, f"chunk {i} of the first axis, rows "
                            f"{n0} to {n1 - 1}", count, piece(y_rows), piece(w_rows), piece(coef_rows),
                            *((x.name, i, *zeros) for x in xs))
        keys.append((work, i))
    hlg = HighLevelGraph.from_collections(work, layer, dependencies=xs)
    layers = dict(hlg.layers)
    deps = dict(hlg.dependencies)
    results = []
    if mode in ("value", "value_and_grad"):
        vname = f"{work}-value"
        if reduction == "none":
            layers[vname] = ({(vname, i, *zeros[:len(rows) - 1]): (getitem, (work, i), 0) for i in range(nb)} if split
                             else {(vname,): (getitem, (work, 0), 0)})
            results.append((vname, chunks[:len(rows)], dtype))
        else:
            results.append(reduced(layers, deps, work, vname, keys,
                                   (_finalize, reduction) if mode == "value" else (_sum_value,)))
        deps[vname] = {work}
    if mode != "value":
        for j in range(k):
            gname = f"{work}-grad{j}"
            layers[gname] = {(gname, i, *zeros): (getitem, (getitem, (work, i), 1), j) for i in range(nb)}
            deps[gname] = {work}
            results.append((gname, chunks, dtype))
    out = to_arrays(layers, deps, results)
    if mode == "value":
        return out
    if mode == "grad":
        return tuple(out) if k > 1 else (out,)
    return out[0], tuple(out[1:])


class DaskPairwiseLoss(LazyLoss):
    """A pairwise loss over dask arrays (module docstring): the in-memory signature (without ``grad_out``),
    returning lazy dask arrays."""

    def __init__(self, loss):
        super().__init__(loss, ", along the first axis")

    def __call__(self, *arrays, reduction="mean", sample_weight=None, backend=None, **params):
        """The value: a 0-d float64 dask array ("mean", "sum"), or a dask array of the rows ("none")."""
        return graph(self.loss, "value", arrays, reduction, sample_weight, backend, params)

    def value_and_grad(self, *arrays, reduction="mean", sample_weight=None, backend=None, **params):
        """(value, (gradient with respect to each input, chunked like the rechunked inputs)): all lazy."""
        return graph(self.loss, "value_and_grad", arrays, reduction, sample_weight, backend, params)

    def grad(self, *arrays, reduction="mean", sample_weight=None, backend=None, **params):
        """The gradients of the value with respect to each input (a tuple)."""
        return graph(self.loss, "grad", arrays, reduction, sample_weight, backend, params)
