// See im2col.h for the index mapping and the layout. One task = one (n, c) plane of x and
// its R*S rows of columns (P*Q values each, `row_stride` apart).
#include "im2col.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "parallel.h"

namespace minicnn {
namespace cpu {

// Range of output positions p whose input row p*stride + offset lies inside [0, H).
static inline void valid_range(int64_t offset, int64_t stride, int64_t H, int64_t P, int64_t* lo,
                               int64_t* hi) {
  int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t h = (H - offset + stride - 1) / stride;  // first p with p*stride + offset >= H
  if (H - offset <= 0) h = 0;
  *lo = std::min(std::max<int64_t>(l, 0), P);
  *hi = std::max(std::min(h, P), *lo);
}

// Calls tap(tap_index, hoff, woff, p_lo, p_hi, q_lo, q_hi) for each kernel tap (r, s):
// tap_index = r S + s, its input offsets and the output ranges whose inputs lie inside the plane.
template <typename Tap>
static inline void for_each_tap(const Conv2dGeometry& g, Tap tap) {
  for (int64_t r = 0; r < g.R; ++r) {
    const int64_t hoff = r * g.dh - g.ph;
    int64_t p_lo, p_hi;
    valid_range(hoff, g.sh, g.H, g.P, &p_lo, &p_hi);
    for (int64_t s = 0; s < g.S; ++s) {
      const int64_t woff = s * g.dw - g.pw;
      int64_t q_lo, q_hi;
      valid_range(woff, g.sw, g.W, g.Q, &q_lo, &q_hi);
      tap(r * g.S + s, hoff, woff, p_lo, p_hi, q_lo, q_hi);
    }
  }
}

// The R*S column rows of one input plane (H, W); row (r, s) starts at rows + (r S + s) row_stride.
// Plain loops rather than memcpy/fill: the rows of late layers are a few values long (2x2 maps),
// where a library call per run costs more than the copy; the compiler vectorises the loops.
template <typename T>
static void im2col_plane(const T* plane, T* rows, int64_t row_stride, const Conv2dGeometry& g) {
  for_each_tap(g, [&](int64_t tap, int64_t hoff, int64_t woff, int64_t p_lo, int64_t p_hi,
                      int64_t q_lo, int64_t q_hi) {
    T* row = rows + tap * row_stride;  // (P, Q)
    for (int64_t i = 0; i < p_lo * g.Q; ++i) row[i] = T(0);
    for (int64_t p = p_lo; p < p_hi; ++p) {
      T* out = row + p * g.Q;
      const T* in = plane + (p * g.sh + hoff) * g.W + woff;  // input row, inside the plane
      for (int64_t q = 0; q < q_lo; ++q) out[q] = T(0);
      if (g.sw == 1) {
        for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[q];
      } else {
        for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[q * g.sw];
      }
      for (int64_t q = q_hi; q < g.Q; ++q) out[q] = T(0);
    }
    for (int64_t i = p_hi * g.Q; i < g.P * g.Q; ++i) row[i] = T(0);
  });
}

// plane (H, W) = Σ over the R*S rows scattered back (overwrites the plane).
template <typename T>
static void col2im_plane(const T* rows, int64_t row_stride, T* plane, const Conv2dGeometry& g) {
  std::fill(plane, plane + g.H * g.W, T(0));
  for_each_tap(g, [&](int64_t tap, int64_t hoff, int64_t woff, int64_t p_lo, int64_t p_hi,
                      int64_t q_lo, int64_t q_hi) {
    const T* row = rows + tap * row_stride;
    for (int64_t p = p_lo; p < p_hi; ++p) {
      const T* in = row + p * g.Q;
      T* out = plane + (p * g.sh + hoff) * g.W;  // image row, inside the plane
      if (g.sw == 1) {
        for (int64_t q = q_lo; q < q_hi; ++q) out[q + woff] += in[q];
      } else {
        for (int64_t q = q_lo; q < q_hi; ++q) out[q * g.sw + woff] += in[q];
      }
    }
  });
}

// Where the rows of plane (n, c) start in cols (C*R*S, N*P*Q), and how far apart they are.
static inline void rows_of(const Conv2dGeometry& g, int64_t n, int64_t c, int64_t* offset,
                           int64_t* row_stride) {
  const int64_t RS = g.R * g.S, PQ = g.P * g.Q;
  *offset = c * RS * g.N * PQ + n * PQ;
  *row_stride = g.N * PQ;
}

// Tasks of about 64 KiB of column values: small planes are grouped, so the pool's overhead stays
// small next to the copying.
static inline int64_t plane_grain(const Conv2dGeometry& g) {
  return std::max<int64_t>(1, (16 << 10) / std::max<int64_t>(1, g.R * g.S * g.P * g.Q));
}

static inline bool has_padding(const Conv2dGeometry& g) {
  return g.ph > 0 || g.pw > 0;
}

// Stride-1 columns as runs (below): read from the plane itself when unpadded (a 1x1 layer's rows
// are its plane), else from a zero-padded copy, which pays for itself over R*S > 1 taps.
static inline bool padded_runs(const Conv2dGeometry& g) {
  return g.sw == 1 && (g.R * g.S > 1 || !has_padding(g));
}

// Stride-1 columns from a zero-padded copy of the plane (or the unpadded plane): every row of
// every (r, s) is then one contiguous run of Q values, copied with a length known at compile time
// for the common map widths (a run of 2-16 values costs less than the bounds logic and library
// call per run above).
// pick(std::integral_constant<int64_t, Q>) for the common map widths Q (a run length known at
// compile time), else pick(std::integral_constant<int64_t, 0>) (the length read at run time).
using MapWidths = std::integer_sequence<int64_t, 2, 4, 7, 8, 14, 16, 28, 32>;

template <typename Pick, int64_t... kWidths>
static auto pick_width(int64_t Q, Pick pick, std::integer_sequence<int64_t, kWidths...>) {
  auto picked = pick(std::integral_constant<int64_t, 0>{});  // a function pointer
  (void)((Q == kWidths && (picked = pick(std::integral_constant<int64_t, kWidths>{}), true)) ||
         ...);
  return picked;
}

template <typename Pick>
static auto for_width(int64_t Q, Pick pick) {
  return pick_width(Q, pick, MapWidths{});
}

template <typename T, int64_t kQ>
static void copy_runs(const T* src, int64_t src_stride, T* dst, int64_t P, int64_t Q) {
  const int64_t q = kQ > 0 ? kQ : Q;
  for (int64_t p = 0; p < P; ++p) std::memcpy(dst + p * q, src + p * src_stride, sizeof(T) * q);
}

template <typename T>
static void im2col_plane_stride1(const T* plane, T* padded, T* rows, int64_t row_stride,
                                 const Conv2dGeometry& g) {
  const int64_t Wp = g.W + 2 * g.pw;  // padded (H + 2 ph, Wp); the plane itself when unpadded
  const T* src = plane;
  if (has_padding(g)) {  // the inside of `padded` (its border stays zero)
    for (int64_t h = 0; h < g.H; ++h)
      std::memcpy(padded + (h + g.ph) * Wp + g.pw, plane + h * g.W, sizeof(T) * g.W);
    src = padded;
  }
  const auto copy = for_width(g.Q, [](auto q) { return &copy_runs<T, decltype(q)::value>; });
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s)
      copy(src + r * g.dh * Wp + s * g.dw, g.sh * Wp, rows + (r * g.S + s) * row_stride, g.P, g.Q);
}

// col2im's stride-1 counterpart of im2col_plane_stride1: each row of each (r, s) is added to a
// contiguous run of a zero-padded plane, then the inside is copied out. Same order of additions
// as col2im_plane (r, then s, then p), so the results agree bit for bit.
template <typename T, int64_t kQ>
static void add_runs(const T* src, T* dst, int64_t dst_stride, int64_t P, int64_t Q) {
  const int64_t q = kQ > 0 ? kQ : Q;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < q; ++i) dst[p * dst_stride + i] += src[p * q + i];
}

