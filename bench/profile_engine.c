/* profile_engine.c: the attention and FFN sides of one layer on this machine, timed with the
 * engine's own functions on the model's own weights (afd-run's way of loading and driving it).
 *
 * The layer timed is the first MoE layer (the pipeline's pace; dense layers are cheaper), or
 * layer 0 of a model without one. Attention samples time afd_attn_layer + afd_ffn_prepare
 * (projections, MFA attention over the paged KV cache, router, FP8 quantisation) for one decode
 * token of each of `batch` sequences whose cache holds `context` positions of that layer,
 * written through the backend's kv_store (synthetic values; attention cost does not depend on
 * them). FFN samples time afd_ffn_forward on inputs and routing captured from a prefill of
 * PREFILL_LEN-token sequences of random token ids through the real layers below, so the
 * router's real imbalance is in the times; a `tokens` batch takes rows spread evenly over all
 * the prefill's sequences and positions. Each grid is timed in rounds (profile_time.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/profile_impl.h"
#include "common/backend/backend.h"
#include "common/base/alloc.h"
#include "common/base/err.h"
#include "common/layers/engine.h"
#include "common/layers/sampling.h"
#include "common/model/weights.h"
#include "proto/wire.h"

#define PREFILL_LEN 64 /* tokens per prefill sequence (the FFN routing capture) */
#define FILL_CHUNK 1024 /* K/V rows per kv_store call when filling the cache */

struct prof_engine {
    const prof_opts *o;
    afd_weights w, wffn; /* wffn: the FFN shard (--shards > 1) */
    bool have_w, have_wffn, have_eng, have_rs;
    st_set *set;
    afd_backend *be;
    afd_engine eng;
    afd_runstate rs;
    afd_shard shard;
    const afd_weights *fw; /* &w or &wffn */
    int layer, max_b, max_c, max_n, n_seqs;
    afd_kv_seq *seqs;
    afd_kv_seq **seq_ptrs;
    int32_t *tok, *seq, *pos; /* [max(max_b, max_n)] batch arrays */
    float *f_all, *wts_all;   /* the prefill's FFN inputs and routing, [max_n] rows */
    int32_t *ids_all;
    float *f, *wts, *x_saved; /* the rows of the current point */
    int32_t *ids;
    int cur_n;
    float *logits;
    void *sample_scratch;
    uint64_t rng;
};

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static long list_max(const prof_list *l) {
    long m = 0;
    for (int i = 0; i < l->n; i++)
        m = l->v[i] > m ? l->v[i] : m;
    return m;
}

static long list_min(const prof_list *l) {
    long m = l->v[0];
    for (int i = 1; i < l->n; i++)
        m = l->v[i] < m ? l->v[i] : m;
    return m;
}

/* ---- open ---- */

static int pick_layer(const afd_model_config *c, bool *moe) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->is_moe[l]) {
            *moe = true;
            return l;
        }
    *moe = false;
    return 0;
}

static int load_weights(prof_engine *pe) {
    const prof_opts *o = pe->o;
    afd_err err = {0};
    int rc = afd_model_open(o->model, AFD_PART_ALL, NULL, &pe->w, &pe->set, &err);
    if (rc) {
        fprintf(stderr, "afd-bench profile: --model %s: %s\n", o->model, err.msg);
        return rc;
    }
    pe->have_w = true;
    pe->fw = &pe->w;
    pe->shard = afd_shard_full(&pe->w.cfg);
    if (o->shards <= 1)
        return 0;
    if ((rc = afd_shard_group(&pe->w.cfg, 0, o->shards, 0, 1, &pe->shard, &err)) ||
        (rc = afd_weights_load(pe->set, &pe->w.cfg, AFD_PART_FFN, &pe->shard, &pe->wffn, &err))) {
        fprintf(stderr, "afd-bench profile: --shards %d: %s\n", o->shards, err.msg);
        return rc;
    }
    pe->have_wffn = true;
    pe->fw = &pe->wffn;
    return 0;
}

static afd_dtype kv_dtype_of(const char *s) {
    return strcmp(s, "bf16") == 0  ? AFD_DT_BF16
           : strcmp(s, "fp8") == 0 ? AFD_DT_F8_E4M3
           : strcmp(s, "f32") == 0 ? AFD_DT_F32
                                   : AFD_DT_INVALID;
}

static int blocks_for(int positions, int bs) { return (positions + bs - 1) / bs; }

