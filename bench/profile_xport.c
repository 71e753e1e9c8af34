/* profile_xport.c: round trips through afd's transport (proto/xport.h), as the daemons use it.
 *
 * A forked echo process listens on 127.0.0.1 (ephemeral port, told back through a pipe); this
 * process connects and sends A2F frames of `bytes` payload from one registered buffer
 * (xp_mem_alloc, the daemons' zero-copy path); the echo answers each with an F2A frame of
 * ECHO_BYTES. Both ends busy-poll xp_progress. One connection serves every size. The echo
 * exits when the connection goes down, or after IDLE_LIMIT_S without a frame; the parent
 * closes the peer, waits for the echo to exit and kills it (by pid) if it does not.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/profile_impl.h"
#include "common/base/clock.h"
#include "proto/wire.h"
#include "proto/xport.h"

#define ECHO_BYTES 8
#define IDLE_LIMIT_S 30    /* the echo gives up after this long without a frame */
#define REPLY_LIMIT_S 10   /* a round trip slower than this is an error */

struct prof_xp {
    pid_t pid;
    xp_ctx *ctx;
    xp_peer *peer;
    uint8_t *tx;
    size_t cap;
    uint64_t replies;
    bool down;
    char why[160];
};

static wire_hdr frame_hdr(int type, uint32_t n_tok) {
    return (wire_hdr){.type = (uint8_t)type, .sender = 1, .layer = 0, .n_tok = n_tok};
}

static xp_opts link_opts(size_t cap) {
    xp_opts o;
    xp_opts_default(&o);
    o.max_payload = cap + 64;
    o.peer_timeout_ms = 0; /* a long transfer on a busy machine is not a dead peer */
    return o;
}

/* ---- the echo process ---- */

typedef struct echo {
    uint8_t *resp;
    bool done;
    uint64_t last_ns;
} echo;

static int echo_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *payload,
                      size_t len) {
    echo *e = ud;
    (void)h, (void)payload, (void)len;
    e->last_ns = afd_now_ns();
    wire_hdr r = frame_hdr(WIRE_T_F2A, 1);
    return xp_send(p, &r, e->resp, ECHO_BYTES, NULL, NULL);
}

static void echo_down(void *ud, xp_peer *p, int reason, const char *why) {
    (void)p, (void)reason, (void)why;
    ((echo *)ud)->done = true;
}

static void echo_main(int fd, size_t cap) {
    echo e = {.last_ns = afd_now_ns()};
    xp_handlers h = {.on_frame = echo_frame, .on_down = echo_down};
    xp_opts o = link_opts(cap);
    xp_ctx *c = NULL;
    int port = 0;
    afd_err err = {0};
    if (xp_init(&c, &o, &h, &e, &err) || xp_listen(c, "127.0.0.1", 0, &port, &err) ||
        !(e.resp = xp_mem_alloc(c, ECHO_BYTES)))
        port = -1;
    if (write(fd, &port, sizeof port) != sizeof port || port < 0)
        _exit(2);
    close(fd);
    while (!e.done && afd_now_ns() - e.last_ns < (uint64_t)IDLE_LIMIT_S * 1000000000u)
        xp_progress(c);
    xp_mem_free(c, e.resp);
    xp_free(c);
    _exit(0);
}

/* ---- this side ---- */

static int client_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *payload,
                        size_t len) {
    (void)p, (void)h, (void)payload, (void)len;
    ((prof_xp *)ud)->replies++;
    return 0;
}

static void client_down(void *ud, xp_peer *p, int reason, const char *why) {
    prof_xp *x = ud;
    (void)p;
    x->down = true;
    snprintf(x->why, sizeof x->why, "%s: %s", xp_down_name(reason), why ? why : "");
}

/* The echo's port from the pipe, waiting at most 10 s. */
static int read_port(int fd, int *port) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, 10000) != 1 || read(fd, port, sizeof *port) != sizeof *port || *port <= 0)
        return -EIO;
    return 0;
}

