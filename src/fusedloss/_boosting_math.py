"""What ``fusedloss.boosting`` computes: gradients and Hessians, metric values, initial scores and data sets for
LightGBM and XGBoost from the fused kernels (the rules are in ``fusedloss.boosting``'s docstring). The callables
handed to the libraries live in ``_boosting.py``, the scikit-learn classifiers in ``_estimators.py``."""

from __future__ import annotations

import numpy as np

from . import _config
from ._dispatch import Loss, prewake
from ._losses import LOSSES
from ._validate import (GRAD_HESS, HESSIAN_MODES, _check_domain, _host_array, as_numeric, check_weight_values,
                        weight_values_error)


FOCAL_MIN_HESSIAN = 0.02


def _loss_name(name) -> str:
    """The registry name of a loss given by name or as a loss object (e.g. from ``fusedloss.elementwise_loss``)."""
    return name.name if isinstance(name, Loss) else name


def _loss(name: str):
    loss = LOSSES.get(name)
    if loss is None:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    spec = loss.spec
    if spec.kind == "pairwise":
        raise ValueError(f"{name}: a pairwise loss compares two or three arrays per row, but boosting predicts one "
                         "score per sample (per class): it cannot be an objective or a metric")
    if spec.kind == "overlap":
        raise ValueError(f"{name}: an overlap loss is a ratio of sums over the pixels of each class, with no "
                         "per-sample gradient and Hessian a boosting objective needs")
    if spec.kind == "sequence":
        raise ValueError(f"{name}: a sequence loss scores a whole sequence of frames against a label sequence, "
                         "but boosting predicts one score per sample (per class): it cannot be an objective or a "
                         "metric")
    if spec.kind == "multiclass" and not spec.hard_labels:
        raise ValueError(f"{name}: needs soft (probability) targets, but boosting labels are one value per sample")
    return loss


def _checked(name: str, params: dict, hessian, min_hessian, need_grad=True):
    loss = _loss(name)
    spec = loss.spec
    if need_grad and not spec.differentiable:
        raise ValueError(f"{name} is not differentiable: it can be an evaluation metric, not an objective")
    full = loss._check_params(params)[0]  # unknown or out-of-range parameters fail now, not in the first round
    if hessian is None:
        hessian = "ones" if spec.hessian_zero_ae else "exact"
    if hessian not in HESSIAN_MODES:
        raise ValueError(f"{name}: hessian must be 'exact' or 'ones', got {hessian!r}")
    if isinstance(min_hessian, str):
        if min_hessian != "auto":
            raise ValueError(f"{name}: min_hessian must be 'auto', None or a number >= 0, got {min_hessian!r}")
        negative = spec.hessian_may_be_negative_for(full)
        min_hessian = FOCAL_MIN_HESSIAN if (negative and hessian == "exact") else None
    elif min_hessian is not None:
        min_hessian = float(min_hessian)
        if not min_hessian >= 0:
            raise ValueError(f"{name}: min_hessian must be >= 0, got {min_hessian!r}")
    return loss, hessian, min_hessian


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _weight(weight, dtype=np.float64):
    """None for "no weights" (LightGBM gives None, XGBoost an empty array)."""
    if weight is None:
        return None
    w = as_numeric(weight, dtype, "weight", "fusedloss.boosting")
    return None if w.size == 0 else w


class _Borrowed:
    """The array interface of memory another library owns; an array over it is used within one call only."""

    def __init__(self, interface: dict):
        self.__array_interface__ = interface


