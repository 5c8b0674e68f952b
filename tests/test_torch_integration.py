"""fusedloss.torch: values and gradients against torch.nn.functional, gradcheck, the autograd plumbing
(no_grad, non-contiguous and half-precision inputs, the (N, C, d1, ...) layout, in-place gradients, target
gradients, torch.compile) and the modules.

Skipped as a whole when torch is not installed. CUDA cases run only where torch sees a GPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fusedloss as fl  # noqa: E402
import fusedloss.torch as ft  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402
from fusedloss.backends import REGISTRY as BACKENDS  # noqa: E402

from conftest import require_backend  # noqa: E402


@pytest.fixture(autouse=True)
def _fused_kernels_at_every_size():
    """These tests check the fused kernels against torch, mostly on small tensors, which by default run on
    torch's own kernels (see test_torch_routing.py): force the fused path here."""
    ft.set_cpu_routing("fused")
    yield
    ft.set_cpu_routing("auto")

SRC = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))

# tolerances against torch, keyed by torch dtype: (rtol, atol relative to the largest |entry|)
TORCH_TOL = {
    torch.float64: (1e-12, 1e-13),
    torch.float32: (2e-5, 2e-6),
    torch.bfloat16: (2e-2, 1e-2),
    torch.float16: (4e-3, 2e-3),
}


def assert_torch_close(actual, expected, dtype, what=""):
    rtol, atol = TORCH_TOL[dtype]
    a = actual.detach().double()
    e = expected.detach().double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    scale = float(e.abs().max()) if e.numel() else 1.0
    torch.testing.assert_close(a, e, rtol=rtol, atol=atol * max(scale, 1e-300), equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


# --- the table of PyTorch twins -------------------------------------------------------------------------------


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def data_regression(shape, dtype, g):
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype), \
        torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def data_pm1(shape, dtype, g):
    """Targets 1 and -1, a tenth of them 0 (torch's masks: both terms)."""
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.where(u < 0.45, 1.0, torch.where(u < 0.9, -1.0, 0.0))
    return (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype), y.to(dtype)


def data_log_rate(shape, dtype, g):
    x = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.poisson(torch.full(shape, 2.0, dtype=torch.float64), generator=g).to(dtype)


def data_rate(shape, dtype, g):
    x = 0.2 + 3 * torch.rand(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.poisson(torch.full(shape, 2.0, dtype=torch.float64), generator=g).to(dtype)


def data_prob(shape, dtype, g):
    x = 0.05 + 0.9 * torch.rand(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.rand(shape, generator=g, dtype=torch.float64).round().to(dtype)


def data_logit(shape, dtype, g):
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.5, y.round(), y)  # hard and soft
    return x.to(dtype), y.to(dtype)


def data_labels(shape, dtype, g):
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    C = shape[1] if len(shape) >= 2 else shape[0]
    lead = (shape[0],) + tuple(shape[2:]) if len(shape) >= 2 else ()
    return x.to(dtype), torch.randint(0, C, lead, generator=g)


def data_probs(shape, dtype, g):
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    dim = 1 if len(shape) >= 2 else 0
    return x.to(dtype), torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim).to(dtype)


def data_probs_last(shape, dtype, g):
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1).to(dtype)


def data_multilabel(shape, dtype, g):
    """Multi-hot targets of the input's shape (classes last), a fifth of the entries soft."""
    y = (torch.rand(shape, generator=g, dtype=torch.float64) < 0.4).double()
    y = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.2,
                    torch.rand(shape, generator=g, dtype=torch.float64), y)
    return (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype), y.to(dtype)


def _weight_like(x, g):
    return (0.25 + torch.rand(x.shape, generator=g, dtype=torch.float64)).to(x.dtype)


def _class_weight(x, g):
    C = x.shape[1] if x.ndim >= 2 else x.shape[0]
    return (0.25 + torch.rand(C, generator=g, dtype=torch.float64)).to(x.dtype)


def _with_ignored(x, t, index):
    """Mark a few labels as ignored (hard labels only)."""
    if t.dtype == torch.int64 and t.numel() > 2:
        t = t.clone()
        t.view(-1)[::3] = index
    return t


@dataclass
class TorchCase:
    id: str
    loss: str  # registry name
    ours: Callable
    theirs: Callable
    data: Callable
    shapes: tuple
    kwargs: Callable = lambda x, g: {}  # extra arguments, the same for both
    prep_target: Callable = lambda x, t: t
    reductions: tuple = ("mean", "sum", "none")
    half: bool = True  # also checked in bfloat16/float16 (computed by torch in float32)
    gradcheck: bool = True


def _kl_theirs(x, q, reduction="mean", log_target=False):
    return F.kl_div(F.log_softmax(x, -1), q, reduction=reduction, log_target=log_target)


def _kl_ours(x, q, reduction="mean", log_target=False, backend=None):
    return ft.kl_div_with_logits(x, q, reduction=reduction, log_target=log_target, backend=backend)


