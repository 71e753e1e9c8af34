/* openai_resp.c: OpenAI response JSON (see openai.h, docs/api.md).
 *
 * A small append-only writer instead of a JSON tree: the field order is OpenAI's, numbers are
 * written the way OpenAI writes them (shortest float that reads back to the same value) and a
 * streaming chunk costs one buffer. The writer puts the comma before a value or key itself
 * (after anything but '{', '[' or ':'), so the builders read as a list of fields. An
 * allocation failure is sticky and makes the builder return NULL.
 */
#include "router/openai.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the writer ---- */

typedef struct jw {
    char *p;
    size_t len, cap;
    bool oom;
} jw;

static bool jw_reserve(jw *w, size_t n) {
    if (w->oom) return false;
    if (w->len + n + 1 <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            w->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(w->p, cap);
    if (!p) {
        w->oom = true;
        return false;
    }
    w->p = p;
    w->cap = cap;
    return true;
}

static void jw_raw(jw *w, const char *s, size_t n) {
    if (!jw_reserve(w, n)) return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void jw_lit(jw *w, const char *s) {
    jw_raw(w, s, strlen(s));
}

static void jw_sep(jw *w) {
    if (!w->len || w->oom) return;
    char c = w->p[w->len - 1];
    if (c != '{' && c != '[' && c != ':') jw_raw(w, ",", 1);
}

static void jw_open(jw *w, char c) {
    jw_sep(w);
    jw_raw(w, &c, 1);
}

static void jw_close(jw *w, char c) {
    jw_raw(w, &c, 1);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 (overlong, surrogate, > U+10FFFF,
 * truncated or stray continuation byte). */
size_t oa_utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000}; /* shortest form per length */
    size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || n < len) return 0;
    uint32_t cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = oa_utf8_seq(s + i, n - i))) return false;
    return true;
}

enum { BAD_REPLACE, BAD_HEX }; /* a stray byte becomes U+FFFD, or the text \xNN */

/* The inside of a JSON string. */
static void jw_chars(jw *w, const uint8_t *s, size_t n, int bad) {
    static const char hex[] = "0123456789abcdef";
    if (!jw_reserve(w, n + 8)) return;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            size_t j = i + 1; /* a run of plain ASCII at once */
            while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
                j++;
            jw_raw(w, (const char *)s + i, j - i);
            i = j;
            continue;
        }
        size_t k = c < 0x80 ? 1 : oa_utf8_seq(s + i, n - i);
        if (c == '"')
            jw_raw(w, "\\\"", 2);
        else if (c == '\\')
            jw_raw(w, "\\\\", 2);
        else if (c == '\n')
            jw_raw(w, "\\n", 2);
        else if (c == '\r')
            jw_raw(w, "\\r", 2);
        else if (c == '\t')
            jw_raw(w, "\\t", 2);
        else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jw_raw(w, u, 6);
        } else if (k) {
            jw_raw(w, (const char *)s + i, k);
        } else if (bad == BAD_HEX) {
            char x[5] = {'\\', '\\', 'x', hex[c >> 4], hex[c & 15]};
            jw_raw(w, x, 5);
        } else {
            jw_raw(w, "\xef\xbf\xbd", 3);
        }
        i += k ? k : 1;
    }
}

static void jw_str(jw *w, const char *s, size_t n) {
    jw_sep(w);
    jw_raw(w, "\"", 1);
    jw_chars(w, (const uint8_t *)s, n, BAD_REPLACE);
    jw_raw(w, "\"", 1);
}

static void jw_cstr(jw *w, const char *s) {
    jw_str(w, s, strlen(s));
}

static void jw_key(jw *w, const char *k) {
    jw_cstr(w, k);
    jw_raw(w, ":", 1);
}

static void jw_int(jw *w, int64_t v) {
    char b[24];
    jw_sep(w);
    jw_raw(w, b, (size_t)snprintf(b, sizeof b, "%" PRId64, v));
}

static void jw_null(jw *w) {
    jw_sep(w);
    jw_lit(w, "null");
}

/* A logprob: the shortest decimal that reads back as the same float; -9999 for anything
 * below it or not finite (OpenAI's "very unlikely"). */
static void jw_logprob(jw *w, float f) {
    char b[32];
    int n = 0;
    if (!isfinite(f) || f < -9999.0f) f = -9999.0f;
    for (int prec = 1; prec <= 9; prec++) {
        n = snprintf(b, sizeof b, "%.*g", prec, (double)f);
        if (strtof(b, NULL) == f) break;
    }
    jw_sep(w);
    jw_raw(w, b, (size_t)n);
}

