/* afd-bench serve: an open-loop load generator for an OpenAI-compatible streaming server (the
 * router, or anything that speaks /v1/completions with SSE).
 *
 * Arrival times (Poisson, seeded) and every request's lengths are drawn before the start;
 * each request is sent at its time whatever happened to the earlier ones, on its own
 * connection (Connection: close), from one libevent loop. The loop stamps every read, so a
 * token's time is the time its chunk reached this process. A request that is due while
 * --concurrency-cap requests are in flight waits for a slot (counted, and its wait shows as
 * send lag). Every request has --timeout seconds from its send; the run stops at most
 * --timeout seconds after the last arrival. SIGINT/SIGTERM stop the run and report what it
 * has. Pieces: serve_impl.h; definitions of the figures: serve_stats.c.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench/bench.h"
#include "bench/serve_impl.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"

#define SSE_EVENT_MAX (256 * 1024)
#define BODY_MAX ((uint64_t)1 << 32)

/* ---- options -------------------------------------------------------------------------------- */

typedef struct sopts {
    const char *url, *api_key, *model, *endpoint, *json_out, *prompt_s, *output_s, *tokens_s;
    double rate, duration, sla_ms, ttft_sla_ms, warmup, timeout;
    int requests, cap;
    long seed;
    int insecure;
    /* derived */
    bool chat, tls;
    sv_dist prompt, output;
    int tok_lo, tok_hi;
    char host[256], port[8], path[512];
} sopts;

typedef enum okind { O_STR, O_DBL, O_INT, O_LONG, O_FLAG } okind;

typedef struct oopt {
    const char *name;
    okind kind;
    size_t off;
    double lo, hi;
} oopt;

#define O(name, kind, field, lo, hi) {name, kind, offsetof(sopts, field), lo, hi}
static const oopt options[] = {
    O("--url", O_STR, url, 0, 0),
    O("--api-key", O_STR, api_key, 0, 0),
    O("--model", O_STR, model, 0, 0),
    O("--endpoint", O_STR, endpoint, 0, 0),
    O("--json-out", O_STR, json_out, 0, 0),
    O("--prompt-len", O_STR, prompt_s, 0, 0),
    O("--output-len", O_STR, output_s, 0, 0),
    O("--token-range", O_STR, tokens_s, 0, 0),
    O("--rate", O_DBL, rate, 1e-9, INFINITY),
    O("--duration", O_DBL, duration, 0.001, 1e6),
    O("--sla-ms", O_DBL, sla_ms, 0.001, 1e7),
    O("--ttft-sla-ms", O_DBL, ttft_sla_ms, 0.001, 1e7),
    O("--warmup", O_DBL, warmup, 0, 1e6),
    O("--timeout", O_DBL, timeout, 0.001, 1e6),
    O("--requests", O_INT, requests, 1, 10000000),
    O("--concurrency-cap", O_INT, cap, 1, 1000000),
    O("--seed", O_LONG, seed, 0, 9e15),
    O("--insecure", O_FLAG, insecure, 0, 1),
};
#define N_OPTIONS (int)(sizeof options / sizeof options[0])

static const char usage_text[] =
    "usage: afd-bench serve --url http://HOST:PORT --rate R (--duration S | --requests N)\n"
    "         [--prompt-len DIST] [--output-len DIST] [--model NAME] [--endpoint completions|chat]\n"
    "         [--sla-ms 50] [--ttft-sla-ms X] [--concurrency-cap 1024] [--seed 1] [--warmup S]\n"
    "         [--timeout 60] [--api-key K] [--json-out FILE] [--token-range 1000:30000]\n"
    "         [--insecure]\n"
    "  Open-loop load on an OpenAI-compatible server: Poisson arrivals at R req/s (inf: all at\n"
    "  once), streamed completions with ignore_eos, TTFT / TPOT / E2E percentiles, throughput,\n"
    "  rejections (429/503) and goodput (share of completed requests with TPOT <= --sla-ms, and\n"
    "  TTFT <= --ttft-sla-ms when given). DIST: N | a:b (uniform) | lognorm:mean:sigma.\n"
    "  Completions send the prompt as token ids drawn from --token-range; chat sends about that\n"
    "  many words. --warmup S: requests in the first S seconds load the server but are not\n"
    "  counted. https:// URLs use TLS (--insecure: no certificate check). The key defaults to\n"
    "  $OPENAI_API_KEY. Last line: one JSON object (tpot_p99_ms, ttft_p99_ms, goodput, ...).\n";

