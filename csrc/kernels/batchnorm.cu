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
// running_mean, running_var, mean, invstd, dweight, dbias (C,). For float16 / bfloat16 only x, y,
// dy, dx are 16-bit; the (C,) vectors and every sum are float32 (cuDNN's mixed batch norm).
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

// ---- kernels ----------------------------------------------------------------------------------
// T: the type of x, y, dy, dx; A = acc_t<T> (kernels.h): the type of every statistic, parameter and
// partial sum (float for float16 / bfloat16: cuDNN's mixed-precision batch norm).
template <class T>
__global__ void batch_norm_partial_stats_kernel(acc_t<T>* part_mean,  // (C, chunks)
                                                acc_t<T>* part_m2,    // (C, chunks)
                                                const T* inp,         // (N, C, HW)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk) {
  using A = acc_t<T>;
  DYN_SHARED(A, scratch);  // (32,) for block_sum
  const ChannelRange rg(chunks, chunk, N * HW);
  A sum = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) { sum += to_acc(inp[at]); });
  const A count = A(rg.m1 > rg.m0 ? rg.m1 - rg.m0 : 1);
  const A mu = block_sum(sum, scratch) / count;
  A squares = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) {
    const A d = to_acc(inp[at]) - mu;
    squares += d * d;
  });
  const A m2 = block_sum(squares, scratch);
  if (threadIdx.x == 0) part_mean[blockIdx.x] = mu, part_m2[blockIdx.x] = m2;
}

// One thread per channel: (count, mean, M2) of its ranges merged in order (Chan et al. 1979).
template <class A>
__global__ void batch_norm_finalize_stats_kernel(A* mean, A* invstd,  // (C,)
                                                 A* running_mean,
                                                 A* running_var,  // (C,) or nullptr
                                                 const A* part_mean,
                                                 const A* part_m2,  // (C, chunks)
                                                 int64_t M, int C, int chunks, int64_t chunk,
                                                 A momentum, A eps) {
  const int64_t c = global_index();
  if (c >= C) return;
  A n = 0, mu = 0, m2 = 0;
  for (int i = 0; i < chunks; ++i) {
    const int64_t lo = i * chunk, hi = lo + chunk < M ? lo + chunk : M;
    if (hi <= lo) break;
    const A nb = A(hi - lo), delta = part_mean[c * chunks + i] - mu, total = n + nb;
    mu += delta * nb / total;
    m2 += part_m2[c * chunks + i] + delta * delta * n * nb / total;
    n = total;
  }
  const A var = m2 / A(M);
  mean[c] = mu;
  invstd[c] = A(1) / square_root(var + eps);
  if (running_mean != nullptr)
    running_mean[c] = (A(1) - momentum) * running_mean[c] + momentum * mu;
  if (running_var != nullptr) {
    const A unbiased = m2 / A(M > 1 ? M - 1 : 1);
    running_var[c] = (A(1) - momentum) * running_var[c] + momentum * unbiased;
  }
}

template <class A>
__global__ void batch_norm_inference_stats_kernel(A* mean,                // (C,)
                                                  A* invstd,              // (C,)
                                                  const A* running_mean,  // (C,)
                                                  const A* running_var,   // (C,)
                                                  int C, A eps) {
  int64_t c = global_index();
  if (c < C) {
    mean[c] = running_mean[c];
    invstd[c] = A(1) / square_root(running_var[c] + eps);
  }
}

// y = (x − μ)·invstd·weight + bias over this block's range.
template <class T>
__global__ void batch_norm_normalize_kernel(T* out,                  // (N, C, HW)
                                            const T* inp,            // (N, C, HW)
                                            const acc_t<T>* mean,    // (C,)
                                            const acc_t<T>* invstd,  // (C,)
                                            const acc_t<T>* weight,  // (C,) or nullptr
                                            const acc_t<T>* bias,    // (C,) or nullptr
                                            int64_t N, int C, int64_t HW, int chunks,
                                            int64_t chunk) {
  using A = acc_t<T>;
  const ChannelRange rg(chunks, chunk, N * HW);
  const A scale = invstd[rg.c] * (weight != nullptr ? weight[rg.c] : A(1));
  const A shift = (bias != nullptr ? bias[rg.c] : A(0)) - mean[rg.c] * scale;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW,
                 [&](int64_t at) { out[at] = from_acc<T>(to_acc(inp[at]) * scale + shift); });
}

