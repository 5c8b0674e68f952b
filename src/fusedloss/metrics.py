"""scikit-learn's loss metrics, with scikit-learn's signatures and values, computed by fusedloss; and the
classification metrics of logits that cross_entropy computes in its own pass (``logit_metrics``).

``fusedloss.metrics.<name>(y_true, y_pred, *, sample_weight=None, ...)`` takes the arguments of
``sklearn.metrics.<name>`` and returns the same number (within 1e-12 relative in float64), so it can replace
the scikit-learn call, or be wrapped by ``sklearn.metrics.make_scorer``. Note the conventions, which are
scikit-learn's here and differ from the rest of fusedloss:

- argument order ``(y_true, y_pred)`` (fusedloss's losses take ``(pred, target)``, as PyTorch);
- ``mean_squared_error`` is the full squared error ``mean((y - p)^2)`` (as ``fl.mse``; boosting libraries and
  scikit-learn's ``_loss`` use half of it);
- ``mean_pinball_loss(alpha=...)`` is ``fl.quantile(quantile=alpha)``; ``log_loss`` takes probabilities (not
  logits), clipped to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon of their dtype, as scikit-learn >= 1.5.

Where the formula is one of fusedloss's elementwise losses (``mse``, ``mae``, ``mape``, ``msle``, ``quantile``,
``hinge``), the 1-D case runs the fused kernel (one pass, no temporaries, float64 accumulation); the other cases
use NumPy with scikit-learn's formulas. scikit-learn is not needed at run time.

Differences from scikit-learn, on purpose: float32 inputs are accumulated in float64 (scikit-learn sums in
float32, so the two agree to float32 precision only; the values come back in float32, as scikit-learn's); only
NumPy-compatible arrays are taken (no sparse matrices, no array-API namespaces); errors are ``ValueError`` /
``TypeError``, and a bad parameter value raises an error that is both, as scikit-learn's
``InvalidParameterError`` (a class of fusedloss's own: scikit-learn is not imported).

``logit_metrics(logits, labels, metrics=..., sample_weight=None, ignore_index=-100)`` is fusedloss's own
(argument order ``(logits, labels)``, as the losses): accuracy, top-k accuracy, negative log-likelihood, entropy,
mean confidence and expected calibration error of softmax classifiers, from one pass over the logits, returned
with a ``MetricState`` that merges across batches (``merge_metric_states``). ``fl.cross_entropy(...,
metrics=...)`` and ``fl.cross_entropy.value_and_grad(..., metrics=...)`` give the same from the loss's pass.
``binary_logit_metrics(logits, target, metrics=..., sample_weight=None)`` is its binary counterpart (accuracy,
Brier score, binned ROC AUC and average precision of sigmoid scores, as binary_cross_entropy_with_logits computes
them with ``metrics=``), with a ``BinaryMetricState``.
"""

from __future__ import annotations

import sys

from . import _binary_metrics
from ._binary_metrics import BinaryMetricState
from ._logit_metrics import MetricState, Metrics, parse
from ._losses import LOSSES
from ._sklearn_metrics import (UndefinedMetricWarning, d2_absolute_error_score, d2_log_loss_score,
                               d2_pinball_score, d2_tweedie_score, hinge_loss, log_loss, mean_absolute_error,
                               mean_absolute_percentage_error, mean_gamma_deviance, mean_pinball_loss,
                               mean_poisson_deviance, mean_squared_error, mean_squared_log_error,
                               mean_tweedie_deviance, root_mean_squared_error, root_mean_squared_log_error,
                               zero_one_loss)

__all__ = [
    "UndefinedMetricWarning", "d2_absolute_error_score", "d2_log_loss_score", "d2_pinball_score",
    "d2_tweedie_score", "hinge_loss", "log_loss", "mean_absolute_error", "mean_gamma_deviance",
    "mean_absolute_percentage_error", "mean_pinball_loss", "mean_poisson_deviance", "mean_squared_error",
    "mean_squared_log_error", "mean_tweedie_deviance", "root_mean_squared_error", "root_mean_squared_log_error",
    "zero_one_loss",
    # fusedloss's own: metrics of logits, from the pass of cross_entropy or binary_cross_entropy_with_logits
    "MetricState", "Metrics", "logit_metrics", "merge_metric_states", "BinaryMetricState", "binary_logit_metrics",
]


# --- metrics of logits (fusedloss's own, not scikit-learn's) -----------------------------------------------


