/*
 * unit.c - bank, training, prediction and metrics of one work unit.
 */
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coreset.h"
#include "data/dataset.h"
#include "data/image.h"
#include "dist/sweep.h"
#include "log.h"
#include "maps.h"
#include "metrics.h"
#include "pipeline.h"
#include "postproc.h"
#include "residual.h"
#include "unit_train.h"

/* Seconds spent per stage, written to timing.tsv. */
struct unit_timing {
    double extract, bank, train, predict, metrics;
    long n_train_samples, n_test;
    long resumed_step; /* training resumed from a checkpoint at this step */
};

static void items_from(const struct unit_image *im, int n, const struct ds_dataset *ds,
                       int split, struct pipe_item *out)
{
    for (int i = 0; i < n; i++) {
        out[i].cls = &ds->classes[im[i].cls];
        out[i].index = im[i].sample;
        out[i].split = split;
    }
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return sn_write_file_atomic(path, text, strlen(text));
}

/* ------------------------------------------------------------------------- */
/* Prediction: per test image, the inter residual against the unit's bank,
 * then either the decoder's 16 maps (SNARM) or the kNN distance (PatchCore). */

struct predict_state {
    const struct sn_config *cfg;
    const struct bank *bank;
    struct unit_model *model; /* NULL for PatchCore */
    int M, d, crop;
    float *R, *g, *nn, *heads, *map, *grid_up;
};

/* PatchCore: the distance to the nearest bank vector, up-sampled bilinearly
 * to the input size; the image score is the largest cell distance. */
static float predict_patchcore(struct predict_state *s)
{
    int grid = s->cfg->features.grid;
    float score = 0;
    for (int i = 0; i < s->M; i++) score = s->nn[i] > score ? s->nn[i] : score;
    image_resize_bilinear(s->nn, grid, grid, 1, s->grid_up, s->crop, s->crop);
    const float *maps[1] = {s->grid_up};
    postproc_predict(maps, 1, s->crop, s->crop, s->cfg->predict.smooth_sigma,
                     s->cfg->predict.score_pool, s->cfg->predict.score_stride, s->map);
    return score;
}

static int predict_one(struct predict_state *s, const float *f, float *score)
{
    const struct sn_config *c = s->cfg;
    if (residual_inter_ex(s->bank, f, s->M, s->d, c->bank.knn_k, c->matching.residual_pow2,
                          s->R, s->g, s->nn))
        return SN_EUSER;
    if (!s->model) {
        *score = predict_patchcore(s);
        return SN_OK;
    }
    int n_maps = 0;
    if (unit_model_predict(s->model, f, s->R, s->heads, &n_maps)) return SN_EUSER;
    long px = (long)s->crop * s->crop;
    const float *maps[64];
    for (int k = 0; k < n_maps; k++) maps[k] = s->heads + k * px;
    *score = postproc_predict(maps, n_maps, s->crop, s->crop, c->predict.smooth_sigma,
                              c->predict.score_pool, c->predict.score_stride, s->map);
    return SN_OK;
}

/* The preprocessed mask and RGB crop of a test sample, for the maps file. */
static int test_truth(const struct sn_config *c, const struct ds_sample *smp,
                      uint8_t *mask, uint8_t *rgb, float *hwc)
{
    long px = (long)c->data.crop * c->data.crop;
    struct sn_image img;
    if (image_load(smp->path, &img)) return SN_EUSER;
    image_preprocess_rgb(&img, c->data.resize, c->data.crop, hwc);
    image_free(&img);
    image_to_u8(hwc, px * 3, rgb);
    if (!smp->mask_path) {
        memset(mask, 0, (size_t)px);
        return SN_OK;
    }
    int w, h;
    uint8_t *raw;
    if (mask_load(smp->mask_path, &w, &h, &raw)) return SN_EUSER;
    int rc = mask_preprocess(raw, w, h, c->data.resize, c->data.crop, c->data.mask_rule,
                             mask);
    sn_free(raw);
    return rc;
}

static void predict_state_init(struct predict_state *s, const struct sn_config *c,
                               const struct bank *b, struct unit_model *model)
{
    memset(s, 0, sizeof *s);
    s->cfg = c;
    s->bank = b;
    s->model = model;
    s->M = c->features.grid * c->features.grid;
    s->d = c->features.dim;
    s->crop = c->data.crop;
    long px = (long)s->crop * s->crop, md = (long)s->M * s->d;
    s->R = sn_malloc(sizeof(float) * (size_t)md);
    s->g = sn_malloc(sizeof(float) * (size_t)md);
    s->nn = sn_malloc(sizeof(float) * (size_t)s->M);
    s->heads = model ? sn_malloc(sizeof(float) * (size_t)(px * unit_model_n_maps(model)))
                     : NULL;
    s->map = sn_malloc(sizeof(float) * (size_t)px);
    s->grid_up = sn_malloc(sizeof(float) * (size_t)px);
}

static void predict_state_free(struct predict_state *s)
{
    sn_free(s->R);
    sn_free(s->g);
    sn_free(s->nn);
    sn_free(s->heads);
    sn_free(s->map);
    sn_free(s->grid_up);
}

