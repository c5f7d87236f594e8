// The race checker's runtime: shadow memory, the happens-before test, findings, and the __tsan_*
// functions that -fsanitize=thread instrumentation calls. Included by check.h when
// MINICNN_EMU_CHECK is defined; read check.h first.
#pragma once

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "check_report.h"

namespace minicnn_emu::detail {

#define MINICNN_EMU_HOOK __attribute__((no_sanitize_thread))

// ---- shadow memory ------------------------------------------------------------------------------
constexpr uintptr_t kPageBytes = 4096;  // application bytes per shadow page
// One Cell per 2-byte word: float16 / bfloat16 stores of neighbouring threads are not a race.
constexpr uintptr_t kWordBytes = 2;
constexpr uintptr_t kWordsPerPage = kPageBytes / kWordBytes;
constexpr size_t kMaxShadowPages = 2048;  // ~400 MiB of shadow (2-byte words): then start afresh

struct Cell {
  Access write;    // the last write (launch 0: none)
  Access read[2];  // reads since that write, of two different threads (and blocks, if any)
};

struct Shadow {
  std::mutex mutex;  // guards `pages`
  std::unordered_map<uintptr_t, Cell*> pages;
  uint64_t generation = 1;         // bumped when the pages are freed (thread caches then refill)
  unsigned char locks[4096] = {};  // spin locks, by word address
};
inline Shadow g_shadow;

// A small direct-mapped cache of page lookups per OS thread (a kernel touches a few pages at a time).
constexpr int kPageCacheEntries = 64;
struct PageCache {
  uint64_t generation[kPageCacheEntries] = {};
  uintptr_t page[kPageCacheEntries] = {};
  Cell* cells[kPageCacheEntries] = {};
};

MINICNN_EMU_HOOK inline Cell& shadow_cell(PageCache& cache, uintptr_t address) {
  uintptr_t page = address / kPageBytes;
  int slot = static_cast<int>((page ^ (page >> 6)) % kPageCacheEntries);
  uint64_t generation = __atomic_load_n(&g_shadow.generation, __ATOMIC_ACQUIRE);
  if (cache.generation[slot] != generation || cache.page[slot] != page ||
      cache.cells[slot] == nullptr) {
    std::lock_guard<std::mutex> lock(g_shadow.mutex);
    Cell*& cells = g_shadow.pages[page];
    if (cells == nullptr) cells = static_cast<Cell*>(std::calloc(kWordsPerPage, sizeof(Cell)));
    if (cells == nullptr) throw std::bad_alloc();
    cache.generation[slot] = generation;
    cache.page[slot] = page;
    cache.cells[slot] = cells;
  }
  return cache.cells[slot][address % kPageBytes / kWordBytes];
}

// Called between launches (no block runs): drop the shadow when it has grown large. Accesses of
// earlier launches are ordered before everything to come, so forgetting them loses nothing.
inline void trim_shadow() {
  std::lock_guard<std::mutex> lock(g_shadow.mutex);
  if (g_shadow.pages.size() < kMaxShadowPages) return;
  for (auto& entry : g_shadow.pages) std::free(entry.second);
  g_shadow.pages.clear();
  __atomic_add_fetch(&g_shadow.generation, 1, __ATOMIC_RELEASE);
}

MINICNN_EMU_HOOK inline void lock_word(uintptr_t address) {
  unsigned char* l = &g_shadow.locks[(address / kWordBytes) % sizeof g_shadow.locks];
  while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
    while (__atomic_load_n(l, __ATOMIC_RELAXED)) __builtin_ia32_pause();
  }
}
MINICNN_EMU_HOOK inline void unlock_word(uintptr_t address) {
  __atomic_store_n(&g_shadow.locks[(address / kWordBytes) % sizeof g_shadow.locks], 0,
                   __ATOMIC_RELEASE);
}

