/* afd-bench serve: HTTP/1.1 response framing, Server-Sent Events and stream chunks.
 * Pure functions of the bytes fed so far; no I/O, no clock (serve_impl.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "bench/serve_impl.h"
#include "common/base/alloc.h"

/* ---- HTTP ---------------------------------------------------------------------------------- */

static const char *http_where(sv_http_state s) {
    switch (s) {
    case SV_H_STATUS: return "status line";
    case SV_H_HEADERS: return "headers";
    case SV_H_LEN: return "Content-Length body";
    case SV_H_CLOSE: return "body";
    case SV_H_CHUNK_SIZE: return "chunk size line";
    case SV_H_CHUNK_DATA: return "chunk data";
    case SV_H_CHUNK_END: return "CRLF after chunk data";
    case SV_H_TRAILERS: return "trailers";
    case SV_H_DONE: break;
    }
    return "response";
}

void sv_http_init(sv_http *h, uint64_t body_max) {
    /* field by field: line[] (8 KB) needs no zeroing */
    h->state = SV_H_STATUS;
    h->status = h->n_headers = 0;
    h->chunked = h->have_len = h->event_stream = false;
    h->remaining = h->line_len = 0;
    h->body_max = body_max;
}

/* Moves bytes up to and including a LF into h->line. 1: a line is complete (CR stripped,
 * NUL-terminated); 0: all input taken, no line yet; negative: over the limit. */
static int take_line(sv_http *h, const char **p, size_t *n, afd_err *err) {
    const char *nl = memchr(*p, '\n', *n);
    size_t k = nl ? (size_t)(nl - *p) : *n;
    if (h->line_len + k >= SV_HTTP_LINE_MAX)
        return afd_errf(err, AFD_E_LIMIT, "HTTP %s longer than %d bytes", http_where(h->state),
                        SV_HTTP_LINE_MAX - 1);
    memcpy(h->line + h->line_len, *p, k);
    h->line_len += k;
    *p += k + (nl != NULL);
    *n -= k + (nl != NULL);
    if (!nl)
        return 0;
    if (h->line_len && h->line[h->line_len - 1] == '\r')
        h->line_len--;
    h->line[h->line_len] = 0;
    return 1;
}

static int status_line(sv_http *h, afd_err *err) {
    const char *l = h->line;
    if (strncmp(l, "HTTP/1.", 7) || !isdigit((unsigned char)l[7]) || l[8] != ' ' ||
        !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
        !isdigit((unsigned char)l[11]) || (l[12] != ' ' && l[12] != 0))
        return afd_errf(err, AFD_E_FORMAT, "not an HTTP/1.x status line: '%.60s'", l);
    h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (h->status < 100 || h->status > 599)
        return afd_errf(err, AFD_E_FORMAT, "HTTP status %d outside 100..599", h->status);
    h->state = SV_H_HEADERS;
    return 0;
}

static int content_length(sv_http *h, const char *v, afd_err *err) {
    uint64_t x = 0;
    if (!*v)
        return afd_errf(err, AFD_E_FORMAT, "empty Content-Length");
    for (const char *c = v; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return afd_errf(err, AFD_E_FORMAT, "Content-Length '%.40s' is not a number", v);
        x = x * 10 + (uint64_t)(*c - '0');
        if (x > h->body_max)
            return afd_errf(err, AFD_E_LIMIT, "Content-Length %.40s over the limit %llu", v,
                            (unsigned long long)h->body_max);
    }
    if (h->have_len && x != h->remaining)
        return afd_errf(err, AFD_E_FORMAT, "two different Content-Length headers");
    h->have_len = true;
    h->remaining = x;
    return 0;
}

static bool has_token(const char *v, const char *tok) {
    size_t n = strlen(tok);
    for (const char *c = v; *c; c++)
        if (!strncasecmp(c, tok, n))
            return true;
    return false;
}