TORCH_CASES = [
    TorchCase("mse", "mse", ft.mse_loss, F.mse_loss, data_regression, ((7, 5), (11,))),
    TorchCase("mse-weight", "mse", ft.mse_loss, F.mse_loss, data_regression, ((7, 5),),
              kwargs=lambda x, g: {"weight": _weight_like(x, g)}),
    TorchCase("l1", "mae", ft.l1_loss, F.l1_loss, data_regression, ((7, 5),)),
    TorchCase("l1-weight", "mae", ft.l1_loss, F.l1_loss, data_regression, ((7, 5),),
              kwargs=lambda x, g: {"weight": _weight_like(x, g)}),
    TorchCase("huber", "huber", ft.huber_loss, F.huber_loss, data_regression, ((7, 5),)),
    TorchCase("huber-delta-weight", "huber", ft.huber_loss, F.huber_loss, data_regression, ((7, 5),),
              kwargs=lambda x, g: {"delta": 0.5, "weight": _weight_like(x, g)}),
    TorchCase("smooth_l1", "smooth_l1", ft.smooth_l1_loss, F.smooth_l1_loss, data_regression, ((7, 5),)),
    TorchCase("smooth_l1-beta", "smooth_l1", ft.smooth_l1_loss, F.smooth_l1_loss, data_regression, ((7, 5),),
              kwargs=lambda x, g: {"beta": 0.5}),
    TorchCase("hinge_embedding", "hinge_embedding", ft.hinge_embedding_loss, F.hinge_embedding_loss, data_pm1,
              ((7, 5), (11,))),
    TorchCase("hinge_embedding-margin", "hinge_embedding", ft.hinge_embedding_loss, F.hinge_embedding_loss,
              data_pm1, ((7, 5),), kwargs=lambda x, g: {"margin": 0.5}),
    TorchCase("poisson", "poisson_nll", ft.poisson_nll_loss, F.poisson_nll_loss, data_log_rate, ((7, 5),)),
    TorchCase("poisson-rate", "poisson_nll", ft.poisson_nll_loss, F.poisson_nll_loss, data_rate, ((7, 5),),
              kwargs=lambda x, g: {"log_input": False}),
    TorchCase("bce", "binary_cross_entropy", ft.binary_cross_entropy, F.binary_cross_entropy, data_prob,
              ((7, 5),), half=False),  # torch has no half-precision BCE on CPU
    TorchCase("bce-weight", "binary_cross_entropy", ft.binary_cross_entropy, F.binary_cross_entropy, data_prob,
              ((7, 5),), kwargs=lambda x, g: {"weight": _weight_like(x, g)[0]}, half=False),
    TorchCase("bce_logits", "binary_cross_entropy_with_logits", ft.binary_cross_entropy_with_logits,
              F.binary_cross_entropy_with_logits, data_logit, ((7, 5), (9,))),
    TorchCase("bce_logits-weight-pos_weight", "binary_cross_entropy_with_logits",
              ft.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, data_logit, ((7, 5),),
              kwargs=lambda x, g: {"weight": _weight_like(x, g), "pos_weight": 3 * _weight_like(x, g)[0]}),
    TorchCase("bce_logits-scalar_pos_weight", "binary_cross_entropy_with_logits",
              ft.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, data_logit, ((7, 5),),
              kwargs=lambda x, g: {"pos_weight": torch.tensor([2.5], dtype=x.dtype)}),
    TorchCase("cross_entropy", "cross_entropy", ft.cross_entropy, F.cross_entropy, data_labels,
              ((9, 6), (3, 5, 4, 2), (6,))),
    TorchCase("cross_entropy-weight-ignore-smoothing", "cross_entropy", ft.cross_entropy, F.cross_entropy,
              data_labels, ((9, 6), (3, 5, 4, 2)),
              kwargs=lambda x, g: {"weight": _class_weight(x, g), "ignore_index": -1, "label_smoothing": 0.1},
              prep_target=lambda x, t: _with_ignored(x, t, -1)),
    TorchCase("cross_entropy-ignore_in_range", "cross_entropy", ft.cross_entropy, F.cross_entropy, data_labels,
              ((12, 4),), kwargs=lambda x, g: {"ignore_index": 2}),
    TorchCase("cross_entropy-probs", "cross_entropy", ft.cross_entropy, F.cross_entropy, data_probs,
              ((9, 6), (3, 5, 4)), kwargs=lambda x, g: {"weight": _class_weight(x, g), "label_smoothing": 0.2}),
    TorchCase("multi_margin", "multi_margin", ft.multi_margin_loss, F.multi_margin_loss, data_labels,
              ((9, 6), (6,)), half=False),  # torch has no half-precision multi_margin_loss on CPU
    TorchCase("multi_margin-p2-weight", "multi_margin", ft.multi_margin_loss, F.multi_margin_loss, data_labels,
              ((9, 6),), kwargs=lambda x, g: {"p": 2, "margin": 0.5, "weight": _class_weight(x, g)}, half=False),
    TorchCase("multilabel_soft_margin", "multilabel_soft_margin", ft.multilabel_soft_margin_loss,
              F.multilabel_soft_margin_loss, data_multilabel, ((9, 6), (2, 3, 5), (6,))),
    TorchCase("multilabel_soft_margin-weight", "multilabel_soft_margin", ft.multilabel_soft_margin_loss,
              F.multilabel_soft_margin_loss, data_multilabel, ((9, 6), (2, 3, 5)),
              kwargs=lambda x, g: {"weight": (0.25 + torch.rand(x.shape[-1], generator=g, dtype=torch.float64))
                                   .to(x.dtype)}),
    TorchCase("kl_div_with_logits", "kl_div_with_logits", _kl_ours, _kl_theirs, data_probs_last, ((9, 6), (2, 3, 5)),
              reductions=("batchmean", "sum", "mean")),
    TorchCase("kl_div_with_logits-log_target", "kl_div_with_logits", _kl_ours, _kl_theirs, data_probs_last, ((9, 6),),
              kwargs=lambda x, g: {"log_target": True}, prep_target=lambda x, t: t.log(),
              reductions=("batchmean", "sum", "mean")),
]


