// Batch normalization over (N, H, W) per channel (Ioffe & Szegedy 2015), forward and backward.
//
// With M = N·H·W values per channel c:
//   training forward:  μ = (1/M) Σ x,  σ² = (1/M) Σ (x − μ)²  (biased; two passes: the one-pass
//                      E[x²] − μ² cancels catastrophically when |μ| ≫ σ),
//                      invstd = 1/sqrt(σ² + eps),  x̂ = (x − μ)·invstd,  y = weight·x̂ + bias,
//                      running_mean ← (1−m)·running_mean + m·μ,
//                      running_var  ← (1−m)·running_var + m·σ²·M/(M−1)   (unbiased; M/1 when M = 1)
//   inference forward: μ = running_mean, invstd = 1/sqrt(running_var + eps), y as above
//   backward:          dbias = Σ dy,  dweight = Σ dy·x̂,
//                      training:  dx = weight·invstd·(dy − dbias/M − x̂·dweight/M)
//                      inference: dx = weight·invstd·dy      (the statistics are constants)
// weight = 1 and bias = 0 when absent. The forward returns (μ, invstd): what the backward needs.
//
// Versions:
//   1. training forward and backward: one block per channel. Its threads stride over the M values
//      of the channel (value m is x[m / HW, c, m % HW]) and combine their partial sums with a block
//      reduction (warp shuffles, then the warp totals through shared memory: block_sum in
//      common.cuh); the same block then writes y or dx of its channel, so the statistics never
//      leave the chip. Good while C fills the GPU (C ≥ #SMs: ResNet, DenseNet); a channel-split
//      version (several blocks per channel, a second reduction) would serve small C with huge M.
//      Inference forward: one element per thread, and one thread per channel for the statistics.
//
// Buffers: x, y, dy, dx (N, C, HW), HW = H·W (the op views any input as 4-D); weight, bias,
// running_mean, running_var, mean, invstd, dweight, dbias (C,).
#include "common.cuh"

namespace minicnn {
namespace kernels {

constexpr int kBatchNormThreads = 256;  // per block (one block per channel); a multiple of 32

// Value m of channel c, m in [0, N·HW): x[m / HW, c, m % HW].
__device__ __forceinline__ int64_t channel_offset(int64_t m, int c, int C, int64_t HW) {
  return ((m / HW) * C + c) * HW + m % HW;
}

// ---- kernels --------------------------------------------------------------------------------------
template <class T>
__global__ void batch_norm_forward_training_kernel(T* out,             // (N, C, HW)
                                                   T* mean,            // (C,)
                                                   T* invstd,          // (C,)
                                                   T* running_mean,    // (C,) or nullptr, updated
                                                   T* running_var,     // (C,) or nullptr, updated
                                                   const T* inp,       // (N, C, HW)
                                                   const T* weight,    // (C,) or nullptr
                                                   const T* bias,      // (C,) or nullptr
                                                   int64_t N, int C, int64_t HW, T momentum, T eps) {
  DYN_SHARED(T, scratch);  // (32,) for block_sum
  const int c = blockIdx.x;
  const int64_t M = N * HW;
  T sum = 0;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) sum += inp[channel_offset(m, c, C, HW)];
  const T mu = block_sum(sum, scratch) / T(M);
  T squares = 0;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    T d = inp[channel_offset(m, c, C, HW)] - mu;
    squares += d * d;
  }
  const T var = block_sum(squares, scratch) / T(M);
  const T inv = T(1) / square_root(var + eps);
  if (threadIdx.x == 0) {
    mean[c] = mu;
    invstd[c] = inv;
    if (running_mean != nullptr) running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mu;
    if (running_var != nullptr) {
      T unbiased = var * T(M) / T(M > 1 ? M - 1 : 1);
      running_var[c] = (T(1) - momentum) * running_var[c] + momentum * unbiased;
    }
  }
  const T w = weight != nullptr ? weight[c] : T(1), b = bias != nullptr ? bias[c] : T(0);
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    int64_t at = channel_offset(m, c, C, HW);
    out[at] = (inp[at] - mu) * inv * w + b;
  }
}

template <class T>
__global__ void batch_norm_inference_stats_kernel(T* mean,                 // (C,)
                                                  T* invstd,               // (C,)
                                                  const T* running_mean,   // (C,)
                                                  const T* running_var,    // (C,)
                                                  int C, T eps) {
  int64_t c = global_index();
  if (c < C) {
    mean[c] = running_mean[c];
    invstd[c] = T(1) / square_root(running_var[c] + eps);
  }
}

