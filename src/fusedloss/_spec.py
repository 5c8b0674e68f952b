"""The loss registry: one entry per loss, and everything else looks it up here.

Each entry names the loss, its keyword parameters (defaults and valid ranges), the domains of predictions
and targets, flags, and the formula (value, gradient and Hessian with respect to the prediction).

Elementwise losses take ``(pred, target)`` of one shape and are computed point by point. Their scalar
parameters travel to every backend as one tuple of floats, ``LossSpec.packed(params)``: by default each
parameter in the registry's order, as a float (a loss whose parameters need another form, None or an array,
gives its own ``pack``). The point functions live in ``_pointwise.py`` (Python, compiled by Numba and
Numba-CUDA; they unpack the tuple into named values) and in ``cpp/include/fusedloss/losses.hpp`` (C++, whose
constructors name them from a ``Params``), both under the name ``<loss>`` / ``<loss>_point``. A loss with
more parameters changes only its own definitions.

Notation in the formulas: ``p`` prediction, ``y`` target, ``d = p - y``, ``l`` value, ``g = dl/dp``,
``h = d2l/dp2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Param", "LossSpec", "LossInfo", "REGISTRY", "get_spec", "losses"]


def _real(v) -> float:
    """A number as float; text is refused (float() would parse it)."""
    if isinstance(v, (str, bytes)):
        raise TypeError(f"expected a real number, got {type(v).__name__} {v!r}")
    return float(v)


@dataclass(frozen=True)
class Param:
    """A keyword parameter of a loss.

    ``check(value)`` returns ``None`` when the value is valid, else the text of what was expected
    (used in the ``ValueError``). ``convert`` turns the user's value into the stored one.
    """

    name: str
    default: Any
    doc: str
    check: Callable[[Any], str | None] = lambda v: None
    convert: Callable[[Any], Any] = _real


# Every domain a LossSpec may give for predictions and targets (the data generators of the tests and of the
# bench cover each one; tests/test_spec_table.py fails for a domain used here and not listed).
PRED_DOMAINS = ("real", "nonnegative", "positive", "unit", "above_minus_one")
TARGET_DOMAINS = ("real", "positive", "above_minus_one", "nonnegative", "unit", "sign", "class_index")


@dataclass(frozen=True)
class LossSpec:
    name: str
    kind: str  # "elementwise" (pred and target of one shape) | "multiclass" (class axis last) | "sequence" (ctc)
    #          | "pairwise" (two or three arrays compared row by row, see ``inputs``)
    summary: str
    formula: str  # value; gradient; Hessian
    params: tuple[Param, ...] = ()
    # "real" | "nonnegative" | "unit" ([0, 1]) | "above_minus_one" (> -1), or a function of the parameters
    # returning one of those
    pred_domain: str | Callable[[dict], str] = "real"
    # "real" | "positive" (> 0) | "above_minus_one" (> -1) | "nonnegative" | "unit" | "sign" | "class_index",
    # or a function of the parameters returning one of those
    target_domain: str | Callable[[dict], str] = "real"
    differentiable: bool = True
    has_hessian: bool = True
    hessian_zero_ae: bool = False  # Hessian is zero almost everywhere (piecewise-linear losses)
    torch_name: str | None = None  # the torch.nn.functional twin, for cross-checks
    # the scalar parameters as the kernels take them (see ``packed``); None: every parameter, as a float, in
    # order (multiclass: those other than the vector parameter and the ignored label)
    pack: Callable[[dict], tuple[float, ...]] | None = None
    # the parameter that may be a vector along the last axis (pos_weight, class_weight, alpha), or None
    vector_param: str | None = None
    # multiclass only: which target forms it takes, the parameter naming an ignored label, and what
    # "mean" divides by: "class_weight" (sum of s_r * class_weight[t_r] over kept rows), "kept_rows"
    # (sum of s_r over rows not ignored) or "rows" (sum of s_r over all rows)
    hard_labels: bool = False
    soft_labels: bool = False
    ignore_param: str | None = None
    mean_over: str = "rows"
    # multiclass with soft targets: their domain, or a function of the parameters returning it
    soft_target_domain: str | Callable[[dict], str] = "nonnegative"
    # a function of d = p - y alone: its gradient with respect to the target is minus the gradient with
    # respect to the prediction (fusedloss.torch differentiates the target of these)
    residual: bool = False
    # the exact Hessian may be negative (boosting clips it, see fusedloss.boosting), or a function of the
    # parameters saying whether it may
    hessian_may_be_negative: bool | Callable[[dict], bool] = False
    # scores are logits of probabilities: "binary" (sigmoid of one score) or "multiclass" (softmax), else None
    probabilities: str | None = None
    # the constant prediction minimising the weighted mean loss is a weighted quantile of the targets: a
    # function of the parameters giving that quantile (mae: 0.5), else None (found by Newton steps)
    optimal_quantile: Callable[[dict], float] | None = None
    # elementwise: the |d| values (d = p - y; for sign targets the margin's kink sits at d = 0) where the loss
    # switches branch, as a function of the parameters; the tests draw points near them and keep finite
    # differences away from them. None: not declared (the tests then probe d = 0 and |d| = 1).
    kinks: Callable[[dict], tuple[float, ...]] | None = None
    # multiclass with hard labels: the loss's row pass also gives the classification metrics of its rows
    # (fusedloss._logit_metrics: rank of the label, max probability, -log p_t, entropy)
    row_metrics: bool = False
    # pairwise only: the names of the arrays the loss compares (each differentiated), in call order; whether
    # a target with one value per row follows them; and whether a row is a vector along the last axis (D) or
    # a single element (each element a row of its own)
    inputs: tuple[str, ...] = ()
    row_target: bool = False
    vector_rows: bool = True
    # pairwise only: inputs that must be >= 0 (checked before the kernels), and inputs that may come in a shape
    # that broadcasts to the first input's as PyTorch allows (one axis of length 1, the last axis left out, or
    # a Python float), whose gradient is summed back to that shape
    nonnegative_inputs: tuple[str, ...] = ()
    broadcast_inputs: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        """One of fusedloss's own losses (False for a user's, registered by ``fusedloss.elementwise_loss``)."""
        return type(self) is LossSpec

    @property
    def binary_scores(self) -> str | None:
        """What the predictions are to the binary metrics (fusedloss._binary_metrics): "logits" (of a sigmoid
        probability: ``probabilities`` is "binary"), "probabilities" (predictions and targets both in [0, 1]), or
        None (the loss has no binary metrics pass)."""
        if self.probabilities == "binary":
            return "logits"
        if self.pred_domain == "unit" and self.target_domain == "unit":
            return "probabilities"
        return None

    @property
    def metrics_pass(self) -> str | None:
        """The metrics the loss's own pass computes, and so whether its forms take ``metrics=``: "rows" (the
        classification metrics of each row, fusedloss._logit_metrics), "binary" (fusedloss._binary_metrics, on
        ``binary_scores``) or None."""
        if self.row_metrics:
            return "rows"
        return "binary" if self.binary_scores else None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def _packed_params(self) -> list[Param]:
        if self.kind == "sequence":  # its own call signature: its parameters are arguments of their own
            return []
        skip = (self.vector_param, self.ignore_param) if self.kind == "multiclass" else ()
        return [p for p in self.params if p.name not in skip]

    def packed(self, params: dict) -> tuple[float, ...]:
        """The checked keyword parameters as the kernels take them: a tuple of floats, one per parameter.

        Elementwise losses pack every parameter in order (a vector parameter's slot holds its scalar value,
        or a placeholder when it is an array, which kernels get as ``cols``). Multiclass losses pack the
        parameters other than the vector parameter and the ignored label (kernels get those as arguments).
        """
        if self.pack is not None:
            return tuple(float(v) for v in self.pack(params))
        return tuple(float(params[p.name]) for p in self._packed_params())

    def unpack(self, *packed: float) -> dict:
        """Inverse of ``packed``: the keyword parameters from the packed floats."""
        return {p.name: p.convert(v) for p, v in zip(self._packed_params(), packed)}

    def pred_domain_for(self, params: dict) -> str:
        """The prediction domain, which for a few losses depends on a parameter."""
        return self.pred_domain(params) if callable(self.pred_domain) else self.pred_domain

    def target_domain_for(self, params: dict) -> str:
        """The target domain, which for a few losses depends on a parameter (tweedie's power)."""
        return self.target_domain(params) if callable(self.target_domain) else self.target_domain

    def hessian_may_be_negative_for(self, params: dict) -> bool:
        d = self.hessian_may_be_negative
        return bool(d(params)) if callable(d) else d

    def soft_target_domain_for(self, params: dict) -> str:
        """The domain of soft targets (multiclass), which may depend on a parameter (log_target)."""
        d = self.soft_target_domain
        return d(params) if callable(d) else d


# --- parameter checks -------------------------------------------------------------------------------


def _positive(v):
    return None if (math.isfinite(v) and v > 0) else "a finite number > 0"


def _nonnegative(v):
    return None if (math.isfinite(v) and v >= 0) else "a finite number >= 0"


def _open_unit(v):
    return None if 0.0 < v < 1.0 else "a number in the open interval (0, 1)"


def _tweedie_power(v):
    return None if (v <= 0.0 or v >= 1.0) and math.isfinite(v) else "a finite number <= 0 or >= 1"


def _unit_closed(v):
    return None if 0.0 <= v <= 1.0 else "a number in [0, 1]"


def _finite(v):
    return None if math.isfinite(v) else "a finite number"


def _not_nan(v):
    return None if not math.isnan(v) else "a real number, -inf or inf"


def _optional_positive(v):
    return None if v is None else _positive(v)


def _optional_float(v):
    return None if v is None else _real(v)


def _to_int(v):
    if isinstance(v, (bool, str, bytes)) or not float(v).is_integer():
        raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")
    return int(v)


def _margin_power(v):
    return None if v in (1, 2) else "1 or 2"


def _vector_or_scalar(v):
    """None, a float, or a 1-D float64 array (a per-class / per-column vector along the last axis)."""
    if v is None:
        return None
    if hasattr(v, "__len__") or hasattr(v, "shape"):
        import numpy as np

        given = np.asarray(v)
        if given.dtype.kind not in "biuf":  # a cast would drop an imaginary part or parse text
            raise TypeError(f"expected real numbers, got an array of dtype {given.dtype}")
        arr = np.array(given, dtype=np.float64)  # a private copy: later changes by the caller do not leak in
        if arr.ndim == 0:
            return float(arr)
        if arr.ndim != 1:
            raise TypeError(f"expected a scalar or a 1-D array, got an array of shape {arr.shape}")
        return arr
    return _real(v)


def _nonnegative_values(v):
    """Check for a scalar-or-vector parameter: every value finite and >= 0."""
    if v is None:
        return None
    import numpy as np

    values = np.atleast_1d(v)
    return None if bool(np.all(np.isfinite(values) & (values >= 0))) else "finite and >= 0 (every entry)"


def _scalar_or_one(v):
    """The packed slot of a vector parameter: its value when a scalar, else 1 (None; an array travels as
    ``cols`` and replaces the slot per column)."""
    return v if isinstance(v, float) else 1.0


def _to_bool(v):
    if isinstance(v, (bool, int, float)) or type(v).__name__ == "bool_":
        if v in (0, 1):  # True, False, and their packed float forms 1.0 and 0.0
            return bool(v)
    raise TypeError(f"expected a bool, got {type(v).__name__} {v!r}")


REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> LossSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(REGISTRY))}") from None


