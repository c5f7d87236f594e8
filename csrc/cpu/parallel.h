// A small thread pool for the "cpu" helpers: parallel_for over [0, n) in chunks.
//
// Why not OpenMP: libgomp's idle threads spin after every parallel region, and NumPy's GEMM
// (OpenBLAS, its own pthreads) runs right after our im2col. On a loaded 2-core machine the spinning
// threads of one runtime steal the cores the other needs (conv1 ran 5x faster with one thread).
// Here:
//   - idle workers spin for a short while (spin_us(), 50 us by default, MINICNN_SPIN_US) after a
//     job, then sleep on a condition variable (passive waiting): the phases of one op (columns,
//     GEMM blocks, batch moves) and the ops of a step follow each other within microseconds, and
//     a sleeping worker takes 50 us to several ms (on a loaded machine) to wake, by which time the
//     caller has often done the whole job alone. The spin is bounded, so between steps or calls
//     the workers cost nothing, and off when the pool has at least as many workers as CPUs;
//   - work is handed out dynamically (an atomic chunk counter): if a worker is descheduled, the
//     caller and the other workers take its chunks instead of waiting for it at a barrier;
//   - the calling thread works too, so n threads means the caller + (n - 1) workers;
//   - a call from inside a parallel region, or while another thread uses the pool, runs serially;
//   - after fork() the child starts a fresh pool (the parent's workers do not exist there).
// The thread count defaults to MINICNN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this
// process may run on; set_num_threads changes it.
#pragma once
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace minicnn {
namespace cpu {

class ThreadPool {
 public:
  using Body = void (*)(void* ctx, int64_t begin, int64_t end);

  static ThreadPool& instance() {
    static ThreadPool* pool = new ThreadPool();  // never destroyed: workers may outlive exit
    return *pool;
  }

  int num_threads() const { return requested_.load(); }

  void set_num_threads(int n) { requested_.store(std::max(1, n)); }

  // Run body(ctx, b, e) over chunks [b, e) covering [0, n), each at least `grain` long (exactly
  // `grain` long with `fixed`: tasks of very different lengths, see parallel_tasks).
  void run(int64_t n, int64_t grain, Body body, void* ctx, bool fixed = false) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int threads = static_cast<int>(std::min<int64_t>(num_threads(), (n + grain - 1) / grain));
    if (threads <= 1 || in_parallel_region() || !busy_.try_lock()) {
      body(ctx, 0, n);
      return;
    }
    std::lock_guard<std::mutex> hold(busy_, std::adopt_lock);
    State* s = state();
    ensure_workers(s, threads - 1);
    // ~4 chunks per thread: small enough to balance a descheduled thread, large enough that
    // the atomic counter is not contended.
    const int64_t chunk =
        fixed ? grain : std::max<int64_t>(grain, (n + 4 * threads - 1) / (4 * threads));
    Job job{body, ctx, n, chunk, {0}};
    {
      std::lock_guard<std::mutex> lock(s->mutex);
      s->job = &job;
      s->wanted = threads - 1;
      ++s->generation;
      s->published.store(s->generation, std::memory_order_release);
    }
    s->wake.notify_all();
    work(&job);
    std::unique_lock<std::mutex> lock(s->mutex);
    s->job = nullptr;  // late workers find no job
    s->done.wait(lock, [s] { return s->active == 0; });
  }

 private:
  struct Job {
    Body body;
    void* ctx;
    int64_t n, chunk;
    std::atomic<int64_t> next;
  };

  struct State {
    std::mutex mutex;
    std::condition_variable wake, done;
    Job* job = nullptr;
    uint64_t generation = 0;
    std::atomic<uint64_t> published{0};  // generation, readable without the mutex (spinning)
    int wanted = 0;                      // workers asked to join the current job
    int active = 0;                      // workers inside the current job
    int workers = 0;                     // workers started
    pid_t pid = 0;
  };

  ThreadPool() { requested_.store(default_threads()); }

  static int default_threads() {
    for (const char* name : {"MINICNN_NUM_THREADS", "OMP_NUM_THREADS"}) {
      const char* v = std::getenv(name);
      if (v && std::atoi(v) > 0) return std::atoi(v);
    }
    return cpu_count();
  }

  static bool& in_parallel_region() {
    static thread_local bool inside = false;
    return inside;
  }

  // Runs chunks of the job until none is left, starting with chunk `b` if one was claimed.
  static void work(Job* job, int64_t b = -1) {
    bool& inside = in_parallel_region();
    const bool was = inside;
    inside = true;
    if (b < 0) b = job->next.fetch_add(job->chunk, std::memory_order_relaxed);
    for (; b < job->n; b = job->next.fetch_add(job->chunk, std::memory_order_relaxed))
      job->body(job->ctx, b, std::min(job->n, b + job->chunk));
    inside = was;
  }

  // The pool state of this process (a fresh one in a forked child; the parent's is leaked).
  State* state() {
    const pid_t pid = getpid();
    if (!state_ || state_->pid != pid) {
      state_ = new State();
      state_->pid = pid;
    }
    return state_;
  }

  static void ensure_workers(State* s, int count) {
    std::lock_guard<std::mutex> lock(s->mutex);
    for (; s->workers < count; ++s->workers) std::thread(worker_loop, s, s->generation).detach();
  }

  static int cpu_count() {
    static const int n = [] {
      cpu_set_t set;
      if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
      return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    }();
    return n;
  }

  // How long an idle worker polls for the next job before it sleeps.
  static int64_t spin_us() {
    static const int64_t us = [] {
      const char* v = std::getenv("MINICNN_SPIN_US");
      return v && std::atoi(v) >= 0 ? static_cast<int64_t>(std::atoi(v)) : int64_t(50);
    }();
    return us;
  }

  static void spin_while_unchanged(State* s, uint64_t seen) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us());
    for (int i = 1; s->published.load(std::memory_order_acquire) == seen; ++i) {
      if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }

  static void worker_loop(State* s, uint64_t seen) {
    std::unique_lock<std::mutex> lock(s->mutex);
    for (;;) {
      if (s->generation == seen && s->workers < cpu_count()) {  // never with more threads than CPUs
        lock.unlock();
        spin_while_unchanged(s, seen);
        lock.lock();
      }
      s->wake.wait(lock, [&] { return s->generation != seen; });
      seen = s->generation;
      if (s->job == nullptr || s->wanted <= 0) continue;
      --s->wanted;
      Job* job = s->job;
      // The first chunk is claimed under the mutex, and only a worker that got one counts as
      // active: the caller never waits for a late worker that finds the job done (a worker woken
      // after the caller did all the chunks, then preempted, held calls up by milliseconds).
      const int64_t first = job->next.fetch_add(job->chunk, std::memory_order_relaxed);
      if (first >= job->n) continue;
      ++s->active;
      lock.unlock();
      work(job, first);
      lock.lock();
      if (--s->active == 0) s->done.notify_all();
    }
  }

  std::atomic<int> requested_{1};
  std::mutex busy_;
  State* state_ = nullptr;
};

// parallel_for(n, grain, f): f(begin, end) over chunks of [0, n), on the pool.
template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
  auto body = [](void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); };
  ThreadPool::instance().run(n, grain, body, const_cast<F*>(&f));
}

// parallel_tasks(n, f): f(begin, begin + 1) for each task of [0, n), handed out one at a time:
// for a few tasks of very different lengths (conv2d's passes), where a chunk of several would
// tie a long task to short ones (one core idle at the end).
template <typename F>
void parallel_tasks(int64_t n, const F& f) {
  auto body = [](void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); };
  ThreadPool::instance().run(n, 1, body, const_cast<F*>(&f), true);
}

}  // namespace cpu
}  // namespace minicnn
