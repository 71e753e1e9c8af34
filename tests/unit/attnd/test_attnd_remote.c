/* attnd as a process with a real ffnd, driven over the control plane like a router: greedy
 * tokens of several concurrent sequences equal the single-process engine's; cancel ends a
 * sequence; LOAD arrives; a refused submit says why; SIGTERM drains and exits 0. */
#include "attnd/sched.h"
#include "proto/ctrl.h"
#include "proto/xport.h"
#include "tests/unit/ffnd/ffnd_proc.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
static afd_backend *be;

static void setup(void) {
    setenv("UCX_NET_DEVICES", "lo", 0);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    ft_make_model(model_dir, sizeof model_dir, "bf16", 41);
    cr_assert_eq(afd_cpu_backend_new(getenv("AFD_CPU_ISA"), 2, &be), 0);
}

static void teardown(void) {
    fp_kill_all();
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(attnd, .init = setup, .fini = teardown, .timeout = 180);

/* ---- the reference: the local engine through the same scheduler ---- */

enum { NSEQ = 3, MAXOUT = 8 };
static const int plen[NSEQ] = {5, 20, 2};
static uint32_t prompts[NSEQ][32];
static int32_t want[NSEQ][MAXOUT];

static void make_prompts(int vocab) {
    for (int i = 0; i < NSEQ; i++)
        for (int p = 0; p < plen[i]; p++)
            prompts[i][p] = (uint32_t)((300 + i * 4001 + p * 53) % vocab);
}

typedef struct ref {
    afd_engine e;
    afd_runstate rs;
    int q, n;
} ref;

static int ref_fwd(void *ud, const afd_fwd_batch *b, float *logits) {
    ref *r = ud;
    return afd_engine_forward(&r->e, &r->rs, b, logits);
}
static void ref_tok(void *ud, uint64_t id, void *rud, const afd_sample *s) {
    ref *r = ud;
    (void)rud;
    want[id][r->n++ % MAXOUT] = s->token;
}

static void reference(void) {
    st_set *set;
    afd_weights w;
    afd_err err = {0};
    cr_assert_eq(afd_model_open(model_dir, AFD_PART_ALL, NULL, &w, &set, &err), 0, "%s", err.msg);
    make_prompts(w.cfg.vocab);
    for (int i = 0; i < NSEQ; i++) {
        ref r = {0};
        afd_engine_opts o;
        afd_engine_opts_default(&o);
        cr_assert_eq(afd_engine_init(&r.e, be, &w, &o, &err), 0, "%s", err.msg);
        cr_assert_eq(afd_runstate_init(&r.rs, &r.e, 64, 1), 0);
        at_sched *s;
        at_sched_opts so = {.max_seqs = 1, .max_tokens = 64, .prefill_chunk = 64};
        at_sched_ops ops = {.forward = ref_fwd, .on_token = ref_tok};
        cr_assert_eq(at_sched_new(&s, &r.e, &so, &ops, &r), 0);
        int32_t pr[32];
        for (int p = 0; p < plen[i]; p++)
            pr[p] = (int32_t)prompts[i][p];
        at_request q = {.id = (uint64_t)i, .prompt = pr, .n_prompt = plen[i],
                        .max_tokens = MAXOUT, .ignore_eos = true};
        afd_sampling_default(&q.sp);
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

/* ---- a router-like client ---- */

typedef struct client {
    xp_ctx *xp;
    xp_peer *p;
    bool acked, registered, down;
    int n_load;
    int got[NSEQ + 8], finish[NSEQ + 8];
    int32_t toks[NSEQ + 8][64];
    int n_ack;
    uint32_t ack_reason[16];
    char ack_msg[16][CTRL_MSG_MAX + 1];
} client;

static int c_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    client *c = ud;
    (void)p;
    if (h->type == WIRE_T_HELLO_ACK) {
        wire_hello a;
        cr_assert_eq(wire_hello_decode(pl, len, &a), 0);
        cr_assert_eq(a.status, 0, "attnd refused the client: %s", a.reason);
        c->acked = true;
        return 0;
    }
    ctrl_msg m;
    int rc = ctrl_decode(h, pl, len, NULL, &m);
    cr_assert_eq(rc, 0, "bad %s from attnd: %s", ctrl_type_name(h->type), wire_strerror(rc));
    if (m.type == WIRE_T_CTRL_REGISTER)
        c->registered = true;
    else if (m.type == WIRE_T_CTRL_LOAD)
        c->n_load++;
    else if (m.type == WIRE_T_CTRL_SUBMIT_ACK && c->n_ack < 16) {
        c->ack_reason[c->n_ack] = m.u.submit_ack.reason;
        snprintf(c->ack_msg[c->n_ack++], CTRL_MSG_MAX + 1, "%s", m.u.submit_ack.msg);
    } else if (m.type == WIRE_T_CTRL_TOKENS) {
        uint64_t s = m.u.tokens.seq_id;
        cr_assert_lt(s, (uint64_t)(NSEQ + 8));
        for (uint32_t i = 0; i < m.u.tokens.n_tok && c->got[s] < 64; i++)
            c->toks[s][c->got[s]++] = (int32_t)m.u.tokens.ids[i];
        if (m.u.tokens.finish)
            c->finish[s] = m.u.tokens.finish;
    }
    return 0;
}
static void c_down(void *ud, xp_peer *p, int reason, const char *why) {
    ((client *)ud)->down = true;
    (void)p, (void)reason, (void)why;
}

static void c_open(client *c, int port) {
    memset(c, 0, sizeof *c);
    xp_opts xo;
    xp_opts_default(&xo);
    if (getenv("AFD_TEST_PEER_TIMEOUT_MS")) /* slow runs (valgrind) */
        xo.peer_timeout_ms = atoi(getenv("AFD_TEST_PEER_TIMEOUT_MS"));
    xp_handlers h = {.on_frame = c_frame, .on_down = c_down};
    afd_err err = {0};
    cr_assert_eq(xp_init(&c->xp, &xo, &h, c, &err), 0, "%s", err.msg);
    cr_assert_eq(xp_connect(c->xp, "127.0.0.1", port, &c->p, &err), 0, "%s", err.msg);
    /* the attnd's REGISTER follows its HELLO_ACK at once and may be checked by the transport
     * before the ACK is handled: accept the session's types from the start */
    wire_limits wl;
    ctrl_wire_limits(NULL, CTRL_TYPES_TO_ROUTER, &wl);
    wl.types |= WIRE_TYPES_HANDSHAKE;
    xp_peer_set_limits(c->p, &wl);
    st_set *set;
    afd_weights w;
    cr_assert_eq(afd_model_open(model_dir, AFD_PART_ATTN, NULL, &w, &set, &err), 0);
    wire_hello hello = {.proto_min = 1, .proto_max = 1, .role = WIRE_ROLE_ROUTER,
                        .instance_id = 9, .model_fingerprint = afd_model_fingerprint(&w.cfg, set),
                        .ep_size = 1, .tp_size = 1, .n_layers = (uint32_t)w.cfg.n_layers,
                        .n_experts = (uint32_t)w.cfg.n_experts, .hidden = (uint32_t)w.cfg.hidden,
                        .top_k = (uint16_t)w.cfg.top_k, .a2f_dtype = WIRE_DT_E4M3,
                        .f2a_dtype = WIRE_DT_BF16, .max_tok = 1};
    snprintf(hello.name, sizeof hello.name, "test-router");
    afd_weights_free(&w);
    st_set_free(set);
    static uint8_t buf[WIRE_HELLO_MAX];
    size_t n;
    cr_assert_eq(wire_hello_encode(buf, sizeof buf, &hello, &n), 0);
    wire_hdr hh = {.type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE};
    cr_assert_eq(xp_send(c->p, &hh, buf, n, NULL, NULL), 0);
    for (int i = 0; i < 1000 && !(c->acked && c->registered); i++)
        xp_wait(c->xp, 10);
    cr_assert(c->acked && c->registered, "no HELLO_ACK / REGISTER from attnd");
}

static void c_submit(client *c, uint64_t seq, int i, uint32_t max_tokens) {
    static uint8_t bufs[16][4096];
    static int nb;
    uint8_t *buf = bufs[nb++ % 16];
    ctrl_submit m = {.seq_id = seq, .n_prompt = (uint32_t)plen[i], .prompt = prompts[i]};
    snprintf(m.req_id, sizeof m.req_id, "test-%llu", (unsigned long long)seq);
    m.s = (ctrl_sampling){.temperature = 0, .top_p = 1, .top_k = -1, .max_tokens = max_tokens,
                          .ignore_eos = true};
    size_t len;
    cr_assert_eq(ctrl_submit_encode(buf, 4096, &m, &len), 0);
    wire_hdr h = ctrl_hdr(WIRE_T_CTRL_SUBMIT, 9, seq);
    cr_assert_eq(xp_send(c->p, &h, buf, len, NULL, NULL), 0);
}

static void start_cluster(fproc *f, fproc *a, const char *kv_mem) {
    fp_start(f, model_dir, "3000", NULL);
    char ffn[64];
    snprintf(ffn, sizeof ffn, "127.0.0.1:%d", f->data_port);
    const char *extra[] = {"--ffn", ffn, "--micro-batches", "2", "--kv-mem", kv_mem, NULL};
    fp_start_bin(a, "attnd", model_dir, "3000", extra);
}

Test(attnd, concurrent_greedy_sequences_equal_single_process) {
    reference();
    fproc f, a;
    start_cluster(&f, &a, "64mb");
    client c;
    c_open(&c, a.data_port);
    for (int i = 0; i < NSEQ; i++)
        c_submit(&c, (uint64_t)i, i, MAXOUT);
    int64_t deadline = (int64_t)afd_now_ns() + 60000000000ll;
    for (;;) {
        bool all = true;
        for (int i = 0; i < NSEQ; i++)
            all &= c.finish[i] != 0;
        if (all)
            break;
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "sequences did not finish in 60 s");
        xp_wait(c.xp, 10);
    }
    cr_assert_eq(c.n_ack, NSEQ);
    for (int i = 0; i < NSEQ; i++) {
        cr_assert_eq(c.ack_reason[i], CTRL_OK, "refused: %s", c.ack_msg[i]);
        cr_assert_eq(c.finish[i], CTRL_FINISH_LENGTH, "seq %d finish %d", i, c.finish[i]);
        cr_assert_eq(c.got[i], MAXOUT, "seq %d: %d tokens", i, c.got[i]);
        for (int t = 0; t < MAXOUT; t++)
            cr_assert_eq(c.toks[i][t], want[i][t], "seq %d token %d: attnd %d, single %d", i, t,
                         c.toks[i][t], want[i][t]);
    }
    cr_assert_gt(c.n_load, 0, "no LOAD reports");
    /* cancel: a long sequence ends as cancelled */
    c_submit(&c, 5, 0, 200);
    while (c.got[5] < 2)
        xp_wait(c.xp, 10);
    static uint8_t cb[64];
    size_t len;
    ctrl_cancel cm = {.seq_id = 5};
    cr_assert_eq(ctrl_cancel_encode(cb, sizeof cb, &cm, &len), 0);
    wire_hdr ch = ctrl_hdr(WIRE_T_CTRL_CANCEL, 9, 77);
    cr_assert_eq(xp_send(c.p, &ch, cb, len, NULL, NULL), 0);
    deadline = (int64_t)afd_now_ns() + 30000000000ll;
    while (!c.finish[5]) {
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "cancel not answered");
        xp_wait(c.xp, 10);
    }
    cr_assert_eq(c.finish[5], CTRL_FINISH_CANCELLED);
    cr_assert_lt(c.got[5], 200);
    /* a prompt token outside the vocabulary is refused with a reason */
    uint32_t saved = prompts[2][0];
    prompts[2][0] = 0x7fffffff;
    int acks = c.n_ack;
    c_submit(&c, 6, 2, 4);
    while (c.n_ack == acks && !c.down)
        xp_wait(c.xp, 10);
    prompts[2][0] = saved;
    cr_assert_not(c.down, "a bad parameter dropped the router");
    cr_assert_eq(c.ack_reason[acks], CTRL_R_BAD_PARAMS, "reason %u: %s", c.ack_reason[acks],
                 c.ack_msg[acks]);
    xp_free(c.xp);
    cr_assert_eq(fp_stop(&a), 0, "attnd exit status after SIGTERM");
    cr_assert_eq(fp_stop(&f), 0, "ffnd exit status after SIGTERM");
}

