/* mkmodel.h: afd-mkmodel's internals, shared by the files of tools/mkmodel/.
 *
 * afd-mkmodel writes a seeded random Step-3 checkpoint in the Hugging Face layout: config.json
 * (step3_vl with text_config, or flat step3_text), generation_config.json, model.safetensors
 * (or model-0000N-of-0000M.safetensors + model.safetensors.index.json), and DeepSeek-V3's
 * tokenizer files rewritten with Step-3's special tokens.
 *
 * spec.c   presets, --config overrides (a table of keys), validation, config.json text
 * plan.c   the tensor list (names, shapes, dtypes, initial scale) and the shard plan
 * gen.c    the random generator and the streaming writer (BF16 and block-FP8)
 * tok.c    locating and rewriting the tokenizer files
 * main.c   options and the order of work
 *
 * Every function returns 0 or a negative afd error code with *err filled (err.h). Single thread.
 */
#ifndef AFD_MKMODEL_H
#define AFD_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/err.h"
#include "common/model/config.h"
#include "common/model/tensor.h"

/* Which projections are stored as block-FP8. */
typedef enum mk_quant {
    MK_QUANT_NONE = 0,  /* everything BF16 */
    MK_QUANT_ALL = 1,   /* every attention/FFN projection FP8 (router, norms, embed, head BF16) */
    MK_QUANT_MIXED = 2, /* routed experts and q_proj/wq/o_proj FP8; the rest BF16 */
} mk_quant;

/* The model to write: the dimensions (an afd_model_config, as afd's loader will read it) plus
 * what only the writer needs. */
typedef struct mk_spec {
    afd_model_config cfg;
    char moe_layers[8192]; /* moe_layers_enum exactly as written to config.json */
    mk_quant quant;
    bool flat;             /* step3_text flat config instead of step3_vl + text_config */
    uint64_t seed;
} mk_spec;

/* Fills *spec with preset `name` ("tiny" or "mini"). */
int mk_spec_preset(mk_spec *spec, const char *name, afd_err *err);
/* Applies the keys of JSON file `path` (Step-3 config keys, flat or under "text_config"). */
int mk_spec_apply_file(mk_spec *spec, const char *path, afd_err *err);
/* Cross-field checks; also re-parses the generated config.json with afd's own loader. */
int mk_spec_validate(const mk_spec *spec, bool real_tokenizer, afd_err *err);
/* config.json text (malloc'd, caller frees). */
char *mk_spec_config_json(const mk_spec *spec);
/* Parses "1,2,5" into cfg->is_moe. */
int mk_parse_moe_layers(const char *s, int n_layers, uint8_t *is_moe, afd_err *err);

/* How a tensor's values are drawn. */
typedef enum mk_init {
    MK_INIT_NORMAL = 1, /* approx. N(0, std^2) */
    MK_INIT_ONES = 2,   /* 1 + N(0, std^2): RMSNorm weights */
    MK_INIT_SCALE = 3,  /* the weight_scale_inv of the preceding FP8 tensor */
} mk_init;

#define MK_NAME_MAX 160

typedef struct mk_tensor {
    char name[MK_NAME_MAX];
    afd_dtype dtype;   /* storage dtype: BF16, F8_E4M3, or F32 for scales */
    int ndim;
    int64_t shape[3];
    mk_init init;
    float std;
    uint64_t nbytes;
    int shard;         /* 0-based shard index */
} mk_tensor;

typedef struct mk_plan {
    mk_tensor *t;
    int n, cap;
    int n_shards;
    uint64_t total_bytes;
    uint64_t n_params;  /* logical parameters (scales not counted) */
} mk_plan;

/* Builds the tensor list of `spec`. */
void mk_plan_build(mk_plan *plan, const mk_spec *spec);
/* Assigns shards so that no shard exceeds shard_size bytes unless one tensor (with its scale)
 * alone does; shard_size 0 = one file. */
void mk_plan_shard(mk_plan *plan, uint64_t shard_size);
void mk_plan_free(mk_plan *plan);
/* "model.safetensors" or "model-0000N-of-0000M.safetensors" for shard i. */
void mk_shard_name(const mk_plan *plan, int i, char *buf, size_t cap);
/* model.safetensors.index.json text (malloc'd). */
char *mk_plan_index_json(const mk_plan *plan);

/* Writes every shard of the plan into directory `dir`. */
int mk_generate(const mk_plan *plan, const mk_spec *spec, const char *dir, bool quiet,
                afd_err *err);

/* Seeded generator: xoshiro256** seeded through splitmix64. */
typedef struct mk_rng {
    uint64_t s[4];
} mk_rng;
void mk_rng_seed(mk_rng *r, uint64_t seed, const char *stream_name);
uint64_t mk_rng_next(mk_rng *r);
/* n approx-normal floats (Irwin-Hall of 4 uniforms, unit variance) times std, plus mean. */
void mk_rng_fill(mk_rng *r, float *out, uint64_t n, float mean, float std);

/* Finds the tokenizer directory: `opt` (--tokenizer-dir), $AFD_TOKENIZER_DIR, or relative to
 * the executable. Writes it to buf. */
int mk_tok_find(const char *opt, char *buf, size_t cap, afd_err *err);
/* Copies tokenizer.json and tokenizer_config.json from src to dst with Step-3's tokens. */
int mk_tok_write(const char *src, const char *dst, afd_err *err);

/* The ids Step-3 gives its special tokens in our tokenizer (docs/models.md). */
#define MK_TOK_BOS 0
#define MK_TOK_EOS 128805
#define MK_TOK_IM_PATCH 128001
#define MK_TOK_BOT 128797
#define MK_TOK_THINK 128798
#define MK_TOK_THINK_END 128799
#define MK_TOK_VOCAB 128815

/* Writes `len` bytes of text to dir/name. */
int mk_write_text(const char *dir, const char *name, const char *text, afd_err *err);

#endif
