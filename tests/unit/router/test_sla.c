/* The router's SLA module: the step-time model, admission, the queue, TPOT accounting, the
 * config rows. The simulation is in test_sla_sim.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/sla.h"

#define MS  1000000ull
#define SEC 1000000000ull

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) { /* xorshift64*, [0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* A config whose model is exactly the prior (huge weight, no forgetting, no residual margin):
 * step = 5 ms + 0.5 ms per sequence; limit 45 ms, so up to 80 sequences fit. */
static sla_config fixed_cfg(void) {
    sla_config c;
    sla_config_default(&c);
    c.prior_step_us = 5000;
    c.prior_seq_us = 500;
    c.prior_kctx_us = 0;
    c.prior_prefill_us = 0;
    c.prior_weight = 1e9;
    c.forget = 1.0;
    c.resid_quantile = 0;
    c.prefill_chunk = 0;
    c.target_ms = 50;
    c.margin = 0.1;
    c.queue_max = 4;
    c.queue_wait_ms = 1000;
    c.stale_ms = 2000;
    return c;
}

static ctrl_load mkload(uint32_t id, uint32_t running, uint64_t step) {
    return (ctrl_load){.instance_id = id,
                       .role = CTRL_ROLE_BOTH,
                       .micro_batches = 1,
                       .step = step,
                       .running = running,
                       .kv_blocks_free = 1000,
                       .kv_blocks_total = 1000,
                       .block_size = 16,
                       .ctx_tokens = (uint64_t)running * 100};
}

static sla_inst *mkinst(sla *s, uint32_t id, uint32_t running, uint64_t now) {
    sla_inst *in = sla_inst_add(s, id);
    sla_inst_set_ready(in, true);
    ctrl_load l = mkload(id, running, 1);
    cr_assert_eq(sla_report(s, in, &l, now), 0);
    return in;
}

static sla_req mkreq(uint32_t prompt, uint32_t max) {
    return (sla_req){.prompt_len = prompt, .max_tokens = max};
}

static int submit(sla *s, sla_req *r, uint64_t now, sla_event *ev) {
    cr_assert_eq(sla_submit(s, r, now, ev), 0);
    cr_assert_eq(ev->req, r);
    return ev->kind;
}

/* ---- the model ------------------------------------------------------------------------------ */

static const double truth[SLA_NFEAT] = {4e6, 3e5, 200, 5e4}; /* ns, /seq, /ctx, /prefill */

static double sample(const double c[SLA_NFEAT], double noise, double *b, double *ctx, double *p) {
    *b = 1 + floor(urand() * 128);
    *ctx = *b * (100 + urand() * 3900);
    *p = urand() < 0.6 ? 0 : 1 + floor(urand() * 512);
    double y = c[0] + c[1] * *b + c[2] * *ctx + c[3] * *p;
    return y * (1 + noise * (2 * urand() - 1));
}

static void feed(sla_model *m, const double c[SLA_NFEAT], double noise, int n) {
    for (int i = 0; i < n; i++) {
        double b, ctx, p, y = sample(c, noise, &b, &ctx, &p);
        sla_model_update(m, b, ctx, p, y);
    }
}

static void assert_coef_near(const sla_model *m, const double want[SLA_NFEAT], double rel) {
    double got[SLA_NFEAT];
    sla_model_coef(m, got);
    for (int i = 0; i < SLA_NFEAT; i++)
        cr_assert(fabs(got[i] - want[i]) <= rel * want[i], "coef %d: got %g want %g (+-%g%%)", i,
                  got[i], want[i], rel * 100);
}

Test(sla_model, prior_before_reports) {
    sla_model m;
    double prior[SLA_NFEAT] = {1e6, 2e5, 10, 3e4};
    sla_model_init(&m, prior, 10, 0.99, 90);
    double got = sla_model_predict(&m, 10, 1000, 100);
    double want = 1e6 + 2e6 + 1e4 + 3e6;
    cr_assert(fabs(got - want) < 1e-6 * want, "got %g want %g", got, want);
    cr_assert_eq(sla_model_margin_ns(&m), 0.0);
}

Test(sla_model, recovers_known_coefficients_from_noisy_reports) {
    sla_model m;
    double prior[SLA_NFEAT] = {10e6, 1e5, 1000, 1e3}; /* deliberately wrong */
    sla_model_init(&m, prior, 10, 0.995, 90);
    feed(&m, truth, 0.02, 3000);
    assert_coef_near(&m, truth, 0.05);
    /* uniform +-2% noise: the p90 of |residual| is near 1.8% of a typical step (~30 ms) */
    double margin = sla_model_margin_ns(&m);
    cr_assert(margin > 1e5 && margin < 2e6, "margin %g ns", margin);
}

Test(sla_model, adapts_after_a_change) {
    sla_model m;
    sla_model_init(&m, truth, 10, 0.99, 90);
    feed(&m, truth, 0.01, 1000);
    double changed[SLA_NFEAT] = {8e6, 4.5e5, 200, 5e4};
    feed(&m, changed, 0.01, 600);
    assert_coef_near(&m, changed, 0.05);
}

