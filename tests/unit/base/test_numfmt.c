/* numfmt: every e4m3/bf16/f16 code decoded and re-encoded, and fp32 -> narrow conversions over
 * the sweep of numfmt_sweep.h compared bit for bit with independent oracles: the formats'
 * values computed from their definitions with ldexp, then the nearest one found by search
 * (ties to the even code) in exact double arithmetic. Also cross-checked with the x86 F16C and
 * AVX512-BF16 instructions where present. The CUDA comparison is test_numfmt_cuda.c. */
#include <criterion/criterion.h>
#include <fenv.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "common/base/numfmt.h"
#include "tests/unit/base/numfmt_sweep.h"

/* ---- the formats from their definitions ---- */

/* e4m3: sign, 4-bit exponent (bias 7), 3-bit mantissa; exponent 0 is subnormal (m/8 * 2^-6);
 * S.1111.111 is NaN; no infinities. */
static double e4m3_def(int c) {
    int e = (c >> 3) & 15, m = c & 7;
    double mag = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    if ((c & 0x7f) == 0x7f)
        mag = NAN;
    return (c & 0x80) ? -mag : mag;
}

/* IEEE binary16: 5-bit exponent (bias 15), 10-bit mantissa. */
static double f16_def(int c) {
    int e = (c >> 10) & 31, m = c & 1023;
    double mag = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    if (e == 31)
        mag = m ? NAN : INFINITY;
    return (c & 0x8000) ? -mag : mag;
}

/* bfloat16: the top half of an fp32: 8-bit exponent (bias 127), 7-bit mantissa. */
static double bf16_def(int c) {
    int e = (c >> 7) & 255, m = c & 127;
    double mag = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    if (e == 255)
        mag = m ? NAN : INFINITY;
    return (c & 0x8000) ? -mag : mag;
}

/* ---- the oracle: nearest entry of an ascending table, ties to the even index ---- */

/* vals[0..n-1] ascending, vals[i] the value of code i; x >= 0. At or above vals[n-1] the result
 * is n-1: the saturation value for e4m3, or a virtual next binade standing for infinity. */
static uint32_t nearest_even(double x, const double *vals, uint32_t n) {
    if (x >= vals[n - 1])
        return n - 1;
    uint32_t lo = 0, hi = n - 1; /* vals[lo] <= x < vals[hi] */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (vals[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    double twice = 2.0 * x, sum = vals[lo] + vals[hi]; /* both exact in double */
    if (twice != sum)
        return twice < sum ? lo : hi;
    return (lo & 1) ? hi : lo;
}

#define E4M3_N 0x7f    /* codes 0x00..0x7e: 0 .. 448 */
#define BF16_N 0x7f81  /* 0x0000..0x7f7f finite, 0x7f80 stands for 2^128 (rounds to inf) */
#define F16_N  0x7c01  /* 0x0000..0x7bff finite, 0x7c00 stands for 65536 (rounds to inf) */

static double e4m3_vals[E4M3_N], bf16_vals[BF16_N], f16_vals[F16_N];

static void oracle_init(void) {
    for (int c = 0; c < E4M3_N; c++)
        e4m3_vals[c] = e4m3_def(c);
    for (int c = 0; c < BF16_N - 1; c++)
        bf16_vals[c] = bf16_def(c);
    bf16_vals[BF16_N - 1] = ldexp(1.0, 128);
    for (int c = 0; c < F16_N - 1; c++)
        f16_vals[c] = f16_def(c);
    f16_vals[F16_N - 1] = 65536.0;
}

static int is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
static uint32_t sign32(uint32_t u) { return u >> 31; }

static uint8_t oracle_e4m3(uint32_t u) {
    if (is_nan32(u))
        return (uint8_t)(0x7f | sign32(u) << 7);
    uint32_t c = nearest_even(fabs((double)afd_bits_f32(u)), e4m3_vals, E4M3_N);
    return (uint8_t)(c | sign32(u) << 7);
}

/* NaN: same sign, quiet, the top payload bits that fit. */
static uint16_t oracle_bf16(uint32_t u) {
    if (is_nan32(u))
        return (uint16_t)(sign32(u) << 15 | 0x7fc0 | ((u >> 16) & 0x3f));
    uint32_t c = nearest_even(fabs((double)afd_bits_f32(u)), bf16_vals, BF16_N);
    return (uint16_t)(c | sign32(u) << 15);
}

static uint16_t oracle_f16(uint32_t u) {
    if (is_nan32(u))
        return (uint16_t)(sign32(u) << 15 | 0x7e00 | ((u >> 13) & 0x1ff));
    uint32_t c = nearest_even(fabs((double)afd_bits_f32(u)), f16_vals, F16_N);
    return (uint16_t)(c | sign32(u) << 15);
}

/* ---- mismatch bookkeeping: count, keep the first, assert once with both values ---- */

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
                     "%s: %llu of %llu differ; first input 0x%08x: got 0x%x, want 0x%x", what,    \
                     (unsigned long long)(t).bad, (unsigned long long)(t).n, (t).in, (t).got,    \
                     (t).want);                                                                  \
    } while (0)