template <class T>
__global__ void batch_norm_partial_grads_kernel(acc_t<T>* part_dy,       // (C, chunks): Σ dy
                                                acc_t<T>* part_dy_xhat,  // (C, chunks): Σ dy·x̂
                                                const T* dout,           // (N, C, HW)
                                                const T* inp,            // (N, C, HW)
                                                const acc_t<T>* mean,    // (C,)
                                                const acc_t<T>* invstd,  // (C,)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk) {
  using A = acc_t<T>;
  DYN_SHARED(A, scratch);  // (32,) for block_sum
  const ChannelRange rg(chunks, chunk, N * HW);
  const A mu = mean[rg.c], inv = invstd[rg.c];
  A sum_dy = 0, sum_dy_xhat = 0;
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) {
    const A dy = to_acc(dout[at]);
    sum_dy += dy;
    sum_dy_xhat += dy * ((to_acc(inp[at]) - mu) * inv);
  });
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_xhat = block_sum(sum_dy_xhat, scratch);
  if (threadIdx.x == 0) part_dy[blockIdx.x] = sum_dy, part_dy_xhat[blockIdx.x] = sum_dy_xhat;
}

// dbias[c] = Σ dy, dweight[c] = Σ dy·x̂: the ranges of channel c added in order.
template <class A>
__global__ void batch_norm_finalize_grads_kernel(A* dweight, A* dbias,  // (C,)
                                                 const A* part_dy,
                                                 const A* part_dy_xhat,  // (C, chunks)
                                                 int C, int chunks) {
  const int64_t c = global_index();
  if (c >= C) return;
  A db = 0, dw = 0;
  for (int i = 0; i < chunks; ++i)
    db += part_dy[c * chunks + i], dw += part_dy_xhat[c * chunks + i];
  dbias[c] = db;
  dweight[c] = dw;
}

// training:  dx = weight·invstd·(dy − dbias/M − x̂·dweight/M);  inference: dx = weight·invstd·dy.
template <class T>
__global__ void batch_norm_backward_data_kernel(T* dinp,                  // (N, C, HW)
                                                const T* dout,            // (N, C, HW)
                                                const T* inp,             // (N, C, HW)
                                                const acc_t<T>* weight,   // (C,) or nullptr
                                                const acc_t<T>* mean,     // (C,)
                                                const acc_t<T>* invstd,   // (C,)
                                                const acc_t<T>* dweight,  // (C,)
                                                const acc_t<T>* dbias,    // (C,)
                                                int64_t N, int C, int64_t HW, int chunks,
                                                int64_t chunk, bool training) {
  using A = acc_t<T>;
  const ChannelRange rg(chunks, chunk, N * HW);
  const A inv = invstd[rg.c], g = (weight != nullptr ? weight[rg.c] : A(1)) * inv, M = A(N * HW);
  const A mu = mean[rg.c], db_mean = training ? dbias[rg.c] / M : A(0);
  const A dw_mean = training ? dweight[rg.c] / M : A(0);
  for_each_value(rg.c, rg.m0, rg.m1, C, HW, [&](int64_t at) {
    const A xhat = (to_acc(inp[at]) - mu) * inv;
    dinp[at] = from_acc<T>(g * (to_acc(dout[at]) - db_mean - xhat * dw_mean));
  });
}

// ---- launchers ------------------------------------------------------------------------------------
// Ranges per channel: blocks for ~2 waves of an H100/H200 (132 SMs x 8 blocks of 256 threads), at
// least 1024 values each, and 2 x C x chunks partials (of acc_t<T>) no more than the output's
// C x M values of T can hold: chunks <= M / 2 (M / 4 for the 16-bit types).
struct Chunking {
  int chunks;
  int64_t chunk;
};
static Chunking batch_norm_chunking(int64_t M, int C, int partials_per_value) {
  if (M == 0) return {1, 0};
  int64_t chunks = std::min<int64_t>((2 * 132 * 8 + C - 1) / C, (M + 1023) / 1024);
  chunks = std::max<int64_t>(std::min<int64_t>(chunks, M / (2 * partials_per_value)), 1);
  const int64_t chunk = (M + chunks - 1) / chunks;
  return {int((M + chunk - 1) / chunk), chunk};
}
template <class T>
static Chunking batch_norm_chunking(int64_t M, int C) {
  return batch_norm_chunking(M, C, int(sizeof(acc_t<T>) / sizeof(T)));
}

