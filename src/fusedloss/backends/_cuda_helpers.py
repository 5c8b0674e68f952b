"""The Numba-CUDA backend's small helpers of ``fusedloss._device`` (which calls them through ``numba_cuda``): the
checks of the inputs' domains and labels (``first_outside``, ``first_not_sign``, ``first_bad_label``: the first bad
index, by an atomic minimum), and the elementwise helpers ``cast``, ``weighted`` (per-row losses times their weights,
for ``reduction="none"``), ``expand`` (leading-axis weights broadcast over the classes) and ``unit_hessian``
(``hessian="ones"``). Each is a small grid-stride kernel, cached by Numba keyed on this file; the plain reductions
(``device_sum``, ``kept_sum``) are ``_cuda_reduce``'s.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ._cuda_reduce import TPB, _blocks
from ._cuda_stream import _alloc, _stream, to_device, to_host


def cast(x, dtype):
    """A new 1-D device array: ``x`` converted to ``dtype``."""
    out = _alloc(x.shape[0], dtype)
    if x.shape[0]:
        _copy_kernel[_blocks(x.shape[0]), TPB, _stream()](x, out)
    return out


def weighted(x, w, dtype):
    """A new 1-D device array: ``(x * w).astype(dtype)`` of the float64 device array ``x`` and the host weights
    ``w`` (None: ``x`` alone), the product in float64 and then one rounding to ``dtype``, as NumPy does it: the
    same bits, without reading ``x`` back."""
    out = _alloc(x.shape[0], dtype)
    if x.shape[0]:
        wd = x if w is None else to_device(np.ascontiguousarray(w, np.float64))
        _weighted_kernel[_blocks(x.shape[0]), TPB, _stream()](x, wd, w is not None, out)
    return out


def expand(src, inner: int, dtype):
    """A new 1-D device array of ``src.size * inner`` elements: each of ``src`` repeated ``inner`` times."""
    out = _alloc(src.shape[0] * inner, dtype)
    if out.shape[0]:
        _expand_kernel[_blocks(out.shape[0]), TPB, _stream()](src, out, inner)
    return out


def _first(kernel, n: int, *args) -> int:
    """Run a first-index kernel over ``n`` items; the index it found, or -1."""
    if n == 0:
        return -1
    first = to_device(np.array([n], dtype=np.int64))
    kernel[_blocks(n), TPB, _stream()](*args, first)
    i = int(to_host(first)[0])
    return -1 if i == n else i


def first_outside(x, lo: float, hi: float, nan_outside: bool = False) -> int:
    """The smallest index ``i`` with ``x[i] < lo`` or ``x[i] > hi``, or -1. nan is inside, unless ``nan_outside``
    (weights: finite and >= 0 is ``[0, max]`` with nan outside)."""
    return _first(_first_outside_kernel, x.shape[0], x, float(lo), float(hi), bool(nan_outside))


def first_not_sign(x) -> int:
    """The smallest index ``i`` with ``x[i]`` not -1, 0, 1 or nan, or -1."""
    return _first(_first_not_sign_kernel, x.shape[0], x)


def first_bad_label(labels, C: int, ignore: int | None) -> int:
    """The smallest index of a label outside ``[0, C)`` that is not ``ignore`` (if given), or -1."""
    return _first(_first_bad_label_kernel, labels.shape[0], labels, int(C), ignore is not None,
                  0 if ignore is None else int(ignore))


def unit_hessian(h, C: int, labels, ignore: int, rw, scale: float) -> None:
    """hessian="ones": ``h[i] = rw[i // C] * scale`` (1 for a missing ``rw``), 0 on rows labelled ``ignore``."""
    n = h.shape[0]
    if n == 0:
        return
    _unit_hessian_kernel[_blocks(n), TPB, _stream()](
        h, int(C), h if labels is None else labels, labels is not None, int(ignore),
        h if rw is None else rw, rw is not None, float(scale),
    )


@cuda.jit(cache=True)
def _first_outside_kernel(x, lo, hi, nan_outside, first):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        if v < lo or v > hi or (nan_outside and v != v):  # nan is neither below nor above
            cuda.atomic.min(first, 0, i)
            return  # this thread's later indices are larger


@cuda.jit(cache=True)
def _copy_kernel(src, dst):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit(cache=True)
def _weighted_kernel(x, w, has_w, dst):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        v = x[i]
        if has_w:
            v *= w[i]
        dst[i] = v


@cuda.jit(cache=True)
def _expand_kernel(src, dst, inner):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i // inner]


@cuda.jit(cache=True)
def _first_not_sign_kernel(x, first):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        if v != -1 and v != 0 and v != 1 and v == v:  # nan passes
            cuda.atomic.min(first, 0, i)
            return


@cuda.jit(cache=True)
def _first_bad_label_kernel(labels, C, has_ignore, ignore, first):
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        t = labels[i]
        if (t < 0 or t >= C) and not (has_ignore and t == ignore):
            cuda.atomic.min(first, 0, i)
            return


@cuda.jit(cache=True)
def _unit_hessian_kernel(h, C, labels, has_labels, ignore, rw, has_rw, scale):
    for i in range(cuda.grid(1), h.shape[0], cuda.gridsize(1)):
        r = i // C
        v = scale
        if has_rw:
            v = float(rw[r]) * scale
        if has_labels and labels[r] == ignore:
            v = 0.0
        h[i] = v
