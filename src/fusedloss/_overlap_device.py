"""The device-array path of the overlap losses (dice, tversky): the input on the GPU (a Numba device array, or any
``__cuda_array_interface__`` object: CuPy, torch CUDA tensors, viewed without a copy); only backend "cuda" runs it.

The input must be a C-contiguous float32/float64 device array. The target and the sample weights may be host or
device arrays; device ones are copied to the host and checked there by the host path's rules
(``OverlapLoss._check``: every class index), then sent to the device. Both passes run on the device; their sums
(N x C x 3 float64) come back to the host, where ``_reference_overlap.combine`` makes the value and the gradient's
coefficients as on the host path. The gradient is a new device array (or the caller's ``grad_out``);
``reduction="none"`` gives a device array. Every copy, allocation and launch goes on the backend's current stream
(``numba_cuda.on_stream``); the host waits for it to read back device targets and weights (checked on the host)
and the sums, nothing else.
"""

from __future__ import annotations

import numpy as np

from ._device import _cuda_backend, _float_operand, _on_host, _operand, _overlap
from ._reference_overlap import activation, combine, terms
from ._validate import is_device_array


def run(loss, x, target, reduction, sample_weight, backend, params, want_value, want_grad, grad_out):
    """``OverlapLoss._run_overlap`` for a device input (params already checked)."""
    name = loss.name
    cu = _cuda_backend(backend, name)
    xd, dtype = _float_operand(cu, x, "input", loss.spec)
    shape = tuple(xd.shape)
    (N, C, S), labels, y, w = loss._check(shape, dtype, _on_host(cu, target, "target", name), params, reduction,
                                          _on_host(cu, sample_weight, "sample_weight", name))
    g = None
    if want_grad:
        if grad_out is None:
            g = cu.empty(shape, dtype)
        else:
            if not is_device_array(grad_out):
                raise TypeError(f"{name}: grad_out must be a device array, got {type(grad_out).__name__}")
            g = _operand(cu, grad_out, "grad_out", name)
            if tuple(g.shape) != shape or np.dtype(g.dtype) != dtype:
                raise ValueError(f"{name}: grad_out must have shape {shape} and dtype {dtype}, got {tuple(g.shape)} "
                                 f"{g.dtype}")
            if cu.read_only(g):
                raise ValueError(f"{name}: grad_out is read-only")
            if xd.size and _overlap(cu, g, xd):
                raise ValueError(f"{name}: grad_out overlaps the input")
    ignore = params["ignore_index"]
    args = (activation(params), xd.reshape(xd.size), None if labels is None else cu.to_device(labels),
            None if y is None else cu.to_device(y), N, C, S, ignore is not None, 0 if ignore is None else ignore)
    sums = np.zeros(N * C * 3)
    cu.overlap_sums(*args, sums, 1)  # waits for the stream: the host combines the sums into the value and coef
    value, coef = combine(loss.name, sums.reshape(N, C, 3), params, reduction, w)
    if g is not None and g.size:
        cu.overlap_grad(*args, cu.to_device(np.ascontiguousarray(coef).reshape(-1)), g.reshape(g.size), 1)
    if reduction == "none":
        value = cu.to_device(terms(value, params, N, C, dtype))
    if not want_value:
        return g
    return (value, g) if want_grad else value
