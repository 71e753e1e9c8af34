/* planner.c: the 3-stage (or 4-stage) AFD pipeline model and the layout search. See planner.h
 * and docs/planning.md. */
#include "tools/plan/planner.h"

#include <math.h>
#include <stdio.h>

void plan_search_opts_default(plan_search_opts *o) {
    *o = (plan_search_opts){
        .tpot_us = 50000.0,
        .context = 4096.0,
        .stages = 3,
        .objective = PLAN_PER_MACHINE,
        .max_attn = 64,
        .max_ffn = 64,
        .max_micro = 8,
        .max_batch = 1L << 20,
    };
}

double plan_a2f_bytes(const plan_model *m, const plan_profile *p) {
    if (p->a2f_bytes_per_token > 0)
        return p->a2f_bytes_per_token;
    double scales = 4.0 * ((m->hidden + 127) / 128);
    double routing = m->n_moe_layers > 0 ? 8.0 * m->top_k : 0.0;
    return m->hidden + scales + routing;
}

double plan_f2a_bytes(const plan_model *m, const plan_profile *p) {
    return p->f2a_bytes_per_token > 0 ? p->f2a_bytes_per_token : 2.0 * m->hidden;
}

/* Names the slowest station, or "latency" when the stage sum sets the cycle. */
static const char *plan_bottleneck(const plan_estimate *e, int stages, double sum, double mx) {
    if (e->l.micro * mx < sum)
        return "latency";
    if (mx == e->t_attn)
        return "attention";
    if (mx == e->t_ffn)
        return "ffn";
    if (stages == 3)
        return "communication";
    return mx == e->t_a2f ? "a2f" : "f2a";
}

/* Stage times of one micro-batch for one layer. */
static void plan_stage_times(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                             plan_estimate *e) {
    const plan_layout *l = &e->l;
    double b = (double)l->batch, tokens = (double)l->n_attn * b;
    double fan = l->n_attn > l->n_ffn ? l->n_attn : l->n_ffn;
    e->a2f_bytes = plan_a2f_bytes(m, p);
    e->f2a_bytes = plan_f2a_bytes(m, p);
    e->t_attn = plan_profile_attn_us(p, b, o->context);
    e->t_ffn = plan_profile_ffn_us(p, tokens) * p->ffn_shards / l->n_ffn;
    e->t_a2f = plan_profile_link_us(p, b * e->a2f_bytes * fan);
    e->t_f2a = plan_profile_link_us(p, b * e->f2a_bytes * fan);
}

void plan_estimate_layout(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                          const plan_layout *l, plan_estimate *e) {
    e->l = *l;
    e->limit = "tpot";
    plan_stage_times(m, p, o, e);
    double comm = e->t_a2f + e->t_f2a;
    double sum = e->t_attn + comm + e->t_ffn;
    double mx = fmax(e->t_attn, e->t_ffn);
    mx = o->stages == 3 ? fmax(mx, comm) : fmax(mx, fmax(e->t_a2f, e->t_f2a));
    e->t_cycle = fmax(sum, l->micro * mx);
    e->tpot_us = m->layers * e->t_cycle + p->step_overhead_us;
    e->tokens_per_s = (double)l->n_attn * l->micro * l->batch / (e->tpot_us * 1e-6);
    e->machines = l->n_attn * p->attn_machines + l->n_ffn * p->ffn_machines;
    e->usd_per_hour = l->n_attn * p->attn_usd_per_hour + l->n_ffn * p->ffn_usd_per_hour;
    e->per_machine = e->tokens_per_s / e->machines;
    e->usd_per_mtok = e->usd_per_hour / 3600.0 / e->tokens_per_s * 1e6;
    e->bottleneck = plan_bottleneck(e, o->stages, sum, mx);
}

static void plan_cap(long *cap, const char **why, long v, const char *name) {
    if (v < *cap) {
        *cap = v;
        *why = name;
    }
}

long plan_batch_cap(const plan_profile *p, const plan_search_opts *o, const plan_layout *l,
                    const char **why) {
    long cap = o->max_batch;
    *why = "search_bound";
    if (p->attn_max_batch > 0)
        plan_cap(&cap, why, p->attn_max_batch / l->micro, "max_batch");
    if (p->attn_kv_capacity > 0) {
        double per_seq = (double)l->micro * (o->context > 1 ? o->context : 1);
        plan_cap(&cap, why, (long)floor((double)p->attn_kv_capacity / per_seq), "kv_capacity");
    }
    if (p->ffn_max_tokens > 0)
        plan_cap(&cap, why, p->ffn_max_tokens / l->n_attn, "ffn_max_tokens");
    return cap > 0 ? cap : 0;
}

