/* The KV handoff between processes: a prefill attnd P and a decode attnd D on one ffnd, driven
 * by a router-like client (RESERVE on D, PREFILL on P, tokens from PREFILL_DONE and D).
 * The tokens equal one instance doing both (greedy and seeded sampling), over RMA and over
 * KV_DATA frames; and every failure (lease expiry, release, P killed mid-prefill, D killed
 * after the reservation, cancel mid-stream and mid-prefill, bad reservations, oversize
 * prompts, a full pool) ends with a clean error and no block held (LOAD). */
#include "attnd/sched.h"
#include "tests/unit/attnd/rclient.h"
#include "tests/unit/ffnd/ffnd_proc.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
static afd_backend *be;

static void setup(void) {
    setenv("UCX_NET_DEVICES", "lo", 0);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    ft_make_model(model_dir, sizeof model_dir, "bf16", 43);
    cr_assert_eq(afd_cpu_backend_new(getenv("AFD_CPU_ISA"), 2, &be), 0);
}

static void teardown(void) {
    fp_kill_all();
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(handoff, .init = setup, .fini = teardown, .timeout = 240);

enum { NSEQ = 4, MAXOUT = 10 };
static const int plen[NSEQ] = {5, 37, 2, 19};
static uint32_t prompts[NSEQ][64];
static int32_t want[NSEQ][MAXOUT];

static ctrl_sampling sampling_of(int i, uint32_t max_tokens) {
    ctrl_sampling s = rc_greedy(max_tokens);
    if (i == 3) { /* one seeded sampled sequence */
        s.temperature = 0.8f, s.top_p = 0.9f, s.has_seed = true, s.seed = 4242;
    }
    return s;
}

/* ---- the reference: one instance prefills and decodes (the local engine) ---- */

typedef struct ref {
    afd_engine e;
    afd_runstate rs;
    int n;
    int32_t *out;
} ref;

static int ref_fwd(void *ud, const afd_fwd_batch *b, float *logits) {
    ref *r = ud;
    return afd_engine_forward(&r->e, &r->rs, b, logits);
}
static void ref_tok(void *ud, uint64_t id, void *rud, const afd_sample *s) {
    ref *r = ud;
    (void)rud, (void)id;
    if (r->n < MAXOUT)
        r->out[r->n++] = s->token;
}

static void reference(void) {
    st_set *set;
    afd_weights w;
    afd_err err = {0};
    cr_assert_eq(afd_model_open(model_dir, AFD_PART_ALL, NULL, &w, &set, &err), 0, "%s", err.msg);
    for (int i = 0; i < NSEQ; i++)
        for (int p = 0; p < plen[i]; p++)
            prompts[i][p] = (uint32_t)((700 + i * 3001 + p * 71) % w.cfg.vocab);
    for (int i = 0; i < NSEQ; i++) {
        ref r = {.out = want[i]};
        afd_engine_opts o;
        afd_engine_opts_default(&o);
        cr_assert_eq(afd_engine_init(&r.e, be, &w, &o, &err), 0, "%s", err.msg);
        cr_assert_eq(afd_runstate_init(&r.rs, &r.e, 64, 1), 0);
        at_sched *s;
        at_sched_opts so = {.max_seqs = 1, .max_tokens = 64, .prefill_chunk = 64};
        at_sched_ops ops = {.forward = ref_fwd, .on_token = ref_tok};
        cr_assert_eq(at_sched_new(&s, &r.e, &so, &ops, &r), 0);
        int32_t pr[64];
        for (int p = 0; p < plen[i]; p++)
            pr[p] = (int32_t)prompts[i][p];
        at_request q = {.id = (uint64_t)i, .prompt = pr, .n_prompt = plen[i]};
        ctrl_sampling cs = sampling_of(i, MAXOUT);
        afd_sampling_default(&q.sp);
        q.max_tokens = MAXOUT, q.ignore_eos = true;
        q.sp.temperature = cs.temperature, q.sp.top_p = cs.top_p, q.sp.seed = cs.seed;
        cr_assert_eq(at_sched_submit(s, &q), 0);
        while (!at_sched_idle(s))
            cr_assert_geq(at_sched_step(s), 0);
        cr_assert_eq(r.n, MAXOUT);
        at_sched_free(s);
        afd_runstate_free(&r.rs, &r.e);
        afd_engine_free(&r.e);
    }
    afd_weights_free(&w);
    st_set_free(set);
}

/* ---- the cluster ---- */

typedef struct cluster {
    fproc f, p, d;
    rclient c;
    int P, D; /* peer indices in c */
} cluster;

static void start_attnd(fproc *a, const char *role, int ffn_port, const char *const *more) {
    char ffn[64];
    snprintf(ffn, sizeof ffn, "127.0.0.1:%d", ffn_port);
    const char *extra[32] = {"--ffn", ffn, "--role", role, "--micro-batches", "2", "--kv-mem",
                             "8mb", "--prefill-chunk", "16"};
    int n = 10;
    for (int i = 0; more && more[i]; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    fp_start_bin(a, "attnd", model_dir, "3000", extra);
}

static void start(cluster *k, const char *const *p_extra, const char *const *d_extra) {
    fp_start(&k->f, model_dir, "3000", NULL);
    start_attnd(&k->p, "prefill", k->f.data_port, p_extra);
    start_attnd(&k->d, "decode", k->f.data_port, d_extra);
    rc_init(&k->c, model_dir);
    k->P = rc_connect(&k->c, k->p.data_port);
    k->D = rc_connect(&k->c, k->d.data_port);
    cr_assert_eq(k->c.peers[k->P].reg.role, CTRL_ROLE_PREFILL);
    cr_assert_eq(k->c.peers[k->D].reg.role, CTRL_ROLE_DECODE);
}

static void reserve(cluster *k, uint64_t seq, uint32_t prompt_len, ctrl_sampling s,
                    uint32_t lease_ms) {
    ctrl_msg m = {.type = WIRE_T_CTRL_RESERVE};
    m.u.reserve = (ctrl_reserve){.seq_id = seq, .prompt_len = prompt_len, .lease_ms = lease_ms,
                                 .s = s};
    snprintf(m.u.reserve.req_id, sizeof m.u.reserve.req_id, "ho-%llu", (unsigned long long)seq);
    rc_send(&k->c, k->D, &m, 100 + seq);
}

static bool has_resv(rclient *c, void *arg) { return c->seq[(uintptr_t)arg].resv >= 0; }
static bool has_done(rclient *c, void *arg) { return c->seq[(uintptr_t)arg].done >= 0; }
static bool has_finish(rclient *c, void *arg) { return c->seq[(uintptr_t)arg].finish != 0; }

/* PREFILL of prompt i on P into seq's reservation (as the router forwards it). */
static void prefill(cluster *k, uint64_t seq, const uint32_t *prompt, uint32_t n,
                    ctrl_sampling s) {
    rc_seq *q = &k->c.seq[seq];
    rc_peer *d = &k->c.peers[k->D];
    ctrl_msg m = {.type = WIRE_T_CTRL_PREFILL};
    ctrl_prefill *pf = &m.u.prefill;
    pf->sub = (ctrl_submit){.seq_id = seq, .n_prompt = n, .prompt = prompt, .s = s};
    snprintf(pf->sub.req_id, sizeof pf->sub.req_id, "ho-%llu", (unsigned long long)seq);
    pf->r = (ctrl_resv){.instance_id = d->reg.instance_id, .epoch = q->epoch,
                        .lease_ms = q->lease_ms, .block_size = q->block_size,
                        .block_bytes = q->block_bytes, .remote_base = q->remote_base,
                        .n_blocks = q->n_blocks, .block_ids = q->block_ids,
                        .rkey_len = q->rkey_len, .rkey = q->rkey_len ? q->rkey : NULL};
    snprintf(pf->host, sizeof pf->host, "%s", d->reg.host);
    pf->port = d->reg.port;
    rc_send(&k->c, k->P, &m, 200 + seq);
}

static void handoff(cluster *k, uint64_t seq, int i, uint32_t max_tokens) {
    reserve(k, seq, (uint32_t)plen[i], sampling_of(i, max_tokens), 0);
    rc_until(&k->c, has_resv, (void *)(uintptr_t)seq, 10000, "RESERVE answer");
    cr_assert_eq(k->c.seq[seq].resv, 0, "reservation refused: %s", k->c.seq[seq].resv_msg);
    prefill(k, seq, prompts[i], (uint32_t)plen[i], sampling_of(i, max_tokens));
}

static void check_tokens(cluster *k, uint64_t seq, int i) {
    rc_seq *q = &k->c.seq[seq];
    cr_assert_eq(q->done, CTRL_OK, "PREFILL_DONE %d: %s", q->done, q->done_msg);
    cr_assert_eq(q->finish, CTRL_FINISH_LENGTH, "seq %llu finish %d: %s", (unsigned long long)seq,
                 q->finish, q->msg);
    cr_assert_eq(q->completion_tokens, MAXOUT);
    cr_assert_eq((int)q->first, want[i][0], "seq %d first token: P %u, one instance %d", i,
                 q->first, want[i][0]);
    cr_assert_eq(q->got, MAXOUT - 1, "seq %d: %d tokens from D", i, q->got);
    for (int t = 1; t < MAXOUT; t++)
        cr_assert_eq(q->toks[t - 1], want[i][t], "seq %d token %d: handoff %d, one instance %d",
                     i, t, q->toks[t - 1], want[i][t]);
}

typedef struct kv_idle {
    int peer;
    uint64_t after; /* a LOAD counted after this many */
} kv_idle;

/* Every block of the instance is free again (its LOAD after the events so far). */
static bool all_free(rclient *c, void *arg) {
    kv_idle *w = arg;
    rc_peer *p = &c->peers[w->peer];
    return (uint64_t)p->n_load > w->after && p->load.kv_blocks_free == p->load.kv_blocks_total &&
           p->load.kv_blocks_reserved == 0 && p->load.reservations == 0 && p->load.running == 0;
}

static void expect_all_free(cluster *k, int peer, const char *what) {
    kv_idle w = {peer, (uint64_t)k->c.peers[peer].n_load};
    rc_until(&k->c, all_free, &w, 10000, what);
}

static void stop(cluster *k) {
    xp_free(k->c.xp);
    cr_assert_eq(fp_stop(&k->d), 0, "D exit status");
    cr_assert_eq(fp_stop(&k->p), 0, "P exit status");
    cr_assert_eq(fp_stop(&k->f), 0, "ffnd exit status");
}

static void run_all_handoffs(cluster *k) {
    for (int i = 0; i < NSEQ; i++)
        handoff(k, (uint64_t)i, i, MAXOUT);
    for (int i = 0; i < NSEQ; i++)
        rc_until(&k->c, has_finish, (void *)(uintptr_t)i, 60000, "the sequence's end");
    for (int i = 0; i < NSEQ; i++)
        check_tokens(k, (uint64_t)i, i);
    expect_all_free(k, k->D, "D's blocks back");
    expect_all_free(k, k->P, "P's blocks back");
}

Test(handoff, rma_equals_one_instance) {
    reference();
    cluster k;
    start(&k, NULL, NULL);
    run_all_handoffs(&k);
    stop(&k);
}

Test(handoff, kv_data_frames_equal_one_instance) {
    reference();
    cluster k;
    const char *am[] = {"--handoff", "am", NULL};
    start(&k, am, NULL);
    run_all_handoffs(&k);
    stop(&k);
}

/* A reservation nobody completes expires with an error to the router; RELEASE ends one at
 * once; refusals say why (oversize, full pool, wrong role, bad reservation). */
Test(handoff, leases_releases_and_refusals) {
    reference();
    cluster k;
    const char *d_extra[] = {"--lease-ms", "400", "--lease-grace-ms", "100", NULL};
    start(&k, NULL, d_extra);
    reserve(&k, 1, 20, rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)1, 10000, "RESERVE answer");
    cr_assert_eq(k.c.seq[1].resv, 0, "%s", k.c.seq[1].resv_msg);
    cr_assert_eq(k.c.seq[1].lease_ms, 400);
    rc_until(&k.c, has_finish, (void *)1, 10000, "the lease's end");
    cr_assert_eq(k.c.seq[1].finish, CTRL_FINISH_ERROR);
    cr_assert(strstr(k.c.seq[1].msg, "lease"), "message: %s", k.c.seq[1].msg);
    expect_all_free(&k, k.D, "blocks back after the lease and grace");
    /* RELEASE */
    reserve(&k, 2, 20, rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)2, 10000, "RESERVE answer");
    ctrl_msg rel = {.type = WIRE_T_CTRL_RELEASE};
    rel.u.release = (ctrl_release){.seq_id = 2, .epoch = k.c.seq[2].epoch};
    rc_send(&k.c, k.D, &rel, 7);
    expect_all_free(&k, k.D, "blocks back after RELEASE");
    /* oversize: over the model's context */
    reserve(&k, 3, (uint32_t)k.c.cfg.max_pos + 5, rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)3, 10000, "RESERVE answer");
    cr_assert_eq(k.c.seq[3].resv, CTRL_R_TOO_LONG, "%d: %s", k.c.seq[3].resv,
                 k.c.seq[3].resv_msg);
    /* full pool: more blocks than D has (but within the context) */
    uint32_t pool_tokens = k.c.peers[k.D].reg.kv_blocks * k.c.peers[k.D].reg.block_size;
    if (pool_tokens + 8 < (uint32_t)k.c.cfg.max_pos) {
        reserve(&k, 4, pool_tokens + 8, rc_greedy(4), 0);
        rc_until(&k.c, has_resv, (void *)4, 10000, "RESERVE answer");
        cr_assert_neq(k.c.seq[4].resv, 0, "an impossible reservation was granted");
    }
    /* the wrong role: RESERVE on P, SUBMIT on D */
    ctrl_msg m = {.type = WIRE_T_CTRL_RESERVE};
    m.u.reserve = (ctrl_reserve){.seq_id = 5, .prompt_len = 4, .s = rc_greedy(4)};
    rc_send(&k.c, k.P, &m, 8);
    rc_until(&k.c, has_resv, (void *)5, 10000, "RESERVE answer from P");
    cr_assert_eq(k.c.seq[5].resv, CTRL_R_ROLE);
    /* a reservation whose layout is not P's */
    handoff(&k, 6, 0, 4);
    k.c.seq[6].done = -1;
    rc_until(&k.c, has_done, (void *)6, 20000, "PREFILL_DONE");
    cr_assert_eq(k.c.seq[6].done, CTRL_OK, "%s", k.c.seq[6].done_msg);
    k.c.seq[7] = k.c.seq[6];
    k.c.seq[7].block_size += 1;
    k.c.seq[7].done = -1;
    prefill(&k, 7, prompts[0], (uint32_t)plen[0], rc_greedy(4));
    rc_until(&k.c, has_done, (void *)7, 10000, "PREFILL_DONE");
    cr_assert_eq(k.c.seq[7].done, CTRL_R_BAD_PARAMS, "%d: %s", k.c.seq[7].done,
                 k.c.seq[7].done_msg);
    rc_until(&k.c, has_finish, (void *)6, 20000, "seq 6's end");
    expect_all_free(&k, k.D, "D idle");
    expect_all_free(&k, k.P, "P idle");
    stop(&k);
}

