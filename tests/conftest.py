"""Shared fixtures for the fusedloss test suite.

Everything here is derived from the loss registry (``fusedloss._spec.REGISTRY``) and the backend registry
(``fusedloss.backends()``), so that a new loss or backend is tested without editing the tests:

- ``HOST_BACKENDS`` / the ``backend`` fixture: every host backend, skipped with the reason that
  ``fusedloss.backends()`` gives when it cannot run here.
- ``DTYPES`` and ``TOL``: the one tolerance table, keyed by dtype (see ``assert_close``).
- ``VARIANTS``: extra parameter values per loss (the registry defaults are always tested too);
  ``loss_cases()`` turns the registry plus this table (``PAIRWISE_VARIANTS`` for pairwise losses) into pytest
  params. test_spec_table fails for a parameter that no row varies.
- ``KINDS``, ``make_case`` and ``grads``: how the generic tests call a loss of any kind,
  ``loss(*case.arrays, ...)`` with rows along the leading axes, or why a kind is not collected there
  (test_kinds fails for a kind of the registry that KINDS does not name).
- ``make_data``: inputs per loss that respect its domains and include points near its branch cut-offs
  (the registry's ``kinks``), or keep away from them.
- ``MC_VARIANTS``, ``multiclass_cases()`` and ``make_multiclass_data``: the same for multiclass losses
  (class axis last; integer labels and/or probability targets).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np
import pytest

# Use the installed package when there is one (an editable install also carries the compiled backend);
# fall back to the source tree so that the suite runs from a plain checkout.
if importlib.util.find_spec("fusedloss") is None:  # pragma: no cover - depends on the environment
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import fusedloss as fl  # noqa: E402
from fusedloss import _reference  # noqa: E402
from fusedloss._spec import REGISTRY  # noqa: E402
from fusedloss._validate import _FLOAT_DTYPES  # noqa: E402
from fusedloss.backends import REGISTRY as BACKENDS  # noqa: E402

# --- backends -----------------------------------------------------------------------------------------

HOST_BACKENDS = tuple(name for name, entry in BACKENDS.items() if not entry.device)
COMPILED_BACKENDS = tuple(name for name in HOST_BACKENDS if BACKENDS[name].compiled)


def backend_rows() -> dict:
    """``fusedloss.backends()`` keyed by name (the registry caches import results, so this is cheap)."""
    return {row["name"]: row for row in fl.backends()}


def backend_skip_reason(name: str) -> str | None:
    row = backend_rows().get(name)
    if row is None:
        return f"backend {name!r} is not registered"
    if not row["available"]:
        return f"backend {name!r} unavailable: {row.get('reason', 'no reason given')}"
    return None


def require_backend(name: str) -> str:
    reason = backend_skip_reason(name)
    if reason:
        pytest.skip(reason)
    return name


def supported(backend: str, name: str, dtype=None) -> bool:
    """Whether ``backend`` (available) implements loss ``name`` for ``dtype`` (both dtypes if None)."""
    module = sys.modules["fusedloss.backends"].REGISTRY[backend].load()
    dtypes = DTYPES if dtype is None else (np.dtype(dtype),)
    return module is not None and all(module.supports(REGISTRY[name], dt) for dt in dtypes)


def require_support(backend: str, name: str, dtype=None) -> None:
    """Skip (saying so) when a backend does not implement a loss; test_backends lists the gaps."""
    if not supported(backend, name, dtype):
        pytest.skip(f"backend {backend!r} does not support {name} for "
                    f"{'float32/float64' if dtype is None else np.dtype(dtype)}")


def run_python(code: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """``code`` (dedented) in a fresh interpreter importing this fusedloss, with the environment less the
    FUSEDLOSS_ variables, plus ``env``: for what is read at import (the environment, the extension's import)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FUSEDLOSS_")}
    full.update(env)
    src = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    if os.path.abspath(src) in [os.path.abspath(p) for p in sys.path if p]:  # run from the source tree
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [src, full.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(params=HOST_BACKENDS)
def backend(request):
    """Each host backend by name; a skip that says why when it cannot run here."""
    return require_backend(request.param)


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    return require_backend(request.param)


@pytest.fixture(params=["row-a-block", "rows-side-by-side"])
def small_blocks(request, monkeypatch):
    """Blocks of at most 32 or 64 threads: the simulator runs each thread as a Python thread, and the tree and
    the striding are the same code for every power of two (the block-kernel tests run the full block size too).
    "rows-side-by-side": a warp per row whatever C (``ROW_ELEMS`` large), two rows a block, so that rows that
    differ (one ignored, one past the last row, one of -inf) share the block's barriers."""
    from fusedloss.backends import _cuda_rows

    if request.param == "row-a-block":
        monkeypatch.setattr(_cuda_rows, "MAX_ROW_THREADS", 32)
    else:
        monkeypatch.setattr(_cuda_rows, "MAX_ROW_THREADS", 64)
        monkeypatch.setattr(_cuda_rows, "ROW_ELEMS", 1 << 20)


@pytest.fixture(autouse=True)
def _clean_config():
    """Every test starts and ends with the default backend choice and thread count."""
    fl.set_backend(None)
    fl.set_num_threads(None)
    yield
    fl.set_backend(None)
    fl.set_num_threads(None)


# --- dtypes and tolerances ----------------------------------------------------------------------------

DTYPES = _FLOAT_DTYPES  # every dtype the API takes (float32, float64); TOL has a row for each


@dataclass(frozen=True)
class Tol:
    rtol: float
    atol: float  # relative to the magnitude passed to assert_close (absolute for magnitude 1)


# The one tolerance table. float32 kernels round their intermediates to float32 (eps 6e-8), so a few
# hundred ulp of slack; float64 kernels may use a different but equally stable form than the reference.
TOL = {
    np.dtype(np.float32): Tol(rtol=1e-5, atol=1e-5),
    np.dtype(np.float64): Tol(rtol=1e-12, atol=1e-13),
}


def assert_close(actual, expected, dtype, mag=1.0, err_msg=""):
    """|actual - expected| <= rtol |expected| + atol * mag, elementwise, with TOL[dtype].

    ``mag`` (a scalar or an array broadcastable to ``expected``) is the size of the terms that make up
    ``expected``: where the result cancels (a gradient ``exp(p) - y`` near zero) the rounding error is
    relative to those terms, not to the result. NaNs must match NaNs and infinities must match exactly.
    """
    tol = TOL[np.dtype(dtype)]
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{err_msg}: shape {a.shape} != expected {e.shape}"
    mag = np.broadcast_to(np.asarray(mag, dtype=np.float64), e.shape)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        bad = np.argwhere(nan_a != nan_e)[:5].tolist()
        raise AssertionError(f"{err_msg}: NaN positions differ at {bad}; actual {a.ravel()[:8]}, expected "
                             f"{e.ravel()[:8]}")
    inf = np.isinf(e) | np.isinf(a)
    if not np.array_equal(a[inf], e[inf]):
        raise AssertionError(f"{err_msg}: infinities differ: actual {a[inf][:8]}, expected {e[inf][:8]}")
    fin = ~(nan_e | inf)
    err = np.abs(a[fin] - e[fin])
    allowed = tol.rtol * np.abs(e[fin]) + tol.atol * mag[fin]
    if not np.all(err <= allowed):
        i = int(np.argmax(err - allowed))
        where = np.argwhere(fin)[i].tolist()
        raise AssertionError(
            f"{err_msg}: {int(np.sum(err > allowed))} of {err.size} elements differ beyond rtol={tol.rtol}, "
            f"atol={tol.atol}*mag; worst at {where}: actual {a[fin][i]!r}, expected {e[fin][i]!r}, "
            f"|diff| {err[i]:.3g} > allowed {allowed[i]:.3g}"
        )


# --- losses and parameter variants --------------------------------------------------------------------

# Extra parameter values per loss, on top of the registry defaults (which are always tested). Cut-offs are
# dyadic so that points near them are exact in float32 (see make_data).
VARIANTS: dict[str, list[dict]] = {
    "huber": [{"delta": 0.5}],
    "asymmetric_huber": [{"delta": 0.5, "alpha_left": 0.25, "alpha_right": 2.0}, {"alpha_left": 3.0}],
    "smooth_l1": [{"beta": 0.0}, {"beta": 0.25}],
    "pseudo_huber": [{"delta": 2.0}],
    "fair": [{"c": 0.25}],
    "cauchy": [{"c": 2.0}],
    "mape": [{"epsilon": 1.0}],
    "general_robust": [{"alpha": 0.0}, {"alpha": 2.0, "c": 0.5}, {"alpha": -math.inf}, {"alpha": -2.0, "c": 0.5},
                       {"alpha": 4.0, "c": 2.0}],
    "quantile": [{"quantile": 0.1}, {"quantile": 0.9}],
    "expectile": [{"expectile": 0.125}],
    "poisson_nll": [{"log_input": False}, {"log_input": False, "eps": 0.25}],
    "tweedie": [{"power": 1.2}, {"power": 1.8}, {"power": 0.0}, {"power": -1.5}, {"power": 1.0}, {"power": 2.0},
                {"power": 2.5}],
    "tweedie_identity": [{"power": 0.0}, {"power": 1.0}, {"power": 2.0}, {"power": 3.0}, {"power": 0.5},
                         {"power": -1.5}],
    "hinge_embedding": [{"margin": 0.5}, {"margin": -1.0}],
    "binary_cross_entropy": [{"pos_weight": 2.0}],
    "binary_cross_entropy_with_logits": [{"pos_weight": 0.5, "label_smoothing": 0.1}],
    "binary_focal": [{"alpha": -1.0, "gamma": 0.0}, {"alpha": 0.5, "gamma": 1.5}],
    "zero_one": [{"threshold": 0.0}],
}

# Extra parameter rows for pairwise losses in the generic tests (tests/test_pairwise.py has its own, wider table).
PAIRWISE_VARIANTS: dict[str, list[dict]] = {
    "margin_ranking": [{"margin": 0.5}],
    "cosine_embedding": [{"margin": 0.25}],
    "triplet_margin": [{"p": 1.0, "swap": True}],
    "gaussian_nll": [{"full": True, "eps": 0.5}],
}


def elementwise_names() -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.kind == "elementwise"]


def full_params(name: str, params: dict | None = None) -> dict:
    """The registry defaults updated with ``params``, converted as the registry says."""
    spec = REGISTRY[name]
    kw = spec.defaults()
    kw.update(params or {})
    return {p.name: p.convert(kw[p.name]) for p in spec.params}


def case_id(name: str, params: dict) -> str:
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def loss_cases(variants: bool = True, kinds: tuple[str, ...] | None = None) -> list:
    """pytest params ``(name, params)`` for every registry entry of a kind that the generic tests call alike
    (``KINDS``: a data generator, ``make_case``), or of ``kinds`` only, for a test whose subject is one kind's
    (the elementwise reference's formulas): defaults, then the variant rows."""
    cases = []
    for name, spec in REGISTRY.items():
        kind = KINDS.get(spec.kind)  # a kind KINDS does not name: test_kinds.py fails
        if kind is None or kind.make is None or (kinds is not None and spec.kind not in kinds):
            continue
        for params in [{}] + (kind.variants.get(name, []) if variants else []):
            cases.append(pytest.param(name, params, id=case_id(name, params)))
    return cases


def kinks(name: str, params: dict) -> list[float]:
    """The registry's kinks of the loss at these parameters (d = 0 and |d| = 1 when it declares none)."""
    declared = REGISTRY[name].kinks
    return [0.0, 1.0] if declared is None else list(declared(full_params(name, params)))


# --- data ---------------------------------------------------------------------------------------------


def _style(name: str, params: dict) -> str:
    """How to draw pred: around the target ("residual"), a score or log-link value ("score"), a rate, a
    probability ("unit")."""
    spec = REGISTRY[name]
    pdom = spec.pred_domain_for(full_params(name, params))
    if pdom in ("nonnegative", "positive"):
        return "rate"
    if pdom == "above_minus_one":
        return "above_minus_one"
    if pdom == "unit":
        return "unit"
    if pdom != "real":
        raise ValueError(f"{name}: no prediction generator for domain {pdom!r} (tests/conftest.py: _style)")
    if spec.target_domain_for(full_params(name, params)) in ("positive", "nonnegative", "unit"):
        return "score"
    return "residual"


def _targets(rng, domain: str, n: int) -> np.ndarray:
    if domain == "above_minus_one":  # > -1, on a 2^-6 grid from -1 + 2^-6 up
        return np.round(rng.exponential(2.0, n) * 64 + 1) / 64 - 1.0
    if domain == "positive":  # > 0, on a 2^-6 grid from 2^-6 up (exact in float32)
        return np.round(rng.exponential(2.0, n) * 64 + 1) / 64
    if domain == "nonnegative":
        y = np.where(rng.random(n) < 0.5, rng.poisson(2.0, n), np.round(rng.exponential(2.0, n) * 64) / 64)
        y = y.astype(np.float64)
        y[: min(n, 2)] = 0.0  # y = 0 is in the domain and takes special paths in some formulas
        return y
    if domain == "unit":
        return np.round(rng.random(n) * 64) / 64
    if domain == "sign":
        return np.where(rng.random(n) < 0.5, -1.0, 1.0)
    if domain == "real":  # on a 2^-6 grid, so that pred = target + (dyadic offset) is exact in float32
        return np.round(rng.normal(0.0, 1.5, n) * 64) / 64
    raise ValueError(f"no target generator for domain {domain!r} (tests/conftest.py: _targets)")


def make_data(name, params, shape, dtype, seed=0, near_kinks=True, margin=1e-3):
    """(pred, target) of ``shape`` and ``dtype`` inside the loss's domains.

    With ``near_kinks`` about a quarter of the points sit just beside a branch cut-off (|d| = c (1 +- 2^-8)
    and d = +-2^-9 around 0), never exactly on one: there the subgradients of two correct implementations
    may legitimately differ. All such points are exact in float32 (dyadic targets and offsets), so the
    float32 and float64 branch decisions agree. Without ``near_kinks`` every |d| stays ``margin`` away
    from every cut-off (for finite differences).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    n = math.prod(shape)
    spec = REGISTRY[name]
    y = _targets(rng, spec.target_domain_for(full_params(name, params)), n)
    style = _style(name, params)
    if style == "rate":
        p = rng.uniform(0.05, 4.0, n)
    elif style == "unit":
        p = rng.uniform(0.01, 0.99, n)
    elif style == "above_minus_one":
        p = rng.uniform(-0.95, 4.0, n)
    elif style == "score":
        p = rng.uniform(-2.0, 2.0, n)
    else:
        cuts = kinks(name, params)
        d = rng.normal(0.0, 2.0, n)
        if near_kinks and n:
            special = []
            for c in sorted(set(cuts) | {0.0}):
                if c == 0.0:
                    special += [2.0**-9, -(2.0**-9), 2.0**-12, -(2.0**-12)]
                else:
                    special += [s * c * (1 + f) for s in (1.0, -1.0) for f in (2.0**-8, -(2.0**-8))]
            idx = rng.permutation(n)[: max(1, n // 4)]
            d[idx] = np.resize(special, idx.size)
        else:
            for c in cuts:
                close = np.abs(np.abs(d) - c) < margin
                d[close] = np.where(d[close] >= 0, 1.0, -1.0) * (c + 3 * margin)
        p = y + d
    p = p.astype(dtype).reshape(shape)
    y = y.astype(dtype).reshape(shape)
    return p, y


WEIGHTINGS = ("unweighted", "full", "leading")


def make_weight(weighting: str, shape, dtype, seed=1):
    """None, weights of pred's shape (a few exact zeros when n >= 17), or weights of a leading part of the
    shape, broadcast by the API along the remaining axes (a 0-d weight for 0-d and 1-d pred)."""
    if weighting == "unweighted":
        return None
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if weighting == "leading":
        shape = shape[: max(0, len(shape) - 1)]
    n = math.prod(shape)
    w = rng.uniform(0.25, 2.0, n)
    if n >= 17:
        w[rng.permutation(n)[: n // 10]] = 0.0
    return w.astype(dtype).reshape(shape)


def broadcast_weight(w, shape):
    """The leading-axis broadcast that the API documents, done independently of the library."""
    if w is None:
        return np.ones(shape)
    w = np.asarray(w, dtype=np.float64)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


def magnitudes(name, params, p, y):
    """Per-element size of the terms of l, g and h: 1 + |l| + |g| + |h| (reference, unweighted)."""
    l, g, h = _reference.elementwise(name, p, y, **full_params(name, params))
    with np.errstate(all="ignore"):
        m = 1.0 + np.abs(l) + np.abs(g) + np.abs(h)
    return np.where(np.isfinite(m), m, 1.0)


def loss_fn(name):
    return getattr(fl, name)


# --- multiclass losses (class axis last) ----------------------------------------------------------------

N_CLASSES = 5

# Extra parameter rows for multiclass losses; per-class vectors have N_CLASSES entries.
MC_VARIANTS: dict[str, list[dict]] = {
    "cross_entropy": [{"label_smoothing": 0.1}, {"z_loss": 1e-3, "softcap": 5.0},
                      {"class_weight": [0.5, 2.0, 1.0, 0.0, 1.5]}, {"confidence_penalty": 0.3},
                      {"confidence_penalty": 0.2, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0,
                       "class_weight": [0.5, 2.0, 1.0, 0.0, 1.5]}],
    "categorical_focal": [{"gamma": 0.0}, {"alpha": [0.25, 1.0, 0.5, 2.0, 0.75], "gamma": 1.5}],
    "multi_margin": [{"p": 2}, {"margin": 0.5, "class_weight": [0.5, 2.0, 1.0, 0.0, 1.5]}],
    "kl_div_with_logits": [{"log_target": True}, {"temperature": 2.0}],
    "multilabel_soft_margin": [{"class_weight": [0.5, 2.0, 1.0, 0.0, 1.5]}],
    "poly1": [{"epsilon": 0.0}, {"epsilon": -1.0}],
    "jensen_shannon": [{"beta": 0.0}, {"beta": 1.0}, {"beta": 0.2}],
}


def multiclass_cases() -> list:
    """pytest params ``(name, params, form)`` for every multiclass registry entry, each target form it
    takes ("hard" integer labels, "soft" probabilities)."""
    cases = []
    for name, spec in REGISTRY.items():
        if spec.kind != "multiclass":
            continue
        forms = [f for f, ok in (("hard", spec.hard_labels), ("soft", spec.soft_labels)) if ok]
        for params in [{}] + MC_VARIANTS.get(name, []):
            for form in forms:
                cases.append(pytest.param(name, params, form, id=f"{case_id(name, params)}-{form}"))
    return cases


def make_multiclass_data(name, params, lead, dtype, form, seed=0, n_classes=N_CLASSES):
    """(logits of shape lead + (C,), target): integer labels of shape ``lead`` (about a fifth of them the
    ignored label, when the loss has one) or probability rows of the logits' shape (log-probabilities for
    kl_div_with_logits with log_target)."""
    rng = np.random.default_rng(seed)
    spec = REGISTRY[name]
    kw = full_params(name, params)
    lead = tuple(lead)
    x = rng.normal(0.0, 2.0, lead + (n_classes,)).astype(dtype)
    if form == "hard":
        t = rng.integers(0, n_classes, lead).astype(np.int64)
        if spec.ignore_param and t.size:
            flat = t.reshape(-1)
            flat[rng.permutation(flat.size)[: flat.size // 5]] = kw[spec.ignore_param]
        return x, t
    q = rng.dirichlet(np.ones(n_classes), size=lead) if lead else rng.dirichlet(np.ones(n_classes))
    if kw.get("log_target"):
        q = np.log(q)
    return x, np.asarray(q).astype(dtype)


# --- every kind of loss in the generic tests -------------------------------------------------------------------
#
# The generic tests (test_backends, test_api, test_partial, test_dask, test_row_rule) call every loss alike:
# ``loss(*case.arrays, reduction=..., sample_weight=..., backend=..., **params)``, with the arrays' rows along
# their leading axes ``case.rows`` (the shape of sample_weight) and the gradients as a tuple, one per
# differentiated array (``grads``). KINDS says, for each kind in the registry, how its cases are made, or why the
# kind is not collected there; test_kinds.py fails for a kind of the registry that KINDS does not name.


@dataclass(frozen=True)
class Case:
    """One call's positional arrays; each has the leading shape ``rows``, one sample weight per row."""

    arrays: tuple
    rows: tuple


