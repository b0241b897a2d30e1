/*
 * The real datasets under ../shared/datasets (read in place; the test skips
 * where they are absent): MVTec AD bottle and the magnetic-tile set, through
 * the API and through "snarm datasets", whose table and list of empty masks
 * are checked line by line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "data/dataset.h"
#include "testutil.h"

/* The four "uneven" test images whose masks are all zero (datasets README). */
static const char *const empty_tiles[] = {"exp3_num_45042.jpg", "exp4_num_124690.jpg",
                                          "exp4_num_352527.jpg", "exp4_num_45057.jpg"};

/* Run "snarm datasets ROOT" and return its standard output (sn_free it). */
static char *run_cli(const char *root, int *status)
{
    const char *bin = getenv("SNARM_BIN");
    if (!bin) return NULL;
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "'%s' datasets '%s'", bin, root);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *out = sn_malloc(cap + 1);
    while ((r = fread(out + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap) out = sn_realloc(out, (cap *= 2) + 1);
    }
    out[n] = 0;
    *status = pclose(p);
    return out;
}

static void check_bottle(const char *root)
{
    struct ds_dataset ds;
    int st = dataset_open(root, "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "mvtec_ad: %s", sn_last_error());
    if (st != SN_OK) return;
    const struct ds_class *c = dataset_class(&ds, "bottle");
    TU_CHECK(c != NULL);
    if (c) {
        TU_CHECK_MSG(c->n_train == 209 && c->n_test_good == 20 && c->n_test_defect == 63,
                     "bottle: %d / %d / %d", c->n_train, c->n_test_good,
                     c->n_test_defect);
        TU_CHECK(c->n_empty_masks == 0);
        int masks = 0;
        for (int i = 0; i < c->n_test; i++)
            masks += c->test[i].mask_path != NULL;
        TU_CHECK(masks == 63);
    }
    dataset_free(&ds);

    int status = -1;
    char *out = run_cli(root, &status);
    TU_CHECK_MSG(out && status == 0, "snarm datasets %s failed", root);
    if (!out) return;
    printf("%s\n", out);
    TU_CHECK(strstr(out, "bottle                  209        20          63           0  "
                         "broken_large 20, broken_small 22, contamination 21") != NULL);
    TU_CHECK(strstr(out, "all 63 masks found") != NULL);
    sn_free(out);
}

static void check_tiles(const char *root)
{
    struct ds_dataset ds;
    int st = dataset_open(root, "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "magnetic_tile: %s", sn_last_error());
    if (st != SN_OK) return;
    TU_CHECK(ds.n_classes == 1);
    const struct ds_class *c = &ds.classes[0];
    TU_CHECK_MSG(c->n_train == 762 && c->n_test_good == 190 && c->n_test_defect == 392,
                 "magnetic_tile: %d / %d / %d", c->n_train, c->n_test_good,
                 c->n_test_defect);
    TU_CHECK(c->n_empty_masks == 4);
    int k = 0;
    for (int i = 0; i < c->n_test; i++) {
        if (!c->test[i].empty_mask) continue;
        TU_CHECK(k < 4 && !strcmp(c->test[i].defect, "uneven") &&
                 sn_ends_with(c->test[i].path, empty_tiles[k]));
        k++;
    }
    dataset_free(&ds);

    int status = -1;
    char *out = run_cli(root, &status);
    TU_CHECK_MSG(out && status == 0, "snarm datasets %s failed", root);
    if (!out) return;
    printf("%s\n", out);
    TU_CHECK(strstr(out,
                    "magnetic_tile           762       190         392           4  "
                    "blowhole 115, break 85, crack 57, fray 32, uneven 103") != NULL);
    TU_CHECK(strstr(out, "4 defective images with an empty mask") != NULL);
    for (k = 0; k < 4; k++) {
        char want[256];
        snprintf(want, sizeof want, "/test/uneven/%s (mask ", empty_tiles[k]);
        TU_CHECK_MSG(strstr(out, want) != NULL, "%s not named", empty_tiles[k]);
    }
    sn_free(out);
}

int main(void)
{
    const char *bottle = tu_shared("datasets/mvtec_ad");
    char bottle_root[4200] = "";
    if (bottle) snprintf(bottle_root, sizeof bottle_root, "%s", bottle);
    const char *tiles = tu_shared("datasets/magnetic_tile");
    if (!bottle && !tiles)
        tu_skip("../shared/datasets (or $SNARM_SHARED/datasets) is absent: the real "
                "datasets are not part of a fresh clone");
    if (bottle)
        check_bottle(bottle_root);
    else
        printf("skipping mvtec_ad: absent\n");
    if (tiles)
        check_tiles(tiles);
    else
        printf("skipping magnetic_tile: absent\n");
    return tu_finish("test_dataset_shared");
}
