/* afd-plan planner: the pipeline model on hand-computed layouts and the search on a synthetic
 * profile whose optimum is derived by hand below. */
#include "tests/unit/plan/plan_test.h"

#include "tools/plan/fit.c"
#include "tools/plan/planner.c"
#include "tools/plan/profile.c"


/* A dense 10-layer model (the planner only needs layers, hidden and top-k from it). */
static const char *toy_model = "{\"model_type\": \"llama\", \"hidden_size\": 1024, "
                               "\"num_hidden_layers\": 10, \"num_attention_heads\": 8, "
                               "\"intermediate_size\": 4096}";

/* Samples lying exactly on
 *   attention(b, c) = 10 + 1 b          us   (no context term)
 *   ffn(N)          = 20 + 0.5 N        us   (one shard holds the whole FFN)
 *   link(bytes)     = 1 + 0.0001 bytes  us
 * with 1000 bytes per token A2F and 2000 F2A. For A attention and F FFN instances, m
 * micro-batches of b sequences, per layer (fan-out M = max(A, F)):
 *   t_A = 10 + b,  t_F = (20 + 0.5 A b) / F,  t_C = A2F + F2A = 2 + 0.3 b M
 *   cycle = max(t_A + t_C + t_F, m x max(t_A, t_C, t_F)),  TPOT = 10 x cycle.
 * With TPOT <= 10.001 ms (cycle <= 1000.1 us), A, F <= 2, m <= 4:
 *   1A1F: m=1 b=537 (32+1.8b), m=2 b=490 (20+2b), m=3 b=323, m=4 b=240 -> best m=2:
 *         980 tok / 10.000 ms = 98000 tok/s, 49000 per machine
 *   2A1F: t_F = 20 + b is the max; m=1 b=372, m=2 b=372 (32+2.6b), m=3 b=313 (60+3b),
 *         m=4 b=230 -> best m=3: 1878 tok / 9.990 ms = 187988 tok/s, 62663 per machine
 *   1A2F: best m=2 b=490: 98000 tok/s, 32667 per machine
 *   2A2F: m=2 b=465 (22+2.1b), m=3 b=323 (30+3b) -> best m=3: 1938 tok / 9.99 ms,
 *         48498 per machine
 * so per machine the optimum is 2A1F, m=3, b=313. */
static const char *toy_profile =
    "{\"format\": \"afd-profile\", \"version\": 1,"
    " \"attention\": {\"samples\": [{\"batch\": 1, \"context\": 1000, \"us\": 11},"
    "   {\"batch\": 100, \"context\": 1000, \"us\": 110}, {\"batch\": 100, \"context\": 4000,"
    "   \"us\": 110}, {\"batch\": 400, \"context\": 2000, \"us\": 410}, {\"batch\": 800,"
    "   \"context\": 8000, \"us\": 810}]},"
    " \"ffn\": {\"samples\": [{\"tokens\": 10, \"us\": 25}, {\"tokens\": 100, \"us\": 70},"
    "   {\"tokens\": 1000, \"us\": 520}, {\"tokens\": 2000, \"us\": 1020}]},"
    " \"link\": {\"samples\": [{\"bytes\": 1000, \"us\": 1.1}, {\"bytes\": 100000, \"us\": 11},"
    "   {\"bytes\": 1000000, \"us\": 101}, {\"bytes\": 10000000, \"us\": 1001}],"
    "   \"a2f_bytes_per_token\": 1000, \"f2a_bytes_per_token\": 2000}}";

static plan_model model;
static plan_profile prof;
static plan_search_opts opts;

static void setup(void) {
    afd_err err = {0};
    plan_test_parse(toy_model, &model);
    cr_assert_eq(plan_profile_parse(toy_profile, strlen(toy_profile), "toy", &prof, &err), 0,
                 "%s", err.msg);
    plan_search_opts_default(&opts);
    opts.tpot_us = 10001;
    opts.context = 4096;
    opts.max_attn = opts.max_ffn = 2;
    opts.max_micro = 4;
}

TestSuite(plan_search, .init = setup, .timeout = 10);

