"""Functional forms: one per registry loss, named after ``torch.nn.functional`` where torch has the loss (with
torch's signature and semantics), plus ``loss`` (any registry loss by name); ``FUNCTIONAL`` maps each registry
name to its form.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

import torch
from torch import Tensor

from .._dispatch import Loss
from .._spec import REGISTRY
from ._args import (_check_broadcast, _check_reduction, _class_axis, _elementwise, _host_vector, _legacy_reduction,
                    _multiclass, _weight_tensor, torch_errors)
from ._ctc import ctc_loss  # CTC has its own signature (sequences and lengths)
from ._pairwise import (cosine_embedding_loss, gaussian_nll_loss, margin_ranking_loss,  # two or three inputs
                        triplet_margin_loss)
from ._overlap import dice_loss, tversky_loss  # scores with a class axis, a ratio of sums per class
from .._gpu_routing import _dtype_name
from ._generate import elementwise_form, generated_form, renamed_getattr
from ._nonfinite import finite, holds_nan, plus_minus_one, torch_result
from ._routing import TILES, _small_on_torch
from ._twin import torch_twin

# --- functional forms: PyTorch's losses, PyTorch's signatures -----------------------------------------------


@_small_on_torch("cross_entropy", TILES, {"z_loss": 0.0, "softcap": None, "confidence_penalty": 0.0,
                                         "sample_weight": None, "inplace_grad": False, "metrics": None},
                 index_labels=True)
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None, confidence_penalty=0.0, sample_weight=None,
                  inplace_grad=False, backend=None, metrics=None):
    """``torch.nn.functional.cross_entropy``, fused: classes on dim 1 (dim 0 for an unbatched ``(C,)`` input),
    integer class targets or class probabilities of the input's shape.

    Extensions: ``z_loss`` (adds ``z_loss * logsumexp^2`` per row), ``softcap`` (logits become
    ``softcap * tanh(x / softcap)``), ``confidence_penalty`` (subtracts ``confidence_penalty`` times the
    softmax's entropy per row, Pereyra et al. 2017), ``sample_weight`` (one weight per row, shape
    ``(N, d1, ...)`` or a leading part; "mean" divides by the sum of ``sample_weight * weight[target]``),
    ``inplace_grad`` (write the gradient into the logits' storage), ``backend``, ``metrics`` (names of
    classification metrics computed in the same kernel call, hard labels only: the call returns ``(loss,
    Metrics)``, the loss as without them; see ``fusedloss.cross_entropy``'s ``metrics=``; on CUDA tensors the call
    runs the fused kernels).
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_torch_labels(target, "cross_entropy", (torch.int64, torch.uint8))
    if (isinstance(target, Tensor) and target.is_floating_point() and isinstance(ignore_index, numbers.Integral)
            and ignore_index >= 0):
        raise ValueError(f"cross_entropy: ignore_index={ignore_index} applies to class-index targets, and "
                         "torch.nn.functional.cross_entropy refuses it with class probabilities (a floating-point "
                         "target); leave ignore_index at -100 (give the rows to skip sample_weight=0)")
    params = dict(class_weight=_host_vector(weight, "weight", "cross_entropy"), ignore_index=ignore_index,
                  label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                  confidence_penalty=confidence_penalty)
    return _multiclass("cross_entropy", input, target, reduction, params, sample_weight=sample_weight,
                       inplace_grad=inplace_grad, backend=backend, fn="cross_entropy", metrics=metrics)


def _check_torch_labels(target, fn: str, allowed: tuple) -> None:
    """torch's own ``fn`` takes class indices of the ``allowed`` dtypes only, where the fused kernels read any
    integer dtype: the form named after it refuses the others, as torch does."""
    if isinstance(target, Tensor) and not target.is_floating_point() and target.dtype not in allowed:
        names = " or ".join(map(_dtype_name, allowed))
        raise ValueError(f"{fn}: target must hold class indices as {names}, as torch.nn.functional.{fn} takes them, "
                         f"got {_dtype_name(target.dtype)}; convert it with target.long()")


