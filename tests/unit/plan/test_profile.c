/* afd-plan profiles: the non-negative relative least-squares fits, and the profile format with
 * its errors. */
#include "tests/unit/plan/plan_test.h"

#include "tools/plan/fit.c"
#include "tools/plan/profile.c"

TestSuite(plan_profile, .timeout = 10);

Test(plan_profile, fit_recovers_an_exact_plane) {
    /* y = 5 + 2 b + 0.001 b c over varied (b, c) */
    double x[5][3], y[5], bc[5][2] = {{1, 100}, {10, 1000}, {50, 4000}, {200, 8000}, {7, 30000}};
    for (int i = 0; i < 5; i++) {
        x[i][0] = 1;
        x[i][1] = bc[i][0];
        x[i][2] = bc[i][0] * bc[i][1];
        y[i] = 5 + 2 * bc[i][0] + 0.001 * x[i][2];
    }
    plan_fit f;
    cr_assert_eq(plan_fit_nnls(&x[0][0], y, 5, 3, &f), 0);
    plan_assert_near(f.coef[0], 5, 1e-9, "intercept");
    plan_assert_near(f.coef[1], 2, 1e-9, "per batch");
    plan_assert_near(f.coef[2], 0.001, 1e-12, "per batch x context");
    cr_assert(f.max_rel_err < 1e-9, "max error %g", f.max_rel_err);
    cr_assert_eq(f.n, 5);
}

Test(plan_profile, fit_never_returns_a_negative_slope) {
    /* times that fall with size: the unconstrained slope is negative; NNLS gives a constant */
    double x[3][2] = {{1, 1}, {1, 2}, {1, 3}}, y[3] = {30, 20, 10};
    plan_fit f;
    cr_assert_eq(plan_fit_nnls(&x[0][0], y, 3, 2, &f), 0);
    cr_assert_eq(f.coef[1], 0.0, "slope %g", f.coef[1]);
    cr_assert_gt(f.coef[0], 10.0, "intercept %g", f.coef[0]);
    cr_assert_lt(f.coef[0], 30.0, "intercept %g", f.coef[0]);
    cr_assert_gt(f.max_rel_err, 0.3, "the misfit is reported: %g", f.max_rel_err);
}

Test(plan_profile, fit_weighs_relative_error) {
    /* two exact points of y = 1 + x and one outlier at the small end: a relative fit follows
     * the small samples closely instead of letting the large one dominate */
    double x[3][2] = {{1, 1}, {1, 2}, {1, 1000}}, y[3] = {2, 3, 1500};
    plan_fit f;
    cr_assert_eq(plan_fit_nnls(&x[0][0], y, 3, 2, &f), 0);
    double small = f.coef[0] + f.coef[1];
    cr_assert(fabs(small - 2) / 2 < 0.35, "fit at x=1 is %g, sample 2", small);
}

Test(plan_profile, fit_with_constant_regressors_falls_back) {
    /* every sample at the same size: intercept and slope are not separable; some subset
     * still fits exactly */
    double x[2][2] = {{1, 4}, {1, 4}}, y[2] = {8, 8};
    plan_fit f;
    cr_assert_eq(plan_fit_nnls(&x[0][0], y, 2, 2, &f), 0);
    double row[2] = {1, 4};
    plan_assert_near(plan_fit_eval(&f, row), 8, 1e-9, "fit at the sample");
    cr_assert_eq(plan_fit_nnls(&x[0][0], y, 0, 2, &f), AFD_E_FORMAT, "no samples");
}

#define PROFILE_OK                                                                            \
    "{\"format\": \"afd-profile\", \"version\": 1, \"model\": \"toy\", \"hardware\": \"cpu\", " \
    "\"attention\": {\"samples\": [{\"batch\": 1, \"context\": 100, \"us\": 12.2}, "           \
    "{\"batch\": 10, \"context\": 100, \"us\": 32}, {\"batch\": 10, \"context\": 1000, "       \
    "\"us\": 50}, {\"batch\": 40, \"context\": 500, \"us\": 130}], \"usd_per_hour\": 3, "      \
    "\"machines\": 8, \"kv_capacity_tokens\": 100000, \"max_batch\": 512, "                    \
    "\"step_overhead_us\": 250}, "                                                              \
    "\"ffn\": {\"samples\": [{\"tokens\": 8, \"us\": 24}, {\"tokens\": 64, \"us\": 80}], "     \
    "\"shards\": 2, \"min_instances\": 2, \"max_tokens\": 4096, \"usd_per_hour\": 5}, "        \
    "\"link\": {\"samples\": [{\"bytes\": 1000, \"us\": 3}, {\"bytes\": 11000, \"us\": 13}], " \
    "\"a2f_bytes_per_token\": 100, \"f2a_bytes_per_token\": 200}}"

