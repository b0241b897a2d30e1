#include "vit.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "rng.h"

struct vit_block {
    float *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
    float *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
};

/* Activations for one (batch, input size): allocated once, carved. */
struct vit_acts {
    int n, size, g, t, threads;
    float *mem;
    float *x, *xn, *qkv, *hid, *hid2, *col, *scratch, *pos;
};

struct vit {
    struct vit_config c;
    float *params;
    size_t n_params;
    float *patch_w, *patch_b, *cls, *reg, *pos;
    struct vit_block *blocks;
    float *norm_w, *norm_b, *head_w, *head_b;
    struct vit_acts a;
};

/* ------------------------------------------------------------------------ */
/* Architectures */

static const struct {
    const char *name;
    int dim, depth, heads, mlp, swiglu, n_reg;
} vit_dinov2[] = {
    {"dinov2_vits14", 384, 12, 6, 1536, 0, 0},
    {"dinov2_vitb14", 768, 12, 12, 3072, 0, 0},
    {"dinov2_vitl14", 1024, 24, 16, 4096, 0, 0},
    {"dinov2_vitg14", 1536, 40, 24, 4096, 1, 0},
    {"dinov2_vits14_reg", 384, 12, 6, 1536, 0, 4},
    {"dinov2_vitb14_reg", 768, 12, 12, 3072, 0, 4},
    {"dinov2_vitl14_reg", 1024, 24, 16, 4096, 0, 4},
    {"dinov2_vitg14_reg", 1536, 40, 24, 4096, 1, 4},
};

int vit_config_for_arch(const char *arch, struct vit_config *c)
{
    memset(c, 0, sizeof *c);
    c->eps = 1e-6f;
    if (!strcmp(arch, "vit_tiny_patch16")) {
        /* timm ViT-Ti/16 at 224: class token with a position entry. */
        *c = (struct vit_config){.dim = 192,
                                 .depth = 12,
                                 .heads = 3,
                                 .mlp_hidden = 768,
                                 .patch = 16,
                                 .pos_grid = 14,
                                 .cls_pos = 1,
                                 .n_classes = 1000,
                                 .eps = 1e-6f,
                                 .mean = {0.5f, 0.5f, 0.5f},
                                 .std = {0.5f, 0.5f, 0.5f}};
        return SN_OK;
    }
    for (size_t i = 0; i < SN_ARRAY_LEN(vit_dinov2); i++) {
        if (strcmp(arch, vit_dinov2[i].name)) continue;
        /* DINOv2: trained at 518 = 37 x 14, LayerScale, ImageNet statistics. */
        *c = (struct vit_config){.dim = vit_dinov2[i].dim,
                                 .depth = vit_dinov2[i].depth,
                                 .heads = vit_dinov2[i].heads,
                                 .mlp_hidden = vit_dinov2[i].mlp,
                                 .swiglu = vit_dinov2[i].swiglu,
                                 .patch = 14,
                                 .pos_grid = 37,
                                 .cls_pos = 1,
                                 .n_reg = vit_dinov2[i].n_reg,
                                 .layerscale = 1,
                                 .eps = 1e-6f,
                                 .interpolate_offset = 0.1,
                                 .mean = {0.485f, 0.456f, 0.406f},
                                 .std = {0.229f, 0.224f, 0.225f}};
        return SN_OK;
    }
    return sn_error("unknown ViT architecture '%s'", arch);
}

/* ------------------------------------------------------------------------ */
/* Parameters: one allocation carved into tensors */

static float *vit_carve(float *base, size_t *off, size_t n)
{
    float *p = base ? base + *off : NULL;
    *off += (n + 15) / 16 * 16; /* keep every tensor 64-byte aligned */
    return p;
}

