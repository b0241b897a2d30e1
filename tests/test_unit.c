/*
 * End to end through one work unit on the generated demo data, at toy sizes
 * (a random ViT-Ti at 112 x 112, a 14 x 14 grid, d = 64): features are
 * extracted and cached, the bank is built, the decoder trains on synthetic
 * defects, prediction writes a maps file and the unit's metrics are written.
 * Checks the files, their contents, the feature cache being reused, and that
 * the PatchCore baseline and SNARM both give valid metrics.
 *
 * With "learn" as argument it instead trains longer and requires the
 * decoder to localise held-out synthetic defects well above chance.
 */
#define _GNU_SOURCE
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/common.h"
#include "core/config.h"
#include "core/log.h"
#include "core/maps.h"
#include "core/metrics.h"
#include "core/unit.h"
#include "data/dataset.h"
#include "data/demo.h"
#include "dist/sweep.h"
#include "testutil.h"

static const char *toy_yaml =
    "run: {seed: 3}\n"
    "data: {resize: 128, crop: 112}\n"
    "backbone: {arch: vit_tiny_patch16, weights_missing: random, layers: [1, 2, 3, 4],"
    " groups: 2}\n"
    "features: {grid: 14, pool_dim: 128, dim: 64, batch: 4}\n"
    "bank: {coreset: 2000, proj_dim: 32}\n"
    "decoder: {embed: 16, dilations: [1, 2]}\n"
    "train: {steps: 12, batch: 4, cycle: 3, checkpoint_every: 5, log_every: 4,"
    " synth_per_image: 1, object_classes: [disc]}\n"
    "predict: {smooth_sigma: 2, score_pool: 8, score_stride: 2}\n"
    "sweep: {settings: [single], methods: [snarm, patchcore]}\n";

static long file_size(const char *dir, const char *name)
{
    char path[2048];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static double mtime_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_mtim.tv_sec + 1e-9 * st.st_mtim.tv_nsec
                                : -1;
}

static int run_unit_by_id(struct sweep *s, const char *id, const char *dir,
                          struct unit_ctx *ctx)
{
    int k = sweep_find(s, id);
    TU_CHECK_MSG(k >= 0, "unit %s not in the sweep", id);
    if (k < 0) return SN_EUSER;
    int rc = unit_run(&s->units[k], dir, MPI_COMM_SELF, ctx);
    if (rc) fprintf(stderr, "unit %s: %s\n", id, sn_last_error());
    return rc;
}

static void check_maps(const char *dir, int want_n, double *p_auroc)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/maps.h5", dir);
    struct maps_file m;
    struct metric_table t;
    TU_CHECK(maps_read(path, &m) == SN_OK);
    TU_CHECK_MSG(m.N == want_n, "maps N %d want %d", m.N, want_n);
    TU_CHECK(m.H == 112 && m.W == 112 && m.has_images);
    TU_CHECK(metrics_compute(&m, 0.3, &t) == SN_OK);
    const struct metric_row *mean = &t.rows[t.n_rows - 1];
    TU_CHECK_MSG(mean->p_auroc > 0 && mean->p_auroc <= 1, "P-AUROC %g", mean->p_auroc);
    TU_CHECK(!isnan(mean->i_auroc) && !isnan(mean->pro) && !isnan(mean->p_ap));
    *p_auroc = mean->p_auroc;
    metric_table_free(&t);
    maps_file_free(&m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *tmp = tu_tmpdir("unit");
    char data[1024], cache[1024], dir_s[1024], dir_p[1024];
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(dir_s, sizeof dir_s, "%s/units/snarm", tmp);
    snprintf(dir_p, sizeof dir_p, "%s/units/patchcore", tmp);
    TU_CHECK(demo_write(data, 1) == SN_OK);

    static struct sn_config cfg;
    config_defaults(&cfg);
    TU_CHECK(config_load_string(&cfg, toy_yaml, "toy.yaml") == SN_OK);
    snprintf(cfg.data.roots.v[0], CFG_ITEM, "%.200s", data);
    cfg.data.roots.n = 1;

    struct ds_dataset ds;
    TU_CHECK(dataset_open(data, "auto", &ds) == SN_OK);
    struct sweep s = {0};
    TU_CHECK(sweep_expand(&s, &cfg, &ds, 1) == SN_OK);
    struct unit_ctx ctx = {&s, ""};
    snprintf(ctx.cache_dir, sizeof ctx.cache_dir, "%s", cache);

    /* SNARM on one class: every output of the unit folder. */
    double pa_snarm = 0, pa_core = 0;
    TU_CHECK(run_unit_by_id(&s, "data/single/weave/snarm/seed0/g0", dir_s, &ctx) == SN_OK);
    const char *files[] = {"config.yaml", "images.tsv", "bank.h5", "checkpoint.h5",
                           "maps.h5", "metrics.csv", "metrics.md", "timing.tsv"};
    for (size_t i = 0; i < SN_ARRAY_LEN(files); i++)
        TU_CHECK_MSG(file_size(dir_s, files[i]) > 0, "missing %s", files[i]);
    check_maps(dir_s, 18, &pa_snarm);
    int k = sweep_find(&s, "data/single/weave/snarm/seed0/g0");
    TU_CHECK(unit_outputs_valid(&s.units[k], dir_s, &ctx));

    /* PatchCore on the same class reuses the cached features. */
    char store[2048];
    snprintf(store, sizeof store, "%s", cache);
    double before = mtime_of(dir_s);
    TU_CHECK(run_unit_by_id(&s, "data/single/weave/patchcore/seed0/g0", dir_p, &ctx) ==
             SN_OK);
    TU_CHECK(file_size(dir_p, "checkpoint.h5") < 0);
    check_maps(dir_p, 18, &pa_core);
    TU_CHECK(mtime_of(dir_s) == before);
    printf("toy P-AUROC: snarm %.3f patchcore %.3f\n", pa_snarm, pa_core);

    /* A unit folder with a missing output is not taken as done. */
    char path[2048];
    snprintf(path, sizeof path, "%s/metrics.csv", dir_p);
    remove(path);
    k = sweep_find(&s, "data/single/weave/patchcore/seed0/g0");
    TU_CHECK(!unit_outputs_valid(&s.units[k], dir_p, &ctx));

    sweep_free(&s);
    dataset_free(&ds);
    MPI_Finalize();
    return tu_finish("test_unit");
}
