// Optimizer updates, fused: one launch updates every tensor of a parameter group.
//
//   SGD (torch.optim.SGD):   g <- g + wd p;  b <- g (first step) or mu b + (1 - d) g;
//                            g <- g + mu b (nesterov) or b;  p <- p - lr g
//   Adam / AdamW:            g <- g + wd p (Adam)  or  p <- p (1 - lr wd) (AdamW);
//                            m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g g;
//                            v^ <- max(v^, v) (amsgrad) or v;
//                            p <- p - step_size m / (sqrt(v^) / sqrt(1 - b2^t) + eps),
//                            step_size = lr / (1 - b1^t)
//
// minicnn/optim/sgd.py and adam.py state the math; each operation here is the one NumPy does
// there, in the same order, with the scalars rounded to T as NumPy rounds a Python float.
//
// Multi-tensor apply: the tensors of a group are described by a table in device memory, one row
// of kTableColumns int64 per tensor:
//
//   (param, grad, buffer a, buffer b, buffer c, n, first chunk, 0)
//
// (pointers as integers; unused buffers 0). Tensor i is cut into ceil(n_i / kChunk) chunks,
// numbered one after another over the whole group; "first chunk" is the number of tensor i's
// first one. Blocks walk the chunks (chunk = blockIdx.x, += gridDim.x), find their tensor by a
// binary search over the first-chunk column, and stride their threads over its elements. The
// launcher copies the table from host memory (cudaMemcpyAsync on the stream, so it is ordered
// before the kernel and needs no sync; skipped when the caller says the device copy is current),
// then launches once.
//
// One kernel, multi_tensor_apply_kernel, walks the chunks for every optimizer; SgdUpdate and
// AdamUpdate hold the math of one chunk.
//
// Versions:
//   1. one element per thread per step of the stride, chunks of 4096 elements, 256 threads.
#include "common.cuh"

namespace minicnn {
namespace kernels {

constexpr int64_t kChunk = 4096;  // elements of a tensor handled by one block at a time
constexpr int kMaxOptimBlocks = 65535;

// The table row of the tensor holding `chunk`: the last row whose first chunk is <= chunk.
__device__ __forceinline__ const int64_t* chunk_row(const int64_t* table, int tensors,
                                                    int64_t chunk) {
  int lo = 0, hi = tensors - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid * kOptimTableColumns + 6] <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  return table + lo * kOptimTableColumns;
}

template <class T>
__device__ __forceinline__ T* column(const int64_t* row, int c) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(row[c]));
}

// ---- kernels ------------------------------------------------------------------------------------
// Multi-tensor apply: block after block of chunks, each handed to update.chunk(row, begin, end)
// (elements [begin, end) of the tensor in table row `row`, strided over the block's threads).
template <class Update>
__global__ void multi_tensor_apply_kernel(const int64_t* table,  // (tensors, kOptimTableColumns)
                                          int tensors, int64_t chunks, Update update) {
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const int64_t* row = chunk_row(table, tensors, chunk);
    const int64_t begin = (chunk - row[6]) * kChunk;
    update.chunk(row, begin, begin + kChunk < row[5] ? begin + kChunk : row[5]);
  }
}

template <class T>
struct SgdUpdate {
  SgdScalars s;
  __device__ void chunk(const int64_t* row, int64_t begin, int64_t end) const {
    const T lr = T(s.lr), mu = T(s.momentum), wd = T(s.weight_decay);
    const T keep = T(s.one_minus_dampening);
    T *p = column<T>(row, 0), *g = column<T>(row, 1), *b = column<T>(row, 2);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      T grad = g[i], param = p[i];
      if (s.weight_decay != 0) grad = grad + wd * param;
      if (s.momentum != 0) {
        const T buf = s.first_step ? grad : b[i] * mu + keep * grad;
        b[i] = buf;
        grad = s.nesterov ? grad + mu * buf : buf;
      }
      p[i] = param - lr * grad;
    }
  }
};

template <class T>
struct AdamUpdate {
  AdamScalars s;
  __device__ void chunk(const int64_t* row, int64_t begin, int64_t end) const {
    const T b1 = T(s.beta1), b2 = T(s.beta2), c1 = T(s.one_minus_beta1), c2 = T(s.one_minus_beta2);
    const T wd = T(s.weight_decay), shrink = T(s.decoupled_factor), eps = T(s.eps);
    const T step_size = T(s.step_size), bc2_sqrt = T(s.bias_correction2_sqrt);
    T *p = column<T>(row, 0), *g = column<T>(row, 1);
    T *m = column<T>(row, 2), *v = column<T>(row, 3), *vmax = column<T>(row, 4);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      T grad = g[i], param = p[i];
      if (s.weight_decay != 0) {
        if (s.decoupled)
          param = param * shrink;
        else
          grad = grad + wd * param;
      }
      const T m_i = m[i] * b1 + c1 * grad;
      T v_i = v[i] * b2 + c2 * grad * grad;
      m[i] = m_i;
      v[i] = v_i;
      if (s.amsgrad) {
        v_i = is_nan(v_i) || vmax[i] < v_i ? v_i : vmax[i];  // NumPy's maximum: NaN propagates
        vmax[i] = v_i;
      }
      const T denom = square_root(v_i) / bc2_sqrt + eps;
      p[i] = param - step_size * m_i / denom;
    }
  }
};

// ---- launchers ----------------------------------------------------------------------------------
// Upload the table (unless table_host is null: the device copy is current), then one launch.
template <class Update>
void multi_tensor_apply(const char* name, Update update, int64_t* table, const int64_t* table_host,
                        int tensors, int64_t chunks, cudaStream_t stream) {
  if (tensors == 0 || chunks == 0) return;
  if (table_host != nullptr) {
    const size_t bytes = sizeof(int64_t) * kOptimTableColumns * static_cast<size_t>(tensors);
    CUDA_CHECK(cudaMemcpyAsync(table, table_host, bytes, cudaMemcpyHostToDevice, stream));
  }
  const int64_t blocks = chunks < kMaxOptimBlocks ? chunks : kMaxOptimBlocks;
  LAUNCH((multi_tensor_apply_kernel<Update>), unsigned(blocks), kBlockSize, 0, stream)(
      table, tensors, chunks, update);
  CHECK_LAUNCH(name);
}

int64_t optim_chunk_size() {
  return kChunk;
}

template <class T>
void sgd_update(int64_t* table, const int64_t* table_host, int tensors, int64_t chunks,
                SgdScalars s, cudaStream_t stream) {
  multi_tensor_apply("multi_tensor_apply_kernel (sgd)", SgdUpdate<T>{s}, table, table_host, tensors,
                     chunks, stream);
}

template <class T>
void adam_update(int64_t* table, const int64_t* table_host, int tensors, int64_t chunks,
                 AdamScalars s, cudaStream_t stream) {
  multi_tensor_apply("multi_tensor_apply_kernel (adam)", AdamUpdate<T>{s}, table, table_host,
                     tensors, chunks, stream);
}

#define INSTANTIATE(T)                                                                           \
  template void sgd_update<T>(int64_t*, const int64_t*, int, int64_t, SgdScalars, cudaStream_t); \
  template void adam_update<T>(int64_t*, const int64_t*, int, int64_t, AdamScalars, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace kernels
}  // namespace minicnn
