/* http_admin.c: the admin HTTP port (see http_admin.h). One generic evhttp callback
 * dispatches on the exact path: built-in pages first, then the daemon's routes. */
#include "common/net/http_admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "common/base/alloc.h"
#include "common/base/log.h"

#define CT_TEXT    "text/plain; charset=utf-8"
#define CT_JSON    "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

typedef struct admin_route {
    char *path;
    afd_admin_handler cb;
    afd_admin_post_handler post; /* POST route when set */
    void *ud;
} admin_route;

struct afd_admin {
    struct evhttp *http;
    afd_metrics *reg;
    afd_metric_family *requests; /* afd_admin_requests_total{code} */
    afd_admin_ready_fn ready;
    void *ready_ud;
    admin_route routes[AFD_ADMIN_MAX_ROUTES];
    int n_routes;
};

static const char *const builtin_paths[] = {"/metrics", "/health", "/ready"};

/* ---- replies ---- */

static void count_reply(afd_admin *a, int code) {
    char text[16];
    snprintf(text, sizeof text, "%d", code);
    if (a->requests)
        afd_metric_inc(afd_metric_series(a->requests, (const char *const[]){text}));
}

/* Sends body (consumed) with the status and content type. */
static void reply(afd_admin *a, struct evhttp_request *req, int code, const char *ctype,
                  struct evbuffer *body) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* The length the GET would have, and no body (evhttp 2.1 would send one). */
        char len[32];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(body));
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, code, NULL, body);
    count_reply(a, code);
}

static void reply_text(afd_admin *a, struct evhttp_request *req, int code, const char *text) {
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    reply(a, req, code, CT_TEXT, b);
    evbuffer_free(b);
}

/* ---- built-in pages ---- */

static void free_rendered(const void *data, size_t len, void *extra) { free((void *)data); }

static void page_metrics(afd_admin *a, struct evhttp_request *req) {
    char *text = NULL;
    size_t len = 0;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (a->reg)
        afd_metrics_render(a->reg, &text, &len);
    if (text && evbuffer_add_reference(b, text, len, free_rendered, NULL) != 0)
        free(text);
    reply(a, req, 200, CT_METRICS, b);
    evbuffer_free(b);
}

static void page_ready(afd_admin *a, struct evhttp_request *req) {
    char why[256] = "", esc[600];
    int ready = 0;
    if (a->ready)
        ready = a->ready(a->ready_ud, why, sizeof why);
    else
        snprintf(why, sizeof why, "readiness check not configured");
    why[sizeof why - 1] = 0;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (ready) {
        evbuffer_add_printf(b, "{\"ready\":true}\n");
    } else {
        afd_json_escape(esc, sizeof esc, why[0] ? why : "not ready");
        evbuffer_add_printf(b, "{\"ready\":false,\"reason\":\"%s\"}\n", esc);
    }
    reply(a, req, ready ? 200 : 503, CT_JSON, b);
    evbuffer_free(b);
}

static void page_route(afd_admin *a, struct evhttp_request *req, const admin_route *r,
                       const char *query) {
    const char *ctype = CT_TEXT;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    int code = r->cb(r->ud, query, b, &ctype);
    if (code < 100 || code > 599) {
        log_warn("admin: handler for %s returned status %d", r->path, code);
        evbuffer_drain(b, evbuffer_get_length(b));
        evbuffer_add_printf(b, "internal error\n");
        code = 500, ctype = CT_TEXT;
    }
    reply(a, req, code, ctype ? ctype : CT_TEXT, b);
    evbuffer_free(b);
}

/* ---- dispatch ---- */

static const admin_route *find_route(const afd_admin *a, const char *path, bool post) {
    for (int k = 0; k < a->n_routes; k++)
        if (strcmp(a->routes[k].path, path) == 0 && !a->routes[k].post == !post)
            return &a->routes[k];
    return NULL;
}

static void page_post(afd_admin *a, struct evhttp_request *req, const admin_route *r) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = xmalloc(len + 1);
    evbuffer_remove(in, body, len);
    body[len] = 0;
    const char *ctype = CT_TEXT;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        free(body);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    int code = r->post(r->ud, body, len, b, &ctype);
    free(body);
    if (code < 100 || code > 599) {
        log_warn("admin: POST handler for %s returned status %d", r->path, code);
        evbuffer_drain(b, evbuffer_get_length(b));
        evbuffer_add_printf(b, "internal error\n");
        code = 500, ctype = CT_TEXT;
    }
    reply(a, req, code, ctype ? ctype : CT_TEXT, b);
    evbuffer_free(b);
}

