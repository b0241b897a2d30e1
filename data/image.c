/*
 * image.c - PNG/JPEG decoding and writing through libpng and libjpeg.
 *
 * Both libraries report fatal problems through a callback that must not
 * return; ours record the library's message and longjmp back to the caller,
 * which turns it into an sn_error naming the file. Anything touched between
 * setjmp and longjmp lives in a context struct, not in automatic variables.
 */
#include "image.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/common.h"

enum img_kind { IMG_UNKNOWN, IMG_PNG, IMG_JPEG };

/* Decoding state shared with the error callbacks. */
struct img_ctx {
    const char *path;
    FILE *f;
    jmp_buf jb;
    char msg[256];
    float *rgb;
    uint8_t *row;
    uint8_t **rows;
};

static enum img_kind img_sniff(FILE *f)
{
    unsigned char sig[8] = {0};
    size_t n = fread(sig, 1, sizeof sig, f);
    rewind(f);
    if (n == 8 && !png_sig_cmp(sig, 0, 8)) return IMG_PNG;
    if (n >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) return IMG_JPEG;
    return IMG_UNKNOWN;
}

static int img_open(struct img_ctx *c, const char *path, enum img_kind *kind)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->f = fopen(path, "rb");
    if (!c->f) return sn_error("cannot open image %s: %s", path, strerror(errno));
    *kind = img_sniff(c->f);
    if (*kind == IMG_UNKNOWN) {
        fclose(c->f);
        return sn_error("%s is not a PNG or JPEG file (unrecognised signature)", path);
    }
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* PNG */

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct img_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* ancillary-chunk complaints (e.g. a bad iCCP) do not alter pixels */
}