def _case_params(dtypes):
    out = []
    for case in TORCH_CASES:
        for shape in case.shapes:
            for reduction in case.reductions:
                for dtype in dtypes:
                    if dtype in (torch.bfloat16, torch.float16) and not case.half:
                        continue
                    out.append(pytest.param(case, shape, reduction, dtype,
                                            id=f"{case.id}-{'x'.join(map(str, shape))}-{reduction}-{str(dtype)[6:]}"))
    return out


def _inputs(case: TorchCase, shape, dtype, seed=0):
    g = _gen(seed)
    x, t = case.data(shape, dtype, g)
    t = case.prep_target(x, t)
    kwargs = case.kwargs(x, g)
    return x, t, kwargs


def _value_and_grad(fn, x, t, kwargs, reduction, grad_output=None):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, t, reduction=reduction, **kwargs)
    if grad_output is None:
        grad_output = torch.ones_like(out)
    (g,) = torch.autograd.grad(out, x, grad_output)
    return out, g


def test_every_torch_loss_has_a_case():
    """A registry loss with a torch twin must appear in TORCH_CASES (new losses are not silently untested)."""
    covered = {case.loss for case in TORCH_CASES}
    # sequence losses (ctc) take (input, targets, lengths...) and pairwise losses two or three inputs: their own
    # modules, tests/test_ctc.py and tests/test_pairwise.py
    missing = [name for name, spec in REGISTRY.items()
               if spec.torch_name and spec.kind not in ("sequence", "pairwise") and name not in covered]
    assert not missing, f"add TORCH_CASES entries for {missing}"


def test_every_registry_loss_has_a_functional_form_and_a_module():
    builtin = {name for name, spec in REGISTRY.items() if spec.builtin}  # not a loss another test defined
    assert builtin <= set(ft.FUNCTIONAL), sorted(builtin - set(ft.FUNCTIONAL))
    assert builtin <= set(ft.MODULES), sorted(builtin - set(ft.MODULES))
    for name in sorted(builtin):
        spec = REGISTRY[name]
        if spec.torch_name:  # named after torch where torch has the loss
            assert ft.FUNCTIONAL[name].__name__ == spec.torch_name
            assert hasattr(F, spec.torch_name)
            assert hasattr(ft, spec.torch_name)


@pytest.mark.parametrize("case, shape, reduction, dtype",
                         _case_params((torch.float64, torch.float32, torch.bfloat16, torch.float16)))
def test_matches_torch(case, shape, reduction, dtype):
    x, t, kwargs = _inputs(case, shape, dtype)
    # half precision: torch computes in float32 on upcast inputs (our half path does the same)
    ref_x, ref_t, ref_kwargs = x, t, kwargs
    if dtype in (torch.bfloat16, torch.float16):
        up = lambda v: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
        ref_x, ref_t, ref_kwargs = up(x), up(t), {k: up(v) for k, v in kwargs.items()}
    with _no_warning_check():
        want, want_g = _value_and_grad(case.theirs, ref_x, ref_t, ref_kwargs, reduction)
    go = None
    if reduction == "none":
        go = torch.randn(want.shape, generator=_gen(5), dtype=torch.float64)
        want, want_g = _value_and_grad(case.theirs, ref_x, ref_t, ref_kwargs, reduction, go.to(want.dtype))
    got, got_g = _value_and_grad(case.ours, x, t, kwargs, reduction, None if go is None else go.to(dtype))
    assert got.dtype == dtype and got_g.dtype == dtype
    assert_torch_close(got, want, dtype, "value")
    assert_torch_close(got_g, want_g, dtype, "gradient")


