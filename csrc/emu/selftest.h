// Small kernels with known ordering bugs (and their correct twins), for the race checker's own tests
// (csrc/emu/tests/test_check.cu, tests/kernels/test_emu_checker.py through minicnn_emu_selftest in capi.h).
// Part of the CUDA emulator (see cuda_emu.h).
#pragma once

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace minicnn_emu::selftest {

// Each thread writes its slot, then reads its neighbour's: needs the barrier.
template <bool kBarrier>
__global__ void neighbour_exchange(float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = float(threadIdx.x);
  if (kBarrier) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}

// Every block writes out[threadIdx.x]: blocks write the same elements.
__global__ void blocks_write_same(float* out) {
  out[threadIdx.x] = float(blockIdx.x);
}

// Blocks > 0 read what block 0 writes: depends on block 0 running first.
__global__ void waits_for_block0(float* out) {
  if (blockIdx.x == 0)
    out[threadIdx.x] = 1.0f;
  else
    out[blockIdx.x * blockDim.x + threadIdx.x] = out[threadIdx.x] + 1.0f;
}

// A warp-synchronous tree sum in shared memory; without __syncwarp lanes read stale partials.
template <bool kSyncwarp>
__global__ void warp_tree_sum(float* out) {
  __shared__ float s[32];
  s[threadIdx.x] = float(threadIdx.x);
  if (kSyncwarp) __syncwarp();
  for (int offset = 16; offset > 0; offset /= 2) {
    float v = threadIdx.x < unsigned(offset) ? s[threadIdx.x + offset] : 0.0f;
    if (kSyncwarp) __syncwarp();
    if (threadIdx.x < unsigned(offset)) s[threadIdx.x] += v;
    if (kSyncwarp) __syncwarp();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// Reads a static __shared__ word nobody wrote in this block.
__global__ void reads_unwritten_shared(float* out) {
  __shared__ float s[32];
  if (threadIdx.x != 3) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

// Atomics from every block onto one counter: not a race.
__global__ void atomic_counter(float* out) {
  atomicAdd(&out[0], 1.0f);
}

// A barrier only some threads reach.
__global__ void partial_barrier(float* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// Run selftest `name` on small buffers; throws what the launch throws.
inline void run(const std::string& name) {
  std::vector<float> out(4 * 64, 0.0f);
  float* o = out.data();
  if (name == "neighbour_exchange_race")
    ::minicnn_emu::launch(neighbour_exchange<false>, "neighbour_exchange<false>", 2, 64, 0,
                          nullptr)(o);
  else if (name == "neighbour_exchange")
    ::minicnn_emu::launch(neighbour_exchange<true>, "neighbour_exchange<true>", 2, 64, 0,
                          nullptr)(o);
  else if (name == "blocks_write_same")
    ::minicnn_emu::launch(blocks_write_same, "blocks_write_same", 3, 32, 0, nullptr)(o);
  else if (name == "waits_for_block0")
    ::minicnn_emu::launch(waits_for_block0, "waits_for_block0", 3, 32, 0, nullptr)(o);
  else if (name == "warp_tree_sum_race")
    ::minicnn_emu::launch(warp_tree_sum<false>, "warp_tree_sum<false>", 2, 32, 0, nullptr)(o);
  else if (name == "warp_tree_sum")
    ::minicnn_emu::launch(warp_tree_sum<true>, "warp_tree_sum<true>", 2, 32, 0, nullptr)(o);
  else if (name == "reads_unwritten_shared")
    ::minicnn_emu::launch(reads_unwritten_shared, "reads_unwritten_shared", 2, 32, 0, nullptr)(o);
  else if (name == "atomic_counter")
    ::minicnn_emu::launch(atomic_counter, "atomic_counter", 4, 64, 0, nullptr)(o);
  else if (name == "partial_barrier")
    ::minicnn_emu::launch(partial_barrier, "partial_barrier", 1, 32, 0, nullptr)(o);
  else
    throw std::invalid_argument("no emulator selftest named '" + name + "'");
  if (name == "atomic_counter" && out[0] != 256.0f)
    throw std::runtime_error("atomic_counter: lost updates");
}

}  // namespace minicnn_emu::selftest
