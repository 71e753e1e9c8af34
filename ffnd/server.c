/* server.c: ffnd's event loop: peers, handshake, A2F intake, coalescing, F2A answers, drain.
 *
 * Flow of one micro-batch: on_frame(A2F) validates it against the peer's handshake dims, flushes
 * the open batch first if this one cannot join it (another layer, or full), adds it, and runs the
 * batch at once if every connected peer has a request in it or it is full; otherwise the batch
 * runs when the window timer fires. flush() computes, encodes each request's rows into a reply
 * arena and sends them.
 *
 * Reply arenas: registered buffers big enough for a whole batch's answers; an arena is busy
 * until the last of its sends completes. With every arena busy, flush() drives the transport
 * until one is free (the peers are then slower than the FFN: back-pressure, not loss).
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/backend/backend.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/notify.h"
#include "common/base/metrics.h"
#include "common/model/weights.h"
#include "common/net/http_admin.h"
#include "common/net/portfile.h"
#include "ffnd/batcher.h"
#include "ffnd/ffnd.h"
#include "proto/xport.h"

#define N_ARENAS 3
#ifndef AFD_VERSION
#define AFD_VERSION "0.1.0"
#endif

enum { PEER_HELLO, PEER_SESSION, PEER_CLOSING };

typedef struct fpeer {
    ffnd *d;
    xp_peer *xp;
    int state;
    wire_hello hello;   /* theirs */
    wire_limits lim;    /* session limits */
    uint64_t batch_gen; /* the batch generation it last contributed to */
    bool counted;       /* in n_session */
    char name[80];
    struct fpeer *prev, *next; /* ffnd's list of peers */
} fpeer;

typedef struct arena {
    uint8_t *buf;
    size_t cap, used;
    int pending; /* sends in flight from this arena */
} arena;

struct ffnd {
    ffnd_cfg cfg;
    afd_backend *be;
    afd_weights w;
    st_set *set;
    uint64_t fingerprint;
    wire_hello mine;
    wire_dims dims;
    uint8_t f2a_dt;
    xp_ctx *xp;
    struct event_base *base;
    struct event *ev_window, *ev_term, *ev_int, *ev_wd;
    uint64_t last_status_ns;
    afd_admin *admin;
    afd_metrics *reg;
    ffn_batcher fb;
    uint64_t batch_gen;
    int batch_peers;    /* distinct peers in the open batch */
    int n_session;      /* peers past the handshake */
    int n_peers;
    fpeer *peers;       /* every connected peer */
    bool stopping, window_armed;
    arena arenas[N_ARENAS];
    int data_port, admin_port;
    /* metrics */
    afd_metric *m_batches, *m_batch_tok, *m_queue_wait, *m_a2f_bytes, *m_f2a_bytes, *m_peers;
    afd_metric *m_err_frame, *m_err_peer, *m_refused, *m_dropped_answers;
    afd_metric **m_layer_secs; /* [n_layers] */
};

/* ---- metrics ------------------------------------------------------------------------------ */

static const double tok_buckets[] = {1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096};
static const double sec_buckets[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1};

