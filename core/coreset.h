/*
 * coreset.h - greedy k-centre coreset selection and the memory bank.
 *
 * The memory bank is the set of training patch features that every test
 * patch is matched against (SPEC section 3). All training features are
 * pooled into one raw set and reduced by greedy k-centre selection:
 *   1. project every feature to proj_dim dimensions with a fixed Gaussian
 *      matrix drawn from the seed (entries N(0, 1/proj_dim));
 *   2. start from one point drawn from the seed; it is the first selected;
 *   3. repeatedly add the point farthest (L2, in the projection) from the
 *      selected set, ties broken by the lower index, keeping every point's
 *      distance to its nearest selected point up to date. Distances are
 *      exact sums in double over the float projection, so near-ties that
 *      float sums cannot resolve (they occur at 10^5 points) still go the
 *      way a double-precision reference loop takes them.
 * The same seed gives the same selection. T >= n keeps every feature
 * (indices 0..n-1, no projection); T == 0 or n == 0 is a user error.
 *
 * The bank keeps the full d-dimensional features of the selected points (not
 * the projections), their squared norms for the kNN search, and the index of
 * each in the raw set. It is saved to HDF5 with its attributes, atomically.
 */
#ifndef SNARM_CORESET_H
#define SNARM_CORESET_H

#include <stdint.h>

/* The projection coreset_select uses: proj_dim x d, row-major. */
void coreset_projection(int d, int proj_dim, uint64_t seed, float *proj);
/* The starting point coreset_select uses for n points. */
long coreset_start(long n, uint64_t seed);

/*
 * Greedy k-centre on x (n x d). proj: proj_dim x d, or NULL to run on x
 * itself (proj_dim ignored). start: the first point. Writes min(T, n)
 * indices in selection order to selected. The building block of
 * coreset_select, public so tests can feed a reference projection.
 */
int coreset_greedy(const float *x, long n, int d, const float *proj, int proj_dim,
                   long start, long T, long *selected, long *n_selected);

/*
 * Select T of the n points of x (n x d) as above; selected (capacity
 * min(T, n)) receives the indices in selection order, *n_selected their count.
 */
int coreset_select(const float *x, long n, int d, long T, int proj_dim, uint64_t seed,
                   long *selected, long *n_selected);

/* The memory bank. */
struct bank {
    long n;             /* vectors kept */
    int d;              /* feature dimension */
    float *vec;         /* n x d, the full features */
    float *norms;       /* n: squared L2 norms of vec rows */
    long *source_index; /* n: row of each vector in the raw feature set */
    long n_source;      /* rows in the raw set it was selected from */
    long T;             /* requested size */
    int proj_dim;       /* projection used for the selection */
    uint64_t seed;      /* seed of projection and start point */
};

/* Select and copy the bank from feats (n x d). Release with bank_free. */
int bank_build(const float *feats, long n, int d, long T, int proj_dim, uint64_t seed,
               struct bank *out);
/* A bank over the given rows as they are (no selection); copies. */
int bank_from_rows(const float *vec, long n, int d, struct bank *out);
/*
 * Save to HDF5: datasets "vectors" (n x d float32, chunked, compressed) and
 * "source_index" (n int64); attributes n, d, n_source, T, proj_dim, seed,
 * version, config (attrs_yaml, may be NULL) and complete. Written to a
 * temporary name and renamed into place.
 */
int bank_save(const char *path, const struct bank *b, const char *attrs_yaml);
/* Load a complete bank file; a partial or foreign file is a user error. */
int bank_load(const char *path, struct bank *b);
/* The config attribute of a bank file (sn_free it), or NULL with sn_error. */
char *bank_load_attrs(const char *path);
void bank_free(struct bank *b);

#endif
