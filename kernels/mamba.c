/*
 * mamba.c - the Mamba mixer (selective SSM), forward and backward on the CPU.
 *
 * Layout. Tokens are rows: every per-token activation is a T x width
 * row-major array, so the projections are single GEMMs over all packed
 * tokens. The selective scan is sequential in time; at each time step it
 * runs over the n states and, innermost, the E channels, with A stored
 * transposed (n x E) so that the inner loop is contiguous and vectorises.
 *
 * Memory. The state h (n x E per token) is the largest activation, so the
 * forward pass keeps it only every MAMBA_CHUNK tokens; the backward pass
 * recomputes the states of one chunk at a time from that checkpoint and then
 * runs the reverse-time scan over the chunk.
 *
 * Determinism. Sequences are spread over OpenMP threads, but every
 * per-sequence parameter gradient goes to its own slot and the slots are
 * summed in sequence order, so the result does not depend on the thread
 * count.
 */
#include "mamba.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/common.h"

/* Tokens per state checkpoint: the recomputed states of one chunk
 * ((MAMBA_CHUNK + 1) x n x E floats, 132 KiB at E = 256, n = 4) stay in the
 * L2 cache while the reverse scan walks them. */
#define MAMBA_CHUNK 32

/* PyTorch's softplus returns x itself above this threshold. */
#define MAMBA_SOFTPLUS_THRESHOLD 20.0f

struct mamba_cache {
    struct mamba_dims d;
    int max_B, max_T, nthreads;
    int B, T, ready;
    int *len;     /* [max_B] lengths of the latest forward */
    int *off;     /* [max_B + 1] first token of each sequence */
    int *ck_off;  /* [max_B + 1] first state checkpoint of each sequence */
    float *x_in;  /* T x e   the mixer's input */
    float *xz;    /* T x 2E  in_proj output: x, then z */
    float *xc;    /* T x E   causal convolution output, before SiLU */
    float *u;     /* T x E   SiLU of xc: the scan's input */
    float *dbc;   /* T x R   x_proj output: dt_raw, B, C */
    float *delta; /* T x E   softplus(dt_proj(dt_raw) + dt_b) */
    float *ys;    /* T x E   scan output C h + D u */
    float *g;     /* T x E   ys * SiLU(z): out_proj's input */
    float *ddbc;  /* T x R   gradient of dbc */
    float *ck;    /* state checkpoints, n x E each */
    float *part;  /* per-sequence partial gradients, part_floats each */
    float *At;    /* n x E   A = -exp(A_log), transposed */
    float *wT;    /* k x E   convolution taps, transposed */
    float *work;  /* per thread: chunk states, dh, d delta of one token */
    size_t part_floats, work_floats, bytes;
};

/* ---- small numeric helpers --------------------------------------------- */

/* exp(x) for float, written so the compiler can vectorise it (libm's expf
 * does not vectorise without -ffast-math). Cody-Waite reduction by ln 2 and
 * a degree-7 Taylor polynomial: truncation below 1e-8 relative, about 1 ulp
 * from rounding. Inputs are clamped to [-87, 88], where 2^k stays a normal
 * float; exp(-87) = 1.6e-38 stands in for anything smaller. */