static void metrics_init(ffnd *d) {
    afd_metrics *r = d->reg;
#define NB(a) (int)(sizeof a / sizeof a[0])
    const char *errs = "peers dropped, by reason";
    d->m_batches = afd_metrics_counter(r, "afd_ffnd_batches_total", "FFN batches computed", NULL);
    d->m_batch_tok = afd_metrics_histogram(r, "afd_ffnd_batch_tokens", "tokens per FFN batch",
                                           tok_buckets, NB(tok_buckets), NULL);
    d->m_queue_wait = afd_metrics_histogram(r, "afd_ffnd_queue_wait_seconds",
                                            "A2F arrival to the start of its batch",
                                            sec_buckets, NB(sec_buckets), NULL);
    d->m_a2f_bytes = afd_metrics_counter(r, "afd_ffnd_a2f_bytes_total", "A2F payload bytes in",
                                         NULL);
    d->m_f2a_bytes = afd_metrics_counter(r, "afd_ffnd_f2a_bytes_total",
                                         "F2A payload bytes out", NULL);
    d->m_peers = afd_metrics_gauge(r, "afd_ffnd_peers", "peers past the handshake", NULL);
    d->m_err_frame = afd_metrics_counter(r, "afd_ffnd_errors_total", errs, "kind", "bad_frame",
                                         NULL);
    d->m_err_peer = afd_metrics_counter(r, "afd_ffnd_errors_total", errs, "kind", "peer_down",
                                        NULL);
    d->m_refused = afd_metrics_counter(r, "afd_ffnd_errors_total", errs, "kind", "refused",
                                       NULL);
    d->m_dropped_answers = afd_metrics_counter(
        r, "afd_ffnd_answers_dropped_total", "answers computed for peers that went away", NULL);
    int L = d->w.cfg.n_layers;
    d->m_layer_secs = xcalloc((size_t)L, sizeof *d->m_layer_secs);
    for (int i = 0; i < L; i++) {
        char layer[16];
        snprintf(layer, sizeof layer, "%d", i);
        d->m_layer_secs[i] = afd_metrics_histogram(
            r, "afd_ffnd_layer_compute_seconds", "FFN compute time of one batch, per layer",
            sec_buckets, NB(sec_buckets), "layer", layer, NULL);
    }
    afd_metrics_add_process(r, AFD_VERSION);
#undef NB
}

/* ---- replies -------------------------------------------------------------------------------- */

static void arena_sent(void *arg, int status) {
    arena *a = arg;
    (void)status; /* a failed send shows up as the peer going down */
    if (--a->pending == 0)
        a->used = 0;
}

static arena *arena_get(ffnd *d, size_t need) {
    int64_t deadline = (int64_t)afd_now_ns() + (int64_t)d->cfg.peer_timeout_ms * 1000000;
    for (;;) {
        for (int i = 0; i < N_ARENAS; i++)
            if (d->arenas[i].pending == 0 && d->arenas[i].cap >= need) {
                d->arenas[i].used = 0;
                return &d->arenas[i];
            }
        if ((int64_t)afd_now_ns() > deadline)
            return NULL;
        xp_progress(d->xp); /* back-pressure: wait for the oldest answers to leave */
    }
}

static size_t align_up(size_t n) { return (n + WIRE_ALIGN - 1) & ~(size_t)(WIRE_ALIGN - 1); }

static void reply_one(ffnd *d, arena *a, int i) {
    const fb_req *r = &d->fb.reqs[i];
    fpeer *p = r->owner;
    if (!p || p->state != PEER_SESSION) {
        afd_metric_inc(d->m_dropped_answers);
        return;
    }
    size_t len = wire_f2a_size_dt(&d->dims, r->hdr.n_tok, d->f2a_dt);
    uint8_t *buf = a->buf + a->used;
    int rc = fb_encode(&d->fb, i, &d->dims, d->f2a_dt, buf);
    if (rc) {
        log_error("F2A encode for %s: %s", p->name, wire_strerror(rc));
        return;
    }
    wire_hdr h = r->hdr;
    h.type = WIRE_T_F2A;
    h.flags = wire_f2a_flags(d->f2a_dt);
    h.sender = (uint32_t)d->cfg.instance_id;
    if (xp_send(p->xp, &h, buf, len, arena_sent, a) == 0) {
        a->used += align_up(len);
        a->pending++;
        afd_metric_add(d->m_f2a_bytes, len);
    }
}

