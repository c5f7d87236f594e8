// 2-D convolution on tensor cores (nvcuda::wmma): forward, backward data, backward weight.
//
// conv2d version 4. The same three implicit GEMMs as conv2d.cu (its header comment writes out the
// index mapping: rows m, columns j, reduction d of each pass), with the product of each 64 x 64
// block tile done by the tensor cores, 16 x 16 fragments at a time:
//   float16:  m16n16k16 __half fragments, float32 accumulators (sm_70 and newer);
//   bfloat16: m16n16k16 __nv_bfloat16 fragments, float32 accumulators (sm_80 and newer);
//   float32:  m16n16k8 tf32 fragments (inputs rounded to 10 fraction bits), float32 accumulators,
//             sm_80 and newer: the opt-in TF32 mode (minicnn.backends.allow_tf32).
// Every sum is float32 from start to end; the output is rounded to T once. The bias (T) is added
// in float32 before that rounding.
//
// Versions (this file):
//   1. one block of 128 threads (4 warps) per 64 x 64 output tile; the reduction walked in slices
//      of 16, each slice of A (64 x 16) and B (16 x 64) gathered by index math straight from x, w
//      and dout (no im2col buffer), converted to T and staged in shared memory; each warp owns a
//      32 x 32 quarter of the tile: 2 x 2 accumulator fragments, 2 + 2 operand fragments per k
//      step. The tile then goes through shared memory (as float) to the output, coalesced.
//      Backward weight splits its long reduction (N·P·Q) into `splits` slices whose float32
//      partials (splits, K, Cg·R·S) a second kernel adds in a fixed order (deterministic).
//      Not yet done (toward cuDNN): double-buffered slices with cp.async, vector loads, an
//      incremental (c, r, s) walk instead of divisions per loaded element, larger warp tiles.
//
// Buffers: x, dx (N, C, H, W); w, dw (K, C/G, R, S); y, dy (N, K, P, Q); bias (K,), all T; the
// backward-weight workspace is float32 (splits, K, C/G·R·S) whatever T is.
#include <atomic>
#include <stdexcept>
#include <string>

#include "common.cuh"
#ifdef __CUDACC__
#include <mma.h>
#endif

