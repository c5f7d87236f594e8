// Test-only functions of minicnn._C_cpu (tests/ops/test_parallel_for.py): they run the thread
// pool of parallel.h on busy work and report which threads or indices ran.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "parallel.h"

namespace minicnn {
namespace cpu {

inline void bind_testing(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "pool_threads_used",
      [](int64_t tasks, double task_ms) {
        // How many distinct threads ran the chunks of a parallel_for of `tasks` busy tasks (tests).
        std::mutex m;
        std::set<std::thread::id> seen;
        {
          py::gil_scoped_release release;
          minicnn::cpu::parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
            for (int64_t t = b; t < e; ++t) {
              const auto until = std::chrono::steady_clock::now() +
                                 std::chrono::microseconds(static_cast<int64_t>(task_ms * 1000));
              while (std::chrono::steady_clock::now() < until) {
              }
            }
            std::lock_guard<std::mutex> lock(m);
            seen.insert(std::this_thread::get_id());
          });
        }
        return static_cast<int>(seen.size());
      },
      py::arg("tasks"), py::arg("task_ms"));
  // Test-only (tests/ops/test_parallel_for.py): parallel_for over [0, n) with `threads` threads and
  // chunks of at least `grain`, `repeats` times, each index busy for `spin` loop turns (so that
  // the workers are awake and claim chunks at the same time); returns how often each index ran.
  // A chunk claimed twice or never shows up as a count other than `repeats`.
  m.def(
      "_parallel_for_counts",
      [](int64_t n, int64_t grain, int threads, int repeats, int spin) {
        if (n < 1 || n > (int64_t(1) << 24) || grain < 1 || threads < 1 || threads > 256 ||
            repeats < 1 || spin < 0)
          throw py::value_error(
              "_parallel_for_counts: n in [1, 2^24], grain >= 1, threads in "
              "[1, 256], repeats >= 1, spin >= 0");
        std::unique_ptr<std::atomic<int32_t>[]> counts(new std::atomic<int32_t>[n]);
        for (int64_t i = 0; i < n; ++i) counts[i].store(0);
        auto& pool = minicnn::cpu::ThreadPool::instance();
        const int previous = pool.num_threads();
        {
          py::gil_scoped_release release;
          pool.set_num_threads(threads);
          for (int r = 0; r < repeats; ++r)
            minicnn::cpu::parallel_for(n, grain, [&](int64_t b, int64_t e) {
              for (int64_t i = b; i < e; ++i) {
                for (volatile int k = 0; k < spin; k = k + 1) {
                }
                counts[i].fetch_add(1, std::memory_order_relaxed);
              }
            });
          pool.set_num_threads(previous);
        }
        py::array_t<int32_t> out(n);
        auto o = out.mutable_unchecked<1>();
        for (int64_t i = 0; i < n; ++i) o(i) = counts[i].load();
        return out;
      },
      py::arg("n"), py::arg("grain"), py::arg("threads"), py::arg("repeats"), py::arg("spin") = 0);
}

}  // namespace cpu
}  // namespace minicnn
