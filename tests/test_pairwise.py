"""The pairwise losses (kind "pairwise": margin_ranking, cosine_embedding, triplet_margin, gaussian_nll): what the
generic tests do not ask. Those (test_backends, test_api, test_partial, test_dask, test_row_rule, on
conftest.make_pairwise_data, edge cases included) run every host backend over rows of every shape, weights,
reductions, entry points, empty input, partial states and dask blocks, at the defaults and one variant per loss.

Here, layers of oracles: a hand-computed table checks the reference and the backends; PyTorch (float64, values and
the gradient of every input, every reduction, the edge cases: ties at the kinks, zero vectors, targets other than
-1 and 1, p = 0.5, 1, 1.5, 2, 3, swap) and finite differences check the reference; the reference checks every
backend over the wider parameter table VARIANTS (host backends here, CUDA on the simulator in the cuda pass).
Plus var's broadcast shapes, a float target, read-only inputs and grad_out, bad input and the C++ binding's checks,
and fusedloss.torch against torch.nn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import REGISTRY

from conftest import (HOST_BACKENDS, PAIRWISE_TARGETS, backend_skip_reason, full_params, require_backend,
                      set_pairwise_edges, supported)

PAIRWISE = [name for name, spec in REGISTRY.items() if spec.kind == "pairwise"]
S2 = math.sqrt(2.0)

# (loss, params, arrays (rows), target per row or None, per-row loss, per-row gradients) worked out by hand
HAND = [
    # margin_ranking: m = -y (x1 - x2) + margin; gradient (-y, y) where m >= 0 (m = 0 included, torch's clamp_min)
    ("margin_ranking", {}, ([1.0, 3.0, 2.0], [2.0, 1.0, 2.0]), [1.0, 1.0, 1.0], [1.0, 0.0, 0.0],
     ([-1.0, 0.0, -1.0], [1.0, 0.0, 1.0])),
    ("margin_ranking", {"margin": 0.5}, ([1.0, 1.0], [2.0, 0.0]), [-1.0, 0.5], [0.0, 0.0],
     ([0.0, -0.5], [0.0, 0.5])),
    ("margin_ranking", {"margin": 1.0}, ([0.0], [0.5]), [1.0], [1.5], ([-1.0], [1.0])),
    # cosine_embedding: cos = s / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)); rows: parallel (y = 1), orthogonal (y = -1,
    # margin 0: cos - margin = 0, the gradient flows), y = 0 (nothing)
    ("cosine_embedding", {}, ([[1.0, 0.0], [1.0, 0.0], [1.0, 2.0]], [[2.0, 0.0], [0.0, 3.0], [5.0, 1.0]]),
     [1.0, -1.0, 0.0], [0.0, 0.0, 0.0],
     ([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0 / 3.0, 0.0], [0.0, 0.0]])),
    # x1 = (1, 1), x2 = (1, 0): cos = 1/sqrt 2; y = 1: 1 - cos,
    # d/dx1 = -(x2/r - cos x1/m1) = -(1/S2 - 1/(2 S2), -1/(2 S2))
    ("cosine_embedding", {"margin": 0.5}, ([[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]), [1.0, -1.0],
     [1.0 - 1.0 / S2, 1.0 / S2 - 0.5],
     ([[-0.5 / S2, 0.5 / S2], [0.5 / S2, -0.5 / S2]], [[0.0, -1.0 / S2], [0.0, 1.0 / S2]])),
    # triplet_margin (eps = 0 in the table): d(a, p) = 1, d(a, n) = 2 -> max(0, 1 - 2 + margin); at margin 1, m = 0
    # and the gradient flows: (a - p) / d(a, p) - (a - n) / d(a, n) for the anchor
    ("triplet_margin", {"eps": 0.0}, ([[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]]), None, [0.0],
     ([[-1.0, 1.0]], [[1.0, 0.0]], [[0.0, -1.0]])),
    ("triplet_margin", {"eps": 0.0, "margin": 2.0}, ([[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]]), None, [1.0],
     ([[-1.0, 1.0]], [[1.0, 0.0]], [[0.0, -1.0]])),
    # p = 1: d(a, p) = 3, d(a, n) = 1; gradients sign(a - p) - sign(a - n)
    ("triplet_margin", {"eps": 0.0, "p": 1.0}, ([[0.0, 0.0]], [[1.0, 2.0]], [[0.0, -1.0]]), None, [3.0],
     ([[-1.0, -1.0 - 1.0]], [[1.0, 1.0]], [[0.0, 1.0]])),
    # swap: d(a, n) = 1 = d(p, n) (a tie): min is 1, the negative's gradient split in halves
    ("triplet_margin", {"eps": 0.0, "swap": True}, ([[0.0, 0.0]], [[2.0, 0.0]], [[1.0, 0.0]]), None, [2.0],
     ([[-0.5, 0.0]], [[0.5, 0.0]], [[0.0, 0.0]])),
    # p = inf: d(a, p) = max |a - p| = 1, attained twice (the two share the gradient: sign / 2), d(a, n) = 5 at one
    # element; 10 + 1 - 5 = 6
    ("triplet_margin", {"eps": 0.0, "p": math.inf, "margin": 10.0}, ([[0.0, 0.0]], [[1.0, -1.0]], [[5.0, 3.0]]),
     None, [6.0], ([[-0.5 + 1.0, 0.5]], [[0.5, -0.5]], [[-1.0, 0.0]])),
    # p = -inf: d(a, p) = min |a - p| = 1 (twice), d(a, n) = 3 (second element); 10 + 1 - 3 = 8
    ("triplet_margin", {"eps": 0.0, "p": -math.inf, "margin": 10.0}, ([[0.0, 0.0]], [[1.0, -1.0]], [[5.0, 3.0]]),
     None, [8.0], ([[-0.5, 0.5 + 1.0]], [[0.5, -0.5]], [[0.0, -1.0]])),
    # p = 0: d = the count of nonzero differences (1 and 2), no gradient; p = -1: d = 1 / sum 1 / |e| with a zero
    # e: sum inf, d(a, p) = 0; d(a, n) = 1 / (1/2 + 1/2) = 1: 3 + 0 - 1 = 2, gradient 0 on the zero distance,
    # and -(sign(e) |e|^-2 d^2) on the other: e = a - n = (-2, 2): (-1/4, 1/4) -> minus that on the anchor
    ("triplet_margin", {"eps": 0.0, "p": 0.0, "margin": 3.0}, ([[0.0, 0.0]], [[0.0, 1.0]], [[2.0, -2.0]]), None,
     [2.0], ([[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]])),
    ("triplet_margin", {"eps": 0.0, "p": -1.0, "margin": 3.0}, ([[0.0, 0.0]], [[0.0, 1.0]], [[2.0, -2.0]]), None,
     [2.0], ([[0.25, -0.25]], [[0.0, 0.0]], [[-0.25, 0.25]])),
    # gaussian_nll: v = max(var, eps), d = x - y: 0.5 (log v + d^2 / v); d/dx = d / v, d/dy = -d / v,
    # d/dvar = 0.5 (1 / v - d^2 / v^2), at the clamped v too (var = 0.25 < eps = 0.5: v = 0.5)
    ("gaussian_nll", {}, ([3.0, 1.0], [1.0, 1.0], [4.0, 1.0]), None, [0.5 * (math.log(4.0) + 1.0), 0.0],
     ([0.5, 0.0], [-0.5, 0.0], [0.5 * (0.25 - 4.0 / 16.0), 0.5])),
    ("gaussian_nll", {"eps": 0.5, "full": True}, ([1.0], [0.0], [0.25]), None,
     [0.5 * (math.log(0.5) + 2.0) + 0.5 * math.log(2 * math.pi)], ([2.0], [-2.0], [0.5 * (2.0 - 4.0)])),
    # the default eps = 1e-6 is added to every difference: a = p gives d(a, p) = sqrt(2) 1e-6
    ("triplet_margin", {}, ([[0.0, 0.0]], [[0.0, 0.0]], [[3.0, 4.0]]), None, [max(0.0, S2 * 1e-6 - 5.0 + 1.0)],
     ([[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]])),
]
HAND_TOL = dict(rtol=1e-12, atol=1e-11)  # the cosine's 1e-12 terms move exact answers by about 1e-12


def _arrays(name, rows, target):
    return [*(np.array(r, dtype=np.float64) for r in rows), *([] if target is None else [np.array(target)])]


def test_every_pairwise_loss_has_hand_rows_at_its_defaults():
    for name in PAIRWISE:
        rows = [r for r in HAND if r[0] == name]
        assert rows, f"{name}: no hand-computed rows in HAND"
        assert any(set(r[1]) <= {"eps"} for r in rows), f"{name}: no hand row at (near) its defaults"


def test_gaussian_nll_var_shapes_and_sign():
    """var as PyTorch takes it: the input's shape, without the last axis, one axis of length 1, or a float; its
    gradient summed back to its shape; a negative var refused."""
    rng = np.random.default_rng(9)
    x, t = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    for var in (np.abs(rng.normal(size=(2, 4))), np.abs(rng.normal(size=(2, 1, 3))), np.abs(rng.normal(size=(2, 4, 1))),
                0.7):
        full = np.ascontiguousarray(np.broadcast_to(np.asarray(var)[..., None] if np.shape(var) == (2, 4) else var,
                                                    x.shape))
        want, (gx, gt, gv) = fl.gaussian_nll.value_and_grad(x, t, full, reduction="sum")
        for b in [b for b in HOST_BACKENDS if not backend_skip_reason(b)]:
            value, grads = fl.gaussian_nll.value_and_grad(x, t, var, reduction="sum", backend=b)
            assert value == pytest.approx(want, rel=1e-12)
            assert grads[2].shape == np.shape(var)
            want_v = gv.sum(axis=-1) if np.shape(var) == (2, 4) else gv.sum(axis=tuple(
                i for i, s in enumerate(np.shape(var) or (1,) * 3) if s == 1) or None).reshape(np.shape(var))
            np.testing.assert_allclose(grads[2], want_v, rtol=1e-12)
            np.testing.assert_allclose(grads[0], gx, rtol=1e-12)
    with pytest.raises(ValueError, match="var has negative entries"):
        fl.gaussian_nll(x, t, -np.ones_like(x))
    with pytest.raises(ValueError, match="var must have input's shape"):
        fl.gaussian_nll(x, t, np.ones((2, 2, 3)))


@pytest.mark.parametrize("row", HAND, ids=[f"{r[0]}-{i}" for i, r in enumerate(HAND)])
def test_reference_and_backends_match_hand_table(row):
    name, params, rows, target, losses, grads = row
    arrays = _arrays(name, rows, target)
    loss, gs = _reference.pairwise(name, arrays[:len(REGISTRY[name].inputs)], None if target is None else arrays[-1],
                                   **{**REGISTRY[name].defaults(), **params})
    np.testing.assert_allclose(loss, losses, **HAND_TOL)
    for g, want in zip(gs, grads):
        np.testing.assert_allclose(g, want, **HAND_TOL)
    for b in HOST_BACKENDS:
        if backend_skip_reason(b) or not supported(b, name, np.float64):
            continue
        value, got = getattr(fl, name).value_and_grad(*arrays, reduction="none", backend=b, **params)
        np.testing.assert_allclose(value, losses, err_msg=b, **HAND_TOL)
        for g, want in zip(got, grads):
            np.testing.assert_allclose(g, want, err_msg=b, **HAND_TOL)


# --- the reference against PyTorch (float64) and finite differences ------------------------------------------

torch = pytest.importorskip("torch")
F = torch.nn.functional

VARIANTS = {
    "margin_ranking": [{}, {"margin": 0.5}, {"margin": -0.3}],
    "cosine_embedding": [{}, {"margin": 0.25}, {"margin": -0.5}],
    "triplet_margin": [{}, {"p": 1.0}, {"p": 3.0, "swap": True}, {"p": 0.5, "eps": 0.0}, {"p": 1.5, "swap": True},
                       {"margin": 0.25, "eps": 0.0, "swap": True}, {"p": math.inf}, {"p": -math.inf, "swap": True},
                       {"p": 0.0, "margin": 2.0}, {"p": -1.5, "eps": 0.0}],
    "gaussian_nll": [{}, {"eps": 0.5}, {"full": True}],  # (the last: finite differences, away from the clamp)
}


def _data(name, N=7, D=4, seed=0, edges=True):
    """Inputs and target of ``name``, with the edge cases of ``set_pairwise_edges`` in the first rows when
    ``edges`` (rows of D numbers where a row is a number: D elements at each edge)."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(seed)
    xs = [np.abs(rng.normal(size=(N, D))) if what in spec.nonnegative_inputs else rng.normal(size=(N, D))
          for what in spec.inputs]
    y = None
    if spec.row_target:
        y = rng.choice(PAIRWISE_TARGETS, size=N if spec.vector_rows else N * D)
    if edges:
        set_pairwise_edges(name, [*xs, *([] if y is None else [y])], D)
    if not spec.vector_rows:
        xs = [x.reshape(-1) for x in xs]
    return xs, y


