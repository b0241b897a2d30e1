/*
 * vit.h - Vision Transformers on the CPU: the DINOv2 family (ViT-S/B/L/G,
 * patch 14, with or without registers, LayerScale, SwiGLU for ViT-g) and
 * plain timm ViTs with a class head (e.g. ViT-Ti/16).
 *
 * Token layout after the embedding: [class, registers..., patches (row-major)].
 * The position embedding is added to the class token (when the checkpoint
 * has an entry for it) and to the patches; registers are inserted after
 * that and get none, as in DINOv2.
 *
 * Position-embedding interpolation, when the patch grid g differs from the
 * checkpoint's grid G: bicubic (a = -0.75, align_corners = false, no
 * antialiasing) to g x g, with source coordinates scaled by
 * G / (g + interpolate_offset). interpolate_offset = 0.1 is the variant the
 * SNARM authors load (DINOv2's original code); 0 gives the exact-size
 * variant of newer releases. With g == G the embedding is used unchanged.
 *
 * Weights come from a safetensors file in either naming: Meta / timm
 * ("blocks.N.attn.qkv", "pos_embed", "register_tokens" or "reg_token") or
 * Hugging Face Dinov2(WithRegisters)Model ("encoder.layer.N.attention.
 * attention.query/key/value", fused here into one qkv matrix). Every tensor
 * is checked against the configured shapes; the position grid, the head
 * and whether the class token has a position entry are read from the file.
 */
#ifndef SNARM_VIT_H
#define SNARM_VIT_H

#include <stdint.h>

#include "safetensors.h"

struct vit_config {
    int dim, depth, heads;
    int mlp_hidden; /* fc1 width (GELU MLP) or the SwiGLU hidden width */
    int swiglu;     /* 1: SwiGLU MLP (DINOv2 ViT-g) */
    int patch;
    int pos_grid;   /* G: side of the learned position grid */
    int cls_pos;    /* 1: the position embedding has a class-token entry */
    int n_reg;      /* register tokens */
    int layerscale; /* 1: ls1 / ls2 vectors */
    int n_classes;  /* 0: no classification head */
    float eps;      /* LayerNorm epsilon */
    double interpolate_offset;
    float mean[3], std[3]; /* input normalisation */
};

/* The configuration of a named architecture (see backbone.h for names). */
int vit_config_for_arch(const char *arch, struct vit_config *c);

struct vit;

/* Load from an open safetensors file; c gives the expected architecture. */
int vit_load(const struct vit_config *c, struct st_file *f, struct vit **out);
/* Seeded random initialisation: uniform values of standard deviation 0.02
 * for matrices and embeddings, zero biases, unit LayerNorm and LayerScale. */
struct vit *vit_init_random(const struct vit_config *c, uint64_t seed);
void vit_free(struct vit *v);

const struct vit_config *vit_config_of(const struct vit *v);
/* Patch grid side for an input side, and tokens per image. */
int vit_grid(const struct vit *v, int size);
int vit_tokens(const struct vit *v, int size);
/* Tokens in front of the patches (class + registers). */
int vit_prefix(const struct vit *v);

/* Called after each block with the residual stream x (n x t x dim). */
typedef void (*vit_tap_fn)(void *ctx, int block, const float *x, int n, int t, int dim);

/* Run n images (3 x size x size each, planar, normalised) through blocks
 * 0..last and call tap after each. Activations are allocated once per
 * (n, size) and reused. */
int vit_forward(struct vit *v, const float *chw, int n, int size, int last,
                vit_tap_fn tap, void *ctx);

/* Class logits (n x n_classes): all blocks, final LayerNorm of the class
 * token, head. SN_EUSER when the weights have no head. */
int vit_classify(struct vit *v, const float *chw, int n, int size, float *logits);

/* Floating-point operations of one image through blocks 0..last. */
double vit_flops(const struct vit *v, int size, int last);

#endif
