// The small subset of the CUDA runtime API that launchers and tests use, on host memory.
//
// Part of the CUDA emulator (see cuda_emu.h). "Device" memory is ordinary host memory here: the
// emu backend hands NumPy buffers to the kernels. Streams are accepted and ignored, because every
// launch runs to completion before it returns. Errors inside a kernel do not go through
// cudaGetLastError: the launch itself throws a std::runtime_error naming kernel, block, thread.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;

struct CUstream_st;  // opaque, never defined: streams are ignored
typedef CUstream_st* cudaStream_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

constexpr unsigned int cudaMemAttachGlobal = 1;

namespace minicnn_emu::detail {

inline cudaError_t g_last_error = cudaSuccess;

// Shared-memory limits of current GPUs: 48 KiB per block by default; a kernel may opt in to more
// (up to 227 KiB on sm_80 and newer) with cudaFuncSetAttribute.
constexpr size_t kDefaultMaxDynamicSharedBytes = 48 * 1024;
constexpr size_t kOptInMaxDynamicSharedBytes = 227 * 1024;

// Per-kernel opt-in for more than 48 KiB of dynamic shared memory (cudaFuncSetAttribute).
struct SharedMemoryOptIns {
  std::mutex mutex;
  std::map<const void*, int> max_dynamic_bytes;
};
inline SharedMemoryOptIns g_smem_opt_ins;

}  // namespace minicnn_emu::detail

inline cudaError_t cudaGetLastError() {
  cudaError_t err = minicnn_emu::detail::g_last_error;
  minicnn_emu::detail::g_last_error = cudaSuccess;
  return err;
}
inline cudaError_t cudaPeekAtLastError() {
  return minicnn_emu::detail::g_last_error;
}

// The emulator's errors: X(code, cudaGetErrorString's text), worded as the CUDA runtime's.
#define MINICNN_EMU_ERRORS(X)                                        \
  X(cudaSuccess, "no error")                                         \
  X(cudaErrorInvalidValue, "invalid argument")                       \
  X(cudaErrorMemoryAllocation, "out of memory")                      \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument") \
  X(cudaErrorLaunchFailure, "unspecified launch failure")

inline const char* cudaGetErrorName(cudaError_t err) {
#define MINICNN_EMU_CASE(code, text) \
  if (err == code) return #code;
  MINICNN_EMU_ERRORS(MINICNN_EMU_CASE)
#undef MINICNN_EMU_CASE
  return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t err) {
#define MINICNN_EMU_CASE(code, text) \
  if (err == code) return text;
  MINICNN_EMU_ERRORS(MINICNN_EMU_CASE)
#undef MINICNN_EMU_CASE
  return "unknown error";
}
#undef MINICNN_EMU_ERRORS

inline cudaError_t cudaDeviceSynchronize() {
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}

inline cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (count != 0) std::memset(ptr, value, count);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t = nullptr) {
  return cudaMemset(ptr, value, count);
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind) {
  if (count != 0) std::memcpy(dst, src, count);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, count, kind);
}

// Allocation: plain malloc, so AddressSanitizer sees the exact size of every buffer.
template <class T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  *ptr = static_cast<T*>(std::malloc(bytes == 0 ? 1 : bytes));
  return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <class T>
cudaError_t cudaMallocManaged(T** ptr, size_t bytes, unsigned int = cudaMemAttachGlobal) {
  return cudaMalloc(ptr, bytes);
}
inline cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

// Only the attribute kernels need: opting in to more than 48 KiB of dynamic shared memory.
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > minicnn_emu::detail::kOptInMaxDynamicSharedBytes) {
    return minicnn_emu::detail::g_last_error = cudaErrorInvalidValue;
  }
  auto& opt_ins = minicnn_emu::detail::g_smem_opt_ins;
  std::lock_guard<std::mutex> lock(opt_ins.mutex);
  opt_ins.max_dynamic_bytes[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}
