// 2-D convolution: forward, backward data, backward weight, bias gradient.
//
//   y[n, k, p, q] = b[k] + Σ_{c, r, s} x[n, g Cg + c, p sh - ph + r dh, q sw - pw + s dw] · w[k, c, r, s]
//
// for k in group g = k / Kg (Cg = C/G input and Kg = K/G output channels per group); pixels outside
// the input read 0 (padding). Same semantics as the cpu conv (minicnn/backends/_np_conv.py).
//
// Versions:
//   1. naive forward: one thread per output element, looping over (c, r, s). Kept as the readable
//      reference and to test version 2 against.
//   2. implicit GEMM (the default; forward, backward data and backward weight): each pass is a
//      matrix product per group whose operands are read straight from x, w and dout by index math,
//      so no im2col buffer ever exists in memory. One tiled GEMM kernel serves all three passes:
//      a block computes a BM x BN tile of the output, walking the reduction in BK-deep slices that
//      it stages in shared memory; each thread keeps a TM x TN micro-tile of accumulators in
//      registers. Tiles (launcher-chosen by shape): 128x128 (8x8 per thread), 64x64 (4x4) and
//      32x32 (2x2), all 256 threads and BK = 8; the largest tile the GEMM fills well is picked
//      (conv2d_pick_tile), and backward weight splits its long reduction (N·P·Q) until the grid has
//      ~2 waves on an H100 (conv2d_backward_weight_splits). Not yet done (the next versions toward
//      cuDNN): double-buffered slices (load slice i+1 while computing slice i), vector loads, warp
//      tiles, and an incremental (c, r, s) walk instead of a division per loaded element.
//
// The index mapping, written once (per group g; Cg, Kg channels of the group):
//
//   forward         out (N·P·Q x Kg)   = A (N·P·Q x Cg·R·S) · B (Cg·R·S x Kg)
//                   row m = (n P + p) Q + q,   column j = k,   reduction d = (c R + r) S + s
//                   A[m, d] = x[n, g Cg + c, p sh - ph + r dh, q sw - pw + s dw]   (im2col of x)
//                   B[d, j] = w[g Kg + j, c, r, s]                                 (w^T)
//   backward data   dx (N·H·W x Cg)    = A (N·H·W x Kg·R·S) · B (Kg·R·S x Cg)   (transposed conv)
//                   row m = (n H + h) W + w,   column j = c,   reduction d = (k R + r) S + s
//                   A[m, d] = dout[n, g Kg + k, p, q] where h + ph - r dh = p sh and
//                             w + pw - s dw = q sw (exact division, 0 <= p < P, 0 <= q < Q), else 0
//                   B[d, j] = w[g Kg + k, j, r, s]
//   backward weight dw (Kg x Cg·R·S)   = A (Kg x N·P·Q) · B (N·P·Q x Cg·R·S)
//                   row m = k,   column j = (c R + r) S + s,   reduction d = (n P + p) Q + q
//                   A[m, d] = dout[n, g Kg + m, p, q],  B[d, j] = the forward's A[d, j]
//                   The reduction (long: the whole batch) is split into `splits` slices, each
//                   block writing its own partial (splits, K, Cg·R·S); a second kernel adds the
//                   partials in a fixed order (deterministic: no float atomics).
//   bias            db[k] = Σ_{n, p, q} dout[n, k, p, q]: one block per channel, a block reduction.
//
// Every flat index is int64_t; single extents (C, H, W, K, P, Q, R, S), a plane (H·W, P·Q) and the
// reduction of forward and backward data (Cg·R·S, Kg·R·S) must fit an int, the grid's y and z
// extents 65535 (conv2d_check rejects the rest before any launch). Index math inside a plane and
// along those reductions is 32-bit: a 64-bit division costs many times more on a GPU.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "conv2d_v2.cuh"  // version 2
#include "conv2d_v3.cuh"  // version 3

