"""scikit-learn-style classifiers of LightGBM and XGBoost trained on a fusedloss loss on logits.

``fusedloss.boosting.FusedLGBMClassifier`` and ``FusedXGBClassifier`` subclass the libraries' own classifiers;
each class is defined on first use, so neither library is imported before a user asks for its class. Both do
the same around the library's ``fit``: encode the labels, start the booster (and every validation set) from the
loss's initial score, and turn raw scores back into probabilities and labels.
"""

from __future__ import annotations

import numpy as np

from ._boosting import lightgbm_objective, xgboost_objective
from ._boosting_math import _logit_classifiers, _full_init, _loss_name, initial_scores, scores_to_proba


class _Setup:
    """What a fused classifier's ``fit`` needs: the loss name and parameters, the classes and encoded labels,
    and the initial score (0 when the caller gives offsets of their own)."""

    def __init__(self, owner: str, loss, loss_params, y, sample_weight, offsets_given: bool):
        name = _loss_name(loss)
        classifiers = _logit_classifiers()
        if name not in classifiers:
            raise ValueError(f"{owner}: loss must be one of {', '.join(classifiers)}, got {name!r}")
        self.owner, self.name, self.params = owner, name, dict(loss_params or {})
        self.classes, self.encoded = np.unique(_class_labels(owner, y), return_inverse=True)
        if self.classes.size < 2:
            raise ValueError(f"{owner}: y holds a single class ({self.classes.tolist()[0]!r}); a classifier needs "
                             "samples of at least 2 classes in y")
        if classifiers[name] == "binary" and self.classes.size > 2:
            raise ValueError(f"{owner}: {name} is a binary loss, y has {self.classes.size} classes; "
                             "use loss='cross_entropy' or 'categorical_focal'")
        # a multiclass loss on two classes keeps two scores per row: the libraries train one unless told
        self.num_class = 2 if classifiers[name] != "binary" and self.classes.size == 2 else None
        self.init = 0.0 if offsets_given else initial_scores(name, self.encoded.astype(np.float64), sample_weight,
                                                               **self.params)

    def encode(self, v):
        """Labels of a validation set as indices into the training classes."""
        v = np.asarray(v)
        at = np.minimum(np.searchsorted(self.classes, v), self.classes.size - 1)
        if not np.array_equal(self.classes[at], v):
            raise ValueError(f"{self.owner}: a validation set holds labels that y does not have")
        return at

    def offsets(self, n: int):
        return _full_init(self.init, n)


def _class_labels(owner: str, y) -> np.ndarray:
    """y checked as scikit-learn's classifiers check it: given, of a classification type ("Unknown label type:
    continuous" for a regression target, the message of scikit-learn's ``check_classification_targets``), and
    1-D (a column vector is flattened with scikit-learn's DataConversionWarning). Both libraries' scikit-learn
    interfaces require scikit-learn, so it is there."""
    from sklearn.utils import column_or_1d
    from sklearn.utils.multiclass import check_classification_targets

    if y is None:
        raise ValueError(f"This {owner} estimator requires y to be passed, but the target y is None.")
    check_classification_targets(y)
    return column_or_1d(y, warn=True)