Test(sla_model, coefficients_stay_non_negative) {
    sla_model m;
    double prior[SLA_NFEAT] = {1e6, 1e5, 100, 1e3};
    sla_model_init(&m, prior, 1, 0.99, 90);
    /* step time that falls with batch (noise, warm-up): the slope is clamped at 0, the rest
     * still fits the data */
    for (int i = 0; i < 500; i++) {
        double b = 1 + (i % 64);
        sla_model_update(&m, b, 0, 0, 20e6 - 1e4 * b);
    }
    double c[SLA_NFEAT];
    sla_model_coef(&m, c);
    for (int i = 0; i < SLA_NFEAT; i++)
        cr_assert(c[i] >= 0, "coef %d = %g", i, c[i]);
    cr_assert_eq(c[1], 0.0, "per-seq coef %g", c[1]);
    double y = sla_model_predict(&m, 32, 0, 0);
    cr_assert(fabs(y - (20e6 - 32e4)) < 0.03 * 20e6, "prediction %g", y);
}

Test(sla_model, unexcited_direction_keeps_the_prior) {
    sla_model m;
    double prior[SLA_NFEAT] = {1e6, 1e5, 100, 1e3};
    sla_model_init(&m, prior, 10, 0.99, 90);
    for (int i = 0; i < 2000; i++) { /* context always 0, no prefill */
        double b = 1 + (i % 32);
        sla_model_update(&m, b, 0, 0, 2e6 + 3e5 * b);
    }
    double c[SLA_NFEAT];
    sla_model_coef(&m, c);
    cr_assert(fabs(c[2] - 100) < 1, "ctx coef %g (prior 100)", c[2]);
    cr_assert(fabs(c[1] - 3e5) < 3e3, "seq coef %g", c[1]);
}

/* ---- admission ------------------------------------------------------------------------------ */

