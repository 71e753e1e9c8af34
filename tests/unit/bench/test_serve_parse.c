/* afd-bench serve's pure pieces: HTTP response framing and SSE fed at every cut, stream chunk
 * JSON, length distributions, arrivals, request bodies and the figures (percentiles, the
 * token-weighted TPOT with multi-token chunks, goodput). */
#include <criterion/criterion.h>
#include <math.h>

#include "bench/serve_gen.c"
#include "bench/serve_parse.c"
#include "bench/serve_stats.c"

TestSuite(serve, .timeout = 20);

/* ---- HTTP ------------------------------------------------------------------------------------ */

typedef struct sink {
    char buf[4096];
    size_t n;
} sink;

static int to_sink(void *ctx, const char *p, size_t n) {
    sink *s = ctx;
    cr_assert_leq(s->n + n, sizeof s->buf);
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

/* Feeds `in` in pieces cut at `cut` (0: whole); returns the last feed's code. */
static int http_run(const char *in, size_t cut, sv_http *h, sink *s, afd_err *err) {
    size_t n = strlen(in);
    sv_http_init(h, 1 << 20);
    memset(s, 0, sizeof *s);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t k = cut && n - off > cut ? cut : n - off;
        rc = sv_http_feed(h, in + off, k, to_sink, s, err);
        off += k;
    }
    return rc;
}

static const char chunked[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    "7\r\ndata: a\r\n"
    "A;ext=1\r\n\n\ndata: bc\r\n"
    "0\r\nX-Trailer: 1\r\n\r\n";

Test(serve, http_chunked_at_every_cut) {
    for (size_t cut = 0; cut < sizeof chunked; cut++) {
        sv_http h;
        sink s;
        afd_err err = {0};
        int rc = http_run(chunked, cut, &h, &s, &err);
        cr_assert_eq(rc, 1, "cut %zu: rc %d (%s)", cut, rc, err.msg);
        cr_assert_eq(h.status, 200);
        cr_assert(h.event_stream && h.chunked);
        cr_assert_eq(s.n, 17, "cut %zu: %zu body bytes", cut, s.n);
        cr_assert_eq(memcmp(s.buf, "data: a\n\ndata: bc", 17), 0, "cut %zu: '%.*s'", cut, (int)s.n,
                     s.buf);
    }
}

Test(serve, http_length_close_interim_and_reject) {
    sv_http h;
    sink s;
    afd_err err = {0};
    cr_assert_eq(http_run("HTTP/1.1 429 Too Many\r\nContent-Length: 5\r\n\r\nhello+junk", 3, &h,
                          &s, &err), 1);
    cr_assert_eq(h.status, 429);
    cr_assert_eq(s.n, 5);
    cr_assert_eq(http_run("HTTP/1.0 200 OK\r\n\r\nall of it", 4, &h, &s, &err), 0);
    cr_assert_eq(h.state, SV_H_CLOSE);
    cr_assert_eq(sv_http_eof(&h, &err), 1);
    cr_assert_eq(s.n, 9);
    cr_assert_eq(http_run("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0, &h,
                          &s, &err), 1);
    cr_assert_eq(h.status, 204);
    cr_assert_eq(http_run("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, &h, &s, &err), 1);
}

static void http_bad(const char *in, int want, const char *needle) {
    sv_http h;
    sink s;
    afd_err err = {0};
    int rc = http_run(in, 0, &h, &s, &err);
    cr_assert_eq(rc, want, "'%.40s': rc %d want %d (%s)", in, rc, want, err.msg);
    cr_assert(strstr(err.msg, needle), "'%s' does not say '%s'", err.msg, needle);
}

Test(serve, http_abuse) {
    http_bad("HTTP/2 200\r\n\r\n", AFD_E_FORMAT, "status line");
    http_bad("HTTP/1.1 20 OK\r\n\r\n", AFD_E_FORMAT, "status line");
    http_bad("HTTP/1.1 999 X\r\n\r\n", AFD_E_FORMAT, "outside");
    http_bad("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", AFD_E_FORMAT, "without a name");
    http_bad("HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", AFD_E_FORMAT, "not a number");
    http_bad("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", AFD_E_LIMIT, "limit");
    http_bad("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", AFD_E_FORMAT,
             "two different");
    http_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", AFD_E_FORMAT,
             "chunk size");
    http_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n", AFD_E_LIMIT,
             "chunk size");
    http_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", AFD_E_FORMAT,
             "longer than its size");
    char big[SV_HTTP_LINE_MAX + 64];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    http_bad(big, AFD_E_LIMIT, "longer than");
    char many[4000] = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i <= SV_HTTP_HEADERS_MAX; i++)
        strcat(many, "A: b\r\n");
    http_bad(many, AFD_E_LIMIT, "headers");
}

