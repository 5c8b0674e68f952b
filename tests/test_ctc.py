"""CTC: the hand table, the reference against finite differences, every backend against PyTorch in float64,
bad inputs, thread-count invariance, float32 accuracy, memory, and the torch module.

Oracles in layers: a hand-computed table (T <= 3) checks the reference and every backend; finite differences
check the reference's gradient; ``torch.nn.functional.ctc_loss`` (with log_softmax inside torch's graph for
``inputs="logits"``) checks every backend in float64 to 1e-10 relative (gradients: 1e-10 of their largest
element, absolutely).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference_ctc as R
from conftest import HOST_BACKENDS, require_backend, require_support

BACKENDS = HOST_BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    name = require_backend(request.param)
    require_support(name, "ctc")
    return name


# --- the hand table --------------------------------------------------------------------------------------

L2 = math.log(2.0)
# (name, probabilities (T, C), labels, blank, loss, gradient (T, C) with respect to log-probabilities in
# PyTorch's convention p - gamma). Worked out by listing the alignments.
HAND = [
    ("one frame, one label", [[0.5, 0.5]], [1], 0, L2, [[0.5, -0.5]]),
    # alignments 11, 01, 10: P = 3/4; frame occupancies of class 1: 2/3 and 2/3
    ("two frames, one label", [[0.5, 0.5], [0.5, 0.5]], [1], 0, -math.log(0.75),
     [[1 / 6, -1 / 6], [1 / 6, -1 / 6]]),
    ("empty target", [[0.5, 0.5], [0.5, 0.5]], [], 0, 2 * L2, [[-0.5, 0.5], [-0.5, 0.5]]),
    # repeated label at the minimal length: the only alignment is 1 0 1
    ("repeat, T minimal", [[0.5, 0.5]] * 3, [1, 1], 0, 3 * L2, [[0.5, -0.5], [-0.5, 0.5], [0.5, -0.5]]),
    ("two labels, one alignment", [[0.2, 0.5, 0.3], [0.1, 0.3, 0.6]], [1, 2], 0, -math.log(0.3),
     [[0.2, -0.5, 0.3], [0.1, 0.3, -0.4]]),
    # blank = C - 1; alignments 00 (1/8), 20 (1/16), 02 (1/4): P = 7/16
    ("blank last", [[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]], [0], 2, -math.log(7 / 16),
     [[0.5 - 6 / 7, 0.25, 0.25 - 1 / 7], [0.25 - 3 / 7, 0.25, 0.5 - 4 / 7]]),
]


@pytest.mark.parametrize("row", HAND, ids=[r[0] for r in HAND])
def test_reference_matches_hand_table(row):
    _, probs, labels, blank, loss, grad = row
    lp = np.log(np.array(probs))
    value, gamma = R.ctc_sequence(lp, labels, blank)
    assert value == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(np.exp(lp) - gamma, grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("row", HAND, ids=[r[0] for r in HAND])
def test_backends_match_hand_table(row, backend):
    _, probs, labels, blank, loss, grad = row
    lp = np.log(np.array(probs))[:, None, :]  # (T, 1, C)
    T = lp.shape[0]
    for targets in (np.array([labels], dtype=np.int64).reshape(1, -1), np.array(labels, dtype=np.int32)):
        v, g = fl.ctc.value_and_grad(lp, targets, [T], [len(labels)], blank=blank, inputs="log_probs",
                                     reduction="sum", backend=backend)
        assert v == pytest.approx(loss, rel=1e-13)
        np.testing.assert_allclose(g[:, 0], grad, rtol=1e-12, atol=1e-14)


def test_infeasible_by_hand(backend):
    lp = np.log(np.full((1, 1, 2), 0.5))  # one frame cannot emit "1 1"
    v, g = fl.ctc.value_and_grad(lp, [[1, 1]], [1], [2], inputs="log_probs", reduction="none", backend=backend)
    assert v[0] == np.inf and np.isnan(g).all()
    v, g = fl.ctc.value_and_grad(lp, [[1, 1]], [1], [2], inputs="log_probs", reduction="none", zero_infinity=True,
                                 backend=backend)
    assert v[0] == 0.0 and (g == 0).all()

    lp[0, 0, 1] = np.inf  # a log-probability of +inf (log-likelihood +inf): NaN, as torch, not "no alignment"
    v, g = fl.ctc.value_and_grad(lp, [[1]], [1], [1], inputs="log_probs", reduction="none", zero_infinity=True,
                                 backend=backend)
    assert np.isnan(v[0]) and np.isnan(g).all()


# --- the reference against finite differences ------------------------------------------------------------


@pytest.mark.parametrize("inputs", ["logits", "log_probs"])
def test_reference_gradient_matches_finite_differences(inputs):
    rng = np.random.default_rng(3)
    T, N, C = 6, 2, 4
    x = rng.normal(size=(T, N, C))
    targets, il, tl = np.array([[1, 1, 2], [3, 0, 0]]), np.array([6, 5]), np.array([3, 1])
    kw = dict(reduction="mean", blank=0, inputs=inputs)
    _, g = R.reduce_ctc(x, targets, il, tl, **kw)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (R.reduce_ctc(xp, targets, il, tl, **kw)[0] - R.reduce_ctc(xm, targets, il, tl, **kw)[0]) / (2 * h)
    if inputs == "logits":
        np.testing.assert_allclose(g, num, atol=1e-8)
    else:
        # PyTorch's convention: exp(lp) - gamma; the true partial derivative is -gamma (independent log-probs)
        coef = np.array([1 / 3, 1.0]) / 2
        mask = (np.arange(T)[:, None] < il[None, :])[..., None]
        np.testing.assert_allclose(g - np.exp(x) * coef[None, :, None] * mask, num, atol=1e-8)


def test_backend_gradient_matches_finite_differences(backend):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 3, 5))
    args = (np.array([1, 2, 2, 4, 3]), np.array([5, 4, 5]), np.array([2, 2, 1]))
    value, g = fl.ctc.value_and_grad(x, *args, backend=backend, reduction="sum")
    h = 1e-6
    for idx in [(0, 0, 1), (2, 1, 2), (4, 2, 0), (4, 1, 3), (3, 2, 4)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num = (fl.ctc(xp, *args, backend=backend, reduction="sum") - fl.ctc(xm, *args, backend=backend,
                                                                            reduction="sum")) / (2 * h)
        assert g[idx] == pytest.approx(num, abs=1e-8), idx


# --- every backend against PyTorch, float64 --------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _torch_ctc(x, targets, il, tl, *, blank, reduction, zero_infinity, inputs, batch_first):
    """PyTorch's value and gradient with respect to x (log_softmax inside torch's graph for logits)."""
    t = _torch()
    xt = t.tensor(x, requires_grad=True)
    z = xt.transpose(0, 1) if batch_first else xt
    lp = z.log_softmax(2) if inputs == "logits" else z
    out = t.nn.functional.ctc_loss(lp, t.as_tensor(np.asarray(targets, dtype=np.int64)), t.as_tensor(il),
                                   t.as_tensor(tl), blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    (g,) = t.autograd.grad(out.sum(), xt)
    return out.detach().numpy(), g.numpy()


def _case(seed, *, T=None, N=None, C=None, blank="first", repeats=False, empty=False, minimal=False,
          infeasible=False):
    rng = np.random.default_rng(seed)
    T = T or int(rng.integers(4, 30))
    N = N or int(rng.integers(1, 6))
    C = C or int(rng.integers(3, 9))
    b = 0 if blank == "first" else C - 1
    labels = [k for k in range(C) if k != b]
    smax = max(1, min(T // 2, 8))
    tl = rng.integers(1, smax + 1, size=N)
    if empty:
        tl[0] = 0
    targets = rng.choice(labels, size=(N, int(tl.max()) + 2))  # padded wider than needed
    if repeats:
        targets[:, 1] = targets[:, 0]
        tl = np.maximum(tl, 2)
        targets = targets[:, : max(targets.shape[1], int(tl.max()))]
    il = rng.integers(1, T + 1, size=N)
    il[0] = T
    need = tl + np.array([np.count_nonzero(row[1:n] == row[: n - 1]) for row, n in zip(targets, tl)])
    il = np.maximum(il, np.minimum(need, T))
    if minimal:
        il = np.minimum(need, T)
    if infeasible:
        il[-1] = max(0, int(need[-1]) - 1)
    x = rng.normal(size=(T, N, C)) * 3
    return x, targets, il, tl, b


CASES = {
    "random": dict(),
    "blank_last": dict(blank="last"),
    "repeats": dict(repeats=True),
    "empty_target": dict(empty=True),
    "minimal_T": dict(minimal=True, repeats=True),
    "infeasible": dict(infeasible=True, repeats=True),
    "long": dict(T=120, N=3, C=12),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_float64(backend, case, reduction):
    x, targets, il, tl, blank = _case(list(CASES).index(case), **CASES[case])
    rng = np.random.default_rng(7)
    for seq, zero_infinity in enumerate((False, True)):
        inputs = ("logits", "log_probs")[seq]
        batch_first = bool(rng.integers(2))
        xin = R.log_softmax(x) if inputs == "log_probs" else x
        xin = np.ascontiguousarray(xin.transpose(1, 0, 2)) if batch_first else xin
        ev, eg = _torch_ctc(xin, targets, il, tl, blank=blank, reduction=reduction, zero_infinity=zero_infinity,
                            inputs=inputs, batch_first=batch_first)
        concat = np.concatenate([row[:n] for row, n in zip(targets, tl)])
        for tg in (targets, concat):  # padded and concatenated
            v, g = fl.ctc.value_and_grad(xin, tg, il, tl, blank=blank, reduction=reduction,
                                         zero_infinity=zero_infinity, inputs=inputs, batch_first=batch_first,
                                         backend=backend)
            np.testing.assert_allclose(v, ev, rtol=1e-10, atol=0, err_msg=f"{backend} {case} value")
            fin = np.isfinite(eg)
            assert np.array_equal(np.isnan(g), np.isnan(eg)), f"{backend} {case}: NaN pattern differs"
            scale = max(float(np.abs(eg[fin]).max(initial=0.0)), 1e-300)
            np.testing.assert_allclose(g[fin], eg[fin], rtol=1e-10, atol=1e-10 * scale, err_msg=f"{backend} {case}")
            assert np.array_equal(fl.ctc(xin, tg, il, tl, blank=blank, reduction=reduction,
                                         zero_infinity=zero_infinity, inputs=inputs, batch_first=batch_first,
                                         backend=backend), v)


def test_sample_weight_matches_reference(backend):
    x, targets, il, tl, blank = _case(11, N=5)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0])
    for reduction in ("mean", "sum", "none"):
        ev, eg = R.reduce_ctc(x, targets, il, tl, reduction=reduction, sample_weight=w, blank=blank)
        v, g = fl.ctc.value_and_grad(x, targets, il, tl, reduction=reduction, sample_weight=w, blank=blank,
                                     backend=backend)
        np.testing.assert_allclose(v, ev, rtol=1e-12)
        np.testing.assert_allclose(g, eg, rtol=1e-12, atol=1e-15)


def test_grad_out_and_grad(backend):
    x, targets, il, tl, blank = _case(12)
    v, g = fl.ctc.value_and_grad(x, targets, il, tl, blank=blank, backend=backend)
    buf = np.full_like(x, 7.0)
    v2, g2 = fl.ctc.value_and_grad(x, targets, il, tl, blank=blank, grad_out=buf, backend=backend)
    assert g2 is buf and v2 == v and np.array_equal(buf, g)
    assert np.array_equal(fl.ctc.grad(x, targets, il, tl, blank=blank, backend=backend), g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_and_integer_types(backend, dtype):
    x, targets, il, tl, blank = _case(13, N=3)
    ev, eg = R.reduce_ctc(x.astype(dtype), targets, il, tl, blank=blank)
    for it in (np.int8, np.uint16, np.int32, np.int64):
        v, g = fl.ctc.value_and_grad(x.astype(dtype), targets.astype(it), il.astype(it), tl.astype(it), blank=blank,
                                     backend=backend)
        assert g.dtype == dtype and g.shape == x.shape
        tol = 1e-5 if dtype == np.float32 else 1e-12
        assert v == pytest.approx(ev, rel=tol)
        np.testing.assert_allclose(g, eg, rtol=tol, atol=tol)


def test_empty_batch_and_zero_frames(backend):
    x = np.zeros((4, 0, 3))
    v, g = fl.ctc.value_and_grad(x, np.zeros((0, 2), np.int64), [], [], reduction="sum", backend=backend)
    assert v == 0.0 and g.shape == x.shape
    x = np.random.default_rng(0).normal(size=(3, 2, 3))
    v, g = fl.ctc.value_and_grad(x, [[1], [2]], [0, 3], [0, 1], reduction="none", backend=backend)
    assert v[0] == 0.0 and (g[:, 0] == 0).all()


# --- bad inputs ------------------------------------------------------------------------------------------


def _ok():
    x = np.random.default_rng(0).normal(size=(6, 2, 4))
    return x, np.array([[1, 2], [3, 3]]), np.array([6, 5]), np.array([2, 2])


def _raises(exc, *words):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{w})" for w in words))


BAD = [
    ("2-D logits", lambda x, t, i, l: (x[:, 0], t, i, l, {}), ValueError, ("3-D",)),
    ("int logits", lambda x, t, i, l: (x.astype(np.int64), t, i, l, {}), TypeError, ("float",)),
    ("float targets", lambda x, t, i, l: (x, t.astype(float), i, l, {}), TypeError, ("targets", "integer")),
    ("label too big", lambda x, t, i, l: (x, t + 1, i, l, {}), ValueError, ("label 4", r"\[0, 4\)")),
    ("label negative", lambda x, t, i, l: (x, -t, i, l, {}), ValueError, ("label -1",)),
    ("label is blank", lambda x, t, i, l: (x, t, i, l, {"blank": 3}), ValueError, ("blank",)),
    ("blank out of range", lambda x, t, i, l: (x, t, i, l, {"blank": 4}), ValueError, ("blank", r"\[0, 4\)")),
    ("negative blank", lambda x, t, i, l: (x, t, i, l, {"blank": -1}), ValueError, ("blank",)),
    ("input length > T", lambda x, t, i, l: (x, t, i + 1, l, {}), ValueError, ("input_lengths", "7")),
    ("negative input length", lambda x, t, i, l: (x, t, -i, l, {}), ValueError, ("input_lengths",)),
    ("target length > S", lambda x, t, i, l: (x, t, i, l + 1, {}), ValueError, ("target_lengths", "S = 2")),
    ("negative target length", lambda x, t, i, l: (x, t, i, -l, {}), ValueError, ("target_lengths", "negative")),
    ("lengths wrong count", lambda x, t, i, l: (x, t, i[:1], l, {}), ValueError, ("input_lengths", "N = 2")),
    ("float lengths", lambda x, t, i, l: (x, t, i.astype(float), l, {}), TypeError, ("input_lengths", "integer")),
    ("concatenated too short", lambda x, t, i, l: (x, t.reshape(-1)[:3], i, l, {}), ValueError,
     ("sum\\(target_lengths\\) = 4", "got 3")),
    ("padded wrong N", lambda x, t, i, l: (x, t[:1], i, l, {}), ValueError, ("padded", "N = 2")),
    # lengths whose int64 sum wraps around
    ("lengths that wrap around", lambda x, t, i, l: (x, t.reshape(-1)[:2], i, np.array([2**63 - 1, 2]), {}),
     ValueError, ("target_lengths\\[0\\]", "exceeds the 2 labels")),
    ("3-D targets", lambda x, t, i, l: (x, t[None], i, l, {}), ValueError, ("targets",)),
    ("bad reduction", lambda x, t, i, l: (x, t, i, l, {"reduction": "avg"}), ValueError, ("reduction", "avg")),
    ("bad inputs", lambda x, t, i, l: (x, t, i, l, {"inputs": "probs"}), TypeError, ("inputs", "probs")),
    ("unknown keyword", lambda x, t, i, l: (x, t, i, l, {"ignore_index": 0}), TypeError, ("ignore_index", "blank")),
    ("weight shape", lambda x, t, i, l: (x, t, i, l, {"sample_weight": np.ones(3)}), ValueError, ("sample_weight",)),
    ("negative weight", lambda x, t, i, l: (x, t, i, l, {"sample_weight": np.array([1.0, -1.0])}), ValueError,
     ("sample_weight", ">= 0")),
    ("complex weight", lambda x, t, i, l: (x, t, i, l, {"sample_weight": np.array([1.0, 2.0j])}), TypeError,
     ("sample_weight", "real")),
    ("text weight", lambda x, t, i, l: (x, t, i, l, {"sample_weight": np.array(["1", "2"])}), TypeError,
     ("sample_weight", "numeric")),
]


@pytest.mark.parametrize("row", BAD, ids=[r[0] for r in BAD])
def test_bad_inputs_raise_before_any_kernel(row, backend):
    _, make, exc, words = row
    x, t, i, l = _ok()
    args = make(x, t, i, l)
    kept = [np.array(a, copy=True) for a in args[:4]]
    with _raises(exc, "ctc", *words):
        fl.ctc.value_and_grad(*args[:4], backend=backend, **args[4])
    for before, after in zip(kept, args[:4]):
        assert np.array_equal(before, after)  # inputs are never modified


def test_ragged_target_lists(backend):
    """A list of label sequences of different lengths (one per sequence, its first target_lengths[n] labels
    counting) gives the loss and gradient of the padded form; malformed lists are refused by name."""
    x, targets, il, tl, blank = _case(21, N=3)
    tl[0] = 0  # an empty target too
    want_v, want_g = fl.ctc.value_and_grad(x, targets, il, tl, blank=blank, backend=backend)
    ragged = [list(targets[n, : tl[n] + n]) for n in range(3)]  # lengths tl[n] + n: ragged, longer than needed
    assert len({len(r) for r in ragged}) > 1
    for form in (ragged, tuple(np.array(r, np.int32) for r in ragged)):
        v, g = fl.ctc.value_and_grad(x, form, il, tl, blank=blank, backend=backend)
        assert v == want_v
        np.testing.assert_array_equal(g, want_g)
    with _raises(ValueError, "ctc", "ragged targets", "N = 3", "got 2"):
        fl.ctc(x, [ragged[0], ragged[1] + [1]], il, tl, blank=blank, backend=backend)
    short = [ragged[0], ragged[1], ragged[2][: tl[2] - 1]]
    with _raises(ValueError, "ctc", r"target_lengths\[2\]", "exceeds", r"targets\[2\]"):
        fl.ctc(x, short, il, tl, blank=blank, backend=backend)
    with _raises(ValueError, "ctc", r"targets\[1\]", "1-D sequence"):
        fl.ctc(x, [ragged[0], [ragged[1], ragged[1]], ragged[2]], il, tl, blank=blank, backend=backend)
    with _raises(TypeError, "ctc", r"targets\[0\]", "integer"):
        fl.ctc(x, [[1.5] * 20, ragged[1], ragged[2]], il, tl, blank=blank, backend=backend)


def test_bad_grad_out(backend):
    x, t, i, l = _ok()
    with _raises(ValueError, "grad_out", "shape"):
        fl.ctc.value_and_grad(x, t, i, l, grad_out=np.empty((6, 2, 3)), backend=backend)
    with _raises(TypeError, "grad_out must have the dtype of logits"):
        fl.ctc.value_and_grad(x, t, i, l, grad_out=np.empty(x.shape, np.float32), backend=backend)
    with _raises(TypeError, "ctc: logits must be a floating array"):
        fl.ctc.value_and_grad(x.astype(np.complex128), t, i, l, backend=backend)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with _raises(ValueError, "grad_out", "read-only"):
        fl.ctc.value_and_grad(x, t, i, l, grad_out=ro, backend=backend)
    with _raises(ValueError, "grad_out", "overlap"):
        fl.ctc.value_and_grad(x, t, i, l, grad_out=x, backend=backend)
    with _raises(ValueError, "C-contiguous"):
        fl.ctc.value_and_grad(x, t, i, l, grad_out=np.empty((2, 6, 4)).transpose(1, 0, 2), backend=backend)
    with _raises(TypeError, "Hessian"):
        fl.ctc.grad_hess(x, t, i, l)


def test_grad_out_never_writes_over_targets_lengths_or_weights(backend):
    x, t, i, l = _ok()
    buf = np.ones(x.size + 2)  # the weights, and a gradient buffer that starts on them
    w = buf[:2]
    tb = np.zeros(x.size)  # an int64 target buffer under a float64 gradient buffer
    tb.view(np.int64)[: t.size] = t.reshape(-1)
    targets = tb.view(np.int64)[: t.size].reshape(t.shape)
    for args, kw, what in (((x, t, i, l), {"sample_weight": w, "grad_out": buf[: x.size].reshape(x.shape)},
                            "sample_weight"),
                           ((x, targets, i, l), {"grad_out": tb.reshape(x.shape)}, "targets")):
        kept = [np.array(a, copy=True) for a in (*args, w)]
        with _raises(ValueError, "grad_out", f"shares memory with {what}"):
            fl.ctc.value_and_grad(*args, backend=backend, **kw)
        for before, after in zip(kept, (*args, w)):
            assert np.array_equal(before, after)


def test_weights_whose_sum_overflows_give_the_mean(backend):
    """"mean" is sum(w l) / sum(w), the same for w and w 2^-k: weights of 1e308 give the unweighted mean
    (no OverflowError from summing them), and the gradient of unit weights; a partial state keeps the plain
    sums, inf, as the other losses' states do."""
    x, t, i, l = _ok()
    w = np.full(2, 1e308)
    value, grad = fl.ctc.value_and_grad(x, t, i, l, sample_weight=w, backend=backend)
    want_value, want_grad = fl.ctc.value_and_grad(x, t, i, l, backend=backend)
    assert value == pytest.approx(want_value, rel=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)
    state = fl.ctc.partial(x, t, i, l, sample_weight=w, backend=backend)  # the plain sums (it merges with others)
    assert state.denominator == math.inf and state.sum == math.inf
    assert fl.ctc(x, t, i, l, sample_weight=w, reduction="sum", backend=backend) == math.inf


