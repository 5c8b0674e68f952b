"""PyTorch integration: autograd functions and ``nn.Module`` losses backed by the fused kernels.

Import it explicitly (``import fusedloss.torch``); ``import fusedloss`` never imports torch.

Every loss in the registry has a functional form here, named after ``torch.nn.functional`` where PyTorch has the
loss (``cross_entropy``, ``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``, ``poisson_nll_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``multi_margin_loss``, ``kl_div``) and with the
same positional arguments and keyword names, and an ``nn.Module`` (``CrossEntropyLoss``, ``MSELoss``, ...), so
that replacing ``torch.nn.CrossEntropyLoss()`` by ``fusedloss.torch.CrossEntropyLoss()`` is a one-line change.
``FUNCTIONAL`` and ``MODULES`` map each registry name to them.

A function named after torch's has torch's semantics. ``kl_div`` and ``KLDivLoss`` are torch's own
(log-probabilities in, pointwise KL); the fused loss that takes logits and fuses the log-softmax has its own name,
``kl_div_with_logits`` / ``KLDivWithLogitsLoss`` (the registry's ``kl_div_with_logits``).

How a call runs. The forward pass calls the fused kernel once (``value_and_grad``) and keeps only the gradient;
the backward pass multiplies it by ``grad_output`` (a scalar for "mean" and "sum", elementwise for "none", along
the class axis for multiclass losses). When no gradient is needed (``torch.no_grad()``, inputs that do not
require grad) only the value is computed.

Memory. A contiguous float32/float64 CPU tensor reaches the kernel without a copy (``tensor.numpy()`` shares
its memory). float16/bfloat16 are computed in float32 (one float32 copy) and the gradient is returned in the
input's dtype. A non-contiguous input is copied once. Multiclass inputs with the classes on dim 1, PyTorch's
``(N, C, d1, ...)`` layout, have their class axis moved last: a view that costs one transposing copy unless the
tensor is already channels-last in memory; whenever such a private copy exists the gradient is written into it
(no second buffer) and handed back as a view with the input's shape. ``inplace_grad=True`` on cross-entropy
writes the gradient into the logits' own storage (saving an N x C buffer; the logits are destroyed, and their
version counter is bumped so autograd reports any other use of them in backward).

CUDA tensors: by default a loss that torch has, with options torch has, runs on torch's own CUDA kernels (and
torch's autograd), unless ``fusedloss/gpu_routing.json`` records that fusedloss's kernel was measured on a real GPU
at least as fast for that case: nobody gets a slower loss by default. ``backend=...`` on the call,
``set_cuda_routing("fused")`` or ``FUSEDLOSS_CUDA_ROUTING=fused`` force the fused path; losses and options torch
lacks (``z_loss``, ``softcap``, ``sample_weight``, ``inplace_grad``, the losses without a torch twin) always take
it. The rule is in ``fusedloss._gpu_routing``. On the fused path, tensors are passed (detached) to the ``cuda``
backend, which reads them through ``__cuda_array_interface__``; outputs are allocated by torch on the same device.

Targets. Targets are constants (``requires_grad=False``), with one exception: for the losses of the residual
``pred - target`` (``mse``, ``mae``, ``huber``, ``smooth_l1``, ``pseudo_huber``, ``log_cosh``, ``quantile``)
a target that requires grad gets ``-grad_input`` in backward. For the other losses a target that requires grad
raises ``RuntimeError`` (pass ``target.detach()``). Weights (``weight``, ``pos_weight``, ``sample_weight``) are
constants too: one that requires grad raises, as PyTorch does for ``cross_entropy``'s ``weight``.

``torch.compile``: under compilation the kernel call goes through a ``torch.compiler.disable``d function, so a
compiled model runs it eagerly (a graph break) with the same results. The wrapper is made on first need, so that
``import fusedloss.torch`` does not import ``torch._dynamo``.

``torch.func``: ``grad``, ``vjp``, ``jacrev`` and ``vmap`` work (``vmap`` runs one kernel call per batch entry).
Second derivatives (a double backward with ``create_graph=True``, ``torch.func.hessian``) are not supported: they
raise a ``RuntimeError`` that says so; use torch's own loss there.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import torch
from torch import Tensor

from . import _config, _gpu_routing
from ._dispatch import REDUCTIONS, Loss, resolve_host_backend
from ._validate import VALUE, VALUE_AND_GRAD
from ._losses import LOSSES
from ._gpu_routing import get_cuda_routing, set_cuda_routing
from ._spec import REGISTRY
from ._torch_ctc import CTCLoss, ctc_loss  # CTC has its own signature (sequences and lengths)

__all__ = [
    "FUNCTIONAL", "MODULES", "FusedLossFunction", "bench_torch_module", "loss",
    "get_cuda_routing", "set_cuda_routing",
    # functional forms, PyTorch names
    "cross_entropy", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "multi_margin_loss", "kl_div",
    # functional forms, our names
    "kl_div_with_logits", "pseudo_huber_loss", "log_cosh_loss", "quantile_loss", "tweedie_loss", "binary_focal_loss",
    "sigmoid_focal_loss", "hinge_loss", "squared_hinge_loss", "zero_one_loss", "focal_loss",
    # modules
    "FusedLoss", "CrossEntropyLoss", "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "PoissonNLLLoss", "BCELoss",
    "BCEWithLogitsLoss", "MultiMarginLoss", "KLDivLoss", "KLDivWithLogitsLoss", "PseudoHuberLoss", "LogCoshLoss", "QuantileLoss",
    "TweedieLoss", "BinaryFocalLoss", "HingeLoss", "SquaredHingeLoss", "ZeroOneLoss", "FocalLoss",
    "ctc_loss", "CTCLoss",
]

_HALF = (torch.float16, torch.bfloat16)
_NATIVE = (torch.float32, torch.float64)

# Losses of the residual d = pred - target (quantile: r = target - pred): dl/dtarget = -dl/dpred, so a target
# that requires grad is supported for free.
RESIDUAL_LOSSES = frozenset({"mse", "mae", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile"})


# --- the call description and the one kernel call ---------------------------------------------------------


class _Call:
    """Everything about one loss call except the input and target tensors (validated by the wrappers).

    ``reduction`` is the fusedloss reduction given to the kernel ("mean", "sum" or "none"); ``params`` the
    registry parameters that differ from the defaults (vectors as float64 NumPy arrays); ``sample_weight``
    fusedloss's (pred's shape, rows' shape for multiclass, or a leading part); ``class_dim`` the input axis
    holding the classes (>= 0) of a multiclass loss, None for elementwise losses. A plain slotted class: one
    is made per call, so its construction is on the hot path."""

    __slots__ = ("name", "reduction", "params", "sample_weight", "class_dim", "inplace", "backend", "loss")

    def __init__(self, name, reduction, params, sample_weight, class_dim, inplace=False, backend=None):
        self.name = name
        self.reduction = reduction
        self.params = params
        self.sample_weight = sample_weight
        self.class_dim = class_dim
        self.inplace = inplace
        self.backend = backend
        self.loss = LOSSES[name]


_DEFAULTS: dict = {}  # name -> (spec, its defaults), read once per registry entry (custom losses come and go)


def _non_default(name: str, params: dict) -> dict:
    """The parameters that differ from the registry defaults: a call with none of them skips the dispatcher's
    parameter checks (it keeps the checked defaults), which is most of its overhead on small inputs."""
    spec = REGISTRY[name]
    cached = _DEFAULTS.get(name)
    if cached is None or cached[0] is not spec:
        cached = _DEFAULTS[name] = (spec, spec.defaults())
    defaults = cached[1]
    out = {}
    for k, v in params.items():
        d = defaults.get(k, _MISSING)
        if d is _MISSING or isinstance(v, np.ndarray) or type(v) is not type(d) or v != d:
            out[k] = v
    return out


_MISSING = object()


def _check_reduction(reduction: str, fn: str, extra: tuple = ()) -> None:
    if reduction not in REDUCTIONS + extra:
        allowed = ", ".join(repr(r) for r in REDUCTIONS + extra)
        raise ValueError(f"{fn}: reduction must be one of {allowed}, got {reduction!r}")


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """PyTorch's deprecated size_average/reduce pair, mapped as torch maps it."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction instead.",
                  UserWarning, stacklevel=3)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _constant(x, what: str, fn: str):
    """A weight-like argument: a tensor that must not require grad (numbers pass through)."""
    if isinstance(x, Tensor):
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{fn}: the gradient with respect to {what} is not supported; pass {what}.detach()")
        if _is_transformed(x):
            raise ValueError(f"{fn}: {what} is an input of a torch.func transform (vmap, grad, ...), but fusedloss "
                             f"takes it as a constant; pass it from outside the transformed function (e.g. "
                             f"in_dims=None for it)")
    return x


