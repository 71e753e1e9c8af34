/* The admin port on 127.0.0.1:0, served by an event loop on a second thread, asked by a
 * blocking client with a receive timeout (so a hang fails the test instead of blocking it). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/base/metrics.h"
#include "common/net/http_admin.h"

typedef struct server {
    struct event_base *base;
    struct event *tick;
    afd_metrics *reg;
    afd_admin *admin;
    int port;
    pthread_t thread;
    atomic_int stop;
    atomic_int ready;
} server;

static server srv;

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    if (atomic_load(&s->stop))
        event_base_loopbreak(s->base);
}

static void *loop_main(void *arg) {
    server *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

static int ready_cb(void *ud, char *why, size_t n) {
    server *s = ud;
    if (atomic_load(&s->ready))
        return 1;
    snprintf(why, n, "weights \"loading\" 3/10");
    return 0;
}

/* POST /admin/echo: 200 with the body's length and the body; 400 for an empty body */
static int echo_post(void *ud, const char *body, size_t len, struct evbuffer *out,
                     const char **ctype) {
    (void)ud, (void)ctype;
    if (len == 0)
        return 400;
    evbuffer_add_printf(out, "%zu:%s", len, body);
    return 200;
}

static int debug_page(void *ud, const char *query, struct evbuffer *body, const char **ctype) {
    evbuffer_add_printf(body, "{\"query\":\"%s\"}", query ? query : "");
    *ctype = "application/json";
    return 200;
}

static int broken_page(void *ud, const char *query, struct evbuffer *body, const char **ctype) {
    return 42;
}

static void start(void) {
    afd_err e = {0};
    srv.base = event_base_new();
    cr_assert_not_null(srv.base);
    srv.reg = afd_metrics_init();
    afd_metric_add(afd_metrics_counter(srv.reg, "afd_test_total", "A test counter.", NULL), 5);
    srv.admin = afd_admin_start(srv.base, "127.0.0.1", 0, &srv.port, srv.reg, &e);
    cr_assert_not_null(srv.admin, "%s", e.msg);
    cr_assert_gt(srv.port, 0);
    afd_admin_set_ready(srv.admin, ready_cb, &srv);
    cr_assert_eq(afd_admin_route(srv.admin, "/debug/x", debug_page, NULL), 0);
    cr_assert_eq(afd_admin_route(srv.admin, "/debug/broken", broken_page, NULL), 0);
    cr_assert_eq(afd_admin_route_post(srv.admin, "/admin/echo", echo_post, NULL), 0);
    struct timeval tv = {0, 10000};
    srv.tick = event_new(srv.base, -1, EV_PERSIST, on_tick, &srv);
    event_add(srv.tick, &tv);
    cr_assert_eq(pthread_create(&srv.thread, NULL, loop_main, &srv), 0);
}

static void stop(void) {
    atomic_store(&srv.stop, 1);
    pthread_join(srv.thread, NULL);
    afd_admin_free(srv.admin);
    event_free(srv.tick);
    afd_metrics_free(srv.reg);
    event_base_free(srv.base);
}

