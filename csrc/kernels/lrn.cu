// Local response normalization across channels (AlexNet, Krizhevsky et al. 2012, section 3.3), in
// PyTorch's convention (alpha divided by the window size n = `size`).
//
//   forward:   s_c = k + (α/n) Σ_{j ∈ window(c)} x_j²,   y_c = x_c · s_c^-β
//              window(c) = [c - n/2, c + (n-1)/2] ∩ [0, C)          (integer division)
//   backward:  dx_i = dy_i · s_i^-β − (2αβ/n) · x_i · Σ_{c : i ∈ window(c)} dy_c · x_c · s_c^(-β-1)
//              {c : i ∈ window(c)} = [i - (n-1)/2, i + n/2] ∩ [0, C)  (the window mirrored)
//
// The forward returns s (`scale`) as well: the backward needs it, and recomputing it would cost the
// forward's whole window sum again.
//
// Versions:
//   1. one element (n, c, hw) per thread; the window is summed straight from global memory, in
//      ascending channel order (the same order as the cpu backend, and exact: no running sum that
//      adds and subtracts, which loses digits when one channel dwarfs the others). Threads of a warp
//      hold neighbouring pixels of one channel, so every load of the window coalesces. The backward
//      recomputes dy_c · x_c · s_c^(-β-1) for each window entry (n powers per element) rather than
//      storing it: one pass, no temporary.
//
// float16 / bfloat16: x, y, s, dy, dx in the 16-bit type, every sum and power in float.
//
// Buffers: x, y, s, dy, dx (N, C, HW), HW = H·W (the op flattens any trailing dimensions).
#include "common.cuh"

namespace minicnn {
namespace kernels {

// ---- kernels --------------------------------------------------------------------------------------
template <class T>
__global__ void local_response_norm_forward_kernel(T* out,        // (N, C, HW)
                                                   T* scale,      // (N, C, HW)
                                                   const T* inp,  // (N, C, HW)
                                                   int64_t N, int C, int64_t HW, int size,
                                                   acc_t<T> alpha_over_n, acc_t<T> beta,
                                                   acc_t<T> k) {
  using A = acc_t<T>;
  int64_t i = global_index();  // element (n, c, hw)
  if (i < N * C * HW) {
    int c = static_cast<int>((i / HW) % C);
    const T* column = inp + (i - c * HW);  // channel 0 of this (n, hw); channel j at column[j * HW]
    int first = max(c - size / 2, 0), last = min(c + (size - 1) / 2, C - 1);
    A sum = 0;
    for (int j = first; j <= last; ++j) {
      A v = to_acc(column[j * HW]);
      sum += v * v;
    }
    A s = k + alpha_over_n * sum;
    scale[i] = from_acc<T>(s);
    out[i] = from_acc<T>(to_acc(inp[i]) * power(s, -beta));
  }
}

template <class T>
__global__ void local_response_norm_backward_kernel(T* dinp,         // (N, C, HW)
                                                    const T* dout,   // (N, C, HW)
                                                    const T* inp,    // (N, C, HW)
                                                    const T* scale,  // (N, C, HW)
                                                    int64_t N, int C, int64_t HW, int size,
                                                    acc_t<T> two_alpha_beta_over_n, acc_t<T> beta) {
  using A = acc_t<T>;
  int64_t i = global_index();  // element (n, c, hw)
  if (i < N * C * HW) {
    int c = static_cast<int>((i / HW) % C);
    int64_t base = i - c * HW;  // channel 0 of this (n, hw)
    int first = max(c - (size - 1) / 2, 0), last = min(c + size / 2, C - 1);
    A sum = 0;
    for (int j = first; j <= last; ++j) {
      int64_t at = base + j * HW;
      sum += to_acc(dout[at]) * to_acc(inp[at]) * power(to_acc(scale[at]), -beta - A(1));
    }
    dinp[i] = from_acc<T>(to_acc(dout[i]) * power(to_acc(scale[i]), -beta) -
                          two_alpha_beta_over_n * to_acc(inp[i]) * sum);
  }
}

// ---- launchers ------------------------------------------------------------------------------------
template <class T>
void local_response_norm_forward(T* out, T* scale, const T* inp, int64_t N, int C, int64_t HW,
                                 int size, double alpha, double beta, double k,
                                 cudaStream_t stream) {
  int64_t n = N * C * HW;
  if (n == 0) return;
  LAUNCH((local_response_norm_forward_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(
      out, scale, inp, N, C, HW, size, acc_t<T>(alpha / size), acc_t<T>(beta), acc_t<T>(k));
  CHECK_LAUNCH("local_response_norm_forward_kernel");
}

template <class T>
void local_response_norm_backward(T* dinp, const T* dout, const T* inp, const T* scale, int64_t N,
                                  int C, int64_t HW, int size, double alpha, double beta,
                                  cudaStream_t stream) {
  int64_t n = N * C * HW;
  if (n == 0) return;
  LAUNCH((local_response_norm_backward_kernel<T>), blocks_for(n), kBlockSize, 0, stream)(
      dinp, dout, inp, scale, N, C, HW, size, acc_t<T>(2.0 * alpha * beta / size), acc_t<T>(beta));
  CHECK_LAUNCH("local_response_norm_backward_kernel");
}

#define INSTANTIATE(T)                                                                          \
  template void local_response_norm_forward<T>(T*, T*, const T*, int64_t, int, int64_t, int,    \
                                               double, double, double, cudaStream_t);           \
  template void local_response_norm_backward<T>(T*, const T*, const T*, const T*, int64_t, int, \
                                                int64_t, int, double, double, cudaStream_t);
MINICNN_FOR_EACH_DTYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
