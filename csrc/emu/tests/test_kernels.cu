// Kernels that must give the right answers under the emulator: tiled SGEMM (static and dynamic
// shared memory), block reductions with warp shuffles and atomics, an elementwise kernel on the
// fast path, the shuffle/vote semantics, and timings.
//
// Valid CUDA too: `nvcc -c` compiles it (run.sh checks), and on a GPU the kernel tests would run
// as they are; the tests of emulator internals are marked EMU_ONLY.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda_compat.h"
#include "harness.h"

using harness::Buffer;

#ifdef __CUDACC__
#define EMU_ONLY(test) std::printf("[ SKIP ] %s (emulator only)\n", #test)
#else
#define EMU_ONLY(test) RUN(test)
#endif

// ================================ tiled SGEMM ================================
// C (M, N) = A (M, K) @ B (K, N), row-major. Each block computes a TILE x TILE tile of C; each thread
// one element. Sizes need not be multiples of TILE: out-of-range loads read 0.
constexpr int TILE = 16;

__global__ void sgemm_tiled_static(float* C, const float* A, const float* B, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

// The same with the tiles in dynamic shared memory (2 * T * T floats), templated on the tile size.
template <int T>
__global__ void sgemm_tiled_dynamic(float* C, const float* A, const float* B, int M, int N, int K) {
  DYN_SHARED(float, smem);
  float* As = smem;          // (T, T)
  float* Bs = smem + T * T;  // (T, T)
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * T + ty, col = blockIdx.x * T + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += T) {
    As[ty * T + tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
    Bs[ty * T + tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < T; ++k) acc += As[ty * T + k] * Bs[k * T + tx];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

void sgemm_reference(std::vector<double>& C, Buffer<float>& A, Buffer<float>& B, int M, int N,
                     int K) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int k = 0; k < K; ++k) acc += double(A[i * K + k]) * B[k * N + j];
      C[i * N + j] = acc;
    }
}

// Runs both variants on (M, N, K); returns the static variant's time in ms.
double check_sgemm(int M, int N, int K) {
  Buffer<float> A(M * K), B(K * N), C1(M * N, -1.0f), C2(M * N, -1.0f);
  for (int i = 0; i < M * K; ++i) A[i] = float((i * 7) % 13) / 13.0f - 0.5f;
  for (int i = 0; i < K * N; ++i) B[i] = float((i * 5) % 11) / 11.0f - 0.5f;
  dim3 block(TILE, TILE), grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE);
  double t0 = harness::now_ms();
  LAUNCH(sgemm_tiled_static, grid, block, 0, 0)(C1.get(), A.get(), B.get(), M, N, K);
  CHECK_LAUNCH("sgemm_tiled_static");
  CUDA_CHECK(cudaDeviceSynchronize());
  double ms = harness::now_ms() - t0;
  LAUNCH((sgemm_tiled_dynamic<TILE>), grid, block, 2 * TILE * TILE * sizeof(float), 0)(
      C2.get(), A.get(), B.get(), M, N, K);
  CHECK_LAUNCH("sgemm_tiled_dynamic");
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> ref(M * N);
  sgemm_reference(ref, A, B, M, N, K);
  int bad = 0;
  for (int i = 0; i < M * N; ++i)
    bad += !harness::close(C1[i], ref[i], 1e-4, 1e-5) || !harness::close(C2[i], ref[i], 1e-4, 1e-5);
  CHECK(bad == 0);
  return ms;
}

void test_sgemm_odd_sizes() {
  check_sgemm(37, 53, 29);
}

void test_sgemm_128_timing() {
  double best = 1e30;  // best of 5: the first run also maps the fiber stacks
  for (int rep = 0; rep < 5; ++rep) best = std::min(best, check_sgemm(128, 128, 128));
  std::printf("    TIMING sgemm 128^3 (16x16 tiles, static shared): %.2f ms (best of 5)\n", best);
}

// ================================ block reduction ================================
// out += sum(in): grid-stride partial sums, a warp reduction with __shfl_down_sync, the warps'
// sums through shared memory, a last warp reduction, one atomicAdd per block.
template <class T>
__device__ T warp_sum(T v) {
  for (int offset = warpSize / 2; offset > 0; offset /= 2)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__global__ void block_sum(T* out, const T* in, int n) {
  DYN_SHARED(T, warp_sums);  // (blockDim.x / 32,)
  T v = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    v += in[i];
  v = warp_sum(v);
  int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / warpSize) ? warp_sums[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) atomicAdd(out, v);
  }
}

