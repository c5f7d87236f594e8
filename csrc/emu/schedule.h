// Schedules: in which order the emulator runs the threads of a block and the blocks of a grid, and
// on how many OS threads.
//
// Part of the CUDA emulator (see cuda_emu.h). A correct kernel computes the same result under every
// schedule; a kernel with an ordering bug (a missing __syncthreads, two blocks writing one element,
// a block that waits for block 0) passes under one order and fails under another. So the order is
// a setting:
//   threads  forward | reverse | random   the order in which the threads of a block start and, at
//                                         every barrier, resume ("within each barrier interval")
//   blocks   forward | reverse | random   the order in which blocks are handed to the OS threads
//   seed     the random orders' seed: the same seed gives the same orders
//   workers  OS threads that run blocks concurrently (each block runs entirely on one of them)
// Set it from the environment (MINICNN_EMU_SCHEDULE="threads=random blocks=random seed=3",
// MINICNN_EMU_THREADS=2), from Python (minicnn.emu.set_schedule) or C++ (set_schedule below).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace minicnn_emu {

enum class Order : uint8_t { kForward, kReverse, kRandom };

struct Schedule {
  Order threads = Order::kForward;
  Order blocks = Order::kForward;
  uint64_t seed = 0;
  int workers = 1;  // OS threads running blocks (the launching thread is one of them)
};

namespace detail {

inline const char* order_name(Order o) {
  return o == Order::kForward ? "forward" : o == Order::kReverse ? "reverse" : "random";
}

inline Order parse_order(const std::string& key, const std::string& value) {
  if (value == "forward") return Order::kForward;
  if (value == "reverse") return Order::kReverse;
  if (value == "random") return Order::kRandom;
  throw std::invalid_argument("emulator schedule: " + key + "=" + value +
                              ": expected forward, reverse or random");
}

inline int default_workers() {
  if (const char* env = std::getenv("MINICNN_EMU_THREADS"); env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (*end != '\0' || n < 1 || n > 1024) {
      throw std::invalid_argument(std::string("MINICNN_EMU_THREADS=") + env +
                                  ": expected an integer in [1, 1024]");
    }
    return static_cast<int>(n);
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// "threads=random blocks=reverse seed=3" (spaces or commas between the items; all optional).
inline Schedule parse_schedule(const std::string& text, Schedule s) {
  std::string spaced = text;
  for (char& ch : spaced)
    if (ch == ',') ch = ' ';
  std::istringstream items(spaced);
  for (std::string item; items >> item;) {
    size_t eq = item.find('=');
    std::string key = item.substr(0, eq),
                value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "threads") {
      s.threads = parse_order(key, value);
    } else if (key == "blocks") {
      s.blocks = parse_order(key, value);
    } else if (key == "seed") {
      char* end = nullptr;
      s.seed = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0')
        throw std::invalid_argument("emulator schedule: seed=" + value + ": not an integer");
    } else {
      throw std::invalid_argument("emulator schedule: unknown item '" + item +
                                  "' (expected threads=..., blocks=..., seed=N)");
    }
  }
  return s;
}

// The schedule launches use; read at every launch under the launch lock.
struct ScheduleSetting {
  std::mutex mutex;
  bool initialised = false;
  Schedule value;
};
inline ScheduleSetting g_schedule;

inline Schedule current_schedule() {
  std::lock_guard<std::mutex> lock(g_schedule.mutex);
  if (!g_schedule.initialised) {
    Schedule s;
    s.workers = default_workers();
    if (const char* env = std::getenv("MINICNN_EMU_SCHEDULE")) s = parse_schedule(env, s);
    g_schedule.value = s;
    g_schedule.initialised = true;
  }
  return g_schedule.value;
}

inline std::string describe(const Schedule& s) {
  return std::string("threads=") + order_name(s.threads) + " blocks=" + order_name(s.blocks) +
         " seed=" + std::to_string(s.seed) + " workers=" + std::to_string(s.workers);
}

// splitmix64: a tiny, good-enough generator; the same (seed, stream) always gives the same numbers.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

// order[i] = which index runs i-th, for `n` items.
inline void fill_order(std::vector<int>& order, int n, Order how, Rng& rng) {
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = how == Order::kReverse ? n - 1 - i : i;
  if (how == Order::kRandom) {
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.next() % (i + 1)]);
  }
}

}  // namespace detail

// The schedule of the next launches (C++ API; Python: minicnn.emu.set_schedule).
inline void set_schedule(const Schedule& s) {
  if (s.workers < 1)
    throw std::invalid_argument("emulator schedule: workers must be >= 1, got " +
                                std::to_string(s.workers));
  detail::current_schedule();
  std::lock_guard<std::mutex> lock(detail::g_schedule.mutex);
  detail::g_schedule.value = s;
}
inline Schedule get_schedule() {
  return detail::current_schedule();
}

}  // namespace minicnn_emu
