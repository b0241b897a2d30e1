/*
 * test_train.c - the decoder's training loop.
 *
 *  - feature jitter: Eq. 15 exactly, one eps shared by f and R; the normals
 *    have mean 0 and variance 1;
 *  - cyclic schedule: the active branch switches every train.cycle steps and
 *    the inactive branches' parameters and optimiser state do not move;
 *  - data parallelism: two ranks (threads with a summing hook, in rank
 *    order) sharing each batch give the single-rank losses and parameters
 *    (rounding aside: synchronised BatchNorm statistics go through float
 *    sums in another order), and both ranks hold identical parameters;
 *  - resume: a run stopped after s steps and resumed from its checkpoint
 *    gives the uninterrupted run's losses, parameters, optimiser moments and
 *    BatchNorm statistics bit for bit; a corrupt checkpoint is refused;
 *  - learning: on synthetic tensors (a planted high-residual blob and its
 *    mask) the loss falls clearly in a short run and the predicted maps
 *    separate the held-out samples' defect pixels (P-AUROC printed).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "core/decoder.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/train.h"
#include "testutil.h"

/* ------------------------------------------------------------------------ */
/* Synthetic samples: features, residual with a planted blob, its mask. */

struct synth {
    struct train_arrays a;
    float *f, *R;
    uint8_t *mask;
};

static void synth_make(struct synth *s, long n, int grid, int d, int out, uint64_t seed)
{
    struct rng_state rng;
    const int M = grid * grid, px = out / grid;
    rng_seed(&rng, seed, 3);
    s->f = malloc(sizeof(float) * n * M * d);
    s->R = malloc(sizeof(float) * n * M * d);
    s->mask = calloc((size_t)(n * out * out), 1);
    for (long i = 0; i < n * M * d; i++) {
        s->f[i] = (float)rng_normal(&rng);
        s->R[i] = 0.3f * (float)rng_uniform(&rng);
    }

    /* Three samples in four carry a blob of 1 to 3 cells on a side. */
    for (long k = 0; k < n; k++) {
        if (k % 4 == 3) continue;
        int w = 1 + (int)rng_below(&rng, 3), h = 1 + (int)rng_below(&rng, 3);
        int y0 = (int)rng_below(&rng, (uint64_t)(grid - h + 1));
        int x0 = (int)rng_below(&rng, (uint64_t)(grid - w + 1));
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) {
                long cell = k * M + y * grid + x;
                for (int c = 0; c < d; c++) {
                    s->R[cell * d + c] += 0.6f + 0.4f * (float)rng_uniform(&rng);
                    s->f[cell * d + c] += 1.5f;
                }
                for (int py = y * px; py < (y + 1) * px; py++)
                    for (int pxx = x * px; pxx < (x + 1) * px; pxx++)
                        s->mask[k * out * out + py * out + pxx] = 1;
            }
    }
    s->a = (struct train_arrays){n, M, d, out, s->f, s->R, s->mask};
}

static void synth_free(struct synth *s)
{
    free(s->f);
    free(s->R);
    free(s->mask);
}

static void small_config(struct sn_config *cfg)
{
    config_defaults(cfg);
    TU_CHECK(config_set(cfg, "features.grid", "7") == SN_OK);
    TU_CHECK(config_set(cfg, "features.dim", "16") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.embed", "8") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.dilations", "[1, 2]") == SN_OK);
    TU_CHECK(config_set(cfg, "data.crop", "21") == SN_OK);
    TU_CHECK(config_set(cfg, "train.batch", "4") == SN_OK);
    TU_CHECK(config_set(cfg, "train.cycle", "2") == SN_OK);
    /* lambda / sqrt(d) as at the defaults (30 / sqrt(512)) */
    TU_CHECK(config_set(cfg, "train.jitter", "5.3") == SN_OK);
    TU_CHECK(config_set(cfg, "run.seed", "42") == SN_OK);
}

/* ------------------------------------------------------------------------ */

