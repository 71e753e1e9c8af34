/* tokenizer: the byte-level map, BPE by merge rank (against a naive reference on random merges),
 * added tokens (special, lstrip, rstrip, single_word, normalized), pre-tokenizer steps and
 * Split behaviours, decode and per-token bytes, limits, loading from files, threads. All on
 * tokenizer.json files the tests write (tok_util.h). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/text/tokenizer.h"
#include "tests/unit/text/tok_util.h"

/* ---- byte-level map ----------------------------------------------------------------------- */

Test(tokenizer, byte_level_tokens_and_bytes) {
    tok_tokenizer *t = tu_make(NULL, NULL, NULL);
    cr_assert_eq(tok_vocab_size(t), 256);
    char piece[5];
    /* printable bytes spell themselves; space is U+0120 'Ġ', newline U+010A 'Ċ' */
    cr_assert_eq(tok_id(t, "A", 1), 'A');
    cr_assert_eq(tok_id(t, "\xc4\xa0", 2), ' ', "Ġ is the space byte");
    cr_assert_eq(tok_id(t, "\xc4\x8a", 2), '\n', "Ċ is the newline byte");
    for (unsigned b = 0; b < 256; b++) {
        const uint8_t *bytes;
        size_t n;
        cr_assert_eq(tok_token_bytes(t, (int32_t)b, &bytes, &n), 0);
        cr_assert(n == 1 && bytes[0] == b, "token %u decodes to %zu bytes [%u]", b, n,
                  n ? bytes[0] : 0);
        const char *p;
        cr_assert_eq(tok_token_piece(t, (int32_t)b, &p, &n), 0);
        cr_assert(n == strlen(tu_byte_piece(b, piece)) && memcmp(p, piece, n) == 0,
                  "piece of byte %u", b);
    }
    /* every byte string encodes to its bytes (no merges) and decodes back */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    tok_ids ids = tu_enc(t, (const char *)all, 128, 0); /* ASCII half: valid UTF-8 */
    cr_assert_eq(ids.n, 128);
    for (size_t i = 0; i < ids.n; i++)
        cr_assert_eq(ids.v[i], (int32_t)i);
    tok_ids_release(&ids);
    tok_free(t);
}

/* ---- merges ------------------------------------------------------------------------------- */

Test(tokenizer, merges_by_rank) {
    const char *m1[] = {"b c", "a b", NULL}; /* bc (256) outranks ab (257) */
    tok_tokenizer *t = tu_make(m1, NULL, NULL);
    tu_expect(t, "abc", 0, 'a', 256);
    tu_expect(t, "ab", 0, 257);
    tu_expect(t, "abcabc", 0, 'a', 256, 'a', 256);
    tok_free(t);
    const char *m2[] = {"a b", "b c", NULL};
    t = tu_make(m2, NULL, NULL);
    tu_expect(t, "abc", 0, 256, 'c');
    tok_free(t);
    const char *m3[] = {"a a", "aa aa", "aaaa a", NULL}; /* ties go left to right */
    t = tu_make(m3, NULL, NULL);
    tu_expect(t, "aaa", 0, 256, 'a');
    tu_expect(t, "aaaa", 0, 257);
    tu_expect(t, "aaaaa", 0, 258);
    tu_expect(t, "aaaaaaa", 0, 257, 256, 'a');
    tok_free(t);
}