Test(sla_admit, picks_the_instance_with_most_headroom) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    mkinst(s, 1, 30, 0);
    sla_inst *b = mkinst(s, 2, 10, 0);
    mkinst(s, 3, 50, 0);
    sla_req r = mkreq(100, 100);
    sla_event ev;
    cr_assert_eq(submit(s, &r, 1 * MS, &ev), SLA_EV_ADMIT);
    cr_assert_eq(ev.inst, b);
    cr_assert_eq(ev.inst_id, 2u);
    cr_assert_eq(r.state, SLA_RS_RUNNING);
    sla_pred p;
    sla_inst_predict(s, b, 100, 100, 1 * MS, &p);
    cr_assert_eq(p.batch, 12u, "batch with the pending one and the next: %u", p.batch);
    cr_assert(fabs(p.step_ns - 11e6) < 1, "step %g", p.step_ns);
    sla_req_finish(s, &r, 2 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, refuses_when_the_prediction_exceeds_the_target) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 80, 0); /* 81 sequences: 45.5 ms > 45 ms */
    sla_req r = mkreq(100, 100);
    cr_assert_null(sla_pick(s, &r, 1 * MS));
    sla_pred p;
    sla_inst_predict(s, in, 100, 100, 1 * MS, &p);
    cr_assert(p.eligible && !p.fits, "eligible %d fits %d", p.eligible, p.fits);
    cr_assert(fabs(p.step_ns - 45.5e6) < 1 && fabs(p.limit_ns - 45e6) < 1, "step %g limit %g",
              p.step_ns, p.limit_ns);
    sla_event ev;
    cr_assert_eq(submit(s, &r, 1 * MS, &ev), SLA_EV_QUEUED);
    cr_assert_eq(r.state, SLA_RS_QUEUED);
    ctrl_load l = mkload(1, 79, 2); /* one fewer: 80 fit exactly */
    cr_assert_eq(sla_report(s, in, &l, 2 * MS), 0);
    sla_event evs[4];
    cr_assert_eq(sla_poll(s, 2 * MS, evs, 4), 1);
    cr_assert_eq(evs[0].kind, SLA_EV_ADMIT);
    cr_assert_eq(evs[0].req, &r);
    sla_req_finish(s, &r, 3 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, counts_pending_admissions) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 75, 0); /* room for 5 more */
    sla_req r[7];
    sla_event ev;
    for (int i = 0; i < 7; i++) {
        r[i] = mkreq(100, 100);
        int want = i < 5 ? SLA_EV_ADMIT : SLA_EV_QUEUED;
        cr_assert_eq(submit(s, &r[i], 1 * MS, &ev), want, "request %d", i);
    }
    sla_counts n;
    sla_get_counts(s, &n);
    cr_assert_eq(n.admitted, 5u);
    cr_assert_eq(n.running, 5u);
    cr_assert_eq(n.waiting, 2u);
    /* acknowledged and then counted by a report: the pending five become part of it */
    for (int i = 0; i < 5; i++)
        sla_req_ack(s, &r[i], 2 * MS);
    ctrl_load l = mkload(1, 80, 2);
    cr_assert_eq(sla_report(s, in, &l, 3 * MS), 0);
    sla_pred p;
    sla_inst_predict(s, in, 100, 100, 3 * MS, &p);
    cr_assert_eq(p.batch, 81u, "not counted twice: %u", p.batch);
    /* an unacknowledged pending one survives a report */
    sla_req_finish(s, &r[0], 4 * MS, SLA_END_OK); /* departure until the next report */
    sla_event evs[4];
    cr_assert_eq(sla_poll(s, 4 * MS, evs, 4), 1);
    cr_assert_eq(evs[0].req, &r[5], "FIFO head first");
    ctrl_load l2 = mkload(1, 79, 3); /* r[5] not acked yet: still pending on top */
    cr_assert_eq(sla_report(s, in, &l2, 5 * MS), 0);
    sla_inst_predict(s, in, 100, 100, 5 * MS, &p);
    cr_assert_eq(p.batch, 81u, "79 reported + 1 pending + 1: %u", p.batch);
    for (int i = 1; i < 6; i++)
        sla_req_finish(s, &r[i], 6 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, needs_free_kv_blocks) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *in = sla_inst_add(s, 1);
    sla_inst_set_ready(in, true);
    ctrl_load l = mkload(1, 1, 1);
    l.kv_blocks_free = 20; /* 320 tokens */
    l.kv_blocks_total = 40;
    cr_assert_eq(sla_report(s, in, &l, 0), 0);
    sla_req a = mkreq(200, 120), b = mkreq(100, 60), big = mkreq(600, 100);
    sla_event ev;
    cr_assert_eq(submit(s, &a, 1 * MS, &ev), SLA_EV_ADMIT); /* 320 tokens = 20 blocks */
    cr_assert_eq(submit(s, &b, 1 * MS, &ev), SLA_EV_QUEUED);
    sla_req_finish(s, &b, 1 * MS, SLA_END_CANCELLED);
    /* over the whole pool of every instance: 400 at once */
    cr_assert_eq(submit(s, &big, 1 * MS, &ev), SLA_EV_REJECT);
    cr_assert_eq(ev.reason, SLA_REJ_TOO_LARGE);
    cr_assert_eq(ev.http_status, 400);
    cr_assert_eq(big.state, SLA_RS_IDLE);
    /* a need over 32 bits of blocks is not truncated into a small one */
    sla_inst *one = sla_inst_add(s, 2);
    sla_inst_set_ready(one, true);
    ctrl_load l1 = mkload(2, 0, 1);
    l1.block_size = 1;
    cr_assert_eq(sla_report(s, one, &l1, 0), 0);
    sla_req huge = mkreq(100, UINT32_MAX);
    sla_pred p;
    sla_inst_predict(s, one, huge.prompt_len, huge.max_tokens, 1 * MS, &p);
    cr_assert_eq(p.kv_need, 100 + (uint64_t)UINT32_MAX);
    cr_assert(!p.fits);
    cr_assert_eq(submit(s, &huge, 1 * MS, &ev), SLA_EV_REJECT);
    cr_assert_eq(ev.reason, SLA_REJ_TOO_LARGE);
    /* with a growth cap only part of max_tokens is reserved */
    sla_free(s);
    c.kv_growth_cap = 20;
    s = sla_init(&c);
    in = sla_inst_add(s, 1);
    sla_inst_set_ready(in, true);
    cr_assert_eq(sla_report(s, in, &l, 0), 0);
    a = mkreq(200, 120);
    b = mkreq(100, 60);
    cr_assert_eq(submit(s, &a, 1 * MS, &ev), SLA_EV_ADMIT);  /* 220 tokens = 14 blocks */
    cr_assert_eq(submit(s, &b, 1 * MS, &ev), SLA_EV_QUEUED); /* 120 = 8 > 6 left */
    sla_req_finish(s, &b, 1 * MS, SLA_END_CANCELLED);
    sla_req_finish(s, &a, 1 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, prefill_step_is_checked) {
    sla_config c = fixed_cfg();
    c.prior_prefill_us = 50; /* 256 prefill tokens: +12.8 ms */
    c.prefill_chunk = 256;
    sla *s = sla_init(&c);
    mkinst(s, 1, 60, 0); /* decode with one more: 35.5 ms; with a full chunk: 48.3 ms */
    sla_req shortp = mkreq(100, 10), longp = mkreq(4000, 10);
    cr_assert_not_null(sla_pick(s, &shortp, 1 * MS)); /* 35.5 + 5 = 40.5 ms */
    cr_assert_null(sla_pick(s, &longp, 1 * MS));
    sla_free(s);
    /* prompts still in prefill make every coming step carry a full chunk */
    s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 40, 0);
    sla_pred p;
    sla_inst_predict(s, in, 10, 10, 1 * MS, &p);
    cr_assert(fabs(p.step_ns - 26.0e6) < 1, "no backlog: %g", p.step_ns); /* 5 + 20.5 + 0.5 */
    sla_event ev;
    cr_assert_eq(submit(s, &longp, 1 * MS, &ev), SLA_EV_ADMIT); /* 25.5 + 12.8 = 38.3 ms */
    sla_inst_predict(s, in, 10, 10, 1 * MS, &p);
    cr_assert(fabs(p.step_ns - 38.8e6) < 1, "backlog: %g", p.step_ns); /* 5 + 21 + 12.8 */
    sla_req_ack(s, &longp, 2 * MS);
    ctrl_load l = mkload(1, 41, 2);
    cr_assert_eq(sla_report(s, in, &l, 3 * MS), 0);
    sla_req_tokens(s, &longp, 1, 4 * MS); /* its prefill is done */
    sla_inst_predict(s, in, 10, 10, 4 * MS, &p);
    cr_assert(fabs(p.step_ns - 26.5e6) < 1, "backlog gone: %g", p.step_ns);
    sla_req_finish(s, &longp, 5 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, worst_case_context_is_more_conservative) {
    sla_config c = fixed_cfg();
    c.prior_kctx_us = 1000; /* 1 ms per 1000 context tokens */
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 10, 0); /* 1000 context tokens */
    sla_pred mid, worst;
    sla_inst_predict(s, in, 1000, 2000, 0, &mid);
    cr_assert_eq(mid.ctx, 1000u + 1000 + 1000, "midpoint ctx %lu", (unsigned long)mid.ctx);
    sla_free(s);
    c.ctx_estimate = SLA_CTX_WORST;
    s = sla_init(&c);
    in = mkinst(s, 1, 10, 0);
    sla_inst_predict(s, in, 1000, 2000, 0, &worst);
    cr_assert_eq(worst.ctx, 1000u + 1000 + 2000, "worst ctx %lu", (unsigned long)worst.ctx);
    cr_assert(worst.step_ns - mid.step_ns > 0.99e6, "worst %g mid %g", worst.step_ns, mid.step_ns);
    sla_free(s);
}

