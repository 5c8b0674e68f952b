"""Elementary functions that LLVM can vectorise, for the Numba CPU backend.

Why: ``math.exp`` and friends compile to calls into the C library, one element at a time, and LLVM can
only vectorise a loop around them with a vector math library (SVML), which the llvmlite wheels do not
carry. So a loop over ``exp`` stays scalar while NumPy uses its own SIMD ``exp``. The functions here are
plain arithmetic (range reduction, a polynomial, the exponent assembled from bits), with selects instead
of branches, so that a loop calling them vectorises like one calling ``+`` and ``*``.

Why Numba intrinsics that emit LLVM IR, not ``@njit`` functions: Numba compiles every jitted function
through its whole pipeline (typing, lowering, an LLVM module of its own, linking), about 0.1-0.3 s each
even for a few lines, and ``njit(inline="always")`` copies the callee's Numba IR into every call site and
types it again there, which multiplied the cold compile time of the losses that call ``exp`` many times
(cross_entropy's row function) about tenfold. An intrinsic costs nothing to compile: its body below is
emitted straight into the caller's LLVM function at each call site, where LLVM optimises it with the
loop around it.

How they are used: ``math_module()`` returns a stand-in for the ``math`` module (everything of ``math``,
with ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh`` and ``pow`` replaced), which the CPU backend puts
in the namespace it compiles ``_pointwise`` (and custom losses) in (``_jit.compile_namespace``). The point
functions are unchanged and the CUDA backend keeps ``math`` (CUDA's own libdevice functions).

Accuracy (float64, measured against mpmath in ``tests/test_vecmath.py``): ``exp``, ``expm1``, ``log``,
``log1p`` within 2 ulp, ``tanh`` within 3 ulp, ``pow(x, y)`` within ``(2 + |y log x|)`` ulp (it is
``exp(y log x)``; below 2e-13 relative wherever the result is a normal number). Special values follow
C99 (inf, nan, signed infinities of ``pow``, overflow to inf, gradual underflow); ``expm1(-0.0)`` is
+0.0, not -0.0. Arguments of any real type are computed in float64, and the result is a float64.
``exp_diff_as(a, b, scale, like)`` is ``exp((a - b) scale)`` in the precision of ``like``'s type: for float32
data, float32 arithmetic (within 2 ulp of float32; eight lanes of an AVX2 vector, about 3x the float64
``exp``'s throughput), which the cross_entropy rows use for their exponentials as the C++ rows do.

Polynomials are Taylor series (the reduced argument is small enough that 1/k! and 1/(2k+1) need no
minimax fit; a few extra terms cost less than an unverified fit) evaluated by Horner's rule with
``llvm.fmuladd`` (one rounding per step where the CPU has FMA; the same instruction in the scalar and
the vector code, so results do not depend on where a loop's vector part ends).
"""

from __future__ import annotations

import math
import types as _pytypes

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_F32 = ir.FloatType()
_I32 = ir.IntType(32)

# --- constants ----------------------------------------------------------------------------------------

INV_LN2 = 1.4426950408889634
# ln 2 split: LN2_HI has 32 significant bits, so k * LN2_HI is exact for |k| < 2^21; LN2_LO = ln 2 - LN2_HI
LN2_HI = 0.6931471803691238  # 0x1.62e42fee00000p-1
LN2_LO = 1.9082149292705877e-10
SHIFTER = 6755399441055744.0  # 1.5 * 2^52: t = v + SHIFTER rounds v to an integer held in t's low bits
SHIFTER_BITS = 0x4338000000000000
SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2): log's mantissa is reduced to [sqrt(1/2), sqrt(2))
TWO512 = 1.3407807929942597e154  # 2^512
TWO54 = 18014398509481984.0  # 2^54
MIN_NORMAL = 2.2250738585072014e-308
INF = math.inf
NAN = math.nan

# expm1(r) = r + r^2 (E2 + r (E3 + ...)), Ek = 1/k!, k up to 13: for |r| <= ln2/2 the first omitted term
# r^14/14! is 4e-18, 1/50 ulp
EXPM1_COEFFS = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))  # E13 first (Horner's order)

# float32 exp (``_exp32``): ln 2 split as in Cephes' expf (LN2_HI32 has 9 significant bits, so k LN2_HI32 is exact
# for the |k| <= 150 of float32's range), and expm1(r) = r + r^2 (E2 + ... + E7 r^5) for |r| <= ln2/2: the first
# omitted term r^8/8! is below 6e-9, 1/20 ulp of float32
LN2_HI32 = 0.693359375
LN2_LO32 = -2.12194440e-4
SHIFTER32 = 12582912.0  # 1.5 * 2^23
SHIFTER32_BITS = 0x4B400000
EXPM1_COEFFS32 = tuple(1.0 / math.factorial(k) for k in range(7, 1, -1))

