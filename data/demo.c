/*
 * demo.c - the built-in generated dataset (see demo.h for what it is).
 *
 * Each image is rendered in float, converted to 8 bits, and, for a defective
 * one, rendered again with the defect painted over; the mask is exactly the
 * set of pixels whose 8-bit value differs between the two.
 */
#define _XOPEN_SOURCE 700
#include "demo.h"

#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/rng.h"
#include "image.h"
#include "synth.h"

#define N DEMO_SIZE
#define NPIX ((long)N * N)

const char *const demo_products[] = {"weave", "disc", NULL};
const char *const demo_defects[] = {"scratch", "spot", "missing", NULL};

/* A rendered good image, the layer a missing piece reveals, and where the
 * product is (coverage 0..1: the disc; everywhere for the weave). */
struct demo_scene {
    float rgb[NPIX * 3];
    float behind[NPIX * 3];
    float cover[NPIX];
    float cx, cy, radius, hole; /* disc geometry (unused for the weave) */
};

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static float jitter(struct rng_state *r, float amount)
{
    return (float)((2.0 * rng_uniform(r) - 1.0) * amount);
}

/* Fractal noise from three octaves of Perlin noise, about [-1, 1]. */
static void demo_noise(struct rng_state *r, int base, float *out)
{
    float *tmp = sn_malloc(sizeof(float) * NPIX);
    memset(out, 0, sizeof(float) * NPIX);
    float amp = 0.6f;
    for (int o = 0; o < 3; o++, amp *= 0.5f) {
        synth_perlin(r, N, N, base << o, base << o, 0.0, tmp);
        for (long i = 0; i < NPIX; i++)
            out[i] += amp * tmp[i];
    }
    sn_free(tmp);
}

/* ------------------------------------------------------------------------ */
/* Products */

/* Plain weave: 8-pixel threads, warp over weft on alternate cells, each
 * thread shaded across its width and dipping where it passes under. */
static void weave_render(struct rng_state *r, struct demo_scene *s)
{
    const float t = 8.0f;
    float warp[3] = {0.74f, 0.63f, 0.46f}, weft[3] = {0.64f, 0.54f, 0.38f};
    float bright = jitter(r, 0.03f);
    for (int k = 0; k < 3; k++) {
        float j = bright + jitter(r, 0.012f);
        warp[k] += j;
        weft[k] += j + jitter(r, 0.01f);
    }
    float dx = (float)(rng_uniform(r) * 2 * t), dy = (float)(rng_uniform(r) * 2 * t);
    float *noise = sn_malloc(sizeof(float) * NPIX);
    demo_noise(r, 8, noise);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            float u = (float)x + dx, v = (float)y + dy;
            int cu = (int)floorf(u / t), cv = (int)floorf(v / t);
            float au = (u - cu * t + 0.5f) / t, av = (v - cv * t + 0.5f) / t;
            int warp_top = ((cu + cv) & 1) == 0;
            float across = warp_top ? au : av, along = warp_top ? av : au;
            float shade = (0.62f + 0.38f * sinf((float)SN_PI * across)) *
                          (0.86f + 0.14f * sinf((float)SN_PI * along));
            const float *c = warp_top ? warp : weft;
            long i = (long)y * N + x;
            for (int k = 0; k < 3; k++)
                s->rgb[i * 3 + k] =
                    clampf(c[k] * shade * (1.0f + 0.07f * noise[i]), 0, 1);
            for (int k = 0; k < 3; k++)
                s->behind[i * 3 + k] = 0.05f + 0.02f * noise[i];
            s->cover[i] = 1.0f;
        }
    sn_free(noise);
}

/* Anti-aliased coverage of a disc edge at distance d for radius rad. */
static float edge_cover(float d, float rad)
{
    return clampf(rad - d + 0.5f, 0.0f, 1.0f);
}

