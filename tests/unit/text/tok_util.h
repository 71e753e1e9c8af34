/* tok_util.h: hand-made tokenizer.json files for the text tests (header-only; each test is its
 * own binary).
 *
 * tu_json() builds a byte-level BPE tokenizer.json with jansson: the 256 byte tokens get ids
 * 0..255 in byte order (byte b is spelled by the GPT-2 map), every merge's result gets the next
 * id in merge order, then the given added tokens (a JSON array text, explicit ids), the given
 * pre_tokenizer (JSON text; NULL: ByteLevel without regex, so a text is one BPE word) and
 * optional extra "model" fields. Merges use the byte-level spelling ("Ġ" for a space).
 */
#ifndef AFD_TEST_TOK_UTIL_H
#define AFD_TEST_TOK_UTIL_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer.h"
#include "common/text/utf8.h"

#define TU_PRE_WHOLE "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}"
#define TU_PRE_GPT2  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

static inline unsigned tu_byte_cp(unsigned b) {
    unsigned rank = 0;
    for (unsigned c = 0; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        if (c == b)
            return printable ? b : 256 + rank;
        rank += !printable;
    }
    return 0;
}

/* The byte-level spelling of byte b (static buffer per call site use: copy it). */
static inline const char *tu_byte_piece(unsigned b, char out[5]) {
    size_t n = utf8_encode(tu_byte_cp(b), (uint8_t *)out);
    out[n] = '\0';
    return out;
}

static inline json_t *tu_parse(const char *what, const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(j, "%s: bad JSON in the test (%s): %s", what, je.text, text);
    return j;
}

/* merges: NULL-terminated "a b" strings. Returns malloc'd JSON text. */
static inline char *tu_json(const char *const *merges, const char *added, const char *pre,
                            const char *model_extra) {
    json_t *vocab = json_object(), *mj = json_array();
    char piece[5];
    for (unsigned b = 0; b < 256; b++)
        json_object_set_new(vocab, tu_byte_piece(b, piece), json_integer(b));
    int next = 256;
    for (int i = 0; merges && merges[i]; i++) {
        const char *sp = strchr(merges[i], ' ');
        cr_assert_not_null(sp, "merge %s", merges[i]);
        char cat[256];
        snprintf(cat, sizeof cat, "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
        if (!json_object_get(vocab, cat))
            json_object_set_new(vocab, cat, json_integer(next++));
        json_array_append_new(mj, json_string(merges[i]));
    }
    json_t *model = model_extra ? tu_parse("model_extra", model_extra) : json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", mj);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "added_tokens", tu_parse("added", added ? added : "[]"));
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", tu_parse("pre", pre ? pre : TU_PRE_WHOLE));
    json_object_set_new(root, "post_processor", json_null());
    json_object_set_new(root, "decoder", tu_parse("decoder", "{\"type\":\"ByteLevel\"}"));
    json_object_set_new(root, "model", model);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* Loads JSON text (and optional config text); asserts success. */
static inline tok_tokenizer *tu_load(const char *json, const char *cfg) {
    tok_tokenizer *t = NULL;
    afd_err err = {0};
    int rc = tok_load_mem(json, strlen(json), cfg, cfg ? strlen(cfg) : 0, "test.json", &t, &err);
    cr_assert_eq(rc, 0, "load: rc %d: %s", rc, err.msg);
    return t;
}

static inline tok_tokenizer *tu_make(const char *const *merges, const char *added,
                                     const char *pre) {
    char *j = tu_json(merges, added, pre, NULL);
    tok_tokenizer *t = tu_load(j, NULL);
    free(j);
    return t;
}

/* Encodes text; returns the ids (caller releases). */
static inline tok_ids tu_enc(const tok_tokenizer *t, const char *text, size_t len,
                             unsigned flags) {
    tok_ids ids = {0};
    afd_err err = {0};
    int rc = tok_encode(t, NULL, text, len, flags, &ids, &err);
    cr_assert_eq(rc, 0, "encode: rc %d: %s", rc, err.msg);
    return ids;
}

/* ids as "[1,2,3]" for messages (static buffer). */
static inline const char *tu_fmt(const int32_t *v, size_t n) {
    static char buf[2048];
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "[");
    for (size_t i = 0; i < n && o < sizeof buf - 16; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, i ? ",%d" : "%d", v[i]);
    snprintf(buf + o, sizeof buf - o, "]");
    return buf;
}

/* Asserts the ids of `text` equal want[0..n). */
#define tu_expect(t, text, flags, ...)                                                             \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        size_t nw_ = sizeof want_ / sizeof want_[0];                                               \
        tok_ids got_ = tu_enc((t), (text), strlen(text), (flags));                                 \
        char gs_[2048];                                                                            \
        snprintf(gs_, sizeof gs_, "%s", tu_fmt(got_.v, got_.n));                                   \
        bool eq_ = got_.n == nw_ && memcmp(got_.v, want_, nw_ * sizeof(int32_t)) == 0;             \
        cr_assert(eq_, "encode \"%s\": got %s, want %s", (text), gs_, tu_fmt(want_, nw_));         \
        tok_ids_release(&got_);                                                                    \
    } while (0)

#endif