static int open_engine(prof_engine *pe) {
    afd_engine_opts eo;
    afd_engine_opts_default(&eo);
    eo.kv_dtype = kv_dtype_of(pe->o->kv_dtype);
    int bs = eo.block_size;
    int n_pre = (pe->max_n + PREFILL_LEN - 1) / PREFILL_LEN;
    int64_t attn_blocks = (int64_t)pe->max_b * blocks_for(pe->max_c + 1, bs);
    int64_t pre_blocks = (int64_t)n_pre * blocks_for(PREFILL_LEN, bs);
    int64_t blocks = (attn_blocks > pre_blocks ? attn_blocks : pre_blocks) + 1;
    if (blocks > (1 << 24)) {
        fprintf(stderr, "afd-bench profile: --batches %d x --contexts %d need %lld KV blocks; "
                        "at most %d\n", pe->max_b, pe->max_c, (long long)blocks, 1 << 24);
        return -EINVAL;
    }
    eo.kv_blocks = (int)blocks;
    afd_err err = {0};
    int rc = afd_engine_init(&pe->eng, pe->be, &pe->w, &eo, &err);
    if (rc) {
        fprintf(stderr, "afd-bench profile: engine: %s\n", err.msg);
        return rc;
    }
    pe->have_eng = true;
    pe->n_seqs = pe->max_b > n_pre ? pe->max_b : n_pre;
    int max_tok = pe->max_b > pe->max_n ? pe->max_b : pe->max_n;
    if ((rc = afd_runstate_init(&pe->rs, &pe->eng, max_tok, pe->n_seqs))) {
        fprintf(stderr, "afd-bench profile: scratch for %d tokens: %s\n", max_tok,
                afd_strerror(rc));
        return rc;
    }
    pe->have_rs = true;
    return 0;
}

static int alloc_buffers(prof_engine *pe) {
    const afd_model_config *c = &pe->w.cfg;
    size_t H = (size_t)c->hidden, K = (size_t)(c->top_k > 0 ? c->top_k : 1);
    size_t N = (size_t)pe->max_n, B = (size_t)pe->max_b, T = N > B ? N : B;
    pe->seqs = xcalloc((size_t)pe->n_seqs, sizeof *pe->seqs);
    pe->seq_ptrs = xcalloc((size_t)pe->n_seqs, sizeof *pe->seq_ptrs);
    for (int i = 0; i < pe->n_seqs; i++) {
        kv_seq_init(&pe->seqs[i]);
        pe->seq_ptrs[i] = &pe->seqs[i];
    }
    pe->tok = xcalloc(T, 4), pe->seq = xcalloc(T, 4), pe->pos = xcalloc(T, 4);
    pe->f_all = afd_be_alloc(pe->be, N * H * 4), pe->f = afd_be_alloc(pe->be, N * H * 4);
    pe->ids_all = afd_be_alloc(pe->be, N * K * 4), pe->ids = afd_be_alloc(pe->be, N * K * 4);
    pe->wts_all = afd_be_alloc(pe->be, N * K * 4), pe->wts = afd_be_alloc(pe->be, N * K * 4);
    pe->x_saved = afd_be_alloc(pe->be, B * H * 4);
    pe->logits = afd_be_alloc(pe->be, B * (size_t)c->vocab * 4);
    pe->sample_scratch = afd_try_alloc(afd_sample_scratch_size(c->vocab));
    if (!pe->f_all || !pe->f || !pe->ids_all || !pe->ids || !pe->wts_all || !pe->wts ||
        !pe->x_saved || !pe->logits || !pe->sample_scratch) {
        fprintf(stderr, "afd-bench profile: out of memory for %zu tokens x hidden %zu\n", T, H);
        return -ENOMEM;
    }
    return 0;
}

/* Checks the option lists against the model: contexts below max_position_embedding. */
static int check_sizes(prof_engine *pe) {
    const afd_model_config *c = &pe->w.cfg;
    if (pe->max_c + 1 > c->max_pos) {
        fprintf(stderr, "afd-bench profile: --contexts %d: the decode token at that position "
                        "needs max_position_embedding > %d, the model has %d\n",
                pe->max_c, pe->max_c, c->max_pos);
        return -EINVAL;
    }
    return 0;
}

/* A2F / F2A bytes per token of a MoE layer, from the wire protocol's own sizes (proto/wire.h)
 * at 1024 tokens per frame, header included. */