/* ---- e4m3 ---- */

Test(numfmt_e4m3, lut_matches_definition_for_all_256_codes) {
    for (int c = 0; c < 256; c++) {
        double want = e4m3_def(c);
        float got = afd_e4m3_to_f32((uint8_t)c);
        cr_assert_eq(afd_f32_bits(got), afd_f32_bits(afd_e4m3_lut[c]));
        cr_assert_eq(!!signbit(got), !!(c & 0x80), "code 0x%02x: sign of %a", c, (double)got);
        if (isnan(want)) {
            cr_assert(isnan(got), "code 0x%02x: got %a, want NaN", c, (double)got);
            continue;
        }
        cr_assert_eq((double)got, want, "code 0x%02x: got %a, want %a", c, (double)got, want);
    }
    cr_assert_eq(afd_e4m3_lut[0x7e], AFD_E4M3_MAX);
}

Test(numfmt_e4m3, every_code_reencodes_to_itself) {
    for (int c = 0; c < 256; c++) {
        uint8_t q = afd_f32_to_e4m3(afd_e4m3_lut[c]);
        cr_assert_eq(q, c, "code 0x%02x (%a) re-encodes to 0x%02x", c, (double)afd_e4m3_lut[c], q);
    }
}

Test(numfmt_e4m3, hand_checked_values) {
    static const struct {
        float in;
        uint8_t want;
    } cases[] = {
        {0.0f, 0x00},       {-0.0f, 0x80},          {1.0f, 0x38},           {-2.0f, 0xc0},
        {1.0625f, 0x38},    /* tie 1 | 1.125 -> even 1 */ {1.1875f, 0x3a}, /* tie -> 1.25 */
        {448.0f, 0x7e},     {463.99997f, 0x7e},     {464.0f, 0x7e},         {464.00003f, 0x7e},
        {1e30f, 0x7e},      {-1e30f, 0xfe},         {INFINITY, 0x7e},       {-INFINITY, 0xfe},
        {NAN, 0x7f},        {-NAN, 0xff},           {0x1p-9f, 0x01},        {0x1p-10f, 0x00},
        {0x1.000002p-10f, 0x01}, {0x1.8p-9f, 0x02}, /* tie 1|2 -> 2 */ {0x1.4p-8f, 0x02},
        {0x1.fffffep-7f, 0x08}, {0x1p-6f, 0x08},    {-0x1p-149f, 0x80},     {0x1.cp-7f, 0x07},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t got = afd_f32_to_e4m3(cases[i].in);
        cr_assert_eq(got, cases[i].want, "e4m3(%a): got 0x%02x, want 0x%02x", (double)cases[i].in,
                     got, cases[i].want);
    }
}

