/*
 * decoder_conv.h - the decoder's 3 x 3 convolutions (dilation r, zero
 * padding r, "same" output) over n HWC maps of g x g cells, computed only
 * over the taps that fall inside the grid.
 *
 * With zero padding, a tap that lands outside the grid contributes nothing,
 * yet a plain im2col GEMM multiplies those zeros too. For the heads' large
 * dilations that is most of the work: on a 49 x 49 grid, dilation 24 leaves
 * 2 of 3 rows of taps outside for every row but one, so 5/9 of the products
 * are zeros (dilation 12: also 5/9; 6: 3/10; 3: 1/6; 1: 1/12). Cells are
 * grouped by which taps are valid (at most 3 cases per axis, so at most 9
 * classes) and each class is one im2col GEMM over its valid taps only.
 *
 * The input gradient is the same computation with the kernel flipped and
 * its channels transposed (the validity of a tap is symmetric), and the
 * weight gradient is one GEMM per class against the same compact columns.
 * Weights are in PyTorch's layout [c_out][c_in][3][3], as layers.h's
 * conv3x3, which computes the same function (and is the reference the unit
 * test compares with). The work runs on `threads` OpenMP threads (the count
 * the workspace was sized for); for a given count the results are
 * deterministic, and only the weight gradient's rounding depends on it.
 */
#ifndef SNARM_DECODER_CONV_H
#define SNARM_DECODER_CONV_H

#include <stddef.h>

#define DCONV_MAX_CLASSES 9

/* The tap classes of a g x g grid at dilation r. */
struct dconv_plan {
    int g, r, nclass;
    struct dconv_class {
        int ntaps;
        int taps[9]; /* tap t = 3 ky + kx, ascending */
        int ncells;
        int *cells; /* row-major cell indices of the class */
    } cls[DCONV_MAX_CLASSES];
};

void dconv_plan_init(struct dconv_plan *p, int g, int r);
void dconv_plan_free(struct dconv_plan *p);

/* The undilated case (dilation 1, the SMBs' convolution) goes to Winograd's
 * F(2 x 2, 3 x 3) (core/decoder_wino.c): 2.25 times fewer multiplications
 * than the taps, which it needs no class split for (only the grid's border
 * tiles touch the padding). dconv_* call these for r = 1. */
size_t dwino_work_floats(int g, int n, int c_in, int c_out, int threads);
void dwino_forward(float *y, const float *x, const float *w, const float *b, int n, int g,
                   int c_in, int c_out, float *work, int threads);
/* dx written (may be NULL), dw accumulated; no bias gradient. */
void dwino_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    int n, int g, int c_in, int c_out, float *work, int threads);

/* Workspace floats for up to n maps of c_in -> c_out channels (or c_out ->
 * c_in) on `threads` threads, for any plan of the same g. */
size_t dconv_work_floats(int g, int n, int c_in, int c_out, int threads);

/* y = conv(x) + b (b may be NULL); x, y: n x g x g x c. */
void dconv_forward(float *y, const float *x, const float *w, const float *b, int n,
                   int c_in, int c_out, const struct dconv_plan *p, float *work,
                   int threads);
/* dx = conv^T(dy) (written; may be NULL), dw += and db += (db may be NULL). */
void dconv_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int n, int c_in, int c_out,
                    const struct dconv_plan *p, float *work, int threads);

#endif