/* Runs the open batch and answers every request in it. */
static void flush(ffnd *d) {
    ffn_batcher *b = &d->fb;
    if (b->n_req == 0)
        return;
    if (d->window_armed) {
        evtimer_del(d->ev_window);
        d->window_armed = false;
    }
    int64_t t0 = (int64_t)afd_now_ns();
    for (int i = 0; i < b->n_req; i++)
        afd_metric_observe(d->m_queue_wait, (double)(t0 - b->reqs[i].arrived_ns) * 1e-9);
    int rc = fb_run(b);
    int64_t t1 = (int64_t)afd_now_ns();
    afd_metric_observe(d->m_layer_secs[b->layer], (double)(t1 - t0) * 1e-9);
    afd_metric_observe(d->m_batch_tok, b->n_tok);
    afd_metric_inc(d->m_batches);
    size_t need = (size_t)b->n_req * WIRE_ALIGN + wire_f2a_size_dt(&d->dims, (uint32_t)b->n_tok,
                                                                    d->f2a_dt);
    arena *a = rc ? NULL : arena_get(d, need);
    if (rc || !a) {
        /* the compute failed (a kernel) or answers cannot leave: the peers get an error and
         * are dropped rather than waiting forever */
        log_error("layer %d batch of %d tokens: %s", b->layer, b->n_tok,
                  rc ? afd_strerror(rc) : "no reply buffer within the peer timeout");
        for (int i = 0; i < b->n_req; i++) {
            fpeer *p = b->reqs[i].owner;
            if (p && p->state == PEER_SESSION) {
                p->state = PEER_CLOSING;
                xp_peer_close(p->xp, "ffnd failed to compute a batch");
            }
        }
    } else {
        for (int i = 0; i < b->n_req; i++)
            reply_one(d, a, i);
    }
    fb_reset(b);
    d->batch_gen++;
    d->batch_peers = 0;
}

static void on_window(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    ffnd *d = arg;
    d->window_armed = false;
    flush(d);
}

/* ---- frames ----------------------------------------------------------------------------- */

static void free_cb(void *arg, int status) {
    (void)status;
    free(arg);
}

/* Sends a small control frame from a heap copy that its send callback frees. */
static void send_small(ffnd *d, fpeer *p, uint8_t type, uint8_t *buf, size_t len) {
    wire_hdr h = {.type = type, .sender = (uint32_t)d->cfg.instance_id,
                  .layer = WIRE_LAYER_NONE};
    if (xp_send(p->xp, &h, buf, len, free_cb, buf))
        free(buf);
}

static void send_error(ffnd *d, fpeer *p, int code, const char *msg) {
    uint8_t *buf = xmalloc(WIRE_MSG_MAX_LEN);
    size_t len;
    if (wire_error_encode(buf, WIRE_MSG_MAX_LEN, code, msg, &len)) {
        free(buf);
        return;
    }
    send_small(d, p, WIRE_T_ERROR, buf, len);
}

static int on_hello(ffnd *d, fpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    char why[WIRE_REASON_MAX + 1] = "";
    int rc = h->type == WIRE_T_HELLO ? wire_hello_decode(pl, len, &p->hello) : WIRE_E_TYPE;
    int status = WIRE_REFUSE_NONE;
    if (rc) {
        snprintf(why, sizeof why, "bad HELLO: %s", wire_strerror(rc));
        status = WIRE_REFUSE_VERSION;
    } else if (d->stopping) {
        snprintf(why, sizeof why, "ffnd is draining");
        status = WIRE_REFUSE_STATE;
    } else if (d->n_session >= d->cfg.max_peers) {
        snprintf(why, sizeof why, "%d peers connected (max_peers %d)", d->n_session,
                 d->cfg.max_peers);
        status = WIRE_REFUSE_BUSY;
    } else {
        status = wire_hello_check(&d->mine, &p->hello, why, sizeof why);
    }
    wire_limits base;
    wire_limits_default(&base);
    base.max_tok = (uint32_t)d->cfg.max_tokens;
    if (status == WIRE_REFUSE_NONE &&
        wire_limits_session(&base, &d->mine, &p->hello, &d->dims, &p->lim)) {
        snprintf(why, sizeof why, "limits: micro-batch of %u tokens does not fit", 
                 p->hello.max_tok);
        status = WIRE_REFUSE_LIMIT;
    }
    wire_hello ack = d->mine;
    ack.status = (uint8_t)status;
    snprintf(ack.reason, sizeof ack.reason, "%s", why);
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &ack, &n) == 0)
        send_small(d, p, WIRE_T_HELLO_ACK, buf, n);
    else
        free(buf);
    if (status != WIRE_REFUSE_NONE) {
        log_warn("peer %s refused: %s (%s)", p->name, why, wire_refuse_name(status));
        afd_metric_inc(d->m_refused);
        p->state = PEER_CLOSING;
        xp_peer_close(p->xp, why);
        return 0;
    }
    snprintf(p->name, sizeof p->name, "%s/%s#%u", xp_peer_name(p->xp), p->hello.name,
             p->hello.instance_id);
    xp_peer_set_limits(p->xp, &p->lim);
    p->state = PEER_SESSION;
    p->counted = true;
    d->n_session++;
    afd_metric_set(d->m_peers, d->n_session);
    log_info("peer %s connected (%s, max %u tokens per micro-batch)", p->name,
             wire_role_name(p->hello.role), p->hello.max_tok);
    return 0;
}

