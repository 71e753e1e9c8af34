/* config.c: Step-3's config.json, read through one table of keys.
 *
 * Each row of `keys` says where a key goes in afd_model_config, its JSON type and its bounds;
 * the few keys with a shape of their own (model_type, moe_layers_enum, rope_scaling, token ids
 * that may be lists, torch_dtype, quantization_config) have a small parser each. Unknown keys
 * are ignored: a real config.json carries many (vision_config, architectures, auto_map, ...).
 * Every refusal reads "<file>: key <key>: <why>", with the key as written (text_config.<key>
 * for the text part of a step3_vl config). docs/checkpoint.md lists the keys and defaults.
 */
#include "common/model/config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/base/alloc.h"

#define CFG_MAX_FILE (16u << 20) /* config.json: a real one is ~ 3 KB */

/* ==== defaults ============================================================================== */

void afd_config_defaults(afd_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = AFD_ARCH_STEP3;
    snprintf(cfg->model_type, sizeof cfg->model_type, "step3_text");
    cfg->n_layers = 61;
    cfg->hidden = 7168;
    cfg->vocab = 128815;
    cfg->n_heads = 64;
    cfg->n_kv_heads = 1;
    cfg->head_dim = 256;
    cfg->share_q_dim = 2048;
    cfg->inter_dense = 18432;
    cfg->n_experts = 48;
    cfg->top_k = 3;
    cfg->moe_inter = 5120;
    cfg->share_inter = 5120;
    cfg->norm_expert_weight = false;
    cfg->rms_eps = 1e-5f;
    cfg->rope_theta = 500000.0;
    cfg->max_pos = 65536;
    cfg->bos_id = 0;
    cfg->eos_id = 128805;
    cfg->dtype = AFD_DT_BF16;
    cfg->fp8_blocks = false;
    for (int i = 4; i <= 59; i++)
        cfg->is_moe[i] = 1;
}

/* ==== the document being read =============================================================== */

typedef struct cfg_doc {
    const char *what; /* file name for messages */
    json_t *root;     /* the whole config */
    json_t *text;     /* the text model's keys: text_config (step3_vl) or root (step3_text) */
    const char *pre;  /* "text_config." or "" */
} cfg_doc;

/* A key of the text part, or (top_ok) of the top level when the text part lacks it. `path`
 * receives the key as written, for messages. */
