/* xport.c: UCX transport: context, listener, peers, sending and receiving frames.
 * The loop side (progress, reaper, timers, waiting, libevent) is in xport_loop.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "proto/xport_impl.h"

/* ---- UCX checks ---- */

ucs_status_t xp_check(int lvl, ucs_status_t st, const char *what, const char *file, int line) {
    if (st != UCS_OK && st != UCS_INPROGRESS)
        afd_log(lvl, "ucx: %s: %s (%s:%d)", what, ucs_status_string(st), file, line);
    return st;
}

void *xp_check_ptr(int lvl, void *ptr, const char *what, const char *file, int line) {
    if (UCS_PTR_IS_ERR(ptr))
        afd_log(lvl, "ucx: %s: %s (%s:%d)", what, ucs_status_string(UCS_PTR_STATUS(ptr)), file,
                line);
    return ptr;
}

int xp_status_err(ucs_status_t st) {
    switch (st) {
    case UCS_OK:
        return 0;
    case UCS_ERR_CANCELED:
        return -ECANCELED;
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
        return -ETIMEDOUT;
    case UCS_ERR_CONNECTION_RESET:
        return -ECONNRESET;
    case UCS_ERR_UNREACHABLE:
        return -EHOSTUNREACH;
    case UCS_ERR_NO_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

const char *xp_down_name(int reason) {
    static const char *const names[] = {"?",         "closed",  "goodbye",   "error",   "timeout",
                                        "bad frame", "refused", "no memory", "shutdown"};
    if (reason < 1 || reason > XP_DOWN_SHUTDOWN) return "unknown";
    return names[reason];
}

/* ---- options ---- */

void xp_opts_default(xp_opts *o) {
    *o = (xp_opts){
        .err_mode = XP_ERR_NONE,
        .heartbeat_ms = 500,
        .peer_timeout_ms = 3000,
        .max_payload = 64u << 20,
        .rx_bufs = 8,
        .rx_buf_size = 2u << 20,
        .close_timeout_ms = 1000,
    };
}

static int opts_check(const xp_opts *o, afd_err *err) {
    if (o->err_mode != XP_ERR_NONE && o->err_mode != XP_ERR_PEER)
        return afd_errf(err, -EINVAL, "xport: err_mode %d is neither none (0) nor peer (1)",
                        (int)o->err_mode);
    if (o->heartbeat_ms < 0 || o->peer_timeout_ms < 0 || o->close_timeout_ms < 0)
        return afd_errf(err, -EINVAL, "xport: negative heartbeat/peer/close timeout (%d/%d/%d)",
                        o->heartbeat_ms, o->peer_timeout_ms, o->close_timeout_ms);
    if (o->max_payload == 0 || o->max_payload > UINT32_MAX)
        return afd_errf(err, -EINVAL, "xport: max_payload %zu not in [1, %u]", o->max_payload,
                        UINT32_MAX);
    if (o->rx_bufs < 0 || o->rx_bufs > 4096 || (o->rx_bufs > 0 && o->rx_buf_size == 0))
        return afd_errf(err, -EINVAL, "xport: rx_bufs %d (limit 4096) x rx_buf_size %zu",
                        o->rx_bufs, o->rx_buf_size);
    size_t total;
    if (afd_mul_size((size_t)o->rx_bufs, o->rx_buf_size, &total) || total > ((size_t)1 << 40))
        return afd_errf(err, -EINVAL, "xport: rx_bufs %d x rx_buf_size %zu overflows", o->rx_bufs,
                        o->rx_buf_size);
    return 0;
}

/* ---- registered memory ---- */

static size_t page_round(size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return n > SIZE_MAX - pg ? 0 : (n + pg - 1) / pg * pg;
}

/* mmap'd (page-aligned, zero) and ucp_mem_map'd; NULL on failure. */
static void *map_region(xp_ctx *c, size_t len, ucp_mem_h *memh) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = p,
                               .length = len};
    if (XP_CHECK(AFD_LOG_ERROR, ucp_mem_map(c->ucp, &mp, memh)) != UCS_OK) {
        munmap(p, len);
        return NULL;
    }
    return p;
}

