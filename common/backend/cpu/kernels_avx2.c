/* kernels_avx2.c: the AVX2 variant, the x86-64-v3 baseline (AVX2, FMA, F16C; no extra
 * flags). 8 fp32 lanes. The loops live in kernels_simd.h; this file gives the vector
 * primitives it is written in. */
#include <immintrin.h>
#include <string.h>

#include "common/backend/cpu/cpu.h"
#include "common/base/numfmt.h"

#define VL 8
#define SIMD_NAME "avx2"
#define SIMD_TABLE cpu_kernels_avx2

typedef __m256 vf;

static const int32_t lane_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
/* Mask of the first n lanes (0 <= n <= VL). */
static inline __m256i lanes(int n) {
    return _mm256_loadu_si256((const __m256i *)(lane_tab + VL - n));
}
static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float f) { return _mm256_set1_ps(f); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
/* First n (< VL) lanes from p, the rest 0; masked lanes are not read. */
static inline vf v_loadn(const float *p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
static inline void v_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline void v_storen(float *p, vf v, int n) { _mm256_maskstore_ps(p, lanes(n), v); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
/* max(a, b); when a is NaN the result is b (x86 rule: the second operand). */
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_abs(vf a) {
    return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}
static inline float v_first(vf v) { return _mm256_cvtss_f32(v); }
/* Lanes at index >= valid become `fill`. */
static inline vf v_mask_tail(vf v, int valid, float fill) {
    if (valid >= VL)
        return v;
    return _mm256_blendv_ps(v_set1(fill), v, _mm256_castsi256_ps(lanes(valid < 0 ? 0 : valid)));
}

static inline float hsum4(__m128 b) {
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
/* The horizontal sum, always in this tree: 4+4, then (0+2, 1+3), then 0+1. */
static inline float v_hsum(vf v) {
    return hsum4(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}
static inline float v_hmax(vf v) {
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static inline vf v_round(vf x) {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* 2^e for integral e in [-63, 64] (no bit tricks outside the normal range). */
static inline vf pow2i(__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}
/* p * 2^n for integral-valued n in [-126, 128], as two exact scalings. */
static inline vf v_ldexp(vf p, vf n) {
    __m256i e = _mm256_cvttps_epi32(n);
    __m256i e1 = _mm256_srai_epi32(e, 1);
    return v_mul(v_mul(p, pow2i(e1)), pow2i(_mm256_sub_epi32(e, e1)));
}
static inline vf v_select_lt(vf x, float lim, vf a, vf b) { /* x < lim ? a : b */
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, v_set1(lim), _CMP_LT_OQ));
}
static inline vf v_select_gt(vf x, float lim, vf a, vf b) { /* x > lim ? a : b */
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, v_set1(lim), _CMP_GT_OQ));
}

/* ---- weight / cache element loads: VL elements to fp32 ---- */

static inline vf w_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline vf w_bf16n(const uint16_t *p, int n) {
    uint16_t t[VL] = {0};
    memcpy(t, p, (size_t)n * sizeof *t);
    return w_bf16(t);
}
static inline vf w_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline vf w_f16n(const uint16_t *p, int n) {
    uint16_t t[VL] = {0};
    memcpy(t, p, (size_t)n * sizeof *t);
    return w_f16(t);
}
/* e4m3 byte b -> fp16 bits ((b & 0x80) << 8) | ((b & 0x7f) << 7) = e4m3 value / 256, exact
 * (subnormals too): sign-extend to 16 bits, shift by 7, clear bit 14. s256 = scale * 256. */
static inline vf e4m3_cvt(__m128i b, vf s256) {
    __m128i h = _mm_cvtepi8_epi16(b);
    h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16((short)0xBF80));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), s256);
}
static inline vf w_e4m3(const uint8_t *p, vf s256) {
    return e4m3_cvt(_mm_loadl_epi64((const __m128i *)p), s256);
}
static inline vf w_e4m3n(const uint8_t *p, int n, vf s256) {
    uint8_t t[VL] = {0};
    memcpy(t, p, (size_t)n);
    return w_e4m3(t, s256);
}

/* ---- pairs: 2*VL consecutive elements as E (the even positions) and O (the odd ones), the
 * lane layout of BF16 and FP8 weights: the split costs shifts and masks, no shuffles ---- */

static inline void bf16_pair_cvt(__m256i w, vf *e, vf *o) {
    *e = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    *o = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xffff0000u)));
}
static inline void w_bf16_pair(const uint16_t *p, vf *e, vf *o) {
    bf16_pair_cvt(_mm256_loadu_si256((const __m256i *)p), e, o);
}
static inline void w_bf16_pairn(const uint16_t *p, int n, vf *e, vf *o) {
    uint16_t t[2 * VL] = {0};
    memcpy(t, p, (size_t)n * sizeof *t);
    w_bf16_pair(t, e, o);
}
/* 16-bit word j holds bytes 2j (low) and 2j+1 (high); each becomes the fp16 bits
 * ((b & 0x80) << 8) | ((b & 0x7f) << 7) = e4m3 value / 256 (exact, subnormals too), then
 * fp32: the values are e4m3 / 256, unscaled (the block scale comes after the block's sum). */