static json_t *doc_get(const cfg_doc *d, const char *key, bool top_ok, char *path, size_t cap) {
    json_t *v = json_object_get(d->text, key);
    if (v) {
        snprintf(path, cap, "%s%s", d->pre, key);
        return v;
    }
    if (top_ok && d->text != d->root && (v = json_object_get(d->root, key))) {
        snprintf(path, cap, "%s", key);
        return v;
    }
    return NULL;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* ==== the table ============================================================================= */

typedef enum { K_INT, K_FLOAT, K_DOUBLE, K_BOOL } key_type;

typedef struct cfg_key {
    const char *name;
    key_type type;
    size_t off;      /* into afd_model_config */
    double min, max; /* inclusive bounds */
} cfg_key;

#define OFF(f) offsetof(afd_model_config, f)
static const cfg_key keys[] = {
    {"num_hidden_layers", K_INT, OFF(n_layers), 1, AFD_MAX_LAYERS},
    {"hidden_size", K_INT, OFF(hidden), 1, 65536},
    {"vocab_size", K_INT, OFF(vocab), 1, 1 << 24},
    {"num_attention_heads", K_INT, OFF(n_heads), 1, 4096},
    {"num_attention_groups", K_INT, OFF(n_kv_heads), 1, 4096},
    {"head_dim", K_INT, OFF(head_dim), 2, 4096},
    {"share_q_dim", K_INT, OFF(share_q_dim), 1, 1 << 20},
    {"intermediate_size", K_INT, OFF(inter_dense), 1, 1 << 20},
    {"moe_num_experts", K_INT, OFF(n_experts), 1, AFD_MAX_EXPERTS},
    {"moe_top_k", K_INT, OFF(top_k), 1, AFD_MAX_TOPK},
    {"moe_intermediate_size", K_INT, OFF(moe_inter), 1, 1 << 20},
    {"share_expert_dim", K_INT, OFF(share_inter), 1, 1 << 20},
    {"norm_expert_weight", K_BOOL, OFF(norm_expert_weight), 0, 1},
    {"rms_norm_eps", K_FLOAT, OFF(rms_eps), 1e-12, 0.1},
    {"rope_theta", K_DOUBLE, OFF(rope_theta), 1, 1e12},
};
#undef OFF

static int key_bool(const cfg_doc *d, const char *path, json_t *v, bool *out, afd_err *err) {
    if (!json_is_boolean(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: must be true or false, got %s", d->what,
                        path, json_kind(v));
    *out = json_is_true(v);
    return 0;
}

/* An integer in [min, max] (JSON integers only: 7168.0 is refused). */
static int key_int(const cfg_doc *d, const char *path, json_t *v, double min, double max, int *out,
                   afd_err *err) {
    if (!json_is_integer(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: must be an integer, got %s", d->what, path,
                        json_kind(v));
    json_int_t x = json_integer_value(v);
    if ((double)x < min || (double)x > max)
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: %lld is outside [%.0f, %.0f]", d->what,
                        path, (long long)x, min, max);
    *out = (int)x;
    return 0;
}

static int key_real(const cfg_doc *d, const char *path, json_t *v, double min, double max,
                    double *out, afd_err *err) {
    if (!json_is_number(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: must be a number, got %s", d->what, path,
                        json_kind(v));
    double x = json_number_value(v);
    if (!(x >= min && x <= max))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: %g is outside [%g, %g]", d->what, path, x,
                        min, max);
    *out = x;
    return 0;
}

static int key_apply(const cfg_doc *d, const cfg_key *k, afd_model_config *cfg, afd_err *err) {
    char path[96];
    json_t *v = doc_get(d, k->name, false, path, sizeof path);
    if (!v) return 0;
    char *field = (char *)cfg + k->off;
    double x;
    int rc;
    switch (k->type) {
    case K_BOOL:
        return key_bool(d, path, v, (bool *)field, err);
    case K_INT:
        return key_int(d, path, v, k->min, k->max, (int *)field, err);
    case K_FLOAT:
        if ((rc = key_real(d, path, v, k->min, k->max, &x, err)) == 0) *(float *)field = (float)x;
        return rc;
    case K_DOUBLE:
        if ((rc = key_real(d, path, v, k->min, k->max, &x, err)) == 0) *(double *)field = x;
        return rc;
    }
    return 0;
}

/* ==== keys with a shape of their own ======================================================== */

/* model_type decides where the text keys are. */
static int parse_model_type(cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    json_t *mt = json_object_get(d->root, "model_type");
    if (!mt)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: key model_type: missing (expected \"step3_vl\" or \"step3_text\")",
                        d->what);
    if (!json_is_string(mt))
        return afd_errf(err, AFD_E_FORMAT, "%s: key model_type: must be a string, got %s", d->what,
                        json_kind(mt));
    const char *s = json_string_value(mt);
    d->text = d->root;
    d->pre = "";
    if (strcmp(s, "step3_vl") == 0) {
        json_t *tc = json_object_get(d->root, "text_config");
        if (!json_is_object(tc))
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: key text_config: %s (a step3_vl config keeps the text model "
                            "there)",
                            d->what, tc ? "must be an object" : "missing");
        json_t *tmt = json_object_get(tc, "model_type");
        if (tmt && (!json_is_string(tmt) || strcmp(json_string_value(tmt), "step3_text") != 0))
            return afd_errf(err, AFD_E_UNSUPPORTED,
                            "%s: key text_config.model_type: must be \"step3_text\"", d->what);
        d->text = tc;
        d->pre = "text_config.";
    } else if (strcmp(s, "step3_text") != 0) {
        return afd_errf(err, AFD_E_UNSUPPORTED,
                        "%s: key model_type: \"%.40s\" is not supported (step3_vl or step3_text)",
                        d->what, s);
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", s);
    cfg->arch = AFD_ARCH_STEP3;
    return 0;
}

/* max_position_embedding (Step-3's spelling) or max_position_embeddings; both must agree. */
static int parse_max_pos(const cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    char p1[96], p2[96];
    json_t *a = doc_get(d, "max_position_embedding", false, p1, sizeof p1);
    json_t *b = doc_get(d, "max_position_embeddings", false, p2, sizeof p2);
    int va = 0, vb = 0, rc = 0;
    if (a && (rc = key_int(d, p1, a, 1, 1 << 24, &va, err))) return rc;
    if (b && (rc = key_int(d, p2, b, 1, 1 << 24, &vb, err))) return rc;
    if (a && b && va != vb)
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: %d disagrees with %s %d", d->what, p2, vb,
                        p1, va);
    if (a || b) cfg->max_pos = a ? va : vb;
    return 0;
}

/* bos_token_id / eos_token_id: an integer, or a list whose first element is used; null = the
 * default. Looked up in the text part, then at the top level. */
static int parse_token(const cfg_doc *d, const char *key, int *out, afd_err *err) {
    char path[96];
    json_t *v = doc_get(d, key, true, path, sizeof path);
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return afd_errf(err, AFD_E_FORMAT, "%s: key %s: empty list", d->what, path);
        v = json_array_get(v, 0);
    }
    return key_int(d, path, v, 0, (1 << 24) - 1, out, err);
}

static int parse_rope_scaling(const cfg_doc *d, afd_err *err) {
    char path[96];
    json_t *v = doc_get(d, "rope_scaling", false, path, sizeof path);
    if (!v || json_is_null(v)) return 0;
    return afd_errf(err, AFD_E_UNSUPPORTED,
                    "%s: key %s: must be null or absent (Step-3 uses plain RoPE), got %s", d->what,
                    path, json_kind(v));
}

/* torch_dtype (or the newer "dtype"): informational, but checked. */
static int parse_dtype(const cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    static const struct {
        const char *name;
        afd_dtype dt;
    } names[] = {{"bfloat16", AFD_DT_BF16}, {"float16", AFD_DT_F16},
                 {"half", AFD_DT_F16},      {"float32", AFD_DT_F32},
                 {"float", AFD_DT_F32},     {"float8_e4m3fn", AFD_DT_F8_E4M3}};
    char path[96];
    json_t *v = doc_get(d, "torch_dtype", true, path, sizeof path);
    if (!v) v = doc_get(d, "dtype", true, path, sizeof path);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: must be a string, got %s", d->what, path,
                        json_kind(v));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(json_string_value(v), names[i].name) == 0) {
            cfg->dtype = names[i].dt;
            return 0;
        }
    return afd_errf(err, AFD_E_UNSUPPORTED,
                    "%s: key %s: \"%.40s\" is not one of bfloat16, float16, float32, "
                    "float8_e4m3fn",
                    d->what, path, json_string_value(v));
}

