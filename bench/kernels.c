/* kernels.c: `afd-bench kernels`: the CPU backend's kernels against the machine's roofline,
 * measured in the same run.
 *
 * 1. Roofline: streaming read bandwidth of all threads (8 sequential streams each) over a 1 GiB
 *    buffer, far beyond any cache this VM sees, and the fp32 FMA peak of the instruction set
 *    in use (register-resident loop), plus the AMX bf16 peak when usable. Both are sampled
 *    again around every group of measurements (the machine is shared; its speed drifts).
 * 2. Matmul y = x W^T at batch 1, 8 and 64 on mini-model and Step-3 shapes, BF16 and FP8
 *    weights. Weights are views rotating through the same 1 GiB arena, so each call streams
 *    its weights from DRAM, not from cache.
 * 3. Paged attention of one decode token, 64 heads x 256 over one K/V head, 1K..32K positions,
 *    BF16 and FP8 cache.
 * Every figure is the median of several calls. The last line is one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/bench.h"
#include "common/backend/backend.h"
#include "common/backend/cpu/cpu.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/numfmt.h"
#include "common/base/threadpool.h"

#define ARENA_BYTES ((size_t)1 << 30)

typedef struct kb_opts {
    bool quick;
    const char *isa;
    int threads;
} kb_opts;

typedef struct kb_ctx {
    kb_opts o;
    afd_backend *be;
    tp_pool *pool;
    int threads;
    const char *isa; /* the variant the backend runs */
    uint8_t *arena;
    double avx2_gflops, avx512_gflops, amx_gflops; /* amx < 0: not available */
    const char *peak_kind;
    int n_samples; /* roofline samples framing the measurement groups */
    double s_gbps[64], s_gflops[64];
} kb_ctx;

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- roofline ---- */

typedef struct arena_job {
    uint8_t *p;
    size_t bytes;
    int n;
    uint64_t sums[64];
} arena_job;

static void fill_task(void *arg, int task, int thread) {
    arena_job *j = arg;
    size_t chunk = j->bytes / (size_t)j->n;
    uint64_t *w = (uint64_t *)(j->p + (size_t)task * chunk), s = 0x9e3779b97f4a7c15ull + task;
    /* bytes 0x3f/0xbf every other: BF16 values of magnitude [0.5, 2), e4m3 values that decode
     * to normal numbers: no denormal or NaN slow paths in the timed loops */
    for (size_t i = 0; i < chunk / 8; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        w[i] = (s & 0x007f007f007f007full) | 0x3f003f003f003f00ull | (s & 0x8000800080008000ull);
    }
}

/* Each thread reads its share as 8 interleaved sequential streams: on this machine one stream
 * per core reaches about half of what several do (the kernels stream 4-8 weight rows). */
#define READ_STREAMS 8

static void read_task(void *arg, int task, int thread) {
    arena_job *j = arg;
    size_t chunk = j->bytes / (size_t)j->n & ~(size_t)(64 * READ_STREAMS - 1);
    size_t sub = chunk / READ_STREAMS;
    const uint8_t *base = j->p + (size_t)task * chunk;
    __m256i acc[READ_STREAMS];
    for (int s = 0; s < READ_STREAMS; s++)
        acc[s] = _mm256_setzero_si256();
    for (size_t i = 0; i < sub; i += 64)
        for (int s = 0; s < READ_STREAMS; s++) {
            const __m256i *q = (const __m256i *)(base + s * sub + i);
            acc[s] = _mm256_add_epi64(acc[s], _mm256_add_epi64(_mm256_load_si256(q),
                                                                _mm256_load_si256(q + 1)));
        }
    for (int s = 1; s < READ_STREAMS; s++)
        acc[0] = _mm256_add_epi64(acc[0], acc[s]);
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, acc[0]);
    j->sums[task & 63] = v[0] + v[1] + v[2] + v[3];
}

static int arena_init(kb_ctx *c) {
    void *p = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    madvise(p, ARENA_BYTES, MADV_HUGEPAGE);
    c->arena = p;
    arena_job j = {c->arena, ARENA_BYTES, 64, {0}};
    tp_run(c->pool, 64, fill_task, &j);
    return 0;
}

/* One pass over the arena by every thread: GB/s. */
static double bandwidth_pass(kb_ctx *c) {
    arena_job j = {c->arena, ARENA_BYTES, c->threads, {0}};
    uint64_t t0 = afd_now_ns();
    tp_run(c->pool, c->threads, read_task, &j);
    size_t chunk = ARENA_BYTES / (size_t)c->threads & ~(size_t)(64 * READ_STREAMS - 1);
    return (double)chunk * c->threads / (double)(afd_now_ns() - t0);
}

