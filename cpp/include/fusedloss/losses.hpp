// Elementwise losses: one small struct per loss, the C++ twin of `<name>_point` in
// src/fusedloss/_pointwise.py (same names, same formulas, same branch cut-offs; _spec.py has the maths).
//
// Every struct has the same shape:
//
//   template <class T> struct <name> {
//     static constexpr const char* name = "<name>";   // the registry name
//     <name>(double a, double b);                     // the packed parameters, LossSpec.pack
//     template <bool V, bool G, bool H>
//     void point(T p, T y, T& l, T& g, T& h) const;   // value, gradient, Hessian at one element
//   };
//
// `point` computes only the outputs whose flag is set (`if constexpr`), so a gradient-only loop never
// evaluates, say, log_cosh's log1p; outputs whose flag is clear are left untouched. Math is in T: float32
// data is computed in float. Branches are written as selects where both sides are cheap, so that the
// generic loops in loops.hpp vectorise.
//
// Adding a loss: a struct here, and one registration line in cpp/src/bindings.cpp.
#pragma once

#include <cmath>

#include "fusedloss/math.hpp"

namespace fusedloss {
namespace losses {

// l = d^2;  g = 2 d;  h = 2
template <class T>
struct mse {
  static constexpr const char* name = "mse";
  mse(double, double) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
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
  mae(double, double) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
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
  huber(double a, double) : delta(T(a)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    const bool quad = ad <= delta;  // nan: false (linear branch, nan value and gradient, h = 0)
    if constexpr (V) l = quad ? T(0.5) * d * d : delta * (ad - T(0.5) * delta);
    if constexpr (G) g = quad ? d : delta * sign(d);
    if constexpr (H) h = quad ? T(1) : T(0);
  }
};

// |d| < beta: l = d^2 / (2 beta), g = d / beta, h = 1 / beta;  else l = |d| - beta/2, g = sign(d), h = 0
// beta = 0 never takes the quadratic branch (its division by zero is computed in a discarded lane only).
template <class T>
struct smooth_l1 {
  static constexpr const char* name = "smooth_l1";
  T beta;
  smooth_l1(double a, double) : beta(T(a)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
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
  pseudo_huber(double a, double) : delta(T(a)), delta2(T(a) * T(a)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    const T r = (p - y) / delta;
    const T s = hypot1(r);
    if constexpr (V) l = delta2 * r * (r / (T(1) + s));
    if constexpr (G) g = delta * (r / s);
    if constexpr (H) h = T(1) / (s * s * s);
  }
};

// l = log(cosh(d)) (math.hpp: log_cosh_value);  g = tanh(d);  h = 1 - tanh(d)^2 = 4 e / (1 + e)^2,
// e = exp(-2|d|): the Hessian form has no cancellation when |d| is large, and exp never overflows.
template <class T>
struct log_cosh {
  static constexpr const char* name = "log_cosh";
  log_cosh(double, double) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    const T d = p - y;
    const T ad = std::fabs(d);
    if constexpr (V) l = log_cosh_value(ad);
    if constexpr (G) g = std::tanh(d);
    if constexpr (H) {
      const T e = std::exp(T(-2) * ad);
      h = T(4) * e / ((T(1) + e) * (T(1) + e));
    }
  }
};

// r = y - p:  l = q r if r > 0, (q - 1) r if r < 0;  g = -q, 1 - q;  r = 0: l = g = 0 (nan stays nan);  h = 0
template <class T>
struct quantile {
  static constexpr const char* name = "quantile";
  T q, qm1;
  quantile(double a, double) : q(T(a)), qm1(T(a - 1.0)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    const T r = y - p;
    if constexpr (V) l = r > T(0) ? q * r : (r < T(0) ? qm1 * r : r * T(0));
    if constexpr (G) g = r > T(0) ? -q : (r < T(0) ? -qm1 : r * T(0));
    if constexpr (H) h = T(0);
  }
};

// log_input (a != 0): l = exp(p) - y p, g = exp(p) - y, h = exp(p)
// else (p >= 0):      l = p - y log(p + eps), g = 1 - y / (p + eps), h = y / (p + eps)^2    (eps = b)
// log_input is the same for every element of a call, so the compiler hoists the test out of the loop.
template <class T>
struct poisson_nll {
  static constexpr const char* name = "poisson_nll";
  bool log_input;
  T eps;
  poisson_nll(double a, double b) : log_input(a != 0.0), eps(T(b)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    if (log_input) {
      const T e = std::exp(p);
      if constexpr (V) l = e - y * p;
      if constexpr (G) g = e - y;
      if constexpr (H) h = e;
    } else {
      const T q = p + eps;
      if constexpr (V) l = p - y * std::log(q);
      if constexpr (G) g = T(1) - y / q;
      if constexpr (H) h = y / (q * q);
    }
  }
};

// rho in (1, 2), log link:  l = exp((2-rho) p)/(2-rho) - y exp((1-rho) p)/(1-rho);
// g = exp((2-rho) p) - y exp((1-rho) p);  h = (2-rho) exp((2-rho) p) - (1-rho) y exp((1-rho) p)
template <class T>
struct tweedie {
  static constexpr const char* name = "tweedie";
  T c2, c1;  // 2 - rho, 1 - rho (differences taken in double, then rounded once)
  tweedie(double a, double) : c2(T(2.0 - a)), c1(T(1.0 - a)) {}
  template <bool V, bool G, bool H>
  void point(T p, T y, T& l, T& g, T& h) const {
    const T e2 = std::exp(c2 * p);
    const T e1 = std::exp(c1 * p);
    if constexpr (V) l = e2 / c2 - y * e1 / c1;
    if constexpr (G) g = e2 - y * e1;
    if constexpr (H) h = c2 * e2 - c1 * y * e1;
  }
};

}  // namespace losses
}  // namespace fusedloss
