#define _GNU_SOURCE
#include "coreset.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define CORESET_VNNI 1
#endif

#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common.h"
#include "h5util.h"
#include "knn.h"
#include "log.h"
#include "rng.h"
#include "store.h"

/*
 * The greedy loop is bound by memory traffic: every iteration measures the
 * distance from the newly added point to all n projected points. To cut the
 * traffic four-fold, each iteration first reads an 8-bit copy of the
 * projection (one global scale s, q = round(z / s)) and computes the
 * quantised distance exactly in integers. A point's true distance to the new
 * point is at least s sqrt(D_q) - e_i - e_c, where e is the norm of a point's
 * quantisation error; only points whose bound does not clear their current
 * minimum distance get their exact distance (from the float projection, in
 * double). Those distances alone decide every update, so the selection is
 * the same as a plain loop's.
 *
 * Quantised points are stored in blocks of 16: for each group of 4
 * dimensions, 16 points x 4 bytes (one 64-byte line), so that one dot-product
 * instruction advances 16 points by 4 dimensions.
 */
#define CS_LANES 16
#define CS_GROUP 4
/* Relative safety factor of the skip test on squared distances: covers the
 * float rounding of the bound and of the test itself (about 1e-6). */
#define CS_SAFETY 1.001f

struct cs_state {
    long n, nblk;
    int p, groups;  /* projected dims; groups of 4 (padded) */
    const float *z; /* n x p, the float projection */
    uint8_t *qb;    /* blocked quantised points, biased by 128 */
    int32_t *qn;    /* squared norm of each quantised point */
    float *err;     /* quantisation error norm of each point */
    double *mind;   /* squared distance to the nearest selected point */
    float *bound;   /* sqrt(mind) + err, for the skip test */
    double *bmax;   /* max of mind per block */
    float s2;       /* s^2 */
    int portable;   /* force the portable scan (SNARM_CORESET_PORTABLE=1) */
};

void coreset_projection(int d, int proj_dim, uint64_t seed, float *proj)
{
    struct rng_state r;
    rng_seed(&r, seed, rng_hash_str("coreset.projection"));
    rng_fill_normal(&r, proj, (long)proj_dim * d, 1.0f / sqrtf((float)proj_dim));
}

long coreset_start(long n, uint64_t seed)
{
    struct rng_state r;
    rng_seed(&r, seed, rng_hash_str("coreset.start"));
    return n > 0 ? (long)rng_below(&r, (uint64_t)n) : 0;
}

/* ------------------------------------------------------------------------ */
/* Quantised copy                                                           */

static float max_abs(const float *z, long n)
{
    float m = 0;
    for (long i = 0; i < n; i++)
        m = fmaxf(m, fabsf(z[i]));
    return m;
}

/* Quantise point i into its lane of the blocked layout; sets qn and err. */
static void quantise_point(struct cs_state *st, long i, float s)
{
    const float *zi = st->z + i * st->p;
    uint8_t *blk = st->qb + (i / CS_LANES) * (long)st->groups * 64;
    int lane = (int)(i % CS_LANES);
    int32_t nq = 0;
    double e2 = 0;
    for (int c = 0; c < st->groups * CS_GROUP; c++) {
        int q = 0;
        if (c < st->p) {
            q = (int)lrintf(zi[c] / s);
            q = SN_MAX(-127, SN_MIN(127, q));
            double diff = (double)zi[c] - (double)s * q;
            e2 += diff * diff;
        }
        blk[(c / CS_GROUP) * 64 + lane * CS_GROUP + c % CS_GROUP] = (uint8_t)(q + 128);
        nq += q * q;
    }
    st->qn[i] = nq;
    /* round the error norm up so the bound stays a bound */
    st->err[i] = (float)(sqrt(e2) * (1.0 + 1e-6)) + 1e-30f;
}