typedef struct peak_job {
    int kind; /* 0 avx2, 1 avx512, 2 amx */
    int64_t iters;
    double sink[64];
} peak_job;

static void peak_task(void *arg, int task, int thread) {
    peak_job *j = arg;
    double r = j->kind == 2 ? peak_amx_bf16(j->iters)
               : j->kind == 1 ? peak_fma_avx512(j->iters)
                              : peak_fma_avx2(j->iters);
    j->sink[task & 63] = r;
}

/* GFLOP/s of one run of a peak loop on every thread (about 20-60 ms). */
static double peak_run(kb_ctx *c, int kind) {
    static const double flop_per_iter[] = {12 * 8 * 2, 16 * 16 * 2, 4 * 16384};
    int64_t iters = kind == 2 ? 500000 : 5000000;
    peak_job j = {kind, iters, {0}};
    uint64_t t0 = afd_now_ns();
    tp_run(c->pool, c->threads, peak_task, &j);
    return flop_per_iter[kind] * (double)iters * c->threads / (double)(afd_now_ns() - t0);
}

static double peak_median(kb_ctx *c, int kind) {
    double g[5];
    for (int i = 0; i < 5; i++)
        g[i] = peak_run(c, kind);
    return median(g, 5);
}

/* The machine is shared and its speed drifts: every group of measurements is framed by a
 * roofline sample before and after, and judged against their mean. */
typedef struct roof {
    double gbps, gflops;
} roof;

#define MAX_SAMPLES 64

/* 1 for the variants with AVX-512 FMA (avx512, avx512vbmi): their peak is the AVX-512 one. */
static int isa_avx512(const char *isa) { return strncmp(isa, "avx512", 6) == 0; }

static roof roof_sample(kb_ctx *c) {
    double b[2] = {bandwidth_pass(c), bandwidth_pass(c)};
    roof r = {0.5 * (b[0] + b[1]), peak_run(c, isa_avx512(c->isa))};
    if (c->n_samples < MAX_SAMPLES) {
        c->s_gbps[c->n_samples] = r.gbps;
        c->s_gflops[c->n_samples++] = r.gflops;
    }
    return r;
}

static roof roof_mean(roof a, roof b) {
    return (roof){0.5 * (a.gbps + b.gbps), 0.5 * (a.gflops + b.gflops)};
}

static void measure_roofline(kb_ctx *c) {
    double g[7];
    int passes = c->o.quick ? 3 : 7;
    for (int i = 0; i < passes; i++)
        g[i] = bandwidth_pass(c);
    printf("read bandwidth       %7.1f GB/s   (%d threads x %d streams over a %zu MiB buffer, "
           "median of %d)\n", median(g, passes), c->threads, READ_STREAMS, ARENA_BYTES >> 20,
           passes);
    c->avx2_gflops = peak_median(c, 0);
    printf("avx2 fp32 fma peak   %7.0f GFLOP/s\n", c->avx2_gflops);
    if (cpu_avx512_usable()) {
        c->avx512_gflops = peak_median(c, 1);
        printf("avx512 fp32 fma peak %7.0f GFLOP/s\n", c->avx512_gflops);
    }
    if (cpu_amx_usable()) {
        c->amx_gflops = peak_median(c, 2);
        printf("amx bf16 peak        %7.0f GFLOP/s   (bf16 inputs: not used by the fp32 kernels)\n",
               c->amx_gflops);
    } else {
        c->amx_gflops = -1;
        printf("amx bf16 peak            n/a          (no AMX on this CPU, or no permission)\n");
    }
    c->peak_kind = isa_avx512(c->isa) ? "avx512 fp32 fma" : "avx2 fp32 fma";
}

/* Seconds of the ideal run of `bytes` and `flops` against a roofline. */
static double ideal_time(roof r, double bytes, double flops) {
    return fmax(bytes / (r.gbps * 1e9), flops / (r.gflops * 1e9));
}

/* ---- matmul ---- */

typedef struct mm_shape {
    const char *name;
    int n, k; /* [out, in] */
    bool step3, quick;
} mm_shape;

