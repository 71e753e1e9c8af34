/* sla_impl.h: private to router/sla*.c: the sla and sla_inst structs, the sliding window and the
 * functions the files share. Nothing outside router/sla*.c includes it.
 */
#ifndef AFD_ROUTER_SLA_IMPL_H
#define AFD_ROUTER_SLA_IMPL_H

#include "router/sla.h"

/* ---- sliding window of ITL samples and departures (sla_window.c) ---- */

/* The window is SLA_WIN_SLOTS slots of window/SLA_WIN_SLOTS each: a query covers the current
 * slot and the SLOTS-1 before it. Within a slot, ITL samples are counted in log buckets 1%
 * wide from 10 us (bucket 0: below 10 us; the last: everything above ~100 s). */
#define SLA_WIN_SLOTS   12
#define SLA_WIN_BUCKETS 1624

typedef struct sla_window {
    uint64_t slot_ns;
    uint64_t epoch[SLA_WIN_SLOTS]; /* now / slot_ns + 1 of the slot's data; 0 = empty */
    uint64_t total[SLA_WIN_SLOTS]; /* samples per slot */
    uint64_t dep[SLA_WIN_SLOTS];   /* departures per slot */
    uint32_t *cnt;                 /* [SLOTS][BUCKETS] */
} sla_window;

void sla_win_init(sla_window *w, uint64_t window_ns);
void sla_win_free(sla_window *w);
void sla_win_add(sla_window *w, uint64_t now, uint64_t v_ns, uint32_t count);
void sla_win_depart(sla_window *w, uint64_t now);
/* Upper bound of the bucket holding the q-quantile (ns); 0 with no samples. */
uint64_t sla_win_quantile(const sla_window *w, uint64_t now, double q);
uint64_t sla_win_samples(const sla_window *w, uint64_t now);
uint64_t sla_win_departures(const sla_window *w, uint64_t now);

/* ---- the objects ---- */

struct sla_inst {
    sla *s;
    uint32_t id;
    bool ready, drain, have_report, touched;
    uint64_t t_report, t_touch;
    ctrl_load last;
    sla_model model;
    sla_inst *prev, *next;
    sla_req *live;            /* admitted requests (pending or counted by a report) */
    uint32_t n_live, n_acked; /* n_acked: pending requests acknowledged */
    /* promised, not yet in a report (admitted since) */
    uint32_t pend_n;
    uint64_t pend_ctx, pend_grow, pend_blocks;
    /* gone since the last report */
    uint32_t dep_n;
    uint64_t dep_ctx, dep_blocks;
    /* outstanding growth of the requests a report counts */
    uint64_t grow_tokens, grow_blocks;
    /* requests without a first token (waiting or in prefill): those a report counts, and the
     * prompt tokens of all of them */
    uint32_t pf_counted;
    uint64_t pf_tokens;
};

typedef struct sla_metric_set {
    afd_metric *itl, *tpot, *ttft, *e2e;
    afd_metric *running, *waiting;
    afd_metric *admitted, *queued, *rejected[5], *finished, *goodput, *goodput_tokens;
    afd_metric *cancelled, *window, *met, *target;
} sla_metric_set;

struct sla {
    sla_config c;
    uint64_t target_ns, wait_ns, stale_ns;
    sla_inst *insts;
    sla_req *q_head, *q_tail;
    sla_window win;
    sla_counts n;
    bool have_t0, metrics_on;
    uint64_t t0, t_gauges;
    sla_metric_set m;
};

/* sla_stats.c */
void sla_stats_tokens(sla *s, sla_req *r, uint32_t n, uint64_t now);
void sla_stats_finish(sla *s, sla_req *r, uint64_t now, int end);
void sla_stats_counts_changed(sla *s);
void sla_stats_refresh(sla *s, uint64_t now);

#endif
