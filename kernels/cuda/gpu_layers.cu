/*
 * gpu_layers.cu - the decoder's layers on the device: dilated conv3x3,
 * BatchNorm, ReLU, the focal losses and AdamW (gpu.h; CPU twins in
 * kernels/layers_conv.c, layers_norm.c, layers.c and layers_loss.c).
 *
 * conv3x3 lowers each group of maps to one GEMM over a full unfolding:
 * col[cell][tap][c_in], tap = 3 ky + kx, zero where the dilated tap leaves
 * the map, against the weights repacked as [c_out][tap][c_in] so that the
 * unfolding reads and writes whole channel rows. The backward pass folds
 * the column gradient back by a gather (each input cell sums the nine
 * slots that read it), with no atomics. Statistics and sums are the fixed-
 * order double reductions of gpu_core.cu; the loss is summed in double over
 * fixed blocks, then the blocks in a fixed tree.
 */
#include <math.h>

#include "gpu_internal.cuh"

#define CONV3_TAPS 9
/* Floats of one group's unfolding (128 MiB); at least one map per group. */
#define GPU_CONV_COL_FLOATS ((size_t)1 << 25)
/* Pixels per block of the focal loss (a fixed share, for a fixed order). */
#define GPU_FOCAL_PER_THREAD 16
#define GPU_FOCAL_BLOCK (GPU_THREADS * GPU_FOCAL_PER_THREAD)

/* ------------------------------------------------------------------------ */
/* conv3x3 */

static int conv3x3_group(const struct conv3x3_shape *s)
{
    size_t per_map = (size_t)s->h * s->w * CONV3_TAPS * s->c_in;
    size_t m = GPU_CONV_COL_FLOATS / per_map;
    return (int)SN_MAX((size_t)1, SN_MIN(m, (size_t)s->n));
}

extern "C" size_t gpu_conv3x3_work_floats(const struct conv3x3_shape *s)
{
    size_t col = (size_t)conv3x3_group(s) * s->h * s->w * CONV3_TAPS * s->c_in;
    size_t wts = (size_t)s->c_out * CONV3_TAPS * s->c_in;
    /* columns and their gradient, weights and their gradient */
    return 2 * col + 2 * wts;
}

/* wr[o][t][k] = w[o][k][t] (pack = 1), or w[o][k][t] += wr[o][t][k]. */
__global__ void conv3x3_repack_kernel(float *w, float *wr, int c_in, int c_out, int pack)
{
    long total = (long)c_out * c_in * CONV3_TAPS;
    long e = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (e >= total) return;
    int t = (int)(e % CONV3_TAPS), k = (int)((e / CONV3_TAPS) % c_in);
    long o = e / ((long)CONV3_TAPS * c_in);
    float *r = wr + ((size_t)o * CONV3_TAPS + t) * c_in + k;
    if (pack)
        *r = w[e];
    else
        w[e] += *r;
}

/* col[(m cells + cell)][t][k] = x[m][cell moved by tap t][k] or 0, for the
 * maps of one group. */
__global__ void conv3x3_unfold_kernel(const float *x, struct conv3x3_shape s, int maps,
                                      float *col)
{
    const long cells = (long)s.h * s.w, k9 = (long)CONV3_TAPS * s.c_in;
    const long total = maps * cells * k9;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total;
         e += (long)gridDim.x * blockDim.x) {
        long row = e / k9;
        int r = (int)(e % k9), t = r / s.c_in, k = r % s.c_in;
        long m = row / cells, cell = row % cells;
        int yy = (int)(cell / s.w) + (t / 3 - 1) * s.dil;
        int xx = (int)(cell % s.w) + (t % 3 - 1) * s.dil;
        bool in = yy >= 0 && yy < s.h && xx >= 0 && xx < s.w;
        col[e] = in ? x[((size_t)m * cells + (size_t)yy * s.w + xx) * s.c_in + k] : 0.0f;
    }
}

