/*
 * test_metrics_golden.c - metrics and post-processing against the references
 * written by tests/ref_metrics.py: scikit-learn's roc_auc_score and
 * average_precision_score, a brute-force AUPRO, scipy's gaussian_filter and
 * a numpy average pooling; and a maps file written by h5py (float16 maps,
 * 0/255 masks, a class with only good images).
 */
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "core/maps.h"
#include "core/metrics.h"
#include "core/postproc.h"
#include "testutil.h"

/* Metric values are compared to 1e-9 absolute: both sides are exact up to
 * the order of floating-point summation. */
#define TOL 1e-9

static const char *ref;

/* Read a whole dataset as doubles (the references are float64; tu_ref_read
 * would round them to float). */
static double *read_d(const char *name, long *n)
{
    hid_t f = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "reference %s lacks %s\n", ref, name);
        exit(1);
    }
    hid_t sp = H5Dget_space(d);
    *n = (long)H5Sget_simple_extent_npoints(sp);
    double *v = malloc(sizeof(double) * (size_t)(*n ? *n : 1));
    if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) exit(1);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return v;
}

static double scalar(const char *group, const char *name)
{
    char path[256];
    long n;
    snprintf(path, sizeof path, "%s/%s", group, name);
    double *v = read_d(path, &n);
    double x = v[0];
    free(v);
    return x;
}

/* Both NaN, or within TOL. */
static int same(double got, double want)
{
    return (isnan(got) && isnan(want)) || fabs(got - want) <= TOL;
}

#define CHECK_SAME(what, got, want)                                                      \
    TU_CHECK_MSG(same((got), (want)), "%s: got %.17g want %.17g", (what), (got), (want))

static void test_roc(void)
{
    static const char *cases[] = {"random",       "tied",         "tied_coarse",
                                  "all_equal",    "one_positive", "all_negative",
                                  "all_positive", "perfect",      "inverted",
                                  "signed_zero",  "large_range",  "large"};
    for (size_t c = 0; c < SN_ARRAY_LEN(cases); c++) {
        char g[128], what[160];
        long n, n2;
        snprintf(g, sizeof g, "roc/%s", cases[c]);
        snprintf(what, sizeof what, "%s/scores", g);
        double *s = read_d(what, &n);
        snprintf(what, sizeof what, "%s/labels", g);
        double *y = read_d(what, &n2);
        float *sf = malloc(sizeof(float) * (size_t)n);
        uint8_t *yb = malloc((size_t)n);
        for (long i = 0; i < n; i++)
            sf[i] = (float)s[i], yb[i] = y[i] != 0;

        snprintf(what, sizeof what, "%s auroc", g);
        CHECK_SAME(what, metric_auroc(sf, yb, n), scalar(g, "auroc"));
        snprintf(what, sizeof what, "%s ap", g);
        CHECK_SAME(what, metric_ap(sf, yb, n), scalar(g, "ap"));
        free(s), free(y), free(sf), free(yb);
    }
}

static void test_pixels(void)
{
    static const char *cases[] = {"random",    "tied",   "diagonal_255",
                                  "all_equal", "smooth", "large_tied"};
    for (size_t c = 0; c < SN_ARRAY_LEN(cases); c++) {
        char g[128], what[160];
        long n, n2;
        int nd;
        snprintf(g, sizeof g, "pix/%s", cases[c]);
        snprintf(what, sizeof what, "%s/maps", g);
        double *md = read_d(what, &n);
        long *shape = tu_ref_shape(ref, what, &nd);
        snprintf(what, sizeof what, "%s/masks", g);
        double *kd = read_d(what, &n2);
        float *maps = malloc(sizeof(float) * (size_t)n);
        uint8_t *masks = malloc((size_t)n);
        for (long i = 0; i < n; i++)
            maps[i] = (float)md[i], masks[i] = (uint8_t)kd[i];

        /* The shared sort gives all three; metric_aupro alone must agree. */
        struct metric_pixel px;
        int N = (int)shape[0], H = (int)shape[1], W = (int)shape[2];
        metric_pixels(maps, masks, N, H, W, METRICS_FPR_LIMIT, &px);
        snprintf(what, sizeof what, "%s p_auroc", g);
        CHECK_SAME(what, px.p_auroc, scalar(g, "p_auroc"));
        snprintf(what, sizeof what, "%s p_ap", g);
        CHECK_SAME(what, px.p_ap, scalar(g, "p_ap"));
        snprintf(what, sizeof what, "%s pro (brute force)", g);
        CHECK_SAME(what, px.pro, scalar(g, "pro"));
        CHECK_SAME(what, metric_aupro(maps, masks, N, H, W, METRICS_FPR_LIMIT),
                   scalar(g, "pro"));
        free(md), free(kd), free(maps), free(masks), free(shape);
    }
}

