#include "attnd/pipeline.h"

#include <errno.h>
#include <string.h>

#include "common/base/clock.h"

int at_pipe_init(at_pipe *p, afd_engine *e, fc_group *ffn, int m, int max_tok, int max_seq) {
    memset(p, 0, sizeof *p);
    if (m < 1 || m > AT_MAX_MB || max_tok < 1 || max_seq < 1 || e->opts.exact)
        return -EINVAL; /* the wire is FP8: an exact (fp32) pass cannot be disaggregated */
    p->e = e, p->ffn = ffn, p->m = m, p->max_tok = max_tok;
    p->ffn_timeout_ms = 30000;
    for (int i = 0; i < m; i++) {
        int rc = afd_runstate_init(&p->rs[i], e, max_tok, max_seq);
        if (rc) {
            at_pipe_free(p);
            return rc;
        }
    }
    return 0;
}

void at_pipe_free(at_pipe *p) {
    for (int i = 0; i < p->m; i++)
        if (p->rs[i].max_tok)
            afd_runstate_free(&p->rs[i], p->e);
    memset(p, 0, sizeof *p);
}

/* Cuts b into up to m contiguous token ranges; returns how many are non-empty. */
static int split(at_pipe *p, const afd_fwd_batch *b) {
    int n = 0;
    for (int i = 0; i < p->m; i++) {
        int t0 = (int)((int64_t)b->n_tok * i / p->m), t1 = (int)((int64_t)b->n_tok * (i + 1) / p->m);
        if (t1 == t0)
            continue;
        afd_fwd_batch *s = &p->sub[n++];
        *s = *b;
        s->n_tok = t1 - t0;
        s->tokens = b->tokens + t0;
        s->seq = b->seq + t0;
        s->pos = b->pos + t0;
        s->want_logits = b->want_logits ? b->want_logits + t0 : NULL;
    }
    return n;
}

/* The A2F payload of micro-batch i for the layer just prepared: the engine's FP8 rows and
 * scales, and for MoE layers its routing, copied into the slot's registered buffer. */
static int send_a2f(at_pipe *p, int i, int layer) {
    const afd_runstate *rs = &p->rs[i];
    const afd_model_config *c = p->e->cfg;
    bool moe = c->is_moe[layer];
    wire_a2f a;
    int rc = fc_a2f_buffer(p->ffn, i, (uint32_t)rs->n_tok, moe, &a);
    if (rc)
        return rc;
    size_t T = (size_t)rs->n_tok;
    memcpy(a.q, rs->fq, T * (size_t)c->hidden);
    memcpy(a.scales, rs->fscale, T * a.groups * sizeof(float));
    if (moe) {
        size_t n = T * (size_t)c->top_k;
        for (size_t j = 0; j < n; j++)
            a.ids[j] = (uint16_t)rs->ids[j];
        memcpy(a.weights, rs->wts, n * sizeof(float));
    }
    return fc_send(p->ffn, i, p->step, (uint16_t)i, (uint16_t)layer);
}

/* Waits for micro-batch i's F2A and adds it to the residual. */
static int finish_ffn(at_pipe *p, int i) {
    uint64_t t0 = afd_now_ns();
    int rc = fc_ready(p->ffn, i);
    if (rc == 0)
        rc = fc_wait(p->ffn, i, p->ffn_timeout_ms);
    p->st.wait_ns += afd_now_ns() - t0;
    if (rc == 0)
        return -ETIMEDOUT;
    if (rc < 0 || (rc = fc_take(p->ffn, i, p->rs[i].ffo)))
        return rc < 0 ? rc : AFD_E_PEER;
    afd_ffn_finish(p->e, &p->rs[i]);
    return 0;
}

/* Attention of micro-batch i for `layer`, then its A2F. */
static int attend(at_pipe *p, int i, int layer) {
    uint64_t t0 = afd_now_ns();
    int rc = afd_attn_layer(p->e, &p->rs[i], layer);
    if (!rc)
        rc = afd_ffn_prepare(p->e, &p->rs[i], layer);
    p->st.attn_ns += afd_now_ns() - t0;
    return rc ? rc : send_a2f(p, i, layer);
}

int at_pipe_forward(at_pipe *p, const afd_fwd_batch *b, float *logits) {
    if (b->n_tok < 1 || b->n_tok > p->m * p->max_tok)
        return -EINVAL;
    uint64_t t0 = afd_now_ns();
    int n = split(p, b), rc = 0, L = p->e->cfg->n_layers;
    for (int i = 0; i < n && !rc; i++)
        rc = afd_step_begin(p->e, &p->rs[i], &p->sub[i]);
    /* 1. layer by layer, micro-batch after micro-batch: i's F2A of layer l-1 is awaited only
     *    when i comes round again, so the others' attention hides it */
    for (int l = 0; l < L && !rc; l++)
        for (int i = 0; i < n && !rc; i++) {
            if (l > 0)
                rc = finish_ffn(p, i);
            if (!rc)
                rc = attend(p, i, l);
        }
    /* 2. the last layer's FFN, then logits in batch order */
    int rows = 0, V = p->e->cfg->vocab;
    for (int i = 0; i < n && !rc; i++) {
        rc = finish_ffn(p, i);
        if (!rc && p->rs[i].n_want > 0 && logits) {
            rc = afd_step_logits(p->e, &p->rs[i], logits + (size_t)rows * (size_t)V);
            rows += p->rs[i].n_want;
        }
    }
    /* a failed step leaves slots in flight: drain them so the next step starts clean */
    for (int i = 0; i < n && rc; i++)
        if (fc_ready(p->ffn, i) >= 0)
            fc_take(p->ffn, i, p->rs[i].ffo);
    p->step++;
    p->st.steps++;
    p->st.last_step_ns = afd_now_ns() - t0;
    return rc ? rc : rows;
}
