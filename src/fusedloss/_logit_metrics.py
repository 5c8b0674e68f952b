"""Classification metrics from the loss pass: their names, the per-row reference, and the mergeable state.

A multiclass loss that supports metrics (``LossSpec.row_metrics``: cross_entropy) computes, for every row it
does not ignore, from statistics its softmax passes have anyway:

- ``rank``: how many classes come before the label, ``#{j: x_j > x_t} + #{j < t: x_j == x_t}`` (the argmax
  convention of NumPy and PyTorch: among tied logits the first one wins). The label is the prediction when
  ``rank == 0`` and in the top k when ``rank < k``. Ranked on the logits as given (softcap is increasing, so this
  is the order of the probabilities too). -1 for a row with nothing to normalise (a NaN logit, or every logit
  -inf), whose metrics are NaN as its loss is.
- ``conf``: the largest probability ``max_j p_j = 1 / s`` (s = sum_j exp(z_j - max z): every maximum adds 1).
- ``nll``: ``-log p_t`` (no label smoothing, z_loss or class weight).
- ``entropy``: ``H(p) = log s + (1/s) sum_j e_j (m - z_j)``.

with p = softmax(z), z the logits after softcap. ``row_metrics`` below is the NumPy specification of these rows
(float64); the kernels (rows.hpp ``cross_entropy::row_metrics``, ``_pointwise.cross_entropy_row_metrics``)
write the same arrays. ``fold`` turns them into a ``MetricState`` (weighted sums, O(rows)), the same code for
every backend, and states of pieces merge into the state of their union (``merge_states``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ._state import _exact_sum, metric_states, summed_bins, summed_fields

__all__ = ["MetricSpec", "MetricState", "Metrics", "parse", "row_metrics", "fold", "merge_states", "VALID"]

VALID = ("'accuracy', 'topK' (K >= 1 classes, e.g. 'top5'), 'nll', 'entropy', 'confidence', "
         "'eceN' (N >= 1 equal-width bins, e.g. 'ece15')")
_PATTERN = re.compile(r"(accuracy|nll|entropy|confidence)|top([1-9][0-9]*)|ece([1-9][0-9]*)")
# The most bins a binned metric (eceN, and the binary rocN / apN) may ask for: a histogram of 2^24 float64 sums
# per row is 128 MiB, and the kernels index bins with 32-bit integers.
MAX_BINS = 1 << 24
_BINNED = re.compile(r"(?:ece|roc|ap)([0-9]+)")


@dataclass(frozen=True)
class MetricSpec:
    """Parsed metric names: what the kernel must compute and what the fold sums."""

    names: tuple[str, ...]  # as asked for, duplicates dropped
    ks: tuple[int, ...]  # top-k cut-offs (accuracy is k = 1), sorted
    bins: tuple[int, ...]  # ECE bin counts, sorted
    nll: bool
    entropy: bool
    confidence: bool

    @property
    def needs_rank(self) -> bool:
        return bool(self.ks or self.bins)


_PARSED: dict = {}


def parse_names(metrics, owner: str, valid: str, pattern, parsed: dict, build, unknown: str = "valid names"):
    """``build(names, matches)`` of the metric names in ``metrics`` (a name or an iterable of names), each matched
    by ``pattern`` (duplicates dropped from ``names``, kept in ``matches``); cached in ``parsed`` by the str or
    tuple given. A bad name raises TypeError or ValueError naming ``owner`` (the loss or function) and the
    ``valid`` names. Both kinds of metrics (these and ``_binary_metrics``'s) parse their names here."""
    key = metrics if isinstance(metrics, (str, tuple)) else None
    if key is not None:
        try:
            return parsed[key]
        except (KeyError, TypeError):
            pass
    names = (metrics,) if isinstance(metrics, str) else metrics
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"{owner}: metrics must be a metric name or a sequence of names ({valid}), "
                        f"got {type(metrics).__name__}") from None
    seen, matches = [], []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{owner}: metric names are strings ({valid}), got {name!r}")
        match = pattern.fullmatch(name)
        if match is None:
            raise ValueError(f"{owner}: unknown metric {name!r}; {unknown}: {valid}")
        binned = _BINNED.fullmatch(name)
        if binned is not None and int(binned.group(1)) > MAX_BINS:
            raise ValueError(f"{owner}: metric {name!r} asks for {binned.group(1)} bins; at most {MAX_BINS} (2^24) "
                             f"are supported (e.g. {name.rstrip('0123456789')}256)")
        matches.append(match)
        if name not in seen:
            seen.append(name)
    spec = build(tuple(seen), matches)
    if key is not None and len(parsed) < 256:
        parsed[key] = spec
    return spec


