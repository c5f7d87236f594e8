// conv2d backward for the "cpu" device in cache-sized panels, like the forward (conv.h).
//
//   dw[g Kg + k, rows]   = Σ_j dy[g Kg + k, j] · cols[g rows + ., j]       backward-weight
//   dcols[g rows + ., j] = Σ_k w[g Kg + k, rows] · dy[g Kg + k, j]          backward-data
//   dx                   = col2im(dcols)
//
// with dy = dout's columns (K, N P Q) (im2col.h's folded layout). Work is cut by the layer only,
// never by the thread count, so the results are the same at any thread count:
//   - backward-weight: one task = (group, block of input channels, slice of the columns). A task
//     walks its slice in panels (about kPanelBytes of columns, built by im2col_panel and used at
//     once) and accumulates its block of dw in BLAS (beta = 1 after the first panel). Where the
//     layer has fewer than kTasksWanted (group, channel block) pairs (a first layer's 3 input
//     channels), the columns are cut into slices, each summed into its own partial dw, and the
//     partials are added in slice order afterwards: a fixed reduction order.
//   - backward-data: one task = (group, block of input channels, block of images). It multiplies
//     its rows of w^T by those images' dy and scatters the panel into its own planes of dx
//     (col2im_panel): tasks never write the same dx value, so there are no races. Images are
//     grouped where their maps are small (ResNet's 2x2 maps), so the GEMM has >= 256 columns.
//   - both at once (conv2d_backward_panels): the tasks of the two passes in one parallel_for.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../geometry.h"
#include "blas.h"
#include "conv.h"
#include "im2col.h"
#include "layout.h"
#include "parallel.h"

namespace minicnn {
namespace cpu {

// Input channels per task: about `blocks` blocks of Cg, each at least `min_rows` column rows.
inline int64_t channel_block(int64_t Cg, int64_t RS, int64_t blocks, int64_t min_rows) {
  const int64_t most = std::max(ceil_div(Cg, std::max<int64_t>(blocks, 1)), ceil_div(min_rows, RS));
  const int64_t cb = std::clamp<int64_t>(most, 1, std::max<int64_t>(Cg, 1));
  return std::max<int64_t>(1, ceil_div(Cg, ceil_div(Cg, cb)));  // even: 13 x 5, not 15 x 4 + 4
}

// dout (N, K, P, Q) as columns (K, N P Q): dout itself for one image, else unfolded into buf.
template <typename T>
const T* dout_columns(const T* dout, std::vector<T>& buf, const Conv2dGeometry& g) {
  if (g.N == 1) return dout;
  buf.resize(g.K * g.N * g.P * g.Q);
  unfold_batch(dout, buf.data(), g.N, g.K, g.P * g.Q);
  return buf.data();
}

// ---- backward-weight ----------------------------------------------------------------------------
struct WeightGradPlan {
  int64_t cb, cblocks;        // input channels per task, blocks per group
  int64_t width, panels;      // columns per panel (whole planes where planes are small)
  int64_t per_slice, slices;  // panels per slice, slices of the columns
  bool transposed;            // GEMM as dw^T = cols · dy^T (see conv2d_backward_weight)
};

constexpr int64_t kTransposedMinColumns = 1024;  // _np_conv.TRANSPOSED_DW_MIN_COLUMNS
constexpr int64_t kWeightGradMinRows = 256;  // rows of dw per task: narrower GEMMs pack dy often

inline WeightGradPlan weight_grad_plan(const Conv2dGeometry& g, int64_t itemsize) {
  const int64_t Cg = g.C / g.G, RS = g.R * g.S, PQ = g.P * g.Q, columns = g.N * PQ;
  WeightGradPlan p;
  p.cb = channel_block(Cg, RS, ceil_div(kTasksWanted, g.G), kWeightGradMinRows);
  p.cblocks = ceil_div(Cg, p.cb);
  int64_t width =
      std::max(kPanelMinWidth, kPanelBytes / std::max<int64_t>(1, p.cb * RS * itemsize));
  if (PQ > 0 && PQ < width) width = width / PQ * PQ;  // whole planes: im2col's fast paths
  p.width = std::max<int64_t>(1, std::min(width, columns));
  p.panels = ceil_div(columns, p.width);
  const int64_t tasks = g.G * p.cblocks;
  const int64_t slices = tasks >= kTasksWanted ? 1 : ceil_div(kTasksWanted, tasks);
  p.per_slice = std::max<int64_t>(1, ceil_div(p.panels, slices));
  p.slices = std::max<int64_t>(1, ceil_div(p.panels, p.per_slice));
  p.transposed = columns >= kTransposedMinColumns;
  return p;
}

// One task's block of dw (Kg, cc R S) at dst (leading dimension ldd) over its panels [first, end).
template <typename T>
void weight_grad_task(const T* x, const T* dy, T* dst, int64_t ldd, const Conv2dGeometry& g,
                      const WeightGradPlan& p, int64_t grp, int64_t c0, int64_t cc, int64_t first,
                      int64_t end, std::vector<T>& panel, std::vector<T>& acc) {
  const CblasGemm<T> gemm = Blas::instance().gemm<T>();
  const int64_t PQ = g.P * g.Q, NPQ = g.N * PQ, Cg = g.C / g.G, Kg = g.K / g.G;
  const int64_t rows = cc * g.R * g.S;
  if (p.transposed) acc.resize(rows * Kg);
  for (int64_t i = first; i < end; ++i) {
    const int64_t j0 = i * p.width, n = std::min(p.width, NPQ - j0);
    const T* b = x + ((j0 / PQ) * g.C + grp * Cg + c0) * PQ + j0 % PQ;  // a 1x1 conv's columns
    int64_t ldb = PQ;
    if (!pointwise(g) || j0 / PQ != (j0 + n - 1) / PQ) {
      panel.resize(rows * n);
      im2col_panel(x, panel.data(), g, grp * Cg + c0, cc, j0, n);
      b = panel.data();
      ldb = n;
    }
    const T* d = dy + grp * Kg * NPQ + j0;  // (Kg, n), leading dimension N P Q
    const T beta = i == first ? T(0) : T(1);
    if (p.transposed)
      gemm(kRowMajor, kNoTrans, kTrans, rows, Kg, n, T(1), b, ldb, d, NPQ, beta, acc.data(), Kg);
    else
      gemm(kRowMajor, kNoTrans, kTrans, Kg, rows, n, T(1), d, NPQ, b, ldb, beta, dst, ldd);
  }
  if (p.transposed)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t r = 0; r < rows; ++r) dst[k * ldd + r] = acc[r * Kg + k];
}

// The weight gradient as (group, channel block, column slice) tasks over dy = dout's columns
// (K, N P Q); finish() adds the slices' partials (in slice order) into dw.
template <typename T>
struct WeightGradJob : ConvJob<T> {
  const T *dy, *x;
  T* dw;
  Conv2dGeometry g;
  WeightGradPlan p;
  int64_t size;
  mutable std::vector<T> partials;  // (slices, K, Cg R S) where slices > 1; tasks own their parts

