/*
 * gpu_core.cu - the context, the arena, transfers, the row-major GEMM
 * wrappers, fixed-order column reductions and the linear layer (gpu.h).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.cuh"

/* Alignment of arena carvings: cuBLAS and vector loads like 256 bytes. */
#define GPU_ARENA_ALIGN 256
/* Pinned doubles for small read-backs (losses, flags). */
#define GPU_HOST_DOUBLES 1024
/* Column reductions: at most this many row chunks, of at least this many
 * rows each. */
#define GPU_COLRED_CHUNKS 256
#define GPU_COLRED_MIN_ROWS 512
/* Rows of threads in a column-reduction block (32 channels wide). */
#define GPU_COLRED_ROWS 8

/* ------------------------------------------------------------------------ */
/* Launch checks */

static int g_sync_mode = -1;

void gpu_launch_check_at(const char *file, int line)
{
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess)
        sn_fatal_at(file, line, "CUDA kernel launch failed: error %d (%s)", (int)rc,
                    cudaGetErrorString(rc));
    if (g_sync_mode < 0) {
        const char *e = getenv("SNARM_CUDA_SYNC");
        g_sync_mode = e && e[0] == '1';
    }
    if (!g_sync_mode) return;
    rc = cudaDeviceSynchronize();
    if (rc != cudaSuccess)
        sn_fatal_at(file, line, "CUDA kernel failed: error %d (%s)", (int)rc,
                    cudaGetErrorString(rc));
}

/* ------------------------------------------------------------------------ */
/* Context */

extern "C" struct gpu_ctx *gpu_ctx_new(int device)
{
    int count = gpu_device_count();
    if (device < 0 || device >= count)
        sn_fatal("CUDA device %d requested but %d visible", device, count);
    struct gpu_ctx *g = (struct gpu_ctx *)sn_calloc(1, sizeof *g);
    g->device = device;
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));

    /* cuBLAS on our stream, strict fp32 until TF32 is asked for */
    CUBLAS_CHECK(cublasCreate(&g->blas));
    CUBLAS_CHECK(cublasSetStream(g->blas, g->stream));
    CUBLAS_CHECK(cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH));

    /* reduction scratch and a pinned landing place for small results */
    g->red_cap = GPU_RED_DOUBLES;
    CUDA_CHECK(cudaMalloc((void **)&g->red, g->red_cap * sizeof(double)));
    CUDA_CHECK(cudaMallocHost((void **)&g->red_host, GPU_HOST_DOUBLES * sizeof(double)));
    return g;
}

extern "C" void gpu_ctx_free(struct gpu_ctx *g)
{
    if (!g) return;
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
    CUDA_CHECK(cudaFree(g->red));
    CUDA_CHECK(cudaFreeHost(g->red_host));
    CUBLAS_CHECK(cublasDestroy(g->blas));
    CUDA_CHECK(cudaStreamDestroy(g->stream));
    sn_free(g);
}

extern "C" void gpu_ctx_set_tf32(struct gpu_ctx *g, int on)
{
    g->tf32 = on != 0;
    CUBLAS_CHECK(cublasSetMathMode(g->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH
                                               : CUBLAS_DEFAULT_MATH));
}

extern "C" void gpu_sync(struct gpu_ctx *g)
{
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
}

extern "C" void gpu_ctx_describe(const struct gpu_ctx *g, char *buf, size_t cap)
{
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, g->device));
    snprintf(buf, cap, "%s (sm_%d%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
             p.multiProcessorCount);
}

/* ------------------------------------------------------------------------ */
/* Arena */

extern "C" void gpu_arena_init(struct gpu_arena *a, size_t bytes)
{
    memset(a, 0, sizeof *a);
    a->cap = bytes;
    if (bytes) CUDA_CHECK(cudaMalloc((void **)&a->base, bytes));
}

extern "C" void *gpu_arena_alloc(struct gpu_arena *a, size_t bytes)
{
    size_t at = (a->used + GPU_ARENA_ALIGN - 1) / GPU_ARENA_ALIGN * GPU_ARENA_ALIGN;
    if (at + bytes > a->cap)
        sn_fatal("GPU arena full: %zu bytes requested, %zu of %zu in use", bytes, at,
                 a->cap);
    a->used = at + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + at;
}

