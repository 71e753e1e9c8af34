/* metrics.h: a registry of counters, gauges and histograms rendered as Prometheus text
 * (exposition format 0.0.4).
 *
 * A family has a name, help, type and label names; a series is one set of label values in a
 * family and is what callers update, through an afd_metric * looked up once (at start-up, or
 * when a peer connects). Updates are relaxed atomics: lock-free, safe from any thread, no
 * allocation, and a NULL handle is a no-op (creation failures are logged once, so a metric
 * that could not be made never crashes a hot path). Creation, removal and rendering take the
 * registry mutex; the renderer never blocks updaters.
 *
 * Ownership: the registry owns families and series; afd_metric_remove frees a series at once,
 * so its owner must make sure no thread updates the handle afterwards (remove a peer's series
 * on the thread that updates them, after the last update). Callback metrics are evaluated at
 * render time with the registry mutex held: the callback must be quick, thread-safe with
 * respect to its data, and must not call the registry.
 * Errors: creation returns NULL (afd_metrics_family: 0 / negative with *err).
 */
#ifndef AFD_METRICS_H
#define AFD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/err.h"

typedef enum { AFD_METRIC_COUNTER, AFD_METRIC_GAUGE, AFD_METRIC_HISTOGRAM } afd_metric_type;

typedef struct afd_metrics afd_metrics;
typedef struct afd_metric_family afd_metric_family;
typedef struct afd_metric afd_metric;

typedef double (*afd_metric_fn)(void *ud);

#define AFD_METRICS_MAX_LABELS  8
#define AFD_METRICS_MAX_BUCKETS 64
#define AFD_METRICS_MAX_VALUE   1024 /* bytes of one label value */

/* Never NULL (aborts on out-of-memory). */
afd_metrics *afd_metrics_init(void);
/* Frees every family and series; handles become invalid. NULL is a no-op. */
void afd_metrics_free(afd_metrics *reg);

/* ---- families and series ---- */

/* Finds or creates a family. Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* (not "__*", not "le" in a histogram). Histograms take strictly
 * increasing finite upper bounds (a trailing +Inf is implied and may be given). An existing
 * family must match in type, label names and bounds. Returns 0 with *out, or AFD_E_FORMAT /
 * AFD_E_LIMIT / AFD_E_MISMATCH with *err. */
int afd_metrics_family(afd_metrics *reg, afd_metric_type type, const char *name, const char *help,
                       const char *const *label_names, int n_labels, const double *bounds,
                       int n_bounds, afd_metric_family **out, afd_err *err);

/* The series with these label values (n_labels of them, any bytes, each under
 * AFD_METRICS_MAX_VALUE), created on first use. NULL (logged) when a value is too long. */
afd_metric *afd_metric_series(afd_metric_family *f, const char *const *label_values);

/* Same, with a callback evaluated at render time (counter or gauge families); replaces an
 * existing series' callback. */
afd_metric *afd_metric_series_fn(afd_metric_family *f, const char *const *label_values,
                                 afd_metric_fn fn, void *ud);

/* Removes and frees a series (e.g. a disconnected peer's). NULL is a no-op. */
void afd_metric_remove(afd_metric *m);

/* ---- shorthand: family + series in one call; labels as name, value pairs ending in NULL ----
 *   afd_metric *m = afd_metrics_counter(reg, "afd_ffn_batches_total", "Batches run.",
 *                                       "layer", "3", NULL);
 * NULL (logged) on any error. */
afd_metric *afd_metrics_counter(afd_metrics *reg, const char *name, const char *help, ...)
    __attribute__((sentinel));
afd_metric *afd_metrics_gauge(afd_metrics *reg, const char *name, const char *help, ...)
    __attribute__((sentinel));
afd_metric *afd_metrics_gauge_fn(afd_metrics *reg, const char *name, const char *help,
                                 afd_metric_fn fn, void *ud, ...) __attribute__((sentinel));
afd_metric *afd_metrics_counter_fn(afd_metrics *reg, const char *name, const char *help,
                                   afd_metric_fn fn, void *ud, ...) __attribute__((sentinel));
afd_metric *afd_metrics_histogram(afd_metrics *reg, const char *name, const char *help,
                                  const double *bounds, int n_bounds, ...)
    __attribute__((sentinel));

/* ---- updates: lock-free, any thread, NULL is a no-op ---- */

void afd_metric_inc(afd_metric *m);               /* counter or gauge: +1 */
void afd_metric_add(afd_metric *m, uint64_t n);   /* counter or gauge: +n */
void afd_metric_addf(afd_metric *m, double v);    /* gauge: +v; counter: +v if v >= 0 */
void afd_metric_set(afd_metric *m, double v);     /* gauge */
void afd_metric_observe(afd_metric *m, double v); /* histogram */

/* Current value: counter or gauge value, a histogram's count (0 for NULL). For tests and
 * status pages. */
double afd_metric_value(const afd_metric *m);

/* ---- rendering and standard metrics ---- */

/* Renders every series as Prometheus text 0.0.4, families in creation order, one # HELP and
 * # TYPE each (families without series are skipped). *out is malloc'd (caller frees), NUL-
 * terminated, *len excludes the NUL. Returns 0. */
int afd_metrics_render(afd_metrics *reg, char **out, size_t *len);

/* Registers the process metrics every daemon exports: process_start_time_seconds,
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes
 * (/proc/self/statm), process_open_fds, and afd_build_info{version="..."} 1. 0 or negative. */
int afd_metrics_add_process(afd_metrics *reg, const char *version);

/* Default latency buckets in seconds (100 us .. 10 s), for histograms of step and request
 * times; AFD_METRICS_LATENCY_N entries. */
extern const double afd_metrics_latency_buckets[];
#define AFD_METRICS_LATENCY_N 16

#endif
