/*
 * Unit tests of the backbone kernels and loaders that need neither PyTorch
 * nor ../shared: every kernel against a naive double-precision version,
 * the safetensors reader (dtypes, metadata, errors) on files written here,
 * SHA-256 test vectors, and the backbone's error messages and random
 * initialisation.
 */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/backbone.h"
#include "core/common.h"
#include "core/config.h"
#include "core/resnet.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/vit.h"
#include "kernels/ops.h"
#include "testutil.h"

static struct rng_state rng;

static float *randn(long n, float scale)
{
    float *x = sn_aligned(sizeof(float) * (size_t)n);
    rng_fill_normal(&rng, x, n, scale);
    return x;
}

/* ------------------------------------------------------------------------ */
/* Scalar functions */

static void test_exp_erf_gelu(void)
{
    double worst_exp = 0, worst_erf = 0, worst_gelu = 0;
    for (int i = 0; i <= 20000; i++) {
        double x = -87.0 + 175.0 * i / 20000.0;
        worst_exp = fmax(worst_exp, fabs(ops_expf((float)x) / exp((float)x) - 1));
        double e = -6.0 + 12.0 * i / 20000.0;
        worst_erf = fmax(worst_erf, fabs(ops_erff((float)e) - erf((float)e)));
        double g = 0.5 * (float)e * (1 + erf((float)e / sqrt(2.0)));
        worst_gelu = fmax(worst_gelu, fabs(ops_gelu((float)e) - g) / fmax(1, fabs(e)));
    }
    printf("  exp max rel err %.2g, erf max abs err %.2g, gelu %.2g\n", worst_exp,
           worst_erf, worst_gelu);
    TU_CHECK(worst_exp < 1e-6);
    TU_CHECK(worst_erf < 2e-7);
    TU_CHECK(worst_gelu < 5e-7);
    TU_CHECK(ops_expf(-200.0f) < 1e-37f);
}

/* ------------------------------------------------------------------------ */
/* Row kernels */

static void test_layernorm_softmax(void)
{
    const int n = 37, d = 70;
    float *x = randn(n * d, 3.0f), *w = randn(d, 1.0f), *b = randn(d, 1.0f);
    float *y = sn_aligned(sizeof(float) * n * d),
          *want = sn_aligned(sizeof(float) * n * d);
    for (int i = 0; i < n * d; i++)
        x[i] += 5.0f; /* a mean far from 0 */
    ops_layernorm(x, n, d, w, b, 1e-6f, y);
    for (int i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < d; j++)
            m += x[i * d + j] / (double)d;
        for (int j = 0; j < d; j++)
            v += (x[i * d + j] - m) * (x[i * d + j] - m) / d;
        for (int j = 0; j < d; j++)
            want[i * d + j] = (float)((x[i * d + j] - m) / sqrt(v + 1e-6) * w[j] + b[j]);
    }
    TU_CLOSE("layernorm", y, want, n * d, 1e-5, 1e-5);

    /* Softmax with a scale, against double. */
    memcpy(y, x, sizeof(float) * n * d);
    ops_softmax_rows(y, n, d, 0.7f);
    for (int i = 0; i < n; i++) {
        double mx = -1e30, s = 0;
        for (int j = 0; j < d; j++)
            mx = fmax(mx, x[i * d + j]);
        for (int j = 0; j < d; j++)
            s += exp(0.7 * (x[i * d + j] - mx));
        for (int j = 0; j < d; j++)
            want[i * d + j] = (float)(exp(0.7 * (x[i * d + j] - mx)) / s);
    }
    TU_CLOSE("softmax", y, want, n * d, 1e-7, 1e-5);
    sn_free(x);
    sn_free(w);
    sn_free(b);
    sn_free(y);
    sn_free(want);
}

