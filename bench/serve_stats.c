/* afd-bench serve: per-request records -> percentiles, the table and the JSON summary.
 *
 * Definitions (docs/benchmarks.md, Serve):
 *   TTFT      first content chunk - send.
 *   TPOT      token-weighted inter-token latency: every output token after the first
 *             contributes its gap. Token times are chunk times (a chunk carrying k tokens gives
 *             its gap to the first of them and 0 to the k - 1 others; k is unknown, but the
 *             zeros only need the count: usage.completion_tokens - content chunks).
 *   req TPOT  per request (last content chunk - first) / (tokens - 1).
 *   ITL       gap between consecutive content chunks, one sample per gap.
 *   goodput   completed requests whose req TPOT <= --sla-ms (and TTFT <= --ttft-sla-ms when
 *             given), over completed (and over sent).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/serve_impl.h"
#include "common/base/alloc.h"

void sv_req_gap(sv_req *q, double ms) {
    if (q->n_chunks - 1 > q->gaps_cap) {
        q->gaps_cap = q->gaps_cap ? q->gaps_cap * 2 : 16;
        q->gaps = xrealloc(q->gaps, (size_t)q->gaps_cap * sizeof *q->gaps);
    }
    q->gaps[q->n_chunks - 2] = (float)ms;
}

const char *sv_outcome_name(sv_outcome o) {
    static const char *const names[SV_N_OUTCOMES] = {
        "not_sent", "in_flight", "ok", "rejected", "http_error",
        "connect", "timeout", "stream", "interrupted"};
    return o < SV_N_OUTCOMES ? names[o] : "?";
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double rank(const float *v, long n, long zeros, double p) {
    long total = n + zeros, k = (long)ceil(p * (double)total);
    if (k < 1)
        k = 1;
    return k <= zeros ? 0.0 : v[k - zeros - 1];
}

void sv_pct_of(float *v, long n, long zeros, sv_pct *p) {
    p->n = n + zeros;
    if (p->n == 0) {
        p->mean = p->p50 = p->p90 = p->p99 = p->max = NAN;
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_f);
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += v[i];
    p->mean = sum / (double)p->n;
    p->p50 = rank(v, n, zeros, 0.50);
    p->p90 = rank(v, n, zeros, 0.90);
    p->p99 = rank(v, n, zeros, 0.99);
    p->max = n ? v[n - 1] : 0.0;
}

/* Sample arrays of the measured requests, filled by one pass. */
typedef struct samples {
    float *ttft, *tpot_req, *e2e, *gaps, *wait;
    long n_ttft, n_tpot_req, n_e2e, n_gaps, n_wait, zeros;
} samples;

static bool meets_sla(const sv_req *q, double tpot_ms, const sv_sla *sla) {
    if (sla->ttft_ms > 0 && (q->n_chunks == 0 || (q->t_first - q->t_send) * 1e3 > sla->ttft_ms))
        return false;
    return isnan(tpot_ms) || tpot_ms <= sla->tpot_ms;
}

static void count_finish(const sv_req *q, sv_summary *s) {
    if (!strcmp(q->finish, "length"))
        s->finish_length++;
    else if (!strcmp(q->finish, "stop"))
        s->finish_stop++;
    else
        s->finish_other++;
}

static void add_completed(const sv_req *q, const sv_sla *sla, samples *a, sv_summary *s) {
    s->completed++;
    s->output_tokens += q->tokens;
    s->prompt_tokens += q->prompt_tokens > 0 ? q->prompt_tokens : 0;
    s->no_usage += !q->usage_seen;
    count_finish(q, s);
    a->e2e[a->n_e2e++] = (float)((q->t_end - q->t_send) * 1e3);
    double tpot = NAN;
    if (q->n_chunks == 0) {
        s->no_content++;
    } else {
        a->ttft[a->n_ttft++] = (float)((q->t_first - q->t_send) * 1e3);
        if (q->tokens >= 2)
            tpot = (q->t_last - q->t_first) * 1e3 / (q->tokens - 1);
        if (q->n_chunks > 1)
            memcpy(a->gaps + a->n_gaps, q->gaps, (size_t)(q->n_chunks - 1) * sizeof *q->gaps);
        a->n_gaps += q->n_chunks - 1;
        a->zeros += q->tokens > q->n_chunks ? q->tokens - q->n_chunks : 0;
    }
    if (!isnan(tpot))
        a->tpot_req[a->n_tpot_req++] = (float)tpot;
    s->sla_met += meets_sla(q, tpot, sla);
}

