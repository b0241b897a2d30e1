/*
 * decoder_pass.c - the decoder's forward passes (training and prediction),
 * its focal losses and its backward pass (see decoder.h for the model).
 *
 * Sequences are stacked scan-major: sequence q = s * B + i is image i read
 * in scan order s, so the heads of scan s see B consecutive maps and every
 * SMB runs one convolution and one mixer call over all scans x B sequences.
 */
#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder.h"
#include "decoder_internal.h"
#include "kernels/layers.h"
#include "residual.h"

/* ------------------------------------------------------------------------ */
/* Small helpers over sequences. */

static float *seq_at(float *base, int q, const struct decoder_dims *dd)
{
    return base + (size_t)q * dd->M * dd->e;
}

/* y = a + b over n floats. */
static void vec_add(float *y, const float *a, const float *b, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void vec_acc(float *y, const float *a, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        y[i] += a[i];
}

/* Step profile: charge the time since *t0 to a phase, restart the clock. */
static void ph_add(struct decoder *dec, int bwd, int phase, double *t0)
{
    if (!dec->profile) return;
    double t = sn_now();
    (bwd ? dec->phase_bwd : dec->phase_fwd)[phase] += t - *t0;
    *t0 = t;
}

/* ------------------------------------------------------------------------ */
/* Matching: waypoint map, self references, intra and hybrid residuals. */

/* The cells the mixer visits in each sequence: the scan positions whose
 * cell is outside S (all positions without navigation), in scan order. */
static void visit_lists(struct decoder *dec)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const int B = A->B, M = dd->M, nv = dd->n_visit;
    uint8_t *in_s = sn_malloc((size_t)M);

    for (int i = 0; i < B; i++) {
        memset(in_s, 0, (size_t)M);
        if (dd->navigate)
            for (int a = 0; a < dd->n_self; a++)
                in_s[A->S[(long)i * dd->n_self + a]] = 1;
        for (int s = 0; s < dd->scans; s++) {
            int q = s * B + i, cnt = 0;
            int *sel = A->sel + (long)q * nv;
            for (int t = 0; t < M; t++)
                if (!in_s[A->perm[s][t]]) sel[cnt++] = t;
            SN_ASSERT(cnt == nv);
            A->len[q] = nv;
        }
    }
    sn_free(in_s);
}

static int match_forward(struct decoder *dec, const float *f, const float *R, int B)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const long M = dd->M, d = dd->d;
    int st = SN_OK;

    /* Waypoint map and self references of each image (Eq. 6, 7). */
    for (int i = 0; i < B && st == SN_OK; i++) {
        int nS = 0;
        residual_waypoint(R + i * M * d, (int)M, (int)d, dec->w.nav_w, dec->w.nav_b[0],
                          A->Q + i * M, A->Qstar + i * M);
        st = residual_self_ref(A->Qstar + i * M, (int)M, dd->p_percent,
                               A->S + (long)i * dd->n_self, &nS);
        SN_ASSERT(st != SN_OK || nS == dd->n_self);
    }

    /* Intra residuals against the self references, the hybrid residual. */
    A->R = R;
    A->H = R;
    for (int i = 0; dd->hybrid && i < B && st == SN_OK; i++) {
        st = residual_intra_ex(f + i * M * d, (int)M, (int)d, A->S + (long)i * dd->n_self,
                               dd->n_self, dd->pow2, A->Rt + i * M * d, NULL);
        residual_hybrid(R + i * M * d, A->Rt + i * M * d, (int)M, (int)d,
                        A->Hbuf + i * M * dd->in_ch);
        A->H = A->Hbuf;
    }
    if (st != SN_OK) return st;
    visit_lists(dec);
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* BatchNorm in train mode, synchronised over ranks when a reduce hook is
 * set: the batch statistics and the two channel sums of the backward pass
 * are summed over every rank's cells. */

