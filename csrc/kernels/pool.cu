// Pooling over (N, C, H, W): max (with argmax), average, adaptive average; forward and backward.
//
// Window (p, q) of an output plane starts at input pixel (h_start, w_start) = (p*sh - ph, q*sw - pw)
// and its offset (r, s) reads pixel (h_start + r*dh, w_start + s*dw); pixels outside the input are
// padding (-inf for max, 0 for average). P and Q come from minicnn/ops/pool.py (ceil_mode included:
// a last window may run past the padded border).
//
//   max:       y[p, q] = max over the window,  argmax[p, q] = h*W + w of the first maximum in
//              row-major window order (a NaN wins; the last NaN of a window); a window holding no
//              input pixel gives -inf and the index (h0*W + w0) of its first in-plane position
//              h0 = h_start + dh*ceil(-h_start/dh) (w0 alike), as PyTorch.
//              dx[argmax[p, q]] += dy[p, q], except from windows holding no input pixel.
//   average:   y[p, q] = Σ_window x / D[p, q], D = divisor_override, or the window area clipped to
//              [-ph, H + ph) x [-pw, W + pw) (count_include_pad) or to the input (not);
//              dx[h, w] = Σ over the windows (p, q) that read (h, w) of dy[p, q] / D[p, q].
//   adaptive:  bin p covers rows [floor(p*H/P), ceil((p+1)*H/P)) (columns alike); y = the bin's
//              mean; dx[h, w] = Σ over the bins (p, q) holding (h, w) of dy[p, q] / area(p, q).
//
// Versions:
//   forward kernels: one output pixel per thread, the window read straight from global memory
//     (windows are small; neighbouring threads read neighbouring pixels, so loads coalesce).
//   max_pool2d_backward
//     1. scatter: one thread per output pixel adds dy to dx[argmax] with atomicAdd (dx zeroed
//        first). Overlapping windows (AlexNet's 3x3, stride 2) make threads collide, and the sum
//        order, hence the float rounding, changes from run to run.
//     2. gather: one thread per input pixel visits the windows that can read it (at most
//        ceil(R/sh) * ceil(S/sw) of them) and sums dy of those whose argmax is this pixel. No
//        atomics, no memset, deterministic. The default.
//   avg and adaptive backward: gather, one thread per input pixel, as max version 2.
//
// float16 / bfloat16: x, y, dy, dx in the 16-bit type; comparisons, sums and divisions in float.
//
// Buffers: x, dx (N, C, H, W); y, dy, argmax (N, C, P, Q); argmax is int64, an index into the
// (H, W) plane (PyTorch's `indices`).
#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- helpers --------------------------------------------------------------------------------------
// First coordinate >= 0 that a window starting at `start` reads with dilation `dil` (may be past
// the input's end: then the window reads no pixel along this axis).
__device__ __forceinline__ int first_inside(int start, int dil) {
  return start >= 0 ? start : start + ((-start + dil - 1) / dil) * dil;
}

// Number of positions a window [start, start + R) counts along one axis (ceil_mode windows may run
// past the padded end n + pad).
__device__ __forceinline__ int window_count(int start, int R, int n, int pad,
                                            bool count_include_pad) {
  int end = min(start + R, n + pad);
  if (!count_include_pad) {
    start = max(start, 0);
    end = min(end, n);
  }
  return end - start;
}

// Calls f(i, p, q, nc) for this thread's output pixel i = (n, c, p, q) of g, if it has one
// (nc = n·C + c, the index of its plane).
template <class F>
__device__ __forceinline__ void at_output_pixel(const Pool2d& g, F f) {
  const int64_t i = global_index();
  if (i < g.N * g.C * g.P * g.Q)
    f(i, int((i / g.Q) % g.P), int(i % g.Q), i / (static_cast<int64_t>(g.P) * g.Q));
}
// Calls f(i, h, w, nc) for this thread's input pixel i = (n, c, h, w) of g, if it has one.
template <class F>
__device__ __forceinline__ void at_input_pixel(const Pool2d& g, F f) {
  const int64_t i = global_index();
  if (i < g.N * g.C * g.H * g.W)
    f(i, int((i / g.W) % g.H), int(i % g.W), i / (static_cast<int64_t>(g.H) * g.W));
}

