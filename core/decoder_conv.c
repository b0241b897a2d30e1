/*
 * decoder_conv.c - 3 x 3 convolutions over the valid taps only (see
 * decoder_conv.h): one compact im2col GEMM per class of cells that share
 * the same valid taps.
 *
 * Threads. The work is cut into units (a class and a range of maps); the
 * OpenMP threads take units round-robin, each gathering its own columns
 * and running a single-threaded GEMM. Keeping the products on the OpenMP
 * threads avoids handing each GEMM to OpenBLAS's own thread pool while the
 * OpenMP workers spin-wait (libgomp's default policy) on the same cores.
 * The weight gradient is summed per thread and the threads' sums are added
 * in thread order, so for a given thread count the result is deterministic.
 */
#include "decoder_conv.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "common.h"

/* Rows of the column matrix per unit: big enough for an efficient product,
 * small enough (18 MB per thread at c_in 128) for a modest workspace. */
#define DCONV_ROWS 4096

/* Per axis: which of the offsets -r and +r stay inside 0..g-1. */
static int axis_code(int y, int g, int r)
{
    return (y - r >= 0) | (y + r < g) << 1;
}

static void plan_class_taps(struct dconv_class *c, int cy, int cx)
{
    for (int t = 0; t < 9; t++) {
        int ky = t / 3, kx = t % 3;
        int oky = ky == 1 || (ky == 0 && (cy & 1)) || (ky == 2 && (cy & 2));
        int okx = kx == 1 || (kx == 0 && (cx & 1)) || (kx == 2 && (cx & 2));
        if (oky && okx) c->taps[c->ntaps++] = t;
    }
}

void dconv_plan_init(struct dconv_plan *p, int g, int r)
{
    int key_class[16], count[DCONV_MAX_CLASSES] = {0};
    memset(p, 0, sizeof(*p));
    memset(key_class, -1, sizeof key_class);
    p->g = g;
    p->r = r;

    /* Classes in order of first appearance; their valid taps ascending. */
    for (int i = 0; i < g * g; i++) {
        int cy = axis_code(i / g, g, r), cx = axis_code(i % g, g, r), key = cy * 4 + cx;
        if (key_class[key] < 0) {
            SN_ASSERT(p->nclass < DCONV_MAX_CLASSES);
            plan_class_taps(&p->cls[p->nclass], cy, cx);
            key_class[key] = p->nclass++;
        }
        count[key_class[key]]++;
    }

    /* The cells of each class, row-major. */
    for (int k = 0; k < p->nclass; k++)
        p->cls[k].cells = sn_malloc(sizeof(int) * (size_t)count[k]);
    for (int i = 0; i < g * g; i++) {
        int key = axis_code(i / g, g, r) * 4 + axis_code(i % g, g, r);
        struct dconv_class *c = &p->cls[key_class[key]];
        c->cells[c->ncells++] = i;
    }
}