static void state_init(struct cs_state *st, const float *z, long n, int p)
{
    memset(st, 0, sizeof(*st));
    st->n = n;
    st->p = p;
    st->z = z;
    const char *e = getenv("SNARM_CORESET_PORTABLE");
    st->portable = e && !strcmp(e, "1");
    st->groups = (p + CS_GROUP - 1) / CS_GROUP;
    st->nblk = (n + CS_LANES - 1) / CS_LANES;
    st->qb = sn_aligned((size_t)st->nblk * st->groups * 64);
    memset(st->qb, 128, (size_t)st->nblk * st->groups * 64);
    st->qn = sn_aligned(sizeof(int32_t) * (size_t)st->nblk * CS_LANES);
    st->err = sn_aligned(sizeof(float) * (size_t)st->nblk * CS_LANES);
    st->mind = sn_aligned(sizeof(double) * (size_t)st->nblk * CS_LANES);
    st->bound = sn_aligned(sizeof(float) * (size_t)st->nblk * CS_LANES);
    st->bmax = sn_aligned(sizeof(double) * (size_t)st->nblk);

    /* one scale for all values: the 8-bit grid spans the largest one */
    float s = max_abs(z, n * (long)p) / 127.0f;
    if (!(s > 0)) s = 1.0f;
    st->s2 = s * s;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        quantise_point(st, i, s);

    /* padding lanes are never scanned nor candidates: minimum -1 */
    for (long i = 0; i < st->nblk * CS_LANES; i++) {
        int real = i < n;
        st->mind[i] = real ? INFINITY : -1.0;
        st->bound[i] = real ? INFINITY : 0.0f;
        if (!real) st->qn[i] = 0, st->err[i] = 0;
    }
    for (long b = 0; b < st->nblk; b++)
        st->bmax[b] = INFINITY;
}

static void state_free(struct cs_state *st)
{
    sn_free(st->qb);
    sn_free(st->qn);
    sn_free(st->err);
    sn_free(st->mind);
    sn_free(st->bound);
    sn_free(st->bmax);
}

/* ------------------------------------------------------------------------ */
/* One greedy step                                                          */

/* The new point c as the scan needs it. */
struct cs_centre {
    long i;
    const float *z;
    uint32_t q4[512]; /* its quantised values (signed), 4 per word */
    int32_t qn, qsum; /* squared norm and sum of its quantised values */
    float err;
};

static void centre_make(const struct cs_state *st, long c, struct cs_centre *ce)
{
    const uint8_t *blk = st->qb + (c / CS_LANES) * (long)st->groups * 64;
    int lane = (int)(c % CS_LANES);
    ce->i = c;
    ce->z = st->z + c * st->p;
    ce->qn = st->qn[c];
    ce->err = st->err[c];
    ce->qsum = 0;
    for (int g = 0; g < st->groups; g++) {
        uint32_t w = 0;
        for (int b = 0; b < CS_GROUP; b++) {
            int q = (int)blk[g * 64 + lane * CS_GROUP + b] - 128;
            ce->qsum += q;
            w |= (uint32_t)(uint8_t)(int8_t)q << (8 * b);
        }
        ce->q4[g] = w;
    }
}

/*
 * Distance of point i to the centre, in double from exact differences (the
 * projection is float): float sums lose the order of near-tied farthest
 * points, which then changes the selection. Updates the minimum; returns
 * whether it changed.
 */
static int point_update(struct cs_state *st, long i, const struct cs_centre *ce)
{
    const float *zi = st->z + i * st->p;
    double acc[8] = {0};
    int c = 0;
    for (; c + 8 <= st->p; c += 8)
        for (int l = 0; l < 8; l++) {
            double t = (double)zi[c + l] - (double)ce->z[c + l];
            acc[l] += t * t;
        }
    for (; c < st->p; c++) {
        double t = (double)zi[c] - (double)ce->z[c];
        acc[c % 8] += t * t;
    }
    double s = 0;
    for (int l = 0; l < 8; l++)
        s += acc[l];
    if (!(s < st->mind[i])) return 0;
    st->mind[i] = s;
    st->bound[i] = (float)(sqrt(s) + st->err[i]);
    return 1;
}

/*
 * Lanes of block b that may come closer to the centre: those that fail the
 * skip test s^2 D_q >= CS_SAFETY (bound + e_c)^2, where D_q is the squared
 * distance of the quantised points, exact in integers.
 */
