/* http.h: the router's HTTP/1.1 front (prefix rh_): listener, optional TLS, request parsing
 * with limits, routing, API keys, CORS, request ids, JSON and SSE replies, client-disconnect
 * notification, metrics and draining. docs/http.md describes the behaviour on the wire.
 *
 * Built on libevent bufferevents (plain or OpenSSL) on the caller's event_base; evhttp is not
 * used (it cannot send our error bodies on 413/400 and has no connection limit).
 * A request is parsed in phases: head (request line + headers, limited) -> request id ->
 * CORS preflight -> route (404/405) -> API key (401) -> body (limited, 413) -> handler. A
 * handler may reply at once or later (asynchronously), from the event loop's thread.
 *
 * Lifetime of an rh_req handle (the one rule to remember):
 *   - A finishing call (rh_reply, rh_reply_json, rh_reply_error, rh_sse_end, rh_abort) ends
 *     the handle, whatever it returns. Do not touch the handle afterwards.
 *   - If the client goes away first (disconnect, write timeout, server freed), the on_close
 *     callback (rh_on_close) runs once; the handle ends when that callback returns.
 *   - If the client goes away and no on_close callback is set, the handle stays valid but
 *     "gone": accessors still work, every reply call returns AFD_E_PEER, and the next
 *     finishing call ends it (rh_server_free ends any left over).
 *
 * Logging: handlers and on_close run with the request id as the log request id; a finishing
 * call writes one access-log line and leaves the calling thread's log request id cleared.
 *
 * Threads: every function must be called on the thread running the event_base (the metrics
 * registry may be read from anywhere). Callbacks never run inside an rh_* call: a reply never
 * re-enters a handler or an on_close callback. rh_server_free must not be called from inside a
 * handler or callback of the same server.
 * Ownership: the server borrows base and cfg->metrics (both outlive it) and copies every
 * string of cfg. Errors: 0 / negative (AFD_E_* or -errno); start-up errors come with a
 * one-line message in *err naming the file, address or value at fault.
 */
#ifndef AFD_ROUTER_HTTP_H
#define AFD_ROUTER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"
#include "common/base/metrics.h"

struct event_base;

typedef struct rh_server rh_server;
typedef struct rh_req rh_req;

/* Methods, as a bit mask for rh_route. A GET route also answers HEAD (without the body). */
enum {
    RH_GET = 1u << 0,
    RH_HEAD = 1u << 1,
    RH_POST = 1u << 2,
    RH_PUT = 1u << 3,
    RH_DELETE = 1u << 4,
    RH_OPTIONS = 1u << 5,
    RH_PATCH = 1u << 6,
};

/* Route flags. */
enum {
    RH_PUBLIC = 1u << 0, /* no API key needed (health, ready, metrics) */
};

/* Defaults used for zero fields of rh_config. */
#define RH_DEF_MAX_HEADER_BYTES (16u * 1024)
#define RH_DEF_MAX_BODY_BYTES   (8u * 1024 * 1024)
#define RH_DEF_MAX_HEADERS      100
#define RH_DEF_READ_TIMEOUT_MS  30000
#define RH_DEF_WRITE_TIMEOUT_MS 30000
#define RH_DEF_IDLE_TIMEOUT_MS  60000
#define RH_DEF_MAX_CONNECTIONS  1024
#define RH_REQ_ID_MAX           64 /* bytes of an X-Request-Id we accept */

typedef struct rh_config {
    const char *addr;                /* numeric IPv4/IPv6 or "localhost"; NULL: "127.0.0.1" */
    int port;                        /* 0: ephemeral, see rh_server_port */
    const char *tls_cert;            /* PEM certificate chain file; with tls_key: HTTPS */
    const char *tls_key;             /* PEM private key file; both or neither */
    const char *keys_file;           /* API keys, one per line; NULL or "": auth off */
    const char *const *cors_origins; /* NULL-terminated; NULL or empty: CORS off; "*": any */
    uint64_t max_header_bytes;       /* request line + headers (431 over it); 0: default */
    uint64_t max_body_bytes;         /* body (413 over it); 0: default */
    int max_headers;                 /* header lines (431 over it); 0: default */
    int64_t read_timeout_ms;  /* first byte to last body byte of one request (408); 0: def. */
    int64_t write_timeout_ms; /* output pending without progress this long: cut; 0: def. */
    int64_t idle_timeout_ms;  /* keep-alive connection without a request; 0: default */
    int max_connections;      /* more are closed at accept; 0: default */
    afd_metrics *metrics;     /* NULL: no metrics */
} rh_config;

/* A route's handler: reply now or later (keep req), or register rh_on_close and wait. */
typedef void (*rh_handler)(rh_req *req, void *ud);
/* The client went away before the reply was finished; req ends when this returns. */
typedef void (*rh_close_fn)(rh_req *req, void *arg);

/* ---- server ---- */

/* Loads TLS and keys, binds and listens; sets SIGPIPE to ignored if it had the default action
 * (writes to a reset connection must not kill the process). NULL on error with *err (bad config
 * value, TLS file that does not load, keys file that does not parse, address that cannot be bound).
 */
rh_server *rh_server_start(struct event_base *base, const rh_config *cfg, afd_err *err);
/* The bound port (the ephemeral one when cfg->port was 0). */
int rh_server_port(const rh_server *s);
/* Closes the listener and every connection (on_close runs for unfinished requests), ends the
 * handles left over. NULL is a no-op. Not from inside a callback of this server. libevent
 * releases some connection buffers from the loop: if the loop will not run again, run it once
 * (event_base_loop(base, EVLOOP_NONBLOCK)) before event_base_free. */
