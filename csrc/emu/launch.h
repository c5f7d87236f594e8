// Kernel launches: LAUNCH(kernel, grid, block, smem, stream)(args...) under the emulator.
//
// Part of the CUDA emulator (see cuda_emu.h). A launch checks the configuration as CUDA does,
// copies the arguments once (each CUDA thread then gets its own copy, as kernel parameters are
// passed by value), and runs the blocks in the schedule's block order on the block workers (OS
// threads, pool.h), each block with the scheduler. It returns when the
// whole grid has run; the first error of any thread is rethrown as std::runtime_error
// "kernel <name>: block (x,y,z) thread (x,y,z): <what>".
#pragma once

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "pool.h"
#include "scheduler.h"

namespace minicnn_emu {
namespace detail {

struct LaunchConfig {
  const char* name;
  const void* kernel;  // identifies the kernel for cudaFuncSetAttribute opt-ins
  dim3 grid, block;
  size_t smem;  // bytes of dynamic shared memory
};

inline std::string dims(dim3 d) {
  return coords(uint3(d));
}

inline size_t max_dynamic_shared_bytes(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_smem_opt_ins.mutex);
  auto it = g_smem_opt_ins.max_dynamic_bytes.find(kernel);
  return it == g_smem_opt_ins.max_dynamic_bytes.end() ? kDefaultMaxDynamicSharedBytes : it->second;
}

// What CUDA would reject with cudaErrorInvalidConfiguration; "" when the configuration is valid.
inline std::string config_problem(const LaunchConfig& c) {
  uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0)
    return "gridDim " + dims(c.grid) + " has a zero dimension";
  if (threads == 0) return "blockDim " + dims(c.block) + " has a zero dimension";
  if (threads > 1024) {
    return "blockDim " + dims(c.block) + " has " + std::to_string(threads) +
           " threads, more than 1024";
  }
  if (c.block.z > 64) return "blockDim " + dims(c.block) + ": z is limited to 64";
  if (c.grid.x > 2147483647u) return "gridDim " + dims(c.grid) + ": x is limited to 2^31 - 1";
  if (c.grid.y > 65535 || c.grid.z > 65535)
    return "gridDim " + dims(c.grid) + ": y and z are limited to 65535";
  size_t limit = max_dynamic_shared_bytes(c.kernel);
  if (c.smem > limit) {
    return std::to_string(c.smem) +
           " bytes of dynamic shared memory exceed this kernel's limit of " +
           std::to_string(limit) +
           " (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
           "bytes) raises it up to 227 KiB)";
  }
  return "";
}

// ---- dynamic shared memory ---------------------------------------------------------------------
// One buffer per block worker, refilled with 0xFF bytes before every block: NaN when read as float
// or double, -1 as an integer, so reading what the block never wrote shows up. Under ASan the
// buffer has exactly `smem` bytes and ASan reports overruns at their source line; otherwise 4 KiB
// of canary behind it are checked after every block of a kernel that used DYN_SHARED.
#ifdef MINICNN_EMU_ASAN
constexpr size_t kCanaryBytes = 0;
#else
constexpr size_t kCanaryBytes = 4096;
#endif
constexpr unsigned char kCanary = 0xA5;
constexpr std::align_val_t kSharedAlignment{64};

inline void free_dynamic_shared(Worker& w) {
  ::operator delete(w.dyn_smem, kSharedAlignment);
  w.dyn_smem = nullptr;
  w.dyn_smem_bytes = 0;
}

// Give this worker `bytes` of dynamic shared memory, poisoned, with the canary behind it.
inline void prepare_dynamic_shared(Worker& w, size_t bytes) {
  if (w.dyn_smem == nullptr || w.dyn_smem_bytes != bytes) {  // exact size: ASan sees overruns
    free_dynamic_shared(w);
    w.dyn_smem =
        static_cast<unsigned char*>(::operator new(bytes + kCanaryBytes, kSharedAlignment));
    w.dyn_smem_bytes = bytes;
    std::memset(w.dyn_smem + bytes, kCanary, kCanaryBytes);
  }
  if (bytes != 0) std::memset(w.dyn_smem, 0xFF, bytes);
  w.dyn_smem_used = false;
}

inline bool dynamic_shared_overrun(Worker& w) {
  if (!w.dyn_smem_used) return false;
  for (size_t i = 0; i < kCanaryBytes; ++i) {
    if (w.dyn_smem[w.dyn_smem_bytes + i] != kCanary) {
      std::memset(w.dyn_smem + w.dyn_smem_bytes, kCanary, kCanaryBytes);
      return true;
    }
  }
  return false;
}

// ---- running a grid -----------------------------------------------------------------------------
inline thread_local bool t_in_launch = false;  // to refuse a launch from inside a kernel
inline uint32_t g_launch_count = 0;

inline void lay_out_threads(Block& b, dim3 block) {
  size_t n = size_t{block.x} * block.y * block.z;
  b.threads.assign(n, EmuThread{});
  b.workers.assign(n, Fiber{});
  b.ready.assign(n, 0);
  size_t i = 0;
  for (unsigned z = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x) b.threads[i++].idx = uint3{x, y, z};
}

inline uint3 block_coords(uint32_t linear, dim3 grid) {
  return uint3{linear % grid.x, linear / grid.x % grid.y, linear / (grid.x * grid.y)};
}