#ifdef CORESET_VNNI
static unsigned block_candidates_vnni(const struct cs_state *st, long b,
                                      const struct cs_centre *ce)
{
    const uint8_t *blk = st->qb + b * (long)st->groups * 64;
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512(), _mm512_setzero_si512()};
    int g = 0;
    for (; g + 4 <= st->groups; g += 4)
        for (int a = 0; a < 4; a++)
            acc[a] = _mm512_dpbusd_epi32(
                acc[a], _mm512_load_si512((const void *)(blk + (g + a) * 64)),
                _mm512_set1_epi32((int)ce->q4[g + a]));
    for (; g < st->groups; g++)
        acc[0] =
            _mm512_dpbusd_epi32(acc[0], _mm512_load_si512((const void *)(blk + g * 64)),
                                _mm512_set1_epi32((int)ce->q4[g]));
    __m512i dot = _mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]),
                                   _mm512_add_epi32(acc[2], acc[3]));

    /* the stored values carry +128: remove 128 sum(q_c) from each dot */
    dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(128 * ce->qsum));
    __m512i qn = _mm512_loadu_si512((const void *)(st->qn + b * CS_LANES));
    __m512i dq = _mm512_sub_epi32(_mm512_add_epi32(qn, _mm512_set1_epi32(ce->qn)),
                                  _mm512_slli_epi32(dot, 1));
    __m512 lhs = _mm512_mul_ps(_mm512_cvtepi32_ps(dq), _mm512_set1_ps(st->s2));
    __m512 t =
        _mm512_add_ps(_mm512_loadu_ps(st->bound + b * CS_LANES), _mm512_set1_ps(ce->err));
    __m512 rhs = _mm512_mul_ps(_mm512_mul_ps(t, t), _mm512_set1_ps(CS_SAFETY));
    return (unsigned)_mm512_cmp_ps_mask(lhs, rhs, _CMP_LT_OQ) |
           (unsigned)_mm512_cmp_ps_mask(rhs, rhs, _CMP_UNORD_Q);
}
#endif

/* The same in portable C, for machines without the instruction (and for the
 * tests, which compare the two). */
static unsigned block_candidates_ref(const struct cs_state *st, long b,
                                     const struct cs_centre *ce)
{
    const uint8_t *blk = st->qb + b * (long)st->groups * 64;
    int32_t dot[CS_LANES] = {0};
    for (int g = 0; g < st->groups; g++)
        for (int l = 0; l < CS_LANES; l++)
            for (int k = 0; k < CS_GROUP; k++)
                dot[l] += ((int)blk[g * 64 + l * CS_GROUP + k] - 128) *
                          (int)(int8_t)(ce->q4[g] >> (8 * k));
    unsigned mask = 0;
    for (int l = 0; l < CS_LANES; l++) {
        int32_t dq = st->qn[b * CS_LANES + l] + ce->qn - 2 * dot[l];
        float t = st->bound[b * CS_LANES + l] + ce->err;
        if (!((float)dq * st->s2 >= CS_SAFETY * t * t)) mask |= 1u << l;
    }
    return mask;
}

static unsigned block_candidates(const struct cs_state *st, long b,
                                 const struct cs_centre *ce)
{
#ifdef CORESET_VNNI
    if (!st->portable) return block_candidates_vnni(st, b, ce);
#endif
    return block_candidates_ref(st, b, ce);
}

/* Scan block b against the centre: exact updates where the bound allows a
 * closer distance, then the block's new maximum. */
static void block_step(struct cs_state *st, long b, const struct cs_centre *ce)
{
    unsigned mask = block_candidates(st, b, ce);
    int lanes = (int)SN_MIN((long)CS_LANES, st->n - b * CS_LANES);
    mask &= (lanes == CS_LANES) ? 0xffffu : (1u << lanes) - 1;
    int changed = 0;
    for (; mask; mask &= mask - 1)
        changed |= point_update(st, b * CS_LANES + __builtin_ctz(mask), ce);
    if (!changed) return;
    double m = -1.0;
    for (int l = 0; l < CS_LANES; l++)
        m = fmax(m, st->mind[b * CS_LANES + l]);
    st->bmax[b] = m;
}

/* The farthest point of blocks b0..b1-1: largest minimum distance, lowest
 * index on ties; its minimum distance in *val. */
static long range_argmax(const struct cs_state *st, long b0, long b1, double *val)
{
    long bb = b0;
    for (long b = b0 + 1; b < b1; b++)
        if (st->bmax[b] > st->bmax[bb]) bb = b;
    *val = st->bmax[bb];
    for (int l = 0; l < CS_LANES; l++)
        if (st->mind[bb * CS_LANES + l] == st->bmax[bb]) return bb * CS_LANES + l;
    sn_fatal("coreset: block maximum not found in its block");
}

/*
 * The barrier of each greedy step. A step takes under a millisecond, so the
 * partner usually arrives within microseconds: spin briefly, then sleep on
 * a futex, so that a partner the scheduler has pre-empted (the machine is
 * shared) gets the core instead of a spinning waiter.
 */
