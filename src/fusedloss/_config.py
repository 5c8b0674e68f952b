"""Backend choice and thread count.

Backend precedence, first that is set wins: the call's ``backend=`` argument, then a ``use_backend(...)``
context, then ``set_backend(...)``, then the ``FUSEDLOSS_BACKEND`` environment variable (read at import),
then ``"auto"``.

Threads: see ``get_num_threads``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

from .backends import REGISTRY as BACKENDS


_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("fusedloss_backend", default=None)
_global_backend: str | None = None
_num_threads: int | None = None


def backend_names() -> tuple[str, ...]:
    """The names a backend may be asked for: "auto" and every registered backend."""
    return ("auto", *BACKENDS)


def check_backend_name(name, what="backend"):
    if not isinstance(name, str) or (name != "auto" and name not in BACKENDS):
        raise ValueError(f"{what}: expected one of {', '.join(map(repr, backend_names()))}, got {name!r}")
    return name


def _env_backend():
    value = os.environ.get("FUSEDLOSS_BACKEND")
    if not value:
        return None
    return check_backend_name(value.strip().lower(), "FUSEDLOSS_BACKEND")


_env_backend_value = _env_backend()


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend (a name of ``backend_names()``; None clears it)."""
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


def default_num_threads() -> int:
    """Every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_positive_int(name: str, first_of_list: bool = False):
    """A positive integer from the environment, or None when unset. OMP_NUM_THREADS may be a list
    ("4,2": threads per nesting level); its first entry counts."""
    value = os.environ.get(name)
    if not value or not value.strip():
        return None
    text = value.split(",")[0].strip() if first_of_list else value.strip()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        if first_of_list:  # OpenMP's own variable: an unusable value is ignored, as OpenMP runtimes do
            return None
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return n


_env_threads_value = _env_positive_int("FUSEDLOSS_NUM_THREADS")
_omp_threads_value = _env_positive_int("OMP_NUM_THREADS", first_of_list=True)
_cores = default_num_threads()
_num_threads: int | None = None  # set_num_threads
_limit: int | None = None  # threadpoolctl's threadpool_limits (a cap over everything else)


def _uncapped() -> int:
    return _num_threads or _env_threads_value or _omp_threads_value or _cores


def set_num_threads(n: int | None) -> None:
    """Threads the compiled CPU backends may use (None: back to the default). See ``get_num_threads``."""
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads: expected a positive integer or None, got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    """The most threads a kernel call may use.

    First that is set wins: ``set_num_threads(n)``, ``FUSEDLOSS_NUM_THREADS``, ``OMP_NUM_THREADS`` (its
    first entry), else every core this process may use. ``threadpoolctl.threadpool_limits(n)`` caps it
    while its block runs, and ``fusedloss.torch`` caps each call at ``torch.get_num_threads()``. A call
    also uses fewer threads when it has little work (about one per 32K elements on the cpp backend).
    """
    # on every call's path: plain reads, no calls
    n = _num_threads or _env_threads_value or _omp_threads_value or _cores
    return n if _limit is None or n <= _limit else _limit


def chosen_num_threads() -> int | None:
    """The thread count chosen for fusedloss itself (``set_num_threads(n)``, else ``FUSEDLOSS_NUM_THREADS``), or
    None where the default applies (which a caller may replace by its own: fusedloss.boosting's XGBoost
    objectives run on one thread by default)."""
    return _num_threads or _env_threads_value


def set_thread_limit(n: int | None) -> None:
    """The cap threadpoolctl sets (``threadpool_limits``); None removes it. A cap at or above the uncapped
    count is removed: it has no effect now, and threadpoolctl restores a limit by setting the count it
    read before, which must not leave a cap behind."""
    global _limit
    _limit = None if n is None or n >= _uncapped() else max(1, int(n))
