"""The C++ backend: the compiled kernels of ``fusedloss._core`` behind the backend interface.

``elementwise`` IS ``_core.elementwise`` and ``multiclass`` IS ``_core.multiclass`` (no Python frame in
between: this is the hot path). They follow the kernel contract in ``fusedloss.backends`` for float32 and
float64; a wrong dtype raises TypeError (the arrays are never converted), a wrong length, a read-only output
or a label outside [0, C) that is not ignore_index ValueError. An array at an address that is not a multiple of
its item size (C-contiguous, but the kernels may not read a float there) is read from an aligned copy, and an
output like that is computed into an aligned buffer and then copied into it (cpp/src/aligned.hpp).

Importing this module fails with ImportError when the extension was not built; the backend registry then
records why and "auto" skips it.

threadpoolctl: when it is installed, importing this module registers a controller for the extension, so
that ``threadpool_limits(n)`` (and ``threadpool_info()``) reach fusedloss's thread pool as they reach BLAS and
OpenMP: the limit caps ``fusedloss.get_num_threads()`` while its block runs.
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .. import _core
from .._spec import REGISTRY

NAME = "cpp"
DEVICE = False

_SUPPORTED = {
    **{name: "elementwise" for name in _core.supported_losses()},
    **{name: "multiclass" for name in _core.supported_multiclass_losses()},
    **({"ctc": "sequence"} if hasattr(_core, "ctc") else {}),
    **{name: "pairwise" for name in getattr(_core, "supported_pairwise_losses", list)()},
    # the overlap passes are the same for every overlap loss (the losses differ in the Python combination of the sums)
    **({name: "overlap" for name, spec in REGISTRY.items() if spec.kind == "overlap"}
       if hasattr(_core, "overlap_sums") else {}),
}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # a tuple: `in` compares with ==, so types match too
_BUILD = _core.build_info()
_BUILD_TEXT = (
    f"{_BUILD['compiler']}, {_BUILD['build_type']}, "
    f"threads: {_BUILD['threads'].split(' (')[0]}, "
    f"SIMD {_BUILD.get('simd', _BUILD['simd_flags'])} (built: {', '.join(_BUILD.get('simd_levels', ['baseline']))};"
    f" FUSEDLOSS_SIMD picks one)"
)

elementwise = _core.elementwise
multiclass = _core.multiclass
# elementwise takes float32 outputs for float64 arrays: computed in float64 and stored rounded (the objectives of
# a booster that keeps float32 derivatives: _boosting_math._grad_hess)
NARROW_OUTPUTS = True
# elementwise with the binary metrics (_binary_metrics); None in an extension built without it
elementwise_metrics = getattr(_core, "elementwise_metrics", None)
multiclass_metrics = getattr(_core, "multiclass_metrics", None)  # multiclass with the per-row metrics (_logit_metrics)
ctc = getattr(_core, "ctc", None)  # the CTC contract of fusedloss._ctc (cpp/src/ctc_binding.cpp)
pairwise = getattr(_core, "pairwise", None)  # the pairwise contract of fusedloss._pairwise (pairwise_binding.cpp)
pairwise_elements = getattr(_core, "pairwise_elements", None)  # its one-element rows, elementwise (same file)
overlap_sums = getattr(_core, "overlap_sums", None)  # the overlap contract of fusedloss._overlap
overlap_grad = getattr(_core, "overlap_grad", None)
array_sum = getattr(_core, "sum", None)  # compensated float64 sum of a contiguous float array
extremes = getattr(_core, "extremes", None)  # (min, max) of a contiguous float array, NaN skipped: domain checks
extremes_and_sum = getattr(_core, "extremes_and_sum", None)  # (min, max, sum) in one pass: the weights of a mean
# Wakes the pool's workers as a call starts checking its arguments, so that they join its kernel at once
# (pool.hpp): for calls of at least PREWAKE_MIN elements, from which a kernel runs on 2 threads or more
# (reduce.hpp: threads_for gives one thread per parallel_threshold elements).
pool_prewake = getattr(_core, "pool_prewake", None)
PREWAKE_MIN = 2 * int(_BUILD.get("parallel_threshold", 1 << 15))
# Below this many elements a kernel is short (a millisecond or less): the woken workers wait for it on their
# cores, where other threads (a library's spinning OpenMP threads) would otherwise take them (pool.cpp).
PREWAKE_SHORT = 1 << 21


def _register_threadpoolctl() -> None:
    try:
        import threadpoolctl
    except ImportError:
        return
    if any(c.__name__ == "FusedlossController" for c in getattr(threadpoolctl, "_ALL_CONTROLLERS", ())):
        return  # a re-import of this module (tests reload backends)

    class FusedlossController(threadpoolctl.LibController):
        """fusedloss's thread pool, found by the symbol its extension exports for this purpose."""

        user_api = "fusedloss"
        internal_api = "fusedloss"
        filename_prefixes = ("_core",)
        check_symbols = ("fusedloss_threadpool_api",)

        def get_num_threads(self):
            return _config.get_num_threads()

        def set_num_threads(self, num_threads):
            _config.set_thread_limit(num_threads)

        def get_version(self):
            return _core.__version__

    threadpoolctl.register(FusedlossController)


_register_threadpoolctl()


def info() -> dict:
    return {
        "version": _BUILD["version"],
        "threads": _config.get_num_threads(),
        "build": _BUILD_TEXT,
        "pool_workers": _core.pool_workers(),
        "pool_late_calls": _core.pool_state()["late_calls"],  # calls that found a helper preempted (back-off)
        "pool_moves": _core.pool_state()["moves"],  # woken workers that left their waker's CPU
        "cpu_features": " ".join(_BUILD["cpu_features"]),
        "simd": _BUILD.get("simd", "baseline"),
    }


def supports(spec, dtype) -> bool:
    return _SUPPORTED.get(spec.name) == spec.kind and dtype in _DTYPES


def build_info() -> dict:
    """Everything the extension knows about its build (a copy)."""
    return dict(_BUILD)
