"""PyTorch integration of CTC: ``ctc_loss`` (functional) and ``CTCLoss`` (module), re-exported by
``fusedloss.torch``.

``CTCLoss(blank=0, reduction="mean", zero_infinity=False)`` is a drop-in for ``torch.nn.CTCLoss``: given
log-probabilities (``inputs="log_probs"``, the default, as torch) it returns torch's value and torch's gradient
(``exp(log_probs) - occupancy``, which equals the true gradient once it passes back through the
``log_softmax`` that made the log-probabilities). ``inputs="logits"`` takes raw scores and fuses the
log-softmax: one kernel call gives the loss and the exact gradient with respect to the scores, and the model
no longer needs its ``log_softmax`` (nor its T x N x C output and backward).

The forward pass runs the kernel once (value and gradient) and keeps the gradient; backward scales it by
``grad_output`` (per sequence for "none"). float16/bfloat16 are computed in float32 (and, under ``torch.autocast``,
returned as float32, as torch's). CPU tensors only. Second derivatives are refused with a message.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._losses import LOSSES
from ._args import torch_errors
from ._autograd import SECOND_DERIVATIVE_MESSAGE, _SecondDerivativeUnsupported

__all__ = ["ctc_loss", "CTCLoss"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _host_ints(v, what: str):
    if isinstance(v, Tensor):
        if v.requires_grad:
            raise RuntimeError(f"ctc_loss: {what} must not require grad")
        with torch._C._DisableFuncTorch():  # inside torch.func, ops on constants would return storage-less wrappers
            return v.detach().cpu().numpy()
    return np.asarray(v)


class _CTCFunction(torch.autograd.Function):
    """``apply(x, ...)`` -> ``(value, gradient)``: one kernel call; the gradient is a non-differentiable output
    saved for backward. A separate ``setup_context`` lets ``torch.func.grad`` / ``vjp`` run it."""

    @staticmethod
    def forward(x, targets, input_lengths, target_lengths, sample_weight, reduction, params, backend, want_grad):
        kdtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        try:
            xk = x.detach().to(kdtype).contiguous()
        except RuntimeError as exc:  # torch's allocator (a broadcast view, say): name the array, as the NumPy API
            if "allocate" not in str(exc):
                raise
            err = MemoryError(str(exc))
            err.shape, err.dtype = tuple(x.shape), torch.empty((), dtype=kdtype).numpy().dtype
            raise LOSSES["ctc"]._memory_error(err, x) from exc
        args = (xk.numpy(), targets, input_lengths, target_lengths)
        kw = dict(reduction=reduction, sample_weight=sample_weight, backend=backend, **params)
        if want_grad:
            value, g = LOSSES["ctc"].value_and_grad(*args, **kw)
            grad = torch.from_numpy(g)
        else:
            value = LOSSES["ctc"](*args, **kw)
            grad = torch.empty(0, dtype=kdtype)
        if reduction == "none":
            return torch.from_numpy(np.asarray(value)).to(x.dtype), grad
        return torch.tensor(value, dtype=x.dtype), grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        params, reduction = inputs[6], inputs[5]
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.reduction = reduction
        ctx.seq_dim = 0 if params.get("batch_first") else 1
        ctx.in_dtype = inputs[0].dtype
        ctx.functorch = torch._C._functorch.peek_interpreter_stack() is not None
        ctx.save_for_backward(output[1], *((inputs[0],) if ctx.functorch else ()))

    @staticmethod
    def backward(ctx, grad_output, _unused):
        none = (None,) * 8
        if grad_output is None:
            return (None, *none)
        if torch.is_grad_enabled() and not ctx.functorch:  # backward(create_graph=True), eager
            raise RuntimeError(SECOND_DERIVATIVE_MESSAGE)
        g, *anchor = ctx.saved_tensors
        if ctx.reduction == "none":
            shape = [1, 1, 1]
            shape[ctx.seq_dim] = -1
            g = g * grad_output.to(g.dtype).reshape(shape)
        else:
            g = g * grad_output.to(g.dtype)
        g = g.to(ctx.in_dtype)
        if torch.is_grad_enabled():  # torch.func: refuse a second derivative (see fusedloss.torch)
            g = _SecondDerivativeUnsupported.apply(g, anchor[0])
        return (g, *none)


@torch_errors
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False, *,
             inputs="log_probs", batch_first=False, sample_weight=None, backend=None):
    """``torch.nn.functional.ctc_loss`` with the same arguments (and results, for log-probabilities), plus
    ``inputs="logits"`` (raw scores, log-softmax fused), ``batch_first``, ``sample_weight`` (one per sequence)
    and ``backend``. An unbatched (T, C) input with 1-D targets is accepted, as torch does."""
    if not isinstance(log_probs, Tensor):
        raise TypeError(f"ctc_loss: log_probs must be a torch.Tensor, got {type(log_probs).__name__}")
    if log_probs.device.type != "cpu":
        raise ValueError("ctc_loss: only CPU tensors are supported; use torch.nn.functional.ctc_loss on the GPU")
    if log_probs.dtype not in _FLOATS:  # (the kernel's cast would take integers, booleans, complex numbers)
        raise TypeError(f"ctc_loss: log_probs must be float16, bfloat16, float32 or float64, got {log_probs.dtype}")
    if log_probs.numel() == 0:  # (an empty batch, no frames or no classes)
        raise ValueError(f"ctc_loss: log_probs must not be empty (torch.nn.functional.ctc_loss refuses it), got "
                         f"shape {tuple(log_probs.shape)}; skip the loss for an empty batch")
    if log_probs.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled("cpu"):
        log_probs = log_probs.float()  # torch runs ctc_loss in float32 under autocast
    unbatched = log_probs.dim() == 2
    x = log_probs.unsqueeze(0 if batch_first else 1) if unbatched else log_probs
    t = _host_ints(targets, "targets")
    il = _host_ints(input_lengths, "input_lengths")
    tl = _host_ints(target_lengths, "target_lengths")
    if unbatched:
        if il.size != 1 or tl.size != 1:
            raise ValueError(f"ctc_loss: log_probs of shape {tuple(log_probs.shape)} is one unbatched (T, C) "
                             f"sequence: input_lengths and target_lengths must hold one length each, got "
                             f"{il.size} and {tl.size} (batched log_probs are 3-d)")
        t, il, tl = t.reshape(1, -1), il.reshape(1), tl.reshape(1)
    w = None
    if sample_weight is not None:
        if isinstance(sample_weight, Tensor) and sample_weight.requires_grad:
            raise RuntimeError("ctc_loss: sample_weight must not require grad")
        w = _host_ints(sample_weight, "sample_weight") if isinstance(sample_weight, Tensor) else sample_weight
    params = {"blank": blank, "zero_infinity": zero_infinity, "batch_first": batch_first, "inputs": inputs}
    want_grad = torch.is_grad_enabled() and x.requires_grad
    out = _CTCFunction.apply(x, t, il, tl, w, reduction, params, backend, want_grad)[0]
    return out.squeeze(0) if unbatched and reduction == "none" else out


class CTCLoss(torch.nn.Module):
    """Drop-in for ``torch.nn.CTCLoss(blank=0, reduction="mean", zero_infinity=False)``; ``inputs="logits"``
    takes raw scores and fuses the log-softmax. ``forward(log_probs, targets, input_lengths, target_lengths)``."""

    def __init__(self, blank=0, reduction="mean", zero_infinity=False, *, inputs="log_probs", batch_first=False,
                 backend=None):
        super().__init__()
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.inputs = inputs
        self.batch_first = batch_first
        self.backend = backend

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                        self.zero_infinity, inputs=self.inputs, batch_first=self.batch_first, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}, "
                f"inputs={self.inputs!r}")
