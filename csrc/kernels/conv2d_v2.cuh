// conv2d version 2: the three implicit GEMMs (forward, backward data, backward weight) as problems
// of one tiled GEMM kernel; see conv2d.cu for the index mapping. Included by conv2d.cu, whose
// launchers run it. Kept for reading and testing (version 3, conv2d_v3.cuh, is the default).
#pragma once

#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- version 2: the three implicit GEMMs --------------------------------------------------------
// n = a / b, r = a % b, in 32-bit arithmetic when a fits (64-bit division is much slower on GPUs).
__device__ __forceinline__ void divmod(int64_t a, int b, int64_t& n, int& r) {
  if (a <= INT32_MAX) {
    n = int(a) / b;
    r = int(a) % b;
  } else {
    n = a / b;
    r = int(a % b);
  }
}

// A problem tells the GEMM kernel its sizes (GemmShape) and how to read A, B and write the output.
// Row and Col hold what a thread precomputes once for the row of A / column of B it loads every
// slice: a pointer (Ptr), or an image's plane and where the pixel's window starts (PlanePos).
template <int kPass>
struct GemmShape {  // rows x cols, reduced over depth: the mapping in conv2d.cu's header
  Conv2d g;
  __host__ __device__ int64_t rows() const {
    return pick(g.N * g.P * g.Q, g.N * g.H * g.W, g.K / g.G);
  }
  __host__ __device__ int64_t cols() const {
    return pick(g.K / g.G, g.C / g.G, int64_t(g.C / g.G) * g.R * g.S);
  }
  __host__ __device__ int64_t depth() const {
    return pick(int64_t(g.C / g.G) * g.R * g.S, int64_t(g.K / g.G) * g.R * g.S, g.N * g.P * g.Q);
  }
  // The forward's, backward data's or backward weight's value.
  __host__ __device__ static int64_t pick(int64_t forward, int64_t data, int64_t weight) {
    return kPass == kConvForward ? forward : kPass == kConvBackwardData ? data : weight;
  }
};
template <class T>
struct Ptr {
  const T* p;
};
template <class T>
struct PlanePos {
  const T* p;  // the plane of channel 0 of the group
  int h, w;
};

