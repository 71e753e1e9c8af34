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

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Under ASan (`make asan`): everything the test made is freed by now. */
static void leak_check(void) {
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks reported above");
#endif
}

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
    bool echo;   /* answer every frame with the same bytes */
    bool refuse; /* on_accept refuses */
    int port;    /* listening port */
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
    o.close_timeout_ms = 300; /* xp_free of one side while the other does not progress */
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
    s->port = port;
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

/* Progresses the contexts (NULL entries skipped) until cond holds or ms pass; returns cond. */
static bool pumpn(side *const *sides, int n, cond_fn cond, void *arg, int ms) {
    uint64_t end = afd_now_ns() + (uint64_t)ms * 1000000u;
    while (!cond(arg)) {
        if (afd_now_ns() > end) return false;
        int ev = 0;
        for (int i = 0; i < n; i++)
            if (sides[i] && sides[i]->c) ev += xp_progress(sides[i]->c);
        if (!ev) usleep(50);
    }
    return true;
}

static bool pump(side *a, side *b, cond_fn cond, void *arg, int ms) {
    side *const sides[2] = {a, b};
    return pumpn(sides, 2, cond, arg, ms);
}

typedef struct counter {
    int *v;
    int want;
} counter;
static bool reached(void *arg) {
    counter *k = arg;
    return *k->v >= k->want;
}
#define PUMP_UNTIL(a, b, var, n, ms) pump((a), (b), reached, &(counter){&(var), (n)}, (ms))
#define PUMP3_UNTIL(a, b, c, var, n, ms)                                                           \
    pumpn((side *const[3]){(a), (b), (c)}, 3, reached, &(counter){&(var), (n)}, (ms))

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
    if (srv->echo) cr_assert(PUMP_UNTIL(srv, cli, cli->frames, 1, 5000), "no first echo");
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
        cr_assert_eq(r->step, (uint64_t)i, "server order: %llu at %d", (unsigned long long)r->step,
                     i);
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
    cr_assert_eq(ss.bytes_in, cs.bytes_out, "bytes %llu != %llu", (unsigned long long)ss.bytes_in,
                 (unsigned long long)cs.bytes_out);
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
    leak_check();
}

Test(xport, roundtrip_err_none) {
    roundtrip(XP_ERR_NONE);
}
Test(xport, roundtrip_err_peer) {
    roundtrip(XP_ERR_PEER);
}

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

Test(xport, graceful_close_err_none) {
    graceful_close(XP_ERR_NONE);
}
Test(xport, graceful_close_err_peer) {
    graceful_close(XP_ERR_PEER);
}

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

/* ---- a peer that dies ---- */

/* The child: connect to port, send one frame, then keep the connection alive (heartbeats)
 * until killed (or 10 s). */
static void child_client(int rfd, xp_errmode mode) {
    int port = 0;
    if (read(rfd, &port, sizeof port) != sizeof port) _exit(2);
    xp_opts o = opts_for(mode);
    o.heartbeat_ms = 100;
    o.peer_timeout_ms = 0;
    side cli;
    memset(&cli, 0, sizeof cli);
    xp_ctx *c;
    if (xp_init(&c, &o, &HANDLERS, &cli, NULL)) _exit(3);
    xp_peer *p;
    if (xp_connect(c, "127.0.0.1", port, &p, NULL)) _exit(4);
    static const uint64_t v = 7;
    wire_hdr h = a2f_hdr(1);
    if (xp_send(p, &h, &v, sizeof v, NULL, NULL)) _exit(5);
    uint64_t end = afd_now_ns() + 10000000000ull;
    while (afd_now_ns() < end)
        xp_wait(c, 100);
    _exit(0);
}

/* A child peer that sends one frame, then is stopped (SIGSTOP: alive, sockets open, silent:
 * only the heartbeat timeout can tell) or killed (SIGKILL: UCX may see the connection reset
 * first, even in mode NONE, through the tcp connection manager). */
static void dying_peer(xp_errmode mode, int sig) {
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork(); /* before any UCX state exists in this process */
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[1]);
        child_client(pfd[0], mode);
    }
    close(pfd[0]);
    xp_opts o = opts_for(mode);
    o.heartbeat_ms = 100;
    o.peer_timeout_ms = 600;
    o.close_timeout_ms = 300;
    side srv;
    side_init(&srv, "server", &o);
    int port = server_listen(&srv);
    cr_assert_eq(write(pfd[1], &port, sizeof port), (ssize_t)sizeof port);
    close(pfd[1]);
    bool got = PUMP_UNTIL(&srv, NULL, srv.frames, 1, 5000);
    if (!got) kill(pid, SIGKILL);
    cr_assert(got, "no frame from the child");
    /* stays up while the child lives (its heartbeats) */
    bool early = PUMP_UNTIL(&srv, NULL, srv.downs, 1, 800);
    if (early) kill(pid, SIGKILL);
    cr_assert_not(early, "down while alive: %s", srv.why[0]);
    uint64_t t0 = afd_now_ns();
    kill(pid, sig);
    bool down = PUMP_UNTIL(&srv, NULL, srv.downs, 1, 5000);
    double ms = (double)(afd_now_ns() - t0) / 1e6;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert(down, "dead peer never reported");
    if (sig == SIGSTOP)
        cr_assert_eq(srv.reasons[0], XP_DOWN_TIMEOUT, "reason %s", xp_down_name(srv.reasons[0]));
    else
        cr_assert(srv.reasons[0] == XP_DOWN_ERROR || srv.reasons[0] == XP_DOWN_TIMEOUT, "reason %s",
                  xp_down_name(srv.reasons[0]));
    /* the peer was last heard at most one heartbeat before the signal; the close of a silent
     * endpoint may take close_timeout_ms in mode NONE */
    double limit = o.peer_timeout_ms + o.close_timeout_ms + 200.0;
    cr_assert_leq(ms, limit, "down after %.0f ms (%s; limit %.0f ms)", ms,
                  xp_down_name(srv.reasons[0]), limit);
    if (sig == SIGSTOP)
        cr_assert_geq(ms, o.peer_timeout_ms - o.heartbeat_ms - 50.0, "timed out early: %.0f ms",
                      ms);
    xp_free(srv.c);
    cr_assert_eq(srv.downs, 1);
    leak_check();
}

