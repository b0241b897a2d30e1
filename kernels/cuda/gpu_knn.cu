/*
 * gpu_knn.cu - the memory bank on the device: exact kNN search and the
 * greedy k-centre coreset loop (gpu.h; CPU twins core/knn.c, core/coreset.c).
 *
 * kNN. As on the CPU, the GEMM form ||q||^2 - 2 q.b + ||b||^2 only
 * shortlists: one cuBLAS GEMM writes -2 q.b for a tile of queries against
 * the whole bank, one block per query keeps the k + 2 best (each thread a
 * sorted list over its strided share of the bank, then the lists are merged
 * by repeated block-wide minima), and the shortlist is re-scored with the
 * direct sum of squared differences in double. Order: (distance, index),
 * exactly the CPU's rule, so equal distances keep the lower index.
 *
 * Coreset. Each greedy step is two kernels queued without a host round
 * trip: every point's distance to the newest centre updates its minimum
 * distance (one thread per point, the projection stored transposed so a
 * warp reads consecutive points), each block reports its farthest point,
 * and one block picks the farthest of all (largest minimum, lowest index),
 * which becomes the next centre. The distance is summed in 16 partial sums
 * in the CPU's order with explicitly rounded operations (no fused
 * multiply-add), so on the same projection the float distances, and hence
 * the selections, are bit-for-bit the CPU's.
 */
#include <limits.h>
#include <math.h>

#include "gpu_internal.cuh"

extern "C" {
#include "core/knn.h"
#include "core/log.h"
}

/* The CPU's limits and slack (core/knn.c): k <= 62, 2 extra re-scored. */
#define GPU_KNN_KMAX 62
#define GPU_KNN_SLACK 2
#define GPU_KNN_LIST (GPU_KNN_KMAX + GPU_KNN_SLACK)
/* Floats of the distance tile (256 MiB): query rows per tile follow. */
#define GPU_KNN_TILE_FLOATS ((size_t)1 << 26)
/* Threads per query in the selection kernel. */
#define GPU_KNN_THREADS 128

/* Coreset: threads per block of the update kernel, rows per chunk of the
 * projection, and the CPU's dimension limit. */
#define GPU_CS_THREADS 256
#define GPU_CS_CHUNK_ROWS 65536L
#define GPU_CS_MAX_DIM 2048

/* ------------------------------------------------------------------------ */
/* Pairs (value, index) and their block-wide reductions */

struct vi {
    float v;
    int i;
};

/* a before b in ascending (value, index) order */
__device__ __forceinline__ bool vi_less(vi a, vi b)
{
    return a.v < b.v || (a.v == b.v && a.i < b.i);
}

/* a before b in the coreset's order: larger value, then lower index */
__device__ __forceinline__ bool vi_farther(vi a, vi b)
{
    return a.v > b.v || (a.v == b.v && a.i < b.i);
}

template <bool MAX> __device__ __forceinline__ vi vi_pick(vi a, vi b)
{
    return (MAX ? vi_farther(b, a) : vi_less(b, a)) ? b : a;
}

template <bool MAX> __device__ __forceinline__ vi vi_warp(vi a)
{
    for (int o = 16; o > 0; o >>= 1) {
        vi b;
        b.v = __shfl_xor_sync(0xffffffffu, a.v, o);
        b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
        a = vi_pick<MAX>(a, b);
    }
    return a;
}

/* Block-wide minimum (MAX false) or farthest (MAX true); every thread gets
 * it. sh: 32 entries of shared memory. */
