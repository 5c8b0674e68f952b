"""The rule that sends CUDA tensors of ``fusedloss.torch`` to torch's kernels or to fusedloss's.

``decide`` is a pure function, tested here on every branch. ``options_of`` and ``torch_loss`` (reading a call and
running it through ``torch.nn.functional``) are checked on CPU tensors: for each call torch has, torch's result
through the routing must equal fusedloss's own, value and gradient, so that routing never changes semantics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusedloss import _gpu_routing as gr
from fusedloss._spec import REGISTRY

CE = "cross_entropy"


def _case(**kw):
    case = {"loss": CE, "dtype": "float32", "options": [], "numel": [1000, 10**9], "classes": [1000, 200000],
            "fused_s": 1.0, "torch_s": 2.0}
    case.update(kw)
    return gr.parse_table({"schema": 1, "cases": [case]})


# --- decide ------------------------------------------------------------------------------------------------



@pytest.fixture(autouse=True)
def _fused_cpu_calls():
    """These tests run the fused path on CPU tensors (torch here has no CUDA): small CPU calls would
    otherwise go to torch's own kernels (fusedloss.torch.set_cpu_routing)."""
    ft.set_cpu_routing("fused")
    yield
    ft.set_cpu_routing("auto")

def test_torch_twins_come_from_the_registry():
    """Every loss with a torch.nn.functional twin is routable (not the losses with calls of their own, whose
    forms take CPU tensors)."""
    twins = {name for name, spec in REGISTRY.items() if spec.torch_name and spec.kind not in ("sequence", "pairwise")}
    assert set(gr.TORCH_OPTIONS) == twins


@pytest.mark.parametrize("loss", sorted(REGISTRY))
@pytest.mark.parametrize("forced", gr.MODES)
def test_decide_without_measurements(loss, forced):
    got = gr.decide(loss, (), (64, 10), "float32", (), forced)
    if loss not in gr.TORCH_OPTIONS or forced == "fused":
        assert got == "fused"
    else:
        assert got == "torch"  # auto with no measured case, or forced: torch's kernels


@pytest.mark.parametrize("option", ["z_loss", "softcap", "confidence_penalty", "sample_weight", "inplace_grad",
                                    "class_dim"])
@pytest.mark.parametrize("forced", gr.MODES)
def test_options_torch_lacks_keep_the_fused_path(option, forced):
    assert gr.decide(CE, {option, "label_smoothing"}, (8, 5), "float32", (), forced) == "fused"


def test_every_torch_option_is_routable():
    for loss, allowed in gr.TORCH_OPTIONS.items():
        assert gr.decide(loss, allowed, (8, 5), "float32", ()) == "torch"


def test_a_measured_case_routes_to_fused_only_where_it_applies():
    table = _case()
    shape = (4096, 32000)
    assert gr.decide(CE, (), shape, "float32", table) == "fused"
    assert gr.decide(CE, (), shape, "float32", table, "torch") == "torch"  # forced beats the table
    assert gr.decide(CE, (), shape, "bfloat16", table) == "torch"  # other dtype
    assert gr.decide(CE, {"label_smoothing"}, shape, "float32", table) == "torch"  # other options
    assert gr.decide(CE, (), (4, 100), "float32", table) == "torch"  # fewer classes than measured
    assert gr.decide(CE, (), (1, 999), "float32", table) == "torch"  # fewer elements than measured
    assert gr.decide("mse", (), (10**6,), "float32", table) == "torch"  # other loss


def test_a_case_where_fused_was_slower_keeps_torch_and_a_tie_goes_fused():
    assert gr.decide(CE, (), (4096, 32000), "float32", _case(fused_s=2.5, torch_s=2.0)) == "torch"
    assert gr.decide(CE, (), (4096, 32000), "float32", _case(fused_s=2.0, torch_s=2.0)) == "fused"


def test_elementwise_case_without_classes():
    table = gr.parse_table({"schema": 1, "cases": [
        {"loss": "mse", "dtype": "float32", "numel": [10**7, 10**9], "fused_s": 1, "torch_s": 1.5}]})
    assert gr.decide("mse", (), (10**8,), "float32", table) == "fused"
    assert gr.decide("mse", (), (10**6,), "float32", table) == "torch"
    assert gr.decide("mse", {"weight"}, (10**8,), "float32", table) == "torch"


def test_decide_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="forced must be one of"):
        gr.decide(CE, (), (2, 2), "float32", (), "fast")


# --- the results table ---------------------------------------------------------------------------------------


