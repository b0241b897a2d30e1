/*
 * decoder.c - the decoder's dimensions, its parameter layout (one flat
 * array carved into named tensors), initialisation and the activation
 * arena. The passes are in decoder_pass.c, the HDF5 files in decoder_io.c.
 */
#include "decoder.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "decoder_internal.h"
#include "kernels/layers.h"
#include "log.h"
#include "residual.h"

/* Tensors start on 64-byte boundaries, for the vectorised kernels. */
#define DECODER_ALIGN 16

int decoder_dims_from_config(struct decoder_dims *dd, const struct sn_config *cfg)
{
    memset(dd, 0, sizeof(*dd));
    dd->grid = cfg->features.grid;
    dd->M = dd->grid * dd->grid;
    dd->d = cfg->features.dim;
    dd->hybrid = cfg->matching.hybrid != 0;
    dd->navigate = cfg->matching.navigate != 0;
    dd->pow2 = cfg->matching.residual_pow2 != 0;
    dd->in_ch = dd->hybrid ? 2 * dd->d : dd->d;
    dd->e = cfg->decoder.embed;
    dd->blocks = cfg->decoder.blocks;
    dd->scans = cfg->decoder.scans;
    dd->branches = cfg->decoder.dilations.n;
    /* Without the multi-view decoder (an ablation) one branch, at the first
     * dilation, scans in row-major order only and has one head. */
    if (!cfg->decoder.multiview) dd->scans = dd->branches = 1;
    dd->out = cfg->data.crop;
    dd->p_percent = cfg->matching.self_ref_percent;
    dd->dropout = (float)cfg->decoder.dropout;

    /* Sizes the layout cannot hold are configuration errors. */
    if (dd->branches < 1 || dd->branches > DECODER_MAX_BRANCHES)
        return sn_error("%s: decoder.dilations has %d entries (1 to %d allowed)",
                        cfg->source, dd->branches, DECODER_MAX_BRANCHES);
    if (dd->blocks < 1 || dd->blocks > DECODER_MAX_BLOCKS)
        return sn_error("%s: decoder.blocks = %d (1 to %d allowed)", cfg->source,
                        dd->blocks, DECODER_MAX_BLOCKS);
    if (dd->scans < 1 || dd->scans > DECODER_MAX_SCANS)
        return sn_error("%s: decoder.scans = %d (1 to %d allowed)", cfg->source,
                        dd->scans, DECODER_MAX_SCANS);
    for (int b = 0; b < dd->branches; b++)
        dd->dil[b] = cfg->decoder.dilations.v[b];

    /* The self references: every cell needs a partner for intra matching. */
    dd->n_self = residual_self_ref_count(dd->M, dd->p_percent);
    if (dd->n_self < 2 || dd->n_self > dd->M)
        return sn_error("%s: matching.self_ref_percent = %g leaves %d self references "
                        "of %d cells (at least 2 needed)",
                        cfg->source, dd->p_percent, dd->n_self, dd->M);
    dd->n_visit = dd->navigate ? dd->M - dd->n_self : dd->M;
    mamba_dims_set(&dd->mx, dd->e, cfg->decoder.d_state, cfg->decoder.d_conv,
                   cfg->decoder.expand);
    return SN_OK;
}

void decoder_focal_from_config(struct decoder_focal *fc, const struct sn_config *cfg)
{
    fc->nav_alpha = (float)cfg->train.nav_alpha;
    fc->nav_gamma = (float)cfg->train.nav_gamma;
    fc->head_alpha = (float)cfg->train.head_alpha;
    fc->head_gamma = (float)cfg->train.head_gamma;
}

/* ------------------------------------------------------------------------ */
/* Layout: one walk over the tensors serves counting, the table and carving. */

struct walk {
    float *base;                  /* NULL while counting */
    struct decoder_tensor *table; /* NULL while counting */
    int n;
    long off;
    int branch;
};

static long align_up(long off)
{
    return (off + DECODER_ALIGN - 1) / DECODER_ALIGN * DECODER_ALIGN;
}

