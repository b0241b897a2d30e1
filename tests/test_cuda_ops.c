/*
 * test_cuda_ops.c - parity of the device ViT operations (gpu.h) with their
 * CPU twins in kernels/ops.h: linear (and its backward against
 * conv1x1_backward), LayerNorm, bias + GELU, residual update, softmax,
 * attention, a whole ViT block (against the same sequence of ops_* calls as
 * core/vit.c) and the token embedding. Random inputs, odd sizes (not
 * multiples of the warp or block widths).
 *
 * Tolerances. The GEMM-based results add up to 3072 products in another
 * order than OpenBLAS: differences are a few 1e-6 of the magnitude of a
 * row, so they are compared with rtol 1e-4 plus atol 1e-5 of the largest
 * magnitude (for entries that cancel to near zero). Element-wise kernels
 * use libm's expf / erff where the CPU uses polynomials accurate to a few
 * ulps (erf to 1.5e-7 absolute): atol 2e-6, rtol 1e-5.
 */
#include <math.h>
#include <omp.h>

#include "kernels/layers.h"
#include "kernels/ops.h"
#include "test_cuda_util.h"

#define GEMM_RTOL 1e-4
#define GEMM_ATOL_REL 1e-5
#define ELEM_ATOL 2e-6
#define ELEM_RTOL 1e-5

static void close_gemm(const char *what, const float *got, const float *want, long n)
{
    TU_CLOSE(what, got, want, n, GEMM_ATOL_REL * tcu_max_abs(want, n), GEMM_RTOL);
}

/* ---- linear --------------------------------------------------------------- */

static void test_linear(void)
{
    const int n = 67, in = 96, out = 130;
    float *x = tcu_randn((long)n * in, 0, 1), *w = tcu_randn((long)out * in, 0, 0.1f);
    float *b = tcu_randn(out, 0, 1), *y = tcu_floats((long)n * out);
    float *dx = tcu_dev(x, (long)n * in), *dw = tcu_dev(w, (long)out * in);
    float *db = tcu_dev(b, out), *dy = tcu_dev_zero((long)n * out);

    /* with and without bias */
    ops_linear(x, n, in, w, b, out, y);
    gpu_linear(tcu_g, dx, n, in, dw, db, out, dy);
    close_gemm("linear + bias", tcu_back(dy, (long)n * out), y, (long)n * out);
    ops_linear(x, n, in, w, NULL, out, y);
    gpu_linear(tcu_g, dx, n, in, dw, NULL, out, dy);
    close_gemm("linear", tcu_back(dy, (long)n * out), y, (long)n * out);
}

static void test_linear_backward(void)
{
    const int n = 301, in = 40, out = 33;
    float *x = tcu_randn((long)n * in, 0, 1), *w = tcu_randn((long)out * in, 0, 0.2f);
    float *gy = tcu_randn((long)n * out, 0, 1);
    float *gw = tcu_randn((long)out * in, 0, 1), *gb = tcu_randn(out, 0, 1);
    float *gx = tcu_floats((long)n * in);
    float *d_x = tcu_dev(x, (long)n * in), *d_w = tcu_dev(w, (long)out * in);
    float *d_gy = tcu_dev(gy, (long)n * out), *d_gw = tcu_dev(gw, (long)out * in);
    float *d_gb = tcu_dev(gb, out), *d_gx = tcu_dev_zero((long)n * in);

    /* the gradients accumulate onto the existing dw, db; dx is written */
    conv1x1_backward(gx, gw, gb, gy, x, w, n, in, out);
    gpu_linear_backward(tcu_g, d_gx, d_gw, d_gb, d_gy, d_x, d_w, n, in, out);
    close_gemm("linear backward dx", tcu_back(d_gx, (long)n * in), gx, (long)n * in);
    close_gemm("linear backward dw (accumulated)", tcu_back(d_gw, (long)out * in), gw,
               (long)out * in);
    /* column sums in double on both sides, then one float rounding */
    TU_CLOSE("linear backward db (accumulated)", tcu_back(d_gb, out), gb, out, 1e-6,
             1e-6);
}