Test(tokenizer, merges_in_pair_format_and_spaces) {
    /* [a, b] pairs (tokenizers >= 0.20) and the byte-level space 'Ġ' */
    const char *m[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", NULL};
    char *j = tu_json(m, NULL, NULL, NULL);
    /* rewrite the merges as pairs */
    json_error_t je;
    json_t *root = json_loads(j, 0, &je);
    json_t *pairs = json_array(), *merges = json_object_get(json_object_get(root, "model"), "merges");
    size_t i;
    json_t *v;
    json_array_foreach(merges, i, v) {
        const char *s = json_string_value(v), *sp = strchr(s, ' ');
        json_t *p = json_array();
        json_array_append_new(p, json_stringn(s, (size_t)(sp - s)));
        json_array_append_new(p, json_string(sp + 1));
        json_array_append_new(pairs, p);
    }
    json_object_set_new(json_object_get(root, "model"), "merges", pairs);
    char *j2 = json_dumps(root, JSON_COMPACT);
    tok_tokenizer *t = tu_load(j2, NULL);
    tu_expect(t, " the", 0, 258);
    tu_expect(t, " th", 0, 256, 'h');
    tu_expect(t, "the", 0, 't', 257);
    tok_free(t);
    json_decref(root);
    free(j);
    free(j2);
}

/* Naive BPE (the original formulation): merge the best-ranked adjacent pair, all its
 * occurrences left to right, until no pair merges. Symbols are strings over {a,b,c}. */
typedef struct nb_merge {
    char a[64], b[64];
} nb_merge;

static int nb_rank(const nb_merge *m, int nm, const char *x, const char *y) {
    for (int i = 0; i < nm; i++)
        if (!strcmp(m[i].a, x) && !strcmp(m[i].b, y))
            return i;
    return -1;
}

static int naive_bpe(const nb_merge *m, int nm, const char *word, char out[][64]) {
    int n = (int)strlen(word);
    for (int i = 0; i < n; i++)
        out[i][0] = word[i], out[i][1] = 0;
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < n; i++) {
            int r = nb_rank(m, nm, out[i], out[i + 1]);
            if (r >= 0 && (best < 0 || r < best))
                best = r;
        }
        if (best < 0)
            return n;
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (i + 1 < n && !strcmp(out[i], m[best].a) && !strcmp(out[i + 1], m[best].b)) {
                size_t la = strlen(m[best].a), lb = strlen(m[best].b); /* < 60 together */
                memmove(out[k], m[best].a, la);
                memcpy(out[k] + la, m[best].b, lb + 1);
                k++;
                i++;
            } else if (k != i)
                memcpy(out[k++], out[i], 64);
            else
                k++;
        }
        n = k;
    }
}

Test(tokenizer, bpe_equals_naive_reference_on_random_merges) {
    srand(42);
    for (int round = 0; round < 12; round++) {
        /* random merges over {a,b,c}: each joins two existing symbols into a new one */
        char syms[80][64] = {"a", "b", "c"};
        int ns = 3, nm = 0;
        nb_merge m[70];
        const char *ml[71];
        char mtext[70][130];
        while (nm < 60) {
            const char *x = syms[rand() % ns], *y = syms[rand() % ns];
            char cat[128];
            snprintf(cat, sizeof cat, "%s%s", x, y);
            if (strlen(cat) >= 60 || nb_rank(m, nm, x, y) >= 0)
                continue;
            bool known = false;
            for (int i = 0; i < ns; i++)
                known |= !strcmp(syms[i], cat);
            snprintf(m[nm].a, 64, "%s", x);
            snprintf(m[nm].b, 64, "%s", y);
            snprintf(mtext[nm], sizeof mtext[nm], "%s %s", x, y);
            ml[nm] = mtext[nm];
            nm++;
            if (!known)
                snprintf(syms[ns++], 64, "%s", cat);
        }
        ml[nm] = NULL;
        tok_tokenizer *t = tu_make(ml, NULL, NULL);
        for (int w = 0; w < 300; w++) {
            char word[48];
            int len = 1 + rand() % 46;
            for (int i = 0; i < len; i++)
                word[i] = "abc"[rand() % 3];
            word[len] = 0;
            char ref[48][64];
            int nr = naive_bpe(m, nm, word, ref);
            tok_ids ids = tu_enc(t, word, (size_t)len, 0);
            cr_assert_eq(ids.n, (size_t)nr, "round %d word %s: %zu tokens, naive %d", round, word,
                         ids.n, nr);
            for (int i = 0; i < nr; i++) {
                const char *p;
                size_t pn;
                tok_token_piece(t, ids.v[i], &p, &pn);
                cr_assert(pn == strlen(ref[i]) && !memcmp(p, ref[i], pn),
                          "round %d word %s token %d: %.*s, naive %s", round, word, i, (int)pn,
                          p, ref[i]);
            }
            tok_ids_release(&ids);
        }
        tok_free(t);
    }
}

