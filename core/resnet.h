/*
 * resnet.h - torchvision ResNet (basic blocks) on the CPU, stem to layer3,
 * the second backbone family (PatchCore-style layer2 + layer3 features).
 *
 * Names are torchvision's: conv1 / bn1, layerL.B.conv1 / bn1, conv2 / bn2,
 * layerL.0.downsample.0 (conv) / downsample.1 (BatchNorm). Each convolution
 * either carries its BatchNorm folded in (conv weight plus a conv bias, as
 * in the shared resnet18 file) or comes with the separate BatchNorm
 * tensors (weight, bias, running_mean, running_var; eps 1e-5), which are
 * folded on load. layer4 and the classifier, if present, are ignored.
 */
#ifndef SNARM_RESNET_H
#define SNARM_RESNET_H

#include <stdint.h>

#include "safetensors.h"

struct resnet_config {
    int width;     /* channels of the stem and layer1 (64); layer L has width 2^(L-1) */
    int blocks[3]; /* basic blocks in layer1..layer3 (2, 2, 2 for resnet18) */
    float mean[3], std[3];
};

int resnet_config_for_arch(const char *arch, struct resnet_config *c);

struct resnet;

int resnet_load(const struct resnet_config *c, struct st_file *f, struct resnet **out);
/* Seeded random initialisation (He-scaled uniform weights, zero biases). */
struct resnet *resnet_init_random(const struct resnet_config *c, uint64_t seed);
void resnet_free(struct resnet *r);
const struct resnet_config *resnet_config_of(const struct resnet *r);

/* Channels and sides of the layer2 and layer3 outputs for an input side. */
void resnet_shapes(const struct resnet *r, int size, int *c2, int *s2, int *c3, int *s3);

/* One image (3 x size x size, planar, normalised) to layer3. *l2 and *l3
 * point at the layer outputs (CHW) inside buffers owned by r, valid until
 * the next call. Buffers are allocated once per input size. */
int resnet_forward(struct resnet *r, const float *chw, int size, const float **l2,
                   const float **l3);

#endif
