/*
 * test_mamba.c - the Mamba mixer against PyTorch and against itself.
 *
 *   test_mamba golden   forward output, input gradient and every parameter
 *                       gradient against tests/ref_mamba.py, for equal and
 *                       for variable sequence lengths
 *   test_mamba unit     finite differences for every parameter and the
 *                       input; packed variable-length batches against one
 *                       call per sequence; independence of the thread count;
 *                       empty sequences; the initialisation
 *   test_mamba bench    (not a test) ms per forward + backward at SNARM's
 *                       sizes: e = 128, E = 256, n = 4, 32 sequences of 600
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/mamba.h"
#include "testutil.h"

/* One mixer: parameters and gradients, each one carved allocation. */
struct mixer {
    struct mamba_dims d;
    float *w, *gw;
    struct mamba_params p, g;
    size_t count;
};

static void mixer_init(struct mixer *m, int e)
{
    mamba_dims_set(&m->d, e, 4, 4, 2);
    m->count = mamba_param_count(&m->d);
    m->w = sn_aligned(m->count * sizeof(float));
    m->gw = sn_aligned(m->count * sizeof(float));
    mamba_params_carve(&m->d, m->w, &m->p);
    mamba_params_carve(&m->d, m->gw, &m->g);
    memset(m->gw, 0, m->count * sizeof(float));
}

static void mixer_free(struct mixer *m)
{
    sn_free(m->w);
    sn_free(m->gw);
}

/* The parameter tensors by name, for loops over all of them. */
struct tensor_ref {
    const char *name;
    size_t off, count;
};

static int tensor_list(const struct mixer *m, struct tensor_ref *t)
{
    const struct mamba_params *p = &m->p;
    float *const f[] = {p->in_w, p->conv_w, p->conv_b, p->xproj_w, p->dt_w,
                        p->dt_b, p->A_log,  p->D,      p->out_w};
    const char *names[] = {"in_w", "conv_w", "conv_b", "xproj_w", "dt_w",
                           "dt_b", "A_log",  "D",      "out_w"};
    int nt = (int)SN_ARRAY_LEN(names);
    for (int i = 0; i < nt; i++) {
        t[i].name = names[i];
        t[i].off = (size_t)(f[i] - m->w);
        float *next = i + 1 < nt ? f[i + 1] : m->w + m->count;
        t[i].count = (size_t)(next - f[i]);
    }
    return nt;
}

static float *rand_floats(struct rng_state *r, long n, float scale)
{
    float *v = sn_aligned((size_t)(n ? n : 1) * sizeof(float));
    rng_fill_normal(r, v, n, scale);
    return v;
}

static int sum_lengths(const int *len, int B)
{
    int T = 0;
    for (int b = 0; b < B; b++)
        T += len[b];
    return T;
}

/* Randomise the parameters away from the structured initial values, as the
 * PyTorch reference does, so every gradient term matters. */
static void mixer_randomise(struct mixer *m, struct rng_state *r)
{
    mamba_params_init(&m->d, &m->p, r);
    size_t En = (size_t)m->d.E * m->d.n;
    for (size_t i = 0; i < En; i++)
        m->p.A_log[i] += 0.3f * (float)rng_normal(r);
    for (int c = 0; c < m->d.E; c++) {
        m->p.D[c] += 0.5f * (float)rng_normal(r);
        m->p.dt_b[c] += 4.0f * (float)rng_uniform(r);
    }
}

/* ---- golden ------------------------------------------------------------- */

/* Tolerance of the golden comparisons. Both sides run in fp32 with
 * different summation orders (BLAS blocking, our scan order, our exp); over
 * sums of at most 2E = 64 terms and 70 scan steps the rounding stays near
 * 1e-6 of a tensor's largest entry. The absolute part is scaled by that
 * largest entry so that small gradients (dt_w, A_log near 1e-3) are held to
 * the same relative standard as large ones. */
#define GOLD_ATOL_REL 1e-5
#define GOLD_RTOL 1e-4

