#include "common/base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *afd_try_alloc(size_t n) {
    if (n == 0)
        return NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n)
        return NULL;
    void *p = aligned_alloc(64, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

void *xalloc_aligned(size_t n) {
    void *p = afd_try_alloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

int afd_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > (size_t)-1 / a)
        return -1;
    *out = a * b;
    return 0;
}