static inline float mamba_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860676533018704e-06f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23 */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;

    /* x = k ln2 + r with |r| <= ln2 / 2 */
    float kf = (x * log2e + round_magic) - round_magic;
    float r = (x - kf * ln2_hi) - kf * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;

    /* scale by 2^k through the exponent bits */
    int32_t bits = ((int32_t)kf + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

static inline float sigmoidf(float x)
{
    return 1.0f / (1.0f + mamba_expf(-x));
}

/* d SiLU / dx given x and sigmoid(x). */
static inline float silu_grad(float x, float s)
{
    return s * (1.0f + x * (1.0f - s));
}

/* log(1 + y) for y in [0, 1] as 2 atanh(s), s = y / (2 + y) <= 1/3: no
 * cancellation for small y, and the odd series to s^15 leaves a truncation
 * below 2e-9 relative. Vectorisable, unlike libm's log1pf. */
static inline float log1p_unit(float y)
{
    float s = y / (2.0f + y), s2 = s * s;
    float p = 1.0f / 15.0f;
    p = p * s2 + 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

/* softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), returning x
 * above PyTorch's threshold as PyTorch does. */
static inline float softplusf(float x)
{
    float pos = x > 0.0f ? x : 0.0f;
    float sp = pos + log1p_unit(mamba_expf(-fabsf(x)));
    return x > MAMBA_SOFTPLUS_THRESHOLD ? x : sp;
}

/* e^x - 1 without cancellation: a Taylor polynomial for |x| < 0.35, where
 * the ninth-order remainder is below 1e-8 relative, and e^x - 1 beyond,
 * where the result is at least 0.29 in size. */
static inline float expm1_small(float x)
{
    float p = 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    p = p * x + 1.0f;
    float big = mamba_expf(x) - 1.0f;
    return fabsf(x) < 0.35f ? p * x : big;
}

/* ---- dimensions and parameters ---------------------------------------- */

void mamba_dims_set(struct mamba_dims *d, int e, int n, int k, int expand)
{
    SN_ASSERT(e > 0 && n > 0 && k > 0 && expand > 0);
    d->e = e;
    d->E = expand * e;
    d->n = n;
    d->k = k;
    d->r = (e + 15) / 16;
}

static int dims_rows(const struct mamba_dims *d)
{
    return d->r + 2 * d->n;
}

size_t mamba_param_count(const struct mamba_dims *d)
{
    size_t e = (size_t)d->e, E = (size_t)d->E, n = (size_t)d->n;
    size_t k = (size_t)d->k, r = (size_t)d->r, R = (size_t)dims_rows(d);
    return 2 * E * e + E * k + E + R * E + E * r + E + E * n + E + e * E;
}

void mamba_params_carve(const struct mamba_dims *d, float *base, struct mamba_params *p)
{
    size_t e = (size_t)d->e, E = (size_t)d->E, n = (size_t)d->n;
    size_t k = (size_t)d->k, r = (size_t)d->r, R = (size_t)dims_rows(d);
    float *q = base;
    p->in_w = q, q += 2 * E * e;
    p->conv_w = q, q += E * k;
    p->conv_b = q, q += E;
    p->xproj_w = q, q += R * E;
    p->dt_w = q, q += E * r;
    p->dt_b = q, q += E;
    p->A_log = q, q += E * n;
    p->D = q, q += E;
    p->out_w = q, q += e * E;
    SN_ASSERT((size_t)(q - base) == mamba_param_count(d));
}

static void fill_uniform(float *w, size_t count, double bound, struct rng_state *rng)
{
    for (size_t i = 0; i < count; i++)
        w[i] = (float)((2.0 * rng_uniform(rng) - 1.0) * bound);
}

void mamba_params_init(const struct mamba_dims *d, struct mamba_params *p,
                       struct rng_state *rng)
{
    size_t e = (size_t)d->e, E = (size_t)d->E, n = (size_t)d->n;
    size_t k = (size_t)d->k, r = (size_t)d->r, R = (size_t)dims_rows(d);

    /* nn.Linear / nn.Conv1d defaults: uniform in +-1/sqrt(fan_in) */
    fill_uniform(p->in_w, 2 * E * e, 1.0 / sqrt((double)e), rng);
    fill_uniform(p->conv_w, E * k, 1.0 / sqrt((double)k), rng);
    fill_uniform(p->conv_b, E, 1.0 / sqrt((double)k), rng);
    fill_uniform(p->xproj_w, R * E, 1.0 / sqrt((double)E), rng);
    fill_uniform(p->dt_w, E * r, 1.0 / sqrt((double)r), rng);

    /* dt bias: softplus(dt_b) = dt, dt log-uniform in [1e-3, 1e-1] */
    for (size_t c = 0; c < E; c++) {
        double lo = log(1e-3), hi = log(1e-1);
        double dt = exp(lo + rng_uniform(rng) * (hi - lo));
        dt = dt < 1e-4 ? 1e-4 : dt;
        p->dt_b[c] = (float)(dt + log(-expm1(-dt)));
    }

    /* S4D-real initialisation of the state matrix; skip connection 1 */
    for (size_t c = 0; c < E; c++) {
        for (size_t s = 0; s < n; s++)
            p->A_log[c * n + s] = logf((float)(s + 1));
        p->D[c] = 1.0f;
    }
    fill_uniform(p->out_w, e * E, 1.0 / sqrt((double)E), rng);
}

/* ---- the cache ----------------------------------------------------------- */

struct mamba_cache *mamba_cache_new(const struct mamba_dims *d, int max_B, int max_T)
{
    SN_ASSERT(max_B > 0 && max_T >= 0);
    struct mamba_cache *c = sn_calloc(1, sizeof(*c));
    size_t e = (size_t)d->e, E = (size_t)d->E, n = (size_t)d->n;
    size_t k = (size_t)d->k, R = (size_t)dims_rows(d), T = (size_t)max_T;
    size_t n_ck = T / MAMBA_CHUNK + (size_t)max_B;
    c->d = *d;
    c->max_B = max_B;
    c->max_T = max_T;
    c->nthreads = omp_get_max_threads();
    c->len = sn_malloc((size_t)max_B * sizeof(int));
    c->off = sn_malloc(((size_t)max_B + 1) * sizeof(int));
    c->ck_off = sn_malloc(((size_t)max_B + 1) * sizeof(int));

    /* per-token activations: one allocation, carved */
    size_t tok = e + 2 * E + 5 * E + 2 * R;
    c->bytes = (T * tok + 1) * sizeof(float);
    float *q = sn_aligned(c->bytes);
    c->x_in = q, q += T * e;
    c->xz = q, q += T * 2 * E;
    c->xc = q, q += T * E;
    c->u = q, q += T * E;
    c->delta = q, q += T * E;
    c->ys = q, q += T * E;
    c->g = q, q += T * E;
    c->dbc = q, q += T * R;
    c->ddbc = q;

    /* checkpoints, per-sequence partial gradients, per-thread scratch */
    c->part_floats = n * E + E + k * E + E;
    c->work_floats = (MAMBA_CHUNK + 1) * n * E + n * E + E;
    size_t small = n_ck * n * E + (size_t)max_B * c->part_floats + n * E + k * E +
                   (size_t)c->nthreads * c->work_floats;
    c->bytes += small * sizeof(float);
    q = sn_aligned(small * sizeof(float));
    c->ck = q, q += n_ck * n * E;
    c->part = q, q += (size_t)max_B * c->part_floats;
    c->At = q, q += n * E;
    c->wT = q, q += k * E;
    c->work = q;
    return c;
}

size_t mamba_cache_bytes(const struct mamba_cache *c)
{
    return c->bytes;
}

void mamba_cache_free(struct mamba_cache *c)
{
    if (!c) return;
    sn_free(c->x_in);
    sn_free(c->ck);
    sn_free(c->len);
    sn_free(c->off);
    sn_free(c->ck_off);
    sn_free(c);
}

/* Record the lengths and derive token and checkpoint offsets. */
static void cache_set_lengths(struct mamba_cache *c, int B, const int *len)
{
    SN_ASSERT(B > 0 && B <= c->max_B);
    c->B = B;
    c->off[0] = 0;
    c->ck_off[0] = 0;
    for (int b = 0; b < B; b++) {
        SN_ASSERT(len[b] >= 0);
        c->len[b] = len[b];
        c->off[b + 1] = c->off[b] + len[b];
        c->ck_off[b + 1] = c->ck_off[b] + (len[b] + MAMBA_CHUNK - 1) / MAMBA_CHUNK;
        SN_ASSERT(c->off[b + 1] <= c->max_T);
    }
    c->T = c->off[B];
}

/* Transposed copies of A = -exp(A_log) and the convolution taps, so that
 * the per-token loops run over contiguous channels. */
static void cache_set_transposed(struct mamba_cache *c, const struct mamba_params *p)
{
    int E = c->d.E, n = c->d.n, k = c->d.k;
    for (int ch = 0; ch < E; ch++) {
        for (int s = 0; s < n; s++)
            c->At[(size_t)s * E + ch] = -expf(p->A_log[(size_t)ch * n + s]);
        for (int j = 0; j < k; j++)
            c->wT[(size_t)j * E + ch] = p->conv_w[(size_t)ch * k + j];
    }
}

/* ---- forward --------------------------------------------------------------- */

/* Causal depthwise convolution of one sequence, then SiLU. x has row stride
 * 2E (the x half of xz); the k - 1 tokens before the start are zeros. */
static void conv_forward_seq(const struct mamba_cache *c, const float *x,
                             const float *bias, float *xc, float *u, int L)
{
    int E = c->d.E, k = c->d.k;
    for (int t = 0; t < L; t++) {
        float *o = xc + (size_t)t * E;
        memcpy(o, bias, (size_t)E * sizeof(float));
        for (int j = 0; j < k; j++) {
            int src = t - (k - 1) + j;
            if (src < 0) continue;
            const float *xs = x + (size_t)src * 2 * E;
            const float *w = c->wT + (size_t)j * E;
            for (int ch = 0; ch < E; ch++)
                o[ch] += w[ch] * xs[ch];
        }
        float *uo = u + (size_t)t * E;
        for (int ch = 0; ch < E; ch++)
            uo[ch] = o[ch] * sigmoidf(o[ch]);
    }
}

/* One time step of the selective scan for all channels and states:
 * h = exp(delta A) h + delta B u; ys = C h + D u. h is n x E. ys may be
 * NULL when only the state is wanted (the backward pass's recomputation). */
static void scan_step(int E, int n, const float *At, const float *delta, const float *u,
                      const float *Bt, const float *Ct, const float *D, float *h,
                      float *ys)
{
    if (ys)
        for (int ch = 0; ch < E; ch++)
            ys[ch] = D[ch] * u[ch];
    for (int s = 0; s < n; s++) {
        const float *a_s = At + (size_t)s * E;
        float *h_s = h + (size_t)s * E;
        float b = Bt[s], cc = Ct[s];
        for (int ch = 0; ch < E; ch++) {
            float a = mamba_expf(delta[ch] * a_s[ch]);
            h_s[ch] = a * h_s[ch] + delta[ch] * b * u[ch];
        }
        if (ys)
            for (int ch = 0; ch < E; ch++)
                ys[ch] += cc * h_s[ch];
    }
}

/* Selective scan of one sequence from a zero state, saving the state at the
 * start of every chunk into ck. */
static void scan_forward_seq(const struct mamba_cache *c, const float *D, int t0, int L,
                             float *ck, float *h)
{
    int E = c->d.E, n = c->d.n, R = dims_rows(&c->d), r = c->d.r;
    size_t hs = (size_t)n * E;
    memset(h, 0, hs * sizeof(float));
    for (int t = 0; t < L; t++) {
        size_t tt = (size_t)(t0 + t);
        if (t % MAMBA_CHUNK == 0)
            memcpy(ck + (size_t)(t / MAMBA_CHUNK) * hs, h, hs * sizeof(float));
        const float *bc = c->dbc + tt * R + r;
        scan_step(E, n, c->At, c->delta + tt * E, c->u + tt * E, bc, bc + n, D, h,
                  c->ys + tt * E);
    }
}

/* dt = softplus(dt_proj(dt_raw) + dt_b), in place on the GEMM result. */
static void delta_forward(struct mamba_cache *c, const float *dt_b)
{
    int E = c->d.E;
    float *dl = c->delta;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < c->T; t++)
        for (int ch = 0; ch < E; ch++) {
            float *v = dl + (size_t)t * E + ch;
            *v = softplusf(*v + dt_b[ch]);
        }
}

/* Gate: g = ys * SiLU(z). */
static void gate_forward(struct mamba_cache *c)
{
    int E = c->d.E;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < c->T; t++) {
        const float *z = c->xz + (size_t)t * 2 * E + E;
        const float *ys = c->ys + (size_t)t * E;
        float *g = c->g + (size_t)t * E;
        for (int ch = 0; ch < E; ch++)
            g[ch] = ys[ch] * z[ch] * sigmoidf(z[ch]);
    }
}