template <bool MAX> __device__ vi vi_block(vi a, vi *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    a = vi_warp<MAX>(a);
    __syncthreads();
    if (lane == 0) sh[w] = a;
    __syncthreads();
    if (w == 0) {
        vi r = lane < nw ? sh[lane] : sh[0];
        r = vi_warp<MAX>(r);
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    return sh[0];
}

/* ------------------------------------------------------------------------ */
/* Norms, which also reveal non-finite rows */

/* One warp per row: squared norm; the lowest non-finite row into *bad. */
__global__ void knn_norms_kernel(const float *x, long n, int d, float *norms, int *bad)
{
    long r = (blockIdx.x * (long)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (r >= n) return;
    const float *xr = x + r * d;
    float s = 0.0f;
    for (int c = lane; c < d; c += 32)
        s += xr[c] * xr[c];
    s = gpu_warp_sum(s);
    if (lane == 0) {
        norms[r] = s;
        if (!isfinite(s)) atomicMin(bad, (int)r);
    }
}

/* Norms of n device rows; SN_EUSER naming the first bad row, with the CPU's
 * wording (the row is fetched to tell NaN from overflow). */
static int knn_norms_checked(struct gpu_ctx *g, const float *x, long n, int d,
                             float *norms, int *bad_dev, const char *what)
{
    int bad = INT_MAX;
    gpu_upload(g, bad_dev, &bad, sizeof bad);
    knn_norms_kernel<<<gpu_blocks(n * 32, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        x, n, d, norms, bad_dev);
    KERNEL_CHECK();
    gpu_download(g, &bad, bad_dev, sizeof bad);
    if (bad == INT_MAX) return SN_OK;

    float *row = (float *)sn_malloc(sizeof(float) * (size_t)d);
    gpu_download(g, row, x + (size_t)bad * d, sizeof(float) * (size_t)d);
    int st = knn_check_finite(row, 1, d, what);
    sn_free(row);
    if (st != SN_OK) return sn_error("%s row %d has a NaN or infinite value", what, bad);
    return sn_error("%s row %d is too large to square (norm overflows)", what, bad);
}

/* ------------------------------------------------------------------------ */
/* kNN search */

struct gpu_knn {
    struct gpu_ctx *g;
    long nb, max_nq, qt;
    int d, bank_ready;
    struct gpu_arena mem;
    float *bank, *bn; /* nb x d, nb */
    float *q, *qn;    /* max_nq x d (host queries land here), max_nq */
    float *tile;      /* qt x nb: -2 q.b */
    int *idx;         /* max_nq x KMAX results of host searches */
    float *dist2;
    int *bad;
};

extern "C" struct gpu_knn *gpu_knn_new(struct gpu_ctx *g, long nb, int d, long max_nq)
{
    SN_ASSERT(nb >= 1 && nb <= INT_MAX && d >= 1 && max_nq >= 1);
    struct gpu_knn *kn = (struct gpu_knn *)sn_calloc(1, sizeof *kn);
    kn->g = g;
    kn->nb = nb;
    kn->d = d;
    kn->max_nq = max_nq;
    kn->qt = SN_MAX(1L, SN_MIN(max_nq, (long)(GPU_KNN_TILE_FLOATS / (size_t)nb)));

    /* one allocation for the lifetime of the search */
    size_t fl = sizeof(float), q = (size_t)max_nq, b = (size_t)nb, K = GPU_KNN_KMAX;
    size_t bytes = b * d * fl + b * fl + q * d * fl + q * fl + (size_t)kn->qt * b * fl +
                   q * K * (sizeof(int) + fl) + 8 * 256;
    gpu_arena_init(&kn->mem, bytes);
    kn->bank = gpu_arena_floats(&kn->mem, b * d);
    kn->bn = gpu_arena_floats(&kn->mem, b);
    kn->q = gpu_arena_floats(&kn->mem, q * d);
    kn->qn = gpu_arena_floats(&kn->mem, q);
    kn->tile = gpu_arena_floats(&kn->mem, (size_t)kn->qt * b);
    kn->idx = (int *)gpu_arena_alloc(&kn->mem, q * K * sizeof(int));
    kn->dist2 = gpu_arena_floats(&kn->mem, q * K);
    kn->bad = (int *)gpu_arena_alloc(&kn->mem, sizeof(int));
    return kn;
}

extern "C" void gpu_knn_free(struct gpu_knn *kn)
{
    if (!kn) return;
    gpu_sync(kn->g);
    gpu_arena_free(&kn->mem);
    sn_free(kn);
}

extern "C" void gpu_knn_set_tile_rows(struct gpu_knn *kn, long rows)
{
    if (rows >= 1 && rows < kn->qt) kn->qt = rows;
}

extern "C" int gpu_knn_set_bank(struct gpu_knn *kn, const float *bank_host)
{
    kn->bank_ready = 0;
    gpu_upload(kn->g, kn->bank, bank_host, sizeof(float) * (size_t)kn->nb * kn->d);
    int st =
        knn_norms_checked(kn->g, kn->bank, kn->nb, kn->d, kn->bn, kn->bad, "memory bank");
    kn->bank_ready = st == SN_OK;
    return st;
}

/* Insert (v, j) into a sorted list of K after every entry not larger. */
__device__ __forceinline__ void list_insert(float *ld, int *li, int K, float v, int j)
{
    int p = K - 1;
    while (p > 0 && ld[p - 1] > v) {
        ld[p] = ld[p - 1];
        li[p] = li[p - 1];
        p--;
    }
    ld[p] = v;
    li[p] = j;
}

/* Exact squared distance of the shortlist, one warp per candidate, in
 * double (differences of floats are exact in double). */
__device__ void knn_rescore(const float *q, const float *bank, int d, const int *sl_i,
                            int K, double *ex)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int a = w; a < K; a += nw) {
        const float *b = bank + (size_t)sl_i[a] * d;
        double s = 0;
        for (int c = lane; c < d; c += 32) {
            double t = (double)q[c] - (double)b[c];
            s += t * t;
        }
        s = gpu_warp_sum(s);
        if (lane == 0) ex[a] = s;
    }
}

