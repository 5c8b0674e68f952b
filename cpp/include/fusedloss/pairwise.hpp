// The pairwise losses (kind "pairwise" in src/fusedloss/_spec.py): two or three arrays compared row by row.
//
// The C++ twin of _pairwise_rows.py (Numba) and _reference_pairwise.py (NumPy, the specification): one struct
// per loss with the same name, the same parameters and the same branches. Two loops:
// - run: rows of D elements (cosine_embedding, triplet_margin). The struct's row() computes one row's loss and,
//   when asked, writes gn times its gradient with respect to each input; the rows go out to the pool's threads
//   in fixed blocks and the caller reduces the per-row losses in index order.
// - run_elements: losses whose row is one element (margin_ranking, gaussian_nll), as the elementwise loops run
//   (loops.hpp): the struct's point() on the inputs' values widened to double, the gradients and per-element
//   values stored in the inputs' dtype, the weighted sum in fixed blocks of compensated lanes; a loop that
//   vectorises, with no per-element float64 array in or out.
// Every element and row is computed in double by the same code whatever thread runs it, and every sum is taken
// in a fixed order, so results do not depend on the thread count. The gradients at the kinks are PyTorch's:
// clamp_min(m, 0) passes the gradient where m >= 0, and the swap's minimum(d(a, n), d(p, n)) splits it in halves
// where the two are equal.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "fusedloss/isa.hpp"
#include "fusedloss/kernel_api.hpp"  // Params
#include "fusedloss/loops.hpp"       // kLanes, with_flags
#include "fusedloss/reduce.hpp"
#include "fusedloss/vecmath.hpp"