void mamba_forward(const struct mamba_dims *d, const struct mamba_params *p,
                   const float *x, int B, const int *len, float *y, struct mamba_cache *c)
{
    int e = d->e, E = d->E, R = dims_rows(d), r = d->r;
    SN_ASSERT(d->e == c->d.e && d->E == c->d.E && d->n == c->d.n && d->k == c->d.k);
    cache_set_lengths(c, B, len);
    cache_set_transposed(c, p);
    c->ready = 1;
    int T = c->T;
    if (T == 0) return;
    memcpy(c->x_in, x, (size_t)T * e * sizeof(float));

    /* in_proj: x, z */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, 2 * E, e, 1.0f, x, e, p->in_w,
                e, 0.0f, c->xz, 2 * E);

    /* causal depthwise convolution and SiLU, per sequence */
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads)
    for (int b = 0; b < B; b++) {
        size_t t0 = (size_t)c->off[b];
        conv_forward_seq(c, c->xz + t0 * 2 * E, p->conv_b, c->xc + t0 * E, c->u + t0 * E,
                         c->len[b]);
    }

    /* x_proj: dt_raw, B, C; then dt_proj and softplus */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, R, E, 1.0f, c->u, E,
                p->xproj_w, E, 0.0f, c->dbc, R);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, E, r, 1.0f, c->dbc, R,
                p->dt_w, r, 0.0f, c->delta, E);
    delta_forward(c, p->dt_b);

    /* selective scan, sequential in time, one sequence per thread */
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads)
    for (int b = 0; b < B; b++) {
        float *h = c->work + (size_t)omp_get_thread_num() * c->work_floats;
        size_t ck = (size_t)c->ck_off[b] * d->n * E;
        scan_forward_seq(c, p->D, c->off[b], c->len[b], c->ck + ck, h);
    }

    /* gate by SiLU(z) and out_proj */
    gate_forward(c);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, e, E, 1.0f, c->g, E, p->out_w,
                E, 0.0f, y, e);
}

