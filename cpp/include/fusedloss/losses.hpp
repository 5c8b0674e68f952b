// Elementwise losses: one small struct per loss, the C++ twin of `<name>_point` in
// src/fusedloss/_pointwise.py (same names, same formulas, same branch cut-offs; _spec.py has the maths).
//
// Every struct has the same shape:
//
//   template <class T> struct <name> {
//     static constexpr const char* name = "<name>";   // the registry name
//     static constexpr std::size_t arity = <k>;        // how many scalar parameters (LossSpec.packed)
//     explicit <name>(const Params& prm);             // names them: delta(T(prm[0])), ...
//     template <bool V, bool G, bool H>
//     void point(T p, T y, T& l, T& g, T& h) const;   // value, gradient, Hessian at one element
//   };
//
// `point` computes only the outputs whose flag is set (`if constexpr`), so a gradient-only loop never
// evaluates, say, log_cosh's log1p; outputs whose flag is clear are left untouched. Math is in T: float32
// data is computed in float. Branches are written as selects where both sides are cheap, so that the
// generic loops in loops.hpp vectorise.
//
// The constructor is the one place that reads the parameter slots (in the registry's order, as the Python
// twin unpacks them); `point` reads the named members. The binding refuses a tuple of another length.
//
// A loss whose first parameter may come one per column of the last axis (pos_weight; the `cols`
// argument of elementwise) also declares `static constexpr bool column_param = true` and
//
//     template <bool V, bool G, bool H>
//     void point_col(T a, T p, T y, T& l, T& g, T& h) const;   // `point` with that parameter given
//
// and its `point` is `point_col` with the packed value.
//
// A loss with a per-call mode that changes its formula (poisson_nll's log_input, binary_focal's gamma == 2)
// declares `static constexpr bool specialised = true` and
//
//     template <class F> double specialise(const F& run) const;   // run(twin) with the mode's twin struct
//
// so that the loop runs a twin whose `point` has no branch on the mode (loops.hpp: elementwise).
//
// A loss on one binary score (a logit, or a probability) declares `static constexpr bool binary_metrics = true`
// to get the loss pass with the binary metrics (binary_metrics.hpp).
//
// Adding a loss: a struct here, and one registration line in cpp/src/bindings.cpp.
#pragma once

#include "fusedloss/isa.hpp"

#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "fusedloss/kernel_api.hpp"  // Params
#include "fusedloss/math.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace losses {

// l = d^2;  g = 2 d;  h = 2
template <class T>
struct mse {
  static constexpr const char* name = "mse";
  static constexpr std::size_t arity = 0;
  explicit mse(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    if constexpr (V) l = d * d;
    if constexpr (G) g = T(2) * d;
    if constexpr (H) h = T(2);
  }
};

// l = |d|;  g = sign(d), sign(0) = 0;  h = 0
template <class T>
struct mae {
  static constexpr const char* name = "mae";
  static constexpr std::size_t arity = 0;
  explicit mae(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    if constexpr (V) l = std::fabs(d);
    if constexpr (G) g = sign(d);
    if constexpr (H) h = T(0);
  }
};

// |d| <= delta: l = d^2/2, g = d, h = 1;  else l = delta (|d| - delta/2), g = delta sign(d), h = 0
template <class T>
struct huber {
  static constexpr const char* name = "huber";
  T delta;
  static constexpr std::size_t arity = 1;
  explicit huber(const Params& prm) : delta(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    const bool quad = ad <= delta;  // nan: false (linear branch, nan value and gradient, h = 0)
    if constexpr (V) l = quad ? T(0.5) * d * d : delta * (ad - T(0.5) * delta);
    if constexpr (G) g = quad ? d : delta * sign(d);
    if constexpr (H) h = quad ? T(1) : T(0);
  }
};

// huber weighted per side of the residual, a = alpha_left if d < 0 else alpha_right (nan: alpha_right):
// |d| <= delta: l = a d^2/2, g = a d, h = a;  else l = a delta (|d| - delta/2), g = a delta sign(d), h = 0
template <class T>
struct asymmetric_huber {
  static constexpr const char* name = "asymmetric_huber";
  static constexpr std::size_t arity = 3;
  T delta, alpha_left, alpha_right;
  explicit asymmetric_huber(const Params& prm)
      : delta(T(prm[0])), alpha_left(T(prm[1])), alpha_right(T(prm[2])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    const T a = d < T(0) ? alpha_left : alpha_right;
    const bool quad = ad <= delta;  // nan: false (linear branch, nan value and gradient, h = 0)
    if constexpr (V) l = a * (quad ? T(0.5) * d * d : delta * (ad - T(0.5) * delta));
    if constexpr (G) g = a * (quad ? d : delta * sign(d));
    if constexpr (H) h = quad ? a : T(0);
  }
};

