/* numfmt.h: scalar conversions between fp32 and BF16, F16 and FP8 e4m3 (docs/formats.md).
 *
 * Rounding is round-to-nearest-even everywhere, done on the bit patterns (independent of the FPU
 * rounding mode and of FTZ/DAZ). fp32 -> e4m3 saturates to +-448 (finite values and infinities
 * alike; "satfinite", as CUDA's __NV_SATFINITE); NaN -> 0x7f | sign. e4m3 codes 0x7f/0xff are
 * NaN; there are no infinities; exponent-0 codes are subnormals (k * 2^-9). fp32 -> bf16 and
 * fp32 -> f16 overflow to infinity as IEEE does; NaN stays a NaN of the same sign, quieted,
 * keeping its top payload bits (as x86 F16C does). Finite results and all 256 e4m3 decodes are
 * bit-identical to cuda_fp8.h's host conversions; the one difference is a negative NaN, which
 * CUDA encodes as 0x7f and we as 0xff (both NaN; tests/unit/base/test_numfmt_cuda.c).
 *
 * Vectorised kernels live in the backend; these scalar versions are the reference they are
 * tested against. Pure functions, thread-safe; the LUT is a const table. No errors.
 */
#ifndef AFD_NUMFMT_H
#define AFD_NUMFMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AFD_E4M3_MAX 448.0f

extern const float afd_e4m3_lut[256]; /* e4m3 code -> fp32 value (0x7f NaN, 0xff -NaN) */

static inline float afd_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t afd_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float afd_bf16_to_f32(uint16_t h) { return afd_bits_f32((uint32_t)h << 16); }
static inline float afd_e4m3_to_f32(uint8_t q) { return afd_e4m3_lut[q]; }

uint16_t afd_f32_to_bf16(float f); /* RNE; overflow -> inf; NaN -> quiet NaN */
/* Bulk forms, bit-identical to the scalar ones, written so the compiler vectorizes them (the
 * F2A wire's encode and decode). */
void afd_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n);
void afd_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);
uint8_t afd_f32_to_e4m3(float f);  /* RNE; |f| > 448 and inf -> +-448 (0x7e); NaN -> 0x7f|sign */
uint16_t afd_f32_to_f16(float f);  /* RNE; subnormals; overflow -> inf; NaN -> quiet NaN */
float afd_f16_to_f32(uint16_t h);  /* exact; NaN payload kept, quieted */

#endif