static void wire_bytes(prof_engine *pe, prof_result *r) {
    const afd_model_config *c = &pe->w.cfg;
    int g = pe->eng.opts.fp8_group;
    wire_dims d = {.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                   .n_experts = (uint32_t)c->n_experts, .n_layers = (uint32_t)c->n_layers,
                   .fp8_group = g == c->hidden ? 0u : (uint32_t)g, .a2f_dtype = WIRE_DT_E4M3,
                   .f2a_dtype = WIRE_DT_BF16};
    const uint32_t n = 1024;
    size_t a2f = wire_a2f_size(&d, n, r->layer_moe && c->top_k > 0);
    size_t f2a = wire_f2a_size(&d, n, false);
    r->a2f_bytes_per_token = (double)(a2f + WIRE_HDR_SIZE) / n;
    r->f2a_bytes_per_token = (double)(f2a + WIRE_HDR_SIZE) / n;
}

static void fill_result(prof_engine *pe, prof_result *r) {
    const afd_model_config *c = &pe->w.cfg;
    const afd_kv_layout *kl = &pe->eng.kv.layout;
    r->layer = pe->layer;
    r->n_layers = c->n_layers, r->hidden = c->hidden;
    r->top_k = c->top_k, r->n_experts = c->n_experts;
    r->kv_dtype = pe->o->kv_dtype;
    r->block_size = kl->block_size;
    r->kv_bytes_per_token = kl->block_bytes / (size_t)kl->block_size;
    r->kv_capacity_tokens = (long)(pe->o->kv_mem / kl->block_bytes) * kl->block_size;
    r->shards = pe->o->shards;
    snprintf(r->backend, sizeof r->backend, "%s", afd_be_describe(pe->be));
    wire_bytes(pe, r);
}

int prof_engine_open(const prof_opts *o, prof_engine **out, prof_result *r) {
    prof_engine *pe = xcalloc(1, sizeof *pe);
    *out = pe;
    pe->o = o;
    pe->rng = 0x2545f4914f6cdd1dull;
    pe->max_b = (int)list_max(&o->batches), pe->max_c = (int)list_max(&o->contexts);
    pe->max_n = (int)list_max(&o->tokens);
    int rc = load_weights(pe);
    if (rc)
        return rc;
    pe->layer = pick_layer(&pe->w.cfg, &r->layer_moe);
    afd_backend_opts bo = {"cpu", o->isa, o->threads};
    if ((rc = afd_backend_open(&bo, &pe->be))) {
        fprintf(stderr, "afd-bench profile: cpu backend (--isa %s): %s\n", o->isa,
                afd_strerror(rc));
        return rc;
    }
    if ((rc = check_sizes(pe)) || (rc = open_engine(pe)) || (rc = alloc_buffers(pe)))
        return rc;
    fill_result(pe, r);
    return 0;
}

void prof_engine_free(prof_engine *pe) {
    if (!pe)
        return;
    for (int i = 0; pe->seqs && i < pe->n_seqs; i++)
        kv_seq_release(&pe->eng.kv, &pe->seqs[i]);
    float *bufs[] = {pe->f_all, pe->f, pe->wts_all, pe->wts, pe->x_saved, pe->logits};
    for (size_t i = 0; pe->be && i < sizeof bufs / sizeof bufs[0]; i++)
        afd_be_release(pe->be, bufs[i]);
    if (pe->be) {
        afd_be_release(pe->be, pe->ids_all);
        afd_be_release(pe->be, pe->ids);
    }
    if (pe->have_rs)
        afd_runstate_free(&pe->rs, &pe->eng);
    if (pe->have_eng)
        afd_engine_free(&pe->eng);
    afd_backend_free(pe->be);
    if (pe->have_wffn)
        afd_weights_free(&pe->wffn);
    if (pe->have_w)
        afd_weights_free(&pe->w);
    st_set_free(pe->set);
    free(pe->seqs), free(pe->seq_ptrs), free(pe->tok), free(pe->seq), free(pe->pos);
    free(pe->sample_scratch);
    free(pe);
}

/* ---- FFN ---- */

static void release_all(prof_engine *pe) {
    for (int i = 0; i < pe->n_seqs; i++)
        kv_seq_release(&pe->eng.kv, &pe->seqs[i]);
}