def logit_metrics(logits, labels, *, metrics=("accuracy",), sample_weight=None, ignore_index=-100, softcap=None,
                  backend=None) -> Metrics:
    """Classification metrics of softmax logits ``(..., C)`` against integer labels, in one pass over the logits.

    ``metrics``: names, any of ``"accuracy"``, ``"topK"`` (the label among the K largest logits, K >= 1), ``"nll"``
    (mean -log p_t), ``"entropy"`` (mean entropy of p), ``"confidence"`` (mean max_j p_j) and ``"eceN"`` (expected
    calibration error over N equal-width confidence bins: sum over bins of |accuracy_b - confidence_b| times the
    bin's share of the weight). p = softmax(z), z = softcap tanh(x / softcap) or the logits. Ties: the first of
    equal logits is the prediction (NumPy's and PyTorch's argmax). Rows labelled ``ignore_index`` or of sample
    weight 0 count nowhere; the others are weighted by ``sample_weight``. A row with a NaN logit (or no logit above
    -inf) makes the metrics NaN.

    Returns a dict of floats by name; its ``.state`` (``MetricState``: counts and float64 sums) merges with the
    states of other batches into the metrics of all of them (``merge_metric_states``). The same as
    ``fl.cross_entropy(logits, labels, metrics=...)[1]``, which computes them in the loss's own pass. Dask arrays
    (any of the arrays): ``fusedloss.dask.cross_entropy(..., metrics=...)[1]``, a 0-d dask array of them.
    """
    parse(metrics, "logit_metrics")  # errors named after this function
    _, result = _losses(logits, labels, sample_weight)["cross_entropy"](
        logits, labels, reduction="sum", sample_weight=sample_weight, ignore_index=ignore_index, softcap=softcap,
        backend=backend, metrics=metrics)
    return result


def binary_logit_metrics(logits, target, *, metrics=("accuracy",), sample_weight=None, backend=None) -> Metrics:
    """Binary classification metrics of logits (any shape) against targets in [0, 1] of the same shape, in one
    pass: the same as ``fl.binary_cross_entropy_with_logits(logits, target, metrics=...)[1]``.

    ``metrics``: names, any of ``"accuracy"`` (prediction ``logit > 0``, i.e. ``sigmoid > 1/2``), ``"brier"`` (mean
    ``(sigmoid(x) - y)^2``), ``"rocN"`` (ROC AUC with N equal-width probability bins as thresholds) and ``"apN"``
    (average precision over the same bins), one N per call; ``"eceM"`` (expected calibration error over M
    equal-width bins of ``p = sigmoid(x)``, the sum over the bins of ``|sum w p - sum w y|`` over the total weight:
    torchmetrics' ``BinaryCalibrationError``), one M per call. A soft target counts as y positive and 1 - y
    negative. Elements are weighted by ``sample_weight``; a NaN logit makes the metrics NaN.

    Returns a dict of floats by name; its ``.state`` (``BinaryMetricState``: counts and float64 sums) merges with
    the states of other batches (``merge_metric_states``). Dask arrays (any of the arrays): a 0-d dask array of
    them, from ``fusedloss.dask.binary_cross_entropy_with_logits(..., metrics=...)``.
    """
    _binary_metrics.parse(metrics, "binary_logit_metrics")  # errors named after this function
    _, result = _losses(logits, target, sample_weight)["binary_cross_entropy_with_logits"](
        logits, target, reduction="sum", sample_weight=sample_weight, backend=backend, metrics=metrics)
    return result


def _losses(*arrays) -> dict:
    """The losses that take ``arrays``: fusedloss.dask's when one of them is a dask array (then the metrics come
    back as a 0-d dask array), else the in-memory ones. Dask is never imported here: an array can only be
    a dask array once the program has imported dask.array."""
    dask_array = sys.modules.get("dask.array")
    if dask_array is not None and any(isinstance(a, dask_array.Array) for a in arrays):
        from .dask import LOSSES_DASK

        return LOSSES_DASK
    return LOSSES


def merge_metric_states(states):
    """The state of the union of batches (``Metrics.state`` of each, all ``MetricState`` or all
    ``BinaryMetricState``): counts added, float64 sums added exactly rounded (``math.fsum``), so the merged metrics
    do not depend on the order of the batches. ``merge_metric_states(states).result()`` gives the metrics by
    name."""
    return _binary_metrics.merge_any(states)
