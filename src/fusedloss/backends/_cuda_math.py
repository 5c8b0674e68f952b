"""Device math of the CUDA kernels beyond ``_pointwise``: what needs a GPU form of its own.

``exp_diff_as`` replaces ``_pointwise.exp_diff_as`` in the namespaces the CUDA backends compile (the loss kernels
in ``numba_cuda``, the CTC kernel in ``numba_cuda_ctc``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda


def exp_diff_as(a, b, scale, like):
    """``_pointwise.exp_diff_as`` on the GPU: exp((a - b) scale) in float32 arithmetic (a, b and scale rounded to
    float32, libdevice's expf) when ``like`` is a float32, else in float64; a float64 either way. The
    cross_entropy kernels take the exponentials of float32 logits so, as the CPU backends do (float64 ``exp``
    runs at a fraction of float32's rate on most GPUs). This body is the simulator's (and the CPU's, if called
    there); the GPU compiles the overload below."""
    if isinstance(like, np.float32):
        with np.errstate(all="ignore"):  # inf - inf and the like: nan, as on the GPU, without a warning
            return float(np.exp((np.float32(a) - np.float32(b)) * np.float32(scale)))
    return math.exp((a - b) * scale)


if not cuda.config.ENABLE_CUDASIM:
    from numba.cuda.extending import overload  # noqa: E402

    @overload(exp_diff_as, target="cuda")
    def _exp_diff_as_cuda(a, b, scale, like):
        if like == numba.types.float32:
            def single(a, b, scale, like):
                d = (numba.float32(a) - numba.float32(b)) * numba.float32(scale)
                return numba.float64(math.exp(d))
            return single

        def double(a, b, scale, like):
            return math.exp((a - b) * scale)
        return double
