"""The pairwise loss objects: argument checking, output allocation and the reduction, for ``fusedloss.<name>``
of kind "pairwise" (``margin_ranking``, ``cosine_embedding``, ``triplet_margin``).

A pairwise loss compares two or three arrays of one shape row by row (``LossSpec.inputs``), with a target of
one value per row where it has one (``row_target``). A row is a vector along the last axis (``vector_rows``:
shape ``(..., D)``, one loss per leading index) or a single element (``margin_ranking``: every element is a
row, D = 1). Everything is checked here before a backend runs; the backends receive flat C-contiguous arrays
of one dtype and return one float64 loss per row, reduced here by the compensated sum of ``_validate._weight_sum``
(within a few ulp of the exact sum, the same bits for any thread count; math.fsum over a Python list of the
rows would cost several times the kernel on large inputs).

Backend contract, ``pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads)``:
``x1``, ``x2`` (and ``x3`` for three inputs, else None) flat float32/float64 arrays of N * D elements;
``y`` float64 (N,) or None; ``loss_out`` float64 (N,) receives each row's loss; ``gscale`` float64 (N,) or None:
when given, ``g1``, ``g2`` (``g3``) like the inputs receive ``gscale[i]`` times the gradient of row i's loss
with respect to each input (they never overlap the inputs).

A backend may also run the losses whose row is one element (not ``vector_rows``) as elementwise losses run, with
no float64 array per element in or out, through ``pairwise_elements(loss, packed, x1, x2, x3, y, w, denom, reduce,
value_out, g1, g2, g3, nthreads) -> float``: the inputs and ``y`` (the target, or None) flat arrays of N elements
of one dtype; ``w`` float64 (N,) weights or None; returns the float64 sum of ``w_i l_i`` when ``reduce`` (else
0.0), in fixed blocks (the same bits for any thread count); ``value_out`` (or None) receives ``w_i l_i``, ``g1``,
``g2`` (``g3``) (or None) ``w_i / denom`` times the gradient of ``l_i``, all in the inputs' dtype. Where a backend
has it, these losses take it (the C++ and Numba CPU backends); the others run them row by row.
"""

from __future__ import annotations

import math

import numpy as np

from . import _config
from ._dispatch import Loss, LossMemoryError, resolve_host_backend
from ._validate import (REDUCTIONS, _as_pred, _check_out, _weight_sum, as_numeric, fit_weights, fresh_outputs,
                        is_device_array, reduced_value, shape_of, sum_exponent, weight_values_error)


