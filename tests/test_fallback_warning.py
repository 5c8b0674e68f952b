"""The one-time warning when "auto" falls back because the compiled extension did not import.

"auto" warns once per process, saying why backend "cpp" is missing and how to build it; a backend chosen
by name never warns, nor does "auto" when cpp imported (even where it does not support a dtype). The
backends are recording stand-ins in the registry (as in test_config), so this runs whatever is built here;
the last test runs the real thing in a fresh interpreter whose import of the extension fails.
"""

from __future__ import annotations

import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _config
from fusedloss.backends import BackendEntry, CompiledBackendMissingWarning, numpy_ref

from conftest import HOST_BACKENDS, require_backend, run_python

backends_mod = sys.modules["fusedloss.backends"]

P = np.array([0.5, 1.0, 2.0])
Y = np.array([0.0, 1.0, 3.0])


def _stand_in(name, calls, supports=lambda spec, dtype: True):
    mod = types.ModuleType(f"fake_backend_{name}")
    mod.NAME, mod.DEVICE, mod.supports = name, False, supports
    mod.info = lambda: {"version": "fake"}

    def elementwise(*args, **kwargs):
        calls.append(name)
        return numpy_ref.elementwise(*args, **kwargs)

    mod.elementwise = elementwise
    return mod


@pytest.fixture
def registry(monkeypatch):
    """Stand-ins for every host backend, the warning not yet given; returns the list of backends run."""
    calls: list[str] = []
    monkeypatch.setattr(_config, "_env_backend_value", None)
    monkeypatch.setattr(backends_mod, "_fallback_warned", [])
    for name in HOST_BACKENDS:
        old = backends_mod.REGISTRY[name]
        monkeypatch.setitem(backends_mod.REGISTRY, name, BackendEntry(
            name, f"fake.{name}", priority=old.priority, _loaded=_stand_in(name, calls), _tried=True))
    return calls


def _break_cpp(monkeypatch, error):
    monkeypatch.setitem(backends_mod.REGISTRY, "cpp", BackendEntry("cpp", "fake.cpp", priority=30,
                                                                   _error=error, _tried=True))


def test_auto_warns_once_saying_why_and_how_to_build(registry, monkeypatch):
    _break_cpp(monkeypatch, ImportError("cannot import name '_core' from 'fusedloss'"))
    with pytest.warns(CompiledBackendMissingWarning) as record:
        fl.mse(P, Y)
    assert registry == ["numba"]
    assert len(record) == 1
    message = str(record[0].message)
    assert "cannot import name '_core'" in message  # the reason
    assert "'numba'" in message and "C++17" in message and "pip install" in message  # where it runs, the fix
    assert record[0].filename == __file__  # attributed to the caller, not to fusedloss's internals
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any further warning would raise
        fl.mse(P, Y)
        fl.huber.value_and_grad(P, Y)  # another loss: resolved anew, still silent
        fl.mse(P.astype(np.float32), Y.astype(np.float32))
    assert registry == ["numba"] * 4


def test_a_backend_chosen_by_name_never_warns(registry, monkeypatch):
    _break_cpp(monkeypatch, ImportError("no compiled extension"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.mse(P, Y, backend="numba")
        with fl.use_backend("numba"):
            fl.mse(P, Y)
        fl.set_backend("numba")
        try:
            fl.huber(P, Y)
        finally:
            fl.set_backend(None)
        monkeypatch.setattr(_config, "_env_backend_value", "numba")  # FUSEDLOSS_BACKEND=numba (read at import)
        fl.mse(P, Y)
        monkeypatch.setattr(_config, "_env_backend_value", None)
    assert registry == ["numba"] * 4
    assert backends_mod._fallback_warned == []
    with pytest.warns(CompiledBackendMissingWarning):  # and "auto" afterwards still warns (once)
        fl.mse(P, Y)


def test_no_warning_when_the_extension_imported(registry, monkeypatch):
    old = backends_mod.REGISTRY["cpp"]
    monkeypatch.setitem(backends_mod.REGISTRY, "cpp", BackendEntry(
        "cpp", "fake.cpp", priority=old.priority, _tried=True,
        _loaded=_stand_in("cpp", registry, supports=lambda spec, dtype: dtype != np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.mse(P, Y)
        fl.mse(P.astype(np.float32), Y.astype(np.float32))  # cpp lacks this dtype: numba, silently
    assert registry == ["cpp", "numba"]


def test_without_the_extension_auto_runs_numba_and_warns_once():
    """A process where ``fusedloss._core`` does not import (as after an install without a compiler): the
    table says why cpp is missing, "auto" runs the real numba kernels (elementwise and multiclass) with the
    results of backend="numba", and the first call warns, once, from the caller's line."""
    require_backend("numba")
    code = textwrap.dedent("""
        import sys
        sys.modules["fusedloss._core"] = None  # its import now raises ImportError
        import warnings
        import numpy as np
        import fusedloss as fl
        from fusedloss.backends import CompiledBackendMissingWarning
        print(fl.__file__)
        rows = {row["name"]: row for row in fl.backends()}
        print(rows["cpp"]["available"], "fusedloss._core" in rows["cpp"]["reason"], rows["numba"]["available"])
        p = np.linspace(-3.0, 3.0, 1000, dtype=np.float32)
        y = np.cos(p)
        x = np.linspace(-2.0, 2.0, 4 * 40, dtype=np.float32).reshape(4, 40)
        t = np.array([0, 5, 39, 7])
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            auto = [fl.mse.value_and_grad(p, y), fl.cross_entropy.value_and_grad(x, t), fl.mse(p, y)]  # CALLER
        named = [fl.mse.value_and_grad(p, y, backend="numba"), fl.cross_entropy.value_and_grad(x, t, backend="numba")]
        ours = [w for w in seen if issubclass(w.category, CompiledBackendMissingWarning)]
        print(len(seen), len(ours), "'numba'" in str(ours[0].message), "fusedloss._core" in str(ours[0].message))
        print(ours[0].filename, ours[0].lineno)
        print(all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(auto, named)))
    """)
    caller = next(i for i, line in enumerate(code.splitlines(), 1) if line.endswith("# CALLER"))
    r = run_python(code, timeout=600)  # numba may compile the kernels (cached on disk afterwards)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == fl.__file__  # this fusedloss, not another installed copy
    assert lines[1:] == ["False True True", "1 1 True True", f"<string> {caller}", "True"]
