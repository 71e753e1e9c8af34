/* http_int.h: internals shared by router/http*.c (not for other modules).
 *
 * http_parse.c  pure parsers: request head, framing, chunked bodies, query strings, ids
 * http_keys.c   API keys file -> SHA-256 digests, constant-time check
 * http_conn.c   connections: accept, TLS, read state machine, timers, close
 * http_reply.c  responses, SSE, the end of a request (metrics, access log)
 * http.c        server start/free, routes, the head phases, accessors
 *
 * Life of a connection: IDLE (keep-alive, idle timer) -> HEAD (request deadline armed) ->
 * BODY -> BUSY (handler owns the request) -> IDLE again, or CLOSING (flush the output) ->
 * LINGER (plain TCP: write side shut, input discarded briefly so the client reads our reply)
 * -> freed. Connections are freed only from their deferred "kick" event, never inside a call
 * that may be on the stack of a handler.
 */
#ifndef AFD_ROUTER_HTTP_INT_H
#define AFD_ROUTER_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "common/base/metrics.h"
#include "router/http.h"

struct bufferevent;
struct event;
struct evbuffer;
struct evbuffer_cb_entry;
struct evconnlistener;
struct sockaddr;
typedef struct ssl_ctx_st SSL_CTX;

/* ---- http_parse.c ---- */

typedef struct rh_hdr {
    const char *name;
    const char *value;
} rh_hdr;

typedef struct rh_head {
    const char *method;
    char *target; /* path + optional "?query", absolute-form reduced to its path */
    int minor;    /* HTTP/1.minor */
    rh_hdr *hdrs;
    int n_hdrs;
} rh_head;

/* Parse results (negative): the HTTP status each one is answered with. */
enum {
    RH_PE_BAD = -400,      /* malformed */
    RH_PE_TOO_MANY = -431, /* more header lines than allowed */
    RH_PE_VERSION = -505,  /* HTTP/x.y other than 1.x */
    RH_PE_TE = -501,       /* a transfer-coding other than chunked */
    RH_PE_EXPECT = -417,   /* an Expect other than 100-continue */
};

/* Offset just past the blank line ending a head in buf[0..len), or -1 if not there yet.
 * Lines end in CRLF or LF. */
long rh_head_end(const char *buf, size_t len);
/* Number of leading CRLF / LF bytes (blank lines before a request line are ignored). */
size_t rh_leading_blank(const char *buf, size_t len);
/* Parses a head in place (buf is NUL-terminated at len, len excludes the NUL). hdrs has room
 * for max_hdrs. 0, or RH_PE_* with *why (a static string). */
int rh_parse_head(char *buf, size_t len, rh_hdr *hdrs, int max_hdrs, rh_head *out,
                  const char **why);

typedef struct rh_framing {
    int chunked;     /* Transfer-Encoding: chunked */
    int has_length;  /* Content-Length given */
    uint64_t length; /* its value */
    int keep_alive;  /* HTTP/1.1 without Connection: close */
    int expect_100;  /* Expect: 100-continue */
} rh_framing;

/* Reads the framing headers of a parsed head. 0, or RH_PE_* with *why. */
int rh_head_framing(const rh_head *h, rh_framing *f, const char **why);

/* Method name -> RH_* bit, 0 when unknown. */
unsigned rh_method_bit(const char *m);
/* First header of that name (case-insensitive), or NULL. */
const char *rh_head_get(const rh_head *h, const char *name);

/* Chunked body decoder, resumable at any byte. */
typedef struct rh_chunked {
    int state;
    uint64_t size;  /* size of the chunk being read */
    uint64_t left;  /* data bytes left in it */
    uint64_t total; /* data bytes so far */
    uint64_t max;   /* limit on total */
    size_t line;    /* bytes of the current size / trailer line */
    size_t trailer; /* trailer bytes so far */
    size_t max_trailer;
    int digits;
    int line_start;
    const char *why; /* after an error */
} rh_chunked;