def test_frames_beyond_a_sequence_have_gradient_zero_whatever_its_factor(backend):
    """The contract: 0 on frames t >= input_lengths[n], even when the factor is NaN (a "mean" over weights that
    are all 0 is 0 / 0), on every backend alike."""
    x, t, i, l = _ok()
    g = fl.ctc.grad(x, t, i, l, sample_weight=np.zeros(2), backend=backend)
    assert np.all(g[5, 1] == 0.0) and np.isnan(g[:5]).all() and np.isnan(g[5, 0]).all()


def test_non_contiguous_and_nan_inputs(backend):
    x, t, i, l = _ok()
    xf = np.asfortranarray(x)
    assert fl.ctc(xf, t, i, l, backend=backend) == pytest.approx(fl.ctc(x, t, i, l, backend=backend), rel=1e-14)
    xn = x.copy()
    xn[0, 1, 2] = np.nan
    v = fl.ctc(xn, t, i, l, reduction="none", backend=backend)
    assert np.isfinite(v[0]) and np.isnan(v[1])


def test_cpp_binding_checks_indices_itself():
    """The compiled kernel never trusts its caller with an index."""
    require_backend("cpp")
    from fusedloss import _core

    x = np.zeros((2, 1, 3))
    loss = np.empty(1)
    one = np.ones(1)
    args = dict(T=2, N=1, C=3, batch_first=False, log_probs=False, offsets=np.zeros(1, np.int64),
                target_lengths=np.ones(1, np.int64), input_lengths=np.array([2]), blank=0, zero_infinity=False,
                gscale=one, loss_out=loss, grad_out=None, nthreads=1)
    for labels, word in ((np.array([3]), "label 3"), (np.array([0]), "blank"), (np.array([], np.int64), "labels")):
        with _raises(ValueError, word):
            _core.ctc(x, labels=labels, **args)
    with _raises(ValueError, "input_lengths"):
        _core.ctc(x, labels=np.array([1]), **{**args, "input_lengths": np.array([3])})