def _plain():
    """A context for work on constant tensors (weights) inside a torch.func transform: without it every op on
    them returns a wrapper that has no storage (so no ``.numpy()``)."""
    return torch._C._DisableFuncTorch()


def _host_vector(x, what: str, fn: str):
    """A per-class / per-column parameter as a NumPy float64 array (or a float, or None)."""
    if x is None:
        return None
    if isinstance(x, Tensor):
        _constant(x, what, fn)
        with _plain():
            x = x.detach()
            if x.numel() == 1 and x.ndim <= 1:
                return float(x.reshape(()).item())
            return x.to("cpu", torch.float64).numpy()
    return x


def _class_axis(input: Tensor, dim: int | None) -> int:
    """The class axis: ``dim`` (normalised), or PyTorch's convention (1, or 0 for an unbatched 1-d input)."""
    if dim is None:
        return 1 if input.ndim >= 2 else 0
    if input.ndim == 0:
        raise ValueError("the input needs a class axis, got a 0-d tensor")
    if not -input.ndim <= dim < input.ndim:
        raise IndexError(f"class dim {dim} is out of range for an input with {input.ndim} dimensions")
    return dim % input.ndim


def _to_kernel(x: Tensor, dtype: torch.dtype, class_dim: int | None):
    """(tensor the kernel reads, private): class axis last, C-contiguous, float32/float64.

    ``private`` is True when a copy was made (the caller may then write the gradient into it).
    """
    v = x.detach()
    if class_dim is not None and class_dim != v.ndim - 1:
        v = v.movedim(class_dim, -1)
    if v.dtype == dtype and v.is_contiguous():
        return v, False
    return v.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True), True


def _host(t: Tensor | None):
    """A NumPy view of a CPU tensor (no copy)."""
    return None if t is None else t.numpy()


def _prepare_target(call: _Call, spec, target, input: Tensor, kdtype: torch.dtype, cuda: bool) -> Tensor:
    if not isinstance(target, Tensor):
        target = torch.as_tensor(target, device=input.device)
    elif target.is_cuda != cuda or (cuda and target.device != input.device):
        raise RuntimeError(f"{call.name}: input is on {input.device} but target is on {target.device}")
    t = target.detach()
    if spec.kind == "multiclass":
        if t.is_floating_point() and t.shape == input.shape:  # class probabilities: the same layout as input
            t, _ = _to_kernel(t, kdtype, call.class_dim)
        return t
    if t.shape != input.shape:
        raise ValueError(f"{call.name}: target shape {tuple(t.shape)} must match input shape {tuple(input.shape)}")
    if t.dtype != kdtype:
        t = t.to(kdtype)
    return t


def _compute(call: _Call, input: Tensor, target, want_grad: bool):
    """(value, gradient or None): one kernel call. The gradient has input's shape and dtype and is the
    derivative of the returned value (for "none": of each element's, or each row's, value)."""
    out_dtype = input.dtype
    if ((out_dtype is torch.float32 or out_dtype is torch.float64) and input.is_cpu and call.sample_weight is None
            and call.reduction != "none" and not call.inplace and type(target) is Tensor and target.is_cpu
            and (call.class_dim is None or call.class_dim == input.ndim - 1) and input.is_contiguous()
            and target.is_contiguous() and (call.class_dim is not None or target.shape == input.shape)):
        # The common case of a training step, in as few steps as it can be done: the tensors' memory goes to
        # the dispatcher as it is (it validates and converts the target as for NumPy callers), the gradient
        # into a torch buffer, on at most torch's intra-op thread count.
        threads = torch.get_num_threads()
        x = input.detach().numpy()
        t = (target.detach() if target.requires_grad else target).numpy()
        if want_grad:
            grad = torch.empty_like(input)
            value, _ = call.loss._run(x, t, call.reduction, None, call.backend, call.params, VALUE_AND_GRAD,
                                      grad.numpy(), nthreads=threads)
            return torch.scalar_tensor(value, dtype=out_dtype), grad
        value = call.loss._run(x, t, call.reduction, None, call.backend, call.params, VALUE, nthreads=threads)
        return torch.scalar_tensor(value, dtype=out_dtype), None
    return _compute_general(call, input, target, want_grad)