void rh_server_free(rh_server *s);

/* Registers methods (RH_* mask) on path. path is exact ("/v1/models") or a prefix pattern: a
 * path ending in a slash and a '*' matches every longer path under that slash (the pattern
 * for "/v1/models/" + '*' matches "/v1/models/x" but not "/v1/models"); exact routes win,
 * then the longest prefix. 0, or AFD_E_FORMAT (bad path, empty mask, NULL cb) or
 * AFD_E_MISMATCH (a method of that path is already routed). */
int rh_route(rh_server *s, unsigned methods, const char *path, unsigned flags, rh_handler cb,
             void *ud);

/* Re-reads cfg->keys_file. On any error the old keys stay and *err says why (the line at
 * fault; a file without keys is an error: remove keys_file to turn auth off). 0 or negative;
 * AFD_E_STATE when no keys file is configured. */
int rh_keys_reload(rh_server *s, afd_err *err);
int rh_keys_count(const rh_server *s);

/* Draining: closes the listener (no new connections); open requests and streams continue,
 * idle keep-alive connections are closed and every later reply carries Connection: close. */
void rh_stop_accepting(rh_server *s);
/* Requests dispatched to a handler and not finished (streams included). */
int rh_open_requests(const rh_server *s);
int rh_open_connections(const rh_server *s);

/* ---- request accessors (valid until the handle ends; a gone handle still answers) ---- */

const char *rh_req_method(const rh_req *r); /* "GET", "POST", ... */
unsigned rh_req_method_id(const rh_req *r); /* one RH_* bit */
const char *rh_req_path(const rh_req *r);   /* as sent, without the query; never NULL */
const char *rh_req_query(const rh_req *r);  /* raw text after '?', or NULL */
/* Percent-decodes the first value of name ('+' is a space) into out (capacity cap, NUL-
 * terminated). Returns its length, AFD_E_NOTFOUND, AFD_E_LIMIT (does not fit) or AFD_E_FORMAT
 * (bad escape, or a NUL byte). "a" alone (no '=') has the empty value. */
int rh_req_query_param(const rh_req *r, const char *name, char *out, size_t cap);
/* First header of that name (case-insensitive), value trimmed, or NULL. */
const char *rh_req_header(const rh_req *r, const char *name);
/* Body bytes (NUL-terminated for convenience; *len excludes it), "" when there is none. */
const char *rh_req_body(const rh_req *r, size_t *len);
const char *rh_req_peer(const rh_req *r);  /* "127.0.0.1:50312", "[::1]:50312" */
const char *rh_req_id(const rh_req *r);    /* the X-Request-Id echoed in the response */
const char *rh_req_route(const rh_req *r); /* the route's path pattern */
int rh_req_gone(const rh_req *r);          /* 1 once the client has gone */

/* ---- replies ---- */

/* Adds a response header (e.g. Retry-After) before the reply starts. Names the server manages
 * (Content-Length, Content-Type, Transfer-Encoding, Connection, X-Request-Id, Date) and
 * names or values with bytes outside the allowed set are AFD_E_FORMAT; after the reply
 * started AFD_E_STATE; gone AFD_E_PEER; more than 16 KiB of them AFD_E_LIMIT. */
int rh_set_header(rh_req *r, const char *name, const char *value);

/* Finishing: status (200..599; other values are sent as 500 and logged; 204 and 304 go
 * without a body) with body (copied). 0, AFD_E_PEER (gone), AFD_E_STATE (a stream had started:
 * it is ended instead), -ENOMEM. */
int rh_reply(rh_req *r, int status, const char *content_type, const void *body, size_t len);
int rh_reply_json(rh_req *r, int status, const char *body, size_t len);
/* Finishing: an OpenAI error object
 *   {"error":{"message":"...","type":"...","param":null|"...","code":null|"..."}}
 * type NULL: "invalid_request_error" (4xx) or "server_error" (5xx); code, param NULL: null. */
int rh_reply_error(rh_req *r, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Starts a Server-Sent Events stream: 200, text/event-stream, no-cache, chunked (HTTP/1.0
 * clients: ends at close). 0, AFD_E_STATE (already replying), AFD_E_PEER. */
int rh_sse_start(rh_req *r);
/* Sends one event: "data: <data>\n\n" (a '\n' in data starts another "data: " line). Returns
 * the bytes now waiting in the connection's output buffer (>= 0: compare with your own bound
 * to notice a slow reader, then rh_abort), or AFD_E_STATE / AFD_E_PEER / -ENOMEM. */
long rh_sse_send(rh_req *r, const char *data, size_t len);
/* Finishing: ends the stream (last chunk). 0, AFD_E_STATE (no stream: 500 sent), AFD_E_PEER. */
int rh_sse_end(rh_req *r);
/* Finishing: closes the connection once what was already queued is written, without ending
 * the stream or body properly, so the client sees it cut (a stream that must stop mid-way).
 * on_close does not run. 0 or AFD_E_PEER. */
int rh_abort(rh_req *r);

/* Sets the callback for the client going away before the reply is finished (replaces an
 * earlier one; cb NULL clears). 0, or AFD_E_PEER if the client has already gone (then cb
 * will not run and the handle must be finished by the caller). */
int rh_on_close(rh_req *r, rh_close_fn cb, void *arg);

#endif
