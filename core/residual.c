#include "residual.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "knn.h"

void residual_pool(const float *u, int d, float *out)
{
    /* output c averages entries 2c and 2c+1 of concat(|u|, u^2) */
    for (int c = 0; c < d; c++) {
        int a = 2 * c, b = 2 * c + 1;
        float va = a < d ? fabsf(u[a]) : u[a - d] * u[a - d];
        float vb = b < d ? fabsf(u[b]) : u[b - d] * u[b - d];
        out[c] = 0.5f * (va + vb);
    }
}

void residual_pool_form(const float *u, int d, int pow2, float *out)
{
    if (pow2) {
        residual_pool(u, d, out);
        return;
    }
    for (int c = 0; c < d; c++)
        out[c] = fabsf(u[c]);
}

int residual_inter(const struct bank *b, const float *f, int M, int d, int k, float *R)
{
    return residual_inter_ex(b, f, M, d, k, 1, R, NULL, NULL);
}

/* Mean of the keff bank rows listed in idx. */
static void mean_rows(const struct bank *b, const int *idx, int keff, float *g)
{
    int d = b->d;
    memcpy(g, b->vec + (long)idx[0] * d, sizeof(float) * (size_t)d);
    for (int a = 1; a < keff; a++) {
        const float *v = b->vec + (long)idx[a] * d;
        for (int c = 0; c < d; c++)
            g[c] += v[c];
    }
    float s = 1.0f / (float)keff;
    for (int c = 0; c < d; c++)
        g[c] *= s;
}

int residual_inter_ex(const struct bank *b, const float *f, int M, int d, int k, int pow2,
                      float *R, float *g, float *nn_dist)
{
    if (b->d != d)
        return sn_error("inter matching: the memory bank holds %d-dim features but "
                        "the image has %d-dim features",
                        b->d, d);

    /* k nearest bank vectors of every cell */
    int *idx = sn_malloc(sizeof(int) * (size_t)M * k);
    float *dist2 = sn_malloc(sizeof(float) * (size_t)M * k);
    int st = knn_search(b->vec, b->norms, b->n, d, f, M, k, idx, dist2);
    int keff = knn_effective_k(b->n, k);

    /* reference g_i, residual u_i = g_i - f_i, pooled contrast */
    if (st == SN_OK) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++) {
            float gi[d], ui[d];
            mean_rows(b, idx + (long)i * k, keff, gi);
            for (int c = 0; c < d; c++)
                ui[c] = gi[c] - f[(long)i * d + c];
            if (R) residual_pool_form(ui, d, pow2, R + (long)i * d);
            if (g) memcpy(g + (long)i * d, gi, sizeof(float) * (size_t)d);
            if (nn_dist) nn_dist[i] = sqrtf(dist2[(long)i * k]);
        }
    }
    sn_free(dist2);
    sn_free(idx);
    return st;
}

void residual_waypoint(const float *R, int M, int d, const float *w, float bias, float *Q,
                       float *Qstar)
{
    for (int i = 0; i < M; i++) {
        const float *r = R + (long)i * d;
        float z = bias, s = 0;
        for (int c = 0; c < d; c++) {
            z += w[c] * r[c];
            s += r[c];
        }
        float q = 1.0f / (1.0f + expf(-z));
        if (Q) Q[i] = q;
        Qstar[i] = q + s / (float)d;
    }
}

int residual_self_ref_count(int M, double p_percent)
{
    /* round half up, so that 2401 cells at 75 % give 1801 */
    return (int)floor((double)M * p_percent / 100.0 + 0.5);
}

struct cell_value {
    float v;
    int i;
};

static int cmp_cell_value(const void *a, const void *b)
{
    const struct cell_value *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int residual_self_ref(const float *qstar, int M, double p_percent, int *S, int *nS)
{
    if (!(p_percent > 0 && p_percent <= 100))
        return sn_error("self references: matching.self_ref_percent must be in "
                        "(0, 100], got %g",
                        p_percent);
    int n = residual_self_ref_count(M, p_percent);
    if (n < 1)
        return sn_error("self references: %g %% of %d cells rounds to no cell", p_percent,
                        M);
    for (int i = 0; i < M; i++)
        if (!isfinite(qstar[i]))
            return sn_error("self references: waypoint map value of cell %d is not "
                            "finite",
                            i);

    /* the n lowest waypoint values, ties by cell index, then in cell order */
    struct cell_value *cv = sn_malloc(sizeof(*cv) * (size_t)M);
    for (int i = 0; i < M; i++)
        cv[i] = (struct cell_value){qstar[i], i};
    qsort(cv, (size_t)M, sizeof(*cv), cmp_cell_value);
    for (int a = 0; a < n; a++)
        S[a] = cv[a].i;
    qsort(S, (size_t)n, sizeof(int), cmp_int);
    *nS = n;
    sn_free(cv);
    return SN_OK;
}

int residual_intra(const float *f, int M, int d, const int *S, int nS, float *Rt)
{
    return residual_intra_ex(f, M, d, S, nS, 1, Rt, NULL);
}

static int check_self_refs(const int *S, int nS, int M)
{
    if (nS < 2)
        return sn_error("intra matching needs at least 2 self-reference cells "
                        "(got %d); raise matching.self_ref_percent",
                        nS);
    for (int a = 0; a < nS; a++)
        if (S[a] < 0 || S[a] >= M || (a > 0 && S[a] <= S[a - 1]))
            return sn_error("intra matching: self-reference list is not strictly "
                            "increasing cell indices in [0, %d) at entry %d",
                            M, a);
    return SN_OK;
}

int residual_intra_ex(const float *f, int M, int d, const int *S, int nS, int pow2,
                      float *Rt, int *nn)
{
    int st = check_self_refs(S, nS, M);
    if (st != SN_OK) return st;

    /* the trusted cells as a small bank */
    float *ref = sn_aligned(sizeof(float) * (size_t)nS * d);
    for (int a = 0; a < nS; a++)
        memcpy(ref + (long)a * d, f + (long)S[a] * d, sizeof(float) * (size_t)d);

    /* two nearest trusted cells: the nearest that is not the cell itself */
    int *idx = sn_malloc(sizeof(int) * (size_t)M * 2);
    float *dist2 = sn_malloc(sizeof(float) * (size_t)M * 2);
    st = knn_search(ref, NULL, nS, d, f, M, 2, idx, dist2);
    if (st == SN_OK) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++) {
            int a = S[idx[2 * i]] == i ? idx[2 * i + 1] : idx[2 * i];
            int j = S[a];
            float u[d];
            for (int c = 0; c < d; c++)
                u[c] = f[(long)j * d + c] - f[(long)i * d + c];
            residual_pool_form(u, d, pow2, Rt + (long)i * d);
            if (nn) nn[i] = j;
        }
    }
    sn_free(dist2);
    sn_free(idx);
    sn_free(ref);
    return st;
}

void residual_hybrid(const float *R, const float *Rt, int M, int d, float *H)
{
    for (int i = 0; i < M; i++) {
        memcpy(H + (long)i * 2 * d, R + (long)i * d, sizeof(float) * (size_t)d);
        memcpy(H + (long)i * 2 * d + d, Rt + (long)i * d, sizeof(float) * (size_t)d);
    }
}
