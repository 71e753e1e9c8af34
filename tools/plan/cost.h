/* cost.h: the Step-3 paper's theoretical decoding cost per token (all weights and KV 8-bit).
 *
 * Per decoded token at context C (docs/planning.md derives each line):
 *   kv_bytes     = C x layers x KV bytes per position per layer
 *   attn_flops   = C x layers x 2 x query heads x (QK dim + V dim), as computed (MLA absorbed)
 *   linear_flops = 2 x attention projection parameters per layer x layers
 *   ffn_flops    = 2 x activated FFN parameters (dense layers, top-k and shared experts)
 * On an accelerator at full utilisation:
 *   attention USD = max(attn_flops x USD/FLOP, kv_bytes x USD/byte) + linear_flops x USD/FLOP
 *   FFN USD       = ffn_flops x USD/FLOP
 * and AFD pairs the cheapest attention accelerator with the cheapest FFN accelerator.
 * Pure functions over plain data; thread-safe.
 */
#ifndef AFD_PLAN_COST_H
#define AFD_PLAN_COST_H

#include "tools/plan/hw.h"
#include "tools/plan/model.h"

typedef struct plan_token_cost {
    double context;        /* tokens of context per sequence */
    double kv_bytes;       /* KV cache bytes read per decoded token */
    double attn_flops;     /* attention core (QK^T, PV) FLOPs per decoded token */
    double linear_flops;   /* projections before/after attention, FLOPs per decoded token */
    double ffn_flops;      /* FFN FLOPs per decoded token */
    double attn_intensity; /* attn_flops / kv_bytes (FLOPs per KV byte; context-free) */
} plan_token_cost;

/* USD per decoded token on one accelerator. */
typedef struct plan_hw_cost {
    double attention;  /* max(core compute, KV read) + linear */
    double ffn;
    double total;      /* attention + ffn on this accelerator alone (no AFD) */
    int attn_bound;    /* 1: attention core is compute-bound here, 0: memory-bound */
} plan_hw_cost;

typedef struct plan_afd_choice {
    int attention_hw;  /* index into the table */
    int ffn_hw;
    double usd;        /* per token: cheapest attention + cheapest FFN */
} plan_afd_choice;

void plan_token_cost_compute(const plan_model *m, double context, plan_token_cost *c);
void plan_hw_cost_compute(const plan_token_cost *c, const plan_hw *h, plan_hw_cost *out);
/* Best AFD pairing over the table (ties: first row). The table must not be empty. */
void plan_best_afd(const plan_token_cost *c, const plan_hw_table *t, plan_afd_choice *out);

#endif