static void test_jitter(void)
{
    const int M = 3, d = 5;
    float f[15], R[15], f0[15], R0[15], eps[15];
    struct rng_state rng;
    rng_seed(&rng, 1, 2);
    for (int i = 0; i < M * d; i++) {
        f0[i] = f[i] = (float)rng_normal(&rng);
        R0[i] = R[i] = (float)rng_uniform(&rng);
        eps[i] = (float)rng_normal(&rng);
    }
    train_jitter_apply(f, R, eps, M, d, 30.0f);

    /* f_i += lambda ||f_i|| / d eps_i, R_i likewise with the same eps_i. */
    int ok = 1;
    for (int i = 0; i < M; i++) {
        double nf = 0, nr = 0;
        for (int c = 0; c < d; c++) {
            nf += f0[i * d + c] * f0[i * d + c];
            nr += R0[i * d + c] * R0[i * d + c];
        }
        for (int c = 0; c < d; c++) {
            double ef = f0[i * d + c] + 30.0 * sqrt(nf) / d * eps[i * d + c];
            double er = R0[i * d + c] + 30.0 * sqrt(nr) / d * eps[i * d + c];
            ok = ok && fabs(f[i * d + c] - ef) < 1e-5 && fabs(R[i * d + c] - er) < 1e-5;
        }
    }
    TU_CHECK_MSG(ok, "jitter does not follow Eq. 15");

    /* The normals: mean 0, variance 1, and reproducible from the seed. */
    long n = 200001;
    float *z = malloc(sizeof(float) * n), *z2 = malloc(sizeof(float) * n);
    rng_seed(&rng, 9, 9);
    train_normals(&rng, z, n);
    rng_seed(&rng, 9, 9);
    train_normals(&rng, z2, n);
    double m = 0, v = 0;
    for (long i = 0; i < n; i++)
        m += z[i];
    m /= n;
    for (long i = 0; i < n; i++)
        v += (z[i] - m) * (z[i] - m);
    v /= n;
    TU_CHECK_MSG(fabs(m) < 0.01 && fabs(v - 1) < 0.02, "normals: mean %g var %g", m, v);
    TU_CHECK(!memcmp(z, z2, sizeof(float) * n));
    free(z);
    free(z2);
}

/* ------------------------------------------------------------------------ */

static void test_cycle(void)
{
    struct sn_config cfg;
    struct synth s;
    struct train_source src;
    struct trainer t;
    struct trainer_opts o = {.steps = 5, .quiet = 1};
    small_config(&cfg);
    synth_make(&s, 8, 7, 16, 21, 1);
    train_source_arrays(&src, &s.a);
    TU_CHECK(trainer_init(&t, &cfg, &src, &o) == SN_OK);

    /* Steps 0,1 train branch 0, steps 2,3 branch 1, step 4 branch 0 again. */
    long n1 = t.dec.br_count[1], off1 = t.dec.br_offset[1];
    float *p1 = malloc(sizeof(float) * n1);
    memcpy(p1, t.dec.params + off1, sizeof(float) * n1);
    struct train_step_info info;
    for (int k = 0; k < 5; k++) {
        TU_CHECK(trainer_step(&t, &info) == SN_OK);
        TU_CHECK(info.branch == (k / 2) % 2);
        int moved = memcmp(p1, t.dec.params + off1, sizeof(float) * n1) != 0;
        TU_CHECK_MSG(moved == (k >= 2), "branch 1 moved=%d after step %d", moved, k + 1);
    }
    TU_CHECK(t.adam_steps[0] == 5 && t.adam_steps[1] == 3 && t.adam_steps[2] == 2);
    TU_CHECK(train_active_branch(399, 100, 4) == 3 &&
             train_active_branch(400, 100, 4) == 0);
    free(p1);
    trainer_free(&t);
    synth_free(&s);
}

/* ------------------------------------------------------------------------ */
/* Two ranks as threads; the hook sums their buffers in rank order. */

#define SHARD_STEPS 4

struct group {
    pthread_barrier_t bar;
    float *slot[2];
};

struct rank_ctx {
    struct group *g;
    int rank;
    const struct sn_config *cfg;
    const struct train_source *src;
    double loss[SHARD_STEPS][2];
    float *params;
    long n_params;
    int status;
};

