/*
 * test_metrics_io.c - the maps file (round trip, atomic writes, the errors a
 * user can meet), the CSV and Markdown tables, and the metrics and render
 * commands end to end.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/common.h"
#include "core/log.h"
#include "core/maps.h"
#include "core/metrics.h"
#include "data/image.h"
#include "testutil.h"

enum { N = 4, H = 5, W = 6, HW = H * W };

static const char *dir;

static float map_value(int i, int p)
{
    return (float)((i * 37 + p * 11) % 29) / 29.0f + (float)i * 1e-3f;
}

/* Write a small file: class a = images 0 (defective, score 0) and 1 (good,
 * 0.1), class b = 2 (defective, 0.5) and 3 (good, 0.3); optional NaN. */
static int write_file(const char *path, const char *dtype, int with_images, int nan_at)
{
    struct maps_writer *w;
    int rc = maps_writer_open(path, N, H, W, dtype, with_images, "seed: 1\n", &w);
    if (rc) return rc;
    maps_writer_set_attr(w, "method", "snarm");
    maps_writer_set_attr(w, "setting", "single");
    maps_writer_set_attr(w, "dataset", "toy");
    for (int i = 0; i < N && !rc; i++) {
        float map[HW];
        uint8_t mask[HW] = {0}, rgb[HW * 3];
        for (int p = 0; p < HW; p++)
            map[p] = map_value(i, p);
        for (int p = 0; p < HW * 3; p++)
            rgb[p] = (uint8_t)(p + i);
        if (i % 2 == 0) mask[7] = mask[8] = mask[13] = 255;
        if (i == nan_at) map[9] = NAN;
        char src[32];
        snprintf(src, sizeof src, "img%d.png", i);
        rc = maps_writer_put(w, i, map, mask, i == 2 ? 0.5f : 0.1f * (float)i, i % 2 == 0,
                             i < 2 ? "a" : "b", src, rgb);
    }
    if (rc) {
        maps_writer_abort(w);
        return rc;
    }
    return maps_writer_finish(w);
}

static void test_round_trip(void)
{
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/rt.h5", dir);
    struct maps_writer *w;

    /* Nothing appears at the path before finish; abort leaves nothing. */
    TU_CHECK(maps_writer_open(path, N, H, W, "float32", 1, NULL, &w) == SN_OK);
    sn_tmp_name(tmp, sizeof tmp, path);
    TU_CHECK(!sn_file_exists(path) && sn_file_exists(tmp));
    maps_writer_abort(w);
    TU_CHECK(!sn_file_exists(path) && !sn_file_exists(tmp));

    /* A missing image is an error, and no file is left. */
    TU_CHECK(maps_writer_open(path, N, H, W, NULL, 0, NULL, &w) == SN_OK);
    float map[HW] = {0};
    uint8_t mask[HW] = {0};
    TU_CHECK(maps_writer_put(w, 0, map, mask, 0, 0, "a", "x", NULL) == SN_OK);
    TU_CHECK_ERR(maps_writer_finish(w), "image 1 of 4 was never written");
    TU_CHECK(!sn_file_exists(path) && !sn_file_exists(tmp));
    TU_CHECK_ERR(maps_writer_open(path, N, H, W, "float64", 0, NULL, &w), "float64");

    /* float32 round trip with crops and attributes. */
    TU_CHECK(write_file(path, "float32", 1, -1) == SN_OK);
    TU_CHECK(sn_file_exists(path) && !sn_file_exists(tmp));
    struct maps_file m;
    TU_CHECK(maps_read(path, &m) == SN_OK);
    TU_CHECK(m.N == N && m.H == H && m.W == W && m.has_images);
    int same = 1;
    for (int i = 0; i < N; i++)
        for (int p = 0; p < HW; p++) {
            same &= m.maps[i * HW + p] == map_value(i, p);
            same &= m.masks[i * HW + p] == (i % 2 == 0 && (p == 7 || p == 8 || p == 13));
        }
    TU_CHECK(same);
    TU_CHECK(m.scores[3] == 0.1f * 3.0f && m.scores[2] == 0.5f && m.labels[0] == 1 &&
             m.labels[1] == 0);
    TU_CHECK(!strcmp(m.cls[1], "a") && !strcmp(m.cls[2], "b") &&
             !strcmp(m.path[3], "img3.png"));
    TU_CHECK(!strcmp(m.method, "snarm") && !strcmp(m.dataset, "toy"));
    TU_CHECK(!strcmp(m.maps_dtype, "float32") && m.config &&
             !strcmp(m.config, "seed: 1\n"));
    /* No creation time is written: the same run gives the same bytes. */
    TU_CHECK(!strcmp(m.version, sn_version()) && m.created[0] == 0);
    uint8_t rgb[HW * 3];
    TU_CHECK(maps_load_rgb(&m, 2, rgb) == SN_OK && rgb[0] == 2 && rgb[5] == 7);
    maps_file_free(&m);

    /* float16 keeps about three decimal digits. */
    TU_CHECK(write_file(path, "float16", 0, -1) == SN_OK);
    TU_CHECK(maps_read(path, &m) == SN_OK);
    TU_CHECK(!strcmp(m.maps_dtype, "float16") && !m.has_images);
    double worst = 0;
    for (int p = 0; p < N * HW; p++)
        worst = fmax(worst, fabs(m.maps[p] - map_value(p / HW, p % HW)));
    TU_CHECK_MSG(worst < 1e-3, "float16 worst error %g", worst);
    TU_CHECK_ERR(maps_load_rgb(&m, 0, rgb), "no /images");
    maps_file_free(&m);
}