Test(plan_search, stage_times_of_one_layout_by_hand) {
    plan_layout l = {2, 1, 3, 313};
    plan_estimate e;
    plan_estimate_layout(&model, &prof, &opts, &l, &e);
    plan_assert_near(e.t_attn, 323, 1e-6, "t_A = 10 + 313");
    plan_assert_near(e.t_ffn, 333, 1e-6, "t_F = 20 + 0.5 x 626");
    plan_assert_near(e.t_a2f, 1 + 0.1 * 313 * 2, 1e-6, "A2F");
    plan_assert_near(e.t_f2a, 1 + 0.2 * 313 * 2, 1e-6, "F2A");
    plan_assert_near(e.t_cycle, 999, 1e-6, "cycle = 3 x 333");
    plan_assert_near(e.tpot_us, 9990, 1e-5, "TPOT = 10 layers x 999");
    plan_assert_near(e.tokens_per_s, 1878 / 9990e-6, 1e-3, "2 x 3 x 313 per TPOT");
    cr_assert_eq(e.machines, 3);
    plan_assert_near(e.per_machine, 1878 / 9990e-6 / 3, 1e-3, "per machine");
    cr_assert_str_eq(e.bottleneck, "ffn");
}

Test(plan_search, an_unfilled_pipeline_is_latency_bound) {
    plan_layout l = {1, 1, 1, 100};
    plan_estimate e;
    plan_estimate_layout(&model, &prof, &opts, &l, &e);
    /* 110 + 32 + 70 */
    plan_assert_near(e.t_cycle, 212, 1e-6, "cycle = sum of stages");
    cr_assert_str_eq(e.bottleneck, "latency");
}

Test(plan_search, three_and_four_stages_differ_when_communication_binds) {
    plan_layout l = {4, 4, 4, 100};
    plan_estimate e;
    /* t_A 110, A2F 1 + 0.1 x 400 = 41, F2A 1 + 0.2 x 400 = 81, t_F (20 + 200) / 4 = 55 */
    plan_estimate_layout(&model, &prof, &opts, &l, &e);
    plan_assert_near(e.t_cycle, 4 * 122, 1e-6, "3 stages: A2F + F2A is one station");
    cr_assert_str_eq(e.bottleneck, "communication");
    opts.stages = 4;
    plan_estimate_layout(&model, &prof, &opts, &l, &e);
    plan_assert_near(e.t_cycle, 4 * 110, 1e-6, "4 stages: attention is the slowest");
    cr_assert_str_eq(e.bottleneck, "attention");
}

Test(plan_search, finds_the_hand_derived_optimum_per_machine) {
    plan_estimate best;
    afd_err err = {0};
    long n = 0;
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2 * 2 * 4, "layouts tried %ld", n);
    cr_assert_eq(best.l.n_attn, 2, "attention instances %d", best.l.n_attn);
    cr_assert_eq(best.l.n_ffn, 1, "FFN instances %d", best.l.n_ffn);
    cr_assert_eq(best.l.micro, 3, "micro-batches %d", best.l.micro);
    cr_assert_eq(best.l.batch, 313, "batch %ld", best.l.batch);
    plan_assert_near(best.tpot_us, 9990, 1e-5, "predicted TPOT");
    plan_assert_near(best.per_machine, 62662.66, 0.01, "tokens/s per machine");
    cr_assert_str_eq(best.limit, "tpot");
}

Test(plan_search, finds_the_hand_derived_optimum_per_dollar) {
    /* attention $10/h, FFN $0.1/h: per USD/h, 1A1F m=2 (98000 / 10.1 = 9703) beats 1A2F m=2
     * (98000 / 10.2 = 9608), 2A2F m=3 (193994 / 20.2 = 9604) and 2A1F m=3 (187988 / 20.1) */
    plan_estimate best;
    afd_err err = {0};
    prof.attn_usd_per_hour = 10;
    prof.ffn_usd_per_hour = 0.1;
    opts.objective = PLAN_PER_DOLLAR;
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(best.l.n_attn, 1, "attention instances %d", best.l.n_attn);
    cr_assert_eq(best.l.n_ffn, 1, "FFN instances %d", best.l.n_ffn);
    cr_assert_eq(best.l.micro, 2, "micro-batches %d", best.l.micro);
    cr_assert_eq(best.l.batch, 490, "batch %ld", best.l.batch);
    plan_assert_near(best.usd_per_mtok, 10.1 / 3600 / 98000 * 1e6, 1e-9, "USD per 1M tokens");
}