/* ---- row and element-wise kernels ---------------------------------------- */

static void test_layernorm(void)
{
    const int n = 50, d = 201;
    float *x = tcu_randn((long)n * d, 0.5f, 2), *w = tcu_randn(d, 1, 0.2f);
    float *b = tcu_randn(d, 0, 0.2f), *y = tcu_floats((long)n * d);
    float *dx = tcu_dev(x, (long)n * d);

    ops_layernorm(x, n, d, w, b, 1e-6f, y);
    /* in place, as the CPU allows */
    gpu_layernorm(tcu_g, dx, n, d, tcu_dev(w, d), tcu_dev(b, d), 1e-6f, dx);
    /* float sums of 201 values in another order: a few ulps of the mean */
    TU_CLOSE("layernorm (in place)", tcu_back(dx, (long)n * d), y, (long)n * d, 1e-5,
             1e-5);
}

static void test_bias_gelu(void)
{
    const int n = 40, d = 300;
    float *x = tcu_randn((long)n * d, 0, 2), *b = tcu_randn(d, 0, 0.5f);
    float *dx = tcu_dev(x, (long)n * d), *dx2 = tcu_dev(x, (long)n * d);
    float *y = tcu_copy(x, (long)n * d), *y2 = tcu_copy(x, (long)n * d);

    ops_bias_gelu(y, n, d, b);
    gpu_bias_gelu(tcu_g, dx, n, d, tcu_dev(b, d));
    TU_CLOSE("bias + gelu", tcu_back(dx, (long)n * d), y, (long)n * d, ELEM_ATOL,
             ELEM_RTOL);
    ops_bias_gelu(y2, n, d, NULL);
    gpu_bias_gelu(tcu_g, dx2, n, d, NULL);
    TU_CLOSE("gelu", tcu_back(dx2, (long)n * d), y2, (long)n * d, ELEM_ATOL, ELEM_RTOL);
}

static void test_residual_add(void)
{
    const int n = 33, d = 70;
    long nd = (long)n * d;
    float *x = tcu_randn(nd, 0, 1), *y = tcu_randn(nd, 0, 1);
    float *b = tcu_randn(d, 0, 1), *gm = tcu_randn(d, 1, 0.3f);
    float *dx = tcu_dev(x, nd), *dy = tcu_dev(y, nd);

    /* gamma * (y + bias): two roundings either way, at most an FMA apart */
    ops_residual_add(x, y, n, d, b, gm);
    gpu_residual_add(tcu_g, dx, dy, n, d, tcu_dev(b, d), tcu_dev(gm, d));
    TU_CLOSE("residual add (bias, gamma)", tcu_back(dx, nd), x, nd, 1e-6, 1e-6);
    ops_residual_add(x, y, n, d, NULL, NULL);
    gpu_residual_add(tcu_g, dx, dy, n, d, NULL, NULL);
    TU_CLOSE("residual add (plain)", tcu_back(dx, nd), x, nd, 1e-6, 1e-6);
}

static void test_softmax(void)
{
    const int n = 30, d = 257;
    float *x = tcu_randn((long)n * d, 0, 4), *dx = tcu_dev(x, (long)n * d);
    ops_softmax_rows(x, n, d, 0.125f);
    gpu_softmax_rows(tcu_g, dx, n, d, 0.125f);
    TU_CLOSE("softmax rows", tcu_back(dx, (long)n * d), x, (long)n * d, 1e-7, ELEM_RTOL);
}

static void test_attention(void)
{
    const int b = 2, t = 37, dim = 96, heads = 4;
    long nq = (long)b * t * 3 * dim, no = (long)b * t * dim;
    float *qkv = tcu_randn(nq, 0, 1), *out = tcu_floats(no);
    float *cpu_scratch =
        tcu_floats((long)omp_get_max_threads() * ops_attention_scratch(t));
    float *d_out = tcu_dev_zero(no);
    float *d_scr = gpu_arena_floats(&tcu_mem, gpu_attention_scratch_floats(t, heads));

    ops_attention(qkv, b, t, dim, heads, out, cpu_scratch);
    gpu_attention(tcu_g, tcu_dev(qkv, nq), b, t, dim, heads, d_out, d_scr);
    close_gemm("attention", tcu_back(d_out, no), out, no);
}