class LossInfo(dict[str, Any]):
    """One registry entry as ``fl.losses()`` lists it: a plain dict (the keys below, as before) whose fields
    also read as attributes, with a one-line repr: ``<huber (elementwise): delta=1.0 - Huber loss, ...>``."""

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def kind(self) -> str:
        return self["kind"]

    @property
    def params(self) -> dict[str, Any]:
        return self["params"]

    @property
    def summary(self) -> str:
        return self["summary"]

    @property
    def formula(self) -> str:
        return self["formula"]

    @property
    def differentiable(self) -> bool:
        return self["differentiable"]

    @property
    def has_hessian(self) -> bool:
        return self["has_hessian"]

    @property
    def target_domain(self) -> str:
        return self["target_domain"]

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self["params"].items()) or "no parameters"
        return f"<{self['name']} ({self['kind']}): {params} - {self['summary']}>"


class LossList(list[LossInfo]):
    """The list ``fl.losses()`` returns: LossInfo entries, shown one per line."""

    def __repr__(self) -> str:
        return "[\n" + "".join(f"  {entry!r},\n" for entry in self) + "]" if self else "[]"


def losses() -> LossList:
    """The registry as a list of ``LossInfo`` (dicts with attribute access): name, kind, parameters with
    defaults, summary, formula, flags, target domain."""
    return LossList(
        LossInfo(
            name=s.name,
            kind=s.kind,
            params={p.name: p.default for p in s.params},
            summary=s.summary,
            formula=s.formula,
            differentiable=s.differentiable,
            has_hessian=s.has_hessian,
            hessian_zero_almost_everywhere=s.hessian_zero_ae,
            target_domain=s.target_domain_for(s.defaults()),
        )
        for s in REGISTRY.values()
    )


# --- regression losses ------------------------------------------------------------------------------

register(LossSpec(
    name="mse", kind="elementwise", torch_name="mse_loss", residual=True,
    kinks=lambda kw: (),
    summary="squared error (p - y)^2, as torch.nn.functional.mse_loss",
    formula="l = d^2;  g = 2 d;  h = 2",
))

register(LossSpec(
    name="mae", kind="elementwise", torch_name="l1_loss", hessian_zero_ae=True, residual=True,
    kinks=lambda kw: (0.0,),
    optimal_quantile=lambda kw: 0.5,
    summary="absolute error |p - y|, as torch.nn.functional.l1_loss",
    formula="l = |d|;  g = sign(d), sign(0) = 0;  h = 0 (zero almost everywhere)",
))

register(LossSpec(
    name="huber", kind="elementwise", torch_name="huber_loss", residual=True,
    kinks=lambda kw: (kw["delta"],),
    params=(Param("delta", 1.0, "threshold between the quadratic and linear parts", _positive),),
    summary="Huber loss, as torch.nn.functional.huber_loss",
    formula="|d| <= delta: l = d^2/2, g = d, h = 1;  else l = delta (|d| - delta/2), g = delta sign(d), h = 0",
))

