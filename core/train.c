/*
 * train.c - the decoder's training loop: batches, feature jitter, cyclic
 * branch optimisation with AdamW, logging and checkpoints (see train.h).
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "h5util.h"
#include "log.h"
#include "store.h"

/* Streams of the per-step noise: the tag's hash, the step and the sample's
 * position in the batch (positions stay below 2^24). */
static uint64_t step_stream(const char *tag, long step, long pos)
{
    return rng_hash_str(tag) ^ (((uint64_t)step << 24) + (uint64_t)pos);
}

int train_active_branch(long step, int cycle, int branches)
{
    return (int)((step / SN_MAX(cycle, 1)) % branches);
}

/* ------------------------------------------------------------------------ */
/* Samples and feature jitter. */

static int arrays_get(void *ctx, long i, float *f, float *R, uint8_t *mask)
{
    const struct train_arrays *a = ctx;
    const size_t fd = (size_t)a->M * a->d, px = (size_t)a->out * a->out;
    memcpy(f, a->f + i * fd, sizeof(float) * fd);
    memcpy(R, a->R + i * fd, sizeof(float) * fd);
    memcpy(mask, a->mask + i * px, px);
    return SN_OK;
}

void train_source_arrays(struct train_source *src, struct train_arrays *arrays)
{
    src->n = arrays->n;
    src->get = arrays_get;
    src->ctx = arrays;
}

/* Box-Muller on pairs, both values kept. The radius comes from 24 bits of
 * one 64-bit draw (offset by half a step, so never log 0: the largest
 * magnitude is 5.9) and the angle from another 24, in float math. */
void train_normals(struct rng_state *rng, float *out, long n)
{
    const float step = 1.0f / 16777216.0f, two_pi = (float)(2.0 * SN_PI);
    for (long i = 0; i < n; i += 2) {
        uint64_t x = rng_next(rng);
        float u1 = ((float)(x >> 40) + 0.5f) * step;
        float u2 = (float)((x >> 8) & 0xffffff) * step;
        float r = sqrtf(-2.0f * logf(u1)), th = two_pi * u2;
        out[i] = r * cosf(th);
        if (i + 1 < n) out[i + 1] = r * sinf(th);
    }
}

