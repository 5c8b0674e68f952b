"""The loss objects and the host path: backend choice, output allocation and the call into a kernel.

The checks every call makes on its arguments live in ``_validate.py`` (shared with the device path,
``_device.py``, which ``Loss._run`` hands device arrays to); kernels receive arrays they can trust
(C-contiguous, native float32/float64, matching lengths, checked domains).
"""

from __future__ import annotations

import math

import numpy as np

from . import _binary_metrics, _config, _logit_metrics
from ._logit_metrics import run as _logit_metrics_run
from ._spec import REGISTRY, LossSpec
from ._validate import (
    _F32, _F64, HESSIAN_MODES, REDUCTIONS, _as_like, _as_pred, _check_domain, _check_out, _check_overlap,
    _class_vector, _column_vector, _mean_denominator, _prepare_row_weight, _prepare_targets, _prepare_weight,
    GRAD, GRAD_HESS, VALUE, VALUE_AND_GRAD, Outputs, _results, _unit_hessian_rows, _weight_sum, is_device_array,
    check_weight_total, check_weight_values, fresh_outputs, mean_scale, prepare_weight_total, reduced_value,
    fit_weights, refit_total, scaled_weights, soft_target_metrics, sum_exponent, WEIGHT_SUM_LIMIT,
)
from .backends import REGISTRY as BACKENDS, BackendUnavailable, host_order, warn_if_compiled_missing


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
            "got pred as a host array; move the arrays to the GPU first (numba.cuda.to_device, CuPy, torch .cuda())"
        )
    module = BACKENDS[name].require()
    if not module.supports(spec, dtype):
        raise BackendUnavailable(f"backend {name!r} does not support {spec.name} for dtype {dtype}")
    return module


# --- the loss objects --------------------------------------------------------------------------------


_NO_POOL: set = set()  # the backend modules without a pool_prewake


def prewake(module, threads: int, work: int) -> None:
    """Before a call's argument checks: wake the compiled pool's workers if the kernel will run on several
    threads, so that they join it at once instead of 20-40 us late (pool.hpp); for a short kernel they wait
    for it on their cores. Other backends have no pool: remembered, as a getattr that misses raises and
    catches an AttributeError (0.5-0.8 us, a tenth of a small call)."""
    if module in _NO_POOL:
        return
    wake = getattr(module, "pool_prewake", None)
    if wake is None:
        _NO_POOL.add(module)
    elif work >= module.PREWAKE_MIN:
        wake(threads, work < module.PREWAKE_SHORT)



def _as_given(pred, p, kwargs: dict, grad_out, hess_out) -> tuple:
    """(array, name) pairs of what a call reads as the caller gave it, where it reads a converted copy: the
    prediction (a strided or misaligned one, say) and the array parameters (class_weight, pos_weight, alpha).
    An output must not overlap them either: writing it would change the caller's input. Empty without outputs."""
    if grad_out is None and hess_out is None:
        return ()
    given = [(v, k) for k, v in kwargs.items() if isinstance(v, np.ndarray)]
    if pred is not p and isinstance(pred, np.ndarray):
        given.append((pred, "pred"))
    return tuple(given)

class LossMemoryError(MemoryError):
    """A MemoryError raised by a loss call that says which array could not be allocated, and the way out."""