template <class T>
__global__ void batch_norm_forward_inference_kernel(T* out,            // (N, C, HW)
                                                    const T* inp,      // (N, C, HW)
                                                    const T* mean,     // (C,)
                                                    const T* invstd,   // (C,)
                                                    const T* weight,   // (C,) or nullptr
                                                    const T* bias,     // (C,) or nullptr
                                                    int64_t N, int C, int64_t HW) {
  int64_t i = global_index();  // element (n, c, hw)
  if (i < N * C * HW) {
    int c = static_cast<int>((i / HW) % C);
    T y = (inp[i] - mean[c]) * invstd[c];
    if (weight != nullptr) y *= weight[c];
    if (bias != nullptr) y += bias[c];
    out[i] = y;
  }
}

template <class T>
__global__ void batch_norm_backward_kernel(T* dinp,            // (N, C, HW)
                                           T* dweight,         // (C,)
                                           T* dbias,           // (C,)
                                           const T* dout,      // (N, C, HW)
                                           const T* inp,       // (N, C, HW)
                                           const T* weight,    // (C,) or nullptr
                                           const T* mean,      // (C,)
                                           const T* invstd,    // (C,)
                                           int64_t N, int C, int64_t HW, bool training) {
  DYN_SHARED(T, scratch);  // (32,) for block_sum
  const int c = blockIdx.x;
  const int64_t M = N * HW;
  const T mu = mean[c], inv = invstd[c];
  T sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    int64_t at = channel_offset(m, c, C, HW);
    T dy = dout[at];
    sum_dy += dy;
    sum_dy_xhat += dy * ((inp[at] - mu) * inv);
  }
  const T db = block_sum(sum_dy, scratch);
  const T dw = block_sum(sum_dy_xhat, scratch);
  if (threadIdx.x == 0) {
    dbias[c] = db;
    dweight[c] = dw;
  }
  const T g = (weight != nullptr ? weight[c] : T(1)) * inv;
  const T db_mean = db / T(M), dw_mean = dw / T(M);
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    int64_t at = channel_offset(m, c, C, HW);
    T dy = dout[at];
    dinp[at] = training ? g * (dy - db_mean - (inp[at] - mu) * inv * dw_mean) : g * dy;
  }
}

// ---- launchers ------------------------------------------------------------------------------------
template <class T>
void batch_norm_forward_training(T* out, T* mean, T* invstd, T* running_mean, T* running_var, const T* inp,
                                 const T* weight, const T* bias, int64_t N, int C, int64_t HW, double momentum,
                                 double eps, cudaStream_t stream) {
  if (C == 0 || N * HW == 0) return;
  LAUNCH((batch_norm_forward_training_kernel<T>), C, kBatchNormThreads, kWarpSize * sizeof(T), stream)(
      out, mean, invstd, running_mean, running_var, inp, weight, bias, N, C, HW, T(momentum), T(eps));
  CHECK_LAUNCH("batch_norm_forward_training_kernel");
}

template <class T>
void batch_norm_forward_inference(T* out, T* mean, T* invstd, const T* inp, const T* weight, const T* bias,
                                  const T* running_mean, const T* running_var, int64_t N, int C, int64_t HW,
                                  double eps, cudaStream_t stream) {
  if (C == 0) return;
  LAUNCH((batch_norm_inference_stats_kernel<T>), blocks_for(C), kBlockSize, 0, stream)(
      mean, invstd, running_mean, running_var, C, T(eps));
  CHECK_LAUNCH("batch_norm_inference_stats_kernel");
  int64_t n = N * C * HW;
  if (n == 0) return;
  LAUNCH((batch_norm_forward_inference_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(
      out, inp, mean, invstd, weight, bias, N, C, HW);
  CHECK_LAUNCH("batch_norm_forward_inference_kernel");
}

template <class T>
void batch_norm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                         const T* mean, const T* invstd, int64_t N, int C, int64_t HW, bool training,
                         cudaStream_t stream) {
  if (C == 0) return;
  LAUNCH((batch_norm_backward_kernel<T>), C, kBatchNormThreads, kWarpSize * sizeof(T), stream)(
      dinp, dweight, dbias, dout, inp, weight, mean, invstd, N, C, HW, training);
  CHECK_LAUNCH("batch_norm_backward_kernel");
}

#define INSTANTIATE(T)                                                                                         \
  template void batch_norm_forward_training<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, int64_t, int, \
                                               int64_t, double, double, cudaStream_t);                         \
  template void batch_norm_forward_inference<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,  \
                                                int64_t, int, int64_t, double, cudaStream_t);                  \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,  \
                                       int, int64_t, bool, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
