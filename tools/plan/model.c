/* model.c: config.json → plan_model (family detection, validation) and the per-token counts
 * every cost formula starts from. See model.h; the formulas are derived in docs/planning.md. */
#include "tools/plan/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/plan/jget.h"
#include "tools/plan/model_family.h"

const char *plan_attn_name(plan_attn_kind k) {
    switch (k) {
    case PLAN_ATTN_MFA: return "MFA";
    case PLAN_ATTN_MLA: return "MLA";
    case PLAN_ATTN_GQA: return "GQA";
    }
    return "?";
}

int plan_read_common(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc;
    if ((rc = jget_int(cfg, "num_hidden_layers", JGET_REQUIRED, 1, PLAN_MAX_LAYERS, &m->layers,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "hidden_size", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->hidden, what,
                       err)) < 0 ||
        (rc = jget_int(cfg, "num_attention_heads", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->q_heads,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "vocab_size", JGET_OPTIONAL, 0, PLAN_MAX_DIM, &m->vocab, what,
                       err)) < 0 ||
        (rc = jget_bool(cfg, "tie_word_embeddings", JGET_OPTIONAL, &m->tied, what, err)) < 0)
        return rc;
    return 0;
}

/* The object holding the language model's keys: text_config when the top level has none. */
static const json_t *model_text_part(const json_t *root) {
    const json_t *text = json_object_get(root, "text_config");
    if (json_is_object(text) && !json_object_get(root, "hidden_size"))
        return text;
    return root;
}

static bool model_type_is(const char *type, const char *const *list) {
    for (; *list; list++)
        if (strcmp(type, *list) == 0)
            return true;
    return false;
}

/* Picks the family from model_type, then from the keys that only one family has. */
static int model_pick_reader(const json_t *cfg, const char *type, const char *what,
                             int (**reader)(const json_t *, const char *, plan_model *,
                                            afd_err *),
                             afd_err *err) {
    static const char *const step3[] = {"step3_vl", "step3_text", NULL};
    static const char *const mla[] = {"deepseek_v2", "deepseek_v3", "kimi_k2", NULL};
    if (model_type_is(type, step3) || jget_has(cfg, "share_q_dim") ||
        jget_has(cfg, "num_attention_groups") || jget_has(cfg, "moe_layers_enum"))
        *reader = plan_read_step3;
    else if (model_type_is(type, mla) || jget_has(cfg, "kv_lora_rank"))
        *reader = plan_read_mla;
    else if (jget_has(cfg, "num_attention_heads"))
        *reader = plan_read_gqa;
    else
        return afd_errf(err, AFD_E_UNSUPPORTED,
                        "%s: model_type \"%s\" is not a known family and the file has none of "
                        "share_q_dim, kv_lora_rank or num_attention_heads",
                        what, type);
    return 0;
}

static int model_from_json(const json_t *root, const char *what, plan_model *m, afd_err *err) {
    const json_t *cfg = model_text_part(root);
    const char *type = "unknown";
    int (*reader)(const json_t *, const char *, plan_model *, afd_err *) = NULL;
    int rc;
    if ((rc = jget_string(cfg, "model_type", JGET_OPTIONAL, &type, what, err)) < 0)
        return rc;
    if (cfg != root && strcmp(type, "unknown") == 0 &&
        (rc = jget_string(root, "model_type", JGET_OPTIONAL, &type, what, err)) < 0)
        return rc;
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", type);
    if ((rc = model_pick_reader(cfg, type, what, &reader, err)) < 0 ||
        (rc = reader(cfg, what, m, err)) < 0)
        return rc;
    return plan_model_validate(m, what, err);
}

int plan_model_parse(const char *json, size_t len, const char *what, plan_model *m,
                     afd_err *err) {
    json_t *root = jget_load_buf(json, len, what, err);
    if (!root)
        return err ? err->code : AFD_E_FORMAT;
    int rc = model_from_json(root, what, m, err);
    json_decref(root);
    return rc;
}

int plan_model_load(const char *path, plan_model *m, afd_err *err) {
    char file[4096];
    struct stat st;
    bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    int n = snprintf(file, sizeof(file), dir ? "%s/config.json" : "%s", path);
    if (n < 0 || (size_t)n >= sizeof(file))
        return afd_errf(err, AFD_E_LIMIT, "model path longer than %zu bytes", sizeof(file) - 1);
    json_t *root = jget_load_file(file, PLAN_CONFIG_MAX_BYTES, err);
    if (!root)
        return err ? err->code : AFD_E_FORMAT;
    int rc = model_from_json(root, file, m, err);
    json_decref(root);
    return rc;
}

static int model_validate_ffn(const plan_model *m, const char *what, afd_err *err) {
    int n_moe = 0;
    for (int i = 0; i < m->layers; i++)
        n_moe += m->is_moe[i] != 0;
    if (n_moe < m->layers && m->dense_inter < 1)
        return afd_errf(err, AFD_E_NOTFOUND, "%s: %d dense layers but no intermediate_size",
                        what, m->layers - n_moe);
    if (n_moe == 0)
        return 0;
    if (m->top_k > m->n_experts)
        return afd_errf(err, AFD_E_FORMAT, "%s: %d experts per token but only %d experts", what,
                        m->top_k, m->n_experts);
    if (m->expert_inter < 1)
        return afd_errf(err, AFD_E_FORMAT, "%s: MoE layers without an expert intermediate size",
                        what);
    return 0;
}