@contextlib.contextmanager
def _no_warning_check():
    """torch warns for kl_div's "mean"; these tests do not care."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("backend_name", ["numpy", "cpp", "numba"])
@pytest.mark.parametrize("case", [c for c in TORCH_CASES if c.id in (
    "cross_entropy-weight-ignore-smoothing", "bce_logits-weight-pos_weight", "huber-delta-weight", "mse",
    "kl_div_with_logits", "multi_margin-p2-weight")], ids=lambda c: c.id)
def test_matches_torch_on_each_backend(case, backend_name):
    """The backend= argument reaches the kernels; every host backend agrees with torch."""
    require_backend(backend_name)
    dtype = torch.float32
    module = BACKENDS[backend_name].load()
    if not module.supports(REGISTRY[case.loss], np.dtype(np.float32)):
        pytest.skip(f"backend {backend_name!r} does not support {case.loss}")
    x, t, kwargs = _inputs(case, case.shapes[0], dtype)
    reduction = case.reductions[0]
    want, want_g = _value_and_grad(case.theirs, x, t, kwargs, reduction)
    got, got_g = _value_and_grad(lambda *a, **k: case.ours(*a, **k, backend=backend_name), x, t, kwargs, reduction)
    assert_torch_close(got, want, dtype, "value")
    assert_torch_close(got_g, want_g, dtype, "gradient")


@pytest.mark.parametrize("case, shape, reduction, dtype",
                         [p for p in _case_params((torch.float64,)) if p.values[0].gradcheck])
def test_gradcheck(case, shape, reduction, dtype):
    x, t, kwargs = _inputs(case, shape, dtype, seed=3)
    x = x.detach().requires_grad_(True)
    with _no_warning_check():
        assert torch.autograd.gradcheck(lambda a: case.ours(a, t, reduction=reduction, **kwargs), (x,),
                                        eps=1e-6, atol=1e-6, rtol=1e-5)


# --- our own losses: every registry entry through the torch layer ------------------------------------------

OWN_DATA = {
    "poly1": (data_labels, {"epsilon": 1.5}),
    "categorical_hinge": (data_labels, {}),
    "jensen_shannon": (data_probs_last, {"beta": 0.3}),
    "pseudo_huber": (data_regression, {"delta": 0.7}),
    "asymmetric_huber": (data_regression, {"delta": 0.7, "alpha_left": 0.5, "alpha_right": 2.0}),
    "log_cosh": (data_regression, {}),
    "fair": (data_regression, {"c": 0.7}),
    "cauchy": (data_regression, {"c": 0.7}),
    "general_robust": (data_regression, {"alpha": -0.5, "c": 0.7}),
    "quantile": (data_regression, {"quantile": 0.3}),
    "expectile": (data_regression, {"expectile": 0.8}),
    "tweedie": (data_log_rate, {"power": 1.4}),
    "squared_log": (lambda s, d, g: tuple((torch.rand(s, generator=g, dtype=torch.float64) * 4 - 0.9).to(d)
                                          for _ in range(2)), {}),
    "msle": (lambda s, d, g: tuple((torch.rand(s, generator=g, dtype=torch.float64) * 4 - 0.9).to(d)
                                   for _ in range(2)), {}),
    "mape": (data_regression, {}),
    "gamma": (lambda s, d, g: (data_log_rate(s, d, g)[0],
                               (0.1 + torch.rand(s, generator=g, dtype=torch.float64) * 3).to(d)), {}),
    "binary_focal": (data_logit, {"alpha": 0.3, "gamma": 1.5}),
    "exponential": (data_logit, {}),
    "hinge": (lambda s, d, g: (data_regression(s, d, g)[0], torch.where(torch.rand(s, generator=g) < 0.5, -1.0, 1.0)
                               .to(d)), {}),
    "squared_hinge": (lambda s, d, g: (data_regression(s, d, g)[0],
                                       torch.where(torch.rand(s, generator=g) < 0.5, 0.0, 1.0).to(d)), {}),
    "tweedie_identity": (data_rate, {"power": 1.5}),  # the prediction is the mean, > 0
    "zero_one": (lambda s, d, g: (data_regression(s, d, g)[0], torch.rand(s, generator=g).round().to(d)),
                 {"threshold": 0.1}),
    "categorical_focal": (data_labels, {"gamma": 2.0, "alpha": torch.tensor([0.5, 1.0, 2.0, 1.5, 1.0])}),
}


def _own_cases():
    """Losses without a torch twin and without a TorchCase (kl_div_with_logits has one: torch's kl_div after
    log_softmax, with torch's reductions, where "mean" is not the NumPy API's batchmean)."""
    out = []
    cased = {case.loss for case in TORCH_CASES}
    for name in REGISTRY:
        # overlap losses take (N, C, ...) scores and class indices: tests/test_overlap.py checks their torch forms
        if REGISTRY[name].torch_name or name in cased or REGISTRY[name].kind == "overlap":
            continue
        out.append(pytest.param(name, id=name))
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", _own_cases())
def test_own_losses_match_the_numpy_api(name, reduction):
    """Losses without a torch twin: the torch layer returns what fusedloss's NumPy API returns."""
    data, params = OWN_DATA[name]
    shape = (8, 5)
    x, t = data(shape, torch.float64, _gen(1))
    fn = ft.FUNCTIONAL[name]
    xr = x.clone().requires_grad_(REGISTRY[name].differentiable)
    out = fn(xr, t, reduction=reduction, **params)
    np_params = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
    np_t = t.numpy()
    loss = getattr(fl, name)
    if not REGISTRY[name].differentiable:
        want = loss(x.numpy(), np_t, reduction=reduction, **np_params)
        np.testing.assert_allclose(out.numpy() if reduction == "none" else float(out), want, rtol=1e-14)
        assert not out.requires_grad
        return
    want, want_g = loss.value_and_grad(x.numpy(), np_t, reduction=reduction, **np_params)
    go = torch.ones_like(out) if reduction != "none" else torch.randn(out.shape, generator=_gen(2), dtype=out.dtype)
    (g,) = torch.autograd.grad(out, xr, go)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-13, atol=1e-15)
    want_g = want_g * (go.numpy()[..., None] if (reduction == "none" and want_g.ndim > go.ndim) else go.numpy())
    np.testing.assert_allclose(g.numpy(), want_g, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", [n for n in _own_cases() if REGISTRY[n.values[0]].differentiable])
def test_own_losses_gradcheck(name):
    data, params = OWN_DATA[name]
    x, t = data((6, 5), torch.float64, _gen(4))
    x = x.requires_grad_(True)
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(lambda a: ft.FUNCTIONAL[name](a, t, reduction=reduction, **params), (x,),
                                        eps=1e-6, atol=1e-6, rtol=1e-5)


def test_sigmoid_focal_loss_matches_torchvision_formula():
    """torchvision.ops.sigmoid_focal_loss, written out (torchvision is not a dependency)."""
    g = _gen(7)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(20, 3, generator=g, dtype=torch.float64).round()

    def torchvision_focal(inputs, targets, alpha=0.25, gamma=2.0):
        p = torch.sigmoid(inputs)
        ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        return alpha_t * loss

    want = torchvision_focal(x, y)
    got = ft.sigmoid_focal_loss(x, y)  # default reduction "none", as torchvision
    assert got.shape == want.shape
    assert_torch_close(got, want, torch.float64, "value")
    assert_torch_close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0], torch.float64,
                       "gradient")


