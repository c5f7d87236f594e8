// Generic array passes of a training step for the "cpu" device, on the thread pool:
//   add              y = a + b, elementwise (ResNet's residual adds)
//   add_rows         the same over N rows of K values at row strides of their own: the channel
//                    slices dout[:, c0:c1] that Cat's backward hands out are summed in place by
//                    the autograd engine without a copy to a contiguous array first
//   concat_channels  out (N, ΣC_i, L) = the parts (N, C_i, L) side by side along dim 1 (DenseNet's
//                    and GoogLeNet's concatenations): one task copies one part of one image
// Each output element is written by one task from the same inputs as NumPy's a + b and
// np.concatenate: the results are identical to theirs at any thread count.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"
#include "relu.h"  // kElementwiseGrain

namespace minicnn {
namespace cpu {

template <typename T>
void add(const T* a, const T* b, T* y, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = a[i] + b[i];
  });
}

template <typename T>
void add_rows(const T* a, int64_t a_stride, const T* b, int64_t b_stride, T* y, int64_t y_stride,
              int64_t N, int64_t K) {
  if (a_stride == K && b_stride == K && y_stride == K) return add(a, b, y, N * K);
  parallel_for(N * K, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin / K; n * K < end; ++n) {
      const int64_t k0 = std::max(begin - n * K, int64_t(0)), k1 = std::min(end - n * K, K);
      const T* ar = a + n * a_stride;
      const T* br = b + n * b_stride;
      T* yr = y + n * y_stride;
      for (int64_t k = k0; k < k1; ++k) yr[k] = ar[k] + br[k];
    }
  });
}

template <typename T>
void concat_channels(const std::vector<const T*>& parts, const std::vector<int64_t>& channels,
                     T* out, int64_t N, int64_t L) {
  const int64_t count = static_cast<int64_t>(parts.size());
  std::vector<int64_t> offset(count + 1, 0);  // first output channel of each part
  for (int64_t i = 0; i < count; ++i) offset[i + 1] = offset[i] + channels[i];
  const int64_t C = offset[count];
  const int64_t slab = std::max<int64_t>(1, C * L / std::max<int64_t>(1, count));  // mean copy
  parallel_for(N * count, std::max<int64_t>(1, kElementwiseGrain / slab),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t n = t / count, i = t % count;
                   std::memcpy(out + (n * C + offset[i]) * L, parts[i] + n * channels[i] * L,
                               sizeof(T) * channels[i] * L);
                 }
               });
}

}  // namespace cpu
}  // namespace minicnn