// |d| < beta: l = d^2 / (2 beta), g = d / beta, h = 1 / beta;  else l = |d| - beta/2, g = sign(d), h = 0
// beta = 0 never takes the quadratic branch (its division by zero is computed in a discarded lane only).
template <class T>
struct smooth_l1 {
  static constexpr const char* name = "smooth_l1";
  T beta;
  static constexpr std::size_t arity = 1;
  explicit smooth_l1(const Params& prm) : beta(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    const bool quad = ad < beta;
    if constexpr (V) l = quad ? T(0.5) * d * d / beta : ad - T(0.5) * beta;
    if constexpr (G) g = quad ? d / beta : sign(d);
    if constexpr (H) h = quad ? T(1) / beta : T(0);
  }
};

// s = sqrt(1 + (d/delta)^2):  l = delta^2 (s - 1);  g = d / s;  h = 1 / s^3
// delta^2 (s - 1) is evaluated as delta^2 r^2 / (s + 1): no cancellation for small r, no overflow for
// large r (hypot1 in math.hpp).
template <class T>
struct pseudo_huber {
  static constexpr const char* name = "pseudo_huber";
  T delta, delta2;
  static constexpr std::size_t arity = 1;
  explicit pseudo_huber(const Params& prm) : delta(T(prm[0])), delta2(T(prm[0]) * T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T r = (p - y) / delta;
    const T s = hypot1(r);
    if constexpr (V) l = delta2 * r * (r / (T(1) + s));
    if constexpr (G) g = delta * (r / s);
    if constexpr (H) h = T(1) / (s * s * s);
  }
};

// u = |d| / c:  l = c^2 (u - log1p(u));  g = d / (1 + u);  h = 1 / (1 + u)^2  (LightGBM's fair loss)
template <class T>
struct fair {
  static constexpr const char* name = "fair";
  static constexpr std::size_t arity = 1;
  T c;
  explicit fair(const Params& prm) : c(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T u = std::fabs(d) / c;
    const T s = T(1) / (T(1) + u);  // squared below: no overflow of (1 + u)^2
    if constexpr (V) l = c * c * u_minus_log1p(u);
    if constexpr (G) g = d * s;
    if constexpr (H) h = s * s;
  }
};

// z = d / c:  l = c^2/2 log1p(z^2);  g = d / (1 + z^2);  h = (1 - z^2) / (1 + z^2)^2 (< 0 for |z| > 1).
// Beyond |z| = 1 in t = 1 / z, so that z^2 never overflows (_pointwise.cauchy_point, same cut-off):
// log1p(z^2) = 2 log|z| + log1p(t^2), g = c / (z + t), h = t^2 (t^2 - 1) / (1 + t^2)^2. Both sides computed,
// one selected.
template <class T>
struct cauchy {
  static constexpr const char* name = "cauchy";
  static constexpr std::size_t arity = 1;
  T c;
  explicit cauchy(const Params& prm) : c(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T z = d / c;
    const T a = std::fabs(z);
    const bool near = a <= T(1);
    const T zz = near ? z * z : T(0);
    const T t = near ? T(0) : T(1) / z;
    const T t2 = t * t;
    const T sn = T(1) / (T(1) + zz);
    const T sf = T(1) / (T(1) + t2);
    if constexpr (V) {
      const T lnear = vm::log1p(zz);
      const T lfar = T(2) * vm::log(a) + vm::log1p(t2);
      l = T(0.5) * c * c * (near ? lnear : lfar);
    }
    if constexpr (G) g = near ? d * sn : c / (z + t);
    if constexpr (H) h = near ? (T(1) - a) * (T(1) + a) * sn * sn : t2 * (t2 - T(1)) * sf * sf;
  }
};

// Barron's general robust loss, z = (d/c)^2, b = |alpha - 2|, u = 1 + z/b:  l = b/alpha (u^(alpha/2) - 1);
// g = d/c^2 u^(alpha/2 - 1);  h = u^(alpha/2 - 2) (1 + (alpha - 1) z/b) / c^2;  and the limits alpha = 2, -inf, inf.
// Computed in double for both dtypes, in the forms of _pointwise.general_robust_point (same branches and cut-offs;
// its docstring has the reasoning); the powers of w = |d| / (c sqrt(b)) through std::pow for double data (a
// double exp(y log w) would cost |y log w| ulp at |d| = 1e30; see pow_w). The mode (general, 2, +-inf) is per call:
// `specialise` runs its twin.
enum class RobustMode { general, two, inf };

