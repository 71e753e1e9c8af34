/* attnd's pipeline against the single-process engine: the same batches (prefill chunks and
 * decode tokens of sequences joining and leaving) through attention here and a real ffnd
 * process there give the same logits bit for bit, with 1 and with 3 micro-batches. */
#include <math.h>

#include "attnd/pipeline.h"
#include "common/layers/sampling.h"
#include "tests/unit/ffnd/ffnd_proc.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
static afd_backend *be;

static void setup(void) {
    setenv("UCX_NET_DEVICES", "lo", 0);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    ft_make_model(model_dir, sizeof model_dir, "fp8", 21);
    cr_assert_eq(afd_cpu_backend_new(getenv("AFD_CPU_ISA"), 1, &be), 0);
}

static void teardown(void) {
    fp_kill_all();
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 120);

enum { MAX_SEQ = 4, MAX_TOK = 64, STEPS = 6 };

/* One side of the comparison: an engine and how it runs a batch. */
typedef struct side {
    st_set *set;
    afd_weights w;
    afd_engine e;
    afd_runstate rs; /* single process */
    at_pipe pipe;    /* AFD */
    bool afd;
    afd_kv_seq seqs[MAX_SEQ];
} side;

static void side_open(side *s, int parts) {
    afd_err err = {0};
    cr_assert_eq(afd_model_open(model_dir, parts, NULL, &s->w, &s->set, &err), 0, "%s", err.msg);
    afd_engine_opts o;
    afd_engine_opts_default(&o);
    cr_assert_eq(afd_engine_init(&s->e, be, &s->w, &o, &err), 0, "%s", err.msg);
    for (int i = 0; i < MAX_SEQ; i++)
        kv_seq_init(&s->seqs[i]);
}

static void side_close(side *s) {
    for (int i = 0; i < MAX_SEQ; i++)
        kv_seq_release(&s->e.kv, &s->seqs[i]);
    if (s->afd)
        at_pipe_free(&s->pipe);
    else
        afd_runstate_free(&s->rs, &s->e);
    afd_engine_free(&s->e);
    afd_weights_free(&s->w);
    st_set_free(s->set);
}

/* The scenario: sequences 0-2 start with prompts of 5, 9 and 3 tokens; each step every live
 * sequence adds its next greedy token; sequence 1 leaves after step 2 and sequence 3 joins at
 * step 3 with a 6-token prompt (prefill mixed with decode). All logits rows are appended to
 * `out` (row count returned). */
/* The greedy picks of the first (single-process) run, fed to the second too (teacher
 * forcing), so that a near-tie decided differently cannot make the runs diverge. */
static int32_t picks[STEPS][MAX_SEQ];

static int scenario(side *s, float *out, bool record) {
    const afd_model_config *c = &s->w.cfg;
    int V = c->vocab, rows = 0;
    int plen[MAX_SEQ] = {5, 9, 3, 6}, next[MAX_SEQ] = {0}, done[MAX_SEQ] = {0};
    int32_t tok[MAX_TOK], seq[MAX_TOK], pos[MAX_TOK];
    uint8_t want[MAX_TOK];
    afd_kv_seq *seqs[MAX_SEQ];
    for (int i = 0; i < MAX_SEQ; i++)
        seqs[i] = &s->seqs[i];
    for (int step = 0; step < STEPS; step++) {
        int n = 0;
        for (int q = 0; q < MAX_SEQ; q++) {
            bool live = (q < 3 && !(q == 1 && step > 2)) || (q == 3 && step >= 3);
            if (!live || done[q])
                continue;
            int from = seqs[q]->n_tokens, to = from ? from + 1 : plen[q];
            cr_assert_eq(kv_seq_reserve(&s->e.kv, seqs[q], to), 0);
            for (int p = from; p < to; p++, n++) {
                /* prompt tokens are fixed; later ones are the previous step's greedy pick */
                tok[n] = p < plen[q] ? (int32_t)((q * 977 + p * 131 + 7) % V) : next[q];
                seq[n] = q, pos[n] = p, want[n] = p == to - 1;
            }
            seqs[q]->n_tokens = to;
        }
        afd_fwd_batch b = {.n_tok = n, .tokens = tok, .seq = seq, .pos = pos,
                           .n_seq = MAX_SEQ, .seqs = seqs, .want_logits = want};
        float *lg = out + (size_t)rows * (size_t)V;
        int got = s->afd ? at_pipe_forward(&s->pipe, &b, lg) : afd_engine_forward(&s->e, &s->rs, &b, lg);
        cr_assert_gt(got, 0, "step %d: forward returned %d", step, got);
        /* greedy next tokens, in batch order of the wanted rows */
        int r = 0;
        for (int t = 0; t < n; t++)
            if (want[t]) {
                const float *row = lg + (size_t)r++ * (size_t)V;
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (row[v] > row[best])
                        best = v;
                if (record)
                    picks[step][seq[t]] = best;
                next[seq[t]] = picks[step][seq[t]];
            }
        rows += got;
        if (step == 2)
            done[1] = 1;
    }
    return rows;
}