class _Rounds:
    """What an objective keeps from one boosting round to the next.

    - Converted labels and weights, keyed by the identity of the array the library handed over: LightGBM's
      ``Dataset.get_label()`` / ``get_weight()`` return the same array every round, so they are converted
      (to the scores' dtype, labels to int64 for multiclass losses) once, not every round. A new array (a new
      data set, ``set_label``) is converted again; an array changed in place between rounds is not seen.
    - The gradient and Hessian buffers: the arrays an objective returns are reused by its next call (both
      libraries copy them into their own storage before the next round).
    """

    def __init__(self):
        self._converted: dict = {}
        self._buffers: dict = {}
        self._checked: dict = {}  # role ("y", "w"): the converted array of that role that was checked

    def checked_once(self, y, check, role: str = "y") -> bool:
        """Whether the array ``y`` (labels, or weights: ``role``) needs no check in this call: true for a
        conversion of ours (a copy no one else holds or writes into), which ``check(y)`` checks the first time it
        is used; false otherwise."""
        if self._checked.get(role) is y:
            return True
        if not (y.flags.owndata and any(out is y and arr is not y for arr, out in self._converted.values())):
            return False
        check(y)
        self._checked[role] = y
        return True

    def convert(self, arr, key: str, fn):
        if isinstance(arr, np.ndarray) and isinstance(arr.base, _Borrowed):
            return fn(arr)  # another library's memory, valid for this call only: never kept
        hit = self._converted.get(key)
        if hit is not None and hit[0] is arr:
            return hit[1]
        out = fn(arr)
        self._converted[key] = (arr, out)
        return out

    def buffers(self, shape, dtype):
        key = (shape, np.dtype(dtype))
        bufs = self._buffers.get(key)
        if bufs is None:
            if any(k[0] != shape for k in self._buffers):
                self._buffers.clear()  # one shape at a time (a training set; no pile-up when the shape changes)
            bufs = self._buffers[key] = (np.empty(shape, dtype), np.empty(shape, dtype))
        return bufs


def _layout(loss, preds, labels, flat: str, dtype=np.float64, rounds: _Rounds | None = None):
    """(pred array for the kernels, labels, undo): class axis last for multiclass losses, in ``dtype``.

    ``flat``: how a 1-d multiclass prediction array is laid out: "class_major" (LightGBM < 4) or "row_major".
    """
    p = as_numeric(preds, dtype, "y_pred", loss.name)
    if loss.spec.kind != "multiclass":
        y = (as_numeric(labels, dtype, "y_true", loss.name) if rounds is None
             else rounds.convert(labels, "y" + np.dtype(dtype).str, lambda a: as_numeric(a, dtype, "y_true", loss.name)))
        if p.shape != y.shape:
            if p.size == y.size:
                p = p.reshape(y.shape)
            else:
                raise ValueError(f"{loss.name}: got {p.size} predictions for {y.size} labels (multi-output "
                                 "boosting is not supported)")
        return p, y, (lambda a: a.reshape(np.shape(preds)))
    y = labels if type(labels) is np.ndarray else _host_array(labels, "y_true", loss.name)
    n = y.shape[0] if y.ndim else 1
    if p.ndim == 2:
        if p.shape[0] != n:
            raise ValueError(f"{loss.name}: predictions of shape {p.shape} for {n} labels")
        undo = lambda a: a  # noqa: E731
    else:
        if n == 0 or p.size % n:
            raise ValueError(f"{loss.name}: {p.size} predictions do not split into {n} rows of classes")
        K = p.size // n
        if flat == "class_major":
            p = p.reshape(K, n).T
            undo = lambda a: np.ascontiguousarray(a.T).reshape(-1)  # noqa: E731
        else:
            p = p.reshape(n, K)
            undo = lambda a: a.reshape(-1)  # noqa: E731
    yi = _class_labels(loss, y) if rounds is None else rounds.convert(labels, "y", lambda a: _class_labels(loss, y))
    return p, yi, undo


def _class_labels(loss, y):
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{loss.name}: labels (y_true) must be class indices 0..K-1, got dtype {y.dtype}")
    yi = y.astype(np.int64)
    if yi.shape != y.shape or (y.dtype.kind == "f" and not np.array_equal(yi, y)):
        raise ValueError(f"{loss.name}: labels must be class indices 0..K-1, got non-integer values")
    return yi