// Run the block at `position` of the block order on this OS thread.
inline void run_one_block(Worker& w, Launch& l, uint64_t position) {
  uint32_t linear = l.block_order[position];
  blockIdx = block_coords(linear, l.grid);
  w.position = position;
  w.block.rng = Rng{l.schedule.seed * 0x100000001B3ull + (uint64_t{l.id} << 32) + linear};
  prepare_dynamic_shared(w, l.dyn_smem_bytes);
  run_block();
  if (dynamic_shared_overrun(w)) {
    w.block_failed = false;  // a block-level error, after the threads' own
    record_error(nullptr, "wrote past the end of its " + std::to_string(w.dyn_smem_bytes) +
                              " bytes of dynamic shared memory");
  }
}

// One OS thread's share of a launch: take blocks from the order until none is left (or an
// earlier block failed: blocks before a failed one still run, so the reported error is the same
// whichever OS thread was faster).
inline void run_blocks_here(Launch& l) {
  Worker& w = worker();
  bool was_in_launch = t_in_launch;
  t_in_launch = true;
  gridDim = l.grid;
  blockDim = l.block;
  lay_out_threads(w.block, l.block);
  for (;;) {
    uint64_t position = l.next_position.fetch_add(1);
    if (position >= l.block_order.size() || position > l.failed_position.load()) break;
    run_one_block(w, l, position);
  }
  if (l.error.failed) w.stacks.unpoison_all();  // abandoned frames leave ASan marks
  w.cur_thread = nullptr;
  t_in_launch = was_in_launch;
}

inline void order_blocks(Launch& l) {
  uint64_t n = uint64_t{l.grid.x} * l.grid.y * l.grid.z;
  std::vector<int> order;
  Rng rng{l.schedule.seed ^ (uint64_t{l.id} * 0x9E3779B97F4A7C15ull)};
  fill_order(order, static_cast<int>(n), l.schedule.blocks, rng);
  l.block_order.assign(order.begin(), order.end());
}

inline std::string error_message(const Launch& l) {
  const LaunchError& err = l.error;
  std::string where = "kernel " + std::string(l.kernel_name) + ": block " + coords(err.block);
  if (err.has_thread) where += " thread " + coords(err.thread);
  std::string text = where + ": " + err.what;
  bool stall = err.what.find("deadlock") != std::string::npos ||
               err.what.find("divergent") != std::string::npos;
  if (stall || l.schedule.threads != Order::kForward || l.schedule.blocks != Order::kForward) {
    text += " [schedule " + describe(l.schedule) + "]";
  }
  return text;
}

inline void run_grid(const LaunchConfig& c, void (*invoke)(const void*), const void* bound_args) {
  if (t_in_launch) {
    throw std::runtime_error(
        "kernel " + std::string(c.name) +
        ": launched from inside a kernel (dynamic parallelism is not emulated)");
  }
  std::string problem = config_problem(c);
  if (!problem.empty()) {
    throw std::runtime_error("kernel " + std::string(c.name) +
                             ": invalid launch configuration: " + problem);
  }
  Schedule schedule = current_schedule();
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  Launch l;
  l.kernel_name = c.name;
  l.invoke = invoke;
  l.bound_args = bound_args;
  l.grid = c.grid;
  l.block = c.block;
  l.dyn_smem_bytes = c.smem;
  l.schedule = schedule;
  l.id = ++g_launch_count;
  order_blocks(l);
  count(g_stats.launches);
  LaunchChecks checks(l);  // throws if the race checker can't start, saying why
  uint64_t blocks = l.block_order.size();
  int workers =
      static_cast<int>(std::min<uint64_t>(blocks, static_cast<uint64_t>(schedule.workers)));
  g_launch = &l;
  worker_pool().run(workers, [&l] { run_blocks_here(l); });
  g_launch = nullptr;
  if (l.error.failed) throw std::runtime_error(error_message(l));
  checks.finish();  // throws the race checker's findings
}

}  // namespace detail

// The object LAUNCH(...) evaluates to; calling it with the kernel's arguments runs the grid.
template <class... Params>
class KernelLaunch {
  static_assert(!(std::is_reference<Params>::value || ...),
                "CUDA kernels take their parameters by value");

 public:
  KernelLaunch(void (*kernel)(Params...), detail::LaunchConfig config)
      : kernel_(kernel), config_(config) {}

  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "wrong number of kernel arguments");
    const Bound bound{kernel_, std::tuple<Params...>(std::forward<Args>(args)...)};
    detail::run_grid(config_, &invoke, &bound);
  }

 private:
  struct Bound {
    void (*kernel)(Params...);
    std::tuple<Params...> args;
  };
  // Called once per CUDA thread: the kernel receives its own copy of every argument.
  static void invoke(const void* bound) {
    const Bound& b = *static_cast<const Bound*>(bound);
    std::apply(b.kernel, b.args);
  }

  void (*kernel_)(Params...);
  detail::LaunchConfig config_;
};

template <class... Params>
KernelLaunch<Params...> launch(void (*kernel)(Params...), const char* name, dim3 grid, dim3 block,
                               size_t smem, cudaStream_t /*stream: launches are synchronous*/) {
  return KernelLaunch<Params...>(
      kernel, detail::LaunchConfig{name, reinterpret_cast<const void*>(kernel), grid, block, smem});
}

// DYN_SHARED(T, name) in emulator mode: the launch's dynamic shared memory, as T*.
template <class T>
T* dynamic_shared() {
  // With smem = 0 this is a 0-byte buffer: fine to declare, an error to use (caught by ASan or the
  // canary check after the block), as in CUDA.
  detail::EmuCode paused;
  detail::Worker* w = detail::t_worker;
  if (w == nullptr || w->cur_thread == nullptr)
    throw std::logic_error("DYN_SHARED used outside a kernel");
  w->dyn_smem_used = true;
  return reinterpret_cast<T*>(w->dyn_smem);
}

}  // namespace minicnn_emu
