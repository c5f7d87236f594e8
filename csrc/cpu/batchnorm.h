// Batch normalization for the "cpu" device: per-channel passes over x (N, C, L), L = H*W, on the
// thread pool with a block of whole channels per task (their N*L values each then stay in this
// core's cache for the passes that follow, and one task does every pass of its channels: no
// barrier between the statistics and the normalise pass, or between the gradient sums and dx).
// A task walks its rows image by image (for_rows), in memory order.
//
//   batch_norm_forward   mean[c] = E[x], var[c] = E[(x - mean)²] over (N, L) (two passes, biased),
//                        invstd = 1/sqrt(var + eps), then y = (x − mean)·scale + shift with
//                        scale = weight·invstd, shift = bias (one pass; clamped at 0 when relu)
//   channel_affine       y = (x − center[c]) · scale[c] + shift[c] with given per-channel vectors
//                        (inference: the running statistics)
//   batch_norm_backward  sum_dy[c] = Σ dy,  sum_dy_xhat[c] = Σ dy · (x - mean[c]) · invstd[c],
//                        then dx = g[c] · (dy − sum_dy[c]/M − xhat · sum_dy_xhat[c]/M),  M = N·L
//                        (Ioffe & Szegedy 2015, sec. 3; g = weight · invstd), or dx = g · dy for
//                        fixed statistics (inference)
// Fused with a following ReLU: the normalise pass clamps its output at 0 (`relu`), and the
// backward passes read dy through ReLU's mask, dy · [y > 0] with y the ReLU output (`mask`),
// instead of a separate relu_backward pass: the same values in the same order, so the results
// equal the unfused ones bit for bit.
// Sums run in kLanes independent partial sums of T over the rows of a channel (LaneSums),
// flushed into double every kFlushValues values at a row's end; the masked term is a
// select of both loaded values, branch-free, so the lanes vectorise. Grains: about 4 Ki values per
// task, so both cores have work down to 16x512x2x2; a channel's sums stay in one task, in an
// order fixed by (N, L): results do not depend on the thread count.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

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

// Two sums in kLanes partial sums each: value l of a row goes to lane l % kLanes; the lanes
// go into the double sums s1, s2 after a row once kFlushValues values have gathered. One chain of
// dependent adds ran at one add per FP latency and does not vectorise without reassociation; the
// lanes are GCC vectors of 16 bytes (SSE registers), so a block of kLanes values is a few SIMD
// instructions in independent chains (a select of both loaded values for the mask, branch-free).
constexpr int kLanes = 8;
constexpr int64_t kFlushValues = 1024;

// *v = *p as U: one T, or kLanes consecutive T as a vector (out parameter: a vector returned by
// value would change the ABI with wider vectors enabled).
template <typename U, typename T>
inline void load(U* v, const T* p) {
  std::memcpy(v, p, sizeof(U));
}

template <typename T>
struct LaneSums {
  typedef T V __attribute__((vector_size(16)));  // one SSE register
  static constexpr int kPer = 16 / sizeof(T), kVectors = kLanes / kPer;
  V a[kVectors] = {}, b[kVectors] = {};  // lane j: a[j / kPer][j % kPer]
  int64_t count = 0;                     // values since the last flush
  double s1 = 0, s2 = 0;

  void flush() {
    for (int j = 0; j < kLanes; ++j) s1 += a[j / kPer][j % kPer], s2 += b[j / kPer][j % kPer];
    for (int k = 0; k < kVectors; ++k) a[k] = b[k] = V{};
    count = 0;
  }

  template <typename F>
  void one(int64_t l, int j, const F& term) {  // value l into lane j
    T ta = a[j / kPer][j % kPer], tb = b[j / kPer][j % kPer];
    term(l, ta, tb);
    a[j / kPer][j % kPer] = ta, b[j / kPer][j % kPer] = tb;
  }

