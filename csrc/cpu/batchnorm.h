// Batch normalization for the "cpu" device: per-channel passes over x (N, C, L), L = H*W, on the
// thread pool with one channel per task (a channel's N*L values are then in this core's cache
// for the passes that follow). Sums of a row in T (the statistics in kLanes partial sums,
// lane_sums), then in double.
//
//   batch_norm_stats     mean[c] = E[x], var[c] = E[(x - mean)²] over (N, L)   (two passes, biased)
//   channel_affine       y = (x − center[c]) · scale[c] + shift[c]   (normalise + affine, one pass;
//                        subtracting the mean first keeps x ≈ mean exact, as the two-step formula)
//   batch_norm_grad_sums sum_dy[c] = Σ dy,  sum_dy_xhat[c] = Σ dy · (x - mean[c]) · invstd[c]
//   batch_norm_backward_data
//                        dx = g[c] · (dy − sum_dy[c]/M − xhat · sum_dy_xhat[c]/M),  M = N·L
//                        (Ioffe & Szegedy 2015, sec. 3; g = weight · invstd)
// Fused with a following ReLU (batch_norm_relu): channel_affine clamps its output at 0 (`relu`),
// and the backward passes read dy through ReLU's mask, dy · [y > 0] with y the ReLU output
// (`mask`), instead of a separate relu_backward pass: the same values in the same order, so the
// results equal the unfused ones bit for bit.
// Grains: about 4 Ki values per task, so both cores have work down to 16x512x2x2; a channel's
// sums stay in one task, in a fixed order: results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "parallel.h"

namespace minicnn {
namespace cpu {

constexpr int64_t kChannelValues = 4 << 10;  // values per task

inline int64_t channel_grain(int64_t N, int64_t L) {  // channels per task
  return std::max<int64_t>(1, kChannelValues / std::max<int64_t>(1, N * L));
}

inline int64_t row_grain(int64_t L) {  // (n, c) rows of L values per task
  return std::max<int64_t>(1, kChannelValues / std::max<int64_t>(1, L));
}

template <typename T>
inline T masked(const T* mask, const T* v, int64_t i) {  // v[i] · [mask[i] > 0], as relu_backward
  const T d = v[i];
  return mask && mask[i] <= T(0) ? T(0) : d;
}

// Σ term(l) over l < L in kLanes independent partial sums of T (element l into lane l % kLanes),
// then the lanes in double: one long chain of dependent adds ran at one add per FP latency and
// does not vectorise without reassociation. A fixed order: the same bits at any thread count.
constexpr int kLanes = 8;

template <typename T, typename F>
inline void lane_sums(int64_t L, F term, double* s1, double* s2) {  // term(l, &a, &b): a += , b +=
  T a[kLanes] = {}, b[kLanes] = {};
  int64_t l = 0;
  for (; l + kLanes <= L; l += kLanes)
    for (int j = 0; j < kLanes; ++j) term(l + j, &a[j], &b[j]);
  for (int j = 0; l < L; ++l, ++j) term(l, &a[j], &b[j]);
  for (int j = 0; j < kLanes; ++j) *s1 += a[j], *s2 += b[j];
}

template <typename T>
void batch_norm_stats(const T* x, T* mean, T* var, int64_t N, int64_t C, int64_t L) {
  const double M = static_cast<double>(N * L);
  parallel_for(C, channel_grain(N, L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0, unused = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = x + (n * C + c) * L;
        lane_sums<T>(L, [row](int64_t l, T* a, T*) { *a += row[l]; }, &sum, &unused);
      }
      const double m = sum / M;
      const T mt = static_cast<T>(m);
      double sq = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = x + (n * C + c) * L;
        auto term = [row, mt](int64_t l, T* a, T*) {
          const T d = row[l] - mt;
          *a += d * d;
        };
        lane_sums<T>(L, term, &sq, &unused);
      }
      mean[c] = mt;
      var[c] = static_cast<T>(sq / M);
    }
  });
}

// y = (x · [mask > 0] − center) · scale + shift, clamped at 0 when relu; mask may be null.
template <typename T>
void channel_affine(const T* x, const T* center, const T* scale, const T* shift, T* y, int64_t N,
                    int64_t C, int64_t L, const T* mask = nullptr, bool relu = false) {
  parallel_for(N * C, row_grain(L), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % C;
      const T m = center ? center[c] : T(0), a = scale[c], s = shift ? shift[c] : T(0);
      const T* in = x + nc * L;
      const T* mk = mask ? mask + nc * L : nullptr;
      T* out = y + nc * L;
      if (mk) {
        for (int64_t l = 0; l < L; ++l) out[l] = (masked(mk, in, l) - m) * a + s;
      } else {
        for (int64_t l = 0; l < L; ++l) out[l] = (in[l] - m) * a + s;
      }
      if (relu) {
        for (int64_t l = 0; l < L; ++l) out[l] = out[l] < T(0) ? T(0) : out[l];
      }
    }
  });
}

template <typename T>
void batch_norm_grad_sums(const T* dout, const T* x, const T* mean, const T* invstd, T* sum_dy,
                          T* sum_dy_xhat, int64_t N, int64_t C, int64_t L,
                          const T* mask = nullptr) {
  parallel_for(C, channel_grain(N, L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T m = mean[c];
      double s = 0, sx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* dy = dout + (n * C + c) * L;
        const T* in = x + (n * C + c) * L;
        const T* mk = mask ? mask + (n * C + c) * L : nullptr;
        T part = 0, partx = 0;  // one chain each: lane_sums was slower here (the mask select)
        for (int64_t l = 0; l < L; ++l) {
          const T d = masked(mk, dy, l);
          part += d;
          partx += d * (in[l] - m);
        }
        s += part;
        sx += partx;
      }
      sum_dy[c] = static_cast<T>(s);
      sum_dy_xhat[c] = static_cast<T>(sx * invstd[c]);
    }
  });
}

template <typename T>
void batch_norm_backward_data(const T* dout, const T* x, const T* mean, const T* invstd, const T* g,
                              const T* sum_dy, const T* sum_dy_xhat, T* dx, int64_t N, int64_t C,
                              int64_t L, const T* mask = nullptr) {
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(N * L));
  parallel_for(N * C, row_grain(L), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % C;
      // dx = g·dy − g·mean(dy) − g·invstd·mean(dy·xhat)·(x − mean) = a·dy + k·(x − m) + d
      const T a = g[c], m = mean[c], k = -g[c] * invstd[c] * sum_dy_xhat[c] * inv_m;
      const T d = -g[c] * sum_dy[c] * inv_m;
      const T* dy = dout + nc * L;
      const T* in = x + nc * L;
      const T* mk = mask ? mask + nc * L : nullptr;
      T* out = dx + nc * L;
      if (mk) {
        for (int64_t l = 0; l < L; ++l) out[l] = a * masked(mk, dy, l) + k * (in[l] - m) + d;
      } else {
        for (int64_t l = 0; l < L; ++l) out[l] = a * dy[l] + k * (in[l] - m) + d;
      }
    }
  });
}

}  // namespace cpu
}  // namespace minicnn
