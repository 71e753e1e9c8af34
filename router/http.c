/* http.c: the router's HTTP front (see http.h): start and free, routes, the head phases
 * (request id -> CORS -> route -> API key -> route errors -> body limit) and the request
 * accessors. Connections live in http_conn.c, replies in http_reply.c. */
#include <errno.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/alloc.h"
#include "common/base/log.h"
#include "router/http_int.h"

#define LINGER_MS      2000
#define MAX_TIMEOUT_MS (24LL * 3600 * 1000)

/* ---- routes ---- */

static int route_match(const rh_route_ent *e, const char *path) {
    if (e->prefix) return strncmp(path, e->path, e->plen) == 0 && path[e->plen] != 0;
    return strcmp(path, e->path) == 0;
}

/* The routes of the most specific pattern matching path (exact beats prefix, longer prefix
 * beats shorter): returns the one answering method, or NULL; *allow gets all their methods. */
static const rh_route_ent *route_lookup(const rh_server *s, const char *path, unsigned method,
                                        unsigned *allow) {
    size_t best = 0;
    for (int k = 0; k < s->n_routes; k++) {
        const rh_route_ent *e = &s->routes[k];
        size_t rank = e->prefix ? e->plen : SIZE_MAX;
        if (rank > best && route_match(e, path)) best = rank;
    }
    const rh_route_ent *hit = NULL;
    *allow = 0;
    for (int k = 0; best && k < s->n_routes; k++) {
        const rh_route_ent *e = &s->routes[k];
        if ((e->prefix ? e->plen : SIZE_MAX) != best || !route_match(e, path)) continue;
        *allow |= e->methods;
        if (e->methods & method) hit = e;
    }
    return hit;
}

static int path_ok(const char *path) {
    if (!path || path[0] != '/') return 0;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
            return 0;
    return 1;
}

int rh_route(rh_server *s, unsigned methods, const char *path, unsigned flags, rh_handler cb,
             void *ud) {
    if (!path_ok(path) || !cb || !methods || (methods & ~0x7fu)) return AFD_E_FORMAT;
    size_t len = strlen(path);
    int prefix = len >= 2 && strcmp(path + len - 2, "/*") == 0;
    if (strchr(path, '*') && (!prefix || strchr(path, '*') != path + len - 1)) return AFD_E_FORMAT;
    if (methods & RH_GET) methods |= RH_HEAD;
    for (int k = 0; k < s->n_routes; k++)
        if (strcmp(s->routes[k].path, path) == 0 && (s->routes[k].methods & methods))
            return AFD_E_MISMATCH;
    if (s->n_routes == s->cap_routes) {
        s->cap_routes = s->cap_routes ? 2 * s->cap_routes : 16;
        s->routes = xrealloc(s->routes, (size_t)s->cap_routes * sizeof *s->routes);
    }
    rh_route_ent *e = &s->routes[s->n_routes++];
    *e = (rh_route_ent){.path = xstrdup(path),
                        .plen = prefix ? len - 1 : len,
                        .prefix = prefix,
                        .methods = methods,
                        .flags = flags,
                        .cb = cb,
                        .ud = ud};
    return 0;
}

static void allow_text(unsigned mask, char *out, size_t cap) {
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    size_t n = 0;
    out[0] = 0;
    for (int b = 0; b < 7; b++)
        if (mask & (1u << b))
            n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? ", " : "", names[b]);
}

/* ---- head phases: each returns 1 when it replied (the request is finished) ---- */

typedef int (*rh_phase)(rh_req *r);

static int phase_id(rh_req *r) {
    const char *id = rh_head_get(&r->h, "X-Request-Id");
    if (rh_req_id_ok(id))
        snprintf(r->id, sizeof r->id, "%s", id);
    else
        rh_req_id_make(r->id, sizeof r->id);
    return 0;
}

static int origin_allowed(const rh_server *s, const char *origin) {
    if (s->cors_any) return 1;
    for (int k = 0; k < s->n_cors; k++)
        if (strcmp(s->cors[k], origin) == 0) return 1;
    return 0;
}

static int preflight(rh_req *r, unsigned allow) {
    char methods[64];
    allow_text(allow | RH_OPTIONS, methods, sizeof methods);
    const char *want = rh_head_get(&r->h, "Access-Control-Request-Headers");
    rh_add_header_raw(r, "Access-Control-Allow-Methods", methods);
    rh_add_header_raw(
        r, "Access-Control-Allow-Headers",
        want && rh_token_list_ok(want, 1024) ? want : "Authorization, Content-Type, X-Request-Id");
    rh_add_header_raw(r, "Access-Control-Max-Age", "600");
    rh_reply(r, 204, NULL, NULL, 0);
    return 1;
}

