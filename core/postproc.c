/*
 * postproc.c - ensemble, Gaussian smoothing and image score (see postproc.h).
 */
#include "postproc.h"

#include <math.h>

#include "common.h"

void postproc_ensemble(const float *const *maps, int n_maps, long n_pixels, float *out)
{
    SN_ASSERT(n_maps > 0);
    /* Sum in head order, then divide, so the result does not depend on how
     * the heads were scheduled. */
    for (long p = 0; p < n_pixels; p++) {
        float s = 0.0f;
        for (int k = 0; k < n_maps; k++)
            s += maps[k][p];
        out[p] = s / (float)n_maps;
    }
}

int postproc_gaussian_radius(double sigma)
{
    return (int)(POSTPROC_TRUNCATE * sigma + 0.5);
}

long postproc_gaussian_scratch(int H, int W)
{
    return (long)H * W; /* the intermediate map after the first axis */
}

/* scipy's "reflect" extension (half-sample symmetric, period 2n): index i of
 * an infinite line maps to 0..n-1, however far outside the line it lies. */
static int reflect_index(long i, int n)
{
    long period = 2L * n;
    long j = i % period;
    if (j < 0) j += period;
    return (int)(j < n ? j : period - 1 - j);
}

/* The normalised kernel weights w[0..r] (the kernel is symmetric). */
static void gaussian_weights(double sigma, int r, double *w)
{
    double sum = 0.0;
    for (int x = -r; x <= r; x++)
        sum += exp(-0.5 / (sigma * sigma) * x * x);
    for (int x = 0; x <= r; x++)
        w[x] = exp(-0.5 / (sigma * sigma) * x * x) / sum;
}

/* Correlate one padded line with the symmetric kernel: centre tap first, then
 * the pairs of mirrored taps, in scipy's order. */
static void smooth_line(const double *line, int n, int r, const double *w, double *out)
{
    for (int i = 0; i < n; i++) {
        const double *c = line + r + i;
        double acc = c[0] * w[0];
        for (int j = r; j >= 1; j--)
            acc += (c[-j] + c[j]) * w[j];
        out[i] = acc;
    }
}

/* Fill line[0 .. n+2r) with src sampled at stride, reflect-extended by r. */
static void pad_line(const double *src, long stride, int n, int r, double *line)
{
    for (long i = -r; i < n + r; i++)
        line[i + r] = src[reflect_index(i, n) * stride];
}

void postproc_gaussian(float *map, int H, int W, double sigma, double *scratch)
{
    if (sigma <= 0 || H <= 0 || W <= 0) return;
    int r = postproc_gaussian_radius(sigma);
    int len = SN_MAX(H, W);
    double *own = NULL;
    double *w = sn_malloc(sizeof(double) * (size_t)(r + 1));
    double *line = sn_malloc(sizeof(double) * (size_t)(len + 2 * r));
    double *res = sn_malloc(sizeof(double) * (size_t)len);
    double *tmp = scratch;
    if (!tmp) tmp = own = sn_malloc(sizeof(double) * (size_t)H * W);
    gaussian_weights(sigma, r, w);

    /* Axis 0 (down the columns) first, as scipy does; the intermediate is
     * rounded to float32 like scipy's float32 output buffer. */
    for (long p = 0; p < (long)H * W; p++)
        tmp[p] = map[p];
    for (int x = 0; x < W; x++) {
        pad_line(tmp + x, W, H, r, line);
        smooth_line(line, H, r, w, res);
        for (int y = 0; y < H; y++)
            tmp[(long)y * W + x] = (float)res[y];
    }

    /* Then axis 1 (along the rows), straight into the map. */
    for (int y = 0; y < H; y++) {
        pad_line(tmp + (long)y * W, 1, W, r, line);
        smooth_line(line, W, r, w, res);
        for (int x = 0; x < W; x++)
            map[(long)y * W + x] = (float)res[x];
    }
    sn_free(own);
    sn_free(res);
    sn_free(line);
    sn_free(w);
}

float postproc_image_score(const float *map, int H, int W, int pool, int stride)
{
    SN_ASSERT(H > 0 && W > 0 && pool > 0 && stride > 0);
    int kh = SN_MIN(pool, H), kw = SN_MIN(pool, W);
    int oh = (H - kh) / stride + 1, ow = (W - kw) / stride + 1;
    double *rows = sn_malloc(sizeof(double) * (size_t)H * ow);

    /* Horizontal window sums at the output columns. */
    for (int y = 0; y < H; y++)
        for (int ox = 0; ox < ow; ox++) {
            const float *p = map + (long)y * W + (long)ox * stride;
            double s = 0.0;
            for (int k = 0; k < kw; k++)
                s += p[k];
            rows[(long)y * ow + ox] = s;
        }

    /* Vertical sums of those give the window means; keep the largest. */
    double best = -INFINITY;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            double s = 0.0;
            for (int k = 0; k < kh; k++)
                s += rows[(long)(oy * stride + k) * ow + ox];
            if (s > best) best = s;
        }
    sn_free(rows);
    return (float)(best / ((double)kh * kw));
}

float postproc_predict(const float *const *maps, int n_maps, int H, int W, double sigma,
                       int pool, int stride, float *out)
{
    postproc_ensemble(maps, n_maps, (long)H * W, out);
    postproc_gaussian(out, H, W, sigma, NULL);
    return postproc_image_score(out, H, W, pool, stride);
}
