"""The benchmark cases: which losses are timed at which shapes and with which data, derived from the loss
registry (``fusedloss._spec.REGISTRY``), and the minimal-bytes model of a case."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _config
from .._spec import REGISTRY, get_spec
from .._validate import _FLOAT_DTYPES

DTYPES = tuple(dt.name for dt in _FLOAT_DTYPES)  # the dtypes the API takes
# the kinds of loss on the size grid, and the number of axes of their sizes (N; ROWSxCLASSES); a loss of
# another kind (ctc, pairwise, overlap) has a benchmark module of its own
KIND_NDIM = {"elementwise": 1, "multiclass": 2}
ELEMENTWISE_SIZES = (1_000, 100_000, 10_000_000)
QUICK_ELEMENTWISE_SIZES = (1_000, 10_000_000)


# --- the case table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseDef:
    """How one loss is benchmarked. A registered loss is benchmarked without an entry here (it gets the default
    case of its kind, with data drawn from its registered domains); an entry changes its sizes, parameters or
    data, or puts it in ``--quick``.

    ``sizes``: shapes of the full run, ``(n,)`` for elementwise losses, ``(rows, classes)`` for multiclass.
    ``quick_sizes``: shapes in ``--quick`` (empty: not in ``--quick``). ``params``: the loss parameters
    benchmarked, as ``((name, value), ...)`` (unset ones keep their registry defaults). ``pred`` and ``target``
    name the distributions of the data (see ``make_data``).
    """

    loss: str
    kind: str = "elementwise"
    sizes: tuple = tuple((n,) for n in ELEMENTWISE_SIZES)
    quick_sizes: tuple = ()
    params: tuple = ()
    pred: str = "normal"
    target: str = "normal"


_QUICK = tuple((n,) for n in QUICK_ELEMENTWISE_SIZES)

# the cases that differ from the default of their kind: other sizes, --quick, parameters or data
CASE_DEFS: dict[str, CaseDef] = {d.loss: d for d in (
    CaseDef("mse", quick_sizes=_QUICK),
    # target ~ N(0, 1), pred ~ N(0, 1): |p - y| <= 1 about half the time, so both branches are exercised
    CaseDef("huber", quick_sizes=_QUICK),
    CaseDef("log_cosh", quick_sizes=_QUICK),
    CaseDef("quantile", params=(("quantile", 0.9),)),
    CaseDef("poisson_nll", pred="log_rate", target="counts"),
    CaseDef("tweedie", pred="log_rate", target="counts"),
    CaseDef("gamma", pred="log_rate", target="positive"),
    CaseDef("tweedie_identity", pred="positive", target="positive"),  # the mean itself, > 0
    # classification; an entry whose loss is not registered is skipped
    CaseDef("binary_cross_entropy_with_logits", target="binary", quick_sizes=_QUICK),
    # --quick uses vocabulary-sized rows, 256 of them (33 MB of float32 logits, above the 32 MiB L3): 8192 x
    # 32000 (1 GB of logits, 1 GB per gradient) takes minutes over all contestants (the float64 reference
    # alone, as a check and as the numpy backend, takes seconds per 10^7 logits)
    CaseDef("cross_entropy", kind="multiclass", sizes=((65536, 1000), (8192, 32000)),
            quick_sizes=((256, 32000),), target="class_index"),
)}
# a registered loss without an entry (mae, hinge, the custom losses of fusedloss.bench.custom, ...) gets the
# default case of its kind, with data drawn from its registered domains (case_def)

# the data drawn for each registered domain (tests/test_bench_cases.py fails for a domain missing here)
TARGET_DATA = {"real": "normal", "positive": "positive", "above_minus_one": "positive", "nonnegative": "counts",
               "unit": "binary", "sign": "sign", "class_index": "class_index"}
PRED_DATA = {"real": "normal", "nonnegative": "positive", "positive": "positive", "above_minus_one": "positive",
             "unit": "probability"}


def case_def(loss: str) -> CaseDef | None:
    """The benchmark definition of a registered loss (None if the loss is not registered)."""
    spec = REGISTRY.get(loss)
    if spec is None:
        return None
    d = CASE_DEFS.get(loss)
    if d is not None:
        return d
    if spec.kind not in KIND_NDIM:
        return None  # a loss with its own signature has its own benchmark (bench.ctc, bench.pairwise, bench.overlap)
    defaults = spec.defaults()
    pred = PRED_DATA[spec.pred_domain_for(defaults)]
    if spec.kind == "multiclass":
        target = "class_index" if spec.hard_labels else "distribution"
        return CaseDef(loss, kind="multiclass", sizes=((65536, 1000),), pred=pred, target=target)
    return CaseDef(loss, pred=pred, target=TARGET_DATA[spec.target_domain_for(defaults)])


def quick_cases_text() -> str:
    """What ``--quick`` runs, for the help: the losses grouped by their ``--quick`` sizes."""
    groups: dict = {}
    for d in registered_case_defs(quick=True):
        groups.setdefault(d.quick_sizes, []).append(d.loss)
    return " and ".join(f"{', '.join(names)} at {' and '.join(format_shape(s) for s in sizes)}"
                        for sizes, names in groups.items())


def registered_case_defs(quick: bool = False) -> list[CaseDef]:
    """Case definitions of the registered losses with a gradient, in the registry's order (table entries whose
    loss is not registered are skipped)."""
    out = []
    for name in REGISTRY:
        d = case_def(name)
        if d is None or not REGISTRY[name].differentiable:
            continue
        if quick and not d.quick_sizes:
            continue
        out.append(d)
    return out


@dataclass(frozen=True)
class Case:
    """One measured configuration: a loss (with parameters), a dtype, a shape and a thread count."""

    defn: CaseDef
    dtype: str
    shape: tuple
    threads: int

    @property
    def loss(self) -> str:
        return self.defn.loss

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    @property
    def params(self) -> dict:
        return {**REGISTRY[self.loss].defaults(), **dict(self.defn.params)}

    @property
    def params_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.params.items())

    @property
    def size_text(self) -> str:
        return format_shape(self.shape)

    def label(self) -> str:
        return f"{self.loss} {self.dtype} {self.size_text} t={self.threads}"


def format_shape(shape) -> str:
    """1e7 for (10000000,), 65536x1000 for (65536, 1000)."""
    if len(shape) == 1:
        n = int(shape[0])
        exp = round(math.log10(n)) if n > 0 else 0
        return f"1e{exp}" if n >= 1000 and 10**exp == n else str(n)
    return "x".join(str(int(s)) for s in shape)


def parse_size(text: str) -> tuple:
    """'1e7' -> (10000000,), '65536x1000' -> (65536, 1000)."""
    parts = text.lower().replace("_", "").split("x")
    try:
        dims = tuple(int(float(p)) for p in parts)
    except ValueError:
        raise ValueError(f"size: expected N (e.g. 1e7) or ROWSxCLASSES (e.g. 65536x1000), got {text!r}") from None
    if any(d < 1 for d in dims) or len(dims) > 2 or any(float(p) != int(float(p)) for p in parts):
        raise ValueError(f"size: expected positive whole numbers, got {text!r}")
    return dims


def make_cases(defs, dtypes, sizes=None, threads=(None,), quick=False) -> list[Case]:
    """The cartesian product, in run order. ``sizes`` (parsed shapes) apply to cases of the matching kind
    (``(n,)`` to elementwise, ``(rows, classes)`` to multiclass); a kind with no matching size in ``sizes``
    keeps its own sizes."""
    cases = []
    for t in threads:
        t = t or _config.get_num_threads()
        for d in defs:
            own = d.quick_sizes if quick else d.sizes
            ndim = KIND_NDIM[d.kind]
            chosen = [s for s in (sizes or ()) if len(s) == ndim] or list(own)
            for dt in dtypes:
                for s in chosen:
                    cases.append(Case(d, dt, tuple(s), t))
    return cases


def make_data(case: Case, seed: int = 0):
    """(pred, target) for a case: deterministic, C-contiguous, in the case's dtype (class labels int64)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(case.dtype)
    shape = case.shape
    kind_p, kind_y = case.defn.pred, case.defn.target
    if kind_p == "normal":
        pred = rng.standard_normal(shape, dtype=np.float64 if dt == np.float64 else np.float32).astype(dt, copy=False)
    elif kind_p == "log_rate":  # log of a Poisson rate, rates in about [0.2, 5]
        pred = (0.5 * rng.standard_normal(shape, dtype=np.float32)).astype(dt)
    elif kind_p == "positive":
        pred = rng.uniform(0.1, 3.0, shape).astype(dt)
    elif kind_p == "probability":
        pred = rng.uniform(0.01, 0.99, shape).astype(dt)
    else:
        raise ValueError(f"unknown pred distribution {kind_p!r}")
    tshape = shape[:-1] if case.defn.kind == "multiclass" and kind_y == "class_index" else shape
    if kind_y == "normal":
        target = rng.standard_normal(tshape, dtype=np.float32).astype(dt)
    elif kind_y == "positive":  # Gamma draws around exp(pred) (shape 2)
        target = rng.gamma(2.0, np.exp(pred.astype(np.float64)) / 2.0).astype(dt)
    elif kind_y == "counts":  # Poisson counts around exp(pred)
        target = rng.poisson(np.exp(pred.astype(np.float64))).astype(dt)
    elif kind_y == "binary":
        target = rng.integers(0, 2, tshape).astype(dt)
    elif kind_y == "sign":
        target = (2 * rng.integers(0, 2, tshape) - 1).astype(dt)
    elif kind_y == "class_index":
        target = rng.integers(0, shape[-1], tshape, dtype=np.int64)
    elif kind_y == "distribution":  # one probability vector per row (soft targets)
        e = np.exp(rng.standard_normal(shape, dtype=np.float32))
        target = (e / e.sum(axis=-1, keepdims=True)).astype(dt)
    else:
        raise ValueError(f"unknown target distribution {kind_y!r}")
    # no exact zeros or ties (p == y): there the losses with kinks have several valid subgradients and the
    # peers' conventions legitimately differ (JAX differentiates max(x, 0) + log1p(exp(-|x|)) to 0 at x = 0)
    if kind_p == "normal":
        pred[pred == 0] = 0.25
        if target.shape == pred.shape:
            pred[pred == target] += 0.25
    return np.ascontiguousarray(pred), np.ascontiguousarray(target)


def minimal_bytes(case: Case) -> int:
    """Bytes a value_and_grad step must move at least: each input read once, each output written once.

    Elementwise: pred and target read, grad written (3 n itemsize; the scalar value is free). Multiclass:
    logits read and grad written (2 rows classes itemsize) plus the int64 labels read.
    """
    item = np.dtype(case.dtype).itemsize
    if case.defn.kind == "multiclass":
        rows = int(np.prod(case.shape[:-1]))
        return 2 * case.n * item + 8 * rows
    return 3 * case.n * item


def case_key(row: dict) -> tuple:
    """The case a result row belongs to (rows of one case differ only in the contestant)."""
    return (row["loss"], row.get("params", ""), row["dtype"], row["size"], int(row["threads"]),
            row.get("clock", "wall"))


def get_case(loss: str, dtype: str, shape: tuple, threads: int | None = None) -> Case:
    d = case_def(loss)
    if d is None:
        get_spec(loss)  # raises the registry's error
    return Case(d, dtype, tuple(shape), threads or _config.get_num_threads())
