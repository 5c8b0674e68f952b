"""Binary classification metrics from the loss pass: their names, the NumPy specification of the sums, and the
mergeable state.

A loss on one binary score (``LossSpec.binary_scores``: the logits of ``LossSpec.probabilities == "binary"``,
binary_cross_entropy_with_logits and binary_focal; or probabilities of a target in [0, 1], binary_cross_entropy)
sums, while it computes its loss, what these
metrics need. With ``p = sigmoid(x)`` in float64 (or ``p = x`` for a loss on probabilities), the target ``y`` in
[0, 1] and the sample weight ``w`` (1 without weights), over the elements:

- the weight of the correct predictions, ``w (y if positive else 1 - y)``, a prediction being positive when
  ``p > 1/2`` (a logit ``x > 0``; scikit-learn's threshold on probabilities: ``p == 1/2`` is negative). For a
  hard target that is ``w [prediction == y]``; a soft target counts as y positive and 1 - y negative.
- the weighted squared error ``w (p - y)^2`` (the Brier score's sum);
- per bin ``b`` of ``N`` equal-width bins of ``p`` (bin b holds ``[b/N, (b+1)/N)``, the last one 1 too) the
  weight of the positives ``w y`` and of the negatives ``w (1 - y)``: a ROC or precision-recall curve with the
  bin edges as thresholds;
- per bin of ``M`` equal-width bins of ``p`` (the same rule, an ``M`` of its own) the weight ``w``, the weighted
  sum of the probabilities ``w p`` and the weight of the positives ``w y``: the calibration (reliability)
  histogram of the expected calibration error;
- how many ``p`` are NaN (any makes every metric NaN, as it makes the loss NaN; its element counts in bin 0).

The kernels (cpp/include/fusedloss/binary_metrics.hpp; ``backends.numba_cpu.elementwise_metrics``) write these
sums into a table with one row per fixed run of elements (``table_rows``); ``table`` below is the NumPy
specification of it (one row). ``fold`` turns a table into a ``BinaryMetricState``, and states of pieces merge
into the state of their union (``merge_states``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ._logit_metrics import StateMethods, calibration_error, merge_states as merge_logit_states, parse_names
from ._state import _exact_sum, metric_states, summed_bins, summed_fields

__all__ = ["BinaryMetricSpec", "BinaryMetricState", "parse", "table", "table_rows", "fold", "merge_states",
           "run", "VALID"]

VALID = "'accuracy', 'brier', 'rocN' (ROC AUC over N probability bins, e.g. 'roc256'), 'apN' (average precision " \
        "over N bins), 'eceN' (expected calibration error over N probability bins, e.g. 'ece15')"
_PATTERN = re.compile(r"(accuracy|brier)|(roc|ap)([1-9][0-9]*)|ece([1-9][0-9]*)")

# Blocks (of BLOCK elements, the kernels' reduction block) per table row: a row sums 64 Ki elements.
BLOCK = 4096
ROW_BLOCKS = 16


@dataclass(frozen=True)
class BinaryMetricSpec:
    """Parsed metric names: ``nbins`` the bin count of the curves, ``ece_bins`` that of the calibration
    histogram (0: none asked for)."""

    names: tuple[str, ...]
    nbins: int
    ece_bins: int = 0

    @property
    def columns(self) -> int:
        """The columns of the kernels' table (``table``)."""
        return 3 + 2 * self.nbins + 3 * self.ece_bins


_PARSED: dict = {}


def _spec_of(owner: str):
    def build(names: tuple, matches: list) -> BinaryMetricSpec:
        bins = {int(m.group(3)) for m in matches if m.group(3)}
        if len(bins) > 1:
            raise ValueError(f"{owner}: the curves of one call share one bin count, got {sorted(bins)} "
                             f"(ask for e.g. 'roc256' and 'ap256')")
        ece = {int(m.group(4)) for m in matches if m.group(4)}
        if len(ece) > 1:
            raise ValueError(f"{owner}: one expected calibration error per call, got {sorted(ece)} bins "
                             f"(ask for e.g. 'ece15')")
        return BinaryMetricSpec(names, bins.pop() if bins else 0, ece.pop() if ece else 0)

    return build


def parse(metrics, owner: str) -> BinaryMetricSpec:
    """``metrics`` (a name or an iterable of names) as a ``BinaryMetricSpec``; a bad name raises ValueError
    naming ``owner`` and the valid names."""
    return parse_names(metrics, owner, VALID, _PATTERN, _PARSED, _spec_of(owner), "valid names for a binary score")