/* Overwrite one element of an existing dataset, as a foreign tool might. */
static void patch(const char *path, const char *name, hsize_t index, hid_t mtype,
                  const void *value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t coord[3] = {index / HW, index % HW / W, index % W}, one = 1;
    H5Sselect_elements(fs, H5S_SELECT_SET, 1, coord);
    hid_t ms = H5Screate_simple(1, &one, NULL);
    if (H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, value) < 0) tu_failed++;
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(f);
}

/* A raw file with only /maps and /masks, of widths wm and wk. */
static void write_raw(const char *path, int wm, int wk)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dm[3] = {2, 4, (hsize_t)wm}, dk[3] = {2, 4, (hsize_t)wk};
    hid_t s1 = H5Screate_simple(3, dm, NULL), s2 = H5Screate_simple(3, dk, NULL);
    H5Dclose(
        H5Dcreate2(f, "maps", H5T_IEEE_F32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Dclose(
        H5Dcreate2(f, "masks", H5T_STD_U8LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(s1), H5Sclose(s2), H5Fclose(f);
}

static void test_read_errors(void)
{
    char path[512];
    struct maps_file m;
    snprintf(path, sizeof path, "%s/bad.h5", dir);

    /* NaN in a map: the writer refuses it, and so does the reader. */
    TU_CHECK_ERR(write_file(path, "float32", 0, 2), "image 2 (img2.png)");
    TU_CHECK(!sn_file_exists(path));
    TU_CHECK(write_file(path, "float32", 0, -1) == SN_OK);
    float nan = NAN;
    patch(path, "maps", 1 * HW + 8, H5T_NATIVE_FLOAT, &nan);
    TU_CHECK_ERR(maps_read(path, &m), "image 1 (img1.png)");
    maps_file_free(&m);

    /* Masks stored as 0/255 read as 0/1 and score the same. */
    TU_CHECK(write_file(path, "float32", 0, -1) == SN_OK);
    struct metric_table t1, t2;
    TU_CHECK(maps_read(path, &m) == SN_OK && metrics_compute(&m, 0.3, &t1) == SN_OK);
    maps_file_free(&m);
    uint8_t v255 = 255;
    patch(path, "masks", 0 * HW + 7, H5T_NATIVE_UINT8, &v255);
    patch(path, "masks", 2 * HW + 13, H5T_NATIVE_UINT8, &v255);
    TU_CHECK(maps_read(path, &m) == SN_OK && m.masks[7] == 1 &&
             m.masks[2 * HW + 13] == 1);
    TU_CHECK(metrics_compute(&m, 0.3, &t2) == SN_OK);
    TU_CHECK(t1.rows[0].pro == t2.rows[0].pro && t1.rows[0].p_ap == t2.rows[0].p_ap);
    metric_table_free(&t1), metric_table_free(&t2), maps_file_free(&m);

    /* A label that is neither 0 nor 1 (labels are one per image: the element
     * index is the image's, passed as the first of patch's coordinates). */
    TU_CHECK(write_file(path, "float32", 0, -1) == SN_OK);
    uint8_t two = 2;
    patch(path, "labels", 3 * HW, H5T_NATIVE_UINT8, &two);
    TU_CHECK_ERR(maps_read(path, &m), "image 3 (img3.png) has label 2");
    maps_file_free(&m);

    /* Shapes that disagree, missing datasets, missing files. */
    write_raw(path, 4, 5);
    TU_CHECK_ERR(maps_open(path, &m), "must have the same size");
    maps_file_free(&m);
    write_raw(path, 4, 4);
    TU_CHECK_ERR(maps_open(path, &m), "has no /scores");
    maps_file_free(&m);
    TU_CHECK_ERR(maps_open("/nonexistent/x.h5", &m), "does not exist");
    maps_file_free(&m);
}

/* CSV and Markdown, byte for byte. */
static void test_tables(void)
{
    struct metric_row rows[3] = {{"bottle", 0.5, 0.1, 0.75, 1.0, 10, 5},
                                 {"x,\"y\"", NAN, NAN, NAN, NAN, 4, 0},
                                 {"mean", 0.5, 0.1, 0.75, 1.0, 14, 5}};
    struct metric_table t = {.n_rows = 3,
                             .rows = rows,
                             .method = "snarm",
                             .setting = "multi",
                             .dataset = "mvtec",
                             .source = "/a/b/run.h5",
                             .fpr_limit = 0.3};
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/t.csv", dir);
    TU_CHECK(metrics_write_csv(&t, path) == SN_OK);
    char *csv = sn_read_file(path, &len);
    const char *want_csv = "class,p_ap,pro,p_auroc,i_auroc\n"
                           "bottle,0.5,0.10000000000000001,0.75,1\n"
                           "\"x,\"\"y\"\"\",nan,nan,nan,nan\n"
                           "mean,0.5,0.10000000000000001,0.75,1\n";
    TU_CHECK_MSG(csv && !strcmp(csv, want_csv), "csv:\n%s", csv ? csv : "(none)");
    sn_free(csv);

    snprintf(path, sizeof path, "%s/t.md", dir);
    TU_CHECK(metrics_write_markdown(&t, 1, path) == SN_OK);
    char *md = sn_read_file(path, &len);
    TU_CHECK(md && strstr(md, "## snarm / multi / mvtec\n"));
    TU_CHECK(md && strstr(md, "Maps: `run.h5`"));
    TU_CHECK(md &&
             strstr(md,
                    "| class | P-AP | PRO | P-AUROC | I-AUROC |\n|:--|--:|--:|--:|--:|\n"
                    "| bottle | 50.0 | 10.0 | 75.0 | 100.0 |\n"));
    TU_CHECK(
        md &&
        strstr(md,
               "| n/a | n/a | n/a | n/a |\n| **mean** | 50.0 | 10.0 | 75.0 | 100.0 |"));
    sn_free(md);
}

/* Run a command with a NULL-terminated argument list. */
static int run_cmd(int (*cmd)(int, char **), const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    return cmd(argc, (char **)args);
}

/* One CSV line's numbers: "class,v,v,v,v". */
static int csv_row(const char *csv, const char *cls, double v[4])
{
    char key[64];
    snprintf(key, sizeof key, "\n%s,", cls);
    const char *p = strstr(csv, key);
    if (!p) return 0;
    p += strlen(key);
    for (int k = 0; k < 4; k++) {
        char *end;
        v[k] = strtod(p, &end);
        p = end + 1;
    }
    return 1;
}

static void test_cmd_metrics(void)
{
    char f1[512], f2[512], out[512], path[600];
    snprintf(f1, sizeof f1, "%s/run_one.h5", dir);
    snprintf(f2, sizeof f2, "%s/run_two.h5", dir);
    snprintf(out, sizeof out, "%s/res", dir);
    TU_CHECK(write_file(f1, "float32", 0, -1) == SN_OK);
    TU_CHECK(write_file(f2, "float16", 0, -1) == SN_OK);
    const char *args[] = {"metrics", f1, f2, "--out", out, "--log", "error", NULL};
    TU_CHECK(run_cmd(cmd_metrics, args) == CLI_OK);

    /* The CSV holds exactly what metrics_compute gives (17 digits). */
    struct maps_file m;
    struct metric_table t;
    TU_CHECK(maps_open(f1, &m) == SN_OK && metrics_compute(&m, 0.3, &t) == SN_OK);
    size_t len;
    snprintf(path, sizeof path, "%s/run_one.csv", out);
    char *csv = sn_read_file(path, &len);
    double v[4];
    TU_CHECK(csv && !strncmp(csv, "class,p_ap,pro,p_auroc,i_auroc\n", 31));
    TU_CHECK(csv && csv_row(csv, "a", v) && v[0] == t.rows[0].p_ap &&
             v[1] == t.rows[0].pro && v[2] == t.rows[0].p_auroc &&
             v[3] == t.rows[0].i_auroc);
    TU_CHECK(csv && csv_row(csv, "mean", v) && v[1] == t.rows[2].pro);
    sn_free(csv);
    metric_table_free(&t);
    maps_file_free(&m);

    snprintf(path, sizeof path, "%s/run_two.md", out);
    TU_CHECK(sn_file_exists(path));
    snprintf(path, sizeof path, "%s/summary.md", out);
    char *md = sn_read_file(path, &len);
    TU_CHECK(md && strstr(md, "`run_one.h5`") && strstr(md, "`run_two.h5`"));
    sn_free(md);

    /* Usage and user errors. */
    const char *none[] = {"metrics", NULL};
    TU_CHECK(run_cmd(cmd_metrics, none) == CLI_EUSAGE);
    const char *dup[] = {"metrics", f1, f1, "--out", out, NULL};
    TU_CHECK(run_cmd(cmd_metrics, dup) == CLI_EUSER);
    const char *missing[] = {"metrics", "/nonexistent.h5", "--out", out, NULL};
    TU_CHECK(run_cmd(cmd_metrics, missing) == CLI_EUSER);
}

static void test_cmd_render(void)
{
    char f[512], out[512], path[600];
    snprintf(f, sizeof f, "%s/render.h5", dir);
    snprintf(out, sizeof out, "%s/pics", dir);
    TU_CHECK(write_file(f, "float32", 1, -1) == SN_OK);
    const char *args[] = {"render", f, out, "--worst", "2", "--log", "error", NULL};
    TU_CHECK(run_cmd(cmd_render, args) == CLI_OK);

    /* Worst first: in class a the good image outscores the defective one; class
     * b is separated, so none of its images is among the two worst. */
    size_t len;
    snprintf(path, sizeof path, "%s/index.html", out);
    char *html = sn_read_file(path, &len);
    TU_CHECK(html && strstr(html, "00000_a.png") && strstr(html, "00001_a.png"));
    TU_CHECK(html && !strstr(html, "00002_b.png"));
    sn_free(html);

    /* The picture: three panels with gaps, the outline in green. */
    struct sn_image img;
    snprintf(path, sizeof path, "%s/00000_a.png", out);
    TU_CHECK(image_load(path, &img) == SN_OK);
    TU_CHECK(img.w == 3 * W + 8 && img.h == H);
    const float *px = img.rgb + ((long)1 * img.w + (W + 4) + 1) * 3; /* mask pixel 7 */
    TU_CHECK(img.rgb && px[0] == 0.0f && px[1] == 1.0f && px[2] == 0.0f);
    image_free(&img);

    const char *pick[] = {"render", f, out, "--images", "3,1", NULL};
    TU_CHECK(run_cmd(cmd_render, pick) == CLI_OK);
    snprintf(path, sizeof path, "%s/00003_b.png", out);
    TU_CHECK(sn_file_exists(path));
    const char *bad[] = {"render", f, out, "--images", "9", NULL};
    TU_CHECK(run_cmd(cmd_render, bad) == CLI_EUSER);
    TU_CHECK(strstr(sn_last_error(), "'9' is not an image index") != NULL);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dir = tu_tmpdir("metrics");
    test_round_trip();
    test_read_errors();
    test_tables();
    test_cmd_metrics();
    test_cmd_render();
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tu_finish("test_metrics_io");
}
