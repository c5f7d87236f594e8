// The Python face of the CUDA kernels: one pybind11 source, compiled into two extensions.
//
//   minicnn._C_cuda   this file (host compiler) + csrc/kernels/*.cu (nvcc), linked with cudart
//   minicnn._C_emu    this file + csrc/emu_kernels.cpp (the same .cu files on the CPU emulator)
//
// Only csrc/kernels/kernels.h is included here: no CUDA header, no emulator, so the same object
// code serves both. Every function takes raw device pointers (Python ints: `a.data.ptr` of a CuPy
// array, `a.ctypes.data` of a NumPy array), sizes, and a stream handle (an int; 0 is the default
// stream). The Python side (minicnn/backends/_kernel_backend.py) checks shapes, dtypes and
// contiguity and allocates the outputs; this layer only rejects what would make a kernel read out
// of bounds (negative sizes, a missing pointer) and picks the float or double kernel by `dtype`.
//
// The GIL is released while a launcher runs (the emulator executes the whole kernel then). A failed
// launch or a fault in a kernel throws std::runtime_error "kernel <name>: ..." → RuntimeError.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

namespace py = pybind11;
namespace k = minicnn::kernels;

namespace {

template <class T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

cudaStream_t stream_of(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// Call f(T{}) with T = float or double as `dtype` names ("float32" / "float64").
template <class F>
void dispatch(const char* op, const std::string& dtype, F&& f) {
  if (dtype == "float32") {
    f(float{});
  } else if (dtype == "float64") {
    f(double{});
  } else {
    throw py::type_error(std::string(op) + ": the CUDA kernels take float32 or float64, got " + dtype);
  }
}

// Run a launcher without the GIL.
template <class F>
void launch(F&& f) {
  py::gil_scoped_release release;
  f();
}

void check_sizes(const char* op, std::initializer_list<int64_t> sizes) {
  for (int64_t s : sizes)
    if (s < 0) throw py::value_error(std::string(op) + ": sizes must be >= 0, got " + std::to_string(s));
}

void check_pointers(const char* op, int64_t n, std::initializer_list<uintptr_t> pointers) {
  if (n == 0) return;
  for (uintptr_t p : pointers)
    if (p == 0) throw py::value_error(std::string(op) + ": a required buffer pointer is null");
}

k::Pool2d pool_geometry(const char* op, py::tuple t) {
  if (t.size() != 14)
    throw py::value_error(std::string(op) + ": geometry must be (N, C, H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw)");
  auto i = [&](size_t j) { return t[j].cast<int64_t>(); };
  k::Pool2d g{i(0), i(1), int(i(2)), int(i(3)), int(i(4)), int(i(5)), int(i(6)), int(i(7)),
              int(i(8)), int(i(9)), int(i(10)), int(i(11)), int(i(12)), int(i(13))};
  check_sizes(op, {g.N, g.C, g.H, g.W, g.P, g.Q, g.ph, g.pw});
  if (g.R < 1 || g.S < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    throw py::value_error(std::string(op) + ": window, stride and dilation must be >= 1");
  return g;
}

// The tuple (N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G) of kernels::Conv2d, checked by
// kernels::conv2d_check (inconsistent or too large for the kernels' indices -> ValueError).
k::Conv2d conv_geometry(const char* op, py::tuple t) {
  if (t.size() != 16)
    throw py::value_error(std::string(op) + ": geometry must be (N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G)");
  int64_t v[16];
  for (size_t j = 0; j < 16; ++j) {
    v[j] = t[j].cast<int64_t>();
    if (j > 0 && (v[j] > INT32_MAX || v[j] < INT32_MIN))
      throw py::value_error(std::string(op) + ": geometry entry " + std::to_string(j) + " = " + std::to_string(v[j]) +
                            " does not fit a 32-bit int (a single extent must be < 2^31)");
  }
  auto i = [&](size_t j) { return int(v[j]); };
  k::Conv2d g{v[0], i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11), i(12), i(13), i(14), i(15)};
  try {
    k::conv2d_check(g);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string(op) + ": " + e.what());
  }
  return g;
}

// ---- the bindings, one family at a time -------------------------------------------------------------
void bind_relu(py::module_& m) {
  m.def("relu_forward", [](const std::string& dtype, uintptr_t out, uintptr_t inp, int64_t n, uintptr_t stream) {
    check_sizes("relu_forward", {n});
    check_pointers("relu_forward", n, {out, inp});
    dispatch("relu_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::relu_forward<T>(ptr<T>(out), ptr<const T>(inp), n, stream_of(stream)); });
    });
  }, py::arg("dtype"), py::arg("out"), py::arg("inp"), py::arg("n"), py::arg("stream"));
  m.def("relu_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout, uintptr_t out, int64_t n,
                            uintptr_t stream) {
    check_sizes("relu_backward", {n});
    check_pointers("relu_backward", n, {dinp, dout, out});
    dispatch("relu_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::relu_backward<T>(ptr<T>(dinp), ptr<const T>(dout), ptr<const T>(out), n, stream_of(stream)); });
    });
  }, py::arg("dtype"), py::arg("dinp"), py::arg("dout"), py::arg("out"), py::arg("n"), py::arg("stream"));
}

