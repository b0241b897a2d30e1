#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"

/* Below this many rows per thread a product runs on one thread. */
#define OPS_GEMM_MIN_ROWS 32
/* Rows per OpenMP chunk for cheap per-row kernels. */
#define OPS_ROW_CHUNK 16
/* Query rows per attention task: the score block (rows x t) stays in L2. */
#ifndef OPS_ATTN_ROWS
#define OPS_ATTN_ROWS 96
#endif

/* exp(x) = 2^n e^r with r in [-ln2/2, ln2/2]; e^r by its Taylor polynomial
 * of degree 7 (truncation below 1e-8), 2^n through the exponent bits.
 * Inputs below -87 give 0 and above 88 are clamped (never reached by
 * softmax, whose arguments are <= 0). */
static inline float ops_exp_inline(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float t = fmaf(x, 1.44269504088896341f, magic);
    float n = t - magic;
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t ni = (int32_t)n;
    uint32_t bits = (uint32_t)(ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* erf: for |x| >= 1 by Abramowitz & Stegun 7.1.26, 1 - poly(s) exp(-x^2)
 * with s = 1/(1+p|x|) (absolute error below 1.5e-7); below 1, where that
 * form loses accuracy to cancellation, by its Taylor series
 * 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1)) up to n = 10 (truncation
 * below 2e-9). Both are computed and one selected, which keeps the loops
 * branch-free for the vectoriser. */
static inline float ops_erf_inline(float x)
{
    float ax = fabsf(x), x2 = x * x;
    float s = 1.0f / fmaf(0.3275911f, ax, 1.0f);
    float q = 1.061405429f;
    q = fmaf(q, s, -1.453152027f);
    q = fmaf(q, s, 1.421413741f);
    q = fmaf(q, s, -0.284496736f);
    q = fmaf(q, s, 0.254829592f);
    q *= s;
    float big = copysignf(1.0f - q * ops_exp_inline(-x2), x);

    float t = 1.0f / 76204800;
    t = fmaf(t, x2, -1.0f / 6894720);
    t = fmaf(t, x2, 1.0f / 685440);
    t = fmaf(t, x2, -1.0f / 75600);
    t = fmaf(t, x2, 1.0f / 9360);
    t = fmaf(t, x2, -1.0f / 1320);
    t = fmaf(t, x2, 1.0f / 216);
    t = fmaf(t, x2, -1.0f / 42);
    t = fmaf(t, x2, 1.0f / 10);
    t = fmaf(t, x2, -1.0f / 3);
    t = fmaf(t, x2, 1.0f);
    float small = 1.12837916709551257f * x * t;
    return ax < 1.0f ? small : big;
}

static inline float ops_gelu_inline(float x)
{
    return 0.5f * x * (1.0f + ops_erf_inline(x * 0.70710678118654752f));
}

float ops_expf(float x)
{
    return ops_exp_inline(x);
}

float ops_erff(float x)
{
    return ops_erf_inline(x);
}

float ops_gelu(float x)
{
    return ops_gelu_inline(x);
}

/* Threads share the rows of C; BLAS runs single-threaded inside, so that the
 * products and the other kernels use one pool of threads (OpenMP's) and
 * never wait on each other's spinning workers. */
void ops_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    int threads = omp_get_max_threads();
    if (threads == 1 || m < 2 * OPS_GEMM_MIN_ROWS || omp_in_parallel()) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int per = ((m + nt - 1) / nt + 15) / 16 * 16;
        int r0 = SN_MIN(m, id * per), rows = SN_MIN(m - r0, per);
        const float *ar = trans_a ? a + r0 : a + (size_t)r0 * lda;
        if (rows > 0)
            cblas_sgemm(CblasRowMajor, ta, tb, rows, n, k, alpha, ar, lda, b, ldb, beta,
                        c + (size_t)r0 * ldc, ldc);
    }
    openblas_set_num_threads(blas_threads);
}

