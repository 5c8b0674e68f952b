"""What is timed on a case: a ``Contestant`` (our backend or a peer) and our backends as contestants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._spec import REGISTRY
from .cases import Case


@dataclass
class Contestant:
    """Something timed on a case. ``run()`` is the timed call; ``result(raw)`` maps what it returned to
    fusedloss's convention: (value of the mean-reduced loss, gradient of that value w.r.t. pred)."""

    name: str  # our backend's name, or "peer:<name>"
    role: str  # "backend" | "peer"
    run: Callable[[], Any]
    result: Callable[[Any], tuple]
    note: str = ""
    cleanup: Callable[[], None] | None = None
    compiles: bool = False  # the first call compiles (JIT) or initialises, so it says nothing about speed


class Unavailable(Exception):
    """A contestant cannot run this case (not installed, no such loss, unsupported dtype)."""


def host_backends() -> list[dict]:
    """The host backends from ``fusedloss.backends()``, available or not (with the reason)."""
    from ..backends import backends

    return [row for row in backends() if not row["device"]]


def backend_contestant(name: str, case: Case, pred, target) -> Contestant:
    """``value_and_grad`` through the public API on backend ``name``, with ``grad_out`` reused."""
    from .._losses import LOSSES
    from ..backends import REGISTRY as BACKENDS

    entry = BACKENDS.get(name)
    if entry is None:
        raise Unavailable(f"unknown backend {name!r}")
    module = entry.load()
    if module is None:
        raise Unavailable(f"backend {name!r} not available: {type(entry.error).__name__}: {entry.error}")
    if entry.device:
        raise Unavailable(f"backend {name!r} works on device arrays; the host benchmark does not time it yet")
    if not module.supports(REGISTRY[case.loss], np.dtype(case.dtype)):
        raise Unavailable(f"backend {name!r} does not support {case.loss} for {case.dtype}")
    vg = LOSSES[case.loss].value_and_grad
    params = dict(case.defn.params)
    g = np.empty_like(pred)

    def run():
        return vg(pred, target, grad_out=g, backend=name, **params)

    return Contestant(name, "backend", run, lambda r: (float(r[0]), r[1]), compiles=name in ("numba", "cuda"))
