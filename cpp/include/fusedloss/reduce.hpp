// The parallel driver shared by every kernel family: split [0, n) into FIXED-SIZE blocks, run a block
// function on each (in parallel above a size threshold), and combine the blocks' float64 partial sums in a
// fixed order.
//
// Determinism: block boundaries depend only on n and the block size (never on the thread count), each
// block is summed by the same code whichever thread runs it, and the partials are combined by a fixed
// pairwise tree. So a reduced value is bit-identical for 1 and N threads (for a given binary).
//
// Families: the elementwise loops (loops.hpp) use blocks of kBlock elements; the row-wise family (class axis
// last, multiclass_pass in loops.hpp) passes rows as the items, a block of max(1, kBlock / ncols) rows, and
// the number of elements as `work` (what the serial threshold compares).
#pragma once

#include "fusedloss/isa.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FUSEDLOSS_FORK_GUARD 1
#endif
#endif

namespace fusedloss {

// Process-wide fork-guard state, shared by every ISA level (data only: no code, so nothing ISA-specific).
namespace shared {
inline std::atomic<bool> team_started{false};
inline std::atomic<bool> serial_only{false};
}  // namespace shared

FUSEDLOSS_ISA_BEGIN

// Items per block. A constant: changing it changes reduced values in the last bits (never the thread
// dependence). 4096 float64 elements is 32 KiB per stream, large enough that the per-block overhead
// vanishes and small enough that there are plenty of blocks to share between threads.
inline constexpr std::size_t kBlock = 4096;

// Below this many items a call runs on the calling thread: starting an OpenMP parallel region costs
// microseconds, the order of a whole cheap pass (mse) over this many elements. Not tuned yet.
inline constexpr std::size_t kParallelMin = std::size_t(1) << 15;

// Partial sums for up to this many blocks live on the stack (16 KiB, i.e. n <= 8M elements at kBlock);
// larger calls reuse a per-thread buffer that only ever grows (it allocates only when a call is larger than
// every earlier one on that thread).
inline constexpr std::size_t kStackPartials = 2048;

// Fork guard. GNU libgomp is not fork-safe: in a child forked after the parent ran an OpenMP parallel
// region, the next parallel region hangs (the team's threads were not copied). multiprocessing forks by
// default on Linux, so this is easy to hit. We remember whether this process ever started a team; a
// child forked from such a process runs every kernel on its calling thread (no OpenMP call at all).
namespace detail {
inline void after_fork_in_child() {
  if (shared::team_started.load(std::memory_order_relaxed)) {
    shared::serial_only.store(true, std::memory_order_relaxed);
  }
}
}  // namespace detail

// Call once, at module import.
inline void install_fork_guard() {
#ifdef FUSEDLOSS_FORK_GUARD
  pthread_atfork(nullptr, nullptr, &detail::after_fork_in_child);
#endif
}

// True in a forked child whose parent had started OpenMP threads: kernels then run single-threaded.
inline bool serial_only() { return shared::serial_only.load(std::memory_order_relaxed); }

inline int max_threads() {
#ifdef _OPENMP
  return serial_only() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

namespace detail {
// A per-thread scratch array that only ever grows; hand-rolled instead of std::vector so that the ISA
// translation units instantiate no std:: template with out-of-line code (see isa.hpp: such a function
// would be merged across levels by the linker).
struct PartialBuffer {
  double* data = nullptr;
  std::size_t size = 0;
  PartialBuffer() = default;
  PartialBuffer(const PartialBuffer&) = delete;
  PartialBuffer& operator=(const PartialBuffer&) = delete;
  ~PartialBuffer() { delete[] data; }
  double* get(std::size_t n) {
    if (n > size) {
      delete[] data;
      data = new double[n];
      size = n;
    }
    return data;
  }
};
}  // namespace detail

// Sum x[0..m) by a fixed pairwise tree, in place. Deterministic, and its rounding error grows like log(m).
inline double pairwise_sum_inplace(double* x, std::size_t m) {
  if (m == 0) return 0.0;
  while (m > 1) {
    const std::size_t half = m / 2;
    for (std::size_t i = 0; i < half; ++i) x[i] = x[2 * i] + x[2 * i + 1];
    if (m & 1) x[half] = x[m - 1];
    m = half + (m & 1);
  }
  return x[0];
}

// Threads actually used: honour nthreads, but never more than there are blocks, and 1 below the threshold.
// A result > 1 marks that an OpenMP team is about to start (see the fork guard).
inline int threads_for(std::size_t n_items, std::size_t n_blocks, int nthreads) {
  if (nthreads <= 1 || n_items < kParallelMin || n_blocks < 2 || serial_only()) return 1;
  shared::team_started.store(true, std::memory_order_relaxed);
  return int(std::min<std::size_t>(std::size_t(nthreads), n_blocks));
}

// Run fn(begin, end) on every block of [0, n) (blocks of `block` items), statically partitioned over
// `nthreads` threads. fn must not throw. `work`: the elements the call touches, for the serial threshold
// (0: n, one element per item).
template <class Fn>
void for_blocks(std::size_t n, std::size_t block, int nthreads, const Fn& fn, std::size_t work = 0) {
  const std::size_t nb = (n + block - 1) / block;
  const int nt = threads_for(work ? work : n, nb, nthreads);
#ifdef _OPENMP
  if (nt > 1) {
    const std::int64_t nbi = std::int64_t(nb);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t b = 0; b < nbi; ++b) {
      const std::size_t begin = std::size_t(b) * block;
      fn(begin, std::min(n, begin + block));
    }
    return;
  }
#endif
  (void)nt;
  for (std::size_t begin = 0; begin < n; begin += block) fn(begin, std::min(n, begin + block));
}

// Like for_blocks, for a block function returning its float64 partial sum; returns the fixed-order total.
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
#ifdef _OPENMP
  if (nt > 1) {
    const std::int64_t nbi = std::int64_t(nb);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t b = 0; b < nbi; ++b) {
      const std::size_t begin = std::size_t(b) * block;
      partial[b] = fn(begin, std::min(n, begin + block));
    }
    return pairwise_sum_inplace(partial, nb);
  }
#endif
  (void)nt;
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t begin = b * block;
    partial[b] = fn(begin, std::min(n, begin + block));
  }
  return pairwise_sum_inplace(partial, nb);
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