void dconv_plan_free(struct dconv_plan *p)
{
    for (int k = 0; k < p->nclass; k++)
        sn_free(p->cls[k].cells);
    memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------------ */
/* Workspace. */

struct dconv_ws {
    float *wr;        /* c_out x 9 x c_in   repacked (or flipped) weights */
    float *wc;        /* classes x c_out x 9 x c_in   each class's taps */
    float *dw;        /* threads x classes x c_out x 9 x c_in  weight grads */
    float *col, *tmp; /* per thread: columns, GEMM output / gathered dy */
    size_t col_floats, tmp_floats, wsz;
};

/* Rows of one unit: whole maps' cells of one class, at least one map's
 * worth, never more than n maps. */
static size_t unit_rows(int g, int n)
{
    return SN_MIN((size_t)n * g * g, (size_t)SN_MAX(DCONV_ROWS, g * g));
}

size_t dconv_work_floats(int g, int n, int c_in, int c_out, int threads)
{
    size_t cmax = (size_t)SN_MAX(c_in, c_out), rows = unit_rows(g, n);
    size_t wsz = 9 * (size_t)c_in * c_out, nt = (size_t)SN_MAX(threads, 1);
    size_t taps = wsz * (1 + DCONV_MAX_CLASSES * (1 + nt)) + nt * rows * cmax * 10;
    return SN_MAX(taps, dwino_work_floats(g, n, c_in, c_out, threads));
}

static struct dconv_ws ws_carve(float *work, int g, int n, int c_in, int c_out,
                                int threads)
{
    size_t cmax = (size_t)SN_MAX(c_in, c_out), rows = unit_rows(g, n);
    struct dconv_ws w;
    w.wsz = 9 * (size_t)c_in * c_out;
    w.col_floats = rows * 9 * cmax;
    w.tmp_floats = rows * cmax;
    w.wr = work;
    w.wc = w.wr + w.wsz;
    w.dw = w.wc + DCONV_MAX_CLASSES * w.wsz;
    w.col = w.dw + (size_t)threads * DCONV_MAX_CLASSES * w.wsz;
    w.tmp = w.col + (size_t)threads * w.col_floats;
    return w;
}

/* ------------------------------------------------------------------------ */
/* Weight layouts. */

/* [c_out][c_in][tap] -> [c_out][tap][c_in]; flip = 1 gives the input
 * gradient's kernel [c_in][tap][c_out] with tap t read from 8 - t. */
static void weight_pack(float *wr, const float *w, int c_in, int c_out, int flip)
{
    for (int o = 0; o < c_out; o++)
        for (int i = 0; i < c_in; i++)
            for (int t = 0; t < 9; t++) {
                float v = w[((size_t)o * c_in + i) * 9 + t];
                if (flip)
                    wr[((size_t)i * 9 + (8 - t)) * c_out + o] = v;
                else
                    wr[((size_t)o * 9 + t) * c_in + i] = v;
            }
}

/* wc[o][k][i] = wr[o][taps[k]][i]: one class's taps, contiguous. */
static void weight_class(float *wc, const float *wr, const struct dconv_class *c,
                         int c_in, int c_out)
{
    for (int o = 0; o < c_out; o++)
        for (int k = 0; k < c->ntaps; k++)
            memcpy(wc + ((size_t)o * c->ntaps + k) * c_in,
                   wr + ((size_t)o * 9 + c->taps[k]) * c_in, sizeof(float) * c_in);
}

/* ------------------------------------------------------------------------ */
/* Units of work and their row moves. */

struct dconv_unit {
    int cls, m0, nm;
};

/* Maps per unit of a class: as many as fit DCONV_ROWS rows, at least 1. */
static int unit_maps(const struct dconv_class *c)
{
    return SN_MAX(1, DCONV_ROWS / SN_MAX(c->ncells, 1));
}

/* Every (class, map range) of n maps; returns the count. */
static int units_list(const struct dconv_plan *p, int n, struct dconv_unit **out)
{
    int cnt = 0;
    for (int k = 0; k < p->nclass; k++)
        cnt += (n + unit_maps(&p->cls[k]) - 1) / unit_maps(&p->cls[k]);
    struct dconv_unit *u = sn_malloc(sizeof(*u) * (size_t)SN_MAX(cnt, 1));
    cnt = 0;
    for (int k = 0; k < p->nclass; k++) {
        int step = unit_maps(&p->cls[k]);
        for (int m0 = 0; m0 < n; m0 += step)
            u[cnt++] = (struct dconv_unit){k, m0, SN_MIN(step, n - m0)};
    }
    *out = u;
    return cnt;
}

static void cols_gather(float *col, const float *x, const struct dconv_unit *u,
                        const struct dconv_plan *p, int c_in)
{
    const struct dconv_class *c = &p->cls[u->cls];
    const int g = p->g, r = p->r, K = c->ntaps * c_in;
    const long rows = (long)u->nm * c->ncells;
    int off[9];
    for (int k = 0; k < c->ntaps; k++)
        off[k] = (c->taps[k] / 3 - 1) * r * g + (c->taps[k] % 3 - 1) * r;

    for (long i = 0; i < rows; i++) {
        long m = u->m0 + i / c->ncells;
        int cell = c->cells[i % c->ncells];
        const float *xm = x + (size_t)m * g * g * c_in;
        float *dst = col + (size_t)i * K;
        for (int k = 0; k < c->ntaps; k++)
            memcpy(dst + (size_t)k * c_in, xm + (size_t)(cell + off[k]) * c_in,
                   sizeof(float) * c_in);
    }
}

/* dir 0: y[m][cell] = tmp[i] (+ b); dir 1: tmp[i] = y[m][cell]. */
static void rows_move(float *y, float *tmp, const float *b, const struct dconv_unit *u,
                      const struct dconv_plan *p, int ch, int dir)
{
    const struct dconv_class *c = &p->cls[u->cls];
    const long rows = (long)u->nm * c->ncells, gg = (long)p->g * p->g;
    for (long i = 0; i < rows; i++) {
        long m = u->m0 + i / c->ncells;
        float *cell = y + ((size_t)m * gg + c->cells[i % c->ncells]) * ch;
        float *t = tmp + (size_t)i * ch;
        if (dir) {
            memcpy(t, cell, sizeof(float) * ch);
        } else if (b) {
            for (int k = 0; k < ch; k++)
                cell[k] = t[k] + b[k];
        } else {
            memcpy(cell, t, sizeof(float) * ch);
        }
    }
}

/* Run fn on every unit, the OpenMP threads taking them round-robin, with
 * OpenBLAS single-threaded inside. */
typedef void (*unit_fn)(const struct dconv_unit *u, int tid, void *ctx);

static void units_run(const struct dconv_unit *units, int nu, int threads, unit_fn fn,
                      void *ctx)
{
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        for (int j = tid; j < nu; j += nth)
            fn(&units[j], tid, ctx);
    }
    openblas_set_num_threads(blas);
}

