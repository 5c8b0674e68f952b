"""Mergeable partial results: ``fl.<loss>.partial``, ``LossState.merge`` / ``fl.merge`` and ``state.value``.

The rule under test: the merge of the states of any split of the data gives the plain call's value up to the
float64 rounding of the sums (the kernels sum fixed blocks of SUM_BLOCK elements in order; a merge adds the
pieces exactly rounded). Exactly equal where the sums are exact (dyadic data).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import loss_cases, loss_fn, make_case, make_data, make_multiclass_data, make_weight, multiclass_cases

SUM_BLOCK = 4096  # elements per summation block in every host kernel
U = 2.0**-53  # unit roundoff of float64


def random_pieces(rng, n: int, k: int) -> list[np.ndarray]:
    """Index arrays of ``k`` contiguous pieces of range(n) of random, unequal sizes, some empty."""
    cuts = np.sort(rng.integers(0, n + 1, k - 1))
    cuts[rng.random(k - 1) < 0.25] = cuts[0]  # repeated cut points: empty pieces
    return np.split(np.arange(n), np.sort(cuts))


def summation_bound(terms: np.ndarray, pieces: int) -> float:
    """First-order bound on |sum in blocks - sum in pieces| for these terms: both groupings sum at most
    (SUM_BLOCK + n / SUM_BLOCK + pieces) numbers in sequence, each rounding by at most u of a partial sum."""
    n = terms.size
    return 2 * (min(n, SUM_BLOCK) + n // SUM_BLOCK + pieces + 2) * U * float(np.sum(np.abs(terms)))


def check_split(loss, arrays, w, params, rng, rows: int, per_row_terms):
    """``arrays``: the call's positional arrays, rows along the first axis."""
    plain_mean = loss(*arrays, sample_weight=w, **params)
    plain_sum = loss(*arrays, sample_weight=w, reduction="sum", **params)
    whole = loss.partial(*arrays, sample_weight=w, **params)
    assert whole.value("mean") == plain_mean or (math.isnan(plain_mean) and math.isnan(whole.value("mean")))
    assert whole.value("sum") == plain_sum
    for trial in range(4):
        pieces = random_pieces(rng, rows, k=int(rng.integers(2, 7)))
        states = [loss.partial(*(a[i] for a in arrays), sample_weight=None if w is None else w[i], **params)
                  for i in pieces]
        merged = fl.merge(states)
        assert merged.count == whole.count
        bound = summation_bound(per_row_terms, len(pieces))
        assert abs(merged.sum - plain_sum) <= bound, (merged.sum, plain_sum, bound)
        assert abs(merged.denominator - whole.denominator) <= 4 * U * abs(whole.denominator) * len(pieces)
        if whole.denominator:
            rel = bound / abs(whole.denominator) + 4 * U * len(pieces) * abs(plain_mean)
            assert abs(merged.value("mean") - plain_mean) <= rel, (merged.value("mean"), plain_mean)
        # a fixed order merges deterministically; fsum makes the order irrelevant too
        assert fl.merge(states[::-1]) == merged
        folded = states[0]
        for s in states[1:]:
            folded = folded.merge(s)
        assert folded.count == merged.count
        assert abs(folded.sum - merged.sum) <= len(states) * U * float(sum(abs(s.sum) for s in states))


@pytest.mark.parametrize("weighting", ["unweighted", "full"])
@pytest.mark.parametrize("name, params", loss_cases(variants=True))
def test_split(name, params, weighting):
    rng = np.random.default_rng(7)
    n = 601
    case = make_case(name, params, (n,), np.float64, seed=3)
    w = make_weight(weighting, (n,), np.float64)
    loss = loss_fn(name)
    terms = loss(*case.arrays, reduction="none", sample_weight=w, **params)
    check_split(loss, case.arrays, w, params, rng, n, terms)


@pytest.mark.parametrize("weighting", ["unweighted", "rows"])
@pytest.mark.parametrize("name, params, form", multiclass_cases())
def test_multiclass_split(name, params, form, weighting):
    rng = np.random.default_rng(8)
    R = 173
    x, t = make_multiclass_data(name, params, (R,), np.float64, form, seed=4)
    w = None if weighting == "unweighted" else rng.uniform(0.0, 2.0, R)
    loss = loss_fn(name)
    terms = loss(x, t, reduction="none", sample_weight=w, **params)
    check_split(loss, (x, t), w, params, rng, R, terms)


MERGE_RTOL = 1e-15  # the compiled backend's promise: merged "mean" vs the plain call, relative