  // term(l, a, b) for l < L (a generic lambda: a, b are T or V, adding the value(s) at l), value
  // l in lane l % kLanes: whole vectors where they fit (all of a 2x2 or 4x4 map's row).
  template <typename F>
  void row(int64_t L, const F& term) {
    int64_t l = 0;
    if (L >= kLanes) {  // the sums in locals (registers) for the main loop, not in *this
      V ra[kVectors], rb[kVectors];
      for (int k = 0; k < kVectors; ++k) ra[k] = a[k], rb[k] = b[k];
      for (; l + kLanes <= L; l += kLanes)
        for (int k = 0; k < kVectors; ++k) term(l + k * kPer, ra[k], rb[k]);
      for (int k = 0; k < kVectors; ++k) a[k] = ra[k], b[k] = rb[k];
    }
    int k = 0;
    for (; l + kPer <= L; l += kPer, ++k) term(l, a[k], b[k]);
    for (int i = 0; l < L; ++l, ++i) one(l, k * kPer + i, term);
    count += L;
    if (count >= kFlushValues) flush();
  }
};

// f(c0, c1) for blocks of about kChannelValues values (whole channels) on the pool: a chunk of
// the pool (many blocks at one thread) is still done block by block, so the passes after a
// block's first find its values in cache.
template <typename F>
void channel_blocks(int64_t N, int64_t C, int64_t L, const F& f) {
  const int64_t grain = channel_grain(N, L);
  parallel_for(C, grain, [&](int64_t b, int64_t e) {
    for (int64_t c0 = b; c0 < e; c0 += grain) f(c0, std::min(e, c0 + grain));
  });
}

// f(c, at) for the rows of channels [c0, c1), at = the row's offset: image by image, so a task
// reads the contiguous span x[n, c0:c1] in order (the hardware prefetcher follows it; a channel's
// rows alone are C·L values apart), and each channel still sees its rows in the order n = 0, 1, …
template <typename F>
inline void for_rows(int64_t c0, int64_t c1, int64_t N, int64_t C, int64_t L, const F& f) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = c0; c < c1; ++c) f(c, (n * C + c) * L);
}

// mean and biased variance of channels [c0, c1), two passes over their rows.
template <typename T>
void block_moments(const T* x, int64_t c0, int64_t c1, int64_t N, int64_t C, int64_t L, T* mean,
                   T* var) {
  const double M = static_cast<double>(N * L);
  std::vector<LaneSums<T>> acc(c1 - c0);
  for_rows(c0, c1, N, C, L, [&](int64_t c, int64_t at) {
    const T* row = x + at;
    acc[c - c0].row(L, [row](int64_t l, auto& a, auto&) {
      std::decay_t<decltype(a)> v;
      load(&v, row + l);
      a += v;
    });
  });
  for (int64_t c = c0; c < c1; ++c) {
    acc[c - c0].flush();
    mean[c] = static_cast<T>(acc[c - c0].s1 / M);
    acc[c - c0] = LaneSums<T>();
  }
  for_rows(c0, c1, N, C, L, [&](int64_t c, int64_t at) {
    const T *row = x + at, m = mean[c];
    acc[c - c0].row(L, [row, m](int64_t l, auto& a, auto&) {
      std::decay_t<decltype(a)> v;
      load(&v, row + l);
      v -= m;
      a += v * v;
    });
  });
  for (int64_t c = c0; c < c1; ++c) {
    acc[c - c0].flush();
    var[c] = static_cast<T>(acc[c - c0].s1 / M);
  }
}

// out[l] = (in[l] − m) · a + s over one row, clamped at 0 when relu.
template <typename T>
inline void affine_row(const T* in, T m, T a, T s, T* out, int64_t L, bool relu) {
  for (int64_t l = 0; l < L; ++l) out[l] = (in[l] - m) * a + s;
  if (relu) {
    for (int64_t l = 0; l < L; ++l) out[l] = out[l] < T(0) ? T(0) : out[l];
  }
}

// Training forward: statistics (mean, var, invstd out, (C,) each), then y, per block of
// channels. weight and bias may be null (1 and 0).
template <typename T>
void batch_norm_forward(const T* x, const T* weight, const T* bias, double eps, T* y, T* mean,
                        T* var, T* invstd, int64_t N, int64_t C, int64_t L, bool relu) {
  channel_blocks(N, C, L, [&](int64_t c0, int64_t c1) {
    block_moments(x, c0, c1, N, C, L, mean, var);
    std::vector<T> scale(c1 - c0);
    for (int64_t c = c0; c < c1; ++c) {
      invstd[c] = T(1) / std::sqrt(var[c] + static_cast<T>(eps));
      scale[c - c0] = weight ? weight[c] * invstd[c] : invstd[c];
    }
    for_rows(c0, c1, N, C, L, [&](int64_t c, int64_t at) {
      affine_row(x + at, mean[c], scale[c - c0], bias ? bias[c] : T(0), y + at, L, relu);
    });
  });
}

