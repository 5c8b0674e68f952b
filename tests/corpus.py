"""The bad-input corpus: every public entry point x host backend x hostile input class, from the registry.

A case is (loss, entry point, backend, input class). The entry points are the loss object's ``__call__``,
``value_and_grad``, ``grad``, ``grad_hess`` and ``partial``; ``fusedloss.torch.functional.loss``, the torch
functional form named after torch's (``fusedloss.torch.FUNCTIONAL[loss]``, with torch's argument names, mapped
from its signature by ``corpus_run.torch_arguments``) and its module (``MODULES[loss]``), whose passing results
are torch's own loss where torch has it and the inputs are plain; the same two called without ``backend=`` where
CPU routing may hand them to torch's own function (``ROUTED``): a call that routing hands to torch (asked of
``fusedloss.torch._routing.routes_to_torch``), or whose inputs the fused form refuses and torch's function takes
(``fusedloss.torch._twin``), must return what torch's function returns on the same inputs, bit for bit, NaN, inf
and unchecked target domains included (where torch refuses them, the fused form runs and is judged as a pinned
form), the others as the pinned forms (the NumPy backend's through the pinned form);
``fusedloss.boosting.gradient_hessian`` and an XGBoost objective; and ``fusedloss.dask`` (pred and target chunked
differently, the synchronous scheduler). CTC meets each of these that it has (the loss object, ``ctc_loss`` /
``CTCLoss``, ``fusedloss.dask.ctc``) with its lengths. The CUDA backend meets a subset of the classes on device
arrays in ``test_corpus_cuda.py``. The classes (``CLASSES``) are wrong dtypes, shapes and layouts, views that are
huge, misaligned, strided or reversed, empty arrays, non-finite data, bad weights, bad parameters, out-of-range
labels and ignore_index, targets that require grad (torch), and outputs that are read-only or overlap an input.
Each class says what a correct library does with it:

- ``"raise"``: a clear exception: ValueError, TypeError or IndexError (or the MemoryError of a loss call that
  says which array and its size), whose message names the argument;
- ``"value"``: the result of the same call on clean copies of the inputs (C-contiguous, aligned, native byte
  order) with the NumPy backend, within a tolerance (NaN where it has NaN);
- ``"any"``: either of those.

Running a case classifies it (``OUTCOMES``): ``clear`` or ``correct`` pass; ``unclear`` (an exception of
another type, or one that does not name the argument), ``refused`` (an exception where a value is due),
``garbage`` (a value that differs from the reference, or a value where an exception is due), ``modified`` (an
input changed, other than ``pred`` written in place when asked to), ``crash`` and ``hang`` fail. Cases run in
child processes (``corpus_run.py``), so that a crash fails a test instead of killing pytest.

``python tests/corpus_run.py`` runs the whole corpus and prints the counts; ``tests/test_corpus.py`` runs the
``quick`` selection (every loss x class x backend, one entry point per case, rotating).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_data, make_multiclass_data  # noqa: E402

import fusedloss as fl  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402

BACKENDS = ("cpp", "numba", "numpy")
ENTRIES = ("call", "value_and_grad", "grad", "grad_hess", "partial", "torch", "torch_named", "torch_module",
           "torch_routed", "torch_module_routed", "boosting", "objective", "dask")
NUMPY_API = ENTRIES[:5]  # the loss object's methods
# fusedloss.torch: ``loss`` (any loss by its registry name), the functional form named after torch's
# (``FUNCTIONAL[name]``, torch's argument names) and its module (``MODULES[name]``), each with the case's backend;
# and those two forms called without ``backend=`` (inside ``use_backend(case's backend)``), where the forms that
# CPU routing wraps hand small calls with torch's options to torch's own function
TORCH = ("torch", "torch_named", "torch_module", "torch_routed", "torch_module_routed")
ROUTED = {"torch_routed": "torch_named", "torch_module_routed": "torch_module"}  # entry -> the form it calls
NAMED = NUMPY_API + TORCH  # the entry points that take any array (the boosters convert scores)
BOOSTING = ("boosting", "objective")  # gradient_hessian, and an XGBoost objective (scikit-learn API)
# fusedloss.dask: value_and_grad (the value of a loss without a gradient) on dask arrays of the case's arrays,
# pred and target chunked differently along the first axis (and the logits along the class axis), computed on
# the synchronous scheduler
DASK = ("dask",)
# entry points that only add argument handling to another one (the routed ones: or hand the call to torch)
LAYERS = ("torch_named", "torch_module", *ROUTED) + DASK
TORCH_TYPED = ("torch_named", "torch_module", *ROUTED)  # entries whose ValueErrors are fusedloss.torch.ArgumentErrors
GRAD_ENTRIES = ("value_and_grad", "grad", "grad_hess")
HUGE = 2**40

PASS = ("clear", "correct")
FAIL = ("unclear", "refused", "garbage", "modified", "crash", "hang")
OUTCOMES = PASS + FAIL + ("skip", "known")

# Defects the corpus found that are not fixed yet, by case id: such a case that fails is reported as "known"; one
# that passes fails the test, so that its entry goes with the fix.
KNOWN: dict[str, str] = {}
# Defects by (entry point, class) that hold for some losses of the class only: a failing case of such a pair is
# "known"; a run in which every case of a pair passes fails the test, so that its entry goes with the fix.
KNOWN_CLASSES: dict[tuple, str] = {}

# what a clear message may call each argument (the torch and boosting entries use their own words)
SYNONYMS = {
    "pred": ("pred", "logits", "input", "y_pred", "preds", "scores", "predictions", "log_probs", "input1", "anchor"),
    "target": ("target", "targets", "label", "labels", "y_true", "input2", "positive"),
    "sample_weight": ("sample_weight", "weight"),
}


@dataclass(frozen=True)
class Case:
    loss: str
    entry: str
    backend: str
    cls: str

    @property
    def id(self) -> str:
        return f"{self.loss}/{self.entry}/{self.backend}/{self.cls}"


@dataclass
class Call:
    """The arguments of one call, and what it must do."""

    pred: object
    target: object
    kw: dict = field(default_factory=dict)  # reduction, sample_weight, grad_out, hess_out, loss parameters
    extra: tuple = ()  # ctc: input_lengths, target_lengths
    expect: str = "value"  # "raise" | "value" | "any"
    names: tuple = ()  # one of these words names the argument in a clear message
    in_place: bool = False  # pred may change (grad_out=pred)
    target_grad: bool = False  # the torch entries: the target tensor requires grad
    also: tuple = ()  # names of exception types that are clear here too (besides ValueError, TypeError, IndexError)


# --- arrays ------------------------------------------------------------------------------------------------


def at_offset(a, offset=1):
    """A copy of ``a`` at an address ``offset`` bytes past a 64-byte boundary (misaligned for offset 1)."""
    a = np.ascontiguousarray(a)
    buf = np.zeros(a.nbytes + offset + 64, np.uint8)
    start = -buf.ctypes.data % 64 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def strided(a):
    """A copy of ``a`` as a view with a stride of two elements along the first axis."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a.copy()
    buf = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
    buf[::2] = a
    return buf[::2]


