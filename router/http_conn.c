/* http_conn.c: connections of the HTTP front (see http_int.h): listener, TLS, the read state
 * machine with its limits and timers, closing. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/log.h"
#include "router/http_int.h"

#define LINGER_MAX_BYTES (1u << 20) /* input thrown away after a reply that closes */
#define CHUNKED_FIRST    (64u << 10)

static void conn_process(rh_conn *c);

void rh_limit_hit(rh_server *s, int lim) {
    afd_metric_inc(s->m_limit[lim]);
}

struct evbuffer *rh_conn_out(rh_conn *c) {
    return bufferevent_get_output(c->bev);
}

size_t rh_conn_pending(rh_conn *c) {
    return evbuffer_get_length(rh_conn_out(c));
}

/* ---- closing ---- */

static void conn_free(rh_conn *c) {
    rh_server *s = c->srv;
    rh_req *r = c->req;
    c->req = NULL;
    if (r) {
        r->conn = NULL;
        if (r->dispatched)
            rh_req_gone_end(r);
        else
            rh_req_free(r);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    afd_metric_set(s->m_conns_open, s->n_conns);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    bufferevent_free(c->bev);
    event_free(c->timer);
    event_free(c->kick);
    free(c);
}

void rh_conn_close(rh_conn *c) {
    if (c->state == C_DEAD) return;
    c->state = C_DEAD;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    evtimer_del(c->timer);
    event_active(c->kick, EV_TIMEOUT, 0);
}

void rh_conn_gone(rh_conn *c, int lim) {
    if (lim >= 0) rh_limit_hit(c->srv, lim);
    rh_req *r = c->req;
    c->req = NULL;
    rh_conn_close(c);
    if (!r) return;
    r->conn = NULL;
    if (r->dispatched)
        rh_req_gone_end(r);
    else
        rh_req_free(r);
}

/* Output flushed after a reply that closes: read (and drop) what the client still sends for a
 * moment, so that a reply to an unread body is not lost to a reset. Plain TCP also shuts its
 * write side, which tells a close-delimited reader the response is complete; TLS cannot (the
 * stream would lose its framing), so there the client's own close or the linger timer ends it. */
static void conn_flushed(rh_conn *c) {
    if (!c->tls) shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->state = C_LINGER;
    evtimer_add(c->timer, &c->srv->tv_linger);
}

static void conn_to_idle(rh_conn *c) {
    c->state = C_IDLE;
    c->scanned = 0;
    evtimer_add(c->timer, &c->srv->tv_idle);
}

/* Flushes what is queued, then closes (C_CLOSING ends in conn_flushed). */
static void conn_to_closing(rh_conn *c) {
    c->state = C_CLOSING;
    evtimer_del(c->timer);
    event_active(c->kick, EV_TIMEOUT, 0);
}

void rh_conn_after_reply(rh_conn *c, int close_after) {
    if (c->state == C_DEAD) return;
    if (close_after || c->srv->draining) {
        conn_to_closing(c);
        return;
    }
    conn_to_idle(c);
    event_active(c->kick, EV_TIMEOUT, 0);
}

void rh_conns_close_idle(rh_server *s) {
    for (rh_conn *c = s->conns; c; c = c->next)
        if (c->state == C_IDLE) conn_to_closing(c);
}

void rh_conns_free_all(rh_server *s) {
    while (s->conns) {
        rh_conn *c = s->conns;
        rh_conn_gone(c, -1);
        event_del(c->kick);
        conn_free(c);
    }
}

/* ---- reading: one step per state; each returns 1 when the state moved on ---- */

static void fail(rh_conn *c, int status, const char *code, const char *why, int lim) {
    if (lim >= 0) rh_limit_hit(c->srv, lim);
    rh_reply_status_error(c->req, status, code, why);
}

static int step_idle(rh_conn *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in), look = len < 64 ? len : 64;
    size_t blank = rh_leading_blank((const char *)evbuffer_pullup(in, (ev_ssize_t)look), look);
    evbuffer_drain(in, blank);
    if (blank == 64) return 1;
    if (evbuffer_get_length(in) == 0) return 0;
    c->req = rh_req_new(c);
    c->state = C_HEAD;
    c->scanned = 0;
    evtimer_add(c->timer, &c->srv->tv_read);
    return 1;
}

