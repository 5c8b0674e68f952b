"""The device-array path of the pairwise losses: inputs on the GPU (a Numba device array, or any
``__cuda_array_interface__`` object: CuPy, torch CUDA tensors, viewed without a copy); only backend "cuda"
runs it.

The inputs must be C-contiguous device arrays of one float dtype and one shape (no conversion on the device).
The target and the sample weights (one value per row) may be host or device arrays; they are small, so
device ones are copied to the host and checked there by the host path's rules
(``PairwiseLoss._check_rows``), then sent to the device as float64. The gradients
are new device arrays (or the caller's ``grad_out`` device arrays); a reduced value is the compensated sum of the
per-row losses copied to the host, as on the host path; ``reduction="none"`` gives a device array (the losses
weighted on the device). Every copy, allocation and launch goes on the backend's current stream
(``numba_cuda.on_stream``); the host waits for that stream only to read back what it needs: device targets and
weights (checked on the host), the check that an input is >= 0 (gaussian_nll's var), and the losses of a reduced
value.
"""

from __future__ import annotations

import math

import numpy as np

from ._device import _cuda_backend, _on_host, _operand, _overlap
from ._validate import _FLOAT_DTYPES, REDUCTIONS, _weight_sum, is_device_array, reduced_value
from .backends import BackendUnavailable


def run(loss, arrays, reduction, sample_weight, backend, params, want_value, want_grad, grad_outs):
    """``PairwiseLoss._run_pairwise`` for device inputs (params already checked)."""
    spec, name = loss.spec, loss.name
    cu = _cuda_backend(backend, name)
    k = len(spec.inputs)
    if len(arrays) != len(loss._args):
        raise TypeError(f"{name}() takes {len(loss._args)} arrays ({', '.join(loss._args)}), got {len(arrays)}")
    xs = []
    for a, what in zip(arrays[:k], spec.inputs):
        if not is_device_array(a):
            raise TypeError(f"{name}: {what} is a host array and {spec.inputs[0]} a device array; pass every "
                            "input on the same side")
        xs.append(_operand(cu, a, what, name))
    dtype = np.dtype(xs[0].dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: {spec.inputs[0]} must be float32 or float64, got dtype {dtype}")
    for x, what in zip(xs[1:], spec.inputs[1:]):
        if np.dtype(x.dtype) != dtype:
            raise TypeError(f"{name}: {what} must have {spec.inputs[0]}'s dtype {dtype}, got {x.dtype}")
    if not cu.supports(spec, dtype):
        raise BackendUnavailable(f"backend 'cuda' does not support {name} for dtype {dtype}")
    shape = tuple(xs[0].shape)
    for x, what in zip(xs[1:], spec.inputs[1:]):
        if tuple(x.shape) != shape:  # (a broadcast input, as the host path takes, is not taken here)
            raise ValueError(f"{name}: {what} must have {spec.inputs[0]}'s shape {shape}, got {tuple(x.shape)}")
        # (a wait for the stream: the host raises on a negative entry before any kernel runs)
        if what in spec.nonnegative_inputs and x.size and cu.first_outside(x.reshape(x.size), 0.0, math.inf) >= 0:
            raise ValueError(f"{name}: {what} has negative entries; it must be >= 0")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    target = _on_host(cu, arrays[-1], "target", name) if spec.row_target else None
    rows, D, N, y, w = loss._check_rows(shape, target, _on_host(cu, sample_weight, "sample_weight", name))
    n = math.prod(shape)
    gs = None
    if want_grad:
        if grad_outs is None:
            gs = [cu.empty(shape, dtype) for _ in xs]
        else:
            if len(grad_outs) != k:
                raise ValueError(f"{name}: grad_out must be a tuple of {k} device arrays, one per input")
            gs = []
            for j, g in enumerate(grad_outs):
                if not is_device_array(g):
                    raise TypeError(f"{name}: grad_out[{j}] must be a device array, got {type(g).__name__}")
                arr = _operand(cu, g, f"grad_out[{j}]", name)
                if tuple(arr.shape) != shape or np.dtype(arr.dtype) != dtype:
                    raise ValueError(f"{name}: grad_out[{j}] must have shape {shape} and dtype {dtype}, got "
                                     f"{tuple(arr.shape)} {arr.dtype}")
                if cu.read_only(arr):
                    raise ValueError(f"{name}: grad_out[{j}] is read-only")
                if n and any(_overlap(cu, arr, other) for other in (*xs, *gs)):
                    raise ValueError(f"{name}: grad_out[{j}] overlaps an input or another output")
                gs.append(arr)
    coef, weights, denom = loss._coefficients(reduction, w, N)
    losses = cu.empty(N, np.float64)
    flat = [x.reshape(n) for x in xs]
    gflat = [g.reshape(n) for g in gs] if gs is not None else [None] * k
    cu.pairwise(name, spec.packed(params), D, flat[0], flat[1], flat[2] if k == 3 else None,
                None if y is None else cu.to_device(y), cu.to_device(coef) if want_grad and N else None,
                losses, gflat[0], gflat[1], gflat[2] if k == 3 else None, 1)
    grads = tuple(gs) if gs is not None else None
    if not want_value:
        return grads
    if reduction == "none":  # weighted and rounded on the device: nothing to wait for
        value = cu.weighted(losses, w, dtype).reshape(rows)
    else:  # a Python float, the compensated sum of the rows' losses on the host (as the host path): the one wait
        host = cu.to_host(losses) if N else np.zeros(0)
        with np.errstate(invalid="ignore", over="ignore"):
            value = reduced_value(_weight_sum(weights * host), reduction, denom)
    return (value, grads) if want_grad else value