def reversed_(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return a.copy()
    return np.ascontiguousarray(a[::-1])[::-1]


def byteswapped(a):
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder(">" if sys.byteorder == "little" else "<"))


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def huge(value, shape):
    """A broadcast view of ``shape`` (no memory of its own) holding ``value``."""
    return np.broadcast_to(np.asarray(value), shape)


def clean(x):
    """A C-contiguous, aligned, native, writeable copy of an array (anything else as it is)."""
    if isinstance(x, np.ndarray):
        if x.dtype.byteorder not in "=|":
            x = x.astype(x.dtype.newbyteorder("="))
        return np.array(x, order="C", copy=True)
    return x


# --- the valid call each class starts from ------------------------------------------------------------------


def base(name: str, shape=None, dtype=np.float64) -> Call:
    spec = REGISTRY[name]
    if spec.kind == "elementwise":
        p, y = make_data(name, {}, shape or (7,), dtype)
        return Call(p, y)
    if spec.kind == "multiclass":
        form = "hard" if spec.hard_labels else "soft"
        x, t = make_multiclass_data(name, {}, shape or (6,), dtype, form)
        return Call(x, t)
    if spec.kind == "pairwise":  # pred, target: the first two inputs; extra: the third input or the target
        rng = np.random.default_rng(0)
        xs = [rng.normal(size=(3, 4) if spec.vector_rows else (7,)).astype(dtype) for _ in spec.inputs]
        xs = [np.abs(x) if what in spec.nonnegative_inputs else x for x, what in zip(xs, spec.inputs)]
        rest = [np.array([1.0, -1.0, 0.0] if spec.vector_rows else [1, -1, 1, 1, -1, 0.5, 2.0])] if spec.row_target \
            else []
        return Call(xs[0], xs[1], extra=(*xs[2:], *rest))
    if spec.kind == "overlap":  # scores (N, C, H, W) and class indices (N, H, W), every class present
        rng = np.random.default_rng(0)
        t = np.array([[[0, 1, 2], [2, 1, 0]], [[1, 1, 0], [2, 0, 2]]])
        return Call(rng.normal(size=(2, 3, 2, 3)).astype(dtype), t)
    rng = np.random.default_rng(0)  # ctc: T = 6, N = 2, C = 4, padded targets
    T, N, C = 6, 2, 4
    x = rng.normal(size=(T, N, C)).astype(dtype)
    t = np.array([[1, 2, 3], [3, 1, 0]], np.int64)
    return Call(x, t, extra=(np.array([6, 5]), np.array([3, 2])))


def with_(call: Call, **changes) -> Call:
    kw = dict(call.kw)
    kw.update(changes.pop("kw", {}))
    return replace(call, kw=kw, **changes)


def raises(call: Call, *names, **changes) -> Call:
    return with_(call, expect="raise", names=names, **changes)


def anything(call: Call, *names, **changes) -> Call:
    return with_(call, expect="any", names=names, **changes)


def _labels(spec) -> bool:
    return spec.kind in ("sequence", "overlap") or (spec.kind == "multiclass" and spec.hard_labels)


# --- input classes: name -> function(spec, entry) returning a Call, or None where it does not apply --------------

CLASSES: dict = {}


def cls(*kinds, entries=ENTRIES):
    def register(fn):
        CLASSES[fn.__name__] = (fn, kinds or ("elementwise", "multiclass", "sequence"), entries)
        return fn

    return register


@cls()
def ok(spec, entry):
    return base(spec.name)


@cls()
def ok_float32(spec, entry):
    return base(spec.name, dtype=np.float32)


