/* Conformance of the CPU kernel variants: every op of backend.h on every ISA variant this
 * machine runs, against the generic variant (tolerance) and the generic variant against naive
 * double-precision references; batch invariance and thread invariance bit for bit; FP8
 * quantization bit for bit against the scalar numfmt rule. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend/backend.h"
#include "common/backend/cpu/cpu.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/numfmt.h"

#define MAX_ISAS 8
#define FP32_TOL 1e-5 /* relative L2, fp32-activation variants vs generic / double */

static const char *isas[MAX_ISAS];
static int n_isas;

static void setup(void) {
    afd_log_level = AFD_LOG_WARN;
    n_isas = afd_cpu_isas(isas, MAX_ISAS);
    cr_assert_gt(n_isas, 0);
    cr_assert_str_eq(isas[n_isas - 1], "generic", "generic is always last, got %s",
                     isas[n_isas - 1]);
}

TestSuite(cpu_ops, .init = setup, .timeout = 60);

static afd_backend *open_isa(const char *isa, int threads) {
    afd_backend *be = NULL;
    int rc = afd_cpu_backend_new(isa, threads, &be);
    cr_assert_eq(rc, 0, "open cpu %s x%d: %d", isa, threads, rc);
    return be;
}

/* ---- random data ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float frand(void) { return (float)((double)(rnd() >> 11) / (double)(1ull << 53) * 2.0 - 1.0); }

static float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

/* A finite F16 with magnitude in about [2^-6, 4). */
static uint16_t rand_f16(void) {
    uint64_t r = rnd();
    return (uint16_t)(((r & 1) << 15) | ((9 + (r >> 1) % 8) << 10) | ((r >> 8) & 1023));
}

/* A weight tensor (the parent, owning its buffers) of a given dtype. */
typedef struct wbuf {
    afd_tensor t;
    void *data;
    float *scale;
} wbuf;

static wbuf make_weight(afd_dtype dt, int rows, int cols) {
    wbuf w = {0};
    size_t n = (size_t)rows * cols;
    w.data = malloc(n * afd_dtype_size(dt) + 64);
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case AFD_DT_F32:
            ((float *)w.data)[i] = frand();
            break;
        case AFD_DT_BF16:
            ((uint16_t *)w.data)[i] = afd_f32_to_bf16(frand());
            break;
        case AFD_DT_F16:
            ((uint16_t *)w.data)[i] = rand_f16();
            break;
        default: {
            uint8_t b = (uint8_t)rnd();
            ((uint8_t *)w.data)[i] = (b & 0x7f) == 0x7f ? b ^ 1 : b; /* no NaN codes */
        }
        }
    }
    w.t = (afd_tensor){.dtype = dt, .rows = rows, .cols = cols, .ld = cols, .data = w.data,
                       .name = "test.weight"};
    if (dt == AFD_DT_F8_E4M3) {
        int sr = (rows + 127) / 128, sc = (cols + 127) / 128;
        w.scale = malloc((size_t)sr * sc * sizeof(float));
        for (int i = 0; i < sr * sc; i++)
            w.scale[i] = 0.002f + 0.001f * (float)(rnd() % 16);
        w.t.scale = w.scale;
        w.t.scale_ld = sc;
    }
    return w;
}

static void free_weight(wbuf *w) {
    free(w->data);
    free(w->scale);
}

