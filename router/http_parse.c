/* http_parse.c: the pure parsers of the HTTP front (see http_int.h). Nothing here touches a
 * socket; every function takes a buffer and its length and checks before trusting. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/base/clock.h"
#include "router/http_int.h"

/* ---- characters ---- */

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_vchar_or_obs(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int rh_token_ok(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s)) return 0;
    return 1;
}

int rh_value_ok(const char *s) {
    if (!s) return 0;
    for (; *s; s++)
        if (!is_vchar_or_obs((unsigned char)*s)) return 0;
    return 1;
}

int rh_token_list_ok(const char *s, size_t max) {
    size_t n = 0;
    int tokens = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= max || !(is_tchar(c) || c == ',' || c == ' ' || c == '\t')) return 0;
        tokens += is_tchar(c) && (n == 0 || !is_tchar((unsigned char)s[n - 1]));
    }
    return tokens > 0;
}

/* ---- head ---- */

long rh_head_end(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return (long)(i + 2);
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return (long)(i + 3);
    }
    return -1;
}

size_t rh_leading_blank(const char *buf, size_t len) {
    size_t i = 0;
    while (i < len && (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')))
        i += buf[i] == '\r' ? 2 : 1;
    return i;
}

/* Cuts the line starting at *p (ends in LF or CRLF; a lone CR is an error). Returns the line
 * (NUL-terminated in place) and moves *p past it; NULL at the end or on a bad CR. */
static char *next_line(char **p, char *end, int *bad) {
    char *s = *p;
    if (s >= end) return NULL;
    char *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl) nl = end;
    char *e = nl;
    if (e > s && e[-1] == '\r') e--;
    if (memchr(s, '\r', (size_t)(e - s)) || memchr(s, 0, (size_t)(e - s))) {
        *bad = 1;
        return NULL;
    }
    *e = 0;
    *p = nl < end ? nl + 1 : end;
    return s;
}

unsigned rh_method_bit(const char *m) {
    static const struct {
        const char *name;
        unsigned bit;
    } tab[] = {{"GET", RH_GET},       {"HEAD", RH_HEAD},       {"POST", RH_POST},  {"PUT", RH_PUT},
               {"DELETE", RH_DELETE}, {"OPTIONS", RH_OPTIONS}, {"PATCH", RH_PATCH}};
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++)
        if (strcmp(m, tab[k].name) == 0) return tab[k].bit;
    return 0;
}

/* Reduces an absolute-form target ("http://host:port/p?q") to its path and query. */
static char *origin_form(char *t) {
    size_t skip = 0;
    if (strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    else
        return t;
    char *slash = strchr(t + skip, '/');
    if (slash) return slash;
    char *q = strchr(t + skip, '?');
    if (q) { /* "http://h?x" -> "/?x": shift one byte left over the authority */
        q[-1] = '/';
        return q - 1;
    }
    return (char *)"/";
}

static int parse_version(const char *v, int *minor, const char **why) {
    if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9' || v[8] != 0) {
        *why = "malformed HTTP version in the request line";
        return RH_PE_BAD;
    }
    if (v[5] != '1') {
        *why = "only HTTP/1.0 and HTTP/1.1 are supported";
        return RH_PE_VERSION;
    }
    *minor = v[7] - '0';
    return 0;
}

static int parse_request_line(char *line, rh_head *out, const char **why) {
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
        *why = "malformed request line (expected METHOD SP target SP HTTP/1.x)";
        return RH_PE_BAD;
    }
    *sp1 = *sp2 = 0;
    if (sp1 == line || sp1 - line > 20 || !rh_token_ok(line)) {
        *why = "malformed method in the request line";
        return RH_PE_BAD;
    }
    char *t = sp1 + 1;
    for (char *c = t; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            *why = "request target contains a byte that is not visible ASCII";
            return RH_PE_BAD;
        }
    t = origin_form(t);
    if (!(t[0] == '/' || (t[0] == '*' && t[1] == 0 && strcmp(line, "OPTIONS") == 0))) {
        *why = "request target must start with '/'";
        return RH_PE_BAD;
    }
    out->method = line;
    out->target = t;
    return parse_version(sp2 + 1, &out->minor, why);
}

static int parse_header_line(char *line, rh_hdr *h, const char **why) {
    if (*line == ' ' || *line == '\t') {
        *why = "folded header line (obsolete line folding is not accepted)";
        return RH_PE_BAD;
    }
    char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        *why = "header line without a name and a colon";
        return RH_PE_BAD;
    }
    *colon = 0;
    if (!rh_token_ok(line)) {
        *why = "header name contains a byte that is not a token character";
        return RH_PE_BAD;
    }
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    char *e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = 0;
    if (!rh_value_ok(v)) {
        *why = "header value contains a control byte";
        return RH_PE_BAD;
    }
    h->name = line;
    h->value = v;
    return 0;
}