Test(xport, killed_peer_err_none) {
    dying_peer(XP_ERR_NONE, SIGKILL);
}
Test(xport, killed_peer_err_peer) {
    dying_peer(XP_ERR_PEER, SIGKILL);
}
Test(xport, stopped_peer_times_out_err_none) {
    dying_peer(XP_ERR_NONE, SIGSTOP);
}
Test(xport, stopped_peer_times_out_err_peer) {
    dying_peer(XP_ERR_PEER, SIGSTOP);
}

/* ---- many frames in flight ---- */

typedef struct slot {
    int calls, status;
} slot;
static void slot_done(void *arg, int status) {
    slot *s = arg;
    s->calls++;
    s->status = status;
}

Test(xport, many_in_flight_from_registered_buffer) {
    enum { N = 400 };
    static const size_t sizes[] = {16, 4096, 65536, 300000, 0, 1500000};
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    xp_peer *p = connect_ready(&srv, &cli);
    uint8_t *buf = xp_mem_alloc(cli.c, 2u << 20);
    cr_assert_not_null(buf);
    cr_assert_eq((uintptr_t)buf % 4096, 0);
    fill(buf, 2u << 20, 99);
    slot *slots = calloc(N, sizeof *slots);
    uint64_t want[N];
    for (int i = 0; i < N; i++) {
        size_t len = sizes[i % 6], off = (size_t)(i * 8) % 4096;
        want[i] = fnv(buf + off, len);
        wire_hdr h = a2f_hdr((uint64_t)i);
        h.mb = (uint16_t)(i % 3);
        cr_assert_eq(xp_send(p, &h, buf + off, len, slot_done, &slots[i]), 0, "send %d", i);
    }
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.frames, N + 1, 15000), "got %d of %d", srv.frames, N + 1);
    int done = 0;
    for (uint64_t end = afd_now_ns() + 5000000000ull; done < N && afd_now_ns() < end;) {
        xp_progress(cli.c);
        xp_progress(srv.c);
        done = 0;
        for (int i = 0; i < N; i++)
            done += slots[i].calls > 0;
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(slots[i].calls, 1, "callback %d ran %d times", i, slots[i].calls);
        cr_assert_eq(slots[i].status, 0, "send %d status %d", i, slots[i].status);
        const rec *r = &srv.log[i + 1];
        cr_assert_eq(r->step, (uint64_t)i, "order: step %llu at %d", (unsigned long long)r->step,
                     i);
        cr_assert_eq(r->len, sizes[i % 6], "len %u at %d", r->len, i);
        cr_assert_eq(r->sum, want[i], "checksum of frame %d", i);
    }
    cr_assert_eq(srv.unaligned, 0);
    xp_stats st;
    xp_get_stats(srv.c, &st);
    /* more rendezvous frames in flight than registered buffers: the rest go to the heap */
    cr_assert_gt(st.rndv_in, 0);
    cr_assert_lt(st.heap_rx, st.rndv_in, "heap %llu of %llu rendezvous frames",
                 (unsigned long long)st.heap_rx, (unsigned long long)st.rndv_in);
    xp_mem_free(cli.c, buf);
    xp_free(cli.c);
    xp_free(srv.c);
    free(slots);
    leak_check();
}

/* ---- xp_free with sends in flight ---- */

Test(xport, free_with_sends_in_flight) {
    enum { N = 24 };
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    xp_peer *p = connect_ready(&srv, &cli);
    size_t len = 1u << 20;
    uint8_t *buf = malloc(len);
    fill(buf, len, 5);
    slot slots[N] = {{0}};
    for (int i = 0; i < N; i++) {
        wire_hdr h = a2f_hdr((uint64_t)i);
        cr_assert_eq(xp_send(p, &h, buf, i % 2 ? len : 4096, slot_done, &slots[i]), 0);
    }
    xp_progress(srv.c); /* some are received, most are not */
    xp_free(cli.c);
    for (int i = 0; i < N; i++)
        cr_assert_eq(slots[i].calls, 1, "callback %d ran %d times", i, slots[i].calls);
    cr_assert_eq(cli.downs, 1, "client on_down %d", cli.downs);
    cr_assert_eq(cli.reasons[0], XP_DOWN_SHUTDOWN);
    xp_free(srv.c);
    cr_assert_eq(srv.downs, 1, "server on_down %d", srv.downs);
    free(buf);
    leak_check();
}

