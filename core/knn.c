#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>

#include "common.h"
#include "log.h"

/*
 * Tiling and threads. The queries are split between the threads; each runs
 * its own single-threaded GEMMs and scans its own distance tiles, so the
 * threads meet once per search instead of once per bank block (on a shared
 * machine a pre-empted thread would hold up every meeting). Each GEMM
 * multiplies a tile of up to KNN_QT queries by a block of KNN_BT bank
 * vectors (16 MiB at d = 1024, kept in the L3 cache while the queries stream
 * past it). The BLAS repacks the queries for every block, so blocks this
 * large keep the blocked product within about 2 % of one GEMM over the
 * whole bank.
 */
#define KNN_QT 4096
#define KNN_BT 4096
/* Fewest queries per thread worth a thread of its own. */
#define KNN_MIN_ROWS 256

/* Extra shortlist entries re-scored exactly. A true neighbour is lost only
 * if more than this many other bank vectors sit within GEMM rounding (about
 * 1e-6 of the squared norms) of it. */
#define KNN_SLACK 2
#define KNN_KMAX 62 /* shortlist of at most 64 on the stack */

/* The scan looks at this many distances at once and enters the slow path
 * only when one of them beats the current worst shortlist entry. */
#define KNN_CHUNK 32

/* The running shortlist of one query: K entries sorted by (distance, index). */
struct knn_list {
    float *d;
    int *i;
    int K;
};

/* Sum of squares in 16 independent partial sums (a vector's lanes), so the
 * adds do not wait on one another; the lanes are then summed in fixed order. */
