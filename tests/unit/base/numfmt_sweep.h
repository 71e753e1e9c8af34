/* numfmt_sweep.h: the fp32 inputs the numfmt tests feed to every conversion (test-only).
 *
 * A full sweep of all 2^32 patterns takes about 9 s for afd_f32_to_e4m3 alone and over 20 s with
 * any reference beside it, too slow for every CI run. So a sweep is:
 *   - every 2^SWEEP_STRIDE_LOG2-th bit pattern, once as is (low bits zero: exact ties and
 *     truncations) and once with pseudo-random low bits (sticky bits set);
 *   - every pattern within +-SWEEP_ULPS of each "interesting" value the caller names (each
 *     representable value and each midpoint of the narrow format), with both signs;
 *   - the specials: +-0, +-inf, quiet and signalling NaNs of both signs, fp32 subnormals,
 *     FLT_MIN, FLT_MAX.
 * With AFD_NUMFMT_EXHAUSTIVE=1 in the environment the strided part becomes all 2^32 patterns.
 * Inputs are handed to a callback as bit patterns; the same pattern may come more than once.
 */
#ifndef AFD_TEST_NUMFMT_SWEEP_H
#define AFD_TEST_NUMFMT_SWEEP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_STRIDE_LOG2 8
#define SWEEP_ULPS 4u

typedef void (*sweep_fn)(uint32_t u, void *ctx);

static inline int sweep_exhaustive(void) {
    const char *e = getenv("AFD_NUMFMT_EXHAUSTIVE");
    return e && strcmp(e, "1") == 0;
}

/* A 32-bit integer hash (xorshift-multiply), for the jittered low bits. */
static inline uint32_t sweep_mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static inline void sweep_strided(sweep_fn fn, void *ctx) {
    if (sweep_exhaustive()) {
        for (uint64_t u = 0; u < (1ull << 32); u++)
            fn((uint32_t)u, ctx);
        return;
    }
    const uint32_t k = SWEEP_STRIDE_LOG2, low = (1u << k) - 1u;
    for (uint64_t i = 0; i < (1ull << (32 - k)); i++) {
        uint32_t u = (uint32_t)(i << k);
        fn(u, ctx);
        fn(u | (sweep_mix((uint32_t)i) & low), ctx);
    }
}

/* Patterns within +-SWEEP_ULPS of the magnitude of v (clamped to [0, 0x7fffffff]), both signs. */
static inline void sweep_around(float v, sweep_fn fn, void *ctx) {
    uint32_t a;
    memcpy(&a, &v, 4);
    a &= 0x7fffffffu;
    uint32_t lo = a > SWEEP_ULPS ? a - SWEEP_ULPS : 0u;
    uint32_t hi = a < 0x7fffffffu - SWEEP_ULPS ? a + SWEEP_ULPS : 0x7fffffffu;
    for (uint32_t m = lo;; m++) {
        fn(m, ctx);
        fn(m | 0x80000000u, ctx);
        if (m == hi)
            break;
    }
}

static inline void sweep_specials(sweep_fn fn, void *ctx) {
    static const uint32_t mags[] = {
        0x00000000u, /* 0 */
        0x7f800000u, /* inf */
        0x7fc00000u, /* canonical quiet NaN */
        0x7fffffffu, /* quiet NaN, full payload */
        0x7f800001u, /* signalling NaN, low payload */
        0x7fa00000u, /* signalling NaN, high payload */
        0x7fc00001u, /* quiet NaN, low payload only */
        0x00000001u, /* smallest fp32 subnormal */
        0x007fffffu, /* largest fp32 subnormal */
        0x00800000u, /* FLT_MIN */
        0x7f7fffffu, /* FLT_MAX */
    };
    for (size_t i = 0; i < sizeof mags / sizeof mags[0]; i++) {
        fn(mags[i], ctx);
        fn(mags[i] | 0x80000000u, ctx);
    }
}

/* The inputs for fp32 -> e4m3: strided, specials, and the neighbourhoods of every e4m3 value
 * (from the definition, not from the code under test), every midpoint between consecutive
 * magnitudes, and 448 / 464 / 480 (largest value, the saturation tie, one step beyond). */
static inline void sweep_e4m3_inputs(sweep_fn fn, void *ctx) {
    sweep_strided(fn, ctx);
    sweep_specials(fn, ctx);
    float prev = 0.0f;
    for (int c = 0; c <= 0x7e; c++) {
        int e = c >> 3, m = c & 7;
        float v = e == 0 ? (float)m / 512.0f : (float)(8 + m) * ((float)(1 << e) / 1024.0f);
        sweep_around(v, fn, ctx);
        sweep_around((prev + v) / 2.0f, fn, ctx); /* exact: 5 significant bits */
        prev = v;
    }
    sweep_around(448.0f, fn, ctx);
    sweep_around(464.0f, fn, ctx);
    sweep_around(480.0f, fn, ctx);
}

#endif