def grads(result) -> tuple:
    """A loss's gradient result as a tuple, one array per differentiated input (elementwise: the prediction's)."""
    return result if isinstance(result, tuple) else (result,)


PAIRWISE_TARGETS = (-1.0, 1.0, 1.0, -1.0, 0.0, 2.0, 0.5)  # mostly -1 and 1; 0 (cosine: loss 0) and others


def set_pairwise_edges(name, arrays, D):
    """Put the edge cases of pairwise loss ``name`` in the first rows of ``arrays`` (its inputs, then its target if
    it has one, modified in place; the inputs' rows along their first axis, of D where a row is a vector, of one
    number or of several where it is a number; the target flat): a zero input
    (cosine's zero vector, where eps sets the gradient; its target 1 so that it counts), identical first and second
    inputs (x1 - x2 = 0: margin_ranking's kink at margin 0; d(a, p) = eps), var at 0 and below eps (clamped: the
    gradient at the clamped value), positive = negative, and a swap tie (eps = 0: d(a, n) = d(p, n) = 1). All
    exact in float32. Needs four rows."""
    spec = REGISTRY[name]
    x = arrays[:len(spec.inputs)]
    x[0][0] = 0.0
    x[1][1] = x[0][1]
    if "var" in spec.inputs:
        x[spec.inputs.index("var")].reshape(-1)[:2] = (0.0, 2.0**-30)
    elif len(x) == 3 and spec.vector_rows:
        x[2][2] = x[1][2]
        e1 = np.eye(D)[0]
        x[0][3], x[1][3], x[2][3] = 0.0, 2.0 * e1, e1
    if spec.row_target:
        arrays[-1].reshape(-1)[0] = 1.0