void ops_linear(const float *x, int n, int in, const float *w, const float *bias, int out,
                float *y)
{
    ops_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (!bias) return;
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * out;
#pragma omp simd
        for (int j = 0; j < out; j++)
            yi[j] += bias[j];
    }
}

static void ops_layernorm_row(const float *x, int d, const float *w, const float *b,
                              float eps, float *y)
{
    /* Two passes (mean, then centred variance) for accuracy. */
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < d; j++)
        sum += x[j];
    float mean = sum / (float)d, var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < d; j++)
        var += (x[j] - mean) * (x[j] - mean);
    float inv = 1.0f / sqrtf(var / (float)d + eps);
#pragma omp simd
    for (int j = 0; j < d; j++)
        y[j] = (x[j] - mean) * inv * w[j] + b[j];
}

void ops_layernorm(const float *x, int n, int d, const float *w, const float *b,
                   float eps, float *y)
{
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++)
        ops_layernorm_row(x + (size_t)i * d, d, w, b, eps, y + (size_t)i * d);
}

void ops_bias_gelu(float *x, int n, int d, const float *bias)
{
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        if (bias) {
#pragma omp simd
            for (int j = 0; j < d; j++)
                xi[j] = ops_gelu_inline(xi[j] + bias[j]);
        } else {
#pragma omp simd
            for (int j = 0; j < d; j++)
                xi[j] = ops_gelu_inline(xi[j]);
        }
    }
}

void ops_swiglu(const float *ab, int n, int hid, const float *bias, float *h)
{
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++) {
        const float *a = ab + (size_t)i * 2 * hid, *b = a + hid;
        float *hi = h + (size_t)i * hid;
#pragma omp simd
        for (int j = 0; j < hid; j++) {
            float av = a[j] + (bias ? bias[j] : 0.0f);
            float bv = b[j] + (bias ? bias[hid + j] : 0.0f);
            hi[j] = av / (1.0f + ops_exp_inline(-av)) * bv;
        }
    }
}

void ops_residual_add(float *x, const float *y, int n, int d, const float *bias,
                      const float *gamma)
{
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        const float *yi = y + (size_t)i * d;
#pragma omp simd
        for (int j = 0; j < d; j++) {
            float v = yi[j] + (bias ? bias[j] : 0.0f);
            xi[j] += (gamma ? gamma[j] : 1.0f) * v;
        }
    }
}

static void ops_softmax_row(float *x, int d, float scale)
{
    float mx = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < d; j++)
        mx = x[j] > mx ? x[j] : mx; /* fmaxf is not vectorised */
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < d; j++) {
        x[j] = ops_exp_inline((x[j] - mx) * scale);
        sum += x[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < d; j++)
        x[j] *= inv;
}

void ops_softmax_rows(float *x, int n, int d, float scale)
{
    /* The maximum is taken before scaling; valid for scale > 0. */
    SN_ASSERT(scale > 0.0f);
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int i = 0; i < n; i++)
        ops_softmax_row(x + (size_t)i * d, d, scale);
}

long ops_attention_scratch(int t)
{
    return (long)OPS_ATTN_ROWS * t;
}

/* One task: rows [r0, r0 + rc) of head h of sequence s. */
static void ops_attention_task(const float *qkv, int t, int dim, int hd, int s, int h,
                               int r0, int rc, float *out, float *scores)
{
    const int ld = 3 * dim;
    const float *base = qkv + (size_t)s * t * ld;
    const float *q = base + (size_t)r0 * ld + h * hd;
    const float *k = base + dim + h * hd, *v = base + 2 * dim + h * hd;

    /* Scores q k^T, softmax with the 1/sqrt(hd) scale folded into exp. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rc, t, hd, 1.0f, q, ld, k, ld,
                0.0f, scores, t);
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < rc; i++)
        ops_softmax_row(scores + (size_t)i * t, t, scale);

    /* Weighted values into this head's columns of the output. */
    float *o = out + ((size_t)s * t + r0) * dim + h * hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rc, hd, t, 1.0f, scores, t, v,
                ld, 0.0f, o, dim);
}

