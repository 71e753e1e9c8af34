/* Unit tests for router/stop: the cases named in the brief (stops spanning deltas, overlapping
 * stops, a stop that is a prefix of another, multi-byte characters, empty deltas), the API's
 * edges, and a seeded property test against a brute-force reference on random UTF-8 strings
 * split at random character boundaries: the final text, the text sent after every delta (all
 * but the longest suffix that could begin a stop), character boundaries, and which stop. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/stop.h"

/* ---- helpers ---- */

typedef struct sink {
    char buf[4096];
    size_t len;
    int rc; /* last return */
} sink;

static oa_stop *mk(const char **stops, size_t n) {
    size_t lens[16];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(stops[i]);
    oa_stop *s = NULL;
    int rc = oa_stop_new(stops, lens, n, &s);
    cr_assert_eq(rc, 0, "oa_stop_new: %d", rc);
    return s;
}

static void feed(oa_stop *s, sink *k, const char *d) {
    const char *o;
    size_t ol;
    k->rc = oa_stop_feed(s, d, strlen(d), &o, &ol);
    cr_assert_geq(k->rc, 0, "feed rc %d", k->rc);
    cr_assert_lt(k->len + ol, sizeof k->buf);
    memcpy(k->buf + k->len, o, ol);
    k->len += ol;
    k->buf[k->len] = 0;
}

static void finish(oa_stop *s, sink *k) {
    const char *o;
    size_t ol;
    k->rc = oa_stop_finish(s, &o, &ol);
    memcpy(k->buf + k->len, o, ol);
    k->len += ol;
    k->buf[k->len] = 0;
}

/* Feeds every delta, then finish; returns the matcher's last feed rc through k. */
static void run(const char **stops, size_t n, const char **deltas, size_t nd, sink *k) {
    oa_stop *s = mk(stops, n);
    memset(k, 0, sizeof *k);
    int matched = 0;
    for (size_t i = 0; i < nd; i++) {
        feed(s, k, deltas[i]);
        if (k->rc == 1) matched = 1;
    }
    finish(s, k);
    cr_assert_eq(k->rc, matched, "finish rc %d, matched %d", k->rc, matched);
    cr_assert_eq(oa_stop_emitted(s), k->len, "emitted %llu, sent %zu",
                 (unsigned long long)oa_stop_emitted(s), k->len);
    oa_stop_free(s);
}

/* ---- named cases ---- */

Test(stop, spans_many_deltas) {
    const char *stops[] = {"STOP_HERE"};
    const char *d[] = {"hello S", "TO", "P", "_", "HER", "E and more"};
    sink k;
    run(stops, 1, d, 6, &k);
    cr_assert_str_eq(k.buf, "hello ");
    cr_assert_eq(k.rc, 1, "rc %d", k.rc);
}

Test(stop, withheld_until_ruled_out) {
    const char *stops[] = {"abc"};
    oa_stop *s = mk(stops, 1);
    sink k = {0};
    feed(s, &k, "xxab");
    cr_assert_str_eq(k.buf, "xx");
    cr_assert_eq(oa_stop_held(s), 2, "held %zu", oa_stop_held(s));
    feed(s, &k, "");
    cr_assert_str_eq(k.buf, "xx");
    feed(s, &k, "a");
    cr_assert_str_eq(k.buf, "xxab", "sent %s", k.buf); /* "aba" can't start "abc" at 0; "a" can */
    cr_assert_eq(oa_stop_held(s), 1, "held %zu", oa_stop_held(s));
    feed(s, &k, "bd");
    cr_assert_str_eq(k.buf, "xxababd");
    cr_assert_eq(k.rc, 0, "rc %d", k.rc);
    feed(s, &k, "ab");
    finish(s, &k);
    cr_assert_str_eq(k.buf, "xxababdab");
    cr_assert_eq(k.rc, 0, "rc %d", k.rc);
    oa_stop_free(s);
}

Test(stop, overlapping_earliest_end_wins) {
    /* "bc" ends before "abcd" does: the cut is before "bc". */
    const char *stops[] = {"abcd", "bc"};
    const char *d[] = {"xabcd"};
    sink k;
    run(stops, 2, d, 1, &k);
    cr_assert_str_eq(k.buf, "xa");
    oa_stop *s = mk(stops, 2);
    sink k2 = {0};
    feed(s, &k2, "xabcd");
    cr_assert_eq(oa_stop_which(s), 1, "which %d", oa_stop_which(s));
    oa_stop_free(s);
}

Test(stop, same_end_longest_wins) {
    const char *stops[] = {"cd", "bcd", "d"};
    const char *d[] = {"ab", "c", "d", "e"};
    oa_stop *s = mk(stops, 3);
    sink k = {0};
    for (int i = 0; i < 4; i++)
        feed(s, &k, d[i]);
    cr_assert_str_eq(k.buf, "a");
    cr_assert_eq(oa_stop_which(s), 1, "which %d", oa_stop_which(s));
    oa_stop_free(s);
}