static void unmap_region(xp_ctx *c, void *p, size_t len, ucp_mem_h memh) {
    XP_CHECK(AFD_LOG_WARN, ucp_mem_unmap(c->ucp, memh));
    munmap(p, len);
}

void *xp_mem_alloc(xp_ctx *c, size_t size) {
    size_t len = page_round(size);
    if (!c || size == 0 || len == 0) return NULL;
    xp_region *r = xcalloc(1, sizeof *r);
    r->addr = map_region(c, len, &r->memh);
    if (!r->addr) {
        free(r);
        return NULL;
    }
    r->len = len;
    r->next = c->regions;
    c->regions = r;
    return r->addr;
}

void xp_mem_free(xp_ctx *c, void *p) {
    if (!c || !p) return;
    for (xp_region **pp = &c->regions; *pp; pp = &(*pp)->next) {
        xp_region *r = *pp;
        if (r->addr != p) continue;
        *pp = r->next;
        unmap_region(c, r->addr, r->len, r->memh);
        free(r);
        return;
    }
    log_error("xport: xp_mem_free(%p): not a buffer of this context", p);
}

/* The memory handle of a registered region holding [p, p + len), or NULL. */
static ucp_mem_h region_of(const xp_ctx *c, const void *p, size_t len) {
    const uint8_t *b = p;
    for (const xp_region *r = c->regions; r; r = r->next) {
        const uint8_t *a = r->addr;
        if (b >= a && b - a <= (ptrdiff_t)r->len && len <= r->len - (size_t)(b - a)) return r->memh;
    }
    return NULL;
}

static int rx_pool_init(xp_ctx *c, afd_err *err) {
    if (c->o.rx_bufs == 0) return 0;
    c->o.rx_buf_size = (c->o.rx_buf_size + 63) & ~(size_t)63; /* every buffer 64-aligned */
    c->rx_pool_len = page_round((size_t)c->o.rx_bufs * c->o.rx_buf_size);
    c->rx_pool = c->rx_pool_len ? map_region(c, c->rx_pool_len, &c->rx_memh) : NULL;
    if (!c->rx_pool)
        return afd_errf(err, -ENOMEM, "xport: cannot map %d receive buffers of %zu bytes",
                        c->o.rx_bufs, c->o.rx_buf_size);
    c->rx_stack = xmalloc(sizeof(int) * (size_t)c->o.rx_bufs);
    for (int i = 0; i < c->o.rx_bufs; i++)
        c->rx_stack[c->rx_top++] = c->o.rx_bufs - 1 - i;
    return 0;
}

/* ---- request pools ---- */

xp_sreq *xp_sreq_get(xp_ctx *c) {
    xp_sreq *sr = c->sreq_free;
    if (sr) {
        c->sreq_free = sr->qnext;
    } else {
        sr = xcalloc(1, sizeof *sr);
        sr->c = c;
        sr->all_next = c->sreq_all;
        c->sreq_all = sr;
    }
    sr->qnext = sr->prev = sr->next = NULL;
    sr->peer = NULL;
    sr->cb = NULL;
    sr->arg = NULL;
    sr->req = NULL;
    sr->status = 0;
    return sr;
}

void xp_sreq_put(xp_ctx *c, xp_sreq *sr) {
    sr->qnext = c->sreq_free;
    c->sreq_free = sr;
}

/* ---- peers ---- */

static xp_peer *peer_new(xp_ctx *c, ucp_ep_h ep, const char *name) {
    xp_peer *p = xcalloc(1, sizeof *p);
    p->c = c;
    p->ep = ep;
    p->state = XP_P_UP;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->last_rx_ns = p->last_tx_ns = afd_now_ns();
    wire_limits_default(&p->lim);
    p->lim.max_payload = (uint32_t)c->o.max_payload;
    if (c->n_peers == c->cap_peers) {
        c->cap_peers = c->cap_peers ? 2 * c->cap_peers : 8;
        c->peers = xrealloc(c->peers, sizeof *c->peers * (size_t)c->cap_peers);
    }
    p->idx = c->n_peers;
    c->peers[c->n_peers++] = p;
    c->st.peers_up++;
    return p;
}

