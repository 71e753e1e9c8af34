/* serve.c: the router's HTTP handlers and the life of a request.
 *
 * A completion request is parsed (router/openai.h), its prompt(s) tokenized (chat template or
 * text or ids), checked against the context, and split into one sequence per choice. Each
 * sequence goes through the SLA (router/sla.h): admitted to an instance at once, queued, or
 * rejected (429 / 503 / 400 with Retry-After). An admitted sequence is SUBMITted to a `both`
 * instance, or RESERVEd on a `decode` instance and PREFILLed on a prefill instance (the first
 * token then comes in PREFILL_DONE; tokens D sends before that are held). Tokens are
 * detokenized incrementally (only complete UTF-8), passed through the stop-string matcher and
 * sent as SSE chunks, or gathered for one JSON answer. A stop string, the client going away,
 * a timeout or a failure cancels the sequence on every instance that holds it.
 *
 * The HTTP status is decided as late as possible: a stream starts (200) with the first token,
 * so a request refused or failed before any output gets a real error status; a failure after
 * that ends the stream with an error event (never a clean [DONE] after wrong text).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "router/router.h"

/* seq_id -> sequence, for the control plane's messages (one router per process). */
#define HBUCKETS 4096
typedef struct hnode {
    rseq *s;
    struct hnode *next;
} hnode;
static hnode *hchain[HBUCKETS];

static unsigned hslot(uint64_t id) {
    return (unsigned)((id * 0x9e3779b97f4a7c15ull) >> 52);
}

static void h_put(rseq *s) {
    hnode *n = xmalloc(sizeof *n);
    unsigned b = hslot(s->seq_id);
    n->s = s, n->next = hchain[b];
    hchain[b] = n;
}

static rseq *h_get(uint64_t id) {
    for (hnode *n = hchain[hslot(id)]; n; n = n->next)
        if (n->s->seq_id == id) return n->s;
    return NULL;
}

static void h_del(rseq *s) {
    for (hnode **pp = &hchain[hslot(s->seq_id)]; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            hnode *n = *pp;
            *pp = n->next;
            free(n);
            return;
        }
}

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
    return afd_now_ns();
}

static void reply_oa_error(rh_req *h, const oa_error *e, uint32_t retry_after) {
    if (retry_after) {
        char v[16];
        snprintf(v, sizeof v, "%u", retry_after);
        rh_set_header(h, "Retry-After", v);
    }
    rh_reply_error(h, e->status, e->type, e->code, e->param[0] ? e->param : NULL, "%s", e->message);
}

static bool seq_handoff(const rseq *s) {
    return s->d && s->d->reg.role == CTRL_ROLE_DECODE;
}

static ctrl_sampling sampling_of(const rreq *q, const rseq *s) {
    const oa_request *o = &q->o;
    ctrl_sampling c = {.temperature = (float)o->temperature,
                       .top_p = (float)o->top_p,
                       .top_k = o->top_k > 0 ? o->top_k : -1,
                       .max_tokens = s->sr.max_tokens,
                       .ignore_eos = o->ignore_eos,
                       .logprobs = o->logprobs,
                       .top_logprobs = (uint8_t)(o->logprobs ? o->top_logprobs : 0)};
    if (o->has_seed) {
        c.has_seed = true;
        c.seed = (uint64_t)o->seed + s->index; /* n > 1: different samples, reproducibly */
    }
    return c;
}

/* ---- output ------------------------------------------------------------------------------- */

static void req_free(router *r, rreq *q);
static void req_maybe_done(router *r, rreq *q);
static void req_fail(router *r, rreq *q, int status, const char *code, const char *msg,
                     uint32_t retry_after);

/* A chunk of the stream (json is consumed). Before the stream starts it waits in q->pend. */
static void send_chunk(rreq *q, char *json, size_t len) {
    if (!json) return;
    if (!q->started) {
        if (q->n_pend == q->cap_pend) {
            q->cap_pend = q->cap_pend ? 2 * q->cap_pend : 16;
            q->pend = xrealloc(q->pend, sizeof *q->pend * q->cap_pend);
            q->pend_len = xrealloc(q->pend_len, sizeof *q->pend_len * q->cap_pend);
        }
        q->pend[q->n_pend] = json;
        q->pend_len[q->n_pend++] = len;
        return;
    }
    if (!q->h) {
        free(json);
        return;
    }
    long queued = rh_sse_send(q->h, json, len);
    free(json);
    if (queued > (long)q->r->cfg.stream_buffer) {
        log_warn("client of %s reads too slowly (%ld bytes queued): stream cut", q->id, queued);
        q->gone = true; /* req_maybe_done / the tick cancels and frees */
        rh_abort(q->h);
        q->h = NULL;
    }
}

/* "fp_" and 10 hex digits of the model's fingerprint, set by serve_init (one router per
 * process, like hchain). */
static char sys_fp[24];

static oa_meta meta_of(const rreq *q) {
    return (oa_meta){.endpoint = q->o.endpoint,
                     .id = q->id,
                     .created = q->created,
                     .model = q->o.model,
                     .system_fingerprint = sys_fp,
                     .include_usage = q->o.include_usage};
}

/* The stream starts (200, then for chat every choice's role chunk, then the chunks made so far)
 * once there is output to send and every choice has been admitted (n > 1: a choice still queued
 * may yet be refused, and the client must then get the error status, not half a stream), or
 * when everything is done. Returns 0 once started. */
static int try_start(rreq *q, bool force) {
    if (q->started) return q->h ? 0 : -1;
    if (!q->streaming || q->dead || !q->h || rh_req_gone(q->h)) return -1;
    if (!force && !q->n_pend) return -1;
    for (uint32_t i = 0; i < q->n_seqs; i++)
        if (q->seqs[i].state == SQ_NEW || q->seqs[i].state == SQ_WAIT) return -1;
    if (rh_sse_start(q->h)) return -1;
    q->started = true;
    oa_meta m = meta_of(q);
    for (uint32_t i = 0; q->o.endpoint == OA_CHAT && i < q->n_seqs; i++) {
        oa_delta d = {.index = q->seqs[i].index, .role = true};
        size_t len;
        char *js = oa_chunk_json(&m, &d, &len);
        send_chunk(q, js, len);
    }
    for (uint32_t i = 0; i < q->n_pend; i++)
        send_chunk(q, q->pend[i], q->pend_len[i]); /* after a cut: freed unsent */
    q->n_pend = 0;
    return q->h ? 0 : -1;
}