// The gather backward (max version 2, average), one thread per input pixel i = (n, c, h, w):
// dx[i] = Σ over the windows (p, q) that read (h, w) with dilation (dh, dw) of
// term(j, p, q, pixel), j the index of dy[n, c, p, q] and pixel = h·W + w; summed in acc_t<T>.
template <class T, class F>
__device__ __forceinline__ void gather_windows(T* dinp, const Pool2d& g, int dh, int dw, F term) {
  at_input_pixel(g, [&](int64_t i, int h, int w, int64_t nc) {
    const int64_t plane = nc * g.P * g.Q;  // start of the (P, Q) plane
    const int64_t pixel = static_cast<int64_t>(h) * g.W + w;
    acc_t<T> sum = 0;
    for_windows_reading(g, h, w, dh, dw, [&](int, int, int p, int q) {
      sum += term(plane + p * g.Q + q, p, q, pixel);
    });
    dinp[i] = from_acc<T>(sum);
  });
}

// ---- max pooling ----------------------------------------------------------------------------------
template <class T>
__global__ void max_pool2d_forward_kernel(T* out,           // (N, C, P, Q)
                                          int64_t* argmax,  // (N, C, P, Q)
                                          const T* inp,     // (N, C, H, W)
                                          Pool2d g) {
  at_output_pixel(g, [&](int64_t i, int p, int q, int64_t nc) {
    const T* plane = inp + nc * g.H * g.W;  // (H, W)
    const int h_start = p * g.sh - g.ph, w_start = q * g.sw - g.pw;
    acc_t<T> best = -INFINITY;
    int64_t best_index =
        static_cast<int64_t>(first_inside(h_start, g.dh)) * g.W + first_inside(w_start, g.dw);
    for_window(g, p, q, g.dh, g.dw, [&](int, int, int h, int w) {
      const acc_t<T> v = to_acc(plane[h * g.W + w]);
      if (v > best || is_nan(v)) {
        best = v;
        best_index = h * g.W + w;
      }
    });
    out[i] = from_acc<T>(best);
    argmax[i] = best_index;
  });
}

// version 1: scatter. dinp must be zeroed.
template <class T>
__global__ void max_pool2d_backward_scatter_kernel(T* dinp,                // (N, C, H, W)
                                                   const T* dout,          // (N, C, P, Q)
                                                   const int64_t* argmax,  // (N, C, P, Q)
                                                   Pool2d g) {
  at_output_pixel(g, [&](int64_t i, int p, int q, int64_t nc) {
    bool reads_input =
        first_inside(p * g.sh - g.ph, g.dh) < g.H && first_inside(q * g.sw - g.pw, g.dw) < g.W;
    int64_t a = argmax[i];
    if (reads_input && a >= 0 && a < static_cast<int64_t>(g.H) * g.W) {
      int64_t plane = nc;
      atomicAdd(&dinp[plane * g.H * g.W + a], dout[i]);
    }
  });
}

// version 2: gather.
template <class T>
__global__ void max_pool2d_backward_gather_kernel(T* dinp,                // (N, C, H, W)
                                                  const T* dout,          // (N, C, P, Q)
                                                  const int64_t* argmax,  // (N, C, P, Q)
                                                  Pool2d g) {
  gather_windows(dinp, g, g.dh, g.dw, [&](int64_t j, int, int, int64_t pixel) {
    return argmax[j] == pixel ? to_acc(dout[j]) : acc_t<T>(0);
  });
}

// ---- average pooling ------------------------------------------------------------------------------
// D[p, q], the divisor of window (p, q): divisor_override when nonzero, else the product of the
// window's position counts along each axis (window_count), in the arithmetic type A.
struct AvgDivisor {
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
  template <class A>
  __device__ __forceinline__ A at(const Pool2d& g, int p, int q) const {
    if (divisor_override != 0) return A(divisor_override);
    return A(window_count(p * g.sh - g.ph, g.R, g.H, g.ph, count_include_pad)) *
           A(window_count(q * g.sw - g.pw, g.S, g.W, g.pw, count_include_pad));
  }
};