enum { RH_CK_MORE = 0, RH_CK_DATA = 1, RH_CK_DONE = 2, RH_CK_BAD = -1, RH_CK_TOO_LARGE = -2 };

void rh_chunked_init(rh_chunked *c, uint64_t max_total, size_t max_trailer);
/* Consumes *used bytes of in[0..n). RH_CK_DATA: the last *data_len consumed bytes are body
 * data; RH_CK_MORE: everything was framing, feed more; RH_CK_DONE: the body and its trailer
 * ended (bytes after *used belong to the next request); errors set c->why. */
int rh_chunked_step(rh_chunked *c, const char *in, size_t n, size_t *used, size_t *data_len);

/* Percent-decodes the first value of name in a query string (see rh_req_query_param). */
int rh_query_param(const char *query, const char *name, char *out, size_t cap);
/* 1 when an X-Request-Id is acceptable: 1..RH_REQ_ID_MAX bytes, each 0x21..0x7e. */
int rh_req_id_ok(const char *s);
/* Writes "req-" + 32 hex digits of randomness (dst capacity >= 37). */
void rh_req_id_make(char *dst, size_t cap);
/* 1 when s is an HTTP token (header name). */
int rh_token_ok(const char *s);
/* 1 when s is a valid header value (HTAB, 0x20..0x7e, 0x80..0xff). */
int rh_value_ok(const char *s);
/* 1 when comma-separated list of tokens (Access-Control-Request-Headers), bounded. */
int rh_token_list_ok(const char *s, size_t max);

/* ---- http_keys.c ---- */

typedef struct rh_keys {
    unsigned char (*digest)[32]; /* SHA-256 of each key */
    int n;
} rh_keys;

/* Loads a keys file into *out (replacing nothing on error). 0 or negative with *err. */
int rh_keys_load(const char *path, rh_keys *out, afd_err *err);
void rh_keys_clear(rh_keys *k);
/* 1 when token (len bytes) is one of the keys; time independent of which and of contents. */
int rh_keys_check(const rh_keys *k, const char *token, size_t len);
/* The Bearer token of an Authorization header value, or NULL. */
const char *rh_bearer_token(const char *value, size_t *len);

/* ---- server, connection, request ---- */

typedef struct rh_route_ent {
    char *path;
    size_t plen; /* for a prefix: the length without the '*' */
    int prefix;
    unsigned methods;
    unsigned flags;
    rh_handler cb;
    void *ud;
    afd_metric **by_code; /* requests_total{route,code}, codes 100..599, filled lazily */
} rh_route_ent;

typedef enum { C_IDLE, C_HEAD, C_BODY, C_BUSY, C_CLOSING, C_LINGER, C_DEAD } rh_conn_state;

typedef struct rh_conn {
    rh_server *srv;
    struct bufferevent *bev;
    struct event *timer; /* idle / request deadline / linger */
    struct event *kick;  /* deferred work: next request, or free when C_DEAD */
    struct evbuffer_cb_entry *out_cb;
    rh_conn_state state;
    struct rh_req *req; /* the request being read or handled */
    char peer[64];
    int tls;
    size_t scanned;     /* head bytes already searched for its end */
    size_t in_seen;     /* input length after our last pass (bytes-in metric) */
    uint64_t discarded; /* lingering: bytes thrown away */
    struct rh_conn *prev, *next;
} rh_conn;

typedef enum { R_READING, R_HANDLING, R_STREAMING } rh_req_state;

struct rh_req {
    rh_server *srv;
    rh_conn *conn; /* NULL once the client has gone */
    rh_req_state state;
    char *head; /* the head block, parsed in place */
    rh_head h;
    rh_framing fr;
    unsigned method;
    const char *path, *query;
    char *body;
    size_t body_len, body_cap;
    rh_chunked ck;
    const rh_route_ent *route;
    const char *cors_origin; /* value for Access-Control-Allow-Origin, or NULL */
    char id[RH_REQ_ID_MAX + 1];
    char peer[64];
    int dispatched; /* counted in the open requests */
    int gone, in_close;
    int status;
    int close_after;        /* the connection closes after this reply */
    struct evbuffer *extra; /* headers set by rh_set_header */
    rh_close_fn on_close;
    void *close_arg;
    uint64_t t0_ns;
    struct rh_req *prev, *next; /* the server's list of live handles */
};

