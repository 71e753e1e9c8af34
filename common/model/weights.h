/* weights.h: the model's weights as views into the checkpoint, llama2.c style.
 *
 * afd_weights_load() opens nothing itself: it takes an open st_set and a config, looks up each
 * tensor a part needs (attention side, FFN shard, or both), checks its dtype (F32, BF16, F16,
 * or F8_E4M3 with its block scales; norms F32/BF16/F16) and exact shape against the config,
 * pairs block-FP8 weights with their `weight_scale_inv`, and fills the struct below with views.
 * A missing tensor, a wrong shape or an unsupported dtype is refused with a message naming the
 * tensor (docs/checkpoint.md has the table of names and shapes). Vision tensors and anything
 * not needed are ignored; a part never looks up the other part's tensors. Names are Step-3's
 * (model.layers.{i}...., lm_head.weight); a checkpoint whose names all carry the prefix
 * "language_model." is detected, and AFD_TENSOR_PREFIX=<p> in the environment forces one.
 *
 * When the views are built, every page they cover is read once (madvise WILLNEED + one byte
 * per 4 KiB), so a daemon is ready when load returns; progress goes through progress.h (quiet
 * under 256 MiB). Experts outside the shard's range are never read.
 *
 * Ownership: views borrow the st_set's mmap, which must outlive the weights. Small tensors
 * that need converting (norm weights to fp32, BF16 or unaligned F32 block scales to fp32) are
 * copied into buffers the weights own; afd_weights_free() releases them. Thread-safe for
 * readers; load is single-threaded.
 *
 * Block-FP8 views: `scale` points at the block scales of the parent matrix (for a stacked
 * expert tensor [E, I, H], of expert e: scale tensor [E, ceil(I/128), ceil(H/128)] offset by
 * e * ceil(I/128) * ceil(H/128)); a TP slice keeps that pointer and moves row0/col0 (tensor.h).
 *
 * Sharding (ffnd): an afd_shard selects experts [expert_begin, expert_end), a slice
 * [tp_rank/tp_size] of every routed expert's intermediate dimension and a slice
 * [dense_rank/dense_size] of the shared expert's and dense FFN's (by default the TP slice):
 * gate/up rows [i0, i1), down columns [i0, i1) (afd_shard_inter, afd_shard_dense_inter). With
 * block-FP8 weights i0 and i1 must fall on 128-element block boundaries (or i1 at the end of
 * the dimension), else the load is refused (AFD_E_UNSUPPORTED); an empty slice is -EINVAL.
 */
#ifndef AFD_WEIGHTS_H
#define AFD_WEIGHTS_H

#include <stdbool.h>

#include "common/base/err.h"
#include "common/model/config.h"
#include "common/model/safetensors.h"
#include "common/model/tensor.h"

enum {
    AFD_PART_ATTN = 1, /* embedding, attention, norms, gate (router), final norm, lm_head */
    AFD_PART_FFN = 2,  /* dense FFN, routed experts (of the shard), shared expert */
    AFD_PART_ALL = 3,
};

typedef struct afd_shard {
    int expert_begin, expert_end; /* routed experts held: [begin, end) */
    int tp_rank, tp_size;         /* slice of every routed expert's intermediate dimension */
    int dense_rank, dense_size;   /* slice of the shared expert and the dense FFN; dense_size 0
                                     = the TP slice. Unlike TP slices, a dense slice may be
                                     empty: that shard then adds nothing for them. */
} afd_shard;

/* The whole model in one shard. */
afd_shard afd_shard_full(const afd_model_config *cfg);
/* Shard (ep_rank, tp_rank) of an FFN group of ep_size x tp_size shards: experts
 * [E*ep_rank/ep_size, E*(ep_rank+1)/ep_size), TP slice tp_rank/tp_size of every expert, and
 * slice ep_rank*tp_size + tp_rank of ep_size*tp_size of the shared expert and dense FFN (so
 * EP shards share that work too). 0, or -EINVAL with *err for out-of-range ranks/sizes. */
int afd_shard_group(const afd_model_config *cfg, int ep_rank, int ep_size, int tp_rank,
                    int tp_size, afd_shard *out, afd_err *err);