/* dx[m][cell][k] = sum over taps of the column slots that read this cell:
 * the output cell (y - (ky-1) dil, x - (kx-1) dil) through tap (ky, kx). */
__global__ void conv3x3_fold_kernel(float *dx, struct conv3x3_shape s, int maps,
                                    const float *dcol)
{
    const long cells = (long)s.h * s.w, k9 = (long)CONV3_TAPS * s.c_in;
    const long total = maps * cells * s.c_in;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total;
         e += (long)gridDim.x * blockDim.x) {
        int k = (int)(e % s.c_in);
        long row = e / s.c_in, m = row / cells, cell = row % cells;
        int y = (int)(cell / s.w), x = (int)(cell % s.w);
        float acc = 0.0f;
        for (int t = 0; t < CONV3_TAPS; t++) {
            int oy = y - (t / 3 - 1) * s.dil, ox = x - (t % 3 - 1) * s.dil;
            if (oy < 0 || oy >= s.h || ox < 0 || ox >= s.w) continue;
            acc += dcol[((size_t)m * cells + (size_t)oy * s.w + ox) * k9 +
                        (size_t)t * s.c_in + k];
        }
        dx[e] = acc;
    }
}

static void conv3x3_repack(struct gpu_ctx *g, const float *w, float *wr,
                           const struct conv3x3_shape *s, int pack)
{
    long total = (long)s->c_out * s->c_in * CONV3_TAPS;
    conv3x3_repack_kernel<<<gpu_blocks(total, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        (float *)w, wr, s->c_in, s->c_out, pack);
    KERNEL_CHECK();
}

static void conv3x3_unfold(struct gpu_ctx *g, const float *x,
                           const struct conv3x3_shape *s, int maps, float *col)
{
    long total = (long)maps * s->h * s->w * CONV3_TAPS * s->c_in;
    conv3x3_unfold_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                            g->stream>>>(x, *s, maps, col);
    KERNEL_CHECK();
}

static void conv3x3_check(const struct conv3x3_shape *s)
{
    SN_ASSERT(s->n >= 1 && s->h >= 1 && s->w >= 1);
    SN_ASSERT(s->c_in >= 1 && s->c_out >= 1 && s->dil >= 1);
    SN_ASSERT((long)conv3x3_group(s) * s->h * s->w <= 2147483647L);
}

extern "C" void gpu_conv3x3_forward(struct gpu_ctx *g, float *y, const float *x,
                                    const float *w, const float *b,
                                    const struct conv3x3_shape *s, float *work)
{
    conv3x3_check(s);
    const int grp = conv3x3_group(s), k9 = CONV3_TAPS * s->c_in;
    const size_t cells = (size_t)s->h * s->w;
    float *col = work, *wr = work + 2 * (size_t)grp * cells * k9;

    /* weights per tap; the bias broadcast first so each product adds onto it */
    conv3x3_repack(g, w, wr, s, 1);
    if (b) gpu_rows_fill(g, y, b, (long)s->n * (long)cells, s->c_out);
    for (int m0 = 0; m0 < s->n; m0 += grp) {
        int maps = SN_MIN(grp, s->n - m0), rows = maps * (int)cells;
        conv3x3_unfold(g, x + (size_t)m0 * cells * s->c_in, s, maps, col);
        gpu_sgemm_rm(g, 0, 1, rows, s->c_out, k9, 1.0f, col, k9, wr, k9, b ? 1.0f : 0.0f,
                     y + (size_t)m0 * cells * s->c_out, s->c_out);
    }
}