/* "missing", "\"fp16\"" or "an integer": what a value is, for messages. */
static const char *value_desc(const json_t *v, char *buf, size_t cap) {
    if (!v) return "missing";
    if (json_is_string(v))
        snprintf(buf, cap, "\"%.40s\"", json_string_value(v));
    else
        snprintf(buf, cap, "%s", json_kind(v));
    return buf;
}

/* quantization_config.<key> must be the string `want` (absent allowed unless required). */
static int quant_string(const cfg_doc *d, json_t *q, const char *qpath, const char *key,
                        const char *want, bool required, afd_err *err) {
    json_t *v = json_object_get(q, key);
    char desc[64];
    if ((!v && !required) || (json_is_string(v) && strcmp(json_string_value(v), want) == 0))
        return 0;
    return afd_errf(err, AFD_E_UNSUPPORTED, "%s: key %s.%s: %s; only \"%s\" is supported", d->what,
                    qpath, key, value_desc(v, desc, sizeof desc), want);
}

static bool is_block_128(json_t *b) {
    return json_is_array(b) && json_array_size(b) == 2 && json_is_integer(json_array_get(b, 0)) &&
           json_is_integer(json_array_get(b, 1)) &&
           json_integer_value(json_array_get(b, 0)) == AFD_FP8_BLOCK &&
           json_integer_value(json_array_get(b, 1)) == AFD_FP8_BLOCK;
}

