// Vectorisable elementary functions (fusedloss::vm): exp, expm1, log, log1p, tanh, and log_cosh, for float
// and double.
//
// Why: a loop that calls std::exp / std::log cannot be vectorised by GCC or Clang without a vector math
// library (and then only under -ffast-math), so every transcendental-heavy loss (bce, log_cosh, focal,
// cross-entropy) ran one libm call per element. These functions are plain inline C++ with no calls, no
// tables and no data-dependent branches: range reduction by bit manipulation, a minimax polynomial, and
// selects (`c ? a : b`) for the special cases. A loop that calls them vectorises at whatever ISA the
// translation unit is compiled for (SSE2, AVX2, AVX-512; NEON on aarch64), and computes in T: float data is
// computed in float.
//
// Accuracy: max error in ulp of the result (error / ulp of the exact value's binade; correctly rounded
// would be 0.5), measured vectorised, both with and without FMA contraction:
//                 exp    expm1  log    log1p  tanh   log_cosh
//   float         0.89   1.50   0.91   0.98   1.50   1.56    every one of the 2^32 float32 inputs, against
//                                                             the double-precision libm result
//   double        0.90   1.27   0.88   0.95   1.50   1.62    1.25e8 random inputs per function (uniform and
//                                                             log-uniform over the range; exp and expm1 also
//                                                             uniform on |x| < 0.75), against long double
// Results differ in the last bit between code compiled with and without FMA contraction (-ffp-contract=off
// makes every ISA level compute the same bits).
//
// Special values follow the maths (and C99 Annex F): exp(-inf) = 0, exp(x) = +inf beyond the overflow
// threshold, subnormal results are produced (not flushed); expm1(-inf) = -1; log(0) = -inf,
// log(x < 0) = nan, log(+inf) = +inf; log1p(-1) = -inf, log1p(x < -1) = nan; tanh(+-inf) = +-1;
// log_cosh(+-inf) = +inf; f(+-0) = +-0 for expm1, log1p, tanh; nan in gives nan out everywhere.
//
// Requirements: IEEE binary32/binary64, round-to-nearest, no -ffast-math / -ffinite-math-only (the special
// cases are selects on comparisons with inf and nan, which those flags would fold away). To VECTORISE on
// SSE2 and AVX2, GCC needs -fno-trapping-math (Clang's default): under GCC's default -ftrapping-math a
// select whose arm computes something (`c ? x * s : x`) is not if-converted, so the loop stays scalar
// (AVX-512 gets away with masked instructions). It changes no result.

// Techniques (standard numerics; the coefficients were fitted for this file with a weighted Remez exchange
// in mpmath, then rounded to T, and the rounded polynomials re-checked):
//   exp:   x = n ln2 + r, |r| <= ln2/2 (n by the 1.5 * 2^p shifter trick, r by a two-constant Cody-Waite
//          subtraction exact without FMA); e^r = 1 + r + r^2 P(r); 2^n applied as two factors
//          2^(n/2) 2^(n - n/2) so that results down to the smallest subnormal and up to overflow come out
//          right without a branch.
//   expm1: the same reduction; e^x - 1 = 2 (2^(n-1) u + (2^(n-1) - 1/2)) with u = e^r - 1: exact scaling
//          for every n, and for n = 0 the result is u itself (full relative accuracy near 0). r is kept as
//          r_hi + r_lo (r_hi exact) so that the cancelling sum for small n is exact.
//   log:   x = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact); log(x) = k ln2 + log1p(f);
//          float:  log1p(f) = f + f^2 P(f) (degree 9);
//          double: log1p(f) = f - (f^2/2 - s (f^2/2 + z Q(z))), s = f / (2 + f), z = s^2 (Q degree 6).
//   log1p: u = 1 + x rounded, reduced like log; the rounding error c = x - (u - 1) enters as log1p's
//          first-order correction c / u, added to the small terms.
//   log_cosh: |x| < 1: polynomial in x^2; above: |x| - ln2 + log1p(exp(-2|x|)) (see the function).
//   tanh:  |x| < atanh(1/2): odd minimax polynomial; above: 1 - 2 e / (1 + e), e = exp(-2|x|); the sign
//          is copied from x. (Both sides are computed and one is selected: no branch.)
//
// Every function is force-inlined so that the loop around the call, not a call, is what gets vectorised.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "fusedloss/isa.hpp"

