#include "backbone.h"

#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "log.h"
#include "resnet.h"
#include "safetensors.h"
#include "vit.h"

struct backbone {
    char arch[48];
    struct vit *vit;       /* ViT family, or */
    struct resnet *resnet; /* ResNet family */
    int crop, grid, pool_dim, dim, groups, nlayers, last;
    int layers[CFG_LIST];
    int random;
    char hash[80];
    char describe[640];
    float mean[3], std[3];

    /* Scratch for one batch size: group sums of block outputs (ViT), the
     * channel-pooled maps and the fused map before up-sampling. */
    int scratch_n;
    float *acc, *pooled, *concat, *fused, *tmp;
};

/* ------------------------------------------------------------------------ */
/* Opening */

static int backbone_check_sizes(const struct sn_config *cfg, int resnet)
{
    const struct cfg_intlist *l = &cfg->backbone.layers;
    if (cfg->features.grid < 1 || cfg->features.pool_dim < 1 || cfg->features.dim < 1)
        return sn_error("features.grid, features.pool_dim and features.dim must be >= 1");
    if (cfg->data.crop < 1) return sn_error("data.crop must be >= 1");
    if (resnet) return SN_OK; /* always layer2 + layer3 */
    if (l->n < 1) return sn_error("backbone.layers is empty");
    if (cfg->backbone.groups < 1 || l->n % cfg->backbone.groups)
        return sn_error("backbone.layers has %d entries, not a multiple of "
                        "backbone.groups = %d",
                        l->n, cfg->backbone.groups);
    for (int i = 0; i < l->n; i++)
        if (l->v[i] < 0 || (i && l->v[i] <= l->v[i - 1]))
            return sn_error("backbone.layers must be increasing block indices >= 0");
    return SN_OK;
}

/* The network from the file (or random), with only the blocks needed. */
static int backbone_build(struct backbone *b, const struct sn_config *cfg,
                          const struct vit_config *vcfg, const struct resnet_config *rcfg,
                          struct st_file *f)
{
    uint64_t seed = (uint64_t)cfg->run.seed;
    if (rcfg) {
        b->groups = 2; /* layer2 and layer3 */
        memcpy(b->mean, rcfg->mean, sizeof b->mean);
        memcpy(b->std, rcfg->std, sizeof b->std);
        if (!f) b->resnet = resnet_init_random(rcfg, seed);
        return f ? resnet_load(rcfg, f, &b->resnet) : SN_OK;
    }
    struct vit_config vc = *vcfg;
    if (b->last >= vc.depth)
        return sn_error("backbone.layers asks for block %d but %s has blocks 0..%d",
                        b->last, b->arch, vc.depth - 1);
    vc.depth = b->last + 1;
    vc.n_classes = 0;
    vc.interpolate_offset = cfg->backbone.interpolate_offset;
    memcpy(b->mean, vc.mean, sizeof b->mean);
    memcpy(b->std, vc.std, sizeof b->std);
    if (!f) b->vit = vit_init_random(&vc, seed);
    return f ? vit_load(&vc, f, &b->vit) : SN_OK;
}

static const char *backbone_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The weights file, or NULL for a labelled random initialisation. */
static int backbone_weights_open(struct backbone *b, const struct sn_config *cfg,
                                 struct st_file **f)
{
    const char *path = cfg->backbone.weights;
    *f = NULL;
    if (path[0] && sn_file_exists(path)) return st_open(path, f);
    if (strcmp(cfg->backbone.weights_missing, "random") != 0)
        return sn_error("backbone.weights: %s%s; download the pretrained safetensors "
                        "file (see the README), or set backbone.weights_missing: random "
                        "for a seeded random initialisation (not pretrained)",
                        path[0] ? path : "no weights file given",
                        path[0] ? " does not exist" : "");
    b->random = 1;
    snprintf(b->hash, sizeof b->hash, "random-seed-%ld", cfg->run.seed);
    snprintf(b->describe, sizeof b->describe, "%s, RANDOM INIT seed %ld (not pretrained)",
             b->arch, cfg->run.seed);
    log_warn("backbone %s: %s; using a RANDOM initialisation (seed %ld), features are "
             "not pretrained",
             b->arch, path[0] ? "weights file missing" : "no weights file",
             cfg->run.seed);
    return SN_OK;
}

