"""The overlap losses (kind "overlap": dice, tversky), against an independent torch autograd of
segmentation_models_pytorch's formulas (``_torch_overlap``), a hand table, and the reference on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import HOST_BACKENDS, backend_skip_reason, supported

torch = pytest.importorskip("torch")

OVERLAP = [name for name, spec in REGISTRY.items() if spec.kind == "overlap"]


def _torch_overlap(x, target, *, mode="multiclass", from_logits=True, smooth=0.0, eps=1e-7, log_loss=False,
                   ignore_index=None, per_sample=False, class_weights=None, alpha=0.5, beta=0.5, gamma=1.0,
                   sample_weight=None, reduction="mean", grad_output=None, dtype=torch.float64):
    """(value, d value / d x) by autograd of segmentation_models_pytorch 0.6's DiceLoss / TverskyLoss (dice:
    alpha = beta = 1/2), the overlap as (P + Y - |p - y|_1) / 2 as it computes it. "none": the weighted terms and
    the gradient of sum(grad_output * terms)."""
    x = torch.tensor(x, dtype=dtype, requires_grad=True)
    N = x.shape[0]
    p = (x.log_softmax(1).exp() if mode == "multiclass" else torch.nn.functional.logsigmoid(x).exp()) \
        if from_logits else x
    t = torch.tensor(target)
    if mode == "multiclass":
        C = x.shape[1]
        p, t = p.reshape(N, C, -1), t.reshape(N, -1)
        keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
        y = torch.nn.functional.one_hot(t * keep, C).permute(0, 2, 1) * keep.unsqueeze(1)
        p = p * keep.unsqueeze(1)
    else:
        C = 1 if mode == "binary" else x.shape[1]
        p, t = p.reshape(N, C, -1), t.reshape(N, C, -1)
        keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
        p, y = p * keep, t * keep
    y = y.to(dtype)
    dims = (2,) if per_sample else (0, 2)
    P, Y = p.sum(dims), y.sum(dims)
    inter = (P + Y - torch.linalg.vector_norm(p - y, ord=1, dim=dims)) / 2
    score = (inter + smooth) / (inter + alpha * (P - inter) + beta * (Y - inter) + smooth).clamp_min(eps)
    loss = -torch.log(score.clamp_min(eps)) if log_loss else 1.0 - score
    loss = loss * (Y > 0).to(dtype)
    w = torch.ones(C, dtype=dtype) if class_weights is None else torch.tensor(class_weights, dtype=dtype)
    terms = loss * w
    s = torch.ones(N, dtype=dtype) if sample_weight is None else torch.tensor(sample_weight, dtype=dtype)
    if per_sample:
        terms = terms * s[:, None]
    if reduction == "none":
        terms.backward(torch.tensor(grad_output, dtype=dtype))
        return terms.detach().numpy(), x.grad.numpy()
    value = terms.sum() if reduction == "sum" else (terms.sum() / (w.sum() * (s.sum() if per_sample else 1))) ** gamma
    value.backward()
    return value.item(), x.grad.numpy()


def _case(mode, shape=(3, 4, 5, 6), seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=shape)
    if mode == "multiclass":
        t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
        t[0, 0, 0] = 0  # never every class absent
        t[:, :, 1] = np.where(t[:, :, 1] == 2, 1, t[:, :, 1])  # a class absent in some samples
        if ignore is not None:
            t[0, :2] = ignore
    else:
        t = (rng.random(shape) < 0.35).astype(np.float64)
        if ignore is not None:
            t[0, 0, :2] = ignore
    return x, t


VARIANTS = [
    ("dice", "multiclass", {}),
    ("dice", "multiclass", dict(smooth=1.0, ignore_index=255)),
    ("dice", "multiclass", dict(log_loss=True, per_sample=True, class_weights=np.array([1.0, 0.0, 2.0, 0.5]))),
    ("dice", "multilabel", dict(from_logits=False)),
    ("dice", "binary", dict(ignore_index=-1, per_sample=True)),
    ("tversky", "multiclass", dict(alpha=0.3, beta=0.7, gamma=0.75, ignore_index=-1)),
    ("tversky", "multilabel", dict(alpha=0.9, beta=0.1, smooth=0.5, log_loss=True, gamma=2.0, per_sample=True)),
    ("tversky", "binary", dict(alpha=0.0, beta=1.0)),
]


def _args(mode, kw, seed=0):
    x, t = _case(mode, seed=seed, ignore=kw.get("ignore_index"))
    if not kw.get("from_logits", True):
        x = np.random.default_rng(seed + 1).random(x.shape)
    return x, t


@pytest.mark.parametrize("name,mode,kw", VARIANTS)
def test_value_and_grad_match_torch_autograd_float64(name, mode, kw):
    x, t = _args(mode, kw)
    value, grad = fl.LOSSES[name].value_and_grad(x, t, mode=mode, backend="numpy", **kw)
    want, want_grad = _torch_overlap(x, t, mode=mode, **kw)
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12 * np.abs(want_grad).max())
    assert fl.LOSSES[name](x, t, mode=mode, backend="numpy", **kw) == value


def test_per_sample_weights_match_torch():
    x, t = _case("multiclass")
    w = np.array([0.5, 2.0, 0.0])
    value, grad = fl.dice.value_and_grad(x, t, per_sample=True, sample_weight=w, backend="numpy")
    want, want_grad = _torch_overlap(x, t, per_sample=True, sample_weight=w)
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, atol=1e-15)
    assert not grad[2].any()  # a sample of weight 0 has no gradient


def test_hand_table():
    # binary, probabilities [0.5, 0.5] against [1, 0]: I = 0.5, P = 1, Y = 1
    x, y = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    assert fl.dice(x, y, mode="binary", from_logits=False) == pytest.approx(0.5, rel=1e-15)
    # tversky alpha = 1, beta = 0: 1 - I / (I + FP) = 1 - 0.5 / 1
    assert fl.tversky(x, y, mode="binary", from_logits=False, alpha=1.0, beta=0.0) == pytest.approx(0.5, rel=1e-15)
    # smooth 1: 1 - 1.5 / (0.5 + 0.5 (0.5 + 0.5) + 1) = 1 - 1.5 / 2
    assert fl.dice(x, y, mode="binary", from_logits=False, smooth=1.0) == pytest.approx(0.25, rel=1e-15)
    # dI/dp: 1 below the target, 0 above, 1/2 at a tie (torch's sign(0) = 0): p = y = [1, 0]
    g = fl.dice.grad(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), mode="binary", from_logits=False)
    # I = P = Y = den = 1: ds/dI = 1/den - I (1 - alpha - beta) / den^2 = 1, ds/dP = -I alpha / den^2 = -1/2;
    # dl/dp_j = -(dI/dp_j - 1/2) = 0 at both ties (with dI/dp = y it would be [-1/2, 1/2])
    np.testing.assert_array_equal(g, [[0.0, 0.0]])
    g = fl.dice.grad(x, y, mode="binary", from_logits=False)
    # I = 0.5, den = 1: ds/dP = -0.25, dl/dp_j = -(dI/dp_j - 0.25)
    np.testing.assert_allclose(g, [[-0.75, 0.25]], rtol=1e-15)


def test_absent_class_counts_in_the_mean_with_zero():
    # class 2 has no true pixel: its loss is masked to 0 but it stays in the mean over C (smp's choice)
    x = np.zeros((1, 3, 4))
    t = np.array([[0, 0, 1, 1]])
    per_class = fl.dice(x, t, reduction="none")
    assert per_class[2] == 0 and per_class[0] > 0
    assert fl.dice(x, t) == pytest.approx(per_class.sum() / 3, rel=1e-15)
    # on probabilities (no softmax coupling the classes) the absent class has no gradient
    assert not fl.dice.grad(np.full((1, 3, 4), 0.3), t, from_logits=False)[0, 2].any()


@pytest.mark.parametrize("name", OVERLAP)
def test_reductions_agree(name):
    x, t = _case("multiclass")
    kw = dict(per_sample=True, class_weights=np.array([1.0, 2.0, 0.0, 1.0]))
    none, g_none = fl.LOSSES[name].value_and_grad(x, t, reduction="none", **kw)
    total, g_sum = fl.LOSSES[name].value_and_grad(x, t, reduction="sum", **kw)
    mean, g_mean = fl.LOSSES[name].value_and_grad(x, t, **kw)
    assert none.shape == (3, 4) and none.dtype == x.dtype
    assert total == pytest.approx(none.sum(), rel=1e-13)
    assert mean == pytest.approx(total / (3 * 4.0), rel=1e-13)
    np.testing.assert_allclose(g_none, g_sum, rtol=0, atol=0)
    out = np.empty_like(x)
    value, g = fl.LOSSES[name].value_and_grad(x, t, grad_out=out, **kw)  # the caller's buffer, filled
    assert g is out and value == mean
    np.testing.assert_array_equal(out, g_mean)
    np.testing.assert_allclose(g_mean * 12.0, g_sum, rtol=1e-12, atol=1e-15 * np.abs(g_sum).max())


def test_float32_within_documented_tolerance():
    x, t = _case("multiclass", shape=(2, 5, 16, 16), seed=3)
    x32 = x.astype(np.float32)
    value, grad = fl.tversky.value_and_grad(x32, t, alpha=0.3, beta=0.7)
    assert grad.dtype == np.float32
    want, want_grad = _torch_overlap(x32.astype(np.float64), t, alpha=0.3, beta=0.7)
    # sums accumulate in float64; the probabilities and the gradient are float32 in the compiled kernels
    assert value == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


def test_bad_inputs_are_refused_clearly():
    x, t = _case("multiclass")
    bad = t.copy()
    bad[1, 2, 3] = 4
    with pytest.raises(ValueError, match=r"target: label 4 at index \(1, 2, 3\) is out of range"):
        fl.dice(x, bad)
    bad[1, 2, 3] = -1
    with pytest.raises(ValueError, match="out of range"):
        fl.dice(x, bad, ignore_index=255)
    with pytest.raises(TypeError, match="integer class indices"):
        fl.dice(x, t.astype(np.float64))
    with pytest.raises(ValueError, match="shape without the class axis"):
        fl.dice(x, t[:, :2])
    with pytest.raises(ValueError, match="needs per_sample=True"):
        fl.dice(x, t, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="needs\\s+gamma=1"):
        fl.tversky(x, t, gamma=2.0, reduction="sum")
    with pytest.raises(ValueError, match="one weight per class"):
        fl.dice(x, t, class_weights=np.ones(3))
    with pytest.raises(ValueError, match="class_weights needs"):
        fl.dice(x, np.zeros_like(x), mode="binary", class_weights=np.ones(4))
    with pytest.raises(TypeError, match="no Hessian"):
        fl.dice.grad_hess(x, t)
    with pytest.raises(TypeError, match="mode"):
        fl.dice(x, t, mode="multi")
    with pytest.raises(ValueError, match="no classes"):
        fl.dice(np.zeros((2, 0, 3)), np.full((2, 3), 255), ignore_index=255)
    # probabilities and masks outside [0, 1]: the ratio would be meaningless (a dice loss of 2.7e7, say)
    probs = np.full(x.shape, 0.25)
    probs[0, 1, 2, 3] = -1.0
    with pytest.raises(ValueError, match=r"dice: input must lie in \[0, 1\], got -1.0 at index \(0, 1, 2, 3\)"):
        fl.dice(probs, t, from_logits=False)
    masks = (np.random.default_rng(0).random(x.shape) < 0.5).astype(np.float64)
    masks[1, 0, 0, 2] = 5.0
    for mode in ("multilabel", "binary"):
        with pytest.raises(ValueError, match=r"tversky: target must lie in \[0, 1\], got 5.0 at index \(1, 0, 0, 2\)"):
            fl.tversky(x, masks, mode=mode)
    # pixels marked ignore_index may lie outside [0, 1]; any other pixel there is still refused
    masks[1, 0, 0, 2] = -1.0
    masks[0, 2, 1, 1] = -1.0
    fl.tversky(x, masks, mode="multilabel", ignore_index=-1)
    masks[0, 0, 1, 0] = -0.5
    with pytest.raises(ValueError, match=r"tversky: target must lie in \[0, 1\], got -0.5 at index \(0, 0, 1, 0\)"):
        fl.tversky(x, masks, mode="multilabel", ignore_index=-1)
    before = x.copy()
    fl.dice.value_and_grad(x, t)
    np.testing.assert_array_equal(x, before)


# --- every host backend against the reference ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", [b for b in HOST_BACKENDS if b != "numpy"])
def test_backends_match_reference(backend, dtype):
    reason = backend_skip_reason(backend)
    if reason or not supported(backend, "dice", dtype):
        pytest.skip(reason or f"{backend} does not implement the overlap losses")
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for name, mode, kw in VARIANTS:
        # 70 pixels: more than one block of the kernels when C = 4 (blocks of BLOCK // C pixels), odd tails
        x, t = _case(mode, shape=(3, 4, 7, 10) if mode != "binary" else (3, 5, 7, 10), seed=11,
                     ignore=kw.get("ignore_index"))
        if not kw.get("from_logits", True):
            x = np.random.default_rng(12).random(x.shape)
        x = x.astype(dtype)
        want, want_grad = fl.LOSSES[name].value_and_grad(x, t, mode=mode, backend="numpy", **kw)
        value, grad = fl.LOSSES[name].value_and_grad(x, t, mode=mode, backend=backend, **kw)
        assert grad.dtype == dtype
        assert value == pytest.approx(want, rel=rtol), (name, mode, kw)
        np.testing.assert_allclose(grad, want_grad, rtol=50 * rtol, atol=rtol * np.abs(want_grad).max(),
                                   err_msg=f"{name} {mode} {kw}")


@pytest.mark.parametrize("backend", [b for b in HOST_BACKENDS if b != "numpy"])
def test_backends_are_thread_count_independent(backend):
    reason = backend_skip_reason(backend)
    if reason or not supported(backend, "dice", np.float32):
        pytest.skip(reason or f"{backend} does not implement the overlap losses")
    x, t = _case("multiclass", shape=(2, 3, 256, 300), seed=13)  # above the kernels' parallel threshold
    x = x.astype(np.float32)
    saved = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        one = fl.tversky.value_and_grad(x, t, alpha=0.3, beta=0.7, backend=backend)
        fl.set_num_threads(2)
        two = fl.tversky.value_and_grad(x, t, alpha=0.3, beta=0.7, backend=backend)
    finally:
        fl.set_num_threads(saved)
    assert one[0] == two[0]
    np.testing.assert_array_equal(one[1], two[1])


def test_cpp_binding_checks_before_touching_memory():
    from fusedloss import _core

    if not hasattr(_core, "overlap_sums"):
        pytest.skip("the extension was built without the overlap kernels")
    x = np.zeros(2 * 3 * 4)
    labels = np.zeros(2 * 4, np.int64)
    sums = np.empty(2 * 3 * 3)
    labels[5] = 3
    with pytest.raises(ValueError, match=r"labels\[5\] = 3 is out of range: class indices must lie in \[0, 3\)"):
        _core.overlap_sums(2, x, labels, None, 2, 3, 4, False, 0, sums, 1)
    _core.overlap_sums(2, x, labels, None, 2, 3, 4, True, 3, sums, 1)  # 3 is ignore_index: kept out, fine
    labels[5] = -1
    with pytest.raises(ValueError, match="or equal ignore_index 3"):
        _core.overlap_sums(2, x, labels, None, 2, 3, 4, True, 3, sums, 1)
    labels[5] = 0
    with pytest.raises(ValueError, match="x must have 30 elements, got 24"):
        _core.overlap_sums(2, x, labels, None, 2, 3, 5, False, 0, sums, 1)
    with pytest.raises(ValueError, match="exactly one of labels"):
        _core.overlap_sums(1, x, labels, x, 2, 3, 4, False, 0, sums, 1)
    with pytest.raises(ValueError, match="N must be >= 0"):
        _core.overlap_sums(2, x, labels, None, -2, 3, 4, False, 0, sums, 1)
    none = np.zeros(0)  # C = 0: nothing to read, the sums stay empty (the softmax must not read a first class)
    _core.overlap_sums(2, none, np.full(8, 9, np.int64), None, 2, 0, 4, True, 9, none, 1)
    with pytest.raises(TypeError, match="coef must be a C-contiguous numpy array of dtype float64"):
        _core.overlap_grad(2, x, labels, None, 2, 3, 4, False, 0, np.zeros(12, np.float32), np.empty(24), 1)
    with pytest.raises(ValueError, match="grad overlaps an input"):
        _core.overlap_grad(2, x, labels, None, 2, 3, 4, False, 0, np.zeros(12), x, 1)
    with pytest.raises(ValueError, match="sums is read-only"):
        ro = np.empty(18)
        ro.flags.writeable = False
        _core.overlap_sums(2, x, labels, None, 2, 3, 4, False, 0, ro, 1)


@pytest.mark.cuda
def test_cuda_matches_reference():
    reason = backend_skip_reason("cuda")
    if reason:
        pytest.skip(reason)
    from numba import cuda

    for name, mode, kw in VARIANTS[::2] + VARIANTS[1::4]:
        x, t = _case(mode, shape=(2, 4, 3, 5) if mode != "binary" else (2, 5, 3), seed=14,
                     ignore=kw.get("ignore_index"))
        if not kw.get("from_logits", True):
            x = np.random.default_rng(15).random(x.shape)
        want, want_grad = fl.LOSSES[name].value_and_grad(x, t, mode=mode, backend="numpy", **kw)
        value, grad = fl.LOSSES[name].value_and_grad(cuda.to_device(x), cuda.to_device(t), mode=mode, **kw)
        assert value == pytest.approx(want, rel=1e-12), (name, mode, kw)
        np.testing.assert_allclose(grad.copy_to_host(), want_grad, rtol=1e-10, atol=1e-13 * np.abs(want_grad).max())
    x, t = _case("multiclass", shape=(2, 4, 3, 5), seed=16)
    terms = fl.dice(cuda.to_device(x), t, per_sample=True, reduction="none")
    np.testing.assert_allclose(terms.copy_to_host(), fl.dice(x, t, per_sample=True, reduction="none"), rtol=1e-12)


# --- fusedloss.torch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,mode,kw", VARIANTS[1::2])
def test_torch_forms_match_torch_autograd(name, mode, kw):
    import fusedloss.torch as ft

    x, t = _args(mode, kw, seed=5)
    xt = torch.tensor(x, requires_grad=True)
    fn = ft.FUNCTIONAL[name]
    value = fn(xt, torch.tensor(t), mode, **kw)
    value.backward()
    want, want_grad = _torch_overlap(x, t, mode=mode, **kw)
    assert value.dtype == torch.float64 and value.item() == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), want_grad, rtol=1e-10, atol=1e-12 * np.abs(want_grad).max())
    # the module: smp's positional order (mode, classes, log_loss, from_logits, smooth, ignore_index, eps, ...)
    module = ft.MODULES[name](mode, None, kw.get("log_loss", False), kw.get("from_logits", True),
                              **{k: v for k, v in kw.items() if k not in ("log_loss", "from_logits")})
    assert module(torch.tensor(x), torch.tensor(t)).item() == value.item()


@pytest.mark.parametrize("per_sample", [False, True])
def test_torch_reduction_none_backward_with_grad_output(per_sample):
    import fusedloss.torch as ft

    x, t = _case("multiclass", seed=6)
    go = np.random.default_rng(7).normal(size=(3, 4) if per_sample else (4,))
    xt = torch.tensor(x, requires_grad=True)
    terms = ft.tversky_loss(xt, torch.tensor(t), alpha=0.2, beta=0.8, per_sample=per_sample, reduction="none")
    terms.backward(torch.tensor(go))
    want, want_grad = _torch_overlap(x, t, alpha=0.2, beta=0.8, per_sample=per_sample, reduction="none",
                                     grad_output=go)
    np.testing.assert_allclose(terms.detach().numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), want_grad, rtol=1e-10, atol=1e-12 * np.abs(want_grad).max())


def test_torch_classes_and_float32():
    import fusedloss.torch as ft

    x, t = _case("multiclass", shape=(2, 4, 8, 8), seed=8)
    cw = np.array([1.0, 2.0, 3.0, 4.0])
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    # smp: loss[classes] weighted by class_weights[classes]; class 1 listed twice counts twice
    value = ft.DiceLoss("multiclass", classes=[1, 3, 1], class_weights=torch.tensor(cw))(xt, torch.tensor(t))
    value.backward()
    want, want_grad = _torch_overlap(x.astype(np.float32).astype(np.float64), t,
                                     class_weights=np.array([0.0, 4.0, 0.0, 4.0]))
    assert value.dtype == torch.float32 and value.item() == pytest.approx(want, rel=1e-6)
    assert xt.grad.dtype == torch.float32
    np.testing.assert_allclose(xt.grad.numpy(), want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


def test_degenerate_weights_give_nan_as_torch():
    # every class weight 0: 0 / 0 (smp: nan), not an exception; a zero mean with gamma < 1: torch's pow backward
    x, t = _case("multiclass")
    value, grad = fl.dice.value_and_grad(x, t, class_weights=0.0)
    want, _ = _torch_overlap(x, t, class_weights=np.zeros(4))
    assert np.isnan(value) and np.isnan(want) and np.isnan(grad).all()
    perfect = np.where(np.arange(4)[None, :, None, None] == t[:, None], 1.0, 0.0)
    value, grad = fl.tversky.value_and_grad(perfect, t, from_logits=False, gamma=0.5)
    want, want_grad = _torch_overlap(perfect, t, from_logits=False, gamma=0.5)
    assert value == want == 0.0
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(want_grad))
