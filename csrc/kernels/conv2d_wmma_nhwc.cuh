// The tensor-core conv's fast path (conv2d_wmma.cu, version 4): forward and backward data on
// channels-last copies of their operands, so that 16 contiguous bytes of the reduction are one
// 128-bit load and one 128-bit shared store.
//
// Forward:        A[m, d] = x (N, H, W, C)[n, p·sh - ph + r·dh, q·sw - pw + s·dw, g·Cg + c]
//                 B[d, j] = w (K, R, S, Cg)[g·Kg + j, r, s, c]           (KRSC)
// Backward data:  A[m, d] = dy (N, P, Q, K)[n, (h + ph - r·dh) / sh, (w + pw - s·dw) / sw,
//                                            g·Kg + k]
//                 B[d, j] = wt (C, R, S, Kg)[g·Cg + j, r, s, k]         (w transposed per group)
// with rows m = (n, p, q) of the output (backward data: (n, h, w)), columns j its channels, and
// the reduction d = (r, s, c) (backward data: (r, s, k)) in that order, channels fastest. When the
// per-group channels of the reduction are a multiple of kVec (8 halves or 4 floats), each aligned
// run of kVec values of d shares one (r, s): one spatial check and one address per 16 bytes.
// The launcher converts the NCHW operands into a workspace first (nhwc_kernel, once per call, with
// TF32 rounding there for float) and the kernel writes its output in NCHW, as version 4's gather
// path does. Backward data with a stride > 1 divides per vector (Unit = false).
//
// Block tile 128 x 128 of 4 warps, each owning 64 x 64 (4 x 4 fragments: each fragment load feeds
// 4 mma_sync). Slices of the reduction: 128 bytes (64 halves or 32 floats) when the channels of
// the reduction per group are a multiple of that, so that a slice is one (r, s) tap and a thread
// copies 4 vectors of a row behind one spatial check (kTpr 2); else 64 bytes, one vector of each of
// 4 rows a thread (kTpr 4). Copies go straight into shared memory (cp.async on sm_80+) while the
// tensor cores work on the slice before (double-buffered shared tiles, one barrier per slice, the
// loop unrolled by 2 so that every fragment is read at a constant offset from the warp's tile
// base); the reduction walk (r, s, c) advances by digits with carries (one-tap slices: by
// additions), no division in the loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "conv2d_wmma_frag.cuh"
#include "conv2d_wmma_problems.cuh"

