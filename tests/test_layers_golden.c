/*
 * test_layers_golden.c - the decoder's layers against PyTorch: forward
 * outputs and every gradient, from the golden file of tests/ref_layers.py.
 *
 * The references are computed in float64 from float32 inputs, so each
 * tolerance below covers only this side's float rounding; its size follows
 * from the number of terms summed (stated case by case). AdamW is compared
 * with torch.optim.AdamW running in float32.
 */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "kernels/layers.h"
#include "testutil.h"

static const char *ref;

/* Every buffer of the test, released together at the end. */
static void *owned[1024];
static int nowned;

static float *own(float *p)
{
    if (nowned == (int)SN_ARRAY_LEN(owned)) abort();
    owned[nowned++] = p;
    return p;
}

static void release_all(void)
{
    while (nowned > 0)
        free(owned[--nowned]);
}

/* Read a golden tensor that must hold exactly `want` floats. */
static float *gold(const char *name, long want)
{
    long n = 0;
    float *v = tu_ref_read(ref, name, &n);
    if (!v) exit(tu_finish("test_layers_golden"));
    own(v);
    TU_CHECK_MSG(n == want, "%s holds %ld floats, expected %ld", name, n, want);
    if (n != want) exit(tu_finish("test_layers_golden"));
    return v;
}

static float *gold_n(const char *group, const char *name, long want)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, name);
    return gold(path, want);
}

static float *zeros(long n)
{
    float *p = calloc((size_t)n, sizeof(float));
    if (!p) abort();
    return own(p);
}