namespace minicnn {
namespace kernels {

// ---- version 1: naive forward, backward data, backward weight -------------------------------
template <class T>
__global__ void conv2d_forward_naive_kernel(T* out,           // (N, K, P, Q)
                                            const T* inp,     // (N, C, H, W)
                                            const T* weight,  // (K, Cg, R, S)
                                            const T* bias,    // (K,) or nullptr
                                            Conv2d g) {
  int64_t i = global_index();
  if (i >= g.N * g.K * g.P * g.Q) return;
  const int q = int(i % g.Q), p = int(i / g.Q % g.P), k = int(i / ((int64_t)g.Q * g.P) % g.K);
  const int64_t n = i / ((int64_t)g.Q * g.P * g.K);
  const int Cg = g.C / g.G, Kg = g.K / g.G, c0 = k / Kg * Cg;
  T acc = bias ? bias[k] : T(0);
  for (int c = 0; c < Cg; ++c) {
    const T* x = inp + (n * g.C + c0 + c) * g.H * g.W;         // (H, W)
    const T* wc = weight + ((int64_t)k * Cg + c) * g.R * g.S;  // (R, S)
    for_window(g, p, q, g.dh, g.dw,
               [&](int r, int s, int h, int w) { acc += x[h * g.W + w] * wc[r * g.S + s]; });
  }
  out[i] = acc;
}

// dx[n, c, h, w] = Σ_{k in c's group, r, s} dout[n, k, p, q] · w[k, c - c0, r, s] over the (p, q)
// with p·sh = h + ph - r·dh and q·sw = w + pw - s·dw (exact, in range): one thread per dx element.
template <class T>
__global__ void conv2d_backward_data_naive_kernel(T* dinp,          // (N, C, H, W)
                                                  const T* dout,    // (N, K, P, Q)
                                                  const T* weight,  // (K, Cg, R, S)
                                                  Conv2d g) {
  const int64_t i = global_index();
  if (i >= g.N * g.C * g.H * g.W) return;
  const int w = int(i % g.W), h = int(i / g.W % g.H), c = int(i / ((int64_t)g.W * g.H) % g.C);
  const int64_t n = i / ((int64_t)g.W * g.H * g.C);
  const int Cg = g.C / g.G, Kg = g.K / g.G, k0 = c / Cg * Kg;
  T acc = T(0);
  for (int k = k0; k < k0 + Kg; ++k) {
    const T* dy = dout + (n * g.K + k) * g.P * g.Q;                 // (P, Q)
    const T* wk = weight + ((int64_t)k * Cg + c % Cg) * g.R * g.S;  // (R, S)
    for_windows_reading(g, h, w, g.dh, g.dw, [&](int r, int s, int p, int q) {
      acc += dy[p * g.Q + q] * wk[r * g.S + s];
    });
  }
  dinp[i] = acc;
}

// dw[k, c, r, s] = Σ_{n, p, q} dout[n, k, p, q] · x[n, c0 + c, p·sh - ph + r·dh, q·sw - pw + s·dw]
// (pixels outside x read 0): one thread per dw element.
template <class T>
__global__ void conv2d_backward_weight_naive_kernel(T* dweight,     // (K, Cg, R, S)
                                                    const T* dout,  // (N, K, P, Q)
                                                    const T* inp,   // (N, C, H, W)
                                                    Conv2d g) {
  const int64_t i = global_index();
  const int Cg = g.C / g.G, Kg = g.K / g.G;
  if (i >= int64_t(g.K) * Cg * g.R * g.S) return;
  const int s = int(i % g.S), r = int(i / g.S % g.R), c = int(i / (g.S * g.R) % Cg);
  const int k = int(i / (int64_t(g.S) * g.R * Cg)), c0 = k / Kg * Cg;
  T acc = T(0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int p = 0; p < g.P; ++p)
      for (int q = 0; q < g.Q; ++q) {
        const int h = p * g.sh - g.ph + r * g.dh, w = q * g.sw - g.pw + s * g.dw;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
        acc += dout[((n * g.K + k) * g.P + p) * g.Q + q] *
               inp[((n * g.C + c0 + c) * g.H + h) * g.W + w];
      }
  dweight[i] = acc;
}

// out[n, k, :] = bias[k] + Σ_{s < splits} partial[s, n, k, :], in order of s. Block (x, y): pixels
// x·256 + tid of the planes y, y + gridDim.y, ... (plane = n·K + k: one modulo per block).
template <class T>
__global__ void conv2d_reduce_splits_bias_kernel(T* out,            // (N, K, P, Q)
                                                 const T* partial,  // (splits, N, K, P, Q)
                                                 const T* bias,     // (K,) or nullptr
                                                 int64_t planes, int K, int PQ, int splits) {
  const int pq = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pq >= PQ) return;
  const int64_t n = planes * PQ;
  for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    T sum = bias ? bias[plane % K] : T(0);
    for (int s = 0; s < splits; ++s) sum += partial[s * n + plane * PQ + pq];
    out[plane * PQ + pq] = sum;
  }
}

