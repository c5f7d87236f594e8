// GEMM for the "cpu" helpers: NumPy's own BLAS, called from our thread pool.
//
// NumPy ships no C API for its BLAS, so minicnn/backends/_np_blas.py finds the CBLAS functions of
// the library NumPy loaded (e.g. scipy-openblas's scipy_cblas_sgemm64_) and hands their addresses
// to set_blas(); the Python side checks them against np.matmul before using them. Every call
// passes 64-bit integers: right for an ILP64 BLAS, and for an LP64 one on x86-64 and AArch64
// Linux, where a 32-bit parameter reads the low half of its 64-bit register or stack slot.
//
// parallel_gemm splits C into blocks handed out dynamically by the pool (parallel.h) and runs one
// single-threaded BLAS call per block. OpenBLAS's own threads are kept out
// (openblas_set_num_threads_local(1) in every thread that calls it): they busy-wait between
// calls, and on a loaded machine a GEMM split statically over spinning threads waits for the
// slowest one — 3-4x slower than one thread was measured here. With dynamic blocks a descheduled
// thread only delays its current block.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstdint>

#include "parallel.h"

namespace minicnn {
namespace cpu {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

// Deterministic mode (MINICNN_DETERMINISTIC=1, or set_deterministic): GEMM blocks depend on the
// shape only, so results are the same at any thread count (BLAS may round a product differently
// in blocks of another shape: seen with a transposed B). It costs CPU time at one thread (conv
// weight gradients 10-25% here), hence off by default: then one thread makes one BLAS call.
inline std::atomic<bool>& deterministic() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("MINICNN_DETERMINISTIC");
    return v != nullptr && v[0] == '1';
  }()};
  return on;
}

struct GemmBlocks {
  int64_t mb, nb;  // blocks along M and N (1 x 1: one BLAS call)
};

// About `target` blocks of >= 64 x 64, shaped so that the BLAS calls pack little twice: every
// block packs its rows of A and its columns of B, so A is packed nb times and B mb times;
// nb : mb ~ N : M keeps nb M + mb N small.
inline GemmBlocks gemm_blocks(int64_t M, int64_t N, int64_t K, int threads) {
  const bool fixed = deterministic().load(std::memory_order_relaxed);
  const int64_t target = fixed ? 8 : 4 * threads;
  const double split_flops = fixed ? 1.6e7 : 4e6;  // smaller GEMMs: one call
  if ((!fixed && threads <= 1) || 2.0 * M * N * K < split_flops) return {1, 1};
  const double ratio = std::sqrt(static_cast<double>(target) * N / std::max<int64_t>(M, 1));
  const int64_t nb = std::clamp<int64_t>(std::llround(ratio), 1, (N + 63) / 64);
  const int64_t mb = std::clamp<int64_t>((target + nb - 1) / nb, 1, (M + 63) / 64);
  return {mb, nb};
}

template <typename T>
using CblasGemm = void (*)(int order, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
                           int64_t ldc);
using SetThreadsLocal = int (*)(int);

struct Blas {
  CblasGemm<float> sgemm = nullptr;
  CblasGemm<double> dgemm = nullptr;
  SetThreadsLocal set_threads_local = nullptr;

  static Blas& instance() {
    static Blas blas;
    return blas;
  }
  template <typename T>
  CblasGemm<T> gemm() const;
};

template <>
inline CblasGemm<float> Blas::gemm<float>() const {
  return sgemm;
}
template <>
inline CblasGemm<double> Blas::gemm<double>() const {
  return dgemm;
}

// One operand: row-major data, transposed or not, with its leading dimension.
template <typename T>
struct Operand {
  const T* data;
  bool trans;
  int64_t ld;
};

// C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C, C row-major with leading dim ldc.
template <typename T>
void parallel_gemm(int64_t M, int64_t N, int64_t K, T alpha, Operand<T> A, Operand<T> B, T beta,
                   T* C, int64_t ldc) {
  const Blas& blas = Blas::instance();
  CblasGemm<T> gemm = blas.gemm<T>();
  auto block = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const T* a = A.data + (A.trans ? m0 : m0 * A.ld);
    const T* b = B.data + (B.trans ? n0 * B.ld : n0);
    gemm(kRowMajor, A.trans ? kTrans : kNoTrans, B.trans ? kTrans : kNoTrans, m1 - m0, n1 - n0, K,
         alpha, a, A.ld, b, B.ld, beta, C + m0 * ldc + n0, ldc);
  };
  int previous = -1;
  if (blas.set_threads_local) previous = blas.set_threads_local(1);
  const GemmBlocks blocks = gemm_blocks(M, N, K, ThreadPool::instance().num_threads());
  if (M > 0 && N > 0 && blocks.mb * blocks.nb == 1) {
    block(0, M, 0, N);
  } else if (M > 0 && N > 0) {
    const int64_t mb = blocks.mb, nb = blocks.nb;
    const int64_t bn = (N + nb - 1) / nb;
    const int64_t bm = (M + mb - 1) / mb;
    parallel_for(mb * nb, 1, [&](int64_t t0, int64_t t1) {
      if (blas.set_threads_local) blas.set_threads_local(1);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / nb, j = t % nb;
        block(i * bm, std::min(M, (i + 1) * bm), j * bn, std::min(N, (j + 1) * bn));
      }
    });
  }
  if (blas.set_threads_local && previous > 0) blas.set_threads_local(previous);
}

// A pool task's BLAS calls run on its own thread only (the pool supplies the parallelism).
inline void serial_blas_here() {
  const Blas& blas = Blas::instance();
  if (blas.set_threads_local) blas.set_threads_local(1);
}

// Runs f() with the BLAS of this thread (and of the pool's threads, see body) single-threaded.
template <typename F>
void with_serial_blas(const F& f) {
  const Blas& blas = Blas::instance();
  const int previous = blas.set_threads_local ? blas.set_threads_local(1) : -1;
  f();
  if (blas.set_threads_local && previous > 0) blas.set_threads_local(previous);
}

}  // namespace cpu
}  // namespace minicnn
