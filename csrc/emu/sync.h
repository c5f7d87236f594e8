// CUDA's synchronisation functions: __syncthreads, __syncwarp, warp shuffles and votes.
//
// Part of the CUDA emulator (see cuda_emu.h and scheduler.h). Each of these is a point where the
// calling CUDA thread may have to wait for others, so each is a place where fibers switch.
//
// Warp operations. The 32 threads of a warp (lane = linear thread index % 32) exchange values
// through their EmuThread records: each lane that calls, say, __shfl_down_sync(mask, v, 1) writes
// v and the lane it wants to read from, then waits until every lane named in `mask` has arrived at
// the same kind of operation with the same mask. The last lane to arrive computes every lane's
// answer and wakes the others. Answers are stored per lane, so a fast lane that runs on to its next
// shuffle cannot overwrite a value a slow lane has yet to read.
//
// Every function takes the caller's file and line as hidden default arguments, so errors such as
// a divergent barrier can name the source line where each thread waits.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "scheduler.h"

namespace minicnn_emu::detail {

// A shuffle that reads from a lane outside its mask gets this: NaN for float and double, -1 for
// integers (CUDA leaves the value undefined).
constexpr uint64_t kPoisonBits = ~uint64_t{0};

inline std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// The mask must name the calling lane and only lanes that exist in this (possibly partial) warp.
inline void check_mask(const char* name, unsigned mask, int index) {
  int lane = index % warpSize;
  int warp_threads = std::min(warpSize, cur_block().size() - (index - lane));
  if (((mask >> lane) & 1u) == 0) {
    throw std::runtime_error(std::string(name) + ": mask " + hex(mask) +
                             " does not include the calling lane " + std::to_string(lane));
  }
  if (warp_threads < warpSize && (mask >> warp_threads) != 0) {
    throw std::runtime_error(std::string(name) + ": mask " + hex(mask) +
                             " names lanes beyond the " + std::to_string(warp_threads) +
                             " threads of this warp (the block has " +
                             std::to_string(cur_block().size()) + " threads)");
  }
}

inline bool all_lanes_arrived(const EmuThread& t, int base) {
  for (unsigned m = t.mask; m != 0; m &= m - 1) {
    const EmuThread& u = cur_block().threads[base + __builtin_ctz(m)];
    if (u.state != ThreadState::kAtWarpOp || u.op != t.op || u.mask != t.mask) return false;
  }
  return true;
}

inline uint64_t lane_result(const EmuThread& u, int base, unsigned ballot) {
  switch (u.op) {
    case WarpOp::kShuffle:
      if (((u.mask >> u.src_lane) & 1u) == 0) return kPoisonBits;
      return cur_block().threads[base + u.src_lane].value;
    case WarpOp::kBallot:
      return ballot;
    case WarpOp::kAny:
      return ballot != 0;
    case WarpOp::kAll:
      return ballot == u.mask;
    case WarpOp::kSync:
      return 0;
  }
  return 0;
}

// Run by the last lane to arrive: compute every lane's answer, wake the others.
inline void complete_warp_op(EmuThread& last, int base) {
  unsigned ballot = 0;
  for (unsigned m = last.mask; m != 0; m &= m - 1) {
    int lane = __builtin_ctz(m);
    if (cur_block().threads[base + lane].value != 0) ballot |= 1u << lane;
  }
  for (unsigned m = last.mask; m != 0; m &= m - 1) {
    EmuThread& u = cur_block().threads[base + __builtin_ctz(m)];
    u.result = lane_result(u, base, ballot);
  }
  if (last.op == WarpOp::kSync) check_warp_sync(base, last.mask);  // __syncwarp orders memory
  wake_in_schedule_order([&](EmuThread& u) {
    int i = cur_block().index_of(u);
    return i >= base && i < base + warpSize && ((last.mask >> (i - base)) & 1u) && &u != &last;
  });
  last.state = ThreadState::kRunning;
}

// Bring `value` to a warp operation; returns this lane's answer.
inline uint64_t warp_exchange(WarpOp op, const char* name, unsigned mask, uint64_t value,
                              int src_lane, Site site) {
  EmuCode paused;  // the race checker ignores the emulator's own memory
  EmuThread& t = running_thread(name);
  int index = cur_block().index_of(t);
  check_mask(name, mask, index);
  t.state = ThreadState::kAtWarpOp;
  t.op = op;
  t.op_name = name;
  t.site = site;
  t.mask = mask;
  t.value = value;
  t.src_lane = src_lane;
  int base = index - index % warpSize;
  if (all_lanes_arrived(t, base)) {
    complete_warp_op(t, base);
  } else {
    wait_running_thread();
  }
  return t.result;
}

inline int lane_of_running_thread(const char* name) {
  return cur_block().index_of(running_thread(name)) % warpSize;
}

inline void check_width(const char* name, int width) {
  if (width < 1 || width > warpSize || (width & (width - 1)) != 0) {
    throw std::runtime_error(std::string(name) + ": width " + std::to_string(width) +
                             " is not a power of two in [1, 32]");
  }
}

// The shuffles move the bits of any arithmetic type of up to 8 bytes. `source(lane)` is the lane
// whose `var` lane reads (its own lane: it keeps its value); the variants differ only there.
template <class T, class Source>
T shuffle(const char* name, unsigned mask, T var, int width, Source source, Site site) {
  static_assert(std::is_arithmetic<T>::value && sizeof(T) <= 8, "shuffles take arithmetic types");
  EmuCode paused;
  check_width(name, width);
  int src_lane = source(lane_of_running_thread(name));
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_exchange(WarpOp::kShuffle, name, mask, bits, src_lane, site);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace minicnn_emu::detail

// ---- barriers -----------------------------------------------------------------------------------
#define MINICNN_EMU_SITE_PARAMS const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define MINICNN_EMU_SITE        \
  ::minicnn_emu::detail::Site { \
    file, line                  \
  }

inline void __syncthreads(MINICNN_EMU_SITE_PARAMS) {
  ::minicnn_emu::detail::EmuCode paused;
  ::minicnn_emu::detail::block_barrier("__syncthreads()", 0, MINICNN_EMU_SITE);
}
inline int __syncthreads_count(int predicate, MINICNN_EMU_SITE_PARAMS) {
  ::minicnn_emu::detail::EmuCode paused;
  return ::minicnn_emu::detail::block_barrier("__syncthreads_count()", predicate, MINICNN_EMU_SITE);
}
inline int __syncthreads_and(int predicate, MINICNN_EMU_SITE_PARAMS) {
  ::minicnn_emu::detail::EmuCode paused;
  return ::minicnn_emu::detail::block_barrier("__syncthreads_and()", predicate, MINICNN_EMU_SITE) ==
         ::minicnn_emu::detail::cur_block().size();
}
inline int __syncthreads_or(int predicate, MINICNN_EMU_SITE_PARAMS) {
  ::minicnn_emu::detail::EmuCode paused;
  return ::minicnn_emu::detail::block_barrier("__syncthreads_or()", predicate, MINICNN_EMU_SITE) !=
         0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu, MINICNN_EMU_SITE_PARAMS) {
  using namespace ::minicnn_emu::detail;
  warp_exchange(WarpOp::kSync, "__syncwarp()", mask, 0, 0, MINICNN_EMU_SITE);
}

// ---- shuffles: which lane each variant reads, as in the CUDA Programming Guide ------------------
// `width` splits the warp into segments of `width` lanes; lanes read within their own segment.
// MINICNN_EMU_SHUFFLE(name, type of its 3rd argument `arg`, the lane that `lane` reads)
#define MINICNN_EMU_SHUFFLE(name, Arg, source)                                           \
  template <class T>                                                                     \
  T name(unsigned mask, T var, Arg arg, int width = warpSize, MINICNN_EMU_SITE_PARAMS) { \
    auto source_of = [&](int lane) { return source; };                                   \
    return ::minicnn_emu::detail::shuffle(#name "()", mask, var, width, source_of,       \
                                          MINICNN_EMU_SITE);                             \
  }
MINICNN_EMU_SHUFFLE(__shfl_sync, int, (lane & ~(width - 1)) + (arg & (width - 1)))
MINICNN_EMU_SHUFFLE(__shfl_up_sync, unsigned,
                    (lane & (width - 1)) >= static_cast<int>(arg) ? lane - static_cast<int>(arg)
                                                                  : lane)
MINICNN_EMU_SHUFFLE(__shfl_down_sync, unsigned,
                    (lane & (width - 1)) + arg < static_cast<unsigned>(width)
                        ? lane + static_cast<int>(arg)
                        : lane)
// xor: a lane whose partner lies in a later segment keeps its own value
MINICNN_EMU_SHUFFLE(__shfl_xor_sync, int,
                    (lane ^ arg) < 0 || (lane ^ arg) >= (lane & ~(width - 1)) + width ? lane
                                                                                      : lane ^ arg)
#undef MINICNN_EMU_SHUFFLE

// ---- votes --------------------------------------------------------------------------------------
inline unsigned __ballot_sync(unsigned mask, int predicate, MINICNN_EMU_SITE_PARAMS) {
  using namespace ::minicnn_emu::detail;
  return static_cast<unsigned>(
      warp_exchange(WarpOp::kBallot, "__ballot_sync()", mask, predicate != 0, 0, MINICNN_EMU_SITE));
}
inline int __any_sync(unsigned mask, int predicate, MINICNN_EMU_SITE_PARAMS) {
  using namespace ::minicnn_emu::detail;
  return static_cast<int>(
      warp_exchange(WarpOp::kAny, "__any_sync()", mask, predicate != 0, 0, MINICNN_EMU_SITE));
}
inline int __all_sync(unsigned mask, int predicate, MINICNN_EMU_SITE_PARAMS) {
  using namespace ::minicnn_emu::detail;
  return static_cast<int>(
      warp_exchange(WarpOp::kAll, "__all_sync()", mask, predicate != 0, 0, MINICNN_EMU_SITE));
}

// The lanes of the caller's warp that have not exited (not a synchronisation point).
inline unsigned __activemask() {
  using namespace ::minicnn_emu::detail;
  EmuCode paused;
  const Block& b = cur_block();
  int index = b.index_of(running_thread("__activemask()"));
  int base = index - index % warpSize;
  unsigned active = 0;
  for (int lane = 0; lane < warpSize && base + lane < b.size(); ++lane) {
    if (b.threads[base + lane].state != ThreadState::kExited) active |= 1u << lane;
  }
  return active;
}

#undef MINICNN_EMU_SITE_PARAMS
#undef MINICNN_EMU_SITE