static int drop(ffnd *d, fpeer *p, int code, const char *what) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s: %s", what, wire_strerror(code));
    log_warn("peer %s dropped: %s", p->name, msg);
    afd_metric_inc(d->m_err_frame);
    send_error(d, p, code, msg);
    p->state = PEER_CLOSING;
    return -1;
}

static int on_a2f(ffnd *d, fpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    wire_a2f a;
    int rc = wire_a2f_view(h, pl, len, &d->dims, &p->lim, &a);
    if (rc)
        return drop(d, p, rc, "A2F");
    afd_metric_add(d->m_a2f_bytes, len);
    if (!fb_fits(&d->fb, h->layer, (int)a.n_tok))
        flush(d);
    if (fb_add(&d->fb, h, &a, p) < 0)
        return drop(d, p, WIRE_E_LIMIT, "A2F larger than max_tokens");
    if (p->batch_gen != d->batch_gen + 1) {
        p->batch_gen = d->batch_gen + 1; /* +1: generation 0 means "never" */
        d->batch_peers++;
    }
    if (d->batch_peers >= d->n_session || d->fb.n_tok >= d->fb.cap_tok) {
        flush(d);
    } else if (!d->window_armed) {
        struct timeval tv = {0, (suseconds_t)d->cfg.batch_window_us};
        evtimer_add(d->ev_window, &tv);
        d->window_armed = true;
    }
    return 0;
}

static int on_frame(void *ud, xp_peer *xp, const wire_hdr *h, const uint8_t *pl, size_t len) {
    ffnd *d = ud;
    fpeer *p = xp_peer_ud(xp);
    if (!p || p->state == PEER_CLOSING)
        return -1;
    if (p->state == PEER_HELLO)
        return on_hello(d, p, h, pl, len);
    switch (h->type) {
    case WIRE_T_A2F:
        return on_a2f(d, p, h, pl, len);
    case WIRE_T_GOODBYE:
        p->state = PEER_CLOSING;
        return -1;
    case WIRE_T_ERROR: {
        wire_msg m;
        if (wire_error_decode(pl, len, &m) == 0)
            log_warn("peer %s reports error %d: %s", p->name, m.code, m.text);
        return drop(d, p, WIRE_E_TYPE, "ERROR from peer");
    }
    default:
        return drop(d, p, WIRE_E_TYPE, wire_type_name(h->type));
    }
}

static int on_accept(void *ud, xp_peer *xp) {
    ffnd *d = ud;
    if (d->stopping)
        return -1;
    fpeer *p = xcalloc(1, sizeof *p);
    p->d = d, p->xp = xp, p->state = PEER_HELLO;
    snprintf(p->name, sizeof p->name, "%s", xp_peer_name(xp));
    xp_peer_set_ud(xp, p);
    wire_limits hs;
    wire_limits_handshake(&hs);
    xp_peer_set_limits(xp, &hs);
    p->next = d->peers;
    if (d->peers)
        d->peers->prev = p;
    d->peers = p;
    d->n_peers++;
    return 0;
}