def make_pairwise_data(name, params, rows, dtype, seed=0, D=3):
    """The arrays of pairwise loss ``name``, its inputs then its target, with the leading shape ``rows`` (and a
    vector axis of D where a row is a vector): inputs on a 2^-6 grid (exact in float32, so that both dtypes take
    the same branch at margin_ranking's kink), var in [0.25, 2] (both sides of gaussian_nll's clamp at eps = 0.5),
    targets PAIRWISE_TARGETS; with four rows or more, the edge cases of ``set_pairwise_edges`` in the first."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(seed)
    rows = tuple(rows)
    shape = rows + ((D,) if spec.vector_rows else ())
    arrays = [np.round((rng.uniform(0.25, 2.0, shape) if what in spec.nonnegative_inputs
                        else rng.normal(0.0, 1.0, shape)) * 64) / 64 for what in spec.inputs]
    if spec.row_target:
        arrays.append(rng.choice(PAIRWISE_TARGETS, size=rows))
    if math.prod(rows) >= 4:  # on views of the arrays, one row each
        set_pairwise_edges(name, [a.reshape((-1, D) if spec.vector_rows and k < len(spec.inputs) else (-1,))
                                  for k, a in enumerate(arrays)], D)
    return tuple(np.asarray(a, dtype=dtype) for a in arrays)


@dataclass(frozen=True)
class Kind:
    """How the generic tests exercise the losses of one kind: ``make(name, params, rows, dtype, seed)`` gives the
    arrays, ``variants`` the extra parameter rows; or ``make`` is None and ``elsewhere`` says why the kind is not
    collected and which tests cover what the generic ones assert."""

    make: object = None
    variants: dict = field(default_factory=dict)
    # whether sample_weight may leave out trailing axes of the rows (broadcast along them, "leading" weights)
    broadcast_weights: bool = False
    elsewhere: str = ""


KINDS: dict[str, Kind] = {
    "elementwise": Kind(make=make_data, variants=VARIANTS, broadcast_weights=True),
    "pairwise": Kind(make=make_pairwise_data, variants=PAIRWISE_VARIANTS),
    "multiclass": Kind(elsewhere="the class axis and the hard/soft target forms: its twins of the generic tests run "
                                 "over multiclass_cases() (test_multiclass.py for the backends, test_dask.py, "
                                 "test_partial.py, test_row_rule.py)"),
    "overlap": Kind(elsewhere="dice and tversky are ratios of sums over the whole batch, with no loss per row: "
                              "their 'none' is per class, their weights per sample (per_sample only), and they have "
                              "no partial states (their dask blocks' sums are added, then combined once): "
                              "test_overlap.py, and their twins of the generic dask tests in test_dask.py"),
    "sequence": Kind(elsewhere="ctc's 'mean' divides each loss by its target length and its partial states depend "
                               "on the reduction, so the generic reductions and merges do not hold: test_ctc.py, "
                               "test_ctc_partial_dask.py"),
}


def make_case(name, params, rows, dtype, seed=0) -> Case:
    """The arrays of loss ``name`` with the leading shape ``rows``, from its kind's generator."""
    return Case(tuple(KINDS[REGISTRY[name].kind].make(name, params, rows, dtype, seed=seed)), tuple(rows))


def weightings(name) -> tuple[str, ...]:
    """The WEIGHTINGS that loss ``name`` takes: "leading" only where weights broadcast along trailing axes."""
    return WEIGHTINGS if KINDS[REGISTRY[name].kind].broadcast_weights else ("unweighted", "full")
