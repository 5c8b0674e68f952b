"""fusedloss.torch against torch.nn, as a user swapping one for the other would see it.

The pairs are found, not listed: every name in ``fusedloss.torch.__all__`` that ``torch.nn.functional`` (a
function) or ``torch.nn`` (a module) also has must have torch's signature, and must have an entry in CASES (data and
option variants), or a test fails. Each case then runs over shapes (``(N, C, d1, d2)`` for class losses),
reductions, dtypes (float64, float32, bfloat16), layouts (contiguous, non-contiguous) and option variants (class and
elementwise weights, ``pos_weight``, ``ignore_index``, ``label_smoothing``, probabilities as targets ...), checking
the value, its dtype and shape, and the gradients. Then: autocast, ``torch.func``, double backward and
``torch.jit.script``.

Small inputs normally run on torch's own kernels (see test_torch_routing.py); here the fused kernels are forced.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fusedloss as fl  # noqa: E402
import fusedloss.torch as ft  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402


@pytest.fixture(autouse=True)
def _fused_kernels_at_every_size():
    ft.set_cpu_routing("fused")
    yield
    ft.set_cpu_routing("auto")


FUNCTION_TWINS = sorted(n for n in ft.__all__ if not isinstance(getattr(ft, n), type) and hasattr(F, n))
MODULE_TWINS = sorted(n for n in ft.__all__ if isinstance(getattr(ft, n), type) and hasattr(torch.nn, n))

# (rtol, atol relative to the largest |entry|), keyed by the input's dtype
TOL = {torch.float64: (1e-11, 1e-12), torch.float32: (3e-5, 3e-6), torch.bfloat16: (2e-2, 1e-2)}


def assert_close(got, want, dtype, what):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, torch's {tuple(want.shape)}"
    rtol, atol = TOL[dtype]
    g, w = got.detach().double(), want.detach().double()
    finite = w[w.isfinite()]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    torch.testing.assert_close(g, w, rtol=rtol, atol=atol * max(scale, 1e-300), equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


# --- data -------------------------------------------------------------------------------------------------------


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _f64(shape, g, lo=None, hi=None):
    if lo is None:
        return torch.randn(shape, generator=g, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _classes(shape):
    return shape[1] if len(shape) >= 2 else shape[0]


def _rows(shape):
    return (shape[0],) + tuple(shape[2:]) if len(shape) >= 2 else ()


def d_regression(shape, g):
    return _f64(shape, g), _f64(shape, g)


def d_pm1(shape, g):  # targets 1 and -1, some 0 (torch's masks: both terms)
    u = _f64(shape, g, 0, 1)
    return 2 * _f64(shape, g), torch.where(u < 0.45, 1.0, torch.where(u < 0.9, -1.0, 0.0)).double()


def d_log_rate(shape, g):
    return 0.5 * _f64(shape, g), torch.poisson(torch.full(shape, 2.0, dtype=torch.float64), generator=g)


def d_rate(shape, g):
    return _f64(shape, g, 0.2, 3.0), torch.poisson(torch.full(shape, 2.0, dtype=torch.float64), generator=g)


def d_prob(shape, g):
    return _f64(shape, g, 0.05, 0.95), _f64(shape, g, 0.0, 1.0)


def d_logit(shape, g):
    y = _f64(shape, g, 0.0, 1.0)
    return 2 * _f64(shape, g), torch.where(_f64(shape, g, 0, 1) < 0.5, y.round(), y)


def d_labels(shape, g):
    return 2 * _f64(shape, g), torch.randint(0, _classes(shape), _rows(shape), generator=g)


def d_multilabel(shape, g):  # classes on the last dim; multi-hot targets, some rows soft
    y = (_f64(shape, g, 0, 1) < 0.4).double()
    return 2 * _f64(shape, g), torch.where(_f64(shape, g, 0, 1) < 0.2, _f64(shape, g, 0, 1), y)


def d_probs(shape, g):
    return 2 * _f64(shape, g), torch.softmax(_f64(shape, g), 1 if len(shape) >= 2 else 0)


def d_log_probs(shape, g):
    dim = 1 if len(shape) >= 2 else 0
    return torch.log_softmax(_f64(shape, g), dim), torch.softmax(_f64(shape, g), dim)


def w_elementwise(x, g):  # broadcast along the leading axes, as torch allows
    return _f64(x.shape[-1:], g, 0.25, 1.25)


def w_full(x, g):
    return _f64(x.shape, g, 0.25, 1.25)


def w_class(x, g):
    return _f64((_classes(x.shape),), g, 0.25, 1.25)


def ignore_some(x, t, index=-1):
    t = t.clone()
    if t.numel() > 2:
        t.view(-1)[::3] = index
    return t


@dataclass
class Case:
    """One torch.nn.functional twin: data, option variants (name -> kwargs builder, weights made from x), the
    shapes, reductions, dtypes it runs on, and whether torch gives the target a gradient that we match."""
    data: Callable
    shapes: tuple
    module: str
    variants: dict = field(default_factory=lambda: {"default": lambda x, g: {}})
    prep_target: dict = field(default_factory=dict)  # variant -> target transform
    reductions: tuple = ("mean", "sum", "none")
    half: bool = True  # torch has a CPU bfloat16 kernel (otherwise: the dtype is compared with float32 upcast)
    target_grad: bool = False


ELEMENTWISE = ((7,), (4, 5), (2, 3, 4))
CLASS = ((6, 4), (3, 4, 5), (2, 4, 3, 2), (4,))

CASES = {
    "mse_loss": Case(d_regression, ELEMENTWISE, "MSELoss", {
        "default": lambda x, g: {}, "weight": lambda x, g: {"weight": w_full(x, g)}}, target_grad=True),
    "l1_loss": Case(d_regression, ELEMENTWISE, "L1Loss", {
        "default": lambda x, g: {}, "weight": lambda x, g: {"weight": w_full(x, g)}}, target_grad=True),
    "huber_loss": Case(d_regression, ELEMENTWISE, "HuberLoss", {
        "default": lambda x, g: {}, "delta-weight": lambda x, g: {"delta": 0.5, "weight": w_full(x, g)}},
        target_grad=True),
    "smooth_l1_loss": Case(d_regression, ELEMENTWISE, "SmoothL1Loss", {
        "default": lambda x, g: {}, "beta": lambda x, g: {"beta": 0.3}}, target_grad=True),
    "hinge_embedding_loss": Case(d_pm1, ELEMENTWISE, "HingeEmbeddingLoss", {
        "default": lambda x, g: {}, "margin": lambda x, g: {"margin": 0.5}}),
    "poisson_nll_loss": Case(d_log_rate, ELEMENTWISE, "PoissonNLLLoss", {
        "default": lambda x, g: {}, "full": lambda x, g: {"full": True}}),
    "binary_cross_entropy": Case(d_prob, ELEMENTWISE, "BCELoss", {
        "default": lambda x, g: {}, "weight": lambda x, g: {"weight": w_elementwise(x, g)}}),
    "binary_cross_entropy_with_logits": Case(d_logit, ELEMENTWISE, "BCEWithLogitsLoss", {
        "default": lambda x, g: {},
        "weight-pos_weight": lambda x, g: {"weight": w_full(x, g), "pos_weight": 3 * w_elementwise(x, g)},
        # (C, 1, ...) against (N, C, d1, ...): per channel, as in segmentation
        "pos_weight_dim1": lambda x, g: {"pos_weight": _f64((x.shape[1],) + (1,) * (x.ndim - 2), g, 0.5, 3.0)}
        if x.ndim >= 3 else {"pos_weight": _f64(x.shape[-1:], g, 0.5, 3.0)}}),
    "cross_entropy": Case(d_labels, CLASS, "CrossEntropyLoss", {
        "default": lambda x, g: {},
        "weight-ignore-smoothing": lambda x, g: {"weight": w_class(x, g), "ignore_index": -1,
                                                 "label_smoothing": 0.1},
        "ignore_in_range": lambda x, g: {"ignore_index": 1}},
        prep_target={"weight-ignore-smoothing": ignore_some}),
    "multi_margin_loss": Case(d_labels, ((6, 4), (4,)), "MultiMarginLoss", {
        "default": lambda x, g: {}, "p2-margin-weight": lambda x, g: {"p": 2, "margin": 0.5, "weight": w_class(x, g)}},
        half=False),
    "kl_div": Case(d_log_probs, ((6, 4), (3, 4, 5), (2, 4, 3, 2)), "KLDivLoss", {
        "default": lambda x, g: {}, "log_target": lambda x, g: {"log_target": True}},
        prep_target={"log_target": lambda x, t: t.log()}, reductions=("batchmean", "mean", "sum", "none")),
    "multilabel_soft_margin_loss": Case(d_multilabel, ((6, 4), (3, 4, 5), (4,)), "MultiLabelSoftMarginLoss", {
        "default": lambda x, g: {}, "weight": lambda x, g: {"weight": w_elementwise(x, g)},
        "weight_full": lambda x, g: {"weight": w_full(x, g)}}),  # any shape torch broadcasts: torch's function
}
# probabilities as targets: the same (N, C, d1, ...) layout as the logits
CASES["cross_entropy-probs"] = Case(d_probs, CLASS[:3], "CrossEntropyLoss", {
    "weight-smoothing": lambda x, g: {"weight": w_class(x, g), "label_smoothing": 0.2}})

# layouts of the floating tensors: how they lie in memory, not their values
LAYOUTS = {
    "contiguous": lambda v: v,
    "noncontiguous": lambda v: v.permute(*reversed(range(v.ndim))).contiguous().permute(*reversed(range(v.ndim)))
    if v.ndim >= 2 else v.repeat_interleave(2)[::2],
}
DTYPE_LAYOUTS = ((torch.float64, "contiguous"), (torch.float32, "contiguous"), (torch.float32, "noncontiguous"),
                 (torch.bfloat16, "contiguous"))


def _fn_name(case_id):
    return case_id.split("-")[0]


def _matrix():
    out = []
    for cid, case in CASES.items():
        for variant in case.variants:
            for shape in case.shapes:
                for reduction in case.reductions:
                    for dtype, layout in DTYPE_LAYOUTS:
                        out.append(pytest.param(cid, variant, shape, reduction, dtype, layout,
                                                id=f"{cid}-{variant}-{'x'.join(map(str, shape))}-{reduction}-"
                                                   f"{str(dtype)[6:]}-{layout}"))
    return out


def _make(cid, variant, shape, dtype, layout, seed=0):
    case = CASES[cid]
    g = _gen(seed)
    x, t = case.data(shape, g)
    t = case.prep_target.get(variant, lambda x, t: t)(x, t)
    kwargs = case.variants[variant](x, g)
    lay = LAYOUTS[layout]
    cast = lambda v: lay(v.to(dtype)) if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa
    return cast(x), cast(t), {k: cast(v) for k, v in kwargs.items()}


def _run(fn, x, t, kwargs, reduction, target_grad, go_seed=5):
    """(value, d value / d x, d value / d t or None) with a random grad_output for "none"."""
    x = x.detach().requires_grad_(True)
    t = t.detach().requires_grad_(target_grad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warning on kl_div's "mean"
        out = fn(x, t, reduction=reduction, **kwargs)
    go = torch.randn(out.shape, generator=_gen(go_seed), dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad(out, [x, t] if target_grad else [x], go)
    return out, grads[0], (grads[1] if target_grad else None)


# --- what has a twin, and its signature ---------------------------------------------------------------------


def test_every_twin_has_a_case():
    # the losses with a call of their own are checked against torch with their tests (test_ctc, test_pairwise,
    # test_overlap)
    own = [n for n, s in REGISTRY.items() if s.kind in ("sequence", "pairwise", "overlap")]
    missing = sorted(set(FUNCTION_TWINS) - {_fn_name(c) for c in CASES} - {ft.FUNCTIONAL[n].__name__ for n in own})
    assert not missing, f"add CASES entries for {missing}"
    missing = sorted(set(MODULE_TWINS) - {c.module for c in CASES.values()} - {ft.MODULES[n].__name__ for n in own})
    assert not missing, f"add CASES entries naming the modules {missing}"
    # every registry loss with a torch twin reaches one (the functional named after it)
    for name, spec in REGISTRY.items():
        if spec.torch_name:
            assert spec.torch_name in FUNCTION_TWINS


@pytest.mark.parametrize("name", FUNCTION_TWINS + MODULE_TWINS)
def test_signature_is_torchs(name):
    """torch's positional-or-keyword parameters, in torch's order with torch's defaults; ours may only add
    keyword-only ones."""
    ours, theirs = getattr(ft, name), getattr(F, name, None) or getattr(torch.nn, name)
    if isinstance(ours, type):
        ours, theirs = ours.__init__, theirs.__init__
    po = [(p.name, p.default) for p in inspect.signature(ours).parameters.values() if p.kind != p.KEYWORD_ONLY]
    pt = [(p.name, p.default) for p in inspect.signature(theirs).parameters.values() if p.kind != p.KEYWORD_ONLY]
    assert po == pt
    kt = {p.name for p in inspect.signature(theirs).parameters.values() if p.kind == p.KEYWORD_ONLY}
    assert kt <= set(inspect.signature(ours).parameters)


# --- values and gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cid, variant, shape, reduction, dtype, layout", _matrix())
def test_function_matches_torch(cid, variant, shape, reduction, dtype, layout):
    case = CASES[cid]
    name = _fn_name(cid)
    x, t, kwargs = _make(cid, variant, shape, dtype, layout)
    ours, theirs = getattr(ft, name), getattr(F, name)
    got, gx, gt = _run(ours, x, t, kwargs, reduction, case.target_grad)
    if dtype == torch.bfloat16:
        if case.half:  # torch's own bfloat16 call decides the dtype
            want_dtype = _run(theirs, x, t, kwargs, reduction, case.target_grad)[0].dtype
        else:  # torch has no CPU bfloat16 kernel: the input's dtype
            want_dtype = dtype
        # values: against torch in float32 (ours computes in float32 too)
        up = lambda v: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
        want, wx, wt = _run(theirs, up(x), up(t), {k: up(v) for k, v in kwargs.items()}, reduction,
                            case.target_grad)
    else:
        want, wx, wt = _run(theirs, x, t, kwargs, reduction, case.target_grad)
        want_dtype = want.dtype
    assert got.dtype == want_dtype
    assert gx.dtype == x.dtype
    assert_close(got, want, dtype, "value")
    assert_close(gx, wx, dtype, "gradient")
    if case.target_grad:
        assert_close(gt, wt, dtype, "target gradient")


def _module_takes(case, variant):
    """Whether torch's module takes every option of the variant (torch's MSELoss, say, has no weight)."""
    names = inspect.signature(getattr(torch.nn, case.module).__init__).parameters
    x, _ = case.data(case.shapes[0], _gen(0))
    return set(case.variants[variant](x, _gen(0))) <= set(names)


@pytest.mark.parametrize("cid, variant", [(c, v) for c, case in CASES.items() for v in case.variants
                                          if _module_takes(case, v)])
def test_module_matches_torch(cid, variant):
    """The module, built with the same options, against torch's module: value and gradient, every reduction."""
    case = CASES[cid]
    for reduction in case.reductions:
        x, t, kwargs = _make(cid, variant, case.shapes[-1], torch.float64, "contiguous", seed=3)
        mods = [getattr(m, case.module)(reduction=reduction, **kwargs) for m in (ft, torch.nn)]
        (got, gx, _), (want, wx, _) = (_run(lambda x, t, reduction: m(x, t), x, t, {}, reduction, False)
                                       for m in mods)
        assert_close(got, want, torch.float64, f"{case.module}({reduction!r}) value")
        assert_close(gx, wx, torch.float64, f"{case.module}({reduction!r}) gradient")