static size_t vit_layout(struct vit *v, float *base)
{
    const struct vit_config *c = &v->c;
    size_t o = 0, d = (size_t)c->dim, h1 = (size_t)c->mlp_hidden * (c->swiglu ? 2 : 1);
    size_t npos = (size_t)c->pos_grid * c->pos_grid + (size_t)c->cls_pos;
    v->patch_w = vit_carve(base, &o, d * 3 * c->patch * c->patch);
    v->patch_b = vit_carve(base, &o, d);
    v->cls = vit_carve(base, &o, d);
    v->reg = vit_carve(base, &o, d * c->n_reg);
    v->pos = vit_carve(base, &o, d * npos);
    for (int i = 0; i < c->depth; i++) {
        struct vit_block *b = &v->blocks[i];
        b->n1w = vit_carve(base, &o, d);
        b->n1b = vit_carve(base, &o, d);
        b->qkv_w = vit_carve(base, &o, 3 * d * d);
        b->qkv_b = vit_carve(base, &o, 3 * d);
        b->proj_w = vit_carve(base, &o, d * d);
        b->proj_b = vit_carve(base, &o, d);
        b->ls1 = vit_carve(base, &o, d);
        b->n2w = vit_carve(base, &o, d);
        b->n2b = vit_carve(base, &o, d);
        b->fc1_w = vit_carve(base, &o, h1 * d);
        b->fc1_b = vit_carve(base, &o, h1);
        b->fc2_w = vit_carve(base, &o, d * c->mlp_hidden);
        b->fc2_b = vit_carve(base, &o, d);
        b->ls2 = vit_carve(base, &o, d);
    }
    v->norm_w = vit_carve(base, &o, d);
    v->norm_b = vit_carve(base, &o, d);
    v->head_w = vit_carve(base, &o, d * c->n_classes);
    v->head_b = vit_carve(base, &o, (size_t)c->n_classes);
    return o;
}

static struct vit *vit_alloc(const struct vit_config *c)
{
    struct vit *v = sn_calloc(1, sizeof *v);
    v->c = *c;
    v->blocks = sn_calloc((size_t)SN_MAX(c->depth, 1), sizeof *v->blocks);
    v->n_params = vit_layout(v, NULL);
    v->params = sn_aligned(sizeof(float) * v->n_params);
    memset(v->params, 0, sizeof(float) * v->n_params);
    vit_layout(v, v->params);
    return v;
}

void vit_free(struct vit *v)
{
    if (!v) return;
    sn_free(v->a.mem);
    sn_free(v->params);
    sn_free(v->blocks);
    sn_free(v);
}

/* ------------------------------------------------------------------------ */
/* Tensor names: each slot is one file tensor and where it lands */

enum vit_init { VIT_NORMAL, VIT_ZERO, VIT_ONE };

struct vit_slot {
    char name[128];
    float *dst;
    int ndim;
    long dims[4];
    enum vit_init init;
};

struct vit_slots {
    int n, cap;
    struct vit_slot *s;
};

static void vit_slot_add(struct vit_slots *ss, float *dst, enum vit_init init, int ndim,
                         long d0, long d1, long d2, long d3, const char *fmt, ...)
    SN_PRINTF(9, 10);

static void vit_slot_add(struct vit_slots *ss, float *dst, enum vit_init init, int ndim,
                         long d0, long d1, long d2, long d3, const char *fmt, ...)
{
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? 2 * ss->cap : 64;
        ss->s = sn_realloc(ss->s, sizeof *ss->s * (size_t)ss->cap);
    }
    struct vit_slot *s = &ss->s[ss->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->dst = dst;
    s->init = init;
    s->ndim = ndim;
    long dims[4] = {d0, d1, d2, d3};
    memcpy(s->dims, dims, sizeof dims);
}

#define SLOT1(dst, init, a, ...) vit_slot_add(ss, dst, init, 1, a, 0, 0, 0, __VA_ARGS__)
#define SLOT2(dst, init, a, b, ...)                                                      \
    vit_slot_add(ss, dst, init, 2, a, b, 0, 0, __VA_ARGS__)
#define SLOT3(dst, init, a, b, c_, ...)                                                  \
    vit_slot_add(ss, dst, init, 3, a, b, c_, 0, __VA_ARGS__)

