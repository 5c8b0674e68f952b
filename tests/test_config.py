"""Backend choice and thread configuration.

Precedence: the call's ``backend=`` > ``use_backend(...)`` > ``set_backend(...)`` > ``FUSEDLOSS_BACKEND``
(read at import, so tested in a subprocess) > "auto", which takes the available host backend of highest
priority (cpp > numba > numpy). The precedence tests install recording stand-ins for the backends in the
backend registry, so they check the dispatcher whatever backends this machine has built.
"""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _config, _dispatch
from fusedloss._spec import REGISTRY
from fusedloss.backends import BackendEntry, numpy_ref

from conftest import HOST_BACKENDS, backend_rows, run_python

backends_mod = sys.modules["fusedloss.backends"]  # the package; fusedloss.backends is the function

P = np.array([0.5, 1.0, 2.0])
Y = np.array([0.0, 1.0, 3.0])


# --- recording stand-ins ------------------------------------------------------------------------------


def _fake_module(name, calls, supports=lambda spec, dtype: True):
    mod = types.ModuleType(f"fake_backend_{name}")
    mod.NAME = name
    mod.DEVICE = False
    mod.info = lambda: {"version": "fake", "threads": 1}
    mod.supports = supports

    def elementwise(*args, **kwargs):
        calls.append(name)
        return numpy_ref.elementwise(*args, **kwargs)

    def multiclass(*args, **kwargs):
        calls.append(name)
        return numpy_ref.multiclass(*args, **kwargs)

    mod.elementwise = elementwise
    mod.multiclass = multiclass
    return mod


@pytest.fixture
def fakes(monkeypatch):
    """Every host backend replaced by a recording stand-in; returns (calls, install_broken)."""
    calls: list[str] = []
    monkeypatch.setattr(_config, "_env_backend_value", None)
    for name in HOST_BACKENDS:
        old = backends_mod.REGISTRY[name]
        entry = BackendEntry(name, f"fake.{name}", priority=old.priority, device=old.device,
                             _loaded=_fake_module(name, calls), _tried=True)
        monkeypatch.setitem(backends_mod.REGISTRY, name, entry)

    def install_broken(name):
        old = backends_mod.REGISTRY[name]
        monkeypatch.setitem(backends_mod.REGISTRY, name, BackendEntry(
            name, "fusedloss.backends._no_such_backend_module", priority=old.priority, device=old.device))

    def install_unsupporting(name):
        old = backends_mod.REGISTRY[name]
        entry = BackendEntry(name, f"fake.{name}", priority=old.priority, device=old.device, _tried=True,
                             _loaded=_fake_module(name, calls, supports=lambda spec, dtype: dtype != np.float32))
        monkeypatch.setitem(backends_mod.REGISTRY, name, entry)

    return types.SimpleNamespace(calls=calls, broken=install_broken, unsupporting=install_unsupporting)


def _ran(fakes, fn=None):
    fakes.calls.clear()
    (fn or (lambda: fl.mse(P, Y)))()
    assert len(fakes.calls) == 1, fakes.calls
    return fakes.calls[0]


# --- precedence -----------------------------------------------------------------------------------------


def test_auto_prefers_cpp_then_numba_then_numpy(fakes):
    assert fl.get_backend() == "auto"
    assert _ran(fakes) == "cpp"
    fakes.broken("cpp")
    assert _ran(fakes) == "numba"  # silent fallback
    fakes.broken("numba")
    assert _ran(fakes) == "numpy"


def test_auto_skips_a_backend_that_does_not_support_the_dtype(fakes):
    fakes.unsupporting("cpp")
    assert _ran(fakes, lambda: fl.mse(P, Y)) == "cpp"
    assert _ran(fakes, lambda: fl.mse(P.astype(np.float32), Y)) == "numba"


def test_precedence_chain(fakes):
    assert _ran(fakes) == "cpp"  # auto
    fl.set_backend("numba")
    assert fl.get_backend() == "numba"
    assert _ran(fakes) == "numba"  # set_backend beats auto
    with fl.use_backend("numpy"):
        assert fl.get_backend() == "numpy"
        assert _ran(fakes) == "numpy"  # use_backend beats set_backend
        assert _ran(fakes, lambda: fl.mse(P, Y, backend="cpp")) == "cpp"  # the call's argument beats both
        assert _ran(fakes, lambda: fl.huber.grad_hess(P, Y, backend="numba")) == "numba"
        assert _ran(fakes, lambda: fl.mse(P, Y, backend="auto")) == "cpp"  # an explicit "auto" too
    assert _ran(fakes) == "numba"
    fl.set_backend(None)
    assert fl.get_backend() == "auto"
    assert _ran(fakes) == "cpp"


