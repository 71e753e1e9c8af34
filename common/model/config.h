/* config.h: the model description, read from a Hugging Face config.json.
 *
 * Accepts model_type "step3_vl" (text part under "text_config") and "step3_text" (flat). Keys
 * that are absent take Step-3's defaults (DESIGN §1); keys that are present are type- and
 * range-checked and a bad one is refused with a message naming the key. The description is
 * data: a new family (Qwen3-MoE, DeepSeek-V3) is a new `arch` value and attention/FFN variant,
 * not a fork of this struct.
 *
 * Owns nothing that needs freeing (fixed-size struct). Thread-safe (no globals).
 */
#ifndef AFD_CONFIG_H
#define AFD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/err.h"
#include "common/model/tensor.h"

#define AFD_MAX_LAYERS 512
#define AFD_MAX_EXPERTS 1024
#define AFD_MAX_TOPK 32

typedef enum afd_arch {
    AFD_ARCH_STEP3 = 1, /* MFA attention + MoE with shared expert */
} afd_arch;

typedef struct afd_model_config {
    afd_arch arch;
    char model_type[32];   /* as written in config.json: "step3_vl" or "step3_text" */
    int n_layers;          /* num_hidden_layers                       61 */
    int hidden;            /* hidden_size                             7168 */
    int vocab;             /* vocab_size                              128815 */
    int n_heads;           /* num_attention_heads (query heads)       64 */
    int n_kv_heads;        /* num_attention_groups (K/V heads)        1 */
    int head_dim;          /* head_dim                                256 */
    int share_q_dim;       /* share_q_dim (low-rank Q)                2048 */
    int inter_dense;       /* intermediate_size (dense FFN layers)    18432 */
    int n_experts;         /* moe_num_experts                         48 */
    int top_k;             /* moe_top_k                               3 */
    int moe_inter;         /* moe_intermediate_size                   5120 */
    int share_inter;       /* share_expert_dim                        5120 */
    bool norm_expert_weight; /* renormalize top-k weights             false */
    float rms_eps;         /* rms_norm_eps                            1e-5 */
    double rope_theta;     /* rope_theta                              500000 */
    int max_pos;           /* max_position_embedding                  65536 */
    int bos_id, eos_id;    /* bos_token_id / eos_token_id             0 / 128805 */
    afd_dtype dtype;       /* torch_dtype of the checkpoint (informational) */
    bool fp8_blocks;       /* quantization_config: block-FP8 (128x128) present */
    uint8_t is_moe[AFD_MAX_LAYERS]; /* from moe_layers_enum: 1 = MoE layer, 0 = dense */
} afd_model_config;

/* Fills *cfg with Step-3's full-size defaults. */
void afd_config_defaults(afd_model_config *cfg);
/* Reads <path> (a config.json file, or a directory containing one). 0 or a negative code with
 * *err naming the file and key. */
int afd_config_load(const char *path, afd_model_config *cfg, afd_err *err);
/* Parses config.json text of `len` bytes (not NUL-terminated); `what` names it in messages. */
int afd_config_parse(const char *json, size_t len, const char *what, afd_model_config *cfg,
                     afd_err *err);
/* Cross-field checks (dims positive, heads*head_dim sane, top_k <= experts, ...). */
int afd_config_validate(const afd_model_config *cfg, afd_err *err);
/* Number of MoE layers. */
int afd_config_n_moe(const afd_model_config *cfg);
/* 64-bit FNV-1a of the semantic fields; part of the model fingerprint. */
uint64_t afd_config_hash(const afd_model_config *cfg);

#endif
