/* cpu.c: the CPU backend object. Picks a kernel table once (ISA feature score), owns the
 * thread pool and per-thread scratch, validates arguments and splits every op into tasks of
 * whole output elements (matmul: panels of up to CPU_MM_NP output columns; attention: (token, head
 * group); row ops: groups of rows), so no reduction is ever split across threads. */
#include <assert.h>
#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/backend/cpu/cpu.h"
#include "common/base/alloc.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/numfmt.h"
#include "common/base/threadpool.h"

#define ROW_TASK_ELEMS 16384 /* row ops: at least this many elements per task */
#define ROPE_MAX_HALF (CPU_ATT_MAX_HEAD_DIM / 2)

typedef struct cpu_ctx {
    afd_backend be;
    const cpu_kernels *k;
    tp_pool *pool;
    int n_threads;
    uint8_t *scratch; /* n_threads * CPU_SCRATCH_BYTES */
    char desc[64];
    double rope_theta; /* inv_freq below is for (rope_theta, rope_hd) */
    int rope_hd;
    double inv_freq[ROPE_MAX_HALF];
} cpu_ctx;

static void *thread_scratch(cpu_ctx *c, int thread) {
    return c->scratch + (size_t)thread * CPU_SCRATCH_BYTES;
}

/* ---- ISA detection ---- */

static bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
    unsigned r[4];
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3]))
        return false;
    return (r[reg] >> bit) & 1;
}

static bool cpu_avx2_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           cpuid_bit(1, 0, 2, 29) /* f16c */;
}

bool cpu_avx512_usable(void) {
    __builtin_cpu_init();
    return cpu_avx2_usable() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}

bool cpu_vbmi_usable(void) {
    return cpu_avx512_usable() && __builtin_cpu_supports("avx512vbmi");
}

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

bool cpu_amx_usable(void) {
    static _Atomic int state = -1; /* every thread computes the same answer */
    int s = atomic_load(&state);
    if (s < 0) {
        bool hw = cpuid_bit(7, 0, 3, 22) /* amx-bf16 */ && cpuid_bit(7, 0, 3, 24) /* amx-tile */;
        s = hw && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        atomic_store(&state, s);
    }
    return s == 1;
}

/* Variants implemented in this build, best first, with their feature test. */
static const struct {
    const char *name;
    const cpu_kernels *k;
    bool (*usable)(void);
} variants[] = {
    {"avx512vbmi", &cpu_kernels_avx512vbmi, cpu_vbmi_usable},
    {"avx512", &cpu_kernels_avx512, cpu_avx512_usable},
    {"avx2", &cpu_kernels_avx2, cpu_avx2_usable},
    {"generic", &cpu_kernels_generic, NULL},
};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])

int afd_cpu_isas(const char **names, int max) {
    int n = 0;
    for (int i = 0; i < N_VARIANTS && n < max; i++)
        if (!variants[i].usable || variants[i].usable())
            names[n++] = variants[i].name;
    return n;
}

const cpu_kernels *cpu_kernels_find(const char *isa) {
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(isa, variants[i].name) == 0)
            return !variants[i].usable || variants[i].usable() ? variants[i].k : NULL;
    return NULL;
}

/* Resolves the isa option: "auto" -> best usable. 0 and *out, or an error code. */
static int pick_kernels(const char *isa, const cpu_kernels **out) {
    if (!isa || strcmp(isa, "auto") == 0) {
        const char *best[1];
        afd_cpu_isas(best, 1);
        *out = cpu_kernels_find(best[0]);
        return 0;
    }
    if ((*out = cpu_kernels_find(isa)))
        return 0;
    if (strcmp(isa, "amx") == 0) {
        log_error("cpu isa amx: no AMX kernels in this build (amx %s on this CPU); use avx512",
                  cpu_amx_usable() ? "usable" : "not usable");
        return AFD_E_UNSUPPORTED;
    }
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(isa, variants[i].name) == 0) {
            log_error("cpu isa %s: not supported by this CPU", isa);
            return AFD_E_UNSUPPORTED;
        }
    log_error("cpu isa '%s' unknown (want auto, generic, avx2, avx512, avx512vbmi or amx)", isa);
    return -EINVAL;
}