/* Logprob views of tokens [a, b) of s (into the caller's arrays). */
static uint32_t lp_view(const router *r, const rseq *s, uint32_t a, uint32_t b, oa_lp_token *lp,
                        oa_lp_cand *cands) {
    uint32_t k = s->q->o.top_logprobs, n = 0;
    for (uint32_t i = a; i < b; i++, n++) {
        const uint8_t *bytes;
        size_t len;
        if (tok_token_bytes(r->tok, s->ids[i], &bytes, &len)) bytes = NULL, len = 0;
        lp[n] = (oa_lp_token){.bytes = bytes,
                              .len = (uint32_t)len,
                              .logprob = s->lps[i],
                              .top = cands + (size_t)n * k,
                              .n_top = k};
        for (uint32_t j = 0; j < k; j++) {
            const ctrl_cand *c = &s->tops[(size_t)i * k + j];
            const uint8_t *cb;
            size_t cl;
            if (tok_token_bytes(r->tok, (int32_t)c->id, &cb, &cl)) cb = NULL, cl = 0;
            cands[(size_t)n * k + j] = (oa_lp_cand){cb, (uint32_t)cl, c->logprob};
        }
    }
    return n;
}

/* Text released by the stop matcher: a chunk (streaming) or gathered. The logprobs of the
 * tokens whose text is now all out go with it. */
static void emit(router *r, rseq *s, const char *text, size_t n, oa_finish fin) {
    rreq *q = s->q;
    uint64_t out = oa_stop_emitted(s->stop);
    uint32_t lp_to = s->n_lp_sent;
    if (q->o.logprobs) {
        while (lp_to < s->n_ids && s->tok_end[lp_to] <= out)
            lp_to++;
        if (fin != OA_FINISH_NONE && oa_stop_which(s->stop) < 0)
            lp_to = s->n_ids; /* the end: every token's text is out */
    }
    if (!q->streaming) {
        if (n) tok_str_append(&s->text, text, n);
        s->n_lp_sent = lp_to;
        return;
    }
    if (!n && lp_to == s->n_lp_sent && fin == OA_FINISH_NONE) return;
    if (q->dead || !q->h) return;
    uint32_t nl = lp_to - s->n_lp_sent, k = q->o.top_logprobs;
    oa_lp_token *lp = nl ? xmalloc(sizeof *lp * nl) : NULL;
    oa_lp_cand *cands = nl && k ? xmalloc(sizeof *cands * nl * k) : NULL;
    if (nl) lp_view(r, s, s->n_lp_sent, lp_to, lp, cands);
    oa_meta m = meta_of(q);
    oa_delta d = {.index = s->index,
                  .text = text,
                  .text_len = n,
                  .finish = fin,
                  .logprobs = q->o.logprobs,
                  .lp = lp,
                  .n_lp = nl,
                  .text_offset0 = s->text_offset};
    size_t len;
    {
        char *js_ = oa_chunk_json(&m, &d, &len);
        send_chunk(q, js_, len);
    }
    s->text_offset += oa_text_chars(text, n);
    s->n_lp_sent = lp_to;
    free(lp);
    free(cands);
    try_start(q, false);
}

static void cancel_remote(router *r, rseq *s) {
    if (s->cancel_sent) return;
    s->cancel_sent = true;
    ctrl_msg m = {.type = WIRE_T_CTRL_CANCEL};
    m.u.cancel.seq_id = s->seq_id;
    if (s->state == SQ_PREFILL && s->p) pool_send(r, s->p, &m, 0);
    if ((s->state == SQ_RESERVE || s->state == SQ_PREFILL) && s->d && s->epoch) {
        ctrl_msg rel = {.type = WIRE_T_CTRL_RELEASE};
        rel.u.release =
            (ctrl_release){.seq_id = s->seq_id, .epoch = s->epoch, .reason = CTRL_R_CANCELLED};
        pool_send(r, s->d, &rel, 0);
    } else if (s->d && s->state != SQ_WAIT && s->state != SQ_NEW) {
        pool_send(r, s->d, &m, 0);
    }
    afd_metric_inc(r->m_cancels);
}

/* The sequence leaves the SLA and the instances' books. */
static void seq_close(router *r, rseq *s, int end) {
    if (s->state == SQ_DONE) return;
    bool was_live = s->state != SQ_NEW;
    s->state = SQ_DONE;
    if (was_live) sla_req_finish(r->sla, &s->sr, now_ns(), end);
    if (s->d) s->d->n_seqs--;
    if (s->p) s->p->n_seqs--;
    s->q->n_done++;
}

static void seq_finish(router *r, rseq *s, oa_finish fin) {
    if (s->state == SQ_DONE) return;
    char buf[8];
    size_t n = 0;
    const char *out;
    size_t on = 0;
    if (tok_stream_flush(&s->ts, buf, sizeof buf, &n) == 0 && n) {
        if (oa_stop_feed(s->stop, buf, n, &out, &on) == 1) fin = OA_FINISH_STOP;
        emit(r, s, out, on, OA_FINISH_NONE);
    }
    if (oa_stop_finish(s->stop, &out, &on) == 1) fin = OA_FINISH_STOP;
    s->finish = fin;
    s->completion_tokens = s->completion_tokens ? s->completion_tokens : s->n_ids;
    emit(r, s, out, on, fin);
    seq_close(r, s, SLA_END_OK);
    req_maybe_done(r, s->q);
}

static void seq_fail(router *r, rseq *s, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void seq_fail(router *r, rseq *s, int status, const char *code, const char *fmt, ...) {
    if (s->state == SQ_DONE) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err_msg, sizeof s->err_msg, fmt, ap);
    va_end(ap);
    s->err_status = status;
    cancel_remote(r, s);
    seq_close(r, s, SLA_END_ERROR);
    req_fail(r, s->q, status, code, s->err_msg, 0);
}

/* One generated token. */
static void on_token(router *r, rseq *s, int32_t id, float lp, const ctrl_cand *top,
                     uint32_t n_top) {
    if (s->state == SQ_DONE) return;
    rreq *q = s->q;
    if (s->n_ids == s->cap_ids) {
        uint32_t cap = s->cap_ids ? s->cap_ids * 2 : 64;
        s->ids = xrealloc(s->ids, sizeof *s->ids * cap);
        s->lps = xrealloc(s->lps, sizeof *s->lps * cap);
        s->tok_end = xrealloc(s->tok_end, sizeof *s->tok_end * cap);
        if (q->o.logprobs && q->o.top_logprobs)
            s->tops = xrealloc(s->tops, sizeof *s->tops * cap * q->o.top_logprobs);
        s->cap_ids = cap;
    }
    uint32_t i = s->n_ids++;
    s->ids[i] = id;
    s->lps[i] = lp;
    if (q->o.logprobs && q->o.top_logprobs) {
        uint32_t k = q->o.top_logprobs;
        for (uint32_t j = 0; j < k; j++)
            s->tops[(size_t)i * k + j] = j < n_top ? top[j] : (ctrl_cand){0, -INFINITY};
    }
    char *buf = r->detok_buf;
    size_t n = 0;
    if (tok_stream_push(&s->ts, id, buf, r->detok_cap, &n)) {
        /* a token the tokenizer does not know: the attnd and the router disagree */
        seq_fail(r, s, 500, NULL, "token id %d is not in the tokenizer", id);
        return;
    }
    s->dec_bytes += n;
    s->tok_end[i] = s->dec_bytes;
    const char *out;
    size_t on;
    int m = oa_stop_feed(s->stop, buf, n, &out, &on);
    q->last_progress_ns = now_ns();
    if (m == 1) {
        emit(r, s, out, on, OA_FINISH_NONE);
        s->completion_tokens = s->n_ids;
        cancel_remote(r, s); /* the attnd's final TOKENS (cancelled) is ignored */
        s->finish = OA_FINISH_STOP;
        emit(r, s, "", 0, OA_FINISH_STOP);
        seq_close(r, s, SLA_END_OK);
        req_maybe_done(r, q);
        return;
    }
    emit(r, s, out, on, OA_FINISH_NONE);
}

