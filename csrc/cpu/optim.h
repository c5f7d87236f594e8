// Fused optimizer updates for the "cpu" device: one pass over each parameter of a group (reading
// p, g and the state once, writing p and the state once) instead of NumPy's 3-6 passes with
// temporaries, on the thread pool. The math is minicnn/optim's (torch.optim's), operation by
// operation in T with the hyperparameters rounded to T first, as NumPy computes it with Python
// scalars: the results agree with the NumPy update bit for bit (x86-64 has no fused multiply-add
// in its baseline instruction set, so none is contracted) and do not depend on the thread count.
//
//   SGD   g <- g + wd p;  b <- g (first step) or mu b + (1 - d) g;  g <- g + mu b (Nesterov) or b;
//         p <- p - lr g
//   Adam  g <- g + wd p (Adam) or p <- p (1 - lr wd) (AdamW);  m <- b1 m + (1 - b1) g;
//         v <- b2 v + (1 - b2) g g;  vmax <- max(vmax, v) (AMSGrad);
//         p <- p - step_size m / (sqrt(v) / bias2 + eps),  step_size = lr / (1 - b1^t),
//         bias2 = sqrt(1 - b2^t)
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "parallel.h"

namespace minicnn {
namespace cpu {

// One slice [begin, end) of parameter `index`: the unit of work of the fused updates.
struct Slice {
  int64_t index, begin, end;
};

inline std::vector<Slice> slices(const std::vector<int64_t>& sizes, int64_t block = 1 << 15) {
  std::vector<Slice> out;
  for (int64_t i = 0; i < static_cast<int64_t>(sizes.size()); ++i)
    for (int64_t b = 0; b < sizes[i]; b += block)
      out.push_back({i, b, std::min(sizes[i], b + block)});
  return out;
}

template <typename T>
struct SgdArgs {
  T lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first;  // first: the buffers are set to the gradient (torch's first step)
};

// The flags as template arguments, so that each loop has no branch and vectorises.
template <typename T, bool kDecay, bool kMomentum, bool kNesterov, bool kFirst>
void sgd_loop(T* p, const T* grad, T* buf, int64_t n, const SgdArgs<T>& a) {
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (kDecay) g = g + a.weight_decay * p[i];
    if (kMomentum) {
      const T b = kFirst ? g : buf[i] * a.momentum + a.one_minus_dampening * g;
      buf[i] = b;
      g = kNesterov ? g + a.momentum * b : b;
    }
    p[i] = p[i] - a.lr * g;
  }
}

template <typename T>
void sgd_slice(T* p, const T* grad, T* buf, int64_t n, const SgdArgs<T>& a) {
  const bool decay = a.weight_decay != T(0), momentum = a.momentum != T(0);
  auto run = [&](auto d, auto nesterov, auto first) {
    if (momentum)
      sgd_loop<T, decltype(d)::value, true, decltype(nesterov)::value, decltype(first)::value>(
          p, grad, buf, n, a);
    else
      sgd_loop<T, decltype(d)::value, false, false, false>(p, grad, buf, n, a);
  };
  auto with_first = [&](auto d, auto nesterov) {
    a.first ? run(d, nesterov, std::true_type{}) : run(d, nesterov, std::false_type{});
  };
  auto with_nesterov = [&](auto d) {
    a.nesterov ? with_first(d, std::true_type{}) : with_first(d, std::false_type{});
  };
  decay ? with_nesterov(std::true_type{}) : with_nesterov(std::false_type{});
}

template <typename T>
struct AdamArgs {
  T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor;
  T step_size, bias2;  // lr / (1 - b1^t), sqrt(1 - b2^t)
  bool decoupled, amsgrad;
};

template <typename T, bool kDecay, bool kDecoupled, bool kAmsgrad>
void adam_loop(T* p, const T* grad, T* m, T* v, T* vmax, int64_t n, const AdamArgs<T>& a) {
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (kDecay && kDecoupled) p[i] = p[i] * a.decay_factor;
    if (kDecay && !kDecoupled) g = g + a.weight_decay * p[i];
    const T mi = m[i] * a.beta1 + a.one_minus_beta1 * g;
    const T vi = v[i] * a.beta2 + a.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    T vv = vi;
    if (kAmsgrad) {  // np.maximum: a NaN on either side wins
      const T old = vmax[i];
      vv = (old != old) ? old : (vi != vi || old < vi) ? vi : old;
      vmax[i] = vv;
    }
    p[i] = p[i] - a.step_size * mi / (std::sqrt(vv) / a.bias2 + a.eps);
  }
}

template <typename T>
void adam_slice(T* p, const T* grad, T* m, T* v, T* vmax, int64_t n, const AdamArgs<T>& a) {
  auto run = [&](auto decay, auto decoupled) {
    constexpr bool d = decltype(decay)::value, w = decltype(decoupled)::value;
    a.amsgrad ? adam_loop<T, d, w, true>(p, grad, m, v, vmax, n, a)
              : adam_loop<T, d, w, false>(p, grad, m, v, vmax, n, a);
  };
  auto with_decoupled = [&](auto decay) {
    a.decoupled ? run(decay, std::true_type{}) : run(decay, std::false_type{});
  };
  a.weight_decay != T(0) ? with_decoupled(std::true_type{}) : with_decoupled(std::false_type{});
}

// f(slice) for every slice of the parameters, on the pool (one slice per task).
template <typename F>
void for_each_slice(const std::vector<Slice>& work, const F& f) {
  parallel_for(static_cast<int64_t>(work.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) f(work[t]);
  });
}

}  // namespace cpu
}  // namespace minicnn
