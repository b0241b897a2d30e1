/*
 * gpu_scan.cu - the selective scan of the Mamba mixer, forward and backward
 * (gpu.h; the CPU twin is the scan inside kernels/mamba.c).
 *
 * One thread per (sequence, channel) walks the sequence in time with the
 * n states in registers; the sequences of a batch are the grid's second
 * axis, so every warp belongs to one sequence and runs the same number of
 * steps. As on the CPU, the forward pass keeps the state every
 * GPU_SCAN_CHUNK tokens and the backward pass recomputes one chunk of
 * states at a time from that checkpoint before walking it in reverse.
 *
 * Gradients that sum over channels (dB_t, dC_t) are added within each warp
 * by a fixed butterfly and written per (token, warp); a second kernel adds
 * the warps in order. Gradients that sum over tokens (dA, dD) are kept per
 * (sequence, channel) and added over sequences in order. Nothing depends
 * on scheduling, so reruns are bit-identical.
 */
#include "gpu_internal.cuh"

/* Tokens per state checkpoint. */
#define GPU_SCAN_CHUNK 16
/* Channels per block (whole warps). */
#define GPU_SCAN_THREADS 128

struct gpu_scan {
    int max_B, max_T, E, n, nwarps;
    int B, T, ready;
    int *off_h, *ck_h; /* host: token and checkpoint offsets */
    struct gpu_arena mem;
    int *off, *ck_off;        /* device copies */
    float *ck;                /* checkpoints: n x E each */
    float *dA_part, *dD_part; /* per (sequence, channel) */
    float *dB_part, *dC_part; /* per (token, warp): n each */
};

extern "C" struct gpu_scan *gpu_scan_new(int max_B, int max_T, int E, int n)
{
    SN_ASSERT(max_B >= 1 && max_T >= 0 && E >= 1 && n >= 1 && n <= 16);
    struct gpu_scan *s = (struct gpu_scan *)sn_calloc(1, sizeof *s);
    s->max_B = max_B;
    s->max_T = max_T;
    s->E = E;
    s->n = n;
    s->nwarps = (E + 31) / 32;
    s->off_h = (int *)sn_malloc(sizeof(int) * 2 * ((size_t)max_B + 1));
    s->ck_h = s->off_h + max_B + 1;

    /* checkpoints: at most max_T / CHUNK + max_B of them */
    size_t B1 = (size_t)max_B + 1, nE = (size_t)n * E, T = (size_t)max_T;
    size_t n_ck = T / GPU_SCAN_CHUNK + (size_t)max_B;
    size_t floats = n_ck * nE + (size_t)max_B * (nE + E) + 2 * T * s->nwarps * n;
    gpu_arena_init(&s->mem, floats * sizeof(float) + 2 * B1 * sizeof(int) + 8 * 256);
    s->off = (int *)gpu_arena_alloc(&s->mem, B1 * sizeof(int));
    s->ck_off = (int *)gpu_arena_alloc(&s->mem, B1 * sizeof(int));
    s->ck = gpu_arena_floats(&s->mem, n_ck * nE);
    s->dA_part = gpu_arena_floats(&s->mem, (size_t)max_B * nE);
    s->dD_part = gpu_arena_floats(&s->mem, (size_t)max_B * E);
    s->dB_part = gpu_arena_floats(&s->mem, T * s->nwarps * n);
    s->dC_part = gpu_arena_floats(&s->mem, T * s->nwarps * n);
    return s;
}

extern "C" void gpu_scan_free(struct gpu_scan *s)
{
    if (!s) return;
    gpu_arena_free(&s->mem);
    sn_free(s->off_h);
    sn_free(s);
}

/* ------------------------------------------------------------------------ */
/* Forward */

/* One step of the recurrence for one channel: h = exp(delta A) h +
 * delta B u; returns C h (the caller adds D u). Shared by the forward pass
 * and the backward recomputation so that both produce the same states. */
template <int NS>
__device__ __forceinline__ float scan_step(float *h, const float *A, int n, float dl,
                                           float u, const float *Bt, const float *Ct)
{
    float y = 0.0f;
#pragma unroll
    for (int s = 0; s < NS; s++)
        if (s < n) {
            h[s] = expf(dl * A[s]) * h[s] + dl * Bt[s] * u;
            y += Ct[s] * h[s];
        }
    return y;
}

template <int NS>
__global__ void scan_forward_kernel(const int *off, const int *ck_off, int E, int n,
                                    struct gpu_scan_args a, float *y, float *ck)
{
    const int ch = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (ch >= E) return;
    const int t0 = off[b], L = off[b + 1] - t0;
    float A[NS], h[NS];
#pragma unroll
    for (int s = 0; s < NS; s++) {
        A[s] = s < n ? a.A[(size_t)ch * n + s] : 0.0f;
        h[s] = 0.0f;
    }
    const float D = a.D[ch];
    float *ckb = ck + (size_t)ck_off[b] * n * E;

