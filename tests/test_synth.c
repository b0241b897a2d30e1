/*
 * Synthetic defects (data/synth.c): masks exact (1 exactly where a pixel
 * changed, the image bit-identical elsewhere), restricted to the foreground
 * for objects, opacity bounded, clean share as asked, same seed same sample.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "data/demo.h"
#include "data/image.h"
#include "data/synth.h"
#include "testutil.h"

enum { S = 96, NP = S * S };

/* A demo image resized to S x S, as float RGB. */
static void demo_float(const char *product, int index, float *rgb)
{
    enum { D = DEMO_SIZE };
    uint8_t *pix = sn_malloc(D * D * 3);
    float *full = sn_malloc(sizeof(float) * D * D * 3);
    demo_render(3, product, "train", "good", index, pix, NULL, NULL);
    for (long i = 0; i < D * D * 3; i++)
        full[i] = pix[i] / 255.0f;
    image_resize_bilinear(full, D, D, 3, rgb, S, S);
    sn_free(pix);
    sn_free(full);
}

/* Check one sample; returns 1 when it holds a defect. */
static int check_sample(const float *rgb, const float *out, const uint8_t *mask,
                        int drawn, const uint8_t *fg, float opacity_max, const char *what)
{
    long agree = 0, marked = 0, outside = 0;
    float worst = 0;
    for (long i = 0; i < NP; i++) {
        int diff = memcmp(rgb + 3 * i, out + 3 * i, 3 * sizeof(float)) != 0;
        agree += (mask[i] <= 1) && (diff == mask[i]);
        marked += mask[i];
        outside += mask[i] && fg && !fg[i];
        for (int k = 0; k < 3; k++)
            worst = fmaxf(worst, fabsf(out[3 * i + k] - rgb[3 * i + k]));
    }
    TU_CHECK_MSG(agree == NP, "%s: mask not exact (%ld of %d pixels agree)", what, agree,
                 NP);
    TU_CHECK_MSG(drawn == (marked > 0), "%s: returned %d with %ld marked", what, drawn,
                 marked);
    TU_CHECK_MSG(outside == 0, "%s: %ld defect pixels off the foreground", what, outside);
    TU_CHECK_MSG(worst <= opacity_max + 1e-6f, "%s: change %g above opacity %g", what,
                 worst, opacity_max);
    return marked > 0;
}

static void check_exact_and_deterministic(void)
{
    float *rgb = sn_malloc(sizeof(float) * NP * 3),
          *out = sn_malloc(sizeof(float) * NP * 3);
    float *again = sn_malloc(sizeof(float) * NP * 3);
    uint8_t *mask = sn_malloc(NP), *mask2 = sn_malloc(NP), *fg = sn_malloc(NP);
    const char *products[2] = {"weave", "disc"};
    for (int p = 0; p < 2; p++) {
        int object = p == 1, defects = 0;
        struct synth_opts o = {0.2, 0.3, 1.0, object};
        demo_float(products[p], p, rgb);
        synth_foreground(rgb, S, S, fg);
        for (int seed = 0; seed < 40; seed++) {
            char what[64];
            snprintf(what, sizeof what, "%s seed %d", products[p], seed);
            struct rng_state r, r2;
            rng_seed(&r, (uint64_t)seed, 11);
            r2 = r;
            int drawn = synth_defect(rgb, S, S, &o, &r, out, mask);
            defects +=
                check_sample(rgb, out, mask, drawn, object ? fg : NULL, 1.0f, what);

            /* The same stream gives the same sample, bit for bit. */
            synth_defect(rgb, S, S, &o, &r2, again, mask2);
            TU_CHECK(!memcmp(out, again, sizeof(float) * NP * 3) &&
                     !memcmp(mask, mask2, NP));
            TU_CHECK(!memcmp(r.s, r2.s, sizeof r.s));
        }
        printf("%s: %d of 40 samples with a defect (clean fraction 0.2)\n", products[p],
               defects);
        TU_CHECK(defects >= 24 && defects <= 39);
    }
    sn_free(rgb);
    sn_free(out);
    sn_free(again);
    sn_free(mask);
    sn_free(mask2);
    sn_free(fg);
}