static int set_opt(const oopt *d, const char *v, sopts *o) {
    char *p = (char *)o + d->off, *e;
    if (d->kind == O_STR) {
        *(const char **)p = v;
        return 0;
    }
    double x = !strcasecmp(v, "inf") ? INFINITY : strtod(v, &e);
    if ((!isinf(x) && *e) || !(x >= d->lo && x <= d->hi) || v[0] == 0) {
        fprintf(stderr, "afd-bench serve: %s '%s': want a number in [%g, %g]\n", d->name, v,
                d->lo, d->hi);
        return -1;
    }
    if ((d->kind == O_INT || d->kind == O_LONG) && x != floor(x)) {
        fprintf(stderr, "afd-bench serve: %s '%s': want an integer\n", d->name, v);
        return -1;
    }
    if (d->kind == O_DBL)
        *(double *)p = x;
    else if (d->kind == O_INT)
        *(int *)p = (int)x;
    else
        *(long *)p = (long)x;
    return 0;
}

static int parse_url(sopts *o) {
    const char *u = o->url, *h;
    if (!strncmp(u, "http://", 7))
        h = u + 7, o->tls = false;
    else if (!strncmp(u, "https://", 8))
        h = u + 8, o->tls = true;
    else
        return fprintf(stderr, "afd-bench serve: --url '%s': want http://HOST[:PORT][/PREFIX] or "
                               "https://...\n", u), -1;
    const char *slash = strchr(h, '/'), *end = slash ? slash : h + strlen(h);
    const char *hs = h, *he, *colon;
    if (*h == '[') { /* [v6]:port */
        he = memchr(h, ']', (size_t)(end - h));
        if (!he)
            return fprintf(stderr, "afd-bench serve: --url '%s': unclosed '['\n", u), -1;
        hs = h + 1, colon = he + 1 < end && he[1] == ':' ? he + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        he = colon ? colon : end;
    }
    size_t hl = (size_t)(he - hs), pl = colon ? (size_t)(end - colon - 1) : 0;
    if (!hl || hl >= sizeof o->host || (colon && (pl == 0 || pl >= sizeof o->port)) ||
        strlen(slash ? slash : "") >= sizeof o->path - 32)
        return fprintf(stderr, "afd-bench serve: --url '%s': bad host, port or path\n", u), -1;
    memcpy(o->host, hs, hl), o->host[hl] = 0;
    snprintf(o->port, sizeof o->port, "%.*s", (int)pl, colon ? colon + 1 : "");
    if (!colon)
        snprintf(o->port, sizeof o->port, "%s", o->tls ? "443" : "80");
    for (const char *c = o->port; *c; c++)
        if (*c < '0' || *c > '9')
            return fprintf(stderr, "afd-bench serve: --url '%s': port is not a number\n", u), -1;
    size_t n = slash ? strlen(slash) : 0;
    while (n && slash[n - 1] == '/')
        n--;
    snprintf(o->path, sizeof o->path, "%.*s%s", (int)n, slash ? slash : "",
             o->chat ? "/v1/chat/completions" : "/v1/completions");
    return 0;
}

