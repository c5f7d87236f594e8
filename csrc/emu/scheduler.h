// The scheduler: runs the CUDA threads of one block as fibers, and the barrier they meet at.
//
// Part of the CUDA emulator (see cuda_emu.h for the big picture).
//
// Workers. A block's threads are not given a fiber each up front. A *worker* fiber runs threads one
// after another, as plain function calls: it takes the next thread that has not started, calls the
// kernel for it, and when the kernel returns takes the next one. If a thread waits (in a barrier or
// a warp operation) it keeps the worker it runs on, suspended in the middle of the kernel, and the
// scheduler starts a new worker for the threads that have not started yet. So:
//   - a kernel without barriers runs the whole block on one worker: one switch in, one out, and
//     the threads in between cost a function call each (the "fast path");
//   - a kernel whose threads all meet at __syncthreads ends up with one worker per thread;
//   - anything in between works too, e.g. only the second warp of a block doing warp shuffles.
// Ready threads wait in a FIFO queue. A thread that waits hands the CPU directly to the next ready
// thread (or to a new worker); when no thread can run any more, control goes back to the launch.
// The order in which threads start and leave a barrier follows the schedule (schedule.h).
//
// Concurrency. Blocks run concurrently on OS threads ("block workers", launch.h). Everything a
// block needs while it runs (its threads, worker fibers, stacks, dynamic shared memory, the fiber
// that runs) is per OS thread: `t_worker` below. A block never moves to another OS thread, so the
// thread_local built-in variables and static __shared__ arrays (types.h) belong to it alone.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fiber.h"
#include "schedule.h"
#include "runtime.h"
#include "types.h"

namespace minicnn_emu {

// Counters for tests and curious readers: how much fiber machinery a kernel needed.
struct Stats {
  uint64_t launches = 0;
  uint64_t blocks = 0;
  uint64_t workers = 0;   // worker fibers started (one per block for a kernel without barriers)
  uint64_t switches = 0;  // fiber switches
};

namespace detail {

inline Stats g_stats;  // launches; the other counters are per block worker (Worker::stats)
inline void count(uint64_t& counter, uint64_t n = 1) {
  __atomic_fetch_add(&counter, n, __ATOMIC_RELAXED);
}

struct Site {  // the source line a thread waits at
  const char* file = "";
  int line = 0;
};

enum class ThreadState : uint8_t {
  kUnstarted,  // not started yet
  kRunning,    // executing (one thread at a time per block)
  kReady,      // suspended and free to continue: in the ready queue
  kAtBarrier,  // waiting in __syncthreads()
  kAtWarpOp,   // waiting in __syncwarp / a shuffle / a vote for the other lanes of its mask
  kExited,     // returned from the kernel (or threw)
};

enum class WarpOp : uint8_t { kSync, kShuffle, kBallot, kAny, kAll };

struct EmuThread {
  uint3 idx;  // its threadIdx
  ThreadState state;
  Fiber* fiber;  // the worker it runs on, once started
  // What it waits in, and the values it exchanges there: `value` is what it brings (a shuffled
  // value, a predicate), `result` what it takes away.
  const char* op_name;
  Site site;
  WarpOp op;
  unsigned mask;
  int src_lane;
  uint64_t value;
  uint64_t result;
};

struct Block {
  std::vector<EmuThread> threads;  // linear order: x + y*Dx + z*Dx*Dy; lane = index % 32
  std::vector<Fiber> workers;
  std::vector<int> ready;       // FIFO ring buffer of thread indices
  std::vector<int> order;       // the schedule's order: threads start in this order
  std::vector<int> wake_order;  // and leave a barrier or warp operation in this one
  int ready_head = 0, ready_count = 0;
  int next_unstarted = 0;  // position in `order` of the next thread to start
  int live = 0;            // threads that have not exited
  int at_barrier = 0;      // threads waiting in __syncthreads
  int nworkers = 0;
  uint32_t epoch = 0;  // barriers passed by this block (the race checker's barrier intervals)
  Rng rng{0};          // the thread order's random stream for this block
  std::vector<uint32_t> clocks;  // race checker only: 32 warp-clock entries per thread (check.h)

