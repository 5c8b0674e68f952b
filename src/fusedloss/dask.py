"""Every loss over Dask arrays: ``import fusedloss.dask as fld``.

>>> v = fld.cross_entropy(logits, labels, label_smoothing=0.1)   # a lazy 0-d dask array
>>> v, g = fld.mse.value_and_grad(pred, target, sample_weight=w) # g: chunked like pred
>>> g, h = fld.log_cosh.grad_hess(pred, target)
>>> v, g, m = fld.cross_entropy.value_and_grad(logits, labels, metrics=("accuracy", "top5"))
>>> v, g, m = dask.compute(v, g, m)  # m: the Metrics of the in-memory call (m["accuracy"], m.state)

The same losses, options, reductions, dtypes and errors as the in-memory API (``fusedloss.<loss>``), on
``dask.array`` inputs (NumPy arrays are accepted too and wrapped):

- Each block runs the in-memory call (the compiled kernel the backend rules pick on the worker), once.
- "mean" and "sum" values are ``LossState`` partial results (``fl.<loss>.partial``) of the blocks, merged
  by a fixed tree (``SPLIT_EVERY`` states per node): never an average of block means.
- "mean" derivatives need the global divisor (sum of weights, kept rows' weights): where it depends on the
  shapes alone (no weights, no hard labels) it is computed when the graph is built; otherwise it comes from
  one small reduction over the weights / labels only. The derivative blocks are scaled by it as they are
  computed; the value of ``value_and_grad`` is merged from the same block calls.
- Weights whose sums leave the float range (near 1e308) give the in-memory call's "mean" value and
  derivatives: the states carry a power-of-two exponent (``LossState.exponent``), and for derivatives every
  block scales its weights by the one power of two that the divisor's reduction gives.
- "none" returns a dask array (of pred's chunks; the logits' leading chunks for multiclass losses).
- ``metrics=`` where the in-memory call takes it (the call and ``value_and_grad`` of cross_entropy and of the losses
  on a binary score), with its names and errors (raised when the graph is built): the metrics come last, as a 0-d
  dask array of dtype object that computes to the in-memory ``Metrics`` (floats by name, ``.state``), lazy as the
  value is; computed together (``dask.compute(v, g, m)``) each block runs once for all three. Each block's kernel
  call computes its metric state with its value (no second pass over the logits; the weights as given), and the
  states merge by the same fixed tree as the loss states (``merge_metric_states`` at each node): counts equal the
  whole call's exactly, float64 sums to a rounding per tree level (bit for bit the in-memory merge of the blocks'
  states up to ``SPLIT_EVERY`` blocks). An array rather than a ``dask.delayed`` object: ``dask.compute`` of arrays
  and delayed objects together returned their results out of order (dask 2026.8).
- Multiclass losses need the class axis (the last) in one chunk: a split class axis is rechunked to one
  chunk; labels, soft targets and weights are rechunked to the logits' chunks when they differ. So is pred's
  last axis for a per-column vector parameter (``pos_weight`` with one entry per column).
- Errors that the shapes, dtypes and parameters show are raised when the graph is built; errors in the
  values (labels out of range, targets outside the loss's domain, negative weights) are raised at compute
  time, naming the chunk and its starting index.
- Losses of other signatures split their own way: pairwise losses along the first axis (``_dask_pairwise``), ctc
  along the batch axis (``_dask_ctc``), the overlap losses (dice, tversky: a ratio of sums per class) along the
  sample and spatial axes, their blocks' sums added and combined once (``_dask_overlap``).
- ``backend=None`` takes the backend configured where the graph is built (``use_backend``, ``set_backend``,
  ``FUSEDLOSS_BACKEND``); when that is "auto", each worker picks its own. Kernel threads per task follow the
  thread rules of ``fusedloss.get_num_threads`` on each worker (Dask's workers set ``OMP_NUM_THREADS=1``, so
  one thread per task unless the workers' ``FUSEDLOSS_NUM_THREADS`` says otherwise).
"""

from __future__ import annotations

import math
from itertools import product
from operator import getitem

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fusedloss.dask needs dask[array]; install it with: pip install 'fusedloss[dask]'") from exc

