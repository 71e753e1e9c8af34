/* spec.c: presets, --config overrides and config.json for afd-mkmodel. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/base/alloc.h"
#include "tools/mkmodel/mkmodel.h"

/* ---- presets ------------------------------------------------------------------------------ */

static void preset_common(mk_spec *s) {
    afd_model_config *c = &s->cfg;
    afd_config_defaults(c);
    c->arch = AFD_ARCH_STEP3;
    c->vocab = MK_TOK_VOCAB;
    c->n_kv_heads = 1;
    c->top_k = 3;
    c->norm_expert_weight = false;
    c->rms_eps = 1e-5f;
    c->rope_theta = 500000.0;
    c->max_pos = 65536;
    c->bos_id = MK_TOK_BOS;
    c->eos_id = MK_TOK_EOS;
    c->dtype = AFD_DT_BF16;
}

/* tiny: for unit and oracle tests; ~34M parameters, 94% of them in embed + lm_head. */
static void preset_tiny(mk_spec *s) {
    afd_model_config *c = &s->cfg;
    c->hidden = 128, c->n_layers = 4;
    c->n_heads = 4, c->head_dim = 64, c->share_q_dim = 128;
    c->inter_dense = 256;
    c->n_experts = 8, c->moe_inter = 128, c->share_inter = 128;
    snprintf(s->moe_layers, sizeof s->moe_layers, "1,2");
}

/* mini: for benchmarks; ~542M parameters (1.08 GB BF16); a small-batch decode step reads
 * about 0.7 GB, tens of ms at ~25 GB/s. Attention has Step-3's real head shape (256). */
static void preset_mini(mk_spec *s) {
    afd_model_config *c = &s->cfg;
    c->hidden = 1024, c->n_layers = 10;
    c->n_heads = 8, c->head_dim = 256, c->share_q_dim = 512;
    c->inter_dense = 4096;
    c->n_experts = 16, c->moe_inter = 512, c->share_inter = 512;
    snprintf(s->moe_layers, sizeof s->moe_layers, "1,2,3,4,5,6,7,8");
}

int mk_spec_preset(mk_spec *spec, const char *name, afd_err *err) {
    mk_quant quant = spec->quant;
    bool flat = spec->flat;
    uint64_t seed = spec->seed;
    memset(spec, 0, sizeof *spec);
    spec->quant = quant, spec->flat = flat, spec->seed = seed;
    preset_common(spec);
    if (strcmp(name, "tiny") == 0)
        preset_tiny(spec);
    else if (strcmp(name, "mini") == 0)
        preset_mini(spec);
    else
        return afd_errf(err, -EINVAL, "--preset: unknown preset '%s' (tiny or mini)", name);
    return mk_parse_moe_layers(spec->moe_layers, spec->cfg.n_layers, spec->cfg.is_moe, err);
}

/* ---- moe_layers_enum ---------------------------------------------------------------------- */

int mk_parse_moe_layers(const char *s, int n_layers, uint8_t *is_moe, afd_err *err) {
    memset(is_moe, 0, AFD_MAX_LAYERS);
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno)
            return afd_errf(err, AFD_E_FORMAT, "moe_layers_enum \"%s\": not a list of integers", s);
        if (v < 0 || v >= n_layers)
            return afd_errf(err, AFD_E_FORMAT,
                            "moe_layers_enum \"%s\": layer %ld outside [0, %d) (num_hidden_layers)",
                            s, v, n_layers);
        if (is_moe[v])
            return afd_errf(err, AFD_E_FORMAT, "moe_layers_enum \"%s\": layer %ld twice", s, v);
        is_moe[v] = 1;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p)
            return afd_errf(err, AFD_E_FORMAT, "moe_layers_enum \"%s\": unexpected '%c'", s, *p);
    }
    return 0;
}

/* ---- --config: a table of the Step-3 keys ------------------------------------------------- */

typedef enum { K_INT, K_FLOAT, K_DOUBLE, K_BOOL, K_MOE } key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t off; /* into afd_model_config */
    double min, max;
} key_def;

