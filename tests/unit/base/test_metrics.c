#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/metrics.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static char *render(afd_metrics *reg) {
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(afd_metrics_render(reg, &out, &len), 0);
    cr_assert_eq(strlen(out), len);
    return out;
}

#define ASSERT_RENDER(reg, want)                                                                   \
    do {                                                                                           \
        char *got_ = render(reg);                                                                  \
        cr_assert_str_eq(got_, (want));                                                            \
        free(got_);                                                                                \
    } while (0)

Test(metrics, counter_without_labels) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric *m = afd_metrics_counter(reg, "afd_requests_total", "Requests served.", NULL);
    cr_assert_not_null(m);
    afd_metric_inc(m);
    afd_metric_add(m, 41);
    ASSERT_RENDER(reg, "# HELP afd_requests_total Requests served.\n"
                       "# TYPE afd_requests_total counter\n"
                       "afd_requests_total 42\n");
    afd_metric_addf(m, 0.5);
    afd_metric_addf(m, -3); /* ignored: counters never go down */
    cr_assert_float_eq(afd_metric_value(m), 42.5, 1e-12);
    afd_metrics_free(reg);
}

Test(metrics, counter_series_share_one_family) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric *a = afd_metrics_counter(reg, "afd_ffn_batches_total", "Batches.", "layer", "3",
                                        NULL);
    afd_metric *b = afd_metrics_counter(reg, "afd_ffn_batches_total", "Batches.", "layer", "10",
                                        NULL);
    afd_metric *a2 = afd_metrics_counter(reg, "afd_ffn_batches_total", "Batches.", "layer", "3",
                                         NULL);
    cr_assert_eq(a, a2, "same labels, same series");
    cr_assert_neq(a, b);
    afd_metric_add(a, 2);
    afd_metric_inc(b);
    ASSERT_RENDER(reg, "# HELP afd_ffn_batches_total Batches.\n"
                       "# TYPE afd_ffn_batches_total counter\n"
                       "afd_ffn_batches_total{layer=\"3\"} 2\n"
                       "afd_ffn_batches_total{layer=\"10\"} 1\n");
    afd_metrics_free(reg);
}

Test(metrics, gauge_set_add_and_escaping) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric *g = afd_metrics_gauge(reg, "afd_peer_inflight", "In flight.\nPer \\ peer.", "peer",
                                      "a\"b\\c\nd", "kind", "attnd", NULL);
    cr_assert_not_null(g);
    afd_metric_set(g, 10);
    afd_metric_addf(g, -2.5);
    afd_metric_inc(g);
    ASSERT_RENDER(reg, "# HELP afd_peer_inflight In flight.\\nPer \\\\ peer.\n"
                       "# TYPE afd_peer_inflight gauge\n"
                       "afd_peer_inflight{peer=\"a\\\"b\\\\c\\nd\",kind=\"attnd\"} 8.5\n");
    afd_metric_set(g, 0.1);
    ASSERT_RENDER(reg, "# HELP afd_peer_inflight In flight.\\nPer \\\\ peer.\n"
                       "# TYPE afd_peer_inflight gauge\n"
                       "afd_peer_inflight{peer=\"a\\\"b\\\\c\\nd\",kind=\"attnd\"} 0.1\n");
    afd_metric_set(g, -INFINITY);
    char *out = render(reg);
    cr_assert(strstr(out, "} -Inf\n"), "%s", out);
    free(out);
    afd_metrics_free(reg);
}

static double seven(void *ud) { return *(double *)ud; }

Test(metrics, callback_gauge_evaluated_at_render) {
    afd_metrics *reg = afd_metrics_init();
    double v = 7;
    afd_metric *g = afd_metrics_gauge_fn(reg, "afd_kv_blocks_free", "Free KV blocks.", seven, &v,
                                         NULL);
    cr_assert_not_null(g);
    ASSERT_RENDER(reg, "# HELP afd_kv_blocks_free Free KV blocks.\n"
                       "# TYPE afd_kv_blocks_free gauge\n"
                       "afd_kv_blocks_free 7\n");
    v = 1e20;
    ASSERT_RENDER(reg, "# HELP afd_kv_blocks_free Free KV blocks.\n"
                       "# TYPE afd_kv_blocks_free gauge\n"
                       "afd_kv_blocks_free 1e+20\n");
    afd_metrics_free(reg);
}