def _check_weight_size(weight, input, fn: str) -> None:
    """torch's ``mse_loss``, ``l1_loss`` and ``huber_loss`` take an elementwise ``weight`` of the input's size only
    (they do not broadcast it)."""
    if weight is not None and isinstance(input, Tensor):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else np.shape(weight)
        if shape != tuple(input.shape):
            raise ValueError(f"{fn}: weight must have the size of input {tuple(input.shape)} "
                             f"(torch.nn.functional.{fn} does not broadcast it), got size {shape}; expand it to "
                             "the input's size (weight.expand_as(input))")


def _check_same_size(input, target, fn: str, names=("input", "target"), owner="torch.nn.functional") -> None:
    """``owner``'s ``fn`` refuses a target of another size than the input (where torch's regression losses warn
    and broadcast)."""
    if isinstance(input, Tensor) and isinstance(target, Tensor) and target.shape != input.shape:
        x, t = names
        raise ValueError(f"{fn}: {t} must have the size of {x} {tuple(input.shape)} ({owner}.{fn} does not "
                         f"broadcast it), got size {tuple(target.shape)}; reshape or expand {t} to the size of {x}")


@_small_on_torch("mse_loss")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, backend=None):
    """``torch.nn.functional.mse_loss`` (with ``weight``: "mean" is sum(w l) / sum(w), as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_weight_size(weight, input, "mse_loss")
    return _elementwise("mse", input, target, reduction, {}, weight=weight, weight_mean="sum_w", backend=backend,
                        fn="mse_loss")


@_small_on_torch("l1_loss")
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, backend=None):
    """``torch.nn.functional.l1_loss`` (with ``weight``: "mean" is sum(w l) / sum(w), as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_weight_size(weight, input, "l1_loss")
    out = _elementwise("mae", input, target, reduction, {}, weight=weight, weight_mean="sum_w", backend=backend,
                       fn="l1_loss")
    # at a NaN residual torch's gradient is 0 (its sign(nan)), the kernel's NaN; the values agree
    if (reduction != "none" or out.requires_grad) and holds_nan(out):
        weight = None if weight is None else _weight_tensor(weight, input, "l1_loss")  # (torch: the full shape)
        return torch_result(out, torch.nn.functional.l1_loss, input, target, reduction, weight=weight)
    return out


@_small_on_torch("huber_loss")
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None, *, backend=None):
    """``torch.nn.functional.huber_loss`` (with ``weight``: "mean" is mean(w l), as torch)."""
    _check_weight_size(weight, input, "huber_loss")
    return _elementwise("huber", input, target, reduction, {"delta": delta}, weight=weight, weight_mean="numel",
                        backend=backend, fn="huber_loss", value_dtype="input")


@_small_on_torch("smooth_l1_loss")
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0, *, backend=None):
    """``torch.nn.functional.smooth_l1_loss`` (``beta=0`` is ``l1_loss``, as in torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta == 0:  # torch's is l1_loss there, whose gradient at a NaN residual is 0 (the kernel's: NaN)
        return l1_loss(input, target, reduction=reduction, backend=backend)
    return _elementwise("smooth_l1", input, target, reduction, {"beta": beta}, backend=backend, fn="smooth_l1_loss")


@_small_on_torch("hinge_embedding_loss")
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean", *,
                         backend=None):
    """``torch.nn.functional.hinge_embedding_loss``: ``input`` where ``target == 1``, ``max(0, margin - input)``
    where ``target == -1``, both for any other target (NaN included), as torch's masks and their rounded sum."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    out = _elementwise("hinge_embedding", input, target, reduction, {"margin": margin}, backend=backend,
                       fn="hinge_embedding_loss", value_dtype="input")
    # torch's gradient at a NaN input is its mask's (1 or 0), the kernel's NaN; for a target other than 1 and -1
    # (NaN included) torch's value is its sum input + max(0, margin - input), rounded (0 at input = -1e30, NaN at
    # -inf), not max(input, margin): no result shows that, so the target is read
    if ((reduction != "none" or out.requires_grad) and holds_nan(out)) or not plus_minus_one(target):
        return torch_result(out, torch.nn.functional.hinge_embedding_loss, input, target, reduction, margin=margin)
    return out


