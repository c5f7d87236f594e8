// CUDA device functions for the host compiler: atomics, fast-math intrinsics, bit tricks.
//
// Part of the CUDA emulator (see cuda_emu.h). The float functions kernels use (expf, sqrtf, fmaxf,
// ...) already exist in <math.h>; this adds the CUDA-only ones.
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "scheduler.h"

// ---- atomics --------------------------------------------------------------------------------------
// Blocks run concurrently on several OS threads, so an atomic is a real atomic read-modify-write
// (a compare-and-swap loop, which serves float and double too). The race checker records it as an
// atomic access: atomics never race with each other, but a plain access to the same word does.
#ifdef MINICNN_EMU_CHECK
#define MINICNN_EMU_ATOMIC_INLINE inline __attribute__((noinline))  // the checker names the caller
#else
#define MINICNN_EMU_ATOMIC_INLINE inline
#endif
namespace minicnn_emu::detail {
template <class T, class Update>
__attribute__((always_inline)) inline T atomic_update(T* address, Update update) {
  EmuCode paused;
  check_atomic(address, sizeof(T), __builtin_return_address(0));
  T old, desired;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  do {
    desired = update(old);
  } while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED));
  return old;
}
}  // namespace minicnn_emu::detail

#define MINICNN_EMU_ATOMIC(name, T, new_value)                         \
  MINICNN_EMU_ATOMIC_INLINE T name(T* address, T val) {                \
    return ::minicnn_emu::detail::atomic_update(                       \
        address, [val]([[maybe_unused]] T old) { return new_value; }); \
  }
// Integer additions wrap around like the hardware's (computed unsigned: no signed overflow).
MINICNN_EMU_ATOMIC(atomicAdd, int,
                   static_cast<int>(static_cast<unsigned>(old) + static_cast<unsigned>(val)))
MINICNN_EMU_ATOMIC(atomicAdd, unsigned int, old + val)
MINICNN_EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
MINICNN_EMU_ATOMIC(atomicAdd, float, old + val)
MINICNN_EMU_ATOMIC(atomicAdd, double, old + val)
MINICNN_EMU_ATOMIC(atomicSub, int,
                   static_cast<int>(static_cast<unsigned>(old) - static_cast<unsigned>(val)))
MINICNN_EMU_ATOMIC(atomicSub, unsigned int, old - val)
MINICNN_EMU_ATOMIC(atomicExch, int, val)
MINICNN_EMU_ATOMIC(atomicExch, unsigned int, val)
MINICNN_EMU_ATOMIC(atomicExch, unsigned long long, val)
MINICNN_EMU_ATOMIC(atomicExch, float, val)
MINICNN_EMU_ATOMIC(atomicMax, int, old > val ? old : val)
MINICNN_EMU_ATOMIC(atomicMax, unsigned int, old > val ? old : val)
MINICNN_EMU_ATOMIC(atomicMax, long long, old > val ? old : val)
MINICNN_EMU_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
MINICNN_EMU_ATOMIC(atomicMin, int, old < val ? old : val)
MINICNN_EMU_ATOMIC(atomicMin, unsigned int, old < val ? old : val)
MINICNN_EMU_ATOMIC(atomicMin, long long, old < val ? old : val)
MINICNN_EMU_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
MINICNN_EMU_ATOMIC(atomicAnd, int, old& val)
MINICNN_EMU_ATOMIC(atomicAnd, unsigned int, old& val)
MINICNN_EMU_ATOMIC(atomicAnd, unsigned long long, old& val)
MINICNN_EMU_ATOMIC(atomicOr, int, old | val)
MINICNN_EMU_ATOMIC(atomicOr, unsigned int, old | val)
MINICNN_EMU_ATOMIC(atomicOr, unsigned long long, old | val)
MINICNN_EMU_ATOMIC(atomicXor, int, old ^ val)
MINICNN_EMU_ATOMIC(atomicXor, unsigned int, old ^ val)
MINICNN_EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
MINICNN_EMU_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1)
MINICNN_EMU_ATOMIC(atomicDec, unsigned int, (old == 0 || old > val) ? val : old - 1)
#undef MINICNN_EMU_ATOMIC

