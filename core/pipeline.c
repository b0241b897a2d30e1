/*
 * pipeline.c - feature extraction (real and synthetic images) and the bank.
 *
 * Extraction runs the frozen backbone over batches of preprocessed images
 * and appends each image's fused features to a feature store. A store that
 * exists and matches the backbone, geometry and layer groups is reused.
 */
#include "pipeline.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "backbone.h"
#include "coreset.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/synth.h"
#include "h5util.h"
#include "log.h"
#include "rng.h"
#include "store.h"

struct pipeline {
    const struct sn_config *cfg;
    struct backbone *bb;
    char cache_dir[1024];
    char key[256]; /* sub-folder naming the backbone and geometry */
};

int pipeline_open(const struct sn_config *cfg, const char *cache_dir,
                  struct pipeline **out)
{
    struct pipeline *p = sn_calloc(1, sizeof *p);
    p->cfg = cfg;
    snprintf(p->cache_dir, sizeof p->cache_dir, "%s", cache_dir);
    *out = p;
    return SN_OK;
}

void pipeline_free(struct pipeline *p)
{
    if (!p) return;
    backbone_free(p->bb);
    sn_free(p);
}

const struct sn_config *pipeline_config(const struct pipeline *p)
{
    return p->cfg;
}

/* Open the backbone on first use and name the cache folder after it. */
static int open_backbone(struct pipeline *p)
{
    if (p->bb) return SN_OK;
    if (backbone_open(p->cfg, &p->bb)) return SN_EUSER;
    const struct sn_config *c = p->cfg;
    char hash[24];
    snprintf(hash, sizeof hash, "%.16s", backbone_weights_hash(p->bb));
    snprintf(p->key, sizeof p->key, "%s-%s-c%d-g%d-d%d", c->backbone.arch, hash,
             c->data.crop, c->features.grid, c->features.dim);
    return SN_OK;
}

int pipeline_backbone_label(struct pipeline *p, const char **label)
{
    if (open_backbone(p)) return SN_EUSER;
    *label = backbone_describe(p->bb);
    return SN_OK;
}

static void layer_groups(const struct sn_config *c, char *out, size_t cap)
{
    size_t used = 0;
    int per = c->backbone.layers.n / c->backbone.groups;
    out[0] = 0;
    for (int i = 0; i < c->backbone.layers.n && used + 8 < cap; i++) {
        const char *sep = i == 0 ? "" : (i % per == 0 ? "|" : ",");
        used += (size_t)snprintf(out + used, cap - used, "%s%d", sep,
                                 c->backbone.layers.v[i]);
    }
}

int pipeline_store_meta(struct pipeline *p, const char *dataset, const char *cls,
                        const char *split, struct store_meta *m)
{
    if (open_backbone(p)) return SN_EUSER;
    const struct sn_config *c = p->cfg;
    store_meta_init(m);
    snprintf(m->dataset, sizeof m->dataset, "%s", dataset);
    snprintf(m->class_name, sizeof m->class_name, "%s", cls);
    snprintf(m->split, sizeof m->split, "%s", split);
    snprintf(m->backbone, sizeof m->backbone, "%s", c->backbone.arch);
    snprintf(m->weights_hash, sizeof m->weights_hash, "%s", backbone_weights_hash(p->bb));
    m->input_size = c->data.crop;
    m->grid = c->features.grid;
    m->d = c->features.dim;
    layer_groups(c, m->layer_groups, sizeof m->layer_groups);
    return SN_OK;
}

static int store_file(struct pipeline *p, const char *dataset, const char *cls,
                      const char *split, char *path, size_t cap)
{
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/%s", p->cache_dir, p->key);
    return store_path(path, cap, dir, dataset, cls, split);
}

/* ------------------------------------------------------------------------- */
/* Batched extraction: a source fills preprocessed crops, the backbone turns
 * them into features, the writer appends them.                              */

struct source {
    int n;
    /* Fill hwc (crop x crop x 3 in [0,1]) for image i; name its path. */
    int (*load)(void *ctx, int i, float *hwc, const char **path, int *label);
    void *ctx;
};