Test(sla_admit, skips_stale_draining_not_ready_and_prefill_only) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *stale = mkinst(s, 1, 1, 0); /* busy, last report at 0 */
    sla_inst *idle = mkinst(s, 2, 0, 0);  /* idle: its report stays valid */
    sla_inst *busy = mkinst(s, 3, 40, 2900 * MS);
    sla_req r = mkreq(10, 10);
    uint64_t now = 3000 * MS; /* stale_ms 2000 */
    sla_pred p;
    sla_inst_predict(s, stale, 10, 10, now, &p);
    cr_assert(!p.eligible, "stale instance eligible");
    sla_inst_predict(s, idle, 10, 10, now, &p);
    cr_assert(p.eligible, "idle instance not eligible");
    cr_assert_eq(sla_pick(s, &r, now), idle);
    /* an idle instance with a heartbeat goes stale when the heartbeat stops */
    sla_inst_touch(idle, 500 * MS);
    cr_assert_eq(sla_pick(s, &r, now), busy);
    sla_inst_touch(idle, now);
    sla_inst_set_draining(idle, true);
    cr_assert_eq(sla_pick(s, &r, now), busy);
    sla_inst_set_draining(idle, false);
    sla_inst_set_ready(idle, false);
    cr_assert_eq(sla_pick(s, &r, now), busy);
    sla_inst_set_ready(idle, true);
    ctrl_load l = mkload(2, 0, 2);
    l.role = CTRL_ROLE_PREFILL;
    cr_assert_eq(sla_report(s, idle, &l, now), 0);
    cr_assert_eq(sla_pick(s, &r, now), busy);
    l.role = CTRL_ROLE_DECODE;
    l.draining = true;
    cr_assert_eq(sla_report(s, idle, &l, now), 0);
    cr_assert_eq(sla_pick(s, &r, now), busy);
    /* the stale one comes back with a report */
    ctrl_load ls = mkload(1, 1, 5);
    cr_assert_eq(sla_report(s, stale, &ls, now), 0);
    cr_assert_eq(sla_pick(s, &r, now), stale);
    sla_free(s);
}

