// The race checker: shared- and global-memory races and reads of uninitialised shared memory.
//
// Part of the CUDA emulator (see cuda_emu.h). Off unless the kernels are compiled with
// -DMINICNN_EMU_CHECK -fsanitize=thread (setup.py: MINICNN_EMU_CHECK=1). Then:
//
// How accesses are seen. -fsanitize=thread makes the compiler call __tsan_read4(address) before
// every 4-byte load, __tsan_write8 before every 8-byte store, and so on. We do not link
// ThreadSanitizer's runtime: check_runtime.h defines those functions itself, so every load and
// store of a kernel reaches the checker below with its address and the instruction's address (for
// the source line). Accesses to the thread's own stack are private and skipped; the emulator's own
// code switches checking off (EmuCode), kernel code switches it on (KernelCode).
//
// What is shared memory. The block worker's dynamic shared memory, and the static __shared__
// arrays: those are thread_local (types.h), so they are the part of this module's TLS block that is
// not one of the built-in variables (threadIdx, ...).
//
// When two accesses are ordered (happens-before, as CUDA defines it for one launch):
//   - accesses of different launches: always (a launch finishes before the next starts);
//   - accesses of different blocks of one launch: never (blocks may run in any order, at once);
//   - of one block: when a __syncthreads lies between them (the block's barrier epoch differs), or
//     when both threads are in one warp and a __syncwarp both took part in lies between them
//     (tracked with vector clocks over the 32 lanes of a warp). Shuffles and votes exchange
//     values, not memory: they don't order memory accesses (as in CUDA's memory model).
// Two unordered accesses to one 4-byte word, at least one a write and not both atomic, are a race.
// A read of shared memory that no thread of this block has written is an uninitialised read.
//
// Shadow memory: per 4-byte word of application memory, the last write and up to two reads
// (of different threads, and of different blocks when there are such) since that write. This is
// enough to find every write/write race and, for reads by many threads, a conflicting read, and
// makes the verdict for a launch independent of the schedule; see check_runtime.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace minicnn_emu::detail {

struct Block;
struct Launch;

#ifndef MINICNN_EMU_CHECK
// ---- checker off: nothing to do ------------------------------------------------------------------
constexpr bool kRaceChecker = false;
struct EmuCode {  // marks emulator code that kernel code calls
  EmuCode() {}
};
struct KernelCode {  // marks a kernel's code
  KernelCode() {}
};
inline void check_block_start(Block&) {}
inline void check_warp_sync(int, unsigned) {}
inline void check_atomic(const void*, size_t, const void*) {}
struct LaunchChecks {
  explicit LaunchChecks(Launch&) {}
  void finish() {}
};
#else
#if !defined(__SANITIZE_THREAD__)
#error \
    "MINICNN_EMU_CHECK needs -fsanitize=thread: that instrumentation is how the checker sees accesses"
#endif
constexpr bool kRaceChecker = true;
#define MINICNN_EMU_NO_CHECK __attribute__((no_sanitize_thread))  // never inlined into checked code

struct Worker;
struct CheckThread;  // per OS thread: check_runtime.h

// Out of line and uninstrumented: they switch checking on and off, so they must not be checked.
struct EmuCode {
  bool was_on;
  MINICNN_EMU_NO_CHECK inline EmuCode();
  MINICNN_EMU_NO_CHECK inline ~EmuCode();
};
struct KernelCode {
  MINICNN_EMU_NO_CHECK inline KernelCode();
  MINICNN_EMU_NO_CHECK inline ~KernelCode();
};

inline void check_block_start(Block& b);
inline void check_warp_sync(int base, unsigned mask);
inline void check_atomic(const void* address, size_t size, const void* pc);

// Holds a launch's findings; finish() throws them as one error naming the kernel.
struct LaunchChecks {
  inline explicit LaunchChecks(Launch& l);
  inline void finish();
  Launch& launch;
};
#endif

}  // namespace minicnn_emu::detail

#ifdef MINICNN_EMU_CHECK
#include "check_runtime.h"
#endif
