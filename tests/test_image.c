/*
 * Unit tests of data/image.c without Python: the test writes its own PNG and
 * JPEG files with libpng and libjpeg (every colour type and bit depth the
 * loader promises, interlaced too), damages some of them, and checks the
 * decoded values and the table of error messages.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "core/common.h"
#include "data/image.h"
#include "testutil.h"

static const char *dir;

static const char *tpath(const char *name)
{
    static char buf[4][4200];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, 4200, "%s/%s", dir, name);
    return p;
}

/* Write a PNG with libpng: raw rows of the given type and depth. */
static void write_png_raw(const char *path, int w, int h, int type, int depth,
                          int interlace, const uint8_t *data, const png_color *pal,
                          int npal)
{
    FILE *f = fopen(path, "wb");
    SN_ASSERT(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    SN_ASSERT(png && info && !setjmp(png_jmpbuf(png)));
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    size_t rb = png_get_rowbytes(png, info);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)data + rb * y;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, int comps, const uint8_t *data)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    SN_ASSERT(f);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(data + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* Copy the first keep bytes of src to dst (keep < 0: all), flipping the
 * byte at flip (if >= 0). */
static void copy_damaged(const char *src, const char *dst, long keep, long flip)
{
    size_t n;
    char *buf = sn_read_file(src, &n);
    SN_ASSERT(buf);
    if (flip >= 0) buf[flip] ^= 0x5A;
    FILE *f = fopen(dst, "wb");
    fwrite(buf, 1, keep < 0 ? n : (size_t)keep, f);
    fclose(f);
    sn_free(buf);
}

static long file_size(const char *path)
{
    size_t n;
    char *buf = sn_read_file(path, &n);
    sn_free(buf);
    return (long)n;
}

/* ------------------------------------------------------------------------ */

enum { W = 13, H = 9 };

static void check_png_16bit(void)
{
    /* Grey 16-bit, big-endian samples: 0, 32768, 65535 scale by 1/65535. */
    uint8_t g16[W * H * 2] = {0};
    uint16_t vals[3] = {0, 32768, 65535};
    for (int i = 0; i < 3; i++) {
        g16[2 * i] = (uint8_t)(vals[i] >> 8);
        g16[2 * i + 1] = (uint8_t)(vals[i] & 255);
    }
    write_png_raw(tpath("g16.png"), W, H, PNG_COLOR_TYPE_GRAY, 16, 0, g16, NULL, 0);
    struct sn_image img;
    TU_CHECK(image_load(tpath("g16.png"), &img) == SN_OK);
    TU_CHECK(img.w == W && img.h == H);
    TU_CHECK(img.rgb[0] == 0.0f && img.rgb[3] == 32768.0f / 65535.0f &&
             img.rgb[6] == 1.0f);
    TU_CHECK(fabs(img.rgb[3] - 0.50000763) < 1e-7);
    TU_CHECK(img.rgb[4] == img.rgb[3] && img.rgb[5] == img.rgb[3]); /* grey repeated */
    image_free(&img);

    /* RGBA 16-bit: alpha dropped, each channel its own value, not clipped to 8 bits. */
    uint8_t rgba[W * H * 8];
    for (int i = 0; i < W * H * 4; i++) {
        uint16_t v = (uint16_t)(i * 257 + 1);
        rgba[2 * i] = (uint8_t)(v >> 8);
        rgba[2 * i + 1] = (uint8_t)(v & 255);
    }
    write_png_raw(tpath("rgba16.png"), W, H, PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, rgba, NULL,
                  0);
    TU_CHECK(image_load(tpath("rgba16.png"), &img) == SN_OK);
    int ok = 1;
    for (int p = 0; p < W * H; p++)
        for (int k = 0; k < 3; k++)
            ok &=
                img.rgb[p * 3 + k] == (float)(uint16_t)((p * 4 + k) * 257 + 1) / 65535.0f;
    TU_CHECK_MSG(ok, "16-bit RGBA values differ from v / 65535");
    image_free(&img);

    /* Grey+alpha 16-bit. */
    uint8_t ga[W * H * 4] = {0};
    ga[0] = 0x12;
    ga[1] = 0x34;
    ga[2] = 0xFF;
    write_png_raw(tpath("ga16.png"), W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, ga, NULL, 0);
    TU_CHECK(image_load(tpath("ga16.png"), &img) == SN_OK);
    TU_CHECK(img.rgb[0] == (float)0x1234 / 65535.0f && img.rgb[2] == img.rgb[0]);
    image_free(&img);
}

static void check_png_8bit(void)
{
    uint8_t rgb[W * H * 3], rgba[W * H * 4], ga[W * H * 2], idx[W * H];
    for (int p = 0; p < W * H; p++) {
        for (int k = 0; k < 3; k++)
            rgb[p * 3 + k] = rgba[p * 4 + k] = (uint8_t)(p * 3 + k * 50);
        rgba[p * 4 + 3] = (uint8_t)(p & 1 ? 0 : 255);
        ga[p * 2] = (uint8_t)(p * 2);
        ga[p * 2 + 1] = 7;
        idx[p] = (uint8_t)(p % 4);
    }
    png_color pal[4] = {{10, 20, 30}, {40, 50, 60}, {255, 0, 128}, {1, 2, 3}};
    write_png_raw(tpath("rgba8.png"), W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, rgba, NULL,
                  0);
    write_png_raw(tpath("rgb_il.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 1, rgb, NULL, 0);
    write_png_raw(tpath("ga8.png"), W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, ga, NULL, 0);
    write_png_raw(tpath("pal.png"), W, H, PNG_COLOR_TYPE_PALETTE, 8, 0, idx, pal, 4);

    const char *rgb_files[] = {"rgba8.png", "rgb_il.png"};
    for (int f = 0; f < 2; f++) {
        struct sn_image img;
        TU_CHECK(image_load(tpath(rgb_files[f]), &img) == SN_OK);
        int ok = img.w == W && img.h == H;
        for (int i = 0; ok && i < W * H * 3; i++)
            ok &= img.rgb[i] == rgb[i] / 255.0f;
        TU_CHECK_MSG(ok, "%s: pixels differ (alpha must be dropped, interlace undone)",
                     rgb_files[f]);
        image_free(&img);
    }
    struct sn_image img;
    TU_CHECK(image_load(tpath("ga8.png"), &img) == SN_OK);
    int ok = 1;
    for (int p = 0; p < W * H; p++)
        for (int k = 0; k < 3; k++)
            ok &= img.rgb[p * 3 + k] == ga[p * 2] / 255.0f;
    TU_CHECK_MSG(ok, "grey+alpha: grey must be repeated and alpha dropped");
    image_free(&img);

    TU_CHECK(image_load(tpath("pal.png"), &img) == SN_OK);
    ok = 1;
    for (int p = 0; p < W * H; p++) {
        const png_color *c = &pal[p % 4];
        ok &= img.rgb[p * 3] == c->red / 255.0f &&
              img.rgb[p * 3 + 1] == c->green / 255.0f &&
              img.rgb[p * 3 + 2] == c->blue / 255.0f;
    }
    TU_CHECK_MSG(ok, "palette PNG: colours differ from the palette entries");
    image_free(&img);
}

static void check_jpeg(void)
{
    uint8_t grey[W * H], rgb[W * H * 3];
    for (int p = 0; p < W * H; p++) {
        grey[p] = (uint8_t)(100 + (p % W) * 3);
        for (int k = 0; k < 3; k++)
            rgb[p * 3 + k] = (uint8_t)(60 + k * 40 + (p / W) * 4);
    }
    write_jpeg(tpath("grey.jpg"), W, H, 1, grey);
    write_jpeg(tpath("rgb.jpg"), W, H, 3, rgb);

    /* Grey JPEG: three equal channels close to the source (lossy, q 95). */
    struct sn_image img;
    TU_CHECK(image_load(tpath("grey.jpg"), &img) == SN_OK);
    int same = 1;
    double worst = 0;
    for (int p = 0; p < W * H; p++) {
        same &=
            img.rgb[p * 3] == img.rgb[p * 3 + 1] && img.rgb[p * 3] == img.rgb[p * 3 + 2];
        worst = fmax(worst, fabs(img.rgb[p * 3] - grey[p] / 255.0));
    }
    TU_CHECK_MSG(same, "grey JPEG: channels differ");
    TU_CHECK_MSG(worst < 4.0 / 255, "grey JPEG: off by %g", worst);
    image_free(&img);

    TU_CHECK(image_load(tpath("rgb.jpg"), &img) == SN_OK);
    worst = 0;
    for (int i = 0; i < W * H * 3; i++)
        worst = fmax(worst, fabs(img.rgb[i] - rgb[i] / 255.0));
    TU_CHECK_MSG(worst < 6.0 / 255, "RGB JPEG: off by %g", worst);
    int w, h;
    TU_CHECK(image_size(tpath("rgb.jpg"), &w, &h) == SN_OK && w == W && h == H);
    image_free(&img);
}

/* The table of bad inputs, each with the text its error must contain. */
static void check_bad_inputs(void)
{
    copy_damaged(tpath("rgb_il.png"), tpath("trunc.png"),
                 file_size(tpath("rgb_il.png")) / 2, -1);
    copy_damaged(tpath("rgba8.png"), tpath("crc.png"), -1, 60); /* inside IDAT */
    copy_damaged(tpath("rgb.jpg"), tpath("trunc.jpg"),
                 file_size(tpath("rgb.jpg")) * 2 / 3, -1);
    copy_damaged(tpath("rgb.jpg"), tpath("header.jpg"), 40, -1);
    copy_damaged(tpath("rgb.jpg"), tpath("sig.png"), 0, -1); /* empty file */
    FILE *f = fopen(tpath("text.png"), "w");
    fputs("this is not an image at all\n", f);
    fclose(f);

    struct {
        const char *file, *needle;
    } bad[] = {
        {"trunc.png", "corrupt or truncated PNG"},
        {"crc.png", "corrupt or truncated PNG"},
        {"trunc.jpg", "corrupt or truncated JPEG"},
        {"header.jpg", "corrupt or truncated JPEG"},
        {"sig.png", "is not a PNG or JPEG file"},
        {"text.png", "is not a PNG or JPEG file"},
        {"absent.png", "cannot open image"},
    };
    for (size_t k = 0; k < SN_ARRAY_LEN(bad); k++) {
        struct sn_image img;
        int st = image_load(tpath(bad[k].file), &img);
        TU_CHECK_ERR(st, bad[k].needle);
        TU_CHECK_MSG(strstr(sn_last_error(), bad[k].file) != NULL,
                     "error for %s does not name the file: %s", bad[k].file,
                     sn_last_error());
        TU_CHECK(img.rgb == NULL);
        printf("  %-11s -> %s\n", bad[k].file, sn_last_error());
    }
    int w, h;
    uint8_t *m;
    TU_CHECK_ERR(image_size(tpath("header.jpg"), &w, &h), "header.jpg");

    /* Stray bytes before the end marker only draw a libjpeg warning: the
     * image is whole and loads (as in PIL). */
    size_t n;
    char *jpg = sn_read_file(tpath("rgb.jpg"), &n);
    FILE *f2 = fopen(tpath("junk.jpg"), "wb");
    fwrite(jpg, 1, n - 2, f2);
    fputs("xyz", f2);
    fwrite(jpg + n - 2, 1, 2, f2);
    fclose(f2);
    sn_free(jpg);
    struct sn_image a, b;
    TU_CHECK(image_load(tpath("junk.jpg"), &a) == SN_OK);
    TU_CHECK(image_load(tpath("rgb.jpg"), &b) == SN_OK);
    TU_CHECK(a.rgb && b.rgb && !memcmp(a.rgb, b.rgb, sizeof(float) * W * H * 3));
    image_free(&a);
    image_free(&b);
    TU_CHECK_ERR(mask_load(tpath("trunc.png"), &w, &h, &m), "trunc.png");
}

static void check_write_and_masks(void)
{
    /* Round trip of 1, 3 and 4 channels; nothing left behind by the atomic write. */
    uint8_t pix[W * H * 4];
    for (int i = 0; i < W * H * 4; i++)
        pix[i] = (uint8_t)(i * 7);
    for (int ch = 1; ch <= 4; ch += ch == 1 ? 2 : 1) {
        char name[32];
        snprintf(name, sizeof name, "w%d.png", ch);
        TU_CHECK(image_write_png(tpath(name), pix, W, H, ch) == SN_OK);
        struct sn_image img;
        TU_CHECK(image_load(tpath(name), &img) == SN_OK);
        int ok = 1;
        for (int p = 0; p < W * H; p++)
            for (int k = 0; k < 3; k++)
                ok &= img.rgb[p * 3 + k] == pix[p * ch + (ch == 1 ? 0 : k)] / 255.0f;
        TU_CHECK_MSG(ok, "PNG round trip with %d channels", ch);
        image_free(&img);
        char tmp[4300];
        sn_tmp_name(tmp, sizeof tmp, tpath(name));
        TU_CHECK(!sn_file_exists(tmp));
    }
    TU_CHECK_ERR(image_write_png("/nonexistent-dir/x.png", pix, W, H, 3), "cannot write");

    /* Masks: value != 0 is defect, for 0/1 and 0/255 masks and RGB masks. */
    uint8_t m8[W * H], rgbm[W * H * 3] = {0};
    for (int i = 0; i < W * H; i++)
        m8[i] = (uint8_t)(i % 3 == 0 ? 0 : i % 3 == 1 ? 1 : 255);
    rgbm[3 * 5 + 2] = 9;
    image_write_png(tpath("m8.png"), m8, W, H, 1);
    image_write_png(tpath("mrgb.png"), rgbm, W, H, 3);
    int w, h;
    uint8_t *m;
    TU_CHECK(mask_load(tpath("m8.png"), &w, &h, &m) == SN_OK && w == W && h == H);
    int ok = 1;
    for (int i = 0; i < W * H; i++)
        ok &= m[i] == (m8[i] != 0);
    TU_CHECK_MSG(ok, "mask binarisation value != 0");
    sn_free(m);
    TU_CHECK(mask_load(tpath("mrgb.png"), &w, &h, &m) == SN_OK);
    ok = 1;
    for (int i = 0; i < W * H; i++)
        ok &= m[i] == (i == 5);
    TU_CHECK_MSG(ok, "RGB mask: any non-zero channel is defect");
    sn_free(m);
}

/* Properties that hold for any correct resampler. */
static void check_resample_properties(void)
{
    enum { SW = 17, SH = 11 };
    float src[SW * SH * 3], dst[40 * 40 * 3], same[SW * SH * 3];
    for (int i = 0; i < SW * SH * 3; i++)
        src[i] = (float)((i * 37) % 101) / 100.0f;
    image_resize_bilinear(src, SW, SH, 3, same, SW, SH);
    TU_CLOSE("bilinear identity", same, src, SW * SH * 3, 0, 0);
    image_resize_bicubic_aa(src, SW, SH, 3, same, SW, SH);
    TU_CLOSE("bicubic identity", same, src, SW * SH * 3, 1e-6, 0);

    /* A constant image stays constant (weights sum to one). */
    for (int i = 0; i < SW * SH * 3; i++)
        src[i] = 0.25f;
    float want[40 * 40 * 3];
    for (int i = 0; i < 40 * 40 * 3; i++)
        want[i] = 0.25f;
    image_resize_bilinear(src, SW, SH, 3, dst, 40, 31);
    TU_CLOSE("bilinear constant", dst, want, 40 * 31 * 3, 1e-7, 0);
    image_resize_bicubic_aa(src, SW, SH, 3, dst, 5, 4);
    TU_CLOSE("bicubic constant down", dst, want, 5 * 4 * 3, 1e-6, 0);

    /* Normalisation to CHW. */
    float hwc[2 * 3] = {0.485f, 0.456f, 0.406f, 1, 1, 1}, chw[6];
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    image_normalise_chw(hwc, 2, 1, mean, sd, chw);
    TU_CHECK(chw[0] == 0 && chw[2] == 0 && chw[4] == 0);
    TU_CHECK(fabsf(chw[1] - (1 - 0.485f) / 0.229f) < 1e-6f);
    TU_CHECK(fabsf(chw[5] - (1 - 0.406f) / 0.225f) < 1e-6f);

    uint8_t mask[4] = {1, 0, 0, 1}, out[4];
    TU_CHECK_ERR(mask_preprocess(mask, 2, 2, 2, 2, "bicubic", out), "unknown mask rule");
}

int main(void)
{
    dir = tu_tmpdir("image");
    check_png_16bit();
    check_png_8bit();
    check_jpeg();
    check_bad_inputs();
    check_write_and_masks();
    check_resample_properties();
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_image");
}
