// conv2d forward for the "cpu" device with the columns built in cache-sized panels, each
// multiplied as soon as it is built (im2col.h for the column layout, blas.h for the GEMM).
//
//   y[n, g Kg + k, pq] = Σ_rows w[g Kg + k, rows] · cols[g rows + ., n PQ + pq]  (+ bias)
//
// The columns (Cg R S, N P Q) of each group are cut into panels of `width` columns (a panel may
// span images: ResNet's 2x2 maps give 4 columns an image). One task = one (group, panel): build
// the panel (about kPanelBytes, so it stays in this core's L2 for the GEMM that reads it), one
// single-threaded BLAS call Kg x width x Cg R S, then the result is stored into y (+ bias). A
// panel inside one image is multiplied straight into y (ldc = P Q). Compared with im2col for the
// whole chunk, then a GEMM, then a batch move: no barrier between the phases, no column buffer
// the size of the batch, and every task has all three kinds of work, so both cores are busy at
// every layer size. The panel width depends on the layer only (not on the thread count), and each
// output is one BLAS dot product over the whole Cg R S: results do not change with the threads.
// A layer whose columns are one panel per group (2x2 and 4x4 maps) would be one task per group:
// there, tasks are blocks of input channels instead (conv2d_forward_cblocks), or, for 1x1 layers
// with too few input channels for that, blocks of output channels (output_block).
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "../geometry.h"
#include "blas.h"
#include "im2col.h"
#include "parallel.h"

