"""The Numba-CUDA backend's target: whether its kernels can run here, and what differs on the simulator.

``numba_cuda.py`` imports this module first, and its parts that compile kernels import it (directly or through
``_cuda_stream``) before they compile anything, so none of them imports where CUDA cannot run: importing raises
ImportError saying why (``numba-cuda`` not installed; no GPU and the simulator off; a NumPy the CUDA target
cannot compile with, ``target_error``), and the backend registry reports that reason. ``fusedloss`` itself never
imports the backend until a call asks for it.

On the simulator (``NUMBA_ENABLE_CUDASIM=1``, how CI runs the kernels: ``SIMULATOR``) the kernels run as Python;
``tuple_setitem`` is Numba's intrinsic on a GPU and its plain-Python equivalent there.
"""

from __future__ import annotations

import importlib.util

import numpy as np

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError("numba-cuda is not installed (pip install numba-cuda, or the 'cuda' extra)")

from numba import cuda  # noqa: E402

SIMULATOR = bool(cuda.config.ENABLE_CUDASIM)
if not SIMULATOR and not cuda.is_available():
    raise ImportError("no CUDA GPU found (numba.cuda.is_available() is False); "
                      "set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels on the simulator")


def target_error(load=None) -> str | None:
    """Why Numba-CUDA cannot compile for the GPU here, or None. Its CUDA target loads its NumPy support only at
    the first compilation; a NumPy that numba-cuda does not support fails there (numba-cuda 0.30 with NumPy 2.5,
    which removed ``np.row_stack``). Loading it now lets the backend registry report the reason instead of every
    call failing. ``load``: what to run (tests pass a stand-in)."""
    import importlib

    try:
        (load or (lambda: importlib.import_module("numba.cuda.np.arrayobj")))()
    except Exception as exc:  # whatever the target raises, the backend cannot compile
        from importlib.metadata import PackageNotFoundError, version

        try:
            which = f"numba-cuda {version('numba-cuda')}"
        except PackageNotFoundError:
            which = "numba-cuda"
        return (f"{which} cannot compile with NumPy {np.__version__} ({type(exc).__name__}: {exc}); install a "
                f"NumPy that {which} supports (for example 'numpy<{np.__version__.rsplit('.', 1)[0]}') or a "
                f"numba-cuda release that supports this NumPy")
    return None


if not SIMULATOR:
    _why = target_error()
    if _why:
        raise ImportError(_why)

if SIMULATOR:  # the simulator runs kernels as Python, where Numba's intrinsic cannot be called
    def tuple_setitem(t, k, v):
        return t[:k] + (v,) + t[k + 1:]
else:
    from numba.cpython.unsafe.tuple import tuple_setitem  # noqa: E402,F401
