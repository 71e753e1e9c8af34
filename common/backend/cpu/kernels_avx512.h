/* kernels_avx512.h: the AVX-512 vector vocabulary kernels_simd.h is written in (16 fp32 lanes),
 * shared by the avx512 variant (kernels_avx512.c: F/BW/DQ/VL) and the avx512vbmi variant
 * (kernels_vbmi.c, which defines SIMD_VBMI: FP8 weights converted by byte-table lookups).
 * Not a public header: the including file defines SIMD_NAME and SIMD_TABLE first and includes
 * kernels_simd.h after it. Both variants lay out and sum every matmul the same way, so their
 * results are bit-identical. */
#ifndef AFD_KERNELS_AVX512_H
#define AFD_KERNELS_AVX512_H
#include <immintrin.h>

#include "common/backend/cpu/cpu.h"
#include "common/base/numfmt.h"

#define VL 16

typedef __m512 vf;

static inline __mmask16 lanes(int n) { return (__mmask16)((1u << n) - 1u); }
static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float f) { return _mm512_set1_ps(f); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
/* First n (< VL) lanes from p, the rest 0; nothing past p + n is read. */
static inline vf v_loadn(const float *p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
static inline void v_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline void v_storen(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
/* max(a, b); when a is NaN the result is b (x86 rule: the second operand). */
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf v_abs(vf a) { return _mm512_abs_ps(a); }
static inline float v_first(vf v) { return _mm512_cvtss_f32(v); }
/* Lanes at index >= valid become `fill`. */
static inline vf v_mask_tail(vf v, int valid, float fill) {
    return valid >= VL ? v : _mm512_mask_blend_ps(lanes(valid < 0 ? 0 : valid), v_set1(fill), v);
}

/* The horizontal sum, always in this tree: halves 8+8, 4+4, then (0+2, 1+3), then 0+1. */
static inline float v_hsum(vf v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static inline float v_hmax(vf v) { return _mm512_reduce_max_ps(v); }

/* p * 2^n for integral-valued n in [-126, 128]. */
static inline vf v_ldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
static inline vf v_round(vf x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vf v_select_lt(vf x, float lim, vf a, vf b) { /* x < lim ? a : b */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, v_set1(lim), _CMP_LT_OQ), b, a);
}
static inline vf v_select_gt(vf x, float lim, vf a, vf b) { /* x > lim ? a : b */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, v_set1(lim), _CMP_GT_OQ), b, a);
}

/* ---- weight / cache element loads: VL elements to fp32 ---- */

static inline vf w_bf16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline vf w_bf16n(const uint16_t *p, int n) {
    __m256i h = _mm256_maskz_loadu_epi16(lanes(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline vf w_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf w_f16n(const uint16_t *p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes(n), p));
}
/* e4m3 byte b -> fp16 bits ((b & 0x80) << 8) | ((b & 0x7f) << 7) = e4m3 value / 256, exact
 * (subnormals too): sign-extend to 16 bits, shift by 7, clear bit 14. s256 = scale * 256. */
static inline vf e4m3_cvt(__m128i b, vf s256) {
    __m256i h = _mm256_cvtepi8_epi16(b);
    h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xBF80));
    return _mm512_mul_ps(_mm512_cvtph_ps(h), s256);
}
static inline vf w_e4m3(const uint8_t *p, vf s256) {
    return e4m3_cvt(_mm_loadu_si128((const __m128i *)p), s256);
}
static inline vf w_e4m3n(const uint8_t *p, int n, vf s256) {
    return e4m3_cvt(_mm_maskz_loadu_epi8(lanes(n), p), s256);
}

/* ---- pairs: 2*VL consecutive elements as E (the even positions) and O (the odd ones), the
 * lane layout of BF16 and FP8 weights: the split costs shifts and masks, no shuffles ---- */

static inline __mmask32 lanes32(int n) { return n >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << n) - 1; }

static inline void bf16_pair_cvt(__m512i w, vf *e, vf *o) {
    *e = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    *o = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u)));
}
static inline void w_bf16_pair(const uint16_t *p, vf *e, vf *o) {
    bf16_pair_cvt(_mm512_loadu_si512(p), e, o);
}
static inline void w_bf16_pairn(const uint16_t *p, int n, vf *e, vf *o) {
    bf16_pair_cvt(_mm512_maskz_loadu_epi16(lanes32(n), p), e, o);
}
#ifndef SIMD_VBMI
/* 16-bit word j holds bytes 2j (low) and 2j+1 (high); each becomes the fp16 bits
 * ((b & 0x80) << 8) | ((b & 0x7f) << 7) = e4m3 value / 256 (exact, subnormals too), then
 * fp32: the values are e4m3 / 256, unscaled (the block scale comes after the block's sum). */
