/* Streams and misbehaving clients: an SSE stream read event by event (each event released by
 * the test, so it cannot arrive early), event framing, HTTP/1.0 streams, disconnects (mid-
 * stream and while a handler waits: on_close exactly once; without on_close the handle turns
 * "gone" and its reply returns AFD_E_PEER), a client that stops reading (write timeout, the
 * backpressure figure), slow and idle clients cut while others are served, the connection
 * limit, rh_abort, and draining. */
#include <event2/event.h>

#include "common/base/alloc.h"
#include "tests/unit/router/http_util.h"

static th_server ts;

/* Test-thread <-> loop-thread state. */
static atomic_int gate;         /* events the stream may send */
static atomic_int closes;       /* on_close calls */
static atomic_int close_peer;   /* rh_sse_send inside on_close returned AFD_E_PEER */
static atomic_long max_pending; /* largest rh_sse_send result of the flood */
static atomic_int zombie_rc = 1, zombie_gone = -1;
static rh_req *zombie; /* loop thread only */

enum { GATED, FLOOD };

typedef struct stream {
    rh_req *r;
    struct event *ev;
    int mode, sent, n;
    long last;
} stream;

static void stream_free(stream *st) {
    event_free(st->ev);
    free(st);
}

static void on_stream_close(rh_req *r, void *arg) {
    if (rh_sse_send(r, "x", 1) == AFD_E_PEER && rh_req_gone(r)) atomic_fetch_add(&close_peer, 1);
    atomic_fetch_add(&closes, 1);
    stream_free(arg);
}

static void stream_tick(evutil_socket_t fd, short what, void *arg) {
    stream *st = arg;
    char ev[64];
    if (st->mode == FLOOD) {
        static char big[16384];
        memset(big, 'f', sizeof big);
        if (st->last < (4l << 20)) st->last = rh_sse_send(st->r, big, sizeof big);
        if (st->last > atomic_load(&max_pending)) atomic_store(&max_pending, st->last);
        return;
    }
    while (st->sent < st->n && st->sent < atomic_load(&gate)) {
        int len = snprintf(ev, sizeof ev, "{\"i\":%d}", st->sent++);
        rh_sse_send(st->r, ev, (size_t)len);
    }
    if (st->sent == st->n) {
        rh_sse_send(st->r, "[DONE]", 6);
        rh_sse_end(st->r);
        stream_free(st);
    }
}

static void start_stream(rh_req *r, int mode) {
    char n[16] = "1000000";
    rh_req_query_param(r, "n", n, sizeof n);
    stream *st = xcalloc(1, sizeof *st);
    st->r = r;
    st->mode = mode;
    st->n = atoi(n);
    rh_sse_start(r);
    rh_on_close(r, on_stream_close, st);
    st->ev = event_new(ts.base, -1, EV_PERSIST, stream_tick, st);
    struct timeval tv = {0, 2000};
    event_add(st->ev, &tv);
}

static void h_stream(rh_req *r, void *ud) {
    start_stream(r, GATED);
}
static void h_flood(rh_req *r, void *ud) {
    start_stream(r, FLOOD);
}

static void on_wait_close(rh_req *r, void *arg) {
    atomic_fetch_add(&closes, 1);
}

static void h_wait(rh_req *r, void *ud) {
    rh_on_close(r, on_wait_close, NULL);
}

static void h_wait_noclose(rh_req *r, void *ud) {
    zombie = r;
}

static void h_finish_zombie(rh_req *r, void *ud) {
    if (zombie) {
        atomic_store(&zombie_gone, rh_req_gone(zombie));
        atomic_store(&zombie_rc, rh_reply_json(zombie, 200, "{}", 2));
        zombie = NULL;
    }
    rh_reply_json(r, 200, "{}", 2);
}

static void h_lines(rh_req *r, void *ud) {
    rh_sse_start(r);
    rh_sse_send(r, "line1\nline2\r\nline3", 18);
    rh_sse_send(r, "", 0);
    rh_sse_end(r);
}

static void h_abort(rh_req *r, void *ud) {
    rh_sse_start(r);
    rh_sse_send(r, "one", 3);
    rh_abort(r);
}

static atomic_int misuse[4];

static void h_misuse(rh_req *r, void *ud) {
    atomic_store(&misuse[0], (int)rh_sse_send(r, "x", 1));
    atomic_store(&misuse[1], rh_sse_start(r));
    atomic_store(&misuse[2], rh_sse_start(r));
    atomic_store(&misuse[3], rh_reply_json(r, 200, "{}", 2)); /* ends the stream */
}

