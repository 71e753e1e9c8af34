/* profile_time.c: medians of repeated runs, each starting with cold caches.
 *
 * In a decode step a layer's weights and KV blocks were last touched one whole step earlier,
 * after every other layer streamed through the caches; timing the same layer back to back
 * would find them cached. So before each timed run the timer reads a buffer several times the
 * size of the last-level cache this process can use (bounded to 64..256 MiB). --warm skips
 * that: runs back to back, data left in the caches by the previous run.
 *
 * The machine may be shared, and another process can take a core for a while. So a grid is
 * measured in rounds, each giving every point its share of the runs: a burst of contention
 * then spreads over all points instead of lifting a few neighbours, and the medians stay in
 * order.
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

int prof_time_round(prof_timer *t, prof_fn fn, prof_prep_fn prep, void *arg, prof_sample *s,
                    int rounds) {
    if (!s->runs && !(s->runs = malloc((size_t)t->max_reps * sizeof *s->runs)))
        return -ENOMEM;
    int min = (t->min_reps + rounds - 1) / rounds, n = 0, rc = 0;
    double budget_ns = t->budget_ms * 1e6 / rounds;
    uint64_t start = afd_now_ns();
    while (s->reps < t->max_reps && (n < min || (double)(afd_now_ns() - start) < budget_ns)) {
        if (prep)
            prep(arg);
        if (t->flush)
            flush_caches(t);
        uint64_t t0 = afd_now_ns();
        if ((rc = fn(arg)))
            break;
        s->runs[s->reps++] = (double)(afd_now_ns() - t0) / 1e3;
        n++;
    }
    return rc;
}

void prof_time_finish(prof_sample *s) {
    int n = s->reps;
    if (n > 0) {
        qsort(s->runs, (size_t)n, sizeof *s->runs, cmp_double);
        s->us = n % 2 ? s->runs[n / 2] : 0.5 * (s->runs[n / 2 - 1] + s->runs[n / 2]);
        s->us_min = s->runs[0], s->us_max = s->runs[n - 1];
    }
    free(s->runs);
    s->runs = NULL;
}

int prof_time(prof_timer *t, prof_fn fn, prof_prep_fn prep, void *arg, prof_sample *s) {
    int rc = prof_time_round(t, fn, prep, arg, s, 1);
    prof_time_finish(s);
    return rc;
}