/* ------------------------------------------------------------------------ */
/* The convolution on packed weights ws->wr [c_out][9][c_in]. */

struct conv_job {
    float *y;
    const float *x, *b;
    int c_in, c_out;
    const struct dconv_plan *p;
    struct dconv_ws *ws;
};

static void conv_unit(const struct dconv_unit *u, int tid, void *ctx)
{
    struct conv_job *J = ctx;
    const struct dconv_class *c = &J->p->cls[u->cls];
    const int K = c->ntaps * J->c_in, rows = u->nm * c->ncells;
    float *col = J->ws->col + tid * J->ws->col_floats;
    float *tmp = J->ws->tmp + tid * J->ws->tmp_floats;

    cols_gather(col, J->x, u, J->p, J->c_in);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, J->c_out, K, 1.0f, col, K,
                J->ws->wc + u->cls * J->ws->wsz, K, 0.0f, tmp, J->c_out);
    rows_move(J->y, tmp, J->b, u, J->p, J->c_out, 0);
}

static void conv_packed(float *y, const float *x, const float *b, int n, int c_in,
                        int c_out, const struct dconv_plan *p, struct dconv_ws *ws,
                        int threads)
{
    struct dconv_unit *units;
    int nu = units_list(p, n, &units);
    for (int k = 0; k < p->nclass; k++)
        weight_class(ws->wc + k * ws->wsz, ws->wr, &p->cls[k], c_in, c_out);
    struct conv_job J = {y, x, b, c_in, c_out, p, ws};
    units_run(units, nu, threads, conv_unit, &J);
    sn_free(units);
}

void dconv_forward(float *y, const float *x, const float *w, const float *b, int n,
                   int c_in, int c_out, const struct dconv_plan *p, float *work,
                   int threads)
{
    if (p->r == 1) {
        dwino_forward(y, x, w, b, n, p->g, c_in, c_out, work, threads);
        return;
    }
    struct dconv_ws ws = ws_carve(work, p->g, n, c_in, c_out, threads);
    weight_pack(ws.wr, w, c_in, c_out, 0);
    conv_packed(y, x, b, n, c_in, c_out, p, &ws, threads);
}