/* ---- backward ---------------------------------------------------------------- */

/* Gate backward. On entry g holds dg; on return g holds the gradient of the
 * scan output ys and the z half of xz holds dz. */
static void gate_backward(struct mamba_cache *c)
{
    int E = c->d.E;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < c->T; t++) {
        float *z = c->xz + (size_t)t * 2 * E + E;
        const float *ys = c->ys + (size_t)t * E;
        float *g = c->g + (size_t)t * E;
        for (int ch = 0; ch < E; ch++) {
            float s = sigmoidf(z[ch]);
            float dg = g[ch];
            g[ch] = dg * z[ch] * s;
            z[ch] = dg * ys[ch] * silu_grad(z[ch], s);
        }
    }
}

/* Per-sequence partial gradients: dA (n x E, of A itself), dD, dconv_wT
 * (k x E), dconv_b. */
struct mamba_part {
    float *dA, *dD, *dw, *db;
};

static struct mamba_part part_at(const struct mamba_cache *c, int b)
{
    size_t n = (size_t)c->d.n, E = (size_t)c->d.E, k = (size_t)c->d.k;
    float *q = c->part + (size_t)b * c->part_floats;
    struct mamba_part pt = {q, q + n * E, q + n * E + E, q + n * E + E + k * E};
    return pt;
}