    for (int i = 0; i < L; i++) {
        size_t t = (size_t)(t0 + i);
        /* the state before this token, at chunk starts */
        if (i % GPU_SCAN_CHUNK == 0)
#pragma unroll
            for (int s = 0; s < NS; s++)
                if (s < n) ckb[((size_t)(i / GPU_SCAN_CHUNK) * n + s) * E + ch] = h[s];

        float dl = a.delta[t * E + ch], u = a.u[t * E + ch];
        const float *Bt = a.Bm + t * a.ld_bc, *Ct = a.Cm + t * a.ld_bc;
        float yv = D * u;
        yv += scan_step<NS>(h, A, n, dl, u, Bt, Ct);
        y[t * E + ch] = yv;
    }
}

/* Lengths into token and checkpoint offsets, on the host and the device. */
static void scan_set_lengths(struct gpu_ctx *g, struct gpu_scan *s, int B, const int *len)
{
    SN_ASSERT(B >= 1 && B <= s->max_B);
    s->B = B;
    s->off_h[0] = s->ck_h[0] = 0;
    for (int b = 0; b < B; b++) {
        SN_ASSERT(len[b] >= 0);
        s->off_h[b + 1] = s->off_h[b] + len[b];
        s->ck_h[b + 1] = s->ck_h[b] + (len[b] + GPU_SCAN_CHUNK - 1) / GPU_SCAN_CHUNK;
        SN_ASSERT(s->off_h[b + 1] <= s->max_T);
    }
    s->T = s->off_h[B];
    gpu_upload(g, s->off, s->off_h, sizeof(int) * ((size_t)B + 1));
    gpu_upload(g, s->ck_off, s->ck_h, sizeof(int) * ((size_t)B + 1));
}

extern "C" void gpu_scan_forward(struct gpu_ctx *g, struct gpu_scan *s, int B,
                                 const int *len, const struct gpu_scan_args *a, float *y)
{
    scan_set_lengths(g, s, B, len);
    s->ready = 1;
    if (s->T == 0) return;
    dim3 grid((unsigned)((s->E + GPU_SCAN_THREADS - 1) / GPU_SCAN_THREADS), (unsigned)B);
    if (s->n <= 4)
        scan_forward_kernel<4><<<grid, GPU_SCAN_THREADS, 0, g->stream>>>(
            s->off, s->ck_off, s->E, s->n, *a, y, s->ck);
    else
        scan_forward_kernel<16><<<grid, GPU_SCAN_THREADS, 0, g->stream>>>(
            s->off, s->ck_off, s->E, s->n, *a, y, s->ck);
    KERNEL_CHECK();
}

/* ------------------------------------------------------------------------ */
/* Backward */

/* Output buffers of the reverse scan. */
struct scan_grads {
    const float *dy;
    float *du, *ddelta;
    float *dB_part, *dC_part; /* (token, warp) partials */
    float *dA_part, *dD_part; /* (sequence, channel) partials */
};

/*
 * Reverse-time scan of one (sequence, channel), chunk by chunk. Per token,
 * with g = dh_t + C dy (the gradient reaching h_t) and a = exp(delta A):
 * du = D dy + sum_s g delta B, ddelta = sum_s (g a h_{t-1} A + g B u),
 * dA += g a h_{t-1} delta, dD += dy u, dh_{t-1} = g a, and the channel's
 * shares of dB_t (g delta u) and dC_t (dy h_t). Lanes past E take part in
 * the warp sums with zero gradients; warps wholly past E write nothing.
 */
template <int NS>
__global__ void scan_backward_kernel(const int *off, const int *ck_off, int E, int n,
                                     int nwarps, struct gpu_scan_args a, const float *ck,
                                     struct scan_grads o)
{
    const int b = blockIdx.y, lane = threadIdx.x & 31;
    const int ch_raw = blockIdx.x * blockDim.x + threadIdx.x, warp = ch_raw >> 5;
    const bool on = ch_raw < E;
    const int ch = on ? ch_raw : E - 1;
    const int t0 = off[b], L = off[b + 1] - t0;
    float A[NS], dh[NS], dA[NS], H[(GPU_SCAN_CHUNK + 1) * NS];
#pragma unroll
    for (int s = 0; s < NS; s++) {
        A[s] = s < n ? a.A[(size_t)ch * n + s] : 0.0f;
        dh[s] = dA[s] = 0.0f;
    }
    const float D = a.D[ch];
    const float *ckb = ck + (size_t)ck_off[b] * n * E;
    float dD = 0.0f;

