// The tensor-core conv's fast path for backward weight (conv2d_wmma.cu, version 4), on the
// channels-last copies of dy and x (conv2d_wmma_nhwc.cuh converts them):
//   A[m, d] = dy (N, P, Q, K)[n, p, q, g·Kg + m]                              (rows m = k)
//   B[d, j] = x (N, H, W, C)[n, p·sh - ph + r·dh, q·sw - pw + s·dw, g·Cg + c] (j = (r, s, c))
// with the reduction d = (n, p, q). Both are contiguous along the tile's fixed index (k, c), so
// here the 16-byte vectors run across a row of the reduction: A's with one address each, B's with
// one spatial check each (the thread's j fixes (r, s, c) for the whole loop; the walk of d gives
// (n, p, q)). Tiles hold rows of the reduction: As (BK, BM) is A column-major, Bs (BK, BN) is B
// row-major. The float32 partials (splits, K, Cg·R·S) are written in the weights' (c, r, s)
// order.
#pragma once

#include "conv2d_wmma_nhwc.cuh"

namespace minicnn {
namespace kernels {
namespace tc {

template <class T>
constexpr int kLdW = kBM + kVec<T>;  // shared row stride (elements): conflict-free 16-byte rows
template <class T>
constexpr int kRowVecs = kBM / kVec<T>;  // vectors in a row of a tile
// Copy mappings: each thread copies kVpt adjacent vectors of a row of a slice (kVpt 4 when K/G
// and C/G are multiples of 4 vectors: one walk, one address and one spatial check for 64 bytes).
template <class T, int kVpt>
constexpr int kRowsPass = kThreadsV * kVpt / kRowVecs<T>;  // rows of a slice copied at once
template <class T, int kVpt>
constexpr int kBwPasses = kBKv<T> / kRowsPass<T, kVpt>;  // passes that fill a slice
template <class T>
constexpr size_t kNhwcBwBytes = 2 * 2 * kBKv<T> * kLdW<T> * sizeof(T);  // 2 slices of As, Bs
static_assert(kBwPasses<float, 1> * kRowsPass<float, 1> == kBKv<float> &&
                  kBwPasses<__half, 4> * kRowsPass<__half, 4> == kBKv<__half> &&
                  kBwPasses<float, 4> * kRowsPass<float, 4> == kBKv<float>,
              "whole passes fill a slice");

// Rows k, columns (r, s, c), reduction (n, p, q); float32 partials (splits, K, Cg·R·S).
template <class T>
struct NhwcBackwardWeight {
  float* partial;
  const T *dy, *x;  // channels last
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return g.K / g.G; }
  __device__ int cols() const { return (g.C / g.G) * g.R * g.S; }
  __device__ void store(int64_t m, int j, float v, int split) const {
    const int Cg = g.C / g.G, c = j % Cg, rs = j / Cg;
    partial[(int64_t(split) * g.K + grp * rows() + m) * cols() + c * g.R * g.S + rs] = v;
  }
};

// What a thread copies for its column vector of B: fixed (r, s, c) of its j.
struct BwColumn {
  int64_t off;  // elements: ((r·dh)·W + s·dw)·C + g·Cg + c
  int h, w;     // r·dh, s·dw
  bool ok;      // j < Cg·R·S
};

__device__ __forceinline__ BwColumn bw_column(const Conv2d& g, int grp, int j) {
  const int Cg = g.C / g.G, c = j % Cg, rs = j / Cg, h = rs / g.S * g.dh, w = rs % g.S * g.dw;
  return BwColumn{(int64_t(h) * g.W + w) * g.C + grp * Cg + c, h, w, j < Cg * g.R * g.S};
}

// Grid (row tiles, column tiles, groups x splits); split s reduces [s·chunk, (s + 1)·chunk).
// Thread t copies vectors kVpt·(t % (kRowVecs / kVpt)) + v (v < kVpt) of rows
// t / (kRowVecs / kVpt) + i·kRowsPass (i < kBwPasses) of a slice, in As and in Bs; walks k[i]
// give (n, p, q) of those rows (digits r, s, c of Walk).
template <class T, int kVpt>
__global__ void __launch_bounds__(kThreadsV, 2)
    conv2d_wmma_nhwc_bw_kernel(NhwcBackwardWeight<T> pb, int groups, int chunk) {
  if constexpr (kArch >= Mma<T>::arch) {
    DYN_SHARED(unsigned char, smem);
    T* tiles = reinterpret_cast<T*>(smem);
    constexpr int kTile = kBKv<T> * kLdW<T>, kSlice = 2 * kTile;
    constexpr int kPass = kRowsPass<T, kVpt>, kN = kBwPasses<T, kVpt>;
    const Conv2d& g = pb.g;
    pb.grp = int(blockIdx.z % unsigned(groups));
    const int split = int(blockIdx.z / unsigned(groups)), all = int(g.N * g.P * g.Q);
    const int d_begin = split * chunk, d_end = d_begin + chunk < all ? d_begin + chunk : all;
    const int m0 = int(blockIdx.x) * kBM, j0 = int(blockIdx.y) * kBN;
    const int warp = threadIdx.x / kWarpSize;
    const int wm = (warp % kWarpsMv) * kWMv * 16, wn = (warp / kWarpsMv) * kWNv * 16;
    constexpr int kRowThreads = kRowVecs<T> / kVpt;
    const int row = threadIdx.x / kRowThreads, vec = threadIdx.x % kRowThreads * kVpt;
    const int m = m0 + vec * kVec<T>;
    const bool m_ok = m < pb.rows();  // kVpt 4: rows() a multiple of 4 vectors
    const T* a = pb.dy + int64_t(pb.grp) * pb.rows() + m;
    const BwColumn col = bw_column(g, pb.grp, j0 + vec * kVec<T>);  // kVpt 4: one (r, s)
    Acc<T> acc[kWMv][kWNv];
    zero<T>(acc);
    const Walk step = walk_at(kBKv<T>, g.P, g.Q);
    Walk k[kN];
    int64_t a_src[kN];  // A's row k[i].d: byte address, kBKv rows further each slice
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      k[i] = walk_at(d_begin + row + kPass * i, g.P, g.Q);
      a_src[i] = int64_t(reinterpret_cast<uintptr_t>(a + int64_t(k[i].d) * g.K));
    }
    const int64_t a_step = int64_t(kBKv<T>) * g.K * int64_t(sizeof(T));
    auto fetch = [&](T* As) {  // the slice at k into As (BK, kLdW) and Bs (BK, kLdW) after it
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        const bool valid = k[i].d < d_end;
        const int at = (row + kPass * i) * kLdW<T> + vec * kVec<T>;
        const int h0 = k[i].s * g.sh - g.ph, w0 = k[i].c * g.sw - g.pw;
        const bool ok = valid & col.ok & in(h0 + col.h, g.H) & in(w0 + col.w, g.W);
        const T* b = pb.x + ((int64_t(k[i].r) * g.H + h0) * g.W + w0) * g.C + col.off;
#pragma unroll
        for (int v = 0; v < kVpt; ++v) {
          copy16(As + at + v * kVec<T>, a_src[i] + 16 * v, valid & m_ok);
          copy16(As + kTile + at + v * kVec<T>, int64_t(reinterpret_cast<uintptr_t>(b)) + 16 * v,
                 ok);
        }
      }
    };
    fetch(tiles);
    wait_copies();
    __syncthreads();
    const T* a_warp = tiles + wm;          // the warp's first column of As (buffer 0)
    const T* b_warp = tiles + kTile + wn;  // and of Bs
    // One slice from buffer kBuf, the next one's copies into the other first; false at the end.
    auto slice = [&](int d0, auto buffer) {
      constexpr int kBuf = decltype(buffer)::value;
      const bool more = d0 + kBKv<T> < d_end;
      if (more) {  // the next slice's copies, in flight during this slice's mma_sync
#pragma unroll
        for (int i = 0; i < kN; ++i) advance(k[i], step, g.P, g.Q), a_src[i] += a_step;
        fetch(tiles + (kBuf ^ 1) * kSlice);
      }
      multiply_slice_at<T, kBKv<T>, SliceLayout<1, kLdW<T>, 1, kLdW<T>>, kBuf * kSlice>(
          a_warp, b_warp, acc);
      wait_copies();
      __syncthreads();  // the next slice is in; every warp is done with this one
      return more;
    };
    if (d_begin < d_end)
      for (int d0 = d_begin; slice(d0, std::integral_constant<int, 0>()); d0 += 2 * kBKv<T>)
        if (!slice(d0 + kBKv<T>, std::integral_constant<int, 1>())) break;
    float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * kLdS;
    store_tile<T>(pb, scratch, acc, m0 + wm, j0 + wn, split);
  } else {
    __trap();  // the launcher refuses this GPU first (require_arch)
  }
}

