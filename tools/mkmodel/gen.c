/* gen.c: seeded random values and the streaming writer of afd-mkmodel.
 *
 * Each tensor draws from its own stream, seeded by (--seed, tensor name): its values do not
 * depend on the order of tensors, the sharding, or the dtype (a block-FP8 checkpoint is the
 * quantized twin of the BF16 one with the same seed). Values are generated and written in
 * chunks (1 Mi elements, or one 128-row stripe for FP8), so memory stays small whatever the
 * model size.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/progress.h"
#include "common/base/numfmt.h"
#include "common/model/safetensors.h"
#include "tools/mkmodel/mkmodel.h"

#define CHUNK (1u << 20)

/* ---- the generator ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mk_rng_seed(mk_rng *r, uint64_t seed, const char *stream_name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the stream name */
    for (const unsigned char *p = (const unsigned char *)stream_name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ h;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mk_rng_next(mk_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* The sum of four 16-bit uniforms is close to normal (Irwin-Hall, n = 4): mean 2^17 - 2,
 * standard deviation 2^16/sqrt(3), bounded at +-3.46 sigma. One 64-bit draw per value. */
void mk_rng_fill(mk_rng *r, float *out, uint64_t n, float mean, float std) {
    const float k = std * 1.7320508f / 65536.0f;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = mk_rng_next(r);
        int64_t sum = (int64_t)(v & 0xffff) + (int64_t)((v >> 16) & 0xffff) +
                      (int64_t)((v >> 32) & 0xffff) + (int64_t)(v >> 48);
        out[i] = mean + (float)(sum - 131070) * k;
    }
}

/* ---- the writer --------------------------------------------------------------------------- */

typedef struct gen_ctx {
    st_writer *w;
    float *f;            /* CHUNK floats, or one FP8 stripe */
    uint16_t *h;         /* CHUNK bf16 */
    uint8_t *q;          /* one FP8 stripe of codes */
    size_t f_cap;
    float *scales;       /* block scales of the last FP8 tensor, written as its next tensor */
    uint64_t n_scales;
    uint64_t done, tensors; /* bytes and tensors written, for progress */
    afd_progress progress;
    const char *path;
} gen_ctx;

static int gen_put(gen_ctx *g, const void *data, uint64_t n, afd_err *err) {
    int rc = st_writer_data(g->w, data, n, err);
    if (rc == 0) {
        g->done += n;
        afd_progress_update(&g->progress, g->done, g->tensors);
    }
    return rc;
}

static void gen_reserve(gen_ctx *g, size_t n) {
    if (n <= g->f_cap)
        return;
    free(g->f);
    free(g->q);
    g->f = xmalloc(n * sizeof(float));
    g->q = xmalloc(n);
    g->f_cap = n;
}

static int gen_bf16(gen_ctx *g, const mk_tensor *t, mk_rng *r, afd_err *err) {
    uint64_t count = t->nbytes / 2;
    float mean = t->init == MK_INIT_ONES ? 1.0f : 0.0f;
    gen_reserve(g, CHUNK);
    for (uint64_t i = 0; i < count; i += CHUNK) {
        uint64_t n = count - i < CHUNK ? count - i : CHUNK;
        mk_rng_fill(r, g->f, n, mean, t->std);
        for (uint64_t j = 0; j < n; j++)
            g->h[j] = afd_f32_to_bf16(g->f[j]);
        int rc = gen_put(g, g->h, n * 2, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* One stripe of up to 128 rows: per 128x128 block scale = amax / 448, code = e4m3(v / scale). */
static void quantize_stripe(gen_ctx *g, int64_t rows, int64_t cols, float *scale_row) {
    int64_t nb = (cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    for (int64_t b = 0; b < nb; b++) {
        int64_t c0 = b * AFD_FP8_BLOCK, c1 = c0 + AFD_FP8_BLOCK < cols ? c0 + AFD_FP8_BLOCK : cols;
        float amax = 0.0f;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++)
                amax = fmaxf(amax, fabsf(g->f[r * cols + c]));
        float scale = amax > 0.0f ? amax / AFD_E4M3_MAX : 1.0f;
        scale_row[b] = scale;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++)
                g->q[r * cols + c] = afd_f32_to_e4m3(g->f[r * cols + c] / scale);
    }
}

static int gen_fp8(gen_ctx *g, const mk_tensor *t, mk_rng *r, afd_err *err) {
    int64_t mats = t->ndim == 3 ? t->shape[0] : 1;
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    int64_t rb = (rows + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    int64_t cb = (cols + AFD_FP8_BLOCK - 1) / AFD_FP8_BLOCK;
    free(g->scales);
    g->n_scales = (uint64_t)(mats * rb * cb);
    g->scales = xmalloc(g->n_scales * sizeof(float));
    gen_reserve(g, (size_t)(AFD_FP8_BLOCK * cols));
    for (int64_t m = 0; m < mats; m++) {
        for (int64_t s = 0; s < rb; s++) {
            int64_t n = rows - s * AFD_FP8_BLOCK < AFD_FP8_BLOCK ? rows - s * AFD_FP8_BLOCK
                                                                 : AFD_FP8_BLOCK;
            mk_rng_fill(r, g->f, (uint64_t)(n * cols), 0.0f, t->std);
            quantize_stripe(g, n, cols, g->scales + (m * rb + s) * cb);
            int rc = gen_put(g, g->q, (uint64_t)(n * cols), err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int gen_scales(gen_ctx *g, const mk_tensor *t, afd_err *err) {
    if (!g->scales || g->n_scales * 4 != t->nbytes)
        return afd_errf(err, AFD_E_STATE, "internal: %s does not follow its FP8 weight", t->name);
    int rc = gen_put(g, g->scales, t->nbytes, err);
    free(g->scales);
    g->scales = NULL;
    return rc;
}

static int gen_tensor(gen_ctx *g, const mk_tensor *t, uint64_t seed, afd_err *err) {
    mk_rng r;
    mk_rng_seed(&r, seed, t->name);
    if (t->init == MK_INIT_SCALE)
        return gen_scales(g, t, err);
    if (t->dtype == AFD_DT_F8_E4M3)
        return gen_fp8(g, t, &r, err);
    return gen_bf16(g, t, &r, err);
}

static int gen_shard(gen_ctx *g, const mk_plan *p, int shard, uint64_t seed, afd_err *err) {
    g->w = st_writer_new();
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++)
        if (p->t[i].shard == shard)
            rc = st_writer_add(g->w, p->t[i].name, p->t[i].dtype, p->t[i].ndim, p->t[i].shape);
    if (rc) {
        st_writer_free(g->w);
        return afd_errf(err, rc, "%s: cannot declare tensors: %s", g->path, afd_strerror(rc));
    }
    rc = st_writer_begin(g->w, g->path, "{\"format\":\"pt\"}", err);
    for (int i = 0; i < p->n && rc == 0; i++) {
        if (p->t[i].shard == shard) {
            rc = gen_tensor(g, &p->t[i], seed, err);
            g->tensors++;
        }
    }
    if (rc) {
        st_writer_free(g->w);
        return rc;
    }
    return st_writer_finish(g->w, err);
}

int mk_generate(const mk_plan *p, const mk_spec *spec, const char *dir, bool quiet,
                afd_err *err) {
    gen_ctx g = {0};
    g.h = xmalloc(CHUNK * sizeof(uint16_t));
    char label[256];
    snprintf(label, sizeof label, "writing %s", dir);
    afd_progress_begin(&g.progress, label, p->total_bytes, (uint64_t)p->n,
                       quiet ? AFD_PROGRESS_QUIET : 0);
    int rc = 0;
    for (int s = 0; s < p->n_shards && rc == 0; s++) {
        char name[64], path[4096];
        mk_shard_name(p, s, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        g.path = path;
        rc = gen_shard(&g, p, s, spec->seed, err);
    }
    if (rc == 0)
        afd_progress_end(&g.progress);
    free(g.f);
    free(g.h);
    free(g.q);
    free(g.scales);
    return rc;
}