/* Meta / timm names of one block (DINOv2 SwiGLU: mlp.w12 and mlp.w3). */
static void vit_slots_block_meta(const struct vit *v, int i, struct vit_slots *ss)
{
    const struct vit_block *b = &v->blocks[i];
    long d = v->c.dim, h = v->c.mlp_hidden, h1 = v->c.swiglu ? 2 * h : h;
    const char *fc1 = v->c.swiglu ? "w12" : "fc1", *fc2 = v->c.swiglu ? "w3" : "fc2";
    SLOT1(b->n1w, VIT_ONE, d, "blocks.%d.norm1.weight", i);
    SLOT1(b->n1b, VIT_ZERO, d, "blocks.%d.norm1.bias", i);
    SLOT2(b->qkv_w, VIT_NORMAL, 3 * d, d, "blocks.%d.attn.qkv.weight", i);
    SLOT1(b->qkv_b, VIT_ZERO, 3 * d, "blocks.%d.attn.qkv.bias", i);
    SLOT2(b->proj_w, VIT_NORMAL, d, d, "blocks.%d.attn.proj.weight", i);
    SLOT1(b->proj_b, VIT_ZERO, d, "blocks.%d.attn.proj.bias", i);
    SLOT1(b->n2w, VIT_ONE, d, "blocks.%d.norm2.weight", i);
    SLOT1(b->n2b, VIT_ZERO, d, "blocks.%d.norm2.bias", i);
    SLOT2(b->fc1_w, VIT_NORMAL, h1, d, "blocks.%d.mlp.%s.weight", i, fc1);
    SLOT1(b->fc1_b, VIT_ZERO, h1, "blocks.%d.mlp.%s.bias", i, fc1);
    SLOT2(b->fc2_w, VIT_NORMAL, d, h, "blocks.%d.mlp.%s.weight", i, fc2);
    SLOT1(b->fc2_b, VIT_ZERO, d, "blocks.%d.mlp.%s.bias", i, fc2);
    if (v->c.layerscale) {
        SLOT1(b->ls1, VIT_ONE, d, "blocks.%d.ls1.gamma", i);
        SLOT1(b->ls2, VIT_ONE, d, "blocks.%d.ls2.gamma", i);
    }
}

/* Hugging Face names of one block: separate query / key / value. */
static void vit_slots_block_hf(const struct vit *v, int i, struct vit_slots *ss)
{
    const struct vit_block *b = &v->blocks[i];
    long d = v->c.dim, h = v->c.mlp_hidden, h1 = v->c.swiglu ? 2 * h : h;
    const char *fc1 = v->c.swiglu ? "weights_in" : "fc1";
    const char *fc2 = v->c.swiglu ? "weights_out" : "fc2";
    const char *qkv[3] = {"query", "key", "value"};
    SLOT1(b->n1w, VIT_ONE, d, "encoder.layer.%d.norm1.weight", i);
    SLOT1(b->n1b, VIT_ZERO, d, "encoder.layer.%d.norm1.bias", i);
    for (int j = 0; j < 3; j++) {
        SLOT2(b->qkv_w + j * d * d, VIT_NORMAL, d, d,
              "encoder.layer.%d.attention.attention.%s.weight", i, qkv[j]);
        SLOT1(b->qkv_b + j * d, VIT_ZERO, d,
              "encoder.layer.%d.attention.attention.%s.bias", i, qkv[j]);
    }
    SLOT2(b->proj_w, VIT_NORMAL, d, d, "encoder.layer.%d.attention.output.dense.weight",
          i);
    SLOT1(b->proj_b, VIT_ZERO, d, "encoder.layer.%d.attention.output.dense.bias", i);
    SLOT1(b->n2w, VIT_ONE, d, "encoder.layer.%d.norm2.weight", i);
    SLOT1(b->n2b, VIT_ZERO, d, "encoder.layer.%d.norm2.bias", i);
    SLOT2(b->fc1_w, VIT_NORMAL, h1, d, "encoder.layer.%d.mlp.%s.weight", i, fc1);
    SLOT1(b->fc1_b, VIT_ZERO, h1, "encoder.layer.%d.mlp.%s.bias", i, fc1);
    SLOT2(b->fc2_w, VIT_NORMAL, d, h, "encoder.layer.%d.mlp.%s.weight", i, fc2);
    SLOT1(b->fc2_b, VIT_ZERO, d, "encoder.layer.%d.mlp.%s.bias", i, fc2);
    if (v->c.layerscale) {
        SLOT1(b->ls1, VIT_ONE, d, "encoder.layer.%d.layer_scale1.lambda1", i);
        SLOT1(b->ls2, VIT_ONE, d, "encoder.layer.%d.layer_scale2.lambda1", i);
    }
}

/* All slots in the given naming (hf = 1: Hugging Face; reg_name: the
 * register tensor's name in the Meta / timm naming). */