static void on_down(void *ud, xp_peer *xp, int reason, const char *why) {
    ffnd *d = ud;
    fpeer *p = xp_peer_ud(xp);
    if (!p)
        return;
    (void)reason;
    fb_forget(&d->fb, p);
    if (p->counted && p->batch_gen == d->batch_gen + 1)
        d->batch_peers--;
    if (p->counted) {
        d->n_session--;
        afd_metric_set(d->m_peers, d->n_session);
    }
    if (p->state == PEER_SESSION)
        afd_metric_inc(d->m_err_peer);
    log_info("peer %s gone: %s", p->name, why ? why : "closed");
    d->n_peers--;
    if (p->prev)
        p->prev->next = p->next;
    else
        d->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    xp_peer_set_ud(xp, NULL);
    free(p);
    /* a batch that was only waiting for this peer can run now */
    if (!d->stopping && d->fb.n_req && d->batch_peers >= d->n_session)
        flush(d);
}

/* ---- start-up ------------------------------------------------------------------------------ */

static const uint8_t f2a_dtypes[] = {WIRE_DT_BF16, WIRE_DT_E4M3, WIRE_DT_F32};

static int load_model(ffnd *d, afd_err *err) {
    const ffnd_cfg *c = &d->cfg;
    afd_model_config mc;
    int rc = afd_config_load(c->model, &mc, err);
    if (rc)
        return rc;
    afd_shard sh;
    if ((rc = afd_shard_group(&mc, c->ep_rank, c->ep_size, c->tp_rank, c->tp_size, &sh, err)))
        return rc;
    if ((rc = afd_model_open(c->model, AFD_PART_FFN, &sh, &d->w, &d->set, err)))
        return rc;
    d->fingerprint = afd_model_fingerprint(&d->w.cfg, d->set);
    return 0;
}

static int open_backend(ffnd *d, afd_err *err) {
    afd_backend_opts bo = {.kind = "auto", .isa = d->cfg.isa, .n_threads = d->cfg.threads};
    int rc = afd_backend_open(&bo, &d->be);
    if (rc)
        return afd_errf(err, rc, "backend (isa %s): %s", d->cfg.isa, afd_strerror(rc));
    rc = fb_init(&d->fb, d->be, &d->w, d->cfg.max_tokens, d->cfg.max_requests, d->cfg.fp8_group);
    d->fb.wire_only = d->cfg.wire_only;
    return rc ? afd_errf(err, rc, "batch buffers for %d tokens: %s", d->cfg.max_tokens,
                         afd_strerror(rc))
              : 0;
}

