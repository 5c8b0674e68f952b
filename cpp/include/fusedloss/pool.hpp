// The thread pool every parallel kernel runs on (reduce.hpp's for_blocks / sum_blocks), compiled once
// (cpp/src/pool.cpp) and shared by every ISA level: nothing here is per level.
//
// Why not OpenMP: a parallel region ends in a barrier, so the calling thread waits for every team member,
// including one the OS has not scheduled yet because another process holds its core. On a loaded
// machine a 2-thread call then takes the time slice of a stranger (milliseconds) instead of its own work
// (microseconds), and while it waits libgomp spins on a core the caller's other threads want.
//
// The rules here:
// - Work comes as FIXED blocks (their boundaries depend only on the size, never on the thread count) that
//   threads CLAIM one at a time from a shared counter: a thread that is late, or preempted, simply claims
//   fewer blocks. The caller claims blocks too, and returns as soon as every block is finished: a helper
//   that wakes up after that finds nothing to do, so a call never waits for a thread that has not started.
// - A call waits only for blocks that another thread is computing at that moment (each is a few
//   microseconds of work), spinning briefly and then yielding its core.
// - Idle workers spin for a few microseconds after a job (a training loop calls again soon), then sleep on
//   a condition variable: no core is held while nothing runs.
// - A sleeping worker takes 20-40 us to run again once notified (measured on a virtual machine: the
//   hypervisor wakes a halted vCPU), and a call from Python always has more than the idle spin of Python
//   work between two kernels, so its helper joined late every time. prewake() lets the Python side notify
//   the workers when it starts checking a call's arguments: they wake while it works and wait for the job
//   for at most kPrewakeNs (0.1 ms), then sleep again. They wait yielding their core, except ahead of a
//   short job, where they keep it for the first 50 us. A worker woken (by prewake() or by the job) on the
//   waking thread's own CPU moves off it first (pool.cpp: kPrewakeSpinNs and leave_cpu say why).
// - One job at a time: a call that finds the pool busy (another Python thread is in a kernel, the GIL
//   being released) runs on its own thread, so concurrent callers never oversubscribe the cores.
// - A call that had to wait long for a helper's block (the helper was preempted: its block took more than a
//   few of the caller's own blocks) makes the next calls run on the caller alone for a while, 1 ms doubling
//   to 256 ms while the helpers keep being late, then tries them again: on a loaded machine a call then
//   costs about its one-thread time, on an idle one nothing changes (the blocks, hence the results, are the
//   same either way).
// - fork(): the child gets a fresh, empty pool (threads do not survive a fork).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace fusedloss {
namespace pool {

// fn(ctx, b) computes block b; it must not throw.
using BlockFn = void (*)(const void* ctx, std::size_t block);

// Run fn(ctx, b) for every b in [0, nblocks), on the calling thread and at most nthreads - 1 workers, and
// return when every block has finished. nthreads <= 1 runs every block on the calling thread, in order.
void run(std::size_t nblocks, int nthreads, BlockFn fn, const void* ctx) noexcept;

// Workers started so far (they start on first need and are reused).
int workers() noexcept;

// Wake the workers a call on nthreads threads would use, ahead of it (see the rules above); short_job: the
// call's kernel is short (the caller decides: fusedloss.backends.cpp's PREWAKE_SHORT). Does nothing for
// nthreads <= 1, while calls run on the caller alone (back-off), or while another call owns the workers.
void prewake(int nthreads, bool short_job) noexcept;

// The back-off: calls that found a helper late so far, calls that ran on the caller alone because of it, the
// current level, and how long calls keep running on the caller alone (ns, 0: none); and the woken workers
// that moved off the waking thread's CPU so far.
struct State {
  std::uint64_t late_calls;
  std::uint64_t solo_calls;
  int level;
  std::int64_t solo_ns_left;
  std::uint64_t moves;
};
State state() noexcept;

// For tests: move the calling thread off the CPU it runs on as a woken worker leaves its waker's (counted in
// State::moves); returns the CPUs it ran on before and after (-1 where the system does not say).
std::pair<int, int> probe_leave_cpu() noexcept;

// For tests: run nblocks blocks as a kernel would, where a block that a helper thread claims sleeps
// helper_ns (a preempted helper) and one the caller claims spins 2 us; returns the blocks helpers ran.
std::size_t probe(std::size_t nblocks, int nthreads, std::int64_t helper_ns) noexcept;

}  // namespace pool
}  // namespace fusedloss
