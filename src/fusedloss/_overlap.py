"""The overlap loss objects (kind "overlap": ``dice``, ``tversky``): argument checking, the two kernel passes and
the combination of their sums, for ``fusedloss.<name>``.

An overlap loss scores ``input`` of shape ``(N, C, *spatial)`` (``mode="binary"``: any shape ``(N, ...)``, one
class) against class indices ``(N, *spatial)`` (``mode="multiclass"``) or 0/1 targets of the input's shape. Its
value is a ratio of sums over many pixels per class, so it has no per-element or per-row loss: a backend runs
two passes over the elements, the per-sample and per-class sums (I, P, Y, see ``_reference_overlap``) and then
the gradient from one coefficient pair per sample and class; the per-class losses, their mean and those
coefficients come from the sums in float64 here (``_reference_overlap.combine``), the same for every backend.

Backend contract, on flat C-contiguous arrays: ``overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore,
sums, nthreads)`` writes ``sums`` float64 (N * C * 3: I, P, Y per sample and class); ``overlap_grad(act, x,
labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads)`` writes into ``grad`` (like ``x``) the gradient of
``sum aI I + aP P`` with ``coef`` float64 (N * C * 2: aI, aP). ``x`` float32/float64 (N * C * S); ``act`` 0 (the
scores are probabilities), 1 (sigmoid) or 2 (softmax over C); ``labels`` int64 (N * S) class indices in [0, C) or
``ignore`` (multiclass), else None and ``y`` like ``x`` (targets; pixels equal to ``ignore`` count for nothing).
"""

from __future__ import annotations

import math

import numpy as np

from . import _config
from ._dispatch import Loss, LossMemoryError, resolve_host_backend
from ._reference_overlap import activation, combine, terms
from ._validate import (REDUCTIONS, _as_pred, _check_domain, _check_out, _extremes, _first_bad, as_numeric,
                        domain_error, is_device_array, label_range_error, shape_of, weight_values_error)



def _check_masks(y: np.ndarray, ignore, name: str) -> None:
    """Targets of modes "binary" and "multilabel": masks (or soft masks) in [0, 1], but for the pixels marked
    ``ignore_index`` (NaN passes: it propagates). One pass over the extremes clears the common case; the masks
    are built only when a value lies outside [0, 1]."""
    if y.size == 0:
        return
    lo, hi = _extremes(y)
    if lo >= 0 and hi <= 1:
        return
    bad = (y < 0) | (y > 1)
    if ignore is not None:
        bad &= y != ignore
    if bad.any():
        raise domain_error(name, "target", "unit", _first_bad(y, bad))