@cls()
def reduction_sum(spec, entry):
    return None if entry in ("partial", *BOOSTING) else with_(base(spec.name), kw={"reduction": "sum"})


@cls()
def reduction_none(spec, entry):
    return None if entry in ("partial", *BOOSTING) else with_(base(spec.name), kw={"reduction": "none"})


@cls()
def reduction_bad(spec, entry):
    return None if entry in ("partial", *BOOSTING) else raises(base(spec.name), "reduction", kw={"reduction": "avg"})


# pred: dtypes

def _pred_as(dtype):
    def make(spec, entry):
        b = base(spec.name)
        with np.errstate(invalid="ignore"):
            p = b.pred.astype(dtype)
        if (entry in BOOSTING and np.dtype(dtype).kind != "c") or (entry in TORCH and dtype == "float16"):
            return anything(b, "pred", pred=p)  # boosters' scores convert; torch autocasts half precision
        return raises(b, "pred", pred=p)
    return make


for _dt in ("int64", "uint8", "bool", "complex128", "float16", "object"):
    CLASSES[f"pred_{_dt}"] = (_pred_as(_dt), ("elementwise", "multiclass", "sequence"), ENTRIES)


@cls(entries=NUMPY_API + DASK)
def pred_str(spec, entry):
    b = base(spec.name)
    return raises(b, "pred", pred=b.pred.astype(str))


@cls(entries=NUMPY_API + TORCH + BOOSTING + DASK)
def pred_list(spec, entry):
    b = base(spec.name)
    if entry in TORCH:  # torch's losses take tensors only
        return raises(b, "pred", pred=b.pred.tolist())
    return with_(b, pred=b.pred.tolist())


# pred and target: layouts

def _layout(fn, what, kinds=("elementwise", "multiclass", "sequence"), shape=None, entries=ENTRIES):
    def make(spec, entry):
        b = base(spec.name, shape=shape if spec.kind == "elementwise" else None)
        if what == "pred":
            return with_(b, pred=fn(b.pred))
        if spec.kind == "sequence" and what == "weight":
            return with_(b, kw={"sample_weight": fn(np.array([0.5, 2.0]))})
        if what == "weight":
            lead = np.shape(b.pred)[:-1] if spec.kind == "multiclass" else np.shape(b.pred)
            return with_(b, kw={"sample_weight": fn(np.linspace(0.5, 2.0, int(np.prod(lead))).reshape(lead))})
        return with_(b, target=fn(b.target))
    return make, kinds, entries


for _name, _fn in (("strided", strided), ("reversed", reversed_), ("misaligned", at_offset),
                   ("byteswapped", byteswapped), ("readonly", readonly)):
    torch_ok = _name in ("strided", "readonly")
    _entries = ENTRIES if torch_ok else tuple(e for e in ENTRIES if e not in TORCH)
    for _what in ("pred", "target", "weight"):
        CLASSES[f"{_what}_{_name}"] = _layout(_fn, _what, entries=_entries)
CLASSES["pred_fortran"] = _layout(np.asfortranarray, "pred", ("elementwise", "multiclass"), shape=(3, 4))
CLASSES["pred_misaligned32"] = (lambda spec, entry: with_(b := base(spec.name, dtype=np.float32),
                                                          pred=at_offset(b.pred, 2)),
                                ("elementwise", "multiclass", "sequence"), NUMPY_API)


# shapes

@cls()
def empty(spec, entry):
    b = base(spec.name)
    if spec.kind != "sequence":
        return anything(b, "pred", pred=b.pred[:0], target=b.target[:0])
    return anything(b, "pred", pred=b.pred[:, :0], target=b.target[:0], extra=(np.zeros(0, int), np.zeros(0, int)))


@cls(entries=NAMED + DASK)
def target_short(spec, entry):
    b = base(spec.name)
    return raises(b, "target", target=b.target[:-1])


@cls(entries=NAMED + DASK)
def target_extra_axis(spec, entry):
    b = base(spec.name)
    return raises(b, "target", target=b.target[None, ..., None])


@cls("elementwise", "multiclass", entries=NAMED + DASK)
def pred_0d(spec, entry):
    b = base(spec.name)
    if spec.kind == "elementwise":
        return anything(b, "pred", pred=b.pred[0], target=b.target[0])
    return raises(b, "pred", "class axis", pred=np.float64(1.0), target=b.target[0])


@cls("multiclass", "sequence", entries=NAMED + DASK)
def no_classes(spec, entry):
    b = base(spec.name)
    x = np.zeros(np.shape(b.pred)[:-1] + (0,))
    t = b.target if spec.kind != "multiclass" or spec.hard_labels else x.copy()
    return raises(b, "class", "logits", "pred", "blank", "label", pred=x, target=t)


@cls(entries=NAMED)
def huge_pred(spec, entry):
    b = base(spec.name)
    if spec.kind == "elementwise":
        return raises(b, "pred", pred=huge(0.5, (HUGE,)), target=huge(b.target[0], (HUGE,)))
    if spec.kind == "multiclass":
        t = huge(np.int64(1), (HUGE,)) if spec.hard_labels else huge(np.float64(0.2), (HUGE, 5))
        return raises(b, "pred", pred=huge(0.0, (HUGE, 5)), target=t)
    return raises(b, "pred", pred=huge(0.0, (HUGE, 2, 4)),
                  extra=(np.array([HUGE, HUGE]), b.extra[1]))


