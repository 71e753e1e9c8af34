/* xport.h: afd's data-plane transport over UCX (UCP active messages). docs/transport.md.
 *
 * One xp_ctx = one UCP context + worker (UCS_THREAD_MODE_SINGLE), at most one listener, and
 * the peers (endpoints) of that worker. Every frame is one UCP AM (id XP_AM_ID): the 32-byte
 * encoded wire header is the AM header, the payload the AM data. Small payloads arrive eager;
 * large ones by rendezvous into pre-registered receive buffers (heap when none fits).
 *
 * Threads: a context and everything hanging off it belong to one thread (its event loop).
 * Handlers run on that thread, never inside xp_send or another API call: on_frame, the send
 * callbacks and on_down from xp_progress (so also xp_wait, the libevent callbacks and
 * xp_free), outside any UCX callback; on_accept from inside UCX's connection callback. Handlers
 * may call xp_send, xp_peer_close, xp_peer_set_*, xp_get_stats, and xp_progress to wait for
 * their own sends (back-pressure): a nested xp_progress progresses UCX and runs send callbacks
 * but delivers no frame and frees no peer (inside on_accept it does nothing). They must not
 * call xp_wait or xp_free. A peer that dies or is closed inside a handler is freed later by
 * the reaper in xp_progress, never inside its own callback.
 *
 * Lifetimes. A peer exists from xp_connect / on_accept until its on_down returns (exactly
 * once per peer the user has seen; every send callback of that peer has run before it). A
 * payload handed to xp_send is borrowed until its send callback; with a NULL callback, until
 * the peer's on_down (or xp_free): keep such buffers alive for the whole connection (typically
 * xp_mem_alloc'd buffers reused for every step). A payload passed to on_frame is valid only
 * until on_frame returns.
 *
 * Errors: 0 or negative (-errno, AFD_E_*); functions with an afd_err * fill it with a message.
 * Bad frames, UCX errors and timeouts never fail the context: they drop that peer only.
 * Every UCX call goes through a check macro that logs the statement, file, line and
 * ucs_status_string.
 */
#ifndef AFD_XPORT_H
#define AFD_XPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"
#include "proto/wire.h"

struct event_base;

#define XP_AM_ID 7 /* the UCP AM id of every afd frame */

typedef struct xp_ctx xp_ctx;   /* ucp context + worker + listener + peers */
typedef struct xp_peer xp_peer; /* one endpoint */

/* UCP error-handling mode of every endpoint of a context. NONE lets UCX pick shared memory
 * (sysv/posix + cma: ~1 us, ~10 GB/s on one node) but gives no UCX error callbacks: a dead
 * peer is found by heartbeat timeout. PEER adds UCX peer-failure callbacks but UCX then uses
 * tcp only (~10 us, ~2 GB/s; env.md). Both ends should use the same mode. */
typedef enum { XP_ERR_NONE = 0, XP_ERR_PEER = 1 } xp_errmode;

typedef struct xp_opts {
    xp_errmode err_mode;  /* XP_ERR_NONE */
    uint32_t instance_id; /* `sender` of the frames the transport makes (heartbeat, goodbye) */
    int heartbeat_ms;     /* HEARTBEAT to a peer we sent nothing to for this long (500; 0 off) */
    int peer_timeout_ms;  /* peer dead after this long without any frame from it (3000; 0 off) */
    size_t max_payload;   /* larger incoming frames drop the peer (64 MiB; <= UINT32_MAX) */
    int rx_bufs;          /* registered rendezvous receive buffers (8) ... */
    size_t rx_buf_size;   /* ... of this many bytes each (2 MiB); larger payloads: heap */
    int close_timeout_ms; /* bound on each close step (peer's own close, flush) (1000) */
    const char *ucx_tls;  /* UCX_TLS for this context only (NULL: environment / UCX default);
                           * borrowed during xp_init */
    const char *ucx_net_devices; /* UCX_NET_DEVICES likewise */
} xp_opts;

/* Why a peer went down (on_down's reason). */
enum {
    XP_DOWN_CLOSED = 1,    /* xp_peer_close by us */
    XP_DOWN_GOODBYE = 2,   /* the peer sent GOODBYE (why = its message) */
    XP_DOWN_ERROR = 3,     /* UCX reported an endpoint error (XP_ERR_PEER), or a send failed */
    XP_DOWN_TIMEOUT = 4,   /* no frame for peer_timeout_ms */
    XP_DOWN_BAD_FRAME = 5, /* header invalid, length mismatch, over a limit */
    XP_DOWN_REFUSED = 6,   /* on_accept or on_frame returned < 0 */
    XP_DOWN_NOMEM = 7,     /* no memory for a frame the limits allow */
    XP_DOWN_SHUTDOWN = 8,  /* xp_free */
};