static int phase_cors(rh_req *r) {
    rh_server *s = r->srv;
    const char *origin = rh_head_get(&r->h, "Origin");
    if ((!s->n_cors && !s->cors_any) || !origin) return 0;
    int ok = origin_allowed(s, origin);
    if (ok) r->cors_origin = s->cors_any ? "*" : origin;
    if (r->method != RH_OPTIONS || !rh_head_get(&r->h, "Access-Control-Request-Method")) return 0;
    unsigned allow;
    route_lookup(s, r->path, 0, &allow);
    if (!ok) {
        rh_reply_error(r, 403, NULL, "cors_origin_not_allowed", NULL,
                       "origin %.200s is not allowed", origin);
        return 1;
    }
    if (!allow) {
        rh_reply_error(r, 404, NULL, NULL, NULL, "Invalid URL (OPTIONS %.300s)", r->path);
        return 1;
    }
    return preflight(r, allow);
}

static int phase_route(rh_req *r) {
    unsigned allow;
    r->route = route_lookup(r->srv, r->path, r->method, &allow);
    return 0;
}

static int phase_auth(rh_req *r) {
    rh_server *s = r->srv;
    if (s->keys.n == 0 || (r->route && (r->route->flags & RH_PUBLIC))) return 0;
    size_t len = 0;
    const char *tok = rh_bearer_token(rh_head_get(&r->h, "Authorization"), &len);
    if (tok && rh_keys_check(&s->keys, tok, len)) return 0;
    rh_add_header_raw(r, "WWW-Authenticate", "Bearer");
    if (!tok)
        rh_reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                       "You didn't provide an API key. Send it in the Authorization header "
                       "as: Bearer YOUR_KEY.");
    else
        rh_reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                       "Incorrect API key provided.");
    return 1;
}

static int phase_route_errors(rh_req *r) {
    if (r->route) return 0;
    unsigned allow;
    route_lookup(r->srv, r->path, r->method, &allow);
    if (!allow) {
        rh_reply_error(r, 404, NULL, NULL, NULL, "Invalid URL (%.20s %.300s)", r->h.method,
                       r->path);
        return 1;
    }
    char text[64];
    allow_text(allow, text, sizeof text);
    rh_add_header_raw(r, "Allow", text);
    rh_reply_error(r, 405, NULL, "method_not_allowed", NULL, "Method not allowed (%.20s %.300s)",
                   r->h.method, r->path);
    return 1;
}

static int phase_body_limit(rh_req *r) {
    uint64_t max = r->srv->max_body;
    if (!r->fr.has_length || r->fr.length <= max) return 0;
    rh_limit_hit(r->srv, RH_LIM_BODY);
    rh_reply_error(r, 413, NULL, "request_too_large", NULL,
                   "request body is %llu bytes, over the limit of %llu bytes",
                   (unsigned long long)r->fr.length, (unsigned long long)max);
    return 1;
}

static const rh_phase head_phases[] = {phase_id,   phase_cors,         phase_route,
                                       phase_auth, phase_route_errors, phase_body_limit};

int rh_req_begin(rh_req *r) {
    r->method = rh_method_bit(r->h.method);
    char *q = strchr(r->h.target, '?');
    if (q) *q++ = 0;
    r->path = r->h.target;
    r->query = q;
    for (size_t k = 0; k < sizeof head_phases / sizeof head_phases[0]; k++)
        if (head_phases[k](r)) return 1;
    return 0;
}

void rh_req_dispatch(rh_req *r) {
    rh_server *s = r->srv;
    r->state = R_HANDLING;
    r->dispatched = 1;
    s->n_open++;
    afd_metric_set(s->m_reqs_open, s->n_open);
    afd_log_set_req(r->id);
    r->route->cb(r, r->route->ud);
    afd_log_set_req(NULL);
}

/* ---- accessors ---- */

const char *rh_req_method(const rh_req *r) {
    return r->h.method ? r->h.method : "";
}
unsigned rh_req_method_id(const rh_req *r) {
    return r->method;
}
const char *rh_req_path(const rh_req *r) {
    return r->path;
}
const char *rh_req_query(const rh_req *r) {
    return r->query;
}
const char *rh_req_id(const rh_req *r) {
    return r->id;
}
const char *rh_req_route(const rh_req *r) {
    return r->route ? r->route->path : "";
}
int rh_req_gone(const rh_req *r) {
    return r->gone;
}

int rh_req_query_param(const rh_req *r, const char *name, char *out, size_t cap) {
    return rh_query_param(r->query, name, out, cap);
}