Test(serve, http_eof_says_where) {
    sv_http h;
    sink s;
    afd_err err = {0};
    http_run("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, &h, &s, &err);
    cr_assert_eq(sv_http_eof(&h, &err), AFD_E_PEER);
    cr_assert(strstr(err.msg, "7 bytes short"), "%s", err.msg);
    http_run("HTTP/1.1 200 OK\r\nContent-", 0, &h, &s, &err);
    cr_assert_eq(sv_http_eof(&h, &err), AFD_E_PEER);
    cr_assert(strstr(err.msg, "headers"), "%s", err.msg);
    sv_http_init(&h, 100);
    cr_assert_eq(sv_http_eof(&h, &err), AFD_E_PEER);
    cr_assert(strstr(err.msg, "no response"), "%s", err.msg);
    http_run(chunked, 0, &h, &s, &err); /* a complete response stays complete */
    cr_assert_eq(sv_http_eof(&h, &err), 1);
}

/* ---- SSE ------------------------------------------------------------------------------------- */

typedef struct events {
    char data[8][64];
    int n;
} events;

static int on_ev(void *ctx, const char *d, size_t n) {
    events *e = ctx;
    cr_assert_lt(e->n, 8);
    cr_assert_lt(n, 64);
    memcpy(e->data[e->n], d, n);
    e->data[e->n++][n] = 0;
    return 0;
}

static const char sse_in[] = "\xEF\xBB\xBF: hello\r\n"
                             "data: one\r\n\r\n"
                             "event: x\rid: 3\rdata:two\rdata: 2b\r\r"
                             "data\n\n"          /* empty data: not dispatched */
                             "retry: 10\ndata: three\n\n"
                             "data: cut";        /* never finished: not dispatched */

static void sse_check(const events *e, size_t cut) {
    cr_assert_eq(e->n, 3, "cut %zu: %d events", cut, e->n);
    cr_assert_str_eq(e->data[0], "one", "cut %zu", cut);
    cr_assert_str_eq(e->data[1], "two\n2b", "cut %zu", cut);
    cr_assert_str_eq(e->data[2], "three", "cut %zu", cut);
}

Test(serve, sse_every_cut_and_every_byte) {
    size_t n = sizeof sse_in - 1;
    for (size_t cut = 1; cut < n; cut++) {
        sv_sse s;
        events e = {0};
        afd_err err = {0};
        sv_sse_init(&s, 256);
        cr_assert_eq(sv_sse_feed(&s, sse_in, cut, on_ev, &e, &err), 0, "%s", err.msg);
        cr_assert_eq(sv_sse_feed(&s, sse_in + cut, n - cut, on_ev, &e, &err), 0, "%s", err.msg);
        sse_check(&e, cut);
        sv_sse_free(&s);
    }
    sv_sse s;
    events e = {0};
    sv_sse_init(&s, 256);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sv_sse_feed(&s, sse_in + i, 1, on_ev, &e, NULL), 0);
    sse_check(&e, 1);
    sv_sse_free(&s);
}

Test(serve, sse_crlf_split_is_one_line_end) {
    sv_sse s;
    events e = {0};
    sv_sse_init(&s, 64);
    /* "\r" | "\n" across feeds is one line end; "\r\n\r\n" ends the event exactly once */
    cr_assert_eq(sv_sse_feed(&s, "data: a\r", 8, on_ev, &e, NULL), 0);
    cr_assert_eq(sv_sse_feed(&s, "\ndata: b\r", 9, on_ev, &e, NULL), 0);
    cr_assert_eq(sv_sse_feed(&s, "\n\r", 2, on_ev, &e, NULL), 0);
    cr_assert_eq(e.n, 1);
    cr_assert_str_eq(e.data[0], "a\nb");
    cr_assert_eq(sv_sse_feed(&s, "\n", 1, on_ev, &e, NULL), 0);
    cr_assert_eq(e.n, 1, "the LF of the CRLF must not make a second empty line");
    sv_sse_free(&s);
}

