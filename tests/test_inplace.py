"""The in-place rule, the same on every host backend: an output shares no memory with anything the call reads,
except that ``grad_out`` may be exactly the prediction array in ``value_and_grad`` and ``grad`` (the gradient
then replaces it). Any other overlap raises before a backend runs, and leaves every input as it was."""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl

from conftest import HOST_BACKENDS, require_backend

ELEMENTWISE = ("mse", "binary_cross_entropy_with_logits")


def _elementwise(name, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), (rng.random(n) < 0.5).astype(np.float64)


def _multiclass(rows=5, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, classes)), rng.integers(0, classes, rows)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("method", ["value_and_grad", "grad"])
def test_grad_out_may_be_pred_itself(backend, name, method):
    require_backend(backend)
    loss = getattr(fl, name)
    p, y = _elementwise(name)
    want = loss.grad(p.copy(), y, backend=backend)
    out = getattr(loss, method)(p, y, grad_out=p, backend=backend)
    g = out[1] if method == "value_and_grad" else out
    assert g is p
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("options", [{}, {"confidence_penalty": 0.3}, {"softcap": 2.0},
                                     {"confidence_penalty": 0.3, "label_smoothing": 0.1, "z_loss": 1e-3},
                                     {"confidence_penalty": 0.3, "soft": True}], ids=str)
