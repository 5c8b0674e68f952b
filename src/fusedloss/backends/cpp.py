"""The C++ backend: the compiled kernels of ``fusedloss._core`` behind the backend interface.

``elementwise`` IS ``_core.elementwise`` and ``multiclass`` IS ``_core.multiclass`` (no Python frame in
between: this is the hot path). They follow the kernel contract in ``fusedloss.backends`` for float32 and
float64; a wrong dtype raises TypeError (the arrays are never converted), a wrong length, a read-only output
or a label outside [0, C) that is not ignore_index ValueError.

Importing this module fails with ImportError when the extension was not built; the backend registry then
records why and "auto" skips it.
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .. import _core

NAME = "cpp"
DEVICE = False

_SUPPORTED = {
    **{name: "elementwise" for name in _core.supported_losses()},
    **{name: "multiclass" for name in _core.supported_multiclass_losses()},
    **({"ctc": "sequence"} if hasattr(_core, "ctc") else {}),
}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # a tuple: `in` compares with ==, so types match too
_BUILD = _core.build_info()
_BUILD_TEXT = (
    f"{_BUILD['compiler']}, {_BUILD['build_type']}, "
    f"OpenMP {'on' if _BUILD['openmp'] else 'off'}, "
    f"SIMD {_BUILD.get('simd', _BUILD['simd_flags'])} (built: {', '.join(_BUILD.get('simd_levels', ['baseline']))};"
    f" FUSEDLOSS_SIMD picks one)"
)

elementwise = _core.elementwise
multiclass = _core.multiclass
ctc = getattr(_core, "ctc", None)  # the CTC contract of fusedloss._ctc (cpp/src/ctc_binding.cpp)


def info() -> dict:
    return {
        "version": _BUILD["version"],
        "threads": _config.get_num_threads(),
        "build": _BUILD_TEXT,
        "openmp": _BUILD["openmp"],
        "max_threads": _core.max_threads(),
        "cpu_features": " ".join(_BUILD["cpu_features"]),
        "simd": _BUILD.get("simd", "baseline"),
    }


def supports(spec, dtype) -> bool:
    return _SUPPORTED.get(spec.name) == spec.kind and dtype in _DTYPES


def build_info() -> dict:
    """Everything the extension knows about its build (a copy)."""
    return dict(_BUILD)
