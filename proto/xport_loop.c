/* xport_loop.c: the UCX transport's loop side: progress, send completions, the reaper that
 * closes and frees peers, heartbeats and timeouts, blocking waits and the libevent glue. */
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdlib.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "proto/xport_impl.h"

#define XP_SLICE_NS   200000u /* libevent: yield to the base's other events this often */
#define XP_CLOSING_MS 2       /* poll interval while peers are closing */
#define XP_MAX_SPINS  1024    /* ucp_worker_progress calls per xp_progress */

static uint64_t ms_ns(int ms) {
    return (uint64_t)ms * 1000000u;
}
static uint64_t since(uint64_t now, uint64_t t) {
    return now > t ? now - t : 0;
}

/* ---- send completions ---- */

static void tx_unlink(xp_sreq *sr) {
    xp_peer *p = sr->peer;
    if (sr->prev)
        sr->prev->next = sr->next;
    else
        p->tx_list = sr->next;
    if (sr->next) sr->next->prev = sr->prev;
    sr->prev = sr->next = NULL;
    p->tx_inflight--;
}

/* Runs the callbacks of the sends completed so far (not those they queue meanwhile). */
int xp_cq_drain(xp_ctx *c) {
    xp_sreq *sr = c->cq_head;
    c->cq_head = c->cq_tail = NULL;
    int n = 0;
    while (sr) {
        xp_sreq *next = sr->qnext;
        tx_unlink(sr);
        if (sr->cb) sr->cb(sr->arg, sr->status);
        xp_sreq_put(c, sr);
        n++;
        sr = next;
    }
    return n;
}

/* Gives up on the peer's sends UCX still holds: the requests are released (UCX calls nothing
 * more for them), the callbacks run with `status`, and the entries are never reused. */
static void tx_abandon(xp_peer *p, int status) {
    while (p->tx_list) {
        xp_sreq *sr = p->tx_list;
        if (sr->req) ucp_request_free(sr->req);
        sr->req = NULL;
        sr->orphan = true;
        tx_unlink(sr);
        if (sr->cb) sr->cb(sr->arg, status);
    }
}

/* ---- the reaper ---- */

static void close_start(xp_peer *p, uint64_t now) {
    /* UCX 1.13 refuses FORCE on endpoints without peer error handling (INVALID_PARAM): in
     * mode NONE every close flushes, bounded by close_timeout_ms (close_check) */
    bool force = (p->force || p->ep_status) && p->c->o.err_mode == XP_ERR_PEER;
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0};
    xp_rx_detach(p);
    xp_rkeys_drop(p);
    void *req = XP_CHECK_PTR(AFD_LOG_INFO, ucp_ep_close_nbx(p->ep, &rp));
    p->close_req = UCS_PTR_IS_PTR(req) ? req : NULL;
    p->state = XP_P_CLOSING;
    p->deadline_ns = now + ms_ns(p->c->o.close_timeout_ms);
}

/* 1 when the endpoint is closed (or given up on), 0 while the close is in flight. */
static int close_check(xp_peer *p, uint64_t now, bool final) {
    if (p->close_req) {
        ucs_status_t st = ucp_request_check_status(p->close_req);
        if (st == UCS_INPROGRESS && now < p->deadline_ns && !final) return 0;
        if (st == UCS_INPROGRESS)
            log_warn("xport: peer %s: endpoint close still pending after %d ms, abandoned", p->name,
                     p->c->o.close_timeout_ms);
        ucp_request_free(p->close_req);
        p->close_req = NULL;
    }
    p->ep = NULL;
    p->state = XP_P_CLOSED;
    return 1;
}

/* on_down, once: after every send callback of the peer; the endpoint close may still be in
 * flight (the peer struct then lingers, invisible to the user, until it ends). */
static void tell_down(xp_ctx *c, xp_peer *p) {
    if (p->told) return;
    p->told = true;
    c->st.peers_down++;
    if (c->h.on_down) c->h.on_down(c->ud, p, p->reason, p->why);
}

