"""Write ``src/fusedloss/__init__.pyi``: the typed signatures of the public API, generated from the registry.

At run time each loss takes its parameters through ``**params`` (checked against the registry); the stub gives
every loss its own class whose methods list those parameters as typed keyword arguments with their defaults,
so that type checkers and IDEs know ``fl.huber(p, y, delta=0.5)`` and reject ``fl.huber(p, y, delt=0.5)``.
The other public names are re-exported from the modules that define them (their own annotations apply).

    python tools/gen_stubs.py          # write the stub
    python tools/gen_stubs.py --check  # exit 1 when the committed stub differs from the generated one

tests/test_typing.py runs the check, then mypy on tests/typing/.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "src" / "fusedloss" / "__init__.pyi"

ARRAY = "ArrayLike"
OUT = "NDArray[Any]"
# the types of the arguments every loss method shares, by name; a new argument must be added here
ARGUMENTS = {
    "pred": ARRAY, "input": ARRAY, "target": ARRAY, "logits": ARRAY, "targets": ARRAY, "input_lengths": ARRAY,
    "target_lengths": ARRAY, "sample_weight": f"{ARRAY} | None", "backend": "str | None",
    "grad_out": f"{OUT} | None", "hess_out": f"{OUT} | None", "hessian": 'Literal["exact", "ones"]',
}
METRICS = "str | Sequence[str]"  # metric names (a loss with a metrics pass: LossSpec.metrics_pass)
REDUCED = 'Literal["mean", "sum"]'
UNREDUCED = 'Literal["none"]'
# method -> (return type for "mean"/"sum", for "none"); None: the method has no reduction argument
RETURNS = {
    "__call__": ("float", OUT),
    "value_and_grad": (f"tuple[float, {OUT}]", f"tuple[{OUT}, {OUT}]"),
    "grad": (OUT, OUT),
    "grad_hess": (f"tuple[{OUT}, {OUT}]", f"tuple[{OUT}, {OUT}]"),
    "partial": ("LossState", None),
}


def _param_types():
    from fusedloss import _spec

    return {
        float: "float", _spec._real: "float", _spec._to_bool: "bool", _spec._to_int: "int",
        _spec._optional_float: "float | None",
        _spec._vector_or_scalar: f"float | {ARRAY} | None", _spec._optional_int: "int | None",
    }


def param_type(param, types_by_convert) -> str:
    hint = types_by_convert.get(param.convert)
    if hint is None and isinstance(param.default, str):
        return "str"
    if hint is None:
        raise SystemExit(f"gen_stubs: no type for parameter {param.name!r} (convert={param.convert!r}); "
                         "add its convert function to _param_types()")
    return hint


def _default(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "..."


def _method(loss, spec, name: str, types_by_convert) -> list[str]:
    fn = getattr(type(loss), name)
    sig = inspect.signature(fn)
    kinds = [p.kind for p in sig.parameters.values()]
    if kinds == [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL,
                 inspect.Parameter.VAR_KEYWORD]:  # a method this loss does not have: it raises
        return [f"    def {name}(self, *args: Any, **kwargs: Any) -> NoReturn: ..."]
    if spec.kind == "pairwise":
        return _pairwise_method(spec, name, sig, types_by_convert)
    positional, keywords = [], []
    metrics = False
    for p in list(sig.parameters.values())[1:]:
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            continue  # it only catches a parameter passed by position, to say it is keyword-only: a type error here
        if p.name == "metrics":  # only a loss with a metrics pass takes it (others raise): overloads below
            metrics = spec.metrics_pass is not None
            continue
        if p.kind == inspect.Parameter.VAR_KEYWORD:
            keywords += [f"{q.name}: {param_type(q, types_by_convert)} = {_default(q.default)}" for q in spec.params]
            continue
        if p.name == "reduction":
            keywords.append("reduction: {reduction}")
            continue
        if p.name not in ARGUMENTS:
            raise SystemExit(f"gen_stubs: no type for argument {p.name!r} of {type(loss).__name__}.{name}; "
                             "add it to ARGUMENTS")
        text = f"{p.name}: {ARGUMENTS[p.name]}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {_default(p.default)}"
        (positional if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD else keywords).append(text)
    reduced, unreduced = RETURNS[name]
    has_reduction = any(k.startswith("reduction") for k in keywords)
    if not has_reduction or unreduced is None or unreduced == reduced:
        args = ", ".join(["self", *positional, "*", *[k.format(reduction='str = "mean"')
                                                     for k in keywords]])
        return [f"    def {name}({args}) -> {reduced}: ..."]
    lines = []
    # a literal reduction tells which type comes back; a plain str (a variable) gets the union; with metrics
    # (names) the metrics come back last
    for with_metrics in (False, True) if metrics else (False,):
        for hint, ret in ((f'{REDUCED} = "mean"', reduced), (UNREDUCED, unreduced),
                          ("str", _union(reduced, unreduced))):
            kw = [k.format(reduction=hint) for k in keywords]
            if with_metrics:
                kw.append(f"metrics: {METRICS}")
                ret = f"tuple[{ret[6:-1]}, Metrics]" if ret.startswith("tuple[") else f"tuple[{ret}, Metrics]"
            elif metrics:
                kw.append("metrics: None = None")
            lines += ["    @overload", f"    def {name}({', '.join(['self', *positional, '*', *kw])}) -> {ret}: ..."]
    return lines


def _pairwise_method(spec, name: str, sig, types_by_convert) -> list[str]:
    """A pairwise loss's method: its arrays (the spec's inputs, then the target) by position, and a tuple of
    gradients, one per input."""
    grads = f"tuple[{', '.join([OUT] * len(spec.inputs))}]"
    arrays = [f"{n}: {ARRAY}" for n in (*spec.inputs, *(["target"] if spec.row_target else []))]
    keywords = []
    for p in list(sig.parameters.values())[1:]:
        if p.kind == inspect.Parameter.KEYWORD_ONLY:
            hint = {"reduction": "str", "grad_out": f"{grads} | None"}.get(p.name) or ARGUMENTS[p.name]
            keywords.append(f"{p.name}: {hint} = {_default(p.default)}")
    keywords += [f"{q.name}: {param_type(q, types_by_convert)} = {_default(q.default)}" for q in spec.params]
    ret = {"__call__": f"float | {OUT}", "value_and_grad": f"tuple[float | {OUT}, {grads}]", "grad": grads,
           "partial": "LossState"}[name]
    return [f"    def {name}({', '.join(['self', *arrays, '*', *keywords])}) -> {ret}: ..."]


def _union(a: str, b: str) -> str:
    if a.startswith("tuple[") and b.startswith("tuple["):
        firsts = [x.split(", ", 1) for x in (a[6:-1], b[6:-1])]
        if firsts[0][1] == firsts[1][1]:
            return f"tuple[{firsts[0][0]} | {firsts[1][0]}, {firsts[0][1]}]"
    return f"{a} | {b}"


def generate() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    import fusedloss
    from fusedloss._losses import LOSSES

    LOSSES = {name: loss for name, loss in LOSSES.items() if loss.spec.builtin}  # not a user's, defined in-process

    types_by_convert = _param_types()
    out = [
        "# Generated by tools/gen_stubs.py from the loss registry: do not edit, run `python tools/gen_stubs.py`.",
        "from collections.abc import Sequence",
        "from typing import Any, Literal, NoReturn, overload",
        "",
        "from numpy.typing import ArrayLike, NDArray",
        "",
        "from .metrics import Metrics",
        "",
    ]
    reexports = []
    for name in fusedloss.__all__:
        if name in LOSSES or name == "Loss":
            continue
        obj = getattr(fusedloss, name)
        if isinstance(obj, types.ModuleType):
            reexports.append(f"from . import {name} as {name}")
        else:
            module = obj.__module__.removeprefix("fusedloss")
            reexports.append(f"from {module or '.'} import {obj.__name__} as {name}")
    if "LossState" not in fusedloss.__all__:
        reexports.append("from ._state import LossState as LossState")
    names = textwrap.wrap(", ".join(f'"{n}"' for n in sorted(fusedloss.__all__)), 112)
    out += sorted(reexports) + ["", "__version__: str", "__all__ = [", *[f"    {line}" for line in names], "]"]
    # Loss as the type checker sees it: each loss's class below narrows these (a method taking
    # `*args: Any, **kwargs: Any` accepts any override)
    out += ["", "class Loss:", '    """A loss from the registry; each loss object has its own typed signatures."""', "",
            "    name: str", "    spec: Any", ""]
    out += [f"    def {m}(self, *args: Any, **kwargs: Any) -> Any: ..." for m in RETURNS]
    for name, loss in LOSSES.items():
        spec = loss.spec
        cls = f"_Loss_{name}"
        doc = textwrap.wrap(f'"""{spec.summary}."""', 112, subsequent_indent="    ")
        out += ["", f"class {cls}(Loss):", *[f"    {line}" for line in doc], ""]
        for method in RETURNS:
            out += _method(loss, spec, method, types_by_convert)
        out += ["", f"{name}: {cls}"]
    return "\n".join(_wrap(line) for line in out) + "\n"


def _wrap(line: str, width: int = 120) -> str:
    """Break a long ``def`` after its commas, continuation lines indented by 8."""
    if len(line) <= width or "def " not in line:
        return line
    head, _, rest = line.partition("(")
    parts, depth, start = [], 0, 0  # split at the commas outside brackets
    for i, ch in enumerate(rest):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0 and rest[i + 1:i + 2] == " ":
            parts.append(rest[start:i])
            start = i + 2
    parts.append(rest[start:])
    lines, current = [], head + "("
    for i, part in enumerate(parts):
        piece = part + (", " if i < len(parts) - 1 else "")
        if len(current) + len(piece.rstrip()) > width and current.strip():
            lines.append(current.rstrip())
            current = " " * 8 + piece
        else:
            current += piece
    lines.append(current.rstrip())
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the committed stub is not current")
    args = ap.parse_args(argv)
    text = generate()
    if args.check:
        current = STUB.read_text() if STUB.exists() else ""
        if current != text:
            print(f"{STUB.relative_to(ROOT)} is not current: run python tools/gen_stubs.py", file=sys.stderr)
            return 1
        return 0
    STUB.write_text(text)
    print(f"wrote {STUB.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
