/*
 * unit_train.c - the decoder of one unit: synthetic samples, their inter
 * residuals, training over the unit's rank group, and prediction.
 */
#include "unit_train.h"

#include <stdio.h>
#include <string.h>

#include "coreset.h"
#include "data/dataset.h"
#include "dist/comm.h"
#include "dist/sweep.h"
#include "log.h"
#include "pipeline.h"
#include "residual.h"
#include "store.h"
#include "train.h"

struct unit_model {
    struct trainer trainer;
    int n_maps;
};

/* The synthetic samples of one training class: features, residuals, masks. */
struct class_samples {
    const struct ds_class *cls;
    long first, n; /* global sample range */
    struct store_reader *feat, *resid;
    uint8_t *masks; /* n x crop x crop */
};

struct sample_set {
    int n_classes;
    struct class_samples *c;
    long n;
    long px; /* crop * crop */
};

/* train_source.get: sample i's features, inter residual and mask. */
static int samples_get(void *ctx, long i, float *f, float *R, uint8_t *mask)
{
    struct sample_set *s = ctx;
    for (int k = 0; k < s->n_classes; k++) {
        struct class_samples *c = &s->c[k];
        if (i < c->first || i >= c->first + c->n) continue;
        long j = i - c->first;
        if (store_reader_get(c->feat, j, f) || store_reader_get(c->resid, j, R))
            return SN_EUSER;
        memcpy(mask, c->masks + j * s->px, (size_t)s->px);
        return SN_OK;
    }
    return sn_error("training sample %ld out of range", i);
}

static void sample_set_free(struct sample_set *s)
{
    for (int k = 0; k < s->n_classes; k++) {
        store_reader_close(s->c[k].feat);
        store_reader_close(s->c[k].resid);
        sn_free(s->c[k].masks);
    }
    sn_free(s->c);
}

/* ------------------------------------------------------------------------- */
/* Residual banks: each class's samples are matched against its own good
 * images. The unit's bank serves when it covers the class; otherwise (the
 * cross-class setting) the class gets a bank of its own training images.  */

static int bank_covers(const struct unit_images *im, int cls)
{
    for (int i = 0; i < im->n_bank; i++)
        if (im->bank[i].cls == cls) return 1;
    return 0;
}

static int class_bank(struct pipeline *p, const struct sweep_unit *u,
                      const struct unit_images *im, int cls, const char *dir,
                      struct bank *out)
{
    int n = 0;
    struct pipe_item *items = sn_malloc(sizeof *items * (size_t)im->n_train);
    for (int i = 0; i < im->n_train; i++) {
        if (im->train[i].cls != cls) continue;
        items[n].cls = &u->ds->classes[cls];
        items[n].index = im->train[i].sample;
        items[n++].split = PIPE_TRAIN;
    }
    char path[1400];
    snprintf(path, sizeof path, "%s/train_bank_%s.h5", dir, u->ds->classes[cls].name);
    log_info("training bank for %s (%d images)", u->ds->classes[cls].name, n);
    int rc = pipeline_bank(p, u->ds, items, n, (uint64_t)pipeline_config(p)->run.seed,
                           path, out);
    sn_free(items);
    return rc;
}

/* Inter residuals of every synthetic sample of a class, as a store. */
static int class_residuals(struct pipeline *p, const struct sweep_unit *u,
                           const struct ds_class *c, const struct bank *b,
                           const char *feat_path, const char *dir, char *path, size_t cap)
{
    const struct sn_config *cfg = pipeline_config(p);
    struct store_meta m;
    if (pipeline_store_meta(p, u->ds->name, c->name, "resid", &m)) return SN_EUSER;
    struct store_reader *r;
    /* The sample store was validated by pipeline_extract_synth just now. */
    if (store_reader_open(&r, feat_path, NULL)) return SN_EUSER;
    snprintf(path, cap, "%s/train_resid_%s.h5", dir, c->name);
    if (store_matches(path, &m)) {
        store_reader_close(r);
        return SN_OK;
    }

    int M = cfg->features.grid * cfg->features.grid, d = cfg->features.dim;
    float *f = sn_malloc(sizeof(float) * (size_t)M * d);
    float *R = sn_malloc(sizeof(float) * (size_t)M * d);
    struct store_writer *w;
    long n = store_reader_count(r);
    int rc = store_writer_open(&w, path, &m, M);
    struct log_progress prog;
    log_progress_begin(&prog, "training residuals", "samples", n);
    for (long i = 0; i < n && rc == SN_OK; i++) {
        rc = store_reader_get(r, i, f);
        if (rc == SN_OK) rc = residual_inter(b, f, M, d, cfg->bank.knn_k, R);
        if (rc == SN_OK) rc = store_writer_put(w, R, store_reader_path(r, i),
                                               store_reader_label(r, i));
        log_progress_step(&prog, 1);
    }
    if (rc == SN_OK) rc = store_writer_finish(w);
    else store_writer_abort(w);
    store_reader_close(r);
    sn_free(f);
    sn_free(R);
    return rc;
}