namespace minicnn {
namespace cpu {

// A pass of conv2d as a list of independent tasks, each run with two scratch vectors of its
// thread: independent passes (a layer's weight and data gradients) then share one parallel_for,
// so that one pass's tasks fill the cores that the other one's few tasks leave idle.
template <typename T>
struct ConvJob {
  virtual ~ConvJob() = default;
  virtual int64_t tasks() const = 0;
  virtual void run(int64_t t, std::vector<T>& a, std::vector<T>& b) const = 0;
};

// Runs every task of `jobs` on the pool, in list order (put the longest tasks first), with the
// BLAS single-threaded. Each task writes its own outputs: the results do not depend on the order.
template <typename T>
void run_jobs(std::initializer_list<const ConvJob<T>*> jobs) {
  std::vector<const ConvJob<T>*> list(jobs);
  std::vector<int64_t> ends;  // ends[i]: one past the last task of list[i], counted over all
  for (const ConvJob<T>* job : list)
    ends.push_back((ends.empty() ? 0 : ends.back()) + job->tasks());
  with_serial_blas([&] {
    parallel_tasks(ends.empty() ? 0 : ends.back(), [&](int64_t t0, int64_t t1) {
      serial_blas_here();
      std::vector<T> a, b;
      for (int64_t t = t0; t < t1; ++t) {
        size_t i = 0;
        while (t >= ends[i]) ++i;
        list[i]->run(t - (i == 0 ? 0 : ends[i - 1]), a, b);
      }
    });
  });
}

// A 1x1, stride-1, unpadded layer: its columns are x itself (no im2col).
inline bool pointwise(const Conv2dGeometry& g) {
  return g.R == 1 && g.S == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

constexpr int64_t kPanelBytes = 1 << 20;
constexpr int64_t kPanelMinWidth = 256;  // narrower GEMMs waste BLAS's packing of the weights
constexpr int64_t kPanelsWanted = 8;     // split smaller layers down to this many panels

// Columns per panel for `rows` rows of T over `columns` columns of planes of `plane` columns (a
// layer's property only): whole planes where a plane is narrower than a panel.
inline int64_t panel_width(int64_t rows, int64_t columns, int64_t plane, int64_t itemsize) {
  const int64_t fit = kPanelBytes / std::max<int64_t>(1, rows * itemsize);
  const int64_t spread = (columns + kPanelsWanted - 1) / kPanelsWanted;
  int64_t width = std::max(kPanelMinWidth, std::min(fit, spread));
  if (plane < width) width = width / plane * plane;  // whole planes: im2col's fast paths
  return std::max<int64_t>(1, std::min(width, columns));
}

// out -> y's columns [j0, j0 + width) of channels [k0, k0 + Kg), plus bias; out's value of
// channel k, column j is out[k ks + j js]: (Kg, width) with ks = width, js = 1, or transposed.
template <typename T>
void store_panel(const T* out, const T* bias, T* y, const Conv2dGeometry& g, int64_t k0, int64_t Kg,
                 int64_t j0, int64_t width, int64_t ks, int64_t js) {
  const int64_t PQ = g.P * g.Q;
  for (int64_t j = j0; j < j0 + width;) {
    const int64_t n = j / PQ, pq0 = j % PQ, len = std::min(PQ - pq0, j0 + width - j);
    for (int64_t k = 0; k < Kg; ++k) {
      const T* src = out + k * ks + (j - j0) * js;
      T* dst = y + (n * g.K + k0 + k) * PQ + pq0;
      const T b = bias ? bias[k0 + k] : T(0);
      for (int64_t i = 0; i < len; ++i) dst[i] = src[i * js] + b;
    }
    j += len;
  }
}

// Few output channels over a long reduction (DenseNet's 3x3 128->32: 32 x 1152): OpenBLAS runs
// out^T = cols^T w^T 9-10% faster than out = w cols (measured at 32 x 1152 x 256 with the
// transposed store; at 64 rows, or a reduction of 288, it is a tie or slower).
constexpr int64_t kSkinnyRows = 32;
constexpr int64_t kSkinnyMinDepth = 512;

constexpr int64_t kTasksWanted = 8;  // cut layers into at least this many tasks where they allow
constexpr int64_t kMinOutputRows = 256;  // output channels per task where a layer is cut by them
constexpr int64_t kMaxOutputBlocks = 4;  // each block packs the columns again: few of them

inline int64_t ceil_div(int64_t a, int64_t b) {
  return b <= 0 ? 0 : (a + b - 1) / b;
}

// Output channels per task for a 1x1 layer of `tasks` (group, panel) tasks with Kg channels a
// group: all of them where there are kTasksWanted tasks, else up to kMaxOutputBlocks blocks of
// >= kMinOutputRows channels (a multiple of 16, BLAS's row tiles) so that both cores have work
// (ResNet's 256->1024 @4 was one task). Each output is still one dot product over the whole
// reduction, nothing to add afterwards, but every block packs the columns again: long blocks
// only (64-row blocks made 3x3 256->256 @4 1.6x slower at one thread; 8 of 256 rows, 512->2048
// @2 1.2x) and no layer whose columns im2col would build again (stride-2 512->1024 @8 1.3x).
inline int64_t output_block(int64_t tasks, int64_t Kg) {
  if (tasks <= 0 || tasks >= kTasksWanted) return std::max<int64_t>(Kg, 1);
  const int64_t blocks =
      std::min({ceil_div(kTasksWanted, tasks), Kg / kMinOutputRows, kMaxOutputBlocks});
  if (blocks <= 1) return std::max<int64_t>(Kg, 1);
  return std::min(Kg, ceil_div(ceil_div(Kg, blocks), 16) * 16);
}

constexpr int64_t kMinBlockRows = 512;      // column rows per task where a layer is one panel...
constexpr int64_t kMinBlockRowsWide = 256;  // ... of >= kPanelMinWidth columns (4x4 maps)
constexpr int64_t kMaxBlocks = 4;  // each block adds a partial product to sum: few, long ones

// Blocks of input channels for a layer whose columns fit one panel per group (the small maps of
// the last stages: 16 images of 2x2 are 64 columns): cblocks x G tasks instead of G, each over
// at least kMinBlockRows rows of the reduction.
inline int64_t reduction_blocks(int64_t groups, int64_t panels, int64_t Cg, int64_t RS,
                                int64_t columns) {
  if (panels != 1 || groups >= kMaxBlocks) return 1;
  // Each block's partial costs a pass over (Kg, columns): 256-row blocks are at parity at one
  // thread with 256 columns (DenseNet's 1x1 ->128 @4), 10-20% slower with 64 (@2).
  const int64_t min_rows = columns >= kPanelMinWidth ? kMinBlockRowsWide : kMinBlockRows;
  const int64_t most = std::max<int64_t>(1, Cg * RS / min_rows);
  return std::min({most, Cg, (kMaxBlocks + groups - 1) / groups});
}

// The one-panel layers (see reduction_blocks): each task builds the columns of a block of input
// channels and multiplies them by those channels' weights into its own partial product (each
// operand is packed by BLAS once, as in one GEMM); the partials are then added in block order
// (a fixed order: the same bits at any thread count) and stored into y.
template <typename T>
void conv2d_forward_cblocks(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g,
                            int64_t cblocks) {
  const CblasGemm<T> gemm = Blas::instance().gemm<T>();
  const int64_t columns = g.N * g.P * g.Q, Kg = g.K / g.G, Cg = g.C / g.G, RS = g.R * g.S;
  const int64_t cb = (Cg + cblocks - 1) / cblocks, size = Kg * columns;
  std::vector<T> partials(g.G * cblocks * size);
  parallel_for(g.G * cblocks, 1, [&](int64_t t0, int64_t t1) {
    serial_blas_here();
    std::vector<T> panel;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t grp = t / cblocks, c0 = t % cblocks * cb, cc = std::min(cb, Cg - c0);
      T* part = partials.data() + t * size;
      if (cc <= 0) {
        std::fill(part, part + size, T(0));
        continue;
      }
      panel.resize(cc * RS * columns);
      im2col_panel(x, panel.data(), g, grp * Cg + c0, cc, 0, columns);
      gemm(kRowMajor, kNoTrans, kNoTrans, Kg, columns, cc * RS, T(1),
           w + grp * Kg * Cg * RS + c0 * RS, Cg * RS, panel.data(), columns, T(0), part, columns);
    }
  });
  parallel_for(g.K, 1, [&](int64_t k0, int64_t k1) {  // output channels: sum, then store
    std::vector<T> row(columns);
    for (int64_t k = k0; k < k1; ++k) {
      const T* first = partials.data() + (k / Kg * cblocks * Kg + k % Kg) * columns;
      std::copy(first, first + columns, row.begin());
      for (int64_t c = 1; c < cblocks; ++c)
        for (int64_t j = 0; j < columns; ++j) row[j] += first[c * size + j];
      store_panel(row.data(), bias, y, g, k, 1, 0, columns, columns, 1);
    }
  });
}

// One task of the forward: output channels [k0, k0 + kk) of group grp (their weights wk, (kk,
// Cg R S)) at the columns [j0, j0 + n). A panel inside one image is multiplied straight into y.
template <typename T>
void forward_task(const T* x, const T* wk, const T* bias, T* y, const Conv2dGeometry& g,
                  int64_t grp, int64_t k0, int64_t kk, int64_t j0, int64_t n, std::vector<T>& panel,
                  std::vector<T>& out) {
  const CblasGemm<T> gemm = Blas::instance().gemm<T>();
  const int64_t PQ = g.P * g.Q, Cg = g.C / g.G, rows = Cg * g.R * g.S;
  const bool one_image = j0 / PQ == (j0 + n - 1) / PQ;
  const T* b = x + (j0 / PQ * g.C + grp * Cg) * PQ + j0 % PQ;  // a 1x1 conv's columns are x
  int64_t ldb = PQ;
  if (!pointwise(g) || !one_image) {
    panel.resize(rows * n);
    im2col_panel(x, panel.data(), g, grp * Cg, Cg, j0, n);
    b = panel.data();
    ldb = n;
  }
  const bool skinny = kk <= kSkinnyRows && rows >= kSkinnyMinDepth;
  if (!one_image || skinny) {
    out.resize(kk * n);
    if (skinny)  // out (n, kk) = b^T (n, rows) · wk^T (rows, kk)
      gemm(kRowMajor, kTrans, kTrans, n, kk, rows, T(1), b, ldb, wk, rows, T(0), out.data(), kk);
    else
      gemm(kRowMajor, kNoTrans, kNoTrans, kk, n, rows, T(1), wk, rows, b, ldb, T(0), out.data(), n);
    store_panel(out.data(), bias, y, g, k0, kk, j0, n, skinny ? 1 : n, skinny ? kk : 1);
    return;
  }
  T* dst = y + (j0 / PQ * g.K + k0) * PQ + j0 % PQ;
  gemm(kRowMajor, kNoTrans, kNoTrans, kk, n, rows, T(1), wk, rows, b, ldb, T(0), dst, PQ);
  if (bias)
    for (int64_t k = 0; k < kk; ++k)
      for (int64_t i = 0; i < n; ++i) dst[k * PQ + i] += bias[k0 + k];
}

// The forward of a layer cut into (group, panel, output-channel block) tasks (see forward_task).
template <typename T>
struct ForwardJob : ConvJob<T> {
  const T *x, *w, *bias;
  T* y;
  Conv2dGeometry g;
  int64_t rows, columns, width, panels, kb, kblocks;