Test(metrics, histogram_buckets_sum_count) {
    afd_metrics *reg = afd_metrics_init();
    static const double bounds[] = {0.005, 0.01, 0.1, INFINITY};
    afd_metric *h = afd_metrics_histogram(reg, "afd_step_seconds", "Step time.", bounds, 4,
                                          "role", "decode", NULL);
    cr_assert_not_null(h);
    afd_metric_observe(h, 0.001);
    afd_metric_observe(h, 0.005); /* le is inclusive */
    afd_metric_observe(h, 0.05);
    afd_metric_observe(h, 2);
    afd_metric_observe(h, NAN); /* NaN is dropped */
    ASSERT_RENDER(reg, "# HELP afd_step_seconds Step time.\n"
                       "# TYPE afd_step_seconds histogram\n"
                       "afd_step_seconds_bucket{role=\"decode\",le=\"0.005\"} 2\n"
                       "afd_step_seconds_bucket{role=\"decode\",le=\"0.01\"} 2\n"
                       "afd_step_seconds_bucket{role=\"decode\",le=\"0.1\"} 3\n"
                       "afd_step_seconds_bucket{role=\"decode\",le=\"+Inf\"} 4\n"
                       "afd_step_seconds_sum{role=\"decode\"} 2.056\n"
                       "afd_step_seconds_count{role=\"decode\"} 4\n");
    cr_assert_float_eq(afd_metric_value(h), 4.0, 0);
    afd_metrics_free(reg);
}

Test(metrics, histogram_without_labels) {
    afd_metrics *reg = afd_metrics_init();
    static const double bounds[] = {1, 2};
    afd_metric *h = afd_metrics_histogram(reg, "x_seconds", "x", bounds, 2, NULL);
    afd_metric_observe(h, 1.5);
    ASSERT_RENDER(reg, "# HELP x_seconds x\n"
                       "# TYPE x_seconds histogram\n"
                       "x_seconds_bucket{le=\"1\"} 0\n"
                       "x_seconds_bucket{le=\"2\"} 1\n"
                       "x_seconds_bucket{le=\"+Inf\"} 1\n"
                       "x_seconds_sum 1.5\n"
                       "x_seconds_count 1\n");
    afd_metrics_free(reg);
}

Test(metrics, families_in_creation_order) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric_inc(afd_metrics_counter(reg, "b_total", "b", NULL));
    afd_metric_set(afd_metrics_gauge(reg, "a", "a", NULL), 3);
    ASSERT_RENDER(reg, "# HELP b_total b\n# TYPE b_total counter\nb_total 1\n"
                       "# HELP a a\n# TYPE a gauge\na 3\n");
    afd_metrics_free(reg);
}

Test(metrics, series_removal) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric *p1 = afd_metrics_gauge(reg, "afd_peer_up", "Peer up.", "peer", "p1", NULL);
    afd_metric *p2 = afd_metrics_gauge(reg, "afd_peer_up", "Peer up.", "peer", "p2", NULL);
    afd_metric_set(p1, 1);
    afd_metric_set(p2, 1);
    afd_metric_remove(p1);
    ASSERT_RENDER(reg, "# HELP afd_peer_up Peer up.\n# TYPE afd_peer_up gauge\n"
                       "afd_peer_up{peer=\"p2\"} 1\n");
    afd_metric_remove(p2);
    ASSERT_RENDER(reg, ""); /* an empty family is not rendered */
    afd_metric *again = afd_metrics_gauge(reg, "afd_peer_up", "Peer up.", "peer", "p1", NULL);
    cr_assert_float_eq(afd_metric_value(again), 0.0, 0, "a new series starts at zero");
    afd_metric_remove(NULL);
    afd_metrics_free(reg);
}

