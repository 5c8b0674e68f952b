"""The device-array path of the dispatcher: ``Loss._run`` hands over here when pred is a device array.

The rules are the host path's (``_dispatch.py``), checked here once before a kernel runs, with the work done on
the device. pred (logits) must be float32/float64. A host target, weight or parameter vector goes through the
host checks and is copied to the device once; a device one is checked on the device (shape, domain and labels by
small device reductions; nan passes, as on the host, except in weights, which must be finite) and cast there if
its numeric dtype differs. Outputs are allocated on the device, or are the caller's ``grad_out`` / ``hess_out``
(device arrays of pred's shape and dtype). Reduced values come back as Python floats, arrays as device arrays.

Two options for callers that keep working on the device (``fusedloss.torch``; the public API passes neither):
``stream`` (a foreign stream handle or a Numba stream) puts every kernel, allocation and copy of the call on
that stream (``numba_cuda.on_stream``), and ``device_value`` returns a reduced value as a 1-element device array
of pred's dtype, summed (and divided, for "mean") on the device, so that nothing waits for the kernel. What
still reads back from the device: the checks of device operands (domains, labels, weights: a few bytes
each), the "mean" divisor when it is a sum of weights or of kept rows (``device_sum``, ``kept_sum``: it scales
the derivatives, which the kernels take as a number), and a weighted mean's total, which is summed on the host
(``refit_total`` needs it) and copied back.

Only the "cuda" backend runs device arrays: a host backend named by the call, ``use_backend``,
``set_backend`` or ``FUSEDLOSS_BACKEND`` is an error (the mirror of naming "cuda" with host arrays).
Device arrays must be C-contiguous: copying a strided device array behind the caller's back would hide
a cost the caller can avoid.
"""

from __future__ import annotations

import math

import numpy as np

from . import _binary_metrics, _config, _logit_metrics
from ._validate import (
    _FLOAT_DTYPES, _as_like, _check_domain, _class_vector, _column_vector, _prepare_targets, _prepare_weight,
    _results, domain_error, soft_target_metrics, is_device_array, label_range_error, labels_shape_error,
    mean_scale, reduced_value, soft_shape_error, target_kind_error, weight_shape_error, WEIGHT_SUM_LIMIT,
    fit_weights, refit_total, scaled_weights, sum_exponent, check_weight_values,
    weight_values_error,
)
from .backends import REGISTRY as BACKENDS, BackendUnavailable


def _cuda_backend(requested, loss: str):
    name = _config.get_backend() if requested is None else _config.check_backend_name(requested)
    if name not in ("auto", "cuda"):
        raise ValueError(
            f"{loss}: backend {name!r} runs on host arrays, got device arrays; copy them to the host "
            "(.copy_to_host(), cupy.asnumpy, torch .cpu()) or use backend='cuda'"
        )
    entry = BACKENDS["cuda"]
    module = entry.load()
    if module is None:
        raise BackendUnavailable(
            f"{loss}: got device arrays, which need backend 'cuda', and it is not available: "
            f"{type(entry.error).__name__}: {entry.error}"
        ) from entry.error
    return module


