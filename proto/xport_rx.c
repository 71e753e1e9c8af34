/* xport_rx.c: the receive side of the UCX transport.
 *
 * UCX callbacks (the AM handler, rendezvous completions) only validate, copy or fetch and
 * queue: every frame becomes an entry on its peer's ordered queue. xp_progress delivers the
 * completed entries at the head of each queue to on_frame afterwards, outside any UCX
 * callback, so a handler may send, close peers and even progress the transport (a nested
 * xp_progress runs send completions but delivers nothing).
 *
 * Payload buffers: eager frames are copied into a buffer the entry keeps across reuse (grown
 * by a checked allocation, 64-byte aligned); rendezvous frames land in a registered pool
 * buffer or, failing that, a checked heap buffer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "proto/xport_impl.h"

/* ---- entries and buffers ---- */

static xp_rx *rx_get(xp_ctx *c) {
    xp_rx *rx = c->rx_free;
    if (rx) {
        c->rx_free = rx->next;
    } else {
        rx = xcalloc(1, sizeof *rx);
        rx->c = c;
        rx->all_next = c->rx_all;
        c->rx_all = rx;
    }
    rx->next = NULL;
    rx->buf = NULL;
    rx->req = NULL;
    rx->pool_idx = -1;
    rx->heap = false;
    rx->status = 0;
    rx->done = false;
    rx->kept = false;
    return rx;
}

/* Gives the entry's payload buffer back (pool or heap; its eager buffer stays with it) and
 * the entry to the free list. */
static void rx_put(xp_ctx *c, xp_rx *rx) {
    if (rx->pool_idx >= 0)
        c->rx_stack[c->rx_top++] = rx->pool_idx;
    else if (rx->heap)
        free(rx->buf);
    rx->buf = NULL;
    rx->pool_idx = -1;
    rx->heap = false;
    rx->peer = NULL;
    rx->next = c->rx_free;
    c->rx_free = rx;
}

/* A buffer for a rendezvous payload: a registered one when it fits, else the heap
 * (counted). NULL when out of memory. */
static uint8_t *rx_buf_rndv(xp_ctx *c, xp_rx *rx, size_t len) {
    if (len <= c->o.rx_buf_size && c->rx_top > 0) {
        rx->pool_idx = c->rx_stack[--c->rx_top];
        return c->rx_pool + (size_t)rx->pool_idx * c->o.rx_buf_size;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, len ? len : 1)) return NULL;
    rx->heap = true;
    c->st.heap_rx++;
    return p;
}

/* The entry's own buffer for an eager payload, grown when too small. NULL when out of
 * memory. */
static uint8_t *rx_buf_eager(xp_rx *rx, size_t len) {
    if (len > rx->ecap) {
        void *p = NULL;
        if (posix_memalign(&p, 64, len)) return NULL;
        free(rx->ebuf);
        rx->ebuf = p;
        rx->ecap = len;
    }
    return rx->ebuf;
}

/* ---- per-peer queues ---- */

static void rxq_append(xp_peer *p, xp_rx *rx) {
    rx->peer = p;
    rx->next = NULL;
    if (p->rxq_tail)
        p->rxq_tail->next = rx;
    else
        p->rxq_head = rx;
    p->rxq_tail = rx;
}

/* A bad frame or no memory for one: the peer is dropped once the frames queued before it
 * have been delivered; anything after it is ignored. */
static void peer_poison(xp_peer *p, int reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void peer_poison(xp_peer *p, int reason, const char *fmt, ...) {
    if (p->poisoned) return;
    p->poisoned = true;
    p->poison_reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->poison_why, sizeof p->poison_why, fmt, ap);
    va_end(ap);
    if (!p->rxq_head) {
        xp_peer_down(p, reason, XP_CLOSE_GOODBYE, "%s", p->poison_why);
        return;
    }
    xp_rx *rx = rx_get(p->c);
    rx->done = true;
    rx->status = XP_RX_POISON;
    rxq_append(p, rx);
    p->c->rx_ready++;
}

/* The peer is going away: queued entries are released, entries UCX is still writing are
 * orphaned (released by their completion, or by xp_free). */