#include <netinet/in.h>
#include <sys/socket.h>

/* A TCP port free right now (UCX's listener takes it a moment later). */
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &n);
    close(s);
    return ntohs(a.sin_port);
}

/* The FFN group dies mid-sequence: that sequence ends with an error, new work is refused
 * with a reason while it is down, and once an ffnd is back at the address the attnd
 * reconnects by itself and serves correct tokens again. */
Test(attnd, ffn_group_failure_and_reconnect) {
    reference();
    char port[16];
    snprintf(port, sizeof port, "%d", free_port());
    const char *fx[] = {"--listen-port", port, NULL};
    fproc f, a;
    fp_start(&f, model_dir, "3000", fx);
    char ffn[64];
    snprintf(ffn, sizeof ffn, "127.0.0.1:%s", port);
    const char *extra[] = {"--ffn", ffn, "--micro-batches", "2", "--kv-mem", "64mb", NULL};
    fp_start_bin(&a, "attnd", model_dir, "3000", extra);
    client c;
    c_open(&c, a.data_port);
    c_submit(&c, 1, 0, 60000);
    while (c.got[1] < 3)
        xp_wait(c.xp, 5);
    kill(f.pid, SIGKILL);
    waitpid(f.pid, NULL, 0);
    int64_t deadline = (int64_t)afd_now_ns() + 20000000000ll;
    while (!c.finish[1]) {
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "the running sequence never ended");
        xp_wait(c.xp, 10);
    }
    cr_assert_eq(c.finish[1], CTRL_FINISH_ERROR, "finish %d", c.finish[1]);
    /* refused while down */
    int acks = c.n_ack;
    c_submit(&c, 2, 0, 4);
    while (c.n_ack == acks)
        xp_wait(c.xp, 10);
    cr_assert_eq(c.ack_reason[acks], CTRL_R_PEER, "reason %u: %s", c.ack_reason[acks],
                 c.ack_msg[acks]);
    /* back: an ffnd at the same address */
    fp_start(&f, model_dir, "3000", fx);
    deadline = (int64_t)afd_now_ns() + 20000000000ll;
    for (uint64_t s = 3;; s++) {
        cr_assert_lt(s, (uint64_t)NSEQ + 8);
        acks = c.n_ack;
        c_submit(&c, s, 0, MAXOUT);
        while (c.n_ack == acks)
            xp_wait(c.xp, 10);
        if (c.ack_reason[acks] == CTRL_OK) {
            while (!c.finish[s])
                xp_wait(c.xp, 10);
            cr_assert_eq(c.finish[s], CTRL_FINISH_LENGTH);
            for (int t = 0; t < MAXOUT; t++)
                cr_assert_eq(c.toks[s][t], want[0][t], "token %d after reconnect", t);
            break;
        }
        cr_assert_eq(c.ack_reason[acks], CTRL_R_PEER, "%s", c.ack_msg[acks]);
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "no reconnect within 20 s");
        usleep(200000);
    }
    xp_free(c.xp);
    cr_assert_eq(fp_stop(&a), 0, "attnd exit status");
    cr_assert_eq(fp_stop(&f), 0, "ffnd exit status");
}
