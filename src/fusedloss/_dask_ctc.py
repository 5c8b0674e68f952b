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

import numpy as np

from ._dask_graph import LazyLoss


def graph(loss, mode, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend, params):
    """The dask arrays of one call: (value,) / (value, grad) / (grad,), as ``fusedloss.dask._graph``."""
    from operator import getitem

    import dask.array as da
    from dask.base import tokenize

    from ._dask_graph import _lift, block_outputs, host_backend, on_host, run_block
    from ._validate import _as_pred

    name = loss.name
    checked = loss._params(params)[0] if params else loss._default_params[0]
    backend = host_backend(name, backend)
    if not isinstance(logits, da.Array) and not hasattr(logits, "dtype"):
        logits = _as_pred(logits, name)
    x = _lift(logits, None, "logits", name)
    dtype = _as_pred(np.empty(0, x.dtype), name).dtype
    if x.dtype != dtype:
        x = x.astype(dtype)

    T, N, C, labels, offsets, tl, il, w = loss._check_sequences(
        x.shape, on_host(targets), on_host(input_lengths), on_host(target_lengths), reduction,
        on_host(sample_weight), checked)
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

    def block_index(i):  # the block's index in the scores' grid: i along the batch axis
        return tuple(i if a == axis else 0 for a in range(3))

    for i in range(x.numblocks[axis]):
        n0, n1 = int(bounds[i]), int(bounds[i + 1])
        where = f"chunk {i} of the batch axis, sequences {n0} to {n1 - 1}"
        layer[(work, i)] = (run_block, name, mode, reduction, backend, checked, where, n1 - n0,
                            {"reduction": reduction}, None if w is None else w[n0:n1],
                            None if coef is None else coef[n0:n1], (x.name, *block_index(i)),
                            concat[starts[n0]:starts[n1]], il[n0:n1], tl[n0:n1])
        keys.append((work, i))
    return block_outputs(work, layer, [x], keys, mode, reduction, value=(lambda b: b[1:], (x.chunks[axis],), dtype),
                         derivatives=[("grad", lambda b: (getitem, b, 1), lambda b: block_index(b[1]), x.chunks,
                                       dtype)] if mode != "value" else [])


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
