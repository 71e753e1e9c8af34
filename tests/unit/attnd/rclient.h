/* rclient.h: a router-like control-plane client for tests: one xport context, sessions with
 * several attnds, and a record per sequence of everything they answered (acks, reservations,
 * PREFILL_DONE, tokens, finish) plus each instance's last LOAD. Frames are decoded with the
 * real proto/ctrl decoder; a bad frame fails the test. */
#ifndef AFD_TEST_RCLIENT_H
#define AFD_TEST_RCLIENT_H

#include <criterion/criterion.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/model/weights.h"
#include "proto/ctrl.h"
#include "proto/xport.h"

#define RC_SEQS  64
#define RC_PEERS 4
#define RC_TOKS  256

typedef struct rc_seq {
    int got;                 /* tokens from TOKENS */
    int32_t toks[RC_TOKS];
    int finish;              /* CTRL_FINISH_* of the last TOKENS, 0 while running */
    int32_t code;
    char msg[CTRL_MSG_MAX + 1];
    uint32_t completion_tokens;
    int ack;                 /* SUBMIT_ACK: -1 none, else reason */
    int resv;                /* -1 none, 0 RESERVE_OK, else RESERVE_FAIL reason */
    char resv_msg[CTRL_MSG_MAX + 1];
    uint64_t epoch, lease_ms, block_bytes, remote_base;
    uint32_t block_size, n_blocks, block_ids[1024];
    uint8_t rkey[CTRL_RKEY_MAX];
    uint32_t rkey_len;
    int done;                /* PREFILL_DONE: -1 none, else reason */
    char done_msg[CTRL_MSG_MAX + 1];
    uint32_t first;          /* PREFILL_DONE's token */
    float first_lp;
} rc_seq;

typedef struct rc_peer {
    xp_peer *p;
    bool acked, registered, down;
    ctrl_register reg;
    ctrl_load load;
    int n_load;
} rc_peer;

typedef struct rclient {
    xp_ctx *xp;
    rc_peer peers[RC_PEERS];
    int n_peers;
    rc_seq seq[RC_SEQS];
    uint64_t fingerprint;
    afd_model_config cfg;
} rclient;

static rc_peer *rc_peer_of(rclient *c, xp_peer *p) {
    for (int i = 0; i < c->n_peers; i++)
        if (c->peers[i].p == p)
            return &c->peers[i];
    return NULL;
}

static rc_seq *rc_seq_of(rclient *c, uint64_t id) {
    cr_assert_lt(id, (uint64_t)RC_SEQS, "seq_id %llu out of the test's range",
                 (unsigned long long)id);
    return &c->seq[id];
}

static int rc_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    rclient *c = ud;
    rc_peer *rp = rc_peer_of(c, p);
    cr_assert_not_null(rp);
    if (h->type == WIRE_T_HELLO_ACK) {
        wire_hello a;
        cr_assert_eq(wire_hello_decode(pl, len, &a), 0);
        cr_assert_eq(a.status, 0, "attnd refused the client: %s", a.reason);
        rp->acked = true;
        return 0;
    }
    ctrl_msg m;
    int rc = ctrl_decode(h, pl, len, NULL, &m);
    cr_assert_eq(rc, 0, "bad %s from attnd: %s", ctrl_type_name(h->type), wire_strerror(rc));
    rc_seq *s;
    switch (m.type) {
    case WIRE_T_CTRL_REGISTER:
        rp->reg = m.u.reg;
        rp->registered = true;
        break;
    case WIRE_T_CTRL_LOAD:
        rp->load = m.u.load;
        rp->n_load++;
        break;
    case WIRE_T_CTRL_SUBMIT_ACK:
        rc_seq_of(c, m.u.submit_ack.seq_id)->ack = (int)m.u.submit_ack.reason;
        break;
    case WIRE_T_CTRL_RESERVE_OK: {
        s = rc_seq_of(c, m.u.reserve_ok.seq_id);
        const ctrl_resv *r = &m.u.reserve_ok.r;
        s->resv = 0;
        s->epoch = r->epoch, s->lease_ms = r->lease_ms, s->block_bytes = r->block_bytes;
        s->remote_base = r->remote_base, s->block_size = r->block_size;
        s->n_blocks = r->n_blocks < 1024 ? r->n_blocks : 1024;
        memcpy(s->block_ids, r->block_ids, s->n_blocks * sizeof *s->block_ids);
        s->rkey_len = r->rkey_len;
        if (r->rkey_len)
            memcpy(s->rkey, r->rkey, r->rkey_len);
        break;
    }
    case WIRE_T_CTRL_RESERVE_FAIL:
        s = rc_seq_of(c, m.u.reserve_fail.seq_id);
        s->resv = (int)m.u.reserve_fail.reason;
        snprintf(s->resv_msg, sizeof s->resv_msg, "%s", m.u.reserve_fail.msg);
        break;
    case WIRE_T_CTRL_PREFILL_DONE:
        s = rc_seq_of(c, m.u.prefill_done.seq_id);
        s->done = (int)m.u.prefill_done.reason;
        s->first = m.u.prefill_done.token;
        s->first_lp = m.u.prefill_done.logprob;
        snprintf(s->done_msg, sizeof s->done_msg, "%s", m.u.prefill_done.msg);
        break;
    case WIRE_T_CTRL_TOKENS:
        s = rc_seq_of(c, m.u.tokens.seq_id);
        for (uint32_t i = 0; i < m.u.tokens.n_tok && s->got < RC_TOKS; i++)
            s->toks[s->got++] = (int32_t)m.u.tokens.ids[i];
        if (m.u.tokens.finish) {
            s->finish = m.u.tokens.finish;
            s->code = m.u.tokens.code;
            s->completion_tokens = m.u.tokens.completion_tokens;
            snprintf(s->msg, sizeof s->msg, "%s", m.u.tokens.msg);
        }
        break;
    default:
        cr_assert_fail("unexpected %s", ctrl_type_name(m.type));
    }
    return 0;
}