Test(sla_admit, idle_instance_admits_one_even_over_target) {
    sla_config c = fixed_cfg();
    c.prior_step_us = 80000; /* 80 ms for one sequence: the target cannot be met */
    sla *s = sla_init(&c);
    mkinst(s, 1, 0, 0);
    sla_req a = mkreq(10, 10), b = mkreq(10, 10);
    sla_event ev;
    cr_assert_eq(submit(s, &a, 1 * MS, &ev), SLA_EV_ADMIT);
    cr_assert_eq(submit(s, &b, 1 * MS, &ev), SLA_EV_QUEUED);
    sla_req_finish(s, &b, 1 * MS, SLA_END_CANCELLED);
    sla_req_finish(s, &a, 1 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, disabled_admits_to_least_loaded_regardless) {
    sla_config c = fixed_cfg();
    c.enable = false;
    sla *s = sla_init(&c);
    mkinst(s, 1, 200, 0);
    sla_inst *b = mkinst(s, 2, 150, 0); /* both far over the target */
    sla_req r[3];
    sla_event ev;
    for (int i = 0; i < 3; i++) {
        r[i] = mkreq(100, 100);
        cr_assert_eq(submit(s, &r[i], 1 * MS, &ev), SLA_EV_ADMIT, "request %d", i);
        cr_assert_eq(ev.inst, b);
    }
    for (int i = 0; i < 3; i++)
        sla_req_finish(s, &r[i], 2 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_admit, bad_calls) {
    sla *s = sla_init(NULL);
    sla_req r = mkreq(0, 10);
    sla_event ev;
    cr_assert_eq(sla_submit(s, &r, 0, &ev), AFD_E_FORMAT);
    r = mkreq(10, 0);
    cr_assert_eq(sla_submit(s, &r, 0, &ev), AFD_E_FORMAT);
    r = mkreq(10, 10);
    cr_assert_eq(submit(s, &r, 0, &ev), SLA_EV_QUEUED); /* no instance yet */
    cr_assert_eq(sla_submit(s, &r, 0, &ev), AFD_E_STATE);
    sla_inst *in = sla_inst_add(s, 1);
    cr_assert_eq(sla_inst_add(s, 1), in);
    ctrl_load l = mkload(1, 0, 1);
    l.block_size = 0;
    cr_assert_eq(sla_report(s, in, &l, 0), AFD_E_FORMAT);
    l = mkload(1, 0, 1);
    l.kv_blocks_reserved = 1; /* free 1000 + 1 > total 1000 */
    cr_assert_eq(sla_report(s, in, &l, 0), AFD_E_FORMAT);
    sla_config c;
    sla_config_default(&c);
    c.margin = 2;
    sla *bad = NULL;
    afd_err err = {0};
    cr_assert_eq(sla_init_checked(&c, &bad, &err), AFD_E_FORMAT);
    cr_assert(strstr(err.msg, "sla_margin"), "%s", err.msg);
    cr_assert_null(bad);
    sla_free(s); /* with r queued: unlinked */
    cr_assert_eq(r.state, SLA_RS_IDLE);
}

Test(sla_admit, refused_request_can_be_resubmitted) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *a = mkinst(s, 1, 10, 0);
    sla_inst *b = mkinst(s, 2, 20, 0);
    sla_req r = mkreq(100, 100);
    sla_event ev;
    cr_assert_eq(submit(s, &r, 5 * MS, &ev), SLA_EV_ADMIT);
    cr_assert_eq(ev.inst, a);
    sla_req_finish(s, &r, 6 * MS, SLA_END_REFUSED);
    cr_assert_eq(r.state, SLA_RS_IDLE);
    sla_pred p;
    sla_inst_predict(s, a, 100, 100, 6 * MS, &p);
    cr_assert_eq(p.batch, 11u, "pending released: %u", p.batch);
    sla_inst_set_draining(a, true);
    cr_assert_eq(submit(s, &r, 7 * MS, &ev), SLA_EV_ADMIT);
    cr_assert_eq(ev.inst, b);
    cr_assert_eq(r.t_arrive, 5 * MS, "arrival kept: %lu", (unsigned long)r.t_arrive);
    sla_counts n;
    sla_get_counts(s, &n);
    cr_assert_eq(n.refused, 1u);
    cr_assert_eq(n.running, 1u);
    /* the instance goes away: the request stays running without it */
    sla_inst_remove(s, b);
    cr_assert_null(r.inst);
    cr_assert_eq(r.state, SLA_RS_RUNNING);
    sla_req_finish(s, &r, 8 * MS, SLA_END_ERROR);
    sla_get_counts(s, &n);
    cr_assert_eq(n.finished, 1u);
    cr_assert_eq(n.goodput, 0u);
    sla_free(s);
}

/* ---- the queue ------------------------------------------------------------------------------ */

Test(sla_queue, fifo_bounded_and_admitted_after_a_departure) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 79, 0); /* room for one */
    sla_req first = mkreq(10, 10), q[5];
    sla_event ev;
    cr_assert_eq(submit(s, &first, 1 * MS, &ev), SLA_EV_ADMIT);
    sla_req_ack(s, &first, 1 * MS);
    for (int i = 0; i < 4; i++) {
        q[i] = mkreq(10, 10);
        cr_assert_eq(submit(s, &q[i], (2 + i) * MS, &ev), SLA_EV_QUEUED);
    }
    q[4] = mkreq(10, 10);
    cr_assert_eq(submit(s, &q[4], 6 * MS, &ev), SLA_EV_REJECT); /* queue_max 4 */
    cr_assert_eq(ev.reason, SLA_REJ_QUEUE_FULL);
    cr_assert_eq(ev.http_status, 429);
    cr_assert(ev.retry_after_s >= 1 && ev.retry_after_s <= 60, "retry %u", ev.retry_after_s);
    cr_assert_eq(q[4].state, SLA_RS_IDLE);
    sla_event evs[8];
    cr_assert_eq(sla_poll(s, 7 * MS, evs, 8), 0);
    ctrl_load l = mkload(1, 80, 2);
    cr_assert_eq(sla_report(s, in, &l, 8 * MS), 0);
    sla_req_tokens(s, &first, 1, 9 * MS);
    sla_req_finish(s, &first, 10 * MS, SLA_END_OK); /* one departs: one place */
    cr_assert_eq(sla_poll(s, 10 * MS, evs, 8), 1);
    cr_assert_eq(evs[0].req, &q[0]);
    cr_assert_eq(evs[0].kind, SLA_EV_ADMIT);
    /* two more depart by the next report (q[0] still pending): the next two in order */
    l = mkload(1, 77, 3);
    cr_assert_eq(sla_report(s, in, &l, 11 * MS), 0);
    cr_assert_eq(sla_poll(s, 11 * MS, evs, 1), 1); /* max 1 event per call */
    cr_assert_eq(evs[0].req, &q[1]);
    cr_assert_eq(sla_poll(s, 11 * MS, evs, 8), 1);
    cr_assert_eq(evs[0].req, &q[2]);
    cr_assert_eq(q[3].state, SLA_RS_QUEUED);
    for (int i = 0; i < 4; i++)
        sla_req_finish(s, &q[i], 12 * MS, SLA_END_CANCELLED);
    sla_counts n;
    sla_get_counts(s, &n);
    cr_assert_eq(n.waiting, 0u);
    cr_assert_eq(n.running, 0u);
    cr_assert_eq(n.queued, 4u);
    cr_assert_eq(n.rejected[SLA_REJ_QUEUE_FULL], 1u);
    sla_free(s);
}

