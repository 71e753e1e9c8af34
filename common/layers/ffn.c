#include "common/layers/ffn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"

static int max3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

int afd_ffn_scratch_init(afd_ffn_scratch *s, afd_backend *be, const afd_model_config *cfg,
                         int cap_tok) {
    memset(s, 0, sizeof *s);
    int k = cfg->top_k > 0 ? cfg->top_k : 1;
    size_t slots = (size_t)cap_tok * (size_t)k, H = (size_t)cfg->hidden;
    size_t inter = (size_t)max3(cfg->moe_inter * k, cfg->inter_dense, cfg->share_inter);
    s->be = be;
    s->cap_tok = cap_tok, s->top_k = k, s->hidden = cfg->hidden;
    s->xg = afd_be_alloc(be, slots * H * sizeof(float));
    s->y = afd_be_alloc(be, slots * H * sizeof(float));
    s->yk = afd_be_alloc(be, slots * H * sizeof(float));
    s->h1 = afd_be_alloc(be, (size_t)cap_tok * inter * sizeof(float));
    s->h2 = afd_be_alloc(be, (size_t)cap_tok * inter * sizeof(float));
    s->rows = afd_try_alloc(slots * sizeof(int32_t));
    s->hit = afd_try_alloc(slots);
    if (!s->xg || !s->y || !s->yk || !s->h1 || !s->h2 || !s->rows || !s->hit) {
        afd_ffn_scratch_free(s);
        return -ENOMEM;
    }
    return 0;
}

void afd_ffn_scratch_free(afd_ffn_scratch *s) {
    if (!s || !s->be)
        return;
    afd_be_release(s->be, s->xg);
    afd_be_release(s->be, s->y);
    afd_be_release(s->be, s->yk);
    afd_be_release(s->be, s->h1);
    afd_be_release(s->be, s->h2);
    free(s->rows);
    free(s->hit);
    memset(s, 0, sizeof *s);
}

/* y[n, hidden] = down(silu(gate x) * up x) for x[n, hidden]. */
static int swiglu_mlp(afd_ffn_scratch *s, const afd_ffn_weights *fw, float *y, const float *x,
                      int n) {
    int rc = afd_be_matmul(s->be, s->h1, x, n, &fw->gate);
    if (!rc)
        rc = afd_be_matmul(s->be, s->h2, x, n, &fw->up);
    if (rc)
        return rc;
    afd_be_swiglu(s->be, s->h1, s->h1, s->h2, (size_t)n * (size_t)fw->gate.rows);
    return afd_be_matmul(s->be, y, s->h1, n, &fw->down);
}

/* Runs expert e on every (token, rank) slot routed to it; outputs land in yk by slot. */
static int run_expert(afd_ffn_scratch *s, const afd_ffn_weights *ew, int e, const float *f,
                      int T, const int32_t *ids) {
    int k = s->top_k, n = 0;
    size_t H = (size_t)s->hidden;
    for (int slot = 0; slot < T * k; slot++)
        if (ids[slot] == e)
            s->rows[n++] = slot;
    if (n == 0)
        return 0;
    for (int i = 0; i < n; i++)
        memcpy(s->xg + (size_t)i * H, f + (size_t)(s->rows[i] / k) * H, H * sizeof(float));
    int rc = swiglu_mlp(s, ew, s->y, s->xg, n);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        memcpy(s->yk + (size_t)s->rows[i] * H, s->y + (size_t)i * H, H * sizeof(float));
        s->hit[s->rows[i]] = 1;
    }
    return 0;
}

static int moe_forward(afd_ffn_scratch *s, const afd_model_config *cfg,
                       const afd_layer_weights *lw, const afd_shard *sh, bool with_shared,
                       float *out, const float *f, int T, const int32_t *ids, const float *w) {
    int k = cfg->top_k, rc = 0;
    size_t H = (size_t)cfg->hidden;
    /* 1. the shared expert (unweighted; this shard's slice, possibly empty), or zero */
    if (with_shared && lw->shared.gate.rows > 0)
        rc = swiglu_mlp(s, &lw->shared, out, f, T);
    else
        memset(out, 0, (size_t)T * H * sizeof(float));
    /* 2. each routed expert of this shard on the rows routed to it */
    memset(s->hit, 0, (size_t)T * (size_t)k);
    for (int e = sh->expert_begin; e < sh->expert_end && !rc; e++)
        rc = run_expert(s, &lw->experts[e], e, f, T, ids);
    if (rc)
        return rc;
    /* 3. out[t] += w[t][j] * y[t][j], in rank order j */
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            size_t slot = (size_t)t * (size_t)k + (size_t)j;
            if (s->hit[slot])
                afd_be_add_scaled(s->be, out + (size_t)t * H, s->yk + slot * H, &w[slot], 1,
                                  (int)H);
        }
    return 0;
}

int afd_ffn_forward(afd_ffn_scratch *s, const afd_model_config *cfg, const afd_layer_weights *lw,
                    const afd_shard *shard, bool with_shared, float *out, const float *f, int T,
                    const int32_t *ids, const float *w) {
    if (!lw->is_moe) {
        if (with_shared && lw->dense.gate.rows > 0)
            return swiglu_mlp(s, &lw->dense, out, f, T);
        memset(out, 0, (size_t)T * (size_t)cfg->hidden * sizeof(float));
        return 0;
    }
    return moe_forward(s, cfg, lw, shard, with_shared, out, f, T, ids, w);
}