/* acc[k] = sum_i (x[i][k] - center[k])^pow, pow 1 or 2, rows in order. */
static void bn_colsum(double *acc, const float *x, const double *center, long n, int c,
                      int pow)
{
    for (int k = 0; k < c; k++)
        acc[k] = 0.0;
    for (long i = 0; i < n; i++) {
        const float *row = x + i * c;
        if (pow == 1)
            for (int k = 0; k < c; k++)
                acc[k] += row[k];
        else
            for (int k = 0; k < c; k++) {
                double v = row[k] - center[k];
                acc[k] += v * v;
            }
    }
}

/* Sum c doubles over ranks (through float, the hook's type). */
static void bn_reduce(struct decoder *dec, double *v, int c)
{
    if (!dec->reduce) return;
    float *buf = sn_malloc(sizeof(float) * (size_t)c);
    for (int k = 0; k < c; k++)
        buf[k] = (float)v[k];
    dec->reduce(buf, c, dec->reduce_ctx);
    for (int k = 0; k < c; k++)
        v[k] = buf[k];
    sn_free(buf);
}

static double bn_count(const struct decoder *dec, long n)
{
    return dec->reduce ? (double)dec->batch_global * dec->dims.M : (double)n;
}

static void bn_forward_train(struct decoder *dec, float *y, float *mean, float *rstd,
                             const float *x, const float *gamma, const float *beta,
                             float *run_mean, float *run_var, long n, int c)
{
    double *s1 = sn_malloc(sizeof(double) * 2 * (size_t)c), *s2 = s1 + c;
    const double N = bn_count(dec, n), mom = LAYERS_BN_MOMENTUM;

    /* Batch mean, then the centred (biased) variance. */
    bn_colsum(s1, x, NULL, n, c, 1);
    bn_reduce(dec, s1, c);
    for (int k = 0; k < c; k++)
        s1[k] /= N;
    bn_colsum(s2, x, s1, n, c, 2);
    bn_reduce(dec, s2, c);
    for (int k = 0; k < c; k++) {
        double var = s2[k] / N;
        mean[k] = (float)s1[k];
        rstd[k] = (float)(1.0 / sqrt(var + LAYERS_NORM_EPS));
        /* Running statistics as PyTorch: the unbiased variance. */
        run_mean[k] = (float)((1.0 - mom) * run_mean[k] + mom * s1[k]);
        run_var[k] = (float)((1.0 - mom) * run_var[k] + mom * var * N / SN_MAX(N - 1, 1));
    }
    sn_free(s1);

#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            y[i * c + k] = (x[i * c + k] - mean[k]) * rstd[k] * gamma[k] + beta[k];
}

/* dx may equal dy. dgamma, dbeta accumulate this rank's share only. */
static void bn_backward(struct decoder *dec, float *dx, float *dgamma, float *dbeta,
                        const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *gamma, long n, int c)
{
    double *sdy = sn_calloc(2 * (size_t)c, sizeof(double)), *sdx = sdy + c;
    const double N = bn_count(dec, n);

    /* Channel sums of dy and dy * xhat. */
    for (long i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            double g = dy[i * c + k];
            sdy[k] += g;
            sdx[k] += g * (x[i * c + k] - mean[k]) * rstd[k];
        }
    for (int k = 0; k < c; k++) {
        dgamma[k] += (float)sdx[k];
        dbeta[k] += (float)sdy[k];
    }
    bn_reduce(dec, sdy, 2 * c);

    /* dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)). */
    float *a = sn_malloc(sizeof(float) * 3 * (size_t)c), *m1 = a + c, *m2 = a + 2 * c;
    for (int k = 0; k < c; k++) {
        a[k] = gamma[k] * rstd[k];
        m1[k] = (float)(sdy[k] / N);
        m2[k] = (float)(sdx[k] / N);
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            float xh = (x[i * c + k] - mean[k]) * rstd[k];
            dx[i * c + k] = a[k] * (dy[i * c + k] - m1[k] - xh * m2[k]);
        }
    sn_free(a);
    sn_free(sdy);
}

/* ------------------------------------------------------------------------ */
/* The SNMM of one branch. */

/* Gather the visited cells of every sequence into the packed buffer. */
static void pack_visited(float *pk, float *seq, const struct decoder_acts *A,
                         const struct decoder_dims *dd, int nb)
{
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++)
        cells_gather(pk + (size_t)q * dd->n_visit * dd->e, seq_at(seq, q, dd),
                     A->sel + (long)q * dd->n_visit, dd->n_visit, dd->e);
}

