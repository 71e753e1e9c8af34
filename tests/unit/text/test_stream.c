/* The incremental detokenizer: it holds back partial UTF-8, completes it with the next token,
 * turns a broken or unfinished sequence into U+FFFD, skips special tokens without breaking a
 * character, and always concatenates to exactly what tok_decode gives. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer.h"
#include "tests/unit/text/tok_util.h"

#define FFFD "\xef\xbf\xbd"

/* Merges making multi-byte tokens out of parts of 中 (E4 B8 AD) and 😀 (F0 9F 98 80). */
static tok_tokenizer *make(void) {
    static char m[4][32];
    char a[5], b[5], c[5], d[5];
    snprintf(m[0], 32, "%s %s", tu_byte_piece(0xE4, a), tu_byte_piece(0xB8, b)); /* 256 E4B8 */
    snprintf(m[1], 32, "%s %s", tu_byte_piece(0x9F, a), tu_byte_piece(0x98, b)); /* 257 9F98 */
    snprintf(m[2], 32, "%s%s %s", tu_byte_piece(0x9F, a), tu_byte_piece(0x98, b),
             tu_byte_piece(0x80, c)); /* 258 9F9880 */
    snprintf(m[3], 32, "%s %s", tu_byte_piece(0xAD, d), tu_byte_piece('A', c)); /* 259 AD41 */
    const char *ml[] = {m[0], m[1], m[2], m[3], NULL};
    return tu_make(ml, "[{\"id\":300,\"content\":\"<S>\",\"special\":true},"
                       "{\"id\":301,\"content\":\"<n>\",\"special\":false}]",
                   NULL);
}

typedef struct run {
    char out[4096];
    size_t len;
    char chunk[64][64];
    int nchunk;
} run;

/* Pushes every id (and flushes). With small_first, each push is first tried with a random
 * buffer of 0..7 bytes: it either fits or is refused with the state untouched. */
static void push_all_ex(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        run *r, bool small_first) {
    tok_stream s;
    tok_stream_init(&s, t, flags);
    size_t cap = tok_stream_max_out(t), k;
    char *buf = malloc(cap);
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i <= n; i++) {
        int rc = AFD_E_LIMIT;
        if (small_first) {
            size_t small = (size_t)(rand() % 8);
            rc = i < n ? tok_stream_push(&s, ids[i], buf, small, &k)
                       : tok_stream_flush(&s, buf, small, &k);
            cr_assert(rc == 0 || rc == AFD_E_LIMIT, "rc %d", rc);
            cr_assert(rc == 0 || k == 0, "refused but wrote %zu", k);
        }
        if (rc == AFD_E_LIMIT)
            rc = i < n ? tok_stream_push(&s, ids[i], buf, cap, &k) : tok_stream_flush(&s, buf, cap, &k);
        cr_assert_eq(rc, 0, "push %zu: rc %d", i, rc);
        cr_assert_eq(utf8_valid_prefix((const uint8_t *)buf, k), k, "push %zu wrote invalid UTF-8",
                     i);
        memcpy(r->out + r->len, buf, k);
        r->len += k;
        snprintf(r->chunk[r->nchunk++], 64, "%.*s", (int)k, buf);
    }
    r->out[r->len] = 0;
    cr_assert(!tok_stream_pending(&s), "flush leaves nothing pending");
    free(buf);
}

static void push_all(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, run *r) {
    push_all_ex(t, ids, n, flags, r, false);
}

Test(stream, holds_partial_characters) {
    tok_tokenizer *t = make();
    int32_t ids[] = {'a', 256, 0xAD, 0xF0, 257, 0x80, 'z'};
    run r;
    push_all(t, ids, 7, 0, &r);
    cr_assert_str_eq(r.out, "a\xe4\xb8\xad\xf0\x9f\x98\x80z");
    cr_assert_str_eq(r.chunk[0], "a");
    cr_assert_str_eq(r.chunk[1], "", "E4 B8 is held back");
    cr_assert_str_eq(r.chunk[2], "\xe4\xb8\xad", "AD completes 中");
    cr_assert_str_eq(r.chunk[3], "");
    cr_assert_str_eq(r.chunk[4], "", "F0 9F 98 still incomplete");
    cr_assert_str_eq(r.chunk[5], "\xf0\x9f\x98\x80");
    cr_assert_str_eq(r.chunk[6], "z");
    tok_free(t);
}

