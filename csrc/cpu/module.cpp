// minicnn._C_cpu: C++ helpers for the "cpu" device where NumPy alone is slow.
// The Python side (minicnn/backends/_np_*.py) checks shapes and dtypes before calling; these
// functions check again and raise ValueError rather than read out of bounds. Convolutions and
// poolings take the geometry the op computed (minicnn/ops/geometry.py), as the shared structs
// of csrc/geometry.h (bound with named fields by csrc/geometry_py.h, as in the kernel
// bindings). Every kernel exists
// as <name>_f32 and <name>_f64 and runs without the GIL on the thread pool of parallel.h.
//
// Files: parallel.h (the thread pool), im2col.h/.cpp (conv columns), layout.h (batch moves,
// transposes, channel sums), blas.h (GEMM through NumPy's BLAS on the pool), relu.h, batchnorm.h
// and lrn.h (bound in norm_py.h), pool.h. Everything but im2col.cpp is header-only, so setup.py's two sources (module.cpp,
// im2col.cpp) build the whole module. No OpenMP: see parallel.h for why.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <string>

#include "../geometry_py.h"
#include "arrays_py.h"
#include "blas.h"
#include "conv.h"
#include "conv_py.h"
#include "pool_probe.h"
#include "im2col.h"
#include "layout.h"
#include "norm_py.h"
#include "optim_py.h"
#include "parallel.h"
#include "pool.h"
#include "testing.h"

namespace py = pybind11;
using minicnn::Conv2dGeometry;
using minicnn::Pool2dGeometry;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;
using Index = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

static void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