/* Synthetic samples, residual store and masks of one training class. */
static int class_prepare(struct pipeline *p, const struct sweep_unit *u,
                         const struct unit_images *im, int cls, const struct bank *ubank,
                         const char *dir, struct class_samples *out)
{
    const struct sn_config *cfg = pipeline_config(p);
    const struct ds_class *c = &u->ds->classes[cls];
    int n = 0;
    int *idx = sn_malloc(sizeof(int) * (size_t)im->n_train);
    for (int i = 0; i < im->n_train; i++)
        if (im->train[i].cls == cls) idx[n++] = im->train[i].sample;

    char feat[1400], masks[1400], resid[1400];
    int rc = pipeline_extract_synth(p, u->ds, c, idx, n, (uint64_t)cfg->run.seed, feat,
                                    masks, sizeof feat);
    sn_free(idx);
    struct bank own = {0};
    const struct bank *b = ubank;
    if (rc == SN_OK && !bank_covers(im, cls)) {
        rc = class_bank(p, u, im, cls, dir, &own);
        b = &own;
    }
    if (rc == SN_OK) rc = class_residuals(p, u, c, b, feat, dir, resid, sizeof resid);
    bank_free(&own);
    if (rc) return rc;

    /* Open both stores for reading during training; masks stay in memory. */
    struct store_meta m;
    pipeline_store_meta(p, u->ds->name, c->name, "resid", &m);
    out->cls = c;
    rc = store_reader_open(&out->feat, feat, NULL);
    if (rc == SN_OK) rc = store_reader_open(&out->resid, resid, &m);
    if (rc) return rc;
    out->n = store_reader_count(out->feat);
    if (store_reader_count(out->resid) != out->n)
        return sn_error("%s holds %ld residuals for %ld samples; delete it to redo", resid,
                        store_reader_count(out->resid), out->n);
    long px = (long)cfg->data.crop * cfg->data.crop;
    out->masks = sn_malloc((size_t)(out->n * px));
    return pipeline_load_masks(masks, (int)out->n, cfg->data.crop, out->masks);
}

static int samples_prepare(struct pipeline *p, const struct sweep_unit *u,
                           const struct unit_images *im, const struct bank *bank,
                           const char *dir, struct sample_set *s)
{
    const struct sn_config *cfg = pipeline_config(p);
    memset(s, 0, sizeof *s);
    s->px = (long)cfg->data.crop * cfg->data.crop;
    s->c = sn_calloc((size_t)u->ds->n_classes, sizeof *s->c);
    for (int cls = 0; cls < u->ds->n_classes; cls++) {
        int used = 0;
        for (int i = 0; i < im->n_train && !used; i++) used = im->train[i].cls == cls;
        if (!used) continue;
        struct class_samples *c = &s->c[s->n_classes++];
        if (class_prepare(p, u, im, cls, bank, dir, c)) return SN_EUSER;
        c->first = s->n;
        s->n += c->n;
    }
    if (s->n == 0) return sn_error("unit %s has no training images", u->id);
    return SN_OK;
}

/* ------------------------------------------------------------------------- */
/* Training over the unit's rank group.                                       */

static void group_sum(float *buf, long n, void *ctx)
{
    comm_allreduce_sum(ctx, buf, n);
}

int unit_train(struct pipeline *p, const struct sweep_unit *u,
               const struct unit_images *im, const struct bank *bank,
               const char *unit_dir, MPI_Comm group, struct unit_model **out,
               long *n_samples)
{
    const struct sn_config *cfg = pipeline_config(p);
    struct sample_set set;
    int rc = samples_prepare(p, u, im, bank, unit_dir, &set);
    if (rc) {
        sample_set_free(&set);
        return rc;
    }
    *n_samples = set.n;

    /* One comm per unit: the group's ranks sum gradients in rank order. */
    struct comm comm;
    int world = 1, rank = 0;
    MPI_Comm_size(group, &world);
    MPI_Comm_rank(group, &rank);
    if (world > 1) comm_open_mpi(&comm, group);

    char ckpt[1400];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", unit_dir);
    struct train_source src = {set.n, samples_get, &set};
    struct trainer_opts o = {0};
    o.rank = rank;
    o.world = world;
    o.grad_reduce = world > 1 ? group_sum : NULL;
    o.reduce_ctx = world > 1 ? &comm : NULL;
    o.checkpoint_path = ckpt;
    o.resume = 1;
    struct unit_model *m = sn_calloc(1, sizeof *m);
    log_info("training %s: %ld synthetic samples, %ld steps, batch %d on %d rank(s)", u->id,
             set.n, cfg->train.steps, cfg->train.batch, world);
    rc = trainer_init(&m->trainer, cfg, &src, &o);
    if (rc == SN_OK) rc = trainer_run(&m->trainer, 0);
    if (world > 1) comm_close(&comm);
    sample_set_free(&set);
    if (rc) {
        trainer_free(&m->trainer);
        sn_free(m);
        return rc;
    }
    m->n_maps = m->trainer.dec.dims.branches * m->trainer.dec.dims.scans;
    decoder_reserve(&m->trainer.dec, 1, 0);
    *out = m;
    return SN_OK;
}

void unit_model_resumed(const struct unit_model *m, long *step, double *seconds)
{
    *step = m->trainer.resumed_step;
    *seconds = m->trainer.seconds_before;
}

int unit_model_predict(struct unit_model *m, const float *f, const float *R, float *maps,
                       int *n_maps)
{
    *n_maps = m->n_maps;
    return decoder_predict(&m->trainer.dec, f, R, 1, maps, NULL);
}

int unit_model_n_maps(const struct unit_model *m)
{
    return m->n_maps;
}

void unit_model_free(struct unit_model *m)
{
    if (!m) return;
    trainer_free(&m->trainer);
    sn_free(m);
}