def _torch(name, xs, y, reduction, params):
    spec = REGISTRY[name]
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    args = [*ts, *([] if y is None else [torch.tensor(y)])]
    out = getattr(F, spec.torch_name)(*args, reduction=reduction, **params)
    out.sum().backward()  # (p = 0: torch's norm has no gradient, fusedloss's is 0)
    return out.detach().numpy(), [np.zeros_like(x) if t.grad is None else t.grad.numpy() for t, x in zip(ts, xs)]


@pytest.mark.parametrize("name", PAIRWISE)
def test_reference_matches_torch(name):
    for params in VARIANTS[name]:
        for seed in (0, 1):
            xs, y = _data(name, seed=seed)
            for reduction in ("mean", "sum", "none"):
                want, want_g = _torch(name, xs, y, reduction, params)
                value, grads = getattr(fl, name).value_and_grad(*xs, *([] if y is None else [y]), reduction=reduction,
                                                                backend="numpy", **params)
                what = f"{name} {params} {reduction} seed={seed}"
                np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-14, err_msg=what)
                for g, w in zip(grads, want_g):
                    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=what)


def test_edge_rows_are_what_they_claim():
    """The edge rows of _data hold the ties the torch comparison is about (so that it tests them)."""
    a, p, n = (x[3] for x in _data("triplet_margin")[0])
    assert np.linalg.norm(a - n) == np.linalg.norm(p - n) == 1.0  # swap: minimum(d(a, n), d(p, n)) ties
    x1, x2 = _data("margin_ranking")[0]
    assert np.array_equal(x1[4:8], x2[4:8])  # x1 - x2 = 0: at margin 0 the kink m = 0