def test_the_repository_results_file_parses():
    with open(gr.RESULTS_FILE, encoding="utf-8") as f:
        cases = gr.parse_table(json.load(f))
    assert cases == gr.load_table()
    for case in cases:  # a recorded case is a loss and options torch has (else there is nothing to route to)
        assert case["loss"] in gr.TORCH_OPTIONS and case["options"] <= gr.TORCH_OPTIONS[case["loss"]]


def test_the_recorded_cases_route_by_their_measurement():
    """Each measured shape runs fusedloss's kernels in "auto" mode exactly when fusedloss was measured at least
    as fast there (the file records slower cases too: they keep torch's kernels)."""
    table = gr.load_table()
    assert table  # the device benchmark has been run and recorded
    for case in table:
        classes = case["classes"][0] if "classes" in case else None
        shape = (case["numel"][0] // classes, classes) if classes else (case["numel"][0],)
        want = "fused" if case["fused_s"] <= case["torch_s"] else "torch"
        assert gr.decide(case["loss"], case["options"], shape, case["dtype"], table) == want
        assert gr.decide(case["loss"], case["options"], shape, case["dtype"], table, "fused") == "fused"


@pytest.mark.parametrize("bad, match", [
    ([], "expected an object"),
    ({"schema": 2, "cases": []}, "expected an object"),
    ({"schema": 1, "cases": [3]}, "expected an object, got int"),
    ({"schema": 1, "cases": [{"loss": CE}]}, "missing 'dtype'"),
    ({"schema": 1, "cases": [{"loss": CE, "dtype": "float32", "numel": [5, 1], "fused_s": 1, "torch_s": 1}]},
     "'numel' must be"),
    ({"schema": 1, "cases": [{"loss": CE, "dtype": "float32", "numel": [1, 5], "fused_s": 0, "torch_s": 1}]},
     "'fused_s' must be a positive"),
    ({"schema": 1, "cases": [{"loss": CE, "dtype": "float32", "numel": [1, 5], "fused_s": 1, "torch_s": 1,
                              "options": "z_loss"}]}, "'options' must be a list"),
])
def test_a_malformed_table_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        gr.parse_table(bad)


def test_load_table_reads_a_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"schema": 1, "cases": [
        {"loss": "mse", "dtype": "float32", "numel": [1, 2], "fused_s": 1, "torch_s": 2}]}))
    assert len(gr.load_table(path)) == 1
    assert gr.load_table(tmp_path / "absent.json") == ()


# --- forced modes ------------------------------------------------------------------------------------------


@pytest.fixture
def clean_mode(monkeypatch):
    monkeypatch.delenv(gr.ENV, raising=False)
    yield
    gr.set_cuda_routing(None)


def test_forced_mode_precedence(clean_mode, monkeypatch):
    assert gr.forced_mode(None) == "auto"
    assert gr.forced_mode("auto") == "auto"
    assert gr.forced_mode("cuda") == "fused"  # an explicit backend asks for fusedloss
    monkeypatch.setenv(gr.ENV, "fused")
    assert gr.forced_mode(None) == "fused"
    gr.set_cuda_routing("torch")
    assert gr.forced_mode(None) == "torch"  # set_cuda_routing beats the environment
    assert gr.forced_mode("cuda") == "fused"  # and the call's backend beats both
    gr.set_cuda_routing(None)
    assert gr.forced_mode(None) == "fused"


def test_bad_modes_are_reported(clean_mode, monkeypatch):
    with pytest.raises(ValueError, match="set_cuda_routing: mode must be one of"):
        gr.set_cuda_routing("gpu")
    monkeypatch.setenv(gr.ENV, "always")
    with pytest.raises(ValueError, match="FUSEDLOSS_CUDA_ROUTING='always' is not a routing mode"):
        gr.forced_mode(None)


# --- reading calls and running them on torch (CPU tensors) --------------------------------------------------

torch = pytest.importorskip("torch")
F = torch.nn.functional
ft = pytest.importorskip("fusedloss.torch")
from fusedloss.torch import _args  # noqa: E402  (the functional forms reach _apply through it)


def _calls(monkeypatch, fn, *args, **kwargs):
    """The _Call that ``fn(*args, **kwargs)`` builds (and the inputs it passes on)."""
    seen = []
    real = _args._apply

    def spy(call, input, target):
        seen.append((call, input, target))
        return real(call, input, target)

    monkeypatch.setattr(_args, "_apply", spy)
    out = fn(*args, **kwargs)
    monkeypatch.setattr(_args, "_apply", real)
    assert len(seen) == 1
    return out, seen[0]


def _g():
    return torch.Generator().manual_seed(7)


def _x(shape, g):
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _labels(n, C, g):
    return torch.randint(0, C, (n,), generator=g)


def _prob(shape, g):
    return torch.rand(shape, generator=g, dtype=torch.float64)