Test(sla_queue, new_requests_do_not_overtake_queued_ones) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    sla_inst *in = sla_inst_add(s, 1);
    sla_inst_set_ready(in, true);
    ctrl_load l = mkload(1, 70, 1);
    l.kv_blocks_free = 500;
    cr_assert_eq(sla_report(s, in, &l, 0), 0);
    /* big does not fit in the free KV (but in the pool); small would, but waits behind it */
    sla_req big = mkreq(10000, 10), small = mkreq(10, 10);
    sla_event ev;
    cr_assert_eq(submit(s, &big, 1 * MS, &ev), SLA_EV_QUEUED);
    cr_assert_eq(submit(s, &small, 2 * MS, &ev), SLA_EV_QUEUED);
    cr_assert_eq(sla_next_deadline(s), 1001 * MS);
    sla_event evs[4];
    cr_assert_eq(sla_poll(s, 3 * MS, evs, 4), 0);
    /* big expires; small is admitted on the next poll */
    cr_assert_eq(sla_poll(s, 1001 * MS, evs, 4), 1);
    cr_assert_eq(evs[0].req, &big);
    cr_assert_eq(evs[0].kind, SLA_EV_REJECT);
    cr_assert_eq(sla_poll(s, 1001 * MS, evs, 4), 1);
    cr_assert_eq(evs[0].req, &small);
    cr_assert_eq(evs[0].kind, SLA_EV_ADMIT);
    sla_req_finish(s, &small, 1002 * MS, SLA_END_CANCELLED);
    sla_free(s);
}

Test(sla_queue, expiry_rejects_with_a_retry_after_from_departures) {
    sla_config c = fixed_cfg();
    c.queue_max = 10;
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 60, 0);
    /* 20 departures over 10 s: 2 per second */
    sla_req d[20];
    sla_event ev;
    for (int i = 0; i < 20; i++) {
        d[i] = mkreq(10, 10);
        ctrl_load li = mkload(1, 60, 10 + (uint64_t)i); /* reports keep it fresh */
        cr_assert_eq(sla_report(s, in, &li, (uint64_t)i * 500 * MS), 0);
        cr_assert_eq(submit(s, &d[i], (uint64_t)i * 500 * MS, &ev), SLA_EV_ADMIT, "%d", i);
        sla_req_finish(s, &d[i], (uint64_t)i * 500 * MS + 1, SLA_END_OK);
    }
    ctrl_load l = mkload(1, 80, 99); /* now full */
    cr_assert_eq(sla_report(s, in, &l, 9 * SEC), 0);
    sla_req q[4];
    for (int i = 0; i < 4; i++) {
        q[i] = mkreq(10, 10);
        cr_assert_eq(submit(s, &q[i], 9 * SEC, &ev), SLA_EV_QUEUED);
    }
    sla_event evs[8];
    cr_assert_eq(sla_poll(s, 9 * SEC + 999 * MS, evs, 8), 0);
    uint64_t now = 10 * SEC; /* queue_wait_ms 1000; 20 departures in the 10 s since the first */
    cr_assert_eq(sla_retry_after_s(s, now, 3), 2u, "4 places at 2/s");
    cr_assert_eq(sla_poll(s, now, evs, 8), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(evs[i].req, &q[i]);
        cr_assert_eq(evs[i].kind, SLA_EV_REJECT);
        cr_assert_eq(evs[i].reason, SLA_REJ_TIMEOUT);
        cr_assert_eq(evs[i].http_status, 429);
        cr_assert_eq(evs[i].retry_after_s, 1u, "all at the head in turn: %u", evs[i].retry_after_s);
        cr_assert_eq(q[i].state, SLA_RS_IDLE);
    }
    sla_counts n;
    sla_get_counts(s, &n);
    cr_assert_eq(n.rejected[SLA_REJ_TIMEOUT], 4u);
    cr_assert_eq(n.finished, 20u);
    sla_free(s);
}

