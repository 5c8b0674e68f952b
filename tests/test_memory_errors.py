"""Inputs too large to allocate: a MemoryError that says which array, its shape and size, and the way out,
for every elementwise and multiclass loss of the registry (NumPy's own says only "Unable to allocate").

The inputs are broadcast views (no memory of their own) of 2^46 elements: whatever a call must allocate for
them (a contiguous copy, an output) is far beyond any machine, so the error is certain and immediate.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

HUGE = 2**46
CASES = [name for name, spec in REGISTRY.items() if spec.kind in ("elementwise", "multiclass")]


def _huge_call(name):
    """A call on broadcast views of HUGE elements (rows, for multiclass losses), and pred's shape."""
    spec = REGISTRY[name]
    loss = getattr(fl, name)
    method = loss.grad if spec.differentiable else (lambda *a, **k: loss(*a, reduction="none", **k))
    if spec.kind == "elementwise":
        pred = np.broadcast_to(np.float64(0.5), (HUGE,))
        return lambda: method(pred, np.broadcast_to(np.float64(1.0), (HUGE,)), backend="numpy"), (HUGE,)
    C = 3
    x = np.broadcast_to(np.float64(0.0), (HUGE, C))
    target = (np.broadcast_to(np.int64(0), (HUGE,)) if spec.hard_labels
              else np.broadcast_to(np.float64(1.0 / C), (HUGE, C)))
    return lambda: method(x, target, backend="numpy"), (HUGE, C)


@pytest.mark.parametrize("name", CASES)
def test_huge_input_says_what_could_not_be_allocated(name):
    call, shape = _huge_call(name)
    with pytest.raises(MemoryError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{name}: cannot allocate ")
    assert "TiB" in msg or "PiB" in msg, msg
    assert str(shape) in msg and "pred" in msg, msg
    assert f"fl.{name}" in msg and "reduction='sum'" in msg, msg


def test_scalar_class_vector_over_a_huge_class_axis():
    """A scalar class_weight is expanded to one value per class: with C = 2^46 that expansion (or the copy of
    the logits before it) is what fails, and the message says so."""
    x = np.broadcast_to(np.float32(0.0), (1, HUGE))
    with pytest.raises(MemoryError, match=r"cross_entropy: cannot allocate .*\(1, 70368744177664\)"):
        fl.cross_entropy(x, np.zeros(1, np.int64), class_weight=2.0, backend="numpy")


def test_partial_results_say_what_could_not_be_allocated():
    """The message comes from the call itself, so every path into it has it: ``partial`` here (fusedloss.dask
    and fusedloss.torch call the same place), not only the four public methods."""
    pred = np.broadcast_to(np.float64(0.5), (HUGE,))
    with pytest.raises(MemoryError, match=r"^mse: cannot allocate .*\(70368744177664,\)"):
        fl.mse.partial(pred, np.broadcast_to(np.float64(1.0), (HUGE,)), backend="numpy")


def test_ctc_says_what_could_not_be_allocated():
    """CTC has its own call path: a huge logits view gives the same message, and huge targets are refused by
    their shape before anything copies them."""
    x = np.broadcast_to(np.float64(0.0), (HUGE, 2, 4))
    targets, il, tl = np.array([[1, 2], [3, 3]]), np.array([HUGE, HUGE]), np.array([2, 2])
    for call in (fl.ctc, fl.ctc.grad, fl.ctc.partial):
        with pytest.raises(MemoryError, match=r"^ctc: cannot allocate .* copy of pred .*\(70368744177664, 2, 4\)"):
            call(x, targets, il, tl, backend="numpy")
    small = np.zeros((6, 2, 4))
    with pytest.raises(ValueError, match=r"concatenated targets must hold sum\(target_lengths\) = 4 labels, got 70368744177664"):
        fl.ctc(small, np.broadcast_to(np.int64(1), (HUGE,)), np.array([6, 6]), tl, backend="numpy")


def test_huge_target_or_weight_views_are_refused_by_shape_before_a_copy():
    """A view that does not have pred's shape is refused for its shape, naming it, not for the copy that a
    conversion to pred's dtype would have to allocate."""
    p = np.zeros(3)
    with pytest.raises(ValueError, match=r"mse: sample_weight must have pred's shape \(3,\).*\(70368744177664,\)"):
        fl.mse(p, p, sample_weight=np.broadcast_to(np.int64(1), (HUGE,)), backend="numpy")
    with pytest.raises(ValueError, match=r"mse: pred and target must have the same shape.*\(70368744177664,\)"):
        fl.mse.grad(p, np.broadcast_to(np.float32(1.0), (HUGE,)), backend="numpy")