/* Record one tensor at offset off; returns its element count. */
static long walk_record(struct walk *wk, const char *name, long off, int ndim,
                        const int *shape)
{
    long count = 1;
    for (int i = 0; i < ndim; i++)
        count *= shape[i];
    if (wk->table) {
        struct decoder_tensor *t = &wk->table[wk->n];
        SN_ASSERT(strlen(name) < DECODER_NAME);
        snprintf(t->name, DECODER_NAME, "%s", name);
        t->offset = off;
        t->count = count;
        t->ndim = ndim;
        for (int i = 0; i < 4; i++)
            t->shape[i] = i < ndim ? shape[i] : 1;
        t->branch = wk->branch;
    }
    wk->n++;
    return count;
}

/* out = a followed by b (tensor names are short; a longer one is a bug). */
static void name_join(char *out, const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    SN_ASSERT(na + nb < DECODER_NAME);
    memcpy(out, a, na);
    memcpy(out + na, b, nb + 1);
}

/* An aligned tensor; *ptr points at it once the base exists. */
static void walk_tensor(struct walk *wk, float **ptr, const char *name, int ndim, int s0,
                        int s1, int s2, int s3)
{
    int shape[4] = {s0, s1, s2, s3};
    long off = align_up(wk->off);
    wk->off = off + walk_record(wk, name, off, ndim, shape);
    if (wk->base && ptr) *ptr = wk->base + off;
}

/* The mixer's parameters: one contiguous block in mamba_params_carve order. */
static void walk_mixer(struct walk *wk, struct mamba_params *p, const char *pre,
                       const struct mamba_dims *m)
{
    const char *names[9] = {"in_w", "conv_w", "conv_b", "xproj_w", "dt_w",
                            "dt_b", "A_log",  "D",      "out_w"};
    const int shapes[9][2] = {
        {2 * m->E, m->e}, {m->E, m->k}, {m->E, 1},    {m->r + 2 * m->n, m->E},
        {m->E, m->r},     {m->E, 1},    {m->E, m->n}, {m->E, 1},
        {m->e, m->E}};
    const int ndims[9] = {2, 2, 1, 2, 2, 1, 2, 1, 2};
    long start = align_up(wk->off), off = start;
    char name[DECODER_NAME];

    if (wk->base) mamba_params_carve(m, wk->base + start, p);
    for (int i = 0; i < 9; i++) {
        name_join(name, pre, names[i]);
        off += walk_record(wk, name, off, ndims[i], shapes[i]);
    }
    SN_ASSERT(off - start == (long)mamba_param_count(m));
    wk->off = off;
}

static void walk_head(struct walk *wk, struct decoder_head_w *h, const char *pre, int e)
{
    char n[DECODER_NAME];
#define HEAD_T(field, suffix, nd, a, b, c, d)                                            \
    name_join(n, pre, suffix);                                                           \
    walk_tensor(wk, &h->field, n, nd, a, b, c, d)
    HEAD_T(conv_w, "conv.w", 4, e, e, 3, 3);
    HEAD_T(conv_b, "conv.b", 1, e, 1, 1, 1);
    HEAD_T(bn_w, "bn.w", 1, e, 1, 1, 1);
    HEAD_T(bn_b, "bn.b", 1, e, 1, 1, 1);
    HEAD_T(out_w, "out.w", 2, 1, e, 1, 1);
    HEAD_T(out_b, "out.b", 1, 1, 1, 1, 1);
#undef HEAD_T
}

static void walk_branch(struct walk *wk, struct decoder_branch_w *br, int b,
                        const struct decoder_dims *dd)
{
    char n[DECODER_NAME];
    const int e = dd->e;

    /* Embedding, the SMBs, the closing LayerNorm, then the heads. */
    snprintf(n, sizeof n, "b%d.embed.w", b);
    walk_tensor(wk, &br->embed_w, n, 2, e, dd->in_ch, 1, 1);
    snprintf(n, sizeof n, "b%d.embed.b", b);
    walk_tensor(wk, &br->embed_b, n, 1, e, 1, 1, 1);
    for (int k = 0; k < dd->blocks; k++) {
        struct decoder_smb_w *s = &br->smb[k];
        snprintf(n, sizeof n, "b%d.smb%d.norm.w", b, k);
        walk_tensor(wk, &s->norm_w, n, 1, e, 1, 1, 1);
        snprintf(n, sizeof n, "b%d.smb%d.conv.w", b, k);
        walk_tensor(wk, &s->conv_w, n, 4, e, e, 3, 3);
        snprintf(n, sizeof n, "b%d.smb%d.conv.b", b, k);
        walk_tensor(wk, &s->conv_b, n, 1, e, 1, 1, 1);
        snprintf(n, sizeof n, "b%d.smb%d.mixer.", b, k);
        walk_mixer(wk, &s->mx, n, &dd->mx);
    }
    snprintf(n, sizeof n, "b%d.ln.w", b);
    walk_tensor(wk, &br->ln_w, n, 1, e, 1, 1, 1);
    snprintf(n, sizeof n, "b%d.ln.b", b);
    walk_tensor(wk, &br->ln_b, n, 1, e, 1, 1, 1);
    for (int s = 0; s < dd->scans; s++) {
        snprintf(n, sizeof n, "b%d.head%d.", b, s);
        walk_head(wk, &br->head[s], n, e);
    }
}

