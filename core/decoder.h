/*
 * decoder.h - the learned part of SNARM (SPEC section 2, steps 7-13): the
 * residual navigator, the self-navigated Mamba module (SNMM) and the
 * multi-view decoder (MVD), with hand-written backward passes.
 *
 * Per image, given the image features f and the inter residual R (M x d,
 * M = grid^2 cells in row-major order):
 *
 *   navigator   Q = sigmoid(conv1x1(R)), Q* = Q + mean_c R    (waypoint map)
 *   self refs   S = the round(M p / 100) cells of lowest Q* (no gradient)
 *   intra       Rt = residual_intra(f, S)                   (no gradient)
 *   hybrid      H = concat(R, Rt), 2d channels. With matching.hybrid = 0
 *               the embedding reads R alone (d channels) and no intra
 *               matching runs.
 *   branch b    embed conv1x1 in -> e; the four scan orders of layers.h
 *               (row, column, and their reverses) stacked scan-major as
 *               one batch of scans x B sequences sharing the SMB weights.
 *               Each SMB composes the residual stream as Mamba's Block:
 *                   r_0 = embed (in scan order);  r_k = h_{k-1} + r_{k-1}
 *                   x_k = RMSNorm(r_k)
 *                   c_k = conv3x3(x_k laid out as a grid in scan order:
 *                         position t -> cell (t / grid, t % grid))
 *                   h_k = c_k, with the positions whose cell is outside S
 *                         replaced by mixer(c_k at those positions, taken
 *                         in scan order as one shorter sequence)
 *               (matching.navigate = 0: the mixer visits every position)
 *               then o = LayerNorm(dropout(h_last) + r_last), un-permuted
 *               back to row-major order: o^(b,s).
 *   head (b,s)  conv3x3 dilation r_b, BatchNorm, ReLU, conv1x1 e -> 1,
 *               bilinear up-sampling (align_corners) to out x out, sigmoid.
 *
 * Training (core/train.h) runs the navigator and ONE active branch: the
 * loss is focal(Up(Q)) + mean over the scans of focal(head map), where
 * Up(Q) up-samples the navigator's probabilities (Eq. 12 applies the
 * sigmoid before the up-sampling) and both focal losses average over
 * pixels. The other branches are not run at all in training, so their
 * BatchNorm statistics only move while they are active. Prediction runs
 * every branch with BatchNorm in eval mode and no dropout.
 *
 * Kernels: the building blocks of kernels/layers.h and the mixer of
 * kernels/mamba.h; the 3 x 3 convolutions are core/decoder_conv.h's, which
 * skip the taps that fall into the zero padding (most of them at the large
 * dilations) and compute the same function as layers.h's conv3x3.
 *
 * Memory: parameters live in ONE allocation carved into tensors, the
 * gradients in a second one of the same layout, the BatchNorm running
 * statistics in a third; activations are allocated once per batch size
 * (decoder_reserve) and reused by every branch and every step. Each
 * branch's parameters are contiguous, so the optimiser updates the
 * navigator and the active branch as two ranges of the flat arrays.
 *
 * Data parallelism: with a reduce hook set (decoder_set_reduce), every
 * rank runs its shard of a batch and the BatchNorm statistics are summed
 * over ranks (synchronised BatchNorm), so the summed gradients equal the
 * single-rank ones up to rounding. Dropout masks come from streams seeded
 * by (noise seed, global sample index, scan), so they too do not depend on
 * how a batch is split.
 *
 * Usage:
 *   struct decoder_dims dims;  decoder_dims_from_config(&dims, cfg);
 *   struct decoder dec;        decoder_init(&dec, &dims);
 *   decoder_params_init(&dec, &rng);   (or decoder_load(&dec, path))
 *   decoder_reserve(&dec, batch, 1);
 *   training step:  decoder_grads_zero(&dec, b);
 *                   decoder_forward_train(&dec, f, R, B, b, seed, first);
 *                   decoder_loss(&dec, mask, weight, &loss);
 *                   decoder_backward(&dec);
 *   prediction:     decoder_predict(&dec, f, R, B, maps, mean);
 *   decoder_free(&dec);
 */
#ifndef SNARM_DECODER_H
#define SNARM_DECODER_H

#include <hdf5.h>
#include <stdint.h>

#include "config.h"
#include "kernels/mamba.h"
#include "rng.h"

#define DECODER_MAX_BRANCHES 8
#define DECODER_MAX_BLOCKS 16
#define DECODER_MAX_SCANS 4
#define DECODER_NAME 64