def _spec_of(names: tuple, matches: list) -> MetricSpec:
    ks, bins = set(), set()
    flags = {"nll": False, "entropy": False, "confidence": False}
    for match in matches:
        plain, k, n = match.groups()
        if plain == "accuracy":
            ks.add(1)
        elif plain:
            flags[plain] = True
        elif k:
            ks.add(int(k))
        else:
            bins.add(int(n))
            ks.add(1)  # a bin's accuracy is top-1
    return MetricSpec(names, tuple(sorted(ks)), tuple(sorted(bins)), **flags)


def parse(metrics, owner: str) -> MetricSpec:
    """``metrics`` (a name or an iterable of names) as a ``MetricSpec``; a bad name raises ValueError naming
    ``owner`` (the loss or function) and the valid names."""
    return parse_names(metrics, owner, VALID, _PATTERN, _PARSED, _spec_of)


# --- the specification of the per-row arrays ----------------------------------------------------------------


def row_metrics(x, labels, softcap=None):
    """(rank, conf, nll, entropy) of every row of logits ``x`` (R, C) with labels ``labels`` (R,) in [0, C), in
    float64 (rank int64), as the module docstring defines them. Rows with a NaN logit or no logit above -inf:
    rank -1 and NaN elsewhere. Ignored rows are the caller's to drop."""
    x = np.asarray(x, np.float64)
    R, C = x.shape
    t = np.asarray(labels, np.int64)
    rows = np.arange(R)
    x_t = x[rows, t]
    before = np.arange(C)[None, :] < t[:, None]
    rank = np.sum(x > x_t[:, None], axis=1) + np.sum((x == x_t[:, None]) & before, axis=1)
    z = softcap * np.tanh(x / softcap) if softcap else x
    with np.errstate(all="ignore"):
        m = np.max(np.where(np.isnan(z), -np.inf, z), axis=1)
        sh = np.where(m == -np.inf, 0.0, m)
        rel = sh[:, None] - z  # >= 0; inf for a masked class
        e = np.exp(-rel)
        one = e == 1.0  # the maxima, kept apart so that s - 1 has no cancellation (as the kernels do)
        s1 = np.sum(np.where(one, 0.0, e), axis=1)
        s = s1 + np.sum(one, axis=1)
        log_s = np.log1p(s1 + (np.sum(one, axis=1) - 1.0))
        conf = 1.0 / s
        nll = (sh - z[rows, t]) + log_s
        entropy = log_s + np.sum(np.where(e == 0.0, 0.0, e * rel), axis=1) / s
    bad = np.isnan(x).any(axis=1) | np.all(x == -np.inf, axis=1) | np.isnan(s)
    rank = np.where(bad, -1, rank).astype(np.int64)
    conf, nll, entropy = (np.where(bad, np.nan, a) for a in (conf, nll, entropy))
    return rank, conf, nll, entropy


# --- the state: weighted sums over the rows counted -----------------------------------------------------------


class StateMethods:
    """What the metric states share (``MetricState``, ``_binary_metrics.BinaryMetricState``): ``merge`` through
    their module's ``merge_states`` (the class's ``_merge_all``), ``result`` from their ``_value`` per metric."""

    def merge(self, other):
        """The state of both pieces together (``merge_states([self, other])``)."""
        return self._merge_all((self, other))

    def result(self) -> "Metrics":
        """The metrics asked for, by name, over the data seen (NaN where nothing counted, or where the state says
        why: a NaN prediction for the binary metrics)."""
        out = Metrics(self)
        for name in self.names:
            out[name] = self._value(name)
        return out


