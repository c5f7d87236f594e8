// The launchers of minicnn's CUDA kernels: what csrc/bindings.cpp calls.
//
// Plain C++: no CUDA header and no emulator, so bindings.cpp compiles with the host compiler into
// both extensions. The definitions live in the .cu files next to this header (launchers at the
// bottom of each), explicitly instantiated for float and double.
//
// Conventions (llm.c's): outputs first, then inputs; a `d` prefix for gradients; every pointer is
// device memory (host memory under the emulator), contiguous, with its shape written beside it.
// Launchers return as soon as the kernels are queued on `stream` (the emulator runs them before
// returning) and throw std::runtime_error naming the kernel when a launch fails.
//
// Letters, used everywhere: N batch, C channels, H x W input, P x Q output, R x S pooling window or
// convolution kernel, K output channels, G groups.
#pragma once

#include <cstdint>
#include <string>

#include "geometry.h"

// The CUDA runtime's stream handle, declared identically by cuda_runtime.h and csrc/emu/runtime.h.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
// The 16-bit float types of cuda_fp16.h / cuda_bf16.h (csrc/emu/half.h under the emulator): only
// pointers to them cross this header, so a declaration is enough.
struct __half;
struct __nv_bfloat16;

namespace minicnn {
namespace kernels {

// A Pool2dGeometry (geometry.h) as the pooling kernels take it, by value: narrowed to their index
// types by pool2d_check. Window (p, q) starts at input pixel (p*sh - ph, q*sw - pw); its offset
// (r, s) reads (p*sh - ph + r*dh, q*sw - pw + s*dw).
// The launchers are instantiated for T = float, double, __half and __nv_bfloat16. Every kernel
// computes in acc_t<T>: T itself for float and double, float for the 16-bit types (loads convert
// to float, stores round to nearest even once).
template <class T>
struct Acc {
  using type = T;
};
template <>
struct Acc<__half> {
  using type = float;
};
template <>
struct Acc<__nv_bfloat16> {
  using type = float;
};
template <class T>
using acc_t = typename Acc<T>::type;

struct Pool2d {
  int64_t N, C;  // batch, channels
  int H, W;      // input plane
  int P, Q;      // output plane
  int R, S;      // window
  int sh, sw;    // stride
  int ph, pw;    // padding (top/left; a ceil_mode window may also run past the bottom/right)
  int dh, dw;    // dilation (1 for average pooling)
};

// ---- relu.cu ------------------------------------------------------------------------------------
template <class T>
void relu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream);
template <class T>
void relu_backward(T* dinp, const T* dout, const T* out, int64_t n, cudaStream_t stream);

// ---- pool.cu ------------------------------------------------------------------------------------
// The kernels' Pool2d for g; throws std::invalid_argument when a size is negative, a window,
// stride or dilation < 1, or an extent does not fit an int. Every launcher below takes its result.
Pool2d pool2d_check(const Pool2dGeometry& g);
template <class T>
void max_pool2d_forward(T* out, int64_t* argmax, const T* inp, const Pool2d& g,
                        cudaStream_t stream);
// version 1: scatter with atomicAdd from the outputs; version 2: gather at the inputs (the default).
template <class T>
void max_pool2d_backward(T* dinp, const T* dout, const int64_t* argmax, const Pool2d& g,
                         int version, cudaStream_t stream);
// divisor_override: 0 for none (the window area, per count_include_pad).
template <class T>
void avg_pool2d_forward(T* out, const T* inp, const Pool2d& g, bool count_include_pad,
                        int64_t divisor_override, cudaStream_t stream);
template <class T>
void avg_pool2d_backward(T* dinp, const T* dout, const Pool2d& g, bool count_include_pad,
                         int64_t divisor_override, cudaStream_t stream);
// Adaptive pooling uses N, C, H, W, P, Q of the geometry only.
template <class T>
void adaptive_avg_pool2d_forward(T* out, const T* inp, const Pool2d& g, cudaStream_t stream);
template <class T>
void adaptive_avg_pool2d_backward(T* dinp, const T* dout, const Pool2d& g, cudaStream_t stream);

// ---- lrn.cu -------------------------------------------------------------------------------------
template <class T>
void local_response_norm_forward(T* out, T* scale, const T* inp, int64_t N, int C, int64_t HW,
                                 int size, double alpha, double beta, double k,
                                 cudaStream_t stream);
template <class T>
void local_response_norm_backward(T* dinp, const T* dout, const T* inp, const T* scale, int64_t N,
                                  int C, int64_t HW, int size, double alpha, double beta,
                                  cudaStream_t stream);

// ---- batchnorm.cu -------------------------------------------------------------------------------
// weight, bias, running_mean, running_var may be nullptr (1, 0, and no running-stat update).
// x, y, dy, dx are T; the (C,) vectors are acc_t<T> (float32 for float16 / bfloat16).
template <class T>
void batch_norm_forward_training(T* out, acc_t<T>* mean, acc_t<T>* invstd, acc_t<T>* running_mean,
                                 acc_t<T>* running_var, const T* inp, const acc_t<T>* weight,
                                 const acc_t<T>* bias, int64_t N, int C, int64_t HW,
                                 double momentum, double eps, cudaStream_t stream);
template <class T>
void batch_norm_forward_inference(T* out, acc_t<T>* mean, acc_t<T>* invstd, const T* inp,
                                  const acc_t<T>* weight, const acc_t<T>* bias,
                                  const acc_t<T>* running_mean, const acc_t<T>* running_var,
                                  int64_t N, int C, int64_t HW, double eps, cudaStream_t stream);
// training: dx through the batch statistics; else dx = dy * weight * invstd. Both give dweight, dbias.
template <class T>
void batch_norm_backward(T* dinp, acc_t<T>* dweight, acc_t<T>* dbias, const T* dout, const T* inp,
                         const acc_t<T>* weight, const acc_t<T>* mean, const acc_t<T>* invstd,
                         int64_t N, int C, int64_t HW, bool training, cudaStream_t stream);

// ---- conv2d.cu ----------------------------------------------------------------------------------
// A Conv2dGeometry (geometry.h) as the conv2d kernels take it, by value: 32-bit extents, narrowed
// and checked by conv2d_check. x (N, C, H, W), w (K, C/G, R, S), y (N, K, P, Q); output pixel
// (p, q) reads input pixels (p*sh - ph + r*dh, q*sw - pw + s*dw). See conv2d.cu for the GEMM each
// pass is.
struct Conv2d {
  int64_t N;    // batch
  int C, H, W;  // input channels and plane
  int K, P, Q;  // output channels and plane
  int R, S;     // kernel
  int sh, sw;   // stride
  int ph, pw;   // padding (symmetric)
  int dh, dw;   // dilation
  int G;        // groups
};
// The kernels' Conv2d for g; throws std::invalid_argument when g is inconsistent or its indices
// would not fit the kernels' index types or the grid. The one check of a call: every launcher
// below takes its result (csrc/bindings.cpp calls it once per binding call, before the launch).
Conv2d conv2d_check(const Conv2dGeometry& g);
// The three passes, as conv2d_splits names them.
enum ConvPass { kConvForward = 0, kConvBackwardData = 1, kConvBackwardWeight = 2 };
// version 1: naive, one thread per output element; 2: implicit GEMM; 3: the fast implicit GEMM
// (the default); 4: tensor cores (conv2d_wmma.cu: float32 in TF32, float16 / bfloat16's only).
// tile: 0 picks by shape, else 32, 64 or 128 (the GEMM block tile edge).
// splits: the reduction split in that many slices (version 3 every pass, version 2 backward
// weight), whose partials need a workspace of splits x (the output's size) elements.
template <class T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g,
                    int version, int tile, int splits, T* workspace, cudaStream_t stream);
