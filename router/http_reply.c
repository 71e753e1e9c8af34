/* http_reply.c: responses (JSON, errors, SSE), the end of a request handle (metrics, access
 * log) and the handle rules of http.h. */
#include <errno.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "router/http_int.h"

#define EXTRA_MAX (16u << 10) /* bytes of headers set by rh_set_header */

/* ---- handles ---- */

rh_req *rh_req_new(rh_conn *c) {
    rh_server *s = c->srv;
    rh_req *r = xcalloc(1, sizeof *r);
    r->srv = s;
    r->conn = c;
    r->state = R_READING;
    r->path = "";
    memcpy(r->peer, c->peer, sizeof r->peer);
    r->t0_ns = afd_now_ns();
    r->next = s->reqs;
    if (s->reqs) s->reqs->prev = r;
    s->reqs = r;
    return r;
}

/* Takes r out of the open-requests count (finished or client gone). */
static void req_close_count(rh_req *r) {
    if (!r->dispatched) return;
    r->dispatched = 0;
    r->srv->n_open--;
    afd_metric_set(r->srv->m_reqs_open, r->srv->n_open);
}

void rh_req_free(rh_req *r) {
    rh_server *s = r->srv;
    req_close_count(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->extra) evbuffer_free(r->extra);
    free(r->h.hdrs);
    free(r->head);
    free(r->body);
    free(r);
}

void rh_count(rh_server *s, const rh_route_ent *route, int status) {
    if (!s->fam_requests || status < 100 || status > 599) return;
    afd_metric ***slot = route ? &((rh_route_ent *)route)->by_code : &s->none_by_code;
    if (!*slot) *slot = xcalloc(500, sizeof(afd_metric *));
    afd_metric **m = &(*slot)[status - 100];
    if (!*m) {
        char code[8];
        snprintf(code, sizeof code, "%d", status);
        *m = afd_metric_series(s->fam_requests,
                               (const char *const[]){route ? route->path : "none", code});
    }
    afd_metric_inc(*m);
}

static void access_log(const rh_req *r, int status) {
    if (AFD_LOG_INFO > afd_log_level) return;
    double ms = (double)(afd_now_ns() - r->t0_ns) * 1e-6;
    afd_log_set_req(r->id[0] ? r->id : NULL);
    log_info("http: %s %.256s %d %.1f ms %zu B in, peer %s", r->h.method ? r->h.method : "-",
             r->path, status, ms, r->body_len, r->peer);
    afd_log_set_req(NULL);
}

void rh_req_gone_end(rh_req *r) {
    r->gone = 1;
    r->conn = NULL;
    req_close_count(r);
    rh_count(r->srv, r->route, 499); /* nginx's "client closed request" */
    access_log(r, 499);
    if (!r->on_close) return; /* stays until a finishing call (or rh_server_free) */
    r->in_close = 1;
    afd_log_set_req(r->id);
    r->on_close(r, r->close_arg);
    afd_log_set_req(NULL);
    rh_req_free(r);
}

/* For a finishing call on a gone handle: ends it (unless inside its on_close). */
static int gone_finish(rh_req *r) {
    if (!r->gone) return 0;
    if (!r->in_close) rh_req_free(r);
    return 1;
}

/* The reply is queued: count, log, free the handle, let the connection go on. */
static void req_end(rh_req *r) {
    rh_conn *c = r->conn;
    int close_after = r->close_after;
    rh_count(r->srv, r->route, r->status);
    access_log(r, r->status);
    c->req = NULL;
    rh_req_free(r);
    rh_conn_after_reply(c, close_after);
}

/* ---- response head ---- */

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *date_now(rh_server *s) {
    time_t now = time(NULL);
    if (now != s->date_t) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_t = now;
    }
    return s->date;
}

/* 1 when the connection must close after this reply. */
static int must_close(const rh_req *r) {
    if (!r->h.method || !r->fr.keep_alive || r->srv->draining || r->close_after) return 1;
    /* a reply before the body was read: we do not know where the next request starts */
    return r->state == R_READING && (r->fr.chunked || r->fr.length > 0);
}

/* Writes the status line and headers. length >= 0: Content-Length; -1: chunked (HTTP/1.1)
 * or until close (1.0); -2: no body at all (204, 304). */