/* ------------------------------------------------------------------------ */
/* Backward. */

/* db[o] += sum over all cells of dy[..][o], in cell order. */
static void bias_grad(float *db, const float *dy, long rows, int c_out)
{
    double *acc = sn_calloc((size_t)c_out, sizeof(double));
    for (long i = 0; i < rows; i++)
        for (int o = 0; o < c_out; o++)
            acc[o] += dy[i * c_out + o];
    for (int o = 0; o < c_out; o++)
        db[o] += (float)acc[o];
    sn_free(acc);
}

/* dw[o][i][taps[k]] += dwc[o][k][i]: a class's gradient, PyTorch layout. */
static void weight_grad_add(float *dw, const float *dwc, const struct dconv_class *c,
                            int c_in, int c_out)
{
    for (int o = 0; o < c_out; o++)
        for (int k = 0; k < c->ntaps; k++) {
            const float *src = dwc + ((size_t)o * c->ntaps + k) * c_in;
            for (int i = 0; i < c_in; i++)
                dw[((size_t)o * c_in + i) * 9 + c->taps[k]] += src[i];
        }
}

struct grad_job {
    const float *dy, *x;
    int c_in, c_out;
    const struct dconv_plan *p;
    struct dconv_ws *ws;
};

/* dW_class += dY_unit^T col_unit into the thread's own sum. */
static void grad_unit(const struct dconv_unit *u, int tid, void *ctx)
{
    struct grad_job *J = ctx;
    const struct dconv_class *c = &J->p->cls[u->cls];
    const int K = c->ntaps * J->c_in, rows = u->nm * c->ncells;
    float *col = J->ws->col + tid * J->ws->col_floats;
    float *tmp = J->ws->tmp + tid * J->ws->tmp_floats;
    float *acc = J->ws->dw + ((size_t)tid * DCONV_MAX_CLASSES + u->cls) * J->ws->wsz;

    cols_gather(col, J->x, u, J->p, J->c_in);
    rows_move((float *)J->dy, tmp, NULL, u, J->p, J->c_out, 1);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J->c_out, K, rows, 1.0f, tmp,
                J->c_out, col, K, 1.0f, acc, K);
}

static void weight_grad(float *dw, const float *dy, const float *x, int n, int c_in,
                        int c_out, const struct dconv_plan *p, struct dconv_ws *ws,
                        int threads)
{
    struct dconv_unit *units;
    int nu = units_list(p, n, &units);
    memset(ws->dw, 0, sizeof(float) * (size_t)threads * DCONV_MAX_CLASSES * ws->wsz);
    struct grad_job J = {dy, x, c_in, c_out, p, ws};
    units_run(units, nu, threads, grad_unit, &J);
    sn_free(units);

    /* The threads' sums in thread order, back in PyTorch's layout. */
    for (int t = 0; t < threads; t++)
        for (int k = 0; k < p->nclass; k++)
            weight_grad_add(dw, ws->dw + ((size_t)t * DCONV_MAX_CLASSES + k) * ws->wsz,
                            &p->cls[k], c_in, c_out);
}

void dconv_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int n, int c_in, int c_out,
                    const struct dconv_plan *p, float *work, int threads)
{
    if (db) bias_grad(db, dy, (long)n * p->g * p->g, c_out);
    if (p->r == 1) {
        dwino_backward(dx, dw, dy, x, w, n, p->g, c_in, c_out, work, threads);
        return;
    }
    struct dconv_ws ws = ws_carve(work, p->g, n, c_in, c_out, threads);
    weight_grad(dw, dy, x, n, c_in, c_out, p, &ws, threads);

    /* The input gradient: the same convolution, kernel flipped, channels
     * transposed (a tap valid from a cell is valid back to it). */
    if (dx) {
        weight_pack(ws.wr, w, c_in, c_out, 1);
        conv_packed(dx, dy, NULL, n, c_out, c_in, p, &ws, threads);
    }
}
