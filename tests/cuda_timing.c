/*
 * cuda_timing.c - device timings of the pipeline's pieces at the method's
 * sizes (392 x 392 input, 49 x 49 feature grid), for tests/gpu_check.sh.
 * Not a test: it checks nothing but that the pieces run; the parity tests
 * (label cuda) check what they compute.
 *
 *   cuda_timing [--batch B] [--bank T] [--out FILE] [--smoke]
 *
 * Pieces (random weights and inputs, seeded): the ViT-B/14 with registers
 * through blocks 0..8 (what SNARM runs) and through all 12, in fp32 and
 * with TF32; the kNN search of one image's 2401 features against banks of
 * 10^4 and 10^5; the coreset loop; the selective scan forward + backward of
 * one branch's batch; one training step of a decoder head's layers. Each
 * is timed as the median of a few runs after a warm-up, synchronised at
 * both ends. Every figure is printed as "RESULT name=value unit" and
 * appended to FILE when given.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/gpu.h"

#define REPS 5

/* The shapes timed: the method's, or tiny ones for a smoke run (--smoke)
 * that only checks the program runs end to end. */
static struct {
    int size, grid, cells, feat;        /* input side, feature grid, cells, d */
    int dim, heads, hidden, patch, reg; /* the ViT */
    int e, E;                           /* decoder width, Mamba inner width */
} S = {392, 49, 49 * 49, 512, 768, 12, 3072, 14, 4, 128, 256};
#define SIZE S.size
#define GRID S.grid
#define CELLS S.cells
#define FEAT_DIM S.feat

static struct gpu_ctx *g;
static struct gpu_arena mem;
static struct rng_state rng;
static FILE *out_file;

