/* server.c: attnd's loop: control-plane peers (routers), sequences, steps, LOAD, drain.
 *
 * The loop alternates one scheduler step (a forward pass through the AFD pipeline, which drives
 * the FFN group's transport itself) with a non-blocking pass over the control plane; when no
 * sequence runs it sleeps in libevent until a frame, a signal or the tick timer. Tokens go back
 * as they are sampled (one TOKENS frame per token, then one with the finish and the usage).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnd/internal.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/notify.h"
#include "common/net/portfile.h"

#ifndef AFD_VERSION
#define AFD_VERSION "0.1.0"
#endif

/* ---- small sends ---------------------------------------------------------------------------- */

static void free_cb(void *arg, int status) {
    (void)status;
    free(arg);
}

void at_send_ctrl(attnd *d, cpeer *p, int type, uint64_t req, uint8_t *buf, size_t len) {
    wire_hdr h = ctrl_hdr(type, (uint32_t)d->cfg.instance_id, req);
    if (!p->xp || xp_send(p->xp, &h, buf, len, free_cb, buf))
        free(buf);
}

static void send_ack(attnd *d, cpeer *p, uint64_t req, uint64_t seq_id, int reason,
                     const char *msg) {
    ctrl_status st = {.seq_id = seq_id, .reason = (uint32_t)reason};
    snprintf(st.msg, sizeof st.msg, "%s", reason ? msg : "");
    uint8_t *buf = xmalloc(CTRL_MSG_MAX + 64);
    size_t len;
    if (ctrl_submit_ack_encode(buf, CTRL_MSG_MAX + 64, &st, &len) == 0)
        at_send_ctrl(d, p, WIRE_T_CTRL_SUBMIT_ACK, req, buf, len);
    else
        free(buf);
}

void at_send_tokens(attnd *d, aseq *a, const ctrl_tokens *t) {
    if (!a->owner)
        return;
    size_t cap = 256 + (size_t)t->n_tok * (8 + (size_t)t->n_top * 8);
    uint8_t *buf = xmalloc(cap);
    size_t len;
    int rc = ctrl_tokens_encode(buf, cap, t, &len);
    if (rc) {
        log_error("TOKENS for seq %llu: %s", (unsigned long long)a->seq_id, wire_strerror(rc));
        free(buf);
        return;
    }
    at_send_ctrl(d, a->owner, WIRE_T_CTRL_TOKENS, a->req, buf, len);
}

void at_tokens_error(attnd *d, cpeer *owner, uint64_t req, uint64_t seq_id, int code,
                     uint32_t n_prompt, const char *fmt, ...) {
    if (!owner)
        return;
    aseq tmp = {.seq_id = seq_id, .req = req, .owner = owner};
    ctrl_tokens t = {.seq_id = seq_id, .finish = CTRL_FINISH_ERROR, .code = code < 0 ? code : -EIO,
                     .prompt_tokens = n_prompt};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.msg, sizeof t.msg, fmt, ap);
    va_end(ap);
    at_send_tokens(d, &tmp, &t);
}

/* ---- the scheduler's callbacks ------------------------------------------------------------ */

static int forward(void *ud, const afd_fwd_batch *b, float *logits) {
    attnd *d = ud;
    return d->ffn ? at_pipe_forward(&d->pipe, b, logits) : AFD_E_PEER;
}

static void on_token(void *ud, uint64_t id, void *req_ud, const afd_sample *s) {
    attnd *d = ud;
    aseq *a = req_ud;
    (void)id;
    afd_metric_inc(d->m_tokens);
    if (a->pj) {
        ho_on_first(d, a, s); /* a prefill job's first token goes out with PREFILL_DONE */
        return;
    }
    uint32_t tok = (uint32_t)s->token;
    float lp = s->logprob;
    ctrl_cand top[AFD_MAX_LOGPROBS];
    int n_top = a->logprobs ? (a->n_top < s->n_top ? a->n_top : s->n_top) : 0;
    for (int i = 0; i < n_top; i++)
        top[i] = (ctrl_cand){(uint32_t)s->top_ids[i], s->top_logprobs[i]};
    ctrl_tokens t = {.seq_id = a->seq_id, .n_tok = 1, .has_logprobs = a->logprobs,
                     .n_top = (uint8_t)n_top, .ids = &tok, .logprobs = a->logprobs ? &lp : NULL,
                     .top = n_top ? top : NULL};
    at_send_tokens(d, a, &t);
}

static void on_kv(void *ud, uint64_t id, void *req_ud, afd_kv_seq *kv) {
    aseq *a = req_ud;
    (void)id;
    if (a->pj)
        ho_on_kv(ud, a, kv);
}

static const uint8_t finish_of[] = {
    [AT_FIN_NONE] = CTRL_FINISH_ERROR,       [AT_FIN_STOP] = CTRL_FINISH_STOP,
    [AT_FIN_LENGTH] = CTRL_FINISH_LENGTH,    [AT_FIN_CANCELLED] = CTRL_FINISH_CANCELLED,
    [AT_FIN_ERROR] = CTRL_FINISH_ERROR,      [AT_FIN_KV] = CTRL_FINISH_ERROR,
};

void at_seq_link(attnd *d, aseq *a) {
    a->prev = NULL;
    a->next = d->seqs;
    if (d->seqs)
        d->seqs->prev = a;
    d->seqs = a;
}

void at_seq_unlink(attnd *d, aseq *a) {
    if (a->prev)
        a->prev->next = a->next;
    else
        d->seqs = a->next;
    if (a->next)
        a->next->prev = a->prev;
}