Test(xport, free_server_with_peers_up) {
    xp_opts o = opts_for(XP_ERR_PEER);
    side srv, a, b;
    side_init(&srv, "server", &o);
    side_init(&a, "a", &o);
    side_init(&b, "b", &o);
    int port = server_listen(&srv);
    client_connect(&a, port);
    client_connect(&b, port);
    cr_assert(PUMP3_UNTIL(&srv, &a, &b, srv.accepts, 2, 5000), "accepts %d", srv.accepts);
    xp_free(srv.c);
    cr_assert_eq(srv.downs, 2, "server on_down %d", srv.downs);
    srv.c = NULL;
    cr_assert(PUMP_UNTIL(&a, &b, a.downs, 1, 5000));
    cr_assert(PUMP_UNTIL(&a, &b, b.downs, 1, 5000));
    cr_assert(a.reasons[0] == XP_DOWN_GOODBYE || a.reasons[0] == XP_DOWN_ERROR, "a: %s",
              xp_down_name(a.reasons[0]));
    xp_free(a.c);
    xp_free(b.c);
    leak_check();
}

/* ---- sleeping and keeping alive ---- */

static double cpu_ms(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
           ru.ru_stime.tv_usec / 1e3;
}

Test(xport, wait_sleeps) {
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    connect_ready(&srv, &cli);
    for (int i = 0; i < 20; i++) { /* let wire-up settle */
        xp_progress(srv.c);
        xp_progress(cli.c);
    }
    double c0 = cpu_ms();
    uint64_t t0 = afd_now_ns(), end = t0 + 200000000u;
    int events = 0;
    while (afd_now_ns() < end) {
        int n = xp_wait(srv.c, (int)((end - afd_now_ns()) / 1000000u) + 1);
        cr_assert_geq(n, 0);
        events += n;
    }
    double cpu = cpu_ms() - c0, wall = (double)(afd_now_ns() - t0) / 1e6;
    cr_assert_geq(wall, 199.0);
    cr_assert_lt(cpu, 20.0, "a 200 ms idle wait used %.1f ms CPU (%d events)", cpu, events);
    cr_assert_eq(xp_wait(srv.c, 0), 0, "nothing to do");
    xp_free(cli.c);
    xp_free(srv.c);
}

Test(xport, heartbeats_keep_idle_peers_up) {
    xp_opts o = opts_for(XP_ERR_NONE);
    o.heartbeat_ms = 40;
    o.peer_timeout_ms = 200;
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    connect_ready(&srv, &cli);
    int never = 0;
    cr_assert_not(PUMP_UNTIL(&srv, &cli, never, 1, 900)); /* 900 ms idle, both progressing */
    cr_assert_eq(srv.downs + cli.downs, 0, "down: %s %s", srv.why[0], cli.why[0]);
    xp_stats s, c;
    xp_get_stats(srv.c, &s);
    xp_get_stats(cli.c, &c);
    cr_assert_geq(s.hb_out, 10, "server heartbeats %llu", (unsigned long long)s.hb_out);
    cr_assert_geq(c.hb_out, 10, "client heartbeats %llu", (unsigned long long)c.hb_out);
    cr_assert_eq(srv.frames, 1, "heartbeats reach on_frame: %d frames", srv.frames);
    xp_free(cli.c);
    xp_free(srv.c);
}

/* ---- connecting to nothing ---- */

static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void connect_nowhere(xp_errmode mode) {
    xp_opts o = opts_for(mode);
    o.peer_timeout_ms = 400;
    side cli;
    side_init(&cli, "client", &o);
    xp_peer *p = client_connect(&cli, dead_port());
    wire_hdr h = a2f_hdr(1);
    slot s = {0};
    cr_assert_eq(xp_send(p, &h, "12345678", 8, slot_done, &s), 0);
    cr_assert(PUMP_UNTIL(&cli, NULL, cli.downs, 1, 3000), "refused connection not reported");
    cr_assert(cli.reasons[0] == XP_DOWN_ERROR || cli.reasons[0] == XP_DOWN_TIMEOUT, "%s: %s",
              xp_down_name(cli.reasons[0]), cli.why[0]);
    cr_assert_eq(s.calls, 1, "send callback %d", s.calls);
    cr_assert_lt(s.status, 0, "send status %d", s.status);
    afd_err err = {0};
    xp_peer *q;
    cr_assert_lt(xp_connect(cli.c, "no.such.host.invalid", 1, &q, &err), 0);
    cr_assert(strstr(err.msg, "no.such.host.invalid"), "%s", err.msg);
    cr_assert_lt(xp_connect(cli.c, "127.0.0.1", 70000, &q, &err), 0);
    xp_free(cli.c);
}

Test(xport, connect_refused_err_none) {
    connect_nowhere(XP_ERR_NONE);
}
Test(xport, connect_refused_err_peer) {
    connect_nowhere(XP_ERR_PEER);
}