// dw[i] = Σ_{s < splits} partial[s, i], in order of s (the same bits on every run).
template <class T>
__global__ void conv2d_reduce_splits_kernel(T* dweight,        // (n,)
                                            const T* partial,  // (splits, n)
                                            int64_t n, int splits) {
  int64_t i = global_index();
  if (i >= n) return;
  T sum = T(0);  // splits == 0: an empty batch, dw = 0
  for (int s = 0; s < splits; ++s) sum += partial[s * n + i];
  dweight[i] = sum;
}

// db[k] = Σ_{n, p, q} dout[n, k, p, q]: block k, each thread a strided partial sum, then block_sum.
constexpr int kBiasThreads = 256;
template <class T>
__global__ void conv2d_backward_bias_kernel(T* dbias,       // (K,)
                                            const T* dout,  // (N, K, P, Q)
                                            int64_t N, int K, int64_t PQ) {
  __shared__ T scratch[kWarpSize];
  const int k = blockIdx.x;
  T sum = T(0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = threadIdx.x; i < PQ; i += blockDim.x) sum += dout[(n * K + k) * PQ + i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) dbias[k] = sum;
}

// ---- launchers ------------------------------------------------------------------------------------
constexpr int kTileBK = 8;
constexpr unsigned int kMaxGridYZ = 65535;

// The tile edge for a GEMM of rows x cols: the largest of 128, 64, 32 that the output fills well.
static int conv2d_pick_tile(int64_t rows, int64_t cols) {
  if (rows >= 128 * 16 && cols >= 96) return 128;
  if (rows >= 64 * 4 && cols >= 48) return 64;
  return 32;
}

static void check_tile(int tile) {
  if (tile != 0 && tile != 32 && tile != 64 && tile != 128)
    throw std::invalid_argument("conv2d: tile must be 0 (by shape), 32, 64 or 128, got " +
                                std::to_string(tile));
}

// Narrowing to the kernels' int fields happens here, after every range check (P and Q come as
// computed by minicnn/ops/geometry.py; the kernels bounds-check every read against H, W, P, Q).
Conv2d conv2d_check(const Conv2dGeometry& g) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("conv2d: " + what); };
  if (g.N < 0 || g.C < 1 || g.H < 0 || g.W < 0 || g.K < 1 || g.P < 0 || g.Q < 0 || g.R < 1 ||
      g.S < 1)
    fail("sizes must be >= 0 (channels and kernel >= 1)");
  if (g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.ph < 0 || g.pw < 0)
    fail("bad stride, dilation or padding");
  if (g.G < 1 || g.C % g.G != 0 || g.K % g.G != 0)
    fail("groups must divide the in and out channels");
  for (int64_t v :
       {g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.G})
    if (v > INT32_MAX)
      fail("an extent of " + std::to_string(v) + " does not fit a 32-bit int (must be < 2^31)");
  const int64_t crs = g.C / g.G * g.R * g.S, krs = g.K / g.G * g.R * g.S;
  if (crs > INT32_MAX || krs > INT32_MAX)
    fail("channels x kernel size per group exceeds 2^31 - 1 (the reduction index would overflow)");
  const int64_t plane = std::max(g.P * g.Q, g.H * g.W);
  if (plane > INT32_MAX)
    fail("an input or output plane has 2^31 pixels or more (the in-plane index would overflow)");
  if (g.G > int64_t(kMaxGridYZ)) fail("more than 65535 groups (the grid's z extent)");
  const int64_t Cg_tiles = (g.C / g.G + 31) / 32, Kg_tiles = (g.K / g.G + 31) / 32;
  if ((crs + 31) / 32 > kMaxGridYZ || Kg_tiles > kMaxGridYZ || Cg_tiles > kMaxGridYZ)
    fail("too many channels per group for the grid's y extent");
  if (plane > 0 && (g.N > INT64_MAX / plane || (g.N * plane + 31) / 32 > INT32_MAX))
    fail("N x H x W is too large for the grid's x extent");
  return Conv2d{g.N,       int(g.C),  int(g.H),  int(g.W),  int(g.K),  int(g.P),
                int(g.Q),  int(g.R),  int(g.S),  int(g.sh), int(g.sw), int(g.ph),
                int(g.pw), int(g.dh), int(g.dw), int(g.G)};
}

