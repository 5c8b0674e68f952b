"""PyTorch integration of the overlap losses (kind "overlap" in the registry): ``dice_loss``, ``tversky_loss`` and
the modules ``DiceLoss``, ``TverskyLoss`` with segmentation_models_pytorch's signatures (``mode``, ``classes``,
``log_loss``, ``from_logits``, ``smooth``, ``ignore_index``, ``eps``, ``class_weights``; tversky's ``alpha``,
``beta``, ``gamma``) and results, plus ``per_sample``, ``reduction``, ``sample_weight`` and ``backend``;
re-exported by ``fusedloss.torch``.

The forward pass runs both kernel passes (value and gradient) and keeps the gradient; backward scales it by
``grad_output``. With ``reduction="none"`` (one term per class, or per sample and class) backward runs the passes
again with the per-term ``grad_output``. ``classes=[...]`` (smp: the mean over those classes only) is
``class_weights`` counting each listed class once per listing. float16/bfloat16 are computed in float32 and
returned in their dtype. CPU tensors only; second derivatives are refused.
"""

from __future__ import annotations

import numpy as np
import torch

from .._losses import LOSSES
from ._autograd import SECOND_DERIVATIVE_MESSAGE
from ._pairwise import _check_input, _host  # a floating CPU tensor; a target or weight tensor as a NumPy array

__all__ = ["dice_loss", "tversky_loss", "DiceLoss", "TverskyLoss"]


class _OverlapFunction(torch.autograd.Function):
    """``apply(name, target, w, reduction, params, backend, want_grad, input)`` -> ``(value, gradient)``."""

    @staticmethod
    def forward(name, target, w, reduction, params, backend, want_grad, x):
        kdtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        xa = x.detach().to(kdtype).contiguous().numpy()
        kw = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
        if want_grad and reduction != "none":
            value, g = LOSSES[name].value_and_grad(xa, target, **kw)
            g = torch.from_numpy(g)
        else:
            value, g = LOSSES[name](xa, target, **kw), torch.empty(0, dtype=kdtype)
        return torch.as_tensor(np.asarray(value)).to(x.dtype), g

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.name, ctx.target, ctx.w, ctx.reduction, ctx.params, ctx.backend = inputs[:6]
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.in_dtype = inputs[7].dtype
        ctx.save_for_backward(output[1], *((inputs[7],) if ctx.reduction == "none" else ()))

    @staticmethod
    def backward(ctx, grad_output, _unused):
        none = (None,) * 7
        if grad_output is None:
            return (*none, None)
        if torch.is_grad_enabled():
            raise RuntimeError(SECOND_DERIVATIVE_MESSAGE)
        saved = ctx.saved_tensors
        if ctx.reduction == "none":  # the gradient of sum(grad_output * terms): the passes again
            x = saved[1]
            kdtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
            g = LOSSES[ctx.name]._run_overlap(
                x.detach().to(kdtype).contiguous().numpy(), ctx.target, "none", ctx.w, ctx.backend, ctx.params,
                False, True, None, term_scale=grad_output.detach().to(torch.float64).numpy())
            return (*none, torch.from_numpy(g).to(ctx.in_dtype))
        return (*none, (saved[0] * grad_output.to(saved[0].dtype)).to(ctx.in_dtype))


def _weights(name, input, classes, class_weights):
    """class_weights as a NumPy array (or None), with smp's ``classes`` folded in."""
    cw = _host(class_weights, "class_weights", name)
    if classes is None:
        return None if cw is None else np.asarray(cw, dtype=np.float64)
    C = input.shape[1] if input.dim() > 1 else 1
    base = np.ones(C) if cw is None else np.asarray(cw, dtype=np.float64)
    picked = np.asarray(_host(classes, "classes", name)).reshape(-1)
    if picked.dtype.kind not in "iu" or picked.size and (picked.min() < -C or picked.max() >= C):
        raise ValueError(f"{name}: classes must be class indices in [0, {C}), got {picked.tolist()}")
    w = np.zeros(C)
    np.add.at(w, picked % C, base[picked])
    return w


