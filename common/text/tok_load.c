/* tok_load.c: tokenizer.json (+ tokenizer_config.json) -> tok_tokenizer.
 *
 * Order: read the model (vocab, options), place every id's piece (vocab string or added-token
 * content) in one blob, index pieces by hash, derive each id's bytes, find the 256 byte tokens,
 * load the merges, then the pipeline (normalizer, pre_tokenizer, decoder), the added-token
 * trie, and the config. Every check names the file and the field; nothing is trusted before it
 * is checked (types, id ranges, lengths, duplicates).
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/alloc.h"
#include "common/text/tok_int.h"
#include "common/text/utf8.h"

#define GPT2_PATTERN                                                                               \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define WORD_CHAR_PATTERN "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]"

/* ---- shared helpers ----------------------------------------------------------------------- */

uint64_t tok_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

int tok_grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    size_t bytes;
    if (afd_mul_size(ncap, size, &bytes) != 0)
        return -ENOMEM;
    void *q = realloc(*p, bytes);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = ncap;
    return 0;
}

static bool byte_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_cp(uint8_t b) {
    if (byte_printable(b))
        return b;
    uint32_t rank = 0; /* how many non-printable bytes come before b */
    for (unsigned c = 0; c < b; c++)
        rank += !byte_printable(c);
    return 256 + rank;
}

int tok_cp_byte(uint32_t cp) {
    if (cp < 256)
        return byte_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t rank = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_printable(c) && rank-- == 0)
            return (int)c;
    return -1;
}

int32_t tok_piece_lookup(const tok_tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)tok_hash(s, n) & t->phash_mask;
    for (;;) {
        int32_t id = t->phash[i];
        if (id < 0)
            return AFD_E_NOTFOUND;
        uint32_t off = t->piece_off[id], len = t->piece_off[id + 1] - off;
        if (len == n && memcmp(t->piece_blob + off, s, n) == 0)
            return id;
        i = (i + 1) & t->phash_mask;
    }
}

/* ---- load context ------------------------------------------------------------------------- */

typedef struct ld {
    tok_tokenizer *t;
    const char *what; /* file name for messages */
    afd_err *err;
    const char **src; /* [n_ids] piece text during placement (borrowed from the JSON) */
    uint32_t *len;    /* [n_ids] */
} ld;

static int bad(ld *L, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(ld *L, int code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return afd_errf(L->err, code, "%s: %s", L->what, msg);
}

static int get_bool(ld *L, json_t *obj, const char *key, bool dflt, bool *out, const char *ctx) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return bad(L, AFD_E_FORMAT, "%s.%s is not a boolean", ctx, key);
    *out = json_is_true(v);
    return 0;
}

/* ---- vocabulary and added tokens ---------------------------------------------------------- */

static int check_id(ld *L, json_t *v, const char *ctx, int32_t *id) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= TOK_MAX_VOCAB)
        return bad(L, json_is_integer(v) && json_integer_value(v) > 0 ? AFD_E_LIMIT : AFD_E_FORMAT,
                   "%s: id is not an integer in [0, %d)", ctx, TOK_MAX_VOCAB);
    *id = (int32_t)json_integer_value(v);
    return 0;
}

static int check_text(ld *L, size_t n, const char *ctx) {
    if (n == 0)
        return bad(L, AFD_E_FORMAT, "%s: empty token", ctx);
    if (n > TOK_MAX_TOKEN_BYTES)
        return bad(L, AFD_E_LIMIT, "%s: token of %zu bytes (limit %d)", ctx, n,
                   TOK_MAX_TOKEN_BYTES);
    return 0;
}

