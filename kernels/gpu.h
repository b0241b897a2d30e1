/*
 * gpu.h - the CUDA path: device twins of the CPU hot paths, callable from C.
 *
 * Every function here has a CPU twin that is the reference (named in its
 * comment) and a parity test under tests/test_cuda_*.c that runs both on
 * random inputs and compares them with a stated tolerance. The CPU build
 * sees only gpu_available() and gpu_device_count(); the rest exists when
 * SNARM_HAVE_CUDA is defined (the CMake option SNARM_CUDA and a toolkit with
 * cuBLAS and NCCL).
 *
 * Conventions.
 *  - A struct gpu_ctx owns one device, one stream and one cuBLAS handle.
 *    Every operation is queued on that stream in call order; functions that
 *    return a host value (a loss, a search result) synchronise first.
 *  - Pointers are device pointers unless a parameter says "host". Layouts
 *    are exactly those of the CPU twin (row-major float32, HWC maps).
 *  - Device memory is allocated once per lifetime: a module takes its
 *    buffers from a struct gpu_arena sized at creation, or asks the caller
 *    for a workspace whose size a *_work_floats() function gives.
 *  - Every CUDA, cuBLAS and NCCL call and every kernel launch is checked; a
 *    failure stops the process naming the call, file, line, rank and host.
 *    SNARM_CUDA_SYNC=1 in the environment synchronises after every launch,
 *    so that an asynchronous fault is reported at the kernel that caused it.
 *  - GEMMs run in strict fp32 (no TF32) unless gpu_ctx_set_tf32() allows it;
 *    the parity tests use fp32.
 *  - Reductions (column sums, BatchNorm statistics, the focal loss, the
 *    scan's parameter gradients) run in a fixed order that depends only on
 *    the shapes, never on timing, and cuBLAS is bit-reproducible for one
 *    toolkit on one GPU model: reruns are bit-identical. Results differ
 *    from the CPU's by re-association only.
 *  - Not ported yet: the Mamba mixer around its scan (projections are
 *    gpu_linear calls, but the causal conv1d, softplus and gate are not
 *    here), the bilinear up-sampling of the heads, and the CPU ViT's
 *    weights are private to core/vit.c, so a device ViT needs an accessor
 *    there before gpu_vit_* can run the real backbone.
 *
 *     struct gpu_ctx *g = gpu_ctx_new(0);
 *     struct gpu_arena a;  gpu_arena_init(&a, bytes);
 *     float *x = gpu_arena_floats(&a, n * d);
 *     gpu_upload(g, x, host_x, n * d * sizeof(float));
 *     gpu_layernorm(g, x, n, d, w, b, 1e-6f, x);
 *     gpu_download(g, host_x, x, n * d * sizeof(float));
 *     gpu_arena_free(&a);  gpu_ctx_free(g);
 */
#ifndef SNARM_GPU_H
#define SNARM_GPU_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this build has the CUDA path and sees at least one device; 0 in a
 * CPU build or without a usable device or driver (never fatal). */
int gpu_available(void);
/* Devices visible (0 in a CPU build or without a driver). */
int gpu_device_count(void);

#ifdef SNARM_HAVE_CUDA

#include "kernels/layers.h"

/* ------------------------------------------------------------------------ */
/* Context, memory, transfers */

struct gpu_ctx;
/* Select device, create its stream, cuBLAS handle and a small reduction
 * scratch. Fatal when the device cannot be used. */
struct gpu_ctx *gpu_ctx_new(int device);
void gpu_ctx_free(struct gpu_ctx *g);
/* Allow TF32 tensor cores in the GEMMs (faster, about 1e-3 relative). */
void gpu_ctx_set_tf32(struct gpu_ctx *g, int on);
/* Wait for everything queued on the context's stream. */
void gpu_sync(struct gpu_ctx *g);
/* "NVIDIA H200 (sm_90, 139.8 GiB)" into buf. */
void gpu_ctx_describe(const struct gpu_ctx *g, char *buf, size_t cap);

/* A bump allocator over one device allocation: buffers are carved in call
 * order (256-byte aligned) and released together. Running out is a broken
 * invariant (fatal, naming the sizes): size the arena at creation. */
struct gpu_arena {
    char *base;
    size_t cap, used, peak;
};
void gpu_arena_init(struct gpu_arena *a, size_t bytes);
void *gpu_arena_alloc(struct gpu_arena *a, size_t bytes);
float *gpu_arena_floats(struct gpu_arena *a, size_t n);
/* Forget every carving (the memory stays allocated). */
void gpu_arena_reset(struct gpu_arena *a);
void gpu_arena_free(struct gpu_arena *a);

/* Host to device (queued; the host buffer must stay valid until the next
 * synchronisation), device to host (synchronous), device zeroing. */
void gpu_upload(struct gpu_ctx *g, void *dst, const void *host_src, size_t bytes);
void gpu_download(struct gpu_ctx *g, void *host_dst, const void *src, size_t bytes);
void gpu_zero(struct gpu_ctx *g, void *dst, size_t bytes);

