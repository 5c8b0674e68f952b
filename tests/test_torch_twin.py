"""The derivatives fusedloss's kernels do not compute, through the forms named after torch's: second derivatives
(``backward(create_graph=True)``) and gradients with respect to targets and weights are torch's own
(``fusedloss.torch._twin``), on the fused kernels' path (routing off) as on torch's."""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fusedloss.torch as ft  # noqa: E402

D = torch.float64


@pytest.fixture(autouse=True)
def _fused_kernels_at_every_size():
    ft.set_cpu_routing("fused")
    yield
    ft.set_cpu_routing("auto")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(shape, seed, lo=None, hi=None, grad=True):
    g = _g(seed)
    t = torch.randn(shape, generator=g, dtype=D) if lo is None else lo + (hi - lo) * torch.rand(shape, generator=g,
                                                                                                  dtype=D)
    return t.requires_grad_(grad)


def _signs(n, seed):
    return torch.randint(0, 2, (n,), generator=_g(seed)).to(D) * 2 - 1


N, C = 12, 5

# form name -> (arguments: tensors whose requires_grad says which are differentiated, keyword options); the
# smooth losses only: a second derivative of a piecewise-linear loss has no graph, in torch as here
CASES = {
    "cross_entropy": lambda: ((_x((N, C), 1), torch.randint(0, C, (N,), generator=_g(2))),
                              {"label_smoothing": 0.1, "weight": _x((C,), 3, 0.5, 2, grad=False)}),
    "mse_loss": lambda: ((_x((N, 3), 1), _x((N, 3), 2)), {}),
    "l1_loss": None,
    "huber_loss": lambda: ((_x((N, 3), 1), _x((N, 3), 2)), {"delta": 0.7}),
    "smooth_l1_loss": lambda: ((_x((N, 3), 1), _x((N, 3), 2)), {"beta": 0.7}),
    "hinge_embedding_loss": None,
    "binary_cross_entropy": lambda: ((_x((N, 3), 1, 0.05, 0.95), _x((N, 3), 2, 0, 1, grad=False)), {}),
    "binary_cross_entropy_with_logits": lambda: ((_x((N, 3), 1), _x((N, 3), 2, 0, 1, grad=False)),
                                                 {"pos_weight": _x((3,), 4, 0.5, 2, grad=False)}),
    "poisson_nll_loss": lambda: ((_x((N, 3), 1), _x((N, 3), 2, 0, 4, grad=False)), {"full": True}),
    "multi_margin_loss": None,
    "multilabel_soft_margin_loss": lambda: ((_x((N, C), 1), _x((N, C), 2, 0, 1, grad=False).round()), {}),
    "margin_ranking_loss": None,
    "cosine_embedding_loss": lambda: ((_x((N, 4), 1), _x((N, 4), 2), _signs(N, 3)), {"margin": 0.2}),
    "triplet_margin_loss": lambda: ((_x((N, 4), 1), _x((N, 4), 2), _x((N, 4), 3)), {"swap": True}),
    "gaussian_nll_loss": lambda: ((_x((N, 3), 1), _x((N, 3), 2), _x((N, 3), 3, 0.5, 2)), {"full": True}),
}


def _defers_to_torch(fn) -> bool:
    while fn is not None:
        if hasattr(fn, "_twin"):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def _twinned():
    return sorted(n for n in ft.__all__ if _defers_to_torch(getattr(ft, n)))


def test_every_form_that_defers_to_torch_has_a_case():
    assert sorted(CASES) == _twinned()


def _both(name):
    args, kw = CASES[name]()
    theirs = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
    return (getattr(ft, name), args), (getattr(F, name), theirs), kw


def _hvp(fn, args, kw):
    """The gradient with create_graph, then the gradient of its squared norm: a Hessian-vector product."""
    wrt = [a for a in args if a.requires_grad]
    value = fn(*args, **kw)
    grads = torch.autograd.grad(value, wrt, create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in grads), wrt)
    return value, grads, second


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n] is not None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_second_derivatives_are_torchs(name, reduction):
    (ours, a), (theirs, b), kw = _both(name)
    kw["reduction"] = reduction
    if reduction == "none":  # a weighted sum of the values: a grad_output other than 1
        w = torch.linspace(0.5, 2, theirs(*b, **kw).numel(), dtype=D).reshape(theirs(*b, **kw).shape)
        ours_fn, theirs_fn = (lambda *x, f=f, **k: (f(*x, **k) * w).sum() for f in (ours, theirs))
    else:
        ours_fn, theirs_fn = ours, theirs
    got, want = _hvp(ours_fn, a, kw), _hvp(theirs_fn, b, kw)
    for g, t, what in zip(got, want, ("value", "gradient", "second derivative")):
        for x, y in zip(g if isinstance(g, tuple) else (g,), t if isinstance(t, tuple) else (t,)):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name} {what}: {m}")
    assert _runs_fused(ours(*a, **kw)), "the call did not run on the fused kernels"


