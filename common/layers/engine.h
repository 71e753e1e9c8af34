/* engine.h: the Step-3 forward pass, layer by layer, over a batch of tokens.
 *
 * A batch mixes prefill chunks and decode tokens of several sequences: each token has its
 * sequence, its position, and whether its logits are wanted. Per layer:
 *
 *   afd_attn_layer    a = RMSNorm(x); MFA attention over the paged KV cache; x += o_proj(o)
 *   afd_ffn_prepare   f = RMSNorm(x; post); MoE: router softmax top-k on f (fp32);
 *                     unless exact: f -> FP8 e4m3 per token (what the A2F wire carries) -> f
 *   afd_ffn_local     x += FFN(f) with local weights (single process)   [attnd: remote, ffnd]
 *                     unless exact: FFN(f) rounded as the F2A wire carries it (BF16)
 *
 * then afd_step_logits: final RMSNorm and lm_head for the wanted tokens. afd_engine_forward
 * runs the whole sequence of calls; attnd drives the same functions with the FFN done remotely
 * and micro-batches in flight, each with its own afd_runstate.
 *
 * Ownership: the engine borrows the backend and the weights (they outlive it) and owns the KV
 * pool. A runstate owns its scratch, sized once (afd_runstate_init) for max_tok tokens and
 * max_seq sequences; the per-layer functions never allocate or log. One thread at a time.
 */
#ifndef AFD_ENGINE_H
#define AFD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/backend/backend.h"
#include "common/base/err.h"
#include "common/layers/ffn.h"
#include "common/layers/kvcache.h"
#include "common/model/weights.h"

typedef struct afd_engine_opts {
    afd_dtype kv_dtype; /* BF16 (default), F8_E4M3 or F32 */
    int block_size;     /* KV positions per block (16) */
    int kv_blocks;      /* blocks in the pool; 0 = enough for max_seq * max_pos... capped */
    bool exact;         /* no FP8 quantization of the FFN input */
    int fp8_group;      /* FP8 scale group along hidden: 0 = one scale per token */
    afd_dtype f2a_dtype; /* the F2A wire (FFN partial sums back to attention): BF16 (default),
                            F8_E4M3 (scales as fp8_group) or F32; exact forces F32. Local FFN
                            output is rounded the same way, so one-shard AFD matches bitwise. */
} afd_engine_opts;

typedef struct afd_engine {
    afd_backend *be;
    const afd_weights *w;
    const afd_model_config *cfg;
    afd_engine_opts opts;
    afd_kv_pool kv;
} afd_engine;

/* The per-batch scratch. All float/int arrays are backend memory. */
typedef struct afd_runstate {
    int max_tok, max_seq, max_blocks;
    int n_tok;
    float *x;             /* [T, hidden] residual stream */
    float *a;             /* [T, hidden] normed input of attention; logits rows later */
    float *qlr;           /* [T, share_q_dim] */
    float *q;             /* [T, n_heads*head_dim] */
    float *k, *v;         /* [T, n_kv_heads*head_dim] */
    float *att;           /* [T, n_heads*head_dim] attention output */
    float *f;             /* [T, hidden] FFN input (dequantized when not exact) */
    uint8_t *fq;          /* [T, hidden] FP8 FFN input (the A2F payload) */
    float *fscale;        /* [T, hidden/group] its scales */
    float *glog;          /* [T, n_experts] router logits */
    int32_t *ids;         /* [T, top_k] routed experts */
    float *wts;           /* [T, top_k] their weights */
    float *ffo;           /* [T, hidden] FFN output (sum of partials) */
    int32_t *tokens, *pos, *slots, *tok_seq, *tok_ctx; /* [T] */
    int32_t *seq_blocks;  /* [max_seq * max_blocks] */
    int32_t *want;        /* [T] indices of tokens whose logits are wanted */
    int n_want;
    afd_attn_batch ab;
    afd_ffn_scratch ffn;
    double *layer_rms;    /* optional, caller-owned [n_layers]: RMS of x after each layer of
                             the last afd_engine_forward (afd-run --stats); NULL = off */
} afd_runstate;

/* One forward call's batch. seqs[s] must already cover pos+1 for each of its tokens
 * (kv_seq_reserve) and tokens/positions be validated (token < vocab, pos < max_pos). */
typedef struct afd_fwd_batch {
    int n_tok;
    const int32_t *tokens;      /* [n_tok] */
    const int32_t *seq;         /* [n_tok] index into seqs */
    const int32_t *pos;         /* [n_tok] */
    int n_seq;
    afd_kv_seq *const *seqs;    /* [n_seq] */
    const uint8_t *want_logits; /* [n_tok], NULL = all */
} afd_fwd_batch;

void afd_engine_opts_default(afd_engine_opts *o);
/* 0, or a negative code with *err (bad options, -ENOMEM for the KV pool). */
int afd_engine_init(afd_engine *e, afd_backend *be, const afd_weights *w,
                    const afd_engine_opts *o, afd_err *err);
void afd_engine_free(afd_engine *e);

int afd_runstate_init(afd_runstate *rs, const afd_engine *e, int max_tok, int max_seq);
void afd_runstate_free(afd_runstate *rs, const afd_engine *e);

/* Loads a batch into rs: embeddings into x, positions, KV slots, attention tables. */
int afd_step_begin(afd_engine *e, afd_runstate *rs, const afd_fwd_batch *b);
int afd_attn_layer(afd_engine *e, afd_runstate *rs, int layer);
int afd_ffn_prepare(afd_engine *e, afd_runstate *rs, int layer);
int afd_ffn_local(afd_engine *e, afd_runstate *rs, int layer);
/* Rounds y[T, hidden] in place as the F2A wire carries it (e->opts.f2a_dtype; F32: as is),
 * using rs->fq / rs->fscale as scratch for FP8. */
void afd_f2a_round(afd_engine *e, afd_runstate *rs, float *y, int T);
/* x += ffo (the FFN output, local or summed from shards). */
void afd_ffn_finish(afd_engine *e, afd_runstate *rs);
/* logits[n_want, vocab] for the wanted tokens, in batch order. */
int afd_step_logits(afd_engine *e, afd_runstate *rs, float *logits);

/* The whole pass in one process. Returns the number of logits rows written, or negative. */
int afd_engine_forward(afd_engine *e, afd_runstate *rs, const afd_fwd_batch *b, float *logits);

#endif