static int derive(sopts *o) {
    afd_err err = {0};
    if (!o->url || !(o->rate >= 0) || (o->duration <= 0 && o->requests <= 0)) {
        fprintf(stderr, "afd-bench serve: --url, --rate and one of --duration / --requests "
                        "are needed (--help)\n");
        return -1;
    }
    if (isinf(o->rate) && o->requests <= 0) {
        fprintf(stderr, "afd-bench serve: --rate inf sends everything at once: give --requests\n");
        return -1;
    }
    if (strcmp(o->endpoint, "completions") && strcmp(o->endpoint, "chat")) {
        fprintf(stderr, "afd-bench serve: --endpoint '%s': completions or chat\n", o->endpoint);
        return -1;
    }
    o->chat = !strcmp(o->endpoint, "chat");
    if (strlen(o->model) > 200 || (o->api_key && strlen(o->api_key) > 1000) ||
        (o->api_key && strpbrk(o->api_key, "\r\n"))) {
        fprintf(stderr, "afd-bench serve: --model over 200 bytes or a bad --api-key\n");
        return -1;
    }
    sv_dist tr;
    if (sv_dist_parse(o->prompt_s, &o->prompt, &err) ||
        sv_dist_parse(o->output_s, &o->output, &err) ||
        (sv_dist_parse(o->tokens_s, &tr, &err) == 0 && tr.kind != SV_DIST_UNIFORM &&
         afd_errf(&err, AFD_E_FORMAT, "--token-range '%s': want a:b", o->tokens_s))) {
        fprintf(stderr, "afd-bench serve: %s\n", err.msg);
        return -1;
    }
    o->tok_lo = (int)tr.a, o->tok_hi = (int)tr.b;
    return parse_url(o);
}

static void opts_default(sopts *o) {
    memset(o, 0, sizeof *o);
    o->model = "afd", o->endpoint = "completions", o->prompt_s = "512", o->output_s = "128";
    o->tokens_s = "1000:30000", o->rate = -1, o->sla_ms = 50, o->timeout = 60, o->cap = 1024;
    o->seed = 1, o->api_key = getenv("OPENAI_API_KEY");
}

/* 0 to run, 1 after --help, -1 on a bad argument. */
static int parse(int argc, char **argv, sopts *o) {
    opts_default(o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return printf("%s", usage_text), 1;
        const oopt *d = NULL;
        for (int k = 0; k < N_OPTIONS && !d; k++)
            if (!strcmp(argv[i], options[k].name))
                d = &options[k];
        if (!d)
            return fprintf(stderr, "afd-bench serve: unknown argument '%s' (--help)\n", argv[i]), -1;
        if (d->kind == O_FLAG) {
            *(int *)((char *)o + d->off) = 1;
            continue;
        }
        if (i + 1 >= argc)
            return fprintf(stderr, "afd-bench serve: %s needs a value\n", argv[i]), -1;
        if (set_opt(d, argv[++i], o))
            return -1;
    }
    return derive(o);
}

/* ---- the run -------------------------------------------------------------------------------- */

typedef struct conn conn;

typedef struct run {
    const sopts *o;
    struct event_base *base;
    struct event *tick, *reap, *deadline, *sig[2];
    SSL_CTX *ssl;
    struct sockaddr_storage addr;
    int addr_len;
    char host_hdr[300];
    sv_req *q;
    conn **live; /* live[i]: request i's connection while it is in flight */
    int n, next, in_flight;
    uint64_t t0_ns;
    conn *dead;
    bool interrupted, over;
    char first_error[SV_N_OUTCOMES][240];
} run;

struct conn {
    run *r;
    sv_req *q;
    struct bufferevent *bev;
    struct event *timer;
    sv_http http;
    sv_sse sse;
    bool sse_ready, connected, finished, saw_done;
    double now; /* time of the read being parsed */
    char err_body[200];
    size_t err_len;
    char why[240];
    conn *next_dead;
};

/* Copies src into dst[cap], cut to fit, NUL-terminated. */
static void copy(char *dst, size_t cap, const char *src) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static double run_now(const run *r) { return (double)(afd_now_ns() - r->t0_ns) * 1e-9; }

static void note_error(run *r, sv_outcome oc, const char *msg) {
    if (!r->first_error[oc][0] && msg && *msg)
        copy(r->first_error[oc], sizeof r->first_error[oc], msg);
}

/* Ends a request: records its outcome, retires the connection (freed by the reaper, never in
 * its own callback) and lets a waiting request go. */
