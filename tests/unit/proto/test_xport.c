/* Unit tests for proto/xport: real UCX on 127.0.0.1 (UCX_NET_DEVICES=lo). Server and client
 * contexts live in one process (two workers, both driven by bounded progress loops) or in a
 * forked child for the cross-process cases (a peer killed with SIGKILL). A raw UCP client plays
 * the hostile peer that sends malformed headers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "proto/xport.h"

/* ---- fixtures ---- */

#define MAX_FRAMES 1024
#define MAX_PEERS  8

typedef struct rec {
    uint64_t step;
    uint32_t type, len;
    uint64_t sum;
} rec;

/* One end: a context and what its handlers saw. */
typedef struct side {
    xp_ctx *c;
    const char *label;
    bool echo;          /* answer every frame with the same bytes */
    bool refuse;        /* on_accept refuses */
    int accepts, downs, frames, unaligned;
    int reasons[MAX_PEERS];
    char why[MAX_PEERS][256];
    xp_peer *downed[MAX_PEERS];
    xp_peer *accepted[MAX_PEERS];
    rec log[MAX_FRAMES];
    int echo_cbs, echo_fail;
} side;

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void fill(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void echo_done(void *arg, int status) {
    side *s = *(side **)arg;
    s->echo_cbs++;
    s->echo_fail += status != 0;
    free(arg);
}

static int on_accept(void *ud, xp_peer *p) {
    side *s = ud;
    cr_assert_lt(s->accepts, MAX_PEERS);
    s->accepted[s->accepts++] = p;
    return s->refuse ? -1 : 0;
}

static int on_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    side *s = ud;
    s->unaligned += ((uintptr_t)pl & 7) != 0;
    cr_assert_not_null(pl);
    cr_assert_eq(h->payload_len, len, "payload_len %u != len %zu", h->payload_len, len);
    if (s->frames < MAX_FRAMES)
        s->log[s->frames] = (rec){h->step, h->type, (uint32_t)len, fnv(pl, len)};
    s->frames++;
    if (s->echo) {
        /* the payload dies on return: echo from a copy that the send callback frees */
        void *buf = malloc(sizeof(side *) + len);
        *(side **)buf = s;
        memcpy((uint8_t *)buf + sizeof(side *), pl, len);
        wire_hdr r = *h;
        r.type = WIRE_T_F2A;
        cr_assert_eq(xp_send(p, &r, (uint8_t *)buf + sizeof(side *), len, echo_done, buf), 0);
    }
    return 0;
}

static void on_down(void *ud, xp_peer *p, int reason, const char *why) {
    side *s = ud;
    cr_assert_lt(s->downs, MAX_PEERS);
    for (int i = 0; i < s->downs; i++)
        cr_assert_neq(s->downed[i], p, "%s: on_down twice for one peer", s->label);
    s->downed[s->downs] = p;
    s->reasons[s->downs] = reason;
    snprintf(s->why[s->downs], sizeof s->why[0], "%s", why);
    s->downs++;
}

static const xp_handlers HANDLERS = {on_accept, on_frame, on_down};

static void env_setup(void) {
    setenv("UCX_NET_DEVICES", "lo", 1);
    setvbuf(stdout, NULL, _IONBF, 0);
}

TestSuite(xport, .init = env_setup, .timeout = 20);

static xp_opts opts_for(xp_errmode mode) {
    xp_opts o;
    xp_opts_default(&o);
    o.err_mode = mode;
    o.rx_bufs = 4;
    o.rx_buf_size = 2u << 20;
    return o;
}

static void side_init(side *s, const char *label, const xp_opts *o) {
    memset(s, 0, sizeof *s);
    s->label = label;
    afd_err err = {0};
    int rc = xp_init(&s->c, o, &HANDLERS, s, &err);
    cr_assert_eq(rc, 0, "%s: xp_init: %d %s", label, rc, err.msg);
}

static int server_listen(side *s) {
    int port = 0;
    afd_err err = {0};
    int rc = xp_listen(s->c, "127.0.0.1", 0, &port, &err);
    cr_assert_eq(rc, 0, "xp_listen: %d %s", rc, err.msg);
    cr_assert_gt(port, 0);
    return port;
}