static void test_residual_gelu_swiglu(void)
{
    const int n = 5, d = 19;
    float *x = randn(n * 2 * d, 2.0f), *y = randn(n * d, 1.0f), *b = randn(2 * d, 1.0f);
    float *g = randn(d, 1.0f), *out = sn_aligned(sizeof(float) * n * 2 * d);
    float *want = sn_aligned(sizeof(float) * n * 2 * d);

    memcpy(out, x, sizeof(float) * n * d);
    ops_residual_add(out, y, n, d, b, g);
    for (int i = 0; i < n * d; i++)
        want[i] = x[i] + g[i % d] * (y[i] + b[i % d]);
    TU_CLOSE("residual add", out, want, n * d, 1e-6, 1e-6);

    memcpy(out, x, sizeof(float) * n * d);
    ops_bias_gelu(out, n, d, b);
    for (int i = 0; i < n * d; i++) {
        double v = x[i] + b[i % d];
        want[i] = (float)(0.5 * v * (1 + erf(v / sqrt(2.0))));
    }
    TU_CLOSE("bias + exact gelu", out, want, n * d, 1e-6, 1e-6);

    ops_swiglu(x, n, d, b, out);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double a = x[i * 2 * d + j] + b[j], c = x[i * 2 * d + d + j] + b[d + j];
            want[i * d + j] = (float)(a / (1 + exp(-a)) * c);
        }
    TU_CLOSE("swiglu", out, want, n * d, 1e-6, 1e-5);
    sn_free(x);
    sn_free(y);
    sn_free(b);
    sn_free(g);
    sn_free(out);
    sn_free(want);
}

/* ------------------------------------------------------------------------ */
/* Products and attention */

static void test_sgemm_split(void)
{
    const int m = 203, n = 45, k = 33;
    float *a = randn(m * k, 1.0f), *b = randn(k * n, 1.0f), *c = randn(m * n, 1.0f);
    float *want = sn_aligned(sizeof(float) * m * n);
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int l = 0; l < k; l++)
                    s += (double)(ta ? a[l * m + i] : a[i * k + l]) *
                         (tb ? b[j * k + l] : b[l * n + j]);
                want[i * n + j] = (float)(0.5 * s);
            }
        ops_sgemm(ta, tb, m, n, k, 0.5f, a, ta ? m : k, b, tb ? k : n, 0.0f, c, n);
        char what[64];
        snprintf(what, sizeof what, "sgemm split transA %d transB %d", ta, tb);
        TU_CLOSE(what, c, want, m * n, 1e-5, 1e-5);
    }
    sn_free(a);
    sn_free(b);
    sn_free(c);
    sn_free(want);
}

static void test_attention(void)
{
    const int b = 2, t = 131, dim = 24, heads = 3, hd = dim / heads;
    float *qkv = randn((long)b * t * 3 * dim, 1.0f);
    float *out = sn_aligned(sizeof(float) * b * t * dim);
    float *want = sn_aligned(sizeof(float) * b * t * dim);
    float *scratch = sn_aligned(sizeof(float) * omp_get_max_threads() *
                                (size_t)ops_attention_scratch(t));
    double *p = sn_malloc(sizeof(double) * t);
    ops_attention(qkv, b, t, dim, heads, out, scratch);
    for (int s = 0; s < b; s++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < t; i++) {
                const float *q = qkv + ((long)s * t + i) * 3 * dim + h * hd;
                double mx = -1e30, sum = 0;
                for (int j = 0; j < t; j++) {
                    const float *kk = qkv + ((long)s * t + j) * 3 * dim + dim + h * hd;
                    p[j] = 0;
                    for (int e = 0; e < hd; e++)
                        p[j] += (double)q[e] * kk[e] / sqrt(hd);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < t; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int e = 0; e < hd; e++) {
                    double o = 0;
                    for (int j = 0; j < t; j++)
                        o += p[j] / sum *
                             qkv[((long)s * t + j) * 3 * dim + 2 * dim + h * hd + e];
                    want[((long)s * t + i) * dim + h * hd + e] = (float)o;
                }
            }
    TU_CLOSE("attention", out, want, (long)b * t * dim, 1e-5, 1e-4);
    sn_free(qkv);
    sn_free(out);
    sn_free(want);
    sn_free(scratch);
    sn_free(p);
}

/* ------------------------------------------------------------------------ */
/* Convolution, pooling, resampling */

