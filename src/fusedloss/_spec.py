"""The loss registry: one entry per loss, and everything else looks it up here.

Each entry names the loss, its keyword parameters (defaults and valid ranges), the domains of predictions
and targets, flags, and the formula (value, gradient and Hessian with respect to the prediction).

Elementwise losses take ``(pred, target)`` of one shape and are computed point by point. Their scalar
parameters are packed into two floats ``(a, b)`` that every backend's point function receives; ``pack``
says how. The point functions live in ``_pointwise.py`` (Python, compiled by Numba and Numba-CUDA) and in
``cpp/include/fusedloss/losses.hpp`` (C++), both under the name ``<loss>`` / ``<loss>_point``.

Notation in the formulas: ``p`` prediction, ``y`` target, ``d = p - y``, ``l`` value, ``g = dl/dp``,
``h = d2l/dp2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Param", "LossSpec", "REGISTRY", "get_spec", "losses"]


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
    convert: Callable[[Any], Any] = float


@dataclass(frozen=True)
class LossSpec:
    name: str
    kind: str  # "elementwise" (pred and target of one shape) | "multiclass" (class axis last)
    summary: str
    formula: str  # value; gradient; Hessian
    params: tuple[Param, ...] = ()
    # "real" | "nonnegative" | "unit" ([0, 1]), or a function of the parameters returning one of those
    pred_domain: str | Callable[[dict], str] = "real"
    target_domain: str = "real"  # "real" | "nonnegative" | "unit" | "sign" | "class_index"
    differentiable: bool = True
    has_hessian: bool = True
    hessian_zero_ae: bool = False  # Hessian is zero almost everywhere (piecewise-linear losses)
    torch_name: str | None = None  # the torch.nn.functional twin, for cross-checks
    pack: Callable[[dict], tuple[float, float]] = lambda kw: (0.0, 0.0)
    aliases: tuple[str, ...] = field(default=())

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def unpack(self, a: float, b: float) -> dict:
        """Inverse of ``pack``: the keyword parameters from the two packed floats."""
        return {p.name: p.convert(v) for p, v in zip(self.params, (a, b))}

    def pred_domain_for(self, params: dict) -> str:
        """The prediction domain, which for a few losses depends on a parameter."""
        return self.pred_domain(params) if callable(self.pred_domain) else self.pred_domain


# --- parameter checks -------------------------------------------------------------------------------


def _positive(v):
    return None if (math.isfinite(v) and v > 0) else "a finite number > 0"


def _nonnegative(v):
    return None if (math.isfinite(v) and v >= 0) else "a finite number >= 0"


def _open_unit(v):
    return None if 0.0 < v < 1.0 else "a number in the open interval (0, 1)"


def _tweedie_power(v):
    return None if 1.0 < v < 2.0 else "a number in the open interval (1, 2)"


def _to_bool(v):
    if isinstance(v, (bool, int)) or type(v).__name__ == "bool_":
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


def losses() -> list[dict]:
    """The registry as a list of plain dicts: name, kind, parameters with defaults, formula summary."""
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "params": {p.name: p.default for p in s.params},
            "summary": s.summary,
            "formula": s.formula,
            "differentiable": s.differentiable,
            "has_hessian": s.has_hessian,
            "hessian_zero_almost_everywhere": s.hessian_zero_ae,
            "target_domain": s.target_domain,
        }
        for s in REGISTRY.values()
    ]


# --- regression losses ------------------------------------------------------------------------------

register(LossSpec(
    name="mse", kind="elementwise", torch_name="mse_loss",
    summary="squared error (p - y)^2, as torch.nn.functional.mse_loss",
    formula="l = d^2;  g = 2 d;  h = 2",
))

register(LossSpec(
    name="mae", kind="elementwise", torch_name="l1_loss", hessian_zero_ae=True,
    summary="absolute error |p - y|, as torch.nn.functional.l1_loss",
    formula="l = |d|;  g = sign(d), sign(0) = 0;  h = 0 (zero almost everywhere)",
))

register(LossSpec(
    name="huber", kind="elementwise", torch_name="huber_loss",
    params=(Param("delta", 1.0, "threshold between the quadratic and linear parts", _positive),),
    pack=lambda kw: (kw["delta"], 0.0),
    summary="Huber loss, as torch.nn.functional.huber_loss",
    formula="|d| <= delta: l = d^2/2, g = d, h = 1;  else l = delta (|d| - delta/2), g = delta sign(d), h = 0",
))

register(LossSpec(
    name="smooth_l1", kind="elementwise", torch_name="smooth_l1_loss",
    params=(Param("beta", 1.0, "width of the quadratic part (0 gives mae)", _nonnegative),),
    pack=lambda kw: (kw["beta"], 0.0),
    summary="smooth L1, as torch.nn.functional.smooth_l1_loss (huber / beta)",
    formula="|d| < beta: l = d^2 / (2 beta), g = d / beta, h = 1 / beta;  else l = |d| - beta/2, g = sign(d), h = 0",
))

register(LossSpec(
    name="pseudo_huber", kind="elementwise",
    params=(Param("delta", 1.0, "scale of the transition", _positive),),
    pack=lambda kw: (kw["delta"], 0.0),
    summary="pseudo-Huber delta^2 (sqrt(1 + (d/delta)^2) - 1), smooth everywhere",
    formula="s = sqrt(1 + (d/delta)^2):  l = delta^2 (s - 1);  g = d / s;  h = 1 / s^3",
))

register(LossSpec(
    name="log_cosh", kind="elementwise",
    summary="log(cosh(p - y)), stable for |d| up to the largest finite float",
    formula="l = |d| + log1p(exp(-2|d|)) - log 2;  g = tanh(d);  h = 1 - tanh(d)^2 = 4e/(1+e)^2, e = exp(-2|d|)",
))

register(LossSpec(
    name="quantile", kind="elementwise", hessian_zero_ae=True,
    params=(Param("quantile", 0.5, "the quantile level q", _open_unit),),
    pack=lambda kw: (kw["quantile"], 0.0),
    summary="pinball loss for the q-quantile (scikit-learn's PinballLoss)",
    formula="r = y - p:  l = q r if r >= 0 else (q - 1) r;  g = -q if r > 0, 1 - q if r < 0, 0 if r = 0;  h = 0",
))

register(LossSpec(
    name="poisson_nll", kind="elementwise", torch_name="poisson_nll_loss", target_domain="nonnegative",
    params=(
        Param("log_input", True, "pred is log(rate) (True) or the rate itself (False)", convert=_to_bool),
        Param("eps", 1e-8, "added to the rate inside the log when log_input=False", _nonnegative),
    ),
    pack=lambda kw: (1.0 if kw["log_input"] else 0.0, kw["eps"]),
    pred_domain=lambda kw: "real" if kw["log_input"] else "nonnegative",
    summary="Poisson negative log-likelihood without the Stirling term, as torch.nn.functional.poisson_nll_loss",
    formula=("log_input: l = exp(p) - y p, g = exp(p) - y, h = exp(p);  "
             "else (p >= 0): l = p - y log(p + eps), g = 1 - y / (p + eps), h = y / (p + eps)^2"),
))

register(LossSpec(
    name="tweedie", kind="elementwise", target_domain="nonnegative",
    params=(Param("power", 1.5, "Tweedie power rho", _tweedie_power),),
    pack=lambda kw: (kw["power"], 0.0),
    summary="half Tweedie deviance with log link, as scikit-learn's HalfTweedieLoss (without its constant term)",
    formula=("rho in (1, 2):  l = exp((2-rho) p)/(2-rho) - y exp((1-rho) p)/(1-rho);  "
             "g = exp((2-rho) p) - y exp((1-rho) p);  h = (2-rho) exp((2-rho) p) - (1-rho) y exp((1-rho) p)"),
))
