"""Custom elementwise losses: ``fusedloss.elementwise_loss`` turns one scalar formula into a full loss.

The formula (a Python function of ``p``, ``y`` and the parameters, written with ``fusedloss.sym``) is traced
once with SymPy symbols; the gradient and Hessian with respect to ``p`` are derived exactly
(``_symbolic``), and two functions are generated from the three expressions and written as a module into
the cache directory:

- ``point(p, y, params) -> (value, gradient, Hessian)``: one fused scalar function with shared
  subexpressions, in the form of ``_pointwise``'s point functions; the Numba CPU and CUDA backends compile
  it into their generic loops like a built-in one. ``params`` is the tuple of the parameters' values (any
  number of them), as for a built-in loss (``LossSpec.packed``).
- ``reference(p, y, a)``: the same expressions over float64 arrays, which the NumPy backend runs (and the
  tests use as the oracle).

The loss is then registered like a built-in one: a ``LossSpec`` in the registry (so ``fl.losses()``, the
dispatcher, ``fusedloss.torch`` and ``fusedloss.boosting`` find it by name), a ``Loss`` object, the
reference function, and the point function for the compiled backends (``backends._jit.CUSTOM``).

Caching: the generated module's file name carries a hash of the function's code (its bytecode, constants,
the values of the globals and closure cells it reads, the parameters and options, and the fusedloss and
SymPy versions). A process that defines the same loss again imports that module and does not import SymPy
at all. Numba's compiled loops are cached on disk under a hash of the generated code (the formula), so
a changed function with the same formula reuses them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import math
import os
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _config, _reference
from ._dispatch import Loss
from ._losses import LOSSES
from ._spec import REGISTRY, LossSpec, Param
from .backends import _jit
from .backends import BackendUnavailable

__all__ = ["CustomLoss", "Formula", "elementwise_loss"]

_INSTALL = 'pip install "fusedloss[custom]"'
_RANGES = {
    "real": (lambda v: None if math.isfinite(v) else "a finite number"),
    "positive": (lambda v: None if (math.isfinite(v) and v > 0) else "a finite number > 0"),
    "nonnegative": (lambda v: None if (math.isfinite(v) and v >= 0) else "a finite number >= 0"),
    "unit": (lambda v: None if 0.0 <= v <= 1.0 else "a number in [0, 1]"),
    "open_unit": (lambda v: None if 0.0 < v < 1.0 else "a number in the open interval (0, 1)"),
}
_TARGET_DOMAINS = ("real", "nonnegative", "unit", "sign")
_PRED_DOMAINS = ("real", "nonnegative", "unit")
_RESERVED = frozenset({"reduction", "sample_weight", "backend", "grad_out", "hess_out", "hessian"})
_CHECK_RTOL = 1e-6  # supplied derivatives must match the derived ones to this (relative to 1 + |derived|)


@dataclass(frozen=True)
class Formula:
    """The value, gradient and Hessian (with respect to ``p``) that a custom loss computes."""

    value: str
    grad: str
    hess: str

    def __str__(self):
        return f"value    = {self.value}\ngradient = {self.grad}\nHessian  = {self.hess}"


@dataclass(frozen=True)
class CustomSpec(LossSpec):
    """A registry entry for a custom loss (its parameters are packed as a built-in loss's: one float each)."""


class CustomLoss(Loss):
    """A loss defined with ``fusedloss.elementwise_loss``: the built-in API, on the numba, cuda and numpy
    backends. ``formula`` shows what was derived, ``source`` the generated code."""

    def __init__(self, spec: CustomSpec, module, fn):
        self._module = module
        super().__init__(spec)
        self.__wrapped__ = fn
        self.formula = Formula(module.VALUE, module.GRAD, module.HESS)

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fusedloss custom loss {self.name}({params})>"

    @property
    def source(self) -> str:
        """The generated module (point function for the compiled backends, reference for NumPy)."""
        return Path(self._module.__file__).read_text()

    def _run(self, *args, **kwargs):
        if LOSSES.get(self.name) is not self:  # the registry's kernels and reference now belong to another loss
            raise RuntimeError(f"{self.name}: this custom loss was unregistered or defined again; use the object "
                               "that its latest definition returned")
        return super()._run(*args, **kwargs)

    def _backend(self, requested, dtype):
        name = _config.get_backend() if requested is None else requested
        if name == "cpp":
            raise BackendUnavailable(
                f"{self.name} is a custom loss: custom losses run on the numba, cuda and numpy backends, not on "
                "cpp (its kernels are compiled ahead of time); use backend='numba' or 'auto'")
        return super()._backend(requested, dtype)

    def unregister(self) -> None:
        """Remove this loss from the registry (``fl.losses()``, lookups by name); the object stops working."""
        if LOSSES.get(self.name) is self:
            _forget(self.name)


# --- registration ---------------------------------------------------------------------------------------------


def _forget(name: str) -> None:
    REGISTRY.pop(name, None)
    LOSSES.pop(name, None)
    _reference.ELEMENTWISE.pop(name, None)
    _jit.CUSTOM.pop(name, None)
    import sys

    for backend in ("fusedloss.backends.numba_cpu", "fusedloss.backends.numba_cuda"):
        module = sys.modules.get(backend)
        if module is not None:
            module.forget(name)


def _register(loss: CustomLoss, module) -> None:
    name = loss.name
    old = REGISTRY.get(name)
    if old is not None:
        if not isinstance(old, CustomSpec):
            raise ValueError(f"{name!r} is a built-in loss; give the custom loss another name (name=...)")
        _forget(name)  # a custom loss defined again (a notebook cell run twice): the new one replaces it
    names = loss.spec.param_names
    reference = module.reference

    def reference_fn(p, y, **params):
        values = tuple(float(params[n]) for n in names) or (0.0,)
        return tuple(np.array(np.broadcast_to(np.asarray(r, dtype=np.float64), np.shape(p)))
                     for r in reference(p, y, values))

    REGISTRY[name] = loss.spec
    LOSSES[name] = loss
    _reference.ELEMENTWISE[name] = reference_fn
    _jit.CUSTOM[name] = (module.point, module.KEY)


# --- the cache of generated modules ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where generated modules live: ``$FUSEDLOSS_CACHE_DIR``, else ``$XDG_CACHE_HOME/fusedloss`` or
    ``~/.cache/fusedloss``; a temporary directory when none of those can be written."""
    base = os.environ.get("FUSEDLOSS_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "fusedloss")
    path = Path(base) / "custom"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"fusedloss-custom-{os.getuid() if hasattr(os, 'getuid') else 0}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _value_key(v, depth: int) -> str:
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return repr(v)
    if isinstance(v, (tuple, list, frozenset)):
        return type(v).__name__ + "(" + ",".join(_value_key(x, depth) for x in v) + ")"
    if isinstance(v, types.ModuleType):
        return f"module:{v.__name__}"
    if isinstance(v, types.CodeType):
        return _code_key(v, None, depth)
    if isinstance(v, types.FunctionType):
        return _function_key(v, depth + 1) if depth < 4 else f"function:{v.__module__}.{v.__qualname__}"
    if isinstance(v, np.generic):
        return repr(v.item())
    return f"{type(v).__module__}.{type(v).__qualname__}:{v!r}"


def _code_key(code: types.CodeType, fn, depth: int) -> str:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    parts += [_value_key(c, depth) for c in code.co_consts]
    if fn is not None:
        g = fn.__globals__
        parts += [f"{n}={_value_key(g[n], depth)}" for n in code.co_names if n in g]
        if fn.__closure__:
            parts += [_value_key(cell.cell_contents, depth) for cell in fn.__closure__]
        parts.append(_value_key(fn.__defaults__, depth))
        parts.append(_value_key(fn.__kwdefaults__ and tuple(sorted(fn.__kwdefaults__.items())), depth))
    return "|".join(parts)


def _function_key(fn, depth: int = 0) -> str:
    return _code_key(fn.__code__, fn, depth)


def _versions() -> str:
    from ._version import __version__

    try:
        sympy_version = importlib.metadata.version("sympy")
    except importlib.metadata.PackageNotFoundError:
        sympy_version = "none"
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for f in ("_custom.py", "_symbolic.py", "sym.py"):
        digest.update((here / f).read_bytes())
    return f"{__version__}/{sympy_version}/{digest.hexdigest()[:12]}"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"fusedloss_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- definition -----------------------------------------------------------------------------------------------


def _parse_params(name: str, fn, params: dict | None):
    """(argument names of p and y, [Param], {param: range kind}) from the signature and ``params``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot read the formula's signature: {exc}") from None
    args = list(sig.parameters.values())
    if any(a.kind in (a.VAR_POSITIONAL, a.VAR_KEYWORD) for a in args):
        raise TypeError(f"{name}: the formula must name its arguments: def {name}(p, y, param1, ...), "
                        "without *args or **kwargs")
    if len(args) < 2 or any(a.kind == a.KEYWORD_ONLY for a in args[:2]):
        raise TypeError(f"{name}: the formula takes the prediction and the target first: def {name}(p, y, ...)")
    arg_names = (args[0].name, args[1].name)
    sig_params = {a.name: a.default for a in args[2:]}
    params = dict(params or {})
    unknown = set(params) - set(sig_params)
    if unknown:
        raise TypeError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))} in params=: the formula "
                        f"{name}({', '.join(sig.parameters)}) takes "
                        f"{', '.join(sig_params) or 'no parameters'} after {arg_names[0]}, {arg_names[1]}")
    out, kinds = [], {}
    for pname, sig_default in sig_params.items():
        if pname in _RESERVED or pname.startswith("_"):
            raise TypeError(f"{name}: a parameter may not be called {pname!r} (a keyword of the loss methods, or "
                            "starting with '_'); rename it")
        spec = params.get(pname, sig_default)
        if spec is inspect.Parameter.empty:
            raise TypeError(f"{name}: parameter {pname!r} has no default: give one in params={{{pname!r}: 1.0}} "
                            "or in the signature")
        kind = "real"
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise TypeError(f"{name}: params[{pname!r}] must be a default or (default, range), got {spec!r}")
            spec, kind = spec
        check = _range_check(name, pname, kind)
        try:
            default = float(spec)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: the default of {pname!r} must be a number, got {spec!r}") from None
        problem = check(default)
        if problem:
            raise ValueError(f"{name}: the default of {pname!r} must be {problem}, got {default!r}")
        out.append(Param(pname, default, f"parameter of the custom loss {name} ({_range_text(kind)})", check))
        kinds[pname] = kind if isinstance(kind, str) else "real"
    return arg_names, out, kinds


