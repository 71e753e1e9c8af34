/* sparsity.c: network-limited MoE sparsity and FFN batch thresholds. See sparsity.h. */
#include "tools/plan/sparsity.h"

#include <math.h>

void plan_net_opts_default(plan_net_opts *o) {
    o->tpot_s = 0.050;
    o->stages = 3;
    o->dispatch_bytes = 1.0;
    o->combine_bytes = 2.0;
}

double plan_net_budget_s(const plan_net_opts *o) {
    return 2.0 * (o->tpot_s / o->stages) / (o->dispatch_bytes + o->combine_bytes);
}

double plan_min_sparsity(const plan_hw *h, int hidden, int layers, const plan_net_opts *o) {
    return (double)hidden * plan_hw_flops(h) * layers / (h->net_bw * h->mem_bw *
                                                         plan_net_budget_s(o));
}

double plan_b_dense(const plan_hw *h) { return plan_hw_roofline(h) / 2.0; }
double plan_b_moe(const plan_hw *h, double sparsity) { return plan_b_dense(h) / sparsity; }

int plan_min_top_k(const plan_model *m, double s_min) {
    if (m->n_moe_layers == 0 || m->n_experts == 0)
        return 0;
    double shared = (double)m->n_shared * m->shared_inter, ie = m->expert_inter;
    double k = (s_min * ((double)m->n_experts * ie + shared) - shared) / ie;
    int ki = (int)ceil(k - 1e-9);
    return ki < 1 ? 1 : ki;
}