Test(metrics, null_handles_are_noops) {
    afd_metric_inc(NULL);
    afd_metric_add(NULL, 3);
    afd_metric_addf(NULL, 1);
    afd_metric_set(NULL, 1);
    afd_metric_observe(NULL, 1);
    cr_assert_float_eq(afd_metric_value(NULL), 0.0, 0);
    afd_metrics_free(NULL);
}

Test(metrics, validation) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric_family *f = NULL;
    afd_err e = {0};
    cr_assert_null(afd_metrics_counter(reg, "9bad", "x", NULL));
    cr_assert_null(afd_metrics_counter(reg, "bad-name", "x", NULL));
    cr_assert_not_null(afd_metrics_counter(reg, "ok:name_1", "x", NULL));
    cr_assert_null(afd_metrics_counter(reg, "m", "x", "bad:label", "v", NULL));
    cr_assert_null(afd_metrics_counter(reg, "m", "x", "__res", "v", NULL));
    cr_assert_null(afd_metrics_counter(reg, "m", "x", "a", "1", "a", "2", NULL));
    const char *names[] = {"le"};
    int rc = afd_metrics_family(reg, AFD_METRIC_HISTOGRAM, "h", "x", names, 1,
                                afd_metrics_latency_buckets, AFD_METRICS_LATENCY_N, &f, &e);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "metric h: label \"le\" is reserved");
    static const double unsorted[] = {1, 0.5};
    rc = afd_metrics_family(reg, AFD_METRIC_HISTOGRAM, "h", "x", NULL, 0, unsorted, 2, &f, &e);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "metric h: bucket bounds must be finite and increasing (at 1)");
    /* Same name, another type or labels. */
    cr_assert_not_null(afd_metrics_counter(reg, "c_total", "x", "a", "1", NULL));
    cr_assert_null(afd_metrics_gauge(reg, "c_total", "x", "a", "1", NULL));
    cr_assert_null(afd_metrics_counter(reg, "c_total", "x", "b", "1", NULL));
    const char *a[] = {"a"};
    rc = afd_metrics_family(reg, AFD_METRIC_GAUGE, "c_total", "x", a, 1, NULL, 0, &f, &e);
    cr_assert_eq(rc, AFD_E_MISMATCH);
    cr_assert_str_eq(e.msg,
                     "metric c_total: already registered with another type, labels or buckets");
    /* Label values may be any bytes, but not huge. */
    char *huge = malloc(AFD_METRICS_MAX_VALUE + 2);
    memset(huge, 'x', AFD_METRICS_MAX_VALUE + 1);
    huge[AFD_METRICS_MAX_VALUE + 1] = 0;
    cr_assert_null(afd_metrics_counter(reg, "c_total", "x", "a", huge, NULL));
    free(huge);
    afd_metrics_free(reg);
}

Test(metrics, family_api) {
    afd_metrics *reg = afd_metrics_init();
    afd_metric_family *f = NULL;
    afd_err e = {0};
    const char *labels[] = {"peer", "dir"};
    int rc = afd_metrics_family(reg, AFD_METRIC_COUNTER, "afd_bytes_total", "Bytes.", labels, 2,
                                NULL, 0, &f, &e);
    cr_assert_eq(rc, 0, "%s", e.msg);
    afd_metric *tx = afd_metric_series(f, (const char *[]){"p1", "tx"});
    afd_metric *rx = afd_metric_series(f, (const char *[]){"p1", "rx"});
    afd_metric_add(tx, 100);
    afd_metric_add(rx, 7);
    ASSERT_RENDER(reg, "# HELP afd_bytes_total Bytes.\n# TYPE afd_bytes_total counter\n"
                       "afd_bytes_total{peer=\"p1\",dir=\"tx\"} 100\n"
                       "afd_bytes_total{peer=\"p1\",dir=\"rx\"} 7\n");
    afd_metrics_free(reg);
}

