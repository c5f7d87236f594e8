// Bindings of arrays.h for minicnn._C_cpu: add, add_ (in place), concat_channels (_f32/_f64).
// add and add_ read their inputs in place when they are dim-1 slices of C-contiguous arrays.
// The Python side (numpy_backend.py) calls them only for same-shape, same-dtype arrays; these
// check again and raise ValueError naming the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "arrays.h"

namespace minicnn {
namespace cpu {
namespace arrays_py {
namespace py = pybind11;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// An array of T read as N rows of K values, row n at data + n * stride: a C-contiguous array or a
// slice of one along dim 1 (dout[:, c0:c1] from Cat's backward) is used in place; anything else
// (another dtype, another layout) is first copied to a C-contiguous array of T, as forcecast does.
template <typename T>
struct Rows {
  py::array keep;  // holds the memory read
  const T* data;
  int64_t N, K, stride;
};

template <typename T>
bool rows_layout(const py::array& a, int64_t* stride) {
  if (!py::isinstance<py::array_t<T>>(a)) return false;
  int64_t inner = sizeof(T);  // bytes of one row so far
  for (py::ssize_t d = a.ndim() - 1; d >= 1; --d) {
    if (a.shape(d) != 1 && a.strides(d) != inner) return false;
    inner *= a.shape(d);
  }
  const bool single = a.ndim() == 0 || a.shape(0) <= 1;
  if (!single && (a.strides(0) < inner || a.strides(0) % sizeof(T) != 0)) return false;
  *stride = (single ? inner : a.strides(0)) / static_cast<int64_t>(sizeof(T));
  return true;
}

template <typename T>
Rows<T> rows(py::array a) {
  int64_t stride = 0;
  if (!rows_layout<T>(a, &stride)) {
    a = CArray<T>::ensure(a);
    if (!a) throw py::error_already_set();
    stride = a.ndim() == 0 ? 1 : a.size() / std::max<py::ssize_t>(1, a.shape(0));
  }
  const int64_t N = a.ndim() == 0 ? 1 : a.shape(0);
  const int64_t K = N == 0 ? 0 : a.size() / N;
  return Rows<T>{a, static_cast<const T*>(a.data()), N, K, stride};
}

inline void require_same_shape(const py::array& a, const py::array& b, const char* what) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same) throw py::value_error(std::string(what) + ": a and b must have the same shape");
}

// a + b of same-shape arrays, each C-contiguous or a dim-1 slice of one; y is C-contiguous.
template <typename T>
py::array_t<T> add(py::array a_in, py::array b_in) {
  require_same_shape(a_in, b_in, "add");
  const Rows<T> a = rows<T>(a_in), b = rows<T>(b_in);
  py::array_t<T> y(std::vector<py::ssize_t>(a_in.shape(), a_in.shape() + a_in.ndim()));
  {
    py::gil_scoped_release release;
    minicnn::cpu::add_rows<T>(a.data, a.stride, b.data, b.stride, y.mutable_data(), a.K, a.N, a.K);
  }
  return y;
}

// a += b in place (the autograd engine's gradient sums): a must be a writeable C-contiguous array
// of T (never a silent copy), b of a's shape, C-contiguous or a dim-1 slice of such an array.
template <typename T>
void add_(py::array a, py::array b_in) {
  if (!py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error("add_: a must be a writeable C-contiguous array of the dtype");
  require_same_shape(a, b_in, "add_");
  const Rows<T> b = rows<T>(b_in);
  T* y = static_cast<T*>(a.mutable_data());
  {
    py::gil_scoped_release release;
    minicnn::cpu::add_rows<T>(y, b.K, b.data, b.stride, y, b.K, b.N, b.K);
  }
}

// parts: arrays (N, C_i, ...) equal in every dim but 1 -> (N, ΣC_i, ...).
template <typename T>
py::array_t<T> concat_channels(std::vector<CArray<T>> parts) {
  if (parts.empty() || parts[0].ndim() < 2)
    throw py::value_error("concat_channels: parts must be one or more arrays of >= 2 dims");
  const py::ssize_t ndim = parts[0].ndim();
  std::vector<py::ssize_t> shape(parts[0].shape(), parts[0].shape() + ndim);
  std::vector<const T*> data;
  std::vector<int64_t> channels;
  shape[1] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool same = parts[i].ndim() == ndim;
    for (py::ssize_t d = 0; same && d < ndim; ++d)
      same = d == 1 || parts[i].shape(d) == parts[0].shape(d);
    if (!same)
      throw py::value_error("concat_channels: parts[" + std::to_string(i) +
                            "] must match parts[0] in every dimension but 1");
    data.push_back(parts[i].data());
    channels.push_back(parts[i].shape(1));
    shape[1] += parts[i].shape(1);
  }
  const int64_t N = shape[0];
  int64_t L = 1;
  for (py::ssize_t d = 2; d < ndim; ++d) L *= shape[d];
  py::array_t<T> out(shape);
  {
    py::gil_scoped_release release;
    minicnn::cpu::concat_channels<T>(data, channels, out.mutable_data(), N, L);
  }
  return out;
}

}  // namespace arrays_py

template <typename T>
void bind_arrays_dtype(pybind11::module_& m, const std::string& suffix) {
  namespace py = pybind11;
  m.def(("add" + suffix).c_str(), &arrays_py::add<T>, "a + b of same-shape arrays, threaded",
        py::arg("a"), py::arg("b"));
  m.def(("add_" + suffix).c_str(), &arrays_py::add_<T>, "a += b of same-shape arrays, threaded",
        py::arg("a"), py::arg("b"));
  m.def(("concat_channels" + suffix).c_str(), &arrays_py::concat_channels<T>,
        "np.concatenate(parts, axis=1), threaded", py::arg("parts"));
}

inline void bind_arrays(pybind11::module_& m) {
  bind_arrays_dtype<float>(m, "_f32");
  bind_arrays_dtype<double>(m, "_f64");
}

}  // namespace cpu
}  // namespace minicnn
