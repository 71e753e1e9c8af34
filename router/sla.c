/* sla.c: instances, LOAD reports, admission and the queue (sla.h has the contract; docs/sla.md
 * the reasoning). What the router promised but has not yet seen in a report is counted per
 * instance: pending admissions (until the first report after the attnd acknowledged them) and
 * departures (until the next report). The effective state of an instance is its last report
 * plus the pending admissions minus the departures.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/log.h"
#include "router/sla_impl.h"

#define NS_PER_MS 1000000ull

static uint64_t blocks_for(uint64_t tokens, uint32_t bs) {
    return (tokens + bs - 1) / bs;
}

static uint64_t u64_sub(uint64_t a, uint64_t b) {
    return a > b ? a - b : 0;
}

/* Tokens of max_tokens a sequence reserves in KV. */
static uint32_t kv_growth(const sla *s, uint32_t max_tokens) {
    uint32_t cap = (uint32_t)s->c.kv_growth_cap;
    return cap && cap < max_tokens ? cap : max_tokens;
}

/* ---- request lists ------------------------------------------------------------------------ */

static void list_push(sla_req **head, sla_req *r) {
    r->prev = NULL;
    r->next = *head;
    if (*head) (*head)->prev = r;
    *head = r;
}

static void list_del(sla_req **head, sla_req *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        *head = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void q_push(sla *s, sla_req *r) {
    r->next = NULL;
    r->prev = s->q_tail;
    if (s->q_tail)
        s->q_tail->next = r;
    else
        s->q_head = r;
    s->q_tail = r;
    s->n.waiting++;
}

static void q_del(sla *s, sla_req *r) {
    if (s->q_tail == r) s->q_tail = r->prev;
    list_del(&s->q_head, r);
    s->n.waiting--;
}

/* ---- life ---------------------------------------------------------------------------------- */

int sla_init_checked(const sla_config *c, sla **out, afd_err *err) {
    sla_config def;
    if (!c) {
        sla_config_default(&def);
        c = &def;
    }
    int rc = sla_config_check(c, err);
    if (rc) return rc;
    sla *s = xcalloc(1, sizeof *s);
    s->c = *c;
    s->target_ns = (uint64_t)c->target_ms * NS_PER_MS;
    s->wait_ns = (uint64_t)c->queue_wait_ms * NS_PER_MS;
    s->stale_ns = (uint64_t)c->stale_ms * NS_PER_MS;
    sla_win_init(&s->win, (uint64_t)c->window_ms * NS_PER_MS);
    *out = s;
    return 0;
}

sla *sla_init(const sla_config *c) {
    sla *s = NULL;
    afd_err err = {0};
    if (sla_init_checked(c, &s, &err)) {
        log_error("sla: bad config: %s", err.msg);
        abort();
    }
    return s;
}

static void unlink_all(sla_inst *in) {
    while (in->live) {
        sla_req *r = in->live;
        list_del(&in->live, r);
        r->inst = NULL;
        r->pending = r->acked = false;
    }
}

void sla_free(sla *s) {
    if (!s) return;
    while (s->q_head) {
        sla_req *r = s->q_head;
        q_del(s, r);
        r->state = SLA_RS_IDLE;
    }
    while (s->insts) {
        sla_inst *in = s->insts;
        s->insts = in->next;
        for (sla_req *r = in->live; r; r = r->next)
            r->state = SLA_RS_IDLE;
        unlink_all(in);
        free(in);
    }
    sla_win_free(&s->win);
    free(s);
}

const sla_config *sla_get_config(const sla *s) {
    return &s->c;
}

/* ---- instances ----------------------------------------------------------------------------- */

sla_inst *sla_inst_find(sla *s, uint32_t id) {
    for (sla_inst *in = s->insts; in; in = in->next)
        if (in->id == id) return in;
    return NULL;
}

sla_inst *sla_inst_add(sla *s, uint32_t id) {
    sla_inst *in = sla_inst_find(s, id);
    if (in) return in;
    in = xcalloc(1, sizeof *in);
    in->s = s;
    in->id = id;
    const sla_config *c = &s->c;
    double prior[SLA_NFEAT] = {c->prior_step_us * 1e3, c->prior_seq_us * 1e3, c->prior_kctx_us,
                               c->prior_prefill_us * 1e3};
    sla_model_init(&in->model, prior, c->prior_weight, c->forget, c->resid_quantile);
    in->next = s->insts;
    if (s->insts) s->insts->prev = in;
    s->insts = in;
    return in;
}

void sla_inst_remove(sla *s, sla_inst *in) {
    if (!in) return;
    unlink_all(in);
    if (in->prev)
        in->prev->next = in->next;
    else
        s->insts = in->next;
    if (in->next) in->next->prev = in->prev;
    free(in);
}

void sla_inst_set_ready(sla_inst *in, bool ready) {
    in->ready = ready;
}
void sla_inst_set_draining(sla_inst *in, bool draining) {
    in->drain = draining;
}
uint32_t sla_inst_id(const sla_inst *in) {
    return in->id;
}
const sla_model *sla_inst_model(const sla_inst *in) {
    return &in->model;
}

void sla_inst_touch(sla_inst *in, uint64_t now) {
    in->touched = true;
    in->t_touch = now;
}

/* A busy instance (work at its last report, or admissions it has not reported yet) is stale
 * when its last report is too old; an idle one only when its heartbeat is (if it has one). */
static bool inst_stale(const sla *s, const sla_inst *in, uint64_t now) {
    bool busy = in->last.running || in->last.waiting || in->pend_n;
    uint64_t t = in->t_report;
    if (!busy) {
        if (!in->touched) return false;
        t = in->t_touch > t ? in->t_touch : t;
    }
    return now > t && now - t > s->stale_ns;
}

static bool inst_eligible(const sla *s, const sla_inst *in, uint64_t now) {
    return in->ready && in->have_report && !in->drain && !in->last.draining &&
           (in->last.role & CTRL_ROLE_DECODE) && !inst_stale(s, in, now);
}

static bool any_eligible(const sla *s, uint64_t now) {
    for (const sla_inst *in = s->insts; in; in = in->next)
        if (inst_eligible(s, in, now)) return true;
    return false;
}

/* ---- reports ------------------------------------------------------------------------------- */

/* A pending request the instance has acknowledged is in this report: its promise becomes
 * outstanding growth. */
static void retire_pending(sla_inst *in, sla_req *r) {
    in->pend_n--;
    in->pend_ctx -= r->prompt_len;
    in->pend_grow -= r->max_tokens;
    in->pend_blocks -= r->res_blocks;
    in->n_acked--;
    r->pending = false;
    in->grow_tokens += r->grow_tokens;
    in->grow_blocks += r->grow_blocks;
    if (r->n_out == 0) in->pf_counted++;
}

/* The step a report describes: decode sequences are the running ones past their first token
 * (the router knows which of its requests are still in prefill) plus those that finished in
 * the step; the rest of the step's tokens were prefill. */
static void fit_report(sla_inst *in, const ctrl_load *l) {
    int64_t dec = (int64_t)l->running - in->pf_counted + in->dep_n;
    if (dec < 0) dec = 0;
    if (dec > l->batch_tokens) dec = l->batch_tokens;
    sla_model_update(&in->model, (double)dec, (double)l->ctx_tokens,
                     (double)(l->batch_tokens - dec), l->last_step_us * 1e3);
}

int sla_report(sla *s, sla_inst *in, const ctrl_load *l, uint64_t now) {
    if (!in || !l) return AFD_E_STATE;
    if (l->block_size == 0) return AFD_E_FORMAT;
    if ((uint64_t)l->kv_blocks_free + l->kv_blocks_reserved > l->kv_blocks_total)
        return AFD_E_FORMAT;
    bool new_step = !in->have_report || l->step != in->last.step;
    for (sla_req *r = in->live; r && in->n_acked; r = r->next)
        if (r->pending && r->acked) retire_pending(in, r);
    if (new_step && l->last_step_us > 0 && l->batch_tokens > 0) fit_report(in, l);
    in->last = *l;
    in->have_report = true;
    in->t_report = now;
    in->dep_n = 0;
    in->dep_ctx = in->dep_blocks = 0;
    return 0;
}

/* ---- prediction and choice ----------------------------------------------------------------- */

typedef struct inst_eff {
    uint32_t batch;
    uint64_t ctx;
    int64_t kv_free;
    bool idle;
} inst_eff;

static void inst_effective(const sla_inst *in, inst_eff *e) {
    const ctrl_load *l = &in->last;
    int64_t b = (int64_t)l->running + l->waiting + in->pend_n - in->dep_n;
    e->batch = b < 0 ? 0 : (uint32_t)b;
    e->ctx = u64_sub(l->ctx_tokens + in->pend_ctx, in->dep_ctx);
    e->kv_free = (int64_t)l->kv_blocks_free + (int64_t)in->dep_blocks - (int64_t)in->pend_blocks -
                 (int64_t)in->grow_blocks;
    e->idle = e->batch == 0 && in->n_live == 0;
}

void sla_inst_predict(const sla *s, const sla_inst *in, uint32_t p, uint32_t max, uint64_t now,
                      sla_pred *o) {
    memset(o, 0, sizeof *o);
    o->eligible = inst_eligible(s, in, now);
    o->limit_ns = (double)s->target_ns * (1 - s->c.margin);
    if (!in->have_report) return;
    inst_eff e;
    inst_effective(in, &e);
    bool worst = s->c.ctx_estimate == SLA_CTX_WORST;
    uint64_t base = e.ctx + (worst ? in->grow_tokens + in->pend_grow : 0);
    o->batch = e.batch + 1;
    o->ctx = base + p + (worst ? max : max / 2);
    double step = sla_model_predict(&in->model, o->batch, (double)o->ctx, 0);
    if (s->c.prefill_chunk > 0) { /* a step carrying prefill: ours and what is still queued */
        uint64_t pf = in->pf_tokens + p;
        double chunk =
            (double)(pf < (uint64_t)s->c.prefill_chunk ? pf : (uint64_t)s->c.prefill_chunk);
        double pre = sla_model_predict(&in->model, o->batch, (double)(base + p), chunk);
        step = pre > step ? pre : step;
    }
    o->step_ns = step + sla_model_margin_ns(&in->model);
    o->kv_need = blocks_for((uint64_t)p + kv_growth(s, max), in->last.block_size);
    o->kv_free = e.kv_free;
    o->fits =
        o->eligible && o->kv_free >= (int64_t)o->kv_need && (o->step_ns <= o->limit_ns || e.idle);
}

/* Without admission control: the ready instance with the fewest sequences (then most KV). */
static sla_inst *pick_least_loaded(const sla *s, uint64_t now) {
    sla_inst *best = NULL;
    inst_eff be = {0};
    for (sla_inst *in = s->insts; in; in = in->next) {
        if (!inst_eligible(s, in, now)) continue;
        inst_eff e;
        inst_effective(in, &e);
        if (!best || e.batch < be.batch || (e.batch == be.batch && e.kv_free > be.kv_free)) {
            best = in;
            be = e;
        }
    }
    return best;
}

sla_inst *sla_pick(const sla *s, const sla_req *r, uint64_t now) {
    if (!s->c.enable) return pick_least_loaded(s, now);
    sla_inst *best = NULL;
    double best_h = -INFINITY;
    for (sla_inst *in = s->insts; in; in = in->next) {
        sla_pred p;
        sla_inst_predict(s, in, r->prompt_len, r->max_tokens, now, &p);
        if (p.fits && p.limit_ns - p.step_ns > best_h) {
            best = in;
            best_h = p.limit_ns - p.step_ns;
        }
    }
    return best;
}

/* Every ready instance's whole pool is too small for the request (and one is ready). */
static bool too_large(const sla *s, const sla_req *r, uint64_t now) {
    bool any = false;
    for (const sla_inst *in = s->insts; in; in = in->next) {
        if (!inst_eligible(s, in, now)) continue;
        any = true;
        uint64_t need =
            blocks_for((uint64_t)r->prompt_len + kv_growth(s, r->max_tokens), in->last.block_size);
        if (need <= in->last.kv_blocks_total) return false;
    }
    return any;
}

/* ---- admission, queue, departures ---------------------------------------------------------- */

static void admit(sla *s, sla_req *r, sla_inst *in, uint64_t now, sla_event *ev) {
    uint32_t bs = in->last.block_size;
    r->state = SLA_RS_RUNNING;
    r->inst = in;
    r->inst_id = in->id;
    r->t_admit = now;
    r->pending = true;
    r->acked = false;
    r->res_blocks = blocks_for((uint64_t)r->prompt_len + kv_growth(s, r->max_tokens), bs);
    r->grow_tokens = r->max_tokens;
    r->grow_blocks = u64_sub(r->res_blocks, blocks_for(r->prompt_len, bs));
    in->pend_n++;
    in->pend_ctx += r->prompt_len;
    in->pend_grow += r->max_tokens;
    in->pend_blocks += r->res_blocks;
    in->pf_tokens += r->prompt_len;
    list_push(&in->live, r);
    in->n_live++;
    s->n.admitted++;
    s->n.running++;
    afd_metric_inc(s->m.admitted);
    sla_stats_counts_changed(s);
    *ev = (sla_event){.req = r, .kind = SLA_EV_ADMIT, .inst = in, .inst_id = in->id};
}

static uint32_t retry_unavailable(const sla *s) {
    uint64_t t = (s->wait_ns + 999999999ull) / 1000000000ull;
    return t < 1 ? 1 : t > 60 ? 60 : (uint32_t)t;
}

static void reject(sla *s, sla_req *r, int reason, uint32_t pos, uint64_t now, sla_event *ev) {
    if (reason != SLA_REJ_TOO_LARGE && !any_eligible(s, now)) reason = SLA_REJ_UNAVAILABLE;
    *ev = (sla_event){.req = r, .kind = SLA_EV_REJECT, .reason = reason};
    if (reason == SLA_REJ_TOO_LARGE) {
        ev->http_status = 400;
    } else if (reason == SLA_REJ_UNAVAILABLE) {
        ev->http_status = 503;
        ev->retry_after_s = retry_unavailable(s);
    } else {
        ev->http_status = 429;
        ev->retry_after_s = sla_retry_after_s(s, now, pos);
    }
    r->state = SLA_RS_IDLE;
    r->seen = false;
    s->n.rejected[reason]++;
    afd_metric_inc(s->m.rejected[reason]);
}

int sla_submit(sla *s, sla_req *r, uint64_t now, sla_event *ev) {
    if (!s || !r || !ev || r->state != SLA_RS_IDLE) return AFD_E_STATE;
    if (!r->prompt_len || !r->max_tokens) return AFD_E_FORMAT;
    if (!r->seen) {
        r->seen = true;
        r->t_arrive = now;
        r->t_first = r->t_last = 0;
        r->n_out = 0;
    }
    if (!s->have_t0) {
        s->have_t0 = true;
        s->t0 = now;
    }
    sla_inst *in = s->q_head ? NULL : sla_pick(s, r, now);
    if (in) {
        admit(s, r, in, now, ev);
        return 0;
    }
    if (s->c.enable && too_large(s, r, now)) {
        reject(s, r, SLA_REJ_TOO_LARGE, 0, now, ev);
    } else if (s->n.waiting >= (uint32_t)s->c.queue_max) {
        reject(s, r, SLA_REJ_QUEUE_FULL, s->n.waiting, now, ev);
    } else {
        r->state = SLA_RS_QUEUED;
        r->t_queued = now;
        q_push(s, r);
        s->n.queued++;
        afd_metric_inc(s->m.queued);
        *ev = (sla_event){.req = r, .kind = SLA_EV_QUEUED};
    }
    sla_stats_counts_changed(s);
    return 0;
}

int sla_poll(sla *s, uint64_t now, sla_event *ev, int max) {
    int k = 0;
    while (s->q_head && k < max) {
        sla_req *r = s->q_head;
        sla_inst *in = sla_pick(s, r, now);
        if (!in) break;
        q_del(s, r);
        admit(s, r, in, now, &ev[k++]);
    }
    uint32_t pos = 0;
    for (sla_req *r = s->q_head, *nx; r && k < max; r = nx) {
        nx = r->next;
        if (now >= r->t_queued && now - r->t_queued >= s->wait_ns) {
            q_del(s, r);
            reject(s, r, SLA_REJ_TIMEOUT, pos, now, &ev[k++]);
        } else {
            pos++;
        }
    }
    sla_stats_counts_changed(s);
    sla_stats_refresh(s, now);
    return k;
}

uint64_t sla_next_deadline(const sla *s) {
    return s->q_head ? s->q_head->t_queued + s->wait_ns : UINT64_MAX;
}

void sla_req_ack(sla *s, sla_req *r, uint64_t now) {
    if (r->state != SLA_RS_RUNNING || !r->pending || r->acked) return;
    r->acked = true;
    if (r->inst) r->inst->n_acked++;
}

/* Recomputes r's outstanding growth after tokens; a request a report counts moves the
 * instance's sums with it. */
static void regrow(sla_req *r) {
    sla_inst *in = r->inst;
    if (!in) return;
    uint32_t gt = r->n_out < r->max_tokens ? r->max_tokens - r->n_out : 0;
    uint64_t gb =
        u64_sub(r->res_blocks, blocks_for((uint64_t)r->prompt_len + r->n_out, in->last.block_size));
    if (!r->pending) {
        in->grow_tokens = in->grow_tokens - r->grow_tokens + gt;
        in->grow_blocks = in->grow_blocks - r->grow_blocks + gb;
    }
    r->grow_tokens = gt;
    r->grow_blocks = gb;
}

void sla_req_tokens(sla *s, sla_req *r, uint32_t n, uint64_t now) {
    if (r->state != SLA_RS_RUNNING || n == 0) return;
    if (r->n_out == 0 && r->inst) { /* prefill done */
        r->inst->pf_tokens -= r->prompt_len;
        if (!r->pending) r->inst->pf_counted--;
    }
    sla_stats_tokens(s, r, n, now);
    sla_req_ack(s, r, now);
    regrow(r);
}

/* r leaves its instance. A request a report counts is a departure until the next report. */
static void detach(sla_inst *in, sla_req *r) {
    list_del(&in->live, r);
    in->n_live--;
    if (r->n_out == 0) {
        in->pf_tokens -= r->prompt_len;
        if (!r->pending) in->pf_counted--;
    }
    if (r->pending) {
        if (r->acked) in->n_acked--;
        in->pend_n--;
        in->pend_ctx -= r->prompt_len;
        in->pend_grow -= r->max_tokens;
        in->pend_blocks -= r->res_blocks;
    } else {
        in->grow_tokens -= r->grow_tokens;
        in->grow_blocks -= r->grow_blocks;
        in->dep_n++;
        in->dep_ctx += (uint64_t)r->prompt_len + r->n_out;
        in->dep_blocks += blocks_for((uint64_t)r->prompt_len + r->n_out, in->last.block_size);
    }
    r->pending = r->acked = false;
}

void sla_req_finish(sla *s, sla_req *r, uint64_t now, int end) {
    if (r->state == SLA_RS_QUEUED) {
        q_del(s, r);
        r->state = SLA_RS_IDLE;
        r->seen = false;
        s->n.cancelled++;
        afd_metric_inc(s->m.cancelled);
        sla_stats_counts_changed(s);
        return;
    }
    if (r->state != SLA_RS_RUNNING) return;
    if (r->inst) detach(r->inst, r);
    r->inst = NULL;
    r->state = SLA_RS_IDLE;
    s->n.running--;
    if (end == SLA_END_REFUSED) {
        s->n.refused++; /* r->seen stays: a resubmission keeps its arrival time */
    } else {
        sla_stats_finish(s, r, now, end);
        r->seen = false;
    }
    sla_stats_counts_changed(s);
}

uint32_t sla_retry_after_s(const sla *s, uint64_t now, uint32_t pos) {
    uint64_t deps = sla_win_departures(&s->win, now);
    double span = (double)s->c.window_ms / 1e3;
    if (s->have_t0 && now > s->t0 && (double)(now - s->t0) / 1e9 < span)
        span = (double)(now - s->t0) / 1e9;
    if (span < 1) span = 1;
    double t = deps ? (pos + 1.0) * span / (double)deps : (double)s->wait_ns / 1e9;
    t = ceil(t);
    return t < 1 ? 1 : t > 60 ? 60 : (uint32_t)t;
}
