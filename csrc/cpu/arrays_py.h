// Bindings of arrays.h for minicnn._C_cpu: add, add_ (in place), concat_channels (_f32/_f64).
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

template <typename T>
py::array_t<T> add(CArray<T> a, CArray<T> b) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same) throw py::value_error("add: a and b must have the same shape");
  py::array_t<T> y(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  {
    py::gil_scoped_release release;
    minicnn::cpu::add<T>(a.data(), b.data(), y.mutable_data(), a.size());
  }
  return y;
}

// a += b in place (the autograd engine's gradient sums): a must be a writeable C-contiguous array
// of T (never a silent copy), b of a's shape.
template <typename T>
void add_(py::array a, CArray<T> b) {
  if (!py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error("add_: a must be a writeable C-contiguous array of the dtype");
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same) throw py::value_error("add_: a and b must have the same shape");
  T* y = static_cast<T*>(a.mutable_data());
  {
    py::gil_scoped_release release;
    minicnn::cpu::add<T>(y, b.data(), y, a.size());
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
