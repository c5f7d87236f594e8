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
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- version 1: naive forward -------------------------------------------------------------------
template <class T>
__global__ void conv2d_forward_naive_kernel(T* out,            // (N, K, P, Q)
                                            const T* inp,      // (N, C, H, W)
                                            const T* weight,   // (K, Cg, R, S)
                                            const T* bias,     // (K,) or nullptr
                                            Conv2d g) {
  int64_t i = global_index();
  if (i >= g.N * g.K * g.P * g.Q) return;
  const int q = int(i % g.Q), p = int(i / g.Q % g.P), k = int(i / ((int64_t)g.Q * g.P) % g.K);
  const int64_t n = i / ((int64_t)g.Q * g.P * g.K);
  const int Cg = g.C / g.G, Kg = g.K / g.G, c0 = k / Kg * Cg;
  T acc = bias ? bias[k] : T(0);
  for (int c = 0; c < Cg; ++c)
    for (int r = 0; r < g.R; ++r)
      for (int s = 0; s < g.S; ++s) {
        const int h = p * g.sh - g.ph + r * g.dh, w = q * g.sw - g.pw + s * g.dw;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
        acc += inp[((n * g.C + c0 + c) * g.H + h) * g.W + w] * weight[(((int64_t)k * Cg + c) * g.R + r) * g.S + s];
      }
  out[i] = acc;
}

// ---- version 2: the three implicit GEMMs ----------------------------------------------------------
// n = a / b, r = a % b, in 32-bit arithmetic when a fits (64-bit division is many times slower on a GPU).
__device__ __forceinline__ void divmod(int64_t a, int b, int64_t& n, int& r) {
  if (a <= INT32_MAX) {
    n = int(a) / b;
    r = int(a) % b;
  } else {
    n = a / b;
    r = int(a % b);
  }
}