/* The live peer of a UCX endpoint, or NULL. */
xp_peer *xp_peer_by_ep(const xp_ctx *c, ucp_ep_h ep) {
    if (!ep) return NULL;
    for (int i = 0; i < c->n_peers; i++)
        if (c->peers[i]->ep == ep) return c->peers[i];
    return NULL;
}

/* Removes the peer from the context and frees it (on_down has run). */
void xp_peer_destroy(xp_peer *p) {
    xp_ctx *c = p->c;
    int i = p->idx;
    c->peers[i] = c->peers[--c->n_peers];
    c->peers[i]->idx = i;
    c->n_closing--;
    free(p);
}

void xp_peer_down(xp_peer *p, int reason, int mode, const char *fmt, ...) {
    xp_ctx *c = p->c;
    if (p->state >= XP_P_DOWN || (p->state == XP_P_DRAIN && mode != XP_CLOSE_FORCE)) return;
    if (p->state == XP_P_UP) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->why, sizeof p->why, fmt, ap);
        va_end(ap);
        p->reason = reason;
        c->n_closing++;
        bool quiet =
            reason == XP_DOWN_CLOSED || reason == XP_DOWN_GOODBYE || reason == XP_DOWN_SHUTDOWN;
        afd_log(quiet ? AFD_LOG_INFO : AFD_LOG_WARN, "xport: peer %s down (%s): %s", p->name,
                xp_down_name(reason), p->why);
    }
    bool goodbye = mode == XP_CLOSE_GOODBYE && p->state == XP_P_UP;
    p->deadline_ns = afd_now_ns() + (uint64_t)c->o.close_timeout_ms * 1000000u;
    p->state = goodbye ? XP_P_DRAIN : XP_P_DOWN;
    p->force = mode == XP_CLOSE_FORCE;
    if (goodbye) {
        /* GOODBYE, then let it and every earlier send flush before the endpoint closes (a
         * failed send re-enters here with FORCE and moves the peer to DOWN) */
        int32_t code = reason == XP_DOWN_BAD_FRAME ? AFD_E_FORMAT : 0;
        xp_sreq *sr = xp_sreq_get(c);
        size_t n = 0;
        wire_goodbye_encode(sr->body, sizeof sr->body, code, p->why, &n);
        wire_hdr h = {.type = WIRE_T_GOODBYE, .sender = c->o.instance_id, .layer = WIRE_LAYER_NONE};
        xp_frame_send(p, sr, &h, sr->body, n);
    }
    xp_kick(c);
}

void xp_peer_close(xp_peer *p, const char *why) {
    if (p) xp_peer_down(p, XP_DOWN_CLOSED, XP_CLOSE_GOODBYE, "%s", why ? why : "closed");
}

void xp_peer_set_ud(xp_peer *p, void *ud) {
    p->ud = ud;
}
void *xp_peer_ud(const xp_peer *p) {
    return p->ud;
}
const char *xp_peer_name(const xp_peer *p) {
    return p->name;
}

void xp_peer_set_limits(xp_peer *p, const wire_limits *lim) {
    p->lim = *lim;
    p->lim.types |= WIRE_TYPE_BIT(WIRE_T_HEARTBEAT) | WIRE_TYPE_BIT(WIRE_T_GOODBYE);
    if (p->lim.max_payload > p->c->o.max_payload)
        p->lim.max_payload = (uint32_t)p->c->o.max_payload;
}

/* ---- sending ---- */

void xp_cq_push(xp_ctx *c, xp_sreq *sr) {
    sr->qnext = NULL;
    if (c->cq_tail)
        c->cq_tail->qnext = sr;
    else
        c->cq_head = sr;
    c->cq_tail = sr;
}