class PairwiseLoss(Loss):
    """A loss of two or three arrays compared row by row: ``loss(*arrays, reduction="mean", sample_weight=None,
    backend=None, **params)``; the arrays are the spec's ``inputs`` and then, where it has one, the target.

    - The inputs share one shape and dtype (float32 or float64; others are converted to the first one's).
      With ``vector_rows`` a row is the last axis, ``(..., D)``, and the target (and ``sample_weight``) has the
      leading shape ``(...)``, a scalar for 1-D inputs; otherwise the target has the inputs' shape.
    - ``reduction``: "mean" (``sum_i w_i l_i / sum_i w_i``, the mean over rows without weights, as PyTorch),
      "sum" or "none" (``w_i l_i`` per row, in the inputs' dtype, of the rows' shape).
    - ``value_and_grad`` returns ``(value, (g_1, ..., g_k))``: the gradient of the value with respect to each
      input, in its shape and dtype (for "none": of the sum of the returned values).
    """

    def __init__(self, spec):
        super().__init__(spec)
        self._args = (*spec.inputs, "target") if spec.row_target else spec.inputs
        self.__doc__ = (f"{type(self).__doc__}\n\n{self.name}({', '.join(self._args)}, ...): {spec.summary}.\n\n"
                        f"{spec.formula}")

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss loss {self.name}({', '.join(self._args)}, {params})>"

    # --- checking and preparing the arguments ------------------------------------------------------------

    def _prepare(self, arrays, reduction, sample_weight, grad_outs, want_grad, backend):
        """(inputs as C-contiguous arrays, rows' shape, D, N, y (N,) or None, weights float64 or None, gradient
        outputs or None, the broadcast inputs' shapes, the backend module, whether it runs ``pairwise_elements``),
        every argument checked; y in the inputs' dtype for ``pairwise_elements``, else float64."""
        name, spec = self.name, self.spec
        if len(arrays) != len(self._args):
            raise TypeError(f"{name}() takes {len(self._args)} arrays ({', '.join(self._args)}), got {len(arrays)}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        for a, what in zip(arrays[:len(spec.inputs)], spec.inputs):
            if is_device_array(a):
                raise TypeError(f"{name}: {what} is a device array and {spec.inputs[0]} a host array; pass every "
                                "input on the same side")
        first = _as_pred(arrays[0], name, spec.inputs[0])
        xs = [first]
        given = [None] * len(spec.inputs)  # a broadcast input's (shape as given, shape it broadcasts from)
        for k, (a, what) in enumerate(zip(arrays[1:len(spec.inputs)], spec.inputs[1:]), 1):
            x = as_numeric(a, first.dtype, what, name)
            if x.shape != first.shape and what in spec.broadcast_inputs:
                given[k] = (x.shape, self._broadcast_shape(x.shape, first.shape, what))
                x = np.ascontiguousarray(np.broadcast_to(x.reshape(given[k][1]), first.shape))
            if x.shape != first.shape:
                raise ValueError(f"{name}: {what} must have {spec.inputs[0]}'s shape {first.shape}, got {x.shape}")
            if what in spec.nonnegative_inputs and x.size and np.minimum.reduce(x, axis=None) < 0:
                raise ValueError(f"{name}: {what} has negative entries; it must be >= 0")
            xs.append(x)
        shape = first.shape
        module = resolve_host_backend(backend, spec, first.dtype)
        elements = not spec.vector_rows and getattr(module, "pairwise_elements", None) is not None
        rows, D, N, y, w = self._check_rows(shape, arrays[-1] if spec.row_target else None, sample_weight,
                                            first.dtype if elements else np.float64)
        gs = None
        if want_grad:
            if grad_outs is None:
                gs = fresh_outputs(shape, first.dtype, *(True for _ in xs))
            elif any(given):
                raise ValueError(f"{name}: grad_out takes arrays of {spec.inputs[0]}'s shape; with a broadcast "
                                 f"{spec.broadcast_inputs[0]} leave it out")
            else:
                if len(grad_outs) != len(xs):
                    raise ValueError(f"{name}: grad_out must be a tuple of {len(xs)} arrays, one per input")
                gs = [_check_out(g, first, f"grad_out[{k}]", name, spec.inputs[0]) for k, g in enumerate(grad_outs)]
                reads = [*xs, *arrays, sample_weight]
                for k, g in enumerate(gs):
                    if any(isinstance(r, np.ndarray) and np.may_share_memory(g, r) for r in reads) or \
                            any(np.may_share_memory(g, h) for h in gs[:k]):
                        raise ValueError(f"{name}: grad_out[{k}] overlaps an input or another output")
        return xs, rows, D, N, y, w, gs, given, module, elements

    def _broadcast_shape(self, given, shape, what):
        """The shape (of ``given``'s size) that broadcasts to ``shape`` by NumPy's rules, for a broadcast input
        as PyTorch takes it: ``shape`` without its last axis, one axis of length 1 where ``shape`` has another,
        or a scalar."""
        if given == () or (len(shape) and given == shape[:-1]):
            return (*given, 1) if given else ()
        if len(given) == len(shape) and sum(g for s, g in zip(shape, given) if s != g) == 1:
            return given
        raise ValueError(f"{self.name}: {what} must have {self.spec.inputs[0]}'s shape {shape}, that shape without "
                         f"its last axis, or one axis of length 1 where it has another, got {given}")

    def _check_rows(self, shape, target, sample_weight, target_dtype=np.float64):
        """(rows' shape, D, N, y (N,) of ``target_dtype`` or None, weights float64 (N,) or None) for inputs of
        ``shape``: every check of the target and the weights (host and device paths alike)."""
        name, spec = self.name, self.spec
        if spec.vector_rows:
            if len(shape) == 0:
                raise ValueError(f"{name}: {spec.inputs[0]} must have a vector axis (..., D), got a scalar")
            rows, D = shape[:-1], shape[-1]
        else:
            rows, D = shape, 1
        N = math.prod(rows)
        y = None
        if spec.row_target:
            if shape_of(target, "target", name) != rows:
                per = "one value per row, the inputs' shape without the last axis" if spec.vector_rows else \
                    "the inputs' shape"
                raise ValueError(f"{name}: target must have shape {rows} ({per}), got {np.shape(target)}")
            y = as_numeric(target, target_dtype, "target", name).reshape(N)
        w = None
        if sample_weight is not None:
            if shape_of(sample_weight, "sample_weight", name) != rows:
                raise ValueError(f"{name}: sample_weight must have shape {rows} (one weight per row), got "
                                 f"{np.shape(sample_weight)}")
            w = as_numeric(sample_weight, np.float64, "sample_weight", name).reshape(N)
            if w.size and not (np.all(np.isfinite(w)) and w.min() >= 0):
                raise weight_values_error(name, w, rows)
        return rows, D, N, y, w

    @staticmethod
    def _weights(reduction, w, N):
        """(each row's weight in the value's sum, None for unit weights; the divisor of that sum): row i's factor
        in the gradient is its weight / the divisor."""
        if reduction != "mean":
            return w, 1.0
        if w is None:
            return None, float(N)
        # weights whose sum overflows: scaled by a power of two (the mean is the same), the shared rule
        return fit_weights(w, _weight_total(w), np.float64, N, lambda: sum_exponent((w,), N), math.fsum)

    @staticmethod
    def _coefficients(reduction, w, N):
        """(each row's factor in the gradient, each row's weight in the value's sum, the divisor of that sum)."""
        weights, denom = PairwiseLoss._weights(reduction, w, N)
        coef = np.ones(N) if weights is None else weights
        with np.errstate(divide="ignore", invalid="ignore"):
            return coef / denom, coef, denom

    def _kernel(self, module, params, xs, D, N, y, coef, gs):
        """Run the host backend's row kernel: the float64 loss of each row (and the gradients into ``gs``)."""
        packed = self.spec.packed(params)
        losses = np.empty(N)
        flat = [x.reshape(-1) for x in xs]
        gflat = [g.reshape(-1) for g in gs] if gs is not None else [None] * len(xs)
        x3, g3 = (flat[2], gflat[2]) if len(xs) == 3 else (None, None)
        module.pairwise(self.name, packed, D, flat[0], flat[1], x3, y, coef if gs is not None else None, losses,
                        gflat[0], gflat[1], g3, _config.get_num_threads())
        return losses

    def _elements(self, module, params, xs, y, w, denom, reduce, value_out, gs):
        """Run the backend's ``pairwise_elements`` (one-element rows): the float64 sum of ``w_i l_i`` when
        ``reduce``; the values into ``value_out``, ``w_i / denom`` times the gradients into ``gs`` (or None)."""
        flat = [x.reshape(-1) for x in xs]
        gflat = [g.reshape(-1) for g in gs] if gs is not None else [None] * len(xs)
        x3, g3 = (flat[2], gflat[2]) if len(xs) == 3 else (None, None)
        return module.pairwise_elements(self.name, self.spec.packed(params), flat[0], flat[1], x3, y, w, denom, reduce,
                                        None if value_out is None else value_out.reshape(-1), gflat[0], gflat[1], g3,
                                        _config.get_num_threads())

    def _run_pairwise(self, arrays, reduction, sample_weight, backend, kwargs, want_value, want_grad,
                      grad_outs=None):
        params = self._params(kwargs)[0] if kwargs else self._default_params[0]
        if arrays and is_device_array(arrays[0]):
            from ._pairwise_device import run  # only device users pay for importing the CUDA path

            return run(self, arrays, reduction, sample_weight, backend, params, want_value, want_grad, grad_outs)
        try:
            xs, rows, D, N, y, w, gs, given, module, elements = self._prepare(arrays, reduction, sample_weight,
                                                                              grad_outs, want_grad, backend)
            if elements:
                weights, denom = self._weights(reduction, w, N)
                reduce = want_value and reduction != "none"
                value = np.empty(rows, xs[0].dtype) if want_value and not reduce else None
                total = self._elements(module, params, xs, y, weights, denom, reduce, value, gs)
            else:
                coef, weights, denom = self._coefficients(reduction, w, N)
                losses = self._kernel(module, params, xs, D, N, y, coef, gs)
            if gs is not None:  # a broadcast input's gradient: summed over the axes it was broadcast along
                gs = [g if b is None else _sum_to(g, *b) for g, b in zip(gs, given)]
        except LossMemoryError:
            raise
        except MemoryError as err:  # NumPy's bare one: which array, how large, and what to do (as Loss._run)
            raise self._memory_error(err, arrays[0]) from err
        grads = tuple(gs) if gs is not None else None
        if not want_value:
            return grads
        if elements:
            if reduction != "none":  # the kernel's weighted sum, then divided: the partial state's value, bit for bit
                value = reduced_value(total, reduction, denom)
        elif reduction == "none":
            with np.errstate(invalid="ignore"):
                value = (losses if w is None else losses * w).astype(xs[0].dtype).reshape(rows)
        else:  # the weighted sum, then divided: the partial state's value, bit for bit
            with np.errstate(invalid="ignore", over="ignore"):
                value = reduced_value(_weight_sum(weights * losses), reduction, denom)
        return (value, grads) if want_grad else value

    # --- the public entry points -------------------------------------------------------------------------

    def __call__(self, *arrays, reduction="mean", sample_weight=None, backend=None, **params):
        return self._run_pairwise(arrays, reduction, sample_weight, backend, params, True, False)

    def value_and_grad(self, *arrays, reduction="mean", sample_weight=None, grad_out=None, backend=None, **params):
        """(value, (gradient with respect to each input, in the order of the inputs)); ``grad_out``: optional
        tuple of preallocated arrays, one per input."""
        return self._run_pairwise(arrays, reduction, sample_weight, backend, params, True, True, grad_out)

    def grad(self, *arrays, reduction="mean", sample_weight=None, grad_out=None, backend=None, **params):
        """The gradients of the loss value with respect to each input (a tuple)."""
        return self._run_pairwise(arrays, reduction, sample_weight, backend, params, False, True, grad_out)

    def grad_hess(self, *args, **kwargs):
        raise TypeError(f"{self.name} has no Hessian (a dense D x D block per row, not formed): use "
                        f"{self.name}.value_and_grad(...) or {self.name}.grad(...)")

    def partial(self, *arrays, sample_weight=None, backend=None, **params):
        """A mergeable partial result over these rows: a ``LossState`` (see ``fusedloss.merge``): ``sum`` the
        exactly rounded sum of ``w_i l_i``, ``denominator`` the number of rows (or the weights' sum), ``count``
        the number of rows. Host arrays only."""
        from ._state import LossState

        checked = self._params(params)[0] if params else self._default_params[0]
        try:
            xs, rows, D, N, y, w, _, _, module, elements = self._prepare(arrays, "sum", sample_weight, None, False,
                                                                         backend)
            if elements:
                total = self._elements(module, checked, xs, y, w, 1.0, True, None, None)
            else:
                losses = self._kernel(module, checked, xs, D, N, y, None, None)
                with np.errstate(invalid="ignore", over="ignore"):
                    total = _weight_sum(losses if w is None else w * losses)
        except MemoryError as err:
            raise self._memory_error(err, arrays[0]) from err
        denominator = float(N) if w is None else _weight_total(w)
        return LossState(self.name, total, denominator, N)


def _sum_to(g: np.ndarray, shape: tuple, bshape: tuple) -> np.ndarray:
    """``g`` summed (in float64) over the axes along which an array of ``bshape`` was broadcast, in ``shape``."""
    lead = g.ndim - len(bshape)
    axes = (*range(lead), *(lead + i for i, s in enumerate(bshape) if s == 1 and g.shape[lead + i] != 1))
    return g.sum(axis=axes, dtype=np.float64).astype(g.dtype).reshape(shape) if axes else g.reshape(shape)


def _weight_total(w: np.ndarray) -> float:
    """The compensated sum of finite weights (inf where it overflows)."""
    with np.errstate(over="ignore"):
        return _weight_sum(w)
