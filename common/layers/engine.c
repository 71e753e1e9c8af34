#include "common/layers/engine.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/log.h"
#include "common/base/numfmt.h"

void afd_engine_opts_default(afd_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_dtype = AFD_DT_BF16;
    o->block_size = 16;
    o->kv_blocks = 0;
    o->exact = false;
    o->fp8_group = 0;
    o->f2a_dtype = AFD_DT_BF16;
}

int afd_engine_init(afd_engine *e, afd_backend *be, const afd_weights *w,
                    const afd_engine_opts *o, afd_err *err) {
    memset(e, 0, sizeof *e);
    const afd_model_config *cfg = &w->cfg;
    if (o->kv_dtype != AFD_DT_BF16 && o->kv_dtype != AFD_DT_F8_E4M3 && o->kv_dtype != AFD_DT_F32)
        return afd_errf(err, -EINVAL, "kv dtype %s not supported (BF16, F8_E4M3, F32)",
                        afd_dtype_name(o->kv_dtype));
    if (o->block_size < 1 || o->block_size > 1024)
        return afd_errf(err, -EINVAL, "kv block size %d outside [1, 1024]", o->block_size);
    int group = o->fp8_group ? o->fp8_group : cfg->hidden;
    if (group < 1 || cfg->hidden % group != 0)
        return afd_errf(err, -EINVAL, "fp8 group %d does not divide hidden %d", group,
                        cfg->hidden);
    if (o->f2a_dtype != AFD_DT_BF16 && o->f2a_dtype != AFD_DT_F8_E4M3 &&
        o->f2a_dtype != AFD_DT_F32)
        return afd_errf(err, -EINVAL, "f2a dtype %s not supported (BF16, F8_E4M3, F32)",
                        afd_dtype_name(o->f2a_dtype));
    e->be = be, e->w = w, e->cfg = cfg, e->opts = *o;
    e->opts.fp8_group = group;
    if (o->exact)
        e->opts.f2a_dtype = AFD_DT_F32;
    afd_kv_layout layout;
    afd_kv_layout_init(&layout, o->kv_dtype, o->block_size, cfg->n_layers, cfg->n_kv_heads,
                       cfg->head_dim);
    int blocks = o->kv_blocks > 0 ? o->kv_blocks : 256;
    int rc = kv_pool_init(&e->kv, be, &layout, blocks);
    if (rc)
        return afd_errf(err, rc, "kv cache of %d blocks x %zu bytes: %s", blocks,
                        layout.block_bytes, afd_strerror(rc));
    return 0;
}

void afd_engine_free(afd_engine *e) {
    if (!e)
        return;
    kv_pool_free(&e->kv);
    memset(e, 0, sizeof *e);
}

/* Every runstate array, with its size in elements; one table drives alloc and free. */
#define RS_ARRAYS(X)                                                                               \
    X(x, float, T *H)                                                                              \
    X(a, float, T *H)                                                                              \
    X(qlr, float, T *(size_t)c->share_q_dim)                                                       \
    X(q, float, T *QD)                                                                             \
    X(k, float, T *KD)                                                                             \
    X(v, float, T *KD)                                                                             \
    X(att, float, T *QD)                                                                           \
    X(f, float, T *H)                                                                              \
    X(fq, uint8_t, T *H)                                                                           \
    X(fscale, float, T *H)                                                                         \
    X(glog, float, T *(size_t)(c->n_experts > 0 ? c->n_experts : 1))                              \
    X(ids, int32_t, T *K)                                                                          \
    X(wts, float, T *K)                                                                            \
    X(ffo, float, T *H)                                                                            \
    X(tokens, int32_t, T)                                                                          \
    X(pos, int32_t, T)                                                                             \
    X(slots, int32_t, T)                                                                           \
    X(tok_seq, int32_t, T)                                                                         \
    X(tok_ctx, int32_t, T)                                                                         \
    X(want, int32_t, T)                                                                            \
    X(seq_blocks, int32_t, (size_t)max_seq *(size_t)rs->max_blocks)

int afd_runstate_init(afd_runstate *rs, const afd_engine *e, int max_tok, int max_seq) {
    memset(rs, 0, sizeof *rs);
    const afd_model_config *c = e->cfg;
    size_t T = (size_t)max_tok, H = (size_t)c->hidden;
    size_t QD = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t KD = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t K = (size_t)(c->top_k > 0 ? c->top_k : 1);
    rs->max_tok = max_tok, rs->max_seq = max_seq;
    rs->max_blocks = kv_blocks_for(&e->kv, c->max_pos);
    if (rs->max_blocks > e->kv.n_blocks)
        rs->max_blocks = e->kv.n_blocks;
    int failed = 0;
#define RS_ALLOC(name, type, count)                                                                \
    rs->name = afd_be_alloc(e->be, (count) * sizeof(type));                                        \
    failed |= rs->name == NULL;
    RS_ARRAYS(RS_ALLOC)
#undef RS_ALLOC
    if (failed || afd_ffn_scratch_init(&rs->ffn, e->be, c, max_tok) != 0) {
        afd_runstate_free(rs, e);
        return -ENOMEM;
    }
    return 0;
}