// y = (x − center) · scale + shift, clamped at 0 when relu; center and shift may be null.
template <typename T>
void channel_affine(const T* x, const T* center, const T* scale, const T* shift, T* y, int64_t N,
                    int64_t C, int64_t L, bool relu = false) {
  parallel_for(N * C, row_grain(L), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % C;
      const T m = center ? center[c] : T(0), s = shift ? shift[c] : T(0);
      affine_row(x + nc * L, m, scale[c], s, y + nc * L, L, relu);
    }
  });
}

// Adds one row's dy and dy·(x − m) to acc, dy read through the mask when one is given.
template <typename T>
inline void grad_sums_row(const T* dy, const T* in, const T* mk, T m, int64_t L, LaneSums<T>* acc) {
  if (mk) {
    acc->row(L, [dy, in, mk, m](int64_t l, auto& a, auto& b) {
      using U = std::decay_t<decltype(a)>;
      U v, on, xv;
      load(&v, dy + l), load(&on, mk + l), load(&xv, in + l);
      const U d = on <= U{} ? U{} : v;  // a select of both, branch-free
      a += d;
      b += d * (xv - m);
    });
  } else {
    acc->row(L, [dy, in, m](int64_t l, auto& a, auto& b) {
      using U = std::decay_t<decltype(a)>;
      U d, xv;
      load(&d, dy + l), load(&xv, in + l);
      a += d;
      b += d * (xv - m);
    });
  }
}

// dx of one row: a·dy' + k·(x − m) + d, dy' = dy · [mask > 0] (mask may be null); a·dy' alone
// when x is null (fixed statistics).
template <typename T>
inline void backward_row(const T* dy, const T* in, const T* mk, T a, T k, T m, T d, T* out,
                         int64_t L) {
  if (!in) {
    for (int64_t l = 0; l < L; ++l) {
      const T v = dy[l];
      out[l] = a * (mk && mk[l] <= T(0) ? T(0) : v);
    }
  } else if (mk) {
    for (int64_t l = 0; l < L; ++l) {
      const T v = dy[l];
      out[l] = a * (mk[l] <= T(0) ? T(0) : v) + k * (in[l] - m) + d;
    }
  } else {
    for (int64_t l = 0; l < L; ++l) out[l] = a * dy[l] + k * (in[l] - m) + d;
  }
}

// dx, sum_dy_xhat (dweight) and sum_dy (dbias), per block of channels; weight may be null.
// training: dx through the batch statistics; else dx = weight · invstd · dy.
template <typename T>
void batch_norm_backward(const T* dout, const T* x, const T* mask, const T* mean, const T* invstd,
                         const T* weight, T* dx, T* sum_dy, T* sum_dy_xhat, int64_t N, int64_t C,
                         int64_t L, bool training) {
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(N * L));
  channel_blocks(N, C, L, [&](int64_t c0, int64_t c1) {
    std::vector<LaneSums<T>> acc(c1 - c0);
    for_rows(c0, c1, N, C, L, [&](int64_t c, int64_t at) {
      grad_sums_row(dout + at, x + at, mask ? mask + at : nullptr, mean[c], L, &acc[c - c0]);
    });
    std::vector<T> g(c1 - c0), k(c1 - c0), d(c1 - c0);
    for (int64_t c = c0, i = 0; c < c1; ++c, ++i) {
      acc[i].flush();
      sum_dy[c] = static_cast<T>(acc[i].s1);
      sum_dy_xhat[c] = static_cast<T>(acc[i].s2 * invstd[c]);
      // dx = g·dy − g·mean(dy) − g·invstd·mean(dy·xhat)·(x − mean) = g·dy + k·(x − m) + d
      g[i] = weight ? weight[c] * invstd[c] : invstd[c];
      k[i] = training ? -g[i] * invstd[c] * sum_dy_xhat[c] * inv_m : T(0);
      d[i] = training ? -g[i] * sum_dy[c] * inv_m : T(0);
    }
    for_rows(c0, c1, N, C, L, [&](int64_t c, int64_t at) {
      const int64_t i = c - c0;
      backward_row(dout + at, training ? x + at : nullptr, mask ? mask + at : nullptr, g[i], k[i],
                   mean[c], d[i], dx + at, L);
    });
  });
}

}  // namespace cpu
}  // namespace minicnn
