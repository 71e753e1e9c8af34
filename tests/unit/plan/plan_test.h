/* plan_test.h: helpers shared by afd-plan's unit tests (not a test itself). The tests compile
 * the tools/plan sources they exercise straight in with #include, so each binary stays
 * self-contained; this header pulls in the pure model code (no CLI). */
#ifndef AFD_PLAN_TEST_H
#define AFD_PLAN_TEST_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/plan/jget.c"
#include "tools/plan/model.c"
#include "tools/plan/model_gqa.c"
#include "tools/plan/model_mla.c"
#include "tools/plan/model_step3.c"

/* A repository file: relative to $AFD_SRC_DIR when set, else to the working directory (the
 * test runner starts in the repository root). */
static inline const char *plan_test_path(const char *rel, char *buf, size_t len) {
    const char *root = getenv("AFD_SRC_DIR");
    snprintf(buf, len, "%s/%s", root ? root : ".", rel);
    return buf;
}

static inline void plan_test_load(const char *rel, plan_model *m) {
    char path[4096];
    afd_err err = {0};
    int rc = plan_model_load(plan_test_path(rel, path, sizeof(path)), m, &err);
    cr_assert_eq(rc, 0, "loading %s: %s", path, err.msg);
}

static inline void plan_test_parse(const char *json, plan_model *m) {
    afd_err err = {0};
    int rc = plan_model_parse(json, strlen(json), "test", m, &err);
    cr_assert_eq(rc, 0, "parse failed: %s", err.msg);
}

/* v rounded to 3 significant digits, as the paper prints its tables. */
static inline double plan_test_sig3(double v) {
    if (v == 0)
        return 0;
    double mag = pow(10.0, 2 - (int)floor(log10(fabs(v))));
    return round(v * mag) / mag;
}

#define plan_assert_sig3(v, expect, what)                                                       \
    cr_assert(fabs(plan_test_sig3(v) - (expect)) <= 1e-9 * fabs(expect),                        \
              "%s: %.6g rounds to %.3g, paper says %.3g", what, (double)(v), plan_test_sig3(v), \
              (double)(expect))

#define plan_assert_near(v, expect, tol, what)                                                  \
    cr_assert(fabs((double)(v) - (double)(expect)) <= (tol), "%s: got %.9g, expected %.9g "     \
              "(+/- %g)", what, (double)(v), (double)(expect), (double)(tol))

#endif