Test(tokenizer, ignore_merges_takes_whole_vocab_words) {
    /* "abc" (258) is in the vocabulary, but by rank the merges give a + bc */
    const char *m[] = {"b c", "a b", "ab c", NULL};
    tok_tokenizer *t = tu_make(m, NULL, NULL);
    tu_expect(t, "abc", 0, 'a', 256);
    tok_free(t);
    char *j = tu_json(m, NULL, NULL, "{\"ignore_merges\":true}");
    t = tu_load(j, NULL);
    tu_expect(t, "abc", 0, 258);
    tu_expect(t, "ab", 0, 257);
    tu_expect(t, "abca", 0, 'a', 256, 'a'); /* not a vocab word: merges */
    tok_free(t);
    free(j);
}

/* ---- added tokens ------------------------------------------------------------------------- */

#define ADDED_STD                                                                                  \
    "[{\"id\":300,\"content\":\"<|EOT|>\",\"special\":true,\"normalized\":false},"                 \
    "{\"id\":301,\"content\":\"<think>\",\"special\":false,\"normalized\":false},"                 \
    "{\"id\":302,\"content\":\"<|EOT|>x\",\"special\":true,\"normalized\":true},"                  \
    "{\"id\":303,\"content\":\"<th\",\"special\":false}]"

Test(tokenizer, added_tokens_split_leftmost_longest) {
    tok_tokenizer *t = tu_make(NULL, ADDED_STD, NULL);
    cr_assert_eq(tok_vocab_size(t), 304);
    cr_assert(tok_is_special(t, 300) && !tok_is_special(t, 301) && tok_is_added(t, 301));
    cr_assert(!tok_is_added(t, 65));
    cr_assert_eq(tok_id(t, "<think>", 7), 301);
    tu_expect(t, "a<|EOT|>b", TOK_ENC_SPECIAL, 'a', 300, 'b');
    tu_expect(t, "<think>", TOK_ENC_SPECIAL, 301);
    tu_expect(t, "<thx", TOK_ENC_SPECIAL, 303, 'x');
    /* "<|EOT|>x" is normalized=true: pass 1 (normalized=false tokens) takes <|EOT|> first,
     * as HF's two passes do */
    tu_expect(t, "<|EOT|>x", TOK_ENC_SPECIAL, 300, 'x');
    tok_free(t);
}

Test(tokenizer, special_tokens_as_text) {
    tok_tokenizer *t = tu_make(NULL, ADDED_STD, NULL);
    /* without TOK_ENC_SPECIAL the special token is plain text; non-special ones still match */
    tu_expect(t, "a<|EOT|>", 0, 'a', '<', '|', 'E', 'O', 'T', '|', '>');
    tu_expect(t, "<think><|EOT|>", 0, 301, '<', '|', 'E', 'O', 'T', '|', '>');
    /* ... and a skipped special match is not rescanned for tokens inside it (HF semantics) */
    tok_free(t);
}

Test(tokenizer, lstrip_rstrip_take_white_space) {
    const char *added = "[{\"id\":300,\"content\":\"<L>\",\"lstrip\":true,\"special\":true},"
                        "{\"id\":301,\"content\":\"<R>\",\"rstrip\":true,\"special\":true}]";
    tok_tokenizer *t = tu_make(NULL, added, NULL);
    tu_expect(t, "a  <L>b", TOK_ENC_SPECIAL, 'a', 300, 'b');
    tu_expect(t, "a<R> \t\nb", TOK_ENC_SPECIAL, 'a', 301, 'b');
    tu_expect(t, "a\xc2\xa0<L>", TOK_ENC_SPECIAL, 'a', 300); /* U+00A0 is White_Space */
    tu_expect(t, "a\xe2\x80\x8b<L>", TOK_ENC_SPECIAL, 'a', 0xe2, 0x80, 0x8b, 300); /* U+200B not */
    tu_expect(t, "<R>  <L>", TOK_ENC_SPECIAL, 301, 300);
    tok_free(t);
}

