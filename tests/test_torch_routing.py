"""fusedloss.torch's CPU routing: small calls of the losses torch has, with torch's options only, run on
torch's own kernels; everything else on the fused kernels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fusedloss as fl  # noqa: E402
import fusedloss.torch as ft  # noqa: E402


def _ran_on_torch(out) -> bool:
    return "FusedLoss" not in type(out.grad_fn).__name__


@pytest.fixture
def ce_small():
    x = torch.randn(64, 10, dtype=torch.float64, requires_grad=True)
    return x, torch.randint(0, 10, (64,))


def test_small_calls_run_on_torch_with_torch_results(ce_small):
    x, t = ce_small
    for fn, mod in ((ft.cross_entropy, ft.CrossEntropyLoss()), ):
        for out in (fn(x, t), mod(x, t), fn(x, t, label_smoothing=0.1, ignore_index=3, reduction="sum")):
            assert _ran_on_torch(out)
    want = torch.nn.functional.cross_entropy(x, t, label_smoothing=0.1)
    assert torch.equal(ft.cross_entropy(x, t, label_smoothing=0.1), want)
    p = torch.randn(100, dtype=torch.float64, requires_grad=True)
    y = torch.randn(100, dtype=torch.float64)
    for name in ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"):
        out = getattr(ft, name)(p, y)
        assert _ran_on_torch(out) and torch.equal(out, getattr(torch.nn.functional, name)(p, y)), name


@pytest.mark.parametrize("kwargs", [dict(z_loss=1e-4), dict(softcap=5.0), dict(confidence_penalty=0.1),
                                    dict(sample_weight=torch.ones(64)),
                                    dict(backend="cpp"), dict(backend="numpy"), dict(weight=np.ones(10))])
def test_fusedloss_options_run_the_fused_kernels(ce_small, kwargs):
    x, t = ce_small
    if kwargs.get("backend") == "cpp":
        from conftest import backend_skip_reason

        if backend_skip_reason("cpp"):
            pytest.skip(backend_skip_reason("cpp"))
    assert not _ran_on_torch(ft.cross_entropy(x, t, **kwargs))


def test_large_calls_and_many_classes_run_the_fused_kernels():
    x = torch.randn(600, 1000, requires_grad=True)  # 6e5 elements, 1000 classes
    t = torch.randint(0, 1000, (600,))
    out = ft.cross_entropy(x, t)
    assert not _ran_on_torch(out)
    assert torch.allclose(out, torch.nn.functional.cross_entropy(x, t), rtol=1e-5)
    some = torch.randn(60_000, 20, requires_grad=True)  # 16 to 31 classes stay on torch at any size
    assert _ran_on_torch(ft.cross_entropy(some, torch.randint(0, 20, (60_000,))))


def test_few_classes_run_the_fused_kernel_from_tiled_min():
    """Rows of fewer than 16 classes with class labels: the C++ kernel from TILED_MIN elements on, torch below,
    and torch at any size where the fused call would not run the C++ kernel."""
    from conftest import backend_skip_reason

    if backend_skip_reason("cpp"):
        pytest.skip(backend_skip_reason("cpp"))
    rows = ft.TILED_MIN // 10
    big = torch.randn(rows + 1, 10, requires_grad=True)
    labels = torch.randint(0, 10, (rows + 1,))
    out = ft.cross_entropy(big, labels)
    assert not _ran_on_torch(out)
    assert torch.allclose(out, torch.nn.functional.cross_entropy(big, labels), rtol=1e-5)
    assert not _ran_on_torch(ft.CrossEntropyLoss()(big, labels))
    assert _ran_on_torch(ft.cross_entropy(big[: rows - 1], labels[: rows - 1]))  # under TILED_MIN elements
    assert _ran_on_torch(ft.cross_entropy(big, torch.softmax(big.detach(), 1)))  # probabilities: row by row
    assert _ran_on_torch(ft.multi_margin_loss(big, labels))  # a loss without tiles
    with fl.use_backend("numba"):
        assert _ran_on_torch(ft.cross_entropy(big, labels))
    p = torch.randn(ft.SMALL_ELEMENTWISE, requires_grad=True)
    assert not _ran_on_torch(ft.mse_loss(p, torch.zeros_like(p)))


def test_routes_to_torch_tells_where_a_call_runs(ce_small):
    """``routes_to_torch`` (what the bad-input corpus asks to pick a call's oracle) answers as the forms decide,
    for the functional forms and the modules, on each side of each rule."""
    from fusedloss.torch._routing import routes_to_torch

    x, t = ce_small
    mod = ft.CrossEntropyLoss()
    big = torch.randn(600, 1000, requires_grad=True)
    calls = [(ft.cross_entropy, (x, t), {}), (ft.cross_entropy, (x, t), dict(label_smoothing=0.1)),
             (ft.cross_entropy, (x, t), dict(z_loss=1e-4)), (ft.cross_entropy, (x, t), dict(backend="numpy")),
             (ft.cross_entropy, (big, torch.randint(0, 1000, (600,))), {}), (mod, (x, t), {}),
             (ft.CrossEntropyLoss(z_loss=1e-4), (x, t), {}), (ft.log_cosh_loss, (x, x.detach()), {}),
             (ft.mse_loss, (x, x.detach()), {}), (ft.MSELoss(), (x, x.detach()), {})]
    ran = [routes_to_torch(form, *args, **kw) for form, args, kw in calls]
    assert ran == [_ran_on_torch(form(*args, **kw)) for form, args, kw in calls]
    assert ran == [True, True, False, False, False, True, False, False, True, True]
    ft.set_cpu_routing("fused")
    try:
        assert not routes_to_torch(ft.cross_entropy, x, t) and not routes_to_torch(mod, x, t)
    finally:
        ft.set_cpu_routing("auto")


def test_routing_can_be_turned_off(ce_small):
    x, t = ce_small
    ft.set_cpu_routing("fused")
    try:
        assert not _ran_on_torch(ft.cross_entropy(x, t))
    finally:
        ft.set_cpu_routing("auto")
    assert _ran_on_torch(ft.cross_entropy(x, t))
    with pytest.raises(ValueError, match="mode must be 'auto' or 'fused'"):
        ft.set_cpu_routing("torch")


def test_half_precision_and_losses_torch_lacks_keep_the_fused_path():
    x = torch.randn(16, 4, dtype=torch.bfloat16, requires_grad=True)
    assert not _ran_on_torch(ft.cross_entropy(x, torch.randint(0, 4, (16,))))
    p = torch.randn(50, requires_grad=True)
    assert not _ran_on_torch(ft.log_cosh_loss(p, torch.zeros(50)))
    assert not _ran_on_torch(ft.kl_div_with_logits(p.reshape(5, 10), torch.softmax(torch.randn(5, 10), -1), reduction="batchmean"))


def test_a_module_routes_by_its_current_options(ce_small):
    """A module caches its routing decision and makes it again when an option changes after construction, as
    torch's modules read their attributes at each call; buffers are read at each call (``.to()`` replaces them)."""
    x, t = ce_small
    mod = ft.CrossEntropyLoss()
    assert _ran_on_torch(mod(x, t))
    mod.z_loss = 1e-3  # an option torch lacks: the fused kernel from now on
    out = mod(x, t)
    assert not _ran_on_torch(out)
    assert out.item() > torch.nn.functional.cross_entropy(x, t).item()
    mod.z_loss = 0.0
    mod.label_smoothing = 0.2
    out = mod(x, t)
    assert _ran_on_torch(out) and torch.equal(out, torch.nn.functional.cross_entropy(x, t, label_smoothing=0.2))
    mod.weight = torch.linspace(0.5, 2.0, 10, dtype=torch.float64)
    want = torch.nn.functional.cross_entropy(x, t, weight=mod.weight, label_smoothing=0.2)
    assert torch.equal(mod(x, t), want)
    mod.weight.mul_(2.0)  # changed in place: the same tensor, read at the call
    assert torch.equal(mod(x, t), torch.nn.functional.cross_entropy(x, t, weight=mod.weight, label_smoothing=0.2))
    mod.float()  # the buffer is replaced, not set as an attribute
    assert mod.weight.dtype == torch.float32
    xf = x.detach().float().requires_grad_()
    assert torch.equal(mod(xf, t), torch.nn.functional.cross_entropy(xf, t, weight=mod.weight, label_smoothing=0.2))
    import copy
    import pickle

    for clone in (copy.deepcopy(mod), pickle.loads(pickle.dumps(mod))):
        assert torch.equal(clone(xf, t), mod(xf, t))
        clone.z_loss = 1e-3
        assert not _ran_on_torch(clone(xf, t)) and _ran_on_torch(mod(xf, t))


def test_calls_torch_would_run_unchecked_or_refuse_take_the_fused_path(ce_small):
    """Options outside the registry's ranges and weights torch would use as given (negative, or large enough to
    overflow torch's sums) are not routed; a call that torch refuses (a label out of range) runs the fused form:
    its error names the argument, as with ``backend=``. One that the fused form refuses but torch takes (a negative
    weight) gets torch's result (fusedloss.torch._twin)."""
    x, t = ce_small
    assert torch.equal(ft.cross_entropy(x, t, label_smoothing=-1.0),  # torch computes its formula there
                       torch.nn.functional.cross_entropy(x, t, label_smoothing=-1.0))
    with pytest.raises(ValueError, match="label_smoothing"):
        ft.cross_entropy(x, t, label_smoothing=-1.0, z_loss=1e-3)
    negative = -torch.linspace(0.5, 2, 10, dtype=torch.float64)
    assert torch.equal(ft.CrossEntropyLoss(weight=negative)(x, t),
                       torch.nn.functional.cross_entropy(x, t, weight=negative))
    with pytest.raises(ValueError, match="weight"):
        ft.CrossEntropyLoss(weight=negative, z_loss=1e-3)(x, t)  # an option torch lacks: the fused form's error
    out = ft.cross_entropy(x, t, weight=torch.full((10,), 1e308, dtype=torch.float64))
    assert not _ran_on_torch(out) and torch.isfinite(out)
    bad = t.clone()
    bad[3] = 10
    for fn in (ft.cross_entropy, ft.multi_margin_loss, ft.MultiMarginLoss()):
        with pytest.raises(ValueError, match="label 10 at index"):
            fn(x, bad)
    with pytest.raises(TypeError, match="ctc_loss"):
        ft.loss("ctc", x, t)


_DIRECT_CASES = [
    ("mse_loss", ft.MSELoss, {}, torch.nn.MSELoss),
    ("mse_loss", ft.MSELoss, {"reduction": "sum"}, torch.nn.MSELoss),
    ("l1_loss", ft.L1Loss, {"reduction": "none"}, torch.nn.L1Loss),
    ("huber_loss", ft.HuberLoss, {"delta": 0.3}, torch.nn.HuberLoss),
    ("cross_entropy", ft.CrossEntropyLoss, {}, torch.nn.CrossEntropyLoss),
    ("cross_entropy", ft.CrossEntropyLoss, {"label_smoothing": 0.1, "ignore_index": 3, "reduction": "sum"},
     torch.nn.CrossEntropyLoss),
    ("cross_entropy", ft.CrossEntropyLoss, {"weight": torch.rand(10, dtype=torch.float64)}, torch.nn.CrossEntropyLoss),
]


def _case_inputs(name):
    torch.manual_seed(0)
    if name == "cross_entropy":
        return torch.randn(64, 10, dtype=torch.float64, requires_grad=True), torch.randint(0, 10, (64,))
    return torch.randn(100, dtype=torch.float64, requires_grad=True), torch.randn(100, dtype=torch.float64)


@pytest.mark.parametrize("name, ours, options, theirs", _DIRECT_CASES)
def test_routed_calls_run_torch_s_op_with_torch_s_results(name, ours, options, theirs):
    """A routed module call with torch's options runs the ATen op that torch's functional ends in (no Python of
    the functional in between): the same value and gradient as torch.nn's module, bit for bit."""
    x, t = _case_inputs(name)
    mod = ours(**options)
    out = mod(x, t)
    assert mod.__dict__["_route"][0][3] is not None, "no direct op for a module with torch's options"
    want = theirs(**options)(x, t)
    assert _ran_on_torch(out) and torch.equal(out, want)
    g, = torch.autograd.grad(out.sum(), x)
    g_want, = torch.autograd.grad(want.sum(), x)
    assert torch.equal(g, g_want)
    if not options:  # the functional form with every option at its default takes the same op
        assert torch.equal(getattr(ft, name)(x, t), want)


def test_a_torch_function_mode_sees_torch_s_functional():
    """Under a torch function mode (``with torch.device(...)``, profilers, tracers) a routed call goes through
    torch's functional, as torch.nn's module's would, so the mode sees the same function."""
    from torch.overrides import TorchFunctionMode

    seen = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    for name, ours, _, _ in _DIRECT_CASES[:1] + _DIRECT_CASES[4:5]:
        x, t = _case_inputs(name)
        for call in (ours(), getattr(ft, name)):
            seen.clear()
            with Record():
                call(x, t)
            assert name in seen, (name, seen)


def test_a_module_s_kept_route_sees_a_weight_set_after_its_first_call():
    """The routing decision keeps the buffers' values while they are all None: a weight assigned after the first
    call (or a None weight set back) is used by the next call, routed or fused, as torch.nn's module does."""
    x, t = _case_inputs("cross_entropy")
    w = torch.rand(10, dtype=torch.float64) + 0.5
    ours, theirs = ft.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    assert torch.equal(ours(x, t), theirs(x, t))
    ours.weight, theirs.weight = w, w
    out = ours(x, t)
    assert _ran_on_torch(out) and torch.equal(out, theirs(x, t))
    assert not torch.equal(out, torch.nn.CrossEntropyLoss()(x, t))
    ours.weight, theirs.weight = None, None
    assert torch.equal(ours(x, t), theirs(x, t))
