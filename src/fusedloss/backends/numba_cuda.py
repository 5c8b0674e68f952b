"""The Numba-CUDA backend: the point and row functions of ``_pointwise.py`` compiled as CUDA device functions.

Importable only where it can run: ``numba-cuda`` installed and either a CUDA GPU present or the simulator
enabled (``NUMBA_ENABLE_CUDASIM=1``, how CI runs these kernels). Otherwise importing raises ImportError
saying which, and the backend registry reports that reason (``_cuda_target``, which this module imports first
and its parts import too, so that none of them imports where the kernels cannot run).

This module is the backend's interface (the table in ``backends/__init__.py`` loads it): ``supports``, ``info``,
``forget``, the kernels that write into preallocated outputs and the device helpers of ``fusedloss._device``;
the generic elementwise kernel and the build of the kernels' copies are here, the rest is imported from its
module, one concern each:

- ``_cuda_target.py``: whether CUDA (or its simulator) can run here (``target_error``, ``SIMULATOR``);
- ``_cuda_stream.py``: the stream that every launch, allocation and host copy goes on (``on_stream``,
  ``to_host``, ``to_device``, ``empty``);
- ``_cuda_reduce.py``: the grid (``TPB``, ``_blocks``), the block sums, the partials' sum on the host or on the
  device (``_reduced``, ``DeviceTotal``, ``_final_sum_kernel``), and ``device_sum``, ``kept_sum``;
- ``_cuda_rows.py``: the multiclass kernels, one thread per row (``_row_kernel``) and cross_entropy's team of
  threads per row (``_ce_block_kernel``) with its launch rules (``_row_launch``; its knobs ``ROW_ELEMS``,
  ``MAX_ROW_THREADS``, ``MAX_ROW_BLOCKS`` live there only: set them there);
- ``_cuda_helpers.py``: the checks of domains and labels (``first_outside``, ``first_not_sign``,
  ``first_bad_label``) and ``cast``, ``weighted``, ``expand``, ``unit_hessian``;
- ``numba_cuda_ctc.py``, ``_cuda_pairwise.py``, ``_cuda_overlap.py``: the sequence, pairwise and overlap losses,
  each with its own contract (``fusedloss._ctc``, ``._pairwise``, ``._overlap``);
- ``_cuda_binary_metrics.py``: the sums of the binary metrics (``fusedloss._binary_metrics``) of a loss on one
  binary score (``binary_metrics``).

Same interface as the host backends, but every array is a device array (Numba's, or the simulator's).
``_kernel`` (elementwise) and ``_row_kernel`` (multiclass, one thread per row) are the generic kernels:
grid-stride loops, each thread summing its ``w * l`` in float64, then a tree sum over the block in shared
memory, one float64 partial per block. The grid depends only on the size (``_blocks``), so the partials, and
the reduced value, are reproducible. The partials are added (``_reduced``) either on the host with ``math.fsum``
(the public API's Python floats) or, with a ``DeviceTotal`` given as ``total=`` (what ``fusedloss.torch`` asks
for), on the device in a fixed order (``_cuda_reduce`` says how).

Streams: ``on_stream`` puts every launch, allocation and host copy of the backend on one stream (a Numba stream
or a foreign handle such as torch's ``cuda_stream``; default: Numba's default stream), so a caller on a side
stream needs no synchronisation around a call; ``to_host`` waits for that stream only. The CTC kernel
(``numba_cuda_ctc``) follows it too.

cross_entropy has a kernel designed for the GPU instead (``_cuda_rows``: its design): a team of threads per row,
one read of the row into an online logsumexp, a tree over the row's lanes in a fixed order, a second pass for the
gradient.

Which outputs exist is decided at compile time, as in the CPU backend, but not with ``None`` arguments:
Numba-CUDA cannot pass ``None`` to a kernel. Each combination gets its own copy of the kernel
(``_jit.specialise``) whose globals ``HAS_WEIGHT``, ``WRITE_VALUE``, ``WRITE_GRAD``, ``WRITE_HESS``,
``REDUCE`` and ``HAS_COLS`` are constants, so the branches on them are compiled away; a missing array is
passed as ``p`` (or ``x``), which then is never touched. The row functions take their optional arrays
with runtime flags instead (their convention). Copies are built on first use and cached on disk, named
after a hash of the files their source comes from (``_build``): this module, ``_cuda_rows``, ``_cuda_reduce``
(whose block sums they call) and ``_cuda_math``.
"""

