// 2-D convolution on tensor cores (nvcuda::wmma): forward, backward data, backward weight.
//
// conv2d version 4. The same three implicit GEMMs as conv2d.cu (its header comment writes out the
// index mapping: rows m, columns j, reduction d of each pass), with the product of each 128 x 128
// block tile done by the tensor cores, 16 x 16 fragments at a time:
//   float16:  m16n16k16 __half fragments, float32 accumulators (sm_70 and newer);
//   bfloat16: m16n16k16 __nv_bfloat16 fragments, float32 accumulators (sm_80 and newer);
//   float32:  m16n16k8 tf32 fragments (inputs rounded to 10 fraction bits), float32 accumulators,
//             sm_80 and newer: the opt-in TF32 mode (minicnn.backends.allow_tf32).
// Every sum is float32 from start to end; the output is rounded to T once. The bias (T) is added
// in float32 before that rounding.
//
// Versions (this file):
//   1. one block of 128 threads (4 warps) per 64 x 64 output tile, each element of a 16-deep slice
//      gathered with its own index arithmetic (64-bit divisions included), 2 x 2 fragments a warp.
//   2. (now) one block of 256 threads (8 warps, __launch_bounds__(256, 2)) per 128 x 128 tile; each
//      warp owns 64 x 32 of it: 4 x 2 accumulator fragments, so each A fragment feeds 2 mma_sync
//      and each B fragment 4. The gather has no division in the main loop
//      (conv2d_wmma_problems.cuh): a row of A / column of B is split into (byte address, h, w) once
//      per block into a shared table, and the reduction index d advances by digits with carries;
//      each element is one predicated ld.global.nc (no branch) and one 16/32-bit shared store,
//      moved as raw bits; float is rounded to TF32 there, once. Slices are double-buffered in
//      shared memory: slice i + 1 is gathered into the other buffer before slice i's mma_sync, one
//      barrier a slice. The output goes through a per-warp 16 x 16 float scratch, a fragment at a
//      time. Backward weight splits its long reduction (N·P·Q) into `splits` slices whose float32
//      partials (splits, K, Cg·R·S) a second kernel adds in a fixed order (deterministic).
//      Backward data with a stride > 1 pays one division per element (p = th / sh): a separate
//      instantiation, so the unit-stride one has none.
//   3. (now, where channels allow) the NHWC path, conv2d_wmma_nhwc.cuh and _nhwc_bw.cuh: the
//      operands converted to channels-last in a workspace, 16-byte vectors copied straight into
//      shared memory (cp.async on sm_80+; a load and a store on the emulator and older GPUs), the
//      kernel of version 2 (the NCHW gather) kept for the other channel counts (the RGB stem).
//   4. (now) NHWC kernels of 4 warps with 64 x 64 warp tiles (128 threads), 128-byte one-tap slices
//      where the channels allow, fragments read at constant offsets (conv2d_wmma_nhwc.cuh).
//
// Buffers: x, dx (N, C, H, W); w, dw (K, C/G, R, S); y, dy (N, K, P, Q); bias (K,), all T; the
// backward-weight workspace is float32 (splits, K, C/G·R·S) whatever T is.
#include <atomic>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "conv2d_wmma_problems.cuh"
#ifdef __CUDACC__
#include <mma.h>
#endif