/* Reverse-time step of the scan at one token. dh (n x E) holds dL/dh_t
 * from later tokens on entry and dL/dh_{t-1} on return. hp, hc: the states
 * before and after this token. Writes du (scan part plus D u), the gradient
 * of delta into dd, and dB, dC; accumulates dA and dD. */
static void scan_step_backward(int E, int n, const float *At, const float *delta,
                               const float *u, const float *Bt, const float *Ct,
                               const float *D, const float *hp, const float *hc,
                               const float *dys, float *dh, float *du, float *dd,
                               float *dB, float *dC, struct mamba_part *pt)
{
    for (int ch = 0; ch < E; ch++) {
        du[ch] = dys[ch] * D[ch];
        pt->dD[ch] += dys[ch] * u[ch];
        dd[ch] = 0.0f;
    }
    for (int s = 0; s < n; s++) {
        const float *a_s = At + (size_t)s * E;
        const float *hp_s = hp + (size_t)s * E, *hc_s = hc + (size_t)s * E;
        float *dh_s = dh + (size_t)s * E, *dA_s = pt->dA + (size_t)s * E;
        float b = Bt[s], cc = Ct[s], db = 0.0f, dc = 0.0f;
#pragma omp simd reduction(+ : db, dc)
        for (int ch = 0; ch < E; ch++) {
            /* y_t = C h_t: gradient into C and into h_t */
            dc += dys[ch] * hc_s[ch];
            float g = dh_s[ch] + cc * dys[ch];
            /* h_t = a h_{t-1} + delta B u with a = exp(delta A) */
            float a = mamba_expf(delta[ch] * a_s[ch]);
            float gah = g * a * hp_s[ch];
            db += g * delta[ch] * u[ch];
            du[ch] += g * delta[ch] * b;
            dd[ch] += gah * a_s[ch] + g * b * u[ch];
            dA_s[ch] += gah * delta[ch];
            dh_s[ch] = g * a;
        }
        dB[s] = db;
        dC[s] = dc;
    }
}