namespace minicnn {
namespace kernels {
namespace tc {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 128;
// Shared-memory strides (elements), padded so rows start on different banks; each a multiple of
// 16 bytes and each fragment's first element 32-byte aligned, as load/store_matrix_sync require.
constexpr int kLdA = kBK + 8;  // As (BM, BK), row-major
constexpr int kLdB = kBN + 8;  // Bs (BK, BN), row-major
constexpr int kLdC = kBM + 4;  // Cs (BN, BM): column j of the tile at Cs + j·kLdC (float)

// The fragment type and k-depth of T's tensor-core operation, and the oldest GPU that has it.
template <class T>
struct Mma {
  using type = T;
  static constexpr int k = 16, arch = sizeof(T) == 2 && !std::is_same<T, __half>::value ? 800 : 700;
};
#ifdef __CUDA_ARCH__
constexpr int kArch = __CUDA_ARCH__;
#else
constexpr int kArch = 1000;  // the emulator (and nvcc's host pass) has every operation
#endif

// mma.h declares tf32 (and bf16 fragments) only for sm_80 and newer: below, a stand-in keeps the
// templates well-formed, and the kernel body that would use it is discarded (kArch < Mma::arch).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
template <>
struct Mma<float> {
  using type = float;
  static constexpr int k = 8, arch = 800;
};
__device__ __forceinline__ float to_tf32(float v) {
  return v;
}
#else
template <>
struct Mma<float> {
  using type = wmma::precision::tf32;
  static constexpr int k = 8, arch = 800;
};
__device__ __forceinline__ float to_tf32(float v) {
  return wmma::__float_to_tf32(v);
}
#endif

__device__ __forceinline__ bool in(int i, int n) {
  return unsigned(i) < unsigned(n);
}

// ---- the three problems: A[m, d], B[d, j] and where output (m, j) goes; per group g -----------
template <class T>
struct Forward {  // rows (n, p, q), columns k, reduction (c, r, s)
  T* out;
  const T *inp, *weight, *bias;
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return g.N * g.P * g.Q; }
  __device__ int cols() const { return g.K / g.G; }
  __device__ int64_t depth() const { return int64_t(g.C / g.G) * g.R * g.S; }
  __device__ T a(int64_t m, int64_t d) const {
    const int PQ = g.P * g.Q, RS = g.R * g.S;
    const int64_t n = m / PQ;
    const int pq = int(m - n * PQ), c = int(d) / RS, rs = int(d) - c * RS;
    const int h = (pq / g.Q) * g.sh - g.ph + (rs / g.S) * g.dh;
    const int w = (pq % g.Q) * g.sw - g.pw + (rs % g.S) * g.dw;
    if (!in(h, g.H) || !in(w, g.W)) return from_acc<T>(0);
    return inp[((n * g.C + grp * (g.C / g.G) + c) * g.H + h) * g.W + w];
  }
  __device__ T b(int64_t d, int j) const {
    return weight[(int64_t(grp) * cols() + j) * depth() + d];
  }
  __device__ void store(int64_t m, int j, float v, int) const {
    const int PQ = g.P * g.Q, k = grp * cols() + j;
    const int64_t n = m / PQ;
    if (bias != nullptr) v += to_acc(bias[k]);
    out[(n * g.K + k) * PQ + (m - n * PQ)] = from_acc<T>(v);
  }
};

template <class T>
struct BackwardData {  // rows (n, h, w), columns c, reduction (k, r, s)
  T* dinp;
  const T *dout, *weight;
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return g.N * g.H * g.W; }
  __device__ int cols() const { return g.C / g.G; }
  __device__ int64_t depth() const { return int64_t(g.K / g.G) * g.R * g.S; }
  __device__ T a(int64_t m, int64_t d) const {
    const int HW = g.H * g.W, RS = g.R * g.S;
    const int64_t n = m / HW;
    const int hw = int(m - n * HW), k = int(d) / RS, rs = int(d) - k * RS;
    const int th = hw / g.W + g.ph - (rs / g.S) * g.dh, tw = hw % g.W + g.pw - (rs % g.S) * g.dw;
    if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) return from_acc<T>(0);
    const int p = th / g.sh, q = tw / g.sw;
    if (p >= g.P || q >= g.Q) return from_acc<T>(0);
    return dout[((n * g.K + grp * (g.K / g.G) + k) * g.P + p) * g.Q + q];
  }
  __device__ T b(int64_t d, int j) const {
    const int RS = g.R * g.S, k = int(d) / RS, rs = int(d) - k * RS;
    return weight[((int64_t(grp) * (g.K / g.G) + k) * cols() + j) * RS + rs];
  }
  __device__ void store(int64_t m, int j, float v, int) const {
    const int HW = g.H * g.W;
    const int64_t n = m / HW;
    dinp[(n * g.C + grp * cols() + j) * HW + (m - n * HW)] = from_acc<T>(v);
  }
};

template <class T>
struct BackwardWeight {  // rows k, columns (c, r, s), reduction (n, p, q); float32 partials
  float* partial;        // (splits, K, Cg·R·S)
  const T *dout, *inp;
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return g.K / g.G; }
  __device__ int cols() const { return (g.C / g.G) * g.R * g.S; }
  __device__ int64_t depth() const { return g.N * g.P * g.Q; }
  __device__ T a(int64_t m, int64_t d) const {
    const int PQ = g.P * g.Q;
    const int64_t n = d / PQ;
    return dout[(n * g.K + grp * rows() + m) * PQ + (d - n * PQ)];
  }
  __device__ T b(int64_t d, int j) const {  // the forward's A[d, j]
    return Forward<T>{nullptr, inp, nullptr, nullptr, g, grp}.a(d, j);
  }
  __device__ void store(int64_t m, int j, float v, int split) const {
    partial[(int64_t(split) * g.K + grp * rows() + m) * cols() + j] = v;
  }
};