Test(stop, prefix_of_another) {
    const char *stops[] = {"abc", "ab"};
    const char *d1[] = {"x", "a", "bc"};
    sink k;
    run(stops, 2, d1, 3, &k);
    cr_assert_str_eq(k.buf, "x"); /* "ab" completes first */
    const char *stops2[] = {"ab", "abc"};
    const char *d2[] = {"xa", "c"};
    run(stops2, 2, d2, 2, &k);
    cr_assert_str_eq(k.buf, "xac");
    cr_assert_eq(k.rc, 0, "rc %d", k.rc);
}

Test(stop, multibyte) {
    const char *stops[] = {"\xc3\xa9t\xc3\xa9", "\xf0\x9f\x98\x80"};
    const char *d[] = {"caf\xc3\xa9", " \xc3\xa9", "t", "\xc3\xa9", "!"};
    sink k;
    run(stops, 2, d, 5, &k);
    cr_assert_str_eq(k.buf, "caf\xc3\xa9 ");
    const char *d2[] = {"a\xf0\x9f\x98\x81", "b\xf0\x9f\x98\x80"};
    run(stops, 2, d2, 2, &k);
    cr_assert_str_eq(k.buf, "a\xf0\x9f\x98\x81"
                            "b");
}

Test(stop, match_at_start_and_after_match) {
    const char *stops[] = {"<|end|>"};
    oa_stop *s = mk(stops, 1);
    sink k = {0};
    feed(s, &k, "<|end|>tail");
    cr_assert_eq(k.rc, 1, "rc %d", k.rc);
    cr_assert_eq(k.len, 0, "sent %zu", k.len);
    feed(s, &k, "more");
    cr_assert_eq(k.rc, 1, "rc after match %d", k.rc);
    cr_assert_eq(k.len, 0, "sent %zu", k.len);
    finish(s, &k);
    cr_assert_eq(k.rc, 1, "finish after match %d", k.rc);
    cr_assert_eq(k.len, 0, "sent %zu", k.len);
    oa_stop_reset(s);
    memset(&k, 0, sizeof k);
    feed(s, &k, "ok <|e");
    finish(s, &k);
    cr_assert_str_eq(k.buf, "ok <|e");
    cr_assert_eq(oa_stop_which(s), -1, "which %d", oa_stop_which(s));
    feed(s, &k, "more after finish");
    cr_assert_eq(k.rc, 0, "rc %d", k.rc);
    cr_assert_str_eq(k.buf, "ok <|e");
    oa_stop_free(s);
}

Test(stop, no_stops_pass_through) {
    oa_stop *s = NULL;
    cr_assert_eq(oa_stop_new(NULL, NULL, 0, &s), 0);
    sink k = {0};
    feed(s, &k, "anything");
    feed(s, &k, "");
    feed(s, &k, " goes");
    cr_assert_eq(oa_stop_held(s), 0, "held %zu", oa_stop_held(s));
    finish(s, &k);
    cr_assert_str_eq(k.buf, "anything goes");
    oa_stop_free(s);
    oa_stop_free(NULL);
}

Test(stop, bad_stops) {
    oa_stop *s = (oa_stop *)1;
    const char *stops[] = {"a", ""};
    size_t lens[] = {1, 0};
    cr_assert_eq(oa_stop_new(stops, lens, 2, &s), -EINVAL);
    cr_assert_null(s);
    size_t big[] = {OA_STOP_MAX_BYTES, 1};
    const char *two[] = {"x", "y"};
    cr_assert_eq(oa_stop_new(two, big, 2, &s), -EINVAL);
    cr_assert_eq(oa_stop_new(NULL, lens, 1, &s), -EINVAL);
}

Test(stop, nul_bytes_in_stop) {
    const char stop[] = {'a', 0, 'b'};
    const char *stops[] = {stop};
    size_t lens[] = {3};
    oa_stop *s = NULL;
    cr_assert_eq(oa_stop_new(stops, lens, 1, &s), 0);
    const char text[] = {'x', 'a', 0, 'b', 'y'};
    const char *o;
    size_t ol;
    cr_assert_eq(oa_stop_feed(s, text, 5, &o, &ol), 1);
    cr_assert_eq(ol, 1, "sent %zu", ol);
    cr_assert_eq(o[0], 'x');
    oa_stop_free(s);
}