Test(tokenizer, single_word_needs_word_boundaries) {
    const char *added = "[{\"id\":300,\"content\":\"ab\",\"single_word\":true}]";
    tok_tokenizer *t = tu_make(NULL, added, NULL);
    tu_expect(t, "ab", TOK_ENC_SPECIAL, 300);
    tu_expect(t, "x ab.", TOK_ENC_SPECIAL, 'x', ' ', 300, '.');
    tu_expect(t, "xab", TOK_ENC_SPECIAL, 'x', 'a', 'b');
    tu_expect(t, "ab1", TOK_ENC_SPECIAL, 'a', 'b', '1');
    tu_expect(t, "\xc3\xa9" "ab", TOK_ENC_SPECIAL, 0xc3, 0xa9, 'a', 'b'); /* é is a letter */
    tok_free(t);
}

/* ---- pre-tokenizer ------------------------------------------------------------------------ */

#define SPLIT(pat, beh, inv)                                                                       \
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" pat  \
    "\"},\"behavior\":\"" beh "\",\"invert\":" inv "}," TU_PRE_WHOLE "]}"

/* Split behaviours are checked through the pieces they produce: the test tokenizer has merges
 * gluing "a" and "-" runs, so a piece boundary shows as a token boundary. */
static void split_is(const char *beh, bool invert, const char *text, const char *want) {
    char pre[512];
    snprintf(pre, sizeof pre,
             "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
             "{\"Regex\":\"-\"},\"behavior\":\"%s\",\"invert\":%s}," TU_PRE_WHOLE "]}",
             beh, invert ? "true" : "false");
    /* vocabulary: every string over {a,-} up to length 6 through merges that add one char */
    static const char *const m[] = {
        "a a", "a -", "- a", "- -", "aa a", "aa -", "a- a", "a- -", "-a a", "-a -", "-- a",
        "-- -", "aaa a", "aaa -", "aa- a", "aa- -", "a-a a", "a-a -", "a-- a", "a-- -",
        "-aa a", "-aa -", "-a- a", "-a- -", "--a a", "--a -", "--- a", "--- -", NULL};
    tok_tokenizer *t = tu_make(m, NULL, pre);
    tok_ids ids = tu_enc(t, text, strlen(text), 0);
    char got[256] = "";
    for (size_t i = 0; i < ids.n; i++) {
        const char *p;
        size_t n;
        tok_token_piece(t, ids.v[i], &p, &n);
        strncat(got, i ? "|" : "", sizeof got - strlen(got) - 1);
        strncat(got, p, n < sizeof got - strlen(got) - 1 ? n : sizeof got - strlen(got) - 1);
    }
    cr_assert_str_eq(got, want, "Split \"-\" %s invert=%d on \"%s\": got %s, want %s", beh,
                     invert, text, got, want);
    tok_ids_release(&ids);
    tok_free(t);
}

Test(tokenizer, split_behaviours) {
    split_is("Isolated", false, "aa-a--a", "aa|-|a|-|-|a");
    split_is("Removed", false, "aa-a--a", "aa|a|a");
    split_is("MergedWithPrevious", false, "aa-a--a", "aa-|a-|-|a");
    split_is("MergedWithNext", false, "aa-a--a", "aa|-a|-|-a");
    split_is("Contiguous", false, "aa-a--a", "aa|-|a|--|a");
    split_is("Isolated", false, "-a-", "-|a|-");
    split_is("MergedWithPrevious", false, "-a", "-|a");
    split_is("MergedWithNext", false, "a-", "a|-");
    /* invert: the pattern marks what to keep; the rest is the "delimiter" */
    split_is("Removed", true, "aa-a--a", "-|-|-");
    split_is("MergedWithPrevious", true, "aa-a--a", "aa|-a|-|-a");
    split_is("Isolated", true, "aa-a", "aa|-|a");
}