@cls(entries=NAMED)
def huge_target(spec, entry):
    b = base(spec.name)
    return raises(b, "target", target=huge(np.asarray(b.target).reshape(-1)[0], (HUGE,)))


@cls(entries=NAMED)
def huge_weight(spec, entry):
    return raises(base(spec.name), "sample_weight", kw={"sample_weight": huge(1.0, (HUGE,))})


@cls("multiclass", entries=NUMPY_API)
def huge_classes(spec, entry):
    b = base(spec.name)
    vec = {spec.vector_param: 2.0} if spec.vector_param else {}
    t = np.zeros(1, np.int64) if spec.hard_labels else huge(np.float64(0.0), (1, HUGE))
    return raises(b, "pred", spec.vector_param or "pred", pred=huge(np.float32(0.0), (1, HUGE)), target=t, kw=vec)


# non-finite data

def _poison(a, values):
    a = np.array(a, dtype=np.float64 if np.asarray(a).dtype.kind != "f" else np.asarray(a).dtype)
    flat = a.reshape(-1)
    for i, v in enumerate(values):
        if i < flat.size:
            flat[i * 2] = v
    return a


# the forms named after torch's binary_cross_entropy refuse a NaN probability or target, as torch's function does;
# everywhere else NaN propagates
NAN_REFUSED = {"binary_cross_entropy": ("torch_named", "torch_module", *ROUTED)}


def _nan(call: Call, spec, entry, what: str) -> Call:
    return raises(call, what) if entry in NAN_REFUSED.get(spec.name, ()) else call


@cls()
def pred_nan(spec, entry):
    b = base(spec.name)
    return _nan(with_(b, pred=_poison(b.pred, [np.nan])), spec, entry, "pred")


@cls()
def pred_inf(spec, entry):
    b = base(spec.name)
    return anything(b, "pred", pred=_poison(b.pred, [np.inf, -np.inf]))


@cls("multiclass")
def row_all_neginf(spec, entry):
    b = base(spec.name)
    x = np.array(b.pred)
    x[1] = -np.inf
    x[2, :2] = -np.inf
    return with_(b, pred=x)


@cls("elementwise", "multiclass")
def target_nan(spec, entry):
    b = base(spec.name)
    if _labels(spec):
        return None
    return _nan(with_(b, target=_poison(b.target, [np.nan])), spec, entry, "target")


@cls("elementwise", "multiclass")
def target_inf(spec, entry):
    b = base(spec.name)
    if _labels(spec):
        return None
    return anything(b, "target", target=_poison(b.target, [np.inf]))


@cls("elementwise", "multiclass", entries=TORCH)
def target_requires_grad(spec, entry):
    """A target tensor that requires grad: the losses of the residual ``pred - target`` differentiate it, the
    others refuse it (a RuntimeError, as torch's losses without a target derivative) and say to detach it."""
    b = base(spec.name)
    if _labels(spec):
        return None  # integer labels cannot require grad
    if spec.residual or not spec.differentiable:
        return with_(b, target_grad=True)
    return raises(b, "target", target_grad=True, also=("RuntimeError",))


# targets: dtypes and domains

# the losses whose torch function refuses a target of another dtype than the input's (torch's binary_cross_entropy:
# "Found dtype Double but expected Float"): the forms named after it refuse it too
TORCH_SAME_DTYPE = ("binary_cross_entropy",)


def _target_as(dtype, expect):
    def make(spec, entry):
        b = base(spec.name)
        if _labels(spec):
            return None
        if entry in TORCH_TYPED and spec.name in TORCH_SAME_DTYPE and np.dtype(dtype) != np.asarray(b.pred).dtype:
            expect_here = "raise"
        else:
            expect_here = expect
        t = np.asarray(b.target)
        if dtype == "int64" and spec.kind == "elementwise":
            t = np.round(t)
            domain = spec.target_domain_for(spec.defaults())
            t = np.where(t > 0, t, 0) if domain not in ("real", "sign") else t
            t = np.clip(t, 0, 1) if domain == "unit" else t
            t = np.where(t == 0, 1, t) if domain in ("positive", "sign") else t
        with np.errstate(invalid="ignore"):
            t = t.astype(dtype)
        return with_(b, target=t) if expect_here == "value" else with_(b, target=t, expect=expect_here,
                                                                      names=("target",))
    return make


for _dt, _expect in (("int64", "any"), ("bool", "any"), ("complex128", "raise"), ("object", "any"),
                     ("float16", "any"), ("float32", "value")):
    CLASSES[f"target_{_dt}"] = (_target_as(_dt, _expect), ("elementwise", "multiclass"), ENTRIES)


@cls("elementwise", "multiclass", entries=NAMED + DASK)
def target_str(spec, entry):
    b = base(spec.name)
    return raises(b, "target", target=np.asarray(b.target).astype(str))


@cls("elementwise")
def target_uint64_big(spec, entry):
    b = base(spec.name)
    return anything(b, "target", target=np.full(np.shape(b.target), 2**64 - 100, np.uint64))


@cls("elementwise", "multiclass")
def target_out_of_domain(spec, entry):
    b = base(spec.name)
    if _labels(spec):
        return None
    domain = spec.target_domain if spec.kind == "elementwise" else spec.soft_target_domain_for(spec.defaults())
    bad = {"nonnegative": -1.0, "positive": 0.0, "unit": 1.5, "above_minus_one": -1.0, "sign": 0.5}.get(domain)
    if bad is None:
        return None
    t = np.array(b.target, dtype=np.float64)
    t.reshape(-1)[1] = bad
    return raises(b, "target", target=t)