from __future__ import annotations

import threading

import numpy as np

# first: raises ImportError where the kernels cannot run, before anything imports numba.cuda
from ._cuda_target import SIMULATOR, target_error, tuple_setitem  # noqa: F401

from numba import cuda  # noqa: E402

from . import _cuda_math, _cuda_reduce, _cuda_rows, _jit  # noqa: E402
# the backend's parts (module docstring), imported as its interface and as the elementwise kernel's globals
from ._cuda_math import exp_diff_as  # noqa: E402,F401
from ._cuda_stream import (_alloc, _stream, element, empty, external_stream, on_stream,  # noqa: E402,F401
                           to_device, to_host)
from ._cuda_reduce import (FINAL_THREADS, MAX_BLOCKS, TPB, DeviceTotal, _blocks, _reduced,  # noqa: E402,F401
                           _store_block_sum, device_sum, kept_sum)
from ._cuda_rows import BLOCK_MATH, BLOCK_ROWS, _ce_block_kernel, _row_kernel, _row_launch  # noqa: E402
from ._cuda_helpers import (cast, expand, first_bad_label, first_not_sign, first_outside,  # noqa: E402,F401
                            unit_hessian, weighted)
from .numba_cuda_ctc import ctc  # noqa: E402,F401
from ._cuda_pairwise import pairwise  # noqa: E402,F401
from ._cuda_overlap import overlap_grad, overlap_sums  # noqa: E402,F401
from ._cuda_binary_metrics import binary_metrics  # noqa: E402,F401
from .. import _pairwise_rows  # noqa: E402
from .._spec import REGISTRY  # noqa: E402

NAME = "cuda"
DEVICE = True

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- the elementwise kernel and the build of the kernels' copies ----------------------------------------------


def _kernel(p, y, w, params, scale, value_out, grad_out, hess_out, partial, cols):
    """The generic elementwise kernel; ``point`` and the flags are bound per copy (module docstring).

    ``params``: the loss's tuple of scalar parameters. With ``HAS_COLS``, ``cols[i % cols.size]`` replaces
    ``params[VEC_SLOT]``.
    """
    s = 0.0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        prm = params
        if HAS_COLS:  # noqa: F821
            prm = tuple_setitem(params, VEC_SLOT, float(cols[i % cols.shape[0]]))  # noqa: F821
        l, g, h = point(float(p[i]), float(y[i]), prm)  # noqa: F821
        if HAS_WEIGHT:  # noqa: F821
            wi = float(w[i])
            l = l * wi
            g = g * wi
            h = h * wi
        if WRITE_VALUE:  # noqa: F821
            value_out[i] = l
        if WRITE_GRAD:  # noqa: F821
            grad_out[i] = g * scale
        if WRITE_HESS:  # noqa: F821
            hess_out[i] = h * scale
        if REDUCE:  # noqa: F821
            s += l
    if REDUCE:  # noqa: F821
        _store_block_sum(s, partial)


_state: dict = {}  # "ns": compiled point functions, "hash": source hash (built on first use)
_STATE_LOCK = threading.Lock()  # guards the one-time build of _state
_KERNELS: dict[tuple, object] = {}  # (loss, *flags) -> kernel
_SUPPORTED = {**{name: "elementwise" for name in _jit.point_names()},
              **{name: "multiclass" for name in _jit.row_names()}, "ctc": "sequence",
              **{name: "pairwise" for name in _pairwise_rows.row_names()},
              **{name: "overlap" for name, spec in REGISTRY.items() if spec.kind == "overlap"}}
_FLAGS = {
    "elementwise": ("HAS_WEIGHT", "WRITE_VALUE", "WRITE_GRAD", "WRITE_HESS", "REDUCE", "HAS_COLS"),
    "multiclass": ("HAS_WEIGHT", "WRITE_VALUE", "REDUCE"),
    "block": ("HAS_WEIGHT", "WRITE_VALUE", "REDUCE", "SOFT", "HAS_CW", "WANT_G", "WANT_H", "OPTIONS", "METRICS",
              "ENTROPY"),
}
# the files whose source a copy built by _build compiles (with _pointwise and _jit: _jit.source_hash adds them)
_SOURCES = (__file__, _cuda_rows.__file__, _cuda_reduce.__file__, _cuda_math.__file__)


