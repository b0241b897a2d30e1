/*
 * test_cuda_knn.c - parity of the device memory-bank search (gpu.h) with
 * core/knn.h and core/coreset.h.
 *
 * kNN: the same indices exactly and the same squared distances to rtol
 * 1e-6. Both sides shortlist with a float GEMM and then re-score in double,
 * so the order is decided by double sums that differ only in summation
 * order (about 1e-16 relative): a different index would need two bank
 * vectors within that of each other, i.e. a true tie, which both sides
 * break by the lower index (tested with a duplicated bank row). The
 * distances are those doubles rounded once to float (rtol 1e-6 is 8 ulps).
 *
 * Coreset: the same selection exactly. Without a projection the device
 * sums every distance in the CPU's order with the CPU's roundings, so the
 * float distances are bit-for-bit equal. With a projection the GEMM could
 * round differently, so that test uses small integers and eighths, for
 * which every product and sum of the projection is exact in float: the
 * projections agree bit for bit. A third set lies on a small lattice, so
 * that equally far candidates occur at every step and the lowest-index rule
 * decides (a planted reversal of that rule is caught).
 */
#include <math.h>

#include "core/coreset.h"
#include "core/knn.h"
#include "test_cuda_util.h"

/* ---- kNN --------------------------------------------------------------- */

static void knn_compare(const char *what, const float *bank, long nb, int d,
                        const float *q, long nq, int k, long tile_rows)
{
    int *ci = tcu_host(sizeof(int) * (size_t)nq * k),
        *gi = tcu_host(sizeof(int) * (size_t)nq * k);
    float *cd = tcu_floats(nq * k), *gd = tcu_floats(nq * k);
    TU_CHECK(knn_search(bank, NULL, nb, d, q, nq, k, ci, cd) == SN_OK);

    struct gpu_knn *kn = gpu_knn_new(tcu_g, nb, d, nq);
    if (tile_rows) gpu_knn_set_tile_rows(kn, tile_rows);
    TU_CHECK(gpu_knn_set_bank(kn, bank) == SN_OK);
    TU_CHECK(gpu_knn_search(kn, q, nq, k, gi, gd) == SN_OK);
    gpu_knn_free(kn);

    long bad = 0, first = -1;
    for (long i = 0; i < nq * k; i++)
        if (ci[i] != gi[i] && bad++ == 0) first = i;
    TU_CHECK_MSG(bad == 0,
                 "%s: %ld of %ld indices differ, first at query %ld rank %ld "
                 "(cpu %d, gpu %d)",
                 what, bad, nq * k, first / k, first % k, first >= 0 ? ci[first] : 0,
                 first >= 0 ? gi[first] : 0);
    /* entries past the bank are +inf on both sides; the rest to rtol 1e-6 */
    long inf_ok = 0, ninf = 0;
    for (long i = 0; i < nq * k; i++)
        if (isinf(cd[i])) {
            ninf++;
            inf_ok += isinf(gd[i]) && gi[i] == -1;
            cd[i] = gd[i] = 0.0f;
        }
    TU_CHECK_MSG(inf_ok == ninf, "%s: %ld of %ld missing neighbours not -1 / inf", what,
                 ninf - inf_ok, ninf);
    TU_CLOSE(what, gd, cd, nq * k, 0.0, 1e-6);
}

static void test_knn_random(void)
{
    const long nb = 3000, nq = 700;
    const int d = 64;
    float *bank = tcu_randn(nb * d, 0, 1), *q = tcu_randn(nq * d, 0, 1);

    /* a duplicated bank row (an exact tie), and queries near bank rows */
    memcpy(bank + (nb - 1) * d, bank + 5 * d, sizeof(float) * d);
    for (long i = 0; i < 100; i++)
        for (int c = 0; c < d; c++)
            q[i * d + c] = bank[(i * 29 % nb) * d + c] + 0.05f * q[i * d + c];
    for (int c = 0; c < d; c++)
        q[7 * d + c] = bank[5 * d + c] + 0.01f * q[8 * d + c];

    knn_compare("knn k=1", bank, nb, d, q, nq, 1, 0);
    knn_compare("knn k=3", bank, nb, d, q, nq, 3, 0);
    knn_compare("knn k=10, tiles of 128 queries", bank, nb, d, q, nq, 10, 128);
    knn_compare("knn k=62, tiles of 333 queries", bank, nb, d, q, nq, 62, 333);
}

