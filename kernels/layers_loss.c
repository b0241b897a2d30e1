/*
 * layers_loss.c - the focal loss of the navigator and the heads, and the
 * AdamW update (see layers.h).
 *
 * The focal loss is evaluated over about six million pixels per training
 * step (four heads and the navigator at 392 x 392, batch 8), so the per-pixel
 * work stays in float with integer powers unrolled; the mean is summed in
 * double over fixed blocks, in block order, so it does not depend on the
 * thread count.
 */
#include <math.h>

#include "core/common.h"
#include "kernels/layers.h"

/* Pixels per partial sum of the loss. */
#define FOCAL_BLOCK 8192

/* q^gamma, with small integer exponents (the method's gamma is 4) as plain
 * products, which is both exact to rounding and much faster than powf. */
static inline float focal_pow(float q, float gamma, int igamma)
{
    if (igamma < 0) return powf(q, gamma);
    float r = 1.0f;
    for (int i = 0; i < igamma; i++)
        r *= q;
    return r;
}

static int focal_int_gamma(float gamma)
{
    return (gamma == floorf(gamma) && gamma >= 0.0f && gamma <= 16.0f) ? (int)gamma : -1;
}

/* One pixel from its logit: s = +-logit so that p_t = sigmoid(s),
 * q = 1 - p_t = sigmoid(-s), -log p_t = softplus(-s) (stable forms), and
 * FL = alpha_t q^gamma softplus(-s),
 * dFL/ds = -alpha_t q^gamma (gamma p_t softplus(-s) + q). */
static inline float focal_logit_pixel(float x, int pos, float alpha, float gamma,
                                      int igamma, float *dfdx)
{
    float s = pos ? x : -x;
    float at = alpha < 0.0f ? 1.0f : (pos ? alpha : 1.0f - alpha);
    float e = expf(-fabsf(s));
    float pt = s >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    float q = s >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    float sp = fmaxf(-s, 0.0f) + log1pf(e);
    float qg = focal_pow(q, gamma, igamma);
    float dfds = -at * qg * (gamma * pt * sp + q);
    *dfdx = pos ? dfds : -dfds;
    return at * qg * sp;
}

double focal_loss_logit(const float *logit, const float *target, long n, float alpha,
                        float gamma, float *dlogit, float scale)
{
    SN_ASSERT(n >= 1 && gamma >= 0.0f);
    long nblk = (n + FOCAL_BLOCK - 1) / FOCAL_BLOCK;
    double *part = sn_malloc(sizeof(double) * (size_t)nblk);
    int igamma = focal_int_gamma(gamma);
    float gscale = (float)(scale / (double)n);

    /* Per-pixel loss and gradient, partial sums per block. */
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nblk; b++) {
        double s = 0;
        for (long i = b * FOCAL_BLOCK; i < SN_MIN(n, (b + 1) * FOCAL_BLOCK); i++) {
            float g;
            s += focal_logit_pixel(logit[i], target[i] > 0.5f, alpha, gamma, igamma, &g);
            if (dlogit) dlogit[i] = g * gscale;
        }
        part[b] = s;
    }

    /* The mean over pixels. */
    double total = 0;
    for (long b = 0; b < nblk; b++)
        total += part[b];
    sn_free(part);
    return total / (double)n;
}

/* One pixel from its probability: p_t clamped to [FOCAL_PROB_EPS, 1],
 * FL = -alpha_t (1-p_t)^gamma log p_t,
 * dFL/dp_t = alpha_t (gamma (1-p_t)^(gamma-1) log p_t - (1-p_t)^gamma / p_t). */
static inline float focal_prob_pixel(float p, int pos, float alpha, float gamma,
                                     int igamma, float *dfdp)
{
    float at = alpha < 0.0f ? 1.0f : (pos ? alpha : 1.0f - alpha);
    /* q = 1 - p_t taken from p itself where it can be, so a small q keeps
     * its relative precision. */
    float pt = pos ? p : 1.0f - p, q = pos ? 1.0f - p : p;
    int clamped = pt < FOCAL_PROB_EPS;
    if (clamped) {
        pt = FOCAL_PROB_EPS;
        q = 1.0f - FOCAL_PROB_EPS;
    }
    float lp = logf(pt);
    float qg = focal_pow(q, gamma, igamma);

    /* The first term vanishes as q -> 0 for every gamma > 0 (log p_t ~ -q). */
    float d1 = (gamma > 0.0f && q > 0.0f) ? gamma * qg / q * lp : 0.0f;
    float dpt = at * (d1 - qg / pt);
    *dfdp = clamped ? 0.0f : (pos ? dpt : -dpt);
    return -at * qg * lp;
}

double focal_loss_prob(const float *p, const float *target, long n, float alpha,
                       float gamma, float *dp, float scale)
{
    SN_ASSERT(n >= 1 && gamma >= 0.0f);
    long nblk = (n + FOCAL_BLOCK - 1) / FOCAL_BLOCK;
    double *part = sn_malloc(sizeof(double) * (size_t)nblk);
    int igamma = focal_int_gamma(gamma);
    float gscale = (float)(scale / (double)n);

    /* Per-pixel loss and gradient, partial sums per block. */
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nblk; b++) {
        double s = 0;
        for (long i = b * FOCAL_BLOCK; i < SN_MIN(n, (b + 1) * FOCAL_BLOCK); i++) {
            float g;
            s += focal_prob_pixel(p[i], target[i] > 0.5f, alpha, gamma, igamma, &g);
            if (dp) dp[i] = g * gscale;
        }
        part[b] = s;
    }

    /* The mean over pixels. */
    double total = 0;
    for (long b = 0; b < nblk; b++)
        total += part[b];
    sn_free(part);
    return total / (double)n;
}

/* ------------------------------------------------------------------------ */
/* AdamW, in the order of operations of torch.optim.AdamW (single-tensor
 * path): scalars in double as Python computes them, tensors in float. */

void adamw_config_default(struct adamw_config *cfg, double lr, double weight_decay)
{
    cfg->lr = lr;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = weight_decay;
}

void adamw_update(float *param, const float *grad, float *m, float *v, long n, long step,
                  const struct adamw_config *cfg)
{
    SN_ASSERT(step >= 1);
    double bc1 = 1.0 - pow(cfg->beta1, (double)step);
    double bc2 = 1.0 - pow(cfg->beta2, (double)step);
    const float decay = (float)(1.0 - cfg->lr * cfg->weight_decay);
    const float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2;
    const float a1 = (float)(1.0 - cfg->beta1), a2 = (float)(1.0 - cfg->beta2);
    const float neg_step = (float)(-(cfg->lr / bc1)), bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)cfg->eps;

#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        /* Decoupled weight decay, then the moment updates. */
        float p = param[i] * decay, g = grad[i];
        m[i] = m[i] * b1 + a1 * g;
        v[i] = v[i] * b2 + a2 * g * g;

        /* Bias-corrected step. */
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] = p + neg_step * m[i] / denom;
    }
}

void adamw_update_ranges(float *param, const float *grad, float *m, float *v,
                         const struct adamw_range *ranges, int nranges,
                         const struct adamw_config *cfg)
{
    for (int r = 0; r < nranges; r++) {
        long o = ranges[r].offset;
        SN_ASSERT(o >= 0 && ranges[r].count >= 0);
        adamw_update(param + o, grad + o, m + o, v + o, ranges[r].count, ranges[r].step,
                     cfg);
    }
}
