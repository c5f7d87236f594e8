// Random numbers on the device: Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel Random
// Numbers: As Easy as 1, 2, 3", SC'11), counter-based, and the dropout mask drawn from it.
//
//   philox(counter, key): 10 rounds of  (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2),
//                                                           hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
//   with the key bumped by the Weyl constants (W0, W1) between rounds; four 32-bit outputs.
//
// Counter-based: output i depends only on (i, key), so any thread computes any part of the
// stream, with no state to store or advance on the device. The dropout mask of n elements:
//
//   lane t = element / 4, counter (t_lo, t_hi, 0, 0), key (seed_lo, seed_hi), r = output t % 4;
//   mask = r >= threshold ? scale : 0,   threshold = ceil(p * 2^32),  scale = 1 / (1 - p)
//
// i.e. keep with probability 1 - p exactly to 2^-32 (r / 2^32 >= p). The seed comes from
// minicnn.random's generator (one draw per call), so manual_seed and the saved RNG state of a
// checkpoint fix the masks. minicnn/random.py holds the NumPy reference (philox4x32), which the
// tests compare bit for bit.
//
// Versions:
//   1. one Philox lane (4 elements) per thread, blocks of 256 threads covering the lanes.
//
// Buffers are contiguous arrays of n elements, any shape.
#include "common.cuh"

namespace minicnn {
namespace kernels {

struct Philox4 {
  uint32_t x[4];
};

__device__ __forceinline__ void mul_hi_lo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// Philox4x32 with 10 rounds (Random123's philox4x32_R(10, ...)).
__device__ __forceinline__ Philox4 philox4x32(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key bumps (golden ratio, sqrt 3)
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mul_hi_lo(kM0, c.x[0], hi0, lo0);
    mul_hi_lo(kM1, c.x[2], hi1, lo1);
    c = Philox4{{hi1 ^ c.x[1] ^ k0, lo1, hi0 ^ c.x[3] ^ k1, lo0}};
  }
  return c;
}

// ---- kernels ------------------------------------------------------------------------------------
template <class T>
__global__ void dropout_mask_kernel(T* mask,  // (n,) 0 or scale
                                    int64_t n, uint64_t threshold, T scale, uint64_t seed) {
  const int64_t lane = global_index();
  if (lane * 4 >= n) return;
  const Philox4 counter{{static_cast<uint32_t>(lane), static_cast<uint32_t>(lane >> 32), 0u, 0u}};
  const Philox4 r =
      philox4x32(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int j = 0; j < 4 && lane * 4 + j < n; ++j)
    mask[lane * 4 + j] = r.x[j] >= threshold ? scale : T(0);
}

__global__ void philox4x32_kernel(uint32_t* out,  // (lanes, 4)
                                  int64_t lanes, uint64_t seed, uint64_t offset) {
  const int64_t lane = global_index();
  if (lane >= lanes) return;
  const uint64_t t = offset + static_cast<uint64_t>(lane);
  const Philox4 counter{{static_cast<uint32_t>(t), static_cast<uint32_t>(t >> 32), 0u, 0u}};
  const Philox4 r =
      philox4x32(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r.x[j];
}

// ---- launchers ----------------------------------------------------------------------------------
template <class T>
void dropout_mask(T* mask, int64_t n, uint64_t threshold, double scale, uint64_t seed,
                  cudaStream_t stream) {
  if (n == 0) return;
  const int64_t lanes = (n + 3) / 4;
  LAUNCH((dropout_mask_kernel<T>), blocks_for(lanes), kBlockSize, 0, stream)(mask, n, threshold,
                                                                             T(scale), seed);
  CHECK_LAUNCH("dropout_mask_kernel");
}

void philox4x32_raw(uint32_t* out, int64_t lanes, uint64_t seed, uint64_t offset,
                    cudaStream_t stream) {
  if (lanes == 0) return;
  LAUNCH(philox4x32_kernel, blocks_for(lanes), kBlockSize, 0, stream)(out, lanes, seed, offset);
  CHECK_LAUNCH("philox4x32_kernel");
}

#define INSTANTIATE(T) \
  template void dropout_mask<T>(T*, int64_t, uint64_t, double, uint64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