static void check_e4m3(uint32_t u, void *ctx) {
    tally_add(ctx, u, afd_f32_to_e4m3(afd_bits_f32(u)), oracle_e4m3(u));
}

Test(numfmt_e4m3, sweep_matches_oracle, .init = oracle_init) {
    tally t = {0};
    sweep_e4m3_inputs(check_e4m3, &t);
    assert_tally(t, "f32 -> e4m3", 2u << (32 - SWEEP_STRIDE_LOG2));
}

/* ---- bf16 ---- */

Test(numfmt_bf16, all_65536_codes_round_trip) {
    for (uint32_t c = 0; c < 65536; c++) {
        float f = afd_bf16_to_f32((uint16_t)c);
        double want = bf16_def((int)c);
        uint16_t back = afd_f32_to_bf16(f);
        if (isnan(want)) {
            cr_assert(isnan(f), "bf16 0x%04x decodes to %a, want NaN", c, (double)f);
            cr_assert_eq(back, c | 0x40, "bf16 NaN 0x%04x -> 0x%04x, want quiet 0x%04x", c, back,
                         c | 0x40);
            continue;
        }
        cr_assert_eq((double)f, want, "bf16 0x%04x: got %a, want %a", c, (double)f, want);
        cr_assert_eq(back, c, "bf16 0x%04x round-trips to 0x%04x", c, back);
    }
}

Test(numfmt_bf16, hand_checked_values) {
    static const struct {
        uint32_t in;
        uint16_t want;
    } cases[] = {
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: tie -> even 0x3f80 */
        {0x3f818000u, 0x3f82}, /* tie between 0x3f81 and 0x3f82 -> 0x3f82 */
        {0x3f808001u, 0x3f81}, {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7f7fffu, 0x7f7f}, {0xff800000u, 0xff80}, {0x00000001u, 0x0000},
        {0x00008000u, 0x0000}, {0x00018000u, 0x0002}, {0x7f800001u, 0x7fc0}, /* sNaN quieted */
        {0xffc00000u, 0xffc0}, {0x7fffffffu, 0x7fff},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = afd_f32_to_bf16(afd_bits_f32(cases[i].in));
        cr_assert_eq(got, cases[i].want, "bf16(0x%08x): got 0x%04x, want 0x%04x", cases[i].in, got,
                     cases[i].want);
    }
}

static void check_bf16(uint32_t u, void *ctx) {
    tally_add(ctx, u, afd_f32_to_bf16(afd_bits_f32(u)), oracle_bf16(u));
}

/* Strided, specials, and every bf16 value and midpoint (including FLT_MAX's neighbourhood). */
static void sweep_bf16_inputs(sweep_fn fn, void *ctx) {
    sweep_strided(fn, ctx);
    sweep_specials(fn, ctx);
    for (uint32_t c = 0; c <= 0x7f80; c++) {
        sweep_around(afd_bits_f32(c << 16), fn, ctx);
        if (c < 0x7f80)
            sweep_around(afd_bits_f32(c << 16 | 0x8000), fn, ctx);
    }
}

Test(numfmt_bf16, sweep_matches_oracle, .init = oracle_init) {
    tally t = {0};
    sweep_bf16_inputs(check_bf16, &t);
    assert_tally(t, "f32 -> bf16", 2u << (32 - SWEEP_STRIDE_LOG2));
}

/* Intel's VCVTNEPS2BF16 rounds to nearest even but treats fp32 subnormal inputs as zero; on
 * every other input (NaN included) it must agree with us bit for bit. */
__attribute__((target("avx512f,avx512vl,avx512bf16"))) static uint16_t hw_bf16(float f) {
    __m128bh h = _mm_cvtneps_pbh(_mm_set1_ps(f));
    return (uint16_t)_mm_extract_epi16((__m128i)h, 0);
}

static void check_bf16_hw(uint32_t u, void *ctx) {
    if ((u & 0x7f800000u) == 0 && (u & 0x7fffffu) != 0)
        return; /* fp32 subnormal: the instruction flushes it */
    tally_add(ctx, u, afd_f32_to_bf16(afd_bits_f32(u)), hw_bf16(afd_bits_f32(u)));
}

