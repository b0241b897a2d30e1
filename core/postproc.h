/*
 * postproc.h - from the 16 head maps to the anomaly map and the image score
 * (SPEC section 2, step 13).
 *
 *   ensemble   the anomaly map is the pixel-wise mean of the 16 maps m^(b,s)
 *              (4 scale branches x 4 scans), summed in head order.
 *   smoothing  a Gaussian of sigma [4] pixels, as scipy.ndimage.gaussian_filter
 *              with its defaults: separable, kernel truncated at 4 sigma with
 *              radius int(4 * sigma + 0.5) (16 taps each side for sigma 4),
 *              weights exp(-x^2 / (2 sigma^2)) normalised to sum 1, padding
 *              mode "reflect" in scipy's sense (the edge pixel is repeated:
 *              d c b a | a b c d | d c b a), arithmetic in double.
 *   score      the image score is the maximum of the map after k x k [16]
 *              average pooling with stride s [2], no padding (torch's
 *              avg_pool2d defaults), sums in double.
 *
 * postproc_predict() applies the three in that order; the score is taken
 * from the smoothed map.
 */
#ifndef SNARM_POSTPROC_H
#define SNARM_POSTPROC_H

#define POSTPROC_TRUNCATE 4.0 /* kernel half-width in sigmas (scipy's default) */

/* out[p] = mean over k of maps[k][p], p < n_pixels. out may alias maps[0]. */
void postproc_ensemble(const float *const *maps, int n_maps, long n_pixels, float *out);

/* The kernel radius used for sigma: (int)(POSTPROC_TRUNCATE * sigma + 0.5). */
int postproc_gaussian_radius(double sigma);

/* Smooth an H x W map in place. scratch holds at least
 * postproc_gaussian_scratch(H, W) doubles, or is NULL to allocate internally.
 * sigma <= 0 leaves the map unchanged. */
void postproc_gaussian(float *map, int H, int W, double sigma, double *scratch);
long postproc_gaussian_scratch(int H, int W);

/* Maximum over the k x k average-pooled map with the given stride. A window
 * larger than the map is shrunk to the map's size (a single global mean would
 * hide small defects, so this only happens for toy inputs). */
float postproc_image_score(const float *map, int H, int W, int pool, int stride);

/* Ensemble, smooth, score: maps are n_maps head maps of H x W; out receives
 * the smoothed anomaly map; the return value is the image score. */
float postproc_predict(const float *const *maps, int n_maps, int H, int W, double sigma,
                       int pool, int stride, float *out);

#endif