/* ---- matmul and embed ---- */

static bool weight_ok(const afd_tensor *w) {
    bool dt = w->dtype == AFD_DT_F32 || w->dtype == AFD_DT_BF16 || w->dtype == AFD_DT_F16 ||
              (w->dtype == AFD_DT_F8_E4M3 && w->scale && w->scale_ld > 0);
    return dt && w->rows >= 0 && w->cols >= 0 && w->rows <= INT32_MAX && w->cols <= INT32_MAX &&
           w->ld >= w->cols && w->row0 >= 0 && w->col0 >= 0;
}

typedef struct mm_job {
    cpu_ctx *c;
    float *y;
    const float *x;
    int B, width;
    const afd_tensor *w;
} mm_job;

static void mm_task(void *p, int task, int thread) {
    mm_job *j = p;
    int n0 = task * j->width, n1 = n0 + j->width;
    if (n1 > (int)j->w->rows)
        n1 = (int)j->w->rows;
    j->c->k->matmul_cols(j->y, j->x, j->B, j->w, n0, n1, thread_scratch(j->c, thread));
}

/* Columns per task: up to CPU_MM_NP, so the permuted x (once per task or K block) serves more
 * columns and a thread streams long contiguous runs of weight rows, while keeping at least 4
 * tasks per thread for balance. The split never changes a result. */
static int mm_width(const cpu_ctx *c, int64_t N) {
    int width = CPU_MM_NP;
    while (width > 32 && (N + width - 1) / width < 4 * c->n_threads)
        width /= 2;
    return width;
}

static int cpu_matmul(afd_backend *be, float *y, const float *x, int B, const afd_tensor *w) {
    cpu_ctx *c = be->ctx;
    if (!weight_ok(w))
        return AFD_E_UNSUPPORTED;
    if (B <= 0 || w->rows == 0)
        return 0;
    mm_job j = {c, y, x, B, mm_width(c, w->rows), w};
    tp_run(c->pool, (int)((w->rows + j.width - 1) / j.width), mm_task, &j);
    return 0;
}

static int cpu_embed(afd_backend *be, float *out, const afd_tensor *e, const int32_t *ids, int B) {
    if (!weight_ok(e))
        return AFD_E_UNSUPPORTED;
    for (int b = 0; b < B; b++)
        for (int64_t col = 0; col < e->cols; col++)
            out[(size_t)b * e->cols + col] = cpu_weight_at(e, ids[b], col);
    return 0;
}

/* ---- row ops: tasks of whole rows ---- */

typedef struct row_job {
    cpu_ctx *c;
    int rows_per_task, n_rows, n;
    float *y;
    const float *x, *w, *alpha;
    float eps;
    uint8_t *q;
    float *scale;
    const uint8_t *cq;
    const float *cscale;
    int group;
} row_job;

static int rows_per_task(int n) { return n >= ROW_TASK_ELEMS ? 1 : ROW_TASK_ELEMS / (n > 0 ? n : 1); }

static void run_rows(cpu_ctx *c, row_job *j, int n_rows, tp_fn fn) {
    j->c = c;
    j->n_rows = n_rows;
    j->rows_per_task = rows_per_task(j->n);
    tp_run(c->pool, (n_rows + j->rows_per_task - 1) / j->rows_per_task, fn, j);
}

#define FOR_TASK_ROWS(j, task, r)                                                                  \
    for (int r = (task) * (j)->rows_per_task;                                                      \
         r < (j)->n_rows && r < ((task) + 1) * (j)->rows_per_task; r++)

static void rmsnorm_task(void *p, int task, int thread) {
    row_job *j = p;
    FOR_TASK_ROWS(j, task, b) {
        size_t o = (size_t)b * j->n;
        j->c->k->rmsnorm_row(j->y + o, j->x + o, j->w, j->n, j->eps);
    }
}