def _range_text(kind) -> str:
    return f"in [{kind[0]}, {kind[1]}]" if isinstance(kind, tuple) else kind


def _range_check(name: str, pname: str, kind):
    if isinstance(kind, tuple) and len(kind) == 2:
        lo, hi = float(kind[0]), float(kind[1])
        return lambda v: None if lo <= v <= hi else f"a number in [{lo}, {hi}]"
    if kind not in _RANGES:
        raise ValueError(f"{name}: the range of {pname!r} must be one of {', '.join(map(repr, _RANGES))} or a "
                         f"(low, high) pair, got {kind!r}")
    return _RANGES[kind]


def _sample_points(target_domain: str, pred_domain: str, n: int = 97):
    rng = np.random.default_rng(12)
    p = rng.normal(0.0, 2.0, n)
    if pred_domain == "nonnegative":
        p = np.abs(p) + 0.05
    elif pred_domain == "unit":
        p = rng.uniform(0.02, 0.98, n)
    if target_domain == "real":
        y = rng.normal(0.0, 2.0, n)
    elif target_domain == "nonnegative":
        y = rng.exponential(2.0, n)
    elif target_domain == "unit":
        y = rng.uniform(0.0, 1.0, n)
    else:
        y = rng.choice([-1.0, 1.0], n)
    return p, y