static const mm_shape shapes[] = {
    {"mini 1024x1024", 1024, 1024, false, false},
    {"mini 4096x1024", 4096, 1024, false, false},
    {"mini 1024x4096", 1024, 4096, false, true},
    {"q_proj 2048x7168", 2048, 7168, true, true},
    {"wq 16384x2048", 16384, 2048, true, false},
    {"o_proj 7168x16384", 7168, 16384, true, true},
    {"exp_up 5120x7168", 5120, 7168, true, true},
    {"exp_down 7168x5120", 7168, 5120, true, false},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* Sums over the Step-3 shapes of one (dtype, batch): ideal and measured seconds. */
typedef struct mm_total {
    double t, t_ideal, bytes, flops;
} mm_total;

/* Seconds per call (median) of y = x W^T over rotating copies of W in the arena. */
static double time_matmul(kb_ctx *c, afd_dtype dt, const mm_shape *s, int B, float *x, float *y,
                          const float *scale) {
    size_t wbytes = (size_t)s->n * s->k * afd_dtype_size(dt);
    size_t stride = (wbytes + 4095) & ~(size_t)4095;
    int copies = (int)(ARENA_BYTES / stride);
    copies = copies > 64 ? 64 : copies;
    afd_tensor w = {.dtype = dt, .rows = s->n, .cols = s->k, .ld = s->k, .name = s->name};
    if (dt == AFD_DT_F8_E4M3)
        w.scale = scale, w.scale_ld = (s->k + 127) / 128;
    double budget = c->o.quick ? 0.1 : 0.5, t[64];
    int min_calls = c->o.quick ? 3 : 5, n = 0;
    w.data = c->arena;
    afd_be_matmul(c->be, y, x, B, &w); /* warm-up */
    uint64_t start = afd_now_ns();
    while (n < 64 && (n < min_calls || (double)(afd_now_ns() - start) * 1e-9 < budget)) {
        w.data = c->arena + (size_t)((n + 1) % copies) * stride;
        uint64_t t0 = afd_now_ns();
        afd_be_matmul(c->be, y, x, B, &w);
        t[n++] = (double)(afd_now_ns() - t0) * 1e-9;
    }
    return median(t, n);
}

static double matmul_case(kb_ctx *c, afd_dtype dt, const mm_shape *s, int B) {
    size_t ns = (size_t)((s->n + 127) / 128) * ((s->k + 127) / 128);
    float *x = xalloc_aligned((size_t)B * s->k * sizeof(float));
    float *y = xalloc_aligned((size_t)B * s->n * sizeof(float));
    float *scale = xalloc_aligned(ns * sizeof(float));
    for (size_t i = 0; i < (size_t)B * s->k; i++)
        x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < ns; i++)
        scale[i] = 1.0f / 64.0f;
    double t = time_matmul(c, dt, s, B, x, y, scale);
    free(x), free(y), free(scale);
    return t;
}

/* One (dtype, batch) group over the shapes, framed by roofline samples. */
static void matmul_group(kb_ctx *c, afd_dtype dt, int B, mm_total *tot) {
    double t[N_SHAPES] = {0};
    roof r0 = roof_sample(c);
    for (int i = 0; i < N_SHAPES; i++)
        if (!c->o.quick || shapes[i].quick)
            t[i] = matmul_case(c, dt, &shapes[i], B);
    roof r = roof_mean(r0, roof_sample(c));
    printf("-- matmul %s B=%d   roofline now: %.1f GB/s, %.0f GFLOP/s\n", afd_dtype_name(dt), B,
           r.gbps, r.gflops);
    for (int i = 0; i < N_SHAPES; i++) {
        if (t[i] == 0)
            continue;
        const mm_shape *s = &shapes[i];
        double wbytes = (double)s->n * s->k * afd_dtype_size(dt);
        double bytes = wbytes + 4.0 * B * ((double)s->k + s->n), flops = 2.0 * B * s->n * s->k;
        double ideal = ideal_time(r, bytes, flops);
        printf("matmul %-7s %-20s B=%-3d %8.3f ms %7.1f GB/s %7.1f GFLOP/s %6.1f%% of roofline\n",
               afd_dtype_name(dt), s->name, B, t[i] * 1e3, wbytes / t[i] * 1e-9,
               flops / t[i] * 1e-9, 100.0 * ideal / t[i]);
        if (s->step3)
            tot->t += t[i], tot->t_ideal += ideal, tot->bytes += wbytes, tot->flops += flops;
    }
}

