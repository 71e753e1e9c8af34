/* The SLA module against a simulated decode instance (deterministic, ~40 simulated seconds in a
 * fraction of a real one): step time grows with the batch, the context and the prefill tokens
 * of the step; Poisson arrivals well above capacity. With admission control the p99 inter-token
 * latency stays within the target and the excess is refused; without it the target is missed.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/sla.h"

#define MS  1000000ull
#define SEC 1000000000ull

/* ---- the simulated attnd ------------------------------------------------------------------- */

/* The instance's true cost: 4 ms + 0.45 ms per decode sequence + 20 ns per context token +
 * 15 us per prefill token, times uniform +-3% noise; at most 256 prefill tokens per step. */
#define T_BASE    4.0e6
#define T_SEQ     0.45e6
#define T_CTX     20.0
#define T_PREFILL 15.0e3
#define NOISE     0.03
#define CHUNK     256

#define MAX_REQ 4000
#define MAX_ITL 400000

typedef struct seq {
    sla_req r;
    uint32_t prompt_left, gen;
    uint64_t t_prev; /* last token, for the test's own ITL record */
} seq;

typedef struct sim {
    sla *s;
    sla_inst *inst;
    uint64_t rng;
    seq reqs[MAX_REQ];
    int n_reqs;
    seq *batch[MAX_REQ]; /* running on the instance, in admission order */
    int n_batch;
    seq *incoming[MAX_REQ]; /* admitted, join at the next step start */
    int n_incoming;
    uint64_t step_no, step_start, step_end;
    bool stepping;
    uint32_t step_decode, step_prefill;
    double *itl; /* ns, every gap between consecutive tokens of a request */
    int n_itl;
    int rejected, admitted, finished;
} sim;

