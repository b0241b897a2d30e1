/*
 * test_layers.c - finite-difference checks of every backward pass in
 * kernels/layers.h, plus direct checks of the pieces without a gradient
 * (scan orders, cell packing, AdamW, dropout statistics, determinism).
 *
 * Each layer is wrapped as a scalar loss L = sum_i r_i y_i with a fixed
 * random r, so the analytic gradient of L is the backward pass fed with
 * dy = r. Central differences run the float forward pass at theta +- h with
 * h = 1e-2 and sum L in double. Tolerance: the truncation error is
 * O(h^2 |L'''|) ~ 1e-4 and float rounding of y contributes about
 * 1e-7 sum|r y| / 2h ~ 1e-4 at these sizes, so |numeric - analytic| must stay
 * within 1e-3 + 1e-2 |numeric|; a wrong formula misses by O(1), and a
 * planted 3 % error is shown to be caught.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/layers.h"
#include "testutil.h"

#define FD_H 1e-2f
#define FD_ATOL 1e-3
#define FD_RTOL 1e-2

static struct rng_state rng;

/* Every buffer of the test, released together at the end. */
static void *owned[512];
static int nowned;

static float *buf(long n)
{
    if (nowned == (int)SN_ARRAY_LEN(owned)) abort();
    float *p = calloc((size_t)(n ? n : 1), sizeof(float));
    if (!p) abort();
    owned[nowned++] = p;
    return p;
}

static float *randn(long n, float scale)
{
    float *p = buf(n);
    rng_fill_normal(&rng, p, n, scale);
    return p;
}

/* A layer under test: fwd() recomputes y from the current inputs. */
struct fcase {
    void (*fwd)(struct fcase *c);
    double (*loss)(struct fcase *c); /* NULL: L = sum r y */
    float *y, *r;
    long ny;
    float *x, *w, *b, *s1, *s2; /* inputs, parameters, saved statistics */
    long n;
    int c_in, c_out;
    float p, alpha, gamma;
    float h; /* finite-difference step; 0 means FD_H */
    struct conv3x3_shape shape;
    enum upsample_align align;
    float *work;
    uint8_t *mask;
};

static double fcase_loss(struct fcase *c)
{
    if (c->loss) return c->loss(c);
    c->fwd(c);
    double s = 0;
    for (long i = 0; i < c->ny; i++)
        s += (double)c->y[i] * c->r[i];
    return s;
}

/* Central differences of the loss w.r.t. every entry of theta, compared
 * with grad; returns 1 when all agree (prints the worst either way). */
static int fd_agree(const char *what, struct fcase *c, float *theta, const float *grad,
                    long n)
{
    float *num = buf(n), h = c->h > 0 ? c->h : FD_H;
    for (long i = 0; i < n; i++) {
        float t = theta[i];
        theta[i] = t + h;
        float up = theta[i];
        double lp = fcase_loss(c);
        theta[i] = t - h;
        float dn = theta[i];
        double lm = fcase_loss(c);
        theta[i] = t;
        num[i] = (float)((lp - lm) / ((double)up - dn));
    }
    return tu_close(what, grad, num, n, FD_ATOL, FD_RTOL);
}

static void fd_check(const char *what, struct fcase *c, float *theta, const float *grad,
                     long n)
{
    TU_CHECK_MSG(fd_agree(what, c, theta, grad, n), "%s: backward disagrees", what);
}

/* ------------------------------------------------------------------------ */
/* conv1x1 */

static void conv1x1_fwd(struct fcase *c)
{
    conv1x1_forward(c->y, c->x, c->w, c->b, c->n, c->c_in, c->c_out);
}

static void test_conv1x1(void)
{
    struct fcase c = {.fwd = conv1x1_fwd, .n = 6, .c_in = 4, .c_out = 3};
    c.ny = c.n * c.c_out;
    c.x = randn(c.n * c.c_in, 1), c.w = randn(12, 0.5f), c.b = randn(3, 1);
    c.y = buf(c.ny), c.r = randn(c.ny, 1);
    float *dx = buf(c.n * c.c_in), *dw = buf(12), *db = buf(3);

    conv1x1_backward(dx, dw, db, c.r, c.x, c.w, c.n, c.c_in, c.c_out);
    fd_check("conv1x1 dx", &c, c.x, dx, c.n * c.c_in);
    fd_check("conv1x1 dw", &c, c.w, dw, 12);
    fd_check("conv1x1 db", &c, c.b, db, 3);

    /* A planted 3 % error in one entry is caught: the check can fail. */
    dw[5] *= 1.03f;
    fprintf(stderr, "  (the next line must report a failure)\n");
    TU_CHECK(!fd_agree("conv1x1 dw, planted error", &c, c.w, dw, 12));
}

