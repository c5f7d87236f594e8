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
// definition (_np_norm._channel_window_sum): the same sums. scale^−β is one power per element
// in each direction (backward: scale^(−β−1) = scale^−β / scale), and 1 / (√s · √√s) for AlexNet's
// and GoogLeNet's β = 0.75 (two square roots cost a fraction of a pow): within a few ulps of
// NumPy's powers, not bit for bit.
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

// out[i] = s[i]^−β for i in [0, n).
template <typename T>
void neg_pow(const T* s, T* out, int64_t n, double beta) {
  if (beta == 0.75) {
    for (int64_t i = 0; i < n; ++i) {
      const T r = std::sqrt(s[i]);
      out[i] = T(1) / (r * std::sqrt(r));
    }
  } else {
    const T nb = static_cast<T>(-beta);
    for (int64_t i = 0; i < n; ++i) out[i] = std::pow(s[i], nb);
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
  const T a_n = static_cast<T>(alpha / size), kk = static_cast<T>(k);
  lrn_blocks(N, L, [&](int64_t n, int64_t l0, int64_t len) {
    std::vector<T> sq(C * len), sum(C * len);  // x², then its window sums; (C, len)
    const int64_t base = n * C * L + l0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < len; ++l) sq[c * len + l] = x[base + c * L + l] * x[base + c * L + l];
    lrn_window_sum(sq.data(), sum.data(), C, len, len, size / 2, (size - 1) / 2);
    for (int64_t c = 0; c < C; ++c) {
      T* s = scale + base + c * L;
      T* p = sq.data() + c * len;  // reused: scale^−β
      for (int64_t l = 0; l < len; ++l) s[l] = kk + a_n * sum[c * len + l];
      neg_pow(s, p, len, beta);
      for (int64_t l = 0; l < len; ++l) y[base + c * L + l] = x[base + c * L + l] * p[l];
    }
  });
}

template <typename T>
void lrn_backward(const T* dout, const T* x, const T* scale, T* dx, int64_t N, int64_t C, int64_t L,
                  int64_t size, double alpha, double beta) {
  const T coef = static_cast<T>(2.0 * alpha * beta / size);
  lrn_blocks(N, L, [&](int64_t n, int64_t l0, int64_t len) {
    std::vector<T> p(C * len), t(C * len), back(C * len);  // scale^−β, dy·x·scale^(−β−1); (C, len)
    const int64_t base = n * C * L + l0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = base + c * L;
      T* pc = p.data() + c * len;
      neg_pow(scale + i, pc, len, beta);
      for (int64_t l = 0; l < len; ++l)
        t[c * len + l] = dout[i + l] * x[i + l] * pc[l] / scale[i + l];
    }
    lrn_window_sum(t.data(), back.data(), C, len, len, (size - 1) / 2, size / 2);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = base + c * L;
      for (int64_t l = 0; l < len; ++l)
        dx[i + l] = dout[i + l] * p[c * len + l] - coef * x[i + l] * back[c * len + l];
    }
  });
}

}  // namespace cpu
}  // namespace minicnn
