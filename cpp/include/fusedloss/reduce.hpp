// The parallel driver shared by every kernel family: split [0, n) into FIXED-SIZE blocks, run a block
// function on each (on the thread pool of pool.hpp above a size threshold), and combine the blocks'
// float64 partial sums in a fixed order, compensated (CompensatedSum).
//
// Determinism: block boundaries depend only on n and the block size (never on the thread count or on
// which thread claims which block), each block is summed by the same code whichever thread runs it, and
// the partials are combined in block order by a compensated sum. So a reduced value is bit-identical for 1 and N
// threads (for a given binary).
//
// Families: the elementwise loops (loops.hpp) use blocks of kBlock elements; the row-wise family (class axis
// last, multiclass_pass in loops.hpp) passes rows as the items, a block of max(1, kBlock / ncols) rows, and
// the number of elements as `work` (what the thread count is chosen from).
#pragma once

#include "fusedloss/isa.hpp"
#include "fusedloss/pool.hpp"

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace fusedloss {

FUSEDLOSS_ISA_BEGIN

// Items per block. A constant: changing it changes reduced values in the last bits (never the thread
// dependence). 4096 float64 elements is 32 KiB per stream, large enough that the per-block overhead
// vanishes and small enough that there are plenty of blocks to share between threads.
inline constexpr std::size_t kBlock = 4096;

// Work (elements touched) per thread: a call uses at most work / kParallelMin threads, so below
// 2 * kParallelMin it runs on the calling thread alone. Waking a worker costs microseconds, the order of
// a whole cheap pass (mse) over this many elements.
inline constexpr std::size_t kParallelMin = std::size_t(1) << 15;

// Partial sums for up to this many blocks live on the stack (16 KiB, i.e. n <= 8M elements at kBlock);
// larger calls reuse a per-thread buffer that only ever grows (it allocates only when a call is larger than
// every earlier one on that thread).
inline constexpr std::size_t kStackPartials = 2048;

namespace detail {
// A per-thread scratch array that only ever grows; hand-rolled instead of std::vector so that the ISA
// translation units instantiate no std:: template with out-of-line code (see isa.hpp: such a function
// would be merged across levels by the linker). get(n) keeps none of the old values when it grows.
template <class V>
struct GrowBuffer {
  V* data = nullptr;
  std::size_t size = 0;
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { delete[] data; }
  V* get(std::size_t n) {
    if (n > size) {
      delete[] data;
      data = nullptr;
      size = 0;
      data = new V[n];
      size = n;
    }
    return data;
  }
};
using PartialBuffer = GrowBuffer<double>;
}  // namespace detail

// A compensated float64 sum (Neumaier's variant of Kahan's): the running sum plus the rounding errors of its
// additions, which add(x) recovers exactly (TwoSum's branch-free half) and value() folds back in once at the
// end. The result is within about 2 ulp of the exact sum of everything added (plus n^2 u^2 terms), whatever
// the order, where a plain running sum drifts by up to n ulp: so a sum over blocks and the same sum over
// pieces of any other split agree to a few ulp. Every step is a plain IEEE operation in a fixed order
// (no -ffast-math, no fp contraction in this build), so a given sequence of additions always gives the same bits.
// Non-finite terms give what a plain sum gives (inf, or nan for inf - inf or a nan term).
struct CompensatedSum {
  double sum = 0.0, err = 0.0;
  void add(double x) {
    const double t = sum + x;
    const double big = std::fabs(sum) >= std::fabs(x) ? sum : x;
    const double small = std::fabs(sum) >= std::fabs(x) ? x : sum;
    err += (big - t) + small;
    sum = t;
  }
  // An infinite or nan sum is the answer as it stands (its error term is nan: inf - inf).
  double value() const { return std::fabs(sum) <= kMaxFinite ? sum + err : sum; }
  static constexpr double kMaxFinite = 1.7976931348623157e308;
};

// L running sums side by side, each with Kahan's compensation (its running error carried beside it: about 2 ulp
// of the lane's sum instead of up to one ulp per term); the caller sends element i to lane i % L, in a loop over
// the lanes that vectorises (`#pragma omp simd` over j), and folds the lanes into a CompensatedSum at the end.
// A lane that overflows keeps a zero correction, so it stays inf (inf - inf would turn it, and the sum, nan).
template <std::size_t L>
struct KahanLanes {
  double acc[L] = {}, err[L] = {};
  void add(std::size_t j, double x) {
    const double v = x - err[j];
    const double t = acc[j] + v;
    err[j] = std::fabs(t) <= CompensatedSum::kMaxFinite ? (t - acc[j]) - v : 0.0;
    acc[j] = t;
  }
  // the lanes in order, each with its correction (none beside an inf or nan lane: it would be nan)
  void fold_into(CompensatedSum& s) const {
    for (std::size_t j = 0; j < L; ++j) {
      s.add(acc[j]);
      if (std::fabs(acc[j]) <= CompensatedSum::kMaxFinite) s.add(-err[j]);
    }
  }
};

// Sum x[0..m) in order with CompensatedSum. Deterministic (a fixed order), and accurate to a few ulp.
inline double compensated_sum(const double* x, std::size_t m) {
  CompensatedSum s;
  for (std::size_t i = 0; i < m; ++i) s.add(x[i]);
  return s.value();
}

// Threads a call uses: at most nthreads (the caller's limit), one per kParallelMin elements of work, and
// never more than there are blocks.
inline int threads_for(std::size_t work, std::size_t n_blocks, int nthreads) {
  if (nthreads <= 1) return 1;
  const std::size_t by_work = work / kParallelMin;
  return int(std::max<std::size_t>(1, std::min({std::size_t(nthreads), n_blocks, by_work})));
}

namespace detail {
// The pool runs a plain function on an opaque context: this one calls fn(b, begin, end) for block b.
template <class Fn>
struct BlockJob {
  const Fn* fn;
  std::size_t n, block;
  static void call(const void* self, std::size_t b) {
    const BlockJob& j = *static_cast<const BlockJob*>(self);
    const std::size_t begin = b * j.block;
    (*j.fn)(b, begin, std::min(j.n, begin + j.block));
  }
};
}  // namespace detail

// Run fn(begin, end) on every block of [0, n) (blocks of `block` items) on the pool (pool.hpp: blocks are
// claimed dynamically, so a preempted thread delays nobody). fn must not throw. `work`: the elements the
// call touches, for the thread count (0: n, one element per item).
template <class Fn>
void for_blocks(std::size_t n, std::size_t block, int nthreads, const Fn& fn, std::size_t work = 0) {
  const std::size_t nb = (n + block - 1) / block;
  const int nt = threads_for(work ? work : n, nb, nthreads);
  if (nt <= 1) {
    for (std::size_t begin = 0; begin < n; begin += block) fn(begin, std::min(n, begin + block));
    return;
  }
  const auto each = [&fn](std::size_t, std::size_t begin, std::size_t end) { fn(begin, end); };
  const detail::BlockJob<decltype(each)> job{&each, n, block};
  pool::run(nb, nt, &decltype(job)::call, &job);
}

// Like for_blocks, for a block function returning its float64 partial sum; returns the fixed-order,
// compensated total of the partials.
template <class Fn>
double sum_blocks(std::size_t n, std::size_t block, int nthreads, const Fn& fn, std::size_t work = 0) {
  const std::size_t nb = (n + block - 1) / block;
  if (nb <= 1) return n ? fn(std::size_t(0), n) : 0.0;

  double stack_buf[kStackPartials];
  double* partial = stack_buf;
  if (nb > kStackPartials) {
    thread_local detail::PartialBuffer heap_buf;
    partial = heap_buf.get(nb);
  }
  const int nt = threads_for(work ? work : n, nb, nthreads);
  if (nt <= 1) {
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t begin = b * block;
      partial[b] = fn(begin, std::min(n, begin + block));
    }
  } else {
    const auto each = [&fn, partial](std::size_t b, std::size_t begin, std::size_t end) {
      partial[b] = fn(begin, end);
    };
    const detail::BlockJob<decltype(each)> job{&each, n, block};
    pool::run(nb, nt, &decltype(job)::call, &job);
  }
  return compensated_sum(partial, nb);
}