void xp_send_done(void *req, ucs_status_t st, void *ud) {
    xp_sreq *sr = ud;
    ucp_request_free(req);
    sr->req = NULL;
    sr->status = xp_status_err(st);
    xp_cq_push(sr->c, sr);
}

void xp_tx_link(xp_peer *p, xp_sreq *sr) {
    sr->peer = p;
    sr->prev = NULL;
    sr->next = p->tx_list;
    if (p->tx_list) p->tx_list->prev = sr;
    p->tx_list = sr;
    p->tx_inflight++;
}

/* Sends one frame with request sr (header encoded into sr->hdr). 0, or negative: sr has been
 * returned to the pool and the peer goes down when UCX refused the send. */
int xp_frame_send(xp_peer *p, xp_sreq *sr, const wire_hdr *h, const void *payload, size_t len) {
    xp_ctx *c = p->c;
    wire_hdr hh = *h;
    hh.payload_len = (uint32_t)len;
    wire_hdr_encode(sr->hdr, &hh);
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_REPLY,
                              .cb.send = xp_send_done,
                              .user_data = sr};
    ucp_mem_h memh = len ? region_of(c, payload, len) : NULL;
    if (memh) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        rp.memh = memh;
    }
    sr->peer = p;
    void *req = XP_CHECK_PTR(
        AFD_LOG_WARN, ucp_am_send_nbx(p->ep, XP_AM_ID, sr->hdr, WIRE_HDR_SIZE, payload, len, &rp));
    if (UCS_PTR_IS_ERR(req)) {
        xp_sreq_put(c, sr);
        xp_peer_down(p, XP_DOWN_ERROR, XP_CLOSE_FORCE, "send failed: %s",
                     ucs_status_string(UCS_PTR_STATUS(req)));
        return -EIO;
    }
    xp_tx_link(p, sr);
    if (req) {
        sr->req = req;
    } else {
        sr->status = 0;
        xp_cq_push(c, sr);
        xp_kick(c);
    }
    p->last_tx_ns = afd_now_ns();
    c->st.frames_out++;
    c->st.bytes_out += len;
    return 0;
}

int xp_send(xp_peer *p, const wire_hdr *h, const void *payload, size_t len, xp_send_cb cb,
            void *arg) {
    if (!p || !h || (len && !payload)) return -EINVAL;
    if (p->state != XP_P_UP) return AFD_E_STATE;
    if (len > UINT32_MAX) return AFD_E_LIMIT;
    xp_sreq *sr = xp_sreq_get(p->c);
    sr->cb = cb;
    sr->arg = arg;
    int rc = xp_frame_send(p, sr, h, payload, len);
    if (p->c->base) xp_kick(p->c);
    return rc;
}

int xp_send_heartbeat(xp_peer *p) {
    wire_hdr h = {
        .type = WIRE_T_HEARTBEAT, .sender = p->c->o.instance_id, .layer = WIRE_LAYER_NONE};
    int rc = xp_frame_send(p, xp_sreq_get(p->c), &h, NULL, 0);
    if (!rc) p->c->st.hb_out++;
    return rc;
}

/* ---- endpoints ---- */

/* An endpoint error (also a disconnect seen by the connection manager, even in mode NONE) is
 * acted on after the progress pass: frames the peer sent before closing may still be queued
 * on another transport (shared memory) and are delivered first, GOODBYE included. */
static void ep_err(void *arg, ucp_ep_h ep, ucs_status_t st) {
    xp_ctx *c = arg;
    xp_peer *p = xp_peer_by_ep(c, ep);
    if (p && !p->ep_status) {
        p->ep_status = st;
        c->n_failed++;
    }
}

static ucp_err_handling_mode_t err_mode(const xp_ctx *c) {
    return c->o.err_mode == XP_ERR_PEER ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
}

