"""``metrics=`` over dask arrays: every block's metric state comes from its own loss call, and the states merge by the
fixed tree into the metrics of the in-memory call on the whole array.

Oracles: the in-memory call on the whole array, and ``merge_metric_states`` of the in-memory calls on the blocks.
What must be equal and what may round:

- counts exactly: the rows / elements counted, the NaN count, and every weight sum when the weights are integers
  (hits, ECE bin weights and correct rows, the binary curves' bins and correct weight with hard targets);
- float64 sums (nll, entropy, confidence, ECE confidences, Brier, sums of fractional weights) within ``RTOL``
  relative: the blocks' kernels sum in another order than the whole's;
- with at most ``SPLIT_EVERY`` blocks the tree is one ``merge_metric_states``: bit for bit that of the blocks'
  in-memory states;
- the value and gradient keep their bits when metrics are asked for.

The synchronous scheduler, and for one graph a LocalCluster of two worker processes (on loopback, no dashboard).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="fusedloss.dask needs dask[array] (the test extra installs it)")
dask = pytest.importorskip("dask")

import fusedloss as fl  # noqa: E402
import fusedloss.dask as fld  # noqa: E402
import fusedloss.metrics as flm  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402

from conftest import HOST_BACKENDS, require_backend  # noqa: E402
from test_dask import client  # noqa: E402,F401  (the LocalCluster fixture)

RTOL = 1e-13
LOGIT = ("accuracy", "top3", "nll", "entropy", "confidence", "ece15")
BINARY = ("accuracy", "brier", "roc64", "ap64", "ece10")
WITH_LOGIT_METRICS = tuple(name for name, spec in REGISTRY.items() if spec.metrics_pass == "rows")
WITH_BINARY_METRICS = tuple(name for name, spec in REGISTRY.items() if spec.metrics_pass == "binary")

ROWS, C = 203, 9
# row chunkings of the logits: uneven with a one-row chunk, one chunk, more blocks than one tree node takes
ROW_CHUNKS = {"uneven": (120, 1, 50, 32), "one": (ROWS,), "many": (10,) * 20 + (3,)}


def sync(*objects):
    return dask.compute(*objects, scheduler="sync")


def logit_data(seed=0, weights="integer"):
    """Logits (ROWS, C), labels with ignored rows (-100), weights: integers 0..3 (every weighted sum of counts an
    exact integer) or fractional with zeros."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, C)) * 1.5
    x[np.arange(ROWS), rng.integers(0, C, ROWS)] += 1.0  # a model right about half the time
    y = rng.integers(0, C, ROWS)
    y[rng.uniform(size=ROWS) < 0.1] = -100
    if weights == "integer":
        w = rng.integers(0, 4, ROWS).astype(np.float64)
    else:
        w = rng.uniform(0.1, 2.0, ROWS)
        w[rng.uniform(size=ROWS) < 0.05] = 0.0
    return x, y, w