def _compute_general(call: _Call, input: Tensor, target, want_grad: bool):
    spec = REGISTRY[call.name]
    loss = call.loss
    out_dtype = input.dtype
    kdtype = torch.float32 if out_dtype in _HALF else out_dtype
    cuda = input.is_cuda
    if not (cuda or input.is_cpu):
        raise TypeError(f"fusedloss.torch: tensors on {input.device.type!r} are not supported (CPU and CUDA only)")

    x, private = _to_kernel(input, kdtype, call.class_dim)
    t = _prepare_target(call, spec, target, input, kdtype, cuda)
    sw = call.sample_weight
    if sw is not None:
        sw = sw.detach().to(device=input.device, dtype=kdtype)

    grad_out = None
    grad_into_input = False
    if want_grad:
        # multiclass kernels may write the gradient over the logits (the dispatcher's contract); elementwise
        # kernels get a fresh buffer
        if spec.kind == "multiclass" and (private or call.inplace):
            grad_out = x
            grad_into_input = not private
        else:
            # torch's allocator, not NumPy's: on Linux it asks for huge pages on large blocks, and first-touching
            # a fresh 1 GB gradient costs a fraction of what a np.empty buffer does
            grad_out = torch.empty_like(x)

    if cuda:
        kwargs = dict(reduction=call.reduction, sample_weight=sw, backend=call.backend, **call.params)
        value = _run_cuda(loss, x, t, kwargs, grad_out, want_grad)
    else:
        threads = torch.get_num_threads()
        if want_grad:
            value, _ = loss._run(x.numpy(), t.numpy(), call.reduction, _host(sw), call.backend, call.params,
                                 VALUE_AND_GRAD, grad_out.numpy(), nthreads=threads)
        else:
            value = loss._run(x.numpy(), t.numpy(), call.reduction, _host(sw), call.backend, call.params, VALUE,
                              nthreads=threads)

    if call.reduction == "none":
        value = torch.as_tensor(value, device=input.device)
        if value.dtype != out_dtype:
            value = value.to(out_dtype)
    elif cuda:
        value = torch.tensor(value, dtype=out_dtype, device=input.device)
    else:
        value = torch.scalar_tensor(value, dtype=out_dtype)
    if not want_grad:
        return value, None

    grad = grad_out
    if grad.dtype != out_dtype:
        grad = grad.to(out_dtype)
    if call.class_dim is not None and call.class_dim != input.ndim - 1:
        grad = grad.movedim(-1, call.class_dim)
    if call.inplace:
        if not grad_into_input:  # computed in a private copy: write it over the logits
            input.detach().copy_(grad)
        grad = input.detach()
        torch.autograd.graph.increment_version(input)
    return value, grad


def _run_cuda(loss, x: Tensor, t: Tensor, kwargs: dict, grad_out: Tensor | None, want_grad: bool):
    """The kernel call for CUDA tensors, which the dispatcher routes (as objects with
    ``__cuda_array_interface__``) to the ``cuda`` backend; the gradient is written into ``grad_out``, a torch
    tensor. Returns the value (a float, or a device array for "none"). The kernels run on the legacy default
    stream; a non-default torch stream is synchronised before and the device after, so that the ordering with
    torch's work holds either way."""
    dev = x.device
    side_stream = torch.cuda.current_stream(dev) != torch.cuda.default_stream(dev)
    if side_stream:
        torch.cuda.current_stream(dev).synchronize()
    try:
        if want_grad:
            value, _ = loss.value_and_grad(x, t, grad_out=grad_out, **kwargs)
        else:
            value = loss(x, t, **kwargs)
    finally:
        if side_stream:
            torch.cuda.synchronize(dev)
    return value


# --- autograd -----------------------------------------------------------------------------------------------


# From this many gradient entries on, backward checks whether grad_output is 1 (as after loss.backward()) and
# then hands the saved gradient over instead of multiplying; below it the multiplication is cheaper than the check.
_SKIP_SCALE_MIN = 1 << 15


# FusedLossFunction.apply's shortcut uses these (present since torch 2.0); without them, torch's apply
_FAST_APPLY = (hasattr(torch._C, "_are_functorch_transforms_active")
               and hasattr(torch._C._functorch, "unwrap_if_dead"))