# --- modules ---------------------------------------------------------------------------------------------------


MODULE_PAIRS = [
    ("CrossEntropyLoss", {}, data_labels, (4, 5, 3)),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 0, "reduction": "sum"}, data_labels, (6, 5)),
    ("MSELoss", {}, data_regression, (6, 5)),
    ("L1Loss", {"reduction": "sum"}, data_regression, (6, 5)),
    ("HuberLoss", {"delta": 0.4}, data_regression, (6, 5)),
    ("SmoothL1Loss", {"beta": 0.3}, data_regression, (6, 5)),
    ("PoissonNLLLoss", {}, data_log_rate, (6, 5)),
    ("BCELoss", {}, data_prob, (6, 5)),
    ("BCEWithLogitsLoss", {"pos_weight": torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)}, data_logit,
     (6, 5)),
    ("MultiMarginLoss", {"p": 2}, data_labels, (6, 5)),
]


@pytest.mark.parametrize("cls, kwargs, data, shape", MODULE_PAIRS, ids=[p[0] for p in MODULE_PAIRS])
def test_modules_are_drop_in(cls, kwargs, data, shape):
    """Replacing torch.nn.<Loss>(...) by fusedloss.torch.<Loss>(...) with the same arguments: same results."""
    x, t = data(shape, torch.float64, _gen(11))
    theirs = getattr(torch.nn, cls)(**kwargs)
    ours = getattr(ft, cls)(**kwargs)
    want, want_g = _value_and_grad(lambda a, b, reduction: theirs(a, b), x, t, {}, None)
    got, got_g = _value_and_grad(lambda a, b, reduction: ours(a, b), x, t, {}, None)
    assert_torch_close(got, want, torch.float64, "value")
    assert_torch_close(got_g, want_g, torch.float64, "gradient")
    assert isinstance(ours, torch.nn.Module)
    assert "reduction" in repr(ours)


def test_module_weight_is_a_buffer_like_torch():
    w = torch.tensor([1.0, 2.0, 3.0])
    ours, theirs = ft.CrossEntropyLoss(weight=w), torch.nn.CrossEntropyLoss(weight=w)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight"}
    ours.load_state_dict(theirs.state_dict())
    ours = ours.double()
    assert ours.weight.dtype == torch.float64
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 1, 0])
    assert_torch_close(ours(x, t), theirs.double()(x, t), torch.float64, "value")


def test_kldiv_module_and_the_logits_form():
    """KLDivLoss is torch's (log-probabilities in); KLDivWithLogitsLoss takes the logits and gives the same value
    and the same gradient with respect to them."""
    g = _gen(12)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(7, 4, generator=g, dtype=torch.float64), -1)
    want = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(z, -1), q)
    got = ft.KLDivLoss(reduction="batchmean")(F.log_softmax(z, -1), q)
    fused = ft.KLDivWithLogitsLoss(reduction="batchmean")(z, q)  # logits in, no log_softmax
    (want_g,) = torch.autograd.grad(want, z)
    for v in (got, fused):
        assert_torch_close(v, want, torch.float64, "value")
        assert_torch_close(torch.autograd.grad(v, z)[0], want_g, torch.float64, "grad")


def test_fused_loss_module_by_registry_name():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    w = torch.rand(6, dtype=torch.float64)
    m = ft.FusedLoss("cross_entropy", z_loss=1e-3)
    out = m(x, t, sample_weight=w)
    want = fl.cross_entropy(x.detach().numpy(), t.numpy(), sample_weight=w.numpy(), z_loss=1e-3)
    assert math.isclose(out.detach().item(), want, rel_tol=1e-14)
    out.backward()
    np.testing.assert_allclose(
        x.grad.numpy(), fl.cross_entropy.grad(x.detach().numpy(), t.numpy(), sample_weight=w.numpy(), z_loss=1e-3),
        rtol=1e-13)
    assert "cross_entropy" in repr(m)
    with pytest.raises(ValueError, match="unknown loss"):
        ft.FusedLoss("nope")


def test_confidence_penalty_through_the_functional_and_the_module():
    """A fusedloss-only keyword of cross_entropy (torch has no such option): the NumPy API's value and gradient,
    on the functional form and on CrossEntropyLoss (which shows it)."""
    x = torch.randn(6, 5, dtype=torch.float64)
    t = torch.tensor([0, 1, -100, 3, 4, 2])
    w = torch.rand(5, dtype=torch.float64) + 0.5
    kw = dict(class_weight=w.numpy(), label_smoothing=0.1, confidence_penalty=0.25)
    want, want_g = fl.cross_entropy.value_and_grad(x.numpy(), t.numpy(), **kw)
    module = ft.CrossEntropyLoss(weight=w, label_smoothing=0.1, confidence_penalty=0.25)
    assert "confidence_penalty=0.25" in repr(module)
    for fn in (lambda z: ft.cross_entropy(z, t, weight=w, label_smoothing=0.1, confidence_penalty=0.25),
               lambda z: module(z, t)):
        z = x.clone().requires_grad_()
        out = fn(z)
        out.backward()
        assert math.isclose(out.item(), want, rel_tol=1e-14)
        np.testing.assert_allclose(z.grad.numpy(), want_g, rtol=1e-13)