static void add_one(const sv_req *q, const sv_sla *sla, samples *a, sv_summary *s,
                    double *t0, double *t1) {
    s->measured++;
    s->by_outcome[q->outcome]++;
    if (q->outcome == SV_PENDING)
        return;
    s->sent++;
    s->cap_delayed += q->capped;
    if (q->outcome == SV_REJECTED)
        q->status == 429 ? s->rej_429++ : s->rej_503++;
    a->wait[a->n_wait++] = (float)((q->t_send - q->t_sched) * 1e3);
    if (q->t_send < *t0)
        *t0 = q->t_send;
    if (q->outcome == SV_OK) {
        add_completed(q, sla, a, s);
        if (q->t_end > *t1)
            *t1 = q->t_end;
    }
}

static void counts(sv_summary *s) {
    const long *o = s->by_outcome;
    s->rejected = o[SV_REJECTED];
    s->errors = o[SV_HTTP_ERROR] + o[SV_CONNECT] + o[SV_TIMEOUT] + o[SV_STREAM];
    s->interrupted = o[SV_INTERRUPTED] + o[SV_INFLIGHT];
    s->not_sent = o[SV_PENDING];
}

void sv_summarize(const sv_req *q, int n, const sv_sla *sla, sv_summary *s) {
    memset(s, 0, sizeof *s);
    long n_gaps = 0;
    for (int i = 0; i < n; i++)
        if (!q[i].warmup && q[i].outcome == SV_OK && q[i].n_chunks > 1)
            n_gaps += q[i].n_chunks - 1;
    samples a = {0};
    size_t nn = (size_t)n + 1;
    a.ttft = xmalloc(nn * 4), a.tpot_req = xmalloc(nn * 4), a.e2e = xmalloc(nn * 4);
    a.wait = xmalloc(nn * 4), a.gaps = xmalloc(((size_t)n_gaps + 1) * 4);
    double t0 = INFINITY, t1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (q[i].warmup)
            continue;
        add_one(&q[i], sla, &a, s, &t0, &t1);
    }
    counts(s);
    sv_pct_of(a.ttft, a.n_ttft, 0, &s->ttft);
    sv_pct_of(a.tpot_req, a.n_tpot_req, 0, &s->tpot_req);
    sv_pct_of(a.e2e, a.n_e2e, 0, &s->e2e);
    sv_pct_of(a.wait, a.n_wait, 0, &s->cap_wait);
    sv_pct_of(a.gaps, a.n_gaps, 0, &s->itl_chunk);
    sv_pct_of(a.gaps, a.n_gaps, a.zeros, &s->tpot_tok); /* sorted already: cheap */
    s->span_s = t1 > t0 ? t1 - t0 : NAN;
    s->tokens_per_s = s->completed ? (double)s->output_tokens / s->span_s : 0;
    s->req_per_s = s->completed ? (double)s->completed / s->span_s : 0;
    s->goodput = s->completed ? (double)s->sla_met / (double)s->completed : NAN;
    s->goodput_of_sent = s->sent ? (double)s->sla_met / (double)s->sent : NAN;
    free(a.ttft), free(a.tpot_req), free(a.e2e), free(a.wait), free(a.gaps);
}

/* ---- output --------------------------------------------------------------------------------- */

static void row(FILE *f, const char *name, const sv_pct *p) {
    if (!p->n) {
        fprintf(f, "  %-22s %9s\n", name, "-");
        return;
    }
    fprintf(f, "  %-22s %9.2f %9.2f %9.2f %9.2f %9.2f %9ld\n", name, p->mean, p->p50, p->p90,
            p->p99, p->max, p->n);
}

void sv_report_table(FILE *f, const sv_summary *s, const sv_sla *sla) {
    const long *o = s->by_outcome;
    fprintf(f, "requests: %ld sent, %ld completed, %ld rejected (429: %ld, 503: %ld), %ld errors "
               "(http %ld, connect %ld, timeout %ld, stream %ld)",
            s->sent, s->completed, s->rejected, s->rej_429, s->rej_503, s->errors,
            o[SV_HTTP_ERROR], o[SV_CONNECT], o[SV_TIMEOUT], o[SV_STREAM]);
    if (s->interrupted || s->not_sent)
        fprintf(f, ", %ld interrupted, %ld not sent", s->interrupted, s->not_sent);
    fprintf(f, "\nfinish: length %ld, stop %ld, other %ld; %ld without usage, %ld without "
               "content\n", s->finish_length, s->finish_stop, s->finish_other, s->no_usage,
            s->no_content);
    fprintf(f, "  %-22s %9s %9s %9s %9s %9s %9s\n", "ms", "mean", "p50", "p90", "p99", "max",
            "samples");
    row(f, "TTFT", &s->ttft);
    row(f, "TPOT (per token)", &s->tpot_tok);
    row(f, "TPOT (per request)", &s->tpot_req);
    row(f, "ITL (per chunk)", &s->itl_chunk);
    row(f, "E2E", &s->e2e);
    row(f, "send lag", &s->cap_wait);
    if (s->cap_delayed)
        fprintf(f, "%ld requests waited for a slot under --concurrency-cap\n", s->cap_delayed);
    fprintf(f, "throughput: %.1f output tokens/s, %.2f completed req/s over %.2f s "
               "(%ld output, %ld prompt tokens)\n", s->tokens_per_s, s->req_per_s, s->span_s,
            s->output_tokens, s->prompt_tokens);
    fprintf(f, "goodput: %.3f of completed (%ld/%ld), %.3f of sent, SLA TPOT <= %g ms",
            s->goodput, s->sla_met, s->completed, s->goodput_of_sent, sla->tpot_ms);
    if (sla->ttft_ms > 0)
        fprintf(f, ", TTFT <= %g ms", sla->ttft_ms);
    fprintf(f, "\n");
}