/* First pass: types, ranges, the highest id. */
static int scan_ids(ld *L, json_t *vocab, json_t *added, int32_t *n_ids) {
    int32_t max = -1, id;
    const char *key;
    json_t *v;
    char ctx[96];
    json_object_foreach(vocab, key, v) {
        snprintf(ctx, sizeof ctx, "model.vocab[\"%.40s\"]", key);
        int rc = check_id(L, v, ctx, &id);
        if (!rc)
            rc = check_text(L, strlen(key), ctx);
        if (rc)
            return rc;
        max = id > max ? id : max;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        snprintf(ctx, sizeof ctx, "added_tokens[%zu]", i);
        json_t *c = json_object_get(v, "content");
        if (!json_is_object(v) || !json_is_string(c))
            return bad(L, AFD_E_FORMAT, "%s: not an object with a string \"content\"", ctx);
        int rc = check_id(L, json_object_get(v, "id"), ctx, &id);
        if (!rc)
            rc = check_text(L, json_string_length(c), ctx);
        if (rc)
            return rc;
        max = id > max ? id : max;
    }
    if (max < 0)
        return bad(L, AFD_E_FORMAT, "model.vocab is empty");
    *n_ids = max + 1;
    return 0;
}

static int place_vocab(ld *L, json_t *vocab) {
    tok_tokenizer *t = L->t;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (t->flags[id])
            return bad(L, AFD_E_FORMAT, "model.vocab: id %d is given to \"%.60s\" and \"%.60s\"",
                       id, L->src[id], key);
        t->flags[id] = TOK_F_PRESENT | TOK_F_VOCAB;
        L->src[id] = key;
        L->len[id] = (uint32_t)strlen(key);
    }
    return 0;
}

static int added_flags(ld *L, json_t *v, tok_added *a, const char *ctx) {
    int rc = get_bool(L, v, "special", false, &a->special, ctx);
    if (!rc)
        rc = get_bool(L, v, "normalized", !a->special, &a->normalized, ctx);
    if (!rc)
        rc = get_bool(L, v, "lstrip", false, &a->lstrip, ctx);
    if (!rc)
        rc = get_bool(L, v, "rstrip", false, &a->rstrip, ctx);
    if (!rc)
        rc = get_bool(L, v, "single_word", false, &a->single_word, ctx);
    return rc;
}

static int place_added(ld *L, json_t *added) {
    tok_tokenizer *t = L->t;
    size_t i;
    json_t *v;
    t->added = xcalloc(json_array_size(added) + 1, sizeof *t->added);
    json_array_foreach(added, i, v) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "added_tokens[%zu]", i);
        tok_added *a = &t->added[t->n_added];
        json_t *c = json_object_get(v, "content");
        a->id = (int32_t)json_integer_value(json_object_get(v, "id"));
        int rc = added_flags(L, v, a, ctx);
        if (rc)
            return rc;
        const char *s = json_string_value(c);
        size_t n = json_string_length(c);
        if (t->flags[a->id] & TOK_F_ADDED)
            return bad(L, AFD_E_FORMAT, "%s: id %d is already added token \"%.60s\"", ctx, a->id,
                       L->src[a->id]);
        if ((t->flags[a->id] & TOK_F_VOCAB) && (L->len[a->id] != n || memcmp(L->src[a->id], s, n)))
            return bad(L, AFD_E_FORMAT, "%s: \"%.60s\" has id %d, which model.vocab gives to \"%.60s\"",
                       ctx, s, a->id, L->src[a->id]);
        t->flags[a->id] |= TOK_F_PRESENT | TOK_F_ADDED | (a->special ? TOK_F_SPECIAL : 0);
        L->src[a->id] = s;
        L->len[a->id] = (uint32_t)n;
        t->n_added++;
    }
    return 0;
}

/* Copies every piece into one blob. */
static int build_pieces(ld *L) {
    tok_tokenizer *t = L->t;
    size_t total = 0;
    for (int32_t id = 0; id < t->n_ids; id++)
        total += L->len[id];
    if (total > UINT32_MAX)
        return bad(L, AFD_E_LIMIT, "vocabulary text of %zu bytes", total);
    t->piece_off = xmalloc(((size_t)t->n_ids + 1) * sizeof *t->piece_off);
    t->piece_blob = xmalloc(total + 1);
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
        t->piece_off[id] = off;
        if (L->len[id])
            memcpy(t->piece_blob + off, L->src[id], L->len[id]);
        off += L->len[id];
    }
    t->piece_off[t->n_ids] = off;
    for (int i = 0; i < t->n_added; i++) {
        t->added[i].off = t->piece_off[t->added[i].id];
        t->added[i].len = L->len[t->added[i].id];
    }
    return 0;
}

