"""What one call through the public API costs on small arrays, where Python, not memory, sets the pace.

    python -m pytest benchmarks/test_call_overhead.py --benchmark-columns=min,median,iqr
    python -m pytest benchmarks/test_call_overhead.py --benchmark-disable -q   # CI: each case once, checked

A training loop on small batches calls a loss thousands of times a second: the dispatcher's checks must cost
no more than the kernel does. Each case times, in one group: the public API as a loop calls it (no
``backend=``, so the configured / "auto" choice is looked up per call), the backend's kernel called directly
(what is left without the dispatcher), and NumPy as a user writes it. Compare the medians of one group
(ratios, never absolute times). Warm-up and a correctness check against the float64 reference run before
the timed region; the result of the timed calls is checked again afterwards.
"""

import numpy as np
import pytest

from fusedloss import _config, bench
from fusedloss._dispatch import resolve_host_backend
from fusedloss._losses import LOSSES
from fusedloss._spec import REGISTRY

CASES = [("mse", "float32", (1000,)), ("mse", "float64", (1000,)), ("cross_entropy", "float32", (64, 10))]


# Each contestant: (loss, pred, target, g) -> (the timed call, its result as (value, grad); None where the
# call does not return one, and the check then takes the reference's).


def _api_value_and_grad(loss, pred, target, g):
    fn = LOSSES[loss].value_and_grad
    return lambda: fn(pred, target, grad_out=g), lambda r: r


def _api_value(loss, pred, target, g):
    fn = LOSSES[loss]
    return lambda: fn(pred, target), lambda r: (r, None)


def _api_grad(loss, pred, target, g):
    fn = LOSSES[loss].grad
    return lambda: fn(pred, target, grad_out=g), lambda r: (None, r)


def _kernel(loss, pred, target, g):
    """The kernel the API's call runs (the configured backend), called with the arguments the dispatcher gives."""
    spec = REGISTRY[loss]
    module = resolve_host_backend(None, spec, pred.dtype)
    params, packed = LOSSES[loss]._params({})
    nthreads = _config.get_num_threads()
    if spec.kind == "multiclass":
        C = pred.shape[-1]
        R = pred.size // C
        ignore = int(params[spec.ignore_param]) if spec.ignore_param else -1
        x, gf = pred.reshape(-1), g.reshape(-1)

        def run():
            return module.multiclass(loss, packed, ignore, C, x, target, None, None, None, 1.0 / R, True, None,
                                     gf, None, nthreads) / R
    else:
        n = pred.size

        def run():
            return module.elementwise(loss, packed, pred, target, None, 1.0 / n, True, None, g, None, nthreads) / n
    return run, lambda r: (r, g)


def _numpy(loss, pred, target, g):
    contestant = bench.make_contestant("peer:numpy", bench.get_case(loss, str(pred.dtype), pred.shape), pred,
                                        target)
    return contestant.run, contestant.result


CONTESTANTS = {
    "api value_and_grad(grad_out)": _api_value_and_grad,
    "api value": _api_value,
    "api grad(grad_out)": _api_grad,
    "kernel alone": _kernel,
    "numpy as a user writes it": _numpy,
}


def _check(case, result, ref, what):
    value, grad = result
    ok, text, _, _ = bench.check_result(case, ref.value if value is None else value,
                                         ref.grad if grad is None else grad, ref)
    assert ok, f"{what}: {text}"


@pytest.mark.parametrize("contestant", list(CONTESTANTS))
@pytest.mark.parametrize("loss,dtype,shape", CASES, ids=[f"{l}-{d}-{bench.format_shape(s)}" for l, d, s in CASES])
def test_call_overhead(benchmark, loss, dtype, shape, contestant):
    case = bench.get_case(loss, dtype, shape)
    pred, target, ref = bench.case_data(case)
    g = np.empty_like(pred)
    try:
        run, result = CONTESTANTS[contestant](loss, pred, target, g)
    except bench.Unavailable as exc:
        pytest.skip(str(exc))
    what = f"{contestant} on {case.label()}"
    for _ in range(100):  # warm-up: caches, the thread pool, first touch of g
        raw = run()
    _check(case, result(raw), ref, what)
    benchmark.group = f"call overhead {loss} {dtype} {case.size_text}"
    benchmark.name = contestant
    benchmark.extra_info.update(loss=loss, dtype=dtype, size=case.size_text, n=case.n, threads=case.threads,
                                contestant=contestant)
    raw = benchmark(run)
    _check(case, result(raw), ref, f"{what} (timed calls)")
