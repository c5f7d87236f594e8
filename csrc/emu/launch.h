// Kernel launches: LAUNCH(kernel, grid, block, smem, stream)(args...) under the emulator.
//
// Part of the CUDA emulator (see cuda_emu.h). A launch checks the configuration as CUDA does,
// copies the arguments once (each CUDA thread then gets its own copy, as kernel parameters are
// passed by value), and runs the blocks one after another with the scheduler. It returns when the
// whole grid has run; the first error of any thread is rethrown as std::runtime_error
// "kernel <name>: block (x,y,z) thread (x,y,z): <what>".
#pragma once

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "scheduler.h"

namespace minicnn_emu {
namespace detail {

struct LaunchConfig {
  const char* name;
  const void* kernel;  // identifies the kernel for cudaFuncSetAttribute opt-ins
  dim3 grid, block;
  size_t smem;         // bytes of dynamic shared memory
};

inline std::string dims(dim3 d) { return coords(uint3(d)); }

inline size_t max_dynamic_shared_bytes(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_smem_opt_ins.mutex);
  auto it = g_smem_opt_ins.max_dynamic_bytes.find(kernel);
  return it == g_smem_opt_ins.max_dynamic_bytes.end() ? kDefaultMaxDynamicSharedBytes : it->second;
}

// What CUDA would reject with cudaErrorInvalidConfiguration; "" when the configuration is valid.
inline std::string config_problem(const LaunchConfig& c) {
  uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0) return "gridDim " + dims(c.grid) + " has a zero dimension";
  if (threads == 0) return "blockDim " + dims(c.block) + " has a zero dimension";
  if (threads > 1024) {
    return "blockDim " + dims(c.block) + " has " + std::to_string(threads) + " threads, more than 1024";
  }
  if (c.block.z > 64) return "blockDim " + dims(c.block) + ": z is limited to 64";
  if (c.grid.x > 2147483647u) return "gridDim " + dims(c.grid) + ": x is limited to 2^31 - 1";
  if (c.grid.y > 65535 || c.grid.z > 65535) return "gridDim " + dims(c.grid) + ": y and z are limited to 65535";
  size_t limit = max_dynamic_shared_bytes(c.kernel);
  if (c.smem > limit) {
    return std::to_string(c.smem) + " bytes of dynamic shared memory exceed this kernel's limit of " +
           std::to_string(limit) + " (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
           "bytes) raises it up to 227 KiB)";
  }
  return "";
}

// ---- dynamic shared memory ---------------------------------------------------------------------
// One buffer per launch, refilled with 0xFF bytes before every block: NaN when read as float or
// double, -1 as an integer, so reading what the block never wrote shows up. Under ASan the buffer
// has exactly `smem` bytes and ASan reports overruns at their source line; otherwise 4 KiB of
// canary behind it are checked after every block of a kernel that used DYN_SHARED.
#ifdef MINICNN_EMU_ASAN
constexpr size_t kCanaryBytes = 0;
#else
constexpr size_t kCanaryBytes = 4096;
#endif
constexpr unsigned char kCanary = 0xA5;
constexpr std::align_val_t kSharedAlignment{64};

inline void allocate_dynamic_shared(size_t bytes) {
  auto* p = static_cast<unsigned char*>(::operator new(bytes + kCanaryBytes, kSharedAlignment));
  std::memset(p + bytes, kCanary, kCanaryBytes);
  g_emu.dyn_smem = p;
  g_emu.dyn_smem_bytes = bytes;
  g_emu.dyn_smem_used = false;
}

inline void free_dynamic_shared() {
  ::operator delete(g_emu.dyn_smem, kSharedAlignment);
  g_emu.dyn_smem = nullptr;
  g_emu.dyn_smem_bytes = 0;
}

inline bool dynamic_shared_overrun() {
  if (!g_emu.dyn_smem_used) return false;
  for (size_t i = 0; i < kCanaryBytes; ++i) {
    if (g_emu.dyn_smem[g_emu.dyn_smem_bytes + i] != kCanary) return true;
  }
  return false;
}

// ---- running a grid -----------------------------------------------------------------------------
inline thread_local bool t_in_launch = false;  // to refuse a launch from inside a kernel

