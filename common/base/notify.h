/* notify.h: the daemons' side of systemd's service notifications (Type=notify, WatchdogSec=).
 *
 * Wraps libsystemd's sd_notify(). Every function is a no-op returning 0 when NOTIFY_SOCKET is
 * unset (a daemon started by hand or by a test), so callers never test for systemd themselves.
 * A message is handed to a small notifier thread, started at the first message, which does the
 * sending: sd_notify() blocks when the manager does not read its socket, and the work loop must
 * never block on it. The thread only forwards what callers queued, so it cannot keep a wedged
 * loop alive: a watchdog ping leaves only when the loop calls afd_notify_watchdog().
 * STATUS text is one line (newlines become spaces) cut to AFD_NOTIFY_STATUS_MAX bytes on a
 * UTF-8 boundary. Consecutive status updates still waiting to be sent replace each other.
 *
 * The contract the daemons keep (docs/operations.md "Notify and watchdog"):
 *   main:     afd_notify_init() first, before any thread starts.
 *   start-up: afd_notify_status("loading weights: %d/%d files", ...) as loading advances, and
 *             afd_notify_extend_timeout(120000000) every few seconds of progress (so a load
 *             that stops progressing fails within 2 min, while a slow one is never cut off);
 *             afd_notify_ready("serving: ...") once weights are loaded AND the peers are
 *             connected (attnd: its whole FFN group; ffnd: listening; router: >= 1 attnd).
 *   loop:     afd_notify_watchdog() where the loop proves progress (after a step, after an
 *             event batch), plus a timer ON THE LOOP every afd_notify_watchdog_interval_ns()
 *             so an idle loop still pets. Never from a thread of its own.
 *             afd_notify_status(...) now and then (every few seconds) with what it serves.
 *   SIGTERM:  afd_notify_stopping() when the drain starts; keep petting while draining.
 *
 * Thread-safety: every function may be called from any thread. Errors: values >= 0 are
 * success (1: a message was queued, 0: nothing to send), negative AFD_E_* / -errno otherwise.
 * sd_notify() failures happen on the notifier thread: they are logged once per kind (warn)
 * and kept for afd_notify_last_error(); they never reach the caller.
 */
#ifndef AFD_NOTIFY_H
#define AFD_NOTIFY_H

#include <stdint.h>

/* Longest STATUS text sent, in bytes (longer text is cut). */
#define AFD_NOTIFY_STATUS_MAX 400
/* Messages queued for the notifier thread at most. When it is full (the manager stopped
 * reading), a new message drops the oldest unsent status, or is refused if there is none. */
#define AFD_NOTIFY_QUEUE 16

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once (later calls do nothing; every
 * other function calls it). Returns 1 when NOTIFY_SOCKET is set, 0 otherwise. */
int afd_notify_init(void);

/* READY=1, with STATUS=status when status is not NULL. 1 queued, 0 no-op, AFD_E_LIMIT when
 * the queue is full (the manager has stopped reading). */
int afd_notify_ready(const char *status);

/* STATUS=<formatted text>. 1 queued (or merged with an unsent status), 0 no-op, AFD_E_LIMIT
 * when the queue is full of other messages. */
int afd_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1: the daemon is draining and will exit. 1, 0 or AFD_E_LIMIT as ready. */
int afd_notify_stopping(void);

/* EXTEND_TIMEOUT_USEC=usec: the start (or stop) may take until now + usec. 1, 0, AFD_E_LIMIT;
 * -EINVAL for usec == 0. */
int afd_notify_extend_timeout(uint64_t usec);

/* How often the loop must call afd_notify_watchdog() at the latest: half of WatchdogSec=, in
 * ns. 0 when the manager expects no pings (no watchdog, no NOTIFY_SOCKET, or WATCHDOG_PID
 * names another process). */
uint64_t afd_notify_watchdog_interval_ns(void);

/* WATCHDOG=1, rate-limited: queued at most once per quarter of WatchdogSec=, so calling it on
 * every loop iteration costs a clock read and a compare. 1 when a ping was queued, 0 when not
 * due or no watchdog. Never blocks and never logs; allocates nothing once the notifier thread
 * runs (the first message or ping starts it). */
int afd_notify_watchdog(void);

/* Waits up to timeout_ms for the notifier thread to have sent everything queued so far.
 * 0 (also when nothing was ever queued), AFD_E_AGAIN on timeout (the manager is not reading). */
int afd_notify_flush(int timeout_ms);

/* The last error sd_notify() returned on the notifier thread (-errno), 0 if none. */
int afd_notify_last_error(void);

#endif
