"""Concurrency: first use from many threads in a fresh process, mixed calls from many threads, and
``use_backend`` in several threads at once. Each case runs in a fresh interpreter, where the backends have
not been imported yet (the first calls race to import them)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import backend_skip_reason

_FIRST_USE = """
import threading, numpy as np, fusedloss as fl
BACKEND = {backend!r}
barrier = threading.Barrier(8)
out, errors = [], []
def work(i):
    p = np.linspace(-1, 1, 1000) + i; y = np.zeros(1000)
    barrier.wait()
    try:
        v = fl.mse(p, y, backend=BACKEND)
        out.append((i, v))
    except BaseException as exc:
        errors.append(repr(exc))
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors
want = {{i: float(np.mean((np.linspace(-1, 1, 1000) + i) ** 2)) for i in range(8)}}
assert len(out) == 8 and all(abs(v - want[i]) <= 1e-12 * want[i] for i, v in out), out
print(sorted({{fl.mse._backend(BACKEND, np.dtype(np.float64)).NAME}}))
"""


def _python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FUSEDLOSS_BACKEND"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("backend", ["numba", "auto", "numpy"])
def test_first_use_from_many_threads(backend):
    if backend != "auto" and backend_skip_reason(backend):
        pytest.skip(backend_skip_reason(backend))
    best = next(b for b in ("cpp", "numba", "numpy") if backend_skip_reason(b) is None)
    assert _python(_FIRST_USE.format(backend=backend)) == repr([best if backend == "auto" else backend])


def test_mixed_calls_and_use_backend_from_many_threads():
    code = """
    import threading, numpy as np, fusedloss as fl
    rng = np.random.default_rng(0)
    p = rng.standard_normal(50_000); y = rng.standard_normal(50_000)
    x = rng.standard_normal((300, 40)); t = rng.integers(0, 40, 300)
    names = [b["name"] for b in fl.backends() if b["available"] and not b["device"]]
    want = {}
    for b in names:
        want[b] = (fl.huber(p, y, delta=0.5, backend=b), fl.log_cosh.grad(p, y, backend=b).sum(),
                   fl.cross_entropy(x, t, label_smoothing=0.1, backend=b))
    errors = []
    barrier = threading.Barrier(8)
    def work(i):
        b = names[i % len(names)]
        barrier.wait()
        try:
            for _ in range(10):
                with fl.use_backend(b):
                    got = (fl.huber(p, y, delta=0.5), fl.log_cosh.grad(p, y).sum(),
                           fl.cross_entropy(x, t, label_smoothing=0.1))
                    assert fl.get_backend() == b
                assert got == want[b], (b, got, want[b])
        except BaseException as exc:
            errors.append(repr(exc))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
    assert not errors, errors
    print("ok", fl.get_backend())
    """
    assert _python(code) == "ok auto"
