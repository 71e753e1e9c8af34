/* The HTTP front over real sockets on 127.0.0.1: routing (404/405, prefixes), JSON replies,
 * asynchronous replies, keep-alive and pipelining, limits (413, 431), malformed requests (the
 * server keeps serving), request ids, extra headers, HEAD, Expect: 100-continue, chunked
 * bodies, API keys (401, reload), CORS, metrics, start-up errors, and a few requests by curl. */
#include <event2/event.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "common/base/alloc.h"
#include "tests/unit/router/http_util.h"

static th_server ts;

/* ---- handlers (loop thread) ---- */

static void h_echo(rh_req *r, void *ud) {
    char b[64] = "", out[2048];
    size_t blen;
    rh_req_body(r, &blen);
    int brc = rh_req_query_param(r, "b", b, sizeof b);
    const char *xt = rh_req_header(r, "X-Test");
    int n = snprintf(out, sizeof out,
                     "{\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\",\"id\":\"%s\","
                     "\"b\":\"%s\",\"brc\":%d,\"body_len\":%zu,\"x_test\":\"%s\",\"route\":\"%s\","
                     "\"peer_ok\":%d}",
                     rh_req_method(r), rh_req_path(r), rh_req_query(r) ? rh_req_query(r) : "",
                     rh_req_id(r), b, brc, blen, xt ? xt : "", rh_req_route(r),
                     strncmp(rh_req_peer(r), "127.0.0.1:", 10) == 0);
    rh_reply_json(r, 200, out, (size_t)n);
}

static void h_body(rh_req *r, void *ud) {
    size_t len;
    const char *b = rh_req_body(r, &len);
    rh_reply(r, 200, "application/octet-stream", b, len);
}

typedef struct pending {
    rh_req *r;
    struct event *ev;
} pending;

static void async_fire(evutil_socket_t fd, short what, void *arg) {
    pending *p = arg;
    rh_reply_json(p->r, 200, "{\"async\":true}", 14);
    event_free(p->ev);
    free(p);
}

static void h_async(rh_req *r, void *ud) {
    th_server *t = ud;
    pending *p = xcalloc(1, sizeof *p);
    p->r = r;
    p->ev = evtimer_new(t->base, async_fire, p);
    struct timeval tv = {0, 100000};
    evtimer_add(p->ev, &tv);
}

static void h_limited(rh_req *r, void *ud) {
    int a = rh_set_header(r, "Retry-After", "7");
    int b = rh_set_header(r, "Content-Length", "1");
    int c = rh_set_header(r, "X-Bad", "a\r\nInjected: 1");
    int d = rh_set_header(r, "Bad Name", "x");
    rh_reply_error(r, 429, "rate_limit_exceeded", "rate_limit_exceeded", NULL,
                   "slow down (%d %d %d %d)", a, b, c, d);
}

static void h_health(rh_req *r, void *ud) {
    rh_reply(r, 200, "text/plain", "ok\n", 3);
}