template <class T, RobustMode M>
struct general_robust_mode {
  static constexpr const char* name = "general_robust";
  double alpha, c, b, a, sb, isb;
  // w^e for w > 1: std::pow for double data; for float data exp(e log w) in double, whose error (|e log w| ulp of
  // double, 1e-11 relative at e = 1000 and w = 1e38) is far inside float's, and which vectorises
  static FUSEDLOSS_INLINE double pow_w(double w, double e) {
    if constexpr (std::is_same_v<T, float>) {
      return vm::exp(e * vm::log(w));
    } else {
      return std::pow(w, e);
    }
  }
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const double r = double(p - y) / c;
    if constexpr (M == RobustMode::two) {
      if constexpr (V) l = T(0.5 * r * r);
      if constexpr (G) g = T(r / c);
      if constexpr (H) h = T(1.0 / c / c);
    } else if constexpr (M == RobustMode::inf) {
      const double s = alpha > 0.0 ? 1.0 : -1.0;  // alpha = inf or -inf: one twin, the sign a parameter
      const double z = r * r;
      const double e = vm::exp(s * 0.5 * z);
      if constexpr (V) l = T(s * vm::expm1(s * 0.5 * z));
      // e = 0 where z is beyond exp's range (alpha = -inf): the limits 0, not 0 * inf at |d| = inf
      if constexpr (G) g = T(e == 0.0 ? 0.0 : r * e / c);
      if constexpr (H) h = T(e == 0.0 ? 0.0 : e * (1.0 + s * z) / c / c);
    } else {
      const double w = std::fabs(r) * isb;
      double value, grad, hess;
      if (w <= 1.0) {
        const double v = w * w;
        const double z = r * r;
        const double hl = 0.5 * z * log1p_ratio(v);  // (b/2) L
        const double al = (alpha / b) * hl;          // a L
        const double e = vm::exp(alpha > 2.0 ? hl : -hl);
        const double ratio = (1.0 + ((alpha - 1.0) / b) * z) / (1.0 + v);
        value = std::fabs(al) <= 1.0 ? hl * exprel(al) : (b / alpha) * vm::expm1(al);
        grad = r * e / c;
        hess = e * ratio / c / c;
      } else {
        const double t = 1.0 / w;
        const double t2 = t * t;
        const double l1t = vm::log1p(t2);
        const double L = 2.0 * vm::log(w) + l1t;
        const double al = alpha == 0.0 ? 0.0 : a * L;  // alpha = 0: not 0 * inf at |d| = inf
        const double f = vm::exp((a - 1.0) * l1t);
        const double ratio = (t2 + (alpha - 1.0)) / (t2 + 1.0);
        const double pw1 = pow_w(w, alpha - 1.0);  // w^(alpha-1); w^alpha and w^(alpha-2) from it
        if (std::fabs(al) <= 1.0) {
          value = 0.5 * b * L * exprel(al);
        } else if (al > 1.0) {
          value = (b / alpha) * (pw1 * w * vm::exp(a * l1t) - 1.0);
        } else {
          value = (b / alpha) * vm::expm1(al);
        }
        grad = std::copysign(sb * pw1 * f, r) / c;
        // (w^(alpha-1) may overflow where w^(alpha-2) does not)
        hess = (std::isinf(pw1) ? pow_w(w, alpha - 2.0) : pw1 / w) * f * ratio / c / c;
      }
      if constexpr (V) l = T(value);
      if constexpr (G) g = T(grad);
      if constexpr (H) h = T(hess);
    }
  }
};

template <class T>
struct general_robust {
  static constexpr const char* name = "general_robust";
  static constexpr bool specialised = true;
  static constexpr std::size_t arity = 2;  // alpha, c
  double alpha, c, b, a, sb, isb;
  explicit general_robust(const Params& prm)
      : alpha(prm[0]), c(prm[1]), b(std::fabs(prm[0] - 2.0)), a(0.5 * prm[0]), sb(std::sqrt(b)), isb(1.0 / sb) {}
  template <class F>
  double specialise(const F& run) const {
    using M = RobustMode;
    if (alpha == 2.0) return run(general_robust_mode<T, M::two>{alpha, c, b, a, sb, isb});
    if (std::isinf(alpha)) return run(general_robust_mode<T, M::inf>{alpha, c, b, a, sb, isb});
    return run(general_robust_mode<T, M::general>{alpha, c, b, a, sb, isb});
  }
};

// l = log(cosh(d)) (math.hpp: log_cosh_value);  g = tanh(d);  h = 1 - tanh(d)^2 = 4 e / (1 + e)^2,
// e = exp(-2|d|): the Hessian form has no cancellation when |d| is large, and exp never overflows.
template <class T>
struct log_cosh {
  static constexpr const char* name = "log_cosh";
  static constexpr std::size_t arity = 0;
  explicit log_cosh(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    if constexpr (V) l = log_cosh_value(ad);
    if constexpr (G) g = vm::tanh(d);
    if constexpr (H) {
      const T e = vm::exp(T(-2) * ad);
      h = T(4) * e / ((T(1) + e) * (T(1) + e));
    }
  }
};

// w = tau if d <= 0 else 1 - tau (nan: 1 - tau):  l = w d^2;  g = 2 w d;  h = 2 w
template <class T>
struct expectile {
  static constexpr const char* name = "expectile";
  static constexpr std::size_t arity = 1;
  T tau, omt;  // tau and 1 - tau (the difference taken in double, then rounded once)
  explicit expectile(const Params& prm) : tau(T(prm[0])), omt(T(1.0 - prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T w = d <= T(0) ? tau : omt;
    if constexpr (V) l = w * (d * d);
    if constexpr (G) g = T(2) * w * d;
    if constexpr (H) h = T(2) * w;
  }
};

// r = y - p:  l = q r if r > 0, (q - 1) r if r < 0;  g = -q, 1 - q;  r = 0: l = g = 0 (nan stays nan);  h = 0
// (l = c r with c the slope of r's side: r = 0 gives a zero, a nan r a nan, without a case of its own.)
template <class T>
struct quantile {
  static constexpr const char* name = "quantile";
  T q, qm1;
  static constexpr std::size_t arity = 1;
  explicit quantile(const Params& prm) : q(T(prm[0])), qm1(T(prm[0] - 1.0)) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T r = y - p;
    const T c = r > T(0) ? q : qm1;
    if constexpr (V) l = c * r;
    if constexpr (G) g = r == T(0) ? T(0) : (r != r ? r : -c);
    if constexpr (H) h = T(0);
  }
};

