// The thread pool of pool.hpp (read the rules there first).
//
// The claim protocol: a 64-bit word holds (job sequence number << 32) | next unclaimed block. A thread
// reads the word, reads the job's fields (function, context, block count), and claims block b with a
// compare-and-swap of the word to b + 1. The CAS succeeding proves that the job it read is still the
// current one: the next job is published only after every block of this one has finished, which cannot
// happen while block b is unclaimed, and publishing a job changes the sequence number in the word. So a
// worker that wakes up late can never run a block of a finished call (whose context may be gone), and
// never runs a block twice.
#include "fusedloss/pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FUSEDLOSS_POOL_ATFORK 1
#endif

namespace fusedloss {
namespace pool {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Pause instructions an idle worker spends looking for the next job before it sleeps (a few
// microseconds: long enough for a loop that calls again at once, short enough to give the core back
// to the caller's own threads between calls).
constexpr int kIdleSpin = 256;
// Pause instructions a caller spends waiting for blocks still being computed before it yields its core.
constexpr int kWaitSpin = 1024;
constexpr std::uint64_t kIndexMask = 0xffffffffull;

struct Worker {
  std::mutex m;
  std::condition_variable cv;
  std::atomic<std::uint64_t> go{0};  // the sequence number of the job to join (0: none yet)
};

struct Pool {
  std::mutex caller;  // held by the one call that owns the workers
  std::atomic<std::uint64_t> claim{0};
  std::atomic<BlockFn> fn{nullptr};
  std::atomic<const void*> ctx{nullptr};
  std::atomic<std::size_t> nblocks{0};
  std::atomic<std::size_t> done{0};
  std::uint64_t seq = 0;  // last job published (under `caller`)
  std::vector<Worker*> workers;  // under `caller`; never freed (workers live as long as the process)
  std::atomic<int> n_workers{0};
};

// Never destroyed: worker threads may still be asleep on its condition variables at exit.
Pool* g_pool = new Pool;

// Claim and run blocks of job `seq` until none is left (or a newer job replaced it).
void work_on(Pool& P, std::uint64_t seq) noexcept {
  const std::uint64_t tag = (seq & kIndexMask) << 32;
  for (;;) {
    std::uint64_t w = P.claim.load(std::memory_order_acquire);
    if ((w & ~kIndexMask) != tag) return;
    const std::size_t b = std::size_t(w & kIndexMask);
    const std::size_t nb = P.nblocks.load(std::memory_order_relaxed);
    if (b >= nb) return;
    const BlockFn f = P.fn.load(std::memory_order_relaxed);
    const void* c = P.ctx.load(std::memory_order_relaxed);
    if (!P.claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
    f(c, b);
    P.done.fetch_add(1, std::memory_order_release);
  }
}

void worker_main(Pool* P, Worker* W) noexcept {
  std::uint64_t seen = 0;
  for (;;) {
    std::uint64_t g = W->go.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kIdleSpin; ++i) {
      cpu_relax();
      g = W->go.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(W->m);
      W->cv.wait(lock, [&] { return (g = W->go.load(std::memory_order_acquire)) != seen; });
    }
    seen = g;
    work_on(*P, g);
  }
}

void serial(std::size_t nblocks, BlockFn fn, const void* ctx) noexcept {
  for (std::size_t b = 0; b < nblocks; ++b) fn(ctx, b);
}

#ifdef FUSEDLOSS_POOL_ATFORK
// In a forked child only the forking thread exists: the workers are gone and the mutex may be held by a
// thread that no longer exists. Start over with an empty pool (the old one is leaked on purpose).
void after_fork_in_child() { g_pool = new Pool; }
struct AtFork {
  AtFork() { pthread_atfork(nullptr, nullptr, &after_fork_in_child); }
} g_atfork;
#endif

}  // namespace

int workers() noexcept { return g_pool->n_workers.load(std::memory_order_relaxed); }

void run(std::size_t nblocks, int nthreads, BlockFn fn, const void* ctx) noexcept {
  if (nthreads <= 1 || nblocks < 2 || nblocks > kIndexMask) return serial(nblocks, fn, ctx);
  Pool& P = *g_pool;
  std::unique_lock<std::mutex> lock(P.caller, std::try_to_lock);
  if (!lock.owns_lock()) return serial(nblocks, fn, ctx);  // another call owns the workers

  const std::size_t helpers = std::min<std::size_t>(std::size_t(nthreads) - 1, nblocks - 1);
  try {
    while (P.workers.size() < helpers) {
      Worker* W = new Worker;
      std::thread(worker_main, &P, W).detach();
      P.workers.push_back(W);
      P.n_workers.store(int(P.workers.size()), std::memory_order_relaxed);
    }
  } catch (...) {  // no memory or no thread: run with the workers there are
  }
  const std::size_t nw = std::min(helpers, P.workers.size());
  if (nw == 0) return serial(nblocks, fn, ctx);

  const std::uint64_t seq = ++P.seq;
  P.fn.store(fn, std::memory_order_relaxed);
  P.ctx.store(ctx, std::memory_order_relaxed);
  P.nblocks.store(nblocks, std::memory_order_relaxed);
  P.done.store(0, std::memory_order_relaxed);
  P.claim.store((seq & kIndexMask) << 32, std::memory_order_release);
  for (std::size_t i = 0; i < nw; ++i) {
    Worker* W = P.workers[i];
    {
      std::lock_guard<std::mutex> wl(W->m);
      W->go.store(seq, std::memory_order_release);
    }
    W->cv.notify_one();
  }
  work_on(P, seq);
  // Every block is claimed; wait for the ones other threads are still computing.
  int spins = 0;
  while (P.done.load(std::memory_order_acquire) != nblocks) {
    if (++spins < kWaitSpin) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace pool
}  // namespace fusedloss

// threadpoolctl finds the libraries it controls by an exported symbol: fusedloss.backends.cpp registers a
// controller that recognises this extension by this one. The limit itself is Python state (_config).
extern "C" __attribute__((visibility("default"))) int fusedloss_threadpool_api() { return 1; }
