// The three implicit GEMMs of the tensor-core conv (conv2d_wmma.cu), written for a gather with no
// division in the main loop.
//
// Each operand element, A[m, d] or B[d, j], is split into a part that depends only on the tile's
// fixed index (the row m of A, the column j of B: a Part computed once per block and kept in a
// shared table) and a part that depends only on the reduction index d (a Part derived, once per
// slice, from the digits of d, which advance by the slice depth with carries and no division).
// The element is at byte address fixed.off + walk.off when both spatial checks of the summed
// (h, w) pass, else 0; an index past the end of its range gets kOut, which fails every check.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace minicnn {
namespace kernels {
namespace tc {

constexpr int kOut = -(1 << 30);  // h of a row, column or d past its end: never in range

struct alignas(16) Part {  // conv2d_wmma.cu loads it as an int4
  int64_t off;             // fixed parts: the byte address of base[offset]; walks: a byte offset
  int h, w;                // spatial coordinates (or 0 where the operand has none)
};

// d = (hi·M + mid)·L + lo, with mid < M and lo < L.
struct Digits {
  int64_t hi;
  int mid, lo;
};

__device__ __forceinline__ Digits split_digits(int64_t d, int M, int L) {
  const int64_t q = d / L;
  return Digits{q / M, int(q % M), int(d % L)};
}

// x += step (step's digits in range): one carry per digit at most.
__device__ __forceinline__ void advance(Digits& x, const Digits& step, int M, int L) {
  x.lo += step.lo;
  if (x.lo >= L) x.lo -= L, ++x.mid;
  x.mid += step.mid;
  if (x.mid >= M) x.mid -= M, ++x.hi;
  x.hi += step.hi;
}

__device__ __forceinline__ bool in(int i, int n) {
  return unsigned(i) < unsigned(n);
}

// The bits of a T (the gather moves elements as integers: a select on them is one instruction).
template <class T>
using Raw = typename std::conditional<sizeof(T) == 2, uint16_t, uint32_t>::type;

template <class T>
__device__ __forceinline__ Part fixed(const T* base, int64_t off, int h, int w) {
  return Part{int64_t(reinterpret_cast<uintptr_t>(base + off)), h, w};
}

template <class T>
__device__ __forceinline__ Part walk(int64_t off, int h, int w) {
  return Part{off * int64_t(sizeof(T)), h, w};
}

// The bits of the T at byte address addr if ok, else 0 (+0.0 in every T). On the GPU a
// predicated load: no branch, and no address is read when !ok.
template <class T>
__device__ __forceinline__ Raw<T> load_or_zero(int64_t addr, bool ok) {
  const Raw<T>* p = reinterpret_cast<const Raw<T>*>(uintptr_t(addr));
#ifdef __CUDA_ARCH__
  Raw<T> v;
  if constexpr (sizeof(T) == 2)
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n mov.b16 %0, 0;\n"
        " @p ld.global.nc.u16 %0, [%1];\n}\n"
        : "=h"(v)
        : "l"(p), "r"(int(ok)));
  else
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n mov.b32 %0, 0;\n"
        " @p ld.global.nc.u32 %0, [%1];\n}\n"
        : "=r"(v)
        : "l"(p), "r"(int(ok)));
  return v;
#else
  return ok ? *p : Raw<T>(0);
#endif
}

template <class T>
__device__ __forceinline__ Raw<T> gather(const Part& f, const Part& v, int H, int W) {
  return load_or_zero<T>(f.off + v.off, in(f.h + v.h, H) & in(f.w + v.w, W));
}

// Row m of an (N, plane) output: its image n and its index in the plane.
struct PlaneIndex {
  int64_t n;
  int i;
};

__device__ __forceinline__ PlaneIndex plane_index(int64_t m, int plane) {
  const int64_t n = m / plane;
  return PlaneIndex{n, int(m - n * plane)};
}

// Forward: rows (n, p, q), columns k, reduction (c, r, s); digits of d: (c, r, s).
// The geometry and group of a pass whose reduction runs over (channels, r, s): forward's
// (kData false: rows (n, p, q), columns k, channels c) and backward data's (rows (n, h, w),
// columns c, channels k). The digits of d below the channels: r and s.
template <bool kData>
struct OverRS {
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return kData ? g.N * g.H * g.W : g.N * g.P * g.Q; }
  __device__ int cols() const { return kData ? g.C / g.G : g.K / g.G; }
  __device__ int64_t depth() const { return int64_t(kData ? g.K / g.G : g.C / g.G) * g.R * g.S; }
  __device__ int radix_mid() const { return g.R; }
  __device__ int radix_lo() const { return g.S; }
};

template <class T>
struct Forward : OverRS<false> {
  T* out;
  const T *inp, *weight, *bias;
  __device__ Part a_fixed(int64_t m) const {
    if (m >= rows()) return fixed(inp, 0, kOut, 0);
    const PlaneIndex at = plane_index(m, g.P * g.Q);
    const int h = (at.i / g.Q) * g.sh - g.ph, w = (at.i % g.Q) * g.sw - g.pw;
    const int64_t image = (at.n * g.C + grp * (g.C / g.G)) * g.H * g.W;
    return fixed(inp, image + int64_t(h) * g.W + w, h, w);
  }
  __device__ Part a_walk(const Digits& x, bool valid) const {
    const int h = x.mid * g.dh, w = x.lo * g.dw;
    return walk<T>(x.hi * g.H * g.W + int64_t(h) * g.W + w, valid ? h : kOut, w);
  }
  __device__ Raw<T> a(const Part& f, const Part& v) const { return gather<T>(f, v, g.H, g.W); }
  __device__ Part b_fixed(int j) const {
    return fixed(weight, (int64_t(grp) * cols() + j) * depth(), j < cols() ? 0 : kOut, 0);
  }
  __device__ Part b_walk(const Digits& x, bool valid) const {
    return walk<T>((x.hi * g.R + x.mid) * g.S + x.lo, valid ? 0 : kOut, 0);
  }
  __device__ Raw<T> b(const Part& f, const Part& v) const { return gather<T>(f, v, 1, 1); }
  __device__ void store(int64_t m, int j, float v, int) const {
    const int k = grp * cols() + j;
    const PlaneIndex at = plane_index(m, g.P * g.Q);
    if (bias != nullptr) v += to_acc(bias[k]);
    out[(at.n * g.K + k) * g.P * g.Q + at.i] = from_acc<T>(v);
  }
};