/* tot[dtype 0 BF16 / 1 FP8][batch 0 / 1 / 2 for 1 / 8 / 64] over the Step-3 shapes. */
static void bench_matmuls(kb_ctx *c, mm_total tot[2][3]) {
    static const int batches[3] = {1, 8, 64};
    afd_dtype dts[2] = {AFD_DT_BF16, AFD_DT_F8_E4M3};
    for (int bi = 0; bi < 3; bi++)
        for (int d = 0; d < 2; d++)
            matmul_group(c, dts[d], batches[bi], &tot[d][bi]);
}

/* ---- attention ---- */

#define N_CTX 4
static const int att_ctx[N_CTX] = {1024, 4096, 16384, 32768};

typedef struct att_case {
    afd_kv_layout kv;
    uint8_t *pool;
    int32_t *blocks;
    float *q, *out;
    int ctx, nb;
} att_case;

static const int ATT_HEADS = 64, ATT_HD = 256;

static void att_case_init(kb_ctx *c, att_case *a, afd_dtype dt, int ctx) {
    const int bs = 64, hd = ATT_HD;
    a->ctx = ctx;
    a->nb = (ctx + bs - 1) / bs;
    afd_kv_layout_init(&a->kv, dt, bs, 1, 1, hd);
    a->pool = afd_be_alloc(c->be, (size_t)a->nb * a->kv.block_bytes);
    a->blocks = xmalloc((size_t)a->nb * 4);
    int32_t *slots = xmalloc((size_t)ctx * 4);
    float *k = xalloc_aligned((size_t)ctx * hd * 4), *v = xalloc_aligned((size_t)ctx * hd * 4);
    a->q = xalloc_aligned((size_t)ATT_HEADS * hd * 4);
    a->out = xalloc_aligned((size_t)ATT_HEADS * hd * 4);
    for (int i = 0; i < a->nb; i++)
        a->blocks[i] = i;
    for (int p = 0; p < ctx; p++)
        slots[p] = p;
    for (size_t i = 0; i < (size_t)ctx * hd; i++)
        k[i] = (float)((i * 2654435761u) % 997) * 2e-3f - 1.0f, v[i] = k[i] * 0.5f;
    for (int i = 0; i < ATT_HEADS * hd; i++)
        a->q[i] = (float)(i % 17) * 0.01f - 0.08f;
    afd_be_kv_store(c->be, &a->kv, a->pool, 0, ctx, slots, k, v);
    free(slots), free(k), free(v);
}

static void att_case_free(kb_ctx *c, att_case *a) {
    afd_be_release(c->be, a->pool);
    free(a->blocks), free(a->q), free(a->out);
}

/* Seconds per call (median) of one decode token's attention. */
static double time_attention(kb_ctx *c, att_case *a) {
    int32_t seq = 0;
    afd_attn_batch b = {1, &seq, &a->ctx, 1, a->nb, a->blocks};
    double t[32];
    int n = 0, min_calls = c->o.quick ? 3 : 7;
    double budget = c->o.quick ? 0.1 : 0.4;
    afd_be_attention(c->be, a->out, a->q, ATT_HEADS, &a->kv, a->pool, 0, &b, 1.0f / 16.0f);
    uint64_t start = afd_now_ns();
    while (n < 32 && (n < min_calls || (double)(afd_now_ns() - start) * 1e-9 < budget)) {
        uint64_t t0 = afd_now_ns();
        afd_be_attention(c->be, a->out, a->q, ATT_HEADS, &a->kv, a->pool, 0, &b, 1.0f / 16.0f);
        t[n++] = (double)(afd_now_ns() - t0) * 1e-9;
    }
    return median(t, n);
}

/* ms[i] for att_ctx[i]. */
static void attention_group(kb_ctx *c, afd_dtype dt, double *ms) {
    double t[N_CTX];
    roof r0 = roof_sample(c);
    for (int i = 0; i < N_CTX; i++) {
        att_case a;
        att_case_init(c, &a, dt, att_ctx[i]);
        t[i] = time_attention(c, &a);
        att_case_free(c, &a);
    }
    roof r = roof_mean(r0, roof_sample(c));
    printf("-- attention %s (one decode token, 64 heads x 256, one KV head)   roofline now: "
           "%.1f GB/s, %.0f GFLOP/s\n", afd_dtype_name(dt), r.gbps, r.gflops);
    for (int i = 0; i < N_CTX; i++) {
        double bytes = (double)att_ctx[i] * 2 * ATT_HD * afd_dtype_size(dt) +
                       (dt == AFD_DT_F8_E4M3 ? (double)att_ctx[i] * 8 : 0.0);
        double flops = 4.0 * ATT_HEADS * ATT_HD * att_ctx[i];
        printf("attention %-7s ctx=%-6d %8.3f ms %7.1f GB/s %7.1f GFLOP/s %6.1f%% of roofline\n",
               afd_dtype_name(dt), att_ctx[i], t[i] * 1e3, bytes / t[i] * 1e-9,
               flops / t[i] * 1e-9, 100.0 * ideal_time(r, bytes, flops) / t[i]);
        ms[i] = t[i] * 1e3;
    }
}