static void check_conv1x1(const char *g, long n, int cin, int cout)
{
    float *x = gold_n(g, "x", n * cin), *w = gold_n(g, "w", (long)cout * cin);
    float *b = gold_n(g, "b", cout), *dy = gold_n(g, "dy", n * cout);
    float *y = zeros(n * cout), *dx = zeros(n * cin);
    float *dw = zeros((long)cout * cin), *db = zeros(cout);
    char what[96];

    /* Seven products per output and 30 per weight gradient, O(1) each:
     * float rounding stays below 1e-5. */
    conv1x1_forward(y, x, w, b, n, cin, cout);
    conv1x1_backward(dx, dw, db, dy, x, w, n, cin, cout);
    snprintf(what, sizeof what, "%s y", g);
    TU_CLOSE(what, y, gold_n(g, "y", n * cout), n * cout, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s dx", g);
    TU_CLOSE(what, dx, gold_n(g, "dx", n * cin), n * cin, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s dw", g);
    TU_CLOSE(what, dw, gold_n(g, "dw", (long)cout * cin), (long)cout * cin, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s db", g);
    TU_CLOSE(what, db, gold_n(g, "db", cout), cout, 1e-5, 1e-5);
}

static void check_conv3x3(int dil)
{
    struct conv3x3_shape s = {2, 7, 9, 5, 6, dil};
    long nx = 2L * 7 * 9 * 5, ny = 2L * 7 * 9 * 6, nw = 6L * 5 * 9;
    char g[32], what[96];
    snprintf(g, sizeof g, "conv3x3_d%d", dil);
    float *x = gold_n(g, "x", nx), *w = gold_n(g, "w", nw), *b = gold_n(g, "b", 6);
    float *dy = gold_n(g, "dy", ny);
    float *work = own(malloc(sizeof(float) * conv3x3_work_floats(&s)));
    float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(6);

    /* Up to 45 products per output, 126 cells per weight gradient, each
     * O(1): accumulated float rounding below 2e-5. */
    conv3x3_forward(y, x, w, b, &s, work);
    conv3x3_backward(dx, dw, db, dy, x, w, &s, work);
    snprintf(what, sizeof what, "%s y", g);
    TU_CLOSE(what, y, gold_n(g, "y", ny), ny, 2e-5, 1e-5);
    snprintf(what, sizeof what, "%s dx", g);
    TU_CLOSE(what, dx, gold_n(g, "dx", nx), nx, 2e-5, 1e-5);
    snprintf(what, sizeof what, "%s dw", g);
    TU_CLOSE(what, dw, gold_n(g, "dw", nw), nw, 2e-5, 1e-5);
    snprintf(what, sizeof what, "%s db", g);
    TU_CLOSE(what, db, gold_n(g, "db", 6), 6, 2e-5, 1e-5);
}

static void check_batchnorm(void)
{
    const long n = 3 * 4 * 5;
    const int c = 6;
    float *x = gold("batchnorm/x", n * c), *dy = gold("batchnorm/dy", n * c);
    float *gamma = gold("batchnorm/gamma", c), *beta = gold("batchnorm/beta", c);
    float *rm = gold("batchnorm/run_mean0", c), *rv = gold("batchnorm/run_var0", c);
    float *y = zeros(n * c), *dx = zeros(n * c), *dg = zeros(c), *dbt = zeros(c);
    float mean[6], rstd[6];

    /* Train mode: sums of 60 cells in double, one float rounding per step
     * of the normalisation; 1e-5 covers it (|y| up to about 4). */
    batchnorm_forward_train(y, mean, rstd, x, gamma, beta, rm, rv, n, c,
                            LAYERS_BN_MOMENTUM, LAYERS_NORM_EPS);
    batchnorm_backward(dx, dg, dbt, dy, x, mean, rstd, gamma, n, c);
    TU_CLOSE("batchnorm train y", y, gold("batchnorm/y", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("batchnorm dx", dx, gold("batchnorm/dx", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("batchnorm dgamma", dg, gold("batchnorm/dgamma", c), c, 1e-5, 1e-5);
    TU_CLOSE("batchnorm dbeta", dbt, gold("batchnorm/dbeta", c), c, 1e-5, 1e-5);
    TU_CLOSE("batchnorm running mean", rm, gold("batchnorm/run_mean", c), c, 1e-6, 1e-6);
    TU_CLOSE("batchnorm running var", rv, gold("batchnorm/run_var", c), c, 1e-6, 1e-6);

    /* Eval mode with the updated running statistics. */
    float *x2 = gold("batchnorm/x_eval", n * c);
    batchnorm_forward_eval(y, x2, gamma, beta, rm, rv, n, c, LAYERS_NORM_EPS);
    TU_CLOSE("batchnorm eval y", y, gold("batchnorm/y_eval", n * c), n * c, 1e-5, 1e-5);
}

static void check_norms(void)
{
    const long n = 2 * 7;
    const int c = 16;
    float *x = gold("rmsnorm/x", n * c), *w = gold("rmsnorm/w", c);
    float *dy = gold("rmsnorm/dy", n * c), *y = zeros(n * c), *dx = zeros(n * c);
    float *dw = zeros(c), *db = zeros(c), rstd[14], mean[14];

    /* Row statistics over 16 channels in double; gradients sum 14 rows:
     * float rounding below 1e-5 at these magnitudes. */
    rmsnorm_forward(y, rstd, x, w, n, c, LAYERS_NORM_EPS);
    rmsnorm_backward(dx, dw, dy, x, rstd, w, n, c);
    TU_CLOSE("rmsnorm y", y, gold("rmsnorm/y", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("rmsnorm dx", dx, gold("rmsnorm/dx", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("rmsnorm dw", dw, gold("rmsnorm/dw", c), c, 1e-5, 1e-5);

    x = gold("layernorm/x", n * c);
    w = gold("layernorm/w", c);
    dy = gold("layernorm/dy", n * c);
    memset(dw, 0, sizeof(float) * c);
    layernorm_forward(y, mean, rstd, x, w, gold("layernorm/b", c), n, c, LAYERS_NORM_EPS);
    layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, n, c);
    TU_CLOSE("layernorm y", y, gold("layernorm/y", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("layernorm dx", dx, gold("layernorm/dx", n * c), n * c, 1e-5, 1e-5);
    TU_CLOSE("layernorm dw", dw, gold("layernorm/dw", c), c, 1e-5, 1e-5);
    TU_CLOSE("layernorm db", db, gold("layernorm/db", c), c, 1e-5, 1e-5);
}

static void check_upsample(const char *g, int n, int c, int h, int w, int oh, int ow,
                           enum upsample_align align)
{
    long nin = (long)n * h * w * c, nout = (long)n * oh * ow * c;
    float *x = gold_n(g, "x", nin), *dy = gold_n(g, "dy", nout);
    float *y = zeros(nout), *dx = zeros(nin);
    char what[96];

    upsample_bilinear_forward(y, x, n, h, w, oh, ow, c, align);
    upsample_bilinear_backward(dx, dy, n, h, w, oh, ow, c, align);

    /* Against float64: PyTorch (and this code) takes the scale as a float
     * ratio, 2^-24 off, which moves a source coordinate of up to 48 by up to
     * 3e-6 and the outputs by that times the input's range (|x| < 5): 2e-5.
     * Input gradients sum up to ~70 output gradients: 1e-4. */
    snprintf(what, sizeof what, "%s y (vs float64)", g);
    TU_CLOSE(what, y, gold_n(g, "y", nout), nout, 2e-5, 1e-6);
    snprintf(what, sizeof what, "%s dx (vs float64)", g);
    TU_CLOSE(what, dx, gold_n(g, "dx", nin), nin, 1e-4, 1e-5);

    /* Against PyTorch's float32 kernel: the same weights to the bit and the
     * same order of products, so the outputs agree to one rounding; only
     * the backward's summation order differs. */
    snprintf(what, sizeof what, "%s y (vs torch float32)", g);
    TU_CLOSE(what, y, gold_n(g, "y32", nout), nout, 5e-7, 1e-7);
    snprintf(what, sizeof what, "%s dx (vs torch float32)", g);
    TU_CLOSE(what, dx, gold_n(g, "dx32", nin), nin, 1e-5, 1e-5);
}

static void check_focal_one(const char *tag, float alpha, float gamma)
{
    const long n = 1000;
    float *logit = gold("focal/logit", n), *t = gold("focal/target", n);
    float *p = gold("focal/prob", n), *g = zeros(n);
    char name[96], what[96];

    /* Per-pixel float math with relative error ~1e-6 and no cancellation
     * (all gradient terms share a sign): rtol 1e-5 for loss and gradient;
     * atol 1e-11 for gradients that underflow towards 0 (|g| ~ 1e-3 / n). */
    double loss = focal_loss_logit(logit, t, n, alpha, gamma, g, 1.0f);
    snprintf(name, sizeof name, "focal/logit_%s/loss", tag);
    float lossf = (float)loss, want = (float)tu_ref_scalar(ref, name);
    snprintf(what, sizeof what, "focal logit %s loss", tag);
    TU_CLOSE(what, &lossf, &want, 1, 0, 1e-5);
    snprintf(name, sizeof name, "focal/logit_%s/dlogit", tag);
    snprintf(what, sizeof what, "focal logit %s dlogit", tag);
    TU_CLOSE(what, g, gold(name, n), n, 1e-11, 1e-5);

    /* On probabilities: q = 1 - p_t is rounded once where p_t is 1 - p,
     * which costs up to 1e-4 relative on the smallest gradients. */
    loss = focal_loss_prob(p, t, n, alpha, gamma, g, 1.0f);
    snprintf(name, sizeof name, "focal/prob_%s/loss", tag);
    lossf = (float)loss;
    want = (float)tu_ref_scalar(ref, name);
    snprintf(what, sizeof what, "focal prob %s loss", tag);
    TU_CLOSE(what, &lossf, &want, 1, 0, 1e-5);
    snprintf(name, sizeof name, "focal/prob_%s/dp", tag);
    snprintf(what, sizeof what, "focal prob %s dp", tag);
    TU_CLOSE(what, g, gold(name, n), n, 1e-10, 1e-4);
}

static void check_focal(void)
{
    check_focal_one("a25g4", 0.25f, 4.0f);
    check_focal_one("a50g4", 0.5f, 4.0f);
    check_focal_one("a25g1.5", 0.25f, 1.5f);
    check_focal_one("noalpha_g2", -1.0f, 2.0f);
}

static void check_adamw(void)
{
    const long n = 37, na = 20;
    float *p = gold("adamw/p0", n), *m = zeros(n), *v = zeros(n);
    struct adamw_config cfg;
    adamw_config_default(&cfg, 1e-3, 0.05);

    /* The second tensor (no gradient at step 2) is a range with its own
     * step count, as an inactive branch under cyclic training. */
    struct adamw_range r1[] = {{0, na, 1}, {na, n - na, 1}};
    struct adamw_range r2[] = {{0, na, 2}};
    struct adamw_range r3[] = {{0, na, 3}, {na, n - na, 2}};
    const struct adamw_range *rs[] = {r1, r2, r3};
    const int nr[] = {2, 1, 2};
    for (int s = 1; s <= 3; s++) {
        char name[32], what[48];
        snprintf(name, sizeof name, "adamw/g%d", s);
        float *g = gold(name, n);
        adamw_update_ranges(p, g, m, v, rs[s - 1], nr[s - 1], &cfg);

        /* Float32 on both sides in the same order of operations: a few ulp
         * of |p| <= 4 (2e-7 absolute), 5000 times below one step's size. */
        snprintf(name, sizeof name, "adamw/p%d", s);
        snprintf(what, sizeof what, "adamw params after step %d", s);
        TU_CLOSE(what, p, gold(name, n), n, 2e-7, 1e-7);
    }
    TU_CLOSE("adamw exp_avg after 3", m, gold("adamw/m3", n), n, 1e-8, 1e-6);
    TU_CLOSE("adamw exp_avg_sq after 3", v, gold("adamw/v3", n), n, 1e-10, 1e-6);
}

int main(void)
{
    ref = tu_ref_path("layers.h5");
    if (!sn_file_exists(ref))
        tu_skip("golden file %s missing (tests/ref_layers.py needs torch and h5py)", ref);

    check_conv1x1("conv1x1", 30, 7, 5);
    check_conv1x1("conv1x1_head", 30, 7, 1);
    check_conv3x3(1);
    check_conv3x3(3);
    check_conv3x3(8);
    check_batchnorm();
    check_norms();
    check_upsample("up_ac", 2, 1, 5, 6, 17, 13, UPSAMPLE_ALIGN_CORNERS);
    check_upsample("up_ac_head", 1, 1, 49, 49, 392, 392, UPSAMPLE_ALIGN_CORNERS);
    check_upsample("up_hp", 2, 3, 5, 6, 11, 14, UPSAMPLE_HALF_PIXEL);
    check_upsample("up_hp_down", 1, 2, 9, 8, 4, 5, UPSAMPLE_HALF_PIXEL);
    check_focal();
    check_adamw();
    release_all();
    return tu_finish("test_layers_golden");
}
