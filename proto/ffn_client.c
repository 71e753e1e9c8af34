#include "proto/ffn_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/numfmt.h"
#include "proto/xport.h"

enum { SLOT_FREE, SLOT_BUILT, SLOT_SENT, SLOT_FAILED };

typedef struct fc_slot {
    int state;
    uint32_t n_tok;
    bool moe;
    uint64_t step;
    uint16_t mb, layer;
    uint8_t *a2f;       /* registered send buffer, WIRE_ALIGN */
    size_t a2f_len;     /* laid-out payload bytes */
    int sends_pending;  /* send completions outstanding (the buffer is busy until 0) */
    int answered;       /* shards that answered */
    uint8_t *got;       /* [n_shards] answered flags */
    xp_frame **kept;    /* [n_shards] the answers, kept in the transport's receive buffers */
    wire_f2a *view;     /* [n_shards] their validated views */
} fc_slot;

typedef struct fc_shard {
    fc_group *g;
    int index;
    xp_peer *peer;
    bool acked, down;
    wire_hello hello; /* what we sent */
    wire_limits lim;  /* session limits after the ACK */
} fc_shard;

struct fc_group {
    fc_opts o;
    xp_ctx *xp;
    fc_shard *shards;
    fc_slot *slots;
    int n_acked;
    bool broken;
    char why[320];
    fc_stats st;
};

void fc_opts_default(fc_opts *o) {
    memset(o, 0, sizeof *o);
    o->slots = 3;
    o->max_tok = 256;
    o->role = WIRE_ROLE_ATTND;
    snprintf(o->name, sizeof o->name, "attnd");
    o->dims.a2f_dtype = WIRE_DT_E4M3;
    o->dims.f2a_dtype = WIRE_DT_BF16;
    o->heartbeat_ms = 500;
    o->peer_timeout_ms = 3000;
    o->connect_timeout_ms = 10000;
}

int fc_parse_addr(const char *s, fc_shard_addr *a) {
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof a->host)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 1 || port > 65535)
        return -EINVAL;
    memcpy(a->host, s, (size_t)(colon - s));
    a->host[colon - s] = 0;
    a->port = (int)port;
    return 0;
}

/* ---- failure ---------------------------------------------------------------------------- */

static void group_break(fc_group *g, const char *fmt, const char *who, const char *what) {
    if (!g->broken) {
        snprintf(g->why, sizeof g->why, fmt, who, what);
        log_warn("ffn group broken: %s", g->why);
    }
    g->broken = true;
    for (int i = 0; g->slots && i < g->o.slots; i++)
        if (g->slots[i].state == SLOT_SENT)
            g->slots[i].state = SLOT_FAILED;
}

bool fc_broken(const fc_group *g, char *why, size_t n) {
    if (g->broken && why && n)
        snprintf(why, n, "%s", g->why);
    return g->broken;
}

/* ---- frames from the shards ------------------------------------------------------------- */

static void sent_cb(void *arg, int status) {
    fc_slot *s = arg;
    s->sends_pending--;
    (void)status; /* a failed send also shows as the peer going down */
}

static int on_ack(fc_group *g, fc_shard *sh, const wire_hdr *h, const uint8_t *p, size_t len) {
    wire_hello theirs;
    int rc = wire_hello_decode(p, len, &theirs);
    if (rc) {
        group_break(g, "shard %s: bad HELLO_ACK: %s", xp_peer_name(sh->peer), wire_strerror(rc));
        return -1;
    }
    if (theirs.status != WIRE_REFUSE_NONE) {
        char why[300];
        snprintf(why, sizeof why, "%s (%s)", theirs.reason, wire_refuse_name(theirs.status));
        group_break(g, "shard %s refused us: %s", xp_peer_name(sh->peer), why);
        return -1;
    }
    char why[256];
    if (wire_hello_check(&sh->hello, &theirs, why, sizeof why) != WIRE_REFUSE_NONE) {
        group_break(g, "shard %s does not match: %s", xp_peer_name(sh->peer), why);
        return -1;
    }
    wire_limits base;
    wire_limits_default(&base);
    if ((rc = wire_limits_session(&base, &sh->hello, &theirs, &g->o.dims, &sh->lim))) {
        group_break(g, "shard %s: limits: %s", xp_peer_name(sh->peer), wire_strerror(rc));
        return -1;
    }
    (void)h;
    xp_peer_set_limits(sh->peer, &sh->lim);
    sh->acked = true;
    g->n_acked++;
    return 0;
}