/* ------------------------------------------------------------------------ */
/* Backbone operations (CPU twins in kernels/ops.h, same arguments) */

/* y[n x out] = x[n x in] W^T (+ bias): ops_linear / conv1x1_forward. */
void gpu_linear(struct gpu_ctx *g, const float *x, int n, int in, const float *w,
                const float *bias, int out, float *y);
/* conv1x1_backward: dw += dy^T x, db += column sums of dy (may be NULL),
 * dx = dy w (may be NULL). */
void gpu_linear_backward(struct gpu_ctx *g, float *dx, float *dw, float *db,
                         const float *dy, const float *x, const float *w, long n, int in,
                         int out);
/* ops_layernorm (two-pass statistics; y may equal x). */
void gpu_layernorm(struct gpu_ctx *g, const float *x, int n, int d, const float *w,
                   const float *b, float eps, float *y);
/* ops_bias_gelu: exact (erf) GELU of x + bias, in place; bias may be NULL. */
void gpu_bias_gelu(struct gpu_ctx *g, float *x, int n, int d, const float *bias);
/* ops_residual_add: x += gamma * (y + bias); either may be NULL. */
void gpu_residual_add(struct gpu_ctx *g, float *x, const float *y, int n, int d,
                      const float *bias, const float *gamma);
/* ops_softmax_rows: softmax of scale * x per row, in place (scale > 0). */
void gpu_softmax_rows(struct gpu_ctx *g, float *x, int n, int d, float scale);
/* ops_attention: qkv[b*t x 3 dim] -> out[b*t x dim], heads concatenated.
 * scratch: gpu_attention_scratch_floats(t, heads) floats (the score
 * matrices of one sequence's heads). */
size_t gpu_attention_scratch_floats(int t, int heads);
void gpu_attention(struct gpu_ctx *g, const float *qkv, int b, int t, int dim, int heads,
                   float *out, float *scratch);

/* One pre-norm ViT block with LayerScale and an exact-GELU MLP, as
 * vit_block_forward in core/vit.c: x += ls1 * proj(attn(norm1(x))), then
 * x += ls2 * fc2(gelu(fc1(norm2(x)))). Weights in PyTorch layout. */
struct gpu_vit_block {
    const float *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
    const float *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
};
struct gpu_vit_shape {
    int n, t; /* sequences (images) and tokens per sequence */
    int dim, heads, hidden;
    float eps; /* LayerNorm epsilon (1e-6 for DINOv2) */
};
size_t gpu_vit_block_work_floats(const struct gpu_vit_shape *s);
void gpu_vit_block_forward(struct gpu_ctx *g, const struct gpu_vit_block *b,
                           const struct gpu_vit_shape *s, float *x, float *work);

/* Token embedding as vit_embed in core/vit.c: for each of n planar images
 * (3 x size x size, normalised), the stride-p patch convolution (patch_w
 * [dim x 3 p p], patch_b), plus pos (the g x g x dim patch-grid position
 * embedding, already resampled), written after the prefix; the class token
 * is cls + cls_pos (cls_pos may be NULL), then n_reg register rows.
 * x: n x t x dim with t = 1 + n_reg + g g, g = size / p. work:
 * gpu_vit_embed_work_floats(n, size, p) floats. */
struct gpu_vit_embed {
    const float *patch_w, *patch_b, *pos, *cls, *cls_pos, *reg;
    int dim, patch, n_reg;
};
size_t gpu_vit_embed_work_floats(int n, int size, int patch);
void gpu_vit_embed_forward(struct gpu_ctx *g, const struct gpu_vit_embed *e,
                           const float *chw, int n, int size, float *x, float *work);

/* ------------------------------------------------------------------------ */
/* Memory bank search (CPU twins in core/knn.h and core/coreset.h) */

/* Exact top-k by squared L2 against a bank kept on the device, as
 * knn_search: a GEMM shortlist of k + 2 per query, re-scored exactly (in
 * double) and ordered by (distance, index). Bank and workspace are
 * allocated once by gpu_knn_new for up to max_nq queries per call. */
struct gpu_knn;
struct gpu_knn *gpu_knn_new(struct gpu_ctx *g, long nb, int d, long max_nq);
void gpu_knn_free(struct gpu_knn *kn);
/* Upload the bank (host nb x d). SN_EUSER naming the row for a NaN,
 * infinite or overflowing row. */
int gpu_knn_set_bank(struct gpu_knn *kn, const float *bank_host);
/* Host queries and results (nq x k, stride k), the contract of knn_search:
 * k in 1..62; k above nb fills -1 / inf past nb. */
int gpu_knn_search(struct gpu_knn *kn, const float *q_host, long nq, int k, int *idx,
                   float *dist2);
/* The same with device queries and device results. */
int gpu_knn_search_dev(struct gpu_knn *kn, const float *q, long nq, int k, int *idx,
                       float *dist2);
/* Lower the query rows per distance tile (sized for 256 MiB by default);
 * the tests use it to exercise several tiles. Never raises it. */