static void on_finish(void *ud, uint64_t id, void *req_ud, int reason, int n) {
    attnd *d = ud;
    aseq *a = req_ud;
    (void)id;
    if (a->pj) {
        ho_on_prefill_end(d, a, reason);
        at_seq_unlink(d, a);
        free(a);
        return;
    }
    ctrl_tokens t = {.seq_id = a->seq_id, .finish = finish_of[reason],
                     .prompt_tokens = a->n_prompt, .completion_tokens = (uint32_t)n};
    if (reason == AT_FIN_ERROR) {
        t.code = AFD_E_PEER;
        snprintf(t.msg, sizeof t.msg, "the FFN group failed during this sequence's step");
        afd_metric_inc(d->m_seq_error);
    } else if (reason == AT_FIN_KV) {
        t.code = AFD_E_LIMIT;
        snprintf(t.msg, sizeof t.msg, "KV cache exhausted: a handed-off sequence cannot be "
                                      "recomputed here");
        afd_metric_inc(d->m_seq_error);
    }
    at_send_tokens(d, a, &t);
    log_info("seq %llu (req %s) finished: %s after %d tokens", (unsigned long long)a->seq_id,
             a->req_id, ctrl_finish_name(t.finish), n);
    at_seq_unlink(d, a);
    free(a);
}

/* ---- control frames --------------------------------------------------------------------------- */

static int refuse_reason(int rc) {
    switch (rc) {
    case AFD_E_LIMIT: return CTRL_R_TOO_LONG;
    case -EEXIST: return CTRL_R_DUPLICATE;
    case -ENOMEM: return CTRL_R_BUSY;
    default: return CTRL_R_BAD_PARAMS;
    }
}

static aseq *find_seq(attnd *d, const cpeer *p, uint64_t seq_id) {
    for (aseq *a = d->seqs; a; a = a->next)
        if (a->owner == p && a->seq_id == seq_id)
            return a;
    return NULL;
}

void at_request_from_wire(at_request *r, const ctrl_sampling *s, uint64_t default_seed) {
    r->max_tokens = (int)s->max_tokens;
    r->ignore_eos = s->ignore_eos;
    afd_sampling_default(&r->sp);
    r->sp.temperature = s->temperature, r->sp.top_p = s->top_p;
    r->sp.top_k = s->top_k > 0 ? s->top_k : 0;
    r->sp.seed = s->has_seed ? s->seed : default_seed;
    r->sp.n_logprobs = s->logprobs ? s->top_logprobs : -1;
    r->n_stop = (int)(s->n_stop < AT_MAX_STOP ? s->n_stop : AT_MAX_STOP);
    for (int i = 0; i < r->n_stop; i++)
        r->stop_ids[i] = (int32_t)s->stop[i];
}

aseq *at_seq_new(attnd *d, cpeer *owner, uint64_t seq_id, uint64_t req, const char *req_id,
                 const ctrl_sampling *s, uint32_t n_prompt) {
    aseq *a = afd_try_alloc(sizeof *a);
    if (!a)
        return NULL;
    memset(a, 0, sizeof *a);
    a->id = ++d->next_id, a->seq_id = seq_id, a->req = req, a->owner = owner;
    a->n_prompt = n_prompt;
    a->logprobs = s->logprobs, a->n_top = s->top_logprobs;
    snprintf(a->req_id, sizeof a->req_id, "%s", req_id);
    return a;
}

static int on_submit(attnd *d, cpeer *p, const wire_hdr *h, const ctrl_submit *m) {
    if (d->cfg.role != 0) {
        send_ack(d, p, h->step, m->seq_id, CTRL_R_ROLE,
                 d->cfg.role == 1 ? "decode instance: prompts come by handoff (RESERVE)"
                                  : "prefill instance: send PREFILL");
        return 0;
    }
    if (d->draining) {
        afd_metric_inc(d->m_req_refused);
        send_ack(d, p, h->step, m->seq_id, CTRL_R_DRAINING, "attnd is draining");
        return 0;
    }
    if (!at_ffn_ok(d)) {
        afd_metric_inc(d->m_req_refused);
        send_ack(d, p, h->step, m->seq_id, CTRL_R_PEER, "the FFN group is down (reconnecting)");
        return 0;
    }
    if (find_seq(d, p, m->seq_id)) {
        send_ack(d, p, h->step, m->seq_id, CTRL_R_DUPLICATE, "seq_id already running");
        return 0;
    }
    int32_t *prompt = afd_try_alloc((size_t)m->n_prompt * sizeof *prompt);
    aseq *a = at_seq_new(d, p, m->seq_id, h->step, m->req_id, &m->s, m->n_prompt);
    if (!prompt || !a) {
        free(prompt), free(a);
        send_ack(d, p, h->step, m->seq_id, CTRL_R_BUSY, "out of memory");
        return 0;
    }
    for (uint32_t i = 0; i < m->n_prompt; i++)
        prompt[i] = (int32_t)m->prompt[i];
    at_request r = {.id = a->id, .prompt = prompt, .n_prompt = (int)m->n_prompt, .ud = a};
    at_request_from_wire(&r, &m->s, a->id);
    int rc = at_sched_submit(d->sched, &r);
    free(prompt);
    if (rc) {
        char why[160];
        snprintf(why, sizeof why, "refused: %s (prompt %u tokens, max_tokens %u)",
                 afd_strerror(rc), m->n_prompt, m->s.max_tokens);
        free(a);
        afd_metric_inc(d->m_req_refused);
        send_ack(d, p, h->step, m->seq_id, refuse_reason(rc), why);
        return 0;
    }
    at_seq_link(d, a);
    afd_metric_inc(d->m_req_ok);
    send_ack(d, p, h->step, m->seq_id, CTRL_OK, "");
    log_info("seq %llu (req %s) accepted: %u prompt tokens, max %u", (unsigned long long)m->seq_id,
             a->req_id, m->n_prompt, m->s.max_tokens);
    return 0;
}