static fc_slot *slot_of(fc_group *g, const wire_hdr *h) {
    for (int i = 0; i < g->o.slots; i++) {
        fc_slot *s = &g->slots[i];
        if (s->state == SLOT_SENT && s->step == h->step && s->mb == h->mb && s->layer == h->layer)
            return s;
    }
    return NULL;
}

/* out (+)= a shard's partial decoded to fp32, exactly as the single-process engine rounds it:
 * the first shard's is stored, the others added (fixed shard order). One pass over the wire
 * bytes, straight from the transport's receive buffer. */
static void accumulate(float *restrict out, const wire_f2a *v, uint32_t hidden, bool first) {
    size_t n = (size_t)v->n_tok * hidden;
    if (v->dtype == WIRE_DT_BF16) {
        const uint16_t *b = v->bf16;
        if (first)
            afd_bf16_to_f32_n(out, b, n);
        else
            for (size_t i = 0; i < n; i++)
                out[i] += afd_bf16_to_f32(b[i]);
    } else if (v->dtype == WIRE_DT_E4M3) {
        size_t gsz = hidden / v->groups;
        for (size_t i = 0; i < n; i++) {
            float y = afd_e4m3_to_f32(v->q[i]) * v->scales[i / gsz];
            out[i] = first ? y : out[i] + y;
        }
    } else if (first) {
        memcpy(out, v->f32, n * sizeof(float));
    } else {
        for (size_t i = 0; i < n; i++)
            out[i] += v->f32[i];
    }
}

static void release_kept(fc_group *g, fc_slot *s) {
    for (int j = 0; j < g->o.n_shards; j++) {
        xp_frame_release(g->xp, s->kept[j]);
        s->kept[j] = NULL;
    }
}

static int on_f2a(fc_group *g, fc_shard *sh, const wire_hdr *h, const uint8_t *p, size_t len) {
    wire_f2a v;
    int rc = wire_f2a_view(h, p, len, &g->o.dims, &sh->lim, &v);
    if (rc) {
        group_break(g, "shard %s: bad F2A: %s", xp_peer_name(sh->peer), wire_strerror(rc));
        return -1;
    }
    fc_slot *s = slot_of(g, h);
    if (!s || v.n_tok != s->n_tok || s->got[sh->index]) {
        char what[96];
        snprintf(what, sizeof what, "step %llu mb %u layer %u n_tok %u",
                 (unsigned long long)h->step, h->mb, h->layer, v.n_tok);
        group_break(g, "shard %s: F2A for nothing in flight (%s)", xp_peer_name(sh->peer), what);
        return -1;
    }
    s->kept[sh->index] = xp_frame_keep(sh->peer);
    if (!s->kept[sh->index]) {
        group_break(g, "shard %s: %s", xp_peer_name(sh->peer), "F2A payload could not be kept");
        return -1;
    }
    s->view[sh->index] = v;
    s->got[sh->index] = 1;
    s->answered++;
    g->st.f2a_bytes += len;
    if (s->answered == g->o.n_shards)
        g->st.answered++;
    return 0;
}

static int on_frame(void *ud, xp_peer *p, const wire_hdr *h, const uint8_t *payload, size_t len) {
    fc_group *g = ud;
    fc_shard *sh = xp_peer_ud(p);
    if (!sh)
        return -1;
    if (!sh->acked)
        return h->type == WIRE_T_HELLO_ACK ? on_ack(g, sh, h, payload, len) : -1;
    if (h->type == WIRE_T_F2A)
        return on_f2a(g, sh, h, payload, len);
    if (h->type == WIRE_T_ERROR || h->type == WIRE_T_GOODBYE) {
        wire_msg m;
        int rc = h->type == WIRE_T_ERROR ? wire_error_decode(payload, len, &m)
                                         : wire_goodbye_decode(payload, len, &m);
        group_break(g, "shard %s: %s", xp_peer_name(p),
                    rc ? wire_strerror(rc) : m.text);
        return -1;
    }
    group_break(g, "shard %s sent an unexpected %s frame", xp_peer_name(p),
                wire_type_name(h->type));
    return -1;
}