Test(xport, bad_options) {
    xp_opts o = opts_for(XP_ERR_NONE);
    xp_ctx *c = NULL;
    afd_err err = {0};
    o.max_payload = (size_t)UINT32_MAX + 1;
    cr_assert_lt(xp_init(&c, &o, &HANDLERS, NULL, &err), 0);
    cr_assert(strstr(err.msg, "max_payload"), "%s", err.msg);
    cr_assert_null(c);
    o = opts_for(XP_ERR_NONE);
    o.err_mode = (xp_errmode)7;
    cr_assert_lt(xp_init(&c, &o, &HANDLERS, NULL, &err), 0);
    cr_assert(strstr(err.msg, "err_mode"), "%s", err.msg);
    o = opts_for(XP_ERR_NONE);
    o.ucx_tls = "no_such_transport";
    cr_assert_lt(xp_init(&c, &o, &HANDLERS, NULL, &err), 0);
    cr_assert(strstr(err.msg, "no_such_transport"), "%s", err.msg);
    xp_handlers h = HANDLERS;
    h.on_frame = NULL;
    o = opts_for(XP_ERR_NONE);
    cr_assert_lt(xp_init(&c, &o, &h, NULL, &err), 0);
    xp_free(NULL);
}

/* ---- hostile peers: a raw UCP client sending malformed frames ---- */

typedef struct raw {
    ucp_context_h ctx;
    ucp_worker_h w;
    ucp_ep_h ep;
    int got; /* AMs received (the server's GOODBYE) */
} raw;

static ucs_status_t raw_am(void *arg, const void *h, size_t hl, void *d, size_t l,
                           const ucp_am_recv_param_t *p) {
    (void)h, (void)hl, (void)d, (void)l, (void)p;
    ((raw *)arg)->got++;
    return UCS_OK;
}

static void raw_open(raw *r, int port) {
    memset(r, 0, sizeof *r);
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
    cr_assert_eq(ucp_init(&pp, NULL, &r->ctx), UCS_OK);
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    cr_assert_eq(ucp_worker_create(r->ctx, &wp, &r->w), UCS_OK);
    ucp_am_handler_param_t hp = {.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                                               UCP_AM_HANDLER_PARAM_FIELD_CB |
                                               UCP_AM_HANDLER_PARAM_FIELD_ARG,
                                 .id = XP_AM_ID,
                                 .cb = raw_am,
                                 .arg = r};
    cr_assert_eq(ucp_worker_set_am_recv_handler(r->w, &hp), UCS_OK);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR,
                          .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
                          .sockaddr = {(struct sockaddr *)&sa, sizeof sa}};
    cr_assert_eq(ucp_ep_create(r->w, &ep, &r->ep), UCS_OK);
}

static void raw_close(raw *r) {
    ucp_request_param_t cp = {.op_attr_mask = 0};
    void *req = ucp_ep_close_nbx(r->ep, &cp);
    uint64_t end = afd_now_ns() + 300000000u;
    while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS &&
           afd_now_ns() < end)
        ucp_worker_progress(r->w);
    if (UCS_PTR_IS_PTR(req)) ucp_request_free(req);
    ucp_worker_destroy(r->w);
    ucp_cleanup(r->ctx);
}

/* Sends header bytes + payload as one AM (with the reply endpoint, as xport does), driving
 * the server and the raw worker until the send completes. */
static void raw_send(raw *r, side *srv, const void *hdr, size_t hlen, const void *pl, size_t len) {
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_REPLY};
    void *req = ucp_am_send_nbx(r->ep, XP_AM_ID, hdr, hlen, pl, len, &rp);
    cr_assert(!UCS_PTR_IS_ERR(req), "raw send: %s", ucs_status_string(UCS_PTR_STATUS(req)));
    uint64_t end = afd_now_ns() + 5000000000ull;
    while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS &&
           afd_now_ns() < end) {
        ucp_worker_progress(r->w);
        xp_progress(srv->c);
    }
    if (UCS_PTR_IS_PTR(req)) ucp_request_free(req);
}

static bool raw_frames(void *arg) {
    void **a = arg;
    raw *r = a[0];
    side *s = a[1];
    ucp_worker_progress(r->w);
    return s->downs >= 1;
}

typedef enum { BAD_MAGIC, BAD_LEN, BAD_LIMIT, BAD_HDR_SIZE, BAD_TYPE } bad_kind;

/* A second peer sends one malformed frame: it alone is dropped (BAD_FRAME, told why by a
 * GOODBYE), the first keeps working. */
static void bad_frame(bad_kind kind, const char *why_has) {
    xp_opts o = opts_for(XP_ERR_NONE);
    o.max_payload = 1u << 20;
    side srv, good;
    side_init(&srv, "server", &o);
    side_init(&good, "good", &o);
    srv.echo = true;
    xp_peer *gp = connect_ready(&srv, &good);
    raw r;
    raw_open(&r, srv.port);
    size_t len = kind == BAD_LIMIT ? (1u << 20) + 64 : 64;
    uint8_t *pl = calloc(1, len);
    wire_hdr h = a2f_hdr(5);
    h.payload_len = kind == BAD_LEN ? 100 : (uint32_t)len;
    if (kind == BAD_TYPE) h.type = 99;
    uint8_t hb[WIRE_HDR_SIZE];
    wire_hdr_encode(hb, &h);
    if (kind == BAD_MAGIC) hb[0] ^= 0xff;
    raw_send(&r, &srv, hb, kind == BAD_HDR_SIZE ? 16 : sizeof hb, pl, len);
    cr_assert(pump(&srv, &good, raw_frames, (void *[]){&r, &srv}, 5000), "bad peer not dropped");
    cr_assert_eq(srv.reasons[0], XP_DOWN_BAD_FRAME, "reason %s", xp_down_name(srv.reasons[0]));
    cr_assert(strstr(srv.why[0], why_has), "why \"%s\" lacks \"%s\"", srv.why[0], why_has);
    cr_assert_eq(srv.frames, 1, "a bad frame reached on_frame (%d frames)", srv.frames);
    xp_stats st;
    xp_get_stats(srv.c, &st);
    cr_assert_eq(st.bad_frames, 1, "bad_frames %llu", (unsigned long long)st.bad_frames);
    /* the good peer is unaffected */
    static const uint64_t v = 0x1122334455667788ull;
    wire_hdr g = a2f_hdr(6);
    cr_assert_eq(xp_send(gp, &g, &v, sizeof v, NULL, NULL), 0);
    cr_assert(PUMP_UNTIL(&srv, &good, good.frames, 2, 5000), "good peer starved");
    cr_assert_eq(good.log[1].sum, fnv((const uint8_t *)&v, sizeof v));
    cr_assert_eq(srv.downs, 1);
    cr_assert_eq(good.downs, 0);
    /* the bad peer was told */
    for (uint64_t end = afd_now_ns() + 1000000000u; r.got < 1 && afd_now_ns() < end;) {
        ucp_worker_progress(r.w);
        xp_progress(srv.c);
    }
    cr_assert_eq(r.got, 1, "GOODBYE to the bad peer: %d frames", r.got);
    raw_close(&r);
    xp_free(good.c);
    xp_free(srv.c);
    free(pl);
    leak_check();
}