static void sockaddr_name(const struct sockaddr *sa, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        port = ntohs(s4->sin_port);
        snprintf(out, n, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
        snprintf(out, n, "[%s]:%d", ip, port);
    } else {
        snprintf(out, n, "family-%d", sa->sa_family);
    }
}

static void on_conn(ucp_conn_request_h cr, void *arg) {
    xp_ctx *c = arg;
    char name[64] = "?";
    ucp_conn_request_attr_t ca = {.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR};
    if (XP_CHECK(AFD_LOG_WARN, ucp_conn_request_query(cr, &ca)) == UCS_OK)
        sockaddr_name((const struct sockaddr *)&ca.client_address, name, sizeof name);
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .conn_request = cr,
                          .err_mode = err_mode(c),
                          .err_handler = {ep_err, c}};
    ucp_ep_h h;
    if (XP_CHECK(AFD_LOG_ERROR, ucp_ep_create(c->worker, &ep, &h)) != UCS_OK) return;
    xp_peer *p = peer_new(c, h, name);
    log_info("xport: accepted %s", p->name);
    /* on_accept runs inside this UCX callback, so that its xp_peer_set_limits applies to the
     * very first frame; a nested xp_progress does nothing here (c->in_ucx) */
    if (c->h.on_accept && c->h.on_accept(c->ud, p) < 0)
        xp_peer_down(p, XP_DOWN_REFUSED, XP_CLOSE_GOODBYE, "connection refused by on_accept");
}

/* Resolves host:port (numeric or a name) for a listener (passive) or a connection. */
static int resolve(const char *addr, int port, bool passive, struct sockaddr_storage *ss,
                   socklen_t *sl, afd_err *err) {
    if (!addr || port < 0 || port > 65535)
        return afd_errf(err, -EINVAL, "xport: bad address %s:%d", addr ? addr : "(null)", port);
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(addr, ps, &hints, &ai);
    if (rc || !ai)
        return afd_errf(err, -EINVAL, "xport: cannot resolve %s: %s", addr, gai_strerror(rc));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int xp_listen(xp_ctx *c, const char *addr, int port, int *bound_port, afd_err *err) {
    if (c->listener) return afd_errf(err, AFD_E_STATE, "xport: already listening");
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = resolve(addr, port, true, &ss, &sl, err);
    if (rc) return rc;
    ucp_listener_params_t lp = {.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
                                              UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
                                .sockaddr = {(struct sockaddr *)&ss, sl},
                                .conn_handler = {on_conn, c}};
    ucs_status_t st = XP_CHECK(AFD_LOG_ERROR, ucp_listener_create(c->worker, &lp, &c->listener));
    if (st != UCS_OK)
        return afd_errf(err, -EADDRNOTAVAIL, "xport: cannot listen on %s:%d: %s", addr, port,
                        ucs_status_string(st));
    ucp_listener_attr_t la = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    if (XP_CHECK(AFD_LOG_ERROR, ucp_listener_query(c->listener, &la)) != UCS_OK)
        return afd_errf(err, -EIO, "xport: cannot query the listener on %s:%d", addr, port);
    const struct sockaddr *sa = (const struct sockaddr *)&la.sockaddr;
    int bp = sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                                       : ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (bound_port) *bound_port = bp;
    log_info("xport: listening on %s:%d (err mode %s)", addr, bp,
             c->o.err_mode == XP_ERR_PEER ? "peer" : "none");
    return 0;
}

int xp_connect(xp_ctx *c, const char *addr, int port, xp_peer **out, afd_err *err) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = resolve(addr, port, false, &ss, &sl, err);
    if (rc) return rc;
    char name[64];
    sockaddr_name((struct sockaddr *)&ss, name, sizeof name);
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
                          .sockaddr = {(struct sockaddr *)&ss, sl},
                          .err_mode = err_mode(c),
                          .err_handler = {ep_err, c}};
    ucp_ep_h h;
    ucs_status_t st = XP_CHECK(AFD_LOG_ERROR, ucp_ep_create(c->worker, &ep, &h));
    if (st != UCS_OK)
        return afd_errf(err, -ECONNREFUSED, "xport: cannot connect to %s: %s", name,
                        ucs_status_string(st));
    *out = peer_new(c, h, name);
    log_info("xport: connecting to %s", name);
    return 0;
}

