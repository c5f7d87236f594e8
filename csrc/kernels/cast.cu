// Conversions between float32 and the 16-bit float types, elementwise.
//
//   cast_to_float:    out = float(x)              exact
//   cast_from_float:  out = round(x) to T         round to nearest even; overflow to inf, NaN kept
//
// They run the conversion intrinsics the kernels use (__half2float, __float2half_rn,
// __bfloat162float, __float2bfloat16_rn): on the GPU CUDA's, under the emulator csrc/emu/half.h's.
// tests/kernels/test_kernels_half_types.py checks them against NumPy and ml_dtypes over every
// 16-bit pattern, which is how the emulator's conversions are tested.
//
// Versions:
//   1. one element per thread (map_kernel), as relu.cu.
//
// Buffers: contiguous arrays of n elements, any shape.
#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- kernels: the maps of map_kernel (common.cuh) -----------------------------------------------
template <class T>
struct ToFloat {
  __device__ float operator()(T x) const { return to_acc(x); }
};
template <class T>
struct FromFloat {
  __device__ T operator()(float x) const { return from_acc<T>(x); }
};

// ---- launchers ----------------------------------------------------------------------------------
template <class T>
void cast_to_float(float* out, const T* inp, int64_t n, cudaStream_t stream) {
  LAUNCH_1D((map_kernel<ToFloat<T>, float, T>), n, stream, out, n, inp);
}

template <class T>
void cast_from_float(T* out, const float* inp, int64_t n, cudaStream_t stream) {
  LAUNCH_1D((map_kernel<FromFloat<T>, T, float>), n, stream, out, n, inp);
}

#define INSTANTIATE(T)                                                     \
  template void cast_to_float<T>(float*, const T*, int64_t, cudaStream_t); \
  template void cast_from_float<T>(T*, const float*, int64_t, cudaStream_t);
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