void bind_pool(py::module_& m) {
  // geometry: the tuple (N, C, H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw) of kernels::Pool2d.
  m.def("max_pool2d_forward", [](const std::string& dtype, uintptr_t out, uintptr_t argmax, uintptr_t inp,
                                 py::tuple geometry, uintptr_t stream) {
    k::Pool2d g = pool_geometry("max_pool2d_forward", geometry);
    check_pointers("max_pool2d_forward", g.N * g.C * g.P * g.Q, {out, argmax, inp});
    dispatch("max_pool2d_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::max_pool2d_forward<T>(ptr<T>(out), ptr<int64_t>(argmax), ptr<const T>(inp), g, stream_of(stream)); });
    });
  });
  m.def("max_pool2d_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout, uintptr_t argmax,
                                  py::tuple geometry, int version, uintptr_t stream) {
    k::Pool2d g = pool_geometry("max_pool2d_backward", geometry);
    check_pointers("max_pool2d_backward", g.N * g.C * g.H * g.W, {dinp});
    check_pointers("max_pool2d_backward", g.N * g.C * g.P * g.Q, {dout, argmax});
    dispatch("max_pool2d_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::max_pool2d_backward<T>(ptr<T>(dinp), ptr<const T>(dout), ptr<const int64_t>(argmax), g, version,
                                  stream_of(stream));
      });
    });
  });
  m.def("avg_pool2d_forward", [](const std::string& dtype, uintptr_t out, uintptr_t inp, py::tuple geometry,
                                 bool count_include_pad, int64_t divisor_override, uintptr_t stream) {
    k::Pool2d g = pool_geometry("avg_pool2d_forward", geometry);
    check_pointers("avg_pool2d_forward", g.N * g.C * g.P * g.Q, {out, inp});
    dispatch("avg_pool2d_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::avg_pool2d_forward<T>(ptr<T>(out), ptr<const T>(inp), g, count_include_pad, divisor_override,
                                 stream_of(stream));
      });
    });
  });
  m.def("avg_pool2d_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout, py::tuple geometry,
                                  bool count_include_pad, int64_t divisor_override, uintptr_t stream) {
    k::Pool2d g = pool_geometry("avg_pool2d_backward", geometry);
    check_pointers("avg_pool2d_backward", g.N * g.C * g.H * g.W, {dinp, dout});
    dispatch("avg_pool2d_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::avg_pool2d_backward<T>(ptr<T>(dinp), ptr<const T>(dout), g, count_include_pad, divisor_override,
                                  stream_of(stream));
      });
    });
  });
  m.def("adaptive_avg_pool2d_forward", [](const std::string& dtype, uintptr_t out, uintptr_t inp,
                                          py::tuple geometry, uintptr_t stream) {
    k::Pool2d g = pool_geometry("adaptive_avg_pool2d_forward", geometry);
    check_pointers("adaptive_avg_pool2d_forward", g.N * g.C * g.P * g.Q, {out, inp});
    dispatch("adaptive_avg_pool2d_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::adaptive_avg_pool2d_forward<T>(ptr<T>(out), ptr<const T>(inp), g, stream_of(stream)); });
    });
  });
  m.def("adaptive_avg_pool2d_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout,
                                           py::tuple geometry, uintptr_t stream) {
    k::Pool2d g = pool_geometry("adaptive_avg_pool2d_backward", geometry);
    check_pointers("adaptive_avg_pool2d_backward", g.N * g.C * g.H * g.W, {dinp});
    check_pointers("adaptive_avg_pool2d_backward", g.N * g.C * g.P * g.Q, {dout});
    dispatch("adaptive_avg_pool2d_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::adaptive_avg_pool2d_backward<T>(ptr<T>(dinp), ptr<const T>(dout), g, stream_of(stream)); });
    });
  });
}