# log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.1716 for f in [sqrt(1/2) - 1, sqrt(2) - 1]:
# 2 atanh(s) = 2s + s R(z), z = s^2, R(z) = 2 (z/3 + z^2/5 + ... + z^10/21); the first omitted term
# 2 s^23 / 23 is below 1e-18 of 2s
LOG_COEFFS = tuple(2.0 / (2 * k + 1) for k in range(10, 0, -1))  # L10 first


# --- a small emitter: the formulas below read as arithmetic, each step one LLVM instruction -------------


class _Emit:
    """LLVM instructions on float64 (``ir.DoubleType``) and int64 values, for the function bodies below
    (``single``: float32 and int32, for ``_exp32``).

    Comparisons are the ones Numba emits for Python's operators on floats: ordered (false when an operand
    is nan) except ``ne`` (unordered: true when one is nan)."""

    def __init__(self, builder, single=False):
        self.b = builder
        self.ft, self.it = (_F32, _I32) if single else (_F64, _I64)

    def f(self, v):
        return v if isinstance(v, ir.Value) else ir.Constant(self.ft, float(v))

    def i(self, v):
        return v if isinstance(v, ir.Value) else ir.Constant(self.it, int(v))

    def add(self, x, y):
        return self.b.fadd(self.f(x), self.f(y))

    def sub(self, x, y):
        return self.b.fsub(self.f(x), self.f(y))

    def mul(self, x, y):
        return self.b.fmul(self.f(x), self.f(y))

    def div(self, x, y):
        return self.b.fdiv(self.f(x), self.f(y))

    def _intr(self, name, *args):
        fn = self.b.module.declare_intrinsic(name, [self.ft], ir.FunctionType(self.ft, [self.ft] * len(args)))
        return self.b.call(fn, [self.f(a) for a in args])

    def fma(self, x, y, z):
        """x * y + z, fused where the target has FMA (``llvm.fmuladd``)."""
        return self._intr("llvm.fmuladd", x, y, z)

    def fabs(self, x):
        return self._intr("llvm.fabs", x)

    def floor(self, x):
        return self._intr("llvm.floor", x)

    def copysign(self, x, y):
        return self._intr("llvm.copysign", x, y)

    def lt(self, x, y):
        return self.b.fcmp_ordered("<", self.f(x), self.f(y))

    def gt(self, x, y):
        return self.b.fcmp_ordered(">", self.f(x), self.f(y))

    def eq(self, x, y):
        return self.b.fcmp_ordered("==", self.f(x), self.f(y))

    def ne(self, x, y):
        return self.b.fcmp_unordered("!=", self.f(x), self.f(y))

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def sel(self, cond, x, y):
        return self.b.select(cond, self.f(x), self.f(y))

    def isel(self, cond, x, y):
        return self.b.select(cond, self.i(x), self.i(y))

    def and_(self, *c):
        out = c[0]
        for v in c[1:]:
            out = self.b.and_(out, v)
        return out

    def or_(self, x, y):
        return self.b.or_(x, y)

    def not_(self, x):
        return self.b.not_(x)

    def bits(self, x):
        """The IEEE bits of a float, as an integer of its width (a bitcast: no instruction on x86)."""
        return self.b.bitcast(x, self.it)

    def from_bits(self, n):
        return self.b.bitcast(n, self.ft)

    def iadd(self, x, y):
        return self.b.add(self.i(x), self.i(y))

    def isub(self, x, y):
        return self.b.sub(self.i(x), self.i(y))

    def shl(self, x, k):
        return self.b.shl(self.i(x), self.i(k))

    def ashr(self, x, k):
        return self.b.ashr(self.i(x), self.i(k))

    def igt(self, x, y):
        return self.b.icmp_signed(">", self.i(x), self.i(y))

    def ilt(self, x, y):
        return self.b.icmp_signed("<", self.i(x), self.i(y))

    def horner(self, z, coeffs):
        p = self.f(coeffs[0])
        for c in coeffs[1:]:
            p = self.fma(p, z, c)
        return p


# --- the functions ------------------------------------------------------------------------------------


def _exp_reduce(e, x):
    """(n, em) with x = n ln2 + r, em = expm1(r), |r| <= ln2/2, for x clamped to [-746, 710].

    Beyond that range exp is 0 or inf (and expm1 -1 or inf) whatever the polynomial says, and the clamp
    keeps n within what ``_pow2`` can build. A nan x gives some finite n and a meaningless em: callers
    return x for nan.
    """
    xc = e.sel(e.gt(x, -746.0), x, -746.0)
    xc = e.sel(e.lt(xc, 710.0), xc, 710.0)
    t = e.add(e.mul(xc, INV_LN2), SHIFTER)
    kf = e.sub(t, SHIFTER)
    n = e.isub(e.bits(t), SHIFTER_BITS)
    r = e.sub(e.sub(xc, e.mul(kf, LN2_HI)), e.mul(kf, LN2_LO))  # the first product is exact, the difference too
    p = e.horner(r, EXPM1_COEFFS)
    return n, e.fma(e.mul(r, r), p, r)