class FusedLossFunction(torch.autograd.Function):
    """``FusedLossFunction.apply(input, target, call)`` -> ``(value, gradient)``: forward computes both in one
    kernel call; the gradient is a non-differentiable output, saved for backward, which scales it by
    ``grad_output``. Written with a separate ``setup_context`` (and a ``vmap`` rule) so that ``torch.func``'s
    transforms (``grad``, ``vjp``, ``jacrev``, ``vmap``) can run it. Second derivatives are refused with a
    message (see ``_SecondDerivativeUnsupported``)."""

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
        if torch.is_grad_enabled() and not ctx.functorch:  # backward(create_graph=True), eager
            raise RuntimeError(SECOND_DERIVATIVE_MESSAGE)
        if ctx.reduction == "none":
            go = grad_output if ctx.class_dim is None else grad_output.unsqueeze(ctx.class_dim)
            grad_input = grad * go
        elif ((ctx.inplace or grad.numel() >= _SKIP_SCALE_MIN) and not grad_output.is_cuda
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
    if target_grad and call.name not in RESIDUAL_LOSSES:
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


def _autocast(input: Tensor, target):
    """Inside ``torch.autocast`` (any device type, any lower-precision dtype) torch runs its losses in float32:
    their inputs are cast up (a differentiable cast: the gradient returns in the input's dtype) and the loss is
    float32. The same here. Outside autocast, half-precision inputs keep their dtype (computed in float32)."""
    if not torch.is_autocast_enabled(input.device.type):
        return input, target
    if input.dtype in _HALF:
        input = input.float()
    if isinstance(target, Tensor) and target.dtype in _HALF:
        target = target.float()
    return input, target


def _weight_tensor(weight, input: Tensor, fn: str) -> Tensor:
    """PyTorch's elementwise ``weight`` (broadcast like torch, trailing axes aligned) at input's full shape."""
    weight = _constant(weight, "weight", fn)
    with _plain():
        w = torch.as_tensor(weight, device=input.device)
    try:
        with _plain():
            return torch.broadcast_to(w, input.shape)
    except RuntimeError:
        raise ValueError(f"{fn}: weight of shape {tuple(w.shape)} does not broadcast to the input's shape "
                         f"{tuple(input.shape)}") from None


def _elementwise(name: str, input, target, reduction: str, params: dict, *, weight=None, weight_mean="sum_w",
                 sample_weight=None, backend=None, fn: str) -> Tensor:
    """Common path of the elementwise losses.

    ``weight`` is PyTorch's elementwise weight; for "mean", ``weight_mean`` says what PyTorch divides by:
    "sum_w" (mse_loss, l1_loss: sum(w l) / sum(w)) or "numel" (huber_loss, BCE: mean(w l)). ``sample_weight``
    is fusedloss's (pred's shape or a leading part, "mean" divides by its sum).
    """
    _check_reduction(reduction, fn)
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if weight is not None and sample_weight is not None:
        raise TypeError(f"{fn}: pass weight or sample_weight, not both")
    if (isinstance(target, Tensor) and target.dtype != input.dtype and target.is_floating_point()
            and input.is_floating_point()):
        # torch computes in the promoted dtype (float32 input, float64 target: a float64 loss)
        dtype = torch.promote_types(input.dtype, target.dtype)
        input, target = input.to(dtype), target.to(dtype)
    if input.dtype in _HALF or (isinstance(target, Tensor) and target.dtype in _HALF):
        input, target = _autocast(input, target)
    if isinstance(target, Tensor) and target.shape != input.shape:
        try:
            shape = torch.broadcast_shapes(input.shape, target.shape)
        except RuntimeError:
            shape = None
        if shape != input.shape:
            raise ValueError(f"{fn}: target of shape {tuple(target.shape)} does not broadcast to the input's "
                             f"shape {tuple(input.shape)}")
        warnings.warn(f"Using a target size ({target.size()}) that is different to the input size "
                      f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", UserWarning, stacklevel=3)
        target = target.expand(input.shape)  # differentiable: autograd sums a target gradient back
    sw = None
    if weight is not None:
        sw = _weight_tensor(weight, input, fn)
        if reduction == "mean" and weight_mean == "numel" and input.numel():
            # mean(w l) = sum((w / n) l): fold 1/n into the weights and sum
            with _plain():
                sw = sw / input.numel()
            reduction = "sum"
    elif sample_weight is not None:
        sw = torch.as_tensor(_constant(sample_weight, "sample_weight", fn), device=input.device)
    call = _Call(name, reduction, _non_default(name, params), sw, None, False, backend)
    return _apply(call, input, target)


def _multiclass(name: str, input, target, reduction: str, params: dict, *, class_dim=None, sample_weight=None,
                inplace_grad=False, backend=None, fn: str) -> Tensor:
    _check_reduction(reduction, fn)
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if input.dtype in _HALF:
        input, target = _autocast(input, target)
    sw = None
    if sample_weight is not None:
        sw = torch.as_tensor(_constant(sample_weight, "sample_weight", fn), device=input.device)
    call = _Call(name, reduction, _non_default(name, params), sw, _class_axis(input, class_dim), bool(inplace_grad),
                 backend)
    return _apply(call, input, target)


# --- small inputs: torch's own kernels ------------------------------------------------------------------

# Below these sizes a call of a loss that torch has, with torch's options only, runs on torch's own kernel
# (the result is torch's by definition): there the cost of a Python autograd.Function (its forward and its
# backward cost more than torch's whole C++ loss on a few thousand elements) and of rows of a few classes
# outweigh the fused kernel. Measured forward + backward on this project's 2-core machine, float32, 2 threads
# (`fusedloss bench --torch-module --size ...`): mse breaks even near 1e6 elements; cross_entropy near 4e5
# elements with 100 classes and 5e5 with 1000, and never with 10 classes (the row kernel's per-row cost),
# hence the class count below which it always stays on torch.
SMALL_ELEMENTWISE = 1 << 20
SMALL_MULTICLASS = 1 << 19
FEW_CLASSES = 32
_ROUTING = {"cpu": "auto"}


def set_cpu_routing(mode: str) -> None:
    """"auto" (default): small CPU calls of the losses torch has, with torch's options only, run on torch's
    own kernels (see SMALL_ELEMENTWISE, SMALL_MULTICLASS, FEW_CLASSES); "fused": always the fused kernels.
    A call with ``backend=`` given always runs the fused kernels of that backend."""
    if mode not in ("auto", "fused"):
        raise ValueError(f"set_cpu_routing: mode must be 'auto' or 'fused', got {mode!r}")
    _ROUTING["cpu"] = mode


def _torch_is_faster(input, target, multiclass: bool) -> bool:
    """Whether this call goes to torch's own kernel (see SMALL_ELEMENTWISE). It runs on every small call, so the
    cheap tests come first and each tensor attribute is read once."""
    if (_ROUTING["cpu"] != "auto" or type(input) is not Tensor or type(target) is not Tensor or not input.is_cpu
            or not target.is_cpu):
        return False
    dtype = input.dtype
    if dtype not in _NATIVE:
        return False
    n = input.numel()
    if not multiclass:
        return (n < SMALL_ELEMENTWISE and target.dtype == dtype and target.shape == input.shape
                and not torch.compiler.is_compiling())
    ndim = input.ndim
    if ndim == 0 or n == 0:
        return False
    shape = input.shape
    classes = shape[1] if ndim >= 2 else shape[0]
    if n >= SMALL_MULTICLASS and classes >= FEW_CLASSES:
        return False
    tdtype = target.dtype
    if tdtype == torch.int64:  # class labels: the input's shape without the class axis
        tshape = target.shape
        if ndim == 2:  # (N, C): slicing a torch.Size costs more than the rest of this function
            ok = len(tshape) == 1 and tshape[0] == shape[0]
        else:
            ok = tuple(tshape) == (tuple(shape[:1]) + tuple(shape[2:]) if ndim >= 2 else ())
    else:
        ok = tdtype == dtype and target.shape == shape
    return ok and not torch.compiler.is_compiling()


# argument types torch's functions take as fusedloss's do (a NumPy weight, say, would not be)
_TORCH_ARG_TYPES = (type(None), bool, int, float, str, Tensor)


def _is_default(value, default) -> bool:
    return value is default or (not isinstance(value, Tensor) and type(value) is type(default) and value == default)


def _torch_takes(args: tuple, kwargs: dict, extensions: tuple) -> bool:
    """Whether torch's function takes these arguments as fusedloss's does: every fusedloss extension keyword
    (name, default) at its default, and every argument of a type torch's functions accept."""
    for k, d in extensions:
        if k in kwargs and not _is_default(kwargs[k], d):
            return False
    for v in args:
        if not isinstance(v, _TORCH_ARG_TYPES):
            return False
    for v in kwargs.values():
        if not isinstance(v, _TORCH_ARG_TYPES):
            return False
    return True


def _small_on_torch(twin, multiclass: bool = False, extensions: dict | None = None):
    """Route small calls of a functional named after ``torch.nn.functional.<twin>`` to torch's function,
    with the same arguments, when every fusedloss extension keyword (``extensions``: name -> default, plus
    ``backend``) is at its default."""
    torch_fn = getattr(torch.nn.functional, twin)
    extensions = tuple({"backend": None, **(extensions or {})}.items())
    names = frozenset(k for k, _ in extensions)

    def wrap(fn):
        def routed(input, target, *args, **kwargs):
            if _torch_is_faster(input, target, multiclass) and _torch_takes(args, kwargs, extensions):
                return torch_fn(input, target, *args, **{k: v for k, v in kwargs.items() if k not in names})
            return fn(input, target, *args, **kwargs)

        routed.__name__, routed.__qualname__, routed.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        routed.__wrapped__ = fn
        return routed

    return wrap


# --- functional forms: PyTorch's losses, PyTorch's signatures -----------------------------------------------


@_small_on_torch("cross_entropy", True, {"z_loss": 0.0, "softcap": None, "sample_weight": None, "inplace_grad": False})
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None, sample_weight=None, inplace_grad=False,
                  backend=None):
    """``torch.nn.functional.cross_entropy``, fused: classes on dim 1 (dim 0 for an unbatched ``(C,)`` input),
    integer class targets or class probabilities of the input's shape.

    Extensions: ``z_loss`` (adds ``z_loss * logsumexp^2`` per row), ``softcap`` (logits become
    ``softcap * tanh(x / softcap)``), ``sample_weight`` (one weight per row, shape ``(N, d1, ...)`` or a leading
    part; "mean" divides by the sum of ``sample_weight * weight[target]``), ``inplace_grad`` (write the
    gradient into the logits' storage), ``backend``.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    params = dict(class_weight=_host_vector(weight, "weight", "cross_entropy"), ignore_index=ignore_index,
                  label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)
    return _multiclass("cross_entropy", input, target, reduction, params, sample_weight=sample_weight,
                       inplace_grad=inplace_grad, backend=backend, fn="cross_entropy")


@_small_on_torch("mse_loss")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, backend=None):
    """``torch.nn.functional.mse_loss`` (with ``weight``: "mean" is sum(w l) / sum(w), as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _elementwise("mse", input, target, reduction, {}, weight=weight, weight_mean="sum_w", backend=backend,
                        fn="mse_loss")


@_small_on_torch("l1_loss")
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, backend=None):
    """``torch.nn.functional.l1_loss`` (with ``weight``: "mean" is sum(w l) / sum(w), as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _elementwise("mae", input, target, reduction, {}, weight=weight, weight_mean="sum_w", backend=backend,
                        fn="l1_loss")


@_small_on_torch("huber_loss")
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None, *, backend=None):
    """``torch.nn.functional.huber_loss`` (with ``weight``: "mean" is mean(w l), as torch)."""
    return _elementwise("huber", input, target, reduction, {"delta": delta}, weight=weight, weight_mean="numel",
                        backend=backend, fn="huber_loss")


@_small_on_torch("smooth_l1_loss")
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0, *, backend=None):
    """``torch.nn.functional.smooth_l1_loss``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _elementwise("smooth_l1", input, target, reduction, {"beta": beta}, backend=backend, fn="smooth_l1_loss")


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean", *, backend=None):
    """``torch.nn.functional.poisson_nll_loss``; ``full=True`` adds torch's Stirling term (a constant)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    out = _elementwise("poisson_nll", input, target, reduction, {"log_input": log_input, "eps": eps},
                       backend=backend, fn="poisson_nll_loss")
    if not full:
        return out
    # torch's Stirling term, target log(target) - target + log(2 pi target) / 2 where target > 1: a constant
    # with respect to the input, added to the fused loss
    t = torch.as_tensor(target, device=out.device).detach().to(out.dtype)
    stirling = (t * t.log() - t + 0.5 * (2 * math.pi * t).log()).masked_fill(t <= 1, 0)
    if reduction == "none":
        return out + stirling
    return out + (stirling.sum() if reduction == "sum" else stirling.mean())


@_small_on_torch("binary_cross_entropy")
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean", *,
                         backend=None):
    """``torch.nn.functional.binary_cross_entropy`` on probabilities (logs clamped at -100, as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _elementwise("binary_cross_entropy", input, target, reduction, {"pos_weight": None}, weight=weight,
                        weight_mean="numel", backend=backend, fn="binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None, *, label_smoothing=0.0, backend=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits``. ``pos_weight`` broadcasts against the target as
    in torch; a scalar or one value per entry of the last axis runs on the fused kernel, other shapes (such as
    ``(C, 1, 1)`` for ``(N, C, H, W)`` logits) on torch's function. Extension: ``label_smoothing`` (targets become
    ``y (1 - s) + s / 2``)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    fn = "binary_cross_entropy_with_logits"
    if isinstance(pos_weight, Tensor) and pos_weight.ndim > 1 and pos_weight.numel() > 1:
        # torch broadcasts pos_weight against the target, e.g. (C, 1, 1) for (N, C, H, W); the kernels take one
        # value per entry of the last axis: the other shapes run on torch's own function
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / 2
        return torch.nn.functional.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                                                    pos_weight=pos_weight)
    params = {"pos_weight": _host_vector(pos_weight, "pos_weight", fn), "label_smoothing": label_smoothing}
    return _elementwise("binary_cross_entropy_with_logits", input, target, reduction, params, weight=weight,
                        weight_mean="numel", backend=backend, fn=fn)


@_small_on_torch("multi_margin_loss", True)
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean", *, backend=None):
    """``torch.nn.functional.multi_margin_loss``: input ``(N, C)`` or ``(C,)``, integer targets."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if isinstance(input, Tensor) and input.ndim > 2:
        raise ValueError(f"multi_margin_loss: input must be 1-d or 2-d, got {input.ndim}-d")
    params = {"margin": margin, "p": p, "class_weight": _host_vector(weight, "weight", "multi_margin_loss")}
    return _multiclass("multi_margin", input, target, reduction, params, backend=backend, fn="multi_margin_loss")


# torch's own function, exactly: log-probabilities in, the pointwise KL on any shape, torch's reductions. The
# fused form (logits in) is kl_div_with_logits.
kl_div = torch.nn.functional.kl_div


def kl_div_with_logits(input, target, reduction="mean", log_target=False, *, temperature=1.0, dim=-1,
                       backend=None):
    """KL(target || softmax(input / temperature)) along ``dim``, fused with the log-softmax: **logits in**.

    Not ``torch.nn.functional.kl_div`` (which is :func:`kl_div` here, torch's own): that one takes
    log-probabilities and returns the pointwise terms ``target * (log target - input)``. This one replaces
    ``F.kl_div(F.log_softmax(logits / temperature, dim), target, reduction=r, log_target=lt)`` by
    ``kl_div_with_logits(logits, target, reduction=r, log_target=lt, temperature=temperature, dim=dim)`` with
    the same value for "batchmean" (sum / input.size(0)), "sum" and "mean" (sum / number of elements), and a
    gradient with respect to the logits in one pass. "none" gives one value per row (the sum of torch's
    elementwise terms along ``dim``), shape ``input.shape`` without ``dim``. ``dim`` defaults to the last axis.
    """
    _check_reduction(reduction, "kl_div_with_logits", ("batchmean",))
    sample_weight = None
    if reduction in ("batchmean", "mean") and isinstance(input, Tensor):
        if input.ndim == 0:
            raise ValueError("kl_div_with_logits: the input needs a class axis, got a 0-d tensor")
        axis = _class_axis(input, dim)
        rows = input.shape[:axis] + input.shape[axis + 1:]
        # torch divides the sum by input.size(0) ("batchmean") or by the number of elements ("mean"); our
        # "mean" divides by the number of rows. Where they differ, fold the divisor into per-row weights.
        divisor = input.shape[0] if reduction == "batchmean" else input.numel()
        n_rows = math.prod(rows)
        if divisor == n_rows or divisor == 0:
            reduction = "mean"
        else:
            sample_weight = torch.full(rows, 1.0 / divisor, dtype=torch.float64, device=input.device)
            reduction = "sum"
    params = {"log_target": log_target, "temperature": temperature}
    return _multiclass("kl_div_with_logits", input, target, reduction, params, class_dim=dim, sample_weight=sample_weight,
                       backend=backend, fn="kl_div_with_logits")


# --- functional forms: our losses ---------------------------------------------------------------------------


def pseudo_huber_loss(input, target, reduction="mean", delta=1.0, *, sample_weight=None, backend=None):
    """Pseudo-Huber ``delta^2 (sqrt(1 + (d/delta)^2) - 1)``, ``d = input - target``."""
    return _elementwise("pseudo_huber", input, target, reduction, {"delta": delta}, sample_weight=sample_weight,
                        backend=backend, fn="pseudo_huber_loss")


def log_cosh_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``log(cosh(input - target))``, stable for any finite residual."""
    return _elementwise("log_cosh", input, target, reduction, {}, sample_weight=sample_weight, backend=backend,
                        fn="log_cosh_loss")


def quantile_loss(input, target, quantile=0.5, reduction="mean", *, sample_weight=None, backend=None):
    """Pinball loss of the ``quantile`` level (``input`` predicts the quantile of ``target``)."""
    return _elementwise("quantile", input, target, reduction, {"quantile": quantile}, sample_weight=sample_weight,
                        backend=backend, fn="quantile_loss")


def tweedie_loss(input, target, power=1.5, reduction="mean", *, sample_weight=None, backend=None):
    """Half Tweedie deviance with log link (``input`` is the log of the mean), ``power`` in (1, 2)."""
    return _elementwise("tweedie", input, target, reduction, {"power": power}, sample_weight=sample_weight,
                        backend=backend, fn="tweedie_loss")


def binary_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean", *, sample_weight=None, backend=None):
    """Sigmoid focal loss on logits (Lin et al. 2017); ``alpha < 0`` disables the class weighting."""
    return _elementwise("binary_focal", input, target, reduction, {"alpha": alpha, "gamma": gamma},
                        sample_weight=sample_weight, backend=backend, fn="binary_focal_loss")


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """``torchvision.ops.sigmoid_focal_loss``'s signature and default (``reduction="none"``)."""
    return binary_focal_loss(inputs, targets, alpha=alpha, gamma=gamma, reduction=reduction)


def hinge_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``max(0, 1 - t x)`` for targets ``t`` in {-1, 1} ({0, 1} accepted)."""
    return _elementwise("hinge", input, target, reduction, {}, sample_weight=sample_weight, backend=backend,
                        fn="hinge_loss")


def squared_hinge_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``max(0, 1 - t x)^2`` for targets ``t`` in {-1, 1} ({0, 1} accepted)."""
    return _elementwise("squared_hinge", input, target, reduction, {}, sample_weight=sample_weight, backend=backend,
                        fn="squared_hinge_loss")


def zero_one_loss(input, target, threshold=0.5, reduction="mean", *, sample_weight=None, backend=None):
    """Misclassification rate (a metric: no gradient); ``input > threshold`` predicts the positive class."""
    return _elementwise("zero_one", input, target, reduction, {"threshold": threshold}, sample_weight=sample_weight,
                        backend=backend, fn="zero_one_loss")


def focal_loss(input, target, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean", *, sample_weight=None,
               backend=None):
    """Softmax focal loss with integer targets; classes on dim 1 as in ``cross_entropy``. ``alpha``: None, a
    scalar, or one weight per class. "mean" divides by the rows not ignored."""
    params = {"alpha": _host_vector(alpha, "alpha", "focal_loss"), "gamma": gamma, "ignore_index": ignore_index}
    return _multiclass("categorical_focal", input, target, reduction, params, sample_weight=sample_weight,
                       backend=backend, fn="focal_loss")


def loss(name: str, input, target, *, reduction="mean", sample_weight=None, class_dim=None, backend=None, **params):
    """Any registry loss by its fusedloss name, with fusedloss's parameter names and weight semantics.

    Multiclass losses take the classes on ``class_dim`` (default: dim 1, or 0 for a 1-d input). ``name`` may
    also be a loss object (a custom loss from ``fusedloss.elementwise_loss``).
    """
    if isinstance(name, Loss):
        name = name.name
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(REGISTRY))}")
    params = {k: (_host_vector(v, k, name) if k == spec.vector_param else v) for k, v in params.items()}
    params = {**spec.defaults(), **params}
    if spec.kind == "multiclass":
        return _multiclass(name, input, target, reduction, params, class_dim=class_dim, sample_weight=sample_weight,
                           backend=backend, fn=name)
    return _elementwise(name, input, target, reduction, params, sample_weight=sample_weight, backend=backend, fn=name)