template <typename T>
static void col2im_plane_stride1(const T* rows, int64_t row_stride, T* padded, T* plane,
                                 const Conv2dGeometry& g) {
  const int64_t Wp = g.W + 2 * g.pw;  // padded (H + 2 ph, Wp); the plane itself when unpadded
  T* dst = has_padding(g) ? padded : plane;
  std::fill(dst, dst + (g.H + 2 * g.ph) * Wp, T(0));
  const auto add = for_width(g.Q, [](auto q) { return &add_runs<T, decltype(q)::value>; });
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s)
      add(rows + (r * g.S + s) * row_stride, dst + r * g.dh * Wp + s * g.dw, g.sh * Wp, g.P, g.Q);
  if (has_padding(g))
    for (int64_t h = 0; h < g.H; ++h)
      std::memcpy(plane + h * g.W, padded + (h + g.ph) * Wp + g.pw, sizeof(T) * g.W);
}

// The R*S column rows of one plane, by the fastest path for the layer; `padded` is a scratch
// plane of scratch_size(g) values with a zero border.
template <typename T>
static void im2col_one(const T* plane, T* padded, T* rows, int64_t row_stride,
                       const Conv2dGeometry& g) {
  if (padded_runs(g))
    im2col_plane_stride1(plane, padded, rows, row_stride, g);
  else
    im2col_plane(plane, rows, row_stride, g);
}