static void jnum(json_t *o, const char *k, double v) {
    json_object_set_new(o, k, isfinite(v) ? json_real(v) : json_null());
}

static void jcnt(json_t *o, const char *k, long v) { json_object_set_new(o, k, json_integer(v)); }

static void pct(json_t *o, const char *name, const sv_pct *p) {
    char k[64];
    static const char *const suf[] = {"mean", "p50", "p90", "p99", "max"};
    const double v[] = {p->mean, p->p50, p->p90, p->p99, p->max};
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof k, "%s_%s_ms", name, suf[i]);
        jnum(o, k, p->n ? v[i] : NAN);
    }
}

json_t *sv_summary_json(const sv_summary *s) {
    json_t *o = json_object();
    pct(o, "tpot", &s->tpot_tok);
    pct(o, "ttft", &s->ttft);
    pct(o, "req_tpot", &s->tpot_req);
    pct(o, "itl", &s->itl_chunk);
    pct(o, "e2e", &s->e2e);
    jnum(o, "send_lag_p99_ms", s->cap_wait.n ? s->cap_wait.p99 : NAN);
    jnum(o, "goodput", s->goodput);
    jnum(o, "goodput_of_sent", s->goodput_of_sent);
    jcnt(o, "completed", s->completed);
    jcnt(o, "rejected", s->rejected);
    jcnt(o, "rejected_429", s->rej_429);
    jcnt(o, "rejected_503", s->rej_503);
    jcnt(o, "errors", s->errors);
    jcnt(o, "timeouts", s->by_outcome[SV_TIMEOUT]);
    jcnt(o, "stream_errors", s->by_outcome[SV_STREAM]);
    jcnt(o, "connect_errors", s->by_outcome[SV_CONNECT]);
    jcnt(o, "http_errors", s->by_outcome[SV_HTTP_ERROR]);
    jcnt(o, "sent", s->sent);
    jcnt(o, "interrupted_requests", s->interrupted);
    jcnt(o, "not_sent", s->not_sent);
    jcnt(o, "output_tokens", s->output_tokens);
    jcnt(o, "capped", s->cap_delayed);
    jnum(o, "tokens_per_s", s->tokens_per_s);
    jnum(o, "req_per_s", s->req_per_s);
    jnum(o, "duration", s->span_s);
    return o;
}

json_t *sv_req_json(const sv_req *q) {
    json_t *o = json_object();
    bool sent = q->outcome != SV_PENDING, first = q->n_chunks > 0;
    jcnt(o, "i", q->idx);
    json_object_set_new(o, "warmup", json_boolean(q->warmup));
    json_object_set_new(o, "outcome", json_string(sv_outcome_name(q->outcome)));
    jcnt(o, "status", q->status);
    jcnt(o, "prompt_len", q->prompt_len);
    jcnt(o, "max_tokens", q->max_tokens);
    jnum(o, "sched_s", q->t_sched);
    jnum(o, "send_s", sent ? q->t_send : NAN);
    jnum(o, "ttft_ms", first ? (q->t_first - q->t_send) * 1e3 : NAN);
    jnum(o, "e2e_ms", sent && q->t_end > 0 ? (q->t_end - q->t_send) * 1e3 : NAN);
    jnum(o, "tpot_ms", q->tokens >= 2 && first ? (q->t_last - q->t_first) * 1e3 / (q->tokens - 1)
                                              : NAN);
    jcnt(o, "chunks", q->n_chunks);
    jcnt(o, "tokens", q->tokens);
    json_object_set_new(o, "finish", json_string(q->finish));
    return o;
}
