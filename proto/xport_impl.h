/* xport_impl.h: private state of the UCX transport, shared by xport.c (context, peers, frames)
 * and xport_loop.c (progress, reaper, timers, waiting, libevent). Not for other modules.
 *
 * Ownership: the context owns every peer, send request (xp_sreq), receive entry (xp_rx),
 * registered region and UCX object. Send requests and receive entries are pooled and only
 * released to the heap by xp_free, after the worker is destroyed, so a late UCX callback can
 * never touch freed memory. UCX callbacks only record state (queue, flags); user handlers run
 * from the AM / rendezvous callbacks (frames, in order) and from xp_progress (send callbacks,
 * on_down).
 */
#ifndef AFD_XPORT_IMPL_H
#define AFD_XPORT_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <ucp/api/ucp.h>

#include "proto/xport.h"

/* Every UCX call goes through one of these: on failure they log the statement, the file and
 * line and ucs_status_string at `lvl`, and pass the status (pointer) through. */
#define XP_CHECK(lvl, stmt)     xp_check((lvl), (stmt), #stmt, __FILE__, __LINE__)
#define XP_CHECK_PTR(lvl, stmt) xp_check_ptr((lvl), (stmt), #stmt, __FILE__, __LINE__)
ucs_status_t xp_check(int lvl, ucs_status_t st, const char *what, const char *file, int line);
void *xp_check_ptr(int lvl, void *ptr, const char *what, const char *file, int line);
int xp_status_err(ucs_status_t st); /* UCS_ERR_* -> -errno-like code */

/* Peer life: UP -> (DRAIN: our GOODBYE and earlier sends flushing) -> DOWN (decided; ep close
 * not started) -> CLOSING (ep close request in flight) -> CLOSED (ep gone; waiting for the
 * last send callbacks) -> on_down -> freed. */
enum { XP_P_UP, XP_P_DRAIN, XP_P_DOWN, XP_P_CLOSING, XP_P_CLOSED };

typedef struct xp_sreq {
    struct xp_sreq *qnext;       /* free list, or the completion queue */
    struct xp_sreq *prev, *next; /* the peer's in-flight list */
    struct xp_sreq *all_next;    /* every request ever made, freed by xp_free */
    xp_ctx *c;
    xp_peer *peer;
    xp_send_cb cb;
    void *arg;
    void *req; /* UCX request while UCX owns it */
    int status;
    bool orphan;                    /* given up on: UCX may still read it, never reused */
    uint8_t hdr[WIRE_HDR_SIZE];     /* the AM header, alive until completion */
    uint8_t body[WIRE_MSG_MAX_LEN]; /* payload of frames the transport makes */
} xp_sreq;

#define XP_RX_POISON 1 /* xp_rx.status of the entry that drops its peer when delivered */

typedef struct xp_rx {
    struct xp_rx *next; /* the peer's ordered queue, the free list or orphans */
    struct xp_rx *all_next;
    xp_ctx *c;
    xp_peer *peer; /* NULL once orphaned (peer gone, UCX still writing) */
    wire_hdr h;
    uint8_t *buf;
    size_t len;
    int pool_idx;  /* registered buffer index, or -1 */
    bool heap;     /* buf is a heap rendezvous buffer (freed on release) */
    uint8_t *ebuf; /* the entry's own eager buffer, kept across reuse */
    size_t ecap;
    void *req;
    int status;
    bool done;
    bool kept;     /* the user kept it past on_frame (xp_frame_keep) */
} xp_rx;

struct xp_mr {
    struct xp_mr *next;
    void *addr;
    size_t len;
    ucp_mem_h memh;
    void *packed;
    size_t packed_len;
};

struct xp_rkey {
    struct xp_rkey *prev, *next; /* the peer's keys */
    xp_peer *peer;
    ucp_rkey_h rkey;
};

typedef struct xp_region {
    struct xp_region *next;
    void *addr;
    size_t len; /* mapped length (page multiple) */
    ucp_mem_h memh;
} xp_region;