static void describe(ffnd *d) {
    const afd_model_config *m = &d->w.cfg;
    const ffnd_cfg *c = &d->cfg;
    wire_hello *h = &d->mine;
    memset(h, 0, sizeof *h);
    h->proto_min = WIRE_VERSION_MIN, h->proto_max = WIRE_VERSION_MAX;
    h->role = WIRE_ROLE_FFND;
    h->instance_id = (uint32_t)c->instance_id;
    h->model_fingerprint = d->fingerprint;
    h->ep_rank = (uint16_t)c->ep_rank, h->ep_size = (uint16_t)c->ep_size;
    h->tp_rank = (uint16_t)c->tp_rank, h->tp_size = (uint16_t)c->tp_size;
    h->n_layers = (uint32_t)m->n_layers, h->n_experts = (uint32_t)m->n_experts;
    h->hidden = (uint32_t)m->hidden;
    h->top_k = (uint16_t)m->top_k, h->fp8_group = (uint16_t)c->fp8_group;
    h->a2f_dtype = WIRE_DT_E4M3, h->f2a_dtype = d->f2a_dt;
    h->max_tok = (uint32_t)c->max_tokens;
    char host[64] = "ffnd";
    gethostname(host, sizeof host - 1);
    snprintf(h->name, sizeof h->name, "%.40s", host);
    for (char *s = h->name; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            *s = '?';
    d->dims = (wire_dims){.hidden = h->hidden, .top_k = h->top_k, .n_experts = h->n_experts,
                          .n_layers = h->n_layers, .fp8_group = h->fp8_group,
                          .a2f_dtype = WIRE_DT_E4M3, .f2a_dtype = d->f2a_dt,
                          .moe_layers = m->is_moe};
}

static int alloc_arenas(ffnd *d, afd_err *err) {
    size_t cap = (size_t)d->cfg.max_requests * WIRE_ALIGN +
                 wire_f2a_size_dt(&d->dims, (uint32_t)d->cfg.max_tokens, d->f2a_dt);
    for (int i = 0; i < N_ARENAS; i++) {
        d->arenas[i].buf = xp_mem_alloc(d->xp, cap);
        d->arenas[i].cap = cap;
        if (!d->arenas[i].buf)
            return afd_errf(err, -ENOMEM, "reply buffers: %d x %zu bytes", N_ARENAS, cap);
    }
    return 0;
}

static int ready(void *ud, char *why, size_t n) {
    ffnd *d = ud;
    if (d->stopping) {
        snprintf(why, n, "draining");
        return 0;
    }
    return 1;
}

static int open_transport(ffnd *d, afd_err *err) {
    const ffnd_cfg *c = &d->cfg;
    xp_opts xo;
    xp_opts_default(&xo);
    xo.err_mode = c->err_mode ? XP_ERR_PEER : XP_ERR_NONE;
    xo.instance_id = (uint32_t)c->instance_id;
    xo.heartbeat_ms = (int)c->heartbeat_ms;
    xo.peer_timeout_ms = (int)c->peer_timeout_ms;
    /* rendezvous A2F payloads of up to a full batch land in registered buffers */
    xo.rx_buf_size = wire_a2f_size(&d->dims, (uint32_t)c->max_tokens, d->dims.top_k > 0);
    xo.rx_bufs = 8;
    xp_handlers hd = {.on_accept = on_accept, .on_frame = on_frame, .on_down = on_down};
    int rc = xp_init(&d->xp, &xo, &hd, d, err);
    if (!rc)
        rc = xp_listen(d->xp, c->listen_addr, c->listen_port, &d->data_port, err);
    if (!rc)
        rc = alloc_arenas(d, err);
    if (!rc)
        rc = xp_attach(d->xp, d->base, c->spin_us);
    return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    log_info("signal %d: draining", (int)sig);
    afd_notify_stopping();
    ffnd_stop(arg);
}

/* systemd's watchdog, petted from the loop itself (a wedged loop stops petting), and a
 * STATUS line every few seconds. */
static void on_wd(evutil_socket_t fd, short what, void *arg) {
    ffnd *d = arg;
    (void)fd, (void)what;
    afd_notify_watchdog();
    uint64_t now = afd_now_ns();
    if (now - d->last_status_ns > 5000000000ull) {
        d->last_status_ns = now;
        afd_notify_status("serving shard ep %d/%d tp %d/%d: %d peer(s)", d->cfg.ep_rank,
                          d->cfg.ep_size, d->cfg.tp_rank, d->cfg.tp_size, d->n_peers);
    }
}


int ffnd_init(ffnd **out, const ffnd_cfg *cfg, afd_err *err) {
    *out = NULL;
    ffnd *d = xcalloc(1, sizeof *d);
    d->cfg = *cfg;
    d->f2a_dt = f2a_dtypes[cfg->f2a_dtype];
    d->base = event_base_new();
    d->reg = afd_metrics_init();
    int rc = d->base && d->reg ? 0 : afd_errf(err, -ENOMEM, "event base / metrics");
    if (!rc)
        rc = load_model(d, err);
    if (!rc)
        rc = open_backend(d, err);
    if (!rc) {
        describe(d);
        metrics_init(d);
        rc = open_transport(d, err);
    }
    if (!rc) {
        d->admin = afd_admin_start(d->base, cfg->admin_addr, cfg->admin_port, &d->admin_port,
                                   d->reg, err);
        rc = d->admin ? 0 : (err->code ? err->code : -EIO);
    }
    if (!rc) {
        afd_admin_set_ready(d->admin, ready, d);
        d->ev_window = evtimer_new(d->base, on_window, d);
        d->ev_term = evsignal_new(d->base, SIGTERM, on_signal, d);
        d->ev_int = evsignal_new(d->base, SIGINT, on_signal, d);
        evsignal_add(d->ev_term, NULL);
        evsignal_add(d->ev_int, NULL);
        uint64_t wd = afd_notify_watchdog_interval_ns();
        d->ev_wd = event_new(d->base, -1, EV_PERSIST, on_wd, d);
        struct timeval tv = {(time_t)((wd ? wd : 5000000000ull) / 1000000000ull),
                             (suseconds_t)((wd ? wd : 5000000000ull) % 1000000000ull / 1000)};
        event_add(d->ev_wd, &tv);
        rc = afd_port_file_write(d->cfg.port_file, d->data_port, d->admin_port, err);
    }
    if (rc) {
        ffnd_free(d);
        return rc;
    }
    log_info("ffnd ready: shard ep %d/%d tp %d/%d of %s, data %s:%d, admin %s:%d, window %lld us",
             cfg->ep_rank, cfg->ep_size, cfg->tp_rank, cfg->tp_size, cfg->model,
             cfg->listen_addr, d->data_port, cfg->admin_addr, d->admin_port,
             (long long)cfg->batch_window_us);
    *out = d;
    return 0;
}

/* ---- run, drain, free ------------------------------------------------------------------- */

void ffnd_stop(ffnd *d) {
    d->stopping = true;
    event_base_loopbreak(d->base);
}

static bool arenas_busy(const ffnd *d) {
    for (int i = 0; i < N_ARENAS; i++)
        if (d->arenas[i].pending)
            return true;
    return false;
}

/* Finishes the open batch, lets its answers leave, says GOODBYE to every peer. */
static int drain(ffnd *d) {
    flush(d);
    int64_t deadline = (int64_t)afd_now_ns() + d->cfg.drain_timeout_ms * 1000000;
    while (arenas_busy(d) && (int64_t)afd_now_ns() < deadline) {
        xp_wait(d->xp, 10);
        afd_notify_watchdog();
    }
    bool clean = !arenas_busy(d);
    for (fpeer *p = d->peers; p; p = p->next)
        if (p->state != PEER_CLOSING) {
            p->state = PEER_CLOSING;
            xp_peer_close(p->xp, "ffnd shutting down");
        }
    while (d->n_peers > 0 && (int64_t)afd_now_ns() < deadline)
        xp_wait(d->xp, 10);
    log_info("ffnd drained %s (%d peers left)", clean ? "cleanly" : "with answers unsent",
             d->n_peers);
    return clean ? 0 : -ETIMEDOUT;
}

int ffnd_run(ffnd *d) {
    while (!d->stopping)
        if (event_base_loop(d->base, 0) < 0)
            return -EIO;
    return drain(d);
}

void ffnd_free(ffnd *d) {
    if (!d)
        return;
    afd_admin_free(d->admin);
    if (d->ev_window)
        event_free(d->ev_window);
    if (d->ev_wd)
        event_free(d->ev_wd);
    if (d->ev_term)
        event_free(d->ev_term);
    if (d->ev_int)
        event_free(d->ev_int);
    for (int i = 0; d->xp && i < N_ARENAS; i++)
        if (d->arenas[i].buf && !d->arenas[i].pending)
            xp_mem_free(d->xp, d->arenas[i].buf);
    xp_free(d->xp); /* the peers still up go down here (on_down frees them) */
    fb_free(&d->fb);
    afd_backend_free(d->be);
    afd_weights_free(&d->w);
    st_set_free(d->set);
    free(d->m_layer_secs);
    afd_metrics_free(d->reg);
    if (d->base)
        event_base_free(d->base);
    free(d);
}
