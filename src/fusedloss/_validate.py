"""Input checks and preparation shared by the host and device paths, and the rule for what they return.

Everything a kernel indexes with is checked here before any backend runs: pred as a C-contiguous native
float32/float64 array, targets, weights and vector parameters converted to its dtype and shape, domains,
labels in range, outputs of the right shape, dtype and layout that overlap nothing the call reads. Each
check exists once; ``_device.py`` runs the same rules on device arrays and raises the same messages
(``domain_problem``, ``target_kind_error``). ``mean_scale`` and ``reduced_value`` are the one rule for
what "mean" divides by once its denominator is known.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _config
from ._spec import LossSpec
from .backends import REGISTRY as BACKENDS

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


def _as_pred(x, loss: str, what: str = "pred") -> np.ndarray:
    """pred (an argument named ``what``) as a C-contiguous native float32/float64 array.

    Arrays (anything with a dtype) must already be floating: an integer or complex pred is a mistake we
    report rather than guess at. Python scalars and sequences convert as NumPy does, and to float64 if
    NumPy makes integers of them.
    """
    if type(x) is np.ndarray:
        arr = x
    else:
        had_dtype = hasattr(x, "dtype")
        arr = _host_array(x, what, loss, first=True)
        if not had_dtype and arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
    dt = arr.dtype
    if dt not in _FLOAT_DTYPES:
        if dt.kind == "f" and dt.itemsize in (4, 8):  # non-native byte order
            arr = arr.astype(dt.newbyteorder("="))
        elif dt.kind == "f":
            raise TypeError(f"{loss}: {what} must be float32 or float64, got {dt} (cast it with .astype(np.float32))")
        else:
            raise TypeError(f"{loss}: {what} must be a floating array (float32 or float64), got dtype {dt}")
    if not arr.flags.c_contiguous:
        arr = np.asarray(arr, order="C")
    return arr


def _host_array(x, what: str, loss: str, first: bool = False) -> np.ndarray:
    """``np.asarray(x)`` for the host path, with the errors a user can act on: a device array among host arrays
    names both sides, a torch tensor converts when NumPy can view it (a CPU tensor without autograd) or
    otherwise points to ``fusedloss.torch``, and a ragged sequence is refused by name. ``first``: ``x`` is the
    array the call's backend follows (pred, or its stand-in: ``what`` names it)."""
    if is_device_array(x):
        side = ("this call takes host arrays" if first or what == "pred" else "but pred is a host array")
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
    return _ragged_checked(x, what, loss)


def _ragged_checked(x, what: str, loss: str) -> np.ndarray:
    """``np.asarray(x)``, with a sequence whose rows have different lengths refused by name (NumPy's own error
    names neither the argument nor the rows)."""
    try:
        return np.asarray(x)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc):
            raise
        raise ValueError(f"{loss}: {what} is a ragged sequence: its rows have different lengths"
                         f"{_first_length_change(x) or f' ({exc})'}; pass a rectangular array (every row of one "
                         "length), e.g. pad the short rows") from None


def _first_length_change(x) -> str:
    """Which top-level row of a ragged sequence first differs in length from row 0, or "" (deeper down)."""
    try:
        lengths = [len(row) for row in x]
    except TypeError:
        return ""
    for i, n in enumerate(lengths):
        if n != lengths[0]:
            return f" (row 0 has {lengths[0]} entries, row {i} has {n})"
    return ""


def shape_of(x, what: str, loss: str) -> tuple:
    """``np.shape(x)`` of an argument named ``what``, with a ragged sequence refused by name."""
    try:
        return np.shape(x)
    except ValueError:
        _ragged_checked(x, what, loss)  # raises the error that names the argument, if x is ragged
        raise


def _as_like(x, pred: np.ndarray, what: str, loss: str) -> np.ndarray:
    """A second operand converted to pred's dtype, C-contiguous (copied only when it must be)."""
    if type(x) is np.ndarray and x.dtype == pred.dtype and x.flags.c_contiguous:
        return x
    return as_numeric(x, pred.dtype, what, loss, f"like pred: {pred.dtype}, shape {pred.shape}")


