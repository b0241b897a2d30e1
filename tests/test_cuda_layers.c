/*
 * test_cuda_layers.c - parity of the device decoder layers (gpu.h) with
 * kernels/layers.h: dilated conv3x3 forward and backward, BatchNorm in
 * train and eval mode and its backward, ReLU, both focal losses, AdamW.
 *
 * Tolerances. conv3x3 is GEMM-based on both sides with different tilings:
 * rtol 1e-4 plus 1e-5 of the largest magnitude (sums of up to a few
 * hundred products that may cancel). BatchNorm statistics are double sums
 * on both sides (different order, then one float rounding): rtol 1e-5;
 * its input gradient subtracts nearly equal terms, so 1e-4 with the same
 * absolute term as the GEMMs. The focal losses use libm's and CUDA's expf
 * and log1pf (each within 2 ulps) and double sums: rtol 1e-6 on the loss,
 * 1e-5 on gradients. ReLU is compared exactly, and AdamW bit for bit: the
 * device performs the CPU's float operations in the same order, each
 * correctly rounded (the CPU build is ISO C, which does not fuse
 * multiply-adds).
 */
#include <math.h>

#include "kernels/layers.h"
#include "test_cuda_util.h"

static void close_gemm(const char *what, const float *got, const float *want, long n)
{
    TU_CLOSE(what, got, want, n, 1e-5 * tcu_max_abs(want, n), 1e-4);
}

/* ---- conv3x3 -------------------------------------------------------------- */

static void test_conv3x3(struct conv3x3_shape s, int with_bias)
{
    long nx = (long)s.n * s.h * s.w * s.c_in, ny = (long)s.n * s.h * s.w * s.c_out;
    long nw = (long)s.c_out * s.c_in * 9;
    float *x = tcu_randn(nx, 0, 1), *w = tcu_randn(nw, 0, 0.2f);
    float *b = with_bias ? tcu_randn(s.c_out, 0, 1) : NULL;
    float *gy = tcu_randn(ny, 0, 1), *y = tcu_floats(ny), *gx = tcu_floats(nx);
    float *gw = tcu_randn(nw, 0, 1), *gb = tcu_randn(s.c_out, 0, 1);
    float *work = tcu_floats((long)conv3x3_work_floats(&s));
    printf("conv3x3: %d maps %dx%d, %d -> %d, dilation %d%s\n", s.n, s.h, s.w, s.c_in,
           s.c_out, s.dil, with_bias ? ", bias" : "");

    /* device copies before the CPU accumulates onto gw, gb */
    float *d_x = tcu_dev(x, nx), *d_w = tcu_dev(w, nw), *d_b = tcu_dev(b, s.c_out);
    float *d_gy = tcu_dev(gy, ny), *d_gw = tcu_dev(gw, nw), *d_gb = tcu_dev(gb, s.c_out);
    float *d_y = tcu_dev_zero(ny), *d_gx = tcu_dev_zero(nx);
    float *d_work = gpu_arena_floats(&tcu_mem, gpu_conv3x3_work_floats(&s));

    conv3x3_forward(y, x, w, b, &s, work);
    conv3x3_backward(gx, gw, with_bias ? gb : NULL, gy, x, w, &s, work);
    gpu_conv3x3_forward(tcu_g, d_y, d_x, d_w, d_b, &s, d_work);
    gpu_conv3x3_backward(tcu_g, d_gx, d_gw, with_bias ? d_gb : NULL, d_gy, d_x, d_w, &s,
                         d_work);
    close_gemm("conv3x3 y", tcu_back(d_y, ny), y, ny);
    close_gemm("conv3x3 dx", tcu_back(d_gx, nx), gx, nx);
    close_gemm("conv3x3 dw (accumulated)", tcu_back(d_gw, nw), gw, nw);
    TU_CLOSE("conv3x3 db (accumulated)", tcu_back(d_gb, s.c_out), gb, s.c_out, 1e-6,
             1e-6);

    /* without an input gradient the weight gradient is the same */
    float *d_gw2 = tcu_dev(gw, nw);
    gpu_conv3x3_backward(tcu_g, NULL, d_gw2, NULL, d_gy, d_x, d_w, &s, d_work);
    float *gw2 = tcu_copy(gw, nw);
    conv3x3_backward(NULL, gw2, NULL, gy, x, w, &s, work);
    close_gemm("conv3x3 dw, dx = NULL", tcu_back(d_gw2, nw), gw2, nw);
}

/* ---- BatchNorm -------------------------------------------------------------- */

