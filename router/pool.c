/* pool.c: the router's sessions with the attnds: dial, HELLO, REGISTER, LOAD into the SLA,
 * redial configured instances that went down, and hand every sequence message to serve.c.
 *
 * The router dials (the attnds listen on their control port); an instance joins the pool at
 * its REGISTER and serves traffic once the SLA has its first LOAD. One that goes down (GOODBYE,
 * heartbeat timeout, error) leaves the SLA at once: its sequences fail cleanly (serve.c) and a
 * configured one is redialed every reconnect_ms.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "proto/ffn_client.h"
#include "router/router.h"

static void free_cb(void *arg, int status) {
    (void)status;
    free(arg);
}

int pool_send(router *r, rinst *in, const ctrl_msg *m, uint64_t req) {
    if (!in->xp || in->down)
        return AFD_E_PEER;
    size_t cap = 4096 + ctrl_max_payload(&r->clim, WIRE_TYPE_BIT(m->type)), len;
    uint8_t *buf = afd_try_alloc(cap);
    if (!buf)
        return -ENOMEM;
    int rc = ctrl_encode(buf, cap, m, &len);
    if (rc) {
        log_error("encode %s: %s", ctrl_type_name(m->type), wire_strerror(rc));
        free(buf);
        return AFD_E_FORMAT;
    }
    wire_hdr h = ctrl_hdr(m->type, r->hello.instance_id, req);
    rc = xp_send(in->xp, &h, buf, len, free_cb, buf);
    if (rc)
        free(buf);
    return rc;
}

static void send_hello(router *r, rinst *in) {
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &r->hello, &n) != 0) {
        free(buf);
        return;
    }
    wire_hdr h = {.type = WIRE_T_HELLO, .sender = r->hello.instance_id, .layer = WIRE_LAYER_NONE};
    if (xp_send(in->xp, &h, buf, n, free_cb, buf))
        free(buf);
}

static int dial(router *r, rinst *in, afd_err *err) {
    fc_shard_addr a;
    if (fc_parse_addr(in->addr, &a))
        return afd_errf(err, -EINVAL, "attnd address '%s' is not host:port", in->addr);
    int rc = xp_connect(r->xp, a.host, a.port, &in->xp, err);
    if (rc)
        return rc;
    xp_peer_set_ud(in->xp, in);
    wire_limits wl;
    ctrl_wire_limits(&r->clim, CTRL_TYPES_TO_ROUTER, &wl);
    wl.types |= WIRE_TYPES_HANDSHAKE; /* REGISTER may be checked before HELLO_ACK is handled */
    xp_peer_set_limits(in->xp, &wl);
    in->acked = in->registered = in->down = false;
    in->n_load = 0;
    send_hello(r, in);
    return 0;
}

int pool_add(router *r, const char *hostport, bool configured, afd_err *err) {
    rinst *in = xcalloc(1, sizeof *in);
    in->r = r;
    in->configured = configured;
    snprintf(in->addr, sizeof in->addr, "%s", hostport);
    int rc = dial(r, in, err);
    if (rc && !configured) {
        free(in);
        return rc;
    }
    if (rc) { /* a configured instance not reachable now: redial later */
        log_warn("attnd %s: %s (will retry)", hostport, err->msg);
        in->down = true;
        in->last_load_ns = afd_now_ns();
    }
    in->next = r->insts;
    r->insts = in;
    return 0;
}

static bool decode_capable(const rinst *in) {
    return in->reg.role == CTRL_ROLE_BOTH || in->reg.role == CTRL_ROLE_DECODE;
}

static void on_register(router *r, rinst *in, const ctrl_register *g) {
    for (rinst *o = r->insts; o; o = o->next)
        if (o != in && o->registered && !o->down && o->reg.instance_id == g->instance_id) {
            log_error("attnd %s registers as instance %u, which %s already is: dropped",
                      in->addr, g->instance_id, o->addr);
            xp_peer_close(in->xp, "duplicate instance id");
            return;
        }
    in->reg = *g;
    in->registered = true;
    if (decode_capable(in)) {
        in->si = sla_inst_add(r->sla, g->instance_id);
        sla_inst_set_ready(in->si, true);
    }
    log_info("attnd %s registered: instance %u, role %s, %u KV blocks of %u, max batch %u, "
             "context %u, model %s",
             in->addr, g->instance_id,
             g->role == CTRL_ROLE_BOTH ? "both" : g->role == CTRL_ROLE_DECODE ? "decode" : "prefill",
             g->kv_blocks, g->block_size, g->max_batch, g->max_context, g->model);
}

static void poll_sla(router *r) {
    sla_event ev[32];
    int n;
    do {
        n = sla_poll(r->sla, afd_now_ns(), ev, 32);
        serve_admit_events(r, ev, n);
    } while (n == 32);
}

