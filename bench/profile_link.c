/* profile_link.c: link.samples, one-way transfer time against size.
 *
 * Measured over UCX between this process and a forked echo on 127.0.0.1, both busy-polling:
 * through afd's transport (proto/xport.h, bench/profile_xport.c: A2F frames from a registered
 * buffer, an 8-byte F2A back) by default, or with the bare UCP active-message ping-pong of
 * bench/link_raw.c (--link-via raw, the yardstick). A round trip of `bytes` out and 8 back,
 * minus half the round trip of 8 bytes each way, is the one-way time of `bytes`. 100
 * unrecorded round trips come first (UCX takes a slower path for the first messages of a
 * size). Each size is measured in three passes (one with --quick), more while the machine
 * looks busy, and the smallest median kept: a pass can lose its core to another process (both
 * ends busy-poll). UCX_NET_DEVICES is set to lo unless the caller set it; UCX_TLS and friends
 * come from the environment. Or the samples come from the "link" section of another
 * afd-profile file (--link-from).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/profile_impl.h"
#include "common/base/err.h"

#define SMALL_BYTES 8

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define WARMUP 100

/* A way to make round trips: xport keeps one connection for every size; raw forks an echo
 * per size (bench/link_raw.c). */
typedef struct link_session {
    bool raw;
    prof_xp *xp;
} link_session;