@cls("elementwise")
def pred_out_of_domain(spec, entry):
    b = base(spec.name)
    bad = {"nonnegative": -1.0, "unit": 1.5, "above_minus_one": -1.0}.get(spec.pred_domain_for(spec.defaults()))
    if bad is None:
        return None
    p = np.array(b.pred)
    p[1] = bad
    return raises(b, "pred", pred=p)


# labels (multiclass hard labels, ctc targets)

# the label dtypes torch's own function takes (cross_entropy: int64 or uint8, multi_margin_loss: int64 only): the
# forms named after it refuse the others, as torch does, where fusedloss's own entries take any integer dtype
TORCH_LABELS = {"cross_entropy": ("int64", "uint8"), "multi_margin": ("int64",)}


def _label_class(make_labels, expect, entries=ENTRIES):
    def make(spec, entry):
        if not _labels(spec):
            return None
        b = base(spec.name)
        t = make_labels(np.asarray(b.target), spec)
        if t is None:
            return None
        want = expect
        if want == "value" and entry in TORCH_TYPED and t.dtype.name not in TORCH_LABELS.get(spec.name,
                                                                                             (t.dtype.name,)):
            want = "raise"
        if want == "value":
            return with_(b, target=t)
        return with_(b, target=t, expect=want, names=("target", "label", "targets"))
    return make, ("multiclass", "sequence"), entries


def _with(t, value, where=1):
    t = t.copy()
    t.reshape(-1)[where] = value
    return t


def _fits(t, dtype):
    info = np.iinfo(dtype)
    t = np.where(t == -100, info.min if info.min < 0 else 0, t)
    return t.astype(dtype)


CLASSES.update({
    "labels_float": _label_class(lambda t, s: t.astype(np.float64), "raise", NAMED + DASK),
    "labels_float_boosting": _label_class(lambda t, s: t.astype(np.float64), "value", BOOSTING),
    "labels_bool": _label_class(lambda t, s: (t > 1), "raise", NAMED + DASK),
    "labels_int8": _label_class(lambda t, s: t.astype(np.int8), "value"),
    "labels_uint8": _label_class(lambda t, s: None if (t < 0).any() else t.astype(np.uint8), "value"),
    "labels_int32": _label_class(lambda t, s: t.astype(np.int32), "value"),
    "labels_uint64": _label_class(lambda t, s: None if (t < 0).any() else t.astype(np.uint64), "value"),
    "labels_uint64_big": _label_class(lambda t, s: _with(np.abs(t).astype(np.uint64), 2**64 - 100), "raise"),
    "labels_at_C": _label_class(lambda t, s: _with(t, 5 if s.kind == "multiclass" else 4), "raise"),
    "labels_negative": _label_class(lambda t, s: _with(t, -2), "raise"),
    "labels_huge": _label_class(lambda t, s: _with(t, 2**62), "raise"),
    "labels_int64_min": _label_class(lambda t, s: _with(t, -(2**63)), "raise"),
    "labels_float_nan": _label_class(lambda t, s: _with(t.astype(np.float64), np.nan), "raise"),
    "labels_object": _label_class(lambda t, s: t.astype(object), "any", NAMED + DASK),
})


@cls("multiclass")
def labels_all_ignored(spec, entry):
    if not spec.ignore_param:
        return None
    b = base(spec.name)
    return with_(b, target=np.full(np.shape(b.target), -100))


# weights

def _weight_class(make_w, expect, entries=ENTRIES):
    def make(spec, entry):
        b = base(spec.name)
        n = np.shape(b.pred)[-2] if spec.kind == "sequence" else (
            np.shape(b.pred)[0] if np.ndim(b.pred) else 1)
        w = make_w(np.linspace(0.5, 2.0, n))
        if w is None:
            return None
        if expect == "value":
            return with_(b, kw={"sample_weight": w})
        return with_(b, kw={"sample_weight": w}, expect=expect, names=("sample_weight",))
    return make, ("elementwise", "multiclass", "sequence"), entries


CLASSES.update({
    "weight_short": _weight_class(lambda w: w[:-1], "raise"),
    "weight_2d": _weight_class(lambda w: np.ones((len(w), 7, 3)), "raise"),
    "weight_negative": _weight_class(lambda w: _with(w, -1.0), "raise"),
    "weight_nan": _weight_class(lambda w: _with(w, np.nan), "raise"),
    "weight_inf": _weight_class(lambda w: _with(w, np.inf), "raise"),
    "weight_zero": _weight_class(lambda w: w * 0, "value"),
    "weight_1e308": _weight_class(lambda w: np.full_like(w, 1e308), "value"),
    "weight_int": _weight_class(lambda w: np.arange(1, len(w) + 1), "value"),
    "weight_bool": _weight_class(lambda w: np.arange(len(w)) % 2 == 0, "any"),
    "weight_complex": _weight_class(lambda w: w.astype(complex), "raise"),
    "weight_str": _weight_class(lambda w: w.astype(str), "raise", NAMED + DASK),
    "weight_scalar": _weight_class(lambda w: np.float64(2.0), "any"),
})


# loss parameters