static int extract_into(struct pipeline *p, const struct source *src,
                        struct store_writer *w, const char *what)
{
    const struct sn_config *c = p->cfg;
    int crop = c->data.crop, B = c->features.batch;
    long M = (long)c->features.grid * c->features.grid, d = c->features.dim;
    long px = (long)crop * crop;
    float mean[3], std[3];
    backbone_normalisation(p->bb, mean, std);

    float *hwc = sn_malloc(sizeof(float) * (size_t)(px * 3));
    float *chw = sn_malloc(sizeof(float) * (size_t)(px * 3 * B));
    float *feats = sn_malloc(sizeof(float) * (size_t)(M * d * B));
    const char **paths = sn_calloc((size_t)B, sizeof *paths);
    int *labels = sn_calloc((size_t)B, sizeof *labels);
    struct log_progress prog;
    log_progress_begin(&prog, what, "images", src->n);
    int rc = SN_OK;

    for (int first = 0; first < src->n && rc == SN_OK; first += B) {
        /* Preprocess one batch of crops into normalised CHW tensors. */
        int nb = SN_MIN(B, src->n - first);
        for (int j = 0; j < nb && rc == SN_OK; j++) {
            rc = src->load(src->ctx, first + j, hwc, &paths[j], &labels[j]);
            if (rc == SN_OK) image_normalise_chw(hwc, crop, crop, mean, std, chw + j * px * 3);
        }
        if (rc != SN_OK) break;

        /* Fused features of the batch, appended in order. */
        rc = backbone_extract(p->bb, chw, nb, feats);
        for (int j = 0; j < nb && rc == SN_OK; j++)
            rc = store_writer_put(w, feats + j * M * d, paths[j], labels[j]);
        log_progress_step(&prog, nb);
    }
    if (rc == SN_OK) log_progress_end(&prog);
    sn_free(hwc);
    sn_free(chw);
    sn_free(feats);
    sn_free(paths);
    sn_free(labels);
    return rc;
}

