"""The thread policy: who sets the thread count, and the pool the cpp kernels run on.

Precedence (see ``fusedloss.get_num_threads``): ``set_num_threads`` > ``FUSEDLOSS_NUM_THREADS`` >
``OMP_NUM_THREADS`` > every core; threadpoolctl's ``threadpool_limits`` caps it while its block runs, and
``fusedloss.torch`` caps each call at torch's intra-op count. Whether a call really ran on one thread is read
from ``_core.pool_workers()`` in a fresh process: the pool starts its workers on the first call that uses
more than one thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _config

from conftest import backend_skip_reason

needs_cpp = pytest.mark.skipif(backend_skip_reason("cpp") is not None, reason=str(backend_skip_reason("cpp")))

# A call with enough work for two threads (and a multiclass one), then the number of pool workers started.
_BIG_CALLS = """
import numpy as np, fusedloss as fl
from fusedloss import _core
p = np.linspace(-3, 3, 2_000_000, dtype=np.float32); y = np.zeros_like(p)
fl.mse.value_and_grad(p, y, backend="cpp")
x = np.zeros((2048, 1000), np.float32); t = np.zeros(2048, np.int64)
fl.cross_entropy.value_and_grad(x, t, backend="cpp")
"""


def _python(code: str, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "FUSEDLOSS_NUM_THREADS", "FUSEDLOSS_BACKEND")}
    full.update(env)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@needs_cpp
def test_two_threads_start_a_worker_and_one_thread_does_not():
    cores = len(os.sched_getaffinity(0))
    (workers,) = _python(_BIG_CALLS + "print(_core.pool_workers())")
    assert int(workers) == (1 if cores > 1 else 0)
    (workers,) = _python("import fusedloss as fl; fl.set_num_threads(1)\n" + _BIG_CALLS
                         + "print(_core.pool_workers())")
    assert workers == "0"


@needs_cpp
def test_small_calls_stay_on_the_calling_thread():
    (workers,) = _python("""
        import numpy as np, fusedloss as fl
        from fusedloss import _core
        fl.set_num_threads(2)
        p = np.ones(60_000); fl.mse.value_and_grad(p, p, backend="cpp")
        print(_core.pool_workers())""")
    assert workers == "0"


@needs_cpp
@pytest.mark.parametrize("value", ["1", "1,4", " 1 "])
def test_omp_num_threads_makes_fusedloss_single_threaded(value):
    threads, workers = _python(_BIG_CALLS + "print(fl.get_num_threads(), _core.pool_workers())",
                               OMP_NUM_THREADS=value)
    assert (threads, workers) == ("1", "0")


def test_thread_settings_precedence():
    out = _python("""
        import fusedloss as fl
        print(fl.get_num_threads())
        fl.set_num_threads(5); print(fl.get_num_threads())
        fl.set_num_threads(None); print(fl.get_num_threads())""", OMP_NUM_THREADS="3", FUSEDLOSS_NUM_THREADS="4")
    assert out == ["4", "5", "4"]
    assert _python("import fusedloss as fl; print(fl.get_num_threads())", OMP_NUM_THREADS="3") == ["3"]
    # an unusable OMP_NUM_THREADS is ignored, as OpenMP runtimes ignore it
    assert _python("import fusedloss as fl, os; print(fl.get_num_threads() == len(os.sched_getaffinity(0)))",
                   OMP_NUM_THREADS="abc") == ["True"]


@needs_cpp
def test_threadpoolctl_limits_reach_fusedloss():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fl.mse(np.ones(3), np.ones(3), backend="cpp")  # loads the cpp backend, which registers its controller
    fl.set_num_threads(2)
    try:
        infos = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "fusedloss"]
        assert len(infos) == 1 and infos[0]["num_threads"] == 2
        with threadpoolctl.threadpool_limits(1):
            assert fl.get_num_threads() == 1
        assert fl.get_num_threads() == 2
        with threadpoolctl.threadpool_limits(1, user_api="blas"):  # another library's limit: not ours
            assert fl.get_num_threads() == 2
        with threadpoolctl.threadpool_limits(8):  # a limit above the count changes nothing
            assert fl.get_num_threads() == 2
    finally:
        fl.set_num_threads(None)
    assert _config._limit is None


@needs_cpp
def test_threadpool_limits_make_a_fresh_process_single_threaded():
    pytest.importorskip("threadpoolctl")
    body = "\n".join("    " + line for line in _BIG_CALLS.strip().splitlines())
    code = ("import threadpoolctl, numpy as np, fusedloss as fl\n"
            "fl.mse(np.ones(3), np.ones(3), backend='cpp')\n"
            "with threadpoolctl.threadpool_limits(1):\n" + body + "\n    print(_core.pool_workers())\n")
    (workers,) = _python(code)
    assert workers == "0"


@needs_cpp
def test_concurrent_callers_get_the_single_threaded_bits():
    """Many Python threads in the kernels at once (the GIL is released): one owns the pool, the others run on
    their own threads; every result is the same, bit for bit."""
    rng = np.random.default_rng(0)
    p = rng.standard_normal(300_000)
    y = rng.standard_normal(300_000)
    x = rng.standard_normal((512, 300))
    t = rng.integers(0, 300, 512)
    fl.set_num_threads(1)
    want = (fl.huber(p, y, backend="cpp"), fl.cross_entropy(x, t, backend="cpp"))
    want_g = fl.log_cosh.grad(p, y, backend="cpp")
    fl.set_num_threads(2)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append((fl.huber(p, y, backend="cpp"), fl.cross_entropy(x, t, backend="cpp")))
                assert np.array_equal(fl.log_cosh.grad(p, y, backend="cpp"), want_g)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        fl.set_num_threads(None)
    assert not errors, errors[0]
    assert len(results) == 120 and all(r == want for r in results)


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_fork_after_the_pool_started_still_computes(backend):
    """A child forked after the parent's pool ran gets a fresh pool: no hang, the same result."""
    if backend_skip_reason(backend):
        pytest.skip(backend_skip_reason(backend))
    code = """
    import os, sys, numpy as np, fusedloss as fl
    fl.set_num_threads(2)
    p = np.linspace(-2, 2, 3_000_000); y = np.zeros_like(p)
    want = fl.huber(p, y, backend=BACKEND)
    pid = os.fork()
    if pid == 0:
        ok = fl.huber(p, y, backend=BACKEND) == want and fl.huber(p, y, backend=BACKEND) == want
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
    """
    assert _python(code.replace("BACKEND", repr(backend))) == ["0"]


