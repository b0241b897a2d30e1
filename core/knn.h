/*
 * knn.h - exact k-nearest-neighbour search by squared L2 distance.
 *
 * The search runs through the GEMM form of the distance,
 *     ||q - b||^2 = ||q||^2 - 2 q.b + ||b||^2,
 * one cblas_sgemm per (query tile, bank block) pair, with the bank norms
 * computed once (knn_norms) and the bank walked in blocks whose distance tile
 * stays in cache while it is scanned. The GEMM form loses digits when q and b
 * are close, so it only shortlists: the few best candidates of every query
 * are re-scored with the direct sum of squared differences (accumulated in
 * double), and those exact values decide the order and are returned.
 *
 * Order: ascending distance, ties broken by the lower bank index.
 * k larger than the bank: only nb neighbours exist; the first nb entries of
 * each row are filled, the rest get index -1 and distance +inf, and a
 * warning says so once per call. Rows of idx/dist2 always have stride k.
 * NaN or infinite values in the queries or the bank are a user error that
 * names the row.
 */
#ifndef SNARM_KNN_H
#define SNARM_KNN_H

/* Squared L2 norm of each of the n rows of x (n x d, row-major). */
void knn_norms(const float *x, long n, int d, float *norms);

/* The number of neighbours a search with k over nb vectors returns. */
int knn_effective_k(long nb, int k);

/*
 * Top-k bank rows for each query. bank: nb x d, bank_norms: knn_norms of the
 * bank (NULL: computed here), q: nq x d. idx and dist2: nq x k, row-major;
 * dist2 is the squared distance (exact re-score, never negative).
 * Returns SN_OK, or SN_EUSER for non-finite input, k < 1 or an empty bank.
 */
int knn_search(const float *bank, const float *bank_norms, long nb, int d, const float *q,
               long nq, int k, int *idx, float *dist2);

/* Check that n x d values are finite; on failure names what (e.g. "bank")
 * and the row. Returns SN_OK or SN_EUSER. */
int knn_check_finite(const float *x, long n, int d, const char *what);

#endif
