/* sla_model.c: step time = c0 + c1*batch + c2*ctx + c3*prefill, c >= 0, by exponentially
 * weighted least squares in information form.
 *
 * The normal equations A = sum w x x^T, b = sum w x y are kept and decay by `forget` per report
 * (recursive least squares with forgetting); they start as the prior (weight * I, weight *
 * prior), which therefore fades like old reports do. A permanent weak ridge towards the prior
 * keeps A invertible in directions the reports never excite (a context that never changes),
 * so the fit cannot wind up there. With four coefficients the non-negative solution is exact:
 * the constrained optimum is the unconstrained optimum on its own support, so solving on every
 * one of the 16 supports and keeping the best feasible one finds it. Features are scaled to be
 * near 1 for a typical instance so the sums stay well conditioned.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router/sla.h"

/* x_scaled = x * scale: batch / 64, ctx / 65536, prefill / 256. */
static const double scale[SLA_NFEAT] = {1.0, 1.0 / 64, 1.0 / 65536, 1.0 / 256};

#define RIDGE 1e-3 /* the permanent ridge, in reports */

static void features(double batch, double ctx, double prefill, double x[SLA_NFEAT]) {
    x[0] = scale[0];
    x[1] = batch * scale[1];
    x[2] = ctx * scale[2];
    x[3] = prefill * scale[3];
}

/* Solves M y = v for the k x k system in place (Gaussian elimination, partial pivoting).
 * Returns 0, or -1 when singular. */
static int solve(double m[SLA_NFEAT][SLA_NFEAT], double v[SLA_NFEAT], int k) {
    for (int c = 0; c < k; c++) {
        int p = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(m[r][c]) > fabs(m[p][c])) p = r;
        if (fabs(m[p][c]) < 1e-300) return -1;
        for (int j = 0; j < k; j++) {
            double t = m[c][j];
            m[c][j] = m[p][j];
            m[p][j] = t;
        }
        double t = v[c];
        v[c] = v[p];
        v[p] = t;
        for (int r = c + 1; r < k; r++) {
            double f = m[r][c] / m[c][c];
            for (int j = c; j < k; j++)
                m[r][j] -= f * m[c][j];
            v[r] -= f * v[c];
        }
    }
    for (int c = k - 1; c >= 0; c--) {
        for (int j = c + 1; j < k; j++)
            v[c] -= m[c][j] * v[j];
        v[c] /= m[c][c];
    }
    return 0;
}

/* The unconstrained optimum on the support `mask` of (M, v); returns its objective -v.y
 * (lower is better), or +inf when it is infeasible (a negative coefficient) or singular. */
static double solve_support(const double M[SLA_NFEAT][SLA_NFEAT], const double v[SLA_NFEAT],
                            unsigned mask, double out[SLA_NFEAT]) {
    int idx[SLA_NFEAT], k = 0;
    for (int i = 0; i < SLA_NFEAT; i++)
        if (mask & (1u << i)) idx[k++] = i;
    double m[SLA_NFEAT][SLA_NFEAT], y[SLA_NFEAT];
    for (int r = 0; r < k; r++) {
        y[r] = v[idx[r]];
        for (int c = 0; c < k; c++)
            m[r][c] = M[idx[r]][idx[c]];
    }
    if (solve(m, y, k)) return INFINITY;
    double obj = 0;
    memset(out, 0, SLA_NFEAT * sizeof *out);
    for (int r = 0; r < k; r++) {
        if (y[r] < 0) return INFINITY;
        out[idx[r]] = y[r];
        obj -= v[idx[r]] * y[r];
    }
    return obj;
}

static void refit(sla_model *m) {
    double M[SLA_NFEAT][SLA_NFEAT], v[SLA_NFEAT];
    for (int i = 0; i < SLA_NFEAT; i++) {
        for (int j = 0; j < SLA_NFEAT; j++)
            M[i][j] = m->a[i][j] + (i == j ? m->floor_w : 0);
        v[i] = m->b[i] + m->floor_w * m->prior[i];
    }
    double best = 0, cand[SLA_NFEAT]; /* the empty support: all zero, objective 0 */
    memset(m->theta, 0, sizeof m->theta);
    for (unsigned mask = 1; mask < (1u << SLA_NFEAT); mask++) {
        double obj = solve_support(M, v, mask, cand);
        if (obj < best) {
            best = obj;
            memcpy(m->theta, cand, sizeof cand);
        }
    }
}

void sla_model_init(sla_model *m, const double prior_ns[SLA_NFEAT], double weight, double forget,
                    double resid_quantile) {
    memset(m, 0, sizeof *m);
    m->forget = forget;
    m->resid_q = resid_quantile;
    m->floor_w = RIDGE;
    for (int i = 0; i < SLA_NFEAT; i++) {
        m->prior[i] = prior_ns[i] / scale[i];
        m->a[i][i] = weight;
        m->b[i] = weight * m->prior[i];
    }
    refit(m);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void push_residual(sla_model *m, double r) {
    m->resid[m->resid_pos] = (float)fabs(r);
    m->resid_pos = (m->resid_pos + 1) % SLA_RESID_N;
    if (m->resid_n < SLA_RESID_N) m->resid_n++;
    float sorted[SLA_RESID_N];
    memcpy(sorted, m->resid, (size_t)m->resid_n * sizeof *sorted);
    qsort(sorted, (size_t)m->resid_n, sizeof *sorted, cmp_f);
    int k = (int)ceil(m->resid_q / 100.0 * m->resid_n) - 1;
    k = k < 0 ? 0 : k >= m->resid_n ? m->resid_n - 1 : k;
    m->margin_ns = m->resid_q > 0 ? sorted[k] : 0;
}

void sla_model_update(sla_model *m, double batch, double ctx, double prefill, double step_ns) {
    if (!isfinite(step_ns) || !isfinite(batch) || !isfinite(ctx) || !isfinite(prefill)) return;
    push_residual(m, step_ns - sla_model_predict(m, batch, ctx, prefill));
    double x[SLA_NFEAT];
    features(batch, ctx, prefill, x);
    for (int i = 0; i < SLA_NFEAT; i++) {
        for (int j = 0; j < SLA_NFEAT; j++)
            m->a[i][j] = m->forget * m->a[i][j] + x[i] * x[j];
        m->b[i] = m->forget * m->b[i] + x[i] * step_ns;
    }
    m->n++;
    refit(m);
}

double sla_model_predict(const sla_model *m, double batch, double ctx, double prefill) {
    double x[SLA_NFEAT], y = 0;
    features(batch, ctx, prefill, x);
    for (int i = 0; i < SLA_NFEAT; i++)
        y += m->theta[i] * x[i];
    return y;
}

double sla_model_margin_ns(const sla_model *m) {
    return m->margin_ns;
}

void sla_model_coef(const sla_model *m, double out[SLA_NFEAT]) {
    for (int i = 0; i < SLA_NFEAT; i++)
        out[i] = m->theta[i] * scale[i];
}