template <class T>
void conv2d_backward_data(T* dinp, const T* dout, const T* weight, const Conv2d& g, int version,
                          int tile, int splits, T* workspace, cudaStream_t stream);
// How many slices to split a pass's reduction into, by shape (version 3: fill ~1.5-2 waves).
int conv2d_splits(const Conv2d& g, int pass, int version, int tile);
// Version 2's choice for backward weight.
int conv2d_backward_weight_splits(const Conv2d& g, int tile);
template <class T>
void conv2d_backward_weight(T* dweight, T* workspace, const T* dout, const T* inp, const Conv2d& g,
                            int version, int tile, int splits, cudaStream_t stream);
template <class T>
void conv2d_backward_bias(T* dbias, const T* dout, int64_t N, int K, int64_t PQ,
                          cudaStream_t stream);

// ---- conv2d_wmma.cu: version 4, on tensor cores -------------------------------------------------
// T = __half, __nv_bfloat16, or float (TF32); double throws. The conv2d_* launchers above call
// these for version 4 (float16 / bfloat16 have no other). Backward weight's workspace is float32
// (splits, K, C/G·R·S) for every T, reinterpreted. Throws std::invalid_argument when the GPU lacks
// the operation (bfloat16 and TF32 need sm_80), or splits > 1 in forward or backward data.
// Forward's and backward data's workspace (16-byte aligned, or nullptr): room for channels-last
// copies of both operands (conv2d_wmma_nhwc.cuh), used when their channels per group allow.
// Backward weight's, when K/G and C/G are multiples of 16 bytes: the partials, then room for
// channels-last dy and x (conv2d_wmma_nhwc_bw.cuh); minicnn/backends/_kernel_conv.py sizes both.
template <class T>
void conv2d_forward_wmma(T* out, const T* inp, const T* weight, const T* bias, const Conv2d& g,
                         int splits, cudaStream_t stream, T* workspace = nullptr);