// log_input: l = exp(p) - y p, g = exp(p) - y, h = exp(p)
// else (p >= 0):      l = p - y log(p + eps), g = 1 - y / (p + eps), h = y / (p + eps)^2
// log_input is the same for every element of a call: `specialise` runs the twin of that mode.
template <class T, bool LogInput>
struct poisson_nll_mode {
  static constexpr const char* name = "poisson_nll";
  T eps;
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    if constexpr (LogInput) {
      const T e = vm::exp(p);
      if constexpr (V) l = e - y * p;
      if constexpr (G) g = e - y;
      if constexpr (H) h = e;
    } else {
      const T q = p + eps;
      // h as (y / q) / q: q * q underflows to 0 for q < 1e-19 in float (1e-154 in double), and y / 0 was nan
      // for y = 0 (Python: _pointwise.poisson_nll_point)
      if constexpr (V) l = p - y * vm::log(q);
      if constexpr (G) g = T(1) - y / q;
      if constexpr (H) h = (y / q) / q;
    }
  }
};

template <class T>
struct poisson_nll {
  static constexpr const char* name = "poisson_nll";
  static constexpr bool specialised = true;
  bool log_input;
  T eps;
  static constexpr std::size_t arity = 2;  // log_input (0 or 1), eps
  explicit poisson_nll(const Params& prm) : log_input(prm[0] != 0.0), eps(T(prm[1])) {}
  template <class F>
  double specialise(const F& run) const {
    return log_input ? run(poisson_nll_mode<T, true>{eps}) : run(poisson_nll_mode<T, false>{eps});
  }
};

// rho <= 0 or >= 1, log link (scikit-learn's HalfTweedieLoss), t2 = exp((2-rho) p), t1 = y exp((1-rho) p):
// l = t2/(2-rho) - t1/(1-rho), and at rho = 0: (exp(p) - y)^2 / 2, rho = 1: exp(p) - y p, rho = 2: p + y exp(-p);
// g = t2 - t1;  h = (2-rho) t2 - (1-rho) t1.  Form: 1 (rho = 1: t2 = exp(p), t1 = y), 2 (rho = 2: t2 = 1,
// t1 = y exp(-p)), Mixed (1 < rho < 2: the exponents have opposite signs, so at most one term overflows), and
// Same (rho < 1 or > 2, At = 0 at rho = 0): where both terms overflow, t2 times the forms in r = t1 / t2 =
// y exp(-p). t1 is 0 for y = 0 (exp((1-rho) p) overflows for p << 0 and 0 * inf made the loss nan), and
// outside Mixed the exact product where exp alone overflows (mul_exp; y may be negative for rho <= 0).
// (Python: _pointwise.tweedie_point.)
enum class TweedieForm { One, Two, Mixed, Same };

template <class T>
FUSEDLOSS_INLINE T signed_mul_exp(T y, T z) {
  const T m = mul_exp(std::fabs(y), z);
  return y < T(0) ? -m : m;
}

template <class T, TweedieForm Form, bool AtZero>
struct tweedie_mode {
  static constexpr const char* name = "tweedie";
  T c2, c1;  // 2 - rho, 1 - rho (differences taken in double, then rounded once)
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    T e2 = T(1), ye1 = y;
    if constexpr (Form != TweedieForm::Two) e2 = vm::exp(c2 * p);
    if constexpr (Form == TweedieForm::Mixed) ye1 = y == T(0) ? T(0) : y * vm::exp(c1 * p);
    if constexpr (Form == TweedieForm::Two || Form == TweedieForm::Same) ye1 = signed_mul_exp(y, c1 * p);
    T lv = T(0), gv = e2 - ye1, hv = c2 * e2 - c1 * ye1;
    if constexpr (V) {
      if constexpr (AtZero) {
        const T d = vm::exp(p) - y;
        lv = T(0.5) * d * d;
      } else if constexpr (Form == TweedieForm::One) {
        lv = e2 - y * p;
      } else if constexpr (Form == TweedieForm::Two) {
        lv = p + ye1;
      } else {
        lv = e2 / c2 - ye1 / c1;
      }
    }
    if constexpr (Form == TweedieForm::Same) {
      const T inf = std::numeric_limits<T>::infinity();
      const bool both = e2 == inf && std::fabs(ye1) == inf;
      const T r = signed_mul_exp(y, -p);
      if constexpr (V && !AtZero) lv = both ? e2 * (T(1) / c2 - r / c1) : lv;
      gv = both ? e2 * (T(1) - r) : gv;
      hv = both ? e2 * (c2 - c1 * r) : hv;
    }
    if constexpr (V) l = lv;
    if constexpr (G) g = gv;
    if constexpr (H) h = hv;
  }
};