# --- autograd plumbing ----------------------------------------------------------------------------------------


def test_no_grad_returns_the_value_without_a_graph():
    x = torch.randn(6, 4, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    with torch.no_grad():
        v = ft.cross_entropy(x, t)
    assert not v.requires_grad and v.grad_fn is None
    assert_torch_close(v, F.cross_entropy(x, t), torch.float32, "value")
    # inputs that do not require grad: a plain value as well
    v2 = ft.mse_loss(x.detach(), x.detach() + 1)
    assert v2.grad_fn is None and float(v2) == pytest.approx(1.0)


def test_requires_grad_false_target_and_input_requires_grad():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 3, dtype=torch.float64)
    out = ft.mse_loss(x, y)
    out.backward()
    assert_torch_close(x.grad, 2 * (x - y).detach() / x.numel(), torch.float64, "grad")


@pytest.mark.parametrize("fn", ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"])
def test_target_gradient_for_residual_losses(fn):
    """mse, l1, huber, smooth_l1: a target that requires grad gets torch's target gradient."""
    g = _gen(8)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad(getattr(F, fn)(x, y), (x, y))
    got = torch.autograd.grad(getattr(ft, fn)(x, y), (x, y))
    for a, b in zip(got, want):
        assert_torch_close(a, b, torch.float64, "grad")
    # target only
    x0 = x.detach()
    (gy,) = torch.autograd.grad(getattr(ft, fn)(x0, y), (y,))
    assert_torch_close(gy, want[1], torch.float64, "target grad")
    assert torch.autograd.gradcheck(lambda a, b: getattr(ft, fn)(a, b, reduction="none"), (x, y))


def test_target_gradient_elsewhere_is_torchs_or_raises():
    """A form named after torch's gives torch's target gradient (its function runs the call, see
    test_torch_twin.py); with an option torch lacks, or without a torch twin, the fused kernels' refusal."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(ft.binary_cross_entropy_with_logits(x, y), (x, y))
    want = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y), (x, y))
    for a, b in zip(got, want):
        assert_torch_close(a, b, torch.float64, "grad")
    with pytest.raises(RuntimeError, match="gradient with respect to target is not supported"):
        ft.binary_cross_entropy_with_logits(x, y, label_smoothing=0.1)
    with pytest.raises(RuntimeError, match="gradient with respect to target is not supported"):
        ft.loss("binary_cross_entropy_with_logits", x, y)
    # detached: fine
    ft.binary_cross_entropy_with_logits(x, y.detach(), label_smoothing=0.1).backward()


def test_weight_requiring_grad_raises():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.rand(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="weight"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), weight=w)


def test_broadcast_target_warns_like_torch_and_sums_its_gradient():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="target size"):
        got = torch.autograd.grad(ft.mse_loss(x, y), (x, y))
    with pytest.warns(UserWarning):
        want = torch.autograd.grad(F.mse_loss(x, y), (x, y))
    for a, b in zip(got, want):
        assert_torch_close(a, b, torch.float64, "grad")


@pytest.mark.parametrize("layout", ["transposed", "strided", "channels_last", "expanded_target"])
def test_non_contiguous_inputs(layout):
    g = _gen(9)
    if layout == "transposed":
        x = torch.randn(6, 10, generator=g).t()  # (10, 6), not contiguous
        t = torch.randint(0, 6, (10,), generator=g)
    elif layout == "strided":
        x = torch.randn(20, 12, generator=g)[::2, ::2]
        t = torch.randint(0, 6, (20,), generator=g)[::2]
    elif layout == "channels_last":  # (N, C, H, W) stored NHWC: moving C last is free
        x = torch.randn(2, 5, 3, 4, generator=g).contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, 5, (2, 3, 4), generator=g)
    else:
        x = torch.randn(7, 4, generator=g)
        t = torch.randint(0, 4, (1,), generator=g).expand(7)
    assert not x.is_contiguous() or layout == "expanded_target"
    x_copy = x.clone()
    want, want_g = _value_and_grad(F.cross_entropy, x, t, {}, "mean")
    got, got_g = _value_and_grad(ft.cross_entropy, x, t, {}, "mean")
    assert_torch_close(got, want, torch.float32, "value")
    assert_torch_close(got_g, want_g, torch.float32, "grad")
    assert torch.equal(x, x_copy)  # inputs are never modified (without inplace_grad)
    # elementwise too
    y = torch.randn(x.shape, generator=g).t().contiguous().t() if x.ndim == 2 else torch.randn(x.shape, generator=g)
    want, want_g = _value_and_grad(F.huber_loss, x, y, {}, "sum")
    got, got_g = _value_and_grad(ft.huber_loss, x, y, {}, "sum")
    assert_torch_close(got, want, torch.float32, "value")
    assert_torch_close(got_g, want_g, torch.float32, "grad")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_computes_in_float32(dtype):
    g = _gen(10)
    x = torch.randn(32, 50, generator=g).to(dtype).requires_grad_(True)
    t = torch.randint(0, 50, (32,), generator=g)
    out = ft.cross_entropy(x, t)
    out.backward()
    assert out.dtype == dtype and x.grad.dtype == dtype
    x32 = x.detach().float().requires_grad_(True)
    ref = F.cross_entropy(x32, t)
    ref.backward()
    # our result is the float32 result rounded once to the half type
    assert out.detach().item() == ref.detach().to(dtype).item()
    assert torch.equal(x.grad, x32.grad.to(dtype))


def test_grad_output_scaling_and_retain_graph():
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (8,))
    (g1,) = torch.autograd.grad(ft.cross_entropy(x, t), x)
    out = ft.cross_entropy(x, t)
    (3.0 * out).backward(retain_graph=True)
    assert_torch_close(x.grad, 3 * g1, torch.float64, "scaled")
    out.backward()  # the saved gradient was not modified by the first backward
    assert_torch_close(x.grad, 4 * g1, torch.float64, "accumulated")



@pytest.mark.parametrize("name, shape", [("cross_entropy", (1100, 1000)), ("mse_loss", (1_100_000,))])
def test_a_large_gradient_handed_to_autograd_keeps_its_values(name, shape):
    """From _SKIP_SCALE_MIN entries on, loss.backward() hands the saved gradient to autograd instead of multiplying
    it by 1: it holds torch.nn's values, shares no memory with the input, and autograd's accumulation over a
    retained graph never writes into the saved copy (three backward passes give three times the gradient)."""
    from fusedloss.torch import _autograd

    assert math.prod(shape) >= _autograd._SKIP_SCALE_MIN
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    t = torch.randint(0, shape[-1], shape[:1], generator=gen) if name == "cross_entropy" else torch.randn(shape)
    leaf = x.clone().requires_grad_(True)
    getattr(F, name)(leaf, t).backward()
    want = leaf.grad
    leaf = x.clone().requires_grad_(True)
    out = getattr(ft, name)(leaf, t)
    out.backward(retain_graph=True)
    g = leaf.grad
    assert g.is_contiguous() and g.dtype == x.dtype and g.shape == x.shape
    assert g.untyped_storage().data_ptr() != leaf.untyped_storage().data_ptr()
    assert_torch_close(g, want, torch.float32, f"{name} gradient")
    first = g.clone()
    out.backward(retain_graph=True)
    out.backward()
    assert_torch_close(leaf.grad, 3 * first, torch.float32, f"{name} accumulated")
    assert torch.equal(leaf.detach(), x)

def test_double_backward_outside_torchs_options_is_refused():
    """create_graph=True asks for a graph of the gradient, to differentiate it again: torch's through a form named
    after torch's (test_torch_twin.py), refused with a message where an option torch lacks is set."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out = ft.mse_loss(x, torch.zeros_like(x), backend="numpy")
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.autograd.grad(out, x, create_graph=True)


def test_empty_batch_like_torch():
    x = torch.randn(0, 4, requires_grad=True)
    t = torch.zeros(0, dtype=torch.int64)
    assert math.isnan(ft.cross_entropy(x, t).detach().item())
    assert math.isnan(F.cross_entropy(x, t).detach().item())
    assert ft.cross_entropy(x, t, reduction="sum").detach().item() == 0.0
    assert ft.cross_entropy(x, t, reduction="none").shape == (0,)


# --- in-place gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, dtype", [((16, 10), torch.float32), ((16, 10), torch.float64),
                                          ((4, 6, 5), torch.float32), ((16, 10), torch.bfloat16)])