/* ---- the end of a request -------------------------------------------------------------------- */

static void req_unlink(router *r, rreq *q) {
    if (q->prev)
        q->prev->next = q->next;
    else
        r->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
}

/* Ends the request: what still runs is cancelled, the sequences leave the id table. The memory
 * goes at the end of the current event (serve_reap): callers up the stack may still look. */
static void req_free(router *r, rreq *q) {
    if (q->dead) return;
    q->dead = true;
    q->finished = true;
    for (uint32_t i = 0; i < q->n_seqs; i++) {
        rseq *s = &q->seqs[i];
        if (s->state != SQ_DONE) {
            cancel_remote(r, s);
            seq_close(r, s, SLA_END_CANCELLED);
        }
        h_del(s);
    }
}

static void req_destroy(router *r, rreq *q) {
    for (uint32_t i = 0; i < q->n_pend; i++)
        free(q->pend[i]);
    free(q->pend), free(q->pend_len);
    for (uint32_t i = 0; i < q->n_seqs; i++) {
        rseq *s = &q->seqs[i];
        oa_stop_free(s->stop);
        tok_str_release(&s->text);
        free(s->ids), free(s->lps), free(s->tops), free(s->tok_end), free(s->early);
    }
    for (uint32_t i = 0; q->prompts && i < q->n_prompts; i++)
        tok_ids_release(&q->prompts[i]);
    free(q->prompts);
    free(q->seqs);
    oa_request_free(&q->o);
    req_unlink(r, q);
    free(q);
}

void serve_reap(router *r) {
    for (rreq *q = r->reqs, *n; q; q = n) {
        n = q->next;
        if (q->dead) req_destroy(r, q);
    }
}

static void reply_full(router *r, rreq *q) {
    uint32_t n = q->n_seqs, k = q->o.top_logprobs;
    oa_choice *ch = xcalloc(n, sizeof *ch);
    oa_lp_token **lps = xcalloc(n, sizeof *lps);
    oa_lp_cand **cands = xcalloc(n, sizeof *cands);
    oa_usage u = {0};
    for (uint32_t i = 0; i < n; i++) {
        rseq *s = &q->seqs[i];
        uint32_t nl = q->o.logprobs ? s->n_lp_sent : 0;
        if (nl) {
            lps[i] = xmalloc(sizeof **lps * nl);
            cands[i] = k ? xmalloc(sizeof **cands * nl * k) : NULL;
            lp_view(r, s, 0, nl, lps[i], cands[i]);
        }
        ch[i] = (oa_choice){.index = s->index,
                            .text = s->text.s ? s->text.s : "",
                            .text_len = s->text.len,
                            .finish = s->finish,
                            .logprobs = q->o.logprobs,
                            .lp = lps[i],
                            .n_lp = nl};
        u.completion_tokens += s->completion_tokens;
    }
    for (uint32_t p = 0; p < q->n_prompts; p++)
        u.prompt_tokens += (int64_t)q->prompts[p].n;
    oa_meta m = meta_of(q);
    size_t len;
    char *json = oa_response_json(&m, ch, n, &u, &len);
    if (json)
        rh_reply_json(q->h, 200, json, len);
    else
        rh_reply_error(q->h, 500, NULL, NULL, NULL, "out of memory");
    free(json);
    for (uint32_t i = 0; i < n; i++)
        free(lps[i]), free(cands[i]);
    free(lps), free(cands), free(ch);
}

static void req_maybe_done(router *r, rreq *q) {
    if (q->finished || q->n_done < q->n_seqs) return;
    q->finished = true;
    afd_log_set_req(q->req_id);
    if (q->h && !q->gone) {
        if (q->streaming) {
            if (try_start(q, true) == 0 && q->h) {
                if (q->o.include_usage) {
                    oa_usage u = {0};
                    for (uint32_t i = 0; i < q->n_seqs; i++)
                        u.completion_tokens += q->seqs[i].completion_tokens;
                    for (uint32_t p = 0; p < q->n_prompts; p++)
                        u.prompt_tokens += (int64_t)q->prompts[p].n;
                    oa_meta m = meta_of(q);
                    size_t len;
                    {
                        char *js_ = oa_chunk_usage_json(&m, &u, &len);
                        send_chunk(q, js_, len);
                    }
                }
                if (q->h) {
                    rh_sse_send(q->h, "[DONE]", 6);
                    rh_sse_end(q->h);
                }
            }
        } else {
            reply_full(r, q);
        }
        afd_metric_inc(r->m_req[0]);
    }
    q->h = NULL;
    afd_log_set_req(q->req_id); /* a reply clears it */
    log_info("request %s done: %u choice(s), %.1f ms", q->id, q->n_seqs,
             (double)(now_ns() - q->t0_ns) / 1e6);
    afd_log_set_req(NULL);
    req_free(r, q);
}

/* The whole request fails: every other sequence is cancelled; the client gets an error status
 * (nothing sent yet) or an error event ending the stream. */
