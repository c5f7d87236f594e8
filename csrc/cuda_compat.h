// The one header every kernel source (csrc/kernels/*.cu) includes.
//
// Each .cu file is compiled twice: by nvcc for real GPUs (minicnn._C_cuda), and by the host C++
// compiler for the "emu" device (minicnn._C_emu), where csrc/emu/cuda_emu.h runs the kernels on the
// CPU. The few things plain CUDA syntax can't express in both worlds are macros here:
//
//   LAUNCH(kernel, grid, block, smem, stream)(args...)
//       kernel<<<grid, block, smem, stream>>>(args...). Template kernels go in parentheses:
//       LAUNCH((conv2d_forward<16, float>), grid, block, 0, stream)(out, in, ...).
//   DYN_SHARED(T, name);
//       T* name = the block's dynamic shared memory (extern __shared__ T name[] in CUDA), aligned to
//       16 bytes. Every DYN_SHARED of a kernel points to the same start, as in CUDA.
//   CHECK_LAUNCH("kernel name");
//       after every launch: turns a launch error into std::runtime_error naming the kernel.
//   CUDA_CHECK(cudaMemsetAsync(...));
//       turns a failing runtime call into std::runtime_error naming the call.
#pragma once

#include <stdexcept>
#include <string>

// MINICNN_DEPAREN(x) and MINICNN_DEPAREN((x)) both give x: template kernels are passed in
// parentheses so that the commas of their template arguments don't split the macro arguments.
#define MINICNN_DEPAREN(x) MINICNN_DEPAREN_ESCAPE_(MINICNN_DEPAREN_ISH_ x)
#define MINICNN_DEPAREN_ISH_(...) MINICNN_DEPAREN_ISH_ __VA_ARGS__
#define MINICNN_DEPAREN_ESCAPE_(...) MINICNN_DEPAREN_ESCAPE2_(__VA_ARGS__)
#define MINICNN_DEPAREN_ESCAPE2_(...) MINICNN_DEPAREN_VAN##__VA_ARGS__
#define MINICNN_DEPAREN_VANMINICNN_DEPAREN_ISH_
#define MINICNN_STRINGIFY(...) MINICNN_STRINGIFY_(__VA_ARGS__)
#define MINICNN_STRINGIFY_(...) #__VA_ARGS__

#ifdef __CUDACC__
// ---- nvcc: real CUDA ------------------------------------------------------------------------------
#include <cuda_runtime.h>

#define LAUNCH(kernel, grid, block, smem, stream) \
  MINICNN_DEPAREN(kernel)<<<(grid), (block), (smem), (stream)>>>

// A char array, so that kernels templated on T don't declare conflicting extern arrays.
#define DYN_SHARED(T, name)                                                \
  extern __shared__ __align__(16) unsigned char minicnn_dynamic_shared_[]; \
  T* name = reinterpret_cast<T*>(minicnn_dynamic_shared_)

#else
// ---- host compiler: the emulator ------------------------------------------------------------------
#include "emu/cuda_emu.h"

#define LAUNCH(kernel, grid, block, smem, stream)                                            \
  ::minicnn_emu::launch(MINICNN_DEPAREN(kernel), MINICNN_STRINGIFY(MINICNN_DEPAREN(kernel)), \
                        (grid), (block), (smem), (stream))

#define DYN_SHARED(T, name) T* name = ::minicnn_emu::dynamic_shared<T>()

#endif

namespace minicnn {

// Throw if the last launch failed. Under nvcc this catches configuration errors; faults inside the
// kernel surface at a later synchronisation, or right here when compiled with
// -DMINICNN_SYNC_LAUNCHES (slow, for debugging). The emulator throws from the launch itself.
inline void check_launch(const char* kernel_name) {
  cudaError_t err = cudaGetLastError();
#ifdef MINICNN_SYNC_LAUNCHES
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
#endif
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("kernel ") + kernel_name + ": " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
  }
}

inline void check_cuda(cudaError_t err, const char* call) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(call) + ": " + cudaGetErrorName(err) + ": " +
                             cudaGetErrorString(err));
  }
}

}  // namespace minicnn

#define CHECK_LAUNCH(kernel_name) ::minicnn::check_launch(kernel_name)
#define CUDA_CHECK(call) ::minicnn::check_cuda((call), #call)