/* Runs max_n prefill tokens through layers [0, layer) and the attention side of `layer`;
 * keeps the layer's FFN inputs and routing. */
static int capture_routing(prof_engine *pe) {
    const afd_model_config *c = &pe->w.cfg;
    int n = pe->max_n, n_seq = (n + PREFILL_LEN - 1) / PREFILL_LEN, rc = 0;
    for (int s = 0; s < n_seq && !rc; s++)
        rc = kv_seq_reserve(&pe->eng.kv, &pe->seqs[s], PREFILL_LEN);
    for (int i = 0; i < n; i++) {
        pe->tok[i] = (int32_t)(rng_next(&pe->rng) % (uint64_t)c->vocab);
        pe->seq[i] = i / PREFILL_LEN, pe->pos[i] = i % PREFILL_LEN;
    }
    afd_fwd_batch b = {.n_tok = n, .tokens = pe->tok, .seq = pe->seq, .pos = pe->pos,
                       .n_seq = n_seq, .seqs = pe->seq_ptrs};
    if (!rc)
        rc = afd_step_begin(&pe->eng, &pe->rs, &b);
    for (int l = 0; l < pe->layer && !rc; l++)
        if (!(rc = afd_attn_layer(&pe->eng, &pe->rs, l)) &&
            !(rc = afd_ffn_prepare(&pe->eng, &pe->rs, l)))
            rc = afd_ffn_local(&pe->eng, &pe->rs, l);
    if (!rc && !(rc = afd_attn_layer(&pe->eng, &pe->rs, pe->layer)))
        rc = afd_ffn_prepare(&pe->eng, &pe->rs, pe->layer);
    release_all(pe);
    if (rc) {
        fprintf(stderr, "afd-bench profile: prefill of %d tokens: %s\n", n, afd_strerror(rc));
        return rc;
    }
    size_t H = (size_t)c->hidden, K = (size_t)(c->top_k > 0 ? c->top_k : 1);
    memcpy(pe->f_all, pe->rs.f, (size_t)n * H * 4);
    memcpy(pe->ids_all, pe->rs.ids, (size_t)n * K * 4);
    memcpy(pe->wts_all, pe->rs.wts, (size_t)n * K * 4);
    return 0;
}

/* The busiest expert's routed slots over the even share, on the whole prefill. */
static double route_imbalance(const prof_engine *pe) {
    const afd_model_config *c = &pe->w.cfg;
    if (c->n_experts < 1 || c->top_k < 1 || !pe->w.layers[pe->layer].is_moe)
        return 1.0;
    int *cnt = xcalloc((size_t)c->n_experts, sizeof *cnt), max = 0;
    for (int i = 0; i < pe->max_n * c->top_k; i++)
        if (pe->ids_all[i] >= 0 && pe->ids_all[i] < c->n_experts)
            cnt[pe->ids_all[i]]++;
    for (int e = 0; e < c->n_experts; e++)
        max = cnt[e] > max ? cnt[e] : max;
    free(cnt);
    return max / ((double)pe->max_n * c->top_k / c->n_experts);
}

/* The rows of an n-token batch: spread evenly over the prefill's tokens. */
static void gather_rows(prof_engine *pe, int n) {
    const afd_model_config *c = &pe->w.cfg;
    size_t H = (size_t)c->hidden, K = (size_t)(c->top_k > 0 ? c->top_k : 1);
    for (int j = 0; j < n; j++) {
        size_t i = (size_t)j * (size_t)pe->max_n / (size_t)n;
        memcpy(pe->f + j * H, pe->f_all + i * H, H * 4);
        memcpy(pe->ids + j * K, pe->ids_all + i * K, K * 4);
        memcpy(pe->wts + j * K, pe->wts_all + i * K, K * 4);
    }
    pe->cur_n = n;
}

static int run_ffn(void *arg) {
    prof_engine *pe = arg;
    return afd_ffn_forward(&pe->rs.ffn, &pe->w.cfg, &pe->fw->layers[pe->layer], &pe->shard, true,
                           pe->rs.ffo, pe->f, pe->cur_n, pe->ids, pe->wts);
}

static void print_sample(const char *what, const prof_sample *s) {
    printf("  %s %10.1f us  (min %.1f, max %.1f, %d runs)\n", what, s->us, s->us_min, s->us_max,
           s->reps);
}

/* Finishes (and frees the runs of) every sample, measured or not. */
static void finish_all(prof_sample *s, int n) {
    for (int i = 0; i < n; i++)
        prof_time_finish(&s[i]);
}

