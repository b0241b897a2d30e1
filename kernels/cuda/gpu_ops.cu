/*
 * gpu_ops.cu - the ViT forward on the device: LayerNorm, bias + exact
 * GELU, residual update, softmax, attention, a whole block and the token
 * embedding (gpu.h; CPU twins in kernels/ops.h and core/vit.c).
 *
 * Row kernels (LayerNorm, softmax) give one block to each row; a thread
 * always visits the same columns in every pass, which is what lets the
 * output overwrite the input. Attention runs per sequence as two strided
 * batched GEMMs over the heads around a softmax of the score matrices, the
 * same decomposition as the CPU path (which tiles the query rows instead).
 */
#include <math.h>

#include "gpu_internal.cuh"

/* ------------------------------------------------------------------------ */
/* Row kernels */

/* Threads for a row of d values: whole warps, at most 256. */
static int row_threads(int d)
{
    int w = (d + 31) / 32;
    return 32 * SN_MAX(1, SN_MIN(w, 8));
}

__device__ __forceinline__ float block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float r = lane < nw ? sh[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1)
            r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, o));
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    return sh[0];
}

/* LayerNorm of one row per block: mean, then the centred variance. */
__global__ void layernorm_kernel(const float *x, int d, const float *w, const float *b,
                                 float eps, float *y)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * d;
    float *yr = y + (size_t)blockIdx.x * d;
    float s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        s += xr[j];
    float mean = gpu_block_sum(s, sh) / (float)d;

    float q = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        q += (xr[j] - mean) * (xr[j] - mean);
    float var = gpu_block_sum(q, sh);
    float inv = 1.0f / sqrtf(var / (float)d + eps);

    for (int j = threadIdx.x; j < d; j += blockDim.x)
        yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
}

extern "C" void gpu_layernorm(struct gpu_ctx *g, const float *x, int n, int d,
                              const float *w, const float *b, float eps, float *y)
{
    if (n <= 0) return;
    layernorm_kernel<<<n, row_threads(d), 0, g->stream>>>(x, d, w, b, eps, y);
    KERNEL_CHECK();
}

/* Softmax of scale * x over one row per block; the maximum is taken before
 * scaling, which is valid for scale > 0. */
__global__ void softmax_kernel(float *x, int d, float scale)
{
    __shared__ float sh[32];
    float *xr = x + (size_t)blockIdx.x * d;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        m = fmaxf(m, xr[j]);
    m = block_max(m, sh);

    float s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float e = expf((xr[j] - m) * scale);
        xr[j] = e;
        s += e;
    }
    float inv = 1.0f / gpu_block_sum(s, sh);
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        xr[j] *= inv;
}

extern "C" void gpu_softmax_rows(struct gpu_ctx *g, float *x, int n, int d, float scale)
{
    SN_ASSERT(scale > 0.0f);
    if (n <= 0) return;
    softmax_kernel<<<n, row_threads(d), 0, g->stream>>>(x, d, scale);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* Element-wise kernels */

__global__ void bias_gelu_kernel(float *x, long total, int d, const float *bias)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        float v = x[i] + (bias ? bias[i % d] : 0.0f);
        x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

extern "C" void gpu_bias_gelu(struct gpu_ctx *g, float *x, int n, int d,
                              const float *bias)
{
    long total = (long)n * d;
    if (total <= 0) return;
    bias_gelu_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                       g->stream>>>(x, total, d, bias);
    KERNEL_CHECK();
}

__global__ void residual_add_kernel(float *x, const float *y, long total, int d,
                                    const float *bias, const float *gamma)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        int j = (int)(i % d);
        float v = y[i] + (bias ? bias[j] : 0.0f);
        x[i] += (gamma ? gamma[j] : 1.0f) * v;
    }
}