// ---- the kernel ---------------------------------------------------------------------------------
// Grid (row tiles, column tiles, groups x splits); the reduction of split s is
// [s·chunk, (s + 1)·chunk) (chunk a multiple of kBK).
template <class T, class Problem>
__device__ void stage_slice(T* As, T* Bs, const Problem& pb, int64_t m0, int j0, int64_t d0,
                            int64_t d_end) {
  for (int e = threadIdx.x; e < kBM * kBK; e += kThreads) {
    const int mi = e / kBK, di = e % kBK;
    const int64_t m = m0 + mi, d = d0 + di;
    As[mi * kLdA + di] = m < pb.rows() && d < d_end ? pb.a(m, d) : from_acc<T>(0);
  }
  for (int e = threadIdx.x; e < kBK * kBN; e += kThreads) {
    const int di = e / kBN, ji = e % kBN;
    const int64_t d = d0 + di;
    Bs[di * kLdB + ji] = d < d_end && j0 + ji < pb.cols() ? pb.b(d, j0 + ji) : from_acc<T>(0);
  }
}

// acc[i][j] += As(warp rows i) · Bs(warp columns j) over the slice.
template <class T>
__device__ void multiply_slice(
    const T* As, const T* Bs, int wm, int wn,
    wmma::fragment<wmma::accumulator, 16, 16, Mma<T>::k, float> (&acc)[2][2]) {
  using M = Mma<T>;
  for (int kk = 0; kk < kBK; kk += M::k) {
    wmma::fragment<wmma::matrix_a, 16, 16, M::k, typename M::type, wmma::row_major> a[2];
    wmma::fragment<wmma::matrix_b, 16, 16, M::k, typename M::type, wmma::row_major> b[2];
    for (int i = 0; i < 2; ++i) {
      wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * kLdA + kk, kLdA);
      wmma::load_matrix_sync(b[i], Bs + kk * kLdB + wn + 16 * i, kLdB);
      if constexpr (std::is_same<T, float>::value) {  // TF32: round each element once
        for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = to_tf32(a[i].x[t]);
        for (int t = 0; t < b[i].num_elements; ++t) b[i].x[t] = to_tf32(b[i].x[t]);
      }
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
  }
}

template <class T, class Problem>
__global__ void __launch_bounds__(kThreads)
    conv2d_wmma_kernel(Problem pb, int groups, int64_t chunk) {
  if constexpr (kArch >= Mma<T>::arch) {
    DYN_SHARED(unsigned char, smem);
    T* As = reinterpret_cast<T*>(smem);          // (BM, kLdA)
    T* Bs = As + kBM * kLdA;                     // (BK, kLdB)
    float* Cs = reinterpret_cast<float*>(smem);  // (BN, kLdC), after the main loop
    pb.grp = int(blockIdx.z % unsigned(groups));
    const int split = int(blockIdx.z / unsigned(groups));
    const int64_t m0 = int64_t(blockIdx.x) * kBM, d_begin = split * chunk;
    const int64_t d_end = d_begin + chunk < pb.depth() ? d_begin + chunk : pb.depth();
    const int j0 = int(blockIdx.y) * kBN, warp = threadIdx.x / kWarpSize;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // this warp's quarter of the tile
    wmma::fragment<wmma::accumulator, 16, 16, Mma<T>::k, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int64_t d0 = d_begin; d0 < d_end; d0 += kBK) {
      stage_slice(As, Bs, pb, m0, j0, d0, d_end);
      __syncthreads();
      multiply_slice(As, Bs, wm, wn, acc);
      __syncthreads();  // before the next slice (or Cs) overwrites As and Bs
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(Cs + (wn + 16 * j) * kLdC + wm + 16 * i, acc[i][j], kLdC,
                                wmma::mem_col_major);
    __syncthreads();
    for (int e = threadIdx.x; e < kBM * kBN; e += kThreads) {
      const int mi = e % kBM, ji = e / kBM;  // consecutive threads: consecutive rows
      if (m0 + mi < pb.rows() && j0 + ji < pb.cols())
        pb.store(m0 + mi, j0 + ji, Cs[ji * kLdC + mi], split);
    }
  } else {
    __trap();  // the launcher refuses this GPU first (require_arch)
  }
}

// dw (K, Cg·R·S) = Σ over the splits of the float32 partials, in split order; dbias likewise.
template <class T>
__global__ void conv2d_wmma_reduce_kernel(T* out, const float* partial, int64_t n, int splits) {
  const int64_t i = global_index();
  if (i >= n) return;
  float sum = 0;
  for (int s = 0; s < splits; ++s) sum += partial[s * n + i];
  out[i] = from_acc<T>(sum);
}