int backbone_open_custom(const struct sn_config *cfg, const struct vit_config *vc,
                         const struct resnet_config *rc, struct backbone **out)
{
    *out = NULL;
    SN_ASSERT(!vc != !rc);
    int st = backbone_check_sizes(cfg, rc != NULL);
    if (st) return st;
    struct backbone *b = sn_calloc(1, sizeof *b);
    snprintf(b->arch, sizeof b->arch, "%s", cfg->backbone.arch);
    b->crop = cfg->data.crop;
    b->grid = cfg->features.grid;
    b->pool_dim = cfg->features.pool_dim;
    b->dim = cfg->features.dim;
    b->groups = cfg->backbone.groups;
    b->nlayers = cfg->backbone.layers.n;
    memcpy(b->layers, cfg->backbone.layers.v, sizeof(int) * (size_t)b->nlayers);
    b->last = b->nlayers ? b->layers[b->nlayers - 1] : 0;

    /* Weights (or a random initialisation), then the network. */
    struct st_file *f = NULL;
    st = backbone_weights_open(b, cfg, &f);
    if (!st) st = backbone_build(b, cfg, vc, rc, f);
    if (!st && f) {
        snprintf(b->hash, sizeof b->hash, "%s", st_sha256(f));
        snprintf(b->describe, sizeof b->describe, "%s, weights %s (sha256 %.12s...)",
                 b->arch, backbone_basename(st_path(f)), b->hash);
    }
    st_close(f);
    if (st) {
        backbone_free(b);
        return st;
    }
    log_info("backbone: %s", b->describe);
    *out = b;
    return SN_OK;
}

int backbone_open(const struct sn_config *cfg, struct backbone **out)
{
    const char *arch = cfg->backbone.arch;
    struct vit_config vc;
    struct resnet_config rc;
    *out = NULL;
    if (!resnet_config_for_arch(arch, &rc))
        return backbone_open_custom(cfg, NULL, &rc, out);
    if (!vit_config_for_arch(arch, &vc)) return backbone_open_custom(cfg, &vc, NULL, out);
    return sn_error(
        "backbone.arch: unknown architecture '%s' (known: dinov2_vit{s,b,l,g}14 "
        "and dinov2_vit{s,b,l,g}14_reg, vit_tiny_patch16, resnet18)",
        arch);
}

static void backbone_scratch_free(struct backbone *b)
{
    sn_free(b->acc);
    sn_free(b->pooled);
    sn_free(b->concat);
    sn_free(b->fused);
    sn_free(b->tmp);
    b->acc = b->pooled = b->concat = b->fused = b->tmp = NULL;
}

void backbone_free(struct backbone *b)
{
    if (!b) return;
    vit_free(b->vit);
    resnet_free(b->resnet);
    backbone_scratch_free(b);
    sn_free(b);
}

const char *backbone_describe(const struct backbone *b)
{
    return b->describe;
}

const char *backbone_weights_hash(const struct backbone *b)
{
    return b->hash;
}

int backbone_is_random(const struct backbone *b)
{
    return b->random;
}

void backbone_normalisation(const struct backbone *b, float mean[3], float std[3])
{
    memcpy(mean, b->mean, sizeof b->mean);
    memcpy(std, b->std, sizeof b->std);
}

int backbone_input_size(const struct backbone *b)
{
    return b->crop;
}

int backbone_grid(const struct backbone *b)
{
    return b->grid;
}

int backbone_dim(const struct backbone *b)
{
    return b->dim;
}

/* ------------------------------------------------------------------------ */
/* Fusion (SPEC steps 3-5) */

/*
 * Channel pooling and bilinear up-sampling act on different axes and are
 * both linear, so they commute: the maps are pooled to d at their own
 * resolution and only the d-channel result is up-sampled to the grid,
 * which equals the specification's order (up-sample, then pool) up to
 * rounding and moves far fewer values.
 */

/* Side of the maps before fusion: the ViT patch grid or ResNet's layer2. */
static int backbone_map_side(const struct backbone *b)
{
    if (b->vit) return vit_grid(b->vit, b->crop);
    int c2, s2, c3, s3;
    resnet_shapes(b->resnet, b->crop, &c2, &s2, &c3, &s3);
    return s2;
}

static void backbone_scratch_prepare(struct backbone *b, int n)
{
    if (b->scratch_n == n && b->fused) return;
    backbone_scratch_free(b);
    size_t side = (size_t)backbone_map_side(b), cells = side * side;
    size_t width = b->vit ? (size_t)vit_config_of(b->vit)->dim
                          : 4 * (size_t)resnet_config_of(b->resnet)->width;
    if (b->vit) b->acc = sn_aligned(sizeof(float) * n * b->groups * cells * width);
    b->tmp = sn_aligned(sizeof(float) * cells * width * 2);
    b->pooled = sn_aligned(sizeof(float) * cells * b->pool_dim);
    b->concat = sn_aligned(sizeof(float) * cells * b->pool_dim * b->groups);
    b->fused = sn_aligned(sizeof(float) * cells * b->dim);
    b->scratch_n = n;
}