static void h_stats(rh_req *r, void *ud) {
    char out[64];
    int n = snprintf(out, sizeof out, "{\"open\":%d,\"conns\":%d}", rh_open_requests(ts.srv) - 1,
                     rh_open_connections(ts.srv));
    rh_reply_json(r, 200, out, (size_t)n);
}

static void h_drain(rh_req *r, void *ud) {
    rh_stop_accepting(ts.srv);
    rh_reply_json(r, 200, "{}", 2);
}

static void h_metrics(rh_req *r, void *ud) {
    char *text = NULL;
    size_t len = 0;
    afd_metrics_render(ts.reg, &text, &len);
    rh_reply(r, 200, "text/plain", text, len);
    free(text);
}

static void routes(th_server *t) {
    rh_server *s = t->srv;
    cr_assert_eq(rh_route(s, RH_GET, "/stream", 0, h_stream, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/flood", 0, h_flood, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/wait", 0, h_wait, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/wait-noclose", 0, h_wait_noclose, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/finish-zombie", 0, h_finish_zombie, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/lines", 0, h_lines, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/abort", 0, h_abort, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/misuse", 0, h_misuse, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/stats", 0, h_stats, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/drain", 0, h_drain, t), 0);
    cr_assert_eq(rh_route(s, RH_GET, "/metrics", 0, h_metrics, t), 0);
}

static void start(void) {
    rh_config c = {0};
    c.read_timeout_ms = 300;
    c.write_timeout_ms = 300;
    c.idle_timeout_ms = 500;
    c.max_connections = 4;
    th_start(&ts, c, routes);
}

static void stop(void) {
    th_stop(&ts);
}

TestSuite(http_stream, .init = start, .fini = stop, .timeout = 20);

static char *get(const char *path) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    return th_ask(ts.port, req);
}

/* Reads one chunk of a chunked body (its data), NUL-terminated into out. */
static size_t read_chunk(int fd, char *out, size_t cap) {
    char line[32];
    th_recv_line(fd, line, sizeof line);
    size_t n = strtoul(line, NULL, 16);
    cr_assert_lt(n, cap, "chunk of %zu bytes", n);
    th_recv_exact(fd, out, n);
    out[n] = 0;
    th_recv_line(fd, line, sizeof line);
    cr_assert_str_eq(line, "", "chunk not followed by CRLF");
    return n;
}

static int readable_within(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

Test(http_stream, sse_events_arrive_one_by_one) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /stream?n=4 HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp head;
    th_recv_head(fd, &head);
    cr_assert_eq(head.status, 200, "%s", head.head);
    cr_assert(strstr(head.head, "Content-Type: text/event-stream\r\n"), "%s", head.head);
    cr_assert(strstr(head.head, "Cache-Control: no-cache\r\n"), "%s", head.head);
    cr_assert(strstr(head.head, "Transfer-Encoding: chunked\r\n"), "%s", head.head);
    char ev[256], want[64];
    for (int i = 0; i < 4; i++) {
        cr_assert_not(readable_within(fd, 30), "event %d arrived before it was released", i);
        atomic_store(&gate, i + 1);
        read_chunk(fd, ev, sizeof ev);
        snprintf(want, sizeof want, "data: {\"i\":%d}\n\n", i);
        cr_assert_str_eq(ev, want);
    }
    read_chunk(fd, ev, sizeof ev);
    cr_assert_str_eq(ev, "data: [DONE]\n\n");
    char line[16];
    th_recv_line(fd, line, sizeof line);
    cr_assert_str_eq(line, "0", "last chunk");
    th_recv_line(fd, line, sizeof line);
    /* the connection stays usable */
    th_sends(fd, "GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp r;
    th_resp_read(fd, &r, 0);
    cr_assert_str_eq(r.body, "{\"open\":0,\"conns\":1}");
    free(r.body);
    close(fd);
    cr_assert_eq(atomic_load(&closes), 0, "a finished stream does not call on_close");
}

Test(http_stream, event_framing_and_http10) {
    char *r = get("/lines");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(th_body(r), "data: line1\ndata: line2\ndata: line3\n\n"), "%s", r);
    cr_assert(strstr(th_body(r), "\r\n8\r\ndata: \n\n\r\n0\r\n\r\n"), "empty event: %s", r);
    free(r);
    r = th_ask(ts.port, "GET /lines HTTP/1.0\r\n\r\n");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert_null(strstr(r, "Transfer-Encoding"), "%s", r);
    cr_assert(strstr(r, "Connection: close"), "%s", r);
    cr_assert_str_eq(th_body(r), "data: line1\ndata: line2\ndata: line3\n\ndata: \n\n");
    free(r);
}

Test(http_stream, disconnect_mid_stream_fires_on_close_once) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp head;
    th_recv_head(fd, &head);
    atomic_store(&gate, 2);
    char ev[64];
    read_chunk(fd, ev, sizeof ev);
    cr_assert_str_eq(ev, "data: {\"i\":0}\n\n");
    close(fd);
    cr_assert(th_wait_eq(&closes, 1, 3000), "on_close ran %d times", atomic_load(&closes));
    atomic_store(&gate, 1000); /* nothing may be sent to the gone request */
    usleep(100000);
    cr_assert_eq(atomic_load(&closes), 1, "exactly once");
    cr_assert_eq(atomic_load(&close_peer), 1, "inside on_close the handle answers AFD_E_PEER");
    char *r = get("/stats");
    cr_assert_str_eq(th_body(r), "{\"open\":0,\"conns\":1}", "%s", r);
    free(r);
    r = get("/metrics");
    cr_assert(strstr(r, "afd_router_http_requests_total{route=\"/stream\",code=\"499\"} 1\n"), "%s",
              r);
    free(r);
}

