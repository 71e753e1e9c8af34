/* pipeline.h: one forward pass of attnd's running batch, as m micro-batches in flight.
 *
 * The batch is cut into m contiguous token ranges (micro-batches). For each layer, each
 * micro-batch in turn: wait for its previous layer's FFN answer (F2A) and add it to the
 * residual; attention on this attnd; MoE router, FP8 quantization; send the A2F to every shard
 * of the FFN group (proto/ffn_client.h) and go on with the next micro-batch. So attention of
 * micro-batch i+1 runs while micro-batch i is on the wire and in the FFN: the three-stage
 * pipeline of DESIGN §3. A micro-batch's next layer starts as soon as its F2A is in; there is
 * no barrier across micro-batches.
 *
 * Numerics: every function is the single-process engine's (common/layers/engine.h), and the
 * FFN shards compute what afd_ffn_local computes; with one FFN shard the logits equal
 * `afd-run` (not --exact) bit for bit, whatever m. Tokens of one sequence may straddle
 * micro-batches: within a layer, micro-batch i runs (and stores its K/V) before i+1.
 *
 * Ownership: borrows the engine (attention weights, KV pool) and the FFN group; owns one
 * runstate per micro-batch, sized at init. One thread. The per-step function allocates
 * nothing and does not log on success.
 */
#ifndef AFD_ATTND_PIPELINE_H
#define AFD_ATTND_PIPELINE_H

#include <stdint.h>

#include "common/layers/engine.h"
#include "proto/ffn_client.h"

#define AT_MAX_MB 8

typedef struct at_pipe_stats {
    uint64_t steps;
    uint64_t attn_ns; /* attention + router + quantization on this attnd */
    uint64_t wait_ns; /* blocked waiting for F2A (the FFN and the wire not hidden) */
    uint64_t last_step_ns;
} at_pipe_stats;

typedef struct at_pipe {
    afd_engine *e;
    fc_group *ffn;
    int m, max_tok;
    int ffn_timeout_ms;            /* an FFN answer later than this fails the step */
    afd_runstate rs[AT_MAX_MB];
    afd_fwd_batch sub[AT_MAX_MB];  /* the micro-batches of the current step */
    uint64_t step;
    at_pipe_stats st;
} at_pipe;

/* m micro-batches of at most max_tok tokens each (the FFN group's max_tok must be >= that),
 * for batches of up to max_seq sequences. 0, -EINVAL or -ENOMEM. */
int at_pipe_init(at_pipe *p, afd_engine *e, fc_group *ffn, int m, int max_tok, int max_seq);
void at_pipe_free(at_pipe *p);

/* One forward pass of b (n_tok <= m * max_tok; every sequence's KV already reserved) through
 * attention here and the FFN group there. logits: [n_want, vocab] rows for the wanted tokens,
 * in batch order (as afd_engine_forward). Returns the number of rows, or negative: AFD_E_PEER
 * when the FFN group failed (the step is lost; the caller fails or retries its sequences),
 * -ETIMEDOUT, -EINVAL. */
int at_pipe_forward(at_pipe *p, const afd_fwd_batch *b, float *logits);

#endif
