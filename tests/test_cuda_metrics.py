"""The metrics of the Numba-CUDA backend. cross_entropy's: the per-row rank, confidence, -log p_t and entropy from
the block kernel's passes, folded on the host into the same metrics as the host backends'. A loss on one binary
score's: the sums of ``_binary_metrics.table`` from ``_cuda_binary_metrics``'s kernel.

Oracles: the NumPy specification of the per-row arrays (``_logit_metrics.row_metrics``) and the host backends'
``metrics=`` results. Runs on a GPU or on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda``):
small sizes, small blocks (rows side by side, several strides per thread), every option.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _binary_metrics, _logit_metrics

from conftest import TOL, backend_skip_reason

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

ALL = ("accuracy", "top3", "nll", "entropy", "confidence", "ece10")
OPTIONS = {
    "plain": {},
    "class_weight": {"class_weight": "vector"},
    "label_smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 3.0},
    "confidence_penalty": {"confidence_penalty": 0.3},
    "all": {"class_weight": "vector", "label_smoothing": 0.2, "z_loss": 1e-4, "softcap": 4.0,
            "confidence_penalty": 0.2},
}


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _data(R=6, C=40, dtype=np.float64, seed=0):
    """Logits with the label the argmax in half the rows, a row of ties, an ignored row (-100) and a row of weight
    0, a row with some -inf logits."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(R, C)) * 3).astype(dtype)
    y = rng.integers(0, C, R)
    y[: R // 2] = np.argmax(x[: R // 2], axis=1)
    x[1, :] = x[1, 4]
    y[1] = 4  # every logit tied: the label's rank is its index
    y[2] = -100
    x[3, :5] = -np.inf
    w = np.linspace(0.5, 1.5, R).astype(dtype)
    w[4] = 0.0
    return x, y, w


def _params(options, C):
    p = dict(options)
    if p.get("class_weight") == "vector":
        p["class_weight"] = np.linspace(0.5, 2.0, C)
    return p


ROW_CASES = [(option, np.float64) for option in OPTIONS] + [("all", np.float32)]


@pytest.mark.parametrize("option, dtype", ROW_CASES, ids=[f"{o}-{np.dtype(d)}" for o, d in ROW_CASES])
def test_rows_against_the_specification(option, dtype, small_blocks):
    from fusedloss.backends import numba_cuda

    x, y, w = _data(dtype=dtype)
    params = _params(OPTIONS[option], x.shape[1])
    kept = (y != -100) & (w != 0)
    rank, conf, nll, ent = _logit_metrics.row_metrics(x[kept], y[kept], params.get("softcap"))
    spec = fl.cross_entropy.spec
    packed = spec.packed({**spec.defaults(), **{k: v for k, v in params.items() if k != "class_weight"}})
    cw = None if "class_weight" not in params else _dev(np.asarray(params["class_weight"], dtype))
    R, C = x.shape
    outs = [_dev(np.full(R, 7, np.int64))] + [_dev(np.full(R, 7.0)) for _ in range(3)]
    numba_cuda.multiclass_metrics("cross_entropy", packed, -100, C, _dev(x.reshape(-1)), _dev(y), _dev(w), cw, 1.0,
                                  True, None, None, *outs, 1)
    outs = [o.copy_to_host() for o in outs]
    np.testing.assert_array_equal(outs[0][kept], rank)
    assert rank[1] == 4  # the tied row (kept)
    np.testing.assert_array_equal(outs[0][~kept], -1)
    for got, want in zip(outs[1:], (conf, nll, ent)):
        np.testing.assert_array_equal(got[~kept], 0.0)
        np.testing.assert_allclose(got[kept], want, rtol=TOL[np.dtype(dtype)].rtol * 10, atol=1e-12)


PUBLIC_CASES = [(ALL, np.float64), (ALL, np.float32), (("nll",), np.float64), (("accuracy", "top3"), np.float64)]


@pytest.mark.parametrize("metrics, dtype", PUBLIC_CASES,
                         ids=[f"{'-'.join(m)}-{np.dtype(d)}" for m, d in PUBLIC_CASES])
def test_same_metrics_as_the_host_and_the_loss_keeps_its_bits(dtype, metrics, monkeypatch):
    """The public call on device arrays: metrics as the NumPy backend's (counts exactly), with weights; the value
    and gradient the same bits as the call without metrics."""
    from fusedloss.backends import _cuda_rows

    monkeypatch.setattr(_cuda_rows, "MAX_ROW_THREADS", 64)  # two rows a block
    x, y, w = _data(dtype=dtype, seed=1)
    params = _params(OPTIONS["all"], x.shape[1])
    dx, dy, dw = _dev(x), _dev(y), _dev(w)
    for sw, dsw in ((None, None), (w, dw)):
        v, g, m = fl.cross_entropy.value_and_grad(dx, dy, sample_weight=dsw, metrics=metrics, **params)
        v0, g0 = fl.cross_entropy.value_and_grad(dx, dy, sample_weight=dsw, **params)
        assert v == v0
        np.testing.assert_array_equal(g.copy_to_host(), g0.copy_to_host())
        _, _, want = fl.cross_entropy.value_and_grad(x, y, sample_weight=sw, backend="numpy", metrics=metrics,
                                                     **params)
        assert m.state.count == want.state.count
        if "accuracy" in metrics:
            assert m.state.hits == want.state.hits
        for name in metrics:
            np.testing.assert_allclose(m[name], want[name], rtol=TOL[np.dtype(dtype)].rtol * 10, err_msg=name)
    rows, m2 = fl.cross_entropy(dx, dy, sample_weight=dw, reduction="none", metrics=metrics, **params)
    assert rows.shape == (x.shape[0],)
    assert m2.state == m.state


def test_gradient_over_the_logits(small_blocks):
    """grad_out the logits themselves: the rank and x_t are read before pass 2 writes over them."""
    x, y, w = _data(seed=2)
    _, _, want = fl.cross_entropy.value_and_grad(x, y, backend="numpy", metrics=ALL)
    dx = _dev(x)
    _, g, m = fl.cross_entropy.value_and_grad(dx, _dev(y), grad_out=dx, metrics=ALL)
    assert m.state.hits == want.state.hits
    for name in ALL:
        np.testing.assert_allclose(m[name], want[name], rtol=1e-12, err_msg=name)


def test_nonfinite_rows_make_the_metrics_nan(small_blocks):
    x, y, _ = _data(seed=3)
    x[5, 2] = np.nan
    _, m = fl.cross_entropy(_dev(x), _dev(y), metrics=ALL)
    _, want = fl.cross_entropy(x, y, backend="numpy", metrics=ALL)
    for name in ALL:
        assert np.isnan(want[name]) == np.isnan(m[name]), name
    assert np.isnan(m["nll"]) and np.isnan(m["accuracy"])


def test_refusals():
    x, y, _ = _data(seed=4)
    dx = _dev(x)
    q = _dev(np.full(x.shape, 1.0 / x.shape[1]))
    with pytest.raises(ValueError, match="metrics need hard labels"):
        fl.cross_entropy(dx, q, metrics=("accuracy",))


# --- a loss on one binary score ----------------------------------------------------------------------------------

BINARY = [("binary_cross_entropy_with_logits", {}),
          ("binary_cross_entropy_with_logits", {"pos_weight": 2.0, "label_smoothing": 0.1}),
          ("binary_focal", {"gamma": 2.0, "alpha": 0.25}),
          ("binary_cross_entropy", {})]
BINARY_METRICS = ("accuracy", "brier", "roc16", "ap16", "ece5")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 elements, 32 threads a block (the simulator runs each thread as a Python thread)."""
    from fusedloss.backends import _cuda_binary_metrics

    monkeypatch.setattr(_cuda_binary_metrics, "CHUNK", 64)
    monkeypatch.setattr(_cuda_binary_metrics, "THREADS", 32)
    return _cuda_binary_metrics


def _binary_data(name, n=250, dtype=np.float64, seed=0, soft=False):
    """Scores (logits, or probabilities for binary_cross_entropy) with some on the threshold and the bin edges,
    targets (0/1, or soft) and weights with a 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * 3
    x[:4] = (0.0, 0.0, 30.0, -30.0)
    if fl.LOSSES[name].spec.binary_scores == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x))
        x[4:8] = (0.5, 1.0, 0.0, 0.25)  # the threshold (negative), both ends, a bin edge
    y = rng.random(n) if soft else (rng.random(n) < 0.4).astype(np.float64)
    w = rng.uniform(0.0, 2.0, n)
    w[9] = 0.0
    return x.astype(dtype), y.astype(dtype), w.astype(dtype)