FUNCTIONAL = {
    "mse": mse_loss, "mae": l1_loss, "huber": huber_loss, "smooth_l1": smooth_l1_loss,
    "pseudo_huber": pseudo_huber_loss, "log_cosh": log_cosh_loss, "quantile": quantile_loss,
    "poisson_nll": poisson_nll_loss, "tweedie": tweedie_loss, "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits, "binary_focal": binary_focal_loss,
    "hinge": hinge_loss, "squared_hinge": squared_hinge_loss, "zero_one": zero_one_loss,
    "cross_entropy": cross_entropy, "categorical_focal": focal_loss, "multi_margin": multi_margin_loss,
    "kl_div_with_logits": kl_div_with_logits, "ctc": ctc_loss,
}


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
        return type(self)._fn(input, target, reduction=self.reduction, **self._call_options())

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
    """Drop-in for ``torch.nn.CrossEntropyLoss`` (same arguments), plus ``z_loss``, ``softcap``, ``inplace_grad``
    and ``backend``. ``weight`` is a buffer, as in torch (it follows ``.to(device)``)."""

    _fn = staticmethod(cross_entropy)
    _shown = ("ignore_index", "label_smoothing", "z_loss", "softcap", "inplace_grad")
    _buffer_names = ("weight",)

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, z_loss=0.0, softcap=None, inplace_grad=False, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), ignore_index=ignore_index,
                         label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, inplace_grad=inplace_grad,
                         backend=backend)
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