int conv2d_backward_weight_splits(const Conv2d& g, int tile) {
  check_tile(tile);
  ConvBackwardWeightGemm<float> pb{{g}, nullptr, nullptr, nullptr};
  const int t = tile ? tile : conv2d_pick_tile(pb.rows(), pb.cols());
  const int64_t blocks = ((pb.rows() + t - 1) / t) * ((pb.cols() + t - 1) / t) * g.G;
  const int64_t depth = pb.depth();
  int64_t splits = (264 + blocks - 1) / blocks;             // ~2 waves on 132 SMs (an H100)
  splits = std::min<int64_t>(splits, (depth + 511) / 512);  // at least 512 reduction steps each
  splits = std::min<int64_t>(splits, kMaxGridYZ / g.G);
  splits = std::max<int64_t>(splits, 1);
  int64_t chunk = (depth + splits - 1) / splits;
  chunk = (chunk + kTileBK - 1) / kTileBK * kTileBK;
  return int(chunk ? (depth + chunk - 1) / chunk : 1);
}

template <class Problem, int BM, int TM>
static void launch_gemm(const Problem& pb, int splits, const char* name, cudaStream_t stream) {
  const int64_t depth = pb.depth();
  int64_t chunk = (depth + splits - 1) / splits;
  chunk = (chunk + kTileBK - 1) / kTileBK * kTileBK;
  dim3 grid(unsigned((pb.rows() + BM - 1) / BM), unsigned((pb.cols() + BM - 1) / BM),
            unsigned(pb.g.G * splits));
  LAUNCH((conv2d_implicit_gemm_kernel<Problem, BM, BM, kTileBK, TM, TM>), grid,
         (BM / TM) * (BM / TM), 0, stream)(pb, chunk);
  CHECK_LAUNCH(name);
}

template <class Problem>
static void run_gemm(const Problem& pb, int tile, int splits, const char* name,
                     cudaStream_t stream) {
  check_tile(tile);
  if (pb.rows() == 0 || pb.cols() == 0) return;
  switch (tile ? tile : conv2d_pick_tile(pb.rows(), pb.cols())) {
    case 128:
      launch_gemm<Problem, 128, 8>(pb, splits, name, stream);
      break;
    case 64:
      launch_gemm<Problem, 64, 4>(pb, splits, name, stream);
      break;
    default:
      launch_gemm<Problem, 32, 2>(pb, splits, name, stream);
      break;
  }
}

