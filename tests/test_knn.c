/*
 * kNN search against brute force: the Python reference (tests/ref_bank.py,
 * random, tied and k-larger-than-bank cases) and a double-precision brute
 * force here on shapes that span several bank blocks and query tiles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "knn.h"
#include "rng.h"
#include "testutil.h"

static const char *ref;

/* One reference case: same neighbours, same distances. */
static void check_ref_case(const char *name)
{
    char key[128];
    long nb_el, nq_el, n;
    snprintf(key, sizeof key, "knn/%s/bank", name);
    float *bank = tu_ref_read(ref, key, &nb_el);
    snprintf(key, sizeof key, "knn/%s/q", name);
    float *q = tu_ref_read(ref, key, &nq_el);
    snprintf(key, sizeof key, "knn/%s/k", name);
    int k = (int)tu_ref_scalar(ref, key);
    snprintf(key, sizeof key, "knn/%s/idx", name);
    float *want_i = tu_ref_read(ref, key, &n);
    snprintf(key, sizeof key, "knn/%s/dist2", name);
    float *want_d = tu_ref_read(ref, key, NULL);
    int ndim;
    snprintf(key, sizeof key, "knn/%s/bank", name);
    long *shape = tu_ref_shape(ref, key, &ndim);
    if (!bank || !q || !want_i || !want_d || !shape) return;
    int d = (int)shape[1];
    long nb = nb_el / d, nq = nq_el / d;

    int *idx = malloc(sizeof(int) * (size_t)n);
    float *dist = malloc(sizeof(float) * (size_t)n);
    TU_CHECK(knn_search(bank, NULL, nb, d, q, nq, k, idx, dist) == SN_OK);
    int same = 1;
    for (long i = 0; i < n; i++)
        same &= idx[i] == (int)want_i[i];
    TU_CHECK_MSG(same, "knn/%s: neighbour indices differ from brute force", name);
    for (long i = 0; i < n; i++)
        if (isinf(want_d[i])) want_d[i] = dist[i] = 0; /* padding, checked above */
    TU_CLOSE(name, dist, want_d, n, 1e-5, 1e-5);
    free(idx), free(dist), free(bank), free(q), free(want_i), free(want_d), free(shape);
}

/* Double-precision brute force with a full ordering by (distance, index). */
static void brute(const float *b, long nb, int d, const float *q, int k, int *idx,
                  double *dist)
{
    for (int a = 0; a < k; a++)
        idx[a] = -1, dist[a] = INFINITY;
    for (long j = 0; j < nb; j++) {
        double s = 0;
        for (int c = 0; c < d; c++)
            s += ((double)q[c] - b[j * d + c]) * ((double)q[c] - b[j * d + c]);
        int p = k;
        while (p > 0 && (s < dist[p - 1]))
            p--;
        if (p == k) continue;
        memmove(idx + p + 1, idx + p, sizeof(int) * (size_t)(k - p - 1));
        memmove(dist + p + 1, dist + p, sizeof(double) * (size_t)(k - p - 1));
        idx[p] = (int)j, dist[p] = s;
    }
}

/* Several bank blocks (with a remainder) and several query tiles. */
static void check_blocks(long nb, long nq, int d, int k)
{
    struct rng_state r;
    rng_seed(&r, 99, (uint64_t)nb);
    float *b = malloc(sizeof(float) * (size_t)nb * d);
    float *q = malloc(sizeof(float) * (size_t)nq * d);
    rng_fill_normal(&r, b, nb * d, 1.0f);
    rng_fill_normal(&r, q, nq * d, 1.0f);
    memcpy(q + 5 * d, b + (nb - 1) * d, sizeof(float) * (size_t)d); /* last row */
    float *bn = malloc(sizeof(float) * (size_t)nb);
    knn_norms(b, nb, d, bn);
    int *idx = malloc(sizeof(int) * (size_t)nq * k), wi[16];
    float *dist = malloc(sizeof(float) * (size_t)nq * k);
    double wd[16];
    TU_CHECK(knn_search(b, bn, nb, d, q, nq, k, idx, dist) == SN_OK);
    long bad_i = 0, bad_d = 0;
    for (long i = 0; i < nq; i++) {
        brute(b, nb, d, q + i * d, k, wi, wd);
        for (int a = 0; a < k; a++) {
            bad_i += idx[i * k + a] != wi[a];
            bad_d += fabs(dist[i * k + a] - wd[a]) > 1e-5 * (1 + wd[a]);
        }
    }
    TU_CHECK_MSG(bad_i == 0 && bad_d == 0,
                 "blocks nb=%ld nq=%ld: %ld indices and %ld "
                 "distances differ",
                 nb, nq, bad_i, bad_d);
    TU_CHECK(idx[5 * k] == nb - 1 && dist[5 * k] == 0.0f);
    free(b), free(q), free(bn), free(idx), free(dist);
}