/* ---- context ---- */

static int ucp_setup(xp_ctx *c, afd_err *err) {
    /* A daemon restarted on its port (systemd Restart=) must be able to listen while the old
     * process's connections sit in TIME_WAIT; Linux still refuses a port another socket
     * listens on. The transport reads this from the environment only. */
    setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
    ucp_config_t *cfg;
    if (XP_CHECK(AFD_LOG_ERROR, ucp_config_read(NULL, NULL, &cfg)) != UCS_OK)
        return afd_errf(err, -EIO, "xport: cannot read the UCX configuration");
    /* Indirect endpoint/request ids on the wire: with the default ('auto') a mode-NONE
     * endpoint's id is its address, and a frame that arrives after we closed it (the peer did
     * not know yet) makes UCX dereference a freed endpoint (seen: an assertion in
     * ucp_am_handler_reply). Indirect ids turn that into a dropped message. */
    ucs_status_t st = XP_CHECK(AFD_LOG_ERROR, ucp_config_modify(cfg, "PROTO_INDIRECT_ID", "on"));
    if (st == UCS_OK && c->o.ucx_tls)
        st = XP_CHECK(AFD_LOG_ERROR, ucp_config_modify(cfg, "TLS", c->o.ucx_tls));
    if (st == UCS_OK && c->o.ucx_net_devices)
        st = XP_CHECK(AFD_LOG_ERROR, ucp_config_modify(cfg, "NET_DEVICES", c->o.ucx_net_devices));
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
                       .features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP,
                       .name = "afd"};
    if (st == UCS_OK) st = XP_CHECK(AFD_LOG_ERROR, ucp_init(&pp, cfg, &c->ucp));
    ucp_config_release(cfg);
    if (st != UCS_OK)
        return afd_errf(err, -EIO, "xport: UCX init failed (tls %s, devices %s): %s",
                        c->o.ucx_tls ? c->o.ucx_tls : "default",
                        c->o.ucx_net_devices ? c->o.ucx_net_devices : "default",
                        ucs_status_string(st));
    return 0;
}

static int worker_setup(xp_ctx *c, afd_err *err) {
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    if (XP_CHECK(AFD_LOG_ERROR, ucp_worker_create(c->ucp, &wp, &c->worker)) != UCS_OK)
        return afd_errf(err, -EIO, "xport: cannot create a UCP worker");
    ucp_am_handler_param_t hp = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                      UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = XP_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = xp_am_cb,
        .arg = c};
    if (XP_CHECK(AFD_LOG_ERROR, ucp_worker_set_am_recv_handler(c->worker, &hp)) != UCS_OK)
        return afd_errf(err, -EIO, "xport: cannot set the AM handler");
    ucp_worker_attr_t wa = {.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER};
    if (XP_CHECK(AFD_LOG_ERROR, ucp_worker_query(c->worker, &wa)) != UCS_OK ||
        wa.max_am_header < WIRE_HDR_SIZE)
        return afd_errf(err, -EIO, "xport: UCX AM headers limited to %zu bytes (need %d)",
                        (size_t)wa.max_am_header, WIRE_HDR_SIZE);
    if (XP_CHECK(AFD_LOG_ERROR, ucp_worker_get_efd(c->worker, &c->efd)) != UCS_OK)
        return afd_errf(err, -EIO, "xport: no UCX worker event fd");
    return 0;
}

static void timers_setup(xp_ctx *c) {
    int a = c->o.heartbeat_ms, b = c->o.peer_timeout_ms;
    int m = a && b ? (a < b ? a : b) : a ? a : b;
    int tick = m / 4;
    tick = tick < 1 ? 1 : tick > 250 ? 250 : tick;
    c->tick_ns = m ? (uint64_t)tick * 1000000u : 0;
    c->next_tick_ns = afd_now_ns() + c->tick_ns;
}

