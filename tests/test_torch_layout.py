"""fusedloss.torch as a package: every registry loss has its functional form and its module, exported by the
name it carries; the forms generated from the registry (``fusedloss/torch/_generate.py``) have the registry's
parameters; the forms of losses torch has have torch's names and signatures; no file of the package holds two
concerns' worth of lines; and importing it without torch fails with torch's own ImportError.

Nothing here skips when something is missing: a registry loss without a form is a failure.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fusedloss.torch as ft  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402
from fusedloss.torch import _generate  # noqa: E402

PACKAGE = Path(ft.__file__).parent
BUILTIN = sorted(n for n, spec in REGISTRY.items() if spec.builtin)  # fusedloss's own losses, not a user's


@pytest.mark.parametrize("name", BUILTIN)
def test_every_loss_has_an_exported_functional_form_and_module(name):
    assert name in ft.FUNCTIONAL, f"fusedloss.torch has no functional form for registry loss {name!r}"
    assert name in ft.MODULES, f"fusedloss.torch has no module for registry loss {name!r}"
    for obj in (ft.FUNCTIONAL[name], ft.MODULES[name]):
        assert obj.__name__ in ft.__all__, f"{obj.__name__} (the form of {name!r}) is not in __all__"
        assert getattr(ft, obj.__name__) is obj, f"fusedloss.torch.{obj.__name__} is not the form of {name!r}"


ELEMENTWISE_OURS = [n for n in BUILTIN if REGISTRY[n].kind == "elementwise" and not REGISTRY[n].torch_name]


def test_the_generated_forms_are_found():
    # the elementwise losses torch lacks: at least the eight of today, each generated
    assert len(ELEMENTWISE_OURS) >= 8
    for name in ELEMENTWISE_OURS:
        fn = ft.FUNCTIONAL[name]
        assert fn.__code__.co_filename.startswith("<fusedloss.torch generated"), name
        assert fn.__doc__, f"{fn.__name__} has no docstring"


@pytest.mark.parametrize("name", ELEMENTWISE_OURS)
def test_generated_form_has_the_registry_parameters(name):
    fn, cls = ft.FUNCTIONAL[name], ft.MODULES[name]
    assert _generate.registry_params(fn, name) == REGISTRY[name].param_names
    form = [p for k, p in inspect.signature(fn).parameters.items() if k not in ("input", "target", "sample_weight")]
    assert list(inspect.signature(cls.__init__).parameters.values())[1:] == form
    assert cls.__name__ == _generate.module_name(fn)


@pytest.mark.parametrize("name", ELEMENTWISE_OURS)
def test_generated_form_forwards_every_parameter(name, monkeypatch):
    """Each registry parameter given to the form (positionally and by keyword) reaches the kernel call, and so
    does ``metrics`` where the loss has a metrics pass."""
    seen = []

    def spy(loss, input, target, reduction, params, **kwargs):
        seen.append((loss, reduction, params, kwargs))
        return torch.zeros(())

    fn = ft.FUNCTIONAL[name]
    monkeypatch.setitem(fn.__globals__, "_elementwise", spy)  # the generated body's own namespace
    x = torch.zeros(3)
    values = {k: object() for k in REGISTRY[name].param_names}
    params = inspect.signature(fn).parameters
    metrics = {"metrics": "m"} if "metrics" in params else {}
    fn(x, x, reduction="sum", sample_weight="w", backend="b", **values, **metrics)
    positional = [k for k, p in params.items() if k not in ("input", "target") and p.kind != p.KEYWORD_ONLY]
    args = {"reduction": "none", **values}
    fn(x, x, *[args[k] for k in positional])
    assert seen[0] == (name, "sum", values, {"sample_weight": "w", "backend": "b", "fn": fn.__name__, **metrics})
    assert seen[1] == (name, "none", values, {"sample_weight": None, "backend": None, "fn": fn.__name__,
                                              **{k: None for k in metrics}})


def test_a_declaration_that_differs_from_the_registry_is_refused():
    def quantile_loss(input, target, quantile=0.25, reduction="mean", *, sample_weight=None, backend=None):
        """wrong default"""

    with pytest.raises(TypeError, match="registry"):
        _generate.elementwise_form("quantile")(quantile_loss)

    def hinge_loss(input, target, reduction="mean", margin=1.0, *, sample_weight=None, backend=None):
        """a parameter the registry does not have"""

    with pytest.raises(TypeError, match="margin"):
        _generate.elementwise_form("hinge")(hinge_loss)

    def binary_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean", *, sample_weight=None,
                          backend=None):
        """no metrics= although the kernel computes binary metrics"""

    with pytest.raises(TypeError, match="missing.*metrics"):
        _generate.elementwise_form("binary_focal")(binary_focal_loss)

    def mse_loss(input, target, reduction="mean", *, sample_weight=None, backend=None, metrics=None):
        """metrics= on a loss with no metrics pass"""

    with pytest.raises(TypeError, match="metrics"):
        _generate.elementwise_form("mse")(mse_loss)


TWINS = [n for n in BUILTIN if REGISTRY[n].torch_name]


def _positional(f):
    return [(p.name, p.default) for p in inspect.signature(f).parameters.values() if p.kind != p.KEYWORD_ONLY]


@pytest.mark.parametrize("name", TWINS)
def test_torch_twins_have_torchs_names_and_signatures(name):
    spec = REGISTRY[name]
    fn, cls = ft.FUNCTIONAL[name], ft.MODULES[name]
    assert fn.__name__ == spec.torch_name
    assert _positional(fn) == _positional(getattr(F, spec.torch_name))
    twin = getattr(torch.nn, cls.__name__, None)
    assert twin is not None, f"{cls.__name__} (the module of {name!r}) is not named after a torch.nn module"
    assert _positional(cls.__init__) == _positional(twin.__init__)


def test_no_form_is_named_after_a_scikit_learn_metric():
    """A name of ``sklearn.metrics`` promises that metric's arguments (``y_true`` first, labels or decision values)
    and meaning; the forms take torch's ``(input, target)``. Names torch has are torch's to keep."""
    import sklearn.metrics

    clash = [n for n in ft.__all__ if hasattr(sklearn.metrics, n) and not hasattr(F, n) and not hasattr(torch.nn, n)]
    assert not clash, f"fusedloss.torch names that are scikit-learn metrics: {clash}"


@pytest.mark.parametrize("module, old, new", [
    ("fusedloss.torch", "hinge_loss", "binary_hinge_loss"), ("fusedloss.torch", "zero_one_loss", "zero_one_error"),
    ("fusedloss.torch", "HingeLoss", "BinaryHingeLoss"), ("fusedloss.torch", "ZeroOneLoss", "ZeroOneError"),
    ("fusedloss.torch.functional", "hinge_loss", "binary_hinge_loss"),
    ("fusedloss.torch.functional", "zero_one_loss", "zero_one_error"),
    ("fusedloss.torch.modules", "HingeLoss", "BinaryHingeLoss"),
    ("fusedloss.torch.modules", "ZeroOneLoss", "ZeroOneError"),
])
def test_old_names_warn_and_give_the_renamed_forms(module, old, new):
    mod = sys.modules[module]
    with pytest.warns(FutureWarning, match=rf"{module}\.{old} is now {new}: .*fusedloss\.metrics\.\w+ is that one"):
        obj = getattr(mod, old)
    assert obj is getattr(mod, new)
    assert old not in vars(mod) and old not in getattr(mod, "__all__", ())  # not exported, not in dir()
    with pytest.raises(AttributeError, match="has no attribute 'no_such_loss'"):
        getattr(mod, "no_such_loss")


def test_no_file_of_the_package_holds_two_concerns_worth_of_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {"__init__.py", "functional.py", "modules.py"} <= set(sizes)
    assert not {k: v for k, v in sizes.items() if v > 500}, sizes


def test_import_without_torch_raises_torchs_import_error():
    code = textwrap.dedent("""
        import importlib.abc, sys

        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Hide())
        import fusedloss
        try:
            import fusedloss.torch
        except ModuleNotFoundError as e:
            print("refused", e.name)
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "refused torch"
