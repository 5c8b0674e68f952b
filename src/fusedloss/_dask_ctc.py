"""``fusedloss.dask.ctc``: CTC over a Dask array of scores, block by block along the batch axis.

>>> v = fld.ctc(logits, targets, input_lengths, target_lengths)          # a lazy 0-d dask array
>>> v, g = fld.ctc.value_and_grad(logits, targets, input_lengths, target_lengths, batch_first=True)

- The scores (the large array, (T, N, C) or (N, T, C) with ``batch_first``) stay lazy; they are rechunked to
  whole frames and classes (one chunk along T and C), so each block holds whole sequences. The chunks of the
  batch axis are the blocks.
- Targets, lengths and sample weights are small (O(N S)): they are taken as NumPy arrays (a dask array among
  them is computed when the graph is built), checked there by the in-memory rules with the in-memory
  messages, and each block receives its sequences' slice (targets in concatenated form).
- "mean" and "sum" values are ``ctc.partial`` states of the blocks (``LossState``: for "mean" the sum of the
  length-normalised weighted losses and the number of sequences or the weights' sum), merged by
  ``fusedloss.dask``'s fixed tree; "none" is a dask array of the batch axis's chunks.
- Derivatives: each block runs ``value_and_grad`` with the whole batch's coefficient per sequence as its
  weight (for "mean": ``w_n / max(S_n, 1) / D``, computed as the in-memory call computes it), so every
  gradient block has the bits of the in-memory gradient; the value of ``value_and_grad`` is the exactly
  rounded sum of the blocks' sums.
"""

from __future__ import annotations

import math

import numpy as np

from ._dask_graph import LazyLoss


def _block(mode, reduction, backend, params, where, x, labels, il, tl, w, coef):
    """One block's in-memory call: (value, LossState or None; gradient or None)."""
    from ._losses import LOSSES
    from ._state import LossState
    from ._dask_graph import _located

    loss = LOSSES["ctc"]
    kw = dict(params, backend=backend)
    try:
        if mode == "value":
            if reduction == "none":
                return loss(x, labels, il, tl, reduction="none", sample_weight=w, **kw), None
            return loss.partial(x, labels, il, tl, reduction=reduction, sample_weight=w, **kw), None
        if reduction == "none":
            return loss.value_and_grad(x, labels, il, tl, reduction="none", sample_weight=w, **kw)
        if coef is None:  # no sequences, or weights summing to 0: the in-memory "mean" is NaN, so is this block's
            v, g = loss.value_and_grad(x, labels, il, tl, reduction="mean", sample_weight=w, **kw)
        else:
            v, g = loss.value_and_grad(x, labels, il, tl, reduction="sum", sample_weight=coef, **kw)
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc
    return LossState("ctc", v, math.nan, len(il)), g


def _sum_value(state):
    return np.float64(state.sum)