def _build(key: tuple):
    loss, *flags = key
    if "hash" not in _state:  # first use; several threads may get here at once
        with _STATE_LOCK:
            if "hash" not in _state:
                _state["ns"] = _jit.compile_namespace(cuda.jit(device=True), {"exp_diff_as": exp_diff_as})
                # last: its presence means "ns" is there
                _state["hash"] = _jit.source_hash(*_SOURCES)
    custom = _jit.custom_point(loss, _state["ns"], cuda.jit(device=True))
    kind = "elementwise" if custom is not None else ("block" if loss in BLOCK_ROWS else _SUPPORTED[loss])
    template = {"elementwise": _kernel, "block": _ce_block_kernel}.get(kind, _row_kernel)
    namespace = dict(template.__globals__)  # its module's: the helpers and constants it calls
    namespace.update(zip(_FLAGS[kind], flags))
    cache_name = _state["hash"]  # names the on-disk cache entry (the source) of this copy
    if custom is not None:  # a custom loss: its formula's key names the cache entry
        namespace["point"], formula_key = custom
        namespace["VEC_SLOT"] = 0
        cache_name = f"{cache_name}__{formula_key}"
    elif kind == "elementwise":
        namespace["point"] = _state["ns"][f"{loss}_point"]
        namespace["VEC_SLOT"] = _jit.vector_slot(loss)
    elif kind == "block":
        namespace.update({k: _state["ns"][k] for k in BLOCK_MATH})
    else:
        namespace["row"] = _state["ns"][f"{loss}_row"]
    bits = "".join("1" if f else "0" for f in flags)
    kernel = cuda.jit(cache=True)(_jit.specialise(template, namespace, f"{kind}__{loss}__{bits}__{cache_name}"))
    _KERNELS[key] = kernel
    return kernel


# --- the backend interface -----------------------------------------------------------------------------


def info() -> dict:
    import numba_cuda

    row = {"version": getattr(numba_cuda, "__version__", "?"), "threads": None, "simulator": SIMULATOR}
    if SIMULATOR:
        row["build"] = "CUDA simulator (NUMBA_ENABLE_CUDASIM=1): Python speed, for tests only"
    else:
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        row["device"] = name
        row["compute_capability"] = ".".join(map(str, device.compute_capability))
        row["build"] = f"cuda.jit(cache=True), {TPB} threads per block, at most {MAX_BLOCKS} blocks"
    return row


def supports(spec, dtype) -> bool:
    return (_SUPPORTED.get(spec.name) == spec.kind or spec.name in _jit.CUSTOM) and np.dtype(dtype) in _DTYPES


def forget(loss: str) -> None:
    """Drop the kernels of ``loss`` (a custom loss defined again or removed)."""
    for key in [k for k in _KERNELS if k[0] == loss]:
        del _KERNELS[key]


def elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads, cols=None, *,
                total=None):
    """The elementwise kernel contract on device arrays (``cols`` too); ``nthreads`` is ignored. With ``reduce``
    and a ``DeviceTotal`` ``total``, the reduced value stays on the device: ``total.out`` is returned."""
    n = p.shape[0]
    if n == 0:
        return _empty_total(total)
    key = (loss, w is not None, value_out is not None, grad_out is not None, hess_out is not None,
           bool(reduce), cols is not None)
    kernel = _KERNELS.get(key) or _build(key)
    blocks = _blocks(n)
    partial = _alloc(blocks, np.float64) if reduce else p
    kernel[blocks, TPB, _stream()](
        p, y, p if w is None else w, tuple(map(float, params)) or (0.0,), float(scale),  # (0.0,): no empty tuple
        p if value_out is None else value_out,
        p if grad_out is None else grad_out,
        p if hess_out is None else hess_out,
        partial,
        p if cols is None else cols,
    )
    return _reduced(partial, total) if reduce else 0.0


def multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
               nthreads, *, total=None):
    """The multiclass kernel contract on device arrays; ``nthreads`` is ignored; ``total`` as ``elementwise``."""
    R = x.shape[0] // C
    if R == 0:
        return _empty_total(total)
    if loss in BLOCK_ROWS:
        return _block(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out,
                      hess_out, total)
    key = (loss, w is not None, value_out is not None, bool(reduce))
    params = tuple(map(float, packed))
    kernel = _KERNELS.get(key) or _build(key)
    blocks = _blocks(R)
    partial = _alloc(blocks, np.float64) if reduce else x
    kernel[blocks, TPB, _stream()](
        x, _alloc(1, np.int64) if labels is None else labels, x if q is None else q,
        x if w is None else w, x if cw is None else cw, cw is not None, labels is None, C, ignore_index,
        params, float(scale), x if value_out is None else value_out,
        x if grad_out is None else grad_out, x if hess_out is None else hess_out,
        grad_out is not None, hess_out is not None, partial,
    )
    return _reduced(partial, total) if reduce else 0.0


