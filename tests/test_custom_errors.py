"""Custom losses: what a definition refuses, and what the message says (untraceable formulas, unknown or
badly ranged parameters, wrong supplied derivatives, formulas that are not differentiable in p, names, SymPy
missing). Definitions that fail compile nothing, so these tests are cheap.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import sym
from fusedloss._losses import LOSSES
from fusedloss._spec import REGISTRY


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDLOSS_CACHE_DIR", str(tmp_path))
    before = set(REGISTRY)
    yield tmp_path
    for name in set(REGISTRY) - before:  # anything a test defined
        LOSSES[name].unregister()


def test_python_if_points_to_where():
    def branchy(p, y):
        if p > y:
            return p - y
        return y - p

    with pytest.raises(TypeError, match=r"branchy: the formula branches on a symbolic value .*sym\.where"):
        fl.elementwise_loss(branchy)


def test_python_and_or_points_to_ampersand():
    def both(p, y):
        return sym.where(p > 0 and y > 0, p, y)

    with pytest.raises(TypeError, match=r"combine conditions with &, \|, ~"):
        fl.elementwise_loss(both)


@pytest.mark.parametrize("call", [math.exp, np.exp], ids=["math", "numpy"])
def test_math_or_numpy_function_points_to_sym(call):
    def uses_exp(p, y):
        return call(p - y)

    with pytest.raises(TypeError, match=r"calls a math or NumPy function .*sym\.exp"):
        fl.elementwise_loss(uses_exp, name="uses_exp")


def test_returns_a_condition():
    with pytest.raises(TypeError, match=r"returned a condition .*sym\.where"):
        fl.elementwise_loss(lambda p, y: p > y, name="cond")


def test_returns_something_else():
    with pytest.raises(TypeError, match="returned str 'x', not a formula"):
        fl.elementwise_loss(lambda p, y: "x", name="text")


def test_unknown_parameter_in_params():
    def f(p, y, delta):
        return delta * (p - y) ** 2

    with pytest.raises(TypeError, match=r"f: unknown parameter\(s\) gamma in params=.*takes delta after p, y"):
        fl.elementwise_loss(f, params={"delta": 1.0, "gamma": 2.0})


def test_parameter_without_default():
    def f(p, y, delta):
        return delta * (p - y) ** 2

    with pytest.raises(TypeError, match=r"parameter 'delta' has no default: give one in params="):
        fl.elementwise_loss(f)


def test_signature_defaults_are_parameters():
    @fl.elementwise_loss
    def scaled(p, y, k=3.0):
        return k * (p - y) ** 2

    assert scaled.spec.defaults() == {"k": 3.0}
    assert scaled(np.array([1.0]), np.zeros(1), backend="numpy") == 3.0
    assert scaled(np.array([1.0]), np.zeros(1), k=0.5, backend="numpy") == 0.5


@pytest.mark.parametrize("params, error, match", [
    ({"delta": (-1.0, "positive")}, ValueError, r"the default of 'delta' must be a finite number > 0, got -1.0"),
    ({"delta": (1.0, "sideways")}, ValueError, r"the range of 'delta' must be one of .*'positive'"),
    ({"delta": "big"}, TypeError, r"the default of 'delta' must be a number"),
    ({"delta": (1.0, (2.0, 3.0))}, ValueError, r"the default of 'delta' must be a number in \[2.0, 3.0\]"),
])
def test_bad_parameter_ranges(params, error, match):
    def f(p, y, delta):
        return delta * (p - y) ** 2

    with pytest.raises(error, match=match):
        fl.elementwise_loss(f, params=params)


def test_reserved_parameter_name():
    def f(p, y, reduction=1.0):
        return reduction * (p - y) ** 2

    with pytest.raises(TypeError, match="may not be called 'reduction'"):
        fl.elementwise_loss(f)


def test_wrong_supplied_gradient_names_the_worst_point():
    def logcosh(p, y):
        return sym.logcosh(p - y)

    def wrong(p, y):
        return 2 * sym.tanh(p - y)

    with pytest.raises(ValueError, match=(r"logcosh: the grad= formula is not the derivative of the value: at p=.*, "
                                          r"y=.* it gives .*, the derivative is .*leave grad= out")):
        fl.elementwise_loss(logcosh, grad=wrong)


def test_wrong_supplied_hessian():
    with pytest.raises(ValueError, match="the hess= formula is not the derivative of the gradient"):
        fl.elementwise_loss(lambda p, y: (p - y) ** 2, name="sq", hess=lambda p, y: 1.0 + 0 * p)


def test_right_supplied_derivatives_are_used():
    def cauchy_like(p, y):
        return sym.log(1 + (p - y) ** 2)

    def grad(p, y):  # the same derivative, written differently
        d = p - y
        return 2 * d / (1 + d * d)

    loss = fl.elementwise_loss(cauchy_like, grad=grad)
    p, y = np.array([0.3, -2.0]), np.array([0.0, 1.0])
    g = loss.grad(p, y, reduction="none", backend="numpy")
    np.testing.assert_allclose(g, 2 * (p - y) / (1 + (p - y) ** 2), rtol=1e-14)


@pytest.mark.parametrize("formula, match", [
    (lambda p, y: sym.where(p > y, 1.0, 0.0), "not differentiable in p: its derivative is zero wherever it exists"),
    (lambda p, y: sym.sign(p - y), "not differentiable in p"),
    (lambda p, y: y**2 + 1, "does not depend on the prediction p"),
], ids=["step", "sign", "constant"])
def test_not_differentiable_in_p(formula, match):
    with pytest.raises(ValueError, match=match):
        fl.elementwise_loss(formula, name="nondiff")


def test_builtin_name_refused():
    with pytest.raises(ValueError, match="'huber' is a built-in loss; give the custom loss another name"):
        fl.elementwise_loss(lambda p, y: (p - y) ** 2, name="huber")


@pytest.mark.parametrize("name", ["two words", "", 3])
def test_bad_name(name):
    with pytest.raises(ValueError, match="needs a name that is a Python identifier"):
        fl.elementwise_loss(lambda p, y: (p - y) ** 2, name=name)


def test_bad_domain():
    with pytest.raises(ValueError, match="target_domain must be one of"):
        fl.elementwise_loss(lambda p, y: (p - y) ** 2, name="sq", target_domain="class_index")


def test_signature_needs_p_and_y():
    with pytest.raises(TypeError, match=r"takes the prediction and the target first"):
        fl.elementwise_loss(lambda p: p**2, name="one_arg")
    with pytest.raises(TypeError, match=r"without \*args or \*\*kwargs"):
        fl.elementwise_loss(lambda p, y, **kw: p**2, name="kwargs")


def test_without_sympy_says_how_to_install(tmp_path):
    """In a process where SymPy cannot be imported, defining a new loss says how to get it."""
    code = textwrap.dedent("""
        import sys
        sys.modules["sympy"] = None  # makes `import sympy` raise ImportError
        import fusedloss as fl
        try:
            fl.elementwise_loss(lambda p, y: (p - y) ** 2, name="needs_sympy")
        except ImportError as exc:
            print("ImportError:", exc)
    """)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env = {**os.environ, "FUSEDLOSS_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert 'pip install "fusedloss[custom]"' in out.stdout, out.stdout + out.stderr