/* Clean share and opacity bounds. */
static void check_options(void)
{
    float *rgb = sn_malloc(sizeof(float) * NP * 3),
          *out = sn_malloc(sizeof(float) * NP * 3);
    uint8_t *mask = sn_malloc(NP);
    demo_float("weave", 7, rgb);
    struct rng_state r;
    rng_seed(&r, 99, 0);
    struct synth_opts all_clean = {1.0, 0.3, 1.0, 0}, half = {0.5, 0.3, 0.3, 0};
    int drawn = 0;
    for (int i = 0; i < 10; i++)
        drawn += synth_defect(rgb, S, S, &all_clean, &r, out, mask);
    TU_CHECK(drawn == 0);
    TU_CHECK(!memcmp(rgb, out, sizeof(float) * NP * 3));

    /* Half clean: binomial(200, 0.5) lies in [70, 130] but for 1e-5 of seeds. */
    drawn = 0;
    for (int i = 0; i < 200; i++) {
        int d = synth_defect(rgb, S, S, &half, &r, out, mask);
        drawn += d;
        if (i < 20) check_sample(rgb, out, mask, d, NULL, 0.3f, "opacity 0.3");
    }
    printf("half clean: %d of 200 with a defect\n", drawn);
    TU_CHECK(drawn >= 70 && drawn <= 130);
    sn_free(rgb);
    sn_free(out);
    sn_free(mask);
}

/* Foreground of a plain disc on a plain background; Perlin noise range. */
static void check_parts(void)
{
    float *rgb = sn_malloc(sizeof(float) * NP * 3),
          *noise = sn_malloc(sizeof(float) * NP);
    float *noise2 = sn_malloc(sizeof(float) * NP);
    uint8_t *fg = sn_malloc(NP);
    long in_disc = 0, hit = 0, stray = 0;
    for (long i = 0; i < NP; i++) {
        double dx = i % S - 40.0, dy = i / S - 50.0;
        int disc = dx * dx + dy * dy < 25.0 * 25.0;
        for (int k = 0; k < 3; k++)
            rgb[3 * i + k] = disc ? 0.7f - 0.1f * k : 0.1f;
    }
    synth_foreground(rgb, S, S, fg);
    for (long i = 0; i < NP; i++) {
        int disc = rgb[3 * i] > 0.5f;
        in_disc += disc;
        hit += disc && fg[i];
        stray += !disc && fg[i];
    }
    printf("foreground: %ld of %ld disc pixels, %ld outside\n", hit, in_disc, stray);
    TU_CHECK(stray == 0 && hit > 0.9 * in_disc);

    struct rng_state r, r2;
    rng_seed(&r, 5, 1);
    r2 = r;
    synth_perlin(&r, S, S, 4, 8, 0.7, noise);
    synth_perlin(&r2, S, S, 4, 8, 0.7, noise2);
    double sum = 0, sq = 0, lo = 0, hi = 0;
    for (long i = 0; i < NP; i++) {
        sum += noise[i];
        sq += noise[i] * noise[i];
        lo = fmin(lo, noise[i]);
        hi = fmax(hi, noise[i]);
    }
    double sd = sqrt(sq / NP - (sum / NP) * (sum / NP));
    printf("perlin: range [%.3f, %.3f], sd %.3f\n", lo, hi, sd);
    TU_CHECK(lo >= -1.0001 && hi <= 1.0001 && sd > 0.1 && hi > 0.5);
    TU_CHECK(!memcmp(noise, noise2, sizeof(float) * NP));
    sn_free(rgb);
    sn_free(noise);
    sn_free(noise2);
    sn_free(fg);
}

int main(void)
{
    check_exact_and_deterministic();
    check_options();
    check_parts();
    return tu_finish("test_synth");
}