// The block scans of a plain array (kernel_api.hpp: BlockScans; bindings.cpp drives them over fixed blocks on
// the pool). Compiled per level like the kernels, and every level gives the same bits: min and max are exact,
// and the sum adds the same kScanLanes lanes in the same order (no fp contraction in this build).

// The level's vector width for the scans (GCC / Clang vector extensions; plain loops elsewhere).
#if defined(__GNUC__)
#if defined(__AVX512F__)
inline constexpr std::size_t kScanBytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t kScanBytes = 32;
#else
inline constexpr std::size_t kScanBytes = 16;
#endif
namespace detail {
template <class T>
struct ScanVec;
template <>
struct ScanVec<double> { typedef double type __attribute__((vector_size(kScanBytes))); };
template <>
struct ScanVec<float> { typedef float type __attribute__((vector_size(kScanBytes))); };
typedef float HalfFloats __attribute__((vector_size(kScanBytes / 2)));  // as many floats as ScanVec<double> lanes
typedef long long ScanBits __attribute__((vector_size(kScanBytes)));
}  // namespace detail
#endif

// The compensated float64 sum of x[0..n): element i goes to Kahan lane i % kScanLanes (KahanLanes' steps), then
// the tail and the lanes in order into a CompensatedSum. 32 lanes: four independent chains of 8 even in
// 512-bit vectors, so the sum runs at the speed of the loads rather than of one chain's latency. Written in
// explicit vectors because GCC leaves the lane loop scalar below AVX-512 (the finite test's select).
inline constexpr std::size_t kScanLanes = 32;

