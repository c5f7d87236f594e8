// Helpers shared by the kernel files: launch sizes, math on a template type, block reductions.
//
// Included by every csrc/kernels/*.cu after cuda_compat.h, so it is CUDA under nvcc and runs on the
// emulator under the host compiler.
#pragma once

#include <math.h>

#include <cstdint>

#include "cuda_compat.h"
#include "kernels.h"

namespace minicnn {
namespace kernels {

constexpr int kWarpSize = 32;
constexpr int kBlockSize = 256;  // threads per block of the elementwise kernels (a multiple of 32)

// Blocks of `block` threads that cover n items, one item per thread.
inline unsigned int blocks_for(int64_t n, int block = kBlockSize) {
  return static_cast<unsigned int>((n + block - 1) / block);
}

// The flat index of this thread in a 1-D grid.
__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// ---- math on T = float or double: the single-precision functions for float ----------------------
__device__ __forceinline__ float power(float x, float y) {
  return powf(x, y);
}
__device__ __forceinline__ double power(double x, double y) {
  return pow(x, y);
}
__device__ __forceinline__ float square_root(float x) {
  return sqrtf(x);
}
__device__ __forceinline__ double square_root(double x) {
  return sqrt(x);
}
template <class T>
__device__ __forceinline__ bool is_nan(T x) {
  return x != x;
}

// ---- reductions -----------------------------------------------------------------------------------
// Sum over the 32 lanes of a warp; lane 0 gets the total. Every lane of the warp must call it.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the whole block, returned to every thread. blockDim.x must be a multiple of 32 (so every
// warp is full) and `scratch` (32,) shared memory. Every thread of the block must call it (it holds
// two __syncthreads); it may be called again right away with the same scratch.
// The warp totals are added by each thread in the same order, so all threads get the same bits.
template <class T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  __syncthreads();  // everyone has read scratch before the next call overwrites it
  return total;
}

}  // namespace kernels
}  // namespace minicnn