static void cpu_rmsnorm(afd_backend *be, float *y, const float *x, const float *w, int B, int n,
                        float eps) {
    row_job j = {.y = y, .x = x, .w = w, .n = n, .eps = eps};
    run_rows(be->ctx, &j, B, rmsnorm_task);
}

static void add_scaled_task(void *p, int task, int thread) {
    row_job *j = p;
    FOR_TASK_ROWS(j, task, b) {
        size_t o = (size_t)b * j->n;
        j->c->k->add_scaled(j->y + o, j->x + o, j->alpha ? j->alpha[b] : 1.0f, (size_t)j->n);
    }
}

static void cpu_add_scaled(afd_backend *be, float *y, const float *x, const float *alpha, int B,
                           int n) {
    row_job j = {.y = y, .x = x, .alpha = alpha, .n = n};
    run_rows(be->ctx, &j, B, add_scaled_task);
}

static void quantize_task(void *p, int task, int thread) {
    row_job *j = p;
    int ng = j->n / j->group;
    FOR_TASK_ROWS(j, task, b) {
        for (int g = 0; g < ng; g++) {
            size_t o = (size_t)b * j->n + (size_t)g * j->group;
            j->c->k->quantize_group(j->q + o, j->scale + (size_t)b * ng + g, j->x + o, j->group);
        }
    }
}

static void cpu_quantize_fp8(afd_backend *be, uint8_t *q, float *scale, const float *x, int B,
                             int n, int group) {
    assert(group > 0 && n % group == 0);
    row_job j = {.q = q, .scale = scale, .x = x, .n = n, .group = group};
    run_rows(be->ctx, &j, B, quantize_task);
}

static void dequantize_task(void *p, int task, int thread) {
    row_job *j = p;
    int ng = j->n / j->group;
    FOR_TASK_ROWS(j, task, b) {
        for (int g = 0; g < ng; g++) {
            size_t o = (size_t)b * j->n + (size_t)g * j->group;
            j->c->k->dequantize_group(j->y + o, j->cq + o, j->cscale[(size_t)b * ng + g],
                                      j->group);
        }
    }
}

static void cpu_dequantize_fp8(afd_backend *be, float *x, const uint8_t *q, const float *scale,
                               int B, int n, int group) {
    assert(group > 0 && n % group == 0);
    row_job j = {.y = x, .cq = q, .cscale = scale, .n = n, .group = group};
    run_rows(be->ctx, &j, B, dequantize_task);
}

/* ---- elementwise ---- */

typedef struct ew_job {
    cpu_ctx *c;
    float *out;
    const float *a, *b;
    size_t n;
} ew_job;

static void swiglu_task(void *p, int task, int thread) {
    ew_job *j = p;
    size_t i0 = (size_t)task * ROW_TASK_ELEMS, n = j->n - i0 < ROW_TASK_ELEMS ? j->n - i0 : ROW_TASK_ELEMS;
    j->c->k->swiglu(j->out + i0, j->a + i0, j->b + i0, n);
}

static void cpu_swiglu(afd_backend *be, float *out, const float *gate, const float *up, size_t n) {
    cpu_ctx *c = be->ctx;
    ew_job j = {c, out, gate, up, n};
    tp_run(c->pool, (int)((n + ROW_TASK_ELEMS - 1) / ROW_TASK_ELEMS), swiglu_task, &j);
}

/* ---- rope ---- */

typedef struct rope_job {
    cpu_ctx *c;
    float *x;
    int ld, n_heads, head_dim, rows_per_task, B;
    const int32_t *pos;
} rope_job;

static void rope_task(void *p, int task, int thread) {
    rope_job *j = p;
    int half = j->head_dim / 2;
    float *cs = thread_scratch(j->c, thread), *sn = cs + half;
    for (int b = task * j->rows_per_task; b < j->B && b < (task + 1) * j->rows_per_task; b++) {
        for (int i = 0; i < half; i++) {
            double angle = (double)j->pos[b] * j->c->inv_freq[i];
            cs[i] = (float)cos(angle);
            sn[i] = (float)sin(angle);
        }
        j->c->k->rope_row(j->x + (size_t)b * j->ld, j->n_heads, j->head_dim, cs, sn);
    }
}

