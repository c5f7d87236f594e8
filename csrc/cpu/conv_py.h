// Bindings of conv_backward.h for minicnn._C_cpu: conv2d_backward_weight_f32/_f64,
// conv2d_backward_data_f32/_f64 and both at once, conv2d_backward_f32/_f64
// (minicnn/backends/_np_conv.py calls them). Each checks the arrays against the op's geometry
// and raises ValueError naming the argument and the expected shape.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "../geometry_py.h"
#include "arrays_py.h"
#include "conv_backward.h"

namespace minicnn {
namespace cpu {
namespace conv_py {
namespace py = pybind11;
using arrays_py::CArray;  // C-contiguous arrays of T (NumPy converts others)

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

inline void require_shape(const py::array& a, std::initializer_list<int64_t> shape,
                          const std::string& what) {
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  size_t i = 0;
  std::string text = "(";
  for (int64_t d : shape) {
    same = same && a.shape(i++) == d;
    text += (text.size() > 1 ? ", " : "") + std::to_string(d);
  }
  require(same, what + " must have shape " + text + ")");
}

// The geometry, checked so that no loop leaves the arrays (the sizes come from Python).
template <typename T>
Conv2dGeometry checked(py::handle geometry, const std::string& op) {
  const Conv2dGeometry g = geometry_py::conv2d_geometry(geometry);
  require(Blas::instance().gemm<T>() != nullptr, op + ": no BLAS registered");
  require(g.N >= 0 && g.C >= 0 && g.H >= 0 && g.W >= 0 && g.K >= 0 && g.P >= 0 && g.Q >= 0,
          op + ": sizes must be >= 0");
  require(g.R >= 1 && g.S >= 1 && g.sh >= 1 && g.sw >= 1 && g.ph >= 0 && g.pw >= 0 && g.dh >= 1 &&
              g.dw >= 1,
          op + ": kernel, stride and dilation must be >= 1 and padding >= 0");
  require(g.G >= 1 && g.C % g.G == 0 && g.K % g.G == 0,
          op + ": groups must divide C and K, got G = " + std::to_string(g.G));
  return g;
}

template <typename T>
py::array_t<T> backward_weight(CArray<T> dout, CArray<T> x, py::object geometry) {
  const Conv2dGeometry g = checked<T>(geometry, "conv2d_backward_weight");
  require_shape(dout, {g.N, g.K, g.P, g.Q}, "conv2d_backward_weight: dout");
  require_shape(x, {g.N, g.C, g.H, g.W}, "conv2d_backward_weight: x");
  py::array_t<T> dw({g.K, g.C / g.G, g.R, g.S});
  {
    py::gil_scoped_release release;
    conv2d_backward_weight_panels<T>(dout.data(), x.data(), dw.mutable_data(), g);
  }
  return dw;
}

template <typename T>
py::array_t<T> backward_data(CArray<T> dout, CArray<T> w, py::object geometry) {
  const Conv2dGeometry g = checked<T>(geometry, "conv2d_backward_data");
  require_shape(dout, {g.N, g.K, g.P, g.Q}, "conv2d_backward_data: dout");
  require_shape(w, {g.K, g.C / g.G, g.R, g.S}, "conv2d_backward_data: w");
  py::array_t<T> dx({g.N, g.C, g.H, g.W});
  {
    py::gil_scoped_release release;
    conv2d_backward_data_panels<T>(dout.data(), w.data(), dx.mutable_data(), g);
  }
  return dx;
}

// (dx, dw) in one pass over the tasks (conv2d_backward_panels); wt and geometry_t, both given or
// both None: dx as the convolution of dout with wt (see _np_conv._data_grad_as_conv).
template <typename T>
py::tuple backward_both(CArray<T> dout, CArray<T> x, CArray<T> w, py::object geometry,
                        std::optional<CArray<T>> wt, py::object geometry_t) {
  const Conv2dGeometry g = checked<T>(geometry, "conv2d_backward");
  require_shape(dout, {g.N, g.K, g.P, g.Q}, "conv2d_backward: dout");
  require_shape(x, {g.N, g.C, g.H, g.W}, "conv2d_backward: x");
  require_shape(w, {g.K, g.C / g.G, g.R, g.S}, "conv2d_backward: w");
  require(wt.has_value() == !geometry_t.is_none(),
          "conv2d_backward: wt and geometry_t must be given together");
  Conv2dGeometry gt = g;
  if (wt) {
    gt = checked<T>(geometry_t, "conv2d_backward");
    require(gt.N == g.N && gt.C == g.K && gt.H == g.P && gt.W == g.Q && gt.K == g.C &&
                gt.P == g.H && gt.Q == g.W && gt.G == g.G,
            "conv2d_backward: geometry_t must map dout's shape onto x's");
    require_shape(*wt, {gt.K, gt.C / gt.G, gt.R, gt.S}, "conv2d_backward: wt");
  }
  py::array_t<T> dx({g.N, g.C, g.H, g.W}), dw({g.K, g.C / g.G, g.R, g.S});
  {
    py::gil_scoped_release release;
    conv2d_backward_panels<T>(dout.data(), x.data(), w.data(), wt ? wt->data() : nullptr,
                              dx.mutable_data(), dw.mutable_data(), g, gt);
  }
  return py::make_tuple(dx, dw);
}

}  // namespace conv_py

inline void bind_conv_backward(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("conv2d_backward_weight_f32", &conv_py::backward_weight<float>, py::arg("dout"),
        py::arg("x"), py::arg("geometry"));
  m.def("conv2d_backward_weight_f64", &conv_py::backward_weight<double>, py::arg("dout"),
        py::arg("x"), py::arg("geometry"));
  m.def("conv2d_backward_data_f32", &conv_py::backward_data<float>, py::arg("dout"), py::arg("w"),
        py::arg("geometry"));
  m.def("conv2d_backward_data_f64", &conv_py::backward_data<double>, py::arg("dout"), py::arg("w"),
        py::arg("geometry"));
  m.def("conv2d_backward_f32", &conv_py::backward_both<float>, py::arg("dout"), py::arg("x"),
        py::arg("w"), py::arg("geometry"), py::arg("wt") = py::none(),
        py::arg("geometry_t") = py::none());
  m.def("conv2d_backward_f64", &conv_py::backward_both<double>, py::arg("dout"), py::arg("x"),
        py::arg("w"), py::arg("geometry"), py::arg("wt") = py::none(),
        py::arg("geometry_t") = py::none());
}

}  // namespace cpu
}  // namespace minicnn