/* One round over the token counts. */
static int ffn_round(prof_engine *pe, prof_timer *t, prof_result *r) {
    for (int i = 0; i < r->n_ffn; i++) {
        int n = (int)r->ffn[i].x0, rc;
        gather_rows(pe, n);
        if ((rc = prof_time_round(t, run_ffn, NULL, pe, &r->ffn[i], pe->o->rounds))) {
            fprintf(stderr, "afd-bench profile: ffn of %d tokens: %s\n", n, afd_strerror(rc));
            return rc;
        }
    }
    return 0;
}

int prof_measure_ffn(prof_engine *pe, prof_timer *t, prof_result *r) {
    int rc = capture_routing(pe);
    if (rc)
        return rc;
    r->route_imbalance = route_imbalance(pe);
    printf("ffn: layer %d (%s), shard 0 of %d (experts [%d, %d)), routing from a prefill of "
           "%d tokens, busiest expert %.2fx the even share\n", pe->layer,
           r->layer_moe ? "MoE" : "dense", pe->o->shards, pe->shard.expert_begin,
           pe->shard.expert_end, pe->max_n, r->route_imbalance);
    r->n_ffn = pe->o->tokens.n;
    for (int i = 0; i < r->n_ffn; i++)
        r->ffn[i] = (prof_sample){.x0 = (double)pe->o->tokens.v[i]};
    for (int k = 0; k < pe->o->rounds && !rc; k++)
        rc = ffn_round(pe, t, r);
    finish_all(r->ffn, r->n_ffn);
    for (int i = 0; i < r->n_ffn && !rc; i++) {
        char what[64];
        snprintf(what, sizeof what, "ffn  tokens %6.0f                ", r->ffn[i].x0);
        print_sample(what, &r->ffn[i]);
    }
    return rc;
}

/* ---- attention ---- */

/* Every one of max_b sequences gets max_c + 1 positions; the timed layer's K/V of positions
 * [0, max_c) are written with the backend's kv_store. */
static int fill_kv(prof_engine *pe) {
    const afd_model_config *c = &pe->w.cfg;
    size_t KD = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    int rc = 0;
    for (int s = 0; s < pe->max_b && !rc; s++)
        rc = kv_seq_reserve(&pe->eng.kv, &pe->seqs[s], pe->max_c + 1);
    if (rc) {
        fprintf(stderr, "afd-bench profile: kv cache for %d x %d positions: %s\n", pe->max_b,
                pe->max_c + 1, afd_strerror(rc));
        return rc;
    }
    float *k = afd_be_alloc(pe->be, FILL_CHUNK * KD * 4), *v = afd_be_alloc(pe->be, FILL_CHUNK * KD * 4);
    int32_t *slots = afd_be_alloc(pe->be, FILL_CHUNK * 4);
    if (!k || !v || !slots)
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < FILL_CHUNK * KD; i++) {
        k[i] = (float)(rng_next(&pe->rng) >> 40) / (float)(1 << 23) - 1.0f;
        v[i] = (float)(rng_next(&pe->rng) >> 40) / (float)(1 << 23) - 1.0f;
    }
    long total = (long)pe->max_b * pe->max_c;
    for (long p0 = 0; !rc && p0 < total; p0 += FILL_CHUNK) {
        int n = total - p0 < FILL_CHUNK ? (int)(total - p0) : FILL_CHUNK;
        for (int j = 0; j < n; j++) {
            long p = p0 + j;
            slots[j] = kv_seq_slot(&pe->eng.kv, &pe->seqs[p / pe->max_c], (int)(p % pe->max_c));
        }
        afd_be_kv_store(pe->be, &pe->eng.kv.layout, pe->eng.kv.base, pe->layer, n, slots, k, v);
    }
    afd_be_release(pe->be, k), afd_be_release(pe->be, v), afd_be_release(pe->be, slots);
    return rc;
}

