"""Code as users write it: must type-check against the stub (mypy, run by tests/test_typing.py). Never run."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

import fusedloss as fl

pred = np.zeros(10, dtype=np.float32)
target = np.zeros(10, dtype=np.float32)

value: float = fl.mse(pred, target)
per_element: NDArray[np.float32] = fl.mse(pred, target, reduction="none")
value = fl.huber(pred, target, delta=0.5, reduction="sum", sample_weight=np.ones(10))
loss, grad = fl.huber.value_and_grad(pred, target, delta=0.5, grad_out=np.empty_like(pred))
value = loss
g, h = fl.log_cosh.grad_hess(pred, target, hessian="ones")
value = fl.poisson_nll(pred, target, log_input=False, eps=1e-6)
value = fl.quantile(pred, [0.0] * 10, quantile=0.9, backend="numpy")

logits = np.zeros((4, 3), dtype=np.float32)
labels = np.zeros(4, dtype=np.int64)
value = fl.cross_entropy(logits, labels, label_smoothing=0.1, ignore_index=-1, class_weight=[1.0, 2.0, 1.0])
value = fl.cross_entropy(logits, labels, softcap=None, z_loss=1e-4)
value = fl.multi_margin(logits, labels, p=2, margin=0.5)
value, dlogits, metrics = fl.cross_entropy.value_and_grad(logits, labels, metrics=("accuracy", "top5", "ece15"))
accuracy: float = metrics["accuracy"]
value, metrics = fl.cross_entropy(logits, labels, metrics="nll")

reduction = "mean"  # a str variable, not a literal: either type comes back
either: float | NDArray[np.float32] = fl.mae(pred, target, reduction=reduction)

state = fl.mse.partial(pred, target)
merged = fl.merge([state, state])
some_loss: fl.Loss = fl.tweedie
with fl.use_backend("numpy"):
    fl.set_num_threads(1)
names = [info["name"] for info in fl.losses()]
kinds = [info.kind for info in fl.losses()]