/* quantization_config: block-FP8 with 128x128 blocks, or nothing. */
static int parse_quant(const cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    char qp[96];
    json_t *q = doc_get(d, "quantization_config", true, qp, sizeof qp);
    if (!q || json_is_null(q)) return 0;
    if (!json_is_object(q))
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: must be an object, got %s", d->what, qp,
                        json_kind(q));
    int rc = quant_string(d, q, qp, "quant_method", "fp8", true, err);
    if (rc == 0) rc = quant_string(d, q, qp, "fmt", "e4m3", false, err);
    if (rc == 0) rc = quant_string(d, q, qp, "activation_scheme", "dynamic", false, err);
    if (rc) return rc;
    json_t *b = json_object_get(q, "weight_block_size");
    if (!is_block_128(b))
        return afd_errf(err, AFD_E_UNSUPPORTED,
                        "%s: key %s.weight_block_size: %s; only [128, 128] block scales are "
                        "supported",
                        d->what, qp, b ? "not [128, 128]" : "missing (per-tensor FP8)");
    cfg->fp8_blocks = true;
    return 0;
}

/* One layer id of moe_layers_enum, checked and recorded. */
static int moe_mark(const cfg_doc *d, const char *path, long long id, afd_model_config *cfg,
                    afd_err *err) {
    if (id < 0 || id >= cfg->n_layers)
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: key %s: layer %lld is outside [0, %d) (num_hidden_layers)", d->what,
                        path, id, cfg->n_layers);
    if (cfg->is_moe[id])
        return afd_errf(err, AFD_E_FORMAT, "%s: key %s: layer %lld is listed twice", d->what, path,
                        id);
    cfg->is_moe[id] = 1;
    return 0;
}

/* "4,5,6" (Step-3's spelling; spaces allowed around ids, "" = no MoE layer). */
static int moe_from_string(const cfg_doc *d, const char *path, const char *s, afd_model_config *cfg,
                           afd_err *err) {
    const char *p = s;
    while (*p == ' ')
        p++;
    if (!*p) return 0;
    for (;;) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long long id = (*p >= '0' && *p <= '9') || *p == '-' ? strtoll(p, &end, 10) : 0;
        if (!((*p >= '0' && *p <= '9') || *p == '-') || end == p || errno)
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: key %s: \"%.60s\" is not a comma-separated list of layer ids",
                            d->what, path, s);
        int rc = moe_mark(d, path, id, cfg, err);
        if (rc) return rc;
        for (p = end; *p == ' '; p++)
            ;
        if (!*p) return 0;
        if (*p++ != ',')
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: key %s: \"%.60s\" is not a comma-separated list of layer ids",
                            d->what, path, s);
    }
}

static int parse_moe_layers(const cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    char path[96];
    json_t *v = doc_get(d, "moe_layers_enum", false, path, sizeof path);
    if (!v) { /* the default, 4..59, cut to the layers that exist */
        for (int i = cfg->n_layers; i < AFD_MAX_LAYERS; i++)
            cfg->is_moe[i] = 0;
        return 0;
    }
    memset(cfg->is_moe, 0, sizeof cfg->is_moe);
    if (json_is_string(v)) return moe_from_string(d, path, json_string_value(v), cfg, err);
    if (!json_is_array(v))
        return afd_errf(err, AFD_E_FORMAT,
                        "%s: key %s: must be a string like \"4,5,6\" or an array of integers, "
                        "got %s",
                        d->what, path, json_kind(v));
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e))
            return afd_errf(err, AFD_E_FORMAT, "%s: key %s: element %zu is %s, not an integer",
                            d->what, path, i, json_kind(e));
        int rc = moe_mark(d, path, (long long)json_integer_value(e), cfg, err);
        if (rc) return rc;
    }
    return 0;
}