namespace minicnn {
namespace kernels {
namespace tc {

template <class T>
constexpr int kVec = 16 / int(sizeof(T));  // elements of a 128-bit vector
template <class T>
constexpr int kBKv = 4 * kVec<T>;  // 64 bytes: backward weight's slice depth
// 4 warps, 2 along m by 2 along n, each owning a 64 x 64 piece of the 128 x 128 tile: kWMv x kWNv
// fragments, so that each fragment load feeds 4 mma_sync.
constexpr int kThreadsV = 128, kWarpsMv = 2, kWMv = 4, kWNv = 4;
static_assert(kWarpsMv * kWMv * 16 == kBM && (kThreadsV / 32 / kWarpsMv) * kWNv * 16 == kBN,
              "tiling");
// Copy mappings of a slice: kTpr threads per row, each copying vectors lane, lane + kTpr, ... of
// its rows. kTpr 4 (any L): 64-byte slices (4 vectors a row), a walk per thread, 4 rows a thread.
// kTpr 2 (L a multiple of 128 bytes): 128-byte slices, each one (r, s) tap, so that one spatial
// check serves the 4 vectors of a row a thread copies; 2 rows a thread, and each copy instruction
// reads whole 32-byte sectors. Its 72 KiB of shared memory need the opt-in above 48 KiB.
template <class T, int kTpr>
constexpr int kDepthT = (kTpr == 2 ? 128 : 64) / int(sizeof(T));  // slice depth (elements)
template <class T, int kTpr>
constexpr int kLdT = kDepthT<T, kTpr> + kVec<T>;  // shared row stride: 16 bytes of padding
template <class T, int kTpr>
constexpr int kVpt = kDepthT<T, kTpr> / kVec<T> / kTpr;  // vectors a thread copies from a row
template <int kTpr>
constexpr int kVecRows = kThreadsV / kTpr;  // rows a pass of the block's threads loads
template <int kTpr>
constexpr int kPasses = kBM / kVecRows<kTpr>;  // passes over a slice: rows (and columns) a thread
static_assert(kBM == kBN && kPasses<4> * kVecRows<4> == kBM && kPasses<2> * kVecRows<2> == kBM,
              "A and B share the copy mapping");
// Two slices of As (BM, kLd) and Bs (BN, kLd), both rows of the reduction.
template <class T, int kTpr>
constexpr size_t kNhwcBytes = 2 * (kBM + kBN) * kLdT<T, kTpr> * sizeof(T);

// The NHWC operand and the reduction's geometry.
template <class T>
struct Nhwc {
  const T* a;          // (N, Hi, Wi, Ci), channels last
  const T* b;          // (G·cols, R, S, L): the weights, reduction contiguous
  int Hi, Wi, Ci, L;   // L: channels of the reduction per group
  int P, Q;            // rows m = (n, p, q) over (N, P, Q)
  int mh, mw, oh, ow;  // (p, q) -> the window's origin (p·mh + oh, q·mw + ow)
  int rh, rw;          // (r, s) -> origin + (r·rh, s·rw)
  int sh, sw;          // backward data: the stride that divides the coordinate; else 1
  int S;
};

// A row of A, fixed for the block: its image's first element (and channel group) and origin.
struct Row {
  int64_t addr;  // bytes: Unit: the element at the origin; else the image's element (0, 0)
  int h, w;      // the origin, kOut past the last row
};

template <class T, bool Unit>
__device__ __forceinline__ Row row_of(const Nhwc<T>& nx, int64_t m, int64_t rows, int grp) {
  const int PQ = nx.P * nx.Q;
  const int64_t n = m / PQ;
  const int pq = int(m - n * PQ), h = (pq / nx.Q) * nx.mh + nx.oh, w = (pq % nx.Q) * nx.mw + nx.ow;
  int64_t off = n * nx.Hi * nx.Wi * nx.Ci + int64_t(grp) * nx.L;
  if constexpr (Unit) off += (int64_t(h) * nx.Wi + w) * nx.Ci;
  const int64_t addr = int64_t(reinterpret_cast<uintptr_t>(nx.a)) + off * int64_t(sizeof(T));
  return Row{addr, m < rows ? h : kOut, w};
}

// The 16 bytes at byte address src, or zeros (+0.0 in every T) when !ok, into shared dst: on
// sm_80 and newer an asynchronous copy (cp.async, zero-filled when !ok: no address is read), to
// wait for with wait_copies(); elsewhere (older GPUs, the emulator) a load and a store, done at
// once.
__device__ __forceinline__ void copy16(void* dst, int64_t src, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned to = unsigned(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(src),
               "r"(ok ? 16 : 0));
#elif defined(__CUDA_ARCH__)
  int4 v;
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %5, 0;\n mov.b32 %0, 0;\n mov.b32 %1, 0;\n"
      " mov.b32 %2, 0;\n mov.b32 %3, 0;\n @p ld.global.nc.v4.b32 {%0, %1, %2, %3}, [%4];\n}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(src), "r"(int(ok)));
  *reinterpret_cast<int4*>(dst) = v;
#else
  *reinterpret_cast<int4*>(dst) =
      ok ? *reinterpret_cast<const int4*>(uintptr_t(src)) : make_int4(0, 0, 0, 0);
#endif
}

// This thread's copy16 calls so far have landed (then a barrier makes them the block's).
__device__ __forceinline__ void wait_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::);
#endif
}

// The reduction walk of one thread: its index d = (r·S + s)·L + c and what it adds to a row.
struct Walk {
  int d, r, s, c;
  int dh, dw;
  int off;  // bytes: Unit: ((r·rh)·Wi + s·rw)·Ci + c; else c (an image has < 2^31 bytes)
};

template <class T, bool Unit>
__device__ __forceinline__ void place(Walk& k, const Nhwc<T>& nx) {
  k.dh = k.r * nx.rh, k.dw = k.s * nx.rw;
  int off = k.c;
  if constexpr (Unit) off += (k.dh * nx.Wi + k.dw) * nx.Ci;
  k.off = off * int(sizeof(T));
}

// k.d += step.d, its digits carried (step's digits are in range: one carry per digit at most).
__device__ __forceinline__ void advance(Walk& k, const Walk& step, int S, int L) {
  k.d += step.d;
  k.c += step.c;
  if (k.c >= L) k.c -= L, ++k.s;
  k.s += step.s;
  if (k.s >= S) k.s -= S, ++k.r;
  k.r += step.r;
}

__device__ __forceinline__ Walk walk_at(int d, int S, int L) {
  return Walk{d, d / L / S, d / L % S, d % L, 0, 0, 0};
}

// What a placed walk's off gains (bytes) when s, and then r, carries: next_s, next_r.
template <class T, bool Unit>
__device__ __forceinline__ int2 tap_steps(const Nhwc<T>& nx) {
  const int size = int(sizeof(T));
  if constexpr (!Unit) return make_int2(-nx.L * size, 0);
  return make_int2((nx.rw * nx.Ci - nx.L) * size, (nx.rh * nx.Wi - nx.S * nx.rw) * nx.Ci * size);
}

// A placed walk one slice further when every slice is one tap (L a multiple of kDepth: c carries
// by at most one tap a slice), by additions: k.r is not kept.
template <class T, int kDepth>
__device__ __forceinline__ void advance_tap(Walk& k, int S, int L, int rh, int rw, int2 steps) {
  k.d += kDepth, k.c += kDepth, k.off += kDepth * int(sizeof(T));
  if (k.c >= L) {
    k.c -= L, k.dw += rw, k.off += steps.x;
    if (++k.s == S) k.s = 0, k.dw = 0, k.dh += rh, k.off += steps.y;
  }
}

// A's vectors of row f at the walk's position (the first; each next 16·kTpr bytes further, the
// same tap) into dst, dst + kTpr·kVec, ... (zeros outside the image or past the reduction).
template <class T, bool Unit, int kTpr>
__device__ __forceinline__ void a_vectors(T* dst, const Nhwc<T>& nx, const Row& f, const Walk& k,
                                          bool valid) {
  const int h = f.h + k.dh, w = f.w + k.dw;
  int64_t src = f.addr + k.off;
  bool ok = valid & in(h, nx.Hi) & in(w, nx.Wi);
  if constexpr (!Unit) {
    const unsigned uh = unsigned(h), uw = unsigned(w), p = uh / unsigned(nx.sh),
                   q = uw / unsigned(nx.sw);
    ok = valid & (h >= 0) & (w >= 0) & (p * nx.sh == uh) & (q * nx.sw == uw) & in(int(p), nx.Hi) &
         in(int(q), nx.Wi);
    src += (int(p) * nx.Wi + int(q)) * nx.Ci * int(sizeof(T));
  }
#pragma unroll
  for (int v = 0; v < kVpt<T, kTpr>; ++v) copy16(dst + v * kTpr * kVec<T>, src + 16 * kTpr * v, ok);
}

// B's vectors of a row likewise: src the first's byte address.
template <class T, int kTpr>
__device__ __forceinline__ void b_vectors(T* dst, int64_t src, bool ok) {
#pragma unroll
  for (int v = 0; v < kVpt<T, kTpr>; ++v) copy16(dst + v * kTpr * kVec<T>, src + 16 * kTpr * v, ok);
}

// Grid (row tiles, column tiles, groups). Thread t copies vectors t % kTpr + kTpr·v of rows
// t / kTpr + i·kVecRows (i < kPasses) of each slice, of A and of B. Slices alternate between two
// shared buffers (the loop unrolled by 2, so that buffer addresses are constants): the next
// slice's copies are issued before this slice's mma_sync, one barrier a slice.
template <class T, class Problem, bool Unit, int kTpr>
__global__ void __launch_bounds__(kThreadsV, 2) conv2d_wmma_nhwc_kernel(Problem pb, Nhwc<T> nx) {
  if constexpr (kArch >= Mma<T>::arch) {
    DYN_SHARED(unsigned char, smem);
    T* tiles = reinterpret_cast<T*>(smem);
    constexpr int kDepth = kDepthT<T, kTpr>, kLd = kLdT<T, kTpr>;
    constexpr int kTile = kBM * kLd, kSlice = 2 * kTile;  // elements of As; of (As, Bs)
    constexpr int kRows = kVecRows<kTpr>, kN = kPasses<kTpr>;
    pb.grp = int(blockIdx.z);
    const int64_t m0 = int64_t(blockIdx.x) * kBM;
    const int depth = int(pb.depth());  // < 2^31 - kDepth (the launcher's check)
    const int j0 = int(blockIdx.y) * kBN, warp = threadIdx.x / kWarpSize;
    const int wm = (warp % kWarpsMv) * kWMv * 16, wn = (warp / kWarpsMv) * kWNv * 16;
    const int u = threadIdx.x / kTpr, lane = threadIdx.x % kTpr;
    Row rows[kN];
#pragma unroll
    for (int i = 0; i < kN; ++i)
      rows[i] = row_of<T, Unit>(nx, m0 + u + kRows * i, pb.rows(), pb.grp);
    // B's row j0 + u at the thread's d (bytes); row j0 + u + i·kRows is i·col_step further
    const T* b = nx.b + (int64_t(pb.grp) * pb.cols() + j0 + u) * depth + lane * kVec<T>;
    int64_t col = int64_t(reinterpret_cast<uintptr_t>(b));
    const int64_t col_step = int64_t(kRows) * depth * int64_t(sizeof(T));
    const int cols_left = pb.cols() - j0 - u;  // row j0 + u + i·kRows exists: i·kRows < it
    Acc<T> acc[kWMv][kWNv];
    zero<T>(acc);
    const Walk step = walk_at(kDepth, nx.S, nx.L);
    Walk k = walk_at(lane * kVec<T>, nx.S, nx.L);
    place<T, Unit>(k, nx);
    const int2 steps = tap_steps<T, Unit>(nx);
    auto fetch = [&](T* As) {  // the slice at k into As (BM, kLd) and Bs (BN, kLd) after it
      const bool valid = k.d < depth;
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        const int at = (u + kRows * i) * kLd + lane * kVec<T>;
        a_vectors<T, Unit, kTpr>(As + at, nx, rows[i], k, valid);
        b_vectors<T, kTpr>(As + kTile + at, col + col_step * i, valid & (kRows * i < cols_left));
      }
    };
    const T* a_warp = tiles + wm * kLd;          // the warp's first row of As (buffer 0)
    const T* b_warp = tiles + kTile + wn * kLd;  // and of Bs
    // One slice from buffer kBuf, the next one's copies into the other first; false at the end.
    auto slice = [&](int d0, auto buffer) {
      constexpr int kBuf = decltype(buffer)::value;
      const bool more = d0 + kDepth < depth;
      if (more) {  // the next slice's copies, in flight during this slice's mma_sync
        if constexpr (kTpr == 2) {
          advance_tap<T, kDepth>(k, nx.S, nx.L, nx.rh, nx.rw, steps);
        } else {
          advance(k, step, nx.S, nx.L);
          place<T, Unit>(k, nx);
        }
        col += kDepth * int(sizeof(T));
        fetch(tiles + (kBuf ^ 1) * kSlice);
      }
      multiply_slice_at<T, kDepth, SliceLayout<kLd, 1, kLd, 1>, kBuf * kSlice>(a_warp, b_warp, acc);
      wait_copies();
      __syncthreads();  // the next slice is in; every warp is done with this one
      return more;
    };
    fetch(tiles);
    wait_copies();
    __syncthreads();
    for (int d0 = 0; slice(d0, std::integral_constant<int, 0>()); d0 += 2 * kDepth)
      if (!slice(d0 + kDepth, std::integral_constant<int, 1>())) break;
    float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * kLdS;
    store_tile<T>(pb, scratch, acc, m0 + wm, j0 + wn, 0);
  } else {
    __trap();  // the launcher refuses this GPU first (require_arch)
  }
}

