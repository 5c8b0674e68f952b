"""Mergeable partial results: the state of a loss over a piece of the data, and how pieces combine.

A reduced loss is ``sum(w * l) / D`` ("mean") or ``sum(w * l)`` ("sum"), where ``D`` is the sum of the
weights (of the kept rows' class-weighted weights for cross_entropy; see ``LossSpec.mean_over``). Both the
sum and ``D`` are sums over the data, so the value over a union of pieces follows from the pieces' sums:

    merged.sum = fsum(piece sums),   merged.denominator = fsum(piece denominators),
    merged.value("mean") = merged.sum / merged.denominator

never from averaging the pieces' means. ``math.fsum`` rounds exactly once, so a merge does not depend on the
order of the pieces (and is deterministic); what remains between a merge and the call on the whole is how
each backend's kernel rounds its own float64 sum (fixed blocks of 4096 elements summed in order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import (VALUE, _as_pred, _class_vector, _mean_denominator, _prepare_row_weight, _prepare_targets,
                        _prepare_weight, _weight_sum, is_device_array)

__all__ = ["LossState", "merge", "partial", "divisor"]


@dataclass(frozen=True)
class LossState:
    """The partial result of a loss over a piece of the data (``fl.<loss>.partial(...)``).

    ``sum``: float64 sum of the weighted losses. ``denominator``: what "mean" divides by (the sum of the
    weights; for multiclass losses over the kept rows, class-weighted for cross_entropy). ``count``: the
    number of elements (elementwise losses) or rows (multiclass, ignored rows included).
    """

    loss: str
    sum: float
    denominator: float
    count: int

    def merge(self, other: "LossState") -> "LossState":
        """The state of both pieces together (same as ``fusedloss.merge([self, other])``)."""
        return merge((self, other))

    def value(self, reduction: str = "mean") -> float:
        """The reduced value over the data seen, as the plain call with ``reduction`` returns it."""
        if reduction == "sum":
            return float(self.sum)
        if reduction == "mean":
            return self.sum / self.denominator if self.denominator != 0 else math.nan
        raise ValueError(f"{self.loss}: LossState.value takes reduction 'mean' or 'sum', got {reduction!r} "
                         "('none' has no partial form: call the loss itself)")


def _exact_sum(values) -> float:
    """The exactly rounded sum (math.fsum) of an iterable of floats; in order with ``+`` where fsum refuses
    (inf - inf, overflow), which gives the nan / inf the plain call gives."""
    values = list(values)
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        total = 0.0
        for v in values:
            total += v
        return total


def checked_states(states, kind: type, owner: str, source: str, conflict) -> list:
    """``states`` as a list, checked before a merge: at least one, each a ``kind``, each compatible with the
    first (``conflict(first, other)`` is None, else the reason, raised as ValueError after ``owner:``)."""
    states = list(states)
    if not states:
        raise ValueError(f"{owner}: expected at least one {kind.__name__}, got none")
    for s in states:
        if not isinstance(s, kind):
            raise TypeError(f"{owner}: expected {kind.__name__} objects ({source}), got {type(s).__name__}")
    for s in states[1:]:
        reason = conflict(states[0], s)
        if reason is not None:
            raise ValueError(f"{owner}: {reason}")
    return states


def summed_fields(states, exact=(), counts=()) -> dict:
    """The fields of a merged state: those named in ``exact`` (float sums) added exactly rounded, those in
    ``counts`` (integers) added as integers."""
    out = {f: _exact_sum(getattr(s, f) for s in states) for f in exact}
    out.update({f: sum(getattr(s, f) for s in states) for f in counts})
    return out


def merge(states) -> LossState:
    """Combine the ``LossState`` of pieces of the data into the state of their union.

    Sums and denominators are added exactly rounded (``math.fsum``), so the result does not depend on the
    order or grouping of the states beyond one final rounding. All states must come from the same loss
    (with the same parameters: the state does not record them).
    """
    states = checked_states(states, LossState, "merge", "from fl.<loss>.partial",
                            lambda a, b: None if a.loss == b.loss else
                            f"states of different losses ({a.loss} and {b.loss}) cannot be merged")
    if len(states) == 1:
        return states[0]
    return LossState(states[0].loss, **summed_fields(states, exact=("sum", "denominator"), counts=("count",)))


def divisor(loss, shape: tuple, dtype, target, sample_weight, params: dict) -> tuple[float, int]:
    """(what "mean" divides by, count) for pred of ``shape`` and ``dtype``, computed as the plain call does.

    Reads only the target (labels, for multiclass losses that ignore rows or weight classes; None stands
    for soft targets) and the weights: pred itself is a shape-only stand-in.
    """
    spec = loss.spec
    checked = loss._params(params)[0] if params else loss._default_params[0]
    stand_in = np.broadcast_to(np.empty((), dtype), shape)  # shape and dtype, no memory
    if spec.kind != "multiclass":
        if sample_weight is None:
            return float(stand_in.size), stand_in.size
        w = _prepare_weight(sample_weight, stand_in, loss.name)
        return _weight_sum(w), stand_in.size
    C = shape[-1]
    lead = shape[:-1]
    R = stand_in.size // C if C else 0
    if target is None:  # soft targets: every row counts, so the divisor does not need them
        labels, all_kept = None, False
    else:
        labels, _, all_kept = _prepare_targets(spec, checked, target, stand_in)
    rw = None if sample_weight is None else _prepare_row_weight(sample_weight, lead, stand_in, loss.name)
    cw = _class_vector(spec, checked, stand_in)
    ignore = int(checked[spec.ignore_param]) if spec.ignore_param else -1
    return _mean_denominator(spec, labels, ignore, rw, cw, R, all_kept), R


def partial(loss, pred, target, sample_weight, backend, params: dict) -> LossState:
    """``loss.partial``: one pass of the kernel for the sum, one over the weights / labels for the divisor."""
    if is_device_array(pred):
        raise TypeError(f"{loss.name}.partial takes host arrays; got a device array (copy it to the host, or "
                        "call the loss with reduction='sum' for the sum alone)")
    p = _as_pred(pred, loss.name)
    total = loss._run(p, target, "sum", sample_weight, backend, params, VALUE)
    denominator, count = divisor(loss, p.shape, p.dtype, target, sample_weight, params)
    return LossState(loss.name, float(total), denominator, count)