/* ==== parse, validate, load ================================================================= */

static int parse_doc(cfg_doc *d, afd_model_config *cfg, afd_err *err) {
    int rc = parse_model_type(d, cfg, err);
    for (size_t i = 0; rc == 0 && i < sizeof keys / sizeof keys[0]; i++)
        rc = key_apply(d, &keys[i], cfg, err);
    if (rc == 0) rc = parse_max_pos(d, cfg, err);
    if (rc == 0) rc = parse_token(d, "bos_token_id", &cfg->bos_id, err);
    if (rc == 0) rc = parse_token(d, "eos_token_id", &cfg->eos_id, err);
    if (rc == 0) rc = parse_rope_scaling(d, err);
    if (rc == 0) rc = parse_dtype(d, cfg, err);
    if (rc == 0) rc = parse_quant(d, cfg, err);
    if (rc == 0) rc = parse_moe_layers(d, cfg, err);
    return rc;
}

int afd_config_parse(const char *json, size_t len, const char *what, afd_model_config *cfg,
                     afd_err *err) {
    afd_config_defaults(cfg);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return afd_errf(err, AFD_E_FORMAT, "%s: line %d, column %d: %s", what, je.line, je.column,
                        je.text);
    int rc = 0;
    if (!json_is_object(root)) rc = afd_errf(err, AFD_E_FORMAT, "%s: not a JSON object", what);
    cfg_doc d = {what, root, root, ""};
    if (rc == 0) rc = parse_doc(&d, cfg, err);
    json_decref(root);
    if (rc) return rc;
    afd_err verr = {0};
    if ((rc = afd_config_validate(cfg, &verr))) return afd_errf(err, rc, "%s: %s", what, verr.msg);
    return 0;
}

int afd_config_validate(const afd_model_config *c, afd_err *err) {
    if (c->arch != AFD_ARCH_STEP3)
        return afd_errf(err, AFD_E_UNSUPPORTED, "key model_type: arch %d unknown", (int)c->arch);
    if (c->n_layers < 1 || c->n_layers > AFD_MAX_LAYERS)
        return afd_errf(err, AFD_E_FORMAT, "key num_hidden_layers: %d is outside [1, %d]",
                        c->n_layers, AFD_MAX_LAYERS);
    const struct {
        const char *key;
        int v;
    } dims[] = {{"hidden_size", c->hidden},
                {"vocab_size", c->vocab},
                {"num_attention_heads", c->n_heads},
                {"num_attention_groups", c->n_kv_heads},
                {"head_dim", c->head_dim},
                {"share_q_dim", c->share_q_dim},
                {"intermediate_size", c->inter_dense},
                {"moe_num_experts", c->n_experts},
                {"moe_top_k", c->top_k},
                {"moe_intermediate_size", c->moe_inter},
                {"share_expert_dim", c->share_inter},
                {"max_position_embedding", c->max_pos}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v < 1)
            return afd_errf(err, AFD_E_FORMAT, "key %s: %d must be positive", dims[i].key,
                            dims[i].v);
    if (c->n_experts > AFD_MAX_EXPERTS || c->top_k > AFD_MAX_TOPK)
        return afd_errf(err, AFD_E_LIMIT,
                        "key moe_num_experts/moe_top_k: %d/%d over the limits %d/%d", c->n_experts,
                        c->top_k, AFD_MAX_EXPERTS, AFD_MAX_TOPK);
    if (c->top_k > c->n_experts)
        return afd_errf(err, AFD_E_FORMAT, "key moe_top_k: %d > moe_num_experts %d", c->top_k,
                        c->n_experts);
    if (c->n_heads % c->n_kv_heads)
        return afd_errf(err, AFD_E_FORMAT,
                        "key num_attention_groups: %d does not divide num_attention_heads %d",
                        c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2)
        return afd_errf(err, AFD_E_FORMAT,
                        "key head_dim: %d must be even (RoPE pairs dim i with i + head_dim/2)",
                        c->head_dim);
    if (c->bos_id < 0 || c->bos_id >= c->vocab)
        return afd_errf(err, AFD_E_FORMAT, "key bos_token_id: %d is outside [0, vocab_size %d)",
                        c->bos_id, c->vocab);
    if (c->eos_id < 0 || c->eos_id >= c->vocab)
        return afd_errf(err, AFD_E_FORMAT, "key eos_token_id: %d is outside [0, vocab_size %d)",
                        c->eos_id, c->vocab);
    if (!(c->rms_eps > 0.0f && isfinite(c->rms_eps)))
        return afd_errf(err, AFD_E_FORMAT, "key rms_norm_eps: %g must be positive", c->rms_eps);
    if (!(c->rope_theta > 0.0 && isfinite(c->rope_theta)))
        return afd_errf(err, AFD_E_FORMAT, "key rope_theta: %g must be positive", c->rope_theta);
    for (int i = c->n_layers; i < AFD_MAX_LAYERS; i++)
        if (c->is_moe[i])
            return afd_errf(err, AFD_E_FORMAT,
                            "key moe_layers_enum: layer %d is outside [0, %d) (num_hidden_layers)",
                            i, c->n_layers);
    return 0;
}