// Backward data: rows (n, h, w), columns c, reduction (k, r, s); digits of d: (k, r, s).
// dx[n, c, h, w] takes dy[n, k, p, q] where h + ph - r·dh = p·sh (and likewise w): Unit (both
// strides 1) needs no division; otherwise one per element (p = th / sh).
template <class T, bool Unit>
struct BackwardData : OverRS<true> {
  T* dinp;
  const T *dout, *weight;
  __device__ Part a_fixed(int64_t m) const {
    if (m >= rows()) return fixed(dout, 0, kOut, 0);
    const PlaneIndex at = plane_index(m, g.H * g.W);
    const int64_t image = (at.n * g.K + grp * (g.K / g.G)) * g.P * g.Q;
    return fixed(dout, image, at.i / g.W + g.ph, at.i % g.W + g.pw);
  }
  __device__ Part a_walk(const Digits& x, bool valid) const {
    return walk<T>(x.hi * g.P * g.Q, valid ? -x.mid * g.dh : kOut, -x.lo * g.dw);
  }
  __device__ Raw<T> a(const Part& f, const Part& v) const {
    int p = f.h + v.h, q = f.w + v.w;  // th, tw
    bool ok = true;
    if constexpr (!Unit) {
      const unsigned up = unsigned(p), uq = unsigned(q), ph = up / g.sh, qw = uq / g.sw;
      ok = (p >= 0) & (q >= 0) & (ph * g.sh == up) & (qw * g.sw == uq);
      p = int(ph), q = int(qw);
    }
    ok = ok & in(p, g.P) & in(q, g.Q);
    return load_or_zero<T>(f.off + v.off + (int64_t(p) * g.Q + q) * int64_t(sizeof(T)), ok);
  }
  __device__ Part b_fixed(int j) const {
    const int64_t RS = g.R * g.S;
    return fixed(weight, (int64_t(grp) * (g.K / g.G) * cols() + j) * RS, j < cols() ? 0 : kOut, 0);
  }
  __device__ Part b_walk(const Digits& x, bool valid) const {
    return walk<T>(x.hi * cols() * g.R * g.S + x.mid * g.S + x.lo, valid ? 0 : kOut, 0);
  }
  __device__ Raw<T> b(const Part& f, const Part& v) const { return gather<T>(f, v, 1, 1); }
  __device__ void store(int64_t m, int j, float v, int) const {
    const PlaneIndex at = plane_index(m, g.H * g.W);
    dinp[(at.n * g.C + grp * cols() + j) * g.H * g.W + at.i] = from_acc<T>(v);
  }
};

// Backward weight: rows k, columns (c, r, s), reduction (n, p, q); digits of d: (n, p, q).
// Writes float32 partials (splits, K, Cg·R·S).
template <class T>
struct BackwardWeight {
  float* partial;
  const T *dout, *inp;
  Conv2d g;
  int grp;
  __device__ int64_t rows() const { return g.K / g.G; }
  __device__ int cols() const { return (g.C / g.G) * g.R * g.S; }
  __device__ int64_t depth() const { return g.N * g.P * g.Q; }
  __device__ int radix_mid() const { return g.P; }
  __device__ int radix_lo() const { return g.Q; }
  __device__ Part a_fixed(int64_t m) const {
    return fixed(dout, (grp * rows() + m) * g.P * g.Q, m < rows() ? 0 : kOut, 0);
  }
  __device__ Part a_walk(const Digits& x, bool valid) const {
    return walk<T>(x.hi * g.K * g.P * g.Q + int64_t(x.mid) * g.Q + x.lo, valid ? 0 : kOut, 0);
  }
  __device__ Raw<T> a(const Part& f, const Part& v) const { return gather<T>(f, v, 1, 1); }
  __device__ Part b_fixed(int j) const {  // (c, r, s)
    if (j >= cols()) return fixed(inp, 0, kOut, 0);
    const int RS = g.R * g.S, c = j / RS, r = (j - c * RS) / g.S, s = j - c * RS - r * g.S;
    const int h = r * g.dh, w = s * g.dw;
    return fixed(inp, int64_t(c) * g.H * g.W + int64_t(h) * g.W + w, h, w);
  }
  __device__ Part b_walk(const Digits& x, bool valid) const {  // (n, p, q)
    const int h = x.mid * g.sh - g.ph, w = x.lo * g.sw - g.pw;
    const int64_t base = (x.hi * g.C + grp * (g.C / g.G)) * g.H * g.W;
    return walk<T>(base + int64_t(h) * g.W + w, valid ? h : kOut, w);
  }
  __device__ Raw<T> b(const Part& f, const Part& v) const { return gather<T>(f, v, g.H, g.W); }
  __device__ void store(int64_t m, int j, float v, int split) const {
    partial[(int64_t(split) * g.K + grp * rows() + m) * cols() + j] = v;
  }
};

}  // namespace tc
}  // namespace kernels
}  // namespace minicnn
