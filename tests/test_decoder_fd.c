/*
 * test_decoder_fd.c - finite-difference checks of the decoder's whole
 * backward pass, and its other unit properties.
 *
 * The loss of one training forward (navigator focal term plus the mean of
 * the active branch's head terms) is a function of every parameter of the
 * navigator and that branch. For each such tensor the analytic gradient g
 * is checked along two directions v (|v| = 1): g itself, where the central
 * difference (L(p + h v) - L(p - h v)) / 2h must give |g|, and a random
 * one, where it must give g . v. Shapes are tiny (grid 5, d 6, e 4, output
 * 16, two images) and dropout is ON: every forward re-seeds the same masks.
 * Variants cover the ablation switches (no hybrid residual, no navigation).
 *
 * Steps. The heads' ReLUs make the loss piecewise smooth: a difference
 * quotient is only valid when no ReLU input changes sign between p - h v
 * and p + h v (and the self-reference set does not change), which the test
 * checks on the heads' activations; h = 1e-4 is tried first, then smaller
 * steps down to 1e-6.
 *
 * Tolerance: the model runs in float32, so the loss carries a rounding
 * noise of about 5e-9 (1e-7 of a loss near 0.03), which the difference
 * quotient turns into 5e-9 / h; the check allows that plus 3 % of |g| (the
 * gradient's scale, independent of the direction) for the O(h^2) terms,
 * while an error in a backward pass shows as an O(1) relative mismatch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "core/decoder.h"
#include "core/decoder_conv.h"
#include "core/decoder_internal.h"
#include "core/rng.h"
#include "kernels/layers.h"
#include "testutil.h"

#define NB 2
#define LOSS_NOISE 5e-9

struct fd_case {
    struct decoder dec;
    float *f, *R;
    uint8_t *mask;
    int *S0;
    uint8_t *relu0, *relu; /* which head ReLUs pass, at p and perturbed */
    long n_relu;
};

static void small_config(struct sn_config *cfg, int hybrid, int navigate)
{
    config_defaults(cfg);
    TU_CHECK(config_set(cfg, "features.grid", "5") == SN_OK);
    TU_CHECK(config_set(cfg, "features.dim", "6") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.embed", "4") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.dilations", "[1, 2]") == SN_OK);
    TU_CHECK(config_set(cfg, "matching.self_ref_percent", "60") == SN_OK);
    TU_CHECK(config_set(cfg, "data.crop", "16") == SN_OK);
    TU_CHECK(config_set(cfg, "matching.hybrid", hybrid ? "true" : "false") == SN_OK);
    TU_CHECK(config_set(cfg, "matching.navigate", navigate ? "true" : "false") == SN_OK);
    if (getenv("FD_DROPOUT"))
        TU_CHECK(config_set(cfg, "decoder.dropout", getenv("FD_DROPOUT")) == SN_OK);
}

/* Move every parameter a little off its initial value (norm weights off 1,
 * biases off 0) so that no term of the backward pass is trivially zero. */
static void perturb(struct decoder *dec, struct rng_state *rng)
{
    for (int i = 0; i < dec->n_tensors; i++) {
        float *p = dec->params + dec->tensors[i].offset;
        for (long j = 0; j < dec->tensors[i].count; j++)
            p[j] += 0.1f * (float)(2 * rng_uniform(rng) - 1);
    }
}

