/*
 * mamba.h - the Mamba mixer (selective state-space model) of the
 * self-navigated Mamba blocks, forward and backward on the CPU.
 *
 * The mixer maps a sequence of tokens of width e (d_model) to a sequence of
 * the same shape:
 *
 *   x, z   = split(in_proj(tok))                 in_proj: e -> 2E, no bias
 *   u      = SiLU(causal depthwise conv1d(x))    width k, k-1 zeros on the left
 *   dt_raw, B, C = split(x_proj(u))              x_proj: E -> r + 2n, no bias
 *   delta  = softplus(dt_proj(dt_raw) + dt_b)    dt_proj: r -> E
 *   A      = -exp(A_log)
 *   h_t    = exp(delta_t A) h_{t-1} + delta_t B_t u_t      (per channel, state)
 *   y_t    = C_t h_t + D u_t
 *   out    = out_proj(y * SiLU(z))               out_proj: E -> e, no bias
 *
 * Variable length. In SNARM the mixer visits only the cells outside the
 * self-reference set, so every sequence of a batch has its own length. The
 * caller gathers the visited cells of each scan, in scan order, into one
 * packed buffer: sequence b occupies rows [off_b, off_b + len[b]) of a
 * T x e row-major array, off_b = len[0] + ... + len[b-1], T = the sum of all
 * lengths. A length of 0 is allowed. The state h restarts at zero for every
 * sequence and the causal convolution never reaches across sequences; the
 * projections run as single GEMMs over all T tokens.
 *
 * Usage:
 *   struct mamba_dims d;  mamba_dims_set(&d, 128, 4, 4, 2);
 *   float *w = sn_aligned(mamba_param_count(&d) * sizeof(float));
 *   struct mamba_params p;  mamba_params_carve(&d, w, &p);
 *   mamba_params_init(&d, &p, &rng);
 *   struct mamba_cache *c = mamba_cache_new(&d, max_B, max_T);
 *   mamba_forward(&d, &p, x, B, len, y, c);
 *   mamba_backward(&d, &p, dy, dx, &grads, c);   // grads carved like p
 *   mamba_cache_free(c);
 */
#ifndef SNARM_MAMBA_H
#define SNARM_MAMBA_H

#include <stddef.h>

#include "core/rng.h"

struct mamba_dims {
    int e; /* d_model: token width in and out */
    int E; /* d_inner = expand * e */
    int n; /* d_state */
    int k; /* d_conv: causal convolution width */
    int r; /* dt_rank = ceil(e / 16) */
};

/* SNARM's mixer is mamba_dims_set(&d, e, 4, 4, 2). */
void mamba_dims_set(struct mamba_dims *d, int e, int n, int k, int expand);

/* Parameters in PyTorch's mamba_simple layout, row-major, all float32:
 *   in_w    [2E x e]      rows 0..E-1 produce x, rows E..2E-1 produce z
 *   conv_w  [E x k]       depthwise; tap k-1 multiplies the current token
 *   conv_b  [E]
 *   xproj_w [(r+2n) x E]  rows: dt_raw (r), then B (n), then C (n)
 *   dt_w    [E x r]
 *   dt_b    [E]
 *   A_log   [E x n]
 *   D       [E]
 *   out_w   [e x E]
 * The same struct holds gradients (carved from a second block). */
struct mamba_params {
    float *in_w, *conv_w, *conv_b, *xproj_w, *dt_w, *dt_b, *A_log, *D, *out_w;
};

/* Number of floats of all parameters, in the order listed above. */
size_t mamba_param_count(const struct mamba_dims *d);
/* Point the fields of p into base (mamba_param_count floats). */
void mamba_params_carve(const struct mamba_dims *d, float *base, struct mamba_params *p);
/* Initialise as mamba_simple does: linear layers and the convolution
 * uniform in +-1/sqrt(fan_in) (nn.Linear/nn.Conv1d defaults), dt_w uniform
 * in +-r^-0.5, dt_b the inverse softplus of dt drawn log-uniform in
 * [1e-3, 1e-1] (floored at 1e-4), A_log = log(1..n) in every row, D = 1. */
void mamba_params_init(const struct mamba_dims *d, struct mamba_params *p,
                       struct rng_state *rng);

/* Activations saved by the forward pass for the backward pass, plus the
 * backward pass's scratch, allocated once for at most max_B sequences and
 * max_T packed tokens: e + 7E + 2(r + 2n) floats per token (7.6 KiB at
 * e = 128, so 142 MiB for 32 sequences of 600 tokens), plus small
 * per-sequence and per-thread terms. The state h (n x E per token) is not
 * stored: the forward pass keeps it every 32 tokens and the backward pass
 * recomputes the rest. A forward-only use (evaluation, or a branch that is
 * not being trained) still needs a cache, but one cache can serve any
 * number of forward-only mixers of the same size in turn. The per-thread
 * scratch is sized for the OpenMP thread count at creation, and the passes
 * use that many threads. */
struct mamba_cache;
struct mamba_cache *mamba_cache_new(const struct mamba_dims *d, int max_B, int max_T);
/* Bytes allocated by the cache, for the memory totals in the log. */
size_t mamba_cache_bytes(const struct mamba_cache *c);
void mamba_cache_free(struct mamba_cache *c);

/* x: packed T x e tokens of B sequences with lengths len[0..B-1] (see the
 * top of this file); y: T x e, written. x and y must not overlap. Saves what
 * the backward pass needs in c (the copy of len included). */
void mamba_forward(const struct mamba_dims *d, const struct mamba_params *p,
                   const float *x, int B, const int *len, float *y,
                   struct mamba_cache *c);

/* Backward of the latest mamba_forward on c, with the same parameters p.
 * dy: T x e; dx: T x e, written (not accumulated); parameter gradients are
 * ACCUMULATED into g (zero them once per step). Consumes the saved
 * activations: call mamba_forward again before another backward. The
 * result does not depend on the number of OpenMP threads. */
void mamba_backward(const struct mamba_dims *d, const struct mamba_params *p,
                    const float *dy, float *dx, struct mamba_params *g,
                    struct mamba_cache *c);

#endif