/* Searches from inside a parallel region (each thread its own queries, the
 * BLAS called concurrently) give what one search gives. */
static void check_nested(void)
{
    long nb = 3000, nq = 600;
    int d = 24, k = 3;
    struct rng_state r;
    rng_seed(&r, 5, 5);
    float *b = malloc(sizeof(float) * (size_t)nb * d);
    float *q = malloc(sizeof(float) * (size_t)nq * d);
    rng_fill_normal(&r, b, nb * d, 1.0f);
    rng_fill_normal(&r, q, nq * d, 1.0f);
    int *one = malloc(sizeof(int) * (size_t)nq * k), *par = malloc(sizeof(int) * nq * k);
    float *d1 = malloc(sizeof(float) * (size_t)nq * k),
          *d2 = malloc(sizeof(float) * nq * k);
    TU_CHECK(knn_search(b, NULL, nb, d, q, nq, k, one, d1) == SN_OK);
    int bad = 0;
#pragma omp parallel for num_threads(2) reduction(+ : bad)
    for (int part = 0; part < 4; part++) {
        long q0 = nq * part / 4, n = nq / 4;
        bad += knn_search(b, NULL, nb, d, q + q0 * d, n, k, par + q0 * k, d2 + q0 * k);
    }
    TU_CHECK(bad == 0);
    TU_CHECK(!memcmp(one, par, sizeof(int) * nq * k) &&
             !memcmp(d1, d2, sizeof(float) * nq * k));
    free(b), free(q), free(one), free(par), free(d1), free(d2);
}

static void check_errors(void)
{
    float b[4 * 3] = {0}, q[2 * 3] = {0};
    int idx[2 * 2];
    float dist[2 * 2];
    b[7] = NAN;
    TU_CHECK_ERR(knn_search(b, NULL, 4, 3, q, 2, 2, idx, dist), "memory bank row 2");
    b[7] = 0;
    q[4] = INFINITY;
    TU_CHECK_ERR(knn_search(b, NULL, 4, 3, q, 2, 2, idx, dist), "query features row 1");
    q[4] = 0;
    TU_CHECK_ERR(knn_search(b, NULL, 4, 3, q, 2, 0, idx, dist), "k must be");
    TU_CHECK_ERR(knn_search(b, NULL, 0, 3, q, 2, 2, idx, dist), "empty");
    TU_CHECK(knn_search(b, NULL, 4, 3, q, 2, 2, idx, dist) == SN_OK);
    /* all bank rows tie at distance 0: lowest indices first */
    TU_CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 0 && idx[3] == 1);
    TU_CHECK(knn_effective_k(4, 9) == 4 && knn_effective_k(40, 9) == 9);
}

int main(void)
{
    ref = tu_ref_path("bank.h5");
    if (!tu_ref_has(ref, "knn/rand/idx")) tu_skip("no reference file %s", ref);
    check_ref_case("rand");
    check_ref_case("ties");
    check_ref_case("big_k");
    check_blocks(9000, 300, 40, 4); /* 3 bank blocks, the last partial */
    check_blocks(4500, 4200, 8, 3); /* 2 query tiles, 2 bank blocks */
    check_nested();
    check_errors();
    return tu_finish("test_knn");
}