namespace fusedloss {

// What the binding hands a kernel (checked there: every length matches N and D, no output overlaps an input).
template <class T>
struct PairwiseArgs {
  const T* x1 = nullptr;
  const T* x2 = nullptr;
  const T* x3 = nullptr;    // the third input (triplet_margin), else null
  const double* y = nullptr;  // one target per row, or null
  const double* gscale = nullptr;  // the gradient's factor per row; null: no gradient
  double* loss = nullptr;   // N per-row losses
  T* g1 = nullptr;
  T* g2 = nullptr;
  T* g3 = nullptr;
  std::size_t N = 0, D = 0;
  int nthreads = 1;
};

// What the binding hands run_elements (checked there: every array has n elements, no output overlaps an input).
// Data only: it crosses ISA levels (cpp/src/pairwise.cpp builds run_elements once per level, like ctc.cpp).
template <class T>
struct PairwiseElementArgs {
  const T* x1 = nullptr;
  const T* x2 = nullptr;
  const T* x3 = nullptr;      // the third input (gaussian_nll's var), else null
  const T* y = nullptr;       // the target (margin_ranking), else null
  const double* w = nullptr;  // the weights, or null: unit weights
  double denom = 1.0;         // element i's gradient is scaled by w[i] / denom
  T* value = nullptr;         // null, or value[i] = w[i] l[i]
  T* g1 = nullptr;            // null (no gradient), or the gradients with respect to each input (g3: the third)
  T* g2 = nullptr;
  T* g3 = nullptr;
  std::size_t n = 0;
  bool reduce = false;  // return sum_i w[i] l[i] in float64 (else 0.0)
  int nthreads = 1;
};

FUSEDLOSS_ISA_BEGIN
namespace pairwise {

// ATen's EPSILON, added to each squared norm (a zero vector has cosine 0): 1e-12 as a float, as there
constexpr double kCosineEps = static_cast<double>(1e-12f);

// max(0, -y (x1 - x2) + margin), one element a row (D = 1): point() below, run by run_elements.
struct MarginRanking {
  static constexpr bool kThree = false, kTarget = true;  // inputs x1, x2 and a target y
  double margin;
  static MarginRanking from(const Params& p) { return {p[0]}; }  // the registry's order (LossSpec.packed)
  // One element's loss and, with G, gn times its gradient with respect to x1 and x2 in g1, g2 (g3 untouched).
  template <bool G>
  FUSEDLOSS_INLINE double point(double a, double b, double, double y, double gn, double& g1, double& g2,
                                double&) const {
    const double m = -y * (a - b) + margin;
    if constexpr (G) {
      const bool on = m >= 0;  // nan: no gradient (torch's clamp_min backward)
      g1 = on ? -y * gn : 0.0;
      g2 = on ? y * gn : 0.0;
    }
    return m > 0 || std::isnan(m) ? m : 0.0;
  }
};

// 1 - cos (y = 1), max(0, cos - margin) (y = -1), 0 otherwise; ATen's cosine with 1e-12 on each squared norm.
struct CosineEmbedding {
  double margin;
  template <class T>
  double row(const T* x1, const T* x2, const T*, std::size_t D, double y, double gn, T* g1, T* g2, T*) const {
    double s = 0.0, m1 = 0.0, m2 = 0.0;
    for (std::size_t k = 0; k < D; ++k) {
      const double a = x1[k], b = x2[k];
      s += a * b;
      m1 += a * a;
      m2 += b * b;
    }
    m1 += kCosineEps;
    m2 += kCosineEps;
    const double r = std::sqrt(m1 * m2);
    const double c = s / r;
    const double neg = c - margin;
    const double loss = (y == 1 ? 1.0 - c : 0.0) + (y == -1 ? (neg > 0 || std::isnan(neg) ? neg : 0.0) : 0.0);
    if (g1) {
      const double dl_dc = y == 1 ? -1.0 : ((y == -1 && neg >= 0) ? 1.0 : 0.0);
      const double f = dl_dc * gn;
      for (std::size_t k = 0; k < D; ++k) {
        const double a = x1[k], b = x2[k];
        g1[k] = T(f * (b / r - (c / m1) * a));
        g2[k] = T(f * (a / r - (c / m2) * b));
      }
    }
    return loss;
  }
};

// ||u - v + eps||_p over a row whose p is infinite or 0, as torch's norm: the largest |e| (p = inf), the smallest
// (-inf; a nan e gives nan), the count of e != 0 (p = 0). A row of no element: 0, or inf for -inf.
template <class T>
double pnorm_special(const T* u, const T* v, std::size_t D, double p, double eps) {
  double d = p < 0 ? std::numeric_limits<double>::infinity() : 0.0;
  for (std::size_t k = 0; k < D; ++k) {
    const double a = std::fabs(double(u[k]) - double(v[k]) + eps);
    if (p == 0) {
      d += a != 0 ? 1.0 : 0.0;
    } else if (std::isnan(a) || (p > 0 ? a > d : a < d)) {
      d = a;
      if (std::isnan(a)) break;
    }
  }
  return d;
}

// ||u - v + eps||_p, as torch's norm (p = 1, p = 2, p = +-inf and 0 in pnorm_special, else the p-th root of the
// sum of |e|^p; p < 0: a zero e makes the sum inf and the norm 0; a row of no element: inf). P: p when it is 1
// or 2 (the common norms, whose loops then have no branch and no pow), 0 for any other p.
template <int P, class T>
double pnorm(const T* u, const T* v, std::size_t D, double p, double eps) {
  if constexpr (P == 0) {
    if (std::isinf(p) || p == 0) return pnorm_special(u, v, D, p, eps);
  }
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (std::size_t k = 0; k < D; ++k) {
    const double e = double(u[k]) - double(v[k]) + eps;
    if constexpr (P == 2) {
      s += e * e;
    } else if constexpr (P == 1) {
      s += std::fabs(e);
    } else {
      s += (e != 0 || p > 0) ? std::pow(std::fabs(e), p) : std::numeric_limits<double>::infinity();
    }
  }
  if constexpr (P == 2) {
    return std::sqrt(s);
  } else if constexpr (P == 1) {
    return s;
  } else {
    if (s == 0 && p < 0) return std::numeric_limits<double>::infinity();
    return std::pow(s, 1.0 / p);
  }
}

// The number of elements where |u - v + eps| equals the distance d (p = +-inf: they share the gradient).
template <class T>
double pnorm_ties(const T* u, const T* v, std::size_t D, double eps, double d) {
  double n = 0.0;
  for (std::size_t k = 0; k < D; ++k) n += std::fabs(double(u[k]) - double(v[k]) + eps) == d ? 1.0 : 0.0;
  return n;
}

// d ||e||_p / d e_k at distance d, as torch's norm backward: 0 where d = 0 (p > 1), or where e_k = 0 (p < 1);
// p = +-inf: sign(e_k) / ties where |e_k| = d (ties such elements), else 0; p = 0: 0.
template <int P>
inline double pnorm_grad(double e, double d, double p, double ties) {
  const double sg = e > 0 ? 1.0 : (e < 0 ? -1.0 : (std::isnan(e) ? e : 0.0));
  if constexpr (P == 1) {
    return sg;
  } else if constexpr (P == 2) {
    return d == 0 ? 0.0 : e / d;
  } else {
    if (p == 1) return sg;
    if (std::isinf(p)) return std::fabs(e) == d ? sg / ties : 0.0;
    if (p == 0) return 0.0;
    if (p < 1) return e == 0 ? 0.0 : sg * std::pow(std::fabs(e), p - 1) * std::pow(d, 1 - p);
    if (d == 0) return 0.0;
    if (p == 2) return e / d;
    if (p < 2) return sg * std::pow(std::fabs(e), p - 1) / std::pow(d, p - 1);
    return e * std::pow(std::fabs(e), p - 2) / std::pow(d, p - 1);
  }
}

// max(0, d(a, p) - d(a, n) + margin), d(u, v) = ||u - v + eps||_p; swap: d(a, n) -> min(d(a, n), d(p, n)).
struct TripletMargin {
  double margin, p, eps;
  bool swap;
  template <class T>
  double row(const T* a, const T* po, const T* ne, std::size_t D, double y, double gn, T* ga, T* gp, T* gne) const {
    if (p == 2) return row_p<2>(a, po, ne, D, y, gn, ga, gp, gne);
    if (p == 1) return row_p<1>(a, po, ne, D, y, gn, ga, gp, gne);
    return row_p<0>(a, po, ne, D, y, gn, ga, gp, gne);
  }