def multiclass_metrics(loss, packed, ignore_index, C, x, labels, w, cw, scale, reduce, value_out, grad_out, rank,
                       conf, nll, entropy, nthreads, *, total=None):
    """The host backends' ``multiclass_metrics`` contract (``_logit_metrics.run``) on device arrays: the loss of
    ``multiclass`` (hard labels, no Hessian) and the per-row ``rank`` (int64, or None when not asked for),
    ``conf``, ``nll`` and ``entropy`` (float64, or None) from the same passes of cross_entropy's block kernel."""
    if loss not in BLOCK_ROWS:
        raise ValueError(f"{loss}: the cuda backend computes metrics in cross_entropy's pass only")
    if x.shape[0] // C == 0:
        return _empty_total(total)
    if rank is None:  # the kernel writes every row's rank with its metrics
        rank = _alloc(x.shape[0] // C, np.int64)
    return _block(loss, packed, ignore_index, C, x, labels, None, w, cw, scale, reduce, value_out, grad_out, None,
                  total, (rank, conf, nll, entropy))


def _block(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out, total,
           metrics=None):
    """One launch of cross_entropy's block kernel (``_cuda_rows``) on the copy for its flags."""
    params = tuple(map(float, packed))
    rank, conf, nll, entropy = metrics if metrics is not None else (None, None, None, None)
    key = (loss, w is not None, value_out is not None, bool(reduce), labels is None, cw is not None,
           grad_out is not None, hess_out is not None, any(params), metrics is not None, entropy is not None)
    kernel = _KERNELS.get(key) or _build(key)
    blocks, threads, width = _row_launch(x.shape[0] // C, C)
    partial = _alloc(blocks, np.float64) if reduce else x
    no_ints = _alloc(1, np.int64) if rank is None or labels is None else None  # for an array not used
    kernel[blocks, threads, _stream()](
        x, no_ints if labels is None else labels, x if q is None else q,
        x if w is None else w, x if cw is None else cw, C, width, ignore_index,
        *params, float(scale), x if value_out is None else value_out,
        x if grad_out is None else grad_out, x if hess_out is None else hess_out, partial,
        no_ints if rank is None else rank, x if conf is None else conf, x if nll is None else nll,
        x if entropy is None else entropy,
    )
    return _reduced(partial, total) if reduce else 0.0


def _empty_total(total: DeviceTotal | None):
    """The reduced value of nothing: 0.0, or ``total`` written on the device (the sum 0, a mean nan)."""
    if total is None:
        return 0.0
    return _reduced(_alloc(0, np.float64), total)


# --- device arrays, for fusedloss._device (its other helpers: _cuda_stream, _cuda_reduce, _cuda_helpers) --------


def is_numba_array(x) -> bool:
    if SIMULATOR:
        return type(x).__name__ == "FakeCUDAArray"
    return cuda.cudadrv.devicearray.is_cuda_ndarray(x)


def as_device_array(x):
    """``x`` as a Numba device array: itself, or a zero-copy view of a CUDA-array-interface object."""
    if is_numba_array(x):
        return x
    if SIMULATOR:
        raise TypeError(f"the CUDA simulator only takes its own device arrays, got {type(x).__name__}")
    return cuda.as_cuda_array(x)


def is_c_contiguous(x) -> bool:
    return x.size <= 1 or x.is_c_contiguous()


def span(x) -> tuple[int, int]:
    """The byte range ``[start, end)`` that the device array ``x`` occupies (for overlap checks)."""
    if SIMULATOR:
        start = x._ary.__array_interface__["data"][0]
    else:
        start = x.__cuda_array_interface__["data"][0] or 0
    return start, start + x.size * x.dtype.itemsize


def read_only(x) -> bool:
    if SIMULATOR:
        return not x._ary.flags.writeable
    return bool(x.__cuda_array_interface__["data"][1])


