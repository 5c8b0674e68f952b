// Multiclass losses (class axis last): one small struct per loss, the C++ twin of `<name>_row` in
// src/fusedloss/_pointwise.py (same formulas, names and cut-offs; _spec.py has the maths).
//
// Every struct has the same shape:
//
//   template <class T> struct <name> {
//     static constexpr const char* name = "<name>";      // the registry name
//     static constexpr bool hard_labels, soft_labels;    // which target forms it takes
//     static constexpr bool class_vector;                // whether it reads the per-class vector cw
//     static constexpr std::size_t arity;                // how many scalar parameters (LossSpec.packed)
//     <name>(const Params& params, const T* cw, std::size_t C);   // named from params; cw or null
//     template <bool G, bool H>
//     double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const;
//   };
//
// `row` gets one row: x[0..C) its logits, t its label (hard targets; never an ignored row, and always in
// [0, C): the binding checked) or q[0..C) its soft targets; it writes g[j] = f dl/dx_j (if G) and
// h[j] = f d2l/dx_j^2 (if H) and returns the unweighted row value l in double. f is the row weight times
// the reduction scale. The generic driver over rows (blocks, threads, ignored rows, weights, the reduction)
// is multiclass_pass in loops.hpp.
//
// The softmax losses make three passes over the row, which stays in cache between them:
//   1. the maximum m of the logits (a vectorised max; nan is skipped there and propagates through its exp);
//   2. e_j = exp(z_j - m) (exp_sub), s = sum e_j (cross_entropy: chunk sums in T added in double, see
//      kChunk; the others in double), and the loss's other row statistics; e_j is
//      parked in the output row (gradient, else Hessian) when pass 3 can use it;
//   3. p_j = e_j / s, and one write of the gradient (and Hessian) element.
// So each logit is read from memory once and each output written once, and there is no N x C temporary.
// cross_entropy with hard labels also runs rows of up to kTileMaxC classes in tiles (row_tiles.hpp): the same
// passes with the vector lanes across 16 rows, through the same per-element and per-row steps as its `run`.
// g == x (and h == x) is safe: pass 3 reads the parked e_j, or x_j itself (softcap, kl_div_with_logits: they
// rebuild e_j from x_j), before it writes element j, and the label's logit x_t is saved before pass 2 starts.
//
// Precision. Per-element math is in T (float data: float exp); row sums, lse and all per-row scalars are
// in double. p_j is e_j times 1/s, not exp(z_j - lse): rounding lse to T would cost |lse| ulp in every
// exponent (about 1e-5 relative at |lse| ~ 100 in float32), while e_j only sees the rounding of z_j - m.
// When one class dominates a row, 1 - p and log p of that class are tiny and s = 1 + (tiny): the usual
// forms (lse - z_t, p_t - 1, p (1 - p)) then cancel, in double too. So pass 2 keeps s as s1 (the sum of the
// e_j != 1) and k (how many e_j == 1, i.e. the maxima): s - 1 = s1 + (k - 1) has no cancellation, and
// log s = log1p(s - 1), log p_t = (z_t - m) - log s and 1 - p_t = -expm1(log p_t) are accurate to a few ulp
// however confident the row is (RowSum below).
//
// Rows with nothing to normalise (README, "Guarantees"): a row with a NaN logit, or whose logits are all -inf
// (every class masked), has value nan and a nan gradient and Hessian in every element, in every loss (as
// torch's cross_entropy; multi_margin too, where torch skips a nan). The softmax rows see it in one branch per
// row, from statistics they have anyway: the row max (nan skipped) is -inf exactly when no logit is above
// -inf, and a nan logit makes s nan (see no_softmax; a +inf logit does too, through exp(inf - inf), as the
// formula says). Ignored rows (ignore_index, zero weight) never reach a row function: loops.hpp gives them 0.
#pragma once

#include "fusedloss/isa.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "fusedloss/kernel_api.hpp"  // Params
#include "fusedloss/math.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace rows {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// The exp of the row passes, in one place: vecmath's (no libm call, so that the row loops can vectorise).
template <class T>
FUSEDLOSS_INLINE T row_exp(T v) {
  return vm::exp(v);
}

// e = exp(a - b) for a <= b (b the row max), the rounding of a - b compensated. In float32, a - b near -80
// is off by up to 80 * 2^-25 = 2.4e-6, which becomes the relative error of exp(a - b): the whole error
// budget of a confident row (its loss and its gradient are made of such terms; the focal loss raises them
// to the power gamma + 1). Knuth's TwoSum gives the exact difference as d + err (err exactly representable),
// and exp(d + err) = exp(d) (1 + err) up to err^2. a == b gives exactly 1; an infinite operand (err nan)
// falls back to exp(d). In double the rounding (at most 745 * 2^-53 relative) is far below budget.
template <class T>
FUSEDLOSS_INLINE T exp_sub(T a, T b) {
  const T d = a - b;
  if constexpr (std::is_same_v<T, double>) {
    return row_exp(d);
  } else {
    const T a1 = d + b;       // TwoSum(a, -b): d = a - b, err = (a - a1) + (-b - (d - a1))
    const T nb1 = d - a1;
    const T err = (a - a1) + (-b - nb1);
    const T e = row_exp(d);
    return err == err ? e + e * err : e;
  }
}

// e = exp(d) for an argument d formed in double (KL's (x_j - max) / temperature, whose product would round in
// float32 like the difference above): d is split into its float part and the rest, as in exp_sub.
template <class T>
FUSEDLOSS_INLINE T exp_of(double d) {
  if constexpr (std::is_same_v<T, double>) {
    return row_exp(d);
  } else {
    const T dt = T(d);
    const T err = T(d - double(dt));
    const T e = row_exp(dt);
    return err == err ? e + e * err : e;
  }
}

