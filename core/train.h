/*
 * train.h - training the SNARM decoder (SPEC section 4): feature jitter,
 * focal losses, cyclic optimisation of one scale branch at a time, AdamW,
 * logging and resumable HDF5 checkpoints.
 *
 * A step draws a batch from the training samples (an epoch-wise shuffle by
 * the trainer's RNG), jitters each sample's features and inter residual
 * (Eq. 15: one eps ~ N(0, I) per cell, f += lambda ||f_i|| / d eps_i and
 * R += lambda ||R_i|| / d eps_i with the same eps), runs the navigator and
 * the active branch (branch (step / cycle) mod branches), and updates the
 * navigator and that branch with AdamW. The other branches' parameters
 * and optimiser state are not touched: each branch keeps its own AdamW
 * step count, the navigator counts every step.
 *
 * Noise. The jitter of the sample at position j of step t's batch and the
 * dropout masks of step t come from RNG streams seeded by (run.seed, t, j),
 * so a run's noise depends neither on how a batch is split over ranks nor
 * on where a run was interrupted. The batch order comes from the trainer's
 * own RNG, whose state the checkpoints keep.
 *
 * Data parallelism. With world > 1 each rank trains on its shard of every
 * batch (positions rank * B / world up to (rank + 1) * B / world); the
 * grad_reduce hook sums a float array over the ranks in a fixed order (the
 * distributed layer's all-reduce). The trainer uses it for the gradients
 * (the loss of each rank is weighted by its share of the batch, so the sum
 * is the whole batch's gradient), for the synchronised BatchNorm statistics
 * and for the logged losses. Every rank ends each step with the same
 * parameters; rank 0 writes the checkpoints.
 *
 * Checkpoints (HDF5, written atomically every train.checkpoint_every steps
 * and at the end): /params, /buffers (BatchNorm running statistics),
 * /adam_m, /adam_v, each one dataset per tensor (decoder.h names), and the
 * attributes step, branch, adam_steps, rng, order_pos plus the dataset
 * /order (the epoch's shuffle), the decoder dimensions and the resolved
 * configuration. decoder_load() reads such a file for prediction.
 * Resuming from a checkpoint written at step s reproduces, bit for bit, the
 * losses and parameters of the uninterrupted run from step s on (same
 * build, same thread count).
 */
#ifndef SNARM_TRAIN_H
#define SNARM_TRAIN_H

#include <stdint.h>

#include "config.h"
#include "decoder.h"
#include "kernels/layers.h"
#include "rng.h"

/* The training samples: n samples, each the image features f and the inter
 * residual R (M x d floats each, M = grid^2, before jitter) and the defect
 * mask (out x out, 0/1). get() copies sample i into the buffers and returns
 * SN_OK or SN_EUSER. */
struct train_source {
    long n;
    int (*get)(void *ctx, long i, float *f, float *R, uint8_t *mask);
    void *ctx;
};

/* A source over samples held in memory as contiguous arrays. */
struct train_arrays {
    long n;
    int M, d, out;
    const float *f, *R;  /* n x M x d */
    const uint8_t *mask; /* n x out x out */
};
void train_source_arrays(struct train_source *src, struct train_arrays *arrays);

struct trainer_opts {
    long steps;      /* total steps; 0: train.steps */
    int batch;       /* global batch; 0: train.batch */
    int rank, world; /* this rank's shard; world <= 1: one process */
    /* Sum n floats over the ranks, in place, in a fixed order. */
    void (*grad_reduce)(float *grad, long n, void *ctx);
    void *reduce_ctx;
    const char *checkpoint_path; /* NULL: no checkpoints */
    int resume;                  /* continue from checkpoint_path if it exists */
    int quiet;                   /* no per-interval log lines */
};

/* What one step did. */
struct train_step_info {
    long step;                  /* the step just completed, 1-based */
    int branch;                 /* its active branch */
    double loss_nav, loss_head; /* whole-batch means */
    double seconds;
};

struct trainer {
    const struct sn_config *cfg;
    struct trainer_opts opts;
    struct train_source src;
    struct decoder dec;

    /* AdamW: first and second moments in one allocation, laid out as
     * dec.params; step counts of the navigator [0] and each branch [1 + b]. */
    struct adamw_config adam;
    float *adam_m, *adam_v;
    long adam_steps[1 + DECODER_MAX_BRANCHES];

    long step;              /* steps completed */
    struct rng_state rng;   /* batch order */
    long *order, order_pos; /* the current epoch's shuffle of the samples */

    int batch, local_first, local_n; /* the global batch and this rank's part */
    float *f, *R, *eps;              /* this rank's batch (jittered in place) */
    uint8_t *mask;

    /* Log interval accumulators. */
    double acc_nav, acc_head, acc_sec;
    long acc_steps;

    /* Seconds of training steps: those a resumed checkpoint held (kept
     * beside it, since the checkpoint itself holds no clock time) and
     * those of this run. */
    long resumed_step;
    double seconds_before, seconds_run;
};

/* Set up the decoder (fresh from run.seed, or from the checkpoint when
 * opts->resume and it exists) and the batch buffers. */
int trainer_init(struct trainer *t, const struct sn_config *cfg,
                 const struct train_source *src, const struct trainer_opts *opts);
void trainer_free(struct trainer *t);

/* One step; info may be NULL. */
int trainer_step(struct trainer *t, struct train_step_info *info);
/* Steps until `until` steps are done (opts.steps when until <= 0), with
 * logging and checkpoints; a checkpoint is also written at the end. */
int trainer_run(struct trainer *t, long until);

/* The checkpoint, then "PATH.seconds": its step and the seconds of training
 * steps it holds. */
int trainer_save(const struct trainer *t, const char *path);
int trainer_load(struct trainer *t, const char *path);

/* The active branch at 0-based step `step`. */
int train_active_branch(long step, int cycle, int branches);

/* Eq. 15 on one sample: f, R (M x d) += lambda ||.||_2 / d * eps with
 * eps (M x d) standard normal, the same eps for both. */
void train_jitter_apply(float *f, float *R, const float *eps, int M, int d, float lambda);
/* Fill n floats with standard normals from rng (pairs of Box-Muller
 * draws, both values used). */
void train_normals(struct rng_state *rng, float *out, long n);

#endif
