/* progress.h: a progress reporter for long loads and writes (checkpoint loading, afd-mkmodel).
 *
 *   afd_progress p;
 *   afd_progress_begin(&p, "loading /models/step3", total_bytes, n_tensors, 0);
 *   for (...) afd_progress_update(&p, bytes_done, tensors_done);   // cheap; call often
 *   afd_progress_end(&p);
 *
 * Where it goes (decided once, in begin):
 *   - nowhere when total_bytes < AFD_PROGRESS_MIN_BYTES (256 MiB) unless AFD_PROGRESS_FORCE,
 *     or with AFD_PROGRESS_QUIET: small models and tests stay quiet;
 *   - a one-line bar redrawn with '\r' on stderr (bytes, %, MB/s, ETA; at most every 100 ms)
 *     when stderr is a terminal and AFD_LOG_FORMAT is not "json";
 *   - otherwise a log_info line at most every 2 s and one at the end:
 *     "loading m: 3.2 GB / 7.9 GB (41%), 812/1517 tensors, 1.4 GB/s, 3 s left".
 * AFD_PROGRESS=off|bar|log in the environment overrides the choice (bar/log also force it).
 *
 * The struct is the caller's (usually on the stack); nothing to free. One thread per reporter.
 * Updates are no-ops when the reporter is silent, so callers never test the mode themselves.
 */
#ifndef AFD_PROGRESS_H
#define AFD_PROGRESS_H

#include <stdint.h>
#include <stddef.h>

#define AFD_PROGRESS_MIN_BYTES (256ull << 20)

enum {
    AFD_PROGRESS_FORCE = 1, /* report even under AFD_PROGRESS_MIN_BYTES */
    AFD_PROGRESS_QUIET = 2, /* never report (a --quiet flag) */
    AFD_PROGRESS_LOG = 4,   /* log lines even on a terminal */
};

enum { AFD_PROGRESS_OFF = 0, AFD_PROGRESS_MODE_BAR = 1, AFD_PROGRESS_MODE_LOG = 2 };

typedef struct afd_progress {
    char label[128];
    const char *unit; /* noun for items in messages; "tensors" unless the caller sets it */
    uint64_t total_bytes, total_items;
    uint64_t bytes, items; /* last update */
    double t0, t_last;     /* monotonic seconds: begin, last output */
    double interval;       /* seconds between outputs (2 for log lines, 0.1 for the bar) */
    int mode;              /* AFD_PROGRESS_OFF / _MODE_BAR / _MODE_LOG */
} afd_progress;

/* Starts a report of `total_bytes` and `total_items` (either may be 0 = unknown). */
void afd_progress_begin(afd_progress *p, const char *label, uint64_t total_bytes,
                        uint64_t total_items, int flags);
/* Records the amounts done so far (absolute, not increments) and reports if due. */
void afd_progress_update(afd_progress *p, uint64_t bytes_done, uint64_t items_done);
/* The final report (the bar's last state and a newline, or a summary log line). */
void afd_progress_end(afd_progress *p);
/* The status text as of time `now` (afd_now_s()), e.g. "3.2 GB / 7.9 GB (41%), 812/1517
 * tensors, 1.4 GB/s, 3 s left"; for the outputs above and for tests. Returns buf. */
const char *afd_progress_text(const afd_progress *p, double now, char *buf, size_t cap);

#endif
