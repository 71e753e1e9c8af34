/* metrics.c: the metrics registry (see metrics.h). Series values are atomics updated with
 * relaxed ordering; doubles live in _Atomic uint64_t as their bit patterns. The mutex guards
 * the family and series lists only. */
#include "common/base/metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/base/alloc.h"
#include "common/base/log.h"

#define RELAXED memory_order_relaxed

struct afd_metric {
    _Atomic uint64_t count; /* counter: integer part; histogram: unused (derived) */
    _Atomic uint64_t bits;  /* counter: fractional additions; gauge: value; histogram: sum */
    afd_metric_family *fam;
    afd_metric_fn fn; /* callback series: evaluated at render time */
    void *ud;
    char **values;
    afd_metric *next;
    _Atomic uint64_t buckets[]; /* histogram: n_bounds + 1 (the last is +Inf), not cumulative */
};

struct afd_metric_family {
    afd_metrics *reg;
    afd_metric_type type;
    char *name, *help;
    char **labels;
    int n_labels;
    double *bounds;
    int n_bounds;
    afd_metric *head;
    afd_metric_family *next;
};

struct afd_metrics {
    pthread_mutex_t mu;
    afd_metric_family *head, *tail;
};

const double afd_metrics_latency_buckets[AFD_METRICS_LATENCY_N] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,     10,
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};

/* ---- doubles in atomics ---- */

static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_addf(_Atomic uint64_t *a, double v) {
    uint64_t old = atomic_load_explicit(a, RELAXED);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v), RELAXED,
                                                  RELAXED))
        ;
}

/* ---- updates ---- */

void afd_metric_inc(afd_metric *m) { afd_metric_add(m, 1); }

void afd_metric_add(afd_metric *m, uint64_t n) {
    if (!m)
        return;
    if (m->fam->type == AFD_METRIC_COUNTER)
        atomic_fetch_add_explicit(&m->count, n, RELAXED);
    else if (m->fam->type == AFD_METRIC_GAUGE)
        atomic_addf(&m->bits, (double)n);
}

void afd_metric_addf(afd_metric *m, double v) {
    if (!m || m->fam->type == AFD_METRIC_HISTOGRAM)
        return;
    if (m->fam->type == AFD_METRIC_COUNTER && !(v >= 0))
        return; /* counters never go down */
    atomic_addf(&m->bits, v);
}

void afd_metric_set(afd_metric *m, double v) {
    if (m && m->fam->type == AFD_METRIC_GAUGE)
        atomic_store_explicit(&m->bits, dbits(v), RELAXED);
}