Test(numfmt_bf16, sweep_matches_avx512bf16_instruction) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16"))
        cr_skip_test("CPU lacks AVX512-BF16: no hardware reference for fp32 -> bf16");
    tally t = {0};
    sweep_bf16_inputs(check_bf16_hw, &t);
    assert_tally(t, "f32 -> bf16 vs VCVTNEPS2BF16", 2u << (32 - SWEEP_STRIDE_LOG2));
}

/* ---- f16 ---- */

Test(numfmt_f16, all_65536_codes_decode_and_round_trip) {
    for (uint32_t c = 0; c < 65536; c++) {
        float f = afd_f16_to_f32((uint16_t)c);
        double want = f16_def((int)c);
        uint16_t back = afd_f32_to_f16(f);
        cr_assert_eq((uint32_t)!!signbit(f), c >> 15, "f16 0x%04x: sign of %a", c, (double)f);
        if (isnan(want)) {
            cr_assert(isnan(f), "f16 0x%04x decodes to %a, want NaN", c, (double)f);
            cr_assert_eq(back, c | 0x200, "f16 NaN 0x%04x -> 0x%04x, want quiet 0x%04x", c, back,
                         c | 0x200);
            continue;
        }
        cr_assert_eq((double)f, want, "f16 0x%04x: got %a, want %a", c, (double)f, want);
        cr_assert_eq(back, c, "f16 0x%04x round-trips to 0x%04x", c, back);
    }
}

Test(numfmt_f16, hand_checked_values) {
    static const struct {
        float in;
        uint16_t want;
    } cases[] = {
        {65504.0f, 0x7bff},  {65519.996f, 0x7bff}, {65520.0f, 0x7c00}, /* tie -> even = inf */
        {-1e9f, 0xfc00},     {0x1p-24f, 0x0001},   {0x1p-25f, 0x0000}, /* tie -> 0 */
        {0x1.8p-24f, 0x0002}, {0x1.000002p-25f, 0x0001}, {0x1p-14f, 0x0400},
        {0x1.ffcp-15f, 0x0400}, /* largest subnormal + half ulp: tie -> 0x400 (even) */
        {1.0f, 0x3c00},      {-0.0f, 0x8000},      {1.00048828125f, 0x3c00}, /* tie -> even */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = afd_f32_to_f16(cases[i].in);
        cr_assert_eq(got, cases[i].want, "f16(%a): got 0x%04x, want 0x%04x", (double)cases[i].in,
                     got, cases[i].want);
    }
}

static void check_f16(uint32_t u, void *ctx) {
    tally_add(ctx, u, afd_f32_to_f16(afd_bits_f32(u)), oracle_f16(u));
}

/* Strided, specials, and every f16 value and midpoint (values from the definition). */
static void sweep_f16_inputs(sweep_fn fn, void *ctx) {
    sweep_strided(fn, ctx);
    sweep_specials(fn, ctx);
    double prev = 0.0;
    for (int c = 0; c <= 0x7c00; c++) {
        double v = c < 0x7c00 ? f16_def(c) : 65536.0;
        sweep_around((float)v, fn, ctx);
        sweep_around((float)((prev + v) / 2.0), fn, ctx); /* exact: 12 significant bits */
        prev = v;
    }
}

Test(numfmt_f16, sweep_matches_oracle, .init = oracle_init) {
    tally t = {0};
    sweep_f16_inputs(check_f16, &t);
    assert_tally(t, "f32 -> f16", 2u << (32 - SWEEP_STRIDE_LOG2));
}

#ifdef __F16C__
static void check_f16_hw(uint32_t u, void *ctx) {
    tally_add(ctx, u, afd_f32_to_f16(afd_bits_f32(u)), _cvtss_sh(afd_bits_f32(u), 0));
}