/* ------------------------------------------------------------------------ */
/* conv3x3 */

static void conv3x3_fwd(struct fcase *c)
{
    conv3x3_forward(c->y, c->x, c->w, c->b, &c->shape, c->work);
}

static void test_conv3x3_fd(int dil)
{
    struct fcase c = {.fwd = conv3x3_fwd, .shape = {2, 4, 5, 3, 4, dil}};
    long nx = 2L * 4 * 5 * 3, nw = 4L * 3 * 9;
    char what[64];
    c.ny = 2L * 4 * 5 * 4;
    c.x = randn(nx, 1), c.w = randn(nw, 0.3f), c.b = randn(4, 1);
    c.y = buf(c.ny), c.r = randn(c.ny, 1);
    c.work = buf((long)conv3x3_work_floats(&c.shape));
    float *dx = buf(nx), *dw = buf(nw), *db = buf(4);

    conv3x3_backward(dx, dw, db, c.r, c.x, c.w, &c.shape, c.work);
    snprintf(what, sizeof what, "conv3x3 dil %d dx", dil);
    fd_check(what, &c, c.x, dx, nx);
    snprintf(what, sizeof what, "conv3x3 dil %d dw", dil);
    fd_check(what, &c, c.w, dw, nw);
    snprintf(what, sizeof what, "conv3x3 dil %d db", dil);
    fd_check(what, &c, c.b, db, 4);
}

/* Direct double-precision conv3x3 and its gradients, loop by loop. */
static void conv3x3_naive(double *y, double *dx, double *dw, const float *x,
                          const float *w, const float *dy, const struct conv3x3_shape *s)
{
    int h = s->h, wd = s->w, ci = s->c_in, co = s->c_out, r = s->dil;
    for (int m = 0; m < s->n; m++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < wd; xx++)
                for (int t = 0; t < 9; t++) {
                    int sy = yy + (t / 3 - 1) * r, sx = xx + (t % 3 - 1) * r;
                    if (sy < 0 || sy >= h || sx < 0 || sx >= wd) continue;
                    long out = (((long)m * h + yy) * wd + xx) * co;
                    long in = (((long)m * h + sy) * wd + sx) * ci;
                    for (int o = 0; o < co; o++)
                        for (int k = 0; k < ci; k++) {
                            double wv = w[((long)o * ci + k) * 9 + t];
                            y[out + o] += wv * x[in + k];
                            dx[in + k] += wv * dy[out + o];
                            dw[((long)o * ci + k) * 9 + t] +=
                                (double)dy[out + o] * x[in + k];
                        }
                }
}

