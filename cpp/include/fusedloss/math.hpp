// Numerically delicate scalar helpers: their one home on the C++ side.
//
// Each mirrors the function of the same name in src/fusedloss/_pointwise.py (same formula, same branch
// cut-offs). Everything is templated on T (float or double) and computes in T: the float versions call the
// float libm functions (expf, log1pf, ...), so float32 data never pays for double math.
//
// These must stay correct without -ffast-math: they rely on inf and nan following IEEE rules (exp(-inf) = 0,
// nan comparisons are false), which -ffinite-math-only would break.
#pragma once

#include <cmath>

namespace fusedloss {

template <class T>
inline constexpr T ln2 = T(0.6931471805599453094172321214581766L);

// sign(x) with sign(0) = 0 (PyTorch's subgradient of |x|) and sign(nan) = nan.
// x * 0 gives 0 for +-0 and nan for nan, so the last case needs no test of its own; written as selects
// so that loops calling it still vectorise.
template <class T>
inline T sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));
}

// softplus log(1 + exp(x)) without overflow.
// log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}): exp only ever sees a non-positive argument, so it cannot
// overflow, and log1p keeps full precision when e^{-|x|} is tiny. x = -inf gives 0, x = +inf gives +inf.
template <class T>
inline T log1pexp(T x) {
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

// logistic 1 / (1 + exp(-x)) with exp only of -|x| (no overflow, no inf/inf): for x >= 0 the usual form,
// for x < 0 the equivalent e / (1 + e), which keeps relative precision for very negative x.
template <class T>
inline T sigmoid(T x) {
  const T e = std::exp(-std::fabs(x));
  return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// log(cosh(d)) for ad = |d| >= 0, accurate to a few ulp for every finite ad.
// ad >= 1: ad + log1p(exp(-2 ad)) - log 2. exp sees a negative argument only, so no overflow even at the
//          largest finite float (cosh itself would overflow from |d| ~ 89 in float, ~ 710 in double).
// ad <  1: that form subtracts log 2 from a number close to it (cancellation as ad -> 0), so use
//          cosh(d) - 1 = em^2 / (2 (1 + em)) with em = expm1(ad), and log1p of that: every step is a
//          product/quotient of accurate positive numbers, so the relative error stays a few ulp down to 0.
// nan falls through to the second branch and stays nan.
template <class T>
inline T log_cosh_value(T ad) {
  if (ad < T(1)) {
    const T em = std::expm1(ad);
    return std::log1p(em * em / (T(2) * (T(1) + em)));
  }
  return ad + std::log1p(std::exp(T(-2) * ad)) - ln2<T>;
}

// sqrt(1 + r^2) without overflow, for pseudo-Huber (Python: math.hypot(1, r)).
// Below the cut-off r^2 cannot overflow (1e30 < FLT_MAX) and sqrt of the correctly rounded 1 + r^2 is
// within an ulp of the exact value. Above it 1 + r^2 already rounds to r^2 in both precisions, so the
// result is |r| (relative error < 1e-30), which is exactly what hypot returns there too; and, unlike a
// call to hypot, both branches vectorise (sqrt is an instruction). nan and inf take the second branch.
template <class T>
inline T hypot1(T r) {
  const T ar = std::fabs(r);
  return ar < T(1e15) ? std::sqrt(T(1) + r * r) : ar;
}

}  // namespace fusedloss
