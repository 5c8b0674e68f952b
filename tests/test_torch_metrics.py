"""fusedloss.torch's ``metrics=``: the metrics of the same kernel call as the loss, equal to the host API's,
with the loss and its gradient unchanged, and clear refusals where they cannot be computed."""

import warnings

import pytest
import torch

import fusedloss as fl
import fusedloss.torch as flt
from fusedloss.metrics import Metrics

NAMES = ("accuracy", "top5", "nll", "entropy", "confidence", "ece15")
BINARY = ("accuracy", "brier", "roc256", "ece15")
# (rows, classes): small calls that torch's own function would take without metrics, and large ones
SIZES = [(8, 5), (64, 40), (4096, 64)]


def _logits(n, c, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype) * 2
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def _fused(fn, x, *args, **kwargs):
    """(value, gradient) of a call, with its metrics when asked."""
    x = x.clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    m = None
    if isinstance(out, tuple):
        out, m = out
    out.backward()
    return out.detach(), x.grad, m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,c", SIZES)
@pytest.mark.parametrize("options", [{}, {"ignore_index": 1}, {"label_smoothing": 0.1}, {"weight": True},
                                     {"sample_weight": True}, {"reduction": "sum"}])
def test_cross_entropy_metrics_match_host(dtype, n, c, options):
    x, y = _logits(n, c, dtype)
    options = dict(options)
    host = {k: v for k, v in options.items() if k not in ("weight", "sample_weight")}
    if options.get("weight"):
        options["weight"] = torch.linspace(0.5, 2, c, dtype=dtype)
        host["class_weight"] = options["weight"].numpy()
    if options.get("sample_weight"):
        options["sample_weight"] = torch.linspace(0, 3, n, dtype=dtype)
        host["sample_weight"] = options["sample_weight"].numpy()
    v, g, m = _fused(flt.cross_entropy, x, y, metrics=NAMES, **options)
    v0, g0, _ = _fused(flt.cross_entropy, x, y, **options)
    expected = fl.cross_entropy(x.numpy(), y.numpy(), metrics=NAMES, **host)[1]
    assert isinstance(m, Metrics)
    assert dict(m) == dict(expected)
    assert m.state == expected.state
    # the loss and its gradient as without metrics, bit for bit, against the fused call without them
    vf, gf, _ = _fused(flt.cross_entropy, x, y, backend="cpp", **options)
    vm, gm, _ = _fused(flt.cross_entropy, x, y, backend="cpp", metrics=NAMES, **options)
    assert torch.equal(vm, vf) and torch.equal(gm, gf)
    assert torch.equal(v, vm) and torch.equal(g, gm)
    torch.testing.assert_close(v, v0)  # (small calls without metrics run on torch's own function)
    torch.testing.assert_close(g, g0)


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
def test_bits_unchanged_every_reduction(backend):
    x, y = _logits(300, 33, torch.float32, seed=3)
    for reduction in ("mean", "sum"):
        for opts in ({}, {"z_loss": 1e-3, "softcap": 10.0}):
            a = _fused(flt.cross_entropy, x, y, reduction=reduction, backend=backend, **opts)
            b = _fused(flt.cross_entropy, x, y, reduction=reduction, backend=backend, metrics="accuracy", **opts)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    x = x.requires_grad_(True)
    per_row, m = flt.cross_entropy(x, y, reduction="none", backend=backend, metrics=("accuracy", "nll"))
    assert torch.equal(per_row, flt.cross_entropy(x, y, reduction="none", backend=backend))
    assert dict(m) == dict(fl.cross_entropy(x.detach().numpy(), y.numpy(), backend=backend,
                                            metrics=("accuracy", "nll"))[1])


def test_no_grad_and_class_dim():
    x, y = _logits(32, 7, torch.float64)
    with torch.no_grad():
        v, m = flt.cross_entropy(x, y, metrics="accuracy")
    assert v.item() == fl.cross_entropy(x.numpy(), y.numpy()) and m["accuracy"] == fl.cross_entropy(
        x.numpy(), y.numpy(), metrics="accuracy")[1]["accuracy"]
    x3 = x.reshape(4, 8, 7).permute(0, 2, 1)  # (N, C, d): classes on dim 1, as torch
    v3, m3 = flt.cross_entropy(x3, y.reshape(4, 8), metrics=("accuracy", "top2"))
    expected = fl.cross_entropy(x.numpy(), y.numpy(), metrics=("accuracy", "top2"))[1]
    assert dict(m3) == dict(expected)