template <class T>
__global__ void avg_pool2d_forward_kernel(T* out,        // (N, C, P, Q)
                                          const T* inp,  // (N, C, H, W)
                                          Pool2d g, AvgDivisor divisor) {
  at_output_pixel(g, [&](int64_t i, int p, int q, int64_t nc) {
    const T* plane = inp + nc * g.H * g.W;  // (H, W)
    acc_t<T> sum = 0;                       // no dilation: a window is R x S adjacent pixels
    for_window(g, p, q, 1, 1, [&](int, int, int h, int w) { sum += to_acc(plane[h * g.W + w]); });
    out[i] = from_acc<T>(sum / divisor.at<acc_t<T>>(g, p, q));
  });
}

template <class T>
__global__ void avg_pool2d_backward_kernel(T* dinp,        // (N, C, H, W)
                                           const T* dout,  // (N, C, P, Q)
                                           Pool2d g, AvgDivisor divisor) {
  gather_windows(dinp, g, 1, 1, [&](int64_t j, int p, int q, int64_t) {
    return to_acc(dout[j]) / divisor.at<acc_t<T>>(g, p, q);
  });
}

// ---- adaptive average pooling ---------------------------------------------------------------------
__device__ __forceinline__ int bin_start(int p, int n, int P) {
  return static_cast<int>((static_cast<int64_t>(p) * n) / P);
}
__device__ __forceinline__ int bin_end(int p, int n, int P) {
  return static_cast<int>(((static_cast<int64_t>(p) + 1) * n + P - 1) / P);
}
// Bin p of P over [0, n): [bin_start, bin_end) as (x, y).
__device__ __forceinline__ int2 bin(int p, int n, int P) {
  return make_int2(bin_start(p, n, P), bin_end(p, n, P));
}
// The input pixels output pixel (p, q) averages: rows [h.x, h.y) x columns [w.x, w.y).
struct Bin {
  int2 h, w;
  __device__ bool holds(int row, int col) const {
    return row >= h.x && row < h.y && col >= w.x && col < w.y;
  }
  template <class A>
  __device__ A area() const {
    return A(h.y - h.x) * A(w.y - w.x);
  }
  // The mean of an (H, W) plane of width W over the bin, summed in acc_t<T>.
  template <class T>
  __device__ acc_t<T> mean(const T* plane, int W) const {
    acc_t<T> sum = 0;
    for (int row = h.x; row < h.y; ++row)
      for (int col = w.x; col < w.y; ++col) sum += to_acc(plane[row * W + col]);
    return sum / area<acc_t<T>>();
  }
};
__device__ __forceinline__ Bin adaptive_bin(const Pool2d& g, int p, int q) {
  return {bin(p, g.H, g.P), bin(q, g.W, g.Q)};
}

template <class T>
__global__ void adaptive_avg_pool2d_forward_kernel(T* out,        // (N, C, P, Q)
                                                   const T* inp,  // (N, C, H, W)
                                                   Pool2d g) {
  at_output_pixel(g, [&](int64_t i, int p, int q, int64_t nc) {
    out[i] = from_acc<T>(adaptive_bin(g, p, q).mean(inp + nc * g.H * g.W, g.W));
  });
}

template <class T>
__global__ void adaptive_avg_pool2d_backward_kernel(T* dinp,        // (N, C, H, W)
                                                    const T* dout,  // (N, C, P, Q)
                                                    Pool2d g) {
  at_input_pixel(g, [&](int64_t i, int h, int w, int64_t nc) {
    const T* dplane = dout + nc * g.P * g.Q;  // (P, Q)
    // The bins holding row h are p in [floor(h*P/H), ceil((h+1)*P/H)) (columns alike).
    const int2 pb = bin(h, g.P, g.H), qb = bin(w, g.Q, g.W);
    acc_t<T> sum = 0;
    for (int p = pb.x; p < pb.y; ++p)
      for (int q = qb.x; q < qb.y; ++q) {
        const Bin b = adaptive_bin(g, p, q);
        if (b.holds(h, w)) sum += to_acc(dplane[p * g.Q + q]) / b.area<acc_t<T>>();
      }
    dinp[i] = from_acc<T>(sum);
  });
}

