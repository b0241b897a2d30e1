/*
 * residual.h - inter and intra matching, the waypoint map and the hybrid
 * residual of one image (SPEC section 2, steps 6-10).
 *
 * An image has M cells (M = grid^2, row-major) with features f (M x d).
 *   inter residual (Eq. 4, 5, 14): g_i = mean of the k nearest bank vectors
 *     of f_i, u_i = g_i - f_i, R_i = pool_d(concat(|u_i|, u_i^2));
 *   waypoint map (Eq. 6): Q = sigmoid(w . R_i + b), Q*_i = Q_i + mean_c R_ic;
 *   self references (Eq. 7): S = the round(M p / 100) cells of lowest Q*,
 *     ties by the lower index, listed in ascending cell order;
 *   intra residual (Eq. 8): j(i) = the nearest f_j with j in S, j != i (ties
 *     by the lower j), Rt_i = pool_d(concat(|f_j - f_i|, (f_j - f_i)^2));
 *   hybrid residual (Eq. 9): H_i = concat(R_i, Rt_i), 2d channels.
 * pool_d is adaptive average pooling of the 2d channels back to d: output c
 * averages inputs floor(2cd/d) .. ceil(2(c+1)d/d) - 1, i.e. inputs 2c, 2c+1.
 *
 * Everything here is a pure function of its inputs (the training path adds
 * its feature jitter to f and R itself). Arrays are row-major, one row per
 * cell. Every function returns SN_OK or SN_EUSER (non-finite features, a
 * bank of another dimension, too few self references).
 */
#ifndef SNARM_RESIDUAL_H
#define SNARM_RESIDUAL_H

#include "coreset.h"

/* pool_d(concat(|u|, u^2)) for one d-vector u; out has d entries. */
void residual_pool(const float *u, int d, float *out);
/* pow2 = 1: residual_pool; pow2 = 0 (the ablation matching.residual_pow2 = 0,
 * theta = 1 only): |u| as it is, d channels. */
void residual_pool_form(const float *u, int d, int pow2, float *out);

/* Inter residual R (M x d) with the k nearest bank vectors averaged. */
int residual_inter(const struct bank *b, const float *f, int M, int d, int k, float *R);

/*
 * The same, also returning the raw match: g (M x d, may be NULL) the mean of
 * the k nearest bank vectors, nn_dist (M, may be NULL) the L2 distance (not
 * squared) to the nearest bank vector, the PatchCore cell score. pow2 = 0
 * gives the |u| ablation form. R may be NULL when only the match is wanted.
 */
int residual_inter_ex(const struct bank *b, const float *f, int M, int d, int k, int pow2,
                      float *R, float *g, float *nn_dist);

/*
 * Waypoint map: Q_i = sigmoid(sum_c w_c R_ic + bias) (the navigator's
 * conv1x1, d -> 1), Qstar_i = Q_i + mean_c R_ic. Q may be NULL.
 */
void residual_waypoint(const float *R, int M, int d, const float *w, float bias, float *Q,
                       float *Qstar);

/* Number of self references for M cells at p percent: round(M p / 100). */
int residual_self_ref_count(int M, double p_percent);
/* Self-reference set S from the waypoint map (S has room for M entries). */
int residual_self_ref(const float *qstar, int M, double p_percent, int *S, int *nS);

/* Intra residual Rt (M x d); needs nS >= 2 so every cell has a partner. */
int residual_intra(const float *f, int M, int d, const int *S, int nS, float *Rt);
/* The same with the matched cell j(i) of each cell (nn may be NULL) and the
 * pow2 ablation switch. */
int residual_intra_ex(const float *f, int M, int d, const int *S, int nS, int pow2,
                      float *Rt, int *nn);

/* Hybrid residual H (M x 2d): each row is R_i followed by Rt_i. */
void residual_hybrid(const float *R, const float *Rt, int M, int d, float *H);

#endif