@dataclass(frozen=True, eq=False)
class MetricState(StateMethods):
    """The metrics of a piece of the data as sums, so that pieces merge exactly (``merge``).

    ``count``: rows counted (label not ``ignore_index``, sample weight not 0). ``weight``: the sum of their
    sample weights (``count`` without weights). ``hits[k]``: the weight of the rows whose label is in the top k
    (accuracy is k = 1). ``nll``, ``entropy``, ``confidence``: weighted sums of ``-log p_t``, ``H(p)`` and
    ``max_j p_j`` (0 when not asked for). ``bins[n]``: for ECE with n bins, a (3, n) float64 array: per bin the
    weight, the weighted sum of the confidences and the weight of the correct rows. Without sample weights
    every sum but the float ones (nll, entropy, confidences) is an integer, exact in float64 up to 2^53 rows.
    """

    names: tuple[str, ...]
    count: int
    weight: float
    hits: dict = field(default_factory=dict)
    nll: float = 0.0
    entropy: float = 0.0
    confidence: float = 0.0
    bins: dict = field(default_factory=dict)

    def _merge_all(self, states) -> "MetricState":
        return merge_states(states)

    def _value(self, name: str) -> float:
        if self.weight == 0.0:
            return math.nan
        if name == "accuracy":
            return self.hits[1] / self.weight
        if name.startswith("top"):
            return self.hits[int(name[3:])] / self.weight
        if name.startswith("ece"):
            return calibration_error(self.bins[int(name[3:])], self.weight)
        return getattr(self, name) / self.weight

    def __eq__(self, other) -> bool:
        """Equal sums, bin by bin (NaN equal to NaN)."""
        if not isinstance(other, MetricState):
            return NotImplemented
        same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731
        return (set(self.names) == set(other.names) and self.count == other.count
                and same(self.weight, other.weight) and self.hits.keys() == other.hits.keys()
                and all(same(self.hits[k], other.hits[k]) for k in self.hits)
                and all(same(getattr(self, a), getattr(other, a)) for a in ("nll", "entropy", "confidence"))
                and self.bins.keys() == other.bins.keys()
                and all(np.array_equal(self.bins[n], other.bins[n], equal_nan=True) for n in self.bins))

    __hash__ = None


class Metrics(dict):
    """The metrics of a call by name (``m["accuracy"]``, floats); ``m.state`` is its mergeable ``MetricState``."""

    def __init__(self, state: MetricState):
        super().__init__()
        self.state = state

    def __repr__(self):
        return f"Metrics({dict.__repr__(self)})"

    def copy(self) -> "Metrics":
        """A copy with the same ``state`` (dask copies a 0-d array's value when it computes one)."""
        out = Metrics(self.state)
        out.update(self)
        return out


def calibration_error(bins, weight: float) -> float:
    """The expected calibration error of a (3, n) calibration histogram (per bin: the weight, the weighted sum of
    the scores, the weight of the hits): ``sum_b |hits_b - scores_b| / weight``. Both kinds of metrics (these and
    ``_binary_metrics``'s) compute it here."""
    return float(np.sum(np.abs(bins[2] - bins[1]))) / weight


def merge_states(states: Iterable[MetricState]) -> MetricState:
    """The state of the union of pieces: counts added, sums added exactly rounded (``math.fsum``, so the
    order of the pieces does not matter). Every state must hold the same metrics."""
    states = metric_states(states, MetricState)
    first = states[0]
    if len(states) == 1:
        return first
    return MetricState(first.names, hits={k: _exact_sum(s.hits[k] for s in states) for k in first.hits},
                       bins=summed_bins(states),
                       **summed_fields(states, exact=("weight", "nll", "entropy", "confidence"), counts=("count",)))