/*
 * One query per block: shortlist of K by the GEMM distance qn + bn + dot,
 * exact re-score, and the first k of the (distance, index) order written to
 * row r of idx / dist2 (stride k; -1 / inf past keff).
 */
__global__ void knn_select_kernel(const float *tile, const float *bn, const float *qn,
                                  const float *q, const float *bank, int nb, int d, int K,
                                  int keff, int k, int *idx, float *dist2)
{
    __shared__ vi sh[32];
    __shared__ int sl_i[GPU_KNN_LIST];
    __shared__ double ex[GPU_KNN_LIST];
    const int r = blockIdx.x;
    const float *dot = tile + (size_t)r * nb;
    const float qnr = qn[r];

    /* each thread's own sorted shortlist over its share of the bank */
    float ld[GPU_KNN_LIST];
    int li[GPU_KNN_LIST];
    for (int a = 0; a < K; a++)
        ld[a] = INFINITY, li[a] = INT_MAX;
    for (int j = threadIdx.x; j < nb; j += blockDim.x) {
        float v = qnr + bn[j] + dot[j];
        if (v < ld[K - 1]) list_insert(ld, li, K, v, j);
    }

    /* merge: K rounds of the block-wide minimum of the list heads */
    int head = 0;
    for (int a = 0; a < K; a++) {
        vi mine = {head < K ? ld[head] : INFINITY, head < K ? li[head] : INT_MAX};
        vi best = vi_block<false>(mine, sh);
        if (head < K && li[head] == best.i) head++;
        if (threadIdx.x == 0) sl_i[a] = best.i;
    }
    __syncthreads();

    /* exact re-score, then order by (distance, index) */
    knn_rescore(q + (size_t)r * d, bank, d, sl_i, K, ex);
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int a = 1; a < K; a++)
        for (int b = a; b > 0 && (ex[b - 1] > ex[b] ||
                                  (ex[b - 1] == ex[b] && sl_i[b - 1] > sl_i[b]));
             b--) {
            double td = ex[b];
            ex[b] = ex[b - 1];
            ex[b - 1] = td;
            int ti = sl_i[b];
            sl_i[b] = sl_i[b - 1];
            sl_i[b - 1] = ti;
        }
    for (int a = 0; a < k; a++) {
        idx[(size_t)r * k + a] = a < keff ? sl_i[a] : -1;
        dist2[(size_t)r * k + a] = a < keff ? (float)ex[a] : INFINITY;
    }
}