static int on_accept(void *ud, xp_peer *p) {
    (void)ud, (void)p;
    return -1; /* a client does not listen */
}

static void on_down(void *ud, xp_peer *p, int reason, const char *why) {
    fc_group *g = ud;
    fc_shard *sh = xp_peer_ud(p);
    (void)reason;
    if (!sh)
        return;
    sh->down = true;
    sh->peer = NULL;
    group_break(g, "shard %s down: %s", sh->g->o.shards[sh->index].host, why ? why : "closed");
}

/* ---- open / close ----------------------------------------------------------------------- */

static void make_hello(const fc_group *g, int i, wire_hello *h) {
    const fc_opts *o = &g->o;
    memset(h, 0, sizeof *h);
    h->proto_min = WIRE_VERSION_MIN, h->proto_max = WIRE_VERSION_MAX;
    h->role = o->role;
    h->instance_id = o->instance_id;
    h->model_fingerprint = o->fingerprint;
    h->ep_rank = (uint16_t)o->shards[i].ep_rank, h->ep_size = (uint16_t)o->shards[i].ep_size;
    h->tp_rank = (uint16_t)o->shards[i].tp_rank, h->tp_size = (uint16_t)o->shards[i].tp_size;
    h->n_layers = o->dims.n_layers, h->n_experts = o->dims.n_experts;
    h->hidden = o->dims.hidden;
    h->top_k = (uint16_t)o->dims.top_k, h->fp8_group = (uint16_t)o->dims.fp8_group;
    h->a2f_dtype = o->dims.a2f_dtype, h->f2a_dtype = o->dims.f2a_dtype;
    h->max_tok = o->max_tok;
    snprintf(h->name, sizeof h->name, "%s", o->name);
}

static void free_cb(void *arg, int status) {
    (void)status;
    free(arg);
}

static int send_hello(fc_group *g, int i, afd_err *err) {
    fc_shard *sh = &g->shards[i];
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX); /* lives until its send completes */
    size_t len;
    make_hello(g, i, &sh->hello);
    int rc = wire_hello_encode(buf, WIRE_HELLO_MAX, &sh->hello, &len);
    if (rc) {
        free(buf);
        return afd_errf(err, -EINVAL, "HELLO for shard %d: %s", i, wire_strerror(rc));
    }
    wire_hdr h = {.type = WIRE_T_HELLO, .sender = g->o.instance_id, .layer = WIRE_LAYER_NONE};
    rc = xp_send(sh->peer, &h, buf, len, free_cb, buf);
    if (rc)
        free(buf);
    return rc ? afd_errf(err, rc, "HELLO to shard %d: %s", i, afd_strerror(rc)) : 0;
}

static int alloc_slots(fc_group *g, afd_err *err) {
    const fc_opts *o = &g->o;
    size_t cap = wire_a2f_size(&o->dims, o->max_tok, o->dims.top_k > 0);
    if (cap == SIZE_MAX)
        return afd_errf(err, -EINVAL, "ffn client: inconsistent dims (hidden %u, top_k %u)",
                        o->dims.hidden, o->dims.top_k);
    g->slots = xcalloc((size_t)o->slots, sizeof *g->slots);
    for (int i = 0; i < o->slots; i++) {
        fc_slot *s = &g->slots[i];
        s->a2f = xp_mem_alloc(g->xp, cap);
        s->got = xcalloc((size_t)o->n_shards, 1);
        s->kept = xcalloc((size_t)o->n_shards, sizeof *s->kept);
        s->view = xcalloc((size_t)o->n_shards, sizeof *s->view);
        if (!s->a2f)
            return afd_errf(err, -ENOMEM, "ffn client: %d registered A2F buffers of %zu bytes",
                            o->slots, cap);
    }
    return 0;
}

static int check_opts(const fc_opts *o, afd_err *err) {
    if (o->n_shards < 1 || o->n_shards > FC_MAX_SHARDS)
        return afd_errf(err, -EINVAL, "ffn client: %d shards (1..%d)", o->n_shards,
                        FC_MAX_SHARDS);
    if (o->slots < 1 || o->slots > 64 || o->max_tok < 1)
        return afd_errf(err, -EINVAL, "ffn client: slots %d (1..64), max_tok %u (>= 1)",
                        o->slots, o->max_tok);
    int rc = wire_dims_check(&o->dims, NULL);
    return rc ? afd_errf(err, -EINVAL, "ffn client: dims: %s", wire_strerror(rc)) : 0;
}

