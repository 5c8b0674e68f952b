"""The call description and the one kernel call: a ``_Call`` (everything about a loss call except its tensors)
and ``_compute``, which hands the tensors to the dispatcher (``Loss._run``, or the ``cuda`` backend for CUDA
tensors) and returns the value and, when asked, the gradient as tensors of the input's shape and dtype.

Layout and memory rules (class axis last, one copy at most, half precision computed in float32, the gradient
written into a private copy or into the logits with ``inplace_grad``) are described in ``fusedloss.torch``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._losses import LOSSES
from .._spec import REGISTRY
from .._validate import VALUE, VALUE_AND_GRAD

_HALF = (torch.float16, torch.bfloat16)
_NATIVE = (torch.float32, torch.float64)


class _Call:
    """Everything about one loss call except the input and target tensors (validated by the wrappers).

    ``reduction`` is the fusedloss reduction given to the kernel ("mean", "sum" or "none"); ``params`` the
    registry parameters that differ from the defaults (vectors as float64 NumPy arrays); ``sample_weight``
    fusedloss's (pred's shape, rows' shape for multiclass, or a leading part); ``class_dim`` the input axis
    holding the classes (>= 0) of a multiclass loss, None for elementwise losses. A plain slotted class: one
    is made per call, so its construction is on the hot path. ``metrics``: the names asked for with
    ``metrics=`` (or None); the kernel call leaves their ``Metrics`` in ``metrics_out``, which the functional form
    returns next to the loss (the autograd Function's outputs can only be tensors)."""

    __slots__ = ("name", "reduction", "params", "sample_weight", "class_dim", "inplace", "backend", "loss",
                 "metrics", "metrics_out")

    def __init__(self, name, reduction, params, sample_weight, class_dim, inplace=False, backend=None,
                 metrics=None):
        self.name = name
        self.reduction = reduction
        self.params = params
        self.sample_weight = sample_weight
        self.class_dim = class_dim
        self.inplace = inplace
        self.backend = backend
        self.loss = LOSSES[name]
        self.metrics = metrics
        self.metrics_out = None


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
    if t.is_complex():  # a cast to the kernels' dtype would drop the imaginary part
        raise TypeError(f"{call.name}: target must be real, got dtype {t.dtype}")
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
        metrics = call.metrics
        if want_grad:
            grad = torch.empty_like(input)
            out = call.loss._run(x, t, call.reduction, None, call.backend, call.params, VALUE_AND_GRAD,
                                 grad.numpy(), nthreads=threads, metrics=metrics)
            if metrics is not None:
                call.metrics_out = out[2]
            return torch.scalar_tensor(out[0], dtype=out_dtype), grad
        value = call.loss._run(x, t, call.reduction, None, call.backend, call.params, VALUE, nthreads=threads,
                               metrics=metrics)
        if metrics is not None:
            value, call.metrics_out = value
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

    try:
        x, private = _to_kernel(input, kdtype, call.class_dim)
    except RuntimeError as exc:  # torch's allocator: say which array, as the NumPy API does (Loss._memory_error)
        if "allocate" not in str(exc):
            raise
        err = MemoryError(str(exc))
        err.shape, err.dtype = tuple(input.shape), torch.empty((), dtype=kdtype).numpy().dtype
        raise loss._memory_error(err, input) from exc
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
            # torch's allocator, not NumPy's. NumPy asks for transparent huge pages on large blocks: alone, a fresh
            # 1 GB gradient then costs half as much to first touch, but between torch ops that free and take large
            # blocks the kernel compacts memory to find huge pages, and a step took up to 1.4x as long
            grad_out = torch.empty_like(x)

    if cuda:
        value = _run_cuda(call, x, t, sw, grad_out, want_grad)
    else:
        threads = torch.get_num_threads()
        if want_grad:
            out = loss._run(x.numpy(), t.numpy(), call.reduction, _host(sw), call.backend, call.params,
                            VALUE_AND_GRAD, grad_out.numpy(), nthreads=threads, metrics=call.metrics)
            value = out[0]
        else:
            out = loss._run(x.numpy(), t.numpy(), call.reduction, _host(sw), call.backend, call.params, VALUE,
                            nthreads=threads, metrics=call.metrics)
            value = out if call.metrics is None else out[0]
        if call.metrics is not None:
            call.metrics_out = out[-1]

    if call.reduction == "none" or cuda:
        # a CUDA value is a device array (one element for a reduced value): wrapped, not copied
        value = torch.as_tensor(value, device=input.device)
        if call.reduction != "none":
            value = value.reshape(())
        if value.dtype != out_dtype:
            value = value.to(out_dtype)
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


def _run_cuda(call: _Call, x: Tensor, t: Tensor, sw: Tensor | None, grad_out: Tensor | None, want_grad: bool):
    """The kernel call for CUDA tensors, which the dispatcher routes (as objects with
    ``__cuda_array_interface__``) to the ``cuda`` backend; the gradient is written into ``grad_out``, a torch
    tensor. The kernels (and the checks' small copies) go on the caller's current torch stream, in order with its
    other work there, so nothing is synchronised around them; the value comes back as a device array (one element,
    of the kernel's dtype, for a reduced value: summed on the device), which ``_compute_general`` wraps. With
    ``metrics`` the call also leaves their ``Metrics`` (folded on the host from the kernel's per-row results or
    table) in ``call.metrics_out``."""
    stream = torch.cuda.current_stream(x.device).cuda_stream
    outputs = VALUE_AND_GRAD if want_grad else VALUE
    out = call.loss._run(x, t, call.reduction, sw, call.backend, call.params, outputs, grad_out, stream=stream,
                         device_value=True, metrics=call.metrics)
    if call.metrics is not None:
        call.metrics_out = out[-1]
        return out[0]
    return out[0] if want_grad else out