static void gold_close(const char *what, const float *got, const float *want, long n)
{
    double big = 0;
    for (long i = 0; i < n; i++)
        big = fmax(big, fabs((double)want[i]));
    TU_CLOSE(what, got, want, n, GOLD_ATOL_REL * fmax(big, 1e-30), GOLD_RTOL);
}

static void golden_case(const char *file, const char *name)
{
    char key[128];
    long n = 0;
    fprintf(stderr, "golden case %s\n", name);

    /* dimensions, lengths and parameters of the reference */
    snprintf(key, sizeof key, "%s/dims", name);
    float *dims = tu_ref_read(file, key, &n);
    snprintf(key, sizeof key, "%s/len", name);
    long B = 0;
    float *lenf = tu_ref_read(file, key, &B);
    if (!dims || !lenf || n != 5) return;
    struct mixer m;
    mixer_init(&m, (int)dims[0]);
    TU_CHECK(m.d.E == (int)dims[1] && m.d.r == (int)dims[4]);
    int *len = malloc(sizeof(int) * (size_t)B);
    for (long b = 0; b < B; b++)
        len[b] = (int)lenf[b];
    int T = sum_lengths(len, (int)B);
    struct tensor_ref tr[16];
    int nt = tensor_list(&m, tr);
    for (int i = 0; i < nt; i++) {
        snprintf(key, sizeof key, "%s/%s", name, tr[i].name);
        float *v = tu_ref_read(file, key, &n);
        TU_CHECK(v && (size_t)n == tr[i].count);
        if (v && (size_t)n == tr[i].count) memcpy(m.w + tr[i].off, v, n * sizeof(float));
        free(v);
    }

    /* forward and backward of the packed batch */
    snprintf(key, sizeof key, "%s/x", name);
    float *x = tu_ref_read(file, key, &n);
    snprintf(key, sizeof key, "%s/dy", name);
    float *dy = tu_ref_read(file, key, &n);
    float *y = sn_aligned(sizeof(float) * ((size_t)T * m.d.e + 1));
    float *dx = sn_aligned(sizeof(float) * ((size_t)T * m.d.e + 1));
    struct mamba_cache *c = mamba_cache_new(&m.d, (int)B, T);
    mamba_forward(&m.d, &m.p, x, (int)B, len, y, c);
    mamba_backward(&m.d, &m.p, dy, dx, &m.g, c);

    /* compare the output, the input gradient and every parameter gradient */
    snprintf(key, sizeof key, "%s/y", name);
    float *want = tu_ref_read(file, key, &n);
    if (want) gold_close("y", y, want, (long)T * m.d.e);
    free(want);
    snprintf(key, sizeof key, "%s/dx", name);
    want = tu_ref_read(file, key, &n);
    if (want) gold_close("dx", dx, want, (long)T * m.d.e);
    free(want);
    for (int i = 0; i < nt; i++) {
        snprintf(key, sizeof key, "%s/g_%s", name, tr[i].name);
        want = tu_ref_read(file, key, &n);
        snprintf(key, sizeof key, "d %s", tr[i].name);
        if (want) gold_close(key, m.gw + tr[i].off, want, (long)tr[i].count);
        free(want);
    }

    mamba_cache_free(c);
    sn_free(y);
    sn_free(dx);
    free(x);
    free(dy);
    free(len);
    free(dims);
    free(lenf);
    mixer_free(&m);
}

static void run_golden(void)
{
    const char *file = tu_ref_path("mamba.h5");
    FILE *f = fopen(file, "rb");
    if (!f) tu_skip("golden file %s missing (torch unavailable for the fixture?)", file);
    fclose(f);
    golden_case(file, "eq");
    golden_case(file, "var");
}

/* ---- finite differences ------------------------------------------------- */