def _run(name, input, target, reduction, params, classes, sample_weight, backend):
    _check_input(input, "input", name)
    if classes is not None and params["mode"] == "binary":
        raise ValueError(f"{name}: classes needs mode='multiclass' or 'multilabel' (binary has one class)")
    params = dict(params, class_weights=_weights(name, input, classes, params["class_weights"]))
    y = _host(target, "target", name)
    w = _host(sample_weight, "sample_weight", name)
    want_grad = torch.is_grad_enabled() and input.requires_grad
    return _OverlapFunction.apply(name, y, w, reduction, params, backend, want_grad, input)[0]


def dice_loss(input, target, mode="multiclass", classes=None, log_loss=False, from_logits=True, smooth=0.0,
              ignore_index=None, eps=1e-7, class_weights=None, *, per_sample=False, reduction="mean",
              sample_weight=None, backend=None):
    """segmentation_models_pytorch's ``DiceLoss(mode, ...)(input, target)`` as a function (fusedloss.dice)."""
    params = dict(mode=mode, log_loss=log_loss, from_logits=from_logits, smooth=smooth, ignore_index=ignore_index,
                  eps=eps, class_weights=class_weights, per_sample=per_sample)
    return _run("dice", input, target, reduction, params, classes, sample_weight, backend)


def tversky_loss(input, target, mode="multiclass", classes=None, log_loss=False, from_logits=True, smooth=0.0,
                 ignore_index=None, eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0, class_weights=None, *,
                 per_sample=False, reduction="mean", sample_weight=None, backend=None):
    """segmentation_models_pytorch's ``TverskyLoss(mode, ...)(input, target)`` as a function (fusedloss.tversky)."""
    params = dict(mode=mode, log_loss=log_loss, from_logits=from_logits, smooth=smooth, ignore_index=ignore_index,
                  eps=eps, class_weights=class_weights, per_sample=per_sample, alpha=alpha, beta=beta, gamma=gamma)
    return _run("tversky", input, target, reduction, params, classes, sample_weight, backend)


class DiceLoss(torch.nn.Module):
    """Drop-in for segmentation_models_pytorch's ``DiceLoss(mode, classes=None, log_loss=False, from_logits=True,
    smooth=0.0, ignore_index=None, eps=1e-7, class_weights=None)``: ``forward(input, target)``."""

    _form = staticmethod(dice_loss)

    def __init__(self, mode="multiclass", classes=None, log_loss=False, from_logits=True, smooth=0.0,
                 ignore_index=None, eps=1e-7, class_weights=None, *, per_sample=False, reduction="mean",
                 backend=None, **extra):
        super().__init__()
        self.options = dict(mode=mode, classes=classes, log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                            ignore_index=ignore_index, eps=eps, class_weights=class_weights, **extra,
                            per_sample=per_sample, reduction=reduction, backend=backend)

    def forward(self, input, target, sample_weight=None):
        return self._form(input, target, sample_weight=sample_weight, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class TverskyLoss(DiceLoss):
    """Drop-in for segmentation_models_pytorch's ``TverskyLoss(mode, classes=None, log_loss=False,
    from_logits=True, smooth=0.0, ignore_index=None, eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0,
    class_weights=None)``: ``forward(input, target)``."""

    _form = staticmethod(tversky_loss)

    def __init__(self, mode="multiclass", classes=None, log_loss=False, from_logits=True, smooth=0.0,
                 ignore_index=None, eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0, class_weights=None, *,
                 per_sample=False, reduction="mean", backend=None):
        super().__init__(mode, classes, log_loss, from_logits, smooth, ignore_index, eps, class_weights,
                         per_sample=per_sample, reduction=reduction, backend=backend, alpha=alpha, beta=beta,
                         gamma=gamma)
