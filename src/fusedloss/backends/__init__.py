"""Backend registry.

A backend is a module with one interface:

``NAME``, ``DEVICE`` (True if it works on device arrays), ``info() -> dict`` (version, threads, build flags),
``supports(spec, dtype) -> bool`` and the kernels, which write into preallocated outputs and never allocate
them:

``elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads[, cols]) -> float``
    ``loss`` is the registry name and ``params`` its scalar parameters, a tuple of floats of the loss's own
    length (``LossSpec.packed``; a kernel refuses another length). ``p`` and ``y``
    are 1-D C-contiguous arrays of one dtype (float32 or float64) and length n; ``w`` is None or the same
    kind of array. Each output is None or a 1-D C-contiguous array of that dtype and length n:
    ``value_out[i] = w[i] * l[i]``, ``grad_out[i] = scale * w[i] * g[i]``, ``hess_out[i] = scale * w[i] * h[i]``
    (``w[i] = 1`` when ``w`` is None). With ``reduce`` it returns ``sum_i w[i] * l[i]`` accumulated in
    float64 over fixed blocks combined in a fixed order (bit-identical for any thread count), else 0.0.
    Inputs are never written, except that an output may be exactly one of the inputs (in place).
    ``cols`` (passed only when the loss's vector parameter is an array, e.g. ``pos_weight`` per column):
    a 1-D array of the same dtype whose length C divides n; element i then takes ``cols[i % C]`` in that
    parameter's slot of ``params``.

``multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
nthreads) -> float``
    Rows of C classes (class axis last, leading axes flattened to R = len(x) / C rows). ``packed`` is the
    tuple of floats from ``LossSpec.packed``; ``x`` the flat logits (R*C, dtype T); either ``labels``
    (int64, R; every label in [0, C) or equal to ``ignore_index``, checked by the dispatcher and again by
    compiled code before it indexes) with ``q`` None, or ``q`` (soft targets, R*C, T) with ``labels``
    None; ``w`` None or row weights (R, T); ``cw`` None or the per-class vector (C, T: class_weight or
    alpha). Outputs: ``value_out`` (R) receives ``w_r * value_r``; ``grad_out`` / ``hess_out`` (R*C) receive
    ``scale * w_r * dvalue_r/dx`` and the Hessian diagonal likewise; ignored rows get zeros everywhere.
    ``grad_out`` may be ``x`` itself (each element is read before it is written). Returns the float64
    sum of ``w_r * value_r`` over fixed blocks of rows when ``reduce``. The row math is
    ``_pointwise.<loss>_row`` (one shared signature for every multiclass loss).

Backends are imported lazily, on first use: ``numba`` costs a fraction of a second to import, and a
backend that fails to import (no compiler output, no numba, no CUDA) records why and is skipped by "auto".
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field

# One lock for every backend's first import: a backend's import may import another module of the package,
# and the lock is re-entrant so that this never deadlocks.
_LOAD_LOCK = threading.RLock()


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here (the message says why)."""


@dataclass
class BackendEntry:
    name: str
    module: str
    priority: int  # "auto" tries host backends from the highest priority down
    device: bool = False
    compiled: bool = True  # False for the NumPy reference, which the compiled backends are checked against
    _loaded: object = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)
    _tried: bool = field(default=False, repr=False)

    def load(self):
        """The backend module, or None if it cannot be imported (``self.error`` then says why).

        Thread-safe: the first calls may come from several threads at once; one imports, the others wait
        for its outcome (``_tried`` is set only after the result is stored, so nobody reads a half-made
        entry)."""
        if not self._tried:
            with _LOAD_LOCK:
                if not self._tried:
                    try:
                        self._loaded = importlib.import_module(self.module)
                    except Exception as exc:  # ImportError, or a broken install raising something else
                        self._error = exc
                    self._tried = True
        return self._loaded

    @property
    def error(self) -> BaseException | None:
        self.load()
        return self._error

    def require(self):
        module = self.load()
        if module is None:
            raise BackendUnavailable(
                f"backend {self.name!r} is not available: {type(self._error).__name__}: {self._error}"
            ) from self._error
        return module


class _Table(dict):
    """The backend table. Any change bumps ``generation``, which invalidates cached backend choices
    (the dispatcher resolves a backend once per loss and dtype, then reuses it while this is unchanged)."""

    generation = 0

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.generation += 1

    def __delitem__(self, key):
        super().__delitem__(key)
        self.generation += 1


REGISTRY: _Table = _Table({
    entry.name: entry
    for entry in (
        BackendEntry("cpp", "fusedloss.backends.cpp", priority=30),
        BackendEntry("numba", "fusedloss.backends.numba_cpu", priority=20),
        BackendEntry("numpy", "fusedloss.backends.numpy_ref", priority=0, compiled=False),
        BackendEntry("cuda", "fusedloss.backends.numba_cuda", priority=10, device=True),
    )
})

def host_order() -> tuple[str, ...]:
    """Host backends in the order "auto" tries them."""
    return tuple(e.name for e in sorted(REGISTRY.values(), key=lambda e: -e.priority) if not e.device)


def backends() -> list[dict]:
    """Every backend: available or not (and why), with its own info (version, threads, build flags)."""
    rows = []
    for entry in sorted(REGISTRY.values(), key=lambda e: -e.priority):
        module = entry.load()
        row = {"name": entry.name, "available": module is not None, "priority": entry.priority,
               "device": entry.device}
        if module is None:
            row["reason"] = f"{type(entry.error).__name__}: {entry.error}"
        else:
            try:
                row.update(module.info())
            except Exception as exc:  # info must never break the table
                row["available"] = False
                row["reason"] = f"info() failed: {type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


class CompiledBackendMissingWarning(RuntimeWarning):
    """"auto" runs on a slower backend because the compiled extension (backend "cpp") did not import."""


_fallback_warned: list = []  # non-empty once the warning below was given (once per process)


def warn_if_compiled_missing(chosen: str) -> None:
    """Warn once per process when "auto" settles on ``chosen`` because backend "cpp" failed to import.

    Called by the dispatcher for "auto" only: a backend chosen by name (the call's ``backend=``,
    ``use_backend``, ``set_backend``, ``FUSEDLOSS_BACKEND``) never warns.
    """
    entry = REGISTRY.get("cpp")
    if _fallback_warned or chosen == "cpp" or entry is None or entry.error is None:
        return
    _fallback_warned.append(chosen)
    err = entry.error
    warnings.warn(
        f"fusedloss: the compiled extension (backend 'cpp') is not available ({type(err).__name__}: {err}), "
        f"so backend 'auto' runs on {chosen!r}, which is slower on most losses. The extension is built when "
        "fusedloss is installed from source with CMake (>= 3.18) and a C++17 compiler on the PATH: from a "
        "checkout `pip install --force-reinstall --no-deps .`, from an index `pip install --force-reinstall "
        "--no-deps --no-binary fusedloss fusedloss`. `fusedloss info` shows each backend and why it is "
        f"unavailable; choosing a backend by name (backend={chosen!r}, fusedloss.set_backend, "
        "FUSEDLOSS_BACKEND) silences this warning.",
        CompiledBackendMissingWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning given by our caller at the first frame outside fusedloss."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1  # the function calling warnings.warn is level 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level
