"""Backend registry.

A backend is a module with one interface:

``NAME``, ``DEVICE`` (True if it works on device arrays), ``info() -> dict`` (version, threads, build flags),
``supports(spec, dtype) -> bool`` and the kernels, which write into preallocated outputs and never allocate
them:

``elementwise(loss, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads) -> float``
    ``loss`` is the registry name and ``(a, b)`` its packed parameters (``LossSpec.pack``). ``p`` and ``y``
    are 1-D C-contiguous arrays of one dtype (float32 or float64) and length n; ``w`` is None or the same
    kind of array. Each output is None or a 1-D C-contiguous array of that dtype and length n:
    ``value_out[i] = w[i] * l[i]``, ``grad_out[i] = scale * w[i] * g[i]``, ``hess_out[i] = scale * w[i] * h[i]``
    (``w[i] = 1`` when ``w`` is None). With ``reduce`` it returns ``sum_i w[i] * l[i]`` accumulated in
    float64 over fixed blocks combined in a fixed order (bit-identical for any thread count), else 0.0.
    Inputs are never written.

Backends are imported lazily, on first use: ``numba`` costs a fraction of a second to import, and a
backend that fails to import (no compiler output, no numba, no CUDA) records why and is skipped by "auto".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here (the message says why)."""


@dataclass
class BackendEntry:
    name: str
    module: str
    priority: int  # "auto" tries host backends from the highest priority down
    device: bool = False
    _loaded: object = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)
    _tried: bool = field(default=False, repr=False)

    def load(self):
        """The backend module, or None if it cannot be imported (``self.error`` then says why)."""
        if not self._tried:
            self._tried = True
            try:
                self._loaded = importlib.import_module(self.module)
            except Exception as exc:  # ImportError, or a broken install raising something else
                self._error = exc
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


REGISTRY: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("cpp", "fusedloss.backends.cpp", priority=30),
        BackendEntry("numba", "fusedloss.backends.numba_cpu", priority=20),
        BackendEntry("numpy", "fusedloss.backends.numpy_ref", priority=0),
        BackendEntry("cuda", "fusedloss.backends.numba_cuda", priority=10, device=True),
    )
}

HOST_ORDER = tuple(e.name for e in sorted(REGISTRY.values(), key=lambda e: -e.priority) if not e.device)


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