def as_numeric(x, dtype, what: str, loss: str, like: str = "") -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype``. Integers, booleans and floats convert; complex numbers,
    strings and objects are refused (a cast would drop the imaginary part or parse the text)."""
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous:
        return x  # (what np.asarray returns for it, without the checks below)
    arr = _host_array(x, what, loss)
    if arr.dtype.kind == "c":
        raise TypeError(f"{loss}: {what} must be real, got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        given = (f"a numpy array of dtype {arr.dtype}" if isinstance(x, np.ndarray)
                 else f"a {type(x).__module__}.{type(x).__name__}, which NumPy turns into dtype {arr.dtype}")
        raise TypeError(f"{loss}: {what} must be numeric (a numpy array or a sequence of numbers"
                        f"{', ' + like if like else ''}), got {given}")
    return np.asarray(arr, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    index = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim else ()
    return f"{arr[index].item()!r} at index {tuple(int(i) for i in index)}"


_COMPILED: dict = {}  # name: the compiled extension's function or None, looked up on first use


def _compiled(name: str):
    """The compiled extension's function ``name``, or None without the extension."""
    try:
        return _COMPILED[name]
    except KeyError:
        fn = _COMPILED[name] = getattr(BACKENDS["cpp"].load(), name, None)
        return fn


def _compiled_scan(name: str, arr: np.ndarray, threads: int | None):
    """The compiled scan ``name`` (``extremes``, ``extremes_and_sum``) of ``arr`` on ``threads`` (None: the thread
    count; a call passes its own cap), or None where it does not apply: no extension, or not a C-contiguous
    float32 / float64 array."""
    fn = _compiled(name)
    if fn is None or type(arr) is not np.ndarray or not (arr.dtype is _F64 or arr.dtype is _F32) \
            or not arr.flags.c_contiguous:
        return None
    return fn(arr, _config.get_num_threads() if threads is None else threads)


def _extremes(arr: np.ndarray, need_max: bool = True, threads: int | None = None) -> tuple:
    """(min, max) of ``arr`` with NaN skipped (inf, -inf where nothing else is there); with ``need_max`` False
    the max may be left as -inf. Compiled: one pass on the kernels' threads (``threads``: ``_compiled_scan``);
    otherwise NumPy's reductions (a
    second, NaN-skipping pass only when the first meets a NaN). (``np.minimum.reduce`` is ``arr.min()`` without
    its Python wrapper, which costs as much as 1,000 elements.)"""
    found = _compiled_scan("extremes", arr, threads)
    if found is not None:
        return found
    lo = np.minimum.reduce(arr, axis=None)
    hi = np.maximum.reduce(arr, axis=None) if need_max else -np.inf
    if lo != lo or hi != hi:  # a NaN: skip it (all NaN gives NaN, which is in every domain)
        lo, hi = np.fmin.reduce(arr, axis=None), np.fmax.reduce(arr, axis=None)
    return lo, hi


def _weight_sum(w: np.ndarray, threads: int | None = None) -> float:
    """The float64 sum of weights, for what "mean" divides by. With the compiled extension it is compensated
    (within a few ulp of the exact sum, as the kernels' own sums), so that "mean" over a whole array and a merge
    of the partial results of its pieces agree to 1e-15; otherwise NumPy's pairwise sum."""
    fn = _compiled("array_sum")
    if fn is None:
        with np.errstate(over="ignore"):  # an overflow here is taken care of (fit_weights)
            return float(np.add.reduce(w, dtype=np.float64, axis=None))
    if not (type(w) is np.ndarray and w.dtype in _FLOAT_DTYPES and w.flags.c_contiguous):
        w = np.ascontiguousarray(w, dtype=np.float64)  # any layout or byte order sums the same numbers
    if w.dtype is not _F64 and w.dtype is not _F32:  # an equal but distinct dtype object (e.g. after a
        w = w.view(_F64 if w.dtype == _F64 else _F32)  # byte swap): the extension checks the dtype's identity
    return fn(w, _config.get_num_threads() if threads is None else threads)