static void write_head(rh_req *r, struct evbuffer *out, int status, const char *ctype,
                       long long length) {
    if (!r->id[0]) rh_req_id_make(r->id, sizeof r->id);
    r->close_after = must_close(r) || (length == -1 && r->h.minor == 0);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
                        reason(status), date_now(r->srv), r->id);
    if (ctype) evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (length >= 0)
        evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
    else if (length == -1 && r->h.minor >= 1)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    if (r->close_after) evbuffer_add_printf(out, "Connection: close\r\n");
    if (r->cors_origin) {
        evbuffer_add_printf(out, "Access-Control-Allow-Origin: %s\r\n", r->cors_origin);
        if (strcmp(r->cors_origin, "*") != 0) evbuffer_add_printf(out, "Vary: Origin\r\n");
        evbuffer_add_printf(out, "Access-Control-Expose-Headers: X-Request-Id, Retry-After\r\n");
    }
    if (r->extra) evbuffer_add_buffer(out, r->extra);
    evbuffer_add(out, "\r\n", 2);
}

/* Adds a header the server manages itself (no reserved-name check). */
int rh_add_header_raw(rh_req *r, const char *name, const char *value) {
    if (!r->extra && !(r->extra = evbuffer_new())) return -ENOMEM;
    if (evbuffer_get_length(r->extra) + strlen(name) + strlen(value) + 4 > EXTRA_MAX)
        return AFD_E_LIMIT;
    return evbuffer_add_printf(r->extra, "%s: %s\r\n", name, value) < 0 ? -ENOMEM : 0;
}

static int reserved_header(const char *name) {
    static const char *const names[] = {"Content-Length", "Content-Type", "Transfer-Encoding",
                                        "Connection",     "X-Request-Id", "Date"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcasecmp(name, names[k]) == 0) return 1;
    return 0;
}

int rh_set_header(rh_req *r, const char *name, const char *value) {
    if (r->gone) return AFD_E_PEER;
    if (r->state == R_STREAMING) return AFD_E_STATE;
    if (!rh_token_ok(name) || reserved_header(name) || !rh_value_ok(value)) return AFD_E_FORMAT;
    return rh_add_header_raw(r, name, value);
}

/* ---- full replies ---- */

static void stream_close(rh_req *r) {
    if (r->h.minor >= 1 && r->method != RH_HEAD) evbuffer_add(rh_conn_out(r->conn), "0\r\n\r\n", 5);
}

int rh_reply(rh_req *r, int status, const char *content_type, const void *body, size_t len) {
    if (gone_finish(r)) return AFD_E_PEER;
    if (r->state == R_STREAMING) {
        log_warn("http: reply %d on a started stream; the stream is ended instead", status);
        stream_close(r);
        req_end(r);
        return AFD_E_STATE;
    }
    if (status < 200 || status > 599) {
        log_warn("http: handler replied with status %d; sending 500", status);
        status = 500;
    }
    int bodyless = status == 204 || status == 304;
    struct evbuffer *out = rh_conn_out(r->conn);
    write_head(r, out, status, bodyless ? NULL : content_type, bodyless ? -2 : (long long)len);
    int rc = 0;
    if (!bodyless && r->method != RH_HEAD && len && evbuffer_add(out, body, len) != 0) rc = -ENOMEM;
    r->status = status;
    req_end(r);
    return rc;
}

int rh_reply_json(rh_req *r, int status, const char *body, size_t len) {
    return rh_reply(r, status, "application/json", body, len);
}

/* Appends "key":"escaped" or "key":null. */
static void json_field(struct evbuffer *b, const char *key, const char *val, int comma) {
    if (!val) {
        evbuffer_add_printf(b, "\"%s\":null%s", key, comma ? "," : "");
        return;
    }
    size_t cap = strlen(val) * 6 + 1;
    char *esc = xmalloc(cap);
    afd_json_escape(esc, cap, val);
    evbuffer_add_printf(b, "\"%s\":\"%s\"%s", key, esc, comma ? "," : "");
    free(esc);
}