static void to_float(float *dst, const double *src, long n)
{
    for (long i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

/* Bigger maps (40 x 50, dilation 7, five maps) against the direct loops:
 * outputs and input gradients sum at most 27 products of O(1) (1e-4);
 * weight gradients sum 10,000 (magnitude ~100, so 1e-3). */
static void test_conv3x3_direct(void)
{
    struct conv3x3_shape s = {5, 40, 50, 3, 2, 7};
    long nx = 5L * 2000 * 3, ny = 5L * 2000 * 2, nw = 2L * 3 * 9;
    float *x = randn(nx, 1), *w = randn(nw, 0.3f), *dy = randn(ny, 1);
    float *y = buf(ny), *dx = buf(nx), *dw = buf(nw), *db = buf(2);
    float *work = buf((long)conv3x3_work_floats(&s));
    double *ry = calloc((size_t)(ny + nx + nw), sizeof(double));
    float *want = buf(nx);

    conv3x3_forward(y, x, w, NULL, &s, work);
    conv3x3_backward(dx, dw, db, dy, x, w, &s, work);
    conv3x3_naive(ry, ry + ny, ry + ny + nx, x, w, dy, &s);
    to_float(want, ry, ny);
    TU_CLOSE("conv3x3 40x50 y vs direct", y, want, ny, 1e-4, 1e-5);
    to_float(want, ry + ny, nx);
    TU_CLOSE("conv3x3 40x50 dx vs direct", dx, want, nx, 1e-4, 1e-5);
    to_float(want, ry + ny + nx, nw);
    TU_CLOSE("conv3x3 40x50 dw vs direct", dw, want, nw, 1e-3, 1e-5);
    free(ry);
}

/* ------------------------------------------------------------------------ */
/* BatchNorm, RMSNorm, LayerNorm */

static void batchnorm_fwd(struct fcase *c)
{
    batchnorm_forward_train(c->y, c->s1, c->s2, c->x, c->w, c->b, NULL, NULL, c->n,
                            c->c_in, LAYERS_BN_MOMENTUM, LAYERS_NORM_EPS);
}

static void test_batchnorm(void)
{
    struct fcase c = {.fwd = batchnorm_fwd, .n = 12, .c_in = 3};
    c.ny = 36;
    c.x = randn(36, 1.5f), c.w = randn(3, 1), c.b = randn(3, 1);
    c.s1 = buf(3), c.s2 = buf(3), c.y = buf(36), c.r = randn(36, 1);
    float *dx = buf(36), *dg = buf(3), *dbt = buf(3);

    c.fwd(&c);
    batchnorm_backward(dx, dg, dbt, c.r, c.x, c.s1, c.s2, c.w, c.n, c.c_in);
    fd_check("batchnorm dx", &c, c.x, dx, 36);
    fd_check("batchnorm dgamma", &c, c.w, dg, 3);
    fd_check("batchnorm dbeta", &c, c.b, dbt, 3);

    /* Running statistics: momentum 0.1 towards the batch mean and the
     * unbiased (n - 1) variance. */
    float rm[3] = {0.5f, -1, 2}, rv[3] = {1, 2, 0.5f}, want_m[3], want_v[3];
    for (int k = 0; k < 3; k++) {
        double s = 0, q = 0;
        for (int i = 0; i < 12; i++)
            s += c.x[i * 3 + k];
        for (int i = 0; i < 12; i++)
            q += pow(c.x[i * 3 + k] - s / 12, 2);
        want_m[k] = (float)(0.9 * rm[k] + 0.1 * s / 12);
        want_v[k] = (float)(0.9 * rv[k] + 0.1 * q / 11);
    }
    batchnorm_forward_train(c.y, c.s1, c.s2, c.x, c.w, c.b, rm, rv, c.n, 3, 0.1f, 1e-5f);
    TU_CLOSE("batchnorm running mean", rm, want_m, 3, 1e-6, 1e-6);
    TU_CLOSE("batchnorm running var", rv, want_v, 3, 1e-6, 1e-6);
}

static void rmsnorm_fwd(struct fcase *c)
{
    rmsnorm_forward(c->y, c->s1, c->x, c->w, c->n, c->c_in, LAYERS_NORM_EPS);
}

static void layernorm_fwd(struct fcase *c)
{
    layernorm_forward(c->y, c->s1, c->s2, c->x, c->w, c->b, c->n, c->c_in,
                      LAYERS_NORM_EPS);
}

static void test_norms(void)
{
    struct fcase c = {.fwd = rmsnorm_fwd, .n = 3, .c_in = 6};
    c.ny = 18;
    c.x = randn(18, 1.5f), c.w = randn(6, 1), c.b = randn(6, 1);
    c.s1 = buf(3), c.s2 = buf(3), c.y = buf(18), c.r = randn(18, 1);
    float *dx = buf(18), *dw = buf(6), *db = buf(6);

    c.fwd(&c);
    rmsnorm_backward(dx, dw, c.r, c.x, c.s1, c.w, c.n, c.c_in);
    fd_check("rmsnorm dx", &c, c.x, dx, 18);
    fd_check("rmsnorm dw", &c, c.w, dw, 6);

    c.fwd = layernorm_fwd;
    memset(dw, 0, sizeof(float) * 6);
    c.fwd(&c);
    layernorm_backward(dx, dw, db, c.r, c.x, c.s1, c.s2, c.w, c.n, c.c_in);
    fd_check("layernorm dx", &c, c.x, dx, 18);
    fd_check("layernorm dw", &c, c.w, dw, 6);
    fd_check("layernorm db", &c, c.b, db, 6);
}

/* ------------------------------------------------------------------------ */
/* Activations, dropout, channel mean */

static void relu_fwd(struct fcase *c)
{
    relu_forward(c->y, c->x, c->n);
}
static void sigmoid_fwd(struct fcase *c)
{
    sigmoid_forward(c->y, c->x, c->n);
}
static void silu_fwd(struct fcase *c)
{
    silu_forward(c->y, c->x, c->n);
}

static void test_activations(void)
{
    struct fcase c = {.fwd = relu_fwd, .n = 24, .ny = 24};
    c.x = buf(24), c.y = buf(24), c.r = randn(24, 1);
    float *dx = buf(24);

    /* Inputs at least 0.1 away from ReLU's kink, some large for sigmoid. */
    for (int i = 0; i < 24; i++)
        c.x[i] = (i % 2 ? 1 : -1) *
                 (0.1f + 0.4f * (float)rng_uniform(&rng) + (i % 5 == 0 ? 6 : 0));

    c.fwd(&c);
    relu_backward(dx, c.r, c.y, c.n);
    fd_check("relu dx", &c, c.x, dx, 24);

    c.fwd = sigmoid_fwd;
    c.fwd(&c);
    sigmoid_backward(dx, c.r, c.y, c.n);
    fd_check("sigmoid dx", &c, c.x, dx, 24);

    c.fwd = silu_fwd;
    silu_backward(dx, c.r, c.x, c.n);
    fd_check("silu dx", &c, c.x, dx, 24);

    /* In place: y over x and dx over dy give the same results. */
    float *xy = buf(24), *g = buf(24);
    memcpy(xy, c.x, sizeof(float) * 24);
    memcpy(g, c.r, sizeof(float) * 24);
    sigmoid_forward(xy, xy, 24);
    sigmoid_forward(c.y, c.x, 24);
    sigmoid_backward(g, g, xy, 24);
    sigmoid_backward(dx, c.r, c.y, 24);
    TU_CHECK(memcmp(xy, c.y, sizeof(float) * 24) == 0);
    TU_CHECK(memcmp(g, dx, sizeof(float) * 24) == 0);
}

static void dropout_fwd(struct fcase *c)
{
    struct rng_state r;
    rng_seed(&r, 7, 1); /* the same mask at every evaluation */
    dropout_forward(c->y, c->mask, c->x, c->n, c->p, 1, &r);
}

static void test_dropout(void)
{
    struct fcase c = {.fwd = dropout_fwd, .n = 40, .ny = 40, .p = 0.3f};
    uint8_t mask[40];
    c.mask = mask, c.x = randn(40, 1), c.y = buf(40), c.r = randn(40, 1);
    float *dx = buf(40);

    c.fwd(&c);
    dropout_backward(dx, c.r, mask, c.n, c.p);
    fd_check("dropout dx", &c, c.x, dx, 40);

    /* Statistics: keep rate 0.7 within 3.4 sigma at n = 1e5, kept values
     * scaled by 1 / 0.7. */
    long n = 100000, kept = 0, scaled = 0;
    float *x = buf(n), *y = buf(n);
    uint8_t *m = malloc((size_t)n);
    for (long i = 0; i < n; i++)
        x[i] = 1.0f;
    dropout_forward(y, m, x, n, 0.3f, 1, &rng);
    for (long i = 0; i < n; i++) {
        kept += m[i];
        scaled += m[i] ? fabsf(y[i] - 1.0f / 0.7f) < 1e-6f : y[i] == 0.0f;
    }
    TU_CHECK_MSG(fabs(kept / (double)n - 0.7) < 0.005, "kept fraction %g",
                 kept / (double)n);
    TU_CHECK(scaled == n);

    /* Eval mode: identity, all-keep mask, no draw from the generator. */
    struct rng_state before = rng;
    dropout_forward(y, m, c.x, 40, 0.3f, 0, &rng);
    TU_CHECK(memcmp(y, c.x, sizeof(float) * 40) == 0);
    TU_CHECK(m[0] == 1 && m[39] == 1 && memcmp(&before, &rng, sizeof rng) == 0);
    free(m);
}

static void channel_mean_fwd(struct fcase *c)
{
    channel_mean_forward(c->y, c->x, c->n, c->c_in);
}

static void test_channel_mean(void)
{
    struct fcase c = {.fwd = channel_mean_fwd, .n = 5, .c_in = 7, .ny = 5};
    c.x = randn(35, 1), c.y = buf(5), c.r = randn(5, 1);
    float *dx = buf(35);
    channel_mean_backward(dx, c.r, c.n, c.c_in);
    fd_check("channel mean dx", &c, c.x, dx, 35);
}

/* ------------------------------------------------------------------------ */
/* Bilinear resampling */

static void upsample_fwd(struct fcase *c)
{
    upsample_bilinear_forward(c->y, c->x, 2, 3, 4, 5, 7, 2, c->align);
}

static void test_upsample(enum upsample_align align)
{
    struct fcase c = {.fwd = upsample_fwd, .ny = 2L * 5 * 7 * 2, .align = align};
    c.x = randn(48, 1), c.y = buf(c.ny), c.r = randn(c.ny, 1);
    float *dx = buf(48);

    upsample_bilinear_backward(dx, c.r, 2, 3, 4, 5, 7, 2, align);
    fd_check(align ? "upsample align_corners dx" : "upsample half-pixel dx", &c, c.x, dx,
             48);

    /* A constant map stays constant; aligned corners are copied. */
    float one[12], out[35];
    for (int i = 0; i < 12; i++)
        one[i] = 2.5f;
    upsample_bilinear_forward(out, one, 1, 3, 4, 5, 7, 1, align);
    int flat = 1;
    for (int i = 0; i < 35; i++)
        flat &= fabsf(out[i] - 2.5f) < 1e-6f;
    TU_CHECK(flat);
    if (align == UPSAMPLE_ALIGN_CORNERS) {
        c.fwd(&c);
        TU_CHECK(c.y[0] == c.x[0] && c.y[1] == c.x[1]);
        /* Last cell of each map, both channels: y has 35 cells per map. */
        TU_CHECK(c.y[c.ny - 1] == c.x[47] && c.y[34 * 2 + 1] == c.x[11 * 2 + 1]);
    }
}

/* ------------------------------------------------------------------------ */
/* Focal loss */

/* The focal losses are checked as sums (n times the mean), so that the
 * gradients are O(0.1) and the absolute tolerance means something. */
static double focal_logit_loss(struct fcase *c)
{
    return c->n * focal_loss_logit(c->x, c->r, c->n, c->alpha, c->gamma, NULL, 1.0f);
}

static double focal_prob_loss(struct fcase *c)
{
    return c->n * focal_loss_prob(c->x, c->r, c->n, c->alpha, c->gamma, NULL, 1.0f);
}

static void test_focal_fd(float alpha, float gamma)
{
    struct fcase c = {.loss = focal_logit_loss, .n = 30, .alpha = alpha, .gamma = gamma};
    char what[64];
    c.x = randn(30, 2), c.r = buf(30);
    for (int i = 0; i < 30; i++)
        c.r[i] = rng_uniform(&rng) < 0.4;
    float *g = buf(30);

    /* scale weights the gradient (here as for one of four heads). */
    focal_loss_logit(c.x, c.r, c.n, alpha, gamma, g, 0.25f);
    for (int i = 0; i < 30; i++)
        g[i] *= 4.0f * 30;
    snprintf(what, sizeof what, "focal logit a=%g g=%g dlogit", alpha, gamma);
    fd_check(what, &c, c.x, g, 30);

    /* Probabilities kept away from the clamp at 0. -log p curves strongly
     * (third derivative up to 2/0.2^3), so the step is 1e-3: truncation
     * 3e-5, and only the perturbed pixel's float rounding (1e-7 / 2h = 5e-5)
     * is noise, since the other pixels' terms cancel exactly. */
    c.loss = focal_prob_loss;
    c.h = 1e-3f;
    for (int i = 0; i < 30; i++)
        c.x[i] = 0.2f + 0.7f * (float)rng_uniform(&rng);
    focal_loss_prob(c.x, c.r, c.n, alpha, gamma, g, 1.0f);
    for (int i = 0; i < 30; i++)
        g[i] *= 30;
    snprintf(what, sizeof what, "focal prob a=%g g=%g dp", alpha, gamma);
    fd_check(what, &c, c.x, g, 30);
}

/* Saturated logits: finite, and the limits of the formula. */
static void test_focal_extremes(void)
{
    float x[4] = {-100, 100, 1e4f, -1e4f}, t[4] = {1, 1, 0, 0}, g[4];
    double loss = focal_loss_logit(x, t, 4, 0.25f, 4.0f, g, 1.0f);

    /* A confident miss costs alpha_t * |logit| and pulls with alpha_t / n;
     * a confident hit costs nothing. */
    double want = (0.25 * 100 + 0.75 * 1e4) / 4;
    TU_CHECK_MSG(fabs(loss - want) < 1e-3 * want, "loss %g want %g", loss, want);
    TU_CHECK(fabsf(g[0] + 0.25f / 4) < 1e-7f && fabsf(g[2] - 0.75f / 4) < 1e-7f);
    TU_CHECK(g[1] == 0.0f && g[3] == 0.0f);

    /* Probabilities 0 and 1 on the wrong side are clamped, not infinite. */
    float p[2] = {0, 1}, tp[2] = {1, 0}, gp[2];
    loss = focal_loss_prob(p, tp, 2, 0.5f, 4.0f, gp, 1.0f);
    TU_CHECK(isfinite(loss) && gp[0] == 0.0f && gp[1] == 0.0f);
}

/* ------------------------------------------------------------------------ */
/* Cell packing, scan orders */

static void test_cells(void)
{
    const int n = 12, k = 5, c = 3, idx[5] = {7, 0, 11, 3, 4};
    float *x = randn(n * c, 1), *s = randn(k * c, 1), *gx = buf(k * c);
    float *sx = buf(n * c), *back = buf(k * c);

    /* scatter_add is the adjoint of gather: <gather x, s> = <x, scatter s>. */
    cells_gather(gx, x, idx, k, c);
    cells_scatter_add(sx, s, idx, k, c);
    double a = 0, b = 0;
    for (int i = 0; i < k * c; i++)
        a += (double)gx[i] * s[i];
    for (int i = 0; i < n * c; i++)
        b += (double)x[i] * sx[i];
    TU_CHECK_MSG(fabs(a - b) < 1e-5, "adjoint %g vs %g", a, b);
    TU_CHECK(gx[3] == x[0] && gx[2] == x[7 * 3 + 2]);

    /* scatter then gather returns the rows; other rows stay untouched. */
    memcpy(sx, x, sizeof(float) * n * c);
    cells_scatter(sx, s, idx, k, c);
    cells_gather(back, sx, idx, k, c);
    TU_CHECK(memcmp(back, s, sizeof(float) * k * c) == 0);
    TU_CHECK(sx[1 * c] == x[1 * c] && sx[10 * c + 2] == x[10 * c + 2]);
}

static void test_scans(void)
{
    /* A 2 x 3 grid: cells 0 1 2 / 3 4 5. */
    const int want[4][6] = {
        {0, 1, 2, 3, 4, 5}, {0, 3, 1, 4, 2, 5}, {5, 4, 3, 2, 1, 0}, {5, 2, 4, 1, 3, 0}};
    int perm[6], inv[6];
    for (int s = 0; s < SCAN_ORDERS; s++) {
        scan_perm(perm, 2, 3, (enum scan_order)s);
        TU_CHECK_MSG(memcmp(perm, want[s], sizeof perm) == 0, "scan order %d", s);
        scan_perm_inverse(inv, perm, 6);
        int ok = 1;
        for (int t = 0; t < 6; t++)
            ok &= inv[perm[t]] == t && perm[inv[t]] == t;
        TU_CHECK_MSG(ok, "inverse of scan order %d", s);
    }

    /* Round trip of a 49 x 49 map through a column scan. */
    int *p = malloc(sizeof(int) * 2401), *q = malloc(sizeof(int) * 2401);
    float *map = randn(2401 * 2, 1), *seq = buf(2401 * 2), *back = buf(2401 * 2);
    scan_perm(p, 49, 49, SCAN_COL_REV);
    scan_perm_inverse(q, p, 2401);
    cells_gather(seq, map, p, 2401, 2);
    cells_gather(back, seq, q, 2401, 2);
    TU_CHECK(memcmp(back, map, sizeof(float) * 2401 * 2) == 0);
    TU_CHECK(seq[0] == map[2400 * 2] && seq[2 * 2] == map[(2400 - 2 * 49) * 2]);
    free(p);
    free(q);
}

/* ------------------------------------------------------------------------ */
/* AdamW */

static void test_adamw(void)
{
    const long n = 10;
    float *p = randn(n, 1), *g = randn(n, 1), *m = buf(n), *v = buf(n), *p0 = buf(n);
    struct adamw_config cfg;
    adamw_config_default(&cfg, 1e-3, 0.05);
    memcpy(p0, p, sizeof(float) * n);

    /* Only entries 2..7 move. At step 1 the bias-corrected moments are g
     * and g^2: p = p0 (1 - lr wd) - lr g / (|g| + eps). */
    struct adamw_range r = {2, 6, 1};
    adamw_update_ranges(p, g, m, v, &r, 1, &cfg);
    int ok = 1;
    for (long i = 0; i < n; i++) {
        if (i < 2 || i >= 8) {
            ok &= p[i] == p0[i] && m[i] == 0.0f && v[i] == 0.0f;
            continue;
        }
        double want = p0[i] * (1 - 1e-3 * 0.05) - 1e-3 * g[i] / (fabs(g[i]) + 1e-8);
        ok &= fabs(p[i] - want) < 3e-7;
    }
    TU_CHECK_MSG(ok, "AdamW first step");

    /* With a zero gradient only the decoupled decay acts on fresh moments. */
    float q = 2.0f, zero = 0.0f, mq = 0, vq = 0;
    adamw_update(&q, &zero, &mq, &vq, 1, 1, &cfg);
    TU_CHECK(q == (float)(2.0f * (float)(1 - 1e-3 * 0.05)));
}

/* ------------------------------------------------------------------------ */
/* Reductions do not depend on the number of threads. */

static void run_reductions(float *out, const float *x, const float *dy, long n, int c)
{
    float mean[40], rstd[40];
    float *y = buf(n * c), *dx = buf(n * c);
    memset(out, 0, sizeof(float) * 5 * c);
    batchnorm_forward_train(y, mean, rstd, x, out, out + c, NULL, NULL, n, c, 0.1f,
                            1e-5f);
    memcpy(out + 2 * c, rstd, sizeof(float) * c);
    batchnorm_backward(dx, out + 3 * c, out + 4 * c, dy, x, mean, rstd, y, n, c);
    out[0] = (float)focal_loss_logit(x, dy, n * c, 0.25f, 4.0f, NULL, 1.0f);
}

static void test_determinism(void)
{
    const long n = 20000;
    const int c = 40;
    float *x = randn(n * c, 2), *dy = randn(n * c, 1);
    float *one = buf(5 * c), *two = buf(5 * c);
    int threads = omp_get_max_threads();

    omp_set_num_threads(1);
    run_reductions(one, x, dy, n, c);
    omp_set_num_threads(3);
    run_reductions(two, x, dy, n, c);
    omp_set_num_threads(threads);
    TU_CHECK_MSG(memcmp(one, two, sizeof(float) * 5 * c) == 0,
                 "reductions differ between 1 and 3 threads");
}

int main(void)
{
    rng_seed(&rng, 2024, 5);
    test_conv1x1();
    for (int dil = 1; dil <= 4; dil *= 2)
        test_conv3x3_fd(dil);
    test_conv3x3_direct();
    test_batchnorm();
    test_norms();
    test_activations();
    test_dropout();
    test_channel_mean();
    test_upsample(UPSAMPLE_ALIGN_CORNERS);
    test_upsample(UPSAMPLE_HALF_PIXEL);
    test_focal_fd(0.25f, 4.0f);
    test_focal_fd(0.5f, 4.0f);
    test_focal_fd(0.25f, 1.5f);
    test_focal_extremes();
    test_cells();
    test_scans();
    test_adamw();
    test_determinism();
    while (nowned > 0)
        free(owned[--nowned]);
    return tu_finish("test_layers");
}
