/* profile.c: reads and fits a measured deployment profile. See profile.h. */
#include "tools/plan/profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "tools/plan/jget.h"

double plan_profile_attn_us(const plan_profile *p, double batch, double context) {
    double row[3] = {1.0, batch, batch * context};
    return plan_fit_eval(&p->attn, row);
}

double plan_profile_ffn_us(const plan_profile *p, double tokens) {
    double row[2] = {1.0, tokens};
    return plan_fit_eval(&p->ffn, row);
}

double plan_profile_link_us(const plan_profile *p, double bytes) {
    double row[2] = {1.0, bytes};
    return plan_fit_eval(&p->link, row);
}

/* The samples array of a section: 1..PLAN_PROFILE_MAX_SAMPLES objects. */
static int prof_samples(const json_t *sec, const char *what, json_t **arr, afd_err *err) {
    *arr = json_object_get(sec, "samples");
    if (!json_is_array(*arr))
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"samples\": expected an array of sample "
                        "objects", what);
    size_t n = json_array_size(*arr);
    if (n < 1 || n > PLAN_PROFILE_MAX_SAMPLES)
        return afd_errf(err, AFD_E_LIMIT, "%s: %zu samples; need 1 to %d", what, n,
                        PLAN_PROFILE_MAX_SAMPLES);
    return 0;
}

/* One sample: the named regressors (>= 0) and "us" (> 0). */
static int prof_sample(const json_t *s, const char *what, const char *const *keys, int nk,
                       double *vals, double *us, afd_err *err) {
    int rc;
    if (!json_is_object(s))
        return afd_errf(err, AFD_E_FORMAT, "%s: expected an object, got %s", what,
                        jget_type_name(s));
    for (int k = 0; k < nk; k++)
        if ((rc = jget_double(s, keys[k], JGET_REQUIRED, 0, 1e15, &vals[k], what, err)) < 0)
            return rc;
    return jget_double(s, "us", JGET_REQUIRED, 1e-6, 1e12, us, what, err);
}

static void prof_range(double *r, double v, size_t i) {
    if (i == 0 || v < r[0])
        r[0] = v;
    if (i == 0 || v > r[1])
        r[1] = v;
}

/* Reads a section's samples of keys[] and fits them; `row` builds the regressor row. */
static int prof_fit_section(const json_t *sec, const char *what, const char *const *keys,
                            int nk, int terms, void (*row)(const double *, double *),
                            plan_fit *fit, double ranges[][2], afd_err *err) {
    json_t *arr, *s;
    size_t i;
    int rc = prof_samples(sec, what, &arr, err);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(arr);
    double *x = xcalloc(n * (size_t)terms, sizeof(double)), *y = xcalloc(n, sizeof(double));
    json_array_foreach(arr, i, s) {
        char w[512];
        double vals[2];
        snprintf(w, sizeof(w), "%s: samples[%zu]", what, i);
        if ((rc = prof_sample(s, w, keys, nk, vals, &y[i], err)) < 0)
            break;
        row(vals, &x[i * (size_t)terms]);
        for (int k = 0; k < nk; k++)
            prof_range(ranges[k], vals[k], i);
    }
    if (rc == 0 && plan_fit_nnls(x, y, (int)n, terms, fit) < 0)
        rc = afd_errf(err, AFD_E_FORMAT, "%s: the samples cannot be fitted (vary the inputs)",
                      what);
    free(x);
    free(y);
    return rc;
}

static void prof_row_attn(const double *v, double *row) {
    row[0] = 1.0;
    row[1] = v[0];
    row[2] = v[0] * v[1];
}

static void prof_row_linear(const double *v, double *row) {
    row[0] = 1.0;
    row[1] = v[0];
}

/* The object under key in root, with `what` extended for messages. */
static int prof_section(const json_t *root, const char *key, const char *path, char *what,
                        size_t wlen, const json_t **sec, afd_err *err) {
    snprintf(what, wlen, "%s: %s", path, key);
    *sec = json_object_get(root, key);
    if (!json_is_object(*sec))
        return afd_errf(err, AFD_E_NOTFOUND, "%s: missing section \"%s\" (an object with "
                        "\"samples\")", path, key);
    return 0;
}

static int prof_attention(const json_t *root, const char *path, plan_profile *p, afd_err *err) {
    static const char *const keys[] = {"batch", "context"};
    double ranges[2][2];
    char what[512];
    const json_t *sec;
    int rc;
    if ((rc = prof_section(root, "attention", path, what, sizeof(what), &sec, err)) < 0 ||
        (rc = prof_fit_section(sec, what, keys, 2, 3, prof_row_attn, &p->attn, ranges, err)) <
            0)
        return rc;
    memcpy(p->attn_batch_range, ranges[0], sizeof(ranges[0]));
    memcpy(p->attn_ctx_range, ranges[1], sizeof(ranges[1]));
    if ((rc = jget_double(sec, "usd_per_hour", JGET_OPTIONAL, 1e-9, 1e9, &p->attn_usd_per_hour,
                          what, err)) < 0 ||
        (rc = jget_int(sec, "machines", JGET_OPTIONAL, 1, 1 << 20, &p->attn_machines, what,
                       err)) < 0 ||
        (rc = jget_long(sec, "kv_capacity_tokens", JGET_OPTIONAL, 0, 1L << 50,
                        &p->attn_kv_capacity, what, err)) < 0 ||
        (rc = jget_long(sec, "max_batch", JGET_OPTIONAL, 0, 1L << 40, &p->attn_max_batch, what,
                        err)) < 0)
        return rc;
    return jget_double(sec, "step_overhead_us", JGET_OPTIONAL, 0, 1e9, &p->step_overhead_us,
                       what, err);
}

