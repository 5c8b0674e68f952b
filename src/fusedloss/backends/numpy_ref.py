"""The NumPy backend: the reference itself, behind the backend interface. Always available."""

from __future__ import annotations

import numpy as np

from .. import _binary_metrics, _logit_metrics, _reference, _reference_overlap
from .._spec import REGISTRY

NAME = "numpy"
DEVICE = False


def info() -> dict:
    return {"version": np.__version__, "threads": 1, "build": "NumPy reference (float64 internally)"}


def supports(spec, dtype) -> bool:
    return any(spec.name in table for table in (_reference.ELEMENTWISE, _reference.MULTICLASS, _reference.SEQUENCE,
                                                _reference.PAIRWISE, _reference.OVERLAP))


def elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads, cols=None):
    kw = REGISTRY[loss].unpack(*params)
    if cols is not None:  # the vector parameter, one value per column of the last axis
        kw[REGISTRY[loss].vector_param] = cols.astype(np.float64)
        p, y = p.reshape(-1, cols.size), y.reshape(-1, cols.size)
    value, grad, hess = (arr.reshape(-1) for arr in _reference.elementwise(loss, p, y, **kw))
    with np.errstate(all="ignore"):
        if w is not None:
            w64 = w.astype(np.float64)
            value = value * w64
            grad = grad * w64
            hess = hess * w64
        if value_out is not None:
            value_out[...] = value
        if grad_out is not None:
            grad_out[...] = grad * scale
        if hess_out is not None:
            hess_out[...] = hess * scale
        return float(np.sum(value)) if reduce else 0.0  # an overflow is the caller's to handle (fit_weights)


def elementwise_metrics(loss, params, p, y, w, scale, reduce, value_out, grad_out, nthreads, cols, table, nbins,
                        probabilities, ece_bins=0):
    """``elementwise`` plus the binary metrics of ``_binary_metrics.table`` in the table's first row (the contract
    of ``fusedloss._binary_metrics.run``)."""
    table[...] = 0.0
    table[:1] = _binary_metrics.table(p, y, w, probabilities, nbins, ece_bins)  # before the loss: grad_out may be p
    return elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, None, nthreads, cols)


def multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
               nthreads):
    spec = REGISTRY[loss]
    params = spec.unpack(*packed)
    soft = labels is None
    target = q.reshape(-1, C) if soft else labels
    w64 = None if w is None else w.astype(np.float64)
    value, grad, hess, keep = _reference.multiclass(loss, x.reshape(-1, C), target, soft,
                                                    None if cw is None else cw.astype(np.float64), ignore_index,
                                                    w64, scale, **params)
    kept = keep[:, None]  # ignored rows get 0 even when the scale is nan (every row ignored under "mean")
    with np.errstate(all="ignore"):
        if w is not None:
            kept = kept & (w64 != 0)[:, None]  # a row of weight 0 is ignored: 0, whatever its logits hold
            value = np.where(kept[:, 0], value, 0.0)
        if value_out is not None:
            value_out[...] = value
        if grad_out is not None:
            grad_out[...] = np.where(kept, grad, 0.0).reshape(-1)
        if hess_out is not None:
            hess_out[...] = np.where(kept, hess, 0.0).reshape(-1)
        return float(np.sum(value)) if reduce else 0.0


def multiclass_metrics(loss, packed, ignore_index, C, x, labels, w, cw, scale, reduce, value_out, grad_out,
                       rank_out, conf_out, nll_out, entropy_out, nthreads):
    """``multiclass`` plus the per-row metrics of ``_logit_metrics.row_metrics`` (hard labels; the loss's spec
    has ``row_metrics``). Ignored rows (label ``ignore_index``, weight 0) get rank -1 and 0.0."""
    softcap = REGISTRY[loss].unpack(*packed).get("softcap")
    kept = labels != ignore_index
    if w is not None:
        kept &= w != 0
    # before the loss: grad_out may be x itself
    rank, conf, nll, entropy = _logit_metrics.row_metrics(x.reshape(-1, C), np.where(kept, labels, 0), softcap)
    for out, rows, fill in ((rank_out, rank, -1), (conf_out, conf, 0.0), (nll_out, nll, 0.0),
                            (entropy_out, entropy, 0.0)):
        if out is not None:
            out[...] = np.where(kept, rows, fill)
    return multiclass(loss, packed, ignore_index, C, x, labels, None, w, cw, scale, reduce, value_out, grad_out,
                      None, nthreads)


def ctc(x, T, N, C, batch_first, log_probs, labels, offsets, target_lengths, input_lengths, blank, zero_infinity,
        gscale, loss_out, grad_out, nthreads):
    """The CTC contract (see fusedloss._ctc) by the reference, sequence by sequence in float64."""
    concat = np.concatenate([labels[o:o + n] for o, n in zip(offsets, target_lengths)]) if N else labels[:0]
    shape = (N, T, C) if batch_first else (T, N, C)
    losses, grad = _reference.ctc(x.reshape(shape), concat, input_lengths, target_lengths, blank=blank,
                                  inputs="log_probs" if log_probs else "logits", zero_infinity=zero_infinity,
                                  batch_first=batch_first)
    loss_out[...] = losses
    if grad_out is not None:
        per_seq = gscale.reshape((N, 1, 1) if batch_first else (1, N, 1))
        frames = np.arange(T)[None, :] < np.asarray(input_lengths)[:, None]  # (N, T): the frames a sequence has
        frames = frames[:, :, None] if batch_first else frames.T[:, :, None]
        with np.errstate(invalid="ignore"):  # 0 beyond a sequence's frames whatever its factor (NaN included)
            grad_out.reshape(shape)[...] = np.where(frames, grad * per_seq, 0.0)
    return 0.0


def pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads):
    """The pairwise contract (see fusedloss._pairwise) by the reference, in float64."""
    spec = REGISTRY[loss]
    rows = loss_out.size  # (not -1: rows of D = 0 entries have no size to infer it from)
    xs = [x.reshape(rows, D) if spec.vector_rows else x for x in (x1, x2, x3) if x is not None]
    losses, grads = _reference.pairwise(loss, xs, y, **spec.unpack(*packed))
    loss_out[...] = losses
    if gscale is not None:
        scale = gscale[:, None] if spec.vector_rows else gscale
        with np.errstate(invalid="ignore"):
            for out, g in zip((g1, g2, g3), grads):
                out[...] = (g * scale).reshape(-1)
    return None


def _overlap_arrays(act, x, labels, y, N, C, S, has_ignore, ignore):
    x3 = x.reshape(N, C, S)
    p = _reference_overlap.probabilities(x3, act)
    t, m = _reference_overlap.targets((N, C, S), None if labels is None else labels.reshape(N, S), y,
                                      ignore if has_ignore else None)
    return x3, p, t, m


def overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore, sums, nthreads):
    """The overlap contract's first pass (see fusedloss._overlap) by the reference, in float64."""
    with np.errstate(all="ignore"):
        sums[...] = _reference_overlap.sums(*_overlap_arrays(act, x, labels, y, N, C, S, has_ignore, ignore)[1:]
                                            ).reshape(-1)


def overlap_grad(act, x, labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads):
    """The overlap contract's gradient pass by the reference, in float64."""
    x3, p, t, m = _overlap_arrays(act, x, labels, y, N, C, S, has_ignore, ignore)
    with np.errstate(all="ignore"):
        grad[...] = _reference_overlap.grad_elements(x3, p, t, m, act, coef.reshape(N, C, 2)).reshape(-1)
