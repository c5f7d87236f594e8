// D = A·B + C on tensor cores, the nvcuda::wmma API at its plainest: the test of the emulator's
// wmma (csrc/emu/wmma.h) against a plain matrix product, and the smallest example of the API.
//
//   A (M, K) and B (K, N) of T (__half, __nv_bfloat16, or float read as tf32), each row- or
//   column-major; C, D (M, N) float32 row-major; M, N, K multiples of 16 (K of 8 for tf32).
//   C may be nullptr: then D = A·B (the accumulator starts from fill_fragment(0)).
//
// Versions:
//   1. one warp per 16 x 16 tile of D, its fragments loaded straight from global memory (no shared
//      memory): a block of 4 warps covers 16 x 64 of D.
#include <stdexcept>
#include <string>

#include "common.cuh"
#ifdef __CUDACC__
#include <mma.h>
#endif

namespace minicnn {
namespace kernels {

namespace wmma = nvcuda::wmma;

template <class T>
struct GemmFrag {  // __half, __nv_bfloat16: m16n16k16
  using type = T;
  static constexpr int k = 16, arch = std::is_same<T, __half>::value ? 700 : 800;
};
template <>
struct GemmFrag<float> {  // tf32: m16n16k8
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  using type = float;  // a stand-in: mma.h has no tf32 below sm_80 (the body is discarded)
#else
  using type = wmma::precision::tf32;
#endif
  static constexpr int k = 8, arch = 800;
};

#ifdef __CUDA_ARCH__
constexpr int kGemmArch = __CUDA_ARCH__;
#else
constexpr int kGemmArch = 1000;
#endif

template <class T, class LA, class LB>
__global__ void wmma_gemm_kernel(float* d,        // (M, N)
                                 const T* a,      // (M, K)
                                 const T* b,      // (K, N)
                                 const float* c,  // (M, N) or nullptr
                                 int M, int N, int K) {
  using F = GemmFrag<T>;
  if constexpr (kGemmArch >= F::arch) {
    const int tm = blockIdx.y * 16,
              tn = (blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize) * 16;
    if (tn >= N) return;  // a whole warp leaves together
    constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
    constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
    wmma::fragment<wmma::accumulator, 16, 16, F::k, float> acc;
    if (c != nullptr)
      wmma::load_matrix_sync(acc, c + int64_t(tm) * N + tn, N, wmma::mem_row_major);
    else
      wmma::fill_fragment(acc, 0.0f);
    for (int k = 0; k < K; k += F::k) {
      wmma::fragment<wmma::matrix_a, 16, 16, F::k, typename F::type, LA> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, F::k, typename F::type, LB> fb;
      wmma::load_matrix_sync(fa, a + (a_row ? int64_t(tm) * K + k : int64_t(k) * M + tm),
                             a_row ? K : M);
      wmma::load_matrix_sync(fb, b + (b_row ? int64_t(k) * N + tn : int64_t(tn) * K + k),
                             b_row ? N : K);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(d + int64_t(tm) * N + tn, acc, N, wmma::mem_row_major);
  } else {
    __trap();
  }
}

template <class T, class LA, class LB>
static void launch_wmma_gemm(float* d, const T* a, const T* b, const float* c, int M, int N, int K,
                             cudaStream_t stream) {
  const dim3 grid(unsigned((N / 16 + 3) / 4), unsigned(M / 16));
  LAUNCH((wmma_gemm_kernel<T, LA, LB>), grid, 4 * kWarpSize, 0, stream)(d, a, b, c, M, N, K);
  CHECK_LAUNCH("wmma_gemm_kernel");
}

template <class T>
void wmma_gemm(float* d, const T* a, const T* b, const float* c, int M, int N, int K,
               bool a_row_major, bool b_row_major, cudaStream_t stream) {
  constexpr int k = GemmFrag<T>::k;
  if (M % 16 || N % 16 || K % k || M < 0 || N < 0 || K < 0)
    throw std::invalid_argument("wmma_gemm: M, N must be multiples of 16 and K of " +
                                std::to_string(k) + ", got " + std::to_string(M) + ", " +
                                std::to_string(N) + ", " + std::to_string(K));
  require_arch("wmma_gemm", GemmFrag<T>::arch);
  if (M == 0 || N == 0) return;
  using R = wmma::row_major;
  using C = wmma::col_major;
  if (a_row_major && b_row_major) launch_wmma_gemm<T, R, R>(d, a, b, c, M, N, K, stream);
  if (a_row_major && !b_row_major) launch_wmma_gemm<T, R, C>(d, a, b, c, M, N, K, stream);
  if (!a_row_major && b_row_major) launch_wmma_gemm<T, C, R>(d, a, b, c, M, N, K, stream);
  if (!a_row_major && !b_row_major) launch_wmma_gemm<T, C, C>(d, a, b, c, M, N, K, stream);
}

#define INSTANTIATE(T)                                                                            \
  template void wmma_gemm<T>(float*, const T*, const T*, const float*, int, int, int, bool, bool, \
                             cudaStream_t);
MINICNN_FOR_EACH_TENSOR_CORE_DTYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
