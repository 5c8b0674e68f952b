// Connectionist Temporal Classification (CTC): loss and gradient of a batch of sequences in one pass over
// the scores, with the log-softmax fused in.
//
// The mathematics, the notation (extended target l', alpha, beta, occupancy gamma) and the gradient
// convention are those of src/fusedloss/_reference_ctc.py, the oracle this kernel is tested against:
// gradient = scale_n * (exp(lp) - gamma) on the frames t < T_n of sequence n, 0 on its padding frames.
//
// Per sequence (one thread owns a whole sequence):
//   pass A, t = 0..T_n-1: the frame's softmax shift (log-sum-exp over C; 0 for log-probability inputs),
//     exp(x - max) written into the gradient row, and the forward recursion for alpha;
//   pass B, t = T_n-1..0: the backward recursion (beta), the posterior of each state, and the gradient row
//     (the stored exponentials scaled to scale_n * p, minus scale_n * gamma at the target's classes).
// The recursions run in log space, in double whatever the input type, vectorised along the extended label
// axis s: each cell is one log-sum-exp of three terms (two exp, one log1p, from vecmath.hpp) with the
// s-2 -> s transitions switched by an additive mask (0 or -inf), so the loop has no branch.
//
// Memory beyond the gradient: O(N S) for the extended targets and per-sequence results, plus per thread
// either all of alpha (T_n x (2 S_n + 3) doubles) when that fits kFullAlphaCells, or otherwise alpha at every
// K-th frame (K = ceil(sqrt(T_n))) and one segment of K rows recomputed from its checkpoint during pass B
// (2 sqrt(T_n) rows: a second forward pass for the price of O(sqrt(T) S) memory). The kernel returns the
// bytes of scratch it held at its peak, summed over threads.
//
// Scheduling: sequences are sorted by their work T_n (2 S_n + 1 + C), longest first, and handed out one at
// a time to the threads (the pool's claimed blocks, one sequence each). Every sequence's numbers are computed by the same code whatever
// thread runs it, so results do not depend on the thread count; the caller reduces the per-sequence losses
// in index order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "fusedloss/isa.hpp"
#include "fusedloss/reduce.hpp"
#include "fusedloss/vecmath.hpp"