static int knn_check_args(const struct gpu_knn *kn, long nq, int k)
{
    if (k < 1 || k > GPU_KNN_KMAX)
        return sn_error("kNN search: k must be between 1 and %d (got %d)", GPU_KNN_KMAX,
                        k);
    if (nq < 0) return sn_error("kNN search: %ld queries", nq);
    SN_ASSERT(nq <= kn->max_nq);
    SN_ASSERT(kn->bank_ready);
    return SN_OK;
}

extern "C" int gpu_knn_search_dev(struct gpu_knn *kn, const float *q, long nq, int k,
                                  int *idx, float *dist2)
{
    struct gpu_ctx *g = kn->g;
    int st = knn_check_args(kn, nq, k);
    if (st != SN_OK || nq == 0) return st;
    int keff = knn_effective_k(kn->nb, k);
    if (keff < k)
        log_warn("kNN search: k = %d but the bank holds %ld vectors; using k = %d "
                 "(the remaining entries are -1 / inf)",
                 k, kn->nb, keff);
    st = knn_norms_checked(g, q, nq, kn->d, kn->qn, kn->bad, "query features");
    if (st != SN_OK) return st;

    /* per query tile: -2 q.b against the whole bank, then the selection */
    int K = (int)SN_MIN((long)keff + GPU_KNN_SLACK, kn->nb);
    for (long q0 = 0; q0 < nq; q0 += kn->qt) {
        int rows = (int)SN_MIN(kn->qt, nq - q0);
        const float *qt = q + (size_t)q0 * kn->d;
        gpu_sgemm_rm(g, 0, 1, rows, (int)kn->nb, kn->d, -2.0f, qt, kn->d, kn->bank, kn->d,
                     0.0f, kn->tile, (int)kn->nb);
        knn_select_kernel<<<rows, GPU_KNN_THREADS, 0, g->stream>>>(
            kn->tile, kn->bn, kn->qn + q0, qt, kn->bank, (int)kn->nb, kn->d, K, keff, k,
            idx + (size_t)q0 * k, dist2 + (size_t)q0 * k);
        KERNEL_CHECK();
    }
    return SN_OK;
}

extern "C" int gpu_knn_search(struct gpu_knn *kn, const float *q_host, long nq, int k,
                              int *idx, float *dist2)
{
    int st = knn_check_args(kn, nq, k);
    if (st != SN_OK || nq == 0) return st;
    gpu_upload(kn->g, kn->q, q_host, sizeof(float) * (size_t)nq * kn->d);
    st = gpu_knn_search_dev(kn, kn->q, nq, k, kn->idx, kn->dist2);
    if (st != SN_OK) return st;
    gpu_download(kn->g, idx, kn->idx, sizeof(int) * (size_t)nq * k);
    gpu_download(kn->g, dist2, kn->dist2, sizeof(float) * (size_t)nq * k);
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Coreset: greedy k-centre */

struct cs_dev {
    struct gpu_arena mem;
    float *chunk; /* rows of x being projected */
    float *proj;  /* p x d */
    float *zT;    /* p x n: the projection, transposed */
    float *mind;  /* n: squared distance to the nearest selected point */
    float *bval;  /* per update block: its farthest point */
    int *bidx;
    int *sel; /* T: the selection, in order */
    int *cur; /* the newest centre */
};

/* zT[c][r0 + i] = x[i][c] for the rows of one chunk (no projection). */
__global__ void cs_transpose_kernel(const float *x, long rows, int d, long n, long r0,
                                    float *zT)
{
    long total = rows * d;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total;
         e += (long)gridDim.x * blockDim.x) {
        long i = e % rows;
        int c = (int)(e / rows);
        zT[(size_t)c * n + r0 + i] = x[(size_t)i * d + c];
    }
}

__global__ void cs_fill_kernel(float *v, long n, float value)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) v[i] = value;
}

/*
 * One greedy step, first half: squared distance of every point to the
 * centre *cur, summed exactly as core/coreset.c does (16 partial sums over
 * the dimensions in order, then the partials in order; every operation
 * rounded on its own), the minimum updated when strictly smaller, and each
 * block's farthest point (largest minimum, lowest index).
 */