Test(xport, bad_magic_drops_only_that_peer) {
    bad_frame(BAD_MAGIC, "bad magic");
}
Test(xport, payload_len_mismatch_drops_only_that_peer) {
    bad_frame(BAD_LEN, "payload_len 100");
}
Test(xport, over_max_payload_drops_only_that_peer) {
    bad_frame(BAD_LIMIT, "over limit");
}
Test(xport, short_header_drops_only_that_peer) {
    bad_frame(BAD_HDR_SIZE, "AM header of 16");
}
Test(xport, unknown_type_drops_only_that_peer) {
    bad_frame(BAD_TYPE, "unknown frame type");
}

/* ---- libevent glue ---- */

typedef struct ev_check {
    struct event_base *base;
    side *cli;
    int want;
} ev_check;

static void ev_check_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    ev_check *k = arg;
    if (k->cli->frames >= k->want) event_base_loopbreak(k->base);
}

Test(xport, libevent_attach) {
    enum { N = 30 };
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    srv.echo = true;
    struct event_base *base = event_base_new();
    cr_assert_eq(xp_attach(srv.c, base, 500), 0);
    cr_assert_eq(xp_attach(cli.c, base, 500), 0);
    cr_assert_eq(xp_attach(cli.c, base, 500), AFD_E_STATE);
    xp_peer *p = client_connect(&cli, server_listen(&srv));
    uint8_t *buf = xp_mem_alloc(cli.c, 1u << 20);
    fill(buf, 1u << 20, 3);
    for (int i = 0; i < N; i++) {
        wire_hdr h = a2f_hdr((uint64_t)i);
        cr_assert_eq(xp_send(p, &h, buf, (size_t)(i % 3 ? 4096 : 1u << 20), NULL, NULL), 0);
    }
    ev_check k = {base, &cli, N};
    struct event *chk = event_new(base, -1, EV_PERSIST, ev_check_cb, &k);
    struct timeval tick = {0, 2000}, limit = {10, 0};
    event_add(chk, &tick);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    cr_assert_eq(cli.frames, N, "echoes %d of %d", cli.frames, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(cli.log[i].sum, fnv(buf, (size_t)(i % 3 ? 4096 : 1u << 20)), "frame %d", i);
    /* idle: the loop sleeps on the fds */
    event_del(chk);
    double c0 = cpu_ms();
    struct timeval idle = {0, 200000};
    event_base_loopexit(base, &idle);
    event_base_dispatch(base);
    double cpu = cpu_ms() - c0;
    cr_assert_lt(cpu, 25.0, "200 ms idle in libevent used %.1f ms CPU", cpu);
    event_free(chk);
    xp_mem_free(cli.c, buf); /* every send ended (echoed) */
    xp_free(cli.c);
    xp_free(srv.c);
    event_base_free(base);
    leak_check();
}

/* ---- per-peer limits and handler refusals ---- */

static int accept_handshake_only(void *ud, xp_peer *p) {
    wire_limits lim;
    wire_limits_handshake(&lim);
    xp_peer_set_limits(p, &lim);
    return on_accept(ud, p);
}

static int refuse_step_7(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    on_frame(ud, p, h, pl, len);
    return h->step == 7 ? AFD_E_FORMAT : 0;
}

Test(xport, peer_limits_and_handler_refusal) {
    xp_opts o = opts_for(XP_ERR_NONE);
    side srv, a, b;
    side_init(&srv, "server", &o);
    side_init(&a, "a", &o);
    side_init(&b, "b", &o);
    xp_handlers h = {accept_handshake_only, refuse_step_7, on_down};
    xp_free(srv.c);
    afd_err err = {0};
    cr_assert_eq(xp_init(&srv.c, &o, &h, &srv, &err), 0, "%s", err.msg);
    int port = server_listen(&srv);
    xp_peer *pa = client_connect(&a, port), *pb = client_connect(&b, port);
    /* a: an ERROR frame passes the handshake limits, A2F does not */
    wire_hdr err_frame = {.type = WIRE_T_ERROR, .layer = WIRE_LAYER_NONE};
    uint8_t msg[WIRE_MSG_MAX_LEN];
    size_t n = 0;
    cr_assert_eq(wire_error_encode(msg, sizeof msg, -1, "test", &n), 0);
    cr_assert_eq(xp_send(pa, &err_frame, msg, n, NULL, NULL), 0);
    wire_hdr d = a2f_hdr(1);
    cr_assert_eq(xp_send(pa, &d, msg, 8, NULL, NULL), 0);
    /* b: HELLO-sized frames pass until the handler refuses step 7 */
    for (uint64_t s = 5; s < 10; s++) {
        wire_hdr hh = {.type = WIRE_T_HELLO, .layer = WIRE_LAYER_NONE, .step = s};
        cr_assert_eq(xp_send(pb, &hh, msg, WIRE_HELLO_MIN + 4, NULL, NULL), 0);
    }
    cr_assert(PUMP3_UNTIL(&srv, &a, &b, srv.downs, 2, 5000), "downs %d", srv.downs);
    cr_assert(PUMP3_UNTIL(&srv, &a, &b, a.downs, 1, 5000));
    cr_assert(PUMP3_UNTIL(&srv, &a, &b, b.downs, 1, 5000));
    int bad = -1, refused = -1;
    for (int i = 0; i < 2; i++) {
        if (srv.reasons[i] == XP_DOWN_BAD_FRAME) bad = i;
        if (srv.reasons[i] == XP_DOWN_REFUSED) refused = i;
    }
    cr_assert(bad >= 0 && refused >= 0, "reasons %s, %s", xp_down_name(srv.reasons[0]),
              xp_down_name(srv.reasons[1]));
    cr_assert(strstr(srv.why[bad], "unknown frame type or type not accepted"), "%s", srv.why[bad]);
    cr_assert(strstr(srv.why[refused], "HELLO frame refused"), "%s", srv.why[refused]);
    /* frames seen: a's ERROR; b's steps 5, 6, 7 (7 refused after on_frame), none after */
    cr_assert_eq(srv.frames, 4, "frames %d", srv.frames);
    cr_assert_eq(a.reasons[0], XP_DOWN_GOODBYE, "a: %s", xp_down_name(a.reasons[0]));
    cr_assert_eq(b.reasons[0], XP_DOWN_GOODBYE, "b: %s", xp_down_name(b.reasons[0]));
    xp_free(a.c);
    xp_free(b.c);
    xp_free(srv.c);
    leak_check();
}

/* ---- a last frame then close: the frame and the GOODBYE arrive before the disconnect ---- */

static int accept_say_and_close(void *ud, xp_peer *p) {
    static const uint64_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    on_accept(ud, p);
    wire_hdr h = {.type = WIRE_T_ERROR, .layer = WIRE_LAYER_NONE, .step = 77};
    uint8_t msg[64];
    size_t n = 0;
    wire_error_encode(msg, sizeof msg, -1, "go away", &n);
    (void)v;
    cr_assert_eq(xp_send(p, &h, msg, n, NULL, NULL), 0);
    xp_peer_close(p, "refused after a last word");
    return 0;
}

static void last_word(xp_errmode mode) {
    xp_opts o = opts_for(mode);
    xp_handlers h = {accept_say_and_close, on_frame, on_down};
    for (int round = 0; round < 15; round++) {
        side srv, cli;
        memset(&srv, 0, sizeof srv);
        srv.label = "server";
        afd_err err = {0};
        cr_assert_eq(xp_init(&srv.c, &o, &h, &srv, &err), 0, "%s", err.msg);
        side_init(&cli, "client", &o);
        client_connect(&cli, server_listen(&srv));
        cr_assert(PUMP_UNTIL(&srv, &cli, cli.downs, 1, 5000), "round %d: client not told", round);
        cr_assert_eq(cli.frames, 1, "round %d: the last frame was lost (%s: %s)", round,
                     xp_down_name(cli.reasons[0]), cli.why[0]);
        cr_assert_eq(cli.log[0].step, 77);
        cr_assert_eq(cli.reasons[0], XP_DOWN_GOODBYE, "round %d: %s: %s", round,
                     xp_down_name(cli.reasons[0]), cli.why[0]);
        cr_assert(strstr(cli.why[0], "last word"), "%s", cli.why[0]);
        cr_assert(PUMP_UNTIL(&srv, &cli, srv.downs, 1, 5000));
        xp_free(cli.c);
        xp_free(srv.c);
    }
}

Test(xport, last_frame_before_close_err_none) {
    last_word(XP_ERR_NONE);
}
Test(xport, last_frame_before_close_err_peer) {
    last_word(XP_ERR_PEER);
}

/* ---- a handler that waits for its own sends (back-pressure through a nested progress) ---- */

typedef struct bp {
    side s;
    uint8_t *arena; /* one registered reply buffer */
    int busy, waited;
} bp;

static void bp_sent(void *arg, int status) {
    bp *b = arg;
    cr_assert_eq(status, 0);
    b->busy = 0;
}

static int bp_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    bp *b = ud;
    on_frame(&b->s, p, h, pl, len);
    uint64_t end = afd_now_ns() + 3000000000ull;
    while (b->busy && afd_now_ns() < end) { /* nested: runs send callbacks, delivers nothing */
        int before = b->s.frames;
        xp_progress(b->s.c);
        cr_assert_eq(b->s.frames, before, "a frame was delivered inside on_frame");
        b->waited++;
    }
    cr_assert_eq(b->busy, 0, "the reply buffer never came back");
    memcpy(b->arena, pl, len);
    wire_hdr r = *h;
    r.type = WIRE_T_F2A;
    b->busy = 1;
    cr_assert_eq(xp_send(p, &r, b->arena, len, bp_sent, b), 0);
    return 0;
}