static void req_fail(router *r, rreq *q, int status, const char *code, const char *msg,
                     uint32_t retry_after) {
    if (q->finished) return;
    q->finished = true;
    afd_log_set_req(q->req_id);
    log_warn("request %s failed (%d): %s", q->id, status, msg);
    for (uint32_t i = 0; i < q->n_seqs; i++) {
        rseq *s = &q->seqs[i];
        if (s->state != SQ_DONE) {
            cancel_remote(r, s);
            seq_close(r, s, SLA_END_CANCELLED);
        }
    }
    if (q->h && !q->gone) {
        oa_error e = {0};
        const char *type = status >= 500 ? "server_error" : "invalid_request_error";
        if (status == 429) type = "requests"; /* OpenAI's, as oa_error_rate_limited */
        oa_errorf(&e, status, type, code, NULL, "%s", msg);
        if (q->streaming && q->started) {
            size_t len;
            char *json = oa_error_json(&e, &len);
            if (json) rh_sse_send(q->h, json, len);
            free(json);
            rh_sse_end(q->h);
        } else {
            reply_oa_error(q->h, &e, retry_after);
        }
        afd_metric_inc(r->m_req[status == 429 ? 2 : status >= 500 ? 3 : 1]);
    }
    q->h = NULL;
    afd_log_set_req(NULL);
    req_free(r, q);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void dispatch(router *r, rseq *s, rinst *d) {
    rreq *q = s->q;
    s->d = d;
    d->n_seqs++;
    ctrl_msg m;
    memset(&m, 0, sizeof m);
    const tok_ids *pr = &q->prompts[s->prompt];
    if (d->reg.role == CTRL_ROLE_BOTH) {
        m.type = WIRE_T_CTRL_SUBMIT;
        m.u.submit = (ctrl_submit){.seq_id = s->seq_id,
                                   .n_prompt = (uint32_t)pr->n,
                                   .prompt = (const uint32_t *)pr->v,
                                   .s = sampling_of(q, s)};
        snprintf(m.u.submit.req_id, sizeof m.u.submit.req_id, "%s", q->req_id);
        s->state = SQ_RUN;
    } else {
        m.type = WIRE_T_CTRL_RESERVE;
        m.u.reserve = (ctrl_reserve){
            .seq_id = s->seq_id, .prompt_len = (uint32_t)pr->n, .s = sampling_of(q, s)};
        snprintf(m.u.reserve.req_id, sizeof m.u.reserve.req_id, "%s", q->req_id);
        s->state = SQ_RESERVE;
    }
    if (pool_send(r, d, &m, s->seq_id))
        seq_fail(r, s, 503, NULL, "decode instance %s unreachable", d->addr);
}

void serve_admit_events(router *r, const sla_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        rseq *s = ev[i].req->ud;
        if (s->q->finished || s->state == SQ_DONE)
            continue; /* its request ended earlier in this batch of events */
        if (ev[i].kind == SLA_EV_ADMIT) {
            rinst *d = pool_by_sla(r, ev[i].inst);
            if (!d) {
                seq_fail(r, s, 503, NULL, "the instance chosen went away");
                continue;
            }
            dispatch(r, s, d);
            if (!s->q->finished) try_start(s->q, false);
        } else if (ev[i].kind == SLA_EV_REJECT) {
            s->state = SQ_DONE; /* the SLA has released it */
            s->q->n_done++;
            char msg[160];
            if (ev[i].reason == SLA_REJ_TOO_LARGE)
                snprintf(msg, sizeof msg, "the request needs more KV cache than any instance has");
            else if (ev[i].http_status == 503)
                snprintf(msg, sizeof msg, "no instance is ready to serve this model");
            else
                snprintf(msg, sizeof msg,
                         "the cluster is at its SLA capacity (TPOT target %lld "
                         "ms); retry later",
                         (long long)r->cfg.sla.target_ms);
            req_fail(r, s->q, ev[i].http_status,
                     ev[i].http_status == 429 ? "rate_limit_exceeded" : NULL, msg,
                     ev[i].retry_after_s);
        }
    }
}

/* The instance refused: try once more through the SLA (another instance or the queue). */
static void refused(router *r, rseq *s, uint32_t reason, const char *msg) {
    if (reason == CTRL_R_TOO_LONG || reason == CTRL_R_BAD_PARAMS || reason == CTRL_R_DUPLICATE) {
        seq_fail(r, s, 400, reason == CTRL_R_TOO_LONG ? "context_length_exceeded" : NULL,
                 "the instance refused the sequence: %s", msg);
        return;
    }
    if (++s->refusals > 4) {
        seq_fail(r, s, 503, NULL, "refused by the instances %u times, last: %s", s->refusals - 1,
                 msg);
        return;
    }
    /* the instance said no (FFN group down, KV full, busy, draining): it gets no new work for
     * a moment, so the resubmission goes elsewhere or waits in the queue instead of bouncing */
    if (s->d) {
        pool_pause(r, s->d, reason == CTRL_R_PEER || reason == CTRL_R_DRAINING ? 1000 : 200);
        s->d->n_seqs--;
    }
    s->d = NULL;
    sla_req_finish(r->sla, &s->sr, now_ns(), SLA_END_REFUSED);
    s->state = SQ_WAIT;
    sla_event ev;
    if (sla_submit(r->sla, &s->sr, now_ns(), &ev) == 0 && ev.kind != SLA_EV_QUEUED)
        serve_admit_events(r, &ev, 1);
    log_debug("seq %llu refused (%s: %s): resubmitted", (unsigned long long)s->seq_id,
              ctrl_reason_name((int)reason), msg);
}

static void on_reserve_ok(router *r, rseq *s, const ctrl_reserve_ok *m) {
    if (s->state != SQ_RESERVE) return;
    s->epoch = m->r.epoch;
    rinst *p = pool_pick_prefill(r);
    if (!p) {
        seq_fail(r, s, 503, NULL, "no prefill instance is ready");
        return;
    }
    rreq *q = s->q;
    const tok_ids *pr = &q->prompts[s->prompt];
    ctrl_msg pm;
    memset(&pm, 0, sizeof pm);
    pm.type = WIRE_T_CTRL_PREFILL;
    pm.u.prefill.sub = (ctrl_submit){.seq_id = s->seq_id,
                                     .n_prompt = (uint32_t)pr->n,
                                     .prompt = (const uint32_t *)pr->v,
                                     .s = sampling_of(q, s)};
    snprintf(pm.u.prefill.sub.req_id, sizeof pm.u.prefill.sub.req_id, "%s", q->req_id);
    pm.u.prefill.r = m->r;
    snprintf(pm.u.prefill.host, sizeof pm.u.prefill.host, "%s", s->d->reg.host);
    pm.u.prefill.port = s->d->reg.port;
    s->p = p;
    p->n_seqs++;
    s->state = SQ_PREFILL;
    if (pool_send(r, p, &pm, s->seq_id))
        seq_fail(r, s, 503, NULL, "prefill instance %s unreachable", p->addr);
}

static void deliver_tokens(router *r, rseq *s, const ctrl_tokens *t) {
    uint32_t k = t->n_top;
    for (uint32_t i = 0; i < t->n_tok && s->state != SQ_DONE; i++)
        on_token(r, s, (int32_t)t->ids[i], t->logprobs ? t->logprobs[i] : 0,
                 k ? t->top + (size_t)i * k : NULL, k);
    if (t->n_tok && s->state != SQ_DONE) sla_req_tokens(r->sla, &s->sr, t->n_tok, now_ns());
    if (!t->finish || s->state == SQ_DONE) return;
    s->completion_tokens = t->completion_tokens;
    switch (t->finish) {
    case CTRL_FINISH_STOP:
        seq_finish(r, s, OA_FINISH_STOP);
        break;
    case CTRL_FINISH_LENGTH:
        seq_finish(r, s, OA_FINISH_LENGTH);
        break;
    case CTRL_FINISH_CANCELLED:
        seq_fail(r, s, 503, NULL, "the sequence was cancelled by the instance (draining)");
        break;
    default:
        seq_fail(r, s, 503, NULL, "the sequence failed on the instance: %s",
                 t->msg[0] ? t->msg : "error");
    }
}

