#include "resnet.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "rng.h"

/* BatchNorm epsilon of torchvision's ResNets. */
#define RESNET_BN_EPS 1e-5f

struct resnet_conv {
    int cin, cout, k, stride, pad;
    float *w, *b; /* BatchNorm folded in */
};

struct resnet_block {
    struct resnet_conv c1, c2, down;
    int has_down;
};

struct resnet {
    struct resnet_config c;
    struct resnet_conv stem;
    struct resnet_block *blocks[3];
    /* Activations for one input size. */
    int size;
    float *buf[3], *col, *out2, *out3;
};

int resnet_config_for_arch(const char *arch, struct resnet_config *c)
{
    if (strcmp(arch, "resnet18") != 0)
        return sn_error("unknown ResNet architecture '%s'", arch);
    *c = (struct resnet_config){.width = 64,
                                .blocks = {2, 2, 2},
                                .mean = {0.485f, 0.456f, 0.406f},
                                .std = {0.229f, 0.224f, 0.225f}};
    return SN_OK;
}

const struct resnet_config *resnet_config_of(const struct resnet *r)
{
    return &r->c;
}

static void resnet_conv_init(struct resnet_conv *cv, int cin, int cout, int k, int stride,
                             int pad)
{
    *cv = (struct resnet_conv){
        .cin = cin, .cout = cout, .k = k, .stride = stride, .pad = pad};
    cv->w = sn_aligned(sizeof(float) * (size_t)cout * cin * k * k);
    cv->b = sn_aligned(sizeof(float) * (size_t)cout);
}

static void resnet_conv_free(struct resnet_conv *cv)
{
    sn_free(cv->w);
    sn_free(cv->b);
}

/* The architecture: stem, then layers 1..3 of basic blocks. */
static struct resnet *resnet_alloc(const struct resnet_config *c)
{
    struct resnet *r = sn_calloc(1, sizeof *r);
    r->c = *c;
    resnet_conv_init(&r->stem, 3, c->width, 7, 2, 3);
    int cin = c->width;
    for (int l = 0; l < 3; l++) {
        int cout = c->width << l;
        r->blocks[l] = sn_calloc((size_t)c->blocks[l], sizeof(struct resnet_block));
        for (int b = 0; b < c->blocks[l]; b++) {
            struct resnet_block *bl = &r->blocks[l][b];
            int stride = (b == 0 && l > 0) ? 2 : 1;
            resnet_conv_init(&bl->c1, cin, cout, 3, stride, 1);
            resnet_conv_init(&bl->c2, cout, cout, 3, 1, 1);
            bl->has_down = stride != 1 || cin != cout;
            if (bl->has_down) resnet_conv_init(&bl->down, cin, cout, 1, stride, 0);
            cin = cout;
        }
    }
    return r;
}

void resnet_free(struct resnet *r)
{
    if (!r) return;
    resnet_conv_free(&r->stem);
    for (int l = 0; l < 3; l++) {
        for (int b = 0; b < r->c.blocks[l]; b++) {
            resnet_conv_free(&r->blocks[l][b].c1);
            resnet_conv_free(&r->blocks[l][b].c2);
            if (r->blocks[l][b].has_down) resnet_conv_free(&r->blocks[l][b].down);
        }
        sn_free(r->blocks[l]);
    }
    for (int i = 0; i < 3; i++)
        sn_free(r->buf[i]);
    sn_free(r->col);
    sn_free(r->out2);
    sn_free(r->out3);
    sn_free(r);
}

/* Visit every convolution with its torchvision conv and BatchNorm names. */
typedef int (*resnet_conv_fn)(void *ctx, struct resnet_conv *cv, const char *conv,
                              const char *bn);

