"""The vectorisable elementary functions of the Numba CPU backend (``backends/_vecmath.py``).

Each is compiled in a loop, as the backend uses it, and compared with mpmath (or, for the special values,
with NumPy's C-library functions): within a few ulp (the maximum asserted) over the whole float64 range,
subnormals and results that overflow or underflow included, and the C99 results for zeros, infinities,
nan, overflow and underflow.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import mpmath  # the test extra installs it
import numba

from fusedloss.backends import _vecmath

FUNCS = ("exp", "expm1", "log", "log1p", "tanh")
MAX_ULP = {"exp": 2.0, "expm1": 2.0, "log": 2.0, "log1p": 2.0, "tanh": 3.0}
MP = {"exp": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p, "tanh": mpmath.tanh}


def _compile(name, nargs=1):
    namespace = {"math": _vecmath.math_module()}
    args = ", ".join(f"a{k}" for k in range(nargs))
    elems = ", ".join(f"a{k}[i]" for k in range(nargs))
    exec(f"def kernel({args}, out):\n    for i in range(out.shape[0]):\n        out[i] = math.{name}({elems})\n",
         namespace)
    return numba.njit(error_model="numpy")(namespace["kernel"])


_KERNELS: dict = {}


def run(name, *arrays):
    if name not in _KERNELS:
        _KERNELS[name] = _compile(name, len(arrays))
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    out = np.empty_like(arrays[0])
    _KERNELS[name](*arrays, out)
    return out


def _samples(name, rng):
    u = rng.uniform
    return {
        "exp": np.concatenate([u(-745, 709.78, 400), u(-1, 1, 200), rng.standard_normal(100) * 1e-8]),
        "expm1": np.concatenate([u(-40, 709.78, 300), u(-1, 1, 200), rng.standard_normal(100) * 1e-9,
                                 u(709.4, 709.78, 50)]),
        "log": np.concatenate([np.exp(u(-744, 709, 400)), u(0.5, 2, 200), 1 + rng.standard_normal(100) * 1e-9,
                               [5e-324, 1e-310, 1.7e308]]),
        "log1p": np.concatenate([u(-1, 1, 300), rng.standard_normal(100) * 1e-9, np.exp(u(-700, 700, 200)),
                                 -np.exp(u(-40, -1e-9, 100))]),
        "tanh": np.concatenate([u(-25, 25, 300), rng.standard_normal(100) * 1e-9, u(-1, 1, 200)]),
    }[name]


def _ulp_error(got, x, f):
    worst = 0.0
    for g, v in zip(got.tolist(), x.tolist()):
        ref = f(mpmath.mpf(v))
        r = float(ref)
        if r == 0.0 or math.isinf(r) or abs(r) < 2.2250738585072014e-308:  # exact specials / subnormals
            assert g == r or abs(g - r) <= 5e-324 * 2, (v, g, r)
            continue
        ulp = math.ulp(r)
        worst = max(worst, float(abs(mpmath.mpf(g) - ref) / ulp))
    return worst


@pytest.mark.parametrize("name", FUNCS)
def test_within_a_few_ulp_of_mpmath(name):
    x = _samples(name, np.random.default_rng(7))
    with mpmath.workprec(113):
        err = _ulp_error(run(name, x), x, MP[name])
    assert err <= MAX_ULP[name], f"{name}: {err:.2f} ulp"


SPECIAL = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 0.5, -0.5, 1.0, -1.0, 20.0, -20.0, 700.0,
                    709.78, 709.79, 710.0, -708.0, -745.0, -745.2, -746.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("name", FUNCS)
def test_special_values_match_the_c_library(name):
    got = run(name, SPECIAL)
    with np.errstate(all="ignore"):
        want = getattr(np, name)(SPECIAL)
    for x, g, w in zip(SPECIAL, got, want):
        if np.isnan(w):
            assert np.isnan(g), (name, x, g)
        elif np.isinf(w) or w == 0.0:
            assert g == w, (name, x, g, w)
        else:
            assert abs(g - w) <= 4 * math.ulp(w) + 5e-324 * 2, (name, x, g, w)


def test_pow_accuracy_and_c99_special_cases():
    rng = np.random.default_rng(3)
    x, y = np.exp(rng.uniform(-30, 30, 2000)), rng.uniform(-20, 20, 2000)
    got, want = run("pow", x, y), np.power(x, y)
    ok = np.isfinite(want) & (want > 2.2250738585072014e-308)
    # exp(y log x): the error grows with |y log x| (documented bound: (2 + |y log x|) ulp)
    assert np.all(np.abs(got[ok] - want[ok]) <= (2 + np.abs(y * np.log(x)))[ok] * 2.3e-16 * want[ok])
    vals = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, np.inf, -np.inf, np.nan, 1e-310]
    xs, ys = (a.ravel() for a in np.meshgrid(vals, vals))
    got = run("pow", xs, ys)
    with np.errstate(all="ignore"):
        want = np.power(xs, ys)
    for a, b, g, w in zip(xs, ys, got, want):
        if np.isnan(w):
            assert np.isnan(g), (a, b, g)
        else:
            assert g == pytest.approx(w, rel=1e-14) and math.copysign(1, g) == math.copysign(1, w), (a, b, g, w)

def test_whole_range_in_binades():
    """Every binade of the arguments, subnormal to huge, both signs: log/log1p of positive ones, exp/expm1/tanh
    of all (most overflow to inf or underflow to 0, which must then be exact)."""
    rng = np.random.default_rng(11)
    mags = np.ldexp(rng.uniform(1, 2, 2200), rng.integers(-1074, 1024, 2200))
    signed = mags * rng.choice([-1.0, 1.0], mags.size)
    for name, x in (("log", mags), ("log1p", mags), ("exp", signed), ("expm1", signed), ("tanh", signed)):
        with mpmath.workprec(113):
            err = _ulp_error(run(name, x), x, MP[name])
        assert err <= MAX_ULP[name], f"{name}: {err:.2f} ulp"


def test_real_arguments_are_computed_in_float64():
    namespace = {"math": _vecmath.math_module()}
    exec("def kernel(a, k):\n    return math.exp(a), math.log1p(k), math.pow(a, k), math.tanh(True)\n", namespace)
    e, l, p, t = numba.njit(namespace["kernel"])(np.float32(0.5), 3)
    assert e == run("exp", [0.5])[0] and l == run("log1p", [3.0])[0] and t == run("tanh", [1.0])[0]
    assert p == run("pow", [0.5], [3.0])[0] and abs(p - 0.125) <= 4 * math.ulp(0.125)  # exp(3 log 0.5)
    assert all(isinstance(v, float) for v in (e, l, p, t))


def test_log_cosh_value_compiled_as_the_backend_does():
    """``_pointwise.log_cosh_value`` (its two sides share one log1p, selected without a branch) within 8 ulp
    of mpmath from subnormal to huge |d|, around the switch at 1 and at the specials, +0 at 0."""
    from fusedloss import _pointwise

    # the function as the backend compiles it: its own module's globals with ``math`` replaced
    fn = types.FunctionType(_pointwise.log_cosh_value.__code__,
                            {**vars(_pointwise), "math": _vecmath.math_module()})
    jit = numba.njit(inline="always", error_model="numpy")(fn)

    @numba.njit(error_model="numpy")
    def kernel(x, out):
        for i in range(out.shape[0]):
            out[i] = jit(x[i])

    rng = np.random.default_rng(5)
    x = np.concatenate([np.ldexp(rng.uniform(1, 2, 600), rng.integers(-1074, 10, 600)), rng.uniform(0, 3, 400),
                        1.0 + rng.standard_normal(100) * 1e-9, [0.0, 5e-324, 1.0, 20.0, 40.0, 1e10, 1e300]])
    out = np.empty_like(x)
    kernel(x, out)
    with mpmath.workprec(4200):  # cosh(d) - 1 ~ d^2 / 2 must survive next to 1 down to d = 2^-1074
        err = _ulp_error(out, x, lambda v: mpmath.log(mpmath.cosh(v)))
    assert err <= 8.0, f"log_cosh_value: {err:.2f} ulp"
    assert math.copysign(1.0, out[-7]) == 1.0  # log cosh 0 = +0
    inf_out = np.empty(2)
    kernel(np.array([np.inf, np.nan]), inf_out)
    assert inf_out[0] == np.inf and np.isnan(inf_out[1])


def test_exp_diff_as_float32_within_2_ulp_and_its_specials():
    """``exp_diff_as(v, 0, 1, like)`` with a float32 ``like``: float32 arithmetic (``_exp32``) on v rounded to float32,
    within 2 ulp of the exact exp over float32's whole range (subnormal results within 1 unit of 2^-149),
    overflow to inf, underflow to 0, nan for nan; with a float64 ``like``, the float64 ``exp``."""
    @numba.njit(error_model="numpy")
    def single(x, out):
        for i in range(out.shape[0]):
            out[i] = _vecmath.exp_diff_as(x[i], 0.0, 1.0, x[i])

    @numba.njit(error_model="numpy")
    def double(x, out):
        for i in range(out.shape[0]):
            out[i] = _vecmath.exp_diff_as(x[i], 0.0, 1.0, 0.0)

    rng = np.random.default_rng(13)
    x = np.concatenate([rng.uniform(-110, 95, 200_000), rng.standard_normal(1000) * 1e-6,
                        [88.72, 88.73, -87.33, -103.28, -103.97, -104.0, 0.0]]).astype(np.float32)
    out = np.empty(x.size)
    single(x, out)
    assert np.all(out == out.astype(np.float32))  # a float32 result, widened
    exact = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (rounded >= np.finfo(np.float32).tiny)
    ulps = np.abs(out[normal] - exact[normal]) / np.spacing(rounded[normal]).astype(np.float64)
    assert ulps.max() <= 2.0, f"{ulps.max():.2f} ulp"
    sub = ~normal & np.isfinite(rounded)
    assert np.all(np.abs(out[sub] - exact[sub]) <= 2.0**-149)
    assert np.all(out[~np.isfinite(rounded)] == np.inf)
    specials = np.array([np.inf, -np.inf, np.nan, -0.0, 200.0, -200.0], np.float32)
    got = np.empty(specials.size)
    single(specials, got)
    assert got[0] == np.inf and got[1] == 0.0 and np.isnan(got[2]) and got[3] == 1.0
    assert got[4] == np.inf and got[5] == 0.0
    x64 = rng.uniform(-700, 700, 1000)
    d = np.empty(x64.size)
    double(x64, d)
    assert np.array_equal(d, run("exp", x64))