// the power is the same for every element of a call: `specialise` runs the twin of its form
template <class T>
struct tweedie {
  static constexpr const char* name = "tweedie";
  static constexpr bool specialised = true;
  double rho;
  static constexpr std::size_t arity = 1;
  explicit tweedie(const Params& prm) : rho(prm[0]) {}
  template <class F>
  double specialise(const F& run) const {
    const T c2 = T(2.0 - rho), c1 = T(1.0 - rho);
    if (rho == 1.0) return run(tweedie_mode<T, TweedieForm::One, false>{c2, c1});
    if (rho == 2.0) return run(tweedie_mode<T, TweedieForm::Two, false>{c2, c1});
    if (rho > 1.0 && rho < 2.0) return run(tweedie_mode<T, TweedieForm::Mixed, false>{c2, c1});
    if (rho == 0.0) return run(tweedie_mode<T, TweedieForm::Same, true>{c2, c1});
    return run(tweedie_mode<T, TweedieForm::Same, false>{c2, c1});
  }
};

// y > 0:  l = p + y exp(-p);  g = 1 - y exp(-p);  h = y exp(-p)  (scikit-learn's HalfGammaLoss)
template <class T>
struct gamma {
  static constexpr const char* name = "gamma";
  static constexpr std::size_t arity = 0;
  explicit gamma(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T ye = mul_exp(y, -p);
    if constexpr (V) l = p + ye;
    if constexpr (G) g = T(1) - ye;
    if constexpr (H) h = ye;
  }
};

// scikit-learn's HalfTweedieLossIdentity, k = 2 - rho, in double for either dtype (as _pointwise
// tweedie_identity_point, same cut-offs; the reasoning: _reference.tweedie_identity).  rho = 0: l = d^2/2, g = d,
// h = 1.  Else every power of p from a = p^(-rho/2) (an exact exponent): g = a (p - y) a,
// h = a ((1 - rho) p + rho y)/p a, p^(k/2) = p a;  l for y > 0 is p^k S(u), u = log q, q = y/p (log1p((y - p)/p)
// for q in [1/2, 2], log y - log p where q leaves the range), S the series sum_{n>=2} s_n u^n/n! (s_2 = 1,
// s_{n+1} = k s_n + 1) where |u| max(1, |k|) <= 1, else (E(k)/k - E(1))/(1 - rho), or
// (q E(1 - rho)/(1 - rho) - E(1))/k for |1 - rho| < 1/2, E(z) = expm1(z u) (expm1_pow);  for y <= 0:
// p^k/k - y p^(k-1)/(k-1) (p at rho = 1).
template <class T>
struct tweedie_identity {
  static constexpr const char* name = "tweedie_identity";
  static constexpr std::size_t arity = 1;
  double rho;
  explicit tweedie_identity(const Params& prm) : rho(prm[0]) {}
  static bool in_range(double q) { return q >= std::numeric_limits<double>::min() && q < HUGE_VAL; }
  // expm1(z u) for u = log q: q^z - 1 where |z u| >= 1 (exp(z u) would cost |z u| ulp)
  static double expm1_pow(double q, double u, double z) {
    const double zu = z * u;
    if (std::fabs(zu) < 1.0) return std::expm1(zu);
    return (in_range(q) ? std::pow(q, z) : std::exp(zu)) - 1.0;
  }
  static double value_pos(double p, double y, double k, double j, double c) {
    const double q = y / p;
    double u;
    if (q >= 0.5 && q <= 2.0) u = std::log1p((y - p) / p);
    else if (in_range(q)) u = std::log(q);
    else u = std::log(y) - std::log(p);
    if (u == 0.0) return 0.0;
    double S;
    if (std::fabs(u) * std::fmax(1.0, std::fabs(k)) <= 1.0) {
      double t = 0.5 * u * u, s = 1.0;
      S = t;
      for (int n = 3; n < 22; ++n) {
        t = t * u * (1.0 / n);  // (1/n a constant: no division in the chain from term to term)
        s = k * s + 1.0;
        S += s * t;
      }
    } else if (std::fabs(j) >= 0.5) {
      const double ek = k == 0.0 ? u : expm1_pow(q, u, k) / k;
      S = (ek - expm1_pow(q, u, 1.0)) / j;
    } else {
      const double ej = j == 0.0 ? u : expm1_pow(q, u, j) / j;
      const double eu = in_range(q) ? q : std::exp(u);
      S = (eu * ej - expm1_pow(q, u, 1.0)) / k;
    }
    return (c * S) * c;
  }
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T pt, T yt, T& l, T& g, T& h) const {
    const double p = pt, y = yt;
    if (rho == 0.0) {
      const double d = p - y;
      if constexpr (V) l = T(0.5 * d * d);
      if constexpr (G) g = T(d);
      if constexpr (H) h = d == d ? T(1) : T(d);
      return;
    }
    const double k = 2.0 - rho, j = 1.0 - rho;
    const double a = std::pow(p, -0.5 * rho);
    if constexpr (G) g = T((a * (p - y)) * a);
    if constexpr (H) h = T((a * ((j * p + rho * y) / p)) * a);
    if constexpr (V) {
      const double c = a > 0.0 && a < HUGE_VAL ? p * a : std::pow(p, 0.5 * k);  // p^(k/2)
      double v;
      if (p != p || y != y) {
        v = p + y;
      } else if (y > 0.0) {
        v = value_pos(p, y, k, j, c);
      } else if (rho == 1.0) {
        v = p;
      } else {
        v = (c * c) / k;
        if (y != 0.0) v -= y * ((c / p) * c) / j;
      }
      l = T(v);
    }
  }
};