static void group_sum(float *buf, long n, void *ctx)
{
    struct rank_ctx *r = ctx;
    struct group *g = r->g;
    float *sum = malloc(sizeof(float) * (size_t)n);
    g->slot[r->rank] = buf;
    pthread_barrier_wait(&g->bar);
    for (long i = 0; i < n; i++)
        sum[i] = g->slot[0][i] + g->slot[1][i];
    pthread_barrier_wait(&g->bar);
    memcpy(buf, sum, sizeof(float) * (size_t)n);
    free(sum);
}

static void run_ranked(struct rank_ctx *r, int world)
{
    struct trainer t;
    struct trainer_opts o = {.steps = SHARD_STEPS,
                             .quiet = 1,
                             .rank = r->rank,
                             .world = world,
                             .grad_reduce = group_sum,
                             .reduce_ctx = r};
    r->status = trainer_init(&t, r->cfg, r->src, &o);
    for (int k = 0; k < SHARD_STEPS && r->status == SN_OK; k++) {
        struct train_step_info info;
        r->status = trainer_step(&t, &info);
        r->loss[k][0] = info.loss_nav;
        r->loss[k][1] = info.loss_head;
    }
    r->n_params = t.dec.n_params;
    r->params = malloc(sizeof(float) * (size_t)t.dec.n_params);
    memcpy(r->params, t.dec.params, sizeof(float) * (size_t)t.dec.n_params);
    trainer_free(&t);
}

static void *rank_main(void *arg)
{
    run_ranked(arg, 2);
    return NULL;
}

static void test_shards(void)
{
    struct sn_config cfg;
    struct synth s;
    struct train_source src;
    small_config(&cfg);
    synth_make(&s, 10, 7, 16, 21, 2);
    train_source_arrays(&src, &s.a);

    /* One rank with the whole batch, then two sharing it. */
    struct rank_ctx one = {.rank = 0, .cfg = &cfg, .src = &src};
    run_ranked(&one, 1);
    struct group g;
    struct rank_ctx two[2];
    pthread_t th[2];
    pthread_barrier_init(&g.bar, NULL, 2);
    for (int r = 0; r < 2; r++) {
        two[r] = (struct rank_ctx){.g = &g, .rank = r, .cfg = &cfg, .src = &src};
        pthread_create(&th[r], NULL, rank_main, &two[r]);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g.bar);
    TU_CHECK(one.status == SN_OK && two[0].status == SN_OK && two[1].status == SN_OK);

    /* Both ranks identical; the same losses and parameters as one rank. */
    TU_CHECK(!memcmp(two[0].params, two[1].params, sizeof(float) * one.n_params));
    for (int k = 0; k < SHARD_STEPS; k++)
        for (int j = 0; j < 2; j++)
            TU_CHECK_MSG(fabs(two[0].loss[k][j] - one.loss[k][j]) <=
                             1e-5 * one.loss[k][j],
                         "step %d loss %d: two ranks %.9g, one rank %.9g", k + 1, j,
                         two[0].loss[k][j], one.loss[k][j]);
    /* Gradients agree to float rounding. AdamW turns a rounding-level
     * gradient into a step of up to lr: only the head conv biases in front
     * of BatchNorm have one (their true gradient is zero), so they get
     * lr x steps and everything else rounding-level tolerances. */
    struct decoder_dims dd;
    struct decoder dec;
    TU_CHECK(decoder_dims_from_config(&dd, &cfg) == SN_OK);
    decoder_init(&dec, &dd);
    for (int i = 0; i < dec.n_tensors; i++) {
        const struct decoder_tensor *t = &dec.tensors[i];
        int noise = strstr(t->name, ".head") && sn_ends_with(t->name, ".conv.b");
        char what[96];
        snprintf(what, sizeof what, "two ranks vs one: %s", t->name);
        TU_CLOSE(what, two[0].params + t->offset, one.params + t->offset, t->count,
                 noise ? 1e-3 * SHARD_STEPS : 1e-5, noise ? 0 : 1e-4);
    }
    decoder_free(&dec);
    free(one.params);
    free(two[0].params);
    free(two[1].params);
    synth_free(&s);
}

/* ------------------------------------------------------------------------ */

static void run_steps(struct trainer *t, int n, double (*loss)[2], int from)
{
    for (int k = 0; k < n; k++) {
        struct train_step_info info;
        TU_CHECK(trainer_step(t, &info) == SN_OK);
        loss[from + k][0] = info.loss_nav;
        loss[from + k][1] = info.loss_head;
    }
}