def _derive(name, fn, arg_names, params, kinds, target_domain, pred_domain, grad, hess):
    """Trace, derive and check; the generated module's source."""
    try:
        from . import _symbolic as S
    except ImportError as exc:
        raise ImportError(f"custom losses need SymPy to derive gradients and Hessians: {_INSTALL} "
                          f"({exc})") from exc
    import sympy as sp

    target_kind = {"real": "real", "nonnegative": "nonnegative", "unit": "unit", "sign": "real"}[target_domain]
    v, p, y, syms = S.trace(fn, name, arg_names, kinds, target_kind)
    sym_list = [syms[q.name] for q in params]
    if p not in v.free_symbols:
        raise ValueError(f"{name}: the formula does not depend on the prediction {arg_names[0]}: {v}")
    points = _sample_points(target_domain, pred_domain)
    defaults = [q.default for q in params]

    def evaluate(expr):
        f = S.numpy_function(expr, p, y, sym_list)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(f(*points, *defaults), dtype=np.float64), points[0].shape)

    def supplied(f, what):
        expr, p2, y2, syms2 = S.trace(f, name, arg_names, kinds, target_kind, what=f"the {what}= formula")
        return expr.xreplace({p2: p, y2: y, **{syms2[k]: syms[k] for k in syms}})

    def check(given, derived, what, of):
        a, b = evaluate(given), evaluate(derived)
        ok = np.isfinite(a) & np.isfinite(b)
        err = np.where(ok, np.abs(a - b) / (1.0 + np.abs(b)), 0.0)
        bad = (np.isfinite(a) != np.isfinite(b)) | (err > _CHECK_RTOL)
        if bad.any():
            i = int(np.argmax(np.where(np.isfinite(a) != np.isfinite(b), np.inf, err)))
            raise ValueError(
                f"{name}: the {what}= formula is not the derivative of the {of}: at {arg_names[0]}={points[0][i]!r}, "
                f"{arg_names[1]}={points[1][i]!r} (parameters at their defaults) it gives {a[i]!r}, the derivative "
                f"is {b[i]!r} ({int(bad.sum())} of {bad.size} check points disagree); fix it, or leave {what}= out "
                "to have it derived")

    def derivative(f, given, what, of):
        """The derivative of ``f``: the user's ``given`` formula, checked against the derived one, or that."""
        derived = S.differentiate(f, p, name, f"the {'formula' if of == 'value' else of}")
        if given is None:
            return derived
        expr = S._lift_tidy(supplied(given, what))
        check(expr, derived, what, of)
        return expr

    g = derivative(v, grad, "grad", "value")
    h = derivative(g, hess, "hess", "gradient")
    v = S._lift_tidy(v)

    g_values = evaluate(g)
    if not np.any(g_values[np.isfinite(g_values)] != 0):
        raise ValueError(
            f"{name}: the formula is not differentiable in {arg_names[0]}: its derivative is zero wherever it "
            f"exists ({v}), as for a step such as sym.where({arg_names[0]} > 0, 1, 0) or sym.sign; a loss needs a "
            "gradient that is not zero almost everywhere")
    h_values = evaluate(h)
    hessian_zero = not np.any(h_values[np.isfinite(h_values)] != 0)

    point = S.point_source(v, g, h, p, y, sym_list)
    reference = S.reference_source(v, g, h, p, y, sym_list)
    key = hashlib.sha256((point + reference).encode()).hexdigest()[:16]
    text = {k: S.formula_text(e) for k, e in (("VALUE", v), ("GRAD", g), ("HESS", h))}
    source = "\n".join([
        f'"""Generated by fusedloss for the custom loss {name!r}: do not edit (delete it to have it derived again).',
        "",
        f"value    = {text['VALUE']}",
        f"gradient = {text['GRAD']}",
        f"Hessian  = {text['HESS']}",
        '"""',
        "",
        "import math",
        "",
        "import numpy",
        "",
        S.SCALAR_NAMESPACE_IMPORTS + "  # noqa: F401",
        S.NUMPY_NAMESPACE_IMPORTS + "  # noqa: F401",
        "",
        f"NAME = {name!r}",
        f"PARAMS = {tuple(q.name for q in params)!r}",
        f"KEY = {key!r}  # of the generated code: the Numba cache entries of this formula carry it",
        f"HESSIAN_ZERO = {hessian_zero!r}",
        *(f"{k} = {t!r}" for k, t in text.items()),
        "",
        "",
        point,
        "",
        reference,
    ])
    return source