// p, y > -1, r = log((1 + p) / (1 + y)) (log_ratio1p):  l = r^2/2;  g = r / (1 + p);  h = (1 - r) / (1 + p)^2
// (XGBoost's reg:squaredlogerror without its clamps; h < 0 where 1 + p > e (1 + y))
template <class T>
struct squared_log {
  static constexpr const char* name = "squared_log";
  static constexpr std::size_t arity = 0;
  explicit squared_log(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T r = log_ratio1p(p, y);
    const T a = T(1) + p;
    if constexpr (V) l = T(0.5) * r * r;
    if constexpr (G) g = r / a;
    if constexpr (H) h = (T(1) - r) / a / a;
  }
};

// Twice squared_log (scikit-learn's mean_squared_log_error per element):  l = r^2;  g = 2 r / (1 + p);
// h = 2 (1 - r) / (1 + p)^2. Doubling is exact, so it is squared_log's numbers times 2.
template <class T>
struct msle {
  static constexpr const char* name = "msle";
  static constexpr std::size_t arity = 0;
  explicit msle(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    squared_log<T>(Params{}).template point<V, G, H>(p, y, l, g, h);
    if constexpr (V) l *= T(2);
    if constexpr (G) g *= T(2);
    if constexpr (H) h *= T(2);
  }
};

// m = max(|y|, epsilon):  l = |d| / m;  g = sign(d) / m, sign(0) = 0;  h = 0  (scikit-learn's
// mean_absolute_percentage_error per element). epsilon is floored at T's smallest subnormal, so that an epsilon
// below T's range still divides (0 / m = 0 at d = 0, as the Python twin computing in double).
template <class T>
struct mape {
  static constexpr const char* name = "mape";
  static constexpr std::size_t arity = 1;
  T eps;
  explicit mape(const Params& prm)
      : eps(T(prm[0]) > std::numeric_limits<T>::denorm_min() ? T(prm[0]) : std::numeric_limits<T>::denorm_min()) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ay = std::fabs(y);
    const T m = ay > eps ? ay : eps;
    if constexpr (V) l = std::fabs(d) / m;
    if constexpr (G) g = sign(d) / m;
    if constexpr (H) h = T(0);
  }
};

// --- binary classification ----------------------------------------------------------------------------

// PyTorch's clamp of the denominators in the binary_cross_entropy gradient and Hessian (_pointwise.BCE_EPS):
// ATen's EPSILON, 1e-12 as a float32 (9.999999960041972e-13 in float64 too, as torch's float64 kernel has it).
inline constexpr double kBceEps = double(1e-12f);

// p a probability in [0, 1], pw = pos_weight (per column through point_col), e = kBceEps:
// l = -(pw y max(log p, -100) + (1-y) max(log(1-p), -100));
// g = ((1-y) p - pw y (1-p)) / max(p (1-p), e);  h = pw y / max(p^2, e) + (1-y) / max((1-p)^2, e)
template <class T>
struct binary_cross_entropy {
  static constexpr const char* name = "binary_cross_entropy";
  static constexpr bool column_param = true;
  static constexpr bool binary_metrics = true;  // binary_metrics.hpp
  T pw;
  static constexpr std::size_t arity = 1;
  explicit binary_cross_entropy(const Params& prm) : pw(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T p, T y, T& l, T& g, T& h) const {
    point_col<V, G, H>(pw, p, y, l, g, h);
  }
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point_col(T pw_, T p, T y, T& l, T& g, T& h) const {
    const T eps = T(kBceEps);
    const T q = T(1) - p;
    if constexpr (V) l = -(pw_ * y * clamped_log(p) + (T(1) - y) * clamped_log1m(p));
    if constexpr (G) {
      const T pq = p * q;
      g = ((T(1) - y) * p - pw_ * y * q) / (pq < eps ? eps : pq);  // max, nan kept
    }
    if constexpr (H) {
      const T p2 = p * p, q2 = q * q;
      h = pw_ * y / (p2 < eps ? eps : p2) + (T(1) - y) / (q2 < eps ? eps : q2);
    }
  }
};