@torch_errors
@torch_twin("poisson_nll")
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean", *, backend=None):
    """``torch.nn.functional.poisson_nll_loss``; ``full=True`` adds torch's Stirling term (a constant)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    out = _elementwise("poisson_nll", input, target, reduction, {"log_input": log_input, "eps": eps},
                       backend=backend, fn="poisson_nll_loss")
    if not full:
        return out
    # torch's Stirling term, target log(target) - target + log(2 pi target) / 2 where target > 1: a constant
    # with respect to the input, added to the fused loss
    t = torch.as_tensor(target, device=out.device).detach().to(out.dtype)
    stirling = (t * t.log() - t + 0.5 * (2 * math.pi * t).log()).masked_fill(t <= 1, 0)
    if reduction == "none":
        return out + stirling
    return out + (stirling.sum() if reduction == "sum" else stirling.mean())


@_small_on_torch("binary_cross_entropy", extensions={"metrics": None})
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean", *,
                         backend=None, metrics=None):
    """``torch.nn.functional.binary_cross_entropy`` on probabilities (logs clamped at -100, as torch). Extension:
    ``metrics`` (binary metrics of the same kernel call on the probabilities: the call returns ``(loss,
    Metrics)``; see ``fusedloss.binary_cross_entropy``'s ``metrics=``; on CUDA tensors the call runs the fused
    kernels)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "binary_cross_entropy")
    if (isinstance(input, Tensor) and isinstance(target, Tensor) and target.dtype != input.dtype
            and not torch.is_autocast_enabled(input.device.type)):
        raise ValueError(f"binary_cross_entropy: target must have the input's dtype ({_dtype_name(input.dtype)}), "
                         f"got {_dtype_name(target.dtype)} (torch.nn.functional.binary_cross_entropy refuses another "
                         "dtype); convert it with target.to(input.dtype)")
    out = _elementwise("binary_cross_entropy", input, target, reduction, {"pos_weight": None}, weight=weight,
                       weight_mean="numel", backend=backend, fn="binary_cross_entropy", metrics=metrics)
    _refuse_nan_as_torch(out if metrics is None else out[0], input, target, "binary_cross_entropy")
    return out


def _refuse_nan_as_torch(out: Tensor, input, target, fn: str) -> None:
    """torch's ``fn`` refuses a NaN probability or target (its range check fails on NaN), where the fused kernel
    lets NaN through. With the weights checked finite and the logs clamped, the result holds a NaN exactly when
    the input or the target does, so only then are they scanned, for the error (not under ``vmap``, where no
    branch on the data is possible)."""
    if not holds_nan(out):
        return
    with torch.no_grad():
        for what, data in (("input", input), ("target", target)):
            nan = torch.as_tensor(data).isnan()
            if bool(nan.any()):
                where = tuple(int(i) for i in nan.nonzero()[0])
                raise ValueError(f"{fn}: {what} must lie in [0, 1] (torch.nn.functional.{fn} refuses NaN), got nan "
                                 f"at index {where}; mask or replace the NaN before the loss")