static void test_resume(void)
{
    struct sn_config cfg;
    struct synth s;
    struct train_source src;
    struct trainer a, b;
    char pa[600], pb[600];
    double la[7][2], lb[7][2];
    const char *dir = tu_tmpdir("train_resume");
    snprintf(pa, sizeof pa, "%s/a.h5", dir);
    snprintf(pb, sizeof pb, "%s/b.h5", dir);
    small_config(&cfg);
    TU_CHECK(config_set(&cfg, "train.checkpoint_every", "3") == SN_OK);
    synth_make(&s, 6, 7, 16, 21, 3); /* 6 samples, batch 4: epochs wrap */
    train_source_arrays(&src, &s.a);

    /* The uninterrupted run. */
    struct trainer_opts o = {.steps = 7, .quiet = 1, .checkpoint_path = pa};
    TU_CHECK(trainer_init(&a, &cfg, &src, &o) == SN_OK);
    run_steps(&a, 7, la, 0);

    /* Stopped after 3 steps (its checkpoint written), then resumed. */
    o.checkpoint_path = pb;
    TU_CHECK(trainer_init(&b, &cfg, &src, &o) == SN_OK);
    TU_CHECK(trainer_run(&b, 3) == SN_OK);
    double ran = b.seconds_run;
    TU_CHECK(ran > 0);
    for (int k = 0; k < 3; k++)
        lb[k][0] = la[k][0], lb[k][1] = la[k][1];
    trainer_free(&b);
    o.resume = 1;
    TU_CHECK(trainer_init(&b, &cfg, &src, &o) == SN_OK);
    TU_CHECK(b.step == 3);
    /* The clock time of the first 3 steps came along (it is kept beside the
     * checkpoint, to the millisecond), and a stale file is not believed. */
    TU_CHECK(b.resumed_step == 3);
    TU_CHECK_MSG(fabs(b.seconds_before - ran) < 1e-3, "seconds before the resume %.6f, "
                 "ran %.6f", b.seconds_before, ran);
    {
        struct trainer c;
        char spath[700];
        snprintf(spath, sizeof spath, "%s.seconds", pb);
        TU_CHECK(sn_write_file_atomic(spath, "2 99.0\n", 7) == SN_OK);
        TU_CHECK(trainer_init(&c, &cfg, &src, &o) == SN_OK);
        TU_CHECK(c.step == 3 && c.seconds_before == 0);
        trainer_free(&c);
    }
    run_steps(&b, 4, lb, 3);

    TU_CHECK_MSG(!memcmp(la, lb, sizeof la), "resumed losses differ");
    for (int k = 3; k < 7; k++)
        printf("step %d loss %.9g %.9g | %.9g %.9g\n", k + 1, la[k][0], la[k][1],
               lb[k][0], lb[k][1]);
    size_t np = sizeof(float) * (size_t)a.dec.n_params;
    TU_CHECK(!memcmp(a.dec.params, b.dec.params, np));
    TU_CHECK(!memcmp(a.adam_m, b.adam_m, np) && !memcmp(a.adam_v, b.adam_v, np));
    TU_CHECK(!memcmp(a.dec.buffers, b.dec.buffers, sizeof(float) * a.dec.n_buffers));
    TU_CHECK(!memcmp(a.adam_steps, b.adam_steps, sizeof a.adam_steps));

    /* Their checkpoints are the same bytes (no time stamps in the file). */
    TU_CHECK(trainer_save(&a, pa) == SN_OK && trainer_save(&b, pb) == SN_OK);
    size_t na = 0, nb = 0;
    char *ba = sn_read_file(pa, &na), *bb = sn_read_file(pb, &nb);
    TU_CHECK_MSG(ba && bb && na == nb && !memcmp(ba, bb, na),
                 "checkpoints of equal states differ (%zu and %zu bytes)", na, nb);
    sn_free(ba);
    sn_free(bb);
    trainer_free(&a);
    trainer_free(&b);

    /* A checkpoint loads for prediction; a corrupt one is refused. */
    struct decoder_dims dd;
    struct decoder dec;
    TU_CHECK(decoder_dims_from_config(&dd, &cfg) == SN_OK);
    decoder_init(&dec, &dd);
    TU_CHECK(decoder_load(&dec, pb) == SN_OK);
    decoder_free(&dec);
    FILE *fp = fopen(pb, "wb");
    fputs("not an HDF5 file", fp);
    fclose(fp);
    TU_CHECK_ERR(trainer_init(&b, &cfg, &src, &o), pb);
    trainer_free(&b);
    synth_free(&s);
    remove(pa);
    remove(pb);
    remove(dir);
}

