"""The Numba-CUDA backend's pairwise losses (``pairwise``; the contract is ``fusedloss._pairwise``'s, the interface
``numba_cuda.py``'s): one thread per row, rows grid-strided over the threads, ``row`` bound to the loss's
``_pairwise_rows.<loss>_row`` compiled as a device function (the Numba CPU backend compiles the same one). Each
row writes only its own loss and gradients. Launched and allocated on the current stream (``_cuda_stream``).
"""

from __future__ import annotations

from numba import cuda

from . import _jit
from ._cuda_reduce import TPB, _blocks
from ._cuda_stream import _stream

_KERNELS: dict = {}  # ("pairwise", loss) -> its kernel


def _pairwise_kernel(x1, x2, x3, y, has_y, D, prm, gscale, want_grad, loss_out, g1, g2, g3):
    """Rows grid-strided over the threads; ``row`` is bound per loss (module docstring)."""
    for i in range(cuda.grid(1), loss_out.shape[0], cuda.gridsize(1)):
        yi = y[i] if has_y else 0.0
        gn = gscale[i] if want_grad else 0.0
        loss_out[i] = row(x1, x2, x3, i * D, D, yi, prm, gn, want_grad, g1, g2, g3)  # noqa: F821


def _build_pairwise(loss: str):
    kernel = _jit.pairwise_kernel(loss, _pairwise_kernel, __file__, globals(), cuda.jit(device=True),
                                  cuda.jit(cache=True))
    _KERNELS[("pairwise", loss)] = kernel
    return kernel


def pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads):
    """The pairwise contract on device arrays (``y``, ``gscale`` and ``loss_out`` float64 device arrays)."""
    N = loss_out.shape[0]
    if N == 0:
        return None
    kernel = _KERNELS.get(("pairwise", loss)) or _build_pairwise(loss)
    args = _jit.pairwise_args(packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, x1, loss_out)
    kernel[_blocks(N), TPB, _stream()](*args)
    return None

