/*
 * ops.h - CPU kernels of the frozen backbones: the building blocks of the
 * ViT and ResNet forward passes and of the fused patch features.
 *
 * Matrix products go through cblas_sgemm. Everything else is written as
 * plain loops that the compiler vectorises (omp simd) and threaded with
 * OpenMP over rows. All matrices are row-major float32.
 *
 * Accuracy: exp is a degree-7 polynomial after range reduction (relative
 * error a few float ulps); erf, used by the exact (erf-based) GELU, is
 * computed with an approximation of absolute error below 3e-7 —
 * unlike the tanh approximation of GELU, which is off by up to 1e-3.
 */
#ifndef SNARM_OPS_H
#define SNARM_OPS_H

/* C = alpha op(A) op(B) + beta C, row-major (cblas_sgemm's arguments), with
 * the rows of C shared among the OpenMP threads and BLAS single-threaded
 * inside each. */
void ops_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* y[n x out] = x[n x in] W^T (W is [out x in], PyTorch Linear layout),
 * plus bias[out] when bias is not NULL. */
void ops_linear(const float *x, int n, int in, const float *w, const float *bias, int out,
                float *y);

/* LayerNorm over the last dimension: y = (x - mean) / sqrt(var + eps) * w + b
 * for each of n rows of d. y may equal x. */
void ops_layernorm(const float *x, int n, int d, const float *w, const float *b,
                   float eps, float *y);

/* x[n x d] = gelu(x + bias) with the exact (erf) GELU; bias may be NULL. */
void ops_bias_gelu(float *x, int n, int d, const float *bias);

/* SwiGLU: h[n x hid] = silu(a) * b where a and b are the two halves of each
 * row of ab[n x 2 hid] (with bias[2 hid] added first when not NULL). */
void ops_swiglu(const float *ab, int n, int hid, const float *bias, float *h);

/* Residual update x[n x d] += gamma * (y + bias); gamma and bias per channel
 * and either may be NULL (1 and 0). */
void ops_residual_add(float *x, const float *y, int n, int d, const float *bias,
                      const float *gamma);

/* Row-wise softmax of x[n x d] in place after scaling by scale. */
void ops_softmax_rows(float *x, int n, int d, float scale);

/* Multi-head self-attention for one or more sequences of t tokens.
 * qkv[b*t x 3*dim] holds q, k and v of each token (heads contiguous within
 * each), out[b*t x dim] receives the heads concatenated. scratch needs
 * ops_attention_scratch(t) floats per thread (omp_get_max_threads()). */
void ops_attention(const float *qkv, int b, int t, int dim, int heads, float *out,
                   float *scratch);
long ops_attention_scratch(int t);

/* Scalar kernels exposed for tests: the same code the vector loops use. */
float ops_expf(float x);
float ops_erff(float x);
float ops_gelu(float x);

/* Convolution helpers (CHW, one image). im2col: col[(c*kh*kw) x (oh*ow)]. */
void ops_im2col(const float *x, int c, int h, int w, int kh, int kw, int stride, int pad,
                int oh, int ow, float *col);
/* y[cout x oh*ow] = W[cout x cin*kh*kw] * im2col(x) + bias, optional ReLU
 * (col is scratch of cin*kh*kw*oh*ow floats, unused for 1x1 stride 1). */
void ops_conv2d(const float *x, int cin, int h, int w, const float *wt, const float *bias,
                int cout, int k, int stride, int pad, int relu, float *col, float *y);
/* Output side of a convolution or pooling window. */
int ops_conv_out(int in, int k, int stride, int pad);
/* 3x3 max pooling, stride 2, padding 1 (padding never wins), CHW. */
void ops_maxpool3s2(const float *x, int c, int h, int w, float *y);
/* 3x3 average, stride 1, zero padding 1 counted (count_include_pad), CHW. */
void ops_avgpool3s1(const float *x, int c, int h, int w, float *y);

/* Resampling of HWC maps (channels contiguous). Bilinear with
 * align_corners = false (source = (dst + 0.5) * in / out - 0.5, clamped at 0). */
void ops_resize_bilinear_hwc(const float *x, int h, int w, int c, float *y, int oh,
                             int ow);
/* Bicubic, a = -0.75, align_corners = false, no antialiasing; the source
 * coordinate is (dst + 0.5) * scale - 0.5 with scale given per axis (for
 * PyTorch's size mode pass in / out; with a scale factor s, 1 / s). */
void ops_resize_bicubic_hwc(const float *x, int h, int w, int c, float *y, int oh, int ow,
                            double scale_h, double scale_w);

/* Adaptive average pooling of each of n rows from cin to cout values:
 * output i averages inputs floor(i cin / cout) .. ceil((i+1) cin / cout) - 1. */
void ops_adaptive_pool_rows(const float *x, int n, int cin, int cout, float *y);

/* CHW (c x hw) to HWC (hw x c). */
void ops_transpose(const float *x, int rows, int cols, float *y);

#endif
