/* handoff.c: the KV handoff between a prefill attnd P and a decode attnd D (DESIGN §6,
 * docs/attnd.md "Handoff").
 *
 * D (role decode or both): RESERVE from a router takes blocks out of the pool for the prompt
 * and answers RESERVE_OK (block ids, epoch, lease, pool base, packed key). The reservation
 * ends in one of three ways: KV_READY with its epoch from a prefill instance (the blocks go to
 * the scheduler with the first token: at_sched_adopt), RELEASE / CANCEL / the router going away,
 * or its lease running out (the router gets a TOKENS error). Blocks of a reservation that ended
 * without KV_READY stay out of use for lease_grace_ms, so a late RMA write of a slow prefill
 * instance lands in blocks nobody reads.
 *
 * P (role prefill or both): PREFILL runs the prompt through the scheduler as a one-token
 * sequence that keeps its blocks (keep_kv) while a link to D comes up (HELLO, then D announces
 * its pool with its own packed key on that link: a key is only ever taken from the memory's
 * owner). Then P writes each block with RMA puts and a flush (or KV_DATA frames), tells D
 * KV_READY (first token, checksum), answers the router PREFILL_DONE, and frees its blocks.
 * Every failure answers PREFILL_DONE with a reason and RELEASEs the reservation on D.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd/internal.h"
#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"

#define MS_NS 1000000ull

enum { SIDE_DECODE, SIDE_PREFILL };
enum { PATH_RMA, PATH_AM };

static int kv_layout_blocks(const attnd *d, uint32_t n_tokens) {
    return kv_blocks_for(&d->e.kv, (int)n_tokens);
}

static uint8_t *block_ptr(const attnd *d, int32_t block) {
    return (uint8_t *)d->e.kv.base + (size_t)block * d->e.kv.layout.block_bytes;
}

static uint64_t blocks_checksum(const attnd *d, const int32_t *blocks, int n) {
    uint64_t h = CTRL_CHECKSUM_INIT;
    for (int i = 0; i < n; i++)
        h = ctrl_kv_checksum(h, block_ptr(d, blocks[i]), d->e.kv.layout.block_bytes);
    return h;
}

/* ================================ decode side ================================================= */

static resv *find_resv(attnd *d, uint64_t seq_id, uint64_t epoch, const cpeer *owner) {
    for (resv *v = d->resvs; v; v = v->next)
        if (v->state == RV_OPEN && v->seq_id == seq_id && (!epoch || v->epoch == epoch) &&
            (!owner || v->owner == owner))
            return v;
    return NULL;
}

static void resv_unlink(attnd *d, resv *v) {
    if (v->prev)
        v->prev->next = v->next;
    else
        d->resvs = v->next;
    if (v->next)
        v->next->prev = v->prev;
}

static void resv_release(attnd *d, resv *v) {
    d->resv_blocks -= v->kv.n_blocks;
    kv_seq_release(&d->e.kv, &v->kv);
    free(v->kv.blocks);
    resv_unlink(d, v);
    free(v);
}

/* The reservation ends without KV_READY: its blocks wait out the grace period when a remote
 * write could still be under way. */
static void resv_close(attnd *d, resv *v) {
    if (v->state != RV_OPEN)
        return;
    d->n_resv_open--;
    if (!d->kv_mr || d->cfg.lease_grace_ms <= 0) {
        resv_release(d, v);
        return;
    }
    v->state = RV_QUARANTINE;
    v->owner = NULL;
    v->deadline_ns = afd_now_ns() + (uint64_t)d->cfg.lease_grace_ms * MS_NS;
}

static void send_reserve_fail(attnd *d, cpeer *p, uint64_t req, uint64_t seq_id, int reason,
                              const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_reserve_fail(attnd *d, cpeer *p, uint64_t req, uint64_t seq_id, int reason,
                              const char *fmt, ...) {
    ctrl_status st = {.seq_id = seq_id, .reason = (uint32_t)reason};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.msg, sizeof st.msg, fmt, ap);
    va_end(ap);
    uint8_t *buf = xmalloc(CTRL_MSG_MAX + 64);
    size_t len;
    if (ctrl_reserve_fail_encode(buf, CTRL_MSG_MAX + 64, &st, &len) == 0)
        at_send_ctrl(d, p, WIRE_T_CTRL_RESERVE_FAIL, req, buf, len);
    else
        free(buf);
    log_info("seq %llu: reservation refused: %s", (unsigned long long)seq_id, st.msg);
}

/* RESERVE_OK for v (or, v NULL, the pool announcement on a handoff link: seq 0, one block). */
static void send_reserve_ok(attnd *d, cpeer *p, uint64_t req, const resv *v) {
    uint32_t n = v ? (uint32_t)v->kv.n_blocks : 1;
    uint32_t *ids = xmalloc(sizeof *ids * n);
    for (uint32_t i = 0; i < n; i++)
        ids[i] = v ? (uint32_t)v->kv.blocks[i] : 0;
    size_t klen = 0;
    const void *key = d->kv_mr ? xp_mr_rkey(d->kv_mr, &klen) : NULL;
    ctrl_reserve_ok ok = {
        .seq_id = v ? v->seq_id : 0,
        .r = {.instance_id = (uint32_t)d->cfg.instance_id,
              .epoch = v ? v->epoch : 1,
              .lease_ms = v ? (v->deadline_ns - v->t0_ns) / MS_NS : 1,
              .block_size = (uint32_t)d->e.kv.layout.block_size,
              .block_bytes = d->e.kv.layout.block_bytes,
              .remote_base = (uint64_t)(uintptr_t)d->e.kv.base,
              .n_blocks = n,
              .block_ids = ids,
              .rkey_len = (uint32_t)klen,
              .rkey = key}};
    size_t cap = 256 + 4 * (size_t)n + klen, len;
    uint8_t *buf = xmalloc(cap);
    int rc = ctrl_reserve_ok_encode(buf, cap, &ok, &len);
    free(ids);
    if (rc) {
        log_error("RESERVE_OK: %s", wire_strerror(rc));
        free(buf);
        return;
    }
    at_send_ctrl(d, p, WIRE_T_CTRL_RESERVE_OK, req, buf, len);
}