// out (N, HW, C) = in (N, C, HW), as the tensor cores read it (float: rounded to TF32).
template <class T>
__global__ void nhwc_kernel(T* out, const T* in, int64_t N, int C, int64_t HW) {
  const int64_t i = global_index();
  if (i >= N * HW * C) return;
  const int c = int(i % C);
  const int64_t t = i / C, hw = t % HW, n = t / HW;
  reinterpret_cast<Raw<T>*>(out)[i] =
      operand<T>(reinterpret_cast<const Raw<T>*>(in)[(n * C + c) * HW + hw]);
}

// out (G, Cg, RS, Kg) = in (G, Kg, Cg, RS): backward data's weights, reduction (r, s, k) last.
template <class T>
__global__ void krsc_transposed_kernel(T* out, const T* in, int G, int Kg, int Cg, int RS) {
  const int64_t i = global_index();
  if (i >= int64_t(G) * Kg * Cg * RS) return;
  const int k = int(i % Kg);
  const int64_t t = i / Kg;
  const int rs = int(t % RS), c = int(t / RS % Cg), grp = int(t / RS / Cg);
  reinterpret_cast<Raw<T>*>(out)[i] =
      operand<T>(reinterpret_cast<const Raw<T>*>(in)[((int64_t(grp) * Kg + k) * Cg + c) * RS + rs]);
}

