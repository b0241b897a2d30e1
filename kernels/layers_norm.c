/*
 * layers_norm.c - BatchNorm2d over HWC cells, RMSNorm and LayerNorm over the
 * last dim (see layers.h).
 *
 * Statistics are summed in double: BatchNorm sums 76,832 cells per channel at
 * the default sizes, where a float running sum would lose digits. Per-channel
 * sums split channel blocks over threads and visit rows in index order, so
 * the result does not depend on the thread count.
 */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "kernels/layers.h"
#include "kernels/layers_internal.h"

#define BLK LAYERS_COL_BLOCK

/* Batch mean and biased variance of each channel (two passes). */
static void batchnorm_stats(double *mean, double *var, const float *x, long n, int c)
{
    int nblk = (c + BLK - 1) / BLK;

#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int k0 = blk * BLK, nk = SN_MIN(BLK, c - k0);
        double s[BLK] = {0}, q[BLK] = {0};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++)
                s[k] += x[i * c + k0 + k];
        for (int k = 0; k < nk; k++)
            mean[k0 + k] = s[k] / (double)n;
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++) {
                double d = x[i * c + k0 + k] - mean[k0 + k];
                q[k] += d * d;
            }
        for (int k = 0; k < nk; k++)
            var[k0 + k] = q[k] / (double)n;
    }
}

/* y = (x - mean) * rstd * gamma + beta, per channel. */
static void batchnorm_apply(float *y, const float *x, const float *mean,
                            const float *rstd, const float *gamma, const float *beta,
                            long n, int c)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            y[i * c + k] = (x[i * c + k] - mean[k]) * rstd[k] * gamma[k] + beta[k];
}

void batchnorm_forward_train(float *y, float *mean, float *rstd, const float *x,
                             const float *gamma, const float *beta, float *run_mean,
                             float *run_var, long n, int c, float momentum, float eps)
{
    SN_ASSERT(n >= 2 && c >= 1);
    double *dm = sn_malloc(sizeof(double) * 2 * (size_t)c), *dv = dm + c;

    /* Batch statistics; the running ones take the unbiased variance. */
    batchnorm_stats(dm, dv, x, n, c);
    for (int k = 0; k < c; k++) {
        mean[k] = (float)dm[k];
        rstd[k] = (float)(1.0 / sqrt(dv[k] + eps));
        if (!run_mean) continue;
        run_mean[k] = (1.0f - momentum) * run_mean[k] + momentum * (float)dm[k];
        run_var[k] = (1.0f - momentum) * run_var[k] +
                     momentum * (float)(dv[k] * (double)n / (double)(n - 1));
    }
    sn_free(dm);

    batchnorm_apply(y, x, mean, rstd, gamma, beta, n, c);
}

void batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                            const float *beta, const float *run_mean,
                            const float *run_var, long n, int c, float eps)
{
    float *rstd = sn_malloc(sizeof(float) * (size_t)c);
    for (int k = 0; k < c; k++)
        rstd[k] = (float)(1.0 / sqrt((double)run_var[k] + eps));
    batchnorm_apply(y, x, run_mean, rstd, gamma, beta, n, c);
    sn_free(rstd);
}

