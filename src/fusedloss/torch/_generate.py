"""Forms made from the registry. The functional form and the module of an elementwise loss that torch does not
have are mechanical: the registry's parameters, forwarded. So each such functional form is only declared (its
signature and docstring, which is what users, ``help`` and IDEs see), checked against the registry at import, and
given a generated body; its module is generated from it.

Functions are made from source text, as ``dataclasses`` makes ``__init__``: they have real signatures (the same
``TypeError`` for a wrong call as a written function, ``inspect.signature`` without ``__wrapped__``) and cost no
more per call than written ones.
"""

from __future__ import annotations

import inspect
import sys
import warnings

from .._spec import REGISTRY
from ._args import _elementwise

# the arguments every declared elementwise form has besides the registry's parameters
_FIXED = ("input", "target", "reduction", "sample_weight", "backend")


def _has_metrics(name: str) -> bool:
    """Whether loss ``name``'s kernel computes metrics in its pass: its forms then take ``metrics=``."""
    return REGISTRY[name].metrics_pass is not None


def make_function(name: str, sig: inspect.Signature, body: str, namespace: dict, *, doc: str | None = None,
                  module: str | None = None, qualname: str | None = None):
    """A function ``name`` with signature ``sig`` (parameter names and defaults) whose body is ``body`` (source
    text, one statement per line), run with ``namespace`` as its globals."""
    params, defaults, star = [], {}, False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"make_function: {name}: parameter {p.name!r} of kind {p.kind} is not supported")
        if p.default is p.empty:
            params.append(p.name)
        else:
            defaults[p.name] = p.default
            params.append(f"{p.name}=_defaults[{p.name!r}]")
    lines = "".join(f"    {line}\n" for line in body.splitlines())
    source = f"def {name}({', '.join(params)}):\n{lines}"
    scope = {**namespace, "_defaults": defaults}
    exec(compile(source, f"<fusedloss.torch generated {name}>", "exec"), scope)  # noqa: S102 - our own text
    fn = scope[name]
    fn.__doc__ = doc
    if module is not None:
        fn.__module__ = module
    fn.__qualname__ = qualname or name
    return fn


def registry_params(declared, name: str) -> tuple[str, ...]:
    """The registry parameters in ``declared``'s signature, checked: besides ``_FIXED`` (and ``metrics``, keyword
    only with default None, exactly when the loss has a metrics pass) it has exactly the registry's parameters of
    loss ``name``, in the registry's order, with the registry's defaults."""
    spec = REGISTRY[name]
    sig = inspect.signature(declared)
    fixed = _FIXED + (("metrics",) if _has_metrics(name) else ())
    missing = [k for k in fixed if k not in sig.parameters]
    if "metrics" in fixed and "metrics" in sig.parameters:
        m = sig.parameters["metrics"]
        if m.kind is not m.KEYWORD_ONLY or m.default is not None:
            missing.append("metrics (keyword only, default None)")
    got = [(k, p.default) for k, p in sig.parameters.items() if k not in fixed]
    want = [(p.name, p.default) for p in spec.params]
    if missing or got != want:
        raise TypeError(f"{declared.__qualname__}: its parameters must be {', '.join(fixed)} and the registry's "
                        f"{want} for loss {name!r} (in that order, with those defaults); got {got}"
                        + (f", missing {missing}" if missing else ""))
    return tuple(k for k, _ in got)


def elementwise_form(name: str):
    """Decorator: the declared function (signature and docstring; its body is not used) becomes the functional
    form of elementwise registry loss ``name``, whose body forwards the registry's parameters to the kernel."""

    def make(declared):
        if REGISTRY[name].kind != "elementwise":
            raise TypeError(f"elementwise_form: {name!r} is a {REGISTRY[name].kind} loss")
        params = registry_params(declared, name)
        fn_name = declared.__name__
        args = ", ".join(f"{k!r}: {k}" for k in params)
        metrics = ", metrics=metrics" if _has_metrics(name) else ""
        body = (f"return _elementwise({name!r}, input, target, reduction, {{{args}}}, "
                f"sample_weight=sample_weight, backend=backend, fn={fn_name!r}{metrics})")
        return make_function(fn_name, inspect.signature(declared), body, {"_elementwise": _elementwise},
                             doc=declared.__doc__, module=declared.__module__, qualname=declared.__qualname__)

    return make


