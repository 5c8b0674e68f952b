"""Errors for the mistakes users actually make name the fix: float class labels, loss parameters given by
position, torch tensors and device arrays given to the NumPy API, object arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

P = np.linspace(-1.0, 1.0, 6)
Y = np.linspace(1.0, -1.0, 6)
LOGITS = np.random.default_rng(0).normal(size=(4, 3))
LABELS = np.array([0, 2, 1, 2])


def _raises(exc, *parts):
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


# --- class labels given as floats ------------------------------------------------------------------------


def test_float_class_labels_for_cross_entropy_say_cast_to_int64():
    with _raises(ValueError, "cross_entropy", "soft labels", "logits' shape (4, 3)", "got (4,)",
                 "target.astype(np.int64)"):
        fl.cross_entropy(LOGITS, LABELS.astype(np.float64))
    with _raises(ValueError, "target.astype(np.int64)"):
        fl.cross_entropy.value_and_grad(LOGITS, LABELS.astype(np.float32))
    # the fix works, and soft targets of the logits' shape are still taken as probabilities
    assert fl.cross_entropy(LOGITS, LABELS.astype(np.float64).astype(np.int64)) == fl.cross_entropy(LOGITS, LABELS)
    fl.cross_entropy(LOGITS, np.eye(3)[LABELS])


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "multiclass" and s.hard_labels])
def test_float_class_labels_hint_for_every_hard_label_loss(name):
    with _raises((TypeError, ValueError), name, "astype(np.int64)"):
        getattr(fl, name)(LOGITS, LABELS.astype(np.float64))


def test_probabilities_for_a_hard_label_loss_point_to_cross_entropy():
    with _raises(TypeError, "categorical_focal", "hard labels only", "cross_entropy"):
        fl.categorical_focal(LOGITS, np.eye(3)[LABELS])


# --- parameters by position ----------------------------------------------------------------------------------


def test_a_positional_parameter_names_its_keyword():
    with _raises(TypeError, "huber", "keyword-only", "fl.huber(pred, target, delta=0.5)"):
        fl.huber(P, Y, 0.5)
    with _raises(TypeError, "fl.huber.value_and_grad(pred, target, delta=0.5)"):
        fl.huber.value_and_grad(P, Y, 0.5)
    with _raises(TypeError, "fl.quantile.grad(pred, target, quantile=0.9)"):
        fl.quantile.grad(P, Y, 0.9)
    with _raises(TypeError, "fl.binary_focal.grad_hess(pred, target, alpha=0.5, gamma=1.0)"):
        fl.binary_focal.grad_hess(P, (Y > 0).astype(float), 0.5, 1.0)
    with _raises(TypeError, "fl.cross_entropy(pred, target, class_weight=None, ignore_index=-1)"):
        fl.cross_entropy(LOGITS, LABELS, None, -1)


def test_a_positional_reduction_names_reduction():
    with _raises(TypeError, "mse", "reduction, sample_weight and backend are keyword-only",
                 "fl.mse(pred, target, reduction='sum')"):
        fl.mse(P, Y, "sum")
    with _raises(TypeError, "fl.huber(pred, target, reduction='none')"):
        fl.huber(P, Y, "none")
    with _raises(TypeError, "mse", "keyword-only"):
        fl.mse(P, Y, 1, 2)


# --- torch tensors, device arrays, object arrays ------------------------------------------------------------------


def test_torch_tensors_that_require_grad_point_to_fusedloss_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    p = torch.tensor(P, requires_grad=True)
    with _raises(TypeError, "huber", "pred is a torch.Tensor that requires grad", "fusedloss.torch",
                 "pred.detach()"):
        fl.huber(p, torch.tensor(Y))
    with _raises(TypeError, "target is a torch.Tensor that requires grad"):
        fl.mse(P, torch.tensor(Y, requires_grad=True))
    with _raises(TypeError, "NumPy cannot view", "fusedloss.torch", ".float().numpy()"):
        fl.mse(torch.tensor(P).bfloat16(), Y)


def test_cpu_tensors_without_grad_are_read_as_numpy_arrays():
    """A CPU tensor that needs no gradient is a NumPy view (no copy): the same value as the arrays, NumPy
    results."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    assert fl.huber(torch.tensor(P), torch.tensor(Y), delta=0.5) == fl.huber(P, Y, delta=0.5)
    g = fl.mse.grad(torch.tensor(P), Y)
    assert isinstance(g, np.ndarray)
    np.testing.assert_array_equal(g, fl.mse.grad(P, Y))
    assert fl.cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS)) == fl.cross_entropy(LOGITS, LABELS)
    assert fl.mse(P, Y, sample_weight=torch.ones(6)) == fl.mse(P, Y)


class DeviceArray:
    """What a CuPy array or a CUDA tensor looks like to the host path: it has __cuda_array_interface__."""

    __cuda_array_interface__ = {"shape": (6,), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.parametrize("call, what", [
    (lambda: fl.huber(P, DeviceArray()), "target"),
    (lambda: fl.mse(P, Y, sample_weight=DeviceArray()), "sample_weight"),
    (lambda: fl.cross_entropy(LOGITS, DeviceArray()), "target"),
])
def test_a_device_array_with_a_host_pred_names_both_sides(call, what):
    with _raises(TypeError, f"{what} is a device array", "DeviceArray", "pred is a host array",
                 "cupy.asnumpy", "device array too"):
        call()


def test_an_object_array_says_what_was_given_and_what_is_expected():
    with _raises(TypeError, "huber", "target must be numeric", "like pred: float64, shape (6,)",
                 "a numpy array of dtype object"):
        fl.huber(P, np.array([object()] * 6))
    with _raises(TypeError, "target must be numeric", "builtins.list", "dtype object"):
        fl.huber(P, [object()] * 6)


def test_a_torch_name_with_another_meaning_points_to_ours():
    """fusedloss's KL loss takes logits, PyTorch's kl_div log-probabilities: the NumPy API has no kl_div, and
    the name says which function to use."""
    with pytest.raises(AttributeError, match=r"kl_div_with_logits.*fusedloss\.torch\.kl_div"):
        fl.kl_div
    with pytest.raises(AttributeError, match="no attribute 'nope'$"):
        fl.nope
