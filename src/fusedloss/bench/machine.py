"""Facts about the machine a run is made on: a steady allocator, the memory bandwidth (STREAM triad, cached per
host and thread count), the load average, the SIMD level of a backend, and the machine description stored
with the results."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import sys
import time

import numpy as np

from .. import _config
from .contestants import host_backends

try:  # the triad kernel; NumPy stands in when numba is missing
    import numba
except Exception:  # pragma: no cover - numba is a dependency, but the package must work without it
    numba = None


# --- a steady allocator -----------------------------------------------------------------------------

_ALLOCATOR = None


def steady_allocator() -> str:
    """Make glibc's malloc behave the same in every run, and say what was done.

    By default glibc moves its mmap threshold as the process frees large blocks and trims the heap, so whether
    a peer's 4 MB temporary costs 1000 fresh page faults (about 5 ms on this VM: more than the arithmetic)
    depends on what the process allocated before: NumPy's log_cosh at 1e6 measured 2.5 ms in one process and
    11.5 ms in another. Fixing the threshold at its largest value (32 MiB) and never trimming makes blocks
    below 32 MiB come from a heap that stays mapped, and blocks above it always fresh mmaps: the same cost in
    every run, and no page faults for the peers' temporaries below 32 MiB (so their speed is, if anything,
    flattered). Our kernels write into ``grad_out`` and allocate nothing per call.
    """
    global _ALLOCATOR
    if _ALLOCATOR is None:
        _ALLOCATOR = "default (not glibc)"
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
                if libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20) and libc.mallopt(M_TRIM_THRESHOLD, 2**30):
                    _ALLOCATOR = "glibc mallopt: mmap threshold 32 MiB, heap trim threshold 1 GiB"
            except (OSError, AttributeError):
                pass
    return _ALLOCATOR


# --- triad: this machine's memory bandwidth ----------------------------------------------------------

if numba is not None:

    @numba.njit(parallel=True, cache=True)
    def _triad_numba(a, b, c, s):  # pragma: no cover - compiled
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]


def _triad_numpy(a, b, c, s, threads):
    """The triad in cache-sized blocks (so that the temporary stays in cache), one slice per thread."""
    from concurrent.futures import ThreadPoolExecutor

    block = 1 << 15

    def work(lo, hi):
        tmp = np.empty(block)
        for i in range(lo, hi, block):
            j = min(i + block, hi)
            t = tmp[: j - i]
            np.multiply(c[i:j], s, out=t)
            np.add(b[i:j], t, out=a[i:j])

    bounds = np.linspace(0, a.size, threads + 1).astype(int)
    if threads == 1:
        work(0, a.size)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, bounds[:-1], bounds[1:]))


def measure_triad(threads: int, n: int = 10_000_000, repeat: int = 20) -> dict:
    """STREAM-style triad a = b + s c over three float64 arrays of n elements (80 MB each for 1e7).

    Counts 3 n 8 bytes per pass (two reads, one write), as STREAM does and as ``minimal_bytes`` does.
    Returns the best pass (STREAM's convention) and the median, in GB/s.
    """
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    method = "numpy-blocked"
    if numba is not None:
        try:
            previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            try:
                _triad_numba(a, b, c, 3.0)
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    _triad_numba(a, b, c, 3.0)
                    times.append(time.perf_counter() - t0)
            finally:
                numba.set_num_threads(previous)
            method = "numba-prange"
        except Exception:  # pragma: no cover - a broken numba: fall back
            method = "numpy-blocked"
    if method == "numpy-blocked":
        _triad_numpy(a, b, c, 3.0, threads)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            _triad_numpy(a, b, c, 3.0, threads)
            times.append(time.perf_counter() - t0)
    if not np.all(a == 7.0):
        raise RuntimeError("triad produced a wrong result")
    nbytes = 3 * n * 8
    return {"gbps": nbytes / min(times) / 1e9, "median_gbps": nbytes / statistics.median(times) / 1e9,
            "method": method, "threads": threads, "bytes": nbytes, "repeat": repeat}


TRIAD_TTL_S = 12 * 3600
TRIAD_BUSY_TTL_S = 600


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def machine_busy() -> bool:
    """True when other processes keep more than half of the usable cores busy (1-minute load average)."""
    load = load_average()
    return load is not None and load > 0.5 * _config.default_num_threads()


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fusedloss", "triad.json")


def triad(threads: int, refresh: bool = False) -> dict:
    """The triad figure for this host and thread count, cached in ``~/.cache/fusedloss/triad.json`` keyed by
    host name and thread count: for 12 hours, or for 10 minutes when the machine was busy while measuring
    (then the figure is likely low, and the next session measures again)."""
    path = _cache_path()
    key = f"{socket.gethostname()}|threads={threads}"
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    now = time.time()
    if (not refresh and isinstance(hit, dict) and hit.get("gbps", 0) > 0
            and now - hit.get("measured_at", 0) < hit.get("ttl_s", TRIAD_TTL_S)):
        return {**hit, "cached": True}
    load = load_average()
    busy = machine_busy()
    result = {**measure_triad(threads), "measured_at": now, "load_avg": load,
              "ttl_s": TRIAD_BUSY_TTL_S if busy else TRIAD_TTL_S}
    cache[key] = result
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure again next time
    return {**result, "cached": False}


def simd_level(backend: str) -> str:
    """The SIMD level a backend's kernels run at ('' where it does not choose one): the cpp backend picks
    baseline/avx2/avx512 at import, and the regression guard compares a cpp case only with a baseline row of
    the same level (a machine without AVX-512 is not a regression)."""
    if backend != "cpp":
        return ""
    try:
        from .._core import simd
    except ImportError:
        return ""
    return simd()


def _cpu_and_simd() -> tuple[str, list[str]]:
    cpu, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and not flags:
                    flags = line
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return cpu, [f for f in ("avx512f", "avx2", "fma", "neon", "asimd") if f" {f}" in flags]


def machine_kind(machine: dict | None = None) -> tuple[str, tuple[str, ...]]:
    """(CPU model, SIMD flags) of a results file's ``machine`` entry, or of this machine when None: two runs of
    one kind may be compared ratio for ratio (the regression guard prefers the baselines of this kind)."""
    if machine is None:
        cpu, simd = _cpu_and_simd()
    else:
        cpu, simd = machine.get("cpu", ""), machine.get("simd") or []
    return cpu, tuple(sorted(simd))


def machine_info(triads: dict | None = None, note: str = "") -> dict:
    """Where a run was made: host, CPU, versions, backends, triad figures."""
    cpu, simd = _cpu_and_simd()
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("numba", "torch", "jax", "sklearn"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    from .. import __version__

    versions["fusedloss"] = __version__
    return {
        "hostname": socket.gethostname(), "machine": platform.machine(), "cpu": cpu, "simd": simd,
        "cores": _config.default_num_threads(), "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "system": platform.platform(), "versions": versions,
        "backends": [{k: v for k, v in b.items() if k != "priority"} for b in host_backends()],
        "triad": triads or {}, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "note": note,
    }
