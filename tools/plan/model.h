/* model.h: the model description afd-plan reasons about, read from a Hugging Face config.json.
 *
 * Three attention families, each read by its own small reader (model_step3.c, model_mla.c,
 * model_gqa.c) from the keys its checkpoints publish:
 *   MFA  Step-3 (step3_vl with text_config, step3_text): share_q_dim, head_dim,
 *        num_attention_groups, moe_num_experts/moe_top_k/moe_intermediate_size,
 *        share_expert_dim, moe_layers_enum;
 *   MLA  DeepSeek-V3 / Kimi K2 (deepseek_v2, deepseek_v3, kimi_k2): q_lora_rank, kv_lora_rank,
 *        qk_nope_head_dim, qk_rope_head_dim, v_head_dim, n_routed_experts, num_experts_per_tok,
 *        n_shared_experts, moe_intermediate_size, first_k_dense_replace, moe_layer_freq;
 *   GQA  Qwen3-MoE and other GQA models: num_key_value_heads, head_dim, num_experts,
 *        num_experts_per_tok, moe_intermediate_size, decoder_sparse_step, mlp_only_layers.
 * A config whose text part sits under "text_config" is read from there. Keys are type- and
 * range-checked; a bad or missing one is refused with a message naming the file and the key.
 *
 * The struct is plain data (no allocation, nothing to free). Thread-safe: no globals.
 */
#ifndef AFD_PLAN_MODEL_H
#define AFD_PLAN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"

#define PLAN_MAX_LAYERS 1024
#define PLAN_MAX_DIM (1 << 24) /* any single dimension or count read from a config */
#define PLAN_CONFIG_MAX_BYTES (8u << 20)

typedef enum plan_attn_kind {
    PLAN_ATTN_MFA = 1, /* low-rank Q, few shared K/V heads (Step-3; MQA when groups = 1) */
    PLAN_ATTN_MLA = 2, /* latent K/V (DeepSeek-V3, Kimi K2), costed in its absorbed form */
    PLAN_ATTN_GQA = 3, /* grouped-query attention (Qwen3, Llama, ...) */
} plan_attn_kind;

typedef struct plan_model {
    char name[64];      /* model_type as written (or "unknown") */
    plan_attn_kind attn;
    int layers;         /* num_hidden_layers */
    int hidden;         /* hidden_size */
    int vocab;          /* vocab_size (0 when absent) */
    bool tied;          /* tie_word_embeddings */
    /* attention */
    int q_heads;        /* num_attention_heads */
    int kv_heads;       /* MFA: num_attention_groups; GQA: num_key_value_heads; MLA: 1 latent */
    int head_dim;       /* QK width per head (MFA/GQA); MLA: qk_nope + qk_rope */
    int v_head_dim;     /* V width per head */
    int q_lora_rank;    /* MFA share_q_dim / MLA q_lora_rank; 0 = full-rank Q projection */
    int kv_lora_rank;   /* MLA */
    int qk_nope_dim;    /* MLA */
    int qk_rope_dim;    /* MLA */
    /* FFN (SwiGLU everywhere: gate, up, down) */
    int dense_inter;    /* intermediate_size of dense layers */
    int n_experts;      /* routed experts (0: dense model) */
    int top_k;          /* routed experts per token */
    int expert_inter;   /* moe_intermediate_size */
    int n_shared;       /* shared experts per MoE layer */
    int shared_inter;   /* intermediate size of one shared expert */
    int n_moe_layers;
    uint8_t is_moe[PLAN_MAX_LAYERS]; /* 1 = MoE layer, 0 = dense FFN */
} plan_model;

/* Parameter counts (elements), from the description. */
typedef struct plan_params {
    double attention;     /* all layers' attention projections (absorbed form for MLA) */
    double ffn_total;     /* every expert, shared expert, dense FFN and router */
    double ffn_active;    /* per token: top-k + shared experts, dense FFN, router */
    double embedding;     /* embed_tokens + lm_head (once when tied) */
    double total;         /* attention + ffn_total + embedding */
    double active;        /* attention + ffn_active + embedding */
} plan_params;

/* Reads a config.json file (or a directory holding one). 0 or a negative code, *err naming the
 * file and key. */
int plan_model_load(const char *path, plan_model *m, afd_err *err);
/* Parses `len` bytes of config.json text; `what` names it in messages. */
int plan_model_parse(const char *json, size_t len, const char *what, plan_model *m, afd_err *err);
/* Cross-field checks (top_k <= experts, dense layers have an intermediate size, ...) and sets
 * n_moe_layers from is_moe[]. The loaders call it; call it after building a model by hand. */
int plan_model_validate(plan_model *m, const char *what, afd_err *err);

/* "MFA", "MLA" or "GQA". */
const char *plan_attn_name(plan_attn_kind k);

/* Per token per layer, 8-bit KV: bytes of K/V cache read for one cached position. */
double plan_kv_bytes_per_pos(const plan_model *m);
/* Per layer, per cached position: FLOPs of QK^T and PV as performed (MLA absorbed: 576+576). */
double plan_attn_flops_per_pos(const plan_model *m);
/* Per layer: parameters of the projections around attention (absorbed up-projections for MLA). */
double plan_attn_linear_params(const plan_model *m);
/* Per token: activated FFN parameters summed over all layers (dense + top-k + shared). */
double plan_ffn_active_params(const plan_model *m);
/* MoE sparsity S = activated / total expert parameters of a MoE layer, shared experts counted
 * in both (the paper's (k + 1)/(E + 1) for one shared expert of expert size); 1 if dense. */
double plan_model_sparsity(const plan_model *m);
void plan_model_params(const plan_model *m, plan_params *p);

#endif
