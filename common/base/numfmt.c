/* numfmt.c: scalar fp32 <-> BF16 / F16 / FP8 e4m3 conversions (contract in numfmt.h).
 *
 * Everything is integer arithmetic on the fp32 bit pattern, so the result does not depend on
 * the FPU rounding mode or on FTZ/DAZ. Rounding to nearest even is done by one helper: add
 * (half an output ulp - 1) plus the lowest kept bit, then shift; a carry out of the mantissa
 * moves the exponent up, which is the correct rounding across a binade boundary.
 */
#include "common/base/numfmt.h"

#include <string.h>

#include <math.h> /* NAN only: a constant, no libm call */

/* e4m3 code -> value. Bit 7 sign, bits 6..3 exponent (bias 7), bits 2..0 mantissa m:
 * exponent 0 is subnormal, m/8 * 2^-6; otherwise (1 + m/8) * 2^(e-7); 0x7f/0xff are NaN.
 * Every entry is written exactly (the decimals are finite binary fractions); the unit test
 * recomputes each one from this definition. */
const float afd_e4m3_lut[256] = {
    /* 0x00 */ 0.0f, 0.001953125f, 0.00390625f, 0.005859375f,
    /* 0x04 */ 0.0078125f, 0.009765625f, 0.01171875f, 0.013671875f,
    /* 0x08 */ 0.015625f, 0.017578125f, 0.01953125f, 0.021484375f,
    /* 0x0c */ 0.0234375f, 0.025390625f, 0.02734375f, 0.029296875f,
    /* 0x10 */ 0.03125f, 0.03515625f, 0.0390625f, 0.04296875f,
    /* 0x14 */ 0.046875f, 0.05078125f, 0.0546875f, 0.05859375f,
    /* 0x18 */ 0.0625f, 0.0703125f, 0.078125f, 0.0859375f,
    /* 0x1c */ 0.09375f, 0.1015625f, 0.109375f, 0.1171875f,
    /* 0x20 */ 0.125f, 0.140625f, 0.15625f, 0.171875f, 0.1875f, 0.203125f, 0.21875f, 0.234375f,
    /* 0x28 */ 0.25f, 0.28125f, 0.3125f, 0.34375f, 0.375f, 0.40625f, 0.4375f, 0.46875f,
    /* 0x30 */ 0.5f, 0.5625f, 0.625f, 0.6875f, 0.75f, 0.8125f, 0.875f, 0.9375f,
    /* 0x38 */ 1.0f, 1.125f, 1.25f, 1.375f, 1.5f, 1.625f, 1.75f, 1.875f,
    /* 0x40 */ 2.0f, 2.25f, 2.5f, 2.75f, 3.0f, 3.25f, 3.5f, 3.75f,
    /* 0x48 */ 4.0f, 4.5f, 5.0f, 5.5f, 6.0f, 6.5f, 7.0f, 7.5f,
    /* 0x50 */ 8.0f, 9.0f, 10.0f, 11.0f, 12.0f, 13.0f, 14.0f, 15.0f,
    /* 0x58 */ 16.0f, 18.0f, 20.0f, 22.0f, 24.0f, 26.0f, 28.0f, 30.0f,
    /* 0x60 */ 32.0f, 36.0f, 40.0f, 44.0f, 48.0f, 52.0f, 56.0f, 60.0f,
    /* 0x68 */ 64.0f, 72.0f, 80.0f, 88.0f, 96.0f, 104.0f, 112.0f, 120.0f,
    /* 0x70 */ 128.0f, 144.0f, 160.0f, 176.0f, 192.0f, 208.0f, 224.0f, 240.0f,
    /* 0x78 */ 256.0f, 288.0f, 320.0f, 352.0f, 384.0f, 416.0f, 448.0f, NAN,
    /* 0x80 */ -0.0f, -0.001953125f, -0.00390625f, -0.005859375f,
    /* 0x84 */ -0.0078125f, -0.009765625f, -0.01171875f, -0.013671875f,
    /* 0x88 */ -0.015625f, -0.017578125f, -0.01953125f, -0.021484375f,
    /* 0x8c */ -0.0234375f, -0.025390625f, -0.02734375f, -0.029296875f,
    /* 0x90 */ -0.03125f, -0.03515625f, -0.0390625f, -0.04296875f,
    /* 0x94 */ -0.046875f, -0.05078125f, -0.0546875f, -0.05859375f,
    /* 0x98 */ -0.0625f, -0.0703125f, -0.078125f, -0.0859375f,
    /* 0x9c */ -0.09375f, -0.1015625f, -0.109375f, -0.1171875f,
    /* 0xa0 */ -0.125f, -0.140625f, -0.15625f, -0.171875f,
    /* 0xa4 */ -0.1875f, -0.203125f, -0.21875f, -0.234375f,
    /* 0xa8 */ -0.25f, -0.28125f, -0.3125f, -0.34375f, -0.375f, -0.40625f, -0.4375f, -0.46875f,
    /* 0xb0 */ -0.5f, -0.5625f, -0.625f, -0.6875f, -0.75f, -0.8125f, -0.875f, -0.9375f,
    /* 0xb8 */ -1.0f, -1.125f, -1.25f, -1.375f, -1.5f, -1.625f, -1.75f, -1.875f,
    /* 0xc0 */ -2.0f, -2.25f, -2.5f, -2.75f, -3.0f, -3.25f, -3.5f, -3.75f,
    /* 0xc8 */ -4.0f, -4.5f, -5.0f, -5.5f, -6.0f, -6.5f, -7.0f, -7.5f,
    /* 0xd0 */ -8.0f, -9.0f, -10.0f, -11.0f, -12.0f, -13.0f, -14.0f, -15.0f,
    /* 0xd8 */ -16.0f, -18.0f, -20.0f, -22.0f, -24.0f, -26.0f, -28.0f, -30.0f,
    /* 0xe0 */ -32.0f, -36.0f, -40.0f, -44.0f, -48.0f, -52.0f, -56.0f, -60.0f,
    /* 0xe8 */ -64.0f, -72.0f, -80.0f, -88.0f, -96.0f, -104.0f, -112.0f, -120.0f,
    /* 0xf0 */ -128.0f, -144.0f, -160.0f, -176.0f, -192.0f, -208.0f, -224.0f, -240.0f,
    /* 0xf8 */ -256.0f, -288.0f, -320.0f, -352.0f, -384.0f, -416.0f, -448.0f, -NAN,
};

