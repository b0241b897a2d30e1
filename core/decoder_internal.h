/*
 * decoder_internal.h - the decoder's activation arena, shared by its source
 * files (decoder.c, decoder_pass.c, decoder_io.c); not part of the API.
 */
#ifndef SNARM_DECODER_INTERNAL_H
#define SNARM_DECODER_INTERNAL_H

#include "decoder.h"
#include "decoder_conv.h"

enum decoder_mode { DECODER_MODE_NONE = 0, DECODER_MODE_TRAIN, DECODER_MODE_EVAL };

/*
 * Everything one forward/backward pass needs for up to max_batch images,
 * carved from one allocation (the Mamba caches are the mixer's own).
 * "seq" arrays hold nb = scans * B sequences of M cells x e channels,
 * scan-major (sequence s * B + i is image i in scan order s).
 */
struct decoder_acts {
    int max_batch, train;
    size_t bytes;
    void *arena;

    /* The latest pass. */
    enum decoder_mode mode;
    int B, branch;
    const float *R, *H; /* inputs kept by pointer until the backward pass */

    /* Scan orders of the grid and their inverses. */
    int *perm[DECODER_MAX_SCANS], *inv[DECODER_MAX_SCANS];

    /* Matching: waypoint map, self references, intra and hybrid residuals. */
    float *Q, *Qstar; /* B x M */
    int *S;           /* B x n_self */
    int *sel, *len;   /* nb x n_visit positions the mixer visits; nb lengths */
    float *Rt, *Hbuf; /* B x M x d, B x M x 2d */
    float *nav_up;    /* B x out^2 up-sampled Q */

    /* Branch. */
    float *emb;                      /* B x M x e */
    float *r[DECODER_MAX_BLOCKS];    /* residual stream entering block k */
    float *xn[DECODER_MAX_BLOCKS];   /* RMSNorm(r_k) */
    float *rstd[DECODER_MAX_BLOCKS]; /* nb x M */
    float *h;                        /* block output (conv + mixer cells) */
    float *pk_in, *pk_out;           /* packed visited cells, nb*n_visit x e */
    struct mamba_cache *mc[DECODER_MAX_BLOCKS];
    float *z;                 /* dropout(h) + r, LayerNorm's input */
    float *ln_mean, *ln_rstd; /* nb x M */
    uint8_t *drop;            /* dropout mask */
    float *o, *o_rm;          /* LayerNorm output, scan / row order */

    /* Heads of the branch (one set reused in eval mode). */
    float *a[DECODER_MAX_SCANS]; /* conv3x3 output, B x M x e */
    float *y[DECODER_MAX_SCANS]; /* after BatchNorm and ReLU */
    float *bn_mean[DECODER_MAX_SCANS], *bn_rstd[DECODER_MAX_SCANS]; /* e */
    float *logit[DECODER_MAX_SCANS];                                /* B x M */
    float *up[DECODER_MAX_SCANS];                                   /* B x out^2 */

    /* Loss and backward scratch (train only). */
    float *target; /* B x out^2 mask as 0/1 floats */
    float *d_nav_up, *d_up[DECODER_MAX_SCANS];
    float *g2, *gr; /* seq-sized gradients */
    float *g_emb;   /* B x M x e */
    float *g_y;     /* B x M x e */
    float *g_small; /* B x M */

    /* Valid-tap plans of the SMBs' (dilation 1) and the heads' convs. */
    struct dconv_plan plan_smb, plan_head[DECODER_MAX_BRANCHES];
    float *conv_work;
    int conv_threads; /* the OpenMP threads conv_work was sized for */
};

#endif