/* Cancel mid-stream on D, and mid-prefill on P (the router then releases on D). */
Test(handoff, cancel_mid_stream_and_mid_prefill) {
    reference();
    cluster k;
    start(&k, NULL, NULL);
    handoff(&k, 1, 1, 200);
    while (k.c.seq[1].got < 3)
        xp_wait(k.c.xp, 5);
    ctrl_msg cm = {.type = WIRE_T_CTRL_CANCEL};
    cm.u.cancel.seq_id = 1;
    rc_send(&k.c, k.D, &cm, 9);
    rc_until(&k.c, has_finish, (void *)1, 10000, "the cancel's answer");
    cr_assert_eq(k.c.seq[1].finish, CTRL_FINISH_CANCELLED);
    cr_assert_lt(k.c.seq[1].got, 199);
    expect_all_free(&k, k.D, "D's blocks after cancel");
    /* mid-prefill: a long prompt in chunks of 16 */
    static uint32_t longp[400];
    uint32_t n = (uint32_t)k.c.cfg.max_pos / 2 < 400 ? (uint32_t)k.c.cfg.max_pos / 2 : 400;
    for (uint32_t i = 0; i < n; i++)
        longp[i] = (i * 13 + 5) % (uint32_t)k.c.cfg.vocab;
    reserve(&k, 2, n, rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)2, 10000, "RESERVE answer");
    prefill(&k, 2, longp, n, rc_greedy(4));
    cm.u.cancel.seq_id = 2;
    rc_send(&k.c, k.P, &cm, 10);
    rc_until(&k.c, has_done, (void *)2, 10000, "PREFILL_DONE after cancel");
    if (k.c.seq[2].done == CTRL_OK) { /* the prefill beat the cancel: cancel on D then */
        rc_send(&k.c, k.D, &cm, 11);
    } else {
        cr_assert_eq(k.c.seq[2].done, CTRL_R_CANCELLED, "%d: %s", k.c.seq[2].done,
                     k.c.seq[2].done_msg);
        ctrl_msg rel = {.type = WIRE_T_CTRL_RELEASE};
        rel.u.release = (ctrl_release){.seq_id = 2, .epoch = k.c.seq[2].epoch,
                                       .reason = CTRL_R_CANCELLED};
        rc_send(&k.c, k.D, &rel, 12);
    }
    expect_all_free(&k, k.D, "D's blocks after the cancelled prefill");
    expect_all_free(&k, k.P, "P's blocks after the cancelled prefill");
    /* both keep serving */
    handoff(&k, 3, 0, MAXOUT);
    rc_until(&k.c, has_finish, (void *)3, 30000, "seq 3's end");
    check_tokens(&k, 3, 0);
    stop(&k);
}