Test(serve, sse_limits) {
    sv_sse s;
    afd_err err = {0};
    sv_sse_init(&s, 16);
    cr_assert_eq(sv_sse_feed(&s, "data: 0123456789abcdef", 22, on_ev, NULL, &err), AFD_E_LIMIT);
    cr_assert(strstr(err.msg, "16 bytes"), "%s", err.msg);
    sv_sse_free(&s);
    sv_sse_init(&s, 16);
    const char two[] = "data: 0123456789\ndata: 0123456789\n";
    cr_assert_eq(sv_sse_feed(&s, two, sizeof two - 1, on_ev, NULL, &err), AFD_E_LIMIT);
    cr_assert(strstr(err.msg, "event data"), "%s", err.msg);
    sv_sse_free(&s);
}

/* ---- chunks ---------------------------------------------------------------------------------- */

static sv_chunk chunk(const char *js, bool chat, int want_rc) {
    sv_chunk c;
    afd_err err = {0};
    int rc = sv_chunk_parse(js, strlen(js), chat, &c, &err);
    cr_assert_eq(rc, want_rc, "'%s': rc %d (%s)", js, rc, err.msg);
    return c;
}

Test(serve, chunk_fields) {
    sv_chunk c = chunk("{\"choices\":[{\"text\":\"hi\",\"finish_reason\":null}]}", false, 0);
    cr_assert(c.content && !c.done && !c.error);
    cr_assert_eq(c.completion_tokens, -1);
    cr_assert_str_eq(c.finish, "");
    c = chunk("{\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}],\"usage\":"
              "{\"prompt_tokens\":7,\"completion_tokens\":20}}", false, 0);
    cr_assert(!c.content);
    cr_assert_str_eq(c.finish, "length");
    cr_assert_eq(c.completion_tokens, 20);
    cr_assert_eq(c.prompt_tokens, 7);
    c = chunk("{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", true, 0);
    cr_assert(!c.content);
    c = chunk("{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}", true, 0);
    cr_assert(c.content);
    c = chunk("{\"choices\":[{\"text\":\"x\"}]}", true, 0); /* chat reads delta only */
    cr_assert(!c.content);
    c = chunk("[DONE] ", false, 0);
    cr_assert(c.done);
    c = chunk("{\"error\":{\"message\":\"ffnd went away\"}}", false, 0);
    cr_assert(c.error);
    cr_assert_str_eq(c.message, "ffnd went away");
}

Test(serve, chunk_abuse) {
    chunk("not json", false, AFD_E_FORMAT);
    chunk("[1,2]", false, AFD_E_FORMAT);
    chunk("{\"choices\":{}}", false, AFD_E_FORMAT);
    chunk("{\"choices\":[1]}", false, AFD_E_FORMAT);
    chunk("{\"choices\":[{\"text\":5}]}", false, AFD_E_FORMAT);
    chunk("{\"choices\":[{\"delta\":[]}]}", true, AFD_E_FORMAT);
    chunk("{\"usage\":3}", false, AFD_E_FORMAT);
    chunk("{\"usage\":{\"completion_tokens\":-1}}", false, AFD_E_FORMAT);
    chunk("{\"usage\":{\"completion_tokens\":\"3\"}}", false, AFD_E_FORMAT);
    afd_err err = {0};
    sv_chunk c;
    char nonul[4] = {'{', '"', 'a', '"'}; /* not NUL-terminated: the message copies safely */
    cr_assert_eq(sv_chunk_parse(nonul, 4, false, &c, &err), AFD_E_FORMAT);
    cr_assert(strstr(err.msg, "{\"a\""), "%s", err.msg);
}

/* ---- generation ------------------------------------------------------------------------------ */