static double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_l2_d(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* First index where a and b differ bitwise, or -1. */
static long bit_diff(const void *a, const void *b, size_t n_floats) {
    const uint32_t *x = a, *y = b;
    for (size_t i = 0; i < n_floats; i++)
        if (x[i] != y[i])
            return (long)i;
    return -1;
}

/* ---- matmul ---- */

typedef struct mm_case {
    afd_dtype dt;
    int prow, pcol;   /* parent shape */
    int r0, nr, c0, nc; /* the view */
} mm_case;

static const mm_case mm_cases[] = {
    {AFD_DT_F32, 37, 301, 0, 37, 0, 301},
    {AFD_DT_BF16, 67, 1003, 0, 67, 0, 1003},
    {AFD_DT_F16, 33, 517, 0, 33, 0, 517},
    {AFD_DT_F8_E4M3, 300, 390, 0, 300, 0, 390},      /* partial edge blocks both ways */
    {AFD_DT_F8_E4M3, 300, 700, 130, 91, 256, 300},   /* TP slice, block-aligned columns */
    {AFD_DT_F8_E4M3, 260, 500, 7, 45, 48, 333},      /* columns at 48: unaligned for 2*VL 32 */
    {AFD_DT_F8_E4M3, 200, 400, 3, 29, 5, 250},       /* columns at 5: unaligned for all */
    {AFD_DT_BF16, 90, 260, 10, 61, 3, 201},          /* BF16 view at odd offsets */
    {AFD_DT_BF16, 1100, 200, 0, 1100, 0, 200},       /* wide: 128-column tasks */
    {AFD_DT_F8_E4M3, 1030, 300, 0, 1030, 0, 300},    /* wide FP8 */
    {AFD_DT_F16, 1030, 70, 0, 1030, 0, 70},          /* wide F16 */
};
#define N_MM_CASES (int)(sizeof mm_cases / sizeof mm_cases[0])

static afd_tensor view_of(const wbuf *w, const mm_case *c) {
    afd_tensor r = afd_tensor_rows(&w->t, c->r0, c->nr);
    return afd_tensor_cols(&r, c->c0, c->nc);
}

static void matmul_ref(double *y, const float *x, int B, const afd_tensor *w) {
    for (int b = 0; b < B; b++)
        for (int64_t n = 0; n < w->rows; n++) {
            double acc = 0;
            for (int64_t k = 0; k < w->cols; k++)
                acc += (double)cpu_weight_at(w, n, k) * x[(size_t)b * w->cols + k];
            y[(size_t)b * w->rows + n] = acc;
        }
}

Test(cpu_ops, matmul_generic_matches_double_reference) {
    afd_backend *be = open_isa("generic", 2);
    for (int ci = 0; ci < N_MM_CASES; ci++) {
        const mm_case *c = &mm_cases[ci];
        wbuf w = make_weight(c->dt, c->prow, c->pcol);
        afd_tensor v = view_of(&w, c);
        int B = 5;
        float *x = rand_vec((size_t)B * c->nc), *y = malloc((size_t)B * c->nr * sizeof(float));
        double *ref = malloc((size_t)B * c->nr * sizeof(double));
        cr_assert_eq(afd_be_matmul(be, y, x, B, &v), 0);
        matmul_ref(ref, x, B, &v);
        double e = rel_l2_d(y, ref, (size_t)B * c->nr);
        cr_assert_lt(e, FP32_TOL, "case %d (%s): rel L2 %.3g", ci, afd_dtype_name(c->dt), e);
        free(x), free(y), free(ref);
        free_weight(&w);
    }
    afd_backend_free(be);
}

Test(cpu_ops, matmul_variants_match_generic) {
    afd_backend *gen = open_isa("generic", 2);
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        for (int ci = 0; ci < N_MM_CASES; ci++) {
            const mm_case *c = &mm_cases[ci];
            wbuf w = make_weight(c->dt, c->prow, c->pcol);
            afd_tensor v = view_of(&w, c);
            int Bs[] = {1, 3, 17};
            for (int bi = 0; bi < 3; bi++) {
                int B = Bs[bi];
                size_t ny = (size_t)B * c->nr;
                float *x = rand_vec((size_t)B * c->nc), *y = malloc(ny * 4), *yg = malloc(ny * 4);
                cr_assert_eq(afd_be_matmul(be, y, x, B, &v), 0);
                cr_assert_eq(afd_be_matmul(gen, yg, x, B, &v), 0);
                double e = rel_l2(y, yg, ny);
                cr_assert_lt(e, FP32_TOL, "%s case %d B=%d: rel L2 %.3g", isas[i], ci, B, e);
                free(x), free(y), free(yg);
            }
            free_weight(&w);
        }
        afd_backend_free(be);
    }
    afd_backend_free(gen);
}

/* Row b of a batch-B matmul has exactly the bits of the batch-1 matmul of that row, for
 * every variant, and 1 thread gives the bits of 2. */
Test(cpu_ops, matmul_batch_and_thread_invariance_bitwise) {
    const int Bs[] = {2, 3, 5, 17, 64, 70};
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2), *be1 = open_isa(isas[i], 1);
        for (int ci = 0; ci < N_MM_CASES; ci++) {
            const mm_case *c = &mm_cases[ci];
            wbuf w = make_weight(c->dt, c->prow, c->pcol);
            afd_tensor v = view_of(&w, c);
            int Bmax = 70;
            float *x = rand_vec((size_t)Bmax * c->nc);
            float *one = malloc((size_t)Bmax * c->nr * 4), *y = malloc((size_t)Bmax * c->nr * 4);
            for (int b = 0; b < Bmax; b++)
                cr_assert_eq(afd_be_matmul(be, one + (size_t)b * c->nr, x + (size_t)b * c->nc, 1,
                                           &v), 0);
            for (int bi = 0; bi < 6; bi++) {
                int B = Bs[bi];
                for (int t = 0; t < 2; t++) {
                    cr_assert_eq(afd_be_matmul(t ? be1 : be, y, x, B, &v), 0);
                    long d = bit_diff(y, one, (size_t)B * c->nr);
                    cr_assert_eq(d, -1,
                                 "%s case %d B=%d threads=%d: element %ld (row %ld) %.9g != "
                                 "batch-1 %.9g",
                                 isas[i], ci, B, t ? 1 : 2, d, d / c->nr, d >= 0 ? y[d] : 0.0,
                                 d >= 0 ? one[d] : 0.0);
                }
            }
            free(x), free(one), free(y);
            free_weight(&w);
        }
        afd_backend_free(be);
        afd_backend_free(be1);
    }
}