def _define(fn, name, params, target_domain, pred_domain, grad, hess, summary):
    if name is None:
        name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a custom loss needs a name that is a Python identifier (name=...), got {name!r}")
    if target_domain not in _TARGET_DOMAINS:
        raise ValueError(f"{name}: target_domain must be one of {', '.join(map(repr, _TARGET_DOMAINS))}, "
                         f"got {target_domain!r}")
    if pred_domain not in _PRED_DOMAINS:
        raise ValueError(f"{name}: pred_domain must be one of {', '.join(map(repr, _PRED_DOMAINS))}, "
                         f"got {pred_domain!r}")
    old = REGISTRY.get(name)
    if old is not None and not isinstance(old, CustomSpec):
        raise ValueError(f"{name!r} is a built-in loss; give the custom loss another name (name=...)")
    for what, f in (("formula", fn), ("grad", grad), ("hess", hess)):
        if f is not None and not callable(f):
            raise TypeError(f"{name}: {what} must be a function of (p, y, parameters), got {type(f).__name__}")
    arg_names, plist, kinds = _parse_params(name, fn, params)

    key_text = "\n".join([
        _versions(), name, repr([(q.name, q.default, kinds[q.name]) for q in plist]), repr(params),
        target_domain, pred_domain, _function_key(fn),
        _function_key(grad) if grad is not None else "-", _function_key(hess) if hess is not None else "-",
    ])
    code_key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    path = cache_dir() / f"{name}_{code_key}.py"
    module = None
    if path.exists():
        try:
            module = _load(path)
        except Exception:  # a damaged cache file: derive again
            module = None
    if module is None:
        source = _derive(name, fn, arg_names, plist, kinds, target_domain, pred_domain, grad, hess)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: a concurrent process sees the old file or the new one, never half
        module = _load(path)

    spec = CustomSpec(
        name=name, kind="elementwise",
        summary=summary or f"custom loss {name} (fusedloss.elementwise_loss)",
        formula=f"l = {module.VALUE};  g = {module.GRAD};  h = {module.HESS}",
        params=tuple(plist), target_domain=target_domain, pred_domain=pred_domain,
        hessian_zero_ae=bool(module.HESSIAN_ZERO),
    )
    loss = CustomLoss(spec, module, fn)
    _register(loss, module)
    return loss


