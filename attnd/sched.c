#include "attnd/sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"

#define MAX_WAITING 4096

struct at_seq {
    at_request r;
    int32_t *ctx;    /* prompt, then generated tokens: [n_prompt + max_tokens] */
    int n_ctx;       /* tokens known (prompt + generated) */
    int fed;         /* positions whose K/V are stored */
    int n_out;
    int finish;      /* AT_FIN_* once decided; acted on at the next step boundary */
    afd_rng rng;
    afd_kv_seq kv;
    bool adopted;    /* prefilled elsewhere: prompt unknown, never recomputed */
    int batch_n;     /* tokens of this sequence in the current batch */
    bool want;       /* its last token in the batch wants logits */
};

struct at_sched {
    afd_engine *e;
    at_sched_opts o;
    at_sched_ops ops;
    void *ud;
    at_seq **run;   /* [max_seqs] */
    int n_run;
    at_seq **wait;  /* ring [MAX_WAITING] */
    int w_head, n_wait;
    /* per-step scratch */
    int32_t *tok, *tseq, *pos;
    uint8_t *want;
    afd_kv_seq **kvs;
    at_seq **in_batch;
    float *logits;
    void *sample_scratch;
    at_sched_stats st;
};

/* ---- life of a sequence -------------------------------------------------------------------- */

static void seq_free(at_sched *s, at_seq *q) {
    kv_seq_release(&s->e->kv, &q->kv);
    free(q->kv.blocks);
    free(q->ctx);
    free(q);
}

static void seq_end(at_sched *s, at_seq *q) {
    if (q->r.keep_kv && s->ops.on_kv)
        s->ops.on_kv(s->ud, q->r.id, q->r.ud, &q->kv);
    if (s->ops.on_finish)
        s->ops.on_finish(s->ud, q->r.id, q->r.ud, q->finish, q->n_out);
    seq_free(s, q);
}

static at_seq *find(at_sched *s, uint64_t id) {
    for (int i = 0; i < s->n_run; i++)
        if (s->run[i]->r.id == id)
            return s->run[i];
    for (int i = 0; i < s->n_wait; i++) {
        at_seq *q = s->wait[(s->w_head + i) % MAX_WAITING];
        if (q->r.id == id)
            return q;
    }
    return NULL;
}

/* ---- set-up -------------------------------------------------------------------------------- */