/* Draining (SIGTERM, DRAIN from a router, POST /admin/drain): no new sequences, reservations
 * or prefills; the running ones finish (or are cancelled at the deadline), then the process
 * exits 0. deadline_ms 0: drain_timeout_ms. */
static void drain_start(attnd *d, int64_t deadline_ms, const char *by) {
    if (deadline_ms <= 0)
        deadline_ms = d->cfg.drain_timeout_ms;
    if (!d->stopping)
        log_info("draining (asked by %s; up to %lld ms), then exiting", by,
                 (long long)deadline_ms);
    d->draining = d->stopping = true;
    d->drain_deadline = (int64_t)afd_now_ns() + deadline_ms * 1000000;
    afd_notify_stopping();
    event_base_loopbreak(d->base);
}

static void drain_resume(attnd *d, const char *by) {
    if (d->draining)
        log_info("drain ended by %s", by);
    d->draining = d->stopping = false;
}

static int on_router_msg(attnd *d, cpeer *p, const wire_hdr *h, const ctrl_msg *m) {
    switch (m->type) {
    case WIRE_T_CTRL_SUBMIT:
        return on_submit(d, p, h, &m->u.submit);
    case WIRE_T_CTRL_CANCEL: {
        aseq *a = find_seq(d, p, m->u.cancel.seq_id);
        if (a)
            at_sched_cancel(d->sched, a->id);
        else
            ho_on_cancel(d, p, m->u.cancel.seq_id);
        return 0;
    }
    case WIRE_T_CTRL_DRAIN:
        if (m->u.drain.resume)
            drain_resume(d, p->name);
        else
            drain_start(d, (int64_t)m->u.drain.deadline_ms, p->name);
        return 0;
    case WIRE_T_CTRL_RESERVE:
        return ho_on_reserve(d, p, h, &m->u.reserve);
    case WIRE_T_CTRL_PREFILL:
        return ho_on_prefill(d, p, h, &m->u.prefill);
    case WIRE_T_CTRL_RELEASE:
        return ho_on_release(d, p, &m->u.release);
    default:
        log_warn("control peer %s: %s is not served by this attnd", p->name,
                 ctrl_type_name(m->type));
        return 0;
    }
}

static int on_ctrl(attnd *d, cpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    ctrl_msg m;
    int rc = ctrl_decode(h, pl, len, &d->clim, &m);
    if (rc) {
        log_warn("control peer %s: bad %s: %s", p->name, ctrl_type_name(h->type),
                 wire_strerror(rc));
        return -1;
    }
    return p->kind == CP_ROUTER ? on_router_msg(d, p, h, &m) : ho_on_frame(d, p, &m);
}

static const uint8_t ctrl_role[] = {CTRL_ROLE_BOTH, CTRL_ROLE_DECODE, CTRL_ROLE_PREFILL};

static const char *advertised(const attnd *d) {
    return d->cfg.advertise_addr && d->cfg.advertise_addr[0] ? d->cfg.advertise_addr
                                                             : d->cfg.listen_addr;
}

static void send_register(attnd *d, cpeer *p) {
    ctrl_register r = {.instance_id = (uint32_t)d->cfg.instance_id,
                       .role = ctrl_role[d->cfg.role],
                       .kv_blocks = (uint32_t)d->e.kv.n_blocks,
                       .block_size = (uint32_t)d->e.kv.layout.block_size,
                       .max_batch = (uint32_t)d->cfg.max_seqs,
                       .max_context = (uint32_t)d->w.cfg.max_pos,
                       .port = (uint16_t)d->data_port};
    snprintf(r.host, sizeof r.host, "%s", advertised(d));
    snprintf(r.model, sizeof r.model, "%s", d->w.cfg.model_type);
    uint8_t *buf = xmalloc(1024);
    size_t len;
    if (ctrl_register_encode(buf, 1024, &r, &len) == 0)
        at_send_ctrl(d, p, WIRE_T_CTRL_REGISTER, 0, buf, len);
    else
        free(buf);
}

static int on_hello(attnd *d, cpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    char why[WIRE_REASON_MAX + 1] = "";
    int status = WIRE_REFUSE_VERSION;
    if (h->type != WIRE_T_HELLO || wire_hello_decode(pl, len, &p->hello))
        snprintf(why, sizeof why, "expected a valid HELLO");
    else
        status = wire_hello_check(&d->mine, &p->hello, why, sizeof why);
    if (status == WIRE_REFUSE_NONE && p->hello.role != WIRE_ROLE_ROUTER &&
        p->hello.role != WIRE_ROLE_ATTND) {
        status = WIRE_REFUSE_ROLE;
        snprintf(why, sizeof why, "an attnd's control port takes routers and attnds, not %s",
                 wire_role_name(p->hello.role));
    }
    wire_hello ack = d->mine;
    ack.status = (uint8_t)status;
    snprintf(ack.reason, sizeof ack.reason, "%s", why);
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &ack, &n) == 0)
        at_send_ctrl(d, p, WIRE_T_HELLO_ACK, 0, buf, n);
    else
        free(buf);
    if (status != WIRE_REFUSE_NONE) {
        log_warn("control peer %s refused: %s", p->name, why);
        xp_peer_close(p->xp, why);
        return 0;
    }
    bool attnd_peer = p->hello.role == WIRE_ROLE_ATTND;
    wire_limits wl;
    ctrl_wire_limits(&d->clim, attnd_peer ? CTRL_TYPES_HANDOFF : CTRL_TYPES_TO_ATTND, &wl);
    xp_peer_set_limits(p->xp, &wl);
    p->kind = attnd_peer ? CP_HANDOFF_IN : CP_ROUTER;
    snprintf(p->name, sizeof p->name, "%s/%s#%u", xp_peer_name(p->xp), p->hello.name,
             p->hello.instance_id);
    log_info("control peer %s connected (%s)", p->name, wire_role_name(p->hello.role));
    if (attnd_peer)
        ho_on_hello_in(d, p);
    else
        send_register(d, p);
    return 0;
}

