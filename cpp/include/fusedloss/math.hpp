// Numerically delicate scalar helpers: their one home on the C++ side.
//
// Each mirrors the function of the same name in src/fusedloss/_pointwise.py (same formula, same branch
// cut-offs). Everything is templated on T (float or double) and computes in T. log1pexp, sigmoid_pair and
// log_cosh_value use the vectorisable elementary functions of vecmath.hpp (fusedloss::vm, no libm calls),
// so loops calling them vectorise; the others still call libm (float versions: expf, log1pf, ...), so
// float32 data never pays for double math. FUSEDLOSS_INLINE (vecmath.hpp) forces inlining, which a loop
// needs to vectorise.
//
// These must stay correct without -ffast-math: they rely on inf and nan following IEEE rules (exp(-inf) = 0,
// nan comparisons are false), which -ffinite-math-only would break.
#pragma once

#include "fusedloss/isa.hpp"

#include <cmath>
#include <limits>

#include "fusedloss/vecmath.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN

template <class T>
inline constexpr T ln2 = T(0.6931471805599453094172321214581766L);

// sign(x) with sign(0) = 0 (PyTorch's subgradient of |x|) and sign(nan) = nan.
// x * 0 gives 0 for +-0 and nan for nan, so the last case needs no test of its own; written as selects
// so that loops calling it still vectorise.
template <class T>
FUSEDLOSS_INLINE T sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));
}

// softplus log(1 + exp(x)) without overflow.
// log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}): exp only ever sees a non-positive argument, so it cannot
// overflow, and log1p keeps full precision when e^{-|x|} is tiny. x = -inf gives 0, x = +inf gives +inf.
template <class T>
FUSEDLOSS_INLINE T softplus_tail(T x) {
  return vm::log1p(vm::exp(-std::fabs(x)));  // log1p(e^{-|x|}): what softplus(x) and softplus(-x) share
}
template <class T>
FUSEDLOSS_INLINE T log1pexp(T x) {
  return (x > T(0) ? x : T(0)) + softplus_tail(x);
}

// log(e^a + e^b) without overflow or underflow: the larger plus log1p(e^(smaller - larger)), so a mixture whose
// parts underflow (e^-800) keeps its log; -inf and -inf give -inf (not -inf - -inf = nan), a nan operand gives
// nan. Python: _pointwise.logaddexp.
template <class T>
FUSEDLOSS_INLINE T logaddexp(T a, T b) {
  if (a != a || b != b) return a + b;
  const T hi = a > b ? a : b, lo = a > b ? b : a;
  if (hi == -std::numeric_limits<T>::infinity()) return hi;
  return hi + vm::log1p(vm::exp(lo - hi));
}

// -log((1 - w) + w e^d) for 0 < w < 1 (lw = log w, lw1 = log(1 - w)): log(p / m) of a mixture m = w q + (1 - w) p
// from d = log(q / p). As log p - log m it would lose its digits where it is small (w -> 0, or q -> p): so
// -log1p(w expm1(d)) where w e^d <= 1 and d < 1, -log1p(w e^d - w) where w e^d <= 1 and d >= 1 (w e^d >= e w:
// nothing cancels), -logaddexp(lw1, lw + d) where w e^d > 1 (no overflow). Python: _pointwise.neg_log_mix.
FUSEDLOSS_INLINE double neg_log_mix(double d, double w, double lw, double lw1) {
  const double u = lw + d;
  if (u > 0.0) return -logaddexp(lw1, u);
  if (d < 1.0) return -std::log1p(w * std::expm1(d));
  return -std::log1p(std::exp(u) - w);
}

// Binary cross-entropy on a logit: (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y (pw the positive
// weight). For x >= 0 both terms are >= 0. For x < 0 that form cancels (x + softplus(-x) loses every digit
// of a tiny result), so there it is the equal lw softplus(x) - pw y x, whose terms are both >= 0. Python:
// _pointwise.bce_logits_value (same cut-off). On its side of the cut-off each softplus is exactly
// softplus_tail(x) (the max(., 0) part is 0), so both sides share one exp and one log1p, computed once: the
// compiler does not merge two softplus calls' selects on its own, and the vectorised loop was twice as long.
template <class T>
FUSEDLOSS_INLINE T bce_logits_value(T x, T y, T pw) {
  const T lw = T(1) + (pw - T(1)) * y;
  const T sp = softplus_tail(x);
  return x >= T(0) ? (T(1) - y) * x + lw * sp : lw * sp - pw * y * x;
}

// a exp(z) for a >= 0, finite wherever the product is (Python: _pointwise.mul_exp, same cut-off): a = 0
// gives 0 for any z (not 0 * inf), and for |z| > 80, where exp(z) alone leaves float's normal range (double's
// from 709) while a exp(z) may not (a tiny target times a huge exponential), exp(log(a) + z). Below the
// cut-off the product of two normal numbers rounds once. Both sides are computed and one selected, so loops
// calling it vectorise.
template <class T>
FUSEDLOSS_INLINE T mul_exp(T a, T z) {
  const T direct = a * vm::exp(z);
  const T via_log = vm::exp(vm::log(a) + z);
  const T r = std::fabs(z) <= T(80) ? direct : via_log;
  return a == T(0) ? T(0) : r;
}

