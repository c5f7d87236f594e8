// pybind11 face of csrc/geometry.h, shared by minicnn._C_cpu and the kernel bindings: the structs
// as Python classes with named, read-only fields, built with keywords
// (``Conv2dGeometry(N=2, C=3, ...)``) or from any object with those attributes
// (``Conv2dGeometry.from_python(g)``, g a minicnn.ops.geometry.Conv2dGeometry). Functions that
// take a geometry accept either (``conv2d_geometry(obj)`` below).
//
// Each extension registers the classes module-locally, so _C_cpu and _C_emu can both load.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "geometry.h"

namespace minicnn {
namespace geometry_py {

namespace py = pybind11;

#define MINICNN_CONV2D_FIELDS(X) \
  X(N) X(C) X(H) X(W) X(K) X(R) X(S) X(P) X(Q) X(sh) X(sw) X(ph) X(pw) X(dh) X(dw) X(G)
#define MINICNN_POOL2D_FIELDS(X) \
  X(N) X(C) X(H) X(W) X(R) X(S) X(P) X(Q) X(sh) X(sw) X(ph) X(pw) X(dh) X(dw)

// obj.<name> (or obj[name] for a dict) as int64; ValueError naming the field otherwise.
inline int64_t field(py::handle obj, const char* cls, const char* name) {
  py::object v;
  if (py::isinstance<py::dict>(obj)) {
    py::dict d = py::reinterpret_borrow<py::dict>(obj);
    if (!d.contains(name)) throw py::value_error(std::string(cls) + ": missing field " + name);
    v = d[name];
  } else {
    if (!py::hasattr(obj, name))
      throw py::value_error(std::string(cls) + ": missing field " + name);
    v = obj.attr(name);
  }
  if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v))
    throw py::value_error(std::string(cls) + ": field " + name + " must be an int, got " +
                          std::string(py::repr(v)));
  try {
    return v.cast<int64_t>();
  } catch (const py::cast_error&) {
    throw py::value_error(std::string(cls) + ": field " + name + " = " + std::string(py::repr(v)) +
                          " does not fit a 64-bit int");
  }
}

inline Conv2dGeometry conv2d_from(py::handle obj) {
  Conv2dGeometry g{};
#define MINICNN_READ(f) g.f = field(obj, "Conv2dGeometry", #f);
  MINICNN_CONV2D_FIELDS(MINICNN_READ)
#undef MINICNN_READ
  // the Python object's asymmetric extra padding must have been folded in (kernel_geometry)
  if (!py::isinstance<py::dict>(obj) && py::hasattr(obj, "eh") &&
      (field(obj, "Conv2dGeometry", "eh") != 0 || field(obj, "Conv2dGeometry", "ew") != 0))
    throw py::value_error(
        "Conv2dGeometry: extra padding (eh, ew) must be 0; pass g.kernel_geometry");
  return g;
}

inline Pool2dGeometry pool2d_from(py::handle obj) {
  Pool2dGeometry g{};
#define MINICNN_READ(f) g.f = field(obj, "Pool2dGeometry", #f);
  MINICNN_POOL2D_FIELDS(MINICNN_READ)
#undef MINICNN_READ
  return g;
}

// What a function taking a geometry receives: the bound struct, or an object to read.
inline Conv2dGeometry conv2d_geometry(py::handle obj) {
  if (py::isinstance<Conv2dGeometry>(obj)) return obj.cast<Conv2dGeometry>();
  return conv2d_from(obj);
}

inline Pool2dGeometry pool2d_geometry(py::handle obj) {
  if (py::isinstance<Pool2dGeometry>(obj)) return obj.cast<Pool2dGeometry>();
  return pool2d_from(obj);
}

template <class G>
std::string repr(const char* cls, const G& g,
                 std::initializer_list<std::pair<const char*, int64_t>> fields) {
  std::string s = std::string(cls) + "(";
  bool first = true;
  for (const auto& f : fields) {
    s += std::string(first ? "" : ", ") + f.first + "=" + std::to_string(f.second);
    first = false;
  }
  return s + ")";
}

// Binds struct G (fields listed by the X-macro FIELDS) as a class built from keywords or, with
// from_python, from any object with those attributes (read by FROM), with a repr of every field.
#define MINICNN_FIELD(f) cls.def_readonly(#f, &G::f);
#define MINICNN_PAIR(f) {#f, g.f},
#define MINICNN_BIND_GEOMETRY(G_, FIELDS, FROM, doc, init_doc)                            \
  {                                                                                       \
    using G = G_;                                                                         \
    py::class_<G> cls(m, #G_, py::module_local(), doc);                                   \
    cls.def(py::init([](py::kwargs kw) { return FROM(kw); }), init_doc)                   \
        .def_static(                                                                      \
            "from_python", [](py::object obj) { return FROM(obj); },                      \
            "From any object with the fields as attributes (minicnn.ops.geometry's).");   \
    FIELDS(MINICNN_FIELD)                                                                 \
    cls.def("__repr__", [](const G& g) { return repr(#G_, g, {FIELDS(MINICNN_PAIR)}); }); \
  }

inline void bind(py::module_& m) {
  MINICNN_BIND_GEOMETRY(Conv2dGeometry, MINICNN_CONV2D_FIELDS, conv2d_from,
                        "x (N, C, H, W) * w (K, C/G, R, S) -> y (N, K, P, Q); see csrc/geometry.h",
                        "Conv2dGeometry(N=, C=, H=, W=, K=, R=, S=, P=, Q=, sh=, sw=, ph=, pw=, "
                        "dh=, dw=, G=)")
  MINICNN_BIND_GEOMETRY(
      Pool2dGeometry, MINICNN_POOL2D_FIELDS, pool2d_from,
      "x (N, C, H, W) pooled to y (N, C, P, Q); see csrc/geometry.h",
      "Pool2dGeometry(N=, C=, H=, W=, R=, S=, P=, Q=, sh=, sw=, ph=, pw=, dh=, dw=)")
}
#undef MINICNN_BIND_GEOMETRY
#undef MINICNN_PAIR
#undef MINICNN_FIELD

}  // namespace geometry_py
}  // namespace minicnn