static void test_knn_wide(void)
{
    /* the method's feature width, a bank that is not a multiple of anything */
    const long nb = 4097, nq = 300;
    const int d = 512;
    float *bank = tcu_randn(nb * d, 0, 1), *q = tcu_randn(nq * d, 0, 1);
    knn_compare("knn d=512 k=3", bank, nb, d, q, nq, 3, 0);
}

static void test_knn_small_bank(void)
{
    /* k above the bank size: -1 / inf past the 5 real neighbours */
    const long nb = 5, nq = 9;
    const int d = 7, k = 8;
    float *bank = tcu_randn(nb * d, 0, 1), *q = tcu_randn(nq * d, 0, 1);
    knn_compare("knn k > bank", bank, nb, d, q, nq, k, 0);
}

static void test_knn_dev_and_errors(void)
{
    const long nb = 200, nq = 20;
    const int d = 16, k = 4;
    float *bank = tcu_randn(nb * d, 0, 1), *q = tcu_randn(nq * d, 0, 1);
    int *ci = tcu_host(sizeof(int) * nq * k), *gi = tcu_host(sizeof(int) * nq * k);
    float *cd = tcu_floats(nq * k);
    struct gpu_knn *kn = gpu_knn_new(tcu_g, nb, d, nq);
    TU_CHECK(gpu_knn_set_bank(kn, bank) == SN_OK);

    /* device queries and results */
    int *d_idx = gpu_arena_alloc(&tcu_mem, sizeof(int) * nq * k);
    float *d_dist = gpu_arena_floats(&tcu_mem, (size_t)(nq * k));
    TU_CHECK(gpu_knn_search_dev(kn, tcu_dev(q, nq * d), nq, k, d_idx, d_dist) == SN_OK);
    gpu_download(tcu_g, gi, d_idx, sizeof(int) * nq * k);
    TU_CHECK(knn_search(bank, NULL, nb, d, q, nq, k, ci, cd) == SN_OK);
    TU_CHECK(memcmp(ci, gi, sizeof(int) * nq * k) == 0);
    TU_CLOSE("knn device queries", tcu_back(d_dist, nq * k), cd, nq * k, 0.0, 1e-6);

    /* user errors with the CPU's messages */
    TU_CHECK_ERR(gpu_knn_search(kn, q, nq, 0, gi, cd), "k must be between");
    TU_CHECK_ERR(gpu_knn_search(kn, q, nq, 63, gi, cd), "k must be between");
    q[3 * d + 2] = NAN;
    TU_CHECK_ERR(gpu_knn_search(kn, q, nq, k, gi, cd), "query features row 3");
    q[3 * d + 2] = 1e30f;
    TU_CHECK_ERR(gpu_knn_search(kn, q, nq, k, gi, cd), "too large to square");
    bank[17 * d] = INFINITY;
    TU_CHECK_ERR(gpu_knn_set_bank(kn, bank), "memory bank row 17");
    gpu_knn_free(kn);
}

/* ---- coreset ------------------------------------------------------------- */