enum {
    RH_LIM_HEADER,
    RH_LIM_BODY,
    RH_LIM_READ_TIMEOUT,
    RH_LIM_WRITE_TIMEOUT,
    RH_LIM_IDLE_TIMEOUT,
    RH_LIM_CONNECTIONS,
    RH_LIM_BAD_REQUEST,
    RH_LIM_TLS,
    RH_LIM_N
};

struct rh_server {
    struct event_base *base;
    struct evconnlistener *lev;
    struct event *relisten; /* re-enables the listener after an accept error */
    SSL_CTX *ssl;
    /* settings (strings owned) */
    char *keys_file;
    char **cors;
    int n_cors, cors_any;
    uint64_t max_header, max_body;
    int max_headers, max_conns;
    struct timeval tv_read, tv_write, tv_idle, tv_linger;
    int port;
    rh_route_ent *routes;
    int n_routes, cap_routes;
    rh_keys keys;
    rh_conn *conns;
    int n_conns;
    rh_req *reqs; /* every live handle, gone ones included */
    int n_open;
    int draining;
    /* metrics (NULL handles are no-ops) */
    afd_metric_family *fam_requests;
    afd_metric **none_by_code;
    afd_metric *m_conns_open, *m_conns_total, *m_reqs_open, *m_bytes_in, *m_bytes_out;
    afd_metric *m_limit[RH_LIM_N];
    /* Date header, refreshed once a second */
    time_t date_t;
    char date[40];
};

/* http.c */
const rh_route_ent *rh_route_find(const rh_server *s, const char *path, int *path_known);
/* Runs the head phases of a freshly parsed request. 1 when they replied (the request is
 * finished), 0 to go on with the body and the handler. */
int rh_req_begin(rh_req *r);
/* Hands a complete request to its handler. */
void rh_req_dispatch(rh_req *r);

/* http_conn.c */
void rh_conn_accept_setup(rh_server *s, int fd, const struct sockaddr *sa, int salen);
/* A reply was finished and fully queued: go on with the next request, or close. */
void rh_conn_after_reply(rh_conn *c, int close_after);
/* Closes now (later freed from the kick event); no callbacks run. */
void rh_conn_close(rh_conn *c);
/* The client is gone: ends the request (on_close), closes. */
void rh_conn_gone(rh_conn *c, int lim);
struct evbuffer *rh_conn_out(rh_conn *c);
size_t rh_conn_pending(rh_conn *c);
void rh_limit_hit(rh_server *s, int lim);
int rh_listen(rh_server *s, const char *addr, int port, afd_err *err);
void rh_unlisten(rh_server *s);
int rh_tls_init(rh_server *s, const char *cert, const char *key, afd_err *err);
void rh_conns_close_idle(rh_server *s);
/* Closes every connection at once (on_close runs for unfinished requests). */
void rh_conns_free_all(rh_server *s);

/* http_reply.c */
rh_req *rh_req_new(rh_conn *c);
void rh_req_free(rh_req *r);
/* Ends a handle whose client has gone (on_close, metrics as 499). */
void rh_req_gone_end(rh_req *r);
/* Sends an error before or after the head was parsed (connection-level failures). */
int rh_reply_status_error(rh_req *r, int status, const char *code, const char *msg);
void rh_count(rh_server *s, const rh_route_ent *route, int status);
/* Adds a response header without the reserved-name check. 0, AFD_E_LIMIT, -ENOMEM. */
int rh_add_header_raw(rh_req *r, const char *name, const char *value);

#endif