// ---- where an address lives ------------------------------------------------------------------------
enum class Space : uint8_t { kIgnore, kShared, kGlobal };

// This OS thread's instance of the module's TLS block: static __shared__ arrays live there (types.h),
// next to the built-in variables, which are excluded.
struct TlsRanges {
  bool known = false;
  uintptr_t lo = 0, size = 0;
  uintptr_t excluded[4] = {};
  uintptr_t excluded_size[4] = {};
};

// Everything the checker keeps per OS thread, in one thread_local: in a shared library every
// thread_local access is a call (__tls_get_addr), so the hooks make one.
struct CheckThread {
  bool on = false;          // kernel code is running: its accesses are checked
  bool probe_seen = false;  // the start-up self-test saw its access
  Worker* worker = nullptr;
  TlsRanges tls;
  PageCache cache;
};
inline thread_local CheckThread t_check;

inline EmuCode::EmuCode() : was_on(t_check.on) {
  t_check.on = false;
}
inline EmuCode::~EmuCode() {
  t_check.on = was_on;
}
inline KernelCode::KernelCode() {
  t_check.on = true;
}
inline KernelCode::~KernelCode() {
  t_check.on = false;
}

inline int find_tls_segment(dl_phdr_info* info, size_t, void* data) {
  auto* want = static_cast<std::pair<uintptr_t, TlsRanges*>*>(data);
  bool has_tls = false, contains = false;
  size_t tls_size = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_TLS) has_tls = true, tls_size = ph.p_memsz;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && want->first - lo < ph.p_memsz) contains = true;
  }
  if (!contains) return 0;
  if (has_tls && info->dlpi_tls_data != nullptr) {
    want->second->lo = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
    want->second->size = tls_size;
  }
  return 1;
}

inline void learn_tls_ranges() {
  TlsRanges& r = t_check.tls;
  if (r.known) return;
  t_check.probe_seen = t_check.probe_seen;  // make sure this thread's TLS block exists
  std::pair<uintptr_t, TlsRanges*> want{reinterpret_cast<uintptr_t>(&find_tls_segment), &r};
  dl_iterate_phdr(find_tls_segment, &want);
  if (r.size == 0)
    throw std::runtime_error(
        "race checker: cannot find this module's thread-local storage "
        "(where static __shared__ arrays live); dl_iterate_phdr gave none");
  const void* builtins[4] = {&threadIdx, &blockIdx, &blockDim, &gridDim};
  const size_t sizes[4] = {sizeof threadIdx, sizeof blockIdx, sizeof blockDim, sizeof gridDim};
  for (int i = 0; i < 4; ++i)
    r.excluded[i] = reinterpret_cast<uintptr_t>(builtins[i]), r.excluded_size[i] = sizes[i];
  r.known = true;
}

MINICNN_EMU_HOOK inline Space classify(const CheckThread& c, const Worker& w, uintptr_t a) {
  if (a - reinterpret_cast<uintptr_t>(w.dyn_smem) < w.dyn_smem_bytes) return Space::kShared;
  const TlsRanges& r = c.tls;
  if (a - r.lo < r.size) {
    for (int i = 0; i < 4; ++i) {
      if (a - r.excluded[i] < r.excluded_size[i]) return Space::kIgnore;
    }
    return Space::kShared;
  }
  return Space::kGlobal;
}

// ---- the happens-before test -------------------------------------------------------------------------
// Are `p` (earlier in this launch) and `c` (now) unordered and conflicting? See check.h.
MINICNN_EMU_HOOK inline Unordered conflict(const Access& p, const Access& c, const Block& b) {
  // Atomics don't race with atomics, nor with plain reads (the word is read whole: the classic
  // `old = *p; while (atomicCAS(p, old, ...) != old)` loop); a plain write next to one does.
  if (p.atomic || c.atomic) {
    if ((p.atomic && c.atomic) || (p.atomic && !c.write) || (c.atomic && !p.write))
      return Unordered::kNo;
  }
  if (!(p.write || c.write)) return Unordered::kNo;
  if (p.block != c.block) return Unordered::kBlocks;
  if (p.tid == c.tid || p.epoch != c.epoch) return Unordered::kNo;
  if (p.tid / 32 != c.tid / 32) return Unordered::kBarrier;
  if (b.clocks[size_t{c.tid} * 32 + p.tid % 32] > p.clock) return Unordered::kNo;
  return Unordered::kWarp;
}