// x a logit, pw = pos_weight (per column through point_col), s = label_smoothing:
// y <- y (1-s) + s/2, lw = 1 + (pw - 1) y:  l = (1-y) x + lw softplus(-x) (math.hpp: bce_logits_value, which
// avoids its cancellation for x < 0);  g = (1-y) - lw sigmoid(-x);  h = lw sigmoid(x) sigmoid(-x).
// g is evaluated as (1-y) sigmoid(x) - pw y sigmoid(-x) (the same, as 1 - sigmoid(-x) = sigmoid(x)): the first
// form cancels for y = 0, x << 0 (float x = -30 gave 0 for 9.36e-14), this one keeps a tiny gradient's digits
// (_pointwise.binary_cross_entropy_with_logits_point).
// softplus and sigmoid only ever exponentiate -|x| (math.hpp), so any finite x is safe (no overflow at
// +-1e4, or at the largest float); they share one exp(-|x|) after CSE.
template <class T>
struct binary_cross_entropy_with_logits {
  static constexpr const char* name = "binary_cross_entropy_with_logits";
  static constexpr bool column_param = true;
  static constexpr bool binary_metrics = true;  // binary_metrics.hpp
  T pw, keep, half_s;  // pos_weight, 1 - s, s / 2
  static constexpr std::size_t arity = 2;  // pos_weight, label_smoothing
  explicit binary_cross_entropy_with_logits(const Params& prm)
      : pw(T(prm[0])), keep(T(1.0 - prm[1])), half_s(T(0.5 * prm[1])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    point_col<V, G, H>(pw, x, y, l, g, h);
  }
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point_col(T pw_, T x, T y, T& l, T& g, T& h) const {
    const T ys = y * keep + half_s;
    const T lw = T(1) + (pw_ - T(1)) * ys;
    if constexpr (V) l = bce_logits_value(x, ys, pw_);
    if constexpr (G || H) {
      T s, sm;
      sigmoid_pair(x, s, sm);
      if constexpr (G) g = (T(1) - ys) * s - pw_ * ys * sm;
      if constexpr (H) h = lw * s * sm;
    }
  }
};

// Sigmoid focal loss (torchvision), alpha (< 0: no weighting), gamma:
// s = sigmoid(x), ce = softplus(x) - y x (math.hpp: bce_logits_value with pw = 1), q = s (1-y) + (1-s) y (= 1 - p_t, a sum of non-negative terms: no
// cancellation), a_t = alpha y + (1-alpha)(1-y), f = q^gamma:  l = a_t ce f;  g = a_t ((s-y) f + ce f');
// h = a_t (s(1-s) f + 2 (s-y) f' + ce f''), with dq = (1-2y) s(1-s), f' = gamma q^(gamma-1) dq and
// f'' = gamma (gamma-1) q^(gamma-2) dq^2 + gamma q^(gamma-1) dq (1-2s) (_pointwise.binary_focal_point).
// The derivatives are evaluated as f' = gamma f r and f'' = gamma f r ((gamma-1) r + (1-2s)) with
// r = dq / q = (1-2y) s(1-s) / q, which is the same quantity, but |r| <= 1 always (q >= min(s, 1-s) >= s(1-s)):
// q^(gamma-1) itself overflows for gamma < 1 once q is tiny (float32 |x| > ~88, float64 |x| > ~709) and
// made the gradient nan there (0 * inf); this form needs one pow instead of three (math.hpp: pow_pos). When
// q underflows to 0 the powers take their limits (q^0 = 1, the derivatives 0). gamma = 2 (the default) takes
// f = q * q (its own twin, binary_focal_mode<T, true>).
// f is q^gamma where q > 0; q = 0 (underflow) or nan take the limits f = [gamma == 0], f' = f'' = 0. Both
// sides are computed on a safe q and one is selected, so that the loop has no branch.
// (No bool in the loop body: a bool temporary makes GCC size the vectors for 8-bit lanes, and the loop then
// does not vectorise at all. a_t = ap y + an (1 - y) with (ap, an) = (alpha, 1 - alpha), or (1, 1) unweighted.)
template <class T, bool Gamma2>
struct binary_focal_mode {
  static constexpr const char* name = "binary_focal";
  T ap, an, gamma, f0;  // f0 = q^gamma at q = 0: 1 for gamma = 0, else 0
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    T s, sm;
    sigmoid_pair(x, s, sm);
    const T ce = bce_logits_value(x, y, T(1));
    const T q = s * (T(1) - y) + sm * y;
    const T a_t = ap * y + an * (T(1) - y);
    const T u = s * sm;
    const T qs = q > T(0) ? q : T(1);
    const T fq = Gamma2 ? qs * qs : pow_pos(qs, gamma);
    const T r = (T(1) - T(2) * y) * (u / qs);
    const T dfq = gamma * fq * r;
    const T f = q > T(0) ? fq : f0;
    const T df = q > T(0) ? dfq : T(0);
    const T smy = s * (T(1) - y) - sm * y;  // s - y without its cancellation at y = 1, x >> 0 (s - 1 = -sm)
    if constexpr (V) l = a_t * ce * f;
    if constexpr (G) g = a_t * (smy * f + ce * df);
    if constexpr (H) {
      const T d2f = q > T(0) ? dfq * ((gamma - T(1)) * r + (T(1) - T(2) * s)) : T(0);
      h = a_t * (u * f + T(2) * smy * df + ce * d2f);
    }
  }
};