static void dispatch(struct evhttp_request *req, void *arg) {
    afd_admin *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_POST) {
        const admin_route *pr = path ? find_route(a, path, true) : NULL;
        if (pr) {
            page_post(a, req, pr);
        } else {
            bool get = path && (find_route(a, path, false) || !strcmp(path, "/metrics") ||
                                !strcmp(path, "/health") || !strcmp(path, "/ready"));
            if (get) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
                reply_text(a, req, 405, "method not allowed\n");
            } else {
                reply_text(a, req, 404, "not found\n");
            }
        }
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD, POST");
        reply_text(a, req, 405, "method not allowed\n");
        return;
    }
    const admin_route *r = path ? find_route(a, path, false) : NULL;
    if (path && strcmp(path, "/metrics") == 0)
        page_metrics(a, req);
    else if (path && strcmp(path, "/health") == 0)
        reply_text(a, req, 200, "ok\n");
    else if (path && strcmp(path, "/ready") == 0)
        page_ready(a, req);
    else if (r)
        page_route(a, req, r, query);
    else
        reply_text(a, req, 404, "not found\n");
}

/* ---- lifetime ---- */

static int bound_port_of(struct evhttp_bound_socket *s) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void admin_configure(afd_admin *a) {
    evhttp_set_max_headers_size(a->http, AFD_ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, AFD_ADMIN_MAX_BODY);
    evhttp_set_timeout(a->http, AFD_ADMIN_TIMEOUT_S);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(a->http, dispatch, a);
    if (a->reg) {
        const char *labels[] = {"code"};
        afd_err e;
        if (afd_metrics_family(a->reg, AFD_METRIC_COUNTER, "afd_admin_requests_total",
                               "Admin HTTP requests answered, by status code.", labels, 1, NULL,
                               0, &a->requests, &e))
            log_warn("admin: %s", e.msg);
    }
}

afd_admin *afd_admin_start(struct event_base *base, const char *addr, int port, int *bound_port,
                           afd_metrics *reg, afd_err *err) {
    if (!addr)
        addr = "127.0.0.1";
    if (port < 0 || port > 65535) {
        afd_errf(err, AFD_E_FORMAT, "admin port %d is outside 0..65535", port);
        return NULL;
    }
    afd_admin *a = xcalloc(1, sizeof *a);
    a->reg = reg;
    a->http = evhttp_new(base);
    if (!a->http) {
        free(a);
        afd_errf(err, -ENOMEM, "admin: evhttp_new failed");
        return NULL;
    }
    admin_configure(a);
    struct evhttp_bound_socket *s;
    s = evhttp_bind_socket_with_handle(a->http, addr, (ev_uint16_t)port);
    if (!s) {
        int e = errno ? errno : EADDRNOTAVAIL;
        afd_errf(err, -e, "admin: cannot listen on %s:%d: %s", addr, port, strerror(e));
        afd_admin_free(a);
        return NULL;
    }
    int p = bound_port_of(s);
    if (bound_port)
        *bound_port = p;
    log_info("admin: listening on %s:%d", addr, p);
    return a;
}

void afd_admin_set_ready(afd_admin *a, afd_admin_ready_fn fn, void *ud) {
    a->ready = fn;
    a->ready_ud = ud;
}

int afd_admin_route(afd_admin *a, const char *path, afd_admin_handler cb, void *ud) {
    if (!path || path[0] != '/' || !cb)
        return AFD_E_FORMAT;
    for (size_t k = 0; k < sizeof builtin_paths / sizeof builtin_paths[0]; k++)
        if (strcmp(path, builtin_paths[k]) == 0)
            return AFD_E_FORMAT;
    if (find_route(a, path, false))
        return AFD_E_FORMAT;
    if (a->n_routes == AFD_ADMIN_MAX_ROUTES)
        return AFD_E_LIMIT;
    a->routes[a->n_routes++] = (admin_route){xstrdup(path), cb, NULL, ud};
    return 0;
}

int afd_admin_route_post(afd_admin *a, const char *path, afd_admin_post_handler cb, void *ud) {
    if (!path || path[0] != '/' || !cb)
        return AFD_E_FORMAT;
    for (size_t k = 0; k < sizeof builtin_paths / sizeof builtin_paths[0]; k++)
        if (strcmp(path, builtin_paths[k]) == 0)
            return AFD_E_FORMAT;
    if (find_route(a, path, true))
        return AFD_E_FORMAT;
    if (a->n_routes == AFD_ADMIN_MAX_ROUTES)
        return AFD_E_LIMIT;
    a->routes[a->n_routes++] = (admin_route){xstrdup(path), NULL, cb, ud};
    return 0;
}

void afd_admin_free(afd_admin *a) {
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    for (int k = 0; k < a->n_routes; k++)
        free(a->routes[k].path);
    free(a);
}
