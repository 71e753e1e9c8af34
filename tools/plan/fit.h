/* fit.h: small least-squares fits with non-negative coefficients, for measured profiles.
 *
 * y ~ sum_j coef[j] x[j] over n samples of up to PLAN_FIT_MAX_TERMS regressors. The fit
 * minimises the squared *relative* error (each row weighted by 1/y, so a 10 us and a 10 ms
 * sample count alike) subject to coef >= 0: every subset of terms is solved exactly and the
 * best feasible one kept, which is exact for 2^3 subsets and keeps the fitted times monotone
 * in batch, tokens and bytes (the planner's search relies on that). Pure; thread-safe.
 */
#ifndef AFD_PLAN_FIT_H
#define AFD_PLAN_FIT_H

#include "common/base/err.h"

#define PLAN_FIT_MAX_TERMS 3

typedef struct plan_fit {
    int terms;
    int n;                          /* samples fitted */
    double coef[PLAN_FIT_MAX_TERMS];
    double max_rel_err;             /* max |fit - y| / y over the samples */
    double rms_rel_err;
} plan_fit;

/* x: n rows of `terms` values (row-major); y: n positive values. 0, or AFD_E_FORMAT when no
 * subset of terms can be solved (e.g. n == 0). */
int plan_fit_nnls(const double *x, const double *y, int n, int terms, plan_fit *out);
/* sum_j coef[j] row[j]. */
double plan_fit_eval(const plan_fit *f, const double *row);

#endif