void ops_attention(const float *qkv, int b, int t, int dim, int heads, float *out,
                   float *scratch)
{
    SN_ASSERT(dim % heads == 0);
    const int hd = dim / heads, chunks = (t + OPS_ATTN_ROWS - 1) / OPS_ATTN_ROWS;
    const int tasks = b * heads * chunks;

    /* Each thread runs its own small GEMMs: BLAS stays single-threaded here. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < tasks; task++) {
        int c = task % chunks, h = (task / chunks) % heads, s = task / (chunks * heads);
        int r0 = c * OPS_ATTN_ROWS, rc = SN_MIN(OPS_ATTN_ROWS, t - r0);
        float *sc = scratch + (size_t)omp_get_thread_num() * ops_attention_scratch(t);
        ops_attention_task(qkv, t, dim, hd, s, h, r0, rc, out, sc);
    }
    openblas_set_num_threads(blas_threads);
}

int ops_conv_out(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

void ops_im2col(const float *x, int c, int h, int w, int kh, int kw, int stride, int pad,
                int oh, int ow, float *col)
{
#pragma omp parallel for schedule(static)
    for (int row = 0; row < c * kh * kw; row++) {
        int ch = row / (kh * kw), ky = (row / kw) % kh, kx = row % kw;
        float *dst = col + (size_t)row * oh * ow;
        const float *src = x + (size_t)ch * h * w;
        for (int oy = 0; oy < oh; oy++) {
            int iy = oy * stride - pad + ky;
            float *d = dst + (size_t)oy * ow;
            if (iy < 0 || iy >= h) {
                memset(d, 0, sizeof(float) * (size_t)ow);
                continue;
            }
            for (int ox = 0; ox < ow; ox++) {
                int ix = ox * stride - pad + kx;
                d[ox] = (ix >= 0 && ix < w) ? src[(size_t)iy * w + ix] : 0.0f;
            }
        }
    }
}

void ops_conv2d(const float *x, int cin, int h, int w, const float *wt, const float *bias,
                int cout, int k, int stride, int pad, int relu, float *col, float *y)
{
    int oh = ops_conv_out(h, k, stride, pad), ow = ops_conv_out(w, k, stride, pad);
    int kk = cin * k * k, hw = oh * ow;

    /* Lower the convolution to one matrix product. */
    const float *b = x;
    if (!(k == 1 && stride == 1 && pad == 0)) {
        ops_im2col(x, cin, h, w, k, k, stride, pad, oh, ow, col);
        b = col;
    }
    ops_sgemm(0, 0, cout, hw, kk, 1.0f, wt, kk, b, hw, 0.0f, y, hw);

    /* Bias (the folded BatchNorm) and ReLU per output channel. */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < cout; o++) {
        float *yo = y + (size_t)o * hw, bo = bias ? bias[o] : 0.0f;
#pragma omp simd
        for (int i = 0; i < hw; i++) {
            float v = yo[i] + bo;
            yo[i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

void ops_maxpool3s2(const float *x, int c, int h, int w, float *y)
{
    int oh = ops_conv_out(h, 3, 2, 1), ow = ops_conv_out(w, 3, 2, 1);
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *src = x + (size_t)ch * h * w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float m = -INFINITY;
                for (int iy = 2 * oy - 1; iy <= 2 * oy + 1; iy++)
                    for (int ix = 2 * ox - 1; ix <= 2 * ox + 1; ix++)
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            m = fmaxf(m, src[(size_t)iy * w + ix]);
                y[((size_t)ch * oh + oy) * ow + ox] = m;
            }
    }
}

void ops_avgpool3s1(const float *x, int c, int h, int w, float *y)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *src = x + (size_t)ch * h * w;
        for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++) {
                float s = 0.0f;
                for (int iy = oy - 1; iy <= oy + 1; iy++)
                    for (int ix = ox - 1; ix <= ox + 1; ix++)
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            s += src[(size_t)iy * w + ix];
                y[((size_t)ch * h + oy) * w + ox] = s / 9.0f;
            }
    }
}

