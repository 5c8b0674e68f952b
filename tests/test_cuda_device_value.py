"""The cuda backend's reduced values kept on the device, and its calls on a given stream (what fusedloss.torch uses
on CUDA tensors: ``Loss._run(..., stream=..., device_value=True)``).

Checked here, on the simulator as CI runs it (``NUMBA_ENABLE_CUDASIM=1 pytest -m cuda``): the device-side final
sum against ``math.fsum`` of the same partials (and against the float path of the same call), its compensation, its
rule for non-finite sums, that it is the same bits twice, that every launch of a call goes on the given stream (CTC's,
the pairwise and the overlap losses' too, with their allocations and copies), and how many times a call waits for
the device (the host round trips that remain). The simulator runs every launch to the end at once, so a missing stream shows here only as a launch
recorded without it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
from conftest import backend_skip_reason  # noqa: E402

_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from fusedloss.backends import REGISTRY as BACKENDS  # noqa: E402
from fusedloss._validate import VALUE, VALUE_AND_GRAD  # noqa: E402

cu = BACKENDS["cuda"].load()


def _final(partials, denom=None, dtype=np.float64) -> float:
    out = cu.empty(1, dtype)
    got = cu._reduced(cu.to_device(np.asarray(partials, np.float64)), cu.DeviceTotal(out, denom))
    assert got is out
    return out.copy_to_host()[0]


# --- the final sum ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 256, 257, 1000])
def test_final_sum_matches_fsum(count):
    # more partials than threads (257, 1000) take the strided loop; magnitudes over 12 decades, both signs
    rng = np.random.default_rng(count)
    partials = rng.uniform(0.5, 1.0, count) * 10.0 ** rng.integers(-6, 6, count) * rng.choice([-1, 1], count)
    partials[0] = abs(partials[0]) * 1e7  # well-conditioned: no cancellation to zero
    exact = math.fsum(partials)
    assert _final(partials) == pytest.approx(exact, rel=2e-16, abs=0)


def test_final_sum_is_compensated():
    # a plain float64 sum in any order loses the ones beside 1e16 (it gives 0, 1 or 2 of the 4); fsum gives 4
    partials = np.array([1e16, 1.0, -1e16, 1.0] * 64 + [1.0, 1.0])
    assert math.fsum(partials) == 130.0
    assert _final(partials) == 130.0


def test_final_sum_mean_and_empty():
    assert _final([1.0, 2.0, 4.0], denom=2.0) == 3.5
    assert math.isnan(_final([1.0, 2.0], denom=0.0))  # as _validate.reduced_value: nothing counted
    assert _final([]) == 0.0
    assert math.isnan(_final([], denom=0.0))


def test_final_sum_non_finite():
    assert _final([1.0, math.inf, 2.0]) == math.inf  # the compensation of inf is nan: not added
    assert _final([1.0, -math.inf]) == -math.inf
    assert math.isnan(_final([1.0, math.nan, 2.0]))
    assert math.isnan(_final([math.inf, -math.inf]))  # fsum raises ValueError here
    assert _final([1.7e308, 1.7e308]) == math.inf  # fsum raises OverflowError here


def test_final_sum_writes_float32():
    value = 1.0 + 2.0**-30  # rounds to 1.0 in float32
    got = _final([value], dtype=np.float32)
    assert got.dtype == np.float32 and got == np.float32(1.0)


# --- through Loss._run, against the float path ------------------------------------------------------------------


def _cases():
    rng = np.random.default_rng(7)
    n = 300  # 2 blocks of TPB threads: 2 partials
    p = rng.normal(size=n)
    y = rng.normal(size=n)
    z = rng.normal(size=n) * 3
    q = rng.uniform(0, 1, size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    R, C = 24, 5
    x = rng.normal(size=(R, C)) * 2
    labels = rng.integers(0, C, R)
    labels[::7] = -100
    cw = np.array([0.5, 1.0, 2.0, 1.5, 0.25])
    return [
        ("mse", p, y, {}, None),
        ("mse", p, y, {}, w),
        ("binary_cross_entropy_with_logits", z, q, {}, None),
        ("cross_entropy", x, labels, {}, None),
        ("cross_entropy", x, labels, {"class_weight": cw}, None),
        ("cross_entropy", x, labels, {"label_smoothing": 0.1}, None),
    ]


CASES = _cases()
IDS = ["mse", "mse-weighted", "bce_with_logits", "ce-ignore", "ce-class-weight", "ce-smoothing"]

# How often the host waits for the device in one call with device_value=True (to_host on the call's stream). What
# still reads back: the checks of device operands (first_outside: the weights' sign, bce's target in [0, 1];
# first_bad_label: the labels), the "mean" divisor when it is a sum (device_sum of the weights, kept_sum of the
# labelled rows: it scales the gradient, which the kernels take as a number), and a weighted mean's total
# (refit_total needs it on the host). The float path waits once more (the partials), except for a weighted mean.
WAITS = {
    ("mse", "sum"): 0, ("mse", "mean"): 0,
    ("mse-weighted", "sum"): 1, ("mse-weighted", "mean"): 3,
    ("bce_with_logits", "sum"): 1, ("bce_with_logits", "mean"): 1,
    ("ce-ignore", "sum"): 1, ("ce-ignore", "mean"): 2,
    ("ce-class-weight", "sum"): 1, ("ce-class-weight", "mean"): 4,  # + the class weights, read back
    ("ce-smoothing", "sum"): 1, ("ce-smoothing", "mean"): 2,
}


class _CountingStream(type(cuda.stream())):
    """A simulator stream that counts how often the host waits for it."""

    def __init__(self):
        super().__init__()
        self.waits = 0

    def synchronize(self):
        self.waits += 1


@pytest.fixture
def launches(monkeypatch):
    """The stream of every kernel launch made while the test runs (0: none given)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen = []
    original = FakeCUDAKernel.__getitem__

    def record(self, configuration):
        seen.append(configuration[2] if len(configuration) > 2 else 0)
        return original(self, configuration)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", record)
    return seen