/* Open a writer for path, run the source through it, and finish or abort. */
static int extract_store(struct pipeline *p, const struct store_meta *m,
                         const char *path, const struct source *src, const char *what)
{
    char *yaml = config_to_string(p->cfg);
    struct store_meta mm = *m;
    mm.config_yaml = yaml;
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    struct store_writer *w = NULL;
    int rc = sn_mkdirs(dir);
    if (rc == SN_OK) rc = store_writer_open(&w, path, &mm, p->cfg->features.grid *
                                                               p->cfg->features.grid);
    if (rc == SN_OK) rc = extract_into(p, src, w, what);
    if (w && rc == SN_OK) rc = store_writer_finish(w);
    else if (w) store_writer_abort(w);
    sn_free(yaml);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Real images of one split.                                                  */

struct split_ctx {
    const struct ds_sample *samples;
    const struct sn_config *cfg;
};

static int load_crop(const struct sn_config *c, const char *path, float *hwc)
{
    struct sn_image img;
    if (image_load(path, &img)) return SN_EUSER;
    image_preprocess_rgb(&img, c->data.resize, c->data.crop, hwc);
    image_free(&img);
    return SN_OK;
}

static int split_load(void *ctx, int i, float *hwc, const char **path, int *label)
{
    struct split_ctx *s = ctx;
    *path = s->samples[i].path;
    *label = s->samples[i].label;
    return load_crop(s->cfg, s->samples[i].path, hwc);
}

int pipeline_extract(struct pipeline *p, const struct ds_dataset *ds,
                     const struct ds_class *c, int split, char *path, size_t cap)
{
    const char *sname = split == PIPE_TRAIN ? "train" : "test";
    struct store_meta m;
    if (pipeline_store_meta(p, ds->name, c->name, sname, &m)) return SN_EUSER;
    if (store_file(p, ds->name, c->name, sname, path, cap)) return SN_EUSER;
    if (store_matches(path, &m)) return SN_OK;

    struct split_ctx ctx = {split == PIPE_TRAIN ? c->train : c->test, p->cfg};
    struct source src = {split == PIPE_TRAIN ? c->n_train : c->n_test, split_load, &ctx};
    char what[512];
    snprintf(what, sizeof what, "features %s/%s %s", ds->name, c->name, sname);
    return extract_store(p, &m, path, &src, what);
}

/* ------------------------------------------------------------------------- */
/* Synthetic training samples: synth_per_image defects per chosen image.     */

struct synth_ctx {
    const struct sn_config *cfg;
    const struct ds_class *cls;
    const int *idx;
    int per_image;
    uint64_t seed;
    int object;
    uint8_t *masks; /* n x crop x crop, filled as samples are drawn */
    float *clean;
};

static int synth_load(void *ctx, int i, float *hwc, const char **path, int *label)
{
    struct synth_ctx *s = ctx;
    const struct sn_config *c = s->cfg;
    const struct ds_sample *smp = &s->cls->train[s->idx[i / s->per_image]];
    long px = (long)c->data.crop * c->data.crop;
    if (load_crop(c, smp->path, s->clean)) return SN_EUSER;

    /* Each sample has its own stream, named by class and file name rather
     * than by the full path: the same seed gives the same defects whatever
     * the batch size, the order of extraction or where the data lives. */
    char name[600];
    const char *base = strrchr(smp->path, '/');
    snprintf(name, sizeof name, "%s/%s", s->cls->name, base ? base + 1 : smp->path);
    struct rng_state r;
    rng_seed(&r, s->seed, rng_hash_str(name) + (uint64_t)(i % s->per_image));
    struct synth_opts o = {c->train.clean_fraction, c->train.opacity_min,
                           c->train.opacity_max, s->object};
    *label = synth_defect(s->clean, c->data.crop, c->data.crop, &o, &r, hwc,
                          s->masks + (long)i * px);
    *path = smp->path;
    return SN_OK;
}

static int is_object_class(const struct sn_config *c, const char *name)
{
    for (int i = 0; i < c->train.object_classes.n; i++)
        if (!strcmp(c->train.object_classes.v[i], name)) return 1;
    return 0;
}

/* A short stable tag for the synthesis settings and the chosen images. */
static uint64_t synth_tag(const struct sn_config *c, const struct ds_class *cls,
                          const int *idx, int n, uint64_t seed)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%llu|%d|%.17g|%.17g|%.17g|%d|%d|%s",
             (unsigned long long)seed, c->train.synth_per_image, c->train.clean_fraction,
             c->train.opacity_min, c->train.opacity_max, is_object_class(c, cls->name),
             c->data.resize, c->data.mask_rule);
    uint64_t h = rng_hash_str(buf);
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)idx[i]) * 1099511628211ULL;
    return h;
}