class OverlapLoss(Loss):
    """A segmentation overlap loss: ``loss(input, target, reduction="mean", sample_weight=None, backend=None,
    **params)``.

    - ``input`` float32/float64 ``(N, C, *spatial)`` (``mode="binary"``: ``(N, ...)``); ``target`` integer class
      indices ``(N, *spatial)`` (multiclass) or targets of the input's shape (binary, multilabel).
    - ``reduction``: "mean" (segmentation_models_pytorch's value: the weighted mean over classes, and over samples
      with ``per_sample``, raised to ``gamma``), "sum" (the sum of the weighted per-class terms) or "none" (those
      terms, ``(C,)``, or ``(N, C)`` with ``per_sample``, in the input's dtype); "sum" and "none" need gamma = 1.
    - ``sample_weight`` ``(N,)``: weights of the samples in the mean, with ``per_sample=True`` only (the batch
      variant has one ratio of sums over all samples: no per-sample term to weight).
    - ``value_and_grad`` returns ``(value, gradient with respect to input)`` (for "none": of the sum of the
      returned values). No Hessian.
    """

    def __init__(self, spec):
        super().__init__(spec)
        self.__doc__ = f"{type(self).__doc__}\n\n{self.name}(input, target, ...): {spec.summary}.\n\n{spec.formula}"

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss loss {self.name}(input, target, {params})>"

    # --- checking and preparing the arguments ------------------------------------------------------------

    def _prepare(self, x, target, params, reduction, sample_weight):
        """(x C-contiguous, (N, C, S), labels int64 (N * S) or None, y like x or None, sample weights or None)."""
        if is_device_array(x):
            raise TypeError(f"{self.name}: input is a device array and target a host array; pass both on one side")
        x = self._as_input(x)
        checked = self._check(x.shape, x.dtype, target, params, reduction, sample_weight)
        self._check_scores(x, params)
        return (x, *checked)

    def _check_scores(self, x, params) -> None:
        """Probabilities (``from_logits=False``) must lie in [0, 1], as the score's ratio assumes."""
        if not params["from_logits"]:
            _check_domain(x, "unit", "input", self.name)

    def _as_input(self, x):
        """``x`` (or an empty array of its dtype) by the in-memory rules: float32/float64, C-contiguous."""
        return _as_pred(x, self.name, "input")

    def _check(self, shape, dtype, target, params, reduction, sample_weight):
        """((N, C, S), labels int64 (N * S) or None, y of ``dtype`` or None, sample weights or None) for an input of
        ``shape``: every check but the input's own (host and device paths alike)."""
        t = np.asarray(target) if type(target) is not np.ndarray else target
        (N, C, S), w = self._layout(shape, t, params, reduction, sample_weight)
        if params["mode"] == "multiclass":
            return (N, C, S), self._labels(t, shape, C, params["ignore_index"]), None, w
        y = as_numeric(target, dtype, "target", self.name)
        _check_masks(y, params["ignore_index"], self.name)
        return (N, C, S), None, y.reshape(-1), w

    def _layout(self, shape, t, params, reduction, sample_weight):
        """((N, C, S), sample weights or None): the checks that the shapes, the target's dtype, the parameters and the
        sample weights show (``t``: anything with ``shape`` and ``dtype``; its values are not read), for
        ``fusedloss.dask`` too, before any block runs."""
        name = self.name
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        if reduction != "mean" and params.get("gamma", 1.0) != 1.0:
            raise ValueError(f"{name}: gamma applies to the mean over classes; reduction={reduction!r} needs "
                             f"gamma=1, got {params['gamma']!r}")
        mode = params["mode"]
        if mode == "binary":
            if len(shape) < 1:
                raise ValueError(f"{name}: input must have a batch axis (N, ...), got a scalar")
            if params["class_weights"] is not None:
                raise ValueError(f"{name}: class_weights needs mode='multiclass' or 'multilabel' (binary has one "
                                 "class)")
            N, C = shape[0], 1
        else:
            if len(shape) < 2:
                raise ValueError(f"{name}: input must have a class axis, (N, C, *spatial), got shape {shape}")
            N, C = shape[:2]
            if C == 0:
                raise ValueError(f"{name}: input has no classes (shape {shape}: C = 0 on axis 1)")
        S = math.prod(shape[2 if mode != "binary" else 1:])
        if mode == "multiclass":
            lead = shape[:1] + shape[2:]
            if t.dtype.kind not in "iu":
                hint = " (cast class indices with .astype(np.int64))" if t.shape == lead else ""
                raise TypeError(f"{name}: target must hold integer class indices in mode='multiclass', got dtype "
                                f"{t.dtype}{hint}")
            if t.shape != lead:
                raise ValueError(f"{name}: target must have the input's shape without the class axis {lead}, got "
                                 f"{t.shape}")
        elif t.shape != shape:
            raise ValueError(f"{name}: target must have the input's shape {shape} in mode={mode!r}, got {t.shape}")
        cw = params["class_weights"]
        if isinstance(cw, np.ndarray) and cw.shape != (C,):
            raise ValueError(f"{name}: class_weights must have one weight per class ({C}), got shape {cw.shape}")
        w = None
        if sample_weight is not None:
            if not params["per_sample"]:
                raise ValueError(f"{name}: sample_weight needs per_sample=True (the batch variant's score is one "
                                 "ratio of sums over all samples, with no per-sample term to weight)")
            if shape_of(sample_weight, "sample_weight", name) != (N,):
                raise ValueError(f"{name}: sample_weight must have shape ({N},) (one weight per sample), got "
                                 f"{np.shape(sample_weight)}")
            w = as_numeric(sample_weight, np.float64, "sample_weight", name)
            if not (np.all(np.isfinite(w)) and (w.size == 0 or w.min() >= 0)):
                raise weight_values_error(name, w)
        return (N, C, S), w

    def _labels(self, t, shape, C, ignore):
        """The class indices ``t`` (of ``shape`` without the class axis) as int64 (N * S), each in [0, C) or
        ``ignore``."""
        if t.dtype.kind == "u" and t.size and t.max() >= 2**63:
            raise ValueError(f"{self.name}: target holds a class index >= 2**63 (out of range [0, {C}))")
        labels = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
        bad = (labels < 0) | (labels >= C)
        if ignore is not None:
            bad &= labels != ignore
        if bad.any():
            at = int(np.argmax(bad))
            raise label_range_error(f"{self.name}: target", int(labels[at]),
                                    tuple(int(i) for i in np.unravel_index(at, shape[:1] + shape[2:])), C, ignore)
        return labels

    @staticmethod
    def _kernel_args(x, labels, y, dims, params) -> tuple:
        """The arguments that both passes' kernels take first, for checked arrays (``dims`` = (N, C, S))."""
        N, C, S = dims
        ignore = params["ignore_index"]
        return (activation(params), x.reshape(-1), labels, y, N, C, S, ignore is not None,
                0 if ignore is None else ignore)

    @staticmethod
    def _first_pass(module, args) -> np.ndarray:
        """The sums I, P, Y per sample and class, (N, C, 3) float64, on the backend ``module``."""
        N, C = args[4], args[5]
        sums = np.zeros(N * C * 3)
        module.overlap_sums(*args, sums, _config.get_num_threads())
        return sums.reshape(N, C, 3)

    @staticmethod
    def _second_pass(module, args, coef, g) -> None:
        """The gradient of ``sum aI I + aP P`` (``coef`` (N, C, 2)) into ``g``, with the first pass's ``args``."""
        module.overlap_grad(*args, np.ascontiguousarray(coef).reshape(-1), g.reshape(-1), _config.get_num_threads())

    def _run_overlap(self, x, target, reduction, sample_weight, backend, kwargs, want_value, want_grad, grad_out,
                     term_scale=None):
        """``term_scale`` (reduction "none" only): the gradient is that of ``sum(term_scale * terms)`` (an autograd
        backward's grad_output, fusedloss.torch)."""
        params = self._params(kwargs)[0] if kwargs else self._default_params[0]
        if is_device_array(x):
            from ._overlap_device import run  # only device users pay for importing the CUDA path

            return run(self, x, target, reduction, sample_weight, backend, params, want_value, want_grad, grad_out)
        try:
            x, (N, C, S), labels, y, w = self._prepare(x, target, params, reduction, sample_weight)
            g = None
            if want_grad:
                g = (np.empty(x.shape, x.dtype) if grad_out is None
                     else _check_out(grad_out, x, "grad_out", self.name, "input"))
                if grad_out is not None and any(isinstance(a, np.ndarray) and np.may_share_memory(g, a)
                                                for a in (x, target, sample_weight)):
                    raise ValueError(f"{self.name}: grad_out overlaps an input")
            module = resolve_host_backend(backend, self.spec, x.dtype)
            kernel_args = self._kernel_args(x, labels, y, (N, C, S), params)
            value, coef = combine(self.name, self._first_pass(module, kernel_args), params, reduction, w)
            if term_scale is not None:
                coef = coef * np.asarray(term_scale, dtype=np.float64).reshape(-1 if params["per_sample"] else 1, C, 1)
            if g is not None:
                self._second_pass(module, kernel_args, coef, g)
        except LossMemoryError:
            raise
        except MemoryError as err:
            raise self._memory_error(err, x) from err
        if reduction == "none":
            value = terms(value, params, N, C, x.dtype)
        if not want_value:
            return g
        return (value, g) if want_grad else value

    # --- the public entry points -------------------------------------------------------------------------

    def __call__(self, input, target, *, reduction="mean", sample_weight=None, backend=None, **params):
        return self._run_overlap(input, target, reduction, sample_weight, backend, params, True, False, None)

    def value_and_grad(self, input, target, *, reduction="mean", sample_weight=None, grad_out=None, backend=None,
                       **params):
        """(value, gradient with respect to input); ``grad_out``: an optional preallocated array like input."""
        return self._run_overlap(input, target, reduction, sample_weight, backend, params, True, True, grad_out)

    def grad(self, input, target, *, reduction="mean", sample_weight=None, grad_out=None, backend=None, **params):
        """The gradient of the loss value with respect to input."""
        return self._run_overlap(input, target, reduction, sample_weight, backend, params, False, True, grad_out)

    def grad_hess(self, *args, **kwargs):
        raise TypeError(f"{self.name} has no Hessian (its value is a ratio of sums over every pixel of a class, so "
                        f"the Hessian is a dense block over them, not formed): use {self.name}.value_and_grad(...) "
                        f"or {self.name}.grad(...)")

    def partial(self, *args, **kwargs):
        raise TypeError(f"{self.name} has no mergeable partial result (its value is a ratio of sums, not a sum of "
                        "per-row terms); call it on the whole batch")