// The adjoint: the plane (overwritten) from its R*S column rows.
template <typename T>
static void col2im_one(const T* rows, int64_t row_stride, T* padded, T* plane,
                       const Conv2dGeometry& g) {
  if (padded_runs(g))
    col2im_plane_stride1(rows, row_stride, padded, plane, g);
  else
    col2im_plane(rows, row_stride, plane, g);
}

// The scratch plane im2col_one and col2im_one take: (H + 2 ph) x (W + 2 pw) values, or none.
static inline int64_t scratch_size(const Conv2dGeometry& g) {
  return padded_runs(g) && has_padding(g) ? (g.H + 2 * g.ph) * (g.W + 2 * g.pw) : 0;
}

// f(plane index n C + c, where its rows start in cols, their stride, a zeroed scratch plane) for
// every (n, c) plane, on the pool.
template <typename T, typename F>
static void for_each_plane(const Conv2dGeometry& g, const F& f) {
  const int64_t padded_size = scratch_size(g);
  parallel_for(g.N * g.C, plane_grain(g), [&](int64_t begin, int64_t end) {
    std::vector<T> padded(padded_size, T(0));  // im2col keeps the border zero
    for (int64_t t = begin; t < end; ++t) {
      int64_t offset, row_stride;
      rows_of(g, t / g.C, t % g.C, &offset, &row_stride);
      f(t, offset, row_stride, padded.data());
    }
  });
}

template <typename T>
void im2col(const T* x, T* cols, const Conv2dGeometry& g) {
  const int64_t HW = g.H * g.W;
  for_each_plane<T>(g, [&](int64_t t, int64_t offset, int64_t row_stride, T* padded) {
    im2col_one(x + t * HW, padded, cols + offset, row_stride, g);
  });
}

template <typename T>
void col2im(const T* cols, T* x, const Conv2dGeometry& g) {
  const int64_t HW = g.H * g.W;
  for_each_plane<T>(g, [&](int64_t t, int64_t offset, int64_t row_stride, T* padded) {
    col2im_one(cols + offset, row_stride, padded, x + t * HW, g);
  });
}