int ho_on_reserve(attnd *d, cpeer *p, const wire_hdr *h, const ctrl_reserve *m) {
    uint64_t req = h->step;
    if (d->cfg.role == 2)
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_ROLE,
                                 "prefill instance: reserve on a decode instance"),
               0;
    if (d->draining)
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_DRAINING, "attnd is draining"), 0;
    if (!at_ffn_ok(d))
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_PEER,
                                 "the FFN group is down (reconnecting)"),
               0;
    if (find_resv(d, m->seq_id, 0, p))
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_DUPLICATE,
                                 "seq_id already reserved"),
               0;
    at_request r = {.n_prompt = (int)m->prompt_len};
    at_request_from_wire(&r, &m->s, 1);
    int rc = at_sched_check(d->sched, &r);
    if (rc)
        return send_reserve_fail(d, p, req, m->seq_id,
                                 rc == AFD_E_LIMIT ? CTRL_R_TOO_LONG : CTRL_R_BAD_PARAMS,
                                 "refused: %s (prompt %u tokens, max_tokens %u)", afd_strerror(rc),
                                 m->prompt_len, m->s.max_tokens),
               0;
    resv *v = afd_try_alloc(sizeof *v);
    if (!v)
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_BUSY, "out of memory"), 0;
    memset(v, 0, sizeof *v);
    kv_seq_init(&v->kv);
    if (kv_seq_reserve(&d->e.kv, &v->kv, (int)m->prompt_len) != 0) {
        int need = kv_layout_blocks(d, m->prompt_len);
        free(v->kv.blocks);
        free(v);
        return send_reserve_fail(d, p, req, m->seq_id, CTRL_R_KV_FULL,
                                 "KV pool: %d blocks needed, %d free", need, d->e.kv.n_free),
               0;
    }
    v->seq_id = m->seq_id, v->req = req, v->owner = p, v->prompt_len = m->prompt_len;
    snprintf(v->req_id, sizeof v->req_id, "%s", m->req_id);
    v->s = m->s;
    v->s.n_stop = m->s.n_stop < CTRL_STOP_MAX ? m->s.n_stop : CTRL_STOP_MAX;
    if (v->s.n_stop)
        memcpy(v->stop, m->s.stop, v->s.n_stop * sizeof *v->stop);
    v->s.stop = v->stop;
    v->epoch = ++d->next_epoch ? d->next_epoch : ++d->next_epoch;
    uint64_t lease = m->lease_ms && (int64_t)m->lease_ms < d->cfg.lease_ms
                         ? m->lease_ms
                         : (uint64_t)d->cfg.lease_ms;
    v->t0_ns = afd_now_ns();
    v->deadline_ns = v->t0_ns + lease * MS_NS;
    v->state = RV_OPEN;
    v->next = d->resvs;
    if (d->resvs)
        d->resvs->prev = v;
    d->resvs = v;
    d->n_resv_open++;
    d->resv_blocks += v->kv.n_blocks;
    send_reserve_ok(d, p, req, v);
    afd_log_set_req(v->req_id);
    log_info("seq %llu reserved: %d blocks for %u prompt tokens, epoch %llu, lease %llu ms",
             (unsigned long long)v->seq_id, v->kv.n_blocks, v->prompt_len,
             (unsigned long long)v->epoch, (unsigned long long)lease);
    afd_log_set_req(NULL);
    return 0;
}

/* The reservation failed on this side: the router hears it as the sequence's end. */
static void resv_fail(attnd *d, resv *v, int code, const char *why) {
    at_tokens_error(d, v->owner, v->req, v->seq_id, code, v->prompt_len, "%s", why);
    log_warn("seq %llu (req %s): handoff failed: %s", (unsigned long long)v->seq_id, v->req_id,
             why);
    afd_metric_inc(d->m_ho_fail[SIDE_DECODE]);
    resv_close(d, v);
}