#define CS_SPIN 2000

struct cs_barrier {
    atomic_int count, gen, sleepers;
    int n;
};

#ifdef __linux__
static void futex_wait(atomic_int *addr, int val)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_int *addr)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
static void futex_wait(atomic_int *addr, int val)
{
    (void)addr, (void)val;
    sched_yield();
}

static void futex_wake(atomic_int *addr)
{
    (void)addr;
}
#endif

static void barrier_wait(struct cs_barrier *b)
{
    int gen = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1) == b->n - 1) {
        atomic_store(&b->count, 0);
        atomic_fetch_add(&b->gen, 1);
        if (atomic_load(&b->sleepers)) futex_wake(&b->gen);
        return;
    }
    for (int i = 0; i < CS_SPIN; i++) {
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != gen) return;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    atomic_fetch_add(&b->sleepers, 1);
    while (atomic_load(&b->gen) == gen)
        futex_wait(&b->gen, gen);
    atomic_fetch_sub(&b->sleepers, 1);
}

/* Threads worth using: each should scan at least CS_MIN_BLOCKS blocks, or
 * the barrier of every step costs more than it saves. */
#define CS_MIN_BLOCKS 2048

static int greedy_threads(const struct cs_state *st)
{
    long n = st->nblk / CS_MIN_BLOCKS;
    return (int)SN_MAX(1, SN_MIN((long)omp_get_max_threads(), n));
}

/*
 * The loop. Each thread owns a fixed range of blocks and keeps its own copy
 * of the centre. Per step: scan the own range, post the range's farthest
 * point, one barrier, then every thread picks the same overall farthest
 * point from the posts (the lower index on ties: ranges are in order). The
 * posts alternate between two slots, so a thread may post step t + 1 while
 * another still reads step t.
 */
static void greedy_loop(struct cs_state *st, long start, long T, long *selected)
{
    struct log_progress pr;
    log_progress_begin(&pr, "coreset", "points", T);
    selected[0] = start;
    log_progress_step(&pr, 1); /* the start point counts, so the end reads T/T */
    int nth = greedy_threads(st);
    long post_i[2][64];
    double post_v[2][64];
    SN_ASSERT(nth <= 64);
    struct cs_barrier bar = {.n = nth};
#pragma omp parallel num_threads(nth)
    {
        int me = omp_get_thread_num(), nt = omp_get_num_threads();
        SN_ASSERT(nt == nth);
        long b0 = st->nblk * me / nt, b1 = st->nblk * (me + 1) / nt;
        struct cs_centre ce;
        centre_make(st, start, &ce);
        for (long t = 1; t < T; t++) {
            int slot = (int)(t & 1);
            for (long b = b0; b < b1; b++)
                block_step(st, b, &ce);
            post_i[slot][me] = range_argmax(st, b0, b1, &post_v[slot][me]);
            barrier_wait(&bar);
            int best = 0;
            for (int k = 1; k < nt; k++)
                if (post_v[slot][k] > post_v[slot][best]) best = k;
            centre_make(st, post_i[slot][best], &ce);
            if (me == 0) {
                selected[t] = post_i[slot][best];
                log_progress_step(&pr, 1);
            }
        }
    }
    log_progress_end(&pr);
}

static int check_greedy_args(const float *x, long n, int d, long T, long start)
{
    if (n <= 0) return sn_error("coreset: no features to select from");
    if (T <= 0) return sn_error("coreset: bank.coreset must be positive (got %ld)", T);
    if (d < 1) return sn_error("coreset: feature dimension %d", d);
    if (start < 0 || start >= n)
        return sn_error("coreset: start point %ld outside 0..%ld", start, n - 1);
    return knn_check_finite(x, n, d, "coreset input feature");
}

int coreset_greedy(const float *x, long n, int d, const float *proj, int proj_dim,
                   long start, long T, long *selected, long *n_selected)
{
    *n_selected = 0;
    int st = check_greedy_args(x, n, d, T, start);
    if (st != SN_OK) return st;
    if (T >= n) {
        for (long i = 0; i < n; i++)
            selected[i] = i;
        *n_selected = n;
        return SN_OK;
    }
    if (proj && (proj_dim < 1 || proj_dim > 4 * 512))
        return sn_error("coreset: projection dimension %d outside 1..2048", proj_dim);
    if (!proj && d > 4 * 512)
        return sn_error("coreset: unprojected dimension %d above 2048", d);

    /* random projection: one GEMM */
    int p = proj ? proj_dim : d;
    float *z = NULL;
    if (proj) {
        z = sn_aligned(sizeof(float) * (size_t)n * p);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, p, d, 1.0f, x, d,
                    proj, d, 0.0f, z, p);
    }

    struct cs_state cs;
    state_init(&cs, proj ? z : x, n, p);
    greedy_loop(&cs, start, T, selected);
    *n_selected = T;
    state_free(&cs);
    sn_free(z);
    return SN_OK;
}