static int bp_accept(void *ud, xp_peer *p) {
    return on_accept(&((bp *)ud)->s, p);
}
static void bp_down(void *ud, xp_peer *p, int reason, const char *why) {
    on_down(&((bp *)ud)->s, p, reason, why);
}

/* The child: N frames of 1 MiB at once, then every echo checked; exit 0 when all came back
 * intact. */
static void child_sender(int rfd, int n) {
    int port = 0;
    if (read(rfd, &port, sizeof port) != sizeof port) _exit(2);
    xp_opts o = opts_for(XP_ERR_NONE);
    side cli;
    memset(&cli, 0, sizeof cli);
    if (xp_init(&cli.c, &o, &HANDLERS, &cli, NULL)) _exit(3);
    xp_peer *p;
    if (xp_connect(cli.c, "127.0.0.1", port, &p, NULL)) _exit(4);
    uint8_t *buf = malloc((size_t)n << 20);
    for (int i = 0; i < n; i++) {
        fill(buf + ((size_t)i << 20), 1u << 20, (uint64_t)i);
        wire_hdr h = a2f_hdr((uint64_t)i);
        if (xp_send(p, &h, buf + ((size_t)i << 20), 1u << 20, NULL, NULL)) _exit(5);
    }
    uint64_t end = afd_now_ns() + 10000000000ull;
    while (cli.frames < n && afd_now_ns() < end)
        xp_wait(cli.c, 10);
    if (cli.frames < n) _exit(6);
    for (int i = 0; i < n; i++)
        if (cli.log[i].sum != fnv(buf + ((size_t)i << 20), 1u << 20)) _exit(7);
    xp_free(cli.c);
    _exit(0);
}