/* D's tokens may overtake P's PREFILL_DONE: hold them (a copy) until the first token is in. */
static void hold_early(rseq *s, const ctrl_tokens *t) {
    size_t k = t->n_top, need = sizeof(ctrl_tokens) + t->n_tok * (4 + 4 + k * sizeof(ctrl_cand));
    ctrl_tokens *prev = s->early;
    uint32_t pn = prev ? prev->n_tok : 0;
    size_t total = sizeof(ctrl_tokens) + (pn + t->n_tok) * (4 + 4 + k * sizeof(ctrl_cand));
    (void)need;
    ctrl_tokens *e = xmalloc(total);
    *e = *t;
    e->n_tok = pn + t->n_tok;
    uint32_t *ids = (uint32_t *)(e + 1);
    float *lps = (float *)(ids + e->n_tok);
    ctrl_cand *top = (ctrl_cand *)(lps + e->n_tok);
    for (uint32_t i = 0; i < pn; i++) {
        ids[i] = prev->ids[i];
        lps[i] = prev->logprobs ? prev->logprobs[i] : 0;
        for (size_t j = 0; j < k; j++)
            top[i * k + j] = prev->top[i * k + j];
    }
    for (uint32_t i = 0; i < t->n_tok; i++) {
        ids[pn + i] = t->ids[i];
        lps[pn + i] = t->logprobs ? t->logprobs[i] : 0;
        for (size_t j = 0; j < k; j++)
            top[(pn + i) * k + j] = t->top[i * k + j];
    }
    e->ids = ids;
    e->logprobs = lps;
    e->top = k ? top : NULL;
    if (prev && !t->finish) {
        e->finish = prev->finish, e->code = prev->code;
        memcpy(e->msg, prev->msg, sizeof e->msg);
    }
    free(prev);
    s->early = e;
}

void serve_on_msg(router *r, rinst *in, const ctrl_msg *m) {
    uint64_t id;
    switch (m->type) {
    case WIRE_T_CTRL_SUBMIT_ACK:
        id = m->u.submit_ack.seq_id;
        break;
    case WIRE_T_CTRL_TOKENS:
        id = m->u.tokens.seq_id;
        break;
    case WIRE_T_CTRL_RESERVE_OK:
        id = m->u.reserve_ok.seq_id;
        break;
    case WIRE_T_CTRL_RESERVE_FAIL:
        id = m->u.reserve_fail.seq_id;
        break;
    case WIRE_T_CTRL_PREFILL_DONE:
        id = m->u.prefill_done.seq_id;
        break;
    default:
        return;
    }
    rseq *s = h_get(id);
    if (!s || s->state == SQ_DONE) {
        /* a reservation made for a sequence that is gone: give it back at once */
        if (m->type == WIRE_T_CTRL_RESERVE_OK) {
            ctrl_msg rel = {.type = WIRE_T_CTRL_RELEASE};
            rel.u.release = (ctrl_release){
                .seq_id = id, .epoch = m->u.reserve_ok.r.epoch, .reason = CTRL_R_CANCELLED};
            pool_send(r, in, &rel, 0);
        }
        return;
    }
    afd_log_set_req(s->q->req_id);
    switch (m->type) {
    case WIRE_T_CTRL_SUBMIT_ACK:
        if (m->u.submit_ack.reason == CTRL_OK)
            sla_req_ack(r->sla, &s->sr, now_ns());
        else
            refused(r, s, m->u.submit_ack.reason, m->u.submit_ack.msg);
        break;
    case WIRE_T_CTRL_RESERVE_OK:
        sla_req_ack(r->sla, &s->sr, now_ns());
        on_reserve_ok(r, s, &m->u.reserve_ok);
        break;
    case WIRE_T_CTRL_RESERVE_FAIL:
        refused(r, s, m->u.reserve_fail.reason, m->u.reserve_fail.msg);
        break;
    case WIRE_T_CTRL_PREFILL_DONE: {
        const ctrl_prefill_done *p = &m->u.prefill_done;
        if (p->reason != CTRL_OK) {
            afd_metric_inc(r->m_handoff_fail);
            seq_fail(r, s, 503, NULL, "prefill failed: %s (%s)", p->msg,
                     ctrl_reason_name((int)p->reason));
            break;
        }
        afd_metric_inc(r->m_handoffs);
        s->first_in = true;
        s->state = SQ_RUN;
        if (s->p) s->p->n_seqs--;
        s->p = NULL;
        on_token(r, s, (int32_t)p->token, p->logprob, p->top, p->n_top);
        if (s->state != SQ_DONE) sla_req_tokens(r->sla, &s->sr, 1, now_ns());
        if (s->early && s->state != SQ_DONE) {
            ctrl_tokens *e = s->early;
            s->early = NULL;
            deliver_tokens(r, s, e);
            free(e);
        }
        break;
    }
    case WIRE_T_CTRL_TOKENS:
        if (seq_handoff(s) && !s->first_in && in == s->d)
            hold_early(s, &m->u.tokens);
        else
            deliver_tokens(r, s, &m->u.tokens);
        break;
    }
    afd_log_set_req(NULL);
    serve_reap(r);
}

void serve_on_inst_down(router *r, rinst *in) {
    for (rreq *q = r->reqs, *nq; q; q = nq) {
        nq = q->next;
        for (uint32_t i = 0; i < q->n_seqs; i++) {
            rseq *s = &q->seqs[i];
            if (s->state == SQ_DONE || (s->d != in && s->p != in)) continue;
            if (s->p == in && s->state == SQ_PREFILL) {
                s->p->n_seqs--;
                s->p = NULL;
            }
            if (s->d == in) {
                s->d->n_seqs--;
                s->d = NULL;
            }
            s->cancel_sent = s->d == NULL; /* nothing to cancel on a dead instance */
            seq_fail(r, s, 503, NULL, "instance %s went down", in->addr);
            break; /* the request is gone */
        }
    }
    serve_reap(r);
}

void serve_tick(router *r) {
    uint64_t now = now_ns();
    for (rreq *q = r->reqs, *nq; q; q = nq) {
        nq = q->next;
        if (q->dead) continue;
        if (q->gone) {
            req_free(r, q);
            continue;
        }
        if (now - q->last_progress_ns > (uint64_t)r->cfg.request_timeout_ms * 1000000u)
            req_fail(r, q, 504, NULL, "no progress within request_timeout_ms", 0);
    }
    serve_reap(r);
}

/* ---- HTTP handlers ------------------------------------------------------------------------- */

static void on_client_gone(rh_req *h, void *arg) {
    rreq *q = arg;
    (void)h;
    router *r = q->r;
    afd_log_set_req(q->req_id);
    log_info("request %s: the client went away; cancelling %u sequence(s)", q->id,
             q->n_seqs - q->n_done);
    q->h = NULL;
    q->gone = true;
    afd_metric_inc(r->m_req[4]);
    req_free(r, q); /* cancels on every instance */
    afd_log_set_req(NULL);
    serve_reap(r);
}

static int64_t max_context(router *r) {
    int64_t m = r->mcfg.max_pos;
    for (rinst *in = r->insts; in; in = in->next)
        if (in->registered && !in->down && in->reg.max_context && in->reg.max_context < m)
            m = in->reg.max_context;
    return m;
}

