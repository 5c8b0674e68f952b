"""value_and_grad throughput: every registered loss x backend/peer x dtype x size.

    python -m pytest benchmarks                          # time everything (long: the 1e7 cases)
    python -m pytest benchmarks -k "mse and 1e7"         # a subset
    python -m pytest benchmarks --benchmark-disable -q   # CI: each case once, small sizes, checked

Warm-up (JIT compilation, thread pool start, first touch of the gradient buffer) and a correctness check run
before the timed region; the result of the timed calls is checked again afterwards.
"""

import pytest

from fusedloss import bench


def test_value_and_grad(benchmark, bench_case):
    loss, dtype, shape, name = bench_case
    case = bench.get_case(loss, dtype, shape)
    pred, target, ref = bench.case_data(case)
    try:
        contestant = bench.make_contestant(name, case, pred, target)
    except bench.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        ok, text, _, _ = bench.check_result(case, *contestant.result(contestant.run()), ref)  # warm-up
        assert ok, f"{name} on {case.label()}: {text}"
        benchmark.group = f"{loss} {case.size_text}"
        benchmark.name = f"{name} {dtype}"
        benchmark.extra_info.update(loss=loss, backend=name, dtype=dtype, size=case.size_text, n=case.n,
                                    threads=case.threads, bytes=bench.minimal_bytes(case))
        result = benchmark(contestant.run)
        ok, text, _, _ = bench.check_result(case, *contestant.result(result), ref)
        assert ok, f"{name} on {case.label()} (timed calls): {text}"
    finally:
        if contestant.cleanup:
            contestant.cleanup()