# values for every parameter, and what a correct call does with them: "raise" where the registry's own
# conversion and check refuse the value, else "any" (a value inside the range may still be refused for the data,
# e.g. blank=1 where a label is 1)
PARAM_VALUES = {"nan": float("nan"), "inf": float("inf"), "neg_inf": -float("inf"), "zero": 0.0, "one": 1.0,
                "minus_one": -1.0, "neg_huge": -1e300, "int_big": 2**70, "str": "big", "none": None,
                "list": [1.0, 2.0], "complex": 1 + 1j, "np_float32": np.float32(0.5), "bool": True}


ANY_ARGUMENT = ("pred", "target", "input_lengths", "target_lengths", "blank", "label")  # a valid value the data
# does not fit (log_input=False with negative pred) may be refused for the data


def _refused(p, value) -> bool:
    """Whether the registry refuses ``value`` for parameter ``p`` (its conversion raises or its check fails)."""
    try:
        return p.check(p.convert(value)) is not None
    except (TypeError, ValueError, OverflowError):
        return True


def _param_class(value):
    def make(spec, entry):
        b = base(spec.name)
        return [with_(b, kw={p.name: value}, expect="raise", names=(p.name,)) if _refused(p, value) else
                with_(b, kw={p.name: value}, expect="any", names=(p.name, *ANY_ARGUMENT)) for p in spec.params] or None
    return make, ("elementwise", "multiclass", "sequence"), ENTRIES


for _suffix, _value in PARAM_VALUES.items():
    CLASSES[f"param_{_suffix}"] = _param_class(_value)


def _vector_class(make_v, expect):
    def make(spec, entry):
        if spec.vector_param is None:
            return None
        b = base(spec.name)
        C = np.shape(b.pred)[-1]
        return with_(b, kw={spec.vector_param: make_v(C)}, expect=expect, names=(spec.vector_param,))
    return make, ("elementwise", "multiclass"), NAMED + DASK


CLASSES.update({
    "vector_empty": _vector_class(lambda C: np.zeros(0), "raise"),
    "vector_short": _vector_class(lambda C: np.ones(C - 1) if C > 1 else np.ones(2), "raise"),
    "vector_nan": _vector_class(lambda C: _with(np.ones(C), np.nan, 0), "raise"),
    "vector_negative": _vector_class(lambda C: _with(np.ones(C), -1.0, 0), "raise"),
    "vector_2d": _vector_class(lambda C: np.ones((2, C)), "raise"),
    "vector_str": _vector_class(lambda C: np.array(["a"] * C), "raise"),
    "vector_complex": _vector_class(lambda C: np.ones(C, complex), "raise"),
    "vector_ok": _vector_class(lambda C: np.linspace(0.5, 2.0, C), "value"),
    "vector_int": _vector_class(lambda C: np.arange(1, C + 1), "value"),
    "vector_strided": _vector_class(lambda C: strided(np.linspace(0.5, 2.0, C)), "value"),
    "vector_1e308": _vector_class(lambda C: np.full(C, 1e308), "value"),
})


def _ignore_class(value, expect):
    def make(spec, entry):
        if not (spec.kind == "multiclass" and spec.ignore_param):
            return None
        b = base(spec.name)
        if expect != "raise":  # the rows that ignored -100 now hold the new ignored label
            b = with_(b, target=np.where(b.target == -100, np.int64(value), b.target))
        return with_(b, kw={spec.ignore_param: value}, expect=expect, names=(spec.ignore_param,))
    return make, ("multiclass",), ENTRIES


CLASSES.update({
    "ignore_2pow63": _ignore_class(2**63, "raise"),
    "ignore_below_int64": _ignore_class(-(2**63) - 1, "raise"),
    "ignore_int64_max": _ignore_class(2**63 - 1, "value"),
    "ignore_int64_min": _ignore_class(-(2**63), "value"),
    "ignore_uint64_big": _ignore_class(np.uint64(2**64 - 100), "raise"),
    "ignore_float": _ignore_class(3.5, "raise"),
    "ignore_nan": _ignore_class(float("nan"), "raise"),
    "ignore_bool": _ignore_class(True, "raise"),
    "ignore_class_1": _ignore_class(1, "value"),
    "ignore_np_int32": _ignore_class(np.int32(-100), "value"),
})


# outputs (grad_out, hess_out)

def _out_class(make, entries=GRAD_ENTRIES):
    def wrapped(spec, entry):
        b = base(spec.name)
        return make(b, spec, entry)
    return wrapped, ("elementwise", "multiclass", "sequence"), entries


def _out_readonly(b, spec, entry):
    return raises(b, "grad_out", kw={"grad_out": readonly(np.empty_like(b.pred))})


def _out_is_pred(b, spec, entry):
    b = with_(b, pred=np.array(b.pred))
    if entry == "grad_hess" or spec.kind == "sequence":
        return raises(b, "grad_out", kw={"grad_out": b.pred})
    return with_(b, kw={"grad_out": b.pred}, in_place=True)


def _out_partial(b, spec, entry):
    buf = np.zeros(np.size(b.pred) + 1)
    buf[:-1] = np.asarray(b.pred).reshape(-1)
    p = buf[:-1].reshape(np.shape(b.pred))
    return raises(b, "grad_out", pred=p, kw={"grad_out": buf[1:].reshape(np.shape(b.pred))})