Test(http_stream, disconnect_while_handler_waits) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
    usleep(50000);
    cr_assert_eq(atomic_load(&closes), 0);
    close(fd);
    cr_assert(th_wait_eq(&closes, 1, 3000), "on_close ran %d times", atomic_load(&closes));
    usleep(50000);
    cr_assert_eq(atomic_load(&closes), 1);
}

Test(http_stream, gone_handle_without_on_close) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /wait-noclose HTTP/1.1\r\nHost: t\r\n\r\n");
    usleep(50000);
    close(fd);
    char *r = NULL;
    for (int k = 0; k < 100; k++) { /* until the server has seen the close */
        free(r);
        r = get("/stats");
        if (strstr(th_body(r), "\"open\":0")) break;
        usleep(10000);
    }
    cr_assert_str_eq(th_body(r), "{\"open\":0,\"conns\":1}", "%s", r);
    free(r);
    free(get("/finish-zombie"));
    cr_assert_eq(atomic_load(&zombie_gone), 1);
    cr_assert_eq(atomic_load(&zombie_rc), AFD_E_PEER, "reply on a gone handle: %d",
                 atomic_load(&zombie_rc));
}

Test(http_stream, reader_that_stops_is_cut_by_write_timeout) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ts.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    th_sends(fd, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    /* never read: the kernel buffers fill, then the server's output, then 300 ms pass */
    cr_assert(th_wait_eq(&closes, 1, 10000), "the flood was not cut (closes %d)",
              atomic_load(&closes));
    long mp = atomic_load(&max_pending);
    cr_assert_gt(mp, 16384, "rh_sse_send reported %ld bytes waiting", mp);
    char *r = get("/metrics");
    cr_assert(strstr(r, "afd_router_http_limit_total{limit=\"write_timeout\"} 1\n"), "%s", r);
    free(r);
    close(fd);
}

Test(http_stream, slow_client_cut_while_others_are_served) {
    int slow = th_connect(ts.port);
    th_sends(slow, "GET /stats HTTP/1.1\r\nHo");
    uint64_t t0 = afd_now_ns();
    char *r = get("/stats");
    double ms = (double)(afd_now_ns() - t0) * 1e-6;
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert_lt(ms, 250.0, "the other client waited %.0f ms", ms);
    free(r);
    r = th_read_all(slow, NULL);
    ms = (double)(afd_now_ns() - t0) * 1e-6;
    cr_assert_eq(th_status(r), 408, "%s", r);
    cr_assert(strstr(th_body(r), "\"code\":\"request_timeout\""), "%s", r);
    cr_assert_lt(ms, 2500.0, "cut after %.0f ms (timeout 300 ms)", ms);
    free(r);
    close(slow);
}

Test(http_stream, trickling_client_cut_at_the_request_deadline) {
    int fd = th_connect(ts.port);
    const char *req = "GET /stats HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    uint64_t t0 = afd_now_ns();
    for (size_t i = 0; req[i] && !readable_within(fd, 30); i++)
        send(fd, req + i, 1, MSG_NOSIGNAL); /* one byte every 30 ms never completes */
    char *r = th_read_all(fd, NULL);
    double ms = (double)(afd_now_ns() - t0) * 1e-6;
    cr_assert_eq(th_status(r), 408, "%s", r);
    cr_assert_lt(ms, 1500.0, "cut after %.0f ms although bytes kept coming", ms);
    free(r);
    close(fd);
}

