/*
 * layers_conv.c - conv1x1 and dilated conv3x3 over HWC maps (see layers.h).
 *
 * Both are matrix products. conv1x1 is one GEMM over all cells. conv3x3 uses
 * that in a row-major HWC map a vertical shift by whole rows keeps cells
 * contiguous: only the three horizontal taps are unfolded, into
 * col[cell][kx][c_in] (zero where x + (kx-1) dil leaves the map), and each
 * kernel row ky is then one GEMM of the rows it can reach, shifted by
 * (ky-1) dil rows, against that row's weights [c_out][kx][c_in]. This moves
 * a third of the data a full im2col would and keeps every GEMM at
 * K = 3 c_in. The backward pass mirrors it: dW_ky += dY^T col on the same
 * rows, dcol (accumulated over ky) = dY W_ky, folded back onto the cells by
 * a gather (each input cell sums its own taps: no zeroing, no atomics).
 *
 * The unfolding and folding run on one thread: they sit between GEMMs whose
 * OpenBLAS threads still spin for a while after each call, and an OpenMP
 * team competing with them for two cores was several times slower.
 */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "core/common.h"
#include "kernels/layers.h"
#include "kernels/layers_internal.h"

#define CONV3_TAPS 9

void conv1x1_forward(float *y, const float *x, const float *w, const float *b, long n,
                     int c_in, int c_out)
{
    float beta = 0.0f;
    SN_ASSERT(n >= 0 && n <= INT_MAX);

    /* Broadcast the bias into y, then accumulate the product onto it. */
    if (b) {
        layers_rows_fill(y, b, n, c_out);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, c_out, c_in, 1.0f, x,
                c_in, w, c_in, beta, y, c_out);
}

void conv1x1_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, long n, int c_in, int c_out)
{
    /* dW += dY^T X; db += column sums of dY. */
    SN_ASSERT(n >= 0 && n <= INT_MAX);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c_out, c_in, (int)n, 1.0f, dy,
                c_out, x, c_in, 1.0f, dw, c_in);
    if (db) layers_colsum_add(db, dy, n, c_out);

    /* dX = dY W. */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, c_in, c_out, 1.0f,
                    dy, c_out, w, c_in, 0.0f, dx, c_in);
}

size_t conv3x3_work_floats(const struct conv3x3_shape *s)
{
    size_t k3 = 3 * (size_t)s->c_in, cells = (size_t)s->h * s->w;
    /* Columns and their gradient for one map, weights and their gradient. */
    return 2 * cells * k3 + 2 * (size_t)s->c_out * CONV3_TAPS * s->c_in;
}

static void conv3x3_check(const struct conv3x3_shape *s)
{
    SN_ASSERT(s->n >= 1 && s->h >= 1 && s->w >= 1);
    SN_ASSERT(s->c_in >= 1 && s->c_out >= 1 && s->dil >= 1);
}

/* [c_out][c_in][ky][kx] -> [ky][c_out][kx][c_in]: one matrix per kernel row,
 * matching the columns. */
static void conv3x3_pack_weight(float *wr, const float *w, int c_in, int c_out)
{
    for (int o = 0; o < c_out; o++)
        for (int k = 0; k < c_in; k++)
            for (int t = 0; t < CONV3_TAPS; t++)
                wr[(((size_t)(t / 3) * c_out + o) * 3 + t % 3) * c_in + k] =
                    w[((size_t)o * c_in + k) * CONV3_TAPS + t];
}

/* dw[c_out][c_in][ky][kx] += dwr[ky][c_out][kx][c_in]. */
static void conv3x3_unpack_grad(float *dw, const float *dwr, int c_in, int c_out)
{
    for (int o = 0; o < c_out; o++)
        for (int k = 0; k < c_in; k++)
            for (int t = 0; t < CONV3_TAPS; t++)
                dw[((size_t)o * c_in + k) * CONV3_TAPS + t] +=
                    dwr[(((size_t)(t / 3) * c_out + o) * 3 + t % 3) * c_in + k];
}

/* Unfold the horizontal taps of one map: col[y][x][kx] = x[y][x + (kx-1) dil]. */
static void conv3x3_unfold(float *col, const float *x, const struct conv3x3_shape *s)
{
    const int h = s->h, w = s->w, c = s->c_in, r = s->dil;
    float *dst = col;

    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++)
            for (int kx = 0; kx < 3; kx++, dst += c) {
                int sx = xx + (kx - 1) * r;
                if (sx < 0 || sx >= w)
                    memset(dst, 0, sizeof(float) * c);
                else
                    memcpy(dst, x + ((size_t)y * w + sx) * c, sizeof(float) * c);
            }
}

/* Fold the column gradient of one map back: an input cell (y, sx) was read
 * by the column of (y, sx - (kx-1) dil) through slot kx (written, not added). */