// Pass 1: max_j x[j], nan skipped (a nan logit makes its exp, hence s, nan in pass 2). -inf for a row of
// -inf (or of nan).
template <class T>
FUSEDLOSS_INLINE T row_max(const T* x, std::size_t C) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (std::size_t j = 0; j < C; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// Pass 1 of a row whose metrics are asked for (cross_entropy::row_metrics): row_max, and the label's rank
// #{j < t: x_j >= x_t} + #{j > t: x_j > x_t} (= #{j: x_j > x_t} + #{j < t: x_j == x_t}: among tied logits the
// first is the argmax, as NumPy's and PyTorch's), counted in the same loops, which read the row before pass 2
// may overwrite it (g == x). Two loops, split at t, so that neither compares indices. The counts are lanes of
// T's width (float: 32 bits; a row of 2^32 classes would be 16 GiB).
template <class T>
FUSEDLOSS_INLINE T row_max_rank(const T* x, std::size_t C, std::size_t t, T x_t, std::int64_t& rank) {
  using Count = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  T m = -std::numeric_limits<T>::infinity();
  Count before = 0, after = 0;
#pragma omp simd reduction(max : m) reduction(+ : before)
  for (std::size_t j = 0; j < t; ++j) {
    m = x[j] > m ? x[j] : m;
    before += x[j] >= x_t ? Count(1) : Count(0);
  }
#pragma omp simd reduction(max : m) reduction(+ : after)
  for (std::size_t j = t; j < C; ++j) {
    m = x[j] > m ? x[j] : m;
    after += x[j] > x_t ? Count(1) : Count(0);
  }
  rank = std::int64_t(before) + std::int64_t(after);
  return m;
}

// A row under the rule at the top of the file: value nan, and nan in every element of g (if G) and h (if H).
// Called after the passes, so g == x is no concern.
template <bool G, bool H, class T>
FUSEDLOSS_INLINE double nan_row(std::size_t C, T* g, T* h) {
  constexpr T nan = std::numeric_limits<T>::quiet_NaN();
  if constexpr (G) std::fill(g, g + C, nan);
  if constexpr (H) std::fill(h, h + C, nan);
  (void)C, (void)g, (void)h;
  return std::numeric_limits<double>::quiet_NaN();
}

// Whether a softmax row falls under the rule: its logits' max (row_max, nan skipped) is -inf (no logit above
// -inf: all -inf, or nan and -inf only), or its sum of exponentials is nan (a nan logit, or +inf: inf - inf).
template <class T>
FUSEDLOSS_INLINE bool no_softmax(T xmax, double s) {
  return xmax == -std::numeric_limits<T>::infinity() || s != s;
}

// The shift of the exponentials: the row max, or 0 when it is -inf (every exp is then exp(-inf) = 0 instead
// of exp(-inf + inf) = nan, and s = 0).
template <class T>
FUSEDLOSS_INLINE T exp_shift(T m) {
  return m == -std::numeric_limits<T>::infinity() ? T(0) : m;
}

// What pass 2 accumulates for s = sum_j e_j: s1 = the sum of the e_j != 1 and k = the number of e_j == 1
// (at least one when the row max is finite: the max itself has e = exp(0) = 1).
template <class T, class A>
FUSEDLOSS_INLINE void add_exp(T e, A& s1, A& k) {
  s1 += e == T(1) ? A(0) : A(e);
  k += e == T(1) ? A(1) : A(0);
}

// Pass 2 of the softmax rows runs over chunks of kChunk classes: each chunk's sums are accumulated in T
// (an omp simd reduction: every vector lane sums at most kChunk / lanes terms, 16 with AVX-512 floats, 64 on
// SSE2) and added to the row's double sums. Summing in double per element doubled pass 2's cost (float to
// double conversions and half-width vectors) for no accuracy the budget needs: all the terms are >= 0, so
// the relative error of a float32 chunk sum is at most 64 ulp (4e-6) and typically a few ulp, and across
// chunks it does not grow.
inline constexpr std::size_t kChunk = 256;

// Rows of at most kTileMaxC classes may run in tiles of kTile rows (row_tiles.hpp): a row struct's `tile`
// takes them transposed, logit j of row r at [j * kTile + r], so that its loops run along the rows.
inline constexpr std::size_t kTile = 16;
inline constexpr std::size_t kTileMaxC = 128;

// Pass 1 of a tile: each lane's max (row_max: nan skipped, -inf for a row of -inf or nan).
template <class T>
FUSEDLOSS_INLINE void tile_max(const T* xt, std::size_t C, T* xmax) {
  for (std::size_t r = 0; r < kTile; ++r) xmax[r] = -std::numeric_limits<T>::infinity();
  for (std::size_t j = 0; j < C; ++j) {
    const T* xj = xt + j * kTile;
#pragma omp simd
    for (std::size_t r = 0; r < kTile; ++r) xmax[r] = xj[r] > xmax[r] ? xj[r] : xmax[r];
  }
}

// Pass 2 of a tile whose sums are in double (categorical_focal, as its row): e_j = exp(x_j - m) in every lane,
// parked at buf[j * kTile + r] (Park), and each lane's s1 and k (add_exp). Not inlined: see
// cross_entropy::tile_sums.
template <bool Park, class T>
FUSEDLOSS_NOINLINE void tile_exp_sums(const T* xt, std::size_t C, const T* shift, T* buf, double* s1, double* k) {
  for (std::size_t j = 0; j < C; ++j) {
    const T* xj = xt + j * kTile;
    T* bj = buf + j * kTile;
#pragma omp simd
    for (std::size_t r = 0; r < kTile; ++r) {
      const T e = exp_sub(xj[r], shift[r]);
      add_exp(e, s1[r], k[r]);
      if constexpr (Park) bj[r] = e;
    }
    (void)bj;
  }
}

// Passes 1 and 2 of a tile whose sums are in double: each lane's max and shift (exp_shift), then tile_exp_sums.
template <bool Park, class T>
FUSEDLOSS_INLINE void tile_softmax_sums(const T* xt, std::size_t C, T* xmax, T* shift, T* buf, double* s1, double* k) {
  tile_max(xt, C, xmax);
  for (std::size_t r = 0; r < kTile; ++r) {
    shift[r] = exp_shift(xmax[r]);
    s1[r] = k[r] = 0.0;
  }
  tile_exp_sums<Park>(xt, C, shift, buf, s1, k);
}

// The end of a tile's pass 3: nan in every element of a lane under the rule at the top of the file (nan[r]);
// every other lane's label element from label(r, at), at = the element's place in the tile.
template <bool G, bool H, class T, class Label>
FUSEDLOSS_INLINE void tile_labels(const unsigned char* nan, const std::int64_t* t, std::size_t C, T* gt, T* ht,
                                  const Label& label) {
  for (std::size_t r = 0; r < kTile; ++r) {
    if (nan[r]) {
      for (std::size_t j = 0; j < C; ++j) nan_row<G, H>(1, gt + j * kTile + r, ht + j * kTile + r);
    } else {
      label(r, std::size_t(t[r]) * kTile + r);
    }
  }
}

// The row's sum of exponentials and what follows from it, without cancellation (see the top of the file).
struct RowSum {
  double s, sm1, inv_s, log_s;  // s, s - 1, 1 / s (0 when s == 0: all -inf row), log s
  RowSum() = default;
  RowSum(double s1, double k)
      : s(s1 + k), sm1(s1 + (k - 1.0)), inv_s(s1 + k == 0.0 ? 0.0 : 1.0 / (s1 + k)), log_s(vm::log1p(sm1)) {}
  // 1 - p_j = (s - e_j) / s, in double; for a maximum (e_j == 1) s - 1 is taken as s1 + (k - 1). For any
  // other element s - e_j >= 1 (s holds a max's 1 besides e_j), so there is nothing to cancel.
  template <class T>
  FUSEDLOSS_INLINE double one_minus_p(T e) const {
    return one_minus_p(e, s, sm1, inv_s);
  }
  template <class T>
  FUSEDLOSS_INLINE static double one_minus_p(T e, double s, double sm1, double inv_s) {
    return (e == T(1) ? sm1 : s - double(e)) * inv_s;
  }
};

// Pass 2 of the rows whose per-element math is in double (poly1, jensen_shannon): s from double exponentials
// e_j = exp(x_j - sh), as RowSum.
template <class T>
FUSEDLOSS_INLINE RowSum double_exp_sums(const T* x, std::size_t n, double sh) {
  double s1 = 0.0, k = 0.0;
#pragma omp simd reduction(+ : s1, k)
  for (std::size_t j = 0; j < n; ++j) add_exp(vm::exp(double(x[j]) - sh), s1, k);
  return RowSum(s1, k);
}

// softmax cross-entropy, hard labels or soft targets; params = (label_smoothing, z_loss, softcap,
// confidence_penalty).
// z = softcap tanh(x / softcap) (or x), lse = logsumexp(z), p = softmax(z), e = label_smoothing, cw the class
// weights (1 without), W = sum cw.
//   hard t: l = (1-e) cw_t (lse - z_t) + (e/C) (W lse - sum cw z) + z_loss lse^2
//   soft q: q' = (1-e) q + e/C, l = sum cw q' (lse - z) + z_loss lse^2
//   dl/dz_j = A p_j - b_j + 2 z_loss lse p_j, A = (1-e) cw_t + (e/C) W, b_j = (1-e) cw_t [j=t] + (e/C) cw_j
//   (soft: A = sum cw q', b_j = cw_j q'_j); d2l/dz_j^2 = A p_j (1-p_j) + 2 z_loss (p_j^2 + lse p_j (1-p_j));
//   through softcap: dl/dx = dl/dz dz, d2l/dx^2 = d2l/dz^2 dz^2 + dl/dz d2z, dz = 1 - tau^2,
//   d2z = -2 tau dz / softcap, tau = tanh(x / softcap); tau and dz come from math.hpp's tanh_sech2, since
//   1 - tau^2 from a rounded tau cancels.
//   confidence_penalty b: l -= b H, H = log s + (1/s) sum_j e_j (m - z_j) (non-negative terms, 0 where e_j = 0),
//   dl/dz_j += b p_j (log p_j + H), d2l/dz_j^2 += b p_j ((1 - 2 p_j)(log p_j + H) + 1 - p_j), with
//   log p_j = (z_j - m) - log s. CP (b != 0) is a template flag: its rows add the entropy's sum in pass 2 (the
//   loops of the entropy metric), so the rows without it keep their loops. Pass 3 needs z_j beside e_j: e_j is
//   parked where the output is not x itself (CPPark), and computed again from x_j where it is (g == x), as with
//   softcap.
// With softcap nothing is parked: pass 3 needs z_j and dz_j, and a single float cannot carry both
// accurately (dz_j is tiny where z_j is close to +-softcap), so pass 3 reads x_j again and recomputes
// tanh_sech2 and e_j (a tanh and two exps per element in each of passes 2 and 3); x_j is still read before
// g_j is written. The max pass takes the max of x, not of z: tanh is increasing, so softcap(max x) is the max of z.
template <class T>
struct cross_entropy {
  static constexpr const char* name = "cross_entropy";
  static constexpr bool hard_labels = true;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = true;

  // label_smoothing, 1 - ls, ls / C, z_loss, softcap (0: off), confidence_penalty, sum cw
  double ls, keep, e_c, zl, cap_d, cp, W;
  T cap;
  const T* cw;
  std::size_t C;

  static constexpr std::size_t arity = 4;
  cross_entropy(const Params& prm, const T* cw_, std::size_t C_)
      : ls(prm[0]), keep(1.0 - prm[0]), e_c(prm[0] / double(C_)), zl(prm[1]), cap_d(prm[2]), cp(prm[3]),
        W(0.0), cap(T(prm[2])), cw(cw_), C(C_) {
    if (cw) {
      for (std::size_t j = 0; j < C; ++j) W += double(cw[j]);  // in class order, as the row function does
    } else {
      W = double(C);
    }
  }

  // z = softcap tanh(x / softcap), and dz/dx = 1 - tanh^2 (math.hpp: tanh_sech2)
  FUSEDLOSS_INLINE T soft_z(T xj, T& dz) const { return cap * tanh_sech2(xj / cap, dz); }

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    return cp != 0.0 ? row_as<G, H, true>(x, t, q, f, g, h) : row_as<G, H, false>(x, t, q, f, g, h);
  }

  // Softcap and the confidence penalty read the class vector always (unit_class_vector: the entry passes unit
  // weights when none are given), so only plain rows have an instantiation without one: each option doubles the
  // instantiations it takes part in, and the softcap and penalty rows are rare enough for the load of a weight.
  // Multiplying by a unit weight is exact: such a row has the bits of its unweighted form.
  bool unit_class_vector() const { return cap_d > 0.0 || cp != 0.0; }

  template <bool G, bool H, bool CP>
  double row_as(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    const bool c = cap_d > 0.0;
    constexpr bool N = false;
    if (!cw) {
      if constexpr (!CP) {
        if (!c) {
          return q ? run<G, H, true, false, false, N, N, CP>(x, t, q, f, g, h)
                   : run<G, H, false, false, false, N, N, CP>(x, t, q, f, g, h);
        }
      }
      return nan_row<G, H>(C, g, h);  // not reached: the entry gives these rows a class vector
    }
    if constexpr (CP && (G || H)) {
      // the penalty's pass 3 needs z_j = x_j beside e_j: it parks e_j where the output does not overwrite x
      if (!c && (G ? g : h) != x) {
        return q ? run<G, H, true, true, false, N, N, true, true>(x, t, q, f, g, h)
                 : run<G, H, false, true, false, N, N, true, true>(x, t, q, f, g, h);
      }
    }
    if (q) {
      return c ? run<G, H, true, true, true, N, N, CP>(x, t, q, f, g, h)
               : run<G, H, true, true, false, N, N, CP>(x, t, q, f, g, h);
    }
    return c ? run<G, H, false, true, true, N, N, CP>(x, t, q, f, g, h)
             : run<G, H, false, true, false, N, N, CP>(x, t, q, f, g, h);
  }

  // The row with its metrics (hard labels, no Hessian; kernel_api.hpp RowMetrics): the same value and gradient
  // as row<G, false>, bit for bit. mr: the label's rank, counted in pass 1 (row_max_rank); me: the entropy
  // H = log s + (1/s) sum_j e_j (m - z_j), one more sum in pass 2 (the one the confidence penalty adds, when it is
  // on). max_j p_j = 1/s (every maximum has e = 1) and -log p_t come from what the row computes anyway. The rank
  // is a per-row choice of pass 1, so it is a runtime flag; the entropy changes pass 2's loop (ME), except that
  // with the penalty pass 2 sums it anyway.
  template <bool G>
  double row_metrics(const T* x, std::int64_t t, double f, T* g, RowMetrics& met, bool mr, bool me) const {
    if (cp != 0.0) return metrics_as<G, false, true>(x, t, f, g, met, mr, me);
    return me ? metrics_as<G, true, false>(x, t, f, g, met, mr, me)
              : metrics_as<G, false, false>(x, t, f, g, met, mr, me);
  }

  template <bool G, bool ME, bool CP>
  double metrics_as(const T* x, std::int64_t t, double f, T* g, RowMetrics& met, bool mr, bool me) const {
    const bool c = cap_d > 0.0;
    if (!cw) {  // as row_as
      if constexpr (!CP) {
        if (!c) return run<G, false, false, false, false, true, ME, CP>(x, t, nullptr, f, g, nullptr, &met, mr, me);
      }
      met = nan_metrics();
      return nan_row<G, false>(C, g, static_cast<T*>(nullptr));
    }
    if constexpr (CP && G) {
      if (!c && g != x) {  // the penalty parks e_j where the gradient does not overwrite x (row_as)
        return run<G, false, false, true, false, true, ME, true, true>(x, t, nullptr, f, g, nullptr, &met, mr, me);
      }
    }
    return c ? run<G, false, false, true, true, true, ME, CP>(x, t, nullptr, f, g, nullptr, &met, mr, me)
             : run<G, false, false, true, false, true, ME, CP>(x, t, nullptr, f, g, nullptr, &met, mr, me);
  }

  // Rows in tiles (row_tiles.hpp), for hard labels without softcap or the confidence penalty (tiles_for): the
  // steps of `run`, with the vector lanes across kTile rows instead of along one row. xt[j * kTile + r] is
  // logit j of lane r; every lane holds finite logits or a row of its own, labels in [0, C). Writes v[r] (the
  // row value), gt and ht in xt's layout, and met[r] (M; the rank only if mr, the entropy only if me).
  bool tiles_for(std::size_t C_) const { return C_ <= kTileMaxC && cap_d == 0.0 && cp == 0.0; }

  template <bool G, bool H, bool M>
  void tile(const T* xt, const std::int64_t* t, const double* f, double* v, T* gt, T* ht, RowMetrics* met, bool mr,
            bool me) const {
    constexpr std::size_t L = kTile;
    constexpr bool Cap = false, CP = false;
    const std::size_t n = C;
    const T* const cwp = cw;
    alignas(64) T xmax[L], x_t[L];
    for (std::size_t r = 0; r < L; ++r) x_t[r] = xt[std::size_t(t[r]) * L + r];
    // pass 1: the max and, for the metrics, the label's rank (as row_max_rank)
    tile_max(xt, n, xmax);
    alignas(64) std::int64_t rank[L] = {};
    if (M && mr) {
      for (std::size_t j = 0; j < n; ++j) {
        const T* xj = xt + j * L;
        const std::int64_t jj = std::int64_t(j);
#pragma omp simd
        for (std::size_t r = 0; r < L; ++r) rank[r] += (jj < t[r] ? xj[r] >= x_t[r] : xj[r] > x_t[r]) ? 1 : 0;
      }
    }
    alignas(64) T shift[L];
    for (std::size_t r = 0; r < L; ++r) shift[r] = exp_shift(xmax[r]);

    // pass 2 (each lane sums its at most kTileMaxC terms in T, as one chunk of run)
    alignas(64) T s1[L] = {}, k[L] = {}, szw[L] = {}, ent[L] = {};
    alignas(64) T et[kTileMaxC * L];
    const bool with_ent = M && me;
    if (ls != 0.0) {
      with_ent ? tile_sums<true, true>(xt, shift, et, s1, k, szw, ent) : tile_sums<true, false>(xt, shift, et, s1, k, szw, ent);
    } else {
      with_ent ? tile_sums<false, true>(xt, shift, et, s1, k, szw, ent) : tile_sums<false, false>(xt, shift, et, s1, k, szw, ent);
    }

    // the rows' scalars, lane by lane: a loop GCC vectorises (the struct locals do not outlive an iteration,
    // and no pragma makes them arrays indexed by lane); the label's elements go to lg / lh, placed after pass 3
    alignas(64) T inv_s[L], coefz[L], coef[L], fT[L], lseZ[L], lg[L], lh[L];
    alignas(64) double s_d[L], sm1_d[L], inv_s_d[L], log_s[L], lp_t[L];
    alignas(64) double ct[L], value[L];
    alignas(64) unsigned char nan[L];
    for (std::size_t r = 0; r < L; ++r) ct[r] = cwp ? double(cwp[t[r]]) : 1.0;
    for (std::size_t r = 0; r < L; ++r) {
      const RowSum rs(double(s1[r]), double(k[r]));
      const Scalars sc = hard_row<CP>(shift[r], rs, ct[r], x_t[r], double(szw[r]), double(ent[r]));
      const bool bad = no_softmax(xmax[r], rs.s);
      nan[r] = bad;
      value[r] = bad ? std::numeric_limits<double>::quiet_NaN() : sc.value;
      const Pass3 cr = pass3_of(shift[r], rs, sc, double(ent[r]), f[r]);
      inv_s[r] = cr.inv_s, coefz[r] = cr.coefz, coef[r] = cr.coef, fT[r] = cr.f, lseZ[r] = cr.lseZ;
      s_d[r] = rs.s, sm1_d[r] = rs.sm1, inv_s_d[r] = rs.inv_s, log_s[r] = rs.log_s, lp_t[r] = sc.lp_t;
      label_element<G, H, Cap, CP>(sc, x_t[r], T(1), f[r], lg, lh, r);
    }
    std::copy(value, value + L, v);
    if constexpr (M) {
      for (std::size_t r = 0; r < L; ++r) {
        met[r] = nan[r] ? nan_metrics() : row_metrics_of(rank[r], inv_s_d[r], log_s[r], lp_t[r], double(ent[r]));
      }
    }
    if constexpr (G || H) {
      // pass 3
      const T e_cT = T(e_c), zl2 = T(2.0 * zl), cpT = T(cp);
      for (std::size_t j = 0; j < n; ++j) {
        const T cj = cwp ? cwp[j] : T(1);
        const T* ej = et + j * L;
        T* gj = gt + j * L;
        T* hj = ht + j * L;
#pragma omp simd
        for (std::size_t r = 0; r < L; ++r) {
          const T e = ej[r], p = e * inv_s[r];
          // (no softcap or penalty in tiles: z, dz, hmls, the shift and 2 / softcap^2 are not read)
          put<G, H, Cap, CP>(coefz[r] * p - e_cT * cj, e, p, T(0), T(1), fT[r], coef[r], lseZ[r], T(0), shift[r],
                             s_d[r], sm1_d[r], inv_s_d[r], zl2, cpT, T(0), gj, hj, r);
        }
      }
      tile_labels<G, H>(nan, t, n, gt, ht, [&](std::size_t r, std::size_t at) {
        if constexpr (G) gt[at] = lg[r];
        if constexpr (H) ht[at] = lh[r];
      });
    }
  }

  // tile's pass 2: et[j * kTile + r] = e_j of lane r, and the lanes' sums (hard_sums). Not inlined: inlined
  // into tile, GCC 12 leaves its loop scalar ("control flow in loop").
  template <bool Smooth, bool Ent>
  FUSEDLOSS_NOINLINE void tile_sums(const T* xt, const T* shift, T* et, T* s1, T* k, T* szw, T* ent) const {
    constexpr std::size_t L = kTile;
    for (std::size_t j = 0; j < C; ++j) {
      const T cj = cw ? cw[j] : T(1);
      const T* const xj = xt + j * L;
      T* const ej = et + j * L;
#pragma omp simd
      for (std::size_t r = 0; r < L; ++r) ej[r] = hard_sums<Smooth, Ent, false>(xj[r], cj, shift[r], s1[r], k[r], szw[r], ent[r]);
    }
  }

  // The pieces of a row that `run` (one row, lanes along it) and `tile` (lanes across rows) share.

  template <bool Cap>
  FUSEDLOSS_INLINE T z_of(T xj, T& dz) const {
    if constexpr (Cap) {
      return soft_z(xj, dz);
    } else {
      return xj;
    }
  }

  // Pass 2 of one element of a hard-label row: returns e_j = exp(z_j - m) and adds its terms to the sums
  // (Smooth: cw_j (m - z_j), a weightless class adding 0 even at -inf; Ent: e_j (m - z_j), a masked class
  // (e = 0, z = -inf) adding 0).
  template <bool Smooth, bool Ent, bool Cap>
  FUSEDLOSS_INLINE T hard_sums(T xj, T cj, T shift, T& s1, T& k, T& szw, T& ent) const {
    T dz = T(1);
    const T z = z_of<Cap>(xj, dz);
    const T e = exp_sub(z, shift);
    add_exp(e, s1, k);
    if constexpr (Smooth) szw += cj != T(0) ? cj * (shift - z) : T(0);
    if constexpr (Ent) ent += e != T(0) ? e * (shift - z) : T(0);
    (void)cj, (void)szw, (void)ent;
    return e;
  }

  // A row's scalars once pass 2 has its sums: lse, A (coef) and A + 2 z_loss lse (coefz), log p_t, the
  // entropy H (CP) and the row value.
  struct Scalars {
    double lse, coef, coefz, ct, lp_t, ent_h, value;
  };

  // What every row adds once s is known: z_loss and the confidence penalty to the value, and coefz.
  template <bool CP>
  FUSEDLOSS_INLINE void finish(Scalars& r, const RowSum& rs, double ent) const {
    if (zl != 0.0) r.value += zl * r.lse * r.lse;
    r.ent_h = 0.0;
    if constexpr (CP) {
      r.ent_h = rs.log_s + ent * rs.inv_s;
      r.value -= cp * r.ent_h;
    }
    r.coefz = zl != 0.0 ? r.coef + 2.0 * zl * r.lse : r.coef;
  }

  // Hard label t (its class weight ct): lse - z_t is taken as (m - z_t) + log s (an exact difference, then
  // log1p), which stays accurate when the label's class dominates and lse - z_t is tiny.
  template <bool CP>
  FUSEDLOSS_INLINE Scalars hard_row(T shift, const RowSum& rs, double ct, T z_t, double szw, double ent) const {
    Scalars r;
    r.lse = double(shift) + rs.log_s;
    r.ct = ct;
    r.coef = keep * ct + e_c * W;
    r.lp_t = (double(z_t) - double(shift)) - rs.log_s;
    r.value = keep * ct * -r.lp_t;
    if (ls != 0.0) r.value += e_c * (W * rs.log_s + szw);
    finish<CP>(r, rs, ent);
    return r;
  }

  // Soft targets: coef = sum_j b_j, szw = sum_j b_j (m - z_j) from pass 2.
  template <bool CP>
  FUSEDLOSS_INLINE Scalars soft_row(T shift, const RowSum& rs, double coef, double szw, double ent) const {
    Scalars r;
    r.lse = double(shift) + rs.log_s;
    r.ct = 1.0;
    r.coef = coef;
    r.lp_t = 0.0;
    r.value = coef * rs.log_s + szw;
    finish<CP>(r, rs, ent);
    return r;
  }

  static RowMetrics nan_metrics() {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    return RowMetrics{-1, nan, nan, nan};
  }

  // max_j p_j = 1/s (every maximum has e = 1); H = log s + (1/s) sum_j e_j (m - z_j) (0 when not asked for).
  static RowMetrics row_metrics_of(std::int64_t rank, double inv_s, double log_s, double lp_t, double ent) {
    return RowMetrics{rank, inv_s, -lp_t, log_s + ent * inv_s};
  }

  // A row's coefficients in pass 3, in T (locals, not members: stores to the output might alias a member,
  // which keeps a loop scalar). lseZ: lse where z_loss is on, else 0, so that the z_loss term is an exact 0
  // without a branch; hmls: H - log s = ent / s (CP: log p_j + H = (z_j - m) + hmls); tic2 = 2 / softcap^2
  // (d2z = -2 (z / cap) dz / cap).
  struct Pass3 {
    T inv_s, coefz, coef, f, lseZ, hmls, shift, zl2, cp, tic2;
    RowSum rs;
  };
  FUSEDLOSS_INLINE Pass3 pass3_of(T shift, const RowSum& rs, const Scalars& sc, double ent, double f) const {
    return Pass3{T(rs.inv_s),   T(sc.coefz), T(sc.coef), T(f), T(zl != 0.0 ? sc.lse : 0.0), T(ent * rs.inv_s),
                 shift,         T(2.0 * zl), T(cp),      cap_d > 0.0 ? T(2.0 / (cap_d * cap_d)) : T(0),
                 rs};
  }

  // Pass 3 of element j, from gz = dl/dz_j without the penalty and p = p_j: writes g[j] = f dl/dx_j (G) and
  // h[j] = f d2l/dx_j^2 (H). The row's coefficients (Pass3's fields) come one by one: tile passes its lanes'
  // values, and a struct built inside a simd loop becomes an array indexed by lane, which GCC 12 leaves scalar.
  template <bool G, bool H, bool Cap, bool CP>
  FUSEDLOSS_INLINE static void put(T gz, T e, T p, T z, T dz, T f, T coef, T lseZ, T hmls, T shift, double s,
                                   double sm1, double inv_s, T zl2, T cp, T tic2, T* g, T* h, std::size_t j) {
    T lph = T(0);  // log p_j + H (CP; p_j = 0 leaves the terms out)
    if constexpr (CP) {
      lph = (z - shift) + hmls;
      gz += p != T(0) ? cp * p * lph : T(0);
    }
    if constexpr (H) {
      const T omp = T(RowSum::one_minus_p(e, s, sm1, inv_s));
      T hz = coef * p * omp + zl2 * (p * p + lseZ * p * omp);
      if constexpr (CP) hz += p != T(0) ? cp * p * ((omp - p) * lph + omp) : T(0);
      T hx = hz * dz * dz;
      if constexpr (Cap) hx -= gz * (tic2 * z * dz);
      h[j] = f * hx;
    }
    if constexpr (G) g[j] = f * (gz * dz);
    (void)e, (void)z, (void)g, (void)h, (void)lph, (void)hmls, (void)shift, (void)s, (void)sm1, (void)inv_s;
    (void)coef, (void)lseZ, (void)zl2, (void)cp, (void)tic2;
  }
  template <bool G, bool H, bool Cap, bool CP>
  FUSEDLOSS_INLINE static void put(T gz, T e, T p, T z, T dz, const Pass3& c, T* g, T* h, std::size_t j) {
    put<G, H, Cap, CP>(gz, e, p, z, dz, c.f, c.coef, c.lseZ, c.hmls, c.shift, c.rs.s, c.rs.sm1, c.rs.inv_s, c.zl2,
                       c.cp, c.tic2, g, h, j);
  }

  // The label's element again, in double, with b_t = (1-e) cw_t + (e/C) cw_t:
  // dl/dz_t = (1-e) cw_t (p_t - 1) + (e/C) (W p_t - cw_t) + 2 z_loss lse p_t, with p_t - 1 = expm1(log p_t).
  // Writes g[t] and h[t].
  template <bool G, bool H, bool Cap, bool CP>
  FUSEDLOSS_INLINE void label_element(const Scalars& sc, T z_t, T dz_t, double f, T* g, T* h, std::size_t t) const {
    const double p_t = vm::exp(sc.lp_t), omp_t = -vm::expm1(sc.lp_t);
    double gz = -keep * sc.ct * omp_t + e_c * (W * p_t - sc.ct);
    if (zl != 0.0) gz += 2.0 * zl * sc.lse * p_t;
    [[maybe_unused]] const double lph_t = p_t != 0.0 ? sc.lp_t + sc.ent_h : 0.0;
    if constexpr (CP) gz += cp * p_t * lph_t;
    const double dz = double(dz_t);
    if constexpr (G) g[t] = T(f * (gz * dz));
    if constexpr (H) {
      double hz = sc.coef * p_t * omp_t;
      if (zl != 0.0) hz += 2.0 * zl * (p_t * p_t + sc.lse * p_t * omp_t);
      if constexpr (CP) hz += cp * p_t * ((omp_t - p_t) * lph_t + omp_t);
      double hx = hz * dz * dz;
      if constexpr (Cap) hx -= gz * (2.0 * double(z_t) * dz / (cap_d * cap_d));
      h[t] = T(f * hx);
    }
    (void)z_t, (void)g, (void)h;
  }

  // M: write the row's metrics to *met (row_metrics), ME, mr and me as there; CP: the confidence penalty is on;
  // CPPark: with it, the output that parks e_j is not x (row_as), so pass 3 reads e_j there and z_j = x_j.
  template <bool G, bool H, bool Soft, bool CW, bool Cap, bool M = false, bool ME = false, bool CP = false,
            bool CPPark = false>
  double run(const T* x, std::int64_t t, const T* q, double f, T* g, T* h, RowMetrics* met = nullptr, bool mr = false,
             bool me = false) const {
    static_assert(!(Soft && M), "metrics need hard labels");
    static_assert(!CPPark || (CP && !Cap), "CPPark: the penalty without softcap");
    constexpr bool Store = G || H;
    constexpr bool Park = Store && !Cap && (!CP || CPPark);  // pass 2 parks e_j for pass 3 (not with softcap)
    constexpr bool Reread = Cap || (CP && !CPPark);          // pass 3 computes z_j and e_j again from x_j
    T* buf = G ? g : h;
    const std::size_t n = C;
    const T x_t = Soft ? T(0) : x[t];  // before pass 2 may overwrite it (g == x)
    const bool smooth = ls != 0.0;

    // pass 1
    std::int64_t rank = 0;
    T xmax;
    if (M && mr) {
      xmax = row_max_rank(x, n, std::size_t(t), x_t, rank);
    } else {
      xmax = row_max(x, n);
    }
    T unused = T(0);
    const T shift = exp_shift(Cap ? soft_z(xmax, unused) : xmax);
    const T keepT = T(keep), e_cT = T(e_c);
    const T* const cwp = cw;  // a local copy: stores to buf might alias the member, which keeps loops scalar

    // pass 2: z_j, e_j = exp(z_j - m) and the row sums; the three loops differ only in what else they sum.
    // szw = sum_j b_j (m - z_j) (b_j = cw_j q'_j, or cw_j for the smoothing term): with lse = m + log s,
    // sum_j b_j (lse - z_j) = (sum_j b_j) log s + szw, a sum of non-negative terms (nothing cancels).
    double s1 = 0.0, k = 0.0, coef = 0.0, szw = 0.0, ent = 0.0;  // ent: sum_j e_j (m - z_j) (ME or CP)
    for (std::size_t j0 = 0; j0 < n; j0 += kChunk) {
      const std::size_t j1 = std::min(n, j0 + kChunk);
      T cs1 = T(0), ck = T(0), ccoef = T(0), cszw = T(0), cent = T(0);
      if constexpr (Soft) {
#pragma omp simd reduction(+ : cs1, ck, ccoef, cszw, cent)
        for (std::size_t j = j0; j < j1; ++j) {
          T dz = T(1);
          const T z = z_of<Cap>(x[j], dz);
          const T e = exp_sub(z, shift);
          add_exp(e, cs1, ck);
          const T bj = (CW ? cwp[j] : T(1)) * (q[j] * keepT + e_cT);
          ccoef += bj;
          cszw += bj != T(0) ? bj * (shift - z) : T(0);  // a weightless class adds nothing, even at -inf
          if constexpr (CP) cent += e != T(0) ? e * (shift - z) : T(0);
          if constexpr (Park) buf[j] = e;
        }
      } else if (smooth) {
#pragma omp simd reduction(+ : cs1, ck, cszw, cent)
        for (std::size_t j = j0; j < j1; ++j) {
          const T e = hard_sums<true, ME || CP, Cap>(x[j], CW ? cwp[j] : T(1), shift, cs1, ck, cszw, cent);
          if constexpr (Park) buf[j] = e;
        }
      } else {
#pragma omp simd reduction(+ : cs1, ck, cent)
        for (std::size_t j = j0; j < j1; ++j) {
          const T e = hard_sums<false, ME || CP, Cap>(x[j], T(1), shift, cs1, ck, cszw, cent);
          if constexpr (Park) buf[j] = e;
        }
      }
      s1 += double(cs1);
      k += double(ck);
      coef += double(ccoef);
      szw += double(cszw);
      ent += double(cent);
    }
    const RowSum rs(s1, k);
    if (no_softmax(xmax, rs.s)) {
      if constexpr (M) *met = nan_metrics();
      return nan_row<G, H>(n, g, h);
    }

    T dz_t = T(1), z_t = T(0);
    Scalars sc;
    if constexpr (Soft) {
      sc = soft_row<CP>(shift, rs, coef, szw, ent);
    } else {
      z_t = z_of<Cap>(x_t, dz_t);  // as pass 2 computed it, so that m - z_t is 0 when t is the max
      sc = hard_row<CP>(shift, rs, CW ? double(cw[t]) : 1.0, z_t, szw, ent);
    }
    if constexpr (M) *met = row_metrics_of(rank, rs.inv_s, rs.log_s, sc.lp_t, me ? ent : 0.0);
    (void)met, (void)rank, (void)mr, (void)me;
    if constexpr (!Store) {
      (void)f;
      return sc.value;
    }

    // pass 3
    const Pass3 c = pass3_of(shift, rs, sc, ent, f);
#pragma omp simd
    for (std::size_t j = 0; j < n; ++j) {
      T dz = T(1), z = T(0), e;
      if constexpr (Reread) {
        z = z_of<Cap>(x[j], dz);  // x_j read before g_j is written
        e = exp_sub(z, shift);
      } else {
        e = buf[j];
        if constexpr (CP) z = x[j];  // CPPark: x is not the parking output
      }
      const T p = e * c.inv_s;
      const T cj = CW ? cwp[j] : T(1);
      T gz;
      if constexpr (Soft) {
        // A p_j - b_j cancels where the target and the softmax agree on a dominant class; in double
        gz = T(sc.coefz * (double(e) * rs.inv_s) - double(cj) * (double(q[j]) * keep + e_c));
      } else {
        gz = c.coefz * p - e_cT * cj;
      }
      put<G, H, Cap, CP>(gz, e, p, z, dz, c, g, h, j);
    }
    if constexpr (!Soft) label_element<G, H, Cap, CP>(sc, z_t, dz_t, f, g, h, std::size_t(t));
    return sc.value;
  }
};