static char *jw_done(jw *w, size_t *len) {
    if (!jw_reserve(w, 0)) {
        free(w->p);
        return NULL;
    }
    w->p[w->len] = 0;
    if (len) *len = w->len;
    return w->p;
}

/* ---- logprobs ---- */

/* Chat: the token as text; stray bytes as \xNN. */
static void lp_chat_token(jw *w, const uint8_t *b, uint32_t n) {
    jw_sep(w);
    jw_raw(w, "\"", 1);
    if (b) jw_chars(w, b, n, BAD_HEX);
    jw_raw(w, "\"", 1);
}

static void lp_bytes(jw *w, const uint8_t *b, uint32_t n) {
    if (!b) {
        jw_null(w);
        return;
    }
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++)
        jw_int(w, b[i]);
    jw_close(w, ']');
}

static void lp_chat_entry(jw *w, const uint8_t *b, uint32_t n, float lp) {
    jw_key(w, "token");
    lp_chat_token(w, b, n);
    jw_key(w, "logprob");
    jw_logprob(w, lp);
    jw_key(w, "bytes");
    lp_bytes(w, b, n);
}

/* {"content":[{token, logprob, bytes, top_logprobs:[{token, logprob, bytes}]}],"refusal":null} */
static void lp_chat(jw *w, const oa_lp_token *t, uint32_t n) {
    jw_open(w, '{');
    jw_key(w, "content");
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++) {
        jw_open(w, '{');
        lp_chat_entry(w, t[i].bytes, t[i].len, t[i].logprob);
        jw_key(w, "top_logprobs");
        jw_open(w, '[');
        for (uint32_t j = 0; j < t[i].n_top; j++) {
            jw_open(w, '{');
            lp_chat_entry(w, t[i].top[j].bytes, t[i].top[j].len, t[i].top[j].logprob);
            jw_close(w, '}');
        }
        jw_close(w, ']');
        jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_key(w, "refusal");
    jw_null(w);
    jw_close(w, '}');
}

/* Completions: the token as text, or "bytes:\xNN..." when not valid UTF-8 alone. */
static void lp_text_token(jw *w, const uint8_t *b, uint32_t n) {
    jw_sep(w);
    jw_raw(w, "\"", 1);
    if (b && utf8_valid(b, n)) {
        jw_chars(w, b, n, BAD_REPLACE);
    } else if (b) {
        jw_lit(w, "bytes:");
        for (uint32_t i = 0; i < n; i++) {
            char x[8];
            snprintf(x, sizeof x, "\\\\x%02x", b[i]); /* every byte as \xNN */
            jw_lit(w, x);
        }
    }
    jw_raw(w, "\"", 1);
}

static bool same_bytes(const oa_lp_cand *a, const oa_lp_cand *b) {
    return a->len == b->len &&
           (a->bytes == b->bytes || (a->bytes && b->bytes && !memcmp(a->bytes, b->bytes, a->len)));
}

/* One top_logprobs object; a repeated token string keeps its first (most likely) value. */
static void lp_text_top(jw *w, const oa_lp_token *t) {
    jw_open(w, '{');
    for (uint32_t j = 0; j < t->n_top; j++) {
        bool dup = false;
        for (uint32_t k = 0; k < j && !dup; k++)
            dup = same_bytes(&t->top[k], &t->top[j]);
        if (dup) continue;
        lp_text_token(w, t->top[j].bytes, t->top[j].len);
        jw_raw(w, ":", 1);
        jw_logprob(w, t->top[j].logprob);
    }
    jw_close(w, '}');
}

uint64_t oa_text_chars(const char *bytes, size_t n) {
    uint64_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((uint8_t)bytes[i] & 0xc0) != 0x80;
    return c;
}

/* {"tokens":[...],"token_logprobs":[...],"top_logprobs":[{...}],"text_offset":[...]} */
static void lp_text(jw *w, const oa_lp_token *t, uint32_t n, uint64_t off) {
    jw_open(w, '{');
    jw_key(w, "tokens");
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++)
        lp_text_token(w, t[i].bytes, t[i].len);
    jw_close(w, ']');
    jw_key(w, "token_logprobs");
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++)
        jw_logprob(w, t[i].logprob);
    jw_close(w, ']');
    jw_key(w, "top_logprobs");
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++)
        lp_text_top(w, &t[i]);
    jw_close(w, ']');
    jw_key(w, "text_offset");
    jw_open(w, '[');
    for (uint32_t i = 0; i < n; i++) {
        jw_int(w, (int64_t)off);
        if (t[i].bytes) off += oa_text_chars((const char *)t[i].bytes, t[i].len);
    }
    jw_close(w, ']');
    jw_close(w, '}');
}

