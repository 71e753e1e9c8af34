/* kernels.c: `afd-bench kernels`: the CPU backend's kernels against the machine's roofline,
 * measured in the same run.
 *
 * 1. Roofline: streaming read bandwidth of all threads over a 1 GiB buffer (far beyond the
 *    caches this VM's 2 cores use; the host L3 is 480 MiB and shared), and the fp32 FMA peak of
 *    the instruction set in use (register-resident loop), plus the AMX bf16 peak when usable.
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
    double read_gbps, peak_gflops, avx2_gflops, avx512_gflops, amx_gflops;
    const char *peak_kind;
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

static void read_task(void *arg, int task, int thread) {
    arena_job *j = arg;
    size_t chunk = j->bytes / (size_t)j->n & ~(size_t)127;
    const __m256i *p = (const __m256i *)(j->p + (size_t)task * chunk);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < chunk / 32; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(p + i));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + i + 3));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, s);
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

static void measure_bandwidth(kb_ctx *c) {
    int passes = c->o.quick ? 3 : 7;
    double gbps[16];
    for (int i = 0; i < passes; i++) {
        arena_job j = {c->arena, ARENA_BYTES, c->threads, {0}};
            uint64_t t0 = afd_now_ns();
        tp_run(c->pool, c->threads, read_task, &j);
        gbps[i] = (double)(ARENA_BYTES / (size_t)c->threads & ~(size_t)127) * c->threads /
                  (double)(afd_now_ns() - t0);
    }
    c->read_gbps = median(gbps, passes);
    printf("read bandwidth      %7.1f GB/s   (%d threads streaming a %zu MiB buffer, median of "
           "%d)\n", c->read_gbps, c->threads, ARENA_BYTES >> 20, passes);
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

/* GFLOP/s of one peak loop on every thread, median of 3. */
static double measure_peak(kb_ctx *c, int kind) {
    static const double flop_per_iter[] = {12 * 8 * 2, 16 * 16 * 2, 4 * 16384};
    int64_t iters = kind == 2 ? 1500000 : 15000000;
    if (c->o.quick)
        iters /= 3;
    double g[3];
    for (int i = 0; i < 3; i++) {
        peak_job j = {kind, iters, {0}};
        uint64_t t0 = afd_now_ns();
        tp_run(c->pool, c->threads, peak_task, &j);
        g[i] = flop_per_iter[kind] * (double)iters * c->threads / (double)(afd_now_ns() - t0);
    }
    return median(g, 3);
}

static void measure_peaks(kb_ctx *c) {
    c->avx2_gflops = measure_peak(c, 0);
    printf("avx2 fp32 fma peak  %7.0f GFLOP/s\n", c->avx2_gflops);
    if (cpu_avx512_usable()) {
        c->avx512_gflops = measure_peak(c, 1);
        printf("avx512 fp32 fma peak %6.0f GFLOP/s\n", c->avx512_gflops);
    }
    if (cpu_amx_usable()) {
        c->amx_gflops = measure_peak(c, 2);
        printf("amx bf16 peak       %7.0f GFLOP/s   (bf16 inputs: not used by the fp32 kernels)\n",
               c->amx_gflops);
    }
    bool v512 = strcmp(c->isa, "avx512") == 0;
    c->peak_gflops = v512 ? c->avx512_gflops : c->avx2_gflops;
    c->peak_kind = v512 ? "avx512 fp32 fma" : "avx2 fp32 fma";
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
    double budget = c->o.quick ? 0.12 : 0.5, t[64];
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

static void bench_matmul_case(kb_ctx *c, afd_dtype dt, const mm_shape *s, int B, mm_total *tot) {
    float *x = xalloc_aligned((size_t)B * s->k * sizeof(float));
    float *y = xalloc_aligned((size_t)B * s->n * sizeof(float));
    float *scale = xalloc_aligned((size_t)((s->n + 127) / 128) * ((s->k + 127) / 128) * 4);
    for (size_t i = 0; i < (size_t)B * s->k; i++)
        x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)((s->n + 127) / 128) * ((s->k + 127) / 128); i++)
        scale[i] = 1.0f / 64.0f;
    double t = time_matmul(c, dt, s, B, x, y, scale);
    double wbytes = (double)s->n * s->k * afd_dtype_size(dt);
    double bytes = wbytes + 4.0 * B * ((double)s->k + s->n), flops = 2.0 * B * s->n * s->k;
    double ideal = fmax(bytes / (c->read_gbps * 1e9), flops / (c->peak_gflops * 1e9));
    printf("matmul %-5s %-20s B=%-3d %8.3f ms %7.1f GB/s %7.1f GFLOP/s  %5.1f%% of roofline\n",
           afd_dtype_name(dt), s->name, B, t * 1e3, wbytes / t * 1e-9, flops / t * 1e-9,
           100.0 * ideal / t);
    if (s->step3) {
        tot->t += t, tot->t_ideal += ideal, tot->bytes += wbytes, tot->flops += flops;
    }
    free(x), free(y), free(scale);
}

