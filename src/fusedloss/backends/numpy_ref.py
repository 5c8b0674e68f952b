"""The NumPy backend: the reference itself, behind the backend interface. Always available."""

from __future__ import annotations

import numpy as np

from .. import _reference
from .._spec import REGISTRY

NAME = "numpy"
DEVICE = False


def info() -> dict:
    return {"version": np.__version__, "threads": 1, "build": "NumPy reference (float64 internally)"}


def supports(spec, dtype) -> bool:
    return spec.name in _reference.ELEMENTWISE


def elementwise(loss, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads):
    value, grad, hess = _reference.elementwise(loss, p, y, **REGISTRY[loss].unpack(a, b))
    with np.errstate(all="ignore"):
        if w is not None:
            w64 = w.astype(np.float64)
            value = value * w64
            grad = grad * w64
            hess = hess * w64
        if value_out is not None:
            value_out[...] = value
        if grad_out is not None:
            grad_out[...] = grad * scale
        if hess_out is not None:
            hess_out[...] = hess * scale
    return float(np.sum(value)) if reduce else 0.0