register(LossSpec(
    name="asymmetric_huber", kind="elementwise", residual=True,
    kinks=lambda kw: (0.0, kw["delta"]),  # the Hessian jumps at d = 0 when the alphas differ
    params=(
        Param("delta", 1.0, "threshold between the quadratic and linear parts", _positive),
        Param("alpha_left", 1.0, "weight of residuals d = p - y < 0 (pred below target)", _positive),
        Param("alpha_right", 1.0, "weight of residuals d = p - y >= 0 (pred at or above target)", _positive),
    ),
    summary="Huber loss weighted per side of the residual (alpha_left = alpha_right = 1 is huber)",
    formula=("a = alpha_left if d < 0 else alpha_right:  |d| <= delta: l = a d^2/2, g = a d, h = a;  "
             "else l = a delta (|d| - delta/2), g = a delta sign(d), h = 0"),
))

register(LossSpec(
    name="smooth_l1", kind="elementwise", torch_name="smooth_l1_loss", residual=True,
    kinks=lambda kw: (kw["beta"],),
    params=(Param("beta", 1.0, "width of the quadratic part (0 gives mae)", _nonnegative),),
    summary="smooth L1, as torch.nn.functional.smooth_l1_loss (huber / beta)",
    formula="|d| < beta: l = d^2 / (2 beta), g = d / beta, h = 1 / beta;  else l = |d| - beta/2, g = sign(d), h = 0",
))

register(LossSpec(
    name="pseudo_huber", kind="elementwise", residual=True,
    kinks=lambda kw: (),
    params=(Param("delta", 1.0, "scale of the transition", _positive),),
    summary="pseudo-Huber delta^2 (sqrt(1 + (d/delta)^2) - 1), smooth everywhere",
    formula="s = sqrt(1 + (d/delta)^2):  l = delta^2 (s - 1);  g = d / s;  h = 1 / s^3",
))

register(LossSpec(
    name="fair", kind="elementwise", residual=True,
    kinks=lambda kw: (),
    params=(Param("c", 1.0, "scale of the transition from quadratic to linear (LightGBM's fair_c)", _positive),),
    summary="Fair loss c^2 (|d|/c - log(1 + |d|/c)), as LightGBM's objective='fair'",
    formula="u = |d| / c:  l = c^2 (u - log1p(u));  g = d / (1 + u);  h = 1 / (1 + u)^2",
))

register(LossSpec(
    name="cauchy", kind="elementwise", residual=True, hessian_may_be_negative=True,
    kinks=lambda kw: (),
    params=(Param("c", 1.0, "scale: residuals beyond it count logarithmically", _positive),),
    summary="Cauchy (Lorentzian) loss c^2/2 log(1 + (d/c)^2), robust to outliers; its Hessian is negative for |d| > c",
    formula=("z = d / c:  l = c^2/2 log1p(z^2);  g = d / (1 + z^2);  h = (1 - z^2) / (1 + z^2)^2 "
             "(< 0 for |z| > 1)"),
))

register(LossSpec(
    name="general_robust", kind="elementwise", residual=True,
    kinks=lambda kw: (),
    hessian_may_be_negative=lambda kw: kw["alpha"] < 1.0,
    params=(
        Param("alpha", 1.0, "shape: 2 squared error, 1 pseudo-Huber (Charbonnier), 0 Cauchy, -2 Geman-McClure, "
              "-inf Welsch; any real number, -inf or inf", _not_nan),
        Param("c", 1.0, "scale: the width of the quadratic bowl around d = 0", _positive),
    ),
    summary=("Barron's general and adaptive robust loss rho(d, alpha, c) (CVPR 2019), with its limits at "
             "alpha = 0, 2, -inf and inf"),
    formula=("z = (d/c)^2, b = |alpha - 2|, u = 1 + z/b:  l = b/alpha (u^(alpha/2) - 1);  g = d/c^2 u^(alpha/2 - 1);  "
             "h = u^(alpha/2 - 2) (1 + (alpha - 1) z/b) / c^2, negative where alpha < 1 and z > b / (1 - alpha).  "
             "The limits, as the paper defines them: alpha = 2: l = z/2, g = d/c^2, h = 1/c^2;  alpha = 0: "
             "l = log1p(z/2), g = d/c^2 / (1 + z/2), h = (1 - z/2) / (1 + z/2)^2 / c^2;  alpha = -inf: "
             "l = 1 - exp(-z/2), g = d/c^2 exp(-z/2), h = (1 - z) exp(-z/2) / c^2;  alpha = inf (as Barron's "
             "reference code): l = exp(z/2) - 1, g = d/c^2 exp(z/2), h = (1 + z) exp(z/2) / c^2"),
))

register(LossSpec(
    name="log_cosh", kind="elementwise", residual=True,
    kinks=lambda kw: (),
    summary="log(cosh(p - y)), stable for |d| up to the largest finite float",
    formula="l = |d| + log1p(exp(-2|d|)) - log 2;  g = tanh(d);  h = 1 - tanh(d)^2 = 4e/(1+e)^2, e = exp(-2|d|)",
))

register(LossSpec(
    name="quantile", kind="elementwise", hessian_zero_ae=True, residual=True,
    kinks=lambda kw: (0.0,),
    optimal_quantile=lambda kw: kw["quantile"],
    params=(Param("quantile", 0.5, "the quantile level q", _open_unit),),
    summary="pinball loss for the q-quantile (scikit-learn's PinballLoss)",
    formula="r = y - p:  l = q r if r >= 0 else (q - 1) r;  g = -q if r > 0, 1 - q if r < 0, 0 if r = 0;  h = 0",
))

register(LossSpec(
    name="expectile", kind="elementwise", residual=True,
    kinks=lambda kw: (0.0,),  # the Hessian jumps at d = 0 unless tau = 0.5
    params=(Param("expectile", 0.5, "the expectile level tau", _open_unit),),
    summary=("expectile loss |tau - 1(y < p)| (y - p)^2, asymmetric least squares (Newey and Powell 1987); "
             "tau = 0.5 is half the squared error"),
    formula="w = tau if d <= 0 else 1 - tau:  l = w d^2;  g = 2 w d;  h = 2 w",
))

register(LossSpec(
    name="poisson_nll", kind="elementwise", torch_name="poisson_nll_loss", target_domain="nonnegative",
    kinks=lambda kw: (),
    params=(
        Param("log_input", True, "pred is log(rate) (True) or the rate itself (False)", convert=_to_bool),
        Param("eps", 1e-8, "added to the rate inside the log when log_input=False", _nonnegative),
    ),
    pred_domain=lambda kw: "real" if kw["log_input"] else "nonnegative",
    summary="Poisson negative log-likelihood without the Stirling term, as torch.nn.functional.poisson_nll_loss",
    formula=("log_input: l = exp(p) - y p, g = exp(p) - y, h = exp(p);  "
             "else (p >= 0): l = p - y log(p + eps), g = 1 - y / (p + eps), h = y / (p + eps)^2, and at "
             "p + eps = 0 IEEE's values as in PyTorch (y > 0: l = inf, g = -inf; y = 0: nan)"),
))