// Whether backward weight takes the NHWC path: K/G and C/G fill vectors, N·P·Q is an int.
template <class T>
bool nhwc_bw_fits(const Conv2d& g) {
  return (g.K / g.G) % kVec<T> == 0 && (g.C / g.G) % kVec<T> == 0 &&
         g.N * g.P * g.Q <= INT32_MAX - 2 * kBKv<T>;
}

// Backward weight on the NHWC path: the float32 partials (splits, K, Cg·R·S) first in the
// workspace, then dy as (N, P, Q, K) and x as (N, H, W, C), each 16-byte aligned.
template <class T>
void backward_weight_nhwc(float* partial, const T* dout, const T* inp, const Conv2d& g, int splits,
                          cudaStream_t stream) {
  const char* op = "conv2d_backward_weight";
  const int cols = (g.C / g.G) * g.R * g.S;
  const int64_t depth = g.N * g.P * g.Q, n = int64_t(splits) * g.K * cols;
  T* dya = nhwc_workspace(op, reinterpret_cast<T*>(partial + (n + 3) / 4 * 4));
  T* xa = after(dya, g.N * g.K * g.P * g.Q);
  to_nhwc(dya, dout, g.N, g.K, int64_t(g.P) * g.Q, stream);
  to_nhwc(xa, inp, g.N, g.C, int64_t(g.H) * g.W, stream);
  const int chunk = int(((depth + splits - 1) / splits + kBKv<T> - 1) / kBKv<T> * kBKv<T>);
  const int64_t gx = (g.K / g.G + kBM - 1) / kBM, gy = (cols + kBN - 1) / kBN;
  const int64_t gz = int64_t(g.G) * splits;
  if (gx == 0 || gy == 0) return;
  if (gy > 65535 || gz > 65535)
    throw std::invalid_argument(std::string(op) + ": the tensor-core grid (" + std::to_string(gx) +
                                ", " + std::to_string(gy) + ", " + std::to_string(gz) +
                                ") is too large");
  constexpr size_t smem = kNhwcBwBytes<T>;
  static_assert(smem <= 48 * 1024 && kThreadsV / 32 * 16 * kLdS * 4 <= smem, "smem");
  const dim3 grid{unsigned(gx), unsigned(gy), unsigned(gz)};
  const NhwcBackwardWeight<T> pb{partial, dya, xa, g, 0};
  if ((g.K / g.G) % (4 * kVec<T>) == 0 && (g.C / g.G) % (4 * kVec<T>) == 0) {
    LAUNCH((conv2d_wmma_nhwc_bw_kernel<T, 4>), grid, kThreadsV, smem, stream)(pb, g.G, chunk);
  } else {
    LAUNCH((conv2d_wmma_nhwc_bw_kernel<T, 1>), grid, kThreadsV, smem, stream)(pb, g.G, chunk);
  }
  CHECK_LAUNCH("conv2d_wmma_nhwc_bw_kernel");
  ++g_launches;
  ++g_nhwc_launches;
}

}  // namespace tc
}  // namespace kernels
}  // namespace minicnn
