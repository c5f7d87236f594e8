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
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fiber.h"
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

struct Site {  // the source line a thread waits at
  const char* file = "";
  int line = 0;
};

enum class ThreadState : uint8_t {
  kRunning,    // executing (one thread at a time)
  kReady,      // suspended and free to continue: in the ready queue
  kAtBarrier,  // waiting in __syncthreads()
  kAtWarpOp,   // waiting in __syncwarp / a shuffle / a vote for the other lanes of its mask
  kExited,     // returned from the kernel (or threw)
};  // threads at index >= Block::next_unstarted have not started yet

enum class WarpOp : uint8_t { kSync, kShuffle, kBallot, kAny, kAll };

struct EmuThread {
  uint3 idx;           // its threadIdx
  ThreadState state;
  Fiber* fiber;        // the worker it runs on, once started
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
  std::vector<int> ready;          // FIFO ring buffer of thread indices
  int ready_head = 0, ready_count = 0;
  int next_unstarted = 0;
  int live = 0;        // threads that have not exited
  int at_barrier = 0;  // threads waiting in __syncthreads
  int nworkers = 0;

  int size() const { return static_cast<int>(threads.size()); }
  int index_of(const EmuThread& t) const { return static_cast<int>(&t - threads.data()); }
};

// The first error of a launch, reported as "kernel K: block (..) thread (..): what".
struct LaunchError {
  bool failed = false;
  bool has_thread = false;
  uint3 block{}, thread{};
  std::string what;
};

struct Emulator {
  std::mutex launch_mutex;   // one launch at a time in the process
  // The launch in progress.
  const char* kernel_name = nullptr;
  void (*invoke)(const void*) = nullptr;  // calls the kernel with a copy of the bound arguments
  const void* bound_args = nullptr;
  unsigned char* dyn_smem = nullptr;
  size_t dyn_smem_bytes = 0;
  bool dyn_smem_used = false;  // DYN_SHARED was called in this launch
  Block block;
  LaunchError error;
  // Who runs now.
  EmuThread* cur_thread = nullptr;  // nullptr outside kernels
  Fiber* cur_fiber = nullptr;
  Fiber main_fiber;                 // the launching OS thread's own stack
  StackPool stacks;
  Stats stats;
};
inline Emulator g_emu;

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
  if (g_emu.cur_thread == nullptr) throw std::logic_error(std::string(what) + " called outside a kernel");
  return *g_emu.cur_thread;
}

inline void make_current(EmuThread& t) {
  t.state = ThreadState::kRunning;
  g_emu.cur_thread = &t;
  threadIdx = t.idx;
}

inline void record_error(const EmuThread* t, std::string what) {
  LaunchError& err = g_emu.error;
  if (err.failed) return;  // the first error wins
  err = LaunchError{true, t != nullptr, blockIdx, t ? t->idx : uint3{}, std::move(what)};
}

inline void push_ready(EmuThread& t) {
  Block& b = g_emu.block;
  t.state = ThreadState::kReady;
  b.ready[(b.ready_head + b.ready_count++) % b.size()] = b.index_of(t);
}

inline EmuThread& pop_ready() {
  Block& b = g_emu.block;
  EmuThread& t = b.threads[b.ready[b.ready_head]];
  b.ready_head = (b.ready_head + 1) % b.size();
  --b.ready_count;
  return t;
}

// ---- stall diagnosis: nothing can run, yet threads wait -----------------------------------------
// A warp operation waits for the lanes of its mask; say why one of them can never come.
inline std::string explain_warp_wait(const EmuThread& w) {
  const Block& b = g_emu.block;
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
  const Block& b = g_emu.block;
  const EmuThread* at_barrier = nullptr;
  const EmuThread* exited = nullptr;
  for (const EmuThread& t : b.threads) {
    if (t.state == ThreadState::kAtWarpOp) return record_error(&t, explain_warp_wait(t));
    if (t.state == ThreadState::kAtBarrier && !at_barrier) at_barrier = &t;
    if (t.state == ThreadState::kExited && !exited) exited = &t;
  }
  if (at_barrier && exited) {
    return record_error(at_barrier, "divergent barrier: " + where(*at_barrier) + " is never reached by thread " +
                                        coords(exited->idx) + ", which has exited");
  }
  record_error(at_barrier, "deadlock: no thread can continue");
}