_DOMAIN_TEXT = {"positive": "must be > 0", "above_minus_one": "must be > -1", "nonnegative": "must be >= 0", "unit": "must lie in [0, 1]",
                "sign": "must be class signs -1/1 (or 0/1)"}


def soft_target_metrics(name: str) -> ValueError:
    """The error for ``metrics=`` with soft targets (the metrics rank the label: they need hard labels)."""
    return ValueError(f"{name}: metrics need hard labels (integer class indices); got soft targets")


def domain_error(loss: str, what: str, domain: str, found: str) -> ValueError:
    """The error for a value outside a domain; ``found`` says which value and where."""
    return ValueError(f"{loss}: {what} {_DOMAIN_TEXT[domain]}, got {found}")


def _check_domain(arr: np.ndarray, domain: str, what: str, loss: str, threads: int | None = None) -> None:
    """Raise ValueError if a value of ``arr`` lies outside ``domain`` (nan passes: it propagates); ``threads``: as
    ``_extremes``."""
    if domain == "real" or arr.size == 0:
        return
    if domain in ("nonnegative", "positive", "above_minus_one", "unit"):
        lo, hi = _extremes(arr, domain == "unit", threads)
        if domain == "nonnegative":
            bad = arr < 0 if lo < 0 else None
        elif domain == "positive":
            bad = arr <= 0 if lo <= 0 else None
        elif domain == "above_minus_one":
            bad = arr <= -1 if lo <= -1 else None
        else:
            bad = (arr < 0) | (arr > 1) if lo < 0 or hi > 1 else None
    elif domain == "sign":
        bad = (arr != -1) & (arr != 0) & (arr != 1) & ~np.isnan(arr)
        bad = bad if bad.any() else None
    else:  # pragma: no cover - a registry entry with a domain this module does not know
        raise AssertionError(f"unknown domain {domain!r}")
    if bad is not None:
        raise domain_error(loss, what, domain, _first_bad(arr, bad))


def weight_shape_error(loss: str, shape: tuple, given: tuple) -> ValueError:
    return ValueError(f"{loss}: sample_weight must have pred's shape {shape} or a leading part of it "
                      f"(broadcast along the remaining axes), got shape {given}")


def weight_values_error(loss: str, w: np.ndarray, shape: tuple | None = None, what: str = "sample_weight"
                        ) -> ValueError:
    """The error for weights that are not all finite and >= 0, the rule every loss's ``sample_weight`` follows,
    naming the first such weight (its index in ``shape``, default ``w``'s own)."""
    arr = w if shape is None else w.reshape(shape)
    bad = ~(np.isfinite(arr) & (arr >= 0))
    return ValueError(f"{loss}: {what} must be finite and >= 0, got {_first_bad(arr, bad)}")


def check_weight_values(w: np.ndarray, loss: str, shape: tuple | None = None) -> None:
    """Refuse the weights if one of them is nan or +inf (``weight_values_error``), where no sum over them is
    made anyway: NumPy's max propagates nan, and one pass of it costs a fraction of a compensated sum's
    (``_weight_sum``: at 1e6 float32 weights about 130 us against 240 on one AVX-512 core)."""
    if w.size:
        top = np.maximum.reduce(w, axis=None)
        if not top < math.inf:  # nan or +inf
            raise weight_values_error(loss, w, shape)


def check_weight_total(total: float, w: np.ndarray, loss: str, shape: tuple | None = None) -> None:
    """Where a sum over the weights (their sum, or the weighted loss) came out inf or nan: refuse the weights if
    one of them is nan or inf (``weight_values_error``). Finite weights whose sum overflows pass (``fit_weights``
    scales them), and so does nan in the other inputs (it propagates)."""
    if not math.isfinite(total) and not np.isfinite(w).all():
        raise weight_values_error(loss, w, shape)