def _check_fitted(model) -> None:
    """scikit-learn's NotFittedError (a ValueError and an AttributeError) before ``fit``, as the libraries' own
    classifiers raise it (LightGBM's predict raises it by itself)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)


def _as_list(items):
    return list(items) if isinstance(items, (tuple, list)) else [items]


def _predict_labels(classes, proba):
    return classes[np.argmax(proba, axis=1)]


_CLASSES: dict = {}


def lightgbm_classifier_class():
    """FusedLGBMClassifier, defined on first use (LightGBM is optional)."""
    if "lightgbm" in _CLASSES:
        return _CLASSES["lightgbm"]
    import lightgbm as lgb

    class FusedLGBMClassifier(lgb.LGBMClassifier):
        """``lightgbm.LGBMClassifier`` trained on a fusedloss loss on logits, with probabilities.

        ``loss``: ``"binary_focal"`` (default), ``"binary_cross_entropy_with_logits"``, ``"cross_entropy"`` or
        ``"categorical_focal"``; ``loss_params``: its parameters (e.g. ``{"gamma": 2.0}``). Every other argument
        is LightGBM's. ``fit`` starts the booster from the loss's initial score (also on ``eval_set``);
        ``predict_proba`` adds it back and applies the sigmoid / softmax, ``predict`` returns class labels, so the
        model works in scikit-learn pipelines, ``cross_val_score`` and with ``predict_proba(X)[:, 1]``.
        ``decision_function`` gives the raw scores (logits).
        """

        def __init__(self, *, loss="binary_focal", loss_params=None, **kwargs):
            self.loss = loss
            self.loss_params = loss_params
            super().__init__(**kwargs)

        def fit(self, X, y, sample_weight=None, init_score=None, eval_set=None, eval_init_score=None, **kwargs):
            setup = _Setup("FusedLGBMClassifier", self.loss, self.loss_params, y, sample_weight,
                           init_score is not None)
            if kwargs.get("eval_y") is not None:  # LightGBM encodes eval_set's labels, not eval_y's: do it here
                kwargs["eval_y"] = tuple(setup.classes[setup.encode(v)] if setup.classes.dtype.kind in "biuf"
                                         else setup.encode(v) for v in _as_list(kwargs["eval_y"]))
            if init_score is None:
                init_score = setup.offsets(len(setup.encoded))
                if eval_init_score is None:  # every validation set starts where the training set does
                    if kwargs.get("eval_y") is not None:
                        ys = kwargs["eval_y"]
                    elif eval_set is not None:
                        ys = [s[1] for s in ([eval_set] if isinstance(eval_set, tuple) else eval_set)]
                    else:
                        ys = []
                    eval_init_score = [setup.offsets(len(v)) for v in ys] or None
            self.init_score_ = setup.init  # the caller's offsets (init_score given): predictions do not include them
            self._fused_num_class = setup.num_class
            objective = self.objective
            # LightGBM trains on ``_objective`` (set from ``objective`` by its constructor and set_params); the
            # public parameter is restored afterwards, so that get_params / clone see what the user gave
            self.objective = self._objective = lightgbm_objective(setup.name, api="sklearn", **setup.params)
            try:
                super().fit(X, y, sample_weight=sample_weight, init_score=init_score, eval_set=eval_set,
                            eval_init_score=eval_init_score, **kwargs)
            finally:
                self.objective = objective
            return self

        def get_params(self, deep=True):
            params = super().get_params(deep=deep)
            if self.__dict__.get("_hide_loss"):  # LightGBM reads "loss" as the objective; these are not its
                params.pop("loss", None)
                params.pop("loss_params", None)
            return params

        def _process_params(self, stage):
            self._hide_loss = True
            try:
                params = super()._process_params(stage)
            finally:
                self._hide_loss = False
            if stage == "fit" and self.__dict__.get("_fused_num_class"):
                params["num_class"] = self._fused_num_class
                # LightGBM's metric for two classes is the binary one, which two scores per row do not fit
                metric = params.get("metric")
                if isinstance(metric, str) and metric.startswith("binary_"):
                    params["metric"] = {"binary_logloss": "multi_logloss", "binary_error": "multi_error"}.get(
                        metric, metric)
            return params

        def __getstate__(self):
            # the fitted objective is a closure (not picklable) and prediction does not need it: LightGBM's
            # name for "custom objective, raw scores" stands in for it
            state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
            if callable(state.get("_objective")):
                state = dict(state, _objective="none")
            return state

        def decision_function(self, X, **kwargs):
            raw = lgb.LGBMModel.predict(self, X, raw_score=True, **kwargs)
            return np.asarray(raw) + self.init_score_

        def predict_proba(self, X, raw_score=False, **kwargs):
            if raw_score:
                return self.decision_function(X, **kwargs)
            return scores_to_proba(self.loss, self.decision_function(X, **kwargs))

        def predict(self, X, raw_score=False, **kwargs):
            if raw_score:
                return self.decision_function(X, **kwargs)
            return _predict_labels(self.classes_, self.predict_proba(X, **kwargs))

    return _publish("lightgbm", FusedLGBMClassifier)


def xgboost_classifier_class():
    """FusedXGBClassifier, defined on first use (XGBoost is optional)."""
    if "xgboost" in _CLASSES:
        return _CLASSES["xgboost"]
    import xgboost as xgb

    class FusedXGBClassifier(xgb.XGBClassifier):
        """``xgboost.XGBClassifier`` trained on a fusedloss loss on logits, with probabilities.

        ``loss``: ``"binary_focal"`` (default), ``"binary_cross_entropy_with_logits"``, ``"cross_entropy"`` or
        ``"categorical_focal"``; ``loss_params``: its parameters (e.g. ``{"gamma": 2.0}``). Every other argument
        is XGBoost's (``objective`` is set by ``loss``). Labels may be any values (strings too): they are encoded
        for XGBoost and given back by ``predict``. ``fit`` starts the booster from the loss's initial score as
        ``base_margin`` (also on ``eval_set``), unless you pass ``base_margin`` yourself; ``predict_proba`` adds
        it back and applies the sigmoid / softmax; ``decision_function`` gives the raw scores (logits).
        """

        def __init__(self, *, loss="binary_focal", loss_params=None, **kwargs):
            self.loss = loss
            self.loss_params = loss_params
            super().__init__(**kwargs)

        @property
        def classes_(self):
            labels = self.__dict__.get("_fused_classes")
            return labels if labels is not None else np.arange(self.n_classes_)

        def get_xgb_params(self):
            params = super().get_xgb_params()
            params.pop("loss", None)  # fusedloss's, not booster parameters
            params.pop("loss_params", None)
            if self.__dict__.get("_fused_num_class"):
                params["num_class"] = self._fused_num_class
                # XGBoost's default metric for two classes (logloss) reads one score per row: none by default
                if params.get("eval_metric") is None:
                    params["disable_default_eval_metric"] = True
            return params

        def fit(self, X, y, *, sample_weight=None, base_margin=None, eval_set=None, base_margin_eval_set=None,
                **kwargs):
            self.__dict__.pop("_fused_classes", None)  # XGBoost checks the encoded classes against classes_
            setup = _Setup("FusedXGBClassifier", self.loss, self.loss_params, y, sample_weight,
                           base_margin is not None)
            if eval_set is not None:
                eval_set = [(Xv, setup.encode(yv)) for Xv, yv in eval_set]
            if base_margin is None:
                base_margin = setup.offsets(len(setup.encoded))
                if base_margin_eval_set is None and eval_set is not None:
                    base_margin_eval_set = [setup.offsets(len(yv)) for _, yv in eval_set]
            self.init_score_ = setup.init
            self._fused_num_class = setup.num_class
            objective = self.objective
            self.objective = xgboost_objective(setup.name, api="sklearn", **setup.params)
            try:
                super().fit(X, setup.encoded, sample_weight=sample_weight, base_margin=base_margin,
                            eval_set=eval_set, base_margin_eval_set=base_margin_eval_set, **kwargs)
            finally:
                self.objective = objective
            self._fused_classes = setup.classes
            return self

        def decision_function(self, X, base_margin=None, **kwargs):
            """Raw scores (logits): the trees' margin added to the initial score, or to ``base_margin`` if given
            (your own offsets, when you trained with them)."""
            _check_fitted(self)
            if base_margin is None:
                n = X.shape[0] if hasattr(X, "shape") else len(X)
                init, k = self.init_score_, self.n_classes_
                base_margin = _full_init(init, n) if (np.ndim(init) or k <= 2) else np.zeros((n, k))
            raw = xgb.XGBModel.predict(self, X, output_margin=True, base_margin=base_margin, **kwargs)
            return np.asarray(raw, dtype=np.float64)

        def predict_proba(self, X, base_margin=None, **kwargs):
            return scores_to_proba(self.loss, self.decision_function(X, base_margin=base_margin, **kwargs))

        def predict(self, X, base_margin=None, **kwargs):
            proba = self.predict_proba(X, base_margin=base_margin, **kwargs)  # (before fit: NotFittedError)
            return _predict_labels(self.classes_, proba)

    return _publish("xgboost", FusedXGBClassifier)


def _publish(library: str, cls):
    cls.__module__ = "fusedloss.boosting"  # pickles by name, via fusedloss.boosting's __getattr__
    cls.__qualname__ = cls.__name__
    _CLASSES[library] = cls
    return cls