static void on_kv_ready(attnd *d, cpeer *p, const ctrl_kv_ready *m) {
    resv *v = find_resv(d, m->seq_id, m->epoch, NULL);
    if (!v) {
        afd_metric_inc(d->m_kv_stale);
        log_warn("KV_READY from %s for seq %llu epoch %llu: no such open reservation (expired, "
                 "released or never made)",
                 p->name, (unsigned long long)m->seq_id, (unsigned long long)m->epoch);
        return;
    }
    char why[160];
    if (m->prompt_len != v->prompt_len || m->first_token >= (uint32_t)d->w.cfg.vocab) {
        snprintf(why, sizeof why, "KV_READY: prompt_len %u (reserved %u), first token %u",
                 m->prompt_len, v->prompt_len, m->first_token);
        resv_fail(d, v, AFD_E_FORMAT, why);
        return;
    }
    if (!v->owner) {
        resv_close(d, v);
        return;
    }
    if (m->has_checksum && d->cfg.kv_checksum) {
        int nb = kv_layout_blocks(d, v->prompt_len);
        uint64_t sum = blocks_checksum(d, v->kv.blocks, nb);
        if (sum != m->checksum) {
            snprintf(why, sizeof why, "K/V checksum mismatch (%016llx written, %016llx here)",
                     (unsigned long long)m->checksum, (unsigned long long)sum);
            resv_fail(d, v, AFD_E_FORMAT, why);
            return;
        }
    }
    aseq *a = at_seq_new(d, v->owner, v->seq_id, v->req, v->req_id, &v->s, v->prompt_len);
    if (!a) {
        resv_fail(d, v, -ENOMEM, "out of memory");
        return;
    }
    at_request r = {.id = a->id, .n_prompt = (int)v->prompt_len, .ud = a};
    at_request_from_wire(&r, &v->s, a->id);
    v->kv.n_tokens = (int)v->prompt_len;
    int nblk = v->kv.n_blocks;
    int rc = at_sched_adopt(d->sched, &r, &v->kv, (int32_t)m->first_token,
                            v->s.temperature > 0 ? 1 : 0);
    if (rc) {
        free(a);
        snprintf(why, sizeof why, "cannot start decoding: %s", afd_strerror(rc));
        resv_fail(d, v, rc, why);
        return;
    }
    at_seq_link(d, a);
    afd_metric_inc(d->m_ho_ok[SIDE_DECODE]);
    afd_metric_inc(d->m_req_ok);
    afd_log_set_req(v->req_id);
    log_info("seq %llu: K/V of %u tokens in (%d blocks, %.1f ms after the reservation), "
             "decoding from token %u",
             (unsigned long long)v->seq_id, v->prompt_len, nblk,
             (double)(afd_now_ns() - v->t0_ns) / 1e6, m->first_token);
    afd_log_set_req(NULL);
    d->n_resv_open--;
    d->resv_blocks -= nblk;
    resv_unlink(d, v);
    free(v->kv.blocks); /* the table itself moved into the scheduler */
    free(v);
}

static void on_kv_data(attnd *d, cpeer *p, const ctrl_kv_data *m) {
    resv *v = find_resv(d, m->seq_id, m->epoch, NULL);
    if (!v) {
        afd_metric_inc(d->m_kv_stale);
        log_debug("KV_DATA from %s for seq %llu: no open reservation", p->name,
                  (unsigned long long)m->seq_id);
        return;
    }
    size_t bb = d->e.kv.layout.block_bytes;
    if (m->block >= (uint32_t)v->kv.n_blocks || m->offset > bb || m->len > bb - m->offset) {
        char why[160];
        snprintf(why, sizeof why, "KV_DATA out of the reservation: block %u of %d, %u bytes at %u",
                 m->block, v->kv.n_blocks, m->len, m->offset);
        resv_fail(d, v, AFD_E_FORMAT, why);
        return;
    }
    memcpy(block_ptr(d, v->kv.blocks[m->block]) + m->offset, m->data, m->len);
    afd_metric_add(d->m_ho_bytes[PATH_AM], m->len);
}

int ho_on_release(attnd *d, cpeer *p, const ctrl_release *m) {
    if (p->kind != CP_ROUTER && !m->epoch)
        return 0; /* a prefill instance names the epoch it was given */
    resv *v = find_resv(d, m->seq_id, m->epoch, p->kind == CP_ROUTER ? p : NULL);
    if (v) {
        log_info("seq %llu: reservation released by %s (%s)", (unsigned long long)v->seq_id,
                 p->name, ctrl_reason_name((int)m->reason));
        if (m->reason != CTRL_OK)
            afd_metric_inc(d->m_ho_fail[SIDE_DECODE]);
        resv_close(d, v);
    }
    return 0;
}

void ho_on_hello_in(attnd *d, cpeer *p) {
    send_reserve_ok(d, p, 0, NULL); /* our pool and key, on the link the writes will use */
}

int ho_on_frame(attnd *d, cpeer *p, const ctrl_msg *m) {
    switch (m->type) {
    case WIRE_T_CTRL_KV_READY: on_kv_ready(d, p, &m->u.kv_ready); return 0;
    case WIRE_T_CTRL_KV_DATA: on_kv_data(d, p, &m->u.kv_data); return 0;
    case WIRE_T_CTRL_RELEASE: return ho_on_release(d, p, &m->u.release);
    default:
        log_warn("handoff peer %s: unexpected %s", p->name, ctrl_type_name(m->type));
        return -1;
    }
}

/* ================================ prefill side ================================================ */

