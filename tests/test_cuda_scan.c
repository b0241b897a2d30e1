/*
 * test_cuda_scan.c - the device selective scan (gpu_scan_forward /
 * gpu_scan_backward) against a double-precision reference of the same
 * recurrence, and that reference against finite differences.
 *
 * The CPU twin of the scan lives inside kernels/mamba.c as static
 * functions (the public CPU API is the whole mixer), so the reference here
 * is written out from the recurrence of mamba.h, in double:
 *   h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   y_t = C_t h_t + D u_t,
 * and its backward pass is checked by central differences (double, h =
 * 1e-5, agreement to 1e-6 relative plus 1e-7) before it judges the device.
 *
 * Tolerances against the float device kernels: the forward pass runs up to
 * 50 steps of float recurrences (rtol 1e-5 plus 1e-6 of the largest
 * magnitude); gradients that sum over many tokens or channels (dA, dD, dB,
 * dC) use rtol 1e-4 plus 1e-5 of the largest magnitude, for sums that
 * cancel. Shapes cover empty sequences, lengths off the checkpoint
 * interval, channel counts off the warp width and state sizes 3, 4, 9, 16.
 */
#include <math.h>

#include "test_cuda_util.h"

/* Rounding of sum(dy y) (about 1e-16 of ~50) over 2h stays below 1e-9;
 * truncation is O(h^2). */
#define FD_H 1e-5
#define FD_RTOL 1e-6
#define FD_ATOL 1e-7

/* A scan problem: packed sequences, inputs and their gradients. */
struct scase {
    int B, E, n, T, R; /* R: row stride of the B / C rows (3 + 2n) */
    const int *len;
    float *delta, *u, *bc, *A, *D, *dy; /* host, float */
};

/* ---- the double-precision reference --------------------------------------- */

struct sref {
    double *delta, *u, *bc, *A, *D;      /* inputs */
    double *y;                           /* output */
    double *gdelta, *gu, *gbc, *gA, *gD; /* gradients of sum(dy y) */
};

static double *dcopy(const float *v, long n)
{
    double *p = tcu_host(sizeof(double) * (size_t)n);
    for (long i = 0; i < n; i++)
        p[i] = v[i];
    return p;
}

static double *dzeros(long n)
{
    return tcu_host(sizeof(double) * (size_t)(n ? n : 1));
}

/* y of every token; returns sum(dy y) for the finite differences. */
static double ref_forward(const struct scase *c, struct sref *r)
{
    double L = 0, h[16];
    for (int b = 0, t0 = 0; b < c->B; t0 += c->len[b++])
        for (int ch = 0; ch < c->E; ch++) {
            for (int s = 0; s < c->n; s++)
                h[s] = 0;
            for (int t = t0; t < t0 + c->len[b]; t++) {
                double dl = r->delta[(long)t * c->E + ch], u = r->u[(long)t * c->E + ch];
                const double *Bt = r->bc + (long)t * c->R + 3, *Ct = Bt + c->n;
                double y = r->D[ch] * u;
                for (int s = 0; s < c->n; s++) {
                    h[s] = exp(dl * r->A[ch * c->n + s]) * h[s] + dl * Bt[s] * u;
                    y += Ct[s] * h[s];
                }
                r->y[(long)t * c->E + ch] = y;
                L += c->dy[(long)t * c->E + ch] * y;
            }
        }
    return L;
}

/* The reverse scan of one (sequence, channel) with all states kept. */
static void ref_backward_seq(const struct scase *c, struct sref *r, int t0, int L, int ch,
                             double *H)
{
    const int n = c->n, E = c->E;
    double dh[16] = {0};
    for (int s = 0; s < n; s++)
        H[s] = 0;
    for (int i = 0; i < L; i++) {
        long t = t0 + i;
        double dl = r->delta[t * E + ch], u = r->u[t * E + ch];
        for (int s = 0; s < n; s++)
            H[(i + 1) * n + s] = exp(dl * r->A[ch * n + s]) * H[i * n + s] +
                                 dl * r->bc[t * c->R + 3 + s] * u;
    }
    for (int i = L - 1; i >= 0; i--) {
        long t = t0 + i;
        double dl = r->delta[t * E + ch], u = r->u[t * E + ch], dy = c->dy[t * E + ch];
        const double *Bt = r->bc + t * c->R + 3, *Ct = Bt + n;
        r->gu[t * E + ch] += dy * r->D[ch];
        r->gD[ch] += dy * u;
        for (int s = 0; s < n; s++) {
            double a = r->A[ch * n + s], ea = exp(dl * a), g = dh[s] + Ct[s] * dy;
            r->gbc[t * c->R + 3 + n + s] += dy * H[(i + 1) * n + s];
            r->gbc[t * c->R + 3 + s] += g * dl * u;
            r->gu[t * E + ch] += g * dl * Bt[s];
            r->gdelta[t * E + ch] += g * ea * H[i * n + s] * a + g * Bt[s] * u;
            r->gA[ch * n + s] += g * ea * H[i * n + s] * dl;
            dh[s] = g * ea;
        }
    }
}