    for (int j = (L + GPU_SCAN_CHUNK - 1) / GPU_SCAN_CHUNK - 1; j >= 0; j--) {
        const int lo = j * GPU_SCAN_CHUNK, hi = min(L, lo + GPU_SCAN_CHUNK);

        /* recompute the chunk's states: H[i] is the state before token lo+i */
        for (int s = 0; s < NS; s++)
            H[s] = s < n ? ckb[((size_t)j * n + s) * E + ch] : 0.0f;
        for (int i = lo; i < hi; i++) {
            size_t t = (size_t)(t0 + i);
            float *hn = H + (i - lo + 1) * NS;
            for (int s = 0; s < NS; s++)
                hn[s] = hn[s - NS];
            scan_step<NS>(hn, A, n, a.delta[t * E + ch], a.u[t * E + ch],
                          a.Bm + t * a.ld_bc, a.Cm + t * a.ld_bc);
        }

        /* reverse-time walk over the chunk */
        for (int i = hi - 1; i >= lo; i--) {
            size_t t = (size_t)(t0 + i);
            const float *hp = H + (i - lo) * NS, *hc = hp + NS;
            const float *Bt = a.Bm + t * a.ld_bc, *Ct = a.Cm + t * a.ld_bc;
            float dys = on ? o.dy[t * E + ch] : 0.0f;
            float dl = a.delta[t * E + ch], u = a.u[t * E + ch];
            float du = dys * D, dd = 0.0f;
            dD += dys * u;
#pragma unroll
            for (int s = 0; s < NS; s++) {
                if (s >= n) continue;
                float gs = dh[s] + Ct[s] * dys;
                float ea = expf(dl * A[s]);
                float gah = gs * ea * hp[s];
                du += gs * dl * Bt[s];
                dd += gah * A[s] + gs * Bt[s] * u;
                dA[s] += gah * dl;
                dh[s] = gs * ea;

                /* this token's dB and dC: the warp's channels, then one
                 * partial per (token, warp) */
                float db = gpu_warp_sum(gs * dl * u), dc = gpu_warp_sum(dys * hc[s]);
                if (lane == 0 && warp < nwarps) {
                    o.dB_part[((size_t)t * nwarps + warp) * n + s] = db;
                    o.dC_part[((size_t)t * nwarps + warp) * n + s] = dc;
                }
            }
            if (on) {
                o.du[t * E + ch] = du;
                o.ddelta[t * E + ch] = dd;
            }
        }
    }

    if (!on) return;
    for (int s = 0; s < n && s < NS; s++)
        o.dA_part[((size_t)b * E + ch) * n + s] = dA[s];
    o.dD_part[(size_t)b * E + ch] = dD;
}

/* dB[t][s], dC[t][s] = the warps' partials added in warp order (written). */
__global__ void scan_reduce_bc_kernel(const float *dB_part, const float *dC_part, int T,
                                      int n, int nwarps, float *dB, float *dC, int ld)
{
    long e = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (e >= (long)T * n) return;
    long t = e / n;
    int s = (int)(e % n);
    float sb = 0.0f, sc = 0.0f;
    for (int w = 0; w < nwarps; w++) {
        sb += dB_part[((size_t)t * nwarps + w) * n + s];
        sc += dC_part[((size_t)t * nwarps + w) * n + s];
    }
    dB[t * ld + s] = sb;
    dC[t * ld + s] = sc;
}

/* dA, dD += the sequences' partials in sequence order. */
__global__ void scan_reduce_params_kernel(const float *dA_part, const float *dD_part,
                                          int B, int E, int n, float *dA, float *dD)
{
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= E * n) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++)
        s += dA_part[(size_t)b * E * n + e];
    dA[e] += s;
    if (e % n) return;
    int ch = e / n;
    float sd = 0.0f;
    for (int b = 0; b < B; b++)
        sd += dD_part[(size_t)b * E + ch];
    dD[ch] += sd;
}

extern "C" void gpu_scan_backward(struct gpu_ctx *g, struct gpu_scan *s,
                                  const struct gpu_scan_args *a, const float *dy,
                                  float *du, float *ddelta, float *dB, float *dC,
                                  int ld_dbc, float *dA, float *dD)
{
    SN_ASSERT(s->ready);
    s->ready = 0;
    if (s->T == 0) return;

    /* reverse scan per (sequence, channel) */
    struct scan_grads o = {dy,         du,         ddelta,    s->dB_part,
                           s->dC_part, s->dA_part, s->dD_part};
    dim3 grid((unsigned)((s->E + GPU_SCAN_THREADS - 1) / GPU_SCAN_THREADS),
              (unsigned)s->B);
    if (s->n <= 4)
        scan_backward_kernel<4><<<grid, GPU_SCAN_THREADS, 0, g->stream>>>(
            s->off, s->ck_off, s->E, s->n, s->nwarps, *a, s->ck, o);
    else
        scan_backward_kernel<16><<<grid, GPU_SCAN_THREADS, 0, g->stream>>>(
            s->off, s->ck_off, s->E, s->n, s->nwarps, *a, s->ck, o);
    KERNEL_CHECK();

    /* the sums over channels and over sequences, in fixed order */
    long bc = (long)s->T * s->n;
    scan_reduce_bc_kernel<<<gpu_blocks(bc, GPU_THREADS), GPU_THREADS, 0, g->stream>>>(
        s->dB_part, s->dC_part, s->T, s->n, s->nwarps, dB, dC, ld_dbc);
    KERNEL_CHECK();
    scan_reduce_params_kernel<<<gpu_blocks((long)s->E * s->n, GPU_THREADS), GPU_THREADS,
                                0, g->stream>>>(s->dA_part, s->dD_part, s->B, s->E, s->n,
                                                dA, dD);
    KERNEL_CHECK();
}
