// im2col / col2im for the "cpu" device: the data movement that turns a convolution into a GEMM.
//
// Letters (used everywhere in minicnn): N batch, C input channels, H x W input size,
// R x S kernel size, P x Q output size; stride (sh, sw), padding (ph, pw), dilation (dh, dw).
//
//   P = (H + 2 ph - dh (R - 1) - 1) / sh + 1,   Q likewise with W, pw, dw, S, sw.
//
// im2col writes, for every image n,
//   cols[n, (c R + r) S + s, p Q + q] = x[n, c, p sh - ph + r dh, q sw - pw + s dw]   (0 outside)
// so that conv2d(x, w) for one image and one group is the GEMM  w(K, C R S) @ cols(C R S, P Q).
// col2im is its adjoint: it scatters-adds cols back into an (N, C, H, W) image, which is the
// gradient of im2col (used by conv2d's backward-data).
#pragma once
#include <cstdint>

namespace minicnn {
namespace cpu {

struct ConvGeometry {
    int64_t N, C, H, W;  // input (N, C, H, W)
    int64_t R, S;        // kernel
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t P, Q;        // output
};

// x: (N, C, H, W), cols: (N, C*R*S, P*Q); both contiguous.
template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g);

// cols: (N, C*R*S, P*Q), x: (N, C, H, W); x is overwritten (not accumulated into).
template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g);

}  // namespace cpu
}  // namespace minicnn
