"""The float64 reference result of a case (``fusedloss._reference``) and the check of a contestant's result
against it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _reference
from .cases import Case, make_data


@dataclass
class Reference:
    """The float64 reference result of a case: the value, the gradient (of all rows, or of ``rows`` only),
    and the scales errors are measured in."""

    value: float
    grad: np.ndarray
    value_scale: float
    grad_scale: float
    rows: np.ndarray | None = None  # indices along axis 0 that ``grad`` holds (None: all)


# the backend that runs the float64 reference itself (fusedloss.backends.numpy_ref): timed like the others,
# but left out where it would need GBs or take minutes
REFERENCE_BACKEND = "numpy"
REFERENCE_FULL_MAX = 1 << 24  # elements; a bigger case gets the chunked reference (and no numpy backend)
REFERENCE_CHUNK = 1 << 22  # elements per chunk of the chunked reference (32 MiB per float64 copy)


def reference(case: Case, pred, target) -> Reference:
    """The float64 oracle (``_reference.reduce_<kind>``) for ``reduction="mean"``.

    The reference of a big case would hold several float64 copies of the data (GBs for 8192 x 32000): above
    ``REFERENCE_FULL_MAX`` elements it is computed in chunks of rows (elements, for elementwise losses)
    instead, keeping the value and the gradient of a few rows (the first, middle and last 64, or 4096
    elements), which is where a wrong partition or tail would show. The chunks use ``reduction="sum"`` and
    divide by the number of rows, which is what "mean" divides by for the benchmark's data (no class or
    sample weights, no ignored labels).
    """
    fn = getattr(_reference, f"reduce_{case.defn.kind}", None)
    if fn is None:
        raise LookupError(f"fusedloss._reference has no reduce_{case.defn.kind} for {case.loss}")
    params = case.params
    rows = None
    if case.n > REFERENCE_FULL_MAX:
        R = pred.shape[0]
        step = max(1, REFERENCE_CHUNK // max(1, case.n // R))
        total = 0.0
        for lo in range(0, R, step):
            v, _, _ = fn(case.loss, pred[lo:lo + step], target[lo:lo + step], reduction="sum", **params)
            total += float(v)
        k = 64 if pred.ndim > 1 else 4096
        rows = np.unique(np.concatenate([np.arange(0, k), np.arange(R // 2, R // 2 + k), np.arange(R - k, R)])
                         .clip(0, R - 1))
        _, grad, _ = fn(case.loss, pred[rows], target[rows], reduction="sum", **params)
        value, grad = total / R, np.asarray(grad, dtype=np.float64) / R
    else:
        value, grad, _ = fn(case.loss, pred, target, **params)
    grad = np.asarray(grad, dtype=np.float64)
    gmax = float(np.max(np.abs(grad))) if grad.size else 0.0
    return Reference(float(value), grad, max(abs(float(value)), 1e-30), gmax if gmax > 0 else 1.0, rows)


# These checks catch wrong conventions and broken kernels (a factor of 2, a missing 1/N, a wrong branch),
# not the last bits: tests/ hold the accuracy budget. float32 allows for peers that sum in float32.
CHECK_TOLERANCE = {"float32": {"value": 1e-3, "grad": 1e-4}, "float64": {"value": 1e-8, "grad": 1e-8}}


def check_result(case: Case, value, grad, ref: Reference) -> tuple[bool, str, float, float]:
    """(ok, text, value error, gradient error) of a result in fusedloss's convention against the reference."""
    tol = CHECK_TOLERANCE[case.dtype]
    grad = np.asarray(grad)
    if ref.rows is not None and grad.ndim and grad.shape[1:] == ref.grad.shape[1:]:
        grad = grad[ref.rows]
    if grad.shape != ref.grad.shape:
        return False, f"FAIL: grad shape {grad.shape}, expected {ref.grad.shape}", math.nan, math.nan
    verr = abs(float(value) - ref.value) / ref.value_scale
    with np.errstate(all="ignore"):
        gerr = float(np.max(np.abs(grad.astype(np.float64) - ref.grad))) / ref.grad_scale if grad.size else 0.0
    problems = []
    if not verr <= tol["value"]:
        problems.append(f"value rel err {verr:.1e}")
    if not gerr <= tol["grad"]:
        problems.append(f"grad err {gerr:.1e}")
    if problems:
        return False, "FAIL: " + ", ".join(problems), verr, gerr
    return True, "ok", verr, gerr


_data_cache: dict = {}


def case_data(case: Case):
    """(pred, target, Reference) of a case, keeping the two most recent (the suites run case-major)."""
    key = (case.loss, case.dtype, case.shape)
    if key not in _data_cache:
        while len(_data_cache) >= 2:
            _data_cache.pop(next(iter(_data_cache)))
        pred, target = make_data(case)
        _data_cache[key] = (pred, target, reference(case, pred, target))
    return _data_cache[key]
