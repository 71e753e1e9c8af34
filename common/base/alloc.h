/* alloc.h: the two allocation flavours.
 *
 * x*() abort the process on failure: use them for small internal sizes that do not come from
 * outside (a struct, a name, a table sized by the model config after it has been validated).
 * afd_try_*() return NULL on failure: use them whenever the size comes from a request, a peer or
 * a file (prompt length, batch, KV blocks, body), and turn NULL into an error reply.
 * Aligned allocations are released with free(). Thread-safe.
 */
#ifndef AFD_ALLOC_H
#define AFD_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned, zeroed; abort on failure. */
void *xalloc_aligned(size_t n);

/* NULL on failure or when n == 0 (never aborts). Zeroed, 64-byte aligned. */
void *afd_try_alloc(size_t n);
/* a * b with overflow check: returns 0 and sets *out, or -1 on overflow. */
int afd_mul_size(size_t a, size_t b, size_t *out);

#endif
