/* planner.h: choose attention/FFN instance counts, micro-batches and batch for a TPOT target.
 *
 * The model of one decode step (docs/planning.md derives it from DESIGN.md §3 and the paper):
 * each attention instance runs m micro-batches of b sequences; per layer a micro-batch goes
 * A (attention, fitted from the profile) -> A2F -> F (FFN on the n_ffn instances, which batch
 * the n_attn x b tokens of that micro-batch) -> F2A -> next layer. The stations form a closed
 * cycle that m micro-batches circulate through, so one layer of every micro-batch takes
 *   cycle = max(sum of stage times, m x slowest stage)
 * and TPOT = layers x cycle + step overhead. With 3 stages the communication station is
 * A2F + F2A (the paper's A / communication / F, DESIGN §3); with 4 they are separate.
 * Throughput is n_attn x m x b tokens per TPOT. For each (n_attn, n_ffn, m) the largest b that
 * meets the target and the capacity limits is taken (every fitted time grows with b, so a
 * binary search is exact), and the layout with the most tokens/s per machine (or per dollar)
 * wins; ties go to fewer machines, then fewer micro-batches, then lower TPOT.
 * Pure functions over plain data; thread-safe.
 */
#ifndef AFD_PLAN_PLANNER_H
#define AFD_PLAN_PLANNER_H

#include <stdbool.h>

#include "tools/plan/model.h"
#include "tools/plan/profile.h"

typedef enum plan_objective { PLAN_PER_MACHINE = 0, PLAN_PER_DOLLAR = 1 } plan_objective;

typedef struct plan_search_opts {
    double tpot_us;            /* TPOT target, microseconds (50000) */
    double context;            /* average context length per sequence, tokens (4096) */
    int stages;                /* 3 or 4 (3) */
    plan_objective objective;  /* PLAN_PER_MACHINE */
    int max_attn, max_ffn;     /* instance counts searched: 1..max (64 each) */
    int max_micro;             /* micro-batches searched: 1..max (8) */
    long max_batch;            /* sequences per micro-batch per attention instance (1 << 20) */
    int fix_attn, fix_ffn, fix_micro; /* > 0: search only that value */
} plan_search_opts;

typedef struct plan_layout {
    int n_attn, n_ffn, micro;
    long batch;                /* sequences per micro-batch per attention instance */
} plan_layout;

typedef struct plan_estimate {
    plan_layout l;
    double t_attn, t_a2f, t_ffn, t_f2a; /* us per layer per micro-batch */
    double t_cycle;            /* us per layer for all micro-batches */
    double tpot_us;
    double tokens_per_s;       /* whole deployment */
    int machines;
    double usd_per_hour;
    double per_machine;        /* tokens/s per machine */
    double usd_per_mtok;       /* USD per million decoded tokens */
    double a2f_bytes, f2a_bytes; /* per token on the wire */
    const char *bottleneck;    /* "attention", "ffn", "communication", "a2f", "f2a" or
                                  "latency" (pipeline not full: the stage sum binds) */
    const char *limit;         /* what capped the batch: "tpot", "kv_capacity", "max_batch",
                                  "ffn_max_tokens" or "search_bound" */
} plan_estimate;

void plan_search_opts_default(plan_search_opts *o);
/* Wire bytes per token: the profile's, else FP8 hidden + fp32 scale per 128 + 8 bytes per
 * routed expert (id, weight) for A2F and BF16 hidden for F2A. */
double plan_a2f_bytes(const plan_model *m, const plan_profile *p);
double plan_f2a_bytes(const plan_model *m, const plan_profile *p);
/* Stage times, cycle and rates of one layout (no feasibility check). */
void plan_estimate_layout(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                          const plan_layout *l, plan_estimate *e);
/* Largest batch the capacity limits allow for (n_attn, n_ffn, micro); 0 if none. *why names
 * the binding limit. */
long plan_batch_cap(const plan_profile *p, const plan_search_opts *o, const plan_layout *l,
                    const char **why);
/* The best layout. 0, or AFD_E_NOTFOUND with *err explaining why nothing meets the target.
 * *evaluated (may be NULL) counts the layouts tried. */
int plan_search(const plan_model *m, const plan_profile *p, const plan_search_opts *o,
                plan_estimate *best, long *evaluated, afd_err *err);

#endif