static void conn_finish(conn *c, sv_outcome oc, const char *why) {
    if (c->finished)
        return;
    run *r = c->r;
    sv_req *q = c->q;
    c->finished = true;
    q->outcome = oc;
    q->t_end = run_now(r);
    if (oc == SV_OK && !q->usage_seen)
        q->tokens = q->n_chunks;
    if (oc != SV_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "request %d: %.200s", q->idx, why ? why : sv_outcome_name(oc));
        note_error(r, oc, msg);
    }
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->timer)
        event_del(c->timer);
    r->live[q->idx] = NULL;
    c->next_dead = r->dead, r->dead = c;
    event_active(r->reap, 0, 0);
    r->in_flight--;
    if (!r->over)
        event_active(r->tick, EV_TIMEOUT, 0); /* schedule(), outside this callback */
}

static void conn_free(conn *c) {
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->timer)
        event_free(c->timer);
    if (c->sse_ready)
        sv_sse_free(&c->sse);
    free(c);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg) {
    run *r = arg;
    while (r->dead) {
        conn *c = r->dead;
        r->dead = c->next_dead;
        conn_free(c);
    }
}

/* ---- responses ------------------------------------------------------------------------------ */

static int on_event(void *ctx, const char *data, size_t len) {
    conn *c = ctx;
    sv_req *q = c->q;
    sv_chunk ch;
    afd_err err = {0};
    if (c->saw_done)
        return 0;
    if (sv_chunk_parse(data, len, c->r->o->chat, &ch, &err)) {
        copy(c->why, sizeof c->why, err.msg);
        return AFD_E_FORMAT;
    }
    if (ch.done)
        return c->saw_done = true, 0;
    if (ch.error) {
        snprintf(c->why, sizeof c->why, "error in the stream: %s", ch.message);
        return AFD_E_PEER;
    }
    if (ch.content) {
        if (++q->n_chunks == 1)
            q->t_first = c->now;
        else
            sv_req_gap(q, (c->now - q->t_last) * 1e3);
        q->t_last = c->now;
    }
    if (ch.completion_tokens >= 0)
        q->tokens = ch.completion_tokens, q->usage_seen = true;
    if (ch.prompt_tokens >= 0)
        q->prompt_tokens = ch.prompt_tokens;
    if (ch.finish[0])
        copy(q->finish, sizeof q->finish, ch.finish);
    return 0;
}

static int on_body(void *ctx, const char *p, size_t n) {
    conn *c = ctx;
    if (c->http.status == 200 && c->http.event_stream) {
        afd_err err = {0};
        int rc = sv_sse_feed(&c->sse, p, n, on_event, c, &err);
        if (rc && !c->why[0])
            copy(c->why, sizeof c->why, err.msg);
        return rc;
    }
    size_t k = sizeof c->err_body - 1 - c->err_len;
    k = n < k ? n : k;
    memcpy(c->err_body + c->err_len, p, k);
    c->err_len += k;
    c->err_body[c->err_len] = 0;
    return 0;
}

/* The outcome of a response that ended (complete, or the peer closed after it). */
static void response_end(conn *c) {
    int st = c->http.status;
    if (st == 429 || st == 503 || (st != 200 && st)) {
        char why[300];
        snprintf(why, sizeof why, "HTTP %d: %s", st, c->err_body);
        conn_finish(c, st == 429 || st == 503 ? SV_REJECTED : SV_HTTP_ERROR, why);
    } else if (!c->http.event_stream) {
        snprintf(c->why, sizeof c->why, "HTTP 200 but not text/event-stream: %s", c->err_body);
        conn_finish(c, SV_STREAM, c->why);
    } else if (c->saw_done || c->q->finish[0]) {
        conn_finish(c, SV_OK, NULL);
    } else {
        conn_finish(c, SV_STREAM, "the stream ended without [DONE] or a finish_reason");
    }
}

