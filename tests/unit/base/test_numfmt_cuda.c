/* numfmt vs CUDA: afd_f32_to_e4m3 and the e4m3 table compared bit for bit with cuda_fp8.h's
 * host conversions (plain C; the Makefile defines AFD_HAVE_CUDA_HEADERS and adds the include
 * directory for this file only when cuda_fp8.h exists). Same fp32 sweep as test_numfmt.c.
 *
 * The one intended difference: CUDA encodes every NaN as 0x7f, dropping the sign; we keep it
 * (0xff for a negative NaN). Both are NaN codes; the test asserts exactly that and nothing
 * looser. cuda_bf16.h has no fp32 -> bf16 conversion in C, so BF16 is covered by the oracle
 * and hardware tests in test_numfmt.c, and here through CUDA's bf16 -> e4m3 / f16 -> e4m3. */
#include <criterion/criterion.h>

#ifdef AFD_HAVE_CUDA_HEADERS

#include <cuda_fp8.h>
#include <stdint.h>

#include "common/base/numfmt.h"
#include "tests/unit/base/numfmt_sweep.h"

static int is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

static uint8_t cuda_e4m3(float f) {
    return (uint8_t)__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3);
}

/* CUDA's code for bit pattern u, with a NaN's sign put back (the documented difference). */
static uint8_t cuda_e4m3_signed_nan(uint32_t u) {
    uint8_t c = cuda_e4m3(afd_bits_f32(u));
    return is_nan32(u) ? (uint8_t)(c | (u >> 24 & 0x80)) : c;
}

typedef struct tally {
    uint64_t n, bad;
    uint32_t in, got, want;
} tally;

static void tally_add(tally *t, uint32_t in, uint32_t got, uint32_t want) {
    t->n++;
    if (got == want)
        return;
    if (t->bad++ == 0) {
        t->in = in;
        t->got = got;
        t->want = want;
    }
}

#define assert_tally(t, what, min_n)                                                             \
    do {                                                                                         \
        cr_assert_geq((t).n, (uint64_t)(min_n), "%s: only %llu inputs checked", what,            \
                      (unsigned long long)(t).n);                                                \
        cr_assert_eq((t).bad, 0,                                                                 \
                     "%s: %llu of %llu differ; first input 0x%08x: got 0x%x, cuda 0x%x", what,    \
                     (unsigned long long)(t).bad, (unsigned long long)(t).n, (t).in, (t).got,    \
                     (t).want);                                                                  \
    } while (0)

static void check_encode(uint32_t u, void *ctx) {
    tally_add(ctx, u, afd_f32_to_e4m3(afd_bits_f32(u)), cuda_e4m3_signed_nan(u));
}

Test(numfmt_cuda, f32_to_e4m3_sweep_is_bit_identical) {
    tally t = {0};
    sweep_e4m3_inputs(check_encode, &t);
    assert_tally(t, "f32 -> e4m3 vs __nv_cvt_float_to_fp8", 2u << (32 - SWEEP_STRIDE_LOG2));
}

Test(numfmt_cuda, nan_sign_is_the_only_difference) {
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float f = afd_bits_f32(nans[i]);
        uint8_t ours = afd_f32_to_e4m3(f), cuda = cuda_e4m3(f);
        cr_assert_eq(cuda, 0x7f, "CUDA NaN 0x%08x -> 0x%02x, expected 0x7f", nans[i], cuda);
        cr_assert_eq(ours, 0x7f | (nans[i] >> 24 & 0x80), "ours NaN 0x%08x -> 0x%02x", nans[i],
                     ours);
    }
}

/* CUDA decodes e4m3 to a half; every e4m3 value is exact in f16, so the half must be the f16
 * encoding of our table entry. Both NaN codes decode to a NaN on both sides. */
Test(numfmt_cuda, all_256_decodes_are_bit_identical) {
    for (int c = 0; c < 256; c++) {
        __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3);
        float ours = afd_e4m3_lut[c];
        if ((c & 0x7f) == 0x7f) {
            cr_assert((h.x & 0x7fff) > 0x7c00, "code 0x%02x: CUDA half 0x%04x is not NaN", c, h.x);
            cr_assert(is_nan32(afd_f32_bits(ours)), "code 0x%02x: ours %a is not NaN", c,
                      (double)ours);
            continue;
        }
        cr_assert_eq(afd_f32_to_f16(ours), h.x, "code 0x%02x: ours %a = f16 0x%04x, CUDA 0x%04x",
                     c, (double)ours, afd_f32_to_f16(ours), h.x);
        cr_assert_eq(afd_f32_bits(afd_f16_to_f32(h.x)), afd_f32_bits(ours),
                     "code 0x%02x: CUDA %a, ours %a", c, (double)afd_f16_to_f32(h.x),
                     (double)ours);
    }
}

/* CUDA's bf16 -> e4m3 and f16 -> e4m3 over all 65536 codes of each against ours through fp32
 * (exact widening), which also exercises our bf16 / f16 decoders. */
Test(numfmt_cuda, bf16_and_f16_to_e4m3_all_codes) {
    tally b = {0}, h = {0};
    for (uint32_t c = 0; c < 65536; c++) {
        __nv_bfloat16_raw braw = {(unsigned short)c};
        __half_raw hraw = {(unsigned short)c};
        uint8_t cb = __nv_cvt_bfloat16raw_to_fp8(braw, __NV_SATFINITE, __NV_E4M3);
        uint8_t ch = __nv_cvt_halfraw_to_fp8(hraw, __NV_SATFINITE, __NV_E4M3);
        float fb = afd_bf16_to_f32((uint16_t)c), fh = afd_f16_to_f32((uint16_t)c);
        if (is_nan32(afd_f32_bits(fb)))
            cb |= (uint8_t)(c >> 8 & 0x80);
        if (is_nan32(afd_f32_bits(fh)))
            ch |= (uint8_t)(c >> 8 & 0x80);
        tally_add(&b, c, afd_f32_to_e4m3(fb), cb);
        tally_add(&h, c, afd_f32_to_e4m3(fh), ch);
    }
    assert_tally(b, "bf16 -> e4m3 vs __nv_cvt_bfloat16raw_to_fp8", 65536);
    assert_tally(h, "f16 -> e4m3 vs __nv_cvt_halfraw_to_fp8", 65536);
}

#else

Test(numfmt_cuda, bit_identity_with_cuda_fp8_h) {
    cr_skip_test("cuda_fp8.h not found: built without AFD_HAVE_CUDA_HEADERS (the Makefile sets it "
                 "when $(CUDA_INC)/cuda_fp8.h exists, default /usr/local/cuda/include)");
}

#endif
