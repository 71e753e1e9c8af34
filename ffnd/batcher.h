/* batcher.h: ffnd's per-layer coalescing of A2F micro-batches into one FFN computation.
 *
 * Micro-batches for the same layer arrive from any number of attnd peers. The batcher keeps one
 * open batch, for one layer: a request is added by dequantizing its FP8 rows straight into the
 * batch's fp32 input (the only pass over the received bytes; no staging copy), with its expert
 * ids and weights. fb_run computes this shard's FFN partial for every row at once; fb_encode
 * then writes one request's rows in the F2A wire dtype. Because every kernel is batch-
 * invariant (DESIGN §9), a row's result does not depend on which other rows shared its batch:
 * ffnd answers bit-identically to the single-process engine whatever the coalescing.
 *
 * The caller (server.c) decides when to run (window, all peers in, capacity, another layer
 * arriving); the batcher only holds rows. Requests carry an opaque owner (the peer) that the
 * caller may clear (fb_forget) when the peer goes away; its rows are still computed, their
 * answer dropped.
 *
 * Ownership: borrows the backend and weights; owns its buffers (sized once for cap_tok tokens
 * and max_req requests). Not thread-safe; the hot-path functions neither allocate nor log.
 */
#ifndef AFD_FFND_BATCHER_H
#define AFD_FFND_BATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/backend/backend.h"
#include "common/layers/ffn.h"
#include "common/model/weights.h"
#include "proto/wire.h"

typedef struct fb_req {
    void *owner;         /* the requesting peer; NULL once it is gone */
    wire_hdr hdr;        /* the A2F header (step, mb, layer, sender, n_tok) */
    int row0;            /* first row in the batch */
    int64_t arrived_ns;  /* afd_now_ns() at fb_add */
} fb_req;

typedef struct ffn_batcher {
    afd_backend *be;
    const afd_weights *w;
    int cap_tok, max_req;
    int fp8_group;       /* elements per A2F scale (hidden for one per token) */
    bool wire_only;      /* no dequantize, no FFN, no encode: answers carry no numbers
                            (afd-bench link times the wire and the daemons alone) */
    int layer;           /* the open batch's layer, -1 when empty */
    int n_tok, n_req;
    int64_t opened_ns;   /* afd_now_ns() of the first request */
    fb_req *reqs;        /* [max_req] */
    float *f;            /* [cap_tok, hidden] dequantized FFN inputs */
    int32_t *ids;        /* [cap_tok, top_k] */
    float *wts;          /* [cap_tok, top_k] */
    float *out;          /* [cap_tok, hidden] this shard's partial sums (after fb_run) */
    afd_ffn_scratch scratch;
} ffn_batcher;

/* 0, -EINVAL (cap_tok/max_req < 1, fp8_group not dividing hidden) or -ENOMEM. */
int fb_init(ffn_batcher *b, afd_backend *be, const afd_weights *w, int cap_tok, int max_req,
            int fp8_group);
void fb_free(ffn_batcher *b);

/* Whether a request of n_tok tokens for `layer` can join the open batch (or open one). */
bool fb_fits(const ffn_batcher *b, int layer, int n_tok);
/* Adds a validated A2F view (wire_a2f_view against the handshake dims) for h->layer. The
 * caller has checked fb_fits. Returns the request index, or -EINVAL if it does not fit. */
int fb_add(ffn_batcher *b, const wire_hdr *h, const wire_a2f *a, void *owner);
/* Clears the owner of every open request of `owner` (its answers will be dropped). */
void fb_forget(ffn_batcher *b, const void *owner);
/* Computes out for the open batch (this shard's FFN partial). 0 or a kernel's error. */
int fb_run(ffn_batcher *b);
/* Writes request i's rows of out as an F2A payload of wire dtype `dtype` into `payload` (a
 * WIRE_ALIGN buffer of wire_f2a_size_dt bytes under dims d). 0 or a WIRE_E_* code. */
int fb_encode(ffn_batcher *b, int i, const wire_dims *d, uint8_t dtype, uint8_t *payload);
/* Empties the batch (after the answers are encoded). */
void fb_reset(ffn_batcher *b);

#endif