static int wait_acks(fc_group *g, afd_err *err) {
    int64_t deadline = (int64_t)afd_now_ns() + (int64_t)g->o.connect_timeout_ms * 1000000;
    while (!g->broken && g->n_acked < g->o.n_shards) {
        int64_t left = (deadline - (int64_t)afd_now_ns()) / 1000000;
        if (left <= 0)
            return afd_errf(err, -ETIMEDOUT,
                            "ffn client: %d of %d shards answered the handshake within %d ms",
                            g->n_acked, g->o.n_shards, g->o.connect_timeout_ms);
        xp_wait(g->xp, left < 50 ? (int)left : 50);
    }
    return g->broken ? afd_errf(err, AFD_E_PEER, "%s", g->why) : 0;
}

int fc_open(fc_group **out, const fc_opts *o, afd_err *err) {
    *out = NULL;
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    fc_group *g = xcalloc(1, sizeof *g);
    g->o = *o;
    xp_opts xo;
    xp_opts_default(&xo);
    xo.err_mode = o->err_mode ? XP_ERR_PEER : XP_ERR_NONE;
    xo.instance_id = o->instance_id;
    xo.heartbeat_ms = o->heartbeat_ms;
    xo.peer_timeout_ms = o->peer_timeout_ms;
    xo.rx_buf_size = wire_f2a_size_dt(&o->dims, o->max_tok, o->dims.f2a_dtype);
    xo.rx_bufs = o->slots * o->n_shards + 2; /* every slot's answers may be kept at once */
    xp_handlers hd = {.on_accept = on_accept, .on_frame = on_frame, .on_down = on_down};
    if ((rc = xp_init(&g->xp, &xo, &hd, g, err)) || (rc = alloc_slots(g, err)))
        goto fail;
    g->shards = xcalloc((size_t)o->n_shards, sizeof *g->shards);
    for (int i = 0; i < o->n_shards; i++) {
        fc_shard *sh = &g->shards[i];
        sh->g = g, sh->index = i;
        rc = xp_connect(g->xp, o->shards[i].host, o->shards[i].port, &sh->peer, err);
        if (rc)
            goto fail;
        xp_peer_set_ud(sh->peer, sh);
        wire_limits hs;
        wire_limits_handshake(&hs);
        xp_peer_set_limits(sh->peer, &hs);
        if ((rc = send_hello(g, i, err)))
            goto fail;
    }
    if ((rc = wait_acks(g, err)))
        goto fail;
    *out = g;
    return 0;
fail:
    fc_close(g);
    return rc;
}

static bool sends_pending(const fc_group *g) {
    for (int i = 0; g->slots && i < g->o.slots; i++)
        if (g->slots[i].sends_pending)
            return true;
    return false;
}

/* Registered buffers go back to the transport only once no send uses them; if some send is
 * still pending after the grace period, xp_free cancels it and releases the buffer itself. */
static void free_slots(fc_group *g, bool release_buffers) {
    for (int i = 0; g->slots && i < g->o.slots; i++) {
        fc_slot *s = &g->slots[i];
        if (release_buffers) {
            if (s->a2f)
                xp_mem_free(g->xp, s->a2f);
            if (s->kept)
                release_kept(g, s);
        } /* else xp_free has taken back the kept frames and the registered buffers */
        free(s->kept);
        free(s->view);
        free(s->got);
    }
    free(g->slots);
    g->slots = NULL;
}

void fc_close(fc_group *g) {
    if (!g)
        return;
    g->broken = true;
    for (int i = 0; g->shards && i < g->o.n_shards; i++)
        if (g->shards[i].peer && !g->shards[i].down)
            xp_peer_close(g->shards[i].peer, "client closing");
    int64_t deadline = (int64_t)afd_now_ns() + 1000000000;
    while (g->xp && sends_pending(g) && (int64_t)afd_now_ns() < deadline)
        xp_wait(g->xp, 10);
    bool idle = !sends_pending(g);
    if (!idle) {
        /* xp_free runs the remaining send callbacks: keep the slot structs until then */
        xp_free(g->xp);
        g->xp = NULL;
    }
    if (g->xp)
        free_slots(g, true);
    xp_free(g->xp); /* on_down for the shards still up: they are still allocated */
    if (g->slots)
        free_slots(g, false);
    free(g->shards);
    free(g);
}

