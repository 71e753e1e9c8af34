/* model_step3.c: Step-3 (MFA attention, MoE with a shared expert) config reader.
 *
 * Absent keys take the defaults of Step-3's published configuration class (the full-size
 * model); moe_layers_enum, when absent, is "every layer but the first four and the last"
 * (4..59 at 61 layers, the published default). */
#include <stdlib.h>
#include <string.h>

#include "tools/plan/jget.h"
#include "tools/plan/model_family.h"

/* Marks the layers named by "4,5,6" (string) or [4, 5, 6] (array). */
static int step3_moe_layers_string(const char *s, const char *what, plan_model *m,
                                   afd_err *err) {
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= m->layers)
            return afd_errf(err, AFD_E_FORMAT,
                            "%s: key \"moe_layers_enum\": \"%s\" is not a comma-separated list "
                            "of layer indices below num_hidden_layers %d",
                            what, s, m->layers);
        m->is_moe[v] = 1;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p)
            return afd_errf(err, AFD_E_FORMAT, "%s: key \"moe_layers_enum\": unexpected '%c' in "
                            "\"%s\"", what, *p, s);
    }
    return 0;
}

static int step3_moe_layers_array(const json_t *arr, const char *what, plan_model *m,
                                  afd_err *err) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= m->layers)
            return afd_errf(err, AFD_E_FORMAT, "%s: key \"moe_layers_enum\": item %zu is not a "
                            "layer index below %d", what, i, m->layers);
        m->is_moe[json_integer_value(v)] = 1;
    }
    return 0;
}

static int step3_moe_layers(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    json_t *v = json_object_get(cfg, "moe_layers_enum");
    if (!v || json_is_null(v)) {
        for (int i = 4; i < m->layers - 1; i++)
            m->is_moe[i] = 1;
        return 0;
    }
    if (json_is_string(v))
        return step3_moe_layers_string(json_string_value(v), what, m, err);
    if (json_is_array(v))
        return step3_moe_layers_array(v, what, m, err);
    return afd_errf(err, AFD_E_FORMAT, "%s: key \"moe_layers_enum\": expected a string like "
                    "\"4,5,6\" or an array, got %s", what, jget_type_name(v));
}

int plan_read_step3(const json_t *cfg, const char *what, plan_model *m, afd_err *err) {
    int rc = plan_read_common(cfg, what, m, err);
    if (rc < 0)
        return rc;
    m->attn = PLAN_ATTN_MFA;
    m->kv_heads = 1;
    m->head_dim = 256;
    m->q_lora_rank = 2048;
    m->dense_inter = 18432;
    m->n_experts = 48;
    m->top_k = 3;
    m->expert_inter = 5120;
    m->shared_inter = 5120;
    if (!m->vocab)
        m->vocab = 128815;
    if ((rc = jget_int(cfg, "num_attention_groups", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->kv_heads,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "head_dim", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->head_dim, what,
                       err)) < 0 ||
        (rc = jget_int(cfg, "share_q_dim", JGET_OPTIONAL, 0, PLAN_MAX_DIM, &m->q_lora_rank, what,
                       err)) < 0 ||
        (rc = jget_int(cfg, "intermediate_size", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->dense_inter,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "moe_num_experts", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->n_experts,
                       what, err)) < 0 ||
        (rc = jget_int(cfg, "moe_top_k", JGET_OPTIONAL, 1, PLAN_MAX_DIM, &m->top_k, what,
                       err)) < 0 ||
        (rc = jget_int(cfg, "moe_intermediate_size", JGET_OPTIONAL, 1, PLAN_MAX_DIM,
                       &m->expert_inter, what, err)) < 0 ||
        (rc = jget_int(cfg, "share_expert_dim", JGET_OPTIONAL, 0, PLAN_MAX_DIM,
                       &m->shared_inter, what, err)) < 0)
        return rc;
    m->v_head_dim = m->head_dim;
    m->n_shared = m->shared_inter > 0;
    return step3_moe_layers(cfg, what, m, err);
}
