/*
 * image.h - decoding, writing and resampling images and masks.
 *
 * Images are decoded with libpng and libjpeg into one float layout: h rows of
 * w pixels, three interleaved channels (RGB, "HWC"), values in [0, 1].
 *
 *   - PNG: 8- or 16-bit; grey, grey+alpha, RGB, RGBA or palette. 16-bit
 *     values are scaled by 1/65535 (so 32768 -> 0.50000763), never clipped
 *     to 8 bits; alpha is dropped; grey is repeated into three channels.
 *   - JPEG: RGB or grey (grey repeated). Other colour spaces (CMYK) are a
 *     user error.
 *
 * A corrupt or truncated file is a user error (sn_error) naming the file;
 * the libraries' own error handlers are replaced so that nothing aborts.
 *
 * Pre-processing (SPEC section 2, step 1): resize to resize x resize with
 * bilinear interpolation (align_corners = false, no antialiasing, as
 * torch.nn.functional.interpolate), centre-crop crop x crop, normalise per
 * channel. Masks are binarised (value != 0) when loaded and follow the same
 * geometry under one of two rules:
 *   "bilinear_half": bilinear resize of the 0/1 mask, then >= 0.5 (what the
 *                    authors' code does);
 *   "nearest":       nearest-neighbour resize (torch mode='nearest').
 */
#ifndef SNARM_IMAGE_H
#define SNARM_IMAGE_H

#include <stdint.h>

struct sn_image {
    int w, h;
    float *rgb; /* h * w * 3, interleaved RGB in [0, 1]; sn_free()d by image_free */
};

/* Decode a PNG or JPEG (chosen by content, not by name) to RGB float. */
int image_load(const char *path, struct sn_image *img);
void image_free(struct sn_image *img);

/* Load a ground-truth mask as 0/1 bytes (any channel layout; a pixel is 1
 * when its first channel is != 0). *mask is allocated with sn_malloc. */
int mask_load(const char *path, int *w, int *h, uint8_t **mask);

/* Width and height from the file header only (no pixel decoding). */
int image_size(const char *path, int *w, int *h);

/* Write an 8-bit PNG with 1 (grey), 3 (RGB) or 4 (RGBA) channels, atomically
 * (temporary file then rename). Output bytes depend only on the pixels. */
int image_write_png(const char *path, const uint8_t *pix, int w, int h, int channels);

/* Float [0,1] HWC -> bytes, rounding to nearest and clamping. */
void image_to_u8(const float *src, long n, uint8_t *dst);

/* Bilinear resampling of an HWC float image with c channels, align_corners =
 * false, no antialiasing: equal to torch F.interpolate(mode='bilinear',
 * align_corners=False) on the same data. */
void image_resize_bilinear(const float *src, int sw, int sh, int c, float *dst, int dw,
                           int dh);

/* Antialiased bicubic resampling like PIL Image.resize(BICUBIC): the cubic
 * kernel with a = -0.5, widened by the scale factor when down-sampling.
 * Computed in float without PIL's 8-bit rounding. */
void image_resize_bicubic_aa(const float *src, int sw, int sh, int c, float *dst, int dw,
                             int dh);

/* Nearest-neighbour resampling of bytes, as torch mode='nearest'
 * (source index floor(dst_index * src / dst)). */
void image_resize_nearest_u8(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw,
                             int dh);

/* SPEC step 1 geometry: bilinear to resize x resize, then the central
 * crop x crop window. Output HWC RGB in [0, 1], crop * crop * 3 floats. */
void image_preprocess_rgb(const struct sn_image *img, int resize, int crop,
                          float *hwc_out);

/* (x - mean) / std per channel, HWC in, CHW out. */
void image_normalise_chw(const float *hwc, int w, int h, const float mean[3],
                         const float std[3], float *chw_out);

/* The mask under the same geometry with rule "bilinear_half" or "nearest";
 * out holds crop * crop bytes of 0/1. An unknown rule is a user error. */
int mask_preprocess(const uint8_t *mask, int w, int h, int resize, int crop,
                    const char *rule, uint8_t *out);

#endif
