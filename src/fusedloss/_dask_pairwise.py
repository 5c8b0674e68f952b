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


def graph(loss, mode, arrays, reduction, sample_weight, backend, params):
    """The dask arrays of one call: value / (value, grads) / grads, as ``fusedloss.dask._graph``."""
    import dask.array as da
    from dask.base import tokenize

    from ._dask_graph import _lift, block_outputs, host_backend, on_host, run_block
    from ._validate import REDUCTIONS, _as_pred

    name, spec = loss.name, loss.spec
    checked = loss._params(params)[0] if params else loss._default_params[0]
    backend = host_backend(name, backend)
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

    rows, D, N, y, w = loss._check_rows(x0.shape, on_host(arrays[-1]) if spec.row_target else None,
                                        on_host(sample_weight))
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
        layer[(work, i)] = (run_block, name, mode, reduction, backend, checked, f"chunk {i} of the first axis, rows "
                            f"{n0} to {n1 - 1}", count, {}, piece(w_rows), piece(coef_rows),
                            *((x.name, i, *zeros) for x in xs), *([] if y is None else [piece(y_rows)]))
        keys.append((work, i))
    out = block_outputs(
        work, layer, xs, keys, mode, reduction,
        value=(lambda b: (b[1], *zeros[:len(rows) - 1]) if split else (), chunks[:len(rows)], dtype),
        derivatives=[] if mode == "value" else [
            (f"grad{j}", lambda b, j=j: (getitem, (getitem, b, 1), j), lambda b: (b[1], *zeros), chunks, dtype)
            for j in range(k)])
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
