// A probe of the thread pool's dispatch and wake latency (parallel.h), for
// benchmarks/bench_ops.py --pool: `calls` tiny parallel_for calls over one item per thread, each
// after `gap_us` of the caller's own work (the phases of a step are that far apart). It reports
// the median, 90th percentile and mean microseconds per call and the share of calls in which a worker, not the caller, ran
// an item: a worker that is asleep when the job is published usually wakes too late for it.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "parallel.h"

namespace minicnn {
namespace cpu {

inline pybind11::tuple pool_probe(int64_t calls, double gap_us) {
  const int threads = ThreadPool::instance().num_threads();
  using Clock = std::chrono::steady_clock;
  std::vector<double> us(std::max<int64_t>(calls, 1), 0.0);
  int64_t joined = 0;
  {
    pybind11::gil_scoped_release release;
    for (int64_t i = 0; i < calls; ++i) {
      const auto until = Clock::now() + std::chrono::duration<double, std::micro>(gap_us);
      while (Clock::now() < until) {
      }  // the caller busy between phases, as in a step
      const std::thread::id caller = std::this_thread::get_id();
      std::atomic<bool> helped{false};
      const auto t0 = Clock::now();
      parallel_for(threads, 1, [&](int64_t, int64_t) {
        if (std::this_thread::get_id() != caller) helped.store(true);
      });
      us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      joined += helped.load();
    }
  }
  double mean = 0;
  for (double u : us) mean += u / us.size();
  std::sort(us.begin(), us.end());
  return pybind11::make_tuple(us[us.size() / 2], us[us.size() * 9 / 10], mean,
                              joined / static_cast<double>(us.size()));
}

inline void bind_pool_probe(pybind11::module_& m) {
  m.def("pool_probe", &pool_probe, pybind11::arg("calls"), pybind11::arg("gap_us") = 0.0,
        "(median, p90, mean us per tiny parallel_for, share of calls a worker joined)");
}

}  // namespace cpu
}  // namespace minicnn