const char *rh_req_header(const rh_req *r, const char *name) {
    return r->h.method ? rh_head_get(&r->h, name) : NULL;
}

const char *rh_req_body(const rh_req *r, size_t *len) {
    if (len) *len = r->body_len;
    return r->body ? r->body : "";
}

const char *rh_req_peer(const rh_req *r) {
    return r->peer;
}

/* ---- server ---- */

static void tv_ms(struct timeval *tv, int64_t ms) {
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

static int check_config(const rh_config *c, afd_err *err) {
    if (c->port < 0 || c->port > 65535)
        return afd_errf(err, AFD_E_FORMAT, "http: port %d is outside 0..65535", c->port);
    if (!c->tls_cert != !c->tls_key)
        return afd_errf(err, AFD_E_FORMAT,
                        "http: TLS needs both a certificate and a key "
                        "file (only one is set)");
    const int64_t t[] = {c->read_timeout_ms, c->write_timeout_ms, c->idle_timeout_ms};
    for (int k = 0; k < 3; k++)
        if (t[k] < 0 || t[k] > MAX_TIMEOUT_MS)
            return afd_errf(err, AFD_E_FORMAT, "http: timeout %lld ms is outside 0..%lld",
                            (long long)t[k], MAX_TIMEOUT_MS);
    if (c->max_header_bytes && (c->max_header_bytes < 256 || c->max_header_bytes > (1u << 20)))
        return afd_errf(err, AFD_E_FORMAT, "http: max header bytes %llu is outside 256..1 MiB",
                        (unsigned long long)c->max_header_bytes);
    if (c->max_body_bytes > (1ull << 32))
        return afd_errf(err, AFD_E_FORMAT, "http: max body bytes %llu is over 4 GiB",
                        (unsigned long long)c->max_body_bytes);
    if (c->max_headers < 0 || c->max_headers > 10000 || c->max_connections < 0)
        return afd_errf(err, AFD_E_FORMAT,
                        "http: max headers %d (0..10000) or max "
                        "connections %d (>= 0) out of range",
                        c->max_headers, c->max_connections);
    return 0;
}

static void copy_cors(rh_server *s, const char *const *origins) {
    for (int k = 0; origins && origins[k]; k++) {
        if (strcmp(origins[k], "*") == 0) {
            s->cors_any = 1;
            continue;
        }
        s->cors = xrealloc(s->cors, (size_t)(s->n_cors + 1) * sizeof *s->cors);
        s->cors[s->n_cors++] = xstrdup(origins[k]);
    }
}

static void apply_config(rh_server *s, const rh_config *c) {
    s->max_header = c->max_header_bytes ? c->max_header_bytes : RH_DEF_MAX_HEADER_BYTES;
    s->max_body = c->max_body_bytes ? c->max_body_bytes : RH_DEF_MAX_BODY_BYTES;
    s->max_headers = c->max_headers ? c->max_headers : RH_DEF_MAX_HEADERS;
    s->max_conns = c->max_connections ? c->max_connections : RH_DEF_MAX_CONNECTIONS;
    tv_ms(&s->tv_read, c->read_timeout_ms ? c->read_timeout_ms : RH_DEF_READ_TIMEOUT_MS);
    tv_ms(&s->tv_write, c->write_timeout_ms ? c->write_timeout_ms : RH_DEF_WRITE_TIMEOUT_MS);
    tv_ms(&s->tv_idle, c->idle_timeout_ms ? c->idle_timeout_ms : RH_DEF_IDLE_TIMEOUT_MS);
    tv_ms(&s->tv_linger, LINGER_MS);
    if (c->keys_file && c->keys_file[0]) s->keys_file = xstrdup(c->keys_file);
    copy_cors(s, c->cors_origins);
}

static const char *const limit_names[RH_LIM_N] = {
    [RH_LIM_HEADER] = "header_bytes",       [RH_LIM_BODY] = "body_bytes",
    [RH_LIM_READ_TIMEOUT] = "read_timeout", [RH_LIM_WRITE_TIMEOUT] = "write_timeout",
    [RH_LIM_IDLE_TIMEOUT] = "idle_timeout", [RH_LIM_CONNECTIONS] = "connections",
    [RH_LIM_BAD_REQUEST] = "bad_request",   [RH_LIM_TLS] = "tls_error",
};

static void add_metrics(rh_server *s, afd_metrics *reg) {
    if (!reg) return;
    const char *labels[] = {"route", "code"};
    afd_err e;
    if (afd_metrics_family(reg, AFD_METRIC_COUNTER, "afd_router_http_requests_total",
                           "HTTP requests answered, by route pattern and status (499: the "
                           "client went away first).",
                           labels, 2, NULL, 0, &s->fam_requests, &e))
        log_warn("http: %s", e.msg);
    s->m_conns_open =
        afd_metrics_gauge(reg, "afd_router_http_connections_open", "Open HTTP connections.", NULL);
    s->m_conns_total = afd_metrics_counter(reg, "afd_router_http_connections_total",
                                           "HTTP connections accepted.", NULL);
    s->m_reqs_open = afd_metrics_gauge(reg, "afd_router_http_requests_open",
                                       "HTTP requests with a handler, not finished.", NULL);
    s->m_bytes_in = afd_metrics_counter(reg, "afd_router_http_received_bytes_total",
                                        "HTTP bytes received (after TLS).", NULL);
    s->m_bytes_out = afd_metrics_counter(reg, "afd_router_http_sent_bytes_total",
                                         "HTTP bytes sent (before TLS).", NULL);
    for (int k = 0; k < RH_LIM_N; k++)
        s->m_limit[k] = afd_metrics_counter(reg, "afd_router_http_limit_total",
                                            "Requests or connections cut by a limit.", "limit",
                                            limit_names[k], NULL);
}

static int server_open(rh_server *s, const rh_config *cfg, afd_err *err) {
    int rc = 0;
    if (cfg->tls_cert) rc = rh_tls_init(s, cfg->tls_cert, cfg->tls_key, err);
    if (!rc && s->keys_file) rc = rh_keys_load(s->keys_file, &s->keys, err);
    if (!rc) rc = rh_listen(s, cfg->addr ? cfg->addr : "127.0.0.1", cfg->port, err);
    return rc;
}

/* A write to a connection the client reset raises SIGPIPE (libevent writes with writev): a
 * server must ignore it. Left alone if the process has set its own handler. */
static void ignore_sigpipe(void) {
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

rh_server *rh_server_start(struct event_base *base, const rh_config *cfg, afd_err *err) {
    if (!base || !cfg) {
        afd_errf(err, AFD_E_FORMAT, "http: no event base or config");
        return NULL;
    }
    if (check_config(cfg, err)) return NULL;
    ignore_sigpipe();
    rh_server *s = xcalloc(1, sizeof *s);
    s->base = base;
    apply_config(s, cfg);
    if (server_open(s, cfg, err)) {
        rh_server_free(s);
        return NULL;
    }
    add_metrics(s, cfg->metrics);
    log_info("http: listening on %s:%d (%s; API keys %d; CORS %s; body <= %llu B; header <= "
             "%llu B)",
             cfg->addr ? cfg->addr : "127.0.0.1", s->port, s->ssl ? "https" : "http", s->keys.n,
             s->cors_any ? "any origin"
             : s->n_cors ? "listed origins"
                         : "off",
             (unsigned long long)s->max_body, (unsigned long long)s->max_header);
    return s;
}

int rh_server_port(const rh_server *s) {
    return s->port;
}

void rh_server_free(rh_server *s) {
    if (!s) return;
    rh_unlisten(s);
    rh_conns_free_all(s);
    while (s->reqs)
        rh_req_free(s->reqs);
    for (int k = 0; k < s->n_routes; k++) {
        free(s->routes[k].path);
        free(s->routes[k].by_code);
    }
    free(s->routes);
    free(s->none_by_code);
    for (int k = 0; k < s->n_cors; k++)
        free(s->cors[k]);
    free(s->cors);
    free(s->keys_file);
    rh_keys_clear(&s->keys);
    if (s->ssl) SSL_CTX_free(s->ssl);
    free(s);
}

int rh_keys_reload(rh_server *s, afd_err *err) {
    afd_err local;
    if (!err) err = &local;
    if (!s->keys_file) return afd_errf(err, AFD_E_STATE, "http: no keys file configured");
    int rc = rh_keys_load(s->keys_file, &s->keys, err);
    if (rc)
        log_warn("http: keys not reloaded, the old ones stay: %s", err->msg);
    else
        log_info("http: %d API keys loaded from %s", s->keys.n, s->keys_file);
    return rc;
}

int rh_keys_count(const rh_server *s) {
    return s->keys.n;
}

void rh_stop_accepting(rh_server *s) {
    if (s->draining) return;
    s->draining = 1;
    rh_unlisten(s);
    rh_conns_close_idle(s);
    log_info("http: draining: listener closed, %d requests open", s->n_open);
}

int rh_open_requests(const rh_server *s) {
    return s->n_open;
}
int rh_open_connections(const rh_server *s) {
    return s->n_conns;
}
