// im2col / col2im for the "cpu" device: the data movement that turns a convolution into a GEMM.
//
// Letters (used everywhere in minicnn): N batch, C input channels, H x W input size,
// R x S kernel size, P x Q output size; stride (sh, sw), padding (ph, pw), dilation (dh, dw).
//
//   P = (H + 2 ph - dh (R - 1) - 1) / sh + 1,   Q likewise with W, pw, dw, S, sw.
//
// The column values x[n, c, p sh - ph + r dh, q sw - pw + s dw] (0 outside) in the "folded" layout
//   cols[(c R + r) S + s, (n P + p) Q + q]  (C*R*S, N*P*Q): the batch folded into the GEMM's
//   columns, so a whole batch is one GEMM  w(K, C R S) @ cols(C R S, N P Q) even when P*Q is tiny
//   (a 2x2 map), and backward-weight is one GEMM reducing over N P Q.
// (minicnn/backends/_np_conv.py keeps a NumPy version in the per-image layout (N, C*R*S, P*Q).)
// col2im is the adjoint: it scatters-adds columns back into an (N, C, H, W) image (the gradient of
// im2col, used by conv2d's backward-data). All run on the thread pool (parallel.h) over (n, c)
// planes: a plane's R*S rows belong to one task, so col2im's accumulation has no races.
#pragma once
#include <cstdint>

#include "../geometry.h"

namespace minicnn {
namespace cpu {

// x: (N, C, H, W), cols: (C*R*S, N*P*Q); both contiguous. K and G of g are not used.
template <typename T>
void im2col(const T* x, T* cols, const Conv2dGeometry& g);

// cols: (C*R*S, N*P*Q); x: (N, C, H, W) is overwritten (not accumulated into).
template <typename T>
void col2im(const T* cols, T* x, const Conv2dGeometry& g);

// A panel of the columns, serially (the caller's task): columns [j0, j0 + width) of the rows of
// channels [c0, c0 + Cc), i.e. panel[(c R + r) S + s, j] = cols[((c0 + c) R + r) S + s, j0 + j],
// panel (Cc*R*S, width) row-major. A panel may span several images (j = n P Q + p Q + q).
template <typename T>
void im2col_panel(const T* x, T* panel, const Conv2dGeometry& g, int64_t c0, int64_t Cc, int64_t j0,
                  int64_t width);

// The adjoint of im2col_panel over whole images: panel (Cc*R*S, nn*P*Q) holds the columns of
// channels [c0, c0 + Cc) of images [n0, n0 + nn); their planes of x are overwritten by the
// scatter-added panel (col2im's sums, in the same order). Serial (the caller's task).
template <typename T>
void col2im_panel(const T* panel, T* x, const Conv2dGeometry& g, int64_t c0, int64_t Cc, int64_t n0,
                  int64_t nn);

}  // namespace cpu
}  // namespace minicnn