@torch_errors
@torch_twin("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None, *, label_smoothing=0.0, backend=None, metrics=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits``. ``pos_weight`` broadcasts against the target as
    in torch; a scalar or one value per entry of the last axis runs on the fused kernel, other shapes (such as
    ``(C, 1, 1)`` for ``(N, C, H, W)`` logits) on torch's function. Extension: ``label_smoothing`` (targets become
    ``y (1 - s) + s / 2``), ``metrics`` (binary metrics of the same kernel call: the call returns ``(loss,
    Metrics)``; see ``fusedloss.binary_cross_entropy_with_logits``'s ``metrics=``; on CUDA tensors the call runs
    the fused kernels)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    fn = "binary_cross_entropy_with_logits"
    _check_same_size(input, target, fn)
    if isinstance(pos_weight, Tensor) and pos_weight.ndim > 1 and pos_weight.numel() > 1:
        _check_broadcast(pos_weight, input, "pos_weight", fn)
        if metrics is not None:
            raise ValueError(f"{fn}: metrics={metrics!r} with a pos_weight of shape {tuple(pos_weight.shape)} is not "
                             "supported (that call runs on torch's own function, which has no metrics pass); pass "
                             "a scalar pos_weight or one value per entry of the last axis, or call "
                             "fusedloss.metrics.binary_logit_metrics(logits, target, metrics=...)")
        # torch broadcasts pos_weight against the target, e.g. (C, 1, 1) for (N, C, H, W); the kernels take one
        # value per entry of the last axis: the other shapes run on torch's own function
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / 2
        return torch.nn.functional.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                                                    pos_weight=pos_weight)
    params = {"pos_weight": _host_vector(pos_weight, "pos_weight", fn), "label_smoothing": label_smoothing}
    out = _elementwise("binary_cross_entropy_with_logits", input, target, reduction, params, weight=weight,
                       weight_mean="numel", backend=backend, fn=fn, metrics=metrics, value_dtype="target")
    value = out if metrics is None else out[0]
    # at an infinite logit torch's sum of (1 - y) x and softplus(-x) is inf - inf = nan (also where a term's
    # coefficient is 0), the kernel's is the limit: torch's function on such data, and on a NaN
    if not label_smoothing and (holds_nan(value) or not finite(input)):
        value = torch_result(value, torch.nn.functional.binary_cross_entropy_with_logits, input, target, reduction,
                             weight=weight, pos_weight=pos_weight)
    return value if metrics is None else (value, out[1])