def _stand_in(shape, dtype) -> np.ndarray:
    """A host array of ``shape`` and ``dtype`` that allocates nothing, for the host checks' shape rules."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _operand(cu, x, what: str, loss: str):
    """A device operand as a Numba device array (zero-copy), checked to be C-contiguous."""
    try:
        arr = cu.as_device_array(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{loss}: {what} is not a usable device array: {exc}") from exc
    if not cu.is_c_contiguous(arr):
        raise ValueError(f"{loss}: {what} must be a C-contiguous device array (copy it first)")
    return arr


def _float_operand(cu, x, what: str, spec):
    """(a float32/float64 device operand, its dtype), the backend checked to run ``spec`` on that dtype."""
    arr = _operand(cu, x, what, spec.name)
    dtype = np.dtype(arr.dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{spec.name}: {what} must be float32 or float64, got dtype {dtype}")
    if not cu.supports(spec, dtype):
        raise BackendUnavailable(f"backend 'cuda' does not support {spec.name} for dtype {dtype}")
    return arr, dtype


def _on_host(cu, v, what: str, loss: str):
    """A small argument on the host: device arrays are copied, anything else is returned as given."""
    if v is None or not is_device_array(v):
        return v
    return cu.to_host(_operand(cu, v, what, loss))


def _flat_as(cu, arr, dtype, what: str, loss: str):
    """``arr`` as a flat device array of ``dtype`` (a cast copy if it has another real numeric dtype)."""
    flat = arr.reshape(arr.size)
    if arr.dtype == dtype:
        return flat
    if arr.dtype.kind == "c":
        raise TypeError(f"{loss}: {what} must be real, got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{loss}: {what} must be numeric, got dtype {arr.dtype}")
    return cu.cast(flat, dtype)


def _check_device_domain(cu, flat, shape, domain: str, what: str, loss: str) -> None:
    """The device twin of ``_validate._check_domain`` (same rule, same error)."""
    if domain == "real":
        return
    if domain == "nonnegative":
        i = cu.first_outside(flat, 0.0, math.inf)
    elif domain == "positive":  # > 0: below the smallest positive number of the dtype
        i = cu.first_outside(flat, float(np.nextafter(flat.dtype.type(0), flat.dtype.type(1))), math.inf)
    elif domain == "above_minus_one":  # > -1: below the dtype's next number above -1
        i = cu.first_outside(flat, float(np.nextafter(flat.dtype.type(-1), flat.dtype.type(0))), math.inf)
    elif domain == "unit":
        i = cu.first_outside(flat, 0.0, 1.0)
    elif domain == "sign":
        i = cu.first_not_sign(flat)
    else:  # pragma: no cover - a registry entry with a domain this module does not know
        raise AssertionError(f"unknown domain {domain!r}")
    if i >= 0:
        index = tuple(int(k) for k in np.unravel_index(i, shape)) if shape else ()
        raise domain_error(loss, what, domain, f"{cu.element(flat, i)!r} at index {index}")


def _weights(cu, sample_weight, shape, dtype, loss: str):
    """sample_weight as a flat device array of ``dtype`` with one entry per element of ``shape``, checked as on
    the host: finite and >= 0 (a device weight: by one device pass, which reads back one index, as the domain
    checks do)."""
    if not is_device_array(sample_weight):
        w = _prepare_weight(sample_weight, _stand_in(shape, dtype), loss)
        check_weight_values(w, loss, shape)
        return cu.to_device(w)
    ws = _operand(cu, sample_weight, "sample_weight", loss)
    wshape = tuple(ws.shape)
    if wshape != shape and (len(wshape) > len(shape) or shape[: len(wshape)] != wshape):
        raise weight_shape_error(loss, shape, wshape)
    flat = _flat_as(cu, ws, dtype, "sample_weight", loss)
    i = cu.first_outside(flat, 0.0, float(np.finfo(flat.dtype).max), nan_outside=True)
    if i >= 0:
        if not math.isfinite(cu.element(flat, i)):
            raise weight_values_error(loss, cu.to_host(flat), wshape)
        _check_device_domain(cu, flat, wshape, "nonnegative", "sample_weight", loss)  # its error, naming it
    n = math.prod(shape)
    if wshape != shape and n:
        flat = cu.expand(flat, n // ws.size, dtype)
    return flat


def _outputs(cu, outputs, grad_out, hess_out, shape, value_shape, dtype, x, loss):
    """(v, g, h) flat device views the kernel writes, and (v, g, h) as the caller gets them back."""
    n = math.prod(shape)
    flat = [None, None, None]
    ret = [None, None, None]
    for k, (wanted, out, what) in enumerate(((outputs.grad, grad_out, "grad_out"),
                                             (outputs.hess, hess_out, "hess_out"))):
        if not wanted:
            continue
        if out is None:
            ret[k + 1] = cu.empty(shape, dtype)
            flat[k + 1] = ret[k + 1].reshape(n)
            continue
        if not is_device_array(out):
            raise TypeError(f"{loss}: {what} must be a device array like pred, got {type(out).__name__}")
        arr = _operand(cu, out, what, loss)
        if tuple(arr.shape) != shape:
            raise ValueError(f"{loss}: {what} must have pred's shape {shape}, got {tuple(arr.shape)}")
        if arr.dtype != dtype:
            raise TypeError(f"{loss}: {what} must have pred's dtype {dtype}, got {arr.dtype}")
        if cu.read_only(arr):
            raise ValueError(f"{loss}: {what} is read-only")
        ret[k + 1] = out
        flat[k + 1] = arr.reshape(n)
    g, h = flat[1], flat[2]
    if g is not None and h is not None and n and _overlap(cu, g, h):
        raise ValueError(f"{loss}: grad_out and hess_out must not overlap")
    for out, what in ((g, "grad_out"), (h, "hess_out")):
        if h is not None and out is not None and n and x is not None and _overlap(cu, out, x):
            raise ValueError(f"{loss}: grad_hess cannot write into the logits (both outputs need them): {what} "
                             "shares memory with them; pass a separate array")
    if outputs.value and value_shape is not None:
        ret[0] = cu.empty(value_shape, dtype)
        flat[0] = ret[0].reshape(math.prod(value_shape))
    return flat, ret


def _overlap(cu, a, b) -> bool:
    (a0, a1), (b0, b1) = cu.span(a), cu.span(b)
    return a0 < b1 and b0 < a1


def run(loss, pred, target, reduction, sample_weight, backend, params, packed,
        outputs, grad_out, hess_out, hessian, stream=None, device_value=False, metrics=None):
    """``Loss._run`` for a device-array pred (arguments as there; reduction, params and ``metrics``, a parsed
    ``_logit_metrics.MetricSpec`` or None, already checked); ``stream`` and ``device_value``: the module
    docstring."""
    cu = _cuda_backend(backend, loss.name)
    if stream is None:
        return _run(cu, loss, pred, target, reduction, sample_weight, params, packed, outputs, grad_out, hess_out,
                    hessian, device_value, metrics)
    with cu.on_stream(stream):
        return _run(cu, loss, pred, target, reduction, sample_weight, params, packed, outputs, grad_out, hess_out,
                    hessian, device_value, metrics)


def _device_total(cu, device_value: bool, reduce: bool, refit: bool, reduction, denom, dtype):
    """The ``DeviceTotal`` the kernel writes the reduced value into, or None: the value is wanted on the host,
    there is none, or it is a weighted mean (``_kept_on_device`` then copies the host's value over)."""
    if not (device_value and reduce) or refit:
        return None
    return cu.DeviceTotal(cu.empty(1, dtype), denom if reduction == "mean" else None)


def _kept_on_device(cu, device_value: bool, outputs, reduction, total, denom, dtype, v_ret, to):
    """``v_ret`` as ``_results`` takes it: the device array ``to.out`` that holds the value, a host-computed value
    copied to the device (``device_value`` with a weighted mean), or as it was."""
    if to is not None:
        return to.out
    if device_value and outputs.value and reduction != "none":
        return cu.to_device(np.array([reduced_value(total, reduction, denom)], dtype))
    return v_ret


def _run(cu, loss, pred, target, reduction, sample_weight, params, packed, outputs, grad_out, hess_out, hessian,
         device_value, metrics=None):
    spec = loss.spec
    name = loss.name
    p, dtype = _float_operand(cu, pred, "pred", spec)
    if spec.kind == "multiclass":
        return _run_multiclass(cu, loss, p, target, reduction, sample_weight, params, outputs, grad_out, hess_out,
                               hessian, device_value, metrics)
    shape = tuple(p.shape)
    n = p.size
    p_flat = p.reshape(n)

    if is_device_array(target):
        y = _operand(cu, target, "target", name)
        if tuple(y.shape) != shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got pred {shape} "
                             f"and target {tuple(y.shape)}")
        y_flat = _flat_as(cu, y, dtype, "target", name)
        _check_device_domain(cu, y_flat, shape, spec.target_domain_for(params), "target", name)
    else:
        y_host = _as_like(target, _stand_in(shape, dtype), "target", name)
        if y_host.shape != shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got pred {shape} "
                             f"and target {y_host.shape}")
        _check_domain(y_host, spec.target_domain_for(params), "target", name)
        y_flat = cu.to_device(y_host.reshape(-1))
    _check_device_domain(cu, p_flat, shape, spec.pred_domain_for(params), "pred", name)
    w = None if sample_weight is None else _weights(cu, sample_weight, shape, dtype, name)
    cols = _column_vector(spec, params, _stand_in(shape, dtype))
    cols = None if cols is None else cu.to_device(cols)

    refit = w is not None and reduction == "mean"  # weights whose sums overflow: _validate.fit_weights
    tab = None
    weight = float(n)
    if w is not None and (metrics is not None or reduction == "mean"):
        weight = cu.device_sum(w)  # the metrics' total weight and the "mean" divisor
    if metrics is not None:  # first: the gradient may be written over the scores; the weights as given
        tab = cu.binary_metrics(p_flat, y_flat, w, spec.binary_scores == "probabilities", metrics.nbins,
                                metrics.ece_bins, _binary_metrics.table_rows(n))
    if reduction == "mean":
        denom = weight
        if refit:
            w, denom = fit_weights(w, denom, dtype, n, lambda: sum_exponent((cu.to_host(w),), n),
                                   cu.device_sum, host=cu)
        scale = mean_scale(denom)
    else:
        denom = scale = 1.0
    (v, g, h), (v_ret, g_ret, h_ret) = _outputs(
        cu, outputs, grad_out, hess_out, shape,
        shape if reduction == "none" else None, dtype, None, name)
    unit_hess = h is not None and hessian == "ones"
    reduce = outputs.value and reduction != "none"
    to = _device_total(cu, device_value, reduce, refit, reduction, denom, dtype)
    total = cu.elementwise(name, packed, p_flat, y_flat, w, scale, reduce, v, g, None if unit_hess else h, 1,
                           *(() if cols is None else (cols,)), total=to)
    if reduce and refit and not _overlaps(cu, g, p_flat):
        total, denom = refit_total(total, denom, w, dtype, n, lambda w2: cu.elementwise(
            name, packed, p_flat, y_flat, w2, 1.0, True, None, None, None, 1, *(() if cols is None else (cols,))),
            host=cu)
    if unit_hess:
        cu.unit_hessian(h, 1, None, 0, w, scale)
    v_ret = _kept_on_device(cu, device_value, outputs, reduction, total, denom, dtype, v_ret, to)
    if tab is None:
        return _results(outputs, reduction, total, denom, v_ret, g_ret, h_ret)
    return _results(outputs, reduction, total, denom, v_ret, g_ret, h_ret,
                    _binary_metrics.fold(metrics, tab, n, weight))