Test(stream, completion_and_more_in_one_token) {
    tok_tokenizer *t = make();
    int32_t ids[] = {256, 259}; /* E4 B8 | AD 41 */
    run r;
    push_all(t, ids, 2, 0, &r);
    cr_assert_str_eq(r.chunk[1], "\xe4\xb8\xad" "A");
    int32_t ids2[] = {0xF0, 258}; /* F0 | 9F 98 80 */
    push_all(t, ids2, 2, 0, &r);
    cr_assert_str_eq(r.chunk[1], "\xf0\x9f\x98\x80");
    tok_free(t);
}

Test(stream, broken_and_unfinished_sequences) {
    tok_tokenizer *t = make();
    int32_t ids[] = {256, 'x', 0xF0, 0x9F};
    run r;
    push_all(t, ids, 4, 0, &r);
    cr_assert_str_eq(r.chunk[1], FFFD "x", "E4 B8 then x: one U+FFFD");
    cr_assert_str_eq(r.chunk[3], "", "F0 9F held");
    cr_assert_str_eq(r.chunk[4], FFFD, "flush: the unfinished F0 9F is one U+FFFD");
    cr_assert_str_eq(r.out, FFFD "x" FFFD);
    int32_t bad[] = {0xFF, 0x80, 0xE4};
    push_all(t, bad, 3, 0, &r);
    cr_assert_str_eq(r.chunk[0], FFFD);
    cr_assert_str_eq(r.chunk[1], FFFD);
    cr_assert_str_eq(r.out, FFFD FFFD FFFD);
    tok_free(t);
}

Test(stream, special_tokens) {
    tok_tokenizer *t = make();
    int32_t ids[] = {256, 300, 0xAD, 301};
    run r;
    push_all(t, ids, 4, 0, &r);
    cr_assert_str_eq(r.out, FFFD "<S>" FFFD "<n>", "a special token breaks the character");
    push_all(t, ids, 4, TOK_DEC_SKIP_SPECIAL, &r);
    cr_assert_str_eq(r.out, "\xe4\xb8\xad<n>", "skipped, it does not");
    cr_assert_str_eq(r.chunk[1], "", "the skipped token writes nothing");
    tok_free(t);
}

Test(stream, small_buffer_and_bad_ids) {
    tok_tokenizer *t = make();
    tok_stream s;
    tok_stream_init(&s, t, 0);
    char buf[16]; /* 3 * (2 held + 2 new) = 12 needed */
    size_t n = 99;
    cr_assert_eq(tok_stream_push(&s, 256, buf, sizeof buf, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert(tok_stream_pending(&s));
    cr_assert_eq(tok_stream_push(&s, 259, buf, 3, &n), AFD_E_LIMIT, "3 bytes cannot hold it");
    cr_assert(tok_stream_pending(&s), "state kept after a refused push");
    cr_assert_eq(tok_stream_push(&s, 999, buf, sizeof buf, &n), AFD_E_NOTFOUND);
    cr_assert_eq(tok_stream_push(&s, 259, buf, 4, &n), 0, "exactly 4 bytes are enough");
    cr_assert(n == 4 && !memcmp(buf, "\xe4\xb8\xad" "A", 4), "n %zu", n);
    tok_free(t);
}

/* Random ids (mostly bytes >= 0x80, so characters get split everywhere): the stream always
 * equals the whole decode, with and without skipping special tokens. */
Test(stream, equals_whole_decode_on_random_ids) {
    tok_tokenizer *t = make();
    srand(11);
    for (int iter = 0; iter < 5000; iter++) {
        int32_t ids[24];
        size_t n = (size_t)(rand() % 24);
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 10;
            ids[i] = r < 6 ? 0x80 + rand() % 128 : r < 8 ? 256 + rand() % 4 : r < 9 ? 300 + rand() % 2
                                                                                 : rand() % 128;
        }
        for (unsigned flags = 0; flags <= TOK_DEC_SKIP_SPECIAL; flags += TOK_DEC_SKIP_SPECIAL) {
            run r;
            push_all_ex(t, ids, n, flags, &r, iter % 2);
            tok_str whole = {0};
            cr_assert_eq(tok_decode(t, ids, n, flags, &whole, NULL), 0);
            cr_assert(whole.len == r.len && !memcmp(whole.s ? whole.s : "", r.out, r.len),
                      "iteration %d flags %u: stream %zu bytes, decode %zu: %s", iter, flags,
                      r.len, whole.len, tu_fmt(ids, n));
            tok_str_release(&whole);
        }
    }
    tok_free(t);
}