int plan_model_validate(plan_model *m, const char *what, afd_err *err) {
    if (m->layers < 1 || m->layers > PLAN_MAX_LAYERS || m->hidden < 1 || m->q_heads < 1)
        return afd_errf(err, AFD_E_FORMAT, "%s: layers, hidden_size and heads must be positive",
                        what);
    if (m->kv_heads < 1 || m->head_dim < 1 || m->v_head_dim < 1)
        return afd_errf(err, AFD_E_FORMAT, "%s: attention head sizes must be positive", what);
    if (m->attn == PLAN_ATTN_GQA && m->q_heads % m->kv_heads != 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: num_attention_heads %d is not a multiple of "
                        "num_key_value_heads %d", what, m->q_heads, m->kv_heads);
    int rc = model_validate_ffn(m, what, err);
    if (rc < 0)
        return rc;
    m->n_moe_layers = 0;
    for (int i = 0; i < m->layers; i++)
        m->n_moe_layers += m->is_moe[i] != 0;
    return 0;
}

/* ---- per-token counts ------------------------------------------------------------------- */

double plan_kv_bytes_per_pos(const plan_model *m) {
    if (m->attn == PLAN_ATTN_MLA)
        return (double)m->kv_lora_rank + m->qk_rope_dim;
    return (double)m->kv_heads * (m->head_dim + m->v_head_dim);
}

double plan_attn_flops_per_pos(const plan_model *m) {
    if (m->attn == PLAN_ATTN_MLA) {
        /* absorbed: scores and values both live in the latent+rope space */
        double d = (double)m->kv_lora_rank + m->qk_rope_dim;
        return 2.0 * m->q_heads * (d + d);
    }
    return 2.0 * m->q_heads * ((double)m->head_dim + m->v_head_dim);
}

/* Q (possibly low-rank), K, V and O projections of MFA and GQA. */
static double model_qkvo_params(const plan_model *m) {
    double h = m->hidden, qw = (double)m->q_heads * m->head_dim;
    double q = m->q_lora_rank > 0 ? h * m->q_lora_rank + (double)m->q_lora_rank * qw : h * qw;
    double kv = h * m->kv_heads * ((double)m->head_dim + m->v_head_dim);
    double o = (double)m->q_heads * m->v_head_dim * h;
    return q + kv + o;
}

/* MLA in absorbed form: q_a/q_b (or q), kv_a, W_UK folded into the query, W_UV after the
 * latent attention, o_proj. */
static double model_mla_params(const plan_model *m) {
    double h = m->hidden, heads = m->q_heads, r = m->q_lora_rank;
    double qw = heads * m->head_dim;
    double q = r > 0 ? h * r + r * qw : h * qw;
    double kv_a = h * ((double)m->kv_lora_rank + m->qk_rope_dim);
    double uk = heads * m->qk_nope_dim * m->kv_lora_rank;
    double uv = heads * (double)m->kv_lora_rank * m->v_head_dim;
    double o = heads * m->v_head_dim * h;
    return q + kv_a + uk + uv + o;
}

double plan_attn_linear_params(const plan_model *m) {
    return m->attn == PLAN_ATTN_MLA ? model_mla_params(m) : model_qkvo_params(m);
}

/* SwiGLU experts have gate, up and down: 3 x hidden x intermediate each. */
static double model_moe_active(const plan_model *m) {
    return 3.0 * m->hidden * ((double)m->top_k * m->expert_inter +
                              (double)m->n_shared * m->shared_inter);
}

double plan_ffn_active_params(const plan_model *m) {
    double dense = 3.0 * m->hidden * (double)m->dense_inter;
    return m->n_moe_layers * model_moe_active(m) + (m->layers - m->n_moe_layers) * dense;
}

double plan_model_sparsity(const plan_model *m) {
    if (m->n_moe_layers == 0 || m->n_experts == 0)
        return 1.0;
    double shared = (double)m->n_shared * m->shared_inter;
    return ((double)m->top_k * m->expert_inter + shared) /
           ((double)m->n_experts * m->expert_inter + shared);
}

void plan_model_params(const plan_model *m, plan_params *p) {
    double h = m->hidden, dense = 3.0 * h * m->dense_inter;
    double moe_all = 3.0 * h * ((double)m->n_experts * m->expert_inter +
                                (double)m->n_shared * m->shared_inter);
    double router = h * m->n_experts * m->n_moe_layers;
    int n_dense = m->layers - m->n_moe_layers;
    p->attention = m->layers * plan_attn_linear_params(m);
    p->ffn_total = m->n_moe_layers * moe_all + n_dense * dense + router;
    p->ffn_active = plan_ffn_active_params(m) + router;
    p->embedding = (double)m->vocab * h * (m->tied ? 1 : 2);
    p->total = p->attention + p->ffn_total + p->embedding;
    p->active = p->attention + p->ffn_active + p->embedding;
}