@pytest.mark.parametrize("cid, variant", [(c, v) for c, case in CASES.items() for v in case.variants
                                          if _module_takes(case, v)])
def test_module_reads_options_set_after_construction(cid, variant):
    """torch's modules read their options at each call (``loss.ignore_index = 3`` after construction takes
    effect); so do fusedloss's: both built with defaults, then given the variant's options as attributes."""
    case = CASES[cid]
    reduction = case.reductions[-1]
    x, t, kwargs = _make(cid, variant, case.shapes[-1], torch.float64, "contiguous", seed=4)
    mods = [getattr(m, case.module)() for m in (ft, torch.nn)]
    for m in mods:
        m.reduction = reduction
        for k, v in kwargs.items():
            setattr(m, k, v)
    (got, gx, _), (want, wx, _) = (_run(lambda x, t, reduction: m(x, t), x, t, {}, reduction, False) for m in mods)
    assert_close(got, want, torch.float64, f"{case.module} value")
    assert_close(gx, wx, torch.float64, f"{case.module} gradient")


@pytest.mark.parametrize("routing", ["fused", "auto"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_weight_of_another_shape_is_refused_as_torch(name, routing):
    """torch's mse/l1/huber take a weight of the input's shape only (one that broadcasts is refused); so do ours,
    and with the full shape they give torch's value."""
    ft.set_cpu_routing(routing)
    g = _gen(7)
    x, t = _f64((4, 5), g), _f64((4, 5), g)
    w = _f64((5,), g, 0.25, 1.25)
    for weight in (w, w[:1], w.expand(1, 4, 5)):
        with pytest.raises(ValueError) as by_torch:
            getattr(F, name)(x, t, weight=weight)
        with pytest.raises(ValueError, match=r"weight must have the size of input \(4, 5\)") as by_fl:
            getattr(ft, name)(x, t, weight=weight)
        assert isinstance(by_fl.value, type(by_torch.value))
    assert_close(getattr(ft, name)(x, t, weight=w.expand(4, 5)), getattr(F, name)(x, t, weight=w.expand(4, 5)),
                 torch.float64, "value")


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_binary_cross_entropy_gradient_where_torch_clamps(backend, reduction):
    """torch clamps p (1 - p) at ATen's EPSILON, 1e-12 as a float32 (9.999999960041972e-13), in float64 too: the
    gradient at p = 0 and 1, and within 1e-12 of them, is torch's (it differed by 4e-9 relative with a float64
    1e-12), and fl.binary_cross_entropy's is the same."""
    p = torch.tensor([0.0, 1.0, 1e-13, 1 - 2**-53, 5e-13, 0.5] * 3, dtype=torch.float64)
    y = torch.tensor([0.0] * 6 + [1.0] * 6 + [0.3] * 6, dtype=torch.float64)
    a, b = p.clone().requires_grad_(), p.clone().requires_grad_()
    F.binary_cross_entropy(a, y, reduction=reduction).sum().backward()
    ft.binary_cross_entropy(b, y, reduction=reduction, backend=backend).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=4.5e-16, atol=0)
    g = fl.binary_cross_entropy.grad(p.numpy(), y.numpy(), reduction=reduction, backend=backend)
    np.testing.assert_allclose(g, a.grad.numpy(), rtol=4.5e-16, atol=0)


def test_mixed_dtypes_promote_like_torch():
    g = _gen(1)
    x, t = _f64((5, 3), g), _f64((5, 3), g)
    for xd, td in ((torch.bfloat16, torch.float32), (torch.float32, torch.float64)):
        got = ft.mse_loss(x.to(xd).requires_grad_(), t.to(td))
        assert got.dtype == F.mse_loss(x.to(xd), t.to(td)).dtype


_MIXED = [(torch.float32, torch.float64), (torch.float64, torch.float32), (torch.bfloat16, torch.float32),
          (torch.float32, torch.float16)]


@pytest.mark.parametrize("routing", ["fused", "auto"])
@pytest.mark.parametrize("dtypes", _MIXED, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("name", sorted(REGISTRY[n].torch_name for n in REGISTRY
                                        if REGISTRY[n].kind == "elementwise" and REGISTRY[n].torch_name))
def test_an_input_and_a_target_of_two_float_dtypes_give_torchs_dtype(name, dtypes, routing):
    """torch's elementwise losses disagree on the loss's dtype when the input and the target differ: the promoted
    one (mse_loss, l1_loss, ...), the input's (huber_loss, hinge_embedding_loss), the target's
    (binary_cross_entropy_with_logits), or a refusal (binary_cross_entropy). Each form gives its torch function's
    dtype and value, and the gradient in the input's dtype (where torch's huber_loss then fails in its backward
    pass, the fused form gives the gradient)."""
    ft.set_cpu_routing(routing)
    xd, td = dtypes
    g = _gen(3)
    x = _f64((40,), g, 0.05, 0.95)
    t = (_f64((40,), g) > 0.5).double() if "cross_entropy" in name else _f64((40,), g, 0.05, 0.95)
    t = 2 * t - 1 if name == "hinge_embedding_loss" else t
    x, t = x.to(xd), t.to(td)
    try:
        want = getattr(F, name)(x, t)
    except RuntimeError as exc:
        with pytest.raises(ft.ArgumentError, match=r"target must have the input's dtype") as ours:
            getattr(ft, name)(x.requires_grad_(), t)
        assert isinstance(ours.value, type(exc))
        return
    xg = x.clone().requires_grad_()
    got = getattr(ft, name)(xg, t)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    tol = dict(rtol=1e-2, atol=1e-2) if torch.bfloat16 in dtypes or torch.float16 in dtypes else \
        dict(rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got.detach(), want, **tol)
    got.backward()
    assert xg.grad.dtype == xd


@pytest.mark.parametrize("routing", ["fused", "auto"])
@pytest.mark.parametrize("form", ["function", "module"])
@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_binary_cross_entropy_refuses_a_target_of_another_size_as_torch(name, form, routing):
    """torch's binary cross-entropies raise ValueError for a target that only broadcasts to the input (its
    regression losses warn): so do ours, without a warning."""
    ft.set_cpu_routing(routing)
    g = _gen(8)
    p, y = _f64((4, 3), g, 0.05, 0.95), _f64((3,), g, 0.0, 1.0)
    module = CASES[name].module
    with pytest.raises(ValueError) as by_torch:
        (getattr(F, name) if form == "function" else getattr(torch.nn, module)())(p, y)
    refused = r"target must have the size of input \(4, 3\).*got size \(3,\)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a warning would be raised as an error, not as the ValueError)
        with pytest.raises(ValueError, match=refused) as by_fl:
            (getattr(ft, name) if form == "function" else getattr(ft, module)())(p.requires_grad_(), y)
    assert isinstance(by_fl.value, type(by_torch.value))
    # torchvision's sigmoid_focal_loss starts with torch's binary_cross_entropy_with_logits
    with pytest.raises(ValueError, match=r"targets must have the size of inputs \(4, 3\)"):
        ft.sigmoid_focal_loss(p, y)


@pytest.mark.parametrize("shape", [(5, 0, 4), (0, 2, 4), (5, 2, 0), (0, 4)], ids=["N=0", "T=0", "C=0", "unbatched"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ctc_refuses_empty_log_probs_as_torch(shape, reduction):
    N = shape[1] if len(shape) == 3 else 1
    lp = torch.zeros(shape, dtype=torch.float64)
    targets = torch.zeros((N, 2) if len(shape) == 3 else (2,), dtype=torch.int64)
    il, tl = torch.full((N,), shape[0]), torch.zeros(N, dtype=torch.int64)
    if len(shape) == 2:
        il, tl = il[0], tl[0]
    with pytest.raises(RuntimeError) as by_torch:
        F.ctc_loss(lp, targets, il, tl, reduction=reduction)
    for ours in (ft.ctc_loss, ft.CTCLoss(reduction=reduction)):
        kw = {"reduction": reduction} if ours is ft.ctc_loss else {}
        with pytest.raises(ValueError, match="ctc_loss: log_probs must not be empty") as by_fl:
            ours(lp.clone().requires_grad_(), targets, il, tl, **kw)
        assert isinstance(by_fl.value, type(by_torch.value))


@pytest.mark.parametrize("where", ["input", "target"])
@pytest.mark.parametrize("form", ["function", "module"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_refuses_nan_as_torch(where, form, reduction):
    p = torch.tensor([[0.25, 0.5], [0.75, 0.125]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    (p if where == "input" else y)[1, 0] = float("nan")
    with pytest.raises(RuntimeError):
        F.binary_cross_entropy(p, y, reduction=reduction)
    call = ft.binary_cross_entropy if form == "function" else ft.BCELoss(reduction=reduction)
    kwargs = {"reduction": reduction} if form == "function" else {}
    with pytest.raises(ValueError, match=rf"binary_cross_entropy: {where} must lie in \[0, 1\].*nan at index \(1, 0\)"):
        call(p.clone().requires_grad_(), y, **kwargs)
    ft.set_cpu_routing("auto")  # torch's own function first (small input), then the fused form's error
    with pytest.raises(ValueError, match=f"{where} must lie in"):
        call(p.clone().requires_grad_(), y, **kwargs)


# --- non-finite data: torch's value and gradient ----------------------------------------------------------------
# Where the library's rules for NaN and inf (and the finite inputs where torch's formula rounds) differ from torch's,
# the forms named after torch's give torch's results: each poison is written into clean data of a small shape
# (torch's own function: routing) and of a size the fused kernels take (forced, and chosen by routing).
nan, inf = float("nan"), float("inf")
POISONS = {  # function -> (data, large shape, {poison: (input entries, target entries)} at the first positions)
    "l1_loss": (d_regression, (1 << 20,), {
        "nan_input": ([nan], []), "nan_target": ([], [nan]), "inf_minus_inf": ([inf], [inf])}),
    "hinge_embedding_loss": (d_pm1, (1 << 20,), {
        "nan_input": ([nan, nan], [1.0, -1.0]), "nan_target": ([0.5], [nan]), "neg_inf_other": ([-inf], [0.0]),
        "rounded_sum": ([-1e30], [0.5])}),
    "multi_margin_loss": (d_labels, (1 << 14, 32), {
        "nan_logit": ([0.3, nan], [0]), "nan_at_label": ([nan], [0]), "inf_minus_inf": ([inf, inf], [0])}),
    "multilabel_soft_margin_loss": (d_multilabel, (1 << 15, 32), {
        "nan_logit": ([nan], []), "nan_target": ([], [nan]), "pos_inf_label_1": ([inf], [1.0]),
        "neg_inf_label_0": ([-inf], [0.0])}),
    "binary_cross_entropy_with_logits": (d_logit, (1 << 20,), {
        "nan_logit": ([nan], []), "nan_target": ([], [nan]), "neg_inf_soft": ([-inf], [0.5]),
        "neg_inf_label_0": ([-inf], [0.0]), "pos_inf_label_1": ([inf], [1.0])}),
}
SIZES = {"routed": ("auto", False), "fused": ("fused", False), "large": ("auto", True)}


def _poisoned(name, poison, large):
    data, big, poisons = POISONS[name]
    x, t = data(big if large else CASES[name].shapes[0], _gen(11))
    xs, ts = poisons[poison]
    x.view(-1)[:len(xs)] = torch.tensor(xs, dtype=x.dtype)
    t.view(-1)[:len(ts)] = torch.tensor(ts, dtype=t.dtype)
    return x, t


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("form", ["function", "module"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, poison", [(n, p) for n, (_, _, ps) in POISONS.items() for p in ps])
def test_non_finite_data_give_torchs_results(name, poison, reduction, form, size):
    routing, large = SIZES[size]
    ft.set_cpu_routing(routing)
    x, t = _poisoned(name, poison, large)
    target_grad = CASES[name].target_grad
    if form == "function":
        ours, theirs = (lambda x, t, reduction, f=getattr(m, name): f(x, t, reduction=reduction) for m in (ft, F))
    else:
        mods = [getattr(m, CASES[name].module)(reduction=reduction) for m in (ft, torch.nn)]
        ours, theirs = (lambda x, t, reduction, m=m: m(x, t) for m in mods)
    got, gx, gt = _run(ours, x, t, {}, reduction, target_grad)
    want, wx, wt = _run(theirs, x, t, {}, reduction, target_grad)
    assert_close(got, want, torch.float64, "value")
    assert_close(gx, wx, torch.float64, "gradient")
    if target_grad:
        assert_close(gt, wt, torch.float64, "target gradient")


@pytest.mark.parametrize("name", list(POISONS))
def test_the_poison_sizes_take_the_routes_they_name(name):
    """Under routing, the small data of test_non_finite_data_give_torchs_results run on torch's function and the
    large on the fused kernels."""
    ft.set_cpu_routing("auto")
    poison = next(iter(POISONS[name][2]))
    routed = getattr(getattr(ft, name), "_torch_twin", None) is not None  # (bce with logits: always fused)
    for large in (False, True):
        x, t = _poisoned(name, poison, large)
        for form in (getattr(ft, name), getattr(ft, CASES[name].module)()):
            assert ft._routing.routes_to_torch(form, x, t) == (routed and not large)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("form", ["function", "module"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smooth_l1_with_beta_0_is_torchs_l1_loss(reduction, form, size):
    """torch's smooth_l1_loss with beta=0 is its l1_loss: a gradient of 0 at a NaN residual (the kernel's NaN)."""
    routing, large = SIZES[size]
    ft.set_cpu_routing(routing)
    x, t = d_regression((1 << 20,) if large else (7,), _gen(12))
    x[0], x[1], t[1] = nan, inf, inf
    if form == "function":
        ours, theirs = (lambda x, t, reduction, f=m.smooth_l1_loss: f(x, t, reduction=reduction, beta=0.0)
                        for m in (ft, F))
    else:
        mods = [m.SmoothL1Loss(reduction=reduction, beta=0.0) for m in (ft, torch.nn)]
        ours, theirs = (lambda x, t, reduction, m=m: m(x, t) for m in mods)
    got, gx, gt = _run(ours, x, t, {}, reduction, True)
    want, wx, wt = _run(theirs, x, t, {}, reduction, True)
    assert_close(got, want, torch.float64, "value")
    assert_close(gx, wx, torch.float64, "gradient")
    assert_close(gt, wt, torch.float64, "target gradient")


def test_ctc_matches_torch():
    g = _gen(2)
    T, N, C, S = 9, 3, 5, 3
    lp = torch.log_softmax(_f64((T, N, C), g), -1)
    targets = torch.randint(1, C, (N, S), generator=g)
    il, tl = torch.full((N,), T), torch.tensor([3, 2, 1])
    for reduction in ("mean", "sum", "none"):
        got, gx, _ = _run(lambda x, t, reduction: ft.ctc_loss(x, t, il, tl, reduction=reduction), lp, targets,
                          {}, reduction, False)
        want, wx, _ = _run(lambda x, t, reduction: F.ctc_loss(x, t, il, tl, reduction=reduction), lp, targets,
                           {}, reduction, False)
        assert_close(got, want, torch.float64, "value")
        assert_close(gx, wx, torch.float64, "gradient")
    ours, theirs = (lambda x, f=f: f(x, targets, il, tl) for f in (ft.ctc_loss, F.ctc_loss))
    assert_close(torch.func.grad(ours)(lp), torch.func.grad(theirs)(lp), torch.float64, "torch.func.grad")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = lp.to(torch.bfloat16).requires_grad_()
        out = ours(x)
        out.backward()
        assert (out.dtype, x.grad.dtype) == (theirs(x).dtype, torch.bfloat16)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.autograd.grad(ours(lp.requires_grad_()), lp, create_graph=True)


def test_kl_div_with_logits_equals_torch_after_log_softmax():
    """The fused form takes logits along ``dim``: equal to torch's kl_div of their log_softmax for every
    reduction torch shares with it ("none" gives the per-row sums)."""
    g = _gen(4)
    z, q = _f64((3, 4, 5), g), torch.softmax(_f64((3, 4, 5), g), 1)
    for reduction in ("batchmean", "mean", "sum", "none"):
        got, gz, _ = _run(lambda x, t, reduction: ft.kl_div_with_logits(x, t, reduction=reduction, dim=1), z, q,
                          {}, reduction, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zz = z.detach().requires_grad_()
            want = F.kl_div(F.log_softmax(zz, 1), q, reduction=reduction)
            if reduction == "none":
                want = want.sum(1)
            (wz,) = torch.autograd.grad(want, zz, torch.randn(want.shape, generator=_gen(5), dtype=torch.float64))
        assert_close(got, want, torch.float64, "value")
        assert_close(gz, wz, torch.float64, "gradient")


def test_kl_div_is_torchs_on_log_probabilities():
    """The case a user hits first: log-probabilities along dim 1 of a 3-d input."""
    g = _gen(6)
    lp, q = torch.log_softmax(_f64((2, 4, 5), g), 1), torch.softmax(_f64((2, 4, 5), g), 1)
    assert float(ft.kl_div(lp, q, reduction="batchmean")) == float(F.kl_div(lp, q, reduction="batchmean"))
    assert ft.kl_div(lp, q, reduction="none").shape == (2, 4, 5)
    assert ft.KLDivLoss(reduction="batchmean")(lp, q) == torch.nn.KLDivLoss(reduction="batchmean")(lp, q)


# --- autocast ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_autocast_dtypes_are_torchs(cid, dtype):
    """Under torch.autocast("cpu", bfloat16) torch computes its losses in float32; so do we (value dtype,
    gradient dtype, value)."""
    case = CASES[cid]
    name = _fn_name(cid)
    variant = next(iter(case.variants))
    x, t, kwargs = _make(cid, variant, case.shapes[1], dtype, "contiguous")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, gx, _ = _run(getattr(ft, name), x, t, kwargs, case.reductions[0], False)
        want, wx, _ = _run(getattr(F, name), x, t, kwargs, case.reductions[0], False)
    assert (got.dtype, gx.dtype) == (want.dtype, wx.dtype)
    assert_close(got, want, torch.float32, "value")


# --- torch.func, double backward ---------------------------------------------------------------------------------

FUNC_CASES = [("cross_entropy", "default", (3, 4, 5)), ("cross_entropy", "weight-ignore-smoothing", (6, 4)),
              ("mse_loss", "weight", (4, 5)), ("binary_cross_entropy_with_logits", "weight-pos_weight", (4, 5)),
              ("huber_loss", "delta-weight", (7,)), ("multi_margin_loss", "default", (6, 4))]


def _fns(cid, variant, shape, reduction="mean"):
    x, t, kwargs = _make(cid, variant, shape, torch.float64, "contiguous")
    name = _fn_name(cid)
    return x, t, [lambda x, f=f: f(x, t, reduction=reduction, **kwargs) for f in (getattr(ft, name),
                                                                                  getattr(F, name))]


@pytest.mark.parametrize("cid, variant, shape", FUNC_CASES)
def test_torch_func_grad_vmap_jacrev(cid, variant, shape):
    x, _, (ours, theirs) = _fns(cid, variant, shape)
    assert_close(torch.func.grad(ours)(x), torch.func.grad(theirs)(x), torch.float64, "grad")
    xs = torch.stack([x, 2 * x, -x])
    assert_close(torch.func.vmap(ours)(xs), torch.func.vmap(theirs)(xs), torch.float64, "vmap")
    assert_close(torch.func.vmap(torch.func.grad(ours))(xs), torch.func.vmap(torch.func.grad(theirs))(xs),
                 torch.float64, "vmap(grad)")
    x, _, (ours, theirs) = _fns(cid, variant, shape, "none")
    assert_close(torch.func.jacrev(ours)(x), torch.func.jacrev(theirs)(x), torch.float64, "jacrev")


def test_double_backward_names_the_fix():
    """Under torch.func the fused rules hold (eager create_graph=True: test_torch_twin.py)."""
    x, t, (ours, _) = _fns("cross_entropy", "default", (6, 4))
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.func.grad(lambda x: torch.func.grad(ours)(x).sum())(x.detach())
    with pytest.raises(RuntimeError, match="forward-mode differentiation .* not supported"):
        torch.func.hessian(ours)(x.detach())


# --- torch.jit.script ---------------------------------------------------------------------------------------------


def _scripted(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


@pytest.mark.parametrize("cid", list(CASES))
def test_jit_script_runs_the_torch_twin(cid):
    """A module with torch's options only is scripted as its torch.nn twin: same values, saveable."""
    case = CASES[cid]
    variant = [v for v in case.variants if _module_takes(case, v)][-1]
    x, t, kwargs = _make(cid, variant, case.shapes[0], torch.float64, "contiguous")
    scripted = _scripted(getattr(ft, case.module)(reduction=case.reductions[0], **kwargs))
    assert isinstance(scripted, torch.jit.ScriptModule)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_close(scripted(x, t), getattr(torch.nn, case.module)(reduction=case.reductions[0], **kwargs)(x, t),
                     torch.float64, "scripted")


def test_jit_script_of_a_model_holding_the_loss():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 4)
            self.loss = ft.CrossEntropyLoss(label_smoothing=0.1)

        def forward(self, x, y):
            return self.loss(self.lin(x), y)

    m = Model()
    x, y = torch.randn(5, 3), torch.randint(0, 4, (5,))
    torch.testing.assert_close(_scripted(m)(x, y), m(x, y))


@pytest.mark.parametrize("module, match", [
    (lambda: ft.CrossEntropyLoss(z_loss=1e-4), "with z_loss cannot be scripted"),
    (lambda: ft.MSELoss(backend="numpy"), "with backend cannot be scripted"),
    (lambda: ft.LogCoshLoss(), "LogCoshLoss has no torch.nn twin"),
    (lambda: ft.FusedLoss("mse"), "FusedLoss has no torch.nn twin"),
])
def test_jit_script_refuses_what_torch_lacks(module, match):
    with pytest.raises(RuntimeError, match=match):
        _scripted(module())


# Bad arguments that torch and fusedloss both refuse: fusedloss's error must be caught by an ``except`` written for
# torch's (its type is torch's as well as ValueError), in the functional and the module form.
_X = torch.randn(4, 3)
_P = torch.rand(4)
_ERROR_CASES = {
    "label above C": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, 5])),
    "negative label": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, -5])),
    "labels of another length": lambda m: m.cross_entropy(_X, torch.tensor([0, 1])),
    "float labels": lambda m: m.cross_entropy(_X, torch.tensor([0.0, 1, 2, 1])),
    "bad reduction": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, 1]), reduction="avg"),
    "label_smoothing above 1": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, 1]), label_smoothing=1.5),
    "mse shapes": lambda m: m.mse_loss(_P, torch.rand(3)),
    "bce probability above 1": lambda m: m.binary_cross_entropy(_P + 2, _P),
    "bce shapes": lambda m: m.binary_cross_entropy(_P, torch.rand(3)),
    "bce target that broadcasts": lambda m: m.binary_cross_entropy(_X.sigmoid(), torch.rand(3)),
    "bce with logits target that broadcasts": lambda m: m.binary_cross_entropy_with_logits(_X, torch.rand(3)),
    "int32 labels": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, 1], dtype=torch.int32)),
    "int8 labels": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 2, 1], dtype=torch.int8)),
    "bool labels": lambda m: m.cross_entropy(_X, torch.tensor([0, 1, 1, 0], dtype=torch.bool)),
    "probabilities with ignore_index": lambda m: m.cross_entropy(_X, torch.softmax(_X, 1), ignore_index=0),
    "multi_margin int32 labels": lambda m: m.multi_margin_loss(_X, torch.tensor([0, 1, 2, 1], dtype=torch.int32)),
    "multi_margin uint8 labels": lambda m: m.multi_margin_loss(_X, torch.tensor([0, 1, 2, 1], dtype=torch.uint8)),
    "mse weight that broadcasts": lambda m: m.mse_loss(_X, _X, weight=torch.ones(3)),
    "l1 weight that broadcasts": lambda m: m.l1_loss(_X, _X, weight=torch.ones(1, 3)),
    "huber weight that broadcasts": lambda m: m.huber_loss(_X, _X, weight=torch.ones(())),
    "ctc empty batch": lambda m: m.ctc_loss(torch.zeros(5, 0, 4), torch.zeros(0, 2, dtype=torch.int64),
                                            torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)),
    "negative huber delta": lambda m: m.huber_loss(_P, _P, delta=-1.0),
    "negative smooth_l1 beta": lambda m: m.smooth_l1_loss(_P, _P, beta=-1.0),
    "multi_margin label above C": lambda m: m.multi_margin_loss(_X, torch.tensor([0, 1, 2, 5])),
    "poisson shapes": lambda m: m.poisson_nll_loss(_P, torch.rand(3)),
    "negative gaussian variance": lambda m: m.gaussian_nll_loss(_P, _P, -_P),
    "cosine_embedding target length": lambda m: m.cosine_embedding_loss(_X, _X, torch.ones(3)),
    "module: label above C": lambda m: m.CrossEntropyLoss()(_X, torch.tensor([0, 1, 2, 5])),
    "module: bce probability above 1": lambda m: m.BCELoss()(_P + 2, _P),
    "module: negative huber delta": lambda m: m.HuberLoss(delta=-1.0)(_P, _P),
    "module: int32 labels": lambda m: m.CrossEntropyLoss()(_X, torch.tensor([0, 1, 2, 1], dtype=torch.int32)),
    "module: probabilities with ignore_index": lambda m: m.CrossEntropyLoss(ignore_index=1)(_X, torch.softmax(_X, 1)),
    "module: bce with logits target that broadcasts": lambda m: m.BCEWithLogitsLoss()(_X, torch.rand(3)),
    "module: ctc empty batch": lambda m: m.CTCLoss()(torch.zeros(5, 0, 4), torch.zeros(0, 2, dtype=torch.int64),
                                                     torch.zeros(0, dtype=torch.int64),
                                                     torch.zeros(0, dtype=torch.int64)),
}