// log((1 + p) / (1 + y)) for p, y > -1 without cancellation (Python: _pointwise.log_ratio1p, same cut-offs):
// q = (1 + p) / (1 + y) in [1/2, 2]: log1p((p - y) / (1 + y)) (r near 0, argument rounded three times);
// q outside the normal range (1 + y near 0, |r| > 700): log1p(p) - log1p(y); else log(q) (|r| >= log 2).
// All three are computed and one selected, so loops calling it vectorise.
template <class T>
FUSEDLOSS_INLINE T log_ratio1p(T p, T y) {
  const T b = T(1) + y;
  const T q = (T(1) + p) / b;
  const T near = vm::log1p((p - y) / b);
  const T far = vm::log(q);
  const T split = vm::log1p(p) - vm::log1p(y);
  const bool normal = q >= std::numeric_limits<T>::min() && q <= std::numeric_limits<T>::max();
  return (q >= T(0.5) && q <= T(2)) ? near : (normal ? far : split);
}

// u - log1p(u) for u >= 0, accurate as u -> 0 (Python: _pointwise.u_minus_log1p, same cut-off and terms):
// u <= 1/2: v = u / (2 + u), u - log1p(u) = 2 v^2 / (1 - v) - 2 v^3 P(v^2), P(w) = sum_k w^(k-1) / (2k+1)
// = (atanh(v) - v) / v^3 (12 terms for v <= 1/5); nothing cancels (the second term is at most v/3 of the
// first). Above: u - log1p(u) directly (at most a factor 5 lost). Both sides are computed and one selected.
template <class T>
FUSEDLOSS_INLINE T u_minus_log1p(T u) {
  const T v = u / (T(2) + u);
  const T w = v * v;
  T P = T(1.0 / 25);
  P = T(1.0 / 23) + w * P;
  P = T(1.0 / 21) + w * P;
  P = T(1.0 / 19) + w * P;
  P = T(1.0 / 17) + w * P;
  P = T(1.0 / 15) + w * P;
  P = T(1.0 / 13) + w * P;
  P = T(1.0 / 11) + w * P;
  P = T(1.0 / 9) + w * P;
  P = T(1.0 / 7) + w * P;
  P = T(1.0 / 5) + w * P;
  P = T(1.0 / 3) + w * P;
  const T small = T(2) * w / (T(1) - v) - T(2) * v * w * P;
  const T large = u - vm::log1p(u);
  return u <= T(0.5) ? small : large;
}

// 1 / n! for n = 0..26 (the series of expm1_minus).
namespace detail {
struct InvFactorials {
  double v[27];
  constexpr InvFactorials() : v() {
    double f = 1.0;
    v[0] = 1.0;
    for (int n = 1; n < 27; ++n) {
      f *= double(n);
      v[n] = 1.0 / f;
    }
  }
};
inline constexpr InvFactorials kInvFactorials{};
}  // namespace detail

// expm1(L) - L = L^2/2 + L^3/6 + ... >= 0: the difference cancels for small |L|, so there the series (|L| < 1/2:
// 24 terms reach the last bit), in Horner form. Both sides are computed and one selected, so that a loop calling
// it vectorises. Python: _pointwise.expm1_minus (same series and cut-off, summed term by term).
template <class T>
FUSEDLOSS_INLINE T expm1_minus(T L) {
  T p = T(detail::kInvFactorials.v[26]);
  for (int n = 25; n >= 2; --n) p = p * L + T(detail::kInvFactorials.v[n]);
  const T small = (L * L) * p;
  const T large = vm::expm1(L) - L;
  return std::fabs(L) < T(0.5) ? small : large;
}

// expm1(t) / t with its limit 1 at t = 0 (Python: _pointwise.exprel): expm1's relative accuracy for every t,
// no 0 / 0 at t = 0 (t = -inf gives 0).
template <class T>
FUSEDLOSS_INLINE T exprel(T t) {
  return t == T(0) ? T(1) : vm::expm1(t) / t;
}

// log1p(v) / v for v >= 0 with its limit 1 at v = 0 (Python: _pointwise.log1p_ratio): a v so small that its
// multiples would lose bits to gradual underflow still gives its ratio to full precision.
template <class T>
FUSEDLOSS_INLINE T log1p_ratio(T v) {
  return v == T(0) ? T(1) : vm::log1p(v) / v;
}