extern "C" float *gpu_arena_floats(struct gpu_arena *a, size_t n)
{
    return (float *)gpu_arena_alloc(a, n * sizeof(float));
}

extern "C" void gpu_arena_reset(struct gpu_arena *a)
{
    a->used = 0;
}

extern "C" void gpu_arena_free(struct gpu_arena *a)
{
    if (a->base) CUDA_CHECK(cudaFree(a->base));
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------ */
/* Transfers */

extern "C" void gpu_upload(struct gpu_ctx *g, void *dst, const void *host_src,
                           size_t bytes)
{
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g->stream));
}

extern "C" void gpu_download(struct gpu_ctx *g, void *host_dst, const void *src,
                             size_t bytes)
{
    if (bytes)
        CUDA_CHECK(
            cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
}

extern "C" void gpu_zero(struct gpu_ctx *g, void *dst, size_t bytes)
{
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, g->stream));
}

/* ------------------------------------------------------------------------ */
/* Row-major GEMM through column-major cuBLAS (see gpu_internal.cuh) */

void gpu_sgemm_rm(struct gpu_ctx *g, int ta, int tb, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C,
                  int ldc)
{
    if (m <= 0 || n <= 0) return;
    CUBLAS_CHECK(cublasSgemm(g->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                             ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ldb, A,
                             lda, &beta, C, ldc));
}

void gpu_sgemm_rm_batched(struct gpu_ctx *g, int ta, int tb, int m, int n, int k,
                          float alpha, const float *A, int lda, long long sa,
                          const float *B, int ldb, long long sb, float beta, float *C,
                          int ldc, long long sc, int count)
{
    if (m <= 0 || n <= 0 || count <= 0) return;
    CUBLAS_CHECK(cublasSgemmStridedBatched(
        g->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
        &alpha, B, ldb, sb, A, lda, sa, &beta, C, ldc, sc, count));
}

/* ------------------------------------------------------------------------ */
/* Fixed-order column reductions */

/* One (32-channel block, row chunk): each thread sums every
 * GPU_COLRED_ROWS-th row of the chunk in row order, then the block's rows of
 * threads are added in order. part[chunk][c] (and part2). */
template <int KIND>
__global__ void colred_chunk_kernel(const float *a, const float *x, const double *mean_d,
                                    const float *mean, const float *rstd, long n, int c,
                                    long rows_per_chunk, double *part, double *part2)
{
    __shared__ double s1[GPU_COLRED_ROWS][32], s2[GPU_COLRED_ROWS][32];
    int k = blockIdx.x * 32 + threadIdx.x, ty = threadIdx.y;
    long r0 = (long)blockIdx.y * rows_per_chunk;
    long r1 = min(n, r0 + rows_per_chunk);
    double acc = 0, acc2 = 0;
    if (k < c) {
        for (long i = r0 + ty; i < r1; i += GPU_COLRED_ROWS) {
            float v = a[i * c + k];
            if (KIND == GPU_COLRED_SUM) {
                acc += v;
            } else if (KIND == GPU_COLRED_SQDEV) {
                double d = (double)v - mean_d[k];
                acc += d * d;
            } else {
                float xhat = (x[i * c + k] - mean[k]) * rstd[k];
                acc += v;
                acc2 += (double)v * xhat;
            }
        }
    }
    s1[ty][threadIdx.x] = acc;
    s2[ty][threadIdx.x] = acc2;
    __syncthreads();
    if (ty != 0 || k >= c) return;

    /* the rows of threads, in order */
    for (int r = 1; r < GPU_COLRED_ROWS; r++) {
        acc += s1[r][threadIdx.x];
        acc2 += s2[r][threadIdx.x];
    }
    part[(long)blockIdx.y * c + k] = acc;
    if (KIND == GPU_COLRED_BNGRAD) part2[(long)blockIdx.y * c + k] = acc2;
}

/* out[k] = sum over chunks in chunk order. */
__global__ void colred_finish_kernel(const double *part, const double *part2, int nchunks,
                                     int c, double *out, double *out2)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= c) return;
    double s = 0, s2 = 0;
    for (int j = 0; j < nchunks; j++) {
        s += part[(long)j * c + k];
        if (out2) s2 += part2[(long)j * c + k];
    }
    out[k] = s;
    if (out2) out2[k] = s2;
}

