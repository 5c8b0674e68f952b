"""``nn.Module`` forms: drop-ins for ``torch.nn``'s loss modules where torch has the loss, one per other registry
loss, and ``FusedLoss`` (any registry loss by name); ``MODULES`` maps each registry name to its class. Each
module holds its options as attributes and calls the functional form in ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._dispatch import Loss
from .._spec import REGISTRY
from ._args import _legacy_reduction
from ._ctc import CTCLoss
from ._overlap import DiceLoss, TverskyLoss
from ._pairwise import CosineEmbeddingLoss, GaussianNLLLoss, MarginRankingLoss, TripletMarginLoss
from ._generate import module_of, renamed_getattr
from ._routing import _is_default, _torch_is_faster, _weight_ok, module_route, run_on_torch
from .functional import (FUNCTIONAL, GENERATED, binary_cross_entropy, binary_cross_entropy_with_logits,
                         binary_focal_loss, binary_hinge_loss, categorical_hinge_loss, cross_entropy, focal_loss,
                         hinge_embedding_loss, huber_loss, jensen_shannon_loss, kl_div_with_logits, l1_loss,
                         log_cosh_loss, loss, mse_loss, multi_margin_loss, multilabel_soft_margin_loss,
                         poisson_nll_loss, poly1_loss, pseudo_huber_loss, quantile_loss, smooth_l1_loss,
                         squared_hinge_loss, tweedie_loss, zero_one_error)

# --- nn.Module classes --------------------------------------------------------------------------------------


class _LossModule(torch.nn.Module):
    """Holds the call's options as attributes, read at each call as torch's modules do (``loss.ignore_index = 3``
    after construction takes effect); ``forward(input, target)`` calls the functional form."""

    _fn = None  # the functional form
    _shown = ()  # option names shown by extra_repr
    _buffer_names = ()  # tensor options held as buffers (they follow ``.to(device)``), registered by the subclass

    def __init__(self, reduction="mean", **options):
        super().__init__()
        self.reduction = reduction
        self._option_names = tuple(options) + self._buffer_names
        for k, v in options.items():
            setattr(self, k, v)

    def forward(self, input, target):
        found = self._torch_route(input, target)
        if found is not None:
            try:
                return run_on_torch(found[0], input, target, self._buffer_names, found[1])
            except Exception:  # noqa: BLE001 - torch refuses the call: the fused form says why (_routing.REFUSED)
                pass
        return type(self)._fn(input, target, reduction=self.reduction, **self._call_options())

    def _torch_route(self, input, target):
        """``(the routing decision, the buffers' values)`` where this call runs on torch's own function, else
        None. Every call of a small loss asks, so the decision of the options is kept (``_route``: made again
        after any attribute changes, see _routing.module_route) with the buffers' values when they are all None
        (``.to(device)`` leaves None as it is; an assignment makes the decision again)."""
        route = self.__dict__.get("_route", False)
        if route is False:
            route = self.__dict__["_route"] = self._kept_route()
        if route is None or not _torch_is_faster(input, target, route[0][1]):
            return None
        if route[1] is not None:
            return route
        buffers = [self._buffers[k] for k in self._buffer_names]
        return (route[0], buffers) if all(map(_weight_ok, buffers)) else None

    def _kept_route(self):
        route = self._module_route()
        if route is None:
            return None
        unset = all(self._buffers.get(k) is None for k in self._buffer_names)
        return route, ((None,) * len(self._buffer_names) if unset else None)

    def _to_torch(self, input, target) -> bool:  # for _routing.routes_to_torch
        return self._torch_route(input, target) is not None

    def _module_route(self):
        options = {k: getattr(self, k) for k in self._option_names if k not in self._buffer_names}
        return module_route(type(self)._fn, {"reduction": self.reduction, **options}, self._buffer_names)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self.__dict__["_route"] = False

    def __getstate__(self):
        return {**super().__getstate__(), "_route": False}

    def _call_options(self) -> dict:
        return {k: getattr(self, k) for k in self._option_names}

    def __prepare_scriptable__(self):
        """``torch.jit.script``: the fused kernels are Python calls that TorchScript cannot compile, so a module
        with torch's options only is scripted as its ``torch.nn`` twin (the same loss, on torch's kernels; the
        scripted model can be saved and run without fusedloss). Options torch lacks raise a message."""
        twin = getattr(torch.nn, type(self).__name__, None)
        if twin is None or not issubclass(twin, torch.nn.Module) or type(self) is FusedLoss:
            raise RuntimeError(
                f"torch.jit.script: fusedloss.torch.{type(self).__name__} has no torch.nn twin, and its fused "
                "kernel cannot be compiled by TorchScript. Script the rest of the model and call the loss outside "
                "it, or use torch.compile, which runs fusedloss's losses (behind a graph break).")
        import inspect

        ours = inspect.signature(type(self).__init__).parameters
        theirs = inspect.signature(twin.__init__).parameters
        options = self._call_options()
        extras = [k for k, v in options.items() if k not in theirs and not _is_default(v, ours[k].default)]
        if extras:
            raise RuntimeError(
                f"torch.jit.script: fusedloss.torch.{type(self).__name__} with {', '.join(extras)} cannot be "
                f"scripted (torch.nn.{twin.__name__} has no such option, and the fused kernel cannot be compiled by "
                "TorchScript). Call the loss outside the scripted part, or use torch.compile.")
        return twin(reduction=self.reduction, **{k: v for k, v in options.items() if k in theirs})

    def extra_repr(self) -> str:
        shown = [f"reduction={self.reduction!r}"] + [f"{k}={getattr(self, k)!r}" for k in self._shown]
        return ", ".join(shown)


class CrossEntropyLoss(_LossModule):
    """Drop-in for ``torch.nn.CrossEntropyLoss`` (same arguments), plus ``z_loss``, ``softcap``,
    ``confidence_penalty``, ``inplace_grad``, ``backend`` and ``metrics`` (``forward`` then returns ``(loss,
    Metrics)``, see ``cross_entropy``). ``weight`` is a buffer, as in torch (it follows ``.to(device)``)."""

    _fn = staticmethod(cross_entropy)
    _shown = ("ignore_index", "label_smoothing", "z_loss", "softcap", "confidence_penalty", "inplace_grad", "metrics")
    _buffer_names = ("weight",)

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, z_loss=0.0, softcap=None, confidence_penalty=0.0, inplace_grad=False,
                 backend=None, metrics=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), ignore_index=ignore_index,
                         label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                         confidence_penalty=confidence_penalty, inplace_grad=inplace_grad, backend=backend,
                         metrics=metrics)
        self.register_buffer("weight", weight)



class MSELoss(_LossModule):
    """Drop-in for ``torch.nn.MSELoss``."""

    _fn = staticmethod(mse_loss)

    def __init__(self, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), backend=backend)


class L1Loss(_LossModule):
    """Drop-in for ``torch.nn.L1Loss``."""

    _fn = staticmethod(l1_loss)

    def __init__(self, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), backend=backend)


class HuberLoss(_LossModule):
    """Drop-in for ``torch.nn.HuberLoss``."""

    _fn = staticmethod(huber_loss)
    _shown = ("delta",)

    def __init__(self, reduction="mean", delta=1.0, *, backend=None):
        super().__init__(reduction, delta=delta, backend=backend)


class SmoothL1Loss(_LossModule):
    """Drop-in for ``torch.nn.SmoothL1Loss``."""

    _fn = staticmethod(smooth_l1_loss)
    _shown = ("beta",)

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0, *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), beta=beta, backend=backend)


class HingeEmbeddingLoss(_LossModule):
    """Drop-in for ``torch.nn.HingeEmbeddingLoss``."""

    _fn = staticmethod(hinge_embedding_loss)
    _shown = ("margin",)

    def __init__(self, margin=1.0, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), margin=margin, backend=backend)


class PoissonNLLLoss(_LossModule):
    """Drop-in for ``torch.nn.PoissonNLLLoss``."""

    _fn = staticmethod(poisson_nll_loss)
    _shown = ("log_input", "full", "eps")

    def __init__(self, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean", *,
                 backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), log_input=log_input, full=full,
                         eps=eps, backend=backend)


class BCELoss(_LossModule):
    """Drop-in for ``torch.nn.BCELoss``, plus ``metrics`` (``forward`` then returns ``(loss, Metrics)``, see
    ``binary_cross_entropy``)."""

    _fn = staticmethod(binary_cross_entropy)
    _shown = ("metrics",)
    _buffer_names = ("weight",)

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *, backend=None, metrics=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), backend=backend, metrics=metrics)
        self.register_buffer("weight", weight)



class BCEWithLogitsLoss(_LossModule):
    """Drop-in for ``torch.nn.BCEWithLogitsLoss``, plus ``label_smoothing`` and ``metrics`` (``forward`` then
    returns ``(loss, Metrics)``, see ``binary_cross_entropy_with_logits``)."""

    _fn = staticmethod(binary_cross_entropy_with_logits)
    _shown = ("label_smoothing", "metrics")
    _buffer_names = ("weight", "pos_weight")

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *,
                 label_smoothing=0.0, backend=None, metrics=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), label_smoothing=label_smoothing,
                         backend=backend, metrics=metrics)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)



class MultiMarginLoss(_LossModule):
    """Drop-in for ``torch.nn.MultiMarginLoss``."""

    _fn = staticmethod(multi_margin_loss)
    _shown = ("p", "margin")
    _buffer_names = ("weight",)

    def __init__(self, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean", *,
                 backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), p=p, margin=margin, backend=backend)
        self.register_buffer("weight", weight)



# torch's own module (see kl_div); the fused, logits-in form is KLDivWithLogitsLoss
KLDivLoss = torch.nn.KLDivLoss


class KLDivWithLogitsLoss(_LossModule):
    """KL(target || softmax(input / temperature)) along ``dim`` with **logits in**; see
    :func:`kl_div_with_logits` (not ``torch.nn.KLDivLoss``, which takes log-probabilities)."""

    _fn = staticmethod(kl_div_with_logits)
    _shown = ("log_target", "temperature", "dim")

    def __init__(self, reduction="mean", log_target=False, *, temperature=1.0, dim=-1, backend=None):
        super().__init__(reduction, log_target=log_target, temperature=temperature, dim=dim, backend=backend)


class MultiLabelSoftMarginLoss(_LossModule):
    """Drop-in for ``torch.nn.MultiLabelSoftMarginLoss``, plus ``backend``."""

    _fn = staticmethod(multilabel_soft_margin_loss)
    _buffer_names = ("weight",)

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), backend=backend)
        self.register_buffer("weight", weight)


# The modules of the forms generated from the registry (see _generate.py): __init__ takes the form's options.
PseudoHuberLoss = module_of(pseudo_huber_loss, _LossModule, "pseudo_huber")
LogCoshLoss = module_of(log_cosh_loss, _LossModule, "log_cosh")
QuantileLoss = module_of(quantile_loss, _LossModule, "quantile")
TweedieLoss = module_of(tweedie_loss, _LossModule, "tweedie")
BinaryFocalLoss = module_of(binary_focal_loss, _LossModule, "binary_focal")
BinaryHingeLoss = module_of(binary_hinge_loss, _LossModule, "hinge")
SquaredHingeLoss = module_of(squared_hinge_loss, _LossModule, "squared_hinge")
ZeroOneError = module_of(zero_one_error, _LossModule, "zero_one")


class FocalLoss(_LossModule):
    """Softmax focal loss, classes on dim 1 as ``CrossEntropyLoss``; ``alpha`` (None, scalar or per class) is a
    buffer when it is a tensor."""

    _fn = staticmethod(focal_loss)
    _shown = ("gamma", "ignore_index")
    _buffer_names = ("alpha",)

    def __init__(self, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean", *, backend=None):
        super().__init__(reduction, gamma=gamma, ignore_index=ignore_index, backend=backend)
        if isinstance(alpha, Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha


class JensenShannonLoss(_LossModule):
    """Liger's generalised Jensen-Shannon divergence along ``dim`` with **logits in**; see
    :func:`jensen_shannon_loss`."""

    _fn = staticmethod(jensen_shannon_loss)
    _shown = ("beta", "dim")

    def __init__(self, beta=0.5, reduction="mean", *, dim=-1, backend=None):
        super().__init__(reduction, beta=beta, dim=dim, backend=backend)


class Poly1Loss(_LossModule):
    """Poly-1 loss (:func:`poly1_loss`), classes on dim 1 as ``CrossEntropyLoss``."""

    _fn = staticmethod(poly1_loss)
    _shown = ("epsilon", "ignore_index")

    def __init__(self, epsilon=2.0, ignore_index=-100, reduction="mean", *, backend=None):
        super().__init__(reduction, epsilon=epsilon, ignore_index=ignore_index, backend=backend)


class CategoricalHingeLoss(_LossModule):
    """Keras's categorical hinge (:func:`categorical_hinge_loss`), classes on dim 1 as ``CrossEntropyLoss``."""

    _fn = staticmethod(categorical_hinge_loss)
    _shown = ("ignore_index",)

    def __init__(self, ignore_index=-100, reduction="mean", *, backend=None):
        super().__init__(reduction, ignore_index=ignore_index, backend=backend)