/* A long output in one-byte deltas with a stop that keeps almost matching: linear time. */
Test(stop, long_output_linear) {
    enum { N = 1 << 20 };
    const char *stops[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                           "ac"};
    oa_stop *s = mk(stops, 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sent = 0;
    for (int i = 0; i < N; i++) {
        const char *o;
        size_t ol;
        cr_assert_eq(oa_stop_feed(s, "a", 1, &o, &ol), 0);
        sent += ol;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_assert_eq(sent + oa_stop_held(s), (uint64_t)N, "sent %llu held %zu",
                 (unsigned long long)sent, oa_stop_held(s));
    cr_assert_eq(oa_stop_held(s), strlen(stops[0]) - 1, "held %zu", oa_stop_held(s));
    cr_assert_lt(ms, 2000.0, "1 MiB of one-byte deltas took %.1f ms", ms);
    oa_stop_free(s);
}

/* ---- property test against a brute-force reference ---- */

static const char *ALPHA[] = {
    "a", "b", "a", "b", "c", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
#define N_ALPHA (sizeof ALPHA / sizeof ALPHA[0])

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Appends k random characters; records character boundaries in bnd (bnd[0] = 0). */
static size_t rand_utf8(char *out, size_t k, size_t *bnd, size_t *nb) {
    size_t len = 0;
    if (bnd) bnd[(*nb = 0)] = 0;
    for (size_t i = 0; i < k; i++) {
        const char *c = ALPHA[rnd(N_ALPHA)];
        memcpy(out + len, c, strlen(c));
        len += strlen(c);
        if (bnd) bnd[++*nb] = len;
    }
    out[len] = 0;
    return len;
}

/* Reference: first end position e where a stop ends; cut at the longest such stop. Returns
 * the cut (or len when none) and the stop's index in *which (-1 none). */
static size_t ref_cut(const char *t, size_t len, char stops[][32], size_t ns, int *which) {
    for (size_t e = 1; e <= len; e++) {
        size_t best = 0;
        *which = -1;
        for (size_t i = 0; i < ns; i++) {
            size_t l = strlen(stops[i]);
            if (l <= e && l > best && memcmp(t + e - l, stops[i], l) == 0) {
                best = l;
                *which = (int)i;
            }
        }
        if (best) return e - best;
    }
    *which = -1;
    return len;
}

/* Reference: the longest suffix of t[0..len) that is a proper prefix of some stop. */
static size_t ref_held(const char *t, size_t len, char stops[][32], size_t ns) {
    size_t best = 0;
    for (size_t i = 0; i < ns; i++) {
        size_t l = strlen(stops[i]);
        for (size_t k = l - 1; k > best; k--)
            if (k <= len && memcmp(t + len - k, stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

static void one_case(unsigned iter) {
    char text[512], stops[6][32];
    size_t bnd[200], nb;
    size_t len = rand_utf8(text, rnd(60), bnd, &nb);
    size_t ns = rnd(5);
    const char *sp[6];
    size_t sl[6];
    for (size_t i = 0; i < ns; i++) {
        if (nb > 0 && rnd(3) == 0) { /* a piece of the text itself */
            size_t a = rnd((uint32_t)nb), b = a + 1 + rnd((uint32_t)(nb - a < 5 ? nb - a : 5));
            if (b > nb) b = nb;
            memcpy(stops[i], text + bnd[a], bnd[b] - bnd[a]);
            stops[i][bnd[b] - bnd[a]] = 0;
        } else {
            rand_utf8(stops[i], 1 + rnd(4), NULL, NULL);
        }
        sp[i] = stops[i];
        sl[i] = strlen(stops[i]);
    }
    oa_stop *s = NULL;
    cr_assert_eq(oa_stop_new(sp, sl, ns, &s), 0);
    int which;
    size_t cut = ref_cut(text, len, stops, ns, &which);
    char got[512];
    size_t got_len = 0, pos = 0, c = 0;
    int rc = 0;
    while (c < nb || rnd(4) == 0) { /* deltas of 0..4 characters; sometimes empty at the end */
        size_t step = rnd(5), c2 = c + step > nb ? nb : c + step;
        const char *o;
        size_t ol;
        rc = oa_stop_feed(s, text + bnd[c], bnd[c2] - bnd[c], &o, &ol);
        cr_assert_geq(rc, 0);
        cr_assert(ol == 0 || (o[0] & 0xc0) != 0x80, "iter %u: a piece starts mid-character", iter);
        memcpy(got + got_len, o, ol);
        got_len += ol;
        c = c2;
        pos = bnd[c];
        if (rc == 1) break;
        size_t want = pos - ref_held(text, pos, stops, ns);
        cr_assert_eq(got_len, want, "iter %u: after %zu bytes sent %zu, want %zu", iter, pos,
                     got_len, want);
        cr_assert_eq(oa_stop_held(s), pos - want, "iter %u: held", iter);
        if (c == nb && rnd(2)) break;
    }
    if (rc == 0 && c == nb) {
        const char *o;
        size_t ol;
        cr_assert_eq(oa_stop_finish(s, &o, &ol), 0);
        memcpy(got + got_len, o, ol);
        got_len += ol;
    }
    if (c == nb || rc == 1) {
        cr_assert_eq(got_len, cut, "iter %u: sent %zu bytes, want %zu (text '%s')", iter, got_len,
                     cut, text);
        cr_assert_eq(rc, which >= 0, "iter %u: rc %d which %d", iter, rc, which);
        cr_assert_eq(oa_stop_which(s), which, "iter %u: which %d want %d", iter, oa_stop_which(s),
                     which);
    }
    cr_assert_eq(memcmp(got, text, got_len), 0, "iter %u: sent text differs", iter);
    cr_assert_eq(oa_stop_emitted(s), got_len);
    oa_stop_free(s);
}

Test(stop, property_vs_brute_force) {
    rng_state = 0x5eed5eedu;
    for (unsigned i = 0; i < 20000; i++)
        one_case(i);
}