// Positions [pq0, pq1) of one tap's row of one plane, into out[0, pq1 - pq0): a run of output rows
// p, each cut to the q range [q_lo, q_hi) whose input lies inside the plane (zeros elsewhere).
template <typename T>
static void tap_segment(const T* plane, T* out, const Conv2dGeometry& g, int64_t hoff, int64_t woff,
                        int64_t p_lo, int64_t p_hi, int64_t q_lo, int64_t q_hi, int64_t pq0,
                        int64_t pq1) {
  for (int64_t pq = pq0; pq < pq1;) {
    const int64_t p = pq / g.Q, qa = pq % g.Q, qb = std::min(g.Q, qa + (pq1 - pq));
    T* o = out + (pq - pq0) - qa;  // o[q] for q in [qa, qb)
    if (p < p_lo || p >= p_hi) {
      for (int64_t q = qa; q < qb; ++q) o[q] = T(0);
    } else {
      const T* in = plane + (p * g.sh + hoff) * g.W + woff;
      const int64_t lo = std::max(qa, q_lo), hi = std::max(lo, std::min(qb, q_hi));
      for (int64_t q = qa; q < std::min(qb, lo); ++q) o[q] = T(0);
      if (g.sw == 1) {
        for (int64_t q = lo; q < hi; ++q) o[q] = in[q];
      } else {
        for (int64_t q = lo; q < hi; ++q) o[q] = in[q * g.sw];
      }
      for (int64_t q = std::max(qa, hi); q < qb; ++q) o[q] = T(0);
    }
    pq += qb - qa;
  }
}

template <typename T>
static std::vector<T> scratch_plane(const Conv2dGeometry& g) {  // zeroed, for im2col_one
  return std::vector<T>(scratch_size(g), T(0));
}

template <typename T>
void im2col_panel(const T* x, T* panel, const Conv2dGeometry& g, int64_t c0, int64_t Cc, int64_t j0,
                  int64_t width) {
  const int64_t PQ = g.P * g.Q, RS = g.R * g.S;
  std::vector<T> padded = scratch_plane<T>(g);
  for (int64_t j = j0; j < j0 + width;) {  // one image's part of the panel at a time
    const int64_t n = j / PQ, pq0 = j % PQ, pq1 = std::min(PQ, pq0 + (j0 + width - j));
    for (int64_t c = 0; c < Cc; ++c) {
      const T* plane = x + (n * g.C + c0 + c) * g.H * g.W;
      T* rows = panel + c * RS * width + (j - j0);
      if (pq0 == 0 && pq1 == PQ) {  // a whole plane: im2col's own paths
        im2col_one(plane, padded.data(), rows, width, g);
        continue;
      }
      for_each_tap(g, [&](int64_t tap, int64_t hoff, int64_t woff, int64_t p_lo, int64_t p_hi,
                          int64_t q_lo, int64_t q_hi) {
        tap_segment(plane, rows + tap * width, g, hoff, woff, p_lo, p_hi, q_lo, q_hi, pq0, pq1);
      });
    }
    j += pq1 - pq0;
  }
}

template <typename T>
void col2im_panel(const T* panel, T* x, const Conv2dGeometry& g, int64_t c0, int64_t Cc, int64_t n0,
                  int64_t nn) {
  const int64_t PQ = g.P * g.Q, RS = g.R * g.S, width = nn * PQ;
  std::vector<T> padded = scratch_plane<T>(g);
  for (int64_t n = n0; n < n0 + nn; ++n)
    for (int64_t c = 0; c < Cc; ++c)
      col2im_one(panel + c * RS * width + (n - n0) * PQ, width, padded.data(),
                 x + (n * g.C + c0 + c) * g.H * g.W, g);
}

template void im2col<float>(const float*, float*, const Conv2dGeometry&);
template void im2col<double>(const double*, double*, const Conv2dGeometry&);
template void col2im<float>(const float*, float*, const Conv2dGeometry&);
template void col2im<double>(const double*, double*, const Conv2dGeometry&);
template void im2col_panel<float>(const float*, float*, const Conv2dGeometry&, int64_t, int64_t,
                                  int64_t, int64_t);
template void im2col_panel<double>(const double*, double*, const Conv2dGeometry&, int64_t, int64_t,
                                   int64_t, int64_t);
template void col2im_panel<float>(const float*, float*, const Conv2dGeometry&, int64_t, int64_t,
                                  int64_t, int64_t);
template void col2im_panel<double>(const double*, double*, const Conv2dGeometry&, int64_t, int64_t,
                                   int64_t, int64_t);

}  // namespace cpu
}  // namespace minicnn
