/* xport_rma.c: registered memory, remote keys, puts and flushes (see xport.h, "RMA").
 *
 * Puts and flushes ride the send machinery: each is an xp_sreq in the peer's in-flight list,
 * completed through the same queue, so xp_progress runs their callbacks and a peer going down
 * abandons them with the sends. Remote keys hang off their peer and are destroyed before its
 * endpoint closes (UCX wants rkeys gone before the endpoint they were unpacked on).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/log.h"
#include "proto/xport_impl.h"

int xp_mr_register(xp_ctx *c, void *addr, size_t len, xp_mr **out, afd_err *err) {
    *out = NULL;
    if (!c || !addr || !len) return afd_errf(err, -EINVAL, "xport: register %p, %zu bytes", addr, len);
    xp_mr *mr = xcalloc(1, sizeof *mr);
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .address = addr,
        .length = len};
    ucs_status_t st = XP_CHECK(AFD_LOG_ERROR, ucp_mem_map(c->ucp, &mp, &mr->memh));
    if (st != UCS_OK) {
        free(mr);
        return afd_errf(err, -EIO, "xport: cannot register %zu bytes for RMA: %s", len,
                        ucs_status_string(st));
    }
    st = XP_CHECK(AFD_LOG_ERROR, ucp_rkey_pack(c->ucp, mr->memh, &mr->packed, &mr->packed_len));
    if (st != UCS_OK) {
        ucp_mem_unmap(c->ucp, mr->memh);
        free(mr);
        return afd_errf(err, -EIO, "xport: cannot pack the remote key: %s", ucs_status_string(st));
    }
    mr->addr = addr, mr->len = len;
    mr->next = c->mrs;
    c->mrs = mr;
    *out = mr;
    return 0;
}

static void mr_release(xp_ctx *c, xp_mr *mr) {
    ucp_rkey_buffer_release(mr->packed);
    XP_CHECK(AFD_LOG_WARN, ucp_mem_unmap(c->ucp, mr->memh));
    free(mr);
}

void xp_mr_free(xp_ctx *c, xp_mr *mr) {
    if (!c || !mr) return;
    for (xp_mr **pp = &c->mrs; *pp; pp = &(*pp)->next)
        if (*pp == mr) {
            *pp = mr->next;
            mr_release(c, mr);
            return;
        }
    log_error("xport: xp_mr_free(%p): not a region of this context", (void *)mr);
}

void xp_mrs_free(xp_ctx *c) {
    while (c->mrs) {
        xp_mr *mr = c->mrs;
        c->mrs = mr->next;
        mr_release(c, mr);
    }
}

const void *xp_mr_rkey(const xp_mr *mr, size_t *len) {
    *len = mr->packed_len;
    return mr->packed;
}

ucp_mem_h xp_mr_memh_of(const xp_ctx *c, const void *p, size_t len) {
    const uint8_t *b = p;
    for (const xp_mr *r = c->mrs; r; r = r->next) {
        const uint8_t *a = r->addr;
        if (b >= a && (size_t)(b - a) <= r->len && len <= r->len - (size_t)(b - a)) return r->memh;
    }
    return NULL;
}

int xp_rkey_unpack(xp_peer *p, const void *packed, size_t len, xp_rkey **out) {
    *out = NULL;
    if (!p || !packed || !len) return -EINVAL;
    if (p->state != XP_P_UP || !p->ep) return AFD_E_STATE;
    ucp_rkey_h rk;
    ucs_status_t st = XP_CHECK(AFD_LOG_WARN, ucp_ep_rkey_unpack(p->ep, packed, &rk));
    if (st != UCS_OK) return AFD_E_FORMAT;
    xp_rkey *k = xcalloc(1, sizeof *k);
    k->rkey = rk;
    k->peer = p;
    k->next = p->rkeys;
    if (p->rkeys) p->rkeys->prev = k;
    p->rkeys = k;
    *out = k;
    return 0;
}

void xp_rkey_free(xp_rkey *k) {
    if (!k) return;
    xp_peer *p = k->peer;
    if (k->prev)
        k->prev->next = k->next;
    else
        p->rkeys = k->next;
    if (k->next) k->next->prev = k->prev;
    ucp_rkey_destroy(k->rkey);
    free(k);
}

void xp_rkeys_drop(xp_peer *p) {
    while (p->rkeys) xp_rkey_free(p->rkeys);
}

/* Hands a UCX request (or an immediate result) to the completion machinery of sr. */
static int track(xp_peer *p, xp_sreq *sr, void *req, const char *what) {
    xp_ctx *c = p->c;
    if (UCS_PTR_IS_ERR(req)) {
        xp_sreq_put(c, sr);
        xp_peer_down(p, XP_DOWN_ERROR, XP_CLOSE_FORCE, "%s failed: %s", what,
                     ucs_status_string(UCS_PTR_STATUS(req)));
        return -EIO;
    }
    xp_tx_link(p, sr);
    if (req) {
        sr->req = req;
    } else {
        sr->status = 0;
        xp_cq_push(c, sr);
    }
    xp_kick(c);
    return 0;
}

int xp_put(xp_peer *p, const void *src, size_t len, uint64_t raddr, xp_rkey *rk, xp_send_cb cb,
           void *arg) {
    if (!p || !src || !len || !rk || rk->peer != p) return -EINVAL;
    if (p->state != XP_P_UP || !p->ep) return AFD_E_STATE;
    xp_sreq *sr = xp_sreq_get(p->c);
    sr->cb = cb, sr->arg = arg, sr->peer = p;
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = xp_send_done,
                              .user_data = sr};
    ucp_mem_h memh = xp_mr_memh_of(p->c, src, len);
    if (memh) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        rp.memh = memh;
    }
    void *req = XP_CHECK_PTR(AFD_LOG_WARN, ucp_put_nbx(p->ep, src, len, raddr, rk->rkey, &rp));
    int rc = track(p, sr, req, "put");
    if (!rc) p->c->st.bytes_out += len;
    return rc;
}

int xp_flush(xp_peer *p, xp_send_cb cb, void *arg) {
    if (!p) return -EINVAL;
    if (p->state != XP_P_UP || !p->ep) return AFD_E_STATE;
    xp_sreq *sr = xp_sreq_get(p->c);
    sr->cb = cb, sr->arg = arg, sr->peer = p;
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = xp_send_done,
                              .user_data = sr};
    void *req = XP_CHECK_PTR(AFD_LOG_WARN, ucp_ep_flush_nbx(p->ep, &rp));
    return track(p, sr, req, "flush");
}