Test(xport, handler_waits_for_its_sends) {
    enum { N = 12 };
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[1]);
        child_sender(pfd[0], N);
    }
    close(pfd[0]);
    xp_opts o = opts_for(XP_ERR_NONE);
    bp b;
    memset(&b, 0, sizeof b);
    b.s.label = "server";
    xp_handlers h = {bp_accept, bp_frame, bp_down};
    afd_err err = {0};
    cr_assert_eq(xp_init(&b.s.c, &o, &h, &b, &err), 0, "%s", err.msg);
    b.arena = xp_mem_alloc(b.s.c, 1u << 20);
    int port = server_listen(&b.s);
    cr_assert_eq(write(pfd[1], &port, sizeof port), (ssize_t)sizeof port);
    close(pfd[1]);
    bool all = PUMP_UNTIL(&b.s, NULL, b.s.frames, N, 10000);
    int st = 0;
    if (!all) kill(pid, SIGKILL);
    /* keep serving until the child has its last echo and exits */
    for (uint64_t end = afd_now_ns() + 10000000000ull; waitpid(pid, &st, WNOHANG) == 0;) {
        if (afd_now_ns() > end) kill(pid, SIGKILL);
        xp_wait(b.s.c, 5);
    }
    cr_assert(all, "frames %d of %d", b.s.frames, N);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d", st);
    cr_assert_gt(b.waited, 0, "the handler never had to wait");
    xp_free(b.s.c); /* also unmaps the arena */
    leak_check();
}

Test(xport, both_ends_close_at_once) {
    xp_opts o = opts_for(XP_ERR_NONE);
    o.close_timeout_ms = 3000; /* the test fails if either end waits for it */
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    xp_peer *p = connect_ready(&srv, &cli);
    cr_assert_eq(srv.accepts, 1);
    uint64_t t0 = afd_now_ns();
    xp_peer_close(p, "client leaves");
    xp_peer_close(srv.accepted[0], "server leaves");
    cr_assert(PUMP_UNTIL(&srv, &cli, cli.downs, 1, 5000));
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.downs, 1, 5000));
    double ms = (double)(afd_now_ns() - t0) / 1e6;
    cr_assert_eq(cli.reasons[0], XP_DOWN_CLOSED, "%s", xp_down_name(cli.reasons[0]));
    cr_assert_eq(srv.reasons[0], XP_DOWN_CLOSED, "%s", xp_down_name(srv.reasons[0]));
    cr_assert_lt(ms, 1000.0, "closing took %.0f ms", ms);
    xp_free(cli.c);
    xp_free(srv.c);
}

/* ---- RMA ---- */

typedef struct put_state {
    int puts, flushes, fail;
    int flush_seen_puts; /* puts completed when the flush callback ran */
} put_state;

static void put_done(void *arg, int status) {
    put_state *ps = arg;
    ps->puts++;
    ps->fail += status != 0;
}
static void flush_done(void *arg, int status) {
    put_state *ps = arg;
    ps->flushes++;
    ps->fail += status != 0;
    ps->flush_seen_puts = ps->puts;
}

/* Scattered blocks written with xp_put land at the right offsets, are complete when the
 * flush callback runs, and a frame sent from there arrives after the data. */