  WeightGradJob(const T* dy_, const T* x_, T* dw_, const Conv2dGeometry& g_)
      : dy(dy_), x(x_), dw(dw_), g(g_), p(weight_grad_plan(g_, sizeof(T))) {
    size = g.K * (g.C / g.G) * g.R * g.S;
    partials.resize(p.slices > 1 ? p.slices * size : 0);
  }
  int64_t tasks() const override { return g.G * p.cblocks * p.slices; }
  void run(int64_t t, std::vector<T>& panel, std::vector<T>& acc) const override {
    const int64_t RS = g.R * g.S, Cg = g.C / g.G, Kg = g.K / g.G;
    const int64_t grp = t / (p.cblocks * p.slices), c0 = (t / p.slices) % p.cblocks * p.cb;
    const int64_t slice = t % p.slices, first = slice * p.per_slice;
    T* base = p.slices > 1 ? partials.data() + slice * size : dw;
    T* dst = base + grp * Kg * Cg * RS + c0 * RS;
    weight_grad_task(x, dy, dst, Cg * RS, g, p, grp, c0, std::min(p.cb, Cg - c0), first,
                     std::min(p.panels, first + p.per_slice), panel, acc);
  }
  void finish() const {
    if (p.slices == 1) return;
    parallel_for(size, 4096, [&](int64_t b, int64_t e) {  // partials added in slice order
      for (int64_t i = b; i < e; ++i) {
        T sum = partials[i];
        for (int64_t s = 1; s < p.slices; ++s) sum += partials[s * size + i];
        dw[i] = sum;
      }
    });
  }
};

// dout (N, K, P, Q), x (N, C, H, W) -> dw (K, Cg, R, S). Needs a registered BLAS.
template <typename T>
void conv2d_backward_weight_panels(const T* dout, const T* x, T* dw, const Conv2dGeometry& g) {
  if (g.N * g.P * g.Q == 0) {
    std::fill(dw, dw + g.K * (g.C / g.G) * g.R * g.S, T(0));
    return;
  }
  std::vector<T> dy_buf;
  const WeightGradJob<T> job(dout_columns(dout, dy_buf, g), x, dw, g);
  run_jobs<T>({&job});
  job.finish();
}

// ---- backward-data ------------------------------------------------------------------------------
struct DataGradPlan {
  int64_t nb, nblocks;  // images per task, blocks of the batch
  int64_t cb, cblocks;  // input channels per task, blocks per group
};

inline DataGradPlan data_grad_plan(const Conv2dGeometry& g, int64_t itemsize) {
  const int64_t Cg = g.C / g.G, RS = g.R * g.S, PQ = std::max<int64_t>(1, g.P * g.Q);
  DataGradPlan p;
  p.nb = std::clamp<int64_t>(ceil_div(kPanelMinWidth, PQ), 1, std::max<int64_t>(g.N, 1));
  p.nblocks = ceil_div(g.N, p.nb);
  const int64_t fit = std::max<int64_t>(1, kPanelBytes / (RS * p.nb * PQ * itemsize));
  const int64_t want = ceil_div(kTasksWanted, g.G * std::max<int64_t>(p.nblocks, 1));
  p.cb = std::clamp<int64_t>(std::min(ceil_div(Cg, std::max<int64_t>(want, 1)), fit), 1,
                             std::max<int64_t>(Cg, 1));
  p.cblocks = ceil_div(Cg, p.cb);
  return p;
}

// The input gradient as (group, channel block, image block) tasks: each multiplies its rows of
// w^T by its images' dy (dout itself for one image, else dout's columns dy) into its own planes.
template <typename T>
struct DataGradJob : ConvJob<T> {
  const T *dout, *dy, *w;
  T* dx;
  Conv2dGeometry g;
  DataGradPlan p;

