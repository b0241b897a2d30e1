/*
 * decoder_wino.c - the undilated 3 x 3 convolution of the SMBs by
 * Winograd's minimal filtering F(2 x 2, 3 x 3) (see decoder_conv.h).
 *
 * Each 2 x 2 block of output cells (a tile) is computed from the 4 x 4
 * input cells around it: V = B^T d B (per input channel), U = G g G^T (per
 * channel pair), M = V . U summed over the input channels, Y = A^T M A.
 * The sum over channels is, for each of the 16 positions xi of the 4 x 4
 * transform, one GEMM (tiles x c_in) x (c_in x c_out): 16 products per tile
 * instead of the 36 of a direct 3 x 3 convolution, 2.25 times fewer
 * multiplications. The transforms only add and halve, so F(2 x 2, 3 x 3)
 * loses little precision (about twice the rounding of the direct sum).
 *
 * Backward: the input gradient is the forward transform applied to dy with
 * the flipped, channel-transposed kernel; the weight gradient transforms the
 * input tiles (V) and the output gradient's tiles (dM = A dY A^T), sums
 * V^T dM per position with one GEMM each, and maps the sum back through G:
 * dg = G^T dU G.
 *
 * Threads: units of whole maps go round-robin to the OpenMP threads, each
 * with single-threaded GEMMs; the weight gradient is summed per thread and
 * the threads' sums added in thread order (deterministic for a given count).
 */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "decoder_conv.h"

/* Tiles per unit of work: about 2000 rows for each of the 16 GEMMs. */
#define WINO_TILES 2048

static int tiles_side(int g)
{
    return (g + 1) / 2;
}

static int unit_maps(int g)
{
    int tp = tiles_side(g) * tiles_side(g);
    return SN_MAX(1, WINO_TILES / tp);
}

struct wino_ws {
    float *U;      /* 16 x c_in x c_out   transformed weights */
    float *wflip;  /* c_in x c_out x 9    the input gradient's kernel */
    float *dU;     /* threads x 16 x c_in x c_out */
    float *zero;   /* c_max zeros: the padding */
    float *V, *Mt; /* per thread: 16 x tiles x c_max each */
    size_t vm_floats, usz;
};

size_t dwino_work_floats(int g, int n, int c_in, int c_out, int threads)
{
    size_t cmax = (size_t)SN_MAX(c_in, c_out), usz = 16 * (size_t)c_in * c_out;
    size_t tiles = (size_t)SN_MIN(n, unit_maps(g)) * tiles_side(g) * tiles_side(g);
    size_t nt = (size_t)SN_MAX(threads, 1);
    return usz + 9 * (size_t)c_in * c_out + nt * usz + cmax + nt * 2 * 16 * tiles * cmax;
}

static struct wino_ws wino_carve(float *work, int g, int n, int c_in, int c_out,
                                 int threads)
{
    size_t cmax = (size_t)SN_MAX(c_in, c_out);
    size_t tiles = (size_t)SN_MIN(n, unit_maps(g)) * tiles_side(g) * tiles_side(g);
    struct wino_ws w;
    w.usz = 16 * (size_t)c_in * c_out;
    w.vm_floats = 16 * tiles * cmax;
    w.U = work;
    w.wflip = w.U + w.usz;
    w.dU = w.wflip + 9 * (size_t)c_in * c_out;
    w.zero = w.dU + (size_t)threads * w.usz;
    w.V = w.zero + cmax;
    w.Mt = w.V + (size_t)threads * w.vm_floats;
    memset(w.zero, 0, sizeof(float) * cmax);
    return w;
}

/* ------------------------------------------------------------------------ */
/* Transforms. */

