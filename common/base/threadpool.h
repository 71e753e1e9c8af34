/* threadpool.h: a tiny persistent pool of worker threads for data-parallel kernels.
 *
 * tp_run(pool, n, fn, arg) calls fn(arg, task, thread) once for every task in [0, n) and
 * returns when all of them are done. The calling thread is worker 0 and takes tasks too, so a
 * pool of n_threads starts n_threads - 1 threads. Tasks are handed out dynamically (an atomic
 * counter): which thread runs which task varies from run to run, so a task must compute the
 * same thing whoever runs it; `thread` (0 <= thread < tp_threads) only selects per-thread
 * scratch memory. Results must not depend on the split (see backend.h, batch invariance).
 *
 * Idle workers spin briefly (about 50 us, cheap pauses) waiting for the next run, then sleep
 * on a futex, so a burst of small ops does not pay a wake-up each and an idle pool burns no CPU.
 * tp_run allocates nothing. One caller at a time per pool (not reentrant: fn must not call
 * tp_run on the same pool). tp_free joins the workers; tp_free(NULL) is a no-op.
 */
#ifndef AFD_THREADPOOL_H
#define AFD_THREADPOOL_H

typedef struct tp_pool tp_pool;

typedef void (*tp_fn)(void *arg, int task, int thread);

/* Starts a pool of n_threads (>= 1, caller included). 0 and *out, or -EINVAL / -ENOMEM /
 * -errno of pthread_create. */
int tp_new(int n_threads, tp_pool **out);
void tp_free(tp_pool *pool);
/* Number of threads, caller included. */
int tp_threads(const tp_pool *pool);
/* Runs fn for tasks [0, n_tasks) on all threads; returns when every task has finished.
 * n_tasks <= 0 returns at once; a single task runs on the caller without waking anyone. */
void tp_run(tp_pool *pool, int n_tasks, tp_fn fn, void *arg);

#endif
