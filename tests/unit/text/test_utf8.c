/* utf8: decoding, maximal-subpart repair (the Unicode / WHATWG rule), incomplete tails,
 * encoding, White_Space. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/utf8.h"

static void next_is(const char *s, size_t n, size_t want_len, uint32_t want_cp, bool want_ok) {
    uint32_t cp = 0;
    bool ok = !want_ok;
    size_t k = utf8_next((const uint8_t *)s, n, &cp, &ok);
    cr_assert_eq(k, want_len, "len of %02x..: %zu, want %zu", (uint8_t)s[0], k, want_len);
    cr_assert_eq(cp, want_cp, "cp of %02x..: U+%04X, want U+%04X", (uint8_t)s[0], cp, want_cp);
    cr_assert_eq(ok, want_ok, "valid of %02x..: %d, want %d", (uint8_t)s[0], ok, want_ok);
}

Test(utf8, next_valid) {
    next_is("A", 1, 1, 'A', true);
    next_is("\x00", 1, 1, 0, true);
    next_is("\xc2\x80", 2, 2, 0x80, true);
    next_is("\xdf\xbf", 2, 2, 0x7FF, true);
    next_is("\xe0\xa0\x80", 3, 3, 0x800, true);
    next_is("\xe4\xb8\xad", 3, 3, 0x4E2D, true);
    next_is("\xed\x9f\xbf", 3, 3, 0xD7FF, true);
    next_is("\xee\x80\x80", 3, 3, 0xE000, true);
    next_is("\xef\xbf\xbf", 3, 3, 0xFFFF, true);
    next_is("\xf0\x90\x80\x80", 4, 4, 0x10000, true);
    next_is("\xf0\x9f\x98\x80", 4, 4, 0x1F600, true);
    next_is("\xf4\x8f\xbf\xbf", 4, 4, 0x10FFFF, true);
}

Test(utf8, next_invalid_maximal_subparts) {
    next_is("\x80", 1, 1, 0xFFFD, false);           /* lone continuation */
    next_is("\xc0\x80", 2, 1, 0xFFFD, false);       /* C0 never leads */
    next_is("\xc1\xbf", 2, 1, 0xFFFD, false);
    next_is("\xc2", 1, 1, 0xFFFD, false);           /* cut by the end */
    next_is("\xc2\x41", 2, 1, 0xFFFD, false);
    next_is("\xe0\x80\x80", 3, 1, 0xFFFD, false);   /* overlong: E0 needs A0..BF */
    next_is("\xe0\xa0", 2, 2, 0xFFFD, false);       /* good prefix of 2, then the end */
    next_is("\xe4\xb8\x41", 3, 2, 0xFFFD, false);
    next_is("\xed\xa0\x80", 3, 1, 0xFFFD, false);   /* surrogate: ED needs 80..9F */
    next_is("\xf0\x80\x80\x80", 4, 1, 0xFFFD, false);
    next_is("\xf0\x9f\x98", 3, 3, 0xFFFD, false);
    next_is("\xf0\x9f\x98\x41", 4, 3, 0xFFFD, false);
    next_is("\xf4\x90\x80\x80", 4, 1, 0xFFFD, false); /* > U+10FFFF */
    next_is("\xf5\x80", 2, 1, 0xFFFD, false);
    next_is("\xff", 1, 1, 0xFFFD, false);
}

static void repair_is(const char *in, size_t n, const char *want) {
    uint8_t *out = malloc(3 * n + 1);
    size_t k = utf8_repair((const uint8_t *)in, n, out);
    out[k] = 0;
    cr_assert_eq(k, strlen(want), "repair length %zu, want %zu (got \"%s\", want \"%s\")", k,
                 strlen(want), out, want);
    cr_assert_eq(memcmp(out, want, k), 0, "repair: got \"%s\", want \"%s\"", out, want);
    cr_assert_eq(utf8_valid_prefix(out, k), k, "repaired text is not valid");
    free(out);
}

#define R "\xef\xbf\xbd" /* U+FFFD */

Test(utf8, repair_matches_the_standard_examples) {
    repair_is("abc", 3, "abc");
    repair_is("", 0, "");
    repair_is("\xe4\xb8" "A", 3, R "A");
    repair_is("\xed\xa0\x80", 3, R R R);
    repair_is("\xf0\x80\x80\x80", 4, R R R R);
    repair_is("\xf0\x9f\x98", 3, R);
    repair_is("\xc0\xaf\xe0\x80\xbf\xf0\x81\x82\x41", 9, R R R R R R R R "A");
    /* Unicode §3.9 table 3-11 style: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
    repair_is("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64", 13,
              "a" R R R "b" R "c" R R "d");
    repair_is("\xef\xbb\xbf" "x", 4, "\xef\xbb\xbf" "x"); /* a BOM is valid text */
}

