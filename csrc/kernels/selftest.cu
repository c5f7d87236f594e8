// Kernels that exist only to test the error paths of the launchers, the bindings and the emulator:
// a bad launch configuration, a fault inside a kernel (__trap), a divergent barrier. Each must
// surface in Python as an exception naming the kernel (and, on the emulator, the block and thread),
// never as a crash or a hang. tests/kernels/test_kernels_errors.py calls them through minicnn._C_emu.
//
// Versions:
//   1. the only one.
#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- kernels --------------------------------------------------------------------------------------
__global__ void selftest_trap_kernel(int trap_block, int trap_thread) {
  if (static_cast<int>(blockIdx.x) == trap_block && static_cast<int>(threadIdx.x) == trap_thread)
    __trap();
}

__global__ void selftest_divergent_barrier_kernel(int early) {
  if (static_cast<int>(threadIdx.x) == early) return;  // wrong on purpose: the others wait forever
  __syncthreads();
}

// ---- launchers ------------------------------------------------------------------------------------
void selftest_trap(int blocks, int threads, int trap_block, int trap_thread, cudaStream_t stream) {
  LAUNCH(selftest_trap_kernel, blocks, threads, 0, stream)(trap_block, trap_thread);
  CHECK_LAUNCH("selftest_trap_kernel");
}

void selftest_divergent_barrier(int threads, int early, cudaStream_t stream) {
  LAUNCH(selftest_divergent_barrier_kernel, 1, threads, 0, stream)(early);
  CHECK_LAUNCH("selftest_divergent_barrier_kernel");
}

}  // namespace kernels
}  // namespace minicnn