/* Loads a decode batch: one token of each of the first b sequences at position `pos`. */
static int begin_decode(prof_engine *pe, int b, int pos) {
    const afd_model_config *c = &pe->w.cfg;
    for (int i = 0; i < b; i++) {
        pe->tok[i] = (int32_t)(rng_next(&pe->rng) % (uint64_t)c->vocab);
        pe->seq[i] = i, pe->pos[i] = pos;
    }
    afd_fwd_batch fb = {.n_tok = b, .tokens = pe->tok, .seq = pe->seq, .pos = pe->pos,
                        .n_seq = b, .seqs = pe->seq_ptrs};
    int rc = afd_step_begin(&pe->eng, &pe->rs, &fb);
    if (!rc)
        memcpy(pe->x_saved, pe->rs.x, (size_t)b * (size_t)c->hidden * 4);
    pe->cur_n = b;
    return rc;
}

static void restore_x(void *arg) {
    prof_engine *pe = arg;
    memcpy(pe->rs.x, pe->x_saved, (size_t)pe->cur_n * (size_t)pe->w.cfg.hidden * 4);
}

static int run_attention(void *arg) {
    prof_engine *pe = arg;
    int rc = afd_attn_layer(&pe->eng, &pe->rs, pe->layer);
    return rc ? rc : afd_ffn_prepare(&pe->eng, &pe->rs, pe->layer);
}

static int attention_point(prof_engine *pe, prof_timer *t, prof_sample *s) {
    int b = (int)s->x0, ctx = (int)s->x1;
    int rc = begin_decode(pe, b, ctx);
    if (!rc)
        rc = prof_time_round(t, run_attention, restore_x, pe, s, pe->o->rounds);
    if (rc)
        fprintf(stderr, "afd-bench profile: attention, batch %d at context %d: %s\n", b, ctx,
                afd_strerror(rc));
    return rc;
}

int prof_measure_attention(prof_engine *pe, prof_timer *t, prof_result *r) {
    int rc = fill_kv(pe);
    if (rc)
        return rc;
    printf("attention: layer %d, afd_attn_layer + afd_ffn_prepare, %s KV cache filled to each "
           "context\n", pe->layer, pe->o->kv_dtype);
    r->n_attn = 0;
    for (int j = 0; j < pe->o->contexts.n; j++)
        for (int i = 0; i < pe->o->batches.n; i++)
            r->attn[r->n_attn++] = (prof_sample){.x0 = (double)pe->o->batches.v[i],
                                                 .x1 = (double)pe->o->contexts.v[j]};
    for (int k = 0; k < pe->o->rounds && !rc; k++)
        for (int i = 0; i < r->n_attn && !rc; i++)
            rc = attention_point(pe, t, &r->attn[i]);
    finish_all(r->attn, r->n_attn);
    for (int i = 0; i < r->n_attn && !rc; i++) {
        char what[64];
        snprintf(what, sizeof what, "attn batch %5.0f context %6.0f   ", r->attn[i].x0,
                 r->attn[i].x1);
        print_sample(what, &r->attn[i]);
    }
    return rc;
}

/* ---- step overhead ---- */

static int run_overhead(void *arg) {
    prof_engine *pe = arg;
    const afd_model_config *c = &pe->w.cfg;
    afd_fwd_batch fb = {.n_tok = pe->cur_n, .tokens = pe->tok, .seq = pe->seq, .pos = pe->pos,
                        .n_seq = pe->cur_n, .seqs = pe->seq_ptrs};
    int rc = afd_step_begin(&pe->eng, &pe->rs, &fb);
    if (!rc)
        rc = afd_step_logits(&pe->eng, &pe->rs, pe->logits);
    afd_sampling sp;
    afd_sampling_default(&sp);
    for (int i = 0; !rc && i < pe->cur_n; i++) {
        afd_rng rng = {{1, 2, 3, 4}};
        afd_sample smp;
        afd_sample_token(pe->logits + (size_t)i * (size_t)c->vocab, c->vocab, &sp, &rng,
                         pe->sample_scratch, &smp);
    }
    return rc;
}

int prof_measure_overhead(prof_engine *pe, prof_timer *t, prof_result *r) {
    int b = pe->max_b, rc = begin_decode(pe, b, (int)list_min(&pe->o->contexts));
    prof_sample s = {0};
    if (!rc)
        rc = prof_time(t, run_overhead, NULL, pe, &s);
    if (rc) {
        fprintf(stderr, "afd-bench profile: step overhead at batch %d: %s\n", b, afd_strerror(rc));
        return rc;
    }
    r->step_overhead_us = s.us;
    r->overhead_batch = b;
    printf("step overhead: embedding + final norm + lm_head + greedy sampling, batch %d: "
           "%.1f us\n", b, s.us);
    return 0;
}