from ._dispatch import Loss
from ._validate import (soft_target_metrics, GRAD, GRAD_HESS, HESSIAN_MODES, REDUCTIONS, VALUE, VALUE_AND_GRAD, _as_like, _as_pred,
                        _class_vector, _column_vector, mean_scale, scaled_weights)
from ._losses import LOSSES
from ._dask_graph import (SPLIT_EVERY, LazyLoss, _finalize, _lift, _located, _tree, host_backend, metrics_output,
                          reduced, to_arrays)
from ._state import (LossState, _ldexp, _weight_limit, _weight_shape, divisor, divisor_state, fit_class_weight, merge,
                     partial, refit_state)



# --- what runs on the workers --------------------------------------------------------------------------


def _block(name, mode, reduction, hessian, backend, params, metrics, where, p, y, w, part, whole):
    """One block's in-memory call: (value or LossState or None, gradient or None, Hessian or None, MetricState or
    None).

    ``metrics``: the metric names (None: no metrics), computed by the same kernel call as the value.
    ``part`` / ``whole``: this block's and the whole array's divisor (LossStates) for "mean" derivatives.
    """
    loss = LOSSES[name]
    try:
        if mode == "value":
            if reduction == "mean":
                value, found = _metrics_of(partial(loss, p, y, w, backend, params, metrics), metrics)
            else:
                value, found = _metrics_of(loss._run(p, y, reduction, w, backend, params, VALUE, metrics=metrics),
                                           metrics)
                if reduction == "sum":
                    value = LossState(name, value, math.nan, _count(loss, p))
            return value, None, None, found
        scale = None
        k = 0  # the weights' scale 2^-k (see _global_shift)
        w_run = w
        if reduction == "mean":
            k = _global_shift(loss, whole, p.dtype)
            scale = mean_scale(_ldexp(whole.denominator, whole.exponent - k))
            if k:
                w_run = scaled_weights(w, k, p.dtype, _weight_shape(loss, p.shape))
        per_element = reduction == "none"
        outputs = {"value_and_grad": VALUE_AND_GRAD, "grad": GRAD, "grad_hess": GRAD_HESS}[mode]
        asked = None if k else metrics  # (metrics: value_and_grad only)
        out, found = _metrics_of(loss._run(p, y, "none" if per_element else "sum", w_run, backend, params, outputs,
                                           None, None, hessian, grad_scale=scale, metrics=asked), asked)
        if metrics is not None and asked is None:
            # the weights, beyond the float range, ran scaled: the metrics weigh them as given (the in-memory call
            # computes its metrics again from them too)
            found = _metrics_of(loss._run(p, y, "sum", w, backend, params, VALUE, metrics=metrics), metrics)[1]
        if mode == "grad":
            return None, out, None, None
        if mode == "grad_hess":
            return None, out[0], out[1], None
        value, g = out
        if not per_element:
            if part is None:
                value = LossState(name, value, math.nan, _count(loss, p))
            else:  # the block's sum at the weights' scale, and its divisor brought to that scale
                value = refit_state(loss, p, y, w, backend, params, LossState(
                    name, float(value), _ldexp(part.denominator, part.exponent - k), _count(loss, p), k))
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc
    return value, g, None, found


def _metrics_of(out, metrics):
    """(a call's results without its metrics, their state): ``out`` as it is and None when ``metrics`` is None."""
    if metrics is None:
        return out, None
    return (out[0] if len(out) == 2 else out[:-1]), out[-1].state


def _global_shift(loss: Loss, whole: LossState, dtype) -> int:
    """The k with which every block's weights are scaled by 2^-k for "mean" derivatives: 0 (the common case,
    weights as given) unless the whole divisor is beyond the plain call's weight limit; then the k that brings it
    into [1/2, 1), as the plain call's fit_weights. One k for every block, known from the divisor's reduction
    that "mean" derivatives wait for anyway: no further pass over the data, and the same bits on every run."""
    if whole.exponent == 0 and not whole.denominator > _weight_limit(loss, dtype):
        return 0
    if not math.isfinite(whole.denominator):
        return whole.exponent  # infinite weights: nothing to scale
    return whole.exponent + math.frexp(whole.denominator)[1]