/* ---- driver ---- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: afd-bench kernels [--quick] [--isa X] [--threads N]\n"
            "\n"
            "Measures the machine's roofline (streaming read bandwidth over 1 GiB, fp32 FMA peak\n"
            "of the ISA in use, AMX bf16 peak if usable), then the CPU backend's matmul (batch\n"
            "1/8/64, BF16 and FP8 weights, mini and Step-3 shapes) and paged attention (64 heads\n"
            "x 256, one KV head, 1K-32K tokens). Ends with one JSON line:\n"
            "  matmul_b1_bf16_frac, matmul_b1_fp8_frac: batch-1 time at the read bandwidth /\n"
            "      measured time, over the Step-3 shapes (1.0 = streaming weights at full speed)\n"
            "  matmul_b64_frac: batch-64 roofline time (min of FMA peak, intensity x bandwidth)\n"
            "      / measured time, BF16 and FP8 together, Step-3 shapes\n"
            "options:\n"
            "  --quick       fewer shapes and calls (CI smoke test, < 30 s)\n"
            "  --isa X       cpu kernel variant: auto (default), generic, avx2, avx512, avx512vbmi\n"
            "  --threads N   threads (default: all online CPUs)\n"
            "examples:\n"
            "  afd-bench kernels --quick\n"
            "  afd-bench kernels --isa avx2 --threads 1\n");
}

static int parse(int argc, char **argv, kb_opts *o) {
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"isa", required_argument, NULL, 'i'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (kb_opts){false, "auto", 0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'q':
            o->quick = true;
            break;
        case 'i':
            o->isa = optarg;
            break;
        case 't':
            o->threads = (int)strtol(optarg, &end, 10);
            if (*end || o->threads < 1 || o->threads > 256) {
                fprintf(stderr, "afd-bench kernels: --threads '%s': want 1..256\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "afd-bench kernels: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

static double frac(const mm_total *t) { return t->t > 0 ? t->t_ideal / t->t : 0.0; }

static double rate(double amount, double t) { return t > 0 ? amount / t * 1e-9 : 0.0; }

static void print_json(kb_ctx *c, mm_total tot[2][3], double att_ms[2][N_CTX]) {
    mm_total b64 = tot[0][2];
    b64.t += tot[1][2].t, b64.t_ideal += tot[1][2].t_ideal;
    double gb[MAX_SAMPLES], gf[MAX_SAMPLES];
    memcpy(gb, c->s_gbps, sizeof gb);
    memcpy(gf, c->s_gflops, sizeof gf);
    double gb_med = median(gb, c->n_samples), gf_med = median(gf, c->n_samples);
    char amx[32] = "null";
    if (c->amx_gflops >= 0)
        snprintf(amx, sizeof amx, "%.1f", c->amx_gflops);
    printf("{\"bench\":\"kernels\",\"quick\":%s,\"isa\":\"%s\",\"threads\":%d,"
           "\"read_gbps\":%.2f,\"read_gbps_min\":%.2f,\"read_gbps_max\":%.2f,"
           "\"peak_gflops\":%.1f,\"peak_gflops_min\":%.1f,\"peak_gflops_max\":%.1f,"
           "\"peak_kind\":\"%s\",\"roofline_samples\":%d,"
           "\"avx2_fma_gflops\":%.1f,\"avx512_fma_gflops\":%.1f,\"amx_bf16_gflops\":%s,"
           "\"matmul_b1_bf16_gbps\":%.2f,\"matmul_b1_fp8_gbps\":%.2f,"
           "\"matmul_b8_bf16_gflops\":%.1f,\"matmul_b8_fp8_gflops\":%.1f,"
           "\"matmul_b64_bf16_gflops\":%.1f,\"matmul_b64_fp8_gflops\":%.1f,"
           "\"matmul_b1_bf16_frac\":%.3f,\"matmul_b1_fp8_frac\":%.3f,"
           "\"matmul_b8_bf16_frac\":%.3f,\"matmul_b8_fp8_frac\":%.3f,"
           "\"matmul_b64_bf16_frac\":%.3f,\"matmul_b64_fp8_frac\":%.3f,\"matmul_b64_frac\":%.3f",
           c->o.quick ? "true" : "false", c->isa, c->threads, gb_med, gb[0],
           gb[c->n_samples - 1], gf_med, gf[0], gf[c->n_samples - 1], c->peak_kind,
           c->n_samples, c->avx2_gflops, c->avx512_gflops, amx,
           rate(tot[0][0].bytes, tot[0][0].t), rate(tot[1][0].bytes, tot[1][0].t),
           rate(tot[0][1].flops, tot[0][1].t), rate(tot[1][1].flops, tot[1][1].t),
           rate(tot[0][2].flops, tot[0][2].t), rate(tot[1][2].flops, tot[1][2].t),
           frac(&tot[0][0]), frac(&tot[1][0]), frac(&tot[0][1]), frac(&tot[1][1]),
           frac(&tot[0][2]), frac(&tot[1][2]), frac(&b64));
    for (int i = 0; i < N_CTX; i++)
        printf(",\"attn_%dk_bf16_ms\":%.3f,\"attn_%dk_fp8_ms\":%.3f", att_ctx[i] / 1024,
               att_ms[0][i], att_ctx[i] / 1024, att_ms[1][i]);
    printf("}\n");
}

static int kb_open(kb_ctx *c) {
    afd_backend_opts bo = {"cpu", c->o.isa, c->o.threads};
    int rc = afd_backend_open(&bo, &c->be);
    if (rc) {
        fprintf(stderr, "afd-bench kernels: cpu backend (isa %s): %s\n", c->o.isa,
                afd_strerror(rc));
        return rc;
    }
    /* describe() is "cpu <isa> x<N> threads" */
    static char isa[16];
    if (sscanf(afd_be_describe(c->be), "cpu %15s x%d", isa, &c->threads) != 2) {
        fprintf(stderr, "afd-bench kernels: unexpected backend '%s'\n", afd_be_describe(c->be));
        return AFD_E_FORMAT;
    }
    c->isa = isa;
    if ((rc = tp_new(c->threads, &c->pool)))
        return rc;
    return arena_init(c);
}