static int reply_errorv(rh_req *r, int status, const char *type, const char *code,
                        const char *param, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!type) type = status >= 500 ? "server_error" : "invalid_request_error";
    struct evbuffer *b = evbuffer_new();
    if (!b) return rh_reply_json(r, 500, "{}", 2);
    evbuffer_add_printf(b, "{\"error\":{");
    json_field(b, "message", msg, 1);
    json_field(b, "type", type, 1);
    json_field(b, "param", param, 1);
    json_field(b, "code", code, 0);
    evbuffer_add_printf(b, "}}\n");
    size_t len = evbuffer_get_length(b);
    int rc = rh_reply_json(r, status, (const char *)evbuffer_pullup(b, -1), len);
    evbuffer_free(b);
    return rc;
}

int rh_reply_error(rh_req *r, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_errorv(r, status, type, code, param, fmt, ap);
    va_end(ap);
    return rc;
}

int rh_reply_status_error(rh_req *r, int status, const char *code, const char *msg) {
    r->close_after = 1;
    return rh_reply_error(r, status, NULL, code, NULL, "%s", msg);
}

/* ---- streams ---- */

int rh_sse_start(rh_req *r) {
    if (r->gone) return AFD_E_PEER;
    if (r->state != R_HANDLING) return AFD_E_STATE;
    rh_add_header_raw(r, "Cache-Control", "no-cache");
    rh_add_header_raw(r, "X-Accel-Buffering", "no");
    write_head(r, rh_conn_out(r->conn), 200, "text/event-stream", -1);
    r->state = R_STREAMING;
    r->status = 200;
    return 0;
}

/* Length of the event for data[0..len): "data: " + line + "\n" per line, then "\n". Lines
 * end at LF, CR or CRLF, as an SSE client splits them. */
static size_t event_len(const char *data, size_t len, int *lines) {
    size_t n = 1;
    *lines = 1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' || data[i] == '\n') {
            i += data[i] == '\r' && i + 1 < len && data[i + 1] == '\n';
            (*lines)++;
            continue;
        }
        n++;
    }
    return n + (size_t)*lines * 7; /* "data: " and "\n" per line */
}

static int add_event(struct evbuffer *out, const char *data, size_t len) {
    int rc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && data[i] != '\r' && data[i] != '\n') continue;
        rc |= evbuffer_add(out, "data: ", 6);
        rc |= evbuffer_add(out, data + start, i - start);
        rc |= evbuffer_add(out, "\n", 1);
        if (i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') i++;
        start = i + 1;
    }
    rc |= evbuffer_add(out, "\n", 1);
    return rc;
}

long rh_sse_send(rh_req *r, const char *data, size_t len) {
    if (r->gone) return AFD_E_PEER;
    if (r->state != R_STREAMING) return AFD_E_STATE;
    struct evbuffer *out = rh_conn_out(r->conn);
    if (r->method == RH_HEAD) return (long)evbuffer_get_length(out);
    int lines, rc = 0;
    size_t n = event_len(data, len, &lines);
    int chunked = r->h.minor >= 1;
    if (chunked) rc |= evbuffer_add_printf(out, "%zx\r\n", n) < 0;
    rc |= add_event(out, data, len);
    if (chunked) rc |= evbuffer_add(out, "\r\n", 2);
    return rc ? -ENOMEM : (long)evbuffer_get_length(out);
}

int rh_sse_end(rh_req *r) {
    if (gone_finish(r)) return AFD_E_PEER;
    if (r->state != R_STREAMING) {
        rh_reply_error(r, 500, NULL, NULL, NULL, "the response stream was never started");
        return AFD_E_STATE;
    }
    stream_close(r);
    req_end(r);
    return 0;
}

int rh_abort(rh_req *r) {
    if (gone_finish(r)) return AFD_E_PEER;
    rh_conn *c = r->conn;
    int status = r->state == R_STREAMING ? r->status : 500;
    rh_count(r->srv, r->route, status);
    access_log(r, status);
    c->req = NULL;
    rh_req_free(r);
    rh_conn_after_reply(c, 1); /* what was queued goes out, then the connection closes */
    return 0;
}

int rh_on_close(rh_req *r, rh_close_fn cb, void *arg) {
    if (r->gone) return AFD_E_PEER;
    r->on_close = cb;
    r->close_arg = arg;
    return 0;
}