def test_half_precision_metrics_of_the_float32_logits():
    x, y = _logits(64, 12, torch.float32)
    v, m = flt.cross_entropy(x.to(torch.bfloat16), y, metrics="accuracy")
    assert v.dtype == torch.bfloat16
    expected = fl.cross_entropy(x.to(torch.bfloat16).float().numpy(), y.numpy(), metrics="accuracy")[1]
    assert dict(m) == dict(expected)


def test_generic_form_and_merge():
    x, y = _logits(100, 10, torch.float32)
    v, m = flt.loss("cross_entropy", x, y, metrics=("accuracy", "ece15"))
    assert dict(m) == dict(fl.cross_entropy(x.numpy(), y.numpy(), metrics=("accuracy", "ece15"))[1])
    _, m1 = flt.cross_entropy(x[:40], y[:40], metrics="accuracy")
    _, m2 = flt.cross_entropy(x[40:], y[40:], metrics="accuracy")
    merged = fl.metrics.merge_metric_states([m1.state, m2.state]).result()
    assert merged["accuracy"] == m["accuracy"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [100, 20000])
def test_bce_with_logits_metrics(dtype, n):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, generator=g, dtype=dtype)
    y = (torch.rand(n, generator=g) < torch.sigmoid(x)).to(dtype)
    v, gr, m = _fused(flt.binary_cross_entropy_with_logits, x, y, metrics=BINARY)
    v0, g0, _ = _fused(flt.binary_cross_entropy_with_logits, x, y)
    assert torch.equal(v, v0) and torch.equal(gr, g0)
    expected = fl.binary_cross_entropy_with_logits(x.numpy(), y.numpy(), metrics=BINARY)[1]
    assert dict(m) == dict(expected)
    w = torch.rand(n, generator=g, dtype=dtype)
    vs, ms = flt.binary_cross_entropy_with_logits(x, y, weight=w, reduction="sum", metrics="accuracy",
                                                  pos_weight=torch.tensor(2.0, dtype=dtype))
    assert torch.equal(vs, flt.binary_cross_entropy_with_logits(x, y, weight=w, reduction="sum",
                                                                pos_weight=torch.tensor(2.0, dtype=dtype)))
    assert dict(ms) == dict(fl.binary_cross_entropy_with_logits(x.numpy(), y.numpy(), sample_weight=w.numpy(),
                                                                metrics="accuracy")[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [100, 20000])
@pytest.mark.parametrize("form,name,options", [
    (flt.binary_cross_entropy, "binary_cross_entropy", {}),
    (flt.binary_focal_loss, "binary_focal", {}),
    (flt.binary_focal_loss, "binary_focal", {"alpha": 0.6, "gamma": 1.5}),
])
def test_binary_forms_metrics(form, name, options, dtype, n):
    """The other losses with a binary metrics pass: the metrics of the host call, the loss and its gradient bit
    for bit those of the fused call without metrics (probabilities for binary_cross_entropy, logits else)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, generator=g, dtype=dtype)
    y = (torch.rand(n, generator=g) < torch.sigmoid(x)).to(dtype)
    pred = torch.sigmoid(x) if name == "binary_cross_entropy" else x
    v, gr, m = _fused(form, pred, y, metrics=BINARY, **options)
    vf, gf, _ = _fused(form, pred, y, backend="cpp", **options)
    assert torch.equal(v, vf) and torch.equal(gr, gf)
    host = {"alpha": 0.6, "gamma": 1.5} if options else {}
    expected = getattr(fl, name)(pred.numpy(), y.numpy(), metrics=BINARY, **host)[1]
    assert isinstance(m, Metrics)
    assert dict(m) == dict(expected) and m.state == expected.state
    # a weighted sum: the metrics weigh each element by its weight, as the host API's sample_weight
    w = torch.rand(n, generator=g, dtype=dtype)
    weighted = {"weight": w} if name == "binary_cross_entropy" else {"sample_weight": w}
    vs, ms = form(pred, y, reduction="sum", metrics="accuracy", **weighted, **options)
    assert torch.equal(vs, form(pred, y, reduction="sum", backend="cpp", **weighted, **options))
    assert dict(ms) == dict(getattr(fl, name)(pred.numpy(), y.numpy(), sample_weight=w.numpy(), metrics="accuracy",
                                              **host)[1])


def test_every_form_of_a_loss_with_a_metrics_pass_takes_metrics():
    """From the registry: the functional form and the module of every loss whose kernel computes metrics take
    ``metrics=`` (keyword only, default None), and no other form does."""
    import inspect

    from fusedloss._spec import REGISTRY

    for name, spec in REGISTRY.items():
        if name not in flt.FUNCTIONAL or name not in flt.MODULES:
            continue
        has = spec.metrics_pass is not None
        fn = inspect.signature(inspect.unwrap(flt.FUNCTIONAL[name])).parameters
        init = inspect.signature(flt.MODULES[name].__init__).parameters
        assert ("metrics" in fn) == has and ("metrics" in init) == has, name
        if has:
            assert fn["metrics"].kind is inspect.Parameter.KEYWORD_ONLY and fn["metrics"].default is None, name


def test_modules():
    x, y = _logits(64, 10, torch.float32)
    mod = flt.CrossEntropyLoss(label_smoothing=0.1, metrics=("accuracy", "top5"))
    v, g, m = _fused(mod, x, y)
    v0, g0, _ = _fused(flt.cross_entropy, x, y, label_smoothing=0.1, backend="cpp")
    assert torch.equal(v, v0) and torch.equal(g, g0)
    assert dict(m) == dict(fl.cross_entropy(x.numpy(), y.numpy(), metrics=("accuracy", "top5"))[1])
    assert "metrics=('accuracy', 'top5')" in repr(mod)
    mod.metrics = None  # an attribute, as every option: the plain loss again
    assert isinstance(mod(x, y), torch.Tensor)
    xb, yb = x[:, 0], (y % 2).float()
    vb, mb = flt.BCEWithLogitsLoss(metrics="brier")(xb, yb)
    assert dict(mb) == dict(fl.binary_cross_entropy_with_logits(xb.numpy(), yb.numpy(), metrics="brier")[1])
    p = torch.sigmoid(xb)
    vp, mp = flt.BCELoss(metrics=("accuracy", "brier"))(p, yb)
    assert torch.equal(vp, flt.binary_cross_entropy(p, yb, backend="cpp"))
    assert dict(mp) == dict(fl.binary_cross_entropy(p.numpy(), yb.numpy(), metrics=("accuracy", "brier"))[1])
    focal = flt.BinaryFocalLoss(gamma=1.0, metrics="accuracy")
    assert "metrics='accuracy'" in repr(focal)
    assert dict(focal(xb, yb)[1]) == dict(fl.binary_focal(xb.numpy(), yb.numpy(), gamma=1.0, metrics="accuracy")[1])
    with pytest.raises(RuntimeError, match="metrics"):
        torch.jit.script(flt.CrossEntropyLoss(metrics="accuracy"))


def test_torch_compile_graph_break():
    x, y = _logits(64, 40, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v, m = torch.compile(lambda a, b: flt.cross_entropy(a, b, metrics=("accuracy", "nll")), backend="eager")(x, y)
    assert dict(m) == dict(fl.cross_entropy(x.numpy(), y.numpy(), metrics=("accuracy", "nll"))[1])


def test_refusals():
    x, y = _logits(16, 6, torch.float32)
    with pytest.raises(ValueError, match="unknown metric 'bogus'"):
        flt.cross_entropy(x, y, metrics="bogus")
    with pytest.raises(ValueError, match="metrics need hard labels"):
        flt.cross_entropy(x, torch.softmax(x, 1), metrics="accuracy")
    with pytest.raises(ValueError, match="metrics are computed in the loss pass of cross_entropy"):
        flt.loss("mse", x, x + 1, metrics="accuracy")
    with pytest.raises(ValueError, match="metrics='accuracy' with weight= and reduction='mean'"):
        flt.binary_cross_entropy_with_logits(x, (x > 0).float(), weight=torch.ones(6), metrics="accuracy")
    with pytest.raises(ValueError, match="metrics='accuracy' with a pos_weight of shape"):
        flt.binary_cross_entropy_with_logits(x.reshape(16, 6, 1), (x > 0).float().reshape(16, 6, 1),
                                             pos_weight=torch.ones(6, 1), metrics="accuracy")
    with pytest.raises(RuntimeError, match="metrics='accuracy' is not supported inside torch.func"):
        torch.func.grad(lambda z: flt.cross_entropy(z, y, metrics="accuracy")[0])(x)
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.vmap(lambda z: flt.cross_entropy(z, y, metrics="accuracy")[0])(x.expand(2, 16, 6))


def test_refuses_tensors_on_other_devices():
    x, y = _logits(16, 6, torch.float32)
    with pytest.raises(TypeError, match=r"metrics='accuracy' takes CPU or CUDA tensors, got input on meta"
                                        r".*logit_metrics"):
        flt.cross_entropy(x.to("meta"), y.to("meta"), metrics="accuracy")
    with pytest.raises(TypeError, match=r"takes CPU or CUDA tensors.*binary_logit_metrics"):
        flt.binary_cross_entropy_with_logits(x.to("meta"), x.to("meta"), metrics="accuracy")


@pytest.mark.parametrize("forced", ["auto", "torch", "fused"])
@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits"])
def test_a_cuda_call_with_metrics_runs_the_fused_kernels(name, forced):
    """The CUDA routing sends a call with metrics to fusedloss's kernels, even where torch's are forced: only
    the fused pass computes them (torch's own kernels would give the loss and no metrics)."""
    from fusedloss import _gpu_routing
    from fusedloss.torch._kernel import _Call

    x = torch.zeros(64, 10)
    call = _Call(name, "mean", {}, None, 1 if name == "cross_entropy" else None, False, None, ("accuracy",))
    options = _gpu_routing.options_of(call, x, torch.zeros(64, dtype=torch.int64))
    assert "metrics" in options
    assert _gpu_routing.decide(name, options, (64, 10), "float32", _gpu_routing.load_table(), forced) == "fused"
    plain = _Call(name, "mean", {}, None, 1 if name == "cross_entropy" else None, False, None, None)
    assert "metrics" not in _gpu_routing.options_of(plain, x, torch.zeros(64, dtype=torch.int64))


@pytest.mark.parametrize("want_grad", [True, False])
def test_the_cuda_kernel_call_hands_back_value_and_metrics(monkeypatch, want_grad):
    """``_run_cuda`` passes ``metrics`` to the dispatcher and splits its result: the value (and the gradient in
    its buffer) for autograd, the Metrics in ``call.metrics_out``. The dispatcher and the stream are stand-ins
    here (no GPU): what is checked is the hand-over, which the GPU test below runs for real."""
    from types import SimpleNamespace

    from fusedloss.torch import _kernel

    seen = {}

    def dispatcher(x, t, reduction, sw, backend, params, outputs, grad_out, **kw):
        seen.update(kw, outputs=outputs)
        return ("value", "grad", "metrics") if outputs[1] else ("value", "metrics")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: SimpleNamespace(cuda_stream=7))
    call = _kernel._Call("cross_entropy", "mean", {}, None, 1, False, None, ("accuracy",))
    monkeypatch.setattr(call.loss, "_run", dispatcher)
    x = SimpleNamespace(device="cuda:0")
    assert _kernel._run_cuda(call, x, None, None, None, want_grad) == "value"
    assert call.metrics_out == "metrics"
    assert seen["metrics"] == ("accuracy",) and seen["stream"] == 7 and seen["device_value"] is True
    assert seen["outputs"][1] is want_grad


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("routing", ["auto", "torch"])
def test_cuda_tensors_give_the_metrics_of_cpu_tensors(routing):
    flt.set_cuda_routing(routing)
    try:
        x, y = _logits(512, 40, torch.float64)
        v, g, m = _fused(flt.cross_entropy, x.cuda(), y.cuda(), metrics=NAMES)
        v0, g0, m0 = _fused(flt.cross_entropy, x, y, metrics=NAMES)
        torch.testing.assert_close(v.cpu(), v0)
        torch.testing.assert_close(g.cpu(), g0)
        assert dict(m) == pytest.approx(dict(m0))
        t = (torch.rand(512, 3, dtype=torch.float64) > 0.5).double()
        xb = x[:, :3].contiguous()
        vb, gb, mb = _fused(flt.binary_cross_entropy_with_logits, xb.cuda(), t.cuda(), metrics=BINARY)
        vb0, gb0, mb0 = _fused(flt.binary_cross_entropy_with_logits, xb, t, metrics=BINARY)
        torch.testing.assert_close(vb.cpu(), vb0)
        assert dict(mb) == pytest.approx(dict(mb0))
    finally:
        flt.set_cuda_routing("auto")