static void cpu_rope(afd_backend *be, float *x, int B, int ld, int n_heads, int head_dim,
                     const int32_t *pos, double theta) {
    cpu_ctx *c = be->ctx;
    assert(head_dim > 0 && head_dim % 2 == 0 && head_dim <= CPU_ATT_MAX_HEAD_DIM);
    if (c->rope_hd != head_dim || c->rope_theta != theta) {
        for (int i = 0; i < head_dim / 2; i++)
            c->inv_freq[i] = pow(theta, -2.0 * i / head_dim);
        c->rope_hd = head_dim;
        c->rope_theta = theta;
    }
    int per = (head_dim * n_heads) >= 2048 ? 1 : 2048 / (head_dim * n_heads);
    rope_job j = {c, x, ld, n_heads, head_dim, per, B, pos};
    tp_run(c->pool, (B + per - 1) / per, rope_task, &j);
}

/* ---- KV cache ---- */

static void kv_store_row(const cpu_kernels *k, const afd_kv_layout *kv, uint8_t *base,
                         size_t row, const float *src, int which) {
    int hd = kv->head_dim;
    uint8_t *dst = base + (which ? kv->v_off : kv->k_off) + row * hd * afd_dtype_size(kv->dtype);
    switch (kv->dtype) {
    case AFD_DT_BF16:
        for (int d = 0; d < hd; d++)
            ((uint16_t *)dst)[d] = afd_f32_to_bf16(src[d]);
        break;
    case AFD_DT_F8_E4M3:
        k->quantize_group(dst, (float *)(base + (which ? kv->vs_off : kv->ks_off)) + row, src, hd);
        break;
    default:
        memcpy(dst, src, (size_t)hd * sizeof(float));
    }
}

static void cpu_kv_store(afd_backend *be, const afd_kv_layout *kv, void *pool, int layer,
                         int n_tok, const int32_t *slots, const float *k, const float *v) {
    cpu_ctx *c = be->ctx;
    size_t width = (size_t)kv->n_kv_heads * kv->head_dim;
    for (int i = 0; i < n_tok; i++) {
        if (slots[i] < 0)
            continue;
        uint8_t *base = (uint8_t *)pool + (size_t)(slots[i] / kv->block_size) * kv->block_bytes +
                        (size_t)layer * kv->layer_bytes;
        for (int g = 0; g < kv->n_kv_heads; g++) {
            size_t row = (size_t)(slots[i] % kv->block_size) * kv->n_kv_heads + g;
            kv_store_row(c->k, kv, base, row, k + i * width + (size_t)g * kv->head_dim, 0);
            kv_store_row(c->k, kv, base, row, v + i * width + (size_t)g * kv->head_dim, 1);
        }
    }
}

/* ---- attention ---- */

typedef struct attn_job {
    cpu_ctx *c;
    cpu_attn_args a;
    int group;      /* query heads per KV head */
    int per_group;  /* tasks per (token, KV head) */
    int hc;         /* heads per task */
} attn_job;

static void attn_task(void *p, int task, int thread) {
    attn_job *j = p;
    int per_tok = j->a.kv->n_kv_heads * j->per_group;
    int tok = task / per_tok, r = task % per_tok;
    int g = r / j->per_group, ch = r % j->per_group;
    int h0 = g * j->group + ch * j->hc, h1 = h0 + j->hc;
    if (h1 > (g + 1) * j->group)
        h1 = (g + 1) * j->group;
    j->c->k->attention(&j->a, tok, h0, h1, thread_scratch(j->c, thread));
}