// Force-inline: a loop vectorises only if every call in its body is inlined, and in a translation unit
// that instantiates many kernels GCC's inliner runs out of budget and leaves plain `inline` functions as
// calls (seen: log_cosh_value in the float64 log_cosh kernels). Loss point functions and math.hpp helpers
// should use it too.
#ifndef FUSEDLOSS_INLINE
#if defined(__GNUC__) || defined(__clang__)
#define FUSEDLOSS_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FUSEDLOSS_INLINE __forceinline
#else
#define FUSEDLOSS_INLINE inline
#endif
#endif

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace vm {
namespace detail {

template <class T>
struct fp;

template <>
struct fp<float> {
  using U = std::uint32_t;
  static constexpr int mant = 23;                     // explicit significand bits
  static constexpr U one_bits = 0x3f800000u;          // 1.0
  static constexpr U sqrt_half_bits = 0x3f3504f3u;    // sqrt(1/2), rounded
  static constexpr U mant_mask = 0x007fffffu;
  static constexpr U sign_mask = 0x80000000u;
  static constexpr U magic_int_bits = 0x4b000000u;    // 2^23: from_bits(magic | k) = 2^23 + k
  static constexpr float magic_int = 8388608.0f;      // 2^23
  static constexpr float shifter = 12582912.0f;       // 1.5 * 2^23
  static constexpr U shifter_bits = 0x4b400000u;
  static constexpr int bias = 127;
  static constexpr U emax_field = 254;                // largest finite biased exponent
  static constexpr float log2e = 0x1.715476p+0f;
  static constexpr float ln2_hi = 0x1.62ep-1f;        // 13 significant bits: k * ln2_hi is exact
  static constexpr float ln2_lo = 0x1.0bfbe8p-15f;    // ln2 - ln2_hi, rounded
  static constexpr float ln2 = 0x1.62e430p-1f;
  // exp clamps: below exp_lo the result rounds to 0, above exp_hi to +inf; n stays in [-160, 129].
  static constexpr float exp_lo = -104.0f;            // e^-104 = 6.8e-46 < 2^-150 (half the least subnormal)
  static constexpr float exp_hi = 89.0f;              // e^89 = 4.5e38 > FLT_MAX
  static constexpr float expm1_lo = -30.0f;           // e^-30 < 2^-25: expm1 rounds to -1 below this
  static constexpr float min_normal = 0x1p-126f;
  static constexpr float subnormal_scale = 0x1p25f;
  static constexpr int subnormal_shift = 25;
  static constexpr float log1p_big = 0x1p100f;        // beyond this, 1 + x = x and the correction is 0
};

template <>
struct fp<double> {
  using U = std::uint64_t;
  static constexpr int mant = 52;
  static constexpr U one_bits = 0x3ff0000000000000ull;
  static constexpr U sqrt_half_bits = 0x3fe6a09e667f3bcdull;
  static constexpr U mant_mask = 0x000fffffffffffffull;
  static constexpr U sign_mask = 0x8000000000000000ull;
  static constexpr U magic_int_bits = 0x4330000000000000ull;  // 2^52
  static constexpr double magic_int = 4503599627370496.0;     // 2^52
  static constexpr double shifter = 6755399441055744.0;       // 1.5 * 2^52
  static constexpr U shifter_bits = 0x4338000000000000ull;
  static constexpr int bias = 1023;
  static constexpr U emax_field = 2046;
  static constexpr double log2e = 0x1.71547652b82fep+0;
  static constexpr double ln2_hi = 0x1.62e42feep-1;           // 32 significant bits
  static constexpr double ln2_lo = 0x1.a39ef35793c76p-33;
  static constexpr double ln2 = 0x1.62e42fefa39efp-1;
  static constexpr double exp_lo = -746.0;                    // e^-746 < 2^-1075
  static constexpr double exp_hi = 710.0;                     // e^710 > DBL_MAX
  static constexpr double expm1_lo = -40.0;                   // e^-40 < 2^-54
  static constexpr double min_normal = 0x1p-1022;
  static constexpr double subnormal_scale = 0x1p54;
  static constexpr int subnormal_shift = 54;
  static constexpr double log1p_big = 0x1p900;
};

// Bit casts (std::memcpy of a register-sized object compiles to nothing and vectorises as a plain
// reinterpretation; C++17 has no std::bit_cast).
template <class T>
FUSEDLOSS_INLINE typename fp<T>::U to_bits(T x) {
  typename fp<T>::U u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
template <class T>
FUSEDLOSS_INLINE T from_bits(typename fp<T>::U u) {
  T x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// |x| and copysign(magnitude >= 0, s), by bits.
template <class T>
FUSEDLOSS_INLINE T abs(T x) {
  return from_bits<T>(to_bits(x) & ~fp<T>::sign_mask);
}
template <class T>
FUSEDLOSS_INLINE T with_sign_of(T mag, T s) {
  return from_bits<T>(to_bits(mag) | (to_bits(s) & fp<T>::sign_mask));
}

// Small unsigned integer (< 2^p) in U to T, exactly, without an int-to-float conversion (which has no
// SIMD instruction for 64-bit integers before AVX-512DQ): 2^p + e as a bit pattern, minus 2^p.
template <class T>
FUSEDLOSS_INLINE T small_uint_to_fp(typename fp<T>::U e) {
  return from_bits<T>(fp<T>::magic_int_bits | e) - fp<T>::magic_int;
}

// The small part of e^r - 1 on |r| <= ln2/2 (and a hair beyond), r = r_hi + r_lo:
// e^r - 1 = r_hi + (r_lo + r^2 P(r)); the caller adds r_hi last (it is exact, and often cancels against
// the 2^n scaling terms). P is evaluated by Estrin's scheme (pairs of terms, then powers r^2, r^4): the
// same coefficients as Horner's rule, half its chain of dependent operations, which bounds these loops'
// speed (a float64 exp loop on AVX2: 26% faster than with Horner's rule).
FUSEDLOSS_INLINE float expm1_tail(float r, float r_lo) {
  const float r2 = r * r;
  const float p01 = 0x1p-1f + 0x1.555556p-3f * r;
  const float p23 = 0x1.5554e8p-5f + 0x1.11109ap-7f * r;
  const float p45 = 0x1.6d4426p-10f + 0x1.a1a1f6p-13f * r;
  return r_lo + r2 * (p01 + r2 * (p23 + r2 * p45));
}
FUSEDLOSS_INLINE double expm1_tail(double r, double r_lo) {
  const double r2 = r * r;
  const double r4 = r2 * r2;
  const double p01 = 0x1p-1 + 0x1.5555555555557p-3 * r;
  const double p23 = 0x1.5555555555559p-5 + 0x1.11111111100a4p-7 * r;
  const double p45 = 0x1.6c16c16c14468p-10 + 0x1.a01a01ac06033p-13 * r;
  const double p67 = 0x1.a01a01b298df8p-16 + 0x1.71de01d2b1427p-19 * r;
  const double p89 = 0x1.27e4bddb47661p-22 + 0x1.af4eae5c067d8p-26 * r;
  const double p8a = p89 + 0x1.1fa6cf26a9b3dp-29 * r2;
  const double p = (p01 + r2 * p23) + r4 * ((p45 + r2 * p67) + r4 * p8a);
  return r_lo + r2 * p;
}

// x = n ln2 + r_hi + r_lo, |r_hi + r_lo| <= ln2/2. Returns r_hi (exact: n ln2_hi has few bits and is
// close to x) and sets r_lo = -n ln2_lo and nb = n + 2^(bits of the exponent field) as an unsigned bit
// pattern, so that the exponent arithmetic below needs only unsigned shifts and adds (SSE2 has no 64-bit
// arithmetic shift). x must be clamped so that |n| < 2^(exponent bits); nan passes through as nan.
template <class T>
FUSEDLOSS_INLINE T exp_reduce(T x, T& r_lo, typename fp<T>::U& nb) {
  using F = fp<T>;
  using U = typename F::U;
  const T kd = x * F::log2e + F::shifter;  // round(x / ln2) in the low bits of kd
  const T n = kd - F::shifter;
  constexpr U offset = U(2) << (sizeof(T) == 4 ? 7 : 10);  // 256 (float) / 2048 (double) > |n|
  nb = to_bits(kd) - F::shifter_bits + offset;
  r_lo = -(n * F::ln2_lo);
  return x - n * F::ln2_hi;
}

// 2^n as two normal factors s1 * s2 = 2^n (n = nb - offset); each is within the exponent range for every
// n the clamps allow, so (y * s1) * s2 rounds once, also into the subnormal range, and overflows to inf.
template <class T>
FUSEDLOSS_INLINE void exp2_split(typename fp<T>::U nb, T& s1, T& s2) {
  using F = fp<T>;
  using U = typename F::U;
  // n1 = floor(n / 2), n2 = n - n1; biased exponents n1 + bias and n2 + bias, from nb = n + 2 * half.
  constexpr U half = U(1) << (sizeof(T) == 4 ? 7 : 10);  // offset / 2
  const U h = nb >> 1;                                   // n1 + half
  const U e1 = h - half + U(F::bias);
  const U e2 = nb - h - half + U(F::bias);
  s1 = from_bits<T>(e1 << F::mant);
  s2 = from_bits<T>(e2 << F::mant);
}

// k and f for x = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), for finite x > 0 that is a normal number.
// Returns f exactly; kd is k as T (exact); ek is the biased exponent field k + bias.
template <class T>
FUSEDLOSS_INLINE T log_reduce(T x, T& kd, typename fp<T>::U& ek) {
  using F = fp<T>;
  using U = typename F::U;
  // Shifting the bits by (1 - sqrt(1/2)) moves the split point sqrt(1/2) onto an exponent boundary.
  const U ix = to_bits(x) + (F::one_bits - F::sqrt_half_bits);
  ek = ix >> F::mant;
  kd = small_uint_to_fp<T>(ek) - T(F::bias);
  const T m = from_bits<T>((ix & F::mant_mask) + F::sqrt_half_bits);
  return m - T(1);  // exact (Sterbenz)
}

// log1p(f) for f in [sqrt(1/2) - 1, sqrt(2) - 1] (and a hair beyond): returns lp with log1p(f) = f + lp
// (the correction, computed to high relative accuracy; the caller adds f last).
FUSEDLOSS_INLINE float log1p_corr(float f) {
  float p = 0x1.241fb4p-4f;
  p = p * f - 0x1.e22a30p-4f;
  p = p * f + 0x1.e1f176p-4f;
  p = p * f - 0x1.fb2e28p-4f;
  p = p * f + 0x1.238044p-3f;
  p = p * f - 0x1.556574p-3f;
  p = p * f + 0x1.99a14cp-3f;
  p = p * f - 0x1.ffffd8p-3f;
  p = p * f + 0x1.55554ep-2f;
  p = p * f - 0x1p-1f;
  return f * (f * p);
}
FUSEDLOSS_INLINE double log1p_corr(double f) {
  const double s = f / (2.0 + f);
  const double z = s * s;
  double q = 0x1.2bedd3595e049p-3;
  q = q * z + 0x1.39f2195ff0b0bp-3;
  q = q * z + 0x1.746314b8abdd1p-3;
  q = q * z + 0x1.c71c618e3a2a6p-3;
  q = q * z + 0x1.2492492f0387cp-2;
  q = q * z + 0x1.9999999994901p-2;
  q = q * z + 0x1.5555555555559p-1;
  const double hfsq = 0.5 * f * f;
  // log1p(f) = 2 atanh(s) = 2 s + s z Q(z), and 2 s = f - s f = f - (hfsq - s hfsq): so
  // log1p(f) = f - (hfsq - s (hfsq + z Q(z))), the fdlibm arrangement that keeps f exact until the end.
  return s * (hfsq + z * q) - hfsq;
}

// tanh(a) = a + a * tanh_tail(a^2) on 0 <= a <= atanh(1/2) (and a hair beyond): tanh_tail(t) = t P(t).
FUSEDLOSS_INLINE float tanh_tail(float t) {
  float p = 0x1.4bc054p-9f;
  p = p * t - 0x1.178172p-7f;
  p = p * t + 0x1.657d10p-6f;
  p = p * t - 0x1.ba1462p-5f;
  p = p * t + 0x1.111106p-3f;
  p = p * t - 0x1.555556p-2f;
  return t * p;
}
FUSEDLOSS_INLINE double tanh_tail(double t) {
  double p = -0x1.5a58e38549febp-16;
  p = p * t + 0x1.653fd312b3eedp-14;
  p = p * t - 0x1.ec25b54551011p-13;
  p = p * t + 0x1.34c78673f55c5p-11;
  p = p * t - 0x1.7d9802ccb7960p-10;
  p = p * t + 0x1.d6d33c913b0fep-9;
  p = p * t - 0x1.226e330161863p-7;
  p = p * t + 0x1.664f487779b24p-6;
  p = p * t - 0x1.ba1ba1b9fffc1p-5;
  p = p * t + 0x1.111111111103dp-3;
  p = p * t - 0x1.5555555555555p-2;
  return t * p;
}

// log cosh(a) for a < 1, as t/2 + t (t P(t)), t = a^2: returns t P(t) (the caller adds t/2).
FUSEDLOSS_INLINE float log_cosh_small_tail(float t) {
  float p = -0x1.b2c09ep-16f;
  p = p * t + 0x1.73b204p-13f;
  p = p * t - 0x1.64f57cp-11f;
  p = p * t + 0x1.1b69eap-9f;
  p = p * t - 0x1.b9b8e0p-8f;
  p = p * t + 0x1.6c13d2p-6f;
  p = p * t - 0x1.55554cp-4f;
  return t * p;
}
FUSEDLOSS_INLINE double log_cosh_small_tail(double t) {
  double p = 0x1.f181d75186098p-28;
  p = p * t - 0x1.3b231db1b4462p-24;
  p = p * t + 0x1.95b2ff0e76a75p-22;
  p = p * t - 0x1.7187730cd2500p-20;
  p = p * t + 0x1.194f6c6a851a5p-18;
  p = p * t - 0x1.8cd90a772a5dbp-17;
  p = p * t + 0x1.127cec2c836bbp-15;
  p = p * t - 0x1.7d8f4028fa614p-14;
  p = p * t + 0x1.0d0a2897ac35fp-12;
  p = p * t - 0x1.833d84b437008p-11;
  p = p * t + 0x1.1ea5d2fca35b0p-9;
  p = p * t - 0x1.ba1ba1b51577bp-8;
  p = p * t + 0x1.6c16c16c0c1b4p-6;
  p = p * t - 0x1.55555555554c7p-4;
  return t * p;
}

// log1p(e) for 0 <= e <= e^-2 (no range reduction needed there): returns e^2 Q(e), log1p(e) = e + e^2 Q(e).
FUSEDLOSS_INLINE float log1p_small_tail(float e) {
  float q = -0x1.ea55aep-4f;
  q = q * e + 0x1.8c088ap-3f;
  q = q * e - 0x1.ff15e6p-3f;
  q = q * e + 0x1.5551b8p-2f;
  q = q * e - 0x1.fffff6p-2f;
  return e * (e * q);
}
FUSEDLOSS_INLINE double log1p_small_tail(double e) {
  double q = -0x1.4e7d63b0b3a2ep-5;
  q = q * e + 0x1.3ed9fc2589994p-4;
  q = q * e - 0x1.8f75b6521fe55p-4;
  q = q * e + 0x1.c5db45cfc2a0bp-4;
  q = q * e - 0x1.ffe55ecd3aef1p-4;
  q = q * e + 0x1.24918b12d978cp-3;
  q = q * e - 0x1.55554e528acc2p-3;
  q = q * e + 0x1.9999996f8108bp-3;
  q = q * e - 0x1.ffffffff6a952p-3;
  q = q * e + 0x1.5555555554cc3p-2;
  q = q * e - 0x1.ffffffffffffap-2;
  return e * (e * q);
}

}  // namespace detail

// e^x.
template <class T>
FUSEDLOSS_INLINE T exp(T x) {
  using F = detail::fp<T>;
  x = x < F::exp_lo ? F::exp_lo : x;  // nan: both comparisons false, nan stays
  x = x > F::exp_hi ? F::exp_hi : x;
  typename F::U nb;
  T r_lo;
  const T r_hi = detail::exp_reduce(x, r_lo, nb);
  const T u = r_hi + detail::expm1_tail(r_hi + r_lo, r_lo);  // e^r - 1
  T s1, s2;
  detail::exp2_split<T>(nb, s1, s2);
  return ((T(1) + u) * s1) * s2;
}

// e^x - 1, accurate near 0.
template <class T>
FUSEDLOSS_INLINE T expm1(T x) {
  using F = detail::fp<T>;
  using U = typename F::U;
  T xc = x < F::expm1_lo ? F::expm1_lo : x;
  xc = xc > F::exp_hi ? F::exp_hi : xc;
  U nb;
  T r_lo;
  const T r_hi = detail::exp_reduce(xc, r_lo, nb);
  const T w = detail::expm1_tail(r_hi + r_lo, r_lo);
  // s = 2^(n-1): normal for every n in the clamped range (float n in [-44, 128], double [-58, 1024])
  const T s = detail::from_bits<T>((nb - (U(2) << (sizeof(T) == 4 ? 7 : 10)) + U(F::bias - 1)) << F::mant);
  // (e^x - 1) / 2 = 2^(n-1) (e^r - 1) + 2^(n-1) - 1/2 = (s r_hi + (s - 1/2)) + s w: for small n the first
  // sum is exact (that is where it cancels), so the only roundings are in the small term and the last add.
  const T t = (s * r_hi + (s - T(0.5))) + s * w;
  const T res = T(2) * t;  // exact, or +inf when e^x overflows
  // |x| tiny: expm1(x) = x (this also keeps -0, and subnormal x, which t = x / 2 would round)
  return detail::abs(x) < T(sizeof(T) == 4 ? 0x1p-30 : 0x1p-60) ? x : res;
}

// Natural logarithm.
template <class T>
FUSEDLOSS_INLINE T log(T x) {
  using F = detail::fp<T>;
  using U = typename F::U;
  // Both sides of every select are computed unconditionally: an arithmetic operation inside a ?: arm is
  // one the compiler may not speculate under the default -ftrapping-math, which stops if-conversion and
  // so vectorisation on targets without masked instructions (SSE2, AVX2).
  const bool sub = x < F::min_normal;  // subnormal (or <= 0: patched below)
  const T x_scaled = x * F::subnormal_scale;
  const T xs = sub ? x_scaled : x;
  T kd;
  U ek;
  const T f = detail::log_reduce(xs, kd, ek);
  const T kd_sub = kd - T(F::subnormal_shift);
  kd = sub ? kd_sub : kd;
  const T lp = detail::log1p_corr(f);
  // k ln2_hi is exact; f is exact; the small terms are summed first.
  T res = kd * F::ln2_hi + (f + (lp + kd * F::ln2_lo));
  constexpr T inf = std::numeric_limits<T>::infinity();
  res = x == inf ? x : res;
  res = x == T(0) ? -inf : res;
  res = x < T(0) ? std::numeric_limits<T>::quiet_NaN() : res;
  res = x != x ? x : res;
  return res;
}

// log(1 + x), accurate near 0.
template <class T>
FUSEDLOSS_INLINE T log1p(T x) {
  using F = detail::fp<T>;
  using U = typename F::U;
  const T u = T(1) + x;
  T kd;
  U ek;
  const T f = detail::log_reduce(u, kd, ek);
  // u = 1 + x lost c = x - (u - 1) (exact where it matters); log1p(x) = log(u) + c / u + O(c^2), and
  // c / u = (c 2^-k) / (1 + f) with |c 2^-k| <= 2^-p: a few-percent approximation of 1 / (1 + f) is
  // plenty (it is added to the small terms, not to f, so f stays exact). 2^-k is a bit pattern; for huge
  // u (and inf/nan) it is garbage while c is 0: select it away.
  const T c = x - (u - T(1));
  const T scale = detail::from_bits<T>((U(2 * F::bias) - ek) << F::mant);
  const T c_scaled = c * scale;
  const T cs = u < F::log1p_big ? c_scaled : T(0);
  const T inv1pf = T(1) - f + f * f;  // 1 / (1 + f) within 7% on the reduced range
  const T lp = detail::log1p_corr(f);
  T res = kd * F::ln2_hi + (f + (lp + (kd * F::ln2_lo + cs * inv1pf)));
  constexpr T inf = std::numeric_limits<T>::infinity();
  res = x == inf ? x : res;
  res = x == T(-1) ? -inf : res;
  res = x < T(-1) ? std::numeric_limits<T>::quiet_NaN() : res;
  res = x == T(0) ? x : res;  // log1p(-0) = -0
  res = x != x ? x : res;
  return res;
}

// Hyperbolic tangent.
template <class T>
FUSEDLOSS_INLINE T tanh(T x) {
  const T a = detail::abs(x);
  // a >= atanh(1/2): tanh a = 1 - q, q = 2 e / (1 + e), e = e^-2a in (0, 1/3]: q <= 1/2 carries its own
  // rounding errors at half the result's ulp, and 1 - q is the only other rounding. (-expm1(-2a) /
  // (2 + expm1(-2a)) instead loses up to 2.5 ulp just below 1.) e = 0 for large a and inf: tanh = 1.
  const T e = vm::exp(T(-2) * a);
  const T big = T(1) - T(2) * e / (T(1) + e);
  // a < atanh(1/2): odd minimax polynomial a + a^3 P(a^2); a = +0 gives +0 (the sign comes below).
  const T small = a + a * detail::tanh_tail(a * a);
  const T t = a < T(0.5493061443340549) ? small : big;  // nan: big, which is nan
  return detail::with_sign_of(t, x);  // t >= 0 (or nan): copy x's sign, also onto +-0
}

// log(cosh(x)), for every finite x without overflow, accurate to ~1 ulp (float and double).
// |x| <  1: t/2 + t^2 P(t), t = x^2 (minimax; log cosh is even and analytic there).
// |x| >= 1: |x| - ln2 + log1p(e), e = exp(-2|x|) <= e^-2, log1p(e) by a short polynomial (no reduction);
//           ln2 is split so that |x| - ln2_hi is exact. The same cut-off as log_cosh_value in math.hpp.
// The exp(-2|x|) is the same expression as in vm::tanh and in log_cosh's Hessian, so a loss that needs all
// three computes it once (the compiler merges the identical inlined code).
template <class T>
FUSEDLOSS_INLINE T log_cosh(T x) {
  using F = detail::fp<T>;
  const T a = detail::abs(x);
  const T t = a * a;
  const T small = T(0.5) * t + t * detail::log_cosh_small_tail(t);
  const T e = vm::exp(T(-2) * a);
  const T big = (a - F::ln2_hi) + (e + (detail::log1p_small_tail(e) - F::ln2_lo));
  return a < T(1) ? small : big;  // nan: big, nan; inf: big, inf
}

}  // namespace vm
FUSEDLOSS_ISA_END
}  // namespace fusedloss
