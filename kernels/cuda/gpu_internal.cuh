/*
 * gpu_internal.cuh - what the CUDA sources share: the check macros, the
 * context's layout, launch helpers and small device reductions. Not part of
 * the public API (kernels/gpu.h is).
 */
#ifndef SNARM_GPU_INTERNAL_CUH
#define SNARM_GPU_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <float.h>

/* These sources exist only in CUDA builds; the definition that snarm_lib
 * exports to its users does not reach the library that builds them. */
#ifndef SNARM_HAVE_CUDA
#define SNARM_HAVE_CUDA 1
#endif

/* The project's headers are plain C. */
extern "C" {
#include "core/common.h"
#include "kernels/gpu.h"
}

/* ---- check macros: name the call, file, line, rank and host -------------- */

#define CUDA_CHECK(call)                                                                 \
    do {                                                                                 \
        cudaError_t cuda_rc_ = (call);                                                   \
        if (cuda_rc_ != cudaSuccess)                                                     \
            sn_fatal("CUDA error %d (%s): %s", (int)cuda_rc_,                            \
                     cudaGetErrorString(cuda_rc_), #call);                               \
    } while (0)

#define CUBLAS_CHECK(call)                                                               \
    do {                                                                                 \
        cublasStatus_t blas_rc_ = (call);                                                \
        if (blas_rc_ != CUBLAS_STATUS_SUCCESS)                                           \
            sn_fatal("cuBLAS error %d (%s): %s", (int)blas_rc_,                          \
                     cublasGetStatusString(blas_rc_), #call);                            \
    } while (0)

/* After every kernel launch: the launch error, and with SNARM_CUDA_SYNC=1
 * the kernel's own faults, reported at this line. */
void gpu_launch_check_at(const char *file, int line);
#define KERNEL_CHECK() gpu_launch_check_at(__FILE__, __LINE__)

/* ---- the context --------------------------------------------------------- */

struct gpu_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int tf32;
    /* Scratch for fixed-order reductions: partial sums and per-channel
     * statistics, in doubles; one operation at a time uses it (the stream
     * orders them). */
    double *red;
    size_t red_cap;
    double *red_host; /* pinned, for small results read back */
};

/* Doubles in the reduction scratch (32 MiB). */
#define GPU_RED_DOUBLES ((size_t)1 << 22)

/* Threads per block of the simple element-wise kernels. */
#define GPU_THREADS 256

static inline unsigned gpu_blocks(long n, int threads)
{
    long b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b);
}

/* Grid-stride cap for element-wise kernels over very large arrays. */
static inline unsigned gpu_blocks_capped(long n, int threads)
{
    unsigned b = gpu_blocks(n, threads);
    return b > 65535u * 8u ? 65535u * 8u : b;
}

/* ---- GEMM in row-major terms --------------------------------------------- */

/*
 * C[m x n] = alpha op(A) op(B) + beta C, all row-major with leading
 * dimensions lda, ldb, ldc (as cblas_sgemm with CblasRowMajor). cuBLAS is
 * column-major, and a row-major matrix is the column-major view of its
 * transpose, so the product is computed as C^T = op(B)^T op(A)^T: the
 * operands swap places and keep their transpose flags.
 */
void gpu_sgemm_rm(struct gpu_ctx *g, int ta, int tb, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C,
                  int ldc);
/* The same for `count` products whose operands sit at fixed strides. */
void gpu_sgemm_rm_batched(struct gpu_ctx *g, int ta, int tb, int m, int n, int k,
                          float alpha, const float *A, int lda, long long sa,
                          const float *B, int ldb, long long sb, float beta, float *C,
                          int ldc, long long sc, int count);

/* ---- fixed-order column reductions (gpu_core.cu) -------------------------- */

/* The kinds of per-element values a column reduction sums, in double. */
enum gpu_colred {
    GPU_COLRED_SUM = 0,   /* a[i][k] */
    GPU_COLRED_SQDEV = 1, /* (a[i][k] - mean_d[k])^2, mean_d in double */
    GPU_COLRED_BNGRAD = 2 /* a = dy: dy and dy * ((x - mean) * rstd) (two sums) */
};
/*
 * Column sums over n rows of c channels into out[c] (and out2[c] for
 * BNGRAD), in double, in an order fixed by (n, c): rows are cut into at
 * most 256 fixed chunks, each summed by a fixed tree, then the chunks are
 * added in order. out/out2 are device doubles (may point into g->red past
 * what the reduction itself uses: see gpu_colred_scratch).
 */
void gpu_colreduce(struct gpu_ctx *g, enum gpu_colred kind, const float *a,
                   const float *x, const double *mean_d, const float *mean,
                   const float *rstd, long n, int c, double *out, double *out2);
/* Doubles of g->red the column reduction itself uses for c channels; the
 * caller keeps its own results after that. */
size_t gpu_colred_scratch(int c);
/* acc[k] += (float)out[k] for c channels. */
void gpu_add_double_to_float(struct gpu_ctx *g, float *acc, const double *src, int c);
/* y[i][k] = v[k]. */
void gpu_rows_fill(struct gpu_ctx *g, float *y, const float *v, long n, int c);

/* ---- device helpers --------------------------------------------------------- */

/* Warp-wide sum with a fixed butterfly order (every lane gets the sum). */
template <typename T> __device__ __forceinline__ T gpu_warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide sum of one value per thread (blockDim.x a multiple of 32, at
 * most 1024); every thread gets the result. sh: 32 T of shared memory. */
template <typename T> __device__ __forceinline__ T gpu_block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = gpu_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        T r = lane < nw ? sh[lane] : (T)0;
        r = gpu_warp_sum(r);
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    return sh[0];
}

#endif