def _overlaps(cu, out, inp) -> bool:
    """Whether an output (None: no) shares memory with an input (written over it: the input is gone)."""
    if out is None:
        return False
    (a0, a1), (b0, b1) = cu.span(out), cu.span(inp)
    return a0 < b1 and b0 < a1


def _device_targets(cu, spec, params, target, x, shape, dtype):
    """(labels, q) on the device: int64 labels of the leading shape (checked), or soft targets (flat)."""
    name = spec.name
    if not is_device_array(target):
        labels, q, _ = _prepare_targets(spec, params, target, _stand_in(shape, dtype))
        return (cu.to_device(labels), None) if q is None else (None, cu.to_device(q.reshape(-1)))
    t = _operand(cu, target, "target", name)
    tshape = tuple(t.shape)
    lead, C = shape[:-1], shape[-1]
    if t.dtype.kind in "iu" and spec.hard_labels:
        if tshape != lead:
            raise labels_shape_error(name, lead, tshape)
        labels = _flat_as(cu, t, np.dtype(np.int64), "target", name)
        ignore = params[spec.ignore_param] if spec.ignore_param else None
        at = cu.first_bad_label(labels, C, ignore)
        if at >= 0:
            where = tuple(int(i) for i in np.unravel_index(at, lead)) if lead else ()
            raise label_range_error(name, int(cu.element(labels, at)), where, C, ignore)
        return labels, None
    if t.dtype.kind == "f" and spec.soft_labels:
        if tshape != shape:
            raise soft_shape_error(spec, shape, tshape)
        q = _flat_as(cu, t, dtype, "target", name)
        _check_device_domain(cu, q, shape, spec.soft_target_domain_for(params), "target", name)
        return None, q
    raise target_kind_error(spec, shape, np.dtype(t.dtype), tshape)