// The array to write into: ``out`` when given (it must be a C-contiguous, writeable array of T
// with exactly ``shape``: results are never written into a silent copy), else a new one.
template <typename T>
static py::array_t<T> output(const py::object& out, const std::vector<py::ssize_t>& shape,
                             const char* what) {
  if (out.is_none()) return py::array_t<T>(shape);
  require(py::isinstance<py::array>(out), std::string(what) + ": out must be a NumPy array");
  py::array a = py::reinterpret_borrow<py::array>(out);
  // isinstance compares dtypes by equivalence: an array unpickled from a worker process has an
  // equal but distinct dtype object, which an identity check (dtype().is) would refuse
  bool same = py::isinstance<py::array_t<T>>(a) &&
              a.ndim() == static_cast<py::ssize_t>(shape.size()) &&
              (a.flags() & py::array::c_style) && a.writeable();
  for (size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  require(same, std::string(what) +
                    ": out must be a writeable C-contiguous array of the result's "
                    "dtype and shape");
  return py::reinterpret_borrow<py::array_t<T>>(out);
}

// ---- im2col / col2im ----------------------------------------------------------------------------
static std::string shape_string(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + ")";
}

static void require_shape(const py::array& a, std::initializer_list<int64_t> shape,
                          const std::string& what) {
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  size_t i = 0;
  for (int64_t d : shape) same = same && a.shape(i++) == d;
  require(same, what + " must have shape " + shape_string(shape));
}

// The geometry of a call, checked so that no loop reads or writes out of bounds (the sizes come
// from Python, which computed P and Q; this checks signs and the window, not the formula).
template <typename Geometry>
static Geometry checked_geometry(const Geometry& g, const char* op) {
  require(g.N >= 0 && g.C >= 0 && g.H >= 0 && g.W >= 0 && g.P >= 0 && g.Q >= 0,
          std::string(op) + ": sizes must be >= 0");
  require(g.R >= 1 && g.S >= 1 && g.sh >= 1 && g.sw >= 1 && g.ph >= 0 && g.pw >= 0 && g.dh >= 1 &&
              g.dw >= 1,
          std::string(op) + ": kernel, stride and dilation must be >= 1 and padding >= 0");
  return g;
}

static Conv2dGeometry conv_geometry(py::handle obj, const char* op) {
  return checked_geometry(minicnn::geometry_py::conv2d_geometry(obj), op);
}

static Pool2dGeometry pool_geometry(py::handle obj, const char* op) {
  return checked_geometry(minicnn::geometry_py::pool2d_geometry(obj), op);
}

template <typename T>
py::array_t<T> im2col(CArray<T> x, py::object geometry, py::object out) {
  const Conv2dGeometry g = conv_geometry(geometry, "im2col");
  require(x.ndim() == 4 && x.shape(0) == g.N && x.shape(1) == g.C && x.shape(2) == g.H &&
              x.shape(3) == g.W,
          "im2col: x must be (N, C, H, W) = " + shape_string({g.N, g.C, g.H, g.W}));
  py::array_t<T> cols = output<T>(out, {g.C * g.R * g.S, g.N * g.P * g.Q}, "im2col");
  {
    py::gil_scoped_release release;
    minicnn::cpu::im2col<T>(x.data(), cols.mutable_data(), g);
  }
  return cols;  // (C*R*S, N*P*Q)
}

template <typename T>
py::array_t<T> col2im(CArray<T> cols, py::object geometry, py::object out) {
  const Conv2dGeometry g = conv_geometry(geometry, "col2im");
  const int64_t CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q;
  require(cols.ndim() == 2 && cols.shape(0) == CRS && cols.shape(1) == NPQ,
          "col2im: cols must be (C*R*S, N*P*Q) = " + shape_string({CRS, NPQ}));
  py::array_t<T> x = output<T>(out, {g.N, g.C, g.H, g.W}, "col2im");  // (N, C, H, W)
  {
    py::gil_scoped_release release;
    minicnn::cpu::col2im<T>(cols.data(), x.mutable_data(), g);
  }
  return x;
}

// ---- batch <-> GEMM columns ---------------------------------------------------------------------
template <typename T>
py::array_t<T> unfold_batch(CArray<T> a, py::object out_arg) {
  require(a.ndim() == 3, "unfold_batch: a must be (N, K, L)");
  const int64_t N = a.shape(0), K = a.shape(1), L = a.shape(2);
  py::array_t<T> out = output<T>(out_arg, {K, N * L}, "unfold_batch");  // (K, N*L)
  {
    py::gil_scoped_release release;
    minicnn::cpu::unfold_batch<T>(a.data(), out.mutable_data(), N, K, L);
  }
  return out;
}

template <typename T>
py::array_t<T> fold_batch(CArray<T> a, int64_t N, std::optional<CArray<T>> bias,
                          py::object out_arg) {
  require(a.ndim() == 2 && N >= 1 && a.shape(1) % N == 0, "fold_batch: a must be (K, N*L)");
  const int64_t K = a.shape(0), L = a.shape(1) / N;
  if (bias) require(bias->ndim() == 1 && bias->shape(0) == K, "fold_batch: bias must be (K,)");
  py::array_t<T> out = output<T>(out_arg, {N, K, L}, "fold_batch");  // (N, K, L)
  const T* b = bias ? bias->data() : nullptr;
  {
    py::gil_scoped_release release;
    minicnn::cpu::fold_batch<T>(a.data(), b, out.mutable_data(), N, K, L);
  }
  return out;
}

template <typename T>
py::array_t<T> channel_sums(CArray<T> a) {
  require(a.ndim() == 3, "channel_sums: a must be (N, C, L)");
  py::array_t<T> sums(a.shape(1));  // (C,)
  {
    py::gil_scoped_release release;
    minicnn::cpu::channel_sums<T>(a.data(), sums.mutable_data(), a.shape(0), a.shape(1),
                                  a.shape(2));
  }
  return sums;
}

template <typename T>
py::array_t<T> transpose(CArray<T> a) {
  require(a.ndim() == 2 || a.ndim() == 3, "transpose: a must be (M, N) or (B, M, N)");
  const bool stacked = a.ndim() == 3;
  const int64_t B = stacked ? a.shape(0) : 1, M = a.shape(stacked), N = a.shape(stacked + 1);
  py::array_t<T> out = stacked ? py::array_t<T>({B, N, M}) : py::array_t<T>({N, M});
  {
    py::gil_scoped_release release;
    minicnn::cpu::transpose<T>(a.data(), out.mutable_data(), B, M, N);
  }
  return out;
}

template <typename T>
py::array_t<T> conv_transpose_kernel(CArray<T> w, int64_t groups) {
  require(w.ndim() == 4 && groups >= 1 && w.shape(0) % groups == 0,
          "conv_transpose_kernel: w must be (K, C/G, R, S) with K divisible by groups");
  const int64_t K = w.shape(0), Cg = w.shape(1), R = w.shape(2), S = w.shape(3), Kg = K / groups;
  py::array_t<T> out({groups * Cg, Kg, R, S});  // (C, K/G, R, S)
  {
    py::gil_scoped_release release;
    minicnn::cpu::conv_transpose_kernel<T>(w.data(), out.mutable_data(), groups, Kg, Cg, R * S);
  }
  return out;
}

// ---- conv2d forward: panels of columns multiplied as they are built (conv.h) -------------------
template <typename T>
py::array_t<T> conv2d_forward(CArray<T> x, CArray<T> w, std::optional<CArray<T>> bias,
                              py::object geometry) {
  const Conv2dGeometry g = conv_geometry(geometry, "conv2d_forward");
  require(minicnn::cpu::Blas::instance().gemm<T>() != nullptr,
          "conv2d_forward: no BLAS registered");
  require(g.G >= 1 && g.C % g.G == 0 && g.K % g.G == 0,
          "conv2d_forward: groups must divide C and K, got G = " + std::to_string(g.G));
  require_shape(x, {g.N, g.C, g.H, g.W}, "conv2d_forward: x");
  require_shape(w, {g.K, g.C / g.G, g.R, g.S}, "conv2d_forward: w");
  if (bias) require_shape(*bias, {g.K}, "conv2d_forward: bias");
  py::array_t<T> y({g.N, g.K, g.P, g.Q});
  const T* b = bias ? bias->data() : nullptr;
  {
    py::gil_scoped_release release;
    minicnn::cpu::conv2d_forward_panels<T>(x.data(), w.data(), b, y.mutable_data(), g);
  }
  return y;
}

// ---- GEMM through NumPy's BLAS ----------------------------------------------------------------
// A 2-D operand as BLAS sees it: row-major, or the transpose of a row-major array (a NumPy
// transposed view), with its leading dimension. Anything else is refused (the caller copies).
template <typename T>
static minicnn::cpu::Operand<T> blas_operand(const py::array& a, const char* what) {
  require(a.ndim() == 2 && py::isinstance<py::array_t<T>>(a),
          std::string("gemm: ") + what + " must be a 2-D array of the kernel's dtype");
  const int64_t it = sizeof(T), rows = a.shape(0), cols = a.shape(1);
  const int64_t s0 = a.strides(0), s1 = a.strides(1);
  const T* data = static_cast<const T*>(a.data());
  if ((s1 == it || cols <= 1) && (rows <= 1 || (s0 % it == 0 && s0 / it >= cols)))
    return {data, false, rows <= 1 ? std::max<int64_t>(1, cols) : s0 / it};
  if ((s0 == it || rows <= 1) && (cols <= 1 || (s1 % it == 0 && s1 / it >= rows)))
    return {data, true, cols <= 1 ? std::max<int64_t>(1, rows) : s1 / it};
  throw py::value_error(std::string("gemm: ") + what +
                        " must be row-major or a transposed "
                        "row-major array");
}

template <typename T>
void gemm(py::array a, py::array b, py::array c, double alpha, double beta) {
  require(minicnn::cpu::Blas::instance().gemm<T>() != nullptr, "gemm: no BLAS registered");
  auto A = blas_operand<T>(a, "a"), B = blas_operand<T>(b, "b");
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  require(b.shape(0) == K && c.ndim() == 2 && c.shape(0) == M && c.shape(1) == N,
          "gemm: shapes must be a (M, K), b (K, N), c (M, N)");
  auto C = blas_operand<T>(c, "c");
  require(!C.trans && c.writeable(), "gemm: c must be a writeable row-major array");
  T* out = static_cast<T*>(c.mutable_data());
  {
    py::gil_scoped_release release;
    minicnn::cpu::parallel_gemm<T>(M, N, K, static_cast<T>(alpha), A, B, static_cast<T>(beta), out,
                                   C.ld);
  }
}

static void set_blas(uintptr_t sgemm, uintptr_t dgemm, uintptr_t set_threads_local) {
  auto& blas = minicnn::cpu::Blas::instance();
  blas.sgemm = reinterpret_cast<minicnn::cpu::CblasGemm<float>>(sgemm);
  blas.dgemm = reinterpret_cast<minicnn::cpu::CblasGemm<double>>(dgemm);
  blas.set_threads_local = reinterpret_cast<minicnn::cpu::SetThreadsLocal>(set_threads_local);
}

// ---- pooling ------------------------------------------------------------------------------------
template <typename T>
py::tuple max_pool2d_forward(CArray<T> x, py::object geometry) {
  const Pool2dGeometry g = pool_geometry(geometry, "max_pool2d_forward");
  require_shape(x, {g.N, g.C, g.H, g.W}, "max_pool2d_forward: x");
  py::array_t<T> y({g.N, g.C, g.P, g.Q});
  py::array_t<int64_t> argmax({g.N, g.C, g.P, g.Q});
  {
    py::gil_scoped_release release;
    minicnn::cpu::max_pool2d_forward<T>(x.data(), y.mutable_data(), argmax.mutable_data(), g);
  }
  return py::make_tuple(y, argmax);
}

template <typename T>
py::array_t<T> max_pool2d_backward(CArray<T> dout, Index argmax, py::object geometry) {
  const Pool2dGeometry g = pool_geometry(geometry, "max_pool2d_backward");
  require_shape(dout, {g.N, g.C, g.P, g.Q}, "max_pool2d_backward: dout");
  require_shape(argmax, {g.N, g.C, g.P, g.Q}, "max_pool2d_backward: argmax");
  py::array_t<T> dx({g.N, g.C, g.H, g.W});
  {
    py::gil_scoped_release release;
    minicnn::cpu::max_pool2d_backward<T>(dout.data(), argmax.data(), dx.mutable_data(), g);
  }
  return dx;
}

// avg_pool2d_forward (a = x, out = y) or _backward (a = dout, out = dx): both divide by divisor.
template <typename T>
py::array_t<T> avg_pool2d(const char* op, bool forward, CArray<T> a, CArray<T> divisor,
                          py::object geometry) {
  const Pool2dGeometry g = pool_geometry(geometry, op);
  const std::string name(op);
  if (forward) {
    require_shape(a, {g.N, g.C, g.H, g.W}, name + ": x");
  } else {
    require_shape(a, {g.N, g.C, g.P, g.Q}, name + ": dout");
  }
  require_shape(divisor, {g.P, g.Q}, name + ": divisor");
  py::array_t<T> out =
      forward ? py::array_t<T>({g.N, g.C, g.P, g.Q}) : py::array_t<T>({g.N, g.C, g.H, g.W});
  {
    py::gil_scoped_release release;
    (forward
         ? minicnn::cpu::avg_pool2d_forward<T>
         : minicnn::cpu::avg_pool2d_backward<T>)(a.data(), divisor.data(), out.mutable_data(), g);
  }
  return out;
}

template <typename T>
py::array_t<T> avg_pool2d_forward(CArray<T> x, CArray<T> divisor, py::object geometry) {
  return avg_pool2d<T>("avg_pool2d_forward", true, x, divisor, geometry);
}

template <typename T>
py::array_t<T> avg_pool2d_backward(CArray<T> dout, CArray<T> divisor, py::object geometry) {
  return avg_pool2d<T>("avg_pool2d_backward", false, dout, divisor, geometry);
}

// ---- the module ---------------------------------------------------------------------------------
#define DEF_BOTH(name, fn, ...)                \
  m.def(name "_f32", &fn<float>, __VA_ARGS__); \
  m.def(name "_f64", &fn<double>, __VA_ARGS__)

PYBIND11_MODULE(_C_cpu, m) {
  m.doc() =
      "minicnn CPU helpers (im2col/col2im, batch layout, ReLU, batch norm, pooling), "
      "float32 and float64, on a passive-waiting thread pool";
  m.def(
      "set_num_threads", [](int n) { minicnn::cpu::ThreadPool::instance().set_num_threads(n); },
      py::arg("n"), "Threads the helpers use (the caller included); 1 runs serially.");
  m.def("get_num_threads", [] { return minicnn::cpu::ThreadPool::instance().num_threads(); });
  m.def(
      "set_deterministic", [](bool on) { minicnn::cpu::deterministic().store(on); }, py::arg("on"),
      "GEMM blocks shaped by the layer only: the same results at any thread count (blas.h).");
  m.def("get_deterministic", [] { return minicnn::cpu::deterministic().load(); });
  minicnn::cpu::bind_testing(m);
  minicnn::cpu::bind_optim(m);
  minicnn::cpu::bind_arrays(m);
  minicnn::cpu::bind_norm(m);
  minicnn::cpu::bind_conv_backward(m);
  minicnn::cpu::bind_pool_probe(m);
  m.def("set_blas", &set_blas, py::arg("sgemm"), py::arg("dgemm"), py::arg("set_threads_local"),
        "Register CBLAS ?gemm functions (addresses; 0 = none) for the gemm_* kernels.");
  m.def("has_blas", [] { return minicnn::cpu::Blas::instance().sgemm != nullptr; });

  minicnn::geometry_py::bind(m);
  const auto none = py::none();
  DEF_BOTH("im2col", im2col, py::arg("x"), py::arg("geometry"), py::arg("out") = none);
  DEF_BOTH("col2im", col2im, py::arg("cols"), py::arg("geometry"), py::arg("out") = none);
  DEF_BOTH("channel_sums", channel_sums, py::arg("a"));
  DEF_BOTH("transpose", transpose, py::arg("a"));
  DEF_BOTH("conv_transpose_kernel", conv_transpose_kernel, py::arg("w"), py::arg("groups"));
  DEF_BOTH("conv2d_forward", conv2d_forward, py::arg("x"), py::arg("w"), py::arg("bias"),
           py::arg("geometry"));
  DEF_BOTH("gemm", gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("alpha") = 1.0,
           py::arg("beta") = 0.0);

  DEF_BOTH("unfold_batch", unfold_batch, py::arg("a"), py::arg("out") = none);
  DEF_BOTH("fold_batch", fold_batch, py::arg("a"), py::arg("N"), py::arg("bias") = none,
           py::arg("out") = none);
  DEF_BOTH("max_pool2d_forward", max_pool2d_forward, py::arg("x"), py::arg("geometry"));
  DEF_BOTH("max_pool2d_backward", max_pool2d_backward, py::arg("dout"), py::arg("argmax"),
           py::arg("geometry"));
  DEF_BOTH("avg_pool2d_forward", avg_pool2d_forward, py::arg("x"), py::arg("divisor"),
           py::arg("geometry"));
  DEF_BOTH("avg_pool2d_backward", avg_pool2d_backward, py::arg("dout"), py::arg("divisor"),
           py::arg("geometry"));
}