def test_set_num_threads_validation():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="set_num_threads: expected a positive integer"):
            fl.set_num_threads(bad)


# A helper preempted by another process, simulated: every block a helper claims sleeps 20 ms, while the
# caller's blocks take 2 us each. The call waits for it (its blocks are in place), then the back-off makes the
# following calls run on the caller alone, and a call whose helpers keep up ends it.
_PREEMPTED_HELPER = """
import time
from fusedloss import _core

def state():
    return _core.pool_state()

def call(helper_ns):
    return _core._pool_probe(4000, 2, helper_ns)

for _ in range(50):
    before = state()
    if call(20_000_000):  # a helper ran a block: the caller waited about 20 ms for it
        break
else:
    raise SystemExit("no helper ever claimed a block")
after = state()
print(after["late_calls"] - before["late_calls"], after["level"] > before["level"])
solo = []
for _ in range(20):  # each late call doubles the back-off, so some call starts inside it
    s0 = state()["solo_calls"]
    helper_blocks = call(20_000_000)
    solo.append((state()["solo_calls"] - s0, helper_blocks))
print(any(n == 1 for n, _ in solo), all(b == 0 for n, b in solo if n == 1))
time.sleep(0.3)  # longer than the longest back-off (256 ms)
for _ in range(50):
    if call(0) >= 0 and state()["level"] == 0:
        break
print(state()["level"], state()["solo_ns_left"])
"""


@needs_cpp
def test_a_late_helper_makes_the_next_calls_run_on_the_caller_alone():
    assert _python(_PREEMPTED_HELPER) == ["1", "True", "True", "True", "0", "0"]


def test_numba_a_late_helper_makes_the_next_calls_run_on_the_caller_alone():
    if backend_skip_reason("numba"):
        pytest.skip(backend_skip_reason("numba"))
    probe = """
    import threading, time
    from fusedloss.backends import _numba_blocks as nb
    caller = threading.get_ident()

    class _core:  # the pool_state / _pool_probe of the cpp pool, for the numba one
        @staticmethod
        def pool_state():
            b = nb._BACKOFF
            left = max(0.0, b["until"] - time.perf_counter())
            return {"late_calls": b["late"], "solo_calls": b["solo"], "level": b["level"],
                    "solo_ns_left": int(left * 1e9)}

        @staticmethod
        def _pool_probe(nblocks, nthreads, helper_ns):
            ran = []

            def run(i0, i1):  # a helper's chunk sleeps helper_ns, the caller's spins 2 us a block
                if threading.get_ident() != caller:
                    ran.append(i0)
                    time.sleep(helper_ns * 1e-9)
                else:
                    end = time.perf_counter() + 2e-6 * (i1 - i0)
                    while time.perf_counter() < end:
                        pass

            nb._on_threads(run, nblocks // 2, nthreads, 1)
            return len(ran)
    """
    code = textwrap.dedent(probe) + _PREEMPTED_HELPER.replace("from fusedloss import _core\n", "")
    assert _python(code) == ["1", "True", "True", "True", "0", "0"]


