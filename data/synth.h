/*
 * synth.h - synthetic defects for training the decoder (SPEC section 4).
 *
 * Following DRAEM/MemSeg as the authors do, one synthetic sample is a good
 * training crop with a defect pasted in:
 *
 *   1. a mask from Perlin noise: two-dimensional gradient noise at a random
 *      power-of-two scale, rotated, thresholded at 0.5; for object classes
 *      the mask is restricted to a foreground estimate (pixels whose colour
 *      differs clearly from the median colour of the image border);
 *   2. a source image, either the structure source (the crop itself cut
 *      into a grid of cells that are shuffled and randomly flipped) or a
 *      texture source generated procedurally (fractal Perlin noise, stripes
 *      or blotches with random colours and colour jitter);
 *   3. out = (1 - beta) * image + beta * source inside the mask, with the
 *      opacity beta drawn uniformly from [opacity_min, opacity_max].
 *
 * The authors take their textures from the DTD set, which cannot be
 * downloaded here; the procedural textures stand in for it, so the
 * synthetic defects are less varied than theirs.
 *
 * Exactness: the returned mask is 1 exactly at the pixels whose value the
 * blend changed and 0 elsewhere, where out_rgb equals rgb bit for bit. A
 * candidate pixel where blending would not change the value is dropped from
 * the mask. When the drawn mask ends up empty (a tiny foreground, say),
 * the draw is repeated a few times, then the sample is returned clean.
 *
 * A clean_fraction of the calls return the image unchanged with an all-zero
 * mask. Everything is drawn from the caller's rng_state, so a seed gives the
 * same samples on every run.
 */
#ifndef SNARM_SYNTH_H
#define SNARM_SYNTH_H

#include <stdint.h>

#include "core/rng.h"

struct synth_opts {
    double clean_fraction; /* share of samples left defect-free */
    double opacity_min, opacity_max;
    int object; /* 1: restrict defects to the foreground estimate */
};

/* rgb: h*w*3 in [0,1] (the preprocessed crop). Writes out_rgb (h*w*3) and
 * out_mask (h*w, 0/1). Returns 1 if a defect was drawn, 0 if clean. */
int synth_defect(const float *rgb, int w, int h, const struct synth_opts *o,
                 struct rng_state *r, float *out_rgb, uint8_t *out_mask);

/* Building blocks, exposed for tests and for the demo data. */
/* Perlin gradient noise in about [-1, 1] on an h x w grid with res_x x
 * res_y lattice cells, the lattice rotated by angle (radians). */
void synth_perlin(struct rng_state *r, int w, int h, int res_x, int res_y, double angle,
                  float *out);
/* Foreground estimate: 1 where a pixel's colour is far from the median
 * border colour (after a small morphological clean-up). */
void synth_foreground(const float *rgb, int w, int h, uint8_t *fg);

#endif