static void case_init(struct fd_case *c, int hybrid, int navigate)
{
    struct sn_config cfg;
    struct decoder_dims dd;
    struct rng_state rng;
    small_config(&cfg, hybrid, navigate);
    TU_CHECK(decoder_dims_from_config(&dd, &cfg) == SN_OK);
    decoder_init(&c->dec, &dd);
    rng_seed(&rng, 11, 1);
    decoder_params_init(&c->dec, &rng);
    perturb(&c->dec, &rng);
    decoder_reserve(&c->dec, NB, 1);

    /* Features, a non-negative residual with a planted blob, its mask. */
    long nf = (long)NB * dd.M * dd.d, px = (long)dd.out * dd.out;
    c->f = malloc(sizeof(float) * nf);
    c->R = malloc(sizeof(float) * nf);
    c->mask = calloc((size_t)(NB * px), 1);
    for (long i = 0; i < nf; i++) {
        c->f[i] = (float)rng_normal(&rng);
        c->R[i] = 0.3f * (float)rng_uniform(&rng);
    }
    for (int b = 0; b < NB; b++) {
        int cell = 6 + 7 * b;
        for (int k = 0; k < dd.d; k++)
            c->R[((long)b * dd.M + cell) * dd.d + k] += 1.0f;
        for (int y = 3; y < 9; y++)
            for (int x = 3 + 4 * b; x < 9 + 4 * b; x++)
                c->mask[b * px + y * dd.out + x] = 1;
    }
    c->S0 = malloc(sizeof(int) * NB * dd.n_self);
    c->n_relu = (long)dd.scans * NB * dd.M * dd.e;
    c->relu0 = malloc((size_t)c->n_relu);
    c->relu = malloc((size_t)c->n_relu);
}

static void case_free(struct fd_case *c)
{
    decoder_free(&c->dec);
    free(c->f);
    free(c->R);
    free(c->mask);
    free(c->S0);
    free(c->relu0);
    free(c->relu);
}

/* The sign pattern of the active branch's head ReLUs in the latest pass. */
static void relu_pattern(const struct fd_case *c, uint8_t *out)
{
    const struct decoder_acts *A = c->dec.acts;
    long per = (long)NB * c->dec.dims.M * c->dec.dims.e;
    for (int s = 0; s < c->dec.dims.scans; s++)
        for (long i = 0; i < per; i++)
            out[s * per + i] = A->y[s][i] > 0;
}

/* Loss of one training forward of branch b (same dropout masks each time). */
static double loss_at(struct fd_case *c, int b)
{
    struct decoder_loss l;
    TU_CHECK(decoder_forward_train(&c->dec, c->f, c->R, NB, b, 99, 0) == SN_OK);
    decoder_loss(&c->dec, c->mask, 1.0f, &l);
    return l.nav + l.head;
}

/* Same self references and ReLU pattern as at the unperturbed point? */
static int same_region(struct fd_case *c)
{
    relu_pattern(c, c->relu);
    return !memcmp(decoder_self_refs(&c->dec), c->S0,
                   sizeof(int) * NB * c->dec.dims.n_self) &&
           !memcmp(c->relu, c->relu0, (size_t)c->n_relu);
}

/* Central difference of the loss along v over one tensor. */
static double fd_along(struct fd_case *c, int b, const struct decoder_tensor *t,
                       const float *v, double h, int *stable)
{
    float *p = c->dec.params + t->offset;
    float *save = malloc(sizeof(float) * t->count);
    memcpy(save, p, sizeof(float) * t->count);
    for (long j = 0; j < t->count; j++)
        p[j] = save[j] + (float)(h * v[j]);
    double lp = loss_at(c, b);
    *stable = same_region(c);
    for (long j = 0; j < t->count; j++)
        p[j] = save[j] - (float)(h * v[j]);
    double lm = loss_at(c, b);
    *stable = *stable && same_region(c);
    memcpy(p, save, sizeof(float) * t->count);
    free(save);
    return (lp - lm) / (2 * h);
}

/* The difference quotient at the largest valid step; *h receives it. */
static double fd_valid(struct fd_case *c, int b, const struct decoder_tensor *t,
                       const float *v, double *h)
{
    int stable = 0;
    double fd = 0;
    for (*h = 1e-4; *h >= 1e-6 && !stable; *h /= 10)
        fd = fd_along(c, b, t, v, *h, &stable);
    *h *= 10;
    TU_CHECK_MSG(stable, "%s: no step keeps the self references and ReLUs", t->name);
    return fd;
}

/* The exact steps the perturbation took (float rounding of p +- h v). */
static double dot_exact(const float *g, const float *v, long n)
{
    double s = 0;
    for (long j = 0; j < n; j++)
        s += (double)g[j] * v[j];
    return s;
}

