"""PyTorch integration: autograd functions and ``nn.Module`` losses backed by the fused kernels.

Import it explicitly (``import fusedloss.torch``); ``import fusedloss`` never imports torch.

Every loss in the registry has a functional form here, named after ``torch.nn.functional`` where PyTorch has the
loss (``cross_entropy``, ``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``, ``poisson_nll_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``multi_margin_loss``, ``kl_div``,
``multilabel_soft_margin_loss``, ``hinge_embedding_loss``) and with the
same positional arguments and keyword names, and an ``nn.Module`` (``CrossEntropyLoss``, ``MSELoss``, ...), so
that replacing ``torch.nn.CrossEntropyLoss()`` by ``fusedloss.torch.CrossEntropyLoss()`` is a one-line change.
``FUNCTIONAL`` and ``MODULES`` map each registry name to them.

A function named after torch's has torch's semantics. Its errors too, as far as their type goes: a bad argument
raises ``ArgumentError``, a ``ValueError`` (as everywhere in fusedloss) that is also a ``RuntimeError`` (as most of
torch's are), and a class label out of range in ``cross_entropy`` a ``LabelIndexError``, also an ``IndexError``
(torch's type there), so code that catches torch's exception catches fusedloss's; the message names the argument. ``kl_div`` and ``KLDivLoss`` are torch's own
(log-probabilities in, pointwise KL); the fused loss that takes logits and fuses the log-softmax has its own name,
``kl_div_with_logits`` / ``KLDivWithLogitsLoss`` (the registry's ``kl_div_with_logits``). Likewise
``jensen_shannon_loss`` / ``JensenShannonLoss`` is Liger-Kernel's ``LigerJSD`` with logits in (Liger's takes
log-probabilities).

How a call runs. The forward pass calls the fused kernel once (``value_and_grad``) and keeps only the gradient;
the backward pass multiplies it by ``grad_output`` (a scalar for "mean" and "sum", elementwise for "none", along
the class axis for multiclass losses). When no gradient is needed (``torch.no_grad()``, inputs that do not
require grad) only the value is computed.

Memory. A contiguous float32/float64 CPU tensor reaches the kernel without a copy (``tensor.numpy()`` shares
its memory). float16/bfloat16 are computed in float32 (one float32 copy) and the gradient is returned in the
input's dtype. A non-contiguous input is copied once. Multiclass inputs with the classes on dim 1, PyTorch's
``(N, C, d1, ...)`` layout, have their class axis moved last: a view that costs one transposing copy unless the
tensor is already channels-last in memory; whenever such a private copy exists the gradient is written into it
(no second buffer) and handed back as a view with the input's shape. ``inplace_grad=True`` on cross-entropy
writes the gradient into the logits' own storage (saving an N x C buffer; the logits are destroyed, and their
version counter is bumped so autograd reports any other use of them in backward).

CUDA tensors: by default a loss that torch has, with options torch has, runs on torch's own CUDA kernels (and
torch's autograd), unless ``fusedloss/gpu_routing.json`` records that fusedloss's kernel was measured on a real GPU
at least as fast for that case: nobody gets a slower loss by default. ``backend=...`` on the call,
``set_cuda_routing("fused")`` or ``FUSEDLOSS_CUDA_ROUTING=fused`` force the fused path; losses and options torch
lacks (``z_loss``, ``softcap``, ``confidence_penalty``, ``sample_weight``, ``inplace_grad``, the losses without a
torch twin) always take it. The rule is in ``fusedloss._gpu_routing``. On the fused path, tensors are passed
(detached) to the ``cuda`` backend, which reads them through ``__cuda_array_interface__``; outputs are allocated by
torch on the same device.

Targets. Targets are constants (``requires_grad=False``), with one exception: for the losses of the residual
``pred - target`` (the registry's ``residual`` ones: ``mse``, ``mae``, ``huber``, ``asymmetric_huber``, ``smooth_l1``,
``pseudo_huber``, ``log_cosh``, ``quantile``)
a target that requires grad gets ``-grad_input`` in backward. For the other losses a target that requires grad
raises ``RuntimeError`` (pass ``target.detach()``). Weights (``weight``, ``pos_weight``, ``sample_weight``) are
constants too: one that requires grad raises, as PyTorch does for ``cross_entropy``'s ``weight``.

``torch.compile``: under compilation the kernel call goes through a ``torch.compiler.disable``d function, so a
compiled model runs it eagerly (a graph break) with the same results. The wrapper is made on first need, so that
``import fusedloss.torch`` does not import ``torch._dynamo``.

``torch.func``: ``grad``, ``vjp``, ``jacrev`` and ``vmap`` work (``vmap`` runs one kernel call per batch entry).
Second derivatives (a double backward with ``create_graph=True``, ``torch.func.hessian``) are not supported: they
raise a ``RuntimeError`` that says so; use torch's own loss there.
"""

from __future__ import annotations