static int predict_all(struct pipeline *p, const struct sweep_unit *u,
                       const struct unit_images *im, struct predict_state *s,
                       const char *path, const char *backbone)
{
    const struct sn_config *c = s->cfg;
    const struct ds_dataset *ds = u->ds;
    long px = (long)s->crop * s->crop;
    struct maps_writer *w;
    char *yaml = config_to_string(c);
    int rc = maps_writer_open(path, im->n_test, s->crop, s->crop, c->predict.maps_dtype, 1,
                              yaml, &w);
    sn_free(yaml);
    if (rc) return rc;
    maps_writer_set_attr(w, "method", u->method);
    maps_writer_set_attr(w, "setting", sweep_setting_name(u->setting));
    maps_writer_set_attr(w, "dataset", ds->name);
    maps_writer_set_attr(w, "backbone", backbone);
    maps_writer_set_attr(w, "unit", u->id);

    uint8_t *mask = sn_malloc((size_t)px), *rgb = sn_malloc((size_t)px * 3);
    float *hwc = sn_malloc(sizeof(float) * (size_t)px * 3);
    struct log_progress prog;
    log_progress_begin(&prog, "prediction", "images", im->n_test);
    for (int i = 0; i < im->n_test && rc == SN_OK; i++) {
        /* Features come from the store, truth from the dataset. */
        struct pipe_item item;
        items_from(&im->test[i], 1, ds, PIPE_TEST, &item);
        const struct ds_sample *smp = &item.cls->test[item.index];
        float *f = NULL, score = 0;
        rc = pipeline_load_features(p, ds, &item, 1, &f);
        if (rc == SN_OK) rc = predict_one(s, f, &score);
        if (rc == SN_OK) rc = test_truth(c, smp, mask, rgb, hwc);
        if (rc == SN_OK)
            rc = maps_writer_put(w, i, s->map, mask, score, smp->label, item.cls->name,
                                 smp->path, rgb);
        sn_free(f);
        log_progress_step(&prog, 1);
    }
    sn_free(mask);
    sn_free(rgb);
    sn_free(hwc);
    if (rc) {
        maps_writer_abort(w);
        return rc;
    }
    log_progress_end(&prog);
    return maps_writer_finish(w);
}

/* ------------------------------------------------------------------------- */
/* Stages of one unit.                                                        */

static int extract_all(struct pipeline *p, const struct sweep_unit *u,
                       const struct unit_images *im)
{
    /* Every class touched by the unit, both splits: one store each. */
    char path[1400];
    for (int k = 0; k < im->n_bank + im->n_train + im->n_test; k++) {
        const struct unit_image *x = k < im->n_bank ? &im->bank[k]
                                     : k < im->n_bank + im->n_train
                                         ? &im->train[k - im->n_bank]
                                         : &im->test[k - im->n_bank - im->n_train];
        int split = k < im->n_bank + im->n_train ? PIPE_TRAIN : PIPE_TEST;
        if (pipeline_extract(p, u->ds, &u->ds->classes[x->cls], split, path, sizeof path))
            return SN_EUSER;
    }
    return SN_OK;
}

static int unit_metrics(const char *unit_dir, const char *maps_path)
{
    struct maps_file m;
    struct metric_table t;
    char path[1400];
    if (maps_read(maps_path, &m)) return SN_EUSER;
    int rc = metrics_compute(&m, METRICS_FPR_LIMIT, &t);
    maps_file_free(&m);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/metrics.csv", unit_dir);
    rc = metrics_write_csv(&t, path);
    snprintf(path, sizeof path, "%s/metrics.md", unit_dir);
    if (rc == SN_OK) rc = metrics_write_markdown(&t, 1, path);
    const struct metric_row *mean = &t.rows[t.n_rows - 1];
    log_info("unit mean: P-AP %.1f PRO %.1f P-AUROC %.1f I-AUROC %.1f", 100 * mean->p_ap,
             100 * mean->pro, 100 * mean->p_auroc, 100 * mean->i_auroc);
    metric_table_free(&t);
    return rc;
}

static int write_timing(const char *unit_dir, const struct unit_timing *t)
{
    char text[1024];
    double ips = t->predict > 0 ? (double)t->n_test / t->predict : 0;
    snprintf(text, sizeof text,
             "stage\tseconds\n"
             "extract\t%.3f\nbank\t%.3f\ntrain\t%.3f\npredict\t%.3f\nmetrics\t%.3f\n"
             "# train_samples\t%ld\n# test_images\t%ld\n# predict_images_per_second\t%.3f\n",
             t->extract, t->bank, t->train, t->predict, t->metrics, t->n_train_samples,
             t->n_test, ips);
    if (t->resumed_step > 0) /* train then counts the steps before the resume too */
        snprintf(text + strlen(text), sizeof text - strlen(text),
                 "# train_resumed_at_step\t%ld\n", t->resumed_step);
    return write_text(unit_dir, "timing.tsv", text);
}

