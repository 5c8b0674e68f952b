"""cross_entropy's metrics on the Numba-CUDA backend: the per-row rank, confidence, -log p_t and entropy from the
block kernel's passes, folded on the host into the same metrics as the host backends'.

Oracles: the NumPy specification of the per-row arrays (``_logit_metrics.row_metrics``) and the host backends'
``metrics=`` results. Runs on a GPU or on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda``):
small sizes, small blocks (rows side by side, several strides per thread), every option.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _logit_metrics

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
    with pytest.raises(TypeError, match="the metrics of a binary score take host arrays"):
        fl.binary_cross_entropy_with_logits(_dev(x[0]), _dev((x[0] > 0).astype(float)), metrics=("accuracy",))