static double median_sorted(const double *v, int n) {
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median round trip of req bytes out and SMALL_BYTES back. */
static int round_trip(link_session *ls, size_t req, int iters, prof_sample *s) {
    double *us = calloc((size_t)iters, sizeof *us);
    if (!us)
        return -ENOMEM;
    raw_link_opts ro = {.req_bytes = req, .resp_bytes = SMALL_BYTES, .iters = iters,
                        .warmup = WARMUP};
    int rc = ls->raw ? raw_link_pingpong(&ro, us)
                     : prof_xp_round_trips(ls->xp, req, WARMUP, iters, us);
    if (!rc) {
        qsort(us, (size_t)iters, sizeof *us, cmp_double);
        s->us = median_sorted(us, iters);
        s->us_min = us[0], s->us_max = us[iters - 1], s->reps = iters;
    }
    free(us);
    return rc;
}

/* n sizes spaced evenly in log from one token's A2F to 4x an F2A of the largest FFN batch. */
static void default_sizes(const prof_opts *o, const prof_result *r, prof_list *out) {
    long max_tok = 1;
    for (int i = 0; i < o->tokens.n; i++)
        max_tok = o->tokens.v[i] > max_tok ? o->tokens.v[i] : max_tok;
    double lo = r->a2f_bytes_per_token, hi = 4.0 * r->f2a_bytes_per_token * (double)max_tok;
    if (hi < 64 * lo)
        hi = 64 * lo;
    int n = o->quick ? 4 : 6;
    out->n = n;
    for (int i = 0; i < n; i++)
        out->v[i] = lround(lo * pow(hi / lo, (double)i / (n - 1)));
}

/* Keeps the smaller median of two passes (the machine is shared: a pass can lose its core). */
static void keep_best(prof_sample *best, const prof_sample *s, bool first) {
    if (first) {
        *best = *s;
        return;
    }
    best->us = s->us < best->us ? s->us : best->us;
    best->us_min = s->us_min < best->us_min ? s->us_min : best->us_min;
    best->us_max = s->us_max > best->us_max ? s->us_max : best->us_max;
    best->reps += s->reps;
}

/* Over shared memory an 8-byte round trip takes about a microsecond and 1 MiB well under a
 * millisecond (TCP on loopback: about 2 GB/s). Far more means the two busy-polling ends were
 * sharing a core with something else: then more passes follow. */
#define CONTENDED_BASE_US 50.0
#define CONTENDED_MIB_US 2000.0
#define MAX_PASSES 8

static bool contended(const prof_list *sizes, const prof_sample *base, const prof_sample *rt) {
    if (base->us > CONTENDED_BASE_US)
        return true;
    for (int i = 0; i < sizes->n; i++)
        if (sizes->v[i] <= (1L << 20) && rt[i].us > CONTENDED_MIB_US)
            return true;
    return false;
}

/* Passes of (the 8-byte base, then every size), keeping each size's best median round trip:
 * 1 (quick) or 3, and more (up to MAX_PASSES) while the best so far still looks contended. */
static int measure_passes(const prof_opts *o, link_session *ls, const prof_list *sizes,
                          prof_sample *base, prof_sample *rt) {
    int passes = o->quick ? 1 : 3, iters = o->quick ? 60 : 200, rc = 0, p = 0;
    for (; !rc && p < MAX_PASSES && (p < passes || contended(sizes, base, rt)); p++) {
        prof_sample s = {0};
        if ((rc = round_trip(ls, SMALL_BYTES, iters, &s)))
            break;
        keep_best(base, &s, p == 0);
        for (int i = 0; i < sizes->n && !rc; i++)
            if (!(rc = round_trip(ls, (size_t)sizes->v[i], iters, &s)))
                keep_best(&rt[i], &s, p == 0);
    }
    if (!rc && contended(sizes, base, rt))
        printf("  note: after %d passes the round trips still look contended (8 bytes: %.1f us, "
               "about 1 us on an idle machine): another process was using the cores; the link "
               "samples are pessimistic\n", p, base->us);
    return rc;
}

int prof_measure_link(const prof_opts *o, prof_result *r) {
    prof_list sizes = o->link_bytes;
    if (sizes.n == 0)
        default_sizes(o, r, &sizes);
    setenv("UCX_NET_DEVICES", "lo", 0);
    prof_sample base = {0}, rt[PROF_MAX_POINTS];
    link_session ls = {.raw = o->link_raw};
    long max = SMALL_BYTES;
    for (int i = 0; i < sizes.n; i++)
        max = sizes.v[i] > max ? sizes.v[i] : max;
    int rc = ls.raw ? 0 : prof_xp_open((size_t)max, &ls.xp);
    if (!rc)
        rc = measure_passes(o, &ls, &sizes, &base, rt);
    prof_xp_close(ls.xp);
    if (rc) {
        fprintf(stderr, "afd-bench profile: link: UCX ping-pong on 127.0.0.1 failed (%s); take "
                        "the link from another profile with --link-from FILE, or --no-link\n",
                afd_strerror(rc));
        return rc;
    }
    for (int i = 0; i < sizes.n; i++) {
        prof_sample *s = &r->link[r->n_link++];
        *s = rt[i];
        s->us -= 0.5 * base.us, s->us_min -= 0.5 * base.us, s->us_max -= 0.5 * base.us;
        if (s->us < 0.01)
            s->us = 0.01; /* below the clock's resolution: keep the sample positive */
        s->x0 = (double)sizes.v[i];
        printf("  link bytes %10ld                %10.2f us  (%.2f GB/s, %d round trips)\n",
               sizes.v[i], s->us, (double)sizes.v[i] / s->us * 1e-3, s->reps);
    }
    snprintf(r->link_source, sizeof r->link_source,
             "%s between two processes on 127.0.0.1 (UCX_NET_DEVICES=%s, UCX_TLS=%s), "
             "busy-polled: one-way = round trip (bytes out, 8 back) - half the 8-byte round "
             "trip (%.2f us); the smallest median of several passes",
             ls.raw ? "bare UCP active messages (bench/link_raw.c)"
                    : "afd frames through proto/xport.h (A2F from a registered buffer)",
             getenv("UCX_NET_DEVICES"), getenv("UCX_TLS") ? getenv("UCX_TLS") : "default",
             base.us);
    r->have_link = true;
    return 0;
}

static int link_sample(json_t *e, const char *path, size_t i, prof_sample *s) {
    json_t *b = json_object_get(e, "bytes"), *us = json_object_get(e, "us");
    if (!json_is_number(b) || !json_is_number(us) || json_number_value(b) <= 0 ||
        !(json_number_value(us) > 0)) {
        fprintf(stderr, "afd-bench profile: --link-from %s: link.samples[%zu] needs numbers "
                        "\"bytes\" > 0 and \"us\" > 0\n", path, i);
        return AFD_E_FORMAT;
    }
    memset(s, 0, sizeof *s);
    s->x0 = json_number_value(b);
    s->us = s->us_min = s->us_max = json_number_value(us);
    return 0;
}

static int link_samples(json_t *root, const char *path, prof_result *r) {
    json_t *arr = json_object_get(json_object_get(root, "link"), "samples");
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > PROF_MAX_POINTS) {
        fprintf(stderr, "afd-bench profile: --link-from %s: need \"link\": {\"samples\": [...]} "
                        "with 1 to %d samples\n", path, PROF_MAX_POINTS);
        return AFD_E_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = link_sample(json_array_get(arr, i), path, i, &r->link[i]);
        if (rc)
            return rc;
    }
    r->n_link = (int)n;
    return 0;
}

int prof_link_from_file(const char *path, prof_result *r) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fprintf(stderr, "afd-bench profile: --link-from %s: line %d: %s\n", path, je.line,
                je.text);
        return AFD_E_FORMAT;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    int rc = 0;
    if (!fmt || strcmp(fmt, "afd-profile") != 0) {
        fprintf(stderr, "afd-bench profile: --link-from %s: key \"format\" is not "
                        "\"afd-profile\"\n", path);
        rc = AFD_E_FORMAT;
    }
    if (!rc)
        rc = link_samples(root, path, r);
    if (!rc) {
        const char *src = json_string_value(json_object_get(json_object_get(root, "link"),
                                                            "source"));
        snprintf(r->link_source, sizeof r->link_source, "from %s%s%s", path, src ? ": " : "",
                 src ? src : "");
        r->have_link = true;
        for (int i = 0; i < r->n_link; i++)
            printf("  link bytes %10.0f                %10.2f us  (from %s)\n", r->link[i].x0,
                   r->link[i].us, path);
    }
    json_decref(root);
    return rc;
}