static void lp_any(jw *w, oa_endpoint ep, bool on, const oa_lp_token *t, uint32_t n, uint64_t off) {
    if (!on)
        jw_null(w);
    else if (ep == OA_CHAT)
        lp_chat(w, t, n);
    else
        lp_text(w, t, n, off);
}

/* ---- responses ---- */

static void finish_reason(jw *w, oa_finish f) {
    if (f == OA_FINISH_STOP)
        jw_cstr(w, "stop");
    else if (f == OA_FINISH_LENGTH)
        jw_cstr(w, "length");
    else
        jw_null(w);
}

static void usage(jw *w, const oa_usage *u) {
    jw_open(w, '{');
    jw_key(w, "prompt_tokens");
    jw_int(w, u->prompt_tokens);
    jw_key(w, "completion_tokens");
    jw_int(w, u->completion_tokens);
    jw_key(w, "total_tokens");
    jw_int(w, u->prompt_tokens + u->completion_tokens);
    jw_close(w, '}');
}

/* {"id","object","created","model"[,"system_fingerprint"] */
static void head(jw *w, const oa_meta *m, const char *object) {
    jw_open(w, '{');
    jw_key(w, "id");
    jw_cstr(w, m->id ? m->id : "");
    jw_key(w, "object");
    jw_cstr(w, object);
    jw_key(w, "created");
    jw_int(w, m->created);
    jw_key(w, "model");
    jw_cstr(w, m->model ? m->model : "");
    if (m->system_fingerprint) {
        jw_key(w, "system_fingerprint");
        jw_cstr(w, m->system_fingerprint);
    }
}

static void chat_choice(jw *w, const oa_choice *c) {
    jw_open(w, '{');
    jw_key(w, "index");
    jw_int(w, c->index);
    jw_key(w, "message");
    jw_open(w, '{');
    jw_key(w, "role");
    jw_cstr(w, "assistant");
    jw_key(w, "content");
    jw_str(w, c->text ? c->text : "", c->text ? c->text_len : 0);
    jw_key(w, "refusal");
    jw_null(w);
    jw_close(w, '}');
    jw_key(w, "logprobs");
    lp_any(w, OA_CHAT, c->logprobs, c->lp, c->n_lp, 0);
    jw_key(w, "finish_reason");
    finish_reason(w, c->finish);
    jw_close(w, '}');
}

/* A completions choice (full or chunk): {"text","index","logprobs","finish_reason"}. */
static void text_choice(jw *w, uint32_t index, const char *text, size_t n, bool on,
                        const oa_lp_token *lp, uint32_t n_lp, uint64_t off, oa_finish f) {
    jw_open(w, '{');
    jw_key(w, "text");
    jw_str(w, text ? text : "", text ? n : 0);
    jw_key(w, "index");
    jw_int(w, index);
    jw_key(w, "logprobs");
    lp_any(w, OA_COMPLETIONS, on, lp, n_lp, off);
    jw_key(w, "finish_reason");
    finish_reason(w, f);
    jw_close(w, '}');
}

char *oa_response_json(const oa_meta *m, const oa_choice *choices, size_t n, const oa_usage *u,
                       size_t *len) {
    jw w = {0};
    bool chat = m->endpoint == OA_CHAT;
    head(&w, m, chat ? "chat.completion" : "text_completion");
    jw_key(&w, "choices");
    jw_open(&w, '[');
    for (size_t i = 0; i < n; i++) {
        const oa_choice *c = &choices[i];
        if (chat)
            chat_choice(&w, c);
        else
            text_choice(&w, c->index, c->text, c->text_len, c->logprobs, c->lp, c->n_lp,
                        c->text_offset0, c->finish);
    }
    jw_close(&w, ']');
    if (u) {
        jw_key(&w, "usage");
        usage(&w, u);
    }
    jw_close(&w, '}');
    return jw_done(&w, len);
}

static void chat_delta(jw *w, const oa_delta *d) {
    jw_open(w, '{');
    if (d->role) {
        jw_key(w, "role");
        jw_cstr(w, "assistant");
        jw_key(w, "content");
        jw_cstr(w, "");
        jw_key(w, "refusal");
        jw_null(w);
    } else if (d->text_len || d->finish == OA_FINISH_NONE) {
        jw_key(w, "content");
        jw_str(w, d->text ? d->text : "", d->text ? d->text_len : 0);
    }
    jw_close(w, '}');
}

