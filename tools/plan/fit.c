/* fit.c: non-negative weighted least squares by exhaustive active sets. See fit.h. */
#include "tools/plan/fit.h"

#include <math.h>
#include <string.h>

#define FIT_T PLAN_FIT_MAX_TERMS

double plan_fit_eval(const plan_fit *f, const double *row) {
    double s = 0;
    for (int j = 0; j < f->terms; j++)
        s += f->coef[j] * row[j];
    return s;
}

/* Solves a (k x k) a = b in place by Gaussian elimination with partial pivoting; -1 if
 * singular relative to the diagonal scale. */
static int fit_solve(double a[FIT_T][FIT_T], double b[FIT_T], int k) {
    double diag = 0;
    for (int c = 0; c < k; c++)
        diag = fmax(diag, fabs(a[c][c]));
    for (int c = 0; c < k; c++) {
        int p = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        if (!(fabs(a[p][c]) > 1e-12 * diag))
            return -1;
        for (int j = 0; j < k; j++) {
            double t = a[c][j];
            a[c][j] = a[p][j];
            a[p][j] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < k; r++) {
            double f = a[r][c] / a[c][c];
            for (int j = c; j < k; j++)
                a[r][j] -= f * a[c][j];
            b[r] -= f * b[c];
        }
    }
    for (int c = k - 1; c >= 0; c--) {
        for (int j = c + 1; j < k; j++)
            b[c] -= a[c][j] * b[j];
        b[c] /= a[c][c];
    }
    return 0;
}

/* Weighted normal equations over the columns in cols[0..k), each column scaled by scale[]. */
static void fit_normal(const double *x, const double *y, int n, int terms, const int *cols,
                       int k, const double *scale, double a[FIT_T][FIT_T], double b[FIT_T]) {
    memset(a, 0, sizeof(double) * FIT_T * FIT_T);
    memset(b, 0, sizeof(double) * FIT_T);
    for (int i = 0; i < n; i++) {
        double w = 1.0 / y[i];
        for (int p = 0; p < k; p++) {
            double xp = x[i * terms + cols[p]] / scale[cols[p]] * w;
            b[p] += xp * y[i] * w;
            for (int q = 0; q < k; q++)
                a[p][q] += xp * x[i * terms + cols[q]] / scale[cols[q]] * w;
        }
    }
}

/* Relative errors of coef over the samples; returns the sum of squares. */
static double fit_errors(const double *x, const double *y, int n, int terms, const double *coef,
                         double *max_rel) {
    plan_fit f = {.terms = terms};
    memcpy(f.coef, coef, sizeof(double) * (size_t)terms);
    double sse = 0;
    *max_rel = 0;
    for (int i = 0; i < n; i++) {
        double e = (plan_fit_eval(&f, &x[i * terms]) - y[i]) / y[i];
        sse += e * e;
        if (fabs(e) > *max_rel)
            *max_rel = fabs(e);
    }
    return sse;
}

/* Solves the subset `mask`; 0 and coef (zero outside the subset) if solvable and >= 0. */
static int fit_subset(const double *x, const double *y, int n, int terms, unsigned mask,
                      const double *scale, double *coef) {
    int cols[FIT_T], k = 0;
    double a[FIT_T][FIT_T], b[FIT_T];
    for (int j = 0; j < terms; j++)
        if (mask & (1u << j))
            cols[k++] = j;
    fit_normal(x, y, n, terms, cols, k, scale, a, b);
    if (fit_solve(a, b, k) < 0)
        return -1;
    memset(coef, 0, sizeof(double) * FIT_T);
    for (int p = 0; p < k; p++) {
        if (b[p] < -1e-12 || !isfinite(b[p]))
            return -1;
        coef[cols[p]] = b[p] > 0 ? b[p] / scale[cols[p]] : 0;
    }
    return 0;
}

int plan_fit_nnls(const double *x, const double *y, int n, int terms, plan_fit *out) {
    double scale[FIT_T] = {1, 1, 1}, coef[FIT_T], best_sse = INFINITY;
    if (n < 1 || terms < 1 || terms > FIT_T)
        return AFD_E_FORMAT;
    for (int j = 0; j < terms; j++) {
        scale[j] = 0;
        for (int i = 0; i < n; i++)
            scale[j] = fmax(scale[j], fabs(x[i * terms + j]));
        if (scale[j] == 0)
            scale[j] = 1;
    }
    memset(out, 0, sizeof(*out));
    out->terms = terms;
    out->n = n;
    for (unsigned mask = 1; mask < (1u << terms); mask++) {
        double max_rel, sse;
        if (fit_subset(x, y, n, terms, mask, scale, coef) < 0)
            continue;
        sse = fit_errors(x, y, n, terms, coef, &max_rel);
        if (sse < best_sse * (1 - 1e-12)) {
            best_sse = sse;
            memcpy(out->coef, coef, sizeof(coef));
            out->max_rel_err = max_rel;
            out->rms_rel_err = sqrt(sse / n);
        }
    }
    return isfinite(best_sse) ? 0 : AFD_E_FORMAT;
}
