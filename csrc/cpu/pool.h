// Max and average pooling for the "cpu" device, one (n, c) plane per task on the thread pool.
//
// Window (p, q) starts at (p sh - ph, q sw - pw); offset (r, s) reads (p sh - ph + r dh,
// q sw - pw + s dw). Reads outside the input are padding: -inf for max, 0 for average (the caller
// passes the average's divisor per window, so count_include_pad / ceil_mode / divisor_override
// stay decided in one place, minicnn/backends/_np_pool.py).
//   max_pool2d_forward   y = the window's max; argmax = h W + w of its first maximum in row-major
//                        window order, a NaN winning (the last NaN), as torch; a window with no
//                        input pixel gives -inf and the index of its first in-plane position
//   max_pool2d_backward  dx[argmax] += dy over the windows that hold an input pixel
//   avg_pool2d_forward   y = Σ window / divisor[p, q]
//   avg_pool2d_backward  dx[h, w] = Σ over the windows reading (h, w) of dy / divisor
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "../geometry.h"
#include "parallel.h"

namespace minicnn {
namespace cpu {

// Kernel offsets r in [lo, hi) whose row start + r*dil lies in [0, n); first = the first such row
// (start + ceil(-start/dil)*dil when start < 0), possibly >= n when the window misses the input.
struct Span {
  int64_t lo, hi, first;
};

inline Span window_span(int64_t start, int64_t R, int64_t dil, int64_t n) {
  Span s;
  s.lo = start < 0 ? (-start + dil - 1) / dil : 0;
  s.first = start + s.lo * dil;
  const int64_t past = n - start;  // r*dil < past
  s.hi = past <= 0 ? 0 : std::min<int64_t>(R, (past + dil - 1) / dil);
  if (s.hi < s.lo) s.hi = s.lo;
  return s;
}

inline int64_t plane_grain(int64_t values_per_plane) {
  return std::max<int64_t>(1, (16 << 10) / std::max<int64_t>(1, values_per_plane));
}

// The spans of every window along one axis, computed once per call (not per plane and pixel).
inline std::vector<Span> window_spans(int64_t P, int64_t stride, int64_t pad, int64_t R,
                                      int64_t dil, int64_t n) {
  std::vector<Span> spans(P);
  for (int64_t p = 0; p < P; ++p) spans[p] = window_span(p * stride - pad, R, dil, n);
  return spans;
}

// A plane inside a border of `fill` (ph rows/pw columns before, enough after for every window,
// ceil_mode's included), so the window loops need no bounds checks and run over a whole output
// row at a time: R*S passes of independent, vectorisable updates instead of one dependent chain
// per output pixel.
template <typename T>
struct PaddedPlane {
  int64_t Hp, Wp;
  std::vector<T> data;

  PaddedPlane(const Pool2dGeometry& g, T fill)
      : Hp(std::max(g.H + 2 * g.ph, (g.P - 1) * g.sh + (g.R - 1) * g.dh + 1)),
        Wp(std::max(g.W + 2 * g.pw, (g.Q - 1) * g.sw + (g.S - 1) * g.dw + 1)),
        data(Hp * Wp, fill) {}