/* The empty line ending the headers: where the body goes from here. */
static void headers_end(sv_http *h) {
    if (h->status >= 100 && h->status < 200 && h->status != 101) {
        uint64_t max = h->body_max;
        sv_http_init(h, max); /* an interim response (100 Continue): the real one follows */
        return;
    }
    if (h->status == 204 || h->status == 304)
        h->state = SV_H_DONE;
    else if (h->chunked)
        h->state = SV_H_CHUNK_SIZE;
    else if (h->have_len)
        h->state = h->remaining ? SV_H_LEN : SV_H_DONE;
    else
        h->state = SV_H_CLOSE;
}

static int header_line(sv_http *h, afd_err *err) {
    if (h->line_len == 0) {
        headers_end(h);
        return 0;
    }
    if (++h->n_headers > SV_HTTP_HEADERS_MAX)
        return afd_errf(err, AFD_E_LIMIT, "more than %d HTTP headers", SV_HTTP_HEADERS_MAX);
    char *colon = strchr(h->line, ':');
    if (!colon || colon == h->line)
        return afd_errf(err, AFD_E_FORMAT, "HTTP header without a name: '%.60s'", h->line);
    *colon = 0;
    char *v = colon + 1, *e = h->line + h->line_len;
    while (*v == ' ' || *v == '\t')
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = 0;
    if (!strcasecmp(h->line, "content-length"))
        return content_length(h, v, err);
    if (!strcasecmp(h->line, "transfer-encoding"))
        h->chunked = has_token(v, "chunked");
    else if (!strcasecmp(h->line, "content-type"))
        h->event_stream = !strncasecmp(v, "text/event-stream", 17);
    return 0;
}

static int chunk_size_line(sv_http *h, afd_err *err) {
    uint64_t x = 0;
    const char *c = h->line;
    if (!isxdigit((unsigned char)*c))
        return afd_errf(err, AFD_E_FORMAT, "bad chunk size line '%.40s'", h->line);
    for (; isxdigit((unsigned char)*c); c++) {
        int d = isdigit((unsigned char)*c) ? *c - '0' : tolower((unsigned char)*c) - 'a' + 10;
        x = x * 16 + (uint64_t)d;
        if (x > h->body_max)
            return afd_errf(err, AFD_E_LIMIT, "chunk size %.40s over the limit %llu", h->line,
                            (unsigned long long)h->body_max);
    }
    while (*c == ' ' || *c == '\t')
        c++;
    if (*c && *c != ';')
        return afd_errf(err, AFD_E_FORMAT, "bad chunk size line '%.40s'", h->line);
    h->remaining = x;
    h->state = x ? SV_H_CHUNK_DATA : SV_H_TRAILERS;
    return 0;
}

static int line_state(sv_http *h, afd_err *err) {
    switch (h->state) {
    case SV_H_STATUS: return status_line(h, err);
    case SV_H_HEADERS: return header_line(h, err);
    case SV_H_CHUNK_SIZE: return chunk_size_line(h, err);
    case SV_H_CHUNK_END:
        if (h->line_len)
            return afd_errf(err, AFD_E_FORMAT, "chunk data longer than its size");
        h->state = SV_H_CHUNK_SIZE;
        return 0;
    case SV_H_TRAILERS:
        if (h->line_len == 0)
            h->state = SV_H_DONE;
        return 0;
    default: return afd_errf(err, AFD_E_STATE, "HTTP parser: no line expected");
    }
}

/* Body bytes of the LEN / CLOSE / CHUNK_DATA states. */
static int body_bytes(sv_http *h, const char **p, size_t *n, sv_body_fn fn, void *ctx) {
    size_t k = *n;
    if (h->state != SV_H_CLOSE && h->remaining < k)
        k = (size_t)h->remaining;
    int rc = k && fn ? fn(ctx, *p, k) : 0;
    *p += k, *n -= k;
    if (h->state == SV_H_CLOSE)
        return rc;
    h->remaining -= k;
    if (!h->remaining)
        h->state = h->state == SV_H_LEN ? SV_H_DONE : SV_H_CHUNK_END;
    return rc;
}

