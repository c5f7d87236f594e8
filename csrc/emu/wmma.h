// nvcuda::wmma (CUDA's mma.h) for the host compiler: tensor-core fragments and their warp-level
// operations, so the tensor-core kernels run, and are tested, on the emulator.
//
// Part of the CUDA emulator (see cuda_emu.h). Supported, as kernels use them:
//   fragment<matrix_a | matrix_b, 16, 16, 16, __half | __nv_bfloat16, row_major | col_major>
//   fragment<matrix_a | matrix_b, 16, 16, 8, precision::tf32, row_major | col_major>  (float)
//   fragment<accumulator, 16, 16, 16 | 8, float>
//   fill_fragment, load_matrix_sync, mma_sync, store_matrix_sync, __float_to_tf32.
//
// Semantics:
//   - A fragment holds its matrix spread over the 32 lanes of a warp: lane l keeps elements
//     i = 0 .. num_elements-1 at row-major position i*32 + l of the fragment's matrix. CUDA leaves
//     this mapping unspecified, and this one is deliberately unlike any GPU's: a kernel that
//     depends on it (rather than only on load/store/mma/fill and element-wise operations on
//     x[i] that are the same for every element) gives wrong results here.
//   - load_matrix_sync, mma_sync and store_matrix_sync are warp-collective, as in CUDA: all 32
//     lanes must call them (each starts with a __syncwarp: a lane that exited or waits elsewhere
//     is an error reported with both source lines). As in CUDA, what store_matrix_sync wrote is
//     visible to the other lanes only after a __syncwarp or __syncthreads. load/store check
//     CUDA's requirements: a 32-byte aligned pointer and ldm a multiple of 16 bytes.
//   - mma_sync: D = A·B + C with every product exact (16-bit and tf32 inputs multiply exactly
//     in float) and the sum accumulated in float32 in k order; tf32 inputs are first rounded to
//     tf32 (10 fraction bits), as the tensor cores read them. A GPU adds in another order and
//     with other intermediate rounding: compare with a tolerance.
//   - mma_sync reads the other lanes' A and B fragments: every lane publishes the addresses of
//     its fragments in a per-warp table, the warp synchronises, each lane computes its own
//     elements of D, and the warp synchronises again before any lane may change a fragment.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "half.h"
#include "sync.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace detail {
// The element type a fragment of T stores (tf32 fragments store float).
template <class T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};
// Rows and columns of the matrix a fragment holds.
template <class Use, int M, int N, int K>
struct shape;
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && (K == 16 || K == 8),
                "the emulator's wmma has the m16n16k16 and m16n16k8 shapes only");

 public:
  using element_type = typename detail::storage<T>::type;
  using storage_element_type = element_type;
  static constexpr int rows = detail::shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols / 32;
  element_type x[num_elements];
};

namespace detail {
inline float to_float(float v) {
  return v;
}
inline float to_float(__half v) {
  return __half2float(v);
}
inline float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <class E>
E from_float(float v) {
  if constexpr (std::is_same<E, __half>::value) return __float2half_rn(v);
  if constexpr (std::is_same<E, __nv_bfloat16>::value) return __float2bfloat16_rn(v);
  if constexpr (std::is_same<E, float>::value) return v;
}

inline int lane() {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return t % warpSize;
}
inline int warp() {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return t / warpSize;
}

inline void check_memory(const char* op, const void* ptr, unsigned ldm, size_t element_bytes) {
  if (reinterpret_cast<uintptr_t>(ptr) % 32 != 0)
    throw std::runtime_error(std::string(op) + ": the pointer must be 32-byte aligned");
  if ((ldm * element_bytes) % 16 != 0)
    throw std::runtime_error(std::string(op) + ": ldm = " + std::to_string(ldm) +
                             " elements is not a multiple of 16 bytes");
}

// (row, col) of element i of this lane's part of a rows x cols fragment.
template <int cols>
inline void position(int i, int& row, int& col) {
  const int p = i * warpSize + lane();
  row = p / cols;
  col = p % cols;
}

// Memory offset of (row, col) with leading dimension ldm.
inline size_t offset(int row, int col, unsigned ldm, bool row_major) {
  return row_major ? size_t(row) * ldm + col : size_t(col) * ldm + row;
}

// Rounds to tf32 (10 fraction bits), to nearest with ties away from zero (cvt.rna.tf32.f32).
inline float round_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &u, sizeof u);
  return v;
}

