/* ffn.h: the FFN half of a layer, as both the single-process engine and ffnd run it.
 *
 *   dense layer:  out = down(silu(gate f) * up f)
 *   MoE layer:    out = shared(f) + sum_j w[t][j] * expert_{ids[t][j]}(f)      j = 0..top_k-1
 *
 * Only what the weights hold is computed: routed experts of the shard's range (others are
 * skipped), the shard's slice of every intermediate dimension (so `out` is a partial sum that
 * the attention side adds across shards), and the shared expert / dense FFN only when
 * `with_shared` is set. Summation order is fixed and independent of the batch: the shared (or
 * dense) term first, then the routed terms in top-k rank order j. Each expert runs once on the
 * rows routed to it (gathered), so a row's result does not depend on the other rows.
 *
 * The scratch (afd_ffn_scratch) is sized once for the largest batch; afd_ffn_forward does not
 * allocate or log. Not thread-safe per scratch.
 */
#ifndef AFD_FFN_H
#define AFD_FFN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/backend/backend.h"
#include "common/model/weights.h"

typedef struct afd_ffn_scratch {
    int cap_tok, top_k, hidden;
    float *xg;     /* [cap_tok*top_k, hidden] gathered inputs */
    float *h1, *h2; /* [cap_tok*top_k*max_inter] */
    float *y;      /* [cap_tok*top_k, hidden] one expert's outputs */
    float *yk;     /* [cap_tok*top_k, hidden] routed outputs by (token, rank) */
    int32_t *rows; /* [cap_tok*top_k] (token, rank) slots routed to the current expert */
    uint8_t *hit;  /* [cap_tok*top_k] slot computed by this shard */
    afd_backend *be;
} afd_ffn_scratch;

/* Sizes the scratch for up to cap_tok tokens of this model. 0 or -ENOMEM. */
int afd_ffn_scratch_init(afd_ffn_scratch *s, afd_backend *be, const afd_model_config *cfg,
                         int cap_tok);
void afd_ffn_scratch_free(afd_ffn_scratch *s);

/* out[T, hidden] = this shard's FFN partial for inputs f[T, hidden]. For MoE layers ids/w are
 * the router's top-k [T, top_k]; ignored for dense layers. T <= cap_tok. Returns 0, or
 * AFD_E_UNSUPPORTED from a kernel. */
int afd_ffn_forward(afd_ffn_scratch *s, const afd_model_config *cfg, const afd_layer_weights *lw,
                    const afd_shard *shard, bool with_shared, float *out, const float *f, int T,
                    const int32_t *ids, const float *w);

#endif