def _cases():
    g = _g()
    x, y = _x((6, 5), g), _x((6, 5), g)
    w = _prob((6, 5), g)
    labels = _labels(6, 5, g)
    labels[2] = -1
    cw = _prob((5,), g) + 0.5
    probs = torch.softmax(_x((6, 5), g), -1)
    p = torch.sigmoid(_x((6, 5), g))
    t01 = (_prob((6, 5), g) > 0.5).double()
    return [
        ("mse", ft.mse_loss, (x, y), {}, set()),
        ("mse-weight", ft.mse_loss, (x, y), {"weight": w}, {"weight"}),
        ("l1-weight-sum", ft.l1_loss, (x, y), {"weight": w, "reduction": "sum"}, {"weight"}),
        ("huber-delta-weight", ft.huber_loss, (x, y), {"delta": 0.5, "weight": w}, {"delta", "weight"}),
        ("smooth_l1-beta", ft.smooth_l1_loss, (x, y), {"beta": 0.3, "reduction": "none"}, {"beta"}),
        ("poisson-rate", ft.poisson_nll_loss, (p, y.abs()), {"log_input": False}, {"log_input"}),
        ("bce-weight", ft.binary_cross_entropy, (p, t01), {"weight": w[0]}, {"weight"}),
        ("bce_logits-pos_weight", ft.binary_cross_entropy_with_logits, (x, t01),
         {"weight": w, "pos_weight": cw}, {"weight", "pos_weight"}),
        ("ce", ft.cross_entropy, (x, labels.clamp(min=0)), {}, set()),
        ("ce-options", ft.cross_entropy, (x, labels), {"weight": cw, "ignore_index": -1, "label_smoothing": 0.1},
         {"class_weight", "ignore_index", "label_smoothing"}),
        ("ce-probs", ft.cross_entropy, (x, probs), {"weight": cw, "reduction": "sum"},
         {"class_weight", "soft_targets"}),
        ("ce-4d", ft.cross_entropy, (_x((2, 5, 3, 2), g), _labels(12, 5, g).reshape(2, 3, 2)), {}, set()),
        ("multi_margin", ft.multi_margin_loss, (x, labels.clamp(min=0)), {"p": 2, "margin": 0.5, "weight": cw},
         {"p", "margin", "class_weight"}),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_torch_loss_equals_the_fused_call(case, monkeypatch):
    _, fn, (x, t), kwargs, want_options = case
    x = x.clone().requires_grad_(True)
    ours, (call, input, target) = _calls(monkeypatch, fn, x, t, **kwargs)
    assert gr.options_of(call, input, target) == want_options
    assert gr.decide(call.name, want_options, (2, 2), "float64", ()) == "torch"
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    theirs = gr.torch_loss(call, x2, target)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x2)
    torch.testing.assert_close(theirs, ours.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_theirs, g_ours, rtol=1e-10, atol=1e-12)


def test_options_torch_lacks_are_read(monkeypatch):
    g = _g()
    x, labels = _x((6, 5), g), _labels(6, 5, g)
    cases = [
        (ft.cross_entropy, (x, labels), {"z_loss": 1e-3, "softcap": 5.0}, {"z_loss", "softcap"}),
        (ft.cross_entropy, (x, labels), {"sample_weight": _prob((6,), g)}, {"sample_weight"}),
        (ft.cross_entropy, (x.clone(), labels), {"inplace_grad": True}, {"inplace_grad"}),
        (ft.loss, ("cross_entropy", x.T.contiguous(), labels), {"class_dim": 0}, {"class_dim"}),
        (ft.loss, ("huber", x, _x((6, 5), g)), {"sample_weight": _prob((6, 5), g)}, {"sample_weight"}),
        (ft.loss, ("mse", x, _x((6, 5), g)), {"sample_weight": _prob((6,), g)}, {"sample_weight"}),
        (ft.binary_cross_entropy_with_logits, (x, (x > 0).double()), {"label_smoothing": 0.1},
         {"label_smoothing"}),
    ]
    for fn, args, kwargs, want in cases:
        _, (call, input, target) = _calls(monkeypatch, fn, *args, **kwargs)
        options = gr.options_of(call, input, target)
        assert options == want, (fn.__name__, kwargs)
        assert gr.decide(call.name, options, (6, 5), "float64", ()) == "fused"


def test_route_is_exported_from_fusedloss_torch(clean_mode):
    assert ft.set_cuda_routing is gr.set_cuda_routing
    ft.set_cuda_routing("fused")
    assert ft.get_cuda_routing() == "fused"
    np.testing.assert_equal(gr.decide(CE, (), (2, 2), "float32", (), ft.get_cuda_routing()), "fused")