def _out_on_target(b, spec, entry):
    if _labels(spec):  # an int64 label buffer under a float64 output of the logits' shape
        t = np.asarray(b.target).reshape(-1)
        buf = np.zeros(max(np.size(b.pred), t.size))
        buf.view(np.int64)[: t.size] = t
        labels = buf.view(np.int64)[: t.size].reshape(np.shape(b.target))
        return raises(b, "grad_out", target=labels, kw={"grad_out": buf[: np.size(b.pred)].reshape(np.shape(b.pred))})
    t = np.array(b.target)
    return raises(b, "grad_out", target=t, kw={"grad_out": t})


def _out_on_weight(b, spec, entry):
    n = np.shape(b.pred)[-2] if spec.kind == "sequence" else np.shape(b.pred)[0]
    buf = np.ones(np.size(b.pred) + n)
    return raises(b, "grad_out", kw={"sample_weight": buf[:n], "grad_out": buf[: np.size(b.pred)].reshape(
        np.shape(b.pred))})


def _out_misaligned(b, spec, entry):
    return with_(b, kw={"grad_out": at_offset(np.zeros_like(b.pred), 1)})


def _out_strided(b, spec, entry):
    return raises(b, "grad_out", kw={"grad_out": strided(np.zeros_like(b.pred))})


def _out_dtype(b, spec, entry):
    return raises(b, "grad_out", kw={"grad_out": np.zeros(np.shape(b.pred), np.float32)})


def _out_shape(b, spec, entry):
    return raises(b, "grad_out", kw={"grad_out": np.zeros(np.size(b.pred) + 1)})


def _out_list(b, spec, entry):
    return raises(b, "grad_out", kw={"grad_out": np.zeros_like(b.pred).tolist()})


def _hess_is_grad(b, spec, entry):
    g = np.zeros_like(b.pred)
    return raises(b, "hess_out", "grad_out", kw={"grad_out": g, "hess_out": g})


def _hess_readonly(b, spec, entry):
    return raises(b, "hess_out", kw={"hess_out": readonly(np.empty_like(b.pred))})


def _hess_on_pred(b, spec, entry):
    b = with_(b, pred=np.array(b.pred))
    return raises(b, "hess_out", "logits", kw={"hess_out": b.pred})


def _hess_on_target(b, spec, entry):
    if _labels(spec):
        return None
    t = np.array(b.target)
    return raises(b, "hess_out", target=t, kw={"hess_out": t})


CLASSES.update({
    "out_readonly": _out_class(_out_readonly),
    "out_is_pred": _out_class(_out_is_pred),
    "out_partly_on_pred": _out_class(_out_partial),
    "out_on_target": _out_class(_out_on_target),
    "out_on_weight": _out_class(_out_on_weight),
    "out_misaligned": _out_class(_out_misaligned),
    "out_strided": _out_class(_out_strided),
    "out_dtype": _out_class(_out_dtype),
    "out_shape": _out_class(_out_shape),
    "out_list": _out_class(_out_list),
    "hess_is_grad": _out_class(_hess_is_grad, ("grad_hess",)),
    "hess_readonly": _out_class(_hess_readonly, ("grad_hess",)),
    "hess_on_pred": _out_class(_hess_on_pred, ("grad_hess",)),
    "hess_on_target": _out_class(_hess_on_target, ("grad_hess",)),
})


# ctc: lengths and targets

def _ctc_class(make, expect, names):
    def wrapped(spec, entry):
        b = base(spec.name)
        c = make(b)
        return with_(c, expect=expect, names=names) if expect != "value" else c
    return wrapped, ("sequence",), NUMPY_API + TORCH + DASK


def _lengths(il=None, tl=None):
    def make(b):
        return with_(b, extra=(b.extra[0] if il is None else il, b.extra[1] if tl is None else tl))
    return make


CLASSES.update({
    "ctc_lengths_float": _ctc_class(_lengths(il=np.array([6.0, 5.0])), "raise", ("input_lengths",)),
    "ctc_lengths_too_long": _ctc_class(_lengths(il=np.array([7, 5])), "raise", ("input_lengths",)),
    "ctc_lengths_negative": _ctc_class(_lengths(tl=np.array([3, -1])), "raise", ("target_lengths",)),
    "ctc_lengths_short": _ctc_class(_lengths(il=np.array([6])), "raise", ("input_lengths",)),
    "ctc_lengths_uint64_big": _ctc_class(_lengths(tl=np.array([3, 2**64 - 1], np.uint64)), "raise",
                                         ("target_lengths",)),
    "ctc_lengths_int64_min": _ctc_class(_lengths(il=np.array([6, -(2**63)])), "raise", ("input_lengths",)),
    "ctc_target_too_wide": _ctc_class(_lengths(tl=np.array([4, 2])), "raise", ("target_lengths",)),
    "ctc_label_blank": _ctc_class(lambda b: with_(b, target=_with(b.target, 0, 0)), "raise", ("blank", "label")),
    "ctc_concatenated": _ctc_class(lambda b: with_(b, target=np.array([1, 2, 3, 3, 1])), "value", ()),
    "ctc_concatenated_short": _ctc_class(lambda b: with_(b, target=np.array([1, 2, 3, 3])), "raise", ("targets",)),
    "ctc_targets_3d": _ctc_class(lambda b: with_(b, target=b.target[..., None]), "raise", ("targets",)),
    "ctc_logits_2d": _ctc_class(lambda b: with_(b, pred=b.pred[:, 0]), "raise", ("pred",)),
    "ctc_no_alignment": _ctc_class(_lengths(il=np.array([2, 5])), "value", ()),
    "ctc_batch_first_wrong": _ctc_class(lambda b: with_(b, kw={"batch_first": True}), "raise",
                                        ("input_lengths", "target", "shape")),
})