Test(tokenizer, split_string_pattern_is_literal) {
    const char *pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
                      "{\"String\":\".*\"},\"behavior\":\"Isolated\",\"invert\":false},"
                      TU_PRE_WHOLE "]}";
    const char *m[] = {"a b", "ab .", "ab. *", NULL}; /* would merge "ab.*" if not split */
    tok_tokenizer *t = tu_make(m, NULL, pre);
    tu_expect(t, "ab.*", 0, 256, '.', '*');
    tu_expect(t, "ab.x", 0, 257, 'x');
    tok_free(t);
}

Test(tokenizer, gpt2_bytelevel_regex_and_prefix_space) {
    const char *m[] = {"\xc4\xa0 a", "\xc4\xa0" "a b", "' s", NULL}; /* Ġa, Ġab, 's */
    tok_tokenizer *t = tu_make(m, NULL, TU_PRE_GPT2);
    tu_expect(t, "ab ab's", 0, 'a', 'b', 257, 258);
    tok_free(t);
    t = tu_make(m, NULL, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}");
    tu_expect(t, "ab", 0, 257);            /* " ab" */
    tu_expect(t, " ab", 0, 257);           /* already has its space */
    tok_free(t);
}

Test(tokenizer, white_space_class_is_unicode_white_space) {
    /* \s+ isolated: U+0085 (NEL, C2 85) joins a run of spaces as in HF (Oniguruma's \s is
     * White_Space), U+FEFF does not (JavaScript's \s would take it, and leave NEL out) */
    const char *pre = SPLIT("\\\\s+", "Isolated", "false");
    char sp[5], c2[5], x85[5], m1[32], m2[32];
    tu_byte_piece(' ', sp), tu_byte_piece(0xC2, c2), tu_byte_piece(0x85, x85);
    snprintf(m1, sizeof m1, "%s %s", sp, c2);      /* 256: " \xc2" */
    snprintf(m2, sizeof m2, "%s%s %s", sp, c2, x85); /* 257: " \xc2\x85" */
    const char *m[] = {m1, m2, NULL};
    tok_tokenizer *t = tu_make(m, NULL, pre);
    tu_expect(t, "x \xc2\x85", 0, 'x', 257);
    tu_expect(t, "x \xc2\x85y", 0, 'x', 257, 'y');
    tu_expect(t, "x\xef\xbb\xbf ", 0, 'x', 0xef, 0xbb, 0xbf, ' ');
    tok_free(t);
}

/* ---- decode and token strings ------------------------------------------------------------- */

