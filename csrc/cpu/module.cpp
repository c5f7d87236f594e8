// minicnn._C_cpu: C++ helpers for the "cpu" device where NumPy alone is slow.
// The Python side (minicnn/backends/numpy_backend.py) checks shapes and dtypes before calling;
// these functions check again and raise ValueError rather than read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "im2col.h"

namespace py = pybind11;
using minicnn::cpu::ConvGeometry;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

static ConvGeometry make_geometry(const py::array& x4, int64_t R, int64_t S, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    ConvGeometry g{x4.shape(0), x4.shape(1), x4.shape(2), x4.shape(3), R, S, sh, sw, ph, pw, dh, dw, 0, 0};
    if (R < 1 || S < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || dh < 1 || dw < 1)
        throw py::value_error("im2col: kernel, stride and dilation must be >= 1 and padding >= 0");
    g.P = (g.H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
    g.Q = (g.W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
    if (g.H + 2 * ph - dh * (R - 1) - 1 < 0 || g.W + 2 * pw - dw * (S - 1) - 1 < 0)
        throw py::value_error("im2col: kernel larger than the padded input");
    return g;
}

template <typename T>
py::array_t<T> im2col(CArray<T> x, int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw, int64_t dh, int64_t dw) {
    if (x.ndim() != 4) throw py::value_error("im2col: x must be (N, C, H, W)");
    ConvGeometry g = make_geometry(x, R, S, sh, sw, ph, pw, dh, dw);
    py::array_t<T> cols({g.N, g.C * R * S, g.P * g.Q});  // (N, C*R*S, P*Q)
    {
        py::gil_scoped_release release;
        minicnn::cpu::im2col<T>(x.data(), cols.mutable_data(), g);
    }
    return cols;
}

template <typename T>
py::array_t<T> col2im(CArray<T> cols, int64_t N, int64_t C, int64_t H, int64_t W, int64_t R,
                      int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                      int64_t dw) {
    py::array_t<T> x({N, C, H, W});  // (N, C, H, W)
    ConvGeometry g = make_geometry(x, R, S, sh, sw, ph, pw, dh, dw);
    if (cols.ndim() != 3 || cols.shape(0) != N || cols.shape(1) != C * R * S ||
        cols.shape(2) != g.P * g.Q)
        throw py::value_error("col2im: cols must be (N, C*R*S, P*Q) = (" + std::to_string(N) + ", " +
                              std::to_string(C * R * S) + ", " + std::to_string(g.P * g.Q) + ")");
    {
        py::gil_scoped_release release;
        minicnn::cpu::col2im<T>(cols.data(), x.mutable_data(), g);
    }
    return x;
}

PYBIND11_MODULE(_C_cpu, m) {
    m.doc() = "minicnn CPU helpers (im2col/col2im), float32 and float64";
    m.def("im2col_f32", &im2col<float>, py::arg("x"), py::arg("R"), py::arg("S"), py::arg("sh"),
          py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));
    m.def("im2col_f64", &im2col<double>, py::arg("x"), py::arg("R"), py::arg("S"), py::arg("sh"),
          py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));
    m.def("col2im_f32", &col2im<float>, py::arg("cols"), py::arg("N"), py::arg("C"), py::arg("H"),
          py::arg("W"), py::arg("R"), py::arg("S"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
          py::arg("pw"), py::arg("dh"), py::arg("dw"));
    m.def("col2im_f64", &col2im<double>, py::arg("cols"), py::arg("N"), py::arg("C"), py::arg("H"),
          py::arg("W"), py::arg("R"), py::arg("S"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
          py::arg("pw"), py::arg("dh"), py::arg("dw"));
}