@_small_on_torch("multi_margin_loss", True)
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean", *, backend=None):
    """``torch.nn.functional.multi_margin_loss``: input ``(N, C)`` or ``(C,)``, integer targets."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if isinstance(input, Tensor) and input.ndim > 2:
        raise ValueError(f"multi_margin_loss: input must be 1-d or 2-d, got {input.ndim}-d")
    _check_torch_labels(target, "multi_margin_loss", (torch.int64,))
    params = {"margin": margin, "p": p, "class_weight": _host_vector(weight, "weight", "multi_margin_loss")}
    out = _multiclass("multi_margin", input, target, reduction, params, backend=backend, fn="multi_margin_loss")
    if holds_nan(out):  # torch's comparisons skip a NaN margin, where the kernel's row is NaN
        return torch_result(out, torch.nn.functional.multi_margin_loss, input, target, reduction, p=p, margin=margin,
                            weight=weight)
    return out


# torch's own function, exactly: log-probabilities in, the pointwise KL on any shape, torch's reductions. The
# fused form (logits in) is kl_div_with_logits.
kl_div = torch.nn.functional.kl_div


def kl_div_with_logits(input, target, reduction="mean", log_target=False, *, temperature=1.0, dim=-1,
                       backend=None):
    """KL(target || softmax(input / temperature)) along ``dim``, fused with the log-softmax: **logits in**.

    Not ``torch.nn.functional.kl_div`` (which is :func:`kl_div` here, torch's own): that one takes
    log-probabilities and returns the pointwise terms ``target * (log target - input)``. This one replaces
    ``F.kl_div(F.log_softmax(logits / temperature, dim), target, reduction=r, log_target=lt)`` by
    ``kl_div_with_logits(logits, target, reduction=r, log_target=lt, temperature=temperature, dim=dim)`` with
    the same value for "batchmean" (sum / input.size(0)), "sum" and "mean" (sum / number of elements), and a
    gradient with respect to the logits in one pass. "none" gives one value per row (the sum of torch's
    elementwise terms along ``dim``), shape ``input.shape`` without ``dim``. ``dim`` defaults to the last axis.
    """
    _check_reduction(reduction, "kl_div_with_logits", ("batchmean",))
    sample_weight = None
    if reduction in ("batchmean", "mean") and isinstance(input, Tensor):
        if input.ndim == 0:
            raise ValueError("kl_div_with_logits: the input needs a class axis, got a 0-d tensor")
        axis = _class_axis(input, dim)
        rows = input.shape[:axis] + input.shape[axis + 1:]
        # torch divides the sum by input.size(0) ("batchmean") or by the number of elements ("mean"); our
        # "mean" divides by the number of rows. Where they differ, fold the divisor into per-row weights.
        divisor = input.shape[0] if reduction == "batchmean" else input.numel()
        n_rows = math.prod(rows)
        if divisor == n_rows or divisor == 0:
            reduction = "mean"
        else:
            # (a broadcast view: an input too large to copy fails in the kernel call, which says so)
            sample_weight = torch.full((), 1.0 / divisor, dtype=torch.float64, device=input.device).expand(rows)
            reduction = "sum"
    params = {"log_target": log_target, "temperature": temperature}
    return _multiclass("kl_div_with_logits", input, target, reduction, params, class_dim=dim, sample_weight=sample_weight,
                       backend=backend, fn="kl_div_with_logits")


def jensen_shannon_loss(input, target, beta=0.5, reduction="mean", *, dim=-1, sample_weight=None, backend=None):
    """Liger-Kernel's generalised Jensen-Shannon divergence (``LigerJSD``) between the target distribution ``q``
    and ``softmax(input)`` along ``dim``, fused with the softmax: **logits in** (LigerJSD takes
    log-probabilities). ``beta`` weights the target in the mixture ``m = beta q + (1 - beta) p``; 0 gives
    KL(q || p) and 1 KL(p || q), as Liger's. "mean" divides by the number of rows, as LigerJSD does."""
    params = {"beta": beta}
    return _multiclass("jensen_shannon", input, target, reduction, params, class_dim=dim, sample_weight=sample_weight,
                       backend=backend, fn="jensen_shannon_loss")


@_small_on_torch("multilabel_soft_margin_loss", False, {"sample_weight": None})
def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean", *,
                                sample_weight=None, backend=None):
    """``torch.nn.functional.multilabel_soft_margin_loss``: classes on the last dim, targets of the input's shape
    (multi-hot, or soft in [0, 1]; integer targets are cast to the input's dtype, as torch computes with them).
    ``weight``: one per class; other shapes that broadcast against the input run on torch's function.
    Extension: ``sample_weight`` (one per row, "mean" divides by its sum)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    fn = "multilabel_soft_margin_loss"
    if isinstance(weight, Tensor) and weight.ndim > 1 and weight.numel() > 1:
        _check_broadcast(weight, input, "weight", fn)
        # torch multiplies the elementwise terms by any weight that broadcasts against them; the kernels take one
        # value per class: the other shapes run on torch's own function
        if sample_weight is not None:
            raise TypeError(f"{fn}: sample_weight with a weight of shape {tuple(weight.shape)} (not one per class) "
                            "is not supported")
        return torch.nn.functional.multilabel_soft_margin_loss(input, target, weight, reduction=reduction)
    if (isinstance(input, Tensor) and isinstance(target, Tensor) and input.is_floating_point()
            and not target.is_floating_point() and not target.is_complex()):
        target = target.to(input.dtype)
    params = {"class_weight": _host_vector(weight, "weight", fn)}
    out = _multiclass("multilabel_soft_margin", input, target, reduction, params, class_dim=-1,
                      sample_weight=sample_weight, backend=backend, fn=fn)
    if input.dtype != out.dtype and torch.is_autocast_enabled(input.device.type):
        # torch's function is a composite of ops that autocast leaves in the input's dtype: its loss comes back in
        # the half-precision dtype (computed in float32 here, then cast, as the gradient already is)
        out = out.to(input.dtype)
    # torch keeps a NaN to its element's gradient (the kernel's row is NaN), and at an infinite logit a term of
    # coefficient 0 is its 0 * inf = NaN (the kernel's 0): that no result shows, so the logits are read (one pass)
    if sample_weight is None and (holds_nan(out) or not finite(input)):
        return torch_result(out, torch.nn.functional.multilabel_soft_margin_loss, input, target, reduction,
                            weight=weight)
    return out


# the forms above that compute a call again with torch's function where the fused kernels' rules for NaN and inf
# differ from torch's (see _nonfinite.py), marked for the tests that judge them by torch's results
for _form in (l1_loss, hinge_embedding_loss, multi_margin_loss, multilabel_soft_margin_loss,
              binary_cross_entropy_with_logits):
    _form.nonfinite_as_torch = True


# --- functional forms: our losses ---------------------------------------------------------------------------
# The elementwise ones are declared (signature, docstring) and generated from the registry (_generate.py).


@elementwise_form("pseudo_huber")
def pseudo_huber_loss(input, target, reduction="mean", delta=1.0, *, sample_weight=None, backend=None):
    """Pseudo-Huber ``delta^2 (sqrt(1 + (d/delta)^2) - 1)``, ``d = input - target``."""


@elementwise_form("log_cosh")
def log_cosh_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``log(cosh(input - target))``, stable for any finite residual."""