/* Walk every parameter; records the navigator and branch ranges in dec. */
static void walk_params(struct walk *wk, struct decoder *dec, struct decoder_weights *w)
{
    const struct decoder_dims *dd = &dec->dims;

    wk->branch = -1;
    walk_tensor(wk, &w->nav_w, "nav.w", 2, 1, dd->d, 1, 1);
    walk_tensor(wk, &w->nav_b, "nav.b", 1, 1, 1, 1, 1);
    dec->nav_offset = 0;
    dec->nav_count = align_up(wk->off);
    for (int b = 0; b < dd->branches; b++) {
        wk->branch = b;
        wk->off = align_up(wk->off);
        dec->br_offset[b] = wk->off;
        walk_branch(wk, &w->br[b], b, dd);
        dec->br_count[b] = align_up(wk->off) - dec->br_offset[b];
    }
    wk->off = align_up(wk->off);
}

/* The BatchNorm running statistics, one mean and one variance per head. */
static void walk_buffers(struct walk *wk, struct decoder *dec)
{
    const struct decoder_dims *dd = &dec->dims;
    char n[DECODER_NAME];

    for (int b = 0; b < dd->branches; b++) {
        wk->branch = b;
        for (int s = 0; s < dd->scans; s++) {
            snprintf(n, sizeof n, "b%d.head%d.bn.mean", b, s);
            walk_tensor(wk, &dec->bn_mean[b][s], n, 1, dd->e, 1, 1, 1);
            snprintf(n, sizeof n, "b%d.head%d.bn.var", b, s);
            walk_tensor(wk, &dec->bn_var[b][s], n, 1, dd->e, 1, 1, 1);
        }
    }
    wk->off = align_up(wk->off);
}

