// The Python face of the CUDA kernels: one pybind11 source, compiled into two extensions.
//
//   minicnn._C_cuda   this file (host compiler) + csrc/kernels/*.cu (nvcc), linked with cudart
//   minicnn._C_emu    this file + csrc/emu_kernels.cpp (the same .cu files on the CPU emulator)
//
// Only csrc/kernels/kernels.h is included here: no CUDA header, no emulator, so the same object
// code serves both. Every launcher is bound by def_launcher: the Python function takes the dtype
// ("float32", "float64", "float16", "bfloat16": the float, double, __half or __nv_bfloat16
// instantiation; __half and __nv_bfloat16 are only declared here), then the launcher's own
// arguments by name, with device pointers and the stream handle as ints (`a.data.ptr` of a CuPy
// array, `a.ctypes.data` of a NumPy array; stream 0 is the default stream) and 64-bit ints for its
// int arguments (checked to fit: a ValueError naming the argument, never pybind11's signature
// dump). A convolution or pooling comes as the checked Conv2dArgs / Pool2dArgs that
// conv2d_check / pool2d_check return for a geometry (csrc/geometry.h, minicnn/ops/geometry.py):
// the one check of a call, made by the Python side before it allocates anything.
//
// The Python side (minicnn/backends/_kernel_backend.py) checks shapes, dtypes and contiguity and
// allocates the outputs; this layer only rejects what would make a kernel read out of bounds
// (negative sizes, a missing pointer). The GIL is released while a launcher runs (the emulator
// executes the whole kernel then). A failed launch or a fault in a kernel throws
// std::runtime_error "kernel <name>: ..." -> RuntimeError.
#include <pybind11/pybind11.h>

#include <array>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "geometry_py.h"
#include "kernels/kernels.h"

namespace py = pybind11;
namespace k = minicnn::kernels;