static void test_conv_pool(void)
{
    const int cin = 3, h = 11, w = 11, cout = 5, k = 3, stride = 2, pad = 1;
    int oh = ops_conv_out(h, k, stride, pad);
    float *x = randn(cin * h * w, 1.0f), *wt = randn(cout * cin * k * k, 1.0f);
    float *bias = randn(cout, 1.0f),
          *col = sn_aligned(sizeof(float) * cin * k * k * oh * oh);
    float *y = sn_aligned(sizeof(float) * cout * oh * oh);
    float *want = sn_aligned(sizeof(float) * cout * h * w);
    ops_conv2d(x, cin, h, w, wt, bias, cout, k, stride, pad, 1, col, y);
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < oh; j++) {
                double s = bias[o];
                for (int c = 0; c < cin; c++)
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) {
                            int yy = i * stride - pad + u, xx = j * stride - pad + v;
                            if (yy >= 0 && yy < h && xx >= 0 && xx < w)
                                s += (double)wt[((o * cin + c) * k + u) * k + v] *
                                     x[(c * h + yy) * w + xx];
                        }
                want[(o * oh + i) * oh + j] = (float)fmax(s, 0);
            }
    TU_CLOSE("conv2d 3x3 stride 2 + relu", y, want, cout * oh * oh, 1e-5, 1e-5);

    /* Max pool 3x3/2 and the 3x3 local average (zero padding counted). */
    int ph = ops_conv_out(h, 3, 2, 1);
    ops_maxpool3s2(x, cin, h, w, y);
    ops_avgpool3s1(x, cin, h, w, want);
    int ok_max = 1, ok_avg = 1;
    for (int c = 0; c < cin; c++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                float m = -INFINITY;
                double s = 0;
                for (int u = -1; u <= 1; u++)
                    for (int v = -1; v <= 1; v++) {
                        int yy = i + u, xx = j + v;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        s += x[(c * h + yy) * w + xx];
                        if (i % 2 == 0 && j % 2 == 0 && x[(c * h + yy) * w + xx] > m)
                            m = x[(c * h + yy) * w + xx];
                    }
                ok_avg &= fabs(want[(c * h + i) * w + j] - s / 9) < 1e-6;
                if (i % 2 == 0 && j % 2 == 0)
                    ok_max &= y[(c * ph + i / 2) * ph + j / 2] == m;
            }
    TU_CHECK(ok_max);
    TU_CHECK(ok_avg);
    sn_free(x);
    sn_free(wt);
    sn_free(bias);
    sn_free(col);
    sn_free(y);
    sn_free(want);
}

static void test_resample_pool(void)
{
    /* Bilinear, align_corners = false: [0, 1] -> [0, .25, .75, 1]. */
    float in[2] = {0, 1}, out[4], want4[4] = {0, 0.25f, 0.75f, 1};
    ops_resize_bilinear_hwc(in, 1, 2, 1, out, 1, 4);
    TU_CLOSE("bilinear 2 -> 4", out, want4, 4, 1e-7, 0);

    /* Bicubic at scale 1 is the identity; constants stay constant. */
    float *x = randn(6 * 6 * 3, 1.0f), y[6 * 6 * 3], cst[25 * 2], c4[16 * 2];
    ops_resize_bicubic_hwc(x, 6, 6, 3, y, 6, 6, 1.0, 1.0);
    TU_CLOSE("bicubic identity", y, x, 6 * 6 * 3, 1e-6, 0);
    for (int i = 0; i < 50; i++)
        cst[i] = 2.5f;
    ops_resize_bicubic_hwc(cst, 5, 5, 2, c4, 4, 4, 5.0 / 4.1, 5.0 / 4.1);
    TU_CLOSE("bicubic constant", c4, cst, 32, 1e-6, 0);

    /* Adaptive pooling: 5 -> 3 and 2 -> 3 (PyTorch's window rule). */
    float r5[5] = {1, 2, 3, 4, 5}, p3[3], w3[3] = {1.5f, 3, 4.5f};
    ops_adaptive_pool_rows(r5, 1, 5, 3, p3);
    TU_CLOSE("adaptive pool 5 -> 3", p3, w3, 3, 1e-7, 0);
    float r2[2] = {2, 4}, u3[3] = {2, 3, 4};
    ops_adaptive_pool_rows(r2, 1, 2, 3, p3);
    TU_CLOSE("adaptive pool 2 -> 3", p3, u3, 3, 1e-7, 0);

    float t[6] = {1, 2, 3, 4, 5, 6}, tt[6], wt[6] = {1, 4, 2, 5, 3, 6};
    ops_transpose(t, 2, 3, tt);
    TU_CLOSE("transpose", tt, wt, 6, 0, 0);
    sn_free(x);
}

/* ------------------------------------------------------------------------ */
/* SHA-256 and safetensors */