def test_set_backend_beats_environment(fakes, monkeypatch):
    monkeypatch.setattr(_config, "_env_backend_value", "numba")
    assert fl.get_backend() == "numba"
    assert _ran(fakes) == "numba"
    fl.set_backend("numpy")
    assert _ran(fakes) == "numpy"
    fl.set_backend(None)
    assert _ran(fakes) == "numba"
    with fl.use_backend("cpp"):
        assert _ran(fakes) == "cpp"


def test_every_entry_point_honours_the_choice(fakes):
    with fl.use_backend("numba"):
        for call in (lambda: fl.mse(P, Y), lambda: fl.mse.value_and_grad(P, Y), lambda: fl.mse.grad(P, Y),
                     lambda: fl.mse.grad_hess(P, Y), lambda: fl.mse.grad_hess(P, Y, hessian="ones")):
            assert _ran(fakes, call) == "numba"


def test_explicit_broken_backend_raises_with_cause(fakes):
    fakes.broken("cpp")
    for request in (lambda: fl.mse(P, Y, backend="cpp"), ):
        with pytest.raises(fl.BackendUnavailable, match="'cpp' is not available") as info:
            request()
        assert isinstance(info.value.__cause__, ImportError)
        assert "_no_such_backend_module" in str(info.value)
    fl.set_backend("cpp")
    with pytest.raises(fl.BackendUnavailable, match="cpp"):
        fl.mse(P, Y)
    fl.set_backend(None)
    with fl.use_backend("cpp"), pytest.raises(fl.BackendUnavailable, match="cpp"):
        fl.mse.grad(P, Y)


def test_explicit_backend_without_the_dtype_raises(fakes):
    fakes.unsupporting("numba")
    with pytest.raises(fl.BackendUnavailable, match="(?s)numba.*float32"):
        fl.mse(P.astype(np.float32), Y, backend="numba")


def test_backend_is_validated_before_running(fakes):
    fakes.calls.clear()
    with pytest.raises(ValueError, match="backend"):
        fl.mse(P, Y, backend="fortran")
    assert fakes.calls == []


# --- the dispatcher's caches never serve a stale choice ------------------------------------------------------
# A loss caches the backend it resolved per (name, dtype, backend-table generation) and its checked keyword
# parameters. Each test below first repeats one call so that everything it can cache is cached, then changes
# one thing and checks that the very next call sees it.

X = np.random.default_rng(0).standard_normal((4, 3))
LABELS = np.array([0, 2, 1, 2])

_REPEATED_CALLS = {
    "value_and_grad with grad_out": lambda dtype: fl.mse.value_and_grad(
        P.astype(dtype), Y.astype(dtype), grad_out=np.empty(3, dtype)),
    "value": lambda dtype: fl.mse(P.astype(dtype), Y.astype(dtype)),
    "grad_hess with a parameter": lambda dtype: fl.huber.grad_hess(P.astype(dtype), Y.astype(dtype), delta=0.5),
    "weighted": lambda dtype: fl.mse(P.astype(dtype), Y.astype(dtype), sample_weight=[1.0, 2.0, 0.5]),
    "cross_entropy with labels": lambda dtype: fl.cross_entropy.value_and_grad(X.astype(dtype), LABELS),
}


def _warm(fakes, call, dtype=np.float64, times=3):
    for _ in range(times):
        call(dtype)
    fakes.calls.clear()


@pytest.mark.parametrize("call", list(_REPEATED_CALLS.values()), ids=list(_REPEATED_CALLS))
def test_a_cached_backend_choice_follows_every_change_of_setting(fakes, monkeypatch, call):
    _warm(fakes, call)
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"
    with fl.use_backend("numba"):
        assert _ran(fakes, lambda: call(np.float64)) == "numba"
        with fl.use_backend("numpy"):
            assert _ran(fakes, lambda: call(np.float64)) == "numpy"
        assert _ran(fakes, lambda: call(np.float64)) == "numba"
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"
    fl.set_backend("numpy")
    assert _ran(fakes, lambda: call(np.float64)) == "numpy"
    fl.set_backend(None)
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"
    monkeypatch.setattr(_config, "_env_backend_value", "numba")  # what FUSEDLOSS_BACKEND sets at import
    assert _ran(fakes, lambda: call(np.float64)) == "numba"
    monkeypatch.setattr(_config, "_env_backend_value", None)
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"