size_t gpu_colred_scratch(int c)
{
    return 2 * (size_t)GPU_COLRED_CHUNKS * (size_t)c;
}

void gpu_colreduce(struct gpu_ctx *g, enum gpu_colred kind, const float *a,
                   const float *x, const double *mean_d, const float *mean,
                   const float *rstd, long n, int c, double *out, double *out2)
{
    SN_ASSERT(n >= 1 && c >= 1);
    SN_ASSERT(gpu_colred_scratch(c) <= g->red_cap);
    long nchunks = (n + GPU_COLRED_MIN_ROWS - 1) / GPU_COLRED_MIN_ROWS;
    nchunks = SN_MAX(1, SN_MIN(nchunks, (long)GPU_COLRED_CHUNKS));
    long rows = (n + nchunks - 1) / nchunks;
    double *part = g->red, *part2 = g->red + (size_t)GPU_COLRED_CHUNKS * c;

    /* chunk partial sums, then the chunks in order */
    dim3 grid((unsigned)((c + 31) / 32), (unsigned)nchunks), block(32, GPU_COLRED_ROWS);
    if (kind == GPU_COLRED_SUM)
        colred_chunk_kernel<GPU_COLRED_SUM><<<grid, block, 0, g->stream>>>(
            a, x, mean_d, mean, rstd, n, c, rows, part, part2);
    else if (kind == GPU_COLRED_SQDEV)
        colred_chunk_kernel<GPU_COLRED_SQDEV><<<grid, block, 0, g->stream>>>(
            a, x, mean_d, mean, rstd, n, c, rows, part, part2);
    else
        colred_chunk_kernel<GPU_COLRED_BNGRAD><<<grid, block, 0, g->stream>>>(
            a, x, mean_d, mean, rstd, n, c, rows, part, part2);
    KERNEL_CHECK();
    colred_finish_kernel<<<gpu_blocks(c, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        part, part2, (int)nchunks, c, out, kind == GPU_COLRED_BNGRAD ? out2 : NULL);
    KERNEL_CHECK();
}

__global__ void add_double_to_float_kernel(float *acc, const double *src, int c)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < c) acc[k] += (float)src[k];
}

void gpu_add_double_to_float(struct gpu_ctx *g, float *acc, const double *src, int c)
{
    add_double_to_float_kernel<<<gpu_blocks(c, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        acc, src, c);
    KERNEL_CHECK();
}

__global__ void rows_fill_kernel(float *y, const float *v, long total, int c)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total;
         i += (long)gridDim.x * blockDim.x)
        y[i] = v[i % c];
}

void gpu_rows_fill(struct gpu_ctx *g, float *y, const float *v, long n, int c)
{
    long total = n * (long)c;
    if (total <= 0) return;
    rows_fill_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                       g->stream>>>(y, v, total, c);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* Linear layer (conv1x1) */

extern "C" void gpu_linear(struct gpu_ctx *g, const float *x, int n, int in,
                           const float *w, const float *bias, int out, float *y)
{
    /* bias broadcast into y first, then the product accumulates onto it */
    if (bias) gpu_rows_fill(g, y, bias, n, out);
    gpu_sgemm_rm(g, 0, 1, n, out, in, 1.0f, x, in, w, in, bias ? 1.0f : 0.0f, y, out);
}

extern "C" void gpu_linear_backward(struct gpu_ctx *g, float *dx, float *dw, float *db,
                                    const float *dy, const float *x, const float *w,
                                    long n, int in, int out)
{
    SN_ASSERT(n >= 0 && n <= INT_MAX);
    if (n == 0) return;

    /* dW += dY^T X; db += column sums of dY (in double, fixed order) */
    gpu_sgemm_rm(g, 1, 0, out, in, (int)n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) {
        double *sum = g->red + gpu_colred_scratch(out);
        SN_ASSERT(gpu_colred_scratch(out) + (size_t)out <= g->red_cap);
        gpu_colreduce(g, GPU_COLRED_SUM, dy, NULL, NULL, NULL, NULL, n, out, sum, NULL);
        gpu_add_double_to_float(g, db, sum, out);
    }

    /* dX = dY W */
    if (dx) gpu_sgemm_rm(g, 0, 0, (int)n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}
