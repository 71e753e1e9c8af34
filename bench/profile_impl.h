/* profile_impl.h: the parts of `afd-bench profile` (bench/profile*.c), shared among them only.
 *
 *   profile.c         options, the run in order, the afd-profile v1 file, the summary line
 *   profile_engine.c  the model on this machine: attention and FFN layers, step overhead and KV
 *                     capacity, timed with the engine's own functions (common/layers)
 *   profile_link.c    one-way transfer times over UCX on loopback, or samples from another file
 *   profile_xport.c   round trips through afd's transport (proto/xport.h) to a forked echo
 *   profile_time.c    medians of repeated runs with the caches flushed between them
 *
 * Everything here runs on one thread (the backend has its own workers). Functions return 0 or a
 * negative code after printing one line on stderr that says what failed. Measurement results
 * are plain arrays owned by the prof_result.
 */
#ifndef AFD_BENCH_PROFILE_IMPL_H
#define AFD_BENCH_PROFILE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROF_MAX_POINTS 32 /* values per list option (--batches, --contexts, ...) */

typedef struct prof_list {
    long v[PROF_MAX_POINTS];
    int n;
} prof_list;

typedef struct prof_opts {
    const char *model, *out, *link_from, *isa, *kv_dtype;
    bool quick, no_link, warm, link_raw;
    int threads, shards;
    prof_list batches, contexts, tokens, link_bytes; /* link_bytes.n 0: derived from the model */
    uint64_t kv_mem;                                 /* KV budget for kv_capacity_tokens */
    /* timing: at least min_reps runs per point, more until budget_ms of wall time, spread
     * over `rounds` passes over the grid */
    int min_reps, max_reps, rounds;
    double budget_ms;
} prof_opts;

typedef struct prof_sample {
    double x0, x1; /* attention: batch, context; ffn: tokens; link: bytes */
    double us;     /* median */
    double us_min, us_max;
    int reps;
    double *runs;  /* while being measured: every run so far, us (prof_time_round) */
} prof_sample;

typedef struct prof_result {
    char model_name[64], hardware[160], backend[64];
    int layer;       /* the layer timed (a MoE layer when there is one) */
    bool layer_moe;
    int n_layers, hidden, top_k, n_experts;
    const char *kv_dtype;
    int block_size;
    size_t kv_bytes_per_token; /* every layer's K and V (and scales) for one position */
    long kv_capacity_tokens;
    double step_overhead_us;
    int overhead_batch;
    double a2f_bytes_per_token, f2a_bytes_per_token;
    double route_imbalance; /* busiest expert's share of routed slots / the even share */
    int shards;
    prof_sample attn[PROF_MAX_POINTS * PROF_MAX_POINTS];
    int n_attn;
    prof_sample ffn[PROF_MAX_POINTS];
    int n_ffn;
    prof_sample link[PROF_MAX_POINTS];
    int n_link;
    char link_source[512]; /* what measured the link samples */
    bool have_link;
} prof_result;

/* ---- profile_time.c ---- */

typedef int (*prof_fn)(void *arg);        /* the timed work: 0 or negative */
typedef void (*prof_prep_fn)(void *arg);  /* untimed, before each run (restore inputs) */

typedef struct prof_timer {
    uint8_t *flush; /* read between runs to push the timed work's data out of the caches;
                       NULL with --warm */
    size_t flush_bytes;
    int min_reps, max_reps;
    double budget_ms;
    uint64_t sink;
} prof_timer;

int prof_timer_init(prof_timer *t, const prof_opts *o);
void prof_timer_free(prof_timer *t);
/* One round of a point: runs prep (may be NULL), a cache flush, then fn timed, until this
 * round's share (1/rounds) of min_reps and budget_ms (wall time, flushes included) is done,
 * or max_reps runs in all; appends to s->runs and s->reps. 0, -ENOMEM or fn's error. */
int prof_time_round(prof_timer *t, prof_fn fn, prof_prep_fn prep, void *arg, prof_sample *s,
                    int rounds);
/* s->us (median), us_min and us_max from the runs, which it frees. */
void prof_time_finish(prof_sample *s);
/* One point in one round, finished. */
int prof_time(prof_timer *t, prof_fn fn, prof_prep_fn prep, void *arg, prof_sample *s);

/* ---- profile_engine.c ---- */

typedef struct prof_engine prof_engine;

/* Loads the model (all parts; with --shards N > 1 also shard 0 of N EP shards of the FFN),
 * opens the backend and sizes the engine and scratch for the option lists. */
int prof_engine_open(const prof_opts *o, prof_engine **out, prof_result *r);
void prof_engine_free(prof_engine *pe);
/* ffn.samples: the timed layer's afd_ffn_forward for each --tokens count, routed by the
 * model's own router on hidden states of a prefill. Also sets r->route_imbalance. */
int prof_measure_ffn(prof_engine *pe, prof_timer *t, prof_result *r);
/* attention.samples: afd_attn_layer + afd_ffn_prepare of the timed layer for each batch x
 * context, over a KV cache filled with `context` positions per sequence. */
int prof_measure_attention(prof_engine *pe, prof_timer *t, prof_result *r);
/* attention.step_overhead_us: embedding, final norm, lm_head and sampling for the largest
 * batch. Call after prof_measure_attention (it reuses that batch's sequences). */
int prof_measure_overhead(prof_engine *pe, prof_timer *t, prof_result *r);

/* ---- profile_link.c ---- */

/* link.samples over UCX on 127.0.0.1 (UCX_NET_DEVICES=lo unless set) for each size; sizes
 * from o->link_bytes, else derived from r's wire bytes per token and the token counts. */
int prof_measure_link(const prof_opts *o, prof_result *r);
/* link.samples copied from another afd-profile file (its "link" section). */
int prof_link_from_file(const char *path, prof_result *r);

/* ---- profile_xport.c ---- */

typedef struct prof_xp prof_xp;

/* Forks an xport echo on 127.0.0.1 and connects to it; frames of up to max_bytes. 0 or
 * negative (*out is then still to be closed). */
int prof_xp_open(size_t max_bytes, prof_xp **out);
/* warmup + iters round trips of an A2F frame of `bytes` payload and an 8-byte F2A reply;
 * us[iters] gets the timed ones in microseconds. 0 or negative. */
int prof_xp_round_trips(prof_xp *x, size_t bytes, int warmup, int iters, double *us);
/* Closes the connection, waits for the echo to exit (kills it after 3 s). NULL is a no-op. */
void prof_xp_close(prof_xp *x);

#endif
