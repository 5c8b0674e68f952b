"""Classification metrics from cross_entropy's pass (``metrics=``) and ``fusedloss.metrics.logit_metrics``.

Oracles: scikit-learn (accuracy_score, top_k_accuracy_score, log_loss) and an ECE written here from its
definition; the NumPy specification of the per-row arrays (``_logit_metrics.row_metrics``) for every backend's
kernel; the plain call for the value and gradient, which must keep their bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
import fusedloss.metrics as flm
from fusedloss import _logit_metrics
from fusedloss.backends import REGISTRY as BACKENDS

from conftest import DTYPES, HOST_BACKENDS, TOL, require_backend

ALL = ("accuracy", "top5", "nll", "entropy", "confidence", "ece15")
OPTIONS = [
    {},
    {"class_weight": "random"},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"confidence_penalty": 0.3},
    {"class_weight": "random", "label_smoothing": 0.2, "z_loss": 1e-4, "softcap": 8.0},
]


def _data(R=300, C=40, dtype=np.float64, seed=0, scale=2.0, ignore=0.1):
    """Tie-free logits (distinct values in every row), labels with a share of ignored rows (-100), weights."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(R, C)) * scale).astype(dtype)
    y = rng.integers(0, C, R)
    y[rng.uniform(size=R) < ignore] = -100
    w = rng.uniform(0.1, 2.0, R).astype(dtype)
    w[rng.uniform(size=R) < 0.05] = 0.0
    return x, y, w


def _params(options, C, seed=1):
    p = dict(options)
    if p.get("class_weight") == "random":
        p["class_weight"] = np.random.default_rng(seed).uniform(0.5, 2.0, C)
    return p


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece_from_definition(p, y, w, n_bins):
    """sum over equal-width confidence bins b of |acc_b - conf_b| * weight_b / total weight; bin b holds the
    confidences in [b/n, (b+1)/n), the last one 1 too."""
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    total = w.sum()
    ece = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inb = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        wb = w[inb].sum()
        if wb > 0:
            acc_b = np.sum(w[inb] * correct[inb]) / wb
            conf_b = np.sum(w[inb] * conf[inb]) / wb
            ece += abs(acc_b - conf_b) * wb / total
    return ece


def _backend(name):
    require_backend(name)
    return BACKENDS[name].load()


# --- against scikit-learn and the definitions ---------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_against_scikit_learn_and_definitions(backend, weighted):
    skm = pytest.importorskip("sklearn.metrics")
    _backend(backend)
    x, y, w = _data()
    sw = w if weighted else None
    v, g, m = fl.cross_entropy.value_and_grad(x, y, sample_weight=sw, metrics=ALL, backend=backend)
    keep = (y != -100) & ((w != 0) if weighted else True)
    xk, yk = x[keep], y[keep]
    wk = w[keep] if weighted else np.ones(keep.sum())
    C = x.shape[1]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(yk, xk.argmax(1), sample_weight=wk), rel=1e-12)
    assert m["top5"] == pytest.approx(skm.top_k_accuracy_score(yk, xk, k=5, labels=np.arange(C), sample_weight=wk),
                                      rel=1e-12)
    p = _softmax(xk)
    assert m["nll"] == pytest.approx(skm.log_loss(yk, p, labels=np.arange(C), sample_weight=wk), rel=1e-9)
    ent = -np.sum(p * np.log(p), axis=1)
    assert m["entropy"] == pytest.approx(np.sum(wk * ent) / wk.sum(), rel=1e-9)
    assert m["confidence"] == pytest.approx(np.sum(wk * p.max(1)) / wk.sum(), rel=1e-9)
    assert m["ece15"] == pytest.approx(ece_from_definition(p, yk, wk, 15), rel=1e-9, abs=1e-12)
    st = m.state
    assert st.count == int(keep.sum())
    assert st.weight == pytest.approx(wk.sum(), rel=1e-12)
    assert set(m) == set(ALL)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_nll_is_the_plain_loss(backend):
    """Without smoothing, z_loss or class weights, nll is the loss's "mean" (sample weights included)."""
    _backend(backend)
    x, y, w = _data(seed=3)
    v, m = fl.cross_entropy(x, y, sample_weight=w, metrics="nll", backend=backend)
    assert m["nll"] == pytest.approx(v, rel=1e-12)


