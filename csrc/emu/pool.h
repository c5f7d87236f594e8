// The OS threads that run the blocks of a launch concurrently.
//
// Part of the CUDA emulator (see cuda_emu.h). run_on_workers(n, job) runs job() on the calling
// thread and on n - 1 pool threads at once and returns when all n calls have returned. Pool threads
// are started on first need and then wait for the next launch; they are detached and never
// destroyed, so exiting the process never waits for them. After fork() (DataLoader workers) the
// child has none of its parent's threads: it starts a pool of its own.
#pragma once

#include <unistd.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace minicnn_emu::detail {

class WorkerPool {
 public:
  void run(int n, const std::function<void()>& job) {
    if (n <= 1) return job();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      while (started_ < n - 1) {
        std::thread(&WorkerPool::loop, this, started_++).detach();
      }
      job_ = &job;
      helpers_ = n - 1;
      running_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return running_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void()>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen && index < helpers_; });
        seen = generation_;
        job = job_;
      }
      (*job)();  // job() catches everything itself (run_blocks records errors)
      std::lock_guard<std::mutex> lock(mutex_);
      if (--running_ == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;
  uint64_t generation_ = 0;
  int started_ = 0, helpers_ = 0, running_ = 0;
};

// The process's pool (a new one in a forked child; the parent's is abandoned there, not destroyed).
inline WorkerPool& worker_pool() {
  static pid_t owner = 0;
  static WorkerPool* pool = nullptr;
  if (pool == nullptr || owner != getpid()) {
    pool = new WorkerPool();
    owner = getpid();
  }
  return *pool;
}

}  // namespace minicnn_emu::detail