/* The random linear loss sum(y * wl), accumulated in double. */
static double fd_loss(const struct mixer *m, const float *x, int B, const int *len,
                      const float *wl, float *y, struct mamba_cache *c)
{
    long ne = (long)sum_lengths(len, B) * m->d.e;
    mamba_forward(&m->d, &m->p, x, B, len, y, c);
    double s = 0;
    for (long i = 0; i < ne; i++)
        s += (double)y[i] * wl[i];
    return s;
}

/* Five-point central difference of the loss in one float entry, truncation
 * O(h^4). The step is a power of two and every probed
 * value a multiple of 2^-16 below 64 in size (fd_quantise), so v +- h and
 * v +- 2h are exact in float: the step taken is the step assumed. A larger
 * step would grow truncation, a smaller one the rounding noise below. */
#define FD_STEP 0x1p-5

static void fd_quantise(float *v, long n)
{
    for (long i = 0; i < n; i++)
        v[i] = (float)ldexp(rint(ldexp(v[i], 16)), -16);
}

static double fd_derivative(const struct mixer *m, float *v, const float *x, int B,
                            const int *len, const float *wl, float *y,
                            struct mamba_cache *c)
{
    float v0 = *v;
    double f[4];
    const double off[4] = {FD_STEP, -FD_STEP, 2 * FD_STEP, -2 * FD_STEP};
    for (int i = 0; i < 4; i++) {
        *v = (float)(v0 + off[i]);
        f[i] = fd_loss(m, x, B, len, wl, y, c);
    }
    *v = v0;
    return (8.0 * (f[0] - f[1]) - (f[2] - f[3])) / (12.0 * FD_STEP);
}

/* Tolerance: the forward pass runs in float, so each loss value carries
 * rounding noise; divided by the stencil's 12h it leaves errors of up to
 * 2.4e-6 at this step (measured over all probes; a quarter of the step gave
 * 2e-5, rounding-dominated). The absolute part covers that noise four
 * times over, the relative part the O(h^4) truncation. */
#define FD_ATOL 1e-5
#define FD_RTOL 1e-3

static double fd_worst; /* largest |analytic - fd| / tolerance seen */

static void fd_check_entry(const char *what, long i, double an, double fd)
{
    fd_worst = fmax(fd_worst, fabs(an - fd) / (FD_ATOL + FD_RTOL * fabs(fd)));
    TU_CHECK_MSG(fabs(an - fd) <= FD_ATOL + FD_RTOL * fabs(fd),
                 "%s[%ld]: analytic %.8g, finite difference %.8g", what, i, an, fd);
}

/* The entries to probe: the one with the largest analytic gradient and a
 * few drawn at random. */
static void fd_pick(struct rng_state *r, const float *g, long n, long *pick, int np)
{
    long best = 0;
    for (long i = 1; i < n; i++)
        if (fabsf(g[i]) > fabsf(g[best])) best = i;
    pick[0] = best;
    for (int j = 1; j < np; j++)
        pick[j] = (long)rng_below(r, (uint64_t)n);
}