/* Coverage of the disc: outer edge minus the centre hole and bolt holes. */
static float disc_cover(const struct demo_scene *s, float x, float y, float rot)
{
    float d = hypotf(x - s->cx, y - s->cy);
    float c = edge_cover(d, s->radius) * (1.0f - edge_cover(d, s->hole));
    for (int b = 0; b < 4; b++) {
        float a = rot + (float)(b * SN_PI / 2);
        float bx = s->cx + 0.66f * s->radius * cosf(a),
              by = s->cy + 0.66f * s->radius * sinf(a);
        c *= 1.0f - edge_cover(hypotf(x - bx, y - by), 6.0f);
    }
    return c;
}

/* A turned metal disc on a plain background, lit from the upper left. */
static void disc_render(struct rng_state *r, struct demo_scene *s)
{
    float bg[3] = {0.15f, 0.17f, 0.21f}, metal[3] = {0.62f, 0.64f, 0.68f};
    for (int k = 0; k < 3; k++) {
        bg[k] += jitter(r, 0.015f);
        metal[k] += jitter(r, 0.03f);
    }
    s->cx = N / 2.0f + jitter(r, 5.0f);
    s->cy = N / 2.0f + jitter(r, 5.0f);
    s->radius = 88.0f + jitter(r, 4.0f);
    s->hole = 18.0f + jitter(r, 1.5f);
    float rot = (float)(rng_uniform(r) * SN_PI / 2),
          light = (float)(1.25 * SN_PI) + jitter(r, 0.3f);
    float *noise = sn_malloc(sizeof(float) * NPIX);
    demo_noise(r, 4, noise);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            float px = x + 0.5f, py = y + 0.5f, dx = px - s->cx, dy = py - s->cy;
            float d = hypotf(dx, dy);
            float shade = 0.8f + 0.2f * (dx * cosf(light) + dy * sinf(light)) / s->radius;
            shade *=
                (d > s->radius - 6.0f ? 0.82f : 1.0f) * (1.0f + 0.025f * sinf(0.9f * d));
            long i = (long)y * N + x;
            float a = disc_cover(s, px, py, rot);
            for (int k = 0; k < 3; k++) {
                float b = bg[k] + 0.03f * (float)y / N;
                float m = metal[k] * shade * (1.0f + 0.03f * noise[i]);
                s->behind[i * 3 + k] = b;
                s->rgb[i * 3 + k] = clampf(b + a * (m - b), 0, 1);
            }
            s->cover[i] = a;
        }
    sn_free(noise);
}

/* ------------------------------------------------------------------------ */
/* Defects: each paints over s->rgb */

/* A random point on the product: anywhere for the weave; on the metal
 * between the hole and the rim for the disc. */
static void product_point(struct rng_state *r, const struct demo_scene *s, int disc,
                          float margin, float *x, float *y)
{
    if (!disc) {
        *x = margin + (float)rng_uniform(r) * (N - 2 * margin);
        *y = margin + (float)rng_uniform(r) * (N - 2 * margin);
        return;
    }
    float a = (float)(2 * SN_PI * rng_uniform(r));
    float d =
        s->hole + margin + (float)rng_uniform(r) * (s->radius - s->hole - 2 * margin);
    *x = s->cx + d * cosf(a);
    *y = s->cy + d * sinf(a);
}

/* Distance from p to the polyline through n points. */
static float polyline_dist(const float *pts, int n, float px, float py)
{
    float best = 1e30f;
    for (int k = 0; k + 1 < n; k++) {
        float ax = pts[2 * k], ay = pts[2 * k + 1], bx = pts[2 * k + 2],
              by = pts[2 * k + 3];
        float vx = bx - ax, vy = by - ay, len2 = vx * vx + vy * vy;
        float t = len2 > 0 ? clampf(((px - ax) * vx + (py - ay) * vy) / len2, 0, 1) : 0;
        best = fminf(best, hypotf(px - ax - t * vx, py - ay - t * vy));
    }
    return best;
}