static inline void e4m3_pair_cvt(__m256i w, vf *e, vf *o) {
    __m256i m = _mm256_set1_epi16((short)0xBF80);
    __m256i ev = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1), m);
    __m256i od = _mm256_and_si256(_mm256_srai_epi16(w, 1), m);
    *e = _mm512_cvtph_ps(ev);
    *o = _mm512_cvtph_ps(od);
}
static inline void w_e4m3_pair(const uint8_t *p, vf *e, vf *o) {
    e4m3_pair_cvt(_mm256_loadu_si256((const __m256i *)p), e, o);
}
static inline void w_e4m3_pairn(const uint8_t *p, int n, vf *e, vf *o) {
    e4m3_pair_cvt(_mm256_maskz_loadu_epi8(lanes32(n), p), e, o);
}
/* Two pair chunks (4*VL bytes) at once: the integer work done once on a whole zmm. */
static inline void w_e4m3_quad(const uint8_t *p, vf *e0, vf *o0, vf *e1, vf *o1) {
    __m512i w = _mm512_loadu_si512(p), m = _mm512_set1_epi16((short)0xBF80);
    __m512i ev = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(w, 8), 1), m);
    __m512i od = _mm512_and_si512(_mm512_srai_epi16(w, 1), m);
    *e0 = _mm512_cvtph_ps(_mm512_castsi512_si256(ev));
    *o0 = _mm512_cvtph_ps(_mm512_castsi512_si256(od));
    *e1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(ev, 1));
    *o1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(od, 1));
}
#else
/* AVX512-VBMI: e4m3 / 256 is exactly a bf16 value (4 significant bits). Its high and low bytes
 * for the 128 magnitudes (from the fp16 rule above: bf16 = (m << 4) + 0x3800 for m >= 8,
 * subnormals 1..7 normalized), looked up 64 codes at a time with vpermi2b (which reads bits 0-6
 * of each index byte), the sign copied into the high byte; interleaved into bf16 words in
 * column order, a word pair is one 32-bit lane and the BF16 trick gives E and O. Checked
 * against the scalar table for every code by the conformance tests. */
static const uint8_t e4m3_bf16_lo[128] __attribute__((aligned(64))) = {
    0x00, 0x00, 0x80, 0xc0, 0x00, 0x20, 0x40, 0x60, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
#define E4M3_LO16 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0
    E4M3_LO16, E4M3_LO16, E4M3_LO16, E4M3_LO16, E4M3_LO16, E4M3_LO16, E4M3_LO16,
#undef E4M3_LO16
};
static const uint8_t e4m3_bf16_hi[128] __attribute__((aligned(64))) = {
    0x00, 0x37, 0x37, 0x37, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38,
#define E4M3_HI16(h) h, h, h, h, h, h, h, h, h, h, h, h, h, h, h, h
    E4M3_HI16(0x39), E4M3_HI16(0x3a), E4M3_HI16(0x3b), E4M3_HI16(0x3c), E4M3_HI16(0x3d),
    E4M3_HI16(0x3e), E4M3_HI16(0x3f),
#undef E4M3_HI16
};

/* 64 codes -> two vectors of bf16 words: a = columns 0-31, b = columns 32-63. The in-lane
 * unpacks take bytes 0-7 / 8-15 of each 128-bit lane, so the codes are first permuted to lane
 * L = columns 8L..8L+7, 32+8L..32+8L+7. */
static inline void e4m3_bf16_words(__m512i w, __m512i *a, __m512i *b) {
    const __m512i order = _mm512_set_epi8(
        63, 62, 61, 60, 59, 58, 57, 56, 31, 30, 29, 28, 27, 26, 25, 24,
        55, 54, 53, 52, 51, 50, 49, 48, 23, 22, 21, 20, 19, 18, 17, 16,
        47, 46, 45, 44, 43, 42, 41, 40, 15, 14, 13, 12, 11, 10, 9, 8,
        39, 38, 37, 36, 35, 34, 33, 32, 7, 6, 5, 4, 3, 2, 1, 0);
    w = _mm512_permutexvar_epi8(order, w);
    __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(e4m3_bf16_lo), w,
                                          _mm512_load_si512(e4m3_bf16_lo + 64));
    __m512i hi = _mm512_permutex2var_epi8(_mm512_load_si512(e4m3_bf16_hi), w,
                                          _mm512_load_si512(e4m3_bf16_hi + 64));
    hi = _mm512_ternarylogic_epi32(hi, w, _mm512_set1_epi8((char)0x80), 0xF8); /* hi | (w & 0x80) */
    *a = _mm512_unpacklo_epi8(lo, hi);
    *b = _mm512_unpackhi_epi8(lo, hi);
}
static inline void e4m3_pair_cvt(__m512i w, vf *e, vf *o) {
    __m512i a, b;
    e4m3_bf16_words(w, &a, &b);
    bf16_pair_cvt(a, e, o);
}
static inline void w_e4m3_pair(const uint8_t *p, vf *e, vf *o) {
    e4m3_pair_cvt(_mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p)), e, o);
}
static inline void w_e4m3_pairn(const uint8_t *p, int n, vf *e, vf *o) {
    e4m3_pair_cvt(_mm512_zextsi256_si512(_mm256_maskz_loadu_epi8(lanes32(n), p)), e, o);
}
static inline void w_e4m3_quad(const uint8_t *p, vf *e0, vf *o0, vf *e1, vf *o1) {
    __m512i a, b;
    e4m3_bf16_words(_mm512_loadu_si512(p), &a, &b);
    bf16_pair_cvt(a, e0, o0);
    bf16_pair_cvt(b, e1, o1);
}
#endif

