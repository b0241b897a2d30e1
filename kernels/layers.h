/*
 * layers.h - the building blocks of the SNARM decoder, each a forward and a
 * hand-written backward pass on the CPU.
 *
 * Layouts. Feature maps are HWC and batch-major: x[b][y][x][c], cells in
 * row-major order with their channels contiguous. Sequences are B x L x C.
 * Most layers only see "rows of channels": n rows (n = B*H*W cells or B*L
 * tokens) of c contiguous floats. Weights follow PyTorch so that a golden
 * test can copy them: conv1x1 [C_out][C_in], conv3x3 [C_out][C_in][3][3].
 *
 * Gradient convention. Every _backward ACCUMULATES (+=) into the parameter
 * gradients (dw, db, dgamma, ...) and WRITES (=) the input gradient dx,
 * unless a comment says otherwise. The layers with parameters (conv1x1,
 * conv3x3, batchnorm, rmsnorm, layernorm) accept dx = NULL when the input
 * needs no gradient (e.g. data), and db = NULL when there is no bias.
 * Element-wise layers allow dx == dy (in place).
 *
 * Determinism. Reductions run in a fixed order that does not depend on the
 * number of OpenMP threads (channel sums split channels, not rows), so a
 * resumed run reproduces an uninterrupted one.
 *
 * A decoder head, forward, for n maps of h x w cells and e channels (each
 * intermediate kept, since the backward passes read them):
 *
 *     struct conv3x3_shape s = {n, h, w, e, e, r};
 *     float *work = sn_aligned(conv3x3_work_floats(&s) * sizeof(float));
 *     long cells = (long)n * h * w;
 *     conv3x3_forward(c, x, w3, b3, &s, work);
 *     batchnorm_forward_train(z, bn_mean, bn_rstd, c, gamma, beta,
 *                             run_mean, run_var, cells, e,
 *                             LAYERS_BN_MOMENTUM, LAYERS_NORM_EPS);
 *     relu_forward(z, z, cells * e);            (in place: backward reads y)
 *     conv1x1_forward(logit, z, w1, b1, cells, e, 1);
 *     upsample_bilinear_forward(up, logit, n, h, w, H, W, 1,
 *                               UPSAMPLE_ALIGN_CORNERS);
 *     loss = focal_loss_logit(up, mask, (long)n * H * W, 0.25f, 4.0f,
 *                             dup, 0.25f);     (one of four scan heads)
 *
 * and backward in reverse: upsample_bilinear_backward(dlogit, dup, ...),
 * conv1x1_backward(dz, dw1, db1, dlogit, z, w1, ...), relu_backward(dz, dz,
 * z, ...), batchnorm_backward(dc, dgamma, dbeta, dz, c, bn_mean, bn_rstd,
 * gamma, ...), conv3x3_backward(dx, dw3, db3, dc, x, w3, &s, work).
 */
#ifndef SNARM_LAYERS_H
#define SNARM_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* Defaults of the method's layers (PyTorch's defaults). */
#define LAYERS_NORM_EPS 1e-5f   /* BatchNorm, RMSNorm, LayerNorm */
#define LAYERS_BN_MOMENTUM 0.1f /* running statistics update */

/* ------------------------------------------------------------------------ */
/* conv1x1 / linear over channels: y[i][o] = sum_k x[i][k] w[o][k] + b[o].
 * n rows, w is [c_out][c_in] (PyTorch Conv2d 1x1 or Linear), b may be NULL.
 * Backward: dw += dy^T x, db += column sums of dy (db may be NULL),
 * dx = dy w (dx may be NULL). */
void conv1x1_forward(float *y, const float *x, const float *w, const float *b, long n,
                     int c_in, int c_out);
void conv1x1_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, long n, int c_in, int c_out);

/* ------------------------------------------------------------------------ */
/* conv3x3 with dilation dil and zero padding dil (output the same size), on
 * n HWC maps of h x w cells. w is [c_out][c_in][3][3], b [c_out] (may be
 * NULL). Both passes need a workspace of conv3x3_work_floats() floats
 * (the unfolded horizontal taps of one map, their gradient, and repacked
 * weights: 2 h w 3 c_in + 18 c_out c_in); it holds nothing between calls,
 * so one workspace can serve every conv of the same or smaller shape.
 * x and y must not overlap. */