static void unpack_visited(float *seq, const float *pk, const struct decoder_acts *A,
                           const struct decoder_dims *dd, int nb)
{
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++)
        cells_scatter(seq_at(seq, q, dd), pk + (size_t)q * dd->n_visit * dd->e,
                      A->sel + (long)q * dd->n_visit, dd->n_visit, dd->e);
}

/* One SMB: x_k = RMSNorm(r_k); h = conv3x3(x_k) with the visited cells
 * replaced by the mixer's output on them. */
static void smb_forward(struct decoder *dec, const struct decoder_smb_w *w, int k,
                        struct mamba_cache *mc)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const int nb = dd->scans * A->B;
    double t0 = sn_now();

    rmsnorm_forward(A->xn[k], A->rstd[k], A->r[k], w->norm_w, (long)nb * dd->M, dd->e,
                    LAYERS_NORM_EPS);
    ph_add(dec, 0, DECODER_PH_NORMS, &t0);
    dconv_forward(A->h, A->xn[k], w->conv_w, w->conv_b, nb, dd->e, dd->e, &A->plan_smb,
                  A->conv_work, A->conv_threads);
    ph_add(dec, 0, DECODER_PH_SMB_CONV, &t0);

    /* Self-navigation: the mixer scans only the suspicious cells. */
    pack_visited(A->pk_in, A->h, A, dd, nb);
    mamba_forward(&dd->mx, &w->mx, A->pk_in, nb, A->len, A->pk_out, mc);
    unpack_visited(A->h, A->pk_out, A, dd, nb);
    ph_add(dec, 0, DECODER_PH_MIXER, &t0);
}

/* z = dropout(h) + r_last; each sequence draws its mask from the stream of
 * (noise seed, global image index, scan). */
static void dropout_residual(struct decoder *dec, int train, uint64_t seed, long first)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const int B = A->B, nb = dd->scans * B;
    const long n = (long)dd->M * dd->e;
    const float *r = A->r[dd->blocks - 1];

    if (!train || dd->dropout <= 0.0f) {
        vec_add(A->z, A->h, r, nb * n);
        memset(A->drop, 1, (size_t)(nb * n));
        return;
    }
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++) {
        struct rng_state rng;
        int s = q / B, i = q % B;
        rng_seed(&rng, seed, (uint64_t)(first + i) * DECODER_MAX_SCANS + (uint64_t)s);
        dropout_forward(A->z + q * n, A->drop + q * n, A->h + q * n, n, dd->dropout, 1,
                        &rng);
    }
    vec_acc(A->z, r, nb * n);
}

static void branch_forward(struct decoder *dec, int b, int train, uint64_t seed,
                           long first)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const struct decoder_branch_w *w = &dec->w.br[b];
    const int B = A->B, nb = dd->scans * B, M = dd->M, e = dd->e;
    const long seq_n = (long)nb * M * e;
    double t0 = sn_now();

    /* Embedding of the hybrid residual, stacked in the scan orders. */
    conv1x1_forward(A->emb, A->H, w->embed_w, w->embed_b, (long)B * M, dd->in_ch, e);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++)
        cells_gather(seq_at(A->r[0], q, dd), A->emb + (size_t)(q % B) * M * e,
                     A->perm[q / B], M, e);
    ph_add(dec, 0, DECODER_PH_EMBED, &t0);

    /* The SMBs on the residual stream r_k = h_{k-1} + r_{k-1}. */
    for (int k = 0; k < dd->blocks; k++) {
        if (k > 0) vec_add(A->r[k], A->h, A->r[k - 1], seq_n);
        ph_add(dec, 0, DECODER_PH_NORMS, &t0);
        smb_forward(dec, &w->smb[k], k, A->mc[train ? k : 0]);
        t0 = sn_now();
    }

    /* LayerNorm(dropout(h) + r), then back to row-major order. */
    dropout_residual(dec, train, seed, first);
    layernorm_forward(A->o, A->ln_mean, A->ln_rstd, A->z, w->ln_w, w->ln_b, (long)nb * M,
                      e, LAYERS_NORM_EPS);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++)
        cells_gather(seq_at(A->o_rm, q, dd), seq_at(A->o, q, dd), A->inv[q / B], M, e);
    ph_add(dec, 0, DECODER_PH_NORMS, &t0);
}