@elementwise_form("quantile")
def quantile_loss(input, target, quantile=0.5, reduction="mean", *, sample_weight=None, backend=None):
    """Pinball loss of the ``quantile`` level (``input`` predicts the quantile of ``target``)."""


@elementwise_form("tweedie")
def tweedie_loss(input, target, power=1.5, reduction="mean", *, sample_weight=None, backend=None):
    """Half Tweedie deviance with log link (``input`` is the log of the mean), ``power`` in (1, 2)."""


@elementwise_form("binary_focal")
def binary_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean", *, sample_weight=None, backend=None,
                      metrics=None):
    """Sigmoid focal loss on logits (Lin et al. 2017); ``alpha < 0`` disables the class weighting. ``metrics``:
    binary metrics of the same kernel call (the call returns ``(loss, Metrics)``; see
    ``fusedloss.binary_focal``'s ``metrics=``; on CUDA tensors the call runs the fused kernels)."""


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """``torchvision.ops.sigmoid_focal_loss``'s signature and default (``reduction="none"``)."""
    _check_same_size(inputs, targets, "sigmoid_focal_loss", ("inputs", "targets"), "torchvision.ops")
    return binary_focal_loss(inputs, targets, alpha=alpha, gamma=gamma, reduction=reduction)


@elementwise_form("hinge")
def binary_hinge_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``max(0, 1 - t x)`` for targets ``t`` in {-1, 1} ({0, 1} accepted). (Not ``hinge_loss``: that is
    scikit-learn's metric of ``(y_true, pred_decision)``, which ``fusedloss.metrics.hinge_loss`` is.)"""


@elementwise_form("squared_hinge")
def squared_hinge_loss(input, target, reduction="mean", *, sample_weight=None, backend=None):
    """``max(0, 1 - t x)^2`` for targets ``t`` in {-1, 1} ({0, 1} accepted)."""


@elementwise_form("zero_one")
def zero_one_error(input, target, threshold=0.5, reduction="mean", *, sample_weight=None, backend=None):
    """Misclassification rate (a metric: no gradient); ``input > threshold`` predicts the positive class. (Not
    ``zero_one_loss``: that is scikit-learn's metric of ``(y_true, y_pred)`` labels, which
    ``fusedloss.metrics.zero_one_loss`` is.)"""


def focal_loss(input, target, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean", *, sample_weight=None,
               backend=None):
    """Softmax focal loss with integer targets; classes on dim 1 as in ``cross_entropy``. ``alpha``: None, a
    scalar, or one weight per class. "mean" divides by the rows not ignored."""
    params = {"alpha": _host_vector(alpha, "alpha", "focal_loss"), "gamma": gamma, "ignore_index": ignore_index}
    return _multiclass("categorical_focal", input, target, reduction, params, sample_weight=sample_weight,
                       backend=backend, fn="focal_loss")


def poly1_loss(input, target, epsilon=2.0, ignore_index=-100, reduction="mean", *, sample_weight=None,
               backend=None):
    """Poly-1 loss ``cross_entropy + epsilon (1 - p_t)`` (optax's ``poly_loss_cross_entropy``); classes on dim 1 as
    in ``cross_entropy``, integer targets or class probabilities of the input's shape. "mean" divides by the rows
    not ignored."""
    params = {"epsilon": epsilon, "ignore_index": ignore_index}
    return _multiclass("poly1", input, target, reduction, params, sample_weight=sample_weight, backend=backend,
                       fn="poly1_loss")


def categorical_hinge_loss(input, target, ignore_index=-100, reduction="mean", *, sample_weight=None, backend=None):
    """Keras's ``categorical_hinge``: ``max(neg - pos + 1, 0)`` with ``pos = sum y x``, ``neg = max (1 - y) x``;
    classes on dim 1 as in ``cross_entropy``, integer targets (their one-hot rows) or targets of the input's
    shape."""
    params = {"ignore_index": ignore_index}
    return _multiclass("categorical_hinge", input, target, reduction, params, sample_weight=sample_weight,
                       backend=backend, fn="categorical_hinge_loss")


def loss(name: str, input, target, *, reduction="mean", sample_weight=None, class_dim=None, backend=None,
         metrics=None, **params):
    """Any registry loss by its fusedloss name, with fusedloss's parameter names and weight semantics.

    Multiclass losses take the classes on ``class_dim`` (default: dim 1, or 0 for a 1-d input). ``name`` may
    also be a loss object (a custom loss from ``fusedloss.elementwise_loss``). ``metrics`` (the losses that have
    a metrics pass, as the host API's ``metrics=``): the call returns ``(loss, Metrics)``.
    """
    if isinstance(name, Loss):
        name = name.name
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(REGISTRY))}")
    if spec.kind == "sequence":  # (input, target) has no place for the lengths
        raise TypeError(f"{name}: a sequence loss takes input_lengths and target_lengths; call "
                        f"fusedloss.torch.{FUNCTIONAL[name].__name__}(input, target, input_lengths, target_lengths)")
    if spec.kind == "pairwise":  # (input, target) has no place for a second or third input
        raise TypeError(f"{name}: a pairwise loss takes {', '.join(spec.inputs)}"
                        f"{', target' if spec.row_target else ''}; call fusedloss.torch.{FUNCTIONAL[name].__name__}")
    if spec.kind == "overlap":  # smp's signature (mode, classes, ...), not fusedloss's keyword set
        raise TypeError(f"{name}: call fusedloss.torch.{FUNCTIONAL[name].__name__}(input, target, mode, ...)")
    params = {k: (_host_vector(v, k, name) if k == spec.vector_param else v) for k, v in params.items()}
    params = {**spec.defaults(), **params}
    if spec.kind == "multiclass":
        return _multiclass(name, input, target, reduction, params, class_dim=class_dim, sample_weight=sample_weight,
                           backend=backend, fn=name, metrics=metrics)
    return _elementwise(name, input, target, reduction, params, sample_weight=sample_weight, backend=backend, fn=name,
                        metrics=metrics)