# --- threads, float32 accuracy, memory -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_thread_count_invariance(name):
    require_backend(name)
    rng = np.random.default_rng(5)
    T, N, C = 60, 24, 30
    x = rng.normal(size=(T, N, C)).astype(np.float32)
    tl = rng.integers(0, 20, size=N)
    targets = rng.integers(1, C, size=(N, 20))
    il = rng.integers(45, T + 1, size=N)
    results = []
    before = fl.get_num_threads()
    try:
        for threads in (1, 2):
            fl.set_num_threads(threads)
            results.append(fl.ctc.value_and_grad(x, targets, il, tl, backend=name))
    finally:
        fl.set_num_threads(before)
    (v1, g1), (v2, g2) = results
    assert v1 == v2  # bit-identical
    assert np.array_equal(g1, g2)


def test_float32_accuracy_long_sequence(backend):
    """float32 scores, T = 400, C = 1000: the recursions run in float64, so the loss is right to float32
    rounding of the inputs and the gradient to a few float32 ulp of its scale (README: the budget at
    T = 2000, C = 5000, measured by benchmarks/ctc.py --accuracy)."""
    if backend == "numpy":
        pytest.skip("the reference is the oracle here")
    rng = np.random.default_rng(6)
    T, N, C = 400, 2, 1000
    x = (rng.normal(size=(T, N, C)) * 2).astype(np.float32)
    targets = rng.integers(1, C, size=(N, 80))
    il, tl = np.array([400, 350]), np.array([80, 60])
    ev, eg = R.reduce_ctc(x.astype(np.float64), targets, il, tl, reduction="sum")
    v, g = fl.ctc.value_and_grad(x, targets, il, tl, reduction="sum", backend=backend)
    assert abs(v - ev) / ev < 1e-6
    assert np.abs(g - eg).max() < 1e-6