register(LossSpec(
    name="tweedie", kind="elementwise",
    target_domain=lambda kw: "real" if kw["power"] <= 0 else ("nonnegative" if kw["power"] < 2 else "positive"),
    kinks=lambda kw: (), hessian_may_be_negative=lambda kw: not 1.0 <= kw["power"] <= 2.0,
    params=(Param("power", 1.5, "Tweedie power rho: <= 0 (y real), [1, 2) (y >= 0; 1 is Poisson) or >= 2 "
                  "(y > 0; 2 is Gamma, 3 inverse Gaussian)", _tweedie_power),),
    summary=("half Tweedie deviance with log link, as scikit-learn's HalfTweedieLoss.loss (terms of y alone "
             "left out, but at rho = 0, as there)"),
    formula=("l = exp((2-rho) p)/(2-rho) - y exp((1-rho) p)/(1-rho), and at rho = 0: (exp(p) - y)^2 / 2, "
             "rho = 1: exp(p) - y p, rho = 2: p + y exp(-p);  g = exp((2-rho) p) - y exp((1-rho) p);  "
             "h = (2-rho) exp((2-rho) p) - (1-rho) y exp((1-rho) p), negative where y exp((1-rho) p) is large "
             "for rho < 1 and small for rho > 2"),
))


register(LossSpec(
    name="gamma", kind="elementwise", target_domain="positive",
    kinks=lambda kw: (),
    summary="half Gamma deviance with log link, as scikit-learn's HalfGammaLoss (without its constant term)",
    formula=("y > 0:  l = p + y exp(-p);  g = 1 - y exp(-p);  h = y exp(-p)  (the half deviance is "
             "l - log(y) - 1; scikit-learn's loss() leaves that constant out too)"),
))


def _tweedie_identity_target(kw):
    rho = kw["power"]
    return "real" if rho <= 0 else ("nonnegative" if rho < 2 else "positive")


register(LossSpec(
    name="tweedie_identity", kind="elementwise",
    target_domain=_tweedie_identity_target,
    pred_domain=lambda kw: "real" if kw["power"] == 0 else "positive",
    kinks=lambda kw: (), hessian_may_be_negative=lambda kw: not 0.0 <= kw["power"] <= 1.0,
    params=(Param("power", 1.5, "Tweedie power rho, any real number: <= 0 (y real), (0, 2) (y >= 0; 1 is "
                  "Poisson) or >= 2 (y > 0; 2 is Gamma, 3 inverse Gaussian); the prediction is the mean, > 0 "
                  "unless rho = 0", _finite),),
    summary=("half Tweedie deviance with identity link (the prediction is the mean mu > 0), as scikit-learn's "
             "HalfTweedieLossIdentity, its y-only term included (the loss is 0 at p = y)"),
    formula=("k = 2 - rho:  l = p^k/k - y p^(k-1)/(k-1) + max(y, 0)^k/(k (k-1)), and at rho = 0: (p - y)^2/2, "
             "rho = 1: y log(y/p) + p - y (p at y = 0), rho = 2: log(p/y) + y/p - 1;  g = p^-rho (p - y);  "
             "h = p^-rho ((1 - rho) + rho y/p), negative where y < p (rho - 1)/rho for rho > 1 and where "
             "y > p (1 - rho)/(-rho) for rho < 0.  For y > 0 the value is p^k S(u), u = log(y/p): S is the series "
             "sum_{n>=2} s_n u^n/n! (s_2 = 1, s_{n+1} = k s_n + 1) where |u| max(1, |k|) <= 1, else "
             "(expm1(k u)/k - expm1(u))/(1 - rho), or (e^u expm1((1-rho) u)/(1-rho) - expm1(u))/k for "
             "|1 - rho| < 1/2: no cancellation next to the minimum p = y"),
))


register(LossSpec(
    name="squared_log", kind="elementwise", pred_domain="above_minus_one", target_domain="above_minus_one",
    kinks=lambda kw: (), hessian_may_be_negative=True,
    summary="squared log error 1/2 (log1p(p) - log1p(y))^2 on p, y > -1, as XGBoost's reg:squaredlogerror",
    formula=("r = log1p(p) - log1p(y) = log((1 + p) / (1 + y)):  l = r^2/2;  g = r / (1 + p);  "
             "h = (1 - r) / (1 + p)^2, negative where 1 + p > e (1 + y).  XGBoost raises p to -1 + 1e-6 and "
             "floors h at 1e-6; here p <= -1 is refused and h is exact (fusedloss.boosting floors it at "
             "min_hessian: 0.02 by default, min_hessian=1e-6 as XGBoost)"),
))


register(LossSpec(
    name="msle", kind="elementwise", pred_domain="above_minus_one", target_domain="above_minus_one",
    kinks=lambda kw: (), hessian_may_be_negative=True,
    summary=("mean squared logarithmic error (log1p(p) - log1p(y))^2 on p, y > -1, as "
             "sklearn.metrics.mean_squared_log_error and Keras's MeanSquaredLogarithmicError (twice squared_log)"),
    formula=("r = log1p(p) - log1p(y) = log((1 + p) / (1 + y)):  l = r^2;  g = 2 r / (1 + p);  "
             "h = 2 (1 - r) / (1 + p)^2, negative where 1 + p > e (1 + y).  p or y <= -1 is refused, as scikit-learn "
             "does; Keras raises p and y below its epsilon 1e-7 (negatives included) to 1e-7, which gives a finite "
             "value and a zero gradient there: the two agree where p, y >= 1e-7"),
))


register(LossSpec(
    name="mape", kind="elementwise", hessian_zero_ae=True,
    kinks=lambda kw: (0.0,),
    params=(Param("epsilon", 2.220446049250313e-16, "floor of the denominator max(|y|, epsilon); the default is "
                  "scikit-learn's, the float64 machine epsilon", _positive),),
    summary=("mean absolute percentage error |p - y| / max(|y|, epsilon), a fraction (not times 100), as "
             "sklearn.metrics.mean_absolute_percentage_error"),
    formula=("m = max(|y|, epsilon):  l = |d| / m;  g = sign(d) / m, sign(0) = 0;  h = 0 (zero almost everywhere).  "
             "Keras's MeanAbsolutePercentageError is 100 l with epsilon=1e-7; LightGBM's objective='mape' is the "
             "gradient and unit Hessian of epsilon=1.0 (the L1 gradient over max(1, |y|))"),
))


# --- binary classification (elementwise) ------------------------------------------------------------

register(LossSpec(
    name="binary_cross_entropy", kind="elementwise", torch_name="binary_cross_entropy",
    kinks=lambda kw: (),
    pred_domain="unit", target_domain="unit", vector_param="pos_weight",
    params=(Param("pos_weight", None, "weight of the positive term: a scalar, or one per column of the last "
                  "axis (multilabel)", _nonnegative_values, _vector_or_scalar),),
    pack=lambda kw: (_scalar_or_one(kw["pos_weight"]),),
    summary="binary cross-entropy on probabilities, logs clamped at -100, as torch.nn.functional.binary_cross_entropy",
    formula=("l = -(pw y max(log p, -100) + (1-y) max(log(1-p), -100));  "
             "g = ((1-y) p - pw y (1-p)) / max(p (1-p), e);  h = pw y / max(p^2, e) + (1-y) / max((1-p)^2, e), "
             "e = 1e-12 as a float32 (ATen's EPSILON)"),
))

