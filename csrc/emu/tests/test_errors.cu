// Kernels that are wrong, and the errors the emulator must report for them instead of hanging or
// computing garbage: divergent barriers, deadlocks, shuffles naming exited lanes, exceptions in one
// thread, bad launch configurations, dynamic shared memory misuse.
//
// The kernels are valid CUDA (`nvcc -c` compiles this file), but most of them hang or are undefined
// on a GPU, so under nvcc only the launch-configuration tests run.
#include <cstdio>
#include <stdexcept>

#include "cuda_compat.h"
#include "harness.h"

using harness::Buffer;

// ================================ barriers ================================
__global__ void half_block_exits(float* out) {
  if (threadIdx.x >= 16) return;  // the other half never reaches the barrier
  out[threadIdx.x] = 1.0f;
  __syncthreads();
}

__global__ void two_different_barriers(float* out) {
  if (threadIdx.x % 2 == 0) {
    out[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2.0f;
    __syncthreads();
  }
}

// Lane 0 waits for its warp in __syncwarp while the other lanes wait for it in __syncthreads.
__global__ void warp_vs_block_deadlock(float* out) {
  if (threadIdx.x == 0) {
    __syncwarp();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 0.0f;
}

void test_divergent_barrier_exit() {
  Buffer<float> out(32);
  EXPECT_ERROR(LAUNCH(half_block_exits, 2, 32, 0, 0)(out.get()),
               "kernel half_block_exits: block (0,0,0) thread (0,0,0)", "divergent barrier",
               "__syncthreads() at ", "test_errors.cu:", "thread (16,0,0), which has exited");
}

void test_divergent_barrier_sites() {
  Buffer<float> out(32);
  EXPECT_ERROR(LAUNCH(two_different_barriers, 1, 32, 0, 0)(out.get()),
               "kernel two_different_barriers", "divergent barrier", "test_errors.cu:");
}

void test_deadlock() {
  Buffer<float> out(64);
  EXPECT_ERROR(LAUNCH(warp_vs_block_deadlock, 1, 64, 0, 0)(out.get()),
               "kernel warp_vs_block_deadlock", "thread (0,0,0)", "deadlock", "__syncwarp()",
               "lane 1 (thread (1,0,0)), which waits in __syncthreads()");
}

// ================================ warp operations ================================
__global__ void shuffle_with_exited_lanes(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  float v = __shfl_down_sync(0xffffffffu, float(threadIdx.x), 1);  // names the 16 lanes that left
  out[threadIdx.x] = v;
}

__global__ void mask_without_self(float* out) {
  float v = __shfl_xor_sync(0x0000ffffu, 1.0f, 1);  // lanes 16..31 are not in their own mask
  out[threadIdx.x] = v;
}

__global__ void full_mask_in_partial_warp(float* out) {
  float v = __shfl_down_sync(0xffffffffu, 1.0f, 1);  // the block's second warp has 16 lanes
  out[threadIdx.x] = v;
}

void test_shuffle_exited_lane() {
  Buffer<float> out(32);
  EXPECT_ERROR(LAUNCH(shuffle_with_exited_lanes, 1, 32, 0, 0)(out.get()),
               "kernel shuffle_with_exited_lanes", "__shfl_down_sync() at ", "mask 0xffffffff",
               "lane 16 (thread (16,0,0)), which has exited");
}

void test_shuffle_mask_without_self() {
  Buffer<float> out(32);
  EXPECT_ERROR(LAUNCH(mask_without_self, 1, 32, 0, 0)(out.get()), "thread (16,0,0)",
               "does not include the calling lane 16");
}

void test_shuffle_partial_warp() {
  Buffer<float> out(48);
  EXPECT_ERROR(LAUNCH(full_mask_in_partial_warp, 1, 48, 0, 0)(out.get()), "thread (32,0,0)",
               "names lanes beyond the 16 threads of this warp");
}

// ================================ exceptions in one thread ================================
__global__ void trap_in_one_thread(float* out, int bad_block) {
  if (int(blockIdx.x) == bad_block && threadIdx.x == 5 && threadIdx.y == 1) __trap();
  __syncthreads();  // the others wait here: the failure must not turn into a deadlock report
  out[threadIdx.x] = 0.0f;
}

#ifndef __CUDACC__
__global__ void throw_in_one_thread(float* out) {
  if (blockIdx.y == 1 && threadIdx.x == 3) throw std::invalid_argument("bad value 42");
  out[threadIdx.x] = 0.0f;
}
#endif

void test_exception_coordinates() {
  Buffer<float> out(64);
  EXPECT_ERROR(LAUNCH(trap_in_one_thread, 4, dim3(8, 2), 0, 0)(out.get(), 2),
               "kernel trap_in_one_thread: block (2,0,0) thread (5,1,0): __trap() called");
#ifndef __CUDACC__
  EXPECT_ERROR(LAUNCH(throw_in_one_thread, dim3(1, 2), 32, 0, 0)(out.get()),
               "kernel throw_in_one_thread: block (0,1,0) thread (3,0,0): bad value 42");
#endif
}

// After all those abandoned blocks, kernels with barriers must still work.
__global__ void reverse_in_block(int* data) {
  __shared__ int tmp[64];
  tmp[threadIdx.x] = data[blockIdx.x * 64 + threadIdx.x];
  __syncthreads();
  data[blockIdx.x * 64 + threadIdx.x] = tmp[63 - threadIdx.x];
}

void test_recovers_after_errors() {
  Buffer<int> data(256);
  for (int i = 0; i < 256; ++i) data[i] = i;
  LAUNCH(reverse_in_block, 4, 64, 0, 0)(data.get());
  CHECK_LAUNCH("reverse_in_block");
  CUDA_CHECK(cudaDeviceSynchronize());
  int bad = 0;
  for (int i = 0; i < 256; ++i) bad += data[i] != (i / 64) * 64 + 63 - i % 64;
  CHECK(bad == 0);
}

// ================================ launch configuration ================================
__global__ void uses_dynamic_shared(float* out) {
  DYN_SHARED(float, s);
  s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

void launch_checked(dim3 grid, dim3 block, size_t smem, float* out) {
  LAUNCH(uses_dynamic_shared, grid, block, smem, 0)(out);
  CHECK_LAUNCH("uses_dynamic_shared");
  CUDA_CHECK(cudaDeviceSynchronize());
}

void test_launch_config() {
  Buffer<float> out(1024);
  EXPECT_ERROR(launch_checked(1, 1025, 1025 * 4, out.get()), "uses_dynamic_shared");
  EXPECT_ERROR(launch_checked(0, 32, 32 * 4, out.get()), "uses_dynamic_shared");
  EXPECT_ERROR(launch_checked(dim3(1, 0), 32, 32 * 4, out.get()), "uses_dynamic_shared");
  EXPECT_ERROR(launch_checked(1, dim3(1, 1, 65), 65 * 4, out.get()), "uses_dynamic_shared");
  EXPECT_ERROR(launch_checked(1, 32, 48 * 1024 + 4, out.get()), "uses_dynamic_shared");
  launch_checked(1, 32, 32 * 4, out.get());  // a valid one still works
  CHECK(out[0] == 31.0f && out[31] == 0.0f);
}

void test_launch_config_messages() {  // the emulator's own wording
  Buffer<float> out(1024);
  EXPECT_ERROR(launch_checked(1, 1025, 1025 * 4, out.get()),
               "kernel uses_dynamic_shared: invalid launch configuration: blockDim (1025,1,1) has "
               "1025 threads");
  EXPECT_ERROR(launch_checked(0, 32, 32 * 4, out.get()), "gridDim (0,1,1) has a zero dimension");
  EXPECT_ERROR(launch_checked(1, 32, 48 * 1024 + 4, out.get()),
               "49156 bytes of dynamic shared memory exceed");
  // Opting in raises the limit, as in CUDA.
  CUDA_CHECK(cudaFuncSetAttribute(uses_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  64 * 1024));
  launch_checked(1, 32, 48 * 1024 + 4, out.get());
  CHECK(out[0] == 31.0f);
}

void test_dynamic_shared_misuse() {
  Buffer<float> out(32);
#ifndef MINICNN_EMU_ASAN  // under ASan the overrun is ASan's to report (see asan_oob.cu)
  EXPECT_ERROR(launch_checked(1, 16, 0, out.get()), "kernel uses_dynamic_shared: block (0,0,0)",
               "wrote past the end of its 0 bytes of dynamic shared memory");
  EXPECT_ERROR(launch_checked(1, 32, 16 * 4, out.get()),
               "kernel uses_dynamic_shared: block (0,0,0)",
               "wrote past the end of its 64 bytes of dynamic shared memory");
#endif
}

// ================================ launching from a kernel ================================
__global__ void nested_child() {}
#ifndef __CUDACC__  // dynamic parallelism needs -rdc on a GPU; the emulator refuses it
__global__ void nested_parent() {
  LAUNCH(nested_child, 1, 1, 0, 0)();
}
#endif

void test_nested_launch() {
#ifndef __CUDACC__
  EXPECT_ERROR(LAUNCH(nested_parent, 1, 1, 0, 0)(),
               "kernel nested_parent: block (0,0,0) thread (0,0,0)",
               "kernel nested_child: launched from inside a kernel");
#endif
}

int main() {
  RUN(test_launch_config);
#ifdef __CUDACC__
  std::printf("[ SKIP ] the other tests: they hang or are undefined on a GPU\n");
#else
  RUN(test_launch_config_messages);
  RUN(test_divergent_barrier_exit);
  RUN(test_divergent_barrier_sites);
  RUN(test_deadlock);
  RUN(test_shuffle_exited_lane);
  RUN(test_shuffle_mask_without_self);
  RUN(test_shuffle_partial_warp);
  RUN(test_exception_coordinates);
  RUN(test_dynamic_shared_misuse);
  RUN(test_nested_launch);
  RUN(test_recovers_after_errors);
#endif
  return harness::summary();
}