# --- every backend's kernel against the specification ------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_rows_against_the_specification(backend, dtype, options):
    module = _backend(backend)
    x, y, w = _data(R=120, C=300, dtype=dtype, seed=5)
    params = _params(options, x.shape[1])
    kept = (y != -100) & (w != 0)
    rank, conf, nll, ent = _logit_metrics.row_metrics(x[kept], y[kept], params.get("softcap"))
    spec = fl.cross_entropy.spec
    packed = spec.packed({**spec.defaults(), **{k: v for k, v in params.items() if k != "class_weight"}})
    cw = None if "class_weight" not in params else np.asarray(params["class_weight"], dtype)
    R, C = x.shape
    outs = (np.full(R, 7, np.int64), np.full(R, 7.0), np.full(R, 7.0), np.full(R, 7.0))
    module.multiclass_metrics("cross_entropy", packed, -100, C, x.reshape(-1), y, w, cw, 1.0, True, None, None,
                              *outs, 1)
    np.testing.assert_array_equal(outs[0][kept], rank)
    np.testing.assert_array_equal(outs[0][~kept], -1)
    for got, want in zip(outs[1:], (conf, nll, ent)):
        np.testing.assert_array_equal(got[~kept], 0.0)
        np.testing.assert_allclose(got[kept], want, rtol=TOL[np.dtype(dtype)].rtol * 10, atol=1e-12)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_rows_without_rank_or_entropy(backend):
    """rank_out and entropy_out may be None (not asked for): nothing is written there, the rest is the same."""
    module = _backend(backend)
    x, y, w = _data(R=50, C=20, seed=6)
    R, C = x.shape
    packed = fl.cross_entropy.spec.packed(fl.cross_entropy.spec.defaults())
    full = (np.empty(R, np.int64), np.empty(R), np.empty(R), np.empty(R))
    module.multiclass_metrics("cross_entropy", packed, -100, C, x.reshape(-1), y, None, None, 1.0, True, None, None,
                              *full, 1)
    conf, nll = np.empty(R), np.empty(R)
    module.multiclass_metrics("cross_entropy", packed, -100, C, x.reshape(-1), y, None, None, 1.0, True, None, None,
                              None, conf, nll, None, 1)
    np.testing.assert_array_equal(conf, full[1])
    np.testing.assert_array_equal(nll, full[2])


# --- the loss itself is untouched -------------------------------------------------------------------------