// ---- switching ----------------------------------------------------------------------------------
inline void worker_main();

inline void switch_to(Fiber& to, bool from_is_done) {
  Fiber& from = *g_emu.cur_fiber;
  g_emu.cur_fiber = &to;
  ++g_emu.stats.switches;
  switch_fiber(from, to, from_is_done);
}

// A new worker fiber on the next free stack; it starts in worker_main at its first switch.
inline Fiber& start_worker() {
  Block& b = g_emu.block;
  Fiber& f = b.workers[b.nworkers];
  prepare_fiber(f, g_emu.stacks.stack(b.nworkers), StackPool::stack_bytes(), &worker_main);
  ++b.nworkers;
  ++g_emu.stats.workers;
  return f;
}

// Who runs next: a ready thread, else a new worker for the threads not started yet, else the
// launch (the block is done, failed, or stuck: then the stall is recorded as the error).
inline Fiber& pick_next() {
  Block& b = g_emu.block;
  if (!g_emu.error.failed) {
    if (b.ready_count > 0) {
      EmuThread& t = pop_ready();
      make_current(t);
      return *t.fiber;
    }
    if (b.next_unstarted < b.size()) return start_worker();
    if (b.live > 0) diagnose_stall();
  }
  g_emu.cur_thread = nullptr;
  return g_emu.main_fiber;
}

// The running thread has started to wait (its state says where): run others until it is ready.
inline void wait_running_thread() { switch_to(pick_next(), false); }

// ---- workers ------------------------------------------------------------------------------------
// Run one CUDA thread to its end. Exceptions can't cross from one fiber's stack to another's, so
// they are caught here and recorded with the thread's coordinates; the launch rethrows them.
inline void run_thread(EmuThread& t) {
  try {
    g_emu.invoke(g_emu.bound_args);
  } catch (const std::exception& ex) {
    record_error(&t, ex.what());
  } catch (...) {
    record_error(&t, "unknown C++ exception");
  }
  t.state = ThreadState::kExited;
  --g_emu.block.live;
}

// The body of every worker fiber: run not-yet-started threads one after another as plain calls.
inline void worker_main() {
  finish_switch(nullptr);
  Block& b = g_emu.block;
  Fiber& self = *g_emu.cur_fiber;
  while (!g_emu.error.failed && b.next_unstarted < b.size()) {
    EmuThread& t = b.threads[b.next_unstarted++];
    t.fiber = &self;
    make_current(t);
    run_thread(t);
  }
  switch_to(pick_next(), /*from_is_done=*/true);
  std::abort();  // a finished worker is never resumed
}

// Run all threads of the current block (blockIdx is set); returns on the launching stack.
inline void run_block() {
  Block& b = g_emu.block;
  b.ready_head = b.ready_count = 0;
  b.next_unstarted = 0;
  b.live = b.size();
  b.at_barrier = 0;
  b.nworkers = 0;
  ++g_emu.stats.blocks;
  g_emu.cur_fiber = &g_emu.main_fiber;
  switch_to(start_worker(), false);
}

// ---- __syncthreads ------------------------------------------------------------------------------
// The last thread to arrive releases the others. All must wait at the same source line: threads
// in different __syncthreads() calls are a divergent barrier (undefined behaviour in CUDA).
inline int release_barrier(EmuThread& last) {
  Block& b = g_emu.block;
  int count = 0;
  for (const EmuThread& t : b.threads) {
    if (!same_site(t.site, last.site)) {
      throw std::runtime_error("divergent barrier: this thread waits in " + where(last) + ", thread " +
                               coords(t.idx) + " in " + where(t));
    }
    count += static_cast<int>(t.value);
  }
  b.at_barrier = 0;
  for (EmuThread& t : b.threads) {
    t.result = static_cast<uint64_t>(count);
    if (&t != &last) push_ready(t);
  }
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
  if (++g_emu.block.at_barrier == g_emu.block.size()) return release_barrier(t);
  wait_running_thread();
  return static_cast<int>(t.result);
}

}  // namespace detail

inline Stats& stats() { return detail::g_emu.stats; }

}  // namespace minicnn_emu