static void coreset_compare(const char *what, const float *x, long n, int d,
                            const float *proj, int pd, long start, long T)
{
    long cap = SN_MIN(T, n);
    long *cs = tcu_host(sizeof(long) * cap), *gs = tcu_host(sizeof(long) * cap);
    long cn = 0, gn = 0;
    TU_CHECK(coreset_greedy(x, n, d, proj, pd, start, T, cs, &cn) == SN_OK);
    TU_CHECK(gpu_coreset_greedy(tcu_g, x, n, d, proj, pd, start, T, gs, &gn) == SN_OK);
    TU_CHECK(cn == gn && cn == cap);

    long bad = 0, first = -1;
    for (long i = 0; i < SN_MIN(cn, gn); i++)
        if (cs[i] != gs[i] && bad++ == 0) first = i;
    printf("  %-40s %ld selected, %ld differ\n", what, cn, bad);
    TU_CHECK_MSG(bad == 0, "%s: selection %ld differs (cpu %ld, gpu %ld)", what, first,
                 first >= 0 ? cs[first] : 0, first >= 0 ? gs[first] : 0);
}

static void test_coreset_unprojected(void)
{
    const long n = 4000;
    const int d = 48;
    float *x = tcu_randn(n * d, 0, 1);
    coreset_compare("coreset, no projection", x, n, d, NULL, 0, 17, 300);
}

static void test_coreset_projected_exact(void)
{
    /* x: integers in [-8, 8]; proj: eighths in [-2, 2]. Every product is a
     * multiple of 1/8 below 16 and every sum of 64 below 1024: exact. */
    const long n = 3000;
    const int d = 64, pd = 32;
    float *x = tcu_floats(n * d), *proj = tcu_floats((long)pd * d);
    for (long i = 0; i < n * d; i++)
        x[i] = (float)((int)rng_below(&tcu_rng, 17) - 8);
    for (long i = 0; i < (long)pd * d; i++)
        proj[i] = (float)((int)rng_below(&tcu_rng, 33) - 16) / 8.0f;
    coreset_compare("coreset, exact projection", x, n, d, proj, pd, 123, 400);
}

static void test_coreset_ties(void)
{
    /* points of {-1, 0, 1}^4: 81 places for 3000 points, so every step has
     * many equally far candidates and the lowest index must win */
    const long n = 3000;
    const int d = 4;
    float *x = tcu_floats(n * d);
    for (long i = 0; i < n * d; i++)
        x[i] = (float)((int)rng_below(&tcu_rng, 3) - 1);
    coreset_compare("coreset, lattice with ties", x, n, d, NULL, 0, 5, 70);
}

static void test_coreset_edges(void)
{
    const long n = 50;
    const int d = 8;
    float *x = tcu_randn(n * d, 0, 1);
    long *sel = tcu_host(sizeof(long) * n), ns = 0;

    /* T >= n keeps everything in order */
    TU_CHECK(gpu_coreset_greedy(tcu_g, x, n, d, NULL, 0, 3, n + 5, sel, &ns) == SN_OK);
    TU_CHECK(ns == n && sel[0] == 0 && sel[n - 1] == n - 1);
    coreset_compare("coreset, T = n - 1", x, n, d, NULL, 0, 0, n - 1);

    /* user errors with the CPU's messages */
    TU_CHECK_ERR(gpu_coreset_greedy(tcu_g, x, n, d, NULL, 0, 0, 0, sel, &ns),
                 "must be positive");
    TU_CHECK_ERR(gpu_coreset_greedy(tcu_g, x, n, d, NULL, 0, n, 5, sel, &ns),
                 "start point");
    x[11 * d + 3] = NAN;
    TU_CHECK_ERR(gpu_coreset_greedy(tcu_g, x, n, d, NULL, 0, 0, 5, sel, &ns),
                 "coreset input feature row 11");
}

int main(void)
{
    tcu_start("test_cuda_knn", 11);
    test_knn_random();
    test_knn_wide();
    test_knn_small_bank();
    test_knn_dev_and_errors();
    test_coreset_unprojected();
    test_coreset_projected_exact();
    test_coreset_ties();
    test_coreset_edges();
    return tcu_finish("test_cuda_knn");
}