  template <int P, class T>
  double row_p(const T* a, const T* po, const T* ne, std::size_t D, double, double gn, T* ga, T* gp, T* gne) const {
    const double dp = pnorm<P>(a, po, D, p, eps);
    const double dn = pnorm<P>(a, ne, D, p, eps);
    double ds = 0.0, wn = 1.0, ws = 0.0, dneg = dn;  // wn, ws: the shares of d(a, n) and d(p, n) in dneg
    if (swap) {
      ds = pnorm<P>(po, ne, D, p, eps);
      wn = dn == ds ? 0.5 : (dn > ds ? 0.0 : 1.0);
      ws = dn == ds ? 0.5 : (ds > dn ? 0.0 : 1.0);
      dneg = (dn < ds || std::isnan(dn)) ? dn : ds;
    }
    const double m = margin + dp - dneg;
    if (ga) {
      // m < 0: no gradient, written as a factor of 0 (not 0 * a nan Jacobian element: torch's clamp_min gives 0)
      const bool on = m >= 0;
      const double f = on ? gn : 0.0;
      double tp = 1.0, tn = 1.0, ts = 1.0;  // p = +-inf: the elements at each distance, which share its gradient
      if (P == 0 && on && std::isinf(p)) {
        tp = pnorm_ties(a, po, D, eps, dp);
        tn = pnorm_ties(a, ne, D, eps, dn);
        if (swap) ts = pnorm_ties(po, ne, D, eps, ds);
      }
#pragma omp simd
      for (std::size_t k = 0; k < D; ++k) {
        const double jp = pnorm_grad<P>(double(a[k]) - double(po[k]) + eps, dp, p, tp);
        const double jn = pnorm_grad<P>(double(a[k]) - double(ne[k]) + eps, dn, p, tn);
        const double js = swap ? pnorm_grad<P>(double(po[k]) - double(ne[k]) + eps, ds, p, ts) : 0.0;
        ga[k] = T(on ? f * (jp - wn * jn) : 0.0);
        gp[k] = T(on ? f * (-jp - ws * js) : 0.0);
        gne[k] = T(on ? f * (wn * jn + ws * js) : 0.0);
      }
    }
    return m > 0 || std::isnan(m) ? m : 0.0;
  }
};

// 0.5 (log v + (x - y)^2 / v), v = max(var, eps) (nan stays nan), one element a row: point() below, run by
// run_elements; x3 holds var.
struct GaussianNll {
  static constexpr bool kThree = true, kTarget = false;  // inputs x, its target t and var; no row target
  bool full;
  double eps;
  static GaussianNll from(const Params& p) { return {p[0] != 0, p[1]}; }  // the registry's order
  // One element's loss and, with G, gn times its gradient with respect to x, t and var in gx, gt, gv.
  template <bool G>
  FUSEDLOSS_INLINE double point(double x, double t, double var, double, double gn, double& gx, double& gt,
                                double& gv) const {
    const double v = var < eps ? eps : var;
    const double d = x - t;
    if constexpr (G) {
      gx = gn * (d / v);
      gt = gn * (-d / v);
      gv = gn * (0.5 * (1.0 / v - d * d / (v * v)));
    }
    return 0.5 * (vm::log(v) + d * d / v) + (full ? 0.9189385332046727 : 0.0);  // 0.5 log(2 pi)
  }
};

// Every row of one loss: fixed blocks of rows claimed by the pool's threads (reduce.hpp's for_blocks).
template <class Loss, class T>
void run(const Loss& loss, const PairwiseArgs<T>& a) {
  const std::size_t D = a.D;
  const std::size_t block = std::max<std::size_t>(1, 4096 / std::max<std::size_t>(D, 1));
  for_blocks(a.N, block, a.nthreads, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      const std::size_t o = i * D;
      const bool grad = a.gscale != nullptr;
      a.loss[i] = loss.row(a.x1 + o, a.x2 + o, a.x3 ? a.x3 + o : nullptr, D, a.y ? a.y[i] : 0.0,
                           grad ? a.gscale[i] : 0.0, grad ? a.g1 + o : nullptr, grad ? a.g2 + o : nullptr,
                           grad && a.g3 ? a.g3 + o : nullptr);
    }
  }, a.N * std::max<std::size_t>(D, 1));
}