// softmax focal loss with integer targets; params = (gamma); cw = alpha per class (or null: 1).
// p_t = softmax(x)_t, a_t = alpha[t]:  l = -a_t (1-p_t)^gamma log p_t;  g_j = a_t F (p_j - [j=t]) with
// F = (1-p_t)^gamma - gamma p_t log(p_t) (1-p_t)^(gamma-1);  h_j = a_t (F p_j (1-p_j) - F' p_t (p_j - [j=t])^2),
// F' = -gamma (1-p_t)^(gamma-1) (2 + log p_t) + gamma (gamma-1) p_t log(p_t) (1-p_t)^(gamma-2).
// Row scalars in double, from log p_t = x_t - lse and 1 - p_t = -expm1(log p_t); at p_t == 1 the powers
// take their limits, as in _pointwise.categorical_focal_row. row() returns the value without a_t, which is its
// value_factor (loops.hpp weigh: the row weight meets a_t first, so a huge alpha with a small weight stays finite).
template <class T>
struct categorical_focal {
  static constexpr const char* name = "categorical_focal";
  static constexpr bool hard_labels = true;
  static constexpr bool soft_labels = false;
  static constexpr bool class_vector = true;

  double gamma;
  const T* cw;
  std::size_t C;

  static constexpr std::size_t arity = 1;
  categorical_focal(const Params& prm, const T* cw_, std::size_t C_) : gamma(prm[0]), cw(cw_), C(C_) {}

