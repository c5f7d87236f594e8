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
// The kernels spread every channel over several blocks, so that a layer with few channels and
// many values (an early ResNet layer: C = 64, M = 32·112·112) still fills the GPU:
//   - the M values of channel c are cut into `chunks` contiguous ranges of `chunk` values; block
//     b = c·chunks + i of a 1-D grid takes range i of channel c (one division per block);
//   - training forward: each block writes (mean, M2) of its range (two passes over it, the second
//     from cache); one thread per channel merges its ranges in order with Chan et al.'s formula
//     (M2 = M2a + M2b + δ²·na·nb/n: no E[x²] − μ² cancellation) into μ, σ², invstd and the running
//     statistics; then every block normalizes its range;
//   - backward: each block writes its sums of dy and dy·x̂, one thread per channel adds them in
//     order (deterministic: no float atomics), every block writes dx of its range;
//   - a thread walks its values m, m + 256, ... as (n, hw) with one division per thread and a
//     compare per step (no int64 division per element);
//   - the partial sums (2 x C x chunks values) live in the output (y or dx) until the last kernel
//     overwrites it, so the launchers need no workspace; with one range per channel they go
//     straight to (mean, invstd) or (dbias, dweight).
//
// Buffers: x, y, dy, dx (N, C, HW), HW = H·W (the op views any input as 4-D); weight, bias,
// running_mean, running_var, mean, invstd, dweight, dbias (C,).
#include <algorithm>

#include "common.cuh"

namespace minicnn {
namespace kernels {

constexpr int kBatchNormThreads = 256;  // per block; a multiple of 32

// Calls f(offset of x[n, c, hw]) for this thread's values m in [m0, m1) of channel c, m = n·HW + hw,
// m0 + threadIdx.x, then every blockDim.x.
template <class F>
__device__ __forceinline__ void for_each_value(int c, int64_t m0, int64_t m1, int C, int64_t HW,
                                               F f) {
  int64_t m = m0 + threadIdx.x;
  if (m >= m1) return;
  int64_t n = m / HW, hw = m - n * HW;  // once per thread
  const int64_t step = blockDim.x, dn = step / HW, dhw = step - dn * HW;
  for (; m < m1; m += step) {
    f((n * C + c) * HW + hw);
    n += dn, hw += dhw;
    if (hw >= HW) hw -= HW, ++n;
  }
}

// The channel and value range of this block.
struct ChannelRange {
  int c;
  int64_t m0, m1;
  __device__ ChannelRange(int chunks, int64_t chunk, int64_t M) {
    c = int(blockIdx.x / unsigned(chunks));
    m0 = int64_t(blockIdx.x - unsigned(c) * unsigned(chunks)) * chunk;
    m1 = m0 + chunk < M ? m0 + chunk : M;
  }
};

// ---- kernels --------------------------------------------------------------------------------------
template <class T>
__global__ void batch_norm_partial_stats_kernel(T* part_mean,  // (C, chunks)
                                                T* part_m2,    // (C, chunks)
                                                const T* inp,  // (N, C, HW)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk) {
  DYN_SHARED(T, scratch);  // (32,) for block_sum
  const ChannelRange rg(chunks, chunk, N * HW);
  T sum = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) { sum += inp[at]; });
  const T count = T(rg.m1 > rg.m0 ? rg.m1 - rg.m0 : 1);
  const T mu = block_sum(sum, scratch) / count;
  T squares = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW,
                 [&](int64_t at) { squares += (inp[at] - mu) * (inp[at] - mu); });
  const T m2 = block_sum(squares, scratch);
  if (threadIdx.x == 0) part_mean[blockIdx.x] = mu, part_m2[blockIdx.x] = m2;
}

// One thread per channel: (count, mean, M2) of its ranges merged in order (Chan et al. 1979).
template <class T>
__global__ void batch_norm_finalize_stats_kernel(T* mean, T* invstd,  // (C,)
                                                 T* running_mean,
                                                 T* running_var,  // (C,) or nullptr
                                                 const T* part_mean,
                                                 const T* part_m2,  // (C, chunks)
                                                 int64_t M, int C, int chunks, int64_t chunk,
                                                 T momentum, T eps) {
  const int64_t c = global_index();
  if (c >= C) return;
  T n = 0, mu = 0, m2 = 0;
  for (int i = 0; i < chunks; ++i) {
    const int64_t lo = i * chunk, hi = lo + chunk < M ? lo + chunk : M;
    if (hi <= lo) break;
    const T nb = T(hi - lo), delta = part_mean[c * chunks + i] - mu, total = n + nb;
    mu += delta * nb / total;
    m2 += part_m2[c * chunks + i] + delta * delta * n * nb / total;
    n = total;
  }
  const T var = m2 / T(M);
  mean[c] = mu;
  invstd[c] = T(1) / square_root(var + eps);
  if (running_mean != nullptr)
    running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mu;
  if (running_var != nullptr) {
    const T unbiased = m2 / T(M > 1 ? M - 1 : 1);
    running_var[c] = (T(1) - momentum) * running_var[c] + momentum * unbiased;
  }
}

