"""fusedloss: fused loss + gradient (+ Hessian) kernels with one API over C++, Numba, Numba-CUDA and NumPy.

>>> import numpy as np, fusedloss as fl
>>> pred, target = np.array([0.5, 2.0]), np.array([0.0, 2.5])
>>> fl.mse(pred, target)
0.25
>>> value, grad = fl.huber.value_and_grad(pred, target, delta=0.5)
"""

from . import sym
from ._config import get_backend, get_num_threads, set_backend, set_num_threads, use_backend
from ._dispatch import Loss
from ._losses import LOSSES
from ._spec import losses
from ._custom import elementwise_loss
from ._state import LossState, merge
from ._version import __version__
from .backends import BackendUnavailable, backends

globals().update(LOSSES)

__all__ = [
    "BackendUnavailable", "Loss", "LossState", "backends", "elementwise_loss", "get_backend", "get_num_threads",
    "losses", "merge", "set_backend", "set_num_threads", "sym", "use_backend", *LOSSES,
]


# Names that a function of PyTorch's or scikit-learn's holds with another meaning: fusedloss's loss of that
# kind has another name, and the old spelling says where to go instead of silently computing something else.
_OTHER_NAMES = {
    "kl_div": "fusedloss.kl_div_with_logits (logits in: KL(target || softmax(logits / T)) per row); PyTorch's "
              "kl_div takes log-probabilities, see fusedloss.torch.kl_div",
}


def __getattr__(name: str):
    if name in _OTHER_NAMES:
        raise AttributeError(f"module 'fusedloss' has no attribute {name!r}: use {_OTHER_NAMES[name]}")
    raise AttributeError(f"module 'fusedloss' has no attribute {name!r}")

