/*
 * synth.c - Perlin-masked synthetic defects (DRAEM / MemSeg style).
 */
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* DRAEM draws the lattice resolution as 2^k, k in [0, 6). */
#define SYNTH_MAX_SCALE_LOG2 6
/* Threshold on the Perlin field above which a pixel is defective. */
#define SYNTH_PERLIN_THRESHOLD 0.5f
/* Re-draws of the mask before giving up and returning a clean sample. */
#define SYNTH_TRIES 8
/* Smallest colour distance to the border that counts as foreground. */
#define SYNTH_FG_MIN_DIST 0.08f

/* ------------------------------------------------------------------------ */
/* Perlin noise */

static double perlin_fade(double t)
{
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
}

/* Gradient noise: random unit gradients on a lattice, blended with the
 * quintic fade. The lattice is padded so that rotated sample positions,
 * which reach sqrt(2)/2 of the image beyond its centre, stay inside it. */
void synth_perlin(struct rng_state *r, int w, int h, int res_x, int res_y, double angle,
                  float *out)
{
    int pad_x = res_x / 4 + 2, pad_y = res_y / 4 + 2;
    int lw = res_x + 2 * pad_x + 2, lh = res_y + 2 * pad_y + 2;
    double *g = sn_malloc(sizeof(double) * 2 * (size_t)lw * lh);
    for (long i = 0; i < (long)lw * lh; i++) {
        double a = 2.0 * SN_PI * rng_uniform(r);
        g[2 * i] = cos(a);
        g[2 * i + 1] = sin(a);
    }
    double ca = cos(angle), sa = sin(angle), cx = 0.5 * w, cy = 0.5 * h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            /* Rotate the sample position about the centre, then to lattice units. */
            double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
            double u = (ca * dx - sa * dy + cx) / w * res_x + pad_x;
            double v = (sa * dx + ca * dy + cy) / h * res_y + pad_y;
            int i = (int)floor(u), j = (int)floor(v);
            double fu = u - i, fv = v - j, n[4];
            for (int k = 0; k < 4; k++) {
                int di = k & 1, dj = k >> 1;
                const double *gg = g + 2 * ((long)(j + dj) * lw + i + di);
                n[k] = gg[0] * (fu - di) + gg[1] * (fv - dj);
            }
            double su = perlin_fade(fu), sv = perlin_fade(fv);
            double top = n[0] + su * (n[1] - n[0]), bot = n[2] + su * (n[3] - n[2]);
            out[(long)y * w + x] =
                (float)(1.41421356237309505 * (top + sv * (bot - top)));
        }
    sn_free(g);
}

/* ------------------------------------------------------------------------ */
/* Foreground estimate */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median colour of the one-pixel image border. */
static void border_median(const float *rgb, int w, int h, float med[3])
{
    int n = 2 * w + 2 * (h - 2);
    float *v = sn_malloc(sizeof(float) * (size_t)n);
    for (int k = 0; k < 3; k++) {
        int m = 0;
        for (int x = 0; x < w; x++) {
            v[m++] = rgb[(long)x * 3 + k];
            v[m++] = rgb[((long)(h - 1) * w + x) * 3 + k];
        }
        for (int y = 1; y < h - 1; y++) {
            v[m++] = rgb[((long)y * w) * 3 + k];
            v[m++] = rgb[((long)y * w + w - 1) * 3 + k];
        }
        qsort(v, (size_t)m, sizeof(float), cmp_float);
        med[k] = v[m / 2];
    }
    sn_free(v);
}

/* Otsu's threshold of values in [0, 1] over a 256-bin histogram. */
static float otsu_threshold(const float *d, long n)
{
    double hist[256] = {0}, sum = 0, sum_b = 0, w_b = 0, best = -1;
    for (long i = 0; i < n; i++)
        hist[(int)(SN_MIN(d[i], 1.0f) * 255.0f)] += 1;
    for (int i = 0; i < 256; i++)
        sum += i * hist[i];
    int at = 0;
    for (int t = 0; t < 256; t++) {
        w_b += hist[t];
        if (w_b == 0 || w_b == n) continue;
        sum_b += t * hist[t];
        double mb = sum_b / w_b, mf = (sum - sum_b) / (n - w_b);
        double between = w_b * (n - w_b) * (mb - mf) * (mb - mf);
        if (between > best) {
            best = between;
            at = t;
        }
    }
    return (at + 1) / 255.0f;
}

