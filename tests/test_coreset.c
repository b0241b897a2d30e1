/*
 * Greedy k-centre coreset and the memory bank: the same selections as the
 * PatchCore-style reference loop (tests/ref_bank.py) on random, duplicated
 * and integer data, with both the vector and the portable scan; determinism,
 * the edge cases of T, and the bank file.
 */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "coreset.h"
#include "rng.h"
#include "testutil.h"

static const char *ref;

static void check_ref_case(const char *name)
{
    char key[128];
    long nx, np, n1;
    int ndim;
    snprintf(key, sizeof key, "coreset/%s/x", name);
    float *x = tu_ref_read(ref, key, &nx);
    long *shape = tu_ref_shape(ref, key, &ndim);
    snprintf(key, sizeof key, "coreset/%s/proj", name);
    float *proj = tu_ref_read(ref, key, &np);
    snprintf(key, sizeof key, "coreset/%s/start", name);
    long start = (long)tu_ref_scalar(ref, key);
    snprintf(key, sizeof key, "coreset/%s/T", name);
    long T = (long)tu_ref_scalar(ref, key);
    snprintf(key, sizeof key, "coreset/%s/sel", name);
    float *want = tu_ref_read(ref, key, &n1);
    if (!x || !shape || !proj || !want) return;
    long n = shape[0];
    int d = (int)shape[1];
    int p = np ? (int)(np / d) : 0;

    long *sel = malloc(sizeof(long) * (size_t)T), ns = 0;
    TU_CHECK(coreset_greedy(x, n, d, np ? proj : NULL, p, start, T, sel, &ns) == SN_OK);
    long first_bad = -1;
    for (long i = 0; i < n1 && first_bad < 0; i++)
        if (i >= ns || sel[i] != (long)want[i]) first_bad = i;
    TU_CHECK_MSG(ns == n1 && first_bad < 0,
                 "coreset/%s: %ld selected (want %ld), first "
                 "difference at %ld",
                 name, ns, n1, first_bad);
    free(sel), free(x), free(proj), free(want), free(shape);
}

static float *random_x(long n, int d, uint64_t seed)
{
    struct rng_state r;
    rng_seed(&r, seed, 1);
    float *x = malloc(sizeof(float) * (size_t)n * d);
    rng_fill_normal(&r, x, n * d, 1.0f);
    return x;
}

/* coreset_select is the projection and start it publishes plus the loop;
 * the same seed gives the same selection, another seed another one. */
static void check_determinism(void)
{
    long n = 3000, T = 300, ns;
    int d = 48, p = 16;
    float *x = random_x(n, d, 3);
    long *a = malloc(sizeof(long) * T), *b = malloc(sizeof(long) * T);
    TU_CHECK(coreset_select(x, n, d, T, p, 11, a, &ns) == SN_OK && ns == T);
    TU_CHECK(coreset_select(x, n, d, T, p, 11, b, &ns) == SN_OK);
    TU_CHECK(!memcmp(a, b, sizeof(long) * T));
    float *proj = malloc(sizeof(float) * p * d);
    coreset_projection(d, p, 11, proj);
    TU_CHECK(coreset_greedy(x, n, d, proj, p, coreset_start(n, 11), T, b, &ns) == SN_OK);
    TU_CHECK(!memcmp(a, b, sizeof(long) * T));
    TU_CHECK(a[0] == coreset_start(n, 11));
    TU_CHECK(coreset_select(x, n, d, T, p, 12, b, &ns) == SN_OK);
    TU_CHECK(memcmp(a, b, sizeof(long) * T) != 0);

    /* every selected point is distinct */
    char *seen = calloc((size_t)n, 1);
    int dup = 0;
    for (long i = 0; i < T; i++)
        dup |= seen[a[i]]++;
    TU_CHECK(!dup);
    free(seen), free(proj), free(a), free(b), free(x);
}

/* A plain loop in double on a larger set: the quantised skip test never
 * changes a decision of the float distances. */
static void check_plain_loop(void)
{
    long n = 70000, T = 300, ns; /* enough blocks for two threads */
    int d = 32, p = 16;
    float *x = random_x(n, d, 8), *proj = malloc(sizeof(float) * p * d);
    coreset_projection(d, p, 21, proj);
    double *z = malloc(sizeof(double) * n * p), *mind = malloc(sizeof(double) * n);
    for (long i = 0; i < n; i++)
        for (int a = 0; a < p; a++) {
            double s = 0;
            for (int c = 0; c < d; c++)
                s += (double)x[i * d + c] * proj[a * d + c];
            z[i * p + a] = s;
        }
    long *want = malloc(sizeof(long) * T), *sel = malloc(sizeof(long) * T);
    want[0] = 77;
    for (long i = 0; i < n; i++)
        mind[i] = INFINITY;
    for (long t = 1; t < T; t++) {
        long c = want[t - 1], best = 0;
        for (long i = 0; i < n; i++) {
            double s = 0;
            for (int a = 0; a < p; a++)
                s += (z[i * p + a] - z[c * p + a]) * (z[i * p + a] - z[c * p + a]);
            if (s < mind[i]) mind[i] = s;
            if (mind[i] > mind[best]) best = i;
        }
        want[t] = best;
    }
    TU_CHECK(coreset_greedy(x, n, d, proj, p, 77, T, sel, &ns) == SN_OK);
    TU_CHECK_MSG(!memcmp(sel, want, sizeof(long) * T),
                 "coreset differs from the plain "
                 "double loop on %ld points",
                 n);
    free(x), free(proj), free(z), free(mind), free(want), free(sel);
}