static float sum_squares(const float *v, int d)
{
    float acc[16] = {0};
    int c = 0;
    for (; c + 16 <= d; c += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += v[c + l] * v[c + l];
    for (; c < d; c++)
        acc[c % 16] += v[c] * v[c];
    float s = 0;
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

void knn_norms(const float *x, long n, int d, float *norms)
{
#pragma omp parallel for schedule(static) if (n * (long)d > 65536)
    for (long r = 0; r < n; r++)
        norms[r] = sum_squares(x + r * (long)d, d);
}

int knn_effective_k(long nb, int k)
{
    return (int)SN_MIN((long)k, nb);
}

int knn_check_finite(const float *x, long n, int d, const char *what)
{
    for (long r = 0; r < n; r++) {
        const float *v = x + r * (long)d;
        int bad = 0;
        for (int c = 0; c < d; c++)
            bad |= !isfinite(v[c]);
        if (bad) return sn_error("%s row %ld has a NaN or infinite value", what, r);
    }
    return SN_OK;
}

/* A NaN or infinity anywhere in a row makes its squared norm non-finite (so
 * does a value near FLT_MAX, whose distances would be meaningless anyway). */
static int check_norms(const float *x, const float *norms, long n, int d,
                       const char *what)
{
    for (long r = 0; r < n; r++)
        if (!isfinite(norms[r])) {
            if (knn_check_finite(x + r * (long)d, 1, d, what) != SN_OK)
                return sn_error("%s row %ld has a NaN or infinite value", what, r);
            return sn_error("%s row %ld is too large to square (norm overflows)", what,
                            r);
        }
    return SN_OK;
}

/* Insert (dist, j) after every entry that is not larger: since the bank is
 * scanned in increasing index, equal distances keep the lower index first. */
static void list_insert(struct knn_list *l, float dist, int j)
{
    int p = l->K - 1;
    while (p > 0 && l->d[p - 1] > dist) {
        l->d[p] = l->d[p - 1];
        l->i[p] = l->i[p - 1];
        p--;
    }
    l->d[p] = dist;
    l->i[p] = j;
}

/* Scan one row of a distance tile: dot holds -2 q.b for bank vectors
 * j0 .. j0+nbt-1; the approximate distance is qn + bn + dot. */
static void scan_row(struct knn_list *l, const float *dot, const float *bn, float qn,
                     long j0, int nbt)
{
    int c0 = 0;
    for (; c0 + KNN_CHUNK <= nbt; c0 += KNN_CHUNK) {
        float lim = l->d[l->K - 1] - qn;
        int hits = 0;
        for (int c = c0; c < c0 + KNN_CHUNK; c++)
            hits += (bn[c] + dot[c] < lim);
        if (!hits) continue;
        for (int c = c0; c < c0 + KNN_CHUNK; c++) {
            float dist = qn + bn[c] + dot[c];
            if (dist < l->d[l->K - 1]) list_insert(l, dist, (int)(j0 + c));
        }
    }
    for (int c = c0; c < nbt; c++) {
        float dist = qn + bn[c] + dot[c];
        if (dist < l->d[l->K - 1]) list_insert(l, dist, (int)(j0 + c));
    }
}

/* Exact squared distance: differences of floats are exact in double, and
 * eight partial sums keep the adds independent. */
static double dist2_exact(const float *a, const float *b, int d)
{
    double acc[8] = {0};
    int c = 0;
    for (; c + 8 <= d; c += 8)
        for (int l = 0; l < 8; l++) {
            double t = (double)a[c + l] - (double)b[c + l];
            acc[l] += t * t;
        }
    for (; c < d; c++) {
        double t = (double)a[c] - (double)b[c];
        acc[c % 8] += t * t;
    }
    double s = 0;
    for (int l = 0; l < 8; l++)
        s += acc[l];
    return s;
}

/* Re-score a shortlist exactly, order it by (distance, index) and write the
 * first keff entries of one output row of stride k. */
static void list_finish(struct knn_list *l, const float *bank, const float *q, int d,
                        int keff, int k, int *idx, float *dist2)
{
    double ex[KNN_KMAX + KNN_SLACK];
    int ix[KNN_KMAX + KNN_SLACK];
    SN_ASSERT(l->K <= KNN_KMAX + KNN_SLACK);
    for (int a = 0; a < l->K; a++) {
        ix[a] = l->i[a];
        ex[a] = dist2_exact(q, bank + (long)ix[a] * d, d);
    }
    for (int a = 1; a < l->K; a++)
        for (int b = a;
             b > 0 && (ex[b - 1] > ex[b] || (ex[b - 1] == ex[b] && ix[b - 1] > ix[b]));
             b--) {
            double td = ex[b];
            ex[b] = ex[b - 1];
            ex[b - 1] = td;
            int ti = ix[b];
            ix[b] = ix[b - 1];
            ix[b - 1] = ti;
        }
    for (int a = 0; a < k; a++) {
        idx[a] = a < keff ? ix[a] : -1;
        dist2[a] = a < keff ? (float)ex[a] : INFINITY;
    }
}

/* One query tile against the whole bank, block by block. */
static void search_tile(const float *bank, const float *bn, long nb, int d,
                        const float *q, const float *qn, int nq, struct knn_list *lists,
                        float *tile)
{
    for (long j0 = 0; j0 < nb; j0 += KNN_BT) {
        int nbt = (int)SN_MIN((long)KNN_BT, nb - j0);

        /* -2 q.b for the block, in one GEMM */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nbt, d, -2.0f, q, d,
                    bank + j0 * d, d, 0.0f, tile, nbt);

        /* shortlist update, one query row per iteration */
        for (int r = 0; r < nq; r++)
            scan_row(&lists[r], tile + (long)r * nbt, bn + j0, qn[r], j0, nbt);
    }
}

/* Queries q (nq of them) against the whole bank, in tiles of KNN_QT. */
static void search_rows(const float *bank, const float *bn, long nb, int d,
                        const float *q, const float *qn, long nq, int k, int *idx,
                        float *dist2)
{
    int keff = knn_effective_k(nb, k);
    int K = (int)SN_MIN((long)keff + KNN_SLACK, nb);
    int qt = (int)SN_MIN((long)KNN_QT, nq);
    float *ld = sn_malloc(sizeof(float) * (size_t)qt * K);
    int *li = sn_malloc(sizeof(int) * (size_t)qt * K);
    struct knn_list *lists = sn_malloc(sizeof(*lists) * (size_t)qt);
    float *tile = sn_aligned(sizeof(float) * (size_t)qt * SN_MIN((long)KNN_BT, nb));

    for (long q0 = 0; q0 < nq; q0 += qt) {
        int n = (int)SN_MIN((long)qt, nq - q0);
        for (int r = 0; r < n; r++) {
            lists[r] = (struct knn_list){ld + (long)r * K, li + (long)r * K, K};
            for (int a = 0; a < K; a++)
                lists[r].d[a] = INFINITY, lists[r].i[a] = -1;
        }
        search_tile(bank, bn, nb, d, q + q0 * d, qn + q0, n, lists, tile);

        /* exact re-score of the shortlists */
        for (int r = 0; r < n; r++)
            list_finish(&lists[r], bank, q + (q0 + r) * d, d, keff, k, idx + (q0 + r) * k,
                        dist2 + (q0 + r) * k);
    }
    sn_free(tile);
    sn_free(lists);
    sn_free(li);
    sn_free(ld);
}

static int check_args(long nb, int d, long nq, int k)
{
    if (k < 1 || k > KNN_KMAX)
        return sn_error("kNN search: k must be between 1 and %d (got %d)", KNN_KMAX, k);
    if (nb < 1) return sn_error("kNN search: the memory bank is empty");
    if (d < 1) return sn_error("kNN search: feature dimension %d", d);
    if (nb > 2147483647L)
        return sn_error("kNN search: bank of %ld vectors exceeds the int index", nb);
    if (nq < 0) return sn_error("kNN search: %ld queries", nq);
    return SN_OK;
}

int knn_search(const float *bank, const float *bank_norms, long nb, int d, const float *q,
               long nq, int k, int *idx, float *dist2)
{
    int st = check_args(nb, d, nq, k);
    if (st != SN_OK || nq == 0) return st;
    int keff = knn_effective_k(nb, k);
    /* said once per process: a sweep searches the same small bank many times */
    static atomic_int warned;
    if (keff < k && !atomic_exchange(&warned, 1))
        log_warn("kNN search: k = %d but the bank holds %ld vectors; using k = %d "
                 "(the remaining entries are -1 / inf)",
                 k, nb, keff);

    /* norms, which also reveal non-finite rows */
    float *bn_own = NULL;
    if (!bank_norms) {
        bn_own = sn_aligned(sizeof(float) * (size_t)nb);
        knn_norms(bank, nb, d, bn_own);
        bank_norms = bn_own;
    }
    float *qn = sn_aligned(sizeof(float) * (size_t)nq);
    knn_norms(q, nq, d, qn);
    st = check_norms(bank, bank_norms, nb, d, "memory bank");
    if (st == SN_OK) st = check_norms(q, qn, nq, d, "query features");

    /* the queries split over the threads, each with a single-threaded BLAS */
    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    nth = (int)SN_MAX(1, SN_MIN((long)nth, nq / KNN_MIN_ROWS));
    int blas_threads = openblas_get_num_threads();
    if (st == SN_OK && nth > 1) openblas_set_num_threads(1);
#pragma omp parallel num_threads(nth) if (st == SN_OK && nth > 1)
    {
        int me = omp_get_thread_num(), nt = omp_get_num_threads();
        long q0 = nq * me / nt, q1 = nq * (me + 1) / nt;
        if (st == SN_OK && q1 > q0)
            search_rows(bank, bank_norms, nb, d, q + q0 * d, qn + q0, q1 - q0, k,
                        idx + q0 * k, dist2 + q0 * k);
    }
    if (st == SN_OK && nth > 1) openblas_set_num_threads(blas_threads);

    sn_free(qn);
    sn_free(bn_own);
    return st;
}