static int client_open(prof_xp *x) {
    xp_handlers h = {.on_frame = client_frame, .on_down = client_down};
    xp_opts o = link_opts(x->cap);
    afd_err err = {0};
    int port = 0, pfd[2];
    if (pipe(pfd))
        return -errno;
    if ((x->pid = fork()) < 0)
        return -errno;
    if (x->pid == 0) {
        close(pfd[0]);
        echo_main(pfd[1], x->cap);
    }
    close(pfd[1]);
    int rc = read_port(pfd[0], &port);
    close(pfd[0]);
    if (!rc && (xp_init(&x->ctx, &o, &h, x, &err) ||
                xp_connect(x->ctx, "127.0.0.1", port, &x->peer, &err) ||
                !(x->tx = xp_mem_alloc(x->ctx, x->cap))))
        rc = -EIO;
    if (rc)
        fprintf(stderr, "afd-bench profile: link: xport echo on 127.0.0.1: %s\n",
                err.msg[0] ? err.msg : "the echo process did not start");
    return rc;
}

int prof_xp_open(size_t max_bytes, prof_xp **out) {
    prof_xp *x = calloc(1, sizeof *x);
    if (!x)
        return -ENOMEM;
    x->cap = max_bytes > ECHO_BYTES ? max_bytes : ECHO_BYTES;
    *out = x;
    return client_open(x);
}

/* One frame out and its reply back. */
static int round_trip(prof_xp *x, size_t bytes) {
    uint64_t want = x->replies + 1, t0 = afd_now_ns();
    wire_hdr h = frame_hdr(WIRE_T_A2F, 1);
    int rc = xp_send(x->peer, &h, x->tx, bytes, NULL, NULL);
    while (!rc && x->replies < want && !x->down) {
        xp_progress(x->ctx);
        if (afd_now_ns() - t0 > (uint64_t)REPLY_LIMIT_S * 1000000000u)
            rc = -ETIMEDOUT;
    }
    return rc ? rc : x->down ? -ECONNRESET : 0;
}

int prof_xp_round_trips(prof_xp *x, size_t bytes, int warmup, int iters, double *us) {
    if (bytes > x->cap)
        return -EINVAL;
    for (int i = 0; i < warmup + iters; i++) {
        uint64_t t0 = afd_now_ns();
        int rc = round_trip(x, bytes);
        if (rc) {
            fprintf(stderr, "afd-bench profile: link: xport round trip of %zu bytes: %s%s%s\n",
                    bytes, afd_strerror(rc), x->down ? ", peer down: " : "",
                    x->down ? x->why : "");
            return rc;
        }
        if (i >= warmup)
            us[i - warmup] = (double)(afd_now_ns() - t0) / 1e3;
    }
    return 0;
}

/* Closes the connection in order: GOODBYE, then progress until the peer is down and the
 * echo (which frees its side on the GOODBYE) has exited, at most 3 s; then kills it. */
static void shut_down(prof_xp *x) {
    int st;
    if (x->peer && !x->down)
        xp_peer_close(x->peer, "profile done");
    if (!x->peer)
        x->down = true;
    uint64_t t0 = afd_now_ns();
    bool exited = x->pid <= 0;
    while (afd_now_ns() - t0 < 3000000000u && !(exited && x->down)) {
        if (x->ctx)
            xp_progress(x->ctx);
        exited = exited || waitpid(x->pid, &st, WNOHANG) == x->pid;
        if (!x->ctx)
            usleep(1000);
    }
    if (!exited) {
        kill(x->pid, SIGKILL);
        waitpid(x->pid, &st, 0);
    }
}

void prof_xp_close(prof_xp *x) {
    if (!x)
        return;
    shut_down(x);
    if (x->ctx)
        xp_mem_free(x->ctx, x->tx);
    xp_free(x->ctx);
    free(x);
}