void xp_rx_detach(xp_peer *p) {
    xp_ctx *c = p->c;
    xp_rx *rx = p->rxq_head;
    p->rxq_head = p->rxq_tail = NULL;
    while (rx) {
        xp_rx *next = rx->next;
        if (rx->done) {
            rx_put(c, rx);
        } else {
            rx->peer = NULL;
            rx->next = c->rx_orphans;
            c->rx_orphans = rx;
        }
        rx = next;
    }
}

static void orphan_release(xp_ctx *c, xp_rx *rx) {
    for (xp_rx **pp = &c->rx_orphans; *pp; pp = &(*pp)->next) {
        if (*pp == rx) {
            *pp = rx->next;
            rx_put(c, rx);
            return;
        }
    }
}

/* ---- delivery (outside UCX callbacks) ---- */

static const uint64_t empty_payload[1];

/* Hands one frame to the user, or ends the peer on GOODBYE. */
static void deliver(xp_peer *p, const wire_hdr *h, const uint8_t *data, size_t len) {
    xp_ctx *c = p->c;
    if (p->state != XP_P_UP) return;
    if (h->type == WIRE_T_GOODBYE) {
        wire_msg m;
        int rc = wire_goodbye_decode(data, len, &m);
        if (rc)
            xp_peer_down(p, XP_DOWN_BAD_FRAME, XP_CLOSE_FLUSH, "bad GOODBYE payload: %s",
                         wire_strerror(rc));
        else
            xp_peer_down(p, XP_DOWN_GOODBYE, XP_CLOSE_FLUSH, "peer said goodbye (code %d): %s",
                         (int)m.code, m.text);
        return;
    }
    int rc = c->h.on_frame(c->ud, p, h, len ? data : (const uint8_t *)empty_payload, len);
    if (rc < 0)
        xp_peer_down(p, XP_DOWN_REFUSED, XP_CLOSE_GOODBYE, "%s frame refused by handler: %s",
                     wire_type_name(h->type), afd_strerror(rc));
}

/* Delivers the completed entries at the head of the peer's queue, in order. */
static int rxq_flush(xp_peer *p) {
    int n = 0;
    xp_rx *rx;
    while ((rx = p->rxq_head) && rx->done) {
        p->rxq_head = rx->next;
        if (!p->rxq_head) p->rxq_tail = NULL;
        if (rx->status == XP_RX_POISON)
            xp_peer_down(p, p->poison_reason, XP_CLOSE_GOODBYE, "%s", p->poison_why);
        else if (rx->status)
            xp_peer_down(p, XP_DOWN_ERROR, XP_CLOSE_FORCE, "rendezvous receive failed: %s",
                         afd_strerror(rx->status));
        else {
            p->c->cur_rx = rx;
            deliver(p, &rx->h, rx->buf, rx->len);
            p->c->cur_rx = NULL;
        }
        if (!rx->kept)
            rx_put(p->c, rx);
        n++;
    }
    return n;
}

xp_frame *xp_frame_keep(xp_peer *p) {
    xp_rx *rx = p->c->cur_rx;
    if (!rx || rx->peer != p || rx->kept)
        return NULL;
    rx->kept = true;
    return (xp_frame *)rx;
}

void xp_frame_release(xp_ctx *c, xp_frame *f) {
    xp_rx *rx = (xp_rx *)f;
    if (!rx || !rx->kept)
        return;
    rx->kept = false;
    rx_put(c, rx);
}

int xp_rx_deliver(xp_ctx *c) {
    c->rx_ready = 0;
    int n = 0;
    for (int i = 0; i < c->n_peers; i++) /* handlers may add peers: re-read n_peers */
        n += rxq_flush(c->peers[i]);
    return n;
}

/* ---- UCX callbacks ---- */

static void rndv_done(void *req, ucs_status_t st, size_t len, void *ud) {
    xp_rx *rx = ud;
    ucp_request_free(req);
    rx->req = NULL;
    rx->done = true;
    rx->status = st == UCS_OK && len == rx->len ? 0 : st == UCS_OK ? -EIO : xp_status_err(st);
    if (rx->peer)
        rx->c->rx_ready++;
    else
        orphan_release(rx->c, rx);
}

