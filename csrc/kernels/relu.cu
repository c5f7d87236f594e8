// ReLU, forward and backward.
//
//   forward:   y = max(x, 0)                   (a NaN passes through, as in PyTorch)
//   backward:  dx = dy where y > 0, else 0     (the subgradient at 0 is 0; dy passes where y is NaN)
//
// The backward reads the forward's output y, not its input: y > 0 exactly where x > 0, and y is the
// tensor the op saves anyway.
//
// Versions:
//   1. one element per thread (map_kernel in common.cuh), blocks of 256 threads covering the
//      array. ReLU moves 8 (forward) or 12 (backward) bytes per float and does one comparison:
//      memory-bound, and this simple form already streams at the memory bandwidth once the grid
//      has many blocks.
//
// In float16 / bfloat16 the comparison is made in float (exact) and the values are copied as bits.
//
// Buffers are contiguous arrays of n elements, any shape.
#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- kernels: the maps of map_kernel (common.cuh) -----------------------------------------------
template <class T>
struct ReluForward {                                                                 // x -> y
  __device__ T operator()(T x) const { return to_acc(x) < 0 ? from_acc<T>(0) : x; }  // NaN passes
};
template <class T>
struct ReluBackward {  // (dy, y) -> dx
  __device__ T operator()(T dy, T y) const { return to_acc(y) <= 0 ? from_acc<T>(0) : dy; }
};

// ---- launchers ------------------------------------------------------------------------------------
template <class T>
void relu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream) {
  LAUNCH_1D((map_kernel<ReluForward<T>, T, T>), n, stream, out, n, inp);
}

template <class T>
void relu_backward(T* dinp, const T* dout, const T* out, int64_t n, cudaStream_t stream) {
  LAUNCH_1D((map_kernel<ReluBackward<T>, T, T, T>), n, stream, dinp, n, dout, out);
}

#define INSTANTIATE(T)                                                \
  template void relu_forward<T>(T*, const T*, int64_t, cudaStream_t); \
  template void relu_backward<T>(T*, const T*, const T*, int64_t, cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