def fold(spec: MetricSpec, rank, conf, nll, entropy, keep, w) -> MetricState:
    """The state of a call from the per-row arrays of ``row_metrics`` (or a kernel) and the rows kept.

    ``keep``: bool (R,) or None (every row); ``w``: sample weights (R,) or None. Rows not kept count nowhere;
    a row with rank -1 (nothing to normalise) makes every metric it enters NaN."""
    if keep is not None:
        rank = rank[keep] if rank is not None else None
        conf = conf[keep] if conf is not None else None
        nll = nll[keep] if nll is not None else None
        entropy = entropy[keep] if entropy is not None else None
        w = w[keep] if w is not None else None
    count = int(keep.sum()) if keep is not None else (len(rank) if rank is not None else len(conf))
    w64 = None if w is None else np.asarray(w, np.float64)
    weight = float(count) if w64 is None else float(np.sum(w64))

    def wsum(values) -> float:
        return float(np.sum(values)) if w64 is None else float(np.dot(w64, values))

    hits, bins = {}, {}
    if spec.needs_rank:
        bad = rank < 0
        any_bad = bool(bad.any())
        for k in spec.ks:
            hit = (rank < k).astype(np.float64)
            if any_bad:
                hit[bad] = np.nan
            hits[k] = wsum(hit)
        correct = (rank == 0).astype(np.float64)
        if any_bad:
            correct[bad] = np.nan
        for n in spec.bins:
            with np.errstate(invalid="ignore"):
                idx = np.minimum(np.floor(np.where(bad, 0.0, conf) * n), n - 1).astype(np.int64)
            ww = np.ones(count) if w64 is None else w64
            b = np.empty((3, n))
            b[0] = np.bincount(idx, weights=ww, minlength=n)
            b[1] = np.bincount(idx, weights=ww * conf, minlength=n)
            b[2] = np.bincount(idx, weights=ww * correct, minlength=n)
            bins[n] = b
    return MetricState(spec.names, count, weight, hits,
                       wsum(nll) if spec.nll else 0.0,
                       wsum(entropy) if spec.entropy else 0.0,
                       wsum(conf) if spec.confidence else 0.0, bins)


def fold_kept(spec: MetricSpec, rows, labels, ignore, w) -> MetricState:
    """``fold`` over the rows a loss call counts: the label is not ``ignore`` and the weight is not 0.

    ``rows``: (rank, conf, nll, entropy) as ``fold`` takes them; ``labels`` None when every row is known kept."""
    keep = None if labels is None else labels != ignore
    if w is not None:
        keep = (w != 0) if keep is None else keep & (w != 0)
    if keep is not None and keep.all():
        keep = None
    return fold(spec, *rows, keep, w)


def run(module, name, packed, ignore, C, x, labels, rw, cw, scale, reduce, v, g, spec: MetricSpec, threads):
    """The loss kernel with the per-row metrics: (its total, (rank, conf, nll, entropy)) for the fold.

    ``module``: a host backend; its ``multiclass_metrics`` has the contract of ``multiclass`` (hard labels,
    no Hessian) plus four per-row outputs: rank (int64), conf, nll and entropy (float64; rank and entropy
    None when not asked for). Ignored rows get rank -1 and 0.0."""
    kernel = getattr(module, "multiclass_metrics", None)
    if kernel is None:
        raise ValueError(f"{name}: backend {module.NAME!r} has no metrics pass; use backend 'cpp', 'numba' or "
                         "'numpy'")
    R = labels.shape[0]
    rank = np.empty(R, np.int64) if spec.needs_rank else None
    conf = np.empty(R)
    nll = np.empty(R)
    entropy = np.empty(R) if spec.entropy else None
    total = kernel(name, packed, ignore, C, x.reshape(-1), labels, rw, cw, scale, reduce,
                   None if v is None else v.reshape(-1), None if g is None else g.reshape(-1),
                   rank, conf, nll, entropy, threads)
    return total, (rank, conf, nll, entropy)