static int masks_save(const char *path, const uint8_t *masks, int n, int side)
{
    char tmp[1200];
    sn_tmp_name(tmp, sizeof tmp, path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return sn_error("cannot create %s", tmp);
    hsize_t dims[3] = {(hsize_t)n, (hsize_t)side, (hsize_t)side};
    hid_t sp = H5Screate_simple(3, dims, NULL);
    hid_t dcpl = h5_dcpl_untimed();
    hid_t ds = H5Dcreate2(f, "masks", H5T_NATIVE_UINT8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    herr_t st = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL,
                                       H5P_DEFAULT, masks);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    if (H5Fclose(f) < 0 || st < 0) {
        remove(tmp);
        return sn_error("cannot write %s", tmp);
    }
    return sn_rename_into_place(tmp, path);
}

int pipeline_load_masks(const char *path, int n, int side, uint8_t *out)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return sn_error("cannot open mask file %s", path);
    hid_t ds = H5Dopen2(f, "masks", H5P_DEFAULT);
    int rc = SN_OK;
    if (ds < 0) {
        rc = sn_error("%s has no dataset 'masks'", path);
    } else {
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[3] = {0, 0, 0};
        if (H5Sget_simple_extent_ndims(sp) != 3) dims[0] = 0;
        else H5Sget_simple_extent_dims(sp, dims, NULL);
        if (dims[0] != (hsize_t)n || dims[1] != (hsize_t)side || dims[2] != (hsize_t)side)
            rc = sn_error("%s: masks are not %d x %d x %d", path, n, side, side);
        else if (H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            rc = sn_error("cannot read masks from %s", path);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return rc;
}

int pipeline_extract_synth(struct pipeline *p, const struct ds_dataset *ds,
                           const struct ds_class *c, const int *train_idx, int n,
                           uint64_t seed, char *feat_path, char *mask_path, size_t cap)
{
    const struct sn_config *cfg = p->cfg;
    char split[32];
    snprintf(split, sizeof split, "synth%016llx",
             (unsigned long long)synth_tag(cfg, c, train_idx, n, seed));
    struct store_meta m;
    if (pipeline_store_meta(p, ds->name, c->name, split, &m)) return SN_EUSER;
    if (store_file(p, ds->name, c->name, split, feat_path, cap)) return SN_EUSER;
    snprintf(mask_path, cap, "%.*s_masks.h5", (int)strlen(feat_path) - 3, feat_path);
    if (store_matches(feat_path, &m) && sn_file_exists(mask_path)) return SN_OK;

    /* Draw the defects while extracting; the masks are saved only once the
     * features are complete, and the store is checked for both. */
    long px = (long)cfg->data.crop * cfg->data.crop;
    int per = cfg->train.synth_per_image, total = n * per;
    struct synth_ctx ctx = {cfg, c, train_idx, per, seed, is_object_class(cfg, c->name),
                            sn_malloc((size_t)(total * px)),
                            sn_malloc(sizeof(float) * (size_t)(px * 3))};
    struct source src = {total, synth_load, &ctx};
    char what[512];
    snprintf(what, sizeof what, "synthetic samples %s/%s", ds->name, c->name);
    remove(mask_path);
    int rc = extract_store(p, &m, feat_path, &src, what);
    if (rc == SN_OK) rc = masks_save(mask_path, ctx.masks, total, cfg->data.crop);
    sn_free(ctx.masks);
    sn_free(ctx.clean);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Loading stored features and building banks.                                */

int pipeline_load_features(struct pipeline *p, const struct ds_dataset *ds,
                           const struct pipe_item *items, int n, float **feats)
{
    const struct sn_config *c = p->cfg;
    long M = (long)c->features.grid * c->features.grid, d = c->features.dim;
    float *out = sn_malloc(sizeof(float) * (size_t)(n * M * d));
    struct store_reader *r = NULL;
    const struct ds_class *open_cls = NULL;
    int open_split = -1, rc = SN_OK;

    for (int i = 0; i < n && rc == SN_OK; i++) {
        /* Items come grouped by class and split: reopen only on a change. */
        if (items[i].cls != open_cls || items[i].split != open_split) {
            char path[1400];
            store_reader_close(r);
            r = NULL;
            rc = pipeline_extract(p, ds, items[i].cls, items[i].split, path, sizeof path);
            struct store_meta m;
            if (rc == SN_OK)
                rc = pipeline_store_meta(p, ds->name, items[i].cls->name,
                                         items[i].split == PIPE_TRAIN ? "train" : "test",
                                         &m);
            if (rc == SN_OK) rc = store_reader_open(&r, path, &m);
            open_cls = items[i].cls;
            open_split = items[i].split;
        }
        if (rc == SN_OK) rc = store_reader_get(r, items[i].index, out + i * M * d);
    }
    store_reader_close(r);
    if (rc != SN_OK) {
        sn_free(out);
        return rc;
    }
    *feats = out;
    return SN_OK;
}

int pipeline_bank(struct pipeline *p, const struct ds_dataset *ds,
                  const struct pipe_item *items, int n, uint64_t seed, const char *path,
                  struct bank *out)
{
    const struct sn_config *c = p->cfg;
    if (path && sn_file_exists(path) && bank_load(path, out) == SN_OK) return SN_OK;

    float *feats;
    if (pipeline_load_features(p, ds, items, n, &feats)) return SN_EUSER;
    long rows = (long)n * c->features.grid * c->features.grid;
    double t0 = sn_now();
    int rc = bank_build(feats, rows, c->features.dim, c->bank.coreset, c->bank.proj_dim,
                        seed, out);
    sn_free(feats);
    if (rc) return rc;
    log_info("bank: %ld of %ld features kept (%.1f s)", out->n, rows, sn_now() - t0);
    if (!path) return SN_OK;
    char *yaml = config_to_string(c);
    rc = bank_save(path, out, yaml);
    sn_free(yaml);
    return rc;
}
