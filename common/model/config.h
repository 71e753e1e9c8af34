/* config.h: the model description, read from a Hugging Face config.json (docs/checkpoint.md).
 *
 * Accepts model_type "step3_vl" (text part under "text_config", whose own model_type, if any,
 * must be "step3_text") and "step3_text" (flat). Keys that are absent take Step-3's defaults
 * (DESIGN §1, afd_config_defaults); keys that are present are type- and range-checked, and a
 * bad one is refused as "<file>: key <key>: <why>" (the key as written, e.g.
 * text_config.moe_top_k). Unknown keys are ignored. bos_token_id, eos_token_id, torch_dtype
 * and quantization_config may also sit at the top level of a step3_vl config; a list of token
 * ids means its first element. rope_scaling must be null or absent. quantization_config must be
 * {"quant_method": "fp8", "weight_block_size": [128, 128]} (fmt e4m3, dynamic activations).
 * moe_layers_enum is "4,5,6" or [4, 5, 6]; when absent, the default 4..59 is cut to the layers
 * that exist. The description is data: a new family (Qwen3-MoE, DeepSeek-V3) is a new `arch`
 * value and attention/FFN variant, not a fork of this struct.
 *
 * Owns nothing that needs freeing (fixed-size struct). Thread-safe (no globals).
 */
#ifndef AFD_CONFIG_H
#define AFD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/err.h"
#include "common/model/tensor.h"

#define AFD_MAX_LAYERS  512
#define AFD_MAX_EXPERTS 1024
#define AFD_MAX_TOPK    32

typedef enum afd_arch {
    AFD_ARCH_STEP3 = 1, /* MFA attention + MoE with shared expert */
} afd_arch;

typedef struct afd_model_config {
    afd_arch arch;
    char model_type[32];            /* as written in config.json: "step3_vl" or "step3_text" */
    int n_layers;                   /* num_hidden_layers                       61 */
    int hidden;                     /* hidden_size                             7168 */
    int vocab;                      /* vocab_size                              128815 */
    int n_heads;                    /* num_attention_heads (query heads)       64 */
    int n_kv_heads;                 /* num_attention_groups (K/V heads)        1 */
    int head_dim;                   /* head_dim                                256 */
    int share_q_dim;                /* share_q_dim (low-rank Q)                2048 */
    int inter_dense;                /* intermediate_size (dense FFN layers)    18432 */
    int n_experts;                  /* moe_num_experts                         48 */
    int top_k;                      /* moe_top_k                               3 */
    int moe_inter;                  /* moe_intermediate_size                   5120 */
    int share_inter;                /* share_expert_dim                        5120 */
    bool norm_expert_weight;        /* renormalize top-k weights             false */
    float rms_eps;                  /* rms_norm_eps                            1e-5 */
    double rope_theta;              /* rope_theta                              500000 */
    int max_pos;                    /* max_position_embedding                  65536 */
    int bos_id, eos_id;             /* bos_token_id / eos_token_id             0 / 128805 */
    afd_dtype dtype;                /* torch_dtype of the checkpoint (informational) */
    bool fp8_blocks;                /* quantization_config: block-FP8 (128x128) present */
    uint8_t is_moe[AFD_MAX_LAYERS]; /* from moe_layers_enum: 1 = MoE layer, 0 = dense */
} afd_model_config;

/* Fills *cfg with Step-3's full-size defaults (61 layers, hidden 7168, MoE layers 4..59, ...). */
void afd_config_defaults(afd_model_config *cfg);
/* Reads <path> (a config.json file, or a directory containing one), parses and validates it.
 * 0, or a negative code with *err naming the file and key: AFD_E_FORMAT (bad JSON, type or
 * range), AFD_E_UNSUPPORTED (model_type, rope_scaling, quantization), AFD_E_NOTFOUND (no
 * file), AFD_E_LIMIT (file over 16 MiB). */
int afd_config_load(const char *path, afd_model_config *cfg, afd_err *err);
/* Parses config.json text of `len` bytes (not NUL-terminated; jansson gets the exact length)
 * and validates the result; `what` names it in messages. *cfg holds defaults + parsed keys
 * even on failure (never garbage). */
int afd_config_parse(const char *json, size_t len, const char *what, afd_model_config *cfg,
                     afd_err *err);
/* Cross-field checks (dims positive, groups divide heads, head_dim even, top_k <= experts,
 * bos/eos < vocab, no MoE layer past num_hidden_layers, ...). Messages name the key but no
 * file (afd_config_parse adds it). For configs built in code, e.g. by afd-mkmodel. */
int afd_config_validate(const afd_model_config *cfg, afd_err *err);
/* Number of MoE layers. */
int afd_config_n_moe(const afd_model_config *cfg);
/* 64-bit FNV-1a of the semantic fields (dimensions, eps and theta bits, token ids, fp8_blocks,
 * the MoE layer map), each as 8 little-endian bytes in a fixed order; not model_type or dtype
 * (a step3_vl and a step3_text config of the same model hash alike). Part of the model
 * fingerprint the daemons exchange. */
uint64_t afd_config_hash(const afd_model_config *cfg);

#endif
