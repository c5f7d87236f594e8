// An out-of-bounds write in a kernel. Built with -fsanitize=address, this program must die with an
// AddressSanitizer report naming this file and the line marked OUT-OF-BOUNDS (run.sh checks both);
// without ASan it may well "work", which is why the kernel tests also run under ASan.
//
//   asan_oob global   writes one float past a cudaMalloc'd buffer
//   asan_oob shared   writes one float past the launch's dynamic shared memory
#include <cstdio>
#include <cstring>

#include "cuda_compat.h"

// Forgot the `if (i < n)` guard: the grid covers 64 threads but the buffer holds 63 floats.
__global__ void fill_without_bounds_check(float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = float(n);  // OUT-OF-BOUNDS (global)
}

// Asked for 31 floats of dynamic shared memory, uses 32.
__global__ void shared_overrun(float* out) {
  DYN_SHARED(float, s);
  s[threadIdx.x] = 1.0f;  // OUT-OF-BOUNDS (shared)
  __syncthreads();
  out[threadIdx.x] = s[0];
}

int main(int argc, char** argv) {
  bool shared = argc > 1 && std::strcmp(argv[1], "shared") == 0;
  float* out = nullptr;
  CUDA_CHECK(cudaMalloc(&out, 63 * sizeof(float)));
  if (shared) {
    LAUNCH(shared_overrun, 1, 32, 31 * sizeof(float), 0)(out);
    CHECK_LAUNCH("shared_overrun");
  } else {
    LAUNCH(fill_without_bounds_check, 2, 32, 0, 0)(out, 63);
    CHECK_LAUNCH("fill_without_bounds_check");
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaFree(out));
  std::printf("no error detected\n");
  return 0;
}