namespace fusedloss {

// What one CTC call reads and writes (the contract of backends.ctc). Data only: it crosses ISA levels.
template <class T>
struct CtcArgs {
  const T* x = nullptr;                        // scores (logits or log-probabilities), (T, N, C) or (N, T, C)
  std::size_t frames = 0, N = 0, C = 0;        // T, N, C
  bool batch_first = false;
  bool log_probs = false;                      // x holds log-probabilities (no softmax is applied)
  const std::int64_t* labels = nullptr;        // the targets; sequence n's are labels[offsets[n] ...]
  const std::int64_t* offsets = nullptr;       // N
  const std::int64_t* target_lengths = nullptr;  // N
  const std::int64_t* input_lengths = nullptr;   // N, each in [0, frames]
  std::int64_t blank = 0;
  bool zero_infinity = false;
  const double* gscale = nullptr;  // N: the gradient's factor per sequence (needed when grad is set)
  double* loss = nullptr;          // N: per-sequence loss (0 for an infinite one with zero_infinity)
  T* grad = nullptr;               // like x, or null
  int nthreads = 1;
};

FUSEDLOSS_ISA_BEGIN
namespace ctc {

// alpha is kept whole when it has at most this many cells (2 MiB of doubles per thread), else checkpointed.
inline constexpr std::size_t kFullAlphaCells = std::size_t(1) << 18;

inline constexpr double kNegInf = -std::numeric_limits<double>::infinity();

using Scratch = detail::GrowBuffer<double>;  // reduce.hpp

// log(exp(a) + exp(b) + exp(c)) for a, b, c <= +inf, -inf when all three are -inf; branch-free so that the
// loops around it vectorise. With m the largest and the others o1, o2 <= m: m + log1p(e^(o1-m) + e^(o2-m)).
FUSEDLOSS_INLINE double lse3(double a, double b, double c) {
  const double hi = a > b ? a : b;
  const double lo = a > b ? b : a;
  const double m = hi > c ? hi : c;
  const double mid = hi > c ? c : hi;
  const double ms = m == kNegInf ? 0.0 : m;  // -inf - (-inf) would be nan; m + anything finite stays -inf
  return m + vm::log1p(vm::exp(mid - ms) + vm::exp(lo - ms));
}

// The work of one sequence, for scheduling.
inline double work_of(std::int64_t Tn, std::int64_t Sn, std::size_t C) {
  return double(Tn) * double(2 * Sn + 1 + std::int64_t(C));
}

// Scratch layout of one sequence (doubles), given its T_n, L = 2 S_n + 1 and C.
struct Layout {
  std::size_t Tn, L, W, K, nseg, full;
  // offsets into the thread's scratch
  std::size_t o_shift, o_inv, o_ext, o_skipf, o_skipb, o_e, o_post, o_acc, o_rows, o_seg, o_brow, total;
  Layout(std::size_t Tn_, std::size_t L_, std::size_t C) : Tn(Tn_), L(L_), W(L_ + 2) {
    full = Tn * W <= kFullAlphaCells;
    if (full) {
      K = Tn ? Tn : 1;
    } else {
      K = std::size_t(std::ceil(std::sqrt(double(Tn))));
    }
    nseg = Tn ? (Tn + K - 1) / K : 0;
    std::size_t o = 0;
    o_shift = o; o += Tn;       // per frame: lse_t (0 for log-probabilities)
    o_inv = o; o += Tn;         // per frame: the factor turning the stored exponentials into p
    o_ext = o; o += L;          // extended labels, as doubles (exact: labels < 2^53)
    o_skipf = o; o += L;        // 0 / -inf: s-2 -> s allowed
    o_skipb = o; o += L;        // 0 / -inf: s+2 -> s allowed (backward)
    o_e = o; o += L;            // emissions of the current frame
    o_post = o; o += L;         // posteriors of the current frame
    o_acc = o; o += C;          // occupancy per class (zero between frames)
    o_rows = o; o += full ? 0 : nseg * W;   // checkpoints: alpha at frames 0, K, 2K, ...
    o_seg = o; o += (full ? Tn : std::max<std::size_t>(K, 2)) * W + W;  // alpha rows of a segment, row t = -1
    o_brow = o; o += 2 * W;     // two beta rows
    total = o;
  }
};

// Address of sequence n's row at frame t.
template <class T>
FUSEDLOSS_INLINE std::size_t row_offset(const CtcArgs<T>& a, std::size_t n, std::size_t t) {
  return a.batch_first ? (n * a.frames + t) * a.C : (t * a.N + n) * a.C;
}

// e[s] = x[t, l'_s] - shift_t.
template <class T>
FUSEDLOSS_INLINE void emissions(const T* xrow, const std::int64_t* ext_int, std::size_t L, double shift,
                                double* e) {
  for (std::size_t s = 0; s < L; ++s) e[s] = double(xrow[ext_int[s]]) - shift;
}

// The states of frame t that lie on some complete alignment: s < 2 (t + 1) (reachable from the start) and
// s >= L - 2 (T_n - t) (the end still reachable). Outside [lo, hi) alpha * beta is 0, so the steps below set
// those cells to -inf instead of computing them (about a quarter of the cells when T_n is near L).
struct Window {
  std::size_t lo, hi;
  Window(std::size_t t, std::size_t Tn, std::size_t L) {
    const std::size_t back = 2 * (Tn - t);
    lo = back >= L ? 0 : L - back;
    hi = std::min(L, 2 * (t + 1));
    if (lo > hi) lo = hi;
  }
};

// One forward step over the window: next[s+2] = lse3(prev[s+2], prev[s+1], prev[s] + skipf[s]) + e[s] (rows
// padded by two -inf cells in front); -inf outside it.
FUSEDLOSS_INLINE void alpha_step(const double* prev, const double* skipf, const double* e, std::size_t L,
                                 Window w, double* next) {
  for (std::size_t j = 0; j < w.lo + 2; ++j) next[j] = kNegInf;
  for (std::size_t j = w.hi + 2; j < L + 2; ++j) next[j] = kNegInf;
#pragma omp simd
  for (std::size_t s = w.lo; s < w.hi; ++s) next[s + 2] = lse3(prev[s + 2], prev[s + 1], prev[s] + skipf[s]) + e[s];
}

// One backward step: next[s] = lse3(prev[s], prev[s+1], prev[s+2] + skipb[s]) + e[s] (rows padded by two
// -inf cells at the end). Rows hold beta with the frame's own emission included.
FUSEDLOSS_INLINE void beta_step(const double* prev, const double* skipb, const double* e, std::size_t L,
                                Window w, double* next) {
  for (std::size_t j = 0; j < w.lo; ++j) next[j] = kNegInf;
  for (std::size_t j = w.hi; j < L + 2; ++j) next[j] = kNegInf;
#pragma omp simd
  for (std::size_t s = w.lo; s < w.hi; ++s) next[s] = lse3(prev[s], prev[s + 1], prev[s + 2] + skipb[s]) + e[s];
}

// Pass A for one frame: the softmax shift and (with a gradient row) exp(x - max) stored there. Returns the
// shift lse_t and sets inv to the factor that turns the stored values into probabilities.
template <class T>
FUSEDLOSS_INLINE double frame_softmax(const T* x, std::size_t C, bool log_probs, T* g, double& inv) {
  if (log_probs) {  // p = exp(x); nothing to normalise
    if (g) {
#pragma omp simd
      for (std::size_t k = 0; k < C; ++k) g[k] = vm::exp(x[k]);
    }
    inv = 1.0;
    return 0.0;
  }
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (std::size_t k = 0; k < C; ++k) m = x[k] > m ? x[k] : m;
  const T ms = m == -std::numeric_limits<T>::infinity() ? T(0) : m;
  // sums in T over chunks of 256 classes, added in double (every term is >= 0: no cancellation)
  double s = 0.0;
  for (std::size_t k0 = 0; k0 < C; k0 += 256) {
    const std::size_t k1 = std::min(C, k0 + 256);
    T cs = 0;
    if (g) {
#pragma omp simd reduction(+ : cs)
      for (std::size_t k = k0; k < k1; ++k) {
        const T e = vm::exp(T(x[k] - ms));
        g[k] = e;
        cs += e;
      }
    } else {
#pragma omp simd reduction(+ : cs)
      for (std::size_t k = k0; k < k1; ++k) cs += vm::exp(T(x[k] - ms));
    }
    s += double(cs);
  }
  inv = s > 0.0 ? 1.0 / s : 0.0;
  return double(ms) + std::log(s);
}

template <class T>
void fill_rows(const CtcArgs<T>& a, std::size_t n, std::size_t t0, std::size_t t1, T value) {
  for (std::size_t t = t0; t < t1; ++t) {
    T* g = a.grad + row_offset(a, n, t);
    for (std::size_t k = 0; k < a.C; ++k) g[k] = value;
  }
}

// One sequence: its loss into a.loss[n], its gradient rows into a.grad. `ext_int` has room for L labels.
template <class T>
void sequence(const CtcArgs<T>& a, std::size_t n, Scratch& scratch, std::int64_t* ext_int) {
  const std::size_t Tn = std::size_t(a.input_lengths[n]);
  const std::size_t Sn = std::size_t(a.target_lengths[n]);
  const std::size_t L = 2 * Sn + 1;
  const std::int64_t* lab = a.labels + a.offsets[n];
  if (a.grad) fill_rows(a, n, Tn, a.frames, T(0));  // padding frames

  std::size_t repeats = 0;
  for (std::size_t j = 1; j < Sn; ++j) repeats += lab[j] == lab[j - 1];
  if (Tn < Sn + repeats || Tn == 0) {  // no alignment (or no frames: loss 0 for an empty target)
    const bool infinite = !(Tn == 0 && Sn == 0);
    a.loss[n] = infinite && !a.zero_infinity ? std::numeric_limits<double>::infinity() : 0.0;
    if (a.grad) fill_rows(a, n, 0, Tn, a.zero_infinity ? T(0) : std::numeric_limits<T>::quiet_NaN());
    return;
  }

  const Layout lay(Tn, L, a.C);
  double* base = scratch.get(lay.total);
  double* shift = base + lay.o_shift;
  double* inv = base + lay.o_inv;
  double* skipf = base + lay.o_skipf;
  double* skipb = base + lay.o_skipb;
  double* e = base + lay.o_e;
  double* post = base + lay.o_post;
  double* acc = base + lay.o_acc;
  double* ckpt = base + lay.o_rows;
  double* seg = base + lay.o_seg;  // seg row r (frame t0 + r) at seg + (r + 1) * W; row -1 is seg[0..W)
  double* brow = base + lay.o_brow;
  const std::size_t W = lay.W;
  const std::size_t K = lay.K;

  for (std::size_t s = 0; s < L; ++s) {
    ext_int[s] = (s & 1) ? lab[s / 2] : a.blank;
    const bool jump = (s & 1) && s >= 3 && lab[s / 2] != lab[s / 2 - 1];
    skipf[s] = jump ? 0.0 : kNegInf;
  }
  for (std::size_t s = 0; s < L; ++s) skipb[s] = s + 2 < L ? skipf[s + 2] : kNegInf;
  for (std::size_t k = 0; k < a.C; ++k) acc[k] = 0.0;

  // pass A: softmax shifts (and exponentials into the gradient rows), alpha forward
  double* virt = seg;  // alpha at t = -1: state 0 has log-probability 0
  for (std::size_t j = 0; j < W; ++j) virt[j] = kNegInf;
  virt[2] = 0.0;
  const double* prev = virt;
  for (std::size_t t = 0; t < Tn; ++t) {
    const std::size_t off = row_offset(a, n, t);
    const T* xrow = a.x + off;
    shift[t] = frame_softmax<T>(xrow, a.C, a.log_probs, a.grad ? a.grad + off : nullptr, inv[t]);
    emissions(xrow, ext_int, L, shift[t], e);
    double* next;
    if (lay.full) {
      next = seg + (t + 1) * W;
    } else {
      next = seg + (1 + (t & 1)) * W;  // two rolling rows; every K-th is copied to its checkpoint
    }
    alpha_step(prev, skipf, e, L, Window(t, Tn, L), next);
    if (!lay.full && t % K == 0) std::copy(next, next + W, ckpt + (t / K) * W);
    prev = next;
  }
  const double* last = prev + 2;
  const double loglike = L > 1 ? lse3(last[L - 1], last[L - 2], kNegInf) : last[0];
  const double nll = -loglike;
  if (!(nll < std::numeric_limits<double>::infinity())) {  // inf (or nan): as PyTorch
    const bool inf = nll == std::numeric_limits<double>::infinity();
    a.loss[n] = inf && a.zero_infinity ? 0.0 : nll;
    if (a.grad) fill_rows(a, n, 0, Tn, inf && a.zero_infinity ? T(0) : std::numeric_limits<T>::quiet_NaN());
    return;
  }
  a.loss[n] = nll;
  if (!a.grad) return;

  // pass B: beta backward, posteriors, gradient rows
  const double gn = a.gscale[n];
  double* bnext = brow;  // beta at t = T_n (virtual): the end state L-1 has log-probability 0
  for (std::size_t j = 0; j < W; ++j) bnext[j] = kNegInf;
  bnext[L - 1] = 0.0;
  double* bcur = brow + W;
  for (std::size_t sgi = lay.nseg; sgi-- > 0;) {
    const std::size_t t0 = sgi * K;
    const std::size_t t1 = std::min(Tn, t0 + K);
    const double* arow0;  // alpha rows of this segment: frame t at arow0 + (t - t0) * W
    if (lay.full) {
      arow0 = seg + W;
    } else {
      double* r0 = seg + W;
      std::copy(ckpt + sgi * W, ckpt + (sgi + 1) * W, r0);
      for (std::size_t t = t0 + 1; t < t1; ++t) {
        emissions(a.x + row_offset(a, n, t), ext_int, L, shift[t], e);
        alpha_step(r0 + (t - 1 - t0) * W, skipf, e, L, Window(t, Tn, L), r0 + (t - t0) * W);
      }
      arow0 = r0;
    }
    for (std::size_t t = t1; t-- > t0;) {
      const std::size_t off = row_offset(a, n, t);
      emissions(a.x + off, ext_int, L, shift[t], e);
      const Window win(t, Tn, L);
      beta_step(bnext, skipb, e, L, win, bcur);
      const double* al = arow0 + (t - t0) * W + 2;
      for (std::size_t s = 0; s < win.lo; ++s) post[s] = 0.0;
      for (std::size_t s = win.hi; s < L; ++s) post[s] = 0.0;
#pragma omp simd
      for (std::size_t s = win.lo; s < win.hi; ++s) post[s] = vm::exp(al[s] + bcur[s] - e[s] + nll);
      for (std::size_t s = 0; s < L; ++s) acc[ext_int[s]] += post[s];
      T* g = a.grad + off;
      const T f = T(gn * inv[t]);
#pragma omp simd
      for (std::size_t k = 0; k < a.C; ++k) g[k] = g[k] * f;
      for (std::size_t s = 0; s < L; ++s) {  // each class once: its accumulator is 0 after the first visit
        const std::int64_t k = ext_int[s];
        g[k] = T(double(g[k]) - gn * acc[k]);
        acc[k] = 0.0;
      }
      std::swap(bnext, bcur);
    }
  }
}

// The whole batch. Returns the peak scratch bytes held (all threads together).
template <class T>
double run(const CtcArgs<T>& a) {
  const std::size_t N = a.N;
  if (N == 0) return 0.0;
  // the order: longest work first (ties by index, so the order is a function of the lengths alone)
  std::int64_t* order = new std::int64_t[N];
  double* work = new double[N];
  std::size_t max_L = 1, max_total = 0;
  double total_work = 0.0;
  for (std::size_t n = 0; n < N; ++n) {
    order[n] = std::int64_t(n);
    work[n] = work_of(a.input_lengths[n], a.target_lengths[n], a.C);
    total_work += work[n];
    const std::size_t L = 2 * std::size_t(a.target_lengths[n]) + 1;
    max_L = std::max(max_L, L);
    max_total = std::max(max_total, Layout(std::size_t(a.input_lengths[n]), L, a.C).total);
  }
  std::sort(order, order + N, [work](std::int64_t i, std::int64_t j) {
    return work[i] > work[j] || (work[i] == work[j] && i < j);
  });
  const int nt = threads_for(std::size_t(total_work), N, a.nthreads);
  const double peak = double(nt) * double(max_total * sizeof(double) + max_L * sizeof(std::int64_t)) +
                      double(N) * double(sizeof(std::int64_t) + sizeof(double));
  // One sequence per block of the pool (reduce.hpp / pool.hpp): threads claim them in the sorted order, so
  // the longest start first and a thread that is late or preempted takes fewer. Each thread keeps its own
  // scratch (it only grows; alpha is bounded by kFullAlphaCells, so it stays small).
  for_blocks(N, 1, a.nthreads, [&](std::size_t i0, std::size_t i1) {
    thread_local Scratch scratch;
    thread_local detail::GrowBuffer<std::int64_t> ext;  // the extended label sequence
    for (std::size_t i = i0; i < i1; ++i) sequence<T>(a, std::size_t(order[i]), scratch, ext.get(max_L));
  }, std::size_t(total_work));
  delete[] order;
  delete[] work;
  return peak;
}

}  // namespace ctc
FUSEDLOSS_ISA_END

// The kernels of one ISA level (cpp/src/ctc.cpp is compiled once per level, like kernels.cpp).
struct CtcKernels {
  const char* isa;
  double (*f32)(const CtcArgs<float>&);
  double (*f64)(const CtcArgs<double>&);
};
const CtcKernels& ctc_kernels_baseline();
const CtcKernels& ctc_kernels_avx2();
const CtcKernels& ctc_kernels_avx512();

}  // namespace fusedloss