template <class T>
void check_block_sum(double rtol) {
  const int n = 100003, threads = 256, blocks = 13;
  Buffer<T> in(n), out(1, T(0));
  double ref = 0.0;
  for (int i = 0; i < n; ++i) {
    in[i] = T((i % 17) - 8) / T(8);
    ref += double(in[i]);
  }
  LAUNCH((block_sum<T>), blocks, threads, threads / 32 * sizeof(T), 0)(out.get(), in.get(), n);
  CHECK_LAUNCH("block_sum");
  CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("    sum = %.9g, reference %.9g\n", double(out[0]), ref);
  CHECK(harness::close(out[0], ref, rtol, 1e-3));
}

void test_block_sum_float() {
  check_block_sum<float>(1e-5);
}
void test_block_sum_double() {
  check_block_sum<double>(1e-12);
}

// ================================ elementwise: the fast path ================================
__global__ void saxpy(float* y, const float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

void test_elementwise_1m() {
  const int n = 1 << 20, threads = 256;
  Buffer<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = float(i % 100), y[i] = 1.0f;
#ifndef __CUDACC__
  minicnn_emu::Stats before = minicnn_emu::stats();
#endif
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = harness::now_ms();
    LAUNCH(saxpy, (n + threads - 1) / threads, threads, 0, 0)(y.get(), x.get(), 0.5f, n);
    CHECK_LAUNCH("saxpy");
    CUDA_CHECK(cudaDeviceSynchronize());
    best = std::min(best, harness::now_ms() - t0);
  }
  std::printf("    TIMING elementwise 1M floats (saxpy, 4096 blocks x 256): %.2f ms (best of 5)\n",
              best);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += y[i] != 1.0f + 2.5f * float(i % 100);
  CHECK(bad == 0);
#ifndef __CUDACC__
  // The fast path: one worker fiber per block, i.e. two switches per block, none per thread.
  minicnn_emu::Stats after = minicnn_emu::stats();
  CHECK(after.workers - before.workers == uint64_t(5 * n / threads));
  CHECK(after.switches - before.switches == uint64_t(5 * 2 * n / threads));
#endif
}

// The first warp exits at once; the second does a shuffle reduction. The block starts on the fast
// path and must fall back to fibers when a thread of the second warp waits.
__global__ void second_warp_sum(int* out) {
  if (threadIdx.x < 32) return;
  int v = warp_sum(int(threadIdx.x));
  if (threadIdx.x == 32) *out = v;
}

void test_fast_path_fallback() {
  Buffer<int> out(1, 0);
  LAUNCH(second_warp_sum, 1, 64, 0, 0)(out.get());
  CHECK_LAUNCH("second_warp_sum");
  CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(out[0] == (32 + 63) * 32 / 2);
}

// ================================ warp shuffles and votes ================================
// Each thread of a 64-thread block records what every variant returns to it.
constexpr int kWarpResults = 12;

template <class T>
__global__ void warp_ops(T* out, unsigned* votes) {  // out: (64, kWarpResults), votes: (64, 3)
  int t = threadIdx.x, lane = t % 32;
  T v = T(100 + t);
  T* o = out + t * kWarpResults;
  o[0] = __shfl_sync(0xffffffffu, v, (lane + 3) % 32);
  o[1] = __shfl_sync(0xffffffffu, v, 5, 8);   // lane 5 of each 8-lane segment
  o[2] = __shfl_sync(0xffffffffu, v, 11, 8);  // 11 % 8 = 3
  o[3] = __shfl_up_sync(0xffffffffu, v, 1);
  o[4] = __shfl_up_sync(0xffffffffu, v, 3, 16);
  o[5] = __shfl_down_sync(0xffffffffu, v, 2);
  o[6] = __shfl_down_sync(0xffffffffu, v, 5, 16);
  o[7] = __shfl_xor_sync(0xffffffffu, v, 1);
  o[8] = __shfl_xor_sync(0xffffffffu, v, 16);
  o[9] = __shfl_xor_sync(0xffffffffu, v, 4, 8);
  o[10] = (lane < 16) ? __shfl_down_sync(0x0000ffffu, v, 1) : T(-1);  // half-warp mask
  o[11] = (lane >= 16) ? __shfl_sync(0xffff0000u, v, 31) : T(-1);
  votes[t * 3 + 0] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  votes[t * 3 + 1] = __any_sync(0xffffffffu, t == 40);  // true in warp 1 only
  votes[t * 3 + 2] = __all_sync(0xffffffffu, t < 40);   // true in warp 0 only
}

