"""The callables ``fusedloss.boosting`` hands to LightGBM and XGBoost: objectives and evaluation metrics, one
class per calling convention (native and scikit-learn API), computed by ``_boosting_math.py``; and the reading
of an XGBoost ``DMatrix``'s labels and weights in place."""

from __future__ import annotations

import ctypes
import json
import sys
import warnings

import numpy as np

from . import _config
from ._boosting_math import _Borrowed, _Rounds, _checked, _grad_hess, _layout, _loss, _loss_name, _weight


# --- the callables handed to the libraries ---------------------------------------------------------------------
# One class per calling convention (the libraries inspect the parameter names and count), sharing what they
# compute; instances are picklable (a model with its objective can be saved, cloned and sent to workers).


class _Objective:
    """Gradient and Hessian of the unreduced loss for a booster (see the module docstring)."""

    def __init__(self, library: str, loss, params: dict, hessian, min_hessian, backend, flat: str):
        self.library, self._loss, self._flat, self.backend = library, loss, flat, backend
        self.loss, self.params, self.hessian, self.min_hessian = loss.name, dict(params), hessian, min_hessian
        self.__name__ = f"fusedloss_{loss.name}"
        self._rounds = _Rounds()

    def __getstate__(self):
        return {**self.__dict__, "_rounds": None}  # the cached conversions and buffers are rebuilt

    def __setstate__(self, state):
        self.__dict__.update(state, _rounds=_Rounds())

    def __repr__(self):
        return f"<fusedloss {self.library} objective {self.loss}>"

    def _compute(self, y_pred, read):
        """``read()`` gives (labels, weights) once the workers are woken (``_boosting_math._grad_hess``). A
        LightGBM objective returns float32 arrays: LightGBM keeps the derivatives in float32 and converts any
        others (a copy of both, every round); they are computed in the scores' dtype and rounded."""
        return _grad_hess(self._loss, y_pred, read, self.hessian, self.min_hessian, self.backend, self.params,
                          self._flat, self._rounds, self._threads(), float32_out=self.library == "lightgbm")

    def _threads(self):
        """The objective's thread cap: none (fusedloss's thread count, ``fusedloss.get_num_threads``), except
        that an XGBoost objective runs on the calling thread unless a count was chosen for fusedloss
        (``set_num_threads``, ``FUSEDLOSS_NUM_THREADS``). XGBoost calls it right after the prediction of each
        round, while XGBoost's OpenMP threads still spin on the other cores, so that a second thread of ours
        waits for a core: inside a training the call took 1.35-1.4x its one-thread time (100k rows, 2 cores)
        and no less at 1M rows."""
        if self.library == "xgboost" and _config.chosen_num_threads() is None:
            return 1
        return None

    def _check_data(self, data, expected: str):
        if not hasattr(data, "get_label"):
            raise TypeError(f"{self.library}_objective({self.loss!r}): expected (preds, {expected}); for the "
                            f"scikit-learn API use {self.library}_objective(..., api='sklearn')")


class _LightGBMObjective(_Objective):
    def __call__(self, preds, train_data):
        self._check_data(train_data, "lightgbm.Dataset")
        return self._compute(preds, lambda: (train_data.get_label(), train_data.get_weight()))


class _LightGBMSklearnObjective(_Objective):
    def __call__(self, y_true, y_pred, weight):
        return self._compute(y_pred, lambda: (y_true, weight))


def _dmatrix_info(dtrain, field: str):
    """A DMatrix's ``label`` or ``weight`` without a copy: a read-only view of XGBoost's own array, valid while
    the call lasts (no conversion of it is kept: ``_Rounds.convert``; ``_VIEWS`` hands the view out again only
    while XGBoost reports the same memory). ``get_label()`` asks XGBoost's C API for the same
    reference (``XGDMatrixGetInfoRef``) and then copies it through about 0.1 ms of Python per call at 100k rows,
    twice per round (labels and weights) in an objective. Any other object, or an XGBoost without that call,
    goes through the public getter."""
    view = _dmatrix_view(dtrain, field)
    return getattr(dtrain, f"get_{field}")() if view is None else view


# The last view made per (DMatrix handle, field), with the array interface text it was made from: XGBoost
# returns the same text (pointer, shape, type) every round while its data stay where they are, and parsing it
# cost 5 us of the 8-10 us a read took. A view whose text comes back unchanged points at the same memory.
_VIEWS: dict = {}