/* An attnd that dialed us says HELLO: the same check the attnds apply, then HELLO_ACK; its
 * REGISTER follows. */
static int on_hello_in(router *r, rinst *in, const wire_hdr *h, const uint8_t *pl, size_t len) {
    wire_hello theirs;
    char why[WIRE_REASON_MAX + 1] = "expected a valid HELLO";
    int status = WIRE_REFUSE_VERSION;
    if (h->type == WIRE_T_HELLO && wire_hello_decode(pl, len, &theirs) == 0)
        status = wire_hello_check(&r->hello, &theirs, why, sizeof why);
    if (status == WIRE_REFUSE_NONE && theirs.role != WIRE_ROLE_ATTND) {
        status = WIRE_REFUSE_ROLE;
        snprintf(why, sizeof why, "the router's control port takes attnds");
    }
    wire_hello ack = r->hello;
    ack.status = (uint8_t)status;
    snprintf(ack.reason, sizeof ack.reason, "%s", status ? why : "");
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    wire_hdr ah = {.type = WIRE_T_HELLO_ACK, .sender = r->hello.instance_id,
                   .layer = WIRE_LAYER_NONE};
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &ack, &n) != 0 ||
        xp_send(in->xp, &ah, buf, n, free_cb, buf))
        free(buf);
    if (status) {
        log_warn("attnd %s refused: %s", in->addr, why);
        xp_peer_close(in->xp, why);
        return 0;
    }
    wire_limits wl;
    ctrl_wire_limits(&r->clim, CTRL_TYPES_TO_ROUTER, &wl);
    xp_peer_set_limits(in->xp, &wl);
    in->acked = true;
    snprintf(in->addr, sizeof in->addr, "%s", xp_peer_name(in->xp));
    log_info("attnd %s (%s#%u) connected to register", in->addr, theirs.name,
             theirs.instance_id);
    return 0;
}

static int on_frame(void *ud, xp_peer *xp, const wire_hdr *h, const uint8_t *pl, size_t len) {
    router *r = ud;
    rinst *in = xp_peer_ud(xp);
    if (!in)
        return -1;
    if (in->inbound && !in->acked)
        return on_hello_in(r, in, h, pl, len);
    if (h->type == WIRE_T_HELLO_ACK) {
        wire_hello a;
        if (wire_hello_decode(pl, len, &a) || a.status) {
            log_error("attnd %s refused us: %s", in->addr, a.reason);
            return -1;
        }
        in->acked = true;
        return 0;
    }
    ctrl_msg m;
    int rc = ctrl_decode(h, pl, len, &r->clim, &m);
    if (rc) {
        log_warn("attnd %s: bad %s: %s", in->addr, ctrl_type_name(h->type), wire_strerror(rc));
        return -1;
    }
    switch (m.type) {
    case WIRE_T_CTRL_REGISTER:
        on_register(r, in, &m.u.reg);
        return 0;
    case WIRE_T_CTRL_LOAD:
        in->load = m.u.load;
        in->n_load++;
        in->last_load_ns = afd_now_ns();
        if (in->si && sla_report(r->sla, in->si, &m.u.load, afd_now_ns()))
            log_warn("attnd %s: inconsistent LOAD ignored", in->addr);
        poll_sla(r);
        return 0;
    default:
        serve_on_msg(r, in, &m);
        if (m.type == WIRE_T_CTRL_TOKENS && m.u.tokens.finish)
            poll_sla(r); /* a departure may admit what waits */
        return 0;
    }
}

static void on_down(void *ud, xp_peer *xp, int reason, const char *why) {
    router *r = ud;
    rinst *in = xp_peer_ud(xp);
    (void)reason;
    if (!in)
        return;
    log_warn("attnd %s (instance %u) down: %s", in->addr, in->reg.instance_id,
             why ? why : "closed");
    in->down = true;
    in->xp = NULL;
    serve_on_inst_down(r, in);
    if (in->si) {
        sla_inst_remove(r->sla, in->si);
        in->si = NULL;
    }
    in->registered = in->acked = false;
    in->last_load_ns = afd_now_ns();
    poll_sla(r); /* what waited for it may now be rejected as unavailable */
    if (!in->configured) {
        for (rinst **pp = &r->insts; *pp; pp = &(*pp)->next)
            if (*pp == in) {
                *pp = in->next;
                break;
            }
        free(in);
    }
}

/* Live registration: an attnd dials our control port. */
static int on_accept(void *ud, xp_peer *xp) {
    router *r = ud;
    if (r->draining)
        return -1;
    rinst *in = xcalloc(1, sizeof *in);
    in->r = r;
    in->xp = xp;
    in->inbound = true;
    snprintf(in->addr, sizeof in->addr, "%s", xp_peer_name(xp));
    xp_peer_set_ud(xp, in);
    wire_limits hs;
    wire_limits_handshake(&hs);
    xp_peer_set_limits(xp, &hs);
    in->next = r->insts;
    r->insts = in;
    return 0;
}