@pytest.mark.parametrize("call", list(_REPEATED_CALLS.values()), ids=list(_REPEATED_CALLS))
def test_a_cached_backend_choice_follows_the_backend_table_and_the_dtype(fakes, call):
    fakes.unsupporting("cpp")  # the cpp stand-in refuses float32
    _warm(fakes, call, np.float64)
    _warm(fakes, call, np.float32)
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"
    assert _ran(fakes, lambda: call(np.float32)) == "numba"
    assert _ran(fakes, lambda: call(np.float64)) == "cpp"
    fakes.broken("cpp")  # the table changes: nothing resolved before may be used again
    assert _ran(fakes, lambda: call(np.float64)) == "numba"
    fakes.broken("numba")
    assert _ran(fakes, lambda: call(np.float32)) == "numpy"


@pytest.mark.parametrize("call", list(_REPEATED_CALLS.values()), ids=list(_REPEATED_CALLS))
def test_a_thread_count_change_reaches_the_next_call(fakes, monkeypatch, call):
    seen = []
    module = backends_mod.REGISTRY["cpp"].load()
    for kernel, where in (("elementwise", 10), ("multiclass", 14)):  # nthreads in the kernel contract
        real = getattr(module, kernel)
        monkeypatch.setattr(module, kernel, lambda *args, real=real, where=where: (
            seen.append(args[where]), real(*args))[1])
    fl.set_num_threads(2)
    _warm(fakes, call)
    seen.clear()
    call(np.float64)
    fl.set_num_threads(3)
    call(np.float64)
    monkeypatch.setattr(_config, "_env_threads_value", 5)  # what FUSEDLOSS_NUM_THREADS sets at import
    fl.set_num_threads(None)
    call(np.float64)
    monkeypatch.setattr(_config, "_env_threads_value", None)
    call(np.float64)
    assert seen == [2, 3, 5, _config.default_num_threads()]


# --- use_backend -------------------------------------------------------------------------------------------


def test_use_backend_restores_after_exception_and_when_nested(monkeypatch):
    monkeypatch.setattr(_config, "_env_backend_value", None)
    assert fl.get_backend() == "auto"
    with pytest.raises(ZeroDivisionError):
        with fl.use_backend("numpy"):
            assert fl.get_backend() == "numpy"
            1 / 0
    assert fl.get_backend() == "auto"
    with fl.use_backend("numpy"):
        with fl.use_backend("numba"):
            assert fl.get_backend() == "numba"
            with pytest.raises(KeyError), fl.use_backend("cpp"):
                raise KeyError
            assert fl.get_backend() == "numba"
        assert fl.get_backend() == "numpy"
    assert fl.get_backend() == "auto"


def test_use_backend_rejects_unknown_names_without_entering():
    with pytest.raises(ValueError, match="'gpu'"):
        with fl.use_backend("gpu"):
            pass  # pragma: no cover
    assert fl.get_backend() in ("auto", _config._env_backend_value)


def test_use_backend_is_local_to_the_thread(monkeypatch):
    monkeypatch.setattr(_config, "_env_backend_value", None)
    seen = {}
    with fl.use_backend("numpy"):
        t = threading.Thread(target=lambda: seen.setdefault("other", fl.get_backend()))
        t.start()
        t.join()
        assert fl.get_backend() == "numpy"
    assert seen["other"] == "auto"
    # set_backend, by contrast, is process-wide
    fl.set_backend("numpy")
    t = threading.Thread(target=lambda: seen.__setitem__("global", fl.get_backend()))
    t.start()
    t.join()
    assert seen["global"] == "numpy"


@pytest.mark.parametrize("bad", ["gpu", "", None, 3, "NUMPY"])
def test_set_backend_validation(bad):
    if bad is None:
        fl.set_backend(None)  # None clears, it is not an error
        return
    with pytest.raises(ValueError, match="backend"):
        fl.set_backend(bad)


# --- the environment (read at import: a fresh interpreter each) ------------------------------------------


def test_environment_backend_and_its_place_in_the_precedence():
    r = run_python("""
        import numpy as np, fusedloss as fl
        from fusedloss import _dispatch
        from fusedloss._spec import REGISTRY
        resolve = lambda: _dispatch.resolve_host_backend(None, REGISTRY["mse"], np.dtype("float64")).NAME
        print(fl.get_backend(), resolve())
        fl.set_backend("auto"); print(fl.get_backend())
        fl.set_backend(None)
        with fl.use_backend("auto"): print(fl.get_backend())
        print(fl.get_backend(), fl.mse(np.array([3.0]), np.array([1.0])))
    """, FUSEDLOSS_BACKEND=" NumPy ")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["numpy numpy", "auto", "auto", "numpy 4.0"]