void check_channels(const char* op, int64_t N, int64_t C, int64_t HW) {
  check_sizes(op, {N, C, HW});
  if (C > INT32_MAX) throw py::value_error(std::string(op) + ": too many channels");
}

void bind_lrn(py::module_& m) {
  m.def("local_response_norm_forward", [](const std::string& dtype, uintptr_t out, uintptr_t scale, uintptr_t inp,
                                          int64_t N, int64_t C, int64_t HW, int size, double alpha, double beta,
                                          double k_, uintptr_t stream) {
    check_channels("local_response_norm_forward", N, C, HW);
    if (size < 1) throw py::value_error("local_response_norm_forward: size must be >= 1");
    check_pointers("local_response_norm_forward", N * C * HW, {out, scale, inp});
    dispatch("local_response_norm_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::local_response_norm_forward<T>(ptr<T>(out), ptr<T>(scale), ptr<const T>(inp), N, int(C), HW, size, alpha,
                                          beta, k_, stream_of(stream));
      });
    });
  });
  m.def("local_response_norm_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout, uintptr_t inp,
                                           uintptr_t scale, int64_t N, int64_t C, int64_t HW, int size, double alpha,
                                           double beta, uintptr_t stream) {
    check_channels("local_response_norm_backward", N, C, HW);
    if (size < 1) throw py::value_error("local_response_norm_backward: size must be >= 1");
    check_pointers("local_response_norm_backward", N * C * HW, {dinp, dout, inp, scale});
    dispatch("local_response_norm_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::local_response_norm_backward<T>(ptr<T>(dinp), ptr<const T>(dout), ptr<const T>(inp), ptr<const T>(scale),
                                           N, int(C), HW, size, alpha, beta, stream_of(stream));
      });
    });
  });
}