@pytest.mark.parametrize("C", [12, 1000])  # the C++ kernel takes rows of up to 128 classes 16 at a time
@pytest.mark.parametrize("metrics", [("accuracy", "top5", "ece15"), ALL, ("nll",)], ids=["rank", "all", "nll"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_value_and_gradient_keep_their_bits(backend, dtype, options, metrics, C):
    _backend(backend)
    x, y, w = _data(R=64, C=C, dtype=dtype, seed=7)
    params = _params(options, x.shape[1])
    for reduction in ("mean", "sum", "none"):
        v0, g0 = fl.cross_entropy.value_and_grad(x, y, sample_weight=w, reduction=reduction, backend=backend,
                                                 **params)
        v1, g1, m = fl.cross_entropy.value_and_grad(x, y, sample_weight=w, reduction=reduction, backend=backend,
                                                    metrics=metrics, **params)
        np.testing.assert_array_equal(g1, g0)
        np.testing.assert_array_equal(v1, v0)
        v2, m2 = fl.cross_entropy(x, y, sample_weight=w, reduction=reduction, backend=backend, metrics=metrics,
                                  **params)
        np.testing.assert_array_equal(v2, fl.cross_entropy(x, y, sample_weight=w, reduction=reduction,
                                                           backend=backend, **params))
        assert m.state == m2.state
    # in place: the gradient overwrites the logits
    xi = x.copy()
    v3, g3, m3 = fl.cross_entropy.value_and_grad(xi, y, sample_weight=w, grad_out=xi, backend=backend,
                                                 metrics=metrics, **params)
    v4, g4 = fl.cross_entropy.value_and_grad(x, y, sample_weight=w, backend=backend, **params)
    np.testing.assert_array_equal(g3, g4)
    assert v3 == v4
    _, _, m5 = fl.cross_entropy.value_and_grad(x, y, sample_weight=w, backend=backend, metrics=metrics, **params)
    assert m3.state == m5.state


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_backends_agree(backend):
    _backend(backend)
    x, y, w = _data(R=200, C=64, dtype=np.float32, seed=8)
    got = flm.logit_metrics(x, y, metrics=ALL, sample_weight=w, backend=backend)
    want = flm.logit_metrics(x, y, metrics=ALL, sample_weight=w, backend="numpy")
    for name in ALL:
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), name
    assert got["accuracy"] == want["accuracy"] and got["top5"] == want["top5"]


# --- merging -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_chunks_merge_into_the_whole(backend, weighted):
    _backend(backend)
    x, y, w = _data(R=500, C=30, seed=9)
    sw = w if weighted else None
    whole = flm.logit_metrics(x, y, metrics=ALL, sample_weight=sw, backend=backend)
    cuts = [0, 1, 1, 77, 260, 261, 500]  # an empty piece and a one-row piece among them
    pieces = [flm.logit_metrics(x[a:b], y[a:b], metrics=ALL, sample_weight=None if sw is None else sw[a:b],
                                backend=backend).state for a, b in zip(cuts, cuts[1:])]
    merged = flm.merge_metric_states(pieces)
    assert merged.count == whole.state.count
    assert merged.result().keys() == whole.keys()
    for name in ALL:
        assert merged.result()[name] == pytest.approx(whole[name], rel=1e-14, abs=1e-15), name
    if not weighted:  # counts: integers in float64, exact
        assert merged.hits == whole.state.hits
        np.testing.assert_array_equal(merged.bins[15][0], whole.state.bins[15][0])
        np.testing.assert_array_equal(merged.bins[15][2], whole.state.bins[15][2])
    # the order of the pieces does not matter
    assert flm.merge_metric_states(pieces[::-1]) == merged
    assert pieces[0].merge(pieces[1]) == flm.merge_metric_states(pieces[:2])


def test_merge_refuses_other_metrics_and_objects():
    x, y, _ = _data(R=20, C=5)
    a = flm.logit_metrics(x, y, metrics=("accuracy",), backend="numpy").state
    b = flm.logit_metrics(x, y, metrics=("top2",), backend="numpy").state
    with pytest.raises(ValueError, match="different metrics"):
        flm.merge_metric_states([a, b])
    with pytest.raises(TypeError, match="MetricState"):
        flm.merge_metric_states([a, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        flm.merge_metric_states([])


# --- rows that count nowhere, ties, non-finite rows -----------------------------------------------------


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_ignored_rows_count_nowhere(backend):
    _backend(backend)
    x, y, w = _data(R=100, C=10, seed=10, ignore=0.0)
    w[:10] = 0.0
    y2 = y.copy()
    y2[10:20] = 3  # another ignore_index
    for kwargs, drop in (({"sample_weight": w}, slice(0, 10)), ({"ignore_index": 3}, slice(10, 20))):
        yy = y2 if "ignore_index" in kwargs else y
        m = flm.logit_metrics(x, yy, metrics=ALL, backend=backend, **kwargs)
        keep = np.ones(100, bool)
        keep[drop] = False
        keep &= yy != kwargs.get("ignore_index", -100)
        ww = kwargs.get("sample_weight")
        if ww is not None:
            keep &= ww != 0
        ref = flm.logit_metrics(x[keep], yy[keep], metrics=ALL, backend="numpy", ignore_index=-100,
                                sample_weight=None if ww is None else ww[keep])
        assert m.state.count == int(keep.sum())
        for name in ALL:
            assert m[name] == pytest.approx(ref[name], rel=1e-12), name
    # every row ignored: nothing counted, NaN metrics (the mean over nothing, as the loss's "mean")
    m = flm.logit_metrics(x, np.full(100, -100), metrics=ALL, backend=backend)
    assert m.state.count == 0 and m.state.weight == 0.0
    assert all(math.isnan(m[name]) for name in ALL)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_ties_first_maximum_wins(backend):
    """Among equal logits the first is the prediction (NumPy's and PyTorch's argmax)."""
    _backend(backend)
    x = np.array([[1.0, 3.0, 3.0, 0.0],    # label 1: the first of the tied maxima -> correct
                  [1.0, 3.0, 3.0, 0.0],    # label 2: the second of them -> rank 1
                  [2.0, 2.0, 2.0, 2.0],    # all tied, label 3 -> rank 3
                  [5.0, 1.0, 1.0, 1.0]])   # label 2 -> rank 2 (behind 0 and the tied 1)
    y = np.array([1, 2, 3, 2])
    m = flm.logit_metrics(x, y, metrics=("accuracy", "top2", "top3", "top4", "confidence"), backend=backend)
    assert m["accuracy"] == 0.25 and np.argmax(x, axis=1).tolist() == [1, 1, 0, 0]
    assert m["top2"] == 0.5 and m["top3"] == 0.75 and m["top4"] == 1.0
    # the confidence of a row with k tied maxima is still max_j p_j
    assert m["confidence"] == pytest.approx(np.mean(_softmax(x).max(axis=1)), rel=1e-15)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_non_finite_rows(backend):
    _backend(backend)
    x, y, _ = _data(R=6, C=5, seed=11, ignore=0.0)
    x[1, 2] = -np.inf  # a masked class: fine
    y[1] = 0
    m = flm.logit_metrics(x[:3], y[:3], metrics=ALL, backend=backend)
    assert all(np.isfinite(m[name]) for name in ALL)
    x[2, y[2]] = -np.inf  # a masked label: never predicted, nll inf
    m = flm.logit_metrics(x[2:3], y[2:3], metrics=("accuracy", "top5", "nll"), backend=backend)
    assert m["accuracy"] == 0.0 and m["top5"] == 1.0 and m["nll"] == math.inf
    x[3, 1] = np.nan  # a NaN row makes every metric NaN, as it makes the loss NaN
    m = flm.logit_metrics(x, y, metrics=ALL, backend=backend)
    assert all(math.isnan(m[name]) for name in ALL), m
    # unless it is ignored
    y[3] = -100
    m = flm.logit_metrics(x, y, metrics=ALL, backend=backend)
    assert all(np.isfinite(m[name]) or name == "nll" for name in ALL), m


# --- names, arguments, losses without metrics -------------------------------------------------------------


def test_metric_names():
    spec = _logit_metrics.parse(("accuracy", "top5", "top1", "ece15", "nll", "accuracy"), "x")
    assert spec.names == ("accuracy", "top5", "top1", "ece15", "nll")
    assert spec.ks == (1, 5) and spec.bins == (15,) and spec.nll and not spec.entropy
    assert _logit_metrics.parse("entropy", "x").names == ("entropy",)
    x, y, _ = _data(R=10, C=6)
    for bad in ("acc", "top0", "top", "ece0", "ece", "Accuracy", "top-1", "top5 ", "brier"):
        with pytest.raises(ValueError, match=r"unknown metric .*'topK'.*'eceN'"):
            fl.cross_entropy(x, y, metrics=(bad,))
    with pytest.raises(ValueError, match="logit_metrics: unknown metric 'acc'"):
        flm.logit_metrics(x, y, metrics=("acc",))
    # a bin count beyond 2^24: a clear error, not an allocation of terabytes; top-K for any K (K >= C: every row)
    with pytest.raises(ValueError, match="cross_entropy: metric 'ece16777217' asks for 16777217 bins; at most"):
        fl.cross_entropy(x, y, metrics=("ece16777217",))
    top = "top99999999999999999999"
    assert fl.cross_entropy(x, y, metrics=(top,), backend="numpy")[1][top] == 1.0
    m = fl.cross_entropy(x, y, metrics=("ece16777216",), backend="numpy")[1]
    assert m.state.bins[16777216].shape == (3, 16777216)
    with pytest.raises(TypeError, match="metric names are strings"):
        fl.cross_entropy(x, y, metrics=(5,))
    with pytest.raises(TypeError, match="sequence of names"):
        fl.cross_entropy(x, y, metrics=5)
    m = flm.logit_metrics(x, y, metrics=(), backend="numpy")  # nothing asked: an empty dict, the count
    assert dict(m) == {} and m.state.count == 10


def test_other_losses_refuse_metrics():
    x, y, _ = _data(R=10, C=6)
    for loss in ("categorical_focal", "multi_margin"):
        with pytest.raises(ValueError, match=f"{loss}: metrics are computed in the loss pass of cross_entropy"):
            getattr(fl, loss).value_and_grad(x, y, metrics=("accuracy",))
    with pytest.raises(ValueError, match="mse: metrics are computed"):
        fl.mse(np.zeros(3), np.zeros(3), metrics=("accuracy",))
    q = np.full((10, 6), 1 / 6)
    with pytest.raises(ValueError, match="metrics need hard labels"):
        fl.cross_entropy(x, q, metrics=("accuracy",))
    with pytest.raises(TypeError, match="metrics"):
        fl.cross_entropy.grad(x, y, metrics=("accuracy",))



def test_metrics_pass_says_which_losses_take_metrics():
    """``LossSpec.metrics_pass`` is the one place that says which losses compute metrics in their pass (the
    dispatcher, the torch forms, the stubs and the API docs read it). "rows": a multiclass loss with its row-metrics
    kernel; "binary": an elementwise loss on one binary score; every other loss refuses ``metrics=`` before it
    reads its arrays: the elementwise and multiclass ones naming the losses that take it, the others as an unknown
    keyword."""
    from fusedloss import _pointwise
    from fusedloss._spec import REGISTRY

    rows = [n for n, s in REGISTRY.items() if s.metrics_pass == "rows"]
    binary = [n for n, s in REGISTRY.items() if s.metrics_pass == "binary"]
    assert "cross_entropy" in rows and "mse" not in binary
    assert {"binary_cross_entropy", "binary_cross_entropy_with_logits", "binary_focal"} <= set(binary)
    z = np.zeros((4, 3))
    for name, spec in REGISTRY.items():
        if not spec.builtin:  # a user's loss another test registered
            continue
        if spec.metrics_pass == "rows":
            assert spec.kind == "multiclass" and callable(getattr(_pointwise, f"{name}_row_metrics", None)), name
            assert spec.binary_scores is None, name
            continue
        if spec.metrics_pass == "binary":
            assert spec.kind == "elementwise" and spec.binary_scores in ("logits", "probabilities"), name
            continue
        assert spec.metrics_pass is None and spec.binary_scores is None, name
        if spec.kind in ("elementwise", "multiclass"):
            want = (ValueError, f"{name}: metrics are computed in the loss pass of {', '.join(rows)} only "
                                rf"\(hard labels\) and of the losses on a binary score \({', '.join(binary)}\)")
        else:
            want = (TypeError, rf"{name}: unknown keyword argument\(s\) metrics")
        arrays = len(spec.inputs) + spec.row_target if spec.kind == "pairwise" else 4 if spec.kind == "sequence" else 2
        with pytest.raises(want[0], match=want[1]):
            getattr(fl, name)(*[z] * arrays, metrics=("accuracy",))

def test_leading_axes_and_reductions():
    x, y, w = _data(R=60, C=7, seed=12)
    x3, y3, w3 = x.reshape(3, 20, 7), y.reshape(3, 20), w.reshape(3, 20)
    flat = flm.logit_metrics(x, y, metrics=ALL, sample_weight=w, backend="numpy")
    m = flm.logit_metrics(x3, y3, metrics=ALL, sample_weight=w3, backend="numpy")
    assert m.state == flat.state
    v, m2 = fl.cross_entropy(x3, y3, reduction="none", sample_weight=w3, metrics=ALL, backend="numpy")
    assert v.shape == (3, 20) and m2.state == flat.state


def test_compiled_kernel_checks_its_metric_outputs():
    """The binding never trusts its caller: wrong dtype, length, read-only, overlapping outputs, losses without
    a metrics pass."""
    core = _backend("cpp")
    x, y, w = _data(R=8, C=5, seed=13)
    packed = fl.cross_entropy.spec.packed(fl.cross_entropy.spec.defaults())
    flat = x.reshape(-1)

    def call(loss="cross_entropy", rank=None, conf=None, nll=None, entropy=None, grad=None):
        rank = np.empty(8, np.int64) if rank is None else rank
        conf = np.empty(8) if conf is None else conf
        nll = np.empty(8) if nll is None else nll
        return core.multiclass_metrics(loss, packed if loss == "cross_entropy" else (2.0,), -100, 5, flat, y, None,
                                       None, 1.0, True, None, grad, rank, conf, nll, entropy, 1)

    call()
    with pytest.raises(TypeError, match="rank_out must be .* int64"):
        call(rank=np.empty(8, np.int32))
    with pytest.raises(ValueError, match="conf_out must have length 8"):
        call(conf=np.empty(7))
    ro = np.empty(8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="nll_out is read-only"):
        call(nll=ro)
    shared = np.empty(8)
    with pytest.raises(ValueError, match="nll_out overlaps"):
        call(conf=shared, nll=shared)
    with pytest.raises(ValueError, match="entropy_out overlaps"):
        call(entropy=flat[:8])  # the logits (float64 here)
    with pytest.raises(ValueError, match="categorical_focal has no metrics pass.*cross_entropy"):
        call(loss="categorical_focal")