__global__ void cs_update_kernel(const float *zT, long n, int p, const int *cur,
                                 float *mind, float *bval, int *bidx)
{
    extern __shared__ float cz[];
    __shared__ vi sh[32];
    const int c = *cur;
    for (int k = threadIdx.x; k < p; k += blockDim.x)
        cz[k] = zT[(size_t)k * n + c];
    __syncthreads();

    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    vi mine = {-1.0f, INT_MAX};
    if (i < n) {
        float acc[16];
#pragma unroll
        for (int l = 0; l < 16; l++)
            acc[l] = 0.0f;
        int c0 = 0;
        for (; c0 + 16 <= p; c0 += 16)
#pragma unroll
            for (int l = 0; l < 16; l++) {
                float t = __fsub_rn(zT[(size_t)(c0 + l) * n + i], cz[c0 + l]);
                acc[l] = __fadd_rn(acc[l], __fmul_rn(t, t));
            }
#pragma unroll
        for (int l = 0; l < 16; l++)
            if (c0 + l < p) {
                float t = __fsub_rn(zT[(size_t)(c0 + l) * n + i], cz[c0 + l]);
                acc[l] = __fadd_rn(acc[l], __fmul_rn(t, t));
            }
        float s = 0.0f;
#pragma unroll
        for (int l = 0; l < 16; l++)
            s = __fadd_rn(s, acc[l]);

        float m = mind[i];
        if (s < m) {
            m = s;
            mind[i] = s;
        }
        mine.v = m;
        mine.i = (int)i;
    }
    vi best = vi_block<true>(mine, sh);
    if (threadIdx.x == 0) {
        bval[blockIdx.x] = best.v;
        bidx[blockIdx.x] = best.i;
    }
}

/* Second half: the farthest of the block winners becomes selection t and
 * the next centre. One block. */
__global__ void cs_pick_kernel(const float *bval, const int *bidx, int nblk, int t,
                               int *sel, int *cur)
{
    __shared__ vi sh[32];
    vi mine = {-1.0f, INT_MAX};
    for (int b = threadIdx.x; b < nblk; b += blockDim.x) {
        vi o = {bval[b], bidx[b]};
        if (vi_farther(o, mine)) mine = o;
    }
    vi best = vi_block<true>(mine, sh);
    if (threadIdx.x == 0) {
        sel[t] = best.i;
        *cur = best.i;
    }
}

/* The working set on the device. */
static void cs_alloc(struct cs_dev *cs, long n, int d, int p, int has_proj, long T)
{
    long nblk = (n + GPU_CS_THREADS - 1) / GPU_CS_THREADS;
    size_t rows = (size_t)SN_MIN(n, GPU_CS_CHUNK_ROWS), fl = sizeof(float);
    size_t bytes = rows * d * fl + (has_proj ? (size_t)p * d * fl : 0) +
                   (size_t)p * n * fl + (size_t)n * fl +
                   (size_t)nblk * (fl + sizeof(int)) + (size_t)T * sizeof(int) +
                   sizeof(int) + 8 * 256;
    gpu_arena_init(&cs->mem, bytes);
    cs->chunk = gpu_arena_floats(&cs->mem, rows * d);
    cs->proj = has_proj ? gpu_arena_floats(&cs->mem, (size_t)p * d) : NULL;
    cs->zT = gpu_arena_floats(&cs->mem, (size_t)p * n);
    cs->mind = gpu_arena_floats(&cs->mem, (size_t)n);
    cs->bval = gpu_arena_floats(&cs->mem, (size_t)nblk);
    cs->bidx = (int *)gpu_arena_alloc(&cs->mem, (size_t)nblk * sizeof(int));
    cs->sel = (int *)gpu_arena_alloc(&cs->mem, (size_t)T * sizeof(int));
    cs->cur = (int *)gpu_arena_alloc(&cs->mem, sizeof(int));
}

/* zT = (x proj^T)^T, or x^T without a projection, one chunk of rows at a
 * time (the raw features never sit on the device all at once; the stream
 * orders each upload after the product that read the previous chunk). */
