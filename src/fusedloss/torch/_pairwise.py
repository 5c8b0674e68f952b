"""PyTorch integration of the pairwise losses (kind "pairwise" in the registry): the functional forms
``margin_ranking_loss``, ``cosine_embedding_loss``, ``triplet_margin_loss``, ``gaussian_nll_loss`` and the modules
``MarginRankingLoss``, ``CosineEmbeddingLoss``, ``TripletMarginLoss``, ``GaussianNLLLoss``, with torch.nn's signatures (legacy
``size_average`` / ``reduce`` included) and results, re-exported by ``fusedloss.torch``.

The forward pass runs the kernel once (value and the gradient with respect to every input) and keeps the
gradients; backward scales them by ``grad_output`` (per row for "none"). Inputs that broadcast against each
other (as torch allows for ``margin_ranking_loss`` and ``triplet_margin_loss``, and ``gaussian_nll_loss``'s var)
are expanded first, so autograd sums the gradient back over the broadcast axes. A target of one value per row is a
label: its gradient is not computed (one that requires grad runs on torch's function, see ``_twin``, or is
refused with an option torch lacks); gaussian_nll's target is an input. float16/bfloat16 are computed in float32
and returned in their dtype. CPU tensors only. Second derivatives are torch's (``_twin``), or refused with a
message where torch's function cannot run the call.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import _reduction

from .._losses import LOSSES
from ._args import torch_errors
from ._autograd import SECOND_DERIVATIVE_MESSAGE, _SecondDerivativeUnsupported
from ._twin import keep, release, second_order, torch_twin

__all__ = ["margin_ranking_loss", "cosine_embedding_loss", "triplet_margin_loss", "gaussian_nll_loss",
           "MarginRankingLoss", "CosineEmbeddingLoss", "TripletMarginLoss", "GaussianNLLLoss"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class _PairwiseFunction(torch.autograd.Function):
    """``apply(name, y, w, reduction, params, backend, want_grad, *inputs)`` -> ``(value, *gradients)``: one
    kernel call; the gradients are non-differentiable outputs saved for backward."""

    @staticmethod
    def forward(name, y, w, reduction, params, backend, want_grad, *xs):
        kdtype = xs[0].dtype if xs[0].dtype in (torch.float32, torch.float64) else torch.float32
        arrays = [x.detach().to(kdtype).contiguous().numpy() for x in xs]
        if y is not None:
            arrays.append(y)
        kw = dict(reduction=reduction, sample_weight=w, backend=backend, **params)
        if want_grad:
            value, gs = LOSSES[name].value_and_grad(*arrays, **kw)
            grads = tuple(torch.from_numpy(g) for g in gs)
        else:
            value = LOSSES[name](*arrays, **kw)
            grads = tuple(torch.empty(0, dtype=kdtype) for _ in xs)
        if reduction == "none":
            return (torch.from_numpy(np.asarray(value)).to(xs[0].dtype), *grads)
        return (torch.tensor(value, dtype=xs[0].dtype), *grads)

    @staticmethod
    def setup_context(ctx, inputs, output):
        name, reduction, xs = inputs[0], inputs[3], inputs[7:]
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        ctx.reduction = reduction
        ctx.vector_rows = LOSSES[name].spec.vector_rows
        ctx.in_dtypes = [x.dtype for x in xs]
        ctx.functorch = torch._C._functorch.peek_interpreter_stack() is not None
        ctx.save_for_backward(*output[1:], *((xs[0],) if ctx.functorch else ()))
        ctx.names = LOSSES[name].spec.inputs
        keep(ctx, dict(zip(ctx.names, xs)))

    @staticmethod
    def backward(ctx, grad_output, *_unused):
        none = (None,) * 7
        k = len(ctx.in_dtypes)
        if grad_output is None:
            return (*none, *(None,) * k)
        if torch.is_grad_enabled() and not ctx.functorch:  # backward(create_graph=True), eager: torch's (_twin)
            grads = second_order(ctx, grad_output, SECOND_DERIVATIVE_MESSAGE)
            return (*none, *(grads.get(k) for k in ctx.names))
        release(ctx)
        saved = ctx.saved_tensors
        gs, anchor = saved[:k], saved[k:]
        scale = grad_output.unsqueeze(-1) if ctx.reduction == "none" and ctx.vector_rows else grad_output
        out = []
        for g, dt in zip(gs, ctx.in_dtypes):
            g = (g * scale.to(g.dtype)).to(dt)
            if torch.is_grad_enabled():  # torch.func: refuse a second derivative (see fusedloss.torch)
                g = _SecondDerivativeUnsupported.apply(g, anchor[0])
            out.append(g)
        return (*none, *out)


def _reduction_of(size_average, reduce, reduction):
    return _reduction.legacy_get_string(size_average, reduce) if size_average is not None or reduce is not None \
        else reduction


def _host(v, what: str, name: str):
    """A target or weight tensor as a NumPy array (it must not require grad: fusedloss does not differentiate it)."""
    if isinstance(v, Tensor):
        if v.requires_grad:
            torch_name = LOSSES[name].spec.torch_name
            twin = f", or use torch.nn.functional.{torch_name}" if torch_name else ""
            raise RuntimeError(f"{name}: {what} must not require grad (fusedloss differentiates the inputs only; "
                               f"detach it{twin})")
        with torch._C._DisableFuncTorch():  # inside torch.func, ops on constants would return storage-less wrappers
            return v.detach().cpu().numpy()
    return v


def _check_input(x, what: str, name: str) -> None:
    """An input fusedloss.torch's own-signature forms take: a floating CPU tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        torch_name = LOSSES[name].spec.torch_name
        raise ValueError(f"{name}: only CPU tensors are supported" +
                         (f"; use torch.nn.functional.{torch_name} on the GPU" if torch_name else ""))
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name}: {what} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def _run(name, inputs, target, reduction, params, sample_weight, backend, broadcast):
    for x, what in zip(inputs, LOSSES[name].spec.inputs):
        _check_input(x, what, name)
    if len({x.dim() for x in inputs} | ({target.dim()} if broadcast and isinstance(target, Tensor) else set())) > 1:
        dims = ", ".join(f"{what}: {tuple(x.shape)}" for x, what in zip(inputs, LOSSES[name].spec.inputs))
        raise RuntimeError(f"{name}: the inputs must have the same number of dimensions, got {dims}")
    if broadcast:  # torch broadcasts these; autograd sums the gradients of the expanded views back
        if target is not None and isinstance(target, Tensor):
            *inputs, target = torch.broadcast_tensors(*inputs, target)
        else:
            inputs = list(torch.broadcast_tensors(*inputs))
    dtype = torch.promote_types(inputs[0].dtype, inputs[1].dtype)
    inputs = [x.to(dtype) for x in inputs]
    y = None if target is None else _host(target, "target", name)
    w = None if sample_weight is None else _host(sample_weight, "sample_weight", name)
    want_grad = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
    return _PairwiseFunction.apply(LOSSES[name].name, y, w, reduction, params, backend, want_grad, *inputs)[0]