register(LossSpec(
    name="binary_cross_entropy_with_logits", kind="elementwise", torch_name="binary_cross_entropy_with_logits",
    kinks=lambda kw: (),
    probabilities="binary",
    target_domain="unit", vector_param="pos_weight",
    params=(
        Param("pos_weight", None, "weight of the positive term: a scalar, or one per column of the last axis "
              "(multilabel)", _nonnegative_values, _vector_or_scalar),
        Param("label_smoothing", 0.0, "targets become y (1 - s) + s/2", _unit_closed),
    ),
    pack=lambda kw: (_scalar_or_one(kw["pos_weight"]), kw["label_smoothing"]),
    summary="binary cross-entropy on logits (stable for any finite logit), soft targets allowed, "
            "as torch.nn.functional.binary_cross_entropy_with_logits; with a class axis it is multilabel",
    formula=("y <- y (1-s) + s/2, lw = 1 + (pw - 1) y:  l = (1-y) x + lw softplus(-x);  "
             "g = (1-y) - lw sigmoid(-x);  h = lw sigmoid(x) sigmoid(-x)"),
))

register(LossSpec(
    name="binary_focal", kind="elementwise", target_domain="unit", probabilities="binary",
    kinks=lambda kw: (),
    hessian_may_be_negative=True,
    params=(
        Param("alpha", 0.25, "weight of positives (1 - alpha for negatives); alpha < 0 disables it",
              lambda v: None if (math.isfinite(v) and v <= 1.0) else "a finite number <= 1"),
        Param("gamma", 2.0, "focusing exponent", _nonnegative),
    ),
    summary="sigmoid focal loss on logits, as torchvision.ops.sigmoid_focal_loss",
    formula=("s = sigmoid(x), ce = softplus(x) - y x, q = s (1-y) + (1-s) y, a_t = alpha y + (1-alpha)(1-y) "
             "(1 if alpha < 0):  l = a_t ce q^gamma;  g = a_t ((s - y) q^gamma + gamma ce q^(gamma-1) (1-2y) s (1-s));  "
             "h = its derivative (closed form in _reference.binary_focal)"),
))

register(LossSpec(
    name="exponential", kind="elementwise", target_domain="unit",
    kinks=lambda kw: (),
    summary="exponential loss of AdaBoost on a raw score, targets in [0, 1], as scikit-learn's ExponentialLoss",
    formula=("l = y exp(-x) + (1-y) exp(x);  g = (1-y) exp(x) - y exp(-x);  h = l  (its probability is "
             "sigmoid(2 x))"),
))

register(LossSpec(
    name="hinge", kind="elementwise", target_domain="sign", hessian_zero_ae=True,
    kinks=lambda kw: (0.0,),
    summary="hinge loss max(0, 1 - t x) for targets t in {-1, 1} ({0, 1} accepted: 0 means -1)",
    formula="t = 1 if y > 0 else -1:  l = max(0, 1 - t x);  g = -t if t x < 1 else 0;  h = 0",
))

register(LossSpec(
    name="squared_hinge", kind="elementwise", target_domain="sign",
    kinks=lambda kw: (0.0,),
    summary="squared hinge max(0, 1 - t x)^2 for targets t in {-1, 1} ({0, 1} accepted: 0 means -1)",
    formula="t = 1 if y > 0 else -1, m = max(0, 1 - t x):  l = m^2;  g = -2 t m;  h = 2 if m > 0 else 0",
))

register(LossSpec(
    name="hinge_embedding", kind="elementwise", torch_name="hinge_embedding_loss", hessian_zero_ae=True,
    kinks=lambda kw: (),
    params=(Param("margin", 1.0, "the margin of the y = -1 term max(0, margin - x)", _finite),),
    summary=("hinge embedding loss x (y = 1), max(0, margin - x) (y = -1), as "
             "torch.nn.functional.hinge_embedding_loss (other targets too, as torch computes them)"),
    formula=("m = margin - x:  l = [y != -1] x + [y != 1] max(0, m);  g = [y != -1] - [y != 1] [m >= 0];  h = 0.  "
             "As torch's masks: y = 1 gives x, y = -1 gives max(0, m), any other y (0, 2, 0.5) both terms, whose sum "
             "is max(x, margin), taken as that (exact where torch's sum rounds; margin at x = -inf, torch nan); at "
             "the kink m = 0 the gradient is torch's (-1 from the margin term); a nan input or target gives nan "
             "everywhere (torch reads a nan target as a third kind: both terms)"),
))

register(LossSpec(
    name="zero_one", kind="elementwise", target_domain="sign", differentiable=False, has_hessian=False,
    params=(Param("threshold", 0.5, "pred > threshold predicts the positive class", _finite),),
    summary="misclassification indicator (a metric, not differentiable): targets {0, 1} or {-1, 1}",
    formula="l = 1 if (x > threshold) != (y > 0) else 0",
))

# --- multiclass (class axis last) ---------------------------------------------------------------------

_class_weight = Param("class_weight", None, "one weight per class (length C), as PyTorch's `weight`",
                      _nonnegative_values, _vector_or_scalar)
def _int64(v):
    return None if -(2**63) <= v < 2**63 else "an integer that fits int64 (labels are int64)"


_ignore_index = Param("ignore_index", -100, "hard label whose rows count for nothing", check=_int64, convert=_to_int)

register(LossSpec(
    name="cross_entropy", kind="multiclass", torch_name="cross_entropy", target_domain="class_index",
    probabilities="multiclass", hessian_may_be_negative=lambda kw: bool(kw.get("softcap")),
    hard_labels=True, soft_labels=True, ignore_param="ignore_index", mean_over="class_weight",
    vector_param="class_weight", row_metrics=True,
    params=(
        _class_weight, _ignore_index,
        Param("label_smoothing", 0.0, "mix the target with the uniform distribution", _unit_closed),
        Param("z_loss", 0.0, "adds z_loss * logsumexp(z)^2 per row (PaLM)", _nonnegative),
        Param("softcap", None, "logits become softcap * tanh(x / softcap) first", _optional_positive,
              _optional_float),
        Param("confidence_penalty", 0.0, "subtracts confidence_penalty * H(p), the softmax's entropy, per row "
              "(Pereyra et al. 2017)", _nonnegative),
    ),
    pack=lambda kw: (kw["label_smoothing"], kw["z_loss"], kw["softcap"] or 0.0, kw["confidence_penalty"]),
    summary="softmax cross-entropy over the last axis with hard or soft targets, as torch.nn.functional.cross_entropy",
    formula=("z = softcap tanh(x/softcap) (or x), lse = logsumexp(z), p = softmax(z), e = label_smoothing, "
             "cw class weights, W = sum cw.  hard t: l = (1-e) cw_t (lse - z_t) + (e/C) (W lse - sum cw z) + z_loss lse^2;  "
             "soft q: q' = (1-e) q + e/C, l = sum cw q' (lse - z) + z_loss lse^2.  "
             "dl/dz_j = A p_j - b_j + 2 z_loss lse p_j with A = (1-e) cw_t + (e/C) W, b_j = (1-e) cw_t [j=t] + (e/C) cw_j "
             "(soft: A = sum cw q', b_j = cw_j q'_j);  d2l/dz_j^2 = A p_j (1-p_j) + 2 z_loss (p_j^2 + lse p_j (1-p_j)); "
             "confidence_penalty b: l -= b H with H = -sum p_j log p_j = log s + (1/s) sum_j e_j (max z - z_j) "
             "(e_j = exp(z_j - max z), s = sum e: non-negative terms), log p_j = (z_j - max z) - log s; "
             "dl/dz_j += b p_j (log p_j + H), d2l/dz_j^2 += b p_j ((1 - 2 p_j)(log p_j + H) + 1 - p_j) (p_j = 0: 0).  "
             "z_loss and confidence_penalty terms are weighted as the row: by its sample weight, not by cw_t "
             "(ignored rows: 0); chain rule through softcap"),
))

