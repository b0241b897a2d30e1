/*
 * demo.h - the built-in generated dataset ("snarm demo-data DIR").
 *
 * What it is: a small, fully synthetic anomaly-detection dataset in the
 * MVTec AD layout, generated in pure C from a seed, so that the framework
 * can be built and run end to end on a fresh machine with no download. It is
 * not a benchmark: figures on it say that the pipeline works, not how well
 * the method detects real defects. Real benchmarks need real data (MVTec AD,
 * MVTec 3D-AD, VisA).
 *
 * Two products, 256 x 256 RGB PNG images:
 *   weave  a texture: a woven pattern of over/under threads with fractal
 *          noise, slight per-image shifts and colour jitter;
 *   disc   an object: a shaded metal disc with a centre hole and four bolt
 *          holes on a plain background, with small jitter of position,
 *          radius, rotation, lighting and colour.
 * Splits per product: train/good 20, test/good 6, and 4 test images for each
 * defect type:
 *   scratch  one or two thin dark or bright curved lines;
 *   spot     one to three stains of a foreign colour with soft noise edges;
 *   missing  a piece removed: for the disc a bite out of the rim showing the
 *            background, for the weave a hole showing a dark backing.
 * Masks (ground_truth/<defect>/<name>_mask.png, 8-bit grey 0/255) are exact:
 * 255 exactly where the defect changed the pixel's 8-bit value, 0 elsewhere.
 *
 * Determinism: every image is drawn from its own RNG stream derived from the
 * seed, the product, the split and the index, so the same seed writes the
 * same bytes on every run. Files are written atomically; the dataset is
 * built in "DIR.tmp.<pid>" and renamed to DIR at the end, and a completion
 * marker DIR/DEMO_DATA_COMPLETE holds the seed, so a killed run leaves no
 * half-written DIR. An existing complete DIR with the same seed is kept.
 */
#ifndef SNARM_DEMO_H
#define SNARM_DEMO_H

#include <stdint.h>

#define DEMO_SIZE 256
#define DEMO_TRAIN 20
#define DEMO_TEST_GOOD 6
#define DEMO_PER_DEFECT 4
#define DEMO_MARKER "DEMO_DATA_COMPLETE"

/* Write the dataset into dir (created; must not exist unless it is a
 * complete demo dataset of the same seed, which is then left as it is). */
int demo_write(const char *dir, uint64_t seed);

/* One image exactly as demo_write renders it (seed, product, split "train"
 * or "test", defect "good" or a defect type, index): pix DEMO_SIZE^2 * 3
 * bytes; when not NULL, mask (DEMO_SIZE^2 bytes, 0/255) and good (the same
 * image before its defect). Returns the number of defect pixels. */
long demo_render(uint64_t seed, const char *product, const char *split,
                 const char *defect, int index, uint8_t *pix, uint8_t *mask,
                 uint8_t *good);

/* The product names, NULL-terminated, and the defect types likewise. */
extern const char *const demo_products[];
extern const char *const demo_defects[];

#endif