@torch_errors
@torch_twin("margin_ranking")
def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean", *,
                        sample_weight=None, backend=None):
    """``torch.nn.functional.margin_ranking_loss`` with the same arguments and results, plus ``sample_weight``
    (one per element) and ``backend``."""
    return _run("margin_ranking", (input1, input2), target, _reduction_of(size_average, reduce, reduction),
                {"margin": margin}, sample_weight, backend, True)


@torch_errors
@torch_twin("cosine_embedding")
def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean", *,
                          sample_weight=None, backend=None):
    """``torch.nn.functional.cosine_embedding_loss`` with the same arguments and results, plus ``sample_weight``
    (one per row) and ``backend``."""
    return _run("cosine_embedding", (input1, input2), target, _reduction_of(size_average, reduce, reduction),
                {"margin": margin}, sample_weight, backend, False)


@torch_errors
@torch_twin("triplet_margin")
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean", *, sample_weight=None, backend=None):
    """``torch.nn.functional.triplet_margin_loss`` with the same arguments and results, plus ``sample_weight``
    (one per row) and ``backend``."""
    return _run("triplet_margin", (anchor, positive, negative), None, _reduction_of(size_average, reduce, reduction),
                {"margin": margin, "p": p, "eps": eps, "swap": swap}, sample_weight, backend, True)