static void read_cb(struct bufferevent *bev, void *arg) {
    conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char buf[16384];
    int k, rc = 0;
    afd_err err = {0};
    c->now = run_now(c->r);
    while (rc == 0 && (k = evbuffer_remove(in, buf, sizeof buf)) > 0) {
        rc = sv_http_feed(&c->http, buf, (size_t)k, on_body, c, &err);
        if (c->http.status != 0)
            c->q->status = c->http.status;
        if (rc == 0 && c->saw_done)
            rc = 1; /* the stream is over for the client; the rest does not matter */
    }
    if (rc < 0) {
        if (!c->why[0])
            copy(c->why, sizeof c->why, err.msg);
        conn_finish(c, SV_STREAM, c->why);
    } else if (rc == 1) {
        response_end(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
    conn *c = arg;
    afd_err err = {0};
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        c->connected = true;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long se = c->r->ssl ? bufferevent_get_openssl_error(bev) : 0;
        char why[240];
        if (se)
            snprintf(why, sizeof why, "TLS: %s", ERR_reason_error_string(se));
        else
            snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_finish(c, c->connected ? SV_STREAM : SV_CONNECT, why);
    } else if (what & BEV_EVENT_EOF) {
        if (!c->connected) /* refused, or closed during the TLS handshake */
            conn_finish(c, SV_CONNECT, "connection closed before it was established");
        else if (sv_http_eof(&c->http, &err) == 1)
            response_end(c);
        else
            conn_finish(c, SV_STREAM, err.msg);
    }
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg) {
    conn *c = arg;
    int st = c->http.status;
    if (st == 429 || st == 503)
        conn_finish(c, SV_REJECTED, "rejected (the body did not finish before --timeout)");
    else
        conn_finish(c, SV_TIMEOUT, c->connected ? "no complete answer within --timeout"
                                                : "not connected within --timeout");
}

/* ---- requests ------------------------------------------------------------------------------- */

static void free_body(const void *data, size_t len, void *extra) { free(extra); }

static int write_request(conn *c, const char *body, long len) {
    const run *r = c->r;
    const sopts *o = r->o;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int rc = evbuffer_add_printf(out,
                                 "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: afd-bench\r\n"
                                 "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                                 "Content-Length: %ld\r\nX-Request-Id: bench-%ld-%d\r\n"
                                 "Connection: close\r\n",
                                 o->path, r->host_hdr, len, o->seed, c->q->idx);
    if (rc >= 0 && o->api_key)
        rc = evbuffer_add_printf(out, "Authorization: Bearer %s\r\n", o->api_key);
    if (rc >= 0)
        rc = evbuffer_add(out, "\r\n", 2);
    if (rc >= 0)
        rc = evbuffer_add_reference(out, body, (size_t)len, free_body, (void *)body);
    return rc < 0 ? -ENOMEM : 0;
}

static struct bufferevent *new_bev(run *r) {
    if (!r->ssl)
        return bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(r->ssl);
    if (!ssl)
        return NULL;
    SSL_set_tlsext_host_name(ssl, r->o->host);
    if (!r->o->insecure)
        SSL_set1_host(ssl, r->o->host);
    struct bufferevent *b = bufferevent_openssl_socket_new(r->base, -1, ssl,
                                                           BUFFEREVENT_SSL_CONNECTING,
                                                           BEV_OPT_CLOSE_ON_FREE);
    if (b)
        bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
    else
        SSL_free(ssl);
    return b;
}

/* Sends request q now. Failures before the connection exists end it at once as SV_CONNECT. */
static void launch(run *r, sv_req *q) {
    conn *c = xcalloc(1, sizeof *c);
    c->r = r, c->q = q;
    r->live[q->idx] = c;
    q->outcome = SV_INFLIGHT;
    q->t_send = run_now(r);
    q->prompt_tokens = -1;
    r->in_flight++;
    sv_http_init(&c->http, BODY_MAX);
    sv_sse_init(&c->sse, SSE_EVENT_MAX);
    c->sse_ready = true;
    sv_rng rng;
    sv_rng_seed(&rng, (uint64_t)r->o->seed, 1000 + (uint64_t)q->idx);
    sv_body_opts bo = {.chat = r->o->chat, .model = r->o->model, .prompt_len = q->prompt_len,
                       .max_tokens = q->max_tokens, .tok_lo = r->o->tok_lo, .tok_hi = r->o->tok_hi};
    char *body = NULL;
    long len = sv_body_build(&bo, &rng, &body);
    c->bev = len < 0 ? NULL : new_bev(r);
    c->timer = evtimer_new(r->base, timeout_cb, c);
    if (!c->bev || !c->timer || write_request(c, body, len)) {
        if (!c->bev)
            free(body);
        conn_finish(c, SV_CONNECT, "out of memory or sockets building the request");
        return;
    }
    double t = r->o->timeout;
    struct timeval tv = {(time_t)t, (suseconds_t)((t - floor(t)) * 1e6)};
    evtimer_add(c->timer, &tv);
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&r->addr, r->addr_len))
        conn_finish(c, SV_CONNECT, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void arm(struct event *ev, double seconds) {
    if (seconds < 0)
        seconds = 0;
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - floor(seconds)) * 1e6)};
    evtimer_add(ev, &tv);
}