def generated_form(name: str, module: str):
    """The functional form of an elementwise registry loss that has no declared one, whole from the registry:
    ``<name>_loss(input, target, <its parameters>, reduction="mean", *, sample_weight=None, backend=None)``
    (and ``metrics=None`` where the loss has a metrics pass), documented by the registry's summary and formula."""
    spec = REGISTRY[name]
    P = inspect.Parameter
    parameters = [P("input", P.POSITIONAL_OR_KEYWORD), P("target", P.POSITIONAL_OR_KEYWORD),
                  *(P(p.name, P.POSITIONAL_OR_KEYWORD, default=p.default) for p in spec.params),
                  P("reduction", P.POSITIONAL_OR_KEYWORD, default="mean"),
                  P("sample_weight", P.KEYWORD_ONLY, default=None), P("backend", P.KEYWORD_ONLY, default=None),
                  *([P("metrics", P.KEYWORD_ONLY, default=None)] if _has_metrics(name) else [])]

    def declared():  # only its name, signature and docstring are used
        pass

    declared.__signature__ = inspect.Signature(parameters)
    declared.__name__ = declared.__qualname__ = f"{name}_loss"
    declared.__module__ = module
    declared.__doc__ = f"{spec.summary[0].upper()}{spec.summary[1:]}.\n\n{spec.formula}"
    return elementwise_form(name)(declared)


def module_name(fn) -> str:
    """The module class named after a functional form: ``pseudo_huber_loss`` -> ``PseudoHuberLoss``."""
    return "".join(word.title() for word in fn.__name__.split("_"))


def module_of(fn, base: type, name: str) -> type:
    """The ``nn.Module`` of a functional form made by ``elementwise_form``: ``__init__`` takes the form's
    arguments other than ``input``, ``target`` and ``sample_weight``, in its order with its defaults, and holds
    them as options of ``base`` (a ``_LossModule``), which calls ``fn`` in ``forward``; ``extra_repr`` shows the
    registry's parameters and ``metrics``."""
    sig = inspect.signature(fn)
    kept = [p for k, p in sig.parameters.items() if k not in ("input", "target", "sample_weight")]
    options = [p.name for p in kept if p.name != "reduction"]
    init_sig = sig.replace(parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *kept])
    body = f"_base.__init__(self, reduction, {', '.join(f'{k}={k}' for k in options)})"
    qualname = module_name(fn)
    init = make_function("__init__", init_sig, body, {"_base": base}, module=base.__module__,
                         qualname=f"{qualname}.__init__")
    shown = tuple(k for k in options if k in REGISTRY[name].param_names or k == "metrics")
    return type(qualname, (base,), {"__module__": base.__module__, "__qualname__": qualname, "__doc__": None,
                                    "_fn": staticmethod(fn), "_shown": shown, "__init__": init})


def renamed_getattr(module: str, renamed: dict):
    """A module ``__getattr__`` (PEP 562) that serves each old name of ``renamed`` (old -> new) as the object of
    the new name, with a FutureWarning saying what to write instead; any other name raises AttributeError."""

    def __getattr__(name: str):
        new = renamed.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        metric = _METRIC_OF.get(name, name)
        warnings.warn(f"{module}.{name} is now {new}: {name} is the name of scikit-learn's {metric}, a metric of "
                      f"other arguments and meaning (fusedloss.metrics.{metric} is that one). The name {name} will "
                      f"be removed from {module} in fusedloss 0.2.", FutureWarning, stacklevel=2)
        return getattr(sys.modules[module], new)

    return __getattr__


# the scikit-learn metric a module's old name is named after
_METRIC_OF = {"HingeLoss": "hinge_loss", "ZeroOneLoss": "zero_one_loss"}