static void h_metrics(rh_req *r, void *ud) {
    th_server *t = ud;
    char *text = NULL;
    size_t len = 0;
    afd_metrics_render(t->reg, &text, &len);
    rh_reply(r, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

static void h_reload(rh_req *r, void *ud) {
    th_server *t = ud;
    afd_err e = {0};
    if (rh_keys_reload(t->srv, &e) != 0) {
        rh_reply_error(r, 500, NULL, "reload_failed", NULL, "%s", e.msg);
        return;
    }
    char out[64];
    int n = snprintf(out, sizeof out, "{\"keys\":%d}", rh_keys_count(t->srv));
    rh_reply_json(r, 200, out, (size_t)n);
}

static void h_bad_status(rh_req *r, void *ud) {
    rh_reply_json(r, 42, "{}", 2);
}

static void h_nocontent(rh_req *r, void *ud) {
    rh_reply(r, 204, "text/plain", "ignored", 7);
}

static void routes(th_server *t) {
    rh_server *s = t->srv;
    cr_assert_eq(rh_route(s, RH_GET | RH_POST, "/echo", 0, h_echo, t), 0);
    cr_assert_eq(rh_route(s, RH_POST, "/body", 0, h_body, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/async", 0, h_async, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/limited", 0, h_limited, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/v1/models/*", 0, h_echo, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/v1/models/special", 0, h_health, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/health", RH_PUBLIC, h_health, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/metrics", RH_PUBLIC, h_metrics, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/reload", RH_PUBLIC, h_reload, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/bad-status", 0, h_bad_status, t), 0);
    cr_assert_eq(rh_route(s, RH_DELETE, "/nocontent", 0, h_nocontent, t), 0);
}

static rh_config base_cfg(void) {
    rh_config c = {0};
    c.max_header_bytes = 4096;
    c.max_body_bytes = 1 << 20;
    c.read_timeout_ms = 2000;
    c.write_timeout_ms = 2000;
    c.idle_timeout_ms = 3000;
    return c;
}

static void start_plain(void) {
    th_start(&ts, base_cfg(), routes);
}
static void stop_all(void) {
    th_stop(&ts);
}

static char *get(const char *path) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    return th_ask(ts.port, req);
}

TestSuite(http, .init = start_plain, .fini = stop_all, .timeout = 20);

Test(http, routing) {
    char *r = get("/echo?a=1&b=x%20y");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(r, "\r\nContent-Type: application/json\r\n"), "%s", r);
    cr_assert(strstr(th_body(r), "\"method\":\"GET\",\"path\":\"/echo\",\"query\":\"a=1&b=x%20y\""),
              "%s", r);
    cr_assert(strstr(th_body(r), "\"b\":\"x y\",\"brc\":3"), "%s", r);
    cr_assert(strstr(th_body(r), "\"peer_ok\":1"), "%s", r);
    free(r);

    r = get("/nope");
    cr_assert_eq(th_status(r), 404, "%s", r);
    cr_assert_str_eq(th_body(r), "{\"error\":{\"message\":\"Invalid URL (GET /nope)\","
                                 "\"type\":\"invalid_request_error\",\"param\":null,"
                                 "\"code\":null}}\n");
    free(r);

    r = th_ask(ts.port, "DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(th_status(r), 405, "%s", r);
    char allow[64];
    cr_assert(th_header(r, "Allow", allow, sizeof allow), "%s", r);
    cr_assert_str_eq(allow, "GET, HEAD, POST");
    cr_assert(strstr(th_body(r), "\"code\":\"method_not_allowed\""), "%s", r);
    free(r);

    r = th_ask(ts.port, "PROPFIND /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 405, "%s", r);
    free(r);
}

Test(http, prefix_routes) {
    char *r = get("/v1/models/step3-mini");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(th_body(r), "\"path\":\"/v1/models/step3-mini\""), "%s", r);
    cr_assert(strstr(th_body(r), "\"route\":\"/v1/models/*\""), "%s", r);
    free(r);
    r = get("/v1/models/special");
    cr_assert_str_eq(th_body(r), "ok\n", "exact beats prefix: %s", r);
    free(r);
    r = get("/v1/models/");
    cr_assert_eq(th_status(r), 404, "the prefix alone does not match: %s", r);
    free(r);
    r = get("/v1/models");
    cr_assert_eq(th_status(r), 404, "%s", r);
    free(r);
}

Test(http, json_and_status_rules) {
    char *r = get("/health");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(r, "\r\nContent-Length: 3\r\n"), "%s", r);
    cr_assert(strstr(r, "\r\nConnection: close\r\n"), "%s", r);
    cr_assert(strstr(r, "\r\nDate: "), "%s", r);
    cr_assert_str_eq(th_body(r), "ok\n");
    free(r);
    r = get("/bad-status");
    cr_assert_eq(th_status(r), 500, "status 42 becomes 500: %s", r);
    free(r);
    r = th_ask(ts.port, "DELETE /nocontent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 204, "%s", r);
    cr_assert_str_eq(th_body(r), "", "204 has no body: %s", r);
    cr_assert_null(strstr(r, "Content-Length"), "%s", r);
    free(r);
}

Test(http, async_reply_after_timer) {
    uint64_t t0 = afd_now_ns();
    char *r = get("/async");
    double ms = (double)(afd_now_ns() - t0) * 1e-6;
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert_str_eq(th_body(r), "{\"async\":true}");
    cr_assert_geq(ms, 95.0, "replied after %.1f ms, the timer is 100 ms", ms);
    free(r);
}

Test(http, keep_alive_two_requests_one_connection) {
    int fd = th_connect(ts.port);
    th_resp a, b;
    th_sends(fd, "GET /echo?b=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp_read(fd, &a, 0);
    cr_assert_eq(a.status, 200, "%s", a.head);
    cr_assert_null(strstr(a.head, "Connection: close"), "%s", a.head);
    th_sends(fd, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    th_resp_read(fd, &b, 0);
    cr_assert_eq(b.status, 200, "%s", b.head);
    cr_assert_str_eq(b.body, "hello");
    free(a.body);
    free(b.body);
    close(fd);
    char *m = get("/metrics");
    cr_assert(strstr(m, "afd_router_http_connections_total 2\n"), "two connections: %s", m);
    cr_assert(strstr(m, "afd_router_http_requests_total{route=\"/echo\",code=\"200\"} 1\n"), "%s",
              m);
    cr_assert(strstr(m, "afd_router_http_requests_total{route=\"/body\",code=\"200\"} 1\n"), "%s",
              m);
    free(m);
}

Test(http, pipelined_requests_answer_in_order) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                 "\r\nGET /echo?b=third HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp a, b, c;
    th_resp_read(fd, &a, 0);
    th_resp_read(fd, &b, 0);
    th_resp_read(fd, &c, 0);
    cr_assert_str_eq(a.body, "{\"async\":true}", "first, though it waits 100 ms");
    cr_assert_str_eq(b.body, "abc");
    cr_assert(strstr(c.body, "\"b\":\"third\""), "%s", c.body);
    free(a.body);
    free(b.body);
    free(c.body);
    close(fd);
}

Test(http, http10_closes) {
    char *r = th_ask(ts.port, "GET /health HTTP/1.0\r\n\r\n");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(r, "Connection: close"), "%s", r);
    free(r);
}

Test(http, body_over_limit_413) {
    int fd = th_connect(ts.port);
    th_sends(fd, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n");
    char chunk[8192];
    memset(chunk, 'x', sizeof chunk);
    th_send(fd, chunk, sizeof chunk); /* the server answers without reading it all */
    char *r = th_read_all(fd, NULL);
    close(fd);
    cr_assert_eq(th_status(r), 413, "%s", r);
    cr_assert(strstr(r, "Connection: close"), "%s", r);
    cr_assert_str_eq(th_body(r), "{\"error\":{\"message\":\"request body is 2097152 bytes, over "
                                 "the limit of 1048576 bytes\",\"type\":\"invalid_request_error\","
                                 "\"param\":null,\"code\":\"request_too_large\"}}\n");
    free(r);

    /* chunked: the limit is checked as chunk sizes arrive */
    r = th_ask(ts.port, "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "100001\r\n");
    cr_assert_eq(th_status(r), 413, "%s", r);
    cr_assert(strstr(th_body(r), "\"code\":\"request_too_large\""), "%s", r);
    free(r);

    r = get("/metrics");
    cr_assert(strstr(r, "afd_router_http_limit_total{limit=\"body_bytes\"} 2\n"), "%s", r);
    free(r);
}

Test(http, huge_headers_431) {
    char *req = malloc(8192);
    int n = snprintf(req, 8192, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'a', 5000);
    strcpy(req + n + 5000, "\r\n\r\n");
    char *r = th_ask(ts.port, req);
    cr_assert_eq(th_status(r), 431, "%s", r);
    cr_assert(strstr(th_body(r), "\"code\":\"request_headers_too_large\""), "%s", r);
    cr_assert(strstr(th_body(r), "4096 bytes"), "the message states the limit: %s", r);
    free(r);
    free(req);
    /* too many header lines */
    char many[4096];
    n = snprintf(many, sizeof many, "GET /echo HTTP/1.1\r\nHost: t\r\n");
    for (int k = 0; k < 120; k++)
        n += snprintf(many + n, sizeof many - (size_t)n, "X-%d: 1\r\n", k);
    snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    r = th_ask(ts.port, many);
    cr_assert_eq(th_status(r), 431, "%s", r);
    free(r);
}

Test(http, malformed_requests_400_and_still_serving) {
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET /echo HTTP/9.9\r\n\r\n", 505},
        {"GET echo HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"GET /echo HTTP/1.1\r\n\r\n", 400},
        {"GET /echo HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400},
        {"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
         400},
        {"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"\x16\x03\x01\x02\x10\x01\xfc\x03\x03\r\n\r\n", 400},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *r = th_ask(ts.port, cases[k].req);
        cr_assert_eq(th_status(r), cases[k].status, "case %zu: %s", k, r);
        cr_assert(strstr(th_body(r), "{\"error\":{\"message\":\""), "case %zu: %s", k, r);
        cr_assert(strstr(r, "Connection: close"), "case %zu: %s", k, r);
        free(r);
    }
    char *r = get("/health");
    cr_assert_eq(th_status(r), 200, "still serving: %s", r);
    free(r);
}

Test(http, request_id_echoed_and_generated) {
    char *r = th_ask(ts.port, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n"
                              "Connection: close\r\n\r\n");
    char id[80];
    cr_assert(th_header(r, "X-Request-Id", id, sizeof id), "%s", r);
    cr_assert_str_eq(id, "abc-123");
    cr_assert(strstr(th_body(r), "\"id\":\"abc-123\""), "handlers see it: %s", r);
    free(r);
    char req[256];
    snprintf(req, sizeof req,
             "GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: %065d\r\n"
             "Connection: close\r\n\r\n",
             7);
    r = th_ask(ts.port, req);
    cr_assert(th_header(r, "X-Request-Id", id, sizeof id), "%s", r);
    cr_assert_eq(strncmp(id, "req-", 4), 0, "65 chars are refused, one is made: %s", id);
    cr_assert_eq(strlen(id), 36, "%s", id);
    char in_body[64];
    snprintf(in_body, sizeof in_body, "\"id\":\"%s\"", id);
    cr_assert(strstr(th_body(r), in_body), "%s", r);
    free(r);
    r = get("/echo");
    char id2[80];
    cr_assert(th_header(r, "X-Request-Id", id2, sizeof id2), "%s", r);
    cr_assert_str_neq(id, id2);
    free(r);
    r = th_ask(ts.port, "NOPE\r\n\r\n");
    cr_assert(th_header(r, "X-Request-Id", id, sizeof id), "even a 400 has one: %s", r);
    free(r);
}

Test(http, extra_headers) {
    char *r = get("/limited");
    cr_assert_eq(th_status(r), 429, "%s", r);
    char v[32];
    cr_assert(th_header(r, "Retry-After", v, sizeof v), "%s", r);
    cr_assert_str_eq(v, "7");
    char want[128];
    snprintf(want, sizeof want, "slow down (0 %d %d %d)", AFD_E_FORMAT, AFD_E_FORMAT, AFD_E_FORMAT);
    cr_assert(strstr(th_body(r), want), "%s", r);
    cr_assert(strstr(th_body(r), "\"type\":\"rate_limit_exceeded\""), "%s", r);
    cr_assert_null(strstr(r, "Injected"), "%s", r);
    free(r);
}

Test(http, head_request) {
    int fd = th_connect(ts.port);
    th_sends(fd, "HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp a;
    th_resp_read(fd, &a, 1);
    cr_assert_eq(a.status, 200, "%s", a.head);
    cr_assert(strstr(a.head, "Content-Length: 3\r\n"), "%s", a.head);
    free(a.body);
    /* the next response starts right after the head: no body was sent */
    th_sends(fd, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp_read(fd, &a, 0);
    cr_assert_eq(a.status, 200, "%s", a.head);
    cr_assert_str_eq(a.body, "ok\n");
    free(a.body);
    close(fd);
}

Test(http, expect_continue_and_chunked_body) {
    int fd = th_connect(ts.port);
    th_sends(fd, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                 "Expect: 100-continue\r\n\r\n");
    char buf[64] = "";
    ssize_t n = recv(fd, buf, 25, MSG_WAITALL);
    cr_assert_eq(n, 25);
    cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
    th_sends(fd, "ping");
    th_resp a;
    th_resp_read(fd, &a, 0);
    cr_assert_eq(a.status, 200, "%s", a.head);
    cr_assert_str_eq(a.body, "ping");
    free(a.body);
    th_sends(fd, "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n");
    usleep(20000);
    th_sends(fd, "4;x=y\r\ndefg\r\n0\r\nTrailer: 1\r\n\r\n");
    th_resp_read(fd, &a, 0);
    cr_assert_str_eq(a.body, "abcdefg");
    free(a.body);
    close(fd);
}

Test(http, curl_requests) {
    if (!th_have("curl")) cr_skip("curl is not installed");
    char cmd[512];
    int rc;
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 5 -H 'X-Test: from-curl' -d '{\"a\":1}' "
             "-H 'Content-Type: application/json' 'http://127.0.0.1:%d/echo?b=c'",
             ts.port);
    char *out = th_run(cmd, &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "\"method\":\"POST\""), "%s", out);
    cr_assert(strstr(out, "\"body_len\":7"), "%s", out);
    cr_assert(strstr(out, "\"x_test\":\"from-curl\""), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 5 -o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects}' "
             "http://127.0.0.1:%d/nope http://127.0.0.1:%d/health",
             ts.port, ts.port);
    out = th_run(cmd, &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "404 1200 0", "second request reuses the connection: %s", out);
    free(out);
}

Test(http, metrics) {
    free(get("/health"));
    free(get("/nope"));
    char *m = get("/metrics");
    cr_assert(strstr(m, "afd_router_http_requests_total{route=\"/health\",code=\"200\"} 1\n"), "%s",
              m);
    cr_assert(strstr(m, "afd_router_http_requests_total{route=\"none\",code=\"404\"} 1\n"), "%s",
              m);
    cr_assert(strstr(m, "afd_router_http_connections_open 1\n"), "%s", m);
    cr_assert(strstr(m, "afd_router_http_received_bytes_total "), "%s", m);
    cr_assert(strstr(m, "afd_router_http_sent_bytes_total "), "%s", m);
    cr_assert_null(strstr(m, "afd_router_http_received_bytes_total 0\n"), "%s", m);
    free(m);
}

/* ---- API keys ---- */

static char keys_path[64];

static void write_keys(const char *text) {
    int fd = open(keys_path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void start_keys(void) {
    snprintf(keys_path, sizeof keys_path, "/tmp/afd-http-keys-%d", getpid());
    write_keys("# test keys\nsk-test-1\n\n");
    rh_config c = base_cfg();
    c.keys_file = keys_path;
    th_start(&ts, c, routes);
}

static void stop_keys(void) {
    th_stop(&ts);
    unlink(keys_path);
}

static char *get_key(const char *path, const char *key) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s%s%sConnection: close\r\n\r\n", path,
             key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
    return th_ask(ts.port, req);
}

TestSuite(http_auth, .init = start_keys, .fini = stop_keys, .timeout = 20);

Test(http_auth, keys) {
    char *r = get_key("/echo", NULL);
    cr_assert_eq(th_status(r), 401, "%s", r);
    cr_assert(strstr(th_body(r), "\"type\":\"invalid_request_error\",\"param\":null,"
                                 "\"code\":\"invalid_api_key\""),
              "%s", r);
    cr_assert(strstr(r, "WWW-Authenticate: Bearer"), "%s", r);
    free(r);
    r = get_key("/echo", "sk-test-2");
    cr_assert_eq(th_status(r), 401, "%s", r);
    cr_assert(strstr(th_body(r), "Incorrect API key"), "%s", r);
    free(r);
    r = get_key("/echo", "sk-test-1");
    cr_assert_eq(th_status(r), 200, "%s", r);
    free(r);
    r = get_key("/health", NULL);
    cr_assert_eq(th_status(r), 200, "public route: %s", r);
    free(r);
    r = get_key("/nope", NULL);
    cr_assert_eq(th_status(r), 401, "no probing of paths without a key: %s", r);
    free(r);
    r = get_key("/nope", "sk-test-1");
    cr_assert_eq(th_status(r), 404, "%s", r);
    free(r);
    /* a POST refused before its body is read */
    r = th_ask(ts.port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc");
    cr_assert_eq(th_status(r), 401, "%s", r);
    free(r);
}

Test(http_auth, reload) {
    write_keys("sk-new\n");
    char *r = get_key("/reload", NULL);
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert_str_eq(th_body(r), "{\"keys\":1}");
    free(r);
    r = get_key("/echo", "sk-test-1");
    cr_assert_eq(th_status(r), 401, "old key gone: %s", r);
    free(r);
    r = get_key("/echo", "sk-new");
    cr_assert_eq(th_status(r), 200, "%s", r);
    free(r);
    write_keys("# nothing\n");
    r = get_key("/reload", NULL);
    cr_assert_eq(th_status(r), 500, "%s", r);
    cr_assert(strstr(th_body(r), "no keys"), "%s", r);
    free(r);
    r = get_key("/echo", "sk-new");
    cr_assert_eq(th_status(r), 200, "a failed reload keeps the keys: %s", r);
    free(r);
}

/* ---- CORS ---- */

static void start_cors(void) {
    static const char *const origins[] = {"https://app.example", NULL};
    rh_config c = base_cfg();
    c.cors_origins = origins;
    th_start(&ts, c, routes);
}

TestSuite(http_cors, .init = start_cors, .fini = stop_all, .timeout = 20);

Test(http_cors, preflight_and_headers) {
    char *r = th_ask(ts.port, "OPTIONS /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
                              "Access-Control-Request-Method: POST\r\n"
                              "Access-Control-Request-Headers: authorization, x-stainless-os\r\n"
                              "Connection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 204, "%s", r);
    char v[128];
    cr_assert(th_header(r, "Access-Control-Allow-Origin", v, sizeof v), "%s", r);
    cr_assert_str_eq(v, "https://app.example");
    cr_assert(th_header(r, "Access-Control-Allow-Methods", v, sizeof v), "%s", r);
    cr_assert_str_eq(v, "GET, HEAD, POST, OPTIONS");
    cr_assert(th_header(r, "Access-Control-Allow-Headers", v, sizeof v), "%s", r);
    cr_assert_str_eq(v, "authorization, x-stainless-os");
    free(r);

    r = th_ask(ts.port, "OPTIONS /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n"
                        "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 403, "%s", r);
    cr_assert_null(strstr(r, "Access-Control-Allow-Origin"), "%s", r);
    free(r);

    r = th_ask(ts.port, "GET /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
                        "Connection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(th_header(r, "Access-Control-Allow-Origin", v, sizeof v), "%s", r);
    cr_assert_str_eq(v, "https://app.example");
    cr_assert(strstr(r, "Vary: Origin"), "%s", r);
    cr_assert(strstr(r, "Access-Control-Expose-Headers: X-Request-Id"), "%s", r);
    free(r);
}

Test(http, cors_off_by_default) {
    char *r = th_ask(ts.port, "GET /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
                              "Connection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert_null(strstr(r, "Access-Control"), "%s", r);
    free(r);
    r = th_ask(ts.port, "OPTIONS /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
                        "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n");
    cr_assert_eq(th_status(r), 405, "%s", r);
    free(r);
}

/* ---- start-up and registration errors (no loop thread) ---- */

static void noop(rh_req *r, void *ud) {
    rh_reply(r, 200, NULL, NULL, 0);
}

Test(http_setup, config_errors) {
    struct event_base *base = event_base_new();
    afd_err e = {0};
    rh_config c = {.port = 70000};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "70000"), "%s", e.msg);
    c = (rh_config){.tls_cert = "/tmp/x.pem"};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "both"), "%s", e.msg);
    c = (rh_config){.keys_file = "/nonexistent/afd-keys"};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "/nonexistent/afd-keys"), "%s", e.msg);
    c = (rh_config){.max_header_bytes = 10};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "max header bytes 10"), "%s", e.msg);
    c = (rh_config){.read_timeout_ms = -5};
    cr_assert_null(rh_server_start(base, &c, &e));
    c = (rh_config){.addr = "not an address!"};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "not an address!"), "%s", e.msg);

    c = (rh_config){0};
    rh_server *a = rh_server_start(base, &c, &e);
    cr_assert_not_null(a, "%s", e.msg);
    c.port = rh_server_port(a);
    cr_assert_null(rh_server_start(base, &c, &e), "the port is taken");
    cr_assert(strstr(e.msg, "cannot listen"), "%s", e.msg);

    cr_assert_eq(rh_route(a, RH_GET, "/x", 0, noop, NULL), 0);
    cr_assert_eq(rh_route(a, RH_GET, "/x", 0, noop, NULL), AFD_E_MISMATCH);
    cr_assert_eq(rh_route(a, RH_HEAD, "/x", 0, noop, NULL), AFD_E_MISMATCH, "GET implies HEAD");
    cr_assert_eq(rh_route(a, RH_POST, "/x", 0, noop, NULL), 0);
    cr_assert_eq(rh_route(a, RH_GET, "x", 0, noop, NULL), AFD_E_FORMAT);
    cr_assert_eq(rh_route(a, RH_GET, "/a*b", 0, noop, NULL), AFD_E_FORMAT);
    cr_assert_eq(rh_route(a, RH_GET, "/a/*/b", 0, noop, NULL), AFD_E_FORMAT);
    cr_assert_eq(rh_route(a, RH_GET, "/a?b", 0, noop, NULL), AFD_E_FORMAT);
    cr_assert_eq(rh_route(a, 0, "/y", 0, noop, NULL), AFD_E_FORMAT);
    cr_assert_eq(rh_route(a, RH_GET, "/y", 0, NULL, NULL), AFD_E_FORMAT);
    afd_err ke = {0};
    cr_assert_eq(rh_keys_reload(a, &ke), AFD_E_STATE);
    cr_assert_eq(rh_keys_count(a), 0);
    rh_server_free(a);
    rh_server_free(NULL);
    event_base_free(base);
}
