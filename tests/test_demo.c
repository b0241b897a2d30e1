/*
 * The built-in demo dataset: same seed, same bytes (two runs compared file by
 * file); the layout and counts as dataset_open reads them; masks exact (255
 * exactly where the defect changed the image); completion and refusal rules.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "data/dataset.h"
#include "data/demo.h"
#include "data/image.h"
#include "testutil.h"

enum { NPIX = DEMO_SIZE * DEMO_SIZE };

static char dir_a[4200], dir_b[4200];
static int n_files, n_same;

/* Compare each regular file under dir_a with its twin under dir_b. */
static int compare_twin(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag != FTW_F) return 0;
    char twin[8400];
    snprintf(twin, sizeof twin, "%s%s", dir_b, path + strlen(dir_a));
    size_t na, nb;
    char *a = sn_read_file(path, &na), *b = sn_read_file(twin, &nb);
    n_files++;
    if (a && b && na == nb && !memcmp(a, b, na))
        n_same++;
    else
        fprintf(stderr, "differs: %s\n", path + strlen(dir_a));
    sn_free(a);
    sn_free(b);
    return 0;
}

static void check_determinism(const char *tmp)
{
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/sub/b", tmp);
    TU_CHECK(demo_write(dir_a, 5) == SN_OK);
    TU_CHECK(demo_write(dir_b, 5) == SN_OK);
    nftw(dir_a, compare_twin, 16, FTW_PHYS);
    /* 2 products x (38 images + 12 masks), README and the marker. */
    TU_CHECK_MSG(n_files == 102 && n_same == n_files, "%d files, %d identical", n_files,
                 n_same);

    /* Another seed draws other images. */
    uint8_t *p5 = sn_malloc(NPIX * 3), *p6 = sn_malloc(NPIX * 3);
    demo_render(5, "disc", "train", "good", 0, p5, NULL, NULL);
    demo_render(6, "disc", "train", "good", 0, p6, NULL, NULL);
    TU_CHECK(memcmp(p5, p6, NPIX * 3) != 0);
    sn_free(p5);
    sn_free(p6);
}

static void check_layout(void)
{
    struct ds_dataset ds;
    int st = dataset_open(dir_a, "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "%s", sn_last_error());
    if (st != SN_OK) return;
    TU_CHECK(ds.n_classes == 2 && !strcmp(ds.format, "mvtec"));
    for (int i = 0; i < ds.n_classes; i++) {
        const struct ds_class *c = &ds.classes[i];
        TU_CHECK(c->n_train == DEMO_TRAIN && c->n_test_good == DEMO_TEST_GOOD);
        TU_CHECK(c->n_test_defect == 3 * DEMO_PER_DEFECT && c->n_empty_masks == 0);
        const char *types[8];
        TU_CHECK(dataset_defect_types(c, types, 8) == 3);
    }
    TU_CHECK(dataset_class(&ds, "disc") && dataset_class(&ds, "weave"));
    int w, h;
    TU_CHECK(image_size(ds.classes[0].train[0].path, &w, &h) == SN_OK && w == DEMO_SIZE &&
             h == DEMO_SIZE);
    dataset_free(&ds);
}

/* Mask == 255 exactly where the defective image differs from its good twin,
 * and the files on disk hold exactly those bytes. */
static void check_masks(void)
{
    uint8_t *pix = sn_malloc(NPIX * 3), *good = sn_malloc(NPIX * 3),
            *mask = sn_malloc(NPIX);
    for (int p = 0; demo_products[p]; p++)
        for (int d = 0; demo_defects[d]; d++)
            for (int i = 0; i < DEMO_PER_DEFECT; i++) {
                long n = demo_render(5, demo_products[p], "test", demo_defects[d], i, pix,
                                     mask, good);
                long agree = 0, marked = 0;
                for (long k = 0; k < NPIX; k++) {
                    int diff = memcmp(pix + 3 * k, good + 3 * k, 3) != 0;
                    agree += diff == (mask[k] == 255) && (mask[k] == 0 || mask[k] == 255);
                    marked += mask[k] == 255;
                }
                TU_CHECK_MSG(agree == NPIX && marked == n && n > 20,
                             "%s/%s/%d: mask not exact (%ld of %d agree, %ld marked)",
                             demo_products[p], demo_defects[d], i, agree, NPIX, marked);

                /* The files written by demo_write hold the same pixels. */
                char path[8400];
                snprintf(path, sizeof path, "%s/%s/ground_truth/%s/%03d_mask.png", dir_a,
                         demo_products[p], demo_defects[d], i);
                int w, h;
                uint8_t *m;
                TU_CHECK(mask_load(path, &w, &h, &m) == SN_OK);
                long same = 0;
                for (long k = 0; k < NPIX; k++)
                    same += m[k] == (mask[k] != 0);
                TU_CHECK(same == NPIX);
                sn_free(m);
                snprintf(path, sizeof path, "%s/%s/test/%s/%03d.png", dir_a,
                         demo_products[p], demo_defects[d], i);
                struct sn_image img;
                TU_CHECK(image_load(path, &img) == SN_OK);
                same = 0;
                for (long k = 0; k < NPIX * 3; k++)
                    same += (int)(img.rgb[k] * 255.0f + 0.5f) == pix[k];
                TU_CHECK(same == NPIX * 3);
                image_free(&img);
            }
    sn_free(pix);
    sn_free(good);
    sn_free(mask);
}

static void check_rules(const char *tmp)
{
    /* A complete dataset of the same seed is kept; another seed is refused. */
    TU_CHECK(demo_write(dir_a, 5) == SN_OK);
    TU_CHECK_ERR(demo_write(dir_a, 6), "is not a complete demo dataset of seed 6");

    /* A folder without the completion marker (a foreign or killed one) too. */
    char path[8400];
    snprintf(path, sizeof path, "%s/%s", dir_b, DEMO_MARKER);
    TU_CHECK(remove(path) == 0);
    TU_CHECK_ERR(demo_write(dir_b, 5), "not a complete demo dataset");

    /* Nothing temporary is left beside the outputs. */
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.tmp.*' | grep -q .", tmp);
    TU_CHECK(system(cmd) != 0);
}

int main(void)
{
    const char *tmp = tu_tmpdir("demo");
    check_determinism(tmp);
    check_layout();
    check_masks();
    check_rules(tmp);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return tu_finish("test_demo");
}