  double value_factor(std::int64_t t) const { return cw ? double(cw[t]) : 1.0; }

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)q;
    const std::size_t n = C;
    constexpr bool Store = G || H;
    T* buf = G ? g : h;
    const T x_t = x[t];  // before pass 2 may overwrite it (g == x)

    const T xmax = row_max(x, n);
    const T shift = exp_shift(xmax);
    double s1 = 0.0, k = 0.0;
#pragma omp simd reduction(+ : s1, k)
    for (std::size_t j = 0; j < n; ++j) {
      const T e = exp_sub(x[j], shift);
      add_exp(e, s1, k);
      if constexpr (Store) buf[j] = e;
    }
    const RowSum rs(s1, k);
    if (no_softmax(xmax, rs.s)) return nan_row<G, H>(n, g, h);
    const Scalars sc = scalars(shift, rs, x_t);
    const double p_t = sc.p_t, omp = sc.omp, F = sc.F, D = sc.D;
    const double a_t = value_factor(t);
    if constexpr (!Store) {
      (void)f;
      return sc.value;
    }
    const double fa = f * a_t;
    const double o_div = omp > 0.0 ? omp : kInf;  // r_j = p_j / o in [0, 1]; 0 when o = 0 (then every p_j = 0)
    const T inv_sT = T(rs.inv_s), cF = T(fa * F);
    // The weight multiplies each element's whole Hessian, as the reference's w h_j. Spread over h_j's two terms
    // (F p_j (1 - p_j) <= |F| / 4 and D r^2 <= |D|, the first in T: the fast form) only where neither weighted
    // term can overflow T, so no inf - inf appears; else (a row weight of inf, or one near the end of T's
    // range) the whole element in double, the form of _pointwise.categorical_focal_row.
    const bool split = std::fabs(fa) * (std::fabs(F) + std::fabs(D)) < double(std::numeric_limits<T>::max());
    auto elements = [&](auto split_tag) {
      constexpr bool Split = decltype(split_tag)::value;
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) {
        const T e = buf[j];
        const T p = e * inv_sT;
        // D (p_j / o)^2 in double: D alone may be far outside float's range while the product is not
        if constexpr (H) {
          const double r = double(p) / o_div;
          if constexpr (Split) {
            h[j] = cF * p * T(rs.one_minus_p(e)) - T(fa * D * (r * r));
          } else {
            h[j] = T(fa * (F * double(p) * rs.one_minus_p(e) - D * (r * r)));
          }
        }
        if constexpr (G) g[j] = cF * p;
      }
    };
    if (split) {
      elements(std::true_type{});
    } else {
      elements(std::false_type{});
    }
    // the label's element, with p_t - 1 = -omp, in double
    if constexpr (G) g[t] = T(fa * F * -omp);
    if constexpr (H) h[t] = T(fa * (F * p_t * omp - D));
    return sc.value;
  }

  // The row's scalars (row and tile), in double, from log p_t = (x_t - m) - log s and 1 - p_t = -expm1(log p_t):
  // accurate however close p_t is to 1. Only powers of o = 1 - p_t with exponents >= 0
  // (_pointwise.categorical_focal_row has the same forms):
  //   F = o^gamma (1 - gamma p_t L / o), L = log p_t (p_t L / o -> -1 as o -> 0, -> 0 as p_t -> 0)
  //   D = F'(p_t) p_t o^2 = gamma o^gamma ((gamma-1) p_t (p_t L) - o (2 p_t + p_t L))
  //   h_t = a_t (F p_t o - D),  h_j = a_t (F p_j (1 - p_j) - D (p_j / o)^2) for j != t (p_j <= o)
  // (1 - p_t)^(gamma-2) itself overflows on a confident row (a logit gap of 357 at gamma 0 in double) and made
  // the Hessian nan or -inf. vm functions and selects, no branch: tile's loop over its lanes vectorises.
  struct Scalars {
    double value, F, D, p_t, omp;  // value without a_t
  };
  FUSEDLOSS_INLINE Scalars scalars(T shift, const RowSum& rs, T x_t) const {
    const double lp_t = (double(x_t) - double(shift)) - rs.log_s;
    const double p_t = vm::exp(lp_t), omp = -vm::expm1(lp_t);
    const double o_safe = omp > 0.0 ? omp : 1.0;
    const double pow_g = omp > 0.0 ? pow_pos(o_safe, gamma) : (gamma == 0.0 ? 1.0 : 0.0);
    const double plp = p_t > 0.0 ? p_t * lp_t : 0.0;                    // p_t log p_t, its limit 0 at p_t = 0
    const double plo = p_t > 0.0 ? (omp > 0.0 ? plp / o_safe : -1.0) : 0.0;  // p_t log(p_t) / (1 - p_t)
    return Scalars{-pow_g * lp_t, pow_g * (1.0 - gamma * plo),
                   gamma * pow_g * ((gamma - 1.0) * p_t * plp - omp * (2.0 * p_t + plp)), p_t, omp};
  }

  // Rows in tiles (row_tiles.hpp; tile in cross_entropy says how): the passes of row, with the vector lanes
  // across kTile rows; the sums of the exponentials in double, as row's.
  bool tiles_for(std::size_t C_) const { return C_ <= kTileMaxC; }

  template <bool G, bool H, bool M>
  void tile(const T* xt, const std::int64_t* t, const double* f, double* v, T* gt, T* ht, RowMetrics* met, bool mr,
            bool me) const {
    static_assert(!M, "categorical_focal has no metrics pass");
    (void)met, (void)mr, (void)me;
    constexpr std::size_t L = kTile;
    constexpr bool Store = G || H;
    const std::size_t n = C;
    alignas(64) T xmax[L], shift[L], x_t[L];
    alignas(64) double s1[L], k[L];
    for (std::size_t r = 0; r < L; ++r) x_t[r] = xt[std::size_t(t[r]) * L + r];
    T* const buf = G ? gt : ht;  // e_j parked for pass 3, as row
    tile_softmax_sums<Store>(xt, n, xmax, shift, buf, s1, k);

    // the rows' scalars, lane by lane (a loop GCC vectorises: see cross_entropy::tile)
    alignas(64) double value[L], fa[L], F[L], D[L], p_t[L], omp[L], o_div[L], s_d[L], sm1_d[L], inv_s_d[L];
    alignas(64) T inv_s[L], cF[L], split[L];
    alignas(64) unsigned char nan[L];
    for (std::size_t r = 0; r < L; ++r) fa[r] = f[r] * value_factor(t[r]);
    for (std::size_t r = 0; r < L; ++r) {
      const RowSum rs(s1[r], k[r]);
      const Scalars sc = scalars(shift[r], rs, x_t[r]);
      const bool bad = no_softmax(xmax[r], rs.s);
      nan[r] = bad;
      value[r] = bad ? std::numeric_limits<double>::quiet_NaN() : sc.value;
      F[r] = sc.F, D[r] = sc.D, p_t[r] = sc.p_t, omp[r] = sc.omp;
      o_div[r] = sc.omp > 0.0 ? sc.omp : kInf;
      s_d[r] = rs.s, sm1_d[r] = rs.sm1, inv_s_d[r] = rs.inv_s;
      inv_s[r] = T(rs.inv_s), cF[r] = T(fa[r] * sc.F);
      split[r] = std::fabs(fa[r]) * (std::fabs(sc.F) + std::fabs(sc.D)) < double(std::numeric_limits<T>::max())
                     ? T(1)
                     : T(0);
    }
    std::copy(value, value + L, v);
    if constexpr (Store) {
      // pass 3 (h_j as row: split where it is safe, per lane; the whole element in double elsewhere)
      for (std::size_t j = 0; j < n; ++j) {
        const T* ej = buf + j * L;
        T* gj = gt + j * L;
        T* hj = ht + j * L;
#pragma omp simd
        for (std::size_t r = 0; r < L; ++r) {
          const T e = ej[r];
          const T p = e * inv_s[r];
          if constexpr (H) {
            const double rr = double(p) / o_div[r], ompj = RowSum::one_minus_p(e, s_d[r], sm1_d[r], inv_s_d[r]);
            const T fast = cF[r] * p * T(ompj) - T(fa[r] * D[r] * (rr * rr));
            const T whole = T(fa[r] * (F[r] * double(p) * ompj - D[r] * (rr * rr)));
            hj[r] = split[r] != T(0) ? fast : whole;
          }
          if constexpr (G) gj[r] = cF[r] * p;
        }
      }
      tile_labels<G, H>(nan, t, n, gt, ht, [&](std::size_t r, std::size_t at) {
        if constexpr (G) gt[at] = T(fa[r] * F[r] * -omp[r]);
        if constexpr (H) ht[at] = T(fa[r] * (F[r] * p_t[r] * omp[r] - D[r]));
      });
    }
  }
};