// ---- version 3: tile and split-K by shape, launch ---------------------------------------------------
// The GEMM of a pass as version 3 runs it: rows x cols x depth, and z blocks per tile (groups, and
// for backward data the sh·sw output phases, whose depth is that of the phase with most taps).
struct GemmSize {
  int64_t rows, cols, depth, z;
};
static int most_phase_taps(int R, int stride, int pad, int dil) {
  int most = 0;
  for (int hr = 0; hr < stride; ++hr) {
    int n = 0;
    for (int r = 0; r < R; ++r) n += (hr + pad - r * dil) % stride == 0;
    most = std::max(most, n);
  }
  return most;
}
static GemmSize v3_size(const Conv2d& g, int pass) {
  const int64_t Cg = g.C / g.G, Kg = g.K / g.G;
  if (pass == kConvForward) return {g.N * g.P * g.Q, Kg, Cg * g.R * g.S, g.G};
  if (pass == kConvBackwardData)
    return {g.N * ((g.H + g.sh - 1) / g.sh) * ((g.W + g.sw - 1) / g.sw), Cg,
            Kg * most_phase_taps(g.R, g.sh, g.ph, g.dh) * most_phase_taps(g.S, g.sw, g.pw, g.dw),
            int64_t(g.G) * g.sh * g.sw};
  return {Kg, Cg * g.R * g.S, g.N * g.P * g.Q, g.G};
}

// The share of a tile grid's work that is real (not padding past the GEMM's edges).
static double tile_fill(int64_t rows, int64_t cols, int t) {
  const double tiles = double((rows + t - 1) / t) * double((cols + t - 1) / t) * t * t;
  return double(rows) * double(cols) / tiles;
}
// The 128 tile (the fastest per flop) unless it would compute more than ~30% padding.
static int v3_pick_tile(int64_t rows, int64_t cols) {
  if (tile_fill(rows, cols, 128) >= 0.7) return 128;
  if (tile_fill(rows, cols, 64) >= 0.5 || rows * cols >= 64 * 64 * 132) return 64;
  return 32;
}

constexpr int64_t kMaxChunk = int64_t(1) << 30;  // a split's reduction steps: an int in the kernel
static int64_t chunk_for(int64_t depth, int splits) {
  const int64_t chunk = (depth + splits - 1) / splits;
  return (chunk + kTileBK - 1) / kTileBK * kTileBK;
}

// Split-K: a grid under ~1.5 waves on an H100/H200 (132 SMs; blocks per SM by tile, see
// benchmarks/bench_sass.py) gets its reduction split until it fills ~1.5 waves (forward, backward
// data; at most 16 splits, >= 128 steps each) or ~2 waves (backward weight, >= 256 steps each).
static int v3_splits(const Conv2d& g, int pass, int tile) {
  const GemmSize z = v3_size(g, pass);
  const int t = tile ? tile : v3_pick_tile(z.rows, z.cols);
  const int64_t blocks = ((z.rows + t - 1) / t) * ((z.cols + t - 1) / t) * z.z;
  const double wave = 132.0 * (t == 128 ? 2 : t == 64 ? 4 : 8);
  const bool weight = pass == kConvBackwardWeight;
  if (blocks == 0 || z.depth == 0 || (!weight && blocks >= 1.5 * wave)) return 1;
  int64_t splits = int64_t(std::ceil((weight ? 2.0 : 1.5) * wave / double(blocks)));
  splits = std::min<int64_t>(splits, (z.depth + (weight ? 255 : 127)) / (weight ? 256 : 128));
  if (!weight) splits = std::min<int64_t>(splits, 16);
  splits = std::max<int64_t>(std::min<int64_t>(splits, kMaxGridYZ / z.z), 1);
  splits = std::max<int64_t>(splits, (z.depth + kMaxChunk - 1) / kMaxChunk);
  const int64_t chunk = chunk_for(z.depth, int(splits));
  return int((z.depth + chunk - 1) / chunk);
}

// Version 3 indexes within one image (C·H·W, K·P·Q) and the weights with 32-bit offsets; larger
// convolutions run version 2.
static bool v3_fits(const Conv2d& g) {
  return int64_t(g.C) * g.H * g.W <= INT32_MAX && int64_t(g.K) * g.P * g.Q <= INT32_MAX &&
         int64_t(g.K) * (g.C / g.G) * g.R * g.S <= INT32_MAX;
}