/* ------------------------------------------------------------------------ */
/* The multi-view decoder heads. */

static void head_forward(struct decoder *dec, int b, int s, int train)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const struct decoder_head_w *h = &dec->w.br[b].head[s];
    const int B = A->B, G = dd->grid, e = dd->e;
    const long n = (long)B * dd->M;
    double t0 = sn_now();

    /* Dilated conv3x3, BatchNorm, ReLU. */
    dconv_forward(A->a[s], seq_at(A->o_rm, s * B, dd), h->conv_w, h->conv_b, B, e, e,
                  &A->plan_head[b], A->conv_work, A->conv_threads);
    ph_add(dec, 0, DECODER_PH_HEAD_CONV, &t0);
    if (train)
        bn_forward_train(dec, A->y[s], A->bn_mean[s], A->bn_rstd[s], A->a[s], h->bn_w,
                         h->bn_b, dec->bn_mean[b][s], dec->bn_var[b][s], n, e);
    else
        batchnorm_forward_eval(A->y[s], A->a[s], h->bn_w, h->bn_b, dec->bn_mean[b][s],
                               dec->bn_var[b][s], n, e, LAYERS_NORM_EPS);
    relu_forward(A->y[s], A->y[s], n * e);

    /* conv1x1 to one logit per cell, up-sampled to the output size. */
    conv1x1_forward(A->logit[s], A->y[s], h->out_w, h->out_b, n, e, 1);
    upsample_bilinear_forward(A->up[s], A->logit[s], B, G, G, dd->out, dd->out, 1,
                              UPSAMPLE_ALIGN_CORNERS);
    ph_add(dec, 0, DECODER_PH_HEAD_REST, &t0);
}

/* ------------------------------------------------------------------------ */
/* Training forward and loss. */

int decoder_forward_train(struct decoder *dec, const float *f, const float *R, int B,
                          int branch, uint64_t noise_seed, long first)
{
    const struct decoder_dims *dd = &dec->dims;
    SN_ASSERT(branch >= 0 && branch < dd->branches);
    SN_ASSERT(dec->acts && dec->acts->train && B >= 1 && B <= dec->acts->max_batch);
    struct decoder_acts *A = dec->acts;

    A->mode = DECODER_MODE_NONE;
    A->B = B;
    A->branch = branch;
    double t0 = sn_now();
    int st = match_forward(dec, f, R, B);
    if (st != SN_OK) return st;

    /* Navigator map at the output size, then the active branch's heads. */
    upsample_bilinear_forward(A->nav_up, A->Q, B, dd->grid, dd->grid, dd->out, dd->out, 1,
                              UPSAMPLE_ALIGN_CORNERS);
    ph_add(dec, 0, DECODER_PH_MATCH, &t0);
    branch_forward(dec, branch, 1, noise_seed, first);
    for (int s = 0; s < dd->scans; s++)
        head_forward(dec, branch, s, 1);
    A->mode = DECODER_MODE_TRAIN;
    return SN_OK;
}

void decoder_loss(struct decoder *dec, const uint8_t *mask, float weight,
                  struct decoder_loss *loss)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const struct decoder_focal *fc = &dec->focal;
    SN_ASSERT(A && A->mode == DECODER_MODE_TRAIN);
    const long n = (long)A->B * dd->out * dd->out;
    double t0 = sn_now();

    for (long i = 0; i < n; i++)
        A->target[i] = mask[i] ? 1.0f : 0.0f;

    /* Eq. 12: the navigator term plus the mean of the scan heads' terms. */
    loss->nav = focal_loss_prob(A->nav_up, A->target, n, fc->nav_alpha, fc->nav_gamma,
                                A->d_nav_up, weight);
    double head = 0.0;
    for (int s = 0; s < dd->scans; s++)
        head += focal_loss_logit(A->up[s], A->target, n, fc->head_alpha, fc->head_gamma,
                                 A->d_up[s], weight / (float)dd->scans);
    loss->head = head / dd->scans;
    ph_add(dec, 0, DECODER_PH_LOSS, &t0);
}