namespace minicnn {
namespace kernels {
namespace tc {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 128, kBN = 128, kBK = 16, kThreads = 256;
// 8 warps, 2 along m by 4 along n, each owning a 64 x 32 piece of the tile: kWM x kWN fragments.
constexpr int kWarpsM = 2, kWM = 4, kWN = 2;
static_assert(kWarpsM * kWM * 16 == kBM && (kThreads / 32 / kWarpsM) * kWN * 16 == kBN, "tiling");
// Shared-memory strides (elements), padded so rows start on different banks; each a multiple of
// 16 bytes and each fragment's first element 32-byte aligned, as load/store_matrix_sync require.
constexpr int kLdA = kBK + 8;  // As (BM, BK), row-major
constexpr int kLdB = kBN + 8;  // Bs (BK, BN), row-major
constexpr int kLdS = 16 + 4;   // a warp's output scratch (16, 16), column-major (float)
// Two slices of As and Bs, then the fixed parts of the tile's rows and columns (tables of Part).
template <class T>
constexpr size_t kTileBytes = 2 * (kBM * kLdA + kBK * kLdB) * sizeof(T);

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

// ---- the kernel ---------------------------------------------------------------------------------
// Each thread gathers, per slice, kPer elements of A and kPer of B: reduction index d0 + di
// (di = tid % kBK, the same for A and B) of the tile's rows/columns tid / kBK + kRowStep·i.
constexpr int kPer = kBM * kBK / kThreads, kRowStep = kThreads / kBK;
static_assert(kBM == kBN && kPer * kThreads == kBM * kBK, "A and B share the gather mapping");

template <class T>
using Acc = wmma::fragment<wmma::accumulator, 16, 16, Mma<T>::k, float>;

// An element as the tensor cores read it: 16-bit types as they are, float rounded to TF32 (once,
// here: the fragments loaded from shared memory are already TF32).
template <class T>
__device__ __forceinline__ Raw<T> operand(Raw<T> v) {
  if constexpr (std::is_same<T, float>::value) return __float_as_uint(to_tf32(__uint_as_float(v)));
  return v;
}

template <class T, int WM, int WN>
__device__ __forceinline__ void zero(Acc<T> (&acc)[WM][WN]) {
#pragma unroll
  for (int i = 0; i < WM; ++i)
#pragma unroll
    for (int j = 0; j < WN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
}

// A Part from a shared table in one 16-byte load (field by field it is two 8-byte loads);
// little-endian, as the GPU and the emulator's hosts are.
__device__ __forceinline__ Part load_part(const Part* p) {
  const int4 v = *reinterpret_cast<const int4*>(p);
  return Part{int64_t((uint64_t(unsigned(v.y)) << 32) | unsigned(v.x)), v.z, v.w};
}

// A slice into As (BM, kLdA) and Bs (BK, kLdB), both row-major, straight from global memory.
template <class T, class Problem>
__device__ __forceinline__ void load_slice(T* As, T* Bs, const Problem& pb, const Part* fa,
                                           const Part* fb, const Digits& x, bool valid) {
  const Part va = pb.a_walk(x, valid), vb = pb.b_walk(x, valid);
  const int u = threadIdx.x / kBK, di = threadIdx.x % kBK;
  Raw<T>* as = reinterpret_cast<Raw<T>*>(As) + u * kLdA + di;
  Raw<T>* bs = reinterpret_cast<Raw<T>*>(Bs) + di * kLdB + u;
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    as[kRowStep * i * kLdA] = operand<T>(pb.a(load_part(fa + u + kRowStep * i), va));
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    bs[kRowStep * i] = operand<T>(pb.b(load_part(fb + u + kRowStep * i), vb));
}

// Where a slice's operands sit in shared memory: A[m, k] at As[m·kM + k·kKA] and B[k, n] at
// Bs[n·kN + k·kKB]. One stride of each is 1: it fixes the layout (row- or column-major), and the
// other is the leading dimension.
template <int kM, int kKA, int kN, int kKB>
struct SliceLayout {
  static_assert((kM == 1 || kKA == 1) && (kN == 1 || kKB == 1), "one unit stride each");
  static constexpr int m = kM, ka = kKA, n = kN, kb = kKB, lda = kM * kKA, ldb = kN * kKB;
  using A = typename std::conditional<kKA == 1, wmma::row_major, wmma::col_major>::type;
  using B = typename std::conditional<kN == 1, wmma::row_major, wmma::col_major>::type;
};

// load_matrix_sync from shared memory. nvcc reads bfloat16 and tf32 fragments with generic loads
// (4 LD.E with 64-bit addresses each, where float16's are one LDSM); the same PTX wmma.load with
// the .shared state space keeps them shared loads. The fragment's registers are filled by that
// instruction as mma.h's own call would fill them: nothing here depends on their layout.
#define MINICNN_WMMA_LOAD(instruction)                          \
  asm volatile(instruction " {%0, %1, %2, %3}, [%4], %5;\n"     \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) \
               : "r"(at), "r"(ldm))
#define MINICNN_WMMA_LOADS(shape_type)                                                    \
  constexpr bool a = std::is_same<Use, wmma::matrix_a>::value;                            \
  constexpr bool row = std::is_same<Layout, wmma::row_major>::value;                      \
  if constexpr (a && row) MINICNN_WMMA_LOAD("wmma.load.a.sync.aligned.row." shape_type);  \
  if constexpr (a && !row) MINICNN_WMMA_LOAD("wmma.load.a.sync.aligned.col." shape_type); \
  if constexpr (!a && row) MINICNN_WMMA_LOAD("wmma.load.b.sync.aligned.row." shape_type); \
  if constexpr (!a && !row) MINICNN_WMMA_LOAD("wmma.load.b.sync.aligned.col." shape_type);

template <class T, class Use, class Layout, class Frag>
__device__ __forceinline__ void load_shared(Frag& f, const T* p, unsigned ldm) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!std::is_same<T, __half>::value) {
    static_assert(sizeof(f.x) == 16, "4 registers");
    unsigned* r = reinterpret_cast<unsigned*>(f.x);
    const unsigned at = unsigned(__cvta_generic_to_shared(p));
    if constexpr (std::is_same<T, float>::value) {
      MINICNN_WMMA_LOADS("m16n16k8.shared.tf32")
    } else {
      MINICNN_WMMA_LOADS("m16n16k16.shared.bf16")
    }
    return;
  }
#endif
  wmma::load_matrix_sync(f, p, ldm);
}
#undef MINICNN_WMMA_LOADS
#undef MINICNN_WMMA_LOAD

// acc[i][j] += A(warp rows i) · B(warp columns j) over a slice of kDepth: each A fragment feeds
// WN mma_sync, each B fragment WM.
template <class T, int kDepth, class L, int WM, int WN>
__device__ __forceinline__ void multiply_slice(const T* As, const T* Bs, int wm, int wn,
                                               Acc<T> (&acc)[WM][WN]) {
  using M = Mma<T>;
#pragma unroll
  for (int kk = 0; kk < kDepth; kk += M::k) {
    wmma::fragment<wmma::matrix_b, 16, 16, M::k, typename M::type, typename L::B> b[WN];
#pragma unroll
    for (int j = 0; j < WN; ++j)
      load_shared<T, wmma::matrix_b, typename L::B>(b[j], Bs + (wn + 16 * j) * L::n + kk * L::kb,
                                                    L::ldb);
#pragma unroll
    for (int i = 0; i < WM; ++i) {
      wmma::fragment<wmma::matrix_a, 16, 16, M::k, typename M::type, typename L::A> a;
      load_shared<T, wmma::matrix_a, typename L::A>(a, As + (wm + 16 * i) * L::m + kk * L::ka,
                                                    L::lda);
#pragma unroll
      for (int j = 0; j < WN; ++j) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
    }
  }
}

// The warp's accumulators to the output, one fragment at a time through a 16 x 16 float scratch
// (column-major: consecutive lanes store consecutive rows m).
template <class T, class Problem, int WM, int WN>
__device__ void store_tile(const Problem& pb, float* scratch, Acc<T> (&acc)[WM][WN], int64_t m0,
                           int j0, int split) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int i = 0; i < WM; ++i)