def _dmatrix_view(dtrain, field: str):
    """``_dmatrix_info``'s direct read, or None where it does not apply (then XGBoost's getter gives the array,
    or raises its own error): no C API call, a failed call, or not a contiguous float vector."""
    lib = getattr(sys.modules.get("xgboost.core"), "_LIB", None)
    ref = getattr(lib, "XGDMatrixGetInfoRef", None)
    handle = getattr(dtrain, "handle", None)
    if ref is None or not isinstance(handle, ctypes.c_void_p):
        return None
    out = ctypes.c_char_p()
    if ref(handle, field.encode(), ctypes.byref(out)) != 0 or out.value is None:
        return None
    text, key = out.value, (handle.value, field)
    hit = _VIEWS.get(key)
    if hit is not None and hit[0] == text:
        return hit[1]
    view = _interface_view(json.loads(text))
    if len(_VIEWS) >= 16:  # data sets come and go: no pile-up
        _VIEWS.clear()
    _VIEWS[key] = (text, view)
    return view


def _interface_view(interface: dict):
    """A read-only array over an ``__array_interface__`` description of a contiguous float vector, or None."""
    shape, typestr = tuple(interface.get("shape", ())), interface.get("typestr")
    if typestr not in ("<f4", "<f8") or len(shape) != 1 or interface.get("strides") not in (None, [int(typestr[2])]):
        return None
    if shape[0] == 0:
        return np.empty(0, np.dtype(typestr))
    return np.asarray(_Borrowed({"shape": shape, "typestr": typestr, "data": (int(interface["data"][0]), True),
                                 "version": 3}))


class _XGBoostObjective(_Objective):
    def __call__(self, predt, dtrain):
        self._check_data(dtrain, "xgboost.DMatrix")
        return self._compute(predt, lambda: (_dmatrix_info(dtrain, "label"), _dmatrix_info(dtrain, "weight")))


class _XGBoostSklearnObjective(_Objective):
    def __call__(self, y_true, y_pred, sample_weight=None):
        return self._compute(y_pred, lambda: (y_true, sample_weight))


class _Metric:
    """The weighted mean loss of the raw scores, lower is better."""

    def __init__(self, loss, params: dict, label: str, backend, flat: str):
        self._loss, self.params, self.backend, self._flat = loss, dict(params), backend, flat
        self.loss = loss.name
        self.__name__ = label

    def __repr__(self):
        return f"<fusedloss metric {self.__name__}>"

    def _value(self, y_true, y_pred, weight) -> float:
        p, y, _ = _layout(self._loss, y_pred, y_true, self._flat)
        return self._loss(p, y, reduction="mean", sample_weight=_weight(weight), backend=self.backend, **self.params)


class _LightGBMMetric(_Metric):
    def __call__(self, preds, eval_data):
        _warn_missing_init_score(f"lightgbm_metric({self.loss!r})", eval_data)
        return self.__name__, self._value(eval_data.get_label(), preds, eval_data.get_weight()), False


class _LightGBMSklearnMetric(_Metric):
    def __call__(self, y_true, y_pred, weight):
        return self.__name__, self._value(y_true, y_pred, weight), False


class _XGBoostMetric(_Metric):
    def __call__(self, predt, dmatrix):
        return self.__name__, self._value(dmatrix.get_label(), predt, dmatrix.get_weight())


class _XGBoostSklearnMetric(_Metric):
    def __call__(self, y_true, y_pred, sample_weight=None):
        return self._value(y_true, y_pred, sample_weight)


def _objective(library, native, sklearn, flat, name, api, hessian, min_hessian, backend, params):
    loss, hessian, min_hessian = _checked(_loss_name(name), params, hessian, min_hessian)
    args = (library, loss, params, hessian, min_hessian, backend, flat)
    obj = native(*args)
    obj.sklearn = sklearn(*args)
    return _pick_api(api, obj, obj.sklearn)


def _metric(native, sklearn, flat, name, api, metric_name, backend, params):
    name = _loss_name(name)
    loss = _loss(name)
    loss._check_params(params)
    args = (loss, params, metric_name or name, backend, flat)
    metric = native(*args)
    metric.sklearn = sklearn(*args)
    return _pick_api(api, metric, metric.sklearn)