Test(plan_profile, a_complete_profile_is_read_and_fitted) {
    plan_profile p;
    afd_err err = {0};
    const char *s = PROFILE_OK;
    cr_assert_eq(plan_profile_parse(s, strlen(s), "p.json", &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p.model, "toy");
    cr_assert_str_eq(p.hardware, "cpu");
    /* attention samples lie on 10 + 2 b + 0.002 b c */
    plan_assert_near(plan_profile_attn_us(&p, 20, 300), 10 + 40 + 0.002 * 20 * 300, 1e-6,
                     "attention fit");
    /* ffn on 16 + 1 N, link on 2 + 0.001 bytes */
    plan_assert_near(plan_profile_ffn_us(&p, 100), 116, 1e-9, "ffn fit");
    plan_assert_near(plan_profile_link_us(&p, 5000), 7, 1e-9, "link fit");
    cr_assert_eq(p.ffn_shards, 2);
    cr_assert_eq(p.ffn_min_instances, 2);
    cr_assert_eq(p.ffn_max_tokens, 4096);
    cr_assert_eq(p.attn_kv_capacity, 100000);
    cr_assert_eq(p.attn_max_batch, 512);
    cr_assert_eq(p.attn_machines, 8);
    cr_assert_eq(p.ffn_machines, 1, "default");
    cr_assert_eq(p.attn_usd_per_hour, 3.0);
    cr_assert_eq(p.step_overhead_us, 250.0);
    cr_assert_eq(p.a2f_bytes_per_token, 100.0);
    cr_assert_eq(p.attn_batch_range[0], 1.0);
    cr_assert_eq(p.attn_batch_range[1], 40.0);
    cr_assert_eq(p.attn_ctx_range[1], 1000.0);
}

Test(plan_profile, the_shipped_example_profile_loads) {
    char path[4096];
    plan_profile p;
    afd_err err = {0};
    plan_test_path("bench/profiles/example.json", path, sizeof(path));
    cr_assert_eq(plan_profile_load(path, &p, &err), 0, "%s", err.msg);
    cr_assert(p.attn.max_rel_err < 0.15, "example attention fit error %g", p.attn.max_rel_err);
    cr_assert(p.ffn.max_rel_err < 0.15, "example FFN fit error %g", p.ffn.max_rel_err);
    cr_assert(p.link.max_rel_err < 0.15, "example link fit error %g", p.link.max_rel_err);
}

static void expect_profile_error(const char *from, const char *to, const char *needle) {
    char buf[4096];
    const char *base = PROFILE_OK, *at = strstr(base, from);
    cr_assert_not_null(at, "test bug: \"%s\" not in the profile", from);
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
    plan_profile p;
    afd_err err = {0};
    int rc = plan_profile_parse(buf, strlen(buf), "p.json", &p, &err);
    cr_assert_lt(rc, 0, "accepted a profile with %s -> %s", from, to);
    cr_assert(strstr(err.msg, needle) != NULL, "message \"%s\" should mention \"%s\"", err.msg,
              needle);
    cr_assert(strstr(err.msg, "p.json") != NULL, "message \"%s\" names the file", err.msg);
}

Test(plan_profile, bad_profiles_are_refused_by_name) {
    expect_profile_error("\"afd-profile\"", "\"csv\"", "format");
    expect_profile_error("\"version\": 1", "\"version\": 2", "version 2");
    expect_profile_error("\"attention\":", "\"attn\":", "attention");
    expect_profile_error("{\"batch\": 1, \"context\": 100, \"us\": 12.2}",
                         "{\"batch\": 1, \"context\": 100}", "us");
    expect_profile_error("\"us\": 12.2}", "\"us\": -12}", "samples[0]");
    expect_profile_error("{\"tokens\": 8, \"us\": 24}", "{\"tokens\": \"8\", \"us\": 24}",
                         "tokens");
    expect_profile_error("\"link\": {\"samples\": [{\"bytes\": 1000, \"us\": 3}, "
                         "{\"bytes\": 11000, \"us\": 13}]",
                         "\"link\": {\"samples\": []", "samples");
    expect_profile_error("\"shards\": 2", "\"shards\": 0", "shards");
    expect_profile_error("\"usd_per_hour\": 5", "\"usd_per_hour\": 0", "usd_per_hour");
    expect_profile_error("\"max_batch\": 512", "\"max_batch\": 1.5", "max_batch");
}
