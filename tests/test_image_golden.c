/*
 * Golden checks of data/image.c against tests/ref_image.py: resampling
 * against torch (bilinear, nearest) and PIL (antialiased bicubic), the
 * SPEC step 1 geometry, and decoding against PIL on files PIL wrote.
 *
 * Tolerances: bilinear and the crop 3e-7 absolute (we compute torch's taps
 * and weights exactly; the float sums may round a unit or two apart); PIL's float bicubic
 * 2e-6 (PIL accumulates in double like us but rounds the horizontal pass to
 * float in a different order); nearest and the mask rules exact; decoding
 * exact (same libpng/libjpeg arithmetic, values are k/255 or k/65535).
 */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "data/image.h"
#include "testutil.h"

static const char *ref;

/* Read a golden HWC tensor and its dims. */
static float *ref_hwc(const char *name, int *h, int *w, int *c)
{
    int nd = 0;
    long *shape = tu_ref_shape(ref, name, &nd);
    if (!shape || nd != 3) {
        TU_CHECK_MSG(0, "golden %s missing or not 3-D", name);
        free(shape);
        return NULL;
    }
    *h = (int)shape[0];
    *w = (int)shape[1];
    *c = (int)shape[2];
    free(shape);
    return tu_ref_read(ref, name, NULL);
}

static void check_bilinear(void)
{
    static const int sizes[][2] = {{16, 20}, {61, 50}, {29, 37}, {7, 5}, {58, 74}};
    int sh, sw, c, h, w;
    float *src = ref_hwc("bl_src", &sh, &sw, &c);
    for (size_t k = 0; src && k < SN_ARRAY_LEN(sizes); k++) {
        char name[64];
        snprintf(name, sizeof name, "bl_%dx%d", sizes[k][0], sizes[k][1]);
        float *want = ref_hwc(name, &h, &w, &c);
        float *got = sn_malloc(sizeof(float) * (size_t)h * w * c);
        image_resize_bilinear(src, sw, sh, c, got, w, h);
        TU_CLOSE(name, got, want, (long)h * w * c, 3e-7, 0);
        sn_free(got);
        free(want);
    }
    free(src);
}

static void check_bicubic(void)
{
    static const int sizes[][2] = {{20, 17}, {13, 25}, {80, 64}, {40, 50}, {28, 28}};
    int sh, sw, c, h, w;
    float *src = ref_hwc("bc_src", &sh, &sw, &c);
    for (size_t k = 0; src && k < SN_ARRAY_LEN(sizes); k++) {
        char name[64];
        snprintf(name, sizeof name, "bc_%dx%d", sizes[k][0], sizes[k][1]);
        float *want = ref_hwc(name, &h, &w, &c);
        float *got = sn_malloc(sizeof(float) * (size_t)h * w * c);
        image_resize_bicubic_aa(src, sw, sh, c, got, w, h);
        TU_CLOSE(name, got, want, (long)h * w * c, 2e-6, 0);
        sn_free(got);
        free(want);
    }
    free(src);
}

static void check_nearest(void)
{
    static const int sizes[][2] = {{46, 62}, {10, 13}, {23, 31}, {37, 19}};
    int sh, sw, c, h, w;
    float *src = ref_hwc("nn_src", &sh, &sw, &c);
    uint8_t *m = sn_malloc((size_t)sh * sw);
    for (long i = 0; src && i < (long)sh * sw; i++)
        m[i] = src[i] != 0;
    for (size_t k = 0; src && k < SN_ARRAY_LEN(sizes); k++) {
        char name[64];
        snprintf(name, sizeof name, "nn_%dx%d", sizes[k][0], sizes[k][1]);
        float *want = ref_hwc(name, &h, &w, &c);
        uint8_t *got = sn_malloc((size_t)h * w);
        float *gf = sn_malloc(sizeof(float) * (size_t)h * w);
        image_resize_nearest_u8(m, sw, sh, got, w, h);
        for (long i = 0; i < (long)h * w; i++)
            gf[i] = got[i];
        TU_CLOSE(name, gf, want, (long)h * w, 0, 0);
        sn_free(got);
        sn_free(gf);
        free(want);
    }
    sn_free(m);
    free(src);
}