int decoder_init(struct decoder *dec, const struct decoder_dims *dims)
{
    memset(dec, 0, sizeof(*dec));
    dec->dims = *dims;
    dec->focal = (struct decoder_focal){0.5f, 4.0f, 0.25f, 4.0f};

    /* Count, allocate, then walk again to carve and fill the tables. */
    struct walk wk = {0};
    struct decoder_weights scratch;
    walk_params(&wk, dec, &scratch);
    dec->n_params = wk.off;
    dec->n_tensors = wk.n;
    dec->params = sn_aligned(sizeof(float) * (size_t)dec->n_params);
    dec->grads = sn_aligned(sizeof(float) * (size_t)dec->n_params);
    memset(dec->params, 0, sizeof(float) * (size_t)dec->n_params);
    memset(dec->grads, 0, sizeof(float) * (size_t)dec->n_params);
    dec->tensors = sn_calloc((size_t)dec->n_tensors, sizeof(*dec->tensors));

    wk = (struct walk){.base = dec->params, .table = dec->tensors};
    walk_params(&wk, dec, &dec->w);
    wk = (struct walk){.base = dec->grads};
    walk_params(&wk, dec, &dec->g);

    /* The running statistics: mean 0, variance 1, as a fresh BatchNorm. */
    wk = (struct walk){0};
    walk_buffers(&wk, dec);
    dec->n_buffers = wk.off;
    dec->n_buffer_tensors = wk.n;
    dec->buffers = sn_aligned(sizeof(float) * (size_t)dec->n_buffers);
    memset(dec->buffers, 0, sizeof(float) * (size_t)dec->n_buffers);
    dec->buffer_tensors = sn_calloc((size_t)wk.n, sizeof(*dec->buffer_tensors));
    wk = (struct walk){.base = dec->buffers, .table = dec->buffer_tensors};
    walk_buffers(&wk, dec);
    for (int b = 0; b < dims->branches; b++)
        for (int s = 0; s < dims->scans; s++)
            for (int c = 0; c < dims->e; c++)
                dec->bn_var[b][s][c] = 1.0f;
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Initialisation: PyTorch's defaults, fan-in uniform bounds. */

static void fill_uniform(float *p, long n, double bound, struct rng_state *rng)
{
    for (long i = 0; i < n; i++)
        p[i] = (float)((2.0 * rng_uniform(rng) - 1.0) * bound);
}

static void fill_const(float *p, long n, float v)
{
    for (long i = 0; i < n; i++)
        p[i] = v;
}

static void init_branch(struct decoder_branch_w *br, const struct decoder_dims *dd,
                        struct rng_state *rng)
{
    const int e = dd->e;
    const double b_in = 1.0 / sqrt((double)dd->in_ch), b_conv = 1.0 / sqrt(9.0 * e);

    fill_uniform(br->embed_w, (long)e * dd->in_ch, b_in, rng);
    fill_uniform(br->embed_b, e, b_in, rng);
    for (int k = 0; k < dd->blocks; k++) {
        struct decoder_smb_w *s = &br->smb[k];
        fill_const(s->norm_w, e, 1.0f);
        fill_uniform(s->conv_w, 9L * e * e, b_conv, rng);
        fill_uniform(s->conv_b, e, b_conv, rng);
        mamba_params_init(&dd->mx, &s->mx, rng);
    }
    fill_const(br->ln_w, e, 1.0f);
    fill_const(br->ln_b, e, 0.0f);
    for (int s = 0; s < dd->scans; s++) {
        struct decoder_head_w *h = &br->head[s];
        fill_uniform(h->conv_w, 9L * e * e, b_conv, rng);
        fill_uniform(h->conv_b, e, b_conv, rng);
        fill_const(h->bn_w, e, 1.0f);
        fill_const(h->bn_b, e, 0.0f);
        fill_uniform(h->out_w, e, 1.0 / sqrt((double)e), rng);
        fill_uniform(h->out_b, 1, 1.0 / sqrt((double)e), rng);
    }
}

void decoder_params_init(struct decoder *dec, struct rng_state *rng)
{
    const struct decoder_dims *dd = &dec->dims;
    const double b_nav = 1.0 / sqrt((double)dd->d);

    memset(dec->params, 0, sizeof(float) * (size_t)dec->n_params);
    fill_uniform(dec->w.nav_w, dd->d, b_nav, rng);
    fill_uniform(dec->w.nav_b, 1, b_nav, rng);
    for (int b = 0; b < dd->branches; b++)
        init_branch(&dec->w.br[b], dd, rng);
    for (int b = 0; b < dd->branches; b++)
        for (int s = 0; s < dd->scans; s++) {
            fill_const(dec->bn_mean[b][s], dd->e, 0.0f);
            fill_const(dec->bn_var[b][s], dd->e, 1.0f);
        }
}

/* ------------------------------------------------------------------------ */
/* Activations: one arena per batch size. */

struct arena {
    char *base; /* NULL while measuring */
    size_t off;
};

static void *arena_take(struct arena *a, size_t bytes)
{
    size_t off = (a->off + 63) / 64 * 64;
    a->off = off + bytes;
    return a->base ? a->base + off : NULL;
}

#define TAKE_F(a, n) ((float *)arena_take((a), sizeof(float) * (size_t)(n)))
#define TAKE_I(a, n) ((int *)arena_take((a), sizeof(int) * (size_t)(n)))

/* Carve (or measure) every activation of the arena for B images. */
static void acts_carve(struct decoder_acts *A, struct arena *ar,
                       const struct decoder_dims *dd, int B, int train)
{
    const long M = dd->M, e = dd->e, nb = (long)dd->scans * B;
    const long seq = nb * M * e, img = (long)B * M;
    const long out2 = (long)dd->out * dd->out;

    for (int s = 0; s < dd->scans; s++) {
        A->perm[s] = TAKE_I(ar, M);
        A->inv[s] = TAKE_I(ar, M);
    }
    A->Q = TAKE_F(ar, img);
    A->Qstar = TAKE_F(ar, img);
    A->S = TAKE_I(ar, (long)B * dd->n_self);
    A->sel = TAKE_I(ar, nb * dd->n_visit);
    A->len = TAKE_I(ar, nb);
    A->Rt = dd->hybrid ? TAKE_F(ar, img * dd->d) : NULL;
    A->Hbuf = dd->hybrid ? TAKE_F(ar, img * dd->in_ch) : NULL;
    A->nav_up = TAKE_F(ar, B * out2);

    /* The branch: per-block streams are kept for the backward pass. */
    A->emb = TAKE_F(ar, img * e);
    for (int k = 0; k < dd->blocks; k++) {
        A->r[k] = TAKE_F(ar, seq);
        A->xn[k] = TAKE_F(ar, seq);
        A->rstd[k] = TAKE_F(ar, nb * M);
    }
    A->h = TAKE_F(ar, seq);
    A->pk_in = TAKE_F(ar, nb * dd->n_visit * e);
    A->pk_out = TAKE_F(ar, nb * dd->n_visit * e);
    A->z = TAKE_F(ar, seq);
    A->ln_mean = TAKE_F(ar, nb * M);
    A->ln_rstd = TAKE_F(ar, nb * M);
    A->drop = arena_take(ar, (size_t)seq);
    A->o = TAKE_F(ar, seq);
    A->o_rm = TAKE_F(ar, seq);

    /* Heads: every scan's activations in training, one shared set in eval. */
    int nh = train ? dd->scans : 1;
    for (int s = 0; s < dd->scans; s++) {
        int k = s < nh ? s : 0;
        if (s == k) {
            A->a[s] = TAKE_F(ar, img * e);
            A->y[s] = TAKE_F(ar, img * e);
            A->bn_mean[s] = TAKE_F(ar, e);
            A->bn_rstd[s] = TAKE_F(ar, e);
            A->logit[s] = TAKE_F(ar, img);
            A->up[s] = TAKE_F(ar, B * out2);
        } else {
            A->a[s] = A->a[k], A->y[s] = A->y[k];
            A->bn_mean[s] = A->bn_mean[k], A->bn_rstd[s] = A->bn_rstd[k];
            A->logit[s] = A->logit[k], A->up[s] = A->up[k];
        }
    }
    if (!train) return;

    /* Loss and backward scratch. */
    A->target = TAKE_F(ar, B * out2);
    A->d_nav_up = TAKE_F(ar, B * out2);
    for (int s = 0; s < dd->scans; s++)
        A->d_up[s] = TAKE_F(ar, B * out2);
    A->g2 = TAKE_F(ar, seq);
    A->gr = TAKE_F(ar, seq);
    A->g_emb = TAKE_F(ar, img * e);
    A->g_y = TAKE_F(ar, img * e);
    A->g_small = TAKE_F(ar, img);
}

static void acts_free(struct decoder_acts *A)
{
    if (!A) return;
    dconv_plan_free(&A->plan_smb);
    for (int b = 0; b < DECODER_MAX_BRANCHES; b++)
        dconv_plan_free(&A->plan_head[b]);
    for (int k = 0; k < DECODER_MAX_BLOCKS; k++)
        if (A->mc[k]) mamba_cache_free(A->mc[k]);
    sn_free(A->conv_work);
    sn_free(A->arena);
    sn_free(A);
}

void decoder_reserve(struct decoder *dec, int max_batch, int train)
{
    const struct decoder_dims *dd = &dec->dims;
    struct decoder_acts *old = dec->acts;

    SN_ASSERT(max_batch >= 1);
    if (old && old->max_batch >= max_batch && old->train >= train) return;
    acts_free(old);

    /* Measure, allocate, carve. */
    struct decoder_acts *A = sn_calloc(1, sizeof(*A));
    struct arena ar = {0};
    acts_carve(A, &ar, dd, max_batch, train);
    A->bytes = ar.off;
    A->arena = sn_aligned(ar.off);
    ar = (struct arena){.base = A->arena};
    acts_carve(A, &ar, dd, max_batch, train);
    A->max_batch = max_batch;
    A->train = train;

    /* The scan orders, the mixer caches and the convolution workspace. */
    for (int s = 0; s < dd->scans; s++) {
        scan_perm(A->perm[s], dd->grid, dd->grid, (enum scan_order)s);
        scan_perm_inverse(A->inv[s], A->perm[s], dd->M);
    }
    int ncache = train ? dd->blocks : 1;
    for (int k = 0; k < ncache; k++)
        A->mc[k] = mamba_cache_new(&dd->mx, dd->scans * max_batch,
                                   dd->scans * max_batch * dd->n_visit);
    dconv_plan_init(&A->plan_smb, dd->grid, 1);
    for (int b = 0; b < dd->branches; b++)
        dconv_plan_init(&A->plan_head[b], dd->grid, dd->dil[b]);
    A->conv_threads = omp_get_max_threads();
    size_t wf =
        dconv_work_floats(dd->grid, dd->scans * max_batch, dd->e, dd->e, A->conv_threads);
    A->conv_work = sn_aligned(sizeof(float) * wf);
    A->bytes += sizeof(float) * wf;
    dec->acts = A;
    log_debug("decoder activations: %.1f MB for %d images (%s)", A->bytes / 1e6,
              max_batch, train ? "training" : "prediction");
}

void decoder_free(struct decoder *dec)
{
    acts_free(dec->acts);
    sn_free(dec->params);
    sn_free(dec->grads);
    sn_free(dec->buffers);
    sn_free(dec->tensors);
    sn_free(dec->buffer_tensors);
    memset(dec, 0, sizeof(*dec));
}

size_t decoder_param_bytes(const struct decoder *dec)
{
    return sizeof(float) * (size_t)(2 * dec->n_params + dec->n_buffers);
}

size_t decoder_act_bytes(const struct decoder *dec)
{
    return dec->acts ? dec->acts->bytes : 0;
}

void decoder_set_reduce(struct decoder *dec, void (*sum)(float *, long, void *),
                        void *ctx, long batch_global)
{
    dec->reduce = sum;
    dec->reduce_ctx = ctx;
    dec->batch_global = batch_global;
}

void decoder_grads_zero(struct decoder *dec, int branch)
{
    SN_ASSERT(branch >= 0 && branch < dec->dims.branches);
    memset(dec->grads + dec->nav_offset, 0, sizeof(float) * (size_t)dec->nav_count);
    memset(dec->grads + dec->br_offset[branch], 0,
           sizeof(float) * (size_t)dec->br_count[branch]);
}

const struct decoder_tensor *decoder_tensor_find(const struct decoder *dec,
                                                 const char *name)
{
    for (int i = 0; i < dec->n_tensors; i++)
        if (!strcmp(dec->tensors[i].name, name)) return &dec->tensors[i];
    return NULL;
}

const struct decoder_tensor *decoder_buffer_find(const struct decoder *dec,
                                                 const char *name)
{
    for (int i = 0; i < dec->n_buffer_tensors; i++)
        if (!strcmp(dec->buffer_tensors[i].name, name)) return &dec->buffer_tensors[i];
    return NULL;
}

const char *decoder_phase_name(int phase)
{
    static const char *names[DECODER_PH_N] = {
        "matching",      "embedding",    "SMB conv3x3",          "Mamba mixer",
        "norms/dropout", "head conv3x3", "head BN/1x1/upsample", "focal loss"};
    return phase >= 0 && phase < DECODER_PH_N ? names[phase] : "?";
}

/* ------------------------------------------------------------------------ */
/* Views of the latest pass. */

const float *decoder_waypoint(const struct decoder *dec)
{
    return dec->acts ? dec->acts->Qstar : NULL;
}

const float *decoder_nav_prob(const struct decoder *dec)
{
    return dec->acts ? dec->acts->Q : NULL;
}

const int *decoder_self_refs(const struct decoder *dec)
{
    return dec->acts ? dec->acts->S : NULL;
}

const float *decoder_intra(const struct decoder *dec)
{
    return dec->acts ? dec->acts->Rt : NULL;
}

const float *decoder_nav_map(const struct decoder *dec)
{
    return dec->acts ? dec->acts->nav_up : NULL;
}

const float *decoder_head_logits(const struct decoder *dec, int s)
{
    SN_ASSERT(s >= 0 && s < dec->dims.scans);
    return dec->acts ? dec->acts->up[s] : NULL;
}