# prewake: a call that will run on several threads wakes the pool's workers before it checks its arguments
# (pool.hpp), so that they join the kernel at once. A woken worker that gets no job spins only briefly.
_PREWAKE_WITHOUT_A_JOB = """
import os, time
from fusedloss import _core
_core._pool_probe(64, 2, 0)  # starts the worker
time.sleep(0.05)
t0 = os.times()
for _ in range(50):
    _core.pool_prewake(2, SHORT)
    time.sleep(0.01)
t1 = os.times()
print(_core.pool_workers(), round((t1.user + t1.system - t0.user - t0.system) * 1000))
"""


@needs_cpp
@pytest.mark.parametrize("short_job", [False, True])
def test_a_worker_woken_ahead_of_a_job_that_never_comes_sleeps_again(short_job):
    workers, cpu_ms = map(int, _python(_PREWAKE_WITHOUT_A_JOB.replace("SHORT", str(short_job))))
    assert workers == 1
    # 50 wake-ups, each waiting at most kPrewakeNs (0.1 ms) for a job (pausing on its core for half of it
    # ahead of a short one): a few ms of CPU in all; a worker that kept waiting awake would use the whole 0.5 s
    assert cpu_ms < 150, cpu_ms


# A worker woken on the caller's CPU moves to another one it may use, and keeps its own set of CPUs: the main
# thread pinned to one CPU, a busy process on each of the others (so the OS tends to wake the worker next to
# the caller), many short jobs announced by prewake; then the CPUs each worker may use.
_WORKER_ON_THE_CALLERS_CPU = """
import os, subprocess, sys, time
import numpy as np, fusedloss as fl
from fusedloss import _core
cpus = sorted(os.sched_getaffinity(0))
before = set(os.listdir("/proc/self/task"))
_core._pool_probe(64, 2, 0)  # starts the worker, free to use every CPU
worker = [int(t) for t in os.listdir("/proc/self/task") if t not in before]
os.sched_setaffinity(0, {cpus[0]})  # this thread only (Linux: 0 is the calling thread)
spin = "import os, time; os.sched_setaffinity(0, {{{}}}); end = time.time() + 60\\nwhile time.time() < end: pass"
busy = [subprocess.Popen([sys.executable, "-c", spin.format(c)]) for c in cpus[1:]]  # each ends by itself too
try:
    p = np.zeros(200_000); y = np.zeros_like(p); g = np.empty_like(p)
    fl.set_num_threads(2)
    for _ in range(300):
        _core.pool_prewake(2, True)
        fl.mse.grad(p, y, backend="cpp", grad_out=g)
        time.sleep(0.001)
finally:
    for b in busy:
        b.kill()
        b.wait()
time.sleep(0.05)  # a worker preempted while it moved finishes moving
print(len(worker), sorted(os.sched_getaffinity(worker[0])) == cpus)
"""


@needs_cpp
@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
def test_a_worker_moved_off_the_callers_cpu_keeps_its_own_set_of_cpus():
    assert _python(_WORKER_ON_THE_CALLERS_CPU) == ["1", "True"]


# The move itself, on the calling thread: it leaves the CPU it runs on as a woken worker leaves its waker's,
# is counted, and gets its own set of CPUs back.
_LEAVE_THE_CPU = """
import os
from fusedloss import _core
cpus = sorted(os.sched_getaffinity(0))
before = _core.pool_state()["moves"]
was, now = _core._pool_leave_cpu()
print(was in cpus, now in cpus, now != was, sorted(os.sched_getaffinity(0)) == cpus,
      _core.pool_state()["moves"] - before)
"""


@needs_cpp
@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
def test_a_thread_leaves_its_cpu_and_keeps_its_own_set_of_cpus():
    assert _python(_LEAVE_THE_CPU) == ["True", "True", "True", "True", "1"]