Test(cpu_ops, matmul_edge_shapes) {
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        wbuf w = make_weight(AFD_DT_BF16, 5, 3);
        float x[2 * 3] = {1, 2, 3, -1, 0.5f, 0.25f}, y[2 * 5];
        cr_assert_eq(afd_be_matmul(be, y, x, 2, &w.t), 0);
        for (int b = 0; b < 2; b++)
            for (int n = 0; n < 5; n++) {
                float want = 0;
                for (int k = 0; k < 3; k++)
                    want = fmaf(cpu_weight_at(&w.t, n, k), x[b * 3 + k], want);
                cr_assert_float_eq(y[b * 5 + n], want, 1e-6, "%s (%d,%d)", isas[i], b, n);
            }
        afd_tensor empty = w.t;
        empty.cols = 0;
        y[0] = 42;
        cr_assert_eq(afd_be_matmul(be, y, x, 1, &empty), 0);
        cr_assert_eq(y[0], 0.0f, "%s: K=0 gives 0, got %g", isas[i], y[0]);
        afd_tensor bad = w.t;
        bad.dtype = AFD_DT_I32;
        cr_assert_eq(afd_be_matmul(be, y, x, 1, &bad), AFD_E_UNSUPPORTED);
        free_weight(&w);
        afd_backend_free(be);
    }
}

/* Every FP8 code in every column position decodes to e4m3 exactly (0x7f/0xff: +-480 in the
 * SIMD variants), through every matmul path: x rows are unit vectors and the block scales 1, so
 * y = the weight itself. Codes (k + 13 n) & 0xff put all 256 codes in each column position mod
 * 64; K = 421 has full 128-column blocks and a partial one. */
Test(cpu_ops, matmul_fp8_decodes_every_code_in_every_lane) {
    const int N = 64, K = 421, Bs[] = {1, 6, 70};
    wbuf w = make_weight(AFD_DT_F8_E4M3, N, K);
    uint8_t *q = w.data;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            q[(size_t)n * K + k] = (uint8_t)((k + 13 * n) & 0xff);
    for (int i = 0; i < (K + 127) / 128; i++) /* one block row (N = 64) */
        w.scale[i] = 1.0f;
    float *x = calloc((size_t)70 * K, sizeof(float)), *y = malloc((size_t)70 * N * 4);
    for (int i = 0; i < n_isas - 1; i++) { /* generic (last) decodes 0x7f/0xff as NaN */
        afd_backend *be = open_isa(isas[i], 2);
        for (int bi = 0; bi < 3; bi++) {
            const int B = Bs[bi];
            for (int k0 = 0; k0 < K; k0 += B) {
                const int nb = K - k0 < B ? K - k0 : B;
                memset(x, 0, (size_t)B * K * sizeof(float));
                for (int b = 0; b < nb; b++)
                    x[(size_t)b * K + k0 + b] = 1.0f;
                cr_assert_eq(afd_be_matmul(be, y, x, nb, &w.t), 0);
                for (int b = 0; b < nb; b++)
                    for (int n = 0; n < N; n++) {
                        uint8_t c = q[(size_t)n * K + k0 + b];
                        float want = (c & 0x7f) == 0x7f ? (c & 0x80 ? -480.0f : 480.0f)
                                                        : afd_e4m3_lut[c];
                        cr_assert_eq(y[(size_t)b * N + n], want,
                                     "%s B=%d: code 0x%02x at (%d, %d) gave %.9g, want %.9g",
                                     isas[i], nb, c, n, k0 + b, y[(size_t)b * N + n], want);
                    }
            }
        }
        afd_backend_free(be);
    }
    free(x), free(y);
    free_weight(&w);
}

/* The avx512vbmi variant converts FP8 differently but sums the same values in the same lanes:
 * bit-identical to avx512 on every case, batch size and path. */