static int read_config_file(const char *path, char **out, size_t *len, afd_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return afd_errf(err, errno == ENOENT ? AFD_E_NOTFOUND : -errno, "%s: %s", path,
                        strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > CFG_MAX_FILE) {
        close(fd);
        return afd_errf(err, AFD_E_LIMIT, "%s: not a regular file of at most %u bytes", path,
                        CFG_MAX_FILE);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            free(buf);
            return afd_errf(err, -e, "%s: read: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

int afd_config_load(const char *path, afd_model_config *cfg, afd_err *err) {
    struct stat sb;
    char file[4096];
    bool exists = stat(path, &sb) == 0;
    size_t n = strlen(path);
    bool json_name = n >= 5 && strcmp(path + n - 5, ".json") == 0;
    /* a directory, or a missing path that does not name a .json file: <path>/config.json */
    if ((exists && S_ISDIR(sb.st_mode)) || (!exists && !json_name))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *text = NULL;
    size_t len = 0;
    int rc = read_config_file(file, &text, &len, err);
    if (rc) {
        afd_config_defaults(cfg);
        return rc;
    }
    rc = afd_config_parse(text, len, file, cfg, err);
    free(text);
    return rc;
}

int afd_config_n_moe(const afd_model_config *cfg) {
    int n = 0;
    for (int i = 0; i < cfg->n_layers && i < AFD_MAX_LAYERS; i++)
        n += cfg->is_moe[i] != 0;
    return n;
}

/* ==== fingerprint =========================================================================== */

static uint64_t fnv_u64(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; i++)
        h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    return h;
}

uint64_t afd_config_hash(const afd_model_config *c) {
    uint32_t eps_bits;
    uint64_t theta_bits;
    memcpy(&eps_bits, &c->rms_eps, 4);
    memcpy(&theta_bits, &c->rope_theta, 8);
    const uint64_t fields[] = {
        (uint64_t)c->arch,        (uint64_t)c->n_layers,
        (uint64_t)c->hidden,      (uint64_t)c->vocab,
        (uint64_t)c->n_heads,     (uint64_t)c->n_kv_heads,
        (uint64_t)c->head_dim,    (uint64_t)c->share_q_dim,
        (uint64_t)c->inter_dense, (uint64_t)c->n_experts,
        (uint64_t)c->top_k,       (uint64_t)c->moe_inter,
        (uint64_t)c->share_inter, (uint64_t)c->norm_expert_weight,
        (uint64_t)eps_bits,       theta_bits,
        (uint64_t)c->max_pos,     (uint64_t)c->bos_id,
        (uint64_t)c->eos_id,      (uint64_t)c->fp8_blocks,
    };
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        h = fnv_u64(h, fields[i]);
    for (int i = 0; i < c->n_layers && i < AFD_MAX_LAYERS; i++)
        h = fnv_u64(h, c->is_moe[i] ? 1 : 0);
    return h;
}
