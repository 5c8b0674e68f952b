"""``fusedloss.dask.<overlap loss>`` (``dice``, ``tversky``): an overlap loss over Dask arrays, block by block along
the sample and spatial axes.

>>> v = fld.dice(logits, labels)                                         # a lazy 0-d dask array
>>> v, g = fld.tversky.value_and_grad(logits, masks, mode="multilabel", alpha=0.3, beta=0.7)

The value is a ratio of sums, so blocks do not merge as ``LossState`` partials; the graph runs the in-memory
call's two passes (``OverlapLoss._first_pass`` / ``_second_pass``) on each block of the input:

- The input ``(N, C, *spatial)`` (binary: ``(N, ...)``) may be chunked along any axis but, in mode
  "multiclass", the class axis (the softmax and the one-hot target need every class of a pixel): a split class
  axis is rechunked to one chunk. The target is rechunked to the input's chunks (multiclass: those of the input
  without its class axis). ``sample_weight`` (``(N,)``, per_sample only) is small: it is taken as a NumPy array
  (a dask one is computed when the graph is built) and checked there.
- First pass: each block's sums I, P, Y per sample and class (float64), with its labels checked as in memory;
  the blocks of each sample and class are added exactly, in a tree of tasks that take at most ``SPLIT_EVERY``
  inputs each (their exact sums as integer multiples of 2^-1074, ``_Exact``), and rounded once (as ``math.fsum``
  rounds); one task makes the value and the gradient's coefficients with ``_reference_overlap.combine``, as the
  in-memory call does from its sums.
- Second pass: each gradient block from the combined coefficients of its samples and classes, so a gradient
  block differs from the in-memory one only through the last bits of the sums (the kernels add a block's pixels
  in their own order).
- "mean" and "sum" are a 0-d float64 dask array; "none" the weighted per-class terms ``(C,)`` (``(N, C)`` with
  per_sample) in one chunk.
- Errors that the shapes, dtypes, parameters and weights show are raised when the graph is built; labels out of
  range at compute time, naming the chunk and its starting index.
"""

from __future__ import annotations

import math
from itertools import product
from operator import getitem

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ._dask_graph import LazyLoss, _lift, _located, host_backend, on_host, to_arrays
from ._dispatch import resolve_host_backend
from ._losses import LOSSES
from ._reference_overlap import combine, terms
from ._validate import as_numeric


def _run_block(name, backend, params, where, x, t, coef=None):
    """One block's first pass (its sums I, P, Y per sample and class, (n, c, 3) float64), or with ``coef`` (its
    samples' and classes' coefficients, (n, c, 2)) its second pass (its gradient); its labels checked as in memory."""
    loss = LOSSES[name]
    try:
        x = np.ascontiguousarray(x)
        # class_weights apply in the combination only (and a multilabel block may hold some of the classes)
        dims, labels, y, _ = loss._check(x.shape, x.dtype, t, dict(params, class_weights=None), "mean", None)
        loss._check_scores(x, params)
        module = resolve_host_backend(backend, loss.spec, x.dtype)
        args = loss._kernel_args(x, labels, y, dims, params)
        if coef is None:
            return loss._first_pass(module, args)
        g = np.empty(x.shape, x.dtype)
        loss._second_pass(module, args, coef, g)
        return g
    except (ValueError, TypeError) as exc:
        raise _located(exc, where) from exc


# The most inputs a combining task takes: more blocks per sample and class go through a tree of partial sums.
SPLIT_EVERY = 8

_ULPS = 1074  # every finite float64 is an integer multiple of 2^-1074 (the smallest subnormal)