constexpr int kBiasThreads = 256;

template <class T>
__global__ void conv2d_wmma_bias_kernel(T* dbias, const T* dout, int64_t N, int K, int64_t PQ) {
  DYN_SHARED(float, scratch);  // (32,) for block_sum
  const int k = blockIdx.x;
  float sum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = threadIdx.x; i < PQ; i += blockDim.x)
      sum += to_acc(dout[(n * K + k) * PQ + i]);
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) dbias[k] = from_acc<T>(sum);
}

// ---- launchers ----------------------------------------------------------------------------------
std::atomic<int64_t> g_launches{0};

template <class T>
const char* what() {
  if (std::is_same<T, float>::value) return "TF32";
  return std::is_same<T, __half>::value ? "float16" : "bfloat16";
}

template <class T, class Problem>
void launch(const char* op, const Problem& pb, int64_t rows, int64_t cols, int64_t depth,
            int groups, int splits, cudaStream_t stream) {
  require_arch(op, Mma<T>::arch, what<T>());
  if (splits < 1) throw std::invalid_argument(std::string(op) + ": splits must be >= 1");
  if (rows == 0 || cols == 0) return;
  const int64_t chunk = ((depth + splits - 1) / splits + kBK - 1) / kBK * kBK;
  const int64_t gx = (rows + kBM - 1) / kBM, gy = (cols + kBN - 1) / kBN;
  const int64_t gz = int64_t(groups) * splits;
  if (gx > INT32_MAX || gy > 65535 || gz > 65535)
    throw std::invalid_argument(std::string(op) + ": the tensor-core grid (" + std::to_string(gx) +
                                ", " + std::to_string(gy) + ", " + std::to_string(gz) +
                                ") is too large");
  constexpr size_t smem =
      std::max((kBM * kLdA + kBK * kLdB) * sizeof(T), kBN * kLdC * sizeof(float));
  LAUNCH((conv2d_wmma_kernel<T, Problem>), dim3(unsigned(gx), unsigned(gy), unsigned(gz)), kThreads,
         smem, stream)(pb, groups, chunk);
  CHECK_LAUNCH("conv2d_wmma_kernel");
  ++g_launches;
}

}  // namespace tc

int64_t conv2d_wmma_launches() {
  return tc::g_launches.load();
}

int conv2d_wmma_splits(const Conv2d& g, int pass) {
  if (pass != kConvBackwardWeight) return 1;
  const int64_t tiles = ((g.K / g.G + tc::kBM - 1) / tc::kBM) *
                        ((int64_t(g.C / g.G) * g.R * g.S + tc::kBN - 1) / tc::kBN) * g.G;
  const int64_t depth = g.N * g.P * g.Q;
  int64_t splits = std::min<int64_t>((2 * 132 + tiles - 1) / tiles, (depth + 1023) / 1024);
  splits = std::min<int64_t>(splits, 65535 / std::max(g.G, 1));
  return int(std::max<int64_t>(splits, 1));
}

// Rejects what version 4 can't run: float64 (no tensor cores), a split forward or backward data.
template <class T>
static void check_runs(const char* op, int splits, bool may_split) {
  if (std::is_same<T, double>::value)
    throw std::invalid_argument(std::string(op) +
                                ": version 4 (tensor cores) takes float32 (TF32), float16 or "
                                "bfloat16, not float64");
  if (splits != 1 && !may_split)
    throw std::invalid_argument(std::string(op) + ": version 4 does not split");
}

template <class T>
void conv2d_forward_wmma(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g,
                         int splits, cudaStream_t stream) {
  check_runs<T>("conv2d_forward", splits, false);
  if constexpr (!std::is_same<T, double>::value)
    tc::launch<T>("conv2d_forward", tc::Forward<T>{out, inp, weight, bias, g, 0}, g.N * g.P * g.Q,
                  g.K / g.G, int64_t(g.C / g.G) * g.R * g.S, g.G, 1, stream);
}