typedef struct xp_handlers {
    /* Incoming connection (the peer can already be sent to); < 0 refuses it: GOODBYE, closed,
     * and on_down(XP_DOWN_REFUSED) follows. May be NULL (accept all). */
    int (*on_accept)(void *ud, xp_peer *p);
    /* One complete frame, in the order the peer sent them (never HEARTBEAT or GOODBYE: those
     * are consumed inside; GOODBYE ends the peer). Frames that arrived before a bad one are
     * still delivered, nothing after it. payload is 64-byte aligned, non-NULL even for len 0,
     * and valid only until return. < 0 drops the peer (XP_DOWN_REFUSED). */
    int (*on_frame)(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *payload, size_t len);
    /* The peer is gone (reason XP_DOWN_*, why a one-line text). Exactly once per peer, after
     * all its send callbacks; the peer is freed when it returns. May be NULL. */
    void (*on_down)(void *ud, xp_peer *p, int reason, const char *why);
} xp_handlers;

/* Defaults as commented in xp_opts. */
void xp_opts_default(xp_opts *o);
/* Creates a context (UCP features AM + WAKEUP). 0, or negative with *err. h and ud are kept. */
int xp_init(xp_ctx **out, const xp_opts *o, const xp_handlers *h, void *ud, afd_err *err);
/* Closes every peer (GOODBYE, bounded flush; on_down for each, every pending send callback
 * with status < 0), then frees everything. Not from a handler. NULL is a no-op. */
void xp_free(xp_ctx *c);

/* Listens on addr:port (port 0: ephemeral; *bound_port gets the port when non-NULL). One
 * listener per context. 0, or negative with *err. */
int xp_listen(xp_ctx *c, const char *addr, int port, int *bound_port, afd_err *err);
/* Starts a connection to addr:port and returns at once with the peer; frames may be sent at
 * once (UCX queues them until wire-up). A refused connection is reported by on_down (ERROR
 * with XP_ERR_PEER; TIMEOUT otherwise). 0, or negative with *err (bad address). */
int xp_connect(xp_ctx *c, const char *addr, int port, xp_peer **out, afd_err *err);

/* Send-completion callback: status 0, or negative (peer down, cancelled). */
typedef void (*xp_send_cb)(void *arg, int status);
/* Queues one frame: header *h (payload_len is set from len; magic/version by the encoder)
 * and len payload bytes, borrowed until cb (see Lifetimes). cb is called exactly once, always
 * later from xp_progress (never inside xp_send), also when the peer dies (status < 0). cb NULL:
 * no notification; the buffer must then live until the peer's on_down. Returns 0, or negative
 * (peer closing or closed: AFD_E_STATE; len > UINT32_MAX: AFD_E_LIMIT; UCX refused: -EIO, the
 * peer then goes down): cb is then never called. */
int xp_send(xp_peer *p, const wire_hdr *h, const void *payload, size_t len, xp_send_cb cb,
            void *arg);

/* A registered (ucp_mem_map'd), page-aligned, zeroed buffer for payloads sent often (zero
 * copy, rendezvous straight from it). NULL on failure (size 0, no memory). Freed by
 * xp_mem_free or, at the latest, xp_free. */
void *xp_mem_alloc(xp_ctx *c, size_t size);
void xp_mem_free(xp_ctx *c, void *p); /* p from xp_mem_alloc of c, or NULL; no send in flight */

/* ---- RMA: one end registers memory and hands out its packed key; the other puts into it ----
 * The KV handoff (docs/attnd.md): the decode attnd registers its KV pool once and sends the
 * packed key with every reservation; the prefill attnd unpacks it on its endpoint to the
 * decode attnd and writes blocks with xp_put, then xp_flush, then tells it with a frame.
 * Over shared memory UCX writes with cma (no receiver involvement); over TCP it emulates RMA
 * with active messages, so the receiver's worker must be progressed (every daemon loop does).
 * Ordering: puts complete in any order; xp_flush's callback runs after every put issued on
 * the peer before it is remotely complete, so a frame sent from that callback arrives after
 * the data. Puts and flushes are in-flight operations of the peer like sends: when the peer
 * goes down, their callbacks run with a negative status. */
typedef struct xp_mr xp_mr;     /* registered local memory */
typedef struct xp_rkey xp_rkey; /* a peer's memory, as unpacked from its packed key */
/* Registers [addr, addr + len) (existing memory, e.g. a KV pool) for remote access. 0 or
 * negative with *err. Deregister with xp_mr_free (no remote writes may be wanted any more:
 * they fail or, over shared memory, may still land until the peers drop their keys). */
int xp_mr_register(xp_ctx *c, void *addr, size_t len, xp_mr **out, afd_err *err);
void xp_mr_free(xp_ctx *c, xp_mr *mr); /* NULL is a no-op */
/* The packed remote key (owned by mr; valid until xp_mr_free) and its length. */
const void *xp_mr_rkey(const xp_mr *mr, size_t *len);
/* Unpacks a peer's packed key for puts on that peer. The key belongs to the peer: freed by
 * xp_rkey_free or, at the latest, when the peer goes down (before on_down; do not use it after
 * on_down). 0, AFD_E_STATE (peer not up), AFD_E_FORMAT (UCX refused the bytes).
 * UCX does not validate packed keys (junk bytes can crash it inside ucp_ep_rkey_unpack): take a
 * key only from the memory's owner, on the endpoint it is used on, never from a third party. */