static void test_batchnorm(void)
{
    const long n = 3001;
    const int c = 40;
    long nc = n * c;
    float *x = tcu_randn(nc, 0.3f, 2), *gm = tcu_randn(c, 1, 0.3f),
          *bt = tcu_randn(c, 0, 1);
    float *rm = tcu_randn(c, 0, 1), *rv = tcu_randu(c, 0.5f, 2),
          *gy = tcu_randn(nc, 0, 1);
    float *dg = tcu_randn(c, 0, 1), *db = tcu_randn(c, 0, 1);
    float *y = tcu_floats(nc), *mean = tcu_floats(c), *rstd = tcu_floats(c);
    float *gx = tcu_floats(nc), *ye = tcu_floats(nc);

    float *d_x = tcu_dev(x, nc), *d_gm = tcu_dev(gm, c), *d_bt = tcu_dev(bt, c);
    float *d_rm = tcu_dev(rm, c), *d_rv = tcu_dev(rv, c), *d_gy = tcu_dev(gy, nc);
    float *d_dg = tcu_dev(dg, c), *d_db = tcu_dev(db, c), *d_y = tcu_dev_zero(nc);
    float *d_mean = tcu_dev_zero(c), *d_rstd = tcu_dev_zero(c), *d_gx = tcu_dev_zero(nc);
    float *d_ye = tcu_dev_zero(nc);

    /* train mode with the running statistics, then eval mode with them */
    batchnorm_forward_train(y, mean, rstd, x, gm, bt, rm, rv, n, c, LAYERS_BN_MOMENTUM,
                            LAYERS_NORM_EPS);
    gpu_batchnorm_forward_train(tcu_g, d_y, d_mean, d_rstd, d_x, d_gm, d_bt, d_rm, d_rv,
                                n, c, LAYERS_BN_MOMENTUM, LAYERS_NORM_EPS);
    TU_CLOSE("batchnorm mean", tcu_back(d_mean, c), mean, c, 1e-7, 1e-5);
    TU_CLOSE("batchnorm rstd", tcu_back(d_rstd, c), rstd, c, 0, 1e-5);
    TU_CLOSE("batchnorm running mean", tcu_back(d_rm, c), rm, c, 1e-7, 1e-5);
    TU_CLOSE("batchnorm running var", tcu_back(d_rv, c), rv, c, 0, 1e-5);
    TU_CLOSE("batchnorm train y", tcu_back(d_y, nc), y, nc, 1e-6, 1e-5);
    batchnorm_forward_eval(ye, x, gm, bt, rm, rv, n, c, LAYERS_NORM_EPS);
    gpu_batchnorm_forward_eval(tcu_g, d_ye, d_x, d_gm, d_bt, d_rm, d_rv, n, c,
                               LAYERS_NORM_EPS);
    TU_CLOSE("batchnorm eval y", tcu_back(d_ye, nc), ye, nc, 1e-6, 1e-5);

    /* backward from the train-mode statistics */
    batchnorm_backward(gx, dg, db, gy, x, mean, rstd, gm, n, c);
    gpu_batchnorm_backward(tcu_g, d_gx, d_dg, d_db, d_gy, d_x, d_mean, d_rstd, d_gm, n,
                           c);
    close_gemm("batchnorm dx", tcu_back(d_gx, nc), gx, nc);
    TU_CLOSE("batchnorm dgamma (accumulated)", tcu_back(d_dg, c), dg, c, 1e-6, 1e-5);
    TU_CLOSE("batchnorm dbeta (accumulated)", tcu_back(d_db, c), db, c, 1e-6, 1e-5);
}

/* ---- ReLU ------------------------------------------------------------------ */

static void test_relu(void)
{
    const long n = 10007;
    float *x = tcu_randn(n, 0, 1), *gy = tcu_randn(n, 0, 1);
    float *y = tcu_floats(n), *gx = tcu_floats(n);
    float *d_y = tcu_dev_zero(n), *d_gx = tcu_dev_zero(n);
    relu_forward(y, x, n);
    relu_backward(gx, gy, y, n);
    gpu_relu_forward(tcu_g, d_y, tcu_dev(x, n), n);
    gpu_relu_backward(tcu_g, d_gx, tcu_dev(gy, n), d_y, n);
    TU_CLOSE("relu", tcu_back(d_y, n), y, n, 0, 0);
    TU_CLOSE("relu backward", tcu_back(d_gx, n), gx, n, 0, 0);
}

/* ---- focal losses ------------------------------------------------------------ */