def test_environment_backend_invalid_value_is_reported():
    r = run_python("import fusedloss", FUSEDLOSS_BACKEND="fortran")
    assert r.returncode != 0
    assert "FUSEDLOSS_BACKEND" in r.stderr and "'fortran'" in r.stderr


def test_environment_backend_unavailable_raises_on_use():
    missing = [n for n in ("cpp", "numba") if not backend_rows()[n]["available"]]
    if not missing:
        pytest.skip("every compiled backend is available here")
    r = run_python(f"""
        import numpy as np, fusedloss as fl
        try:
            fl.mse(np.array([1.0]), np.array([0.0]))
        except fl.BackendUnavailable as e:
            print("unavailable:", e)
    """, FUSEDLOSS_BACKEND=missing[0])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("unavailable:") and missing[0] in r.stdout


def test_environment_threads():
    r = run_python("import fusedloss as fl; print(fl.get_num_threads()); fl.set_num_threads(2); "
                   "print(fl.get_num_threads()); fl.set_num_threads(None); print(fl.get_num_threads())",
                   FUSEDLOSS_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "2", "3"]
    for bad in ("0", "-2", "two", "1.5"):
        r = run_python("import fusedloss", FUSEDLOSS_NUM_THREADS=bad)
        assert r.returncode != 0 and "FUSEDLOSS_NUM_THREADS" in r.stderr and repr(bad) in r.stderr, bad


# --- threads ---------------------------------------------------------------------------------------------


def test_set_num_threads(monkeypatch):
    monkeypatch.setattr(_config, "_env_threads_value", None)
    default = fl.get_num_threads()
    assert default == _config.default_num_threads() >= 1
    fl.set_num_threads(3)
    assert fl.get_num_threads() == 3
    fl.set_num_threads(None)
    assert fl.get_num_threads() == default
    for bad in (0, -1, 1.5, "2", True, 2.0):
        with pytest.raises(ValueError, match="set_num_threads"):
            fl.set_num_threads(bad)
    assert fl.get_num_threads() == default


def test_thread_count_reaches_the_kernel(fakes, monkeypatch):
    seen = []
    real = numpy_ref.elementwise

    def spy(*args, **kwargs):
        seen.append(args[10])  # nthreads, after the ten arrays and scalars of the kernel contract
        return real(*args, **kwargs)

    monkeypatch.setattr(backends_mod.REGISTRY["cpp"].load(), "elementwise", spy)
    fl.set_num_threads(5)
    fl.mse(P, Y)
    fl.set_num_threads(1)
    fl.mse.grad(P, Y)
    assert seen == [5, 1]


# --- the backend table --------------------------------------------------------------------------------------


def test_backends_table():
    rows = fl.backends()
    names = [r["name"] for r in rows]
    assert sorted(names) == sorted(backends_mod.REGISTRY)
    assert {"cpp", "numba", "numpy", "cuda"} <= set(names)
    priorities = [r["priority"] for r in rows]
    assert priorities == sorted(priorities, reverse=True)
    for r in rows:
        assert isinstance(r["available"], bool)
        assert r["device"] == (r["name"] == "cuda")
        if r["available"]:
            assert "reason" not in r
        else:
            assert isinstance(r.get("reason"), str) and r["reason"], r
    numpy_row = next(r for r in rows if r["name"] == "numpy")
    assert numpy_row["available"] and numpy_row["version"] == np.__version__
    host = [r["name"] for r in rows if not r["device"]]
    assert host == ["cpp", "numba", "numpy"]  # the order "auto" tries them in


def test_backends_table_reports_the_import_error(fakes):
    fakes.broken("numba")
    row = next(r for r in fl.backends() if r["name"] == "numba")
    assert row["available"] is False
    assert "ModuleNotFoundError" in row["reason"] and "_no_such_backend_module" in row["reason"]


def test_auto_uses_the_best_available_real_backend(monkeypatch):
    monkeypatch.setattr(_config, "_env_backend_value", None)
    rows = backend_rows()
    best = next(n for n in ("cpp", "numba", "numpy") if rows[n]["available"])
    for dtype in (np.float32, np.float64):
        module = _dispatch.resolve_host_backend(None, REGISTRY["mse"], np.dtype(dtype))
        assert module.NAME == best
