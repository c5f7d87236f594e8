// Helpers shared by the kernel files: launch sizes, math on a template type, block reductions.
//
// Included by every csrc/kernels/*.cu after cuda_compat.h, so it is CUDA under nvcc and runs on the
// emulator under the host compiler.
#pragma once

#include <math.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_compat.h"
#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include "kernels.h"

namespace minicnn {
namespace kernels {

constexpr int kWarpSize = 32;
constexpr int kBlockSize = 256;  // threads per block of the elementwise kernels (a multiple of 32)

// Blocks of `block` threads that cover n items, one item per thread.
inline unsigned int blocks_for(int64_t n, int block = kBlockSize) {
  return static_cast<unsigned int>((n + block - 1) / block);
}

// Launch `kernel` (a template kernel in parentheses) on a 1-D grid of kBlockSize-thread blocks
// covering n items, one per thread, and check the launch; nothing when n is 0.
#define LAUNCH_1D(kernel, n, stream, ...)                                                         \
  do {                                                                                            \
    const int64_t launch_items_ = (n);                                                            \
    if (launch_items_ == 0) break;                                                                \
    LAUNCH(kernel, ::minicnn::kernels::blocks_for(launch_items_), ::minicnn::kernels::kBlockSize, \
           0, stream)(__VA_ARGS__);                                                               \
    CHECK_LAUNCH(MINICNN_STRINGIFY(MINICNN_DEPAREN(kernel)));                                     \
  } while (0)

// The flat index of this thread in a 1-D grid.
__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Row m of an (·, A, B) array as (n, a, b): an output pixel of a GEMM's rows (conv2d).
struct RowPos {
  int64_t n;
  int a, b;
};
__device__ __forceinline__ RowPos decode_row(int64_t m, int A, int B) {
  const int64_t plane = int64_t(A) * B;
  RowPos o;
  if (m <= INT32_MAX && plane <= INT32_MAX) {  // 32-bit division where it fits
    o.n = int(m) / int(plane);
    const int t = int(m) - int(o.n) * int(plane);
    o.a = t / B, o.b = t - o.a * B;
  } else {
    o.n = m / plane;
    const int t = int(m - o.n * plane);
    o.a = t / B, o.b = t - o.a * B;
  }
  return o;
}

// ---- windows of conv2d.cu and pool.cu (G: Conv2d or Pool2d) ------------------------------------
// The output index p along one axis whose window offset r reads coordinate h, or -1 if none.
__device__ __forceinline__ int window_reading(int h, int r, int stride, int pad, int dil, int P) {
  const int t = h + pad - r * dil;  // = p * stride
  if (t < 0 || t % stride != 0) return -1;
  const int p = t / stride;
  return p < P ? p : -1;
}

// Calls f(r, s, h, w) for each offset (r, s) of output pixel (p, q)'s window that reads an input
// pixel (h, w) = (p sh - ph + r dh, q sw - pw + s dw) (padding skipped), in row-major order.
template <class G, class F>
__device__ __forceinline__ void for_window(const G& g, int p, int q, int dh, int dw, F f) {
  const int h_start = p * g.sh - g.ph, w_start = q * g.sw - g.pw;
  for (int r = 0; r < g.R; ++r) {
    const int h = h_start + r * dh;
    if (h < 0 || h >= g.H) continue;
    for (int s = 0; s < g.S; ++s) {
      const int w = w_start + s * dw;
      if (w >= 0 && w < g.W) f(r, s, h, w);
    }
  }
}

// Calls f(r, s, p, q) for each output pixel (p, q) whose window offset (r, s) reads input pixel
// (h, w): the windows of for_window seen from the input, in order of (r, s).
template <class G, class F>
__device__ __forceinline__ void for_windows_reading(const G& g, int h, int w, int dh, int dw, F f) {
  for (int r = 0; r < g.R; ++r) {
    const int p = window_reading(h, r, g.sh, g.ph, dh, g.P);
    if (p < 0) continue;
    for (int s = 0; s < g.S; ++s) {
      const int q = window_reading(w, s, g.sw, g.pw, dw, g.Q);
      if (q >= 0) f(r, s, p, q);
    }
  }
}

// ---- elementwise maps ---------------------------------------------------------------------------
// out[i] = F()(in[i]...) for i < n, one element per thread: the kernel of the plain elementwise ops
// (relu.cu, cast.cu). F is a functor with a __device__ operator() (the op's math, one line), e.g.
//   LAUNCH_1D((map_kernel<ReluForward<T>, T, T>), n, stream, out, n, inp);
template <class F, class Out, class... In>
__global__ void map_kernel(Out* out, int64_t n, const In*... in) {
  const int64_t i = global_index();
  if (i < n) out[i] = F()(in[i]...);
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

// ---- loads and stores through acc_t<T> (kernels.h): exact widening, one rounding on the way back
__device__ __forceinline__ float to_acc(float x) {
  return x;
}
__device__ __forceinline__ double to_acc(double x) {
  return x;
}
__device__ __forceinline__ float to_acc(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <class T>
__device__ __forceinline__ T from_acc(acc_t<T> v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
// X(T) for every type the launchers are instantiated for (kernels.h).
#define MINICNN_FOR_EACH_DTYPE(X) X(float) X(double) X(__half) X(__nv_bfloat16)
// X(T) for the types with tensor cores (float as TF32).
#define MINICNN_FOR_EACH_TENSOR_CORE_DTYPE(X) X(float) X(__half) X(__nv_bfloat16)

// Whether T is one of the 16-bit storage types.
template <class T>
constexpr bool is_half_type() {
  return sizeof(T) == 2;
}

// ---- tensor cores -------------------------------------------------------------------------------
// Throws std::invalid_argument naming op when the current GPU is older than sm_(arch / 10), e.g.
// 800 for bfloat16 and TF32 tensor cores. The emulator has every operation.
inline void require_arch(const char* op, int arch, const char* what = "these") {
#ifdef __CUDACC__
  int device = 0, major = 0, minor = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major * 100 + minor * 10 < arch)
    throw std::invalid_argument(std::string(op) + ": " + what + " tensor cores need sm_" +
                                std::to_string(arch / 10) + " or newer; this GPU is sm_" +
                                std::to_string(major * 10 + minor));
#else
  (void)op, (void)arch, (void)what;
#endif
}

// ---- reductions ---------------------------------------------------------------------------------
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