/* Reverse scan over one sequence, one chunk at a time: recompute the chunk's
 * states from its checkpoint, then walk them backwards. Reads the gradient
 * of the scan output from the g rows; writes du into the ys rows, the
 * gradient of the pre-softplus dt over the delta rows and dB, dC into ddbc. */
static void scan_backward_seq(struct mamba_cache *c, const float *D, int b, float *work)
{
    int E = c->d.E, n = c->d.n, R = dims_rows(&c->d), r = c->d.r;
    int t0 = c->off[b], L = c->len[b];
    size_t hs = (size_t)n * E;
    float *H = work, *dh = H + (size_t)(MAMBA_CHUNK + 1) * hs, *dd = dh + hs;
    struct mamba_part pt = part_at(c, b);
    memset(pt.dA, 0, hs * sizeof(float));
    memset(pt.dD, 0, (size_t)E * sizeof(float));
    memset(dh, 0, hs * sizeof(float));

    for (int j = (L + MAMBA_CHUNK - 1) / MAMBA_CHUNK - 1; j >= 0; j--) {
        int lo = j * MAMBA_CHUNK, hi = SN_MIN(L, lo + MAMBA_CHUNK);

        /* recompute the chunk's states: H[i] is the state before token lo+i */
        memcpy(H, c->ck + ((size_t)c->ck_off[b] + j) * hs, hs * sizeof(float));
        for (int t = lo; t < hi; t++) {
            size_t tt = (size_t)(t0 + t), i = (size_t)(t - lo);
            const float *bc = c->dbc + tt * R + r;
            float *hn = H + (i + 1) * hs;
            memcpy(hn, H + i * hs, hs * sizeof(float));
            scan_step(E, n, c->At, c->delta + tt * E, c->u + tt * E, bc, bc + n, D, hn,
                      NULL);
        }

        /* reverse-time scan over the chunk */
        for (int t = hi - 1; t >= lo; t--) {
            size_t tt = (size_t)(t0 + t), i = (size_t)(t - lo);
            const float *bc = c->dbc + tt * R + r;
            float *dbc = c->ddbc + tt * R + r, *dl = c->delta + tt * E;
            scan_step_backward(E, n, c->At, dl, c->u + tt * E, bc, bc + n, D, H + i * hs,
                               H + (i + 1) * hs, c->g + tt * E, dh, c->ys + tt * E, dd,
                               dbc, dbc + n, &pt);

            /* through softplus: sigmoid(x) = 1 - exp(-softplus(x)) */
            for (int ch = 0; ch < E; ch++)
                dl[ch] = dd[ch] * -expm1_small(-dl[ch]);
        }
    }
}

/* Causal convolution backward for one sequence. dxc: gradient of the
 * convolution output (row stride E); x: its input (row stride 2E), which is
 * overwritten by its gradient once the weight gradients are taken. */
static void conv_backward_seq(const struct mamba_cache *c, const float *dxc, float *x,
                              int L, struct mamba_part *pt)
{
    int E = c->d.E, k = c->d.k;
    memset(pt->dw, 0, (size_t)k * E * sizeof(float));
    memset(pt->db, 0, (size_t)E * sizeof(float));

    /* weight and bias gradients: out[t] = b + sum_j w[j] x[t - (k-1) + j] */
    for (int t = 0; t < L; t++) {
        const float *g = dxc + (size_t)t * E;
        for (int ch = 0; ch < E; ch++)
            pt->db[ch] += g[ch];
        for (int j = 0; j < k; j++) {
            int src = t - (k - 1) + j;
            if (src < 0) continue;
            const float *xs = x + (size_t)src * 2 * E;
            float *dw = pt->dw + (size_t)j * E;
            for (int ch = 0; ch < E; ch++)
                dw[ch] += g[ch] * xs[ch];
        }
    }

    /* input gradient: dx[s] = sum_j w[j] dout[s + (k-1) - j]; the weight
     * gradients are complete, so x is free to be overwritten */
    for (int s = 0; s < L; s++) {
        float *dx = x + (size_t)s * 2 * E;
        memset(dx, 0, (size_t)E * sizeof(float));
        for (int j = 0; j < k; j++) {
            int t = s + (k - 1) - j;
            if (t >= L) continue;
            const float *g = dxc + (size_t)t * E, *w = c->wT + (size_t)j * E;
            for (int ch = 0; ch < E; ch++)
                dx[ch] += w[ch] * g[ch];
        }
    }
}