/* Prompt ids of chat messages through the Step-3 template (appended to ids). */
static int messages_ids(router *r, const oa_message *m, uint32_t n, bool add_generation_prompt,
                        tok_ids *ids, afd_err *err) {
    tok_chat_msg *msgs = xcalloc(n ? n : 1, sizeof *msgs);
    for (uint32_t i = 0; i < n; i++)
        msgs[i] = (tok_chat_msg){oa_role_name(m[i].role), m[i].content, m[i].content_len};
    tok_chat_opts co = {.add_generation_prompt = add_generation_prompt,
                        .escape_content = r->cfg.escape_special};
    int rc = tok_chat_render(&r->chat, r->tst, msgs, n, &co, NULL, ids, err);
    free(msgs);
    return rc;
}

/* Prompt ids of text (special tokens parsed), after BOS when bos is set (appended to ids). */
static int text_ids(router *r, const char *text, size_t len, bool bos, tok_ids *ids,
                    afd_err *err) {
    int32_t b = tok_bos_id(r->tok);
    int rc = bos && b >= 0 ? tok_ids_push(ids, b) : 0;
    return rc ? rc : tok_encode(r->tok, r->tst, text, len, TOK_ENC_SPECIAL, ids, err);
}

/* Prompt ids of every prompt of the request. 0, or an error filled in. */
static int tokenize_prompts(router *r, rreq *q, oa_error *e) {
    const oa_request *o = &q->o;
    uint32_t np = o->endpoint == OA_CHAT ? 1 : o->n_prompts;
    q->prompts = xcalloc(np, sizeof *q->prompts);
    q->n_prompts = np;
    int64_t maxc = max_context(r);
    afd_err err = {0};
    for (uint32_t p = 0; p < np; p++) {
        tok_ids *ids = &q->prompts[p];
        ids->limit = (size_t)maxc;
        int rc = 0;
        if (o->endpoint == OA_CHAT) {
            rc = messages_ids(r, o->messages, o->n_messages, true, ids, &err);
        } else if (o->prompts[p].text) {
            rc = text_ids(r, o->prompts[p].text, o->prompts[p].text_len, true, ids, &err);
        } else {
            for (uint32_t i = 0; !rc && i < o->prompts[p].n_ids; i++)
                rc = tok_ids_push(ids, o->prompts[p].ids[i]);
        }
        if (rc == AFD_E_LIMIT || (int64_t)ids->n >= maxc)
            return oa_error_context_length(e, o->endpoint == OA_CHAT ? "messages" : "prompt", maxc,
                                           (int64_t)ids->n + (rc == AFD_E_LIMIT), 0);
        if (rc)
            return oa_errorf(e, 400, "invalid_request_error", NULL, NULL, "cannot tokenize: %s",
                             err.msg[0] ? err.msg : afd_strerror(rc));
        if (ids->n == 0)
            return oa_errorf(e, 400, "invalid_request_error", NULL, "prompt",
                             "the prompt is empty");
    }
    return 0;
}

static void h_generate(rh_req *h, void *ud) {
    router *r = ud;
    oa_endpoint ep = strcmp(rh_req_path(h), "/v1/chat/completions") == 0 ? OA_CHAT : OA_COMPLETIONS;
    oa_error e = {0};
    if (r->draining) {
        oa_error_overloaded(&e, "the router is draining");
        reply_oa_error(h, &e, 5);
        return;
    }
    size_t blen;
    const char *body = rh_req_body(h, &blen);
    rreq *q = xcalloc(1, sizeof *q);
    q->r = r;
    if (oa_parse_request(ep, body, blen, &r->olim, &q->o, &e)) {
        reply_oa_error(h, &e, 0);
        free(q);
        afd_metric_inc(r->m_req[1]);
        return;
    }
    if (strcmp(q->o.model, r->cfg.model_name) != 0) {
        oa_error_model_not_found(&e, q->o.model);
        reply_oa_error(h, &e, 0);
        oa_request_free(&q->o);
        free(q);
        afd_metric_inc(r->m_req[1]);
        return;
    }
    q->h = h;
    q->t0_ns = q->last_progress_ns = now_ns();
    q->created = (int64_t)time(NULL);
    q->streaming = q->o.stream;
    snprintf(q->req_id, sizeof q->req_id, "%s", rh_req_id(h));
    uint64_t rnd[3];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd[0] = now_ns(), rnd[1] = (uint64_t)q, rnd[2] = r->next_seq;
    oa_make_id(ep, rnd, q->id);
    q->next = r->reqs;
    if (r->reqs) r->reqs->prev = q;
    r->reqs = q;
    if (tokenize_prompts(r, q, &e)) {
        q->h = NULL;
        reply_oa_error(h, &e, 0);
        afd_metric_inc(r->m_req[1]);
        req_free(r, q);
        serve_reap(r);
        return;
    }
    int64_t maxc = max_context(r);
    q->n_seqs = oa_n_choices(&q->o);
    q->seqs = xcalloc(q->n_seqs, sizeof *q->seqs);
    for (uint32_t i = 0; i < q->n_seqs; i++) {
        rseq *s = &q->seqs[i];
        s->q = q;
        s->index = i;
        s->prompt = ep == OA_CHAT ? 0 : oa_choice_prompt(&q->o, i);
        s->seq_id = ++r->next_seq;
        int64_t plen = (int64_t)q->prompts[s->prompt].n;
        int64_t mt = q->o.max_tokens < 0 ? maxc - plen : q->o.max_tokens;
        if (plen + mt > maxc) {
            oa_error_context_length(&e, "max_tokens", maxc, plen, mt);
            q->h = NULL;
            reply_oa_error(h, &e, 0);
            afd_metric_inc(r->m_req[1]);
            q->n_seqs = i; /* only these are initialized */
            req_free(r, q);
            serve_reap(r);
            return;
        }
        s->sr = (sla_req){
            .prompt_len = (uint32_t)plen, .max_tokens = (uint32_t)(mt > 0 ? mt : 1), .ud = s};
        tok_stream_init(&s->ts, r->tok, TOK_DEC_SKIP_SPECIAL);
        if (oa_stop_new((const char *const *)q->o.stop, q->o.stop_len, q->o.n_stop, &s->stop)) {
            q->n_seqs = i + 1;
            q->h = NULL;
            rh_reply_error(h, 400, NULL, NULL, "stop", "bad stop strings");
            req_free(r, q);
            serve_reap(r);
            return;
        }
        h_put(s);
    }
    rh_on_close(h, on_client_gone, q);
    afd_log_set_req(q->req_id);
    log_info("request %s: %s, %u choice(s), prompt %zu tokens, %s", q->id,
             ep == OA_CHAT ? "chat" : "completions", q->n_seqs, q->prompts[0].n,
             q->streaming ? "streaming" : "json");
    /* echo (completions): the prompt's text comes first */
    if (q->o.echo) {
        for (uint32_t i = 0; i < q->n_seqs; i++) {
            rseq *s = &q->seqs[i];
            const oa_prompt *op = &q->o.prompts[s->prompt];
            tok_str t = {0};
            if (op->text)
                tok_str_append(&t, op->text, op->text_len);
            else
                tok_decode(r->tok, op->ids, op->n_ids, 0, &t, NULL);
            if (t.len) {
                if (q->streaming) { /* held until the stream can start */
                    oa_meta m = meta_of(q);
                    oa_delta d = {.index = s->index, .text = t.s, .text_len = t.len};
                    size_t len;
                    char *js = oa_chunk_json(&m, &d, &len);
                    send_chunk(q, js, len);
                } else {
                    tok_str_append(&s->text, t.s, t.len);
                }
                s->text_offset = oa_text_chars(t.s, t.len);
            }
            tok_str_release(&t);
        }
    }
    for (uint32_t i = 0; i < q->n_seqs && !q->finished; i++) {
        rseq *s = &q->seqs[i];
        if (q->o.max_tokens == 0) { /* echo only */
            s->finish = OA_FINISH_LENGTH;
            s->state = SQ_DONE;
            q->n_done++;
            emit(r, s, "", 0, OA_FINISH_LENGTH);
            continue;
        }
        s->state = SQ_WAIT;
        sla_event ev;
        int rc = sla_submit(r->sla, &s->sr, now_ns(), &ev);
        if (rc) {
            s->state = SQ_NEW;
            req_fail(r, q, 500, NULL, "admission failed", 0);
            break;
        }
        if (ev.kind != SLA_EV_QUEUED)
            serve_admit_events(r, &ev, 1); /* may fail and free q: stop looking at it */
        if (ev.kind == SLA_EV_REJECT) break;
    }
    req_maybe_done(r, q);
    afd_log_set_req(NULL);
    serve_reap(r);
}