/* AFD through an FFN group of ep x tp ffnd processes against the single-process engine:
 * bitwise with one shard; with several, every row's logits within a relative L2 error of
 * 2e-2 (each shard's partial is rounded to BF16 on the wire and the n-way sum is rounded in
 * fp32, where the single process rounds the whole FFN output once) and the same arg max. */
static void compare(int m, int ep, int tp) {
    int n = ep * tp;
    fproc d[2];
    for (int i = 0; i < n; i++) {
        char er[8], es[8], tr[8], ts[8];
        snprintf(er, sizeof er, "%d", i / tp), snprintf(es, sizeof es, "%d", ep);
        snprintf(tr, sizeof tr, "%d", i % tp), snprintf(ts, sizeof ts, "%d", tp);
        const char *extra[] = {"--f2a-dtype", "bf16", "--ep-rank", er, "--ep-size", es,
                               "--tp-rank", tr, "--tp-size", ts, NULL};
        fp_start(&d[i], model_dir, "5000", extra);
    }
    side one = {0}, afd = {0};
    side_open(&one, AFD_PART_ALL);
    cr_assert_eq(afd_runstate_init(&one.rs, &one.e, MAX_TOK, MAX_SEQ), 0);
    side_open(&afd, AFD_PART_ATTN);
    const afd_model_config *c = &afd.w.cfg;
    fc_opts o;
    fc_opts_default(&o);
    o.n_shards = n;
    for (int i = 0; i < n; i++) {
        snprintf(o.shards[i].host, sizeof o.shards[i].host, "127.0.0.1");
        o.shards[i].port = d[i].data_port;
        o.shards[i].ep_rank = i / tp, o.shards[i].ep_size = ep;
        o.shards[i].tp_rank = i % tp, o.shards[i].tp_size = tp;
    }
    o.slots = m;
    o.max_tok = MAX_TOK;
    o.fingerprint = afd_model_fingerprint(c, afd.set);
    o.dims = (wire_dims){.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                         .n_experts = (uint32_t)c->n_experts, .n_layers = (uint32_t)c->n_layers,
                         .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = WIRE_DT_BF16,
                         .moe_layers = c->is_moe};
    fc_group *g;
    afd_err err = {0};
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    cr_assert_eq(at_pipe_init(&afd.pipe, &afd.e, g, m, MAX_TOK, MAX_SEQ), 0);
    afd.afd = true;
    size_t V = (size_t)c->vocab, cap = (size_t)STEPS * MAX_SEQ * V;
    float *a = xcalloc(cap, sizeof(float)), *b = xcalloc(cap, sizeof(float));
    int ra = scenario(&one, a, true), rb = scenario(&afd, b, false);
    cr_assert_eq(ra, rb, "rows: single %d, AFD %d", ra, rb);
    for (size_t r = 0; r < (size_t)ra; r++) {
        const float *x = a + r * V, *y = b + r * V;
        if (n == 1) {
            for (size_t i = 0; i < V; i++)
                cr_assert_eq(memcmp(&x[i], &y[i], 4), 0,
                             "m=%d: row %zu token %zu: single %.9g, AFD %.9g", m, r, i, x[i],
                             y[i]);
            continue;
        }
        double e2 = 0, r2 = 0, dmax = 0;
        size_t ax = 0, ay = 0;
        for (size_t i = 0; i < V; i++) {
            double dd = fabs((double)x[i] - y[i]);
            e2 += dd * dd, r2 += (double)x[i] * x[i];
            dmax = dd > dmax ? dd : dmax;
            ax = x[i] > x[ax] ? i : ax, ay = y[i] > y[ay] ? i : ay;
        }
        cr_assert_lt(sqrt(e2 / r2), 2e-2, "ep %d tp %d m %d row %zu: rel L2 %.3g", ep, tp, m, r,
                     sqrt(e2 / r2));
        cr_assert_gt(e2, 0.0, "ep %d tp %d: bitwise equal, so not really sharded?", ep, tp);
        /* the greedy pick may differ only on a near tie, within the rounding seen */
        cr_assert(ax == ay || x[ax] - x[ay] <= 2 * dmax,
                  "row %zu: arg max single %zu, AFD %zu, gap %.3g > 2 x max |diff| %.3g", r, ax,
                  ay, x[ax] - x[ay], dmax);
    }
    cr_assert_gt(afd.pipe.st.steps, 0);
    free(a), free(b);
    side_close(&afd);
    side_close(&one);
    fc_close(g);
    for (int i = 0; i < n; i++)
        cr_assert_eq(fp_stop(&d[i]), 0);
}

Test(pipeline, one_micro_batch_bitwise_equals_single_process) { compare(1, 1, 1); }
Test(pipeline, three_micro_batches_bitwise_equal_single_process) { compare(3, 1, 1); }
Test(pipeline, two_ep_shards_close_to_single_process) { compare(3, 2, 1); }
Test(pipeline, two_tp_shards_close_to_single_process) { compare(3, 1, 2); }