static void start_body(rh_conn *c, rh_req *r) {
    if (r->fr.chunked) {
        rh_chunked_init(&r->ck, r->srv->max_body, r->srv->max_header);
        r->body_cap = r->srv->max_body + 1 < CHUNKED_FIRST ? r->srv->max_body + 1 : CHUNKED_FIRST;
    } else {
        r->body_cap = (size_t)r->fr.length + 1;
    }
    r->body = afd_try_alloc(r->body_cap);
    if (!r->body) {
        fail(c, 503, "server_overloaded", "no memory for the request body", -1);
        return;
    }
    if (r->fr.expect_100) evbuffer_add(rh_conn_out(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->state = C_BODY;
}

static void dispatch(rh_conn *c) {
    c->state = C_BUSY;
    evtimer_del(c->timer);
    rh_req_dispatch(c->req);
}

/* A whole head is in the first `end` input bytes: parse it and run the head phases. */
static void head_ready(rh_conn *c, size_t end) {
    rh_server *s = c->srv;
    rh_req *r = c->req;
    r->head = xmalloc(end + 1);
    evbuffer_remove(bufferevent_get_input(c->bev), r->head, end);
    r->head[end] = 0;
    r->h.hdrs = xcalloc((size_t)s->max_headers, sizeof(rh_hdr));
    const char *why = NULL;
    int rc = rh_parse_head(r->head, end, r->h.hdrs, s->max_headers, &r->h, &why);
    if (!rc) rc = rh_head_framing(&r->h, &r->fr, &why);
    if (rc) {
        r->h.method = NULL; /* a request we could not read: nothing of it is trusted */
        fail(c, -rc, rc == RH_PE_TOO_MANY ? "request_headers_too_large" : "bad_request", why,
             rc == RH_PE_TOO_MANY ? RH_LIM_HEADER : RH_LIM_BAD_REQUEST);
        return;
    }
    if (rh_req_begin(r)) return;
    if (r->fr.chunked || r->fr.length > 0)
        start_body(c, r);
    else
        dispatch(c);
}

static int step_head(rh_conn *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in), lim = (size_t)c->srv->max_header;
    size_t look = len < lim ? len : lim;
    if (c->scanned == 0) { /* blank lines may precede the request line */
        size_t blank = rh_leading_blank((const char *)evbuffer_pullup(in, (ev_ssize_t)look), look);
        evbuffer_drain(in, blank);
        len -= blank;
        look = len < lim ? len : lim;
    }
    if (look == 0) return 0;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
    long end = rh_head_end(p + from, look - from);
    if (end < 0) {
        c->scanned = look;
        if (len >= lim) {
            char why[96];
            snprintf(why, sizeof why, "request head over the limit of %zu bytes", lim);
            fail(c, 431, "request_headers_too_large", why, RH_LIM_HEADER);
            return 1;
        }
        return 0;
    }
    head_ready(c, from + (size_t)end);
    return 1;
}

static int body_grow(rh_req *r, size_t need) {
    if (need <= r->body_cap) return 0;
    size_t cap = r->body_cap * 2 > need ? r->body_cap * 2 : need;
    if (cap > r->srv->max_body + 1) cap = (size_t)r->srv->max_body + 1;
    char *b = realloc(r->body, cap);
    if (!b) return -ENOMEM;
    r->body = b;
    r->body_cap = cap;
    return 0;
}

/* Feeds the buffered input to the chunked decoder. 1 when the body is complete, 0 for more,
 * -1 after an error reply. */
static int chunked_feed(rh_conn *c, rh_req *r, struct evbuffer *in) {
    size_t len = evbuffer_get_length(in), off = 0;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    int rc = RH_CK_MORE;
    while (off < len) {
        size_t used, dl;
        rc = rh_chunked_step(&r->ck, p + off, len - off, &used, &dl);
        if (rc == RH_CK_DATA) {
            if (body_grow(r, r->body_len + dl + 1) != 0) {
                fail(c, 503, "server_overloaded", "no memory for the request body", -1);
                return -1;
            }
            memcpy(r->body + r->body_len, p + off + used - dl, dl);
            r->body_len += dl;
        }
        off += used;
        if (rc == RH_CK_DONE || rc < 0) break;
    }
    evbuffer_drain(in, off);
    if (rc == RH_CK_TOO_LARGE || rc == RH_CK_BAD) {
        char why[128];
        snprintf(why, sizeof why, "%s (limit %llu bytes)", r->ck.why,
                 (unsigned long long)r->srv->max_body);
        int big = rc == RH_CK_TOO_LARGE;
        fail(c, big ? 413 : 400, big ? "request_too_large" : "bad_request", big ? why : r->ck.why,
             big ? RH_LIM_BODY : RH_LIM_BAD_REQUEST);
        return -1;
    }
    return rc == RH_CK_DONE;
}

static int step_body(rh_conn *c) {
    rh_req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (r->fr.chunked) {
        int rc = chunked_feed(c, r, in);
        if (rc <= 0) return rc < 0;
    } else {
        size_t need = (size_t)r->fr.length - r->body_len, avail = evbuffer_get_length(in);
        size_t take = need < avail ? need : avail;
        if (take) evbuffer_remove(in, r->body + r->body_len, take);
        r->body_len += take;
        if (r->body_len < r->fr.length) return 0;
    }
    r->body[r->body_len] = 0;
    dispatch(c);
    return 1;
}

static void step_discard(rh_conn *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    evbuffer_drain(in, n);
    c->discarded += n;
    if (c->state == C_LINGER && c->discarded > LINGER_MAX_BYTES) rh_conn_close(c);
}

static void conn_process(rh_conn *c) {
    for (int moved = 1; moved;) {
        switch (c->state) {
        case C_IDLE:
            moved = step_idle(c);
            break;
        case C_HEAD:
            moved = step_head(c);
            break;
        case C_BODY:
            moved = step_body(c);
            break;
        case C_CLOSING:
        case C_LINGER:
            step_discard(c);
            moved = 0;
            break;
        default:
            moved = 0;
            break; /* C_BUSY waits for the handler; C_DEAD */
        }
    }
    c->in_seen = evbuffer_get_length(bufferevent_get_input(c->bev));
}

/* ---- bufferevent and timer callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg) {
    rh_conn *c = arg;
    size_t len = evbuffer_get_length(bufferevent_get_input(bev));
    if (len > c->in_seen) afd_metric_add(c->srv->m_bytes_in, len - c->in_seen);
    conn_process(c);
}

/* Deferred: by the time it runs more output may have been queued, so look at the buffer. */
static void on_write(struct bufferevent *bev, void *arg) {
    rh_conn *c = arg;
    if (c->state == C_CLOSING && rh_conn_pending(c) == 0) conn_flushed(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    rh_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) return;
    int lim = -1;
    if (what & BEV_EVENT_TIMEOUT)
        lim = RH_LIM_WRITE_TIMEOUT;
    else if (c->tls && bufferevent_get_openssl_error(bev))
        lim = RH_LIM_TLS;
    while (c->tls && bufferevent_get_openssl_error(bev))
        ; /* drain the queue so it does not leak into another connection's report */
    if (lim == RH_LIM_WRITE_TIMEOUT)
        log_info("http: %s cut: no write progress for %ld ms", c->peer,
                 (long)(c->srv->tv_write.tv_sec * 1000 + c->srv->tv_write.tv_usec / 1000));
    rh_conn_gone(c, lim);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    rh_conn *c = arg;
    switch (c->state) {
    case C_IDLE:
        rh_limit_hit(c->srv, RH_LIM_IDLE_TIMEOUT);
        rh_conn_close(c);
        break;
    case C_HEAD:
    case C_BODY:
        log_info("http: %s: request not received within %ld ms", c->peer,
                 (long)(c->srv->tv_read.tv_sec * 1000 + c->srv->tv_read.tv_usec / 1000));
        fail(c, 408, "request_timeout", "request not received in time", RH_LIM_READ_TIMEOUT);
        break;
    case C_LINGER:
        rh_conn_close(c);
        break;
    default:
        break;
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg) {
    rh_conn *c = arg;
    if (c->state == C_DEAD) {
        conn_free(c);
        return;
    }
    if (c->state == C_CLOSING && rh_conn_pending(c) == 0) conn_flushed(c);
    conn_process(c);
}

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    rh_conn *c = arg;
    if (info->n_deleted) afd_metric_add(c->srv->m_bytes_out, info->n_deleted);
}

/* ---- accepting ---- */

static void peer_text(const struct sockaddr *sa, char *out, size_t cap) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "unix");
    }
}