  DataGradJob(const T* dout_, const T* dy_, const T* w_, T* dx_, const Conv2dGeometry& g_)
      : dout(dout_), dy(dy_), w(w_), dx(dx_), g(g_), p(data_grad_plan(g_, sizeof(T))) {}
  int64_t tasks() const override { return g.G * p.cblocks * p.nblocks; }
  void run(int64_t t, std::vector<T>& panel, std::vector<T>&) const override {
    const CblasGemm<T> gemm = Blas::instance().gemm<T>();
    const int64_t PQ = g.P * g.Q, NPQ = g.N * PQ, RS = g.R * g.S, Cg = g.C / g.G, Kg = g.K / g.G;
    const int64_t grp = t / (p.cblocks * p.nblocks), c0 = (t / p.nblocks) % p.cblocks * p.cb;
    const int64_t n0 = t % p.nblocks * p.nb, nn = std::min(p.nb, g.N - n0);
    const int64_t cc = std::min(p.cb, Cg - c0), rows = cc * RS, width = nn * PQ;
    const T* d = nn == 1 ? dout + (n0 * g.K + grp * Kg) * PQ : dy + grp * Kg * NPQ + n0 * PQ;
    const T* a = w + grp * Kg * Cg * RS + c0 * RS;  // (Kg, cc R S), leading dim Cg R S
    const int64_t ldd = nn == 1 ? PQ : NPQ;
    if (pointwise(g) && nn == 1) {  // this image's dx planes are the GEMM's output
      T* dst = dx + (n0 * g.C + grp * Cg + c0) * PQ;
      gemm(kRowMajor, kTrans, kNoTrans, rows, width, Kg, T(1), a, Cg * RS, d, ldd, T(0), dst, PQ);
      return;
    }
    panel.resize(rows * width);
    gemm(kRowMajor, kTrans, kNoTrans, rows, width, Kg, T(1), a, Cg * RS, d, ldd, T(0), panel.data(),
         width);
    col2im_panel(panel.data(), dx, g, grp * Cg + c0, cc, n0, nn);
  }
};

// dout (N, K, P, Q), w (K, Cg, R, S) -> dx (N, C, H, W) (overwritten). Needs a registered BLAS.
template <typename T>
void conv2d_backward_data_panels(const T* dout, const T* w, T* dx, const Conv2dGeometry& g) {
  if (g.N * g.P * g.Q == 0) {  // no output positions: nothing flows back
    std::fill(dx, dx + g.N * g.C * g.H * g.W, T(0));
    return;
  }
  std::vector<T> dy_buf;
  const DataGradJob<T> job(
      dout, data_grad_plan(g, sizeof(T)).nb > 1 ? dout_columns(dout, dy_buf, g) : dout, w, dx, g);
  run_jobs<T>({&job});
}

// ---- both gradients at once ---------------------------------------------------------------------
// dw and dx of one layer in one parallel_for: the weight gradient's tasks first (the longest),
// then the data gradient's, which fill the cores that a weight gradient of few tasks (1x1 layers
// on small maps) leaves idle; dout's columns are built once for both. dx is either col2im of the
// panels (wt null) or, where _np_conv._data_grad_as_conv says so, the convolution of dout with
// wt (C, Kg, R, S) in geometry gt. The same tasks as the two passes alone: the same bits.
template <typename T>
void conv2d_backward_panels(const T* dout, const T* x, const T* w, const T* wt, T* dx, T* dw,
                            const Conv2dGeometry& g, const Conv2dGeometry& gt) {
  const ForwardJob<T> as_conv(dout, wt, nullptr, dx, gt);
  if (g.N * g.P * g.Q == 0 || (wt && as_conv.reduction_cut() > 1)) {  // no task list: one by one
    conv2d_backward_weight_panels(dout, x, dw, g);
    if (wt)
      conv2d_forward_panels(dout, wt, static_cast<const T*>(nullptr), dx, gt);
    else
      conv2d_backward_data_panels(dout, w, dx, g);
    return;
  }
  std::vector<T> dy_buf;
  const T* dy = dout_columns(dout, dy_buf, g);
  const WeightGradJob<T> weight(dy, x, dw, g);
  const DataGradJob<T> data(dout, dy, w, dx, g);
  run_jobs<T>({&weight, wt ? static_cast<const ConvJob<T>*>(&as_conv) : &data});
  weight.finish();
}

}  // namespace cpu
}  // namespace minicnn