static bool plan_meets(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                       plan_layout *l, long batch, plan_estimate *e) {
    l->batch = batch;
    plan_estimate_layout(m, p, o, l, e);
    return e->tpot_us <= o->tpot_us * (1 + 1e-12);
}

/* Largest feasible batch for the layout by bisection; false if even batch 1 misses. */
static bool plan_best_batch(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                            plan_layout *l, plan_estimate *e) {
    const char *why;
    long hi = plan_batch_cap(p, o, l, &why), lo = 1;
    if (hi < 1 || !plan_meets(m, p, o, l, 1, e))
        return false;
    if (plan_meets(m, p, o, l, hi, e)) {
        e->limit = why;
        return true;
    }
    while (hi - lo > 1) { /* lo meets, hi does not */
        long mid = lo + (hi - lo) / 2;
        if (plan_meets(m, p, o, l, mid, e))
            lo = mid;
        else
            hi = mid;
    }
    return plan_meets(m, p, o, l, lo, e);
}

static double plan_value(const plan_estimate *e, plan_objective obj) {
    return obj == PLAN_PER_DOLLAR ? e->tokens_per_s * 3600.0 / e->usd_per_hour : e->per_machine;
}

/* a better than b? */
static bool plan_better(const plan_estimate *a, const plan_estimate *b, plan_objective obj) {
    double va = plan_value(a, obj), vb = plan_value(b, obj);
    if (fabs(va - vb) > 1e-9 * fmax(va, vb))
        return va > vb;
    if (a->machines != b->machines)
        return a->machines < b->machines;
    if (a->l.micro != b->l.micro)
        return a->l.micro < b->l.micro;
    return a->tpot_us < b->tpot_us;
}

static void plan_range(int fix, int lo, int hi, int *from, int *to) {
    *from = fix > 0 ? fix : lo;
    *to = fix > 0 ? fix : hi;
}

/* The fastest TPOT any searched layout reaches at batch 1, for the error message. */
static void plan_explain(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                         int f0, afd_err *err) {
    plan_layout l = {1, f0, 1, 1};
    plan_estimate e;
    plan_estimate_layout(m, p, o, &l, &e);
    afd_errf(err, AFD_E_NOTFOUND,
             "no layout meets TPOT %.3f ms: with 1 attention instance, %d FFN instance(s), 1 "
             "micro-batch and batch 1 a token already takes %.3f ms (attention %.1f us, FFN "
             "%.1f us, A2F %.1f us, F2A %.1f us per layer x %d layers); raise --tpot-ms, or "
             "check the capacity limits and search bounds",
             o->tpot_us / 1000, f0, e.tpot_us / 1000, e.t_attn, e.t_ffn, e.t_a2f, e.t_f2a,
             m->layers);
}

int plan_search(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                plan_estimate *best, long *evaluated, afd_err *err) {
    int a0, a1, f0, f1, m0, m1;
    long n = 0;
    bool found = false;
    plan_range(o->fix_attn, 1, o->max_attn, &a0, &a1);
    plan_range(o->fix_ffn, p->ffn_min_instances, o->max_ffn, &f0, &f1);
    plan_range(o->fix_micro, 1, o->max_micro, &m0, &m1);
    if (o->stages != 3 && o->stages != 4)
        return afd_errf(err, AFD_E_FORMAT, "pipeline stages must be 3 or 4, got %d", o->stages);
    if (f0 > f1)
        return afd_errf(err, AFD_E_NOTFOUND, "the profile needs at least %d FFN instances "
                        "(ffn.min_instances) but at most %d are searched", f0, f1);
    if (a0 > a1 || m0 > m1 || !(o->tpot_us > 0) || o->max_batch < 1)
        return afd_errf(err, AFD_E_FORMAT, "empty search: check the TPOT target and the "
                        "attention, micro-batch and batch bounds");
    for (int a = a0; a <= a1; a++)
        for (int f = f0; f <= f1; f++)
            for (int mi = m0; mi <= m1; mi++) {
                plan_layout l = {a, f, mi, 0};
                plan_estimate e;
                n++;
                if (plan_best_batch(m, p, o, &l, &e) && (!found || plan_better(&e, best,
                                                                               o->objective))) {
                    *best = e;
                    found = true;
                }
            }
    if (evaluated)
        *evaluated = n;
    if (!found)
        plan_explain(m, p, o, f0 > 0 ? f0 : 1, err);
    return found ? 0 : AFD_E_NOTFOUND;
}
