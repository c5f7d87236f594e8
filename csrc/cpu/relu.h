// ReLU for the "cpu" device, elementwise over contiguous arrays, on the thread pool.
//   forward   y = x < 0 ? 0 : x            (a NaN stays NaN, as np.maximum and torch)
//   backward  dx = y <= 0 ? 0 : dout       (a NaN output passes its gradient, as torch)
#pragma once
#include <cstdint>

#include "parallel.h"

namespace minicnn {
namespace cpu {

// 64 Ki values (256 KiB of float) per task: an array up to that size stays on the caller's thread.
// These passes are memory-bound at a few GB/s per core, so a 16x64x8x8 ReLU (64 Ki values) takes
// ~6 us: with 8 Ki values per task, waking a worker (a futex call, tens of us when it sleeps)
// cost more than it saved, and GoogLeNet's ReLUs ran 25% slower at 2 threads than at 1 (issue
// 16); ResNet-50's 16x256x16x16 ones (1 Mi values, 16 tasks) still split over both cores.
constexpr int64_t kElementwiseGrain = 1 << 16;

template <typename T>
void relu_forward(const T* x, T* y, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T v = x[i];
      y[i] = v < T(0) ? T(0) : v;
    }
  });
}

template <typename T>
void relu_backward(const T* dout, const T* y, T* dx, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T d = dout[i];  // loaded unconditionally, so the select vectorises
      dx[i] = y[i] <= T(0) ? T(0) : d;
    }
  });
}

}  // namespace cpu
}  // namespace minicnn