static void h_models(rh_req *h, void *ud) {
    router *r = ud;
    oa_model_info m = {.id = r->cfg.model_name, .created = r->started, .owned_by = "afd"};
    size_t len;
    const char *path = rh_req_path(h);
    char *json;
    if (strcmp(path, "/v1/models") == 0) {
        json = oa_models_json(&m, 1, &len);
    } else {
        const char *name = path + strlen("/v1/models/");
        if (strcmp(name, r->cfg.model_name) != 0) {
            oa_error e;
            oa_error_model_not_found(&e, name);
            reply_oa_error(h, &e, 0);
            return;
        }
        json = oa_model_json(&m, &len);
    }
    rh_reply_json(h, 200, json, len);
    free(json);
}

static void h_health(rh_req *h, void *ud) {
    (void)ud;
    rh_reply(h, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void h_ready(rh_req *h, void *ud) {
    router *r = ud;
    char why[160], body[256];
    if (pool_ready(r, why, sizeof why)) {
        int n = snprintf(body, sizeof body, "{\"ready\":true}");
        rh_reply_json(h, 200, body, (size_t)n);
    } else {
        int n = snprintf(body, sizeof body, "{\"ready\":false,\"reason\":\"%s\"}", why);
        rh_reply_json(h, 503, body, (size_t)n);
    }
}

static void h_metrics(rh_req *h, void *ud) {
    router *r = ud;
    char *text;
    size_t len;
    if (afd_metrics_render(r->reg, &text, &len)) {
        rh_reply_error(h, 500, NULL, NULL, NULL, "metrics unavailable");
        return;
    }
    rh_reply(h, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

static void h_tokenize(rh_req *h, void *ud) {
    router *r = ud;
    size_t blen;
    const char *body = rh_req_body(h, &blen);
    oa_tokenize_req t;
    oa_error e = {0};
    if (oa_parse_tokenize(body, blen, &r->olim, &t, &e)) {
        reply_oa_error(h, &e, 0);
        return;
    }
    tok_ids ids = {0};
    afd_err err = {0};
    int rc = 0;
    if (t.prompt)
        rc = text_ids(r, t.prompt, t.prompt_len, t.add_special_tokens, &ids, &err);
    else
        rc = messages_ids(r, t.messages, t.n_messages, t.add_generation_prompt, &ids, &err);
    if (rc) {
        rh_reply_error(h, 400, NULL, NULL, NULL, "cannot tokenize: %s",
                       err.msg[0] ? err.msg : afd_strerror(rc));
    } else {
        size_t len;
        char *json = oa_tokenize_json(ids.v, ids.n, max_context(r), &len);
        rh_reply_json(h, 200, json, len);
        free(json);
    }
    tok_ids_release(&ids);
    oa_tokenize_req_free(&t);
}

static void h_detokenize(rh_req *h, void *ud) {
    router *r = ud;
    size_t blen;
    const char *body = rh_req_body(h, &blen);
    oa_detokenize_req t;
    oa_error e = {0};
    if (oa_parse_detokenize(body, blen, &r->olim, &t, &e)) {
        reply_oa_error(h, &e, 0);
        return;
    }
    tok_str s = {0};
    afd_err err = {0};
    if (tok_decode(r->tok, t.tokens, t.n_tokens, 0, &s, &err)) {
        rh_reply_error(h, 400, NULL, NULL, "tokens", "%s", err.msg);
    } else {
        size_t len;
        char *json = oa_detokenize_json(s.s ? s.s : "", s.len, &len);
        rh_reply_json(h, 200, json, len);
        free(json);
    }
    tok_str_release(&s);
    oa_detokenize_req_free(&t);
}

/* ---- pool administration (afdctl) ---------------------------------------------------- */

static const char *role_name(int role) {
    return role == CTRL_ROLE_BOTH ? "both" : role == CTRL_ROLE_DECODE ? "decode"
                                 : role == CTRL_ROLE_PREFILL ? "prefill" : "unknown";
}

static void h_admin_list(rh_req *h, void *ud) {
    router *r = ud;
    json_t *arr = json_array();
    for (rinst *in = r->insts; in; in = in->next) {
        const char *state = in->down ? "down" : !in->registered ? "connecting"
                            : (in->draining || in->load.draining) ? "draining"
                            : in->n_load ? "ready" : "registered";
        json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "addr", in->addr, "state", state,
                              "configured", in->configured, "inbound", in->inbound);
        if (in->registered) {
            json_object_set_new(o, "instance_id", json_integer(in->reg.instance_id));
            json_object_set_new(o, "role", json_string(role_name(in->reg.role)));
            json_object_set_new(o, "kv_blocks", json_integer(in->reg.kv_blocks));
            json_object_set_new(o, "block_size", json_integer(in->reg.block_size));
            json_object_set_new(o, "max_batch", json_integer(in->reg.max_batch));
        }
        if (in->n_load) {
            const ctrl_load *l = &in->load;
            json_object_set_new(o, "load", json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:I}",
                "running", l->running, "waiting", l->waiting, "kv_blocks_free", l->kv_blocks_free,
                "kv_blocks_reserved", l->kv_blocks_reserved, "p50_step_us", l->p50_step_us,
                "p99_step_us", l->p99_step_us, "reservations", l->reservations,
                "tokens_per_s", (double)l->tokens_per_s, "ctx_tokens", (json_int_t)l->ctx_tokens));
            json_object_set_new(o, "router_sequences", json_integer(in->n_seqs));
        }
        json_array_append_new(arr, o);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    rh_reply_json(h, 200, text, strlen(text));
    free(text);
}

static json_t *admin_body(rh_req *h) {
    size_t len;
    const char *body = rh_req_body(h, &len);
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        rh_reply_error(h, 400, NULL, NULL, NULL, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

static rinst *admin_find(router *r, json_t *j) {
    json_t *id = json_object_get(j, "instance_id");
    const char *addr = json_string_value(json_object_get(j, "addr"));
    for (rinst *in = r->insts; in; in = in->next)
        if ((addr && !strcmp(in->addr, addr)) ||
            (json_is_integer(id) && in->registered &&
             in->reg.instance_id == (uint32_t)json_integer_value(id)))
            return in;
    return NULL;
}

/* POST /admin/instances {"addr": "host:port"}: dial an attnd and keep it in the pool. */
static void h_admin_add(rh_req *h, void *ud) {
    router *r = ud;
    json_t *j = admin_body(h);
    if (!j)
        return;
    const char *addr = json_string_value(json_object_get(j, "addr"));
    afd_err err = {0};
    if (!addr) {
        rh_reply_error(h, 400, NULL, NULL, "addr", "addr: \"host:port\" of the attnd's control port");
    } else if (admin_find(r, j)) {
        rh_reply_error(h, 409, NULL, NULL, "addr", "%s is already in the pool", addr);
    } else if (pool_add(r, addr, true, &err)) {
        rh_reply_error(h, 400, NULL, NULL, "addr", "%s", err.msg);
    } else {
        log_info("pool: %s added by %s", addr, rh_req_peer(h));
        char body[320];
        int n = snprintf(body, sizeof body, "{\"ok\":true,\"addr\":\"%s\"}", addr);
        rh_reply_json(h, 202, body, (size_t)n);
    }
    json_decref(j);
}

/* POST /admin/drain {"instance_id": N | "addr": "...", "deadline_ms": D}: no new sequences
 * for it; it finishes what runs and exits. */
static void h_admin_drain(rh_req *h, void *ud) {
    router *r = ud;
    json_t *j = admin_body(h);
    if (!j)
        return;
    rinst *in = admin_find(r, j);
    json_t *dl = json_object_get(j, "deadline_ms");
    if (!in || in->down) {
        rh_reply_error(h, 404, NULL, NULL, "instance_id", "no such instance in the pool");
    } else {
        in->draining = true;
        in->configured = false; /* it will exit: do not redial */
        if (in->si)
            sla_inst_set_draining(in->si, true);
        ctrl_msg m = {.type = WIRE_T_CTRL_DRAIN};
        m.u.drain.deadline_ms = json_is_integer(dl) ? (uint64_t)json_integer_value(dl) : 0;
        int rc = pool_send(r, in, &m, 0);
        log_info("pool: %s (instance %u) drained by %s", in->addr, in->reg.instance_id,
                 rh_req_peer(h));
        if (rc)
            rh_reply_error(h, 503, NULL, NULL, NULL, "DRAIN not sent: %s", afd_strerror(rc));
        else
            rh_reply_json(h, 202, "{\"ok\":true}", 11);
    }
    json_decref(j);
}

/* POST /admin/remove {"instance_id": N | "addr": "..."}: forget a configured instance (no
 * redial) and close its session; its running sequences fail. */
static void h_admin_remove(rh_req *h, void *ud) {
    router *r = ud;
    json_t *j = admin_body(h);
    if (!j)
        return;
    rinst *in = admin_find(r, j);
    if (!in) {
        rh_reply_error(h, 404, NULL, NULL, "instance_id", "no such instance in the pool");
    } else {
        log_info("pool: %s removed by %s", in->addr, rh_req_peer(h));
        pool_forget(r, in);
        rh_reply_json(h, 202, "{\"ok\":true}", 11);
    }
    json_decref(j);
}

int serve_init(router *r, afd_err *err) {
    snprintf(sys_fp, sizeof sys_fp, "fp_%010llx", (unsigned long long)(r->fingerprint >> 24));
    struct {
        unsigned m;
        const char *path;
        unsigned flags;
        rh_handler cb;
    } routes[] = {
        {RH_POST, "/v1/chat/completions", 0, h_generate},
        {RH_POST, "/v1/completions", 0, h_generate},
        {RH_GET, "/v1/models", 0, h_models},
        {RH_GET, "/v1/models/*", 0, h_models},
        {RH_POST, "/tokenize", 0, h_tokenize},
        {RH_POST, "/detokenize", 0, h_detokenize},
        {RH_GET, "/health", RH_PUBLIC, h_health},
        {RH_GET, "/ready", RH_PUBLIC, h_ready},
        {RH_GET, "/metrics", RH_PUBLIC, h_metrics},
        {RH_GET, "/admin/instances", 0, h_admin_list},
        {RH_POST, "/admin/instances", 0, h_admin_add},
        {RH_POST, "/admin/drain", 0, h_admin_drain},
        {RH_POST, "/admin/remove", 0, h_admin_remove},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = rh_route(r->http, routes[i].m, routes[i].path, routes[i].flags, routes[i].cb, r);
        if (rc) return afd_errf(err, rc, "route %s: %s", routes[i].path, afd_strerror(rc));
    }
    const char *h = "HTTP requests answered, by outcome";
    static const char *const outcome[] = {"ok",           "client_error", "rejected",
                                          "server_error", "client_gone",  "draining"};
    for (int i = 0; i < 6; i++)
        r->m_req[i] = afd_metrics_counter(r->reg, "afd:router_requests_total", h, "outcome",
                                          outcome[i], NULL);
    r->m_handoffs = afd_metrics_counter(r->reg, "afd:router_handoffs_total",
                                        "prefill -> decode handoffs completed", NULL);
    r->m_handoff_fail =
        afd_metrics_counter(r->reg, "afd:router_handoff_failures_total",
                            "handoffs that failed (PREFILL_DONE with a reason)", NULL);
    r->m_cancels = afd_metrics_counter(r->reg, "afd:router_cancels_total",
                                       "sequences cancelled on the instances (stop string, "
                                       "client gone, failure)",
                                       NULL);
    return 0;
}

void serve_free(router *r) {
    for (rreq *q = r->reqs; q; q = q->next) {
        if (q->dead) continue;
        if (q->h && !q->gone) {
            if (q->streaming && q->started)
                rh_abort(q->h);
            else
                rh_reply_error(q->h, 503, NULL, NULL, NULL, "the router is shutting down");
        }
        q->h = NULL;
        req_free(r, q);
    }
    serve_reap(r);
}
