// What an extension runs on: the GPU seen by the CUDA runtime linked into minicnn._C_cuda, or the
// emulator in minicnn._C_emu. minicnn/backends/cuda_backend.py asks before the first launch, so
// that "no GPU" or "driver too old for this build" is one clear error, not a failed launch later.
//
// Versions:
//   1. the only one (no kernels here, only runtime queries).
#include "common.cuh"

namespace minicnn {
namespace kernels {

#ifdef MINICNN_EMU
DeviceInfo device_info() {
  return DeviceInfo{true, "", "CUDA emulator (CPU)", 0, 0, 0, 0};
}

void synchronize() {}  // launches run to completion before they return

#else
static std::string cuda_error(const char* call, cudaError_t err) {
  return std::string(call) + " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
}

DeviceInfo device_info() {
  DeviceInfo info{false, "", "", 0, 0, 0, 0};
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaDriverGetVersion(&info.driver_version);  // 0 when no driver is installed
  if (info.driver_version == 0) {
    info.reason = "no NVIDIA driver found";
    return info;
  }
  if (info.driver_version < info.runtime_version) {
    info.reason = "the NVIDIA driver supports CUDA " + std::to_string(info.driver_version / 1000) +
                  "." + std::to_string(info.driver_version % 1000 / 10) +
                  " but minicnn._C_cuda was built with CUDA " +
                  std::to_string(info.runtime_version / 1000) + "." +
                  std::to_string(info.runtime_version % 1000 / 10) +
                  " (update the driver, or rebuild with an older nvcc)";
    return info;
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    info.reason = cuda_error("cudaGetDeviceCount", err);
    return info;
  }
  if (count == 0) {
    info.reason = "the CUDA runtime sees no GPU";
    return info;
  }
  int device = 0;
  cudaDeviceProp prop;
  err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    cudaGetLastError();
    info.reason = cuda_error("cudaGetDeviceProperties", err);
    return info;
  }
  info.usable = true;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  return info;
}

void synchronize() {
  CUDA_CHECK(cudaDeviceSynchronize());
}
#endif

}  // namespace kernels
}  // namespace minicnn