Test(cpu_ops, matmul_vbmi_bitwise_equals_avx512) {
    if (!cpu_kernels_find("avx512vbmi") || !cpu_kernels_find("avx512"))
        cr_skip_test("this CPU lacks AVX512-VBMI (avx512vbmi variant not usable)");
    afd_backend *v = open_isa("avx512vbmi", 2), *a = open_isa("avx512", 1);
    for (int ci = 0; ci < N_MM_CASES; ci++) {
        const mm_case *c = &mm_cases[ci];
        wbuf w = make_weight(c->dt, c->prow, c->pcol);
        afd_tensor t = view_of(&w, c);
        const int Bs[] = {1, 2, 5, 8, 9, 70};
        for (int bi = 0; bi < 6; bi++) {
            const int B = Bs[bi];
            size_t ny = (size_t)B * c->nr;
            float *x = rand_vec((size_t)B * c->nc), *yv = malloc(ny * 4), *ya = malloc(ny * 4);
            cr_assert_eq(afd_be_matmul(v, yv, x, B, &t), 0);
            cr_assert_eq(afd_be_matmul(a, ya, x, B, &t), 0);
            long d = bit_diff(yv, ya, ny);
            cr_assert_eq(d, -1, "case %d (%s) B=%d: element %ld vbmi %.9g != avx512 %.9g", ci,
                         afd_dtype_name(c->dt), B, d, d >= 0 ? yv[d] : 0.0, d >= 0 ? ya[d] : 0.0);
            free(x), free(yv), free(ya);
        }
        free_weight(&w);
    }
    afd_backend_free(v);
    afd_backend_free(a);
}

Test(cpu_ops, embed_rows_are_exact) {
    wbuf w = make_weight(AFD_DT_F8_E4M3, 300, 140);
    int32_t ids[] = {0, 299, 128, 5};
    float out[4 * 140];
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        cr_assert_eq(afd_be_embed(be, out, &w.t, ids, 4), 0);
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 140; c++)
                cr_assert_eq(out[b * 140 + c], cpu_weight_at(&w.t, ids[b], c));
        afd_backend_free(be);
    }
    free_weight(&w);
}

/* ---- rmsnorm, rope, swiglu, add_scaled ---- */

Test(cpu_ops, rmsnorm_matches_reference_and_generic) {
    const int n = 1031, B = 3;
    float *x = rand_vec((size_t)B * n), *w = rand_vec(n);
    float *yg = malloc((size_t)B * n * 4), *y = malloc((size_t)B * n * 4);
    double *ref = malloc((size_t)B * n * sizeof(double));
    for (int b = 0; b < B; b++) {
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[b * n + i] * x[b * n + i];
        double r = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++)
            ref[b * n + i] = x[b * n + i] * r * w[i];
    }
    afd_backend *gen = open_isa("generic", 1);
    afd_be_rmsnorm(gen, yg, x, w, B, n, 1e-5f);
    double e = rel_l2_d(yg, ref, (size_t)B * n);
    cr_assert_lt(e, 1e-6, "generic rmsnorm rel L2 %.3g", e);
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        afd_be_rmsnorm(be, y, x, w, B, n, 1e-5f);
        e = rel_l2(y, yg, (size_t)B * n);
        cr_assert_lt(e, 1e-6, "%s rmsnorm rel L2 %.3g", isas[i], e);
        float *xi = malloc((size_t)B * n * 4);
        memcpy(xi, x, (size_t)B * n * 4);
        afd_be_rmsnorm(be, xi, xi, w, B, n, 1e-5f); /* in place */
        cr_assert_eq(bit_diff(xi, y, (size_t)B * n), -1, "%s: in-place differs", isas[i]);
        free(xi);
        afd_backend_free(be);
    }
    afd_backend_free(gen);
    free(x), free(w), free(yg), free(y), free(ref);
}

Test(cpu_ops, rope_is_bit_identical_across_variants_and_close_to_double) {
    const int B = 5, heads = 3, hd = 36, ld = heads * hd + 7;
    const double theta = 500000.0;
    int32_t pos[] = {0, 1, 17, 4095, 65535};
    float *x = rand_vec((size_t)B * ld), *yg = malloc((size_t)B * ld * 4);
    memcpy(yg, x, (size_t)B * ld * 4);
    afd_backend *gen = open_isa("generic", 1);
    afd_be_rope(gen, yg, B, ld, heads, hd, pos, theta);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd / 2; i++) {
                double ang = pos[b] * pow(theta, -2.0 * i / hd);
                const float *v = x + b * ld + h * hd;
                double lo = v[i] * cos(ang) - v[i + hd / 2] * sin(ang);
                double hi = v[i] * sin(ang) + v[i + hd / 2] * cos(ang);
                cr_assert_float_eq(yg[b * ld + h * hd + i], lo, 1e-6);
                cr_assert_float_eq(yg[b * ld + h * hd + i + hd / 2], hi, 1e-6);
            }
    for (int b = 0; b < B; b++) /* the padding past n_heads*head_dim is untouched */
        for (int i = heads * hd; i < ld; i++)
            cr_assert_eq(yg[b * ld + i], x[b * ld + i]);
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        float *y = malloc((size_t)B * ld * 4);
        memcpy(y, x, (size_t)B * ld * 4);
        afd_be_rope(be, y, B, ld, heads, hd, pos, theta);
        long d = bit_diff(y, yg, (size_t)B * ld);
        cr_assert_eq(d, -1, "%s rope differs from generic at %ld", isas[i], d);
        free(y);
        afd_backend_free(be);
    }
    afd_backend_free(gen);
    free(x), free(yg);
}

