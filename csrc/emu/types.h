// CUDA's qualifiers, built-in vector types and built-in variables, for the host compiler.
//
// Part of the CUDA emulator (see cuda_emu.h for the big picture). Kernel sources are written in
// CUDA; under g++ the qualifiers below become no-ops or plain C++ and the built-in variables
// (threadIdx, blockIdx, blockDim, gridDim) become globals that the scheduler rewrites every time it
// switches from one CUDA thread to another.
#pragma once

#include <cstdint>

// ---- qualifiers -----------------------------------------------------------------------------
// On the CPU every function is a host function, so the execution-space qualifiers vanish.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// `__shared__` variables become function-local thread_local statics: one copy per OS thread, used by
// the block that thread runs (blocks run concurrently on several OS threads, but a block never
// leaves its OS thread, so that is the block's shared memory). It keeps its value from the
// previous block and launch, which can hide a missing initialisation: the race checker
// (check.h) reports a read of shared memory that no thread of the block wrote; dynamic shared
// memory (DYN_SHARED in cuda_compat.h) is also poisoned before every block.
#define __shared__ static thread_local
// `__restrict__` is already a GNU C++ keyword with the same meaning.

// ---- built-in vector types (the few kernels use) ------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};

// dim3: like CUDA's, every component defaults to 1.
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

struct __align__(8) float2 {
  float x, y;
};
struct float3 {
  float x, y, z;
};
struct __align__(16) float4 {
  float x, y, z, w;
};
struct __align__(8) int2 {
  int x, y;
};
struct __align__(16) int4 {
  int x, y, z, w;
};
struct __align__(16) double2 {
  double x, y;
};

inline float2 make_float2(float x, float y) {
  return {x, y};
}
inline float3 make_float3(float x, float y, float z) {
  return {x, y, z};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}
inline int2 make_int2(int x, int y) {
  return {x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}
inline double2 make_double2(double x, double y) {
  return {x, y};
}
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) {
  return {x, y, z};
}

// ---- built-in variables -----------------------------------------------------------------------
// The coordinates of the CUDA thread that is executing right now on this OS thread (each OS thread
// runs one block at a time); the scheduler stores the next thread's coordinates before every
// switch. Being real variables, a debugger can print them.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;