def _pow2(e, n):
    """2^n for integer n in [-1022, 1023]."""
    return e.from_bits(e.shl(e.iadd(n, 1023), 52))


def _exp(e, x):
    """e^x; 0 below -745.2, inf above 709.8, gradual underflow in between (two scalings by 2^(n/2))."""
    n, em = _exp_reduce(e, x)
    n1 = e.ashr(n, 1)
    res = e.mul(e.mul(e.add(em, 1.0), _pow2(e, n1)), _pow2(e, e.isub(n, n1)))
    return e.sel(e.isnan(x), x, res)


def _exp32(e, x):
    """e^x in float32 arithmetic (eight lanes per AVX2 vector where float64 has four): within 2 ulp of float32,
    0 below -103.98, inf above 88.73, gradual underflow (two scalings by 2^(n/2)), nan for nan."""
    xc = e.sel(e.gt(x, -104.0), x, -104.0)
    xc = e.sel(e.lt(xc, 89.0), xc, 89.0)
    t = e.add(e.mul(xc, INV_LN2), SHIFTER32)
    kf = e.sub(t, SHIFTER32)
    n = e.isub(e.bits(t), SHIFTER32_BITS)
    r = e.sub(e.sub(xc, e.mul(kf, LN2_HI32)), e.mul(kf, LN2_LO32))
    em = e.fma(e.mul(r, r), e.horner(r, EXPM1_COEFFS32), r)
    n1 = e.ashr(n, 1)
    s1 = e.from_bits(e.shl(e.iadd(n1, 127), 23))
    s2 = e.from_bits(e.shl(e.iadd(e.isub(n, n1), 127), 23))
    res = e.mul(e.mul(e.add(em, 1.0), s1), s2)
    return e.sel(e.isnan(x), x, res)


def _expm1(e, x):
    """e^x - 1, accurate near 0 (no cancellation): 2^n em + (2^n - 1) with 2^n - 1 exact for small n."""
    n, em = _exp_reduce(e, x)
    nc = e.isel(e.igt(n, -1022), n, -1022)  # below, the result is -1 either way
    nc = e.isel(e.ilt(nc, 1023), nc, 1023)
    s = _pow2(e, nc)
    res = e.fma(s, em, e.sub(s, 1.0))
    # n = 1024 (x in [709.44, 710]): 2^1024 overflows; scale in two steps, the "- 1" is below an ulp
    big = e.sub(e.mul(e.mul(e.add(em, 1.0), TWO512), TWO512), 1.0)
    res = e.sel(e.igt(n, 1023), big, res)
    return e.sel(e.isnan(x), x, res)


def _log(e, x):
    """Natural logarithm: x = 2^k m, m in [sqrt(1/2), sqrt(2)), log x = k ln2 + log1p(m - 1)."""
    tiny = e.lt(x, MIN_NORMAL)  # subnormal (or zero / negative, fixed below): scale into the normal range
    xs = e.sel(tiny, e.mul(x, TWO54), x)
    ix = e.bits(xs)
    k = e.ashr(e.isub(ix, SQRT_HALF_BITS), 52)  # the unbiased exponent, one more when m would be < sqrt(1/2)
    m = e.from_bits(e.isub(ix, e.shl(k, 52)))
    # float(k) without an int -> double conversion (which does not vectorise everywhere)
    kf = e.sub(e.sub(e.from_bits(e.iadd(k, SHIFTER_BITS)), SHIFTER), e.sel(tiny, 54.0, 0.0))
    f = e.sub(m, 1.0)  # exact (Sterbenz)
    s = e.div(f, e.add(f, 2.0))
    z = e.mul(s, s)
    R = e.mul(e.horner(z, LOG_COEFFS), z)
    # 2s = f - s f, so log1p(f) = f - s (f - R): the correction is small next to f
    lf = e.sub(f, e.mul(s, e.sub(f, R)))
    res = e.fma(kf, LN2_HI, e.fma(kf, LN2_LO, lf))
    res = e.sel(e.eq(x, 0.0), -INF, res)
    res = e.sel(e.lt(x, 0.0), NAN, res)
    return e.sel(e.not_(e.lt(x, INF)), e.add(x, x), res)  # inf stays inf, nan stays nan


def _log1p(e, x):
    """log(1 + x), accurate near 0: log(u) for u = 1 + x rounded, plus the rounding error over u."""
    u = e.add(x, 1.0)
    c = e.div(e.sub(x, e.sub(u, 1.0)), u)
    c = e.sel(e.and_(e.gt(u, 0.0), e.lt(u, INF)), c, 0.0)
    return e.add(_log(e, u), c)