def _check_weight_shape(shape: tuple, pred_shape: tuple, loss: str) -> None:
    if shape != pred_shape and (len(shape) > len(pred_shape) or pred_shape[: len(shape)] != shape):
        raise weight_shape_error(loss, pred_shape, shape)


def _prepare_weight(sample_weight, pred: np.ndarray, loss: str, threads: int | None = None) -> np.ndarray:
    """sample_weight as a flat array of pred's dtype and size (broadcast along trailing axes); ``threads``: as
    ``_extremes``."""
    return _prepared_weight(sample_weight, pred, loss, False, threads)[0]


def prepare_weight_total(sample_weight, pred: np.ndarray, loss: str, threads: int | None = None) -> tuple:
    """(``_prepare_weight``'s array, its sum ``_weight_sum``): the weights of a mean, checked and summed in one
    compiled pass where they need no copy."""
    w, total = _prepared_weight(sample_weight, pred, loss, True, threads)
    return w, (_weight_sum(w, threads) if total is None else total)


def _prepared_weight(sample_weight, pred: np.ndarray, loss: str, want_total: bool, threads: int | None) -> tuple:
    """(the flat weights, their sum where the check's pass gave it, else None)."""
    if type(sample_weight) is np.ndarray:  # its shape is checked before a conversion copies it
        _check_weight_shape(sample_weight.shape, pred.shape, loss)
    w = _as_like(sample_weight, pred, "sample_weight", loss)
    if w.shape != pred.shape:
        _check_weight_shape(w.shape, pred.shape, loss)
        w = np.broadcast_to(w.reshape(w.shape + (1,) * (pred.ndim - w.ndim)), pred.shape)
    total = None
    if w.size:
        # one pass (compiled: min and max together, and the sum with them when asked) finds a negative or an
        # infinite weight; nan is skipped: the callers refuse it where a sum over the weights comes out nan
        # (check_weight_total)
        found = _compiled_scan("extremes_and_sum", w, threads) if want_total else None
        if found is not None:
            lo, hi, total = found
        else:
            lo, hi = _extremes(w, True, threads)
        if lo < 0:
            raise ValueError(f"{loss}: sample_weight must be >= 0, got {_first_bad(w, w < 0)}")
        if hi == math.inf:
            raise weight_values_error(loss, w)
    if w.ndim == 1 and w.flags.c_contiguous:
        return w, total
    # a scanned w was C-contiguous already: the flat array holds the same numbers in the order it summed them
    return np.ascontiguousarray(w).reshape(-1), total


def fresh_outputs(shape: tuple, dtype, *wanted: bool) -> list:
    """One new array of ``shape`` for each true flag in ``wanted`` (None for each false one), all views of ONE
    allocation. Why: glibc hands freed memory back to the OS once the free space at the top of its heap
    exceeds twice the largest block it has freed. Two outputs freed together crossed that line, so every call
    page-faulted its outputs in again (``grad_hess`` at 100k float64 took 12x the time of the same call with
    ``grad_out``/``hess_out``); one block of the same size stays below it and is reused by the next call."""
    k = sum(map(bool, wanted))
    block = np.empty((k,) + tuple(shape), dtype) if k > 1 else None
    out, i = [], 0
    for want in wanted:
        if not want:
            out.append(None)
        elif block is None:
            out.append(np.empty(shape, dtype))
        else:
            out.append(block[i, ...])  # (an array even for shape (): block[i] would be a NumPy scalar)
            i += 1
    return out


