/* sla_stats.c: TPOT accounting: ITL, TTFT, per-request TPOT and end-to-end latency into the
 * histograms and the sliding window; counts, goodput, the verdict; the metrics registration.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "router/sla_impl.h"

#define REFRESH_NS 100000000ull /* window gauges at most every 100 ms */

static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025,
                                    0.03,  0.04,   0.05,  0.06, 0.075, 0.1,  0.15,
                                    0.2,   0.3,    0.5,   1.0,  2.5,   5.0};
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75,
                                     1.0,  2.5,   5.0,  10,  20,   40,  80};
static const double e2e_bounds[] = {0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10,
                                    20,  40,   60,  120, 300, 600, 1200};
#define NB(a) ((int)(sizeof a / sizeof a[0]))

static double since_s(uint64_t now, uint64_t t) {
    return now > t ? (double)(now - t) * 1e-9 : 0;
}

static const char *const rej_names[] = {"none", "queue_full", "timeout", "unavailable",
                                        "too_large"};

/* n gaps of gap_ns each: the histogram and the window. */
static void observe_itl(sla *s, uint64_t now, uint64_t gap_ns, uint32_t n) {
    sla_win_add(&s->win, now, gap_ns, n);
    for (uint32_t i = 0; i < n && s->m.itl; i++)
        afd_metric_observe(s->m.itl, (double)gap_ns * 1e-9);
}

void sla_stats_tokens(sla *s, sla_req *r, uint32_t n, uint64_t now) {
    if (r->n_out == 0) {
        r->t_first = now;
        afd_metric_observe(s->m.ttft, since_s(now, r->t_arrive));
        observe_itl(s, now, 0, n - 1); /* tokens that came with the first one */
    } else {
        uint64_t gap = now > r->t_last ? (now - r->t_last) / n : 0;
        observe_itl(s, now, gap, n);
    }
    r->t_last = now;
    r->n_out += n;
}

void sla_stats_finish(sla *s, sla_req *r, uint64_t now, int end) {
    sla_win_depart(&s->win, now);
    if (end == SLA_END_CANCELLED) {
        s->n.cancelled++;
        afd_metric_inc(s->m.cancelled);
        return;
    }
    s->n.finished++;
    afd_metric_inc(s->m.finished);
    afd_metric_observe(s->m.e2e, since_s(now, r->t_arrive));
    bool good = end == SLA_END_OK;
    if (r->n_out >= 2) {
        double tpot = (double)(r->t_last - r->t_first) / (r->n_out - 1);
        afd_metric_observe(s->m.tpot, tpot * 1e-9);
        good = good && tpot <= (double)s->target_ns;
    }
    if (good) {
        s->n.goodput++;
        s->n.goodput_tokens += r->n_out;
        afd_metric_inc(s->m.goodput);
        afd_metric_add(s->m.goodput_tokens, r->n_out);
    }
}

void sla_stats_counts_changed(sla *s) {
    afd_metric_set(s->m.running, s->n.running);
    afd_metric_set(s->m.waiting, s->n.waiting);
}

void sla_get_counts(const sla *s, sla_counts *out) {
    *out = s->n;
}

double sla_itl_quantile(const sla *s, uint64_t now, double q) {
    return (double)sla_win_quantile(&s->win, now, q) * 1e-9;
}

int sla_verdict(const sla *s, uint64_t now, double *itl_s) {
    uint64_t q = sla_win_quantile(&s->win, now, s->c.percentile / 100.0);
    if (itl_s) *itl_s = (double)q * 1e-9;
    if (!sla_win_samples(&s->win, now)) return SLA_VERDICT_NODATA;
    return q <= s->target_ns ? SLA_VERDICT_MET : SLA_VERDICT_VIOLATED;
}

void sla_stats_refresh(sla *s, uint64_t now) {
    if (!s->metrics_on || (s->t_gauges && now >= s->t_gauges && now - s->t_gauges < REFRESH_NS))
        return;
    s->t_gauges = now ? now : 1;
    double itl;
    int v = sla_verdict(s, now, &itl);
    afd_metric_set(s->m.window, itl);
    afd_metric_set(s->m.met, v == SLA_VERDICT_VIOLATED ? 0 : 1);
}