class PoissonNLLLoss(_LossModule):
    """Drop-in for ``torch.nn.PoissonNLLLoss``."""

    _fn = staticmethod(poisson_nll_loss)
    _shown = ("log_input", "full", "eps")

    def __init__(self, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean", *,
                 backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), log_input=log_input, full=full,
                         eps=eps, backend=backend)


class BCELoss(_LossModule):
    """Drop-in for ``torch.nn.BCELoss``."""

    _fn = staticmethod(binary_cross_entropy)
    _buffer_names = ("weight",)

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), backend=backend)
        self.register_buffer("weight", weight)



class BCEWithLogitsLoss(_LossModule):
    """Drop-in for ``torch.nn.BCEWithLogitsLoss``, plus ``label_smoothing``."""

    _fn = staticmethod(binary_cross_entropy_with_logits)
    _shown = ("label_smoothing",)
    _buffer_names = ("weight", "pos_weight")

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *,
                 label_smoothing=0.0, backend=None):
        super().__init__(_legacy_reduction(size_average, reduce, reduction), label_smoothing=label_smoothing,
                         backend=backend)
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


class PseudoHuberLoss(_LossModule):
    _fn = staticmethod(pseudo_huber_loss)
    _shown = ("delta",)

    def __init__(self, reduction="mean", delta=1.0, *, backend=None):
        super().__init__(reduction, delta=delta, backend=backend)