// A problem tells the GEMM kernel its sizes and how to read A, B and write the output. Row and Col
// hold what a thread precomputes once for the row of A / column of B it loads every slice.
template <class T_>
struct ConvForwardGemm {
  using T = T_;
  T* out; const T* inp; const T* weight; const T* bias; Conv2d g;
  static constexpr bool kALoadAlongM = true;   // consecutive q: consecutive x
  static constexpr bool kBLoadAlongJ = false;  // consecutive d: consecutive w
  __host__ __device__ int64_t rows() const { return g.N * g.P * g.Q; }
  __host__ __device__ int64_t cols() const { return g.K / g.G; }
  __host__ __device__ int64_t depth() const { return int64_t(g.C / g.G) * g.R * g.S; }
  struct Row { const T* x; int h0, w0; };
  struct Col { const T* w; };
  __device__ Row row(int grp, int64_t m) const {
    const int q = int(m % g.Q), p = int(m / g.Q % g.P);
    const int64_t n = m / ((int64_t)g.P * g.Q);
    return {inp + (n * g.C + int64_t(grp) * (g.C / g.G)) * g.H * g.W, p * g.sh - g.ph, q * g.sw - g.pw};
  }
  __device__ Col col(int grp, int64_t j) const { return {weight + (int64_t(grp) * cols() + j) * depth()}; }
  __device__ T a(const Row& x, int64_t d64) const {
    const int d = int(d64);  // < Cg·R·S <= INT32_MAX: 32-bit division, much cheaper on a GPU
    const int s = d % g.S, r = d / g.S % g.R, c = d / (g.S * g.R);
    const int h = x.h0 + r * g.dh, w = x.w0 + s * g.dw;
    return (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x.x[(int64_t(c) * g.H + h) * g.W + w] : T(0);
  }
  __device__ T b(const Col& w, int64_t d) const { return w.w[d]; }
  __device__ void store(int grp, int, int64_t m, int64_t j, T v) const {
    const int64_t k = grp * cols() + j, n = m / ((int64_t)g.P * g.Q), pq = m % ((int64_t)g.P * g.Q);
    out[(n * g.K + k) * g.P * g.Q + pq] = bias ? v + bias[k] : v;
  }
};

template <class T_>
struct ConvBackwardDataGemm {
  using T = T_;
  T* dinp; const T* dout; const T* weight; Conv2d g;
  static constexpr bool kALoadAlongM = true;   // consecutive w: consecutive dout (stride 1)
  static constexpr bool kBLoadAlongJ = false;  // consecutive (r, s): consecutive w
  __host__ __device__ int64_t rows() const { return g.N * g.H * g.W; }
  __host__ __device__ int64_t cols() const { return g.C / g.G; }
  __host__ __device__ int64_t depth() const { return int64_t(g.K / g.G) * g.R * g.S; }
  struct Row { const T* dy; int h, w; };
  struct Col { const T* w; };
  __device__ Row row(int grp, int64_t m) const {
    const int w = int(m % g.W), h = int(m / g.W % g.H);
    const int64_t n = m / ((int64_t)g.H * g.W);
    return {dout + (n * g.K + int64_t(grp) * (g.K / g.G)) * g.P * g.Q, h + g.ph, w + g.pw};
  }
  __device__ Col col(int grp, int64_t j) const {
    return {weight + (int64_t(grp) * (g.K / g.G) * cols() + j) * g.R * g.S};
  }
  __device__ T a(const Row& y, int64_t d64) const {
    const int d = int(d64);  // < Kg·R·S <= INT32_MAX
    const int s = d % g.S, r = d / g.S % g.R, k = d / (g.S * g.R);
    const int hp = y.h - r * g.dh, wq = y.w - s * g.dw;  // = p sh and q sw if (h, w) is read by (p, q)
    if (hp < 0 || wq < 0 || hp % g.sh != 0 || wq % g.sw != 0) return T(0);
    const int p = hp / g.sh, q = wq / g.sw;
    return (p < g.P && q < g.Q) ? y.dy[(int64_t(k) * g.P + p) * g.Q + q] : T(0);
  }
  __device__ T b(const Col& w, int64_t d64) const {
    const int d = int(d64), RS = g.R * g.S;
    return w.w[int64_t(d / RS) * cols() * RS + d % RS];
  }
  __device__ void store(int grp, int, int64_t m, int64_t j, T v) const {
    const int64_t n = m / ((int64_t)g.H * g.W), hw = m % ((int64_t)g.H * g.W);
    dinp[(n * g.C + grp * cols() + j) * g.H * g.W + hw] = v;
  }
};

template <class T_>
struct ConvBackwardWeightGemm {
  using T = T_;
  T* partial;  // (splits, K, Cg, R, S): dw itself when splits == 1
  const T* dout; const T* inp; Conv2d g;
  static constexpr bool kALoadAlongM = false;  // consecutive (p, q): consecutive dout
  static constexpr bool kBLoadAlongJ = false;  // consecutive (p, q): consecutive x (stride 1)
  __host__ __device__ int64_t rows() const { return g.K / g.G; }
  __host__ __device__ int64_t cols() const { return int64_t(g.C / g.G) * g.R * g.S; }
  __host__ __device__ int64_t depth() const { return g.N * g.P * g.Q; }
  struct Row { const T* dy; };
  struct Col { const T* x; int h0, w0; };
  __device__ Row row(int grp, int64_t m) const { return {dout + (int64_t(grp) * rows() + m) * g.P * g.Q}; }
  __device__ Col col(int grp, int64_t j) const {
    const int s = int(j % g.S), r = int(j / g.S % g.R), c = int(j / (g.S * g.R));
    return {inp + (int64_t(grp) * (g.C / g.G) + c) * g.H * g.W, r * g.dh - g.ph, s * g.dw - g.pw};
  }
  __device__ T a(const Row& y, int64_t d) const {
    int64_t n;
    int pq;
    divmod(d, g.P * g.Q, n, pq);
    return y.dy[n * g.K * g.P * g.Q + pq];
  }
  __device__ T b(const Col& x, int64_t d) const {
    int64_t n;
    int pq;
    divmod(d, g.P * g.Q, n, pq);
    const int p = pq / g.Q, q = pq % g.Q;
    const int h = p * g.sh + x.h0, w = q * g.sw + x.w0;
    return (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x.x[n * g.C * g.H * g.W + int64_t(h) * g.W + w] : T(0);
  }
  __device__ void store(int grp, int split, int64_t m, int64_t j, T v) const {
    partial[((int64_t(split) * g.K + grp * rows() + m) * cols()) + j] = v;
  }
};

// The tiled GEMM. Grid: x over BM-row tiles, y over BN-column tiles, z = group + G · split; split
// `z / G` reduces over d in [split · chunk, min(depth, (split + 1) · chunk)), chunk a multiple of BK.
//
// Shared memory holds the slice transposed, As[d][m] and Bs[d][j] (rows padded by 4 so that writes
// down a column hit 8 different banks). Each thread loads BM·BK/256 elements of A and BN·BK/256 of B
// per slice, e = tid + l·256 for l = 0, 1, ...; a problem says for each operand which index the
// consecutive e (the threads of a warp) walk, so that they read consecutive addresses:
//   Problem::kALoadAlongM: A element e is (m, d) = (e % BM, e / BM), else (e / BK, e % BK);
//   Problem::kBLoadAlongJ: B element e is (d, j) = (e / BN, e % BN), else (e % BK, e / BK).
// What a load needs of its row (column) is computed once, before the slice loop (Problem::Row/Col).
// Thread t owns the micro-tile rows tm + i·BM/TM and columns tn·TN + j (tm = t % (BM/TM)), so a warp
// reads As[l][...] at consecutive addresses and stores consecutive output rows (pixels).
constexpr int kSmemPad = 4;

template <class Problem, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    conv2d_implicit_gemm_kernel(Problem pb, int64_t chunk) {
  using T = typename Problem::T;
  constexpr int kThreads = (BM / TM) * (BN / TN);
  constexpr int kALoads = BM * BK / kThreads, kBLoads = BN * BK / kThreads;
  static_assert(kALoads * kThreads == BM * BK && kBLoads * kThreads == BN * BK, "tile shape");
  __shared__ T As[BK][BM + kSmemPad];
  __shared__ T Bs[BK][BN + kSmemPad];
  const int tid = threadIdx.x, G = pb.g.G;
  const int grp = blockIdx.z % G, split = blockIdx.z / G;
  const int64_t m0 = int64_t(blockIdx.x) * BM, j0 = int64_t(blockIdx.y) * BN;
  const int64_t rows = pb.rows(), cols = pb.cols();
  const int64_t d_begin = split * chunk, d_end = d_begin + chunk < pb.depth() ? d_begin + chunk : pb.depth();

  // where this thread's loads go in the tile, and their rows / columns
  int a_m[kALoads], a_d[kALoads], b_j[kBLoads], b_d[kBLoads];
  bool a_ok[kALoads], b_ok[kBLoads];
  typename Problem::Row arow[kALoads];
  typename Problem::Col bcol[kBLoads];
  for (int l = 0; l < kALoads; ++l) {
    const int e = tid + l * kThreads;
    a_m[l] = Problem::kALoadAlongM ? e % BM : e / BK;
    a_d[l] = Problem::kALoadAlongM ? e / BM : e % BK;
    a_ok[l] = m0 + a_m[l] < rows;
    arow[l] = pb.row(grp, a_ok[l] ? m0 + a_m[l] : 0);
  }
  for (int l = 0; l < kBLoads; ++l) {
    const int e = tid + l * kThreads;
    b_j[l] = Problem::kBLoadAlongJ ? e % BN : e / BK;
    b_d[l] = Problem::kBLoadAlongJ ? e / BN : e % BK;
    b_ok[l] = j0 + b_j[l] < cols;
    bcol[l] = pb.col(grp, b_ok[l] ? j0 + b_j[l] : 0);
  }
  const int tm = tid % (BM / TM), tn = tid / (BM / TM);  // this thread's micro-tile

  T acc[TM][TN];
  for (int i = 0; i < TM; ++i)
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
  for (int64_t d0 = d_begin; d0 < d_end; d0 += BK) {
    for (int l = 0; l < kALoads; ++l)
      As[a_d[l]][a_m[l]] = (a_ok[l] && d0 + a_d[l] < d_end) ? pb.a(arow[l], d0 + a_d[l]) : T(0);
    for (int l = 0; l < kBLoads; ++l)
      Bs[b_d[l]][b_j[l]] = (b_ok[l] && d0 + b_d[l] < d_end) ? pb.b(bcol[l], d0 + b_d[l]) : T(0);
    __syncthreads();
    for (int l = 0; l < BK; ++l) {
      T av[TM], bv[TN];
      for (int i = 0; i < TM; ++i) av[i] = As[l][tm + i * (BM / TM)];
      for (int j = 0; j < TN; ++j) bv[j] = Bs[l][tn * TN + j];
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();  // everyone is done with the slice before the next one overwrites it
  }
  for (int i = 0; i < TM; ++i)
    for (int j = 0; j < TN; ++j) {
      const int64_t m = m0 + tm + i * (BM / TM), col = j0 + tn * TN + j;
      if (m < rows && col < cols) pb.store(grp, split, m, col, acc[i][j]);
    }
}

// dw[i] = Σ_{s < splits} partial[s, i], in order of s (the same bits on every run).
template <class T>
__global__ void conv2d_reduce_splits_kernel(T* dweight,         // (n,)
                                            const T* partial,   // (splits, n)
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
__global__ void conv2d_backward_bias_kernel(T* dbias,         // (K,)
                                            const T* dout,    // (N, K, P, Q)
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
    throw std::invalid_argument("conv2d: tile must be 0 (by shape), 32, 64 or 128, got " + std::to_string(tile));
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
  if (g.G < 1 || g.C % g.G != 0 || g.K % g.G != 0) fail("groups must divide the in and out channels");
  for (int64_t v : {g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                    g.G})
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
  ConvBackwardWeightGemm<float> pb{nullptr, nullptr, nullptr, g};
  const int t = tile ? tile : conv2d_pick_tile(pb.rows(), pb.cols());
  const int64_t blocks = ((pb.rows() + t - 1) / t) * ((pb.cols() + t - 1) / t) * g.G;
  const int64_t depth = pb.depth();
  int64_t splits = (264 + blocks - 1) / blocks;  // ~2 waves on 132 SMs (an H100)
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
  dim3 grid(unsigned((pb.rows() + BM - 1) / BM), unsigned((pb.cols() + BM - 1) / BM), unsigned(pb.g.G * splits));
  LAUNCH((conv2d_implicit_gemm_kernel<Problem, BM, BM, kTileBK, TM, TM>), grid, (BM / TM) * (BM / TM), 0, stream)(
      pb, chunk);
  CHECK_LAUNCH(name);
}

template <class Problem>
static void run_gemm(const Problem& pb, int tile, int splits, const char* name, cudaStream_t stream) {
  check_tile(tile);
  if (pb.rows() == 0 || pb.cols() == 0) return;
  switch (tile ? tile : conv2d_pick_tile(pb.rows(), pb.cols())) {
    case 128: launch_gemm<Problem, 128, 8>(pb, splits, name, stream); break;
    case 64: launch_gemm<Problem, 64, 4>(pb, splits, name, stream); break;
    default: launch_gemm<Problem, 32, 2>(pb, splits, name, stream); break;
  }
}

template <class T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g, int version, int tile,
                    cudaStream_t stream) {
  if (version == 1) {
    const int64_t n = g.N * g.K * g.P * g.Q;
    if (n == 0) return;
    LAUNCH((conv2d_forward_naive_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(out, inp, weight, bias, g);
    CHECK_LAUNCH("conv2d_forward_naive_kernel");
    return;
  }
  if (version != 2) throw std::invalid_argument("conv2d_forward: version must be 1 or 2");
  run_gemm(ConvForwardGemm<T>{out, inp, weight, bias, g}, tile, 1, "conv2d_implicit_gemm_kernel (forward)", stream);
}

template <class T>
void conv2d_backward_data(T* dinp, const T* dout, const T* weight, const Conv2d& g, int tile, cudaStream_t stream) {
  run_gemm(ConvBackwardDataGemm<T>{dinp, dout, weight, g}, tile, 1, "conv2d_implicit_gemm_kernel (backward data)",
           stream);
}

template <class T>
void conv2d_backward_weight(T* dweight, T* workspace, const T* dout, const T* inp, const Conv2d& g, int tile,
                            int splits, cudaStream_t stream) {
  if (splits < 1) throw std::invalid_argument("conv2d_backward_weight: splits must be >= 1");
  if (splits > 1 && workspace == nullptr)
    throw std::invalid_argument("conv2d_backward_weight: splits > 1 needs a workspace");
  ConvBackwardWeightGemm<T> pb{splits > 1 ? workspace : dweight, dout, inp, g};
  const int64_t n = int64_t(g.K) * pb.cols();
  if (pb.depth() == 0) {  // an empty batch: dw = 0
    LAUNCH((conv2d_reduce_splits_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(dweight, dweight, n, 0);
    CHECK_LAUNCH("conv2d_reduce_splits_kernel");
    return;
  }
  run_gemm(pb, tile, splits, "conv2d_implicit_gemm_kernel (backward weight)", stream);
  if (splits > 1) {
    LAUNCH((conv2d_reduce_splits_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(dweight, workspace, n, splits);
    CHECK_LAUNCH("conv2d_reduce_splits_kernel");
  }
}

template <class T>
void conv2d_backward_bias(T* dbias, const T* dout, int64_t N, int K, int64_t PQ, cudaStream_t stream) {
  if (K == 0) return;
  LAUNCH((conv2d_backward_bias_kernel<T>), K, kBiasThreads, 0, stream)(dbias, dout, N, K, PQ);
  CHECK_LAUNCH("conv2d_backward_bias_kernel");
}

#define INSTANTIATE(T)                                                                                       \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2d&, int, int, cudaStream_t); \
  template void conv2d_backward_data<T>(T*, const T*, const T*, const Conv2d&, int, cudaStream_t);          \
  template void conv2d_backward_weight<T>(T*, T*, const T*, const T*, const Conv2d&, int, int, cudaStream_t); \
  template void conv2d_backward_bias<T>(T*, const T*, int64_t, int, int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