@pytest.fixture
def traffic(monkeypatch):
    """The stream of every device allocation ("alloc"), copy to the device ("to_device") and copy to the host
    ("to_host") made while the test runs (0: none given)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    seen = {"alloc": [], "to_device": [], "to_host": []}

    def recorded(kind, fn):
        return lambda *a, stream=0, **k: (seen[kind].append(stream), fn(*a, stream=stream, **k))[1]

    monkeypatch.setattr(cuda, "device_array", recorded("alloc", cuda.device_array))
    monkeypatch.setattr(cuda, "to_device", recorded("to_device", cuda.to_device))
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", recorded("to_host", FakeCUDAArray.copy_to_host))
    return seen


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("k", range(len(CASES)), ids=IDS)
def test_device_value_matches_float_path(k, reduction, launches):
    name, p, t, params, w = CASES[k]
    loss = getattr(fl, name)
    dp, dt = cu.to_device(p), cu.to_device(t)
    dw = None if w is None else cu.to_device(w)
    weighted_mean = reduction == "mean" and (w is not None or "class_weight" in params)
    waits = WAITS[IDS[k], reduction]

    on = _CountingStream()
    expected, grad_float = loss._run(dp, dt, reduction, dw, None, params, VALUE_AND_GRAD, stream=on)
    assert isinstance(expected, float)
    assert on.waits == waits + (0 if weighted_mean else 1)

    launches.clear()
    on = _CountingStream()
    value, grad = loss._run(dp, dt, reduction, dw, None, params, VALUE_AND_GRAD, stream=on, device_value=True)
    assert on.waits == waits
    assert launches and all(s is on for s in launches), launches  # every kernel on the caller's stream
    assert grad.stream is on and (weighted_mean or value.stream is on)  # allocated on it
    assert cu.is_numba_array(value) and value.shape == (1,) and value.dtype == np.float64
    assert value.copy_to_host()[0] == pytest.approx(expected, rel=1e-15, abs=0)
    np.testing.assert_array_equal(grad.copy_to_host(), grad_float.copy_to_host())

    launches.clear()
    again = loss._run(dp, dt, reduction, dw, None, params, VALUE, device_value=True)
    assert again.copy_to_host().tobytes() == value.copy_to_host().tobytes()  # the same bits
    assert launches and all(s == 0 for s in launches)  # without a stream, the default one as before


def test_device_value_keeps_pred_dtype_and_none():
    rng = np.random.default_rng(3)
    p, y = rng.normal(size=40).astype(np.float32), rng.normal(size=40).astype(np.float32)
    dp, dy = cu.to_device(p), cu.to_device(y)
    got = fl.mse._run(dp, dy, "mean", None, None, {}, VALUE, device_value=True)
    assert got.dtype == np.float32 and got.copy_to_host()[0] == np.float32(fl.mse(dp, dy))
    per = fl.mse._run(dp, dy, "none", None, None, {}, VALUE, device_value=True)  # "none": as without it
    np.testing.assert_array_equal(per.copy_to_host(), fl.mse(dp, dy, reduction="none").copy_to_host())


def test_public_api_still_returns_floats():
    dp, dy = cu.to_device(np.arange(5.0)), cu.to_device(np.ones(5))
    assert type(fl.mse(dp, dy)) is float
    assert type(fl.mse.value_and_grad(dp, dy)[0]) is float


def test_a_stream_handle_works_on_the_simulator(launches):
    # torch passes its stream's handle; the simulator has no foreign streams, and a stream of its own stands in
    dp, dy = cu.to_device(np.arange(6.0)), cu.to_device(np.zeros(6))
    value = fl.mse._run(dp, dy, "sum", None, None, {}, VALUE, stream=0x7F00, device_value=True)
    assert value.copy_to_host()[0] == 55.0
    assert launches and all(s is cu.external_stream(0x7F00) for s in launches)
    assert cu._stream() == 0  # the call's stream ends with it


# --- CTC on the caller's stream ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["host", "device"])
def test_ctc_runs_on_the_callers_stream(where, launches, traffic, monkeypatch):
    """CTC inside ``on_stream``: its kernel launches on that stream, every device array of the call (the gradient,
    the losses, the kernel's scratch) is allocated on it, and each read back waits for it; the results are the bits
    of the same call on the default stream."""
    from fusedloss.backends import numba_cuda_ctc

    monkeypatch.setattr(numba_cuda_ctc, "MIN_CTC_THREADS", 8)  # blocks of 8 threads: the simulator is slow
    monkeypatch.setattr(numba_cuda_ctc, "MAX_CTC_THREADS", 8)
    allocated = traffic["alloc"]
    rng = np.random.default_rng(11)
    x = cu.to_device(rng.normal(size=(6, 2, 5)))  # T=6 frames, N=2 sequences, C=5 classes
    targets, il, tl = np.array([[1, 2, 2], [3, 4, 0]]), np.array([6, 5]), np.array([3, 2])
    if where == "device":
        targets, il, tl = cu.to_device(targets), cu.to_device(il), cu.to_device(tl)
    value, grad = fl.ctc.value_and_grad(x, targets, il, tl, backend="cuda")
    assert launches and all(s == 0 for s in launches)  # without a stream, the default one as before
    launches.clear()
    allocated.clear()

    on = _CountingStream()
    with cu.on_stream(on):
        got, g = fl.ctc.value_and_grad(x, targets, il, tl, backend="cuda")
    assert launches and all(s is on for s in launches), launches
    assert len(allocated) == 8 and all(s is on for s in allocated), allocated  # 2 outputs + 6 scratch arrays
    # read back on it: the losses (for fsum); device targets and lengths before the checks, one wait each
    assert on.waits == (1 if where == "host" else 4)
    assert got == value
    np.testing.assert_array_equal(g.copy_to_host(), grad.copy_to_host())

    sw = np.array([0.5, 2.0])  # reduction="none": the losses, weighted, stay on the device
    per = fl.ctc(x, targets, il, tl, reduction="none", sample_weight=sw, backend="cuda")
    on, copies = _CountingStream(), traffic["to_host"]
    copies.clear()
    with cu.on_stream(on):
        got = fl.ctc(x, targets, il, tl, reduction="none", sample_weight=sw, backend="cuda")
    assert on.waits == len(copies) == (0 if where == "host" else 3) and all(s is on for s in copies), copies
    assert got.copy_to_host().tobytes() == per.copy_to_host().tobytes()

    on = _CountingStream()  # the kernel's caller may leave the longest target to be read back: on the stream too
    loss = cu.empty(2, np.float64)
    with cu.on_stream(on):
        cu.ctc(x.reshape(60), 6, 2, 5, False, False, cu.to_device(np.array([1, 2, 2, 3, 4])),
               cu.to_device(np.array([0, 3])), cu.to_device(np.array([3, 2])), cu.to_device(np.array([6, 5])), 0,
               False, None, loss, None, 1)
    assert on.waits == 1
    np.testing.assert_array_equal(loss.copy_to_host(), fl.ctc(x, targets, il, tl, reduction="none",
                                                               backend="cuda").copy_to_host())


def _same_call_on_a_stream(call, launches, traffic):
    """``call()`` on the default stream, then inside ``on_stream``: (its results on each, the stream it ran on).
    Inside, every launch, allocation and copy (to the device and back) must be on that stream; how often the host
    waited for it (``stream.waits``, each copy to the host waits once) is the caller's to check."""
    expected = call()
    assert launches and all(s == 0 for s in launches)  # without a stream, the default one as before
    for seen in (launches, *traffic.values()):
        seen.clear()
    on = _CountingStream()
    with cu.on_stream(on):
        got = call()
    assert launches and all(s is on for s in launches), launches
    for kind, seen in traffic.items():
        assert all(s is on for s in seen), (kind, seen)
    assert on.waits == len(traffic["to_host"])  # each copy back waits for the stream once
    return expected, got, on


def _same_bits(got, expected):
    if isinstance(expected, float):
        assert got == expected or math.isnan(got) and math.isnan(expected)
    else:
        assert got.copy_to_host().tobytes() == expected.copy_to_host().tobytes()


# --- pairwise and overlap losses on the caller's stream ----------------------------------------------------------


def _pairwise_case(name, where, rng):
    """(inputs, target or None, sample_weight): device inputs of 4 rows; the target and the weights on ``where``."""
    spec = fl.LOSSES[name].spec
    shape = (4, 3) if spec.vector_rows else (4,)
    xs = [np.abs(rng.normal(size=shape)) if what in spec.nonnegative_inputs else rng.normal(size=shape)
          for what in spec.inputs]
    y = np.array([1.0, -1.0, -1.0, 1.0]) if spec.row_target else None
    w = np.array([0.5, 1.0, 2.0, 1.5])
    side = cu.to_device if where == "device" else (lambda a: a)
    return [cu.to_device(x) for x in xs], None if y is None else side(y), side(w)


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", ["triplet_margin", "cosine_embedding", "margin_ranking", "gaussian_nll"])
def test_pairwise_runs_on_the_callers_stream(name, reduction, where, launches, traffic):
    """A pairwise loss inside ``on_stream``: its launches, allocations and copies on that stream, the host waiting
    only for what it needs, and the bits of the default-stream call."""
    loss = getattr(fl, name)
    xs, y, w = _pairwise_case(name, where, np.random.default_rng(12))
    args = [*xs, *([] if y is None else [y])]
    expected, got, on = _same_call_on_a_stream(
        lambda: loss.value_and_grad(*args, reduction=reduction, sample_weight=w, backend="cuda"), launches, traffic)
    # what the host needs: device targets and weights (checked there), gaussian_nll's check that var >= 0, and
    # the rows' losses for a reduced value (a compensated sum on the host); "none" keeps the losses on the device
    assert on.waits == ((where == "device") * (1 + (y is not None)) + (name == "gaussian_nll")
                        + (reduction != "none")), traffic["to_host"]
    _same_bits(got[0], expected[0])
    for g, want in zip(got[1], expected[1]):
        _same_bits(g, want)


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", ["dice", "tversky"])
def test_overlap_runs_on_the_callers_stream(name, reduction, where, launches, traffic):
    """An overlap loss inside ``on_stream``: its launches, allocations and copies on that stream, the host waiting
    only for what it needs, and the bits of the default-stream call."""
    rng = np.random.default_rng(13)
    x = cu.to_device(rng.normal(size=(2, 3, 4, 5)))
    t, w = rng.integers(0, 3, size=(2, 4, 5)), np.array([0.5, 2.0])
    if where == "device":
        t, w = cu.to_device(t), cu.to_device(w)
    expected, got, on = _same_call_on_a_stream(
        lambda: fl.LOSSES[name].value_and_grad(x, t, per_sample=True, reduction=reduction, sample_weight=w,
                                               backend="cuda"), launches, traffic)
    # what the host needs: device targets and weights (checked there), and the sums I, P, Y (the value and the
    # gradient's coefficients are combined from them on the host)
    assert on.waits == 1 + 2 * (where == "device"), traffic["to_host"]
    _same_bits(got[0], expected[0])
    _same_bits(got[1], expected[1])


# --- fusedloss.torch's glue (torch is CPU-only here: the CUDA call itself runs on a GPU session) ---------------


def test_torch_passes_its_current_stream_and_keeps_the_value(monkeypatch):
    torch = pytest.importorskip("torch")
    from fusedloss.torch import _kernel

    class Stream:
        cuda_stream = 0xBEEF

        def synchronize(self):
            raise AssertionError("the caller's stream must not be synchronised")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", Stream.synchronize)
    calls = []

    class Loss:
        def _run(self, *args, **kwargs):
            calls.append((args, kwargs))
            return ("value", "grad") if args[6] is VALUE_AND_GRAD else "value"

    call = _kernel._Call("mse", "mean", {}, None, None)
    call.loss = Loss()
    x = torch.zeros(3)
    assert _kernel._run_cuda(call, x, x, None, None, False) == "value"
    assert _kernel._run_cuda(call, x, x, None, x, True) == "value"
    for (args, kwargs), outputs in zip(calls, (VALUE, VALUE_AND_GRAD)):
        assert kwargs == {"stream": 0xBEEF, "device_value": True, "metrics": None}
        assert args[2] == "mean" and args[6] is outputs