/* A router we dialed answers our HELLO: then it is a router session like any other. */
static int on_router_ack(attnd *d, cpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    wire_hello a;
    if (h->type != WIRE_T_HELLO_ACK || wire_hello_decode(pl, len, &a) || a.status) {
        log_warn("router %s refused us: %s", p->name,
                 h->type == WIRE_T_HELLO_ACK ? a.reason : "no HELLO_ACK");
        return -1;
    }
    wire_limits wl;
    ctrl_wire_limits(&d->clim, CTRL_TYPES_TO_ATTND, &wl);
    xp_peer_set_limits(p->xp, &wl);
    p->kind = CP_ROUTER;
    p->hello = a;
    log_info("registered with router %s", p->name);
    send_register(d, p);
    return 0;
}

static void rdial(attnd *d, int i) {
    const char *hp = d->cfg.routers[i];
    fc_shard_addr a;
    if (fc_parse_addr(hp, &a)) {
        log_error("routers: '%s' is not host:port", hp);
        return;
    }
    xp_peer *xp;
    afd_err err = {0};
    if (xp_connect(d->xp, a.host, a.port, &xp, &err)) {
        log_warn("router %s: %s", hp, err.msg);
        return;
    }
    cpeer *p = at_cpeer_new(d, xp, CP_RDIAL);
    p->rdial = i;
    d->rdial[i] = p;
    wire_limits wl;
    ctrl_wire_limits(&d->clim, CTRL_TYPES_TO_ATTND, &wl);
    wl.types |= WIRE_TYPES_HANDSHAKE;
    xp_peer_set_limits(xp, &wl);
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &d->mine, &n) == 0)
        at_send_ctrl(d, p, WIRE_T_HELLO, 0, buf, n);
    else
        free(buf);
}

/* Dials every configured router we have no session with (at most once a second). */
static void rdial_all(attnd *d) {
    uint64_t now = afd_now_ns();
    if (d->stopping || now - d->rdial_last_ns < 1000000000ull)
        return;
    d->rdial_last_ns = now;
    for (int i = 0; i < d->cfg.n_routers; i++)
        if (!d->rdial[i])
            rdial(d, i);
}

static int on_frame(void *ud, xp_peer *xp, const wire_hdr *h, const uint8_t *pl, size_t len) {
    attnd *d = ud;
    cpeer *p = xp_peer_ud(xp);
    if (!p)
        return -1;
    switch (p->kind) {
    case CP_PENDING: return on_hello(d, p, h, pl, len);
    case CP_RDIAL: return on_router_ack(d, p, h, pl, len);
    case CP_DLINK: return ho_on_dlink_frame(d, p, h, pl, len);
    default: return on_ctrl(d, p, h, pl, len);
    }
}

cpeer *at_cpeer_new(attnd *d, xp_peer *xp, int kind) {
    cpeer *p = xcalloc(1, sizeof *p);
    p->d = d, p->xp = xp, p->kind = kind, p->rdial = -1;
    snprintf(p->name, sizeof p->name, "%s", xp_peer_name(xp));
    xp_peer_set_ud(xp, p);
    p->next = d->peers;
    if (d->peers)
        d->peers->prev = p;
    d->peers = p;
    return p;
}

void at_cpeer_free(attnd *d, cpeer *p) {
    if (p->rdial >= 0 && d->rdial)
        d->rdial[p->rdial] = NULL; /* redialed by the tick */
    if (p->prev)
        p->prev->next = p->next;
    else
        d->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->xp)
        xp_peer_set_ud(p->xp, NULL);
    free(p);
}

static int on_accept(void *ud, xp_peer *xp) {
    attnd *d = ud;
    if (d->stopping)
        return -1;
    at_cpeer_new(d, xp, CP_PENDING);
    wire_limits hs;
    wire_limits_handshake(&hs);
    xp_peer_set_limits(xp, &hs);
    return 0;
}

/* A router that goes away cancels its sequences (their blocks free at the next step) and
 * its reservations; a decode or prefill peer's handoffs fail (handoff.c). */
static void on_down(void *ud, xp_peer *xp, int reason, const char *why) {
    attnd *d = ud;
    cpeer *p = xp_peer_ud(xp);
    (void)reason;
    if (!p)
        return;
    int n = 0;
    for (aseq *a = d->seqs; a; a = a->next)
        if (a->owner == p) {
            a->owner = NULL;
            if (!a->pj) {
                at_sched_cancel(d->sched, a->id);
                n++;
            }
        }
    ho_on_peer_down(d, p);
    log_info("control peer %s gone (%s): %d sequences cancelled", p->name, why ? why : "closed",
             n);
    at_cpeer_free(d, p);
}