def _count(loss: Loss, p) -> int:
    return p.size // p.shape[-1] if loss.spec.kind == "multiclass" else p.size


def _divisor_block(name, params, shape, dtype, where, y, w) -> LossState:
    """A block's share of the "mean" divisor, from its labels and weights only."""
    loss = LOSSES[name]
    try:
        return divisor_state(loss, shape, dtype, y, w, params)
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc


# --- graph construction ----------------------------------------------------------------------------------


def _check_leading(w, shape: tuple, name: str) -> None:
    if w.shape != shape and (w.ndim > len(shape) or shape[: w.ndim] != w.shape):
        raise ValueError(f"{name}: sample_weight must have pred's shape {shape} or a leading part of it "
                         f"(broadcast along the remaining axes), got shape {w.shape}")


def _prepare(loss: Loss, pred, target, sample_weight, params: dict):
    """(pred, target, weight) as aligned dask arrays, and pred's dtype, after the checks knowable now."""
    spec = loss.spec
    name = loss.name
    if not isinstance(pred, da.Array) and not hasattr(pred, "dtype"):
        pred = _as_pred(pred, name)  # Python values convert as in memory (integers to float64)
    p = _lift(pred, target if isinstance(target, da.Array) else None, "pred", name)
    dtype = _as_pred(np.empty(0, p.dtype), name).dtype  # the in-memory dtype rules and errors
    if p.dtype != dtype:
        p = p.astype(dtype)  # non-native byte order
    stand_in = np.broadcast_to(np.empty((), dtype), p.shape)  # shape and dtype, no memory
    checked = loss._params(params)[0] if params else loss._default_params[0]
    multiclass = spec.kind == "multiclass"
    if multiclass:
        if p.ndim < 1 or p.shape[-1] < 1:
            raise ValueError(f"{name}: logits need a class axis (the last) of length >= 1, got shape {p.shape}")
        if p.numblocks[-1] != 1:
            p = p.rechunk({p.ndim - 1: -1})  # a row's classes must sit in one block
    y = _lift(target, p, "target", name)
    w = None if sample_weight is None else _lift(sample_weight, p, "sample_weight", name)
    if w is not None:
        _as_like(np.empty(0, w.dtype), stand_in, "sample_weight", name)

    if multiclass:
        lead = p.shape[:-1]
        if y.dtype.kind in "iu" and spec.hard_labels:
            if y.shape != lead:
                raise ValueError(f"{name}: integer labels must have the logits' shape without the class axis "
                                 f"{lead}, got {y.shape}")
        elif y.dtype.kind == "f" and spec.soft_labels:
            if y.shape != p.shape:
                raise ValueError(f"{name}: soft targets (floating) must have the logits' shape {p.shape}, "
                                 f"got {y.shape}")
        else:
            wanted = " or ".join(filter(None, [
                f"integer class labels of shape {lead}" if spec.hard_labels else "",
                f"floating probabilities of shape {p.shape}" if spec.soft_labels else "",
            ]))
            raise TypeError(f"{name}: target must be {wanted}, got dtype {y.dtype} and shape {y.shape}")
        if w is not None:
            if not lead:
                raise ValueError(f"{name}: sample_weight needs leading axes to weight; logits have shape {p.shape}")
            _check_leading(w, lead, name)
        _class_vector(spec, checked, stand_in)  # per-class vector length
    else:
        _as_like(np.empty(0, y.dtype), stand_in, "target", name)
        if y.shape != p.shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got pred {p.shape} "
                             f"and target {y.shape}")
        if w is not None:
            _check_leading(w, p.shape, name)
        if _column_vector(spec, checked, stand_in) is not None and p.numblocks[-1] != 1:
            # one entry per column of the last axis: each block needs every column (a 1-d pred in one chunk)
            p = p.rechunk({p.ndim - 1: -1})
    if y.chunks != p.chunks[: y.ndim]:
        y = y.rechunk(p.chunks[: y.ndim])
    if w is not None and w.chunks != p.chunks[: w.ndim]:
        w = w.rechunk(p.chunks[: w.ndim])
    return p, y, w, dtype


