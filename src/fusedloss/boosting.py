"""Custom objectives and evaluation metrics for LightGBM and XGBoost, computed by the fused kernels.

>>> import lightgbm as lgb, fusedloss.boosting as fb                                    # doctest: +SKIP
>>> params = {"objective": fb.lightgbm_objective("binary_focal", gamma=2.0), "verbose": -1}
>>> booster = lgb.train(params, train_set, feval=fb.lightgbm_metric("binary_focal", gamma=2.0))

Neither library is imported here: the callables only use the objects the libraries hand them
(``Dataset.get_label()`` / ``get_weight()``; a ``DMatrix``'s labels and weights are read in place through
XGBoost's own C API, the reference ``DMatrix.get_label()`` copies, and through the getters where it is missing).
Labels and weights are read at every call, so ``set_label`` / ``set_weight`` between rounds are seen.

What the objectives return: the per-sample gradient and Hessian (diagonal) of the **unreduced** loss with
respect to the raw score, multiplied by the sample weight taken from the data set, as float64 arrays of the
predictions' shape (``Loss.grad_hess(..., reduction="none")``). Raw scores are what the losses take: logits for
``binary_cross_entropy_with_logits`` and ``binary_focal``, log-rates for ``poisson_nll`` / ``tweedie``, one logit
per class for ``cross_entropy``. The boosters therefore predict raw scores (apply the link yourself, e.g. a
sigmoid), and start from score 0 unless you give them an initial score (``init_score`` in LightGBM,
``base_margin`` / ``base_score`` in XGBoost): see :func:`initial_score`.

Multiclass layout: both libraries hand custom objectives a ``(n_samples, n_classes)`` array in their current
versions (LightGBM >= 4, XGBoost >= 2); it is used as is (class axis last) and the gradient comes back in the same
shape. The flat layouts of older versions are accepted too (LightGBM < 4: class-major; XGBoost: row-major). Labels
are class indices (stored as floats by both libraries).

Hessian options (``hessian=`` and ``min_hessian=``):

- losses whose exact Hessian is zero almost everywhere (``mae``, ``quantile``, ``mape``, ``hinge``,
  ``categorical_hinge``) default to
  ``hessian="ones"`` (1 times the sample weight, as scikit-learn's gradient boosting does): Newton steps become
  gradient steps instead of divisions by zero. Pass ``hessian="exact"`` to get the zeros.
- the exact Hessian of the focal losses (``binary_focal``, ``categorical_focal``, and ``cross_entropy`` with a
  ``softcap``) is negative for confidently misclassified samples (binary focal with gamma = 2: where the margin
  is worse than about -2.5), which makes a Newton step point the wrong way or blow up; so is that of
  ``squared_log`` and ``msle`` where 1 + p > e (1 + y) of ``cauchy`` where |d| > c, and of ``general_robust`` with alpha < 1 where
  (d/c)^2 > |alpha - 2| / (1 - alpha), of ``poly1`` with epsilon outside [-1, 1], and of ``tweedie_identity`` with
  power > 1 or < 0 where (1 - power) p + power y < 0 (every loss whose registry entry
  says ``hessian_may_be_negative``). The safeguard:
  ``min_hessian`` clips the Hessian from below at ``min_hessian * sample_weight``. Its default for those losses
  is ``FOCAL_MIN_HESSIAN = 0.02`` (chosen on imbalanced binary problems, where floors of 1e-6 to 1e-3 let a few
  hard samples produce huge leaf values and the model diverged, while 0.01 to 0.05 trained well; XGBoost's
  reg:squaredlogerror floors at 1e-6, ``min_hessian=1e-6`` reproduces it); for every other loss no clipping. ``min_hessian=None`` disables it; any float >= 0 sets it.
"""

from __future__ import annotations

from ._boosting import lightgbm_metric, lightgbm_objective, xgboost_metric, xgboost_objective
from ._boosting_math import (
    FOCAL_MIN_HESSIAN,
    gradient_hessian,
    initial_score,
    initial_scores,
    lightgbm_datasets,
    metric_value,
    scores_to_proba,
    xgboost_dmatrices,
)

__all__ = [
    "FOCAL_MIN_HESSIAN", "gradient_hessian", "initial_score", "initial_scores", "lightgbm_datasets",
    "lightgbm_metric", "lightgbm_objective", "metric_value", "scores_to_proba", "xgboost_dmatrices",
    "xgboost_metric", "xgboost_objective",
]


def __getattr__(attr):
    # the scikit-learn classifiers subclass the libraries' own: defined when first asked for (fusedloss._estimators)
    if attr == "FusedLGBMClassifier":
        from ._estimators import lightgbm_classifier_class

        return lightgbm_classifier_class()
    if attr == "FusedXGBClassifier":
        from ._estimators import xgboost_classifier_class

        return xgboost_classifier_class()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ += ["initial_scores", "lightgbm_datasets", "scores_to_proba", "xgboost_dmatrices"]