static void check_end(run *r) {
    if (r->next == r->n && r->in_flight == 0 && !r->over) {
        r->over = true;
        event_base_loopexit(r->base, NULL);
    }
}

/* Sends every request that is due and has a slot; arms the tick for the next one. */
static void schedule(run *r) {
    double now = run_now(r);
    while (r->next < r->n && r->q[r->next].t_sched <= now) {
        if (r->in_flight >= r->o->cap) {
            r->q[r->next].capped = true;
            return; /* a finishing request activates the tick */
        }
        launch(r, &r->q[r->next++]);
        if (r->over)
            return;
    }
    if (r->next < r->n)
        arm(r->tick, r->q[r->next].t_sched - now);
    check_end(r);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) { schedule(arg); }

/* Ends the run: in-flight requests become `oc` (interrupted, or timed out at the deadline);
 * requests not sent yet stay SV_PENDING. */
static void stop_all(run *r, sv_outcome oc, const char *why) {
    r->over = true;
    for (int i = 0; i < r->n; i++)
        if (r->live[i])
            conn_finish(r->live[i], oc, why);
    event_base_loopexit(r->base, NULL);
}

static void sig_cb(evutil_socket_t fd, short what, void *arg) {
    run *r = arg;
    r->interrupted = true;
    stop_all(r, SV_INTERRUPTED, "interrupted");
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
    stop_all(arg, SV_TIMEOUT, "still running at the end of the run (last arrival + --timeout)");
}

/* ---- set-up --------------------------------------------------------------------------------- */

static int resolve(run *r) {
    const sopts *o = r->o;
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP}, *ai = NULL;
    int rc = evutil_getaddrinfo(o->host, o->port, &hints, &ai);
    if (rc || !ai || ai->ai_addrlen > sizeof r->addr) {
        fprintf(stderr, "afd-bench serve: cannot resolve %s:%s: %s\n", o->host, o->port,
                rc ? evutil_gai_strerror(rc) : "no address");
        if (ai)
            evutil_freeaddrinfo(ai);
        return -1;
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addr_len = (int)ai->ai_addrlen;
    evutil_freeaddrinfo(ai);
    bool v6 = strchr(o->host, ':') != NULL, dflt = !strcmp(o->port, o->tls ? "443" : "80");
    snprintf(r->host_hdr, sizeof r->host_hdr, "%s%s%s%s%s", v6 ? "[" : "", o->host,
             v6 ? "]" : "", dflt ? "" : ":", dflt ? "" : o->port);
    return 0;
}

/* Arrival times and lengths, all drawn from the seed before the start: warmup arrivals in
 * [0, warmup), then the measured ones (--duration seconds and/or --requests of them). */
