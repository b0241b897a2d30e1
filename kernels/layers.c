/*
 * layers.c - element-wise layers, dropout, bilinear resampling, cell packing
 * and scan orders (see layers.h), and the helpers the other layers' files
 * share.
 */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "kernels/layers.h"
#include "kernels/layers_internal.h"

void layers_rows_fill(float *y, const float *v, long n, int c)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        memcpy(y + i * c, v, sizeof(float) * c);
}

void layers_colsum_add(float *acc, const float *a, long n, int c)
{
    int nblk = (c + LAYERS_COL_BLOCK - 1) / LAYERS_COL_BLOCK;

#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int k0 = blk * LAYERS_COL_BLOCK, nk = SN_MIN(LAYERS_COL_BLOCK, c - k0);
        double s[LAYERS_COL_BLOCK] = {0};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < nk; k++)
                s[k] += a[i * c + k0 + k];
        for (int k = 0; k < nk; k++)
            acc[k0 + k] += (float)s[k];
    }
}

/* ------------------------------------------------------------------------ */
/* Activations. */

void relu_forward(float *y, const float *x, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(float *dx, const float *dy, const float *y, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

/* Logistic function without overflow for either sign. */
static inline float sigmoidf(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void sigmoid_forward(float *y, const float *x, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = sigmoidf(x[i]);
}

void sigmoid_backward(float *dx, const float *dy, const float *y, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void silu_forward(float *y, const float *x, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = x[i] * sigmoidf(x[i]);
}

void silu_backward(float *dx, const float *dy, const float *x, long n)
{
    /* d/dx x s(x) = s (1 + x (1 - s)). */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* ------------------------------------------------------------------------ */
/* Dropout. */

void dropout_forward(float *y, uint8_t *mask, const float *x, long n, float p, int train,
                     struct rng_state *rng)
{
    SN_ASSERT(p >= 0.0f && p < 1.0f);

    /* Eval mode (or no dropout): the identity, with an all-keep mask. */
    if (!train || p == 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * (size_t)n);
        if (mask) memset(mask, 1, (size_t)n);
        return;
    }

    /* One uniform draw per element, in index order, so a seed fixes it. */
    float scale = 1.0f / (1.0f - p);
    for (long i = 0; i < n; i++) {
        mask[i] = rng_uniform(rng) >= p;
        y[i] = mask[i] ? x[i] * scale : 0.0f;
    }
}

void dropout_backward(float *dx, const float *dy, const uint8_t *mask, long n, float p)
{
    SN_ASSERT(p >= 0.0f && p < 1.0f);
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

/* ------------------------------------------------------------------------ */
/* Bilinear resampling with PyTorch's source coordinates, reproduced to the
 * bit: the scale is a float ratio, the source coordinate is formed in double
 * (its CPU accumulation type), l1 is that coordinate's fraction rounded to
 * float and l0 = 1 - l1 in float. */

struct lerp {
    int i0, i1;
    float l0, l1;
};

static float upsample_scale(int in, int out, enum upsample_align align)
{
    if (align == UPSAMPLE_ALIGN_CORNERS)
        return out > 1 ? (float)(in - 1) / (out - 1) : 0.0f;
    return (float)in / (float)out;
}

static struct lerp upsample_coord(int dst, float scale, int in, enum upsample_align align)
{
    struct lerp L;
    double src;
    if (align == UPSAMPLE_ALIGN_CORNERS) {
        src = (double)scale * dst;
    } else {
        src = (double)scale * (dst + 0.5) - 0.5;
        if (src < 0.0) src = 0.0;
    }
    L.i0 = (int)src;
    L.i1 = L.i0 + (L.i0 < in - 1 ? 1 : 0);
    L.l1 = (float)(src - L.i0);
    L.l0 = 1.0f - L.l1;
    return L;
}

void upsample_bilinear_forward(float *out, const float *in, int n, int h, int w, int oh,
                               int ow, int c, enum upsample_align align)
{
    float sy = upsample_scale(h, oh, align), sx = upsample_scale(w, ow, align);

#pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)n * oh; row++) {
        int m = (int)(row / oh), Y = (int)(row % oh);
        struct lerp ly = upsample_coord(Y, sy, h, align);
        const float *r0 = in + ((size_t)m * h + ly.i0) * w * c;
        const float *r1 = in + ((size_t)m * h + ly.i1) * w * c;
        float *o = out + (size_t)row * ow * c;
        for (int X = 0; X < ow; X++) {
            struct lerp lx = upsample_coord(X, sx, w, align);
            for (int k = 0; k < c; k++) {
                float a = lx.l0 * r0[lx.i0 * c + k] + lx.l1 * r0[lx.i1 * c + k];
                float b = lx.l0 * r1[lx.i0 * c + k] + lx.l1 * r1[lx.i1 * c + k];
                o[X * c + k] = ly.l0 * a + ly.l1 * b;
            }
        }
    }
}

/* The adjoint of the forward pass for one map: scatter each output's
 * gradient onto its four source cells. */
static void upsample_backward_map(float *din, const float *dout, int h, int w, int oh,
                                  int ow, int c, float sy, float sx,
                                  enum upsample_align align)
{
    memset(din, 0, sizeof(float) * (size_t)h * w * c);
    for (int Y = 0; Y < oh; Y++) {
        struct lerp ly = upsample_coord(Y, sy, h, align);
        float *r0 = din + (size_t)ly.i0 * w * c, *r1 = din + (size_t)ly.i1 * w * c;
        const float *g = dout + (size_t)Y * ow * c;
        for (int X = 0; X < ow; X++) {
            struct lerp lx = upsample_coord(X, sx, w, align);
            for (int k = 0; k < c; k++) {
                float gy0 = ly.l0 * g[X * c + k], gy1 = ly.l1 * g[X * c + k];
                r0[lx.i0 * c + k] += lx.l0 * gy0;
                r0[lx.i1 * c + k] += lx.l1 * gy0;
                r1[lx.i0 * c + k] += lx.l0 * gy1;
                r1[lx.i1 * c + k] += lx.l1 * gy1;
            }
        }
    }
}

void upsample_bilinear_backward(float *din, const float *dout, int n, int h, int w,
                                int oh, int ow, int c, enum upsample_align align)
{
    float sy = upsample_scale(h, oh, align), sx = upsample_scale(w, ow, align);

    /* Maps are independent; each is summed in a fixed order. */
#pragma omp parallel for schedule(static)
    for (int m = 0; m < n; m++)
        upsample_backward_map(din + (size_t)m * h * w * c, dout + (size_t)m * oh * ow * c,
                              h, w, oh, ow, c, sy, sx, align);
}

/* ------------------------------------------------------------------------ */
/* Cell packing and scan orders. */

void cells_gather(float *dst, const float *src, const int *idx, int k, int c)
{
    for (int i = 0; i < k; i++)
        memcpy(dst + (size_t)i * c, src + (size_t)idx[i] * c, sizeof(float) * c);
}

void cells_scatter(float *dst, const float *src, const int *idx, int k, int c)
{
    for (int i = 0; i < k; i++)
        memcpy(dst + (size_t)idx[i] * c, src + (size_t)i * c, sizeof(float) * c);
}

void cells_scatter_add(float *dst, const float *src, const int *idx, int k, int c)
{
    for (int i = 0; i < k; i++) {
        float *d = dst + (size_t)idx[i] * c;
        const float *s = src + (size_t)i * c;
        for (int j = 0; j < c; j++)
            d[j] += s[j];
    }
}

void scan_perm(int *perm, int h, int w, enum scan_order order)
{
    int n = h * w;
    SN_ASSERT(order >= SCAN_ROW && order < SCAN_ORDERS);

    /* Forward visit: row-major is the identity; column-major walks columns. */
    for (int t = 0; t < n; t++)
        perm[t] = (order == SCAN_ROW || order == SCAN_ROW_REV) ? t : (t % h) * w + t / h;

    /* The reversed scans visit the same cells back to front. */
    if (order == SCAN_ROW_REV || order == SCAN_COL_REV)
        for (int i = 0, j = n - 1; i < j; i++, j--) {
            int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
}

void scan_perm_inverse(int *inv, const int *perm, int n)
{
    for (int t = 0; t < n; t++)
        inv[perm[t]] = t;
}

/* ------------------------------------------------------------------------ */
/* Channel mean. */

void channel_mean_forward(float *out, const float *x, long n, int c)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < c; k++)
            s += x[i * c + k];
        out[i] = (float)(s / c);
    }
}

void channel_mean_backward(float *dx, const float *dout, long n, int c)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = dout[i] / (float)c;
        for (int k = 0; k < c; k++)
            dx[i * c + k] = g;
    }
}