static void hex(const unsigned char *d, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256(void)
{
    unsigned char d[32];
    char h[65];
    st_sha256_bytes("abc", 3, d);
    hex(d, h);
    TU_CHECK(
        !strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    st_sha256_bytes("", 0, d);
    hex(d, h);
    TU_CHECK(
        !strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    st_sha256_bytes(two, strlen(two), d);
    hex(d, h);
    TU_CHECK(
        !strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

/* A minimal safetensors writer for the tests. */
struct st_tensor {
    const char *name, *dtype;
    int ndim;
    long dims[4];
    const void *data;
};

static size_t st_elem(const char *dtype)
{
    return !strcmp(dtype, "F32") ? 4 : !strcmp(dtype, "I64") ? 8 : 2;
}

static void st_write(const char *path, const struct st_tensor *t, int n, const char *meta)
{
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = st_elem(t[i].dtype);
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].dims[d]));
            bytes *= (size_t)t[i].dims[d];
        }
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", t[i].dtype,
                                      "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + bytes)));
        off += bytes;
    }
    if (meta) json_object_set_new(h, "__metadata__", json_pack("{s:s}", "arch", meta));
    char *text = json_dumps(h, JSON_COMPACT);
    uint64_t len = strlen(text);
    FILE *f = fopen(path, "wb");
    fwrite(&len, 8, 1, f);
    fwrite(text, 1, len, f);
    for (int i = 0; i < n; i++) {
        size_t bytes = st_elem(t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            bytes *= (size_t)t[i].dims[d];
        fwrite(t[i].data, 1, bytes, f);
    }
    fclose(f);
    free(text);
    json_decref(h);
}

static void test_safetensors(const char *dir)
{
    char path[4096], pth[4096], bad[4096];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t f16[3] = {0x3c00, 0xc000, 0x0001}; /* 1, -2, smallest subnormal */
    uint16_t bf16[2] = {0x3f80, 0xc0a0};        /* 1, -5 */
    int64_t i64 = 7;
    struct st_tensor t[4] = {{"a", "F32", 2, {2, 3}, f32},
                             {"h", "F16", 1, {3}, f16},
                             {"b", "BF16", 1, {2}, bf16},
                             {"count", "I64", 0, {0}, &i64}};
    st_write(path, t, 4, "unit");

    struct st_file *f;
    TU_CHECK(st_open(path, &f) == SN_OK);
    TU_CHECK(st_count(f) == 4 && st_has(f, "a") && !st_has(f, "z"));
    TU_CHECK(st_metadata(f, "arch") && !strcmp(st_metadata(f, "arch"), "unit"));
    float out[6], wh[3] = {1, -2, 5.9604645e-08f}, wb[2] = {1, -5};
    TU_CHECK(st_read(f, "a", 2, (long[]){2, 3}, out) == SN_OK);
    TU_CLOSE("safetensors F32", out, f32, 6, 0, 0);
    TU_CHECK(st_read(f, "h", 1, (long[]){3}, out) == SN_OK);
    TU_CLOSE("safetensors F16", out, wh, 3, 0, 0);
    TU_CHECK(st_read(f, "b", 1, (long[]){2}, out) == SN_OK);
    TU_CLOSE("safetensors BF16", out, wb, 2, 0, 0);
    TU_CHECK_ERR(st_read(f, "a", 2, (long[]){3, 2}, out),
                 "a has shape [2, 3], expected [3, 2]");
    TU_CHECK_ERR(st_read(f, "zz", 1, (long[]){1}, out), "tensor zz is missing");
    TU_CHECK_ERR(st_read(f, "count", 0, NULL, out), "dtype I64");
    TU_CHECK(strlen(st_sha256(f)) == 64);
    st_close(f);

    /* A PyTorch checkpoint, a truncated file, garbage, a missing file. */
    snprintf(pth, sizeof pth, "%s/model.pth", dir);
    sn_write_file_atomic(pth, "PK\x03\x04rest", 8);
    TU_CHECK_ERR(st_open(pth, &f), "facebook/dinov2-with-registers-base");
    size_t len;
    char *raw = sn_read_file(path, &len);
    snprintf(bad, sizeof bad, "%s/short.safetensors", dir);
    sn_write_file_atomic(bad, raw, len - 4);
    TU_CHECK_ERR(st_open(bad, &f), "truncated");
    sn_write_file_atomic(bad, "\x10\0\0\0\0\0\0\0{not json at all", 24);
    TU_CHECK_ERR(st_open(bad, &f), "not a JSON object");
    TU_CHECK_ERR(st_open("/nonexistent/w.safetensors", &f), "does not exist");
    sn_free(raw);
}

/* ------------------------------------------------------------------------ */
/* ViT and ResNet loaders on hand-written files */

static const struct vit_config tiny_vit = {.dim = 8,
                                           .depth = 1,
                                           .heads = 2,
                                           .mlp_hidden = 16,
                                           .patch = 4,
                                           .pos_grid = 2,
                                           .cls_pos = 1,
                                           .eps = 1e-6f};

/* The tensors of tiny_vit in timm names; skip / reshape one to test errors. */
static void write_tiny_vit(const char *path, const char *skip, const char *reshape)
{
    static float zeros[16 * 48];
    struct st_tensor t[] = {
        {"cls_token", "F32", 3, {1, 1, 8}, zeros},
        {"pos_embed", "F32", 3, {1, 5, 8}, zeros},
        {"patch_embed.proj.weight", "F32", 4, {8, 3, 4, 4}, zeros},
        {"patch_embed.proj.bias", "F32", 1, {8}, zeros},
        {"blocks.0.norm1.weight", "F32", 1, {8}, zeros},
        {"blocks.0.norm1.bias", "F32", 1, {8}, zeros},
        {"blocks.0.attn.qkv.weight", "F32", 2, {24, 8}, zeros},
        {"blocks.0.attn.qkv.bias", "F32", 1, {24}, zeros},
        {"blocks.0.attn.proj.weight", "F32", 2, {8, 8}, zeros},
        {"blocks.0.attn.proj.bias", "F32", 1, {8}, zeros},
        {"blocks.0.norm2.weight", "F32", 1, {8}, zeros},
        {"blocks.0.norm2.bias", "F32", 1, {8}, zeros},
        {"blocks.0.mlp.fc1.weight", "F32", 2, {16, 8}, zeros},
        {"blocks.0.mlp.fc1.bias", "F32", 1, {16}, zeros},
        {"blocks.0.mlp.fc2.weight", "F32", 2, {8, 16}, zeros},
        {"blocks.0.mlp.fc2.bias", "F32", 1, {8}, zeros},
        {"norm.weight", "F32", 1, {8}, zeros},
        {"norm.bias", "F32", 1, {8}, zeros},
    };
    struct st_tensor keep[SN_ARRAY_LEN(t)];
    int n = 0;
    for (size_t i = 0; i < SN_ARRAY_LEN(t); i++) {
        if (skip && !strcmp(t[i].name, skip)) continue;
        keep[n] = t[i];
        /* One row more (pos_embed: one position more). */
        if (reshape && !strcmp(t[i].name, reshape)) keep[n].dims[keep[n].ndim == 3] += 1;
        n++;
    }
    st_write(path, keep, n, NULL);
}

static int load_tiny_vit(const char *path)
{
    struct st_file *f;
    struct vit *v = NULL;
    int rc = st_open(path, &f);
    if (rc) return rc;
    rc = vit_load(&tiny_vit, f, &v);
    st_close(f);
    vit_free(v);
    return rc;
}

static void test_vit_loader(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vit.safetensors", dir);
    write_tiny_vit(path, NULL, NULL);
    TU_CHECK(load_tiny_vit(path) == SN_OK);
    write_tiny_vit(path, "blocks.0.mlp.fc2.bias", NULL);
    TU_CHECK_ERR(load_tiny_vit(path), "tensor blocks.0.mlp.fc2.bias is missing");
    write_tiny_vit(path, NULL, "blocks.0.attn.qkv.weight");
    TU_CHECK_ERR(load_tiny_vit(path),
                 "blocks.0.attn.qkv.weight has shape [25, 8], expected [24, 8]");
    write_tiny_vit(path, NULL, "pos_embed");
    TU_CHECK_ERR(load_tiny_vit(path), "not a square grid");

    /* A ResNet conv with neither a bias nor BatchNorm tensors. */
    float z[64 * 3 * 49];
    struct st_tensor t = {"conv1.weight", "F32", 4, {64, 3, 7, 7}, z};
    memset(z, 0, sizeof z);
    st_write(path, &t, 1, NULL);
    struct resnet_config rc;
    struct resnet *r;
    struct st_file *f;
    resnet_config_for_arch("resnet18", &rc);
    TU_CHECK(st_open(path, &f) == SN_OK);
    TU_CHECK_ERR(resnet_load(&rc, f, &r), "conv1 has neither a bias");
    st_close(f);
}

/* ------------------------------------------------------------------------ */
/* The backbone: configuration errors, labelled random initialisation */

static void small_cfg(struct sn_config *cfg)
{
    config_defaults(cfg);
    cfg->data.crop = 28;
    cfg->features.grid = 5;
    cfg->features.pool_dim = 12;
    cfg->features.dim = 6;
    cfg->backbone.layers.n = 2;
    cfg->backbone.layers.v[0] = 0;
    cfg->backbone.layers.v[1] = 1;
    cfg->backbone.groups = 2;
    cfg->run.seed = 7;
}

static float *extract_random(const struct sn_config *cfg, const struct vit_config *vc)
{
    struct backbone *b;
    if (backbone_open_custom(cfg, vc, NULL, &b) != SN_OK) return NULL;
    TU_CHECK(backbone_is_random(b));
    TU_CHECK(!strcmp(backbone_weights_hash(b), "random-seed-7"));
    TU_CHECK(strstr(backbone_describe(b), "RANDOM INIT seed 7") != NULL);
    int side = cfg->data.crop, n = 2;
    long per = (long)backbone_grid(b) * backbone_grid(b) * backbone_dim(b);
    rng_seed(&rng, 3, 0); /* the same images for every call */
    float *x = randn(n * 3L * side * side, 1.0f),
          *feats = sn_aligned(sizeof(float) * n * per);
    TU_CHECK(backbone_extract(b, x, n, feats) == SN_OK);
    int finite = 1;
    for (long i = 0; i < n * per; i++)
        finite &= isfinite(feats[i]);
    TU_CHECK(finite);
    sn_free(x);
    backbone_free(b);
    return feats;
}

static void test_backbone_open(void)
{
    struct sn_config cfg;
    struct backbone *b;
    struct vit_config vc = {.dim = 16,
                            .depth = 3,
                            .heads = 2,
                            .mlp_hidden = 32,
                            .patch = 7,
                            .pos_grid = 3,
                            .cls_pos = 1,
                            .n_reg = 2,
                            .layerscale = 1,
                            .eps = 1e-6f};
    small_cfg(&cfg);
    snprintf(cfg.backbone.weights, sizeof cfg.backbone.weights,
             "/nonexistent/m.safetensors");
    TU_CHECK_ERR(backbone_open_custom(&cfg, &vc, NULL, &b), "weights_missing: random");

    /* Random initialisation: labelled, seeded, reproducible. */
    snprintf(cfg.backbone.weights_missing, sizeof cfg.backbone.weights_missing, "random");
    float *f1 = extract_random(&cfg, &vc), *f2 = extract_random(&cfg, &vc);
    TU_CHECK(f1 && f2 && !memcmp(f1, f2, sizeof(float) * 2 * 25 * 6));
    sn_free(f1);
    sn_free(f2);

    /* Configuration errors. */
    cfg.backbone.groups = 3;
    TU_CHECK_ERR(backbone_open_custom(&cfg, &vc, NULL, &b), "not a multiple");
    cfg.backbone.groups = 1;
    cfg.backbone.layers.v[1] = 5;
    TU_CHECK_ERR(backbone_open_custom(&cfg, &vc, NULL, &b), "asks for block 5");
    snprintf(cfg.backbone.arch, sizeof cfg.backbone.arch, "vit_huge");
    TU_CHECK_ERR(backbone_open(&cfg, &b), "unknown architecture 'vit_huge'");
}

int main(void)
{
    rng_seed(&rng, 42, 0);
    const char *dir = tu_tmpdir("backbone");
    test_exp_erf_gelu();
    test_layernorm_softmax();
    test_residual_gelu_swiglu();
    test_sgemm_split();
    test_attention();
    test_conv_pool();
    test_resample_pool();
    test_sha256();
    test_safetensors(dir);
    test_vit_loader(dir);
    test_backbone_open();

    const char *files[] = {"t.safetensors", "model.pth", "short.safetensors",
                           "vit.safetensors"};
    char path[4096];
    for (size_t i = 0; i < SN_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    remove(dir);
    return tu_finish("test_backbone_unit");
}
