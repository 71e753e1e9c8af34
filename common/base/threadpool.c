#include "common/base/threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"

#define TP_SPIN_NS 50000    /* how long an idle thread spins before sleeping */
#define TP_MAX_ROUND 65535 /* tasks per published round (16-bit fields of `state`) */

/* `state` packs the run generation (high 32 bits), the number of tasks of the round (16 bits)
 * and the next unclaimed task (low 16 bits), so a claim is one CAS that also proves the round
 * is still the one the worker woke up for: a late worker can never claim a task of a newer
 * round with an older fn. */
struct tp_pool {
    int n_threads;
    pthread_t *threads;
    tp_fn fn; /* valid while a round has unfinished tasks */
    void *arg;
    uint32_t cur_gen; /* caller-private copy */
    _Alignas(64) _Atomic uint64_t state;
    _Alignas(64) _Atomic uint32_t gen; /* futex word the idle workers sleep on */
    _Atomic int sleepers;
    _Atomic int stop;
    _Alignas(64) _Atomic uint32_t done; /* tasks finished in the current round; caller's futex */
    _Atomic int waiting;
};

typedef struct tp_worker_arg {
    tp_pool *pool;
    int thread;
} tp_worker_arg;

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void) { __builtin_ia32_pause(); }

/* Claims and runs tasks of round `gen` until none is left (or a newer round started). */
static void tp_work(tp_pool *pool, uint32_t gen, int thread) {
    uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
    for (;;) {
        uint32_t n = (uint32_t)(s >> 16) & 0xffff, next = (uint32_t)s & 0xffff;
        if ((uint32_t)(s >> 32) != gen || next >= n)
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        pool->fn(pool->arg, (int)next, thread);
        uint32_t d = atomic_fetch_add(&pool->done, 1) + 1;
        if (d == n && atomic_load(&pool->waiting))
            futex_wake(&pool->done);
        s = atomic_load_explicit(&pool->state, memory_order_acquire);
    }
}

/* Waits until pool->gen differs from `seen`: spin first, then sleep. Returns the new value. */
static uint32_t tp_wait_gen(tp_pool *pool, uint32_t seen) {
    uint64_t t0 = afd_now_ns();
    for (unsigned i = 1;; i++) {
        uint32_t g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 63) == 0 && afd_now_ns() - t0 > TP_SPIN_NS)
            break;
    }
    for (;;) {
        atomic_fetch_add(&pool->sleepers, 1);
        uint32_t g = atomic_load(&pool->gen);
        if (g == seen)
            futex_wait(&pool->gen, seen);
        atomic_fetch_sub(&pool->sleepers, 1);
        g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (g != seen)
            return g;
    }
}

static void *tp_worker(void *p) {
    tp_worker_arg wa = *(tp_worker_arg *)p;
    free(p);
    uint32_t seen = 0;
    for (;;) {
        seen = tp_wait_gen(wa.pool, seen);
        if (atomic_load(&wa.pool->stop))
            return NULL;
        tp_work(wa.pool, seen, wa.thread);
    }
}

/* The caller's wait for the last task of a round: spin, then sleep on `done`. */
static void tp_wait_done(tp_pool *pool, uint32_t n) {
    uint64_t t0 = afd_now_ns();
    for (unsigned i = 1; atomic_load_explicit(&pool->done, memory_order_acquire) != n; i++) {
        cpu_relax();
        if ((i & 63) == 0 && afd_now_ns() - t0 > TP_SPIN_NS)
            break;
    }
    atomic_store(&pool->waiting, 1);
    for (;;) {
        uint32_t d = atomic_load(&pool->done);
        if (d == n)
            break;
        futex_wait(&pool->done, d);
    }
    atomic_store(&pool->waiting, 0);
}

int tp_new(int n_threads, tp_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return -EINVAL;
    tp_pool *pool = afd_try_alloc(sizeof *pool);
    if (!pool)
        return -ENOMEM;
    pool->n_threads = 1;
    pool->threads = afd_try_alloc(sizeof(pthread_t) * (size_t)n_threads);
    if (!pool->threads) {
        free(pool);
        return -ENOMEM;
    }
    for (int i = 1; i < n_threads; i++) {
        tp_worker_arg *wa = xmalloc(sizeof *wa);
        wa->pool = pool, wa->thread = i;
        int rc = pthread_create(&pool->threads[i], NULL, tp_worker, wa);
        if (rc) {
            free(wa);
            tp_free(pool);
            return -rc;
        }
        pool->n_threads = i + 1;
    }
    *out = pool;
    return 0;
}

void tp_free(tp_pool *pool) {
    if (!pool)
        return;
    atomic_store(&pool->stop, 1);
    atomic_fetch_add(&pool->gen, 1);
    futex_wake(&pool->gen);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    free(pool);
}

int tp_threads(const tp_pool *pool) { return pool->n_threads; }

/* One round of at most TP_MAX_ROUND tasks, numbered from `base`. */
typedef struct tp_offset {
    tp_fn fn;
    void *arg;
    int base;
} tp_offset;

static void tp_offset_fn(void *p, int task, int thread) {
    tp_offset *o = p;
    o->fn(o->arg, o->base + task, thread);
}

static void tp_round(tp_pool *pool, uint32_t n, tp_fn fn, void *arg) {
    pool->fn = fn;
    pool->arg = arg;
    uint32_t gen = ++pool->cur_gen;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->state, ((uint64_t)gen << 32) | ((uint64_t)n << 16),
                          memory_order_release);
    atomic_store(&pool->gen, gen);
    if (atomic_load(&pool->sleepers) > 0)
        futex_wake(&pool->gen);
    tp_work(pool, gen, 0);
    tp_wait_done(pool, n);
}

void tp_run(tp_pool *pool, int n_tasks, tp_fn fn, void *arg) {
    if (n_tasks <= 0)
        return;
    if (n_tasks == 1 || pool->n_threads == 1) {
        for (int i = 0; i < n_tasks; i++)
            fn(arg, i, 0);
        return;
    }
    if (n_tasks <= TP_MAX_ROUND) {
        tp_round(pool, (uint32_t)n_tasks, fn, arg);
        return;
    }
    tp_offset o = {fn, arg, 0};
    for (; o.base < n_tasks; o.base += TP_MAX_ROUND) {
        int n = n_tasks - o.base < TP_MAX_ROUND ? n_tasks - o.base : TP_MAX_ROUND;
        tp_round(pool, (uint32_t)n, tp_offset_fn, &o);
    }
}