def table_rows(n: int) -> int:
    """The rows of the kernels' table for n elements: one per ROW_BLOCKS blocks (at least one)."""
    blocks = -(-n // BLOCK)
    return max(1, -(-blocks // ROW_BLOCKS))


# --- the specification of the sums -----------------------------------------------------------------------------


def element_terms(x, y, w, probabilities):
    """One element (score ``x``, target ``y``, weight ``w``, float64) as the compiled kernels of the Numba CPU and
    CUDA backends take it (both compile this function: ``_jit.binary_metrics_kernel``): (p, p for the bins (0
    for a NaN), its NaN count, its weight of a correct prediction, its weighted squared error). The bins stay in
    the kernels' own loops (with their table writes inlined from here, the CPU loop ran 35% slower)."""
    if probabilities:
        p = x
        positive = x > 0.5
    else:
        e = math.exp(-abs(x))  # sigmoid as the C++ kernels round it (math.hpp: sigmoid_pair)
        i = 1.0 / (1.0 + e)
        p = i if x >= 0.0 else e * i
        positive = x > 0.0
    d = p - y
    right = w * (y if positive else 1.0 - y)
    if p >= 0.0:
        return p, p, 0.0, right, w * (d * d)
    return p, 0.0, 1.0, right, w * (d * d)  # NaN: counted, and in bin 0


def table(x, y, w, probabilities: bool, nbins: int, ece_bins: int = 0):
    """The sums of the module docstring over every element, as one table row (1, 3 + 2 nbins + 3 ece_bins)
    float64: [NaN count, weight of the correct predictions, sum w (p - y)^2, nbins weights of positives, nbins of
    negatives, ece_bins weights, ece_bins sums of w p, ece_bins weights of positives]. ``x``: logits (or
    probabilities), ``y`` targets, ``w`` weights or None; any shape, flattened."""
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))  # sigmoid as the kernels round it (math.hpp: sigmoid_pair)
        i = 1.0 / (1.0 + e)
        p = x if probabilities else np.where(x >= 0, i, e * i)
        positive = x > (0.5 if probabilities else 0.0)
        out = np.zeros((1, 3 + 2 * nbins + 3 * ece_bins))
        out[0, 0] = np.count_nonzero(np.isnan(p))
        out[0, 1] = np.sum(w * np.where(positive, y, 1.0 - y))
        out[0, 2] = np.sum(w * (p - y) ** 2)
        p_bins = np.where(np.isnan(p), 0.0, p)  # a NaN goes to bin 0

        def bin_of(n):  # floor(p n), the last bin 1 too
            return np.minimum(np.floor(p_bins * n), n - 1).astype(np.int64)

        if nbins:
            b = bin_of(nbins)
            out[0, 3:3 + nbins] = np.bincount(b, weights=w * y, minlength=nbins)
            out[0, 3 + nbins:3 + 2 * nbins] = np.bincount(b, weights=w * (1.0 - y), minlength=nbins)
        if ece_bins:
            b = bin_of(ece_bins)
            for i, v in enumerate((w, w * p, w * y)):
                start = 3 + 2 * nbins + i * ece_bins
                out[0, start:start + ece_bins] = np.bincount(b, weights=v, minlength=ece_bins)
    return out


# --- the state ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BinaryMetricState(StateMethods):
    """The binary metrics of a piece of the data as sums, so that pieces merge exactly (``merge``).

    ``count``: elements; ``weight``: the sum of their sample weights (``count`` without weights); ``nan``: how
    many predictions are NaN; ``correct``: the weight of the correct predictions; ``brier``: the weighted sum of
    (p - y)^2; ``bins[N]``: a (2, N) float64 array, per probability bin the weight of the positives and of the
    negatives; ``calibration[M]``: a (3, M) float64 array, per probability bin the weight, the weighted sum of the
    probabilities and the weight of the positives (``eceM``). Without sample weights and with hard targets every
    sum but ``brier`` and the calibration sums of p is an integer, exact in float64 up to 2^53 elements.
    """

    names: tuple[str, ...]
    count: int
    weight: float
    nan: int = 0
    correct: float = 0.0
    brier: float = 0.0
    bins: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)

    def _merge_all(self, states) -> "BinaryMetricState":
        return merge_states(states)

    def _value(self, name: str) -> float:
        if self.weight == 0.0 or self.nan:
            return math.nan
        if name == "accuracy":
            return self.correct / self.weight
        if name == "brier":
            return self.brier / self.weight
        if name.startswith("roc"):
            return binned_roc_auc(*self.bins[int(name[3:])])
        if name.startswith("ece"):
            return calibration_error(self.calibration[int(name[3:])], self.weight)
        return binned_average_precision(*self.bins[int(name[2:])])

    def __eq__(self, other) -> bool:
        """Equal sums, bin by bin (NaN equal to NaN)."""
        if not isinstance(other, BinaryMetricState):
            return NotImplemented
        same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731
        return (set(self.names) == set(other.names) and self.count == other.count and self.nan == other.nan
                and all(same(getattr(self, a), getattr(other, a)) for a in ("weight", "correct", "brier"))
                and all(a.keys() == b.keys() and all(np.array_equal(a[n], b[n], equal_nan=True) for n in a)
                        for a, b in ((self.bins, other.bins), (self.calibration, other.calibration))))

    __hash__ = None