static xp_peer *client_connect(side *s, int port) {
    xp_peer *p = NULL;
    afd_err err = {0};
    int rc = xp_connect(s->c, "127.0.0.1", port, &p, &err);
    cr_assert_eq(rc, 0, "xp_connect: %d %s", rc, err.msg);
    cr_assert_not_null(p);
    return p;
}

typedef bool (*cond_fn)(void *arg);

/* Progresses both contexts until cond holds or ms pass; returns cond. */
static bool pump(side *a, side *b, cond_fn cond, void *arg, int ms) {
    uint64_t end = afd_now_ns() + (uint64_t)ms * 1000000u;
    while (!cond(arg)) {
        if (afd_now_ns() > end)
            return false;
        int n = 0;
        if (a && a->c)
            n += xp_progress(a->c);
        if (b && b->c)
            n += xp_progress(b->c);
        if (!n)
            usleep(50);
    }
    return true;
}

typedef struct counter {
    int *v;
    int want;
} counter;
static bool reached(void *arg) {
    counter *k = arg;
    return *k->v >= k->want;
}
#define PUMP_UNTIL(a, b, var, n, ms)                                                               \
    pump((a), (b), reached, &(counter){&(var), (n)}, (ms))

static wire_hdr a2f_hdr(uint64_t step) {
    return (wire_hdr){.type = WIRE_T_A2F, .sender = 1, .layer = 0, .step = step};
}

/* Connects cli to srv and waits until a first 8-byte frame (step 1000) went through, i.e.
 * the connection is wired up: frames sent before that go eager even when large (UCX picks the
 * protocol when the send starts). */
static xp_peer *connect_ready(side *srv, side *cli) {
    xp_peer *p = client_connect(cli, server_listen(srv));
    static const uint64_t hello = 42;
    wire_hdr h = a2f_hdr(1000);
    int f0 = srv->frames;
    cr_assert_eq(xp_send(p, &h, &hello, sizeof hello, NULL, NULL), 0);
    cr_assert(PUMP_UNTIL(srv, cli, srv->frames, f0 + 1, 5000), "no first frame");
    if (srv->echo)
        cr_assert(PUMP_UNTIL(srv, cli, cli->frames, 1, 5000), "no first echo");
    return p;
}

/* ---- round trips ---- */

static void send_counted(void *arg, int status) {
    int *v = arg;
    cr_assert_eq(status, 0, "send status %d", status);
    (*v)++;
}

static void roundtrip(xp_errmode mode) {
    static const size_t sizes[] = {0, 4096, 1u << 20, 3u << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    xp_opts o = opts_for(mode);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    srv.echo = true;
    xp_peer *p = connect_ready(&srv, &cli);
    uint8_t *bufs[N];
    int sent = 0;
    for (int i = 0; i < N; i++) {
        bufs[i] = malloc(sizes[i] + 1);
        fill(bufs[i], sizes[i], (uint64_t)i);
        wire_hdr h = a2f_hdr((uint64_t)i);
        cr_assert_eq(xp_send(p, &h, bufs[i], sizes[i], send_counted, &sent), 0);
    }
    cr_assert_eq(sent, 0, "send callbacks ran inside xp_send");
    cr_assert(PUMP_UNTIL(&srv, &cli, cli.frames, N + 1, 10000), "echoes: %d of %d", cli.frames,
              N + 1);
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.echo_cbs, N + 1, 5000));
    cr_assert(PUMP_UNTIL(&srv, &cli, sent, N, 5000));
    for (int i = 0; i < N; i++) {
        uint64_t want = fnv(bufs[i], sizes[i]);
        const rec *r = &srv.log[i + 1], *e = &cli.log[i + 1];
        cr_assert_eq(r->step, (uint64_t)i, "server order: %llu at %d",
                     (unsigned long long)r->step, i);
        cr_assert_eq(r->len, sizes[i], "server len %u != %zu", r->len, sizes[i]);
        cr_assert_eq(r->sum, want, "server checksum of frame %d", i);
        cr_assert_eq(e->step, (uint64_t)i);
        cr_assert_eq(e->type, (uint32_t)WIRE_T_F2A);
        cr_assert_eq(e->len, sizes[i], "client len %u != %zu", e->len, sizes[i]);
        cr_assert_eq(e->sum, want, "client checksum of frame %d", i);
    }
    cr_assert_eq(srv.unaligned + cli.unaligned, 0);
    cr_assert_eq(srv.echo_fail, 0);
    xp_stats ss, cs;
    xp_get_stats(srv.c, &ss);
    xp_get_stats(cli.c, &cs);
    cr_assert_geq(ss.rndv_in, 2, "server rndv_in %llu", (unsigned long long)ss.rndv_in);
    cr_assert_geq(ss.heap_rx, 1, "3 MiB > rx_buf_size must use the heap: %llu",
                  (unsigned long long)ss.heap_rx);
    cr_assert_geq(cs.rndv_in, 2, "client rndv_in %llu", (unsigned long long)cs.rndv_in);
    cr_assert_geq(ss.frames_in, N);
    cr_assert_eq(ss.bytes_in, cs.bytes_out, "bytes %llu != %llu",
                 (unsigned long long)ss.bytes_in, (unsigned long long)cs.bytes_out);
    cr_assert_eq(ss.bad_frames, 0);
    xp_free(cli.c);
    cr_assert_eq(cli.downs, 1, "client downs %d", cli.downs);
    cr_assert_eq(cli.reasons[0], XP_DOWN_SHUTDOWN, "reason %d", cli.reasons[0]);
    cr_assert(PUMP_UNTIL(&srv, NULL, srv.downs, 1, 5000), "server never saw the client go");
    cr_assert_eq(srv.reasons[0], XP_DOWN_GOODBYE, "reason %s: %s", xp_down_name(srv.reasons[0]),
                 srv.why[0]);
    xp_free(srv.c);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
}