static void kill_proc(fproc *p) {
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    for (int i = 0; i < fp_n_started; i++)
        if (fp_started[i] == p->pid)
            fp_started[i] = 0;
}

static bool peer_down(rclient *c, void *arg) { return c->peers[(uintptr_t)arg].down; }

/* P dies mid-prefill: the router releases on D (and the lease would anyway); D serves a new
 * P. D dies after its reservation: P answers PREFILL_DONE with an error and frees its blocks. */
Test(handoff, a_peer_killed_mid_handoff) {
    reference();
    cluster k;
    start(&k, NULL, NULL);
    static uint32_t longp[400];
    uint32_t n = (uint32_t)k.c.cfg.max_pos / 2 < 400 ? (uint32_t)k.c.cfg.max_pos / 2 : 400;
    for (uint32_t i = 0; i < n; i++)
        longp[i] = (i * 7 + 11) % (uint32_t)k.c.cfg.vocab;
    reserve(&k, 1, n, rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)1, 10000, "RESERVE answer");
    prefill(&k, 1, longp, n, rc_greedy(4));
    kill_proc(&k.p);
    rc_until(&k.c, peer_down, (void *)(uintptr_t)k.P, 10000, "P's end seen");
    ctrl_msg rel = {.type = WIRE_T_CTRL_RELEASE};
    rel.u.release = (ctrl_release){.seq_id = 1, .epoch = k.c.seq[1].epoch,
                                   .reason = CTRL_R_PEER};
    rc_send(&k.c, k.D, &rel, 13);
    expect_all_free(&k, k.D, "D's blocks after P died");
    /* a new P; D keeps serving */
    start_attnd(&k.p, "prefill", k.f.data_port, NULL);
    k.P = rc_connect(&k.c, k.p.data_port);
    handoff(&k, 2, 1, MAXOUT);
    rc_until(&k.c, has_finish, (void *)2, 30000, "seq 2's end");
    check_tokens(&k, 2, 1);
    /* D dies after reserving */
    reserve(&k, 3, (uint32_t)plen[0], rc_greedy(4), 0);
    rc_until(&k.c, has_resv, (void *)3, 10000, "RESERVE answer");
    kill_proc(&k.d);
    prefill(&k, 3, prompts[0], (uint32_t)plen[0], rc_greedy(4));
    rc_until(&k.c, has_done, (void *)3, 20000, "PREFILL_DONE with D gone");
    /* P learns of D's death from its link (PREFILL_DONE peer), unless its cached link still
     * looked up and the one-sided write "succeeded" before the death was seen: then the
     * router has D's death itself (the session drops) and fails the sequence there */
    if (k.c.seq[3].done == CTRL_OK)
        rc_until(&k.c, peer_down, (void *)(uintptr_t)k.D, 10000, "D's end seen by the router");
    else
        cr_assert_eq(k.c.seq[3].done, CTRL_R_PEER, "%d: %s", k.c.seq[3].done,
                     k.c.seq[3].done_msg);
    expect_all_free(&k, k.P, "P's blocks after D died");
    xp_free(k.c.xp);
    cr_assert_eq(fp_stop(&k.p), 0, "P exit status");
    cr_assert_eq(fp_stop(&k.f), 0, "ffnd exit status");
}