extern "C" void gpu_residual_add(struct gpu_ctx *g, float *x, const float *y, int n,
                                 int d, const float *bias, const float *gamma)
{
    long total = (long)n * d;
    if (total <= 0) return;
    residual_add_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                          g->stream>>>(x, y, total, d, bias, gamma);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* Attention */

extern "C" size_t gpu_attention_scratch_floats(int t, int heads)
{
    return (size_t)heads * t * t;
}

extern "C" void gpu_attention(struct gpu_ctx *g, const float *qkv, int b, int t, int dim,
                              int heads, float *out, float *scratch)
{
    SN_ASSERT(dim % heads == 0);
    const int hd = dim / heads, ld = 3 * dim;
    const long long tt = (long long)t * t;
    for (int s = 0; s < b; s++) {
        const float *q = qkv + (size_t)s * t * ld, *k = q + dim, *v = q + 2 * dim;
        float *o = out + (size_t)s * t * dim;

        /* scores q k^T of every head, then the scaled softmax of each row */
        gpu_sgemm_rm_batched(g, 0, 1, t, t, hd, 1.0f, q, ld, hd, k, ld, hd, 0.0f, scratch,
                             t, tt, heads);
        gpu_softmax_rows(g, scratch, heads * t, t, 1.0f / sqrtf((float)hd));

        /* weighted values into each head's columns of the output */
        gpu_sgemm_rm_batched(g, 0, 0, t, hd, t, 1.0f, scratch, t, tt, v, ld, hd, 0.0f, o,
                             dim, hd, heads);
    }
}

/* ------------------------------------------------------------------------ */
/* A ViT block */

extern "C" size_t gpu_vit_block_work_floats(const struct gpu_vit_shape *s)
{
    size_t m = (size_t)s->n * s->t, d = (size_t)s->dim;
    return m * d + m * 3 * d + m * (size_t)s->hidden +
           gpu_attention_scratch_floats(s->t, s->heads);
}

extern "C" void gpu_vit_block_forward(struct gpu_ctx *g, const struct gpu_vit_block *b,
                                      const struct gpu_vit_shape *s, float *x,
                                      float *work)
{
    const int m = s->n * s->t, d = s->dim, h = s->hidden;
    float *xn = work, *qkv = xn + (size_t)m * d, *hid = qkv + (size_t)m * 3 * d;
    float *att = hid + (size_t)m * h;

    /* attention branch: x += ls1 * proj(attn(norm1(x))) */
    gpu_layernorm(g, x, m, d, b->n1w, b->n1b, s->eps, xn);
    gpu_linear(g, xn, m, d, b->qkv_w, b->qkv_b, 3 * d, qkv);
    gpu_attention(g, qkv, s->n, s->t, d, s->heads, xn, att);
    gpu_linear(g, xn, m, d, b->proj_w, NULL, d, qkv);
    gpu_residual_add(g, x, qkv, m, d, b->proj_b, b->ls1);

    /* MLP branch: x += ls2 * fc2(gelu(fc1(norm2(x)))) */
    gpu_layernorm(g, x, m, d, b->n2w, b->n2b, s->eps, xn);
    gpu_linear(g, xn, m, d, b->fc1_w, NULL, h, hid);
    gpu_bias_gelu(g, hid, m, h, b->fc1_b);
    gpu_linear(g, hid, m, h, b->fc2_w, NULL, d, xn);
    gpu_residual_add(g, x, xn, m, d, b->fc2_b, b->ls2);
}

/* ------------------------------------------------------------------------ */
/* Token embedding */

extern "C" size_t gpu_vit_embed_work_floats(int n, int size, int patch)
{
    size_t gg = (size_t)(size / patch) * (size / patch);
    return (size_t)n * gg * 3 * patch * patch;
}

/* col[(s g g + patch) x 3 p p]: the pixels under each patch, in the order of
 * the weight's [3][p][p] axes. */
__global__ void patch_unfold_kernel(const float *chw, int n, int size, int p, int g,
                                    float *col)
{
    const long k = 3L * p * p, total = (long)n * g * g * k;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        long row = i / k;
        int kk = (int)(i % k), c = kk / (p * p), ky = (kk / p) % p, kx = kk % p;
        int s = (int)(row / (g * g)), pi = (int)(row % (g * g));
        int yy = (pi / g) * p + ky, xx = (pi % g) * p + kx;
        col[i] = chw[(((size_t)s * 3 + c) * size + yy) * size + xx];
    }
}

/* Prefix rows (class, registers) and position + bias on the patch rows. */
__global__ void embed_finish_kernel(float *x, int n, int t, int pre, int dim,
                                    const float *patch_b, const float *pos,
                                    const float *cls, const float *cls_pos,
                                    const float *reg)
{
    const long total = (long)n * t * dim;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x) {
        int j = (int)(i % dim), r = (int)((i / dim) % t);
        if (r == 0)
            x[i] = cls[j] + (cls_pos ? cls_pos[j] : 0.0f);
        else if (r < pre)
            x[i] = reg[(size_t)(r - 1) * dim + j];
        else
            x[i] += pos[(size_t)(r - pre) * dim + j] + patch_b[j];
    }
}

extern "C" void gpu_vit_embed_forward(struct gpu_ctx *g, const struct gpu_vit_embed *e,
                                      const float *chw, int n, int size, float *x,
                                      float *work)
{
    const int p = e->patch, gs = size / p, gg = gs * gs, k = 3 * p * p;
    const int pre = 1 + e->n_reg, t = pre + gg, d = e->dim;
    SN_ASSERT(gs >= 1 && n >= 1);

    /* patch convolution: unfold, then one product per image into its rows */
    long cols = (long)n * gg * k;
    patch_unfold_kernel<<<gpu_blocks_capped(cols, GPU_THREADS), GPU_THREADS, 0,
                          g->stream>>>(chw, n, size, p, gs, work);
    KERNEL_CHECK();
    gpu_sgemm_rm_batched(g, 0, 1, gg, d, k, 1.0f, work, k, (long long)gg * k, e->patch_w,
                         k, 0, 0.0f, x + (size_t)pre * d, d, (long long)t * d, n);

    /* class and register tokens; positions and bias on the patches */
    long total = (long)n * t * d;
    embed_finish_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                          g->stream>>>(x, n, t, pre, d, e->patch_b, e->pos, e->cls,
                                       e->cls_pos, e->reg);
    KERNEL_CHECK();
}