static void rma_roundtrip(xp_errmode mode) {
    enum { BLK = 64 << 10, NBLK = 48, NPUT = 12 };
    xp_opts o = opts_for(mode);
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    uint8_t *pool = aligned_alloc(4096, (size_t)BLK * NBLK);
    memset(pool, 0, (size_t)BLK * NBLK);
    xp_mr *mr;
    afd_err err = {0};
    cr_assert_eq(xp_mr_register(srv.c, pool, (size_t)BLK * NBLK, &mr, &err), 0, "%s", err.msg);
    size_t klen;
    const void *key = xp_mr_rkey(mr, &klen);
    cr_assert_gt(klen, 0);
    xp_peer *p = connect_ready(&srv, &cli);
    xp_rkey *rk;
    cr_assert_eq(xp_rkey_unpack(p, key, klen, &rk), 0);
    /* the source is registered on the client too (the prefill attnd's own KV pool) */
    uint8_t *src = aligned_alloc(4096, (size_t)BLK * NPUT);
    xp_mr *smr;
    cr_assert_eq(xp_mr_register(cli.c, src, (size_t)BLK * NPUT, &smr, &err), 0, "%s", err.msg);
    fill(src, (size_t)BLK * NPUT, 7);
    static const int dst[NPUT] = {3, 40, 0, 17, 47, 9, 22, 5, 31, 12, 46, 28};
    put_state ps = {0};
    for (int i = 0; i < NPUT; i++)
        cr_assert_eq(xp_put(p, src + (size_t)i * BLK, BLK,
                            (uint64_t)(uintptr_t)(pool + (size_t)dst[i] * BLK), rk, put_done, &ps),
                     0);
    cr_assert_eq(xp_flush(p, flush_done, &ps), 0);
    cr_assert(PUMP_UNTIL(&srv, &cli, ps.flushes, 1, 10000), "no flush completion");
    cr_assert_eq(ps.fail, 0, "%d puts/flushes failed", ps.fail);
    cr_assert_eq(ps.flush_seen_puts, NPUT, "flush before its puts: %d of %d", ps.flush_seen_puts,
                 NPUT);
    int f0 = srv.frames;
    wire_hdr h = a2f_hdr(77);
    static const uint64_t ready = 1;
    cr_assert_eq(xp_send(p, &h, &ready, sizeof ready, NULL, NULL), 0);
    cr_assert(PUMP_UNTIL(&srv, &cli, srv.frames, f0 + 1, 5000));
    for (int i = 0; i < NPUT; i++)
        cr_assert_eq(memcmp(pool + (size_t)dst[i] * BLK, src + (size_t)i * BLK, BLK), 0,
                     "block %d (dst %d) differs", i, dst[i]);
    for (int b = 0; b < NBLK; b++) {
        bool written = false;
        for (int i = 0; i < NPUT; i++)
            written |= dst[i] == b;
        if (!written)
            for (size_t k = 0; k < BLK; k++)
                cr_assert_eq(pool[(size_t)b * BLK + k], 0, "block %d touched", b);
    }
    /* the key dies with the peer: no put after close */
    xp_peer_close(p, "done");
    cr_assert_neq(xp_put(p, src, 8, (uint64_t)(uintptr_t)pool, rk, NULL, NULL), 0);
    cr_assert(PUMP_UNTIL(&srv, &cli, cli.downs, 1, 5000));
    xp_mr_free(cli.c, smr);
    xp_free(cli.c);
    xp_mr_free(srv.c, mr);
    xp_free(srv.c);
    free(src);
    free(pool);
    leak_check();
}

Test(xport, rma_put_flush_peer_mode) { rma_roundtrip(XP_ERR_PEER); }
Test(xport, rma_put_flush_none_mode) { rma_roundtrip(XP_ERR_NONE); }

/* Puts in flight when the peer dies complete with an error, never silently. */
Test(xport, rma_put_to_a_dead_peer_fails) {
    xp_opts o = opts_for(XP_ERR_PEER);
    o.peer_timeout_ms = 300, o.heartbeat_ms = 100;
    side srv, cli;
    side_init(&srv, "server", &o);
    side_init(&cli, "client", &o);
    size_t len = 1u << 20;
    uint8_t *pool = aligned_alloc(4096, len);
    xp_mr *mr;
    afd_err err = {0};
    cr_assert_eq(xp_mr_register(srv.c, pool, len, &mr, &err), 0, "%s", err.msg);
    size_t klen;
    const void *key = xp_mr_rkey(mr, &klen);
    xp_peer *p = connect_ready(&srv, &cli);
    xp_rkey *rk;
    cr_assert_eq(xp_rkey_unpack(p, key, klen, &rk), 0);
    xp_mr_free(srv.c, mr);
    xp_free(srv.c); /* the server is gone */
    srv.c = NULL;
    uint8_t *src = calloc(1, len);
    put_state ps = {0};
    int issued = 0;
    for (int i = 0; i < 200 && cli.downs == 0; i++) {
        if (xp_put(p, src, len, (uint64_t)(uintptr_t)pool, rk, put_done, &ps) == 0)
            issued++;
        else
            break;
        xp_progress(cli.c);
        usleep(2000);
    }
    cr_assert(PUMP_UNTIL(&cli, NULL, cli.downs, 1, 5000), "peer never went down");
    cr_assert(PUMP_UNTIL(&cli, NULL, ps.puts, issued, 5000), "%d of %d put callbacks", ps.puts,
              issued);
    xp_free(cli.c);
    free(src);
    free(pool);
    leak_check();
}