// One element of run_elements: stores what is asked for (V: its weighted value, G: its gradients) and returns its
// term w_i l_i of the float64 sum (0 unless R).
template <bool W, bool V, bool R, bool G, class Loss, class T>
FUSEDLOSS_INLINE double element(const Loss& loss, const PairwiseElementArgs<T>& a, std::size_t i) {
  const double wi = W ? a.w[i] : 1.0;
  double g1 = 0.0, g2 = 0.0, g3 = 0.0;
  const double l = loss.template point<G>(double(a.x1[i]), double(a.x2[i]), Loss::kThree ? double(a.x3[i]) : 0.0,
                                          Loss::kTarget ? double(a.y[i]) : 0.0, wi / a.denom, g1, g2, g3);
  if constexpr (V) a.value[i] = T(W ? wi * l : l);
  if constexpr (G) {
    a.g1[i] = T(g1);
    a.g2[i] = T(g2);
    if constexpr (Loss::kThree) a.g3[i] = T(g3);
  }
  return R ? (W ? wi * l : l) : 0.0;
}

// Elements [begin, end) of run_elements (one block): the sum's lanes as loops.hpp's elementwise_run keeps them
// (element i in lane (i - begin) % kLanes, the tail and then the lanes added in order), so the sum is the same bits
// for every thread count. `#pragma omp simd`: the outputs never overlap the inputs (the binding checked).
template <bool W, bool V, bool R, bool G, class Loss, class T>
FUSEDLOSS_NOINLINE double elements_block(const Loss& loss_, const PairwiseElementArgs<T>& a_, std::size_t begin,
                                         std::size_t end) {
  const Loss loss = loss_;               // copies in this frame: a store into an output cannot change them, so
  const PairwiseElementArgs<T> a = a_;   // nothing is read again inside the loop
  if constexpr (!R) {
#pragma omp simd
    for (std::size_t i = begin; i < end; ++i) element<W, V, R, G>(loss, a, i);
    return 0.0;
  } else {
    KahanLanes<kLanes> lanes;
    CompensatedSum rest;
    std::size_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
#pragma omp simd
      for (std::size_t j = 0; j < kLanes; ++j) lanes.add(j, element<W, V, R, G>(loss, a, i + j));
    }
    for (; i < end; ++i) rest.add(element<W, V, R, G>(loss, a, i));
    lanes.fold_into(rest);
    return rest.value();
  }
}

template <class Loss, class T>
struct ElementsRunner {
  Loss loss;
  const PairwiseElementArgs<T>& args;
  template <bool W, bool V, bool R, bool G>
  double operator()() const {
    const auto block = [this](std::size_t begin, std::size_t end) {
      return elements_block<W, V, R, G>(loss, args, begin, end);
    };
    if constexpr (R) {
      return sum_blocks(args.n, kBlock, args.nthreads, block);
    } else {
      if constexpr (V || G) for_blocks(args.n, kBlock, args.nthreads, block);
      return 0.0;
    }
  }
};

// Every element of a loss whose row is one element (its parameters in the registry's order): fixed blocks of kBlock
// elements claimed by the pool's threads (reduce.hpp), their float64 partial sums added in block order. Returns
// sum_i w_i l_i (0 without args.reduce).
template <class Loss, class T>
double run_elements(const Params& params, const PairwiseElementArgs<T>& args) {
  return with_flags(ElementsRunner<Loss, T>{Loss::from(params), args}, args.w != nullptr, args.value != nullptr,
                    args.reduce, args.g1 != nullptr);
}

}  // namespace pairwise
FUSEDLOSS_ISA_END

// The one-element-row kernels of one ISA level (cpp/src/pairwise.cpp is compiled once per level, like ctc.cpp).
template <class T>
using PairwiseElementKernel = double (*)(const Params&, const PairwiseElementArgs<T>&);
struct PairwiseElementEntry {
  PairwiseElementKernel<float> f32;
  PairwiseElementKernel<double> f64;
};
struct PairwiseKernels {
  const char* isa;
  PairwiseElementEntry margin_ranking, gaussian_nll;
};
const PairwiseKernels& pairwise_kernels_baseline();
const PairwiseKernels& pairwise_kernels_avx2();
const PairwiseKernels& pairwise_kernels_avx512();
}  // namespace fusedloss