static struct vit_slots vit_slots_build(const struct vit *v, int hf, const char *reg_name)
{
    struct vit_slots sl = {0}, *ss = &sl;
    const struct vit_config *c = &v->c;
    long d = c->dim, npos = (long)c->pos_grid * c->pos_grid + c->cls_pos;
    SLOT3(v->cls, VIT_NORMAL, 1, 1, d, "%s", hf ? "embeddings.cls_token" : "cls_token");
    if (c->n_reg)
        SLOT3(v->reg, VIT_NORMAL, 1, c->n_reg, d, "%s",
              hf ? "embeddings.register_tokens" : reg_name);
    SLOT3(v->pos, VIT_NORMAL, 1, npos, d, "%s",
          hf ? "embeddings.position_embeddings" : "pos_embed");
    vit_slot_add(ss, v->patch_w, VIT_NORMAL, 4, d, 3, c->patch, c->patch, "%s",
                 hf ? "embeddings.patch_embeddings.projection.weight"
                    : "patch_embed.proj.weight");
    SLOT1(v->patch_b, VIT_ZERO, d, "%s",
          hf ? "embeddings.patch_embeddings.projection.bias" : "patch_embed.proj.bias");
    for (int i = 0; i < c->depth; i++)
        (hf ? vit_slots_block_hf : vit_slots_block_meta)(v, i, ss);
    SLOT1(v->norm_w, VIT_ONE, d, "%s", hf ? "layernorm.weight" : "norm.weight");
    SLOT1(v->norm_b, VIT_ZERO, d, "%s", hf ? "layernorm.bias" : "norm.bias");
    if (c->n_classes) {
        SLOT2(v->head_w, VIT_NORMAL, c->n_classes, d, "head.weight");
        SLOT1(v->head_b, VIT_ZERO, c->n_classes, "head.bias");
    }
    return sl;
}

/* Without LayerScale the residual branches are added with gain 1. */
static void vit_fill_unit_scales(struct vit *v)
{
    if (v->c.layerscale) return;
    for (int i = 0; i < v->c.depth; i++)
        for (int j = 0; j < v->c.dim; j++)
            v->blocks[i].ls1[j] = v->blocks[i].ls2[j] = 1;
}

struct vit *vit_init_random(const struct vit_config *c, uint64_t seed)
{
    struct vit *v = vit_alloc(c);
    struct vit_slots ss = vit_slots_build(v, 0, "register_tokens");
    struct rng_state r;
    rng_seed(&r, seed, rng_hash_str("vit"));