// multiclass hinge, as torch.nn.functional.multi_margin_loss; params = (margin, p), cw = class_weight.
// v_j = margin - x_t + x_j:  l = cw_t / C sum_{j != t} max(0, v_j)^p;  g_j = cw_t / C p v_j^(p-1) [v_j > 0]
// (j != t), g_t = -sum_{j != t} g_j;  h = 0 for p = 1; p = 2: h_j = 2 cw_t / C [v_j > 0], h_t = sum_{j != t} h_j.
// One pass, no exp; v_j = margin + (x_j - x_t) in double, the logit difference first: exact for tied logits
// however large (margin - x_t first lost the margin next to 1e17), and the active set [v_j > 0] is then exactly
// the reference's (_pointwise.multi_margin_row). row() returns the sum; cw_t / C is its value_factor (loops.hpp
// weigh: the row weight multiplies it before the sum, so a finite weighted value does not overflow on the way).
template <class T>
struct multi_margin {
  static constexpr const char* name = "multi_margin";
  static constexpr bool hard_labels = true;
  static constexpr bool soft_labels = false;
  static constexpr bool class_vector = true;

  double margin;
  bool p2;
  const T* cw;
  std::size_t C;

  static constexpr std::size_t arity = 2;
  multi_margin(const Params& prm, const T* cw_, std::size_t C_)
      : margin(prm[0]), p2(prm[1] == 2.0), cw(cw_), C(C_) {}