// ---- launchers ------------------------------------------------------------------------------------
Pool2d pool2d_check(const Pool2dGeometry& g) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("pool2d: " + what); };
  if (g.N < 0 || g.C < 0 || g.H < 0 || g.W < 0 || g.P < 0 || g.Q < 0 || g.ph < 0 || g.pw < 0)
    fail("sizes and padding must be >= 0");
  if (g.R < 1 || g.S < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    fail("window, stride and dilation must be >= 1");
  for (int64_t v : {g.H, g.W, g.P, g.Q, g.R, g.S, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw})
    if (v > INT32_MAX)
      fail("an extent of " + std::to_string(v) + " does not fit a 32-bit int (must be < 2^31)");
  const int64_t plane = std::max(g.H * g.W, g.P * g.Q);
  if (plane > 0 && g.C > 0 && g.N > INT64_MAX / plane / g.C) fail("2^63 elements or more");
  return Pool2d{g.N,      g.C,       int(g.H),  int(g.W),  int(g.P),  int(g.Q),  int(g.R),
                int(g.S), int(g.sh), int(g.sw), int(g.ph), int(g.pw), int(g.dh), int(g.dw)};
}

inline int64_t output_pixels(const Pool2d& g) {
  return g.N * g.C * g.P * g.Q;
}
inline int64_t input_pixels(const Pool2d& g) {
  return g.N * g.C * g.H * g.W;
}

template <class T>
void max_pool2d_forward(T* out, int64_t* argmax, const T* inp, const Pool2d& g,
                        cudaStream_t stream) {
  LAUNCH_1D((max_pool2d_forward_kernel<T>), output_pixels(g), stream, out, argmax, inp, g);
}

template <class T>
void max_pool2d_backward(T* dinp, const T* dout, const int64_t* argmax, const Pool2d& g,
                         int version, cudaStream_t stream) {
  int64_t n = input_pixels(g);
  if (version == 2) {
    LAUNCH_1D((max_pool2d_backward_gather_kernel<T>), n, stream, dinp, dout, argmax, g);
  } else if (version != 1) {
    throw std::invalid_argument(
        "max_pool2d_backward: version must be 1 (scatter) or 2 (gather), got " +
        std::to_string(version));
  } else if constexpr (is_half_type<T>()) {
    throw std::invalid_argument(
        "max_pool2d_backward: version 1 (atomic scatter) takes float32 or float64; use version "
        "2 for float16 / bfloat16");
  } else if (n > 0) {
    CUDA_CHECK(cudaMemsetAsync(dinp, 0, n * sizeof(T), stream));
    LAUNCH_1D((max_pool2d_backward_scatter_kernel<T>), output_pixels(g), stream, dinp, dout, argmax,
              g);
  }
}

template <class T>
void avg_pool2d_forward(T* out, const T* inp, const Pool2d& g, bool count_include_pad,
                        int64_t divisor_override, cudaStream_t stream) {
  LAUNCH_1D((avg_pool2d_forward_kernel<T>), output_pixels(g), stream, out, inp, g,
            AvgDivisor{count_include_pad, divisor_override});
}

template <class T>
void avg_pool2d_backward(T* dinp, const T* dout, const Pool2d& g, bool count_include_pad,
                         int64_t divisor_override, cudaStream_t stream) {
  LAUNCH_1D((avg_pool2d_backward_kernel<T>), input_pixels(g), stream, dinp, dout, g,
            AvgDivisor{count_include_pad, divisor_override});
}

template <class T>
void adaptive_avg_pool2d_forward(T* out, const T* inp, const Pool2d& g, cudaStream_t stream) {
  LAUNCH_1D((adaptive_avg_pool2d_forward_kernel<T>), output_pixels(g), stream, out, inp, g);
}

template <class T>
void adaptive_avg_pool2d_backward(T* dinp, const T* dout, const Pool2d& g, cudaStream_t stream) {
  LAUNCH_1D((adaptive_avg_pool2d_backward_kernel<T>), input_pixels(g), stream, dinp, dout, g);
}

#define INSTANTIATE(T)                                                                            \
  template void max_pool2d_forward<T>(T*, int64_t*, const T*, const Pool2d&, cudaStream_t);       \
  template void max_pool2d_backward<T>(T*, const T*, const int64_t*, const Pool2d&, int,          \
                                       cudaStream_t);                                             \
  template void avg_pool2d_forward<T>(T*, const T*, const Pool2d&, bool, int64_t, cudaStream_t);  \
  template void avg_pool2d_backward<T>(T*, const T*, const Pool2d&, bool, int64_t, cudaStream_t); \
  template void adaptive_avg_pool2d_forward<T>(T*, const T*, const Pool2d&, cudaStream_t);        \
  template void adaptive_avg_pool2d_backward<T>(T*, const T*, const Pool2d&, cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
