// im2col / col2im for the "cpu" device: the data movement that turns a convolution into a GEMM.
//
// Letters (used everywhere in minicnn): N batch, C input channels, H x W input size,
// R x S kernel size, P x Q output size; stride (sh, sw), padding (ph, pw), dilation (dh, dw).
//
//   P = (H + 2 ph - dh (R - 1) - 1) / sh + 1,   Q likewise with W, pw, dw, S, sw.
//
// Two layouts of the same column values x[n, c, p sh - ph + r dh, q sw - pw + s dw] (0 outside):
//   per image  cols[n, (c R + r) S + s, p Q + q]      (N, C*R*S, P*Q): one GEMM per image
//   folded     cols[(c R + r) S + s, (n P + p) Q + q]  (C*R*S, N*P*Q): the batch folded into the
//              GEMM's columns, so a whole batch is one GEMM  w(K, C R S) @ cols(C R S, N P Q) even
//              when P*Q is tiny (a 2x2 map), and backward-weight is one GEMM reducing over N P Q.
// col2im is the adjoint: it scatters-adds columns back into an (N, C, H, W) image (the gradient of
// im2col, used by conv2d's backward-data). All run on the thread pool (parallel.h) over (n, c)
// planes: a plane's R*S rows belong to one task, so col2im's accumulation has no races.
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

// x: (N, C, H, W), cols: (N, C*R*S, P*Q) or, folded, (C*R*S, N*P*Q); both contiguous.
template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g, bool folded = false);

// cols: (N, C*R*S, P*Q) or, folded, (C*R*S, N*P*Q); x: (N, C, H, W) is overwritten (not
// accumulated into).
template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g, bool folded = false);

}  // namespace cpu
}  // namespace minicnn