static void rx_eager(xp_peer *p, const wire_hdr *h, const void *data, size_t len) {
    xp_rx *rx = rx_get(p->c);
    rx->buf = rx_buf_eager(rx, len ? len : 1);
    if (!rx->buf) {
        rx_put(p->c, rx);
        peer_poison(p, XP_DOWN_NOMEM, "no memory for a %zu-byte frame", len);
        return;
    }
    if (len) memcpy(rx->buf, data, len);
    rx->h = *h;
    rx->len = len;
    rx->done = true;
    rxq_append(p, rx);
    p->c->rx_ready++;
}

static void rx_rndv(xp_peer *p, const wire_hdr *h, void *desc, size_t len) {
    xp_ctx *c = p->c;
    xp_rx *rx = rx_get(c);
    rx->buf = rx_buf_rndv(c, rx, len);
    if (!rx->buf) {
        rx_put(c, rx);
        peer_poison(p, XP_DOWN_NOMEM, "no memory for a %zu-byte payload", len);
        return;
    }
    rx->h = *h;
    rx->len = len;
    rxq_append(p, rx);
    c->st.rndv_in++;
    ucp_request_param_t rp = {.op_attr_mask =
                                  UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.recv_am = rndv_done,
                              .user_data = rx};
    if (rx->pool_idx >= 0) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        rp.memh = c->rx_memh;
    }
    void *req =
        XP_CHECK_PTR(AFD_LOG_WARN, ucp_am_recv_data_nbx(c->worker, desc, rx->buf, len, &rp));
    if (UCS_PTR_IS_PTR(req)) {
        rx->req = req;
        return;
    }
    rx->done = true;
    rx->status = UCS_PTR_IS_ERR(req) ? xp_status_err(UCS_PTR_STATUS(req)) : 0;
    c->rx_ready++;
}

/* Validates the AM header against the peer's limits and the AM data length. */
static int frame_check(xp_peer *p, const void *hdr, size_t hlen, size_t len, wire_hdr *h) {
    if (hlen != WIRE_HDR_SIZE) {
        peer_poison(p, XP_DOWN_BAD_FRAME, "AM header of %zu bytes, not %d", hlen, WIRE_HDR_SIZE);
        return -1;
    }
    int rc = wire_hdr_decode(hdr, hlen, &p->lim, h);
    if (rc) {
        peer_poison(p, XP_DOWN_BAD_FRAME, "bad frame header: %s (max payload %u)",
                    wire_strerror(rc), p->lim.max_payload);
        return -1;
    }
    if (h->payload_len != len) {
        peer_poison(p, XP_DOWN_BAD_FRAME, "%s header payload_len %u != %zu bytes received",
                    wire_type_name(h->type), h->payload_len, len);
        return -1;
    }
    return 0;
}

ucs_status_t xp_am_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                      const ucp_am_recv_param_t *prm) {
    xp_ctx *c = arg;
    ucp_ep_h ep = (prm->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ? prm->reply_ep : NULL;
    xp_peer *p = xp_peer_by_ep(c, ep);
    if (!p) {
        log_warn("xport: frame of %zu bytes from an unknown endpoint dropped", len);
        return UCS_OK;
    }
    wire_hdr h;
    if (p->state == XP_P_DRAIN && hlen == WIRE_HDR_SIZE &&
        wire_hdr_decode(hdr, hlen, &p->lim, &h) == 0 && h.type == WIRE_T_GOODBYE)
        p->bye_seen = true; /* both ends said GOODBYE: nobody waits for the other to close */
    if (p->state != XP_P_UP || p->poisoned)
        return UCS_OK; /* closing, or after a bad frame: dropped */
    if (frame_check(p, hdr, hlen, len, &h)) {
        c->st.bad_frames++;
        return UCS_OK;
    }
    p->last_rx_ns = afd_now_ns();
    c->st.frames_in++;
    c->st.bytes_in += len;
    if (h.type == WIRE_T_HEARTBEAT) return UCS_OK;
    if (prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)
        rx_rndv(p, &h, data, len);
    else
        rx_eager(p, &h, data, len);
    return UCS_OK;
}
