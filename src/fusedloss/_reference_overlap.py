"""NumPy oracle of the overlap losses (kind "overlap" in ``_spec.py``: ``dice``, ``tversky``), in float64.

The scores ``x`` come as ``(N, C, S)``: samples, classes, pixels (the spatial axes flattened). A loss is computed
in three steps, as segmentation_models_pytorch 0.6 computes DiceLoss / TverskyLoss:

1. ``sums``: per sample and class, ``I = sum min(p, y)``, ``P = sum p``, ``Y = sum y`` over the pixels, with
   ``p`` the probabilities (``probabilities``: softmax over C, sigmoid, or the scores), ``y`` the 0/1 targets and
   ignored pixels zeroed in both (``targets``).
2. ``combine``: the per-class losses from the sums (one function per loss, ``dice`` and ``tversky``, of the
   sums), their mean over classes (and samples), and each sum's coefficient in the gradient.
3. ``grad_elements``: the gradient of each score from those coefficients, through the softmax or sigmoid.

Steps 1 and 3 touch every element and are the kernels of the backends (``_overlap_rows.py`` for Numba,
``overlap.hpp`` for C++); step 2 works on ``(N, C)`` float64 sums and is shared by every backend
(``fusedloss._overlap``): the one definition of each loss.
"""

from __future__ import annotations

import math

import numpy as np

# the activation applied to the scores, as the kernels take it
ACT_NONE, ACT_SIGMOID, ACT_SOFTMAX = 0, 1, 2


def activation(params: dict) -> int:
    if not params["from_logits"]:
        return ACT_NONE
    return ACT_SOFTMAX if params["mode"] == "multiclass" else ACT_SIGMOID


def probabilities(x, act):
    """``p`` of the scores ``x`` (N, C, S) in float64."""
    x = np.asarray(x, dtype=np.float64)
    if act == ACT_SOFTMAX:
        e = np.exp(x - np.max(x, axis=1, keepdims=True))
        return e / np.sum(e, axis=1, keepdims=True)
    if act == ACT_SIGMOID:
        return _sigmoid(x)
    return x


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-x)), np.exp(x) / (1.0 + np.exp(x)))


def targets(shape, labels, y, ignore):
    """(``y`` (N, C, S) float64 with ignored pixels 0, ``m`` the kept-pixel mask broadcasting to (N, C, S)).

    ``labels`` (N, S) integer class indices (multiclass), else ``y`` (N, C, S) targets; ``ignore`` the ignored
    target value or None."""
    N, C, S = shape
    if labels is not None:
        labels = np.asarray(labels).reshape(N, 1, S)
        m = np.ones((N, 1, S)) if ignore is None else (labels != ignore).astype(np.float64)
        return (labels == np.arange(C).reshape(1, C, 1)) * m, m
    y = np.asarray(y, dtype=np.float64).reshape(N, C, S)
    m = np.ones_like(y) if ignore is None else (y != ignore).astype(np.float64)
    return y * m, m


def sums(p, y, m):
    """(N, C, 3): I, P, Y per sample and class."""
    pm = p * m
    return np.stack([np.sum(np.minimum(pm, y), axis=2), np.sum(pm, axis=2), np.sum(y, axis=2)], axis=2)


def grad_elements(x, p, y, m, act, coef):
    """The gradient with respect to the scores ``x`` (N, C, S) of ``sum aI I + aP P``, ``coef`` = (aI, aP) per
    sample and class (N, C, 2). dI/dp = [p < y] + [p = y] / 2 (torch's |p - y| backward has sign(0) = 0)."""
    pm = p * m
    dmin = np.where(pm < y, 1.0, np.where(pm == y, 0.5, 0.0))
    d = m * (coef[:, :, 1:2] + coef[:, :, 0:1] * dmin)
    if act == ACT_SOFTMAX:
        return p * (d - np.sum(p * d, axis=1, keepdims=True))
    if act == ACT_SIGMOID:
        return d * p * _sigmoid(-np.asarray(x, dtype=np.float64))
    return d


# --- the losses: per-class value and its derivatives from the sums ------------------------------------