def _expected(name, x, y, w, metrics):
    spec = _binary_metrics.parse(metrics, name)
    tab = _binary_metrics.table(x, y, w, fl.LOSSES[name].spec.binary_scores == "probabilities", spec.nbins,
                                spec.ece_bins)
    return _binary_metrics.fold(spec, tab, x.size, float(x.size) if w is None else float(np.sum(w, dtype=np.float64)))


def _same_state(got, want, exact_bins: bool):
    assert (got.count, got.nan) == (want.count, want.nan)
    np.testing.assert_allclose([got.weight, got.correct, got.brier], [want.weight, want.correct, want.brier],
                               rtol=1e-12)
    for field in ("bins", "calibration"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.keys() == b.keys()
        for k in a:
            if exact_bins and field == "bins":
                np.testing.assert_array_equal(a[k], b[k])
            else:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12)


BINARY_CASES = [(name, params, np.float64) for name, params in BINARY] + [(*BINARY[1], np.float32)]


@pytest.mark.parametrize("name, params, dtype", BINARY_CASES,
                         ids=[f"{n}-{'-'.join(p) or 'plain'}-{np.dtype(d)}" for n, p, d in BINARY_CASES])
def test_binary_metrics_against_the_specification(name, params, dtype, small_chunks):
    """Four chunks: the sums against ``_binary_metrics.table``; unweighted 0/1 targets give exact bin counts; the
    value and gradient are the bits of the call without metrics."""
    x, y, w = _binary_data(name, dtype=dtype)
    loss = fl.LOSSES[name]
    dx, dy, dw = _dev(x), _dev(y), _dev(w)
    for sw, dsw in ((None, None), (w, dw)):
        v, g, m = loss.value_and_grad(dx, dy, sample_weight=dsw, metrics=BINARY_METRICS, **params)
        v0, g0 = loss.value_and_grad(dx, dy, sample_weight=dsw, **params)
        assert v == v0
        np.testing.assert_array_equal(g.copy_to_host(), g0.copy_to_host())
        _same_state(m.state, _expected(name, x, y, sw, BINARY_METRICS), exact_bins=sw is None)
        _, _, host = loss.value_and_grad(x, y, sample_weight=sw, backend="numpy", metrics=BINARY_METRICS, **params)
        for metric in BINARY_METRICS:
            np.testing.assert_allclose(m[metric], host[metric], rtol=1e-10, err_msg=metric)


