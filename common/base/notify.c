/* notify.c: sd_notify() behind a queue and one notifier thread (see notify.h for why). */
#include "common/base/notify.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"

#define MSG_MAX (AFD_NOTIFY_STATUS_MAX + 64)

typedef struct nmsg {
    char text[MSG_MAX];
    bool status_only; /* may be replaced by a newer status while unsent */
} nmsg;

static struct {
    pthread_once_t once;
    bool enabled;            /* NOTIFY_SOCKET set */
    uint64_t wd_timeout_ns;  /* WatchdogSec in ns, 0: no watchdog */
    _Atomic uint64_t wd_due; /* afd_now_ns() at which the next ping may be queued */
    _Atomic int last_err;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t wake, done;
    nmsg q[AFD_NOTIFY_QUEUE];
    int head, n;
    bool wd_pending, started;
    uint64_t queued, sent; /* queue entries and pings, for afd_notify_flush */
    unsigned warned;       /* bit per kind of error already logged */
} N = {
    .once = PTHREAD_ONCE_INIT,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static void notify_read_env(void) {
    const char *sock = getenv("NOTIFY_SOCKET");
    N.enabled = sock && *sock;
    uint64_t usec = 0;
    if (N.enabled && sd_watchdog_enabled(0, &usec) > 0)
        N.wd_timeout_ns = usec * 1000;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&N.done, &ca);
    pthread_condattr_destroy(&ca);
}

int afd_notify_init(void) {
    pthread_once(&N.once, notify_read_env);
    return N.enabled ? 1 : 0;
}

/* ---- the notifier thread ------------------------------------------------------------------ */

static void notify_record_error(int rc, const char *what) {
    atomic_store(&N.last_err, rc);
    unsigned bit = 1u << ((unsigned)-rc % 32u);
    pthread_mutex_lock(&N.mu);
    bool first = !(N.warned & bit);
    N.warned |= bit;
    pthread_mutex_unlock(&N.mu);
    if (first)
        log_warn("notify: sd_notify(\"%.32s\") to NOTIFY_SOCKET=%s failed: %s (further "
                 "failures of this kind are not logged)",
                 what, getenv("NOTIFY_SOCKET"), afd_strerror(rc));
}

/* Takes the next message to send into out; called with N.mu held. */
static void notify_take(char *out) {
    if (N.n > 0) {
        memcpy(out, N.q[N.head].text, MSG_MAX);
        N.head = (N.head + 1) % AFD_NOTIFY_QUEUE;
        N.n--;
    } else {
        N.wd_pending = false;
        snprintf(out, MSG_MAX, "WATCHDOG=1");
    }
}

static void *notify_thread(void *arg) {
    (void)arg;
    char msg[MSG_MAX];
    pthread_mutex_lock(&N.mu);
    for (;;) {
        while (N.n == 0 && !N.wd_pending)
            pthread_cond_wait(&N.wake, &N.mu);
        notify_take(msg);
        pthread_mutex_unlock(&N.mu);
        int rc = sd_notify(0, msg);
        if (rc < 0)
            notify_record_error(rc, msg);
        pthread_mutex_lock(&N.mu);
        N.sent++;
        pthread_cond_broadcast(&N.done);
    }
    return NULL;
}

/* Starts the thread with every signal blocked (they belong to the daemon's loop). Called with
 * N.mu held. */
static int notify_start(void) {
    if (N.started)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, notify_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    pthread_detach(t);
    N.started = true;
    return 0;
}

/* ---- queueing ---------------------------------------------------------------------------- */

/* Index of the newest unsent entry, or -1. */
static int notify_tail(void) {
    return N.n ? (N.head + N.n - 1) % AFD_NOTIFY_QUEUE : -1;
}

/* Drops the oldest unsent status-only entry to make room; false when there is none. */
static bool notify_drop_status(void) {
    for (int i = 0; i < N.n; i++) {
        int k = (N.head + i) % AFD_NOTIFY_QUEUE;
        if (!N.q[k].status_only)
            continue;
        for (int j = i; j > 0; j--)
            N.q[(N.head + j) % AFD_NOTIFY_QUEUE] = N.q[(N.head + j - 1) % AFD_NOTIFY_QUEUE];
        N.head = (N.head + 1) % AFD_NOTIFY_QUEUE;
        N.n--;
        N.queued--; /* never to be sent */
        return true;
    }
    return false;
}