void afd_runstate_free(afd_runstate *rs, const afd_engine *e) {
    if (!rs)
        return;
#define RS_FREE(name, type, count) afd_be_release(e->be, rs->name);
    RS_ARRAYS(RS_FREE)
#undef RS_FREE
    afd_ffn_scratch_free(&rs->ffn);
    memset(rs, 0, sizeof *rs);
}

int afd_step_begin(afd_engine *e, afd_runstate *rs, const afd_fwd_batch *b) {
    if (b->n_tok < 1 || b->n_tok > rs->max_tok || b->n_seq < 1 || b->n_seq > rs->max_seq)
        return AFD_E_LIMIT;
    for (int s = 0; s < b->n_seq; s++)
        if (b->seqs[s]->n_blocks > rs->max_blocks)
            return AFD_E_LIMIT;
    rs->n_tok = b->n_tok;
    rs->n_want = 0;
    for (int i = 0; i < b->n_tok; i++) {
        const afd_kv_seq *seq = b->seqs[b->seq[i]];
        rs->tokens[i] = b->tokens[i];
        rs->pos[i] = b->pos[i];
        rs->slots[i] = kv_seq_slot(&e->kv, seq, b->pos[i]);
        rs->tok_seq[i] = b->seq[i];
        rs->tok_ctx[i] = b->pos[i] + 1;
        if (!b->want_logits || b->want_logits[i])
            rs->want[rs->n_want++] = i;
    }
    int mb = 1;
    for (int s = 0; s < b->n_seq; s++)
        if (b->seqs[s]->n_blocks > mb)
            mb = b->seqs[s]->n_blocks;
    for (int s = 0; s < b->n_seq; s++)
        if (b->seqs[s]->n_blocks > 0) /* a sequence with no blocks yet has no table */
            memcpy(rs->seq_blocks + (size_t)s * mb, b->seqs[s]->blocks,
                   (size_t)b->seqs[s]->n_blocks * sizeof(int32_t));
    rs->ab = (afd_attn_batch){.n_tok = b->n_tok, .tok_seq = rs->tok_seq, .tok_ctx = rs->tok_ctx,
                              .n_seq = b->n_seq, .max_blocks = mb, .seq_blocks = rs->seq_blocks};
    return afd_be_embed(e->be, rs->x, &e->w->embed, rs->tokens, b->n_tok);
}

/* MFA: one low-rank shared Q projection, 64 query heads, one K/V head. */
int afd_attn_layer(afd_engine *e, afd_runstate *rs, int layer) {
    const afd_model_config *c = e->cfg;
    const afd_layer_weights *lw = &e->w->layers[layer];
    afd_backend *be = e->be;
    int T = rs->n_tok, H = c->hidden, QD = c->n_heads * c->head_dim;
    int KD = c->n_kv_heads * c->head_dim;
    int rc;
    /* 1. a = RMSNorm(x) */
    afd_be_rmsnorm(be, rs->a, rs->x, lw->input_norm, T, H, c->rms_eps);
    /* 2. q = wq(RMSNorm(q_proj a; inter_norm)); k = k_proj a; v = v_proj a */
    if ((rc = afd_be_matmul(be, rs->qlr, rs->a, T, &lw->q_proj)))
        return rc;
    afd_be_rmsnorm(be, rs->qlr, rs->qlr, lw->inter_norm, T, c->share_q_dim, c->rms_eps);
    if ((rc = afd_be_matmul(be, rs->q, rs->qlr, T, &lw->wq)) ||
        (rc = afd_be_matmul(be, rs->k, rs->a, T, &lw->k_proj)) ||
        (rc = afd_be_matmul(be, rs->v, rs->a, T, &lw->v_proj)))
        return rc;
    /* 3. RoPE (NeoX, all head dims) on q and k; k, v into the cache */
    afd_be_rope(be, rs->q, T, QD, c->n_heads, c->head_dim, rs->pos, c->rope_theta);
    afd_be_rope(be, rs->k, T, KD, c->n_kv_heads, c->head_dim, rs->pos, c->rope_theta);
    afd_be_kv_store(be, &e->kv.layout, e->kv.base, layer, T, rs->slots, rs->k, rs->v);
    /* 4. softmax(q k^T / sqrt(head_dim) + causal) v, all heads sharing the K/V head */
    afd_be_attention(be, rs->att, rs->q, c->n_heads, &e->kv.layout, e->kv.base, layer, &rs->ab,
                     1.0f / sqrtf((float)c->head_dim));
    /* 5. x += o_proj(att) */
    if ((rc = afd_be_matmul(be, rs->a, rs->att, T, &lw->o_proj)))
        return rc;
    afd_be_add_scaled(be, rs->x, rs->a, NULL, T, H);
    return 0;
}