static int prof_ffn(const json_t *root, const char *path, plan_profile *p, afd_err *err) {
    static const char *const keys[] = {"tokens"};
    double ranges[1][2];
    char what[512];
    const json_t *sec;
    int rc;
    if ((rc = prof_section(root, "ffn", path, what, sizeof(what), &sec, err)) < 0 ||
        (rc = prof_fit_section(sec, what, keys, 1, 2, prof_row_linear, &p->ffn, ranges, err)) <
            0)
        return rc;
    memcpy(p->ffn_tokens_range, ranges[0], sizeof(ranges[0]));
    if ((rc = jget_int(sec, "shards", JGET_OPTIONAL, 1, 1 << 16, &p->ffn_shards, what, err)) <
            0 ||
        (rc = jget_int(sec, "min_instances", JGET_OPTIONAL, 1, 1 << 16, &p->ffn_min_instances,
                       what, err)) < 0 ||
        (rc = jget_long(sec, "max_tokens", JGET_OPTIONAL, 0, 1L << 40, &p->ffn_max_tokens, what,
                        err)) < 0 ||
        (rc = jget_double(sec, "usd_per_hour", JGET_OPTIONAL, 1e-9, 1e9, &p->ffn_usd_per_hour,
                          what, err)) < 0)
        return rc;
    return jget_int(sec, "machines", JGET_OPTIONAL, 1, 1 << 20, &p->ffn_machines, what, err);
}

static int prof_link(const json_t *root, const char *path, plan_profile *p, afd_err *err) {
    static const char *const keys[] = {"bytes"};
    double ranges[1][2];
    char what[512];
    const json_t *sec;
    int rc;
    if ((rc = prof_section(root, "link", path, what, sizeof(what), &sec, err)) < 0 ||
        (rc = prof_fit_section(sec, what, keys, 1, 2, prof_row_linear, &p->link, ranges,
                               err)) < 0)
        return rc;
    memcpy(p->link_bytes_range, ranges[0], sizeof(ranges[0]));
    if ((rc = jget_double(sec, "a2f_bytes_per_token", JGET_OPTIONAL, 0, 1e9,
                          &p->a2f_bytes_per_token, what, err)) < 0)
        return rc;
    return jget_double(sec, "f2a_bytes_per_token", JGET_OPTIONAL, 0, 1e9,
                       &p->f2a_bytes_per_token, what, err);
}

/* "format": "afd-profile", "version": 1, optional labels. */
static int prof_header(const json_t *root, const char *path, plan_profile *p, afd_err *err) {
    const char *fmt = NULL, *label = NULL;
    long version = 0;
    int rc;
    if ((rc = jget_string(root, "format", JGET_REQUIRED, &fmt, path, err)) < 0)
        return rc;
    if (strcmp(fmt, "afd-profile") != 0)
        return afd_errf(err, AFD_E_FORMAT, "%s: key \"format\" is \"%s\", expected "
                        "\"afd-profile\"", path, fmt);
    if ((rc = jget_long(root, "version", JGET_REQUIRED, 0, 1L << 30, &version, path, err)) < 0)
        return rc;
    if (version != 1)
        return afd_errf(err, AFD_E_UNSUPPORTED, "%s: profile version %ld; this afd-plan reads "
                        "version 1", path, version);
    if ((rc = jget_string(root, "model", JGET_OPTIONAL, &label, path, err)) < 0)
        return rc;
    if (label)
        snprintf(p->model, sizeof(p->model), "%s", label);
    label = NULL;
    if ((rc = jget_string(root, "hardware", JGET_OPTIONAL, &label, path, err)) < 0)
        return rc;
    if (label)
        snprintf(p->hardware, sizeof(p->hardware), "%s", label);
    return 0;
}

static int prof_from_json(const json_t *root, const char *path, plan_profile *p, afd_err *err) {
    int rc;
    memset(p, 0, sizeof(*p));
    p->ffn_shards = p->ffn_min_instances = 1;
    p->attn_machines = p->ffn_machines = 1;
    p->attn_usd_per_hour = p->ffn_usd_per_hour = 1.0;
    if ((rc = prof_header(root, path, p, err)) < 0 || (rc = prof_attention(root, path, p, err)) < 0 ||
        (rc = prof_ffn(root, path, p, err)) < 0 || (rc = prof_link(root, path, p, err)) < 0)
        return rc;
    return 0;
}

int plan_profile_parse(const char *json, size_t len, const char *what, plan_profile *p,
                       afd_err *err) {
    json_t *root = jget_load_buf(json, len, what, err);
    if (!root)
        return err ? err->code : AFD_E_FORMAT;
    int rc = prof_from_json(root, what, p, err);
    json_decref(root);
    return rc;
}

int plan_profile_load(const char *path, plan_profile *p, afd_err *err) {
    json_t *root = jget_load_file(path, PLAN_PROFILE_MAX_BYTES, err);
    if (!root)
        return err ? err->code : AFD_E_FORMAT;
    int rc = prof_from_json(root, path, p, err);
    json_decref(root);
    return rc;
}