/* Sizes and switches, all derived from the configuration. */
struct decoder_dims {
    int grid, M;  /* feature grid side, cells */
    int d;        /* feature / residual channels */
    int in_ch;    /* embedding input: 2d (hybrid) or d */
    int e;        /* SNMM width */
    int blocks;   /* SMBs per branch */
    int scans;    /* scan orders (= heads) per branch */
    int branches; /* one per dilation */
    int dil[DECODER_MAX_BRANCHES];
    int out; /* output map side (data.crop) */
    double p_percent;
    int n_self;  /* |S| = round(M p / 100) */
    int n_visit; /* cells the mixer visits per sequence */
    int hybrid, navigate, pow2;
    float dropout;
    struct mamba_dims mx;
};

/* Loss weights of the focal terms (train.*). */
struct decoder_focal {
    float nav_alpha, nav_gamma;
    float head_alpha, head_gamma;
};

int decoder_dims_from_config(struct decoder_dims *dims, const struct sn_config *cfg);
void decoder_focal_from_config(struct decoder_focal *fc, const struct sn_config *cfg);

/* Parameter tensors, pointing into the flat arrays. */
struct decoder_head_w {
    float *conv_w, *conv_b; /* [e][e][3][3], [e] */
    float *bn_w, *bn_b;     /* [e] */
    float *out_w, *out_b;   /* [1][e], [1] */
};
struct decoder_smb_w {
    float *norm_w;          /* [e] */
    float *conv_w, *conv_b; /* [e][e][3][3], [e] */
    struct mamba_params mx;
};
struct decoder_branch_w {
    float *embed_w, *embed_b; /* [e][in_ch], [e] */
    struct decoder_smb_w smb[DECODER_MAX_BLOCKS];
    float *ln_w, *ln_b; /* [e] */
    struct decoder_head_w head[DECODER_MAX_SCANS];
};
struct decoder_weights {
    float *nav_w, *nav_b; /* [1][d], [1] */
    struct decoder_branch_w br[DECODER_MAX_BRANCHES];
};

/* One named tensor of a flat array: the checkpoint and golden-test view.
 * Names: "nav.w", "b1.embed.w", "b1.smb0.conv.w", "b1.smb0.mixer.in_w",
 * "b1.ln.w", "b1.head2.bn.w", ...; running statistics "b1.head2.bn.mean"
 * and ".var" in the buffer table. Shapes are PyTorch's. */
struct decoder_tensor {
    char name[DECODER_NAME];
    long offset, count; /* floats */
    int ndim;
    int shape[4];
    int branch; /* -1: navigator */
};

struct decoder_acts;

/* Phases of a training step, timed while dec->profile is set. */
enum decoder_phase {
    DECODER_PH_MATCH,     /* waypoint map, self references, intra matching */
    DECODER_PH_EMBED,     /* embedding and scan permutations */
    DECODER_PH_SMB_CONV,  /* the SMBs' conv3x3 */
    DECODER_PH_MIXER,     /* the Mamba mixer on the visited cells */
    DECODER_PH_NORMS,     /* RMSNorm, dropout, LayerNorm, residual adds */
    DECODER_PH_HEAD_CONV, /* the heads' dilated conv3x3 */
    DECODER_PH_HEAD_REST, /* BatchNorm, ReLU, conv1x1, up-sampling */
    DECODER_PH_LOSS,      /* focal losses */
    DECODER_PH_N
};
const char *decoder_phase_name(int phase);

struct decoder {
    struct decoder_dims dims;

    long n_params;         /* floats in params and grads (tensors padded) */
    float *params, *grads; /* one allocation each */
    struct decoder_weights w, g;
    int n_tensors;
    struct decoder_tensor *tensors;
    long nav_offset, nav_count;
    long br_offset[DECODER_MAX_BRANCHES], br_count[DECODER_MAX_BRANCHES];

    long n_buffers; /* BatchNorm running statistics */
    float *buffers;
    float *bn_mean[DECODER_MAX_BRANCHES][DECODER_MAX_SCANS];
    float *bn_var[DECODER_MAX_BRANCHES][DECODER_MAX_SCANS];
    int n_buffer_tensors;
    struct decoder_tensor *buffer_tensors;

    struct decoder_focal focal;

    /* Synchronised BatchNorm across ranks: sum n floats in place. */
    void (*reduce)(float *buf, long n, void *ctx);
    void *reduce_ctx;
    long batch_global; /* images of the whole batch over all ranks */

    struct decoder_acts *acts; /* NULL until decoder_reserve */

    /* Profile: seconds per phase, forward and backward, accumulated. */
    int profile;
    double phase_fwd[DECODER_PH_N], phase_bwd[DECODER_PH_N];
};

/* Loss terms of the latest decoder_loss (means over pixels of this rank's
 * images; the total is nav + head). */