/* U[xi][i][o] = (G g G^T)[xi] for g = w[o][i] (3 x 3). */
static void wino_weights(float *U, const float *w, int c_in, int c_out)
{
    const size_t plane = (size_t)c_in * c_out;
    for (int o = 0; o < c_out; o++)
        for (int i = 0; i < c_in; i++) {
            const float *g = w + ((size_t)o * c_in + i) * 9;
            float t[4][3], u[4][4];
            for (int k = 0; k < 3; k++) {
                t[0][k] = g[k];
                t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
                t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
                t[3][k] = g[6 + k];
            }
            for (int a = 0; a < 4; a++) {
                u[a][0] = t[a][0];
                u[a][1] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
                u[a][2] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
                u[a][3] = t[a][2];
            }
            for (int xi = 0; xi < 16; xi++)
                U[xi * plane + (size_t)i * c_out + o] = u[xi / 4][xi % 4];
        }
}

/* The 16 cell pointers of the input tile (padding points at zero). */
static void tile_cells(const float **p, const float *xm, int ty, int tx, int g, int c,
                       const float *zero)
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            int y = 2 * ty - 1 + i, x = 2 * tx - 1 + j;
            p[i * 4 + j] =
                y >= 0 && y < g && x >= 0 && x < g ? xm + ((size_t)y * g + x) * c : zero;
        }
}

/* V[xi][tile][c] = (B^T d B)[xi] for the unit's tiles. */
static void wino_input(float *V, const float *x, int m0, int nm, int g, int c,
                       const float *zero)
{
    const int ts = tiles_side(g);
    const size_t T = (size_t)nm * ts * ts;
    const float *p[16];
    for (int m = 0; m < nm; m++)
        for (int ty = 0; ty < ts; ty++)
            for (int tx = 0; tx < ts; tx++) {
                size_t tile = ((size_t)m * ts + ty) * ts + tx;
                tile_cells(p, x + (size_t)(m0 + m) * g * g * c, ty, tx, g, c, zero);
                for (int k = 0; k < c; k++) {
                    float d[16], t[16];
                    for (int q = 0; q < 16; q++)
                        d[q] = p[q][k];
                    for (int j = 0; j < 4; j++) { /* B^T d */
                        t[j] = d[j] - d[8 + j];
                        t[4 + j] = d[4 + j] + d[8 + j];
                        t[8 + j] = d[8 + j] - d[4 + j];
                        t[12 + j] = d[4 + j] - d[12 + j];
                    }
                    for (int i = 0; i < 4; i++) { /* (B^T d) B */
                        float *vi = V + (size_t)(i * 4) * T * c + tile * c + k;
                        vi[0] = t[i * 4] - t[i * 4 + 2];
                        vi[T * c] = t[i * 4 + 1] + t[i * 4 + 2];
                        vi[2 * T * c] = t[i * 4 + 2] - t[i * 4 + 1];
                        vi[3 * T * c] = t[i * 4 + 1] - t[i * 4 + 3];
                    }
                }
            }
}

/* y cells of the unit's tiles = A^T M A (+ b), the cells inside the grid. */
static void wino_output(float *y, const float *Mt, const float *b, int m0, int nm, int g,
                        int c)
{
    const int ts = tiles_side(g);
    const size_t T = (size_t)nm * ts * ts;
    for (int m = 0; m < nm; m++)
        for (int ty = 0; ty < ts; ty++)
            for (int tx = 0; tx < ts; tx++) {
                size_t tile = ((size_t)m * ts + ty) * ts + tx;
                float *ym = y + (size_t)(m0 + m) * g * g * c;
                int ny = SN_MIN(2, g - 2 * ty), nx = SN_MIN(2, g - 2 * tx);
                for (int k = 0; k < c; k++) {
                    float v[16], u[8];
                    for (int q = 0; q < 16; q++)
                        v[q] = Mt[(size_t)q * T * c + tile * c + k];
                    for (int j = 0; j < 4; j++) { /* A^T M */
                        u[j] = v[j] + v[4 + j] + v[8 + j];
                        u[4 + j] = v[4 + j] - v[8 + j] - v[12 + j];
                    }
                    float bias = b ? b[k] : 0.0f;
                    for (int a = 0; a < ny; a++) { /* (A^T M) A */
                        float o0 = u[a * 4] + u[a * 4 + 1] + u[a * 4 + 2];
                        float o1 = u[a * 4 + 1] - u[a * 4 + 2] - u[a * 4 + 3];
                        float *row = ym + ((size_t)(2 * ty + a) * g + 2 * tx) * c + k;
                        row[0] = o0 + bias;
                        if (nx > 1) row[c] = o1 + bias;
                    }
                }
            }
}

