"""pytest-benchmark suites: value_and_grad over loss x backend (and peer) x dtype x size.

Cases, data, peers, the minimal-bytes model and the correctness check come from ``fusedloss.bench``, the
setup ``fusedloss bench`` uses. With ``--benchmark-disable`` (CI) every case runs once as a test at the small
sizes only (elementwise n <= 1e5, multiclass 100 x 1000; the peers at the smallest size only, since JAX
compiles each shape anew), still checked against the float64 reference.
"""

from __future__ import annotations

import math

import pytest

from fusedloss import bench

SMOKE_MAX_ELEMENTS = 100_000
SMOKE_MULTICLASS_SHAPE = (100, 1000)


def _shapes(defn, disabled):
    if not disabled:
        return list(defn.sizes)
    small = [s for s in defn.sizes if math.prod(s) <= SMOKE_MAX_ELEMENTS]
    if small:
        return small
    return [SMOKE_MULTICLASS_SHAPE] if defn.kind == "multiclass" else [(1000,)]


def pytest_configure(config):
    bench.steady_allocator()  # the same malloc behaviour as `fusedloss bench` (see its docstring)


def pytest_generate_tests(metafunc):
    """``bench_case`` = (loss, dtype, shape, contestant), case-major (the data of one case is made once).

    Every host backend appears (an unavailable one is a skip saying why); a peer appears for the losses it
    has a formulation of (a peer that is not installed is a skip saying why).
    """
    if "bench_case" not in metafunc.fixturenames:
        return
    disabled = bool(metafunc.config.getoption("benchmark_disable", False))
    names = bench.contestant_names()
    params = []
    for d in bench.registered_case_defs():
        shapes = _shapes(d, disabled)
        for dtype in bench.DTYPES:
            for shape in shapes:
                for name in names:
                    if name.startswith("peer:") and (not bench.peer_has(name[5:], d.loss)
                                                     or (disabled and shape != shapes[0])):
                        continue
                    case_id = f"{d.loss}-{dtype}-{bench.format_shape(shape)}-{name.replace('peer:', 'peer-')}"
                    params.append(pytest.param((d.loss, dtype, tuple(shape), name), id=case_id))
    metafunc.parametrize("bench_case", params)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Saved runs (--benchmark-autosave / --benchmark-json) get GB/s and the fraction of the triad."""
    triads = {}
    for b in output_json.get("benchmarks", []):
        info = b.get("extra_info", {})
        nbytes, median = info.get("bytes"), b.get("stats", {}).get("median")
        if not nbytes or not median:
            continue
        info["gbps"] = nbytes / median / 1e9
        threads = info.get("threads")
        if threads:
            if threads not in triads:
                triads[threads] = bench.triad(threads)["gbps"]
            info["triad_gbps"] = triads[threads]
            info["frac_triad"] = info["gbps"] / triads[threads]