void synth_foreground(const float *rgb, int w, int h, uint8_t *fg)
{
    /* Distance of each pixel's colour to the border's median colour. */
    float med[3];
    long n = (long)w * h;
    border_median(rgb, w, h, med);
    float *d = sn_malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) {
        float m = 0;
        for (int k = 0; k < 3; k++)
            m = SN_MAX(m, fabsf(rgb[i * 3 + k] - med[k]));
        d[i] = m;
    }

    /* Foreground: far from the border colour (Otsu split), then eroded by
     * one pixel so that anti-aliased object edges do not count. */
    float t = SN_MAX(otsu_threshold(d, n), SYNTH_FG_MIN_DIST);
    uint8_t *raw = sn_malloc((size_t)n);
    for (long i = 0; i < n; i++)
        raw[i] = d[i] >= t;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int keep = 1;
            for (int dy = -1; dy <= 1 && keep; dy++)
                for (int dx = -1; dx <= 1 && keep; dx++) {
                    int yy = SN_MIN(SN_MAX(y + dy, 0), h - 1),
                        xx = SN_MIN(SN_MAX(x + dx, 0), w - 1);
                    keep = raw[(long)yy * w + xx];
                }
            fg[(long)y * w + x] = (uint8_t)keep;
        }
    sn_free(raw);
    sn_free(d);
}

/* ------------------------------------------------------------------------ */
/* Anomaly sources */

static void random_colour(struct rng_state *r, float c[3])
{
    for (int k = 0; k < 3; k++)
        c[k] = (float)rng_uniform(r);
}

/* Brightness, contrast and saturation jitter, clamped to [0, 1]. */
static void colour_jitter(struct rng_state *r, float *rgb, long n)
{
    float bright = (float)(rng_uniform(r) * 0.4 - 0.2);
    float contrast = (float)(0.6 + rng_uniform(r) * 0.8);
    float sat = (float)(rng_uniform(r) * 1.5);
    for (long i = 0; i < n; i++) {
        float *p = rgb + i * 3, grey = (p[0] + p[1] + p[2]) / 3.0f;
        for (int k = 0; k < 3; k++) {
            float v = grey + sat * (p[k] - grey);
            v = (v - 0.5f) * contrast + 0.5f + bright;
            p[k] = SN_MIN(SN_MAX(v, 0.0f), 1.0f);
        }
    }
}

/* Fractal noise: four octaves of Perlin noise, roughly in [-1, 1]. */
static void fractal_noise(struct rng_state *r, int w, int h, int base, float *out,
                          float *tmp)
{
    long n = (long)w * h;
    memset(out, 0, sizeof(float) * (size_t)n);
    float amp = 0.5f;
    for (int o = 0; o < 4; o++, amp *= 0.5f) {
        int res = base << o;
        synth_perlin(r, w, h, res, res, 0.0, tmp);
        for (long i = 0; i < n; i++)
            out[i] += amp * tmp[i];
    }
}

/* A procedural texture standing in for a DTD image: noise, stripes or
 * blotches between two random colours. */
static void texture_source(struct rng_state *r, int w, int h, float *src)
{
    long n = (long)w * h;
    float *t = sn_malloc(sizeof(float) * (size_t)n),
          *tmp = sn_malloc(sizeof(float) * (size_t)n);
    float c0[3], c1[3];
    random_colour(r, c0);
    random_colour(r, c1);
    int kind = (int)rng_below(r, 3);
    fractal_noise(r, w, h, 2 + (int)rng_below(r, 4), t, tmp);
    if (kind == 1) {
        /* Stripes of a random direction and period, wobbled by the noise. */
        double a = SN_PI * rng_uniform(r), period = 4.0 + 28.0 * rng_uniform(r);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                long i = (long)y * w + x;
                double s = (x * cos(a) + y * sin(a)) / period + 0.5 * t[i];
                t[i] = (float)sin(2.0 * SN_PI * s);
            }
    } else if (kind == 2) {
        /* Blotches: the noise thresholded into hard-edged patches. */
        for (long i = 0; i < n; i++)
            t[i] = t[i] > 0.0f ? 1.0f : -1.0f;
    }
    for (long i = 0; i < n; i++) {
        float m = SN_MIN(SN_MAX(0.5f + 0.5f * t[i], 0.0f), 1.0f);
        for (int k = 0; k < 3; k++)
            src[i * 3 + k] = c0[k] + m * (c1[k] - c0[k]);
    }
    colour_jitter(r, src, n);
    sn_free(t);
    sn_free(tmp);
}