Test(plan_search, fixed_values_are_respected) {
    plan_estimate best;
    afd_err err = {0};
    opts.fix_attn = 1;
    opts.fix_ffn = 2;
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(best.l.n_attn, 1);
    cr_assert_eq(best.l.n_ffn, 2);
    cr_assert_eq(best.l.micro, 2, "1A2F is best at m=2, got %d", best.l.micro);
    cr_assert_eq(best.l.batch, 490);
}

Test(plan_search, capacity_limits_cap_the_batch) {
    plan_estimate best;
    afd_err err = {0};
    const char *why;
    plan_layout l = {2, 1, 3, 0};
    prof.attn_kv_capacity = 3 * 100 * 4096; /* 100 sequences per micro-batch at m = 3 */
    cr_assert_eq(plan_batch_cap(&prof, &opts, &l, &why), 100);
    cr_assert_str_eq(why, "kv_capacity");
    prof.attn_max_batch = 3 * 50;
    cr_assert_eq(plan_batch_cap(&prof, &opts, &l, &why), 50);
    cr_assert_str_eq(why, "max_batch");
    prof.ffn_max_tokens = 60; /* 2 attention instances x 30 */
    cr_assert_eq(plan_batch_cap(&prof, &opts, &l, &why), 30);
    cr_assert_str_eq(why, "ffn_max_tokens");
    opts.fix_attn = 2;
    opts.fix_ffn = 1;
    opts.fix_micro = 3;
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(best.l.batch, 30, "batch %ld", best.l.batch);
    cr_assert_str_eq(best.limit, "ffn_max_tokens");
}

Test(plan_search, ffn_min_instances_and_shards_scale_the_ffn) {
    plan_layout l = {2, 2, 3, 313};
    plan_estimate e;
    prof.ffn_shards = 2; /* the profile measured half of the FFN */
    plan_estimate_layout(&model, &prof, &opts, &l, &e);
    plan_assert_near(e.t_ffn, 333, 1e-6, "half the FFN on each of 2 instances: as measured");
    prof.ffn_min_instances = 3;
    plan_estimate best;
    afd_err err = {0};
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), AFD_E_NOTFOUND);
    cr_assert(strstr(err.msg, "min_instances") != NULL, "%s", err.msg);
}

Test(plan_search, an_impossible_target_is_explained) {
    plan_estimate best;
    afd_err err = {0};
    opts.tpot_us = 100; /* batch 1 needs 10 x (11 + 20.5 + 2.3) us */
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), AFD_E_NOTFOUND);
    cr_assert(strstr(err.msg, "no layout meets TPOT 0.100 ms") != NULL, "%s", err.msg);
    opts.tpot_us = 10001;
    opts.stages = 5;
    cr_assert_eq(plan_search(&model, &prof, &opts, &best, NULL, &err), AFD_E_FORMAT);
}

Test(plan_search, wire_bytes_default_from_the_model) {
    plan_profile p = prof;
    p.a2f_bytes_per_token = p.f2a_bytes_per_token = 0;
    /* dense model: FP8 hidden + fp32 scale per 128 elements; BF16 back */
    cr_assert_eq(plan_a2f_bytes(&model, &p), 1024 + 4 * 8.0);
    cr_assert_eq(plan_f2a_bytes(&model, &p), 2048.0);
    plan_model step3;
    plan_test_load("models/step3/config.json", &step3);
    /* + top-3 expert ids and weights */
    cr_assert_eq(plan_a2f_bytes(&step3, &p), 7168 + 4 * 56.0 + 8 * 3);
}