def _runs_fused(out) -> bool:
    """Whether a fused kernel's autograd Function is in the graph of ``out`` (a few steps back at most)."""
    todo = [out.grad_fn]
    for _ in range(4):
        nodes, todo = todo, []
        for node in nodes:
            if node is not None:
                if "Function" in node.name():
                    return True
                todo += [n for n, _ in node.next_functions]
    return False


def test_piecewise_linear_losses_give_torchs_first_derivative_with_create_graph():
    for name, args in (("l1_loss", (_x((N, 3), 1), _x((N, 3), 2))),
                       ("hinge_embedding_loss", (_x((N, 3), 1), _signs(N * 3, 2).reshape(N, 3))),
                       ("margin_ranking_loss", (_x((N,), 1), _x((N,), 2), _signs(N, 3))),
                       ("multi_margin_loss", (_x((N, C), 1), torch.randint(0, C, (N,), generator=_g(2))))):
        wrt = [a for a in args if a.requires_grad]
        got = torch.autograd.grad(getattr(ft, name)(*args), wrt, create_graph=True)
        want = torch.autograd.grad(getattr(F, name)(*args), wrt, create_graph=True)
        for x, y in zip(got, want):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14, msg=lambda m: f"{name}: {m}")


def test_a_module_gives_torchs_second_derivative():
    a = _x((N, C), 1)
    t = torch.randint(0, C, (N,), generator=_g(2))
    got = _hvp(ft.CrossEntropyLoss(label_smoothing=0.2), (a, t), {})
    want = _hvp(torch.nn.CrossEntropyLoss(label_smoothing=0.2), (a.detach().clone().requires_grad_(), t), {})
    for x, y in zip(got[2], want[2]):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, args, kw", [
    ("cross_entropy", lambda: (_x((N, C), 1), torch.softmax(_x((N, C), 2, grad=False), 1).requires_grad_()), {}),
    ("binary_cross_entropy", lambda: (_x((N,), 1, 0.05, 0.95), _x((N,), 2, 0, 1)), {}),
    ("binary_cross_entropy_with_logits", lambda: (_x((N,), 1), _x((N,), 2, 0, 1)), {}),
    ("poisson_nll_loss", lambda: (_x((N,), 1), _x((N,), 2, 0, 3)), {}),
    ("multilabel_soft_margin_loss", lambda: (_x((N, C), 1), _x((N, C), 2, 0, 1)), {}),
    ("margin_ranking_loss", lambda: (_x((N,), 1), _x((N,), 2), _signs(N, 3).requires_grad_()), {}),
    ("mse_loss", lambda: (_x((N,), 1), _x((N,), 2)), {"weight": _x((N,), 3, 0.5, 2)}),
    ("huber_loss", lambda: (_x((N,), 1), _x((N,), 2)), {"weight": _x((N,), 3, 0.5, 2)}),
])
def test_gradients_of_targets_and_weights_are_torchs(name, args, kw):
    a = args()
    kw = dict(kw)
    b = tuple(x.detach().clone().requires_grad_(x.requires_grad) for x in a)
    kb = {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in kw.items()}
    wrt_a = [x for x in (*a, *kw.values()) if x.requires_grad]
    wrt_b = [x for x in (*b, *kb.values()) if x.requires_grad]
    got = torch.autograd.grad(getattr(ft, name)(*a, **kw), wrt_a)
    want = torch.autograd.grad(getattr(F, name)(*b, **kb), wrt_b)
    assert len(got) >= 2
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14, msg=lambda m: f"{name}: {m}")


def test_parameters_are_tensors_that_require_grad_too():
    """nn.Parameter (a Tensor subclass) as a learnable weight, and as the input of a second derivative."""
    x, t = _x((N, 3), 1), _x((N, 3), 2, grad=False)
    w = torch.nn.Parameter(_x((N, 3), 3, 0.5, 2, grad=False))
    got = torch.autograd.grad(ft.mse_loss(x, t, weight=w), (x, w))
    want = torch.autograd.grad(F.mse_loss(x, t, weight=w), (x, w))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    p = torch.nn.Parameter(_x((N, 3), 4, grad=False))
    q = p.detach().clone().requires_grad_()
    y = _x((N, 3), 5, 0, 1, grad=False)
    ours = _hvp(ft.binary_cross_entropy_with_logits, (p, y), {})
    theirs = _hvp(F.binary_cross_entropy_with_logits, (q, y), {})
    torch.testing.assert_close(ours[2][0], theirs[2][0], rtol=1e-10, atol=1e-12)