/* Group g's map, pooled to pool_dim channels, into its slot of concat. */
static void backbone_pool_group(struct backbone *b, const float *map, long cells, int ch,
                                int g)
{
    int width = b->groups * b->pool_dim;
    ops_adaptive_pool_rows(map, (int)cells, ch, b->pool_dim, b->pooled);
    for (long i = 0; i < cells; i++)
        memcpy(b->concat + i * width + (long)g * b->pool_dim, b->pooled + i * b->pool_dim,
               sizeof(float) * (size_t)b->pool_dim);
}

/* Concatenated groups to d channels, then bilinear to the feature grid. */
static void backbone_finish(struct backbone *b, int side, float *feats)
{
    long cells = (long)side * side;
    ops_adaptive_pool_rows(b->concat, (int)cells, b->groups * b->pool_dim, b->dim,
                           b->fused);
    ops_resize_bilinear_hwc(b->fused, side, side, b->dim, feats, b->grid, b->grid);
}

struct backbone_tap {
    struct backbone *b;
    int prefix, cells;
};

/* After each ViT block: add the patch tokens of a requested block to its
 * group's sum (class and register tokens dropped). */
static void backbone_vit_tap(void *ctx, int block, const float *x, int n, int t, int d)
{
    struct backbone_tap *tp = ctx;
    struct backbone *b = tp->b;
    int pos = -1;
    for (int i = 0; i < b->nlayers; i++)
        if (b->layers[i] == block) pos = i;
    if (pos < 0) return;
    int g = pos / (b->nlayers / b->groups), first = pos % (b->nlayers / b->groups) == 0;
    long per = (long)tp->cells * d;
    for (int s = 0; s < n; s++) {
        const float *src = x + ((long)s * t + tp->prefix) * d;
        float *dst = b->acc + ((long)s * b->groups + g) * per;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < per; i++)
            dst[i] = first ? src[i] : dst[i] + src[i];
    }
}

static int backbone_extract_vit(struct backbone *b, const float *chw, int n, float *feats)
{
    int side = vit_grid(b->vit, b->crop), d = vit_config_of(b->vit)->dim;
    struct backbone_tap tp = {b, vit_prefix(b->vit), side * side};
    int rc = vit_forward(b->vit, chw, n, b->crop, b->last, backbone_vit_tap, &tp);
    if (rc) return rc;

    /* Per image: group means, channel pooling, concatenation, grid. */
    long per = (long)tp.cells * d, fcells = (long)b->grid * b->grid;
    float inv = (float)b->groups / (float)b->nlayers;
    for (int s = 0; s < n; s++) {
        for (int g = 0; g < b->groups; g++) {
            float *map = b->acc + ((long)s * b->groups + g) * per;
            for (long i = 0; i < per; i++)
                map[i] *= inv;
            backbone_pool_group(b, map, tp.cells, d, g);
        }
        backbone_finish(b, side, feats + s * fcells * b->dim);
    }
    return SN_OK;
}

/* One ResNet map (CHW): 3x3 local average, then channels-last into out. */
static void backbone_resnet_local(struct backbone *b, const float *x, int c, int s,
                                  float *out)
{
    ops_avgpool3s1(x, c, s, s, b->tmp);
    ops_transpose(b->tmp, c, s * s, out);
}

static int backbone_extract_resnet(struct backbone *b, const float *chw, int n,
                                   float *feats)
{
    int c2, s2, c3, s3, rc = SN_OK;
    resnet_shapes(b->resnet, b->crop, &c2, &s2, &c3, &s3);
    long fcells = (long)b->grid * b->grid, cells2 = (long)s2 * s2;
    float *map3 = sn_aligned(sizeof(float) * (size_t)s3 * s3 * c3);
    float *up = sn_aligned(sizeof(float) * (size_t)cells2 * c3);
    for (int s = 0; s < n && !rc; s++) {
        const float *l2, *l3;
        rc = resnet_forward(b->resnet, chw + (long)s * 3 * b->crop * b->crop, b->crop,
                            &l2, &l3);
        if (rc) break;

        /* layer2 as it is; layer3 up-sampled to the layer2 grid first. */
        backbone_resnet_local(b, l2, c2, s2, up);
        backbone_pool_group(b, up, cells2, c2, 0);
        backbone_resnet_local(b, l3, c3, s3, map3);
        ops_resize_bilinear_hwc(map3, s3, s3, c3, up, s2, s2);
        backbone_pool_group(b, up, cells2, c3, 1);
        backbone_finish(b, s2, feats + s * fcells * b->dim);
    }
    sn_free(map3);
    sn_free(up);
    return rc;
}

int backbone_extract(struct backbone *b, const float *chw, int n, float *feats)
{
    SN_ASSERT(n >= 1);
    backbone_scratch_prepare(b, n);
    return b->vit ? backbone_extract_vit(b, chw, n, feats)
                  : backbone_extract_resnet(b, chw, n, feats);
}