Test(sla_queue, no_ready_instance_is_503) {
    sla_config c = fixed_cfg();
    c.queue_wait_ms = 3000;
    sla *s = sla_init(&c);
    sla_inst *in = mkinst(s, 1, 0, 0);
    sla_inst_set_ready(in, false);
    sla_req r = mkreq(10, 10);
    sla_event ev, evs[2];
    cr_assert_eq(submit(s, &r, 0, &ev), SLA_EV_QUEUED);
    cr_assert_eq(sla_poll(s, 3 * SEC, evs, 2), 1);
    cr_assert_eq(evs[0].reason, SLA_REJ_UNAVAILABLE);
    cr_assert_eq(evs[0].http_status, 503);
    cr_assert_eq(evs[0].retry_after_s, 3u);
    c.queue_max = 0; /* no queue: at once */
    sla *s2 = sla_init(&c);
    cr_assert_eq(submit(s2, &r, 0, &ev), SLA_EV_REJECT);
    cr_assert_eq(ev.http_status, 503);
    sla_free(s2);
    sla_free(s);
}

/* ---- TPOT accounting ------------------------------------------------------------------------ */

/* The value of `name` (a full series name like "x_sum") in the rendered text. */
static double metric_value(afd_metrics *reg, const char *name) {
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(afd_metrics_render(reg, &out, &len), 0);
    double v = NAN;
    size_t n = strlen(name);
    for (char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') v = strtod(p + n + 1, NULL);
    free(out);
    return v;
}

Test(sla_tpot, token_weighted_and_request_mean_differ) {
    sla_config c = fixed_cfg();
    sla *s = sla_init(&c);
    afd_metrics *reg = afd_metrics_init();
    cr_assert_eq(sla_metrics_register(s, reg), 0);
    cr_assert_eq(sla_metrics_register(s, reg), AFD_E_STATE);
    mkinst(s, 1, 0, 0);
    sla_req a = mkreq(10, 10), b = mkreq(10, 10);
    sla_event ev;
    cr_assert_eq(submit(s, &a, 0, &ev), SLA_EV_ADMIT);
    cr_assert_eq(submit(s, &b, 0, &ev), SLA_EV_ADMIT);
    /* a: first token at 20 ms, then 10 ms gaps (three of them, one message holding two);
     * b: first at 40 ms, the second 100 ms later */
    sla_req_tokens(s, &a, 1, 20 * MS);
    sla_req_tokens(s, &b, 1, 40 * MS);
    sla_req_tokens(s, &a, 1, 30 * MS);
    sla_req_tokens(s, &a, 2, 50 * MS);
    sla_req_tokens(s, &b, 1, 140 * MS);
    sla_req_finish(s, &a, 50 * MS, SLA_END_OK);
    sla_req_finish(s, &b, 140 * MS, SLA_END_OK);
    /* token-weighted: (10 + 10 + 10 + 100) / 4 = 32.5 ms; per request: (10 + 100) / 2 = 55 */
    double itl_n = metric_value(reg, "afd:inter_token_latency_seconds_count");
    double itl_sum = metric_value(reg, "afd:inter_token_latency_seconds_sum");
    cr_assert_eq(itl_n, 4.0);
    cr_assert(fabs(itl_sum / itl_n - 0.0325) < 1e-9, "token-weighted %g", itl_sum / itl_n);
    double t_n = metric_value(reg, "afd:request_time_per_output_token_seconds_count");
    double t_sum = metric_value(reg, "afd:request_time_per_output_token_seconds_sum");
    cr_assert_eq(t_n, 2.0);
    cr_assert(fabs(t_sum / t_n - 0.055) < 1e-9, "request mean %g", t_sum / t_n);
    double ttft = metric_value(reg, "afd:time_to_first_token_seconds_sum");
    cr_assert(fabs(ttft - 0.060) < 1e-9, "ttft sum %g", ttft);
    double e2e = metric_value(reg, "afd:e2e_request_latency_seconds_sum");
    cr_assert(fabs(e2e - 0.190) < 1e-9, "e2e sum %g", e2e);
    /* window quantiles: upper bounds within 1% */
    double p50 = sla_itl_quantile(s, 150 * MS, 0.5), p99 = sla_itl_quantile(s, 150 * MS, 0.99);
    cr_assert(p50 >= 0.010 && p50 <= 0.0101, "p50 %g", p50);
    cr_assert(p99 >= 0.100 && p99 <= 0.101, "p99 %g", p99);
    /* target 50 ms: b misses it, a is goodput; the p99 verdict is violated */
    double q;
    cr_assert_eq(sla_verdict(s, 150 * MS, &q), SLA_VERDICT_VIOLATED);
    cr_assert_eq(q, p99);
    sla_counts n;
    sla_get_counts(s, &n);
    cr_assert_eq(n.finished, 2u);
    cr_assert_eq(n.goodput, 1u);
    cr_assert_eq(n.goodput_tokens, 4u);
    sla_event evs[1];
    sla_poll(s, 150 * MS, evs, 1); /* refreshes the gauges */
    cr_assert_eq(metric_value(reg, "afd:sla_met"), 0.0);
    cr_assert_eq(metric_value(reg, "afd:sla_goodput_requests_total"), 1.0);
    cr_assert_eq(metric_value(reg, "afd:sla_target_seconds"), 0.05);
    cr_assert_eq(metric_value(reg, "afd:num_requests_running"), 0.0);
    double w = metric_value(reg, "afd:sla_inter_token_latency_window_seconds{quantile=\"0.99\"}");
    cr_assert_eq(w, p99);
    /* the window slides: a minute later nothing is left */
    cr_assert_eq(sla_verdict(s, 150 * MS + 61 * SEC, &q), SLA_VERDICT_NODATA);
    cr_assert_eq(q, 0.0);
    sla_free(s);
    afd_metrics_free(reg);
}

Test(sla_tpot, gauges_and_counters_follow_requests) {
    sla_config c = fixed_cfg();
    c.queue_max = 1;
    sla *s = sla_init(&c);
    afd_metrics *reg = afd_metrics_init();
    cr_assert_eq(sla_metrics_register(s, reg), 0);
    mkinst(s, 1, 79, 0);
    sla_req r[3] = {mkreq(10, 10), mkreq(10, 10), mkreq(10, 10)};
    sla_event ev;
    cr_assert_eq(submit(s, &r[0], 0, &ev), SLA_EV_ADMIT);
    cr_assert_eq(submit(s, &r[1], 0, &ev), SLA_EV_QUEUED);
    cr_assert_eq(submit(s, &r[2], 0, &ev), SLA_EV_REJECT);
    cr_assert_eq(metric_value(reg, "afd:num_requests_running"), 1.0);
    cr_assert_eq(metric_value(reg, "afd:num_requests_waiting"), 1.0);
    cr_assert_eq(metric_value(reg, "afd:sla_rejected_total{reason=\"queue_full\"}"), 1.0);
    cr_assert_eq(metric_value(reg, "afd:sla_admitted_total"), 1.0);
    cr_assert_eq(metric_value(reg, "afd:sla_queued_total"), 1.0);
    sla_req_finish(s, &r[1], 1, SLA_END_CANCELLED);
    sla_req_finish(s, &r[0], 1, SLA_END_CANCELLED);
    cr_assert_eq(metric_value(reg, "afd:num_requests_running"), 0.0);
    cr_assert_eq(metric_value(reg, "afd:num_requests_waiting"), 0.0);
    cr_assert_eq(metric_value(reg, "afd:sla_cancelled_total"), 2.0);
    sla_free(s);
    afd_metrics_free(reg);
}

/* ---- config -----------------------------------------------------------------------------------
 */

typedef struct router_like {
    int port;
    sla_config sla;
} router_like;

static const conf_opt router_opts[] = {
    {.name = "port",
     .type = CONF_INT,
     .offset = offsetof(router_like, port),
     .def = "8000",
     .help = "port"},
    SLA_CONF_OPTS(router_like, sla),
};
static const conf_table router_table = {
    .prog = "router", .summary = "test", .opts = router_opts, .n_opts = 1 + SLA_CONF_N};

Test(sla_conf, defaults_and_embedding) {
    sla_config c;
    sla_config_default(&c);
    cr_assert_eq(c.enable, true);
    cr_assert_eq(c.target_ms, 50);
    cr_assert_eq(c.percentile, 99.0);
    cr_assert_eq(c.queue_wait_ms, 5000);
    cr_assert_eq(c.ctx_estimate, SLA_CTX_MIDPOINT);
    afd_err err = {0};
    cr_assert_eq(sla_config_check(&c, &err), 0, "%s", err.msg);
    router_like rc;
    char *argv[] = {
        "router", "--sla-target-ms",       "40ms", "--no-sla-enable", "--sla-ctx-estimate",
        "worst",  "--sla-percentile=99.9", NULL};
    cr_assert_eq(conf_load(&router_table, &rc, 7, argv, &err), 0, "%s", err.msg);
    cr_assert_eq(rc.port, 8000);
    cr_assert_eq(rc.sla.target_ms, 40);
    cr_assert_eq(rc.sla.enable, false);
    cr_assert_eq(rc.sla.ctx_estimate, SLA_CTX_WORST);
    cr_assert_eq(rc.sla.percentile, 99.9);
    cr_assert_eq(rc.sla.queue_max, 256);
    char *bad[] = {"router", "--sla-percentile", "100", NULL};
    cr_assert_eq(conf_load(&router_table, &rc, 3, bad, &err), AFD_E_LIMIT);
    cr_assert(strstr(err.msg, "sla-percentile"), "%s", err.msg);
}

Test(sla_conf, file_section_keys) {
    char path[] = "/tmp/afd_sla_confXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *text = "{\"sla_target_ms\": \"30ms\", \"sla_queue_max\": 8, \"sla_margin\": 0.2}";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    afd_err err = {0};
    cr_assert_eq(conf_check_file(&sla_conf_table, path, &err), 0, "%s", err.msg);
    sla_config c;
    char *argv[] = {"sla", "--config", path, NULL};
    cr_assert_eq(conf_load(&sla_conf_table, &c, 3, argv, &err), 0, "%s", err.msg);
    cr_assert_eq(c.target_ms, 30);
    cr_assert_eq(c.queue_max, 8);
    cr_assert_eq(c.margin, 0.2);
    unlink(path);
}
