"""The device-array path of ``fusedloss.ctc``: scores (logits or log-probabilities) on the GPU.

Taken when ``logits`` is a device array (a Numba device array, or any object with
``__cuda_array_interface__``: CuPy, torch CUDA tensors, viewed without a copy); only backend "cuda" runs it
(a host backend named by the call or the configuration is an error, as for the other losses). The scores
must be C-contiguous float32/float64 of the host path's shapes. Targets, lengths and sample weights may be
host or device arrays; they are small (O(N S)), so device ones are copied to the host and every check of
the host path runs on them there (``SequenceLoss._check_sequences``: the same rules and messages), before
the kernel runs. The checked labels, offsets and lengths go to the device once per call. Every copy, allocation
and launch goes on the backend's current stream (``numba_cuda.on_stream``), and reading back waits for that stream
(``to_host``).

Results: the gradient is a device array (a new one, or the caller's ``grad_out``, a C-contiguous device
array of the scores' shape and dtype that does not overlap them); a reduced value is a Python float, the
per-sequence losses are added on the host with ``math.fsum`` exactly as on the host path (the host's one wait
for the kernel); with ``reduction="none"`` the losses, weighted on the device, come back as a device array in the
scores' dtype, with no wait.
"""

from __future__ import annotations

import math

import numpy as np

from ._device import _cuda_backend, _float_operand, _operand, _overlap
from ._validate import is_device_array


def _host(cu, v):
    """A small argument on the host: device arrays are copied, anything else is returned as given."""
    if v is None or not is_device_array(v):
        return v
    return cu.to_host(_operand(cu, v, "an integer or weight argument", "ctc"))


def run(loss, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend, params,
        want_value, want_grad, grad_out):
    """``SequenceLoss._run_ctc`` for device scores (arguments as there; params already checked)."""
    cu = _cuda_backend(backend, "ctc")
    x, dtype = _float_operand(cu, logits, "logits", loss.spec)
    shape = tuple(x.shape)
    T, N, C, labels, offsets, tl, il, w = loss._check_sequences(
        shape, _host(cu, targets), _host(cu, input_lengths), _host(cu, target_lengths), reduction,
        _host(cu, sample_weight), params)
    n = math.prod(shape)
    g_ret = g = None
    if want_grad:
        if grad_out is None:
            g_ret = cu.empty(shape, dtype)
            g = g_ret.reshape(n)
        else:
            if not is_device_array(grad_out):
                raise TypeError(f"ctc: grad_out must be a device array like logits, got {type(grad_out).__name__}")
            arr = _operand(cu, grad_out, "grad_out", "ctc")
            if tuple(arr.shape) != shape:
                raise ValueError(f"ctc: grad_out must have logits' shape {shape}, got {tuple(arr.shape)}")
            if arr.dtype != dtype:
                raise TypeError(f"ctc: grad_out must have logits' dtype {dtype}, got {arr.dtype}")
            if cu.read_only(arr):
                raise ValueError("ctc: grad_out is read-only")
            g = arr.reshape(n)
            if n and _overlap(cu, g, x.reshape(n)):
                raise ValueError("ctc: grad_out must not overlap logits (the kernel reads them after writing)")
            g_ret = grad_out
    coef = loss._coefficients(reduction, w, tl, N)
    losses = cu.empty(N, np.float64)
    if labels.size == 0:  # a zero-size device array still needs an element to be passed around
        labels = np.zeros(1, np.int64)
    loss.last_scratch_bytes = cu.ctc(
        x.reshape(n), T, N, C, params["batch_first"], params["inputs"] == "log_probs", cu.to_device(labels),
        cu.to_device(offsets), cu.to_device(tl), cu.to_device(il), params["blank"], params["zero_infinity"],
        cu.to_device(coef) if want_grad else None, losses, g, 1, int(tl.max()) if N else 0)
    if not want_value:
        return g_ret
    if reduction == "none":  # weighted and rounded on the device: nothing to wait for
        value = cu.weighted(losses, w, dtype)
    else:  # a Python float, summed exactly on the host: the one wait for the losses
        with np.errstate(invalid="ignore"):
            host = cu.to_host(losses) if N else np.zeros(0)
            value = math.fsum(coef * host) if N else (math.nan if reduction == "mean" else 0.0)
    return (value, g_ret) if want_grad else value