/* Per channel: sum of dy and sum of dy * xhat. */
static void batchnorm_grad_sums(double *sdy, double *sdyx, const float *dy,
                                const float *x, const float *mean, const float *rstd,
                                long n, int c)
{
    int nblk = (c + BLK - 1) / BLK;

#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int k0 = blk * BLK, nk = SN_MIN(BLK, c - k0);
        double s[BLK] = {0}, q[BLK] = {0};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++) {
                long j = i * c + k0 + k;
                s[k] += dy[j];
                q[k] += (double)dy[j] * ((x[j] - mean[k0 + k]) * rstd[k0 + k]);
            }
        for (int k = 0; k < nk; k++) {
            sdy[k0 + k] = s[k];
            sdyx[k0 + k] = q[k];
        }
    }
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, long n, int c)
{
    double *sdy = sn_malloc(sizeof(double) * 2 * (size_t)c), *sdyx = sdy + c;
    float *a = sn_malloc(sizeof(float) * 2 * (size_t)c), *bq = a + c;

    /* Parameter gradients from the per-channel sums. */
    batchnorm_grad_sums(sdy, sdyx, dy, x, mean, rstd, n, c);
    for (int k = 0; k < c; k++) {
        dgamma[k] += (float)sdyx[k];
        dbeta[k] += (float)sdy[k];
        a[k] = (float)(sdy[k] / (double)n);
        bq[k] = (float)(sdyx[k] / (double)n);
    }

    /* Batch statistics depend on every cell:
     * dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)). */
    if (dx) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++)
            for (int k = 0; k < c; k++) {
                long j = i * c + k;
                float xhat = (x[j] - mean[k]) * rstd[k];
                dx[j] = gamma[k] * rstd[k] * (dy[j] - a[k] - xhat * bq[k]);
            }
    }
    sn_free(sdy);
    sn_free(a);
}

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, long n, int c,
                     float eps)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const float *xr = x + i * c;
        double ss = 0;
        for (int k = 0; k < c; k++)
            ss += (double)xr[k] * xr[k];
        float r = (float)(1.0 / sqrt(ss / c + eps));
        rstd[i] = r;
        for (int k = 0; k < c; k++)
            y[i * c + k] = xr[k] * r * w[k];
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                      const float *rstd, const float *w, long n, int c)
{
    /* dw += sum over rows of dy * x * rstd (channel blocks, row order). */
    int nblk = (c + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int k0 = blk * BLK, nk = SN_MIN(BLK, c - k0);
        double s[BLK] = {0};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++)
                s[k] += (double)dy[i * c + k0 + k] * x[i * c + k0 + k] * rstd[i];
        for (int k = 0; k < nk; k++)
            dw[k0 + k] += (float)s[k];
    }
    if (!dx) return;

        /* dx = rstd (g - x rstd^2 mean(g x)), g = dy w. */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const float *xr = x + i * c, *gr = dy + i * c;
        double gx = 0;
        for (int k = 0; k < c; k++)
            gx += (double)gr[k] * w[k] * xr[k];
        float r = rstd[i], coef = (float)(gx / c) * r * r;
        for (int k = 0; k < c; k++)
            dx[i * c + k] = r * (gr[k] * w[k] - xr[k] * coef);
    }
}

void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, long n, int c, float eps)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const float *xr = x + i * c;
        double s = 0, q = 0;
        for (int k = 0; k < c; k++)
            s += xr[k];
        double mu = s / c;
        for (int k = 0; k < c; k++)
            q += (xr[k] - mu) * (xr[k] - mu);
        float m = (float)mu, r = (float)(1.0 / sqrt(q / c + eps));
        mean[i] = m;
        rstd[i] = r;
        for (int k = 0; k < c; k++)
            y[i * c + k] = (xr[k] - m) * r * w[k] + b[k];
    }
}

/* dw += sum dy * xhat, db += sum dy over rows (channel blocks, row order). */
static void layernorm_param_grads(float *dw, float *db, const float *dy, const float *x,
                                  const float *mean, const float *rstd, long n, int c)
{
    int nblk = (c + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int k0 = blk * BLK, nk = SN_MIN(BLK, c - k0);
        double sw[BLK] = {0}, sb[BLK] = {0};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++) {
                long j = i * c + k0 + k;
                sw[k] += (double)dy[j] * ((x[j] - mean[i]) * rstd[i]);
                sb[k] += dy[j];
            }
        for (int k = 0; k < nk; k++) {
            dw[k0 + k] += (float)sw[k];
            if (db) db[k0 + k] += (float)sb[k];
        }
    }
}

void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *w, long n,
                        int c)
{
    layernorm_param_grads(dw, db, dy, x, mean, rstd, n, c);
    if (!dx) return;

        /* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w. */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const float *xr = x + i * c, *dr = dy + i * c;
        float m = mean[i], r = rstd[i];
        double sg = 0, sgx = 0;
        for (int k = 0; k < c; k++) {
            double g = (double)dr[k] * w[k];
            sg += g;
            sgx += g * ((xr[k] - m) * r);
        }
        float a = (float)(sg / c), bq = (float)(sgx / c);
        for (int k = 0; k < c; k++) {
            float xhat = (xr[k] - m) * r;
            dx[i * c + k] = r * (dr[k] * w[k] - a - xhat * bq);
        }
    }
}
