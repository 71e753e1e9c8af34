/* ffnd as a process, through the client library over real UCX on 127.0.0.1: answers equal the
 * single-process FFN; EP and TP groups add up; a peer sending garbage or killed with SIGKILL is
 * dropped while another keeps its correct answers; refusals at handshake; SIGTERM drains. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "common/base/clock.h"
#include "common/base/numfmt.h"
#include "proto/ffn_client.h"
#include "proto/xport.h"
#include "tests/unit/ffnd/ffnd_proc.h"
#include "tests/unit/ffnd/ffnd_util.h"

static char model_dir[256];
/* Peer timeout of daemons and clients: AFD_TEST_PEER_TIMEOUT_MS for slow runs (valgrind). */
static int peer_timeout_ms = 1500;
static char peer_timeout_arg[16];
static afd_backend *be;
static ft_model full;

static void setup(void) {
    setenv("UCX_NET_DEVICES", "lo", 0);
    const char *pt = getenv("AFD_TEST_PEER_TIMEOUT_MS");
    if (pt && atoi(pt) > 0)
        peer_timeout_ms = atoi(pt);
    snprintf(peer_timeout_arg, sizeof peer_timeout_arg, "%d", peer_timeout_ms);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    ft_make_model(model_dir, sizeof model_dir, "fp8", 11);
    /* the same kernels as the daemons (AFD_CPU_ISA, e.g. avx2 under valgrind) */
    cr_assert_eq(afd_cpu_backend_new(getenv("AFD_CPU_ISA"), 1, &be), 0);
    ft_load(&full, model_dir, NULL);
}

static void teardown(void) {
    fp_kill_all();
    ft_unload(&full);
    afd_backend_free(be);
    ft_rm(model_dir);
}

TestSuite(ffnd, .init = setup, .fini = teardown, .timeout = 120);

static void client_opts(fc_opts *o, int n, const fproc *ds, int ep, int tp, uint8_t f2a) {
    const afd_model_config *c = &full.w.cfg;
    fc_opts_default(o);
    o->n_shards = n;
    for (int i = 0; i < n; i++) {
        snprintf(o->shards[i].host, sizeof o->shards[i].host, "127.0.0.1");
        o->shards[i].port = ds[i].data_port;
        o->shards[i].ep_rank = ep > 1 ? i : 0, o->shards[i].ep_size = ep;
        o->shards[i].tp_rank = tp > 1 ? i : 0, o->shards[i].tp_size = tp;
    }
    o->max_tok = 16;
    o->instance_id = 42;
    o->fingerprint = afd_model_fingerprint(c, full.set);
    o->dims = (wire_dims){.hidden = (uint32_t)c->hidden, .top_k = (uint32_t)c->top_k,
                          .n_experts = (uint32_t)c->n_experts, .n_layers = (uint32_t)c->n_layers,
                          .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = f2a};
    o->heartbeat_ms = 200;
    o->peer_timeout_ms = peer_timeout_ms;
}

/* One micro-batch through the group for `layer`; *rel gets the relative L2 error against the
 * in-process FFN (rounded to BF16 when f2a is BF16); returns whether it was bitwise equal. */
static bool round_trip(fc_group *g, int slot, int layer, int T, uint64_t seed, uint8_t f2a,
                       double *rel) {
    const afd_model_config *c = &full.w.cfg;
    wire_a2f a;
    cr_assert_eq(fc_a2f_buffer(g, slot, (uint32_t)T, c->is_moe[layer], &a), 0);
    ft_fill_view(be, c, &seed, &a);
    size_t N = (size_t)T * (size_t)c->hidden;
    float *want = xmalloc(N * 4), *got = xmalloc(N * 4);
    ft_reference(be, &full.w, layer, &a, want);
    if (f2a == WIRE_DT_BF16)
        for (size_t i = 0; i < N; i++)
            want[i] = afd_bf16_to_f32(afd_f32_to_bf16(want[i]));
    cr_assert_eq(fc_send(g, slot, seed, (uint16_t)slot, (uint16_t)layer), 0);
    int rc = fc_wait(g, slot, 10000 + 4 * peer_timeout_ms);
    char why[300] = "";
    fc_broken(g, why, sizeof why);
    cr_assert_eq(rc, 1, "no answer for layer %d: rc %d %s", layer, rc, why);
    cr_assert_eq(fc_take(g, slot, got), 0);
    double e2 = 0, r2 = 0;
    for (size_t i = 0; i < N; i++) {
        e2 += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        r2 += (double)want[i] * want[i];
    }
    cr_assert_gt(r2, 0.0);
    *rel = sqrt(e2 / r2);
    bool same = memcmp(got, want, N * 4) == 0;
    free(want), free(got);
    return same;
}

