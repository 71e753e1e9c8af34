/* http_admin.h: the small HTTP port every daemon exposes (libevent evhttp).
 *
 *   GET /metrics  200, the registry as Prometheus text (text/plain; version=0.0.4)
 *   GET /health   200 "ok" while the event loop runs
 *   GET /ready    200 {"ready":true} when the readiness callback says so, else
 *                 503 {"ready":false,"reason":"..."} (no callback: 503 "not configured")
 *   GET <route>   a daemon's own page (afd_admin_route)
 *   POST <route>  a daemon's own action (afd_admin_route_post), body up to AFD_ADMIN_MAX_BODY
 * Anything else is 404; other methods are 405 (with Allow). Requests are
 * bounded: headers AFD_ADMIN_MAX_HEADERS bytes, body AFD_ADMIN_MAX_BODY bytes, and a
 * connection idle for AFD_ADMIN_TIMEOUT_S seconds is closed. Requests are counted in
 * afd_admin_requests_total{code=...}.
 *
 * Threads: everything runs on the thread of the given event_base; call these functions from
 * that thread (the metrics registry itself may be updated from any thread). Ownership: the
 * admin borrows base and reg (both must outlive it); afd_admin_free closes the port and its
 * connections and must not be called from inside one of its own handlers.
 */
#ifndef AFD_HTTP_ADMIN_H
#define AFD_HTTP_ADMIN_H

#include <stddef.h>

#include "common/base/err.h"
#include "common/base/metrics.h"

struct event_base;
struct evbuffer;

#define AFD_ADMIN_MAX_HEADERS 8192
#define AFD_ADMIN_MAX_BODY    8192
#define AFD_ADMIN_TIMEOUT_S   10
#define AFD_ADMIN_MAX_ROUTES  16

typedef struct afd_admin afd_admin;

/* Returns nonzero when ready; otherwise writes a short reason into why (capacity n). */
typedef int (*afd_admin_ready_fn)(void *ud, char *why, size_t n);

/* Writes the page into body and returns the HTTP status (100..599; anything else is sent as
 * 500). *content_type defaults to "text/plain; charset=utf-8"; set it to a static string.
 * query is the raw query string after '?', or NULL. */
typedef int (*afd_admin_handler)(void *ud, const char *query, struct evbuffer *body,
                                 const char **content_type);

/* Listens on addr (NULL: 127.0.0.1) and port (0: ephemeral; *bound_port gets the port, if
 * bound_port != NULL). reg may be NULL (then /metrics is empty). Returns the admin, or NULL
 * with *err (AFD_E_FORMAT for a bad port, -errno when the address cannot be bound). */
afd_admin *afd_admin_start(struct event_base *base, const char *addr, int port, int *bound_port,
                           afd_metrics *reg, afd_err *err);

/* Sets (or clears, fn == NULL) the readiness callback behind /ready. */
void afd_admin_set_ready(afd_admin *a, afd_admin_ready_fn fn, void *ud);

/* Adds GET path (must start with '/', not a built-in or already routed path). 0, or
 * AFD_E_FORMAT / AFD_E_LIMIT (more than AFD_ADMIN_MAX_ROUTES). */
int afd_admin_route(afd_admin *a, const char *path, afd_admin_handler cb, void *ud);

/* POST handler: the request body (NUL-terminated; len without the NUL). Same reply contract
 * as afd_admin_handler. */
typedef int (*afd_admin_post_handler)(void *ud, const char *body, size_t len,
                                      struct evbuffer *out, const char **content_type);
/* Adds POST path (not a built-in, not already a POST route). 0, AFD_E_FORMAT, AFD_E_LIMIT. */
int afd_admin_route_post(afd_admin *a, const char *path, afd_admin_post_handler cb, void *ud);

/* Closes the port and every admin connection. NULL is a no-op. */
void afd_admin_free(afd_admin *a);

#endif