/* m >> s (1 <= s <= 31) rounded to nearest, ties to even; m + 2^(s-1) must fit in 32 bits. */
static inline uint32_t rne_shift(uint32_t m, uint32_t s) {
    return (m + ((1u << (s - 1)) - 1u) + ((m >> s) & 1u)) >> s;
}

static inline uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* rne(|f| * 2^k) for |f| below the smallest normal of a narrow format. An fp32 normal is
 * m * 2^(e - 150) with m = 1.mantissa as a 24-bit integer and e the biased exponent, so the
 * caller passes shift = 150 - k - e. A shift outside 1..31 (also one that wrapped, when the
 * caller computes this for a value that is not in range and then discards it) is clamped to
 * 31, where the result is 0. fp32 subnormals (e = 0) get the implicit bit too, harmlessly:
 * their shift is >= 31 for every format here. */
static inline uint32_t subnormal_code(uint32_t a, uint32_t shift) {
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    return rne_shift(m, shift - 1u < 31u ? shift : 31u);
}

uint16_t afd_f32_to_bf16(float f) {
    uint32_t u = afd_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* NaN: keep sign and top payload, set quiet */
    return (uint16_t)rne_shift(u, 16);        /* overflow rounds to inf, as IEEE says */
}

void afd_f32_to_bf16_n(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t q = (u >> 16) | 0x40u;
        dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
    }
}

void afd_bf16_to_f32_n(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

/* Normal range |f| >= 2^-6: drop 20 mantissa bits, rebias 127 -> 7 (120 << 3), and clamp at
 * 0x7e (448), which also catches +-inf. Below 2^-6: code = rne(|f| * 2^9), 0..8. */
uint8_t afd_f32_to_e4m3(float f) {
    uint32_t u = afd_f32_bits(f);
    uint32_t sign = (u >> 24) & 0x80u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t norm = min_u32(rne_shift(a, 20) - (120u << 3), 0x7eu);
    uint32_t sub = subnormal_code(a, 141u - (a >> 23));
    uint32_t code = a < 0x3c800000u ? sub : norm;
    code = a > 0x7f800000u ? 0x7fu : code;
    return (uint8_t)(code | sign);
}

/* Normal range |f| >= 2^-14: drop 13 bits, rebias 127 -> 15 (112 << 10); results at or past
 * 0x7c00 are infinity. Below 2^-14: code = rne(|f| * 2^24), 0..0x400. */
uint16_t afd_f32_to_f16(float f) {
    uint32_t u = afd_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep sign and top payload, set quiet */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    uint32_t code;
    if (a < 0x38800000u)
        code = subnormal_code(a, 126u - (a >> 23));
    else
        code = min_u32(rne_shift(a, 13) - (112u << 10), 0x7c00u);
    return (uint16_t)(sign | code);
}

/* Subnormal halves are m * 2^-24 with m < 1024: an exact int -> float conversion and an exact
 * power-of-two scaling, whatever the rounding mode. NaN payloads are kept, and quieted. */
float afd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f)
        return afd_bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e == 0)
        return afd_bits_f32(sign | afd_f32_bits((float)m * 0x1p-24f));
    return afd_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}
