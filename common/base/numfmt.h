/* numfmt.h: scalar conversions between fp32 and BF16, F16 and FP8 e4m3.
 *
 * Rounding is round-to-nearest-even everywhere. fp32 -> e4m3 saturates to +-448 (finite
 * values and infinities alike; "satfinite", as CUDA's __NV_SATFINITE), NaN -> 0x7f (sign kept).
 * e4m3 codes 0x7f/0xff are NaN; there are no infinities. fp32 -> bf16 keeps NaN a NaN (quiet).
 * These are bit-identical to cuda_fp8.h / cuda_bf16.h host conversions (tested exhaustively).
 *
 * Vectorised kernels live in the backend; these scalar versions are the reference they are
 * tested against. Thread-safe; the LUT is a const table.
 */
#ifndef AFD_NUMFMT_H
#define AFD_NUMFMT_H

#include <stdint.h>
#include <string.h>

#define AFD_E4M3_MAX 448.0f

extern const float afd_e4m3_lut[256]; /* e4m3 code -> fp32 value */

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

uint16_t afd_f32_to_bf16(float f);
uint8_t afd_f32_to_e4m3(float f);
uint16_t afd_f32_to_f16(float f);
float afd_f16_to_f32(uint16_t h);

#endif