def graph(loss, mode, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend, params):
    """The dask arrays of one call: (value,) / (value, grad) / (grad,), as ``fusedloss.dask._graph``."""
    from operator import getitem

    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    from . import _config
    from ._dask_graph import _finalize, _lift, reduced, to_arrays
    from ._validate import _as_pred

    name = loss.name
    checked = loss._params(params)[0] if params else loss._default_params[0]
    requested = _config.get_backend() if backend is None else _config.check_backend_name(backend)
    if requested == "cuda":
        raise ValueError(f"{name}: fusedloss.dask runs the host kernels on NumPy blocks; backend 'cuda' is not "
                         "supported here (choose 'auto', 'cpp', 'numba' or 'numpy')")
    backend = None if requested == "auto" else requested
    if not isinstance(logits, da.Array) and not hasattr(logits, "dtype"):
        logits = _as_pred(logits, name)
    x = _lift(logits, None, "logits", name)
    dtype = _as_pred(np.empty(0, x.dtype), name).dtype
    if x.dtype != dtype:
        x = x.astype(dtype)

    def host(v):
        return v.compute() if isinstance(v, da.Array) else v

    T, N, C, labels, offsets, tl, il, w = loss._check_sequences(
        x.shape, host(targets), host(input_lengths), host(target_lengths), reduction, host(sample_weight), checked)
    axis = 0 if checked["batch_first"] else 1
    x = x.rechunk({a: -1 for a in range(3) if a != axis})
    # every sequence's labels, concatenated; sequence n's are concat[starts[n]:starts[n + 1]]
    concat = np.concatenate([labels[offsets[n]:offsets[n] + tl[n]] for n in range(N)]) if N else labels[:0]
    starts = np.concatenate(([0], np.cumsum(tl))).astype(np.int64)
    coef = None
    if mode != "value" and reduction != "none":
        coef = loss._coefficients(reduction, w, tl, N)
        if reduction == "mean" and not (N and np.isfinite(coef).all()):
            coef = None  # no sequences, or weights that sum to 0: the in-memory "mean" is NaN

    token = tokenize(name, mode, reduction, backend, sorted(checked.items()), x, concat, il, tl, w)
    work = f"fusedloss-{name}-{mode}-{token}"
    layer: dict = {}
    bounds = np.concatenate(([0], np.cumsum(x.chunks[axis]))).astype(int)
    keys = []
    for i in range(x.numblocks[axis]):
        n0, n1 = int(bounds[i]), int(bounds[i + 1])
        idx = tuple(i if a == axis else 0 for a in range(3))
        where = f"chunk {i} of the batch axis, sequences {n0} to {n1 - 1}"
        layer[(work, i)] = (_block, mode, reduction, backend, checked, where, (x.name, *idx),
                            concat[starts[n0]:starts[n1]], il[n0:n1], tl[n0:n1],
                            None if w is None else w[n0:n1], None if coef is None else coef[n0:n1])
        keys.append((work, i))
    hlg = HighLevelGraph.from_collections(work, layer, dependencies=[x])
    layers = dict(hlg.layers)
    deps = dict(hlg.dependencies)
    results = []
    nb = len(keys)
    if mode in ("value", "value_and_grad"):
        vname = f"{work}-value"
        if reduction == "none":
            layers[vname] = {(vname, i): (getitem, (work, i), 0) for i in range(nb)}
            results.append((vname, (x.chunks[axis],), dtype))
        else:
            results.append(reduced(layers, deps, work, vname, keys,
                                   (_finalize, reduction) if mode == "value" else (_sum_value,)))
        deps[vname] = {work}
    if mode != "value":
        gname = f"{work}-grad"
        layers[gname] = {(gname, *tuple(i if a == axis else 0 for a in range(3))): (getitem, (work, i), 1)
                         for i in range(nb)}
        deps[gname] = {work}
        results.append((gname, x.chunks, dtype))
    return to_arrays(layers, deps, results)


class DaskSequenceLoss(LazyLoss):
    """``fusedloss.ctc`` over dask arrays (module docstring): the same signature (without ``grad_out``),
    returning lazy dask arrays."""

    def __init__(self, loss):
        super().__init__(loss, ", along the batch axis")

    def __call__(self, logits, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None,
                 backend=None, **params):
        """The value: a 0-d float64 dask array ("mean", "sum"), or a dask array of the sequences ("none")."""
        return graph(self.loss, "value", logits, targets, input_lengths, target_lengths, reduction, sample_weight,
                     backend, params)

    def value_and_grad(self, logits, targets, input_lengths, target_lengths, *, reduction="mean",
                       sample_weight=None, backend=None, **params):
        """(value, gradient with respect to logits, chunked like the rechunked logits): both lazy."""
        return graph(self.loss, "value_and_grad", logits, targets, input_lengths, target_lengths, reduction,
                     sample_weight, backend, params)

    def grad(self, logits, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None,
             backend=None, **params):
        """The gradient of the value with respect to logits."""
        return graph(self.loss, "grad", logits, targets, input_lengths, target_lengths, reduction, sample_weight,
                     backend, params)