def test_cpp_memory_is_not_T_times_S():
    """Beyond the gradient the C++ kernel holds O(N S) plus, per thread, O(sqrt(T) S) (checkpointed alpha)
    once all of alpha would not fit its per-thread cap (2 MiB)."""
    require_backend("cpp")
    T, N, C, S = 3000, 2, 5, 150
    rng = np.random.default_rng(8)
    x = rng.normal(size=(T, N, C))
    targets = rng.integers(1, C, size=(N, S))
    v, g = fl.ctc.value_and_grad(x, targets, [T, T], [S, S], backend="cpp")
    peak = fl.ctc.last_scratch_bytes
    full_alpha = T * (2 * S + 3) * 8
    assert 0 < peak < full_alpha / 4, (peak, full_alpha)
    ev, eg = R.reduce_ctc(x, targets, [T, T], [S, S])
    assert v == pytest.approx(ev, rel=1e-12)
    np.testing.assert_allclose(g, eg, rtol=1e-9, atol=1e-13)


# --- registry and torch ----------------------------------------------------------------------------------


def test_registry_entry():
    entry = {d["name"]: d for d in fl.losses()}["ctc"]
    assert entry["kind"] == "sequence" and entry["differentiable"] and not entry["has_hessian"]
    assert entry["params"] == {"blank": 0, "zero_infinity": False, "batch_first": False, "inputs": "logits"}
    assert isinstance(fl.ctc, fl.Loss) and "ctc" in fl.__all__