/* F16C (VCVTPS2PH / VCVTPH2PS, round to nearest even) is exact IEEE, NaN rules included. */
Test(numfmt_f16, matches_f16c_instructions) {
    tally t = {0};
    sweep_f16_inputs(check_f16_hw, &t);
    assert_tally(t, "f32 -> f16 vs VCVTPS2PH", 2u << (32 - SWEEP_STRIDE_LOG2));
    tally d = {0};
    for (uint32_t c = 0; c < 65536; c++)
        tally_add(&d, c, afd_f32_bits(afd_f16_to_f32((uint16_t)c)),
                  afd_f32_bits(_cvtsh_ss((unsigned short)c)));
    assert_tally(d, "f16 -> f32 vs VCVTPH2PS", 65536);
}
#else
Test(numfmt_f16, matches_f16c_instructions) {
    cr_skip_test("built without F16C (__F16C__ undefined): no hardware reference for f16");
}
#endif

/* ---- independence from the FPU rounding mode ---- */

/* Finite inputs of magnitude 2^-27 .. 2^20 (every format's interesting range), random bits. */
static float rm_input(uint32_t i) {
    uint32_t r = sweep_mix(i);
    return afd_bits_f32((r & 0x807fffffu) | (100u + (r >> 24) % 48u) << 23);
}

Test(numfmt, results_do_not_depend_on_rounding_mode) {
    static uint8_t q[1 << 16];
    static uint16_t h[1 << 16], b[1 << 16];
    static uint32_t d[1 << 16];
    for (uint32_t i = 0; i < 65536; i++) {
        float f = rm_input(i);
        q[i] = afd_f32_to_e4m3(f);
        h[i] = afd_f32_to_f16(f);
        b[i] = afd_f32_to_bf16(f);
        d[i] = afd_f32_bits(afd_f16_to_f32((uint16_t)i));
    }
    static const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    for (size_t m = 0; m < 3; m++) {
        cr_assert_eq(fesetround(modes[m]), 0);
        for (uint32_t i = 0; i < 65536; i++) {
            float f = rm_input(i);
            cr_assert_eq(afd_f32_to_e4m3(f), q[i], "mode %zu, input %a", m, (double)f);
            cr_assert_eq(afd_f32_to_f16(f), h[i], "mode %zu, input %a", m, (double)f);
            cr_assert_eq(afd_f32_to_bf16(f), b[i], "mode %zu, input %a", m, (double)f);
            cr_assert_eq(afd_f32_bits(afd_f16_to_f32((uint16_t)i)), d[i], "mode %zu, f16 0x%04x",
                         m, i);
        }
    }
    fesetround(FE_TONEAREST);
}

/* The bulk conversions equal the scalar ones: every bf16 code back, and f32 inputs covering
 * every exponent, sign, rounding tie and NaN payload pattern. */
Test(numfmt, bulk_bf16_equals_scalar) {
    enum { N = 1 << 20 };
    float *f = malloc(N * sizeof *f), *g = malloc(65536 * sizeof *g);
    uint16_t *h = malloc(N * sizeof *h), *codes = malloc(65536 * sizeof *codes);
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s;
        if (i % 4 == 1)
            u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        if (i % 4 == 2)
            u = (u & 0x807fffffu) | 0x7f800000u; /* inf and NaN payloads */
        memcpy(&f[i], &u, 4);
    }
    afd_f32_to_bf16_n(h, f, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(h[i], afd_f32_to_bf16(f[i]), "input %08x: bulk %04x scalar %04x",
                     afd_f32_bits(f[i]), h[i], afd_f32_to_bf16(f[i]));
    for (int i = 0; i < 65536; i++)
        codes[i] = (uint16_t)i;
    afd_bf16_to_f32_n(g, codes, 65536);
    for (int i = 0; i < 65536; i++)
        cr_assert_eq(afd_f32_bits(g[i]), afd_f32_bits(afd_bf16_to_f32((uint16_t)i)), "code %04x",
                     i);
    free(f), free(g), free(h), free(codes);
}
