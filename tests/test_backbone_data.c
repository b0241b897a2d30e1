/*
 * The backbones on the real pretrained files in ../shared/weights: the
 * ResNet-18 file (BatchNorm folded) and the timm ViT-Ti/16 file load and
 * give finite fused features of the configured shape that differ between
 * two real photos; an architecture that does not match a file, a .pth
 * checkpoint and a missing file give errors naming the problem. (The
 * classification check of the ViT is test_backbone_classify.)
 */
#include <math.h>
#include <string.h>

#include "core/backbone.h"
#include "core/common.h"
#include "core/config.h"
#include "data/image.h"
#include "testutil.h"

#define RESNET_FILE "weights/resnet18_imagenet_bnfolded_to_layer3.safetensors"
#define VIT_FILE "weights/vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors"
#define PHOTO_A "weights/imagenet_check/n01514668_10054.JPEG"
#define PHOTO_B "weights/imagenet_check/n03240683_10240.JPEG"

/* A photo through SPEC step 1 (resize, crop, the backbone's statistics). */
static float *photo(const char *rel, struct backbone *b, const struct sn_config *cfg)
{
    struct sn_image img;
    int crop = cfg->data.crop;
    float mean[3], std[3];
    TU_CHECK(image_load(tu_shared(rel), &img) == SN_OK);
    float *hwc = sn_malloc(sizeof(float) * 3 * crop * crop);
    float *chw = sn_malloc(sizeof(float) * 3 * crop * crop);
    image_preprocess_rgb(&img, cfg->data.resize, crop, hwc);
    backbone_normalisation(b, mean, std);
    image_normalise_chw(hwc, crop, crop, mean, std, chw);
    image_free(&img);
    sn_free(hwc);
    return chw;
}

/* Open, extract two photos as one batch, check shape, finiteness, spread. */
static void check_real(struct sn_config *cfg, const char *rel, const char *arch)
{
    struct backbone *b;
    snprintf(cfg->backbone.arch, sizeof cfg->backbone.arch, "%s", arch);
    snprintf(cfg->backbone.weights, sizeof cfg->backbone.weights, "%s", tu_shared(rel));
    TU_CHECK(backbone_open(cfg, &b) == SN_OK);
    if (!b) return;
    TU_CHECK(!backbone_is_random(b));
    TU_CHECK(strstr(backbone_describe(b), strrchr(rel, '/') + 1) != NULL);
    TU_CHECK(strlen(backbone_weights_hash(b)) == 64);

    int crop = cfg->data.crop;
    long cells = (long)cfg->features.grid * cfg->features.grid,
         per = cells * cfg->features.dim;
    TU_CHECK(backbone_grid(b) == cfg->features.grid &&
             backbone_dim(b) == cfg->features.dim);
    float *x = sn_malloc(sizeof(float) * 6 * crop * crop);
    float *a = photo(PHOTO_A, b, cfg), *c = photo(PHOTO_B, b, cfg);
    memcpy(x, a, sizeof(float) * 3 * crop * crop);
    memcpy(x + 3 * crop * crop, c, sizeof(float) * 3 * crop * crop);
    float *f = sn_malloc(sizeof(float) * 2 * per);
    double t0 = sn_now();
    TU_CHECK(backbone_extract(b, x, 2, f) == SN_OK);
    printf("  %s: 2 images in %.2f s\n", arch, sn_now() - t0);

    /* Finite, not constant, different for different photos. */
    int finite = 1;
    double diff = 0, norm = 0;
    for (long i = 0; i < per; i++) {
        finite &= isfinite(f[i]) && isfinite(f[per + i]);
        diff += fabs(f[i] - f[per + i]);
        norm += fabs(f[i]);
    }
    printf("  %s: mean |f| %.4g, mean |f_a - f_b| %.4g\n", arch, norm / per, diff / per);
    TU_CHECK(finite);
    TU_CHECK(norm > 0 && diff > 0.05 * norm);
    sn_free(x);
    sn_free(a);
    sn_free(c);
    sn_free(f);
    backbone_free(b);
}

static void check_errors(struct sn_config *cfg, const char *dir)
{
    struct backbone *b;

    /* The ViT-Ti file opened as a DINOv2 ViT-B (no registers). */
    snprintf(cfg->backbone.arch, sizeof cfg->backbone.arch, "dinov2_vitb14");
    snprintf(cfg->backbone.weights, sizeof cfg->backbone.weights, "%s",
             tu_shared(VIT_FILE));
    TU_CHECK_ERR(backbone_open(cfg, &b),
                 "cls_token has shape [1, 1, 192], expected [1, 1, 768]");

    /* The ResNet file opened as a ViT: its tensors are missing. */
    snprintf(cfg->backbone.weights, sizeof cfg->backbone.weights, "%s",
             tu_shared(RESNET_FILE));
    TU_CHECK_ERR(backbone_open(cfg, &b), "tensor pos_embed is missing");

    /* A Meta .pth checkpoint. */
    char pth[CFG_STR];
    snprintf(pth, sizeof pth, "%.400s/dinov2_vitb14_reg4_pretrain.pth", dir);
    sn_write_file_atomic(pth, "PK\x03\x04", 4);
    snprintf(cfg->backbone.weights, sizeof cfg->backbone.weights, "%s", pth);
    TU_CHECK_ERR(backbone_open(cfg, &b), "model.safetensors");
    remove(pth);
    remove(dir);
}

int main(void)
{
    if (!tu_shared(RESNET_FILE) || !tu_shared(VIT_FILE) || !tu_shared(PHOTO_A))
        tu_skip("../shared/weights not found (set SNARM_SHARED): real-weight checks need "
                "%s and %s",
                RESNET_FILE, VIT_FILE);
    struct sn_config cfg;
    config_defaults(&cfg);

    /* ResNet-18 at the default geometry (392 -> grid 49, d 512). */
    check_real(&cfg, RESNET_FILE, "resnet18");

    /* ViT-Ti/16 at its 224 input, blocks 3..10 in two groups. */
    cfg.data.resize = 256;
    cfg.data.crop = 224;
    cfg.features.grid = 28;
    cfg.features.pool_dim = 256;
    cfg.features.dim = 128;
    cfg.backbone.layers.n = 8;
    for (int i = 0; i < 8; i++)
        cfg.backbone.layers.v[i] = 3 + i;
    check_real(&cfg, VIT_FILE, "vit_tiny_patch16");

    check_errors(&cfg, tu_tmpdir("backbone-data"));
    return tu_finish("test_backbone_data");
}