@pytest.mark.parametrize("name", PAIRWISE)
def test_reference_gradient_matches_finite_differences(name):
    spec = REGISTRY[name]
    xs, y = _data(name, N=5, D=3, seed=3, edges=False)
    params = {**spec.defaults(), **VARIANTS[name][-1]}
    loss, grads = _reference.pairwise(name, xs, y, **params)
    h = 1e-6
    for k, x in enumerate(xs):
        for idx in np.ndindex(x.shape):
            up, down = [a.copy() for a in xs], [a.copy() for a in xs]
            up[k][idx] += h
            down[k][idx] -= h
            fd = (_reference.pairwise(name, up, y, **params)[0].sum() - _reference.pairwise(name, down, y, **params)[0]
                  .sum()) / (2 * h)
            assert grads[k][idx] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, k, idx)


# --- every backend against the reference -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("backend", [b for b in HOST_BACKENDS if b != "numpy"])
def test_backend_matches_reference(backend, name, dtype):
    reason = backend_skip_reason(backend)
    if reason:
        pytest.skip(reason)
    assert supported(backend, name, dtype), f"backend {backend} lacks {name}"
    loss = getattr(fl, name)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for params in VARIANTS[name]:
        xs, y = _data(name, N=9, D=5, seed=2)
        xs = [x.astype(dtype) for x in xs]
        rest = [] if y is None else [y]
        w = np.linspace(0.0, 2.0, xs[0].shape[0] if REGISTRY[name].vector_rows else xs[0].size)
        for reduction in ("mean", "sum", "none"):
            for weight in (None, w.reshape(xs[0].shape[:-1] if REGISTRY[name].vector_rows else xs[0].shape)):
                kw = dict(reduction=reduction, sample_weight=weight, **params)
                want, want_g = loss.value_and_grad(*xs, *rest, backend="numpy", **kw)
                value, grads = loss.value_and_grad(*xs, *rest, backend=backend, **kw)
                what = f"{backend} {name} {params} {reduction} weighted={weight is not None}"
                assert np.shape(value) == np.shape(want), what
                np.testing.assert_allclose(value, want, err_msg=what, **tol)
                for g, gw, x in zip(grads, want_g, xs):
                    assert g.dtype == x.dtype and g.shape == x.shape, what
                    scale = max(1.0, float(np.abs(gw).max()))
                    np.testing.assert_allclose(g / scale, gw / scale, err_msg=what, **tol)
                assert loss(*xs, *rest, backend=backend, **kw) == pytest.approx(value, rel=1e-12, nan_ok=True) \
                    if reduction != "none" else True
                assert loss.grad(*xs, *rest, backend=backend, **kw)[0] == pytest.approx(grads[0]) \
                    if reduction == "sum" else True


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_rows_of_no_entries_agree_on_every_backend(backend):
    """D = 0: every row's vectors are empty (distance 0, cosine taken as 0): the reference and the kernels
    give the same value and empty gradients."""
    require_backend(backend)
    x = np.ones((4, 0))
    v, (g1, g2) = fl.cosine_embedding.value_and_grad(x, x, np.ones(4), backend=backend)
    assert v == 1.0 and g1.shape == g2.shape == (4, 0)
    v, gs = fl.triplet_margin.value_and_grad(x, x, x, backend=backend)
    assert v == 1.0 and all(g.shape == (4, 0) for g in gs)