  double value_factor(std::int64_t t) const { return (cw ? double(cw[t]) : 1.0) / double(C); }

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)q;
    return p2 ? run<G, H, true>(x, t, f, g, h) : run<G, H, false>(x, t, f, g, h);
  }

  template <bool G, bool H, bool P2>
  double run(const T* x, std::int64_t t, double f, T* g, T* h) const {
    const std::size_t tt = std::size_t(t);
    const double xt = double(x[t]);  // x_t before any write (g == x)
    const double fk = f * value_factor(t);
    double value = 0.0, g_t = 0.0, h_t = 0.0;
    // the rule for rows with a nan logit or no logit above -inf (top of the file): counted on the way, since
    // g == x leaves nothing to read again afterwards
    double nans = 0.0, ninfs = 0.0;
    // the classes other than t: [0, t) and (t, C)
    auto span = [&](std::size_t lo, std::size_t hi) {
      double sv = 0.0, sg = 0.0, sh = 0.0, sn = 0.0, si = 0.0;
#pragma omp simd reduction(+ : sv, sg, sh, sn, si)
      for (std::size_t j = lo; j < hi; ++j) {
        const double xj = double(x[j]);
        sn += xj != xj ? 1.0 : 0.0;
        si += xj == -kInf ? 1.0 : 0.0;
        const double v = margin + (xj - xt);
        const bool active = v > 0.0;
        const double gj = active ? (P2 ? 2.0 * v : 1.0) : 0.0;
        const double hj = (P2 && active) ? 2.0 : 0.0;
        sv += active ? (P2 ? v * v : v) : 0.0;
        sg += gj;
        sh += hj;
        if constexpr (G) g[j] = T(fk * gj);
        if constexpr (H) h[j] = T(fk * hj);
      }
      value += sv;
      g_t -= sg;
      h_t += sh;
      nans += sn;
      ninfs += si;
    };
    span(0, tt);
    span(tt + 1, C);
    if (xt != xt || nans != 0.0 || (xt == -kInf && ninfs == double(C - 1))) return nan_row<G, H>(C, g, h);
    if constexpr (G) g[t] = T(fk * g_t);
    if constexpr (H) h[t] = T(fk * h_t);
    return value;
  }
};

// KL(target || softmax(x / T)) per row; params = (log_target, temperature); soft targets only.
// z = x / T, lp = z - lse(z), q = target (exp(target) if log_target), S = sum q:
// l = sum_{q_j > 0} q_j (log q_j - lp_j);  g_j = (S p_j - q_j) / T;  h_j = S p_j (1 - p_j) / T^2.
// jensen_shannon at beta = 0 is this row at T = 1 (_pointwise.kl_div_with_logits_row).
// Pass 3 needs z_j for the value, so it reads x_j again instead of a parked e_j (recomputing the exp when
// a gradient is wanted): with g == x, x_j is still read before g_j is written.
template <class T>
struct kl_div_with_logits {
  static constexpr const char* name = "kl_div_with_logits";
  static constexpr bool hard_labels = false;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = false;

  bool log_target;
  double inv_t;
  std::size_t C;

  static constexpr std::size_t arity = 2;
  kl_div_with_logits(const Params& prm, const T*, std::size_t C_)
      : log_target(prm[0] != 0.0), inv_t(1.0 / prm[1]), C(C_) {}

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)t;
    return log_target ? run<G, H, true>(x, q, f, g, h) : run<G, H, false>(x, q, f, g, h);
  }

  template <bool G, bool H, bool LogT>
  double run(const T* x, const T* q, double f, T* g, T* h) const {
    const std::size_t n = C;
    // z_j - m = (x_j - max x) / T in double (exact difference, one rounding), so that e_j, log s and the
    // value's log p_j = (z_j - m) - log s all see the same, accurate arguments. s itself is summed from
    // double exps even for float data: KL = cross-entropy - entropy can be far smaller than either, and a
    // float32 log s (about 1e-7 absolute) would then dominate its error. The gradient's e_j stay in T.
    const T xmax = row_max(x, n);
    const double dmax = double(exp_shift(xmax));
    double s1 = 0.0, k = 0.0, S = 0.0;
#pragma omp simd reduction(+ : s1, k, S)
    for (std::size_t j = 0; j < n; ++j) {
      add_exp(vm::exp((double(x[j]) - dmax) * inv_t), s1, k);
      S += LogT ? vm::exp(double(q[j])) : double(q[j]);
    }
    const RowSum rs(s1, k);
    if (no_softmax(xmax, rs.s)) return nan_row<G, H>(n, g, h);
    const T inv_sT = T(rs.inv_s), ch = T(f * S * inv_t * inv_t);
    const double cq = f * inv_t;
    double value = 0.0;
#pragma omp simd reduction(+ : value)
    for (std::size_t j = 0; j < n; ++j) {
      const double d = (double(x[j]) - dmax) * inv_t;  // x_j read before g_j is written (g == x)
      // the value's terms in double: KL is often much smaller than its terms q_j log q_j, q_j log p_j
      const double tj = double(q[j]);
      const double qj = LogT ? vm::exp(tj) : tj;
      const double lq = LogT ? tj : vm::log(qj);
      value += !(qj <= 0.0) ? qj * (lq - (d - rs.log_s)) : 0.0;  // q = 0 adds 0; a NaN target gives NaN
      if constexpr (G || H) {
        const T e = exp_of<T>(d);
        const T p = e * inv_sT;
        if constexpr (H) h[j] = ch * p * T(rs.one_minus_p(e));
        // S p_j - q_j, in double. At a maximum (e_j == 1) it cancels where target and softmax agree on a
        // dominant class: there the equal (S - q_j) p_j - q_j (1 - p_j), with 1 - p_j = (s - 1) / s exact
        if constexpr (G) {
          const double pd = double(e) * rs.inv_s;
          g[j] = T(cq * (e == T(1) ? (S - qj) * pd - qj * rs.one_minus_p(e) : S * pd - qj));
        }
      }
    }
    return value;
  }
};

// Liger's generalised Jensen-Shannon divergence (LigerJSD, logits in); params = (beta); soft targets only.
// p = softmax(x), q the target row, m = beta q + (1 - beta) p, r = log(p / m) and log(q / m) as log1p of
// beta (p - q) / m and c (q - p) / m where small (a small r keeps its digits), else logs of the ratios (terms
// below; math.hpp's neg_log_mix in log space where m is not a normal number), R = sum p r, v = beta q / m,
// V = sum p v, c = 1 - beta, 0 log 0 = 0:
//   l = beta sum q log(q / m) + c sum p r;  g_j = c p_j (r_j - R);
//   h_j = c p_j ((1 - 2 p_j) (r_j - R) + v_j (1 - p_j)^2 + p_j (V - p_j v_j)).
// At the row's first maximum a (e_a == 1) r_a - R cancels on a confident row, so R and V are summed with a's
// terms kept apart and D_a = r_a (1 - p_a) - sum_{k != a} p_k r_k. The ends are Liger's: beta = 0 is KL(q || p),
// kl_div_with_logits' row at T = 1 (g = S p - q, h = S p (1 - p)); beta = 1 is KL(p || q) (c = 1, v = 1,
// r = log p - log q), inf where q_j = 0 < p_j, and then D is the limit as those q go to 0 together: +inf on them
// and -inf on the classes with q > 0 where those hold mass (P1 > 0), else log p_j - sum p log p. Per element in
// double; pass 3 rebuilds class j's terms from x_j, read before g_j is written (g == x is safe).
// _pointwise.jensen_shannon_row.
template <class T>
struct jensen_shannon {
  static constexpr const char* name = "jensen_shannon";
  static constexpr bool hard_labels = false;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = false;

  double beta, c, lb, lb1;
  bool rev;
  std::size_t C;
  kl_div_with_logits<T> forward_kl;  // beta = 0: KL(q || p), log_target off, T = 1