Test(cpu_ops, swiglu_and_add_scaled) {
    const size_t n = 40000 + 13;
    float *g = rand_vec(n), *u = rand_vec(n), *yg = malloc(n * 4), *y = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        g[i] *= 30.0f; /* exercise exp over a wide range */
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;
    afd_backend *gen = open_isa("generic", 1);
    afd_be_swiglu(gen, yg, g, u, n);
    for (size_t i = 0; i < n; i += 97) {
        double gd = g[i], want = gd / (1.0 + exp(-gd)) * u[i];
        cr_assert_float_eq(yg[i], want, 1e-6 * fabs(want) + 1e-30, "generic swiglu[%zu]", i);
    }
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        afd_be_swiglu(be, y, g, u, n);
        double e = rel_l2(y, yg, n);
        cr_assert_lt(e, 1e-6, "%s swiglu rel L2 %.3g", isas[i], e);
        for (size_t k = 0; k < n; k++)
            cr_assert(fabsf(y[k] - yg[k]) <= 4e-7f * fabsf(yg[k]) + 1e-37f,
                      "%s swiglu[%zu] = %.9g, generic %.9g", isas[i], k, y[k], yg[k]);
        afd_backend_free(be);
    }
    /* add_scaled: one fma per element, bit-identical everywhere */
    const int B = 3, m = 5003;
    float alpha[] = {0.5f, -2.0f, 1.0f / 3.0f};
    float *x = rand_vec((size_t)B * m), *y0 = rand_vec((size_t)B * m);
    float *ref = malloc((size_t)B * m * 4), *refn = malloc((size_t)B * m * 4);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < m; k++) {
            ref[b * m + k] = fmaf(alpha[b], x[b * m + k], y0[b * m + k]);
            refn[b * m + k] = y0[b * m + k] + x[b * m + k];
        }
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        float *t = malloc((size_t)B * m * 4);
        memcpy(t, y0, (size_t)B * m * 4);
        afd_be_add_scaled(be, t, x, alpha, B, m);
        cr_assert_eq(bit_diff(t, ref, (size_t)B * m), -1, "%s add_scaled", isas[i]);
        memcpy(t, y0, (size_t)B * m * 4);
        afd_be_add_scaled(be, t, x, NULL, B, m);
        cr_assert_eq(bit_diff(t, refn, (size_t)B * m), -1, "%s add_scaled alpha NULL", isas[i]);
        free(t);
        afd_backend_free(be);
    }
    afd_backend_free(gen);
    free(g), free(u), free(yg), free(y), free(x), free(y0), free(ref), free(refn);
}

/* ---- router top-k ---- */

Test(cpu_ops, topk_softmax_ties_and_renorm) {
    const int E = 48, k = 3, B = 2;
    float logits[2 * 48];
    for (int i = 0; i < B * E; i++)
        logits[i] = frand();
    logits[7] = logits[30] = logits[41] = 5.0f; /* a three-way tie for first in row 0 */
    logits[E + 20] = 3.0f, logits[E + 9] = 3.0f, logits[E + 40] = 4.0f;
    int32_t ids[6];
    float w[6], wr[6];
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        afd_be_topk_softmax(be, ids, w, logits, B, E, k, false);
        cr_assert(ids[0] == 7 && ids[1] == 30 && ids[2] == 41, "ties: got %d %d %d", ids[0],
                  ids[1], ids[2]);
        cr_assert(ids[3] == 40 && ids[4] == 9 && ids[5] == 20, "row 1: got %d %d %d", ids[3],
                  ids[4], ids[5]);
        for (int b = 0; b < B; b++) {
            double m = -1e30, sum = 0;
            for (int e = 0; e < E; e++)
                m = fmax(m, logits[b * E + e]);
            for (int e = 0; e < E; e++)
                sum += exp(logits[b * E + e] - m);
            for (int j = 0; j < k; j++) {
                double p = exp(logits[b * E + ids[b * k + j]] - m) / sum;
                cr_assert_float_eq(w[b * k + j], p, 1e-6, "p of rank %d", j);
            }
        }
        afd_be_topk_softmax(be, ids, wr, logits, B, E, k, true);
        for (int b = 0; b < B; b++) {
            float s = wr[b * k] + wr[b * k + 1] + wr[b * k + 2];
            cr_assert_float_eq(s, 1.0f, 1e-6, "renormalised sum %g", s);
            cr_assert_float_eq(wr[b * k] / wr[b * k + 1], w[b * k] / w[b * k + 1], 1e-5);
        }
        afd_backend_free(be);
    }
}

/* ---- FP8 quantization ---- */