def _grad_hess(loss, preds, read, hessian, min_hessian, backend, params, flat="row_major",
               rounds: _Rounds | None = None, nthreads: int | None = None, float32_out: bool = False):
    """Per-sample gradient and Hessian. ``read()`` gives (labels, weights): it is called after the compiled
    kernels' workers are woken (``_dispatch.prewake``), so that they wake while an objective reads and checks
    the library's arrays. With ``rounds`` (the objectives): computed in the scores' dtype (float32 scores, as
    XGBoost hands them, give float32 arrays; anything else float64), with labels and weights converted once and
    the output buffers reused. Without it: float64, fresh arrays. ``nthreads`` caps the kernel's threads.
    ``float32_out`` (with ``rounds``): the arrays are float32 whatever the scores' dtype, computed in that dtype
    and rounded (LightGBM keeps its derivatives in float32 and converts float64 ones every round); the compiled
    kernels store them so in their one pass (``NARROW_OUTPUTS``), other backends and multiclass losses
    through a float64 buffer and a copy."""
    dtype = np.float64
    if rounds is not None:
        dt = getattr(preds, "dtype", None)
        dtype = dt if dt in _FLOATS else np.float64
    want32 = float32_out and rounds is not None and dtype != np.float32
    threads = _config.get_num_threads()
    if nthreads is not None and nthreads < threads:
        threads = nthreads
    if threads > 1:
        prewake(loss._backend(backend, dtype), threads, np.size(preds))
    labels, weight = read()
    p, y, undo = _layout(loss, preds, labels, flat, dtype, rounds)
    checked = w_checked = fused = False
    if rounds is None:
        w = _weight(weight)
        g = h = None
    else:
        w = rounds.convert(weight, "w" + p.dtype.str, lambda a: _weight(a, p.dtype))
        fused = want32 and loss.spec.kind != "multiclass" and getattr(loss._backend(backend, p.dtype),
                                                                       "NARROW_OUTPUTS", False)
        g, h = rounds.buffers(p.shape, np.float32 if fused else p.dtype)
        checked = loss.spec.kind != "multiclass" and rounds.checked_once(
            y, lambda a: _check_domain(a, loss.spec.target_domain_for(loss._params(params)[0]), "target", loss.name,
                                       threads))
        # the weights' values once for all rounds too, where they are a copy of ours (a pass over them each round
        # is a share of the kernel's time)
        w_checked = w is not None and rounds.checked_once(
            w, lambda a: check_weight_values(a, loss.name), "w")
    g, h = loss._run(p, y, "none", w, backend, params, GRAD_HESS, g, h, hessian, nthreads=threads,
                     target_checked=checked, weights_checked=w_checked, narrow=fused)
    if min_hessian is not None:  # (on rounded values: the same as rounding the floored ones, rounding is monotone)
        floor = min_hessian if w is None else min_hessian * (w[:, None] if h.ndim == 2 and w.ndim == 1 else w)
        np.maximum(h, floor, out=h)
    if want32 and not fused:  # rounded by a copy
        g32, h32 = rounds.buffers(p.shape, np.float32)
        np.copyto(g32, g, casting="same_kind")
        np.copyto(h32, h, casting="same_kind")
        g, h = g32, h32
    return undo(g), undo(h)


def gradient_hessian(name: str, y_true, y_pred, weight=None, *, hessian=None, min_hessian="auto", backend=None,
                     **params):
    """(gradient, Hessian) per sample, float64, of the unreduced loss times ``weight``: what the objectives
    below return, for any other booster. ``y_pred`` is the raw score ((n,) or (n, K) for multiclass)."""
    name = _loss_name(name)
    loss, hessian, min_hessian = _checked(name, params, hessian, min_hessian)
    return _grad_hess(loss, y_pred, lambda: (y_true, weight), hessian, min_hessian, backend, params)