def _run_multiclass(cu, loss, x, target, reduction, sample_weight, params, outputs, grad_out, hess_out, hessian,
                    device_value, metrics=None):
    spec = loss.spec
    name = loss.name
    dtype = np.dtype(x.dtype)
    shape = tuple(x.shape)
    if len(shape) < 1 or shape[-1] < 1:
        raise ValueError(f"{name}: logits need a class axis (the last one) of length >= 1, got shape {shape}")
    C = shape[-1]
    lead = shape[:-1]
    n = x.size
    R = n // C
    x_flat = x.reshape(n)
    labels, q = _device_targets(cu, spec, params, target, x, shape, dtype)
    if metrics is not None and labels is None:
        raise soft_target_metrics(name)
    rw = None
    if sample_weight is not None:
        if len(lead) == 0:
            raise ValueError(f"{name}: sample_weight needs leading axes to weight; logits have shape {shape}")
        rw = _weights(cu, sample_weight, lead, dtype, name)
    cw = _class_vector(spec, params, _stand_in(shape, dtype))
    cw = None if cw is None else cu.to_device(cw)
    ignore = int(params[spec.ignore_param]) if spec.ignore_param else -1
    packed = spec.packed(params)
    rw_given = rw  # the metrics weigh rows by the weights as given (fit_weights may rescale rw below)

    def denominator(rw, cw):
        if labels is None or spec.mean_over == "rows":
            return float(R) if rw is None else cu.device_sum(rw)
        return cu.kept_sum(labels, ignore, rw, cw if spec.mean_over == "class_weight" else None)

    refit = reduction == "mean" and (rw is not None or cw is not None)  # as the host path (_dispatch)
    if reduction == "mean":
        denom = denominator(rw, cw)
        if refit:
            cwd = cw if spec.mean_over == "class_weight" else None
            if cwd is not None and labels is not None:
                cw_host = cu.to_host(cw)
                if float(np.sum(cw_host, dtype=np.float64)) > WEIGHT_SUM_LIMIT[np.dtype(np.float64)]:
                    cw = cwd = cu.to_device(scaled_weights(cw_host, sum_exponent((cw_host,), C), dtype, C))
                    denom = denominator(rw, cw)
            rw, denom = fit_weights(
                rw, denom, dtype, R,
                lambda: sum_exponent((None if rw is None else cu.to_host(rw),
                                      None if cwd is None else cu.to_host(cwd)), R),
                lambda w2: denominator(w2, cw), WEIGHT_SUM_LIMIT[np.dtype(np.float64)], host=cu)
        scale = mean_scale(denom)
    else:
        denom = scale = 1.0
    (v, g, h), (v_ret, g_ret, h_ret) = _outputs(
        cu, outputs, grad_out, hess_out, shape,
        lead if reduction == "none" else None, dtype, x_flat, name)
    unit_hess = h is not None and hessian == "ones"
    reduce = outputs.value and reduction != "none"
    to = _device_total(cu, device_value, reduce, refit, reduction, denom, dtype)
    if metrics is None:
        total = cu.multiclass(name, packed, ignore, C, x_flat, labels, q, rw, cw, scale, reduce, v, g,
                              None if unit_hess else h, 1, total=to)
    else:
        if h is not None:
            raise ValueError(f"{name}: metrics come with the value (the call, value_and_grad), not grad_hess")
        rows = (cu.empty(R, np.int64) if metrics.needs_rank else None, cu.empty(R, np.float64),
                cu.empty(R, np.float64), cu.empty(R, np.float64) if metrics.entropy else None)
        total = cu.multiclass_metrics(name, packed, ignore, C, x_flat, labels, rw, cw, scale, reduce, v, g, *rows, 1,
                                      total=to)
    if reduce and refit and not _overlaps(cu, g, x_flat):
        total, denom = refit_total(total, denom, rw, dtype, R, lambda w2: cu.multiclass(
            name, packed, ignore, C, x_flat, labels, q, w2, cw, 1.0, True, None, None, None, 1), host=cu)
    if unit_hess:
        cu.unit_hessian(h, C, labels, ignore, rw, scale)
    v_ret = _kept_on_device(cu, device_value, outputs, reduction, total, denom, dtype, v_ret, to)
    if metrics is None:
        return _results(outputs, reduction, total, denom, v_ret, g_ret, h_ret)
    # the per-row metrics (8 to 32 bytes a row) come to the host and are folded there, as on the host path
    rows = tuple(None if a is None else cu.to_host(a) for a in rows)
    state = _logit_metrics.fold_kept(metrics, rows, cu.to_host(labels), ignore,
                                     None if rw_given is None else cu.to_host(rw_given))
    return _results(outputs, reduction, total, denom, v_ret, g_ret, h_ret, state)