class _Exact:
    """The exact elementwise sum of equally shaped float64 arrays: ``ints``, Python integers in units of 2^-1074
    (an object array), and ``floats``, NumPy's sum, which stands where a term is not finite."""

    __slots__ = ("ints", "floats")

    def __init__(self, ints, floats):
        self.ints, self.floats = ints, floats

    @classmethod
    def of(cls, s: np.ndarray) -> _Exact:
        ints = np.empty(s.shape, dtype=object)
        flat = ints.reshape(-1)
        for k, v in enumerate(s.reshape(-1).tolist()):
            if math.isfinite(v):
                num, den = v.as_integer_ratio()
                flat[k] = num * ((1 << _ULPS) // den)
            else:
                flat[k] = 0  # the float sum stands for this element
        return cls(ints, s)

    def rounded(self) -> np.ndarray:
        """Rounded once to float64 (to nearest, ties to even: as math.fsum), where finite; NumPy's sum elsewhere
        (inf, or nan for inf - inf) and where the exact sum lies beyond the float range."""
        out = np.array(self.floats, dtype=np.float64, copy=True)
        if not np.isfinite(out).all():
            return out
        flat, ints = out.reshape(-1), self.ints.reshape(-1)
        scale = 1 << _ULPS
        try:
            for k in range(flat.size):
                flat[k] = ints[k] / scale  # int / int: correctly rounded
        except OverflowError:
            return np.array(self.floats, dtype=np.float64, copy=True)
        return out


def _kept(parts) -> list:
    """The inputs that hold sums: partial sums, and the sums of blocks with a sample and a class (an empty block
    adds nothing, and may share its place with the next; a tree node over empty blocks gives None)."""
    return [p for p in parts if isinstance(p, _Exact) or (p is not None and p.size)]


def _partial_sum(*parts):
    """A tree node: the exact sum of its inputs (float64 block sums, or ``_Exact`` partial sums), or None when
    none holds sums (``_kept``)."""
    exact = [p if isinstance(p, _Exact) else _Exact.of(p) for p in _kept(parts)]
    if not exact:
        return None
    ints, floats = exact[0].ints, exact[0].floats
    for e in exact[1:]:
        ints, floats = ints + e.ints, floats + e.floats
    return _Exact(ints, floats)


def _exact_sum(parts: list):
    """The elementwise sum of equally shaped float64 arrays or ``_Exact`` partial sums, exactly rounded where it
    is finite (else NumPy's: inf, or nan for inf - inf); None when no part holds sums (``_kept``)."""
    kept = _kept(parts)
    if len(kept) == 1 and not isinstance(kept[0], _Exact):
        return kept[0]
    total = _partial_sum(*kept)
    return None if total is None else total.rounded()


def _combine(name, params, reduction, w, N, C, places, *block_sums):
    """(value, coef (N, C, 2)) from the blocks' sums (or the tree's partial sums of them); ``places[k]`` =
    (n0, c0) where input k's sums go."""
    groups: dict = {}
    for place, s in zip(places, block_sums):
        groups.setdefault(place, []).append(s)
    sums = np.zeros((N, C, 3))
    for (n0, c0), parts in groups.items():
        total = _exact_sum(parts)
        if total is not None:
            n, c = total.shape[:2]
            sums[n0:n0 + n, c0:c0 + c] = total
    value, coef = combine(name, sums, params, reduction, w)
    return (value if reduction == "none" else np.float64(value)), coef


def _terms(combined, params, N, C, dtype):
    """reduction "none": the weighted per-class terms as the in-memory call returns them."""
    return terms(combined[0], params, N, C, dtype)


def _grad_block(name, backend, params, where, n0, c0, x, t, combined):
    """Block's gradient: its second pass with the combined coefficients of its samples and classes."""
    n, c = x.shape[0], (x.shape[1] if params["mode"] != "binary" else 1)
    return _run_block(name, backend, params, where, x, t, combined[1][n0:n0 + n, c0:c0 + c])


def graph(loss, mode, x, target, reduction, sample_weight, backend, params):
    """The dask arrays of one call: value / (value, grad) / grad."""
    name = loss.name
    checked = loss._params(params)[0] if params else loss._default_params[0]
    backend = host_backend(name, backend)
    if not isinstance(x, da.Array) and not hasattr(x, "dtype"):
        x = loss._as_input(x)  # Python values convert as in memory
    x = _lift(x, None, "input", name)
    dtype = loss._as_input(np.empty(0, x.dtype)).dtype
    if x.dtype != dtype:
        x = x.astype(dtype)
    t = _lift(target, None, "target", name)
    (N, C, S), w = loss._layout(x.shape, t, checked, reduction, on_host(sample_weight))
    mode_ = checked["mode"]
    if mode_ == "multiclass":
        if x.numblocks[1] != 1:
            x = x.rechunk({1: -1})  # a pixel's classes in one block: the softmax and the one-hot need them all
        t_chunks = x.chunks[:1] + x.chunks[2:]
    else:
        as_numeric(np.empty(0, t.dtype), dtype, "target", name)  # the dtype's check; values are read per block
        t_chunks = x.chunks
    if t.chunks != t_chunks:
        t = t.rechunk(t_chunks)

    token = tokenize(name, mode, reduction, backend, sorted(checked.items(), key=lambda kv: kv[0]), x, t, w)
    work = f"fusedloss-{name}-{mode}-{token}"
    starts = [np.concatenate(([0], np.cumsum(c)[:-1])).astype(int).tolist() for c in x.chunks]
    blocks = list(product(*map(range, x.numblocks)))

    def where(idx):
        return f"chunk {idx} of the input, which starts at index {tuple(s[i] for s, i in zip(starts, idx))}"

    def t_key(idx):
        return (t.name, *(idx if mode_ != "multiclass" else idx[:1] + idx[2:]))

    def place(idx):  # where the block's sums go in (N, C): its first sample and class
        return starts[0][idx[0]], (starts[1][idx[1]] if mode_ == "multilabel" else 0)

    layer: dict = {}
    sums_name, comb = f"{work}-sums", (f"{work}-combine",)
    for idx in blocks:
        layer[(sums_name, *idx)] = (_run_block, name, backend, checked, where(idx), (x.name, *idx), t_key(idx))
    inputs = _sum_tree(layer, f"{work}-partial", [(place(idx), (sums_name, *idx)) for idx in blocks])
    layer[comb] = (_combine, name, checked, reduction, w, N, C, [p for p, _ in inputs], *[k for _, k in inputs])
    results = []
    if mode != "grad":
        vname = f"{work}-value"
        if reduction == "none":
            shape = (N, C) if checked["per_sample"] else (C,)
            layer[(vname, *(0,) * len(shape))] = (_terms, comb, checked, N, C, dtype)
            results.append((vname, tuple((n,) for n in shape), dtype))
        else:
            layer[(vname,)] = (getitem, comb, 0)
            results.append((vname, (), np.dtype(np.float64)))
    if mode != "value":
        gname = f"{work}-grad"
        for idx in blocks:
            layer[(gname, *idx)] = (_grad_block, name, backend, checked, where(idx), *place(idx), (x.name, *idx),
                                    t_key(idx), comb)
        results.append((gname, x.chunks, dtype))
    hlg = HighLevelGraph.from_collections(work, layer, dependencies=[x, t])
    return to_arrays(dict(hlg.layers), dict(hlg.dependencies), results)


def _sum_tree(layer: dict, prefix: str, inputs: list) -> list:
    """(place, key) pairs for the combining task, at most ``SPLIT_EVERY`` of them per place: the blocks of a
    place beyond that go through levels of ``_partial_sum`` tasks (added to ``layer``) of at most that many
    inputs each."""
    groups: dict = {}
    for where, key in inputs:
        groups.setdefault(where, []).append(key)
    out, level = [], 0
    for where, keys in groups.items():
        while len(keys) > SPLIT_EVERY:
            nodes = []
            for k0 in range(0, len(keys), SPLIT_EVERY):
                node = (prefix, level, len(layer))
                layer[node] = (_partial_sum, *keys[k0:k0 + SPLIT_EVERY])
                nodes.append(node)
            keys, level = nodes, level + 1
        out.extend((where, k) for k in keys)
    return out


class DaskOverlapLoss(LazyLoss):
    """An overlap loss over dask arrays (module docstring): the in-memory signature (without ``grad_out``),
    returning lazy dask arrays."""

    def __init__(self, loss):
        super().__init__(loss, ", along the sample and spatial axes")

    def __call__(self, input, target, *, reduction="mean", sample_weight=None, backend=None, **params):
        """The value: a 0-d float64 dask array ("mean", "sum"), or the weighted per-class terms ("none")."""
        return graph(self.loss, "value", input, target, reduction, sample_weight, backend, params)

    def value_and_grad(self, input, target, *, reduction="mean", sample_weight=None, backend=None, **params):
        """(value, gradient with respect to input, chunked like the (rechunked) input): both lazy."""
        return graph(self.loss, "value_and_grad", input, target, reduction, sample_weight, backend, params)

    def grad(self, input, target, *, reduction="mean", sample_weight=None, backend=None, **params):
        """The gradient of the value with respect to input."""
        return graph(self.loss, "grad", input, target, reduction, sample_weight, backend, params)

    def grad_hess(self, *args, **kwargs):
        return self.loss.grad_hess(*args, **kwargs)  # its TypeError: no Hessian
