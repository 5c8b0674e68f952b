"""Argument checking, output allocation and backend choice: everything between the user and a kernel.

Validation and allocation happen here, once, before any backend runs; kernels receive arrays they can
trust (C-contiguous, native float32/float64, matching lengths, checked domains).
"""

from __future__ import annotations

import math

import numpy as np

from . import _config
from ._spec import REGISTRY, LossSpec
from .backends import REGISTRY as BACKENDS, BackendUnavailable, host_order, warn_if_compiled_missing

REDUCTIONS = ("mean", "sum", "none")
HESSIAN_MODES = ("exact", "ones")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = _FLOAT_DTYPES
_INT64 = np.dtype(np.int64)
_UINT64 = np.dtype(np.uint64)


# --- array preparation -------------------------------------------------------------------------------


def is_device_array(x) -> bool:
    """True for CUDA device arrays (anything with __cuda_array_interface__, or the simulator's arrays)."""
    return hasattr(x, "__cuda_array_interface__") or type(x).__name__ == "FakeCUDAArray"


def _as_pred(x, loss: str) -> np.ndarray:
    """pred as a C-contiguous native float32/float64 array.

    Arrays (anything with a dtype) must already be floating: an integer or complex pred is a mistake we
    report rather than guess at. Python scalars and sequences convert as NumPy does, and to float64 if
    NumPy makes integers of them.
    """
    if type(x) is np.ndarray:
        arr = x
    else:
        had_dtype = hasattr(x, "dtype")
        arr = _host_array(x, "pred", loss)
        if not had_dtype and arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
    dt = arr.dtype
    if dt not in _FLOAT_DTYPES:
        if dt.kind == "f" and dt.itemsize in (4, 8):  # non-native byte order
            arr = arr.astype(dt.newbyteorder("="))
        elif dt.kind == "f":
            raise TypeError(f"{loss}: pred must be float32 or float64, got {dt} (cast it with .astype(np.float32))")
        else:
            raise TypeError(f"{loss}: pred must be a floating array (float32 or float64), got dtype {dt}")
    if not arr.flags.c_contiguous:
        arr = np.asarray(arr, order="C")
    return arr


def _host_array(x, what: str, loss: str) -> np.ndarray:
    """``np.asarray(x)`` for the host path, with the errors a user can act on: a device array among host arrays
    names both sides, and a torch tensor converts when NumPy can view it (a CPU tensor without autograd) or
    otherwise points to ``fusedloss.torch``."""
    if is_device_array(x):
        side = ("this call takes host arrays" if what == "pred" else "but pred is a host array")
        raise TypeError(
            f"{loss}: {what} is a device array ({type(x).__module__}.{type(x).__name__}) {side}; pass every array "
            "on one side: copy it to the host (cupy.asnumpy(x), x.copy_to_host(), tensor.cpu()) or pass pred as a "
            "device array too (the cuda backend)")
    if type(x).__module__.partition(".")[0] == "torch":
        if getattr(x, "requires_grad", False):
            raise TypeError(
                f"{loss}: {what} is a torch.Tensor that requires grad; the NumPy API returns NumPy values and "
                f"records no autograd graph. Use fusedloss.torch for a differentiable loss (e.g. "
                f"fusedloss.torch.loss({loss!r}, input, target)), or pass {what}.detach() for the value only")
        try:
            return np.asarray(x)  # a CPU tensor: a view of its memory, no copy
        except (TypeError, RuntimeError) as exc:
            raise TypeError(
                f"{loss}: {what} is a torch.Tensor NumPy cannot view ({exc}); use fusedloss.torch, or convert it "
                f"with {what}.detach().cpu().float().numpy()") from None
    return np.asarray(x)