def _check_out(out, pred: np.ndarray, what: str, loss: str, of: str = "pred", dtype=None) -> np.ndarray:
    """An output array for ``pred`` (the argument named ``of``): its shape and dtype (``dtype``, else pred's),
    C-contiguous, writable."""
    dtype = pred.dtype if dtype is None else dtype
    if type(out) is np.ndarray and out.dtype is dtype and out.shape == pred.shape:
        flags = out.flags
        if flags.c_contiguous and flags.writeable:
            return out  # the common case, in as few steps as it can be checked
    if type(out) is not np.ndarray:
        raise TypeError(f"{loss}: {what} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != pred.shape:
        raise ValueError(f"{loss}: {what} must have the shape of {of}, {pred.shape}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{loss}: {what} must have the dtype of {of}, {pred.dtype}, got {out.dtype}"
                        if dtype == pred.dtype else f"{loss}: {what} must have dtype {dtype}, got {out.dtype}")
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
    last = None  # (an array as given and as converted are often the same one: checked once)
    for arr, label in others:
        if arr is not last and isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"{name}: {what} shares memory with {label}, which the call reads; pass a separate array")
        last = arr


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


def labels_shape_error(name: str, lead: tuple, given: tuple) -> ValueError:
    return ValueError(f"{name}: integer labels must have the logits' shape without the class axis {lead}, "
                      f"got {given}")


class LabelRangeError(ValueError):
    """A class label outside [0, C) (and not ignore_index)."""


def label_range_error(name: str, label: int, where: tuple, C: int, ignore) -> ValueError:
    extra = f" or ignore_index={ignore}" if ignore is not None else ""
    return LabelRangeError(f"{name}: label {label} at index {where} is out of range: labels must lie in [0, {C}){extra}")


def soft_shape_error(spec: LossSpec, shape: tuple, given: tuple) -> ValueError:
    hint = ("; these have one value per row: if they are class indices, cast them to integers, e.g. "
            "target.astype(np.int64)" if given == shape[:-1] and spec.hard_labels else "")
    return ValueError(f"{spec.name}: floating targets are soft labels (probabilities per class) and must have the "
                      f"logits' shape {shape}, got {given}{hint}")


def target_kind_error(spec: LossSpec, shape: tuple, dtype, given: tuple) -> TypeError:
    """A target that is neither labels nor soft targets this loss takes, with the likely fix."""
    lead = shape[:-1]
    wanted = " or ".join(filter(None, [
        f"integer class labels of shape {lead}" if spec.hard_labels else "",
        f"floating probabilities of shape {shape}" if spec.soft_labels else "",
    ]))
    hint = ""
    if dtype.kind in "fb" and spec.hard_labels and given == lead:
        hint = "; if these are class indices, cast them to integers, e.g. target.astype(np.int64)"
    elif dtype.kind == "f" and given == shape and not spec.soft_labels:
        hint = f"; {spec.name} takes hard labels only: for probability targets use cross_entropy"
    return TypeError(f"{spec.name}: target must be {wanted}, got dtype {dtype} and shape {given}{hint}")


def _prepare_targets(spec: LossSpec, params: dict, target, x: np.ndarray, threads: int | None = None):
    """(labels, soft, all_kept): flat int64 labels of x.shape[:-1] (checked), or soft targets of x's shape
    (``threads``: their check's, as ``_extremes``).

    ``all_kept`` is True when the labels are known to lie in [0, C) with ignore_index outside it (no row is
    ignored), which spares the caller a pass over them; False says nothing."""
    name = spec.name
    t = target if type(target) is np.ndarray else _host_array(target, "target", spec.name)
    lead = x.shape[:-1]
    C = x.shape[-1]
    if t.dtype.kind in "iu" and spec.hard_labels:
        if t.shape != lead:
            raise labels_shape_error(name, lead, t.shape)
        if t.dtype is _INT64 and t.flags.c_contiguous:
            labels = t if t.ndim == 1 else t.reshape(-1)
        else:
            if t.dtype == _UINT64 and t.size and np.maximum.reduce(t, axis=None) >= 2**63:
                # int64 would wrap it to a negative number (maybe ignore_index): refuse it as what it is
                at = np.unravel_index(int(np.argmax(t >= 2**63)), lead) if lead else ()
                raise label_range_error(name, int(t[at]), tuple(int(i) for i in at), C, None)
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
            raise label_range_error(name, int(labels[at]), where, C, ignore)
        return labels, None, False
    if t.dtype.kind == "f" and spec.soft_labels:
        if t.shape != x.shape:
            raise soft_shape_error(spec, x.shape, t.shape)
        q = _as_like(t, x, "target", name)
        _check_domain(q, spec.soft_target_domain_for(params), "target", name, threads)
        return None, q, False
    raise target_kind_error(spec, x.shape, t.dtype, t.shape)