int conv2d_splits(const Conv2d& g, int pass, int version, int tile) {
  check_tile(tile);
  if (pass < kConvForward || pass > kConvBackwardWeight)
    throw std::invalid_argument(
        "conv2d_splits: pass must be 0 (forward), 1 (backward data) or 2 (backward weight)");
  if (version == 4) return conv2d_wmma_splits(g, pass);
  if (version == 3 && v3_fits(g)) return v3_splits(g, pass, tile);
  if (version == 3) version = 2;
  return pass == kConvBackwardWeight && version == 2 ? conv2d_backward_weight_splits(g, tile) : 1;
}

static bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <int TILE, class Problem>
static void launch_v3(const Problem& pb, int64_t rows, int64_t cols, int64_t z, int64_t chunk,
                      const char* name, cudaStream_t stream) {
  if (z > int64_t(kMaxGridYZ))
    throw std::invalid_argument(std::string(name) +
                                ": groups x phases x splits exceeds the grid's z extent 65535");
  if (chunk > kMaxChunk)
    throw std::invalid_argument(std::string(name) +
                                ": a split of over 2^30 reduction steps; use more splits");
  const dim3 grid(unsigned((rows + TILE - 1) / TILE), unsigned((cols + TILE - 1) / TILE),
                  unsigned(z));
  const size_t smem = 2 * 2 * v3::kBK * (TILE + v3::kPad) * sizeof(typename Problem::T);
  LAUNCH((v3::conv2d_implicit_gemm_v3_kernel<Problem, TILE>), grid, v3::kThreads, smem, stream)(
      pb, chunk);
  CHECK_LAUNCH(name);
}

// Launch version 3 for a pass with the problem make(lanes) returns, lanes std::true_type when its
// L-wide loads apply (the pass's channels or columns a multiple of L), else std::false_type.
template <int TILE, class Make>
static void run_v3(const Conv2d& g, int pass, int splits, bool lanes, const char* name,
                   cudaStream_t stream, Make make) {
  const GemmSize z = v3_size(g, pass);
  auto launch = [&](const auto& pb) {
    launch_v3<TILE>(pb, z.rows, z.cols, z.z * splits, chunk_for(z.depth, splits), name, stream);
  };
  if (lanes)
    launch(make(std::true_type()));
  else
    launch(make(std::false_type()));
}

template <class T, int TILE>
static void forward_v3(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g,
                       int splits, cudaStream_t stream) {
  constexpr int L = TILE / 32;
  run_v3<TILE>(g, kConvForward, splits, (g.C / g.G) % L == 0,
               "conv2d_implicit_gemm_v3_kernel (forward)", stream, [&](auto lanes) {
                 v3::ForwardV3<T, L, decltype(lanes)::value> pb{v3::conv_shape(g), out, inp, weight,
                                                                bias};
                 pb.w_vec = L > 1 && lanes && pb.RS == 1 && aligned(weight, L * sizeof(T));
                 return pb;
               });
}

template <class T, int TILE>
static void backward_data_v3(T* dinp, const T* dout, const T* weight, const Conv2d& g, int splits,
                             cudaStream_t stream) {
  constexpr int L = TILE / 32;
  run_v3<TILE>(g, kConvBackwardData, splits, (g.K / g.G) % L == 0,
               "conv2d_implicit_gemm_v3_kernel (backward data)", stream, [&](auto lanes) {
                 v3::BackwardDataV3<T, L, decltype(lanes)::value> pb{v3::conv_shape(g), dinp, dout,
                                                                     weight};
                 pb.CgRS = pb.Cg * pb.RS;
                 pb.rstep = g.sh / std::gcd(g.dh, g.sh), pb.sstep = g.sw / std::gcd(g.dw, g.sw);
                 pb.pstep = pb.rstep * g.dh / g.sh, pb.qstep = pb.sstep * g.dw / g.sw;
                 return pb;
               });
}

template <class T, int TILE>
static void backward_weight_v3(T* partial, const T* dout, const T* inp, const Conv2d& g, int splits,
                               cudaStream_t stream) {
  constexpr int L = TILE / 32;
  run_v3<TILE>(g, kConvBackwardWeight, splits, g.Q % L == 0,
               "conv2d_implicit_gemm_v3_kernel (backward weight)", stream, [&](auto lanes) {
                 v3::BackwardWeightV3<T, L, decltype(lanes)::value> pb{v3::conv_shape(g), partial,
                                                                       dout, inp};
                 pb.dy_image = int64_t(g.K) * pb.PQ, pb.x_image = int64_t(g.C) * pb.HW;
                 pb.dy_vec = L > 1 && lanes && aligned(dout, L * sizeof(T));
                 return pb;
               });
}