template <class T_>
struct ConvForwardGemm : GemmShape<kConvForward> {
  using T = T_;
  using Row = PlanePos<T>;  // x[n, grp·Cg], (p sh - ph, q sw - pw)
  using Col = Ptr<T>;       // w[grp·Kg + j]
  T* out;
  const T* inp;
  const T* weight;
  const T* bias;
  static constexpr bool kALoadAlongM = true;   // consecutive q: consecutive x
  static constexpr bool kBLoadAlongJ = false;  // consecutive d: consecutive w
  __device__ Row row(int grp, int64_t m) const {
    const RowPos o = decode_row(m, g.P, g.Q);
    return {inp + (o.n * g.C + int64_t(grp) * (g.C / g.G)) * g.H * g.W, o.a * g.sh - g.ph,
            o.b * g.sw - g.pw};
  }
  __device__ Col col(int grp, int64_t j) const {
    return {weight + (int64_t(grp) * cols() + j) * depth()};
  }
  __device__ T a(const Row& x, int64_t d64) const {
    const int d = int(d64);  // < Cg·R·S <= INT32_MAX: 32-bit division, much cheaper on a GPU
    const int s = d % g.S, r = d / g.S % g.R, c = d / (g.S * g.R);
    const int h = x.h + r * g.dh, w = x.w + s * g.dw;
    return (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x.p[(int64_t(c) * g.H + h) * g.W + w] : T(0);
  }
  __device__ T b(const Col& w, int64_t d) const { return w.p[d]; }
  __device__ void store(int grp, int, int64_t m, int64_t j, T v) const {
    const int64_t k = grp * cols() + j, n = m / ((int64_t)g.P * g.Q), pq = m % ((int64_t)g.P * g.Q);
    out[(n * g.K + k) * g.P * g.Q + pq] = bias ? v + bias[k] : v;
  }
};

template <class T_>
struct ConvBackwardDataGemm : GemmShape<kConvBackwardData> {
  using T = T_;
  using Row = PlanePos<T>;  // dout[n, grp·Kg], (h + ph, w + pw)
  using Col = Ptr<T>;       // w[grp·Kg, j]
  T* dinp;
  const T* dout;
  const T* weight;
  static constexpr bool kALoadAlongM = true;   // consecutive w: consecutive dout (stride 1)
  static constexpr bool kBLoadAlongJ = false;  // consecutive (r, s): consecutive w
  __device__ Row row(int grp, int64_t m) const {
    const RowPos o = decode_row(m, g.H, g.W);
    return {dout + (o.n * g.K + int64_t(grp) * (g.K / g.G)) * g.P * g.Q, o.a + g.ph, o.b + g.pw};
  }
  __device__ Col col(int grp, int64_t j) const {
    return {weight + (int64_t(grp) * (g.K / g.G) * cols() + j) * g.R * g.S};
  }
  __device__ T a(const Row& y, int64_t d64) const {
    const int d = int(d64);  // < Kg·R·S <= INT32_MAX
    const int s = d % g.S, r = d / g.S % g.R, k = d / (g.S * g.R);
    const int hp = y.h - r * g.dh,
              wq = y.w - s * g.dw;  // = p sh and q sw if (h, w) is read by (p, q)
    if (hp < 0 || wq < 0 || hp % g.sh != 0 || wq % g.sw != 0) return T(0);
    const int p = hp / g.sh, q = wq / g.sw;
    return (p < g.P && q < g.Q) ? y.p[(int64_t(k) * g.P + p) * g.Q + q] : T(0);
  }
  __device__ T b(const Col& w, int64_t d64) const {
    const int d = int(d64), RS = g.R * g.S;
    return w.p[int64_t(d / RS) * cols() * RS + d % RS];
  }
  __device__ void store(int grp, int, int64_t m, int64_t j, T v) const {
    const int64_t n = m / ((int64_t)g.H * g.W), hw = m % ((int64_t)g.H * g.W);
    dinp[(n * g.C + grp * cols() + j) * g.H * g.W + hw] = v;
  }
};

template <class T_>
struct ConvBackwardWeightGemm : GemmShape<kConvBackwardWeight> {
  using T = T_;
  using Row = Ptr<T>;       // dout[0, grp·Kg + m]
  using Col = PlanePos<T>;  // x[0, grp·Cg + c], (r dh - ph, s dw - pw)
  T* partial;               // (splits, K, Cg, R, S): dw itself when splits == 1
  const T* dout;
  const T* inp;
  static constexpr bool kALoadAlongM = false;  // consecutive (p, q): consecutive dout
  static constexpr bool kBLoadAlongJ = false;  // consecutive (p, q): consecutive x (stride 1)
  __device__ Row row(int grp, int64_t m) const {
    return {dout + (int64_t(grp) * rows() + m) * g.P * g.Q};
  }
  __device__ Col col(int grp, int64_t j) const {
    const int s = int(j % g.S), r = int(j / g.S % g.R), c = int(j / (g.S * g.R));
    return {inp + (int64_t(grp) * (g.C / g.G) + c) * g.H * g.W, r * g.dh - g.ph, s * g.dw - g.pw};
  }
  __device__ T a(const Row& y, int64_t d) const {
    int64_t n;
    int pq;
    divmod(d, g.P * g.Q, n, pq);
    return y.p[n * g.K * g.P * g.Q + pq];
  }
  __device__ T b(const Col& x, int64_t d) const {
    int64_t n;
    int pq;
    divmod(d, g.P * g.Q, n, pq);
    const int p = pq / g.Q, q = pq % g.Q;
    const int h = p * g.sh + x.h, w = q * g.sw + x.w;
    return (h >= 0 && h < g.H && w >= 0 && w < g.W)
               ? x.p[n * g.C * g.H * g.W + int64_t(h) * g.W + w]
               : T(0);
  }
  __device__ void store(int grp, int split, int64_t m, int64_t j, T v) const {
    partial[((int64_t(split) * g.K + grp * rows() + m) * cols()) + j] = v;
  }
};

// The tiled GEMM. Grid: x over BM-row tiles, y over BN-column tiles, z = group + G · split; split
// `z / G` reduces over d in [split · chunk, min(depth, (split + 1) · chunk)), chunk: a multiple
// of BK.
//
// Shared memory holds the slice transposed, As[d][m] and Bs[d][j] (rows padded by 4 so that writes
// down a column hit 8 different banks). Each thread loads BM·BK/256 elements of A and BN·BK/256 of
// B per slice, e = tid + l·256 for l = 0, 1, ...; a problem says for each operand which index the
// consecutive e (the threads of a warp) walk, so that they read consecutive addresses:
//   Problem::kALoadAlongM: A element e is (m, d) = (e % BM, e / BM), else (e / BK, e % BK);
//   Problem::kBLoadAlongJ: B element e is (d, j) = (e / BN, e % BN), else (e % BK, e / BK).
// What a load needs of its row (column) is computed once, before the slice loop (Problem::Row/Col).
// Thread t owns the micro-tile rows tm + i·BM/TM and columns tn·TN + j (tm = t % (BM/TM)), so a
// warp reads As[l][...] at consecutive addresses and stores consecutive output rows (pixels).
constexpr int kSmemPad = 4;

// Where load e of a slice goes in a BX x BK operand tile (BX = BM for A, BN for B): its row (of A)
// or column (of B) x and its reduction step d, consecutive e along x when kAlong, else along d.
template <bool kAlong, int BX, int BK>
__device__ __forceinline__ void load_slot(int e, int& x, int& d) {
  x = kAlong ? e % BX : e / BK;
  d = kAlong ? e / BX : e % BK;
}

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
  const int64_t d_begin = split * chunk,
                d_end = d_begin + chunk < pb.depth() ? d_begin + chunk : pb.depth();

  // where this thread's loads go in the tile, and their rows / columns
  int a_m[kALoads], a_d[kALoads], b_j[kBLoads], b_d[kBLoads];
  bool a_ok[kALoads], b_ok[kBLoads];
  typename Problem::Row arow[kALoads];
  typename Problem::Col bcol[kBLoads];
  for (int l = 0; l < kALoads; ++l) {
    load_slot<Problem::kALoadAlongM, BM, BK>(tid + l * kThreads, a_m[l], a_d[l]);
    a_ok[l] = m0 + a_m[l] < rows;
    arow[l] = pb.row(grp, a_ok[l] ? m0 + a_m[l] : 0);
  }
  for (int l = 0; l < kBLoads; ++l) {
    load_slot<Problem::kBLoadAlongJ, BN, BK>(tid + l * kThreads, b_j[l], b_d[l]);
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

}  // namespace kernels
}  // namespace minicnn