static int make_requests(run *r) {
    const sopts *o = r->o;
    sv_rng ra, rl;
    sv_rng_seed(&ra, (uint64_t)o->seed, 0);
    sv_rng_seed(&rl, (uint64_t)o->seed, 1);
    double *tw = NULL, *tm = NULL;
    bool burst = isinf(o->rate) || o->rate == 0;
    int nw = o->warmup > 0 && !burst ? sv_arrivals(o->rate, o->warmup, 0, &ra, &tw) : 0;
    int nm = sv_arrivals(o->rate, o->duration, o->requests, &ra, &tm);
    r->n = nw + nm;
    r->q = r->n ? afd_try_alloc((size_t)r->n * sizeof *r->q) : NULL;
    r->live = r->n ? afd_try_alloc((size_t)r->n * sizeof *r->live) : NULL;
    for (int i = 0; r->q && r->live && i < r->n; i++) {
        sv_req *q = &r->q[i];
        q->idx = i;
        q->warmup = i < nw;
        q->t_sched = i < nw ? tw[i] : o->warmup + tm[i - nw];
        q->prompt_len = sv_dist_draw(&o->prompt, &rl);
        q->max_tokens = sv_dist_draw(&o->output, &rl);
        q->prompt_tokens = -1;
    }
    free(tw), free(tm);
    if (r->n && (!r->q || !r->live)) {
        fprintf(stderr, "afd-bench serve: no memory for %d requests\n", r->n);
        return -1;
    }
    if (!nm)
        fprintf(stderr, "afd-bench serve: no request arrives in %g s at %g req/s\n",
                o->duration, o->rate);
    return nm ? 0 : -1;
}

static int make_tls(run *r) {
    if (!r->o->tls)
        return 0;
    r->ssl = SSL_CTX_new(TLS_client_method());
    if (!r->ssl)
        return fprintf(stderr, "afd-bench serve: no TLS context\n"), -1;
    if (r->o->insecure) {
        SSL_CTX_set_verify(r->ssl, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(r->ssl, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_default_verify_paths(r->ssl);
    }
    return 0;
}

static void raise_fd_limit(run *r, sopts *o) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)o->cap + 64 > rl.rlim_cur) {
        o->cap = rl.rlim_cur > 128 ? (int)(rl.rlim_cur - 64) : 64;
        fprintf(stderr, "afd-bench serve: --concurrency-cap lowered to %d (open file limit %llu)\n",
                o->cap, (unsigned long long)rl.rlim_cur);
    }
}

static int make_loop(run *r) {
    struct event_config *cfg = event_config_new();
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    r->base = cfg ? event_base_new_with_config(cfg) : NULL;
    event_config_free(cfg);
    if (!r->base)
        return fprintf(stderr, "afd-bench serve: no event base\n"), -1;
    r->tick = evtimer_new(r->base, tick_cb, r);
    r->reap = event_new(r->base, -1, 0, reap_cb, r);
    r->deadline = evtimer_new(r->base, deadline_cb, r);
    r->sig[0] = evsignal_new(r->base, SIGINT, sig_cb, r);
    r->sig[1] = evsignal_new(r->base, SIGTERM, sig_cb, r);
    if (!r->tick || !r->reap || !r->deadline || !r->sig[0] || !r->sig[1])
        return fprintf(stderr, "afd-bench serve: no events\n"), -1;
    evsignal_add(r->sig[0], NULL);
    evsignal_add(r->sig[1], NULL);
    return 0;
}

static void run_free(run *r) {
    for (int i = 0; r->live && i < r->n; i++)
        if (r->live[i])
            conn_finish(r->live[i], SV_INTERRUPTED, "freed");
    reap_cb(-1, 0, r);
    struct event *evs[] = {r->tick, r->reap, r->deadline, r->sig[0], r->sig[1]};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (r->base)
        event_base_free(r->base);
    if (r->ssl)
        SSL_CTX_free(r->ssl);
    for (int i = 0; r->q && i < r->n; i++)
        free(r->q[i].gaps);
    free(r->q), free(r->live);
}

/* ---- report --------------------------------------------------------------------------------- */

static void print_plan(const run *r) {
    const sopts *o = r->o;
    char pd[64], od[64];
    int nw = 0;
    for (int i = 0; i < r->n; i++)
        nw += r->q[i].warmup;
    sv_dist_format(&o->prompt, pd, sizeof pd);
    sv_dist_format(&o->output, od, sizeof od);
    printf("afd-bench serve: POST %s://%s%s, model %s\n", o->tls ? "https" : "http", r->host_hdr,
           o->path, o->model);
    printf("open loop: %g req/s %s (seed %ld), %d requests (+%d warmup) over %.1f s, prompt %s, "
           "output %s, cap %d, timeout %g s\n", o->rate,
           isinf(o->rate) || o->rate == 0 ? "at once" : "Poisson", o->seed, r->n - nw, nw,
           r->q[r->n - 1].t_sched, pd, od, o->cap, o->timeout);
    fflush(stdout);
}

