"""Binary metrics from the pass of the losses on one binary score (``metrics=``) and
``fusedloss.metrics.binary_logit_metrics``.

Oracles: scikit-learn (accuracy_score, brier_score_loss, roc_auc_score and average_precision_score, the last two
both on the bin indices, where the binned curves must agree exactly, and on the probabilities, within the binning
error; calibration_curve for the expected calibration error); the NumPy specification of the sums
(``_binary_metrics.table``) for every backend's kernel; the plain call for the value and gradient, which must keep
their bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
import fusedloss.metrics as flm
from fusedloss import _binary_metrics
from fusedloss._spec import REGISTRY

from conftest import DTYPES, HOST_BACKENDS, require_backend

BINARY = tuple(name for name, spec in REGISTRY.items() if spec.metrics_pass == "binary")
ALL = ("accuracy", "brier", "roc256", "ap256", "ece15")


def _data(n=3000, dtype=np.float64, seed=0, probabilities=False, soft=False):
    """Logits (or probabilities) of a calibrated model, targets drawn from them (or soft), weights (some 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * 2.0
    p = 1.0 / (1.0 + np.exp(-x))
    y = rng.uniform(size=n) if soft else (rng.uniform(size=n) < p).astype(np.float64)
    w = rng.uniform(0.1, 2.0, n)
    w[rng.uniform(size=n) < 0.05] = 0.0
    return (p if probabilities else x).astype(dtype), y.astype(dtype), w.astype(dtype)


def _prob(x, probabilities):
    x = np.asarray(x, np.float64)
    return x if probabilities else 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_against_scikit_learn(backend, weighted):
    sk = pytest.importorskip("sklearn.metrics")
    require_backend(backend)
    x, y, w = _data(seed=1)
    w = w if weighted else None
    _, _, m = fl.binary_cross_entropy_with_logits.value_and_grad(x, y, sample_weight=w, metrics=ALL, backend=backend)
    p = _prob(x, False)
    b = np.minimum(np.floor(p * 256), 255)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, x > 0, sample_weight=w), rel=1e-12)
    assert m["brier"] == pytest.approx(sk.brier_score_loss(y, p, sample_weight=w), rel=1e-10)
    assert m["roc256"] == pytest.approx(sk.roc_auc_score(y, b, sample_weight=w), rel=1e-12)
    assert m["ap256"] == pytest.approx(sk.average_precision_score(y, b, sample_weight=w), rel=1e-12)
    # the binned curves against the exact ones: within the binning error
    assert abs(m["roc256"] - sk.roc_auc_score(y, p, sample_weight=w)) < 2e-3
    assert abs(m["ap256"] - sk.average_precision_score(y, p, sample_weight=w)) < 5e-3
    assert m["ece15"] == pytest.approx(_ece(p, y, w, 15), rel=1e-12)