/* Scratch: a thin curved line (quadratic Bezier), dark or bright. */
static void defect_scratch(struct rng_state *r, struct demo_scene *s, int disc)
{
    int lines = 1 + (int)rng_below(r, 2);
    for (int l = 0; l < lines; l++) {
        float p[6], pts[2 * 41];
        product_point(r, s, disc, 6.0f, &p[0], &p[1]);
        product_point(r, s, disc, 6.0f, &p[4], &p[5]);
        p[2] = 0.5f * (p[0] + p[4]) + jitter(r, 25.0f);
        p[3] = 0.5f * (p[1] + p[5]) + jitter(r, 25.0f);
        for (int k = 0; k <= 40; k++) {
            float t = k / 40.0f, a = (1 - t) * (1 - t), b = 2 * t * (1 - t), c = t * t;
            pts[2 * k] = a * p[0] + b * p[2] + c * p[4];
            pts[2 * k + 1] = a * p[1] + b * p[3] + c * p[5];
        }
        float half = 0.7f + (float)rng_uniform(r) * 0.8f;
        float tone = rng_below(r, 2) ? 0.95f : 0.08f;
        for (long i = 0; i < NPIX; i++) {
            float d =
                polyline_dist(pts, 41, (float)(i % N) + 0.5f, (float)(i / N) + 0.5f);
            float a = clampf(half + 0.5f - d, 0, 1) * 0.9f * s->cover[i];
            for (int k = 0; a > 0 && k < 3; k++)
                s->rgb[i * 3 + k] += a * (tone - s->rgb[i * 3 + k]);
        }
    }
}

/* The radius of an irregular blob in direction ang: base radius wobbled by
 * three harmonics with random phases (ph). */
static float blob_radius(float base, const float ph[3], float ang)
{
    return base * (1.0f + 0.12f * sinf(2 * ang + ph[0]) + 0.08f * sinf(3 * ang + ph[1]) +
                   0.05f * sinf(5 * ang + ph[2]));
}

static void blob_shape(struct rng_state *r, float ph[3])
{
    for (int k = 0; k < 3; k++)
        ph[k] = (float)(2 * SN_PI * rng_uniform(r));
}

/* Spot: one to three stains of a foreign colour with soft irregular edges. */
static void defect_spot(struct rng_state *r, struct demo_scene *s, int disc)
{
    static const float stains[3][3] = {
        {0.45f, 0.22f, 0.08f}, {0.10f, 0.09f, 0.06f}, {0.25f, 0.42f, 0.20f}};
    int spots = 1 + (int)rng_below(r, 3);
    for (int b = 0; b < spots; b++) {
        float cx, cy, ph[3], col[3], base = 5.0f + (float)rng_uniform(r) * 8.0f;
        product_point(r, s, disc, base + 2.0f, &cx, &cy);
        blob_shape(r, ph);
        const float *st = stains[rng_below(r, 3)];
        for (int k = 0; k < 3; k++)
            col[k] = clampf(st[k] + jitter(r, 0.05f), 0, 1);
        float opacity = 0.7f + (float)rng_uniform(r) * 0.25f;
        for (long i = 0; i < NPIX; i++) {
            float dx = (float)(i % N) + 0.5f - cx, dy = (float)(i / N) + 0.5f - cy;
            float rad = blob_radius(base, ph, atan2f(dy, dx));
            float a = clampf((rad - hypotf(dx, dy)) / 1.5f + 0.5f, 0, 1) * opacity *
                      s->cover[i];
            for (int k = 0; a > 0 && k < 3; k++)
                s->rgb[i * 3 + k] += a * (col[k] - s->rgb[i * 3 + k]);
        }
    }
}

/* Missing piece: a jagged bite out of the disc's rim showing the background,
 * or a hole in the weave showing the dark backing. */