static void check_tensor(struct fd_case *c, int b, const struct decoder_tensor *t,
                         struct rng_state *rng)
{
    const float *g = c->dec.grads + t->offset;
    float *v = malloc(sizeof(float) * t->count);
    double gn = sqrt(dot_exact(g, g, t->count));
    if (gn == 0) {
        TU_CHECK_MSG(0, "%s: zero gradient", t->name);
        free(v);
        return;
    }

    /* Along the gradient: the derivative is |g|. */
    double h;
    for (long j = 0; j < t->count; j++)
        v[j] = (float)(g[j] / gn);
    double fd = fd_valid(c, b, t, v, &h), an = dot_exact(g, v, t->count);
    TU_CHECK_MSG(fabs(fd - an) <= 0.03 * gn + LOSS_NOISE / h,
                 "%s along g: fd %.6g analytic %.6g (|g| %.3g, h %g)", t->name, fd, an,
                 gn, h);

    /* Along a random unit direction. */
    double vn = 0;
    for (long j = 0; j < t->count; j++) {
        v[j] = (float)rng_normal(rng);
        vn += (double)v[j] * v[j];
    }
    for (long j = 0; j < t->count; j++)
        v[j] = (float)(v[j] / sqrt(vn));
    fd = fd_valid(c, b, t, v, &h);
    an = dot_exact(g, v, t->count);
    TU_CHECK_MSG(fabs(fd - an) <= 0.03 * gn + LOSS_NOISE / h,
                 "%s random: fd %.6g analytic %.6g (|g| %.3g, h %g)", t->name, fd, an, gn,
                 h);
    free(v);
}

/* The gradients of the navigator and branch b, then every tensor's check. */
static void fd_branch(struct fd_case *c, int b)
{
    struct rng_state rng;
    struct decoder_loss l;
    rng_seed(&rng, 5, (uint64_t)b);
    decoder_grads_zero(&c->dec, b);
    TU_CHECK(decoder_forward_train(&c->dec, c->f, c->R, NB, b, 99, 0) == SN_OK);
    memcpy(c->S0, decoder_self_refs(&c->dec), sizeof(int) * NB * c->dec.dims.n_self);
    relu_pattern(c, c->relu0);
    decoder_loss(&c->dec, c->mask, 1.0f, &l);
    decoder_backward(&c->dec);

    int checked = 0;
    for (int i = 0; i < c->dec.n_tensors; i++) {
        const struct decoder_tensor *t = &c->dec.tensors[i];
        if (t->branch != -1 && t->branch != b) continue;
        /* A conv bias in front of train-mode BatchNorm has no effect. */
        if (strstr(t->name, ".head") && sn_ends_with(t->name, ".conv.b")) continue;
        check_tensor(c, b, t, &rng);
        checked++;
    }
    TU_CHECK(checked >= 20);
}

static void test_fd(int hybrid, int navigate)
{
    struct fd_case c;
    printf("finite differences: hybrid %d, navigate %d\n", hybrid, navigate);
    case_init(&c, hybrid, navigate);
    fd_branch(&c, 0);
    fd_branch(&c, 1);
    case_free(&c);
}