def needs(backend):
    from fusedloss._dispatch import BACKENDS

    if BACKENDS[backend].load() is None:
        pytest.skip(f"backend {backend} is not available")


def check_merge_to_1e15(loss, arrays, w, params, backend, rng, rows: int):
    """Merges of 3 random splits of ``rows`` (unweighted and weighted by ``w``) against the plain "mean", to
    MERGE_RTOL scaled by sum|w l| / |sum w l|; ``arrays`` the call's, rows along the first axis."""
    terms = loss(*arrays, reduction="none", sample_weight=w, backend=backend, **params)
    conditioning = float(np.sum(np.abs(terms))) / max(abs(float(np.sum(terms))), 1e-300)
    for weights in (None, w):
        plain = loss(*arrays, sample_weight=weights, backend=backend, **params)
        for _ in range(3):
            pieces = random_pieces(rng, rows, k=int(rng.integers(2, 9)))
            merged = fl.merge([loss.partial(*(a[i] for a in arrays), sample_weight=None if weights is None else
                                            weights[i], backend=backend, **params) for i in pieces])
            assert abs(merged.value("mean") - plain) <= MERGE_RTOL * conditioning * abs(plain), (
                merged.value("mean"), plain, len(pieces))


@pytest.mark.parametrize("backend", ["cpp", "numba"])
@pytest.mark.parametrize("n", [601, 20_011, 100_003])
@pytest.mark.parametrize("name, params", loss_cases(variants=True))
def test_merge_agrees_to_1e15(name, params, n, backend):
    """The compiled kernels sum in compensated lanes and blocks, so their float64 sums are within a few ulp of the
    exact sum whatever the split: a merge of random, unequal pieces (some empty) gives the plain call's "mean" to
    1e-15 relative (scaled by sum|w l| / |sum w l| where the terms have both signs). Plain running sums in
    blocks of 4096 drift to about 3e-15 here, and NumPy's masked sum of the divisor to 1.5e-15."""
    needs(backend)
    rng = np.random.default_rng(n)
    case = make_case(name, params, (n,), np.float64, seed=5)
    w = make_weight("full", (n,), np.float64, seed=6)
    loss = loss_fn(name)
    check_merge_to_1e15(loss, case.arrays, w, params, backend, rng, n)


@pytest.mark.parametrize("backend", ["cpp", "numba"])
@pytest.mark.parametrize("name, params, form", multiclass_cases())
def test_multiclass_merge_agrees_to_1e15(name, params, form, backend):
    needs(backend)
    rng = np.random.default_rng(11)
    R = 20_011
    x, t = make_multiclass_data(name, params, (R,), np.float64, form, seed=4)
    w = rng.uniform(0.0, 2.0, R)
    loss = loss_fn(name)
    check_merge_to_1e15(loss, (x, t), w, params, backend, rng, R)


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_exact_sums_merge_exactly(name):
    """On dyadic data every sum is exact, so a merge over any split equals the plain call bit for bit: a merge
    that averaged means, or dropped a piece's weights, would not."""
    rng = np.random.default_rng(2)
    n = 10_001
    x = rng.integers(-64, 64, n) / 8.0
    t = rng.integers(-64, 64, n) / 8.0
    w = rng.integers(0, 4, n) / 4.0
    loss = loss_fn(name)
    for weights in (None, w):
        for _ in range(5):
            pieces = random_pieces(rng, n, k=int(rng.integers(2, 9)))
            merged = fl.merge(loss.partial(x[i], t[i], sample_weight=None if weights is None else weights[i])
                              for i in pieces)
            assert merged.value("mean") == loss(x, t, sample_weight=weights)
            assert merged.value("sum") == loss(x, t, sample_weight=weights, reduction="sum")


def test_cross_entropy_divisor_is_kept_class_weight():
    """cross_entropy's "mean" divides by the kept rows' class-weighted weights: so does the state."""
    x = np.zeros((6, 3))
    t = np.array([0, 1, 2, -100, 1, 0])
    cw = np.array([0.5, 2.0, 4.0])
    w = np.array([1.0, 1.0, 2.0, 8.0, 0.0, 1.0])
    state = fl.cross_entropy.partial(x, t, sample_weight=w, class_weight=cw)
    assert state.denominator == 0.5 + 2.0 + 8.0 + 0.0 + 0.5
    assert state.count == 6
    assert state.value("mean") == fl.cross_entropy(x, t, sample_weight=w, class_weight=cw)
    halves = fl.merge([fl.cross_entropy.partial(x[s], t[s], sample_weight=w[s], class_weight=cw)
                       for s in (slice(0, 4), slice(4, 6))])
    assert halves.denominator == state.denominator
    assert halves.value() == pytest.approx(state.value(), rel=1e-15)


