/* model_gqa.c: GQA models (Qwen3-MoE, Qwen2-MoE, Qwen3, Llama, Mixtral-style) config reader.
 *
 * num_key_value_heads defaults to num_attention_heads, head_dim to hidden / heads. Experts come
 * from num_experts (or num_local_experts); without them the model is dense. Layer i is MoE when
 * it is not listed in mlp_only_layers and (i + 1) % decoder_sparse_step == 0 (default step 1),
 * as the Qwen MoE modelling code decides. moe_intermediate_size defaults to intermediate_size;
 * shared_expert_intermediate_size > 0 adds one shared expert of that size. */
#include "tools/plan/jget.h"
#include "tools/plan/model_family.h"

static int gqa_attention(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc;
    m->attn = PLAN_ATTN_GQA;
    m->kv_heads = m->q_heads;
    m->head_dim = m->hidden / m->q_heads;
    if ((rc = jget_int(cfg, "num_key_value_heads", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->kv_heads,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "head_dim", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->head_dim, what,
                       err)) < 0)
        return rc;
    if (m->head_dim < 1)
        return afd_errf(err, AFD_E_FORMAT, "%s: head_dim is absent and hidden_size %d / "
                        "num_attention_heads %d is 0", what, m->hidden, m->q_heads);
    m->v_head_dim = m->head_dim;
    return 0;
}

/* Clears the MoE flag of every layer named in mlp_only_layers. */
static int gqa_mlp_only(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    json_t *arr = json_object_get(cfg, "mlp_only_layers");
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"mlp_only_layers\": expected an array, "
                        "got %s", what, jget_type_name(arr));
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= m->layers)
            return afd_errf(err, AFD_E_FORMAT, "%s: key \"mlp_only_layers\": item %zu is not a "
                            "layer index below %d", what, i, m->layers);
        m->is_moe[json_integer_value(v)] = 0;
    }
    return 0;
}

static int gqa_ffn(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc, step = 1;
    const char *ekey = jget_has(cfg, "num_experts") ? "num_experts" : "num_local_experts";
    if ((rc = jget_int(cfg, "intermediate_size", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->dense_inter,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, ekey, JGET_OPTIONAL, 0, PLAN_MAX_DIM, &m->n_experts, what, err)) < 0)
        return rc;
    if (m->n_experts == 0)
        return 0;
    m->expert_inter = m->dense_inter;
    if ((rc = jget_int(cfg, "num_experts_per_tok", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->top_k,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "moe_intermediate_size", JGET_OPTIONAL, 1, PLAN_MAX_DIM,
                       &m->expert_inter, what, err)) < 0 ||
        (rc = jget_int(cfg, "shared_expert_intermediate_size", JGET_OPTIONAL, 0, PLAN_MAX_DIM,
                       &m->shared_inter, what, err)) < 0 ||
        (rc = jget_int(cfg, "decoder_sparse_step", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &step, what,
                       err)) < 0)
        return rc;
    if (m->expert_inter < 1)
        return afd_errf(err, AFD_E_NOTFOUND, "%s: missing key \"moe_intermediate_size\"", what);
    m->n_shared = m->shared_inter > 0;
    for (int i = 0; i < m->layers; i++)
        m->is_moe[i] = (i + 1) % step == 0;
    return gqa_mlp_only(cfg, what, m, err);
}

int plan_read_gqa(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc = plan_read_common(cfg, what, m, err);
    if (rc < 0 || (rc = gqa_attention(cfg, what, m, err)) < 0)
        return rc;
    return gqa_ffn(cfg, what, m, err);
}