int sv_http_feed(sv_http *h, const char *p, size_t n, sv_body_fn fn, void *ctx, afd_err *err) {
    while (n && h->state != SV_H_DONE) {
        int rc;
        if (h->state == SV_H_LEN || h->state == SV_H_CLOSE || h->state == SV_H_CHUNK_DATA) {
            rc = body_bytes(h, &p, &n, fn, ctx);
        } else {
            rc = take_line(h, &p, &n, err);
            if (rc == 1) {
                rc = line_state(h, err);
                h->line_len = 0;
            }
        }
        if (rc < 0)
            return rc;
    }
    return h->state == SV_H_DONE;
}

int sv_http_eof(sv_http *h, afd_err *err) {
    if (h->state == SV_H_CLOSE)
        h->state = SV_H_DONE;
    if (h->state == SV_H_DONE)
        return 1;
    if (h->state == SV_H_LEN || h->state == SV_H_CHUNK_DATA)
        return afd_errf(err, AFD_E_PEER, "connection closed in the %s, %llu bytes short",
                        http_where(h->state), (unsigned long long)h->remaining);
    return afd_errf(err, AFD_E_PEER, "connection closed in the %s%s", http_where(h->state),
                    h->state == SV_H_STATUS && !h->line_len ? " (no response)" : "");
}

/* ---- Server-Sent Events --------------------------------------------------------------------- */

void sv_sse_init(sv_sse *s, size_t max_event) {
    memset(s, 0, sizeof *s);
    s->max_event = max_event;
}

/* Makes *buf hold at least `need` bytes (need <= max_event, checked by the caller). */
static void sse_reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

void sv_sse_free(sv_sse *s) {
    if (!s)
        return;
    free(s->line), free(s->data);
    s->line = s->data = NULL;
}

static int sse_dispatch(sv_sse *s, sv_event_fn fn, void *ctx) {
    bool had = s->has_data && s->data_len > 0;
    s->has_data = false;
    size_t n = s->data_len;
    s->data_len = 0;
    if (!had)
        return 0;
    s->n_events++;
    return fn ? fn(ctx, s->data, n) : 0;
}

/* One complete line (without its terminator). */
static int sse_line(sv_sse *s, sv_event_fn fn, void *ctx, afd_err *err) {
    const char *l = s->line;
    size_t n = s->line_len;
    if (!s->bom_checked) {
        s->bom_checked = true;
        if (n >= 3 && !memcmp(l, "\xEF\xBB\xBF", 3))
            l += 3, n -= 3;
    }
    if (n == 0)
        return sse_dispatch(s, fn, ctx);
    if (l[0] == ':')
        return 0; /* comment (keep-alive) */
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    if (name_len != 4 || memcmp(l, "data", 4))
        return 0; /* event:, id:, retry: and unknown fields do not matter here */
    const char *v = colon ? colon + 1 : l + n;
    size_t vn = (size_t)(l + n - v);
    if (vn && *v == ' ')
        v++, vn--;
    if (s->data_len + vn + s->has_data > s->max_event)
        return afd_errf(err, AFD_E_LIMIT, "SSE event data over %zu bytes", s->max_event);
    sse_reserve(&s->data, &s->data_cap, s->data_len + vn + 1);
    if (s->has_data)
        s->data[s->data_len++] = '\n';
    memcpy(s->data + s->data_len, v, vn);
    s->data_len += vn;
    s->has_data = true;
    return 0;
}