static int build_phash(ld *L) {
    tok_tokenizer *t = L->t;
    uint32_t size = 16;
    while (size < 2u * (uint32_t)t->n_ids)
        size *= 2;
    t->phash = xmalloc(size * sizeof *t->phash);
    memset(t->phash, 0xFF, size * sizeof *t->phash);
    t->phash_mask = size - 1;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!t->flags[id])
            continue;
        const char *s = t->piece_blob + t->piece_off[id];
        size_t n = t->piece_off[id + 1] - t->piece_off[id];
        int32_t other = tok_piece_lookup(t, s, n);
        if (other >= 0)
            return bad(L, AFD_E_FORMAT, "token \"%.*s\" has two ids, %d and %d",
                       (int)(n > 60 ? 60 : n), s, other, id);
        uint32_t i = (uint32_t)tok_hash(s, n) & t->phash_mask;
        while (t->phash[i] >= 0)
            i = (i + 1) & t->phash_mask;
        t->phash[i] = id;
    }
    return 0;
}

/* A vocab string's bytes: each character through the byte-level map; a string with a character
 * outside the map stands for its own UTF-8 bytes (as HF's ByteLevel decoder does). */
static size_t piece_bytes(const char *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        bool ok;
        i += utf8_next((const uint8_t *)s + i, n - i, &cp, &ok);
        int b = ok ? tok_cp_byte(cp) : -1;
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (uint8_t)b;
    }
    return o;
}

static void build_bytes(tok_tokenizer *t) {
    t->bytes_off = xmalloc(((size_t)t->n_ids + 1) * sizeof *t->bytes_off);
    t->bytes_blob = xmalloc((size_t)t->piece_off[t->n_ids] + 1);
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
        t->bytes_off[id] = off;
        const char *s = t->piece_blob + t->piece_off[id];
        size_t n = t->piece_off[id + 1] - t->piece_off[id], m = n;
        if (t->flags[id] & TOK_F_ADDED)
            memcpy(t->bytes_blob + off, s, n);
        else
            m = piece_bytes(s, n, t->bytes_blob + off);
        off += (uint32_t)m;
        if (m > t->max_bytes)
            t->max_bytes = m;
    }
    t->bytes_off[t->n_ids] = off;
}

static int vocab_lookup(ld *L, const char *s, size_t n, int32_t *id) {
    *id = tok_piece_lookup(L->t, s, n);
    return *id >= 0 && (L->t->flags[*id] & TOK_F_VOCAB) ? 0 : AFD_E_NOTFOUND;
}

static int find_byte_ids(ld *L) {
    for (int b = 0; b < 256; b++) {
        uint8_t s[4];
        size_t n = utf8_encode(tok_byte_cp((uint8_t)b), s);
        if (vocab_lookup(L, (const char *)s, n, &L->t->byte_id[b]) != 0)
            return bad(L, AFD_E_UNSUPPORTED,
                       "model.vocab has no token \"%.*s\" for byte 0x%02X: not a byte-level BPE "
                       "vocabulary",
                       (int)n, (const char *)s, b);
    }
    return 0;
}

/* ---- merges ------------------------------------------------------------------------------- */

static int merge_parts(ld *L, json_t *m, size_t i, const char **a, size_t *na, const char **b,
                       size_t *nb) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        size_t n = json_string_length(m);
        if (!sp || sp == s || (size_t)(sp - s) + 1 >= n || memchr(sp + 1, ' ', n - (sp - s) - 1))
            return bad(L, AFD_E_FORMAT, "model.merges[%zu]: \"%.60s\" is not \"A B\"", i, s);
        *a = s, *na = (size_t)(sp - s), *b = sp + 1, *nb = n - *na - 1;
        return 0;
    }
    json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(x) || !json_is_string(y))
        return bad(L, AFD_E_FORMAT, "model.merges[%zu]: neither \"A B\" nor [\"A\", \"B\"]", i);
    *a = json_string_value(x), *na = json_string_length(x);
    *b = json_string_value(y), *nb = json_string_length(y);
    return 0;
}

