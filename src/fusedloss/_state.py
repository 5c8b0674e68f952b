"""Mergeable partial results: the state of a loss over a piece of the data, and how pieces combine.

A reduced loss is ``sum(w * l) / D`` ("mean") or ``sum(w * l)`` ("sum"), where ``D`` is the sum of the
weights (of the kept rows' class-weighted weights for cross_entropy; see ``LossSpec.mean_over``). Both the
sum and ``D`` are sums over the data, so the value over a union of pieces follows from the pieces' sums:

    merged.sum = fsum(piece sums),   merged.denominator = fsum(piece denominators),
    merged.value("mean") = merged.sum / merged.denominator

never from averaging the pieces' means. ``math.fsum`` rounds exactly once, so a merge does not depend on the
order of the pieces (and is deterministic); what remains between a merge and the call on the whole is how
each backend's kernel rounds its own float64 sum (fixed blocks of 4096 elements summed in order).

Weights so large that a sum leaves the float range (near 1e308) are handled as the plain call handles them
(``_validate``: fit_weights / refit_total): "mean" is unchanged when every weight is multiplied by 2^-k, so a
piece whose denominator (or, with weights summing to more than 1, whose sum) overflowed is computed again with
its weights scaled into a sum in [1/2, 1), and its state records k as ``exponent``. A merge brings the pieces to
one shared exponent (exact: powers of two), so "mean" is the ratio of finite numbers and "sum" is inf exactly
where the true sum is beyond the float range. The ordinary path pays a comparison per piece, no second pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import (VALUE, WEIGHT_SUM_LIMIT, _as_pred, _class_vector, _mean_denominator, _prepare_row_weight,
                        _prepare_targets, check_weight_total, is_device_array, prepare_weight_total, scaled_weights,
                        sum_exponent)

__all__ = ["LossState", "merge", "partial", "divisor"]


@dataclass(frozen=True)
class LossState:
    """The partial result of a loss over a piece of the data (``fl.<loss>.partial(...)``).

    ``sum``: float64 sum of the weighted losses. ``denominator``: what "mean" divides by (the sum of the
    weights; for multiclass losses over the kept rows, class-weighted for cross_entropy). ``count``: the
    number of elements (elementwise losses) or rows (multiclass, ignored rows included). ``exponent``: the sum
    and the denominator stand for ``sum * 2**exponent`` and ``denominator * 2**exponent`` (0 unless the weights
    are so large that these sums leave the float range; "mean" is their ratio, which the exponent leaves alone).
    """

    loss: str
    sum: float
    denominator: float
    count: int
    exponent: int = 0

    def merge(self, other: "LossState") -> "LossState":
        """The state of both pieces together (same as ``fusedloss.merge([self, other])``)."""
        return merge((self, other))

    def value(self, reduction: str = "mean") -> float:
        """The reduced value over the data seen, as the plain call with ``reduction`` returns it."""
        if reduction == "sum":
            return _ldexp(float(self.sum), self.exponent)
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


def _ldexp(x: float, e: int) -> float:
    """x * 2^e, inf (of x's sign) where that is beyond the float range."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


def _overflowed(total: float, pieces) -> bool:
    """Whether a sum of finite pieces came out infinite."""
    return math.isinf(total) and all(math.isfinite(v) for v in pieces)


def _shared_exponent(states) -> tuple[float, float, int]:
    """(sum, denominator, exponent) of states with different exponents, or whose sums overflowed: the pieces
    scaled to the largest exponent (exact, short of the subnormal range, where a piece is below the total's last
    digit), and when that sum still overflows by a further 2^b with 2^b > the number of pieces (then it cannot)."""
    top = max(s.exponent for s in states)
    for extra in (0, len(states).bit_length()):
        e = top + extra
        total = _exact_sum(math.ldexp(s.sum, s.exponent - e) for s in states)
        denominator = _exact_sum(math.ldexp(s.denominator, s.exponent - e) for s in states)
        if not (math.isinf(total) or math.isinf(denominator)):
            break
    return total, denominator, e


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


def metric_states(states, kind: type) -> list:
    """``states`` of metrics (``kind``: a metric state class with ``names``) as a list, checked before a merge:
    the same metrics in each."""
    return checked_states(states, kind, "merge_states", "Metrics.state",
                          lambda a, b: None if set(a.names) == set(b.names) else
                          f"states of different metrics cannot be merged: {a.names} and {b.names}")


def summed_bins(states, field: str = "bins") -> dict:
    """The merged histograms of metric states: ``<field>[n]`` (rows x n) added bin by bin, exactly rounded."""
    out = {}
    for n, first in getattr(states[0], field).items():
        stack = np.stack([getattr(s, field)[n] for s in states])  # (pieces, rows, n)
        out[n] = np.array([[_exact_sum(stack[:, i, j]) for j in range(n)] for i in range(first.shape[0])]) \
            .reshape(first.shape[0], n)
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
    fields = summed_fields(states, exact=("sum", "denominator"), counts=("count",))
    if any(s.exponent for s in states) or _overflowed(fields["sum"], [s.sum for s in states]) or \
            _overflowed(fields["denominator"], [s.denominator for s in states]):
        total, denominator, exponent = _shared_exponent(states)
        return LossState(states[0].loss, total, denominator, fields["count"], exponent)
    return LossState(states[0].loss, **fields)


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
        w, total = prepare_weight_total(sample_weight, stand_in, loss.name)
        if not math.isfinite(total):  # a nan or infinite weight is refused (as the plain call refuses it)
            check_weight_total(total, w, loss.name, shape)
        return total, stand_in.size
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
    denominator = _mean_denominator(spec, labels, ignore, rw, cw, R, all_kept)
    if rw is not None and not math.isfinite(denominator):
        check_weight_total(denominator, rw, loss.name, lead)
    return denominator, R


def _weight_limit(loss, dtype) -> float:
    """The largest "mean" denominator used as it stands, as the plain call has it (``WEIGHT_SUM_LIMIT``: of
    pred's dtype for elementwise losses, float64's for multiclass ones)."""
    return WEIGHT_SUM_LIMIT[np.dtype(np.float64 if loss.spec.kind == "multiclass" else dtype)]


def _class_weighted(loss, params: dict) -> bool:
    """Whether a multiclass loss has class weights (the plain "mean" rescales the weights of a call with sample
    weights, or with class weights)."""
    if loss.spec.kind != "multiclass" or loss.spec.vector_param is None:
        return False
    checked = loss._params(params)[0] if params else loss._default_params[0]
    return checked[loss.spec.vector_param] is not None


def _weight_shape(loss, shape: tuple) -> tuple:
    return shape[:-1] if loss.spec.kind == "multiclass" else shape


def fit_class_weight(loss, shape: tuple, dtype, hard_labels: bool, params: dict) -> tuple[dict, int]:
    """(params, s) for a "mean": class weights that sum beyond the float range scaled by 2^-s, where they weight
    the divisor too (``mean_over`` "class_weight", hard labels), as the plain call does (its rows sum them, and
    such a mean does not depend on their scale); else (params, 0)."""
    spec = loss.spec
    if spec.kind != "multiclass" or spec.mean_over != "class_weight" or not hard_labels:
        return params, 0
    checked = loss._params(params)[0] if params else loss._default_params[0]
    cw = _class_vector(spec, checked, np.broadcast_to(np.empty((), dtype), shape))
    if cw is None:
        return params, 0
    with np.errstate(over="ignore"):
        if not float(np.sum(cw, dtype=np.float64)) > WEIGHT_SUM_LIMIT[np.dtype(np.float64)]:
            return params, 0
    s = sum_exponent((cw,), cw.size)
    return {**params, spec.vector_param: np.ldexp(cw.astype(np.float64), -s).astype(dtype)}, s


def divisor_state(loss, shape: tuple, dtype, target, sample_weight, params: dict) -> LossState:
    """A piece's "mean" divisor as a state (sum 0): ``divisor``, and where it is beyond the weight limit (the
    plain call's fit_weights), the divisor of the weights scaled by 2^-k into a sum in [1/2, 1), exponent k."""
    denominator, count = divisor(loss, shape, dtype, target, sample_weight, params)
    if not denominator > _weight_limit(loss, dtype) or not (sample_weight is not None or _class_weighted(loss, params)):
        return LossState(loss.name, 0.0, denominator, count)
    if math.isfinite(denominator):
        k = math.frexp(denominator)[1]
    else:  # an e with 2^e above the true sum: the weights' and class weights' largest entries, and the count
        checked = loss._params(params)[0] if params else loss._default_params[0]
        stand_in = np.broadcast_to(np.empty((), dtype), shape)
        cw = _class_vector(loss.spec, checked, stand_in) if loss.spec.kind == "multiclass" else None
        w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        k = sum_exponent((w, cw), count)
    w = scaled_weights(sample_weight, k, dtype, _weight_shape(loss, shape))
    return LossState(loss.name, 0.0, divisor(loss, shape, dtype, target, w, params)[0], count, k)


def refit_state(loss, p, target, sample_weight, backend, params: dict, state: LossState) -> LossState:
    """A "mean" piece's state whose sum came out inf or nan while its (scaled) weights summed to 1 or more,
    computed again (the value only) with the weights scaled into a sum in [1/2, 1), as the plain call's
    refit_total; else ``state``. ``state.exponent``: the scale the sum was computed at; ``sample_weight`` as
    given."""
    if math.isfinite(state.sum) or not (sample_weight is not None or _class_weighted(loss, params)):
        return state
    if not (math.isfinite(state.denominator) and state.denominator >= 1.0):  # else scaling would not lower it
        return state
    shift = math.frexp(state.denominator)[1]
    k = state.exponent + shift
    w = scaled_weights(sample_weight, k, p.dtype, _weight_shape(loss, p.shape))
    total = loss._run(p, target, "sum", w, backend, params, VALUE)
    return LossState(loss.name, float(total), math.ldexp(state.denominator, -shift), state.count, k)


def partial(loss, pred, target, sample_weight, backend, params: dict, metrics=None):
    """``loss.partial``: one pass of the kernel for the sum, one over the weights / labels for the divisor
    (and, for weights whose sums leave the float range, the kernel again on weights scaled by a power of two).
    With ``metrics`` (names; fusedloss.dask's blocks): (the state, the ``Metrics`` of the kernel's first pass, which
    weighs the weights as given)."""
    if is_device_array(pred):
        raise TypeError(f"{loss.name}.partial takes host arrays; got a device array (copy it to the host, or "
                        "call the loss with reduction='sum' for the sum alone)")
    p = _as_pred(pred, loss.name)
    total = loss._run(p, target, "sum", sample_weight, backend, params, VALUE, metrics=metrics)  # (checks the args)
    found = None
    if metrics is not None:
        total, found = total
    hard = loss.spec.kind == "multiclass" and np.asarray(target).dtype.kind in "iu"
    params, s = fit_class_weight(loss, p.shape, p.dtype, hard, params)
    state = divisor_state(loss, p.shape, p.dtype, target, sample_weight, params)
    if state.exponent or s:  # the sum again, at the weights' scale
        w = sample_weight
        if state.exponent:
            w = scaled_weights(sample_weight, state.exponent, p.dtype, _weight_shape(loss, p.shape))
        total = loss._run(p, target, "sum", w, backend, params, VALUE)
    state = refit_state(loss, p, target, sample_weight, backend, params,
                        LossState(loss.name, float(total), state.denominator, state.count, state.exponent))
    if s:
        state = LossState(loss.name, state.sum, state.denominator, state.count, state.exponent + s)
    return state if metrics is None else (state, found)