template <class T>
void conv2d_backward_data_wmma(T* dinp, const T* dout, const T* weight, const Conv2d& g, int splits,
                               cudaStream_t stream) {
  check_runs<T>("conv2d_backward_data", splits, false);
  if constexpr (!std::is_same<T, double>::value)
    tc::launch<T>("conv2d_backward_data", tc::BackwardData<T>{dinp, dout, weight, g, 0},
                  g.N * g.H * g.W, g.C / g.G, int64_t(g.K / g.G) * g.R * g.S, g.G, 1, stream);
}

template <class T>
void conv2d_backward_weight_wmma(T* dweight, T* workspace, const T* dout, const T* inp,
                                 const Conv2d& g, int splits, cudaStream_t stream) {
  const char* op = "conv2d_backward_weight";
  check_runs<T>(op, splits, true);
  if constexpr (!std::is_same<T, double>::value) {
    if (workspace == nullptr) throw std::invalid_argument(std::string(op) + ": needs a workspace");
    float* partial = reinterpret_cast<float*>(workspace);  // (splits, K, Cg·R·S) float32
    const int64_t cols = int64_t(g.C / g.G) * g.R * g.S, n = g.K * cols;
    tc::launch<T>(op, tc::BackwardWeight<T>{partial, dout, inp, g, 0}, g.K / g.G, cols,
                  g.N * g.P * g.Q, g.G, splits, stream);
    if (n == 0) return;
    LAUNCH((tc::conv2d_wmma_reduce_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(
        dweight, partial, n, splits);
    CHECK_LAUNCH("conv2d_wmma_reduce_kernel");
  }
}

// ---- the float16 / bfloat16 conv2d launchers (kernels.h): version 4 only ------------------------
static void check_version(const char* op, int version) {
  if (version != 4)
    throw std::invalid_argument(std::string(op) +
                                ": float16 / bfloat16 convolutions run on tensor cores only "
                                "(version 4), got version " +
                                std::to_string(version));
}

#define SPECIALIZE(T)                                                                            \
  template <>                                                                                    \
  void conv2d_forward<T>(T * out, const T* inp, const T* weight, const T* bias, const Conv2d& g, \
                         int version, int, int splits, T*, cudaStream_t stream) {                \
    check_version("conv2d_forward", version);                                                    \
    conv2d_forward_wmma(out, inp, weight, bias, g, splits, stream);                              \
  }                                                                                              \
  template <>                                                                                    \
  void conv2d_backward_data<T>(T * dinp, const T* dout, const T* weight, const Conv2d& g,        \
                               int version, int, int splits, T*, cudaStream_t stream) {          \
    check_version("conv2d_backward_data", version);                                              \
    conv2d_backward_data_wmma(dinp, dout, weight, g, splits, stream);                            \
  }                                                                                              \
  template <>                                                                                    \
  void conv2d_backward_weight<T>(T * dweight, T * workspace, const T* dout, const T* inp,        \
                                 const Conv2d& g, int version, int, int splits,                  \
                                 cudaStream_t stream) {                                          \
    check_version("conv2d_backward_weight", version);                                            \
    conv2d_backward_weight_wmma(dweight, workspace, dout, inp, g, splits, stream);               \
  }                                                                                              \
  template <>                                                                                    \
  void conv2d_backward_bias<T>(T * dbias, const T* dout, int64_t N, int K, int64_t PQ,           \
                               cudaStream_t stream) {                                            \
    if (K == 0) return;                                                                          \
    LAUNCH((tc::conv2d_wmma_bias_kernel<T>), K, tc::kBiasThreads, kWarpSize * sizeof(float),     \
           stream)(dbias, dout, N, K, PQ);                                                       \
    CHECK_LAUNCH("conv2d_wmma_bias_kernel");                                                     \
  }
SPECIALIZE(__half)
SPECIALIZE(__nv_bfloat16)
#undef SPECIALIZE

#define INSTANTIATE(T)                                                                         \
  template void conv2d_forward_wmma<T>(T*, const T*, const T*, const T*, const Conv2d&, int,   \
                                       cudaStream_t);                                          \
  template void conv2d_backward_data_wmma<T>(T*, const T*, const T*, const Conv2d&, int,       \
                                             cudaStream_t);                                    \
  template void conv2d_backward_weight_wmma<T>(T*, T*, const T*, const T*, const Conv2d&, int, \
                                               cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)  // double: throws (no tensor cores)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