# --- the cases -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@functools.lru_cache(maxsize=None)
def routed(name: str) -> bool:
    """Whether fusedloss.torch's form of loss ``name`` hands small CPU calls to torch (``_routing``)."""
    from fusedloss.torch import FUNCTIONAL

    return hasattr(FUNCTIONAL[name], "_torch_twin")


def entries_of(spec) -> tuple:
    """The entry points a loss has (``torch`` and ``dask`` only where they are installed; a sequence loss has
    torch's signature, with lengths, in its named forms only)."""
    if spec.kind == "pairwise":  # the loss object's methods (fusedloss.torch's forms: tests/test_pairwise.py)
        return ("call", "value_and_grad", "grad", "partial")
    if spec.kind == "overlap":  # the loss object's methods but partial (fusedloss.torch's forms: test_overlap.py)
        return ("call", "value_and_grad", "grad")
    out = ["call", "partial"]
    if spec.differentiable:
        out += ["value_and_grad", "grad"]
        if spec.has_hessian and spec.kind != "sequence":
            out.append("grad_hess")
    if _installed("torch"):
        out += TORCH if spec.kind != "sequence" else ("torch_named", "torch_module")
        if not routed(spec.name):
            out = [e for e in out if e not in ROUTED]
    if spec.differentiable and spec.kind != "sequence" and (spec.kind == "elementwise" or spec.hard_labels):
        out += BOOSTING
    if _installed("dask"):
        out += DASK
    return tuple(e for e in ENTRIES if e in out)


def losses() -> list:
    return [name for name, spec in REGISTRY.items() if spec.builtin]


# classes whose arrays have no torch.Tensor form (object and text arrays)
NO_TENSOR = {"pred_object", "target_object", "target_str", "weight_str", "vector_str", "labels_object"}


@functools.lru_cache(maxsize=None)
def cases(selection: str = "full") -> tuple:
    """Every case that applies (``"full"``), or (``"quick"``) one entry point per (loss, class, backend), taken in
    turn from the entry points that take the class, plus a case for any (entry point, class) pair that the turns
    missed: every loss meets every class on every backend, and every entry point every class."""
    full, quick, turn = [], [], {}
    for name in losses():
        spec = REGISTRY[name]
        for cname, (make, kinds, allowed) in CLASSES.items():
            if spec.kind not in kinds:
                continue
            usable = [e for e in entries_of(spec) if e in allowed and not (e in TORCH and cname in NO_TENSOR)
                      and calls(Case(name, e, "numpy", cname))]
            for backend in BACKENDS:
                full += [Case(name, e, backend, cname) for e in usable]
                # the layers above the kernels (torch's named forms, dask) check their arguments in Python,
                # whatever the backend: the quick run meets them on the reference backend only
                turns = [e for e in usable if backend == "numpy" or e not in LAYERS] or usable
                if turns:
                    k = turn[cname] = turn.get(cname, -1) + 1
                    quick.append(Case(name, turns[k % len(turns)], backend, cname))
    if selection == "full":
        return tuple(full)
    seen = {(c.entry, c.cls) for c in quick}
    for c in full:
        if (c.entry, c.cls) not in seen:
            seen.add((c.entry, c.cls))
            quick.append(c)
    return tuple(quick)


# pairwise losses (two or three inputs: pred and target are the first two, see base) meet the classes about the
# arrays' dtypes, layouts and values, the reductions and the parameters; the classes about labels, weights of
# pred's shape and domains are about a (pred, target) call they do not have
PAIRWISE_CLASSES = (
    "ok", "ok_float32", "reduction_sum", "reduction_none", "reduction_bad", "pred_str", "pred_list",
    *(f"pred_{dt}" for dt in ("int64", "uint8", "bool", "complex128", "float16", "object")),
    *(f"{what}_{how}" for what in ("pred", "target") for how in ("strided", "reversed", "misaligned", "byteswapped",
                                                                 "readonly")),
    "pred_nan", "pred_inf", *(f"param_{suffix}" for suffix in PARAM_VALUES),
)
for _name in PAIRWISE_CLASSES:
    CLASSES[_name] = (CLASSES[_name][0], CLASSES[_name][1] + ("pairwise",), CLASSES[_name][2])


def calls(case: Case) -> list:
    """The calls of a case (a parameter class has one per parameter of the loss); [] where it does not apply."""
    make = CLASSES[case.cls][0]
    got = make(REGISTRY[case.loss], case.entry)
    if got is None:
        return []
    return got if isinstance(got, list) else [got]

# overlap losses (scores (N, C, *spatial), class indices) meet the pairwise losses' classes and those about class
# labels; the weight classes give one weight per sample, which the batch variant (their default) refuses by design
for _name in PAIRWISE_CLASSES + ("empty", "target_short") + tuple(
        n for n, c in CLASSES.items() if n.startswith("labels_") and c[1] == ("multiclass", "sequence")):
    CLASSES[_name] = (CLASSES[_name][0], CLASSES[_name][1] + ("overlap",), CLASSES[_name][2])