class LogCoshLoss(_LossModule):
    _fn = staticmethod(log_cosh_loss)

    def __init__(self, reduction="mean", *, backend=None):
        super().__init__(reduction, backend=backend)


class QuantileLoss(_LossModule):
    _fn = staticmethod(quantile_loss)
    _shown = ("quantile",)

    def __init__(self, quantile=0.5, reduction="mean", *, backend=None):
        super().__init__(reduction, quantile=quantile, backend=backend)


class TweedieLoss(_LossModule):
    _fn = staticmethod(tweedie_loss)
    _shown = ("power",)

    def __init__(self, power=1.5, reduction="mean", *, backend=None):
        super().__init__(reduction, power=power, backend=backend)


class BinaryFocalLoss(_LossModule):
    _fn = staticmethod(binary_focal_loss)
    _shown = ("alpha", "gamma")

    def __init__(self, alpha=0.25, gamma=2.0, reduction="mean", *, backend=None):
        super().__init__(reduction, alpha=alpha, gamma=gamma, backend=backend)


class HingeLoss(_LossModule):
    _fn = staticmethod(hinge_loss)

    def __init__(self, reduction="mean", *, backend=None):
        super().__init__(reduction, backend=backend)


class SquaredHingeLoss(_LossModule):
    _fn = staticmethod(squared_hinge_loss)

    def __init__(self, reduction="mean", *, backend=None):
        super().__init__(reduction, backend=backend)