static void result(const char *name, double value, const char *unit)
{
    printf("RESULT %s=%.4g %s\n", name, value, unit);
    if (out_file) fprintf(out_file, "RESULT %s=%.4g %s\n", name, value, unit);
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds of one call of fn(ctx): the median of REPS after one warm-up. */
static double time_median(void (*fn)(void *), void *ctx)
{
    double t[REPS];
    fn(ctx);
    gpu_sync(g);
    for (int r = 0; r < REPS; r++) {
        double t0 = sn_now();
        fn(ctx);
        gpu_sync(g);
        t[r] = sn_now() - t0;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    return t[REPS / 2];
}

/* A device array of n values N(mean, scale^2) (scale 0: all equal mean). */
static float *dev_random(long n, float mean, float scale)
{
    float *h = sn_malloc(sizeof(float) * (size_t)n);
    rng_fill_normal(&rng, h, n, scale);
    for (long i = 0; i < n; i++)
        h[i] += mean;
    float *d = gpu_arena_floats(&mem, (size_t)n);
    gpu_upload(g, d, h, sizeof(float) * (size_t)n);
    gpu_sync(g);
    sn_free(h);
    return d;
}

/* ---- ViT-B/14 with registers -------------------------------------------------- */

#define VIT_DIM S.dim
#define VIT_HEADS S.heads
#define VIT_HIDDEN S.hidden
#define VIT_PATCH S.patch
#define VIT_REG S.reg
#define VIT_DEPTH 12

struct vit_run {
    struct gpu_vit_embed e;
    struct gpu_vit_block b[VIT_DEPTH];
    struct gpu_vit_shape s;
    float *img, *x, *work, *ework;
    int blocks, size;
};

static void vit_run(void *ctx)
{
    struct vit_run *v = ctx;
    gpu_vit_embed_forward(g, &v->e, v->img, v->s.n, v->size, v->x, v->ework);
    for (int i = 0; i < v->blocks; i++)
        gpu_vit_block_forward(g, &v->b[i], &v->s, v->x, v->work);
}

static void vit_setup(struct vit_run *v, int batch)
{
    const int d = VIT_DIM, h = VIT_HIDDEN, gs = SIZE / VIT_PATCH;
    v->size = SIZE;
    v->s = (struct gpu_vit_shape){batch, 1 + VIT_REG + gs * gs, d, VIT_HEADS, h, 1e-6f};
    v->e = (struct gpu_vit_embed){
        .patch_w = dev_random((long)d * 3 * VIT_PATCH * VIT_PATCH, 0, 0.02f),
        .patch_b = dev_random(d, 0, 0.02f),
        .pos = dev_random((long)gs * gs * d, 0, 0.02f),
        .cls = dev_random(d, 0, 0.02f),
        .cls_pos = dev_random(d, 0, 0.02f),
        .reg = dev_random((long)VIT_REG * d, 0, 0.02f),
        .dim = d,
        .patch = VIT_PATCH,
        .n_reg = VIT_REG};
    for (int i = 0; i < VIT_DEPTH; i++)
        v->b[i] = (struct gpu_vit_block){.n1w = dev_random(d, 1, 0),
                                         .n1b = dev_random(d, 0, 0),
                                         .qkv_w = dev_random(3L * d * d, 0, 0.02f),
                                         .qkv_b = dev_random(3L * d, 0, 0.02f),
                                         .proj_w = dev_random((long)d * d, 0, 0.02f),
                                         .proj_b = dev_random(d, 0, 0.02f),
                                         .ls1 = dev_random(d, 1, 0),
                                         .n2w = dev_random(d, 1, 0),
                                         .n2b = dev_random(d, 0, 0),
                                         .fc1_w = dev_random((long)h * d, 0, 0.02f),
                                         .fc1_b = dev_random(h, 0, 0.02f),
                                         .fc2_w = dev_random((long)d * h, 0, 0.02f),
                                         .fc2_b = dev_random(d, 0, 0.02f),
                                         .ls2 = dev_random(d, 1, 0)};
    v->img = dev_random((long)batch * 3 * SIZE * SIZE, 0, 1);
    v->x = gpu_arena_floats(&mem, (size_t)batch * v->s.t * d);
    v->work = gpu_arena_floats(&mem, gpu_vit_block_work_floats(&v->s));
    v->ework = gpu_arena_floats(&mem, gpu_vit_embed_work_floats(batch, SIZE, VIT_PATCH));
}

static double time_vit(int batch)
{
    struct vit_run v;
    vit_setup(&v, batch);
    double ips9 = 0;
    for (int tf32 = 0; tf32 <= 1; tf32++) {
        gpu_ctx_set_tf32(g, tf32);
        for (int blocks = 9; blocks <= VIT_DEPTH; blocks += 3) {
            v.blocks = blocks;
            double s = time_median(vit_run, &v), ips = batch / s;
            char name[96];
            snprintf(name, sizeof name, "vitb14_reg_%dblocks_%s_images_per_s", blocks,
                     tf32 ? "tf32" : "fp32");
            result(name, ips, "img/s");
            if (blocks == 9 && !tf32) ips9 = ips;
        }
    }
    gpu_ctx_set_tf32(g, 0);
    return ips9;
}

/* ---- kNN and coreset ----------------------------------------------------------- */

struct knn_run {
    struct gpu_knn *kn;
    float *q;
    int *idx;
    float *dist;
};

static void knn_run(void *ctx)
{
    struct knn_run *k = ctx;
    if (gpu_knn_search_dev(k->kn, k->q, CELLS, 3, k->idx, k->dist) != SN_OK)
        sn_fatal("kNN search failed: %s", sn_last_error());
}

static double time_knn(long nb)
{
    float *bank = sn_malloc(sizeof(float) * (size_t)nb * FEAT_DIM);
    rng_fill_normal(&rng, bank, nb * FEAT_DIM, 1.0f);
    struct knn_run k = {gpu_knn_new(g, nb, FEAT_DIM, CELLS),
                        dev_random(CELLS * FEAT_DIM, 0, 1),
                        gpu_arena_alloc(&mem, sizeof(int) * CELLS * 3),
                        gpu_arena_floats(&mem, CELLS * 3)};
    if (gpu_knn_set_bank(k.kn, bank) != SN_OK) sn_fatal("bank: %s", sn_last_error());
    sn_free(bank);
    double s = time_median(knn_run, &k);
    char name[96];
    snprintf(name, sizeof name, "knn_%dx%ld_d%d_k3_ms_per_image", CELLS, nb, FEAT_DIM);
    result(name, 1e3 * s, "ms");
    gpu_knn_free(k.kn);
    return s;
}

static void time_coreset(long n, long T)
{
    float *x = sn_malloc(sizeof(float) * (size_t)n * FEAT_DIM);
    float *proj = sn_malloc(sizeof(float) * 128 * FEAT_DIM);
    rng_fill_normal(&rng, x, n * FEAT_DIM, 1.0f);
    rng_fill_normal(&rng, proj, 128L * FEAT_DIM, 1.0f / sqrtf(128.0f));
    long *sel = sn_malloc(sizeof(long) * (size_t)T), ns = 0;
    double t0 = sn_now();
    if (gpu_coreset_greedy(g, x, n, FEAT_DIM, proj, 128, 0, T, sel, &ns) != SN_OK)
        sn_fatal("coreset failed: %s", sn_last_error());
    char name[96];
    snprintf(name, sizeof name, "coreset_%ldx%d_T%ld_s", n, FEAT_DIM, T);
    result(name, sn_now() - t0, "s");
    sn_free(sel);
    sn_free(proj);
    sn_free(x);
}

/* ---- the selective scan of one branch's batch ------------------------------------ */

struct scan_run {
    struct gpu_scan *s;
    struct gpu_scan_args a;
    int B, *len;
    float *y, *dy, *du, *dd, *dbc, *dA, *dD;
    int R;
};

static void scan_run(void *ctx)
{
    struct scan_run *r = ctx;
    gpu_scan_forward(g, r->s, r->B, r->len, &r->a, r->y);
    gpu_scan_backward(g, r->s, &r->a, r->dy, r->du, r->dd, r->dbc, r->dbc + 4, r->R,
                      r->dA, r->dD);
}

static void time_scan(int batch)
{
    /* 4 scans per image; the scan visits the 25 % suspicious cells */
    const int B = 4 * batch, L = CELLS / 4, E = S.E, n = 4, R = 8 + 2 * n;
    long T = (long)B * L;
    int *len = sn_malloc(sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++)
        len[b] = L;
    float *dbc = dev_random(T * R, 0, 1);
    struct scan_run r = {gpu_scan_new(B, (int)T, E, n),
                         {dev_random(T * E, 0.05f, 0.01f), dev_random(T * E, 0, 1),
                          dbc + 8, dbc + 8 + n, R, dev_random((long)E * n, -1, 0.1f),
                          dev_random(E, 1, 0)},
                         B,
                         len,
                         gpu_arena_floats(&mem, (size_t)T * E),
                         dev_random(T * E, 0, 1),
                         gpu_arena_floats(&mem, (size_t)T * E),
                         gpu_arena_floats(&mem, (size_t)T * E),
                         gpu_arena_floats(&mem, (size_t)T * R),
                         dev_random((long)E * n, 0, 0),
                         dev_random(E, 0, 0),
                         R};
    double s = time_median(scan_run, &r);
    char name[96];
    snprintf(name, sizeof name, "scan_fwd_bwd_%dx%d_E%d_ms", B, L, E);
    result(name, 1e3 * s, "ms");
    gpu_scan_free(r.s);
    sn_free(len);
}

/* ---- one decoder head training step -------------------------------------------- */

struct head_run {
    struct conv3x3_shape s;
    float *x, *w3, *b3, *c, *z, *mean, *rstd, *gam, *bet, *rm, *rv, *w1, *b1, *logit;
    float *up, *mask, *dup, *dz, *dx, *dc, *work, *params, *grads, *m, *v;
    long nparams;
    struct adamw_config cfg;
    long step;
};

/* conv3x3 -> BN -> ReLU -> conv1x1 -> focal (on an input-sized logit map
 * standing in for the up-sampled head output), then backward and AdamW. */
static void head_run(void *ctx)
{
    struct head_run *h = ctx;
    const long cells = (long)h->s.n * CELLS;
    const int e = h->s.c_in;
    long pixels = (long)h->s.n * SIZE * SIZE;
    gpu_conv3x3_forward(g, h->c, h->x, h->w3, h->b3, &h->s, h->work);
    gpu_batchnorm_forward_train(g, h->z, h->mean, h->rstd, h->c, h->gam, h->bet, h->rm,
                                h->rv, cells, e, LAYERS_BN_MOMENTUM, LAYERS_NORM_EPS);
    gpu_relu_forward(g, h->z, h->z, cells * e);
    gpu_linear(g, h->z, (int)cells, e, h->w1, h->b1, 1, h->logit);
    gpu_focal_loss_logit(g, h->up, h->mask, pixels, 0.25f, 4.0f, h->dup, 0.25f);

    /* backward: the first cells of the up-sampled gradient stand in for dlogit */
    gpu_linear_backward(g, h->dz, h->grads, h->grads + e, h->dup, h->z, h->w1, cells, e,
                        1);
    gpu_relu_backward(g, h->dz, h->dz, h->z, cells * e);
    gpu_batchnorm_backward(g, h->dc, h->grads + e + 1, h->grads + 2 * e + 1, h->dz, h->c,
                           h->mean, h->rstd, h->gam, cells, e);
    gpu_conv3x3_backward(g, h->dx, h->grads + 3 * e + 1,
                         h->grads + 3 * e + 1 + 9L * e * e, h->dc, h->x, h->w3, &h->s,
                         h->work);
    gpu_adamw_update(g, h->params, h->grads, h->m, h->v, h->nparams, ++h->step, &h->cfg);
}

static void time_head(int batch)
{
    const int e = S.e, maps = 4 * batch;
    const long cells = (long)maps * CELLS, pixels = (long)maps * SIZE * SIZE;
    struct head_run h;
    memset(&h, 0, sizeof h);
    h.s = (struct conv3x3_shape){maps, GRID, GRID, e, e, 6};
    h.nparams = 9L * e * e + 4L * e + 2;
    h.params = dev_random(h.nparams, 0, 0.05f);
    h.grads = dev_random(h.nparams, 0, 0);
    h.m = dev_random(h.nparams, 0, 0);
    h.v = dev_random(h.nparams, 0, 0);
    h.w3 = h.params, h.b3 = h.params + 9L * e * e, h.gam = dev_random(e, 1, 0);
    h.bet = dev_random(e, 0, 0), h.rm = dev_random(e, 0, 0), h.rv = dev_random(e, 1, 0);
    h.w1 = dev_random(e, 0, 0.1f), h.b1 = dev_random(1, 0, 0);
    h.x = dev_random(cells * e, 0, 1);
    h.c = gpu_arena_floats(&mem, (size_t)cells * e);
    h.z = gpu_arena_floats(&mem, (size_t)cells * e);
    h.dz = gpu_arena_floats(&mem, (size_t)cells * e);
    h.dc = gpu_arena_floats(&mem, (size_t)cells * e);
    h.dx = gpu_arena_floats(&mem, (size_t)cells * e);
    h.mean = gpu_arena_floats(&mem, e), h.rstd = gpu_arena_floats(&mem, e);
    h.logit = gpu_arena_floats(&mem, (size_t)cells);
    h.up = dev_random(pixels, -2, 2), h.mask = dev_random(pixels, 0, 0);
    h.dup = gpu_arena_floats(&mem, (size_t)pixels);
    h.work = gpu_arena_floats(&mem, gpu_conv3x3_work_floats(&h.s));
    adamw_config_default(&h.cfg, 1e-3, 0.05);
    double s = time_median(head_run, &h);
    char name[96];
    snprintf(name, sizeof name, "decoder_head_train_step_%dmaps_e%d_ms", maps, e);
    result(name, 1e3 * s, "ms");
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    int batch = 8;
    long bank = 10000;
    size_t arena = (size_t)12 << 30;
    const char *out = NULL;
    static const struct option opts[] = {{"batch", required_argument, 0, 'b'},
                                         {"bank", required_argument, 0, 't'},
                                         {"out", required_argument, 0, 'o'},
                                         {"smoke", no_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == 'b')
            batch = atoi(optarg);
        else if (c == 't')
            bank = atol(optarg);
        else if (c == 'o')
            out = optarg;
        else if (c == 's') {
            S.size = 28, S.grid = 7, S.cells = 49, S.feat = 16, S.dim = 32, S.heads = 2;
            S.hidden = 64, S.patch = 7, S.reg = 2, S.e = 8, S.E = 16;
            batch = 1, bank = 100, arena = (size_t)1 << 28;
        } else
            return 2;
    }
    if (!gpu_available()) {
        printf("SKIP: cuda_timing: no CUDA device visible\n");
        return 77;
    }
    g = gpu_ctx_new(0);
    gpu_arena_init(&mem, arena);
    rng_seed(&rng, 2024, rng_hash_str("cuda_timing"));
    out_file = out ? fopen(out, "a") : NULL;
    char desc[256];
    gpu_ctx_describe(g, desc, sizeof desc);
    printf("device: %s, batch %d, input %d x %d\n", desc, batch, SIZE, SIZE);
    if (out_file) fprintf(out_file, "device: %s, batch %d\n", desc, batch);

    /* extraction and matching per image, then the training pieces */
    double vit_ips = time_vit(batch);
    double knn_s = time_knn(bank);
    time_knn(10 * bank);
    result("vit9_plus_knn_images_per_s", 1.0 / (1.0 / vit_ips + knn_s), "img/s");
    time_scan(batch);
    time_head(batch);
    time_coreset(100L * CELLS, bank);

    gpu_arena_free(&mem);
    gpu_ctx_free(g);
    if (out_file) fclose(out_file);
    return 0;
}