def metric_value(name: str, y_true, y_pred, weight=None, *, backend=None, **params) -> float:
    """The weighted mean loss (sum(w l) / sum(w)) of raw scores ``y_pred``: what the metrics below report."""
    name = _loss_name(name)
    loss = _loss(name)
    loss._check_params(params)
    p, y, _ = _layout(loss, y_pred, y_true, "row_major")
    return loss(p, y, reduction="mean", sample_weight=_weight(weight), backend=backend, **params)


def _weighted_quantile(y, w, q: float) -> float:
    order = np.argsort(y, kind="stable")
    y, w = y[order], (np.ones_like(y) if w is None else w[order])
    cum = np.cumsum(w)
    return float(y[min(int(np.searchsorted(cum, q * cum[-1])), y.size - 1)])


def initial_score(name: str, y_true, weight=None, **params) -> float:
    """The constant raw score that minimises the weighted mean loss (what the built-in objectives start from
    with ``boost_from_average``): the weighted median / quantile for ``mae`` / ``quantile``, else the point
    where the weighted mean gradient changes sign (``_sign_change``). Single-score losses on raw scores only."""
    name = _loss_name(name)
    loss, _, _ = _checked(name, params, "exact", None)
    full = loss._check_params(params)[0]
    if loss.spec.kind == "multiclass" or loss.spec.pred_domain_for(full) != "real":
        raise ValueError(f"{name}: initial_score is for single-score losses on raw scores")
    y = as_numeric(y_true, np.float64, "y_true", name).reshape(-1)
    w = _weight(weight)
    if loss.spec.optimal_quantile is not None:
        return _weighted_quantile(y, w, loss.spec.optimal_quantile(full))

    def mean_grad_hess(c: float):
        g, h = loss.grad_hess(np.full(y.shape, c), y, reduction="mean", sample_weight=w, **params)
        return float(np.sum(g)), float(np.sum(h))

    return _sign_change(mean_grad_hess)


def _sign_change(mean_grad_hess, c: float = 0.0, steps: int = 200) -> float:
    """Where the weighted mean gradient G(c) of a constant score changes sign, from c: Newton steps while they
    go downhill (H > 0); until G has been seen on both sides of zero, a step that is not a Newton step doubles
    (bounded gradients, H = 0 almost everywhere, H < 0 in a non-convex loss's tails); once the sign change
    lies in [lo, hi], a Newton step that would leave it is replaced by bisection. Plain Newton steps from 0
    overshoot where H is small far from the data (log_cosh, huber) or step uphill where H < 0 (cauchy). A loss
    whose minimiser is at infinity (all targets at a boundary) moves towards it for ``steps`` steps."""
    lo, hi, jump = -np.inf, np.inf, 1.0
    for _ in range(steps):
        G, H = mean_grad_hess(c)
        if G == 0.0 or np.isnan(G):
            return c
        if G < 0.0:
            lo = c
        else:
            hi = c
        newton = c - G / H if H > 0.0 else np.nan
        if np.isfinite(lo) and np.isfinite(hi):
            nxt = newton if lo < newton < hi else 0.5 * (lo + hi)  # (nan compares false: bisection)
        elif np.isfinite(newton):
            nxt = newton
            jump = max(jump, abs(newton - c))
        else:
            nxt = c - np.sign(G) * jump
            jump *= 2.0
        if abs(nxt - c) <= 1e-13 * max(1.0, abs(c)):
            return float(nxt)
        c = float(nxt)
    return c


# --- building data sets with the initial score, and scikit-learn classifiers -----------------------------------


def _logit_classifiers() -> dict:
    """The losses on logits whose scores turn into probabilities, and how: "binary" (sigmoid of one score) or
    "multiclass" (softmax), from the registry's ``probabilities``."""
    return {name: loss.spec.probabilities for name, loss in LOSSES.items() if loss.spec.probabilities}