def elementwise_loss(fn=None, *, params: dict | None = None, target_domain: str = "real", pred_domain: str = "real",
                     name: str | None = None, grad=None, hess=None, summary: str | None = None):
    """Define an elementwise loss from one scalar formula; returns a loss with the built-in API.

    ``fn(p, y, **params)`` is written with arithmetic, ``abs``, comparisons, numbers and ``fusedloss.sym``
    (``where`` instead of ``if``). Its gradient and Hessian with respect to ``p`` are derived exactly, and
    value, gradient and Hessian are compiled into one fused kernel for the numba and cuda backends (NumPy
    evaluates them for the numpy backend).

    ``params``: ``{name: default}`` or ``{name: (default, range)}`` with range ``"real"`` (finite; the
    default), ``"positive"``, ``"nonnegative"``, ``"unit"`` ([0, 1]), ``"open_unit"`` or ``(low, high)``;
    parameters not listed take the defaults in ``fn``'s signature. ``target_domain`` (``"real"``,
    ``"nonnegative"``, ``"unit"``, ``"sign"``) and ``pred_domain`` are checked on every call. ``grad`` /
    ``hess``: formulas to use instead of the derived ones (checked against them once, here). ``name``:
    the registry name (default: ``fn.__name__``); defining a name again replaces the earlier custom loss.

    Needs SymPy (``pip install "fusedloss[custom]"``) the first time a formula is derived; the result is
    cached (see ``fusedloss._custom``). Multiclass losses cannot be defined this way.
    """
    def decorate(f):
        return _define(f, name, params, target_domain, pred_domain, grad, hess, summary)

    return decorate if fn is None else decorate(fn)