static void cpu_attention(afd_backend *be, float *out, const float *q, int n_heads,
                          const afd_kv_layout *kv, const void *pool, int layer,
                          const afd_attn_batch *batch, float scale) {
    cpu_ctx *c = be->ctx;
    assert(kv->n_kv_heads > 0 && n_heads % kv->n_kv_heads == 0);
    assert(kv->head_dim > 0 && kv->head_dim <= CPU_ATT_MAX_HEAD_DIM);
    if (batch->n_tok <= 0)
        return;
    attn_job j = {c, {out, q, n_heads, kv, pool, layer, batch, scale}, n_heads / kv->n_kv_heads,
                  1, 0};
    /* Enough tasks for every thread; each extra split re-reads the K/V of its token. */
    int units = batch->n_tok * kv->n_kv_heads;
    if (units < c->n_threads)
        j.per_group = (c->n_threads + units - 1) / units;
    j.hc = (j.group + j.per_group - 1) / j.per_group;
    if (j.hc > CPU_ATT_MAX_HEADS)
        j.hc = CPU_ATT_MAX_HEADS;
    j.per_group = (j.group + j.hc - 1) / j.hc;
    tp_run(c->pool, units * j.per_group, attn_task, &j);
}

/* ---- router top-k (scalar, shared by every variant) ---- */

static void topk_row(int32_t *ids, float *w, const float *logits, int E, int k, bool renorm,
                     float *p) {
    float m = logits[0];
    for (int i = 1; i < E; i++)
        m = logits[i] > m ? logits[i] : m;
    float sum = 0.0f;
    for (int i = 0; i < E; i++) {
        p[i] = expf(logits[i] - m);
        sum += p[i];
    }
    for (int i = 0; i < E; i++)
        p[i] = p[i] / sum;
    float tot = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < E; i++)
            if (p[i] >= 0.0f && (best < 0 || p[i] > p[best]))
                best = i;
        ids[j] = best;
        w[j] = p[best];
        tot += p[best];
        p[best] = -1.0f; /* taken */
    }
    if (renorm)
        for (int j = 0; j < k; j++)
            w[j] = w[j] / tot;
}

static void cpu_topk_softmax(afd_backend *be, int32_t *ids, float *w, const float *logits, int B,
                             int E, int k, bool renorm) {
    cpu_ctx *c = be->ctx;
    assert(E > 0 && k > 0 && k <= E && (size_t)E * sizeof(float) <= CPU_SCRATCH_BYTES);
    for (int b = 0; b < B; b++)
        topk_row(ids + (size_t)b * k, w + (size_t)b * k, logits + (size_t)b * E, E, k, renorm,
                 thread_scratch(c, 0));
}

/* ---- object ---- */

static const char *cpu_describe(afd_backend *be) { return ((cpu_ctx *)be->ctx)->desc; }

static void cpu_free(afd_backend *be) {
    cpu_ctx *c = be->ctx;
    tp_free(c->pool);
    free(c->scratch);
    free(c);
}

static const afd_backend_iface cpu_iface = {
    .api_version = AFD_BACKEND_API_VERSION,
    .name = "cpu",
    .free = cpu_free,
    .describe = cpu_describe,
    .matmul = cpu_matmul,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .topk_softmax = cpu_topk_softmax,
    .swiglu = cpu_swiglu,
    .add_scaled = cpu_add_scaled,
    .quantize_fp8 = cpu_quantize_fp8,
    .dequantize_fp8 = cpu_dequantize_fp8,
};

int afd_cpu_backend_new(const char *isa, int n_threads, afd_backend **out) {
    *out = NULL;
    const cpu_kernels *k;
    int rc = pick_kernels(isa, &k);
    if (rc)
        return rc;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    cpu_ctx *c = afd_try_alloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->k = k;
    c->n_threads = n_threads;
    c->scratch = afd_try_alloc((size_t)n_threads * CPU_SCRATCH_BYTES);
    if (!c->scratch || (rc = tp_new(n_threads, &c->pool)) != 0) {
        free(c->scratch);
        free(c);
        return rc ? rc : -ENOMEM;
    }
    snprintf(c->desc, sizeof c->desc, "cpu %s x%d threads", k->name, n_threads);
    c->be.iface = &cpu_iface;
    c->be.ctx = c;
    log_info("cpu backend: isa %s (%s), %d threads", k->name,
             !isa || strcmp(isa, "auto") == 0 ? "auto: best this CPU runs" : "requested",
             n_threads);
    *out = &c->be;
    return 0;
}