@pytest.mark.parametrize("routing", ["fused", "auto"])
@pytest.mark.parametrize("case", list(_ERROR_CASES))
def test_an_except_written_for_torch_catches_fusedloss(case, routing):
    ft.set_cpu_routing(routing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcasting warning
        with pytest.raises(Exception) as by_torch:
            _ERROR_CASES[case](torch.nn if case.startswith("module") else torch.nn.functional)
        with pytest.raises(ValueError) as by_fl:
            _ERROR_CASES[case](ft)
    assert isinstance(by_fl.value, type(by_torch.value)), (type(by_torch.value), type(by_fl.value))
    assert isinstance(by_fl.value, ft.ArgumentError)
    assert str(by_fl.value).split(":")[0] in ("cross_entropy", "mse_loss", "binary_cross_entropy", "huber",
                                              "huber_loss", "smooth_l1", "smooth_l1_loss", "multi_margin",
                                              "poisson_nll_loss", "gaussian_nll", "gaussian_nll_loss",
                                              "cosine_embedding", "cosine_embedding_loss", "mse",
                                              "binary_cross_entropy_with_logits", "multi_margin_loss", "l1_loss",
                                              "ctc_loss")


def test_the_generic_form_keeps_fusedloss_s_value_error():
    """``fusedloss.torch.loss`` and the forms without a torch twin are fusedloss's own: a plain ValueError."""
    with pytest.raises(ValueError) as exc:
        ft.loss("cross_entropy", _X, torch.tensor([0, 1, 2, 5]))
    assert type(exc.value) is not ft.ArgumentError and not isinstance(exc.value, RuntimeError)
    with pytest.raises(ValueError) as exc:
        ft.focal_loss(_X, torch.tensor([0, 1, 2, 5]))
    assert not isinstance(exc.value, RuntimeError)