  static constexpr std::size_t arity = 1;
  static Params forward_kl_params() {
    Params prm;
    prm.v[1] = 1.0;
    prm.n = 2;
    return prm;
  }
  jensen_shannon(const Params& prm, const T*, std::size_t C_)
      : beta(prm[0]),
        c(prm[0] == 1.0 ? 1.0 : 1.0 - prm[0]),
        lb(prm[0] == 1.0 ? 0.0 : std::log(prm[0])),
        lb1(prm[0] == 1.0 ? -kInf : std::log1p(-prm[0])),
        rev(prm[0] == 1.0),
        C(C_),
        forward_kl(forward_kl_params(), nullptr, C_) {}

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    const std::size_t n = C;
    double qmax = 0.0;  // an infinite target entry: a nan row (not a distribution; as the reference)
    for (std::size_t j = 0; j < n; ++j) qmax = std::fmax(qmax, std::fabs(double(q[j])));
    if (qmax == kInf) return nan_row<G, H>(n, g, h);
    if (beta == 0.0) return forward_kl.template row<G, H>(x, t, q, f, g, h);
    const T xmax = row_max(x, n);
    const double sh = double(exp_shift(xmax));
    const RowSum rs = double_exp_sums(x, n, sh);
    if (no_softmax(xmax, rs.s)) return nan_row<G, H>(n, g, h);
    return mixture<G, H>(x, q, f, g, h, sh, rs);
  }

  // Below it m = beta q + (1 - beta) p (or p, q) is no longer a normal number to divide by.
  static constexpr double kMixTiny = 1e-290;

  // log(a / m) from z = (a - m) / m = a / m - 1: log1p(z) where |z| <= 1/2 (a small log keeps its digits, as
  // beta -> 0 or q -> p), else log(a / m) (|log| > 0.4: the division's rounding is a few ulp of it); a below
  // kMixTiny: log(a) - log(m) (a / m could underflow). _pointwise.log_over_mix.
  static FUSEDLOSS_INLINE double log_over_mix(double z, double a, double m) {
    if (std::fabs(z) <= 0.5) return std::log1p(z);
    if (a >= kMixTiny) return std::log(a / m);
    if (a == 0.0) return -kInf;
    return std::log(a) - std::log(m);
  }

  // Class j's terms: e_j, p_j, 1 - p_j, log p_j, r_j = log(p_j / m_j), v_j = beta q_j / m_j and log(q_j / m_j) (0 where
  // q_j = 0), from m = beta q + c p formed in double (one division, a log1p each: p - m = beta (p - q),
  // q - m = c (q - p)); where m is not a normal number (p and q both tiny or 0) from log(q / p) in log space
  // (neg_log_mix). At beta = 1 r = log p - log q and v = 1. log 0 = -inf without a log call.
  // _pointwise.jsd_logs.
  struct Terms {
    double e, p, omp, lp, r, v, lqm;
  };
  FUSEDLOSS_INLINE Terms terms(double xj, double qj, double sh, const RowSum& rs) const {
    Terms o;
    o.e = std::exp(xj - sh);
    o.p = o.e * rs.inv_s;
    o.omp = rs.one_minus_p(o.e);
    o.lqm = 0.0;
    o.v = 0.0;
    o.lp = (xj - sh) - rs.log_s;
    const double lp = o.lp;
    if (rev) {
      o.r = lp - (qj == 0.0 ? -kInf : std::log(qj));
      o.v = 1.0;
      return o;
    }
    const double m = beta * qj + c * o.p;
    if (m >= kMixTiny) {
      const double d = (o.p - qj) / m;
      o.r = log_over_mix(beta * d, o.p, m);
      if (o.p < kMixTiny && o.p != 0.0) o.r = lp - std::log(m);  // p / m could underflow; log p from the logits
      if (!(qj == 0.0)) {
        o.lqm = log_over_mix(-c * d, qj, m);
        o.v = beta * qj / m;
      }
      return o;
    }
    const double lq = qj == 0.0 ? -kInf : std::log(qj);
    o.r = neg_log_mix(lq - lp, beta, lb, lb1);
    if (!(qj == 0.0)) {
      o.lqm = neg_log_mix(lp - lq, c, lb1, lb);
      o.v = beta * std::exp(o.lqm);
    }
    return o;
  }

  // mixture_simd's first pass: the value and the sums R and V without class a's terms; false when the row has a
  // term below kMixTiny. A function of its own, compiled once and not per output combination, so that a call's
  // value is the same bits whichever outputs it asks for (the compiler may order a simd reduction differently
  // in each copy it inlines).
  FUSEDLOSS_NOINLINE bool mixture_sums(const T* x, const T* q, double sh, double inv_s, std::size_t a,
                                       double& value_out, double& Re_out, double& Ve_out) const {
    const std::size_t n = C;
    const double b = beta, cc = c;
    double value = 0.0, Re = 0.0, Ve = 0.0, rare = 0.0;
#pragma omp simd reduction(+ : value, Re, Ve, rare)
    for (std::size_t j = 0; j < n; ++j) {
      const double qj = double(q[j]);
      const double p = vm::exp(double(x[j]) - sh) * inv_s;
      const double m = b * qj + cc * p;
      const double d = (p - qj) / m, z1 = b * d, z2 = -cc * d;
      rare += (!(m >= kMixTiny) || (p < kMixTiny && p != 0.0) || (qj < kMixTiny && qj != 0.0)) ? 1.0 : 0.0;
      const double r = std::fabs(z1) <= 0.5 ? vm::log1p(z1) : vm::log(p / m);
      const double lqm = std::fabs(z2) <= 0.5 ? vm::log1p(z2) : vm::log(qj / m);
      const double pr = p != 0.0 ? p * r : 0.0;
      const double pv = qj != 0.0 ? p * (b * qj / m) : 0.0;
      value += (qj != 0.0 ? b * qj * lqm : 0.0) + cc * pr;
      Re += j == a ? 0.0 : pr;
      Ve += j == a ? 0.0 : pv;
    }
    value_out = value;
    Re_out = Re;
    Ve_out = Ve;
    return rare == 0.0;
  }

  // 0 < beta < 1 on a row where every m, p (if not 0) and q (if not 0) is at least kMixTiny (a row elsewhere:
  // false, and mixture's per-element branches take it): the same forms with vm's functions and both arms of
  // log_over_mix computed and selected, so that passes 2 and 3 vectorise. The first maximum a is found first;
  // its terms stay out of R and V by a select (no subtraction: R ~ p_a r_a on a confident row).
  template <bool G, bool H>
  bool mixture_simd(const T* x, const T* q, double f, T* g, T* h, double sh, const RowSum& rs, double& out) const {
    const std::size_t n = C;
    std::size_t a = 0;
    while (a + 1 < n && std::exp(double(x[a]) - sh) != 1.0) ++a;
    const double b = beta, cc = c, inv_s = rs.inv_s;
    double value, Re, Ve;
    if (!mixture_sums(x, q, sh, inv_s, a, value, Re, Ve)) return false;
    const Terms oa = terms(double(x[a]), double(q[a]), sh, rs);
    const double r_a = oa.r, R = Re + (oa.p != 0.0 ? oa.p * oa.r : 0.0), V = Ve + oa.p * oa.v;
    if constexpr (G || H) {
      const double D_a = r_a * oa.omp - Re;
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) {
        const double qj = double(q[j]);
        const double e = vm::exp(double(x[j]) - sh);
        const double p = e * inv_s, omp = rs.one_minus_p(e);
        const double m = b * qj + cc * p;
        const double z1 = b * ((p - qj) / m);
        const double r = std::fabs(z1) <= 0.5 ? vm::log1p(z1) : vm::log(p / m);
        const double v = qj != 0.0 ? b * qj / m : 0.0;
        const double D = j == a ? D_a : r - R;
        const double Vx = j == a ? Ve : V - p * v;
        const double gj = p != 0.0 ? cc * p * D : 0.0;
        const double hj = p != 0.0 ? cc * p * ((omp - p) * D + v * omp * omp + p * Vx) : 0.0;
        if constexpr (G) g[j] = T(f * gj);
        if constexpr (H) h[j] = T(f * hj);
      }
    }
    out = value;
    return true;
  }

  template <bool G, bool H>
  double mixture(const T* x, const T* q, double f, T* g, T* h, double sh, const RowSum& rs) const {
    const std::size_t n = C;
    if (!rev) {
      double out;
      if (mixture_simd<G, H>(x, q, f, g, h, sh, rs, out)) return out;
    }
    double value = 0.0, Re = 0.0, Ve = 0.0, pr_a = 0.0, pv_a = 0.0, r_a = 0.0, P1 = 0.0, Cbar = 0.0;
    bool found = false;
    for (std::size_t j = 0; j < n; ++j) {
      const double qj = double(q[j]);
      const Terms o = terms(double(x[j]), qj, sh, rs);
      if (!rev && !(qj == 0.0)) value += beta * qj * o.lqm;
      double pr = 0.0;
      if (o.p != 0.0) {
        pr = o.p * o.r;
        if (qj == 0.0) {
          Cbar += o.p * o.lp;
        } else {
          Cbar += pr;
          P1 += o.p;
        }
      }
      if (!found && o.e == 1.0) {
        found = true;
        pr_a = pr;
        pv_a = o.p * o.v;
        r_a = o.r;
      } else {
        Re += pr;
        Ve += o.p * o.v;
      }
      value += c * pr;
    }
    const double R = Re + pr_a, V = Ve + pv_a;
    const bool limit = R == kInf;  // beta = 1 and q_j = 0 < p_j (see above)
    if constexpr (G || H) {
      found = false;
      for (std::size_t j = 0; j < n; ++j) {
        const double qj = double(q[j]);
        const Terms o = terms(double(x[j]), qj, sh, rs);
        double D, Vx;
        if (!found && o.e == 1.0) {
          found = true;
          D = r_a * o.omp - Re;
          Vx = Ve;
        } else {
          D = o.r - R;
          Vx = V - o.p * o.v;
        }
        if (limit) D = !(qj == 0.0) ? -kInf : (P1 > 0.0 ? kInf : o.lp - Cbar);
        const double gj = o.p != 0.0 ? c * o.p * D : 0.0;
        const double hj = o.p != 0.0 ? c * o.p * ((o.omp - o.p) * D + o.v * o.omp * o.omp + o.p * Vx) : 0.0;
        if constexpr (G) g[j] = T(f * gj);
        if constexpr (H) h[j] = T(f * hj);
      }
    }
    return value;
  }
};

// multilabel one-versus-all logistic loss, as torch.nn.functional.multilabel_soft_margin_loss; no params,
// cw = class_weight, q the targets y_j in [0, 1] (soft targets only).
// l = 1/C sum_j cw_j (y_j softplus(-x_j) + (1 - y_j) softplus(x_j));  g_j = cw_j / C ((1 - y_j) s(x_j) - y_j s(-x_j));
// h_j = cw_j / C s(x_j) s(-x_j), s = sigmoid. Both terms of the value are >= 0 (no cancellation at any |x|), a
// zero coefficient adds 0 where its softplus is infinite, and the gradient is exact for y in {0, 1}. One pass
// in double (math.hpp's log1pexp and sigmoid_pair); no softmax, so the row rule is counted on the way (g == x
// leaves nothing to read again), as in _pointwise.multilabel_soft_margin_row.
template <class T>
struct multilabel_soft_margin {
  static constexpr const char* name = "multilabel_soft_margin";
  static constexpr bool hard_labels = false;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = true;

  const T* cw;
  std::size_t C;

  static constexpr std::size_t arity = 0;
  multilabel_soft_margin(const Params&, const T* cw_, std::size_t C_) : cw(cw_), C(C_) {}

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)t;
    const double fc = f / double(C);
    (void)fc;  // (value only)
    const T* const cwp = cw;
    double value = 0.0, nans = 0.0, ninfs = 0.0;
#pragma omp simd reduction(+ : value, nans, ninfs)
    for (std::size_t j = 0; j < C; ++j) {
      const double xj = double(x[j]);  // read before g_j is written (g == x)
      const double yj = double(q[j]);
      const double wj = cwp ? double(cwp[j]) : 1.0;
      nans += (xj != xj || yj != yj) ? 1.0 : 0.0;  // a nan target makes the row nan, as in the softmax losses
      ninfs += xj == -kInf ? 1.0 : 0.0;
      const double a = wj * yj, b = wj * (1.0 - yj);
      const double sp = softplus_tail(xj);  // log1pexp(+-xj) = max(+-xj, 0) + sp
      const double sp_neg = (xj < 0.0 ? -xj : 0.0) + sp, sp_pos = (xj > 0.0 ? xj : 0.0) + sp;
      value += (a != 0.0 ? a * sp_neg : 0.0) + (b != 0.0 ? b * sp_pos : 0.0);
      if constexpr (G || H) {
        double s, sm;
        sigmoid_pair(xj, s, sm);
        if constexpr (G) g[j] = T(fc * (b * s - a * sm));
        if constexpr (H) h[j] = T(fc * wj * s * sm);
      }
    }
    if (nans != 0.0 || ninfs == double(C)) return nan_row<G, H>(C, g, h);
    return value / double(C);
  }
};

