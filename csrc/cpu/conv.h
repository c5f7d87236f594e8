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
// there, tasks are blocks of input channels instead (conv2d_forward_cblocks).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../geometry.h"
#include "blas.h"
#include "im2col.h"
#include "parallel.h"

namespace minicnn {
namespace cpu {

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

// out (Kg, width) -> y's columns [j0, j0 + width) of channels [k0, k0 + Kg), plus bias.
template <typename T>
void store_panel(const T* out, const T* bias, T* y, const Conv2dGeometry& g, int64_t k0, int64_t Kg,
                 int64_t j0, int64_t width) {
  const int64_t PQ = g.P * g.Q;
  for (int64_t j = j0; j < j0 + width;) {
    const int64_t n = j / PQ, pq0 = j % PQ, len = std::min(PQ - pq0, j0 + width - j);
    for (int64_t k = 0; k < Kg; ++k) {
      const T* src = out + k * width + (j - j0);
      T* dst = y + (n * g.K + k0 + k) * PQ + pq0;
      const T b = bias ? bias[k0 + k] : T(0);
      for (int64_t i = 0; i < len; ++i) dst[i] = src[i] + b;
    }
    j += len;
  }
}

constexpr int64_t kMinBlockRows = 512;  // column rows per task where a layer is one panel
constexpr int64_t kMaxBlocks = 4;       // each block adds a partial product to sum: few, long ones

// Blocks of input channels for a layer whose columns fit one panel per group (the small maps of
// the last stages: 16 images of 2x2 are 64 columns): cblocks x G tasks instead of G, each over
// at least kMinBlockRows rows of the reduction.
inline int64_t reduction_blocks(int64_t groups, int64_t panels, int64_t Cg, int64_t RS) {
  if (panels != 1 || groups >= kMaxBlocks) return 1;
  const int64_t most = std::max<int64_t>(1, Cg * RS / kMinBlockRows);
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
      store_panel(row.data(), bias, y, g, k, 1, 0, columns);
    }
  });
}

// x (N, C, H, W), w (K, Cg, R, S), bias (K,) or null -> y (N, K, P, Q). Needs a registered BLAS.
template <typename T>
void conv2d_forward_panels(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const Blas& blas = Blas::instance();
  const CblasGemm<T> gemm = blas.gemm<T>();
  const int64_t PQ = g.P * g.Q, columns = g.N * PQ, Cg = g.C / g.G, Kg = g.K / g.G;
  const int64_t rows = Cg * g.R * g.S;
  const int64_t width = panel_width(rows, columns, PQ, sizeof(T));
  const int64_t panels = columns == 0 ? 0 : (columns + width - 1) / width;
  const bool pointwise = g.R == 1 && g.S == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  int previous = blas.set_threads_local ? blas.set_threads_local(1) : -1;
  const int64_t cblocks = reduction_blocks(g.G, panels, Cg, g.R * g.S);
  if (cblocks > 1) {
    conv2d_forward_cblocks(x, w, bias, y, g, cblocks);
    if (blas.set_threads_local && previous > 0) blas.set_threads_local(previous);
    return;
  }
  parallel_for(g.G * panels, 1, [&](int64_t t0, int64_t t1) {
    if (blas.set_threads_local) blas.set_threads_local(1);
    std::vector<T> panel, out;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t grp = t / panels, j0 = (t % panels) * width;
      const int64_t n = std::min(width, columns - j0);
      const T* wg = w + grp * Kg * rows;   // (Kg, rows)
      if (j0 / PQ == (j0 + n - 1) / PQ) {  // inside one image: multiply straight into y
        const int64_t img = j0 / PQ;
        const T* b = x + (img * g.C + grp * Cg) * PQ + j0 % PQ;  // a 1x1 conv's columns are x
        int64_t ldb = PQ;
        if (!pointwise) {
          panel.resize(rows * n);
          im2col_panel(x, panel.data(), g, grp * Cg, Cg, j0, n);
          b = panel.data();
          ldb = n;
        }
        T* dst = y + (img * g.K + grp * Kg) * PQ + j0 % PQ;
        gemm(kRowMajor, kNoTrans, kNoTrans, Kg, n, rows, T(1), wg, rows, b, ldb, T(0), dst, PQ);
        if (bias)
          for (int64_t k = 0; k < Kg; ++k)
            for (int64_t i = 0; i < n; ++i) dst[k * PQ + i] += bias[grp * Kg + k];
        continue;
      }
      panel.resize(rows * n);
      im2col_panel(x, panel.data(), g, grp * Cg, Cg, j0, n);
      out.resize(Kg * n);
      gemm(kRowMajor, kNoTrans, kNoTrans, Kg, n, rows, T(1), wg, rows, panel.data(), n, T(0),
           out.data(), n);
      store_panel(out.data(), bias, y, g, grp * Kg, Kg, j0, n);
    }
  });
  if (blas.set_threads_local && previous > 0) blas.set_threads_local(previous);
}

}  // namespace cpu
}  // namespace minicnn