/* ---- a ViT block and the embedding ---------------------------------------- */

struct block_host {
    float *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
    float *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
};

static void block_random(struct block_host *h, int d, int hid)
{
    h->n1w = tcu_randn(d, 1, 0.1f), h->n1b = tcu_randn(d, 0, 0.1f);
    h->qkv_w = tcu_randn(3L * d * d, 0, 0.1f), h->qkv_b = tcu_randn(3L * d, 0, 0.1f);
    h->proj_w = tcu_randn((long)d * d, 0, 0.1f), h->proj_b = tcu_randn(d, 0, 0.1f);
    h->ls1 = tcu_randn(d, 0.5f, 0.2f);
    h->n2w = tcu_randn(d, 1, 0.1f), h->n2b = tcu_randn(d, 0, 0.1f);
    h->fc1_w = tcu_randn((long)hid * d, 0, 0.1f), h->fc1_b = tcu_randn(hid, 0, 0.1f);
    h->fc2_w = tcu_randn((long)d * hid, 0, 0.05f), h->fc2_b = tcu_randn(d, 0, 0.1f);
    h->ls2 = tcu_randn(d, 0.5f, 0.2f);
}

static struct gpu_vit_block block_upload(const struct block_host *h, int d, int hid)
{
    struct gpu_vit_block b = {.n1w = tcu_dev(h->n1w, d),
                              .n1b = tcu_dev(h->n1b, d),
                              .qkv_w = tcu_dev(h->qkv_w, 3L * d * d),
                              .qkv_b = tcu_dev(h->qkv_b, 3L * d),
                              .proj_w = tcu_dev(h->proj_w, (long)d * d),
                              .proj_b = tcu_dev(h->proj_b, d),
                              .ls1 = tcu_dev(h->ls1, d),
                              .n2w = tcu_dev(h->n2w, d),
                              .n2b = tcu_dev(h->n2b, d),
                              .fc1_w = tcu_dev(h->fc1_w, (long)hid * d),
                              .fc1_b = tcu_dev(h->fc1_b, hid),
                              .fc2_w = tcu_dev(h->fc2_w, (long)d * hid),
                              .fc2_b = tcu_dev(h->fc2_b, d),
                              .ls2 = tcu_dev(h->ls2, d)};
    return b;
}

/* The block as core/vit.c runs it on the CPU. */
static void block_cpu(const struct block_host *b, const struct gpu_vit_shape *s, float *x)
{
    const int m = s->n * s->t, d = s->dim, h = s->hidden;
    float *xn = tcu_floats((long)m * d), *qkv = tcu_floats((long)m * 3 * d);
    float *hid = tcu_floats((long)m * h);
    float *scr = tcu_floats((long)omp_get_max_threads() * ops_attention_scratch(s->t));

    ops_layernorm(x, m, d, b->n1w, b->n1b, s->eps, xn);
    ops_linear(xn, m, d, b->qkv_w, b->qkv_b, 3 * d, qkv);
    ops_attention(qkv, s->n, s->t, d, s->heads, xn, scr);
    ops_linear(xn, m, d, b->proj_w, NULL, d, qkv);
    ops_residual_add(x, qkv, m, d, b->proj_b, b->ls1);
    ops_layernorm(x, m, d, b->n2w, b->n2b, s->eps, xn);
    ops_linear(xn, m, d, b->fc1_w, NULL, h, hid);
    ops_bias_gelu(hid, m, h, b->fc1_b);
    ops_linear(hid, m, h, b->fc2_w, NULL, d, xn);
    ops_residual_add(x, xn, m, d, b->fc2_b, b->ls2);
}

