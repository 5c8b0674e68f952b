"""Compile machinery shared by the Numba CPU and Numba-CUDA backends.

Two problems, one trick. The point and row functions in ``_pointwise.py`` are plain Python; each backend
compiles them with its own decorator (``njit(inline="always")`` or ``cuda.jit(device=True)``), and the
calls between them (``mae_point`` calls ``sign``) must resolve to the compiled versions, not to the Python
ones. And each backend has generic loops that call "the point function" (or "the row function") by a
global name, ``point`` (``row``); each needs a copy per loss in which that name means that loss's function.

Both are done by rebuilding functions from their code objects over a new globals dict
(``types.FunctionType(code, namespace)``): the code is the same, only the names it looks up change.

Why copies and not a point function passed as an argument: Numba compiles that too, but its on-disk
cache cannot key on a function argument and misses in every new process. A copy is an ordinary global
function to Numba; its cache entry is named after its ``__qualname__``, so each copy gets a distinct one
that also carries a hash of the sources it was built from (Numba itself only checks the time stamp of the
file that holds the code object, the backend's, not ``_pointwise.py``'s).
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

from .. import _pointwise


# Custom losses (fusedloss._custom): name -> (point function, key of its formula). A point function generated
# from a user's formula, with the built-in signature ``point(p, y, params)`` (``params``: the tuple of the loss's
# parameters); it calls the helpers of ``_pointwise`` by name.
CUSTOM: dict = {}


def custom_point(loss: str, namespace: dict, decorate):
    """(compiled point function of the custom ``loss``, its formula key) or None for a built-in loss.

    The function is rebuilt over ``namespace`` (a backend's ``compile_namespace``), so the helpers it calls
    are the compiled ones, as for the built-in point functions."""
    entry = CUSTOM.get(loss)
    if entry is None:
        return None
    fn, key = entry
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{loss}_point"
    return decorate(copy), key


def compile_namespace(decorate, overrides=None) -> dict:
    """The globals of ``_pointwise`` with every function in it replaced by ``decorate(copy of it)``.

    The copies look up names in the returned dict, so a point function calling ``sign`` calls the
    compiled ``sign``. Nothing is compiled here: Numba compiles lazily, on the first call that needs it.
    ``overrides`` (optional) replaces names in that namespace after the copies are made: the CPU backend
    passes ``_vecmath.overrides()`` (a ``math`` whose ``exp``, ``log``, ... vectorise); the CUDA backend
    keeps ``math`` (libdevice).
    """
    namespace = dict(vars(_pointwise))
    for name, obj in vars(_pointwise).items():
        if isinstance(obj, types.FunctionType) and obj.__module__ == _pointwise.__name__:
            copy = types.FunctionType(obj.__code__, namespace, name, obj.__defaults__, obj.__closure__)
            copy.__qualname__ = obj.__qualname__
            copy.__doc__ = obj.__doc__
            namespace[name] = decorate(copy)
    namespace.update(overrides or {})
    return namespace


def point_names() -> frozenset[str]:
    """Losses that have a point function ``<loss>_point`` in ``_pointwise``."""
    return frozenset(
        name[: -len("_point")]
        for name, obj in vars(_pointwise).items()
        if name.endswith("_point") and isinstance(obj, types.FunctionType)
    )


def row_names() -> frozenset[str]:
    """Multiclass losses that have a row function ``<loss>_row`` in ``_pointwise``."""
    return frozenset(
        name[: -len("_row")]
        for name, obj in vars(_pointwise).items()
        if name.endswith("_row") and isinstance(obj, types.FunctionType)
    )


def vector_slot(loss: str) -> int:
    """Which slot of the packed parameters an elementwise loss's vector parameter (``cols``) replaces."""
    from .._spec import REGISTRY

    spec = REGISTRY[loss]
    return spec.param_names.index(spec.vector_param) if spec.vector_param else 0


def source_hash(*files: str) -> str:
    """8 hex digits of a hash of the source ``files`` (and of ``_pointwise.py`` and this file)."""
    digest = hashlib.sha256()
    for path in (_pointwise.__file__, __file__, *files):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:8]