Test(utf8, valid_prefix) {
    const char *s = "hello \xe4\xb8\xad world \xff tail";
    cr_assert_eq(utf8_valid_prefix((const uint8_t *)s, strlen(s)), 16);
    const char *ascii = "0123456789abcdefghijklmnopqrstuvwxyz";
    cr_assert_eq(utf8_valid_prefix((const uint8_t *)ascii, strlen(ascii)), strlen(ascii));
    cr_assert_eq(utf8_valid_prefix((const uint8_t *)"\xe4\xb8", 2), 0);
}

static void tail_is(const char *s, size_t n, size_t want) {
    size_t k = utf8_incomplete_tail((const uint8_t *)s, n);
    cr_assert_eq(k, want, "tail of %zu bytes ending %02x: %zu, want %zu", n,
                 n ? (uint8_t)s[n - 1] : 0, k, want);
}

Test(utf8, incomplete_tail) {
    tail_is("", 0, 0);
    tail_is("abc", 3, 0);
    tail_is("ab\xe4", 3, 1);
    tail_is("ab\xe4\xb8", 4, 2);
    tail_is("ab\xe4\xb8\xad", 5, 0);
    tail_is("\xf0\x9f\x98", 3, 3);
    tail_is("\xf0\x9f", 2, 2);
    tail_is("\xf0", 1, 1);
    tail_is("\xe0\x80", 2, 0);     /* not a prefix of anything valid */
    tail_is("\xed\xa0", 2, 0);
    tail_is("\x80\x80\x80", 3, 0);
    tail_is("a\xc2", 2, 1);
    tail_is("\xc2\xa9", 2, 0);
    tail_is("\xff", 1, 0);
}

Test(utf8, encode_roundtrip) {
    const uint32_t cps[] = {0, 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        uint8_t b[4];
        size_t n = utf8_encode(cps[i], b);
        uint32_t cp;
        bool ok;
        cr_assert_eq(utf8_next(b, n, &cp, &ok), n);
        cr_assert(ok && cp == cps[i], "U+%04X -> U+%04X", cps[i], cp);
    }
    uint8_t b[4];
    cr_assert_eq(utf8_encode(0xD800, b), 3, "surrogates encode as U+FFFD");
    cr_assert_eq(memcmp(b, R, 3), 0);
    cr_assert_eq(utf8_encode(0x110000, b), 3);
}

Test(utf8, prev) {
    const uint8_t s[] = "a\xe4\xb8\xad" "b\xf0\x9f\x98\x80";
    cr_assert_eq(utf8_prev(s, 1), 0);
    cr_assert_eq(utf8_prev(s, 4), 1);
    cr_assert_eq(utf8_prev(s, 5), 4);
    cr_assert_eq(utf8_prev(s, 9), 5);
}

Test(utf8, white_space_is_the_unicode_property) {
    const uint32_t yes[] = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A,
                            0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    const uint32_t no[] = {0x0, 0x8, 0xE, 0x1F, 0x21, 0x84, 0x86, 0x180E, 0x200B, 0x200C, 0xFEFF,
                           0x2060, 0x3001};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        cr_assert(utf8_is_white_space(yes[i]), "U+%04X is White_Space", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        cr_assert(!utf8_is_white_space(no[i]), "U+%04X is not White_Space", no[i]);
}

/* Random bytes: repair always yields valid UTF-8, keeps valid input unchanged, and equals
 * decoding character by character with utf8_next. */
Test(utf8, repair_random_bytes) {
    srand(7);
    uint8_t in[64], out[3 * 64], ref[3 * 64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(rand() % 64);
        for (size_t i = 0; i < n; i++) /* bias towards bytes >= 0x80 */
            in[i] = (uint8_t)(rand() % 3 ? 0x80 + rand() % 128 : rand() % 128);
        size_t k = utf8_repair(in, n, out), r = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            bool ok;
            size_t step = utf8_next(in + i, n - i, &cp, &ok);
            cr_assert(step >= 1 && step <= 4);
            r += ok ? (memcpy(ref + r, in + i, step), step) : utf8_encode(0xFFFD, ref + r);
            i += step;
        }
        cr_assert_eq(k, r, "iteration %d: %zu vs %zu bytes", iter, k, r);
        cr_assert_eq(utf8_repair_len(in, n), k, "iteration %d: repair_len", iter);
        cr_assert_eq(memcmp(out, ref, k), 0, "iteration %d differs", iter);
        cr_assert_eq(utf8_valid_prefix(out, k), k, "iteration %d: repaired is invalid", iter);
        if (utf8_valid_prefix(in, n) == n)
            cr_assert(k == n && memcmp(in, out, n) == 0, "valid input changed");
    }
}