#pragma unroll
    for (int j = 0; j < WN; ++j) {
      wmma::store_matrix_sync(scratch, acc[i][j], kLdS, wmma::mem_col_major);
      __syncwarp();
      for (int e = lane; e < 256; e += kWarpSize) {
        const int64_t m = m0 + 16 * i + e % 16;
        const int col = j0 + 16 * j + e / 16;
        if (m < pb.rows() && col < pb.cols())
          pb.store(m, col, scratch[(e / 16) * kLdS + e % 16], split);
      }
      __syncwarp();  // before the next fragment overwrites the scratch
    }
}

// Grid (row tiles, column tiles, groups x splits); the reduction of split s is
// [s·chunk, (s + 1)·chunk) (chunk a multiple of kBK). Slices double-buffered in shared memory:
// the next slice is gathered into the other buffer before this slice's mma_sync; one barrier a
// slice.
template <class T, class Problem>
__global__ void __launch_bounds__(kThreads, 2)
    conv2d_wmma_kernel(Problem pb, int groups, int64_t chunk) {
  if constexpr (kArch >= Mma<T>::arch) {
    DYN_SHARED(unsigned char, smem);
    T* tiles = reinterpret_cast<T*>(smem);                     // 2 x (As (BM, kLdA), Bs (BK, kLdB))
    Part* fa = reinterpret_cast<Part*>(smem + kTileBytes<T>);  // (BM,) rows of A
    Part* fb = fa + kBM;                                       // (BN,) columns of B
    pb.grp = int(blockIdx.z % unsigned(groups));
    const int split = int(blockIdx.z / unsigned(groups));
    const int64_t m0 = int64_t(blockIdx.x) * kBM, d_begin = split * chunk;
    const int64_t d_end = d_begin + chunk < pb.depth() ? d_begin + chunk : pb.depth();
    const int j0 = int(blockIdx.y) * kBN, warp = threadIdx.x / kWarpSize;
    const int wm = (warp % kWarpsM) * kWM * 16, wn = (warp / kWarpsM) * kWN * 16;
    for (int e = threadIdx.x; e < kBM; e += kThreads) {
      fa[e] = pb.a_fixed(m0 + e);
      fb[e] = pb.b_fixed(j0 + e);
    }
    Acc<T> acc[kWM][kWN];
    zero<T>(acc);
    const int ML = pb.radix_mid(), L = pb.radix_lo();
    const Digits step = split_digits(kBK, ML, L);
    int64_t d = d_begin + threadIdx.x % kBK;
    Digits x = split_digits(d, ML, L);
    constexpr int kSlice = kBM * kLdA + kBK * kLdB;  // elements of one buffer (As, Bs)
    __syncthreads();                                 // the tables
    load_slice(tiles, tiles + kBM * kLdA, pb, fa, fb, x, d < d_end);
    for (int64_t d0 = d_begin, buf = 0; d0 < d_end; d0 += kBK, buf ^= 1) {
      // this slice is in, and every warp is done with the other buffer (the previous slice)
      __syncthreads();
      const T* As = tiles + buf * kSlice;
      if (d0 + kBK < d_end) {  // the next slice's loads, in flight during this slice's mma_sync
        d += kBK;
        advance(x, step, ML, L);
        T* next = tiles + (buf ^ 1) * kSlice;
        load_slice(next, next + kBM * kLdA, pb, fa, fb, x, d < d_end);
      }
      multiply_slice<T, kBK, SliceLayout<kLdA, 1, 1, kLdB>>(As, As + kBM * kLdA, wm, wn, acc);
    }
    __syncthreads();  // the tiles become the warps' output scratch
    float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * kLdS;
    store_tile<T>(pb, scratch, acc, m0 + wm, j0 + wn, split);
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
  constexpr size_t smem = kTileBytes<T> + (kBM + kBN) * 16;  // 16: sizeof(Part)
  static_assert(smem <= 48 * 1024 && kThreads / 32 * 16 * kLdS * 4 <= kTileBytes<T>, "smem");
  LAUNCH((conv2d_wmma_kernel<T, Problem>), dim3(unsigned(gx), unsigned(gy), unsigned(gz)), kThreads,
         smem, stream)(pb, groups, chunk);
  CHECK_LAUNCH("conv2d_wmma_kernel");
  ++g_launches;
}

}  // namespace tc
}  // namespace kernels
}  // namespace minicnn