/* dM[xi][tile][c] = (A dY A^T)[xi]: dY's 2 x 2 tile, zero outside the grid. */
static void wino_dout(float *dM, const float *dy, int m0, int nm, int g, int c,
                      const float *zero)
{
    const int ts = tiles_side(g);
    const size_t T = (size_t)nm * ts * ts;
    for (int m = 0; m < nm; m++)
        for (int ty = 0; ty < ts; ty++)
            for (int tx = 0; tx < ts; tx++) {
                size_t tile = ((size_t)m * ts + ty) * ts + tx;
                const float *p[4];
                for (int a = 0; a < 4; a++) {
                    int yy = 2 * ty + a / 2, xx = 2 * tx + a % 2;
                    p[a] = yy < g && xx < g
                               ? dy + ((size_t)(m0 + m) * g * g + (size_t)yy * g + xx) * c
                               : zero;
                }
                for (int k = 0; k < c; k++) {
                    float e[8];
                    for (int b = 0; b < 2; b++) { /* A dY */
                        e[b] = p[b][k];
                        e[2 + b] = p[b][k] + p[2 + b][k];
                        e[4 + b] = p[b][k] - p[2 + b][k];
                        e[6 + b] = -p[2 + b][k];
                    }
                    for (int i = 0; i < 4; i++) { /* (A dY) A^T */
                        float *di = dM + (size_t)(i * 4) * T * c + tile * c + k;
                        di[0] = e[i * 2];
                        di[T * c] = e[i * 2] + e[i * 2 + 1];
                        di[2 * T * c] = e[i * 2] - e[i * 2 + 1];
                        di[3 * T * c] = -e[i * 2 + 1];
                    }
                }
            }
}

/* dw[o][i] += G^T dU[.][i][o] G, for the summed dU (16 x c_in x c_out). */
static void wino_weight_grad(float *dw, const float *dU, int c_in, int c_out)
{
    const size_t plane = (size_t)c_in * c_out;
    for (int o = 0; o < c_out; o++)
        for (int i = 0; i < c_in; i++) {
            float u[16], h[12];
            for (int xi = 0; xi < 16; xi++)
                u[xi] = dU[xi * plane + (size_t)i * c_out + o];
            for (int j = 0; j < 4; j++) { /* G^T dU */
                h[j] = u[j] + 0.5f * (u[4 + j] + u[8 + j]);
                h[4 + j] = 0.5f * (u[4 + j] - u[8 + j]);
                h[8 + j] = 0.5f * (u[4 + j] + u[8 + j]) + u[12 + j];
            }
            float *g = dw + ((size_t)o * c_in + i) * 9;
            for (int k = 0; k < 3; k++) { /* (G^T dU) G */
                g[k * 3] += h[k * 4] + 0.5f * (h[k * 4 + 1] + h[k * 4 + 2]);
                g[k * 3 + 1] += 0.5f * (h[k * 4 + 1] - h[k * 4 + 2]);
                g[k * 3 + 2] += 0.5f * (h[k * 4 + 1] + h[k * 4 + 2]) + h[k * 4 + 3];
            }
        }
}

/* ------------------------------------------------------------------------ */
/* The passes. */

struct wino_job {
    float *y;
    const float *x, *b, *dy;
    int n, g, c_in, c_out;
    struct wino_ws *ws;
};

typedef void (*wino_unit_fn)(struct wino_job *J, int m0, int nm, int tid);