/* SiLU backward of the convolution output: dxc = du * SiLU'(xc), in place
 * over xc. */
static void conv_act_backward(struct mamba_cache *c)
{
    int E = c->d.E;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < c->T; t++) {
        float *xc = c->xc + (size_t)t * E;
        const float *du = c->ys + (size_t)t * E;
        for (int ch = 0; ch < E; ch++)
            xc[ch] = du[ch] * silu_grad(xc[ch], sigmoidf(xc[ch]));
    }
}

/* Sum the per-sequence partial gradients in sequence order. dA_log = dA * A
 * because A = -exp(A_log). */
static void parts_reduce(const struct mamba_cache *c, struct mamba_params *g)
{
    int E = c->d.E, n = c->d.n, k = c->d.k;
    for (int b = 0; b < c->B; b++) {
        struct mamba_part pt = part_at(c, b);
        if (c->len[b] == 0) continue;
        for (int ch = 0; ch < E; ch++) {
            for (int s = 0; s < n; s++)
                g->A_log[(size_t)ch * n + s] +=
                    pt.dA[(size_t)s * E + ch] * c->At[(size_t)s * E + ch];
            for (int j = 0; j < k; j++)
                g->conv_w[(size_t)ch * k + j] += pt.dw[(size_t)j * E + ch];
            g->D[ch] += pt.dD[ch];
            g->conv_b[ch] += pt.db[ch];
        }
    }
}

/* dt_proj backward: bias gradient as a column sum in token order, weight
 * gradient and the gradient of dt_raw (into the first r columns of ddbc). */
static void dtproj_backward(struct mamba_cache *c, const struct mamba_params *p,
                            struct mamba_params *g)
{
    int E = c->d.E, r = c->d.r, R = dims_rows(&c->d), T = c->T;
    for (int t = 0; t < T; t++) {
        const float *dl = c->delta + (size_t)t * E;
        for (int ch = 0; ch < E; ch++)
            g->dt_b[ch] += dl[ch];
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, r, T, 1.0f, c->delta, E,
                c->dbc, R, 1.0f, g->dt_w, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, r, E, 1.0f, c->delta, E,
                p->dt_w, r, 0.0f, c->ddbc, R);
}

void mamba_backward(const struct mamba_dims *d, const struct mamba_params *p,
                    const float *dy, float *dx, struct mamba_params *g,
                    struct mamba_cache *c)
{
    int e = d->e, E = d->E, R = dims_rows(d), T = c->T;
    SN_ASSERT(c->ready);
    c->ready = 0;
    if (T == 0) return;

    /* out_proj: weight gradient from g, then dg over g */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, e, E, T, 1.0f, dy, e, c->g, E,
                1.0f, g->out_w, E);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, e, 1.0f, dy, e, p->out_w,
                E, 0.0f, c->g, E);
    gate_backward(c);

    /* selective scan in reverse time, one sequence per thread */
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads)
    for (int b = 0; b < c->B; b++) {
        float *work = c->work + (size_t)omp_get_thread_num() * c->work_floats;
        scan_backward_seq(c, p->D, b, work);
    }

    /* dt_proj, then x_proj: du gets the x_proj term added */
    dtproj_backward(c, p, g);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, E, T, 1.0f, c->ddbc, R, c->u,
                E, 1.0f, g->xproj_w, E);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, R, 1.0f, c->ddbc, R,
                p->xproj_w, E, 1.0f, c->ys, E);

    /* SiLU and the causal convolution, per sequence */
    conv_act_backward(c);
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads)
    for (int b = 0; b < c->B; b++) {
        struct mamba_part pt = part_at(c, b);
        size_t t0 = (size_t)c->off[b];
        conv_backward_seq(c, c->xc + t0 * E, c->xz + t0 * 2 * E, c->len[b], &pt);
    }
    parts_reduce(c, g);

    /* in_proj: xz now holds (dx, dz) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 2 * E, e, T, 1.0f, c->xz, 2 * E,
                c->x_in, e, 1.0f, g->in_w, e);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, e, 2 * E, 1.0f, c->xz,
                2 * E, p->in_w, e, 0.0f, dx, e);
}