/* Moves one peer that is not UP along its close; 1 when it was freed. */
static int reap_one(xp_ctx *c, xp_peer *p, uint64_t now, bool final) {
    if (p->state == XP_P_DRAIN) {
        /* we said GOODBYE: wait for the peer to close first (its disconnect makes ep_err move
         * us to DOWN), so that nothing we sent is still unread when our side goes away */
        if (!p->bye_seen && now < p->deadline_ns && !final) return 0;
        p->force = p->tx_inflight > 0;
        p->state = XP_P_DOWN;
    }
    if (p->state == XP_P_DOWN) close_start(p, now);
    xp_cq_drain(c);                 /* completions the close produced */
    if (p->force && p->tx_inflight) /* a dead peer: its sends would hang until the deadline */
        tx_abandon(p, p->reason == XP_DOWN_TIMEOUT ? -ETIMEDOUT : -ECONNRESET);
    if (p->state == XP_P_CLOSING && !close_check(p, now, final)) {
        if (!p->tx_inflight && !p->told) {
            tell_down(c, p);
            return 1;
        }
        return 0;
    }
    if (p->tx_inflight) {
        if (now < p->deadline_ns && !final) return 0;
        tx_abandon(p, final ? -ECANCELED : -ETIMEDOUT);
    }
    tell_down(c, p);
    xp_peer_destroy(p);
    return 1;
}

int xp_reap(xp_ctx *c, uint64_t now, bool final) {
    int n = 0;
    for (int i = c->n_peers - 1; i >= 0; i--) {
        if (i >= c->n_peers) /* handlers closed or freed several */
            continue;
        xp_peer *p = c->peers[i];
        if (p->state != XP_P_UP) n += reap_one(c, p, now, final);
    }
    return n;
}

/* ---- heartbeats and timeouts ---- */

static void timers_run(xp_ctx *c, uint64_t now) {
    uint64_t hb = ms_ns(c->o.heartbeat_ms), to = ms_ns(c->o.peer_timeout_ms);
    for (int i = 0; i < c->n_peers; i++) {
        xp_peer *p = c->peers[i];
        if (p->state != XP_P_UP) continue;
        if (to && since(now, p->last_rx_ns) >= to)
            xp_peer_down(
                p, XP_DOWN_TIMEOUT, XP_CLOSE_FORCE, "no frame for %llu ms (peer_timeout_ms %d)",
                (unsigned long long)(since(now, p->last_rx_ns) / 1000000u), c->o.peer_timeout_ms);
        else if (hb && since(now, p->last_tx_ns) >= hb)
            xp_send_heartbeat(p);
    }
}

/* ---- progress ---- */

/* Endpoint errors UCX reported during the pass, now that queued frames have been delivered. */
static void errors_run(xp_ctx *c) {
    c->n_failed = 0;
    for (int i = 0; i < c->n_peers; i++) {
        xp_peer *p = c->peers[i];
        if (p->ep_status && p->state < XP_P_CLOSING)
            xp_peer_down(p, XP_DOWN_ERROR, XP_CLOSE_FORCE, "endpoint error: %s",
                         ucs_status_string(p->ep_status));
    }
}

int xp_progress(xp_ctx *c) {
    if (c->in_ucx) /* from on_accept, inside a UCX callback: UCX forbids progress there */
        return 0;
    int n = 0;
    c->in_ucx = true;
    for (int i = 0; i < XP_MAX_SPINS && ucp_worker_progress(c->worker); i++)
        n++;
    c->in_ucx = false;
    n += xp_cq_drain(c);
    if (c->depth) /* nested, from a handler: send completions only */
        return n;
    c->depth++;
    if (c->rx_ready) n += xp_rx_deliver(c);
    if (c->n_failed) /* after the frames that arrived before the error */
        errors_run(c);
    uint64_t now = afd_now_ns();
    if (c->tick_ns && now >= c->next_tick_ns) {
        timers_run(c, now);
        c->next_tick_ns = now + c->tick_ns;
    }
    if (c->n_closing) n += xp_reap(c, now, false);
    c->depth--;
    return n;
}

int xp_fd(xp_ctx *c) {
    return c->efd;
}

int xp_arm(xp_ctx *c) {
    if (c->cq_head || c->rx_ready || c->n_failed) return -EAGAIN;
    ucs_status_t st = ucp_worker_arm(c->worker);
    if (st == UCS_ERR_BUSY) return -EAGAIN;
    return XP_CHECK(AFD_LOG_ERROR, st) == UCS_OK ? 0 : -EIO;
}

