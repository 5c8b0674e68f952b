"""From torch-style arguments to a ``_Call``: reductions (and torch's deprecated ``size_average``/``reduce``),
weights taken as constants, dtype promotion and autocast, the class axis; ``_elementwise`` and ``_multiclass``
are the common path of every functional form.
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import Tensor

from .._dispatch import REDUCTIONS
from .._spec import REGISTRY
from .._validate import LabelRangeError
from ._autograd import _apply, _is_transformed, _plain
from ._kernel import _HALF, _Call, _non_default

class ArgumentError(ValueError, RuntimeError):
    """A bad argument to a form named after torch's (``cross_entropy``, ``MSELoss``, ...): a ``ValueError`` as
    every fusedloss error is, and a ``RuntimeError`` as most of torch's are, so that an ``except`` written for
    either catches it."""


class LabelIndexError(ArgumentError, IndexError):
    """A class label out of range where torch raises ``IndexError`` (``cross_entropy``)."""


def torch_error(exc: ValueError, index_labels: bool) -> ArgumentError:
    """``exc`` (raised by a form named after torch's) as the ``ArgumentError`` to raise instead."""
    if isinstance(exc, ArgumentError):
        return exc
    kind = LabelIndexError if index_labels and isinstance(exc, LabelRangeError) else ArgumentError
    return kind(*exc.args).with_traceback(exc.__traceback__)


def torch_errors(fn=None, *, index_labels: bool = False):
    """Decorate a form named after torch's: the ``ValueError``s it raises become ``ArgumentError``s
    (``LabelIndexError`` for a label out of range with ``index_labels``), as torch's own type would be caught."""
    if fn is None:
        return lambda f: torch_errors(f, index_labels=index_labels)

    def checked(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise torch_error(exc, index_labels) from None

    checked.__name__, checked.__qualname__, checked.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    checked.__module__, checked.__wrapped__ = fn.__module__, fn
    checked.__signature__ = inspect.signature(fn)
    return checked


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


def _real(t: Tensor, what: str, fn: str) -> Tensor:
    """``t`` if it holds real numbers (converting a complex tensor to the kernels' dtype would drop its imaginary
    part)."""
    if t.is_complex():
        raise TypeError(f"{fn}: {what} must be real, got dtype {t.dtype}")
    return t


def _host_vector(x, what: str, fn: str):
    """A per-class / per-column parameter as a NumPy float64 array (or a float, or None)."""
    if x is None:
        return None
    if isinstance(x, Tensor):
        _real(_constant(x, what, fn), what, fn)
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


def _check_broadcast(x: Tensor, input, what: str, fn: str) -> None:
    """A weight-like tensor handed to torch's own function must broadcast to the input's shape (else torch's
    error would name neither the argument nor the shapes)."""
    shape = getattr(input, "shape", None)
    try:
        ok = shape is not None and torch.broadcast_shapes(x.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{fn}: {what} of shape {tuple(x.shape)} does not broadcast to the input's shape "
                         f"{tuple(shape) if shape is not None else None}")


def _weight_tensor(weight, input: Tensor, fn: str) -> Tensor:
    """PyTorch's elementwise ``weight`` (broadcast like torch, trailing axes aligned) at input's full shape."""
    weight = _constant(weight, "weight", fn)
    with _plain():
        w = _real(torch.as_tensor(weight, device=input.device), "weight", fn)
    try:
        with _plain():
            return torch.broadcast_to(w, input.shape)
    except RuntimeError:
        raise ValueError(f"{fn}: weight of shape {tuple(w.shape)} does not broadcast to the input's shape "
                         f"{tuple(input.shape)}") from None


def _elementwise(name: str, input, target, reduction: str, params: dict, *, weight=None, weight_mean="sum_w",
                 sample_weight=None, backend=None, fn: str, metrics=None, value_dtype: str | None = None):
    """Common path of the elementwise losses.

    ``weight`` is PyTorch's elementwise weight; for "mean", ``weight_mean`` says what PyTorch divides by:
    "sum_w" (mse_loss, l1_loss: sum(w l) / sum(w)) or "numel" (huber_loss, BCE: mean(w l)). ``sample_weight``
    is fusedloss's (pred's shape or a leading part, "mean" divides by its sum). ``metrics``: see ``_run``.
    An input and a target of two float dtypes are computed in the promoted dtype; the loss is returned in it, or
    with ``value_dtype`` ("input", "target") in that argument's dtype, as the torch function of the form returns
    it (outside autocast, which gives float32 to both).
    """
    _check_reduction(reduction, fn)
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if weight is not None and sample_weight is not None:
        raise TypeError(f"{fn}: pass weight or sample_weight, not both")
    kept = None  # the dtype torch's function returns, where it is not the promoted one
    if (isinstance(target, Tensor) and target.dtype != input.dtype and target.is_floating_point()
            and input.is_floating_point()):
        if value_dtype is not None and not torch.is_autocast_enabled(input.device.type):
            kept = input.dtype if value_dtype == "input" else target.dtype
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
            if metrics is not None:  # the kernel would weigh the metrics by w / n: states of batches would not merge
                raise ValueError(
                    f"{fn}: metrics={metrics!r} with weight= and reduction='mean' is not supported (the fused call "
                    f"scales the weights by 1/numel, and the metrics would weigh rows by the scaled weights); pass "
                    f"reduction='sum' and divide the loss by input.numel(), or call "
                    f"fusedloss.metrics.binary_logit_metrics(logits, target, metrics=..., sample_weight=weight)")
            # mean(w l) = sum((w / n) l): fold 1/n into the weights and sum
            with _plain():
                sw = sw / input.numel()
            reduction = "sum"
    elif sample_weight is not None:
        sw = _real(torch.as_tensor(_constant(sample_weight, "sample_weight", fn), device=input.device),
                   "sample_weight", fn)
    call = _Call(name, reduction, _non_default(name, params), sw, None, False, backend, metrics)
    out = _run(call, input, target, fn)
    if kept is None:
        return out
    if metrics is None:
        return out.to(kept)  # (differentiable: the gradient still reaches the input in its own dtype)
    return out[0].to(kept), out[1]


def _multiclass(name: str, input, target, reduction: str, params: dict, *, class_dim=None, sample_weight=None,
                inplace_grad=False, backend=None, fn: str, metrics=None):
    _check_reduction(reduction, fn)
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if input.dtype in _HALF:
        input, target = _autocast(input, target)
    sw = None
    if sample_weight is not None:
        sw = _real(torch.as_tensor(_constant(sample_weight, "sample_weight", fn), device=input.device),
                   "sample_weight", fn)
    call = _Call(name, reduction, _non_default(name, params), sw, _class_axis(input, class_dim), bool(inplace_grad),
                 backend, metrics)
    return _run(call, input, target, fn)


def _run(call: _Call, input: Tensor, target, fn: str):
    """The loss tensor; with ``metrics=`` given, ``(loss tensor, Metrics)``, the metrics from the same kernel
    call (the host API's ``metrics=``, which checks the names, the loss and the targets). CUDA tensors run the
    fused kernels (the ``cuda`` backend) whatever the routing, as every option torch lacks does. Under
    torch.compile the whole call with metrics is a graph break (``torch.compiler.disable``), as every kernel call
    is."""
    if call.metrics is None:
        return _apply(call, input, target)
    if not (input.is_cpu or input.is_cuda):
        raise TypeError(
            f"{fn}: metrics={call.metrics!r} takes CPU or CUDA tensors, got input on {input.device}. Call {fn} "
            f"without metrics, and fusedloss.metrics.{_metrics_helper(call)} on a CPU copy of the logits")
    if torch.compiler.is_compiling():
        if not _WITH_METRICS:
            _WITH_METRICS.append(torch.compiler.disable(_with_metrics))
        return _WITH_METRICS[0](call, input, target, fn)
    return _with_metrics(call, input, target, fn)


_WITH_METRICS: list = []  # _with_metrics behind torch.compiler.disable, made on first need (see _autograd._apply)


def _metrics_helper(call: _Call) -> str:
    """The fusedloss.metrics call that computes the metrics without the loss."""
    if REGISTRY[call.name].metrics_pass == "binary":
        return "binary_logit_metrics(logits.detach().cpu().numpy(), target.cpu().numpy(), metrics=...)"
    return "logit_metrics(logits.detach().cpu().numpy(), labels.cpu().numpy(), metrics=...)"


def _with_metrics(call: _Call, input: Tensor, target, fn: str):
    """``(loss, Metrics)`` of one eager kernel call. Inside torch.func transforms the metrics (a Python object,
    not a tensor) cannot be carried: refused."""
    if torch._C._functorch.peek_interpreter_stack() is not None or _is_transformed(input):
        raise RuntimeError(
            f"{fn}: metrics={call.metrics!r} is not supported inside torch.func transforms (vmap, grad, ...): the "
            "metrics are a Python object, not a tensor the transform can carry. Call the loss with metrics outside "
            f"the transform, or fusedloss.metrics.{_metrics_helper(call)}")
    out = _apply(call, input, target)
    return out, call.metrics_out