static int notify_push_locked(const char *text, bool status_only) {
    int tail = notify_tail();
    if (status_only && tail >= 0 && N.q[tail].status_only) {
        snprintf(N.q[tail].text, MSG_MAX, "%s", text); /* a newer status replaces it */
        return 1;
    }
    if (N.n == AFD_NOTIFY_QUEUE && !notify_drop_status())
        return AFD_E_LIMIT;
    nmsg *m = &N.q[(N.head + N.n) % AFD_NOTIFY_QUEUE];
    snprintf(m->text, MSG_MAX, "%s", text);
    m->status_only = status_only;
    N.n++;
    N.queued++;
    return 1;
}

static int notify_push(const char *text, bool status_only) {
    if (!afd_notify_init())
        return 0;
    pthread_mutex_lock(&N.mu);
    int rc = notify_start();
    if (rc == 0)
        rc = notify_push_locked(text, status_only);
    if (rc > 0)
        pthread_cond_signal(&N.wake);
    pthread_mutex_unlock(&N.mu);
    return rc;
}

/* Appends "STATUS=<text>" to out (capacity cap): one line, cut on a UTF-8 boundary. */
static void notify_fmt_status(char *out, size_t cap, const char *text) {
    size_t n = strlen(out);
    size_t max = strlen(text);
    if (max > AFD_NOTIFY_STATUS_MAX) {
        max = AFD_NOTIFY_STATUS_MAX;
        while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
            max--; /* text[max] continues a character: cut before that character */
    }
    n += (size_t)snprintf(out + n, cap - n, "STATUS=");
    for (size_t i = 0; i < max && n + 1 < cap; i++)
        out[n++] = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
    out[n] = '\0';
}

/* ---- the API ----------------------------------------------------------------------------- */

int afd_notify_ready(const char *status) {
    char msg[MSG_MAX] = "READY=1";
    if (status) {
        strcat(msg, "\n");
        notify_fmt_status(msg, sizeof msg, status);
    }
    return notify_push(msg, false);
}

int afd_notify_status(const char *fmt, ...) {
    if (!afd_notify_init())
        return 0;
    char text[AFD_NOTIFY_STATUS_MAX + 8], msg[MSG_MAX] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    notify_fmt_status(msg, sizeof msg, text);
    return notify_push(msg, true);
}

int afd_notify_stopping(void) {
    return notify_push("STOPPING=1", false);
}

int afd_notify_extend_timeout(uint64_t usec) {
    if (usec == 0)
        return -EINVAL;
    char msg[64];
    snprintf(msg, sizeof msg, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
    return notify_push(msg, false);
}

uint64_t afd_notify_watchdog_interval_ns(void) {
    afd_notify_init();
    return N.wd_timeout_ns / 2;
}

int afd_notify_watchdog(void) {
    afd_notify_init();
    if (N.wd_timeout_ns == 0)
        return 0;
    uint64_t now = afd_now_ns();
    uint64_t due = atomic_load_explicit(&N.wd_due, memory_order_relaxed);
    if (now < due)
        return 0;
    if (!atomic_compare_exchange_strong(&N.wd_due, &due, now + N.wd_timeout_ns / 4))
        return 0; /* another thread queued this one */
    pthread_mutex_lock(&N.mu);
    int rc = notify_start();
    if (rc == 0 && !N.wd_pending) {
        N.wd_pending = true;
        N.queued++;
        pthread_cond_signal(&N.wake);
    }
    pthread_mutex_unlock(&N.mu);
    return rc < 0 ? rc : 1;
}

int afd_notify_flush(int timeout_ms) {
    afd_notify_init();
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    int64_t ns = dl.tv_nsec + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    dl.tv_sec += ns / 1000000000;
    dl.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&N.mu);
    int rc = 0;
    while (rc == 0 && N.sent < N.queued)
        if (pthread_cond_timedwait(&N.done, &N.mu, &dl) == ETIMEDOUT)
            rc = AFD_E_AGAIN;
    pthread_mutex_unlock(&N.mu);
    return rc;
}

int afd_notify_last_error(void) {
    return atomic_load(&N.last_err);
}