static void run_finite_differences(void)
{
    /* tiny mixer; the 37-token sequence crosses a state checkpoint */
    const int len[] = {5, 0, 37};
    const int B = 3, T = 42;
    struct rng_state r;
    rng_seed(&r, 11, 0);
    struct mixer m;
    mixer_init(&m, 4);
    mixer_randomise(&m, &r);
    float *x = rand_floats(&r, (long)T * m.d.e, 1.0f);
    float *wl = rand_floats(&r, (long)T * m.d.e, 1.0f);
    float *y = sn_aligned(sizeof(float) * T * m.d.e);
    float *dx = sn_aligned(sizeof(float) * T * m.d.e);
    struct mamba_cache *c = mamba_cache_new(&m.d, B, T);
    size_t tok = (size_t)m.d.e + 7 * m.d.E + 2 * (m.d.r + 2 * m.d.n);
    TU_CHECK(mamba_cache_bytes(c) >= tok * T * sizeof(float));
    fd_quantise(m.w, (long)m.count);
    fd_quantise(x, (long)T * m.d.e);

    /* analytic gradients of sum(y * wl): dy = wl */
    mamba_forward(&m.d, &m.p, x, B, len, y, c);
    mamba_backward(&m.d, &m.p, wl, dx, &m.g, c);

    /* every parameter tensor */
    struct tensor_ref tr[16];
    int nt = tensor_list(&m, tr);
    long pick[6];
    for (int t = 0; t < nt; t++) {
        const float *g = m.gw + tr[t].off;
        fd_pick(&r, g, (long)tr[t].count, pick, 6);
        for (int j = 0; j < 6; j++) {
            float *v = m.w + tr[t].off + pick[j];
            double fd = fd_derivative(&m, v, x, B, len, wl, y, c);
            fd_check_entry(tr[t].name, pick[j], g[pick[j]], fd);
        }
    }

    /* the input, in both non-empty sequences */
    fd_pick(&r, dx, (long)T * m.d.e, pick, 6);
    pick[1] = 2;
    for (int j = 0; j < 6; j++) {
        double fd = fd_derivative(&m, x + pick[j], x, B, len, wl, y, c);
        fd_check_entry("x", pick[j], dx[pick[j]], fd);
    }
    fprintf(stderr, "  finite differences: worst error %.3g of the tolerance\n",
            fd_worst);

    mamba_cache_free(c);
    sn_free(x);
    sn_free(wl);
    sn_free(y);
    sn_free(dx);
    mixer_free(&m);
}

/* ---- variable lengths, threads, empty batches, initialisation ------------ */

struct run_out {
    float *y, *dx, *gw;
};

/* Forward and backward of one packed batch with dy = wl; gradients start at
 * zero. The cache is created with the current OpenMP thread count. */
static struct run_out run_packed(struct mixer *m, const float *x, int B, const int *len,
                                 const float *wl)
{
    int T = sum_lengths(len, B);
    size_t ne = (size_t)T * m->d.e + 1;
    struct run_out o = {sn_aligned(ne * 4), sn_aligned(ne * 4), sn_aligned(m->count * 4)};
    memset(m->gw, 0, m->count * sizeof(float));
    struct mamba_cache *c = mamba_cache_new(&m->d, B, T);
    mamba_forward(&m->d, &m->p, x, B, len, o.y, c);
    mamba_backward(&m->d, &m->p, wl, o.dx, &m->g, c);
    memcpy(o.gw, m->gw, m->count * sizeof(float));
    mamba_cache_free(c);
    return o;
}

static void run_out_free(struct run_out *o)
{
    sn_free(o->y);
    sn_free(o->dx);
    sn_free(o->gw);
}

/* A packed batch of sequences of different lengths equals one call per
 * sequence: no state or convolution leaks across sequence boundaries, and
 * the parameter gradients are the sums over sequences. */