def _graph(loss: Loss, mode: str, pred, target, reduction, sample_weight, backend, params, hessian="exact",
           metrics=None):
    """The dask arrays of one call: (value,) / (value, grad) / (grad,) / (grad, hess); with ``metrics`` (names, for
    "value" and "value_and_grad") a 0-d dask array of the ``Metrics`` after them."""
    name = loss.name
    derivatives = mode != "value"
    if derivatives and not loss.spec.differentiable:
        raise TypeError(f"{name} is not differentiable: it has no gradient or Hessian; call {name}(...) "
                        "for its value")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    if hessian not in HESSIAN_MODES:
        raise ValueError(f"{name}: hessian must be 'exact' or 'ones', got {hessian!r}")
    if metrics is not None:  # the in-memory names and errors (a loss without metrics, a bad name)
        metrics = loss._metric_spec(metrics, None).names
    backend = host_backend(name, backend)  # None ("auto"): each worker resolves its own
    p, y, w, dtype = _prepare(loss, pred, target, sample_weight, params)
    multiclass = loss.spec.kind == "multiclass"
    if metrics is not None and multiclass and y.dtype.kind not in "iu":
        raise soft_target_metrics(name)
    if reduction == "mean":
        # class weights that sum beyond the float range, scaled as the plain call scales them ("mean" does
        # not depend on their scale): known now, for every block
        params, _ = fit_class_weight(loss, p.shape, dtype, multiclass and y.dtype.kind in "iu", params)
    what = "logits" if multiclass else "pred"

    token = tokenize(name, mode, reduction, hessian, backend, sorted(params.items(), key=lambda kv: kv[0]), metrics,
                     p, y, w)
    work = f"fusedloss-{name}-{mode}-{token}"
    layer: dict = {}
    starts = [np.concatenate(([0], np.cumsum(c)[:-1])).astype(int).tolist() for c in p.chunks]
    blocks = list(product(*map(range, p.numblocks)))

    def where(idx):
        return f"chunk {idx} of the {what}, which starts at index {tuple(s[i] for s, i in zip(starts, idx))}"

    def y_key(idx):
        return (y.name, *idx[: y.ndim])

    def w_key(idx):
        return None if w is None else (w.name, *idx[: w.ndim])

    need_divisor = derivatives and reduction == "mean"
    whole = None
    parts: dict = {}
    if need_divisor:
        # the divisor reads labels only where they matter (multiclass hard labels)
        reads_labels = multiclass and y.dtype.kind in "iu"
        if w is None and not reads_labels:
            # it depends on the shapes alone: known now, so no derivative block waits for a reduction (a
            # barrier that would make the scheduler load every input chunk before the first block runs)
            for idx in blocks:
                shape = tuple(c[i] for c, i in zip(p.chunks, idx))
                parts[idx] = LossState(name, 0.0, *divisor(loss, shape, dtype, None, None, params))
            whole = merge(list(parts.values()))
        else:
            for idx in blocks:
                shape = tuple(c[i] for c, i in zip(p.chunks, idx))
                layer[(work + "-divisor", *idx)] = (_divisor_block, name, params, shape, dtype, where(idx),
                                                    y_key(idx) if reads_labels else None, w_key(idx))
                parts[idx] = (work + "-divisor", *idx)
            whole = _tree(layer, work + "-divisor-tree", list(parts.values()))
    for idx in blocks:
        part = parts.get(idx)
        layer[(work, *idx)] = (_block, name, mode, reduction, hessian, backend, params, metrics, where(idx),
                               (p.name, *idx), y_key(idx), w_key(idx), part, whole)
    graph = HighLevelGraph.from_collections(work, layer, dependencies=[a for a in (p, y, w) if a is not None])
    layers = dict(graph.layers)
    deps = dict(graph.dependencies)

    def output(slot: int, out_name: str, key_of, chunks, out_dtype):
        layers[out_name] = {key_of(idx): (getitem, (work, *idx), slot) for idx in blocks}
        deps[out_name] = {work}
        return chunks, out_dtype

    results = []
    value_chunks = p.chunks[:-1] if multiclass else p.chunks
    if mode in ("value", "value_and_grad"):
        vname = f"{work}-value"
        if reduction == "none":
            chunks, vdt = output(0, vname, lambda idx: (vname, *idx[: len(value_chunks)]), value_chunks, dtype)
            results.append((vname, chunks, vdt))
        else:
            results.append(reduced(layers, deps, work, vname, [(work, *idx) for idx in blocks],
                                   (_finalize, reduction)))
    if derivatives:
        for slot, suffix in ((1, "grad"), (2, "hess")) if mode == "grad_hess" else ((1, "grad"),):
            oname = f"{work}-{suffix}"
            output(slot, oname, lambda idx, o=oname: (o, *idx), p.chunks, dtype)
            results.append((oname, p.chunks, dtype))
    if metrics is not None:
        results.append(metrics_output(layers, deps, work, [(work, *idx) for idx in blocks], 3))
    return to_arrays(layers, deps, results)


