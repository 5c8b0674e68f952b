"""The SymPy side of custom losses: tracing a formula, deriving it, rewriting it into stable forms and printing
it as one fused scalar point function (Numba CPU / CUDA) and as NumPy code (the reference).

Imported only when a custom loss is derived (SymPy takes a second to import); a loss whose generated module
is already in the cache (``fusedloss._custom``) never imports it.

The stable primitives are SymPy functions of their own (``softplus``, ``sigmoid``, ``logcosh``, ``tanh`` and
the ``sech2`` that its derivative gives, ``log1p``, ``expm1``, ``hypot``) with their derivatives written in
stable terms, so that differentiation keeps them, and the printers map each to its one stable implementation
(``_pointwise`` for compiled code, ``_reference`` for NumPy).
"""

from __future__ import annotations

import inspect

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import PythonCodePrinter

__all__ = ["Derived", "TraceError", "derive", "trace", "point_source", "reference_source", "numpy_function"]


class TraceError(TypeError):
    """The formula could not be traced with symbols (the message says what it may use instead)."""


# --- stable primitives ---------------------------------------------------------------------------------------


class _Real(sp.Function):
    nargs = 1

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real


class log1p(_Real):  # noqa: N801 (SymPy prints a function by its class name)
    def fdiff(self, argindex=1):
        return 1 / (1 + self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero


class expm1(_Real):  # noqa: N801
    def fdiff(self, argindex=1):
        return sp.exp(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero


class tanh(_Real):  # noqa: N801
    def fdiff(self, argindex=1):
        return sech2(self.args[0])


class sech2(_Real):  # noqa: N801  (1 / cosh^2)
    def fdiff(self, argindex=1):
        return -2 * tanh(self.args[0]) * sech2(self.args[0])

    def _eval_is_positive(self):
        return self.args[0].is_finite


class sigmoid(_Real):  # noqa: N801
    def fdiff(self, argindex=1):
        return sigmoid(self.args[0]) * sigmoid(-self.args[0])  # s (1 - s) without the cancellation

    def _eval_is_positive(self):
        return self.args[0].is_finite


class softplus(_Real):  # noqa: N801
    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_is_positive(self):
        return self.args[0].is_finite


class logcosh(_Real):  # noqa: N801
    def fdiff(self, argindex=1):
        return tanh(self.args[0])

    def _eval_is_nonnegative(self):
        return self.args[0].is_extended_real


class hypot(_Real):  # noqa: N801  (sqrt(a^2 + b^2) without overflow; only made by the rewrites below)
    nargs = 2

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real and self.args[1].is_extended_real


# public aliases used by fusedloss.sym
Log1p, Expm1, Tanh, Sigmoid, Softplus, LogCosh = log1p, expm1, tanh, sigmoid, softplus, logcosh


def where(condition, a, b):
    c = sp.sympify(condition)
    if c is sp.true:
        return sp.sympify(a)
    if c is sp.false:
        return sp.sympify(b)
    if not isinstance(c, sp.logic.boolalg.Boolean):
        raise TraceError(f"sym.where: the condition must be a comparison such as p > y (combined with &, |, ~), "
                         f"got {condition!r}")
    return sp.Piecewise((a, c), (b, True))


# --- tracing ------------------------------------------------------------------------------------------------

_ASSUME = {
    "real": {}, "positive": {"positive": True}, "nonnegative": {"nonnegative": True},
    "unit": {"nonnegative": True}, "open_unit": {"positive": True},
}


def _symbol(name: str, kind: str = "real") -> sp.Symbol:
    return sp.Symbol(name, real=True, **_ASSUME.get(kind, {}))


def trace(fn, loss: str, arg_names: tuple, params: dict, target_kind: str, what: str = "the formula"):
    """Call ``fn(p, y, **params)`` with symbols; the SymPy expression it returns.

    ``params`` maps each parameter name to its range kind (assumptions on the symbol help simplification).
    """
    p = _symbol(arg_names[0])
    y = _symbol(arg_names[1], target_kind)
    syms = {name: _symbol(name, kind) for name, kind in params.items()}
    hint = ("a formula may use arithmetic, abs, comparisons, Python numbers and the fusedloss.sym functions "
            "(exp, log, log1p, expm1, sqrt, tanh, sigmoid, softplus, log_sigmoid, logcosh, where, maximum, "
            "minimum, clip, sign, pow)")
    try:
        out = fn(p, y, **syms)
    except TypeError as exc:
        text = str(exc)
        if "truth value" in text:
            raise TraceError(
                f"{loss}: {what} branches on a symbolic value (Python if / and / or / not / min / max on p, y or "
                f"a parameter); write sym.where(condition, a, b), sym.maximum / sym.minimum, and combine "
                f"conditions with &, |, ~ ({text})") from None
        if "convert expression to float" in text or "ufunc" in text or "no callable" in text:
            raise TraceError(
                f"{loss}: {what} calls a math or NumPy function on a symbolic value; use the fusedloss.sym "
                f"function of that name instead (sym.exp, sym.log, ...) ({text})") from None
        raise TraceError(f"{loss}: could not trace {what}: {type(exc).__name__}: {exc}; {hint}") from exc
    except Exception as exc:
        raise TraceError(f"{loss}: could not trace {what}: {type(exc).__name__}: {exc}; {hint}") from exc
    if isinstance(out, (bool, np.bool_)) or isinstance(out, sp.logic.boolalg.Boolean):
        raise TraceError(f"{loss}: {what} returned a condition ({out}), not a number; wrap it in "
                         f"sym.where(condition, a, b)")
    try:
        expr = sp.sympify(out, strict=True)
    except (sp.SympifyError, TypeError):
        raise TraceError(f"{loss}: {what} returned {type(out).__name__} {out!r}, not a formula; {hint}") from None
    if not isinstance(expr, sp.Expr):
        raise TraceError(f"{loss}: {what} returned {expr!r}, not a scalar formula; {hint}")
    if expr.has(sp.I) or expr.has(sp.zoo) or expr.has(sp.nan):
        raise TraceError(f"{loss}: {what} is not a real formula: {expr}")
    unknown = expr.free_symbols - {p, y, *syms.values()}
    if unknown:
        raise TraceError(f"{loss}: {what} uses unknown symbols {sorted(map(str, unknown))}")
    return expr, p, y, syms


# --- derivation ---------------------------------------------------------------------------------------------


def _drop_impulses(e):
    """Derivatives of sign (and of Heaviside) are impulses at single points: 0 almost everywhere."""
    return e.replace(lambda t: isinstance(t, sp.DiracDelta), lambda t: sp.S.Zero)


def _tidy(e):
    """A bounded simplification of one branch: the smallest of a few cheap rewrites (``simplify`` itself takes
    seconds even on small formulas, longer than compiling them). Only small branches are expanded, and sums of
    Piecewise are left to the branch lifting of the code printer."""
    e = _drop_impulses(e)
    if e.has(sp.Piecewise):
        return e
    ops = sp.count_ops(e)
    steps = [lambda x: sp.factor_terms(sp.together(x))]
    if ops <= SIMPLIFY_MAX_OPS:
        steps.append(lambda x: sp.factor_terms(sp.expand(x)))
    candidates = [e]
    for step in steps:
        try:
            candidates.append(step(e))
        except Exception:  # pragma: no cover - SymPy giving up is not a reason to fail
            pass
    return min(candidates, key=sp.count_ops)


SIMPLIFY_MAX_OPS = 24


def differentiate(expr, p, loss: str, what: str):
    d = sp.diff(expr, p)
    d = _drop_impulses(d)
    if d.has(sp.Derivative) or d.has(sp.Subs):
        raise ValueError(f"{loss}: {what} is not differentiable in p: SymPy cannot differentiate {expr}")
    return _lift_tidy(d)


def _lift_tidy(e):
    """Tidy every branch of the Piecewise expressions in ``e`` (and ``e`` itself)."""
    e = e.replace(lambda t: isinstance(t, sp.Piecewise),
                  lambda t: sp.Piecewise(*[(_tidy(x), c) for x, c in t.args]))
    return _tidy(e) if not isinstance(e, sp.Piecewise) else e


# --- stable rewrites ----------------------------------------------------------------------------------------


def _root(x):
    """u >= 0 with u^2 = x (an expression with no square root left), or None."""
    if x.is_number:
        return sp.sqrt(x) if x.is_nonnegative else None
    u = sp.powdenest(sp.sqrt(x), force=False)
    if any(isinstance(t, sp.Pow) and t.exp.is_Rational and t.exp.q == 2 for t in sp.preorder_traversal(u)):
        return None
    return u


def _rewrite_pow(e):
    """(a^2 + b^2)^(k/2) -> hypot(a, b)^k: no overflow of the squares, and a form the sums below recognise."""
    base, ex = e.args
    if base.is_Add and len(base.args) == 2 and ex.is_Rational and ex.q == 2:
        a, b = (_root(t) for t in base.args)
        if a is not None and b is not None:
            if b.is_number and not a.is_number:
                a, b = b, a
            return hypot(a, b) ** ex.p
    return e


def _rewrite_log(e):
    arg = e.args[0]
    if arg.is_Add:
        const, rest = arg.as_coeff_Add()
        if const == 1:
            return log1p(rest)
    return e


def _split_factor(t, kinds):
    """(k, f): the term ``t`` as ``k * f`` with ``f`` its first factor of one of ``kinds``, or None."""
    factors = list(sp.Mul.make_args(t))
    for i, f in enumerate(factors):
        if isinstance(f, kinds):
            return sp.Mul(*(factors[:i] + factors[i + 1:])), f
    return None


def _rewrite_add(e):
    """In a sum: k exp(u) - k -> k expm1(u), and k hypot(a, b) - k a -> k b^2 / (hypot(a, b) + a)
    (the square root of a sum of squares minus one of them, without the cancellation)."""
    terms = list(e.args)
    for i, t in enumerate(terms):
        split = _split_factor(t, (sp.exp, hypot))
        if split is None:
            continue
        k, f = split
        if isinstance(f, sp.exp):
            wanted = {-k: None}
        else:
            a, b = f.args
            wanted = {-k * a: b, -k * b: a}
        for j, s in enumerate(terms):
            if j == i:
                continue
            for target, other in wanted.items():
                if sp.expand(s - target) == 0:
                    if isinstance(f, sp.exp):
                        new = k * expm1(f.args[0])
                    else:
                        first = a if other is b else b
                        new = k * other**2 / (f + first)
                    rest = [x for m, x in enumerate(terms) if m not in (i, j)]
                    return _rewrite_add(sp.Add(*rest, new)) if rest else new
    return e


def stable(e):
    """Rewrite ``e`` into forms that neither overflow nor cancel where a stable primitive exists.

    ``powsimp`` first: a derivative of ``q**g`` comes as ``g q**g / q``, which is 0/0 where q underflows to 0;
    ``g q**(g - 1)`` is not."""
    e = sp.powsimp(e, combine="exp")
    e = e.replace(lambda t: isinstance(t, sp.Pow), _rewrite_pow)
    e = e.replace(lambda t: isinstance(t, sp.log), _rewrite_log)
    e = e.replace(lambda t: isinstance(t, sp.Add), _rewrite_add)
    return e


# --- printing -----------------------------------------------------------------------------------------------


def _pow_terms(printer, e, sqrt_fn):
    base, ex = e.args
    b = f"({printer._print(base)})"
    if ex.is_Integer and 1 <= ex <= 4:
        return "(" + "*".join([b] * int(ex)) + ")"
    if ex.is_Integer and -4 <= ex <= -1:
        return "(1.0/(" + "*".join([b] * int(-ex)) + "))"
    if ex == sp.Rational(1, 2):
        return f"{sqrt_fn}({printer._print(base)})"
    if ex == sp.Rational(-1, 2):
        return f"(1.0/{sqrt_fn}({printer._print(base)}))"
    return f"({b}**({printer._print(ex)}))"


class ScalarPrinter(PythonCodePrinter):
    """Python for one scalar point, compiled by Numba: math functions and the _pointwise helpers."""

    def _print_Integer(self, e):
        return f"{float(e)!r}"

    def _print_Rational(self, e):
        return f"{float(e)!r}"

    def _print_Float(self, e):
        return f"{float(e)!r}"

    def _print_Pow(self, e, rational=False):
        base, ex = e.args
        if ex.is_Integer and abs(int(ex)) <= 4 and ex != 0:
            return _pow_terms(self, e, "math.sqrt")
        if ex == sp.Rational(1, 2) or ex == sp.Rational(-1, 2):
            return _pow_terms(self, e, "math.sqrt")
        if ex.is_Rational and ex.q == 2 and ex.p > 0:
            return f"(({self._print(base)})**{int(ex.p) // 2}*math.sqrt({self._print(base)}))"
        return f"(({self._print(base)})**({self._print(ex)}))"

    def _print_log1p(self, e):
        return f"math.log1p({self._print(e.args[0])})"

    def _print_expm1(self, e):
        return f"math.expm1({self._print(e.args[0])})"

    def _print_tanh(self, e):
        return f"math.tanh({self._print(e.args[0])})"

    def _print_sech2(self, e):
        return f"sech2({self._print(e.args[0])})"

    def _print_sigmoid(self, e):
        return f"sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"log1pexp({self._print(e.args[0])})"

    def _print_logcosh(self, e):
        return f"log_cosh_value(abs({self._print(e.args[0])}))"

    def _print_hypot(self, e):
        return f"math.hypot({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_sign(self, e):
        return f"sign({self._print(e.args[0])})"

    def _print_Abs(self, e):
        return f"abs({self._print(e.args[0])})"


class ArrayPrinter(NumPyPrinter):
    """NumPy code over arrays, in float64, with the _reference helpers."""

    def _print_Integer(self, e):
        return f"{float(e)!r}"

    def _print_Rational(self, e):
        return f"{float(e)!r}"

    def _print_Pow(self, e, rational=False):
        base, ex = e.args
        if ex == sp.Rational(1, 2):
            return f"numpy.sqrt({self._print(base)})"
        if ex == sp.Rational(-1, 2):
            return f"(1.0/numpy.sqrt({self._print(base)}))"
        if ex.is_Integer:
            return f"(({self._print(base)})**{int(ex)})"
        return f"(({self._print(base)})**({self._print(ex)}))"

    def _print_log1p(self, e):
        return f"numpy.log1p({self._print(e.args[0])})"

    def _print_expm1(self, e):
        return f"numpy.expm1({self._print(e.args[0])})"

    def _print_tanh(self, e):
        return f"numpy.tanh({self._print(e.args[0])})"

    def _print_sech2(self, e):
        return f"_sech2({self._print(e.args[0])})"

    def _print_sigmoid(self, e):
        return f"_sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"_log1pexp({self._print(e.args[0])})"

    def _print_logcosh(self, e):
        return f"_logcosh({self._print(e.args[0])})"

    def _print_hypot(self, e):
        return f"numpy.hypot({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_sign(self, e):
        return f"numpy.sign({self._print(e.args[0])})"


NUMPY_NAMESPACE_IMPORTS = "from fusedloss._reference import _log1pexp, _logcosh, _sech2, _sigmoid"
SCALAR_NAMESPACE_IMPORTS = "from fusedloss._pointwise import log1pexp, log_cosh_value, sech2, sigmoid, sign"


def _first_piecewise(exprs):
    for e in exprs:
        for t in sp.preorder_traversal(e):
            if isinstance(t, sp.Piecewise):
                return t
    return None


def _assume(exprs, cond, truth: bool):
    """``exprs`` with every Piecewise simplified knowing that ``cond`` is ``truth``."""

    def fold(pw):
        pairs = []
        for x, c in pw.args:
            if c == cond:
                if truth:
                    pairs.append((x, sp.true))
                    break
                continue
            pairs.append((x, c))
            if c is sp.true:
                break
        if not pairs:  # pragma: no cover - a Piecewise always ends with a True branch
            return pw
        if pairs[0][1] is sp.true:
            return pairs[0][0]
        return sp.Piecewise(*pairs)

    return [e.replace(lambda t: isinstance(t, sp.Piecewise), fold) for e in exprs]


MAX_LEAVES = 32


def _count_leaves(exprs, depth=0) -> int:
    pw = _first_piecewise(exprs)
    if pw is None:
        return 1
    if depth > 6:
        return MAX_LEAVES + 1
    total, rest = 0, list(exprs)
    for x, c in pw.args:
        if c is sp.true:
            total += _count_leaves(rest, depth + 1)
            break
        total += _count_leaves(_assume(rest, c, True), depth + 1)
        rest = _assume(rest, c, False)
        if total > MAX_LEAVES:
            break
    return total


def _emit_leaf(printer, exprs, indent, lines):
    replacements, reduced = sp.cse([stable(e) for e in exprs], symbols=sp.numbered_symbols("_t"),
                                   optimizations="basic")
    pad = " " * indent
    for sym, val in replacements:
        lines.append(f"{pad}{sym} = {printer._print(val)}")
    lines.append(f"{pad}return " + ", ".join(printer._print(r) for r in reduced))


def _emit(printer, exprs, indent, lines):
    """Nested ``if`` statements on the Piecewise conditions, with one fused leaf (shared subexpressions) each."""
    pw = _first_piecewise(exprs)
    if pw is None:
        _emit_leaf(printer, exprs, indent, lines)
        return
    pad = " " * indent
    rest = list(exprs)
    first = True
    for x, c in pw.args:
        if c is sp.true:
            lines.append(f"{pad}else:")
            _emit(printer, rest, indent + 4, lines)
            return
        lines.append(f"{pad}{'if' if first else 'elif'} {printer._print(stable(c))}:")
        _emit(printer, _assume(rest, c, True), indent + 4, lines)
        rest = _assume(rest, c, False)
        first = False
    lines.append(f"{pad}else:")  # pragma: no cover - a Piecewise always ends with a True branch
    _emit(printer, rest, indent + 4, lines)


def _code_names(p, y, params):
    """The symbols as the generated code names them (with their assumptions, which the rewrites use)."""
    names = {p: sp.Symbol("p", **p.assumptions0), y: sp.Symbol("y", **y.assumptions0)}
    for i, s in enumerate(params):
        names[s] = sp.Symbol(f"_k{i}", **s.assumptions0)
    return names


def point_source(v, g, h, p, y, params: list) -> str:
    """``def point(p, y, params)``: (value, gradient, Hessian) at one point; ``params``: the parameters' tuple."""
    names = _code_names(p, y, params)
    exprs = [sp.sympify(e).xreplace(names) for e in (v, g, h)]
    lines = ["def point(p, y, params):"]
    for i in range(len(params)):
        lines.append(f"    _k{i} = params[{i}]")
    printer = ScalarPrinter({"fully_qualified_modules": True})
    if _count_leaves(exprs) <= MAX_LEAVES:
        _emit(printer, exprs, 4, lines)
    else:  # too many branch combinations: one leaf of conditional expressions
        _emit_leaf(printer, exprs, 4, lines)
    return "\n".join(lines) + "\n"


def reference_source(v, g, h, p, y, params: list) -> str:
    """``def reference(p, y, a)``: float64 arrays (value, gradient, Hessian); all branches evaluated."""
    names = _code_names(p, y, params)
    printer = ArrayPrinter()
    lines = ["def reference(p, y, a):"]
    for i in range(len(params)):
        lines.append(f"    _k{i} = a[{i}]")
    printed = [printer.doprint(stable(sp.sympify(e).xreplace(names))) for e in (v, g, h)]
    lines.append("    return (" + ", ".join(printed) + ")")
    return "\n".join(lines) + "\n"


def numpy_function(expr, p, y, params: list):
    """``f(p, y, *params)`` evaluating ``expr`` on float64 arrays (for the definition-time checks)."""
    import fusedloss._reference as ref

    namespace = {"numpy": np, "_log1pexp": ref._log1pexp, "_logcosh": ref._logcosh, "_sech2": ref._sech2,
                 "_sigmoid": ref._sigmoid}
    return sp.lambdify([p, y, *params], stable(sp.sympify(expr)), modules=[namespace, "numpy"],
                       printer=ArrayPrinter)


def formula_text(e) -> str:
    return sp.sstr(e)


def signature_names(fn) -> tuple:
    return tuple(inspect.signature(fn).parameters)
