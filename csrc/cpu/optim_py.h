// Bindings of the fused optimizer updates (optim.h) for minicnn._C_cpu: one call per parameter
// group, every array updated in place. Lists of arrays of one dtype (float32: *_f32, float64:
// *_f64), each C-contiguous and writeable where it is written, the lists the same length and each
// entry the size of its parameter; anything else raises ValueError naming the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "optim.h"

namespace minicnn {
namespace cpu {

namespace optim_py {
namespace py = pybind11;

// The data pointers of `arrays` (a list of arrays), checked against the parameters' sizes.
template <typename T>
std::vector<T*> pointers(const char* op, const char* what, const py::list& arrays,
                         const std::vector<int64_t>& sizes, bool written = true) {
  if (static_cast<size_t>(py::len(arrays)) != sizes.size())
    throw py::value_error(std::string(op) + ": " + what + " must have one array per parameter (" +
                          std::to_string(sizes.size()) + "), got " +
                          std::to_string(py::len(arrays)));
  std::vector<T*> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    py::handle h = arrays[i];
    const bool ok = py::isinstance<py::array_t<T>>(h);
    py::array a = ok ? py::reinterpret_borrow<py::array>(h) : py::array();
    const bool writeable = !written || (ok && a.writeable());
    if (!ok || !(a.flags() & py::array::c_style) || !writeable || a.size() != sizes[i])
      throw py::value_error(
          std::string(op) + ": " + what + "[" + std::to_string(i) +
          "] must be a C-contiguous array (writeable if written) of the parameters' dtype "
          "with " +
          std::to_string(sizes[i]) + " elements");
    out.push_back(static_cast<T*>(const_cast<void*>(a.data())));  // written only if `written`
  }
  return out;
}

template <typename T>
std::vector<int64_t> sizes_of(const char* op, const py::list& params) {
  std::vector<int64_t> sizes;
  for (py::handle h : params) {
    if (!py::isinstance<py::array>(h))
      throw py::value_error(std::string(op) + ": params must be a list of NumPy arrays");
    sizes.push_back(py::reinterpret_borrow<py::array>(h).size());
  }
  return sizes;
}

template <typename T>
void sgd_update(py::list params, py::list grads, py::list bufs, double lr, double momentum,
                double dampening, double weight_decay, bool nesterov, bool first) {
  const char* op = "sgd_update";
  const auto sizes = sizes_of<T>(op, params);
  auto p = pointers<T>(op, "params", params, sizes),
       g = pointers<T>(op, "grads", grads, sizes, false);
  std::vector<T*> b = momentum != 0 ? pointers<T>(op, "bufs", bufs, sizes) : std::vector<T*>();
  const SgdArgs<T> a{T(lr), T(momentum), T(1.0 - dampening), T(weight_decay), nesterov, first};
  py::gil_scoped_release release;
  for_each_slice(slices(sizes), [&](const Slice& s) {
    T* buf = b.empty() ? nullptr : b[s.index] + s.begin;
    sgd_slice(p[s.index] + s.begin, g[s.index] + s.begin, buf, s.end - s.begin, a);
  });
}

template <typename T>
void adam_update(py::list params, py::list grads, py::list exp_avgs, py::list exp_avg_sqs,
                 py::object max_exp_avg_sqs, int64_t step, double lr, double beta1, double beta2,
                 double eps, double weight_decay, bool decoupled) {
  const char* op = "adam_update";
  if (step < 1)
    throw py::value_error("adam_update: step must be >= 1, got " + std::to_string(step));
  const auto sizes = sizes_of<T>(op, params);
  auto p = pointers<T>(op, "params", params, sizes),
       g = pointers<T>(op, "grads", grads, sizes, false);
  auto m = pointers<T>(op, "exp_avgs", exp_avgs, sizes);
  auto v = pointers<T>(op, "exp_avg_sqs", exp_avg_sqs, sizes);
  const bool amsgrad = !max_exp_avg_sqs.is_none();
  std::vector<T*> vmax;
  if (amsgrad) vmax = pointers<T>(op, "max_exp_avg_sqs", py::list(max_exp_avg_sqs), sizes);
  const double t = static_cast<double>(step);
  const AdamArgs<T> a{T(lr),
                      T(beta1),
                      T(1.0 - beta1),
                      T(beta2),
                      T(1.0 - beta2),
                      T(eps),
                      T(weight_decay),
                      T(1.0 - lr * weight_decay),
                      T(lr / (1.0 - std::pow(beta1, t))),
                      T(std::sqrt(1.0 - std::pow(beta2, t))),
                      decoupled,
                      amsgrad};
  py::gil_scoped_release release;
  for_each_slice(slices(sizes), [&](const Slice& s) {
    const int64_t i = s.index, o = s.begin;
    T* vm = amsgrad ? vmax[i] + o : nullptr;
    adam_slice(p[i] + o, g[i] + o, m[i] + o, v[i] + o, vm, s.end - s.begin, a);
  });
}

}  // namespace optim_py

template <typename T>
void bind_optim_dtype(pybind11::module_& m, const std::string& suffix) {
  namespace py = pybind11;
  m.def(("sgd_update" + suffix).c_str(), &optim_py::sgd_update<T>,
        "torch.optim.SGD's update of a parameter group, in place (optim.h)", py::arg("params"),
        py::arg("grads"), py::arg("bufs"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
        py::arg("weight_decay"), py::arg("nesterov"), py::arg("first"));
  m.def(("adam_update" + suffix).c_str(), &optim_py::adam_update<T>,
        "torch.optim.Adam/AdamW's update of a parameter group, in place (optim.h)",
        py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("step"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"));
}

inline void bind_optim(pybind11::module_& m) {
  bind_optim_dtype<float>(m, "_f32");
  bind_optim_dtype<double>(m, "_f64");
}

}  // namespace cpu
}  // namespace minicnn
