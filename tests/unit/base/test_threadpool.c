#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "common/base/threadpool.h"

typedef struct count_job {
    _Atomic int *hits;
    _Atomic int bad_thread;
    int n_threads;
} count_job;

static void count_fn(void *arg, int task, int thread) {
    count_job *j = arg;
    atomic_fetch_add(&j->hits[task], 1);
    if (thread < 0 || thread >= j->n_threads)
        atomic_store(&j->bad_thread, 1);
}

/* Every task of [0, n) runs exactly once, on a valid thread index. */
static void check_once(tp_pool *pool, int n) {
    count_job j = {calloc((size_t)(n > 0 ? n : 1), sizeof(_Atomic int)), 0, tp_threads(pool)};
    tp_run(pool, n, count_fn, &j);
    for (int i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&j.hits[i]), 1, "n=%d task %d ran %d times", n, i,
                     atomic_load(&j.hits[i]));
    cr_assert_eq(atomic_load(&j.bad_thread), 0, "thread index out of [0, %d)", j.n_threads);
    free(j.hits);
}

Test(threadpool, every_task_runs_exactly_once, .timeout = 20) {
    int threads[] = {1, 2, 3, 4};
    int sizes[] = {0, 1, 2, 3, 7, 100, 1000, 65535, 65536, 70001};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        tp_pool *pool;
        cr_assert_eq(tp_new(threads[t], &pool), 0);
        cr_assert_eq(tp_threads(pool), threads[t]);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            check_once(pool, sizes[s]);
        tp_free(pool);
    }
}

typedef struct sum_job {
    _Atomic long sum;
} sum_job;

static void sum_fn(void *arg, int task, int thread) {
    sum_job *j = arg;
    atomic_fetch_add(&j->sum, task + 1);
}

/* Many tiny back-to-back runs (the spin path) and runs after idle gaps (the futex path). */
Test(threadpool, many_runs_spinning_and_after_sleep, .timeout = 20) {
    tp_pool *pool;
    cr_assert_eq(tp_new(3, &pool), 0);
    for (int r = 0; r < 20000; r++) {
        sum_job j = {0};
        int n = 1 + r % 9;
        tp_run(pool, n, sum_fn, &j);
        cr_assert_eq(atomic_load(&j.sum), (long)n * (n + 1) / 2, "run %d: sum %ld", r,
                     atomic_load(&j.sum));
    }
    for (int r = 0; r < 20; r++) {
        struct timespec ts = {0, 300000}; /* 0.3 ms: longer than the spin */
        nanosleep(&ts, NULL);
        sum_job j = {0};
        tp_run(pool, 64, sum_fn, &j);
        cr_assert_eq(atomic_load(&j.sum), 64L * 65 / 2);
    }
    tp_free(pool);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

Test(threadpool, idle_workers_sleep, .timeout = 20) {
    tp_pool *pool;
    cr_assert_eq(tp_new(4, &pool), 0);
    sum_job j = {0};
    tp_run(pool, 16, sum_fn, &j);
    struct timespec settle = {0, 20000000};
    nanosleep(&settle, NULL); /* let the spin phase end */
    double c0 = cpu_seconds();
    struct timespec idle = {0, 200000000};
    nanosleep(&idle, NULL);
    double used = cpu_seconds() - c0;
    cr_assert_lt(used, 0.02, "3 idle workers used %.3f s of CPU in 0.2 s", used);
    tp_free(pool);
}

Test(threadpool, bad_arguments) {
    tp_pool *pool = (tp_pool *)1;
    cr_assert_eq(tp_new(0, &pool), -EINVAL);
    cr_assert_null(pool);
    tp_free(NULL);
}