int afd_ffn_prepare(afd_engine *e, afd_runstate *rs, int layer) {
    const afd_model_config *c = e->cfg;
    const afd_layer_weights *lw = &e->w->layers[layer];
    afd_backend *be = e->be;
    int T = rs->n_tok, H = c->hidden, rc;
    /* 1. f = RMSNorm(x; post_attention_layernorm) */
    afd_be_rmsnorm(be, rs->f, rs->x, lw->post_norm, T, H, c->rms_eps);
    /* 2. MoE: router probabilities in fp32 from f, top-k (renormalised only if configured) */
    if (lw->is_moe) {
        if ((rc = afd_be_matmul(be, rs->glog, rs->f, T, &lw->moe_gate)))
            return rc;
        afd_be_topk_softmax(be, rs->ids, rs->wts, rs->glog, T, c->n_experts, c->top_k,
                            c->norm_expert_weight);
    }
    /* 3. the A2F wire format: FP8 e4m3 with per-token (or per-group) scales; the FFN sees
     *    exactly the dequantized values, wherever it runs */
    if (!e->opts.exact) {
        afd_be_quantize_fp8(be, rs->fq, rs->fscale, rs->f, T, H, e->opts.fp8_group);
        afd_be_dequantize_fp8(be, rs->f, rs->fq, rs->fscale, T, H, e->opts.fp8_group);
    }
    return 0;
}

int afd_ffn_local(afd_engine *e, afd_runstate *rs, int layer) {
    afd_shard all = afd_shard_full(e->cfg);
    int rc = afd_ffn_forward(&rs->ffn, e->cfg, &e->w->layers[layer], &all, true, rs->ffo, rs->f,
                             rs->n_tok, rs->ids, rs->wts);
    if (rc)
        return rc;
    afd_f2a_round(e, rs, rs->ffo, rs->n_tok);
    afd_ffn_finish(e, rs);
    return 0;
}

void afd_f2a_round(afd_engine *e, afd_runstate *rs, float *y, int T) {
    size_t n = (size_t)T * (size_t)e->cfg->hidden;
    if (e->opts.f2a_dtype == AFD_DT_BF16) {
        for (size_t i = 0; i < n; i++)
            y[i] = afd_bf16_to_f32(afd_f32_to_bf16(y[i]));
    } else if (e->opts.f2a_dtype == AFD_DT_F8_E4M3) {
        afd_be_quantize_fp8(e->be, rs->fq, rs->fscale, y, T, e->cfg->hidden, e->opts.fp8_group);
        afd_be_dequantize_fp8(e->be, y, rs->fq, rs->fscale, T, e->cfg->hidden,
                              e->opts.fp8_group);
    }
}

void afd_ffn_finish(afd_engine *e, afd_runstate *rs) {
    afd_be_add_scaled(e->be, rs->x, rs->ffo, NULL, rs->n_tok, e->cfg->hidden);
}

int afd_step_logits(afd_engine *e, afd_runstate *rs, float *logits) {
    const afd_model_config *c = e->cfg;
    size_t H = (size_t)c->hidden;
    for (int i = 0; i < rs->n_want; i++)
        memcpy(rs->a + (size_t)i * H, rs->x + (size_t)rs->want[i] * H, H * sizeof(float));
    afd_be_rmsnorm(e->be, rs->a, rs->a, e->w->final_norm, rs->n_want, c->hidden, c->rms_eps);
    return afd_be_matmul(e->be, logits, rs->a, rs->n_want, &e->w->lm_head);
}

static double rms_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0;
}

int afd_engine_forward(afd_engine *e, afd_runstate *rs, const afd_fwd_batch *b, float *logits) {
    int rc = afd_step_begin(e, rs, b);
    for (int l = 0; l < e->cfg->n_layers && !rc; l++) {
        rc = afd_attn_layer(e, rs, l);
        if (!rc)
            rc = afd_ffn_prepare(e, rs, l);
        if (!rc)
            rc = afd_ffn_local(e, rs, l);
        if (!rc && rs->layer_rms)
            rs->layer_rms[l] = rms_of(rs->x, (size_t)rs->n_tok * (size_t)e->cfg->hidden);
    }
    if (!rc && rs->n_want > 0 && logits)
        rc = afd_step_logits(e, rs, logits);
    return rc ? rc : rs->n_want;
}