static void check_edges(void)
{
    float x[5 * 2] = {0, 0, 1, 0, 0, 1, 1, 1, 5, 5};
    long sel[8], ns = -1;
    TU_CHECK(coreset_select(x, 5, 2, 5, 4, 1, sel, &ns) == SN_OK && ns == 5);
    TU_CHECK(sel[0] == 0 && sel[4] == 4);
    TU_CHECK(coreset_select(x, 5, 2, 100, 4, 1, sel, &ns) == SN_OK && ns == 5);
    TU_CHECK_ERR(coreset_select(x, 5, 2, 0, 4, 1, sel, &ns), "bank.coreset must be");
    TU_CHECK_ERR(coreset_select(x, 0, 2, 3, 4, 1, sel, &ns), "no features");
    TU_CHECK_ERR(coreset_greedy(x, 5, 2, NULL, 0, 9, 3, sel, &ns), "start point");
    x[3] = 1.0f / 0.0f;
    TU_CHECK_ERR(coreset_select(x, 5, 2, 3, 4, 1, sel, &ns), "row 1");
    x[3] = 0;
    /* from (0,0) the farthest is (5,5); then (1,1) at 2; then (1,0) and (0,1)
     * tie at 1 and the lower index wins */
    TU_CHECK(coreset_greedy(x, 5, 2, NULL, 0, 0, 4, sel, &ns) == SN_OK);
    TU_CHECK(sel[0] == 0 && sel[1] == 4 && sel[2] == 3 && sel[3] == 1);
}

/* The bank keeps full vectors; its file round-trips and is atomic. */
static void check_bank(void)
{
    long n = 500;
    int d = 20;
    float *x = random_x(n, d, 5);
    struct bank b, c;
    TU_CHECK(bank_build(x, n, d, 60, 8, 4, &b) == SN_OK && b.n == 60 && b.d == d);
    int same = 1;
    for (long i = 0; i < b.n; i++)
        same &= !memcmp(b.vec + i * d, x + b.source_index[i] * d, sizeof(float) * d);
    TU_CHECK(same);
    char path[4200];
    snprintf(path, sizeof path, "%s/bank.h5", tu_tmpdir("coreset"));
    TU_CHECK(bank_save(path, &b, "bank:\n  coreset: 60\n") == SN_OK);
    TU_CHECK(bank_load(path, &c) == SN_OK);
    TU_CHECK(c.n == 60 && c.d == d && c.n_source == n && c.T == 60 && c.proj_dim == 8);
    TU_CHECK(c.seed == 4 && !memcmp(c.vec, b.vec, sizeof(float) * 60 * d));
    TU_CHECK(!memcmp(c.source_index, b.source_index, sizeof(long) * 60));
    TU_CLOSE("bank norms", c.norms, b.norms, 60, 0, 0);
    char *attrs = bank_load_attrs(path);
    TU_CHECK(attrs && strstr(attrs, "coreset: 60"));
    sn_free(attrs);
    bank_free(&c);

    /* a file without the complete flag is refused */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    TU_CHECK(f >= 0 && H5Adelete(f, "complete") >= 0);
    H5Fclose(f);
    TU_CHECK_ERR(bank_load(path, &c), "incomplete");
    TU_CHECK_ERR(bank_load("/nonexistent/bank.h5", &c), "does not exist");
    TU_CHECK_ERR(bank_build(x, n, d, 0, 8, 4, &c), "bank.coreset");
    bank_free(&b);
    free(x);
    unlink(path);
    *strrchr(path, '/') = 0;
    rmdir(path);
}

int main(void)
{
    ref = tu_ref_path("bank.h5");
    if (!tu_ref_has(ref, "coreset/rand/sel")) tu_skip("no reference file %s", ref);
    const char *cases[] = {"rand", "dup", "ints"};
    for (int portable = 0; portable < 2; portable++) {
        setenv("SNARM_CORESET_PORTABLE", portable ? "1" : "0", 1);
        for (int i = 0; i < 3; i++)
            check_ref_case(cases[i]);
    }
    unsetenv("SNARM_CORESET_PORTABLE");
    check_determinism();
    check_plain_loop();
    check_edges();
    check_bank();
    return tu_finish("test_coreset");
}