int coreset_select(const float *x, long n, int d, long T, int proj_dim, uint64_t seed,
                   long *selected, long *n_selected)
{
    if (n <= 0 || T <= 0 || T >= n || d < 1)
        return coreset_greedy(x, n, d, NULL, 0, 0, T, selected, n_selected);
    if (proj_dim < 1)
        return sn_error("coreset: bank.proj_dim must be positive (got %d)", proj_dim);
    float *proj = sn_aligned(sizeof(float) * (size_t)proj_dim * d);
    coreset_projection(d, proj_dim, seed, proj);
    int st = coreset_greedy(x, n, d, proj, proj_dim, coreset_start(n, seed), T, selected,
                            n_selected);
    sn_free(proj);
    return st;
}

/* ------------------------------------------------------------------------ */
/* The memory bank                                                          */

static void bank_alloc(struct bank *b, long n, int d)
{
    memset(b, 0, sizeof(*b));
    b->n = n;
    b->d = d;
    b->vec = sn_aligned(sizeof(float) * (size_t)n * d);
    b->norms = sn_aligned(sizeof(float) * (size_t)n);
    b->source_index = sn_malloc(sizeof(long) * (size_t)n);
}

int bank_build(const float *feats, long n, int d, long T, int proj_dim, uint64_t seed,
               struct bank *out)
{
    memset(out, 0, sizeof(*out));
    long cap = T > 0 ? SN_MIN(T, n) : 1;
    long *sel = sn_malloc(sizeof(long) * (size_t)SN_MAX(cap, 1));
    long ns = 0;
    int st = coreset_select(feats, n, d, T, proj_dim, seed, sel, &ns);
    if (st != SN_OK) {
        sn_free(sel);
        return st;
    }

    /* the bank keeps the full features of the selected points */
    bank_alloc(out, ns, d);
    for (long i = 0; i < ns; i++) {
        memcpy(out->vec + i * d, feats + sel[i] * d, sizeof(float) * (size_t)d);
        out->source_index[i] = sel[i];
    }
    knn_norms(out->vec, ns, d, out->norms);
    out->n_source = n;
    out->T = T;
    out->proj_dim = proj_dim;
    out->seed = seed;
    sn_free(sel);
    log_info("memory bank: %ld of %ld features kept (T = %ld)", ns, n, T);
    return SN_OK;
}

int bank_from_rows(const float *vec, long n, int d, struct bank *out)
{
    memset(out, 0, sizeof(*out));
    if (n <= 0 || d < 1) return sn_error("memory bank: %ld rows of dimension %d", n, d);
    int st = knn_check_finite(vec, n, d, "memory bank");
    if (st != SN_OK) return st;
    bank_alloc(out, n, d);
    memcpy(out->vec, vec, sizeof(float) * (size_t)n * d);
    for (long i = 0; i < n; i++)
        out->source_index[i] = i;
    knn_norms(out->vec, n, d, out->norms);
    out->n_source = n;
    out->T = n;
    return SN_OK;
}