template <class T>
__global__ void batch_norm_inference_stats_kernel(T* mean,                // (C,)
                                                  T* invstd,              // (C,)
                                                  const T* running_mean,  // (C,)
                                                  const T* running_var,   // (C,)
                                                  int C, T eps) {
  int64_t c = global_index();
  if (c < C) {
    mean[c] = running_mean[c];
    invstd[c] = T(1) / square_root(running_var[c] + eps);
  }
}

// y = (x − μ)·invstd·weight + bias over this block's range.
template <class T>
__global__ void batch_norm_normalize_kernel(T* out,           // (N, C, HW)
                                            const T* inp,     // (N, C, HW)
                                            const T* mean,    // (C,)
                                            const T* invstd,  // (C,)
                                            const T* weight,  // (C,) or nullptr
                                            const T* bias,    // (C,) or nullptr
                                            int64_t N, int C, int64_t HW, int chunks,
                                            int64_t chunk) {
  const ChannelRange rg(chunks, chunk, N * HW);
  const T scale = invstd[rg.c] * (weight != nullptr ? weight[rg.c] : T(1));
  const T shift = (bias != nullptr ? bias[rg.c] : T(0)) - mean[rg.c] * scale;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) { out[at] = inp[at] * scale + shift; });
}

template <class T>
__global__ void batch_norm_partial_grads_kernel(T* part_dy,       // (C, chunks): Σ dy
                                                T* part_dy_xhat,  // (C, chunks): Σ dy·x̂
                                                const T* dout,    // (N, C, HW)
                                                const T* inp,     // (N, C, HW)
                                                const T* mean,    // (C,)
                                                const T* invstd,  // (C,)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk) {
  DYN_SHARED(T, scratch);  // (32,) for block_sum
  const ChannelRange rg(chunks, chunk, N * HW);
  const T mu = mean[rg.c], inv = invstd[rg.c];
  T sum_dy = 0, sum_dy_xhat = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) {
    sum_dy += dout[at];
    sum_dy_xhat += dout[at] * ((inp[at] - mu) * inv);
  });
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_xhat = block_sum(sum_dy_xhat, scratch);
  if (threadIdx.x == 0) part_dy[blockIdx.x] = sum_dy, part_dy_xhat[blockIdx.x] = sum_dy_xhat;
}

// dbias[c] = Σ dy, dweight[c] = Σ dy·x̂: the ranges of channel c added in order.
template <class T>
__global__ void batch_norm_finalize_grads_kernel(T* dweight, T* dbias,  // (C,)
                                                 const T* part_dy,
                                                 const T* part_dy_xhat,  // (C, chunks)
                                                 int C, int chunks) {
  const int64_t c = global_index();
  if (c >= C) return;
  T db = 0, dw = 0;
  for (int i = 0; i < chunks; ++i)
    db += part_dy[c * chunks + i], dw += part_dy_xhat[c * chunks + i];
  dbias[c] = db;
  dweight[c] = dw;
}

// training:  dx = weight·invstd·(dy − dbias/M − x̂·dweight/M);  inference: dx = weight·invstd·dy.
template <class T>
__global__ void batch_norm_backward_data_kernel(T* dinp,           // (N, C, HW)
                                                const T* dout,     // (N, C, HW)
                                                const T* inp,      // (N, C, HW)
                                                const T* weight,   // (C,) or nullptr
                                                const T* mean,     // (C,)
                                                const T* invstd,   // (C,)
                                                const T* dweight,  // (C,)
                                                const T* dbias,    // (C,)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk, bool training) {
  const ChannelRange rg(chunks, chunk, N * HW);
  const T inv = invstd[rg.c], g = (weight != nullptr ? weight[rg.c] : T(1)) * inv, M = T(N * HW);
  const T mu = mean[rg.c], db_mean = training ? dbias[rg.c] / M : T(0);
  const T dw_mean = training ? dweight[rg.c] / M : T(0);
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) {
    dinp[at] = g * (dout[at] - db_mean - (inp[at] - mu) * inv * dw_mean);
  });
}