def _over_limit(cw) -> bool:
    """Whether class weights sum beyond the float64 range (cross_entropy's rows sum them: fit_weights)."""
    with np.errstate(over="ignore"):
        return float(np.sum(cw, dtype=np.float64)) > WEIGHT_SUM_LIMIT[_F64]


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
        self.__module__ = "fusedloss"  # where pickle finds it by name (see __reduce__)
        self.__doc__ = (
            f"{spec.summary}.\n\n{spec.formula}\n\nParameters (keyword-only): "
            + (", ".join(f"{p.name}={p.default!r} ({p.doc})" for p in spec.params) or "none")
        )
        self._default_params = self._check_params({})
        self._param_cache: dict = {}
        self._backend_cache: dict = {}
        # what the hot path reads on every call, looked up once
        self._multiclass = spec.kind == "multiclass"
        self._checks_domains = spec.target_domain != "real" or spec.pred_domain != "real"  # (or callable)

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss loss {self.name}({params})>"

    def __reduce__(self):
        """Pickled by name, as a function is: unpickling gives ``fusedloss.<name>`` of the loading process (so
        objectives, metrics and modules holding a loss can be saved, cloned and sent to worker processes)."""
        return self.name

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
        key = (name, dtype, BACKENDS.generation)  # (_cached_backend looks this key up without resolving)
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

    def _cached_backend(self, requested, dtype):
        """The module ``_backend`` resolved for this name and dtype before, or None (then it resolves it)."""
        name = _config.get_backend() if requested is None else requested
        return self._backend_cache.get((name, dtype, BACKENDS.generation)) if type(name) is str else None

    def _run(self, pred, target, reduction, sample_weight, backend, kwargs, outputs: Outputs, grad_out=None,
             hess_out=None, hessian="exact", nthreads=None, grad_scale=None, metrics=None, stream=None,
             device_value=False, target_checked=False, weights_checked=False, narrow=False):
        """One call: ``outputs`` says what it computes; ``nthreads`` caps its threads (fusedloss.torch passes
        torch's intra-op count); ``grad_scale`` replaces the reduction's factor (a piece of a larger array, whose
        divisor the caller knows: see ``partial`` and fusedloss.dask); ``metrics`` (names, or None) adds the
        classification metrics of the same pass to the result (``_logit_metrics``). ``stream`` and
        ``device_value``: device arrays only (fusedloss.torch passes them; see ``_device``): the stream to run on,
        and the reduced value as a 1-element device array. ``target_checked``: the caller has checked the
        target's domain already (a boosting objective's labels, checked once for all rounds);
        ``weights_checked``: the caller has found no nan or inf among the weights (the same objective's).
        ``narrow``: ``grad_out`` and ``hess_out`` are float32 arrays for a float64 ``pred`` (an elementwise loss, a
        backend with ``NARROW_OUTPUTS``), which take the derivatives computed in float64, rounded (a LightGBM
        objective's, which LightGBM keeps in float32). A MemoryError comes out as one that says which array could
        not be allocated (``_memory_error``)."""
        try:
            return self._compute(pred, target, reduction, sample_weight, backend, kwargs, outputs, grad_out,
                                 hess_out, hessian, nthreads, grad_scale, metrics, stream, device_value,
                                 target_checked, weights_checked, narrow)
        except LossMemoryError:  # already says it (a call made inside another)
            raise
        except MemoryError as err:  # NumPy's bare one: say which array, how large, and what to do
            raise self._memory_error(err, pred) from err

    def _compute(self, pred, target, reduction, sample_weight, backend, kwargs, outputs, grad_out, hess_out,
                 hessian, nthreads, grad_scale, metrics=None, stream=None, device_value=False, target_checked=False,
                 weights_checked=False, narrow=False):
        # The hot path: a training loop calls this with the same few arguments on small arrays, so every
        # step below takes its common case first (identity tests of types and dtypes, one flags object per
        # array) and falls back to the general helpers, which raise the errors, only when that fails.
        name = self.name
        want_value, want_grad, want_hess = outputs
        if (want_grad or want_hess) and not self.spec.differentiable:
            raise TypeError(f"{name} is not differentiable: it has no gradient or Hessian; call {name}(...) "
                            "for its value")
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        params, packed = self._params(kwargs) if kwargs else self._default_params
        if metrics is not None:
            metrics = self._metric_spec(metrics, pred)
        if type(pred) is np.ndarray:
            dtype = pred.dtype
            p = pred if (dtype is _F32 or dtype is _F64) and pred.flags.c_contiguous else None
        elif is_device_array(pred):
            from . import _device  # only device users pay for importing the CUDA path

            return _device.run(self, pred, target, reduction, sample_weight, backend, params, packed,
                               outputs, grad_out, hess_out, hessian, stream, device_value, metrics)
        else:
            p = None
        if p is None:
            p = _as_pred(pred, name)
            dtype = p.dtype
        if self._multiclass:
            return self._run_multiclass(p, target, reduction, sample_weight, backend, params, packed,
                                        outputs, grad_out, hess_out, hessian, nthreads,
                                        grad_scale, metrics, _as_given(pred, p, kwargs, grad_out, hess_out),
                                        weights_checked)
        shape = p.shape
        threads = _config.get_num_threads()
        if nthreads is not None and nthreads < threads:
            threads = nthreads
        module = self._cached_backend(backend, dtype)
        if threads > 1 and module is not None:
            prewake(module, threads, p.size)
        if type(target) is np.ndarray and target.dtype is dtype and target.flags.c_contiguous:
            y = target
        elif type(target) is np.ndarray and target.shape != shape:
            y = target  # refused below for its shape, before a conversion would copy it
        else:
            y = _as_like(target, p, "target", name)
        if y.shape != shape:
            raise ValueError(f"{name}: pred and target must have the same shape, got pred {shape} "
                             f"and target {y.shape}")
        spec = self.spec
        if self._checks_domains:
            if spec.target_domain != "real" and not target_checked:
                _check_domain(y, spec.target_domain_for(params), "target", name, threads)
            if spec.pred_domain != "real":
                _check_domain(p, spec.pred_domain_for(params), "pred", name, threads)
        w = w_total = None
        if sample_weight is not None:  # (the scans of the inputs keep to the call's threads too)
            if reduction == "mean":  # checked and summed in one pass
                w, w_total = prepare_weight_total(sample_weight, p, name, threads)
            else:
                w = _prepare_weight(sample_weight, p, name, threads)
        cols = None if spec.vector_param is None else _column_vector(spec, params, p)
        if module is None:  # not resolved yet (or the table changed): _backend resolves and caches it
            module = self._backend(backend, dtype)

        w_given = w  # the metrics weigh elements by the weights as given (fit_weights may rescale w below)
        refit = w is not None and reduction == "mean" and grad_scale is None  # see _validate: fit_weights
        reduce = want_value and reduction != "none"
        # nan or infinite weights are refused where a sum over them comes out inf or nan: the "mean" divisor, the
        # reduced value (below), or else a sum of their own
        if reduction == "mean":
            denom = float(p.size) if w is None else w_total
            if w is not None and not math.isfinite(denom):
                check_weight_total(denom, w, name, shape)
            if refit:
                w, denom = fit_weights(w, denom, dtype, w.size, lambda: sum_exponent((w,), w.size),
                                       lambda w2: _weight_sum(w2, threads))
            scale = mean_scale(denom)
        else:
            denom = scale = 1.0
            if w is not None and not reduce and not weights_checked:
                check_weight_values(w, name, shape)
        if grad_scale is not None:  # the caller knows the divisor (a piece of a larger array): see partial
            scale = grad_scale
        # the outputs this call allocates: in one block when there are several (fresh_outputs)
        new_g, new_h = want_grad and grad_out is None, want_hess and hess_out is None
        new_v = want_value and not reduce
        if new_h or new_v:
            g, h, v = fresh_outputs(shape, dtype, new_g, new_h, new_v)
        else:
            g, h, v = np.empty(shape, dtype) if new_g else None, None, None
        # what an output array must not overlap besides pred (only calls that pass output arrays build it)
        given = () if grad_out is None and hess_out is None else (
            (y, "target"), (target, "target"), (w, "sample_weight"), (sample_weight, "sample_weight"),
            *_as_given(pred, p, kwargs, grad_out, hess_out))
        out_dtype = dtype
        if narrow:
            if not getattr(module, "NARROW_OUTPUTS", False):
                raise TypeError(f"{name}: float32 derivatives of float64 predictions need a backend that stores "
                                f"them so (NARROW_OUTPUTS), not {module.NAME}")
            out_dtype = _F32
        if grad_out is not None:
            g = grad_out if (type(grad_out) is np.ndarray and grad_out.dtype is out_dtype and grad_out.shape == shape
                             and (flags := grad_out.flags).c_contiguous and flags.writeable) \
                else _check_out(grad_out, p, "grad_out", name, dtype=out_dtype)  # (its first test, without the call)
            _check_overlap(g, "grad_out", name, p, not want_hess, given)
        if not (want_hess or cols is not None or len(shape) != 1 or (want_value and not reduce)
                or metrics is not None):
            # the common case: flat arrays, a gradient at most, no vector parameter; returns what _results would
            total = module.elementwise(name, packed, p, y, w, scale, reduce, None, g, None, threads)
            if reduce:
                if reduction == "sum" and w is not None and not math.isfinite(total):
                    check_weight_total(total, w, name, shape)
                if refit and (grad_out is None or not np.may_share_memory(g, p)):
                    total, denom = refit_total(total, denom, w, dtype, w.size, lambda w2: module.elementwise(
                        name, packed, p, y, w2, 1.0, True, None, None, None, threads))
                value = reduced_value(total, reduction, denom)
                return (value, g) if want_grad else value
            return g
        if want_hess:
            if h is None:
                h = _check_out(hess_out, p, "hess_out", name, dtype=out_dtype)
            if hess_out is not None:
                _check_overlap(h, "hess_out", name, p, False, given)
            if g is not None and np.may_share_memory(g, h):
                raise ValueError(f"{name}: grad_out and hess_out must not overlap")
        unit_hess = h is not None and hessian == "ones"
        flat = len(shape) != 1  # the kernels take flat arrays (views: pred and the outputs are C-contiguous)
        args = (name, packed, p.reshape(-1) if flat else p, y.reshape(-1) if flat else y, w, scale, reduce,
                None if v is None else (v.reshape(-1) if flat else v),
                None if g is None else (g.reshape(-1) if flat else g),
                None if (h is None or unit_hess) else (h.reshape(-1) if flat else h),
                threads)
        if metrics is not None:
            total, tab = _binary_metrics.run(module, *args[:7], args[7], args[8], threads, cols, metrics,
                                             spec.binary_scores == "probabilities")
        else:
            total = module.elementwise(*args) if cols is None else module.elementwise(*args, cols)
        if reduce and reduction == "sum" and w is not None and not math.isfinite(total):
            check_weight_total(total, w, name, shape)
        if reduce and refit and (grad_out is None or not np.may_share_memory(g, p)):
            total, denom = refit_total(total, denom, w, dtype, w.size, lambda w2: module.elementwise(
                *args[:4], w2, 1.0, True, None, None, None, threads, *(() if cols is None else (cols,))))
        if unit_hess:
            if w is None:
                h.fill(scale)
            else:
                np.multiply(w.reshape(shape), scale, out=h)
        if metrics is None:
            return _results(outputs, reduction, total, denom, v, g, h)
        if w is not w_given:  # the kernel saw the rescaled weights: the sums of the weights as given
            tab = _binary_metrics.table(p, y, w_given, spec.binary_scores == "probabilities", metrics.nbins,
                                        metrics.ece_bins)
        weight = float(p.size) if w_given is None else (_weight_sum(w_given, threads) if w_total is None else w_total)
        return _results(outputs, reduction, total, denom, v, g, h, _binary_metrics.fold(metrics, tab, p.size, weight))

    def _metric_spec(self, metrics, pred):
        """The parsed ``metrics`` of a call, refused for a loss (or an input) that has no metrics pass."""
        if self.spec.metrics_pass == "binary":
            spec = _binary_metrics.parse(metrics, self.name)
        elif self.spec.metrics_pass is None:
            have = ", ".join(n for n, s in REGISTRY.items() if s.metrics_pass == "rows")
            binary = ", ".join(n for n, s in REGISTRY.items() if s.metrics_pass == "binary")
            raise ValueError(f"{self.name}: metrics are computed in the loss pass of {have} only (hard labels) and "
                             f"of the losses on a binary score ({binary}); call fusedloss.metrics.logit_metrics("
                             f"logits, labels, metrics=...) or binary_logit_metrics(logits, target, metrics=...) "
                             f"for them without {self.name}'s loss")
        else:
            spec = _logit_metrics.parse(metrics, self.name)
        return spec

    def _run_multiclass(self, x, target, reduction, sample_weight, backend, params, packed,
                        outputs, grad_out, hess_out, hessian, nthreads=None,
                        grad_scale=None, metrics=None, given=(), weights_checked=False):
        """``_run`` for a multiclass loss, with the logits ``x`` already a C-contiguous float array; ``given``:
        what the outputs must not overlap besides (``_as_given``)."""
        want_value, want_grad, want_hess = outputs
        spec = self.spec
        name = self.name
        if x.ndim < 1 or x.shape[-1] < 1:
            raise ValueError(f"{name}: logits need a class axis (the last one) of length >= 1, got shape {x.shape}")
        C = x.shape[-1]
        lead = x.shape[:-1]
        threads = _config.get_num_threads() if nthreads is None else min(nthreads, _config.get_num_threads())
        if threads > 1 and (known := self._cached_backend(backend, x.dtype)) is not None:
            prewake(known, threads, x.size)
        labels, q, all_kept = _prepare_targets(spec, params, target, x, threads)
        rw = None if sample_weight is None else _prepare_row_weight(sample_weight, lead, x, name, threads)
        cw = _class_vector(spec, params, x)
        ignore = int(params[spec.ignore_param]) if spec.ignore_param else -1
        module = self._backend(backend, x.dtype)
        if metrics is not None and labels is None:
            raise soft_target_metrics(name)
        rw_given = rw  # the metrics weigh rows by the weights as given (fit_weights may rescale rw below)

        R = x.size // C if C else 0
        refit = reduction == "mean" and grad_scale is None and (rw is not None or cw is not None)
        reduce = want_value and reduction != "none"
        # nan or infinite weights: refused as on the elementwise path (_compute), on ignored rows too (the sums
        # that would show them leave those rows out unless every row is kept)
        every_row = labels is None or all_kept
        if reduction == "mean":
            denom = _mean_denominator(spec, labels, ignore, rw, cw, R, all_kept, threads)
            if rw is not None:
                if every_row or spec.mean_over == "rows":
                    if not math.isfinite(denom):
                        check_weight_total(denom, rw, name, lead)
                else:
                    check_weight_values(rw, name, lead)
            if refit:  # see _validate: fit_weights (class weights that overflow the sum scale the row weights)
                cwd = cw if spec.mean_over == "class_weight" else None
                if cwd is not None and labels is not None and _over_limit(cw):
                    # the rows sum the class weights too (label smoothing), and this mean is invariant to their scale
                    cw = cwd = scaled_weights(cw, sum_exponent((cw,), C), x.dtype, C)
                    denom = _mean_denominator(spec, labels, ignore, rw, cw, R, threads=threads)
                # (float64 limit: the rows multiply by w / sum(w) in float64, and float32 sums cannot overflow)
                rw, denom = fit_weights(rw, denom, x.dtype, R, lambda: sum_exponent((rw, cwd), R),
                                        lambda w2: _mean_denominator(spec, labels, ignore, w2, cw, R, threads=threads),
                                        WEIGHT_SUM_LIMIT[_F64])
            scale = mean_scale(denom)
        else:
            denom = scale = 1.0
            if rw is not None and not (reduce and every_row) and not weights_checked:
                check_weight_values(rw, name, lead)
        if grad_scale is not None:
            scale = grad_scale
        v = None
        # the outputs this call allocates: in one block when there are several (fresh_outputs)
        new_g, new_h = want_grad and grad_out is None, want_hess and hess_out is None
        if new_h:
            g, h = fresh_outputs(x.shape, x.dtype, new_g, new_h)
        else:
            g, h = np.empty(x.shape, x.dtype) if new_g else None, None
        if want_grad and g is None:
            # grad_out may be the logits themselves: the kernels read each element before writing it
            g = _check_out(grad_out, x, "grad_out", name)
        if want_hess:
            if h is None:
                h = _check_out(hess_out, x, "hess_out", name)
            if g is not None and np.may_share_memory(g, h):
                raise ValueError(f"{name}: grad_out and hess_out must not overlap")
            for out, what in ((g, "grad_out"), (h, "hess_out")):
                if out is not None and np.may_share_memory(out, x):
                    raise ValueError(f"{name}: grad_hess cannot write into the logits (both outputs need them): "
                                     f"{what} shares memory with them; pass a separate array")
        others = ((target, "target"), (labels, "target"), (q, "target"), (rw, "sample_weight"),
                  (sample_weight, "sample_weight"), *given)
        if grad_out is not None:
            _check_overlap(g, "grad_out", name, x, True, others)
        if hess_out is not None:
            _check_overlap(h, "hess_out", name, x, False, others)
        if want_value and reduction == "none":
            v = np.empty(lead, x.dtype)
        unit_hess = h is not None and hessian == "ones"
        if metrics is None:
            total = module.multiclass(
                name, packed, ignore, C, x.reshape(-1), labels, None if q is None else q.reshape(-1), rw, cw,
                scale, reduce,
                None if v is None else v.reshape(-1),
                None if g is None else g.reshape(-1),
                None if (h is None or unit_hess) else h.reshape(-1),
                threads,
            )
        else:
            if h is not None:
                raise ValueError(f"{name}: metrics come with the value (the call, value_and_grad), not grad_hess")
            total, rows = _logit_metrics_run(module, name, packed, ignore, C, x, labels, rw, cw, scale, reduce,
                                             v, g, metrics, threads)
        if reduce and reduction == "sum" and rw is not None and every_row and not math.isfinite(total):
            check_weight_total(total, rw, name, lead)
        if reduce and refit and (grad_out is None or not np.may_share_memory(g, x)):
            total, denom = refit_total(total, denom, rw, x.dtype, R, lambda w2: module.multiclass(
                name, packed, ignore, C, x.reshape(-1), labels, None if q is None else q.reshape(-1), w2, cw, 1.0,
                True, None, None, None, _config.get_num_threads()))
        if unit_hess:
            _unit_hessian_rows(h, labels, ignore, rw, scale)
        state = None if metrics is None else _logit_metrics.fold_kept(
            metrics, rows, None if all_kept else labels, ignore, rw_given)
        return _results(outputs, reduction, total, denom, v, g, h, state)

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
            return LossMemoryError(f"{self.name}: out of memory ({err}); {fix}")
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
        return LossMemoryError(f"{self.name}: cannot allocate {size:.3g} {unit} for {role}, {np.dtype(dtype)} of "
                           f"shape {shape}; {fix}")

    def __call__(self, pred, target, *args, reduction="mean", sample_weight=None, backend=None, metrics=None,
                 **params):
        if args:
            raise self._positional("__call__", args)
        return self._run(pred, target, reduction, sample_weight, backend, params, VALUE, metrics=metrics)

    def value_and_grad(self, pred, target, *args, reduction="mean", sample_weight=None, grad_out=None,
                       backend=None, metrics=None, **params):
        """(value, gradient of that value with respect to pred).

        ``metrics`` (cross_entropy with hard labels): names of classification metrics computed in the same pass
        ("accuracy", "top5", "nll", "entropy", "confidence", "ece15", ...); the call then returns
        ``(value, gradient, metrics)`` (``loss(...)``: ``(value, metrics)``), ``metrics`` a dict of floats whose
        ``.state`` merges with other calls' (see fusedloss.metrics.logit_metrics). The losses on a binary score
        (binary_cross_entropy_with_logits, binary_focal, binary_cross_entropy) take "accuracy", "brier", "rocN",
        "apN" and "eceN" (see fusedloss.metrics.binary_logit_metrics)."""
        if args:
            raise self._positional("value_and_grad", args)
        return self._run(pred, target, reduction, sample_weight, backend, params, VALUE_AND_GRAD, grad_out,
                         metrics=metrics)

    def grad(self, pred, target, *args, reduction="mean", sample_weight=None, grad_out=None, backend=None,
             **params):
        """The gradient of the loss value with respect to pred, in pred's shape and dtype."""
        if args:
            raise self._positional("grad", args)
        return self._run(pred, target, reduction, sample_weight, backend, params, GRAD, grad_out)

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
        return self._run(pred, target, reduction, sample_weight, backend, params, GRAD_HESS, grad_out, hess_out,
                         hessian)

    def partial(self, pred, target, *, sample_weight=None, backend=None, **params):
        """A mergeable partial result: the ``LossState`` of this piece of the data (see ``fusedloss.merge``).

        It holds the float64 sum of the weighted losses, what "mean" divides by and the count, so that the
        states of the pieces of a split merge into the state of the whole: ``state.value("mean")`` of the
        merge equals ``loss(pred, target, ...)`` on the whole up to float64 summation order.
        """
        from ._state import partial

        try:
            return partial(self, pred, target, sample_weight, backend, params)
        except LossMemoryError:  # the call's own, which says it
            raise
        except MemoryError as err:  # NumPy's, in partial's own preparation of the arrays
            raise self._memory_error(err, pred) from err