// Keep reads of two different threads, and of two different blocks once there are such, so that
// any later write from elsewhere meets at least one read it conflicts with.
using LiveFn = bool (*)(const Access&, const Access&);
MINICNN_EMU_HOOK inline void remember_read(Cell& cell, const Access& c, LiveFn live) {
  Access* r = cell.read;
  if (live(r[0], c) && live(r[1], c) && r[0].block != r[1].block) return;  // diverse enough already
  for (int i = 0; i < 2; ++i) {
    if (live(r[i], c) && r[i].block == c.block && r[i].tid == c.tid) return void(r[i] = c);
  }
  for (int i = 0; i < 2; ++i) {
    if (!live(r[i], c)) return void(r[i] = c);
  }
  if (r[0].block != r[1].block && r[0].block == c.block) return void(r[0] = c);
  r[1] = c;
}

template <Space kSpace>
MINICNN_EMU_HOOK inline bool live(const Access& p, const Access& c) {
  // shared memory dies with its block; global memory lives through the launch
  return p.launch == c.launch && (kSpace == Space::kGlobal || p.block == c.block);
}

template <Space kSpace>
MINICNN_EMU_HOOK inline void check_word(CheckThread& t, uintptr_t word, const Access& c,
                                        const Block& b) {
  constexpr bool kShared = kSpace == Space::kShared;
  Cell& cell = shadow_cell(t.cache, word);
  if (!kShared) lock_word(word);  // a block's shared memory is touched by its OS thread only
  Finding found[3];
  int n = 0;
  auto note = [&](FindingKind kind, Unordered why, const Access& before) {
    if (n < 3) found[n++] = Finding{kind, why, kShared, word, c, before};
  };
  if (!c.write && kShared && !live<kSpace>(cell.write, c))
    note(FindingKind::kUninitialised, Unordered::kNo, Access{});
  if (live<kSpace>(cell.write, c)) {
    if (Unordered u = conflict(cell.write, c, b); u != Unordered::kNo)
      note(FindingKind::kRace, u, cell.write);
  }
  if (c.write) {
    for (const Access& r : cell.read) {
      if (!live<kSpace>(r, c)) continue;
      if (Unordered u = conflict(r, c, b); u != Unordered::kNo) note(FindingKind::kRace, u, r);
    }
    cell.write = c;
    cell.read[0].launch = cell.read[1].launch = 0;
  } else {
    remember_read(cell, c, &live<kSpace>);
  }
  if (!kShared) unlock_word(word);
  for (int i = 0; i < n; ++i) add_finding(found[i]);
}

// An access of `size` bytes at `a` by the running CUDA thread.
MINICNN_EMU_HOOK inline void check_access(CheckThread& t, Worker& w, uintptr_t a, size_t size,
                                          bool write, bool atomic, const void* pc) {
  Space space = classify(t, w, a);
  if (space == Space::kIgnore || w.cur_thread == nullptr) return;
  const Block& b = w.block;
  Access c{};
  c.pc = reinterpret_cast<uintptr_t>(pc);
  c.launch = g_launch->id;
  c.block = g_launch->block_order[w.position];
  c.epoch = b.epoch;
  c.tid = static_cast<uint16_t>(b.index_of(*w.cur_thread));
  c.clock = b.clocks[size_t{c.tid} * 32 + c.tid % 32];
  c.write = write;
  c.atomic = atomic;
  for (uintptr_t word = a & ~(kWordBytes - 1); word < a + size; word += kWordBytes) {
    if (space == Space::kShared)
      check_word<Space::kShared>(t, word, c, b);
    else
      check_word<Space::kGlobal>(t, word, c, b);
  }
}