namespace {

// ---- one binding per launcher -------------------------------------------------------------------
// How a launcher argument of type A reaches Python, and back: pointers (the stream included) as
// ints, int as a checked 64-bit int, everything else as itself.
template <class A>
struct Arg {
  using type = A;
  static A from(const char*, const char*, A v) { return v; }
};
template <class T>
struct Arg<T*> {
  using type = uintptr_t;
  static T* from(const char*, const char*, uintptr_t v) { return reinterpret_cast<T*>(v); }
};
template <>
struct Arg<int> {
  using type = int64_t;
  static int from(const char* op, const char* name, int64_t v) {
    if (v < INT32_MIN || v > INT32_MAX)
      throw py::value_error(std::string(op) + ": " + name + " = " + std::to_string(v) +
                            " does not fit a 32-bit int");
    return int(v);
  }
};
template <class A>
struct Arg<const A&> {
  using type = const A&;
  static const A& from(const char*, const char*, const A& v) { return v; }
};

// The dtype names the bindings take, in the order of def_launcher's launchers.
constexpr std::array<const char*, 4> kDtypeNames = {"float32", "float64", "float16", "bfloat16"};

int dtype_index(const char* op, const std::string& dtype, size_t launchers) {
  std::string known;
  for (size_t i = 0; i < launchers; ++i) {
    if (dtype == kDtypeNames[i]) return int(i);
    known += (i ? i + 1 == launchers ? " or " : ", " : "") + std::string(kDtypeNames[i]);
  }
  throw py::type_error(std::string(op) + ": the CUDA kernels take " + known + ", got " + dtype);
}

// Convert the Python arguments to launcher f's types and run it without the GIL.
template <class... A, class... P, size_t... I>
void call_launcher(const char* op, const std::array<const char*, sizeof...(A)>& names,
                   void (*f)(A...), std::index_sequence<I...>, P... a) {
  auto args = std::make_tuple(Arg<A>::from(op, names[I], a)...);
  py::gil_scoped_release release;
  std::apply(f, args);
}

template <class Check, class... A, class... F, size_t... I>
void def_launcher(py::module_& m, const char* op, std::array<const char*, sizeof...(A)> names,
                  Check check, std::index_sequence<I...> seq, void (*f)(A...), F... more) {
  static_assert(sizeof...(F) < kDtypeNames.size(), "more launchers than dtype names");
  for (const char* name : names)
    if (name == nullptr) throw std::logic_error(std::string(op) + ": an argument has no name");
  m.def(
      op,
      [op, names, check, seq, f, more...](const std::string& dtype, typename Arg<A>::type... a) {
        check(op, a...);
        const int which = dtype_index(op, dtype, sizeof...(F) + 1);
        int i = 0;
        if (which == i++) return call_launcher(op, names, f, seq, a...);
        (void)((which == i++ && (call_launcher(op, names, more, seq, a...), true)) || ...);
      },
      py::arg("dtype"), py::arg(names[I])...);
}

// Bind the instantiations of a launcher as one function `op` taking the dtype name first: f (for
// float32), then the others in kDtypeNames' order. `names` name the launcher's arguments;
// `check(op, python arguments...)` rejects what would read out of bounds.
template <class Check, class... A, class... F>
void def_launcher(py::module_& m, const char* op, std::array<const char*, sizeof...(A)> names,
                  Check check, void (*f)(A...), F... more) {
  def_launcher(m, op, names, check, std::index_sequence_for<A...>{}, f, more...);
}

// The four instantiations of a launcher template, in kDtypeNames' order.
#define MINICNN_ALL_DTYPES(launcher) \
  &launcher<float>, &launcher<double>, &launcher<__half>, &launcher<__nv_bfloat16>

void check_sizes(const char* op, std::initializer_list<int64_t> sizes) {
  for (int64_t s : sizes)
    if (s < 0)
      throw py::value_error(std::string(op) + ": sizes must be >= 0, got " + std::to_string(s));
}

void check_pointers(const char* op, int64_t n, std::initializer_list<uintptr_t> pointers) {
  if (n == 0) return;
  for (uintptr_t p : pointers)
    if (p == 0) throw py::value_error(std::string(op) + ": a required buffer pointer is null");
}

// ---- pooling: buffers checked by name -----------------------------------------------------------
// Where a pool launcher's arguments a... (named by names) hold buffers, each must be non-null when
// its array has elements: inp and dinp the input's N·C·H·W, out, dout and argmax the output's
// N·C·P·Q (the Pool2d among a... says).
const k::Pool2d* geometry_in(const k::Pool2d& g, const k::Pool2d*) {
  return &g;
}
template <class X>
const k::Pool2d* geometry_in(const X&, const k::Pool2d* g) {
  return g;
}
void check_pool_buffer(const char* op, const std::string& name, uintptr_t p, const k::Pool2d& g) {
  if (name == "inp" || name == "dinp") check_pointers(op, g.N * g.C * g.H * g.W, {p});
  if (name == "out" || name == "dout" || name == "argmax")
    check_pointers(op, g.N * g.C * g.P * g.Q, {p});
}
template <class X>
void check_pool_buffer(const char*, const std::string&, const X&, const k::Pool2d&) {}

// def_launcher for a pool launcher: its check is check_pool_buffer on every argument.
template <class... A, class... F>
void def_pool_launcher(py::module_& m, const char* op, std::array<const char*, sizeof...(A)> names,
                       void (*f)(A...), F... more) {
  auto check = [names](const char* op, const auto&... a) {
    const k::Pool2d* g = nullptr;
    ((g = geometry_in(a, g)), ...);
    size_t i = 0;
    (check_pool_buffer(op, names[i++], a, *g), ...);
  };
  def_launcher(m, op, names, check, f, more...);
}

// Bind the checked-geometry class Args as `name` (its fields added by fields(class)) and the
// function `check_name`: a geometry (read by from) -> Args through check, std::invalid_argument ->
// ValueError.
template <class Args, class Geometry, class Fields>
void bind_checked_geometry(py::module_& m, const char* name, const char* check_name,
                           const char* check_doc, Fields fields, Args (*check)(const Geometry&),
                           Geometry (*from)(py::handle)) {
  const std::string doc =
      std::string("A checked geometry as the kernels take it; made by ") + check_name + ".";
  py::class_<Args> cls(m, name, py::module_local(), doc.c_str());
  fields(cls);
  m.def(
      check_name,
      [check, from](py::object geometry) {
        try {
          return check(from(geometry));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("geometry"), check_doc);
}

// In a fields function: field f of class G (geometry_py.h's X-macros list them) as a read-only
// attribute of cls.
#define MINICNN_READONLY(f) cls.def_readonly(#f, &G::f);

// ---- the bindings, one family at a time ---------------------------------------------------------
void bind_relu(py::module_& m) {
  def_launcher(
      m, "relu_forward", {"out", "inp", "n", "stream"},
      [](const char* op, uintptr_t out, uintptr_t inp, int64_t n, auto) {
        check_sizes(op, {n});
        check_pointers(op, n, {out, inp});
      },
      MINICNN_ALL_DTYPES(k::relu_forward));
  def_launcher(
      m, "relu_backward", {"dinp", "dout", "out", "n", "stream"},
      [](const char* op, uintptr_t dinp, uintptr_t dout, uintptr_t out, int64_t n, auto) {
        check_sizes(op, {n});
        check_pointers(op, n, {dinp, dout, out});
      },
      MINICNN_ALL_DTYPES(k::relu_backward));
}

void bind_pool(py::module_& m) {
  bind_checked_geometry(
      m, "Pool2dArgs", "pool2d_check",
      "The kernels' Pool2dArgs for a Pool2dGeometry; ValueError when they can't run it.",
      [](auto& cls) {
        using G = k::Pool2d;
        MINICNN_POOL2D_FIELDS(MINICNN_READONLY)
      },
      &k::pool2d_check, &minicnn::geometry_py::pool2d_geometry);
  def_pool_launcher(m, "max_pool2d_forward", {"out", "argmax", "inp", "geometry", "stream"},
                    MINICNN_ALL_DTYPES(k::max_pool2d_forward));
  def_pool_launcher(m, "max_pool2d_backward",
                    {"dinp", "dout", "argmax", "geometry", "version", "stream"},
                    MINICNN_ALL_DTYPES(k::max_pool2d_backward));
  def_pool_launcher(m, "avg_pool2d_forward",
                    {"out", "inp", "geometry", "count_include_pad", "divisor_override", "stream"},
                    MINICNN_ALL_DTYPES(k::avg_pool2d_forward));
  def_pool_launcher(m, "avg_pool2d_backward",
                    {"dinp", "dout", "geometry", "count_include_pad", "divisor_override", "stream"},
                    MINICNN_ALL_DTYPES(k::avg_pool2d_backward));
  def_pool_launcher(m, "adaptive_avg_pool2d_forward", {"out", "inp", "geometry", "stream"},
                    MINICNN_ALL_DTYPES(k::adaptive_avg_pool2d_forward));
  def_pool_launcher(m, "adaptive_avg_pool2d_backward", {"dinp", "dout", "geometry", "stream"},
                    MINICNN_ALL_DTYPES(k::adaptive_avg_pool2d_backward));
}

void bind_lrn(py::module_& m) {
  def_launcher(
      m, "local_response_norm_forward",
      {"out", "scale", "inp", "N", "C", "HW", "size", "alpha", "beta", "k", "stream"},
      [](const char* op, uintptr_t out, uintptr_t scale, uintptr_t inp, int64_t N, int64_t C,
         int64_t HW, int64_t size, auto...) {
        check_sizes(op, {N, C, HW});
        if (size < 1) throw py::value_error(std::string(op) + ": size must be >= 1");
        check_pointers(op, N * C * HW, {out, scale, inp});
      },
      MINICNN_ALL_DTYPES(k::local_response_norm_forward));
  def_launcher(
      m, "local_response_norm_backward",
      {"dinp", "dout", "inp", "scale", "N", "C", "HW", "size", "alpha", "beta", "stream"},
      [](const char* op, uintptr_t dinp, uintptr_t dout, uintptr_t inp, uintptr_t scale, int64_t N,
         int64_t C, int64_t HW, int64_t size, auto...) {
        check_sizes(op, {N, C, HW});
        if (size < 1) throw py::value_error(std::string(op) + ": size must be >= 1");
        check_pointers(op, N * C * HW, {dinp, dout, inp, scale});
      },
      MINICNN_ALL_DTYPES(k::local_response_norm_backward));
}

void bind_batchnorm(py::module_& m) {
  // weight, bias, running_mean, running_var: 0 for None.
  def_launcher(
      m, "batch_norm_forward_training",
      {"out", "mean", "invstd", "running_mean", "running_var", "inp", "weight", "bias", "N", "C",
       "HW", "momentum", "eps", "stream"},
      [](const char* op, uintptr_t out, uintptr_t mean, uintptr_t invstd, uintptr_t, uintptr_t,
         uintptr_t inp, uintptr_t, uintptr_t, int64_t N, int64_t C, int64_t HW, auto...) {
        check_sizes(op, {N, C, HW});
        check_pointers(op, N * C * HW, {out, mean, invstd, inp});
      },
      MINICNN_ALL_DTYPES(k::batch_norm_forward_training));
  def_launcher(
      m, "batch_norm_forward_inference",
      {"out", "mean", "invstd", "inp", "weight", "bias", "running_mean", "running_var", "N", "C",
       "HW", "eps", "stream"},
      [](const char* op, uintptr_t out, uintptr_t mean, uintptr_t invstd, uintptr_t inp, uintptr_t,
         uintptr_t, uintptr_t running_mean, uintptr_t running_var, int64_t N, int64_t C, int64_t HW,
         auto...) {
        check_sizes(op, {N, C, HW});
        check_pointers(op, C, {mean, invstd, running_mean, running_var});
        check_pointers(op, N * C * HW, {out, inp});
      },
      MINICNN_ALL_DTYPES(k::batch_norm_forward_inference));
  def_launcher(
      m, "batch_norm_backward",
      {"dinp", "dweight", "dbias", "dout", "inp", "weight", "mean", "invstd", "N", "C", "HW",
       "training", "stream"},
      [](const char* op, uintptr_t dinp, uintptr_t dweight, uintptr_t dbias, uintptr_t dout,
         uintptr_t inp, uintptr_t, uintptr_t mean, uintptr_t invstd, int64_t N, int64_t C,
         int64_t HW, auto...) {
        check_sizes(op, {N, C, HW});
        check_pointers(op, C, {dweight, dbias, mean, invstd});
        check_pointers(op, N * C * HW, {dinp, dout, inp});
      },
      MINICNN_ALL_DTYPES(k::batch_norm_backward));
}

void bind_conv2d(py::module_& m) {
  bind_checked_geometry(
      m, "Conv2dArgs", "conv2d_check",
      "The kernels' Conv2dArgs for a Conv2dGeometry; ValueError when they can't run it (too large "
      "for their indices or grid). Nothing is allocated or launched.",
      [](auto& cls) {
        using G = k::Conv2d;
        MINICNN_CONV2D_FIELDS(MINICNN_READONLY)
      },
      &k::conv2d_check, &minicnn::geometry_py::conv2d_geometry);
  m.def(
      "conv2d_backward_weight_splits",
      [](const k::Conv2d& g, int64_t tile) {  // std::invalid_argument -> ValueError (pybind11)
        return k::conv2d_backward_weight_splits(
            g, Arg<int>::from("conv2d_backward_weight_splits", "tile", tile));
      },
      py::arg("geometry"), py::arg("tile"));
  m.def(
      "conv2d_splits",
      [](const k::Conv2d& g, int64_t pass, int64_t version, int64_t tile) {
        return k::conv2d_splits(g, Arg<int>::from("conv2d_splits", "pass", pass),
                                Arg<int>::from("conv2d_splits", "version", version),
                                Arg<int>::from("conv2d_splits", "tile", tile));
      },
      py::arg("geometry"), py::arg("pass"), py::arg("version"), py::arg("tile"),
      "How many slices a pass (0 forward, 1 backward data, 2 backward weight) splits its "
      "reduction into.");
  m.def("_conv2d_wmma_launches", &k::conv2d_wmma_launches,
        "Tensor-core (version 4) convolution launches so far in this process (tests).");
  m.def("_conv2d_wmma_nhwc_launches", &k::conv2d_wmma_nhwc_launches,
        "Those of them that ran on the NHWC path (tests).");
  // bias, workspace: 0 for none; tile 0: by shape.
  using G = const k::Conv2d&;
  def_launcher(
      m, "conv2d_forward",
      {"out", "inp", "weight", "bias", "geometry", "version", "tile", "splits", "workspace",
       "stream"},
      [](const char* op, uintptr_t out, uintptr_t inp, uintptr_t weight, uintptr_t, G g, auto...) {
        check_pointers(op, g.N * g.K * g.P * g.Q, {out, inp, weight});
      },
      MINICNN_ALL_DTYPES(k::conv2d_forward));
  def_launcher(
      m, "conv2d_backward_data",
      {"dinp", "dout", "weight", "geometry", "version", "tile", "splits", "workspace", "stream"},
      [](const char* op, uintptr_t dinp, uintptr_t dout, uintptr_t weight, G g, auto...) {
        check_pointers(op, g.N * g.C * g.H * g.W, {dinp, dout, weight});
      },
      MINICNN_ALL_DTYPES(k::conv2d_backward_data));
  def_launcher(
      m, "conv2d_backward_weight",
      {"dweight", "workspace", "dout", "inp", "geometry", "version", "tile", "splits", "stream"},
      [](const char* op, uintptr_t dweight, uintptr_t, uintptr_t dout, uintptr_t inp, G g,
         auto...) {
        check_pointers(op, 1, {dweight});
        check_pointers(op, g.N * g.P * g.Q, {dout, inp});
      },
      MINICNN_ALL_DTYPES(k::conv2d_backward_weight));
  def_launcher(
      m, "conv2d_backward_bias", {"dbias", "dout", "N", "K", "PQ", "stream"},
      [](const char* op, uintptr_t dbias, uintptr_t dout, int64_t N, int64_t K, int64_t PQ, auto) {
        check_sizes(op, {N, K, PQ});
        check_pointers(op, K, {dbias});
        check_pointers(op, N * K * PQ, {dout});
      },
      MINICNN_ALL_DTYPES(k::conv2d_backward_bias));
}

template <class T>
struct Tag {  // a type as a value
  using type = T;
};

// f(Tag<T>{}) for the T that dtype names: float16, bfloat16 and (kFloat32) float32; else a
// TypeError naming op.
template <bool kFloat32, class F>
void with_half_type(const char* op, const std::string& dtype, F f) {
  if (dtype == "float16") return f(Tag<__half>{});
  if (dtype == "bfloat16") return f(Tag<__nv_bfloat16>{});
  if constexpr (kFloat32)
    if (dtype == "float32") return f(Tag<float>{});
  throw py::type_error(std::string(op) + ": dtype must be float16" +
                       (kFloat32 ? ", bfloat16 or float32" : " or bfloat16") + ", got " + dtype);
}

// cast_to_float / cast_from_float(dtype, out, inp, n, stream): float32 from / to dtype
// "float16" or "bfloat16" (csrc/kernels/cast.cu).
void bind_cast(py::module_& m) {
  for (bool to_float : {true, false}) {
    const char* op = to_float ? "cast_to_float" : "cast_from_float";
    m.def(
        op,
        [op, to_float](const std::string& dtype, uintptr_t out, uintptr_t inp, int64_t n,
                       uintptr_t stream) {
          check_sizes(op, {n});
          check_pointers(op, n, {out, inp});
          with_half_type<false>(op, dtype, [&](auto tag) {
            using T = typename decltype(tag)::type;
            auto s = reinterpret_cast<cudaStream_t>(stream);
            py::gil_scoped_release release;
            if (to_float)
              k::cast_to_float<T>(reinterpret_cast<float*>(out), reinterpret_cast<T*>(inp), n, s);
            else
              k::cast_from_float<T>(reinterpret_cast<T*>(out), reinterpret_cast<float*>(inp), n, s);
          });
        },
        py::arg("dtype"), py::arg("out"), py::arg("inp"), py::arg("n"), py::arg("stream") = 0);
  }
}

// wmma_gemm(dtype, d, a, b, c, M, N, K, a_row_major, b_row_major, stream):
// csrc/kernels/wmma_gemm.cu, for dtype "float16", "bfloat16" or "float32" (as tf32); c may be 0.
void bind_wmma_gemm(py::module_& m) {
  m.def(
      "wmma_gemm",
      [](const std::string& dtype, uintptr_t d, uintptr_t a, uintptr_t b, uintptr_t c, int M, int N,
         int K, bool a_row_major, bool b_row_major, uintptr_t stream) {
        check_sizes("wmma_gemm", {M, N, K});
        check_pointers("wmma_gemm", int64_t(M) * N, {d, a, b});
        with_half_type<true>("wmma_gemm", dtype, [&](auto tag) {
          using T = typename decltype(tag)::type;
          py::gil_scoped_release release;
          k::wmma_gemm<T>(reinterpret_cast<float*>(d), reinterpret_cast<const T*>(a),
                          reinterpret_cast<const T*>(b), reinterpret_cast<const float*>(c), M, N, K,
                          a_row_major, b_row_major, reinterpret_cast<cudaStream_t>(stream));
        });
      },
      py::arg("dtype"), py::arg("d"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("M"),
      py::arg("N"), py::arg("K"), py::arg("a_row_major"), py::arg("b_row_major"),
      py::arg("stream") = 0);
}

void bind_runtime(py::module_& m, const char* device) {
  m.attr("device") = device;
  m.def(
      "device_info",
      [] {
        k::DeviceInfo info = k::device_info();
        py::dict d;
        d["usable"] = info.usable;
        d["reason"] = info.reason;
        d["name"] = info.name;
        d["compute_capability"] = py::make_tuple(info.major, info.minor);
        d["runtime_version"] = info.runtime_version;
        d["driver_version"] = info.driver_version;
        return d;
      },
      "Whether kernels can run here, and on what (a dict).");
  m.def(
      "synchronize",
      [] {
        py::gil_scoped_release release;
        k::synchronize();
      },
      "Wait for every queued kernel.");
  // Test hooks for the error paths (csrc/kernels/selftest.cu); never call _selftest_trap on a GPU
  // you want to keep using: __trap() ruins the CUDA context of the process.
  m.def(
      "_selftest_trap",
      [](int blocks, int threads, int trap_block, int trap_thread, uintptr_t stream) {
        py::gil_scoped_release release;
        k::selftest_trap(blocks, threads, trap_block, trap_thread,
                         Arg<cudaStream_t>::from("", "", stream));
      },
      py::arg("blocks"), py::arg("threads"), py::arg("trap_block") = -1,
      py::arg("trap_thread") = -1, py::arg("stream") = 0);
  m.def(
      "_selftest_divergent_barrier",
      [](int threads, int early, uintptr_t stream) {
        py::gil_scoped_release release;
        k::selftest_divergent_barrier(threads, early, Arg<cudaStream_t>::from("", "", stream));
      },
      py::arg("threads"), py::arg("early"), py::arg("stream") = 0);
#ifdef MINICNN_CUDA_ARCHS
  m.attr("cuda_archs") = MINICNN_CUDA_ARCHS;  // e.g. "75,80,86,89,90+PTX", set by setup.py
#endif
}

void bind_random_and_optim(py::module_& m);  // at the end of this file

void define_module(py::module_& m, const char* device) {
  minicnn::geometry_py::bind(m);
  bind_relu(m);
  bind_pool(m);
  bind_lrn(m);
  bind_batchnorm(m);
  bind_conv2d(m);
  bind_cast(m);
  bind_wmma_gemm(m);
  bind_runtime(m, device);
  bind_random_and_optim(m);
}

}  // namespace

#ifdef MINICNN_BUILD_CUDA
PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "minicnn's CUDA kernels, built by nvcc (device \"cuda\"); see csrc/bindings.cpp";
  define_module(m, "cuda");
}
#else
PYBIND11_MODULE(_C_emu, m) {
  m.doc() = "minicnn's CUDA kernels on the CPU emulator (device \"emu\"); see csrc/bindings.cpp";
  define_module(m, "emu");
}
#endif

// ---- random.cu and optim.cu ---------------------------------------------------------------------
namespace {

// The dtype-dispatch of a launcher templated on T alone (its arguments are the same for both).
template <class F32, class F64, class... A>
void dispatch(const char* op, const std::string& dtype, F32 f32, F64 f64, A... a) {
  if (dtype != "float32" && dtype != "float64")
    throw py::type_error(std::string(op) + ": the CUDA kernels take float32 or float64, got " +
                         dtype);
  py::gil_scoped_release release;
  if (dtype == "float32")
    f32(a...);
  else
    f64(a...);
}

void check_table(const char* op, uintptr_t table, int64_t tensors, int64_t chunks) {
  check_sizes(op, {tensors, chunks});
  if (tensors > INT32_MAX)
    throw py::value_error(std::string(op) + ": tensors = " + std::to_string(tensors) +
                          " does not fit a 32-bit int");
  check_pointers(op, tensors, {table});  // table_host 0: the device's table is current
}

// The table checks, then launcher f32 or f64 of an optimizer update by dtype.
template <class Scalars>
using UpdateLauncher = void (*)(int64_t*, const int64_t*, int, int64_t, Scalars, cudaStream_t);
template <class Scalars>
void run_update(const char* op, const std::string& dtype, UpdateLauncher<Scalars> f32,
                UpdateLauncher<Scalars> f64, uintptr_t table, uintptr_t table_host, int64_t tensors,
                int64_t chunks, Scalars s, uintptr_t stream) {
  check_table(op, table, tensors, chunks);
  dispatch(op, dtype, f32, f64, reinterpret_cast<int64_t*>(table),
           reinterpret_cast<const int64_t*>(table_host), int(tensors), chunks, s,
           reinterpret_cast<cudaStream_t>(stream));
}

void bind_random_and_optim(py::module_& m) {
  def_launcher(
      m, "dropout_mask", {"mask", "n", "threshold", "scale", "seed", "stream"},
      [](const char* op, uintptr_t mask, int64_t n, uint64_t threshold, auto, uint64_t, auto) {
        check_sizes(op, {n});
        check_pointers(op, n, {mask});
        if (threshold > (uint64_t(1) << 32))
          throw py::value_error(std::string(op) + ": threshold = " + std::to_string(threshold) +
                                " exceeds 2^32");
      },
      &k::dropout_mask<float>, &k::dropout_mask<double>);
  m.def(
      "philox4x32",
      [](uintptr_t out, int64_t lanes, uint64_t seed, uint64_t offset, uintptr_t stream) {
        check_sizes("philox4x32", {lanes});
        check_pointers("philox4x32", lanes, {out});
        py::gil_scoped_release release;
        k::philox4x32_raw(reinterpret_cast<uint32_t*>(out), lanes, seed, offset,
                          reinterpret_cast<cudaStream_t>(stream));
      },
      py::arg("out"), py::arg("lanes"), py::arg("seed"), py::arg("offset"), py::arg("stream") = 0,
      "out (lanes, 4) uint32: Philox4x32-10 of counters offset.. under key seed (for tests).");
  m.attr("optim_chunk_size") = k::optim_chunk_size();
  m.attr("optim_table_columns") = k::kOptimTableColumns;
  m.def(
      "sgd_update",
      [](const std::string& dtype, uintptr_t table, uintptr_t table_host, int64_t tensors,
         int64_t chunks, double lr, double momentum, double one_minus_dampening,
         double weight_decay, bool nesterov, bool first_step, uintptr_t stream) {
        k::SgdScalars s{lr, momentum, one_minus_dampening, weight_decay, nesterov, first_step};
        run_update("sgd_update", dtype, &k::sgd_update<float>, &k::sgd_update<double>, table,
                   table_host, tensors, chunks, s, stream);
      },
      py::arg("dtype"), py::arg("table"), py::arg("table_host"), py::arg("tensors"),
      py::arg("chunks"), py::arg("lr"), py::arg("momentum"), py::arg("one_minus_dampening"),
      py::arg("weight_decay"), py::arg("nesterov"), py::arg("first_step"), py::arg("stream"));
  m.def(
      "adam_update",
      [](const std::string& dtype, uintptr_t table, uintptr_t table_host, int64_t tensors,
         int64_t chunks, double step_size, double bias_correction2_sqrt, double beta1, double beta2,
         double eps, double weight_decay, bool decoupled, double decoupled_factor, bool amsgrad,
         uintptr_t stream) {
        k::AdamScalars s{
            step_size,    bias_correction2_sqrt, beta1,     beta2,  1 - beta1, 1 - beta2, eps,
            weight_decay, decoupled_factor,      decoupled, amsgrad};
        run_update("adam_update", dtype, &k::adam_update<float>, &k::adam_update<double>, table,
                   table_host, tensors, chunks, s, stream);
      },
      py::arg("dtype"), py::arg("table"), py::arg("table_host"), py::arg("tensors"),
      py::arg("chunks"), py::arg("step_size"), py::arg("bias_correction2_sqrt"), py::arg("beta1"),
      py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
      py::arg("decoupled_factor"), py::arg("amsgrad"), py::arg("stream"));
}

}  // namespace