typedef struct worker {
    afd_metric *c, *g, *h;
    int n;
} worker;

static void *hammer(void *arg) {
    worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        afd_metric_inc(w->c);
        afd_metric_addf(w->g, 0.5);
        afd_metric_observe(w->h, (i & 1) ? 0.5 : 2);
    }
    return NULL;
}

static void *renderer(void *arg) {
    afd_metrics *reg = arg;
    for (int i = 0; i < 50; i++) {
        char *out;
        size_t len;
        afd_metrics_render(reg, &out, &len);
        free(out);
    }
    return NULL;
}

Test(metrics, concurrent_updates_sum_exactly) {
    afd_metrics *reg = afd_metrics_init();
    static const double bounds[] = {1};
    worker w = {afd_metrics_counter(reg, "c_total", "c", NULL),
                afd_metrics_gauge(reg, "g", "g", NULL),
                afd_metrics_histogram(reg, "h", "h", bounds, 1, NULL), 200000};
    pthread_t t[3];
    pthread_create(&t[0], NULL, hammer, &w);
    pthread_create(&t[1], NULL, hammer, &w);
    pthread_create(&t[2], NULL, renderer, reg);
    for (int k = 0; k < 3; k++)
        pthread_join(t[k], NULL);
    cr_assert_float_eq(afd_metric_value(w.c), 400000.0, 0);
    cr_assert_float_eq(afd_metric_value(w.g), 200000.0, 0);
    cr_assert_float_eq(afd_metric_value(w.h), 400000.0, 0);
    char *out = render(reg);
    cr_assert(strstr(out, "h_bucket{le=\"1\"} 200000\n"), "%s", out);
    cr_assert(strstr(out, "h_sum 500000\n"), "%s", out);
    free(out);
    afd_metrics_free(reg);
}

Test(metrics, process_metrics) {
    afd_metrics *reg = afd_metrics_init();
    cr_assert_eq(afd_metrics_add_process(reg, "1.2.3"), 0);
    char *out = render(reg);
    const char *want[] = {"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ",
                          "# TYPE process_cpu_seconds_total counter\n",
                          "# TYPE process_resident_memory_bytes gauge\n",
                          "process_virtual_memory_bytes ", "process_open_fds ",
                          "afd_build_info{version=\"1.2.3\"} 1\n"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        cr_assert(strstr(out, want[k]), "lacks %s:\n%s", want[k], out);
    double rss = strtod(strstr(out, "\nprocess_resident_memory_bytes ") + 31, NULL);
    cr_assert_gt(rss, 1 << 20, "rss %g", rss);
    double start = strtod(strstr(out, "\nprocess_start_time_seconds ") + 28, NULL);
    cr_assert_gt(start, 1.6e9, "start %f", start);
    cr_assert_lt(start, (double)time(NULL) + 1, "start %f", start);
    free(out);
    afd_metrics_free(reg);
}

/* Criterion does not fail a test on LeakSanitizer's exit report, so ask for a check here. */
Test(metrics, registry_free_leaks_nothing) {
    afd_metrics *reg = afd_metrics_init();
    afd_metrics_add_process(reg, "v");
    for (int k = 0; k < 20; k++) {
        char peer[16];
        snprintf(peer, sizeof peer, "p%d", k);
        afd_metric *m = afd_metrics_histogram(reg, "afd_rtt_seconds", "RTT.",
                                              afd_metrics_latency_buckets, AFD_METRICS_LATENCY_N,
                                              "peer", peer, NULL);
        afd_metric_observe(m, 0.001 * k);
        if (k & 1)
            afd_metric_remove(m);
    }
    char *out = render(reg);
    free(out);
    afd_metrics_free(reg);
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks reported above");
#else
    cr_skip_test("not an ASan build: leaks are checked by `make asan`");
#endif
}