def _as_like(x, pred: np.ndarray, what: str, loss: str) -> np.ndarray:
    """A second operand converted to pred's dtype, C-contiguous (copied only when it must be)."""
    if type(x) is np.ndarray and x.dtype == pred.dtype and x.flags.c_contiguous:
        return x
    arr = _host_array(x, what, loss)
    if arr.dtype.kind == "c":
        raise TypeError(f"{loss}: {what} must be real, got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        given = (f"a numpy array of dtype {arr.dtype}" if isinstance(x, np.ndarray)
                 else f"a {type(x).__module__}.{type(x).__name__}, which NumPy turns into dtype {arr.dtype}")
        raise TypeError(f"{loss}: {what} must be numeric (a numpy array or a sequence of numbers, like pred: "
                        f"{pred.dtype}, shape {pred.shape}), got {given}")
    return np.asarray(arr, dtype=pred.dtype, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    index = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim else ()
    return f"{arr[index].item()!r} at index {tuple(int(i) for i in index)}"


def _below(arr: np.ndarray, bound: float) -> bool:
    """Any value < bound? One min() pass; a NaN makes min() NaN, and only then a second, exact pass.
    (``np.minimum.reduce`` is ``arr.min()`` without its Python wrapper, which costs as much as 1,000 elements.)"""
    m = np.minimum.reduce(arr, axis=None)
    return bool(m < bound) or (m != m and bool((arr < bound).any()))


def _above(arr: np.ndarray, bound: float) -> bool:
    m = np.maximum.reduce(arr, axis=None)
    return bool(m > bound) or (m != m and bool((arr > bound).any()))


_ARRAY_SUM: list = []  # [the compiled compensated sum or None], looked up on first use


def _weight_sum(w: np.ndarray) -> float:
    """The float64 sum of weights, for what "mean" divides by. With the compiled extension it is compensated
    (within a few ulp of the exact sum, as the kernels' own sums), so that "mean" over a whole array and a merge
    of the partial results of its pieces agree to 1e-15; otherwise NumPy's pairwise sum."""
    if not _ARRAY_SUM:
        module = BACKENDS["cpp"].load()
        _ARRAY_SUM.append(getattr(module, "array_sum", None))
    fn = _ARRAY_SUM[0]
    if fn is None:
        return float(np.add.reduce(w, dtype=np.float64, axis=None))
    if not (type(w) is np.ndarray and w.dtype in _FLOAT_DTYPES and w.flags.c_contiguous):
        w = np.ascontiguousarray(w, dtype=np.float64)  # any layout or byte order sums the same numbers
    if w.dtype is not _F64 and w.dtype is not _F32:  # an equal but distinct dtype object (e.g. after a
        w = w.view(_F64 if w.dtype == _F64 else _F32)  # byte swap): the extension checks the dtype's identity
    return fn(w, _config.get_num_threads())


def _check_domain(arr: np.ndarray, domain: str, what: str, loss: str) -> None:
    """Raise ValueError if a value of ``arr`` lies outside ``domain`` (nan passes: it propagates)."""
    if domain == "real" or arr.size == 0:
        return
    if domain == "nonnegative":
        if _below(arr, 0):
            raise ValueError(f"{loss}: {what} must be >= 0, got {_first_bad(arr, arr < 0)}")
    elif domain == "unit":
        if _below(arr, 0) or _above(arr, 1):
            raise ValueError(f"{loss}: {what} must lie in [0, 1], got {_first_bad(arr, (arr < 0) | (arr > 1))}")
    elif domain == "sign":
        bad = (arr != -1) & (arr != 0) & (arr != 1) & ~np.isnan(arr)
        if bad.any():
            raise ValueError(f"{loss}: {what} must be class signs -1/1 (or 0/1), got {_first_bad(arr, bad)}")
    else:  # pragma: no cover - a registry entry with a domain this module does not know
        raise AssertionError(f"unknown domain {domain!r}")


def _prepare_weight(sample_weight, pred: np.ndarray, loss: str) -> np.ndarray:
    """sample_weight as a flat array of pred's dtype and size (broadcast along trailing axes)."""
    w = _as_like(sample_weight, pred, "sample_weight", loss)
    if w.shape != pred.shape:
        if w.ndim > pred.ndim or pred.shape[: w.ndim] != w.shape:
            raise ValueError(
                f"{loss}: sample_weight must have pred's shape {pred.shape} or a leading part of it "
                f"(broadcast along the remaining axes), got shape {w.shape}"
            )
        w = np.broadcast_to(w.reshape(w.shape + (1,) * (pred.ndim - w.ndim)), pred.shape)
    if w.size and _below(w, 0):
        raise ValueError(f"{loss}: sample_weight must be >= 0, got {_first_bad(w, w < 0)}")
    if w.ndim == 1 and w.flags.c_contiguous:
        return w
    return np.ascontiguousarray(w).reshape(-1)


def _check_out(out, pred: np.ndarray, what: str, loss: str) -> np.ndarray:
    if type(out) is np.ndarray and out.dtype is pred.dtype and out.shape == pred.shape:
        flags = out.flags
        if flags.c_contiguous and flags.writeable:
            return out  # the common case, in as few steps as it can be checked
    if type(out) is not np.ndarray:
        raise TypeError(f"{loss}: {what} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != pred.shape:
        raise ValueError(f"{loss}: {what} must have pred's shape {pred.shape}, got {out.shape}")
    if out.dtype != pred.dtype:
        raise TypeError(f"{loss}: {what} must have pred's dtype {pred.dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{loss}: {what} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{loss}: {what} is read-only")
    return out


def _check_overlap(out: np.ndarray, what: str, name: str, pred: np.ndarray, in_place: bool, others) -> None:
    """The in-place rule, the same for every backend: an output shares no memory with anything the call
    reads, except that ``grad_out`` may be exactly the prediction array (the same elements) in
    ``value_and_grad`` and ``grad`` (``in_place``), which then receives the gradient. ``others``: (array or
    None, name) pairs: the target and the weights, as given and as converted."""
    if np.may_share_memory(out, pred) and not (in_place and out.ctypes.data == pred.ctypes.data):
        how = ("is pred itself, which only value_and_grad and grad may write in place"
               if out.ctypes.data == pred.ctypes.data else "partly overlaps pred")
        raise ValueError(f"{name}: {what} {how}; pass a separate array"
                         + ("" if not in_place else ", or pred itself to compute the gradient in place"))
    for arr, label in others:
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"{name}: {what} shares memory with {label}, which the call reads; pass a separate array")


def _column_vector(spec: LossSpec, params: dict, pred: np.ndarray):
    """An elementwise loss's vector parameter (e.g. pos_weight per column), checked, in pred's dtype."""
    if spec.vector_param is None:
        return None
    vec = params[spec.vector_param]
    if not isinstance(vec, np.ndarray):
        return None  # a scalar travels in the packed parameters
    if pred.ndim == 0 or vec.shape != pred.shape[-1:]:
        raise ValueError(f"{spec.name}: {spec.vector_param} must be a scalar or have one entry per column of "
                         f"pred's last axis ({pred.shape[-1:] if pred.ndim else 'pred is 0-d'}), got shape {vec.shape}")
    return vec.astype(pred.dtype)


def _class_vector(spec: LossSpec, params: dict, x: np.ndarray):
    """A multiclass loss's per-class vector (class_weight, alpha) as a (C,) array of x's dtype, or None."""
    if spec.vector_param is None:
        return None
    vec = params[spec.vector_param]
    C = x.shape[-1]
    if vec is None:
        return None
    if not isinstance(vec, np.ndarray):
        return np.full(C, vec, dtype=x.dtype)
    if vec.shape != (C,):
        raise ValueError(f"{spec.name}: {spec.vector_param} must have one entry per class ({C}), got shape {vec.shape}")
    return vec.astype(x.dtype)


def _prepare_targets(spec: LossSpec, params: dict, target, x: np.ndarray):
    """(labels, soft, all_kept): flat int64 labels of x.shape[:-1] (checked), or soft targets of x's shape.

    ``all_kept`` is True when the labels are known to lie in [0, C) with ignore_index outside it (no row is
    ignored), which spares the caller a pass over them; False says nothing."""
    name = spec.name
    t = target if type(target) is np.ndarray else _host_array(target, "target", spec.name)
    lead = x.shape[:-1]
    C = x.shape[-1]
    if t.dtype.kind in "iu" and spec.hard_labels:
        if t.shape != lead:
            raise ValueError(f"{name}: integer labels must have the logits' shape without the class axis {lead}, "
                             f"got {t.shape}")
        if t.dtype is _INT64 and t.flags.c_contiguous:
            labels = t if t.ndim == 1 else t.reshape(-1)
        else:
            if t.dtype == _UINT64 and t.size and np.maximum.reduce(t, axis=None) >= 2**63:
                # int64 would wrap it to a negative number (maybe ignore_index): refuse it as what it is
                bad = t >= 2**63
                at = np.unravel_index(int(np.argmax(bad)), lead) if lead else ()
                raise ValueError(f"{name}: label {int(t[at])} at index {tuple(int(i) for i in at)} is out of range: "
                                 f"labels must lie in [0, {C})")
            labels = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
        ignore = params[spec.ignore_param] if spec.ignore_param else None
        # One pass for the common case: seen as unsigned, a negative label is huge, so max < C means every
        # label lies in [0, C). Otherwise (an ignored row, or a bad label) the exact test below says which.
        if not labels.size or np.maximum.reduce(labels.view(_UINT64), axis=None) < C:
            return labels, None, ignore is None or not 0 <= ignore < C
        bad = (labels < 0) | (labels >= C)
        if ignore is not None:
            bad &= labels != ignore
        if labels.size and bad.any():
            at = int(np.argmax(bad))
            where = tuple(int(i) for i in np.unravel_index(at, lead)) if lead else ()
            extra = f" or ignore_index={ignore}" if ignore is not None else ""
            raise ValueError(f"{name}: label {int(labels[at])} at index {where} is out of range: labels must lie "
                             f"in [0, {C}){extra}")
        return labels, None, False
    if t.dtype.kind == "f" and spec.soft_labels:
        if t.shape != x.shape:
            hint = (f"; these have one value per row: if they are class indices, cast them to integers, e.g. "
                    f"target.astype(np.int64)" if t.shape == lead and spec.hard_labels else "")
            raise ValueError(f"{name}: floating targets are soft labels (probabilities per class) and must have the "
                             f"logits' shape {x.shape}, got {t.shape}{hint}")
        q = _as_like(t, x, "target", name)
        if not (spec.name == "kl_div_with_logits" and params.get("log_target")):
            _check_domain(q, "nonnegative", "target", name)
        return None, q, False
    wanted = " or ".join(filter(None, [
        f"integer class labels of shape {lead}" if spec.hard_labels else "",
        f"floating probabilities of shape {x.shape}" if spec.soft_labels else "",
    ]))
    hint = ""
    if t.dtype.kind in "fb" and spec.hard_labels and t.shape == lead:
        hint = "; if these are class indices, cast them to integers, e.g. target.astype(np.int64)"
    elif t.dtype.kind == "f" and t.shape == x.shape and not spec.soft_labels:
        hint = f"; {name} takes hard labels only: for probability targets use cross_entropy"
    raise TypeError(f"{name}: target must be {wanted}, got dtype {t.dtype} and shape {t.shape}{hint}")


def _prepare_row_weight(sample_weight, lead: tuple, x: np.ndarray, loss: str) -> np.ndarray:
    """A per-row sample weight (shape ``lead`` or a leading part of it) as a flat array of x's dtype."""
    if len(lead) == 0:
        raise ValueError(f"{loss}: sample_weight needs leading axes to weight; logits have shape {x.shape}")
    return _prepare_weight(sample_weight, np.empty(lead, x.dtype), loss)


def _mean_denominator(spec: LossSpec, labels, ignore: int, rw, cw, R: int, all_kept: bool = False) -> float:
    """What "mean" divides by: see LossSpec.mean_over. Accumulated in float64."""
    if all_kept and rw is None and (cw is None or spec.mean_over != "class_weight"):
        return float(R)  # every row counts 1: what the sums below give, without their passes over the labels
    if labels is None or spec.mean_over == "rows":
        return float(R) if rw is None else _weight_sum(rw)
    keep = labels != ignore
    if rw is None and not (spec.mean_over == "class_weight" and cw is not None):
        return float(np.count_nonzero(keep))
    per_row = np.ones(R) if rw is None else rw.astype(np.float64)
    if spec.mean_over == "class_weight" and cw is not None:
        per_row = per_row * cw.astype(np.float64)[np.where(keep, labels, 0)]
    return _weight_sum(np.where(keep, per_row, 0.0))


def _unit_hessian_rows(h: np.ndarray, labels, ignore: int, rw, scale: float) -> None:
    """hessian="ones" for a multiclass loss: 1 * row weight * scale, 0 on ignored rows."""
    C = h.shape[-1]
    rows = h.reshape(-1, C)
    per_row = np.full(rows.shape[0], scale) if rw is None else rw.astype(np.float64) * scale
    if labels is not None:
        per_row = np.where(labels != ignore, per_row, 0.0)
    rows[...] = per_row[:, None]


def _results(want_value, want_grad, want_hess, reduction, total, denom, v, g, h):
    """The public return value: value, (value, grad), grad or (grad, hess)."""
    if want_value:
        if v is not None:
            value = v
        elif reduction == "sum":
            value = float(total)
        else:
            value = float(total) / denom if denom != 0 else math.nan
        return (value, g) if want_grad else value
    return (g, h) if want_hess else g


# --- backend choice ----------------------------------------------------------------------------------


def resolve_host_backend(name: str | None, spec: LossSpec, dtype):
    """The backend module to run a host-array call on (None: the configured backend, see _config)."""
    name = _config.get_backend() if name is None else _config.check_backend_name(name)
    if name == "auto":
        for candidate in host_order():
            module = BACKENDS[candidate].load()
            if module is not None and module.supports(spec, dtype):
                warn_if_compiled_missing(candidate)
                return module
        raise BackendUnavailable(f"{spec.name}: no backend supports dtype {dtype}")  # pragma: no cover
    if name == "cuda":
        raise ValueError(
            f"{spec.name}: backend 'cuda' needs device arrays (objects with __cuda_array_interface__), "
            "got host arrays; move them to the GPU first (numba.cuda.to_device, CuPy, torch .cuda())"
        )
    module = BACKENDS[name].require()
    if not module.supports(spec, dtype):
        raise BackendUnavailable(f"backend {name!r} does not support {spec.name} for dtype {dtype}")
    return module


# --- the loss objects --------------------------------------------------------------------------------


class Loss:
    """A loss from the registry, callable as ``loss(pred, target, ...)``.

    ``loss(pred, target, *, reduction="mean", sample_weight=None, backend=None, **params)`` returns the
    value: a Python float for "mean" and "sum" (accumulated in float64), an array of pred's shape and dtype
    for "none". ``value_and_grad``, ``grad`` and ``grad_hess`` return the derivatives of that value with
    respect to ``pred`` (for "mean" they include the 1/N or 1/sum(w) factor).
    """

    def __init__(self, spec: LossSpec):
        self.spec = spec
        self.name = spec.name
        self.__name__ = spec.name
        self.__doc__ = (
            f"{spec.summary}.\n\n{spec.formula}\n\nParameters (keyword-only): "
            + (", ".join(f"{p.name}={p.default!r} ({p.doc})" for p in spec.params) or "none")
        )
        self._default_params = self._check_params({})
        self._param_cache: dict = {}
        self._backend_cache: dict = {}
        # what the hot path reads on every call, looked up once
        self._multiclass = spec.kind == "multiclass"
        self._checks_domains = spec.target_domain != "real" or spec.pred_domain != "real"

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss loss {self.name}({params})>"

    # parameters: keyword-only, checked against the registry
    def _check_params(self, kwargs: dict) -> tuple[dict, tuple]:
        spec = self.spec
        unknown = set(kwargs) - set(spec.param_names)
        if unknown:
            valid = ", ".join(spec.param_names) or "none"
            raise TypeError(f"{self.name}: unknown keyword argument(s) {', '.join(sorted(unknown))}; "
                            f"its parameters are: {valid}")
        params = {}
        for p in spec.params:
            value = kwargs.get(p.name, p.default)
            try:
                value = p.convert(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{self.name}: {p.name} has the wrong type: {exc}") from None
            problem = p.check(value)
            if problem:
                raise ValueError(f"{self.name}: {p.name} must be {problem}, got {value!r}")
            params[p.name] = value
        return params, spec.packed(params)

    def _params(self, kwargs: dict):
        """Checked parameters; repeated keyword sets (a training loop's) are checked once and cached."""
        try:
            # the types belong in the key: True == 1 and 1 == 1.0, but p=True is not a valid p=1
            key = (*kwargs.items(), *map(type, kwargs.values()))
            checked = self._param_cache.get(key)
        except TypeError:  # an unhashable value (an array parameter): check every time
            key = checked = None
        if checked is None:
            checked = self._check_params(kwargs)
            if key is not None and len(self._param_cache) < 64:
                self._param_cache[key] = checked
        return checked

    def _backend(self, requested, dtype):
        """The host backend module for this loss and dtype, resolved once per (name, dtype, generation).

        The name (``requested``, else the configured one) is read on every call, so a ``use_backend`` block
        or ``set_backend`` takes effect at once; the backend table's ``generation`` changes whenever the
        table does, so an entry cached before that is never used again."""
        name = _config.get_backend() if requested is None else requested
        key = (name, dtype, BACKENDS.generation)  # (_run looks this key up itself first)
        try:
            module = self._backend_cache.get(key)
        except TypeError:  # an unhashable name: let the name check say what is wrong with it
            module = None
        if module is None:
            module = resolve_host_backend(name, self.spec, dtype)
            if len(self._backend_cache) >= 32:  # stale generations and names pile up otherwise
                self._backend_cache.clear()
            self._backend_cache[key] = module
        return module

    def _run(self, pred, target, reduction, sample_weight, backend, kwargs,
             want_value, want_grad, want_hess, grad_out=None, hess_out=None, hessian="exact", nthreads=None,
             grad_scale=None):
        # The hot path: a training loop calls this with the same few arguments on small arrays, so every
        # step below takes its common case first (identity tests of types and dtypes, one flags object per
        # array) and falls back to the general helpers, which raise the errors, only when that fails.
        # ``nthreads``: a lower thread cap for this call (fusedloss.torch passes torch's intra-op count).
        name = self.name
        if (want_grad or want_hess) and not self.spec.differentiable:
            raise TypeError(f"{name} is not differentiable: it has no gradient or Hessian; call {name}(...) "
                            "for its value")
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        params, packed = self._params(kwargs) if kwargs else self._default_params
        if type(pred) is np.ndarray:
            dtype = pred.dtype
            p = pred if (dtype is _F32 or dtype is _F64) and pred.flags.c_contiguous else None
        elif is_device_array(pred):
            from . import _device  # only device users pay for importing the CUDA path

            return _device.run(self, pred, target, reduction, sample_weight, backend, params, packed,
                               want_value, want_grad, want_hess, grad_out, hess_out, hessian)
        else:
            p = None
        if p is None:
            p = _as_pred(pred, name)
            dtype = p.dtype
        if self._multiclass:
            return self._run_multiclass(p, target, reduction, sample_weight, backend, params, packed,
                                        want_value, want_grad, want_hess, grad_out, hess_out, hessian, nthreads,
                                        grad_scale)
        shape = p.shape
        if type(target) is np.ndarray and target.dtype is dtype and target.flags.c_contiguous:
            y = target
        else:
            y = _as_like(target, p, "target", name)
        if y.shape != shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got pred {shape} "
                             f"and target {y.shape}")
        spec = self.spec
        if self._checks_domains:
            if spec.target_domain != "real":
                _check_domain(y, spec.target_domain, "target", name)
            if spec.pred_domain != "real":
                _check_domain(p, spec.pred_domain_for(params), "pred", name)
        w = None if sample_weight is None else _prepare_weight(sample_weight, p, name)
        cols = None if spec.vector_param is None else _column_vector(spec, params, p)
        threads = _config.get_num_threads()
        if nthreads is not None and nthreads < threads:
            threads = nthreads
        requested = _config.get_backend() if backend is None else backend
        module = self._backend_cache.get((requested, dtype, BACKENDS.generation)) if type(requested) is str else None
        if module is None:  # not resolved yet (or the table changed): _backend resolves and caches it
            module = self._backend(requested, dtype)

        if reduction == "mean":
            denom = float(p.size) if w is None else _weight_sum(w)
            scale = 1.0 / denom if denom != 0 else math.nan
        else:
            denom = 1.0
            scale = 1.0
        if grad_scale is not None:  # the caller knows the divisor (a piece of a larger array): see partial
            scale = grad_scale
        reduce = want_value and reduction != "none"
        if grad_out is None:
            g = np.empty(shape, dtype) if want_grad else None
        elif (type(grad_out) is np.ndarray and grad_out.dtype is dtype and grad_out.shape == shape
              and (flags := grad_out.flags).c_contiguous and flags.writeable):
            g = grad_out  # _check_out's first test, without the call
        else:
            g = _check_out(grad_out, p, "grad_out", name)
        if grad_out is not None:
            _check_overlap(g, "grad_out", name, p, not want_hess,
                           ((y, "target"), (target, "target"), (w, "sample_weight"), (sample_weight, "sample_weight")))
        if not (want_hess or cols is not None or len(shape) != 1 or (want_value and not reduce)):
            # the common case: flat arrays, a gradient at most, no vector parameter; returns what _results would
            total = module.elementwise(name, packed, p, y, w, scale, reduce, None, g, None, threads)
            if reduce:
                value = float(total) if reduction == "sum" else (float(total) / denom if denom != 0 else math.nan)
                return (value, g) if want_grad else value
            return g
        h = v = None
        if want_hess:
            h = np.empty(shape, dtype) if hess_out is None else _check_out(hess_out, p, "hess_out", name)
            if hess_out is not None:
                _check_overlap(h, "hess_out", name, p, False, ((y, "target"), (target, "target"), (w, "sample_weight"),
                                                               (sample_weight, "sample_weight")))
            if g is not None and np.may_share_memory(g, h):
                raise ValueError(f"{name}: grad_out and hess_out must not overlap")
        if want_value and not reduce:
            v = np.empty(shape, dtype)
        unit_hess = h is not None and hessian == "ones"
        flat = len(shape) != 1  # the kernels take flat arrays (views: pred and the outputs are C-contiguous)
        args = (name, packed, p.reshape(-1) if flat else p, y.reshape(-1) if flat else y, w, scale, reduce,
                None if v is None else (v.reshape(-1) if flat else v),
                None if g is None else (g.reshape(-1) if flat else g),
                None if (h is None or unit_hess) else (h.reshape(-1) if flat else h),
                threads)
        total = module.elementwise(*args) if cols is None else module.elementwise(*args, cols)
        if unit_hess:
            if w is None:
                h.fill(scale)
            else:
                np.multiply(w.reshape(shape), scale, out=h)
        return _results(want_value, want_grad, want_hess, reduction, total, denom, v, g, h)

    def _run_multiclass(self, x, target, reduction, sample_weight, backend, params, packed,
                        want_value, want_grad, want_hess, grad_out, hess_out, hessian, nthreads=None,
                        grad_scale=None):
        """``_run`` for a multiclass loss, with the logits ``x`` already a C-contiguous float array."""
        spec = self.spec
        name = self.name
        if x.ndim < 1 or x.shape[-1] < 1:
            raise ValueError(f"{name}: logits need a class axis (the last one) of length >= 1, got shape {x.shape}")
        C = x.shape[-1]
        lead = x.shape[:-1]
        labels, q, all_kept = _prepare_targets(spec, params, target, x)
        rw = None if sample_weight is None else _prepare_row_weight(sample_weight, lead, x, name)
        cw = _class_vector(spec, params, x)
        ignore = int(params[spec.ignore_param]) if spec.ignore_param else -1
        module = self._backend(backend, x.dtype)

        R = x.size // C if C else 0
        if reduction == "mean":
            denom = _mean_denominator(spec, labels, ignore, rw, cw, R, all_kept)
            scale = 1.0 / denom if denom != 0 else math.nan
        else:
            denom = 1.0
            scale = 1.0
        if grad_scale is not None:
            scale = grad_scale
        g = h = v = None
        if want_grad:
            # grad_out may be the logits themselves: the kernels read each element before writing it
            g = np.empty(x.shape, x.dtype) if grad_out is None else _check_out(grad_out, x, "grad_out", name)
        if want_hess:
            h = np.empty(x.shape, x.dtype) if hess_out is None else _check_out(hess_out, x, "hess_out", name)
            if g is not None and np.may_share_memory(g, h):
                raise ValueError(f"{name}: grad_out and hess_out must not overlap")
            if np.may_share_memory(h, x) or (g is not None and np.may_share_memory(g, x)):
                raise ValueError(f"{name}: grad_hess cannot write into the logits (both outputs need them)")
        others = ((target, "target"), (labels, "target"), (q, "target"), (rw, "sample_weight"),
                  (sample_weight, "sample_weight"))
        if grad_out is not None:
            _check_overlap(g, "grad_out", name, x, True, others)
        if hess_out is not None:
            _check_overlap(h, "hess_out", name, x, False, others)
        if want_value and reduction == "none":
            v = np.empty(lead, x.dtype)
        unit_hess = h is not None and hessian == "ones"
        reduce = want_value and reduction != "none"
        total = module.multiclass(
            name, packed, ignore, C, x.reshape(-1), labels, None if q is None else q.reshape(-1), rw, cw,
            scale, reduce,
            None if v is None else v.reshape(-1),
            None if g is None else g.reshape(-1),
            None if (h is None or unit_hess) else h.reshape(-1),
            _config.get_num_threads() if nthreads is None else min(nthreads, _config.get_num_threads()),
        )
        if unit_hess:
            _unit_hessian_rows(h, labels, ignore, rw, scale)
        return _results(want_value, want_grad, want_hess, reduction, total, denom, v, g, h)

    def _positional(self, method: str, args: tuple) -> TypeError:
        """The error for arguments after (pred, target) given by position: say which keyword they belong to."""
        call = f"fl.{self.name}" + ("" if method == "__call__" else f".{method}")
        names = self.spec.param_names
        if len(args) == 1 and isinstance(args[0], str) and args[0] in REDUCTIONS:
            fix = f"reduction={args[0]!r}"
        elif names and len(args) <= len(names):
            fix = ", ".join(f"{n}={a!r}" for n, a in zip(names, args))
        else:
            fix = "reduction=..., sample_weight=..." + (f", {names[0]}=..." if names else "")
        what = f"its parameters ({', '.join(names)})" if names else "reduction, sample_weight and backend"
        return TypeError(f"{self.name}: only pred and target are positional; {what} are keyword-only: "
                         f"{call}(pred, target, {fix})")

    def _memory_error(self, err: MemoryError, pred) -> MemoryError:
        """A MemoryError raised inside a call (an output, or a contiguous copy of an input, too large to
        allocate) as one that names the array by its role, its shape, dtype and size, and the way out."""
        shape, dtype = getattr(err, "shape", None), getattr(err, "dtype", None)
        fix = (f"split the batch along its leading axis and call fl.{self.name} on each piece with "
               f"reduction='sum' (or merge fl.{self.name}.partial(...) states with fl.merge)")
        if shape is None or dtype is None:
            return MemoryError(f"{self.name}: out of memory ({err}); {fix}")
        shape = tuple(int(n) for n in shape)
        size = float(math.prod(shape) * np.dtype(dtype).itemsize)
        for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
            if size < 1024 or unit == "EiB":
                break
            size /= 1024
        pshape = tuple(np.shape(pred))
        vector = self.spec.vector_param
        copied = not (isinstance(pred, np.ndarray) and pred.flags.c_contiguous and pred.dtype in (_F32, _F64))
        if shape == pshape and copied:
            role = "a C-contiguous float32/float64 copy of pred (pred is a view that needs one, or of another dtype)"
        elif shape == pshape:
            role = "an array the shape of pred (the gradient, Hessian or per-element values, or a copy of target)"
        elif pshape and shape == pshape[:-1]:
            role = "one value per row of pred (per-row values, labels or sample weights)"
        elif pshape and shape == pshape[-1:] and vector:
            role = f"one value per class (C = {pshape[-1]}): {vector} expanded to the last axis of pred"
        else:
            role = "an array"
        return MemoryError(f"{self.name}: cannot allocate {size:.3g} {unit} for {role}, {np.dtype(dtype)} of "
                           f"shape {shape}; {fix}")

    def __call__(self, pred, target, *args, reduction="mean", sample_weight=None, backend=None, **params):
        if args:
            raise self._positional("__call__", args)
        try:
            return self._run(pred, target, reduction, sample_weight, backend, params, True, False, False)
        except MemoryError as err:  # NumPy's bare one: say which array, how large, and what to do
            raise self._memory_error(err, pred) from err

    def value_and_grad(self, pred, target, *args, reduction="mean", sample_weight=None, grad_out=None,
                       backend=None, **params):
        """(value, gradient of that value with respect to pred)."""
        if args:
            raise self._positional("value_and_grad", args)
        try:
            return self._run(pred, target, reduction, sample_weight, backend, params, True, True, False, grad_out)
        except MemoryError as err:  # NumPy's bare one: say which array, how large, and what to do
            raise self._memory_error(err, pred) from err

    def grad(self, pred, target, *args, reduction="mean", sample_weight=None, grad_out=None, backend=None,
             **params):
        """The gradient of the loss value with respect to pred, in pred's shape and dtype."""
        if args:
            raise self._positional("grad", args)
        try:
            return self._run(pred, target, reduction, sample_weight, backend, params, False, True, False, grad_out)
        except MemoryError as err:  # NumPy's bare one: say which array, how large, and what to do
            raise self._memory_error(err, pred) from err

    def grad_hess(self, pred, target, *args, reduction="mean", sample_weight=None, grad_out=None, hess_out=None,
                  hessian="exact", backend=None, **params):
        """(gradient, diagonal of the Hessian) with respect to pred.

        ``hessian="ones"`` replaces the Hessian by 1 (times the sample weight and the reduction's
        1/N or 1/sum(w)), as scikit-learn does for losses whose exact Hessian is zero almost everywhere
        (mae, quantile): Newton steps in a boosting solver then become gradient steps instead of
        dividing by zero.
        """
        if args:
            raise self._positional("grad_hess", args)
        if hessian not in HESSIAN_MODES:
            raise ValueError(f"{self.name}: hessian must be 'exact' or 'ones', got {hessian!r}")
        try:
            return self._run(pred, target, reduction, sample_weight, backend, params, False, True, True, grad_out,
                             hess_out, hessian)
        except MemoryError as err:  # NumPy's bare one: say which array, how large, and what to do
            raise self._memory_error(err, pred) from err

    def partial(self, pred, target, *, sample_weight=None, backend=None, **params):
        """A mergeable partial result: the ``LossState`` of this piece of the data (see ``fusedloss.merge``).

        It holds the float64 sum of the weighted losses, what "mean" divides by and the count, so that the
        states of the pieces of a split merge into the state of the whole: ``state.value("mean")`` of the
        merge equals ``loss(pred, target, ...)`` on the whole up to float64 summation order.
        """
        from ._state import partial

        return partial(self, pred, target, sample_weight, backend, params)


def _loss_object(spec: LossSpec) -> Loss:
    """The callable for a registry entry: ``Loss``, or for a sequence loss (own signature) its subclass."""
    if spec.kind == "sequence":
        from ._ctc import SequenceLoss

        return SequenceLoss(spec)
    return Loss(spec)


LOSSES = {name: _loss_object(spec) for name, spec in REGISTRY.items()}
