// conv2d version 3: helpers and the three problems (forward, backward data, backward weight) that
// the version-3 GEMM kernel (conv2d_v3.cuh) runs. A problem says, for one thread, where its loads
// of A (one row) and B (one column) are for its reduction position, how that position advances by
// one slice, and where an output element goes. Its Block is what the grid's z index selects: group,
// split of the reduction and (backward data) output phase. The kernel counts the reduction steps
// `left` in the block's range from the thread's position (steps_left); fetch loads 0 past them.
#pragma once

#include <stdint.h>

#include "common.cuh"

namespace minicnn {
namespace kernels {
namespace v3 {

constexpr int kBK = 8, kThreads = 256, kPad = 4;

// ---- vector moves: V elements at 16-byte (or V·sizeof(T)) aligned addresses --------------------
template <int V>
__device__ __forceinline__ void copy_vec(float* r, const float* s) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(s);
    r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
  } else if constexpr (V == 2) {
    const float2 t = *reinterpret_cast<const float2*>(s);
    r[0] = t.x, r[1] = t.y;
  } else {
    r[0] = s[0];
  }
}
template <int V>
__device__ __forceinline__ void copy_vec(double* r, const double* s) {
  if constexpr (V >= 2) {
    for (int i = 0; i < V; i += 2) {
      const double2 t = *reinterpret_cast<const double2*>(s + i);
      r[i] = t.x, r[i + 1] = t.y;
    }
  } else {
    r[0] = s[0];
  }
}
template <int V>
__device__ __forceinline__ void ldg_vec(float* r, const float* g) {
  if constexpr (V == 4) {
    const float4 t = __ldg(reinterpret_cast<const float4*>(g));
    r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
  } else if constexpr (V == 2) {
    const float2 t = __ldg(reinterpret_cast<const float2*>(g));
    r[0] = t.x, r[1] = t.y;
  } else {
    r[0] = __ldg(g);
  }
}
template <int V>
__device__ __forceinline__ void ldg_vec(double* r, const double* g) {
  if constexpr (V >= 2) {
    for (int i = 0; i < V; i += 2) {
      const double2 t = __ldg(reinterpret_cast<const double2*>(g + i));
      r[i] = t.x, r[i + 1] = t.y;
    }
  } else {
    r[0] = __ldg(g);
  }
}

// r[l] = p[at + l·stride] for l < L where ok, else 0 (through the read-only cache).
template <int L, class T>
__device__ __forceinline__ void ldg_strided(T (&r)[L], const T* p, int at, int stride, bool ok) {
#pragma unroll
  for (int l = 0; l < L; ++l) r[l] = ok ? __ldg(p + (at + l * stride)) : T(0);
}

// Output rows (n, a, b) (decode_row, common.cuh) are decoded once per group of rows, then stepped.
__device__ __forceinline__ void step_row(RowPos& o, int A, int B) {
  if (++o.b == B) {
    o.b = 0;
    if (++o.a == A) o.a = 0, ++o.n;
  }
}

// The walk over filter taps and channels, reduction index d = (r S + s) Cc + c (Cc channels a tap,
// S taps a filter row), stepped by BK.
struct TapWalk {
  int c, r, s, Cc, S;
  __device__ void start(int64_t d, int channels, int taps_per_row) {
    Cc = channels, S = taps_per_row;
    const int di = int(d);  // d < Cc·R·S, an int (conv2d_check)
    const int rs = di / Cc;
    c = di - rs * Cc, r = rs / S, s = rs - r * S;
  }
  // The position `by` <= BK steps further.
  __device__ __forceinline__ void step(int by) {
    c += by;
    while (c >= Cc) {
      c -= Cc;
      if (++s == S) s = 0, ++r;
    }
  }
  __device__ __forceinline__ void advance() { step(kBK); }
  // The position `l` steps further (l < L): for the per-element path.
  __device__ __forceinline__ TapWalk plus(int l) const {
    TapWalk t = *this;
    t.step(l);
    return t;
  }
};

// What the grid's z index selects: the block's GEMM rows and columns, its output rows' extents
// (n, a, b), its reduction range, its group and where its output goes (group, split and phase
// folded in).
template <class T>
struct BlockBase {
  int64_t rows, d_begin, d_end;
  int cols, A, B, grp;
  T* dst;
  __device__ void range(int64_t chunk, int split, int64_t depth) {
    d_begin = split * chunk;
    d_end = d_begin + chunk < depth ? d_begin + chunk : depth;
  }
};

// The geometry and the per-group sizes every version-3 problem reads (set by conv_shape).
struct ConvShape {
  Conv2d g;
  int Cg, Kg, RS, HW, PQ;
};
inline ConvShape conv_shape(const Conv2d& g) {
  return {g, g.C / g.G, g.K / g.G, g.R * g.S, g.H * g.W, g.P * g.Q};
}

// Forward and backward data: their State's TapWalk `t` steps itself by one slice.
struct TapProblem : ConvShape {
  template <class State>
  __device__ __forceinline__ void advance(State& s) const {
    s.t.advance();
  }
};

// How many reduction steps are left from d: the walk's in-range test (launchers keep a split's
// chunk under 2^31).
__device__ __forceinline__ int steps_left(int64_t d, int64_t d_end) {
  return d < d_end ? int(d_end - d) : 0;
}
__device__ __forceinline__ bool inside(int i, int n) {
  return unsigned(i) < unsigned(n);
}

// ---- forward: out (N·P·Q x Kg) = im2col(x) (N·P·Q x R·S·Cg) · w^T, reduction d = (r S + s) Cg + c
template <class T_, int L, bool kLanes>
struct ForwardV3 : TapProblem {
  using T = T_;
  T* out;           // (N, K, P, Q), or (splits, N, K, P, Q) partials (bias then nullptr)
  const T* inp;     // (N, C, H, W)
  const T* weight;  // (K, Cg, R, S)
  const T* bias;    // (K,) or nullptr
  bool w_vec;       // 1x1 kernel with aligned weights: B is one vector load
  // kLanes: Cg % L == 0, a thread's L loads are L channels at one tap (else one by one)
  struct Block : BlockBase<T> {
    const T* bias;  // of the group, or nullptr
  };
  struct State {
    const T* x;  // this thread's A row: image n, channel grp·Cg
    int w;  // this thread's B column: the offset of output channel k's weights (K·Cg·R·S < 2^31)
    int h0, w0;
    TapWalk t;
  };
  __device__ Block block(unsigned z, int64_t chunk) const {
    Block b;
    const int grp = int(z % unsigned(g.G)), split = int(z / unsigned(g.G));
    b.grp = grp, b.rows = g.N * PQ, b.cols = Kg, b.A = g.P, b.B = g.Q;
    b.range(chunk, split, int64_t(RS) * Cg);
    b.dst = out + (int64_t(split) * g.N * g.K + int64_t(grp) * Kg) * PQ;
    b.bias = bias ? bias + grp * Kg : nullptr;
    return b;
  }
  __device__ State start(const Block& b, int64_t m, int64_t k, int64_t d) const {
    State s;
    const RowPos o = decode_row(m < b.rows ? m : 0, g.P, g.Q);
    s.x = inp + (o.n * g.C + int64_t(b.grp) * Cg) * HW;
    s.h0 = o.a * g.sh - g.ph, s.w0 = o.b * g.sw - g.pw;
    s.w = (b.grp * Kg + (k < b.cols ? int(k) : 0)) * Cg * RS;
    s.t.start(d, Cg, g.S);
    return s;
  }
  __device__ __forceinline__ void fetch(const State& s, int left, T (&ra)[L], T (&rb)[L]) const {
    if constexpr (kLanes) {
      const bool in = left > 0;  // all L or none: depth and d are multiples of L
      const int h = s.h0 + s.t.r * g.dh, w = s.w0 + s.t.s * g.dw;
      const bool a_ok = in && inside(h, g.H) && inside(w, g.W);
      // in one image: C·H·W < 2^31 (the launcher checks)
      ldg_strided(ra, s.x, s.t.c * HW + h * g.W + w, HW, a_ok);
      const T* pw = weight + (s.w + s.t.c * RS + s.t.r * g.S + s.t.s);
      if (w_vec && in)
        ldg_vec<L>(rb, pw);
      else
        ldg_strided(rb, pw, 0, RS, in);
    } else {
#pragma unroll
      for (int l = 0; l < L; ++l) {  // channels not a multiple of L (the RGB stem): one by one
        const TapWalk t = s.t.plus(l);
        const bool in = l < left;
        const int h = s.h0 + t.r * g.dh, w = s.w0 + t.s * g.dw;
        const bool a_ok = in && inside(h, g.H) && inside(w, g.W);
        ra[l] = a_ok ? __ldg(s.x + (t.c * HW + h * g.W + w)) : T(0);
        rb[l] = in ? __ldg(weight + (s.w + t.c * RS + t.r * g.S + t.s)) : T(0);
      }
    }
  }
  __device__ __forceinline__ void store(const Block& b, const RowPos& o, int k, T v) const {
    b.dst[(o.n * g.K + k) * PQ + o.a * g.Q + o.b] = b.bias ? v + b.bias[k] : v;
  }
};

// The filter taps r in [0, R) that reach output phase hr of a strided convolution: those with
// hr + pad - r·dil ≡ 0 (mod stride). They are r0 + t·step for t < count (step = stride / gcd(dil,
// stride), the same for every phase), and for phase row i tap t reads output row i + p0 - t·pstep
// (pstep = step·dil / stride; exact divisions).
struct PhaseTaps {
  int r0, count, p0;
  __device__ void find(int hr, int pad, int dil, int stride, int R, int step) {
    r0 = 0;
    while (r0 < R && (hr + pad - r0 * dil) % stride != 0) ++r0;
    count = r0 < R ? (R - 1 - r0) / step + 1 : 0;
    p0 = (hr + pad - r0 * dil) / stride;
  }
};

// ---- backward data, one output phase (hr, wr) = (h mod sh, w mod sw) per block:
//   dx[n, c, hr + sh i, wr + sw j] = Σ_{tr, ts, k} dout[n, k, i + p0 - tr pstep, j + q0 - ts qstep]
//                                                  · w[k, c, r0 + tr rstep, s0 + ts sstep]
// rows (n, i, j), columns c, reduction d = (tr Sv + ts) Kg + k over the phase's taps only (Sv:
// its column taps).
template <class T_, int L, bool kLanes>
struct BackwardDataV3 : TapProblem {
  using T = T_;
  T* dinp;                         // (N, C, H, W), or (splits, N, C, H, W) partials
  const T* dout;                   // (N, K, P, Q)
  const T* weight;                 // (K, Cg, R, S)
  int rstep, sstep, pstep, qstep;  // taps of a phase: r0 + t·rstep; dout rows: p0 - t·pstep
  int CgRS;
  // kLanes: Kg % L == 0 (else one by one)
  struct Block : BlockBase<T> {
    PhaseTaps tr, ts;
  };
  struct State {
    const T* dy;  // dout[n, grp·Kg]
    int w;        // the offset of weight[grp·Kg, c, r0, s0] (K·Cg·R·S < 2^31)
    int pi, qj;   // the dout pixel of tap (0, 0): (i + p0, j + q0)
    TapWalk t;    // (c, r, s) = (k, tr, ts), S = the phase's column taps
  };
  __device__ Block block(unsigned z, int64_t chunk) const {
    Block b;
    const unsigned phases = unsigned(g.sh) * unsigned(g.sw), rest = z / unsigned(g.G);
    const int phase = int(rest % phases), grp = int(z % unsigned(g.G)), split = int(rest / phases);
    const int hr = phase / g.sw, wr = phase % g.sw;
    b.A = (g.H - hr + g.sh - 1) / g.sh, b.B = (g.W - wr + g.sw - 1) / g.sw;
    b.tr.find(hr, g.ph, g.dh, g.sh, g.R, rstep);
    b.ts.find(wr, g.pw, g.dw, g.sw, g.S, sstep);
    b.grp = grp, b.rows = g.N * b.A * b.B, b.cols = Cg;
    b.range(chunk, split, int64_t(b.tr.count) * b.ts.count * Kg);
    b.dst = dinp + (int64_t(split) * g.N * g.C + int64_t(grp) * Cg) * HW + hr * g.W + wr;
    return b;
  }
  __device__ State start(const Block& b, int64_t m, int64_t c, int64_t d) const {
    State s;
    const RowPos o = decode_row(m < b.rows ? m : 0, b.A, b.B);
    s.dy = dout + (o.n * g.K + int64_t(b.grp) * Kg) * PQ;
    s.pi = o.a + b.tr.p0, s.qj = o.b + b.ts.p0;
    s.w = (b.grp * Kg * Cg + (c < b.cols ? int(c) : 0)) * RS + b.tr.r0 * g.S + b.ts.r0;
    s.t.start(d, Kg, b.ts.count > 0 ? b.ts.count : 1);
    return s;
  }
  __device__ __forceinline__ void fetch(const State& s, int left, T (&ra)[L], T (&rb)[L]) const {
    if constexpr (kLanes) {
      const bool in = left > 0;
      const int p = s.pi - s.t.r * pstep, q = s.qj - s.t.s * qstep;
      const bool a_ok = in && inside(p, g.P) && inside(q, g.Q);
      // in one image: K·P·Q < 2^31 (the launcher checks); weights: K·Cg·R·S < 2^31
      ldg_strided(ra, s.dy, s.t.c * PQ + p * g.Q + q, PQ, a_ok);
      const int wt = s.t.c * CgRS + s.t.r * rstep * g.S + s.t.s * sstep;
      ldg_strided(rb, weight, s.w + wt, CgRS, in);
    } else {
#pragma unroll
      for (int l = 0; l < L; ++l) {  // Kg not a multiple of L: one by one
        const TapWalk t = s.t.plus(l);
        const bool in = l < left;
        const int p = s.pi - t.r * pstep, q = s.qj - t.s * qstep;
        const bool a_ok = in && inside(p, g.P) && inside(q, g.Q);
        ra[l] = a_ok ? __ldg(s.dy + (t.c * PQ + p * g.Q + q)) : T(0);
        const int at = t.c * CgRS + t.r * rstep * g.S + t.s * sstep;
        rb[l] = in ? __ldg(weight + (s.w + at)) : T(0);
      }
    }
  }
  __device__ __forceinline__ void store(const Block& b, const RowPos& o, int c, T v) const {
    b.dst[(o.n * g.C + c) * HW + o.a * g.sh * g.W + o.b * g.sw] = v;
  }
};

// The walk over output pixels, reduction index d = n·P·Q + p·Q + q, stepped by BK; dy and x follow
// image n.
template <class T>
struct PixelWalk {
  const T* dy;
  const T* x;
  int p, q;
  __device__ __forceinline__ void advance(int by, const Conv2d& g, int64_t dy_image,
                                          int64_t x_image) {
    q += by;
    while (q >= g.Q) {
      q -= g.Q;
      if (++p == g.P) p = 0, dy += dy_image, x += x_image;
    }
  }
};

// ---- backward weight: dw (Kg x Cg·R·S) = dout (Kg x N·P·Q) · im2col(x) (N·P·Q x Cg·R·S)
template <class T_, int L, bool kLanes>
struct BackwardWeightV3 : ConvShape {
  using T = T_;
  T* partial;                 // (splits, K, Cg, R, S): dw itself when splits == 1
  const T* dout;              // (N, K, P, Q)
  const T* inp;               // (N, C, H, W)
  int64_t dy_image, x_image;  // K·P·Q and C·H·W: from one image to the next
  bool dy_vec;                // kLanes and dout aligned: one vector load
  // kLanes: Q % L == 0, a thread's L pixels lie in one row of one image (else one by one)
  using Block = BlockBase<T>;
  struct State {
    PixelWalk<T> t;  // dy = dout[n, grp·Kg + k], x = x[n, grp·Cg + c]
    int h0, w0;
  };
  __device__ Block block(unsigned z, int64_t chunk) const {
    Block b;
    const int grp = int(z % unsigned(g.G)), split = int(z / unsigned(g.G));
    b.grp = grp, b.rows = Kg, b.cols = Cg * RS, b.A = 1, b.B = Kg;
    b.range(chunk, split, g.N * PQ);
    b.dst = partial + (int64_t(split) * g.K + int64_t(grp) * Kg) * Cg * RS;
    return b;
  }
  __device__ State start(const Block& b, int64_t k, int64_t j, int64_t d) const {
    State s;
    const int jj = j < b.cols ? int(j) : 0, c = jj / RS, rs = jj - c * RS, r = rs / g.S;
    s.h0 = r * g.dh - g.ph, s.w0 = (rs - r * g.S) * g.dw - g.pw;
    const int64_t n = d / PQ;  // once per thread
    const int pq = int(d - n * PQ);
    s.t.p = pq / g.Q, s.t.q = pq - s.t.p * g.Q;
    s.t.dy = dout + (n * g.K + int64_t(b.grp) * Kg + (k < b.rows ? k : 0)) * PQ;
    s.t.x = inp + (n * g.C + int64_t(b.grp) * Cg + c) * HW;
    return s;
  }
  __device__ __forceinline__ void advance(State& s) const {
    s.t.advance(kBK, g, dy_image, x_image);
  }
  __device__ __forceinline__ void fetch(const State& s, int left, T (&ra)[L], T (&rb)[L]) const {
    if constexpr (kLanes) {      // Q % L == 0: the L pixels lie in one row of one image
      const bool in = left > 0;  // all L or none: P·Q and d are multiples of L
      const T* pa = s.t.dy + s.t.p * g.Q + s.t.q;
      const bool a_ok = in;
      if (dy_vec && a_ok) {
        ldg_vec<L>(ra, pa);
      } else {
#pragma unroll
        for (int l = 0; l < L; ++l) ra[l] = a_ok ? __ldg(pa + l) : T(0);
      }
      const int h = s.t.p * g.sh + s.h0, w = s.t.q * g.sw + s.w0;
      const bool row = in && inside(h, g.H);
      const T* px = s.t.x + h * g.W + w;
      const bool vec = L > 1 && g.sw == 1 && row && w >= 0 && w + L <= g.W &&
                       uintptr_t(px) % (L * sizeof(T)) == 0;
      if (vec) {
        ldg_vec<L>(rb, px);
      } else {
#pragma unroll
        for (int l = 0; l < L; ++l)
          rb[l] = row && inside(w + l * g.sw, g.W) ? __ldg(px + l * g.sw) : T(0);
      }
    } else {  // across rows and images: pixel by pixel
      PixelWalk<T> t = s.t;
#pragma unroll
      for (int l = 0; l < L; ++l) {
        if (l > 0) t.advance(1, g, dy_image, x_image);
        const bool in = l < left;
        ra[l] = in ? __ldg(t.dy + t.p * g.Q + t.q) : T(0);
        const int h = t.p * g.sh + s.h0, w = t.q * g.sw + s.w0;
        rb[l] = in && inside(h, g.H) && inside(w, g.W) ? __ldg(t.x + h * g.W + w) : T(0);
      }
    }
  }
  __device__ __forceinline__ void store(const Block& b, const RowPos& o, int j, T v) const {
    b.dst[int64_t(o.b) * Cg * RS + j] = v;
  }
};

}  // namespace v3
}  // namespace kernels
}  // namespace minicnn