def lightgbm_objective(name: str, *, api: str = "native", hessian=None, min_hessian="auto", backend=None,
                       **params):
    """A LightGBM custom objective for the loss ``name`` with its parameters.

    ``api="native"`` (default): ``fobj(preds, train_data) -> (grad, hess)`` for ``lgb.train(params={"objective":
    fobj, ...})``; the sample weights come from ``train_data.get_weight()``. ``api="sklearn"``:
    ``objective(y_true, y_pred, weight) -> (grad, hess)`` for ``LGBMRegressor(objective=...)`` /
    ``LGBMClassifier``. The native callable also carries the sklearn one as ``.sklearn``. The gradient and
    Hessian come back as float32 arrays, the dtype LightGBM keeps them in: computed in float64 and rounded.
    """
    return _objective("lightgbm", _LightGBMObjective, _LightGBMSklearnObjective, "class_major", name, api, hessian,
                      min_hessian, backend, params)


def lightgbm_metric(name: str, *, api: str = "native", metric_name=None, backend=None, **params):
    """A LightGBM evaluation metric: the weighted mean loss of the raw scores, lower is better.

    ``api="native"``: ``feval(preds, eval_data) -> (name, value, False)`` for ``lgb.train(feval=...)``;
    ``api="sklearn"``: ``metric(y_true, y_pred, weight) -> (name, value, False)`` for ``fit(eval_metric=...)``.
    Scores are raw when the objective is a custom one (LightGBM then applies no link).
    """
    return _metric(_LightGBMMetric, _LightGBMSklearnMetric, "class_major", name, api, metric_name, backend, params)


def xgboost_objective(name: str, *, api: str = "native", hessian=None, min_hessian="auto", backend=None, **params):
    """An XGBoost custom objective for the loss ``name`` with its parameters.

    ``api="native"`` (default): ``obj(predt, dtrain) -> (grad, hess)`` for ``xgb.train(..., obj=obj)``; the sample
    weights come from ``dtrain.get_weight()`` (empty: unweighted). ``api="sklearn"``:
    ``objective(y_true, y_pred, sample_weight=None)`` for ``XGBRegressor(objective=...)``. With a custom
    objective XGBoost starts from ``base_score`` (set it, e.g. from :func:`initial_score`) and predicts raw
    margins. It runs on the calling thread unless a thread count was chosen for fusedloss
    (``fusedloss.set_num_threads``, ``FUSEDLOSS_NUM_THREADS``): XGBoost calls it while its own OpenMP threads
    still spin after the round's prediction.
    """
    return _objective("xgboost", _XGBoostObjective, _XGBoostSklearnObjective, "row_major", name, api, hessian,
                      min_hessian, backend, params)


def xgboost_metric(name: str, *, api: str = "native", metric_name=None, backend=None, **params):
    """An XGBoost evaluation metric: the weighted mean loss of the raw margins.

    ``api="native"``: ``custom_metric(predt, dmatrix) -> (name, value)`` for ``xgb.train(custom_metric=...)``
    (with a custom objective XGBoost passes raw margins; set ``disable_default_eval_metric``);
    ``api="sklearn"``: ``metric(y_true, y_pred, sample_weight=None) -> value`` named ``metric_name`` (XGBoost
    reports a scikit-learn-style metric under its ``__name__``).
    """
    return _metric(_XGBoostMetric, _XGBoostSklearnMetric, "row_major", name, api, metric_name, backend, params)


def _pick_api(api: str, native, sklearn):
    if api == "native":
        return native
    if api == "sklearn":
        return sklearn
    raise ValueError(f"api must be 'native' or 'sklearn', got {api!r}")


def _warn_missing_init_score(label: str, eval_data) -> None:
    """Warn (once per data set) when a validation set has no init_score and its training set has one."""
    get = getattr(eval_data, "get_init_score", None)
    ref = getattr(eval_data, "reference", None)
    if get is None or ref is None or ref is eval_data or getattr(eval_data, "_fusedloss_init_checked", False):
        return
    try:
        eval_data._fusedloss_init_checked = True
    except AttributeError:  # pragma: no cover - a data set object that takes no attributes
        pass
    if get() is None and ref.get_init_score() is not None:
        warnings.warn(
            f"{label}: a validation set has no init_score while its training set has one, so LightGBM scores it "
            "from 0 and the metric it reports is not the loss of the model's predictions. Give it the same "
            "init_score (np.full(len(y_valid), init)), or build both with fusedloss.boosting.lightgbm_datasets",
            UserWarning, stacklevel=3)
