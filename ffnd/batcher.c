#include "ffnd/batcher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/numfmt.h"

int fb_init(ffn_batcher *b, afd_backend *be, const afd_weights *w, int cap_tok, int max_req,
            int fp8_group) {
    memset(b, 0, sizeof *b);
    const afd_model_config *c = &w->cfg;
    int group = fp8_group ? fp8_group : c->hidden;
    if (cap_tok < 1 || max_req < 1 || group < 1 || c->hidden % group)
        return -EINVAL;
    size_t H = (size_t)c->hidden, k = (size_t)(c->top_k > 0 ? c->top_k : 1);
    b->be = be, b->w = w;
    b->cap_tok = cap_tok, b->max_req = max_req, b->fp8_group = group;
    b->layer = -1;
    b->reqs = afd_try_alloc((size_t)max_req * sizeof *b->reqs);
    b->f = afd_be_alloc(be, (size_t)cap_tok * H * sizeof(float));
    b->out = afd_be_alloc(be, (size_t)cap_tok * H * sizeof(float));
    b->ids = afd_try_alloc((size_t)cap_tok * k * sizeof(int32_t));
    b->wts = afd_try_alloc((size_t)cap_tok * k * sizeof(float));
    if (!b->reqs || !b->f || !b->out || !b->ids || !b->wts ||
        afd_ffn_scratch_init(&b->scratch, be, c, cap_tok)) {
        fb_free(b);
        return -ENOMEM;
    }
    return 0;
}

void fb_free(ffn_batcher *b) {
    if (!b || !b->be)
        return;
    afd_ffn_scratch_free(&b->scratch);
    afd_be_release(b->be, b->f);
    afd_be_release(b->be, b->out);
    free(b->reqs);
    free(b->ids);
    free(b->wts);
    memset(b, 0, sizeof *b);
}

bool fb_fits(const ffn_batcher *b, int layer, int n_tok) {
    if (n_tok < 1 || n_tok > b->cap_tok)
        return false;
    if (b->n_req == 0)
        return true;
    return layer == b->layer && b->n_req < b->max_req && b->n_tok + n_tok <= b->cap_tok;
}

int fb_add(ffn_batcher *b, const wire_hdr *h, const wire_a2f *a, void *owner) {
    int T = (int)a->n_tok, H = b->w->cfg.hidden, k = b->w->cfg.top_k;
    if (!fb_fits(b, h->layer, T) || (int)a->hidden != H)
        return -EINVAL;
    if (b->n_req == 0) {
        b->layer = h->layer;
        b->opened_ns = afd_now_ns();
    }
    int row0 = b->n_tok;
    /* 1. the FP8 rows, dequantized exactly as the single-process engine does */
    if (!b->wire_only)
        afd_be_dequantize_fp8(b->be, b->f + (size_t)row0 * (size_t)H, a->q, a->scales, T, H,
                          b->fp8_group);
    /* 2. routing: ids widen to int32, weights as sent */
    if (a->moe) {
        size_t n = (size_t)T * (size_t)k, off = (size_t)row0 * (size_t)k;
        for (size_t i = 0; i < n; i++)
            b->ids[off + i] = a->ids[i];
        memcpy(b->wts + off, a->weights, n * sizeof(float));
    }
    fb_req *r = &b->reqs[b->n_req];
    r->owner = owner, r->hdr = *h, r->row0 = row0, r->arrived_ns = afd_now_ns();
    b->n_tok += T;
    return b->n_req++;
}

void fb_forget(ffn_batcher *b, const void *owner) {
    for (int i = 0; i < b->n_req; i++)
        if (b->reqs[i].owner == owner)
            b->reqs[i].owner = NULL;
}

int fb_run(ffn_batcher *b) {
    if (b->n_req == 0 || b->wire_only)
        return 0;
    const afd_layer_weights *lw = &b->w->layers[b->layer];
    return afd_ffn_forward(&b->scratch, &b->w->cfg, lw, &b->w->shard, true, b->out, b->f,
                           b->n_tok, b->ids, b->wts);
}

int fb_encode(ffn_batcher *b, int i, const wire_dims *d, uint8_t dtype, uint8_t *payload) {
    const fb_req *r = &b->reqs[i];
    int T = (int)r->hdr.n_tok, H = b->w->cfg.hidden;
    wire_f2a v;
    int rc = wire_f2a_layout(d, (uint32_t)T, dtype, payload, &v);
    if (rc || b->wire_only)
        return rc;
    const float *y = b->out + (size_t)r->row0 * (size_t)H;
    size_t n = (size_t)T * (size_t)H;
    if (dtype == WIRE_DT_BF16) {
        afd_f32_to_bf16_n(v.bf16, y, n);
    } else if (dtype == WIRE_DT_E4M3) {
        afd_be_quantize_fp8(b->be, v.q, v.scales, y, T, H, (int)(H / (int)v.groups));
    } else {
        memcpy(v.f32, y, n * sizeof(float));
    }
    return 0;
}

void fb_reset(ffn_batcher *b) {
    b->n_req = b->n_tok = 0;
    b->layer = -1;
}