/* ---- micro-batches ---------------------------------------------------------------------- */

int fc_a2f_buffer(fc_group *g, int slot, uint32_t n_tok, bool moe, wire_a2f *a) {
    if (slot < 0 || slot >= g->o.slots || n_tok < 1 || n_tok > g->o.max_tok)
        return WIRE_E_LIMIT;
    fc_slot *s = &g->slots[slot];
    if (s->state == SLOT_SENT)
        return -EBUSY;
    /* the answers can overtake the completion of the sends that asked for them: the buffer
     * is reusable once UCX is done with it */
    int64_t deadline = (int64_t)afd_now_ns() + (int64_t)g->o.peer_timeout_ms * 1000000;
    while (s->sends_pending && !g->broken && (int64_t)afd_now_ns() < deadline)
        xp_progress(g->xp);
    if (s->sends_pending)
        return g->broken ? AFD_E_PEER : -EBUSY;
    int rc = wire_a2f_layout(&g->o.dims, n_tok, moe, s->a2f, a);
    if (rc)
        return rc;
    s->a2f_len = wire_a2f_size(&g->o.dims, n_tok, moe);
    s->n_tok = n_tok, s->moe = moe;
    s->state = SLOT_BUILT;
    return 0;
}

int fc_send(fc_group *g, int slot, uint64_t step, uint16_t mb, uint16_t layer) {
    if (g->broken)
        return AFD_E_PEER;
    if (slot < 0 || slot >= g->o.slots || g->slots[slot].state != SLOT_BUILT)
        return -EBUSY;
    fc_slot *s = &g->slots[slot];
    wire_hdr h = {.type = WIRE_T_A2F, .flags = s->moe ? WIRE_F_MOE : 0,
                  .sender = g->o.instance_id, .mb = mb, .layer = layer, .step = step,
                  .n_tok = s->n_tok};
    s->step = step, s->mb = mb, s->layer = layer;
    s->answered = 0;
    memset(s->got, 0, (size_t)g->o.n_shards);
    s->state = SLOT_SENT;
    for (int i = 0; i < g->o.n_shards; i++) {
        int rc = xp_send(g->shards[i].peer, &h, s->a2f, s->a2f_len, sent_cb, s);
        if (rc) {
            group_break(g, "send to shard %s: %s", g->o.shards[i].host, afd_strerror(rc));
            return AFD_E_PEER;
        }
        s->sends_pending++;
        g->st.a2f_bytes += s->a2f_len;
    }
    g->st.sent++;
    return 0;
}

int fc_ready(fc_group *g, int slot) {
    fc_slot *s = &g->slots[slot];
    if (s->state == SLOT_FAILED)
        return AFD_E_PEER;
    if (s->state != SLOT_SENT)
        return -EINVAL;
    return s->answered == g->o.n_shards;
}

int fc_take(fc_group *g, int slot, float *out) {
    int rc = fc_ready(g, slot);
    if (rc <= 0) {
        if (rc < 0 && slot >= 0 && slot < g->o.slots) {
            release_kept(g, &g->slots[slot]);
            g->slots[slot].state = SLOT_FREE;
        }
        return rc ? rc : -EAGAIN;
    }
    fc_slot *s = &g->slots[slot];
    /* (p0 + p1) + p2 ...: a one-shard group gives its partial exactly */
    for (int j = 0; j < g->o.n_shards; j++)
        accumulate(out, &s->view[j], g->o.dims.hidden, j == 0);
    release_kept(g, s);
    s->state = SLOT_FREE;
    return 0;
}

int fc_progress(fc_group *g) { return xp_progress(g->xp); }

int fc_wait(fc_group *g, int slot, int timeout_ms) {
    int64_t deadline = (int64_t)afd_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        xp_progress(g->xp);
        int rc = fc_ready(g, slot);
        if (rc != 0)
            return rc;
        int64_t left = (deadline - (int64_t)afd_now_ns()) / 1000000;
        if (left <= 0)
            return 0;
        xp_wait(g->xp, left < 10 ? (int)left : 10);
    }
}

int fc_fd(fc_group *g) { return xp_fd(g->xp); }

void fc_get_stats(const fc_group *g, fc_stats *s) { *s = g->st; }