static void cs_project(struct gpu_ctx *g, struct cs_dev *cs, const float *x, long n,
                       int d, const float *proj, int p)
{
    if (proj) gpu_upload(g, cs->proj, proj, sizeof(float) * (size_t)p * d);
    for (long r0 = 0; r0 < n; r0 += GPU_CS_CHUNK_ROWS) {
        long rows = SN_MIN(GPU_CS_CHUNK_ROWS, n - r0);
        gpu_upload(g, cs->chunk, x + (size_t)r0 * d, sizeof(float) * (size_t)rows * d);
        if (proj) {
            gpu_sgemm_rm(g, 0, 1, p, (int)rows, d, 1.0f, cs->proj, d, cs->chunk, d, 0.0f,
                         cs->zT + r0, (int)n);
        } else {
            long total = rows * d;
            cs_transpose_kernel<<<gpu_blocks_capped(total, GPU_THREADS), GPU_THREADS, 0,
                                  g->stream>>>(cs->chunk, rows, d, n, r0, cs->zT);
            KERNEL_CHECK();
        }
    }
}

/* The greedy loop, entirely on the device. */
static void cs_loop(struct gpu_ctx *g, struct cs_dev *cs, long n, int p, long start,
                    long T)
{
    const int nblk = (int)((n + GPU_CS_THREADS - 1) / GPU_CS_THREADS);
    int s = (int)start;
    gpu_upload(g, cs->cur, &s, sizeof s);
    gpu_upload(g, cs->sel, &s, sizeof s);
    cs_fill_kernel<<<gpu_blocks(n, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(cs->mind, n,
                                                                              INFINITY);
    KERNEL_CHECK();
    for (long t = 1; t < T; t++) {
        cs_update_kernel<<<nblk, GPU_CS_THREADS, sizeof(float) * (size_t)p, g->stream>>>(
            cs->zT, n, p, cs->cur, cs->mind, cs->bval, cs->bidx);
        KERNEL_CHECK();
        cs_pick_kernel<<<1, 1024, 0, g->stream>>>(cs->bval, cs->bidx, nblk, (int)t,
                                                  cs->sel, cs->cur);
        KERNEL_CHECK();
    }
}

static int cs_check_args(const float *x, long n, int d, long T, long start)
{
    if (n <= 0) return sn_error("coreset: no features to select from");
    if (T <= 0) return sn_error("coreset: bank.coreset must be positive (got %ld)", T);
    if (d < 1) return sn_error("coreset: feature dimension %d", d);
    if (start < 0 || start >= n)
        return sn_error("coreset: start point %ld outside 0..%ld", start, n - 1);
    if (n > INT_MAX) return sn_error("coreset: %ld features exceed the int index", n);
    return knn_check_finite(x, n, d, "coreset input feature");
}

extern "C" int gpu_coreset_greedy(struct gpu_ctx *g, const float *x, long n, int d,
                                  const float *proj, int proj_dim, long start, long T,
                                  long *selected, long *n_selected)
{
    *n_selected = 0;
    int st = cs_check_args(x, n, d, T, start);
    if (st != SN_OK) return st;
    if (T >= n) {
        for (long i = 0; i < n; i++)
            selected[i] = i;
        *n_selected = n;
        return SN_OK;
    }
    if (proj && (proj_dim < 1 || proj_dim > GPU_CS_MAX_DIM))
        return sn_error("coreset: projection dimension %d outside 1..%d", proj_dim,
                        GPU_CS_MAX_DIM);
    if (!proj && d > GPU_CS_MAX_DIM)
        return sn_error("coreset: unprojected dimension %d above %d", d, GPU_CS_MAX_DIM);

    /* project, run the loop, fetch the selection */
    int p = proj ? proj_dim : d;
    struct cs_dev cs;
    cs_alloc(&cs, n, d, p, proj != NULL, T);
    cs_project(g, &cs, x, n, d, proj, p);
    cs_loop(g, &cs, n, p, start, T);
    int *sel = (int *)sn_malloc(sizeof(int) * (size_t)T);
    gpu_download(g, sel, cs.sel, sizeof(int) * (size_t)T);
    for (long t = 0; t < T; t++)
        selected[t] = sel[t];
    *n_selected = T;
    sn_free(sel);
    gpu_arena_free(&cs.mem);
    return SN_OK;
}