/* Source index and weight of linear interpolation (align_corners = false). */
static void ops_linear_coord(int dst, int in, int out, int *i0, int *i1, float *lam)
{
    float scale = (float)in / (float)out;
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    *i0 = (int)src;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    *lam = src - (float)*i0;
}

void ops_resize_bilinear_hwc(const float *x, int h, int w, int c, float *y, int oh,
                             int ow)
{
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < oh; oy++) {
        int y0, y1, x0, x1;
        float ly, lx;
        ops_linear_coord(oy, h, oh, &y0, &y1, &ly);
        for (int ox = 0; ox < ow; ox++) {
            ops_linear_coord(ox, w, ow, &x0, &x1, &lx);
            const float *a = x + ((size_t)y0 * w + x0) * c,
                        *b = x + ((size_t)y0 * w + x1) * c;
            const float *cc = x + ((size_t)y1 * w + x0) * c;
            const float *d = x + ((size_t)y1 * w + x1) * c;
            float *o = y + ((size_t)oy * ow + ox) * c;
            float w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx),
                  w11 = ly * lx;
#pragma omp simd
            for (int k = 0; k < c; k++)
                o[k] = w00 * a[k] + w01 * b[k] + w10 * cc[k] + w11 * d[k];
        }
    }
}

/* Keys's cubic convolution kernel with a = -0.75 at the 4 taps around t. */
static void ops_cubic_weights(double t, double wt[4])
{
    const double a = -0.75;
    double x1 = t + 1.0, x2 = 1.0 - t, x3 = 2.0 - t;
    wt[0] = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a;
    wt[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
    wt[2] = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1;
    wt[3] = ((a * x3 - 5 * a) * x3 + 8 * a) * x3 - 4 * a;
}

static void ops_cubic_coord(int dst, int in, double scale, int idx[4], double wt[4])
{
    double src = scale * (dst + 0.5) - 0.5;
    int i0 = (int)floor(src);
    ops_cubic_weights(src - i0, wt);
    for (int k = 0; k < 4; k++)
        idx[k] = SN_MIN(SN_MAX(i0 - 1 + k, 0), in - 1);
}

void ops_resize_bicubic_hwc(const float *x, int h, int w, int c, float *y, int oh, int ow,
                            double scale_h, double scale_w)
{
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < oh; oy++) {
        int iy[4], ix[4];
        double wy[4], wx[4];
        ops_cubic_coord(oy, h, scale_h, iy, wy);
        for (int ox = 0; ox < ow; ox++) {
            ops_cubic_coord(ox, w, scale_w, ix, wx);
            float *o = y + ((size_t)oy * ow + ox) * c;
            for (int k = 0; k < c; k++) {
                double s = 0;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        s += wy[a] * wx[b] * x[((size_t)iy[a] * w + ix[b]) * c + k];
                o[k] = (float)s;
            }
        }
    }
}

void ops_adaptive_pool_rows(const float *x, int n, int cin, int cout, float *y)
{
#pragma omp parallel for schedule(static, OPS_ROW_CHUNK)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * cin;
        float *yr = y + (size_t)r * cout;
        for (int i = 0; i < cout; i++) {
            int s = (int)((long)i * cin / cout);
            int e = (int)(((long)(i + 1) * cin + cout - 1) / cout);
            float acc = 0.0f;
            for (int j = s; j < e; j++)
                acc += xr[j];
            yr[i] = acc / (float)(e - s);
        }
    }
}

void ops_transpose(const float *x, int rows, int cols, float *y)
{
    const int blk = 32;
#pragma omp parallel for schedule(static)
    for (int r0 = 0; r0 < rows; r0 += blk)
        for (int c0 = 0; c0 < cols; c0 += blk)
            for (int r = r0; r < SN_MIN(r0 + blk, rows); r++)
                for (int c = c0; c < SN_MIN(c0 + blk, cols); c++)
                    y[(size_t)c * rows + r] = x[(size_t)r * cols + c];
}
