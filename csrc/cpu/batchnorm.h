// Batch normalization for the "cpu" device: per-channel passes over x (N, C, L), L = H*W, on the
// thread pool with one channel per task (a channel's N*L values are then in this core's cache
// for the passes that follow). Sums accumulate in double.
//
//   batch_norm_stats     mean[c] = E[x], var[c] = E[(x - mean)²] over (N, L)   (two passes, biased)
//   channel_affine       y = (x − center[c]) · scale[c] + shift[c]   (normalise + affine, one pass;
//                        subtracting the mean first keeps x ≈ mean exact, as the two-step formula)
//   batch_norm_grad_sums sum_dy[c] = Σ dy,  sum_dy_xhat[c] = Σ dy · (x - mean[c]) · invstd[c]
//   batch_norm_backward_data
//                        dx = g[c] · (dy − sum_dy[c]/M − xhat · sum_dy_xhat[c]/M),  M = N·L
//                        (Ioffe & Szegedy 2015, sec. 3; g = weight · invstd)
#pragma once
#include <cstdint>

#include "parallel.h"

namespace minicnn {
namespace cpu {

inline int64_t channel_grain(int64_t N, int64_t L) {  // channels per task: about 16 Ki values
  return std::max<int64_t>(1, (16 << 10) / std::max<int64_t>(1, N * L));
}

template <typename T>
void batch_norm_stats(const T* x, T* mean, T* var, int64_t N, int64_t C, int64_t L) {
  const double M = static_cast<double>(N * L);
  parallel_for(C, channel_grain(N, L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = x + (n * C + c) * L;
        T part = 0;  // short runs in T vectorise; their sum in double
        for (int64_t l = 0; l < L; ++l) part += row[l];
        sum += part;
      }
      const double m = sum / M;
      const T mt = static_cast<T>(m);
      double sq = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = x + (n * C + c) * L;
        T part = 0;
        for (int64_t l = 0; l < L; ++l) {
          const T d = row[l] - mt;
          part += d * d;
        }
        sq += part;
      }
      mean[c] = mt;
      var[c] = static_cast<T>(sq / M);
    }
  });
}

template <typename T>
void channel_affine(const T* x, const T* center, const T* scale, const T* shift, T* y, int64_t N,
                    int64_t C, int64_t L) {
  parallel_for(N * C, std::max<int64_t>(1, (32 << 10) / std::max<int64_t>(1, L)),
               [&](int64_t b, int64_t e) {
                 for (int64_t nc = b; nc < e; ++nc) {
                   const int64_t c = nc % C;
                   const T m = center ? center[c] : T(0), a = scale[c], s = shift ? shift[c] : T(0);
                   const T* in = x + nc * L;
                   T* out = y + nc * L;
                   for (int64_t l = 0; l < L; ++l) out[l] = (in[l] - m) * a + s;
                 }
               });
}

template <typename T>
void batch_norm_grad_sums(const T* dout, const T* x, const T* mean, const T* invstd, T* sum_dy,
                          T* sum_dy_xhat, int64_t N, int64_t C, int64_t L) {
  parallel_for(C, channel_grain(N, L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T m = mean[c];
      double s = 0, sx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* dy = dout + (n * C + c) * L;
        const T* in = x + (n * C + c) * L;
        T part = 0, partx = 0;
        for (int64_t l = 0; l < L; ++l) {
          part += dy[l];
          partx += dy[l] * (in[l] - m);
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
                              int64_t L) {
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(N * L));
  parallel_for(N * C, std::max<int64_t>(1, (32 << 10) / std::max<int64_t>(1, L)),
               [&](int64_t b, int64_t e) {
                 for (int64_t nc = b; nc < e; ++nc) {
                   const int64_t c = nc % C;
                   // dx = g·dy − g·mean(dy) − g·invstd·mean(dy·xhat)·(x − mean) = a·dy + k·(x − m) + d
                   const T a = g[c], m = mean[c], k = -g[c] * invstd[c] * sum_dy_xhat[c] * inv_m;
                   const T d = -g[c] * sum_dy[c] * inv_m;
                   const T* dy = dout + nc * L;
                   const T* in = x + nc * L;
                   T* out = dx + nc * L;
                   for (int64_t l = 0; l < L; ++l) out[l] = a * dy[l] + k * (in[l] - m) + d;
                 }
               });
}

}  // namespace cpu
}  // namespace minicnn