static void quant_ref(uint8_t *q, float *scale, const float *x, int B, int n, int group) {
    for (int b = 0; b < B; b++)
        for (int g = 0; g < n / group; g++) {
            const float *v = x + (size_t)b * n + g * group;
            float amax = 0;
            for (int i = 0; i < group; i++)
                if (fabsf(v[i]) > amax)
                    amax = fabsf(v[i]);
            float s = amax == 0 ? 1.0f : amax / 448.0f;
            scale[b * (n / group) + g] = s;
            for (int i = 0; i < group; i++)
                q[(size_t)b * n + g * group + i] = afd_f32_to_e4m3(v[i] / s);
        }
}

static void check_quant(const float *x, int B, int n, int group, const char *what) {
    size_t N = (size_t)B * n, G = (size_t)B * (n / group);
    uint8_t *qr = malloc(N), *q = malloc(N);
    float *sr = malloc(G * 4), *s = malloc(G * 4), *xr = malloc(N * 4), *xd = malloc(N * 4);
    quant_ref(qr, sr, x, B, n, group);
    for (size_t i = 0; i < N; i++)
        xr[i] = afd_e4m3_to_f32(qr[i]) * sr[i / group];
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2);
        afd_be_quantize_fp8(be, q, s, x, B, n, group);
        cr_assert_eq(bit_diff(s, sr, G), -1, "%s %s: scales differ", isas[i], what);
        for (size_t k = 0; k < N; k++)
            cr_assert_eq(q[k], qr[k], "%s %s: x[%zu] = %a (bits %08x) -> 0x%02x, scalar 0x%02x",
                         isas[i], what, k, x[k], afd_f32_bits(x[k]), q[k], qr[k]);
        afd_be_dequantize_fp8(be, xd, qr, sr, B, n, group);
        long d = bit_diff(xd, xr, N);
        cr_assert_eq(d, -1, "%s %s: dequantize differs at %ld", isas[i], what, d);
        afd_backend_free(be);
    }
    free(qr), free(q), free(sr), free(s), free(xr), free(xd);
}

Test(cpu_ops, quantize_fp8_bit_identical_to_scalar) {
    const int B = 4, n = 384;
    float *x = rand_vec((size_t)B * n);
    for (int i = 0; i < B * n; i++)
        x[i] *= (float)(1 << (rnd() % 12)) * 1e-3f; /* wide dynamic range */
    float specials[] = {0.0f, -0.0f, NAN, -NAN, 1e-42f, -3e-40f, 1e-30f, 448.0f, 464.0f,
                        -480.0f, 1e30f, 7.0f, 0.0009765625f, 0.001953125f, 0.00146484375f};
    memcpy(x + 100, specials, sizeof specials);
    for (int i = 0; i < 64; i++) /* a group of zeros: scale 1 */
        x[n + i] = 0.0f;
    check_quant(x, B, n, n, "per-token");
    check_quant(x, B, n, 128, "group 128");
    check_quant(x, B, n, 1, "group 1");
    x[2 * n + 3] = INFINITY; /* amax inf: scale inf */
    check_quant(x, B, n, 128, "with inf");
    free(x);
}

/* fp32 bit patterns for the encoder sweep: a stride over [0, 448], then every rounding
 * boundary of e4m3 (ties between neighbours, one ulp either side) from the subnormals up. */
static size_t sweep_values(uint32_t *u, size_t cap) {
    size_t n = 0;
    for (uint32_t b = 0; b < 0x43e00000u && n < cap; b += 4099)
        u[n++] = b;
    const uint32_t low[] = {0x7ffff, 0x80000, 0x80001, 0, 1, 0xfffff, 0x40000, 0xc0000};
    for (uint32_t e = 100; e <= 136; e++)
        for (uint32_t m = 0; m < 8; m++)
            for (int i = 0; i < 8 && n < cap; i++)
                u[n++] = (e << 23) | (m << 20) | low[i];
    return n;
}

/* Every sweep value through the encoder: each group holds 448 first, so the scale is exactly
 * 1 and the encoder sees the values themselves (alternately negated). */
Test(cpu_ops, e4m3_encoder_sweep) {
    const int group = 64;
    size_t cap = 300000, count;
    uint32_t *u = malloc(cap * 4);
    count = sweep_values(u, cap);
    size_t n_groups = (count + group - 2) / (group - 1), N = n_groups * group, k = 0;
    float *x = calloc(N, 4);
    for (size_t g = 0; g < n_groups; g++) {
        x[g * group] = 448.0f;
        for (int i = 1; i < group && k < count; i++, k++) {
            float v = afd_bits_f32(u[k]);
            x[g * group + i] = (k & 1) ? -v : v;
        }
    }
    check_quant(x, (int)n_groups, group, group, "sweep");
    free(x);
    free(u);
}

/* ---- KV cache and attention ---- */