def binary_data(name, shape=(40, 6), seed=1, weights="integer"):
    """Scores of a calibrated model (logits, or probabilities for a loss on probabilities), hard targets."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape) * 2.0
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.uniform(size=shape) < p).astype(np.float64)
    w = rng.integers(0, 4, shape).astype(np.float64) if weights == "integer" else rng.uniform(0.1, 2.0, shape)
    return (p if REGISTRY[name].binary_scores == "probabilities" else z), y, w


def assert_logit_state(got, want, exact_weights: bool):
    """``got`` (a MetricState) against ``want``: counts exactly; sums of the weights exactly when they are integers;
    float sums within RTOL."""
    assert got.names == want.names and got.count == want.count
    close = (lambda a, b: a == b) if exact_weights else (lambda a, b: a == pytest.approx(b, rel=RTOL))
    assert close(got.weight, want.weight)
    assert got.hits.keys() == want.hits.keys()
    assert all(close(got.hits[k], want.hits[k]) for k in want.hits), (got.hits, want.hits)
    for field in ("nll", "entropy", "confidence"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=RTOL), field
    for n, b in want.bins.items():
        for row in (0, 2):  # weights, correct rows' weights
            if exact_weights:
                np.testing.assert_array_equal(got.bins[n][row], b[row])
            else:
                np.testing.assert_allclose(got.bins[n][row], b[row], rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(got.bins[n][1], b[1], rtol=RTOL, atol=1e-15)  # confidences


def assert_metrics(got, want):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=RTOL, abs=1e-15), name


def is_lazy_metrics(m) -> bool:
    """The metrics of a dask call: a 0-d dask array of object dtype, as the value is a 0-d dask array."""
    return isinstance(m, da.Array) and m.shape == () and m.dtype == object


def blocks_of(chunks):
    edges = np.cumsum((0,) + tuple(chunks))
    return list(zip(edges[:-1], edges[1:]))


# --- cross_entropy: chunkings, weights, ignored rows, reductions ----------------------------------------------------


@pytest.mark.parametrize("weights", ["integer", "fractional", "none"])
@pytest.mark.parametrize("chunking", list(ROW_CHUNKS))
@pytest.mark.parametrize("name", WITH_LOGIT_METRICS)
def test_logit_metrics_equal_the_whole_call(name, chunking, weights):
    x, y, w = logit_data(seed=2, weights="integer" if weights == "none" else weights)
    w = None if weights == "none" else w
    # the class axis split (rechunked to one chunk), labels and weights chunked unlike the logits (rechunked)
    X = da.from_array(x, chunks=(ROW_CHUNKS[chunking], 4))
    Y = da.from_array(y, chunks=17)
    W = None if w is None else da.from_array(w, chunks=29)
    loss, dloss = getattr(fl, name), getattr(fld, name)
    calls = {}
    for red in ("mean", "sum", "none"):
        calls[("value_and_grad", red)] = dloss.value_and_grad(X, Y, sample_weight=W, reduction=red, metrics=LOGIT)
        calls[("call", red)] = dloss(X, Y, sample_weight=W, reduction=red, metrics=LOGIT)
        calls[("plain", red)] = dloss.value_and_grad(X, Y, sample_weight=W, reduction=red)
    assert all(is_lazy_metrics(out[-1]) for key, out in calls.items() if key[0] != "plain")
    results = dict(zip(calls, sync(*calls.values())))
    _, _, whole = loss.value_and_grad(x, y, sample_weight=w, metrics=LOGIT)
    for red in ("mean", "sum", "none"):
        v, g, m = results[("value_and_grad", red)]
        v1, m1 = results[("call", red)]
        v0, g0 = results[("plain", red)]
        # the value and gradient of the plain dask call, bit for bit; the metrics of the whole in-memory call
        np.testing.assert_array_equal(v, v0)
        np.testing.assert_array_equal(v1, v0)
        np.testing.assert_array_equal(g, g0)
        for got in (m, m1):
            assert isinstance(got, flm.Metrics)
            assert_logit_state(got.state, whole.state, exact_weights=weights != "fractional")
            assert_metrics(got, whole)
        assert m.state == m1.state  # the same blocks, the same tree


def test_a_naive_average_of_the_blocks_differs():
    """The chunkings and weights above tell a merge of the blocks' sums from an average of the blocks' metrics."""
    x, y, w = logit_data(seed=2)
    whole = flm.logit_metrics(x, y, metrics=LOGIT, sample_weight=w)
    parts = [flm.logit_metrics(x[a:b], y[a:b], metrics=LOGIT, sample_weight=w[a:b])
             for a, b in blocks_of(ROW_CHUNKS["uneven"])]
    for name in LOGIT:
        naive = np.nanmean([p[name] for p in parts])
        assert abs(naive - whole[name]) > 1e3 * RTOL * abs(whole[name]), name


@pytest.mark.parametrize("weights", ["integer", "fractional"])
def test_one_tree_node_is_the_in_memory_merge(weights):
    """At most SPLIT_EVERY blocks: one node merges them, bit for bit merge_metric_states of the blocks' in-memory
    states (whatever the order of the blocks)."""
    x, y, w = logit_data(seed=3, weights=weights)
    chunks = ROW_CHUNKS["uneven"]
    assert len(chunks) <= fld.SPLIT_EVERY
    _, _, m = sync(*fld.cross_entropy.value_and_grad(da.from_array(x, chunks=(chunks, C)), y, sample_weight=w,
                                                     metrics=LOGIT, label_smoothing=0.1))
    parts = [fl.cross_entropy.value_and_grad(x[a:b], y[a:b], sample_weight=w[a:b], metrics=LOGIT,
                                             label_smoothing=0.1)[2].state for a, b in blocks_of(chunks)]
    assert m.state == flm.merge_metric_states(parts[::-1])
    for name, value in flm.merge_metric_states(parts).result().items():
        assert m[name] == value or (math.isnan(value) and math.isnan(m[name])), name


def test_ignore_index_leading_axes_and_options():
    """Another ignore_index, logits with two leading axes chunked along both, softcap (changes the metrics) and
    class weights (do not): the metrics of the whole call."""
    x, y, w = logit_data(seed=4)
    y = np.where(y == -100, 2, y)  # class 2 ignored below
    x3, y3, w3 = x[:200].reshape(8, 25, C), y[:200].reshape(8, 25), w[:200].reshape(8, 25)
    params = {"ignore_index": 2, "softcap": 3.0, "class_weight": np.linspace(0.5, 2.0, C)}
    X = da.from_array(x3, chunks=(3, 7, C))
    v, g, m = sync(*fld.cross_entropy.value_and_grad(X, y3, sample_weight=w3, metrics=LOGIT, **params))
    v0, g0, m0 = fl.cross_entropy.value_and_grad(x3, y3, sample_weight=w3, metrics=LOGIT, **params)
    assert m.state.count == m0.state.count == int(np.sum((y3 != 2) & (w3 != 0)))
    assert_logit_state(m.state, m0.state, exact_weights=True)
    assert_metrics(m, m0)
    assert v == pytest.approx(v0, rel=1e-14)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_every_host_backend(backend):
    require_backend(backend)
    x, y, w = logit_data(seed=5, weights="fractional")
    X = da.from_array(x, chunks=(ROW_CHUNKS["uneven"], C))
    v, m = sync(*fld.cross_entropy(X, y, sample_weight=w, metrics=LOGIT, backend=backend))
    v0, m0 = fl.cross_entropy(x, y, sample_weight=w, metrics=LOGIT, backend=backend)
    assert v == pytest.approx(v0, rel=1e-14)
    assert_logit_state(m.state, m0.state, exact_weights=False)
    p = np.random.default_rng(6).normal(size=500)
    t = (p + np.random.default_rng(7).normal(size=500) > 0).astype(np.float64)
    v, m = sync(*fld.binary_cross_entropy_with_logits(da.from_array(p, chunks=(300, 7, 193)), t, metrics=BINARY,
                                                      backend=backend))
    v0, m0 = fl.binary_cross_entropy_with_logits(p, t, metrics=BINARY, backend=backend)
    assert m.state.count == m0.state.count and m.state.correct == m0.state.correct
    np.testing.assert_array_equal(m.state.bins[64], m0.state.bins[64])
    np.testing.assert_array_equal(m.state.calibration[10][[0, 2]], m0.state.calibration[10][[0, 2]])
    np.testing.assert_allclose(m.state.calibration[10][1], m0.state.calibration[10][1], rtol=1e-14)
    assert_metrics(m, m0)


# --- the losses on a binary score -----------------------------------------------------------------------------------


BINARY_CHUNKS = {"uneven": ((25, 1, 14), (4, 2)), "one": ((40,), (6,)), "many": ((3,) * 13 + (1,), (1,) * 6)}


@pytest.mark.parametrize("weights", ["integer", "fractional", "none"])
@pytest.mark.parametrize("chunking", list(BINARY_CHUNKS))
@pytest.mark.parametrize("name", WITH_BINARY_METRICS)
def test_binary_metrics_equal_the_whole_call(name, chunking, weights):
    x, y, w = binary_data(name, seed=8, weights="integer" if weights == "none" else weights)
    if weights == "none":
        w = None
    else:
        w[3, :] = 0.0  # elements of weight 0 count nowhere
    x[5, 5] = x[6, 0] = 0.0 if REGISTRY[name].binary_scores == "logits" else 0.5  # negative predictions
    X = da.from_array(x, chunks=BINARY_CHUNKS[chunking])
    w_rows = None if w is None else w[:, 0]  # one weight per row, broadcast along the columns
    W = None if w is None else da.from_array(w_rows, chunks=9)
    loss, dloss = getattr(fl, name), getattr(fld, name)
    out = {red: (dloss.value_and_grad(X, y, sample_weight=W, reduction=red, metrics=BINARY),
                 dloss.value_and_grad(X, y, sample_weight=W, reduction=red)) for red in ("mean", "sum", "none")}
    out = sync(out)[0]
    _, whole = loss(x, y, sample_weight=w_rows, metrics=BINARY)
    exact = weights != "fractional"
    for red, ((v, g, m), (v0, g0)) in out.items():
        np.testing.assert_array_equal(v, v0)
        np.testing.assert_array_equal(g, g0)
        got, want = m.state, whole.state
        assert got.count == want.count == x.size and got.nan == want.nan == 0
        if exact:
            assert (got.weight, got.correct) == (want.weight, want.correct)
            np.testing.assert_array_equal(got.bins[64], want.bins[64])
            np.testing.assert_array_equal(got.calibration[10][[0, 2]], want.calibration[10][[0, 2]])
        else:
            assert (got.weight, got.correct) == pytest.approx((want.weight, want.correct), rel=RTOL)
            np.testing.assert_allclose(got.bins[64], want.bins[64], rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(got.calibration[10], want.calibration[10], rtol=RTOL, atol=1e-15)
        assert got.brier == pytest.approx(want.brier, rel=RTOL)
        assert_metrics(m, whole)


def test_binary_per_column_vector_and_nan():
    """A per-column pos_weight (pred's last axis rechunked to one chunk) leaves the metrics alone; a NaN score in
    one block makes every merged metric NaN, as in memory."""
    name = "binary_cross_entropy_with_logits"
    x, y, w = binary_data(name, seed=9, weights="fractional")
    X = da.from_array(x, chunks=(7, 2))
    pos_weight = np.linspace(0.5, 3.0, 6)
    v, g, m = sync(*fld.binary_cross_entropy_with_logits.value_and_grad(X, y, sample_weight=w, metrics=BINARY,
                                                                        pos_weight=pos_weight))
    v0, g0, m0 = fl.binary_cross_entropy_with_logits.value_and_grad(x, y, sample_weight=w, metrics=BINARY,
                                                                    pos_weight=pos_weight)
    assert v == pytest.approx(v0, rel=1e-14)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-15)
    assert_metrics(m, m0)
    x[30, 1] = np.nan
    _, m = sync(*fld.binary_cross_entropy_with_logits(da.from_array(x, chunks=(7, 2)), y, metrics=BINARY))
    assert m.state.nan == 1 and all(math.isnan(m[k]) for k in BINARY)


def test_weights_rescaled_for_the_mean():
    """float32 weights whose sum passes the float32 range: "mean" derivatives run every block on weights scaled by a
    power of two, and the metrics still weigh the weights as given (one more call of the block for them, as the
    in-memory call computes its metrics again): the in-memory metrics, which equal those of "sum"."""
    name = "binary_cross_entropy_with_logits"
    x, y, w = binary_data(name, shape=(400,), seed=17, weights="fractional")
    x, w = x.astype(np.float32), (w * 2.0**120).astype(np.float32)
    X, W = da.from_array(x, chunks=(150, 1, 249)), da.from_array(w, chunks=50)
    v, g, m = sync(*fld.binary_cross_entropy_with_logits.value_and_grad(X, y, sample_weight=W, metrics=BINARY))
    v0, g0, m0 = fl.binary_cross_entropy_with_logits.value_and_grad(x, y, sample_weight=w, metrics=BINARY)
    _, total = fl.binary_cross_entropy_with_logits(x, y, sample_weight=w, reduction="sum", metrics=BINARY)
    assert np.isfinite(v0) and v == pytest.approx(v0, rel=1e-6)
    assert m.state.count == m0.state.count and m.state.weight == pytest.approx(total.state.weight, rel=RTOL)
    for name in BINARY:
        assert m[name] == pytest.approx(m0[name], rel=1e-12), name


# --- fusedloss.metrics on dask arrays --------------------------------------------------------------------------------


def test_metric_functions_take_dask_arrays():
    x, y, w = logit_data(seed=10, weights="fractional")
    X = da.from_array(x, chunks=(ROW_CHUNKS["uneven"], C))
    lazy = flm.logit_metrics(X, y, metrics=LOGIT, sample_weight=w, ignore_index=-100)
    assert is_lazy_metrics(lazy)
    whole = flm.logit_metrics(x, y, metrics=LOGIT, sample_weight=w)
    got = lazy.compute(scheduler="sync")
    assert_logit_state(got.state, whole.state, exact_weights=False)
    p, t, _ = binary_data("binary_cross_entropy_with_logits", seed=11)
    lazy = flm.binary_logit_metrics(p, da.from_array(t, chunks=(9, 4)), metrics=BINARY)  # a dask target alone
    assert is_lazy_metrics(lazy)
    got, want = lazy.compute(scheduler="sync").state, flm.binary_logit_metrics(p, t, metrics=BINARY).state
    # counts exactly; the float sums (Brier, the calibration bins' sums of p) summed in another order
    assert (got.count, got.nan, got.correct) == (want.count, want.nan, want.correct)
    np.testing.assert_array_equal(got.bins[64], want.bins[64])
    np.testing.assert_array_equal(got.calibration[10][[0, 2]], want.calibration[10][[0, 2]])
    np.testing.assert_allclose(got.calibration[10][1], want.calibration[10][1], rtol=1e-14)
    assert got.brier == pytest.approx(want.brier, rel=1e-14)
    with pytest.raises(ValueError, match="logit_metrics: unknown metric 'brier'"):
        flm.logit_metrics(X, y, metrics=("brier",))


# --- the graph: one kernel call per block, errors when it is built ---------------------------------------------------


def test_one_kernel_call_per_block_reads_the_logits():
    """The value, the gradient and the metrics come from one task per block, the only tasks that read the logits."""
    x, y, w = logit_data(seed=12)
    X = da.from_array(x, chunks=(ROW_CHUNKS["many"], C))
    v, g, m = fld.cross_entropy.value_and_grad(X, y, sample_weight=w, metrics=LOGIT)
    graph = dict(m.__dask_graph__())
    assert dict(g.__dask_graph__()).keys() <= graph.keys() and dict(v.__dask_graph__()).keys() <= graph.keys()
    calls = [task for task in graph.values() if isinstance(task, tuple) and task and task[0] is fld._block]
    assert len(calls) == X.numblocks[0]
    logit_keys = {(X.name, i, 0) for i in range(X.numblocks[0])}
    readers = [task for task in graph.values() if isinstance(task, tuple) and logit_keys & set(_keys_in(task))]
    assert len(readers) == X.numblocks[0] and all(task[0] is fld._block for task in readers)


def _keys_in(task):
    for part in task:
        if isinstance(part, tuple) and part and isinstance(part[0], str):
            yield part
        if isinstance(part, (tuple, list)):
            yield from _keys_in(part)


def _error(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return type(info.value), str(info.value)


def test_errors_at_graph_construction_are_the_in_memory_ones():
    """Bad names, losses without metrics, soft targets, metrics with derivatives only: the in-memory call's error
    (type and message), raised when the graph is built (nothing is computed: the inputs would fail if it were)."""
    x, y, _ = logit_data(seed=13)
    X = da.from_array(x, chunks=(50, C))
    p, t, _ = binary_data("binary_cross_entropy_with_logits", seed=14)
    P = da.from_array(p, chunks=(9, 4))
    q = np.full((ROWS, C), 1.0 / C)
    cases = [
        ("cross_entropy", (x, y), (X, y), {"metrics": ("accuracy", "top0")}),
        ("cross_entropy", (x, y), (X, y), {"metrics": ("brier",)}),
        ("cross_entropy", (x, y), (X, y), {"metrics": 5}),
        ("cross_entropy", (x, y), (X, y), {"metrics": (5,)}),
        ("cross_entropy", (x, q), (X, q), {"metrics": ("accuracy",)}),
        ("categorical_focal", (x, y), (X, y), {"metrics": ("accuracy",)}),
        ("binary_cross_entropy_with_logits", (p, t), (P, t), {"metrics": ("top5",)}),
        ("binary_cross_entropy_with_logits", (p, t), (P, t), {"metrics": ("roc64", "ap32")}),
        ("mse", (p, t), (P, t), {"metrics": ("accuracy",)}),
    ]
    for name, args, lazy_args, kw in cases:
        for method in ("__call__", "value_and_grad"):
            want = _error(lambda: getattr(getattr(fl, name), method)(*args, **kw))
            assert _error(lambda: getattr(getattr(fld, name), method)(*lazy_args, **kw)) == want, (name, kw)
    for method in ("grad", "grad_hess"):  # no metrics keyword: the in-memory TypeError
        kind, message = _error(lambda: getattr(fld.cross_entropy, method)(X, y, metrics=("accuracy",)))
        assert kind is TypeError and "metrics" in message
        assert _error(lambda: getattr(fl.cross_entropy, method)(x, y, metrics=("accuracy",)))[0] is TypeError


# --- worker processes ----------------------------------------------------------------------------------------------


def test_on_a_local_cluster(client):
    """The states travel between processes: both kinds of metrics, and the tree over more blocks than one node."""
    x, y, w = logit_data(seed=15, weights="integer")
    p, t, pw = binary_data("binary_focal", seed=16, weights="integer")
    X = da.from_array(x, chunks=(ROW_CHUNKS["many"], C))
    P = da.from_array(p, chunks=BINARY_CHUNKS["many"])
    lazy = (*fld.cross_entropy.value_and_grad(X, y, sample_weight=w, metrics=LOGIT),
            *fld.binary_focal(P, t, sample_weight=pw, metrics=BINARY, gamma=2.0))
    _, _, m, _, bm = dask.compute(*lazy, scheduler=client.get)
    _, _, m0 = fl.cross_entropy.value_and_grad(x, y, sample_weight=w, metrics=LOGIT)
    _, bm0 = fl.binary_focal(p, t, sample_weight=pw, metrics=BINARY, gamma=2.0)
    assert_logit_state(m.state, m0.state, exact_weights=True)
    assert_metrics(m, m0)
    assert bm.state.count == bm0.state.count and bm.state.correct == bm0.state.correct
    np.testing.assert_array_equal(bm.state.bins[64], bm0.state.bins[64])
    assert_metrics(bm, bm0)
