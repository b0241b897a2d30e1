/*
 * test_metrics.c - metrics and post-processing on tiny hand-computed inputs,
 * and the edge cases: ties, all scores equal, one class only, classes with
 * only good images, defective images with empty masks, 0/255 masks.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "core/maps.h"
#include "core/metrics.h"
#include "core/postproc.h"
#include "core/rng.h"
#include "testutil.h"

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-12)
#define CHECK_NEAR(got, want)                                                            \
    TU_CHECK_MSG(NEAR((got), (want)), "%s = %.17g, want %.17g", #got, (double)(got),     \
                 (double)(want))

/* ROC AUC and AP worked out by hand. */
static void test_roc_hand(void)
{
    /* sklearn's documentation example: AUC 0.75, AP 0.8333. */
    float s1[] = {0.1f, 0.4f, 0.35f, 0.8f};
    uint8_t y1[] = {0, 0, 1, 1};
    CHECK_NEAR(metric_auroc(s1, y1, 4), 0.75);
    CHECK_NEAR(metric_ap(s1, y1, 4), 5.0 / 6.0);

    /* A tie between a positive and a negative is one threshold: ROC points
     * (0,0) (0,.5) (.5,1) (1,1) give 0.875; AP = .5 x 1 + .5 x 2/3. */
    float s2[] = {1, 2, 2, 3};
    uint8_t y2[] = {0, 0, 1, 1};
    CHECK_NEAR(metric_auroc(s2, y2, 4), 0.875);
    CHECK_NEAR(metric_ap(s2, y2, 4), 0.5 + 1.0 / 3.0);

    /* All scores equal: AUROC 0.5, AP the positive rate. */
    float s3[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    uint8_t y3[] = {0, 1, 0, 1, 0};
    CHECK_NEAR(metric_auroc(s3, y3, 5), 0.5);
    CHECK_NEAR(metric_ap(s3, y3, 5), 0.4);

    /* -0 and +0 are the same threshold. */
    float s4[] = {-0.0f, 0.0f};
    uint8_t y4[] = {0, 1};
    CHECK_NEAR(metric_auroc(s4, y4, 2), 0.5);

    /* One class only: undefined. AP is defined (1) when all are positive. */
    uint8_t none[] = {0, 0, 0, 0}, all[] = {1, 1, 1, 1};
    TU_CHECK(isnan(metric_auroc(s1, none, 4)) && isnan(metric_auroc(s1, all, 4)));
    TU_CHECK(isnan(metric_ap(s1, none, 4)));
    CHECK_NEAR(metric_ap(s1, all, 4), 1.0);
    TU_CHECK(isnan(metric_auroc(s1, y1, 0)));
}

/* AUPRO worked out by hand. */
static void test_aupro_hand(void)
{
    /* One region of two pixels, six defect-free pixels. Curve: (0,0) (0,.5)
     * (1/6,.5) (1/3,.5) (1/3,1) (1/2,1) ...; up to 0.3 the area is .15, so
     * AUPRO = .5; up to 0.5 it is 1/6 + 1/6, so 2/3. */
    float m1[] = {0.9f, 0.5f, 0.8f, 0.1f, 0.2f, 0.3f, 0.4f, 0.6f};
    uint8_t k1[] = {1, 1, 0, 0, 0, 0, 0, 0};
    CHECK_NEAR(metric_aupro(m1, k1, 1, 2, 4, 0.3), 0.5);
    CHECK_NEAR(metric_aupro(m1, k1, 1, 2, 4, 0.5), 2.0 / 3.0);

    /* 8-connectivity: pixel (0,0) touches (1,1) diagonally, so the three mask
     * pixels are one region and covering (0,0) covers 1/3 of it (4-connected
     * regions would give 1/2). */
    float m2[] = {0.9f, 0.1f, 0.2f, 0.3f, 0.05f, 0.05f, 0.4f, 0.6f, 0.7f};
    uint8_t k2[] = {1, 0, 0, 0, 1, 1, 0, 0, 0};
    CHECK_NEAR(metric_aupro(m2, k2, 1, 3, 3, 0.3), 1.0 / 3.0);

    /* Regions over two images weigh equally whatever their area: region A
     * (2 px, image 0), region B (1 px, image 1); pixels weigh 1/4 and 1/2.
     * Curve (0,0) (0,.5) (0,.75) (1/3,.75) (2/3,.75) (2/3,1) (1,1). */
    float m3[] = {0.8f, 0.2f, 0.1f, 0.3f, 0.9f, 0.4f};
    uint8_t k3[] = {1, 1, 0, 0, 1, 0};
    CHECK_NEAR(metric_aupro(m3, k3, 2, 1, 3, 0.3), 0.75);
    CHECK_NEAR(metric_aupro(m3, k3, 2, 1, 3, 1.0), 0.25 + 0.25 + 1.0 / 3.0);
    struct metric_pixel px;
    metric_pixels(m3, k3, 2, 1, 3, 0.3, &px);
    CHECK_NEAR(px.p_auroc, 7.0 / 9.0);
    CHECK_NEAR(px.p_ap, 2.0 / 3.0 + 0.2);

    /* All scores equal: one threshold, the straight line to (1,1). */
    float m4[] = {0.5f, 0.5f, 0.5f, 0.5f};
    uint8_t k4[] = {1, 0, 0, 1};
    CHECK_NEAR(metric_aupro(m4, k4, 1, 2, 2, 0.3), 0.15);
    metric_pixels(m4, k4, 1, 2, 2, 0.3, &px);
    CHECK_NEAR(px.p_auroc, 0.5);

    /* No defect pixel, or no defect-free pixel: undefined. */
    uint8_t zero[4] = {0}, ones[4] = {1, 1, 1, 1};
    TU_CHECK(isnan(metric_aupro(m4, zero, 1, 2, 2, 0.3)));
    TU_CHECK(isnan(metric_aupro(m4, ones, 1, 2, 2, 0.3)));
}

/* Masks given as 0/255 are the same as 0/1. */
static void test_mask_255(void)
{
    float m[] = {0.9f, 0.1f, 0.2f, 0.3f, 0.05f, 0.05f, 0.4f, 0.6f, 0.7f};
    uint8_t k01[] = {1, 0, 0, 0, 1, 1, 0, 0, 0}, k255[9];
    for (int i = 0; i < 9; i++)
        k255[i] = k01[i] ? 255 : 0;
    struct metric_pixel a, b;
    metric_pixels(m, k01, 1, 3, 3, 0.3, &a);
    metric_pixels(m, k255, 1, 3, 3, 0.3, &b);
    TU_CHECK(a.p_auroc == b.p_auroc && a.p_ap == b.p_ap && a.pro == b.pro);
}

/* A maps file held in memory, for metrics_compute. */
static void mem_file(struct maps_file *m, int N, int H, int W)
{
    memset(m, 0, sizeof *m);
    m->N = N, m->H = H, m->W = W;
    m->maps = sn_calloc((size_t)N * H * W, sizeof(float));
    m->masks = sn_calloc((size_t)N * H * W, 1);
    m->scores = sn_calloc((size_t)N, sizeof(float));
    m->labels = sn_calloc((size_t)N, 1);
    m->cls = sn_calloc((size_t)N, sizeof(char *));
    m->path = sn_calloc((size_t)N, sizeof(char *));
    snprintf(m->file, sizeof m->file, "memory");
}

/*
 * Class "a": 3 images, the defective image 2 has an empty mask (it only adds
 * defect-free pixels); class "b": only good images (every metric NaN, left out
 * of the mean); class "c": defective images only, none with a mask pixel
 * (pixel metrics NaN, I-AUROC NaN).
 */
static void test_table_edges(void)
{
    struct maps_file m;
    mem_file(&m, 7, 1, 3);
    const char *cls[] = {"a", "b", "a", "b", "a", "c", "c"};
    float maps[7][3] = {{0.8f, 0.2f, 0.1f}, {0.5f, 0.5f, 0.5f}, {0.3f, 0.9f, 0.4f},
                        {0.1f, 0.2f, 0.3f}, {0.7f, 0.6f, 0.0f}, {0.1f, 0.1f, 0.1f},
                        {0.2f, 0.2f, 0.2f}};
    uint8_t masks[7][3] = {{1, 1, 0}, {0}, {0, 0, 0}, {0}, {0, 1, 0}, {0}, {0}};
    float scores[] = {0.8f, 0.5f, 0.9f, 0.3f, 0.6f, 0.1f, 0.2f};
    uint8_t labels[] = {1, 0, 1, 0, 0, 1, 1};
    for (int i = 0; i < 7; i++) {
        memcpy(m.maps + 3 * i, maps[i], sizeof maps[i]);
        memcpy(m.masks + 3 * i, masks[i], 3);
        m.cls[i] = sn_strdup(cls[i]);
        m.path[i] = sn_strdup("x.png");
    }
    memcpy(m.scores, scores, sizeof scores);
    memcpy(m.labels, labels, sizeof labels);

    struct metric_table t;
    TU_CHECK(metrics_compute(&m, 0.3, &t) == SN_OK);
    TU_CHECK(t.n_rows == 4 && !strcmp(t.rows[0].cls, "a") &&
             !strcmp(t.rows[1].cls, "b") && !strcmp(t.rows[2].cls, "c") &&
             !strcmp(t.rows[3].cls, "mean"));

    /* Class a against the same pixels scored directly. */
    float pa[9];
    uint8_t ka[9];
    int ia[] = {0, 2, 4};
    for (int k = 0; k < 3; k++) {
        memcpy(pa + 3 * k, maps[ia[k]], sizeof maps[0]);
        memcpy(ka + 3 * k, masks[ia[k]], 3);
    }
    struct metric_pixel px;
    metric_pixels(pa, ka, 3, 1, 3, 0.3, &px);
    float sa[] = {0.8f, 0.9f, 0.6f};
    uint8_t la[] = {1, 1, 0};
    const struct metric_row *a = &t.rows[0], *b = &t.rows[1], *c = &t.rows[2];
    TU_CHECK(a->p_auroc == px.p_auroc && a->p_ap == px.p_ap && a->pro == px.pro);
    CHECK_NEAR(a->i_auroc, metric_auroc(sa, la, 3));
    CHECK_NEAR(a->i_auroc, 1.0);
    TU_CHECK(a->n_images == 3 && a->n_defective == 2);
    TU_CHECK(isnan(b->p_ap) && isnan(b->pro) && isnan(b->p_auroc) && isnan(b->i_auroc));
    TU_CHECK(isnan(c->p_ap) && isnan(c->pro) && isnan(c->p_auroc) && isnan(c->i_auroc));

    /* The mean leaves the undefined rows out. */
    const struct metric_row *mean = &t.rows[3];
    TU_CHECK(mean->p_ap == a->p_ap && mean->pro == a->pro && mean->i_auroc == a->i_auroc);
    TU_CHECK(mean->n_images == 7);
    metric_table_free(&t);
    maps_file_free(&m);
}

/* The sort runs on several threads above 2^16 keys: same result as on one. */
static void test_threads(void)
{
    enum { NI = 2, SH = 300, SW = 310 };
    long n = (long)NI * SH * SW;
    float *maps = sn_malloc(sizeof(float) * (size_t)n);
    uint8_t *masks = sn_malloc((size_t)n);
    struct rng_state r;
    rng_seed(&r, 7, 0);
    for (long p = 0; p < n; p++) {
        long y = p / SW % SH, x = p % SW;
        masks[p] = (y / 40 + x / 50) % 3 == 0;
        /* coarse levels make ties common */
        maps[p] = (float)floor((rng_uniform(&r) + 0.4 * masks[p]) * 200) / 200.0f;
    }
    struct metric_pixel one, two;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    metric_pixels(maps, masks, NI, SH, SW, 0.3, &one);
    omp_set_num_threads(2);
    metric_pixels(maps, masks, NI, SH, SW, 0.3, &two);
    omp_set_num_threads(saved);
    TU_CHECK(one.p_auroc == two.p_auroc && one.p_ap == two.p_ap && one.pro == two.pro);
    TU_CHECK(one.p_auroc > 0.5 && one.p_auroc < 1 && one.pro > 0 && one.pro < 1);
    sn_free(maps);
    sn_free(masks);
}

static void test_postproc(void)
{
    /* Ensemble: the mean of the head maps. */
    float h0[] = {0, 1, 2}, h1[] = {2, 3, 4}, h2[] = {1, 2, 6}, out[3];
    const float *heads[] = {h0, h1, h2};
    postproc_ensemble(heads, 3, 3, out);
    TU_CHECK(out[0] == 1.0f && out[1] == 2.0f && out[2] == 4.0f);

    /* Kernel radius int(4 sigma + 0.5), as scipy. */
    TU_CHECK(postproc_gaussian_radius(4.0) == 16 && postproc_gaussian_radius(1.5) == 6);

    /* Reflect padding keeps a constant map constant, even past the edges. */
    float c[6 * 5];
    for (int i = 0; i < 30; i++)
        c[i] = 0.25f;
    postproc_gaussian(c, 6, 5, 4.0, NULL);
    int flat = 1;
    for (int i = 0; i < 30; i++)
        flat &= fabsf(c[i] - 0.25f) < 1e-7f;
    TU_CHECK(flat);

    /* An impulse far from the edges gives the separable kernel, which sums
     * to one and is symmetric. */
    enum { S = 41 };
    static float imp[S * S];
    imp[20 * S + 20] = 1;
    postproc_gaussian(imp, S, S, 4.0, NULL);
    double sum = 0;
    for (int i = 0; i < S * S; i++)
        sum += imp[i];
    CHECK_NEAR(round(sum * 1e6) / 1e6, 1.0);
    TU_CHECK(imp[20 * S + 16] == imp[20 * S + 24] &&
             imp[16 * S + 20] == imp[24 * S + 20]);
    double g = exp(-0.5 * 16 / 16.0), z = 0;
    for (int x = -16; x <= 16; x++)
        z += exp(-0.5 * x * x / 16.0);
    TU_CHECK(fabs(imp[20 * S + 24] - g / z * (1 / z)) < 1e-8);
    /* The kernel is cut after 16 taps: 17 pixels away nothing arrives. */
    TU_CHECK(imp[20 * S + 3] == 0.0f && imp[20 * S + 4] > 0.0f);
    TU_CHECK(imp[3 * S + 20] == 0.0f && imp[4 * S + 20] > 0.0f);

    /* Image score: 2 x 2 pooling, stride 2, of a 4 x 4 map. */
    float p[] = {0, 0, 1, 3, 0, 0, 1, 3, 9, 0, 0, 0, 0, 0, 0, 0};
    TU_CHECK(postproc_image_score(p, 4, 4, 2, 2) == 2.25f);
    TU_CHECK(postproc_image_score(p, 4, 4, 1, 1) == 9.0f);
    TU_CHECK(postproc_image_score(p, 4, 4, 16, 2) == 17.0f / 16.0f); /* window shrunk */
    TU_CHECK(postproc_image_score(p, 4, 4, 2, 1) == 2.25f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    test_roc_hand();
    test_aupro_hand();
    test_mask_255();
    test_table_edges();
    test_threads();
    test_postproc();
    return tu_finish("test_metrics");
}
