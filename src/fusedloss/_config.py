"""Backend choice and thread count.

Backend precedence, first that is set wins: the call's ``backend=`` argument, then a ``use_backend(...)``
context, then ``set_backend(...)``, then the ``FUSEDLOSS_BACKEND`` environment variable (read at import),
then ``"auto"``.

Threads: ``set_num_threads(n)``, else ``FUSEDLOSS_NUM_THREADS``, else every core this process may use.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

BACKEND_NAMES = ("auto", "cpp", "numba", "numpy", "cuda")

_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("fusedloss_backend", default=None)
_global_backend: str | None = None
_num_threads: int | None = None


def check_backend_name(name, what="backend"):
    if not isinstance(name, str) or name not in BACKEND_NAMES:
        raise ValueError(f"{what}: expected one of {', '.join(map(repr, BACKEND_NAMES))}, got {name!r}")
    return name


def _env_backend():
    value = os.environ.get("FUSEDLOSS_BACKEND")
    if not value:
        return None
    return check_backend_name(value.strip().lower(), "FUSEDLOSS_BACKEND")


_env_backend_value = _env_backend()


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend ("auto", "cpp", "numba", "numpy", "cuda"; None clears it)."""
    global _global_backend
    _global_backend = None if name is None else check_backend_name(name)


def get_backend() -> str:
    """The backend name a call without ``backend=`` would ask for (before "auto" is resolved)."""
    return _context_backend.get() or _global_backend or _env_backend_value or "auto"


@contextlib.contextmanager
def use_backend(name: str):
    """Use ``name`` for calls inside the ``with`` block (this thread / async task only)."""
    token = _context_backend.set(check_backend_name(name))
    try:
        yield
    finally:
        _context_backend.reset(token)


_default_threads: int | None = None


def default_num_threads() -> int:
    """Every core this process may use (read once: it is on every call's path)."""
    global _default_threads
    if _default_threads is None:
        try:
            _default_threads = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            _default_threads = max(1, os.cpu_count() or 1)
    return _default_threads


def _env_threads():
    value = os.environ.get("FUSEDLOSS_NUM_THREADS")
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"FUSEDLOSS_NUM_THREADS: expected a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"FUSEDLOSS_NUM_THREADS: expected a positive integer, got {value!r}")
    return n


_env_threads_value = _env_threads()


def set_num_threads(n: int | None) -> None:
    """Threads used by the compiled CPU backends (None: back to the default, all cores)."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    # on every call's path: the default is read once, then without a second call
    return _num_threads or _env_threads_value or _default_threads or default_num_threads()
