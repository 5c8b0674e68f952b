"""torch's results on the data where the fused kernels' rules and torch's differ (NaN and inf, and the few finite
inputs where torch's formula rounds), for the forms named after torch's. Such a call is recognised from what the
fused call already computed where that is possible (a NaN in its result), else by the cheapest check that is exact
(see each form in ``functional.py``), and is then computed again by torch's own function: its result, value and
gradient, is torch's by definition. Under a ``torch.func`` transform no branch on the data is possible (``vmap``):
there the fused result stands.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from ._autograd import _is_transformed
from ._kernel import _HALF

_HOST_FLOATS = (torch.float32, torch.float64)


def _sum(x: Tensor) -> float:
    """The sum of ``x``'s elements: non-finite where one of them is (and where the sum overflows). CPU float32 and
    float64 tensors are summed by NumPy on the calling thread, so that the check never waits for torch's
    intra-op threads (on a loaded machine a preempted one held a parallel reduction of 1e6 elements for 7 ms)."""
    x = x.detach()
    if x.is_cpu and x.dtype in _HOST_FLOATS:
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.add.reduce(x.numpy(), axis=None))
    return x.sum().item()


def holds_nan(out: Tensor) -> bool:
    """Whether the fused result may hold a NaN: for a reduced loss one read of the value; for ``"none"`` one pass,
    its sum (NaN where it holds one, and also at ``inf - inf``: then torch's function runs for nothing, exactly;
    20x faster than ``out.isnan().any()``)."""
    if _is_transformed(out):
        return False
    v = out.item() if out.ndim == 0 else _sum(out)
    return v != v


def finite(x: Tensor) -> bool:
    """Whether every element of ``x`` is finite, from one pass (``_sum``) and no buffer of ``x``'s size. A sum
    that overflows reads as non-finite too: the call then runs on torch's function for nothing, exactly."""
    if _is_transformed(x) or x.numel() == 0:
        return True
    return math.isfinite(_sum(x))


def plus_minus_one(t) -> bool:
    """Whether every target is 1 or -1 (a NaN is neither): the bounds of ``|t|`` (one pass for ``abs`` and one for
    ``aminmax``; 6x faster than ``t.abs().ne(1).any()``)."""
    if isinstance(t, Tensor) and _is_transformed(t):
        return True
    t = torch.as_tensor(t).detach()
    if t.numel() == 0:
        return True
    if not t.is_floating_point():  # (rare) exact comparisons, which every integer dtype has
        return bool(((t == 1) | (t == -1)).all())
    lo, hi = torch.aminmax(t.abs())
    return lo.item() == 1 and hi.item() == 1


def torch_result(out: Tensor, torch_fn, input: Tensor, target, reduction: str, **kwargs) -> Tensor:
    """``torch_fn(input, target, reduction=reduction, **kwargs)`` in the fused result's dtype: float16 and bfloat16
    data in float32, as the fused form computes them. Where torch's function refuses the call, the fused result
    (``_routing.REFUSED``), and on empty data (whose "mean" is NaN: torch's ``multi_margin_loss`` leaves it
    uninitialised)."""
    if input.numel() == 0:
        return out
    if not isinstance(target, Tensor):
        target = torch.as_tensor(target, device=input.device)
    if input.dtype in _HALF:
        input = input.float()
    if target.dtype in _HALF:
        target = target.float()
    for name in ("weight", "pos_weight"):
        value = kwargs.get(name)
        if value is not None and not isinstance(value, Tensor):  # (a NumPy array or a number, as the fused form takes)
            kwargs[name] = torch.as_tensor(value, dtype=input.dtype, device=input.device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the fused form already gave torch's warnings)
            return torch_fn(input, target, reduction=reduction, **kwargs).to(out.dtype)
    except (RuntimeError, TypeError, ValueError):
        return out