register(LossSpec(
    name="categorical_focal", kind="multiclass", target_domain="class_index", probabilities="multiclass",
    hessian_may_be_negative=True,
    hard_labels=True, ignore_param="ignore_index", mean_over="kept_rows", vector_param="alpha",
    params=(
        Param("alpha", None, "class weighting: a scalar, or one weight per class", _nonnegative_values,
              _vector_or_scalar),
        Param("gamma", 2.0, "focusing exponent", _nonnegative),
        _ignore_index,
    ),
    summary="softmax focal loss with integer targets (Lin et al. 2017)",
    formula=("p_t = softmax(x)_t, a_t = alpha[t] (or alpha, or 1):  l = -a_t (1-p_t)^gamma log p_t;  "
             "g_j = a_t F (p_j - [j=t]) with F = (1-p_t)^gamma - gamma p_t log(p_t) (1-p_t)^(gamma-1);  "
             "h_j = a_t (F p_j (1-p_j) - F'(p_t) p_t (p_j - [j=t])^2)"),
))

register(LossSpec(
    name="multi_margin", kind="multiclass", torch_name="multi_margin_loss", target_domain="class_index",
    hard_labels=True, mean_over="rows", vector_param="class_weight", hessian_zero_ae=False,
    params=(
        Param("margin", 1.0, "the margin", _finite),
        Param("p", 1, "exponent, 1 or 2", _margin_power, _to_int),
        _class_weight,
    ),
    summary="multiclass hinge loss, as torch.nn.functional.multi_margin_loss",
    formula=("v_j = margin - x_t + x_j:  l = cw_t / C sum_{j != t} max(0, v_j)^p;  "
             "g_j = cw_t / C p v_j^(p-1) [v_j > 0] (j != t), g_t = -sum_{j != t} g_j;  "
             "h = 0 for p = 1; for p = 2: h_j = 2 cw_t / C [v_j > 0], h_t = sum_{j != t} h_j"),
))

register(LossSpec(
    name="kl_div_with_logits", kind="multiclass", target_domain="nonnegative",
    soft_labels=True, mean_over="rows",
    soft_target_domain=lambda kw: "real" if kw["log_target"] else "nonnegative",
    params=(
        Param("log_target", False, "target holds log-probabilities", convert=_to_bool),
        Param("temperature", 1.0, "logits are divided by it (the T^2 factor of distillation is yours to apply)",
              _positive),
    ),
    summary=("KL(target || softmax(logits / T)) per row, logits in (torch.nn.functional.kl_div takes "
             "log-probabilities); 'mean' is PyTorch's batchmean"),
    formula=("z = x / T, lp = log_softmax(z), S = sum q:  l = sum q (log q - lp);  "
             "g_j = (S p_j - q_j) / T;  h_j = S p_j (1 - p_j) / T^2"),
))

register(LossSpec(
    name="jensen_shannon", kind="multiclass", target_domain="nonnegative",
    soft_labels=True, mean_over="rows",
    hessian_may_be_negative=lambda kw: kw["beta"] > 0.0,
    params=(
        Param("beta", 0.5, "weight of the target in the mixture M = beta q + (1 - beta) p, as Liger's LigerJSD "
              "(0: forward KL(q || p), 1: reverse KL(p || q))", _unit_closed),
    ),
    summary=("generalised Jensen-Shannon divergence between a target distribution and softmax(logits) per row, "
             "as Liger-Kernel's LigerJSD (logits in); 'mean' is the mean over rows"),
    formula=("p = softmax(x), q the target row, m = beta q + (1 - beta) p (the log of m taken with a stable "
             "logaddexp of log q and log p), r_j = log(p_j / m_j), R = sum p r, D_j = r_j - R, "
             "v_j = beta q_j / m_j, 0 log 0 = 0.  0 < beta < 1:  l = beta sum q log(q / m) + "
             "(1 - beta) sum p log(p / m);  g_j = (1 - beta) p_j D_j;  h_j = (1 - beta) p_j ((1 - 2 p_j) D_j "
             "+ v_j (1 - p_j)^2 + p_j sum_{k != j} p_k v_k).  The ends are Liger's and TRL's (the formula itself "
             "tends to 0 there):  beta = 0: l = KL(q || p) = sum q log(q / p), g_j = S p_j - q_j, "
             "h_j = S p_j (1 - p_j), S = sum q;  beta = 1: l = KL(p || q) = sum p log(p / q) with r_j = "
             "log(p_j / q_j), g_j = p_j D_j, h_j = p_j ((1 - 2 p_j) D_j + 1 - p_j); infinite where q_j = 0 < p_j, "
             "and then D is its limit as those q_j go to 0 together: +inf on them and -inf on the classes with "
             "q > 0, or log p_j - sum p log p where no class with q > 0 has p > 0"),
))

register(LossSpec(
    name="multilabel_soft_margin", kind="multiclass", torch_name="multilabel_soft_margin_loss",
    target_domain="unit", soft_labels=True, soft_target_domain="unit", mean_over="rows",
    vector_param="class_weight",
    params=(_class_weight,),
    summary=("multilabel one-versus-all logistic loss, the mean over classes of binary cross-entropies on logits, "
             "as torch.nn.functional.multilabel_soft_margin_loss"),
    formula=("y_j in [0, 1] per class (multi-hot or soft), cw class weights:  "
             "l = 1/C sum_j cw_j (y_j softplus(-x_j) + (1 - y_j) softplus(x_j)) "
             "= -1/C sum_j cw_j (y_j log sigmoid(x_j) + (1 - y_j) log sigmoid(-x_j));  "
             "g_j = cw_j / C ((1 - y_j) sigmoid(x_j) - y_j sigmoid(-x_j)) = cw_j / C (sigmoid(x_j) - y_j);  "
             "h_j = cw_j / C sigmoid(x_j) sigmoid(-x_j).  A term whose coefficient is 0 adds 0 at an infinite "
             "logit (torch: 0 * inf = nan)"),
))

register(LossSpec(
    name="poly1", kind="multiclass", target_domain="class_index", probabilities="multiclass",
    hard_labels=True, soft_labels=True, ignore_param="ignore_index", mean_over="kept_rows",
    hessian_may_be_negative=lambda kw: not -1.0 <= kw["epsilon"] <= 1.0,
    params=(
        Param("epsilon", 2.0, "coefficient of the polynomial term 1 - p_t (optax's default 2.0; 0 gives "
              "cross-entropy)", _finite),
        _ignore_index,
    ),
    summary=("Poly-1 loss, cross-entropy + epsilon (1 - p_t) (Leng et al. 2022), as "
             "optax.poly_loss_cross_entropy; integer labels or target distributions"),
    formula=("p = softmax(x), lse = logsumexp(x), q the target row (a label t: its one-hot row), S = sum q, "
             "P = sum q p (p_t for a label):  l = sum q (lse - x) + epsilon (1 - P);  "
             "g_j = S p_j - q_j - epsilon p_j (q_j - P)  (a label: g_j = (1 + epsilon p_t) (p_j - [j=t]));  "
             "h_j = S p_j (1 - p_j) - epsilon p_j (1 - 2 p_j) (q_j - P), negative somewhere for labels exactly when "
             "epsilon is outside [-1, 1]"),
))