def test_multiclass_grad_out_may_be_the_logits(backend, options):
    """In place, the gradient's bits are those of a separate output (the rows whose pass 3 needs the logits
    again recompute what a separate output lets them keep)."""
    require_backend(backend)
    options = dict(options)
    x, t = _multiclass(classes=37)
    if options.pop("soft", False):
        t = np.random.default_rng(1).dirichlet(np.ones(x.shape[1]), size=x.shape[0])
    if t.ndim == 1:  # with metrics too (their rows have their own forms)
        want_v, want_g, want_m = fl.cross_entropy.value_and_grad(x.copy(), t, backend=backend,
                                                                 metrics=("accuracy", "entropy"), **options)
        xi = x.copy()
        vi, gi, mi = fl.cross_entropy.value_and_grad(xi, t, grad_out=xi, backend=backend,
                                                     metrics=("accuracy", "entropy"), **options)
        assert gi is xi and vi == want_v and dict(mi) == dict(want_m)
        np.testing.assert_array_equal(xi, want_g)
    want_v, want_g = fl.cross_entropy.value_and_grad(x.copy(), t, backend=backend, **options)
    v, g = fl.cross_entropy.value_and_grad(x, t, grad_out=x, backend=backend, **options)
    assert g is x and v == want_v
    np.testing.assert_array_equal(x, want_g)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_a_partly_overlapping_grad_out_is_refused(backend):
    """The case that gave garbage: grad_out one element further along pred's buffer."""
    require_backend(backend)
    b = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 0.0])
    before = b.copy()
    with pytest.raises(ValueError, match=r"mse: grad_out partly overlaps pred; pass a separate array"):
        fl.mse.grad(b[:5], np.zeros(5), grad_out=b[1:], backend=backend)
    np.testing.assert_array_equal(b, before)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_outputs_never_write_over_target_or_weights(backend, name):
    require_backend(backend)
    loss = getattr(fl, name)
    p, y = _elementwise(name)
    w = np.linspace(0.5, 1.5, p.size)
    y0, w0, p0 = y.copy(), w.copy(), p.copy()
    with pytest.raises(ValueError, match="grad_out shares memory with target"):
        loss.value_and_grad(p, y, grad_out=y, backend=backend)
    with pytest.raises(ValueError, match="grad_out shares memory with sample_weight"):
        loss.grad(p, y, sample_weight=w, grad_out=w, backend=backend)
    with pytest.raises(ValueError, match="hess_out shares memory with target"):
        loss.grad_hess(p, y, hess_out=y, backend=backend)
    with pytest.raises(ValueError, match="hess_out shares memory with sample_weight"):
        loss.grad_hess(p, y, sample_weight=w, hess_out=w, backend=backend)
    for got, want in ((y, y0), (w, w0), (p, p0)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_grad_hess_never_writes_into_pred(backend):
    """grad_hess reads pred after writing the gradient (the Hessian needs it), so pred is refused there."""
    require_backend(backend)
    p, y = _elementwise("mse")
    p0 = p.copy()
    with pytest.raises(ValueError, match=r"grad_out is pred itself, which only value_and_grad and grad may write"):
        fl.mse.grad_hess(p, y, grad_out=p, backend=backend)
    with pytest.raises(ValueError, match="hess_out is pred itself"):
        fl.mse.grad_hess(p, y, hess_out=p, backend=backend)
    x, t = _multiclass()
    x0 = x.copy()
    with pytest.raises(ValueError, match="grad_hess cannot write into the logits .*: hess_out shares memory"):
        fl.cross_entropy.grad_hess(x, t, hess_out=x, backend=backend)
    with pytest.raises(ValueError, match="grad_hess cannot write into the logits .*: grad_out shares memory"):
        fl.cross_entropy.grad_hess(x, t, grad_out=x, backend=backend)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_multiclass_outputs_never_write_over_soft_targets_or_weights(backend):
    require_backend(backend)
    x, _ = _multiclass()
    q = np.full_like(x, 0.25)
    buf = np.ones(x.size + x.shape[0])
    w = buf[: x.shape[0]]  # the weights, and a gradient buffer that starts on them
    g = buf[: x.size].reshape(x.shape)
    q0, w0 = q.copy(), w.copy()
    with pytest.raises(ValueError, match="grad_out shares memory with target"):
        fl.cross_entropy.value_and_grad(x, q, grad_out=q, backend=backend)
    with pytest.raises(ValueError, match="grad_out shares memory with sample_weight"):
        fl.cross_entropy.grad(x, q, sample_weight=w, grad_out=g, backend=backend)
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_outputs_never_write_over_inputs_as_given(backend):
    """A strided prediction, and vector parameters, are read through converted copies: an output that overlaps
    them as the caller gave them would still change them."""
    require_backend(backend)
    buf = np.arange(20.0) / 10
    pred = buf[::2]
    with pytest.raises(ValueError, match="grad_out shares memory with pred"):
        fl.mse.value_and_grad(pred, np.zeros(10), grad_out=buf[:10], backend=backend)
    x, t = _multiclass(4, 3)
    g = np.ones((4, 3))
    with pytest.raises(ValueError, match="grad_out shares memory with class_weight"):
        fl.cross_entropy.value_and_grad(x, t, class_weight=g[0], grad_out=g, backend=backend)
    f = np.asfortranarray(x)  # read through a C-contiguous copy; its transpose is a C-contiguous array
    with pytest.raises(ValueError, match="grad_out shares memory with pred"):
        fl.cross_entropy.grad(f, t, grad_out=f.T.reshape(4, 3), backend=backend)
    np.testing.assert_array_equal(f, x)
    h = np.full((4, 3), 2.0)
    with pytest.raises(ValueError, match="hess_out shares memory with pos_weight"):
        fl.binary_cross_entropy_with_logits.grad_hess(x, np.ones((4, 3)), pos_weight=h[3], hess_out=h,
                                                      backend=backend)
    np.testing.assert_array_equal(buf, np.arange(20.0) / 10)
    np.testing.assert_array_equal(g, 1.0)
    np.testing.assert_array_equal(h, 2.0)


# Outputs the call allocates: the arrays a call returns fresh share one allocation (fusedloss._validate:
# fresh_outputs), are distinct elements of it, and hold what the same call writes into arrays it is given.
def _fresh_cases():
    x, y = _elementwise("mse", n=1000)
    logits, labels = _multiclass(rows=300, classes=7)
    a, b, c = (np.random.default_rng(k).normal(size=(50, 8)) for k in range(3))
    return [
        ("mse grad_hess", lambda **o: fl.mse.grad_hess(x, y, **o), ("grad_out", "hess_out"), x),
        ("bce grad_hess", lambda **o: fl.binary_cross_entropy_with_logits.grad_hess(x, (y > 0).astype(float), **o),
         ("grad_out", "hess_out"), x),
        ("cross_entropy grad_hess", lambda **o: fl.cross_entropy.grad_hess(logits, labels, **o),
         ("grad_out", "hess_out"), logits),
        ("triplet_margin grad", lambda **o: fl.triplet_margin.grad(a, b, c, **o), ("grad_out",), a),
        ("mse grad_hess of a 0-d array", lambda **o: fl.mse.grad_hess(x[0, ...], y[0, ...], **o),
         ("grad_out", "hess_out"), x[0, ...]),
    ]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("case", range(5))
def test_fresh_outputs_share_one_allocation_and_hold_the_given_outputs_values(backend, case):
    require_backend(backend)
    what, call, outs, like = _fresh_cases()[case]
    with fl.use_backend(backend):
        fresh = call()
        if outs == ("grad_out",):  # one keyword taking a tuple of arrays, one per input
            given = tuple(np.full_like(like, np.nan) for _ in fresh)
            call(grad_out=given)
        else:
            given = tuple(np.full_like(like, np.nan) for _ in outs)
            call(**dict(zip(outs, given)))
    assert len(fresh) >= 2
    bases = {id(a.base) for a in fresh}
    assert len(bases) == 1 and fresh[0].base is not None, f"{what}: outputs from separate allocations"
    for k, (f, g) in enumerate(zip(fresh, given)):
        assert f.shape == like.shape and f.flags.c_contiguous and f.flags.writeable
        np.testing.assert_array_equal(f, g, err_msg=f"{what}: output {k}")
    before = [f.copy() for f in fresh]
    fresh[0][...] = -7.0  # distinct elements: writing one output leaves the others alone
    for f, b in zip(fresh[1:], before[1:]):
        np.testing.assert_array_equal(f, b)
    # handed back as the next call's outputs (allocate once, reuse): accepted as arrays that do not overlap
    with fl.use_backend(backend):
        again = call(grad_out=tuple(fresh)) if outs == ("grad_out",) else call(**dict(zip(outs, fresh)))
    for a, f, b in zip(again, fresh, before):
        assert a is f
        np.testing.assert_array_equal(f, b)
