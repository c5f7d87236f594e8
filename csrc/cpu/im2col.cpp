// See im2col.h for the index mapping. Parallel over (n, c) planes with OpenMP: each plane of x
// and its C R S rows of cols belong to one iteration, so col2im's accumulation has no races.
#include "im2col.h"

#include <algorithm>
#include <cstring>

namespace minicnn {
namespace cpu {

// Range of output positions p whose input row p*stride - pad + r*dil lies inside [0, H).
static inline void valid_range(int64_t offset, int64_t stride, int64_t H, int64_t P,
                               int64_t* lo, int64_t* hi) {
    // need 0 <= p*stride + offset < H
    int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t h = (H - offset + stride - 1) / stride;  // first p with p*stride + offset >= H
    if (H - offset <= 0) h = 0;
    *lo = std::min(std::max<int64_t>(l, 0), P);
    *hi = std::max(std::min(h, P), *lo);
}

template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
    const int64_t NC = g.N * g.C, RS = g.R * g.S, PQ = g.P * g.Q, HW = g.H * g.W;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; ++nc) {
        const T* plane = x + nc * HW;                   // (H, W)
        T* rows = cols + nc * RS * PQ;                  // (R*S, P*Q) rows of this channel
        for (int64_t r = 0; r < g.R; ++r) {
            const int64_t hoff = r * g.dh - g.ph;
            int64_t p_lo, p_hi;
            valid_range(hoff, g.sh, g.H, g.P, &p_lo, &p_hi);
            for (int64_t s = 0; s < g.S; ++s) {
                const int64_t woff = s * g.dw - g.pw;
                int64_t q_lo, q_hi;
                valid_range(woff, g.sw, g.W, g.Q, &q_lo, &q_hi);
                T* row = rows + (r * g.S + s) * PQ;    // (P, Q)
                std::fill(row, row + p_lo * g.Q, T(0));
                for (int64_t p = p_lo; p < p_hi; ++p) {
                    T* out = row + p * g.Q;
                    const T* in = plane + (p * g.sh + hoff) * g.W;  // input row, inside the plane
                    std::fill(out, out + q_lo, T(0));
                    if (g.sw == 1) {
                        std::memcpy(out + q_lo, in + q_lo + woff, sizeof(T) * (q_hi - q_lo));
                    } else {
                        for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[q * g.sw + woff];
                    }
                    std::fill(out + q_hi, out + g.Q, T(0));
                }
                std::fill(row + p_hi * g.Q, row + PQ, T(0));
            }
        }
    }
}

template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g) {
    const int64_t NC = g.N * g.C, RS = g.R * g.S, PQ = g.P * g.Q, HW = g.H * g.W;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; ++nc) {
        T* plane = x + nc * HW;
        const T* rows = cols + nc * RS * PQ;
        std::fill(plane, plane + HW, T(0));
        for (int64_t r = 0; r < g.R; ++r) {
            const int64_t hoff = r * g.dh - g.ph;
            int64_t p_lo, p_hi;
            valid_range(hoff, g.sh, g.H, g.P, &p_lo, &p_hi);
            for (int64_t s = 0; s < g.S; ++s) {
                const int64_t woff = s * g.dw - g.pw;
                int64_t q_lo, q_hi;
                valid_range(woff, g.sw, g.W, g.Q, &q_lo, &q_hi);
                const T* row = rows + (r * g.S + s) * PQ;
                for (int64_t p = p_lo; p < p_hi; ++p) {
                    const T* in = row + p * g.Q;
                    T* out = plane + (p * g.sh + hoff) * g.W;     // image row, inside the plane
                    for (int64_t q = q_lo; q < q_hi; ++q) out[q * g.sw + woff] += in[q];
                }
            }
        }
    }
}

template void im2col<float>(const float*, float*, const ConvGeometry&);
template void im2col<double>(const double*, double*, const ConvGeometry&);
template void col2im<float>(const float*, float*, const ConvGeometry&);
template void col2im<double>(const double*, double*, const ConvGeometry&);

}  // namespace cpu
}  // namespace minicnn