Test(serve, dist_parse) {
    sv_dist d;
    afd_err err = {0};
    cr_assert_eq(sv_dist_parse("128", &d, &err), 0);
    cr_assert_eq(d.kind, SV_DIST_FIXED);
    cr_assert_eq(sv_dist_parse("8:64", &d, &err), 0);
    cr_assert_eq(d.kind, SV_DIST_UNIFORM);
    cr_assert_eq(sv_dist_parse("lognorm:200:0.5", &d, &err), 0);
    cr_assert_eq(d.kind, SV_DIST_LOGNORM);
    const char *bad[] = {"", "0", "-3", "1.5", "abc", "9:3", "3:", ":3", "1:2:3", "lognorm:1",
                         "lognorm:0:1", "lognorm:10:9", "lognorm:10:x", "99999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(sv_dist_parse(bad[i], &d, &err), AFD_E_FORMAT, "'%s' accepted", bad[i]);
        cr_assert(strstr(err.msg, "lognorm:mean:sigma"), "%s", err.msg);
    }
}

Test(serve, dist_draws) {
    sv_rng r;
    sv_rng_seed(&r, 7, 0);
    sv_dist u = {SV_DIST_UNIFORM, 3, 5}, l = {SV_DIST_LOGNORM, 200, 0.5};
    int seen[6] = {0};
    double sum = 0;
    for (int i = 0; i < 20000; i++) {
        int x = sv_dist_draw(&u, &r);
        cr_assert(x >= 3 && x <= 5, "%d", x);
        seen[x]++;
        sum += sv_dist_draw(&l, &r);
    }
    cr_assert(seen[3] > 6000 && seen[5] > 6000, "ends %d %d", seen[3], seen[5]);
    cr_assert(fabs(sum / 20000 - 200) < 6, "lognorm mean %.1f, want 200", sum / 20000);
}

Test(serve, arrivals_poisson_and_seeded) {
    sv_rng a, b;
    sv_rng_seed(&a, 42, 0), sv_rng_seed(&b, 42, 0);
    double *t = NULL, *u = NULL;
    int n = sv_arrivals(10, 200, 0, &a, &t), m = sv_arrivals(10, 200, 0, &b, &u);
    cr_assert(n > 1850 && n < 2150, "%d arrivals in 200 s at 10/s", n);
    cr_assert_eq(n, m);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(t[i], u[i]);
        cr_assert(t[i] < 200 && (i == 0 || t[i] >= t[i - 1]));
    }
    free(t), free(u);
    cr_assert_eq(sv_arrivals(10, 0, 25, &a, &t), 25);
    free(t);
    cr_assert_eq(sv_arrivals(INFINITY, 0, 5, &a, &t), 5);
    cr_assert_eq(t[4], 0.0);
    free(t);
    cr_assert_eq(sv_arrivals(INFINITY, 3, 0, &a, &t), 0, "a burst needs a count");
    cr_assert_null(t);
}

Test(serve, bodies_are_json_of_the_drawn_length) {
    sv_rng r;
    sv_rng_seed(&r, 1, 1000);
    sv_body_opts o = {.model = "m\"q", .prompt_len = 300, .max_tokens = 17, .tok_lo = 1000,
                      .tok_hi = 1009};
    char *b = NULL;
    long n = sv_body_build(&o, &r, &b);
    json_error_t je;
    json_t *j = json_loadb(b, (size_t)n, 0, &je);
    cr_assert_not_null(j, "%s: %.80s", je.text, b);
    json_t *p = json_object_get(j, "prompt");
    cr_assert_eq(json_array_size(p), 300);
    for (size_t i = 0; i < 300; i++) {
        json_int_t v = json_integer_value(json_array_get(p, i));
        cr_assert(v >= 1000 && v <= 1009, "%lld", (long long)v);
    }
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "m\"q");
    cr_assert_eq(json_integer_value(json_object_get(j, "max_tokens")), 17);
    cr_assert(json_is_true(json_object_get(j, "ignore_eos")));
    cr_assert(json_is_true(json_object_get(j, "stream")));
    json_decref(j), free(b);
    o.chat = true;
    n = sv_body_build(&o, &r, &b);
    j = json_loadb(b, (size_t)n, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    const char *msg = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "messages"), 0), "content"));
    int words = 1;
    for (const char *c = msg; *c; c++)
        words += *c == ' ';
    cr_assert_eq(words, 300);
    json_decref(j), free(b);
}