Test(ffnd, one_shard_bitwise_equals_in_process) {
    fproc d;
    const char *extra[] = {"--f2a-dtype", "bf16", NULL};
    fp_start(&d, model_dir, peer_timeout_arg, extra);
    fc_opts o;
    client_opts(&o, 1, &d, 1, 1, WIRE_DT_BF16);
    fc_group *g;
    afd_err err = {0};
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    double rel;
    for (int layer = 0; layer < full.w.cfg.n_layers; layer++)
        for (int T = 1; T <= 16; T += 15)
            cr_assert(round_trip(g, layer % 3, layer, T, 100 + (uint64_t)(layer * 17 + T),
                                 WIRE_DT_BF16, &rel),
                      "layer %d T %d: not bitwise equal (rel %.3g)", layer, T, rel);
    fc_close(g);
    cr_assert_eq(fp_stop(&d), 0, "ffnd exit status after SIGTERM");
}

static void group_sums(int ep, int tp) {
    fproc d[2];
    char r0[8], s0[8];
    snprintf(s0, sizeof s0, "%d", ep > 1 ? ep : tp);
    for (int i = 0; i < 2; i++) {
        snprintf(r0, sizeof r0, "%d", i);
        const char *extra[] = {ep > 1 ? "--ep-rank" : "--tp-rank", r0,
                               ep > 1 ? "--ep-size" : "--tp-size", s0, "--f2a-dtype", "f32",
                               NULL};
        fp_start(&d[i], model_dir, peer_timeout_arg, extra);
    }
    fc_opts o;
    client_opts(&o, 2, d, ep, tp, WIRE_DT_F32);
    fc_group *g;
    afd_err err = {0};
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    double rel;
    for (int layer = 0; layer < full.w.cfg.n_layers; layer++) {
        round_trip(g, 0, layer, 7, 500 + (uint64_t)layer, WIRE_DT_F32, &rel);
        cr_assert_lt(rel, 1e-5, "ep %d tp %d layer %d: rel L2 %.3g", ep, tp, layer, rel);
    }
    fc_close(g);
    cr_assert_eq(fp_stop(&d[0]), 0);
    cr_assert_eq(fp_stop(&d[1]), 0);
}

Test(ffnd, two_ep_shards_sum_to_in_process) { group_sums(2, 1); }
Test(ffnd, two_tp_shards_sum_to_in_process) { group_sums(1, 2); }

Test(ffnd, refuses_other_shard_map_and_model) {
    fproc d;
    const char *extra[] = {"--ep-rank", "0", "--ep-size", "2", NULL};
    fp_start(&d, model_dir, peer_timeout_arg, extra);
    fc_opts o;
    client_opts(&o, 1, &d, 2, 1, WIRE_DT_BF16);
    o.shards[0].ep_rank = 1; /* the client expects shard 1 at shard 0's address */
    fc_group *g;
    afd_err err = {0};
    cr_assert_neq(fc_open(&g, &o, &err), 0);
    cr_assert(strstr(err.msg, "shard"), "reason: %s", err.msg);
    client_opts(&o, 1, &d, 2, 1, WIRE_DT_BF16);
    o.shards[0].ep_rank = 0;
    o.fingerprint ^= 1;
    cr_assert_neq(fc_open(&g, &o, &err), 0);
    cr_assert(strstr(err.msg, "fingerprint"), "reason: %s", err.msg);
    /* a correct client still gets in */
    client_opts(&o, 1, &d, 2, 1, WIRE_DT_BF16);
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    fc_close(g);
    cr_assert_eq(fp_stop(&d), 0);
}

/* ---- a raw peer that misbehaves ---------------------------------------------------------- */

typedef struct raw {
    xp_ctx *xp;
    xp_peer *p;
    bool acked, down;
    char why[200];
} raw;

static int raw_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    raw *r = ud;
    (void)p, (void)pl, (void)len;
    if (h->type == WIRE_T_HELLO_ACK)
        r->acked = true;
    return 0;
}
static int raw_accept(void *ud, xp_peer *p) { return (void)ud, (void)p, -1; }
static void raw_down(void *ud, xp_peer *p, int reason, const char *why) {
    raw *r = ud;
    (void)p, (void)reason;
    r->down = true;
    snprintf(r->why, sizeof r->why, "%s", why ? why : "");
}