/* Inactive branches get no gradient; gradients accumulate across calls. */
static void test_grad_ranges(void)
{
    struct fd_case c;
    struct decoder_loss l;
    case_init(&c, 1, 1);
    memset(c.dec.grads, 0, sizeof(float) * c.dec.n_params);
    decoder_grads_zero(&c.dec, 1);
    TU_CHECK(decoder_forward_train(&c.dec, c.f, c.R, NB, 1, 3, 0) == SN_OK);
    decoder_loss(&c.dec, c.mask, 1.0f, &l);
    decoder_backward(&c.dec);
    long nz0 = 0;
    for (long i = 0; i < c.dec.br_count[0]; i++)
        nz0 += c.dec.grads[c.dec.br_offset[0] + i] != 0;
    TU_CHECK_MSG(nz0 == 0, "branch 0 got %ld gradient entries while branch 1 trained",
                 nz0);

    /* A second backward doubles the accumulated gradient. */
    float *g1 = malloc(sizeof(float) * c.dec.n_params);
    memcpy(g1, c.dec.grads, sizeof(float) * c.dec.n_params);
    TU_CHECK(decoder_forward_train(&c.dec, c.f, c.R, NB, 1, 3, 0) == SN_OK);
    decoder_loss(&c.dec, c.mask, 1.0f, &l);
    decoder_backward(&c.dec);
    /* (GEMMs with beta = 1 add partial sums onto the old value, so the
     * doubling is exact only to rounding at the tensor's scale.) */
    for (int i = 0; i < c.dec.n_tensors; i++) {
        const struct decoder_tensor *t = &c.dec.tensors[i];
        double scale = 0, diff = 0;
        for (long j = t->offset; j < t->offset + t->count; j++) {
            scale = fmax(scale, fabs(g1[j]));
            diff = fmax(diff, fabs(c.dec.grads[j] - 2.0 * g1[j]));
        }
        TU_CHECK_MSG(diff <= 1e-5 * scale, "%s: gradients do not accumulate", t->name);
    }
    free(g1);
    case_free(&c);
}

/* Prediction: the mean is the mean of the maps; maps are probabilities;
 * the result does not depend on the batch it is computed in. */
static void test_predict(void)
{
    struct fd_case c;
    case_init(&c, 1, 1);
    const struct decoder_dims *dd = &c.dec.dims;
    long nh = (long)dd->branches * dd->scans, px = (long)dd->out * dd->out;
    float *maps = malloc(sizeof(float) * NB * nh * px),
          *mean = malloc(sizeof(float) * NB * px);
    float *one = malloc(sizeof(float) * nh * px);
    TU_CHECK(decoder_predict(&c.dec, c.f, c.R, NB, maps, mean) == SN_OK);

    int ok = 1;
    for (long i = 0; i < NB * px; i++) {
        double s = 0;
        long b = i / px, p = i % px;
        for (long h = 0; h < nh; h++) {
            float m = maps[(b * nh + h) * px + p];
            ok = ok && m > 0 && m < 1;
            s += m;
        }
        ok = ok && fabs(s / nh - mean[i]) < 1e-6;
    }
    TU_CHECK_MSG(ok, "ensemble mean or probability range wrong");

    /* Image 1 alone gives its maps of the batch of two. */
    long fd = (long)dd->M * dd->d;
    TU_CHECK(decoder_predict(&c.dec, c.f + fd, c.R + fd, 1, one, NULL) == SN_OK);
    TU_CLOSE("batch independence", one, maps + nh * px, nh * px, 1e-6, 1e-5);
    free(maps);
    free(mean);
    free(one);
    case_free(&c);
}

/* Save and load reproduce every tensor; a file of other dimensions is
 * refused with the key that differs. */
static void test_save_load(void)
{
    struct fd_case c, d;
    char path[512];
    case_init(&c, 1, 1);
    snprintf(path, sizeof path, "%s/dec.h5", tu_tmpdir("decoder"));
    TU_CHECK(decoder_save(&c.dec, path) == SN_OK);

    struct decoder_dims dd = c.dec.dims;
    struct decoder e;
    decoder_init(&e, &dd);
    TU_CHECK(decoder_load(&e, path) == SN_OK);
    TU_CHECK(!memcmp(e.params, c.dec.params, sizeof(float) * c.dec.n_params));
    TU_CHECK(!memcmp(e.buffers, c.dec.buffers, sizeof(float) * c.dec.n_buffers));
    decoder_free(&e);

    case_init(&d, 0, 1);
    TU_CHECK_ERR(decoder_load(&d.dec, path), "in_ch");
    TU_CHECK_ERR(decoder_load(&d.dec, "/nonexistent/dec.h5"), "/nonexistent/dec.h5");
    case_free(&d);
    case_free(&c);
}