/* The structure source: the image cut into a g x g grid of cells, the cells
 * shuffled and each flipped at random. Pixels beyond the last full cell
 * keep the image's value. */
static void structure_source(struct rng_state *r, const float *rgb, int w, int h,
                             float *src)
{
    int g = rng_below(r, 2) ? 8 : 4, cw = w / g, ch = h / g;
    int perm[64];
    memcpy(src, rgb, sizeof(float) * 3 * (size_t)w * h);
    for (int i = 0; i < g * g; i++)
        perm[i] = i;
    rng_shuffle(r, perm, g * g);
    for (int cell = 0; cell < g * g; cell++) {
        int from = perm[cell], fx = (int)rng_below(r, 2), fy = (int)rng_below(r, 2);
        int x0 = (cell % g) * cw, y0 = (cell / g) * ch;
        int sx0 = (from % g) * cw, sy0 = (from / g) * ch;
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                int sx = sx0 + (fx ? cw - 1 - x : x), sy = sy0 + (fy ? ch - 1 - y : y);
                memcpy(src + ((long)(y0 + y) * w + x0 + x) * 3,
                       rgb + ((long)sy * w + sx) * 3, 3 * sizeof(float));
            }
    }
    colour_jitter(r, src, (long)w * h);
}

/* ------------------------------------------------------------------------ */
/* One synthetic sample */

/* A thresholded, rotated Perlin mask (restricted to fg when given);
 * returns the number of defect pixels. */
static long perlin_mask(struct rng_state *r, int w, int h, const uint8_t *fg,
                        float *noise, uint8_t *mask)
{
    int sx = 1 << rng_below(r, SYNTH_MAX_SCALE_LOG2);
    int sy = 1 << rng_below(r, SYNTH_MAX_SCALE_LOG2);
    double angle = (rng_uniform(r) - 0.5) * SN_PI;
    synth_perlin(r, w, h, sx, sy, angle, noise);
    long count = 0;
    for (long i = 0; i < (long)w * h; i++) {
        mask[i] = noise[i] > SYNTH_PERLIN_THRESHOLD && (!fg || fg[i]);
        count += mask[i];
    }
    return count;
}

/* out = (1 - beta) rgb + beta src inside the mask; the mask keeps only the
 * pixels whose value actually changed. Returns the kept count. */
static long blend_exact(const float *rgb, const float *src, long n, float beta,
                        uint8_t *mask, float *out)
{
    long kept = 0;
    memcpy(out, rgb, sizeof(float) * 3 * (size_t)n);
    for (long i = 0; i < n; i++) {
        if (!mask[i]) continue;
        int changed = 0;
        for (int k = 0; k < 3; k++) {
            float v = (1.0f - beta) * rgb[i * 3 + k] + beta * src[i * 3 + k];
            changed |= v != rgb[i * 3 + k];
            out[i * 3 + k] = v;
        }
        mask[i] = (uint8_t)changed;
        kept += changed;
    }
    return kept;
}

int synth_defect(const float *rgb, int w, int h, const struct synth_opts *o,
                 struct rng_state *r, float *out_rgb, uint8_t *out_mask)
{
    long n = (long)w * h;
    SN_ASSERT(w >= 8 && h >= 8 && o->opacity_min <= o->opacity_max);
    memcpy(out_rgb, rgb, sizeof(float) * 3 * (size_t)n);
    memset(out_mask, 0, (size_t)n);
    if (rng_uniform(r) < o->clean_fraction) return 0;

    /* Where: a Perlin mask, on the foreground for object classes. */
    uint8_t *fg = o->object ? sn_malloc((size_t)n) : NULL;
    if (fg) synth_foreground(rgb, w, h, fg);
    float *noise = sn_malloc(sizeof(float) * (size_t)n);
    long count = 0;
    for (int t = 0; t < SYNTH_TRIES && !count; t++)
        count = perlin_mask(r, w, h, fg, noise, out_mask);
    sn_free(noise);
    sn_free(fg);
    if (!count) return 0;

    /* What: the structure source or a procedural texture, at a random opacity. */
    float *src = sn_malloc(sizeof(float) * 3 * (size_t)n);
    if (rng_below(r, 2))
        structure_source(r, rgb, w, h, src);
    else
        texture_source(r, w, h, src);
    float beta =
        (float)(o->opacity_min + (o->opacity_max - o->opacity_min) * rng_uniform(r));
    count = blend_exact(rgb, src, n, beta, out_mask, out_rgb);
    sn_free(src);
    return count > 0;
}
