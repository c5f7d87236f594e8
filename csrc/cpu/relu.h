// ReLU for the "cpu" device, elementwise over contiguous arrays, on the thread pool.
//   forward   y = x < 0 ? 0 : x            (a NaN stays NaN, as np.maximum and torch)
//   backward  dx = y <= 0 ? 0 : dout       (a NaN output passes its gradient, as torch)
#pragma once
#include <cstdint>

#include "parallel.h"

namespace minicnn {
namespace cpu {

// 8 Ki values per task: both cores have work from 16x512x2x2 (32 Ki values) up.
constexpr int64_t kElementwiseGrain = 1 << 13;

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