// ---- launchers -------------------------------------------------------
std::atomic<int64_t> g_nhwc_launches{0};

// Shared memory a block of the 128-byte slices needs (the same in every T), and whether this GPU
// grants it (sm_75 has 64 KiB a block; sm_80+ more than 160 KiB; the emulator 227 KiB).
constexpr size_t kDeepSmem = 2 * (kBM + kBN) * (128 + 16);
inline bool deep_slices_fit() {
#ifdef __CUDACC__
  int device = 0, most = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return size_t(most) >= kDeepSmem;
#else
  return true;
#endif
}

// Whether L channels per group of the reduction allow 16-byte vectors (and the reduction L·R·S
// is an int, an image of the channels-last operand has < 2^31 bytes): the NHWC path.
template <class T>
bool nhwc_fits(int L, int R, int S, int64_t image) {
  return L % kVec<T> == 0 && int64_t(L) * R * S <= INT32_MAX - 2 * kBKv<T> &&
         image * int64_t(sizeof(T)) <= INT32_MAX;
}

// The workspace as T, checked for the 16-byte alignment of the vector loads.
template <class T>
T* nhwc_workspace(const char* op, T* workspace) {
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    throw std::invalid_argument(std::string(op) + ": the workspace must be 16-byte aligned");
  return workspace;
}