/* tot[dtype 0 BF16 / 1 FP8][batch 0 / 1 / 2 for 1 / 8 / 64] over the Step-3 shapes. */
static void bench_matmuls(kb_ctx *c, mm_total tot[2][3]) {
    static const int batches[3] = {1, 8, 64};
    afd_dtype dts[2] = {AFD_DT_BF16, AFD_DT_F8_E4M3};
    for (int d = 0; d < 2; d++)
        for (int bi = 0; bi < 3; bi++)
            for (int i = 0; i < N_SHAPES; i++)
                if (!c->o.quick || shapes[i].quick)
                    bench_matmul_case(c, dts[d], &shapes[i], batches[bi], &tot[d][bi]);
}

/* ---- attention ---- */

typedef struct att_result {
    int ctx;
    double ms[2]; /* BF16, FP8 */
} att_result;

static double bench_attention_case(kb_ctx *c, afd_dtype dt, int ctx) {
    const int heads = 64, hd = 256, bs = 64, nb = (ctx + bs - 1) / bs;
    afd_kv_layout kv;
    afd_kv_layout_init(&kv, dt, bs, 1, 1, hd);
    uint8_t *pool = afd_be_alloc(c->be, (size_t)nb * kv.block_bytes);
    int32_t *blocks = xmalloc((size_t)nb * 4), *slots = xmalloc((size_t)ctx * 4);
    float *k = xalloc_aligned((size_t)ctx * hd * 4), *v = xalloc_aligned((size_t)ctx * hd * 4);
    float *q = xalloc_aligned((size_t)heads * hd * 4), *out = xalloc_aligned((size_t)heads * hd * 4);
    for (int i = 0; i < nb; i++)
        blocks[i] = i;
    for (int p = 0; p < ctx; p++)
        slots[p] = p;
    for (size_t i = 0; i < (size_t)ctx * hd; i++)
        k[i] = (float)((i * 2654435761u) % 997) * 2e-3f - 1.0f, v[i] = k[i] * 0.5f;
    for (int i = 0; i < heads * hd; i++)
        q[i] = (float)(i % 17) * 0.01f - 0.08f;
    afd_be_kv_store(c->be, &kv, pool, 0, ctx, slots, k, v);
    int32_t seq = 0;
    afd_attn_batch b = {1, &seq, &ctx, 1, nb, blocks};
    double t[32];
    int n = 0, min_calls = c->o.quick ? 3 : 7;
    double budget = c->o.quick ? 0.1 : 0.4;
    afd_be_attention(c->be, out, q, heads, &kv, pool, 0, &b, 1.0f / 16.0f);
    uint64_t start = afd_now_ns();
    while (n < 32 && (n < min_calls || (double)(afd_now_ns() - start) * 1e-9 < budget)) {
        uint64_t t0 = afd_now_ns();
        afd_be_attention(c->be, out, q, heads, &kv, pool, 0, &b, 1.0f / 16.0f);
        t[n++] = (double)(afd_now_ns() - t0) * 1e-9;
    }
    double tm = median(t, n);
    double bytes = (double)ctx * 2 * hd * afd_dtype_size(dt) +
                   (dt == AFD_DT_F8_E4M3 ? (double)ctx * 8 : 0.0);
    double flops = 4.0 * heads * hd * ctx;
    double ideal = fmax(bytes / (c->read_gbps * 1e9), flops / (c->peak_gflops * 1e9));
    printf("attention %-5s ctx=%-6d 64x256/1kv %8.3f ms %7.1f GB/s %7.1f GFLOP/s  %5.1f%% of "
           "roofline\n", afd_dtype_name(dt), ctx, tm * 1e3, bytes / tm * 1e-9, flops / tm * 1e-9,
           100.0 * ideal / tm);
    afd_be_release(c->be, pool);
    free(blocks), free(slots), free(k), free(v), free(q), free(out);
    return tm;
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
            "  --isa X       cpu kernel variant: auto (default), generic, avx2, avx512\n"
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

static void print_json(const kb_ctx *c, mm_total tot[2][3], const att_result *att, int n_att) {
    mm_total b64 = tot[0][2];
    b64.t += tot[1][2].t, b64.t_ideal += tot[1][2].t_ideal;
    printf("{\"bench\":\"kernels\",\"quick\":%s,\"isa\":\"%s\",\"threads\":%d,"
           "\"read_gbps\":%.2f,\"peak_gflops\":%.1f,\"peak_kind\":\"%s\","
           "\"avx2_fma_gflops\":%.1f,\"avx512_fma_gflops\":%.1f,\"amx_bf16_gflops\":%.1f,"
           "\"matmul_b1_bf16_gbps\":%.2f,\"matmul_b1_fp8_gbps\":%.2f,"
           "\"matmul_b8_bf16_gflops\":%.1f,\"matmul_b8_fp8_gflops\":%.1f,"
           "\"matmul_b64_bf16_gflops\":%.1f,\"matmul_b64_fp8_gflops\":%.1f,"
           "\"matmul_b1_bf16_frac\":%.3f,\"matmul_b1_fp8_frac\":%.3f,"
           "\"matmul_b8_bf16_frac\":%.3f,\"matmul_b8_fp8_frac\":%.3f,"
           "\"matmul_b64_bf16_frac\":%.3f,\"matmul_b64_fp8_frac\":%.3f,\"matmul_b64_frac\":%.3f",
           c->o.quick ? "true" : "false", c->isa, c->threads, c->read_gbps, c->peak_gflops,
           c->peak_kind, c->avx2_gflops, c->avx512_gflops, c->amx_gflops,
           tot[0][0].bytes / tot[0][0].t * 1e-9, tot[1][0].bytes / tot[1][0].t * 1e-9,
           tot[0][1].flops / tot[0][1].t * 1e-9, tot[1][1].flops / tot[1][1].t * 1e-9,
           tot[0][2].flops / tot[0][2].t * 1e-9, tot[1][2].flops / tot[1][2].t * 1e-9,
           frac(&tot[0][0]), frac(&tot[1][0]), frac(&tot[0][1]), frac(&tot[1][1]),
           frac(&tot[0][2]), frac(&tot[1][2]), frac(&b64));
    for (int i = 0; i < n_att; i++)
        printf(",\"attn_%dk_bf16_ms\":%.3f,\"attn_%dk_fp8_ms\":%.3f", att[i].ctx / 1024,
               att[i].ms[0] * 1e3, att[i].ctx / 1024, att[i].ms[1] * 1e3);
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
    measure_bandwidth(&c);
    measure_peaks(&c);
    mm_total tot[2][3];
    memset(tot, 0, sizeof tot);
    bench_matmuls(&c, tot);
    att_result att[4] = {{1024, {0}}, {4096, {0}}, {16384, {0}}, {32768, {0}}};
    for (int i = 0; i < 4; i++)
        for (int d = 0; d < 2; d++)
            att[i].ms[d] = bench_attention_case(&c, d ? AFD_DT_F8_E4M3 : AFD_DT_BF16, att[i].ctx);
    printf("total %.1f s\n", (double)(afd_now_ns() - t0) * 1e-9);
    print_json(&c, tot, att, 4);
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
