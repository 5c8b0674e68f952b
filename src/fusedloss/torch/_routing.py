"""CPU routing: small calls of the losses torch has, with torch's options only, run on torch's own function
(``_small_on_torch`` wraps each such functional form). ``set_cpu_routing("fused")`` turns it off. CUDA tensors
are routed by ``fusedloss._gpu_routing`` instead.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from .._config import get_backend
from .._spec import REGISTRY
from ..backends import REGISTRY as BACKENDS
from ._args import torch_error
from ._kernel import _NATIVE
from ._twin import Twin

# Below these sizes a call of a loss that torch has, with torch's options only, runs on torch's own kernel
# (the result is torch's by definition): there the cost of a Python autograd.Function (its forward and its
# backward cost more than torch's whole C++ loss on a few thousand elements) and of rows of a few classes
# outweigh the fused kernel. Measured forward + backward on this project's 2-core machine, float32, 2 threads
# (`fusedloss bench --torch-module --size ...`): mse breaks even near 1e6 elements; cross_entropy near 4e5
# elements with 100 classes and 5e5 with 1000; with 16 to 31 classes torch keeps up at any size measured,
# hence the class count below which such calls stay on torch.
SMALL_ELEMENTWISE = 1 << 20
SMALL_MULTICLASS = 1 << 19
FEW_CLASSES = 32
# Rows of fewer than TILED_CLASSES classes are where torch's cross_entropy is slowest (rows shorter than one
# vector), and where the C++ kernel takes 16 rows at a time with hard labels: forward + backward, 1 thread,
# float32, fused over torch 1.1x at 4096 x 2, 1.5x at 1024 x 5, 2.5x at 1024 x 10 and 6x at 16384 x 10 (torch
# ahead below, e.g. 0.7x at 2048 x 2). Such calls (a loss routed with multiclass=TILES, 2-d input, class labels)
# go to torch below TILED_MIN elements only, when the fused call would run the C++ kernel.
TILES = "tiles"
TILED_CLASSES = 16
TILED_MIN = 1 << 13
_ROUTING = {"cpu": "auto"}


def _fused_runs_cpp() -> bool:
    """Whether a call without backend= runs the C++ kernel."""
    name = get_backend()
    return name == "cpp" or (name == "auto" and BACKENDS["cpp"].load() is not None)


def set_cpu_routing(mode: str) -> None:
    """"auto" (default): small CPU calls of the losses torch has, with torch's options only, run on torch's
    own kernels (see SMALL_ELEMENTWISE, SMALL_MULTICLASS, FEW_CLASSES, TILED_MIN); "fused": always the fused
    kernels.
    A call with ``backend=`` given always runs the fused kernels of that backend."""
    if mode not in ("auto", "fused"):
        raise ValueError(f"set_cpu_routing: mode must be 'auto' or 'fused', got {mode!r}")
    _ROUTING["cpu"] = mode


def _torch_is_faster(input, target, multiclass) -> bool:
    """Whether this call goes to torch's own kernel (see SMALL_ELEMENTWISE; multiclass: False, True or TILES). It
    runs on every small call, so the cheap tests come first and each tensor attribute is read once."""
    if (_ROUTING["cpu"] != "auto" or type(input) is not Tensor or type(target) is not Tensor or not input.is_cpu
            or not target.is_cpu):
        return False
    dtype = input.dtype
    if dtype not in _NATIVE:
        return False
    shape = input.shape  # (ndim and the element count from it: each tensor attribute read costs ~0.1 us)
    ndim = len(shape)
    n = shape[0] if ndim == 1 else shape[0] * shape[1] if ndim == 2 else input.numel()
    if n == 0:  # (no classes: torch's multilabel_soft_margin_loss gives NaN where the fused form says why)
        return False
    if not multiclass:
        return (n < SMALL_ELEMENTWISE and target.dtype == dtype and target.shape == shape
                and not torch.compiler.is_compiling())
    if ndim == 0:
        return False
    classes = shape[1] if ndim >= 2 else shape[0]
    tdtype = target.dtype
    if classes < TILED_CLASSES:
        if (multiclass is TILES and n >= TILED_MIN and ndim == 2 and tdtype == torch.int64
                and _fused_runs_cpp()):
            return False
    elif n >= SMALL_MULTICLASS and classes >= FEW_CLASSES:
        return False
    if tdtype == torch.int64:  # class labels: the input's shape without the class axis
        tshape = target.shape
        if ndim == 2:  # (N, C): slicing a torch.Size costs more than the rest of this function
            ok = len(tshape) == 1 and tshape[0] == shape[0]
        else:
            ok = tuple(tshape) == (tuple(shape[:1]) + tuple(shape[2:]) if ndim >= 2 else ())
    else:
        ok = tdtype == dtype and target.shape == shape
    return ok and not torch.compiler.is_compiling()


# argument types torch's functions take as fusedloss's do (a NumPy weight, say, would not be)
_TORCH_ARG_TYPES = (type(None), bool, int, float, str, Tensor)


def _is_default(value, default) -> bool:
    return value is default or (not isinstance(value, Tensor) and type(value) is type(default) and value == default)


def _torch_takes(args: tuple, kwargs: dict, extensions: tuple) -> bool:
    """Whether torch's function takes these arguments as fusedloss's does: every fusedloss extension keyword
    (name, default) at its default, and every argument of a type torch's functions accept."""
    for k, d in extensions:
        if k in kwargs and not _is_default(kwargs[k], d):
            return False
    for v in args:
        if not isinstance(v, _TORCH_ARG_TYPES):
            return False
    for v in kwargs.values():
        if not isinstance(v, _TORCH_ARG_TYPES):
            return False
    return True