// The second operand's place in the workspace: after the first's `n` elements, 16-byte aligned.
template <class T>
T* after(T* first, int64_t n) {
  return first + (n + kVec<T> - 1) / kVec<T> * kVec<T>;
}

template <class T>
void to_nhwc(T* out, const T* in, int64_t N, int C, int64_t HW, cudaStream_t stream) {
  const int64_t n = N * C * HW;
  if (n == 0) return;
  LAUNCH((nhwc_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(out, in, N, C, HW);
  CHECK_LAUNCH("nhwc_kernel");
}

template <class T, class Problem, bool Unit, int kTpr>
void launch_nhwc_tpr(const char* op, const Problem& pb, const Nhwc<T>& nx, int64_t rows, int cols,
                     int groups, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int64_t gx = (rows + kBM - 1) / kBM, gy = (cols + kBN - 1) / kBN;
  if (gx > INT32_MAX || gy > 65535 || groups > 65535)
    throw std::invalid_argument(std::string(op) + ": the tensor-core grid (" + std::to_string(gx) +
                                ", " + std::to_string(gy) + ", " + std::to_string(groups) +
                                ") is too large");
  constexpr size_t smem = kNhwcBytes<T, kTpr>;
  static_assert(smem <= kDeepSmem && kThreadsV / 32 * 16 * kLdS * 4 <= smem, "smem");
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(conv2d_wmma_nhwc_kernel<T, Problem, Unit, kTpr>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  LAUNCH((conv2d_wmma_nhwc_kernel<T, Problem, Unit, kTpr>),
         dim3(unsigned(gx), unsigned(gy), unsigned(groups)), kThreadsV, smem, stream)(pb, nx);
  CHECK_LAUNCH("conv2d_wmma_nhwc_kernel");
  ++g_launches;
  ++g_nhwc_launches;
}

// L channels a multiple of the 128-byte slice: each slice is one tap (kTpr 2), where the GPU
// lets a block have its shared memory; else kTpr 4.
template <class T, class Problem, bool Unit>
void launch_nhwc(const char* op, const Problem& pb, const Nhwc<T>& nx, int64_t rows, int cols,
                 int groups, cudaStream_t stream) {
  if (nx.L % kDepthT<T, 2> == 0 && deep_slices_fit())
    return launch_nhwc_tpr<T, Problem, Unit, 2>(op, pb, nx, rows, cols, groups, stream);
  launch_nhwc_tpr<T, Problem, Unit, 4>(op, pb, nx, rows, cols, groups, stream);
}

// Forward on the NHWC path: x to (N, H, W, C) and w to (K, R, S, Cg) in the workspace.
template <class T>
void forward_nhwc(T* workspace, const Forward<T>& pb, cudaStream_t stream) {
  const Conv2d& g = pb.g;
  const int Cg = g.C / g.G;
  T* xa = nhwc_workspace("conv2d_forward", workspace);
  T* wb = after(xa, g.N * g.C * g.H * g.W);
  to_nhwc(xa, pb.inp, g.N, g.C, int64_t(g.H) * g.W, stream);
  to_nhwc(wb, pb.weight, g.K, Cg, g.R * g.S, stream);
  const Nhwc<T> nx{xa,   wb,    g.H,   g.W,  g.C,  Cg, g.P, g.Q, g.sh,
                   g.sw, -g.ph, -g.pw, g.dh, g.dw, 1,  1,   g.S};
  launch_nhwc<T, Forward<T>, true>("conv2d_forward", pb, nx, g.N * g.P * g.Q, g.K / g.G, g.G,
                                   stream);
}

// Backward data on the NHWC path: dy to (N, P, Q, K) and w to (C, R, S, Kg) in the workspace.
template <class T>
void backward_data_nhwc(T* workspace, const BackwardData<T, true>& pb, cudaStream_t stream) {
  const Conv2d& g = pb.g;
  const int Kg = g.K / g.G, Cg = g.C / g.G;
  const char* op = "conv2d_backward_data";
  T* dya = nhwc_workspace(op, workspace);
  T* wt = after(dya, g.N * g.K * g.P * g.Q);
  to_nhwc(dya, pb.dout, g.N, g.K, int64_t(g.P) * g.Q, stream);
  const int64_t n = int64_t(g.K) * Cg * g.R * g.S;
  if (n > 0) {
    LAUNCH((krsc_transposed_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(wt, pb.weight, g.G,
                                                                              Kg, Cg, g.R * g.S);
    CHECK_LAUNCH("krsc_transposed_kernel");
  }
  const Nhwc<T> nx{dya, wt,   g.P,  g.Q,   g.K,   Kg,   g.H,  g.W, 1,
                   1,   g.ph, g.pw, -g.dh, -g.dw, g.sh, g.sw, g.S};
  const int64_t rows = g.N * g.H * g.W;
  if (g.sh == 1 && g.sw == 1)
    launch_nhwc<T, BackwardData<T, true>, true>(op, pb, nx, rows, Cg, g.G, stream);
  else
    launch_nhwc<T, BackwardData<T, true>, false>(op, pb, nx, rows, Cg, g.G, stream);
}

}  // namespace tc
}  // namespace kernels
}  // namespace minicnn
