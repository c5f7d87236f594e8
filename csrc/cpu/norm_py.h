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

inline void check_like(const py::array& a, const py::array& x, const std::string& what) {
  require(a.ndim() == 3 && a.shape(0) == x.shape(0) && a.shape(1) == x.shape(1) &&
              a.shape(2) == x.shape(2),
          what + " must be shaped like x");
}

template <typename T>
const T* optional_data(const std::optional<CArray<T>>& v) {
  return v ? v->data() : nullptr;
}

// Training forward: (y, mean, var, invstd); weight and bias None or (C,).
template <typename T>
py::tuple batch_norm_forward(CArray<T> x, std::optional<CArray<T>> weight,
                             std::optional<CArray<T>> bias, double eps, bool relu) {
  check_ncl(x, "batch_norm_forward: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  if (weight) check_channels(*weight, C, "batch_norm_forward: weight");
  if (bias) check_channels(*bias, C, "batch_norm_forward: bias");
  py::array_t<T> y({N, C, L}), mean(C), var(C), invstd(C);
  {
    py::gil_scoped_release release;
    minicnn::cpu::batch_norm_forward<T>(x.data(), optional_data(weight), optional_data(bias), eps,
                                        y.mutable_data(), mean.mutable_data(), var.mutable_data(),
                                        invstd.mutable_data(), N, C, L, relu);
  }
  return py::make_tuple(y, mean, var, invstd);
}

template <typename T>
py::array_t<T> channel_affine(CArray<T> x, std::optional<CArray<T>> center, CArray<T> scale,
                              std::optional<CArray<T>> shift, bool relu) {
  check_ncl(x, "channel_affine: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  check_channels(scale, C, "channel_affine: scale");
  if (center) check_channels(*center, C, "channel_affine: center");
  if (shift) check_channels(*shift, C, "channel_affine: shift");
  py::array_t<T> y({N, C, L});
  {
    py::gil_scoped_release release;
    minicnn::cpu::channel_affine<T>(x.data(), optional_data(center), scale.data(),
                                    optional_data(shift), y.mutable_data(), N, C, L, relu);
  }
  return y;
}

// (dx, sum_dy_xhat, sum_dy): dx through the batch statistics when training, else the affine map;
// dy read as dy · [mask > 0] when mask (ReLU's output) is given.
template <typename T>
py::tuple batch_norm_backward(CArray<T> dout, CArray<T> x, CArray<T> mean, CArray<T> invstd,
                              std::optional<CArray<T>> weight, std::optional<CArray<T>> mask,
                              bool training) {
  check_ncl(x, "batch_norm_backward: x");
  const int64_t N = x.shape(0), C = x.shape(1), L = x.shape(2);
  check_like(dout, x, "batch_norm_backward: dout");
  if (mask) check_like(*mask, x, "batch_norm_backward: mask");
  check_channels(mean, C, "batch_norm_backward: mean");
  check_channels(invstd, C, "batch_norm_backward: invstd");
  if (weight) check_channels(*weight, C, "batch_norm_backward: weight");
  py::array_t<T> dx({N, C, L}), sum_dy(C), sum_dy_xhat(C);
  {
    py::gil_scoped_release release;
    minicnn::cpu::batch_norm_backward<T>(dout.data(), x.data(), optional_data(mask), mean.data(),
                                         invstd.data(), optional_data(weight), dx.mutable_data(),
                                         sum_dy.mutable_data(), sum_dy_xhat.mutable_data(), N, C, L,
                                         training);
  }
  return py::make_tuple(dx, sum_dy_xhat, sum_dy);
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
  NORM_DEF("batch_norm_forward", batch_norm_forward, py::arg("x"), py::arg("weight"),
           py::arg("bias"), py::arg("eps"), py::arg("relu") = false);
  NORM_DEF("channel_affine", channel_affine, py::arg("x"), py::arg("center"), py::arg("scale"),
           py::arg("shift"), py::arg("relu") = false);
  NORM_DEF("batch_norm_backward", batch_norm_backward, py::arg("dout"), py::arg("x"),
           py::arg("mean"), py::arg("invstd"), py::arg("weight"), py::arg("mask") = none,
           py::arg("training") = true);
  NORM_DEF("lrn_forward", lrn_forward, py::arg("x"), py::arg("size"), py::arg("alpha"),
           py::arg("beta"), py::arg("k"));
  NORM_DEF("lrn_backward", lrn_backward, py::arg("dout"), py::arg("x"), py::arg("scale"),
           py::arg("size"), py::arg("alpha"), py::arg("beta"));
}

#undef NORM_DEF

}  // namespace cpu
}  // namespace minicnn
