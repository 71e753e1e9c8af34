/* cost.c: per-token decoding cost. See cost.h and docs/planning.md. */
#include "tools/plan/cost.h"

void plan_token_cost_compute(const plan_model *m, double context, plan_token_cost *c) {
    double positions = context * m->layers;
    c->context = context;
    c->kv_bytes = positions * plan_kv_bytes_per_pos(m);
    c->attn_flops = positions * plan_attn_flops_per_pos(m);
    c->linear_flops = 2.0 * plan_attn_linear_params(m) * m->layers;
    c->ffn_flops = 2.0 * plan_ffn_active_params(m);
    c->attn_intensity = plan_attn_flops_per_pos(m) / plan_kv_bytes_per_pos(m);
}

void plan_hw_cost_compute(const plan_token_cost *c, const plan_hw *h, plan_hw_cost *out) {
    double per_flop = plan_hw_usd_per_flop(h), per_byte = plan_hw_usd_per_byte(h);
    double core = c->attn_flops * per_flop, kv = c->kv_bytes * per_byte;
    out->attn_bound = core >= kv;
    out->attention = (core >= kv ? core : kv) + c->linear_flops * per_flop;
    out->ffn = c->ffn_flops * per_flop;
    out->total = out->attention + out->ffn;
}

void plan_best_afd(const plan_token_cost *c, const plan_hw_table *t, plan_afd_choice *out) {
    double best_a = 0, best_f = 0;
    out->attention_hw = out->ffn_hw = 0;
    for (int i = 0; i < t->n; i++) {
        plan_hw_cost hc;
        plan_hw_cost_compute(c, &t->hw[i], &hc);
        if (i == 0 || hc.attention < best_a) {
            best_a = hc.attention;
            out->attention_hw = i;
        }
        if (i == 0 || hc.ffn < best_f) {
            best_f = hc.ffn;
            out->ffn_hw = i;
        }
    }
    out->usd = best_a + best_f;
}