struct conv3x3_shape {
    int n;    /* maps (batch x scans) */
    int h, w; /* cells per map */
    int c_in, c_out;
    int dil; /* dilation = padding, >= 1 */
};
size_t conv3x3_work_floats(const struct conv3x3_shape *s);
void conv3x3_forward(float *y, const float *x, const float *w, const float *b,
                     const struct conv3x3_shape *s, float *work);
void conv3x3_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, const struct conv3x3_shape *s, float *work);

/* ------------------------------------------------------------------------ */
/* BatchNorm2d over n cells of c channels (all maps of the batch together).
 * Train mode normalises with the batch mean and biased variance, saves
 * mean[c] and rstd[c] = 1/sqrt(var + eps) for the backward pass, and updates
 * the running statistics as PyTorch: run = (1-momentum) run + momentum stat,
 * with the unbiased variance (n/(n-1)) for run_var. run_mean/run_var may be
 * NULL to skip the update. Eval mode uses the running statistics. y may
 * equal x (in train mode only when no backward pass follows: it reads x).
 * The backward pass is the train-mode one; dx may equal dy. */
void batchnorm_forward_train(float *y, float *mean, float *rstd, const float *x,
                             const float *gamma, const float *beta, float *run_mean,
                             float *run_var, long n, int c, float momentum, float eps);
void batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                            const float *beta, const float *run_mean,
                            const float *run_var, long n, int c, float eps);
void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, long n, int c);

/* ------------------------------------------------------------------------ */
/* Element-wise activations over n floats; y may equal x, dx may equal dy.
 * relu and sigmoid take their OUTPUT y in backward (so they can run in
 * place); silu takes its input x. */
void relu_forward(float *y, const float *x, long n);
void relu_backward(float *dx, const float *dy, const float *y, long n);
void sigmoid_forward(float *y, const float *x, long n);
void sigmoid_backward(float *dx, const float *dy, const float *y, long n);
void silu_forward(float *y, const float *x, long n);
void silu_backward(float *dx, const float *dy, const float *x, long n);

/* ------------------------------------------------------------------------ */
/* RMSNorm over the last dim: y = x / sqrt(mean(x^2) + eps) * w.
 * rstd[n] is saved for the backward pass. y may equal x only if the
 * backward pass is not needed (it reads x). */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, long n, int c,
                     float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                      const float *rstd, const float *w, long n, int c);

/* LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) * w + b,
 * biased variance; mean[n] and rstd[n] are saved for the backward pass,
 * which reads x (so y may equal x only when no backward pass follows). */
void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, long n, int c, float eps);
void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *w, long n,
                        int c);

/* ------------------------------------------------------------------------ */
/* Dropout with rate p and inverted scaling: y = x * keep / (1 - p), where
 * keep = (rng_uniform >= p), one draw per element in index order, stored in
 * mask[n] (1 kept, 0 dropped) for the backward pass. With train == 0 or
 * p == 0 it is the identity, draws nothing and sets every mask entry to 1.
 * y may equal x; dx may equal dy. */
void dropout_forward(float *y, uint8_t *mask, const float *x, long n, float p, int train,
                     struct rng_state *rng);
void dropout_backward(float *dx, const float *dy, const uint8_t *mask, long n, float p);

/* ------------------------------------------------------------------------ */
/* Bilinear resampling of n HWC maps of h x w cells and c channels to
 * oh x ow, as torch.nn.functional.interpolate(mode="bilinear") with the
 * given align_corners. The decoder heads use c = 1 and align_corners
 * (49 x 49 -> 392 x 392). The weights match PyTorch's float32 kernel to
 * the bit. Backward writes din (=). in and out must not overlap. */
enum upsample_align {
    UPSAMPLE_HALF_PIXEL = 0,   /* align_corners = false */
    UPSAMPLE_ALIGN_CORNERS = 1 /* align_corners = true */
};
void upsample_bilinear_forward(float *out, const float *in, int n, int h, int w, int oh,
                               int ow, int c, enum upsample_align align);
void upsample_bilinear_backward(float *din, const float *dout, int n, int h, int w,
                                int oh, int ow, int c, enum upsample_align align);