def specialise(template: types.FunctionType, namespace: dict, qualname: str) -> types.FunctionType:
    """A copy of ``template`` whose global names are looked up in ``namespace``, named ``qualname``.

    The copy keeps the template's code object (hence its file, which Numba's cache locator uses) and its
    module name; give each copy a distinct ``qualname`` so that each gets its own cache entry.
    """
    copy = types.FunctionType(template.__code__, namespace, template.__name__, template.__defaults__,
                              template.__closure__)
    copy.__qualname__ = qualname
    copy.__module__ = template.__module__
    copy.__doc__ = template.__doc__
    return copy


def compile_functions(module: types.ModuleType, decorate, tag: str, overrides=None) -> dict:
    """The functions ``module.FUNCTIONS`` each compiled by ``decorate`` (``njit(...)`` or
    ``cuda.jit(device=True)``), their calls to one another resolving to the compiled versions: name -> compiled.
    ``tag`` (the kind and a source hash) makes their cache entries distinct; ``overrides`` (optional) replaces names
    in their namespace (as in ``compile_namespace``)."""
    namespace = dict(vars(module), **(overrides or {}))
    for name in module.FUNCTIONS:
        namespace[name] = decorate(specialise(getattr(module, name), namespace, f"{tag}__{name}"))
    return {name: namespace[name] for name in module.FUNCTIONS}


def binary_metrics_kernel(template: types.FunctionType, backend_file: str, namespace: dict, element_decorate,
                          kernel_decorate):
    """The binary metrics loop ``template`` (its globals ``namespace``) with ``element_terms`` bound to
    ``_binary_metrics.element_terms`` compiled by ``element_decorate``, the loop compiled by ``kernel_decorate``;
    the cache entry carries a hash of the backend's file and that one."""
    from .. import _binary_metrics

    digest = source_hash(backend_file, _binary_metrics.__file__)
    namespace = dict(namespace, element_terms=element_decorate(_binary_metrics.element_terms))
    return kernel_decorate(specialise(template, namespace, f"binary_metrics__{digest}"))


# --- pairwise losses (fusedloss._pairwise's contract) -------------------------------------------------------


def pairwise_kernel(loss: str, template: types.FunctionType, backend_file: str, namespace: dict, row_decorate,
                    kernel_decorate, overrides=None, kind: str = "pairwise", files: tuple = (), bind: str = "row"):
    """The loop ``template`` over rows (its globals ``namespace``, ``row`` bound to ``_pairwise_rows.<loss>_row``;
    with ``bind="point"``, ``point`` bound to ``<loss>_point``), each of ``_pairwise_rows``'s functions compiled by
    ``row_decorate`` (with ``overrides`` in their namespace, as ``compile_namespace``'s), the loop by
    ``kernel_decorate``. ``kind`` names the loop in the cache entries, and ``files`` (beyond the backend's and
    ``_pairwise_rows.py``) are hashed into them."""
    from .. import _pairwise_rows

    digest = source_hash(backend_file, _pairwise_rows.__file__, *files)
    rows = compile_functions(_pairwise_rows, row_decorate, f"{kind}__{digest}", overrides)
    namespace = dict(namespace, **{bind: rows[f"{loss}_{bind}"]})
    return kernel_decorate(specialise(template, namespace, f"{kind}__{loss}__{digest}"))


def pairwise_args(packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, like_x, like_f64) -> tuple:
    """The pairwise loops' arguments after the arrays' own: ``(x1, x2, x3, y, has_y, D, prm, gscale, want_grad,
    loss_out, g1, g2, g3)``, an absent array replaced by ``like_x`` (one of the inputs' dtype) or ``like_f64``
    (float64) so that one compiled signature serves every call."""
    return (x1, x2, like_x if x3 is None else x3, like_f64 if y is None else y, y is not None, int(D),
            tuple(float(v) for v in packed), like_f64 if gscale is None else gscale, gscale is not None, loss_out,
            like_x if g1 is None else g1, like_x if g2 is None else g2, like_x if g3 is None else g3)