typedef struct att_setup {
    afd_kv_layout kv;
    int n_heads, n_seq, max_blocks, n_blocks;
    int seq_len[4];
    int32_t *blocks; /* [n_seq][max_blocks] */
    uint8_t *pool;
    int n_tok;
    int32_t tok_seq[8], tok_ctx[8];
    float *q;
} att_setup;

static const int LAYER = 1;

/* Sequences of several lengths on shuffled (non-contiguous) blocks, filled through kv_store
 * of `be` at layer LAYER (layer 0 holds garbage). */
static void att_build(att_setup *s, afd_backend *be, afd_dtype dt, int n_heads, int n_kv, int hd) {
    memset(s, 0, sizeof *s);
    afd_kv_layout_init(&s->kv, dt, 16, 2, n_kv, hd);
    s->n_heads = n_heads;
    s->n_seq = 4;
    int lens[4] = {1, 17, 40, 150};
    memcpy(s->seq_len, lens, sizeof lens);
    s->max_blocks = (150 + 15) / 16;
    s->n_blocks = 4 * s->max_blocks + 3;
    s->pool = afd_be_alloc(be, (size_t)s->n_blocks * s->kv.block_bytes);
    memset(s->pool, 0xff, (size_t)s->n_blocks * s->kv.block_bytes); /* NaN garbage */
    int32_t *perm = malloc((size_t)s->n_blocks * 4);
    for (int i = 0; i < s->n_blocks; i++)
        perm[i] = i;
    for (int i = s->n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    s->blocks = malloc((size_t)s->n_seq * s->max_blocks * 4);
    for (int i = 0; i < s->n_seq * s->max_blocks; i++)
        s->blocks[i] = perm[i];
    free(perm);
    size_t w = (size_t)n_kv * hd;
    for (int q = 0; q < s->n_seq; q++) {
        float *k = rand_vec(s->seq_len[q] * w), *v = rand_vec(s->seq_len[q] * w);
        int32_t *slots = malloc((size_t)s->seq_len[q] * 4);
        for (int p = 0; p < s->seq_len[q]; p++)
            slots[p] = s->blocks[q * s->max_blocks + p / 16] * 16 + p % 16;
        afd_be_kv_store(be, &s->kv, s->pool, LAYER, s->seq_len[q], slots, k, v);
        free(k), free(v), free(slots);
    }
    int ts[] = {0, 1, 2, 3, 3, 1, 2}, tc[] = {1, 17, 33, 150, 50, 5, 40};
    s->n_tok = 7;
    memcpy(s->tok_seq, ts, sizeof ts);
    memcpy(s->tok_ctx, tc, sizeof tc);
    s->q = rand_vec((size_t)s->n_tok * n_heads * hd);
}

static void att_free(att_setup *s, afd_backend *be) {
    afd_be_release(be, s->pool);
    free(s->blocks);
    free(s->q);
}

static double kv_value(const att_setup *s, int seq, int p, int g, int d, int which) {
    const afd_kv_layout *kv = &s->kv;
    const uint8_t *base = s->pool + (size_t)s->blocks[seq * s->max_blocks + p / 16] * kv->block_bytes +
                          (size_t)LAYER * kv->layer_bytes;
    size_t row = (size_t)(p % 16) * kv->n_kv_heads + g;
    const uint8_t *e = base + (which ? kv->v_off : kv->k_off);
    size_t i = row * kv->head_dim + d;
    switch (kv->dtype) {
    case AFD_DT_BF16:
        return afd_bf16_to_f32(((const uint16_t *)e)[i]);
    case AFD_DT_F8_E4M3:
        return afd_e4m3_to_f32(e[i]) *
               ((const float *)(base + (which ? kv->vs_off : kv->ks_off)))[row];
    default:
        return ((const float *)e)[i];
    }
}

static void att_ref(double *out, const att_setup *s, float scale) {
    int hd = s->kv.head_dim, group = s->n_heads / s->kv.n_kv_heads;
    double *sc = malloc(200 * sizeof(double));
    for (int t = 0; t < s->n_tok; t++)
        for (int h = 0; h < s->n_heads; h++) {
            int g = h / group, seq = s->tok_seq[t], ctx = s->tok_ctx[t];
            const float *q = s->q + ((size_t)t * s->n_heads + h) * hd;
            double m = -1e300, sum = 0;
            for (int p = 0; p < ctx; p++) {
                double dot = 0;
                for (int d = 0; d < hd; d++)
                    dot += q[d] * kv_value(s, seq, p, g, d, 0);
                sc[p] = dot * scale;
                m = fmax(m, sc[p]);
            }
            for (int p = 0; p < ctx; p++)
                sum += (sc[p] = exp(sc[p] - m));
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int p = 0; p < ctx; p++)
                    acc += sc[p] * kv_value(s, seq, p, g, d, 1);
                out[((size_t)t * s->n_heads + h) * hd + d] = acc / sum;
            }
        }
    free(sc);
}

