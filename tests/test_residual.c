/*
 * Inter residual, waypoint map, self references, intra residual and hybrid
 * residual against the brute-force reference (tests/ref_bank.py), with tied
 * cells, plus the hand-checked pooling and the error cases.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "coreset.h"
#include "residual.h"
#include "testutil.h"

static const char *ref;

static float *rd(const char *name, long *n)
{
    char key[128];
    snprintf(key, sizeof key, "res/%s", name);
    return tu_ref_read(ref, key, n);
}

static void check_pool(void)
{
    /* d = 3: concat = |u0| |u1| |u2| u0^2 u1^2 u2^2, pooled in pairs */
    float u[3] = {-1, 2, -3}, out[3], want[3] = {1.5f, 0.5f * (3 + 1), 0.5f * (4 + 9)};
    residual_pool(u, 3, out);
    TU_CLOSE("pool d=3", out, want, 3, 0, 0);
    float u4[4] = {1, -2, 3, -4}, o4[4], w4[4] = {1.5f, 3.5f, 2.5f, 12.5f};
    residual_pool(u4, 4, o4);
    TU_CLOSE("pool d=4", o4, w4, 4, 0, 0);
    residual_pool_form(u4, 4, 0, o4);
    float a4[4] = {1, 2, 3, 4};
    TU_CLOSE("abs form", o4, a4, 4, 0, 0);
}

/* The whole chain for one image, each stage against the reference. */
static void check_chain(void)
{
    long nb_el, M, nS_ref, n;
    float *bankv = rd("bank", &nb_el), *f = rd("f", &n);
    int k = (int)tu_ref_scalar(ref, "res/k");
    float *g_ref = rd("g", NULL), *R_ref = rd("R", NULL), *nd_ref = rd("nn_dist", &M);
    float *w = rd("w", NULL), *Q_ref = rd("Q", NULL), *Qs_ref = rd("Qstar", NULL);
    float *S_ref = rd("S", &nS_ref), *Rt_ref = rd("Rt", NULL), *nn_ref = rd("nn", NULL);
    float *H_ref = rd("H", NULL);
    float bias = (float)tu_ref_scalar(ref, "res/bias");
    double p = tu_ref_scalar(ref, "res/p");
    if (!bankv || !f || !H_ref || !S_ref || !nn_ref) return;
    int d = (int)(n / M);
    struct bank b;
    TU_CHECK(bank_from_rows(bankv, nb_el / d, d, &b) == SN_OK);

    /* inter residual and the raw match */
    float *R = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    float *nd = malloc(sizeof(float) * M), *R2 = malloc(sizeof(float) * n);
    TU_CHECK(residual_inter_ex(&b, f, (int)M, d, k, 1, R, g, nd) == SN_OK);
    TU_CHECK(residual_inter(&b, f, (int)M, d, k, R2) == SN_OK);
    TU_CLOSE("g", g, g_ref, n, 1e-6, 1e-5);
    TU_CLOSE("R", R, R_ref, n, 1e-6, 1e-5);
    TU_CLOSE("R (plain) = R (ex)", R2, R, n, 0, 0);
    TU_CLOSE("nn_dist", nd, nd_ref, M, 1e-6, 1e-5);

    /* waypoint map and the self references it selects */
    float *Q = malloc(sizeof(float) * M), *Qs = malloc(sizeof(float) * M);
    residual_waypoint(R, (int)M, d, w, bias, Q, Qs);
    TU_CLOSE("Q", Q, Q_ref, M, 1e-6, 1e-5);
    TU_CLOSE("Qstar", Qs, Qs_ref, M, 1e-6, 1e-5);
    int *S = malloc(sizeof(int) * M), nS = 0, same = 1;
    TU_CHECK(residual_self_ref(Qs, (int)M, p, S, &nS) == SN_OK && nS == nS_ref);
    for (int a = 0; a < nS && a < nS_ref; a++)
        same &= S[a] == (int)S_ref[a];
    TU_CHECK_MSG(same, "self-reference set differs from the reference");

    /* intra residual with self-exclusion (cells 4, 10, 30 are identical) */
    float *Rt = malloc(sizeof(float) * n), *H = malloc(sizeof(float) * 2 * n);
    int *nn = malloc(sizeof(int) * M);
    TU_CHECK(residual_intra_ex(f, (int)M, d, S, nS, 1, Rt, nn) == SN_OK);
    same = 1;
    for (long i = 0; i < M; i++)
        same &= nn[i] == (int)nn_ref[i] && nn[i] != i;
    TU_CHECK_MSG(same, "intra matches differ from the reference");
    TU_CLOSE("Rt", Rt, Rt_ref, n, 1e-6, 1e-5);
    residual_hybrid(R, Rt, (int)M, d, H);
    TU_CLOSE("H", H, H_ref, 2 * n, 1e-6, 1e-5);

    /* errors: a bank of another dimension, too few self references */
    TU_CHECK_ERR(residual_inter(&b, f, (int)M, d - 1, k, R), "16-dim");
    TU_CHECK_ERR(residual_intra(f, (int)M, d, S, 1, Rt), "at least 2");
    int bad[2] = {3, 3};
    TU_CHECK_ERR(residual_intra(f, (int)M, d, bad, 2, Rt), "strictly increasing");
    bank_free(&b);
    free(bankv), free(f), free(g_ref), free(R_ref), free(nd_ref), free(w), free(Q_ref);
    free(Qs_ref), free(S_ref), free(Rt_ref), free(nn_ref), free(H_ref);
    free(R), free(g), free(nd), free(R2), free(Q), free(Qs), free(S), free(Rt), free(H);
    free(nn);
}

static void check_self_ref_ties(void)
{
    long M, nS_ref;
    float *qs = tu_ref_read(ref, "selfref/qstar", &M);
    float *S_ref = tu_ref_read(ref, "selfref/S", &nS_ref);
    double p = tu_ref_scalar(ref, "selfref/p");
    if (!qs || !S_ref) return;
    int S[256], nS = 0, same = 1;
    TU_CHECK(residual_self_ref(qs, (int)M, p, S, &nS) == SN_OK && nS == nS_ref);
    for (int a = 0; a < nS && a < nS_ref; a++)
        same &= S[a] == (int)S_ref[a];
    TU_CHECK_MSG(same, "self references with ties differ from the reference");
    TU_CHECK(residual_self_ref_count(2401, 75) == 1801);
    TU_CHECK_ERR(residual_self_ref(qs, (int)M, 0, S, &nS), "self_ref_percent");
    TU_CHECK_ERR(residual_self_ref(qs, 1, 10, S, &nS), "rounds to no cell");
    qs[2] = NAN;
    TU_CHECK_ERR(residual_self_ref(qs, (int)M, p, S, &nS), "cell 2");
    free(qs), free(S_ref);
}

int main(void)
{
    ref = tu_ref_path("bank.h5");
    if (!tu_ref_has(ref, "res/H")) tu_skip("no reference file %s", ref);
    check_pool();
    check_chain();
    check_self_ref_ties();
    return tu_finish("test_residual");
}