static void merge_put(tok_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t res) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->mmask;
    while (t->mres[i] >= 0 && t->mkey[i] != key)
        i = (i + 1) & t->mmask;
    t->mkey[i] = key; /* a repeated pair keeps its last rank, as HF and transformers.js do */
    t->mrank[i] = rank;
    t->mres[i] = res;
}

static int load_merge(ld *L, json_t *m, size_t i) {
    const char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int32_t ia, ib, ir;
    int rc = merge_parts(L, m, i, &a, &na, &b, &nb);
    if (rc)
        return rc;
    if (na + nb > TOK_MAX_TOKEN_BYTES)
        return bad(L, AFD_E_LIMIT, "model.merges[%zu]: merged token over %d bytes", i,
                   TOK_MAX_TOKEN_BYTES);
    char cat[TOK_MAX_TOKEN_BYTES];
    memcpy(cat, a, na);
    memcpy(cat + na, b, nb);
    int ra = vocab_lookup(L, a, na, &ia), rb = ra ? 0 : vocab_lookup(L, b, nb, &ib);
    if (ra || rb)
        return bad(L, AFD_E_FORMAT, "model.merges[%zu]: \"%.*s\" is not in model.vocab", i,
                   (int)(ra ? na : nb), ra ? a : b);
    if (vocab_lookup(L, cat, na + nb, &ir))
        return bad(L, AFD_E_FORMAT, "model.merges[%zu]: the merged token \"%.*s\" is not in "
                   "model.vocab", i, (int)(na + nb), cat);
    merge_put(L->t, ia, ib, (uint32_t)i, ir);
    return 0;
}

static int load_merges(ld *L, json_t *merges) {
    tok_tokenizer *t = L->t;
    size_t n = json_array_size(merges);
    if (n > (size_t)TOK_MAX_VOCAB * 4)
        return bad(L, AFD_E_LIMIT, "model.merges: %zu merges", n);
    uint32_t size = 16;
    while (size < 2 * n)
        size *= 2;
    t->mkey = xmalloc(size * sizeof *t->mkey);
    t->mrank = xmalloc(size * sizeof *t->mrank);
    t->mres = xmalloc(size * sizeof *t->mres);
    memset(t->mres, 0xFF, size * sizeof *t->mres);
    t->mmask = size - 1;
    t->n_merges = n;
    for (size_t i = 0; i < n; i++) {
        int rc = load_merge(L, json_array_get(merges, i), i);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- model -------------------------------------------------------------------------------- */

static int model_options(ld *L, json_t *model) {
    json_t *type = json_object_get(model, "type");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), "BPE") == 0))
        return bad(L, AFD_E_UNSUPPORTED, "model.type %s is not supported (only BPE)",
                   json_is_string(type) ? json_string_value(type) : "(not a string)");
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0))
        return bad(L, AFD_E_UNSUPPORTED, "model.dropout is not supported (must be null)");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, affixes[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return bad(L, AFD_E_UNSUPPORTED, "model.%s is not supported (must be null)",
                       affixes[i]);
    }
    if (!json_is_object(json_object_get(model, "vocab")))
        return bad(L, AFD_E_FORMAT, "model.vocab is missing or not an object");
    if (!json_is_array(json_object_get(model, "merges")))
        return bad(L, AFD_E_FORMAT, "model.merges is missing or not an array");
    return get_bool(L, model, "ignore_merges", false, &L->t->ignore_merges, "model");
}

static int load_model(ld *L, json_t *root) {
    json_t *model = json_object_get(root, "model");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model))
        return bad(L, AFD_E_FORMAT, "\"model\" is missing or not an object");
    if (added && !json_is_null(added) && !json_is_array(added))
        return bad(L, AFD_E_FORMAT, "\"added_tokens\" is not an array");
    int rc = model_options(L, model);
    json_t *vocab = json_object_get(model, "vocab");
    tok_tokenizer *t = L->t;
    if (!rc)
        rc = scan_ids(L, vocab, added, &t->n_ids);
    if (rc)
        return rc;
    t->flags = xcalloc((size_t)t->n_ids, 1);
    L->src = xcalloc((size_t)t->n_ids, sizeof *L->src);
    L->len = xcalloc((size_t)t->n_ids, sizeof *L->len);
    rc = place_vocab(L, vocab);
    if (!rc)
        rc = place_added(L, added);
    if (!rc)
        rc = build_pieces(L);
    if (!rc)
        rc = build_phash(L);
    if (rc)
        return rc;
    build_bytes(t);
    rc = find_byte_ids(L);
    return rc ? rc : load_merges(L, json_object_get(model, "merges"));
}