def tversky(I, P, Y, *, smooth, eps, log_loss, alpha, beta, **_):
    """(l, dl/dI, dl/dP) per class, unmasked; the clamps pass the gradient where max(u, eps) = u (torch)."""
    den = I + alpha * (P - I) + beta * (Y - I) + smooth
    on = den >= eps
    dc = np.maximum(den, eps)
    s = (I + smooth) / dc
    ds_di = 1.0 / dc - np.where(on, (I + smooth) * (1.0 - alpha - beta) / (dc * dc), 0.0)
    ds_dp = -np.where(on, (I + smooth) * alpha / (dc * dc), 0.0)
    if log_loss:
        sc = np.maximum(s, eps)
        dl_ds = np.where(s >= eps, -1.0 / sc, 0.0)
        return -np.log(sc), dl_ds * ds_di, dl_ds * ds_dp
    return 1.0 - s, -ds_di, -ds_dp


def dice(I, P, Y, *, smooth, eps, log_loss, **_):
    """segmentation_models_pytorch 0.6's soft_dice_score is soft_tversky_score with alpha = beta = 1/2."""
    return tversky(I, P, Y, smooth=smooth, eps=eps, log_loss=log_loss, alpha=0.5, beta=0.5)


LOSSES = {"dice": dice, "tversky": tversky}


def class_weights(params: dict, C: int):
    """The weights of the mean over classes, (C,) float64."""
    w = params["class_weights"]
    if w is None:
        return np.ones(C)
    return np.full(C, float(w)) if np.ndim(w) == 0 else np.asarray(w, dtype=np.float64)


def combine(name, per_sample_sums, params, reduction="mean", sample_weight=None):
    """(value, coef): the loss value from the per-sample sums (N, C, 3), and coef (N, C, 2), the derivative of
    the value with respect to each sample's I and P (the batch variant sums the samples first: every sample of a
    class shares its coefficient). ``value``: a float, or the weighted terms (C,) / (N, C) for "none"."""
    sums = np.asarray(per_sample_sums, dtype=np.float64)
    N, C = sums.shape[:2]
    if not params["per_sample"]:
        sums = sums.sum(axis=0, keepdims=True)
    I, P, Y = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(all="ignore"):
        l, dl_di, dl_dp = LOSSES[name](I, P, Y, **params)
        mask = (Y > 0).astype(np.float64)  # a class without true pixels adds 0 (and still counts in the mean)
        w = class_weights(params, C)[None, :]
        if sample_weight is not None:
            w = w * np.asarray(sample_weight, dtype=np.float64)[:, None]
        terms = w * (l * mask)
        gamma = params.get("gamma", 1.0)
        if reduction == "mean":
            denom = math.fsum(class_weights(params, C)) * (
                sums.shape[0] if sample_weight is None else math.fsum(sample_weight))
            # in NumPy floats: weights summing to 0 give nan (0 / 0) and a zero mean with gamma < 1 an infinite
            # slope, as torch's, where Python floats would raise
            mean = np.float64(math.fsum(terms.ravel())) / np.float64(denom)
            value = float(mean ** gamma)
            dv_dt = w * (gamma * mean ** (gamma - 1.0) / np.float64(denom))
        else:
            value = terms if reduction == "none" else math.fsum(terms.ravel())
            dv_dt = w
        coef = np.stack([dv_dt * mask * dl_di, dv_dt * mask * dl_dp], axis=2)
    return value, np.broadcast_to(coef, (N, C, 2))


def terms(value, params: dict, N: int, C: int, dtype) -> np.ndarray:
    """reduction "none" as returned: the weighted per-class terms in the input's dtype, (C,) or (N, C) with
    per_sample."""
    return np.asarray(value).astype(dtype).reshape((N, C) if params["per_sample"] else (C,))


def overlap(name, x, labels, y, *, reduction="mean", sample_weight=None, **params):
    """(value, gradient (N, C, S)) in float64 of the overlap loss ``name`` on scores ``x`` (N, C, S) with
    ``labels`` (N, S) (multiclass) or targets ``y`` (N, C, S)."""
    x = np.asarray(x, dtype=np.float64)
    act = activation(params)
    with np.errstate(all="ignore"):
        p = probabilities(x, act)
        t, m = targets(x.shape, labels, y, params["ignore_index"])
        value, coef = combine(name, sums(p, t, m), params, reduction, sample_weight)
        return value, grad_elements(x, p, t, m, act, coef)
