// Bindings for minicnn._C_cpu of the per-element passes: relu.h, batchnorm.h (batch norm, and
// fused with a following ReLU) and lrn.h, float32 (_f32) and float64 (_f64). Each checks the
// shapes it is given and raises ValueError naming the function and argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "arrays_py.h"  // CArray
#include "batchnorm.h"
#include "lrn.h"
#include "relu.h"

namespace minicnn {
namespace cpu {
namespace norm_py {
namespace py = pybind11;
using arrays_py::CArray;

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

// ---- relu ---------------------------------------------------------------------------------------
inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

template <typename T>
py::array_t<T> relu_forward(CArray<T> x) {
  py::array_t<T> y(shape_of(x));
  {
    py::gil_scoped_release release;
    minicnn::cpu::relu_forward<T>(x.data(), y.mutable_data(), x.size());
  }
  return y;
}

template <typename T>
py::array_t<T> relu_backward(CArray<T> dout, CArray<T> y) {
  require(dout.size() == y.size(), "relu_backward: dout and y must have the same size");
  py::array_t<T> dx(shape_of(dout));
  {
    py::gil_scoped_release release;
    minicnn::cpu::relu_backward<T>(dout.data(), y.data(), dx.mutable_data(), dout.size());
  }
  return dx;
}

// ---- batch norm ---------------------------------------------------------------------------------
inline void check_ncl(const py::array& a, const char* what) {
  require(a.ndim() == 3, std::string(what) + " must be (N, C, L)");
}

inline void check_channels(const py::array& v, int64_t C, const char* what) {
  require(v.ndim() == 1 && v.shape(0) == C, std::string(what) + " must be (C,)");
}

template <typename T>
py::tuple batch_norm_stats(CArray<T> x) {
  check_ncl(x, "batch_norm_stats: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  py::array_t<T> mean(C), var(C);
  {
    py::gil_scoped_release release;
    minicnn::cpu::batch_norm_stats<T>(x.data(), mean.mutable_data(), var.mutable_data(), N, C, L);
  }
  return py::make_tuple(mean, var);
}

// ReLU's output as a mask for the fused backward (dy · [y > 0]): None or shaped like x.
template <typename T>
const T* mask_data(const std::optional<CArray<T>>& mask, const py::array& x, const char* what) {
  if (!mask) return nullptr;
  require(mask->ndim() == 3 && mask->shape(0) == x.shape(0) && mask->shape(1) == x.shape(1) &&
              mask->shape(2) == x.shape(2),
          std::string(what) + ": mask must be shaped like x");
  return mask->data();
}

template <typename T>
py::array_t<T> channel_affine(CArray<T> x, std::optional<CArray<T>> center, CArray<T> scale,
                              std::optional<CArray<T>> shift, std::optional<CArray<T>> mask,
                              bool relu) {
  check_ncl(x, "channel_affine: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  check_channels(scale, C, "channel_affine: scale");
  if (center) check_channels(*center, C, "channel_affine: center");
  if (shift) check_channels(*shift, C, "channel_affine: shift");
  const T* mk = mask_data(mask, x, "channel_affine");
  py::array_t<T> y({N, C, L});
  const T* m = center ? center->data() : nullptr;
  const T* s = shift ? shift->data() : nullptr;
  {
    py::gil_scoped_release release;
    minicnn::cpu::channel_affine<T>(x.data(), m, scale.data(), s, y.mutable_data(), N, C, L, mk,
                                    relu);
  }
  return y;
}

template <typename T>
py::tuple batch_norm_grad_sums(CArray<T> dout, CArray<T> x, CArray<T> mean, CArray<T> invstd,
                               std::optional<CArray<T>> mask) {
  check_ncl(x, "batch_norm_grad_sums: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  require(dout.ndim() == 3 && dout.shape(0) == N && dout.shape(1) == C && dout.shape(2) == L,
          "batch_norm_grad_sums: dout must be shaped like x");
  check_channels(mean, C, "batch_norm_grad_sums: mean");
  check_channels(invstd, C, "batch_norm_grad_sums: invstd");
  const T* mk = mask_data(mask, x, "batch_norm_grad_sums");
  py::array_t<T> sum_dy(C), sum_dy_xhat(C);
  {
    py::gil_scoped_release release;
    minicnn::cpu::batch_norm_grad_sums<T>(dout.data(), x.data(), mean.data(), invstd.data(),
                                          sum_dy.mutable_data(), sum_dy_xhat.mutable_data(), N, C,
                                          L, mk);
  }
  return py::make_tuple(sum_dy, sum_dy_xhat);
}

template <typename T>
py::array_t<T> batch_norm_backward_data(CArray<T> dout, CArray<T> x, CArray<T> mean,
                                        CArray<T> invstd, CArray<T> g, CArray<T> sum_dy,
                                        CArray<T> sum_dy_xhat, std::optional<CArray<T>> mask) {
  check_ncl(x, "batch_norm_backward_data: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  require(dout.ndim() == 3 && dout.shape(0) == N && dout.shape(1) == C && dout.shape(2) == L,
          "batch_norm_backward_data: dout must be shaped like x");
  for (const py::array* v : {(py::array*)&mean, (py::array*)&invstd, (py::array*)&g,
                             (py::array*)&sum_dy, (py::array*)&sum_dy_xhat})
    check_channels(*v, C, "batch_norm_backward_data: per-channel vectors");
  const T* mk = mask_data(mask, x, "batch_norm_backward_data");
  py::array_t<T> dx({N, C, L});
  {
    py::gil_scoped_release release;
    minicnn::cpu::batch_norm_backward_data<T>(dout.data(), x.data(), mean.data(), invstd.data(),
                                              g.data(), sum_dy.data(), sum_dy_xhat.data(),
                                              dx.mutable_data(), N, C, L, mk);
  }
  return dx;
}

// ---- local response normalization --------------------------------------------------------------
template <typename T>
py::tuple lrn_forward(CArray<T> x, int64_t size, double alpha, double beta, double k) {
  check_ncl(x, "lrn_forward: x");
  require(size >= 1, "lrn_forward: size must be >= 1, got " + std::to_string(size));
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  py::array_t<T> y({N, C, L}), scale({N, C, L});
  {
    py::gil_scoped_release release;
    minicnn::cpu::lrn_forward<T>(x.data(), y.mutable_data(), scale.mutable_data(), N, C, L, size,
                                 alpha, beta, k);
  }
  return py::make_tuple(y, scale);
}

template <typename T>
py::array_t<T> lrn_backward(CArray<T> dout, CArray<T> x, CArray<T> scale, int64_t size,
                            double alpha, double beta) {
  check_ncl(x, "lrn_backward: x");
  require(size >= 1, "lrn_backward: size must be >= 1, got " + std::to_string(size));
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  for (const py::array* a : {(py::array*)&dout, (py::array*)&scale})
    require(a->ndim() == 3 && a->shape(0) == N && a->shape(1) == C && a->shape(2) == L,
            "lrn_backward: dout and scale must be shaped like x");
  py::array_t<T> dx({N, C, L});
  {
    py::gil_scoped_release release;
    minicnn::cpu::lrn_backward<T>(dout.data(), x.data(), scale.data(), dx.mutable_data(), N, C, L,
                                  size, alpha, beta);
  }
  return dx;
}

}  // namespace norm_py

#define NORM_DEF(name, fn, ...)                         \
  m.def(name "_f32", &norm_py::fn<float>, __VA_ARGS__); \
  m.def(name "_f64", &norm_py::fn<double>, __VA_ARGS__)

inline void bind_norm(pybind11::module_& m) {
  namespace py = pybind11;
  const auto none = py::none();
  NORM_DEF("relu_forward", relu_forward, py::arg("x"));
  NORM_DEF("relu_backward", relu_backward, py::arg("dout"), py::arg("y"));
  NORM_DEF("batch_norm_stats", batch_norm_stats, py::arg("x"));
  NORM_DEF("channel_affine", channel_affine, py::arg("x"), py::arg("center"), py::arg("scale"),
           py::arg("shift"), py::arg("mask") = none, py::arg("relu") = false);
  NORM_DEF("batch_norm_grad_sums", batch_norm_grad_sums, py::arg("dout"), py::arg("x"),
           py::arg("mean"), py::arg("invstd"), py::arg("mask") = none);
  NORM_DEF("batch_norm_backward_data", batch_norm_backward_data, py::arg("dout"), py::arg("x"),
           py::arg("mean"), py::arg("invstd"), py::arg("g"), py::arg("sum_dy"),
           py::arg("sum_dy_xhat"), py::arg("mask") = none);
  NORM_DEF("lrn_forward", lrn_forward, py::arg("x"), py::arg("size"), py::arg("alpha"),
           py::arg("beta"), py::arg("k"));
  NORM_DEF("lrn_backward", lrn_backward, py::arg("dout"), py::arg("x"), py::arg("scale"),
           py::arg("size"), py::arg("alpha"), py::arg("beta"));
}

#undef NORM_DEF

}  // namespace cpu
}  // namespace minicnn
