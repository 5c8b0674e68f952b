"""test_row_rule.py's rules on the Numba-CUDA backend, with device arrays: NaN rows, ignored rows, masked and
+inf logits (the one-thread-per-row kernel and cross_entropy's block-per-row kernel, whose online logsumexp
sees an all -inf row under softcap only through the raw max), and weighted means whose sums overflow.

Runs on a GPU, or on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import assert_close, backend_skip_reason, full_params, multiclass_cases
from test_row_rule import _big_and_small, _data

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Blocks of at most 32 threads (the simulator runs each thread as a Python thread)."""
    from fusedloss.backends import _cuda_rows

    monkeypatch.setattr(_cuda_rows, "MAX_ROW_THREADS", 32)


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


@pytest.mark.parametrize("name,params,form", multiclass_cases())
def test_nan_rows_ignored_rows_and_the_reduction_on_the_device(name, params, form):
    dtype = np.float64
    x, t, w, bad, ignored = _data(name, params, form, dtype)
    loss = getattr(fl, name)
    v, g = loss.value_and_grad(_dev(x), _dev(t), sample_weight=_dev(w), reduction="none", **params)
    v, g = _host(v), _host(g)
    assert np.all(np.isnan(v[bad])) and np.all(np.isnan(g[bad]))
    assert np.all(v[ignored] == 0) and np.all(g[ignored] == 0)
    ref_v, ref_g, _ = _reference.reduce_multiclass(name, x, t, soft=form == "soft", reduction="none",
                                                   sample_weight=w, **full_params(name, params))
    assert_close(v, ref_v, dtype, err_msg="values")
    assert_close(g, ref_g, dtype, err_msg="gradients")
    vm, gm = loss.value_and_grad(_dev(x), _dev(t), sample_weight=_dev(w), reduction="mean", **params)
    assert math.isnan(vm)
    keep = [r for r in range(x.shape[0]) if r not in bad]
    assert np.all(np.isfinite(_host(gm)[keep]))


@pytest.mark.parametrize("opts", [{}, {"softcap": 3.0}], ids=["plain", "softcap"])
def test_block_kernel_masked_and_inf_rows(opts):
    """cross_entropy's block-per-row kernel: all -inf (also under softcap, where every capped logit is finite),
    +inf, a masked label and NaN, against the reference."""
    ninf = -np.inf
    x = np.array([[ninf] * 40, [0.5] * 39 + [np.inf], [ninf] + [0.25] * 39, [0.1] * 39 + [np.nan]])
    x[:, 5] = np.where(np.isfinite(x[:, 5]), 1.5, x[:, 5])
    t = np.array([3, 2, 0, 1])
    v, g = fl.cross_entropy.value_and_grad(_dev(x), _dev(t), reduction="none", **opts)
    ref_v, ref_g, _ = _reference.reduce_multiclass("cross_entropy", x, t, reduction="none",
                                                   **full_params("cross_entropy", opts))
    assert np.isnan(ref_v[0]) and np.isnan(ref_v[3]) and not np.isnan(ref_v[2])
    assert_close(_host(v), ref_v, np.float64, err_msg="values")
    assert_close(_host(g), ref_g, np.float64, err_msg="gradients")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_weights_whose_sum_overflows_on_the_device(dtype):
    p, y = np.array([1.0, 2.0], dtype), np.zeros(2, dtype)
    big = 1e308 if dtype == np.float64 else 3e38
    v, g = fl.mse.value_and_grad(_dev(p), _dev(y), sample_weight=_dev(np.array([big, big], dtype)))
    assert v == 2.5 and _host(g).tolist() == [1.0, 2.0]
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(dtype)
    t = np.arange(6) % 5
    big_w, small_w = _big_and_small(np.linspace(0.5, 1.0, 6), dtype)
    for name in ("cross_entropy", "multi_margin"):
        v, g = getattr(fl, name).value_and_grad(_dev(x), _dev(t), sample_weight=_dev(big_w))
        v1, g1 = getattr(fl, name).value_and_grad(x, t, sample_weight=small_w, backend="numpy")
        assert_close(v, v1, dtype, err_msg=f"{name} value")
        assert_close(_host(g), g1, dtype, err_msg=f"{name} gradient")
    if dtype == np.float64:
        cw = np.linspace(0.5, 2.0, 5)
        v, g = fl.cross_entropy.value_and_grad(_dev(x), _dev(t), class_weight=cw * 2.0**1022)
        v1, g1 = fl.cross_entropy.value_and_grad(x, t, class_weight=cw, backend="numpy")
        assert_close(v, v1, dtype, err_msg="class weights value")
        assert_close(_host(g), g1, dtype, err_msg="class weights gradient")


def test_every_multiclass_loss_runs_here():
    assert {c.values[0] for c in multiclass_cases()} == {n for n, s in REGISTRY.items() if s.kind == "multiclass"}