def test_second_derivatives_outside_torchs_options_name_the_fix():
    x = _x((6, 4), 1)
    t = torch.randint(0, 4, (6,), generator=_g(2))
    with pytest.raises(RuntimeError, match="second derivatives are not supported.*torch's own loss"):
        torch.autograd.grad(ft.cross_entropy(x, t, z_loss=1e-3), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.autograd.grad(ft.loss("log_cosh", x, torch.zeros_like(x)), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):  # torch.func: the fused rules
        torch.func.grad(lambda x: torch.func.grad(lambda x: ft.cross_entropy(x, t))(x).sum())(x.detach())
    with pytest.raises(RuntimeError, match="second derivatives are not supported"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on backward(create_graph=True) and reference cycles
        ft.cross_entropy(x, t, backend="numpy").backward(create_graph=True)


def test_the_inputs_are_let_go_after_a_first_order_backward():
    """A fused call keeps its input for a second derivative only until its first backward pass."""
    leaf = _x((N, C), 1)
    t = torch.randint(0, C, (N,), generator=_g(2))
    logits = leaf * 2  # a non-leaf that only the loss refers to once the name is gone
    ref = weakref.ref(logits)
    loss = ft.cross_entropy(logits, t)
    del logits
    gc.collect()
    assert ref() is not None  # kept for a possible create_graph=True
    loss.backward(retain_graph=True)
    gc.collect()
    assert ref() is None
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.autograd.grad(loss, leaf, create_graph=True)


def test_an_input_changed_in_place_before_the_second_derivative_is_refused():
    leaf = _x((N, C), 1)
    logits = leaf * 1
    loss = ft.cross_entropy(logits, torch.randint(0, C, (N,), generator=_g(2)))
    with torch.no_grad():
        logits.mul_(2)
    with pytest.raises(RuntimeError, match="input was modified by an in-place operation"):
        torch.autograd.grad(loss, leaf, create_graph=True)
    # a first-order backward does not read the input: it still runs, as torch's cross_entropy does
    logits = leaf * 1
    loss = ft.cross_entropy(logits, torch.randint(0, C, (N,), generator=_g(2)))
    want = torch.autograd.grad(F.cross_entropy(leaf * 1, torch.randint(0, C, (N,), generator=_g(2))), leaf)
    with torch.no_grad():
        logits.mul_(2)
    torch.testing.assert_close(torch.autograd.grad(loss, leaf)[0], want[0])


# Inputs the fused forms refuse and torch's functions take (they check more strictly): torch's result
_T = _x((N, 3), 7, grad=False)
_SIGNS = (torch.randint(0, 2, (N, 3), generator=_g(8)) * 2 - 1).to(D)
REFUSED_BY_US_TAKEN_BY_TORCH = [
    ("binary_cross_entropy_with_logits", lambda x: (x, _T.abs() + 1), {}),  # targets above 1
    ("poisson_nll_loss", lambda x: (x, -_T.abs()), {}),  # negative counts
    ("cross_entropy", lambda x: (x, torch.arange(N) % 3), {"weight": torch.tensor([1.0, -1.0, 2.0], dtype=D)}),
    ("mse_loss", lambda x: (x[:, :1], _T), {}),  # an input smaller than its target: torch broadcasts it
    ("multilabel_soft_margin_loss", lambda x: (x, _SIGNS), {}),  # {-1, 1} targets
    ("binary_cross_entropy_with_logits", lambda x: (x, _T.abs().clamp(max=1)), {"pos_weight": -torch.ones(3, dtype=D)}),
]


@pytest.mark.parametrize("name, make, kw", REFUSED_BY_US_TAKEN_BY_TORCH,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED_BY_US_TAKEN_BY_TORCH)])
def test_inputs_torch_takes_get_torchs_result(name, make, kw):
    a, b = _x((N, 3), 1), _x((N, 3), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcast warning
        got, want = getattr(ft, name)(*make(a), **kw), getattr(F, name)(*make(b), **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0], rtol=0, atol=0)
    with pytest.raises(ValueError):  # with an option torch lacks, the fused form's refusal stands
        getattr(ft, name)(*make(a.detach()), **kw, backend="numpy")


def test_inputs_torch_refuses_too_get_the_fused_forms_error():
    x = _x((N, C), 1)
    bad = torch.arange(N) % C
    bad[5] = C + 2
    with pytest.raises(ft.LabelIndexError, match=f"cross_entropy: label {C + 2} at index \\(5,\\) is out of range"):
        ft.cross_entropy(x, bad)
    with pytest.raises(ValueError, match="reduction"):
        ft.mse_loss(x, x.detach(), reduction="avg")