// The addresses of each lane's A and B fragments during an mma_sync: per OS thread (one block at a
// time), per warp of the block (at most 32), per lane.
struct MmaTable {
  const void* a[32][32];
  const void* b[32][32];
};
inline MmaTable& mma_table() {
  static thread_local MmaTable table;
  return table;
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f,
                          typename fragment<Use, M, N, K, T, L>::element_type v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

namespace detail {
// Each lane's elements of f from memory, as load_matrix_sync does.
template <class F, class E>
inline void load(F& f, const E* ptr, unsigned ldm, bool row_major) {
  __syncwarp();
  check_memory("wmma::load_matrix_sync", ptr, ldm, sizeof(E));
  for (int i = 0; i < F::num_elements; ++i) {
    int row, col;
    position<F::cols>(i, row, col);
    f.x[i] = ptr[offset(row, col, ldm, row_major)];
  }
}
}  // namespace detail

// matrix_a / matrix_b: the layout is the fragment's.
template <class Use, int M, int N, int K, class T, class L, class E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const E* ptr, unsigned ldm) {
  static_assert(!std::is_same<L, void>::value, "an accumulator load takes a layout_t");
  static_assert(std::is_same<E, typename fragment<Use, M, N, K, T, L>::element_type>::value,
                "element type mismatch");
  detail::load(f, ptr, ldm, std::is_same<L, row_major>::value);
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* ptr,
                             unsigned ldm, layout_t layout) {
  detail::load(f, ptr, ldm, layout == mem_row_major);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* ptr, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout) {
  using F = fragment<accumulator, M, N, K, float>;
  __syncwarp();
  detail::check_memory("wmma::store_matrix_sync", ptr, ldm, sizeof(float));
  for (int i = 0; i < F::num_elements; ++i) {
    int row, col;
    detail::position<F::cols>(i, row, col);
    ptr[detail::offset(row, col, ldm, layout == mem_row_major)] = f.x[i];
  }
}

// d = a·b + c (d may be c).
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
  using FA = fragment<matrix_a, M, N, K, T, LA>;
  using FB = fragment<matrix_b, M, N, K, T, LB>;
  using FC = fragment<accumulator, M, N, K, float>;
  constexpr bool tf32 = std::is_same<T, precision::tf32>::value;
  detail::MmaTable& table = detail::mma_table();
  const int w = detail::warp();
  table.a[w][detail::lane()] = &a;
  table.b[w][detail::lane()] = &b;
  __syncwarp();
  // Element p (row-major position) of the warp's A or B: lane p % 32, element p / 32.
  auto element = [&](const auto* fragment, int p) {
    float v = detail::to_float(fragment[p % warpSize]->x[p / warpSize]);
    return tf32 ? detail::round_tf32(v) : v;
  };
  const FA* fa[32];
  const FB* fb[32];
  for (int l = 0; l < warpSize; ++l) {
    fa[l] = static_cast<const FA*>(table.a[w][l]);
    fb[l] = static_cast<const FB*>(table.b[w][l]);
  }
  float out[FC::num_elements];
  for (int i = 0; i < FC::num_elements; ++i) {
    int row, col;
    detail::position<FC::cols>(i, row, col);
    float acc = c.x[i];
    for (int k = 0; k < K; ++k)
      acc += element(fa, row * FA::cols + k) * element(fb, k * FB::cols + col);
    out[i] = acc;
  }
  __syncwarp();  // every lane has read the others' fragments
  for (int i = 0; i < FC::num_elements; ++i) d.x[i] = out[i];
}

// The tf32 value of v, as a float (what the tensor cores read of it).
inline float __float_to_tf32(float v) {
  return detail::round_tf32(v);
}

}  // namespace wmma
}  // namespace nvcuda