int xp_rkey_unpack(xp_peer *p, const void *packed, size_t len, xp_rkey **out);
void xp_rkey_free(xp_rkey *rk); /* NULL is a no-op */
/* Writes len bytes at src to the peer's address raddr (covered by rk). src must stay unchanged
 * until cb (called once, later, from xp_progress: 0, or negative when the write failed or the
 * peer went down). 0, or negative (AFD_E_STATE peer not up, -EINVAL, -EIO: UCX refused; the
 * peer goes down and cb is not called). Registered src memory (xp_mr_register) is zero copy. */
int xp_put(xp_peer *p, const void *src, size_t len, uint64_t raddr, xp_rkey *rk, xp_send_cb cb,
           void *arg);
/* cb(arg, status) once every put issued on p so far is complete at the peer. Same returns. */
int xp_flush(xp_peer *p, xp_send_cb cb, void *arg);

/* Closes the peer: GOODBYE(code 0, why), then waits (bounded by close_timeout_ms) for the peer
 * to close its side, so that nothing we sent is lost, then closes the endpoint;
 * on_down(XP_DOWN_CLOSED, why) follows from xp_progress. Frames that arrive meanwhile are
 * dropped. Idempotent; a peer already going down keeps its first reason. */
void xp_peer_close(xp_peer *p, const char *why);
/* Inside on_frame only: keeps the frame's payload (the pointer on_frame got) valid after the
 * handler returns, until xp_frame_release (or, at the latest, xp_free), so a consumer can
 * read it in place later instead of copying it out inside the callback. A kept rendezvous
 * payload holds its registered receive buffer meanwhile: size rx_bufs for what may be kept.
 * Returns the handle, or NULL outside on_frame (or if already kept). */
typedef struct xp_frame xp_frame;
xp_frame *xp_frame_keep(xp_peer *p);
void xp_frame_release(xp_ctx *c, xp_frame *f); /* NULL is a no-op */
void xp_peer_set_ud(xp_peer *p, void *ud);
void *xp_peer_ud(const xp_peer *p);
/* "127.0.0.1:41234": the address connected to, or the client's address for accepted peers. */
const char *xp_peer_name(const xp_peer *p);
/* Limits incoming headers of this peer are decoded with (wire_hdr_decode). The default is
 * wire_limits_default with max_payload = opts.max_payload. The transport always adds
 * HEARTBEAT and GOODBYE to types and caps max_payload at opts.max_payload. Typical use:
 * wire_limits_handshake in on_accept, wire_limits_session after the handshake. */
void xp_peer_set_limits(xp_peer *p, const wire_limits *lim);

/* Progresses the worker until idle, then runs send callbacks, delivers the frames received
 * (on_frame), acts on endpoint errors, heartbeats and timeouts, and reaps closed peers
 * (on_down). Returns the number of events handled (>= 0). Nested from a handler: UCX progress
 * and send callbacks only (see Threads). */
int xp_progress(xp_ctx *c);
/* The worker event fd (readable when xp_progress has work after xp_arm returned 0). */
int xp_fd(xp_ctx *c);
/* 0: safe to sleep on xp_fd (until the next timer tick, see xp_timer_ms); -EAGAIN: call
 * xp_progress again first. */
int xp_arm(xp_ctx *c);
/* Milliseconds until the heartbeat/timeout check wants to run (>= 0; -1: never). */
int xp_timer_ms(const xp_ctx *c);
/* Blocking helper for clients and tests: progress; if nothing happened, arm and poll(fd) up to
 * timeout_ms (waking for timer ticks), then progress. Returns events handled (0 on timeout),
 * or negative on a poll error. */
int xp_wait(xp_ctx *c, int timeout_ms);

/* libevent glue: the fd as EV_READ|EV_PERSIST plus a timer on base. Each wake-up progresses;
 * while events keep coming it busy-polls up to spin_us after the last one (yielding to the
 * base's other events every ~200 us) before arming and sleeping on the fd. Once per context;
 * the events are removed by xp_free. 0 or negative. */
int xp_attach(xp_ctx *c, struct event_base *base, int spin_us);

typedef struct xp_stats {
    uint64_t frames_in, frames_out; /* frames (heartbeats included) */
    uint64_t bytes_in, bytes_out;   /* payload bytes */
    uint64_t rndv_in;               /* frames received by rendezvous */
    uint64_t heap_rx;               /* rendezvous payloads that fit no registered buffer */
    uint64_t hb_out;                /* heartbeats sent */
    uint64_t peers_up, peers_down;  /* cumulative: connected now = up - down */
    uint64_t bad_frames;            /* frames that dropped their peer (header, length, limit) */
} xp_stats;
void xp_get_stats(const xp_ctx *c, xp_stats *s);

/* "closed", "goodbye", "error", "timeout", "bad frame", "refused", "no memory", "shutdown". */
const char *xp_down_name(int reason);

#endif