def _prepare_row_weight(sample_weight, lead: tuple, x: np.ndarray, loss: str, threads: int | None = None
                        ) -> np.ndarray:
    """A per-row sample weight (shape ``lead`` or a leading part of it) as a flat array of x's dtype."""
    if len(lead) == 0:
        raise ValueError(f"{loss}: sample_weight needs leading axes to weight; logits have shape {x.shape}")
    return _prepare_weight(sample_weight, np.empty(lead, x.dtype), loss, threads)


def _mean_denominator(spec: LossSpec, labels, ignore: int, rw, cw, R: int, all_kept: bool = False,
                      threads: int | None = None) -> float:
    """What "mean" divides by: see LossSpec.mean_over. Accumulated in float64."""
    if all_kept and rw is None and (cw is None or spec.mean_over != "class_weight"):
        return float(R)  # every row counts 1: what the sums below give, without their passes over the labels
    if labels is None or spec.mean_over == "rows":
        return float(R) if rw is None else _weight_sum(rw, threads)
    keep = labels != ignore
    if rw is None and not (spec.mean_over == "class_weight" and cw is not None):
        return float(np.count_nonzero(keep))
    per_row = np.ones(R) if rw is None else rw.astype(np.float64)
    if spec.mean_over == "class_weight" and cw is not None:
        with np.errstate(over="ignore"):  # an overflow here is taken care of (fit_weights)
            per_row = per_row * cw.astype(np.float64)[np.where(keep, labels, 0)]
    return _weight_sum(np.where(keep, per_row, 0.0), threads)


def _unit_hessian_rows(h: np.ndarray, labels, ignore: int, rw, scale: float) -> None:
    """hessian="ones" for a multiclass loss: 1 * row weight * scale, 0 on ignored rows."""
    C = h.shape[-1]
    rows = h.reshape(-1, C)
    per_row = np.full(rows.shape[0], scale) if rw is None else rw.astype(np.float64) * scale
    if labels is not None:
        per_row = np.where(labels != ignore, per_row, 0.0)
    rows[...] = per_row[:, None]


def mean_scale(denom: float) -> float:
    """What the per-element values and derivatives are multiplied by under "mean": 1 / denom, and nan when
    nothing counts (every weight 0, every row ignored), as torch's mean over nothing."""
    return 1.0 / denom if denom != 0 else math.nan


# --- weighted means whose sums overflow -----------------------------------------------------------------
#
# "mean" is sum(w l) / sum(w): its value and derivatives are the same for weights w and w 2^-k, and scaling by a
# power of two is exact (short of the subnormal range, where the weights so small are far below the sum's last
# digit). So when sum(w), or sum(w l), leaves the float range while the mean itself does not, the call is made
# again with the weights scaled to sum to at most 1: then sum(w l) <= max |l|. The ordinary path pays nothing
# but a comparison: the sum of weights is known before the kernel runs (``fit_weights``: scaled first when it is
# beyond WEIGHT_SUM_LIMIT), and the kernel's total after it (``refit_total``: a second pass, for the value only,
# when it came out inf or nan while the weights summed to more than 1; nan data pays that pass too).

# The largest sum of weights used as it stands: float64's largest number; float32 kernels multiply by
# 1 / sum(w) in float32, which is subnormal (losing digits, then 0) beyond 2^126.
WEIGHT_SUM_LIMIT = {_F32: 2.0**126, _F64: 1.7976931348623157e308}


