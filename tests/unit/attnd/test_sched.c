/* attnd's continuous batching on the local engine: a sequence's tokens do not depend on what
 * shares its steps (batched, alone, under KV pressure with preemption); stop ids, max_tokens,
 * cancellation and refusals behave; every KV block comes back. */
#include <errno.h>

#include "attnd/sched.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
static afd_backend *be;

static void setup(void) {
    ft_make_model(model_dir, sizeof model_dir, "bf16", 31);
    cr_assert_eq(afd_cpu_backend_new(getenv("AFD_CPU_ISA"), 2, &be), 0);
}

static void teardown(void) {
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(sched, .init = setup, .fini = teardown, .timeout = 120);

enum { NSEQ = 3, MAXOUT = 12, MAXTOK = 64 };

typedef struct world {
    st_set *set;
    afd_weights w;
    afd_engine e;
    afd_runstate rs;
    at_sched *s;
    int32_t out[NSEQ + 1][MAXOUT];
    int n_out[NSEQ + 1], fin[NSEQ + 1], finished;
} world;

static int fwd(void *ud, const afd_fwd_batch *b, float *logits) {
    world *w = ud;
    return afd_engine_forward(&w->e, &w->rs, b, logits);
}

static void on_token(void *ud, uint64_t id, void *rud, const afd_sample *smp) {
    world *w = ud;
    (void)rud;
    cr_assert_lt(w->n_out[id], MAXOUT, "seq %llu: more tokens than max_tokens",
                 (unsigned long long)id);
    w->out[id][w->n_out[id]++] = smp->token;
}

static afd_kv_seq handed[NSEQ + 1];

/* keep_kv: take the blocks (the prefill side of a handoff) */
static void on_kv(void *ud, uint64_t id, void *rud, afd_kv_seq *kv) {
    (void)ud, (void)rud;
    handed[id] = *kv;
    kv_seq_init(kv);
}

static int adopted_first[NSEQ + 1]; /* adopted sequences: tokens not reported (the first) */

static void on_finish(void *ud, uint64_t id, void *rud, int reason, int n) {
    world *w = ud;
    (void)rud;
    cr_assert_eq(n, w->n_out[id] + adopted_first[id]);
    w->fin[id] = reason;
    w->finished++;
}

static void open_world(world *w, int kv_blocks, int max_seqs) {
    memset(w, 0, sizeof *w);
    afd_err err = {0};
    cr_assert_eq(afd_model_open(model_dir, AFD_PART_ALL, NULL, &w->w, &w->set, &err), 0, "%s",
                 err.msg);
    afd_engine_opts o;
    afd_engine_opts_default(&o);
    o.kv_blocks = kv_blocks;
    cr_assert_eq(afd_engine_init(&w->e, be, &w->w, &o, &err), 0, "%s", err.msg);
    cr_assert_eq(afd_runstate_init(&w->rs, &w->e, MAXTOK, NSEQ + 1), 0);
    at_sched_opts so = {.max_seqs = max_seqs, .max_tokens = MAXTOK, .prefill_chunk = 16};
    at_sched_ops ops = {.forward = fwd, .on_token = on_token, .on_finish = on_finish,
                        .on_kv = on_kv};
    cr_assert_eq(at_sched_new(&w->s, &w->e, &so, &ops, w), 0);
}

static void close_world(world *w) {
    at_sched_free(w->s);
    cr_assert_eq(w->e.kv.n_free, w->e.kv.n_blocks, "KV blocks leaked: %d of %d free",
                 w->e.kv.n_free, w->e.kv.n_blocks);
    afd_runstate_free(&w->rs, &w->e);
    afd_engine_free(&w->e);
    afd_weights_free(&w->w);
    st_set_free(w->set);
}

static int32_t prompt[NSEQ][40];
static const int plen[NSEQ] = {7, 33, 3};

static at_request req(int i, bool sampled) {
    for (int p = 0; p < plen[i]; p++)
        prompt[i][p] = (int32_t)(100 + i * 1000 + p * 37);
    at_request r = {.id = (uint64_t)i, .prompt = prompt[i], .n_prompt = plen[i],
                    .max_tokens = 10, .ignore_eos = true};
    afd_sampling_default(&r.sp);
    if (sampled) {
        r.sp.temperature = 0.9f, r.sp.top_p = 0.95f, r.sp.seed = 1000 + (uint64_t)i;
    }
    return r;
}

static void run_all(world *w) {
    for (int guard = 0; !at_sched_idle(w->s); guard++) {
        cr_assert_lt(guard, 1000, "the scheduler never went idle");
        cr_assert_geq(at_sched_step(w->s), 0);
    }
}

static void batched_equals_alone(bool sampled, int kv_blocks) {
    world all, one;
    open_world(&all, kv_blocks, NSEQ);
    for (int i = 0; i < NSEQ; i++) {
        at_request r = req(i, sampled);
        cr_assert_eq(at_sched_submit(all.s, &r), 0);
    }
    run_all(&all);
    cr_assert_eq(all.finished, NSEQ);
    at_sched_stats st;
    at_sched_get_stats(all.s, &st);
    if (kv_blocks)
        cr_assert_gt(st.preempted + st.waited, 0, "no KV pressure with %d blocks", kv_blocks);
    for (int i = 0; i < NSEQ; i++) {
        open_world(&one, 0, 1);
        at_request r = req(i, sampled);
        cr_assert_eq(at_sched_submit(one.s, &r), 0);
        run_all(&one);
        cr_assert_eq(one.n_out[i], 10);
        cr_assert_eq(all.n_out[i], 10, "seq %d: %d tokens batched", i, all.n_out[i]);
        cr_assert_eq(all.fin[i], AT_FIN_LENGTH);
        for (int t = 0; t < 10; t++)
            cr_assert_eq(all.out[i][t], one.out[i][t], "seq %d token %d: batched %d alone %d", i,
                         t, all.out[i][t], one.out[i][t]);
        close_world(&one);
    }
    close_world(&all);
}

Test(sched, greedy_batched_equals_alone) { batched_equals_alone(false, 0); }
Test(sched, sampled_batched_equals_alone) { batched_equals_alone(true, 0); }
/* 4 blocks of 16 positions: the three sequences (17, 43 and 13 positions at the end) cannot
 * all run at once; they wait or are preempted and recomputed, with the same tokens. */
Test(sched, kv_pressure_gives_the_same_tokens) { batched_equals_alone(false, 4); }

Test(sched, stop_ids_cancel_and_refusals) {
    world w;
    open_world(&w, 0, NSEQ);
    /* a stop id: the 3rd greedy token of sequence 0 (learnt from a first run) */
    at_request r = req(0, false);
    cr_assert_eq(at_sched_submit(w.s, &r), 0);
    cr_assert_eq(at_sched_submit(w.s, &r), -EEXIST);
    run_all(&w);
    int32_t third = w.out[0][2];
    int first_hit = 0;
    while (w.out[0][first_hit] != third)
        first_hit++;
    memset(w.n_out, 0, sizeof w.n_out);
    r.stop_ids[0] = third, r.n_stop = 1;
    cr_assert_eq(at_sched_submit(w.s, &r), 0);
    /* and a sequence cancelled after two steps */
    at_request c = req(1, false);
    c.id = 3;
    cr_assert_eq(at_sched_submit(w.s, &c), 0);
    at_sched_step(w.s);
    at_sched_step(w.s);
    cr_assert_eq(at_sched_cancel(w.s, 3), 0);
    cr_assert_eq(at_sched_cancel(w.s, 99), -ENOENT);
    run_all(&w);
    cr_assert_eq(w.fin[0], AT_FIN_STOP);
    cr_assert_eq(w.n_out[0], first_hit + 1, "stopped after %d tokens", w.n_out[0]);
    cr_assert_eq(w.fin[3], AT_FIN_CANCELLED);
    /* refusals */
    at_request bad = req(2, false);
    bad.id = 7;
    bad.n_prompt = 0;
    cr_assert_eq(at_sched_submit(w.s, &bad), -EINVAL);
    bad = req(2, false);
    bad.id = 7;
    prompt[2][1] = w.w.cfg.vocab;
    cr_assert_eq(at_sched_submit(w.s, &bad), -EINVAL, "token id = vocab accepted");
    bad = req(2, false);
    bad.id = 7;
    bad.sp.top_p = 0;
    cr_assert_eq(at_sched_submit(w.s, &bad), -EINVAL);
    close_world(&w);
    /* a prompt longer than the whole KV pool is refused, not queued forever */
    open_world(&w, 1, NSEQ);
    at_request big = req(1, false); /* 33 tokens > 16 positions */
    cr_assert_eq(at_sched_submit(w.s, &big), AFD_E_LIMIT);
    close_world(&w);
}

/* The handoff in one process: prefill on P (max_tokens 1, keep_kv), K/V blocks copied into
 * blocks of D's pool (what RMA does between daemons), D adopts with the first token: the
 * tokens equal one instance doing both, greedy and sampled (D skips P's RNG draw). */
static void handoff_equals_local(bool sampled) {
    world one, P, D;
    open_world(&one, 64, NSEQ);
    open_world(&P, 64, NSEQ);
    open_world(&D, 64, NSEQ);
    for (int i = 0; i < NSEQ; i++) {
        at_request r = req(i, sampled);
        cr_assert_eq(at_sched_submit(one.s, &r), 0);
        at_request rp = r;
        rp.max_tokens = 1, rp.keep_kv = true;
        cr_assert_eq(at_sched_submit(P.s, &rp), 0);
    }
    run_all(&one);
    memset(handed, 0, sizeof handed);
    run_all(&P);
    size_t bb = P.e.kv.layout.block_bytes;
    cr_assert_eq(bb, D.e.kv.layout.block_bytes);
    for (int i = 0; i < NSEQ; i++) {
        cr_assert_eq(P.n_out[i], 1);
        cr_assert_eq(handed[i].n_tokens, plen[i], "seq %d: %d positions handed", i,
                     handed[i].n_tokens);
        afd_kv_seq dk;
        kv_seq_init(&dk);
        cr_assert_eq(kv_seq_reserve(&D.e.kv, &dk, plen[i]), 0);
        for (int b = 0; b < handed[i].n_blocks; b++)
            memcpy((uint8_t *)D.e.kv.base + (size_t)dk.blocks[b] * bb,
                   (const uint8_t *)P.e.kv.base + (size_t)handed[i].blocks[b] * bb, bb);
        dk.n_tokens = plen[i];
        kv_seq_release(&P.e.kv, &handed[i]);
        free(handed[i].blocks);
        at_request r = req(i, sampled);
        r.prompt = NULL;
        adopted_first[i] = 1;
        cr_assert_eq(at_sched_adopt(D.s, &r, &dk, P.out[i][0], sampled ? 1 : 0), 0);
        cr_assert_eq(dk.n_blocks, 0, "the table was not taken over");
    }
    run_all(&D);
    for (int i = 0; i < NSEQ; i++) {
        cr_assert_eq(one.out[i][0], P.out[i][0], "seq %d first token", i);
        cr_assert_eq(D.n_out[i] + 1, one.n_out[i]);
        for (int t = 0; t < D.n_out[i]; t++)
            cr_assert_eq(D.out[i][t], one.out[i][t + 1], "seq %d token %d: %d vs %d", i, t + 1,
                         D.out[i][t], one.out[i][t + 1]);
        cr_assert_eq(D.fin[i], one.fin[i]);
    }
    memset(adopted_first, 0, sizeof adopted_first);
    close_world(&one);
    close_world(&P);
    close_world(&D);
}

Test(sched, handoff_greedy_equals_local) { handoff_equals_local(false); }
Test(sched, handoff_sampled_equals_local) { handoff_equals_local(true); }

/* An adopted sequence whose first token already ends it finishes without a step's tokens;
 * a malformed adoption is refused and leaves the table with the caller. */
Test(sched, adopt_first_token_ends_and_bad_adoptions) {
    world D;
    open_world(&D, 16, NSEQ);
    afd_kv_seq kv;
    kv_seq_init(&kv);
    cr_assert_eq(kv_seq_reserve(&D.e.kv, &kv, 5), 0);
    kv.n_tokens = 5;
    at_request r = req(0, false);
    r.prompt = NULL, r.n_prompt = 5, r.max_tokens = 1;
    at_request bad = r;
    bad.n_prompt = 6; /* more positions than the table holds */
    cr_assert_eq(at_sched_adopt(D.s, &bad, &kv, 7, 0), -EINVAL);
    cr_assert_eq(at_sched_adopt(D.s, &r, &kv, -1, 0), -EINVAL);
    cr_assert_eq(at_sched_adopt(D.s, &r, &kv, D.w.cfg.vocab, 0), -EINVAL);
    cr_assert_gt(kv.n_blocks, 0);
    adopted_first[0] = 1;
    cr_assert_eq(at_sched_adopt(D.s, &r, &kv, 7, 0), 0);
    run_all(&D);
    cr_assert_eq(D.n_out[0], 0);
    cr_assert_eq(D.fin[0], AT_FIN_LENGTH);
    adopted_first[0] = 0;
    close_world(&D);
}