/* ---- LOAD and metrics ------------------------------------------------------------------------ */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void send_load(attnd *d, double last_ms, int batch) {
    at_sched_stats st;
    at_sched_get_stats(d->sched, &st);
    double sorted[STEP_RING];
    int n = d->n_steps_ring < STEP_RING ? d->n_steps_ring : STEP_RING;
    memcpy(sorted, d->step_ms, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_d);
    ctrl_load l = {.instance_id = (uint32_t)d->cfg.instance_id, .role = ctrl_role[d->cfg.role],
                   .draining = d->draining, .micro_batches = (uint16_t)d->cfg.micro_batches,
                   .step = st.steps, .running = (uint32_t)st.running,
                   .waiting = (uint32_t)st.waiting, .batch_tokens = (uint32_t)batch,
                   .last_step_us = (uint32_t)(last_ms * 1e3),
                   .p50_step_us = n ? (uint32_t)(sorted[n / 2] * 1e3) : 0,
                   .p99_step_us = n ? (uint32_t)(sorted[(int)((n - 1) * 0.99)] * 1e3) : 0,
                   .kv_blocks_free = (uint32_t)d->e.kv.n_free,
                   .kv_blocks_reserved = (uint32_t)d->resv_blocks,
                   .reservations = (uint32_t)d->n_resv_open,
                   .ctx_tokens = st.ctx_tokens,
                   .kv_blocks_total = (uint32_t)d->e.kv.n_blocks,
                   .block_size = (uint32_t)d->e.kv.layout.block_size,
                   .tokens_per_s = last_ms > 0 ? (float)(st.running * 1e3 / last_ms) : 0};
    for (cpeer *p = d->peers; p; p = p->next) {
        if (p->kind != CP_ROUTER)
            continue;
        uint8_t *buf = xmalloc(256);
        size_t len;
        if (ctrl_load_encode(buf, 256, &l, &len) == 0)
            at_send_ctrl(d, p, WIRE_T_CTRL_LOAD, 0, buf, len);
        else
            free(buf);
    }
}

static double kv_free_fn(void *ud) { return ((attnd *)ud)->e.kv.n_free; }

static void metrics_init(attnd *d) {
    afd_metrics *r = d->reg;
    static const double tok_b[] = {1, 4, 16, 64, 128, 256, 512, 1024, 4096};
    d->m_step = afd_metrics_histogram(r, "afd_attnd_step_seconds", "one step (forward + sampling)",
                                      afd_metrics_latency_buckets, AFD_METRICS_LATENCY_N, NULL);
    d->m_batch = afd_metrics_histogram(r, "afd_attnd_batch_tokens", "tokens per step", tok_b,
                                       (int)(sizeof tok_b / sizeof tok_b[0]), NULL);
    d->m_tokens = afd_metrics_counter(r, "afd_attnd_generated_tokens_total", "tokens sampled",
                                      NULL);
    d->m_running = afd_metrics_gauge(r, "afd_attnd_running", "running sequences", NULL);
    d->m_waiting = afd_metrics_gauge(r, "afd_attnd_waiting", "waiting sequences", NULL);
    d->m_kv_free = afd_metrics_gauge_fn(r, "afd_attnd_kv_blocks_free", "free KV blocks",
                                        kv_free_fn, d, NULL);
    d->m_ffn_wait = afd_metrics_counter(r, "afd_attnd_ffn_wait_seconds_total",
                                        "time blocked on F2A answers", NULL);
    const char *req = "sequences submitted, by result";
    d->m_req_ok = afd_metrics_counter(r, "afd_attnd_requests_total", req, "result", "accepted",
                                      NULL);
    d->m_req_refused = afd_metrics_counter(r, "afd_attnd_requests_total", req, "result",
                                           "refused", NULL);
    d->m_seq_error = afd_metrics_counter(r, "afd_attnd_sequence_errors_total",
                                         "sequences ended by an error (FFN failure, KV)", NULL);
    ho_metrics_init(d);
    afd_metrics_add_process(r, AFD_VERSION);
}

/* ---- start-up ----------------------------------------------------------------------------------- */

static const uint8_t f2a_dt[] = {WIRE_DT_BF16, WIRE_DT_E4M3, WIRE_DT_F32};

static int open_ffn(attnd *d, afd_err *err) {
    const attnd_cfg *c = &d->cfg;
    const afd_model_config *m = &d->w.cfg;
    fc_opts *o = &d->fo;
    fc_opts_default(o);
    if (c->n_ffn != c->ffn_ep_size * c->ffn_tp_size || c->n_ffn > FC_MAX_SHARDS)
        return afd_errf(err, -EINVAL, "ffn: %d shards listed, ffn_ep_size %d x ffn_tp_size %d",
                        c->n_ffn, c->ffn_ep_size, c->ffn_tp_size);
    o->n_shards = c->n_ffn;
    for (int i = 0; i < c->n_ffn; i++) {
        if (fc_parse_addr(c->ffn[i], &o->shards[i]))
            return afd_errf(err, -EINVAL, "ffn: '%s' is not host:port", c->ffn[i]);
        o->shards[i].ep_rank = i / c->ffn_tp_size, o->shards[i].ep_size = c->ffn_ep_size;
        o->shards[i].tp_rank = i % c->ffn_tp_size, o->shards[i].tp_size = c->ffn_tp_size;
    }
    o->slots = c->micro_batches;
    o->max_tok = (uint32_t)((c->max_batch_tokens + c->micro_batches - 1) / c->micro_batches);
    o->instance_id = (uint32_t)c->instance_id;
    snprintf(o->name, sizeof o->name, "attnd");
    o->fingerprint = d->fingerprint;
    o->dims = (wire_dims){.hidden = (uint32_t)m->hidden, .top_k = (uint32_t)m->top_k,
                          .n_experts = (uint32_t)m->n_experts, .n_layers = (uint32_t)m->n_layers,
                          .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = f2a_dt[c->f2a_dtype],
                          .moe_layers = m->is_moe};
    o->err_mode = c->err_mode;
    o->heartbeat_ms = (int)c->heartbeat_ms, o->peer_timeout_ms = (int)c->peer_timeout_ms;
    return fc_open(&d->ffn, o, err);
}