extern "C" void gpu_conv3x3_backward(struct gpu_ctx *g, float *dx, float *dw, float *db,
                                     const float *dy, const float *x, const float *w,
                                     const struct conv3x3_shape *s, float *work)
{
    conv3x3_check(s);
    const int grp = conv3x3_group(s), k9 = CONV3_TAPS * s->c_in;
    const size_t cells = (size_t)s->h * s->w, colf = (size_t)grp * cells * k9;
    float *col = work, *dcol = work + colf, *wr = dcol + colf;
    float *dwr = wr + (size_t)s->c_out * k9;

    conv3x3_repack(g, w, wr, s, 1);
    gpu_zero(g, dwr, sizeof(float) * (size_t)s->c_out * k9);
    for (int m0 = 0; m0 < s->n; m0 += grp) {
        int maps = SN_MIN(grp, s->n - m0), rows = maps * (int)cells;
        const float *dyg = dy + (size_t)m0 * cells * s->c_out;

        /* dW += dY^T col over the group's cells */
        conv3x3_unfold(g, x + (size_t)m0 * cells * s->c_in, s, maps, col);
        gpu_sgemm_rm(g, 1, 0, s->c_out, k9, rows, 1.0f, dyg, s->c_out, col, k9, 1.0f, dwr,
                     k9);
        if (!dx) continue;

        /* dcol = dY W, folded back onto the input cells */
        gpu_sgemm_rm(g, 0, 0, rows, k9, s->c_out, 1.0f, dyg, s->c_out, wr, k9, 0.0f, dcol,
                     k9);
        long total = (long)rows * s->c_in;
        conv3x3_fold_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                              g->stream>>>(dx + (size_t)m0 * cells * s->c_in, *s, maps,
                                           dcol);
        KERNEL_CHECK();
    }
    conv3x3_repack(g, dw, dwr, s, 0);

    /* db += column sums of dY */
    if (db) {
        double *sum = g->red + gpu_colred_scratch(s->c_out);
        gpu_colreduce(g, GPU_COLRED_SUM, dy, NULL, NULL, NULL, NULL,
                      (long)s->n * (long)cells, s->c_out, sum, NULL);
        gpu_add_double_to_float(g, db, sum, s->c_out);
    }
}

/* ------------------------------------------------------------------------ */
/* BatchNorm */

/* Train statistics from the channel sums: mean, rstd and the running
 * statistics, in the CPU's precision (double, then float). */
__global__ void bn_stats_kernel(double *sum, const double *sq, long n, int c, float eps,
                                float momentum, float *mean, float *rstd, float *run_mean,
                                float *run_var, int pass)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= c) return;
    if (pass == 0) { /* the mean, for the centred second pass */
        sum[k] = sum[k] / (double)n;
        return;
    }
    double dm = sum[k], dv = sq[k] / (double)n;
    mean[k] = (float)dm;
    rstd[k] = (float)(1.0 / sqrt(dv + eps));
    if (!run_mean) return;
    run_mean[k] = (1.0f - momentum) * run_mean[k] + momentum * (float)dm;
    run_var[k] = (1.0f - momentum) * run_var[k] +
                 momentum * (float)(dv * (double)n / (double)(n - 1));
}

/* y = (x - mean) * rstd * gamma + beta; with run_var != NULL, rstd comes
 * from the running variance (eval mode). */
__global__ void bn_apply_kernel(float *y, const float *x, const float *mean,
                                const float *rstd, const float *run_var, float eps,
                                const float *gamma, const float *beta, long total, int c)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        int k = (int)(i % c);
        float r = run_var ? (float)(1.0 / sqrt((double)run_var[k] + eps)) : rstd[k];
        y[i] = (x[i] - mean[k]) * r * gamma[k] + beta[k];
    }
}