// What the CUDA Programming Guide says each lane gets: the value of lane `src` (same warp).
int expected_warp_src(int lane, int variant) {
  switch (variant) {
    case 0:
      return (lane + 3) % 32;
    case 1:
      return (lane & ~7) + 5;
    case 2:
      return (lane & ~7) + 3;
    case 3:
      return lane >= 1 ? lane - 1 : lane;
    case 4:
      return (lane % 16) >= 3 ? lane - 3 : lane;
    case 5:
      return lane + 2 < 32 ? lane + 2 : lane;
    case 6:
      return (lane % 16) + 5 < 16 ? lane + 5 : lane;
    case 7:
      return lane ^ 1;
    case 8:
      return lane ^ 16;
    case 9:
      return lane ^ 4;
    case 10:
      return lane < 16 ? (lane + 1 < 32 ? lane + 1 : lane) : -1;
    case 11:
      return lane >= 16 ? 31 : -1;
  }
  return -1;
}

template <class T>
void check_warp_ops() {
  Buffer<T> out(64 * kWarpResults);
  Buffer<unsigned> votes(64 * 3);
  LAUNCH((warp_ops<T>), 1, 64, 0, 0)(out.get(), votes.get());
  CHECK_LAUNCH("warp_ops");
  CUDA_CHECK(cudaDeviceSynchronize());
  int bad = 0;
  for (int t = 0; t < 64; ++t) {
    int lane = t % 32, warp_base = t - lane;
    for (int variant = 0; variant < kWarpResults; ++variant) {
      int src = expected_warp_src(lane, variant);
      T want = src < 0 ? T(-1) : T(100 + warp_base + src);
      // lane 15's shuffle down by 1 reads lane 16, outside the half-warp mask: undefined in CUDA.
      if (variant == 10 && lane == 15) continue;
      bad += out[t * kWarpResults + variant] != want;
    }
    bad += votes[t * 3 + 0] != 0x49249249u;
    bad += votes[t * 3 + 1] != unsigned(t >= 32);
    bad += votes[t * 3 + 2] != unsigned(t < 32);
  }
  CHECK(bad == 0);
}

void test_warp_ops_int() {
  check_warp_ops<int>();
}
void test_warp_ops_unsigned() {
  check_warp_ops<unsigned>();
}
void test_warp_ops_float() {
  check_warp_ops<float>();
}
void test_warp_ops_double() {
  check_warp_ops<double>();
}

// ================================ smaller semantics ================================
struct Params {
  int offset;
  float scale;
};

// Parameters are per-thread copies: changing one in a thread changes nothing for the others.
__global__ void params_by_value(int* out, int n, Params p) {
  n += threadIdx.x;
  p.offset *= 2;
  out[threadIdx.x] = n + p.offset + int(p.scale);
}

void test_params_by_value() {
  Buffer<int> out(8);
  LAUNCH(params_by_value, 1, 8, 0, 0)(out.get(), 10, Params{1, 3.0f});
  CHECK_LAUNCH("params_by_value");
  CUDA_CHECK(cudaDeviceSynchronize());
  int bad = 0;
  for (int t = 0; t < 8; ++t) bad += out[t] != 10 + t + 2 + 3;
  CHECK(bad == 0);
}

// 3D blocks and grids: every thread writes its coordinates; __syncthreads_count over the block.
__global__ void coordinates(int* out, int* counts) {
  int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  int nthreads = blockDim.x * blockDim.y * blockDim.z;
  int* o = out + 6 * (bid * nthreads + tid);
  o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
  o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
  int odd = __syncthreads_count(tid % 2);
  if (tid == 0) counts[bid] = odd;
}