def test_one_row_takes_a_float_target():
    """A single row (vectors without a leading axis) with its target a Python float: a 0-d loss, the batch of one's.
    (Rows of every shape, reductions, weights and empty input: the generic tests, tests/test_backends.py.)"""
    a, p = (np.random.default_rng(5).normal(size=(2, 3, 4)) for _ in range(2))
    one = fl.cosine_embedding(a[0, 0], p[0, 0], 1.0, reduction="none")
    assert np.shape(one) == () and float(one) == pytest.approx(fl.cosine_embedding(a[0, :1], p[0, :1], [1.0]))


def test_inputs_are_not_modified_and_grad_out_is_used():
    xs, y = _data("triplet_margin")
    for x in xs:
        x.flags.writeable = False
    before = [x.copy() for x in xs]
    outs = tuple(np.empty_like(x) for x in xs)
    value, grads = fl.triplet_margin.value_and_grad(*xs, grad_out=outs)
    assert all(g is o for g, o in zip(grads, outs))
    assert all(np.array_equal(x, b) for x, b in zip(xs, before))
    assert fl.triplet_margin.grad(*xs)[1] == pytest.approx(grads[1])


def test_bad_input_says_which_argument():
    x = np.zeros((4, 3))
    with pytest.raises(TypeError, match=r"takes 3 arrays \(input1, input2, target\), got 2"):
        fl.cosine_embedding(x, x)
    with pytest.raises(ValueError, match=r"input2 must have input1's shape \(4, 3\), got \(4, 2\)"):
        fl.cosine_embedding(x, np.zeros((4, 2)), np.ones(4))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        fl.cosine_embedding(x, x, np.ones(3))
    with pytest.raises(ValueError, match=r"target must have shape \(4, 3\)"):
        fl.margin_ranking(x, x, np.ones(4))
    with pytest.raises(TypeError, match="anchor must be a floating array"):
        fl.triplet_margin(np.zeros((2, 2), np.int64), x, x)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        fl.triplet_margin(x, x, x, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        fl.triplet_margin(x, x, x, sample_weight=-np.ones(4))
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        fl.triplet_margin(x, x, x, margin=0.0)
    with pytest.raises(ValueError, match="p must be a number"):
        fl.triplet_margin(x, x, x, p=math.nan)
    with pytest.raises(ValueError, match="grad_out\\[1\\] overlaps"):
        fl.triplet_margin.value_and_grad(x, x.copy(), x.copy(), grad_out=(np.empty_like(x), x, np.empty_like(x)))
    with pytest.raises(TypeError, match="has no Hessian"):
        fl.triplet_margin.grad_hess(x, x, x)
    with pytest.raises(ValueError, match="a pairwise loss"):
        __import__("fusedloss.boosting").boosting.lightgbm_objective("triplet_margin")


def test_cpp_binding_checks_before_touching_memory():
    from fusedloss import _core

    if not hasattr(_core, "pairwise"):
        pytest.skip("the extension was built without the pairwise kernels")
    x = np.zeros(12)
    out = np.empty(4)
    with pytest.raises(ValueError, match="x2 must have 12 elements, got 6"):
        _core.pairwise("cosine_embedding", (0.0,), 3, x, x[:6].copy(), None, np.ones(4), None, out, None, None, None, 1)
    with pytest.raises(ValueError, match="x3 is required"):
        _core.pairwise("triplet_margin", (1.0, 2.0, 0.0, 0.0), 3, x, x, None, None, None, out, None, None, None, 1)
    with pytest.raises(ValueError, match="p must be a number"):
        _core.pairwise("triplet_margin", (1.0, np.nan, 0.0, 0.0), 3, x, x, x, None, None, out, None, None, None, 1)
    with pytest.raises(TypeError, match="g2 must be a C-contiguous numpy array of dtype float64"):
        _core.pairwise("cosine_embedding", (0.0,), 3, x, x, None, np.ones(4), np.ones(4), out, np.empty(12),
                       np.empty(12, np.float32), None, 1)
    with pytest.raises(ValueError, match="g1 overlaps another array"):
        _core.pairwise("cosine_embedding", (0.0,), 3, x, x.copy(), None, np.ones(4), np.ones(4), out, x,
                       np.empty(12), None, 1)
    with pytest.raises(ValueError, match="single elements: call pairwise_elements"):
        _core.pairwise("margin_ranking", (0.0,), 1, x, x, None, np.ones(12), None, np.empty(12), None, None, None, 1)
    # pairwise_elements (one-element rows): (loss, params, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3,
    # nthreads)
    elements = _core.pairwise_elements
    with pytest.raises(ValueError, match="x2 must have 12 elements, got 6"):
        elements("margin_ranking", (0.0,), x, x[:6].copy(), None, x, None, 1.0, True, None, None, None, None, 1)
    with pytest.raises(TypeError, match="y must be a C-contiguous numpy array of dtype float64"):
        elements("margin_ranking", (0.0,), x, x, None, np.ones(12, np.float32), None, 1.0, True, None, None, None,
                 None, 1)
    with pytest.raises(ValueError, match="x3 is required"):
        elements("gaussian_nll", (0.0, 1e-6), x, x, None, None, None, 1.0, True, None, None, None, None, 1)
    with pytest.raises(ValueError, match="w must have 12 elements, got 4"):
        elements("gaussian_nll", (0.0, 1e-6), x, x, x, None, np.ones(4), 1.0, True, None, None, None, None, 1)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        elements("gaussian_nll", (0.0, 0.0), x, x, x, None, None, 1.0, True, None, None, None, None, 1)
    with pytest.raises(TypeError, match="g2 must be a C-contiguous numpy array of dtype float64"):
        elements("margin_ranking", (0.0,), x, x, None, np.ones(12), None, 1.0, True, None, np.empty(12),
                 np.empty(12, np.float32), None, 1)
    with pytest.raises(ValueError, match="g3 overlaps another array"):
        elements("gaussian_nll", (0.0, 1e-6), x, x.copy(), x.copy(), None, None, 1.0, True, None, np.empty(12),
                 np.empty(12), x, 1)
    with pytest.raises(ValueError, match="value_out overlaps an input"):
        elements("margin_ranking", (0.0,), x, x.copy(), None, np.ones(12), None, 1.0, False, x, None, None, None, 1)
    with pytest.raises(ValueError, match="all of the gradients, or none"):
        elements("margin_ranking", (0.0,), x, x.copy(), None, np.ones(12), None, 1.0, False, None, None,
                 np.empty(12), None, 1)
    with pytest.raises(ValueError, match="not a loss whose rows are single elements"):
        elements("cosine_embedding", (0.0,), x, x, None, np.ones(12), None, 1.0, True, None, None, None, None, 1)
    assert not x.any()  # nothing was written


@pytest.mark.parametrize("name", [n for n in PAIRWISE if not REGISTRY[n].vector_rows])
def test_numba_row_kernel_refuses_one_element_rows(name):
    """The Numba CPU backend's row kernel, as the C++ binding's, refuses the losses whose row is one element: they
    run in its pairwise_elements (the dispatcher never sends them to pairwise), and nothing is written."""
    pytest.importorskip("numba")
    from fusedloss.backends import numba_cpu

    spec = REGISTRY[name]
    x = np.zeros(12)
    out = np.zeros(12)
    with pytest.raises(ValueError, match="single elements: call pairwise_elements"):
        numba_cpu.pairwise(name, spec.packed(full_params(name)), 1, x, x, x if len(spec.inputs) == 3 else None,
                           np.ones(12) if spec.row_target else None, None, out, None, None, None, 1)
    assert not out.any()


# --- fusedloss.torch against torch.nn ------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRWISE)
def test_torch_forms_match_torch(name):
    import fusedloss.torch as flt

    spec = REGISTRY[name]
    ours = getattr(flt, spec.torch_name)
    theirs = getattr(F, spec.torch_name)
    for params in VARIANTS[name][:3]:
        xs, y = _data(name, seed=4)
        for reduction in ("mean", "none"):
            for dtype in (torch.float64, torch.float32):
                a = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
                b = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
                rest = [] if y is None else [torch.tensor(y, dtype=dtype)]
                la = ours(*a, *rest, reduction=reduction, **params)
                lb = theirs(*b, *rest, reduction=reduction, **params)
                assert la.dtype == lb.dtype and la.shape == lb.shape
                weights = torch.linspace(0.5, 1.5, lb.numel(), dtype=dtype).reshape(lb.shape)
                (la * weights).sum().backward()
                (lb * weights).sum().backward()
                tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
                torch.testing.assert_close(la, lb, **tol)
                for ta, tb in zip(a, b):
                    torch.testing.assert_close(ta.grad, tb.grad, **tol)


def test_torch_modules_and_broadcasting():
    import fusedloss.torch as flt

    xs, y = _data("triplet_margin", seed=6)
    a, p, n = (torch.tensor(x, requires_grad=True) for x in xs)
    m = flt.TripletMarginLoss(margin=0.5, p=1.0, swap=True)
    assert "swap=True" in repr(m)
    out = m(a, p[:1].expand_as(p), n)
    want = torch.nn.TripletMarginLoss(margin=0.5, p=1.0, swap=True)(a.detach(), p[:1].detach().expand_as(p), n.detach())
    torch.testing.assert_close(out, want)
    x1 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[1.0], [-1.0], [1.0], [1.0], [-1.0]], dtype=torch.float64)
    flt.MarginRankingLoss(margin=0.1)(x1, x2, t).backward()
    r1, r2 = x1.detach().clone().requires_grad_(), x2.detach().clone().requires_grad_()
    torch.nn.MarginRankingLoss(margin=0.1)(r1, r2, t).backward()
    torch.testing.assert_close(x2.grad, r2.grad)  # summed back over the broadcast axis
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):  # torch's own warning
        assert flt.CosineEmbeddingLoss(size_average=False).reduction == "sum"
    x, y = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    for shape in ((2, 4), (2, 1, 3), (2, 4, 1), None):  # var's shapes as torch takes them (None: a float)
        var = torch.rand(*shape, dtype=torch.float64) + 0.1 if shape else 0.7
        ours = [x.clone().requires_grad_(), y.clone().requires_grad_(), *([var.clone().requires_grad_()] if shape
                                                                          else [])]
        theirs = [v.detach().clone().requires_grad_() for v in ours]
        flt.GaussianNLLLoss(full=True)(*ours[:2], ours[2] if shape else var).backward()
        torch.nn.GaussianNLLLoss(full=True)(*theirs[:2], theirs[2] if shape else var).backward()
        for p_, q_ in zip(ours, theirs):
            torch.testing.assert_close(p_.grad, q_.grad)
    # a label that requires grad: torch's function runs the call (fusedloss.torch._twin), unless an option torch
    # lacks is given
    y = torch.ones(7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(flt.cosine_embedding_loss(a, p, y), torch.nn.functional.cosine_embedding_loss(a, p, y),
                               rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="target must not require grad"):
        flt.cosine_embedding_loss(a, p, y, backend="numpy")
    with pytest.raises(TypeError, match="a pairwise loss takes anchor, positive, negative"):
        flt.loss("triplet_margin", a, p)


# --- CUDA (the simulator in CI's cuda pass) ----------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("name", PAIRWISE)
def test_cuda_matches_reference(name):
    reason = backend_skip_reason("cuda")
    if reason:
        pytest.skip(reason)
    from numba import cuda

    loss = getattr(fl, name)
    xs, y = _data(name, N=5, D=3, seed=7)
    k = len(REGISTRY[name].inputs)
    rest = [] if y is None else [y]
    special = [v for v in VARIANTS[name] if not 0.0 < v.get("p", 2.0) < math.inf]  # p = +-inf, 0, < 0
    for params in VARIANTS[name][:2] + special:
        for dtype in (np.float64, np.float32):
            host = [x.astype(dtype) for x in xs]
            for reduction in ("mean", "none"):
                want, want_g = loss.value_and_grad(*host, *rest, reduction=reduction, backend="numpy", **params)
                value, grads = loss.value_and_grad(*(cuda.to_device(x) for x in host), *rest, reduction=reduction,
                                                   **params)
                if reduction == "none":
                    value = value.copy_to_host()
                tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
                np.testing.assert_allclose(value, want, **tol)
                assert len(grads) == k
                for g, w in zip(grads, want_g):
                    g = g.copy_to_host()
                    assert g.dtype == dtype
                    np.testing.assert_allclose(g, w, **tol)