static int resnet_each_conv(struct resnet *r, resnet_conv_fn fn, void *ctx)
{
    char cn[64], bn[64];
    int rc = fn(ctx, &r->stem, "conv1", "bn1");
    for (int l = 0; l < 3 && !rc; l++)
        for (int b = 0; b < r->c.blocks[l] && !rc; b++) {
            struct resnet_block *bl = &r->blocks[l][b];
            for (int j = 1; j <= 2 && !rc; j++) {
                snprintf(cn, sizeof cn, "layer%d.%d.conv%d", l + 1, b, j);
                snprintf(bn, sizeof bn, "layer%d.%d.bn%d", l + 1, b, j);
                rc = fn(ctx, j == 1 ? &bl->c1 : &bl->c2, cn, bn);
            }
            if (rc || !bl->has_down) continue;
            snprintf(cn, sizeof cn, "layer%d.%d.downsample.0", l + 1, b);
            snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", l + 1, b);
            rc = fn(ctx, &bl->down, cn, bn);
        }
    return rc;
}

/* Fold BatchNorm (eval mode) into the convolution: w' = w s, b' = beta - mu s
 * with s = gamma / sqrt(var + eps). */
static int resnet_fold_bn(struct st_file *f, struct resnet_conv *cv, const char *bn)
{
    char name[96];
    const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    float *v[4];
    long n = cv->cout;
    int rc = SN_OK;
    for (int i = 0; i < 4; i++) {
        v[i] = sn_malloc(sizeof(float) * (size_t)n);
        snprintf(name, sizeof name, "%s.%s", bn, part[i]);
        if (!rc) rc = st_read(f, name, 1, &n, v[i]);
    }
    for (int o = 0; o < cv->cout && !rc; o++) {
        float s = v[0][o] / sqrtf(v[3][o] + RESNET_BN_EPS);
        long kk = (long)cv->cin * cv->k * cv->k;
        for (long j = 0; j < kk; j++)
            cv->w[o * kk + j] *= s;
        cv->b[o] = v[1][o] - v[2][o] * s;
    }
    for (int i = 0; i < 4; i++)
        sn_free(v[i]);
    return rc;
}

static int resnet_load_conv(void *ctx, struct resnet_conv *cv, const char *conv,
                            const char *bn)
{
    struct st_file *f = ctx;
    char name[96];
    long dims[4] = {cv->cout, cv->cin, cv->k, cv->k}, nb = cv->cout;
    snprintf(name, sizeof name, "%s.weight", conv);
    int rc = st_read(f, name, 4, dims, cv->w);
    if (rc) return rc;

    /* A conv bias means the BatchNorm is already folded in. */
    snprintf(name, sizeof name, "%s.bias", conv);
    if (st_has(f, name)) return st_read(f, name, 1, &nb, cv->b);
    snprintf(name, sizeof name, "%s.weight", bn);
    if (!st_has(f, name))
        return sn_error("%s: convolution %s has neither a bias (folded BatchNorm) nor "
                        "BatchNorm tensors %s.*",
                        st_path(f), conv, bn);
    return resnet_fold_bn(f, cv, bn);
}

