/* sla_window.c: ITL samples and departures over the last W seconds, in SLA_WIN_SLOTS time slots
 * of log-bucketed counts (1% wide), so a percentile costs a pass over the buckets and a sample
 * costs a log(). A slot is cleared when the clock first reaches it again.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "router/sla_impl.h"

#define V0_NS 10000.0 /* bucket 0 holds everything below 10 us */
#define RATIO 1.01

static int bucket_of(uint64_t v) {
    if ((double)v < V0_NS) return 0;
    double k = floor(log((double)v / V0_NS) / log(RATIO));
    return k >= SLA_WIN_BUCKETS - 2 ? SLA_WIN_BUCKETS - 1 : 1 + (int)k;
}

static uint64_t bucket_upper(int i) {
    return (uint64_t)ceil(V0_NS * pow(RATIO, i));
}

void sla_win_init(sla_window *w, uint64_t window_ns) {
    memset(w, 0, sizeof *w);
    w->slot_ns = window_ns / SLA_WIN_SLOTS ? window_ns / SLA_WIN_SLOTS : 1;
    w->cnt = xcalloc((size_t)SLA_WIN_SLOTS * SLA_WIN_BUCKETS, sizeof *w->cnt);
}

void sla_win_free(sla_window *w) {
    free(w->cnt);
    w->cnt = NULL;
}

/* The slot of `now`, cleared if it holds an older epoch. */
static int slot_at(sla_window *w, uint64_t now) {
    uint64_t e = now / w->slot_ns + 1;
    int i = (int)(e % SLA_WIN_SLOTS);
    if (w->epoch[i] != e) {
        w->epoch[i] = e;
        w->total[i] = 0;
        w->dep[i] = 0;
        memset(w->cnt + (size_t)i * SLA_WIN_BUCKETS, 0, SLA_WIN_BUCKETS * sizeof *w->cnt);
    }
    return i;
}

/* Whether slot i holds data of the window ending at now. */
static bool slot_live(const sla_window *w, int i, uint64_t now) {
    uint64_t e = now / w->slot_ns + 1;
    return w->epoch[i] && w->epoch[i] <= e && e - w->epoch[i] < SLA_WIN_SLOTS;
}

void sla_win_add(sla_window *w, uint64_t now, uint64_t v_ns, uint32_t count) {
    if (!count) return;
    int i = slot_at(w, now);
    uint32_t *c = &w->cnt[(size_t)i * SLA_WIN_BUCKETS + bucket_of(v_ns)];
    *c = *c > UINT32_MAX - count ? UINT32_MAX : *c + count;
    w->total[i] += count;
}

void sla_win_depart(sla_window *w, uint64_t now) {
    w->dep[slot_at(w, now)]++;
}

uint64_t sla_win_samples(const sla_window *w, uint64_t now) {
    uint64_t n = 0;
    for (int i = 0; i < SLA_WIN_SLOTS; i++)
        if (slot_live(w, i, now)) n += w->total[i];
    return n;
}

uint64_t sla_win_departures(const sla_window *w, uint64_t now) {
    uint64_t n = 0;
    for (int i = 0; i < SLA_WIN_SLOTS; i++)
        if (slot_live(w, i, now)) n += w->dep[i];
    return n;
}

uint64_t sla_win_quantile(const sla_window *w, uint64_t now, double q) {
    uint64_t n = sla_win_samples(w, now);
    if (!n) return 0;
    double want = ceil(q * (double)n);
    uint64_t rank = want < 1 ? 1 : want > (double)n ? n : (uint64_t)want, seen = 0;
    bool live[SLA_WIN_SLOTS];
    for (int i = 0; i < SLA_WIN_SLOTS; i++)
        live[i] = slot_live(w, i, now) && w->total[i];
    for (int b = 0; b < SLA_WIN_BUCKETS; b++) {
        for (int i = 0; i < SLA_WIN_SLOTS; i++)
            if (live[i]) seen += w->cnt[(size_t)i * SLA_WIN_BUCKETS + b];
        if (seen >= rank) return bucket_upper(b);
    }
    return bucket_upper(SLA_WIN_BUCKETS - 1);
}