static void print_errors(const run *r) {
    for (int k = 0; k < SV_N_OUTCOMES; k++)
        if (r->first_error[k][0] && k != SV_INTERRUPTED)
            printf("first %s: %s\n", sv_outcome_name((sv_outcome)k), r->first_error[k]);
}

static json_t *config_json(const sopts *o) {
    char pd[64], od[64];
    sv_dist_format(&o->prompt, pd, sizeof pd);
    sv_dist_format(&o->output, od, sizeof od);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:s, s:s, s:f, s:o, s:i, s:I, s:f, s:f}",
                     "url", o->url, "endpoint", o->endpoint, "model", o->model, "rate",
                     isinf(o->rate) ? json_null() : json_real(o->rate), "duration",
                     o->duration > 0 ? json_real(o->duration) : json_null(), "requests",
                     o->requests, "prompt_len", pd, "output_len", od, "sla_ms", o->sla_ms,
                     "ttft_sla_ms", o->ttft_sla_ms > 0 ? json_real(o->ttft_sla_ms) : json_null(),
                     "concurrency_cap", o->cap, "seed", (json_int_t)o->seed, "warmup", o->warmup,
                     "timeout", o->timeout);
}

static int write_json_out(const run *r, json_t *summary) {
    json_t *reqs = json_array();
    for (int i = 0; i < r->n; i++)
        json_array_append_new(reqs, sv_req_json(&r->q[i]));
    json_t *all = json_pack("{s:o, s:O, s:o}", "config", config_json(r->o), "summary", summary,
                            "requests", reqs);
    int rc = all ? json_dump_file(all, r->o->json_out, JSON_INDENT(1) | JSON_REAL_PRECISION(6))
                 : -1;
    json_decref(all);
    if (rc)
        fprintf(stderr, "afd-bench serve: cannot write %s\n", r->o->json_out);
    return rc ? -1 : 0;
}

/* Table, first errors, then the JSON line; 0 or -1 (--json-out failed). */
static int report(const run *r, sv_summary *s) {
    const sopts *o = r->o;
    sv_sla sla = {.tpot_ms = o->sla_ms, .ttft_ms = o->ttft_sla_ms};
    sv_summarize(r->q, r->n, &sla, s);
    sv_report_table(stdout, s, &sla);
    print_errors(r);
    if (r->interrupted)
        printf("interrupted: the figures cover what finished before the signal\n");
    json_t *j = sv_summary_json(s);
    json_object_set_new(j, "rate", isinf(o->rate) ? json_null() : json_real(o->rate));
    json_object_set_new(j, "sla_ms", json_real(o->sla_ms));
    json_object_set_new(j, "interrupted", json_boolean(r->interrupted));
    int rc = o->json_out ? write_json_out(r, j) : 0;
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", line ? line : "{}");
    fflush(stdout);
    free(line);
    json_decref(j);
    return rc;
}

int bench_serve(int argc, char **argv) {
    sopts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    run r = {.o = &o};
    raise_fd_limit(&r, &o);
    if (resolve(&r) || make_requests(&r) || make_tls(&r) || make_loop(&r)) {
        run_free(&r);
        return 2;
    }
    print_plan(&r);
    r.t0_ns = afd_now_ns();
    arm(r.deadline, r.q[r.n - 1].t_sched + o.timeout + 1.0);
    schedule(&r);
    if (!r.over)
        event_base_dispatch(r.base);
    reap_cb(-1, 0, &r);
    sv_summary s;
    rc = report(&r, &s);
    run_free(&r);
    if (r.interrupted)
        return 130;
    return rc || (s.completed == 0 && s.rejected == 0) ? 1 : 0;
}