  void load(const T* plane, const Pool2dGeometry& g) {  // the border keeps its fill
    for (int64_t h = 0; h < g.H; ++h)
      std::copy(plane + h * g.W, plane + (h + 1) * g.W, data.begin() + (h + g.ph) * Wp + g.pw);
  }
};

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* argmax, const Pool2dGeometry& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  const std::vector<Span> hs = window_spans(g.P, g.sh, g.ph, g.R, g.dh, g.H);
  const std::vector<Span> ws = window_spans(g.Q, g.sw, g.pw, g.S, g.dw, g.W);
  parallel_for(g.N * g.C, plane_grain(HW + PQ), [&](int64_t b, int64_t e) {
    PaddedPlane<T> pad(g, -std::numeric_limits<T>::infinity());
    for (int64_t nc = b; nc < e; ++nc) {
      pad.load(x + nc * HW, g);
      for (int64_t p = 0; p < g.P; ++p) {
        T* best = y + nc * PQ + p * g.Q;              // (Q,) running max
        int64_t* index = argmax + nc * PQ + p * g.Q;  // (Q,) its h W + w
        for (int64_t q = 0; q < g.Q; ++q) {
          best[q] = -std::numeric_limits<T>::infinity();
          index[q] = hs[p].first * g.W + ws[q].first;  // torch's index of an empty window
        }
        for (int64_t r = 0; r < g.R; ++r) {
          for (int64_t s = 0; s < g.S; ++s) {
            const T* src = pad.data.data() + (p * g.sh + r * g.dh) * pad.Wp + s * g.dw;
            const int64_t at0 = (p * g.sh - g.ph + r * g.dh) * g.W + s * g.dw - g.pw;
            for (int64_t q = 0; q < g.Q; ++q) {
              const T v = src[q * g.sw];
              const bool take = (v > best[q]) | (v != v);  // padding (-inf) never wins
              best[q] = take ? v : best[q];
              index[q] = take ? at0 + q * g.sw : index[q];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void max_pool2d_backward(const T* dout, const int64_t* argmax, T* dx, const Pool2dGeometry& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  const std::vector<Span> hs = window_spans(g.P, g.sh, g.ph, g.R, g.dh, g.H);
  const std::vector<Span> ws = window_spans(g.Q, g.sw, g.pw, g.S, g.dw, g.W);
  parallel_for(g.N * g.C, plane_grain(HW + PQ), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      T* plane = dx + nc * HW;
      std::fill(plane, plane + HW, T(0));
      for (int64_t p = 0; p < g.P; ++p) {
        if (hs[p].first >= g.H) continue;  // a window of padding only passes nothing
        for (int64_t q = 0; q < g.Q; ++q) {
          if (ws[q].first >= g.W) continue;
          const int64_t at = argmax[nc * PQ + p * g.Q + q];
          if (at >= 0 && at < HW) plane[at] += dout[nc * PQ + p * g.Q + q];
        }
      }
    }
  });
}

template <typename T>
void avg_pool2d_forward(const T* x, const T* divisor, T* y, const Pool2dGeometry& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  parallel_for(g.N * g.C, plane_grain(HW + PQ), [&](int64_t b, int64_t e) {
    PaddedPlane<T> pad(g, T(0));
    for (int64_t nc = b; nc < e; ++nc) {
      pad.load(x + nc * HW, g);
      for (int64_t p = 0; p < g.P; ++p) {
        T* sum = y + nc * PQ + p * g.Q;  // (Q,)
        for (int64_t q = 0; q < g.Q; ++q) sum[q] = T(0);
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s) {
            const T* src = pad.data.data() + (p * g.sh + r) * pad.Wp + s;
            for (int64_t q = 0; q < g.Q; ++q) sum[q] += src[q * g.sw];
          }
        for (int64_t q = 0; q < g.Q; ++q) sum[q] /= divisor[p * g.Q + q];
      }
    }
  });
}

template <typename T>
void avg_pool2d_backward(const T* dout, const T* divisor, T* dx, const Pool2dGeometry& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  parallel_for(g.N * g.C, plane_grain(HW + PQ), [&](int64_t b, int64_t e) {
    PaddedPlane<T> pad(g, T(0));
    std::vector<T> v(g.Q);
    for (int64_t nc = b; nc < e; ++nc) {
      std::fill(pad.data.begin(), pad.data.end(), T(0));
      for (int64_t p = 0; p < g.P; ++p) {
        for (int64_t q = 0; q < g.Q; ++q) v[q] = dout[nc * PQ + p * g.Q + q] / divisor[p * g.Q + q];
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s) {
            T* dst = pad.data.data() + (p * g.sh + r) * pad.Wp + s;
            for (int64_t q = 0; q < g.Q; ++q) dst[q * g.sw] += v[q];
          }
      }
      T* plane = dx + nc * HW;
      for (int64_t h = 0; h < g.H; ++h)
        std::copy(pad.data.begin() + (h + g.ph) * pad.Wp + g.pw,
                  pad.data.begin() + (h + g.ph) * pad.Wp + g.pw + g.W, plane + h * g.W);
    }
  });
}

}  // namespace cpu
}  // namespace minicnn