Test(tokenizer, decode_and_token_text) {
    const char *m[] = {"\xc3\xa4 \xc2\xb8", NULL}; /* bytes E4 B8: the first 2/3 of 中 */
    tok_tokenizer *t = tu_make(m, ADDED_STD, NULL);
    int32_t ids[] = {256, 0xad, 300, 'A'};
    tok_str s = {0};
    afd_err err = {0};
    cr_assert_eq(tok_decode(t, ids, 4, 0, &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.s, "\xe4\xb8\xad<|EOT|>A");
    s.len = 0;
    cr_assert_eq(tok_decode(t, ids, 4, TOK_DEC_SKIP_SPECIAL, &s, &err), 0);
    cr_assert_str_eq(s.s, "\xe4\xb8\xad" "A");
    s.len = 0;
    int32_t broken[] = {256, 300, 0xad}; /* special token between: no character */
    cr_assert_eq(tok_decode(t, broken, 3, 0, &s, &err), 0);
    cr_assert_str_eq(s.s, "\xef\xbf\xbd<|EOT|>\xef\xbf\xbd");
    s.len = 0;
    cr_assert_eq(tok_decode(t, broken, 3, TOK_DEC_SKIP_SPECIAL, &s, &err), 0);
    cr_assert_str_eq(s.s, "\xe4\xb8\xad", "skipping the special token joins the bytes (as HF)");
    s.len = 0;
    cr_assert_eq(tok_token_text(t, 256, &s), 0);
    cr_assert_str_eq(s.s, "\xef\xbf\xbd", "a partial character's token text is U+FFFD");
    const uint8_t *b;
    size_t n;
    cr_assert_eq(tok_token_bytes(t, 256, &b, &n), 0);
    cr_assert(n == 2 && b[0] == 0xe4 && b[1] == 0xb8, "bytes of token 256");
    int32_t bad[] = {'A', 5000};
    s.len = 0;
    cr_assert_eq(tok_decode(t, bad, 2, 0, &s, &err), AFD_E_NOTFOUND);
    cr_assert_not_null(strstr(err.msg, "5000"), "%s", err.msg);
    cr_assert_eq(tok_token_bytes(t, -1, &b, &n), AFD_E_NOTFOUND);
    tok_str_release(&s);
    tok_free(t);
}

Test(tokenizer, holes_in_the_id_space) {
    tok_tokenizer *t = tu_make(NULL, "[{\"id\":1000,\"content\":\"<x>\",\"special\":true}]", NULL);
    cr_assert_eq(tok_vocab_size(t), 1001);
    const uint8_t *b;
    size_t n;
    cr_assert_eq(tok_token_bytes(t, 500, &b, &n), AFD_E_NOTFOUND, "a hole has no bytes");
    int32_t ids[] = {500};
    tok_str s = {0};
    afd_err err = {0};
    cr_assert_eq(tok_decode(t, ids, 1, 0, &s, &err), AFD_E_NOTFOUND);
    tok_str_release(&s);
    tok_free(t);
}

/* ---- invalid input, limits, states -------------------------------------------------------- */

Test(tokenizer, invalid_utf8_is_repaired_first) {
    tok_tokenizer *t = tu_make(NULL, NULL, NULL);
    /* E4 B8 + 'A' -> U+FFFD 'A' (EF BF BD 41) */
    tu_expect(t, "\xe4\xb8" "A", 0, 0xef, 0xbf, 0xbd, 'A');
    tu_expect(t, "\xff", 0, 0xef, 0xbf, 0xbd);
    tok_free(t);
}

Test(tokenizer, limit_leaves_the_output_unchanged) {
    tok_tokenizer *t = tu_make(NULL, NULL, NULL);
    tok_ids ids = {.limit = 5};
    afd_err err = {0};
    cr_assert_eq(tok_encode(t, NULL, "abc", 3, 0, &ids, &err), 0);
    cr_assert_eq(ids.n, 3);
    int rc = tok_encode(t, NULL, "defg", 4, 0, &ids, &err);
    cr_assert_eq(rc, AFD_E_LIMIT, "rc %d", rc);
    cr_assert_eq(ids.n, 3, "n %zu after a refused encode", ids.n);
    cr_assert_not_null(strstr(err.msg, "5 tokens"), "%s", err.msg);
    tok_ids_release(&ids);
    tok_free(t);
}

Test(tokenizer, empty_text) {
    tok_tokenizer *t = tu_make(NULL, NULL, NULL);
    tok_ids ids = {0};
    cr_assert_eq(tok_encode(t, NULL, "", 0, TOK_ENC_SPECIAL, &ids, NULL), 0);
    cr_assert_eq(ids.n, 0);
    tok_free(t);
}

Test(tokenizer, state_reuse_and_cache_give_the_same_ids) {
    const char *m[] = {"a b", "ab c", "\xc4\xa0 abc", NULL};
    tok_tokenizer *t = tu_make(m, NULL, TU_PRE_GPT2);
    tok_state *st = tok_state_new(t);
    cr_assert_not_null(st);
    char text[4096];
    size_t n = 0;
    srand(3);
    while (n < sizeof text - 8) {
        const char *w[] = {"abc ", "ab ", "a ", "cab ", "\n", "x1 "};
        const char *p = w[rand() % 6];
        memcpy(text + n, p, strlen(p));
        n += strlen(p);
    }
    tok_ids a = {0}, b = {0};
    cr_assert_eq(tok_encode(t, NULL, text, n, 0, &a, NULL), 0);
    for (int i = 0; i < 3; i++) {
        b.n = 0;
        cr_assert_eq(tok_encode(t, st, text, n, 0, &b, NULL), 0);
        cr_assert(a.n == b.n && !memcmp(a.v, b.v, a.n * sizeof *a.v), "run %d differs", i);
    }
    tok_ids_release(&a);
    tok_ids_release(&b);
    tok_state_free(st);
    tok_state_free(NULL);
    tok_free(t);
    tok_free(NULL);
}

typedef struct thr_arg {
    const tok_tokenizer *t;
    const char *text;
    size_t n;
    const tok_ids *want;
    int bad;
} thr_arg;

static void *encode_many(void *p) {
    thr_arg *a = p;
    tok_state *st = tok_state_new(a->t);
    for (int i = 0; i < 200; i++) {
        tok_ids ids = {0};
        if (tok_encode(a->t, st, a->text, a->n, TOK_ENC_SPECIAL, &ids, NULL) != 0 ||
            ids.n != a->want->n || memcmp(ids.v, a->want->v, ids.n * sizeof *ids.v))
            a->bad++;
        tok_ids_release(&ids);
    }
    tok_state_free(st);
    return NULL;
}

Test(tokenizer, concurrent_encodes_share_one_tokenizer) {
    const char *m[] = {"a b", "ab c", "\xc4\xa0 abc", NULL};
    tok_tokenizer *t = tu_make(m, ADDED_STD, TU_PRE_GPT2);
    const char *text = "abc abc <|EOT|> cab 123 <think> abcabc \xe4\xb8\xad\xe6\x96\x87";
    tok_ids want = tu_enc(t, text, strlen(text), TOK_ENC_SPECIAL);
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){t, text, strlen(text), &want, 0};
        pthread_create(&th[i], NULL, encode_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].bad, 0, "thread %d: %d wrong encodes", i, args[i].bad);
    }
    tok_ids_release(&want);
    tok_free(t);
}