// The NHWC fast path, on the pieces above: its kernels and launchers.
#include "conv2d_wmma_nhwc.cuh"
#include "conv2d_wmma_nhwc_bw.cuh"

namespace minicnn {
namespace kernels {

int64_t conv2d_wmma_launches() {
  return tc::g_launches.load();
}

int64_t conv2d_wmma_nhwc_launches() {
  return tc::g_nhwc_launches.load();
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
                         int splits, cudaStream_t stream, T* workspace) {
  check_runs<T>("conv2d_forward", splits, false);
  if constexpr (!std::is_same<T, double>::value) {
    require_arch("conv2d_forward", tc::Mma<T>::arch, tc::what<T>());
    const tc::Forward<T> pb{{g, 0}, out, inp, weight, bias};
    if (workspace != nullptr && tc::nhwc_fits<T>(g.C / g.G, g.R, g.S, int64_t(g.H) * g.W * g.C))
      return tc::forward_nhwc(workspace, pb, stream);
    tc::launch<T>("conv2d_forward", pb, g.N * g.P * g.Q, g.K / g.G, int64_t(g.C / g.G) * g.R * g.S,
                  g.G, 1, stream);
  }
}

template <class T>
void conv2d_backward_data_wmma(T* dinp, const T* dout, const T* weight, const Conv2d& g, int splits,
                               cudaStream_t stream, T* workspace) {
  check_runs<T>("conv2d_backward_data", splits, false);
  if constexpr (!std::is_same<T, double>::value) {
    require_arch("conv2d_backward_data", tc::Mma<T>::arch, tc::what<T>());
    if (workspace != nullptr && tc::nhwc_fits<T>(g.K / g.G, g.R, g.S, int64_t(g.P) * g.Q * g.K))
      return tc::backward_data_nhwc(workspace,
                                    tc::BackwardData<T, true>{{g, 0}, dinp, dout, weight}, stream);
    const int64_t rows = g.N * g.H * g.W, depth = int64_t(g.K / g.G) * g.R * g.S;
    const char* op = "conv2d_backward_data";
    if (g.sh == 1 && g.sw == 1)  // no division per element
      tc::launch<T>(op, tc::BackwardData<T, true>{{g, 0}, dinp, dout, weight}, rows, g.C / g.G,
                    depth, g.G, 1, stream);
    else
      tc::launch<T>(op, tc::BackwardData<T, false>{{g, 0}, dinp, dout, weight}, rows, g.C / g.G,
                    depth, g.G, 1, stream);
  }
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
    if (tc::nhwc_bw_fits<T>(g))
      tc::backward_weight_nhwc(partial, dout, inp, g, splits, stream);
    else
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
                         int version, int, int splits, T* work, cudaStream_t stream) {           \
    check_version("conv2d_forward", version);                                                    \
    conv2d_forward_wmma(out, inp, weight, bias, g, splits, stream, work);                        \
  }                                                                                              \
  template <>                                                                                    \
  void conv2d_backward_data<T>(T * dinp, const T* dout, const T* weight, const Conv2d& g,        \
                               int version, int, int splits, T* work, cudaStream_t stream) {     \
    check_version("conv2d_backward_data", version);                                              \
    conv2d_backward_data_wmma(dinp, dout, weight, g, splits, stream, work);                      \
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
                                       cudaStream_t, T*);                                      \
  template void conv2d_backward_data_wmma<T>(T*, const T*, const T*, const Conv2d&, int,       \
                                             cudaStream_t, T*);                                \
  template void conv2d_backward_weight_wmma<T>(T*, T*, const T*, const T*, const Conv2d&, int, \
                                               cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)  // double: throws (no tensor cores)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