/* The valid-tap convolution against layers.h's im2col one (the same
 * function computed over every tap): forward, input, weight and bias
 * gradients, for dilations from 1 (Winograd) to beyond the grid and
 * c_in != c_out.
 * Both sum the same products in float, in different groupings: 1e-5. */
static void conv_vs_layers(int g)
{
    const int n = 3, ci = 5, co = 7, dils[] = {1, 2, 4, 8, 12};
    struct rng_state rng;
    rng_seed(&rng, 8, 8);
    long nx = (long)n * g * g * ci, ny = (long)n * g * g * co, nw = 9L * ci * co;
    float *x = malloc(sizeof(float) * nx), *dy = malloc(sizeof(float) * ny);
    float *w = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * co);
    float *y1 = malloc(sizeof(float) * ny), *y2 = malloc(sizeof(float) * ny);
    float *dx1 = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
    float *dw1 = calloc(nw, sizeof(float)), *dw2 = calloc(nw, sizeof(float));
    float *db1 = calloc(co, sizeof(float)), *db2 = calloc(co, sizeof(float));
    for (long i = 0; i < nx; i++)
        x[i] = (float)rng_normal(&rng);
    for (long i = 0; i < ny; i++)
        dy[i] = (float)rng_normal(&rng);
    for (long i = 0; i < nw; i++)
        w[i] = (float)rng_normal(&rng);
    for (int i = 0; i < co; i++)
        b[i] = (float)rng_normal(&rng);

    for (size_t k = 0; k < SN_ARRAY_LEN(dils); k++) {
        struct conv3x3_shape cs = {n, g, g, ci, co, dils[k]};
        struct dconv_plan p;
        dconv_plan_init(&p, g, dils[k]);
        float *w1 = malloc(sizeof(float) * conv3x3_work_floats(&cs));
        float *w2 = malloc(sizeof(float) * dconv_work_floats(g, n, ci, co, 2));
        conv3x3_forward(y1, x, w, b, &cs, w1);
        dconv_forward(y2, x, w, b, n, ci, co, &p, w2, 2);
        conv3x3_backward(dx1, dw1, db1, dy, x, w, &cs, w1);
        dconv_backward(dx2, dw2, db2, dy, x, w, n, ci, co, &p, w2, 2);
        char what[64];
        snprintf(what, sizeof what, "dconv forward, grid %d dilation %d", g, dils[k]);
        TU_CLOSE(what, y2, y1, ny, 1e-5, 1e-5);
        snprintf(what, sizeof what, "dconv input grad, grid %d dilation %d", g, dils[k]);
        TU_CLOSE(what, dx2, dx1, nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "dconv weight grad, grid %d dilation %d", g, dils[k]);
        TU_CLOSE(what, dw2, dw1, nw, 1e-4, 1e-5);
        TU_CLOSE("dconv bias grad", db2, db1, co, 1e-4, 1e-5);
        /* One class per combination of the per-axis cases present. */
        int seen[4] = {0}, cases = 0, cells = 0;
        for (int y = 0; y < g; y++)
            seen[(y - dils[k] >= 0) | (y + dils[k] < g) << 1] = 1;
        for (int c = 0; c < 4; c++)
            cases += seen[c];
        for (int c = 0; c < p.nclass; c++)
            cells += p.cls[c].ncells;
        TU_CHECK(p.nclass == cases * cases && cells == g * g);
        free(w1);
        free(w2);
        dconv_plan_free(&p);
    }
    free(x), free(dy), free(w), free(b), free(y1), free(y2);
    free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
}

/* Odd grids leave partial Winograd tiles at the border, even ones none. */
static void test_conv_vs_layers(void)
{
    conv_vs_layers(9);
    conv_vs_layers(8);
}

int main(void)
{
    test_conv_vs_layers();
    test_fd(1, 1);
    test_fd(0, 1);
    test_fd(1, 0);
    test_grad_ranges();
    test_predict();
    test_save_load();
    return tu_finish("decoder_fd");
}