extern "C" void gpu_batchnorm_forward_train(struct gpu_ctx *g, float *y, float *mean,
                                            float *rstd, const float *x,
                                            const float *gamma, const float *beta,
                                            float *run_mean, float *run_var, long n,
                                            int c, float momentum, float eps)
{
    SN_ASSERT(n >= 2 && c >= 1);
    double *sum = g->red + gpu_colred_scratch(c), *sq = sum + c;
    SN_ASSERT(gpu_colred_scratch(c) + 2 * (size_t)c <= g->red_cap);
    unsigned cb = gpu_blocks(c, GPU_THREADS);

    /* batch mean, then the centred variance (two passes, in double) */
    gpu_colreduce(g, GPU_COLRED_SUM, x, NULL, NULL, NULL, NULL, n, c, sum, NULL);
    bn_stats_kernel<<<cb, GPU_THREADS, 0, g->stream>>>(sum, sq, n, c, eps, momentum, mean,
                                                       rstd, run_mean, run_var, 0);
    KERNEL_CHECK();
    gpu_colreduce(g, GPU_COLRED_SQDEV, x, NULL, sum, NULL, NULL, n, c, sq, NULL);
    bn_stats_kernel<<<cb, GPU_THREADS, 0, g->stream>>>(sum, sq, n, c, eps, momentum, mean,
                                                       rstd, run_mean, run_var, 1);
    KERNEL_CHECK();

    long total = n * (long)c;
    bn_apply_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        y, x, mean, rstd, NULL, eps, gamma, beta, total, c);
    KERNEL_CHECK();
}

extern "C" void gpu_batchnorm_forward_eval(struct gpu_ctx *g, float *y, const float *x,
                                           const float *gamma, const float *beta,
                                           const float *run_mean, const float *run_var,
                                           long n, int c, float eps)
{
    long total = n * (long)c;
    if (total <= 0) return;
    bn_apply_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        y, x, run_mean, NULL, run_var, eps, gamma, beta, total, c);
    KERNEL_CHECK();
}

/* Parameter gradients and the two per-channel means the input gradient
 * needs: a = mean of dy, bq = mean of dy xhat (floats, as on the CPU). */
__global__ void bn_grad_params_kernel(const double *sdy, const double *sdyx, long n,
                                      int c, float *dgamma, float *dbeta, float *a,
                                      float *bq)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= c) return;
    dgamma[k] += (float)sdyx[k];
    dbeta[k] += (float)sdy[k];
    a[k] = (float)(sdy[k] / (double)n);
    bq[k] = (float)(sdyx[k] / (double)n);
}

/* dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)). */
__global__ void bn_dx_kernel(float *dx, const float *dy, const float *x,
                             const float *mean, const float *rstd, const float *gamma,
                             const float *a, const float *bq, long total, int c)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        int k = (int)(i % c);
        float xhat = (x[i] - mean[k]) * rstd[k];
        dx[i] = gamma[k] * rstd[k] * (dy[i] - a[k] - xhat * bq[k]);
    }
}

extern "C" void gpu_batchnorm_backward(struct gpu_ctx *g, float *dx, float *dgamma,
                                       float *dbeta, const float *dy, const float *x,
                                       const float *mean, const float *rstd,
                                       const float *gamma, long n, int c)
{
    /* scratch after the reduction's own: two sums in double, two means */
    double *sdy = g->red + gpu_colred_scratch(c), *sdyx = sdy + c;
    float *a = (float *)(sdyx + c), *bq = a + c;
    SN_ASSERT(gpu_colred_scratch(c) + 3 * (size_t)c <= g->red_cap);

    /* per-channel sums of dy and dy xhat, then the parameter gradients */
    gpu_colreduce(g, GPU_COLRED_BNGRAD, dy, x, NULL, mean, rstd, n, c, sdy, sdyx);
    bn_grad_params_kernel<<<gpu_blocks(c, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        sdy, sdyx, n, c, dgamma, dbeta, a, bq);
    KERNEL_CHECK();
    if (!dx) return;

    long total = n * (long)c;
    bn_dx_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        dx, dy, x, mean, rstd, gamma, a, bq, total, c);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* ReLU */

__global__ void relu_kernel(float *out, const float *a, const float *y, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x)
        out[i] = y ? (y[i] > 0.0f ? a[i] : 0.0f) : (a[i] > 0.0f ? a[i] : 0.0f);
}

extern "C" void gpu_relu_forward(struct gpu_ctx *g, float *y, const float *x, long n)
{
    if (n <= 0) return;
    relu_kernel<<<gpu_blocks_capped(n, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        y, x, NULL, n);
    KERNEL_CHECK();
}