    /* Uniform with standard deviation 0.02 (cheaper to draw than normals). */
    const double half = 0.02 * sqrt(3.0);
    for (int i = 0; i < ss.n; i++) {
        long n = 1;
        for (int k = 0; k < ss.s[i].ndim; k++)
            n *= ss.s[i].dims[k];
        for (long j = 0; j < n; j++)
            ss.s[i].dst[j] = ss.s[i].init == VIT_ONE ? 1.0f
                             : ss.s[i].init == VIT_ZERO
                                 ? 0.0f
                                 : (float)((2.0 * rng_uniform(&r) - 1.0) * half);
    }
    sn_free(ss.s);
    vit_fill_unit_scales(v);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Loading */

/* Position grid, class entry, head and registers as the file has them. */
static int vit_probe_file(struct vit_config *c, struct st_file *f, int hf,
                          const char **reg_name)
{
    int nd;
    long dims[ST_MAX_DIMS];
    const char *pos = hf ? "embeddings.position_embeddings" : "pos_embed";
    if (st_shape(f, pos, &nd, dims)) return SN_EUSER;
    long p = nd == 3 ? dims[1] : 0, g1 = lround(sqrt((double)(p - 1)));
    long g0 = lround(sqrt((double)p));
    if (p > 1 && g1 * g1 == p - 1) {
        c->pos_grid = (int)g1;
        c->cls_pos = 1;
    } else if (p > 0 && g0 * g0 == p) {
        c->pos_grid = (int)g0;
        c->cls_pos = 0;
    } else {
        return sn_error("%s: %s has %ld rows, not a square grid (+1)", st_path(f), pos,
                        p);
    }

    /* Registers: named register_tokens (Meta, HF) or reg_token (timm). */
    *reg_name = st_has(f, "reg_token") ? "reg_token" : "register_tokens";
    int has_reg = st_has(f, hf ? "embeddings.register_tokens" : *reg_name);
    if (has_reg && !c->n_reg)
        return sn_error("%s has register tokens but the architecture has none; use the "
                        "_reg variant of the architecture",
                        st_path(f));
    if (c->n_classes && !st_has(f, "head.weight")) c->n_classes = 0;
    return SN_OK;
}

int vit_load(const struct vit_config *cfg, struct st_file *f, struct vit **out)
{
    *out = NULL;
    struct vit_config c = *cfg;
    int hf = st_has(f, "embeddings.cls_token");
    const char *reg_name = "register_tokens";
    int rc = vit_probe_file(&c, f, hf, &reg_name);
    if (rc) return rc;

    struct vit *v = vit_alloc(&c);
    struct vit_slots ss = vit_slots_build(v, hf, reg_name);
    for (int i = 0; i < ss.n && !rc; i++)
        rc = st_read(f, ss.s[i].name, ss.s[i].ndim, ss.s[i].dims, ss.s[i].dst);
    sn_free(ss.s);
    if (rc) {
        vit_free(v);
        return rc;
    }
    vit_fill_unit_scales(v);
    *out = v;
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward */

const struct vit_config *vit_config_of(const struct vit *v)
{
    return &v->c;
}

int vit_grid(const struct vit *v, int size)
{
    return size / v->c.patch;
}

int vit_prefix(const struct vit *v)
{
    return 1 + v->c.n_reg;
}

int vit_tokens(const struct vit *v, int size)
{
    int g = vit_grid(v, size);
    return vit_prefix(v) + g * g;
}

/* Patch-grid position embedding for grid g (see the header for the rule). */
static void vit_pos_resample(const struct vit *v, int g, float *out)
{
    const struct vit_config *c = &v->c;
    const float *src = v->pos + (size_t)c->cls_pos * c->dim;
    int G = c->pos_grid;
    if (g == G) {
        memcpy(out, src, sizeof(float) * (size_t)G * G * c->dim);
        return;
    }
    double scale = (double)G / (g + c->interpolate_offset);
    ops_resize_bicubic_hwc(src, G, G, c->dim, out, g, g, scale, scale);
}

static size_t vit_acts_layout(struct vit *v, float *base)
{
    struct vit_acts *a = &v->a;
    size_t o = 0, m = (size_t)a->n * a->t, d = (size_t)v->c.dim;
    size_t h = (size_t)v->c.mlp_hidden, k = 3 * (size_t)v->c.patch * v->c.patch;
    a->x = vit_carve(base, &o, m * d);
    a->xn = vit_carve(base, &o, m * d);
    a->qkv = vit_carve(base, &o, m * 3 * d);
    a->hid = vit_carve(base, &o, m * h * (v->c.swiglu ? 2 : 1));
    a->hid2 = vit_carve(base, &o, v->c.swiglu ? m * h : 0);
    a->col = vit_carve(base, &o, k * a->g * a->g);
    a->scratch = vit_carve(base, &o, (size_t)a->threads * ops_attention_scratch(a->t));
    a->pos = vit_carve(base, &o, (size_t)a->g * a->g * d);
    return o;
}

/* Activations once per (n, size, threads); the resampled position grid too. */
static void vit_acts_prepare(struct vit *v, int n, int size)
{
    struct vit_acts *a = &v->a;
    int threads = omp_get_max_threads();
    if (a->mem && a->n == n && a->size == size && a->threads >= threads) return;
    sn_free(a->mem);
    a->n = n;
    a->size = size;
    a->g = vit_grid(v, size);
    a->t = vit_tokens(v, size);
    a->threads = threads;
    a->mem = sn_aligned(sizeof(float) * vit_acts_layout(v, NULL));
    vit_acts_layout(v, a->mem);
    vit_pos_resample(v, a->g, a->pos);
}

/* Tokens of every image: [class, registers, patches] with positions added. */
static void vit_embed(struct vit *v, const float *chw, int n, int size)
{
    struct vit_acts *a = &v->a;
    const struct vit_config *c = &v->c;
    const int d = c->dim, p = c->patch, g = a->g, k = 3 * p * p, pre = vit_prefix(v);
    for (int s = 0; s < n; s++) {
        /* Patch embedding: a stride-p convolution as one product. */
        float *xs = a->x + (size_t)s * a->t * d;
        ops_im2col(chw + (size_t)s * 3 * size * size, 3, size, size, p, p, p, 0, g, g,
                   a->col);
        ops_sgemm(1, 1, g * g, d, k, 1.0f, a->col, g * g, v->patch_w, k, 0.0f,
                  xs + (size_t)pre * d, d);
        ops_residual_add(xs + (size_t)pre * d, a->pos, g * g, d, v->patch_b, NULL);

        /* Class token (with its position entry if any), then registers. */
        for (int j = 0; j < d; j++)
            xs[j] = v->cls[j] + (c->cls_pos ? v->pos[j] : 0.0f);
        memcpy(xs + d, v->reg, sizeof(float) * (size_t)c->n_reg * d);
    }
}

static void vit_block_forward(struct vit *v, const struct vit_block *b, int n)
{
    struct vit_acts *a = &v->a;
    const struct vit_config *c = &v->c;
    const int m = n * a->t, d = c->dim, h = c->mlp_hidden;

    /* Attention branch: x += ls1 * proj(attn(norm1(x))). */
    ops_layernorm(a->x, m, d, b->n1w, b->n1b, c->eps, a->xn);
    ops_linear(a->xn, m, d, b->qkv_w, b->qkv_b, 3 * d, a->qkv);
    ops_attention(a->qkv, n, a->t, d, c->heads, a->xn, a->scratch);
    ops_linear(a->xn, m, d, b->proj_w, NULL, d, a->qkv);
    ops_residual_add(a->x, a->qkv, m, d, b->proj_b, b->ls1);

    /* MLP branch: x += ls2 * fc2(act(fc1(norm2(x)))). */
    ops_layernorm(a->x, m, d, b->n2w, b->n2b, c->eps, a->xn);
    float *hid = a->hid;
    if (c->swiglu) {
        ops_linear(a->xn, m, d, b->fc1_w, NULL, 2 * h, a->hid);
        ops_swiglu(a->hid, m, h, b->fc1_b, a->hid2);
        hid = a->hid2;
    } else {
        ops_linear(a->xn, m, d, b->fc1_w, NULL, h, a->hid);
        ops_bias_gelu(a->hid, m, h, b->fc1_b);
    }
    ops_linear(hid, m, h, b->fc2_w, NULL, d, a->xn);
    ops_residual_add(a->x, a->xn, m, d, b->fc2_b, b->ls2);
}

int vit_forward(struct vit *v, const float *chw, int n, int size, int last,
                vit_tap_fn tap, void *ctx)
{
    if (size < v->c.patch)
        return sn_error("input size %d is smaller than the patch size %d", size,
                        v->c.patch);
    if (last < 0 || last >= v->c.depth)
        return sn_error("block %d requested but the model has blocks 0..%d", last,
                        v->c.depth - 1);
    vit_acts_prepare(v, n, size);
    vit_embed(v, chw, n, size);
    for (int i = 0; i <= last; i++) {
        vit_block_forward(v, &v->blocks[i], n);
        if (tap) tap(ctx, i, v->a.x, n, v->a.t, v->c.dim);
    }
    return SN_OK;
}

int vit_classify(struct vit *v, const float *chw, int n, int size, float *logits)
{
    if (!v->c.n_classes) return sn_error("these ViT weights have no classification head");
    int rc = vit_forward(v, chw, n, size, v->c.depth - 1, NULL, NULL);
    if (rc) return rc;

    /* Final LayerNorm of each class token, then the head. */
    const int d = v->c.dim;
    float *cls = sn_malloc(sizeof(float) * (size_t)n * d);
    for (int s = 0; s < n; s++)
        ops_layernorm(v->a.x + (size_t)s * v->a.t * d, 1, d, v->norm_w, v->norm_b,
                      v->c.eps, cls + (size_t)s * d);
    ops_linear(cls, n, d, v->head_w, v->head_b, v->c.n_classes, logits);
    sn_free(cls);
    return SN_OK;
}

double vit_flops(const struct vit *v, int size, int last)
{
    const struct vit_config *c = &v->c;
    double g = vit_grid(v, size), t = vit_tokens(v, size), d = c->dim;
    double h = c->mlp_hidden, h1 = c->swiglu ? 2 * h : h;
    double embed = 2.0 * g * g * d * 3 * c->patch * c->patch;
    double block = 2.0 * t * d * (3 * d + d + h1 + h) + 4.0 * t * t * d;
    return embed + block * (last + 1);
}
