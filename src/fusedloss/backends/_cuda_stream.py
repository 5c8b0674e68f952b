"""The stream of the Numba-CUDA backend: every launch, allocation and host copy of the backend goes on it (the
CTC kernel's included).

``on_stream`` puts them on one stream (a Numba stream or a foreign handle such as torch's ``cuda_stream``;
default: Numba's default stream), so a caller on a side stream needs no synchronisation around a call; ``to_host``
waits for that stream only. Kernels launch on ``_stream()`` and allocate with ``_alloc`` (``empty``); ``to_device``
copies on it. The simulator has no foreign streams: a stream of its own stands in for a handle (it runs every
launch to the end anyway).
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
from numba import cuda

from ._cuda_target import SIMULATOR

_STREAM: contextvars.ContextVar = contextvars.ContextVar("fusedloss_cuda_stream", default=None)
_EXTERNAL: dict[int, object] = {}  # foreign stream handle -> its Numba stream (a wrapper that owns nothing)


def _stream():
    """The stream of the calls made now: the one ``on_stream`` set, else 0 (Numba's default stream)."""
    s = _STREAM.get()
    return 0 if s is None else s


@contextlib.contextmanager
def on_stream(stream):
    """Inside, this backend's kernels, allocations and copies go on ``stream`` (a Numba stream, or the handle of a
    foreign one, such as torch's ``cuda_stream``; None: the default stream), in this context only (a
    ``contextvars`` variable: other threads keep theirs). Work on one stream runs in order, so a caller on a side
    stream needs no synchronisation around the call; a copy to the host waits for that stream only (``to_host``)."""
    token = _STREAM.set(external_stream(stream) if isinstance(stream, int) else stream)
    try:
        yield
    finally:
        _STREAM.reset(token)


def external_stream(handle: int):
    """The Numba stream for a foreign CUDA stream handle (cached: wrapping one costs about as much as a launch).
    The simulator has no foreign streams (its ``cuda.external_stream`` raises) and runs each launch to the end,
    in call order: a stream of its own stands in for any handle there."""
    s = _EXTERNAL.get(handle)
    if s is None:
        if len(_EXTERNAL) >= 64:  # streams come and go: do not keep every handle ever seen
            _EXTERNAL.clear()
        s = _EXTERNAL[handle] = cuda.stream() if SIMULATOR else cuda.external_stream(handle)
    return s


def _alloc(shape, dtype):
    return cuda.device_array(shape, dtype, stream=_stream())


def to_host(x) -> np.ndarray:
    """A host copy of the device array ``x``, once the work queued on the current stream is done: a copy on the
    default stream would not wait for a side stream created non-blocking (torch's are)."""
    s = _stream()
    host = x.copy_to_host(stream=s)
    if s != 0:  # a copy on a stream is asynchronous until the stream is synchronised
        s.synchronize()
    return host


def to_device(host: np.ndarray):
    return cuda.to_device(host, stream=_stream())


def empty(shape, dtype):
    return _alloc(shape, dtype)


def element(x, i: int):
    """``x[i]`` of a 1-D device array, on the host."""
    return to_host(x[i: i + 1])[0].item()
