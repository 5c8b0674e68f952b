"""The CTC loss object: argument checking, output allocation and the reduction, for ``fusedloss.ctc``.

CTC takes ``(scores, targets, input_lengths, target_lengths)`` instead of ``(pred, target)``, so it has its own
``Loss`` subclass with that signature. Everything is checked here before a backend runs (shapes, dtypes,
lengths, label range, blank not used as a label, weights, the output buffer); the backends receive arrays
they can trust and return one float64 loss per sequence, which is reduced here in index order with
``math.fsum`` (exactly rounded, so the value does not depend on the thread count or on the summation order).

Backend contract, ``ctc(x, T, N, C, batch_first, log_probs, labels, offsets, target_lengths, input_lengths,
blank, zero_infinity, gscale, loss_out, grad_out, nthreads) -> float``: ``x`` the C-contiguous scores
(float32 or float64; (T, N, C), or (N, T, C) with ``batch_first``); ``labels`` int64, sequence ``n``'s
labels are ``labels[offsets[n]:offsets[n] + target_lengths[n]]`` (each in [0, C), none equal to ``blank``);
``input_lengths`` int64 in [0, T]; ``loss_out`` float64 (N) receives each sequence's loss (0 for an
infinite one with ``zero_infinity``); ``grad_out`` (None or like ``x``) receives ``gscale[n] * (exp(lp) -
gamma)`` on the frames ``t < T_n`` of sequence ``n`` and 0 on the others (NaN for an infinite loss without
``zero_infinity``, 0 with it). Returns the peak bytes of scratch memory the kernel held (0 if unknown).
"""

from __future__ import annotations

import math

import numpy as np

from . import _config
from ._dispatch import Loss, LossMemoryError, resolve_host_backend
from ._state import _exact_sum
from ._validate import (REDUCTIONS, _as_pred, _check_out, _check_overlap, as_numeric, fit_weights, is_device_array,
                        shape_of, sum_exponent, weight_values_error)


def _total(lengths: np.ndarray, bound: int) -> int:
    """sum(lengths), each in [0, bound], exactly: NumPy's int64 sum where it cannot wrap around."""
    if lengths.size * int(bound) < 2**63:
        return int(lengths.sum())
    return sum(int(v) for v in lengths)