static void run_variable_length(void)
{
    const int len[] = {7, 0, 45, 1, 33, 64};
    const int B = 6, T = 150;
    struct rng_state r;
    rng_seed(&r, 12, 0);
    struct mixer m;
    mixer_init(&m, 8);
    mixer_randomise(&m, &r);
    int e = m.d.e;
    float *x = rand_floats(&r, (long)T * e, 1.0f);
    float *wl = rand_floats(&r, (long)T * e, 1.0f);
    struct run_out all = run_packed(&m, x, B, len, wl);

    /* one sequence at a time, gradients summed */
    float *gsum = sn_calloc(m.count, sizeof(float));
    float *y1 = sn_aligned(sizeof(float) * T * e),
          *dx1 = sn_aligned(sizeof(float) * T * e);
    for (int b = 0, t0 = 0; b < B; t0 += len[b], b++) {
        struct run_out one =
            run_packed(&m, x + (size_t)t0 * e, 1, len + b, wl + (size_t)t0 * e);
        memcpy(y1 + (size_t)t0 * e, one.y, sizeof(float) * len[b] * e);
        memcpy(dx1 + (size_t)t0 * e, one.dx, sizeof(float) * len[b] * e);
        for (size_t i = 0; i < m.count; i++)
            gsum[i] += one.gw[i];
        run_out_free(&one);
    }

    /* per-token results agree up to GEMM blocking; sums up to their order */
    TU_CLOSE("packed y vs per sequence", all.y, y1, (long)T * e, 1e-6, 1e-5);
    TU_CLOSE("packed dx vs per sequence", all.dx, dx1, (long)T * e, 1e-6, 1e-5);
    TU_CLOSE("packed grads vs summed", all.gw, gsum, (long)m.count, 1e-5, 1e-4);

    /* the first token of a sequence sees no earlier tokens: changing the
     * last token of sequence 0 leaves sequence 2 (after an empty one) alone */
    x[(size_t)6 * e] += 1.0f;
    struct run_out moved = run_packed(&m, x, B, len, wl);
    TU_CHECK(memcmp(moved.y + (size_t)7 * e, all.y + (size_t)7 * e,
                    sizeof(float) * (T - 7) * e) == 0);
    TU_CHECK(memcmp(moved.y + (size_t)6 * e, all.y + (size_t)6 * e, sizeof(float) * e));
    run_out_free(&moved);

    run_out_free(&all);
    sn_free(gsum);
    sn_free(y1);
    sn_free(dx1);
    sn_free(x);
    sn_free(wl);
    mixer_free(&m);
}

/* Results are bit for bit the same with 1 and 3 OpenMP threads. */
static void run_thread_independence(void)
{
    const int len[] = {40, 3, 0, 70, 17};
    const int B = 5, T = 130;
    struct rng_state r;
    rng_seed(&r, 13, 0);
    struct mixer m;
    mixer_init(&m, 16);
    mixer_randomise(&m, &r);
    float *x = rand_floats(&r, (long)T * m.d.e, 1.0f);
    float *wl = rand_floats(&r, (long)T * m.d.e, 1.0f);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    struct run_out a = run_packed(&m, x, B, len, wl);
    omp_set_num_threads(3);
    struct run_out b = run_packed(&m, x, B, len, wl);
    omp_set_num_threads(saved);
    size_t ne = (size_t)T * m.d.e * sizeof(float);
    TU_CHECK(memcmp(a.y, b.y, ne) == 0);
    TU_CHECK(memcmp(a.dx, b.dx, ne) == 0);
    TU_CHECK(memcmp(a.gw, b.gw, m.count * sizeof(float)) == 0);
    run_out_free(&a);
    run_out_free(&b);
    sn_free(x);
    sn_free(wl);
    mixer_free(&m);
}

/* A batch whose every sequence is empty (every cell a self reference)
 * leaves the gradients untouched. */
static void run_empty(void)
{
    const int len[] = {0, 0, 0};
    struct rng_state r;
    rng_seed(&r, 14, 0);
    struct mixer m;
    mixer_init(&m, 8);
    mixer_randomise(&m, &r);
    float x = 0, y = 0, dy = 0, dx = 0;
    struct mamba_cache *c = mamba_cache_new(&m.d, 3, 0);
    mamba_forward(&m.d, &m.p, &x, 3, len, &y, c);
    mamba_backward(&m.d, &m.p, &dy, &dx, &m.g, c);
    int zero = 1;
    for (size_t i = 0; i < m.count; i++)
        zero &= m.gw[i] == 0.0f;
    TU_CHECK(zero);
    mamba_cache_free(c);
    mixer_free(&m);
}

/* Spread of a uniform draw: within the bound, and a standard deviation near
 * bound / sqrt(3). */
static void check_uniform(const char *what, const float *w, size_t n, double bound)
{
    double s2 = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        s2 += (double)w[i] * w[i];
        worst = fmax(worst, fabs(w[i]));
    }
    double sd = sqrt(s2 / (double)n), want = bound / sqrt(3.0);
    TU_CHECK_MSG(worst <= bound && fabs(sd - want) < 0.1 * want,
                 "%s: max %g (bound %g), sd %g (want %g)", what, worst, bound, sd, want);
}

