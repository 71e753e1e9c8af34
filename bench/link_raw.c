/* link_raw.c: the yardstick of `afd-bench link`: a bare UCP active-message ping-pong of the same
 * byte counts (req out, resp back) between two processes on loopback, with nothing of afd in
 * the path (no framing, no handshake, no FFN). Both sides busy-poll; payloads above UCX's
 * eager threshold arrive as rendezvous and are received with ucp_am_recv_data_nbx into buffers
 * allocated once, as a careful hand-written UCX program would do.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/base/clock.h"

#define AM_ID 11

typedef struct rl {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_listener_h listener;
    ucp_ep_h ep;
    bool err_peer;
    void *rx;      /* receive buffer */
    size_t rx_cap;
    int received;  /* complete messages */
    int rndv_pending;
} rl;

static void rndv_done(void *req, ucs_status_t st, size_t len, void *arg) {
    rl *r = arg;
    (void)st, (void)len;
    r->rndv_pending--;
    r->received++;
    ucp_request_free(req);
}

static ucs_status_t am_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                          const ucp_am_recv_param_t *p) {
    rl *r = arg;
    (void)hdr, (void)hlen;
    if (len > r->rx_cap)
        return UCS_OK; /* cannot happen: both sides agree on sizes */
    if (!(p->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) {
        memcpy(r->rx, data, len); /* eager data is only valid inside the callback */
        r->received++;
        return UCS_OK;
    }
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.recv_am = rndv_done, .user_data = r};
    void *req = ucp_am_recv_data_nbx(r->worker, data, r->rx, len, &rp);
    if (UCS_PTR_IS_PTR(req))
        r->rndv_pending++;
    else
        r->received++;
    return UCS_OK;
}

static int rl_init(rl *r, size_t cap, bool err_peer) {
    memset(r, 0, sizeof *r);
    r->err_peer = err_peer;
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
    if (ucp_init(&pp, NULL, &r->ctx) != UCS_OK)
        return -EIO;
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    if (ucp_worker_create(r->ctx, &wp, &r->worker) != UCS_OK)
        return -EIO;
    ucp_am_handler_param_t hp = {.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                                               UCP_AM_HANDLER_PARAM_FIELD_CB |
                                               UCP_AM_HANDLER_PARAM_FIELD_ARG,
                                 .id = AM_ID, .cb = am_cb, .arg = r};
    if (ucp_worker_set_am_recv_handler(r->worker, &hp) != UCS_OK)
        return -EIO;
    r->rx_cap = cap;
    r->rx = aligned_alloc(64, (cap + 63) & ~(size_t)63);
    return r->rx ? 0 : -ENOMEM;
}

static void rl_free(rl *r) {
    if (r->ep) {
        ucp_request_param_t cp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                  .flags = UCP_EP_CLOSE_FLAG_FORCE};
        void *req = ucp_ep_close_nbx(r->ep, &cp);
        while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS)
            ucp_worker_progress(r->worker);
        if (UCS_PTR_IS_PTR(req))
            ucp_request_free(req);
    }
    if (r->listener)
        ucp_listener_destroy(r->listener);
    if (r->worker)
        ucp_worker_destroy(r->worker);
    if (r->ctx)
        ucp_cleanup(r->ctx);
    free(r->rx);
}

static void ep_err(void *arg, ucp_ep_h ep, ucs_status_t st) {
    (void)arg, (void)ep, (void)st; /* the peer closing at the end of a run */
}

static ucp_err_handling_mode_t mode(const rl *r) {
    return r->err_peer ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
}

static void on_conn(ucp_conn_request_h cr, void *arg) {
    rl *r = arg;
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .conn_request = cr, .err_mode = mode(r), .err_handler = {ep_err, r}};
    if (r->ep || ucp_ep_create(r->worker, &ep, &r->ep) != UCS_OK)
        ucp_listener_reject(r->listener, cr);
}

/* Sends len bytes from buf as one AM and progresses until the send completes. */
static int rl_send(rl *r, const void *buf, size_t len) {
    ucp_request_param_t sp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_REPLY};
    void *req = ucp_am_send_nbx(r->ep, AM_ID, NULL, 0, buf, len, &sp);
    if (UCS_PTR_IS_ERR(req))
        return -EIO;
    while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS)
        ucp_worker_progress(r->worker);
    if (UCS_PTR_IS_PTR(req))
        ucp_request_free(req);
    return 0;
}

static void rl_wait(rl *r, int n) {
    while (r->received < n)
        ucp_worker_progress(r->worker);
}

/* The echo side: listens on 127.0.0.1, writes its port to fd, answers every request with
 * resp bytes until the client has sent `total` requests. */
static void serve(int fd, const raw_link_opts *o) {
    rl r;
    if (rl_init(&r, o->req_bytes, o->err_peer))
        _exit(2);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ucp_listener_params_t lp = {.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
                                              UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
                                .sockaddr = {(struct sockaddr *)&sa, sizeof sa},
                                .conn_handler = {on_conn, &r}};
    ucp_listener_attr_t la = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    if (ucp_listener_create(r.worker, &lp, &r.listener) != UCS_OK ||
        ucp_listener_query(r.listener, &la) != UCS_OK)
        _exit(3);
    int port = ntohs(((struct sockaddr_in *)&la.sockaddr)->sin_port);
    if (write(fd, &port, sizeof port) != sizeof port)
        _exit(4);
    void *resp = calloc(1, o->resp_bytes);
    int total = o->warmup + o->iters;
    for (int i = 1; i <= total; i++) {
        rl_wait(&r, i);
        while (r.rndv_pending)
            ucp_worker_progress(r.worker);
        if (rl_send(&r, resp, o->resp_bytes))
            _exit(5);
    }
    /* let the last reply drain before closing */
    for (int i = 0; i < 1000; i++)
        ucp_worker_progress(r.worker);
    free(resp);
    rl_free(&r);
    _exit(0);
}

int raw_link_pingpong(const raw_link_opts *o, double *us) {
    int pfd[2];
    if (pipe(pfd))
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(pfd[0]);
        serve(pfd[1], o);
    }
    close(pfd[1]);
    int port = 0, rc = 0;
    if (read(pfd[0], &port, sizeof port) != sizeof port)
        rc = -EIO;
    close(pfd[0]);
    rl r;
    if (!rc)
        rc = rl_init(&r, o->resp_bytes, o->err_peer);
    if (!rc) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(0x7f000001)};
        ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_FLAGS |
                                            UCP_EP_PARAM_FIELD_SOCK_ADDR |
                                            UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                            UCP_EP_PARAM_FIELD_ERR_HANDLER,
                              .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
                              .sockaddr = {(struct sockaddr *)&sa, sizeof sa},
                              .err_mode = mode(&r), .err_handler = {ep_err, &r}};
        if (ucp_ep_create(r.worker, &ep, &r.ep) != UCS_OK)
            rc = -EIO;
    }
    void *req = rc ? NULL : calloc(1, o->req_bytes);
    for (int i = 0; !rc && i < o->warmup + o->iters; i++) {
        int64_t t0 = afd_now_ns();
        rc = rl_send(&r, req, o->req_bytes);
        rl_wait(&r, i + 1);
        if (i >= o->warmup)
            us[i - o->warmup] = (double)(afd_now_ns() - t0) / 1e3;
    }
    free(req);
    if (port)
        rl_free(&r);
    int st;
    if (waitpid(pid, &st, 0) == pid && (!WIFEXITED(st) || WEXITSTATUS(st)) && !rc)
        rc = -EIO;
    return rc;
}