void gpu_knn_set_tile_rows(struct gpu_knn *kn, long rows);

/* coreset_greedy on the device: host inputs and results, the same
 * arguments, errors and selections (farthest point, lowest index on ties;
 * the distances are summed in the CPU's order, so without a projection the
 * selection is bit-for-bit the CPU's). */
int gpu_coreset_greedy(struct gpu_ctx *g, const float *x, long n, int d,
                       const float *proj, int proj_dim, long start, long T,
                       long *selected, long *n_selected);

/* ------------------------------------------------------------------------ */
/* Selective scan (the scan of mamba_forward / mamba_backward in
 * kernels/mamba.h), over B packed sequences of lengths len[] (host), one
 * thread per (sequence, channel) looping over time with the state in
 * registers:
 *   h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = C_t h_t + D u_t.
 * delta, u, y: T x E. B_t and C_t: n floats each at rows of stride ld_bc
 * (so they can be read in place from x_proj's output). A: E x n, the
 * negative matrix -exp(A_log). D: E. n <= 16. */
struct gpu_scan_args {
    const float *delta, *u;
    const float *Bm, *Cm;
    int ld_bc;
    const float *A, *D;
};
struct gpu_scan;
/* Workspace (state checkpoints, partial gradients) for at most max_B
 * sequences and max_T packed tokens. */
struct gpu_scan *gpu_scan_new(int max_B, int max_T, int E, int n);
void gpu_scan_free(struct gpu_scan *s);
void gpu_scan_forward(struct gpu_ctx *g, struct gpu_scan *s, int B, const int *len,
                      const struct gpu_scan_args *a, float *y);
/* Backward of the latest forward on s with the same arguments. Writes du,
 * ddelta (T x E) and dB, dC (rows of stride ld_dbc); ACCUMULATES dA (E x n,
 * the gradient of A itself: dA_log = dA * A) and dD. */
void gpu_scan_backward(struct gpu_ctx *g, struct gpu_scan *s,
                       const struct gpu_scan_args *a, const float *dy, float *du,
                       float *ddelta, float *dB, float *dC, int ld_dbc, float *dA,
                       float *dD);

/* ------------------------------------------------------------------------ */
/* Decoder layers (CPU twins in kernels/layers.h, same arguments and
 * gradient convention: parameter gradients accumulate, dx is written) */

size_t gpu_conv3x3_work_floats(const struct conv3x3_shape *s);
void gpu_conv3x3_forward(struct gpu_ctx *g, float *y, const float *x, const float *w,
                         const float *b, const struct conv3x3_shape *s, float *work);
void gpu_conv3x3_backward(struct gpu_ctx *g, float *dx, float *dw, float *db,
                          const float *dy, const float *x, const float *w,
                          const struct conv3x3_shape *s, float *work);

void gpu_batchnorm_forward_train(struct gpu_ctx *g, float *y, float *mean, float *rstd,
                                 const float *x, const float *gamma, const float *beta,
                                 float *run_mean, float *run_var, long n, int c,
                                 float momentum, float eps);
void gpu_batchnorm_forward_eval(struct gpu_ctx *g, float *y, const float *x,
                                const float *gamma, const float *beta,
                                const float *run_mean, const float *run_var, long n,
                                int c, float eps);
void gpu_batchnorm_backward(struct gpu_ctx *g, float *dx, float *dgamma, float *dbeta,
                            const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *gamma, long n, int c);

void gpu_relu_forward(struct gpu_ctx *g, float *y, const float *x, long n);
void gpu_relu_backward(struct gpu_ctx *g, float *dx, const float *dy, const float *y,
                       long n);

/* Focal losses; target on the device; return the mean (synchronises). */
double gpu_focal_loss_logit(struct gpu_ctx *g, const float *logit, const float *target,
                            long n, float alpha, float gamma, float *dlogit, float scale);
double gpu_focal_loss_prob(struct gpu_ctx *g, const float *p, const float *target, long n,
                           float alpha, float gamma, float *dp, float scale);

void gpu_adamw_update(struct gpu_ctx *g, float *param, const float *grad, float *m,
                      float *v, long n, long step, const struct adamw_config *cfg);
void gpu_adamw_update_ranges(struct gpu_ctx *g, float *param, const float *grad, float *m,
                             float *v, const struct adamw_range *ranges, int nranges,
                             const struct adamw_config *cfg);

/* ------------------------------------------------------------------------ */
/* Gradient all-reduce over NCCL: comm_open_nccl() is declared in
 * dist/comm.h and defined in kernels/cuda/comm_nccl.cu. The trainer's
 * grad_reduce callback for device gradients (ctx is a struct comm * opened
 * with comm_open_nccl): the sum over the group, divided by the group size
 * on the device. comm_grad_reduce itself divides on the host and must not
 * be given device buffers. */
void gpu_grad_reduce(float *grad, long n, void *ctx);

#endif /* SNARM_HAVE_CUDA */

#endif