/* Sends a raw request; returns the whole response (malloc'd), read until the server closes. */
static char *ask_raw(const char *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    size_t len = strlen(request);
    cr_assert_eq(write(fd, request, len), (ssize_t)len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (ssize_t r; (r = read(fd, buf + n, cap - 1 - n)) > 0;)
        n += (size_t)r;
    buf[n] = 0;
    close(fd);
    return buf;
}

static char *ask(const char *method, const char *path) {
    char req[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    return ask_raw(req);
}

static int status_of(const char *resp) {
    int code = -1;
    sscanf(resp, "HTTP/1.%*d %d", &code);
    return code;
}

static const char *body_of(const char *resp) {
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

TestSuite(http_admin, .init = start, .fini = stop, .timeout = 20);

Test(http_admin, metrics) {
    char *r = ask("GET", "/metrics");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert(strstr(r, "Content-Type: text/plain; version=0.0.4"), "%s", r);
    cr_assert(strstr(body_of(r), "# TYPE afd_test_total counter\nafd_test_total 5\n"), "%s", r);
    free(r);
    r = ask("GET", "/metrics");
    cr_assert(strstr(r, "afd_admin_requests_total{code=\"200\"} 1\n"), "first one counted: %s", r);
    free(r);
}

Test(http_admin, health) {
    char *r = ask("GET", "/health");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_str_eq(body_of(r), "ok\n");
    free(r);
}

Test(http_admin, ready_both_states) {
    char *r = ask("GET", "/ready");
    cr_assert_eq(status_of(r), 503, "%s", r);
    cr_assert(strstr(r, "Content-Type: application/json"), "%s", r);
    cr_assert_str_eq(body_of(r), "{\"ready\":false,\"reason\":\"weights \\\"loading\\\" 3/10\"}\n");
    free(r);
    atomic_store(&srv.ready, 1);
    r = ask("GET", "/ready");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_str_eq(body_of(r), "{\"ready\":true}\n");
    free(r);
}

Test(http_admin, not_found_and_method) {
    char *r = ask("GET", "/nope");
    cr_assert_eq(status_of(r), 404, "%s", r);
    free(r);
    r = ask("GET", "/metricsx");
    cr_assert_eq(status_of(r), 404, "%s", r);
    free(r);
    r = ask("POST", "/metrics");
    cr_assert_eq(status_of(r), 405, "%s", r);
    cr_assert(strstr(r, "Allow: GET, HEAD"), "%s", r);
    free(r);
    r = ask("POST", "/nope");
    cr_assert_eq(status_of(r), 404, "%s", r);
    free(r);
    r = ask_raw("POST /admin/echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_str_eq(body_of(r), "5:hello");
    free(r);
    r = ask("POST", "/admin/echo");
    cr_assert_eq(status_of(r), 400, "%s", r);
    free(r);
    r = ask("GET", "/admin/echo");
    cr_assert_eq(status_of(r), 404, "%s", r);
    free(r);
    r = ask("DELETE", "/health");
    cr_assert_eq(status_of(r), 405, "%s", r);
    free(r);
    r = ask("HEAD", "/health");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_str_eq(body_of(r), "");
    cr_assert(strstr(r, "Content-Length: 3\r\n"), "%s", r);
    free(r);
}

Test(http_admin, routes) {
    char *r = ask("GET", "/debug/x?layer=3");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert(strstr(r, "Content-Type: application/json"), "%s", r);
    cr_assert_str_eq(body_of(r), "{\"query\":\"layer=3\"}");
    free(r);
    r = ask("GET", "/debug/broken");
    cr_assert_eq(status_of(r), 500, "%s", r);
    free(r);
    cr_assert_eq(afd_admin_route(srv.admin, "/metrics", debug_page, NULL), AFD_E_FORMAT);
    cr_assert_eq(afd_admin_route(srv.admin, "/debug/x", debug_page, NULL), AFD_E_FORMAT);
    cr_assert_eq(afd_admin_route(srv.admin, "nope", debug_page, NULL), AFD_E_FORMAT);
}

Test(http_admin, oversized_headers_rejected_and_still_serving) {
    size_t n = AFD_ADMIN_MAX_HEADERS * 2;
    char *req = malloc(n + 128);
    int len = snprintf(req, n + 128, "GET /health HTTP/1.0\r\nX-Big: ");
    memset(req + len, 'a', n);
    strcpy(req + len + n, "\r\n\r\n");
    char *r = ask_raw(req);
    free(req);
    int code = status_of(r);
    cr_assert(code == 400 || code == 413 || code == 431 || code == -1, "status %d: %.200s", code,
              r);
    free(r);
    r = ask("GET", "/health");
    cr_assert_eq(status_of(r), 200, "%s", r);
    free(r);
}

Test(http_admin, garbage_request_line) {
    char *r = ask_raw("NOT HTTP AT ALL\r\n\r\n");
    int code = status_of(r);
    cr_assert(code == 400 || code == -1, "status %d: %s", code, r);
    free(r);
    r = ask("GET", "/health");
    cr_assert_eq(status_of(r), 200, "%s", r);
    free(r);
}

Test(http_admin_start, bad_port_and_busy_address) {
    struct event_base *base = event_base_new();
    afd_err e = {0};
    int port = 0;
    cr_assert_null(afd_admin_start(base, NULL, 70000, &port, NULL, &e));
    cr_assert_str_eq(e.msg, "admin port 70000 is outside 0..65535");
    afd_admin *a = afd_admin_start(base, NULL, 0, &port, NULL, &e);
    cr_assert_not_null(a, "%s", e.msg);
    cr_assert_null(afd_admin_start(base, "127.0.0.1", port, NULL, NULL, &e));
    cr_assert(strstr(e.msg, "admin: cannot listen on 127.0.0.1:"), "%s", e.msg);
    afd_admin_free(a);
    afd_admin_free(NULL);
    event_base_free(base);
}