static inline void x_pair_split(vf x0, vf x1, vf *e, vf *o) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *e = _mm512_permutex2var_ps(x0, ie, x1);
    *o = _mm512_permutex2var_ps(x0, io, x1);
}
static inline void x_pair(const float *x, vf *e, vf *o) {
    x_pair_split(v_load(x), v_load(x + VL), e, o);
}
static inline void x_pairn(const float *x, int n, vf *e, vf *o) {
    vf x0 = n >= VL ? v_load(x) : v_loadn(x, n);
    vf x1 = n > VL ? v_loadn(x + VL, n - VL) : v_zero();
    x_pair_split(x0, x1, e, o);
}

/* always_inline: a wrapper GCC does not inline is judged free of side effects (pure-const) and
 * its calls are deleted as dead code. */
static inline __attribute__((always_inline)) void prefetch(const void *p) {
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/* dst[j][i] = src[i][j] for a VL x VL block of floats (row strides in floats). */
static inline void transpose_tile(float *dst, size_t ldd, const float *src, size_t lds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* r[4q + m] holds, in 128-bit lane L, column 4L + m of rows 4q..4q+3 */
    for (int m = 0; m < 4; m++) {
        __m512 a = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);      /* lanes 0,2 | 0,2 */
        __m512 b = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);      /* lanes 1,3 | 1,3 */
        __m512 c = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        __m512 d = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
        t[m] = _mm512_shuffle_f32x4(a, c, 0x88);      /* lane 0 of rows 0-15 */
        t[8 + m] = _mm512_shuffle_f32x4(a, c, 0xDD);  /* lane 2 */
        t[4 + m] = _mm512_shuffle_f32x4(b, d, 0x88);  /* lane 1 */
        t[12 + m] = _mm512_shuffle_f32x4(b, d, 0xDD); /* lane 3 */
    }
    for (int i = 0; i < 16; i++) /* t[4L + m] is column 4L + m */
        _mm512_storeu_ps(dst + i * ldd, t[i]);
}

/* ---- row kernels that need ISA-specific integer or double code ---- */

/* Sum of x[i]^2 in double: two 8-lane double accumulators (even/odd halves of each 16), k
 * sequential per lane, then a fixed tree. */
static double sumsq_d(const float *x, int n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    int i = 0;
    for (; i < n; i += VL) {
        vf v = i + VL <= n ? v_load(x + i) : v_loadn(x + i, n - i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    __m512d a = _mm512_add_pd(a0, a1);
    __m256d b = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    __m128d c = _mm_add_pd(_mm256_castpd256_pd128(b), _mm256_extractf128_pd(b, 1));
    return _mm_cvtsd_f64(_mm_add_sd(c, _mm_unpackhi_pd(c, c)));
}

/* e4m3 codes of VL values v (RNE, satfinite, NaN -> 0x7f), the rule of afd_f32_to_e4m3. */
static inline __m128i e4m3_encode(vf v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    /* normal: round the mantissa to 3 bits (ties to even), rebias the exponent 127 -> 7 */
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(a, _mm512_add_epi32(_mm512_set1_epi32(0x7ffff), odd));
    __m512i norm = _mm512_sub_epi32(_mm512_srli_epi32(r, 20), _mm512_set1_epi32(120 << 3));
    norm = _mm512_min_epi32(norm, _mm512_set1_epi32(0x7e));
    /* subnormal (|v| < 2^-6): code = rne(|v| * 2^9), 0..8 (8 is 2^-6, the smallest normal) */
    vf af = _mm512_castsi512_ps(a);
    __m512i sub = _mm512_cvt_roundps_epi32(_mm512_mul_ps(af, v_set1(512.0f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __mmask16 is_sub = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(0x3c800000));
    __mmask16 is_nan = _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7f800000));
    __m512i code = _mm512_mask_blend_epi32(is_sub, norm, sub);
    code = _mm512_mask_blend_epi32(is_nan, code, _mm512_set1_epi32(0x7f));
    return _mm512_cvtepi32_epi8(_mm512_or_si512(code, sign));
}

static void e4m3_store(uint8_t *q, vf v) { _mm_storeu_si128((__m128i *)q, e4m3_encode(v)); }
static void e4m3_storen(uint8_t *q, vf v, int n) {
    _mm_mask_storeu_epi8(q, lanes(n), e4m3_encode(v));
}

/* x = lut[q] * scale, gathered from the scalar table: bit-identical to the scalar rule. */
static void dequantize_group(float *x, const uint8_t *q, float scale, int n) {
    vf s = v_set1(scale);
    int i = 0;
    for (; i + VL <= n; i += VL) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        v_store(x + i, v_mul(_mm512_i32gather_ps(idx, afd_e4m3_lut, 4), s));
    }
    if (i < n) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes(n - i), q + i));
        v_storen(x + i, v_mul(_mm512_i32gather_ps(idx, afd_e4m3_lut, 4), s), n - i);
    }
}

#endif