static void focal_compare(const char *what, int logit, const float *in, const float *tgt,
                          long n, float alpha, float gamma, float scale)
{
    float *g = tcu_floats(n), *d_g = tcu_dev_zero(n);
    float *d_in = tcu_dev(in, n), *d_t = tcu_dev(tgt, n);
    double lc = logit ? focal_loss_logit(in, tgt, n, alpha, gamma, g, scale)
                      : focal_loss_prob(in, tgt, n, alpha, gamma, g, scale);
    double lg = logit
                    ? gpu_focal_loss_logit(tcu_g, d_in, d_t, n, alpha, gamma, d_g, scale)
                    : gpu_focal_loss_prob(tcu_g, d_in, d_t, n, alpha, gamma, d_g, scale);
    printf("  %-40s loss cpu %.9g gpu %.9g\n", what, lc, lg);
    TU_CHECK_MSG(fabs(lc - lg) <= 1e-6 * fabs(lc), "%s: loss %.12g vs %.12g", what, lg,
                 lc);
    TU_CLOSE(what, tcu_back(d_g, n), g, n, 1e-6 * tcu_max_abs(g, n), 1e-5);

    /* without a gradient the loss is the same */
    double l2 = logit
                    ? gpu_focal_loss_logit(tcu_g, d_in, d_t, n, alpha, gamma, NULL, scale)
                    : gpu_focal_loss_prob(tcu_g, d_in, d_t, n, alpha, gamma, NULL, scale);
    TU_CHECK(l2 == lg);
}

static void test_focal(void)
{
    const long n = 100003;
    float *logit = tcu_randn(n, 0, 3), *p = tcu_randu(n, 0, 1), *tgt = tcu_floats(n);
    for (long i = 0; i < n; i++)
        tgt[i] = rng_uniform(&tcu_rng) < 0.3 ? 1.0f : 0.0f;

    /* probabilities at and near the clamp on both sides */
    for (long i = 0; i < 64; i++) {
        p[i * 37] = (i % 4 == 0)   ? 0.0f
                    : (i % 4 == 1) ? 1.0f
                    : (i % 4 == 2) ? 1e-7f
                                   : 0.9999999f;
        logit[i * 41] = (i % 2 ? 1 : -1) * (float)(20 + i); /* saturated logits */
    }
    focal_compare("focal logit (0.25, 4)", 1, logit, tgt, n, 0.25f, 4.0f, 0.25f);
    focal_compare("focal logit (no alpha, 2.5)", 1, logit, tgt, n, -1.0f, 2.5f, 1.0f);
    focal_compare("focal prob (0.5, 4)", 0, p, tgt, n, 0.5f, 4.0f, 1.0f);
    focal_compare("focal prob (0.25, 0)", 0, p, tgt, n, 0.25f, 0.0f, 1.0f);
}

/* ---- AdamW -------------------------------------------------------------------- */

static void test_adamw(void)
{
    const long n = 10001;
    float *p = tcu_randn(n, 0, 1), *m = tcu_randn(n, 0, 0.1f),
          *v = tcu_randu(n, 0, 0.01f);
    float *d_p = tcu_dev(p, n), *d_m = tcu_dev(m, n), *d_v = tcu_dev(v, n);
    struct adamw_config cfg;
    adamw_config_default(&cfg, 1e-3, 0.05);

    /* three steps with fresh gradients, then two ranges with their own steps */
    for (long step = 1; step <= 3; step++) {
        float *g = tcu_randn(n, 0, 1);
        adamw_update(p, g, m, v, n, step, &cfg);
        gpu_adamw_update(tcu_g, d_p, tcu_dev(g, n), d_m, d_v, n, step, &cfg);
    }
    struct adamw_range r[2] = {{0, 4000, 7}, {6000, 4001, 2}};
    float *g = tcu_randn(n, 0, 1);
    adamw_update_ranges(p, g, m, v, r, 2, &cfg);
    gpu_adamw_update_ranges(tcu_g, d_p, tcu_dev(g, n), d_m, d_v, r, 2, &cfg);

    float *gp = tcu_back(d_p, n), *gm = tcu_back(d_m, n), *gv = tcu_back(d_v, n);
    TU_CLOSE("adamw param (bit for bit)", gp, p, n, 0, 0);
    TU_CLOSE("adamw m (bit for bit)", gm, m, n, 0, 0);
    TU_CLOSE("adamw v (bit for bit)", gv, v, n, 0, 0);
}

int main(void)
{
    tcu_start("test_cuda_layers", 17);
    test_conv3x3((struct conv3x3_shape){3, 11, 9, 12, 10, 3}, 1);
    test_conv3x3((struct conv3x3_shape){2, 7, 13, 5, 8, 6}, 0);
    test_conv3x3((struct conv3x3_shape){2, 5, 6, 4, 3, 24}, 1);
    test_batchnorm();
    test_relu();
    test_focal();
    test_adamw();
    return tcu_finish("test_cuda_layers");
}