/* ------------------------------------------------------------------------ */
/* Focal loss, the torchvision sigmoid_focal_loss definition with mean
 * reduction over the n pixels:
 *     FL = mean_i  -alpha_t (1 - p_t)^gamma log(p_t),
 *     p_t = p if target 1 else 1 - p,  alpha_t = alpha if target 1 else
 *     1 - alpha  (alpha < 0 disables the weighting: alpha_t = 1).
 * Targets are binary: a target > 0.5 counts as 1.
 * focal_loss_logit takes logits (p = sigmoid(logit)) and is stable for any
 * logit; it returns FL and, when dlogit is not NULL, writes (=)
 * dlogit[i] = scale * dFL/dlogit[i] (scale lets the caller weight terms,
 * e.g. 1/4 for the mean over four scan heads).
 * focal_loss_prob takes probabilities p in [0, 1] (for a map that was passed
 * through the sigmoid before it was up-sampled); p_t is clamped to
 * [FOCAL_PROB_EPS, 1] inside the log and the power, and the gradient
 * dFL/dp is zero where the clamp is active. */
#define FOCAL_PROB_EPS 1e-6f
double focal_loss_logit(const float *logit, const float *target, long n, float alpha,
                        float gamma, float *dlogit, float scale);
double focal_loss_prob(const float *p, const float *target, long n, float alpha,
                       float gamma, float *dp, float scale);

/* ------------------------------------------------------------------------ */
/* AdamW as torch.optim.AdamW: p -= lr * wd * p (decoupled decay), then
 * m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * The update runs over ranges of one flat parameter array (with its
 * gradient and moment arrays of the same layout), so the caller can update
 * only the active branch and the navigator. Each range carries its own step
 * count t (1 for the first update of those parameters); the caller keeps
 * and saves the counts. Parameters outside every range, and their moments,
 * are not touched (as torch skips parameters without a gradient). */
struct adamw_config {
    double lr;           /* 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0.05 */
};
struct adamw_range {
    long offset, count; /* floats in the flat arrays */
    long step;          /* t for this update, >= 1 */
};
/* The scalars are doubles, as PyTorch's Python floats, so that the float
 * update matches torch.optim.AdamW to rounding. */
void adamw_config_default(struct adamw_config *cfg, double lr, double weight_decay);
void adamw_update(float *param, const float *grad, float *m, float *v, long n, long step,
                  const struct adamw_config *cfg);
void adamw_update_ranges(float *param, const float *grad, float *m, float *v,
                         const struct adamw_range *ranges, int nranges,
                         const struct adamw_config *cfg);

/* ------------------------------------------------------------------------ */
/* Cell packing for self-navigation: rows of c floats picked by an index
 * list (e.g. the suspicious cells of one scan, in scan order).
 * gather:      dst[i] = src[idx[i]]            for i < k
 * scatter:     dst[idx[i]] = src[i]            (other rows of dst untouched)
 * scatter_add: dst[idx[i]] += src[i]           (the backward of gather)
 * The backward of scatter is a gather of the output gradient. */
void cells_gather(float *dst, const float *src, const int *idx, int k, int c);
void cells_scatter(float *dst, const float *src, const int *idx, int k, int c);
void cells_scatter_add(float *dst, const float *src, const int *idx, int k, int c);

/* Scan orders of an h x w grid. perm[t] is the row-major cell visited at
 * step t; the inverse gives each cell's position in the scan. Permuting a
 * map into scan order is cells_gather(seq, map, perm, h*w, c); back into
 * row-major order, cells_gather(map, seq, inv, h*w, c). */
enum scan_order {
    SCAN_ROW = 0,     /* row-major */
    SCAN_COL = 1,     /* column-major */
    SCAN_ROW_REV = 2, /* row-major, reversed */
    SCAN_COL_REV = 3, /* column-major, reversed */
    SCAN_ORDERS = 4
};
void scan_perm(int *perm, int h, int w, enum scan_order order);
void scan_perm_inverse(int *inv, const int *perm, int n);

/* Mean over the c channels of each of n rows: out[i] = mean_k x[i][k]
 * (the channel mean of the inter residual in the waypoint map). Backward
 * writes dx[i][k] = dout[i] / c. */
void channel_mean_forward(float *out, const float *x, long n, int c);
void channel_mean_backward(float *dx, const float *dout, long n, int c);

#endif