def test_multiclass_count_is_rows():
    x, t = make_multiclass_data("kl_div_with_logits", {}, (4, 5), np.float64, "soft")
    assert fl.kl_div_with_logits.partial(x, t).count == 20


@pytest.mark.parametrize("name", list(dict.fromkeys(c.values[0] for c in loss_cases(variants=False) + multiclass_cases())))
def test_empty_piece(name):
    """An empty piece is a neutral element: sum 0, divisor 0, count 0; alone its mean is nan, like the call."""
    spec = REGISTRY[name]
    if spec.kind == "multiclass":
        empty_args = make_multiclass_data(name, {}, (0,), np.float64, "hard" if spec.hard_labels else "soft")
        full_args = make_multiclass_data(name, {}, (9,), np.float64, "hard" if spec.hard_labels else "soft")
    else:
        empty_args = make_case(name, {}, (0,), np.float64).arrays
        full_args = make_case(name, {}, (9,), np.float64).arrays
    loss = loss_fn(name)
    empty = loss.partial(*empty_args)
    assert (empty.sum, empty.denominator, empty.count) == (0.0, 0.0, 0)
    assert math.isnan(empty.value("mean")) and math.isnan(loss(*empty_args))
    assert empty.value("sum") == 0.0
    full = loss.partial(*full_args)
    assert fl.merge([empty, full, empty]) == full


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_is_float64_and_picklable(dtype):
    x, t = make_data("huber", {}, (50,), dtype)
    state = fl.huber.partial(x, t, delta=0.5)
    assert type(state.sum) is float and type(state.denominator) is float and type(state.count) is int
    assert state.value() == fl.huber(x, t, delta=0.5)
    assert pickle.loads(pickle.dumps(state)) == state
    assert isinstance(state, fl.LossState)


def test_partial_validates_like_the_call():
    x, t = make_data("mse", {}, (5,), np.float64)
    with pytest.raises(ValueError, match="same shape"):
        fl.mse.partial(x, t[:4])
    with pytest.raises(TypeError, match="unknown keyword"):
        fl.mse.partial(x, t, delta=1.0)
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        fl.mse.partial(x, t, sample_weight=-np.ones(5))
    with pytest.raises(ValueError, match="out of range"):
        fl.cross_entropy.partial(np.zeros((2, 3)), np.array([0, 3]))
    x0, t0 = x.copy(), t.copy()
    fl.mse.partial(x, t)
    assert np.array_equal(x, x0) and np.array_equal(t, t0)


def test_merge_errors():
    x, t = make_data("mse", {}, (5,), np.float64)
    a = fl.mse.partial(x, t)
    b = fl.mae.partial(x, t)
    with pytest.raises(ValueError, match="different losses"):
        a.merge(b)
    with pytest.raises(ValueError, match="at least one"):
        fl.merge([])
    with pytest.raises(TypeError, match="LossState"):
        fl.merge([a, 1.0])
    with pytest.raises(ValueError, match="'none' has no partial form"):
        a.value("none")


def test_merge_keeps_inf_and_nan():
    """fsum refuses inf - inf and overflows: a sum of finite pieces beyond the float range is carried with an
    exponent (its mean stays finite, its "sum" is inf); infinities add in order, as the plain call would."""
    big = fl.LossState("mse", 1e308, 1.0, 1)
    merged = fl.merge([big, big])
    assert merged.value("sum") == math.inf and merged.value("mean") == 1e308
    nan = fl.merge([fl.LossState("mse", math.inf, 1.0, 1), fl.LossState("mse", -math.inf, 1.0, 1)])
    assert math.isnan(nan.sum)


def test_weights_broadcast_along_trailing_axes():
    """A leading-axis weight (broadcast by the API) gives the divisor of the broadcast weights."""
    x, t = make_data("mse", {}, (7, 3), np.float64)
    w = make_weight("leading", (7, 3), np.float64)
    state = fl.mse.partial(x, t, sample_weight=w)
    assert state.denominator == pytest.approx(3 * float(np.sum(w)), rel=1e-15)
    assert state.value() == fl.mse(x, t, sample_weight=w)
    merged = fl.merge([fl.mse.partial(x[:2], t[:2], sample_weight=w[:2]),
                       fl.mse.partial(x[2:], t[2:], sample_weight=w[2:])])
    assert merged.value() == pytest.approx(state.value(), rel=1e-14)