/* ---- figures --------------------------------------------------------------------------------- */

Test(serve, pct_nearest_rank_with_zeros) {
    float v[] = {4, 1, 3, 2};
    sv_pct p;
    sv_pct_of(v, 4, 0, &p);
    cr_assert_eq(p.p50, 2.0, "%g", p.p50);
    cr_assert_eq(p.p99, 4.0, "%g", p.p99);
    cr_assert_eq(p.mean, 2.5, "%g", p.mean);
    sv_pct_of(v, 4, 4, &p); /* four zeros below */
    cr_assert_eq(p.p50, 0.0, "%g", p.p50);
    cr_assert_eq(p.p90, 4.0, "%g", p.p90);
    cr_assert_eq(p.mean, 1.25, "%g", p.mean);
    sv_pct_of(v, 0, 0, &p);
    cr_assert(isnan(p.p99) && p.n == 0);
}

static void fake_req(sv_req *q, int idx, int chunks, int tokens, double gap_ms) {
    memset(q, 0, sizeof *q);
    q->idx = idx, q->outcome = SV_OK, q->status = 200, q->usage_seen = true;
    q->t_sched = q->t_send = idx * 0.1;
    q->t_first = q->t_send + 0.050;
    for (int i = 1; i <= chunks; i++) {
        q->n_chunks = i;
        if (i > 1)
            sv_req_gap(q, gap_ms);
    }
    q->t_last = q->t_first + (chunks - 1) * gap_ms / 1e3;
    q->t_end = q->t_last + 0.001;
    q->tokens = tokens;
    q->prompt_tokens = 10;
    strcpy(q->finish, "length");
}

Test(serve, summary_tpot_goodput_and_counts) {
    sv_req q[6];
    fake_req(&q[0], 0, 11, 11, 20); /* one token per chunk, 20 ms */
    fake_req(&q[1], 1, 6, 11, 40);  /* two tokens per chunk: gaps of 40 ms, 5 zeros */
    fake_req(&q[2], 2, 11, 11, 80); /* misses a 50 ms SLA */
    fake_req(&q[3], 3, 0, 0, 0);
    q[3].outcome = SV_REJECTED, q[3].status = 429;
    fake_req(&q[4], 4, 0, 0, 0);
    q[4].outcome = SV_TIMEOUT;
    fake_req(&q[5], 5, 11, 11, 20);
    q[5].warmup = true; /* not counted */
    sv_sla sla = {.tpot_ms = 50};
    sv_summary s;
    sv_summarize(q, 6, &sla, &s);
    cr_assert_eq(s.measured, 5);
    cr_assert_eq(s.completed, 3);
    cr_assert_eq(s.rejected, 1);
    cr_assert_eq(s.rej_429, 1);
    cr_assert_eq(s.errors, 1);
    cr_assert_eq(s.output_tokens, 33);
    cr_assert_eq(s.sla_met, 2);
    cr_assert_float_eq(s.goodput, 2.0 / 3, 1e-9);
    cr_assert_float_eq(s.goodput_of_sent, 2.0 / 5, 1e-9);
    /* per token: 10 x 20, 5 x 40 + 5 x 0, 10 x 80 = 30 samples */
    cr_assert_eq(s.tpot_tok.n, 30);
    cr_assert_float_eq(s.tpot_tok.mean, (200 + 200 + 800) / 30.0, 1e-4);
    cr_assert_eq(s.itl_chunk.n, 25);
    cr_assert_eq(s.tpot_req.n, 3);
    cr_assert_float_eq(s.tpot_req.p50, 20.0, 1e-3); /* 200 ms / 10 and 200 ms / 10 */
    cr_assert_float_eq(s.tpot_req.max, 80.0, 1e-3);
    cr_assert_float_eq(s.ttft.p50, 50.0, 1e-3);
    sla.ttft_ms = 40; /* every TTFT is 50 ms: nothing meets it */
    sv_summarize(q, 6, &sla, &s);
    cr_assert_eq(s.sla_met, 0);
    for (int i = 0; i < 6; i++)
        free(q[i].gaps);
}