extern "C" void gpu_relu_backward(struct gpu_ctx *g, float *dx, const float *dy,
                                  const float *y, long n)
{
    if (n <= 0) return;
    relu_kernel<<<gpu_blocks_capped(n, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(dx, dy,
                                                                                  y, n);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* Focal losses (the per-pixel formulas of kernels/layers_loss.c) */

__device__ __forceinline__ float focal_pow(float q, float gamma, int igamma)
{
    if (igamma < 0) return powf(q, gamma);
    float r = 1.0f;
    for (int i = 0; i < igamma; i++)
        r *= q;
    return r;
}

/* From the logit, with s = +-logit so that p_t = sigmoid(s):
 * FL = alpha_t q^gamma softplus(-s), dFL/ds = -alpha_t q^gamma
 * (gamma p_t softplus(-s) + q), q = 1 - p_t. */
__device__ __forceinline__ float focal_logit_pixel(float x, bool pos, float alpha,
                                                   float gamma, int igamma, float *dfdx)
{
    float s = pos ? x : -x;
    float at = alpha < 0.0f ? 1.0f : (pos ? alpha : 1.0f - alpha);
    float e = expf(-fabsf(s));
    float pt = s >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    float q = s >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    float sp = fmaxf(-s, 0.0f) + log1pf(e);
    float qg = focal_pow(q, gamma, igamma);
    float dfds = -at * qg * (gamma * pt * sp + q);
    *dfdx = pos ? dfds : -dfds;
    return at * qg * sp;
}

/* From the probability, p_t clamped to [FOCAL_PROB_EPS, 1] with a zero
 * gradient where the clamp is active. */
__device__ __forceinline__ float focal_prob_pixel(float p, bool pos, float alpha,
                                                  float gamma, int igamma, float *dfdp)
{
    float at = alpha < 0.0f ? 1.0f : (pos ? alpha : 1.0f - alpha);
    float pt = pos ? p : 1.0f - p, q = pos ? 1.0f - p : p;
    bool clamped = pt < FOCAL_PROB_EPS;
    if (clamped) {
        pt = FOCAL_PROB_EPS;
        q = 1.0f - FOCAL_PROB_EPS;
    }
    float lp = logf(pt);
    float qg = focal_pow(q, gamma, igamma);
    float d1 = (gamma > 0.0f && q > 0.0f) ? gamma * qg / q * lp : 0.0f;
    float dpt = at * (d1 - qg / pt);
    *dfdp = clamped ? 0.0f : (pos ? dpt : -dpt);
    return -at * qg * lp;
}

/* One fixed block of pixels per thread block: gradients written, the loss
 * summed in double (thread order, then a fixed tree) into part[block]. */
template <bool LOGIT>
__global__ void focal_kernel(const float *in, const float *target, long n, float alpha,
                             float gamma, int igamma, float *grad, float gscale,
                             double *part)
{
    __shared__ double sh[32];
    long base = (long)blockIdx.x * GPU_FOCAL_BLOCK;
    double s = 0;
    for (int r = 0; r < GPU_FOCAL_PER_THREAD; r++) {
        long i = base + (long)r * blockDim.x + threadIdx.x;
        if (i >= n) break;
        float gv;
        bool pos = target[i] > 0.5f;
        s += LOGIT ? focal_logit_pixel(in[i], pos, alpha, gamma, igamma, &gv)
                   : focal_prob_pixel(in[i], pos, alpha, gamma, igamma, &gv);
        if (grad) grad[i] = gv * gscale;
    }
    s = gpu_block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* The block sums added by one block in a fixed tree. */
__global__ void sum_parts_kernel(const double *part, long nparts, double *out)
{
    __shared__ double sh[32];
    double s = 0;
    for (long b = threadIdx.x; b < nparts; b += blockDim.x)
        s += part[b];
    s = gpu_block_sum(s, sh);
    if (threadIdx.x == 0) *out = s;
}

static int focal_int_gamma(float gamma)
{
    return (gamma == floorf(gamma) && gamma >= 0.0f && gamma <= 16.0f) ? (int)gamma : -1;
}

static double focal_run(struct gpu_ctx *g, bool logit, const float *in,
                        const float *target, long n, float alpha, float gamma,
                        float *grad, float scale)
{
    SN_ASSERT(n >= 1 && gamma >= 0.0f);
    long nblk = (n + GPU_FOCAL_BLOCK - 1) / GPU_FOCAL_BLOCK;
    SN_ASSERT((size_t)nblk + 1 <= g->red_cap);
    double *part = g->red, *total = g->red + nblk;
    int ig = focal_int_gamma(gamma);
    float gscale = (float)(scale / (double)n);

    /* per-pixel loss and gradient; the sum over pixels */
    if (logit)
        focal_kernel<true><<<(unsigned)nblk, GPU_THREADS, 0, g->stream>>>(
            in, target, n, alpha, gamma, ig, grad, gscale, part);
    else
        focal_kernel<false><<<(unsigned)nblk, GPU_THREADS, 0, g->stream>>>(
            in, target, n, alpha, gamma, ig, grad, gscale, part);
    KERNEL_CHECK();
    sum_parts_kernel<<<1, 1024, 0, g->stream>>>(part, nblk, total);
    KERNEL_CHECK();
    gpu_download(g, g->red_host, total, sizeof(double));
    return g->red_host[0] / (double)n;
}

extern "C" double gpu_focal_loss_logit(struct gpu_ctx *g, const float *logit,
                                       const float *target, long n, float alpha,
                                       float gamma, float *dlogit, float scale)
{
    return focal_run(g, true, logit, target, n, alpha, gamma, dlogit, scale);
}

extern "C" double gpu_focal_loss_prob(struct gpu_ctx *g, const float *p,
                                      const float *target, long n, float alpha,
                                      float gamma, float *dp, float scale)
{
    return focal_run(g, false, p, target, n, alpha, gamma, dp, scale);
}

/* ------------------------------------------------------------------------ */
/* AdamW */

/* The update of adamw_update in the same order of float operations, each
 * rounded on its own (no fused multiply-add), so it matches the CPU's
 * (compiled as ISO C, without contraction) bit for bit. */
__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, long n,
                             float decay, float b1, float b2, float a1, float a2,
                             float neg_step, float bc2_sqrt, float eps)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x) {
        float p = __fmul_rn(param[i], decay), gr = grad[i];
        float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(a1, gr));
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(a2, gr), gr));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step, mi), denom));
    }
}