static void ref_backward(const struct scase *c, struct sref *r)
{
    double *H = dzeros((long)(c->T + 1) * c->n);
    for (int b = 0, t0 = 0; b < c->B; t0 += c->len[b++])
        for (int ch = 0; ch < c->E; ch++)
            ref_backward_seq(c, r, t0, c->len[b], ch, H);
}

static struct sref ref_new(const struct scase *c)
{
    long te = (long)c->T * c->E, tr = (long)c->T * c->R, en = (long)c->E * c->n;
    struct sref r = {dcopy(c->delta, te), dcopy(c->u, te),   dcopy(c->bc, tr),
                     dcopy(c->A, en),     dcopy(c->D, c->E), dzeros(te),
                     dzeros(te),          dzeros(te),        dzeros(tr),
                     dzeros(en),          dzeros(c->E)};
    return r;
}

/* Central difference of sum(dy y) in one input entry against its gradient. */
static void fd_entry(const struct scase *c, struct sref *r, double *v, double grad,
                     const char *what, long at)
{
    double keep = *v;
    *v = keep + FD_H;
    double lp = ref_forward(c, r);
    *v = keep - FD_H;
    double lm = ref_forward(c, r);
    *v = keep;
    double num = (lp - lm) / (2 * FD_H);
    TU_CHECK_MSG(fabs(num - grad) <= FD_ATOL + FD_RTOL * fabs(num),
                 "reference scan gradient of %s[%ld]: analytic %.12g, numeric %.12g",
                 what, at, grad, num);
}

/* The reference's own check: a few entries of every input. */
static void ref_check_fd(const struct scase *c, struct sref *r)
{
    for (int k = 0; k < 6; k++) {
        long te = (long)rng_below(&tcu_rng, (uint64_t)c->T * c->E);
        long tr = (long)rng_below(&tcu_rng, (uint64_t)c->T) * c->R + 3 +
                  (long)rng_below(&tcu_rng, 2 * (uint64_t)c->n);
        long en = (long)rng_below(&tcu_rng, (uint64_t)c->E * c->n);
        long ch = (long)rng_below(&tcu_rng, (uint64_t)c->E);
        fd_entry(c, r, &r->delta[te], r->gdelta[te], "delta", te);
        fd_entry(c, r, &r->u[te], r->gu[te], "u", te);
        fd_entry(c, r, &r->bc[tr], r->gbc[tr], "B/C", tr);
        fd_entry(c, r, &r->A[en], r->gA[en], "A", en);
        fd_entry(c, r, &r->D[ch], r->gD[ch], "D", ch);
    }
}

/* ---- the device ------------------------------------------------------------ */

static float *to_float(const double *v, long n, float add)
{
    float *p = tcu_floats(n);
    for (long i = 0; i < n; i++)
        p[i] = (float)v[i] + add;
    return p;
}

static void close_scaled(const char *what, const float *got, const float *want, long n,
                         double rtol, double atol_rel)
{
    TU_CLOSE(what, got, want, n, atol_rel * tcu_max_abs(want, n), rtol);
}

/* Device buffers of one case. */
struct sdev {
    float *delta, *u, *bc, *A, *D, *dy, *y, *du, *dd, *dbc, *dA, *dD;
};

static struct sdev dev_new(const struct scase *c)
{
    long te = (long)c->T * c->E, tr = (long)c->T * c->R, en = (long)c->E * c->n;
    float *sentinel = tcu_floats(tr), *ones = tcu_floats(en > c->E ? en : c->E);
    for (long i = 0; i < tr; i++)
        sentinel[i] = 7.0f;
    for (long i = 0; i < (en > c->E ? en : c->E); i++)
        ones[i] = 1.0f;
    struct sdev d = {tcu_dev(c->delta, te), tcu_dev(c->u, te),   tcu_dev(c->bc, tr),
                     tcu_dev(c->A, en),     tcu_dev(c->D, c->E), tcu_dev(c->dy, te),
                     tcu_dev_zero(te),      tcu_dev_zero(te),    tcu_dev_zero(te),
                     tcu_dev(sentinel, tr), tcu_dev(ones, en),   tcu_dev(ones, c->E)};
    return d;
}

