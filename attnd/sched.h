/* sched.h: attnd's continuous batching: which tokens of which sequences make up each step.
 *
 * Sequences are submitted (prompt + sampling + limits), wait in FIFO order until the running
 * set has room and the KV pool can hold their prompt, then run: a step holds one decode token
 * of every running sequence past its prompt plus prefill chunks of the others, up to the token
 * budget. After the forward pass each sequence whose last fed token wanted logits samples its
 * next token (its own sampling parameters and RNG), which is reported through on_token;
 * a sequence ends on a stop id (EOS unless ignore_eos, plus its own stop ids), on max_tokens,
 * at the model's context limit, by cancellation, or on an error, reported once through
 * on_finish, and its KV blocks go back to the pool at that step boundary.
 *
 * KV: a running sequence holds the blocks of every position it has fed. When a decode token
 * finds no free block the sequence waits (skips steps) until blocks free up; it is never
 * corrupted, and a sequence that can never fit (prompt + max_tokens over the whole pool, or
 * over the model's context) is refused at submit.
 *
 * The forward pass is a callback (the AFD pipeline in attnd, the local engine in tests and
 * tools), so the scheduler is the same everywhere. Ownership: the scheduler owns the sequence
 * objects it returns from at_sched_submit until on_finish returns (then frees them); it borrows
 * the engine (for its KV pool and model config). One thread.
 */
#ifndef AFD_ATTND_SCHED_H
#define AFD_ATTND_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "common/layers/engine.h"
#include "common/layers/sampling.h"

#define AT_MAX_STOP 16

/* AT_FIN_KV: an adopted sequence ended because the pool ran out of blocks (see at_sched_adopt) */
enum { AT_FIN_NONE, AT_FIN_STOP, AT_FIN_LENGTH, AT_FIN_CANCELLED, AT_FIN_ERROR, AT_FIN_KV };

typedef struct at_request {
    uint64_t id;                    /* the caller's sequence id */
    const int32_t *prompt;          /* copied at submit */
    int n_prompt;
    afd_sampling sp;
    int max_tokens;                 /* generated tokens at most (>= 1) */
    int32_t stop_ids[AT_MAX_STOP];
    int n_stop;
    bool ignore_eos;
    bool keep_kv;                   /* at the end, hand the KV blocks to on_kv (prefill side of
                                       a handoff) instead of freeing them */
    void *ud;                       /* handed back in callbacks */
} at_request;

typedef struct at_seq at_seq;

typedef struct at_sched_ops {
    /* forward pass: logits rows of the wanted tokens in batch order; rows or negative */
    int (*forward)(void *ud, const afd_fwd_batch *b, float *logits);
    void (*on_token)(void *ud, uint64_t id, void *req_ud, const afd_sample *s);
    void (*on_finish)(void *ud, uint64_t id, void *req_ud, int reason, int n_generated);
    /* keep_kv sequences, just before on_finish: kv holds the blocks of every fed position
     * (kv->n_tokens). The callee may take them by copying *kv and then kv_seq_init(kv);
     * whatever is left in kv is freed. Optional. */
    void (*on_kv)(void *ud, uint64_t id, void *req_ud, afd_kv_seq *kv);
} at_sched_ops;

typedef struct at_sched_opts {
    int max_seqs;       /* running sequences at most */
    int max_tokens;     /* tokens per step (decode tokens + prefill chunks) */
    int prefill_chunk;  /* prompt tokens of one sequence per step at most */
} at_sched_opts;

typedef struct at_sched_stats {
    int running, waiting, stalled; /* stalled: running but waiting for a KV block */
    uint64_t steps, tokens_in, tokens_out;
    uint64_t preempted, waited; /* preemptions; steps where a sequence had to wait to enter */
    uint64_t adopted, kv_evicted; /* sequences adopted; adopted ones ended for want of blocks */
    int last_batch;
    uint64_t ctx_tokens; /* sum of the running sequences' context lengths */
} at_sched_stats;

typedef struct at_sched at_sched;

/* 0, -EINVAL (options), -ENOMEM. */
int at_sched_new(at_sched **out, afd_engine *e, const at_sched_opts *o, const at_sched_ops *ops,
                 void *ud);
void at_sched_free(at_sched *s); /* running and waiting sequences end as cancelled */

/* Queues a sequence. 0; AFD_E_LIMIT (prompt + max_tokens can never fit the KV pool or the
 * model's context, or the queue is full), -EINVAL (empty prompt, token ids outside the vocab,
 * bad sampling values), -EEXIST (id in use). */
int at_sched_submit(at_sched *s, const at_request *r);
/* What at_sched_submit would say of r, without queueing it (r->prompt may be NULL: ids are
 * then not checked). 0, AFD_E_LIMIT, -EINVAL. */
int at_sched_check(const at_sched *s, const at_request *r);
/* Adopts a sequence prefilled elsewhere (the decode side of a handoff): kv holds the K/V of
 * positions 0 .. n_prompt-1 (kv->n_tokens == r->n_prompt; the table is taken over and kv left
 * empty), first is the token sampled after the prompt (already reported to the client by the
 * prefill side, so on_token is not called for it; it counts as generated), draws the RNG draws
 * that sample consumed. r->prompt may be NULL: the prompt is not known here, so an adopted
 * sequence is never preempted by recompute (when only adopted sequences are stuck for blocks,
 * the newest ends with AT_FIN_KV). A first token that ends the sequence (stop id,
 * max_tokens 1) finishes it at the next step. 0, -EINVAL, -EEXIST, AFD_E_LIMIT (batch or queue
 * full), -ENOMEM; on error kv is untouched. */
int at_sched_adopt(at_sched *s, const at_request *r, afd_kv_seq *kv, int32_t first, int draws);
/* Ends a sequence as cancelled at the next step boundary (on_finish then). 0 or -ENOENT. */
int at_sched_cancel(at_sched *s, uint64_t id);
/* Runs one step. Returns the number of tokens fed (0 when idle), or a negative code from the
 * forward pass (then every sequence in that batch ends with AT_FIN_ERROR). */
int at_sched_step(at_sched *s);
bool at_sched_idle(const at_sched *s);
void at_sched_get_stats(const at_sched *s, at_sched_stats *st);

#endif