# REFUSED: a call that torch's function refuses (an out-of-range label, a weight of the wrong size or type, a
# bad reduction) runs the fused form instead, whose checks raise the error that names the argument, as every call
# with backend= gets; torch's own messages (a RuntimeError, an AttributeError of a float weight) do not. The
# common call pays nothing for this.


# A weight that torch would take where the fused form refuses it or computes otherwise stays off the route:
# complex, negative or non-finite values, and values large enough that torch's sums of weighted losses overflow
# where the fused kernels scale them (the fused form on 1e308 gives the finite mean).
_WEIGHT_LIMIT = 1e30


def _weight_ok(w) -> bool:
    if not isinstance(w, Tensor):
        return w is None
    if not w.is_floating_point() or w.numel() >= SMALL_ELEMENTWISE:  # (larger than any routed input)
        return False
    w = w.detach()
    return bool(((w >= 0) & (w < _WEIGHT_LIMIT)).all())


def _options_check(fn, loss: str):
    """``ok(args, kwargs)``: whether the options of a call of the functional form ``fn`` of registry loss
    ``loss`` are valid where torch's function would run them unchecked: each one named like a registry parameter
    passes the registry's conversion and check, and a ``weight`` passes ``_weight_ok``; the rest (reduction, the
    legacy flags, ignore_index) torch checks as fusedloss does, and a call torch refuses runs the fused form
    (REFUSED)."""
    params = {p.name: p for p in REGISTRY[loss].params}
    signature = inspect.signature(fn)

    def ok(args: tuple, kwargs: dict) -> bool:
        given = signature.bind_partial(None, None, *args, **kwargs).arguments if args else kwargs
        for k, v in given.items():
            p = params.get(k)
            if p is not None:
                try:
                    if p.check(p.convert(v)) is not None:
                        return False
                except (TypeError, ValueError, OverflowError):
                    return False
            elif k == "weight" and not _weight_ok(v):
                return False
        return True

    return ok


def _small_on_torch(twin, multiclass=False, extensions: dict | None = None, index_labels: bool = False):
    """Route small calls of a functional named after ``torch.nn.functional.<twin>`` to torch's function,
    with the same arguments, when every fusedloss extension keyword (``extensions``: name -> default, plus
    ``backend``) is at its default and the options are valid (``_options_check``); the others run the fused
    form, or torch's function where only it gives the derivatives asked for (``_twin``). The fused form's
    ``ValueError``s are raised as ``_args.ArgumentError`` (see ``_args.torch_errors``)."""
    torch_fn = getattr(torch.nn.functional, twin)
    extensions = tuple({"backend": None, **(extensions or {})}.items())
    names = frozenset(k for k, _ in extensions)
    loss = next(n for n, spec in REGISTRY.items() if spec.torch_name == twin)

    def wrap(fn):
        twin = Twin(fn, loss)
        options_ok = _options_check(fn, loss)
        # a call with every option at its default: torch's op directly (see _direct)
        defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                    if k in ("reduction", *_OPS.get(twin, (None, (), ()))[1])}
        weights = _OPS.get(twin, (None, (), ()))[2]
        plain = _direct(twin, defaults, weights)
        no_weights = (None,) * len(weights)

        def to_torch(input, target, args, kwargs) -> bool:
            return (_torch_is_faster(input, target, multiclass) and _torch_takes(args, kwargs, extensions)
                    and (not (args or kwargs) or options_ok(args, kwargs)))

        def routed(input, target, *args, **kwargs):
            if to_torch(input, target, args, kwargs):
                try:
                    if plain is not None and not (args or kwargs) and not _mode_enabled():
                        return plain(input, target, *no_weights)
                    return torch_fn(input, target, *args, **{k: v for k, v in kwargs.items() if k not in names})
                except Exception:  # noqa: BLE001 - see REFUSED
                    pass
            try:
                return twin.run(fn, (input, target, *args), kwargs)
            except ValueError as exc:
                raise torch_error(exc, index_labels) from None

        routed.__name__, routed.__qualname__, routed.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        routed.__wrapped__ = fn
        routed._twin = twin
        routed._torch_twin = (torch_fn, multiclass, extensions, names, options_ok)  # for the modules' cached route
        routed._to_torch = lambda input, target, *args, **kwargs: to_torch(input, target, args, kwargs)
        return routed

    return wrap