static struct bufferevent *conn_bev(rh_server *s, int fd) {
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (!s->ssl) return bufferevent_socket_new(s->base, fd, opts);
    SSL *ssl = SSL_new(s->ssl);
    if (!ssl) return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void conn_link(rh_server *s, rh_conn *c) {
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    afd_metric_set(s->m_conns_open, s->n_conns);
    afd_metric_inc(s->m_conns_total);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
    rh_server *s = arg;
    if (s->n_conns >= s->max_conns) {
        rh_limit_hit(s, RH_LIM_CONNECTIONS);
        log_warn("http: connection refused: %d open, the limit is %d", s->n_conns, s->max_conns);
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = conn_bev(s, fd);
    if (!bev) {
        log_warn("http: cannot set up a connection (out of memory)");
        evutil_closesocket(fd);
        return;
    }
    rh_conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    c->bev = bev;
    c->tls = s->ssl != NULL;
    peer_text(sa, c->peer, sizeof c->peer);
    c->timer = evtimer_new(s->base, on_timer, c);
    c->kick = event_new(s->base, -1, 0, on_kick, c);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(bev, EV_READ, 0, (size_t)s->max_header + 16384);
    bufferevent_set_timeouts(bev, NULL, &s->tv_write);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    conn_link(s, c);
    conn_to_idle(c);
    evtimer_add(c->timer, &s->tv_read); /* the first request must start within the read timeout */
}

static void on_relisten(evutil_socket_t fd, short what, void *arg) {
    rh_server *s = arg;
    if (s->lev) evconnlistener_enable(s->lev);
}

static void on_accept_error(struct evconnlistener *l, void *arg) {
    rh_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("http: accept failed: %s; pausing the listener for 1 s",
             evutil_socket_error_to_string(e));
    evconnlistener_disable(l);
    struct timeval one = {1, 0};
    evtimer_add(s->relisten, &one);
}

static int bound_port(evutil_socket_t fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int rh_listen(rh_server *s, const char *addr, int port, afd_err *err) {
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST; /* never a DNS lookup */
    if (strcmp(addr, "localhost") == 0) addr = "127.0.0.1";
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = evutil_getaddrinfo(addr, ps, &hints, &res);
    if (gai != 0 || !res)
        return afd_errf(err, AFD_E_FORMAT,
                        "http: listen address %s is not a numeric IPv4 or IPv6 address: %s", addr,
                        evutil_gai_strerror(gai));
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    s->lev = evconnlistener_new_bind(s->base, on_accept, s, flags, 511, res->ai_addr,
                                     (int)res->ai_addrlen);
    int e = errno ? errno : EADDRNOTAVAIL;
    evutil_freeaddrinfo(res);
    if (!s->lev)
        return afd_errf(err, -e, "http: cannot listen on %s:%d: %s", addr, port, strerror(e));
    evconnlistener_set_error_cb(s->lev, on_accept_error);
    s->relisten = evtimer_new(s->base, on_relisten, s);
    s->port = bound_port(evconnlistener_get_fd(s->lev));
    return 0;
}

void rh_unlisten(rh_server *s) {
    if (s->lev) evconnlistener_free(s->lev);
    if (s->relisten) event_free(s->relisten);
    s->lev = NULL;
    s->relisten = NULL;
}

/* ---- TLS ---- */

static int tls_fail(afd_err *err, const char *what, const char *path) {
    char text[256] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, text, sizeof text);
    ERR_clear_error();
    return afd_errf(err, AFD_E_FORMAT, "http: TLS %s %s: %s", what, path, text);
}

static int readable(const char *what, const char *path, afd_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return afd_errf(err, -errno, "http: TLS %s %s: %s", what, path, strerror(errno));
    fclose(f);
    return 0;
}

/* Offers http/1.1 only; a client that wants something else proceeds without ALPN. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

int rh_tls_init(rh_server *s, const char *cert, const char *key, afd_err *err) {
    int rc = readable("certificate", cert, err);
    if (!rc) rc = readable("key", key, err);
    if (rc) return rc;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return tls_fail(err, "context for", cert);
    s->ssl = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return tls_fail(err, "certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            return afd_errf(err, AFD_E_MISMATCH,
                            "http: TLS key %s does not match the "
                            "certificate %s",
                            key, cert);
        }
        return tls_fail(err, "key", key);
    }
    return 0;
}