static void rc_down(void *ud, xp_peer *p, int reason, const char *why) {
    rc_peer *rp = rc_peer_of(ud, p);
    (void)reason, (void)why;
    if (rp)
        rp->down = true;
}

static void rc_init(rclient *c, const char *model_dir) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < RC_SEQS; i++)
        c->seq[i].ack = c->seq[i].resv = c->seq[i].done = -1;
    xp_opts xo;
    xp_opts_default(&xo);
    if (getenv("AFD_TEST_PEER_TIMEOUT_MS")) /* slow runs (valgrind) */
        xo.peer_timeout_ms = atoi(getenv("AFD_TEST_PEER_TIMEOUT_MS"));
    xp_handlers h = {.on_frame = rc_frame, .on_down = rc_down};
    afd_err err = {0};
    cr_assert_eq(xp_init(&c->xp, &xo, &h, c, &err), 0, "%s", err.msg);
    st_set *set;
    afd_weights w;
    cr_assert_eq(afd_model_open(model_dir, AFD_PART_ATTN, NULL, &w, &set, &err), 0, "%s",
                 err.msg);
    c->fingerprint = afd_model_fingerprint(&w.cfg, set);
    c->cfg = w.cfg;
    afd_weights_free(&w);
    st_set_free(set);
}

typedef bool (*rc_cond)(rclient *c, void *arg);

/* Progresses until cond holds; fails the test after ms. */
static void rc_until(rclient *c, rc_cond cond, void *arg, int ms, const char *what) {
    int64_t end = (int64_t)afd_now_ns() + (int64_t)ms * 1000000;
    while (!cond(c, arg)) {
        cr_assert_lt((int64_t)afd_now_ns(), end, "timed out (%d ms) waiting for %s", ms, what);
        xp_wait(c->xp, 5);
    }
}

static bool rc_is_up(rclient *c, void *arg) {
    rc_peer *p = arg;
    (void)c;
    return p->acked && p->registered;
}

/* A session with the attnd at port; returns its index. */
static int rc_connect(rclient *c, int port) {
    cr_assert_lt(c->n_peers, RC_PEERS);
    rc_peer *rp = &c->peers[c->n_peers];
    memset(rp, 0, sizeof *rp);
    afd_err err = {0};
    cr_assert_eq(xp_connect(c->xp, "127.0.0.1", port, &rp->p, &err), 0, "%s", err.msg);
    c->n_peers++;
    wire_limits wl;
    ctrl_wire_limits(NULL, CTRL_TYPES_TO_ROUTER, &wl);
    wl.types |= WIRE_TYPES_HANDSHAKE;
    xp_peer_set_limits(rp->p, &wl);
    wire_hello hello = {.proto_min = 1, .proto_max = 1, .role = WIRE_ROLE_ROUTER,
                        .instance_id = 9, .model_fingerprint = c->fingerprint,
                        .ep_size = 1, .tp_size = 1, .n_layers = (uint32_t)c->cfg.n_layers,
                        .n_experts = (uint32_t)c->cfg.n_experts, .hidden = (uint32_t)c->cfg.hidden,
                        .top_k = (uint16_t)c->cfg.top_k, .a2f_dtype = WIRE_DT_E4M3,
                        .f2a_dtype = WIRE_DT_BF16, .max_tok = 1};
    snprintf(hello.name, sizeof hello.name, "test-router");
    static uint8_t buf[WIRE_HELLO_MAX];
    size_t n;
    cr_assert_eq(wire_hello_encode(buf, sizeof buf, &hello, &n), 0);
    wire_hdr hh = {.type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE};
    cr_assert_eq(xp_send(rp->p, &hh, buf, n, NULL, NULL), 0);
    rc_until(c, rc_is_up, rp, 10000, "HELLO_ACK and REGISTER");
    return c->n_peers - 1;
}

/* Sends an encoded control message (the buffer is freed by the send callback). */
static void rc_free_cb(void *arg, int status) {
    (void)status;
    free(arg);
}
static void rc_send(rclient *c, int peer, const ctrl_msg *m, uint64_t req) {
    size_t cap = 1 << 20, len;
    uint8_t *buf = malloc(cap);
    int rc = ctrl_encode(buf, cap, m, &len);
    cr_assert_eq(rc, 0, "encode %s: %s", ctrl_type_name(m->type), wire_strerror(rc));
    wire_hdr h = ctrl_hdr(m->type, 9, req);
    cr_assert_eq(xp_send(c->peers[peer].p, &h, buf, len, rc_free_cb, buf), 0);
}

static ctrl_sampling rc_greedy(uint32_t max_tokens) {
    return (ctrl_sampling){.temperature = 0, .top_p = 1, .top_k = -1, .max_tokens = max_tokens,
                           .ignore_eos = true};
}

#endif
