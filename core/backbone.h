/*
 * backbone.h - the frozen feature extractor and the fused patch features
 * (SPEC section 2, steps 2-5; Eq. 1 of the paper).
 *
 * A backbone is opened from the configuration (backbone.arch, .weights,
 * .weights_missing, .layers, .groups, .interpolate_offset; features.grid,
 * .pool_dim, .dim; data.crop as the input size) and turns a batch of
 * pre-processed images into one d-vector per feature-grid cell:
 *
 *   ViT family (DINOv2 with or without registers, timm ViT):
 *     run blocks up to the last one in backbone.layers; drop the class and
 *     register tokens; average the requested blocks within each of
 *     backbone.groups consecutive groups; up-sample each group map
 *     bilinearly (align_corners = false) to grid x grid; pool its channels
 *     adaptively to pool_dim; concatenate the groups and pool to dim.
 *
 *   resnet18 (torchvision):
 *     layer2 and layer3 outputs, each averaged over its 3 x 3 neighbourhood
 *     (stride 1, zero padding counted, i.e. count_include_pad = true as in
 *     PatchCore's AvgPool2d(3, 1, 1)); layer3 up-sampled bilinearly to the
 *     layer2 grid; then the same up-sampling and two-stage pooling, with
 *     layer2 and layer3 as the two groups.
 *
 * Position-embedding interpolation (DINOv2): the variant with
 * interpolate_offset (default 0.1): bicubic, a = -0.75, align_corners =
 * false, no antialiasing, source coordinates scaled by (g + offset) / G
 * while producing g x g outputs. An offset of 0 gives the exact-size
 * variant of newer releases.
 *
 * Arch names: dinov2_vits14_reg, dinov2_vitb14_reg (default),
 * dinov2_vitl14_reg, dinov2_vitg14_reg, dinov2_vits14, dinov2_vitb14,
 * dinov2_vitl14, vit_tiny_patch16, resnet18.
 */
#ifndef SNARM_BACKBONE_H
#define SNARM_BACKBONE_H

#include "config.h"

struct backbone;
struct vit_config;
struct resnet_config;

/* Open the configured backbone: load its weights (safetensors) or, with
 * weights_missing = random and no weights file, draw a seeded random
 * initialisation from run.seed. Returns SN_OK or SN_EUSER (message names
 * the file, the tensor or the key). */
int backbone_open(const struct sn_config *cfg, struct backbone **out);
/* The same with an explicit architecture instead of backbone.arch (exactly
 * one of vc, rc non-NULL): small or custom models, golden tests. */
int backbone_open_custom(const struct sn_config *cfg, const struct vit_config *vc,
                         const struct resnet_config *rc, struct backbone **out);
void backbone_free(struct backbone *b);

/* One line for logs and run records, e.g.
 * "dinov2_vitb14_reg, weights model.safetensors (sha256 1a2b...)" or
 * "dinov2_vitb14_reg, RANDOM INIT seed 0 (not pretrained)". */
const char *backbone_describe(const struct backbone *b);
/* Hex sha256 of the weights file, or "random-seed-<n>". */
const char *backbone_weights_hash(const struct backbone *b);
int backbone_is_random(const struct backbone *b);

/* The input normalisation the backbone was trained with. */
void backbone_normalisation(const struct backbone *b, float mean[3], float std[3]);

/* Input side (data.crop), feature grid side and feature dimension d. */
int backbone_input_size(const struct backbone *b);
int backbone_grid(const struct backbone *b);
int backbone_dim(const struct backbone *b);

/* SPEC steps 2-5. chw holds n images, each 3 x crop x crop (planar RGB,
 * already normalised). feats receives n x (grid * grid) x d floats,
 * cell-major (row-major grid, channels contiguous). Activations are
 * allocated on the first call and reused while n stays the same. The
 * work is spread over the OpenMP threads (BLAS single-threaded inside);
 * one call at a time per backbone. Returns SN_OK, or SN_EUSER when the
 * input is smaller than the patch size. */
int backbone_extract(struct backbone *b, const float *chw, int n, float *feats);

#endif