@torch_errors
@torch_twin("gaussian_nll")
def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean", *, sample_weight=None,
                      backend=None):
    """``torch.nn.functional.gaussian_nll_loss`` with the same arguments and results (var of the input's shape,
    without its last axis, with one axis of length 1, or a float), plus ``sample_weight`` (one per element) and
    ``backend``. The gradient flows into input, target and var."""
    if isinstance(var, float):
        if var < 0:
            raise ValueError("gaussian_nll_loss: var has negative entry/entries")
        var = torch.full_like(input, var)
    elif isinstance(var, Tensor) and isinstance(input, Tensor) and var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = var.unsqueeze(-1)
        elif not (var.dim() == input.dim() and sum(v for i, v in zip(input.shape, var.shape) if i != v) == 1):
            raise ValueError(f"gaussian_nll_loss: var is of incorrect size {tuple(var.shape)} for input of shape "
                             f"{tuple(input.shape)}")
        var = var.expand_as(input)  # autograd sums var's gradient back over the expanded axis
    if isinstance(target, Tensor) and isinstance(input, Tensor) and target.shape != input.shape:
        target = target.expand_as(input)
    return _run("gaussian_nll", (input, target, var), None, reduction, {"full": full, "eps": eps}, sample_weight,
                backend, False)


class _Pairwise(torch.nn.Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean", *, backend=None, **params):
        super().__init__()
        self.reduction = _reduction_of(size_average, reduce, reduction)
        self.backend = backend
        for k, v in params.items():
            setattr(self, k, v)
        self._names = tuple(params)

    def extra_repr(self) -> str:
        return ", ".join([*(f"{k}={getattr(self, k)!r}" for k in self._names), f"reduction={self.reduction!r}"])


class MarginRankingLoss(_Pairwise):
    """Drop-in for ``torch.nn.MarginRankingLoss(margin=0.0, reduction="mean")``:
    ``forward(input1, input2, target)``."""

    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(size_average, reduce, reduction, backend=backend, margin=margin)

    def forward(self, input1, input2, target):
        return margin_ranking_loss(input1, input2, target, self.margin, reduction=self.reduction, backend=self.backend)


class CosineEmbeddingLoss(_Pairwise):
    """Drop-in for ``torch.nn.CosineEmbeddingLoss(margin=0.0, reduction="mean")``:
    ``forward(input1, input2, target)``."""

    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(size_average, reduce, reduction, backend=backend, margin=margin)

    def forward(self, input1, input2, target):
        return cosine_embedding_loss(input1, input2, target, self.margin, reduction=self.reduction,
                                     backend=self.backend)


class TripletMarginLoss(_Pairwise):
    """Drop-in for ``torch.nn.TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean")``:
    ``forward(anchor, positive, negative)``."""

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None, reduce=None, reduction="mean", *,
                 backend=None):
        super().__init__(size_average, reduce, reduction, backend=backend, margin=margin, p=p, eps=eps, swap=swap)

    def forward(self, anchor, positive, negative):
        return triplet_margin_loss(anchor, positive, negative, self.margin, self.p, self.eps, self.swap,
                                   reduction=self.reduction, backend=self.backend)


class GaussianNLLLoss(_Pairwise):
    """Drop-in for ``torch.nn.GaussianNLLLoss(*, full=False, eps=1e-6, reduction="mean")``:
    ``forward(input, target, var)``."""

    def __init__(self, *, full=False, eps=1e-6, reduction="mean", backend=None):
        super().__init__(None, None, reduction, backend=backend, full=full, eps=eps)

    def forward(self, input, target, var):
        return gaussian_nll_loss(input, target, var, self.full, self.eps, reduction=self.reduction, backend=self.backend)
