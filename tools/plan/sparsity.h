/* sparsity.h: the network limit on MoE sparsity and the FFN batch thresholds (paper §5.3-5.4).
 *
 * With AFD every FFN token crosses the network twice per layer: dispatch_bytes x H in (FP8: 1)
 * and combine_bytes x H back (BF16: 2). In an S-stage pipeline with TPOT T, one stage gets T/S
 * for all L layers. An FFN instance needs B_MoE = roofline / (2 S_model) tokens per batch to be
 * compute-bound, so the network keeps up only if
 *   (d + c) H B_MoE / net <= (T / S) / L   <=>   S_model >= (d + c) H F L / (2 net bw T / S)
 * which with d = 1, c = 2, S = 3, T = 50 ms is the paper's S >= H F L / (net bw 11.1 ms).
 *   B_dense = roofline / 2 (tokens per batch for a dense FFN at the roofline knee)
 *   B_MoE   = B_dense / S_model
 * F is the FP8 rate where the card has one. Pure functions; thread-safe.
 */
#ifndef AFD_PLAN_SPARSITY_H
#define AFD_PLAN_SPARSITY_H

#include "tools/plan/hw.h"
#include "tools/plan/model.h"

typedef struct plan_net_opts {
    double tpot_s;         /* TPOT target, seconds (0.05) */
    int stages;            /* pipeline stages (3: A, communication, F) */
    double dispatch_bytes; /* bytes per hidden element attention -> FFN (1: FP8) */
    double combine_bytes;  /* bytes per hidden element FFN -> attention (2: BF16) */
} plan_net_opts;

/* The paper's defaults: 50 ms, 3 stages, FP8 dispatch, BF16 combine. */
void plan_net_opts_default(plan_net_opts *o);
/* The time that takes the place of the paper's 11.1 ms: 2 (T/S) / (d + c), seconds. */
double plan_net_budget_s(const plan_net_opts *o);
/* Minimum MoE sparsity the accelerator's network allows for hidden H and L layers. */
double plan_min_sparsity(const plan_hw *h, int hidden, int layers, const plan_net_opts *o);
/* B_dense = roofline / 2 and B_MoE = B_dense / s (real-valued; callers round up). */
double plan_b_dense(const plan_hw *h);
double plan_b_moe(const plan_hw *h, double sparsity);
/* Smallest top-k at which the model's MoE layers are at least s_min dense (shared experts
 * kept); 0 for a dense model. The paper's (E + 1) s - 1 for one shared expert. */
int plan_min_top_k(const plan_model *m, double s_min);

#endif
