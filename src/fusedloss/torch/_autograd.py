"""Autograd plumbing: ``FusedLossFunction`` (forward runs the kernel once for value and gradient, backward
scales the saved gradient), second derivatives (torch's, through ``_twin``, or refused) and forward mode, and
``_apply``, which runs a ``_Call`` eagerly, under ``torch.compile`` (behind a graph break), or on torch's own CUDA
kernels when ``fusedloss._gpu_routing`` picks them.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from .. import _gpu_routing
from .._spec import REGISTRY
from ._kernel import _HALF, _NATIVE, _Call, _compute
from ._twin import keep, release, second_order

# Losses of the residual d = pred - target (quantile: r = target - pred): dl/dtarget = -dl/dpred, so a target
# that requires grad is supported for free.
# the losses of the residual pred - target (the registry's ``residual``): a target that requires grad gets
# -grad_input in backward
RESIDUAL_LOSSES = frozenset(name for name, spec in REGISTRY.items() if spec.residual)


def _plain():
    """A context for work on constant tensors (weights) inside a torch.func transform: without it every op on
    them returns a wrapper that has no storage (so no ``.numpy()``)."""
    return torch._C._DisableFuncTorch()


# From this many gradient entries on, backward checks whether grad_output is 1 (as after loss.backward()) and
# then hands the saved gradient over instead of multiplying; below it the multiplication is cheaper than the check.
_SKIP_SCALE_MIN = 1 << 15
# On a GPU the check is a synchronisation (a few microseconds, more when work is queued); from 2^23 entries the
# multiplication's pass costs more (8 M float32 read and written: 64 MB, 16 us at an H200's 4.2 TB/s).
_SKIP_SCALE_MIN_CUDA = 1 << 23


# FusedLossFunction.apply's shortcut uses these (present since torch 2.0); without them, torch's apply
_FAST_APPLY = (hasattr(torch._C, "_are_functorch_transforms_active")
               and hasattr(torch._C._functorch, "unwrap_if_dead"))


class FusedLossFunction(torch.autograd.Function):
    """``FusedLossFunction.apply(input, target, call)`` -> ``(value, gradient)``: forward computes both in one
    kernel call; the gradient is a non-differentiable output, saved for backward, which scales it by
    ``grad_output``. Written with a separate ``setup_context`` (and a ``vmap`` rule) so that ``torch.func``'s
    transforms (``grad``, ``vjp``, ``jacrev``, ``vmap``) can run it. A backward pass with ``create_graph=True``
    differentiates torch's function where the call is a torch-named form's (``_twin``); other second
    derivatives are refused with a message (see ``_SecondDerivativeUnsupported``)."""

    @classmethod
    def apply(cls, input, target, call):
        """torch's ``Function.apply``, minus its per-call ``inspect.signature`` binding of default arguments
        (forward has none), which costs more than a small loss itself; under torch.func, torch's own."""
        if _FAST_APPLY and not torch._C._are_functorch_transforms_active():
            unwrap = torch._C._functorch.unwrap_if_dead
            if type(target) is Tensor:
                target = unwrap(target)
            return super(torch.autograd.Function, cls).apply(unwrap(input), target, call)
        return super().apply(input, target, call)

    @staticmethod
    def forward(input, target, call):
        return _compute(call, input, target, want_grad=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target, call = inputs
        grad = output[1]
        ctx.mark_non_differentiable(grad)
        ctx.set_materialize_grads(False)  # no zero-filled tensor for the (never used) gradient output
        ctx.reduction = call.reduction
        ctx.class_dim = call.class_dim
        ctx.inplace = call.inplace
        ctx.target_dtype = target.dtype if isinstance(target, Tensor) else None
        # Under a torch.func transform the input is kept too: it ties the refusal of second derivatives to the
        # input, so that a nested transform (grad of grad) reaches it and raises instead of returning zeros.
        ctx.functorch = torch._C._functorch.peek_interpreter_stack() is not None
        if ctx.functorch and not call.inplace:
            ctx.save_for_backward(grad, inputs[0])
        else:
            ctx.save_for_backward(grad)
        keep(ctx, {"input": inputs[0], "target": target} if type(target) is Tensor else {"input": inputs[0]})

    @staticmethod
    def jvp(ctx, *_tangents):
        # A forward-mode rule would be easy for first derivatives, but under torch.func.hessian (jacfwd of
        # jacrev) the saved gradient carries no tangent and the Hessian would come out as zeros, silently.
        raise RuntimeError(FORWARD_MODE_MESSAGE)

    @staticmethod
    def backward(ctx, grad_output, _unused):
        grad, *anchor = ctx.saved_tensors
        if grad_output is None:
            return None, None, None
        if torch.is_grad_enabled() and not ctx.functorch:  # backward(create_graph=True), eager: torch's (_twin)
            grads = second_order(ctx, grad_output, SECOND_DERIVATIVE_MESSAGE)
            return grads.get("input"), grads.get("target"), None
        release(ctx)
        if ctx.reduction == "none":
            go = grad_output if ctx.class_dim is None else grad_output.unsqueeze(ctx.class_dim)
            grad_input = grad * go
        elif ((ctx.inplace or grad.numel() >= (_SKIP_SCALE_MIN_CUDA if grad_output.is_cuda else _SKIP_SCALE_MIN))
              and not _is_transformed(grad_output) and grad_output.item() == 1.0):
            grad_input = grad  # loss.backward(): no pass over a large gradient (autograd takes the buffer over)
        else:
            grad_input = grad * grad_output
        if torch.is_grad_enabled():  # torch.func differentiates every gradient it makes: refuse a second one
            grad_input = _SecondDerivativeUnsupported.apply(
                grad_input, anchor[0] if anchor else torch.zeros((), requires_grad=True))
        grad_target = None
        if ctx.needs_input_grad[1]:
            grad_target = grad_input.neg().to(ctx.target_dtype)
        return (grad_input if ctx.needs_input_grad[0] else None), grad_target, None

    @staticmethod
    def vmap(info, in_dims, input, target, call):
        """``torch.func.vmap``: the kernels take whole tensors, so the batch runs as a loop of calls, one per
        batch entry, stacked. Correct for every loss and option; as fast as a loop of calls."""
        x_dim, t_dim, _ = in_dims
        n = info.batch_size
        xs = input.movedim(x_dim, 0) if x_dim is not None else input.expand(n, *input.shape)
        if isinstance(target, Tensor):
            ts = target.movedim(t_dim, 0) if t_dim is not None else target.expand(n, *target.shape)
        else:
            ts = [target] * n
        values, grads = zip(*(_compute(call, xs[i], ts[i], want_grad=True) for i in range(n)))
        return (torch.stack(values), torch.stack(grads)), (0, 0)


SECOND_DERIVATIVE_MESSAGE = (
    "fusedloss.torch: second derivatives are not supported (the fused kernels compute the loss and its first "
    "derivative only): a backward pass with create_graph=True (double backward, a gradient penalty or a "
    "Hessian-vector product through the loss), or a nested torch.func.grad, cannot pass through a fusedloss loss. "
    "Use torch's own loss for that computation (e.g. torch.nn.functional.cross_entropy instead of "
    "fusedloss.torch.cross_entropy).")


FORWARD_MODE_MESSAGE = (
    "fusedloss.torch: forward-mode differentiation (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) "
    "is not supported. Use reverse mode (loss.backward(), torch.func.grad, vjp, jacrev) for first derivatives, "
    "and torch's own loss (e.g. torch.nn.functional.cross_entropy) where second derivatives are needed.")


class _SecondDerivativeUnsupported(torch.autograd.Function):
    """``apply(g, anchor)``: identity on a gradient computed by a fused kernel, under torch.func (which always
    builds a graph of the gradients it computes); differentiating through it raises
    ``SECOND_DERIVATIVE_MESSAGE``. ``anchor`` (the loss's input) ties it to the graph a nested transform
    differentiates."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g, anchor):
        return g.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, _grad):
        raise RuntimeError(SECOND_DERIVATIVE_MESSAGE)

    @staticmethod
    def jvp(ctx, *_tangents):
        raise RuntimeError(SECOND_DERIVATIVE_MESSAGE)


def _is_transformed(t: Tensor) -> bool:
    """Whether ``t`` is a torch.func wrapper (a batched or grad-tracking tensor): such tensors have no
    storage of their own, so ``.numpy()`` and ``.item()`` cannot be used on them."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def _apply(call: _Call, input: Tensor, target) -> Tensor:
    """Run a call; under ``torch.compile`` through a ``torch.compiler.disable``d wrapper (a graph break: the
    kernels are opaque to tracing). The wrapper is made on first need, so that importing this module does not
    import ``torch._dynamo`` (seconds of start-up) for users who never compile."""
    if torch.compiler.is_compiling():
        return _eager_apply()(call, input, target)
    return _apply_eager(call, input, target)


_EAGER_APPLY: list = []


def _eager_apply():
    if not _EAGER_APPLY:
        _EAGER_APPLY.append(torch.compiler.disable(_apply_eager))
    return _EAGER_APPLY[0]


def _apply_eager(call: _Call, input: Tensor, target) -> Tensor:
    spec = REGISTRY[call.name]
    if not isinstance(input, Tensor):
        raise TypeError(f"{call.name}: input must be a torch.Tensor, got {type(input).__name__}")
    if not (input.is_floating_point() and (input.dtype in _NATIVE or input.dtype in _HALF)):
        raise TypeError(f"{call.name}: input must be float16, bfloat16, float32 or float64, got {input.dtype}")
    grad_mode = torch.is_grad_enabled() and spec.differentiable
    target_grad = grad_mode and isinstance(target, Tensor) and target.requires_grad
    if target_grad and not spec.residual:
        raise RuntimeError(
            f"{call.name}: the gradient with respect to target is not supported for this loss (only for "
            f"{', '.join(sorted(RESIDUAL_LOSSES))}); pass target.detach()")
    if input.is_cuda:  # torch's own kernels unless ours were measured at least as fast (_gpu_routing)
        routed = _gpu_routing.route(call, input, target)
        if routed is not None:
            return routed
    if grad_mode and (input.requires_grad or target_grad):
        return FusedLossFunction.apply(input, target, call)[0]
    if _is_transformed(input) or (type(target) is Tensor and _is_transformed(target)):
        return FusedLossFunction.apply(input, target, call)[0]  # torch.func.vmap without gradients
    value, _ = _compute(call, input, target, want_grad=False)
    return value


if "torch._dynamo" in sys.modules:  # already paid for: make the wrapper now, before any tracing
    _eager_apply()