static int open_engine(attnd *d, afd_err *err) {
    const attnd_cfg *c = &d->cfg;
    afd_backend_opts bo = {.kind = "auto", .isa = c->isa, .n_threads = c->threads};
    int rc = afd_backend_open(&bo, &d->be);
    if (rc)
        return afd_errf(err, rc, "backend (isa %s): %s", c->isa, afd_strerror(rc));
    if ((rc = afd_model_open(c->model, AFD_PART_ATTN, NULL, &d->w, &d->set, err)))
        return rc;
    d->fingerprint = afd_model_fingerprint(&d->w.cfg, d->set);
    afd_engine_opts eo;
    afd_engine_opts_default(&eo);
    eo.kv_dtype = c->kv_dtype ? AFD_DT_F8_E4M3 : AFD_DT_BF16;
    eo.block_size = c->block_size;
    eo.f2a_dtype = c->f2a_dtype == 1 ? AFD_DT_F8_E4M3 : c->f2a_dtype == 2 ? AFD_DT_F32
                                                                          : AFD_DT_BF16;
    afd_kv_layout lay;
    afd_kv_layout_init(&lay, eo.kv_dtype, eo.block_size, d->w.cfg.n_layers, d->w.cfg.n_kv_heads,
                       d->w.cfg.head_dim);
    uint64_t blocks = c->kv_mem / lay.block_bytes;
    if (blocks < 1 || blocks > (1u << 30))
        return afd_errf(err, -EINVAL, "kv_mem %llu bytes holds %llu blocks of %zu bytes",
                        (unsigned long long)c->kv_mem, (unsigned long long)blocks,
                        lay.block_bytes);
    eo.kv_blocks = (int)blocks;
    return afd_engine_init(&d->e, d->be, &d->w, &eo, err);
}