static inline void e4m3_pair_cvt(__m128i w, vf *e, vf *o) {
    __m128i m = _mm_set1_epi16((short)0xBF80);
    __m128i ev = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(w, 8), 1), m);
    __m128i od = _mm_and_si128(_mm_srai_epi16(w, 1), m);
    *e = _mm256_cvtph_ps(ev);
    *o = _mm256_cvtph_ps(od);
}
static inline void w_e4m3_pair(const uint8_t *p, vf *e, vf *o) {
    e4m3_pair_cvt(_mm_loadu_si128((const __m128i *)p), e, o);
}
static inline void w_e4m3_pairn(const uint8_t *p, int n, vf *e, vf *o) {
    uint8_t t[2 * VL] = {0};
    memcpy(t, p, (size_t)n);
    w_e4m3_pair(t, e, o);
}
/* Two pair chunks (4*VL bytes) at once: the integer work done once on a whole ymm. */
static inline void w_e4m3_quad(const uint8_t *p, vf *e0, vf *o0, vf *e1, vf *o1) {
    __m256i w = _mm256_loadu_si256((const __m256i *)p), m = _mm256_set1_epi16((short)0xBF80);
    __m256i ev = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1), m);
    __m256i od = _mm256_and_si256(_mm256_srai_epi16(w, 1), m);
    *e0 = _mm256_cvtph_ps(_mm256_castsi256_si128(ev));
    *o0 = _mm256_cvtph_ps(_mm256_castsi256_si128(od));
    *e1 = _mm256_cvtph_ps(_mm256_extracti128_si256(ev, 1));
    *o1 = _mm256_cvtph_ps(_mm256_extracti128_si256(od, 1));
}
static inline void x_pair_split(vf x0, vf x1, vf *e, vf *o) {
    /* per 128-bit half: (x0[0], x0[2], x1[0], x1[2]); then 64-bit quarters in order 0 2 1 3 */
    *e = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0x88)), 0xD8));
    *o = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0xDD)), 0xD8));
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
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* r[4q + m] holds, in 128-bit half L, column 4L + m of rows 4q..4q+3 */
    for (int m = 0; m < 4; m++) {
        _mm256_storeu_ps(dst + m * ldd, _mm256_permute2f128_ps(r[m], r[4 + m], 0x20));
        _mm256_storeu_ps(dst + (4 + m) * ldd, _mm256_permute2f128_ps(r[m], r[4 + m], 0x31));
    }
}

/* ---- row kernels that need ISA-specific integer or double code ---- */

/* Sum of x[i]^2 in double: two 4-lane double accumulators (low/high halves of each 8), k
 * sequential per lane, then a fixed tree. */
static double sumsq_d(const float *x, int n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int i = 0; i < n; i += VL) {
        vf v = i + VL <= n ? v_load(x + i) : v_loadn(x + i, n - i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d c = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(c, _mm_unpackhi_pd(c, c)));
}

/* e4m3 codes of VL values (RNE, satfinite, NaN -> 0x7f), the rule of afd_f32_to_e4m3; the
 * low 8 bytes of the result. */
static inline __m128i e4m3_encode(vf v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    /* normal: round the mantissa to 3 bits (ties to even), rebias the exponent 127 -> 7 */
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(0x7ffff), odd));
    __m256i norm = _mm256_sub_epi32(_mm256_srli_epi32(r, 20), _mm256_set1_epi32(120 << 3));
    norm = _mm256_min_epi32(norm, _mm256_set1_epi32(0x7e));
    /* subnormal (|v| < 2^-6): code = rne(|v| * 2^9), 0..8 (8 is 2^-6, the smallest normal) */
    vf af = _mm256_castsi256_ps(a);
    __m256i sub = _mm256_cvttps_epi32(v_round(v_mul(af, v_set1(512.0f))));
    __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3c800000), a);
    __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    __m256i code = _mm256_blendv_epi8(norm, sub, is_sub);
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7f), is_nan);
    code = _mm256_or_si256(code, sign);
    /* bytes 0, 4, 8, 12 of each 128-bit half, then the two halves side by side */
    __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                    0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    code = _mm256_shuffle_epi8(code, pick);
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
}

static void e4m3_store(uint8_t *q, vf v) { _mm_storel_epi64((__m128i *)q, e4m3_encode(v)); }
static void e4m3_storen(uint8_t *q, vf v, int n) {
    uint8_t t[16];
    _mm_storeu_si128((__m128i *)t, e4m3_encode(v));
    memcpy(q, t, (size_t)n);
}

/* x = lut[q] * scale, gathered from the scalar table: bit-identical to the scalar rule. */
static void dequantize_group(float *x, const uint8_t *q, float scale, int n) {
    vf s = v_set1(scale);
    int i = 0;
    for (; i + VL <= n; i += VL) {
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + i)));
        v_store(x + i, v_mul(_mm256_i32gather_ps(afd_e4m3_lut, idx, 4), s));
    }
    for (; i < n; i++)
        x[i] = afd_e4m3_to_f32(q[i]) * scale;
}

#include "common/backend/cpu/kernels_simd.h"