/* ------------------------------------------------------------------------ */
/* Backward pass. */

/* Head s of branch b; writes the gradient of its input map into g_x. */
static void head_backward(struct decoder *dec, int b, int s, float *g_x)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const struct decoder_head_w *w = &dec->w.br[b].head[s];
    struct decoder_head_w *g = &dec->g.br[b].head[s];
    const int B = A->B, G = dd->grid, e = dd->e;
    const long n = (long)B * dd->M;
    double t0 = sn_now();

    /* Up-sampling and conv1x1 back to the ReLU output. */
    upsample_bilinear_backward(A->g_small, A->d_up[s], B, G, G, dd->out, dd->out, 1,
                               UPSAMPLE_ALIGN_CORNERS);
    conv1x1_backward(A->g_y, g->out_w, g->out_b, A->g_small, A->y[s], w->out_w, n, e, 1);

    /* ReLU, BatchNorm, dilated conv3x3. */
    relu_backward(A->g_y, A->g_y, A->y[s], n * e);
    bn_backward(dec, A->g_y, g->bn_w, g->bn_b, A->g_y, A->a[s], A->bn_mean[s],
                A->bn_rstd[s], w->bn_w, n, e);
    ph_add(dec, 1, DECODER_PH_HEAD_REST, &t0);
    dconv_backward(g_x, g->conv_w, g->conv_b, A->g_y, seq_at(A->o_rm, s * B, dd),
                   w->conv_w, B, e, e, &A->plan_head[b], A->conv_work, A->conv_threads);
    ph_add(dec, 1, DECODER_PH_HEAD_CONV, &t0);
}

/* One SMB backward: g_h (the block output's gradient) is consumed; the
 * gradient of its input r_k is added to gr. tmp is seq-sized scratch. */
static void smb_backward(struct decoder *dec, const struct decoder_smb_w *w,
                         struct decoder_smb_w *g, int k, float *g_h, float *tmp)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const int nb = dd->scans * A->B;
    const long rows = (long)nb * dd->M;
    double t0 = sn_now();

    /* The mixer's cells: their conv output reached h only through it. */
    pack_visited(A->pk_out, g_h, A, dd, nb);
    mamba_backward(&dd->mx, &w->mx, A->pk_out, A->pk_in, &g->mx, A->mc[k]);
    unpack_visited(g_h, A->pk_in, A, dd, nb);
    ph_add(dec, 1, DECODER_PH_MIXER, &t0);

    /* conv3x3 and RMSNorm back to the residual stream. */
    dconv_backward(A->g2, g->conv_w, g->conv_b, g_h, A->xn[k], w->conv_w, nb, dd->e,
                   dd->e, &A->plan_smb, A->conv_work, A->conv_threads);
    ph_add(dec, 1, DECODER_PH_SMB_CONV, &t0);
    rmsnorm_backward(tmp, g->norm_w, A->g2, A->r[k], A->rstd[k], w->norm_w, rows, dd->e);
    vec_acc(A->gr, tmp, rows * dd->e);
    ph_add(dec, 1, DECODER_PH_NORMS, &t0);
}

