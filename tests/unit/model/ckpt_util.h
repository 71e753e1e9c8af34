/* ckpt_util.h: helpers shared by the model tests (header-only; each test is its own binary).
 *
 * Temporary directories under $TMPDIR (or /tmp), removed recursively; raw safetensors files
 * built from a header string; small text files.
 */
#ifndef AFD_TEST_CKPT_UTIL_H
#define AFD_TEST_CKPT_UTIL_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int ck_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void ck_rm_rf(const char *dir) {
    nftw(dir, ck_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory; path written to buf (>= 64 bytes). */
static inline void ck_tmpdir(char *buf, size_t cap) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, cap, "%s/afd-model-test-XXXXXX", t && t[0] ? t : "/tmp");
    cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

/* dir/name into buf. */
static inline const char *ck_path(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

static inline void ck_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n, "fwrite %s", path);
    cr_assert_eq(fclose(f), 0);
}

static inline void ck_write_text(const char *path, const char *text) {
    ck_write(path, text, strlen(text));
}

/* A safetensors image: 8-byte length `hlen` (as given, may lie), the header text, then `dsize`
 * data bytes (0x5a). Caller frees; total length in *len. */
static inline uint8_t *ck_image_raw(uint64_t hlen, const char *hdr, uint64_t dsize, uint64_t *len) {
    size_t h = strlen(hdr);
    *len = 8 + h + dsize;
    uint8_t *b = malloc(*len ? *len : 1);
    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, hdr, h);
    memset(b + 8 + h, 0x5a, dsize);
    return b;
}

/* The same with the true header length. */
static inline uint8_t *ck_image(const char *hdr, uint64_t dsize, uint64_t *len) {
    return ck_image_raw(strlen(hdr), hdr, dsize, len);
}

#endif