void train_jitter_apply(float *f, float *R, const float *eps, int M, int d, float lambda)
{
    for (int i = 0; i < M; i++) {
        float *fi = f + (long)i * d, *ri = R + (long)i * d;
        const float *e = eps + (long)i * d;
        double nf = 0, nr = 0;
        for (int c = 0; c < d; c++) {
            nf += (double)fi[c] * fi[c];
            nr += (double)ri[c] * ri[c];
        }
        float cf = (float)(lambda * sqrt(nf) / d), cr = (float)(lambda * sqrt(nr) / d);
        for (int c = 0; c < d; c++) {
            fi[c] += cf * e[c];
            ri[c] += cr * e[c];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Set-up. */

static void order_shuffle(struct trainer *t)
{
    int *tmp = sn_malloc(sizeof(int) * (size_t)t->src.n);
    for (long i = 0; i < t->src.n; i++)
        tmp[i] = (int)i;
    rng_shuffle(&t->rng, tmp, (int)t->src.n);
    for (long i = 0; i < t->src.n; i++)
        t->order[i] = tmp[i];
    sn_free(tmp);
    t->order_pos = 0;
}

static int opts_resolve(struct trainer *t, const struct sn_config *cfg)
{
    struct trainer_opts *o = &t->opts;
    if (o->steps <= 0) o->steps = cfg->train.steps;
    if (o->batch <= 0) o->batch = cfg->train.batch;
    if (o->world <= 1) o->world = 1, o->rank = 0;
    if (o->rank < 0 || o->rank >= o->world)
        return sn_error("training: rank %d outside a group of %d", o->rank, o->world);
    if (o->batch < o->world)
        return sn_error("%s: train.batch = %d is smaller than the %d ranks sharing it",
                        cfg->source, o->batch, o->world);
    if (t->src.n < 1) return sn_error("training: no training samples");
    if (t->src.n > 0x7fffffffL) return sn_error("training: too many samples");

    /* This rank's positions in every batch. */
    t->batch = o->batch;
    t->local_first = (int)((long)o->rank * o->batch / o->world);
    t->local_n = (int)((long)(o->rank + 1) * o->batch / o->world) - t->local_first;
    return SN_OK;
}

/* The seconds of training steps a checkpoint holds, from PATH.seconds when
 * it belongs to that very checkpoint (same step); otherwise unknown, 0. */
static void seconds_read(struct trainer *t, const char *path)
{
    char spath[4200];
    snprintf(spath, sizeof spath, "%s.seconds", path);
    if (!sn_file_exists(spath)) return;
    size_t n = 0;
    char *text = sn_read_file(spath, &n);
    long step = -1;
    double sec = 0;
    if (text && sscanf(text, "%ld %lf", &step, &sec) == 2 && step == t->step && sec >= 0)
        t->seconds_before = sec;
    sn_free(text);
}

int trainer_init(struct trainer *t, const struct sn_config *cfg,
                 const struct train_source *src, const struct trainer_opts *opts)
{
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->opts = *opts;
    t->src = *src;
    int st = opts_resolve(t, cfg);
    struct decoder_dims dims;
    if (st == SN_OK) st = decoder_dims_from_config(&dims, cfg);
    if (st != SN_OK) return st;

    /* The model, initialised from the run's seed. */
    struct rng_state init;
    decoder_init(&t->dec, &dims);
    decoder_focal_from_config(&t->dec.focal, cfg);
    rng_seed(&init, (uint64_t)cfg->run.seed, rng_hash_str("decoder.init"));
    decoder_params_init(&t->dec, &init);
    if (t->opts.world > 1)
        decoder_set_reduce(&t->dec, t->opts.grad_reduce, t->opts.reduce_ctx, t->batch);
    decoder_reserve(&t->dec, t->local_n, 1);

    /* Optimiser state, batch order, batch buffers. */
    adamw_config_default(&t->adam, cfg->train.lr, cfg->train.weight_decay);
    t->adam_m = sn_aligned(sizeof(float) * 2 * (size_t)t->dec.n_params);
    t->adam_v = t->adam_m + t->dec.n_params;
    memset(t->adam_m, 0, sizeof(float) * 2 * (size_t)t->dec.n_params);
    rng_seed(&t->rng, (uint64_t)cfg->run.seed, rng_hash_str("train.order"));
    t->order = sn_malloc(sizeof(long) * (size_t)t->src.n);
    order_shuffle(t);
    const size_t fd = (size_t)dims.M * dims.d;
    t->f = sn_aligned(sizeof(float) * fd * (size_t)t->local_n);
    t->R = sn_aligned(sizeof(float) * fd * (size_t)t->local_n);
    t->mask = sn_malloc((size_t)t->local_n * dims.out * dims.out);
    log_info("decoder: %ld parameters (%.1f MB with gradients and statistics), "
             "activations %.1f MB for %d images",
             t->dec.n_params, decoder_param_bytes(&t->dec) / 1e6,
             decoder_act_bytes(&t->dec) / 1e6, t->local_n);

    /* Continue a killed run where its checkpoint left off. */
    if (t->opts.resume && t->opts.checkpoint_path &&
        sn_file_exists(t->opts.checkpoint_path)) {
        st = trainer_load(t, t->opts.checkpoint_path);
        if (st == SN_OK) {
            log_info("resumed %s at step %ld", t->opts.checkpoint_path, t->step);
            t->resumed_step = t->step;
            seconds_read(t, t->opts.checkpoint_path);
        }
    }
    return st;
}

void trainer_free(struct trainer *t)
{
    decoder_free(&t->dec);
    sn_free(t->adam_m);
    sn_free(t->order);
    sn_free(t->f);
    sn_free(t->R);
    sn_free(t->mask);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------ */
/* One step. */

/* The next batch: every rank draws the whole batch's sample indices (the
 * same on every rank) and loads its own positions. */
static int batch_load(struct trainer *t)
{
    const size_t fd = (size_t)t->dec.dims.M * t->dec.dims.d;
    const size_t px = (size_t)t->dec.dims.out * t->dec.dims.out;
    int st = SN_OK;

    for (int j = 0; j < t->batch; j++) {
        if (t->order_pos == t->src.n) order_shuffle(t);
        long idx = t->order[t->order_pos++];
        int k = j - t->local_first;
        if (k < 0 || k >= t->local_n || st != SN_OK) continue;
        st = t->src.get(t->src.ctx, idx, t->f + k * fd, t->R + k * fd, t->mask + k * px);
    }
    return st;
}

/* Eq. 15 on every local sample, each from its own stream. */
static void batch_jitter(struct trainer *t)
{
    const int M = t->dec.dims.M, d = t->dec.dims.d;
    const float lambda = (float)t->cfg->train.jitter;
    if (lambda == 0.0f) return;

#pragma omp parallel
    {
        float *eps = sn_aligned(sizeof(float) * (size_t)M * d);
#pragma omp for schedule(static)
        for (int k = 0; k < t->local_n; k++) {
            struct rng_state r;
            rng_seed(&r, (uint64_t)t->cfg->run.seed,
                     step_stream("train.jitter", t->step, t->local_first + k));
            train_normals(&r, eps, (long)M * d);
            train_jitter_apply(t->f + (size_t)k * M * d, t->R + (size_t)k * M * d, eps, M,
                               d, lambda);
        }
        sn_free(eps);
    }
}

/* Sum the navigator's and the branch's gradients and the losses over ranks. */
/* Sum over the ranks: branch b's gradients, the navigator's when nav is set,
 * and the loss terms when loss is given. */
static void step_reduce(struct trainer *t, int b, struct decoder_loss *loss, float w,
                        int nav)
{
    if (t->opts.world <= 1) return;
    if (nav)
        t->opts.grad_reduce(t->dec.grads + t->dec.nav_offset, t->dec.nav_count,
                            t->opts.reduce_ctx);
    t->opts.grad_reduce(t->dec.grads + t->dec.br_offset[b], t->dec.br_count[b],
                        t->opts.reduce_ctx);
    if (!loss) return;
    float l[2] = {(float)(loss->nav * w), (float)(loss->head * w)};
    t->opts.grad_reduce(l, 2, t->opts.reduce_ctx);
    loss->nav = l[0];
    loss->head = l[1];
}

/* One branch's forward, loss and backward; gradients accumulate. */
static int step_branch(struct trainer *t, int b, uint64_t noise, float w,
                       struct decoder_loss *loss)
{
    int st = decoder_forward_train(&t->dec, t->f, t->R, t->local_n, b, noise, t->local_first);
    if (st != SN_OK) return sn_error_prefix("training step %ld", t->step + 1);
    decoder_loss(&t->dec, t->mask, w, loss);
    decoder_backward(&t->dec);
    return SN_OK;
}

/*
 * Cyclic training switched off (an ablation of the paper's Table 5): every
 * branch runs at every step and the loss is the navigator term plus the mean
 * over all heads. Each branch's pass recomputes the navigator, so its
 * gradient is weighted by 1 / branches to count once.
 */
/* A step's inputs: the batch, jittered, and the seed of its dropout masks. */
static int step_begin(struct trainer *t, uint64_t *noise)
{
    int st = batch_load(t);
    if (st != SN_OK) return st;
    batch_jitter(t);
    struct rng_state ns;
    rng_seed(&ns, (uint64_t)t->cfg->run.seed, step_stream("train.dropout", t->step, 0));
    *noise = rng_next(&ns);
    return SN_OK;
}

static int trainer_step_all(struct trainer *t, struct train_step_info *info)
{
    struct decoder *dec = &t->dec;
    const int nb = dec->dims.branches;
    const float w = (float)t->local_n / (float)t->batch;
    double t0 = sn_now();
    uint64_t noise;
    int st = step_begin(t, &noise);
    if (st != SN_OK) return st;

    /* Forward and backward of every branch, then one reduction each. */
    struct decoder_loss loss = {0, 0}, lb;
    for (int b = 0; b < nb; b++) decoder_grads_zero(dec, b);
    for (int b = 0; b < nb && st == SN_OK; b++) {
        st = step_branch(t, b, noise + (uint64_t)b, w / (float)nb, &lb);
        loss.nav += lb.nav / nb;
        loss.head += lb.head / nb;
    }
    if (st != SN_OK) return st;
    for (int b = 0; b < nb; b++) step_reduce(t, b, b == 0 ? &loss : NULL, w, b == 0);

    /* AdamW on the navigator and every branch. */
    struct adamw_range r[1 + DECODER_MAX_BRANCHES];
    r[0] = (struct adamw_range){dec->nav_offset, dec->nav_count, ++t->adam_steps[0]};
    for (int b = 0; b < nb; b++)
        r[1 + b] = (struct adamw_range){dec->br_offset[b], dec->br_count[b],
                                        ++t->adam_steps[1 + b]};
    adamw_update_ranges(dec->params, dec->grads, t->adam_m, t->adam_v, r, 1 + nb, &t->adam);
    t->step++;
    if (info)
        *info = (struct train_step_info){t->step, -1, loss.nav, loss.head, sn_now() - t0};
    return SN_OK;
}

int trainer_step(struct trainer *t, struct train_step_info *info)
{
    if (!t->cfg->train.cyclic) return trainer_step_all(t, info);
    struct decoder *dec = &t->dec;
    const int b = train_active_branch(t->step, t->cfg->train.cycle, dec->dims.branches);
    const float w = (float)t->local_n / (float)t->batch;
    struct decoder_loss loss;
    double t0 = sn_now();

    /* Batch, jitter, forward, loss, backward. */
    uint64_t noise;
    int st = step_begin(t, &noise);
    if (st != SN_OK) return st;
    decoder_grads_zero(dec, b);
    st = step_branch(t, b, noise, w, &loss);
    if (st != SN_OK) return st;
    step_reduce(t, b, &loss, w, 1);

    /* AdamW on the navigator and the active branch, each with its count. */
    struct adamw_range r[2] = {
        {dec->nav_offset, dec->nav_count, ++t->adam_steps[0]},
        {dec->br_offset[b], dec->br_count[b], ++t->adam_steps[1 + b]}};
    adamw_update_ranges(dec->params, dec->grads, t->adam_m, t->adam_v, r, 2, &t->adam);
    t->step++;

    if (info) {
        info->step = t->step;
        info->branch = b;
        info->loss_nav = loss.nav;
        info->loss_head = loss.head;
        info->seconds = sn_now() - t0;
    }
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* The loop: logging and checkpoints. */

static void log_interval(struct trainer *t, int branch)
{
    if (t->acc_steps == 0) return;
    double n = (double)t->acc_steps, ms = 1e3 * t->acc_sec / n;
    char br[16] = "all"; /* every branch trains when cyclic training is off */
    if (branch >= 0) snprintf(br, sizeof br, "%d", branch);
    if (!t->opts.quiet && t->opts.rank == 0)
        log_info("train step %ld/%ld branch %s loss nav %.5f head %.5f lr %.2e "
                 "%.1f ms/step %.2f samples/s",
                 t->step, t->opts.steps, br, t->acc_nav / n, t->acc_head / n,
                 t->adam.lr, ms, t->batch / (ms * 1e-3));
    t->acc_nav = t->acc_head = t->acc_sec = 0;
    t->acc_steps = 0;
}

static int checkpoint_maybe(struct trainer *t, int force)
{
    int every = t->cfg->train.checkpoint_every;
    if (!t->opts.checkpoint_path || t->opts.rank != 0) return SN_OK;
    if (!force && (every <= 0 || t->step % every != 0)) return SN_OK;
    return trainer_save(t, t->opts.checkpoint_path);
}

int trainer_run(struct trainer *t, long until)
{
    struct train_step_info info = {0};
    if (until <= 0 || until > t->opts.steps) until = t->opts.steps;
    if (t->step >= until) return SN_OK;

    while (t->step < until) {
        int st = trainer_step(t, &info);
        if (st != SN_OK) return st;
        t->acc_nav += info.loss_nav;
        t->acc_head += info.loss_head;
        t->acc_sec += info.seconds;
        t->seconds_run += info.seconds;
        t->acc_steps++;
        if (t->step % t->cfg->train.log_every == 0 || t->step == until)
            log_interval(t, info.branch);
        st = checkpoint_maybe(t, t->step == until);
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints. */

static void attr_write(hid_t loc, const char *name, hid_t type, const void *v, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t at = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    STORE_H5(at);
    STORE_H5(H5Awrite(at, type, v));
    H5Aclose(at);
    H5Sclose(sp);
}

static int attr_read(hid_t loc, const char *path, const char *name, hid_t type, void *v,
                     int n)
{
    htri_t exists;
    STORE_H5_QUIET(H5Aexists(loc, name), exists);
    if (exists <= 0)
        return sn_error("%s: checkpoint attribute '%s' is missing", path, name);
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(at);
    int ok = H5Sget_simple_extent_npoints(sp) == n && H5Aread(at, type, v) >= 0;
    H5Sclose(sp);
    H5Aclose(at);
    return ok ? SN_OK
              : sn_error("%s: checkpoint attribute '%s' is malformed", path, name);
}

static void string_attr_write(hid_t loc, const char *name, const char *s)
{
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(s) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = H5Acreate2(loc, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    STORE_H5(at);
    STORE_H5(H5Awrite(at, ty, s));
    H5Aclose(at);
    H5Sclose(sp);
    H5Tclose(ty);
}

static void order_write(hid_t f, const struct trainer *t)
{
    hsize_t n = (hsize_t)t->src.n;
    hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = h5_dcpl_untimed();
    hid_t ds = H5Dcreate2(f, "/order", H5T_STD_I64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    STORE_H5(ds);
    STORE_H5(H5Dwrite(ds, H5T_NATIVE_LONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->order));
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

int trainer_save(const struct trainer *t, const char *path)
{
    const struct decoder *dec = &t->dec;
    char tmp[4096];
    sn_tmp_name(tmp, sizeof tmp, path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return sn_error("cannot create checkpoint %s", tmp);

    /* The model, the optimiser, the batch order and the counters. */
    decoder_dims_write(f, &dec->dims);
    decoder_tensors_write(f, "/params", dec->tensors, dec->n_tensors, dec->params);
    decoder_tensors_write(f, "/buffers", dec->buffer_tensors, dec->n_buffer_tensors,
                          dec->buffers);
    decoder_tensors_write(f, "/adam_m", dec->tensors, dec->n_tensors, t->adam_m);
    decoder_tensors_write(f, "/adam_v", dec->tensors, dec->n_tensors, t->adam_v);
    order_write(f, t);
    int branch = t->step > 0 ? train_active_branch(t->step - 1, t->cfg->train.cycle,
                                                   dec->dims.branches)
                             : 0;
    attr_write(f, "step", H5T_NATIVE_LONG, &t->step, 1);
    attr_write(f, "branch", H5T_NATIVE_INT, &branch, 1);
    attr_write(f, "adam_steps", H5T_NATIVE_LONG, t->adam_steps, 1 + dec->dims.branches);
    attr_write(f, "rng", H5T_NATIVE_UINT64, t->rng.s, 4);
    attr_write(f, "order_pos", H5T_NATIVE_LONG, &t->order_pos, 1);
    attr_write(f, "batch", H5T_NATIVE_INT, &t->batch, 1);
    char *conf = config_to_string(t->cfg);
    string_attr_write(f, "config", conf);
    sn_free(conf);
    string_attr_write(f, "version", sn_version());
    STORE_H5(H5Fclose(f));
    int st = sn_rename_into_place(tmp, path);
    if (st == SN_OK) {
        char spath[4200], text[96];
        snprintf(spath, sizeof spath, "%s.seconds", path);
        int n = snprintf(text, sizeof text, "%ld %.3f\n", t->step,
                         t->seconds_before + t->seconds_run);
        st = sn_write_file_atomic(spath, text, (size_t)n);
    }
    return st;
}

static int order_read(hid_t f, const char *path, struct trainer *t)
{
    htri_t exists;
    STORE_H5_QUIET(H5Lexists(f, "/order", H5P_DEFAULT), exists);
    if (exists <= 0) return sn_error("%s: checkpoint has no /order", path);
    hid_t ds = H5Dopen2(f, "/order", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int st = SN_OK;
    if (n != t->src.n)
        st = sn_error("%s: checkpoint was made with %lld training samples, this run has "
                      "%ld",
                      path, (long long)n, t->src.n);
    else if (H5Dread(ds, H5T_NATIVE_LONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->order) < 0)
        st = sn_error("%s: cannot read /order", path);
    H5Sclose(sp);
    H5Dclose(ds);
    return st;
}

int trainer_load(struct trainer *t, const char *path)
{
    struct decoder *dec = &t->dec;
    hid_t f;
    STORE_H5_QUIET(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), f);
    if (f < 0) return sn_error("cannot open checkpoint %s", path);

    int batch = 0, st = decoder_dims_check(f, path, &dec->dims);
    if (st == SN_OK) st = attr_read(f, path, "batch", H5T_NATIVE_INT, &batch, 1);
    if (st == SN_OK && batch != t->batch)
        st = sn_error("%s: checkpoint was trained with batch %d, this run uses %d", path,
                      batch, t->batch);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/params", dec->tensors, dec->n_tensors,
                                  dec->params);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/buffers", dec->buffer_tensors,
                                  dec->n_buffer_tensors, dec->buffers);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/adam_m", dec->tensors, dec->n_tensors,
                                  t->adam_m);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/adam_v", dec->tensors, dec->n_tensors,
                                  t->adam_v);
    if (st == SN_OK) st = order_read(f, path, t);
    if (st == SN_OK) st = attr_read(f, path, "step", H5T_NATIVE_LONG, &t->step, 1);
    if (st == SN_OK)
        st = attr_read(f, path, "adam_steps", H5T_NATIVE_LONG, t->adam_steps,
                       1 + dec->dims.branches);
    if (st == SN_OK) st = attr_read(f, path, "rng", H5T_NATIVE_UINT64, t->rng.s, 4);
    if (st == SN_OK)
        st = attr_read(f, path, "order_pos", H5T_NATIVE_LONG, &t->order_pos, 1);
    H5Fclose(f);
    if (st == SN_OK && (t->order_pos < 0 || t->order_pos > t->src.n))
        st = sn_error("%s: checkpoint attribute order_pos is out of range", path);
    return st;
}