def initial_scores(name: str, y_true, weight=None, *, num_class=None, **params):
    """The constant raw score a booster should start from: a float for single-score losses
    (:func:`initial_score`), or for the multiclass losses one score per class, the log of the weighted class
    frequencies (the minimiser of ``cross_entropy`` without label smoothing; a sensible start for the others).

    Labels of multiclass losses are class indices 0..K-1. ``num_class`` (multiclass losses only) is K, the
    booster's ``num_class``: labels must be below it, and there is one score per class even for classes that
    ``y_true`` lacks. Without it K is the largest label + 1, at most the number of labels (a larger label makes
    more classes than samples, which takes ``num_class``)."""
    name = _loss_name(name)
    loss = _loss(name)
    if loss.spec.kind != "multiclass":
        if num_class is not None:
            raise ValueError(f"{name}: num_class is for the multiclass losses (one score per class); {name} has "
                             f"one score per sample: leave num_class out, got num_class={num_class!r}")
        return initial_score(name, y_true, weight, **params)
    loss._check_params(params)
    if num_class is not None:
        if isinstance(num_class, (bool, np.bool_)) or not isinstance(num_class, (int, np.integer)):
            raise TypeError(f"{name}: num_class must be an integer >= 1 (the number of classes), got "
                            f"{num_class!r} of type {type(num_class).__name__}")
        if num_class < 1:
            raise ValueError(f"{name}: num_class must be an integer >= 1 (the number of classes), got {num_class!r}")
        num_class = int(num_class)
    raw = _host_array(y_true, "y_true", name).reshape(-1)
    if raw.size == 0:
        raise ValueError(f"{name}: y_true has no labels: the class frequencies need at least one")
    if raw.dtype.kind in "biuf":  # (nan compares false here: it is refused as a non-integer below)
        lo, hi = np.min(raw), np.max(raw)
        if lo < 0:
            raise ValueError(f"{name}: labels must be class indices 0..K-1, got {lo.item()!r}")
        if num_class is not None and hi >= num_class:
            raise ValueError(f"{name}: label {hi.item()!r} is out of range: labels must be class indices "
                             f"0..num_class-1 = 0..{num_class - 1}")
        if num_class is None and hi >= raw.size:
            raise ValueError(f"{name}: label {hi.item()!r} is too large: without num_class, labels must be class "
                             f"indices below the number of labels ({raw.size}); pass num_class=K (the booster's "
                             "num_class) to say how many classes there are")
    y = _class_labels(loss, raw)
    w = _weight(weight)
    if w is not None:
        if w.shape != raw.shape:
            raise ValueError(f"{name}: weight must have one entry per label ({raw.size}), got shape "
                             f"{np.shape(weight)}")
        if not (np.isfinite(w).all() and w.min() >= 0):
            raise weight_values_error(name, w, what="weight")
    counts = np.bincount(y, weights=w, minlength=0 if num_class is None else num_class)
    total = counts.sum()
    if not total > 0:
        raise ValueError(f"{name}: the weights of the labels sum to {total}: no class has a frequency")
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(counts / total, np.finfo(np.float64).tiny))


def _full_init(init, n: int):
    return np.full(n, init, dtype=np.float64) if np.ndim(init) == 0 else np.tile(np.asarray(init), (n, 1))


def _split_valid(item):
    if len(item) == 2:
        return item[0], item[1], None
    if len(item) == 3:
        return item
    raise ValueError(f"valid_sets: each entry must be (X, y) or (X, y, weight), got {len(item)} items")


def _with_margin(make, margin: str, init, X, y, weight, valid_sets, extra, reference=None):
    """(training set, validation sets), each ``make(X, y, weight=..., <margin>=init on every row, **extra)``;
    ``reference``: the keyword under which the validation sets get the training set (LightGBM's)."""
    train = make(X, y, weight=weight, **{margin: _full_init(init, len(y))}, **extra)
    link = {} if reference is None else {reference: train}
    valid = []
    for item in valid_sets:
        Xv, yv, wv = _split_valid(item)
        valid.append(make(Xv, yv, weight=wv, **{margin: _full_init(init, len(yv))}, **link, **extra))
    return train, valid