// Runs `launch.template operator()<TILE>()` for the tile by shape (tile 0) or the one asked for.
template <class Launch>
static void with_v3_tile(const Conv2d& g, int pass, int tile, Launch launch) {
  check_tile(tile);
  const GemmSize z = v3_size(g, pass);
  if (z.rows == 0 || z.cols == 0) return;
  switch (tile ? tile : v3_pick_tile(z.rows, z.cols)) {
    case 128:
      launch(std::integral_constant<int, 128>());
      break;
    case 64:
      launch(std::integral_constant<int, 64>());
      break;
    default:
      launch(std::integral_constant<int, 32>());
      break;
  }
}

static void check_splits(const char* op, int version, int splits, const void* workspace) {
  if (splits < 1)
    throw std::invalid_argument(std::string(op) + ": splits must be >= 1, got " +
                                std::to_string(splits));
  if (splits > 1 && workspace == nullptr)
    throw std::invalid_argument(std::string(op) + ": splits > 1 needs a workspace");
  if (splits > 1 && version == 1)
    throw std::invalid_argument(std::string(op) + ": version 1 does not split");
}

template <class T>
static void reduce_splits(T* dst, const T* partial, int64_t n, int splits, cudaStream_t stream) {
  if (n == 0) return;
  LAUNCH((conv2d_reduce_splits_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(dst, partial, n,
                                                                                 splits);
  CHECK_LAUNCH("conv2d_reduce_splits_kernel");
}

template <class T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g,
                    int version, int tile, int splits, T* workspace, cudaStream_t stream) {
  if (version == 4)
    return conv2d_forward_wmma(out, inp, weight, bias, g, splits, stream, workspace);
  check_tile(tile);
  check_splits("conv2d_forward", version, splits, workspace);
  if (version == 3 && !v3_fits(g)) version = 2;
  const int64_t n = g.N * g.K * g.P * g.Q;
  if (version == 1) {
    if (n == 0) return;
    LAUNCH((conv2d_forward_naive_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(out, inp, weight,
                                                                                   bias, g);
    CHECK_LAUNCH("conv2d_forward_naive_kernel");
    return;
  }
  if (version == 2) {
    if (splits > 1) throw std::invalid_argument("conv2d_forward: version 2 does not split");
    run_gemm(ConvForwardGemm<T>{{g}, out, inp, weight, bias}, tile, 1,
             "conv2d_implicit_gemm_kernel (forward)", stream);
    return;
  }
  if (version != 3)
    throw std::invalid_argument("conv2d_forward: version must be 1, 2, 3 or 4, got " +
                                std::to_string(version));
  T* dst = splits > 1 ? workspace : out;
  with_v3_tile(g, kConvForward, tile, [&](auto t) {
    forward_v3<T, decltype(t)::value>(dst, inp, weight, splits > 1 ? nullptr : bias, g, splits,
                                      stream);
  });
  if (splits == 1 || n == 0) return;
  const int64_t planes = g.N * g.K;
  const dim3 grid(blocks_for(int64_t(g.P) * g.Q), unsigned(std::min<int64_t>(planes, kMaxGridYZ)));
  LAUNCH((conv2d_reduce_splits_bias_kernel<T>), grid, kBlockSize, 0, stream)(
      out, workspace, bias, planes, g.K, g.P * g.Q, splits);
  CHECK_LAUNCH("conv2d_reduce_splits_bias_kernel");
}

template <class T>
void conv2d_backward_data(T* dinp, const T* dout, const T* weight, const Conv2d& g, int version,
                          int tile, int splits, T* workspace, cudaStream_t stream) {
  if (version == 4)
    return conv2d_backward_data_wmma(dinp, dout, weight, g, splits, stream, workspace);
  check_tile(tile);
  check_splits("conv2d_backward_data", version, splits, workspace);
  if (version == 3 && !v3_fits(g)) version = 2;
  const int64_t n = g.N * g.C * g.H * g.W;
  if (version == 1) {
    if (n == 0) return;
    LAUNCH((conv2d_backward_data_naive_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(dinp, dout,
                                                                                         weight, g);
    CHECK_LAUNCH("conv2d_backward_data_naive_kernel");
    return;
  }
  if (version == 2) {
    if (splits > 1) throw std::invalid_argument("conv2d_backward_data: version 2 does not split");
    run_gemm(ConvBackwardDataGemm<T>{{g}, dinp, dout, weight}, tile, 1,
             "conv2d_implicit_gemm_kernel (backward data)", stream);
    return;
  }
  if (version != 3)
    throw std::invalid_argument("conv2d_backward_data: version must be 1, 2, 3 or 4, got " +
                                std::to_string(version));
  with_v3_tile(g, kConvBackwardData, tile, [&](auto t) {
    backward_data_v3<T, decltype(t)::value>(splits > 1 ? workspace : dinp, dout, weight, g, splits,
                                            stream);
  });
  if (splits > 1) reduce_splits(dinp, workspace, n, splits, stream);
}

template <class T>
void conv2d_backward_weight(T* dweight, T* workspace, const T* dout, const T* inp, const Conv2d& g,
                            int version, int tile, int splits, cudaStream_t stream) {
  if (version == 4)
    return conv2d_backward_weight_wmma(dweight, workspace, dout, inp, g, splits, stream);
  check_tile(tile);
  check_splits("conv2d_backward_weight", version, splits, workspace);
  if (version == 3 && !v3_fits(g)) version = 2;
  const int64_t n = int64_t(g.K) * (g.C / g.G) * g.R * g.S;
  if (version == 1) {
    LAUNCH((conv2d_backward_weight_naive_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(
        dweight, dout, inp, g);
    CHECK_LAUNCH("conv2d_backward_weight_naive_kernel");
    return;
  }
  if (version != 2 && version != 3)
    throw std::invalid_argument("conv2d_backward_weight: version must be 1, 2, 3 or 4, got " +
                                std::to_string(version));
  T* dst = splits > 1 ? workspace : dweight;
  if (g.N * g.P * g.Q == 0) {  // an empty batch: dw = 0
    LAUNCH((conv2d_reduce_splits_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(dweight, dweight,
                                                                                   n, 0);
    CHECK_LAUNCH("conv2d_reduce_splits_kernel");
    return;
  }
  if (version == 2)
    run_gemm(ConvBackwardWeightGemm<T>{{g}, dst, dout, inp}, tile, splits,
             "conv2d_implicit_gemm_kernel (backward weight)", stream);
  else
    with_v3_tile(g, kConvBackwardWeight, tile, [&](auto t) {
      backward_weight_v3<T, decltype(t)::value>(dst, dout, inp, g, splits, stream);
    });
  if (splits > 1) reduce_splits(dweight, workspace, n, splits, stream);
}

template <class T>
void conv2d_backward_bias(T* dbias, const T* dout, int64_t N, int K, int64_t PQ,
                          cudaStream_t stream) {
  if (K == 0) return;
  LAUNCH((conv2d_backward_bias_kernel<T>), K, kBiasThreads, 0, stream)(dbias, dout, N, K, PQ);
  CHECK_LAUNCH("conv2d_backward_bias_kernel");
}

#define INSTANTIATE(T)                                                                            \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2d&, int, int, int, \
                                  T*, cudaStream_t);                                              \
  template void conv2d_backward_data<T>(T*, const T*, const T*, const Conv2d&, int, int, int, T*, \
                                        cudaStream_t);                                            \
  template void conv2d_backward_weight<T>(T*, T*, const T*, const T*, const Conv2d&, int, int,    \
                                          int, cudaStream_t);                                     \
  template void conv2d_backward_bias<T>(T*, const T*, int64_t, int, int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
