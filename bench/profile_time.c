/* profile_time.c: medians of repeated runs, each starting with cold caches.
 *
 * In a decode step a layer's weights and KV blocks were last touched one whole step earlier,
 * after every other layer streamed through the caches; timing the same layer back to back
 * would find them cached. So before each timed run the timer reads a buffer several times the
 * size of the last-level cache this process can use (bounded to 64..256 MiB). --warm skips
 * that: runs back to back, data left in the caches by the previous run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/profile_impl.h"
#include "common/base/clock.h"

#define FLUSH_MIN ((size_t)64 << 20)
#define FLUSH_MAX ((size_t)256 << 20)

static size_t flush_size(void) {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t n = l3 > 0 ? (size_t)l3 * 2 : FLUSH_MIN;
    return n < FLUSH_MIN ? FLUSH_MIN : n > FLUSH_MAX ? FLUSH_MAX : n;
}

int prof_timer_init(prof_timer *t, const prof_opts *o) {
    memset(t, 0, sizeof *t);
    t->min_reps = o->min_reps, t->max_reps = o->max_reps, t->budget_ms = o->budget_ms;
    if (o->warm)
        return 0;
    t->flush_bytes = flush_size();
    void *p = mmap(NULL, t->flush_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                   0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "afd-bench profile: cache-flush buffer of %zu MiB: %s\n",
                t->flush_bytes >> 20, strerror(errno));
        return -errno;
    }
    t->flush = p;
    memset(t->flush, 1, t->flush_bytes); /* real pages, not the shared zero page */
    return 0;
}

void prof_timer_free(prof_timer *t) {
    if (t && t->flush)
        munmap(t->flush, t->flush_bytes);
    if (t)
        memset(t, 0, sizeof *t);
}

static void flush_caches(prof_timer *t) {
    const uint64_t *p = (const uint64_t *)t->flush;
    uint64_t s = 0;
    for (size_t i = 0; i < t->flush_bytes / 8; i += 8) /* one load per 64-byte line */
        s += p[i];
    t->sink += s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int prof_time(prof_timer *t, prof_fn fn, prof_prep_fn prep, void *arg, prof_sample *s) {
    double *us = malloc((size_t)t->max_reps * sizeof *us);
    if (!us)
        return -ENOMEM;
    uint64_t start = afd_now_ns();
    int n = 0, rc = 0;
    while (n < t->max_reps &&
           (n < t->min_reps || (double)(afd_now_ns() - start) < t->budget_ms * 1e6)) {
        if (prep)
            prep(arg);
        if (t->flush)
            flush_caches(t);
        uint64_t t0 = afd_now_ns();
        if ((rc = fn(arg)))
            break;
        us[n++] = (double)(afd_now_ns() - t0) / 1e3;
    }
    if (!rc) {
        qsort(us, (size_t)n, sizeof *us, cmp_double);
        s->us = n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
        s->us_min = us[0], s->us_max = us[n - 1], s->reps = n;
    }
    free(us);
    return rc;
}