static void defect_missing(struct rng_state *r, struct demo_scene *s, int disc)
{
    float cx, cy, ph[3], base = 10.0f + (float)rng_uniform(r) * 9.0f;
    if (disc) {
        float a = (float)(2 * SN_PI * rng_uniform(r));
        cx = s->cx + (s->radius - 3.0f) * cosf(a);
        cy = s->cy + (s->radius - 3.0f) * sinf(a);
    } else {
        product_point(r, s, disc, base + 4.0f, &cx, &cy);
    }
    blob_shape(r, ph);
    for (long i = 0; i < NPIX; i++) {
        float dx = (float)(i % N) + 0.5f - cx, dy = (float)(i / N) + 0.5f - cy;
        float rad = blob_radius(base, ph, atan2f(dy, dx));
        float a = clampf(rad - hypotf(dx, dy) + 0.5f, 0, 1);
        for (int k = 0; a > 0 && k < 3; k++)
            s->rgb[i * 3 + k] += a * (s->behind[i * 3 + k] - s->rgb[i * 3 + k]);
    }
}

/* ------------------------------------------------------------------------ */
/* Writing */

/* Paths below the output folder; demo_write refuses a folder name long
 * enough to overflow them. */
#define DEMO_PATH 4096
#define DEMO_DIR_MAX 3800

static void demo_path(char *out, const char *fmt, ...) SN_PRINTF(2, 3);

static void demo_path(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, DEMO_PATH, fmt, ap);
    va_end(ap);
    SN_ASSERT(n >= 0 && n < DEMO_PATH);
}

/* Each image draws from its own stream, derived from the seed and its path in
 * the layout, so images do not depend on which others were rendered. */
long demo_render(uint64_t seed, const char *product, const char *split,
                 const char *defect, int index, uint8_t *pix, uint8_t *mask,
                 uint8_t *good)
{
    int known = !strcmp(defect, "good");
    for (int d = 0; demo_defects[d]; d++) known |= !strcmp(defect, demo_defects[d]);
    SN_ASSERT(known && (!strcmp(product, "disc") || !strcmp(product, "weave")));
    char tag[256];
    snprintf(tag, sizeof tag, "%s/%s/%s/%03d", product, split, defect, index);
    struct rng_state r;
    rng_seed(&r, seed, rng_hash_str(tag));
    int disc = !strcmp(product, "disc");
    struct demo_scene *s = sn_malloc(sizeof *s);
    if (disc)
        disc_render(&r, s);
    else
        weave_render(&r, s);
    image_to_u8(s->rgb, NPIX * 3, pix);
    if (good) memcpy(good, pix, NPIX * 3);
    if (!strcmp(defect, "good")) {
        if (mask) memset(mask, 0, NPIX);
        sn_free(s);
        return 0;
    }

    /* The defect, and its mask: every pixel whose 8-bit value changed. */
    uint8_t *bad = sn_malloc(NPIX * 3);
    if (!strcmp(defect, "scratch"))
        defect_scratch(&r, s, disc);
    else if (!strcmp(defect, "spot"))
        defect_spot(&r, s, disc);
    else
        defect_missing(&r, s, disc);
    image_to_u8(s->rgb, NPIX * 3, bad);
    long count = 0;
    for (long i = 0; i < NPIX; i++) {
        int diff = memcmp(pix + i * 3, bad + i * 3, 3) != 0;
        if (mask) mask[i] = diff ? 255 : 0;
        count += diff;
    }
    memcpy(pix, bad, NPIX * 3);
    sn_free(bad);
    sn_free(s);
    return count;
}

/* All images of one product/split/defect folder (masks for defects). */
static int demo_folder(const char *root, uint64_t seed, const char *product,
                       const char *split, const char *defect, int count)
{
    char dir[DEMO_PATH], mdir[DEMO_PATH], path[DEMO_PATH];
    demo_path(dir, "%s/%s/%s/%s", root, product, split, defect);
    demo_path(mdir, "%s/%s/ground_truth/%s", root, product, defect);
    int good = !strcmp(defect, "good");
    if (sn_mkdirs(dir) != SN_OK || (!good && sn_mkdirs(mdir) != SN_OK)) return SN_EUSER;
    uint8_t *pix = sn_malloc(NPIX * 3), *mask = sn_malloc(NPIX);
    int st = SN_OK;
    for (int i = 0; i < count && st == SN_OK; i++) {
        long n = demo_render(seed, product, split, defect, i, pix, mask, NULL);
        SN_ASSERT(good || n > 0);
        demo_path(path, "%s/%03d.png", dir, i);
        st = image_write_png(path, pix, N, N, 3);
        demo_path(path, "%s/%03d_mask.png", mdir, i);
        if (st == SN_OK && !good) st = image_write_png(path, mask, N, N, 1);
    }
    sn_free(pix);
    sn_free(mask);
    return st;
}