static void test_vit_block(void)
{
    struct gpu_vit_shape s = {2, 29, 64, 4, 256, 1e-6f};
    long nx = (long)s.n * s.t * s.dim;
    struct block_host h;
    block_random(&h, s.dim, s.hidden);
    struct gpu_vit_block b = block_upload(&h, s.dim, s.hidden);
    float *x = tcu_randn(nx, 0, 1), *dx = tcu_dev(x, nx);
    float *work = gpu_arena_floats(&tcu_mem, gpu_vit_block_work_floats(&s));

    /* two blocks in a row, so errors of the first feed the second */
    for (int rep = 0; rep < 2; rep++) {
        block_cpu(&h, &s, x);
        gpu_vit_block_forward(tcu_g, &b, &s, dx, work);
    }
    close_gemm("ViT block x2", tcu_back(dx, nx), x, nx);
}

/* The embedding on the CPU: vit_embed's arithmetic, written as loops. */
static void embed_cpu(const float *chw, int n, int size, int p, int dim, int n_reg,
                      const float *pw, const float *pb, const float *pos,
                      const float *cls, const float *cls_pos, const float *reg, float *x)
{
    const int g = size / p, t = 1 + n_reg + g * g, k = 3 * p * p;
    for (int s = 0; s < n; s++)
        for (int r = 0; r < t; r++)
            for (int j = 0; j < dim; j++) {
                float *o = x + ((size_t)s * t + r) * dim + j;
                if (r == 0) {
                    *o = cls[j] + cls_pos[j];
                    continue;
                }
                if (r <= n_reg) {
                    *o = reg[(size_t)(r - 1) * dim + j];
                    continue;
                }
                int pi = r - 1 - n_reg, py = pi / g, px = pi % g;
                double acc = 0;
                for (int kk = 0; kk < k; kk++) {
                    int c = kk / (p * p), ky = (kk / p) % p, kx = kk % p;
                    acc += (double)pw[(size_t)j * k + kk] *
                           chw[(((size_t)s * 3 + c) * size + py * p + ky) * size +
                               px * p + kx];
                }
                *o = (float)acc + (pos[(size_t)pi * dim + j] + pb[j]);
            }
}

static void test_vit_embed(void)
{
    const int n = 2, size = 30, p = 7, dim = 24, n_reg = 4, g = size / p;
    const int t = 1 + n_reg + g * g, k = 3 * p * p;
    float *chw = tcu_randn((long)n * 3 * size * size, 0, 1);
    float *pw = tcu_randn((long)dim * k, 0, 0.1f), *pb = tcu_randn(dim, 0, 1);
    float *pos = tcu_randn((long)g * g * dim, 0, 1), *cls = tcu_randn(dim, 0, 1);
    float *cls_pos = tcu_randn(dim, 0, 1), *reg = tcu_randn((long)n_reg * dim, 0, 1);
    float *x = tcu_floats((long)n * t * dim), *dx = tcu_dev_zero((long)n * t * dim);

    embed_cpu(chw, n, size, p, dim, n_reg, pw, pb, pos, cls, cls_pos, reg, x);
    struct gpu_vit_embed e = {.patch_w = tcu_dev(pw, (long)dim * k),
                              .patch_b = tcu_dev(pb, dim),
                              .pos = tcu_dev(pos, (long)g * g * dim),
                              .cls = tcu_dev(cls, dim),
                              .cls_pos = tcu_dev(cls_pos, dim),
                              .reg = tcu_dev(reg, (long)n_reg * dim),
                              .dim = dim,
                              .patch = p,
                              .n_reg = n_reg};
    float *work = gpu_arena_floats(&tcu_mem, gpu_vit_embed_work_floats(n, size, p));
    gpu_vit_embed_forward(tcu_g, &e, tcu_dev(chw, (long)n * 3 * size * size), n, size, dx,
                          work);
    /* the reference sums in double: the device's float GEMM of 147 terms */
    close_gemm("ViT embedding", tcu_back(dx, (long)n * t * dim), x, (long)n * t * dim);
}

int main(void)
{
    tcu_start("test_cuda_ops", 9);
    test_linear();
    test_linear_backward();
    test_layernorm();
    test_bias_gelu();
    test_residual_add();
    test_softmax();
    test_attention();
    test_vit_block();
    test_vit_embed();
    return tcu_finish("test_cuda_ops");
}