char *oa_chunk_json(const oa_meta *m, const oa_delta *d, size_t *len) {
    jw w = {0};
    bool chat = m->endpoint == OA_CHAT;
    head(&w, m, chat ? "chat.completion.chunk" : "text_completion");
    jw_key(&w, "choices");
    jw_open(&w, '[');
    if (chat) {
        jw_open(&w, '{');
        jw_key(&w, "index");
        jw_int(&w, d->index);
        jw_key(&w, "delta");
        chat_delta(&w, d);
        jw_key(&w, "logprobs");
        lp_any(&w, OA_CHAT, d->logprobs, d->lp, d->n_lp, 0);
        jw_key(&w, "finish_reason");
        finish_reason(&w, d->finish);
        jw_close(&w, '}');
    } else {
        text_choice(&w, d->index, d->text, d->text_len, d->logprobs, d->lp, d->n_lp,
                    d->text_offset0, d->finish);
    }
    jw_close(&w, ']');
    if (m->include_usage) {
        jw_key(&w, "usage");
        jw_null(&w);
    }
    jw_close(&w, '}');
    return jw_done(&w, len);
}

char *oa_chunk_usage_json(const oa_meta *m, const oa_usage *u, size_t *len) {
    jw w = {0};
    head(&w, m, m->endpoint == OA_CHAT ? "chat.completion.chunk" : "text_completion");
    jw_key(&w, "choices");
    jw_open(&w, '[');
    jw_close(&w, ']');
    jw_key(&w, "usage");
    usage(&w, u);
    jw_close(&w, '}');
    return jw_done(&w, len);
}

/* ---- ids, models, tokenize, errors ---- */

void oa_make_id(oa_endpoint ep, const uint64_t rnd[3], char out[OA_ID_MAX]) {
    static const char a62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const char *prefix = ep == OA_CHAT ? "chatcmpl-" : "cmpl-";
    size_t at = strlen(prefix);
    memcpy(out, prefix, at);
    uint64_t x = 0;
    for (int i = 0; i < 29; i++) { /* 10 characters from each word: 62^10 < 2^64 */
        if (i % 10 == 0) x = rnd[i / 10];
        out[at++] = a62[x % 62];
        x /= 62;
    }
    out[at] = 0;
}

static void model_obj(jw *w, const oa_model_info *m) {
    jw_open(w, '{');
    jw_key(w, "id");
    jw_cstr(w, m->id ? m->id : "");
    jw_key(w, "object");
    jw_cstr(w, "model");
    jw_key(w, "created");
    jw_int(w, m->created);
    jw_key(w, "owned_by");
    jw_cstr(w, m->owned_by ? m->owned_by : "");
    jw_close(w, '}');
}

char *oa_models_json(const oa_model_info *models, size_t n, size_t *len) {
    jw w = {0};
    jw_open(&w, '{');
    jw_key(&w, "object");
    jw_cstr(&w, "list");
    jw_key(&w, "data");
    jw_open(&w, '[');
    for (size_t i = 0; i < n; i++)
        model_obj(&w, &models[i]);
    jw_close(&w, ']');
    jw_close(&w, '}');
    return jw_done(&w, len);
}

char *oa_model_json(const oa_model_info *model, size_t *len) {
    jw w = {0};
    model_obj(&w, model);
    return jw_done(&w, len);
}

char *oa_tokenize_json(const int32_t *ids, size_t n, int64_t max_model_len, size_t *len) {
    jw w = {0};
    jw_open(&w, '{');
    jw_key(&w, "count");
    jw_int(&w, (int64_t)n);
    jw_key(&w, "max_model_len");
    jw_int(&w, max_model_len);
    jw_key(&w, "tokens");
    jw_open(&w, '[');
    for (size_t i = 0; i < n; i++)
        jw_int(&w, ids[i]);
    jw_close(&w, ']');
    jw_close(&w, '}');
    return jw_done(&w, len);
}

char *oa_detokenize_json(const char *text, size_t n, size_t *len) {
    jw w = {0};
    jw_open(&w, '{');
    jw_key(&w, "prompt");
    jw_str(&w, text ? text : "", text ? n : 0);
    jw_close(&w, '}');
    return jw_done(&w, len);
}

char *oa_error_json(const oa_error *e, size_t *len) {
    jw w = {0};
    jw_open(&w, '{');
    jw_key(&w, "error");
    jw_open(&w, '{');
    jw_key(&w, "message");
    jw_cstr(&w, e->message);
    jw_key(&w, "type");
    jw_cstr(&w, e->type ? e->type : "invalid_request_error");
    jw_key(&w, "param");
    if (e->param[0])
        jw_cstr(&w, e->param);
    else
        jw_null(&w);
    jw_key(&w, "code");
    if (e->code)
        jw_cstr(&w, e->code);
    else
        jw_null(&w);
    jw_close(&w, '}');
    jw_close(&w, '}');
    return jw_done(&w, len);
}