static void run_init(void)
{
    struct rng_state r;
    rng_seed(&r, 15, 0);
    struct mixer m;
    mixer_init(&m, 128);
    mamba_params_init(&m.d, &m.p, &r);
    const struct mamba_dims *d = &m.d;
    TU_CHECK(d->E == 256 && d->r == 8 && d->n == 4 && d->k == 4);
    check_uniform("in_w", m.p.in_w, (size_t)2 * d->E * d->e, 1.0 / sqrt(d->e));
    check_uniform("xproj_w", m.p.xproj_w, (size_t)(d->r + 2 * d->n) * d->E,
                  1.0 / sqrt(d->E));
    check_uniform("dt_w", m.p.dt_w, (size_t)d->E * d->r, 1.0 / sqrt(d->r));
    check_uniform("out_w", m.p.out_w, (size_t)d->e * d->E, 1.0 / sqrt(d->E));

    /* S4D-real A, unit skip, softplus(dt_b) log-uniform in [1e-3, 1e-1] */
    int ok_a = 1, ok_dt = 1, below = 0;
    for (int c = 0; c < d->E; c++) {
        for (int s = 0; s < d->n; s++)
            ok_a &= m.p.A_log[c * d->n + s] == logf((float)(s + 1)) && m.p.D[c] == 1.0f;
        double dt = log1p(exp(m.p.dt_b[c]));
        ok_dt &= dt > 0.999e-3 && dt < 1.001e-1;
        below += dt < 1e-2;
    }
    TU_CHECK(ok_a);
    TU_CHECK(ok_dt);
    /* log-uniform: half of the draws below the geometric middle 1e-2 */
    TU_CHECK_MSG(abs(below - d->E / 2) < d->E / 8, "%d of %d dt below 1e-2", below, d->E);
    mixer_free(&m);
}

/* ---- speed note ----------------------------------------------------------- */

static void run_bench(void)
{
    const int B = 32, L = 600, T = B * L;
    int len[32];
    for (int b = 0; b < B; b++)
        len[b] = L;
    struct rng_state r;
    rng_seed(&r, 16, 0);
    struct mixer m;
    mixer_init(&m, 128);
    mamba_params_init(&m.d, &m.p, &r);
    float *x = rand_floats(&r, (long)T * m.d.e, 1.0f);
    float *dy = rand_floats(&r, (long)T * m.d.e, 1.0f);
    float *y = sn_aligned(sizeof(float) * T * m.d.e);
    float *dx = sn_aligned(sizeof(float) * T * m.d.e);
    struct mamba_cache *c = mamba_cache_new(&m.d, B, T);
    double tf = 1e30, tb = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = sn_now();
        mamba_forward(&m.d, &m.p, x, B, len, y, c);
        double t1 = sn_now();
        mamba_backward(&m.d, &m.p, dy, dx, &m.g, c);
        double t2 = sn_now();
        if (rep > 0) {
            tf = fmin(tf, t1 - t0);
            tb = fmin(tb, t2 - t1);
        }
    }
    printf("mamba e=%d E=%d n=%d B=%d L=%d threads=%d: forward %.1f ms, "
           "backward %.1f ms, total %.1f ms (best of 3); cache %.0f MiB\n",
           m.d.e, m.d.E, m.d.n, B, L, omp_get_max_threads(), tf * 1e3, tb * 1e3,
           (tf + tb) * 1e3, mamba_cache_bytes(c) / 1048576.0);
    mamba_cache_free(c);
    sn_free(x);
    sn_free(dy);
    sn_free(y);
    sn_free(dx);
    mixer_free(&m);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "unit";
    if (!strcmp(mode, "bench")) {
        run_bench();
        return 0;
    }
    if (!strcmp(mode, "golden")) {
        run_golden();
        return tu_finish("test_mamba golden");
    }
    run_finite_differences();
    run_variable_length();
    run_thread_independence();
    run_empty();
    run_init();
    return tu_finish("test_mamba unit");
}