int rh_parse_head(char *buf, size_t len, rh_hdr *hdrs, int max_hdrs, rh_head *out,
                  const char **why) {
    char *p = buf, *end = buf + len;
    int bad = 0;
    memset(out, 0, sizeof *out);
    out->hdrs = hdrs;
    char *line = next_line(&p, end, &bad);
    if (!line) {
        *why = bad ? "stray CR or NUL byte in the request line" : "empty request";
        return RH_PE_BAD;
    }
    int rc = parse_request_line(line, out, why);
    if (rc) return rc;
    while ((line = next_line(&p, end, &bad)) != NULL && *line) {
        if (out->n_hdrs == max_hdrs) {
            *why = "too many header lines";
            return RH_PE_TOO_MANY;
        }
        if ((rc = parse_header_line(line, &hdrs[out->n_hdrs], why)) != 0) return rc;
        out->n_hdrs++;
    }
    if (bad) {
        *why = "stray CR or NUL byte in a header line";
        return RH_PE_BAD;
    }
    return 0;
}

const char *rh_head_get(const rh_head *h, const char *name) {
    for (int k = 0; k < h->n_hdrs; k++)
        if (strcasecmp(h->hdrs[k].name, name) == 0) return h->hdrs[k].value;
    return NULL;
}

/* ---- framing ---- */

static int parse_length(const char *v, uint64_t *out) {
    uint64_t n = 0;
    if (!*v) return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > (UINT64_MAX - 9) / 10) return -1;
        n = n * 10 + (uint64_t)(*v - '0');
    }
    *out = n;
    return 0;
}

/* 1 when the comma-separated list v holds token (case-insensitive). */
static int list_has(const char *v, const char *token) {
    size_t tl = strlen(token);
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == tl && strncasecmp(p, token, n) == 0) return 1;
        p += n;
    }
    return 0;
}

static int framing_length(const rh_head *h, rh_framing *f, const char **why) {
    for (int k = 0; k < h->n_hdrs; k++) {
        if (strcasecmp(h->hdrs[k].name, "Content-Length") != 0) continue;
        uint64_t n;
        if (parse_length(h->hdrs[k].value, &n) != 0) {
            *why = "Content-Length is not a decimal number";
            return RH_PE_BAD;
        }
        if (f->has_length && n != f->length) {
            *why = "conflicting Content-Length headers";
            return RH_PE_BAD;
        }
        f->has_length = 1;
        f->length = n;
    }
    return 0;
}

static int framing_te(const rh_head *h, rh_framing *f, const char **why) {
    int n_te = 0;
    for (int k = 0; k < h->n_hdrs; k++) {
        if (strcasecmp(h->hdrs[k].name, "Transfer-Encoding") != 0) continue;
        if (++n_te > 1 || strcasecmp(h->hdrs[k].value, "chunked") != 0) {
            *why = "only Transfer-Encoding: chunked is supported";
            return RH_PE_TE;
        }
        f->chunked = 1;
    }
    if (f->chunked && (f->has_length || h->minor == 0)) {
        *why = f->has_length ? "both Transfer-Encoding and Content-Length"
                             : "Transfer-Encoding in an HTTP/1.0 request";
        return RH_PE_BAD;
    }
    return 0;
}

static int framing_host(const rh_head *h, const char **why) {
    int n = 0;
    for (int k = 0; k < h->n_hdrs; k++)
        n += strcasecmp(h->hdrs[k].name, "Host") == 0;
    if (n > 1 || (n == 0 && h->minor >= 1)) {
        *why = n ? "more than one Host header" : "HTTP/1.1 request without a Host header";
        return RH_PE_BAD;
    }
    return 0;
}

int rh_head_framing(const rh_head *h, rh_framing *f, const char **why) {
    memset(f, 0, sizeof *f);
    int rc = framing_length(h, f, why);
    if (!rc) rc = framing_te(h, f, why);
    if (!rc) rc = framing_host(h, why);
    if (rc) return rc;
    const char *conn = rh_head_get(h, "Connection");
    f->keep_alive = h->minor >= 1 && !(conn && list_has(conn, "close"));
    const char *expect = rh_head_get(h, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            *why = "unsupported Expect value (only 100-continue)";
            return RH_PE_EXPECT;
        }
        f->expect_100 = h->minor >= 1;
    }
    return 0;
}

/* ---- chunked bodies ---- */

enum {
    CK_SIZE,
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER,
    CK_END_LF,
    CK_DONE
};

#define CK_MAX_LINE 1024

void rh_chunked_init(rh_chunked *c, uint64_t max_total, size_t max_trailer) {
    memset(c, 0, sizeof *c);
    c->state = CK_SIZE;
    c->max = max_total;
    c->max_trailer = max_trailer;
}

static int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int ck_bad(rh_chunked *c, const char *why) {
    c->why = why;
    return RH_CK_BAD;
}

/* The size line ended: go to its data, or to the trailer after the last chunk. */
static int ck_size_done(rh_chunked *c) {
    if (!c->digits) return ck_bad(c, "chunk size line without a size");
    if (c->size > c->max - c->total) {
        c->why = "chunked body over the size limit";
        return RH_CK_TOO_LARGE;
    }
    c->state = c->size ? CK_DATA : CK_TRAILER;
    c->left = c->size;
    c->line_start = 1;
    return 0;
}