/* Units of whole maps round-robin over the threads, OpenBLAS on one. */
static void wino_run(struct wino_job *J, int threads, wino_unit_fn fn)
{
    const int step = unit_maps(J->g), nu = (J->n + step - 1) / step;
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        for (int u = tid; u < nu; u += nth)
            fn(J, u * step, SN_MIN(step, J->n - u * step), tid);
    }
    openblas_set_num_threads(blas);
}

static void forward_unit(struct wino_job *J, int m0, int nm, int tid)
{
    struct wino_ws *ws = J->ws;
    const int ts = tiles_side(J->g), T = nm * ts * ts;
    float *V = ws->V + tid * ws->vm_floats, *Mt = ws->Mt + tid * ws->vm_floats;
    const size_t plane = (size_t)J->c_in * J->c_out;

    wino_input(V, J->x, m0, nm, J->g, J->c_in, ws->zero);
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, J->c_out, J->c_in, 1.0f,
                    V + (size_t)xi * T * J->c_in, J->c_in, ws->U + xi * plane, J->c_out,
                    0.0f, Mt + (size_t)xi * T * J->c_out, J->c_out);
    wino_output(J->y, Mt, J->b, m0, nm, J->g, J->c_out);
}

void dwino_forward(float *y, const float *x, const float *w, const float *b, int n, int g,
                   int c_in, int c_out, float *work, int threads)
{
    struct wino_ws ws = wino_carve(work, g, n, c_in, c_out, threads);
    wino_weights(ws.U, w, c_in, c_out);
    struct wino_job J = {y, x, b, NULL, n, g, c_in, c_out, &ws};
    wino_run(&J, threads, forward_unit);
}

/* dU (this thread's) += V^T dM for each position. */
static void grad_unit(struct wino_job *J, int m0, int nm, int tid)
{
    struct wino_ws *ws = J->ws;
    const int ts = tiles_side(J->g), T = nm * ts * ts;
    float *V = ws->V + tid * ws->vm_floats, *dM = ws->Mt + tid * ws->vm_floats;
    float *dU = ws->dU + tid * ws->usz;
    const size_t plane = (size_t)J->c_in * J->c_out;

    wino_input(V, J->x, m0, nm, J->g, J->c_in, ws->zero);
    wino_dout(dM, J->dy, m0, nm, J->g, J->c_out, ws->zero);
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J->c_in, J->c_out, T, 1.0f,
                    V + (size_t)xi * T * J->c_in, J->c_in, dM + (size_t)xi * T * J->c_out,
                    J->c_out, 1.0f, dU + xi * plane, J->c_out);
}

void dwino_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    int n, int g, int c_in, int c_out, float *work, int threads)
{
    struct wino_ws ws = wino_carve(work, g, n, c_in, c_out, threads);

    /* Weight gradient: per-thread sums of V^T dM, added in thread order. */
    memset(ws.dU, 0, sizeof(float) * (size_t)threads * ws.usz);
    struct wino_job J = {NULL, x, NULL, dy, n, g, c_in, c_out, &ws};
    wino_run(&J, threads, grad_unit);
    for (int t = 1; t < threads; t++)
        for (size_t k = 0; k < ws.usz; k++)
            ws.dU[k] += ws.dU[t * ws.usz + k];
    wino_weight_grad(dw, ws.dU, c_in, c_out);

    /* Input gradient: the forward transform with the flipped kernel. */
    if (!dx) return;
    for (int o = 0; o < c_out; o++)
        for (int i = 0; i < c_in; i++)
            for (int t = 0; t < 9; t++)
                ws.wflip[((size_t)i * c_out + o) * 9 + (8 - t)] =
                    w[((size_t)o * c_in + i) * 9 + t];
    wino_weights(ws.U, ws.wflip, c_out, c_in);
    struct wino_job Jx = {dx, dy, NULL, NULL, n, g, c_out, c_in, &ws};
    wino_run(&Jx, threads, forward_unit);
}