// The logistic function at x and at -x, sigmoid(x) = 1 / (1 + exp(-x)) and sigmoid(-x), from one exp and ONE
// division, with exp only of -|x| (no overflow, no inf/inf): e = exp(-|x|), i = 1 / (1 + e); the pair is
// (i, e i) for x >= 0 and (e i, i) for x < 0. Each side keeps its relative precision (for very negative x,
// sigmoid(x) = e / (1 + e) is tiny but accurate; nothing is formed as 1 - s). Every kernel that needs a
// sigmoid takes it from here, so they all round it the same way: grad() and grad_hess() agree to the bit.
template <class T>
FUSEDLOSS_INLINE void sigmoid_pair(T x, T& s, T& sm) {
  const T e = vm::exp(-std::fabs(x));
  const T i = T(1) / (T(1) + e);
  const T ei = e * i;
  s = x >= T(0) ? i : ei;
  sm = x >= T(0) ? ei : i;
}

// log(cosh(d)) for ad = |d| >= 0, within 1.6 ulp for every finite ad (vecmath.hpp: vm::log_cosh).
// ad >= 1: ad - log 2 + log1p(exp(-2 ad)). exp sees a negative argument only, so no overflow even at the
//          largest finite float (cosh itself would overflow from |d| ~ 89 in float, ~ 710 in double).
// ad <  1: that form subtracts log 2 from a number close to it (cancellation as ad -> 0); there vm::log_cosh
//          uses a minimax polynomial in ad^2 (the Python twin uses log1p(expm1(ad)^2 / (2 (1 + expm1(ad))))).
// nan stays nan, inf gives inf. Its exp(-2 ad) is the one log_cosh's gradient and Hessian need too.
template <class T>
FUSEDLOSS_INLINE T log_cosh_value(T ad) {
  return vm::log_cosh(ad);
}

// sqrt(1 + r^2) without overflow, for pseudo-Huber (Python: math.hypot(1, r)).
// Below the cut-off r^2 cannot overflow (1e30 < FLT_MAX) and sqrt of the correctly rounded 1 + r^2 is
// within an ulp of the exact value. Above it 1 + r^2 already rounds to r^2 in both precisions, so the
// result is |r| (relative error < 1e-30), which is exactly what hypot returns there too; and, unlike a
// call to hypot, both branches vectorise (sqrt is an instruction). nan and inf take the second branch.
template <class T>
FUSEDLOSS_INLINE T hypot1(T r) {
  const T ar = std::fabs(r);
  return ar < T(1e15) ? std::sqrt(T(1) + r * r) : ar;
}

// log(p) clamped below at -100, as PyTorch's binary_cross_entropy does, so that p = 0 (log = -inf) costs a
// finite 100 instead of inf. Written as a select on the log itself rather than a test of p > 0: log(0) = -inf
// falls under the clamp, and a nan p gives a nan log, which fails the comparison and stays nan (fmax would
// drop it). No branch, so loops calling it vectorise.
template <class T>
FUSEDLOSS_INLINE T clamped_log(T p) {
  const T lp = vm::log(p);
  return lp < T(-100) ? T(-100) : lp;
}

// log(1 - p) clamped below at -100 (the negative-class term of binary_cross_entropy). log1p(-p) keeps full
// precision for small p, where log(1 - p) would lose it to the rounding of 1 - p; p = 1 gives -inf -> -100.
template <class T>
FUSEDLOSS_INLINE T clamped_log1m(T p) {
  const T lp = vm::log1p(-p);
  return lp < T(-100) ? T(-100) : lp;
}

// tanh(u), and sech2 = 1 - tanh(u)^2, both accurate to a few ulp for every u (softcap and its derivative).
// sech2 = 4 e2 / (1 + e2)^2 with e2 = exp(-2|u|): no cancellation anywhere. Taking 1 - tau^2 from a rounded
// tau = tanh(u) instead cancels: in float32 it is 5e-5 relative at |u| = 4 and worthless beyond |u| ~ 9 (in
// float64 about 16 - 0.87 |u| significant digits remain). vm::tanh computes the same exp(-2|u|) for
// |u| >= atanh(1/2), which the compiler shares. |u| = inf gives tanh +-1 and sech2 0; nan stays nan.
// (_pointwise.capped and _reference take tanh and 1 - tanh^2 directly.)
template <class T>
FUSEDLOSS_INLINE T tanh_sech2(T u, T& sech2) {
  const T e2 = vm::exp(T(-2) * std::fabs(u));
  const T d = T(1) + e2;
  sech2 = T(4) * e2 / (d * d);
  return vm::tanh(u);
}

// q^g for q > 0, as exp(g log q) evaluated in double (vm, so that loops calling it vectorise): a float32
// exp(g log q) would carry g |log q| ulp of error (4e-6 relative at q = 1e-9, g = 2). In double the
// relative error is about |g log q| * 2^-53: under 1e-13 wherever q^g is a normal double (|g log q| < 708).
// q = 0 is the caller's case (limits).
template <class T>
FUSEDLOSS_INLINE T pow_pos(T q, T g) {
  return T(vm::exp(double(g) * vm::log(double(q))));
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