def _ece(p, y, w, n):
    """The expected calibration error of probabilities p over n equal-width bins, sum_b |sum w p - sum w y| / sum w:
    unweighted from scikit-learn's calibration_curve (the mean target and probability of each non-empty bin),
    weighted (calibration_curve has no weights) from NumPy histograms."""
    from sklearn.calibration import calibration_curve

    edges = np.linspace(0.0, 1.0, n + 1)
    if w is None:
        true, pred = calibration_curve(y, p, n_bins=n, strategy="uniform")  # the non-empty bins
        count = np.histogram(p, edges)[0]
        return float(np.sum(count[count > 0] * np.abs(true - pred)) / p.size)
    weight = np.histogram(p, edges, weights=w)[0]
    wp = np.histogram(p, edges, weights=w * p)[0]
    wy = np.histogram(p, edges, weights=w * y)[0]
    return float(np.sum(np.abs(wp - wy)) / np.sum(weight))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_expected_calibration_error_by_hand(backend):
    """Probabilities 0.9 (targets 1, 1, 1, 0) and 0.2 (0, 0), 10 bins: |3.6 - 3| + |0.4 - 0| over 6 elements;
    a weight scales its element in both sums; 1 falls in the last bin and 0 in the first."""
    require_backend(backend)
    p = np.array([0.9, 0.9, 0.9, 0.9, 0.2, 0.2])
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    _, m = fl.binary_cross_entropy(p, y, metrics="ece10", backend=backend)
    assert m["ece10"] == pytest.approx(1.0 / 6.0, rel=1e-14)
    np.testing.assert_allclose(m.state.calibration[10][:, [2, 9]], [[2, 4], [0.4, 3.6], [0, 3]], rtol=1e-15)
    w = np.array([1.0, 1.0, 1.0, 3.0, 0.5, 0.0])
    _, m = fl.binary_cross_entropy(p, y, sample_weight=w, metrics="ece10", backend=backend)
    assert m["ece10"] == pytest.approx((abs(0.9 * 6 - 3) + 0.1) / 6.5, rel=1e-14)
    _, m = fl.binary_cross_entropy(np.array([0.0, 1.0]), np.array([0.0, 1.0]), metrics="ece4", backend=backend)
    assert m["ece4"] == 0.0 and np.array_equal(m.state.calibration[4][0], [1, 0, 0, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss", BINARY)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_value_and_gradient_keep_their_bits_and_sums_match_the_specification(backend, loss, dtype):
    """Every loss on a binary score, every host backend: the loss's outputs are those of the plain call, to the
    bit, and the table's sums are those of the NumPy specification (counts exactly)."""
    require_backend(backend)
    probabilities = REGISTRY[loss].binary_scores == "probabilities"
    x, y, w = _data(n=20000, dtype=dtype, seed=2, probabilities=probabilities)
    fn = getattr(fl, loss)
    for sw in (None, w):
        v0, g0 = fn.value_and_grad(x, y, sample_weight=sw, backend=backend)
        v, g, m = fn.value_and_grad(x, y, sample_weight=sw, metrics=ALL, backend=backend)
        assert v == v0 and np.array_equal(g, g0)
        e0 = fn(x, y, sample_weight=sw, reduction="none", backend=backend)
        e, m2 = fn(x, y, sample_weight=sw, reduction="none", metrics=ALL, backend=backend)
        assert np.array_equal(e, e0) and m2.state == m.state
        spec = _binary_metrics.parse(ALL, loss)
        want = _binary_metrics.fold(spec, _binary_metrics.table(x, y, sw, probabilities, 256, 15), x.size,
                                    float(np.sum(np.asarray(x.size * [1.0] if sw is None else sw, np.float64))))
        got = m.state
        assert got.count == want.count and got.nan == 0
        if sw is None:  # integer counts: exact
            assert got.correct == want.correct and np.array_equal(got.bins[256], want.bins[256])
            assert np.array_equal(got.calibration[15][[0, 2]], want.calibration[15][[0, 2]])
        else:
            assert got.correct == pytest.approx(want.correct, rel=1e-12)
            np.testing.assert_allclose(got.bins[256], want.bins[256], rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(got.calibration[15][[0, 2]], want.calibration[15][[0, 2]], rtol=1e-12)
        np.testing.assert_allclose(got.calibration[15][1], want.calibration[15][1], rtol=1e-12)
        assert got.brier == pytest.approx(want.brier, rel=1e-12)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_threads_chunks_and_in_place(backend):
    """Above the parallel threshold: the same state for 1 and 2 threads; chunks merge into the whole (counts
    exactly); the gradient written over the logits leaves the metrics as they are."""
    require_backend(backend)
    x, y, w = _data(n=300_000, dtype=np.float32, seed=3)
    fn = fl.binary_cross_entropy_with_logits
    with _threads(1):
        v1, g1, m1 = fn.value_and_grad(x, y, sample_weight=w, metrics=ALL, backend=backend)
    with _threads(2):
        v2, g2, m2 = fn.value_and_grad(x, y, sample_weight=w, metrics=ALL, backend=backend)
        xc = x.copy()
        _, _, m3 = fn.value_and_grad(xc, y, sample_weight=w, metrics=ALL, backend=backend, grad_out=xc)
    assert v1 == v2 and np.array_equal(g1, g2) and m1.state == m2.state == m3.state
    assert np.array_equal(xc, g2)
    _, _, whole = fn.value_and_grad(x, y, metrics=ALL, backend=backend)
    cuts = [0, 1000, 170_001, 300_000]
    parts = [fn.value_and_grad(x[a:b], y[a:b], metrics=ALL, backend=backend)[2].state for a, b in zip(cuts, cuts[1:])]
    merged = flm.merge_metric_states(parts[::-1])
    assert merged.count == whole.state.count and merged.correct == whole.state.correct
    assert np.array_equal(merged.bins[256], whole.state.bins[256])
    assert np.array_equal(merged.calibration[15][[0, 2]], whole.state.calibration[15][[0, 2]])
    assert merged.brier == pytest.approx(whole.state.brier, rel=1e-12)
    for name in ALL:
        assert merged.result()[name] == pytest.approx(whole[name], rel=1e-13)


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = fl.get_num_threads()
        fl.set_num_threads(self.n)

    def __exit__(self, *exc):
        fl.set_num_threads(self.old)


def test_weighted_merge_and_soft_targets():
    """Weighted pieces merge to the whole within float64 rounding; a soft target counts as y positive and
    1 - y negative (accuracy of a positive prediction is y); a NaN logit makes every metric NaN."""
    x, y, w = _data(n=2000, seed=4, soft=True)
    whole = flm.binary_logit_metrics(x, y, metrics=ALL, sample_weight=w, backend="numpy")
    parts = [flm.binary_logit_metrics(x[a:b], y[a:b], metrics=ALL, sample_weight=w[a:b], backend="numpy").state
             for a, b in ((0, 700), (700, 2000))]
    merged = parts[0].merge(parts[1]).result()
    for name in ALL:
        assert merged[name] == pytest.approx(whole[name], rel=1e-13)
    m = flm.binary_logit_metrics(np.array([2.0, -1.0, 0.0]), np.array([0.75, 0.25, 0.5]),
                                 metrics=("accuracy", "brier"), backend="numpy")
    assert m["accuracy"] == pytest.approx((0.75 + 0.75 + 0.5) / 3)  # x == 0 predicts negative
    x[5] = np.nan
    m = flm.binary_logit_metrics(x, y, metrics=ALL, backend="numpy")
    assert all(math.isnan(m[name]) for name in ALL)


def test_metric_names_and_refusals():
    x, y, _ = _data(n=10)
    with pytest.raises(ValueError, match="unknown metric 'top5'"):
        fl.binary_cross_entropy_with_logits(x, y, metrics=("top5",))
    with pytest.raises(ValueError, match="one bin count"):
        fl.binary_cross_entropy_with_logits(x, y, metrics=("roc256", "ap100"))
    with pytest.raises(ValueError, match="binary_logit_metrics: unknown metric"):
        flm.binary_logit_metrics(x, y, metrics=("nll",))
    with pytest.raises(ValueError, match="one expected calibration error per call"):
        fl.binary_cross_entropy_with_logits(x, y, metrics=("ece10", "ece15"))
    for name in ("roc16777217", "ap99999999999999999999", "ece16777217"):  # the kernels index bins with int32
        with pytest.raises(ValueError, match=f"metric '{name}' asks for [0-9]+ bins; at most 16777216"):
            fl.binary_cross_entropy_with_logits(x, y, metrics=("accuracy", name))
    m = flm.binary_logit_metrics(x, y, metrics=("ece10", "roc4"), backend="numpy")  # bin counts of their own
    assert m.state.bins[4].shape == (2, 4) and m.state.calibration[10].shape == (3, 10)
    with pytest.raises(ValueError, match="mse: metrics are computed"):
        fl.mse(x, y, metrics=("accuracy",))
    with pytest.raises(TypeError, match="metrics"):
        fl.binary_cross_entropy_with_logits.grad_hess(x, y, metrics=("accuracy",))
    m = flm.binary_logit_metrics(np.zeros(4), np.ones(4), metrics=("roc8", "ap8"), backend="numpy")
    assert math.isnan(m["roc8"]) and m["ap8"] == 1.0  # no negatives: no ROC curve; every score at 1/2


def test_cpp_kernel_checks_its_table():
    core = pytest.importorskip("fusedloss._core")
    if not hasattr(core, "elementwise_metrics"):
        pytest.fail("the compiled extension has no elementwise_metrics (rebuild it)")
    x, y, _ = _data(n=100)
    tab = np.zeros((1, 3 + 2 * 8))
    args = ("binary_cross_entropy_with_logits", (1.0, 0.0), x, y, None, 1.0, True, None, None, 1, None)
    assert core.elementwise_metrics(*args, tab, 8, False) == fl.binary_cross_entropy_with_logits(x, y, reduction="sum")
    with pytest.raises(ValueError, match="3 \\+ 2 nbins"):
        core.elementwise_metrics(*args, np.zeros((1, 5)), 8, False)
    with pytest.raises(TypeError, match="table must be"):
        core.elementwise_metrics(*args, np.zeros((1, 19), np.float32), 8, False)
    with pytest.raises(ValueError, match="no binary metrics pass"):
        core.elementwise_metrics("mse", (), x, y, None, 1.0, True, None, None, 1, None, tab, 8, False)
    with pytest.raises(ValueError, match="value_out or reduce"):
        core.elementwise_metrics(*args[:6], False, None, None, 1, None, tab, 8, False)
    for bins in ((2**31, 0), (8, 2**32 + 4)):  # beyond 32-bit bin indices: refused before the table is read
        with pytest.raises(ValueError, match="at most 2\\^24"):
            core.elementwise_metrics(*args, tab, *bins[:1], False, bins[1])
    # with the calibration histogram: 3 more columns per bin, filled as the specification says
    with pytest.raises(ValueError, match="3 \\+ 2 nbins \\+ 3 ece_bins = 31 columns"):
        core.elementwise_metrics(*args, tab, 8, False, 4)
    tab = np.zeros((1, 3 + 2 * 8 + 3 * 4))
    core.elementwise_metrics(*args, tab, 8, False, 4)
    np.testing.assert_allclose(tab, _binary_metrics.table(x, y, None, False, 8, 4), rtol=1e-14)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_options_and_leading_axes(backend):
    """A per-column pos_weight (the kernels' column loop) and label smoothing change the loss, not the metrics,
    and keep the loss's bits; a 2-D call gives the state of its flat twin."""
    require_backend(backend)
    x, y, w = _data(n=6000, dtype=np.float32, seed=5)
    x2, y2, w2 = x.reshape(1000, 6), y.reshape(1000, 6), w.reshape(1000, 6)
    fn = fl.binary_cross_entropy_with_logits
    flat = fn(x, y, sample_weight=w, metrics=ALL, backend="numpy")[1].state
    pos_weight = np.linspace(0.5, 3.0, 6)
    for params in ({"pos_weight": pos_weight}, {"label_smoothing": 0.1, "pos_weight": 2.0}):
        v0, g0 = fn.value_and_grad(x2, y2, sample_weight=w2, backend=backend, **params)
        v, g, m = fn.value_and_grad(x2, y2, sample_weight=w2, metrics=ALL, backend=backend, **params)
        assert v == v0 and np.array_equal(g, g0)
        assert m.state.count == flat.count and m.state.nan == flat.nan
        assert m.state.correct == pytest.approx(flat.correct, rel=1e-12)
        np.testing.assert_allclose(m.state.bins[256], flat.bins[256], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_nan_scores(backend):
    """A NaN logit makes every metric NaN on every backend, and the sums are the specification's."""
    require_backend(backend)
    x, y, _ = _data(n=5000, dtype=np.float32, seed=6)
    x[[7, 4100]] = np.nan
    _, m = fl.binary_cross_entropy_with_logits(x, y, metrics=ALL, backend=backend)
    assert all(math.isnan(m[name]) for name in ALL)
    want = _binary_metrics.fold(_binary_metrics.parse(ALL, "t"), _binary_metrics.table(x, y, None, False, 256, 15),
                                x.size, float(x.size))
    assert m.state.nan == 2 and m.state.correct == want.correct and np.array_equal(m.state.bins[256],
                                                                                   want.bins[256])
    assert np.array_equal(m.state.calibration[15][[0, 2]], want.calibration[15][[0, 2]])
    assert math.isnan(m.state.calibration[15][1, 0])  # the NaN scores went to bin 0


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_weights_rescaled_for_the_mean(backend):
    """float32 weights whose sum passes 2^126 are rescaled for "mean" (fit_weights): the metrics still weigh the
    weights as given (their state is that of "sum", where nothing is rescaled)."""
    require_backend(backend)
    x, y, w = _data(n=2000, dtype=np.float32, seed=7)
    w = (w.astype(np.float64) * 2.0**120).astype(np.float32)
    fn = fl.binary_cross_entropy_with_logits
    _, _, mean = fn.value_and_grad(x, y, sample_weight=w, metrics=ALL, backend=backend)
    _, _, total = fn.value_and_grad(x, y, sample_weight=w, reduction="sum", metrics=ALL, backend=backend)
    assert mean.state.weight == total.state.weight
    for name in ALL:
        assert mean[name] == pytest.approx(total[name], rel=1e-12)