Test(xport, roundtrip_err_none) { roundtrip(XP_ERR_NONE); }
Test(xport, roundtrip_err_peer) { roundtrip(XP_ERR_PEER); }

/* ---- closing ---- */

static void graceful_close(xp_errmode mode) {
    xp_opts o = opts_for(mode);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    xp_peer *p = connect_ready(&srv, &cli);
    uint64_t t0 = afd_now_ns();
    xp_peer_close(p, "bye now");
    xp_peer_close(p, "twice"); /* idempotent */
    wire_hdr h = a2f_hdr(1);
    cr_assert_eq(xp_send(p, &h, NULL, 0, NULL, NULL), AFD_E_STATE, "send on a closing peer");
    cr_assert(PUMP_UNTIL(&srv, &cli, cli.downs, 1, 5000));
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.downs, 1, 5000));
    double ms = (double)(afd_now_ns() - t0) / 1e6;
    cr_assert_eq(cli.reasons[0], XP_DOWN_CLOSED, "client reason %s", xp_down_name(cli.reasons[0]));
    cr_assert_str_eq(cli.why[0], "bye now");
    cr_assert_eq(srv.reasons[0], XP_DOWN_GOODBYE, "server reason %s: %s",
                 xp_down_name(srv.reasons[0]), srv.why[0]);
    cr_assert(strstr(srv.why[0], "bye now"), "why: %s", srv.why[0]);
    cr_assert_lt(ms, 500.0, "close took %.1f ms", ms);
    xp_stats s;
    xp_get_stats(srv.c, &s);
    cr_assert_eq(s.peers_up, 1);
    cr_assert_eq(s.peers_down, 1);
    xp_free(cli.c);
    xp_free(srv.c);
    cr_assert_eq(cli.downs, 1, "no second on_down at xp_free: %d", cli.downs);
}

Test(xport, graceful_close_err_none) { graceful_close(XP_ERR_NONE); }
Test(xport, graceful_close_err_peer) { graceful_close(XP_ERR_PEER); }

Test(xport, accept_refused) {
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    srv.refuse = true;
    client_connect(&cli, server_listen(&srv));
    cr_assert(PUMP_UNTIL(&srv, &cli, cli.downs, 1, 5000), "client not told");
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.downs, 1, 5000));
    cr_assert_eq(srv.accepts, 1);
    cr_assert_eq(srv.reasons[0], XP_DOWN_REFUSED, "server reason %s", xp_down_name(srv.reasons[0]));
    cr_assert_eq(cli.reasons[0], XP_DOWN_GOODBYE, "client reason %s: %s",
                 xp_down_name(cli.reasons[0]), cli.why[0]);
    cr_assert(strstr(cli.why[0], "refused"), "why: %s", cli.why[0]);
    xp_free(cli.c);
    xp_free(srv.c);
}