#define CFG_OFF(f) offsetof(afd_model_config, f)
static const key_def keys[] = {
    {"hidden_size", K_INT, CFG_OFF(hidden), 1, 1 << 20},
    {"intermediate_size", K_INT, CFG_OFF(inter_dense), 1, 1 << 20},
    {"num_attention_heads", K_INT, CFG_OFF(n_heads), 1, 4096},
    {"num_attention_groups", K_INT, CFG_OFF(n_kv_heads), 1, 4096},
    {"num_hidden_layers", K_INT, CFG_OFF(n_layers), 1, AFD_MAX_LAYERS},
    {"vocab_size", K_INT, CFG_OFF(vocab), 1, 1 << 24},
    {"rms_norm_eps", K_FLOAT, CFG_OFF(rms_eps), 1e-12, 1},
    {"moe_intermediate_size", K_INT, CFG_OFF(moe_inter), 1, 1 << 20},
    {"moe_num_experts", K_INT, CFG_OFF(n_experts), 1, AFD_MAX_EXPERTS},
    {"moe_top_k", K_INT, CFG_OFF(top_k), 1, AFD_MAX_TOPK},
    {"rope_theta", K_DOUBLE, CFG_OFF(rope_theta), 1, 1e12},
    {"max_position_embedding", K_INT, CFG_OFF(max_pos), 1, 1 << 24},
    {"share_expert_dim", K_INT, CFG_OFF(share_inter), 1, 1 << 20},
    {"share_q_dim", K_INT, CFG_OFF(share_q_dim), 1, 1 << 20},
    {"head_dim", K_INT, CFG_OFF(head_dim), 2, 8192},
    {"norm_expert_weight", K_BOOL, CFG_OFF(norm_expert_weight), 0, 1},
    {"bos_token_id", K_INT, CFG_OFF(bos_id), 0, 1 << 24},
    {"eos_token_id", K_INT, CFG_OFF(eos_id), 0, 1 << 24},
    {"moe_layers_enum", K_MOE, 0, 0, 0},
};

/* Keys a real config.json carries that say nothing about the dimensions. */
static const char *const ignored_keys[] = {
    "architectures", "model_type", "torch_dtype", "transformers_version", "auto_map",
    "quantization_config", "vision_config", "image_token_id", "projector_bias",
    "understand_projector_stride", "rope_scaling", "tie_word_embeddings", "use_cache",
};

static const key_def *key_find(const char *name) {
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static bool key_ignored(const char *name) {
    for (size_t i = 0; i < sizeof ignored_keys / sizeof ignored_keys[0]; i++)
        if (strcmp(ignored_keys[i], name) == 0)
            return true;
    return false;
}

static int moe_from_json(mk_spec *s, json_t *v, const char *what, afd_err *err) {
    if (json_is_string(v)) {
        if (json_string_length(v) >= sizeof s->moe_layers)
            return afd_errf(err, AFD_E_LIMIT, "%s: moe_layers_enum: too long", what);
        snprintf(s->moe_layers, sizeof s->moe_layers, "%s", json_string_value(v));
        return 0;
    }
    if (!json_is_array(v))
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: moe_layers_enum must be a string like \"1,2,4\" (or an array)", what);
    size_t i, n = 0;
    json_t *e;
    s->moe_layers[0] = '\0';
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e))
            return afd_errf(err, AFD_E_FORMAT, "%s: moe_layers_enum[%zu] is not an integer", what,
                            i);
        int w = snprintf(s->moe_layers + n, sizeof s->moe_layers - n, "%s%lld", i ? "," : "",
                         (long long)json_integer_value(e));
        if (w < 0 || (size_t)w >= sizeof s->moe_layers - n)
            return afd_errf(err, AFD_E_LIMIT, "%s: moe_layers_enum: too long", what);
        n += (size_t)w;
    }
    return 0;
}