/* Waits for the server to close fd; returns the milliseconds since t0 (nothing may arrive). */
static double closed_after(int fd, uint64_t t0) {
    size_t n = 99;
    char *r = th_read_all(fd, &n);
    cr_assert_eq(n, 0, "nothing is sent to an idle connection: %s", r);
    free(r);
    return (double)(afd_now_ns() - t0) * 1e-6;
}

Test(http_stream, idle_connections_closed) {
    int fd = th_connect(ts.port);
    double ms = closed_after(fd, afd_now_ns());
    cr_assert(ms > 250.0 && ms < 3000.0,
              "no first request: closed after %.0f ms, want the "
              "read timeout (300)",
              ms);
    close(fd);
    fd = th_connect(ts.port);
    th_sends(fd, "GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp r;
    th_resp_read(fd, &r, 0);
    free(r.body);
    ms = closed_after(fd, afd_now_ns());
    cr_assert(ms > 450.0 && ms < 3000.0,
              "keep-alive: closed after %.0f ms, want the idle "
              "timeout (500)",
              ms);
    close(fd);
}

Test(http_stream, connection_limit) {
    int fds[4];
    for (int k = 0; k < 4; k++)
        fds[k] = th_connect(ts.port);
    usleep(100000);
    int extra = th_connect(ts.port); /* accepted by the kernel, closed by the server */
    cr_assert(readable_within(extra, 2000));
    char c;
    cr_assert_leq(recv(extra, &c, 1, 0), 0, "the fifth connection is closed");
    close(extra);
    close(fds[0]);
    usleep(100000);
    char *r = get("/metrics");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(r, "afd_router_http_limit_total{limit=\"connections\"} 1\n"), "%s", r);
    free(r);
    for (int k = 1; k < 4; k++)
        close(fds[k]);
}

Test(http_stream, abort_cuts_the_stream) {
    int fd = th_connect(ts.port);
    th_sends(fd, "GET /abort HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp head;
    th_recv_head(fd, &head);
    cr_assert_eq(head.status, 200);
    char ev[64];
    read_chunk(fd, ev, sizeof ev);
    cr_assert_str_eq(ev, "data: one\n\n");
    char *rest = th_read_all(fd, NULL);
    cr_assert_str_eq(rest, "", "no last chunk after an abort: %s", rest);
    free(rest);
    close(fd);
    cr_assert_eq(atomic_load(&closes), 0, "rh_abort does not call on_close");
}

Test(http_stream, misuse_is_refused) {
    char *r = get("/misuse");
    cr_assert_eq(atomic_load(&misuse[0]), AFD_E_STATE, "send before start");
    cr_assert_eq(atomic_load(&misuse[1]), 0);
    cr_assert_eq(atomic_load(&misuse[2]), AFD_E_STATE, "start twice");
    cr_assert_eq(atomic_load(&misuse[3]), AFD_E_STATE, "full reply on a stream");
    cr_assert(strstr(r, "\r\n\r\n0\r\n\r\n"), "the stream was ended: %s", r);
    free(r);
}

Test(http_stream, drain) {
    int stream_fd = th_connect(ts.port);
    th_sends(stream_fd, "GET /stream?n=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    th_resp head;
    th_recv_head(stream_fd, &head);
    int idle = th_connect(ts.port);
    usleep(50000);
    char *r = th_ask(ts.port, "GET /drain HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(th_status(r), 200, "%s", r);
    cr_assert(strstr(r, "Connection: close"), "replies during a drain close: %s", r);
    free(r);
    char c;
    cr_assert(readable_within(idle, 2000));
    cr_assert_eq(recv(idle, &c, 1, 0), 0, "idle keep-alive connection closed");
    close(idle);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ts.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_neq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "the listener is closed");
    close(fd);
    atomic_store(&gate, 2); /* the open stream still completes */
    char ev[64];
    read_chunk(stream_fd, ev, sizeof ev);
    cr_assert_str_eq(ev, "data: {\"i\":0}\n\n");
    read_chunk(stream_fd, ev, sizeof ev);
    read_chunk(stream_fd, ev, sizeof ev);
    cr_assert_str_eq(ev, "data: [DONE]\n\n");
    char *rest = th_read_all(stream_fd, NULL);
    cr_assert_str_eq(rest, "0\r\n\r\n", "last chunk, then close: %s", rest);
    free(rest);
    close(stream_fd);
}