static void describe(attnd *d) {
    const afd_model_config *m = &d->w.cfg;
    wire_hello *h = &d->mine;
    memset(h, 0, sizeof *h);
    h->proto_min = WIRE_VERSION_MIN, h->proto_max = WIRE_VERSION_MAX;
    h->role = WIRE_ROLE_ATTND;
    h->instance_id = (uint32_t)d->cfg.instance_id;
    h->model_fingerprint = d->fingerprint;
    h->ep_size = h->tp_size = 1;
    h->n_layers = (uint32_t)m->n_layers, h->n_experts = (uint32_t)m->n_experts;
    h->hidden = (uint32_t)m->hidden, h->top_k = (uint16_t)m->top_k;
    h->a2f_dtype = WIRE_DT_E4M3, h->f2a_dtype = f2a_dt[d->cfg.f2a_dtype];
    h->max_tok = d->fo.max_tok;
    snprintf(h->name, sizeof h->name, "attnd");
    ctrl_limits_default(&d->clim); /* token ids are checked by the scheduler: a bad one is a
                                      refusal with a reason, not a dropped router */
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    drain_start(arg, 0, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* A broken FFN group is reconnected (fc_close + fc_open, bounded wait) at most once a second;
 * meanwhile new work is refused with CTRL_R_PEER and /ready says why. */
static void ffn_retry(attnd *d) {
    char why[200] = "";
    if (d->ffn && !fc_broken(d->ffn, why, sizeof why))
        return;
    if (d->ffn)
        snprintf(d->ffn_why, sizeof d->ffn_why, "%s", why);
    uint64_t now = afd_now_ns();
    if (now - d->last_ffn_retry < 1000000000ull)
        return;
    d->last_ffn_retry = now;
    fc_close(d->ffn);
    d->ffn = NULL;
    d->pipe.ffn = NULL;
    fc_opts o = d->fo;
    o.connect_timeout_ms = 1000;
    afd_err err = {0};
    if (fc_open(&d->ffn, &o, &err) == 0) {
        d->pipe.ffn = d->ffn;
        log_info("FFN group reconnected (%d shard(s))", d->fo.n_shards);
    } else {
        d->ffn = NULL;
        log_warn("FFN group down (%s); reconnect failed: %s", d->ffn_why, err.msg);
    }
}

bool at_ffn_ok(attnd *d) { return d->ffn && !fc_broken(d->ffn, NULL, 0); }

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    attnd *d = arg;
    if (d->ffn)
        fc_progress(d->ffn); /* heartbeats with the FFN group while idle */
    ffn_retry(d);
    rdial_all(d);
    ho_tick(d);
    if (at_sched_idle(d->sched))
        send_load(d, 0, 0); /* the router sees freed capacity without a step */
    afd_notify_watchdog(); /* from the loop: a wedged loop stops petting */
    uint64_t now = afd_now_ns();
    if (now - d->last_status_ns > 5000000000ull) {
        at_sched_stats st;
        at_sched_get_stats(d->sched, &st);
        d->last_status_ns = now;
        afd_notify_status("%s: %d running, %d waiting, KV %d/%d blocks free, %d reservation(s)%s",
                          at_ffn_ok(d) ? "serving" : "FFN group down", st.running, st.waiting,
                          d->e.kv.n_free, d->e.kv.n_blocks, d->n_resv_open,
                          d->draining ? ", draining" : "");
    }
    event_base_loopbreak(d->base);
}

static int ready(void *ud, char *why, size_t n) {
    attnd *d = ud;
    char w[200] = "";
    if (d->draining) {
        snprintf(why, n, "draining");
        return 0;
    }
    if (!d->ffn || fc_broken(d->ffn, w, sizeof w)) {
        snprintf(why, n, "FFN group down: %s", w);
        return 0;
    }
    return 1;
}


/* ---- admin actions (POST on the admin port; afdctl) ------------------------------------ */

static int reply_json(struct evbuffer *out, const char **ct, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reply_json(struct evbuffer *out, const char **ct, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    *ct = "application/json";
    return code;
}

static int error_json(struct evbuffer *out, const char **ct, int code, const char *msg) {
    char esc[600];
    afd_json_escape(esc, sizeof esc, msg);
    return reply_json(out, ct, code, "{\"ok\":false,\"error\":\"%s\"}\n", esc);
}

/* POST /admin/drain {"deadline_ms": N} (optional): drain, then exit. {"resume": true} undoes
 * it while sequences still run. */
static int post_drain(void *ud, const char *body, size_t len, struct evbuffer *out,
                      const char **ct) {
    attnd *d = ud;
    json_error_t je;
    json_t *j = len ? json_loadb(body, len, 0, &je) : json_object();
    if (!json_is_object(j)) {
        json_decref(j);
        return error_json(out, ct, 400, "body: a JSON object");
    }
    json_t *dl = json_object_get(j, "deadline_ms"), *res = json_object_get(j, "resume");
    if ((dl && (!json_is_integer(dl) || json_integer_value(dl) < 0)) ||
        (res && !json_is_boolean(res))) {
        json_decref(j);
        return error_json(out, ct, 400, "deadline_ms: an integer >= 0; resume: a boolean");
    }
    if (res && json_is_true(res))
        drain_resume(d, "POST /admin/drain");
    else
        drain_start(d, dl ? (int64_t)json_integer_value(dl) : 0, "POST /admin/drain");
    json_decref(j);
    return reply_json(out, ct, 200, "{\"ok\":true,\"draining\":%s}\n",
                      d->draining ? "true" : "false");
}

/* POST /admin/ffn {"ffn": ["host:port", ...], "ep_size": E, "tp_size": T}: moves this attnd to
 * another FFN group (a new shard map) at a step boundary: the new group is connected and
 * checked (HELLO with the shard map) first; only then is the old one closed. Sequences keep
 * running (their K/V is here); a refusal leaves the old group in place. */
static int post_ffn(void *ud, const char *body, size_t len, struct evbuffer *out,
                    const char **ct) {
    attnd *d = ud;
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    char why[300];
    json_t *arr = json_object_get(j, "ffn");
    json_t *ep = json_object_get(j, "ep_size"), *tp = json_object_get(j, "tp_size");
    int n = json_is_array(arr) ? (int)json_array_size(arr) : 0;
    int e = ep ? (int)json_integer_value(ep) : n, t = tp ? (int)json_integer_value(tp) : 1;
    if (!json_is_object(j) || n < 1 || n > FC_MAX_SHARDS || (ep && !json_is_integer(ep)) ||
        (tp && !json_is_integer(tp)) || e < 1 || t < 1 || e * t != n) {
        json_decref(j);
        snprintf(why, sizeof why, "body: {\"ffn\": [\"host:port\", ...] (1..%d), \"ep_size\": E, "
                                  "\"tp_size\": T} with E x T = the shards listed",
                 FC_MAX_SHARDS);
        return error_json(out, ct, 400, why);
    }
    fc_opts o = d->fo;
    o.n_shards = n;
    for (int i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(arr, (size_t)i));
        if (!a || fc_parse_addr(a, &o.shards[i])) {
            json_decref(j);
            snprintf(why, sizeof why, "ffn[%d] is not host:port", i);
            return error_json(out, ct, 400, why);
        }
        o.shards[i].ep_rank = i / t, o.shards[i].ep_size = e;
        o.shards[i].tp_rank = i % t, o.shards[i].tp_size = t;
    }
    json_decref(j);
    o.connect_timeout_ms = 2000; /* the loop waits meanwhile: stay under the peers' timeout */
    fc_group *g;
    afd_err err = {0};
    uint64_t t0 = afd_now_ns();
    if (fc_open(&g, &o, &err)) {
        log_warn("FFN group move refused: %s (the old group stays)", err.msg);
        return error_json(out, ct, 502, err.msg);
    }
    fc_close(d->ffn); /* between steps: no micro-batch in flight */
    d->ffn = g;
    d->pipe.ffn = g;
    d->fo = o;
    log_info("FFN group moved to %d shard(s) (EP %d x TP %d) in %.1f ms", n, e, t,
             (double)(afd_now_ns() - t0) / 1e6);
    return reply_json(out, ct, 200, "{\"ok\":true,\"shards\":%d,\"ep_size\":%d,\"tp_size\":%d}\n",
                      n, e, t);
}

static int open_ctrl(attnd *d, afd_err *err) {
    const attnd_cfg *c = &d->cfg;
    xp_opts xo;
    xp_opts_default(&xo);
    xo.err_mode = c->err_mode ? XP_ERR_PEER : XP_ERR_NONE;
    xo.instance_id = (uint32_t)c->instance_id;
    xo.heartbeat_ms = (int)c->heartbeat_ms, xo.peer_timeout_ms = (int)c->peer_timeout_ms;
    xo.rx_bufs = 2;
    xo.rx_buf_size = ctrl_max_payload(&d->clim, CTRL_TYPES_TO_ATTND | CTRL_TYPES_HANDOFF);
    xp_handlers hd = {.on_accept = on_accept, .on_frame = on_frame, .on_down = on_down};
    int rc = xp_init(&d->xp, &xo, &hd, d, err);
    if (!rc)
        rc = xp_listen(d->xp, c->listen_addr, c->listen_port, &d->data_port, err);
    if (!rc)
        rc = xp_attach(d->xp, d->base, 0);
    if (!rc)
        rc = ho_init(d, err);
    if (!rc && c->n_routers) {
        d->rdial = xcalloc((size_t)c->n_routers, sizeof *d->rdial);
        for (int i = 0; i < c->n_routers; i++)
            rdial(d, i);
        d->rdial_last_ns = afd_now_ns();
    }
    return rc;
}

int attnd_init(attnd **out, const attnd_cfg *cfg, afd_err *err) {
    *out = NULL;
    attnd *d = xcalloc(1, sizeof *d);
    d->cfg = *cfg;
    d->base = event_base_new();
    d->reg = afd_metrics_init();
    int rc = d->base ? 0 : afd_errf(err, -ENOMEM, "event base");
    if (!rc)
        rc = open_engine(d, err);
    if (!rc)
        rc = open_ffn(d, err);
    if (!rc)
        rc = at_pipe_init(&d->pipe, &d->e, d->ffn, cfg->micro_batches, (int)d->fo.max_tok,
                          cfg->max_seqs);
    if (!rc) {
        at_sched_opts so = {.max_seqs = cfg->max_seqs, .max_tokens = cfg->max_batch_tokens,
                            .prefill_chunk = cfg->prefill_chunk};
        at_sched_ops ops = {.forward = forward, .on_token = on_token, .on_finish = on_finish,
                            .on_kv = on_kv};
        rc = at_sched_new(&d->sched, &d->e, &so, &ops, d);
    }
    if (!rc) {
        describe(d);
        metrics_init(d);
        rc = open_ctrl(d, err);
    }
    if (!rc) {
        d->admin = afd_admin_start(d->base, cfg->admin_addr, cfg->admin_port, &d->admin_port,
                                   d->reg, err);
        rc = d->admin ? 0 : (err->code ? err->code : -EIO);
    }
    if (!rc) {
        afd_admin_set_ready(d->admin, ready, d);
        afd_admin_route_post(d->admin, "/admin/drain", post_drain, d);
        afd_admin_route_post(d->admin, "/admin/ffn", post_ffn, d);
        d->ev_term = evsignal_new(d->base, SIGTERM, on_signal, d);
        d->ev_int = evsignal_new(d->base, SIGINT, on_signal, d);
        d->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, d);
        struct timeval tv = {0, (suseconds_t)(cfg->heartbeat_ms * 500)};
        evsignal_add(d->ev_term, NULL);
        evsignal_add(d->ev_int, NULL);
        event_add(d->ev_tick, &tv);
        rc = afd_port_file_write(d->cfg.port_file, d->data_port, d->admin_port, err);
    }
    if (rc && !err->msg[0])
        afd_errf(err, rc, "attnd start-up: %s", afd_strerror(rc));
    if (rc) {
        attnd_free(d);
        return rc;
    }
    log_info("attnd ready: role %s, %s, FFN group of %d shard(s), %d micro-batches, %d KV blocks of %d, "
             "control %s:%d, admin %s:%d",
             ((const char *[]){"both", "decode", "prefill"})[cfg->role], cfg->model, cfg->n_ffn,
             cfg->micro_batches, d->e.kv.n_blocks, cfg->block_size,
             cfg->listen_addr, d->data_port, cfg->admin_addr, d->admin_port);
    *out = d;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void step_once(attnd *d) {
    uint64_t t0 = afd_now_ns(), w0 = d->pipe.st.wait_ns;
    int n = at_sched_step(d->sched);
    double ms = (double)(afd_now_ns() - t0) / 1e6;
    if (n < 0) {
        char why[256] = "";
        if (d->ffn) /* NULL after a failed reconnect (ffn_retry) */
            fc_broken(d->ffn, why, sizeof why);
        else
            snprintf(why, sizeof why, "(no FFN group: reconnecting)");
        log_error("step failed: %s %s", afd_strerror(n), why);
        return;
    }
    /* the gauges also after an empty step: it is the one that reaps the last finished or
     * cancelled sequences, and no step follows it while idle */
    at_sched_stats st;
    at_sched_get_stats(d->sched, &st);
    afd_metric_set(d->m_running, st.running);
    afd_metric_set(d->m_waiting, st.waiting);
    if (n == 0)
        return;
    d->step_ms[d->n_steps_ring++ % STEP_RING] = ms;
    afd_metric_observe(d->m_step, ms * 1e-3);
    afd_metric_observe(d->m_batch, n);
    afd_metric_addf(d->m_ffn_wait, (double)(d->pipe.st.wait_ns - w0) * 1e-9);
    send_load(d, ms, n);
}

/* Nothing to wait for: no sequence, no open reservation, no prefill job. */
static bool all_idle(const attnd *d) {
    return at_sched_idle(d->sched) && d->n_resv_open == 0 && !d->pjobs;
}

int attnd_run(attnd *d) {
    for (;;) {
        bool idle = all_idle(d);
        if (d->stopping && (idle || (int64_t)afd_now_ns() > d->drain_deadline))
            break;
        if (!at_sched_idle(d->sched)) {
            step_once(d);
            ho_tick(d);
            afd_notify_watchdog();
            event_base_loop(d->base, EVLOOP_NONBLOCK);
        } else {
            event_base_loop(d->base, EVLOOP_ONCE);
        }
    }
    bool clean = all_idle(d);
    log_info("attnd drained %s", clean ? "cleanly" : "(deadline: running sequences cancelled)");
    return clean ? 0 : -ETIMEDOUT;
}

void attnd_free(attnd *d) {
    if (!d)
        return;
    at_sched_free(d->sched); /* what still runs ends as cancelled (TOKENS sent) */
    ho_free(d);
    afd_admin_free(d->admin);
    if (d->ev_term)
        event_free(d->ev_term);
    if (d->ev_int)
        event_free(d->ev_int);
    if (d->ev_tick)
        event_free(d->ev_tick);
    xp_free(d->xp); /* GOODBYE to the routers; on_down frees them */
    if (d->pipe.m)
        at_pipe_free(&d->pipe);
    fc_close(d->ffn);
    afd_engine_free(&d->e);
    afd_weights_free(&d->w);
    st_set_free(d->set);
    afd_backend_free(d->be);
    afd_metrics_free(d->reg);
    free(d->rdial);
    if (d->base)
        event_base_free(d->base);
    for (aseq *a = d->seqs, *n; a; a = n) {
        n = a->next;
        free(a);
    }
    free(d);
}
