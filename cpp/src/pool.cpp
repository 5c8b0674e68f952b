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
#include <chrono>
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
#if defined(__linux__)
#include <sched.h>
#endif

namespace fusedloss {
namespace pool {
namespace {

// The CPU the calling thread runs on, or -1 where the system does not say.
inline int current_cpu() noexcept {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// A worker woken on the CPU of the thread that woke it (the OS often places it there) would only take that
// thread's time: move it to another CPU it may use, then give it back its own set of CPUs (it stays where it
// now runs until the OS moves it). Returns whether it moved.
bool leave_cpu(int cpu) noexcept {
#if defined(__linux__)
  if (cpu < 0 || current_cpu() != cpu) return false;
  cpu_set_t own;
  if (sched_getaffinity(0, sizeof own, &own) != 0) return false;
  cpu_set_t others = own;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return false;
  if (sched_setaffinity(0, sizeof others, &others) != 0) return false;
  sched_setaffinity(0, sizeof own, &own);
  return true;
#else
  (void)cpu;
  return false;
#endif
}

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
// How long a worker woken by prewake() waits for the job before it sleeps again (the Python work of a call's
// argument checks takes 10 to 60 us). On an idle machine a yield returns at once (the core stays awake,
// which is the point); on a loaded one the other thread runs.
constexpr std::int64_t kPrewakeNs = 100'000;
// A worker woken for a short job (prewake's short_job) waits for it on its core, pausing, for the first
// kPrewakeSpinNs of that time, and only then yields. A yield hands the core to any thread that wants it for a
// whole time slice (milliseconds), and right after a library's own parallel region one always does: its
// OpenMP threads spin for a while. A boosting objective's kernel of 0.2 ms then ran on the caller alone.
// A long job is better served by yielding: the library's spinning threads use up their spin and sleep
// before the job, instead of taking the core back in the middle of it (cross_entropy 4096 x 1000 between
// torch ops: 0.76x its one-thread time when yielding, 0.9x when pausing).
// Either way, a worker the OS woke on the caller's own CPU (it often does when every CPU is busy) first
// moves to another one (leave_cpu): there it could only take the caller's time. With both, a LightGBM
// objective at 100k rows called inside training took 0.27-0.31 ms on 2 threads against 0.40-0.42 ms on one
// (without them 0.44-0.46 ms on 2), and calls under one busy process per core kept most of their 2-thread
// speed.
constexpr std::int64_t kPrewakeSpinNs = 50'000;
constexpr std::uint64_t kIndexMask = 0xffffffffull;
// Back-off: a caller that waited for a helper's block longer than kLateBlocks of its own blocks (and at least
// kLateNs) saw that helper preempted by another process. The next calls then run on the caller alone for
// kSoloNs << level (level + 1 after each such call, up to kMaxLevel: 1 ms to 256 ms), after which one call
// tries the helpers again; a call whose helpers kept up resets the level. On a loaded machine that bounds
// the cost of trying to one late helper per back-off period; on an idle one it never triggers.
constexpr std::int64_t kLateBlocks = 4;
constexpr std::int64_t kLateNs = 20'000;
constexpr std::int64_t kSoloNs = 1'000'000;
constexpr int kMaxLevel = 8;

struct Worker {
  std::mutex m;
  std::condition_variable cv;
  std::atomic<std::uint64_t> go{0};  // the sequence number of the job to join (0: none yet)
  std::atomic<std::uint64_t> nudge{0};  // incremented by prewake()
  std::atomic<bool> asleep{false};  // waiting on cv (prewake() leaves a worker that is awake alone)
  std::atomic<bool> short_job{false};  // the last prewake() was for a short job (kPrewakeSpinNs)
  std::atomic<int> caller_cpu{-1};  // the CPU of the thread that last woke it (-1: unknown)
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
  std::atomic<std::int64_t> solo_until{0};  // steady-clock ns before which calls run on the caller alone
  int level = 0;  // back-off level (under `caller`)
  std::atomic<std::uint64_t> late_calls{0};  // calls that found a helper preempted (for tests and info)
  std::atomic<std::uint64_t> solo_calls{0};  // calls that ran on the caller alone to back off
  std::atomic<std::uint64_t> moves{0};  // woken workers that left the waking thread's CPU (leave_cpu)
};

// Never destroyed: worker threads may still be asleep on its condition variables at exit.
Pool* g_pool = new Pool;

// Claim and run blocks of job `seq` until none is left (or a newer job replaced it).
std::size_t work_on(Pool& P, std::uint64_t seq) noexcept {
  const std::uint64_t tag = (seq & kIndexMask) << 32;
  std::size_t ran = 0;
  for (;;) {
    std::uint64_t w = P.claim.load(std::memory_order_acquire);
    if ((w & ~kIndexMask) != tag) return ran;
    const std::size_t b = std::size_t(w & kIndexMask);
    const std::size_t nb = P.nblocks.load(std::memory_order_relaxed);
    if (b >= nb) return ran;
    const BlockFn f = P.fn.load(std::memory_order_relaxed);
    const void* c = P.ctx.load(std::memory_order_relaxed);
    if (!P.claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
    f(c, b);
    P.done.fetch_add(1, std::memory_order_release);
    ++ran;
  }
}

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Wait until a job other than `seen` comes, for at most kPrewakeNs: pausing for the first kPrewakeSpinNs of
// it when woken for a short job, else yielding the core; returns the last sequence number read.
std::uint64_t wait_for_job(const Worker& W, std::uint64_t seen) noexcept {
  const std::int64_t start = now_ns(), until = start + kPrewakeNs;
  const std::int64_t pause_until = W.short_job.load(std::memory_order_relaxed) ? start + kPrewakeSpinNs : start;
  std::uint64_t g = W.go.load(std::memory_order_acquire);
  for (std::int64_t t = start; g == seen && t < until; t = now_ns()) {
    if (t < pause_until) {
      for (int i = 0; i < 64; ++i) cpu_relax();
    } else {
      std::this_thread::yield();
    }
    g = W.go.load(std::memory_order_acquire);
  }
  return g;
}

void worker_main(Pool* P, Worker* W) noexcept {
  std::uint64_t seen = 0, nudged = 0;
  for (;;) {
    std::uint64_t g = W->go.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kIdleSpin; ++i) {  // a short spin first: a call in a loop comes back soon
      cpu_relax();
      g = W->go.load(std::memory_order_acquire);
    }
    if (g == seen) {
      {
        std::unique_lock<std::mutex> lock(W->m);
        W->asleep.store(true, std::memory_order_relaxed);
        W->cv.wait(lock, [&] {
          g = W->go.load(std::memory_order_acquire);
          return g != seen || W->nudge.load(std::memory_order_relaxed) != nudged;
        });
        W->asleep.store(false, std::memory_order_relaxed);
        nudged = W->nudge.load(std::memory_order_relaxed);
      }
      // woken by prewake() or by the job itself
      if (leave_cpu(W->caller_cpu.load(std::memory_order_relaxed))) P->moves.fetch_add(1, std::memory_order_relaxed);
      if (g == seen) g = wait_for_job(*W, seen);  // woken ahead of a job
      if (g == seen) continue;  // none came (the call failed its checks, or ran on one thread): sleep again
    }
    // prewake() only nudges while no job runs (it needs the caller's lock): a nudge seen now was for this
    // job, not for the next one, and must not make the next wait end at once.
    nudged = W->nudge.load(std::memory_order_relaxed);
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

void prewake(int nthreads, bool short_job) noexcept {
  if (nthreads <= 1) return;
  Pool& P = *g_pool;
  if (now_ns() < P.solo_until.load(std::memory_order_relaxed)) return;  // backing off: calls run alone
  std::unique_lock<std::mutex> lock(P.caller, std::try_to_lock);
  if (!lock.owns_lock()) return;  // a call owns the workers: they are awake
  const std::size_t nw = std::min(std::size_t(nthreads) - 1, P.workers.size());
  const int cpu = current_cpu();
  for (std::size_t i = 0; i < nw; ++i) {
    Worker* W = P.workers[i];
    // One that is awake (spinning after a job or after an earlier prewake) is left alone: notifying it would
    // cost a system call for nothing. One that falls asleep just after this test only joins late.
    if (!W->asleep.load(std::memory_order_relaxed)) continue;
    {
      std::lock_guard<std::mutex> wl(W->m);
      W->short_job.store(short_job, std::memory_order_relaxed);
      W->caller_cpu.store(cpu, std::memory_order_relaxed);
      W->nudge.fetch_add(1, std::memory_order_relaxed);
    }
    W->cv.notify_one();
  }
}

State state() noexcept {
  Pool& P = *g_pool;
  std::lock_guard<std::mutex> lock(P.caller);
  const std::int64_t left = P.solo_until.load(std::memory_order_relaxed) - now_ns();
  return State{P.late_calls.load(std::memory_order_relaxed), P.solo_calls.load(std::memory_order_relaxed), P.level,
               left > 0 ? left : 0, P.moves.load(std::memory_order_relaxed)};
}

std::pair<int, int> probe_leave_cpu() noexcept {
  const int cpu = current_cpu();
  if (leave_cpu(cpu)) g_pool->moves.fetch_add(1, std::memory_order_relaxed);
  return {cpu, current_cpu()};
}

namespace {
struct Probe {
  std::thread::id caller;
  std::int64_t helper_ns;
  mutable std::atomic<std::size_t> helper_blocks{0};
};

void probe_block(const void* ctx, std::size_t) {
  const Probe& p = *static_cast<const Probe*>(ctx);
  if (std::this_thread::get_id() != p.caller) {
    p.helper_blocks.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::nanoseconds(p.helper_ns));
  } else {
    const std::int64_t until = now_ns() + 2'000;  // a block of work: long enough for a helper to claim one
    while (now_ns() < until) cpu_relax();
  }
}
}  // namespace

std::size_t probe(std::size_t nblocks, int nthreads, std::int64_t helper_ns) noexcept {
  Probe p;
  p.caller = std::this_thread::get_id();
  p.helper_ns = helper_ns;
  run(nblocks, nthreads, &probe_block, &p);
  return p.helper_blocks.load(std::memory_order_relaxed);
}

void run(std::size_t nblocks, int nthreads, BlockFn fn, const void* ctx) noexcept {
  if (nthreads <= 1 || nblocks < 2 || nblocks > kIndexMask) return serial(nblocks, fn, ctx);
  Pool& P = *g_pool;
  const std::int64_t start = now_ns();
  if (start < P.solo_until.load(std::memory_order_relaxed)) {  // backing off
    P.solo_calls.fetch_add(1, std::memory_order_relaxed);
    return serial(nblocks, fn, ctx);
  }
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
  const int cpu = current_cpu();
  for (std::size_t i = 0; i < nw; ++i) {
    Worker* W = P.workers[i];
    {
      std::lock_guard<std::mutex> wl(W->m);
      W->caller_cpu.store(cpu, std::memory_order_relaxed);
      W->go.store(seq, std::memory_order_release);
    }
    W->cv.notify_one();
  }
  const std::size_t own = work_on(P, seq);
  // Every block is claimed; wait for the ones other threads are still computing.
  const std::int64_t waiting = now_ns();
  int spins = 0;
  while (P.done.load(std::memory_order_acquire) != nblocks) {
    if (++spins < kWaitSpin) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  const std::int64_t end = spins ? now_ns() : waiting;
  const std::int64_t per_block = (waiting - start) / std::int64_t(std::max<std::size_t>(own, 1));
  if (end - waiting > std::max(kLateNs, kLateBlocks * per_block)) {
    P.late_calls.fetch_add(1, std::memory_order_relaxed);
    P.solo_until.store(end + (kSoloNs << P.level), std::memory_order_relaxed);
    P.level = std::min(P.level + 1, kMaxLevel);
  } else {
    P.level = 0;
  }
}

}  // namespace pool
}  // namespace fusedloss

// threadpoolctl finds the libraries it controls by an exported symbol: fusedloss.backends.cpp registers a
// controller that recognises this extension by this one. The limit itself is Python state (_config).
extern "C" __attribute__((visibility("default"))) int fusedloss_threadpool_api() { return 1; }