# --- the public objects -------------------------------------------------------------------------------------


class DaskLoss(LazyLoss):
    """``fusedloss.<loss>`` over dask arrays: the same signature (without ``grad_out`` / ``hess_out``),
    returning lazy dask arrays."""

    def __init__(self, loss):
        super().__init__(loss, "")

    def __call__(self, pred, target, *, reduction="mean", sample_weight=None, backend=None, metrics=None, **params):
        """The value: a 0-d float64 dask array ("mean", "sum"), or a dask array ("none"). With ``metrics`` (names, as
        in memory): (value, metrics), ``metrics`` a 0-d dask array that computes to the ``Metrics``."""
        return _graph(self.loss, "value", pred, target, reduction, sample_weight, backend, params, metrics=metrics)

    def value_and_grad(self, pred, target, *, reduction="mean", sample_weight=None, backend=None, metrics=None,
                       **params):
        """(value, gradient): both lazy; computed together (``dask.compute(v, g)``) each block runs once. With
        ``metrics``: (value, gradient, metrics), ``metrics`` a 0-d dask array of the ``Metrics``."""
        return _graph(self.loss, "value_and_grad", pred, target, reduction, sample_weight, backend, params,
                      metrics=metrics)

    def grad(self, pred, target, *, reduction="mean", sample_weight=None, backend=None, **params):
        """The gradient of the value with respect to pred, chunked like pred."""
        return _graph(self.loss, "grad", pred, target, reduction, sample_weight, backend, params)

    def grad_hess(self, pred, target, *, reduction="mean", sample_weight=None, hessian="exact", backend=None,
                  **params):
        """(gradient, diagonal of the Hessian), chunked like pred; ``hessian`` as in the in-memory API."""
        return _graph(self.loss, "grad_hess", pred, target, reduction, sample_weight, backend, params, hessian)


# every elementwise and multiclass loss; sequence losses (ctc: own signature) split along the batch axis
KINDS = ("elementwise", "multiclass")
LOSSES_DASK = {name: DaskLoss(loss) for name, loss in LOSSES.items() if loss.spec.kind in KINDS}
from ._dask_ctc import DaskSequenceLoss  # noqa: E402

LOSSES_DASK.update({name: DaskSequenceLoss(loss) for name, loss in LOSSES.items() if loss.spec.kind == "sequence"})
from ._dask_pairwise import DaskPairwiseLoss  # noqa: E402

# pairwise losses (two or three inputs) split along the first axis
LOSSES_DASK.update({name: DaskPairwiseLoss(loss) for name, loss in LOSSES.items() if loss.spec.kind == "pairwise"})
from ._dask_overlap import DaskOverlapLoss  # noqa: E402

# overlap losses (a ratio of sums per class) split along the sample and spatial axes
LOSSES_DASK.update({name: DaskOverlapLoss(loss) for name, loss in LOSSES.items() if loss.spec.kind == "overlap"})
globals().update(LOSSES_DASK)


def __getattr__(attr):
    """Losses registered after this module was imported."""
    if attr in LOSSES and LOSSES[attr].spec.kind in KINDS:
        LOSSES_DASK[attr] = DaskLoss(LOSSES[attr])
        return LOSSES_DASK[attr]
    raise AttributeError(f"module 'fusedloss.dask' has no attribute {attr!r}")


__all__ = ["DaskLoss", "LOSSES_DASK", "SPLIT_EVERY", *LOSSES_DASK]