def test_inplace_grad_writes_into_the_logits(shape, dtype):
    g = _gen(13)
    base = torch.randn(shape, generator=g).to(dtype).requires_grad_(True)
    C = shape[1]
    t = torch.randint(0, C, (shape[0],) + shape[2:], generator=g)
    want_v, want_g = _value_and_grad(ft.cross_entropy, base, t, {"label_smoothing": 0.1}, "mean")

    logits = base * 1  # a non-leaf, as a model's output
    ptr = logits.data_ptr()
    out = ft.cross_entropy(logits, t, label_smoothing=0.1, inplace_grad=True)
    (got_g,) = torch.autograd.grad(out, base)
    assert_torch_close(out, want_v, dtype, "value")
    assert_torch_close(got_g, want_g, dtype, "grad")
    # the logits now hold the gradient
    assert logits.data_ptr() == ptr
    assert_torch_close(logits.detach(), want_g, dtype, "logits storage")


def test_inplace_grad_on_a_leaf_shares_the_storage():
    x = torch.randn(8, 6, requires_grad=True)
    t = torch.randint(0, 6, (8,))
    ft.cross_entropy(x, t, inplace_grad=True).backward()
    assert x.grad.data_ptr() == x.data_ptr()


def test_inplace_grad_is_caught_when_autograd_needs_the_logits():
    """logits saved by another op for its backward (tanh keeps its output): autograd reports the overwrite."""
    base = torch.randn(8, 6, requires_grad=True)
    logits = torch.tanh(base)
    out = ft.cross_entropy(logits, torch.randint(0, 6, (8,)), inplace_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_inplace_grad_does_nothing_without_a_gradient():
    x = torch.randn(8, 6)
    x0 = x.clone()
    ft.cross_entropy(x, torch.randint(0, 6, (8,)), inplace_grad=True)
    assert torch.equal(x, x0)


# --- torch.compile ------------------------------------------------------------------------------------------


def _compile_model_check(backend):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    ours = ft.CrossEntropyLoss(label_smoothing=0.05)
    x = torch.randn(12, 8)
    t = torch.randint(0, 5, (12,))

    def step(inp, tgt):
        return ours(model(inp), tgt)

    eager = step(x, t)
    eager_g = torch.autograd.grad(eager, list(model.parameters()))
    compiled = torch.compile(step, backend=backend)
    for _ in range(2):  # the second call runs the cached code
        got = compiled(x, t)
        got_g = torch.autograd.grad(got, list(model.parameters()))
        assert_torch_close(got, eager, torch.float32, "value")
        for a, b in zip(got_g, eager_g):
            assert_torch_close(a, b, torch.float32, "grad")
    # and torch's own loss agrees
    assert_torch_close(got, torch.nn.CrossEntropyLoss(label_smoothing=0.05)(model(x), t), torch.float32, "torch")


def test_torch_compile_aot_eager():
    _compile_model_check("aot_eager")


@pytest.mark.slow
def test_torch_compile_inductor():
    """The default backend (inductor; needs a C++ compiler: ~30 s on a loaded 2-core machine)."""
    _compile_model_check("inductor")


# --- errors ------------------------------------------------------------------------------------------------------


def test_bad_inputs():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="float"):
        ft.mse_loss(torch.ones(3, dtype=torch.int64), torch.ones(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ft.mse_loss(np.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="batchmean")
    with pytest.raises(ValueError, match="out of range"):
        ft.cross_entropy(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="broadcast"):
        ft.mse_loss(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="1-d or 2-d"):
        ft.multi_margin_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="broadcast"):
        ft.huber_loss(x, x, weight=torch.ones(5))


# --- import hygiene and the benchmark helper ---------------------------------------------------------------------


def _run_python(code):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_fusedloss_does_not_import_torch():
    r = _run_python("import sys, fusedloss; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_import_fusedloss_torch_does_not_import_dynamo():
    r = _run_python("import sys, fusedloss.torch; print('torch._dynamo' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_bench_torch_module_rows():
    rows = ft.bench_torch_module((("cross_entropy", (64, 50)), ("mse", (1000,))), repeat=2, warmup=1,
                                 min_sample_s=1e-4)
    assert len(rows) == 4
    for r in rows:
        assert r["check"] == "ok", r
        assert r["median_s"] > 0 and r["mode"] == "torch-module"
    ours = [r for r in rows if r["contestant"] == "fusedloss"]
    assert all(r["backend"] in {row["name"] for row in fl.backends() if row["available"]} for r in ours)


# --- CUDA (where torch sees a GPU and the cuda backend can run) ---------------------------------------------------


def _cuda_reason():
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    rows = {r["name"]: r for r in fl.backends()}
    if not rows.get("cuda", {}).get("available"):
        return f"cuda backend unavailable: {rows.get('cuda', {}).get('reason')}"
    return None


@pytest.mark.cuda
@pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))
@pytest.mark.parametrize("fn", ["cross_entropy", "mse_loss"])
def test_cuda_tensors_match_torch(fn):
    g = _gen(14)
    if fn == "cross_entropy":
        x, t = data_labels((64, 33), torch.float32, g)
    else:
        x, t = data_regression((1000,), torch.float32, g)
    x, t = x.cuda(), t.cuda()
    want, want_g = _value_and_grad(getattr(F, fn), x, t, {}, "mean")
    got, got_g = _value_and_grad(getattr(ft, fn), x, t, {}, "mean")
    assert got.device == x.device and got_g.device == x.device
    assert_torch_close(got.cpu(), want.cpu(), torch.float32, "value")
    assert_torch_close(got_g.cpu(), want_g.cpu(), torch.float32, "grad")


def test_complex_weights_targets_and_class_vectors_are_refused():
    """A complex tensor where real numbers are due is refused, naming it: converting it to the kernels' dtype
    would drop its imaginary part (torch only warns)."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels, w = torch.tensor([0, 2, 1, 1]), torch.ones(4, dtype=torch.complex128)
    with pytest.raises(TypeError, match="sample_weight must be real"):
        ft.loss("mse", x, torch.zeros(4, 3, dtype=torch.float64), sample_weight=w)
    with pytest.raises(TypeError, match="sample_weight must be real"):
        ft.loss("cross_entropy", x, labels, sample_weight=w)
    with pytest.raises(TypeError, match="class_weight must be real"):
        ft.loss("cross_entropy", x, labels, class_weight=torch.ones(3, dtype=torch.complex128))
    with pytest.raises(TypeError, match="weight must be real"):
        ft.mse_loss(x, torch.zeros(4, 3, dtype=torch.float64), weight=torch.ones(4, 3, dtype=torch.complex128))
    with pytest.raises(TypeError, match="target must be real"):
        ft.loss("mse", x, torch.zeros(4, 3, dtype=torch.complex128), sample_weight=torch.ones(4))


def test_an_input_too_large_to_copy_says_which_array():
    """An expanded (stride-0) input of 2^40 elements needs a contiguous copy that cannot be allocated: the error
    is the NumPy API's MemoryError that names the array and its size, not torch's allocator's RuntimeError."""
    x = torch.zeros((), dtype=torch.float64).expand(2**40).requires_grad_()
    with pytest.raises(MemoryError, match=r"^mse: cannot allocate 8 TiB .* copy of pred .*\(1099511627776,\)"):
        ft.loss("mse", x, torch.zeros((), dtype=torch.float64).expand(2**40))
