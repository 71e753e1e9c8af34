/* tok_decode.c: ids -> text (whole and incremental), per-token bytes and strings, vocabulary
 * accessors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tok_int.h"
#include "common/text/utf8.h"

/* ---- buffers ------------------------------------------------------------------------------ */

int tok_str_append(tok_str *s, const void *bytes, size_t n) {
    if (tok_grow((void **)&s->s, &s->cap, s->len + n + 1, 1))
        return -ENOMEM;
    if (n)
        memcpy(s->s + s->len, bytes, n);
    s->len += n;
    s->s[s->len] = '\0';
    return 0;
}

void tok_str_release(tok_str *s) {
    free(s->s);
    s->s = NULL;
    s->len = s->cap = 0;
}

/* ---- vocabulary --------------------------------------------------------------------------- */

static bool has(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_F_PRESENT);
}

int32_t tok_vocab_size(const tok_tokenizer *t) { return t->n_ids; }

int32_t tok_id(const tok_tokenizer *t, const char *name, size_t len) {
    return tok_piece_lookup(t, name, len);
}

int32_t tok_bos_id(const tok_tokenizer *t) { return t->bos_id; }
int32_t tok_eos_id(const tok_tokenizer *t) { return t->eos_id; }
const char *tok_chat_template(const tok_tokenizer *t) { return t->chat_template; }
size_t tok_max_token_bytes(const tok_tokenizer *t) { return t->max_bytes; }

bool tok_is_special(const tok_tokenizer *t, int32_t id) {
    return has(t, id) && (t->flags[id] & TOK_F_SPECIAL);
}

bool tok_is_added(const tok_tokenizer *t, int32_t id) {
    return has(t, id) && (t->flags[id] & TOK_F_ADDED);
}

int tok_token_bytes(const tok_tokenizer *t, int32_t id, const uint8_t **bytes, size_t *len) {
    if (!has(t, id))
        return AFD_E_NOTFOUND;
    *bytes = t->bytes_blob + t->bytes_off[id];
    *len = t->bytes_off[id + 1] - t->bytes_off[id];
    return 0;
}

int tok_token_piece(const tok_tokenizer *t, int32_t id, const char **piece, size_t *len) {
    if (!has(t, id))
        return AFD_E_NOTFOUND;
    *piece = t->piece_blob + t->piece_off[id];
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return 0;
}

/* Appends b[0..n) to out as valid UTF-8. */
static int append_repaired(tok_str *out, const uint8_t *b, size_t n) {
    if (tok_grow((void **)&out->s, &out->cap, out->len + UTF8_MAX_EXPANSION * n + 1, 1))
        return -ENOMEM;
    out->len += utf8_repair(b, n, (uint8_t *)out->s + out->len);
    out->s[out->len] = '\0';
    return 0;
}

int tok_token_text(const tok_tokenizer *t, int32_t id, tok_str *out) {
    const uint8_t *b;
    size_t n;
    int rc = tok_token_bytes(t, id, &b, &n);
    return rc ? rc : append_repaired(out, b, n);
}

/* ---- whole decode ------------------------------------------------------------------------- */

static int bad_id(const tok_tokenizer *t, int32_t id, size_t i, afd_err *err) {
    return afd_errf(err, AFD_E_NOTFOUND, "token id %d (at %zu) is not in the vocabulary (%d ids)",
                    id, i, t->n_ids);
}

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
               tok_str *out, afd_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has(t, ids[i]))
            return bad_id(t, ids[i], i, err);
        total += t->bytes_off[ids[i] + 1] - t->bytes_off[ids[i]];
    }
    uint8_t *raw = malloc(total + 1);
    if (!raw)
        return afd_errf(err, -ENOMEM, "decode: out of memory for %zu bytes", total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((flags & TOK_DEC_SKIP_SPECIAL) && (t->flags[id] & TOK_F_SPECIAL))
            continue;
        size_t len = t->bytes_off[id + 1] - t->bytes_off[id];
        memcpy(raw + k, t->bytes_blob + t->bytes_off[id], len);
        k += len;
    }
    int rc = append_repaired(out, raw, k);
    free(raw);
    return rc ? afd_errf(err, rc, "decode: out of memory") : 0;
}

/* ---- stream ------------------------------------------------------------------------------- */

void tok_stream_init(tok_stream *s, const tok_tokenizer *t, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->flags = flags;
}

size_t tok_stream_max_out(const tok_tokenizer *t) {
    return UTF8_MAX_EXPANSION * (t->max_bytes + 4) + 1;
}

bool tok_stream_pending(const tok_stream *s) { return s->npend > 0; }

/* How one push splits its input: the held bytes joined with the token's first bytes make one
 * character or one ill-formed part (`head`, hn bytes, taking `used` bytes of the token) -- or,
 * when the token is short and still leaves the character unfinished, everything is held
 * (`hold_all`). The rest of the token is written, but for an incomplete tail held back. */
typedef struct push_plan {
    uint8_t head[8];
    size_t hn, used, tail, need;
    bool hold_all;
} push_plan;

static void plan_push(const tok_stream *s, const uint8_t *b, size_t len, push_plan *p) {
    size_t np = s->npend, take = len < 4 ? len : 4;
    memset(p, 0, sizeof *p);
    if (np) {
        uint32_t cp;
        bool ok;
        memcpy(p->head, s->pend, np);
        memcpy(p->head + np, b, take);
        size_t all = np + take;
        if (utf8_incomplete_tail(p->head, all) == all) { /* only when len < 4 */
            p->hold_all = true;
            p->hn = all;
            return;
        }
        p->hn = utf8_next(p->head, all, &cp, &ok); /* >= np: the held bytes were a prefix */
        p->used = p->hn - np;
        p->need = ok ? p->hn : 3;
    }
    p->tail = utf8_incomplete_tail(b + p->used, len - p->used);
    p->need += utf8_repair_len(b + p->used, len - p->used - p->tail);
}

int tok_stream_push(tok_stream *s, int32_t id, char *out, size_t cap, size_t *n) {
    const tok_tokenizer *t = s->t;
    *n = 0;
    if (!has(t, id))
        return AFD_E_NOTFOUND;
    if ((s->flags & TOK_DEC_SKIP_SPECIAL) && (t->flags[id] & TOK_F_SPECIAL))
        return 0;
    const uint8_t *b = t->bytes_blob + t->bytes_off[id];
    size_t len = t->bytes_off[id + 1] - t->bytes_off[id];
    push_plan p;
    plan_push(s, b, len, &p);
    if (p.need > cap)
        return AFD_E_LIMIT;
    if (p.hold_all) {
        memcpy(s->pend, p.head, p.hn);
        s->npend = (uint8_t)p.hn;
        return 0;
    }
    size_t o = p.hn ? utf8_repair(p.head, p.hn, (uint8_t *)out) : 0;
    const uint8_t *rest = b + p.used;
    size_t rn = len - p.used - p.tail;
    o += utf8_repair(rest, rn, (uint8_t *)out + o);
    memcpy(s->pend, rest + rn, p.tail);
    s->npend = (uint8_t)p.tail;
    *n = o;
    return 0;
}

int tok_stream_flush(tok_stream *s, char *out, size_t cap, size_t *n) {
    *n = 0;
    if (!s->npend)
        return 0;
    if (cap < 3)
        return AFD_E_LIMIT;
    *n = utf8_encode(UTF8_REPLACEMENT, (uint8_t *)out);
    s->npend = 0;
    return 0;
}