static void test_gaussian(void)
{
    static const char *cases[] = {"s4", "s1_5", "tiny"};
    for (size_t c = 0; c < SN_ARRAY_LEN(cases); c++) {
        char what[160];
        long n;
        int nd;
        snprintf(what, sizeof what, "gauss/%s/in", cases[c]);
        float *x = tu_ref_read(ref, what, &n);
        long *shape = tu_ref_shape(ref, what, &nd);
        snprintf(what, sizeof what, "gauss/%s/out", cases[c]);
        float *want = tu_ref_read(ref, what, &n);
        snprintf(what, sizeof what, "gauss/%s", cases[c]);
        postproc_gaussian(x, (int)shape[0], (int)shape[1], scalar(what, "sigma"), NULL);
        /* scipy also computes in double and rounds each axis to float32; the
         * results agree bit for bit here, the tolerance only allows for
         * another libm's exp() in the weights (a few float ulps). */
        TU_CLOSE(what, x, want, n, 1e-7, 1e-6);
        free(x), free(want), free(shape);
    }
}

static void test_pool(void)
{
    static const char *cases[] = {"k16s2", "k3s1", "k4s3"};
    for (size_t c = 0; c < SN_ARRAY_LEN(cases); c++) {
        char what[160];
        long n;
        int nd;
        snprintf(what, sizeof what, "pool/%s/in", cases[c]);
        float *x = tu_ref_read(ref, what, &n);
        long *shape = tu_ref_shape(ref, what, &nd);
        snprintf(what, sizeof what, "pool/%s", cases[c]);
        float got =
            postproc_image_score(x, (int)shape[0], (int)shape[1],
                                 (int)scalar(what, "pool"), (int)scalar(what, "stride"));
        float want = (float)scalar(what, "score");
        TU_CLOSE(what, &got, &want, 1, 0, 1e-6);
        free(x), free(shape);
    }
}

/* A file another tool wrote: read it and score it per class. */
static void test_foreign(void)
{
    const char *path = tu_ref_path("metrics_foreign.h5");
    struct maps_file m;
    struct metric_table t;
    TU_CHECK(maps_read(path, &m) == SN_OK);
    TU_CHECK(!strcmp(m.maps_dtype, "float16")); /* named from the stored type */
    TU_CHECK(!strcmp(m.method, "foreign") && !strcmp(m.path[3], "img3.png"));
    TU_CHECK(metrics_compute(&m, METRICS_FPR_LIMIT, &t) == SN_OK);
    TU_CHECK(t.n_rows == 3 && !strcmp(t.rows[0].cls, "screw") &&
             !strcmp(t.rows[1].cls, "only_good") && !strcmp(t.rows[2].cls, "mean"));
    for (int r = 0; r < 2 && t.n_rows == 3; r++) {
        char g[128];
        snprintf(g, sizeof g, "foreign/%s", t.rows[r].cls);
        CHECK_SAME("foreign p_ap", t.rows[r].p_ap, scalar(g, "p_ap"));
        CHECK_SAME("foreign pro", t.rows[r].pro, scalar(g, "pro"));
        CHECK_SAME("foreign p_auroc", t.rows[r].p_auroc, scalar(g, "p_auroc"));
        CHECK_SAME("foreign i_auroc", t.rows[r].i_auroc, scalar(g, "i_auroc"));
    }
    /* The class with only good images is NaN and left out of the mean. */
    if (t.n_rows == 3) {
        CHECK_SAME("mean p_ap", t.rows[2].p_ap, scalar("foreign/screw", "p_ap"));
        CHECK_SAME("mean i_auroc", t.rows[2].i_auroc, scalar("foreign/screw", "i_auroc"));
        metric_table_free(&t);
    }
    maps_file_free(&m);
}

int main(void)
{
    ref = tu_ref_path("metrics.h5");
    if (!sn_file_exists(ref))
        tu_skip("%s missing (tests/ref_metrics.py needs sklearn, scipy, h5py)", ref);
    log_set_level(LOG_ERROR);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_roc();
    test_pixels();
    test_gaussian();
    test_pool();
    test_foreign();
    return tu_finish("test_metrics_golden");
}