/* Connects, handshakes as a proper attnd, then sends an A2F whose expert id is out of range. */
static void raw_garbage(raw *r, const fproc *d) {
    xp_opts xo;
    xp_opts_default(&xo);
    xp_handlers h = {.on_accept = raw_accept, .on_frame = raw_frame, .on_down = raw_down};
    afd_err err = {0};
    cr_assert_eq(xp_init(&r->xp, &xo, &h, r, &err), 0, "%s", err.msg);
    cr_assert_eq(xp_connect(r->xp, "127.0.0.1", d->data_port, &r->p, &err), 0, "%s", err.msg);
    fc_opts o;
    client_opts(&o, 1, d, 1, 1, WIRE_DT_BF16);
    wire_hello hello = {.proto_min = 1, .proto_max = 1, .role = WIRE_ROLE_ATTND,
                        .instance_id = 7, .model_fingerprint = o.fingerprint, .ep_size = 1,
                        .tp_size = 1, .n_layers = o.dims.n_layers, .n_experts = o.dims.n_experts,
                        .hidden = o.dims.hidden, .top_k = (uint16_t)o.dims.top_k,
                        .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = WIRE_DT_BF16, .max_tok = 16};
    snprintf(hello.name, sizeof hello.name, "garbage");
    uint8_t buf[WIRE_HELLO_MAX];
    size_t n;
    cr_assert_eq(wire_hello_encode(buf, sizeof buf, &hello, &n), 0);
    wire_hdr hh = {.type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE};
    cr_assert_eq(xp_send(r->p, &hh, buf, n, NULL, NULL), 0);
    for (int i = 0; i < 500 && !r->acked && !r->down; i++)
        xp_wait(r->xp, 10);
    cr_assert(r->acked, "no HELLO_ACK for the raw peer (%s)", r->why);
    const afd_model_config *c = &full.w.cfg;
    static uint8_t pl[1 << 16] __attribute__((aligned(64)));
    wire_a2f a;
    cr_assert_eq(wire_a2f_layout(&o.dims, 2, true, pl, &a), 0);
    uint64_t seed = 9;
    ft_fill_view(be, c, &seed, &a);
    a.ids[1] = (uint16_t)c->n_experts; /* out of range */
    wire_hdr ah = {.type = WIRE_T_A2F, .flags = WIRE_F_MOE, .layer = 1, .n_tok = 2};
    cr_assert_eq(xp_send(r->p, &ah, pl, wire_a2f_size(&o.dims, 2, true), NULL, NULL), 0);
    for (int i = 0; i < 500 && !r->down; i++)
        xp_wait(r->xp, 10);
}

Test(ffnd, garbage_peer_dropped_others_unaffected) {
    fproc d;
    fp_start(&d, model_dir, peer_timeout_arg, NULL);
    fc_opts o;
    client_opts(&o, 1, &d, 1, 1, WIRE_DT_BF16);
    fc_group *g;
    afd_err err = {0};
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    double rel;
    cr_assert(round_trip(g, 0, 1, 5, 1, WIRE_DT_BF16, &rel), "before: rel %.3g", rel);
    raw r = {0};
    raw_garbage(&r, &d);
    cr_assert(r.down, "the garbage peer was not dropped");
    for (int i = 0; i < 4; i++)
        cr_assert(round_trip(g, i % 3, i % 3, 3 + i, 20 + (uint64_t)i, WIRE_DT_BF16, &rel),
                  "after the garbage peer: round trip %d not bitwise (rel %.3g)", i, rel);
    xp_free(r.xp);
    fc_close(g);
    cr_assert_eq(fp_stop(&d), 0);
}

/* Reads /metrics from the fproc's admin port and returns the value of `name` (first match). */
static double metric(const fproc *d, const char *name) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->admin_port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0, "admin port %d",
                 d->admin_port);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(s, req, sizeof req - 1), (ssize_t)sizeof req - 1);
    static char buf[1 << 20];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(s, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = 0;
    close(s);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    char *p = strstr(buf, key);
    cr_assert_not_null(p, "%s not in /metrics", name);
    return strtod(p + strlen(key), NULL);
}

Test(ffnd, killed_client_is_reaped_and_others_served) {
    fproc d;
    fp_start(&d, model_dir, peer_timeout_arg, NULL);
    fc_opts o;
    client_opts(&o, 1, &d, 1, 1, WIRE_DT_BF16);
    pid_t child = fork();
    if (child == 0) {
        /* a client that connects, sends a micro-batch and is killed mid-flight */
        fc_group *cg;
        afd_err e;
        if (fc_open(&cg, &o, &e))
            _exit(3);
        wire_a2f a;
        uint64_t seed = 5;
        fc_a2f_buffer(cg, 0, 8, true, &a);
        ft_fill_view(be, &full.w.cfg, &seed, &a);
        fc_send(cg, 0, 1, 0, 1);
        for (;;)
            fc_wait(cg, 0, 1000);
    }
    int64_t deadline = (int64_t)afd_now_ns() + 10000000000ll;
    while (metric(&d, "afd_ffnd_peers") < 1) {
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "the child client never connected");
        usleep(20000);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    fc_group *g;
    afd_err err = {0};
    cr_assert_eq(fc_open(&g, &o, &err), 0, "%s", err.msg);
    double rel;
    cr_assert(round_trip(g, 1, 1, 4, 77, WIRE_DT_BF16, &rel), "rel %.3g", rel);
    deadline = (int64_t)afd_now_ns() + (peer_timeout_ms + 3500) * 1000000ll;
    while (metric(&d, "afd_ffnd_peers") > 1) {
        cr_assert_lt((int64_t)afd_now_ns(), deadline,
                     "the killed client is still counted %d ms after the kill",
                     peer_timeout_ms + 3500);
        usleep(50000);
    }
    cr_assert(round_trip(g, 2, 0, 4, 78, WIRE_DT_BF16, &rel), "rel %.3g", rel);
    fc_close(g);
    cr_assert_eq(fp_stop(&d), 0, "ffnd (under ASan: leaks) after the killed client");
}