int sv_sse_feed(sv_sse *s, const char *p, size_t n, sv_event_fn fn, void *ctx, afd_err *err) {
    while (n) {
        if (s->skip_lf) {
            s->skip_lf = false;
            if (*p == '\n') {
                p++, n--;
                continue;
            }
        }
        size_t k = 0;
        while (k < n && p[k] != '\n' && p[k] != '\r')
            k++;
        if (s->line_len + k > s->max_event)
            return afd_errf(err, AFD_E_LIMIT, "SSE line over %zu bytes", s->max_event);
        sse_reserve(&s->line, &s->line_cap, s->line_len + k + 1);
        memcpy(s->line + s->line_len, p, k);
        s->line_len += k;
        p += k, n -= k;
        if (!n)
            break;
        s->skip_lf = *p == '\r';
        p++, n--;
        int rc = sse_line(s, fn, ctx, err);
        s->line_len = 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- stream chunks -------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const json_t *v) {
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    snprintf(dst, cap, "%s", s);
}

static int chunk_choice(const json_t *ch, bool chat, sv_chunk *c, afd_err *err) {
    if (!json_is_object(ch))
        return afd_errf(err, AFD_E_FORMAT, "stream chunk: a choice is not an object");
    const json_t *text = json_object_get(ch, "text");
    if (chat) {
        const json_t *d = json_object_get(ch, "delta");
        if (d && !json_is_object(d))
            return afd_errf(err, AFD_E_FORMAT, "stream chunk: choices[].delta is not an object");
        text = d ? json_object_get(d, "content") : NULL;
    }
    if (text && !json_is_string(text) && !json_is_null(text))
        return afd_errf(err, AFD_E_FORMAT, "stream chunk: choices[].%s is not a string",
                        chat ? "delta.content" : "text");
    if (json_is_string(text) && json_string_length(text) > 0)
        c->content = true;
    const json_t *fr = json_object_get(ch, "finish_reason");
    if (json_is_string(fr))
        copy_str(c->finish, sizeof c->finish, fr);
    return 0;
}

static int usage_int(const json_t *u, const char *key, int *out, afd_err *err) {
    const json_t *v = json_object_get(u, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return afd_errf(err, AFD_E_FORMAT, "stream chunk: usage.%s is not a count", key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int chunk_fields(const json_t *root, bool chat, sv_chunk *c, afd_err *err) {
    const json_t *e = json_object_get(root, "error");
    if (e && !json_is_null(e)) {
        c->error = true;
        copy_str(c->message, sizeof c->message, json_is_object(e) ? json_object_get(e, "message") : e);
    }
    const json_t *choices = json_object_get(root, "choices");
    if (choices && !json_is_array(choices))
        return afd_errf(err, AFD_E_FORMAT, "stream chunk: choices is not an array");
    for (size_t i = 0; choices && i < json_array_size(choices); i++) {
        int rc = chunk_choice(json_array_get(choices, i), chat, c, err);
        if (rc)
            return rc;
    }
    const json_t *u = json_object_get(root, "usage");
    if (!u || json_is_null(u))
        return 0;
    if (!json_is_object(u))
        return afd_errf(err, AFD_E_FORMAT, "stream chunk: usage is not an object");
    int rc = usage_int(u, "completion_tokens", &c->completion_tokens, err);
    return rc ? rc : usage_int(u, "prompt_tokens", &c->prompt_tokens, err);
}

int sv_chunk_parse(const char *data, size_t len, bool chat, sv_chunk *c, afd_err *err) {
    memset(c, 0, sizeof *c);
    c->completion_tokens = c->prompt_tokens = -1;
    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t'))
        len--;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        c->done = true;
        return 0;
    }
    json_error_t je;
    json_t *root = json_loadb(data, len, 0, &je);
    if (!root) {
        char head[61];
        size_t k = len < 60 ? len : 60;
        memcpy(head, data, k);
        head[k] = 0;
        return afd_errf(err, AFD_E_FORMAT, "stream chunk is not JSON (%s): '%s'", je.text, head);
    }
    int rc = json_is_object(root) ? chunk_fields(root, chat, c, err)
                                  : afd_errf(err, AFD_E_FORMAT, "stream chunk is not an object");
    json_decref(root);
    return rc;
}
