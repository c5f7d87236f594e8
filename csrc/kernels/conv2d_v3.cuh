// conv2d version 3: the three implicit GEMMs of version 2 (see conv2d.cu for the index mapping),
// rebuilt for speed. Included by conv2d.cu; the launchers are there.
//
// What changed against version 2, and why:
//   - one walk per thread: a thread loads L = TILE/32 consecutive reduction steps of one row of A
//     and L of one column of B per slice, both at the same reduction offset, so a single
//     incremental position (c, r, s) (forward), (k, r, s) (backward data) or (n, p, q) (backward
//     weight) serves all its loads; it advances by BK per slice with compares, no division;
//   - forward and backward data reduce in (r, s, c) order: the L loads of a slice are L channels
//     at the same filter tap, so one bounds check covers them;
//   - all of a slice's global loads go to registers before any shared-memory store, and the next
//     slice's loads are issued before the current slice's math (register prefetch); shared memory
//     is double-buffered, so one barrier per slice;
//   - 128-bit global loads where the operand is contiguous along the reduction and aligned
//     (weights of 1x1 convolutions, dout and stride-1 rows of x in backward weight), with a scalar
//     fallback that the launcher selects from the pointers' alignment (offset views reach us);
//   - the micro-tile is read from shared memory with 128-bit loads for both operands (a thread owns
//     rows tm*4 + {0..3} and 64 + tm*4 + {0..3}: two float4 per operand per step);
//   - backward data runs one GEMM per output phase (h mod sh, w mod sw): only the taps that can hit
//     the phase are in its reduction, so a stride-2 layer skips the 3/4 of taps that are zero;
//   - the epilogue decodes its row once per group of 4 rows and then steps, no 64-bit division.
//   - split-K for all three passes (partials reduced in a fixed order by conv2d_reduce_*).
#pragma once

#include "conv2d_v3_problems.cuh"

namespace minicnn {
namespace kernels {
namespace v3 {

// The GEMM kernel of version 3. Grid: x over TILE-row tiles, y over TILE-column tiles, z over the
// problem's (group, phase, split) blocks. Dynamic shared memory: 2 stages of As[BK][TILE + kPad]
// and Bs[BK][TILE + kPad] (rows padded by 4 elements: 16-byte aligned rows, no bank conflicts).
// A value the compiler cannot see through (so it recomputes what depends on it, rather than keep it).
__device__ __forceinline__ unsigned opaque(unsigned v) {
#ifdef __CUDA_ARCH__
  asm volatile("" : "+r"(v));
#endif
  return v;
}

// __launch_bounds__(256, 2) for float: at most 128 registers a thread, two blocks per SM. double's
// 8x8 accumulators alone take 128 registers, so it asks for one block.
template <class Problem, int TILE>
__global__ void __launch_bounds__(kThreads, sizeof(typename Problem::T) == 4 ? 2 : 1)
    conv2d_implicit_gemm_v3_kernel(Problem pb, int64_t chunk) {
  using T = typename Problem::T;
  constexpr int L = TILE / 32;                     // loads per operand per thread per slice
  constexpr int TM = TILE / 16;                    // micro-tile edge (8, 4, 2)
  constexpr int V = TM < 4 ? TM : 4, GR = TM / V;  // vector width of a fragment, fragments per edge
  constexpr int LD = TILE + kPad, STAGE = 2 * kBK * LD;
  DYN_SHARED(T, smem);  // (2 stages, A then B, BK, LD)
  const typename Problem::Block first = pb.block(blockIdx.z, chunk);
  const int64_t m0 = int64_t(blockIdx.x) * TILE, j0 = int64_t(blockIdx.y) * TILE;
  if (m0 >= first.rows) return;  // the whole block: a phase with fewer rows than the grid
  const int tid = threadIdx.x, tm = tid % 16, tn = tid / 16;  // tm, tn: this thread's micro-tile
  const int li = tid / (kBK / L),
            dl = (tid % (kBK / L)) * L;  // this thread's load row/column, depth
  typename Problem::State st = pb.start(first, m0 + li, j0 + li, first.d_begin + dl);
  int left = steps_left(first.d_begin + dl, first.d_end);  // this thread's steps in the range
  T ra[L], rb[L];
  pb.fetch(st, left, ra, rb);
  auto stash = [&](int stage) {  // this thread's loads into stage 0 or STAGE
    T* const at = smem + stage + dl * LD + li;
    for (int l = 0; l < L; ++l) at[l * LD] = ra[l], at[(kBK + l) * LD] = rb[l];
  };
  stash(0);
  __syncthreads();

  T acc[TM][TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) acc[i][j] = T(0);
  int stage = 0;  // 0 or STAGE: the stage this slice computes on
  for (int slices = int((first.d_end - first.d_begin + kBK - 1) / kBK); slices > 0; --slices) {
    const bool more = slices > 1;
    if (more) {  // the next slice's global loads, in flight during this slice's math
      left -= kBK;
      pb.advance(st);
      pb.fetch(st, left, ra, rb);
    }
#pragma unroll
    for (int l = 0; l < kBK; ++l) {
      T a[TM], b[TM];
#pragma unroll
      for (int g = 0; g < GR; ++g) {
        copy_vec<V>(a + g * V, smem + stage + l * LD + tm * V + g * (TILE / GR));
        copy_vec<V>(b + g * V, smem + stage + (kBK + l) * LD + tn * V + g * (TILE / GR));
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) acc[i][j] += a[i] * b[j];
    }
    stage ^= STAGE;
    if (more) stash(stage);
    __syncthreads();
  }
  // epilogue: rows tm·V + i + g·TILE/GR, columns tn·V + j + h·TILE/GR. The block's output fields
  // are worked out again rather than held in registers through the main loop.
  const typename Problem::Block blk = pb.block(opaque(blockIdx.z), chunk);
  const int64_t mt = int64_t(opaque(blockIdx.x)) * TILE, jt = int64_t(opaque(blockIdx.y)) * TILE;
#pragma unroll
  for (int g = 0; g < GR; ++g) {
    const int64_t mg = mt + tm * V + g * (TILE / GR);
    if (mg >= blk.rows) continue;
    RowPos o = decode_row(mg, blk.A, blk.B);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      if (mg + i < blk.rows) {
#pragma unroll
        for (int h = 0; h < GR; ++h)
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const int64_t col = jt + tn * V + j + h * (TILE / GR);
            if (col < blk.cols) pb.store(blk, o, int(col), acc[g * V + i][h * V + j]);
          }
      }
      step_row(o, blk.A, blk.B);
    }
  }
}

}  // namespace v3
}  // namespace kernels
}  // namespace minicnn