def _cumulative(pos, neg):
    """The weights of the positives and negatives at or above each bin edge, from the top bin down."""
    return np.cumsum(np.asarray(pos, np.float64)[::-1]), np.cumsum(np.asarray(neg, np.float64)[::-1])


def binned_roc_auc(pos, neg) -> float:
    """The area under the ROC curve whose thresholds are the bin edges (trapezoids between them: the scores in
    one bin count as tied, half a pair each), which is scikit-learn's ``roc_auc_score`` of the bin indices.
    NaN when there are no positives or no negatives."""
    tp, fp = _cumulative(pos, neg)
    if not (tp[-1] > 0 and fp[-1] > 0):
        return math.nan
    tpr = np.concatenate(([0.0], tp / tp[-1]))
    fpr = np.concatenate(([0.0], fp / fp[-1]))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def binned_average_precision(pos, neg) -> float:
    """Average precision over the bin edges as thresholds, ``sum_b (R_b - R_(b+1)) P_b`` from the top bin down
    (recall R and precision P of the scores at or above the bin's lower edge), which is scikit-learn's
    ``average_precision_score`` of the bin indices. NaN when there are no positives."""
    tp, fp = _cumulative(pos, neg)
    if not tp[-1] > 0:
        return math.nan
    gain = np.asarray(pos, np.float64)[::-1]
    has = gain > 0
    return float(np.sum(gain[has] / tp[-1] * (tp[has] / (tp[has] + fp[has]))))


def merge_states(states: Iterable[BinaryMetricState]) -> BinaryMetricState:
    """The state of the union of pieces: counts added, sums added exactly rounded (``math.fsum``, so the order of
    the pieces does not matter). Every state must hold the same metrics."""
    states = metric_states(states, BinaryMetricState)
    first = states[0]
    if len(states) == 1:
        return first
    return BinaryMetricState(first.names, bins=summed_bins(states), calibration=summed_bins(states, "calibration"),
                             **summed_fields(states, exact=("weight", "correct", "brier"), counts=("count", "nan")))


def fold(spec: BinaryMetricSpec, tab, count: int, weight: float) -> BinaryMetricState:
    """The state of a call from its table (rows x ``spec.columns``, from ``table`` or a kernel): the scalar sums
    added exactly rounded, the bins row by row in order (a fixed order: the rows depend on the size only)."""
    tab = np.asarray(tab, np.float64)
    n, m = spec.nbins, spec.ece_bins
    bins = {n: np.sum(tab[:, 3:3 + 2 * n], axis=0).reshape(2, n)} if n else {}
    calibration = {m: np.sum(tab[:, 3 + 2 * n:], axis=0).reshape(3, m)} if m else {}
    return BinaryMetricState(spec.names, count, weight, int(np.sum(tab[:, 0])), _exact_sum(tab[:, 1]),
                             _exact_sum(tab[:, 2]), bins, calibration)


def run(module, name, packed, p, y, w, scale, reduce, v, g, threads, cols, spec: BinaryMetricSpec,
        probabilities: bool):
    """The loss kernel with the binary metrics: (its total, the table for ``fold``).

    ``module``: a host backend; its ``elementwise_metrics`` has the contract of ``elementwise`` (no Hessian;
    the value or the reduction) plus ``table`` (float64, ``table_rows(n)`` x ``spec.columns``, which it zeroes and
    fills), ``nbins``, ``probabilities`` (the scores are probabilities, not logits) and ``ece_bins``."""
    kernel = getattr(module, "elementwise_metrics", None)
    if kernel is None:
        raise ValueError(f"{name}: backend {module.NAME!r} has no metrics pass; use backend 'cpp', 'numba' or "
                         "'numpy'")
    tab = np.empty((table_rows(p.size), spec.columns))
    total = kernel(name, packed, p, y, w, scale, reduce, v, g, threads, cols, tab, spec.nbins, probabilities,
                   spec.ece_bins)
    return total, tab


def merge_any(states):
    """``fusedloss.metrics.merge_metric_states``: binary states merged by ``merge_states``, the others by the
    logit metrics' (here, so that fusedloss.dask's graphs merge them without importing fusedloss.metrics)."""
    states = list(states)
    if states and isinstance(states[0], BinaryMetricState):
        return merge_states(states)
    return merge_logit_states(states)