class ZeroOneLoss(_LossModule):
    _fn = staticmethod(zero_one_loss)
    _shown = ("threshold",)

    def __init__(self, threshold=0.5, reduction="mean", *, backend=None):
        super().__init__(reduction, threshold=threshold, backend=backend)


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
    "binary_focal": BinaryFocalLoss, "hinge": HingeLoss, "squared_hinge": SquaredHingeLoss,
    "zero_one": ZeroOneLoss, "cross_entropy": CrossEntropyLoss, "categorical_focal": FocalLoss,
    "multi_margin": MultiMarginLoss, "kl_div_with_logits": KLDivWithLogitsLoss, "ctc": CTCLoss,
}


# --- benchmark: PyTorch module, forward + backward ------------------------------------------------------------

# (loss, shape) of the PyTorch-module comparison
TORCH_MODULE_CASES = (("cross_entropy", (8192, 32000)), ("cross_entropy", (65536, 1000)), ("mse", (10_000_000,)))
QUICK_TORCH_MODULE_CASES = (("cross_entropy", (1024, 1000)), ("mse", (100_000,)))

_TORCH_MODULE_PAIRS = {
    "cross_entropy": ("CrossEntropyLoss", lambda: torch.nn.CrossEntropyLoss(), lambda b: CrossEntropyLoss(backend=b)),
    "mse": ("MSELoss", lambda: torch.nn.MSELoss(), lambda b: MSELoss(backend=b)),
}


def _module_case_data(loss_name: str, shape: tuple, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)
    if loss_name == "cross_entropy":
        t = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    else:
        t = torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)
    return x, t


def bench_torch_module(cases=TORCH_MODULE_CASES, dtype="float32", *, repeat=7, warmup=2, threads=None, backend=None,
                       min_sample_s=2e-3, budget_s=20.0, progress=None) -> list[dict]:
    """Forward + backward of ``torch.nn.<Loss>`` vs ``fusedloss.torch.<Loss>`` on the same tensors.

    ``cases``: ``(loss, shape)`` pairs, ``loss`` in ("cross_entropy", "mse"). One timed call is
    ``x.grad = None; module(x, t).backward()`` on a leaf ``x`` (the gradient buffer is allocated in every call by
    both, as ``optimizer.zero_grad()`` leaves it). Contestants are timed round-robin with the shared timing loop
    (``fusedloss._bench.time_round_robin``): ``warmup`` untimed calls, then ``repeat`` samples. ``threads`` sets
    both torch's and fusedloss's thread count for the run (None: leave them). ``backend``: fusedloss's backend
    (None: the current choice, usually "auto"; the row says which backend ran).

    Returns flat rows: mode, loss, module, contestant ("torch" | "fusedloss"), backend, dtype, size, n, threads,
    median_s, p20_s, p80_s, samples, number, check, value_err, grad_err, speedup_vs_torch.
    """
    from . import _bench

    tdtype = getattr(torch, dtype)
    prev_torch_threads = torch.get_num_threads()
    prev_fl_threads = _config._num_threads
    if threads is not None:
        torch.set_num_threads(threads)
        _config.set_num_threads(threads)
    rows = []
    try:
        for loss_name, shape in cases:
            shape = tuple(int(s) for s in shape)
            label, make_torch, make_ours = _TORCH_MODULE_PAIRS[loss_name]
            spec = REGISTRY[loss_name]
            backend_name = (backend if backend not in (None, "auto")
                            else resolve_host_backend(backend, spec, np.dtype(dtype if tdtype in _NATIVE
                                                                              else "float32")).NAME)
            x, t = _module_case_data(loss_name, shape, tdtype)
            x.requires_grad_(True)
            mods = {"torch": make_torch(), "fusedloss": make_ours(backend)}

            def step(mod):
                x.grad = None
                mod(x, t).backward()

            # correctness: value and gradient of ours against torch's, on the first call
            values, grads = {}, {}
            for name, mod in mods.items():
                x.grad = None
                out = mod(x, t)
                out.backward()
                values[name], grads[name] = out.detach().item(), x.grad
            v_err = abs(values["fusedloss"] - values["torch"]) / max(abs(values["torch"]), 1e-30)
            scale = float(grads["torch"].abs().max()) or 1e-30
            g_err = float((grads["fusedloss"] - grads["torch"]).abs().max()) / scale
            tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(tdtype, 2e-2)
            check = "ok" if (v_err <= tol and g_err <= tol) else f"MISMATCH value {v_err:.2g} grad {g_err:.2g}"
            del grads
            x.grad = None
            runs = {name: (lambda m=mod: step(m)) for name, mod in mods.items()}
            timings = _bench.time_round_robin(runs, repeat, warmup, min_sample_s, budget_s, progress)
            x.grad = None
            size = _bench.format_shape(shape)
            med = {name: tm.stats()[0] for name, tm in timings.items()}
            for name, tm in timings.items():
                m, p20, p80 = tm.stats()
                rows.append({
                    "mode": "torch-module", "loss": loss_name,
                    "module": f"{'torch.nn' if name == 'torch' else 'fusedloss.torch'}.{label}",
                    "contestant": name, "backend": "torch" if name == "torch" else backend_name,
                    "dtype": dtype, "size": size, "n": int(np.prod(shape)),
                    "threads": torch.get_num_threads() if name == "torch" else _config.get_num_threads(),
                    "median_s": m, "p20_s": p20, "p80_s": p80, "samples": len(tm.samples), "number": tm.number,
                    "check": check, "value_err": v_err, "grad_err": g_err,
                    "speedup_vs_torch": med["torch"] / m,
                })
            del x, t, mods, runs
    finally:
        torch.set_num_threads(prev_torch_threads)
        _config.set_num_threads(prev_fl_threads)
    return rows


if "torch._dynamo" in sys.modules:  # already paid for: make the wrapper now, before any tracing
    _eager_apply()


def _main(argv=None):  # pragma: no cover - a convenience for measuring by hand
    import argparse
    import json

    ap = argparse.ArgumentParser(description="PyTorch-module forward+backward benchmark (fusedloss vs torch.nn)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    rows = bench_torch_module(QUICK_TORCH_MODULE_CASES if args.quick else TORCH_MODULE_CASES, args.dtype,
                              repeat=args.repeat, threads=args.threads, backend=args.backend)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":  # pragma: no cover
    _main()