static void branch_backward(struct decoder *dec, int b)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const struct decoder_branch_w *w = &dec->w.br[b];
    struct decoder_branch_w *g = &dec->g.br[b];
    const int B = A->B, nb = dd->scans * B, M = dd->M, e = dd->e;
    const long rows = (long)nb * M;
    /* h and o are dead after the forward pass: they serve as scratch. */
    float *g_orm = A->h, *g_h = A->o;

    /* Heads, then back to scan order. */
    for (int s = 0; s < dd->scans; s++)
        head_backward(dec, b, s, seq_at(g_orm, s * B, dd));
    double t0 = sn_now();
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nb; q++)
        cells_gather(seq_at(A->g2, q, dd), seq_at(g_orm, q, dd), A->perm[q / B], M, e);

    /* LayerNorm; the residual branch and the dropout branch of its input. */
    layernorm_backward(g_h, g->ln_w, g->ln_b, A->g2, A->z, A->ln_mean, A->ln_rstd,
                       w->ln_w, rows, e);
    memcpy(A->gr, g_h, sizeof(float) * (size_t)(rows * e));
    dropout_backward(g_h, g_h, A->drop, rows * e, dd->dropout);

    /* The SMBs in reverse; gr carries the residual stream's gradient. */
    ph_add(dec, 1, DECODER_PH_NORMS, &t0);
    for (int k = dd->blocks - 1; k >= 0; k--) {
        smb_backward(dec, &w->smb[k], &g->smb[k], k, g_h, g_orm);
        if (k > 0) memcpy(g_h, A->gr, sizeof(float) * (size_t)(rows * e));
    }
    t0 = sn_now();

    /* The scans' gradients summed back onto the embedding, then its weights. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++) {
        float *ge = A->g_emb + (size_t)i * M * e;
        memset(ge, 0, sizeof(float) * (size_t)M * e);
        for (int s = 0; s < dd->scans; s++)
            cells_scatter_add(ge, seq_at(A->gr, s * B + i, dd), A->perm[s], M, e);
    }
    conv1x1_backward(NULL, g->embed_w, g->embed_b, A->g_emb, A->H, w->embed_w,
                     (long)B * M, dd->in_ch, e);
    ph_add(dec, 1, DECODER_PH_EMBED, &t0);
}

static void nav_backward(struct decoder *dec)
{
    struct decoder_acts *A = dec->acts;
    const struct decoder_dims *dd = &dec->dims;
    const long n = (long)A->B * dd->M;
    double t0 = sn_now();

    upsample_bilinear_backward(A->g_small, A->d_nav_up, A->B, dd->grid, dd->grid, dd->out,
                               dd->out, 1, UPSAMPLE_ALIGN_CORNERS);
    sigmoid_backward(A->g_small, A->g_small, A->Q, n);
    conv1x1_backward(NULL, dec->g.nav_w, dec->g.nav_b, A->g_small, A->R, dec->w.nav_w, n,
                     dd->d, 1);
    ph_add(dec, 1, DECODER_PH_MATCH, &t0);
}

void decoder_backward(struct decoder *dec)
{
    struct decoder_acts *A = dec->acts;
    SN_ASSERT(A && A->mode == DECODER_MODE_TRAIN);
    branch_backward(dec, A->branch);
    nav_backward(dec);
    A->mode = DECODER_MODE_NONE;
}

/* ------------------------------------------------------------------------ */
/* Prediction: every branch, BatchNorm in eval mode. */

int decoder_predict(struct decoder *dec, const float *f, const float *R, int B,
                    float *maps, float *mean)
{
    const struct decoder_dims *dd = &dec->dims;
    if (!dec->acts || dec->acts->max_batch < B)
        decoder_reserve(dec, B, dec->acts ? dec->acts->train : 0);
    struct decoder_acts *A = dec->acts;
    const long out2 = (long)dd->out * dd->out;
    const int nh = dd->branches * dd->scans;

    A->mode = DECODER_MODE_NONE;
    A->B = B;
    int st = match_forward(dec, f, R, B);
    if (st != SN_OK) return st;
    if (mean) memset(mean, 0, sizeof(float) * (size_t)(B * out2));

    /* Each head's probabilities; the ensemble mean in a fixed head order. */
    for (int b = 0; b < dd->branches; b++) {
        branch_forward(dec, b, 0, 0, 0);
        for (int s = 0; s < dd->scans; s++) {
            head_forward(dec, b, s, 0);
            sigmoid_forward(A->up[s], A->up[s], B * out2);
            for (int i = 0; i < B; i++) {
                const float *p = A->up[s] + i * out2;
                if (maps)
                    memcpy(maps + ((long)i * nh + b * dd->scans + s) * out2, p,
                           sizeof(float) * (size_t)out2);
                if (mean) vec_acc(mean + i * out2, p, out2);
            }
        }
    }
    if (mean)
        for (long i = 0; i < B * out2; i++)
            mean[i] /= (float)nh;
    A->mode = DECODER_MODE_EVAL;
    return SN_OK;
}