/* ---- registration -------------------------------------------------------------------------- */

static afd_metric *hist(afd_metrics *reg, const char *name, const char *help, const double *b,
                        int n) {
    return afd_metrics_histogram(reg, name, help, b, n, NULL);
}

static void register_latency(sla *s, afd_metrics *reg) {
    s->m.itl = hist(reg, "afd:inter_token_latency_seconds",
                    "Gap between consecutive output tokens of a request (token-weighted TPOT).",
                    itl_bounds, NB(itl_bounds));
    s->m.tpot =
        hist(reg, "afd:request_time_per_output_token_seconds",
             "Per request (t_last - t_first) / (output tokens - 1).", itl_bounds, NB(itl_bounds));
    s->m.ttft =
        hist(reg, "afd:time_to_first_token_seconds",
             "Arrival at the router to the first output token.", ttft_bounds, NB(ttft_bounds));
    s->m.e2e = hist(reg, "afd:e2e_request_latency_seconds",
                    "Arrival at the router to the last output token.", e2e_bounds, NB(e2e_bounds));
}

static void register_counts(sla *s, afd_metrics *reg) {
    s->m.running = afd_metrics_gauge(reg, "afd:num_requests_running",
                                     "Requests admitted to a decode instance, not finished.", NULL);
    s->m.waiting = afd_metrics_gauge(reg, "afd:num_requests_waiting",
                                     "Requests in the router's admission queue.", NULL);
    s->m.admitted = afd_metrics_counter(reg, "afd:sla_admitted_total",
                                        "Requests admitted to a decode instance.", NULL);
    s->m.queued = afd_metrics_counter(reg, "afd:sla_queued_total",
                                      "Requests that waited in the admission queue.", NULL);
    for (int i = 1; i < 5; i++)
        s->m.rejected[i] = afd_metrics_counter(reg, "afd:sla_rejected_total",
                                               "Requests refused by admission, by reason.",
                                               "reason", rej_names[i], NULL);
    s->m.finished = afd_metrics_counter(reg, "afd:sla_finished_total",
                                        "Admitted requests that finished (ok or error).", NULL);
    s->m.goodput =
        afd_metrics_counter(reg, "afd:sla_goodput_requests_total",
                            "Requests that finished ok with TPOT within the target.", NULL);
    s->m.goodput_tokens = afd_metrics_counter(reg, "afd:sla_goodput_tokens_total",
                                              "Output tokens of the goodput requests.", NULL);
    s->m.cancelled = afd_metrics_counter(reg, "afd:sla_cancelled_total",
                                         "Requests cancelled while queued or running.", NULL);
}

static void register_verdict(sla *s, afd_metrics *reg) {
    char q[32];
    snprintf(q, sizeof q, "%g", s->c.percentile / 100.0);
    s->m.window = afd_metrics_gauge(reg, "afd:sla_inter_token_latency_window_seconds",
                                    "Inter-token latency percentile over the SLA window.",
                                    "quantile", q, NULL);
    s->m.met = afd_metrics_gauge(reg, "afd:sla_met",
                                 "1 while the ITL percentile over the window is within the "
                                 "target (or there is no data), 0 when violated.",
                                 NULL);
    s->m.target = afd_metrics_gauge(reg, "afd:sla_target_seconds", "The TPOT (ITL) target.", NULL);
}

int sla_metrics_register(sla *s, afd_metrics *reg) {
    if (!s || !reg || s->metrics_on) return AFD_E_STATE;
    register_latency(s, reg);
    register_counts(s, reg);
    register_verdict(s, reg);
    s->metrics_on = true;
    bool ok = s->m.itl && s->m.tpot && s->m.ttft && s->m.e2e && s->m.running && s->m.waiting &&
              s->m.admitted && s->m.queued && s->m.finished && s->m.goodput &&
              s->m.goodput_tokens && s->m.cancelled && s->m.window && s->m.met && s->m.target;
    for (int i = 1; i < 5; i++)
        ok = ok && s->m.rejected[i];
    afd_metric_set(s->m.target, (double)s->target_ns * 1e-9);
    afd_metric_set(s->m.met, 1);
    sla_stats_counts_changed(s);
    return ok ? 0 : AFD_E_FORMAT;
}