def test_binary_metrics_over_several_table_rows_soft_targets_and_many_bins(small_chunks, monkeypatch):
    """Table rows of two chunks (the host's rule), soft targets, and more bin columns than the shared histogram
    holds (they go straight to the table)."""
    monkeypatch.setattr(_binary_metrics, "BLOCK", 64)
    monkeypatch.setattr(_binary_metrics, "ROW_BLOCKS", 2)
    x, y, w = _binary_data("binary_cross_entropy_with_logits", n=333, seed=5, soft=True)
    assert _binary_metrics.table_rows(x.size) == 3
    many = ("accuracy", "roc1100", "ap1100", "ece7")  # 2 x 1100 + 3 x 7 columns > SHARED_BINS
    assert 2 * 1100 > small_chunks.SHARED_BINS
    for sw in (None, w):
        tab = small_chunks.binary_metrics(_dev(x), _dev(y), None if sw is None else _dev(sw), False, 1100, 7, 3)
        assert tab.shape == (3, 3 + 2 * 1100 + 3 * 7)
        want = _binary_metrics.table(x, y, sw, False, 1100, 7)
        np.testing.assert_allclose(tab.sum(axis=0), want[0], rtol=1e-12, atol=1e-12)
        assert tab[0, 0] == 0 and np.all(tab[:, 3:].sum(axis=1) > 0)  # every row holds elements
        _, m = fl.binary_cross_entropy_with_logits(_dev(x), _dev(y), sample_weight=None if sw is None else _dev(sw),
                                                   metrics=many)
        _same_state(m.state, _expected("binary_cross_entropy_with_logits", x, y, sw, many), exact_bins=False)


def test_binary_metrics_nan_empty_and_gradient_over_the_scores(small_chunks):
    x, y, w = _binary_data("binary_cross_entropy_with_logits", n=130, seed=7)
    want = _expected("binary_cross_entropy_with_logits", x, y, w, BINARY_METRICS)
    dx = _dev(x)
    _, g, m = fl.binary_cross_entropy_with_logits.value_and_grad(dx, _dev(y), sample_weight=_dev(w), grad_out=dx,
                                                                 metrics=BINARY_METRICS)
    _same_state(m.state, want, exact_bins=False)  # read before the gradient was written over the scores
    x[17] = np.nan
    _, m = fl.binary_cross_entropy_with_logits(_dev(x), _dev(y), metrics=BINARY_METRICS)
    assert m.state.nan == 1 and all(np.isnan(m[k]) for k in BINARY_METRICS)
    e = np.zeros(0)
    _, m = fl.binary_cross_entropy_with_logits(_dev(np.zeros(1))[:0], _dev(np.zeros(1))[:0], metrics=BINARY_METRICS)
    assert m.state.count == 0 and m.state == _expected("binary_cross_entropy_with_logits", e, e, None,
                                                       BINARY_METRICS)
