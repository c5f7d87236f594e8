// Moving the batch in and out of a GEMM's columns (see im2col.h, "folded" layout).
//
//   unfold_batch: a (N, K, L) -> out (K, N*L), out[k, n L + l] = a[n, k, l]
//   fold_batch:   a (K, N*L) -> out (N, K, L), out[n, k, l] = a[k, n L + l] (+ bias[k] if given)
//   channel_sums: a (N, K, L) -> sums (K,), Σ_{n, l} a[n, k, l]  (conv2d's bias gradient)
//   conv_transpose_kernel: w (G, Kg, Cg, RS) -> out (G, Cg, Kg, RS) with the RS window reversed
//                 (the kernel of the convolution that gives conv2d's input gradient)
//   transpose:    a (B, M, N) -> out (B, N, M), in 32x32 tiles (NumPy's copy of a transposed view
//                 walks one side with a large stride: 5-10x slower for big matrices)
// All move runs of L contiguous values; tasks are channels k. Sums accumulate in double.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "parallel.h"

namespace minicnn {
namespace cpu {

inline int64_t rows_grain(int64_t row_length) {  // rows per task: about 32 Ki values
  return std::max<int64_t>(1, (32 << 10) / std::max<int64_t>(1, row_length));
}

template <typename T>
void unfold_batch(const T* a, T* out, int64_t N, int64_t K, int64_t L) {
  parallel_for(K, rows_grain(N * L), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      T* row = out + k * N * L;  // (N*L,)
      for (int64_t n = 0; n < N; ++n)
        std::memcpy(row + n * L, a + (n * K + k) * L, sizeof(T) * L);  // (L,)
    }
  });
}

template <typename T>
void fold_batch(const T* a, const T* bias, T* out, int64_t N, int64_t K, int64_t L) {
  parallel_for(K, rows_grain(N * L), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const T* row = a + k * N * L;  // (N*L,)
      for (int64_t n = 0; n < N; ++n) {
        T* dst = out + (n * K + k) * L;  // (L,)
        const T* src = row + n * L;
        if (bias) {
          const T b = bias[k];
          for (int64_t l = 0; l < L; ++l) dst[l] = src[l] + b;
        } else {
          std::memcpy(dst, src, sizeof(T) * L);
        }
      }
    }
  });
}

template <typename T>
void channel_sums(const T* a, T* sums, int64_t N, int64_t K, int64_t L) {
  parallel_for(K, rows_grain(N * L), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double sum = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* in = a + (n * K + k) * L;
        T part = 0;
        for (int64_t l = 0; l < L; ++l) part += in[l];
        sum += part;
      }
      sums[k] = static_cast<T>(sum);
    }
  });
}

template <typename T>
void conv_transpose_kernel(const T* w, T* out, int64_t G, int64_t Kg, int64_t Cg, int64_t RS) {
  constexpr int64_t kBlock = 16;  // input channels per task: reads of w become 16·RS-long runs
  const int64_t blocks = (Cg + kBlock - 1) / kBlock;
  parallel_for(G * blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t g = t / blocks, c0 = (t % blocks) * kBlock, c1 = std::min(Cg, c0 + kBlock);
      for (int64_t k = 0; k < Kg; ++k) {
        const T* src = w + ((g * Kg + k) * Cg) * RS;  // w[g, k, :, :]
        for (int64_t c = c0; c < c1; ++c) {
          T* dst = out + ((g * Cg + c) * Kg + k) * RS;  // out[g, c, k, :]
          for (int64_t i = 0; i < RS; ++i) dst[i] = src[c * RS + RS - 1 - i];
        }
      }
    }
  });
}

template <typename T>
void transpose(const T* a, T* out, int64_t B, int64_t M, int64_t N) {
  constexpr int64_t kTile = 32;
  const int64_t tiles_m = (M + kTile - 1) / kTile;
  parallel_for(
      B * tiles_m, std::max<int64_t>(1, 256 / std::max<int64_t>(1, (N + kTile - 1) / kTile)),
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / tiles_m, m0 = (t % tiles_m) * kTile, m1 = std::min(M, m0 + kTile);
          const T* src = a + b * M * N;
          T* dst = out + b * M * N;
          for (int64_t n0 = 0; n0 < N; n0 += kTile) {
            const int64_t n1 = std::min(N, n0 + kTile);
            for (int64_t n = n0; n < n1; ++n)
              for (int64_t m = m0; m < m1; ++m) dst[n * M + m] = src[m * N + n];
          }
        }
      });
}

}  // namespace cpu
}  // namespace minicnn