/* The dense/shared counterpart of afd_shard_inter (same split rule, dense_rank/dense_size). */
void afd_shard_dense_inter(const afd_shard *sh, int inter, int *i0, int *i1);
/* Intermediate range [*i0, *i1) of a dimension of size `inter` for this shard's TP slice
 * (sh NULL = the whole range). The split is in whole 128-element blocks when inter is a
 * multiple of 128 (rank r of n holds blocks [nb*r/n, nb*(r+1)/n)), else in elements
 * [inter*r/n, inter*(r+1)/n). Every process computes the same split. */
void afd_shard_inter(const afd_shard *sh, int inter, int *i0, int *i1);

typedef struct afd_ffn_weights {
    afd_tensor gate, up; /* [inter_slice, hidden] */
    afd_tensor down;     /* [hidden, inter_slice] (a column slice of the parent) */
} afd_ffn_weights;

typedef struct afd_layer_weights {
    /* attention side */
    const float *input_norm; /* [hidden] */
    const float *post_norm;  /* [hidden] post_attention_layernorm */
    afd_tensor q_proj;       /* [share_q_dim, hidden] */
    const float *inter_norm; /* [share_q_dim] */
    afd_tensor wq;           /* [n_heads*head_dim, share_q_dim] */
    afd_tensor k_proj;       /* [n_kv_heads*head_dim, hidden] */
    afd_tensor v_proj;       /* [n_kv_heads*head_dim, hidden] */
    afd_tensor o_proj;       /* [hidden, n_heads*head_dim] */
    afd_tensor moe_gate;     /* [n_experts, hidden], MoE layers only (router) */
    /* FFN side */
    bool is_moe;
    afd_ffn_weights dense;    /* dense layers: [inter_dense slice] */
    afd_ffn_weights shared;   /* MoE layers: shared expert, [share_inter slice] */
    afd_ffn_weights *experts; /* MoE layers: [n_experts], only the shard's range is valid */
} afd_layer_weights;

typedef struct afd_weights {
    afd_model_config cfg;
    afd_shard shard;
    int parts;
    afd_tensor embed;          /* [vocab, hidden] */
    const float *final_norm;   /* [hidden] */
    afd_tensor lm_head;        /* [vocab, hidden] */
    afd_layer_weights *layers; /* [n_layers] */
    /* owned conversions; freed by afd_weights_free */
    void **owned;
    int n_owned, cap_owned;
    uint64_t bytes_mapped; /* bytes of tensor data this part references */
} afd_weights;

/* Loads `parts` (AFD_PART_*) of the model (for FFN, of `shard`; NULL = everything). 0, or a
 * negative code + *err: AFD_E_NOTFOUND (missing tensor or scale), AFD_E_SHAPE (shape),
 * AFD_E_UNSUPPORTED (dtype; unaligned FP8 TP slice), AFD_E_FORMAT (non-finite scale),
 * -EINVAL (bad parts or shard). On failure *w is left zeroed (nothing to free).
 * Reports progress for large checkpoints (bytes/tensors done, rate, time left). */
int afd_weights_load(const st_set *set, const afd_model_config *cfg, int parts,
                     const afd_shard *shard, afd_weights *w, afd_err *err);
/* Frees what the weights own and zeroes *w; a zeroed or freed *w is a no-op. */
void afd_weights_free(afd_weights *w);

/* The model fingerprint daemons compare at handshake: 64-bit FNV-1a over afd_config_hash and,
 * for every tensor of the set in name order, its name, dtype, shape and first 16 data bytes
 * (so two random checkpoints of the same shapes differ). Reads one page per tensor. */
uint64_t afd_model_fingerprint(const afd_model_config *cfg, const st_set *set);

/* Loads config.json and the safetensors of directory `dir`: the usual one-call path
 * (afd_config_load + st_set_open + afd_weights_load), logging one summary line. The returned
 * set must be freed after the weights; on failure *set is NULL and *w zeroed. */
int afd_model_open(const char *dir, int parts, const afd_shard *shard, afd_weights *w, st_set **set,
                   afd_err *err);

#endif