def lightgbm_datasets(name: str, X, y, *, weight=None, valid_sets=(), dataset_params=None, **params):
    """``(train, valid, init)``: LightGBM data sets that start from the loss's initial score.

    ``train`` is ``lgb.Dataset(X, y, weight=weight, init_score=...)``; ``valid`` a list with one ``lgb.Dataset``
    per ``(X, y)`` or ``(X, y, weight)`` in ``valid_sets``, each with the same initial score and the training set
    as reference; ``init`` the initial score (:func:`initial_scores`: a float, or one per class). A custom
    objective's booster predicts raw scores without it: add ``init`` to ``booster.predict(X)``. ``params``: the
    loss's parameters, and for a multiclass loss ``num_class`` (:func:`initial_scores`).

    Without an ``init_score`` on a validation set, LightGBM scores it from 0 while the training set starts from
    ``init``, and the metric it reports for that set is not the loss of the model's predictions;
    :func:`lightgbm_metric` warns when it sees that.
    """
    import lightgbm as lgb

    init = initial_scores(name, y, weight, **params)
    train, valid = _with_margin(lgb.Dataset, "init_score", init, X, y, weight, valid_sets, dict(dataset_params or {}),
                                reference="reference")
    return train, valid, init


def xgboost_dmatrices(name: str, X, y, *, weight=None, valid_sets=(), dmatrix_params=None, **params):
    """``(dtrain, dvalid, init)``: XGBoost ``DMatrix`` objects whose ``base_margin`` is the loss's initial score
    (the same for every validation set), and ``init``. Predict with the same margin:
    ``booster.predict(xgb.DMatrix(X_test, base_margin=np.full(len(X_test), init)), output_margin=True)`` (without
    one XGBoost starts the test rows from ``base_score`` instead). ``params``: the loss's parameters, and for a
    multiclass loss ``num_class`` (:func:`initial_scores`)."""
    import xgboost as xgb

    init = initial_scores(name, y, weight, **params)
    dtrain, dvalid = _with_margin(xgb.DMatrix, "base_margin", init, X, y, weight, valid_sets,
                                  dict(dmatrix_params or {}))
    return dtrain, dvalid, init


def _sigmoid(z):
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def scores_to_proba(name: str, raw):
    """Class probabilities from raw scores (including the initial score): ``(n, 2)`` for the binary losses on
    logits (sigmoid), ``(n, K)`` for the multiclass ones (softmax), as ``predict_proba`` returns them."""
    name = _loss_name(name)
    classifiers = _logit_classifiers()
    kind = classifiers.get(name)
    if kind is None:
        raise ValueError(f"{name}: no probabilities; scores of {', '.join(classifiers)} are logits")
    raw = as_numeric(raw, np.float64, "raw", name)
    if kind == "binary":
        if raw.ndim > 2 or (raw.ndim == 2 and raw.shape[1] != 1):
            raise ValueError(f"{name}: raw must be one score per sample, shape (n_samples,) or (n_samples, 1), "
                             f"got shape {raw.shape}")
        p = _sigmoid(raw.reshape(-1))
        return np.column_stack([1.0 - p, p])
    if raw.ndim != 2 or raw.shape[1] == 0:
        hint = ("; scores of n samples laid out flat (n * K values): reshape them to (n, K), e.g. "
                "raw.reshape(n, K), or raw.reshape(K, n).T for LightGBM < 4's class-major layout"
                if raw.ndim == 1 else "")
        raise ValueError(f"{name}: raw must be one score per class and sample, shape (n_samples, n_classes) with "
                         f"n_classes >= 1, got shape {raw.shape}{hint}")
    z = raw - raw.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