int at_sched_new(at_sched **out, afd_engine *e, const at_sched_opts *o, const at_sched_ops *ops,
                 void *ud) {
    *out = NULL;
    if (o->max_seqs < 1 || o->max_tokens < 1 || o->prefill_chunk < 1 || !ops->forward)
        return -EINVAL;
    at_sched *s = xcalloc(1, sizeof *s);
    s->e = e, s->o = *o, s->ops = *ops, s->ud = ud;
    size_t T = (size_t)o->max_tokens, S = (size_t)o->max_seqs, V = (size_t)e->cfg->vocab;
    s->run = afd_try_alloc(S * sizeof *s->run);
    s->wait = afd_try_alloc(MAX_WAITING * sizeof *s->wait);
    s->tok = afd_try_alloc(T * 4), s->tseq = afd_try_alloc(T * 4), s->pos = afd_try_alloc(T * 4);
    s->want = afd_try_alloc(T);
    s->kvs = afd_try_alloc(S * sizeof *s->kvs);
    s->in_batch = afd_try_alloc(S * sizeof *s->in_batch);
    s->logits = afd_try_alloc(S * V * sizeof(float));
    s->sample_scratch = afd_try_alloc(afd_sample_scratch_size((int)V));
    if (!s->run || !s->wait || !s->tok || !s->tseq || !s->pos || !s->want || !s->kvs ||
        !s->in_batch || !s->logits || !s->sample_scratch) {
        at_sched_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void at_sched_free(at_sched *s) {
    if (!s)
        return;
    for (int i = 0; s->run && i < s->n_run; i++) {
        s->run[i]->finish = AT_FIN_CANCELLED;
        seq_end(s, s->run[i]);
    }
    for (int i = 0; s->wait && i < s->n_wait; i++) {
        at_seq *q = s->wait[(s->w_head + i) % MAX_WAITING];
        q->finish = AT_FIN_CANCELLED;
        seq_end(s, q);
    }
    free(s->run), free(s->wait), free(s->tok), free(s->tseq), free(s->pos), free(s->want);
    free(s->kvs), free(s->in_batch), free(s->logits), free(s->sample_scratch);
    free(s);
}

/* ---- submit / cancel ----------------------------------------------------------------------- */

static int check_request(const at_sched *s, const at_request *r) {
    const afd_model_config *c = s->e->cfg;
    if (r->n_prompt < 1 || r->max_tokens < 1 || r->n_stop < 0 || r->n_stop > AT_MAX_STOP)
        return -EINVAL;
    for (int i = 0; r->prompt && i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= c->vocab)
            return -EINVAL;
    const afd_sampling *sp = &r->sp;
    if (!(sp->temperature >= 0 && sp->temperature <= 100) || !(sp->top_p > 0 && sp->top_p <= 1) ||
        sp->top_k < 0 || sp->n_logprobs < -1 || sp->n_logprobs > AFD_MAX_LOGPROBS)
        return -EINVAL;
    int64_t need = (int64_t)r->n_prompt + r->max_tokens;
    int64_t pool = (int64_t)s->e->kv.n_blocks * s->e->kv.layout.block_size;
    if (r->n_prompt >= c->max_pos || (int64_t)r->n_prompt + 1 > pool)
        return AFD_E_LIMIT;
    (void)need; /* generation stops at the context limit (finish "length") when it gets there */
    return s->n_wait >= MAX_WAITING ? AFD_E_LIMIT : 0;
}

int at_sched_check(const at_sched *s, const at_request *r) { return check_request(s, r); }

int at_sched_submit(at_sched *s, const at_request *r) {
    if (!r->prompt)
        return -EINVAL;
    int rc = check_request(s, r);
    if (rc)
        return rc;
    if (find(s, r->id))
        return -EEXIST;
    at_seq *q = afd_try_alloc(sizeof *q);
    int32_t *ctx = afd_try_alloc(((size_t)r->n_prompt + (size_t)r->max_tokens) * sizeof *ctx);
    if (!q || !ctx) {
        free(q), free(ctx);
        return -ENOMEM;
    }
    memset(q, 0, sizeof *q);
    q->r = *r;
    q->r.prompt = NULL;
    q->ctx = ctx;
    memcpy(ctx, r->prompt, (size_t)r->n_prompt * sizeof *ctx);
    q->n_ctx = r->n_prompt;
    afd_rng_seed(&q->rng, r->sp.seed);
    kv_seq_init(&q->kv);
    s->wait[(s->w_head + s->n_wait++) % MAX_WAITING] = q;
    return 0;
}

static bool is_stop(const at_sched *s, const at_seq *q, int32_t tok);

int at_sched_adopt(at_sched *s, const at_request *r, afd_kv_seq *kv, int32_t first, int draws) {
    int rc = check_request(s, r);
    if (rc)
        return rc;
    if (first < 0 || first >= s->e->cfg->vocab || kv->n_tokens != r->n_prompt || draws < 0 ||
        kv->n_blocks < kv_blocks_for(&s->e->kv, r->n_prompt))
        return -EINVAL;
    if (find(s, r->id))
        return -EEXIST;
    if (s->n_run >= s->o.max_seqs && s->n_wait >= MAX_WAITING)
        return AFD_E_LIMIT;
    at_seq *q = afd_try_alloc(sizeof *q);
    int32_t *ctx = afd_try_alloc(((size_t)r->n_prompt + (size_t)r->max_tokens) * sizeof *ctx);
    if (!q || !ctx) {
        free(q), free(ctx);
        return -ENOMEM;
    }
    memset(q, 0, sizeof *q);
    memset(ctx, 0, (size_t)r->n_prompt * sizeof *ctx);
    q->r = *r;
    q->r.prompt = NULL;
    q->ctx = ctx;
    q->n_ctx = r->n_prompt;
    q->ctx[q->n_ctx++] = first;
    q->fed = r->n_prompt;
    q->n_out = 1;
    q->adopted = true;
    afd_rng_seed(&q->rng, r->sp.seed);
    for (int i = 0; i < draws; i++)
        afd_rng_next(&q->rng);
    q->kv = *kv;
    kv_seq_init(kv);
    if (is_stop(s, q, first))
        q->finish = AT_FIN_STOP;
    else if (q->n_out >= q->r.max_tokens || q->n_ctx >= s->e->cfg->max_pos)
        q->finish = AT_FIN_LENGTH;
    if (s->n_run < s->o.max_seqs)
        s->run[s->n_run++] = q;
    else
        s->wait[(s->w_head + s->n_wait++) % MAX_WAITING] = q;
    s->st.adopted++;
    return 0;
}

int at_sched_cancel(at_sched *s, uint64_t id) {
    at_seq *q = find(s, id);
    if (!q)
        return -ENOENT;
    if (q->finish == AT_FIN_NONE)
        q->finish = AT_FIN_CANCELLED;
    return 0;
}

/* ---- one step ------------------------------------------------------------------------------ */

/* Ends every sequence whose finish is decided (running or waiting), freeing its blocks. */
static void reap(at_sched *s) {
    int k = 0;
    for (int i = 0; i < s->n_run; i++) {
        if (s->run[i]->finish != AT_FIN_NONE)
            seq_end(s, s->run[i]);
        else
            s->run[k++] = s->run[i];
    }
    s->n_run = k;
    int n = s->n_wait;
    for (int i = 0; i < n; i++) {
        at_seq *q = s->wait[s->w_head];
        s->w_head = (s->w_head + 1) % MAX_WAITING;
        s->n_wait--;
        if (q->finish != AT_FIN_NONE)
            seq_end(s, q);
        else
            s->wait[(s->w_head + s->n_wait++) % MAX_WAITING] = q;
    }
}

/* Moves waiting sequences to the running set while there is room and the pool can hold their
 * whole (remaining) context, in FIFO order. */
static void admit(at_sched *s) {
    while (s->n_wait > 0 && s->n_run < s->o.max_seqs) {
        at_seq *q = s->wait[s->w_head];
        if (kv_seq_reserve(&s->e->kv, &q->kv, q->n_ctx) != 0) {
            s->st.waited++;
            return; /* head of line waits for blocks: FIFO, no starvation */
        }
        s->w_head = (s->w_head + 1) % MAX_WAITING;
        s->n_wait--;
        s->run[s->n_run++] = q;
    }
}

/* When every running sequence is stuck for a block, the newest that can be recomputed gives
 * its blocks back and returns to the head of the queue; it will recompute its context when
 * readmitted. Adopted sequences cannot be recomputed (their prompt is not here): when only
 * they are left, the newest ends with an error and its blocks free at the next step. */
static void preempt(at_sched *s) {
    int i = s->n_run - 1;
    while (i >= 0 && s->run[i]->adopted)
        i--;
    if (i < 0) {
        at_seq *v = s->run[s->n_run - 1];
        v->finish = AT_FIN_KV;
        s->st.kv_evicted++;
        reap(s);
        return;
    }
    at_seq *q = s->run[i];
    memmove(s->run + i, s->run + i + 1, (size_t)(s->n_run - i - 1) * sizeof *s->run);
    s->n_run--;
    s->st.preempted++;
    kv_seq_release(&s->e->kv, &q->kv);
    q->fed = 0;
    s->w_head = (s->w_head + MAX_WAITING - 1) % MAX_WAITING;
    s->wait[s->w_head] = q;
    s->n_wait++;
}

/* Adds up to `budget` tokens of q to the batch (its next context tokens). */
static int feed(at_sched *s, at_seq *q, int n, int budget) {
    int take = q->n_ctx - q->fed;
    if (take > budget)
        take = budget;
    if (q->fed < q->r.n_prompt && take > s->o.prefill_chunk)
        take = s->o.prefill_chunk;
    if (take <= 0 || kv_seq_reserve(&s->e->kv, &q->kv, q->fed + take) != 0)
        return 0;
    int k = s->st.last_batch; /* index of q among this batch's sequences */
    for (int i = 0; i < take; i++) {
        s->tok[n + i] = q->ctx[q->fed + i];
        s->tseq[n + i] = k;
        s->pos[n + i] = q->fed + i;
        s->want[n + i] = 0;
    }
    q->want = q->fed + take == q->n_ctx;
    s->want[n + take - 1] = q->want;
    q->batch_n = take;
    q->kv.n_tokens = q->fed + take;
    s->kvs[k] = &q->kv;
    s->in_batch[k] = q;
    s->st.last_batch = k + 1;
    return take;
}

/* Decode tokens first (one each), then prefill chunks, within the token budget. */
static int compose(at_sched *s) {
    int n = 0;
    s->st.last_batch = 0;
    s->st.stalled = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->n_run && n < s->o.max_tokens; i++) {
            at_seq *q = s->run[i];
            bool decoding = q->fed >= q->r.n_prompt;
            if (decoding != (pass == 0))
                continue;
            int got = feed(s, q, n, s->o.max_tokens - n);
            if (got == 0 && q->n_ctx > q->fed)
                s->st.stalled++;
            n += got;
        }
    return n;
}

static bool is_stop(const at_sched *s, const at_seq *q, int32_t tok) {
    if (!q->r.ignore_eos && tok == s->e->cfg->eos_id)
        return true;
    for (int i = 0; i < q->r.n_stop; i++)
        if (q->r.stop_ids[i] == tok)
            return true;
    return false;
}

/* After the forward pass: sample for every sequence whose last token wanted logits. */
static void sample_all(at_sched *s) {
    int V = s->e->cfg->vocab, row = 0;
    for (int k = 0; k < s->st.last_batch; k++) {
        at_seq *q = s->in_batch[k];
        q->fed += q->batch_n;
        if (!q->want)
            continue;
        afd_sample smp;
        afd_sample_token(s->logits + (size_t)row++ * (size_t)V, V, &q->r.sp, &q->rng,
                         s->sample_scratch, &smp);
        q->ctx[q->n_ctx++] = smp.token;
        q->n_out++;
        s->st.tokens_out++;
        if (s->ops.on_token)
            s->ops.on_token(s->ud, q->r.id, q->r.ud, &smp);
        if (is_stop(s, q, smp.token))
            q->finish = AT_FIN_STOP;
        else if (q->n_out >= q->r.max_tokens || q->n_ctx >= s->e->cfg->max_pos)
            q->finish = AT_FIN_LENGTH;
    }
}

int at_sched_step(at_sched *s) {
    reap(s);
    admit(s);
    int n = compose(s);
    if (n == 0 && s->n_run > 0 && s->st.stalled == s->n_run) {
        preempt(s);
        n = compose(s);
    }
    if (n == 0)
        return 0;
    afd_fwd_batch b = {.n_tok = n, .tokens = s->tok, .seq = s->tseq, .pos = s->pos,
                       .n_seq = s->st.last_batch, .seqs = s->kvs, .want_logits = s->want};
    int rc = s->ops.forward(s->ud, &b, s->logits);
    if (rc < 0) {
        for (int k = 0; k < s->st.last_batch; k++) {
            s->in_batch[k]->finish = AT_FIN_ERROR;
            s->in_batch[k]->kv.n_tokens = s->in_batch[k]->fed;
        }
        return rc;
    }
    sample_all(s);
    s->st.steps++;
    s->st.tokens_in += (uint64_t)n;
    return n;
}

bool at_sched_idle(const at_sched *s) { return s->n_run == 0 && s->n_wait == 0; }

void at_sched_get_stats(const at_sched *s, at_sched_stats *st) {
    *st = s->st;
    st->running = s->n_run;
    st->waiting = s->n_wait;
    st->ctx_tokens = 0;
    for (int i = 0; i < s->n_run; i++)
        st->ctx_tokens += (uint64_t)s->run[i]->n_ctx;
}