int resnet_load(const struct resnet_config *c, struct st_file *f, struct resnet **out)
{
    struct resnet *r = resnet_alloc(c);
    int rc = resnet_each_conv(r, resnet_load_conv, f);
    if (rc) {
        resnet_free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

static int resnet_random_conv(void *ctx, struct resnet_conv *cv, const char *conv,
                              const char *bn)
{
    struct rng_state *rng = ctx;
    long kk = (long)cv->cin * cv->k * cv->k, n = cv->cout * kk;
    double half = sqrt(2.0 / (double)kk) * sqrt(3.0); /* He std as a uniform */
    for (long i = 0; i < n; i++)
        cv->w[i] = (float)((2.0 * rng_uniform(rng) - 1.0) * half);
    memset(cv->b, 0, sizeof(float) * (size_t)cv->cout);
    return SN_OK;
}

struct resnet *resnet_init_random(const struct resnet_config *c, uint64_t seed)
{
    struct resnet *r = resnet_alloc(c);
    struct rng_state rng;
    rng_seed(&rng, seed, rng_hash_str("resnet"));
    resnet_each_conv(r, resnet_random_conv, &rng);
    return r;
}

/* Sides after the stem conv, the max pool, layer2 and layer3. */
static void resnet_sides(int size, int s[4])
{
    s[0] = ops_conv_out(size, 7, 2, 3);
    s[1] = ops_conv_out(s[0], 3, 2, 1);
    s[2] = ops_conv_out(s[1], 3, 2, 1);
    s[3] = ops_conv_out(s[2], 3, 2, 1);
}

void resnet_shapes(const struct resnet *r, int size, int *c2, int *s2, int *c3, int *s3)
{
    int s[4];
    resnet_sides(size, s);
    *c2 = 2 * r->c.width;
    *s2 = s[2];
    *c3 = 4 * r->c.width;
    *s3 = s[3];
}

static void resnet_prepare(struct resnet *r, int size)
{
    if (r->col && r->size == size) return;
    int s[4], w = r->c.width;
    resnet_sides(size, s);
    for (int i = 0; i < 3; i++)
        sn_free(r->buf[i]);
    sn_free(r->col);
    sn_free(r->out2);
    sn_free(r->out3);

    /* The stem output is the largest activation; im2col peaks at a layer start. */
    size_t act = (size_t)w * s[0] * s[0];
    size_t col = (size_t)3 * 49 * s[0] * s[0];
    col = SN_MAX(col, (size_t)9 * w * s[1] * s[1]);
    col = SN_MAX(col, (size_t)9 * 2 * w * s[2] * s[2]);
    col = SN_MAX(col, (size_t)9 * 4 * w * s[3] * s[3]);
    for (int i = 0; i < 3; i++)
        r->buf[i] = sn_aligned(sizeof(float) * act);
    r->col = sn_aligned(sizeof(float) * col);
    r->out2 = sn_aligned(sizeof(float) * 2 * w * s[2] * s[2]);
    r->out3 = sn_aligned(sizeof(float) * 4 * w * s[3] * s[3]);
    r->size = size;
}

static void resnet_conv_run(struct resnet *r, const struct resnet_conv *cv,
                            const float *x, int side, int relu, float *y)
{
    ops_conv2d(x, cv->cin, side, side, cv->w, cv->b, cv->cout, cv->k, cv->stride, cv->pad,
               relu, r->col, y);
}

/* Basic block: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). */
static int resnet_block_run(struct resnet *r, const struct resnet_block *b,
                            const float *x, int side, float *t, float *y)
{
    int out = ops_conv_out(side, 3, b->c1.stride, 1);
    long n = (long)b->c2.cout * out * out;
    resnet_conv_run(r, &b->c1, x, side, 1, t);
    resnet_conv_run(r, &b->c2, t, out, 0, y);
    const float *sc = x;
    if (b->has_down) {
        resnet_conv_run(r, &b->down, x, side, 0, t);
        sc = t;
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float v = y[i] + sc[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
    return out;
}

int resnet_forward(struct resnet *r, const float *chw, int size, const float **l2,
                   const float **l3)
{
    if (size < 32) return sn_error("ResNet input size %d is below 32", size);
    resnet_prepare(r, size);
    int s[4];
    resnet_sides(size, s);

    /* Stem: conv 7x7 stride 2, ReLU, max pool 3x3 stride 2. */
    resnet_conv_run(r, &r->stem, chw, size, 1, r->buf[1]);
    ops_maxpool3s2(r->buf[1], r->c.width, s[0], s[0], r->buf[0]);

    /* Layers 1..3; buf[0] always holds the current feature map. */
    int side = s[1], ch = r->c.width;
    for (int l = 0; l < 3; l++) {
        for (int b = 0; b < r->c.blocks[l]; b++) {
            side = resnet_block_run(r, &r->blocks[l][b], r->buf[0], side, r->buf[1],
                                    r->buf[2]);
            float *tmp = r->buf[0];
            r->buf[0] = r->buf[2];
            r->buf[2] = tmp;
        }
        ch = r->c.width << l;
        if (l == 1) memcpy(r->out2, r->buf[0], sizeof(float) * (size_t)ch * side * side);
    }
    memcpy(r->out3, r->buf[0], sizeof(float) * (size_t)ch * side * side);
    *l2 = r->out2;
    *l3 = r->out3;
    return SN_OK;
}