  int size() const { return static_cast<int>(threads.size()); }
  int index_of(const EmuThread& t) const { return static_cast<int>(&t - threads.data()); }
};

// The first error of a launch, reported as "kernel K: block (..) thread (..): what". With blocks
// running concurrently, the error of the block earliest in the schedule's block order wins, so the
// message does not depend on which OS thread was faster.
struct LaunchError {
  bool failed = false;
  bool has_thread = false;
  uint3 block{}, thread{};
  std::string what;
  uint64_t position = ~uint64_t{0};  // of the block in the block order
};

// The launch in progress (one at a time in the process): what every block worker reads.
struct Launch {
  const char* kernel_name = nullptr;
  void (*invoke)(const void*) = nullptr;  // calls the kernel with a copy of the bound arguments
  const void* bound_args = nullptr;
  dim3 grid, block;
  size_t dyn_smem_bytes = 0;
  Schedule schedule;
  uint32_t id = 0;                         // launches so far, this one included
  std::vector<uint32_t> block_order;       // linear block indices in the order they are handed out
  std::atomic<uint64_t> next_position{0};  // the next entry of block_order to run
  std::atomic<uint64_t> failed_position{~uint64_t{0}};  // blocks after this one are not started
  std::mutex error_mutex;
  LaunchError error;
};

// Everything one OS thread needs to run blocks: created on its first block, kept for later ones.
struct Worker {
  Block block;
  bool block_failed = false;        // the running block hit an error: stop scheduling its threads
  uint64_t position = 0;            // of the running block in the block order
  EmuThread* cur_thread = nullptr;  // nullptr outside kernels
  Fiber* cur_fiber = nullptr;
  Fiber main_fiber;  // this OS thread's own stack
  StackPool stacks;
  unsigned char* dyn_smem = nullptr;  // this worker's dynamic shared memory (launch.h)
  size_t dyn_smem_bytes = 0;
  bool dyn_smem_used = false;  // DYN_SHARED was called in this block
  Stats stats;                 // blocks, worker fibers and switches run here
};

inline std::mutex g_launch_mutex;   // one launch at a time in the process
inline Launch* g_launch = nullptr;  // the launch in progress
inline thread_local Worker* t_worker = nullptr;

struct WorkerList {  // every Worker ever made, for stats()
  std::mutex mutex;
  std::vector<Worker*> all;
};
inline WorkerList g_workers;

inline Worker& worker() {
  if (t_worker == nullptr) {
    t_worker = new Worker();  // never freed: a pool thread lives as long as the process
    std::lock_guard<std::mutex> lock(g_workers.mutex);
    g_workers.all.push_back(t_worker);
  }
  return *t_worker;
}
inline Block& cur_block() {
  return t_worker->block;
}

// ---- small helpers ------------------------------------------------------------------------------
inline std::string coords(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
inline std::string where(const EmuThread& t) {
  return std::string(t.op_name) + " at " + t.site.file + ":" + std::to_string(t.site.line);
}
inline bool same_site(Site a, Site b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

inline EmuThread& running_thread(const char* what) {
  if (t_worker == nullptr || t_worker->cur_thread == nullptr) {
    throw std::logic_error(std::string(what) + " called outside a kernel");
  }
  return *t_worker->cur_thread;
}

inline void make_current(EmuThread& t) {
  t.state = ThreadState::kRunning;
  t_worker->cur_thread = &t;
  threadIdx = t.idx;
}

// Record an error of the running block (t: the thread, or nullptr for the block as a whole).
inline void record_error(const EmuThread* t, std::string what) {
  Worker& w = *t_worker;
  if (w.block_failed) return;  // the first error of a block wins
  w.block_failed = true;
  Launch& l = *g_launch;
  std::lock_guard<std::mutex> lock(l.error_mutex);
  if (l.error.failed && l.error.position <= w.position) return;
  l.error =
      LaunchError{true, t != nullptr, blockIdx, t ? t->idx : uint3{}, std::move(what), w.position};
  l.failed_position.store(w.position);
}

inline void push_ready(Block& b, EmuThread& t) {
  t.state = ThreadState::kReady;
  b.ready[(b.ready_head + b.ready_count++) % b.size()] = b.index_of(t);
}

inline EmuThread& pop_ready() {
  Block& b = cur_block();
  EmuThread& t = b.threads[b.ready[b.ready_head]];
  b.ready_head = (b.ready_head + 1) % b.size();
  --b.ready_count;
  return t;
}

// Make the threads that `wakes(thread)` selects ready, in the order of the schedule: a fresh random
// permutation for a random schedule (each barrier interval gets its own order).
template <class Wakes>
inline void wake_in_schedule_order(Wakes wakes) {
  Block& b = cur_block();
  if (g_launch->schedule.threads == Order::kRandom)
    fill_order(b.wake_order, b.size(), Order::kRandom, b.rng);
  for (int i : b.wake_order) {
    if (wakes(b.threads[i])) push_ready(b, b.threads[i]);
  }
}

// ---- stall diagnosis: nothing can run, yet threads wait -----------------------------------------
// A warp operation waits for the lanes of its mask; say why one of them can never come.
inline std::string explain_warp_wait(const EmuThread& w) {
  const Block& b = cur_block();
  int base = b.index_of(w) / warpSize * warpSize;
  char mask[16];
  std::snprintf(mask, sizeof mask, "0x%08x", w.mask);
  std::string head = where(w) + " (mask " + mask + ")";
  for (unsigned m = w.mask; m != 0; m &= m - 1) {
    int lane = __builtin_ctz(m);
    const EmuThread& u = b.threads[base + lane];
    std::string who = "lane " + std::to_string(lane) + " (thread " + coords(u.idx) + ")";
    if (u.state == ThreadState::kExited) return head + " names " + who + ", which has exited";
    if (u.state == ThreadState::kAtBarrier || u.op != w.op || u.mask != w.mask)
      return "deadlock: " + head + " waits for " + who + ", which waits in " + where(u);
  }
  return "deadlock: " + head + " never completes";
}

// Record the error that explains a stall (called when no thread can run but some still wait).
inline void diagnose_stall() {
  const Block& b = cur_block();
  const EmuThread* at_barrier = nullptr;
  const EmuThread* exited = nullptr;
  for (const EmuThread& t : b.threads) {
    if (t.state == ThreadState::kAtWarpOp) return record_error(&t, explain_warp_wait(t));
    if (t.state == ThreadState::kAtBarrier && !at_barrier) at_barrier = &t;
    if (t.state == ThreadState::kExited && !exited) exited = &t;
  }
  if (at_barrier && exited) {
    return record_error(at_barrier, "divergent barrier: " + where(*at_barrier) +
                                        " is never reached by thread " + coords(exited->idx) +
                                        ", which has exited");
  }
  record_error(at_barrier, "deadlock: no thread can continue");
}

// ---- switching ----------------------------------------------------------------------------------
inline void worker_main();

inline void switch_to(Fiber& to, bool from_is_done) {
  Worker& w = *t_worker;
  Fiber& from = *w.cur_fiber;
  w.cur_fiber = &to;
  ++w.stats.switches;
  switch_fiber(from, to, from_is_done);
}

// A new worker fiber on the next free stack; it starts in worker_main at its first switch.
inline Fiber& start_worker() {
  Block& b = cur_block();
  Fiber& f = b.workers[b.nworkers];
  prepare_fiber(f, t_worker->stacks.stack(b.nworkers), StackPool::stack_bytes(), &worker_main);
  ++b.nworkers;
  ++t_worker->stats.workers;
  return f;
}

// Who runs next: a ready thread, else a new worker for the threads not started yet, else the
// launch (the block is done, failed, or stuck: then the stall is recorded as the error).
inline Fiber& pick_next() {
  Block& b = cur_block();
  if (!t_worker->block_failed) {
    if (b.ready_count > 0) {
      EmuThread& t = pop_ready();
      make_current(t);
      return *t.fiber;
    }
    if (b.next_unstarted < b.size()) return start_worker();
    if (b.live > 0) diagnose_stall();
  }
  t_worker->cur_thread = nullptr;
  return t_worker->main_fiber;
}

// The running thread has started to wait (its state says where): run others until it is ready.
inline void wait_running_thread() {
  switch_to(pick_next(), false);
}

}  // namespace detail
}  // namespace minicnn_emu

#include "check.h"  // the race checker's hooks (empty unless built with MINICNN_EMU_CHECK)

namespace minicnn_emu {
namespace detail {

// ---- workers ------------------------------------------------------------------------------------
// Run one CUDA thread to its end. Exceptions can't cross from one fiber's stack to another's, so
// they are caught here and recorded with the thread's coordinates; the launch rethrows them.
inline void run_thread(EmuThread& t) {
  try {
    KernelCode checked;  // the race checker watches the kernel's memory accesses from here on
    g_launch->invoke(g_launch->bound_args);
  } catch (const std::exception& ex) {
    record_error(&t, ex.what());
  } catch (...) {
    record_error(&t, "unknown C++ exception");
  }
  t.state = ThreadState::kExited;
  --cur_block().live;
}

// The body of every worker fiber: run not-yet-started threads one after another as plain calls.
inline void worker_main() {
  finish_switch(nullptr);
  Block& b = cur_block();
  Fiber& self = *t_worker->cur_fiber;
  while (!t_worker->block_failed && b.next_unstarted < b.size()) {
    EmuThread& t = b.threads[b.order[b.next_unstarted++]];
    t.fiber = &self;
    make_current(t);
    run_thread(t);
  }
  switch_to(pick_next(), /*from_is_done=*/true);
  std::abort();  // a finished worker is never resumed
}

// Run all threads of this worker's block (blockIdx is set); returns on the OS thread's own stack.
inline void run_block() {
  Block& b = cur_block();
  b.ready_head = b.ready_count = 0;
  b.next_unstarted = 0;
  b.live = b.size();
  b.at_barrier = 0;
  b.nworkers = 0;
  b.epoch = 0;
  for (EmuThread& t : b.threads) t.state = ThreadState::kUnstarted;
  fill_order(b.order, b.size(), g_launch->schedule.threads, b.rng);
  b.wake_order = b.order;
  check_block_start(b);
  ++t_worker->stats.blocks;
  t_worker->block_failed = false;
  t_worker->cur_fiber = &t_worker->main_fiber;
  switch_to(start_worker(), false);
}

// ---- __syncthreads ------------------------------------------------------------------------------
// The last thread to arrive releases the others. All must wait at the same source line: threads
// in different __syncthreads() calls are a divergent barrier (undefined behaviour in CUDA).
inline int release_barrier(EmuThread& last) {
  Block& b = cur_block();
  int count = 0;
  for (const EmuThread& t : b.threads) {
    if (!same_site(t.site, last.site)) {
      throw std::runtime_error("divergent barrier: this thread waits in " + where(last) +
                               ", thread " + coords(t.idx) + " in " + where(t));
    }
    count += static_cast<int>(t.value);
  }
  b.at_barrier = 0;
  ++b.epoch;  // a new barrier interval
  for (EmuThread& t : b.threads) t.result = static_cast<uint64_t>(count);
  wake_in_schedule_order([&](EmuThread& t) { return &t != &last; });
  last.state = ThreadState::kRunning;
  return count;
}

// Wait until every thread of the block is here; returns how many passed a non-zero predicate.
inline int block_barrier(const char* name, int predicate, Site site) {
  EmuThread& t = running_thread(name);
  t.state = ThreadState::kAtBarrier;
  t.op_name = name;
  t.site = site;
  t.value = predicate != 0;
  if (++cur_block().at_barrier == cur_block().size()) return release_barrier(t);
  wait_running_thread();
  return static_cast<int>(t.result);
}

}  // namespace detail

// Totals over the block workers (read between launches: the counters are not atomic).
inline Stats stats() {
  Stats s;
  s.launches = __atomic_load_n(&detail::g_stats.launches, __ATOMIC_RELAXED);
  std::lock_guard<std::mutex> lock(detail::g_workers.mutex);
  for (const detail::Worker* w : detail::g_workers.all) {
    s.blocks += w->stats.blocks;
    s.workers += w->stats.workers;
    s.switches += w->stats.switches;
  }
  return s;
}

}  // namespace minicnn_emu