void afd_metric_observe(afd_metric *m, double v) {
    if (!m || m->fam->type != AFD_METRIC_HISTOGRAM || isnan(v))
        return;
    const double *b = m->fam->bounds;
    int n = m->fam->n_bounds, i = 0;
    while (i < n && v > b[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, RELAXED);
    atomic_addf(&m->bits, v);
}

static uint64_t hist_count(const afd_metric *m) {
    uint64_t c = 0;
    for (int i = 0; i <= m->fam->n_bounds; i++)
        c += atomic_load_explicit(&m->buckets[i], RELAXED);
    return c;
}

static double series_value(const afd_metric *m) {
    if (m->fn)
        return m->fn(m->ud);
    double frac = bitsd(atomic_load_explicit(&m->bits, RELAXED));
    switch (m->fam->type) {
    case AFD_METRIC_COUNTER: return (double)atomic_load_explicit(&m->count, RELAXED) + frac;
    case AFD_METRIC_GAUGE: return frac;
    default: return (double)hist_count(m);
    }
}

double afd_metric_value(const afd_metric *m) { return m ? series_value(m) : 0; }

/* ---- registry ---- */

afd_metrics *afd_metrics_init(void) {
    afd_metrics *reg = xcalloc(1, sizeof *reg);
    pthread_mutex_init(&reg->mu, NULL);
    return reg;
}

static void free_strs(char **v, int n) {
    for (int k = 0; v && k < n; k++)
        free(v[k]);
    free(v);
}

static void series_free(afd_metric *m) {
    free_strs(m->values, m->fam->n_labels);
    free(m);
}

static void family_free(afd_metric_family *f) {
    for (afd_metric *m = f->head, *next; m; m = next) {
        next = m->next;
        series_free(m);
    }
    free(f->name);
    free(f->help);
    free_strs(f->labels, f->n_labels);
    free(f->bounds);
    free(f);
}

void afd_metrics_free(afd_metrics *reg) {
    if (!reg)
        return;
    for (afd_metric_family *f = reg->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* ---- validation ---- */

static bool name_char(char c, bool first, bool colon) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return true;
    return !first && c >= '0' && c <= '9';
}

static bool valid_name(const char *s, bool colon) {
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!name_char(*p, p == s, colon))
            return false;
    return true;
}

static int check_labels(afd_metric_type type, const char *name, const char *const *labels, int n,
                        afd_err *err) {
    if (n < 0 || n > AFD_METRICS_MAX_LABELS || (n > 0 && !labels))
        return afd_errf(err, AFD_E_LIMIT, "metric %s: %d labels (max %d)", name, n,
                        AFD_METRICS_MAX_LABELS);
    for (int k = 0; k < n; k++) {
        const char *l = labels[k];
        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0)
            return afd_errf(err, AFD_E_FORMAT, "metric %s: bad label name \"%s\"", name,
                            l ? l : "(null)");
        if (type == AFD_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return afd_errf(err, AFD_E_FORMAT, "metric %s: label \"le\" is reserved", name);
        for (int j = 0; j < k; j++)
            if (strcmp(labels[j], l) == 0)
                return afd_errf(err, AFD_E_FORMAT, "metric %s: label \"%s\" twice", name, l);
    }
    return 0;
}

/* Bounds without a trailing +Inf; *n is updated. */
static int check_bounds(const char *name, const double *b, int *n, afd_err *err) {
    if (*n > 0 && isinf(b[*n - 1]) && b[*n - 1] > 0)
        (*n)--;
    if (*n < 0 || *n > AFD_METRICS_MAX_BUCKETS || (*n > 0 && !b))
        return afd_errf(err, AFD_E_LIMIT, "metric %s: %d buckets (max %d)", name, *n,
                        AFD_METRICS_MAX_BUCKETS);
    for (int k = 0; k < *n; k++)
        if (!isfinite(b[k]) || (k > 0 && !(b[k] > b[k - 1])))
            return afd_errf(err, AFD_E_FORMAT,
                            "metric %s: bucket bounds must be finite and increasing (at %d)",
                            name, k);
    return 0;
}

static afd_metric_family *find_family(afd_metrics *reg, const char *name) {
    for (afd_metric_family *f = reg->head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static int family_matches(const afd_metric_family *f, afd_metric_type type,
                          const char *const *labels, int n, const double *b, int nb,
                          afd_err *err) {
    bool same = f->type == type && f->n_labels == n && f->n_bounds == nb;
    for (int k = 0; same && k < n; k++)
        same = strcmp(f->labels[k], labels[k]) == 0;
    for (int k = 0; same && k < nb; k++)
        same = f->bounds[k] == b[k];
    if (!same)
        return afd_errf(err, AFD_E_MISMATCH,
                        "metric %s: already registered with another type, labels or buckets",
                        f->name);
    return 0;
}

static afd_metric_family *family_new(afd_metrics *reg, afd_metric_type type, const char *name,
                                     const char *help, const char *const *labels, int n,
                                     const double *b, int nb) {
    afd_metric_family *f = xcalloc(1, sizeof *f);
    f->reg = reg, f->type = type, f->n_labels = n, f->n_bounds = nb;
    f->name = xstrdup(name);
    f->help = xstrdup(help ? help : "");
    f->labels = xcalloc((size_t)n + 1, sizeof *f->labels);
    for (int k = 0; k < n; k++)
        f->labels[k] = xstrdup(labels[k]);
    f->bounds = xcalloc((size_t)nb + 1, sizeof *f->bounds);
    if (nb)
        memcpy(f->bounds, b, (size_t)nb * sizeof *b);
    if (reg->tail)
        reg->tail->next = f;
    else
        reg->head = f;
    reg->tail = f;
    return f;
}

int afd_metrics_family(afd_metrics *reg, afd_metric_type type, const char *name, const char *help,
                       const char *const *label_names, int n_labels, const double *bounds,
                       int n_bounds, afd_metric_family **out, afd_err *err) {
    if (!valid_name(name, true))
        return afd_errf(err, AFD_E_FORMAT, "bad metric name \"%s\"", name ? name : "(null)");
    if ((unsigned)type > AFD_METRIC_HISTOGRAM)
        return afd_errf(err, AFD_E_FORMAT, "metric %s: bad type %d", name, (int)type);
    int nb = type == AFD_METRIC_HISTOGRAM ? n_bounds : 0;
    int rc = check_labels(type, name, label_names, n_labels, err);
    if (!rc && nb)
        rc = check_bounds(name, bounds, &nb, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&reg->mu);
    afd_metric_family *f = find_family(reg, name);
    if (f)
        rc = family_matches(f, type, label_names, n_labels, bounds, nb, err);
    else
        f = family_new(reg, type, name, help, label_names, n_labels, bounds, nb);
    pthread_mutex_unlock(&reg->mu);
    if (!rc)
        *out = f;
    return rc;
}

/* ---- series ---- */

static bool values_equal(const afd_metric *m, const char *const *values) {
    for (int k = 0; k < m->fam->n_labels; k++)
        if (strcmp(m->values[k], values[k]) != 0)
            return false;
    return true;
}

static afd_metric *series_new(afd_metric_family *f, const char *const *values) {
    size_t n = f->type == AFD_METRIC_HISTOGRAM ? (size_t)f->n_bounds + 1 : 0;
    afd_metric *m = xalloc_aligned(sizeof *m + n * sizeof m->buckets[0]); /* zeroed */
    m->fam = f;
    m->values = xcalloc((size_t)f->n_labels + 1, sizeof *m->values);
    for (int k = 0; k < f->n_labels; k++)
        m->values[k] = xstrdup(values[k]);
    afd_metric **tail = &f->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    return m;
}

static int check_values(const afd_metric_family *f, const char *const *values) {
    for (int k = 0; k < f->n_labels; k++) {
        if (!values || !values[k]) {
            log_error("metric %s: label %s has no value", f->name, f->labels[k]);
            return -1;
        }
        if (strlen(values[k]) > AFD_METRICS_MAX_VALUE) {
            log_error("metric %s: label %s value of %zu bytes is over the limit of %d", f->name,
                      f->labels[k], strlen(values[k]), AFD_METRICS_MAX_VALUE);
            return -1;
        }
    }
    return 0;
}

afd_metric *afd_metric_series_fn(afd_metric_family *f, const char *const *label_values,
                                 afd_metric_fn fn, void *ud) {
    if (!f || check_values(f, label_values))
        return NULL;
    if (fn && f->type == AFD_METRIC_HISTOGRAM) {
        log_error("metric %s: a histogram cannot take a callback", f->name);
        return NULL;
    }
    pthread_mutex_lock(&f->reg->mu);
    afd_metric *m = f->head;
    while (m && !values_equal(m, label_values))
        m = m->next;
    if (!m)
        m = series_new(f, label_values);
    if (fn)
        m->fn = fn, m->ud = ud;
    pthread_mutex_unlock(&f->reg->mu);
    return m;
}

afd_metric *afd_metric_series(afd_metric_family *f, const char *const *label_values) {
    return afd_metric_series_fn(f, label_values, NULL, NULL);
}

void afd_metric_remove(afd_metric *m) {
    if (!m)
        return;
    afd_metric_family *f = m->fam;
    pthread_mutex_lock(&f->reg->mu);
    afd_metric **p = &f->head;
    while (*p && *p != m)
        p = &(*p)->next;
    if (*p)
        *p = m->next;
    pthread_mutex_unlock(&f->reg->mu);
    series_free(m);
}

/* ---- shorthand ---- */

typedef struct spec {
    afd_metric_type type;
    const char *name, *help;
    const double *bounds;
    int n_bounds;
    afd_metric_fn fn;
    void *ud;
} spec;

static afd_metric *make_series(afd_metrics *reg, const spec *s, va_list ap) {
    const char *names[AFD_METRICS_MAX_LABELS + 1], *values[AFD_METRICS_MAX_LABELS + 1];
    int n = 0;
    afd_err err;
    for (const char *l; (l = va_arg(ap, const char *)) != NULL; n++) {
        if (n == AFD_METRICS_MAX_LABELS) {
            log_error("metric %s: more than %d labels", s->name, AFD_METRICS_MAX_LABELS);
            return NULL;
        }
        names[n] = l;
        values[n] = va_arg(ap, const char *);
        if (!values[n]) {
            log_error("metric %s: label %s has no value", s->name, l);
            return NULL;
        }
    }
    afd_metric_family *f;
    if (afd_metrics_family(reg, s->type, s->name, s->help, names, n, s->bounds, s->n_bounds, &f,
                           &err)) {
        log_error("%s", err.msg);
        return NULL;
    }
    return afd_metric_series_fn(f, values, s->fn, s->ud);
}

#define SHORTHAND(last, ...)                                                                       \
    do {                                                                                           \
        spec s_ = {__VA_ARGS__};                                                                   \
        va_list ap;                                                                                \
        va_start(ap, last);                                                                        \
        afd_metric *m_ = make_series(reg, &s_, ap);                                                \
        va_end(ap);                                                                                \
        return m_;                                                                                 \
    } while (0)

afd_metric *afd_metrics_counter(afd_metrics *reg, const char *name, const char *help, ...) {
    SHORTHAND(help, AFD_METRIC_COUNTER, name, help, NULL, 0, NULL, NULL);
}

afd_metric *afd_metrics_gauge(afd_metrics *reg, const char *name, const char *help, ...) {
    SHORTHAND(help, AFD_METRIC_GAUGE, name, help, NULL, 0, NULL, NULL);
}

afd_metric *afd_metrics_gauge_fn(afd_metrics *reg, const char *name, const char *help,
                                 afd_metric_fn fn, void *ud, ...) {
    SHORTHAND(ud, AFD_METRIC_GAUGE, name, help, NULL, 0, fn, ud);
}

afd_metric *afd_metrics_counter_fn(afd_metrics *reg, const char *name, const char *help,
                                   afd_metric_fn fn, void *ud, ...) {
    SHORTHAND(ud, AFD_METRIC_COUNTER, name, help, NULL, 0, fn, ud);
}

afd_metric *afd_metrics_histogram(afd_metrics *reg, const char *name, const char *help,
                                  const double *bounds, int n_bounds, ...) {
    SHORTHAND(n_bounds, AFD_METRIC_HISTOGRAM, name, help, bounds, n_bounds, NULL, NULL);
}

/* ---- rendering ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Label values escape \ " and newline; help text escapes \ and newline. */
static void sb_escape(sbuf *b, const char *s, bool quote) {
    for (; *s; s++) {
        if (*s == '\\')
            sb_put(b, "\\\\", 2);
        else if (*s == '\n')
            sb_put(b, "\\n", 2);
        else if (*s == '"' && quote)
            sb_put(b, "\\\"", 2);
        else
            sb_put(b, s, 1);
    }
}

/* The shortest text that reads back as the same double; +Inf, -Inf, NaN as Prometheus. */
static void fmt_double(char *buf, size_t n, double v) {
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void sb_double(sbuf *b, double v) {
    char buf[40];
    fmt_double(buf, sizeof buf, v);
    sb_puts(b, buf);
}

/* {a="x",b="y"[,le="..."]} or nothing. */
static void sb_labels(sbuf *b, const afd_metric *m, const char *le) {
    const afd_metric_family *f = m->fam;
    if (f->n_labels == 0 && !le)
        return;
    sb_put(b, "{", 1);
    for (int k = 0; k < f->n_labels; k++) {
        if (k)
            sb_put(b, ",", 1);
        sb_puts(b, f->labels[k]);
        sb_put(b, "=\"", 2);
        sb_escape(b, m->values[k], true);
        sb_put(b, "\"", 1);
    }
    if (le) {
        sb_puts(b, f->n_labels ? ",le=\"" : "le=\"");
        sb_puts(b, le);
        sb_put(b, "\"", 1);
    }
    sb_put(b, "}", 1);
}

static void sb_sample(sbuf *b, const afd_metric *m, const char *suffix, const char *le,
                      double v) {
    sb_puts(b, m->fam->name);
    sb_puts(b, suffix);
    sb_labels(b, m, le);
    sb_put(b, " ", 1);
    sb_double(b, v);
    sb_put(b, "\n", 1);
}

static void render_histogram(sbuf *b, const afd_metric *m) {
    uint64_t cum = 0;
    char le[40];
    for (int i = 0; i <= m->fam->n_bounds; i++) {
        cum += atomic_load_explicit(&m->buckets[i], RELAXED);
        if (i < m->fam->n_bounds)
            fmt_double(le, sizeof le, m->fam->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        sb_sample(b, m, "_bucket", le, (double)cum);
    }
    sb_sample(b, m, "_sum", NULL, bitsd(atomic_load_explicit(&m->bits, RELAXED)));
    sb_sample(b, m, "_count", NULL, (double)cum);
}

static void render_family(sbuf *b, const afd_metric_family *f) {
    if (!f->head)
        return;
    sb_puts(b, "# HELP ");
    sb_puts(b, f->name);
    sb_put(b, " ", 1);
    sb_escape(b, f->help, false);
    sb_puts(b, "\n# TYPE ");
    sb_puts(b, f->name);
    sb_put(b, " ", 1);
    sb_puts(b, type_names[f->type]);
    sb_put(b, "\n", 1);
    for (const afd_metric *m = f->head; m; m = m->next) {
        if (f->type == AFD_METRIC_HISTOGRAM)
            render_histogram(b, m);
        else
            sb_sample(b, m, "", NULL, series_value(m));
    }
}

int afd_metrics_render(afd_metrics *reg, char **out, size_t *len) {
    sbuf b = {0};
    sb_reserve(&b, 0);
    b.p[0] = 0;
    pthread_mutex_lock(&reg->mu);
    for (const afd_metric_family *f = reg->head; f; f = f->next)
        render_family(&b, f);
    pthread_mutex_unlock(&reg->mu);
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- process metrics ---- */

static double statm_bytes(int field) {
    unsigned long v[2] = {0, 0};
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "%lu %lu", &v[0], &v[1]);
    fclose(f);
    return n == 2 ? (double)v[field] * (double)sysconf(_SC_PAGESIZE) : 0;
}

static double resident_bytes(void *ud) { return statm_bytes(1); }
static double virtual_bytes(void *ud) { return statm_bytes(0); }

static double cpu_seconds(void *ud) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double open_fds(void *ud) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Boot time (from /proc/stat) + the process start in clock ticks since boot (/proc/self/stat
 * field 22); the current time if either cannot be read. */
static double start_time_seconds(void) {
    char line[1024];
    double btime = 0, ticks = -1;
    FILE *f = fopen("/proc/stat", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    if (f)
        fclose(f);
    f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(line, 1, sizeof line - 1, f) : 0;
    if (f)
        fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p)
        ticks = strtod(p + 1, NULL);
    if (btime <= 0 || ticks < 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
    }
    return btime + ticks / (double)sysconf(_SC_CLK_TCK);
}

int afd_metrics_add_process(afd_metrics *reg, const char *version) {
    afd_metric *m[6];
    m[0] = afd_metrics_gauge(reg, "process_start_time_seconds",
                             "Start time of the process since the Unix epoch in seconds.", NULL);
    afd_metric_set(m[0], start_time_seconds());
    m[1] = afd_metrics_counter_fn(reg, "process_cpu_seconds_total",
                                  "Total user and system CPU time spent in seconds.", cpu_seconds,
                                  NULL, NULL);
    m[2] = afd_metrics_gauge_fn(reg, "process_resident_memory_bytes",
                                "Resident memory size in bytes.", resident_bytes, NULL, NULL);
    m[3] = afd_metrics_gauge_fn(reg, "process_virtual_memory_bytes",
                                "Virtual memory size in bytes.", virtual_bytes, NULL, NULL);
    m[4] = afd_metrics_gauge_fn(reg, "process_open_fds", "Number of open file descriptors.",
                                open_fds, NULL, NULL);
    m[5] = afd_metrics_gauge(reg, "afd_build_info", "Build of this afd binary (always 1).",
                             "version", version ? version : "unknown", NULL);
    afd_metric_set(m[5], 1);
    for (int k = 0; k < 6; k++)
        if (!m[k])
            return AFD_E_MISMATCH;
    return 0;
}