static void att_run(afd_backend *be, float *out, const att_setup *s, int t0, int n, float scale) {
    afd_attn_batch b = {n, s->tok_seq + t0, s->tok_ctx + t0, s->n_seq, s->max_blocks, s->blocks};
    size_t w = (size_t)s->n_heads * s->kv.head_dim;
    afd_be_attention(be, out, s->q + t0 * w, s->n_heads, &s->kv, s->pool, LAYER, &b, scale);
}

static void check_attention(afd_dtype dt, int n_heads, int n_kv, int hd) {
    afd_backend *gen = open_isa("generic", 1);
    att_setup s;
    att_build(&s, gen, dt, n_heads, n_kv, hd);
    float scale = 1.0f / sqrtf((float)hd) * 4.0f; /* peaky softmax */
    size_t w = (size_t)n_heads * hd, N = s.n_tok * w;
    double *ref = malloc(N * sizeof(double));
    att_ref(ref, &s, scale);
    float *out = malloc(N * 4), *one = malloc(N * 4), *out1 = malloc(N * 4);
    for (int i = 0; i < n_isas; i++) {
        afd_backend *be = open_isa(isas[i], 2), *be1 = open_isa(isas[i], 1);
        att_run(be, out, &s, 0, s.n_tok, scale);
        double e = rel_l2_d(out, ref, N);
        cr_assert_lt(e, FP32_TOL, "%s attention %s h%d/kv%d/hd%d: rel L2 %.3g", isas[i],
                     afd_dtype_name(dt), n_heads, n_kv, hd, e);
        for (int t = 0; t < s.n_tok; t++)
            att_run(be, one + t * w, &s, t, 1, scale);
        long d = bit_diff(out, one, N);
        cr_assert_eq(d, -1, "%s attention %s: batch vs alone differ at %ld", isas[i],
                     afd_dtype_name(dt), d);
        att_run(be1, out1, &s, 0, s.n_tok, scale);
        d = bit_diff(out, out1, N);
        cr_assert_eq(d, -1, "%s attention %s: 2 threads vs 1 differ at %ld", isas[i],
                     afd_dtype_name(dt), d);
        afd_backend_free(be);
        afd_backend_free(be1);
    }
    free(ref), free(out), free(one), free(out1);
    att_free(&s, gen);
    afd_backend_free(gen);
}

Test(cpu_ops, attention_bf16_cache) { check_attention(AFD_DT_BF16, 16, 1, 256); }
Test(cpu_ops, attention_fp8_cache) { check_attention(AFD_DT_F8_E4M3, 16, 1, 256); }
Test(cpu_ops, attention_f32_cache_gqa_odd_dims) { check_attention(AFD_DT_F32, 6, 2, 40); }
Test(cpu_ops, attention_fp8_gqa) { check_attention(AFD_DT_F8_E4M3, 12, 3, 64); }

/* Every variant writes the same cache bytes (FP8 codes and scales included). */
Test(cpu_ops, kv_store_identical_across_variants) {
    afd_dtype dts[] = {AFD_DT_BF16, AFD_DT_F8_E4M3, AFD_DT_F32};
    for (int di = 0; di < 3; di++) {
        afd_kv_layout kv;
        afd_kv_layout_init(&kv, dts[di], 8, 3, 2, 72);
        size_t bytes = 6 * kv.block_bytes;
        uint8_t *ref = calloc(1, bytes), *pool = calloc(1, bytes);
        int32_t slots[] = {0, 9, 47, 23, -1};
        float *k = rand_vec(5 * 2 * 72), *v = rand_vec(5 * 2 * 72);
        k[72] = 0.0f; /* not a whole zero row, just a zero */
        afd_backend *gen = open_isa("generic", 1);
        afd_be_kv_store(gen, &kv, ref, 2, 5, slots, k, v);
        for (int i = 0; i < n_isas; i++) {
            afd_backend *be = open_isa(isas[i], 2);
            memset(pool, 0, bytes);
            afd_be_kv_store(be, &kv, pool, 2, 5, slots, k, v);
            cr_assert_eq(memcmp(pool, ref, bytes), 0, "%s kv_store %s differs", isas[i],
                         afd_dtype_name(dts[di]));
            afd_backend_free(be);
        }
        /* spot-check a stored row against the scalar conversion */
        size_t row = (size_t)(9 % 8) * 2 + 1;
        const uint8_t *base = ref + (size_t)(9 / 8) * kv.block_bytes + 2 * kv.layer_bytes;
        const float *src = v + 1 * 2 * 72 + 72;
        if (dts[di] == AFD_DT_BF16)
            for (int d = 0; d < 72; d++)
                cr_assert_eq(((const uint16_t *)(base + kv.v_off))[row * 72 + d],
                             afd_f32_to_bf16(src[d]));
        afd_backend_free(gen);
        free(ref), free(pool), free(k), free(v);
    }
}