template <class T>
void conv2d_backward_data_wmma(T* dinp, const T* dout, const T* weight, const Conv2d& g, int splits,
                               cudaStream_t stream, T* workspace = nullptr);
template <class T>
void conv2d_backward_weight_wmma(T* dweight, T* workspace, const T* dout, const T* inp,
                                 const Conv2d& g, int splits, cudaStream_t stream);
int conv2d_wmma_splits(const Conv2d& g, int pass);
int64_t conv2d_wmma_launches();       // tensor-core conv launches so far in this process (tests)
int64_t conv2d_wmma_nhwc_launches();  // those of them on the NHWC path (tests)

// ---- wmma_gemm.cu: D (M, N) = A (M, K) · B (K, N) + C on tensor cores (the wmma test) -----------
// T = __half, __nv_bfloat16, float (as tf32); C, D float32 row-major; c may be nullptr (C = 0).
template <class T>
void wmma_gemm(float* d, const T* a, const T* b, const float* c, int M, int N, int K,
               bool a_row_major, bool b_row_major, cudaStream_t stream);

// ---- cast.cu: float32 <-> T for T = __half, __nv_bfloat16 ---------------------------------------
template <class T>
void cast_to_float(float* out, const T* inp, int64_t n, cudaStream_t stream);
template <class T>
void cast_from_float(T* out, const float* inp, int64_t n, cudaStream_t stream);

// ---- selftest.cu: kernels that exist to test the error paths ------------------------------------
// Launches a kernel of `blocks` x `threads`; the thread (trap_block, trap_thread) calls __trap().
// trap_block < 0: nobody traps (so only the launch configuration is tested).
void selftest_trap(int blocks, int threads, int trap_block, int trap_thread, cudaStream_t stream);
// Every thread but `early` reaches a __syncthreads(); thread `early` returns before it.
void selftest_divergent_barrier(int threads, int early, cudaStream_t stream);

// ---- device.cu: what the extension runs on ------------------------------------------------------
struct DeviceInfo {
  bool usable;         // a device is there and this build can launch on it
  std::string reason;  // why not, when !usable
  std::string name;    // the device, e.g. "NVIDIA H100 80GB HBM3" or "CUDA emulator (CPU)"
  int major, minor;    // compute capability (0.0 for the emulator)
  int runtime_version,
      driver_version;  // CUDA versions as 1000*major + 10*minor (0 for the emulator)
};
DeviceInfo device_info();
void synchronize();  // wait for every queued kernel; throws if one faulted

// ---- random.cu: Philox4x32-10 and the dropout mask --------------------------------------------
// mask[i] = (Philox output i of key `seed`) >= threshold ? scale : 0 (threshold = ceil(p 2^32)).
template <class T>
void dropout_mask(T* mask, int64_t n, uint64_t threshold, double scale, uint64_t seed,
                  cudaStream_t stream);
// out (lanes, 4): the Philox4x32-10 outputs of counters offset .. offset + lanes - 1 (for tests).
void philox4x32_raw(uint32_t* out, int64_t lanes, uint64_t seed, uint64_t offset,
                    cudaStream_t stream);

// ---- optim.cu: fused optimizer updates, one launch per parameter group -------------------------
// The table: one row per tensor of (param, grad, buffer a, buffer b, buffer c, n, first chunk, 0).
constexpr int kOptimTableColumns = 8;
struct SgdScalars {
  double lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first_step;  // first_step: the momentum buffer (a) is set to the gradient
};
struct AdamScalars {
  double step_size;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  double beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  double decoupled_factor;  // 1 - lr * weight_decay (AdamW)
  bool decoupled, amsgrad;  // buffers: a exp_avg, b exp_avg_sq, c max_exp_avg_sq (amsgrad)
};
int64_t optim_chunk_size();  // elements per chunk; "first chunk" counts in these
// Copy table_host (host memory, tensors rows) to table (device) on the stream, then launch;
// table_host null: the table on the device is current already.
template <class T>
void sgd_update(int64_t* table, const int64_t* table_host, int tensors, int64_t chunks,
                SgdScalars s, cudaStream_t stream);
template <class T>
void adam_update(int64_t* table, const int64_t* table_host, int tensors, int64_t chunks,
                 AdamScalars s, cudaStream_t stream);

}  // namespace kernels
}  // namespace minicnn