int xp_timer_ms(const xp_ctx *c) {
    if (c->n_closing) return XP_CLOSING_MS;
    if (!c->tick_ns) return -1;
    uint64_t now = afd_now_ns();
    if (c->next_tick_ns <= now) return 0;
    return (int)((c->next_tick_ns - now + 999999u) / 1000000u);
}

/* poll() timeout for a wait that ends at `end` (0: no end). */
static int wait_ms(const xp_ctx *c, uint64_t end) {
    int t = xp_timer_ms(c);
    if (end) {
        uint64_t now = afd_now_ns();
        int left = now >= end ? 0 : (int)((end - now + 999999u) / 1000000u);
        t = t < 0 || left < t ? left : t;
    }
    return t;
}

int xp_wait(xp_ctx *c, int timeout_ms) {
    int n = xp_progress(c);
    if (n) return n;
    uint64_t end = timeout_ms >= 0 ? afd_now_ns() + ms_ns(timeout_ms) : 0;
    for (;;) {
        int rc = xp_arm(c);
        if (rc == 0) {
            struct pollfd pfd = {.fd = c->efd, .events = POLLIN};
            if (poll(&pfd, 1, wait_ms(c, end)) < 0 && errno != EINTR) return -errno;
        } else if (rc != -EAGAIN) {
            return rc;
        }
        n = xp_progress(c);
        if (n) return n;
        if (end && afd_now_ns() >= end) return 0;
    }
}

/* ---- libevent glue ---- */

static void ev_schedule(xp_ctx *c) {
    int ms = xp_timer_ms(c);
    if (ms < 0) {
        evtimer_del(c->ev_timer);
        return;
    }
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->ev_timer, &tv);
}

/* One wake-up: progress, busy-poll while events come (up to spin_ns after the last one),
 * yield to the base every XP_SLICE_NS, then arm and sleep on the fd. */
static void ev_run(evutil_socket_t fd, short what, void *arg) {
    xp_ctx *c = arg;
    (void)fd, (void)what;
    c->kick_pending = false;
    uint64_t t0 = afd_now_ns();
    for (;;) {
        int n = xp_progress(c);
        uint64_t now = afd_now_ns();
        if (n > 0) c->last_event_ns = now;
        bool spin = since(now, c->last_event_ns) < c->spin_ns;
        if (!spin) {
            int rc = xp_arm(c);
            if (rc != -EAGAIN) break;
        }
        if (since(now, t0) >= XP_SLICE_NS) {
            xp_kick(c);
            return;
        }
    }
    ev_schedule(c);
}

void xp_kick(xp_ctx *c) {
    if (!c->base || c->kick_pending || !c->ev_kick) return;
    c->kick_pending = true;
    /* a zero timeout, not event_active: libevent runs events activated during its active
     * phase in the same phase, so two spinning contexts would starve the fds forever */
    static const struct timeval now = {0, 0};
    evtimer_add(c->ev_kick, &now);
}

int xp_attach(xp_ctx *c, struct event_base *base, int spin_us) {
    if (c->base) return AFD_E_STATE;
    if (!base || spin_us < 0) return -EINVAL;
    c->ev_fd = event_new(base, c->efd, EV_READ | EV_PERSIST, ev_run, c);
    c->ev_timer = evtimer_new(base, ev_run, c);
    c->ev_kick = evtimer_new(base, ev_run, c);
    if (!c->ev_fd || !c->ev_timer || !c->ev_kick || event_add(c->ev_fd, NULL)) {
        xp_detach(c);
        return -ENOMEM;
    }
    c->base = base;
    c->spin_ns = (uint64_t)spin_us * 1000u;
    xp_kick(c);
    return 0;
}

void xp_detach(xp_ctx *c) {
    if (c->ev_fd) event_free(c->ev_fd);
    if (c->ev_timer) event_free(c->ev_timer);
    if (c->ev_kick) event_free(c->ev_kick);
    c->ev_fd = c->ev_timer = c->ev_kick = NULL;
    c->base = NULL;
}
