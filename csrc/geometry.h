// The geometry of one convolution or pooling: every size of the call, with the names used
// everywhere in minicnn. Python computes and checks it once (minicnn/ops/geometry.py, the output
// size included) and hands it to the C++ side, which binds these structs with the same field
// names (csrc/geometry_py.h) in minicnn._C_cpu and in the kernel bindings (csrc/bindings.cpp).
//
// Letters: N batch, C channels, H x W input, K output channels, R x S kernel or window, P x Q
// output; stride (sh, sw), padding (ph, pw, symmetric), dilation (dh, dw), G groups. Output pixel
// (p, q) reads input pixel (p sh - ph + r dh, q sw - pw + s dw) for kernel offset (r, s).
// All fields are 64-bit: the consumers narrow what they index with 32-bit ints after checking
// (kernels::conv2d_check, kernels::pool2d_check).
#pragma once

#include <cstdint>

namespace minicnn {

// x (N, C, H, W) * w (K, C/G, R, S) -> y (N, K, P, Q).
struct Conv2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel
  int64_t P, Q;        // output plane
  int64_t sh, sw;      // stride
  int64_t ph, pw;      // padding
  int64_t dh, dw;      // dilation
  int64_t G;           // groups
};

// x (N, C, H, W) pooled by an R x S window to y (N, C, P, Q); a ceil_mode window may run past the
// bottom/right padding (P, Q say how many windows there are). Adaptive pooling uses N, C, H, W,
// P, Q only.
struct Pool2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t R, S;        // window
  int64_t P, Q;        // output plane
  int64_t sh, sw;      // stride
  int64_t ph, pw;      // padding
  int64_t dh, dw;      // dilation
};

}  // namespace minicnn