class FusedLoss(_LossModule):
    """Any registry loss by its fusedloss name: ``FusedLoss("log_cosh")``, ``FusedLoss("cross_entropy",
    z_loss=1e-4)``, or a loss object (``FusedLoss(my_custom_loss, delta=0.5)``); ``forward(input, target,
    sample_weight=None)``."""

    _fn = staticmethod(loss)

    def __init__(self, name: str, reduction="mean", *, class_dim=None, backend=None, **params):
        if isinstance(name, Loss):  # a loss object, e.g. a custom loss from fusedloss.elementwise_loss
            name = name.name
        if name not in REGISTRY:
            raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(REGISTRY))}")
        super().__init__(reduction)
        self.name = name
        # a loss's parameter names may be any identifier (a custom loss's too), so they stay in a dict here
        # rather than becoming module attributes
        self._options = {"class_dim": class_dim, "backend": backend, **params}

    def forward(self, input, target, sample_weight=None):
        return loss(self.name, input, target, reduction=self.reduction, sample_weight=sample_weight,
                    **self._options)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items() if v is not None)
        return f"{self.name!r}, reduction={self.reduction!r}" + (f", {opts}" if opts else "")


MODULES = {
    "mse": MSELoss, "mae": L1Loss, "huber": HuberLoss, "smooth_l1": SmoothL1Loss, "pseudo_huber": PseudoHuberLoss,
    "log_cosh": LogCoshLoss, "quantile": QuantileLoss, "poisson_nll": PoissonNLLLoss, "tweedie": TweedieLoss,
    "binary_cross_entropy": BCELoss, "binary_cross_entropy_with_logits": BCEWithLogitsLoss,
    "binary_focal": BinaryFocalLoss, "hinge": BinaryHingeLoss, "squared_hinge": SquaredHingeLoss,
    "zero_one": ZeroOneError, "hinge_embedding": HingeEmbeddingLoss, "cross_entropy": CrossEntropyLoss,
    "categorical_focal": FocalLoss,
    "multi_margin": MultiMarginLoss, "kl_div_with_logits": KLDivWithLogitsLoss, "jensen_shannon": JensenShannonLoss,
    "multilabel_soft_margin": MultiLabelSoftMarginLoss, "ctc": CTCLoss, "poly1": Poly1Loss,
    "categorical_hinge": CategoricalHingeLoss, "margin_ranking": MarginRankingLoss,
    "cosine_embedding": CosineEmbeddingLoss, "triplet_margin": TripletMarginLoss, "gaussian_nll": GaussianNLLLoss,
    "dice": DiceLoss, "tversky": TverskyLoss,
}

# the modules of the generated functional forms (see functional.GENERATED): ``<Loss>Loss`` from ``<loss>_loss``
for _name in GENERATED:
    _cls = module_of(FUNCTIONAL[_name], _LossModule, _name)
    MODULES[_name] = globals()[_cls.__name__] = _cls

# names that are scikit-learn's metrics (other arguments, other meaning), served with a FutureWarning until 0.2
RENAMED = {"HingeLoss": "BinaryHingeLoss", "ZeroOneLoss": "ZeroOneError"}
__getattr__ = renamed_getattr(__name__, RENAMED)
