/* http_util.h: a test harness for router/http: the server on 127.0.0.1:0 with its own
 * event_base on a second thread, and blocking raw-socket clients with receive timeouts (a hang
 * fails the test instead of blocking it). Handlers run on the loop thread: they record what
 * they saw in atomics; asserts stay on the test thread. Header-only, static functions. */
#ifndef AFD_TEST_HTTP_UTIL_H
#define AFD_TEST_HTTP_UTIL_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/base/metrics.h"
#include "router/http.h"

typedef struct th_server {
    struct event_base *base;
    struct event *tick;
    afd_metrics *reg;
    rh_server *srv;
    int port;
    pthread_t thread;
    atomic_int stop;
    atomic_int running;
} th_server;

static inline void th_tick(evutil_socket_t fd, short what, void *arg) {
    th_server *t = arg;
    if (atomic_load(&t->stop)) event_base_loopbreak(t->base);
}

static inline void *th_loop(void *arg) {
    th_server *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

/* Starts the server with cfg (metrics and a 127.0.0.1 address filled in); routes(t) registers
 * the routes before the loop starts. */
static inline void th_start(th_server *t, rh_config cfg, void (*routes)(th_server *)) {
    memset(t, 0, sizeof *t);
    t->base = event_base_new();
    cr_assert_not_null(t->base);
    t->reg = afd_metrics_init();
    cfg.metrics = t->reg;
    if (!cfg.addr) cfg.addr = "127.0.0.1";
    afd_err e = {0};
    t->srv = rh_server_start(t->base, &cfg, &e);
    cr_assert_not_null(t->srv, "rh_server_start: %s", e.msg);
    t->port = rh_server_port(t->srv);
    cr_assert_gt(t->port, 0);
    if (routes) routes(t);
    struct timeval tv = {0, 5000};
    t->tick = event_new(t->base, -1, EV_PERSIST, th_tick, t);
    event_add(t->tick, &tv);
    cr_assert_eq(pthread_create(&t->thread, NULL, th_loop, t), 0);
    atomic_store(&t->running, 1);
}

static inline void th_stop(th_server *t) {
    if (!atomic_load(&t->running)) return;
    atomic_store(&t->stop, 1);
    pthread_join(t->thread, NULL);
    rh_server_free(t->srv);
    event_base_loop(t->base, EVLOOP_NONBLOCK); /* libevent's deferred frees */
    event_free(t->tick);
    afd_metrics_free(t->reg);
    event_base_free(t->base);
    atomic_store(&t->running, 0);
}

/* ---- clients ---- */

static inline int th_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    cr_assert_eq(rc, 0, "connect: %s", strerror(errno));
    return fd;
}

static inline void th_send(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

static inline void th_sends(int fd, const char *s) {
    th_send(fd, s, strlen(s));
}

/* Reads until the peer closes (or the 5 s timeout); malloc'd, NUL-terminated. */
static inline char *th_read_all(int fd, size_t *len_out) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (ssize_t r; (r = recv(fd, buf + n, cap - 1 - n, 0)) > 0;) {
        n += (size_t)r;
        if (cap - 1 - n < 4096) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    if (len_out) *len_out = n;
    return buf;
}

/* One request on a new connection, read until close. */
static inline char *th_ask(int port, const char *request) {
    int fd = th_connect(port);
    th_sends(fd, request);
    char *r = th_read_all(fd, NULL);
    close(fd);
    return r;
}

static inline int th_status(const char *resp) {
    int code = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1) return -1;
    return code;
}

static inline const char *th_body(const char *resp) {
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* The value of a response header (first match, case-insensitive) copied into out. */
static inline int th_header(const char *resp, const char *name, char *out, size_t cap) {
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && (!end || p < end); p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)n, v);
            return 1;
        }
    }
    return 0;
}

/* Reads exactly one response (Content-Length, chunked, or none for 204/304/HEAD) from a keep-
 * alive connection; returns head + decoded body, malloc'd. */
typedef struct th_resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} th_resp;

static inline void th_recv_exact(int fd, char *dst, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, dst + got, n - got, 0);
        cr_assert_gt(r, 0, "connection closed or timed out in a body (%zu of %zu)", got, n);
        got += (size_t)r;
    }
}

/* Reads one CRLF-terminated line byte by byte (chunk sizes). */
static inline void th_recv_line(int fd, char *line, size_t cap) {
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = recv(fd, &ch, 1, 0);
        cr_assert_eq(r, 1, "connection closed or timed out in a chunk line");
        if (ch == '\n') break;
        if (ch != '\r' && n + 1 < cap) line[n++] = ch;
    }
    line[n] = 0;
}

/* Reads the head byte by byte (so nothing of the body is consumed). */
static inline void th_recv_head(int fd, th_resp *out) {
    size_t n = 0;
    while (n < 4 || memcmp(out->head + n - 4, "\r\n\r\n", 4) != 0) {
        cr_assert_lt(n, sizeof out->head - 1, "response head too long");
        ssize_t r = recv(fd, out->head + n, 1, 0);
        cr_assert_eq(r, 1, "connection closed or timed out in a response head");
        n++;
    }
    out->head[n] = 0;
    out->status = th_status(out->head);
}

static inline void th_resp_read(int fd, th_resp *out, int head_only) {
    memset(out, 0, sizeof *out);
    do
        th_recv_head(fd, out);
    while (out->status == 100);
    char v[64];
    out->body = calloc(1, 1);
    if (head_only || out->status == 204 || out->status == 304) return;
    if (th_header(out->head, "Content-Length", v, sizeof v)) {
        out->body_len = strtoull(v, NULL, 10);
        out->body = realloc(out->body, out->body_len + 1);
        th_recv_exact(fd, out->body, out->body_len);
        out->body[out->body_len] = 0;
        return;
    }
    cr_assert(th_header(out->head, "Transfer-Encoding", v, sizeof v), "no framing: %s", out->head);
    for (;;) {
        char line[64];
        th_recv_line(fd, line, sizeof line);
        size_t n = strtoull(line, NULL, 16);
        if (n == 0) {
            th_recv_line(fd, line, sizeof line);
            return;
        }
        out->body = realloc(out->body, out->body_len + n + 1);
        th_recv_exact(fd, out->body + out->body_len, n);
        out->body_len += n;
        out->body[out->body_len] = 0;
        th_recv_line(fd, line, sizeof line);
    }
}

/* Waits (up to ms) until *v == want. */
static inline int th_wait_eq(atomic_int *v, int want, int ms) {
    for (int k = 0; k < ms; k++) {
        if (atomic_load(v) == want) return 1;
        usleep(1000);
    }
    return atomic_load(v) == want;
}

/* Runs a shell command, returns its stdout (malloc'd) and exit status in *rc. */
static inline char *th_run(const char *cmd, int *rc) {
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "popen %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t r; (r = fread(buf + n, 1, cap - 1 - n, f)) > 0;) {
        n += r;
        if (cap - 1 - n < 4096) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(f);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static inline int th_have(const char *tool) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

#endif