/* ---- files -------------------------------------------------------------------------------- */

Test(tokenizer, load_from_a_directory_with_its_config) {
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/afd-tok-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    char *j = tu_json(NULL, ADDED_STD, NULL, NULL);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs(j, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    f = fopen(path, "w");
    fputs("{\"bos_token\":{\"__type\":\"AddedToken\",\"content\":\"<think>\"},"
          "\"eos_token\":\"<|EOT|>\",\"chat_template\":[{\"name\":\"default\",\"template\":\"T\"}]}",
          f);
    fclose(f);
    tok_tokenizer *t = NULL;
    afd_err err = {0};
    cr_assert_eq(tok_load(dir, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(tok_bos_id(t), 301);
    cr_assert_eq(tok_eos_id(t), 300);
    cr_assert_str_eq(tok_chat_template(t), "T");
    tok_free(t);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(tok_load(path, &t, &err), 0, "a file path works too: %s", err.msg);
    cr_assert_eq(tok_eos_id(t), 300, "and finds the config beside it");
    tok_free(t);
    remove(path);
    cr_assert_eq(tok_load(dir, &t, &err), AFD_E_NOTFOUND, "no tokenizer.json");
    cr_assert_not_null(strstr(err.msg, "tokenizer.json"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    remove(path);
    rmdir(dir);
    free(j);
}

Test(tokenizer, without_config_no_bos_eos) {
    tok_tokenizer *t = tu_make(NULL, NULL, NULL);
    cr_assert_eq(tok_bos_id(t), AFD_E_NOTFOUND);
    cr_assert_eq(tok_eos_id(t), AFD_E_NOTFOUND);
    cr_assert_null(tok_chat_template(t));
    cr_assert_eq(tok_max_token_bytes(t), 1);
    tok_free(t);
}

Test(tokenizer, state_of_another_tokenizer_is_refused) {
    tok_tokenizer *a = tu_make(NULL, NULL, NULL), *b = tu_make(NULL, NULL, NULL);
    tok_state *st = tok_state_new(a);
    tok_ids ids = {0};
    afd_err err = {0};
    cr_assert_eq(tok_encode(b, st, "x", 1, 0, &ids, &err), AFD_E_STATE);
    cr_assert_not_null(strstr(err.msg, "another tokenizer"), "%s", err.msg);
    cr_assert_eq(ids.n, 0);
    tok_state_free(st);
    tok_free(a);
    tok_free(b);
}