static void conv3x3_fold(float *dx, const float *dcol, const struct conv3x3_shape *s)
{
    const int h = s->h, w = s->w, c = s->c_in, r = s->dil;

    for (int y = 0; y < h; y++)
        for (int sx = 0; sx < w; sx++) {
            float *dst = dx + ((size_t)y * w + sx) * c;
            memcpy(dst, dcol + (((size_t)y * w + sx) * 3 + 1) * c, sizeof(float) * c);
            for (int kx = 0; kx < 3; kx += 2) {
                int ox = sx - (kx - 1) * r;
                if (ox < 0 || ox >= w) continue;
                const float *src = dcol + (((size_t)y * w + ox) * 3 + kx) * c;
                for (int k = 0; k < c; k++)
                    dst[k] += src[k];
            }
        }
}

/* Output rows [*y0, *y1) that kernel row ky can reach; their inputs start
 * (ky-1) dil rows lower. Returns 0 when the shift leaves the map. */
static int conv3x3_rows(const struct conv3x3_shape *s, int ky, int *y0, int *y1)
{
    int dy = (ky - 1) * s->dil;
    *y0 = SN_MAX(0, -dy);
    *y1 = SN_MIN(s->h, s->h - dy);
    return *y0 < *y1;
}

/* One map: Y (+)= sum over kernel rows of col[rows shifted] W_ky^T. The
 * middle row reaches every cell and goes first, so beta 0 can initialise
 * Y when there is no bias. */
static void conv3x3_forward_map(float *y, const float *col, const float *wr, float beta,
                                const struct conv3x3_shape *s)
{
    const int k3 = 3 * s->c_in, order[3] = {1, 0, 2};

    for (int i = 0; i < 3; i++) {
        int ky = order[i], y0, y1;
        if (!conv3x3_rows(s, ky, &y0, &y1)) continue;
        const float *a = col + (size_t)(y0 + (ky - 1) * s->dil) * s->w * k3;
        const float *wk = wr + (size_t)ky * s->c_out * k3;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (y1 - y0) * s->w, s->c_out,
                    k3, 1.0f, a, k3, wk, k3, i == 0 ? beta : 1.0f,
                    y + (size_t)y0 * s->w * s->c_out, s->c_out);
    }
}

void conv3x3_forward(float *y, const float *x, const float *w, const float *b,
                     const struct conv3x3_shape *s, float *work)
{
    conv3x3_check(s);
    const size_t cells = (size_t)s->h * s->w;
    float *col = work, *wr = work + 2 * cells * 3 * s->c_in;

    conv3x3_pack_weight(wr, w, s->c_in, s->c_out);
    if (b) layers_rows_fill(y, b, (long)s->n * (long)cells, s->c_out);
    for (int m = 0; m < s->n; m++) {
        conv3x3_unfold(col, x + m * cells * s->c_in, s);
        conv3x3_forward_map(y + m * cells * s->c_out, col, wr, b ? 1.0f : 0.0f, s);
    }
}

/* One map's weight gradient (dW_ky += dY_rows^T col[rows shifted]) and,
 * when asked, its column gradient dcol = sum over ky of dY_rows W_ky
 * (middle row first with beta 0, as it covers every cell). */
static void conv3x3_backward_map(float *dcol, float *dwr, const float *dy,
                                 const float *col, const float *wr,
                                 const struct conv3x3_shape *s)
{
    const int k3 = 3 * s->c_in, order[3] = {1, 0, 2};

    for (int i = 0; i < 3; i++) {
        int ky = order[i], y0, y1;
        if (!conv3x3_rows(s, ky, &y0, &y1)) continue;
        size_t shift = (size_t)(y0 + (ky - 1) * s->dil) * s->w * k3;
        const float *dyr = dy + (size_t)y0 * s->w * s->c_out;
        const int rows = (y1 - y0) * s->w;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->c_out, k3, rows, 1.0f,
                    dyr, s->c_out, col + shift, k3, 1.0f,
                    dwr + (size_t)ky * s->c_out * k3, k3);
        if (dcol)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, k3, s->c_out,
                        1.0f, dyr, s->c_out, wr + (size_t)ky * s->c_out * k3, k3,
                        i == 0 ? 0.0f : 1.0f, dcol + shift, k3);
    }
}

void conv3x3_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, const struct conv3x3_shape *s, float *work)
{
    conv3x3_check(s);
    const size_t cells = (size_t)s->h * s->w, k3 = 3 * (size_t)s->c_in;
    float *col = work, *dcol = work + cells * k3, *wr = dcol + cells * k3;
    float *dwr = wr + (size_t)s->c_out * 3 * k3;

    conv3x3_pack_weight(wr, w, s->c_in, s->c_out);
    memset(dwr, 0, sizeof(float) * (size_t)s->c_out * 3 * k3);
    for (int m = 0; m < s->n; m++) {
        conv3x3_unfold(col, x + m * cells * s->c_in, s);
        conv3x3_backward_map(dx ? dcol : NULL, dwr, dy + m * cells * s->c_out, col, wr,
                             s);
        if (dx) conv3x3_fold(dx + m * cells * s->c_in, dcol, s);
    }
    conv3x3_unpack_grad(dw, dwr, s->c_in, s->c_out);
    if (db) layers_colsum_add(db, dy, (long)s->n * (long)cells, s->c_out);
}