static int run_stages(struct pipeline *p, const struct sweep_unit *u,
                      const struct unit_images *im, const char *dir, MPI_Comm group)
{
    const struct sn_config *c = pipeline_config(p);
    struct unit_timing tm = {0};
    char bank_path[1400], maps_path[1400];
    int grank = 0;
    MPI_Comm_rank(group, &grank);
    snprintf(bank_path, sizeof bank_path, "%s/bank.h5", dir);
    snprintf(maps_path, sizeof maps_path, "%s/maps.h5", dir);

    /* Features of every image the unit touches (cached across units). */
    double t0 = sn_now();
    const char *bb_label;
    int rc = pipeline_backbone_label(p, &bb_label);
    if (rc == SN_OK) rc = extract_all(p, u, im);
    tm.extract = sn_now() - t0;

    /* The unit's memory bank. */
    struct bank bank = {0};
    struct pipe_item *items = sn_malloc(sizeof *items * (size_t)(im->n_bank + 1));
    items_from(im->bank, im->n_bank, u->ds, PIPE_TRAIN, items);
    t0 = sn_now();
    if (rc == SN_OK)
        rc = pipeline_bank(p, u->ds, items, im->n_bank, (uint64_t)c->run.seed,
                           grank == 0 ? bank_path : NULL, &bank);
    tm.bank = sn_now() - t0;
    sn_free(items);

    /* The decoder, trained on synthetic defects (SNARM only). */
    struct unit_model *model = NULL;
    t0 = sn_now();
    if (rc == SN_OK && sweep_method_trains(u->method))
        rc = unit_train(p, u, im, &bank, dir, group, &model, &tm.n_train_samples);
    tm.train = sn_now() - t0;
    if (model) {
        double before = 0;
        unit_model_resumed(model, &tm.resumed_step, &before);
        tm.train += before;
    }

    /* Maps, scores and metrics, written by the group's first rank. */
    if (rc == SN_OK && grank == 0) {
        struct predict_state s;
        predict_state_init(&s, c, &bank, model);
        t0 = sn_now();
        rc = predict_all(p, u, im, &s, maps_path, bb_label);
        tm.predict = sn_now() - t0;
        tm.n_test = im->n_test;
        predict_state_free(&s);
        t0 = sn_now();
        if (rc == SN_OK) rc = unit_metrics(dir, maps_path);
        tm.metrics = sn_now() - t0;
        if (rc == SN_OK) rc = write_timing(dir, &tm);
        /* The checkpoint's clock time now lives in timing.tsv; a finished
         * unit holds no other file that differs from run to run. */
        char spath[1500];
        snprintf(spath, sizeof spath, "%s/checkpoint.h5.seconds", dir);
        if (rc == SN_OK) unlink(spath);
    }
    unit_model_free(model);
    bank_free(&bank);
    return rc;
}

int unit_run(const struct sweep_unit *u, const char *unit_dir, MPI_Comm group, void *ctx)
{
    const struct unit_ctx *uc = ctx;
    struct sn_config *cfg = sn_malloc(sizeof *cfg);
    sweep_unit_config(uc->sweep, u, cfg);
    struct unit_images im;
    struct pipeline *p = NULL;
    int rc = sweep_unit_images(u, u->ds, &im);
    if (rc) {
        sn_free(cfg);
        return rc;
    }
    int grank = 0;
    MPI_Comm_rank(group, &grank);
    rc = sn_mkdirs(unit_dir);
    if (rc == SN_OK && grank == 0) {
        /* Record the unit's configuration and image selection first. */
        char *yaml = config_to_string(cfg), *tsv = unit_images_to_tsv(&im, u->ds);
        rc = write_text(unit_dir, "config.yaml", yaml);
        if (rc == SN_OK) rc = write_text(unit_dir, "images.tsv", tsv);
        sn_free(yaml);
        sn_free(tsv);
    }
    if (rc == SN_OK) rc = pipeline_open(cfg, uc->cache_dir, &p);
    if (rc == SN_OK) rc = run_stages(p, u, &im, unit_dir, group);
    if (rc) sn_error_prefix("unit %s", u->id);
    pipeline_free(p);
    unit_images_free(&im);
    sn_free(cfg);
    return rc;
}

int unit_outputs_valid(const struct sweep_unit *u, const char *unit_dir, void *ctx)
{
    static const char *files[] = {"config.yaml", "images.tsv", "bank.h5", "maps.h5",
                                  "metrics.csv", "timing.tsv"};
    char path[1400];
    for (size_t i = 0; i < SN_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof path, "%s/%s", unit_dir, files[i]);
        if (!sn_file_exists(path)) return 0;
    }
    if (sweep_method_trains(u->method)) {
        snprintf(path, sizeof path, "%s/checkpoint.h5", unit_dir);
        if (!sn_file_exists(path)) return 0;
    }
    /* The maps file must open and hold every test image's entry. */
    struct maps_file m;
    snprintf(path, sizeof path, "%s/maps.h5", unit_dir);
    if (maps_open(path, &m)) return 0;
    int ok = m.N > 0;
    maps_file_free(&m);
    return ok;
}