int xp_init(xp_ctx **out, const xp_opts *o, const xp_handlers *h, void *ud, afd_err *err) {
    *out = NULL;
    if (!o || !h || !h->on_frame)
        return afd_errf(err, -EINVAL, "xport: options and an on_frame handler are required");
    int rc = opts_check(o, err);
    if (rc) return rc;
    xp_ctx *c = xcalloc(1, sizeof *c);
    c->o = *o;
    c->h = *h;
    c->ud = ud;
    c->efd = -1;
    rc = ucp_setup(c, err);
    c->o.ucx_tls = c->o.ucx_net_devices = NULL; /* borrowed only during init */
    if (!rc) rc = worker_setup(c, err);
    if (!rc) rc = rx_pool_init(c, err);
    if (rc) {
        xp_free(c);
        return rc;
    }
    timers_setup(c);
    *out = c;
    return 0;
}

void xp_get_stats(const xp_ctx *c, xp_stats *s) {
    *s = c->st;
}

/* ---- teardown ---- */

/* Closes what is still open after the bounded shutdown: abandons close requests and in-flight
 * sends (callbacks with -ECANCELED), then on_down, for every peer. */
static void peers_cut(xp_ctx *c) {
    while (c->n_peers) {
        xp_peer *p = c->peers[c->n_peers - 1];
        if (p->state == XP_P_UP)
            xp_peer_down(p, XP_DOWN_SHUTDOWN, XP_CLOSE_FORCE, "context shut down");
        xp_rx_detach(p);
        xp_rkeys_drop(p);
        if (p->close_req) ucp_request_free(p->close_req);
        p->close_req = NULL;
        p->ep = NULL; /* destroyed with the worker */
        p->state = XP_P_CLOSED;
        p->deadline_ns = 0;
        xp_reap(c, afd_now_ns(), true);
    }
}

static void free_pools(xp_ctx *c) {
    for (xp_sreq *sr = c->sreq_all, *n; sr; sr = n) {
        n = sr->all_next;
        free(sr);
    }
    for (xp_rx *rx = c->rx_all, *n; rx; rx = n) {
        n = rx->all_next;
        if (rx->heap) free(rx->buf);
        free(rx->ebuf);
        free(rx);
    }
    for (xp_region *r = c->regions, *n; r; r = n) {
        n = r->next;
        log_warn("xport: registered buffer %p (%zu bytes) still allocated at xp_free", r->addr,
                 r->len);
        unmap_region(c, r->addr, r->len, r->memh);
        free(r);
    }
    if (c->rx_pool) unmap_region(c, c->rx_pool, c->rx_pool_len, c->rx_memh);
    xp_mrs_free(c);
    free(c->rx_stack);
    free(c->peers);
}

/* Bounded graceful shutdown: GOODBYE to every peer, progress until all are closed. */
static void peers_close_all(xp_ctx *c) {
    for (int i = 0; i < c->n_peers; i++)
        xp_peer_down(c->peers[i], XP_DOWN_SHUTDOWN, XP_CLOSE_GOODBYE, "context shut down");
    uint64_t end = afd_now_ns() + 2 * (uint64_t)c->o.close_timeout_ms * 1000000u + 50000000u;
    while (c->n_peers && afd_now_ns() < end) {
        xp_progress(c);
        if (c->n_peers) usleep(100);
    }
}

void xp_free(xp_ctx *c) {
    if (!c) return;
    xp_detach(c);
    if (c->listener) ucp_listener_destroy(c->listener);
    c->listener = NULL;
    if (c->worker) {
        peers_close_all(c);
        peers_cut(c);
        ucp_worker_destroy(c->worker);
    }
    /* after the worker: UCX may have completed abandoned requests into our pools */
    if (c->ucp) {
        free_pools(c);
        ucp_cleanup(c->ucp);
    } else {
        free(c->peers);
    }
    free(c);
}
