// __half and __nv_bfloat16 for the host compiler: the storage types of cuda_fp16.h / cuda_bf16.h
// and the conversion intrinsics minicnn's kernels use, with the same names.
//
// Part of the CUDA emulator (see cuda_emu.h). Both types are 16 bits of storage; kernels do their
// arithmetic in float (convert with __half2float / __bfloat162float, round back with
// __float2half_rn / __float2bfloat16_rn), so only the conversions are needed, and they are exact
// IEEE 754 round-to-nearest-even, as on the GPU:
//   float -> half:  overflow (|x| >= 65520) gives inf, results below 2^-14 become subnormals
//                   (down to 2^-24; half of that and less round to a signed zero), NaN stays NaN
//                   (a quiet NaN keeping the top payload bits).
//   float -> bf16:  the top 16 bits of the float, rounded to nearest even; NaN stays a quiet NaN.
//   half/bf16 -> float: exact.
// tests/kernels/test_kernels_half_types.py checks every half and bf16 bit pattern against NumPy and
// ml_dtypes, and float -> half / bf16 on the edge cases and a random sweep.
#pragma once

#include <cstdint>
#include <cstring>

struct __align__(2) __half {
  uint16_t __x;  // the IEEE binary16 bits (CUDA's member name)
};

struct __align__(2) __nv_bfloat16 {
  uint16_t __x;  // the top 16 bits of an IEEE binary32
};

namespace minicnn_emu::half_bits {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// u >> shift rounded to nearest even (the bits shifted out decide; a carry may reach the exponent).
inline uint32_t round_shift(uint32_t u, int shift) {
  return (u + (1u << (shift - 1)) - 1u + ((u >> shift) & 1u)) >> shift;
}

// |x| below 2^-14 (a = its bits without the sign): a half subnormal, in units of 2^-24.
inline uint16_t subnormal_from_float(uint32_t a) {
  if (a <= 0x33000000u) return 0;  // <= 2^-25: ties to the even zero
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const int shift = 126 - static_cast<int>(a >> 23);       // 14 .. 24
  return static_cast<uint16_t>(round_shift(mant, shift));  // may carry into the smallest normal
}

inline uint16_t from_float(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((a >> 13) & 0x3ffu);  // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past 65504: inf
  if (a < 0x38800000u) return sign | subnormal_from_float(a);
  return sign | static_cast<uint16_t>(round_shift(a - (112u << 23), 13));  // rebias 127 -> 15
}

inline float to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t bf16_from_float(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>(round_shift(u, 16));
}

inline float bf16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

}  // namespace minicnn_emu::half_bits

// ---- the intrinsics (cuda_fp16.h, cuda_bf16.h) --------------------------------------------------
// For a 16-bit type H with the bit conversions from_bits(float) and to_bits(uint16_t): float -> H
// rounded to nearest even (`round`, and `plain`, which rounds the same), and H -> float (`widen`).
#define MINICNN_EMU_CONVERSIONS(H, from_bits, to_bits, round, plain, widen) \
  inline H round(float f) {                                                 \
    return H{minicnn_emu::half_bits::from_bits(f)};                         \
  }                                                                         \
  inline H plain(float f) {                                                 \
    return round(f);                                                        \
  }                                                                         \
  inline float widen(H h) {                                                 \
    return minicnn_emu::half_bits::to_bits(h.__x);                          \
  }
MINICNN_EMU_CONVERSIONS(__half, from_float, to_float, __float2half_rn, __float2half, __half2float)
MINICNN_EMU_CONVERSIONS(__nv_bfloat16, bf16_from_float, bf16_to_float, __float2bfloat16_rn,
                        __float2bfloat16, __bfloat162float)
#undef MINICNN_EMU_CONVERSIONS