static int key_set(mk_spec *s, const key_def *k, json_t *v, const char *what, afd_err *err) {
    char *base = (char *)&s->cfg;
    if (k->type == K_MOE)
        return moe_from_json(s, v, what, err);
    if (k->type == K_BOOL) {
        if (!json_is_boolean(v))
            return afd_errf(err, AFD_E_FORMAT, "%s: %s must be true or false", what, k->name);
        *(bool *)(base + k->off) = json_is_true(v);
        return 0;
    }
    if (k->type == K_INT ? !json_is_integer(v) : !json_is_number(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: %s must be %s", what, k->name,
                        k->type == K_INT ? "an integer" : "a number");
    double d = json_number_value(v);
    if (!(d >= k->min && d <= k->max))
        return afd_errf(err, AFD_E_FORMAT, "%s: %s = %g is outside [%g, %g]", what, k->name, d,
                        k->min, k->max);
    if (k->type == K_INT)
        *(int *)(base + k->off) = (int)json_integer_value(v);
    else if (k->type == K_FLOAT)
        *(float *)(base + k->off) = (float)d;
    else
        *(double *)(base + k->off) = d;
    return 0;
}

int mk_spec_apply_file(mk_spec *spec, const char *path, afd_err *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return afd_errf(err, AFD_E_FORMAT, "--config %s: line %d: %s", path, jerr.line, jerr.text);
    int rc = 0;
    json_t *obj = json_object_get(root, "text_config");
    if (!obj)
        obj = root;
    if (!json_is_object(obj)) {
        rc = afd_errf(err, AFD_E_FORMAT, "--config %s: not a JSON object", path);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v) {
        const key_def *k = key_find(name);
        if (k)
            rc = key_set(spec, k, v, path, err);
        else if (!key_ignored(name) && strcmp(name, "text_config") != 0)
            rc = afd_errf(err, AFD_E_FORMAT,
                          "--config %s: unknown key \"%s\" (Step-3 keys: hidden_size, "
                          "num_hidden_layers, moe_layers_enum, ...; see afd-mkmodel --help)",
                          path, name);
        if (rc)
            goto out;
    }
    afd_err e2;
    rc = mk_parse_moe_layers(spec->moe_layers, spec->cfg.n_layers, spec->cfg.is_moe, &e2);
    if (rc)
        afd_errf(err, rc, "--config %s: %s", path, e2.msg);
out:
    json_decref(root);
    return rc;
}

/* ---- validation --------------------------------------------------------------------------- */

static int spec_check_dims(const afd_model_config *c, afd_err *err) {
    if (c->head_dim % 2)
        return afd_errf(err, AFD_E_FORMAT, "head_dim %d must be even (RoPE pairs i, i+d/2)",
                        c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return afd_errf(err, AFD_E_FORMAT,
                        "num_attention_heads %d is not a multiple of num_attention_groups %d",
                        c->n_heads, c->n_kv_heads);
    if (c->top_k > c->n_experts)
        return afd_errf(err, AFD_E_FORMAT, "moe_top_k %d > moe_num_experts %d", c->top_k,
                        c->n_experts);
    if (c->bos_id >= c->vocab || c->eos_id >= c->vocab)
        return afd_errf(err, AFD_E_FORMAT, "bos_token_id %d / eos_token_id %d outside vocab %d",
                        c->bos_id, c->eos_id, c->vocab);
    return 0;
}

int mk_spec_validate(const mk_spec *spec, bool real_tokenizer, afd_err *err) {
    const afd_model_config *c = &spec->cfg;
    int rc = spec_check_dims(c, err);
    if (rc)
        return rc;
    if (real_tokenizer && (c->vocab != MK_TOK_VOCAB || c->bos_id != MK_TOK_BOS ||
                           c->eos_id != MK_TOK_EOS))
        return afd_errf(err, AFD_E_FORMAT,
                        "vocab_size %d, bos %d, eos %d do not match the DeepSeek-V3/Step-3 "
                        "tokenizer (%d, %d, %d); keep them or pass --no-tokenizer",
                        c->vocab, c->bos_id, c->eos_id, MK_TOK_VOCAB, MK_TOK_BOS, MK_TOK_EOS);
    /* The loader the daemons use must accept what we write. */
    char *json = mk_spec_config_json(spec);
    afd_model_config back;
    afd_err e2;
    rc = afd_config_parse(json, strlen(json), "generated config.json", &back, &e2);
    if (rc == 0)
        rc = afd_config_validate(&back, &e2);
    free(json);
    if (rc)
        return afd_errf(err, rc, "afd's config loader rejects these dimensions: %s", e2.msg);
    return 0;
}

/* ---- config.json -------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(w > 0 ? w : 0);
        b->p = xrealloc(b->p, b->cap);
    }
}

/* Shortest %g that reads back as the same float, as Python's repr would write it. */
static void fmt_float(char *buf, size_t cap, double v, bool is_float) {
    if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        snprintf(buf, cap, "%.1f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strncat(buf, ".0", cap - strlen(buf) - 1);
}

static void text_keys(sbuf *b, const mk_spec *s, const char *ind) {
    const afd_model_config *c = &s->cfg;
    char eps[40], theta[40];
    fmt_float(eps, sizeof eps, c->rms_eps, true);
    fmt_float(theta, sizeof theta, c->rope_theta, false);
    sb_printf(b, "%s\"architectures\": [\"Step3TextForCausalLM\"],\n", ind);
    sb_printf(b, "%s\"model_type\": \"step3_text\",\n", ind);
    sb_printf(b, "%s\"hidden_size\": %d,\n", ind, c->hidden);
    sb_printf(b, "%s\"intermediate_size\": %d,\n", ind, c->inter_dense);
    sb_printf(b, "%s\"num_attention_heads\": %d,\n", ind, c->n_heads);
    sb_printf(b, "%s\"num_attention_groups\": %d,\n", ind, c->n_kv_heads);
    sb_printf(b, "%s\"num_hidden_layers\": %d,\n", ind, c->n_layers);
    sb_printf(b, "%s\"vocab_size\": %d,\n", ind, c->vocab);
    sb_printf(b, "%s\"rms_norm_eps\": %s,\n", ind, eps);
    sb_printf(b, "%s\"moe_intermediate_size\": %d,\n", ind, c->moe_inter);
    sb_printf(b, "%s\"moe_num_experts\": %d,\n", ind, c->n_experts);
    sb_printf(b, "%s\"moe_top_k\": %d,\n", ind, c->top_k);
    sb_printf(b, "%s\"rope_theta\": %s,\n", ind, theta);
    sb_printf(b, "%s\"rope_scaling\": null,\n", ind);
    sb_printf(b, "%s\"max_position_embedding\": %d,\n", ind, c->max_pos);
    sb_printf(b, "%s\"share_expert_dim\": %d,\n", ind, c->share_inter);
    sb_printf(b, "%s\"share_q_dim\": %d,\n", ind, c->share_q_dim);
    sb_printf(b, "%s\"head_dim\": %d,\n", ind, c->head_dim);
    sb_printf(b, "%s\"norm_expert_weight\": %s,\n", ind, c->norm_expert_weight ? "true" : "false");
    sb_printf(b, "%s\"moe_layers_enum\": \"%s\",\n", ind, s->moe_layers);
    sb_printf(b, "%s\"bos_token_id\": %d,\n", ind, c->bos_id);
    sb_printf(b, "%s\"eos_token_id\": %d,\n", ind, c->eos_id);
    sb_printf(b, "%s\"torch_dtype\": \"bfloat16\"", ind);
}

static void quant_keys(sbuf *b, const mk_spec *s) {
    if (s->quant == MK_QUANT_NONE)
        return;
    sb_printf(b, ",\n  \"quantization_config\": {\n"
                 "    \"quant_method\": \"fp8\",\n"
                 "    \"fmt\": \"e4m3\",\n"
                 "    \"activation_scheme\": \"dynamic\",\n"
                 "    \"weight_block_size\": [128, 128]");
    if (s->quant == MK_QUANT_MIXED)
        sb_printf(b, ",\n    \"modules_to_not_convert\": [\"lm_head\", \"embed_tokens\", "
                     "\"k_proj\", \"v_proj\", \"share_expert\", \"mlp\"]");
    sb_printf(b, "\n  }");
}

char *mk_spec_config_json(const mk_spec *s) {
    sbuf b = {xmalloc(4096), 0, 4096};
    if (s->flat) {
        sb_printf(&b, "{\n");
        text_keys(&b, s, "  ");
    } else {
        sb_printf(&b, "{\n  \"architectures\": [\"Step3VLForConditionalGeneration\"],\n"
                      "  \"model_type\": \"step3_vl\",\n"
                      "  \"image_token_id\": %d,\n"
                      "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
                      "  \"torch_dtype\": \"bfloat16\",\n  \"text_config\": {\n",
                  MK_TOK_IM_PATCH, s->cfg.bos_id, s->cfg.eos_id);
        text_keys(&b, s, "    ");
        sb_printf(&b, "\n  }");
    }
    quant_keys(&b, s);
    sb_printf(&b, "\n}\n");
    return b.p;
}