void pool_tick(router *r) {
    uint64_t now = afd_now_ns();
    for (rinst *in = r->insts; in; in = in->next)
        if (in->paused_until_ns && now >= in->paused_until_ns) {
            in->paused_until_ns = 0;
            if (in->si && !in->down && !in->draining)
                sla_inst_set_ready(in->si, true);
        }
    for (rinst *in = r->insts; in; in = in->next)
        if (in->down && in->configured &&
            now - in->last_load_ns > (uint64_t)r->cfg.reconnect_ms * 1000000u) {
            afd_err err = {0};
            in->last_load_ns = now;
            if (dial(r, in, &err))
                log_debug("attnd %s: %s", in->addr, err.msg);
        }
    poll_sla(r); /* queue deadlines */
}

rinst *pool_pick_prefill(router *r) {
    rinst *best = NULL;
    long best_load = 0;
    for (int pass = 0; pass < 2 && !best; pass++)
        for (rinst *in = r->insts; in; in = in->next) {
            if (in->down || !in->registered || !in->n_load || in->draining ||
                in->load.draining)
                continue;
            if (in->reg.role != (pass == 0 ? CTRL_ROLE_PREFILL : CTRL_ROLE_BOTH))
                continue;
            long l = (long)in->load.running + (long)in->load.waiting + in->n_seqs;
            if (!best || l < best_load)
                best = in, best_load = l;
        }
    return best;
}

rinst *pool_by_sla(router *r, const sla_inst *si) {
    for (rinst *in = r->insts; in; in = in->next)
        if (in->si == si && si)
            return in;
    return NULL;
}

bool pool_ready(router *r, char *why, size_t n) {
    int dec = 0, both = 0, pre = 0;
    for (rinst *in = r->insts; in; in = in->next) {
        if (in->down || !in->registered || !in->n_load)
            continue;
        dec += in->reg.role == CTRL_ROLE_DECODE;
        both += in->reg.role == CTRL_ROLE_BOTH;
        pre += in->reg.role == CTRL_ROLE_PREFILL;
    }
    if (r->draining)
        snprintf(why, n, "draining");
    else if (!dec && !both)
        snprintf(why, n, "no decode instance connected");
    else if (!both && !pre)
        snprintf(why, n, "decode instances but no prefill instance connected");
    else
        return true;
    return false;
}

int pool_init(router *r, afd_err *err) {
    xp_opts xo;
    xp_opts_default(&xo);
    xo.err_mode = r->cfg.err_mode ? XP_ERR_PEER : XP_ERR_NONE;
    xo.heartbeat_ms = (int)r->cfg.heartbeat_ms, xo.peer_timeout_ms = (int)r->cfg.peer_timeout_ms;
    xo.instance_id = r->hello.instance_id;
    xo.rx_bufs = 4;
    xo.rx_buf_size = ctrl_max_payload(&r->clim, CTRL_TYPES_TO_ROUTER);
    xp_handlers h = {.on_accept = on_accept, .on_frame = on_frame, .on_down = on_down};
    int rc = xp_init(&r->xp, &xo, &h, r, err);
    r->ctrl_port = -1;
    if (!rc && r->cfg.ctrl_port >= 0)
        rc = xp_listen(r->xp, r->cfg.ctrl_addr, r->cfg.ctrl_port, &r->ctrl_port, err);
    if (!rc)
        rc = xp_attach(r->xp, r->base, 0);
    for (int i = 0; !rc && i < r->cfg.n_attnd; i++)
        rc = pool_add(r, r->cfg.attnd[i], true, err);
    return rc;
}

void pool_free(router *r) {
    xp_free(r->xp); /* on_down for every instance (configured ones stay listed) */
    r->xp = NULL;
    while (r->insts) {
        rinst *in = r->insts;
        r->insts = in->next;
        free(in);
    }
}

void pool_forget(router *r, rinst *in) {
    in->configured = false;
    if (in->xp) {
        xp_peer_close(in->xp, "removed from the pool"); /* on_down frees it */
        return;
    }
    for (rinst **pp = &r->insts; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    free(in);
}

void pool_pause(router *r, rinst *in, int ms) {
    (void)r;
    uint64_t until = afd_now_ns() + (uint64_t)ms * 1000000u;
    if (!in->paused_until_ns)
        log_info("attnd %s refused work: no new sequences for %d ms", in->addr, ms);
    if (until > in->paused_until_ns)
        in->paused_until_ns = until;
    if (in->si)
        sla_inst_set_ready(in->si, false);
}