// Holds the launch lock and the launch's state for the duration of one launch.
class LaunchScope {
 public:
  LaunchScope(const LaunchConfig& c, void (*invoke)(const void*), const void* bound_args)
      : lock_(g_emu.launch_mutex) {
    g_emu.kernel_name = c.name;
    g_emu.invoke = invoke;
    g_emu.bound_args = bound_args;
    g_emu.error = LaunchError{};
    gridDim = c.grid;
    blockDim = c.block;
    lay_out_threads(c.block);
    allocate_dynamic_shared(c.smem);
    ++g_emu.stats.launches;
    t_in_launch = true;
  }
  ~LaunchScope() {
    free_dynamic_shared();
    if (g_emu.error.failed) g_emu.stacks.unpoison_all();  // abandoned frames leave ASan marks
    g_emu.cur_thread = nullptr;
    g_emu.invoke = nullptr;
    g_emu.bound_args = nullptr;
    t_in_launch = false;
  }
  LaunchScope(const LaunchScope&) = delete;
  LaunchScope& operator=(const LaunchScope&) = delete;

 private:
  static void lay_out_threads(dim3 block) {
    Block& b = g_emu.block;
    size_t n = size_t{block.x} * block.y * block.z;
    b.threads.assign(n, EmuThread{});
    b.workers.assign(n, Fiber{});
    b.ready.assign(n, 0);
    size_t i = 0;
    for (unsigned z = 0; z < block.z; ++z)
      for (unsigned y = 0; y < block.y; ++y)
        for (unsigned x = 0; x < block.x; ++x) b.threads[i++].idx = uint3{x, y, z};
  }

  std::lock_guard<std::mutex> lock_;
};

inline std::string error_message(const char* kernel, const LaunchError& err) {
  std::string where = "kernel " + std::string(kernel) + ": block " + coords(err.block);
  if (err.has_thread) where += " thread " + coords(err.thread);
  return where + ": " + err.what;
}

inline void run_blocks(dim3 grid) {
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, z};
        if (g_emu.dyn_smem_bytes != 0) std::memset(g_emu.dyn_smem, 0xFF, g_emu.dyn_smem_bytes);
        run_block();
        if (dynamic_shared_overrun()) {
          record_error(nullptr, "wrote past the end of its " + std::to_string(g_emu.dyn_smem_bytes) +
                                    " bytes of dynamic shared memory");
        }
        if (g_emu.error.failed) return;
      }
}

inline void run_grid(const LaunchConfig& c, void (*invoke)(const void*), const void* bound_args) {
  if (t_in_launch) {
    throw std::runtime_error("kernel " + std::string(c.name) +
                             ": launched from inside a kernel (dynamic parallelism is not emulated)");
  }
  std::string problem = config_problem(c);
  if (!problem.empty()) {
    throw std::runtime_error("kernel " + std::string(c.name) + ": invalid launch configuration: " + problem);
  }
  LaunchScope scope(c, invoke, bound_args);
  run_blocks(c.grid);
  if (g_emu.error.failed) throw std::runtime_error(error_message(c.name, g_emu.error));
}

}  // namespace detail

// The object LAUNCH(...) evaluates to; calling it with the kernel's arguments runs the grid.
template <class... Params>
class KernelLaunch {
  static_assert(!(std::is_reference<Params>::value || ...), "CUDA kernels take their parameters by value");

 public:
  KernelLaunch(void (*kernel)(Params...), detail::LaunchConfig config) : kernel_(kernel), config_(config) {}

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
KernelLaunch<Params...> launch(void (*kernel)(Params...), const char* name, dim3 grid, dim3 block, size_t smem,
                               cudaStream_t /*stream: launches are synchronous*/) {
  return KernelLaunch<Params...>(kernel, detail::LaunchConfig{name, reinterpret_cast<const void*>(kernel), grid,
                                                              block, smem});
}

// DYN_SHARED(T, name) in emulator mode: the launch's dynamic shared memory, as T*.
template <class T>
T* dynamic_shared() {
  // With smem = 0 this is a 0-byte buffer: fine to declare, an error to use (caught by ASan or the
  // canary check after the block), as in CUDA.
  if (detail::g_emu.cur_thread == nullptr) throw std::logic_error("DYN_SHARED used outside a kernel");
  detail::g_emu.dyn_smem_used = true;
  return reinterpret_cast<T*>(detail::g_emu.dyn_smem);
}

}  // namespace minicnn_emu