/* ------------------------------------------------------------------------ */

/* ROC AUC of scores against 0/1 labels by the rank sum (ties averaged). */
static int cmp_pair(const void *x, const void *y)
{
    const float *a = x, *b = y;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

static double auroc(const float *score, const uint8_t *label, long n)
{
    float *p = malloc(sizeof(float) * 2 * (size_t)n);
    for (long i = 0; i < n; i++)
        p[2 * i] = score[i], p[2 * i + 1] = label[i];
    qsort(p, (size_t)n, 2 * sizeof(float), cmp_pair);
    double rank_sum = 0, npos = 0;
    for (long i = 0; i < n;) {
        long j = i;
        while (j < n && p[2 * j] == p[2 * i])
            j++;
        for (long k = i; k < j; k++)
            if (p[2 * k + 1] > 0) rank_sum += 0.5 * (i + j + 1), npos++;
        i = j;
    }
    free(p);
    double nneg = n - npos;
    return (rank_sum - npos * (npos + 1) / 2) / (npos * nneg);
}

static void test_learning(void)
{
    struct sn_config cfg;
    struct synth s, held;
    struct train_source src;
    struct trainer t;
    const int steps = 120;
    small_config(&cfg);
    TU_CHECK(config_set(&cfg, "train.cycle", "20") == SN_OK);
    TU_CHECK(config_set(&cfg, "train.lr", "0.003") == SN_OK);
    synth_make(&s, 32, 7, 16, 21, 4);
    synth_make(&held, 8, 7, 16, 21, 5);
    train_source_arrays(&src, &s.a);

    struct trainer_opts o = {.steps = steps, .quiet = 1};
    TU_CHECK(trainer_init(&t, &cfg, &src, &o) == SN_OK);
    double first = 0, last = 0;
    for (int k = 0; k < steps; k++) {
        struct train_step_info info;
        TU_CHECK(trainer_step(&t, &info) == SN_OK);
        if (k < 10) first += (info.loss_nav + info.loss_head) / 10;
        if (k >= steps - 10) last += (info.loss_nav + info.loss_head) / 10;
    }
    printf("learning: mean loss of the first 10 steps %.5f, of the last 10 %.5f\n", first,
           last);
    TU_CHECK_MSG(last < 0.5 * first, "loss fell only from %.5f to %.5f", first, last);

    /* The held-out samples' pixel AUROC from the ensemble mean. */
    long px = 21 * 21;
    float *mean = malloc(sizeof(float) * held.a.n * px);
    decoder_reserve(&t.dec, (int)held.a.n, 0);
    TU_CHECK(decoder_predict(&t.dec, held.f, held.R, (int)held.a.n, NULL, mean) == SN_OK);
    double auc = auroc(mean, held.mask, held.a.n * px);
    printf("learning: held-out P-AUROC %.4f after %d steps\n", auc, steps);
    TU_CHECK_MSG(auc > 0.9, "held-out P-AUROC %.4f", auc);
    free(mean);
    trainer_free(&t);
    synth_free(&s);
    synth_free(&held);
}

static void test_log_line(void)
{
    struct sn_config cfg;
    struct synth s;
    struct train_source src;
    struct trainer t;
    char logp[600], line[512];
    small_config(&cfg);
    TU_CHECK(config_set(&cfg, "train.log_every", "2") == SN_OK);
    synth_make(&s, 8, 7, 16, 21, 6);
    train_source_arrays(&src, &s.a);
    snprintf(logp, sizeof logp, "%s/log.txt", tu_tmpdir("train_log"));
    FILE *lf = fopen(logp, "w+");
    log_set_stream(lf);
    struct trainer_opts o = {.steps = 4};
    TU_CHECK(trainer_init(&t, &cfg, &src, &o) == SN_OK);
    TU_CHECK(trainer_run(&t, 0) == SN_OK);
    log_set_stream(stderr);
    rewind(lf);
    int lines = 0;
    while (fgets(line, sizeof line, lf))
        if (strstr(line, "train step ")) {
            lines++;
            TU_CHECK_MSG(strstr(line, " branch ") && strstr(line, "loss nav ") &&
                             strstr(line, " head ") && strstr(line, " lr ") &&
                             strstr(line, "ms/step") && strstr(line, "samples/s"),
                         "log line lacks a field: %s", line);
        }
    TU_CHECK_MSG(lines == 2, "%d training log lines for 4 steps every 2", lines);
    fclose(lf);
    remove(logp);
    *strrchr(logp, '/') = 0;
    remove(logp);
    trainer_free(&t);
    synth_free(&s);
}

/* Which parameters one step moved: the navigator and each branch. */
static void moved_ranges(const struct decoder *dec, const float *before, int *nav,
                         int *branch)
{
    *nav = 0;
    for (long i = 0; i < dec->nav_count; i++)
        *nav |= dec->params[dec->nav_offset + i] != before[dec->nav_offset + i];
    for (int b = 0; b < dec->dims.branches; b++) {
        branch[b] = 0;
        for (long i = 0; i < dec->br_count[b]; i++)
            branch[b] |= dec->params[dec->br_offset[b] + i] != before[dec->br_offset[b] + i];
    }
}

/* The ablation switches: train.cyclic off trains every branch at every
 * step; decoder.multiview off leaves one branch with one scan and head. */
static void test_switches(void)
{
    struct sn_config cfg;
    small_config(&cfg);
    struct synth sy;
    synth_make(&sy, 8, 7, 16, 21, 5);
    struct train_source src;
    train_source_arrays(&src, &sy.a);
    struct trainer_opts o = {0};
    o.quiet = 1;

    for (int cyclic = 1; cyclic >= 0; cyclic--) {
        cfg.train.cyclic = cyclic;
        struct trainer t;
        TU_CHECK(trainer_init(&t, &cfg, &src, &o) == SN_OK);
        float *before = malloc(sizeof(float) * (size_t)t.dec.n_params);
        memcpy(before, t.dec.params, sizeof(float) * (size_t)t.dec.n_params);
        struct train_step_info info;
        TU_CHECK(trainer_step(&t, &info) == SN_OK);
        int nav, br[DECODER_MAX_BRANCHES];
        moved_ranges(&t.dec, before, &nav, br);
        TU_CHECK(nav && br[0]);
        TU_CHECK_MSG(br[1] == !cyclic, "cyclic %d: branch 1 moved %d", cyclic, br[1]);
        TU_CHECK(info.branch == (cyclic ? 0 : -1));
        TU_CHECK(isfinite(info.loss_nav) && isfinite(info.loss_head));
        free(before);
        trainer_free(&t);
    }
    cfg.train.cyclic = 1;

    cfg.decoder.multiview = 0;
    struct decoder_dims dims;
    TU_CHECK(decoder_dims_from_config(&dims, &cfg) == SN_OK);
    TU_CHECK(dims.branches == 1 && dims.scans == 1);
    struct trainer t;
    TU_CHECK(trainer_init(&t, &cfg, &src, &o) == SN_OK);
    TU_CHECK(trainer_step(&t, NULL) == SN_OK);
    float *maps = malloc(sizeof(float) * 21 * 21 * 2);
    decoder_reserve(&t.dec, 1, 0);
    TU_CHECK(decoder_predict(&t.dec, sy.f, sy.R, 1, maps, maps + 21 * 21) == SN_OK);
    /* One head: the ensemble mean is that head's map. */
    TU_CHECK(!memcmp(maps, maps + 21 * 21, sizeof(float) * 21 * 21));
    free(maps);
    trainer_free(&t);
    synth_free(&sy);
}

int main(void)
{
    test_jitter();
    test_cycle();
    test_shards();
    test_resume();
    test_learning();
    test_log_line();
    test_switches();
    return tu_finish("train");
}