/* Ask libpng for 8/16-bit grey or RGB without alpha, whatever the source. */
static void png_setup_transforms(png_structp png, png_infop info)
{
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    /* Palette expansion also turns a tRNS chunk into alpha: strip it too. */
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* One decoded row (grey or RGB, 8 or 16 bit) to RGB float. */
static void row_to_rgb(const uint8_t *row, int w, int ch, int depth, float *out)
{
    for (int x = 0; x < w; x++) {
        float v[3] = {0, 0, 0};
        for (int k = 0; k < ch; k++) {
            const uint8_t *p = row + ((long)x * ch + k) * (depth / 8);
            v[k] = depth == 16 ? (float)((p[0] << 8) | p[1]) / 65535.0f
                               : (float)p[0] / 255.0f;
        }
        for (int k = 0; k < 3; k++)
            out[(long)x * 3 + k] = v[ch == 1 ? 0 : k];
    }
}

static int png_decode(struct img_ctx *c, struct sn_image *img, int header_only)
{
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    SN_ASSERT(png);
    png_infop info = png_create_info_struct(png);
    SN_ASSERT(info);
    if (setjmp(c->jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        sn_free(c->rgb);
        sn_free(c->row);
        sn_free(c->rows);
        c->rgb = NULL;
        return sn_error("corrupt or truncated PNG %s: %s", c->path, c->msg);
    }
    png_init_io(png, c->f);
    png_read_info(png, info);
    img->w = (int)png_get_image_width(png, info);
    img->h = (int)png_get_image_height(png, info);
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return SN_OK;
    }

    /* Decode the whole raster (libpng de-interlaces), then convert rows. */
    png_setup_transforms(png, info);
    int ch = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
    SN_ASSERT((ch == 1 || ch == 3) && (depth == 8 || depth == 16));
    size_t rb = png_get_rowbytes(png, info);
    c->row = sn_malloc(rb * (size_t)img->h);
    c->rows = sn_malloc(sizeof(png_bytep) * (size_t)img->h);
    c->rgb = sn_malloc((size_t)img->w * img->h * 3 * sizeof(float));
    for (int y = 0; y < img->h; y++)
        c->rows[y] = c->row + rb * y;
    png_read_image(png, c->rows);
    for (int y = 0; y < img->h; y++)
        row_to_rgb(c->rows[y], img->w, ch, depth, c->rgb + (long)y * img->w * 3);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    sn_free(c->row);
    sn_free(c->rows);
    img->rgb = c->rgb;
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* JPEG */

struct jpg_err {
    struct jpeg_error_mgr pub;
    struct img_ctx *ctx;
};

static void jpg_on_error(j_common_ptr cinfo)
{
    struct jpg_err *e = (struct jpg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->ctx->msg);
    longjmp(e->ctx->jb, 1);
}

/* libjpeg only warns on truncated or damaged entropy data and fills the
 * rest with grey; such an image would silently corrupt features, so those
 * warnings are errors here. Benign ones (stray bytes between markers, odd
 * JFIF versions) are ignored, as PIL does. Trace messages (level > 0) too. */
static void jpg_on_message(j_common_ptr cinfo, int level)
{
    int code = cinfo->err->msg_code;
    int damaged = code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER ||
                  code == JWRN_HUFF_BAD_CODE || code == JWRN_MUST_RESYNC ||
                  code == JWRN_NOT_SEQUENTIAL || code == JWRN_BOGUS_PROGRESSION;
    if (level < 0 && damaged) jpg_on_error(cinfo);
}

static int jpg_decode(struct img_ctx *c, struct sn_image *img, int header_only)
{
    struct jpeg_decompress_struct cinfo;
    struct jpg_err err;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpg_on_error;
    err.pub.emit_message = jpg_on_message;
    err.ctx = c;
    if (setjmp(c->jb)) {
        jpeg_destroy_decompress(&cinfo);
        sn_free(c->rgb);
        sn_free(c->row);
        c->rgb = NULL;
        return sn_error("corrupt or truncated JPEG %s: %s", c->path, c->msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, c->f);
    jpeg_read_header(&cinfo, TRUE);
    img->w = (int)cinfo.image_width;
    img->h = (int)cinfo.image_height;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return SN_OK;
    }

    /* Grey stays grey (repeated below); everything else is converted to RGB. */
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(c->msg, sizeof c->msg, "CMYK JPEG is not supported");
        longjmp(c->jb, 1);
    }
    int grey = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int ch = cinfo.output_components;
    c->row = sn_malloc((size_t)img->w * ch);
    c->rgb = sn_malloc((size_t)img->w * img->h * 3 * sizeof(float));
    while (cinfo.output_scanline < cinfo.output_height) {
        long y = cinfo.output_scanline;
        JSAMPROW rows[1] = {c->row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        row_to_rgb(c->row, img->w, ch, 8, c->rgb + y * img->w * 3);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    sn_free(c->row);
    img->rgb = c->rgb;
    return SN_OK;
}

/* ------------------------------------------------------------------------ */

static int img_decode(const char *path, struct sn_image *img, int header_only)
{
    static struct img_ctx zero;
    struct img_ctx *c = sn_malloc(sizeof *c);
    *c = zero;
    enum img_kind kind;
    img->w = img->h = 0;
    img->rgb = NULL;
    int st = img_open(c, path, &kind);
    if (st == SN_OK) {
        st = kind == IMG_PNG ? png_decode(c, img, header_only)
                             : jpg_decode(c, img, header_only);
        fclose(c->f);
    }
    sn_free(c);
    if (st == SN_OK && (img->w <= 0 || img->h <= 0))
        st = sn_error("image %s has no pixels (%d x %d)", path, img->w, img->h);
    return st;
}

int image_load(const char *path, struct sn_image *img)
{
    return img_decode(path, img, 0);
}

void image_free(struct sn_image *img)
{
    sn_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

int image_size(const char *path, int *w, int *h)
{
    struct sn_image img;
    int st = img_decode(path, &img, 1);
    *w = img.w;
    *h = img.h;
    return st;
}

int mask_load(const char *path, int *w, int *h, uint8_t **mask)
{
    struct sn_image img;
    *mask = NULL;
    int st = image_load(path, &img);
    if (st != SN_OK) return st;

    /* Binarise: any colour channel above zero marks a defect pixel. */
    long n = (long)img.w * img.h;
    uint8_t *m = sn_malloc((size_t)n);
    for (long i = 0; i < n; i++) {
        const float *p = img.rgb + i * 3;
        m[i] = p[0] != 0.0f || p[1] != 0.0f || p[2] != 0.0f;
    }
    *w = img.w;
    *h = img.h;
    *mask = m;
    image_free(&img);
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Writing */

struct png_wctx {
    jmp_buf jb;
    char msg[256];
};

static void png_on_write_error(png_structp png, png_const_charp msg)
{
    struct png_wctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

/* Encode into an open file; no time or text chunks, so the bytes depend only
 * on the pixels (and the zlib build). */
static int png_encode(FILE *f, struct png_wctx *c, const uint8_t *pix, int w, int h,
                      int channels)
{
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c,
                                              png_on_write_error, png_on_warning);
    SN_ASSERT(png);
    png_infop info = png_create_info_struct(png);
    SN_ASSERT(info);
    if (setjmp(c->jb)) {
        png_destroy_write_struct(&png, &info);
        return SN_EUSER;
    }
    png_init_io(png, f);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return SN_OK;
}

int image_write_png(const char *path, const uint8_t *pix, int w, int h, int channels)
{
    SN_ASSERT(channels == 1 || channels == 3 || channels == 4);
    SN_ASSERT(w > 0 && h > 0);
    char tmp[4200];
    sn_tmp_name(tmp, sizeof tmp, path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return sn_error("cannot write %s: %s", tmp, strerror(errno));
    struct png_wctx *c = sn_calloc(1, sizeof *c);
    int st = png_encode(f, c, pix, w, h, channels);
    int closed = fclose(f);
    if (st != SN_OK || closed != 0) {
        st = sn_error("cannot write PNG %s: %s", path,
                      st != SN_OK ? c->msg : strerror(errno));
        remove(tmp);
    } else {
        st = sn_rename_into_place(tmp, path);
    }
    sn_free(c);
    return st;
}

void image_to_u8(const float *src, long n, uint8_t *dst)
{
    for (long i = 0; i < n; i++) {
        float v = src[i] * 255.0f + 0.5f;
        dst[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
    }
}

/* ------------------------------------------------------------------------ */
/* Resampling */

/* One output coordinate of a linear resize: two source taps and the weight
 * of the second, as torch computes them: the scale in float, the source
 * position (scale * (i + 0.5) - 0.5) and its fraction in double. */
struct lin_tap {
    int i0, i1;
    float l1;
};

static void lin_taps(int in, int out, int first, int n, struct lin_tap *t)
{
    float scale = (float)in / (float)out;
    for (int k = 0; k < n; k++) {
        double s = (double)scale * ((double)(first + k) + 0.5) - 0.5;
        if (s < 0.0) s = 0.0;
        int i = (int)s;
        if (i > in - 1) i = in - 1;
        t[k].i0 = i;
        t[k].i1 = i < in - 1 ? i + 1 : i;
        t[k].l1 = (float)SN_MIN(s - i, 1.0);
    }
}

/* The cw x ch window at (ox, oy) of src resized to dw x dh. */
static void bilinear_window(const float *src, int sw, int sh, int c, int dw, int dh,
                            int ox, int oy, int cw, int ch, float *dst)
{
    struct lin_tap *tx = sn_malloc(sizeof *tx * (size_t)cw);
    struct lin_tap *ty = sn_malloc(sizeof *ty * (size_t)ch);
    lin_taps(sw, dw, ox, cw, tx);
    lin_taps(sh, dh, oy, ch, ty);
    for (int y = 0; y < ch; y++) {
        const float *r0 = src + (long)ty[y].i0 * sw * c,
                    *r1 = src + (long)ty[y].i1 * sw * c;
        float ly1 = ty[y].l1, ly0 = 1.0f - ly1;
        float *o = dst + (long)y * cw * c;
        for (int x = 0; x < cw; x++) {
            long a = (long)tx[x].i0 * c, b = (long)tx[x].i1 * c;
            float lx1 = tx[x].l1, lx0 = 1.0f - lx1;
            for (int k = 0; k < c; k++)
                o[(long)x * c + k] = ly0 * (lx0 * r0[a + k] + lx1 * r0[b + k]) +
                                     ly1 * (lx0 * r1[a + k] + lx1 * r1[b + k]);
        }
    }
    sn_free(tx);
    sn_free(ty);
}

void image_resize_bilinear(const float *src, int sw, int sh, int c, float *dst, int dw,
                           int dh)
{
    bilinear_window(src, sw, sh, c, dw, dh, 0, 0, dw, dh, dst);
}

/* PIL's bicubic kernel (a = -0.5). */
static double cubic_pil(double x)
{
    const double a = -0.5;
    x = x < 0 ? -x : x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Normalised antialiased weights of one axis, PIL's construction: the kernel
 * is stretched by the down-sampling factor; out k uses inputs lo[k] ..
 * lo[k] + cnt[k] - 1 with weights w[k * ksize ..]. Returns ksize. */
static int aa_weights(int in, int out, int **lo, int **cnt, double **w)
{
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0;
    double support = 2.0 * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    *lo = sn_malloc(sizeof(int) * (size_t)out);
    *cnt = sn_malloc(sizeof(int) * (size_t)out);
    *w = sn_calloc((size_t)out * ksize, sizeof(double));
    for (int k = 0; k < out; k++) {
        double center = (k + 0.5) * scale, sum = 0.0;
        int x0 = (int)(center - support + 0.5), x1 = (int)(center + support + 0.5);
        if (x0 < 0) x0 = 0;
        if (x1 > in) x1 = in;
        double *wk = *w + (long)k * ksize;
        for (int x = 0; x < x1 - x0; x++)
            sum += wk[x] = cubic_pil((x + x0 - center + 0.5) / fs);
        for (int x = 0; x < x1 - x0 && sum != 0.0; x++)
            wk[x] /= sum;
        (*lo)[k] = x0;
        (*cnt)[k] = x1 - x0;
    }
    return ksize;
}

void image_resize_bicubic_aa(const float *src, int sw, int sh, int c, float *dst, int dw,
                             int dh)
{
    int *xlo, *xn, *ylo, *yn;
    double *wx, *wy;
    int kx = aa_weights(sw, dw, &xlo, &xn, &wx), ky = aa_weights(sh, dh, &ylo, &yn, &wy);
    float *tmp = sn_malloc(sizeof(float) * (size_t)sh * dw * c);

    /* Horizontal pass first (as PIL), rounded to float in between. */
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++)
            for (int k = 0; k < c; k++) {
                double s = 0.0;
                const float *p = src + ((long)y * sw + xlo[x]) * c + k;
                for (int j = 0; j < xn[x]; j++)
                    s += p[(long)j * c] * wx[(long)x * kx + j];
                tmp[((long)y * dw + x) * c + k] = (float)s;
            }

    /* Vertical pass. */
    for (int y = 0; y < dh; y++)
        for (long i = 0; i < (long)dw * c; i++) {
            double s = 0.0;
            for (int j = 0; j < yn[y]; j++)
                s += tmp[(long)(ylo[y] + j) * dw * c + i] * wy[(long)y * ky + j];
            dst[(long)y * dw * c + i] = (float)s;
        }
    sn_free(tmp);
    sn_free(xlo);
    sn_free(xn);
    sn_free(wx);
    sn_free(ylo);
    sn_free(yn);
    sn_free(wy);
}

static void nearest_index(int in, int out, int first, int n, int *idx)
{
    float scale = (float)in / (float)out;
    for (int k = 0; k < n; k++) {
        int i = (int)floorf((float)(first + k) * scale);
        idx[k] = i < in - 1 ? i : in - 1;
    }
}

static void nearest_window(const uint8_t *src, int sw, int sh, int dw, int dh, int ox,
                           int oy, int cw, int ch, uint8_t *dst)
{
    int *ix = sn_malloc(sizeof(int) * (size_t)cw),
        *iy = sn_malloc(sizeof(int) * (size_t)ch);
    nearest_index(sw, dw, ox, cw, ix);
    nearest_index(sh, dh, oy, ch, iy);
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++)
            dst[(long)y * cw + x] = src[(long)iy[y] * sw + ix[x]];
    sn_free(ix);
    sn_free(iy);
}

void image_resize_nearest_u8(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw,
                             int dh)
{
    nearest_window(src, sw, sh, dw, dh, 0, 0, dw, dh, dst);
}

/* torchvision CenterCrop's offset: round((size - crop) / 2), half to even. */
static int crop_offset(int size, int crop)
{
    SN_ASSERT(crop > 0 && crop <= size);
    return (int)nearbyint((size - crop) / 2.0);
}

void image_preprocess_rgb(const struct sn_image *img, int resize, int crop,
                          float *hwc_out)
{
    int o = crop_offset(resize, crop);
    bilinear_window(img->rgb, img->w, img->h, 3, resize, resize, o, o, crop, crop,
                    hwc_out);
}

void image_normalise_chw(const float *hwc, int w, int h, const float mean[3],
                         const float std[3], float *chw_out)
{
    long n = (long)w * h;
    for (int k = 0; k < 3; k++) {
        float m = mean[k], inv = 1.0f / std[k];
        float *o = chw_out + k * n;
        for (long i = 0; i < n; i++)
            o[i] = (hwc[i * 3 + k] - m) * inv;
    }
}

int mask_preprocess(const uint8_t *mask, int w, int h, int resize, int crop,
                    const char *rule, uint8_t *out)
{
    int o = crop_offset(resize, crop);
    long n = (long)crop * crop;
    if (!strcmp(rule, "nearest")) {
        nearest_window(mask, w, h, resize, resize, o, o, crop, crop, out);
        return SN_OK;
    }
    if (strcmp(rule, "bilinear_half"))
        return sn_error("unknown mask rule '%s' (bilinear_half or nearest)", rule);

    /* The authors' rule: bilinear on the 0/1 mask, then threshold at one half. */
    float *m = sn_malloc(sizeof(float) * (size_t)w * h);
    float *r = sn_malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < (long)w * h; i++)
        m[i] = mask[i] ? 1.0f : 0.0f;
    bilinear_window(m, w, h, 1, resize, resize, o, o, crop, crop, r);
    for (long i = 0; i < n; i++)
        out[i] = r[i] >= 0.5f;
    sn_free(m);
    sn_free(r);
    return SN_OK;
}
