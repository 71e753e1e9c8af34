/* profile.h: measured timings of one deployment, the planner's input (docs/planning.md has the
 * format; bench/profiles/example.json is an example; afd-bench will emit it).
 *
 *   {"format": "afd-profile", "version": 1, "model": "...", "hardware": "...",
 *    "attention": {"samples": [{"batch": B, "context": C, "us": T}, ...],
 *                  "usd_per_hour": 16, "machines": 1, "kv_capacity_tokens": N,
 *                  "max_batch": N, "step_overhead_us": T},
 *    "ffn": {"samples": [{"tokens": N, "us": T}, ...], "shards": 1, "min_instances": 1,
 *            "max_tokens": N, "usd_per_hour": 16, "machines": 1},
 *    "link": {"samples": [{"bytes": N, "us": T}, ...],
 *             "a2f_bytes_per_token": N, "f2a_bytes_per_token": N}}
 * Times are microseconds for ONE layer: attention of B sequences at context C on one attention
 * instance; FFN of N tokens on one FFN instance holding 1/shards of every layer's FFN; one
 * one-way transfer of N bytes out of (or into) one instance. They are fitted as
 *   attention(B, C) = a0 + a1 B + a2 B C,  ffn(N) = f0 + f1 N,  link(N) = l0 + l1 N
 * with non-negative coefficients (fit.h). Plain data; thread-safe.
 */
#ifndef AFD_PLAN_PROFILE_H
#define AFD_PLAN_PROFILE_H

#include <stddef.h>

#include "common/base/err.h"
#include "tools/plan/fit.h"

#define PLAN_PROFILE_MAX_BYTES (16u << 20)
#define PLAN_PROFILE_MAX_SAMPLES 65536

typedef struct plan_profile {
    char model[64], hardware[64];  /* informational labels */
    plan_fit attn;                 /* us = c0 + c1 batch + c2 batch x context */
    plan_fit ffn;                  /* us = c0 + c1 tokens, on one of `ffn_shards` shards */
    plan_fit link;                 /* us = c0 + c1 bytes */
    double attn_batch_range[2], attn_ctx_range[2], ffn_tokens_range[2], link_bytes_range[2];
    int ffn_shards;                /* the measured FFN held 1/ffn_shards of the weights (1) */
    int ffn_min_instances;         /* fewest FFN instances that hold the weights (1) */
    long ffn_max_tokens;           /* largest FFN batch per micro-batch (0: no limit) */
    long attn_kv_capacity;         /* KV tokens one attention instance holds (0: no limit) */
    long attn_max_batch;           /* sequences per attention instance (0: no limit) */
    double attn_usd_per_hour, ffn_usd_per_hour;  /* per instance (1 when absent) */
    int attn_machines, ffn_machines;             /* machines per instance (1) */
    double a2f_bytes_per_token, f2a_bytes_per_token; /* 0: derived from the model */
    double step_overhead_us;       /* per decode step outside the layers (0) */
} plan_profile;

int plan_profile_load(const char *path, plan_profile *p, afd_err *err);
/* Parses len bytes; `what` names the input in messages. */
int plan_profile_parse(const char *json, size_t len, const char *what, plan_profile *p,
                       afd_err *err);

/* Fitted times, microseconds per layer. */
double plan_profile_attn_us(const plan_profile *p, double batch, double context);
double plan_profile_ffn_us(const plan_profile *p, double tokens);
double plan_profile_link_us(const plan_profile *p, double bytes);

#endif