#define MINICNN_EMU_ATOMIC_CAS(T)                                       \
  MINICNN_EMU_ATOMIC_INLINE T atomicCAS(T* address, T compare, T val) { \
    return ::minicnn_emu::detail::atomic_update(                        \
        address, [=](T old) { return old == compare ? val : old; });    \
  }
MINICNN_EMU_ATOMIC_CAS(int)
MINICNN_EMU_ATOMIC_CAS(unsigned int)
MINICNN_EMU_ATOMIC_CAS(unsigned long long)
MINICNN_EMU_ATOMIC_CAS(unsigned short)
#undef MINICNN_EMU_ATOMIC_CAS

// Memory fences: blocks run on several OS threads, so a fence is a real one. (The race checker does
// not model fence-based synchronisation between blocks: a flag written after a fence is a race.)
inline void __threadfence() {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_block() {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_system() {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// ---- loads, traps ---------------------------------------------------------------------------------
template <class T>
T __ldg(const T* address) {  // read-only cache load: a plain load on the CPU
  return *address;
}

// __trap() aborts the kernel: reported like any exception, with the thread's coordinates.
[[noreturn]] inline void __trap() {
  throw std::runtime_error("__trap() called");
}

// ---- math intrinsics ------------------------------------------------------------------------------
// The fast approximations (__expf, ...) are computed exactly here; results differ in the last bits
// from the GPU's, so compare kernels with tolerances.
#if !(defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 41)))
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}  // glibc >= 2.41 has C23's rsqrtf
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
#endif
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __powf(float x, float y) {
  return std::pow(x, y);
}
inline float __sinf(float x) {
  return std::sin(x);
}
inline float __cosf(float x) {
  return std::cos(x);
}
inline float __tanf(float x) {
  return std::tan(x);
}
inline float __fdividef(float x, float y) {
  return x / y;
}
inline float fdividef(float x, float y) {
  return x / y;
}
inline float __saturatef(float x) {
  return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
}  // NaN -> 0
// Explicitly rounded operations (never contracted into an FMA by nvcc).
inline float __fadd_rn(float x, float y) {
  return x + y;
}
inline float __fsub_rn(float x, float y) {
  return x - y;
}
inline float __fmul_rn(float x, float y) {
  return x * y;
}
inline float __fdiv_rn(float x, float y) {
  return x / y;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fsqrt_rn(float x) {
  return std::sqrt(x);
}
inline float __fmaf_rn(float x, float y, float z) {
  return std::fma(x, y, z);
}
inline double __dadd_rn(double x, double y) {
  return x + y;
}
inline double __dmul_rn(double x, double y) {
  return x * y;
}
inline double __fma_rn(double x, double y, double z) {
  return std::fma(x, y, z);
}

// CUDA declares min and max for the arithmetic types in the global namespace.
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a > b ? a : b;
}
inline unsigned int min(unsigned int a, unsigned int b) {
  return a < b ? a : b;
}
inline unsigned int max(unsigned int a, unsigned int b) {
  return a > b ? a : b;
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline long long max(long long a, long long b) {
  return a > b ? a : b;
}
inline float min(float a, float b) {
  return fminf(a, b);
}
inline float max(float a, float b) {
  return fmaxf(a, b);
}
inline double min(double a, double b) {
  return fmin(a, b);
}
inline double max(double a, double b) {
  return fmax(a, b);
}

// ---- reinterpreting bits, counting bits ------------------------------------------------------------
namespace minicnn_emu::detail {
template <class To, class From>
To bit_cast(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
}
}  // namespace minicnn_emu::detail

inline float __int_as_float(int x) {
  return ::minicnn_emu::detail::bit_cast<float>(x);
}
inline float __uint_as_float(unsigned int x) {
  return ::minicnn_emu::detail::bit_cast<float>(x);
}
inline int __float_as_int(float x) {
  return ::minicnn_emu::detail::bit_cast<int>(x);
}
inline unsigned int __float_as_uint(float x) {
  return ::minicnn_emu::detail::bit_cast<unsigned int>(x);
}
inline double __longlong_as_double(long long x) {
  return ::minicnn_emu::detail::bit_cast<double>(x);
}
inline long long __double_as_longlong(double x) {
  return ::minicnn_emu::detail::bit_cast<long long>(x);
}

inline int __popc(unsigned int x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __ffsll(long long x) {
  return __builtin_ffsll(x);
}
