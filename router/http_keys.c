/* http_keys.c: API keys (see http_int.h). Keys are kept only as SHA-256 digests; a presented
 * token is hashed and compared with every digest by CRYPTO_memcmp, without an early exit, so
 * the time taken does not depend on which key matched or how much of one did. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "router/http_int.h"

#define KEYS_MAX_FILE (4u << 20) /* bytes of a keys file */
#define KEY_MAX_LEN   512

/* Reads the whole file (at most KEYS_MAX_FILE bytes) into a NUL-terminated buffer. */
static int read_small_file(const char *path, char **out, size_t *len, afd_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return afd_errf(err, -errno, "keys file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return afd_errf(err, AFD_E_FORMAT, "keys file %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > KEYS_MAX_FILE) {
        close(fd);
        return afd_errf(err, AFD_E_LIMIT, "keys file %s: %lld bytes, over the limit of %u", path,
                        (long long)st.st_size, KEYS_MAX_FILE);
    }
    char *buf = afd_try_alloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return afd_errf(err, -ENOMEM, "keys file %s: out of memory", path);
    }
    size_t n = 0;
    for (ssize_t r; n < (size_t)st.st_size; n += (size_t)r)
        if ((r = read(fd, buf + n, (size_t)st.st_size - n)) <= 0) break;
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* Trims the line in place; returns the key, NULL for a blank or comment line. */
static char *key_of_line(char *line) {
    while (*line == ' ' || *line == '\t')
        line++;
    char *e = line + strlen(line);
    while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = 0;
    return *line && *line != '#' ? line : NULL;
}

static int key_valid(const char *k) {
    size_t n = strlen(k);
    if (n > KEY_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) return 0;
    return 1;
}

static int parse_keys(const char *path, char *text, size_t len, rh_keys *out, afd_err *err) {
    int cap = 16, lineno = 0;
    out->digest = xmalloc((size_t)cap * sizeof *out->digest);
    out->n = 0;
    if (memchr(text, 0, len))
        return afd_errf(err, AFD_E_FORMAT, "keys file %s: contains a NUL byte", path);
    for (char *save = NULL, *line = text; line; line = save) {
        lineno++;
        save = strchr(line, '\n');
        if (save) *save++ = 0;
        char *k = key_of_line(line);
        if (!k) continue;
        if (!key_valid(k))
            return afd_errf(err, AFD_E_FORMAT,
                            "keys file %s line %d: a key is 1..%d visible ASCII characters "
                            "without spaces",
                            path, lineno, KEY_MAX_LEN);
        if (out->n == cap) {
            cap *= 2;
            out->digest = xrealloc(out->digest, (size_t)cap * sizeof *out->digest);
        }
        SHA256((const unsigned char *)k, strlen(k), out->digest[out->n++]);
    }
    if (out->n == 0)
        return afd_errf(err, AFD_E_FORMAT,
                        "keys file %s: no keys (to turn authentication off, configure no file)",
                        path);
    return 0;
}

int rh_keys_load(const char *path, rh_keys *out, afd_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = read_small_file(path, &text, &len, err);
    if (rc) return rc;
    rh_keys k = {0};
    rc = parse_keys(path, text, len, &k, err);
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc) {
        rh_keys_clear(&k);
        return rc;
    }
    rh_keys_clear(out);
    *out = k;
    return 0;
}

void rh_keys_clear(rh_keys *k) {
    free(k->digest);
    k->digest = NULL;
    k->n = 0;
}

int rh_keys_check(const rh_keys *k, const char *token, size_t len) {
    unsigned char d[32];
    SHA256((const unsigned char *)token, len, d);
    int hit = 0;
    for (int i = 0; i < k->n; i++)
        hit |= CRYPTO_memcmp(d, k->digest[i], sizeof d) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return hit;
}

const char *rh_bearer_token(const char *value, size_t *len) {
    if (!value || strncasecmp(value, "Bearer", 6) != 0 || (value[6] != ' ' && value[6] != '\t'))
        return NULL;
    const char *t = value + 6;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t n = strcspn(t, " \t");
    if (n == 0 || t[n] != 0) return NULL;
    *len = n;
    return t;
}
