// Local response normalization across channels for the "cpu" device (AlexNet, GoogLeNet), on the
// thread pool. x is (N, C, L), L = H*W; the window of channel c is [c − before, c + after] ∩ [0, C)
// with before = size/2, after = (size−1)/2 (PyTorch's), the transposed window of backward
// [c − after, c + before].
//
//   lrn_forward   scale = k + α/size · Σ_window x²,   y = x · scale^−β
//   lrn_backward  dx = dy · scale^−β − (2αβ/size) · x · Σ_transposed-window dy · x · scale^(−β−1)
//
// A task is one image and a run of `kLrnColumns` positions l: all C channels of those positions
// (the window runs along C), so the passes stay in cache and both cores have work even at batch
// 1. The window sums run over the channel offsets in ascending order from 0, as the NumPy
// definition (_np_norm._channel_window_sum): the same sums; the powers may differ from NumPy's in
// the last bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.h"

namespace minicnn {
namespace cpu {

constexpr int64_t kLrnColumns = 256;

// out[c][l] = Σ_{j ∈ [c − before, c + after] ∩ [0, C)} a[j][l] for l in [0, len); rows of `stride`.
template <typename T>
void lrn_window_sum(const T* a, T* out, int64_t C, int64_t len, int64_t stride, int64_t before,
                    int64_t after) {
  for (int64_t c = 0; c < C; ++c) {
    T* o = out + c * stride;
    std::fill(o, o + len, T(0));
    for (int64_t j = std::max<int64_t>(0, c - before); j <= std::min(C - 1, c + after); ++j) {
      const T* row = a + j * stride;
      for (int64_t l = 0; l < len; ++l) o[l] += row[l];
    }
  }
}

// fn(n, l0, len) over every image n and column block [l0, l0 + len) of L.
template <typename F>
void lrn_blocks(int64_t N, int64_t L, const F& fn) {
  const int64_t blocks = (L + kLrnColumns - 1) / kLrnColumns;
  parallel_for(N * blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n = t / blocks, l0 = (t % blocks) * kLrnColumns;
      fn(n, l0, std::min(kLrnColumns, L - l0));
    }
  });
}

template <typename T>
void lrn_forward(const T* x, T* y, T* scale, int64_t N, int64_t C, int64_t L, int64_t size,
                 double alpha, double beta, double k) {
  const T a_n = static_cast<T>(alpha / size), kk = static_cast<T>(k), nb = static_cast<T>(-beta);
  lrn_blocks(N, L, [&](int64_t n, int64_t l0, int64_t len) {
    std::vector<T> sq(C * len);  // x² of this block, (C, len)
    const int64_t base = n * C * L + l0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < len; ++l) sq[c * len + l] = x[base + c * L + l] * x[base + c * L + l];
    std::vector<T> sum(C * len);
    lrn_window_sum(sq.data(), sum.data(), C, len, len, size / 2, (size - 1) / 2);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < len; ++l) {
        const int64_t i = base + c * L + l;
        const T s = kk + a_n * sum[c * len + l];
        scale[i] = s;
        y[i] = x[i] * std::pow(s, nb);
      }
  });
}

template <typename T>
void lrn_backward(const T* dout, const T* x, const T* scale, T* dx, int64_t N, int64_t C, int64_t L,
                  int64_t size, double alpha, double beta) {
  const T nb = static_cast<T>(-beta), nb1 = static_cast<T>(-beta - 1);
  const T coef = static_cast<T>(2.0 * alpha * beta / size);
  lrn_blocks(N, L, [&](int64_t n, int64_t l0, int64_t len) {
    std::vector<T> t(C * len);  // dy · x · scale^(−β−1) of this block, (C, len)
    const int64_t base = n * C * L + l0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < len; ++l) {
        const int64_t i = base + c * L + l;
        t[c * len + l] = dout[i] * x[i] * std::pow(scale[i], nb1);
      }
    std::vector<T> back(C * len);
    lrn_window_sum(t.data(), back.data(), C, len, len, (size - 1) / 2, size / 2);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < len; ++l) {
        const int64_t i = base + c * L + l;
        dx[i] = dout[i] * std::pow(scale[i], nb) - coef * x[i] * back[c * len + l];
      }
  });
}

}  // namespace cpu
}  // namespace minicnn