register(LossSpec(
    name="categorical_hinge", kind="multiclass", target_domain="class_index", hessian_zero_ae=True,
    hard_labels=True, soft_labels=True, soft_target_domain="real", ignore_param="ignore_index", mean_over="kept_rows",
    params=(_ignore_index,),
    summary=("Keras's categorical hinge max(neg - pos + 1, 0), pos = sum y x, neg = max (1 - y) x, as "
             "keras.losses.categorical_hinge; one-hot, soft or -1/1 targets, or integer labels (their one-hot rows)"),
    formula=("pos = sum_j y_j x_j, neg = max_j (1 - y_j) x_j, both over every class as Keras computes them: the true "
             "class's (1 - y_t) x_t = 0 is in the max, so with one-hot targets or a label t neg = max(0, max_{j != t} "
             "x_j) >= 0 (not the max over the other classes alone);  l = max(neg - pos + 1, 0);  "
             "g_j = (1 - y_j) [j = m] - y_j where neg - pos + 1 > 0, else 0 (at = 0 too, as hinge), m the first index "
             "attaining neg (a subgradient where the max ties);  h = 0 (piecewise linear: zero wherever it exists).  "
             "0 * inf counts as 0 (a masked class without target mass; Keras: nan); neg - pos = inf - inf "
             "makes the row nan"),
))

# --- sequence losses (their own call signature: scores, targets, input and target lengths) ----------


def _ctc_inputs(v):
    if v not in ("logits", "log_probs"):
        raise TypeError(f"expected 'logits' or 'log_probs', got {v!r}")
    return v


def _class_label(v):
    return None if v >= 0 else "a class index >= 0 (and < C)"


register(LossSpec(
    name="ctc", kind="sequence", torch_name="ctc_loss", target_domain="class_index", has_hessian=False,
    params=(
        Param("blank", 0, "class index of the blank", _class_label, _to_int),
        Param("zero_infinity", False, "infinite losses (no alignment) become 0, with a zero gradient",
              convert=_to_bool),
        Param("batch_first", False, "scores are (N, T, C) instead of (T, N, C)", convert=_to_bool),
        Param("inputs", "logits", "'logits' (log_softmax fused in) or 'log_probs' (PyTorch's input)",
              convert=_ctc_inputs),
    ),
    summary=("Connectionist Temporal Classification over (T, N, C) scores, as torch.nn.functional.ctc_loss "
             "('mean': each loss over its target length, then the mean over the batch)"),
    formula=("lp = log_softmax(x) (inputs='logits') or x (inputs='log_probs'); l' = target with blanks around "
             "every label; alpha/beta the forward/backward log-probabilities over l':  "
             "l = -log sum over alignments of prod_t exp(lp[t, path_t]) = -logsumexp(alpha[T-1, L-1], alpha[T-1, L-2]);  "
             "gamma[t, k] = sum_{s: l'_s = k} exp(alpha[t, s] + beta[t, s] + l);  "
             "g[t, k] = exp(lp[t, k]) - gamma[t, k] (w.r.t. the logits: exact; w.r.t. log-probabilities: "
             "PyTorch's convention);  no Hessian"),
))

# --- pairwise losses (their own call signature: two or three arrays compared row by row) -------------


def _triplet_p(v):
    return None if not math.isnan(v) else "a number (the order of the p-norm: any real, inf or -inf)"


register(LossSpec(
    name="margin_ranking", kind="pairwise", torch_name="margin_ranking_loss",
    has_hessian=False, inputs=("input1", "input2"), row_target=True, vector_rows=False,
    params=(Param("margin", 0.0, "the margin the ranked pair must clear", _finite),),
    summary=("margin ranking loss max(0, -y (x1 - x2) + margin) per element, y = 1 ranking x1 above x2 and "
             "y = -1 below, as torch.nn.functional.margin_ranking_loss (any real y, as torch computes it)"),
    formula=("m = -y (x1 - x2) + margin:  l = max(0, m);  dl/dx1 = -y [m >= 0], dl/dx2 = y [m >= 0] (at m = 0 "
             "torch's clamp_min passes the gradient);  Hessian: not provided (piecewise linear, zero almost "
             "everywhere; pairwise losses have no Hessian entry point)"),
))

register(LossSpec(
    name="cosine_embedding", kind="pairwise", torch_name="cosine_embedding_loss",
    has_hessian=False, inputs=("input1", "input2"), row_target=True,
    params=(Param("margin", 0.0, "dissimilar pairs (y = -1) cost nothing below this cosine", _finite),),
    summary=("cosine embedding loss per row of the last axis: 1 - cos (y = 1), max(0, cos - margin) (y = -1), "
             "0 for any other y, as torch.nn.functional.cosine_embedding_loss"),
    formula=("s = sum x1 x2, m1 = sum x1^2 + e, m2 = sum x2^2 + e with e = 1e-12 as a float32 (ATen's EPSILON), "
             "r = sqrt(m1 m2), c = s / r:  "
             "l = 1 - c (y = 1), max(0, c - margin) (y = -1), 0 (other y);  dc/dx1 = x2 / r - c x1 / m1, "
             "dc/dx2 = x1 / r - c x2 / m2;  dl/dx = -dc/dx (y = 1), [c - margin >= 0] dc/dx (y = -1), 0 (other y);  "
             "Hessian: not provided (a dense D x D block per row and pair of inputs, which the kernels do not form)"),
))

register(LossSpec(
    name="triplet_margin", kind="pairwise", torch_name="triplet_margin_loss", has_hessian=False,
    inputs=("anchor", "positive", "negative"),
    params=(
        Param("margin", 1.0, "the margin by which the negative must be farther than the positive", _positive),
        Param("p", 2.0, "the order of the p-norm of the distances", _triplet_p),
        Param("eps", 1e-6, "added to every difference before the norm, as torch.nn.functional.pairwise_distance",
              _finite),
        Param("swap", False, "the negative's distance is the smaller of d(a, n) and d(p, n) (Balntas et al. 2016)",
              convert=_to_bool),
    ),
    summary=("triplet margin loss max(0, d(a, p) - d(a, n) + margin) per row of the last axis, with "
             "d(u, v) = ||u - v + eps||_p, as torch.nn.functional.triplet_margin_loss"),
    formula=("d(u, v) = ||u - v + eps||_p, dp = d(a, p), dn = d(a, n) (swap: min(d(a, n), d(p, n))), "
             "m = dp - dn + margin:  l = max(0, m);  with e = u - v + eps, dd/du = -dd/dv = sign(e) |e|^(p-1) / "
             "d^(p-1) (0 where d = 0; for p < 1, negative p included, 0 where e = 0); p = inf: d = max |e| (-inf: "
             "min |e|) and dd/du = sign(e) / k on the k elements where |e| = d, 0 elsewhere; p = 0: d = the count "
             "of e != 0, no gradient (0); a row of no element has d = 0 (inf for p < 0 and -inf); the gradient flows where m >= 0 (torch's "
             "clamp_min) into dp with +1 and into dn with -1; swap: into d(a, n) where it is smaller, into "
             "d(p, n) where that is, half into each at a tie (torch's minimum);  Hessian: not provided (a "
             "dense D x D block per row and pair of inputs, which the kernels do not form)"),
))