def test_torch_module_is_a_drop_in():
    t = _torch()
    import fusedloss.torch as flt

    gen = t.Generator().manual_seed(0)
    T, N, C = 30, 5, 7
    x = t.randn(T, N, C, dtype=t.float64, generator=gen, requires_grad=True)
    targets = t.randint(1, C, (N, 8), generator=gen)
    il, tl = t.tensor([30, 25, 30, 20, 18]), t.tensor([8, 5, 0, 7, 3])
    for reduction in ("mean", "sum", "none"):
        for zi in (False, True):
            ref = t.nn.CTCLoss(reduction=reduction, zero_infinity=zi)(x.log_softmax(2), targets, il, tl)
            ours = flt.CTCLoss(reduction=reduction, zero_infinity=zi)(x.log_softmax(2), targets, il, tl)
            fused = flt.CTCLoss(reduction=reduction, zero_infinity=zi, inputs="logits")(x, targets, il, tl)
            w = t.rand(ref.shape, dtype=t.float64, generator=gen)
            (gr,) = t.autograd.grad((ref * w).sum(), x)
            for out in (ours, fused):
                assert out.dtype == ref.dtype and out.shape == ref.shape
                t.testing.assert_close(out, ref, rtol=1e-10, atol=0)
                (go,) = t.autograd.grad((out * w).sum(), x)
                t.testing.assert_close(go, gr, rtol=1e-10, atol=1e-12)
    assert flt.FUNCTIONAL["ctc"] is flt.ctc_loss and flt.MODULES["ctc"] is flt.CTCLoss


def test_torch_gradcheck_float64():
    t = _torch()
    import fusedloss.torch as flt

    gen = t.Generator().manual_seed(1)
    x = t.randn(6, 2, 4, dtype=t.float64, generator=gen, requires_grad=True)
    targets, il, tl = t.tensor([[1, 2], [3, 3]]), [6, 5], [2, 2]
    assert t.autograd.gradcheck(lambda z: flt.ctc_loss(z, targets, il, tl, inputs="logits", reduction="none"), (x,))
    assert t.autograd.gradcheck(lambda z: flt.ctc_loss(z.log_softmax(2), targets, il, tl), (x,))
    xb = x.detach().transpose(0, 1).contiguous().requires_grad_()
    assert t.autograd.gradcheck(lambda z: flt.ctc_loss(z, targets, il, tl, inputs="logits", batch_first=True), (xb,))