template <class T>
double block_sum(const T* x, std::size_t n) {
  std::size_t i = 0;
#if defined(__GNUC__)
  using V = typename detail::ScanVec<double>::type;
  using I = detail::ScanBits;
  constexpr std::size_t W = kScanBytes / sizeof(double), NV = kScanLanes / W;
  static_assert(kScanLanes % W == 0, "the lanes fill whole vectors");
  V acc[NV] = {}, err[NV] = {};
  const V big = V{} + CompensatedSum::kMaxFinite;
  for (; i + kScanLanes <= n; i += kScanLanes) {
    for (std::size_t k = 0; k < NV; ++k) {
      V xv;
      if constexpr (std::is_same_v<T, double>) {
        std::memcpy(&xv, x + i + k * W, sizeof xv);
      } else {
        detail::HalfFloats f;
        std::memcpy(&f, x + i + k * W, sizeof f);
        xv = __builtin_convertvector(f, V);
      }
      const V v = xv - err[k];
      const V t = acc[k] + v;
      const V e = (t - acc[k]) - v;
      const V at = (V)((I)t & (I{} + 0x7fffffffffffffffLL));  // |t|
      err[k] = at <= big ? e : V{};  // an overflowed lane keeps no correction (KahanLanes)
      acc[k] = t;
    }
  }
  CompensatedSum s;
  for (; i < n; ++i) s.add(double(x[i]));
  for (std::size_t k = 0; k < NV; ++k) {
    for (std::size_t j = 0; j < W; ++j) {
      s.add(acc[k][j]);
      if (std::fabs(acc[k][j]) <= CompensatedSum::kMaxFinite) s.add(-err[k][j]);
    }
  }
#else
  KahanLanes<kScanLanes> lanes;
  for (; i + kScanLanes <= n; i += kScanLanes) {
    for (std::size_t j = 0; j < kScanLanes; ++j) lanes.add(j, double(x[i + j]));
  }
  CompensatedSum s;
  for (; i < n; ++i) s.add(double(x[i]));
  lanes.fold_into(s);
#endif
  return s.value();
}

// The smallest and the largest element of x[0..n) with NaN skipped (+inf and -inf when there is none other), in
// the level's widest vectors.
template <class T>
void block_extremes(const T* x, std::size_t n, T& lo, T& hi) {
  T mn = std::numeric_limits<T>::infinity(), mx = -mn;
  std::size_t i = 0;
#if defined(__GNUC__)
  // `v < a ? v : a` is the SIMD min with the element first: a NaN element compares false, so it leaves the
  // running extreme as it was. Two of each: two loads in flight.
  using V = typename detail::ScanVec<T>::type;
  constexpr std::size_t L = kScanBytes / sizeof(T);
  V a = V{} + mn, b = V{} + mx, c = a, d = b;
  for (; i + 2 * L <= n; i += 2 * L) {
    V v, w;
    std::memcpy(&v, x + i, sizeof v);
    std::memcpy(&w, x + i + L, sizeof w);
    a = v < a ? v : a;
    b = v > b ? v : b;
    c = w < c ? w : c;
    d = w > d ? w : d;
  }
  for (std::size_t k = 0; k < L; ++k) {  // no NaN in the lanes; plain tests, no std:: call (isa.hpp)
    if (a[k] < mn) mn = a[k];
    if (c[k] < mn) mn = c[k];
    if (b[k] > mx) mx = b[k];
    if (d[k] > mx) mx = d[k];
  }
#endif
  for (; i < n; ++i) {
    const T v = x[i];
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  lo = mn;
  hi = mx;
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