register(LossSpec(
    name="gaussian_nll", kind="pairwise", torch_name="gaussian_nll_loss", has_hessian=False,
    inputs=("input", "target", "var"), vector_rows=False, nonnegative_inputs=("var",), broadcast_inputs=("var",),
    params=(
        Param("full", False, "add the constant 0.5 log(2 pi)", convert=_to_bool),
        Param("eps", 1e-6, "var is raised to eps (without a gradient through the clamp, as PyTorch)", _positive),
    ),
    summary=("Gaussian negative log-likelihood 0.5 (log v + (x - y)^2 / v) with v = max(var, eps), as "
             "torch.nn.functional.gaussian_nll_loss (var of the input's shape, or one axis of length 1, the last "
             "axis left out, or a float: one variance shared along that axis)"),
    formula=("v = max(var, eps) (the clamp is not differentiated, as PyTorch's clamp under no_grad), d = x - y:  "
             "l = 0.5 (log v + d^2 / v) (+ 0.5 log(2 pi) with full);  dl/dx = d / v, dl/dy = -d / v, "
             "dl/dvar = 0.5 (1 / v - d^2 / v^2) (at the clamped v, also where var < eps; summed over the axes var "
             "is broadcast along);  Hessian: not provided (pairwise losses have no Hessian entry point)"),
))

# --- overlap losses (their own call signature: scores with a class axis, a ratio of sums per class) ----------


def _overlap_mode(v):
    if v not in ("multiclass", "binary", "multilabel"):
        raise TypeError(f"expected 'multiclass', 'binary' or 'multilabel', got {v!r}")
    return v


def _optional_int(v):
    return None if v is None else _to_int(v)


def _optional_int64(v):
    return None if v is None else _int64(v)


def _overlap_params(*extra: Param) -> tuple[Param, ...]:
    """The parameters dice and tversky share (segmentation_models_pytorch's DiceLoss / TverskyLoss), then
    ``extra``."""
    return (
        Param("mode", "multiclass", "'multiclass' (softmax over the class axis, integer class targets), 'binary' "
              "(one channel: every element a pixel of one class) or 'multilabel' (sigmoid per channel, 0/1 targets "
              "of the input's shape)", convert=_overlap_mode),
        Param("from_logits", True, "scores are logits (softmax or sigmoid applied); False: probabilities",
              convert=_to_bool),
        Param("smooth", 0.0, "added to the numerator and the denominator of the score", _nonnegative),
        Param("eps", 1e-7, "the denominator (and with log_loss the score) is clamped to >= eps", _positive),
        Param("log_loss", False, "per-class loss -log(max(score, eps)) instead of 1 - score", convert=_to_bool),
        Param("ignore_index", None, "target value whose pixels count for nothing (None: every pixel counts)",
              check=_optional_int64, convert=_optional_int),
        Param("per_sample", False, "sums over the spatial axes of each sample (one score per sample and class, "
              "then the mean over both) instead of over the batch too (segmentation_models_pytorch's)",
              convert=_to_bool),
        Param("class_weights", None, "one weight per class for the mean over classes (0 leaves a class out, as "
              "segmentation_models_pytorch's classes=[...] does; not with mode='binary')", _nonnegative_values,
              _vector_or_scalar),
        *extra,
    )


_OVERLAP_COMMON = (
    "p = softmax over the class axis (multiclass) or sigmoid (binary, multilabel) of the scores with from_logits, "
    "else the scores;  y = one-hot of the class index (multiclass) or the target;  pixels whose target is "
    "ignore_index have p = y = 0.  Per class c, summed over the batch and spatial axes (per_sample: over the "
    "spatial axes of each sample):  I = sum min(p, y) (segmentation_models_pytorch 0.6 computes the overlap as "
    "(P + Y - sum |p - y|) / 2, which is sum p y for 0/1 targets and p in [0, 1]; its gradient at p = y is 1/2, "
    "torch's sign(0) = 0, and this follows it), P = sum p, Y = sum y, FP = P - I, FN = Y - I;  "
    "s_c = (I + smooth) / max(I + alpha FP + beta FN + smooth, eps);  "
    "l_c = 1 - s_c (log_loss: -log max(s_c, eps)), times [Y > 0] (a class without true pixels adds 0 but still "
    "counts in the mean, as segmentation_models_pytorch's mask);  L = sum_c w_c l_c / sum_c w_c (w: class_weights, "
    "else 1; per_sample: also the mean over samples, weighted by sample_weight)")

register(LossSpec(
    name="dice", kind="overlap", target_domain=lambda kw: "class_index" if kw["mode"] == "multiclass" else "unit",
    has_hessian=False, probabilities="multiclass", pack=lambda kw: (),
    params=_overlap_params(),
    summary=("Dice loss over scores with a class axis (N, C, ...), as segmentation_models_pytorch's DiceLoss "
             "(0.6): 1 - (I + smooth) / (I + (FP + FN) / 2 + smooth) per class, the mean over classes"),
    formula=(_OVERLAP_COMMON.replace("alpha FP + beta FN", "(FP + FN) / 2") + ";  with smooth = 0 this is "
             "1 - 2 I / (P + Y), and smooth counts twice as much as in the classic (2 I + smooth) / (P + Y + smooth) "
             "(segmentation_models_pytorch 0.6 computes dice as tversky with alpha = beta = 1/2).  Gradient as "
             "tversky's with alpha = beta = 1/2.  Hessian: not provided (a ratio of sums over the whole batch: a "
             "dense Hessian the kernels do not form)"),
))

register(LossSpec(
    name="tversky", kind="overlap", target_domain=lambda kw: "class_index" if kw["mode"] == "multiclass" else "unit",
    has_hessian=False, probabilities="multiclass", pack=lambda kw: (),
    params=_overlap_params(
        Param("alpha", 0.5, "weight of the false positives", _nonnegative),
        Param("beta", 0.5, "weight of the false negatives", _nonnegative),
        Param("gamma", 1.0, "the value is the class mean raised to gamma (segmentation_models_pytorch: on the "
              "mean, not per class)", _positive),
    ),
    summary=("Tversky loss over scores with a class axis (N, C, ...), as segmentation_models_pytorch's "
             "TverskyLoss (0.6): 1 - (I + smooth) / (I + alpha FP + beta FN + smooth) per class, the mean over "
             "classes raised to gamma"),
    formula=(_OVERLAP_COMMON + ";  value L^gamma.  Gradient: dl_c/dI and dl_c/dP from s_c (the clamps pass the "
             "gradient where max(u, eps) = u, as torch's clamp_min), dI/dp = [p < y] + [p = y] / 2, dP/dp = 1, "
             "then the softmax / sigmoid Jacobian.  Hessian: not provided (the value is a ratio of sums over the "
             "whole batch: every pair of pixels of a class interacts, a dense Hessian the kernels do not form)"),
))
