// Fragment loads of the tensor-core conv's NHWC kernels (conv2d_wmma_nhwc.cuh, _nhwc_bw.cuh) at
// offsets known at compile time, and the slice product over them. Included after conv2d_wmma.cu's
// own definitions (wmma, Mma, Acc, SliceLayout).
#pragma once

#include <type_traits>
#include <utility>

namespace minicnn {
namespace kernels {
namespace tc {

// ---- fragments at constant offsets ----------------------------------------------------------
// f(integral_constant<int, 0>()), ..., f(integral_constant<int, N - 1>()): indices usable as
// template arguments.
template <class F, int... I>
__device__ __forceinline__ void unrolled_seq(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>()), ...);
}
template <int N, class F>
__device__ __forceinline__ void unrolled(F&& f) {
  unrolled_seq(f, std::make_integer_sequence<int, N>());
}

// load_matrix_sync(f, base + kOff, kLd) from shared memory. On the GPU the PTX wmma.load with the
// .shared state space and the offset as an immediate ([base+bytes]), so that one register (the
// warp's tile base, loop-invariant) serves every fragment of every slice and buffer. The
// fragment's registers are filled as mma.h's own call would fill them.
#define MINICNN_LOAD4(ins)                                      \
  asm volatile(ins " {%0, %1, %2, %3}, [%4+%5], %6;\n"          \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) \
               : "r"(at), "n"(kBytes), "n"(kLd))
#define MINICNN_LOAD8(ins)                                                               \
  asm volatile(ins " {%0, %1, %2, %3, %4, %5, %6, %7}, [%8+%9], %10;\n"                  \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), \
                 "=r"(r[6]), "=r"(r[7])                                                  \
               : "r"(at), "n"(kBytes), "n"(kLd))
#define MINICNN_LOADS(N, shape_type)                                                    \
  if constexpr (a && row) MINICNN_LOAD##N("wmma.load.a.sync.aligned.row." shape_type);  \
  if constexpr (a && !row) MINICNN_LOAD##N("wmma.load.a.sync.aligned.col." shape_type); \
  if constexpr (!a && row) MINICNN_LOAD##N("wmma.load.b.sync.aligned.row." shape_type); \
  if constexpr (!a && !row) MINICNN_LOAD##N("wmma.load.b.sync.aligned.col." shape_type);

template <class T, class Use, class Layout, int kOff, int kLd, class Frag>
__device__ __forceinline__ void load_at(Frag& f, const T* base) {
#ifdef __CUDA_ARCH__
  unsigned* r = reinterpret_cast<unsigned*>(f.x);
  const unsigned at = unsigned(__cvta_generic_to_shared(base));
  constexpr int kBytes = kOff * int(sizeof(T));
  constexpr bool a = std::is_same<Use, wmma::matrix_a>::value;
  constexpr bool row = std::is_same<Layout, wmma::row_major>::value;
  if constexpr (std::is_same<T, __half>::value) {
    static_assert(sizeof(f.x) == 32, "8 registers");
    MINICNN_LOADS(8, "m16n16k16.shared.f16")
  } else if constexpr (std::is_same<T, float>::value) {
    static_assert(sizeof(f.x) == 16, "4 registers");
    MINICNN_LOADS(4, "m16n16k8.shared.tf32")
  } else {
    static_assert(sizeof(f.x) == 16, "4 registers");
    MINICNN_LOADS(4, "m16n16k16.shared.bf16")
  }
#else
  wmma::load_matrix_sync(f, base + kOff, kLd);
#endif
}
#undef MINICNN_LOADS
#undef MINICNN_LOAD8
#undef MINICNN_LOAD4

// multiply_slice with the warp's tile bases As, Bs (A[m, k] of the warp's first row at As, B[k, n]
// of its first column at Bs) and the slice kOff elements after them: every fragment address is a
// constant offset from one of two registers.
template <class T, int kDepth, class L, int kOff, int WM, int WN>
__device__ __forceinline__ void multiply_slice_at(const T* As, const T* Bs, Acc<T> (&acc)[WM][WN]) {
  using M = Mma<T>;
  unrolled<kDepth / M::k>([&](auto step) {
    constexpr int kk = decltype(step)::value * M::k;
    wmma::fragment<wmma::matrix_b, 16, 16, M::k, typename M::type, typename L::B> b[WN];
    unrolled<WN>([&](auto j) {
      constexpr int kJ = decltype(j)::value;
      load_at<T, wmma::matrix_b, typename L::B, kOff + 16 * kJ * L::n + kk * L::kb, L::ldb>(b[kJ],
                                                                                            Bs);
    });
    unrolled<WM>([&](auto i) {
      constexpr int kI = decltype(i)::value;
      wmma::fragment<wmma::matrix_a, 16, 16, M::k, typename M::type, typename L::A> a;
      load_at<T, wmma::matrix_a, typename L::A, kOff + 16 * kI * L::m + kk * L::ka, L::lda>(a, As);
#pragma unroll
      for (int j = 0; j < WN; ++j) wmma::mma_sync(acc[kI][j], a, b[j], acc[kI][j]);
    });
  });
}

}  // namespace tc
}  // namespace kernels
}  // namespace minicnn