struct decoder_loss {
    double nav, head;
};

/* Allocate parameters, gradients and buffers (zeroed; BN variances 1). */
int decoder_init(struct decoder *dec, const struct decoder_dims *dims);
void decoder_free(struct decoder *dec);
/* PyTorch's default initialisation (fan-in uniform; Mamba's own scheme). */
void decoder_params_init(struct decoder *dec, struct rng_state *rng);
/* Activations for batches of up to max_batch images; train = 0 allocates
 * only what prediction needs. Reallocates only when the size grows. */
void decoder_reserve(struct decoder *dec, int max_batch, int train);
/* Bytes of parameters + gradients + buffers and of activations. */
size_t decoder_param_bytes(const struct decoder *dec);
size_t decoder_act_bytes(const struct decoder *dec);

/* Set (or clear, with sum NULL) the cross-rank sum for synchronised
 * BatchNorm; batch_global is the whole batch over all ranks. */
void decoder_set_reduce(struct decoder *dec, void (*sum)(float *, long, void *),
                        void *ctx, long batch_global);

/* Zero the gradients of the navigator and of branch b. */
void decoder_grads_zero(struct decoder *dec, int branch);

/*
 * Training forward pass of B images (f, R: B x M x d, already jittered):
 * navigator, self references, intra matching and branch `branch` with its
 * scans heads, BatchNorm in train mode (running statistics updated), dropout
 * drawn from streams of noise_seed and the global index first + i of each
 * image. R is read again by decoder_backward: keep it unchanged until then.
 * Returns SN_OK or SN_EUSER (non-finite features).
 */
int decoder_forward_train(struct decoder *dec, const float *f, const float *R, int B,
                          int branch, uint64_t noise_seed, long first);

/* Focal losses of the latest training forward against the masks (B x out x
 * out, 0/1), and the output gradients for decoder_backward, scaled by
 * weight (1 on one rank; B / batch_global when ranks share a batch). */
void decoder_loss(struct decoder *dec, const uint8_t *mask, float weight,
                  struct decoder_loss *loss);

/* Backward pass of the latest training forward: ACCUMULATES the gradients
 * of the navigator and the active branch into dec->grads. */
void decoder_backward(struct decoder *dec);

/*
 * Prediction for B images: every branch, BatchNorm in eval mode, no
 * dropout. maps (may be NULL): B x (branches * scans) x out x out
 * probabilities, head (b, s) at index b * scans + s; mean (may be NULL):
 * B x out x out, their mean (Eq. 16). Returns SN_OK or SN_EUSER.
 */
int decoder_predict(struct decoder *dec, const float *f, const float *R, int B,
                    float *maps, float *mean);

/* Views of the latest forward pass (valid until the next one). */
const float *decoder_waypoint(const struct decoder *dec); /* B x M, Q* */
const float *decoder_nav_prob(const struct decoder *dec); /* B x M, Q */
const int *decoder_self_refs(const struct decoder *dec);  /* B x n_self */
const float *decoder_intra(const struct decoder *dec);    /* B x M x d */
const float *decoder_nav_map(const struct decoder *dec);  /* B x out^2 */
/* Up-sampled logits of head s of the active branch (training). */
const float *decoder_head_logits(const struct decoder *dec, int s);

/* Tensor lookup by name (NULL if absent): parameters (offsets into params
 * and grads) and BatchNorm statistics (offsets into buffers). */
const struct decoder_tensor *decoder_tensor_find(const struct decoder *dec,
                                                 const char *name);
const struct decoder_tensor *decoder_buffer_find(const struct decoder *dec,
                                                 const char *name);

/* Parameters and BatchNorm statistics in HDF5: groups /params and /buffers
 * with one dataset per tensor, plus the dimensions as attributes. Save is
 * atomic (temporary name, then rename); load checks every tensor's shape
 * and names the file and tensor on a mismatch. */
int decoder_save(const struct decoder *dec, const char *path);
int decoder_load(struct decoder *dec, const char *path);

/* The pieces of save/load, for files that hold more (checkpoints): write
 * tensors of base as datasets of a new group; read them back (path names
 * the file in messages). */
void decoder_tensors_write(hid_t file, const char *group, const struct decoder_tensor *t,
                           int n, const float *base);
int decoder_tensors_read(hid_t file, const char *path, const char *group,
                         const struct decoder_tensor *t, int n, float *base);
/* The dimensions as attributes of the root group, and the check that a
 * file's attributes match dec's dimensions (an error names the key). */
void decoder_dims_write(hid_t file, const struct decoder_dims *dims);
int decoder_dims_check(hid_t file, const char *path, const struct decoder_dims *dims);

#endif