struct xp_peer {
    xp_ctx *c;
    ucp_ep_h ep; /* NULL once closed */
    void *ud;
    int idx; /* in c->peers */
    int state;
    int reason;
    bool force; /* close without flushing */
    bool flushing;
    bool told;              /* on_down has run: a zombie waiting for its endpoint close */
    ucs_status_t ep_status; /* endpoint error reported by UCX, acted on after progress */
    bool bye_seen;          /* GOODBYE received while our own was draining */
    bool poisoned;          /* a bad frame is queued: later frames are ignored */
    int poison_reason;
    char poison_why[192];
    char name[64];
    char why[192];
    uint64_t last_rx_ns, last_tx_ns, deadline_ns;
    wire_limits lim;
    unsigned tx_inflight;
    xp_sreq *tx_list;
    xp_rx *rxq_head, *rxq_tail;
    void *close_req;
    xp_rkey *rkeys; /* unpacked keys of the peer's memory, destroyed before the ep closes */
};

struct xp_ctx {
    xp_opts o;
    xp_handlers h;
    void *ud;
    ucp_context_h ucp;
    ucp_worker_h worker;
    ucp_listener_h listener;
    int efd;
    /* peers */
    xp_peer **peers;
    int n_peers, cap_peers;
    int n_closing; /* peers not UP */
    int n_failed;  /* peers with an endpoint error not yet acted on */
    /* send requests */
    xp_sreq *sreq_free, *sreq_all;
    xp_sreq *cq_head, *cq_tail; /* completed, callback not yet run */
    /* receive */
    xp_rx *rx_free, *rx_all, *rx_orphans;
    uint8_t *rx_pool;
    size_t rx_pool_len;
    ucp_mem_h rx_memh;
    int *rx_stack, rx_top; /* free registered buffer indices */
    int rx_ready;          /* entries completed since the last delivery pass */
    xp_rx *cur_rx;         /* the entry being delivered (on_frame), for xp_frame_keep */
    xp_region *regions;
    xp_mr *mrs;
    /* timers */
    uint64_t tick_ns, next_tick_ns;
    int depth;   /* xp_progress nesting: > 0 inside the top-level pass */
    bool in_ucx; /* inside ucp_worker_progress (UCX callbacks, on_accept) */
    /* libevent glue */
    struct event_base *base;
    struct event *ev_fd, *ev_timer, *ev_kick;
    uint64_t spin_ns, last_event_ns;
    bool kick_pending;
    xp_stats st;
};

/* xport.c */
void xp_peer_down(xp_peer *p, int reason, int mode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
enum { XP_CLOSE_GOODBYE, XP_CLOSE_FLUSH, XP_CLOSE_FORCE }; /* xp_peer_down modes */
void xp_tx_link(xp_peer *p, xp_sreq *sr);                 /* into the peer's in-flight list */
void xp_send_done(void *req, ucs_status_t st, void *ud); /* UCX completion of an xp_sreq */
int xp_frame_send(xp_peer *p, xp_sreq *sr, const wire_hdr *h, const void *payload, size_t len);
xp_sreq *xp_sreq_get(xp_ctx *c);
void xp_sreq_put(xp_ctx *c, xp_sreq *sr);
int xp_send_heartbeat(xp_peer *p);
xp_peer *xp_peer_by_ep(const xp_ctx *c, ucp_ep_h ep);

/* xport_rx.c */
ucs_status_t xp_am_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                      const ucp_am_recv_param_t *prm);
int xp_rx_deliver(xp_ctx *c); /* on_frame for every completed queue head; returns frames */
void xp_rx_detach(xp_peer *p);
void xp_peer_destroy(xp_peer *p);

void xp_cq_push(xp_ctx *c, xp_sreq *sr);

/* xport_rma.c */
ucp_mem_h xp_mr_memh_of(const xp_ctx *c, const void *p, size_t len);
void xp_rkeys_drop(xp_peer *p);
void xp_mrs_free(xp_ctx *c);

/* xport_loop.c */
int xp_cq_drain(xp_ctx *c);
void xp_kick(xp_ctx *c); /* attached: make sure the loop runs xp_progress soon */
int xp_reap(xp_ctx *c, uint64_t now, bool final);
void xp_detach(xp_ctx *c);

#endif