# The layers, each its own module: _kernel (a call's description and the one kernel call), _autograd (the
# autograd Function, second derivatives refused, torch.compile), _args (torch-style arguments to a call),
# _routing (small CPU calls to torch's own kernels), functional and modules (the public forms; the mechanical
# ones generated from the registry by _generate), _ctc (CTC's forms), _pairwise (the pairwise losses' forms), _overlap (dice's and tversky's),
# _benchmark (torch.nn vs fusedloss.torch).

from .._gpu_routing import get_cuda_routing, set_cuda_routing
from ._args import ArgumentError, LabelIndexError
from ._autograd import FORWARD_MODE_MESSAGE, RESIDUAL_LOSSES, SECOND_DERIVATIVE_MESSAGE, FusedLossFunction
from ._benchmark import QUICK_TORCH_MODULE_CASES, TORCH_MODULE_CASES, bench_torch_module
from ._ctc import CTCLoss, ctc_loss
from ._pairwise import (CosineEmbeddingLoss, GaussianNLLLoss, MarginRankingLoss, TripletMarginLoss,
                        cosine_embedding_loss, gaussian_nll_loss, margin_ranking_loss, triplet_margin_loss)
from ._overlap import DiceLoss, TverskyLoss, dice_loss, tversky_loss
from ._routing import FEW_CLASSES, SMALL_ELEMENTWISE, SMALL_MULTICLASS, TILED_MIN, set_cpu_routing
from . import functional as _functional
from . import modules as _modules
from ._generate import renamed_getattr
from .functional import (FUNCTIONAL, binary_cross_entropy, binary_cross_entropy_with_logits, binary_focal_loss,
                         binary_hinge_loss, categorical_hinge_loss, cross_entropy, focal_loss, hinge_embedding_loss,
                         huber_loss, jensen_shannon_loss, kl_div, kl_div_with_logits, l1_loss, log_cosh_loss, loss,
                         mse_loss, multi_margin_loss, multilabel_soft_margin_loss, poisson_nll_loss, poly1_loss,
                         pseudo_huber_loss, quantile_loss, sigmoid_focal_loss, smooth_l1_loss, squared_hinge_loss,
                         tweedie_loss, zero_one_error)
from .modules import (MODULES, BCELoss, BCEWithLogitsLoss, BinaryFocalLoss, BinaryHingeLoss, CategoricalHingeLoss,
                      CrossEntropyLoss, FocalLoss, FusedLoss, HingeEmbeddingLoss, HuberLoss, JensenShannonLoss,
                      KLDivLoss, KLDivWithLogitsLoss, L1Loss, LogCoshLoss, MSELoss, MultiLabelSoftMarginLoss,
                      MultiMarginLoss, PoissonNLLLoss, Poly1Loss, PseudoHuberLoss, QuantileLoss, SmoothL1Loss,
                      SquaredHingeLoss, TweedieLoss, ZeroOneError)

__all__ = [
    "FUNCTIONAL", "MODULES", "FusedLossFunction", "bench_torch_module", "loss", "ArgumentError", "LabelIndexError",
    "get_cuda_routing", "set_cuda_routing",
    # functional forms, PyTorch names
    "cross_entropy", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "multi_margin_loss", "kl_div",
    "multilabel_soft_margin_loss", "hinge_embedding_loss",
    # functional forms, our names
    "kl_div_with_logits", "pseudo_huber_loss", "log_cosh_loss", "quantile_loss", "tweedie_loss", "binary_focal_loss",
    "sigmoid_focal_loss", "binary_hinge_loss", "squared_hinge_loss", "zero_one_error", "focal_loss", "poly1_loss",
    "categorical_hinge_loss", "jensen_shannon_loss",
    # modules
    "FusedLoss", "CrossEntropyLoss", "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "PoissonNLLLoss", "BCELoss",
    "BCEWithLogitsLoss", "MultiMarginLoss", "MultiLabelSoftMarginLoss", "HingeEmbeddingLoss", "KLDivLoss",
    "KLDivWithLogitsLoss",
    "PseudoHuberLoss", "LogCoshLoss", "QuantileLoss",
    "TweedieLoss", "BinaryFocalLoss", "BinaryHingeLoss", "SquaredHingeLoss", "ZeroOneError", "FocalLoss", "Poly1Loss",
    "CategoricalHingeLoss", "JensenShannonLoss",
    "ctc_loss", "CTCLoss",
    "margin_ranking_loss", "cosine_embedding_loss", "triplet_margin_loss", "MarginRankingLoss", "CosineEmbeddingLoss",
    "TripletMarginLoss", "gaussian_nll_loss", "GaussianNLLLoss",
    "dice_loss", "tversky_loss", "DiceLoss", "TverskyLoss",
]

# the forms made whole from the registry (functional.GENERATED): exported like the written ones
for _name in _functional.GENERATED:
    globals()[f"{_name}_loss"] = FUNCTIONAL[_name]
    globals()[MODULES[_name].__name__] = MODULES[_name]
    __all__ += [f"{_name}_loss", MODULES[_name].__name__]

# the old names of binary_hinge_loss, zero_one_error and their modules (scikit-learn's metric names): served with a
# FutureWarning until 0.2
RENAMED = {**_functional.RENAMED, **_modules.RENAMED}
__getattr__ = renamed_getattr(__name__, RENAMED)
