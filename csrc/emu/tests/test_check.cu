// The race checker (csrc/emu/check.h) and schedules (schedule.h): every self-test kernel with a
// planted ordering bug is reported with kernel, block, thread and both source lines; its correct
// twin is clean under every schedule; a partial barrier is a deadlock naming the schedule.
// Built by run.sh with -DMINICNN_EMU_CHECK -fsanitize=thread (and linked without libtsan).
#include <cstdio>
#include <string>

#include "cuda_compat.h"
#include "harness.h"

#ifdef MINICNN_EMU_CHECK
using minicnn_emu::Order;

std::string run_selftest(const char* name) {
  char error[8192] = "";
  minicnn_emu_selftest(name, error, sizeof error);
  return error;
}

void expect_found(const char* name, std::initializer_list<const char*> parts) {
  std::string error = run_selftest(name);
  std::printf("    %s: %s\n", name, error.c_str());
  CHECK(!error.empty());
  for (const char* part : parts) CHECK(error.find(part) != std::string::npos);
}

void under_every_schedule(void (*body)()) {
  const Order orders[] = {Order::kForward, Order::kReverse, Order::kRandom};
  for (Order threads : orders)
    for (Order blocks : orders)
      for (int workers : {1, 3}) {
        minicnn_emu::set_schedule(minicnn_emu::Schedule{threads, blocks, 7, workers});
        body();
      }
  minicnn_emu::set_schedule(minicnn_emu::Schedule{});
}

void test_races_are_found() {
  under_every_schedule([] {
    expect_found("neighbour_exchange_race", {"kernel neighbour_exchange<false>", "shared memory",
                                             "selftest.h:17", "selftest.h:19", "thread ("});
    expect_found("blocks_write_same",
                 {"race on global memory", "different blocks", "selftest.h:24"});
    expect_found("waits_for_block0", {"race on global memory", "selftest.h:30", "selftest.h:32"});
    expect_found("warp_tree_sum_race", {"same warp, no __syncwarp()"});
    expect_found("reads_unwritten_shared",
                 {"uninitialised read of shared memory", "thread (3,0,0)", "selftest.h:55"});
  });
}

void test_correct_kernels_are_clean() {
  under_every_schedule([] {
    for (const char* name : {"neighbour_exchange", "warp_tree_sum", "atomic_counter"}) {
      std::string error = run_selftest(name);
      if (!error.empty()) std::printf("    %s: %s\n", name, error.c_str());
      CHECK(error.empty());
    }
  });
}

void test_partial_barrier_names_the_schedule() {
  minicnn_emu::set_schedule(minicnn_emu::Schedule{Order::kRandom, Order::kReverse, 5, 2});
  expect_found("partial_barrier", {"kernel partial_barrier", "divergent barrier", "thread (5,0,0)",
                                   "schedule threads=random blocks=reverse seed=5"});
  minicnn_emu::set_schedule(minicnn_emu::Schedule{});
}

int main() {
  RUN(test_races_are_found);
  RUN(test_correct_kernels_are_clean);
  RUN(test_partial_barrier_names_the_schedule);
  return harness::summary();
}
#else
int main() {
  std::printf("test_check.cu needs -DMINICNN_EMU_CHECK -fsanitize=thread\n");
  return 1;
}
#endif