MINICNN_EMU_HOOK inline void on_access(CheckThread& t, const void* p, size_t size, bool write,
                                       const void* pc) {
  Worker& w = *t.worker;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const Fiber& f = *w.cur_fiber;
  if (a - reinterpret_cast<uintptr_t>(f.stack_lo) < f.stack_size) return;  // the thread's own stack
  t.on = false;  // the checker's own accesses (and the STL's, in there) are not checked
  check_access(t, w, a, size, write, false, pc);
  t.on = true;
}

// ---- what the scheduler and the atomics tell the checker ------------------------------------------
inline void check_block_start(Block& b) {
  learn_tls_ranges();
  t_check.worker = t_worker;
  b.clocks.assign(b.threads.size() * 32, 0);
}

// A __syncwarp completed for the lanes of `mask` (warp starting at thread index `base`): each lane
// ticks its own clock, then all take the element-wise maximum.
inline void check_warp_sync(int base, unsigned mask) {
  Block& b = t_worker->block;
  uint32_t joined[32] = {};
  for (unsigned m = mask; m != 0; m &= m - 1) {
    int lane = __builtin_ctz(m);
    uint32_t* clock = &b.clocks[size_t(base + lane) * 32];
    ++clock[lane];
    for (int j = 0; j < 32; ++j) joined[j] = std::max(joined[j], clock[j]);
  }
  for (unsigned m = mask; m != 0; m &= m - 1) {
    std::memcpy(&b.clocks[size_t(base + __builtin_ctz(m)) * 32], joined, sizeof joined);
  }
}

inline void check_atomic(const void* address, size_t size, const void* pc) {
  Worker* w = t_worker;
  if (w == nullptr || w->cur_thread == nullptr) return;
  uintptr_t a = reinterpret_cast<uintptr_t>(address);
  const Fiber& f = *w->cur_fiber;
  if (a - reinterpret_cast<uintptr_t>(f.stack_lo) < f.stack_size) return;
  check_access(t_check, *w, a, size, true, true, pc);
}

// ---- start-up self-test: does the instrumentation reach these functions? ---------------------------
inline int g_probe_word = 0;
__attribute__((noinline)) inline void probe_access() {  // instrumented: calls __tsan_read4
  int v = g_probe_word;
  asm volatile("" : : "r"(v));
}

inline void check_checker_works() {
  static bool ok = false;
  if (ok) return;
  // GCC takes the instrumentation calls for side-effect free: call through a volatile pointer and
  // read the result after a compiler barrier, so that the probe is neither skipped nor assumed.
  void (*volatile probe)() = &probe_access;
  t_check.probe_seen = false;
  g_probe_active = true;
  asm volatile("" ::: "memory");
  probe();
  asm volatile("" ::: "memory");
  g_probe_active = false;
  if (!__atomic_load_n(&t_check.probe_seen, __ATOMIC_SEQ_CST)) {
    throw std::runtime_error(
        "race checker: the compiler's -fsanitize=thread instrumentation does not reach the checker "
        "(is ThreadSanitizer's runtime libtsan loaded, e.g. by LD_PRELOAD? The checker replaces "
        "it: "
        "unset LD_PRELOAD)");
  }
  require_addr2line();
  ok = true;
}

inline LaunchChecks::LaunchChecks(Launch& l) : launch(l) {
  check_checker_works();
  trim_shadow();
  begin_findings();
}

inline void LaunchChecks::finish() {
  std::string text = end_findings(launch);
  if (!text.empty()) throw std::runtime_error(text);
}

}  // namespace minicnn_emu::detail

// ---- the functions -fsanitize=thread calls ------------------------------------------------------------
#include "check_hooks.h"