void bind_batchnorm(py::module_& m) {
  // weight, bias, running_mean, running_var: 0 for None.
  m.def("batch_norm_forward_training", [](const std::string& dtype, uintptr_t out, uintptr_t mean, uintptr_t invstd,
                                          uintptr_t running_mean, uintptr_t running_var, uintptr_t inp,
                                          uintptr_t weight, uintptr_t bias, int64_t N, int64_t C, int64_t HW,
                                          double momentum, double eps, uintptr_t stream) {
    check_channels("batch_norm_forward_training", N, C, HW);
    check_pointers("batch_norm_forward_training", N * C * HW, {out, mean, invstd, inp});
    dispatch("batch_norm_forward_training", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::batch_norm_forward_training<T>(ptr<T>(out), ptr<T>(mean), ptr<T>(invstd), ptr<T>(running_mean),
                                          ptr<T>(running_var), ptr<const T>(inp), ptr<const T>(weight),
                                          ptr<const T>(bias), N, int(C), HW, momentum, eps, stream_of(stream));
      });
    });
  });
  m.def("batch_norm_forward_inference", [](const std::string& dtype, uintptr_t out, uintptr_t mean, uintptr_t invstd,
                                           uintptr_t inp, uintptr_t weight, uintptr_t bias, uintptr_t running_mean,
                                           uintptr_t running_var, int64_t N, int64_t C, int64_t HW, double eps,
                                           uintptr_t stream) {
    check_channels("batch_norm_forward_inference", N, C, HW);
    check_pointers("batch_norm_forward_inference", C, {mean, invstd, running_mean, running_var});
    check_pointers("batch_norm_forward_inference", N * C * HW, {out, inp});
    dispatch("batch_norm_forward_inference", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::batch_norm_forward_inference<T>(ptr<T>(out), ptr<T>(mean), ptr<T>(invstd), ptr<const T>(inp),
                                           ptr<const T>(weight), ptr<const T>(bias), ptr<const T>(running_mean),
                                           ptr<const T>(running_var), N, int(C), HW, eps, stream_of(stream));
      });
    });
  });
  m.def("batch_norm_backward", [](const std::string& dtype, uintptr_t dinp, uintptr_t dweight, uintptr_t dbias,
                                  uintptr_t dout, uintptr_t inp, uintptr_t weight, uintptr_t mean, uintptr_t invstd,
                                  int64_t N, int64_t C, int64_t HW, bool training, uintptr_t stream) {
    check_channels("batch_norm_backward", N, C, HW);
    check_pointers("batch_norm_backward", C, {dweight, dbias, mean, invstd});
    check_pointers("batch_norm_backward", N * C * HW, {dinp, dout, inp});
    dispatch("batch_norm_backward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::batch_norm_backward<T>(ptr<T>(dinp), ptr<T>(dweight), ptr<T>(dbias), ptr<const T>(dout), ptr<const T>(inp),
                                  ptr<const T>(weight), ptr<const T>(mean), ptr<const T>(invstd), N, int(C), HW,
                                  training, stream_of(stream));
      });
    });
  });
}

void bind_conv2d(py::module_& m) {
  // geometry: the tuple of conv_geometry; bias, workspace: 0 for none; tile 0: by shape.
  m.def("conv2d_check", [](py::tuple geometry) { conv_geometry("conv2d_check", geometry); },
        "Raise ValueError when the kernels can't run this geometry (nothing is allocated or launched).");
  m.def("conv2d_forward", [](const std::string& dtype, uintptr_t out, uintptr_t inp, uintptr_t weight, uintptr_t bias,
                             py::tuple geometry, int version, int tile, int splits, uintptr_t workspace,
                             uintptr_t stream) {
    k::Conv2d g = conv_geometry("conv2d_forward", geometry);
    check_pointers("conv2d_forward", g.N * g.K * g.P * g.Q, {out, inp, weight});
    dispatch("conv2d_forward", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::conv2d_forward<T>(ptr<T>(out), ptr<const T>(inp), ptr<const T>(weight), ptr<const T>(bias), g, version,
                             tile, splits, ptr<T>(workspace), stream_of(stream));
      });
    });
  }, py::arg("dtype"), py::arg("out"), py::arg("inp"), py::arg("weight"), py::arg("bias"), py::arg("geometry"),
     py::arg("version"), py::arg("tile"), py::arg("splits"), py::arg("workspace"), py::arg("stream"));
  m.def("conv2d_backward_data", [](const std::string& dtype, uintptr_t dinp, uintptr_t dout, uintptr_t weight,
                                   py::tuple geometry, int version, int tile, int splits, uintptr_t workspace,
                                   uintptr_t stream) {
    k::Conv2d g = conv_geometry("conv2d_backward_data", geometry);
    check_pointers("conv2d_backward_data", g.N * g.C * g.H * g.W, {dinp, dout, weight});
    dispatch("conv2d_backward_data", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::conv2d_backward_data<T>(ptr<T>(dinp), ptr<const T>(dout), ptr<const T>(weight), g, version, tile, splits,
                                   ptr<T>(workspace), stream_of(stream));
      });
    });
  }, py::arg("dtype"), py::arg("dinp"), py::arg("dout"), py::arg("weight"), py::arg("geometry"), py::arg("version"),
     py::arg("tile"), py::arg("splits"), py::arg("workspace"), py::arg("stream"));
  m.def("conv2d_splits", [](py::tuple geometry, int pass, int version, int tile) {
    return k::conv2d_splits(conv_geometry("conv2d_splits", geometry), pass, version, tile);
  }, py::arg("geometry"), py::arg("pass"), py::arg("version"), py::arg("tile"),
     "How many slices a pass (0 forward, 1 backward data, 2 backward weight) splits its reduction into.");
  m.def("conv2d_backward_weight", [](const std::string& dtype, uintptr_t dweight, uintptr_t workspace, uintptr_t dout,
                                     uintptr_t inp, py::tuple geometry, int version, int tile, int splits,
                                     uintptr_t stream) {
    k::Conv2d g = conv_geometry("conv2d_backward_weight", geometry);
    check_pointers("conv2d_backward_weight", 1, {dweight});
    check_pointers("conv2d_backward_weight", g.N * g.P * g.Q, {dout, inp});
    dispatch("conv2d_backward_weight", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] {
        k::conv2d_backward_weight<T>(ptr<T>(dweight), ptr<T>(workspace), ptr<const T>(dout), ptr<const T>(inp), g,
                                     version, tile, splits, stream_of(stream));
      });
    });
  }, py::arg("dtype"), py::arg("dweight"), py::arg("workspace"), py::arg("dout"), py::arg("inp"), py::arg("geometry"),
     py::arg("version"), py::arg("tile"), py::arg("splits"), py::arg("stream"));
  m.def("conv2d_backward_bias", [](const std::string& dtype, uintptr_t dbias, uintptr_t dout, int64_t N, int64_t K,
                                   int64_t PQ, uintptr_t stream) {
    check_channels("conv2d_backward_bias", N, K, PQ);
    check_pointers("conv2d_backward_bias", K, {dbias});
    check_pointers("conv2d_backward_bias", N * K * PQ, {dout});
    dispatch("conv2d_backward_bias", dtype, [&](auto t) {
      using T = decltype(t);
      launch([&] { k::conv2d_backward_bias<T>(ptr<T>(dbias), ptr<const T>(dout), N, int(K), PQ, stream_of(stream)); });
    });
  }, py::arg("dtype"), py::arg("dbias"), py::arg("dout"), py::arg("N"), py::arg("K"), py::arg("PQ"), py::arg("stream"));
}