  ForwardJob(const T* x_, const T* w_, const T* bias_, T* y_, const Conv2dGeometry& g_)
      : x(x_), w(w_), bias(bias_), y(y_), g(g_) {
    rows = g.C / g.G * g.R * g.S;
    columns = g.N * g.P * g.Q;
    width = panel_width(rows, columns, g.P * g.Q, sizeof(T));
    panels = columns == 0 ? 0 : ceil_div(columns, width);
    kb = pointwise(g) ? output_block(g.G * panels, g.K / g.G) : g.K / g.G;  // else: im2col again
    kblocks = ceil_div(g.K / g.G, kb);
  }
  // Layers whose columns are one panel per group are cut by input channels instead.
  int64_t reduction_cut() const {
    return reduction_blocks(g.G, panels, g.C / g.G, g.R * g.S, columns);
  }
  int64_t tasks() const override { return g.G * panels * kblocks; }
  void run(int64_t t, std::vector<T>& panel, std::vector<T>& out) const override {
    const int64_t Kg = g.K / g.G, grp = t / (panels * kblocks), j0 = t / kblocks % panels * width;
    const int64_t k0 = grp * Kg + t % kblocks * kb, kk = std::min(kb, (grp + 1) * Kg - k0);
    forward_task(x, w + k0 * rows, bias, y, g, grp, k0, kk, j0, std::min(width, columns - j0),
                 panel, out);
  }
};

// x (N, C, H, W), w (K, Cg, R, S), bias (K,) or null -> y (N, K, P, Q). Needs a registered BLAS.
template <typename T>
void conv2d_forward_panels(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const ForwardJob<T> job(x, w, bias, y, g);
  const int64_t cblocks = job.reduction_cut();
  if (cblocks > 1)
    with_serial_blas([&] { conv2d_forward_cblocks(x, w, bias, y, g, cblocks); });
  else
    run_jobs<T>({&job});
}

}  // namespace cpu
}  // namespace minicnn