/* ---- pipeline ----------------------------------------------------------------------------- */

static const char *type_of(json_t *o) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "(no type)";
}

static int check_normalizer(ld *L, json_t *n, int depth) {
    if (!n || json_is_null(n))
        return 0;
    if (!json_is_object(n))
        return bad(L, AFD_E_FORMAT, "normalizer is not an object");
    json_t *list = json_object_get(n, "normalizers");
    if (strcmp(type_of(n), "Sequence") != 0 || !json_is_array(list) || depth > 4)
        return bad(L, AFD_E_UNSUPPORTED,
                   "normalizer %s is not supported (only none or an empty Sequence)", type_of(n));
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        int rc = check_normalizer(L, v, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int split_behavior(ld *L, json_t *v, int *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *s = json_string_value(v);
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return bad(L, AFD_E_FORMAT, "pre_tokenizer Split: behavior %s is not one of Removed, "
               "Isolated, MergedWithPrevious, MergedWithNext, Contiguous", s ? s : "(missing)");
}

static int add_split(ld *L, json_t *o, tok_step *st) {
    json_t *pat = json_object_get(o, "pattern");
    json_t *rx = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
    if (!json_is_string(rx) && !json_is_string(str))
        return bad(L, AFD_E_FORMAT, "pre_tokenizer Split: pattern is neither {\"Regex\": ...} "
                   "nor {\"String\": ...}");
    st->kind = TOK_STEP_SPLIT;
    int rc = split_behavior(L, json_object_get(o, "behavior"), &st->behavior);
    if (!rc)
        rc = get_bool(L, o, "invert", false, &st->invert, "pre_tokenizer Split");
    json_t *p = rx ? rx : str;
    char what[300];
    snprintf(what, sizeof what, "%s: pre_tokenizer Split", L->what);
    if (!rc && json_string_length(p) == 0)
        rc = bad(L, AFD_E_FORMAT, "pre_tokenizer Split: empty pattern");
    if (!rc)
        rc = tok_regex_compile(json_string_value(p), json_string_length(p), !rx, &st->re,
                               &st->jit, what, L->err);
    return rc;
}

static int add_bytelevel(ld *L, json_t *o, tok_step *st) {
    bool use_regex = true;
    st->kind = TOK_STEP_BYTELEVEL;
    int rc = get_bool(L, o, "add_prefix_space", true, &st->add_prefix_space,
                      "pre_tokenizer ByteLevel");
    if (!rc)
        rc = get_bool(L, o, "use_regex", true, &use_regex, "pre_tokenizer ByteLevel");
    if (!rc && use_regex)
        rc = tok_regex_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), false, &st->re, &st->jit,
                               "ByteLevel", L->err);
    return rc;
}