static const char demo_readme[] =
    "Generated by 'snarm demo-data': a small synthetic dataset in the MVTec AD\n"
    "layout (weave: a woven texture; disc: a metal disc on a plain background;\n"
    "defects scratch, spot, missing with exact masks). It exercises the\n"
    "pipeline; it is not a benchmark. Real benchmarks need real data.\n";

static int demo_fill(const char *root, uint64_t seed)
{
    int st = SN_OK;
    for (int p = 0; demo_products[p] && st == SN_OK; p++) {
        const char *prod = demo_products[p];
        log_info("demo-data: rendering %s", prod);
        st = demo_folder(root, seed, prod, "train", "good", DEMO_TRAIN);
        if (st == SN_OK)
            st = demo_folder(root, seed, prod, "test", "good", DEMO_TEST_GOOD);
        for (int d = 0; demo_defects[d] && st == SN_OK; d++)
            st = demo_folder(root, seed, prod, "test", demo_defects[d], DEMO_PER_DEFECT);
    }
    char path[DEMO_PATH], marker[64];
    demo_path(path, "%s/README.txt", root);
    if (st == SN_OK) st = sn_write_file_atomic(path, demo_readme, strlen(demo_readme));

    /* The marker goes last: its presence means every file above is complete. */
    demo_path(path, "%s/%s", root, DEMO_MARKER);
    int n = snprintf(marker, sizeof marker, "seed %llu\n", (unsigned long long)seed);
    if (st == SN_OK) st = sn_write_file_atomic(path, marker, (size_t)n);
    return st;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* 1 when dir holds a complete demo dataset of this seed. */
static int demo_complete(const char *dir, uint64_t seed)
{
    char path[DEMO_PATH], want[64];
    demo_path(path, "%s/%s", dir, DEMO_MARKER);
    if (!sn_file_exists(path)) return 0;
    size_t len;
    char *text = sn_read_file(path, &len);
    if (!text) return 0;
    snprintf(want, sizeof want, "seed %llu\n", (unsigned long long)seed);
    int same = !strcmp(text, want);
    sn_free(text);
    return same;
}

int demo_write(const char *dir, uint64_t seed)
{
    if (strlen(dir) > DEMO_DIR_MAX)
        return sn_error("demo-data: folder name longer than %d bytes: %.100s...",
                        DEMO_DIR_MAX, dir);
    if (sn_dir_exists(dir) || sn_file_exists(dir)) {
        if (demo_complete(dir, seed)) {
            log_info("demo-data: %s already holds the demo dataset of seed %llu", dir,
                     (unsigned long long)seed);
            return SN_OK;
        }
        return sn_error("%s exists and is not a complete demo dataset of seed %llu; "
                        "remove it or choose another folder",
                        dir, (unsigned long long)seed);
    }

    /* Build beside the target and rename at the end: a killed run leaves only
     * the temporary folder, never a partial dir. */
    char tmp[DEMO_PATH];
    demo_path(tmp, "%s.tmp.%ld", dir, (long)getpid());
    int st = sn_mkdirs(tmp);
    if (st == SN_OK) st = demo_fill(tmp, seed);
    if (st == SN_OK) st = sn_rename_into_place(tmp, dir);
    if (st != SN_OK && demo_complete(dir, seed)) {
        /* Another run finished the same dataset first; its copy is identical. */
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return SN_OK;
    }
    if (st != SN_OK) {
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return sn_error_prefix("writing the demo dataset to %s", dir);
    }
    log_info("demo-data: wrote %s (seed %llu)", dir, (unsigned long long)seed);
    return SN_OK;
}