FUNCTIONAL = {
    "mse": mse_loss, "mae": l1_loss, "huber": huber_loss, "smooth_l1": smooth_l1_loss,
    "pseudo_huber": pseudo_huber_loss, "log_cosh": log_cosh_loss, "quantile": quantile_loss,
    "poisson_nll": poisson_nll_loss, "tweedie": tweedie_loss, "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits, "binary_focal": binary_focal_loss,
    "hinge": binary_hinge_loss, "squared_hinge": squared_hinge_loss, "zero_one": zero_one_error,
    "cross_entropy": cross_entropy, "categorical_focal": focal_loss, "multi_margin": multi_margin_loss,
    "kl_div_with_logits": kl_div_with_logits, "jensen_shannon": jensen_shannon_loss,
    "multilabel_soft_margin": multilabel_soft_margin_loss, "ctc": ctc_loss,
    "hinge_embedding": hinge_embedding_loss,
    "poly1": poly1_loss, "categorical_hinge": categorical_hinge_loss,
    "margin_ranking": margin_ranking_loss, "cosine_embedding": cosine_embedding_loss,
    "triplet_margin": triplet_margin_loss, "gaussian_nll": gaussian_nll_loss,
    "dice": dice_loss, "tversky": tversky_loss,
}

# an elementwise loss of the registry with neither a torch twin nor a declared form above: its form is made whole
# from the registry (``<loss>_loss``), so that a new loss needs nothing here
GENERATED = tuple(name for name, spec in REGISTRY.items()
                  if spec.kind == "elementwise" and spec.builtin and name not in FUNCTIONAL)
for _name in GENERATED:
    FUNCTIONAL[_name] = globals()[f"{_name}_loss"] = generated_form(_name, __name__)

# names that are scikit-learn's metrics (other arguments, other meaning), served with a FutureWarning until 0.2
RENAMED = {"hinge_loss": "binary_hinge_loss", "zero_one_loss": "zero_one_error"}
__getattr__ = renamed_getattr(__name__, RENAMED)
