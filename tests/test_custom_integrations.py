"""Custom losses in the places users meet them: a second process (cached: no SymPy, no recompilation),
fusedloss.torch (autograd, gradcheck) and fusedloss.boosting (LightGBM / XGBoost objectives, metrics)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusedloss as fl

from conftest import require_backend
from custom_defs import huber


@pytest.fixture(scope="module")
def my_huber(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FUSEDLOSS_CACHE_DIR", str(tmp_path_factory.mktemp("fusedloss-cache")))
    loss = fl.elementwise_loss(huber, params={"delta": (1.0, "positive")}, name="integration_huber")
    yield loss
    loss.unregister()
    mp.undo()


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fusedloss as fl
    from fusedloss import sym
    from fusedloss.backends import numba_cpu

    @fl.elementwise_loss(params={"scale": (2.0, "positive")}, name="cached_cauchy")
    def cached_cauchy(p, y, scale):
        return scale**2 / 2 * sym.log(1 + ((p - y) / scale) ** 2)

    sympy_imported = "sympy" in sys.modules
    value = cached_cauchy(np.linspace(-3, 3, 11), np.zeros(11), backend="numba")
    serial = numba_cpu._KERNELS["cached_cauchy"]
    print(json.dumps({"sympy": sympy_imported, "value": value, "hits": sum(serial.stats.cache_hits.values()),
                      "misses": sum(serial.stats.cache_misses.values())}))
""")


def test_second_process_uses_the_caches(tmp_path):
    """The first process derives and compiles; the second imports the generated module (SymPy is not even
    imported) and loads the compiled kernel from Numba's cache."""
    require_backend("numba")
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env = {**os.environ, "FUSEDLOSS_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")]))}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SECOND_PROCESS], capture_output=True, text=True, env=env,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["sympy"] and not second["sympy"]
    assert second["misses"] == 0 and second["hits"] >= 1
    assert first["value"] == second["value"]
    assert len(list(tmp_path.glob("custom/cached_cauchy_*.py"))) == 1


# --- torch --------------------------------------------------------------------------------------------------


def test_torch_module_and_functional(my_huber):
    torch = pytest.importorskip("torch")
    import fusedloss.torch as flt

    x = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    t = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    module = flt.FusedLoss(my_huber, delta=0.5)
    assert "integration_huber" in repr(module)
    value = module(x, t)
    value.backward()
    expected = torch.nn.functional.huber_loss(x.detach().requires_grad_(), t, delta=0.5)
    x2 = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.huber_loss(x2, t, delta=0.5)
    ref.backward()
    torch.testing.assert_close(value, expected.detach())
    torch.testing.assert_close(x.grad, x2.grad)
    # the functional form, by object and by name, passes gradcheck in float64
    xs = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    ts = xs.detach() + torch.linspace(-2, 2, 12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: flt.loss(my_huber, a, ts, delta=0.7), (xs,))
    assert torch.autograd.gradcheck(lambda a: flt.loss("integration_huber", a, ts, reduction="sum"), (xs,))


# --- boosting -----------------------------------------------------------------------------------------------


def test_boosting_objectives_match_builtin(my_huber):
    import fusedloss.boosting as flb

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    pred = rng.normal(size=200)
    w = rng.uniform(0.5, 1.5, 200)
    ours = flb.gradient_hessian(my_huber, y, pred, w, delta=0.5)
    builtin = flb.gradient_hessian("huber", y, pred, w, delta=0.5)
    for a, b in zip(ours, builtin):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    assert flb.metric_value(my_huber, y, pred, w, delta=0.5) == pytest.approx(
        flb.metric_value("huber", y, pred, w, delta=0.5), rel=1e-14)

    if importlib.util.find_spec("lightgbm") is not None:
        fobj = flb.lightgbm_objective(my_huber, delta=0.5)
        assert fobj.__name__ == "fusedloss_integration_huber"
        g, h = fobj.sklearn(y, pred, w)  # float32, the dtype LightGBM keeps: the float64 values rounded
        assert g.dtype == h.dtype == np.float32
        np.testing.assert_allclose(g, builtin[0], rtol=2.0**-24)
        np.testing.assert_allclose(h, builtin[1], rtol=2.0**-24)
        name, value, higher_better = flb.lightgbm_metric(my_huber, api="sklearn", delta=0.5)(y, pred, w)
        assert name == "integration_huber" and not higher_better
    if importlib.util.find_spec("xgboost") is not None:
        obj = flb.xgboost_objective(my_huber, api="sklearn", delta=0.5)
        g, h = obj(y, pred, w)
        np.testing.assert_allclose(g, builtin[0], rtol=1e-14)


def test_lightgbm_trains_with_custom_objective(my_huber):
    lgb = pytest.importorskip("lightgbm")
    import fusedloss.boosting as flb

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 5))
    y = X[:, 0] * 2 + rng.normal(scale=0.3, size=400)
    params = {"verbose": -1, "num_leaves": 7, "learning_rate": 0.2, "min_data_in_leaf": 5}
    custom = lgb.train({**params, "objective": flb.lightgbm_objective(my_huber, delta=1.0)},
                       lgb.Dataset(X, y), num_boost_round=20)
    builtin = lgb.train({**params, "objective": flb.lightgbm_objective("huber", delta=1.0)},
                        lgb.Dataset(X, y), num_boost_round=20)
    np.testing.assert_allclose(custom.predict(X), builtin.predict(X), rtol=1e-12, atol=1e-12)


def test_torch_sees_losses_defined_after_its_import():
    """fusedloss.torch imported first, the custom loss defined later (the order a notebook has)."""
    torch = pytest.importorskip("torch")
    import fusedloss.torch as flt

    def sq(p, y, scale):
        return scale * (p - y) ** 2

    late = fl.elementwise_loss(sq, params={"scale": (2.0, "positive")}, name="defined_after_torch")
    try:
        x = torch.linspace(-1, 1, 9, dtype=torch.float64, requires_grad=True)
        t = torch.zeros(9, dtype=torch.float64)
        value = flt.FusedLoss(late, scale=3.0)(x, t)
        value.backward()
        torch.testing.assert_close(value, 3.0 * (x.detach() ** 2).mean())
        torch.testing.assert_close(x.grad, 6.0 * x.detach() / 9)
    finally:
        late.unregister()