void bind_runtime(py::module_& m, const char* device) {
  m.attr("device") = device;
  m.def("device_info", [] {
    k::DeviceInfo info = k::device_info();
    py::dict d;
    d["usable"] = info.usable;
    d["reason"] = info.reason;
    d["name"] = info.name;
    d["compute_capability"] = py::make_tuple(info.major, info.minor);
    d["runtime_version"] = info.runtime_version;
    d["driver_version"] = info.driver_version;
    return d;
  }, "Whether kernels can run here, and on what (a dict).");
  m.def("synchronize", [] { launch([] { k::synchronize(); }); }, "Wait for every queued kernel.");
  // Test hooks for the error paths (csrc/kernels/selftest.cu); never call _selftest_trap on a GPU
  // you want to keep using: __trap() ruins the CUDA context of the process.
  m.def("_selftest_trap", [](int blocks, int threads, int trap_block, int trap_thread, uintptr_t stream) {
    launch([&] { k::selftest_trap(blocks, threads, trap_block, trap_thread, stream_of(stream)); });
  }, py::arg("blocks"), py::arg("threads"), py::arg("trap_block") = -1, py::arg("trap_thread") = -1,
     py::arg("stream") = 0);
  m.def("_selftest_divergent_barrier", [](int threads, int early, uintptr_t stream) {
    launch([&] { k::selftest_divergent_barrier(threads, early, stream_of(stream)); });
  }, py::arg("threads"), py::arg("early"), py::arg("stream") = 0);
#ifdef MINICNN_CUDA_ARCHS
  m.attr("cuda_archs") = MINICNN_CUDA_ARCHS;  // e.g. "75,80,86,89,90+PTX", set by setup.py
#endif
}

void define_module(py::module_& m, const char* device) {
  bind_relu(m);
  bind_pool(m);
  bind_lrn(m);
  bind_batchnorm(m);
  bind_conv2d(m);
  bind_runtime(m, device);
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