void bank_free(struct bank *b)
{
    if (!b) return;
    sn_free(b->vec);
    sn_free(b->norms);
    sn_free(b->source_index);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------------ */
/* Bank files                                                               */

static void write_dataset(hid_t file, const char *name, hid_t ftype, hid_t mtype,
                          int rank, const hsize_t *dims, const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t pl = h5_dcpl_untimed();
    if (dims[0] > 0) {
        /* chunks of about 1 MiB rows, shuffled and deflated */
        hsize_t chunk[2] = {dims[0], rank > 1 ? dims[1] : 1};
        hsize_t rows = rank > 1 ? SN_MAX(1, (262144 / SN_MAX(dims[1], 1))) : 131072;
        chunk[0] = SN_MIN(dims[0], rows);
        STORE_H5(H5Pset_chunk(pl, rank, chunk));
        STORE_H5(H5Pset_shuffle(pl));
        STORE_H5(H5Pset_deflate(pl, 1));
    }
    hid_t ds = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    STORE_H5(ds);
    if (dims[0] > 0) STORE_H5(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    H5Dclose(ds);
    H5Pclose(pl);
    H5Sclose(sp);
}

int bank_save(const char *path, const struct bank *b, const char *attrs_yaml)
{
    char tmp[4200];
    sn_tmp_name(tmp, sizeof tmp, path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return sn_error("cannot create memory bank file %s", tmp);

    /* the full vectors and where each came from */
    hsize_t dv[2] = {(hsize_t)b->n, (hsize_t)b->d};
    write_dataset(f, "vectors", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dv, b->vec);
    int64_t *src = sn_malloc(sizeof(int64_t) * (size_t)SN_MAX(b->n, 1));
    for (long i = 0; i < b->n; i++)
        src[i] = b->source_index[i];
    write_dataset(f, "source_index", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dv, src);
    sn_free(src);

    /* self-describing attributes; complete goes last */
    store_attr_put_long(f, "n", b->n);
    store_attr_put_long(f, "d", b->d);
    store_attr_put_long(f, "n_source", b->n_source);
    store_attr_put_long(f, "T", b->T);
    store_attr_put_long(f, "proj_dim", b->proj_dim);
    store_attr_put_long(f, "seed", (long)b->seed);
    store_attr_put_str(f, "version", sn_version());
    store_attr_put_str(f, "config", attrs_yaml);
    store_attr_put_long(f, "complete", 1);
    return store_h5_commit(f, tmp, path);
}

static int read_dataset(hid_t f, const char *name, hid_t mtype, long want, void *out)
{
    hid_t ds;
    STORE_H5_QUIET(H5Dopen2(f, name, H5P_DEFAULT), ds);
    if (ds < 0) return sn_error("dataset '%s' is missing", name);
    hid_t sp = H5Dget_space(ds);
    long n = (long)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int ok = n == want &&
             (n == 0 || H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(ds);
    if (!ok) return sn_error("dataset '%s' has %ld values, %ld expected", name, n, want);
    return SN_OK;
}

static int bank_read(hid_t f, struct bank *b)
{
    long complete = 0, n = 0, d = 0, v = 0;
    int st = store_attr_get_long(f, "complete", &complete);
    if (st != SN_OK || complete != 1) return sn_error("incomplete file");
    st = store_attr_get_long(f, "n", &n);
    if (!st) st = store_attr_get_long(f, "d", &d);
    if (st) return st;
    if (n < 1 || d < 1) return sn_error("empty bank (n %ld, d %ld)", n, d);

    bank_alloc(b, n, (int)d);
    st = read_dataset(f, "vectors", H5T_NATIVE_FLOAT, n * d, b->vec);
    int64_t *src = sn_malloc(sizeof(int64_t) * (size_t)n);
    if (!st) st = read_dataset(f, "source_index", H5T_NATIVE_INT64, n, src);
    for (long i = 0; i < n; i++)
        b->source_index[i] = (long)src[i];
    sn_free(src);
    if (!st) st = store_attr_get_long(f, "n_source", &b->n_source);
    if (!st) st = store_attr_get_long(f, "T", &b->T);
    if (!st) st = store_attr_get_long(f, "proj_dim", &v);
    b->proj_dim = (int)v;
    if (!st) st = store_attr_get_long(f, "seed", &v);
    b->seed = (uint64_t)v;
    if (!st) st = knn_check_finite(b->vec, n, (int)d, "memory bank");
    if (!st) knn_norms(b->vec, n, (int)d, b->norms);
    return st;
}

int bank_load(const char *path, struct bank *b)
{
    memset(b, 0, sizeof(*b));
    hid_t f;
    int st = store_h5_open(path, &f);
    if (st != SN_OK) return sn_error_prefix("memory bank");
    st = bank_read(f, b);
    H5Fclose(f);
    if (st != SN_OK) {
        bank_free(b);
        return sn_error_prefix("memory bank %s", path);
    }
    return SN_OK;
}

char *bank_load_attrs(const char *path)
{
    hid_t f;
    char *s = NULL;
    if (store_h5_open(path, &f) != SN_OK) {
        sn_error_prefix("memory bank");
        return NULL;
    }
    if (store_attr_get_str(f, "config", &s) != SN_OK)
        sn_error_prefix("memory bank %s", path);
    H5Fclose(f);
    return s;
}