static void pj_unlink(attnd *d, pjob *j) {
    if (j->prev)
        j->prev->next = j->next;
    else
        d->pjobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

static void dlink_unlink(attnd *d, dlink *dl) {
    for (dlink **pp = &d->dlinks; *pp; pp = &(*pp)->next)
        if (*pp == dl) {
            *pp = dl->next;
            dl->next = NULL;
            return;
        }
}

/* Links stay in d->dlinks until freed: when down and unused. */
static void dlink_put(attnd *d, dlink *dl) {
    if (--dl->users > 0 || dl->state != DL_DOWN)
        return;
    dlink_unlink(d, dl);
    if (dl->cp)
        dl->cp->dl = NULL;
    free(dl);
}

/* Frees the job once nothing refers to it any more (its sequence, in-flight writes). */
static void pj_maybe_free(attnd *d, pjob *j) {
    if (j->state != PJ_DONE || j->a || j->inflight > 0)
        return;
    kv_seq_release(&d->e.kv, &j->kv);
    free(j->kv.blocks);
    if (j->dl)
        dlink_put(d, j->dl);
    pj_unlink(d, j);
    free(j->block_ids);
    free(j);
}

static void send_prefill_done(attnd *d, pjob *j, int reason, const char *msg) {
    if (!j->owner)
        return;
    ctrl_cand top[AFD_MAX_LOGPROBS];
    ctrl_prefill_done m = {.seq_id = j->seq_id, .reason = (uint32_t)reason,
                           .prompt_tokens = j->n_prompt};
    if (reason == CTRL_OK) {
        m.token = (uint32_t)j->first.token;
        m.has_logprob = j->logprobs;
        m.logprob = j->logprobs ? j->first.logprob : 0;
        int nt = j->logprobs ? (j->n_top < j->first.n_top ? j->n_top : j->first.n_top) : 0;
        for (int i = 0; i < nt; i++)
            top[i] = (ctrl_cand){(uint32_t)j->first.top_ids[i], j->first.top_logprobs[i]};
        m.n_top = (uint8_t)nt;
        m.top = nt ? top : NULL;
    } else {
        m.code = AFD_E_PEER;
        snprintf(m.msg, sizeof m.msg, "%s", msg);
    }
    size_t cap = 256 + CTRL_MSG_MAX + 8 * AFD_MAX_LOGPROBS, len;
    uint8_t *buf = xmalloc(cap);
    if (ctrl_prefill_done_encode(buf, cap, &m, &len) == 0)
        at_send_ctrl(d, j->owner, WIRE_T_CTRL_PREFILL_DONE, j->req, buf, len);
    else
        free(buf);
}

static void send_release(attnd *d, pjob *j, int reason) {
    if (!j->dl || j->dl->state != DL_UP)
        return;
    ctrl_release m = {.seq_id = j->seq_id, .epoch = j->epoch, .reason = (uint32_t)reason};
    uint8_t *buf = xmalloc(64);
    size_t len;
    if (ctrl_release_encode(buf, 64, &m, &len) == 0)
        at_send_ctrl(d, j->dl->cp, WIRE_T_CTRL_RELEASE, 0, buf, len);
    else
        free(buf);
}

static void pj_fail(attnd *d, pjob *j, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pj_fail(attnd *d, pjob *j, int reason, const char *fmt, ...) {
    if (j->state == PJ_DONE)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why, sizeof j->why, fmt, ap);
    va_end(ap);
    j->failed = reason;
    j->state = PJ_DONE;
    send_prefill_done(d, j, reason, j->why);
    send_release(d, j, reason);
    afd_metric_inc(d->m_ho_fail[SIDE_PREFILL]);
    afd_log_set_req(j->req_id);
    log_warn("seq %llu: prefill handoff failed (%s): %s", (unsigned long long)j->seq_id,
             ctrl_reason_name(reason), j->why);
    afd_log_set_req(NULL);
    if (j->a)
        at_sched_cancel(d->sched, j->a->id); /* its end frees the job */
    pj_maybe_free(d, j);
}

/* The data is at D: KV_READY to D, PREFILL_DONE to the router. */
static void pj_complete(attnd *d, pjob *j) {
    if ((int64_t)(afd_now_ns() - j->deadline_ns) > 0) {
        pj_fail(d, j, CTRL_R_EXPIRED, "the lease ran out while writing K/V");
        return;
    }
    ctrl_kv_ready m = {.seq_id = j->seq_id, .epoch = j->epoch,
                       .first_token = (uint32_t)j->first.token, .prompt_len = j->n_prompt,
                       .has_checksum = d->cfg.kv_checksum, .checksum = j->checksum};
    uint8_t *buf = xmalloc(64);
    size_t len;
    if (ctrl_kv_ready_encode(buf, 64, &m, &len) != 0) {
        free(buf);
        pj_fail(d, j, CTRL_R_INTERNAL, "KV_READY does not encode");
        return;
    }
    at_send_ctrl(d, j->dl->cp, WIRE_T_CTRL_KV_READY, 0, buf, len);
    send_prefill_done(d, j, CTRL_OK, "");
    j->state = PJ_DONE;
    afd_metric_inc(d->m_ho_ok[SIDE_PREFILL]);
    afd_metric_observe(d->m_ho_time, (double)(afd_now_ns() - j->t0_ns) * 1e-9);
    afd_log_set_req(j->req_id);
    log_info("seq %llu: %u prompt tokens prefilled and handed to %s:%u (%.1f ms), first token %d",
             (unsigned long long)j->seq_id, j->n_prompt, j->dl->host, j->dl->port,
             (double)(afd_now_ns() - j->t0_ns) / 1e6, j->first.token);
    afd_log_set_req(NULL);
    pj_maybe_free(d, j);
}

static void put_cb(void *arg, int status) {
    pjob *j = arg;
    attnd *d = j->d;
    j->inflight--;
    if (status && !j->failed)
        j->failed = CTRL_R_PEER;
    if (j->state == PJ_DONE) {
        pj_maybe_free(d, j);
        return;
    }
    if (j->inflight == 0) {
        if (j->failed)
            pj_fail(d, j, CTRL_R_PEER, "RMA write to the decode instance failed");
        else
            pj_complete(d, j);
    }
}

typedef struct kvd_send {
    pjob *j;
    attnd *d;
} kvd_send;

static void kvd_cb(void *arg, int status) {
    kvd_send *k = arg;
    pjob *j = k->j;
    attnd *d = k->d;
    (void)status; /* a failed frame means the link went down: that fails the job (on_down) */
    free(k);
    j->inflight--;
    pj_maybe_free(d, j);
}

static int write_rma(attnd *d, pjob *j, int nb) {
    dlink *dl = j->dl;
    size_t bb = d->e.kv.layout.block_bytes;
    for (int i = 0; i < nb; i++) {
        int rc = xp_put(dl->cp->xp, block_ptr(d, j->kv.blocks[i]), bb,
                        dl->remote_base + (uint64_t)j->block_ids[i] * bb, dl->rk, put_cb, j);
        if (rc)
            return rc;
        j->inflight++;
    }
    afd_metric_add(d->m_ho_bytes[PATH_RMA], (uint64_t)nb * bb);
    int rc = xp_flush(dl->cp->xp, put_cb, j);
    if (!rc)
        j->inflight++;
    return rc;
}

/* KV_DATA frames: copies, so P's blocks are free to go once they are queued. */
static int write_am(attnd *d, pjob *j, int nb) {
    size_t bb = d->e.kv.layout.block_bytes;
    size_t chunk = d->clim.max_kv_data < bb ? d->clim.max_kv_data : bb;
    for (int i = 0; i < nb; i++)
        for (size_t off = 0; off < bb; off += chunk) {
            size_t n = bb - off < chunk ? bb - off : chunk;
            ctrl_kv_data m = {.seq_id = j->seq_id, .epoch = j->epoch, .block = (uint32_t)i,
                              .offset = (uint32_t)off, .len = (uint32_t)n,
                              .data = block_ptr(d, j->kv.blocks[i]) + off};
            size_t cap = n + 64, len;
            kvd_send *k = xmalloc(sizeof *k + cap);
            uint8_t *buf = (uint8_t *)(k + 1);
            k->j = j, k->d = d;
            if (ctrl_kv_data_encode(buf, cap, &m, &len) != 0) {
                free(k);
                return AFD_E_FORMAT;
            }
            wire_hdr h = ctrl_hdr(WIRE_T_CTRL_KV_DATA, (uint32_t)d->cfg.instance_id, 0);
            int rc = xp_send(j->dl->cp->xp, &h, buf, len, kvd_cb, k);
            if (rc) {
                free(k);
                return rc;
            }
            j->inflight++;
        }
    afd_metric_add(d->m_ho_bytes[PATH_AM], (uint64_t)nb * bb);
    return 0;
}

/* The prompt is prefilled and the link is up: write the blocks. */
static void pj_write(attnd *d, pjob *j) {
    dlink *dl = j->dl;
    if (dl->state == DL_DOWN) {
        pj_fail(d, j, CTRL_R_PEER, "decode instance %s:%u unreachable", dl->host, dl->port);
        return;
    }
    if (dl->state != DL_UP)
        return; /* the link's announcement will call again */
    if (dl->block_bytes != d->e.kv.layout.block_bytes || dl->remote_base != j->remote_base ||
        dl->block_bytes != j->block_bytes) {
        pj_fail(d, j, CTRL_R_BAD_PARAMS,
                "the reservation does not match the decode instance's pool (base %llx/%llx, "
                "block %llu/%llu bytes)",
                (unsigned long long)j->remote_base, (unsigned long long)dl->remote_base,
                (unsigned long long)j->block_bytes, (unsigned long long)dl->block_bytes);
        return;
    }
    int nb = kv_layout_blocks(d, j->n_prompt);
    if (j->kv.n_blocks < nb || (uint32_t)nb > j->n_blocks) {
        pj_fail(d, j, CTRL_R_INTERNAL, "%d blocks to write, %d held, %u reserved", nb,
                j->kv.n_blocks, j->n_blocks);
        return;
    }
    j->state = PJ_WRITE;
    j->t0_ns = afd_now_ns();
    if (d->cfg.kv_checksum)
        j->checksum = blocks_checksum(d, j->kv.blocks, nb);
    int rc = dl->rk ? write_rma(d, j, nb) : write_am(d, j, nb);
    if (rc) {
        pj_fail(d, j, CTRL_R_PEER, "writing K/V to %s:%u: %s", dl->host, dl->port,
                afd_strerror(rc));
        return;
    }
    if (!dl->rk)
        pj_complete(d, j); /* frames are ordered: KV_READY follows the data */
}

static dlink *dlink_get(attnd *d, const char *host, uint16_t port, afd_err *err) {
    for (dlink *dl = d->dlinks; dl; dl = dl->next)
        if (dl->state != DL_DOWN && dl->port == port && !strcmp(dl->host, host)) {
            dl->users++;
            return dl;
        }
    xp_peer *xp;
    if (xp_connect(d->xp, host, port, &xp, err))
        return NULL;
    dlink *dl = xcalloc(1, sizeof *dl);
    snprintf(dl->host, sizeof dl->host, "%s", host);
    dl->port = port;
    dl->state = DL_CONNECTING;
    dl->users = 1;
    dl->cp = at_cpeer_new(d, xp, CP_DLINK);
    dl->cp->dl = dl;
    wire_limits wl;
    ctrl_wire_limits(&d->clim, WIRE_TYPE_BIT(WIRE_T_CTRL_RESERVE_OK), &wl);
    wl.types |= WIRE_TYPES_HANDSHAKE;
    xp_peer_set_limits(xp, &wl);
    uint8_t *buf = xmalloc(WIRE_HELLO_MAX);
    size_t n;
    if (wire_hello_encode(buf, WIRE_HELLO_MAX, &d->mine, &n) == 0)
        at_send_ctrl(d, dl->cp, WIRE_T_HELLO, 0, buf, n);
    else
        free(buf);
    dl->next = d->dlinks;
    d->dlinks = dl;
    log_info("handoff link to %s:%u: connecting", host, port);
    return dl;
}

static void dlink_fail(attnd *d, dlink *dl, const char *why) {
    if (dl->state == DL_DOWN)
        return;
    dl->state = DL_DOWN;
    afd_log(dl->users ? AFD_LOG_WARN : AFD_LOG_INFO, "handoff link to %s:%u down: %s", dl->host,
            dl->port, why);
    dl->users++; /* hold it while its jobs fail */
    for (pjob *j = d->pjobs, *n; j; j = n) {
        n = j->next;
        if (j->dl == dl && j->state != PJ_DONE)
            pj_fail(d, j, CTRL_R_PEER, "decode instance %s:%u: %s", dl->host, dl->port, why);
    }
    if (dl->cp)
        xp_peer_close(dl->cp->xp, why);
    dlink_put(d, dl); /* may free dl */
}

int ho_on_dlink_frame(attnd *d, cpeer *p, const wire_hdr *h, const uint8_t *pl, size_t len) {
    dlink *dl = p->dl;
    if (!dl)
        return -1;
    if (h->type == WIRE_T_HELLO_ACK) {
        wire_hello a;
        if (wire_hello_decode(pl, len, &a) || a.status != WIRE_REFUSE_NONE) {
            char why[WIRE_REASON_MAX + 32];
            snprintf(why, sizeof why, "refused our HELLO: %s", a.reason);
            dlink_fail(d, dl, why);
            return 0;
        }
        dl->instance_id = a.instance_id;
        return 0;
    }
    ctrl_msg m;
    int rc = ctrl_decode(h, pl, len, &d->clim, &m);
    if (rc || m.type != WIRE_T_CTRL_RESERVE_OK || dl->state != DL_CONNECTING) {
        dlink_fail(d, dl, rc ? wire_strerror(rc) : "unexpected frame");
        return -1;
    }
    const ctrl_resv *r = &m.u.reserve_ok.r;
    dl->remote_base = r->remote_base, dl->block_bytes = r->block_bytes;
    dl->block_size = r->block_size;
    bool want_rma = d->cfg.handoff != 2;
    if (want_rma && r->rkey_len) {
        rc = xp_rkey_unpack(p->xp, r->rkey, r->rkey_len, &dl->rk);
        if (rc)
            log_warn("handoff link to %s:%u: remote key refused (%s)%s", dl->host, dl->port,
                     afd_strerror(rc), d->cfg.handoff == 1 ? "" : ": K/V go as frames");
    }
    if (d->cfg.handoff == 1 && !dl->rk) {
        dlink_fail(d, dl, "handoff = rma, but the decode instance offers no RMA key");
        return 0;
    }
    dl->state = DL_UP;
    log_info("handoff link to %s:%u (attnd#%u) up: %s, blocks of %llu bytes", dl->host, dl->port,
             dl->instance_id, dl->rk ? "RMA" : "KV_DATA frames",
             (unsigned long long)dl->block_bytes);
    for (pjob *j = d->pjobs, *n; j; j = n) {
        n = j->next;
        if (j->dl == dl && j->state == PJ_LINK)
            pj_write(d, j);
    }
    return 0;
}

int ho_on_prefill(attnd *d, cpeer *p, const wire_hdr *h, const ctrl_prefill *m) {
    const ctrl_submit *sub = &m->sub;
    pjob tmp = {.seq_id = sub->seq_id, .req = h->step, .owner = p, .n_prompt = sub->n_prompt};
    snprintf(tmp.req_id, sizeof tmp.req_id, "%s", sub->req_id);
    if (d->cfg.role == 1) {
        send_prefill_done(d, &tmp, CTRL_R_ROLE, "decode instance: send PREFILL to a prefill one");
        return 0;
    }
    if (d->draining) {
        send_prefill_done(d, &tmp, CTRL_R_DRAINING, "attnd is draining");
        return 0;
    }
    if (!at_ffn_ok(d)) {
        send_prefill_done(d, &tmp, CTRL_R_PEER, "the FFN group is down (reconnecting)");
        return 0;
    }
    for (pjob *j = d->pjobs; j; j = j->next)
        if (j->owner == p && j->seq_id == sub->seq_id && j->state != PJ_DONE) {
            send_prefill_done(d, &tmp, CTRL_R_DUPLICATE, "seq_id already being prefilled");
            return 0;
        }
    const ctrl_resv *r = &m->r;
    int nb = kv_layout_blocks(d, sub->n_prompt);
    if (r->block_size != (uint32_t)d->e.kv.layout.block_size ||
        r->block_bytes != d->e.kv.layout.block_bytes || r->n_blocks < (uint32_t)nb) {
        char why[200];
        snprintf(why, sizeof why,
                 "reservation of %u blocks of %u tokens / %llu bytes; this instance needs %d "
                 "blocks of %d tokens / %zu bytes (same KV layout on both sides)",
                 r->n_blocks, r->block_size, (unsigned long long)r->block_bytes, nb,
                 d->e.kv.layout.block_size, d->e.kv.layout.block_bytes);
        send_prefill_done(d, &tmp, CTRL_R_BAD_PARAMS, why);
        return 0;
    }
    int32_t *prompt = afd_try_alloc((size_t)sub->n_prompt * sizeof *prompt);
    pjob *j = afd_try_alloc(sizeof *j);
    uint32_t *ids = afd_try_alloc((size_t)r->n_blocks * sizeof *ids);
    aseq *a = at_seq_new(d, p, sub->seq_id, h->step, sub->req_id, &sub->s, sub->n_prompt);
    if (!prompt || !j || !ids || !a) {
        free(prompt), free(j), free(ids), free(a);
        send_prefill_done(d, &tmp, CTRL_R_BUSY, "out of memory");
        return 0;
    }
    for (uint32_t i = 0; i < sub->n_prompt; i++)
        prompt[i] = (int32_t)sub->prompt[i];
    at_request q = {.id = a->id, .prompt = prompt, .n_prompt = (int)sub->n_prompt, .ud = a};
    at_request_from_wire(&q, &sub->s, a->id);
    q.max_tokens = 1, q.keep_kv = true;
    int rc = at_sched_submit(d->sched, &q);
    free(prompt);
    if (rc) {
        free(j), free(ids), free(a);
        send_prefill_done(d, &tmp, rc == AFD_E_LIMIT ? CTRL_R_TOO_LONG : CTRL_R_BAD_PARAMS,
                          afd_strerror(rc));
        return 0;
    }
    memcpy(ids, r->block_ids, (size_t)r->n_blocks * sizeof *ids);
    *j = tmp;
    j->d = d;
    j->epoch = r->epoch, j->n_blocks = r->n_blocks, j->block_ids = ids;
    j->remote_base = r->remote_base, j->block_bytes = r->block_bytes;
    j->t0_ns = afd_now_ns();
    j->deadline_ns = j->t0_ns + r->lease_ms * MS_NS;
    j->logprobs = sub->s.logprobs, j->n_top = sub->s.top_logprobs;
    j->state = PJ_PREFILL;
    kv_seq_init(&j->kv);
    a->pj = j;
    j->a = a;
    at_seq_link(d, a);
    j->next = d->pjobs;
    if (d->pjobs)
        d->pjobs->prev = j;
    d->pjobs = j;
    afd_log_set_req(j->req_id);
    log_info("seq %llu: prefill of %u tokens for %s:%u (epoch %llu, %u blocks)",
             (unsigned long long)j->seq_id, j->n_prompt, m->host, m->port,
             (unsigned long long)j->epoch, j->n_blocks);
    afd_log_set_req(NULL);
    afd_err err = {0};
    j->dl = dlink_get(d, m->host, m->port, &err);
    if (!j->dl) /* the queued sequence is cancelled; its end frees the job */
        pj_fail(d, j, CTRL_R_PEER, "cannot reach decode instance %s:%u: %s", m->host, m->port,
                err.msg);
    return 0;
}

void ho_on_first(attnd *d, aseq *a, const afd_sample *s) {
    (void)d;
    a->pj->first = *s;
    a->pj->have_first = true;
}

void ho_on_kv(attnd *d, aseq *a, afd_kv_seq *kv) {
    (void)d;
    pjob *j = a->pj;
    j->kv = *kv;
    kv_seq_init(kv);
}

void ho_on_prefill_end(attnd *d, aseq *a, int reason) {
    pjob *j = a->pj;
    j->a = NULL;
    a->pj = NULL;
    if (j->state == PJ_DONE) { /* failed meanwhile */
        pj_maybe_free(d, j);
        return;
    }
    if ((reason == AT_FIN_STOP || reason == AT_FIN_LENGTH) && j->have_first) {
        j->state = PJ_LINK;
        pj_write(d, j);
        return;
    }
    if (reason == AT_FIN_CANCELLED)
        pj_fail(d, j, j->failed ? j->failed : CTRL_R_CANCELLED, "%s",
                j->failed == CTRL_R_EXPIRED ? "the lease ran out during prefill" : "cancelled");
    else
        pj_fail(d, j, CTRL_R_PEER, "prefill failed: the FFN group failed during its step");
}

int ho_on_cancel(attnd *d, cpeer *p, uint64_t seq_id) {
    resv *v = find_resv(d, seq_id, 0, p);
    if (v) {
        ctrl_tokens t = {.seq_id = v->seq_id, .finish = CTRL_FINISH_CANCELLED,
                         .prompt_tokens = v->prompt_len};
        aseq tmp = {.seq_id = v->seq_id, .req = v->req, .owner = p};
        at_send_tokens(d, &tmp, &t);
        resv_close(d, v);
        return 1;
    }
    for (pjob *j = d->pjobs; j; j = j->next)
        if (j->owner == p && j->seq_id == seq_id && j->state != PJ_DONE) {
            pj_fail(d, j, CTRL_R_CANCELLED, "cancelled by the router");
            return 1;
        }
    return 0;
}

void ho_on_peer_down(attnd *d, cpeer *p) {
    if (p->kind == CP_ROUTER) {
        for (resv *v = d->resvs, *n; v; v = n) {
            n = v->next;
            if (v->owner == p) {
                v->owner = NULL;
                resv_close(d, v);
            }
        }
        for (pjob *j = d->pjobs, *n; j; j = n) {
            n = j->next;
            if (j->owner == p) {
                j->owner = NULL;
                pj_fail(d, j, CTRL_R_CANCELLED, "the router went away");
            }
        }
    } else if (p->kind == CP_DLINK && p->dl) {
        dlink *dl = p->dl; /* its puts have been called back (with errors) before on_down */
        p->dl = NULL;
        dl->rk = NULL; /* freed with the peer */
        dl->cp = NULL;
        if (dl->state != DL_DOWN)
            dlink_fail(d, dl, "the connection went down"); /* may free dl */
    }
}

void ho_tick(attnd *d) {
    uint64_t now = afd_now_ns();
    for (resv *v = d->resvs, *n; v; v = n) {
        n = v->next;
        if ((int64_t)(now - v->deadline_ns) < 0)
            continue;
        if (v->state == RV_QUARANTINE) {
            resv_release(d, v);
            continue;
        }
        afd_metric_inc(d->m_lease_exp);
        char why[128];
        snprintf(why, sizeof why, "the KV reservation's lease ran out (%llu ms) before KV_READY",
                 (unsigned long long)((v->deadline_ns - v->t0_ns) / MS_NS));
        resv_fail(d, v, AFD_E_STATE, why);
    }
    for (pjob *j = d->pjobs, *n; j; j = n) {
        n = j->next;
        if (j->state == PJ_DONE || (int64_t)(now - j->deadline_ns) < 0)
            continue;
        if (j->state == PJ_PREFILL && j->a) {
            j->failed = CTRL_R_EXPIRED;
            at_sched_cancel(d->sched, j->a->id);
        } else if (j->state == PJ_LINK) {
            pj_fail(d, j, CTRL_R_EXPIRED, "the lease ran out waiting for the decode instance");
        }
    }
}

/* ================================ set-up ====================================================== */

int ho_init(attnd *d, afd_err *err) {
    d->next_epoch = (afd_now_ns() << 12) ^ ((uint64_t)d->cfg.instance_id << 40);
    if (d->cfg.role == 2 || d->cfg.handoff == 2)
        return 0; /* a prefill-only instance is written to by nobody; am: no key */
    size_t len = (size_t)d->e.kv.n_blocks * d->e.kv.layout.block_bytes;
    int rc = xp_mr_register(d->xp, d->e.kv.base, len, &d->kv_mr, err);
    if (rc && d->cfg.handoff == 0) {
        log_warn("KV pool not registered for RMA (%s): handoffs use KV_DATA frames", err->msg);
        memset(err, 0, sizeof *err);
        return 0;
    }
    return rc;
}

void ho_free(attnd *d) {
    while (d->pjobs) {
        pjob *j = d->pjobs;
        d->pjobs = j->next;
        kv_seq_release(&d->e.kv, &j->kv);
        free(j->kv.blocks);
        free(j->block_ids);
        free(j);
    }
    while (d->dlinks) {
        dlink *dl = d->dlinks;
        d->dlinks = dl->next;
        if (dl->cp)
            dl->cp->dl = NULL;
        free(dl);
    }
    while (d->resvs)
        resv_release(d, d->resvs);
    d->n_resv_open = 0;
}

static double resv_blocks_fn(void *ud) { return ((attnd *)ud)->resv_blocks; }

void ho_metrics_init(attnd *d) {
    afd_metrics *r = d->reg;
    const char *h = "KV handoffs, by side and result";
    d->m_ho_ok[SIDE_DECODE] = afd_metrics_counter(r, "afd_attnd_handoffs_total", h, "side",
                                                  "decode", "result", "ok", NULL);
    d->m_ho_fail[SIDE_DECODE] = afd_metrics_counter(r, "afd_attnd_handoffs_total", h, "side",
                                                    "decode", "result", "failed", NULL);
    d->m_ho_ok[SIDE_PREFILL] = afd_metrics_counter(r, "afd_attnd_handoffs_total", h, "side",
                                                   "prefill", "result", "ok", NULL);
    d->m_ho_fail[SIDE_PREFILL] = afd_metrics_counter(r, "afd_attnd_handoffs_total", h, "side",
                                                     "prefill", "result", "failed", NULL);
    d->m_lease_exp = afd_metrics_counter(r, "afd_attnd_lease_expiries_total",
                                         "KV reservations whose lease ran out", NULL);
    const char *b = "K/V bytes handed off, by path";
    d->m_ho_bytes[PATH_RMA] = afd_metrics_counter(r, "afd_attnd_handoff_bytes_total", b, "path",
                                                  "rma", NULL);
    d->m_ho_bytes[PATH_AM] = afd_metrics_counter(r, "afd_attnd_handoff_bytes_total", b, "path",
                                                 "am", NULL);
    d->m_ho_time = afd_metrics_histogram(r, "afd_attnd_handoff_write_seconds",
                                         "prefill side: K/V write until KV_READY",
                                         afd_metrics_latency_buckets, AFD_METRICS_LATENCY_N, NULL);
    d->m_resv_blocks = afd_metrics_gauge_fn(r, "afd_attnd_kv_blocks_reserved",
                                            "KV blocks held by reservations", resv_blocks_fn, d,
                                            NULL);
    d->m_kv_stale = afd_metrics_counter(r, "afd_attnd_handoff_stale_total",
                                        "KV_READY / KV_DATA for no open reservation", NULL);
}