def weight_shift(denom: float, bound_exponent: int = 0) -> int:
    """The k with denom 2^-k in [1/2, 1) for a sum of weights ``denom``; when ``denom`` is not finite,
    ``bound_exponent``, an e with (true sum) < 2^e (``sum_exponent``)."""
    return math.frexp(denom)[1] if math.isfinite(denom) else bound_exponent


def sum_exponent(factors, count: int) -> int:
    """An e with 2^e above any sum of ``count`` products of one entry of each array in ``factors`` (None: 1)."""
    e = max(count - 1, 0).bit_length()
    for a in factors:
        if a is not None and a.size:
            e += math.frexp(float(np.max(a)))[1]
    return e


def scaled_weights(w, k: int, dtype, count, host=None):
    """``w`` (None: ones, ``count`` of them or of shape ``count``) times 2^-k, in ``dtype`` (ldexp: exact for
    normal results, whatever k).
    ``host``: the device backend when ``w`` is a device array (copied to the host and back: a rare path)."""
    if host is not None and w is not None:
        w = host.to_host(w)
    w64 = np.ones(count) if w is None else np.asarray(w, np.float64)
    scaled = np.ldexp(w64, -k).astype(dtype)
    return scaled if host is None else host.to_device(scaled)


def fit_weights(w, denom: float, dtype, count: int, bound_exponent, denominator, limit: float | None = None,
                host=None):
    """Before the kernel: (weights, their "mean" denominator) scaled by a power of two when the sum is beyond
    ``limit`` (default WEIGHT_SUM_LIMIT of ``dtype``), else as given. ``bound_exponent()`` bounds an infinite
    sum (``sum_exponent``); ``denominator(w)`` recomputes it for scaled weights."""
    if not denom > (WEIGHT_SUM_LIMIT[np.dtype(dtype)] if limit is None else limit):
        return w, denom
    w = scaled_weights(w, weight_shift(denom, bound_exponent()), dtype, count, host)
    return w, denominator(w)


def refit_total(total: float, denom: float, w, dtype, count: int, run, host=None):
    """After the kernel: (total, denom) of a "mean" whose total came out inf or nan with weights summing to more
    than 1, recomputed by ``run(scaled weights)`` (the value only) with the weights scaled into a sum in
    [1/2, 1); else as given. The derivatives of the first pass stand (their factor w / sum(w) was finite)."""
    if math.isfinite(total) or not denom > 1.0:
        return total, denom
    k = weight_shift(denom)
    return run(scaled_weights(w, k, dtype, count, host)), math.ldexp(denom, -k)


def reduced_value(total, reduction: str, denom: float) -> float:
    """The reduced value from a kernel's float64 sum: the sum itself, or the mean over ``denom``."""
    if reduction == "sum":
        return float(total)
    return float(total) / denom if denom != 0 else math.nan


class Outputs(NamedTuple):
    """What one call computes and returns: the value, the gradient, the Hessian (``VALUE``, ``VALUE_AND_GRAD``,
    ``GRAD``, ``GRAD_HESS``: the four public methods)."""

    value: bool
    grad: bool
    hess: bool


VALUE = Outputs(True, False, False)
VALUE_AND_GRAD = Outputs(True, True, False)
GRAD = Outputs(False, True, False)
GRAD_HESS = Outputs(False, True, True)


def _results(outputs: Outputs, reduction, total, denom, v, g, h, state=None):
    """The public return value: value, (value, grad), grad or (grad, hess), with a metrics ``state``'s result last."""
    if state is not None:
        result = _results(outputs, reduction, total, denom, v, g, h)
        return (*result, state.result()) if isinstance(result, tuple) else (result, state.result())
    if outputs.value:
        value = v if v is not None else reduced_value(total, reduction, denom)
        return (value, g) if outputs.grad else value
    return (g, h) if outputs.hess else g