template <class T>
struct binary_focal {
  static constexpr const char* name = "binary_focal";
  static constexpr bool specialised = true;
  static constexpr bool binary_metrics = true;  // binary_metrics.hpp
  T ap, an, gamma, f0;
  static constexpr std::size_t arity = 2;  // alpha, gamma
  explicit binary_focal(const Params& prm) : binary_focal(prm[0], prm[1]) {}
  binary_focal(double alpha, double gamma_)
      : ap(alpha >= 0.0 ? T(alpha) : T(1)), an(alpha >= 0.0 ? T(1.0 - alpha) : T(1)), gamma(T(gamma_)),
        f0(gamma_ == 0.0 ? T(1) : T(0)) {}
  template <class F>
  double specialise(const F& run) const {
    return gamma == T(2) ? run(binary_focal_mode<T, true>{ap, an, gamma, f0})
                         : run(binary_focal_mode<T, false>{ap, an, gamma, f0});
  }
};

// y in [0, 1]:  l = y exp(-x) + (1-y) exp(x);  g = (1-y) exp(x) - y exp(-x);  h = l  (scikit-learn's
// ExponentialLoss); mul_exp leaves out the side a hard target does not have (not 0 * inf)
template <class T>
struct exponential {
  static constexpr const char* name = "exponential";
  static constexpr std::size_t arity = 0;
  explicit exponential(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    const T em = mul_exp(y, -x);
    const T ep = mul_exp(T(1) - y, x);
    if constexpr (V) l = em + ep;
    if constexpr (G) g = ep - em;
    if constexpr (H) h = em + ep;
  }
};

// torch.nn.functional.hinge_embedding_loss's masks, m = margin - x:  l = [y != -1] x + [y != 1] max(0, m);
// g = [y != -1] - [y != 1] [m >= 0] (torch's clamp_min passes the gradient at m = 0);  h = 0;  both terms (y
// neither 1 nor -1) as max(x, margin), their exact sum;  nan x or y: nan everywhere (as
// _pointwise.hinge_embedding_point).
template <class T>
struct hinge_embedding {
  static constexpr const char* name = "hinge_embedding";
  static constexpr std::size_t arity = 1;
  T margin;
  explicit hinge_embedding(const Params& prm) : margin(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    const bool own = y != T(-1), mar = y != T(1), nan = x != x || y != y;
    const T m = margin - x;
    const T one = own ? x : (m < T(0) ? T(0) : m);  // y = 1 or y = -1
    if constexpr (V) l = nan ? x + y : (own && mar ? (m < T(0) ? x : margin) : one);
    if constexpr (G) g = nan ? x + y : (own ? T(1) : T(0)) - (mar && m >= T(0) ? T(1) : T(0));
    if constexpr (H) h = nan ? x + y : T(0);
  }
};

// Targets t = 1 if y > 0 else -1 ({0, 1} and {-1, 1} both work), m = 1 - t x:
// m > 0: l = m, g = -t;  m <= 0: 0, 0;  h = 0;  nan m: nan everywhere (as _pointwise.hinge_point).
template <class T>
struct hinge {
  static constexpr const char* name = "hinge";
  static constexpr std::size_t arity = 0;
  explicit hinge(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    const T t = y > T(0) ? T(1) : T(-1);
    const T m = T(1) - t * x;
    if constexpr (V) l = m <= T(0) ? T(0) : m;
    if constexpr (G) g = m > T(0) ? -t : (m <= T(0) ? T(0) : m);
    if constexpr (H) h = m > T(0) ? T(0) : (m <= T(0) ? T(0) : m);
  }
};

// t, m as for hinge:  m > 0: l = m^2, g = -2 t m, h = 2;  m <= 0: 0, 0, 0;  nan m: nan everywhere.
template <class T>
struct squared_hinge {
  static constexpr const char* name = "squared_hinge";
  static constexpr std::size_t arity = 0;
  explicit squared_hinge(const Params&) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    const T t = y > T(0) ? T(1) : T(-1);
    const T m = T(1) - t * x;
    if constexpr (V) l = m > T(0) ? m * m : (m <= T(0) ? T(0) : m);
    if constexpr (G) g = m > T(0) ? T(-2) * t * m : (m <= T(0) ? T(0) : m);
    if constexpr (H) h = m > T(0) ? T(2) : (m <= T(0) ? T(0) : m);
  }
};

// A metric: l = 1 if (x > threshold) != (y > 0) else 0, nan for a nan x; g = h = 0 (the
// dispatcher refuses to ask for them: the loss is not differentiable).
template <class T>
struct zero_one {
  static constexpr const char* name = "zero_one";
  T threshold;
  static constexpr std::size_t arity = 1;
  explicit zero_one(const Params& prm) : threshold(T(prm[0])) {}
  template <bool V, bool G, bool H>
  FUSEDLOSS_INLINE void point(T x, T y, T& l, T& g, T& h) const {
    const T xpos = x > threshold ? T(1) : T(0), ypos = y > T(0) ? T(1) : T(0);
    if constexpr (V) l = x != x ? x : (xpos == ypos ? T(0) : T(1));
    if constexpr (G) g = T(0);
    if constexpr (H) h = T(0);
  }
};

}  // namespace losses
FUSEDLOSS_ISA_END
}  // namespace fusedloss