static int ck_size_byte(rh_chunked *c, unsigned char ch) {
    if (++c->line > CK_MAX_LINE) return ck_bad(c, "chunk size line too long");
    int v = hexval(ch);
    if (c->state == CK_SIZE && v >= 0) {
        if (++c->digits > 15) return ck_bad(c, "chunk size has too many digits");
        c->size = c->size * 16 + (uint64_t)v;
        return 0;
    }
    if (c->state == CK_SIZE_LF && ch != '\n') return ck_bad(c, "CR without LF after a chunk size");
    if (ch == '\n') return ck_size_done(c);
    if (ch == '\r') {
        c->state = CK_SIZE_LF;
        return 0;
    }
    if (c->state == CK_SIZE && ch != ';' && ch != ' ' && ch != '\t')
        return ck_bad(c, "chunk size is not hexadecimal");
    if (ch < 0x20 && ch != '\t') return ck_bad(c, "control byte in a chunk extension");
    c->state = CK_EXT;
    return 0;
}

static int ck_trailer_byte(rh_chunked *c, unsigned char ch) {
    if (c->state == CK_END_LF) {
        if (ch != '\n') return ck_bad(c, "CR without LF at the end of a chunked body");
        c->state = CK_DONE;
        return 0;
    }
    if (++c->trailer > c->max_trailer) return ck_bad(c, "chunked trailer too long");
    if (c->line_start && (ch == '\r' || ch == '\n')) {
        c->state = ch == '\r' ? CK_END_LF : CK_DONE;
        return 0;
    }
    c->line_start = ch == '\n';
    return 0;
}

static int ck_after_data(rh_chunked *c, unsigned char ch) {
    if (c->state == CK_DATA_CR && ch == '\r') {
        c->state = CK_DATA_LF;
        return 0;
    }
    if (ch != '\n') return ck_bad(c, "chunk data not followed by CRLF");
    c->state = CK_SIZE;
    c->size = 0;
    c->digits = 0;
    c->line = 0;
    return 0;
}

int rh_chunked_step(rh_chunked *c, const char *in, size_t n, size_t *used, size_t *data_len) {
    size_t i = 0;
    *data_len = 0;
    while (i < n && c->state != CK_DONE) {
        if (c->state == CK_DATA) {
            size_t take = c->left < n - i ? (size_t)c->left : n - i;
            c->left -= take;
            c->total += take;
            if (!c->left) c->state = CK_DATA_CR;
            *used = i + take;
            *data_len = take;
            return RH_CK_DATA;
        }
        unsigned char ch = (unsigned char)in[i++];
        int rc;
        if (c->state <= CK_SIZE_LF)
            rc = ck_size_byte(c, ch);
        else if (c->state <= CK_DATA_LF)
            rc = ck_after_data(c, ch);
        else
            rc = ck_trailer_byte(c, ch);
        if (rc) {
            *used = i;
            return rc;
        }
    }
    *used = i;
    return c->state == CK_DONE ? RH_CK_DONE : RH_CK_MORE;
}

/* ---- query strings ---- */

/* Percent-decodes src[0..n) into out (cap). Length, AFD_E_LIMIT or AFD_E_FORMAT. */
static int pct_decode(const char *src, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)src[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (n - i < 3) return AFD_E_FORMAT;
            int hi = hexval((unsigned char)src[i + 1]), lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return AFD_E_FORMAT;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap) return AFD_E_LIMIT;
        out[o++] = (char)ch;
    }
    if (cap) out[o] = 0;
    return (int)o;
}

int rh_query_param(const char *query, const char *name, char *out, size_t cap) {
    if (!query || !name) return AFD_E_NOTFOUND;
    for (const char *p = query; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t kn = eq ? (size_t)(eq - p) : n;
        char key[256];
        if (pct_decode(p, kn, key, sizeof key) >= 0 && strcmp(key, name) == 0) {
            if (!eq) return cap ? (out[0] = 0, 0) : AFD_E_LIMIT;
            return pct_decode(eq + 1, n - kn - 1, out, cap);
        }
        p += n + (p[n] == '&');
    }
    return AFD_E_NOTFOUND;
}

/* ---- request ids ---- */

int rh_req_id_ok(const char *s) {
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++)
        if (n >= RH_REQ_ID_MAX || (unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return 0;
    return n > 0;
}

void rh_req_id_make(char *dst, size_t cap) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* No entropy yet (early boot): time and a counter are unique enough for an id. */
        static _Atomic uint64_t seq;
        uint64_t a = afd_now_ns(), b = ++seq ^ ((uint64_t)time(NULL) << 20);
        memcpy(r, &a, 8);
        memcpy(r + 8, &b, 8);
    }
    static const char hex[] = "0123456789abcdef";
    char buf[4 + 32 + 1] = "req-";
    for (int k = 0; k < 16; k++) {
        buf[4 + 2 * k] = hex[r[k] >> 4];
        buf[5 + 2 * k] = hex[r[k] & 15];
    }
    buf[36] = 0;
    snprintf(dst, cap, "%s", buf);
}