void test_coordinates_3d() {
  dim3 grid(2, 3, 2), block(4, 3, 2);
  int nblocks = 12, nthreads = 24;
  Buffer<int> out(6 * nblocks * nthreads, -1), counts(nblocks, -1);
  LAUNCH(coordinates, grid, block, 0, 0)(out.get(), counts.get());
  CHECK_LAUNCH("coordinates");
  CUDA_CHECK(cudaDeviceSynchronize());
  int bad = 0;
  for (int bz = 0; bz < 2; ++bz)
    for (int by = 0; by < 3; ++by)
      for (int bx = 0; bx < 2; ++bx)
        for (int tz = 0; tz < 2; ++tz)
          for (int ty = 0; ty < 3; ++ty)
            for (int tx = 0; tx < 4; ++tx) {
              int bid = bx + 2 * (by + 3 * bz), tid = tx + 4 * (ty + 3 * tz);
              int* o = &out[6 * (bid * nthreads + tid)];
              bad +=
                  o[0] != tx || o[1] != ty || o[2] != tz || o[3] != bx || o[4] != by || o[5] != bz;
            }
  for (int b = 0; b < nblocks; ++b) bad += counts[b] != nthreads / 2;
  CHECK(bad == 0);
}

__global__ void atomics(int* counter, int* maximum, unsigned long long* total, float* fmax_out) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(counter, 1);
  atomicMax(maximum, (t * 37) % 101);
  atomicAdd(total, (unsigned long long)t);
  // float max with a CAS loop, the classic pattern
  float v = float((t * 13) % 29) - 7.5f;
  int* addr = reinterpret_cast<int*>(fmax_out);
  int old = *addr;
  while (__int_as_float(old) < v) {
    int assumed = old;
    old = atomicCAS(addr, assumed, __float_as_int(v));
    if (old == assumed) break;
  }
}

void test_atomics() {
  Buffer<int> counter(1, 0), maximum(1, -1);
  Buffer<unsigned long long> total(1, 0);
  Buffer<float> fmax_out(1, -100.0f);
  LAUNCH(atomics, 4, 100, 0, 0)(counter.get(), maximum.get(), total.get(), fmax_out.get());
  CHECK_LAUNCH("atomics");
  CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(counter[0] == 400);
  CHECK(maximum[0] == 100);
  CHECK(total[0] == 399ull * 400 / 2);
  CHECK(fmax_out[0] == 28.0f - 7.5f);
}

// Reading dynamic shared memory the block never wrote gives the poison (NaN), not old data.
__global__ void read_unwritten_shared(float* out) {
  DYN_SHARED(float, s);
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;  // the first block writes; the second must not see it
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

void test_shared_poison() {
  Buffer<float> out(64);
#ifdef MINICNN_EMU_CHECK  // the race checker reports the read instead
  EXPECT_ERROR(LAUNCH(read_unwritten_shared, 2, 32, 32 * sizeof(float), 0)(out.get()),
               "uninitialised read of shared memory", "block (1,0,0)", "test_kernels.cu:");
  return;
#endif
  LAUNCH(read_unwritten_shared, 2, 32, 32 * sizeof(float), 0)(out.get());
  CHECK_LAUNCH("read_unwritten_shared");
  CHECK(out[0] == 1.0f && out[31] == 1.0f);
  CHECK(std::isnan(out[32]) && std::isnan(out[63]));
}

// ================================ cost of a switch ================================
__global__ void barrier_loop(int iterations) {
  for (int i = 0; i < iterations; ++i) __syncthreads();
}

void test_switch_cost() {
  const int iterations = 2000;
  for (int threads : {2, 256}) {
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      double t0 = harness::now_ms();
      LAUNCH(barrier_loop, 1, threads, 0, 0)(iterations);
      CHECK_LAUNCH("barrier_loop");
      best = std::min(best, harness::now_ms() - t0);
    }
    double ns = best * 1e6 / (double(iterations) * threads);
    std::printf(
        "    TIMING __syncthreads with %d threads: %.1f ns per thread per barrier (one switch "
        "each)\n",
        threads, ns);
  }
}

int main() {
  RUN(test_sgemm_odd_sizes);
  RUN(test_sgemm_128_timing);
  RUN(test_block_sum_float);
  RUN(test_block_sum_double);
  RUN(test_elementwise_1m);
  RUN(test_fast_path_fallback);
  RUN(test_warp_ops_int);
  RUN(test_warp_ops_unsigned);
  RUN(test_warp_ops_float);
  RUN(test_warp_ops_double);
  RUN(test_params_by_value);
  RUN(test_coordinates_3d);
  RUN(test_atomics);
  EMU_ONLY(test_shared_poison);
  EMU_ONLY(test_switch_cost);
  return harness::summary();
}