static double urand(sim *m) { /* xorshift64*, [0, 1) */
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return (double)((m->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void take_events(sim *m, const sla_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        if (ev[i].kind == SLA_EV_ADMIT) {
            cr_assert_eq(ev[i].inst, m->inst);
            m->incoming[m->n_incoming++] = (seq *)ev[i].req->ud;
            m->admitted++;
        } else if (ev[i].kind == SLA_EV_REJECT) {
            cr_assert(ev[i].http_status == 429, "status %d", ev[i].http_status);
            cr_assert(ev[i].retry_after_s >= 1 && ev[i].retry_after_s <= 60, "retry %u",
                      ev[i].retry_after_s);
            m->rejected++;
        }
    }
}

static void poll_all(sim *m, uint64_t now) {
    sla_event ev[16];
    int n;
    do {
        n = sla_poll(m->s, now, ev, 16);
        take_events(m, ev, n);
    } while (n == 16);
}

static uint64_t ctx_total(const sim *m) {
    uint64_t c = 0;
    for (int i = 0; i < m->n_batch; i++)
        c += m->batch[i]->r.prompt_len - m->batch[i]->prompt_left + m->batch[i]->gen;
    return c;
}

/* Joins the admitted sequences (the SUBMIT arrives: acknowledged), plans and times a step. */
static void step_start(sim *m, uint64_t now) {
    for (int i = 0; i < m->n_incoming; i++) {
        sla_req_ack(m->s, &m->incoming[i]->r, now);
        m->batch[m->n_batch++] = m->incoming[i];
    }
    m->n_incoming = 0;
    if (!m->n_batch) {
        m->stepping = false;
        return;
    }
    uint32_t decode = 0, budget = CHUNK;
    for (int i = 0; i < m->n_batch; i++)
        decode += m->batch[i]->prompt_left == 0;
    m->step_prefill = 0;
    for (int i = 0; i < m->n_batch && budget; i++) {
        uint32_t k = m->batch[i]->prompt_left < budget ? m->batch[i]->prompt_left : budget;
        m->step_prefill += k;
        budget -= k;
    }
    m->step_decode = decode;
    double t = T_BASE + T_SEQ * decode + T_CTX * (double)ctx_total(m) + T_PREFILL * m->step_prefill;
    t *= 1 + NOISE * (2 * urand(m) - 1);
    m->stepping = true;
    m->step_start = now;
    m->step_end = now + (uint64_t)t;
}

static void emit(sim *m, seq *q, uint64_t now) {
    if (q->gen > 0) {
        cr_assert_lt(m->n_itl, MAX_ITL);
        m->itl[m->n_itl++] = (double)(now - q->t_prev);
    }
    q->t_prev = now;
    q->gen++;
    sla_req_tokens(m->s, &q->r, 1, now);
}

/* The step ends: tokens, departures, the LOAD report, then what the router does next. */
static void step_end(sim *m, uint64_t now) {
    uint32_t budget = CHUNK;
    int kept = 0;
    for (int i = 0; i < m->n_batch; i++) {
        seq *q = m->batch[i];
        if (q->prompt_left == 0) {
            emit(m, q, now);
        } else if (budget) {
            uint32_t k = q->prompt_left < budget ? q->prompt_left : budget;
            q->prompt_left -= k;
            budget -= k;
            if (!q->prompt_left)
                emit(m, q, now); /* the last prefill chunk yields the first token */
        }
        if (q->gen >= q->r.max_tokens) {
            sla_req_finish(m->s, &q->r, now, SLA_END_OK);
            m->finished++;
        } else {
            m->batch[kept++] = q;
        }
    }
    m->n_batch = kept;
    ctrl_load l = {.instance_id = 1,
                   .role = CTRL_ROLE_BOTH,
                   .micro_batches = 1,
                   .step = ++m->step_no,
                   .running = (uint32_t)m->n_batch,
                   .batch_tokens = m->step_decode + m->step_prefill,
                   .last_step_us = (uint32_t)((now - m->step_start) / 1000),
                   .kv_blocks_free = 100000,
                   .kv_blocks_total = 100000,
                   .block_size = 16,
                   .ctx_tokens = ctx_total(m)};
    cr_assert_eq(sla_report(m->s, m->inst, &l, now), 0);
    poll_all(m, now);
    step_start(m, now);
}

static void arrive(sim *m, uint64_t now) {
    cr_assert_lt(m->n_reqs, MAX_REQ);
    seq *q = &m->reqs[m->n_reqs++];
    q->r = (sla_req){.prompt_len = 50 + (uint32_t)(urand(m) * 350),
                     .max_tokens = 40 + (uint32_t)(urand(m) * 120),
                     .ud = q};
    q->prompt_left = q->r.prompt_len;
    sla_event ev;
    cr_assert_eq(sla_submit(m->s, &q->r, now, &ev), 0);
    take_events(m, &ev, 1);
    poll_all(m, now);
    if (!m->stepping) step_start(m, now);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double p99(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int k = (int)ceil(0.99 * n) - 1;
    return v[k < 0 ? 0 : k];
}

typedef struct sim_result {
    double p99_ns, window_p99_s, tok_per_s;
    int verdict, admitted, rejected, finished;
    sla_counts n;
} sim_result;

/* Runs `seconds` of Poisson arrivals at `rate` per second. */
static void run(bool enable, double rate, int seconds, sim_result *res) {
    sim *m = calloc(1, sizeof *m);
    m->itl = calloc(MAX_ITL, sizeof *m->itl);
    m->rng = 0x9e3779b97f4a7c15ull;
    sla_config c;
    sla_config_default(&c);
    c.enable = enable;
    c.queue_max = 64;
    c.queue_wait_ms = 2000;
    m->s = sla_init(&c);
    m->inst = sla_inst_add(m->s, 1);
    sla_inst_set_ready(m->inst, true);
    ctrl_load hello = {.instance_id = 1,
                       .role = CTRL_ROLE_BOTH,
                       .micro_batches = 1,
                       .kv_blocks_free = 100000,
                       .kv_blocks_total = 100000,
                       .block_size = 16};
    cr_assert_eq(sla_report(m->s, m->inst, &hello, 0), 0);
    uint64_t end = (uint64_t)seconds * SEC, next = 0;
    while (next < end || m->stepping) {
        if (next < end && (!m->stepping || next <= m->step_end)) {
            arrive(m, next);
            next += (uint64_t)(-log(1 - urand(m)) / rate * 1e9);
        } else {
            step_end(m, m->step_end);
        }
        uint64_t dl = sla_next_deadline(m->s);
        if (dl != UINT64_MAX && dl < next && (!m->stepping || dl < m->step_end)) poll_all(m, dl);
        if (!m->stepping && next >= end && !m->n_incoming) break;
    }
    uint64_t now = end + 30 * SEC > m->step_end ? end + 30 * SEC : m->step_end;
    poll_all(m, now); /* whatever still waits expires */
    res->p99_ns = p99(m->itl, m->n_itl);
    res->verdict = sla_verdict(m->s, end, &res->window_p99_s);
    res->admitted = m->admitted;
    res->rejected = m->rejected;
    res->finished = m->finished;
    double tokens = 0;
    for (int i = 0; i < m->n_reqs; i++)
        tokens += m->reqs[i].gen;
    res->tok_per_s = tokens / seconds;
    sla_get_counts(m->s, &res->n);
    cr_log_info("admission %s: %d arrivals, admitted %d, rejected %d, finished %d, goodput %lu, "
                "p99 ITL %.2f ms (window %.2f ms), %.0f tokens/s",
                enable ? "on" : "off", m->n_reqs, m->admitted, m->rejected, m->finished,
                (unsigned long)res->n.goodput, res->p99_ns / 1e6, res->window_p99_s * 1e3,
                res->tok_per_s);
    sla_free(m->s);
    free(m->itl);
    free(m);
}

/* Capacity is ~18 requests/s (80 sequences at ~45 ms a step, 100 tokens each); 30/s arrive. */
Test(sla_sim, admission_keeps_p99_itl_within_target_and_refuses_the_excess) {
    sim_result r;
    run(true, 30, 40, &r);
    cr_assert(r.p99_ns <= 50e6, "p99 ITL %.2f ms > 50 ms", r.p99_ns / 1e6);
    cr_assert_eq(r.verdict, SLA_VERDICT_MET, "window p99 %.2f ms", r.window_p99_s * 1e3);
    /* the window's percentile is an upper bound within 1% of the exact one */
    cr_assert(r.window_p99_s * 1e9 >= r.p99_ns && r.window_p99_s * 1e9 <= r.p99_ns * 1.011,
              "window %.3f ms exact %.3f ms", r.window_p99_s * 1e3, r.p99_ns / 1e6);
    cr_assert(r.rejected > 200, "rejected %d", r.rejected);
    cr_assert_eq((uint64_t)r.rejected,
                 r.n.rejected[SLA_REJ_TIMEOUT] + r.n.rejected[SLA_REJ_QUEUE_FULL]);
    /* close to capacity: at least 75% of the 1800 tokens/s of 80 sequences at 45 ms */
    cr_assert(r.tok_per_s > 1350, "throughput %.0f tokens/s", r.tok_per_s);
    cr_assert_eq(r.n.goodput, r.n.finished, "goodput %lu of %lu", (unsigned long)r.n.goodput,
                 (unsigned long)r.n.finished);
}

Test(sla_sim, without_admission_the_target_is_violated) {
    sim_result r;
    run(false, 30, 40, &r);
    cr_assert(r.p99_ns > 50e6, "p99 ITL %.2f ms", r.p99_ns / 1e6);
    cr_assert_eq(r.verdict, SLA_VERDICT_VIOLATED);
    cr_assert_eq(r.rejected, 0);
    cr_assert(r.n.goodput < r.n.finished, "goodput %lu of %lu", (unsigned long)r.n.goodput,
              (unsigned long)r.n.finished);
}

Test(sla_sim, below_capacity_nothing_is_refused) {
    sim_result r;
    run(true, 8, 30, &r);
    cr_assert(r.p99_ns <= 50e6, "p99 ITL %.2f ms", r.p99_ns / 1e6);
    cr_assert_eq(r.rejected, 0);
    cr_assert_eq(r.finished, r.admitted);
}