int bench_kernels(int argc, char **argv) {
    kb_ctx c;
    memset(&c, 0, sizeof c);
    int rc = parse(argc, argv, &c.o);
    if (rc)
        return rc == 1 ? 0 : rc;
    uint64_t t0 = afd_now_ns();
    if ((rc = kb_open(&c))) {
        afd_backend_free(c.be);
        tp_free(c.pool);
        return 1;
    }
    printf("afd-bench kernels: %s%s\n", afd_be_describe(c.be), c.o.quick ? " (quick)" : "");
    measure_roofline(&c);
    mm_total tot[2][3];
    memset(tot, 0, sizeof tot);
    bench_matmuls(&c, tot);
    double att_ms[2][N_CTX];
    attention_group(&c, AFD_DT_BF16, att_ms[0]);
    attention_group(&c, AFD_DT_F8_E4M3, att_ms[1]);
    printf("headline (Step-3 shapes, ideal time / measured time): batch 1 BF16 %.2f, FP8 %.2f "
           "of streaming bandwidth; batch 64 %.2f of min(%s peak, intensity x bandwidth)\n",
           frac(&tot[0][0]), frac(&tot[1][0]),
           (tot[0][2].t_ideal + tot[1][2].t_ideal) / (tot[0][2].t + tot[1][2].t), c.peak_kind);
    printf("total %.1f s\n", (double)(afd_now_ns() - t0) * 1e-9);
    print_json(&c, tot, att_ms);
    munmap(c.arena, ARENA_BYTES);
    tp_free(c.pool);
    afd_backend_free(c.be);
    return 0;
}

/* ---- the AVX2 peak loop lives here: this file is built for the x86-64-v3 baseline ---- */

double peak_fma_avx2(int64_t iters) {
    __m256 acc[12];
    for (int j = 0; j < 12; j++)
        acc[j] = _mm256_set1_ps(1.0f + (float)j * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++)
            acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    }
    __m256 s = acc[0];
    for (int j = 1; j < 12; j++)
        s = _mm256_add_ps(s, acc[j]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return (double)(v[0] + v[7]);
}