// Poly-1: cross-entropy + epsilon (1 - P), P = sum q p, as optax.poly_loss_cross_entropy; params = (epsilon); hard
// labels (a label is its one-hot row) or soft targets. Per element in double, from the row's softmax state (RowSum),
// without cancellation (the same forms as _pointwise.poly1_row):
//   label t: l = -log p_t + epsilon o = (expm1(L) - L) + (1 + epsilon) o, L = log p_t, o = 1 - p_t = -expm1(L);
//     g_j = F (p_j - [j=t]), F = 1 + epsilon p_t = (1 + epsilon) - epsilon o;  h_t = p_t o ((1 + epsilon) -
//     2 epsilon o),  h_j = p_j ((1 - p_j) F - epsilon p_t p_j) (no cancellation at epsilon = -1 either);
//   soft q, S = sum q: l = S log s + sum q (m - x) + epsilon ((1 - S) + sum q (1 - p));  g_j = S p_j - q_j -
//     epsilon p_j D_j, D_j = q_j - P;  h_j = S p_j (1 - p_j) - epsilon p_j ((1 - p_j) - p_j) D_j; at the row's first
//     maximum m (where both differences cancel on a confident row) S p_m - q_m = (S - q_m) p_m - q_m (1 - p_m) and
//     D_m = q_m (1 - p_m) - sum_{j != m} q_j p_j.
// Passes: the max; the exponentials' sums; (soft) the target sums; the gradient, which recomputes e_j from x_j
// (x_j read before g_j is written: g == x is safe; the label's x_t is saved first).
template <class T>
struct poly1 {
  static constexpr const char* name = "poly1";
  static constexpr bool hard_labels = true;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = false;

  double eps;
  std::size_t C;

  static constexpr std::size_t arity = 1;
  poly1(const Params& prm, const T*, std::size_t C_) : eps(prm[0]), C(C_) {}

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)f;  // (value only)
    const std::size_t n = C;
    const double x_t = q ? 0.0 : double(x[t]);  // before any write (g == x)
    const T xmax = row_max(x, n);
    const double sh = double(exp_shift(xmax));
    const RowSum rs = double_exp_sums(x, n, sh);
    if (no_softmax(xmax, rs.s)) return nan_row<G, H>(n, g, h);
    if (!q) {
      const Hard hd = hard(rs, x_t - sh);
      if constexpr (G || H) {
        const double F = f * hd.F1, ept = eps * hd.p_t;
#pragma omp simd
        for (std::size_t j = 0; j < n; ++j) {
          element<G, H>(vm::exp(double(x[j]) - sh), rs.s, rs.sm1, rs.inv_s, f, hd.F1, F, ept, g, h, j);
        }
        label<G, H>(hd.p_t, hd.o_t, hd.F1, f, g, h, std::size_t(t));
      }
      return hd.value;
    }
    std::size_t im = 0;
    while (im + 1 < n && !(x[im] == xmax)) ++im;  // the first maximum
    double S = 0.0, Sx = 0.0, Pe = 0.0, ce = 0.0, qo = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      const double xj = double(x[j]), qj = double(q[j]);
      const double e = vm::exp(xj - sh);
      const double p = e * rs.inv_s, omp = rs.one_minus_p(e);
      S += qj;
      if (qj != 0.0) {  // a class without target mass adds nothing, even at -inf
        ce += qj * (sh - xj);
        qo += qj * omp;
      }
      if (j != im) {
        Sx += qj;
        Pe += qj * p;
      }
    }
    const double q_m = double(q[im]), p_m = rs.inv_s, omp_m = rs.sm1 * rs.inv_s;
    const double P = Pe + q_m * p_m;
    const double value = S * rs.log_s + ce + eps * ((1.0 - S) + qo);
    if constexpr (G || H) {
      const double D_m = q_m * omp_m - Pe;
      for (std::size_t j = 0; j < n; ++j) {
        const double qj = double(q[j]);
        const double e = vm::exp(double(x[j]) - sh);
        const double p = e * rs.inv_s, omp = rs.one_minus_p(e);
        const bool at_m = j == im;
        const double D = at_m ? D_m : qj - P;
        const double gj = (at_m ? Sx * p - qj * omp : S * p - qj) - eps * p * D;
        if constexpr (H) h[j] = T(f * (S * p * omp - eps * p * (omp - p) * D));
        if constexpr (G) g[j] = T(f * gj);
      }
    }
    return value;
  }

  // A hard-label row's scalars (row and tile) from d = x_t - m: log p_t = d - log s, o = 1 - p_t = -expm1(log p_t),
  // F1 = 1 + epsilon p_t = (1 + epsilon) - epsilon o (exact where epsilon = -1 and p_t -> 1), and the value
  // -log p_t + epsilon o = (expm1(L) - L) + (1 + epsilon) o (no cancellation for epsilon >= -1). Selects only.
  struct Hard {
    double value, p_t, o_t, F1;
  };
  FUSEDLOSS_INLINE Hard hard(const RowSum& rs, double d) const {
    const double lp_t = d - rs.log_s;
    const double o_t = -vm::expm1(lp_t);
    return Hard{expm1_minus(lp_t) + (1.0 + eps) * o_t, vm::exp(lp_t), o_t, (1.0 + eps) - eps * o_t};
  }

  // Element j != t of a hard-label row from e_j (p_j = e_j / s): g_j = F p_j (F = f F1), h_j = f p_j ((1 - p_j) F1 -
  // epsilon p_t p_j) (ept = epsilon p_t).
  template <bool G, bool H, class E>
  FUSEDLOSS_INLINE static void element(E e, double s, double sm1, double inv_s, double f, double F1, double F,
                                       double ept, T* g, T* h, std::size_t j) {
    const double p = double(e) * inv_s, omp = RowSum::one_minus_p(e, s, sm1, inv_s);
    if constexpr (H) h[j] = T(f * (p * (omp * F1 - ept * p)));
    if constexpr (G) g[j] = T(F * p);
    (void)f, (void)F1, (void)F, (void)ept, (void)g, (void)h;
  }

  // The label's element: g_t = -F o, h_t = f p_t o ((1 + epsilon) - 2 epsilon o).
  template <bool G, bool H>
  FUSEDLOSS_INLINE void label(double p_t, double o_t, double F1, double f, T* g, T* h, std::size_t at) const {
    if constexpr (H) h[at] = T(f * (p_t * o_t * ((1.0 + eps) - 2.0 * eps * o_t)));
    if constexpr (G) g[at] = T(-(f * F1) * o_t);
    (void)p_t, (void)g, (void)h;
  }

  // Hard-label rows in tiles (row_tiles.hpp; cross_entropy::tile says how), through hard, element and label.
  bool tiles_for(std::size_t C_) const { return C_ <= kTileMaxC; }

  template <bool G, bool H, bool M>
  void tile(const T* xt, const std::int64_t* t, const double* f, double* v, T* gt, T* ht, RowMetrics* met, bool mr,
            bool me) const {
    static_assert(!M, "poly1 has no metrics pass");
    (void)met, (void)mr, (void)me;
    constexpr std::size_t L = kTile;
    constexpr bool Store = G || H;
    const std::size_t n = C;
    alignas(64) T xmax[L], shift[L];
    alignas(64) double s1[L], k[L], d[L];
    T* const buf = G ? gt : ht;  // e_j parked for pass 3
    tile_softmax_sums<Store>(xt, n, xmax, shift, buf, s1, k);
    for (std::size_t r = 0; r < L; ++r) d[r] = double(xt[std::size_t(t[r]) * L + r]) - double(shift[r]);
    alignas(64) double value[L], s_d[L], sm1_d[L], inv_s_d[L], p_t[L], o_t[L], F1[L], F[L], ept[L];
    alignas(64) unsigned char nan[L];
    for (std::size_t r = 0; r < L; ++r) {
      const RowSum rs(s1[r], k[r]);
      const Hard hd = hard(rs, d[r]);
      const bool bad = no_softmax(xmax[r], rs.s);
      nan[r] = bad;
      value[r] = bad ? std::numeric_limits<double>::quiet_NaN() : hd.value;
      s_d[r] = rs.s, sm1_d[r] = rs.sm1, inv_s_d[r] = rs.inv_s;
      p_t[r] = hd.p_t, o_t[r] = hd.o_t, F1[r] = hd.F1, F[r] = f[r] * hd.F1, ept[r] = eps * hd.p_t;
    }
    std::copy(value, value + L, v);
    if constexpr (Store) {
      for (std::size_t j = 0; j < n; ++j) {
        const T* ej = buf + j * L;
        T* gj = gt + j * L;
        T* hj = ht + j * L;
#pragma omp simd
        for (std::size_t r = 0; r < L; ++r) {
          element<G, H>(ej[r], s_d[r], sm1_d[r], inv_s_d[r], f[r], F1[r], F[r], ept[r], gj, hj, r);
        }
      }
      tile_labels<G, H>(nan, t, n, gt, ht, [&](std::size_t r, std::size_t at) {
        label<G, H>(p_t[r], o_t[r], F1[r], f[r], gt, ht, at);
      });
    }
  }
};

// Keras's categorical hinge; no params, hard labels (a label t is its one-hot row) or soft targets (any real y).
// pos = sum_j y_j x_j, neg = max_j (1 - y_j) x_j over every class (the true class's (1 - 1) x_t = 0 is in the max,
// as Keras computes it), l = max((neg - pos) + 1, 0) with the difference first (exact for a tied row of huge
// logits); g_j = (1 - y_j) [j = m] - y_j where that is > 0, else 0, m the first index attaining neg; h = 0. A zero
// factor times an infinite logit counts 0. One pass in double, the row rule counted on the way (g == x leaves
// nothing to read again), then the gradient from the saved m (_pointwise.categorical_hinge_row).
template <class T>
struct categorical_hinge {
  static constexpr const char* name = "categorical_hinge";
  static constexpr bool hard_labels = true;
  static constexpr bool soft_labels = true;
  static constexpr bool class_vector = false;

  std::size_t C;

  static constexpr std::size_t arity = 0;
  categorical_hinge(const Params&, const T*, std::size_t C_) : C(C_) {}

  template <bool G, bool H>
  double row(const T* x, std::int64_t t, const T* q, double f, T* g, T* h) const {
    (void)f;  // (value only)
    const std::size_t n = C;
    const std::size_t tt = q ? n : std::size_t(t);
    double pos = 0.0, neg = -kInf, nans = 0.0, ninfs = 0.0;
    std::size_t im = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const double xj = double(x[j]);
      nans += xj != xj ? 1.0 : 0.0;
      ninfs += xj == -kInf ? 1.0 : 0.0;
      const double yj = q ? double(q[j]) : (j == tt ? 1.0 : 0.0);
      if (yj != 0.0) pos += yj * xj;
      const double b = yj != 1.0 ? (1.0 - yj) * xj : 0.0;
      if (b > neg) {
        neg = b;
        im = j;
      }
    }
    const double v = (neg - pos) + 1.0;
    if (nans != 0.0 || ninfs == double(n) || v != v) return nan_row<G, H>(n, g, h);
    if constexpr (G || H) {
      const bool active = v > 0.0;
      for (std::size_t j = 0; j < n; ++j) {
        const double yj = q ? double(q[j]) : (j == tt ? 1.0 : 0.0);
        const double gj = active ? (j == im ? 1.0 - yj : 0.0) - yj : 0.0;
        if constexpr (G) g[j] = T(f * gj);
        if constexpr (H) h[j] = T(f * 0.0);  // nan with a nan or infinite weight, as the reference's w * 0
      }
    }
    return v > 0.0 ? v : 0.0;
  }
};

}  // namespace rows
FUSEDLOSS_ISA_END
}  // namespace fusedloss