def module_route(fn, options: dict, buffers: tuple):
    """A module's cached routing decision: ``(torch's function, multiclass, the keywords for it without the
    buffers, its direct op or None)`` when ``fn`` (a functional form) is routed and the module's ``options`` (its
    non-tensor attributes and ``reduction``) are all torch's, else None. The buffers are read at each call
    (``.to(device)`` replaces them) and must be options torch has."""
    twin = getattr(fn, "_torch_twin", None)
    if twin is None:
        return None
    torch_fn, multiclass, extensions, names, options_ok = twin
    if names.intersection(buffers) or not _torch_takes((), options, extensions) or not options_ok((), options):
        return None
    kw = {k: v for k, v in options.items() if k not in names}
    return torch_fn, multiclass, kw, _direct(torch_fn.__name__, kw, buffers)


# twin -> (the ATen op in torch._C._nn, its options after the reduction, the buffers it takes after the target)
_OPS = {"mse_loss": ("mse_loss", (), ()), "l1_loss": ("l1_loss", (), ()),
        "huber_loss": ("huber_loss", ("delta",), ()),
        "cross_entropy": ("cross_entropy_loss", ("ignore_index", "label_smoothing"), ("weight",))}


def _direct(twin: str, kw: dict, buffers: tuple):
    """``op(input, target, *buffers)``: the ATen op that ``torch.nn.functional.<twin>`` ends in, bound to the
    module's options, for the calls that ``_torch_is_faster`` lets through (plain tensors; for the elementwise
    losses, of one shape and dtype). The same op on the same arguments, hence torch's result, without the
    functional's Python (its override dispatch, its size warning, its broadcast of equal shapes). None where
    the functional does more (a weight, a legacy argument, another loss); ``run_on_torch`` also leaves it while
    a torch function mode (``with torch.device(...)``, a profiler's) wants to see the functional."""
    op_name, extra, takes = _OPS.get(twin, (None, (), ()))
    op = getattr(torch._C._nn, op_name, None) if op_name else None
    if op is None or set(kw) != {"reduction", *extra} or buffers != takes:
        return None
    from torch.nn import _reduction

    try:
        enum = _reduction.get_enum(kw["reduction"])
    except ValueError:
        return None
    if twin == "cross_entropy":  # (input, target, weight, reduction, ignore_index, label_smoothing)
        ignore, smoothing = int(kw["ignore_index"]), float(kw["label_smoothing"])
        return lambda input, target, weight: op(input, target, weight, enum, ignore, smoothing)
    if extra:  # huber: (input, target, reduction, delta)
        delta = float(kw[extra[0]])
        return lambda input, target: op(input, target, enum, delta)
    return lambda input, target: op(input, target, enum)


_mode_enabled = torch._C._is_torch_function_mode_enabled


def run_on_torch(route, input, target, buffer_names: tuple, buffers: list):
    """A routed module call: the direct op when there is one and no torch function mode is on, else torch's
    functional with the module's keywords and buffers."""
    direct = route[3]
    if direct is not None and not _mode_enabled():
        return direct(input, target, *buffers)
    return route[0](input, target, **route[2], **dict(zip(buffer_names, buffers)))


def routes_to_torch(form, input, target, *args, **kwargs) -> bool:
    """Whether the call ``form(input, target, *args, **kwargs)`` of a fusedloss.torch functional form, or
    ``form(input, target)`` of a module instance, runs torch's own function: its result is then torch's, NaN, inf
    and unchecked target domains included (a call that torch's function refuses still runs the fused form, see
    REFUSED). The forms decide through the same code; tests ask here which oracle judges a call instead of
    repeating the thresholds."""
    decide = getattr(form, "_to_torch", None)
    return decide is not None and decide(input, target, *args, **kwargs)