// ---- launchers ------------------------------------------------------------------------------------
// Ranges per channel: blocks for ~2 waves of an H100/H200 (132 SMs x 8 blocks of 256 threads), at
// least 1024 values each, and 2 x C x chunks partials no more than the output's C x M values.
struct Chunking {
  int chunks;
  int64_t chunk;
};
static Chunking batch_norm_chunking(int64_t M, int C) {
  if (M == 0) return {1, 0};
  int64_t chunks = std::min<int64_t>((2 * 132 * 8 + C - 1) / C, (M + 1023) / 1024);
  chunks = std::max<int64_t>(std::min<int64_t>(chunks, M / 2), 1);
  const int64_t chunk = (M + chunks - 1) / chunks;
  return {int((M + chunk - 1) / chunk), chunk};
}

template <class T>
void batch_norm_forward_training(T* out, T* mean, T* invstd, T* running_mean, T* running_var,
                                 const T* inp, const T* weight, const T* bias, int64_t N, int C,
                                 int64_t HW, double momentum, double eps, cudaStream_t stream) {
  if (C == 0 || N * HW == 0) return;
  const Chunking k = batch_norm_chunking(N * HW, C);
  const int64_t blocks = int64_t(C) * k.chunks;
  T* part_mean = k.chunks == 1 ? mean : out;  // (C, chunks), in the output until it is written
  T* part_m2 = k.chunks == 1 ? invstd : out + blocks;
  LAUNCH((batch_norm_partial_stats_kernel<T>), unsigned(blocks), kBatchNormThreads,
         kWarpSize * sizeof(T), stream)(part_mean, part_m2, inp, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_partial_stats_kernel");
  LAUNCH((batch_norm_finalize_stats_kernel<T>), blocks_for(C), kBlockSize, 0, stream)(
      mean, invstd, running_mean, running_var, part_mean, part_m2, N * HW, C, k.chunks, k.chunk,
      T(momentum), T(eps));
  CHECK_LAUNCH("batch_norm_finalize_stats_kernel");
  LAUNCH((batch_norm_normalize_kernel<T>), unsigned(blocks), kBatchNormThreads, 0, stream)(
      out, inp, mean, invstd, weight, bias, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_normalize_kernel");
}

template <class T>
void batch_norm_forward_inference(T* out, T* mean, T* invstd, const T* inp, const T* weight,
                                  const T* bias, const T* running_mean, const T* running_var,
                                  int64_t N, int C, int64_t HW, double eps, cudaStream_t stream) {
  if (C == 0) return;
  LAUNCH((batch_norm_inference_stats_kernel<T>), blocks_for(C), kBlockSize, 0, stream)(
      mean, invstd, running_mean, running_var, C, T(eps));
  CHECK_LAUNCH("batch_norm_inference_stats_kernel");
  if (N * HW == 0) return;
  const Chunking k = batch_norm_chunking(N * HW, C);
  LAUNCH((batch_norm_normalize_kernel<T>), unsigned(int64_t(C) * k.chunks), kBatchNormThreads, 0,
         stream)(out, inp, mean, invstd, weight, bias, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_normalize_kernel");
}

template <class T>
void batch_norm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                         const T* weight, const T* mean, const T* invstd, int64_t N, int C,
                         int64_t HW, bool training, cudaStream_t stream) {
  if (C == 0) return;
  const Chunking k = batch_norm_chunking(N * HW, C);
  const int64_t blocks = int64_t(C) * k.chunks;
  T* part_dy = k.chunks == 1 ? dbias : dinp;  // (C, chunks), in dx until it is written
  T* part_dy_xhat = k.chunks == 1 ? dweight : dinp + blocks;
  LAUNCH((batch_norm_partial_grads_kernel<T>), unsigned(blocks), kBatchNormThreads,
         kWarpSize * sizeof(T),
         stream)(part_dy, part_dy_xhat, dout, inp, mean, invstd, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_partial_grads_kernel");
  if (k.chunks > 1) {
    LAUNCH((batch_norm_finalize_grads_kernel<T>), blocks_for(C), kBlockSize, 0, stream)(
        dweight, dbias, part_dy, part_dy_xhat, C, k.chunks);
    CHECK_LAUNCH("batch_norm_finalize_grads_kernel");
  }
  if (N * HW == 0) return;
  LAUNCH((batch_norm_backward_data_kernel<T>), unsigned(blocks), kBatchNormThreads, 0, stream)(
      dinp, dout, inp, weight, mean, invstd, dweight, dbias, N, C, HW, k.chunks, k.chunk, training);
  CHECK_LAUNCH("batch_norm_backward_data_kernel");
}

#define INSTANTIATE(T)                                                                             \
  template void batch_norm_forward_training<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,   \
                                               int64_t, int, int64_t, double, double,              \
                                               cudaStream_t);                                      \
  template void batch_norm_forward_inference<T>(T*, T*, T*, const T*, const T*, const T*,          \
                                                const T*, const T*, int64_t, int, int64_t, double, \
                                                cudaStream_t);                                     \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                       const T*, int64_t, int, int64_t, bool, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