def _tanh(e, x):
    """tanh x = -em / (2 + em) with em = expm1(-2|x|), given x's sign: no cancellation, no overflow."""
    em = _expm1(e, e.mul(e.fabs(x), -2.0))
    return e.copysign(e.div(e.sub(0.0, em), e.add(em, 2.0)), x)


def _pow(e, x, y):
    """x^y as exp(y log|x|), with the signs and special cases of C's pow."""
    res = _exp(e, e.mul(y, _log(e, e.fabs(x))))
    yint = e.eq(e.floor(y), y)
    yodd = e.and_(yint, e.ne(e.mul(e.floor(e.mul(y, 0.5)), 2.0), y))
    neg = e.lt(e.copysign(1.0, x), 0.0)
    res = e.sel(e.and_(neg, yodd), e.mul(res, -1.0), res)  # (0 - res would lose the sign of 0)
    res = e.sel(e.and_(e.lt(x, 0.0), e.gt(x, -INF), e.not_(yint), e.eq(y, y)), NAN, res)
    one = e.or_(e.eq(x, 1.0), e.and_(e.eq(x, -1.0), e.eq(e.fabs(y), INF)))  # 1^y (nan too), (-1)^+-inf
    res = e.sel(one, 1.0, res)
    return e.sel(e.eq(y, 0.0), 1.0, res)  # x^0, nan^0


# --- Numba intrinsics ----------------------------------------------------------------------------------


def _real(t):
    return isinstance(t, (types.Float, types.Integer, types.Boolean))


def _float64_intrinsic(name, body, nargs):
    """A Numba intrinsic float64(real[, real]) whose IR ``body(emitter, *float64 values)`` emits inline.

    (Numba's intrinsics cannot take ``*args``: one typer per arity.)"""

    def codegen(context, builder, sig, llargs):
        vals = [context.cast(builder, v, t, types.float64) for v, t in zip(llargs, sig.args)]
        return body(_Emit(builder), *vals)

    if nargs == 1:
        def typer(typingctx, x):
            return (types.float64(x), codegen) if _real(x) else None
    else:
        def typer(typingctx, x, y):
            return (types.float64(x, y), codegen) if _real(x) and _real(y) else None

    typer.__name__ = name
    return intrinsic(typer)


@intrinsic
def exp_diff_as(typingctx, a, b, scale, like):
    """exp((a - b) scale) in the precision of ``like``'s type: when ``like`` is a float32, a, b and scale are
    rounded to float32 and the difference, the product and the exp (``_exp32``) are float32 arithmetic, else
    all float64 (``_exp``); the result is a float64 either way. The softmax rows take the exponentials of
    float32 logits this way, as the C++ kernels do (math in the data's type). For float32 logits a and their
    max b the rounding changes nothing (the float32 difference is the exact one, rounded once), and the
    float32 lanes are twice as many as float64's."""
    if not all(_real(t) for t in (a, b, scale, like)):
        return None
    single = like == types.float32
    ty = types.float32 if single else types.float64

    def codegen(context, builder, sig, llargs):
        av, bv, sv = (context.cast(builder, v, t, ty) for v, t in zip(llargs[:3], sig.args[:3]))
        d = builder.fmul(builder.fsub(av, bv), sv)
        if single:
            return builder.fpext(_exp32(_Emit(builder, single=True), d), _F64)
        return _exp(_Emit(builder), d)

    return types.float64(a, b, scale, like), codegen


exp = _float64_intrinsic("exp", _exp, 1)
expm1 = _float64_intrinsic("expm1", _expm1, 1)
log = _float64_intrinsic("log", _log, 1)
log1p = _float64_intrinsic("log1p", _log1p, 1)
tanh = _float64_intrinsic("tanh", _tanh, 1)
pow = _float64_intrinsic("pow", _pow, 2)  # noqa: A001 (the name it stands in for)

_REPLACED = {"exp": exp, "expm1": expm1, "log": log, "log1p": log1p, "tanh": tanh, "pow": pow}


def overrides() -> dict:
    """What the CPU backend substitutes in ``_pointwise``'s namespace: ``math`` (``math_module``) and
    ``exp_diff_as``."""
    return {"math": math_module(), "exp_diff_as": exp_diff_as}


def math_module() -> _pytypes.ModuleType:
    """A stand-in for ``math`` in compiled code: ``math`` itself with the functions above."""
    mod = _pytypes.ModuleType("fusedloss.backends._vecmath_math")
    mod.__dict__.update({k: v for k, v in vars(math).items() if not k.startswith("__")})
    mod.__dict__.update(_REPLACED)
    return mod