template <class T>
void batch_norm_forward_training(T* out, acc_t<T>* mean, acc_t<T>* invstd, acc_t<T>* running_mean,
                                 acc_t<T>* running_var, const T* inp, const acc_t<T>* weight,
                                 const acc_t<T>* bias, int64_t N, int C, int64_t HW,
                                 double momentum, double eps, cudaStream_t stream) {
  using A = acc_t<T>;
  if (C == 0 || N * HW == 0) return;
  const Chunking k = batch_norm_chunking<T>(N * HW, C);
  const int64_t blocks = int64_t(C) * k.chunks;
  // (C, chunks) each, in the output until it is written
  A* part_mean = k.chunks == 1 ? mean : reinterpret_cast<A*>(out);
  A* part_m2 = k.chunks == 1 ? invstd : part_mean + blocks;
  LAUNCH((batch_norm_partial_stats_kernel<T>), unsigned(blocks), kBatchNormThreads,
         kWarpSize * sizeof(A), stream)(part_mean, part_m2, inp, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_partial_stats_kernel");
  LAUNCH((batch_norm_finalize_stats_kernel<A>), blocks_for(C), kBlockSize, 0, stream)(
      mean, invstd, running_mean, running_var, part_mean, part_m2, N * HW, C, k.chunks, k.chunk,
      A(momentum), A(eps));
  CHECK_LAUNCH("batch_norm_finalize_stats_kernel");
  LAUNCH((batch_norm_normalize_kernel<T>), unsigned(blocks), kBatchNormThreads, 0, stream)(
      out, inp, mean, invstd, weight, bias, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_normalize_kernel");
}

template <class T>
void batch_norm_forward_inference(T* out, acc_t<T>* mean, acc_t<T>* invstd, const T* inp,
                                  const acc_t<T>* weight, const acc_t<T>* bias,
                                  const acc_t<T>* running_mean, const acc_t<T>* running_var,
                                  int64_t N, int C, int64_t HW, double eps, cudaStream_t stream) {
  using A = acc_t<T>;
  if (C == 0) return;
  LAUNCH((batch_norm_inference_stats_kernel<A>), blocks_for(C), kBlockSize, 0, stream)(
      mean, invstd, running_mean, running_var, C, A(eps));
  CHECK_LAUNCH("batch_norm_inference_stats_kernel");
  if (N * HW == 0) return;
  const Chunking k = batch_norm_chunking<T>(N * HW, C);
  LAUNCH((batch_norm_normalize_kernel<T>), unsigned(int64_t(C) * k.chunks), kBatchNormThreads, 0,
         stream)(out, inp, mean, invstd, weight, bias, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_normalize_kernel");
}

template <class T>
void batch_norm_backward(T* dinp, acc_t<T>* dweight, acc_t<T>* dbias, const T* dout, const T* inp,
                         const acc_t<T>* weight, const acc_t<T>* mean, const acc_t<T>* invstd,
                         int64_t N, int C, int64_t HW, bool training, cudaStream_t stream) {
  using A = acc_t<T>;
  if (C == 0) return;
  const Chunking k = batch_norm_chunking<T>(N * HW, C);
  const int64_t blocks = int64_t(C) * k.chunks;
  // (C, chunks) each, in dx until it is written
  A* part_dy = k.chunks == 1 ? dbias : reinterpret_cast<A*>(dinp);
  A* part_dy_xhat = k.chunks == 1 ? dweight : part_dy + blocks;
  LAUNCH((batch_norm_partial_grads_kernel<T>), unsigned(blocks), kBatchNormThreads,
         kWarpSize * sizeof(A),
         stream)(part_dy, part_dy_xhat, dout, inp, mean, invstd, N, C, HW, k.chunks, k.chunk);
  CHECK_LAUNCH("batch_norm_partial_grads_kernel");
  if (k.chunks > 1) {
    LAUNCH((batch_norm_finalize_grads_kernel<A>), blocks_for(C), kBlockSize, 0, stream)(
        dweight, dbias, part_dy, part_dy_xhat, C, k.chunks);
    CHECK_LAUNCH("batch_norm_finalize_grads_kernel");
  }
  if (N * HW == 0) return;
  LAUNCH((batch_norm_backward_data_kernel<T>), unsigned(blocks), kBatchNormThreads, 0, stream)(
      dinp, dout, inp, weight, mean, invstd, dweight, dbias, N, C, HW, k.chunks, k.chunk, training);
  CHECK_LAUNCH("batch_norm_backward_data_kernel");
}

#define INSTANTIATE(T)                                                                             \
  template void batch_norm_forward_training<T>(                                                    \
      T*, acc_t<T>*, acc_t<T>*, acc_t<T>*, acc_t<T>*, const T*, const acc_t<T>*, const acc_t<T>*,  \
      int64_t, int, int64_t, double, double, cudaStream_t);                                        \
  template void batch_norm_forward_inference<T>(                                                   \
      T*, acc_t<T>*, acc_t<T>*, const T*, const acc_t<T>*, const acc_t<T>*, const acc_t<T>*,       \
      const acc_t<T>*, int64_t, int, int64_t, double, cudaStream_t);                               \
  template void batch_norm_backward<T>(T*, acc_t<T>*, acc_t<T>*, const T*, const T*,               \
                                       const acc_t<T>*, const acc_t<T>*, const acc_t<T>*, int64_t, \
                                       int, int64_t, bool, cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
