/* model_mla.c: DeepSeek-V3 / Kimi K2 (MLA attention, DeepSeekMoE) config reader.
 *
 * MLA keys are required (every published MLA config has them); q_lora_rank null means the
 * queries are projected at full rank. n_routed_experts absent or null means a dense model.
 * Layer i is MoE when i >= first_k_dense_replace (default 0) and i % moe_layer_freq == 0
 * (default 1), as the DeepSeek modelling code decides. */
#include "tools/plan/jget.h"
#include "tools/plan/model_family.h"

static int mla_attention(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc;
    m->attn = PLAN_ATTN_MLA;
    m->kv_heads = 1;
    if ((rc = jget_int(cfg, "q_lora_rank", JGET_OPTIONAL, 0, PLAN_MAX_DIM, &m->q_lora_rank, what,
                       err)) < 0 ||
        (rc = jget_int(cfg, "kv_lora_rank", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->kv_lora_rank,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "qk_nope_head_dim", JGET_REQUIRED, 0, PLAN_MAX_DIM, &m->qk_nope_dim,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "qk_rope_head_dim", JGET_REQUIRED, 0, PLAN_MAX_DIM, &m->qk_rope_dim,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "v_head_dim", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->v_head_dim, what,
                       err)) < 0)
        return rc;
    m->head_dim = m->qk_nope_dim + m->qk_rope_dim;
    if (m->head_dim < 1)
        return afd_errf(err, AFD_E_FORMAT, "%s: qk_nope_head_dim + qk_rope_head_dim is 0", what);
    return 0;
}

static int mla_ffn(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc, first_dense = 0, freq = 1;
    if ((rc = jget_int(cfg, "intermediate_size", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->dense_inter,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "n_routed_experts", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->n_experts,
                       what, err)) < 0)
        return rc;
    if (m->n_experts == 0)
        return 0;
    if ((rc = jget_int(cfg, "num_experts_per_tok", JGET_REQUIRED, 1, PLAN_MAX_DIM, &m->top_k,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "moe_intermediate_size", JGET_REQUIRED, 1, PLAN_MAX_DIM,
                       &m->expert_inter, what, err)) < 0 ||
        (rc = jget_int(cfg, "n_shared_experts", JGET_OPTIONAL, 0, PLAN_MAX_DIM, &m->n_shared,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "first_k_dense_replace", JGET_OPTIONAL, 0, PLAN_MAX_DIM,
                       &first_dense, what, err)) < 0 ||
        (rc = jget_int(cfg, "moe_layer_freq", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &freq, what,
                       err)) < 0)
        return rc;
    m->shared_inter = m->expert_inter;
    for (int i = first_dense; i < m->layers; i++)
        m->is_moe[i] = (i % freq) == 0;
    return 0;
}

int plan_read_mla(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc = plan_read_common(cfg, what, m, err);
    if (rc < 0 || (rc = mla_attention(cfg, what, m, err)) < 0)
        return rc;
    return mla_ffn(cfg, what, m, err);
}
