/* The experiment files under experiments/ load and expand to the intended
 * units: the demo sweep (every setting, both methods) and the ablation grid
 * of the paper's Table 5 (one grid point per row, cumulative switches). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "dist/sweep.h"
#include "test_dist_fake.h"
#include "testutil.h"

static struct sn_config cfg, ucfg;

static int load(const char *name)
{
    char path[4096];
    const char *src = getenv("SNARM_SOURCE");
    snprintf(path, sizeof path, "%s/experiments/%s", src ? src : SNARM_SOURCE_DIR, name);
    config_defaults(&cfg);
    int st = config_load(&cfg, path);
    TU_CHECK_MSG(st == SN_OK, "%s: %s", name, sn_last_error());
    return st;
}

/* A dataset with the given class names (the files are never opened). */
static void named_dataset(struct ds_dataset *ds, const char *name, int n,
                          const char *const *classes)
{
    fake_dataset(ds, name, n, 20, 6);
    for (int c = 0; c < n; c++) {
        sn_free(ds->classes[c].name);
        ds->classes[c].name = sn_strdup(classes[c]);
    }
}

static void test_sweep_demo(void)
{
    static const char *const demo[] = {"disc", "weave"};
    if (load("sweep_demo.yaml") != SN_OK) return;
    struct ds_dataset ds;
    named_dataset(&ds, "data", 2, demo);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, &ds, 1) == SN_OK);
    TU_CHECK_MSG(s.n_units == 12, "sweep_demo: %d units", s.n_units);
    TU_CHECK(sweep_find(&s, "data/cross/weave/patchcore/seed0/g0") >= 0);
    TU_CHECK(sweep_find(&s, "data/fewshot/all/snarm/seed0/g0") >= 0);
    sweep_free(&s);
    dataset_free(&ds);
}

/* Row r of Table 5 switches on the first r components (row 0: none). */
static void check_row(const struct sn_config *c, int r)
{
    TU_CHECK_MSG(c->matching.hybrid == (r >= 1), "row %d: Hybrid-M", r);
    TU_CHECK_MSG(c->matching.navigate == (r >= 2), "row %d: SMB", r);
    TU_CHECK_MSG(c->bank.knn_k == (r >= 4 ? 3 : 1), "row %d: TopK", r);
    TU_CHECK_MSG(c->decoder.multiview == (r >= 3), "row %d: MVD", r);
    TU_CHECK_MSG(c->train.jitter == (r >= 5 ? 30 : 0), "row %d: Jitter", r);
    TU_CHECK_MSG(c->train.cyclic == (r >= 6), "row %d: CT", r);
}

static void test_ablation(void)
{
    static const char *const mvtec[] = {"bottle",     "cable",    "capsule", "carpet",
                                        "grid",       "hazelnut", "leather", "metal_nut",
                                        "pill",       "screw",    "tile",    "toothbrush",
                                        "transistor", "wood",     "zipper"};
    if (load("ablation_table5.yaml") != SN_OK) return;
    struct ds_dataset ds;
    named_dataset(&ds, "mvtec_ad", 15, mvtec);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, &ds, 1) == SN_OK);
    TU_CHECK_MSG(s.n_grid == 7 && s.n_units == 14, "ablation: %d rows, %d units",
                 s.n_grid, s.n_units);

    /* the full model is the last row: every key at its default */
    struct sn_config def;
    config_defaults(&def);
    for (int g = 0; g < s.n_grid; g++) {
        sweep_grid_config(&s, g, &ucfg);
        check_row(&ucfg, g);
    }
    TU_CHECK(ucfg.matching.hybrid == def.matching.hybrid &&
             ucfg.bank.knn_k == def.bank.knn_k && ucfg.train.jitter == def.train.jitter);
    TU_CHECK(ucfg.decoder.multiview == def.decoder.multiview &&
             ucfg.train.cyclic == def.train.cyclic);
    TU_CHECK(sweep_find(&s, "mvtec_ad/fewshot/all/snarm/seed0/g6") >= 0);
    sweep_free(&s);
    dataset_free(&ds);
}

int main(void)
{
    test_sweep_demo();
    test_ablation();
    return tu_finish("test_dist_experiments");
}