@pytest.fixture
def prewakes(monkeypatch):
    from fusedloss.backends import cpp

    seen = []  # (threads, short_job) of each prewake
    monkeypatch.setattr(cpp, "pool_prewake", lambda threads, short_job: seen.append((threads, short_job)))
    before = _config.get_num_threads()
    fl.set_num_threads(2)
    yield cpp.PREWAKE_MIN, seen
    fl.set_num_threads(before)


def _twice(call, seen):
    call()  # the first call resolves (and caches) the backend
    seen.clear()
    call()
    return list(seen)


@needs_cpp
def test_calls_large_enough_for_two_threads_wake_the_workers_first(prewakes):
    from fusedloss.backends import cpp

    n, seen = prewakes
    p = np.zeros(n)
    assert _twice(lambda: fl.mse.grad_hess(p, p, backend="cpp"), seen) == [(2, True)]
    assert _twice(lambda: fl.mse.value_and_grad(p[: n - 1], p[: n - 1], backend="cpp"), seen) == []
    x = np.zeros((n // 10 + 1, 10))
    t = np.zeros(n // 10 + 1, np.int64)
    assert _twice(lambda: fl.cross_entropy.value_and_grad(x, t, backend="cpp"), seen) == [(2, True)]
    # a long kernel: the workers wait for it yielding their cores (pool.cpp)
    big = np.zeros(cpp.PREWAKE_SHORT)
    assert _twice(lambda: fl.mse.grad(big, big, backend="cpp"), seen) == [(2, False)]
    assert _twice(lambda: fl.mse.grad(big[1:], big[1:], backend="cpp"), seen) == [(2, True)]
    with fl.use_backend("numpy"):
        assert _twice(lambda: fl.mse.grad_hess(p, p), seen) == []
    fl.set_num_threads(1)
    assert _twice(lambda: fl.mse.grad_hess(p, p, backend="cpp"), seen) == []


@needs_cpp
def test_a_boosting_objective_wakes_the_workers_before_it_reads_the_labels(prewakes):
    import fusedloss.boosting as fb

    n, seen = prewakes

    class Data:
        def get_label(self):
            assert seen, "the labels were read before the workers were woken"
            return np.zeros(n)

        def get_weight(self):
            return None

    objective = fb.lightgbm_objective("binary_cross_entropy_with_logits", backend="cpp")
    with fl.use_backend("cpp"):
        objective(np.zeros(n), Data())
        seen.clear()
        objective(np.zeros(n), Data())
    # once by the objective, before it reads; at most once more by the loss call it makes
    assert 1 <= len(seen) <= 2 and set(seen) == {(2, True)}, seen


@needs_cpp
def test_the_scans_of_a_call_keep_to_its_thread_cap(monkeypatch):
    """The passes over targets and weights before a kernel (their checks, the divisor of a weighted mean) run on
    the threads its kernel may use: a call's cap (fusedloss.torch passes torch's count, an XGBoost objective one)
    holds for them too."""
    from fusedloss import _validate
    from fusedloss._validate import VALUE_AND_GRAD

    seen = []
    for name in ("extremes", "extremes_and_sum", "array_sum"):
        fn = _validate._compiled(name)

        def spy(x, threads, fn=fn, name=name):
            seen.append((name, threads))
            return fn(x, threads)

        monkeypatch.setitem(_validate._COMPILED, name, spy)
    monkeypatch.setattr(_config, "_num_threads", 2)
    rng = np.random.default_rng(0)
    n = 100_000
    p, y, w = rng.normal(size=n), rng.random(n), rng.random(n)
    x = rng.normal(size=(n // 10, 10))
    q = rng.dirichlet(np.ones(10), n // 10)
    calls = [
        lambda cap: fl.binary_cross_entropy_with_logits._run(p, y, "mean", w, "cpp", {}, VALUE_AND_GRAD, nthreads=cap),
        lambda cap: fl.binary_cross_entropy_with_logits._run(p, y, "sum", w, "cpp", {}, VALUE_AND_GRAD, nthreads=cap),
        lambda cap: fl.cross_entropy._run(x, q, "mean", w[: n // 10], "cpp", {}, VALUE_AND_GRAD, nthreads=cap),
    ]
    for call in calls:
        for cap, want in ((1, 1), (None, 2)):
            seen.clear()
            call(cap)
            assert seen and {t for _, t in seen} == {want}, (cap, seen)