/* SPEC step 1 geometry on an image and on a mask under both rules. */
static void check_preprocess(void)
{
    static const int rc[][2] = {{64, 56}, {65, 56}, {40, 40}};
    static const char *rules[] = {"bilinear_half", "nearest"};
    int sh, sw, c, mh, mw, mc, h, w;
    float *src = ref_hwc("pre_src", &sh, &sw, &c);
    float *msrc = ref_hwc("mpre_src", &mh, &mw, &mc);
    if (!src || !msrc) return;
    struct sn_image img = {sw, sh, src};
    uint8_t *m = sn_malloc((size_t)mh * mw);
    for (long i = 0; i < (long)mh * mw; i++)
        m[i] = msrc[i] != 0;
    for (size_t k = 0; k < SN_ARRAY_LEN(rc); k++) {
        char name[64];
        int r = rc[k][0], cr = rc[k][1];
        snprintf(name, sizeof name, "pre_%d_%d", r, cr);
        float *want = ref_hwc(name, &h, &w, &c);
        float *got = sn_malloc(sizeof(float) * (size_t)cr * cr * 3);
        image_preprocess_rgb(&img, r, cr, got);
        TU_CLOSE(name, got, want, (long)cr * cr * 3, 3e-7, 0);
        sn_free(got);
        free(want);
        for (int q = 0; q < 2; q++) {
            snprintf(name, sizeof name, "mpre_%s_%d_%d", rules[q], r, cr);
            want = ref_hwc(name, &h, &w, &c);
            uint8_t *mo = sn_malloc((size_t)cr * cr);
            float *mf = sn_malloc(sizeof(float) * (size_t)cr * cr);
            TU_CHECK(mask_preprocess(m, mw, mh, r, cr, rules[q], mo) == SN_OK);
            for (long i = 0; i < (long)cr * cr; i++)
                mf[i] = mo[i];
            TU_CLOSE(name, mf, want, (long)cr * cr, 0, 0);
            sn_free(mo);
            sn_free(mf);
            free(want);
        }
    }
    sn_free(m);
    free(src);
    free(msrc);
}

static void check_decoding(void)
{
    static const char *files[] = {"rgb8.png", "rgba8.png", "la8.png", "l8.png",
                                  "l16.png",  "bit1.png",  "pal.png", "pal_trns.png",
                                  "grey.jpg", "rgb.jpg"};
    for (size_t k = 0; k < SN_ARRAY_LEN(files); k++) {
        char path[4200], name[64];
        snprintf(path, sizeof path, "%s.files/%s", ref, files[k]);
        snprintf(name, sizeof name, "dec_%s", files[k]);
        *strrchr(name, '.') = '_';
        int h, w, c;
        float *want = ref_hwc(name, &h, &w, &c);
        struct sn_image img;
        int st = image_load(path, &img);
        TU_CHECK_MSG(st == SN_OK, "decoding %s: %s", path, sn_last_error());
        if (st == SN_OK && want) {
            TU_CHECK(img.w == w && img.h == h && c == 3);
            TU_CLOSE(name, img.rgb, want, (long)w * h * 3, 0, 0);
            image_free(&img);
        }
        free(want);
    }
}

int main(void)
{
    ref = tu_ref_path("image.h5");
    FILE *f = fopen(ref, "rb");
    if (!f)
        tu_skip("%s not written (the ref_image.py fixture needs torch, PIL, h5py)", ref);
    fclose(f);
    check_bilinear();
    check_bicubic();
    check_nearest();
    check_preprocess();
    check_decoding();
    return tu_finish("test_image_golden");
}