def _int_array(v, what: str) -> np.ndarray:
    """An integer array (any integer dtype, or a sequence of Python ints) as a C-contiguous int64 array."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor (lengths often are)
        v = v.detach().cpu().numpy()
    arr = np.asarray(v)
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and not hasattr(v, "dtype"):  # [] converts to float64
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"ctc: {what} must hold integers (any integer dtype), got dtype {arr.dtype}; "
                            f"cast it with .astype(np.int64)")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"ctc: {what} holds values beyond int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _weight_total(w: np.ndarray) -> float:
    """The exactly rounded sum of finite weights, inf where it overflows."""
    try:
        return math.fsum(w)
    except OverflowError:
        return math.inf


def _ragged_targets(targets, N: int, tl: np.ndarray):
    """A list or tuple of label sequences of different lengths, one per sequence (each at least its
    ``target_lengths`` entry long): the first ``target_lengths[n]`` labels of each, concatenated. Targets of any
    other form come back as given (a list of equally long sequences is the padded form)."""
    if not isinstance(targets, (list, tuple)) or not targets:
        return targets
    try:
        np.shape(targets)
        return targets
    except ValueError:  # NumPy's "inhomogeneous shape": ragged
        pass
    if len(targets) != N:
        raise ValueError(f"ctc: ragged targets (a list of label sequences) need one sequence per batch element "
                         f"(N = {N}), got {len(targets)}")
    pieces = []
    for n, seq in enumerate(targets):
        try:
            a = _int_array(seq, f"targets[{n}]")
        except ValueError as err:  # a sequence ragged in itself
            raise ValueError(f"ctc: targets[{n}] must be a 1-D sequence of labels ({err})") from None
        if a.ndim != 1:
            raise ValueError(f"ctc: targets[{n}] must be a 1-D sequence of labels, got shape {a.shape}")
        if tl[n] > a.size:
            raise ValueError(f"ctc: target_lengths[{n}] = {tl[n]} exceeds the {a.size} labels of targets[{n}]")
        pieces.append(a[:tl[n]])
    return np.concatenate(pieces)


class SequenceLoss(Loss):
    """Connectionist Temporal Classification with the log-softmax fused in.

    ``ctc(logits, targets, input_lengths, target_lengths, *, blank=0, reduction="mean", zero_infinity=False,
    batch_first=False, inputs="logits", sample_weight=None, backend=None)``

    - ``logits``: (T, N, C) (PyTorch's layout) or (N, T, C) with ``batch_first=True``, float32 or float64:
      unnormalised scores (``inputs="logits"``, the log-softmax over C is part of the loss and the gradient
      is with respect to the scores: softmax - occupancy) or log-probabilities (``inputs="log_probs"``, as
      PyTorch; the gradient is PyTorch's, exp(log_probs) - occupancy).
    - ``targets``: padded (N, S), concatenated 1-D (``sum(target_lengths)`` labels), or a list of N label
      sequences of different lengths (each at least its ``target_lengths`` entry long; its first
      ``target_lengths[n]`` labels count), any integer dtype; labels lie in [0, C) and are never ``blank``.
    - ``input_lengths``, ``target_lengths``: one per sequence, ``0 <= input_lengths <= T``.
    - ``reduction``: "mean" (``sum_n w_n loss_n / max(S_n, 1) / sum_n w_n``: PyTorch's without weights), "sum"
      (``sum_n w_n loss_n``) or "none" (``w_n loss_n`` per sequence, in the scores' dtype). Reduced values are
      Python floats accumulated in float64.
    - A target that no alignment can emit (``T_n < S_n`` + repeated neighbours) has loss ``inf`` and a NaN
      gradient, or loss 0 and gradient 0 with ``zero_infinity=True`` (as PyTorch).
    - ``logits`` on the GPU (a Numba device array or any ``__cuda_array_interface__`` object) run on backend
      "cuda" and the gradient comes back as a device array (``_ctc_device``); ``partial`` gives mergeable
      states for splitting a batch (``fusedloss.merge``, ``fusedloss.dask.ctc``).
    """

    def __init__(self, spec):
        super().__init__(spec)
        self.__doc__ = f"{type(self).__doc__}\n\n{spec.summary}.\n\n{spec.formula}"

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss loss {self.name}(logits, targets, input_lengths, target_lengths, {params})>"

    # --- checking and preparing the arguments ------------------------------------------------------------

    def _prepare(self, logits, targets, input_lengths, target_lengths, reduction, sample_weight, params,
                 grad_out, want_grad):
        x = _as_pred(logits, "ctc", "logits")
        T, N, C, labels, offsets, tl, il, w = self._check_sequences(
            x.shape, targets, input_lengths, target_lengths, reduction, sample_weight, params)
        g = None
        if want_grad:
            if grad_out is None:
                g = np.empty(x.shape, x.dtype)
            else:
                g = _check_out(grad_out, x, "grad_out", "ctc", "logits")
                if np.may_share_memory(g, x):
                    raise ValueError("ctc: grad_out must not overlap logits (the kernel reads them after writing)")
                _check_overlap(g, "grad_out", "ctc", x, False, (
                    (targets, "targets"), (labels, "targets"), (input_lengths, "input_lengths"),
                    (target_lengths, "target_lengths"), (sample_weight, "sample_weight"), (w, "sample_weight")))
        return x, T, N, C, labels, offsets, tl, il, w, g

    @staticmethod
    def _check_sequences(shape, targets, input_lengths, target_lengths, reduction, sample_weight, params):
        """Every check that does not need the scores' values (host and device paths alike):
        (T, N, C, labels, offsets, target_lengths, input_lengths, weights or None), all on the host."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"ctc: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        if len(shape) != 3:
            layout = "(N, T, C)" if params["batch_first"] else "(T, N, C)"
            raise ValueError(f"ctc: logits must be 3-D {layout}, got shape {tuple(shape)}"
                             + (" (add the batch axis with x[:, None] for one sequence)" if len(shape) == 2 else ""))
        if params["batch_first"]:
            N, T, C = shape
        else:
            T, N, C = shape
        if C < 1:
            raise ValueError(f"ctc: logits need a class axis of length >= 1 (the blank), got shape {tuple(shape)}")
        blank = params["blank"]
        if not 0 <= blank < C:
            raise ValueError(f"ctc: blank must be a class index in [0, {C}), got {blank}")

        il = _int_array(input_lengths, "input_lengths").reshape(-1) if np.ndim(input_lengths) <= 1 else None
        tl = _int_array(target_lengths, "target_lengths").reshape(-1) if np.ndim(target_lengths) <= 1 else None
        for what, arr, given in (("input_lengths", il, input_lengths), ("target_lengths", tl, target_lengths)):
            if arr is None or arr.shape != (N,):
                raise ValueError(f"ctc: {what} must have one entry per sequence (N = {N}), got shape "
                                 f"{np.shape(given)}")
        if N and (il.min() < 0 or il.max() > T):
            bad = int(np.argmax((il < 0) | (il > T)))
            raise ValueError(f"ctc: input_lengths[{bad}] = {il[bad]} is outside [0, T = {T}]")
        if N and tl.min() < 0:
            bad = int(np.argmax(tl < 0))
            raise ValueError(f"ctc: target_lengths[{bad}] = {tl[bad]} is negative")

        targets = _ragged_targets(targets, N, tl)
        if len(np.shape(targets)) == 1:  # before a conversion copies it
            held = np.shape(targets)[0]
            if N and tl.max() > held:  # (also keeps the sum below from wrapping around)
                bad = int(np.argmax(tl > held))
                raise ValueError(f"ctc: target_lengths[{bad}] = {tl[bad]} exceeds the {held} labels of the "
                                 "concatenated targets")
            if held != (total := _total(tl, held)):
                raise ValueError(f"ctc: concatenated targets must hold sum(target_lengths) = {total} "
                                 f"labels, got {held}")
        if len(np.shape(targets)) == 2 and np.shape(targets)[0] != N:
            raise ValueError(f"ctc: padded targets must have shape (N = {N}, S), got {np.shape(targets)}")
        t = _int_array(targets, "targets")
        if t.ndim == 2:
            S = t.shape[1]
            if N and tl.max() > S:
                bad = int(np.argmax(tl > S))
                raise ValueError(f"ctc: target_lengths[{bad}] = {tl[bad]} exceeds the padded targets' width S = {S}")
            labels = t.reshape(-1)
            offsets = np.arange(N, dtype=np.int64) * S
            used = np.arange(S)[None, :] < tl[:, None]  # (N, S): the labels that count
            values = t[used]
        elif t.ndim == 1:
            total = _total(tl, t.size)
            if t.size != total:
                raise ValueError(f"ctc: concatenated targets must hold sum(target_lengths) = {total} labels, "
                                 f"got {t.size}")
            labels = t
            offsets = np.zeros(N, dtype=np.int64)
            if N > 1:
                np.cumsum(tl[:-1], out=offsets[1:])
            values = t
        else:
            raise ValueError(f"ctc: targets must be padded (N, S) or concatenated 1-D, got shape {t.shape}")
        if values.size:
            bad = (values < 0) | (values >= C) | (values == blank)
            if bad.any():
                v = int(values[int(np.argmax(bad))])
                why = "is the blank" if v == blank else f"is outside [0, C = {C})"
                raise ValueError(f"ctc: target label {v} {why}; labels must be classes in [0, {C}) other than "
                                 f"blank={blank}")

        w = None
        if sample_weight is not None:
            if shape_of(sample_weight, "sample_weight", "ctc") != (N,):
                raise ValueError(f"ctc: sample_weight must have one entry per sequence (N = {N}), got shape "
                                 f"{np.shape(sample_weight)}")
            w = as_numeric(sample_weight, np.float64, "sample_weight", "ctc")
            if w.size and not (np.all(np.isfinite(w)) and w.min() >= 0):
                raise weight_values_error("ctc", w)
        return T, N, C, labels, offsets, tl, il, w

    @staticmethod
    def _coefficients(reduction, w, tl, N):
        """Each sequence's factor in the reduced value (and in the gradient)."""
        coef = np.ones(N) if w is None else w.copy()
        if reduction == "mean":
            denom = float(N) if w is None else _weight_total(w)
            # weights whose sum overflows: scaled by a power of two (the mean is the same), the shared rule
            coef, denom = fit_weights(coef, denom, np.float64, N, lambda: sum_exponent((coef,), N), math.fsum)
            with np.errstate(divide="ignore", invalid="ignore"):
                coef = coef / np.maximum(tl, 1) / denom
        return coef

    def _run_ctc(self, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend, kwargs,
                 want_value, want_grad, grad_out=None):
        try:
            return self._compute_ctc(logits, targets, input_lengths, target_lengths, reduction, sample_weight,
                                     backend, kwargs, want_value, want_grad, grad_out)
        except LossMemoryError:
            raise
        except MemoryError as err:  # NumPy's bare one: which array, how large, and what to do (as Loss._run)
            raise self._memory_error(err, logits) from err

    def _compute_ctc(self, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend,
                     kwargs, want_value, want_grad, grad_out):
        params = self._params(kwargs)[0] if kwargs else self._default_params[0]
        if is_device_array(logits):
            from ._ctc_device import run  # only device users pay for importing the CUDA path

            return run(self, logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend,
                       params, want_value, want_grad, grad_out)
        x, T, N, C, labels, offsets, tl, il, w, g = self._prepare(
            logits, targets, input_lengths, target_lengths, reduction, sample_weight, params, grad_out, want_grad)
        coef = self._coefficients(reduction, w, tl, N)
        losses = self._host_kernel(backend, params, x, T, N, C, labels, offsets, tl, il, coef if want_grad else None,
                                   g)
        if not want_value:
            return g
        if reduction == "none":
            with np.errstate(invalid="ignore"):
                value = (losses if w is None else losses * w).astype(x.dtype)
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                value = _exact_sum((coef * losses).tolist()) if N else (math.nan if reduction == "mean" else 0.0)
        return (value, g) if want_grad else value

    def _host_kernel(self, backend, params, x, T, N, C, labels, offsets, tl, il, gscale, g):
        """Run the host backend's kernel: the float64 loss of each sequence (and ``g`` when given)."""
        module = resolve_host_backend(backend, self.spec, x.dtype)
        losses = np.empty(N)
        self.last_scratch_bytes = module.ctc(
            x, T, N, C, params["batch_first"], params["inputs"] == "log_probs", labels, offsets, tl, il,
            params["blank"], params["zero_infinity"], gscale, losses, g, _config.get_num_threads())
        # a log-probability of +inf makes a log-likelihood of +inf: the loss and the sequence's gradient are NaN,
        # as torch's and the reference's (the kernels' recursions give -inf, or NaN where inf - inf meets)
        for n in np.flatnonzero(losses == -np.inf):
            losses[n] = np.nan
            if g is not None:
                (g[n, :il[n]] if params["batch_first"] else g[:il[n], n])[...] = np.nan
        return losses

    # --- the public entry points -------------------------------------------------------------------------

    def __call__(self, logits, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None,
                 backend=None, **params):
        return self._run_ctc(logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend,
                             params, True, False)

    def value_and_grad(self, logits, targets, input_lengths, target_lengths, *, reduction="mean",
                       sample_weight=None, grad_out=None, backend=None, **params):
        """(value, gradient of that value with respect to logits), the gradient in logits' shape and dtype."""
        return self._run_ctc(logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend,
                             params, True, True, grad_out)

    def grad(self, logits, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None,
             grad_out=None, backend=None, **params):
        """The gradient of the loss value with respect to logits."""
        return self._run_ctc(logits, targets, input_lengths, target_lengths, reduction, sample_weight, backend,
                             params, False, True, grad_out)

    def grad_hess(self, *args, **kwargs):
        raise TypeError("ctc has no Hessian: use ctc.value_and_grad(...) or ctc.grad(...)")

    def partial(self, logits, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None,
                backend=None, **params):
        """A mergeable partial result over these sequences: a ``LossState`` (see ``fusedloss.merge``).

        CTC's "mean" divides each loss by its target length before averaging over the batch, so the state
        depends on the reduction it is for, given here (``"mean"`` or ``"sum"``), and is read back with the
        same one (``state.value(reduction)``):

        - ``"mean"``: ``sum`` = fsum of ``w_n loss_n / max(S_n, 1)``, ``denominator`` = the number of sequences
          (or the sum of the sample weights); the merged ``value("mean")`` is ``fl.ctc(...)`` on the whole
          batch up to float64 rounding. Its ``value("sum")`` is the sum of the length-normalised losses, not
          CTC's "sum".
        - ``"sum"``: ``sum`` = fsum of ``w_n loss_n``, ``denominator`` NaN (its ``value("mean")`` is NaN: a
          "sum" state cannot give CTC's mean).

        ``count`` is the number of sequences. Host arrays only.
        """
        from ._state import LossState, _exact_sum

        if reduction not in ("mean", "sum"):
            raise ValueError(f"ctc: partial takes reduction 'mean' or 'sum', got {reduction!r} ('none' has no "
                             "partial form: call ctc(..., reduction='none'))")
        if is_device_array(logits):
            raise TypeError("ctc.partial takes host arrays; got a device array (copy it to the host, or call "
                            "the loss with reduction='sum' for the sum alone)")
        checked = self._params(params)[0] if params else self._default_params[0]
        try:
            x, T, N, C, labels, offsets, tl, il, w, _ = self._prepare(
                logits, targets, input_lengths, target_lengths, reduction, sample_weight, checked, None, False)
        except MemoryError as err:
            raise self._memory_error(err, logits) from err
        losses = self._host_kernel(backend, checked, x, T, N, C, labels, offsets, tl, il, None, None)
        coef = np.ones(N) if w is None else w
        if reduction == "mean":
            coef = coef / np.maximum(tl, 1)
            # (not scaled when it overflows, as in _coefficients: a state merges with the states of other pieces,
            # so its sums are the plain ones, inf included, as the other losses' partial states)
            denominator = float(N) if w is None else _weight_total(w)
        else:
            denominator = math.nan
        with np.errstate(invalid="ignore", over="ignore"):
            terms = (coef * losses).tolist()
        return LossState(self.name, float(_exact_sum(terms)), denominator, N)
