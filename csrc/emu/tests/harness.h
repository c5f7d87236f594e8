// A tiny test harness for the emulator tests: checks, expected errors, timers, managed buffers.
// Host code only, valid under g++ and nvcc alike.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "cuda_compat.h"

namespace harness {

inline int g_failures = 0;

inline void check(bool ok, const char* what, const char* file, int line) {
  if (!ok) {
    std::printf("    FAILED at %s:%d: %s\n", file, line, what);
    ++g_failures;
  }
}
#define CHECK(cond) ::harness::check((cond), #cond, __FILE__, __LINE__)

inline bool close(double got, double want, double rtol, double atol = 0.0) {
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// Run `body`; it must throw a std::exception whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& body,
                         std::initializer_list<const char*> parts, const char* file, int line) {
  try {
    body();
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    std::printf("    expected error: %s\n", what.c_str());
    for (const char* part : parts) check(what.find(part) != std::string::npos, part, file, line);
    return;
  }
  check(false, "an exception was expected", file, line);
}
#define EXPECT_ERROR(body, ...) \
  ::harness::expect_error([&] { body; }, {__VA_ARGS__}, __FILE__, __LINE__)

inline double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

inline void run(const char* name, void (*test)()) {
  std::printf("[ RUN  ] %s\n", name);
  int before = g_failures;
  try {
    test();
  } catch (const std::exception& ex) {
    std::printf("    unexpected exception: %s\n", ex.what());
    ++g_failures;
  }
  std::printf("[ %s ] %s\n", g_failures == before ? " OK " : "FAIL", name);
}
#define RUN(test) ::harness::run(#test, test)

inline int summary() {
  std::printf(g_failures == 0 ? "all tests passed\n" : "%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

// n elements of managed memory: host memory under the emulator, unified memory on a GPU.
template <class T>
class Buffer {
 public:
  explicit Buffer(size_t n, T fill = T()) : n_(n) {
    CUDA_CHECK(cudaMallocManaged(&data_, n * sizeof(T)));
    for (size_t i = 0; i < n; ++i) data_[i] = fill;
  }
  ~Buffer() { cudaFree(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() { return data_; }
  T& operator[](size_t i) { return data_[i]; }
  size_t size() const { return n_; }

 private:
  T* data_ = nullptr;
  size_t n_;
};

}  // namespace harness