/* Forward and backward on the device; dA and dD accumulate onto 1. */
static void dev_run(const struct scase *c, struct gpu_scan *s, const struct sdev *d)
{
    struct gpu_scan_args a = {d->delta, d->u, d->bc + 3, d->bc + 3 + c->n,
                              c->R,     d->A, d->D};
    gpu_scan_forward(tcu_g, s, c->B, c->len, &a, d->y);
    gpu_scan_backward(tcu_g, s, &a, d->dy, d->du, d->dd, d->dbc + 3, d->dbc + 3 + c->n,
                      c->R, d->dA, d->dD);
}

static void compare(const struct scase *c, const struct sref *r, const struct sdev *d)
{
    long te = (long)c->T * c->E, tr = (long)c->T * c->R, en = (long)c->E * c->n;
    close_scaled("scan y", tcu_back(d->y, te), to_float(r->y, te, 0), te, 1e-5, 1e-6);
    close_scaled("scan du", tcu_back(d->du, te), to_float(r->gu, te, 0), te, 1e-4, 1e-5);
    close_scaled("scan ddelta", tcu_back(d->dd, te), to_float(r->gdelta, te, 0), te, 1e-4,
                 1e-5);
    close_scaled("scan dA (accumulated)", tcu_back(d->dA, en), to_float(r->gA, en, 1.0f),
                 en, 1e-4, 1e-5);
    close_scaled("scan dD (accumulated)", tcu_back(d->dD, c->E),
                 to_float(r->gD, c->E, 1.0f), c->E, 1e-4, 1e-5);

    /* dB, dC land in their columns; the first three of each row stay put */
    float *gbc = tcu_back(d->dbc, tr), *want = to_float(r->gbc, tr, 0);
    long untouched = 0;
    for (long t = 0; t < c->T; t++)
        for (int j = 0; j < 3; j++) {
            untouched += gbc[t * c->R + j] == 7.0f;
            gbc[t * c->R + j] = want[t * c->R + j] = 0.0f;
        }
    TU_CHECK(untouched == 3L * c->T);
    close_scaled("scan dB, dC", gbc, want, tr, 1e-4, 1e-5);
}

static void run_case(int B, const int *len, int E, int n)
{
    struct scase c = {B, E, n, 0, 3 + 2 * n, len, 0, 0, 0, 0, 0, 0};
    for (int b = 0; b < B; b++)
        c.T += len[b];
    long te = (long)c.T * E;
    printf("scan: %d sequences, %d tokens, E %d, n %d\n", B, c.T, E, n);

    /* inputs in the method's ranges: delta = softplus(...) > 0, A < 0 */
    c.delta = tcu_randu(te, 0.01f, 0.5f);
    c.u = tcu_randn(te, 0, 1);
    c.bc = tcu_randn((long)c.T * c.R, 0, 1);
    c.A = tcu_floats((long)E * n);
    for (int ch = 0; ch < E; ch++)
        for (int s = 0; s < n; s++)
            c.A[ch * n + s] =
                -expf(logf((float)(s + 1)) + 0.1f * (float)rng_normal(&tcu_rng));
    c.D = tcu_randn(E, 1, 0.3f);
    c.dy = tcu_randn(te, 0, 1);

    /* the reference, checked by finite differences */
    struct sref r = ref_new(&c);
    ref_forward(&c, &r);
    ref_backward(&c, &r);
    ref_check_fd(&c, &r);
    ref_forward(&c, &r); /* y again at the unperturbed inputs */

    /* the device, twice: the same bits both times */
    struct gpu_scan *s = gpu_scan_new(B + 1, c.T + 5, E, n);
    struct sdev d = dev_new(&c);
    dev_run(&c, s, &d);
    compare(&c, &r, &d);
    float *dA1 = tcu_back(d.dA, (long)E * n), *du1 = tcu_back(d.du, te);
    float *dbc1 = tcu_back(d.dbc, (long)c.T * c.R);
    d = dev_new(&c);
    dev_run(&c, s, &d);
    TU_CHECK(memcmp(dA1, tcu_back(d.dA, (long)E * n), sizeof(float) * E * n) == 0);
    TU_CHECK(memcmp(du1, tcu_back(d.du, te), sizeof(float) * (size_t)te) == 0);
    TU_CHECK(memcmp(dbc1, tcu_back(d.dbc, (long)c.T * c.R),
                    sizeof(float) * (size_t)c.T * c.R) == 0);
    gpu_scan_free(s);
}

int main(void)
{
    tcu_start("test_cuda_scan", 13);
    const int len1[] = {37, 0, 50}, len2[] = {20, 33}, len3[] = {16, 45},
              len4[] = {1, 64};
    run_case(3, len1, 40, 4);
    run_case(2, len2, 64, 3);
    run_case(2, len3, 33, 16);
    run_case(2, len4, 130, 9);
    return tcu_finish("test_cuda_scan");
}
