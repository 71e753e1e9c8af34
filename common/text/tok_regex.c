/* tok_regex.c: HF tokenizer.json patterns -> PCRE2.
 *
 * HF tokenizers runs patterns with Oniguruma, whose Unicode \s is the White_Space property.
 * PCRE2's \s (with UCP) also matches U+180E, and JavaScript's adds U+FEFF and drops U+0085; so
 * \s and \S outside a class, and \s inside one, are rewritten to the explicit White_Space set.
 * (\S inside a class keeps PCRE2's meaning; no pattern of this family uses it.) Everything else
 * is passed through: the family's syntax (\p{..}, classes, lookahead, (?i:..)) is common to
 * both engines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/text/tok_int.h"

#define WS_SET                                                                                     \
    "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"           \
    "\\x{202F}\\x{205F}\\x{3000}"

typedef struct rbuf {
    char *p;
    size_t n, cap;
} rbuf;

static void rb_put(rbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void rb_puts(rbuf *b, const char *s) { rb_put(b, s, strlen(s)); }

/* Copies an escape starting at p[i] == '\\'; returns the index after it. */
static size_t copy_escape(rbuf *b, const char *p, size_t n, size_t i, bool in_class) {
    if (i + 1 >= n) {
        rb_put(b, p + i, 1); /* a trailing backslash: PCRE2 reports it */
        return n;
    }
    char d = p[i + 1];
    if (d == 'Q') { /* \Q...\E literal run, copied whole */
        const char *e = NULL;
        for (size_t j = i + 2; j + 1 < n && !e; j++)
            if (p[j] == '\\' && p[j + 1] == 'E')
                e = p + j;
        size_t end = e ? (size_t)(e - p) + 2 : n;
        rb_put(b, p + i, end - i);
        return end;
    }
    if (d == 's')
        rb_puts(b, in_class ? WS_SET : "[" WS_SET "]");
    else if (d == 'S' && !in_class)
        rb_puts(b, "[^" WS_SET "]");
    else
        rb_put(b, p + i, 2);
    return i + 2;
}

/* Rewrites \s / \S (see the top of the file) into out (NUL-terminated, caller frees). */
static char *translate(const char *p, size_t n, size_t *out_len) {
    rbuf b = {0};
    rb_put(&b, "", 0);
    bool in_class = false, class_start = false;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\') {
            i = copy_escape(&b, p, n, i, in_class);
            class_start = false;
            continue;
        }
        if (in_class) {
            if (c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
                const char *e = memmem(p + i + 2, n - i - 2, ":]", 2);
                size_t end = e ? (size_t)(e - p) + 2 : i + 1;
                rb_put(&b, p + i, end - i);
                i = end;
                class_start = false;
                continue;
            }
            if (c == ']' && !class_start)
                in_class = false;
            class_start = false;
            rb_put(&b, &c, 1);
            i++;
            continue;
        }
        rb_put(&b, &c, 1);
        i++;
        if (c == '[') {
            in_class = class_start = true;
            if (i < n && p[i] == '^') {
                rb_put(&b, "^", 1);
                i++;
            }
        }
    }
    *out_len = b.n;
    return b.p;
}

int tok_regex_compile(const char *pattern, size_t len, bool literal, pcre2_code **re, bool *jit,
                      const char *what, afd_err *err) {
    size_t plen = len;
    char *pat = literal ? NULL : translate(pattern, len, &plen);
    uint32_t opts = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    *re = pcre2_compile((PCRE2_SPTR)(literal ? pattern : pat), plen, opts, &ecode, &eoff, NULL);
    free(pat);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return afd_errf(err, AFD_E_FORMAT, "%s: bad regex \"%.*s\": %s (near offset %zu)", what,
                        (int)(len > 200 ? 200 : len), pattern, (const char *)msg, (size_t)eoff);
    }
    *jit = pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}