static int add_pre(ld *L, json_t *o, int depth) {
    tok_tokenizer *t = L->t;
    if (!json_is_object(o))
        return bad(L, AFD_E_FORMAT, "pre_tokenizer is missing or not an object");
    const char *type = type_of(o);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(o, "pretokenizers"), *v;
        size_t i;
        if (!json_is_array(list) || depth > 4)
            return bad(L, AFD_E_FORMAT, "pre_tokenizer Sequence: no \"pretokenizers\" array");
        json_array_foreach(list, i, v) {
            int rc = add_pre(L, v, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (t->n_steps == TOK_MAX_STEPS)
        return bad(L, AFD_E_LIMIT, "pre_tokenizer: more than %d steps", TOK_MAX_STEPS);
    if (t->n_steps > 0 && t->steps[t->n_steps - 1].kind == TOK_STEP_BYTELEVEL)
        return bad(L, AFD_E_UNSUPPORTED, "pre_tokenizer: %s after ByteLevel is not supported "
                   "(ByteLevel must be the last step)", type);
    tok_step *st = &t->steps[t->n_steps++];
    if (strcmp(type, "Split") == 0)
        return add_split(L, o, st);
    if (strcmp(type, "ByteLevel") == 0)
        return add_bytelevel(L, o, st);
    t->n_steps--;
    return bad(L, AFD_E_UNSUPPORTED, "pre_tokenizer %s is not supported (Sequence, Split, "
               "ByteLevel)", type);
}

static int load_pipeline(ld *L, json_t *root) {
    tok_tokenizer *t = L->t;
    int rc = check_normalizer(L, json_object_get(root, "normalizer"), 0);
    if (!rc)
        rc = add_pre(L, json_object_get(root, "pre_tokenizer"), 0);
    if (rc)
        return rc;
    if (t->n_steps == 0 || t->steps[t->n_steps - 1].kind != TOK_STEP_BYTELEVEL)
        return bad(L, AFD_E_UNSUPPORTED, "pre_tokenizer has no ByteLevel step: only byte-level "
                   "BPE is supported");
    json_t *dec = json_object_get(root, "decoder");
    if (!json_is_object(dec) || strcmp(type_of(dec), "ByteLevel") != 0)
        return bad(L, AFD_E_UNSUPPORTED, "decoder %s is not supported (only ByteLevel)",
                   json_is_object(dec) ? type_of(dec) : "(missing)");
    return 0;
}

/* ---- added-token trie --------------------------------------------------------------------- */

static int32_t trie_child(tok_tokenizer *t, int32_t node, uint8_t b, bool create) {
    int32_t c = t->trie[node].child;
    while (c >= 0 && t->trie[c].byte != b)
        c = t->trie[c].sibling;
    if (c >= 0 || !create)
        return c;
    c = t->n_trie++;
    t->trie[c] = (tok_trie_node){.child = -1, .sibling = t->trie[node].child, .added = -1,
                                 .byte = b};
    t->trie[node].child = c;
    return c;
}

static int build_trie(ld *L) {
    tok_tokenizer *t = L->t;
    size_t total = 1;
    for (int i = 0; i < t->n_added; i++)
        total += t->added[i].len;
    t->trie = xmalloc(total * sizeof *t->trie);
    t->trie[0] = (tok_trie_node){.child = -1, .sibling = -1, .added = -1};
    t->n_trie = 1;
    for (int i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        const uint8_t *s = (const uint8_t *)t->piece_blob + a->off;
        int32_t node = 0;
        for (uint32_t k = 0; k < a->len; k++)
            node = trie_child(t, node, s[k], true);
        t->trie[node].added = i;
        t->first_byte[s[0]] |= a->normalized ? 2 : 1;
        t->any_single_word |= a->single_word;
    }
    if (!t->any_single_word)
        return 0;
    bool jit;
    return tok_regex_compile(WORD_CHAR_PATTERN, strlen(WORD_CHAR_PATTERN), false, &t->word_re,
                             &jit, "single_word", L->err);
}

/* ---- tokenizer_config.json ---------------------------------------------------------------- */

static int cfg_token(ld *L, json_t *cfg, const char *key, int32_t *id) {
    json_t *v = json_object_get(cfg, key);
    *id = AFD_E_NOTFOUND;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return bad(L, AFD_E_FORMAT, "%s is neither a string nor {\"content\": string}", key);
    *id = tok_piece_lookup(L->t, json_string_value(v), json_string_length(v));
    if (*id < 0)
        return bad(L, AFD_E_NOTFOUND, "%s \"%.60s\" is not a token of the tokenizer", key,
                   json_string_value(v));
    return 0;
}

static int cfg_template(ld *L, json_t *cfg) {
    json_t *v = json_object_get(cfg, "chat_template");
    if (json_is_array(v)) { /* [{"name": ..., "template": ...}]: take "default" */
        size_t i;
        json_t *e, *found = NULL;
        json_array_foreach(v, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && strcmp(name, "default") == 0)
                found = json_object_get(e, "template");
        }
        v = found;
    }
    if (v && !json_is_null(v) && !json_is_string(v))
        return bad(L, AFD_E_FORMAT, "chat_template is not a string");
    if (json_is_string(v))
        L->t->chat_template = xstrdup(json_string_value(v));
    return 0;
}

static int load_cfg(ld *L, const char *cfg, size_t len) {
    json_error_t je;
    json_t *root = json_loadb(cfg, len, 0, &je);
    if (!root)
        return bad(L, AFD_E_FORMAT, "line %d column %d: %s", je.line, je.column, je.text);
    int rc = json_is_object(root) ? 0 : bad(L, AFD_E_FORMAT, "not a JSON object");
    if (!rc)
        rc = cfg_token(L, root, "bos_token", &L->t->bos_id);
    if (!rc)
        rc = cfg_token(L, root, "eos_token", &L->t->eos_id);
    if (!rc)
        rc = cfg_template(L, root);
    json_decref(root);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------------- */

static int load_json(ld *L, const char *json, size_t len) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return bad(L, AFD_E_FORMAT, "line %d column %d: %s", je.line, je.column, je.text);
    int rc = json_is_object(root) ? 0 : bad(L, AFD_E_FORMAT, "not a JSON object");
    if (!rc)
        rc = load_model(L, root);
    if (!rc)
        rc = load_pipeline(L, root);
    if (!rc)
        rc = build_trie(L);
    free(L->src);
    free(L->len);
    L->src = NULL;
    L->len = NULL;
    json_decref(root);
    return rc;
}

int tok_load_mem(const char *json, size_t len, const char *cfg, size_t cfg_len, const char *name,
                 tok_tokenizer **out, afd_err *err) {
    *out = NULL;
    if (len > TOK_MAX_FILE)
        return afd_errf(err, AFD_E_LIMIT, "%s: %zu bytes (limit %u)", name, len, TOK_MAX_FILE);
    tok_tokenizer *t = xcalloc(1, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->bos_id = t->eos_id = AFD_E_NOTFOUND;
    ld L = {.t = t, .what = t->name, .err = err};
    int rc = load_json(&L, json, len);
    char cfg_name[300];
    snprintf(cfg_name, sizeof cfg_name, "%s (tokenizer_config.json)", name);
    L.what = cfg_name;
    if (!rc && cfg)
        rc = load_cfg(&L, cfg, cfg_len);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int read_file(const char *path, bool optional, char **buf, size_t *len, afd_err *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return optional && errno == ENOENT ? 0 : afd_errf(err, errno == ENOENT ? AFD_E_NOTFOUND
                                                                               : -errno,
                                                          "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        rc = afd_errf(err, AFD_E_FORMAT, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > TOK_MAX_FILE)
        rc = afd_errf(err, AFD_E_LIMIT, "%s: %lld bytes (limit %u)", path,
                      (long long)st.st_size, TOK_MAX_FILE);
    else if (!(*buf = malloc((size_t)st.st_size + 1)))
        rc = -ENOMEM;
    else if (fread(*buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        rc = afd_errf(err, -EIO, "%s: read error", path);
    fclose(f);
    if (rc) {
        free(*buf);
        *buf = NULL;
        return rc;
    }
    *len = (size_t)st.st_size;
    return 0;
}

int tok_load(const char *path, tok_tokenizer **out, afd_err *err) {
    char file[4096], dir[4096], cfgpath[4200];
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0)
        return afd_errf(err, AFD_E_NOTFOUND, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
    }
    snprintf(cfgpath, sizeof cfgpath, "%s/tokenizer_config.json", dir);
    char *json, *cfg;
    size_t len, cfg_len;
    int rc = read_file(file, false, &json, &len, err);
    if (!rc)
        rc = read_file(cfgpath, true, &cfg, &cfg_len, err);
    if (rc) {
        free(json);
        return rc;
    }
    rc = tok_load_mem(json, len, cfg, cfg_len, file, out, err);
    free(json);
    free(cfg);
    return rc;
}

void tok_free(tok_tokenizer *t) {
    if (!t)
        return;
    for (int i = 0; i < t->n_steps; i++)
        pcre2_code_free(t->steps[i].re);
    pcre2_code_free(t->word_re);
    free(t->flags);
    free(t->piece_off);
    free(t->piece_blob);
    free(t->bytes_off);
    free(t->bytes_blob);
    free(t->phash);
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
    free(t->added);
    free(t->trie);
    free(t->chat_template);
    free(t);
}