extern "C" void gpu_adamw_update(struct gpu_ctx *g, float *param, const float *grad,
                                 float *m, float *v, long n, long step,
                                 const struct adamw_config *cfg)
{
    SN_ASSERT(step >= 1);
    if (n <= 0) return;

    /* the scalars in double, as adamw_update computes them */
    double bc1 = 1.0 - pow(cfg->beta1, (double)step);
    double bc2 = 1.0 - pow(cfg->beta2, (double)step);
    float decay = (float)(1.0 - cfg->lr * cfg->weight_decay);
    float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2;
    float a1 = (float)(1.0 - cfg->beta1), a2 = (float)(1.0 - cfg->beta2);
    float neg_step = (float)(-(cfg->lr / bc1)), bc2_sqrt = (float)sqrt(bc2);
    adamw_kernel<<<gpu_blocks_capped(n, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        param, grad, m, v, n, decay, b1, b2, a1, a2, neg_step, bc2_sqrt, (float)cfg->eps);
    KERNEL_CHECK();
}

extern "C" void gpu_adamw_update_ranges(struct gpu_ctx *g, float *param,
                                        const float *grad, float *m, float *v,
                                        const struct adamw_range *ranges, int nranges,
                                        const struct adamw_config *cfg)
{
    for (int r = 0; r < nranges; r++) {
        long o = ranges[r].offset;
        SN_ASSERT(o >= 0 && ranges[r].count >= 0);
        gpu_adamw_update(g, param + o, grad + o, m + o, v + o, ranges[r].count,
                         ranges[r].step, cfg);
    }
}
