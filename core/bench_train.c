/*
 * snarm bench train: one training step of the decoder at the default sizes
 * (49 x 49 grid, d = 512, e = 128, batch 8, output 392): batch loading,
 * feature jitter, waypoint map, self references, intra matching, the
 * navigator and the active branch forward, both focal losses, backward and
 * AdamW; against the PyTorch reference model (tests/bench_train.py, which
 * imports tests/ref_decoder.py) on the same inputs' sizes in the same run.
 *
 * The branch cycle is set to one step so that consecutive steps visit the
 * branches in turn (their dilations change the heads' cost); after one
 * warm-up step, one step per branch is timed on both sides and the mean is
 * reported, with the C step's profile by phase.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "config.h"
#include "decoder.h"
#include "log.h"
#include "rng.h"
#include "train.h"

struct bench_train_opts {
    int batch, grid, dim, embed, out, branches, torch;
};

static void bench_train_usage(FILE *out)
{
    fprintf(out, "usage: snarm bench train [--batch N] [--grid G] [--dim D] [--embed E]\n"
                 "                         [--out S] [--branches K] [--no-torch]\n\n"
                 "One decoder training step, C against the PyTorch reference, mean over\n"
                 "K branches (default: all 4) after a warm-up step. Defaults: batch 8,\n"
                 "grid 49, d 512, e 128, output 392.\n");
}

static int bench_train_args(int argc, char **argv, struct bench_train_opts *o)
{
    static const struct option longs[] = {{"batch", required_argument, 0, 'b'},
                                          {"grid", required_argument, 0, 'g'},
                                          {"dim", required_argument, 0, 'd'},
                                          {"embed", required_argument, 0, 'e'},
                                          {"out", required_argument, 0, 'o'},
                                          {"branches", required_argument, 0, 'k'},
                                          {"no-torch", no_argument, 0, 'n'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    *o = (struct bench_train_opts){8, 49, 512, 128, 392, 4, 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->batch = atoi(optarg);
            break;
        case 'g':
            o->grid = atoi(optarg);
            break;
        case 'd':
            o->dim = atoi(optarg);
            break;
        case 'e':
            o->embed = atoi(optarg);
            break;
        case 'o':
            o->out = atoi(optarg);
            break;
        case 'k':
            o->branches = atoi(optarg);
            break;
        case 'n':
            o->torch = 0;
            break;
        case 'h':
            bench_train_usage(stdout);
            return -1;
        default:
            return cli_bad_option("bench train", argv);
        }
    }
    if (o->batch < 1 || o->grid < 2 || o->dim < 2 || o->embed < 1 || o->out < 16 ||
        o->branches < 1 || o->branches > 4)
        return cli_usage("bench train", "sizes out of range");
    return 0;
}

/* The configuration: defaults, the bench sizes, a one-step branch cycle. */
static int bench_train_config(struct sn_config *cfg, const struct bench_train_opts *o)
{
    char v[32];
    config_defaults(cfg);
    snprintf(v, sizeof v, "%d", o->grid);
    int st = config_set(cfg, "features.grid", v);
    snprintf(v, sizeof v, "%d", o->dim);
    if (st == SN_OK) st = config_set(cfg, "features.dim", v);
    snprintf(v, sizeof v, "%d", o->embed);
    if (st == SN_OK) st = config_set(cfg, "decoder.embed", v);
    snprintf(v, sizeof v, "%d", o->out);
    if (st == SN_OK) st = config_set(cfg, "data.crop", v);
    snprintf(v, sizeof v, "%d", o->batch);
    if (st == SN_OK) st = config_set(cfg, "train.batch", v);
    if (st == SN_OK) st = config_set(cfg, "train.cycle", "1");
    return st;
}

/* Random features, a residual with a planted blob, and its mask. */
static void bench_train_inputs(struct train_arrays *a, int n, int grid, int d, int out)
{
    struct rng_state rng;
    const long M = (long)grid * grid, fd = M * d;
    float *f = sn_aligned(sizeof(float) * fd * n),
          *R = sn_aligned(sizeof(float) * fd * n);
    uint8_t *mask = sn_calloc((size_t)n * out * out, 1);
    rng_seed(&rng, 1, rng_hash_str("bench.train"));
    train_normals(&rng, f, fd * n);
    for (long i = 0; i < fd * n; i++)
        R[i] = 0.3f * (float)rng_uniform(&rng);
    for (int k = 0; k < n; k++) {
        for (long i = M / 3; i < M / 3 + grid / 4; i++)
            for (int c = 0; c < d; c++)
                R[k * fd + i * d + c] += 1.0f;
        for (int y = out / 3; y < out / 3 + out / 8; y++)
            memset(mask + (size_t)k * out * out + (size_t)y * out, 1, (size_t)out / 4);
    }
    *a = (struct train_arrays){n, (int)M, d, out, f, R, mask};
}

static void bench_train_profile(const struct trainer *t, double step_sec, int steps)
{
    const struct decoder *dec = &t->dec;
    double sum = 0;
    printf("C step profile (ms per step, forward / backward):\n");
    for (int p = 0; p < DECODER_PH_N; p++) {
        double fw = 1e3 * dec->phase_fwd[p] / steps, bw = 1e3 * dec->phase_bwd[p] / steps;
        printf("  %-22s %8.1f %8.1f\n", decoder_phase_name(p), fw, bw);
        sum += fw + bw;
    }
    printf("  %-22s %8.1f\n", "batch, jitter, AdamW", 1e3 * step_sec - sum);
}

int bench_train(int argc, char **argv)
{
    struct bench_train_opts o;
    struct sn_config cfg;
    int rc = bench_train_args(argc, argv, &o);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (bench_train_config(&cfg, &o) != SN_OK) return cli_fail();

    /* A trainer over one batch of inputs. */
    struct train_arrays a;
    struct train_source src;
    struct trainer t;
    struct trainer_opts to = {.steps = 1000, .quiet = 1};
    bench_train_inputs(&a, o.batch, o.grid, o.dim, o.out);
    train_source_arrays(&src, &a);
    if (trainer_init(&t, &cfg, &src, &to) != SN_OK) return cli_fail();
    printf("decoder: %ld parameters, %.0f MB of activations for batch %d\n",
           t.dec.n_params, decoder_act_bytes(&t.dec) / 1e6, o.batch);

    /* Warm-up on the last branch, then one step per branch. */
    t.step = 3;
    if (trainer_step(&t, NULL) != SN_OK) return cli_fail();
    t.step = 0;
    memset(t.dec.phase_fwd, 0, sizeof t.dec.phase_fwd);
    memset(t.dec.phase_bwd, 0, sizeof t.dec.phase_bwd);
    t.dec.profile = 1;
    double total = 0;
    for (int k = 0; k < o.branches; k++) {
        struct train_step_info info;
        if (trainer_step(&t, &info) != SN_OK) return cli_fail();
        printf("C step, branch %d (dilation %d): %.1f ms\n", info.branch,
               t.dec.dims.dil[info.branch], 1e3 * info.seconds);
        total += info.seconds;
    }
    double ms = 1e3 * total / o.branches;
    bench_train_profile(&t, total / o.branches, o.branches);
    if (!getenv("OMP_WAIT_POLICY"))
        printf("note: OMP_WAIT_POLICY is unset; where other jobs share the cores, "
               "'passive' keeps libgomp's idle workers from spinning against "
               "OpenBLAS's threads\n");
    trainer_free(&t);
    sn_free((void *)a.f);
    sn_free((void *)a.R);
    sn_free((void *)a.mask);

    /* The PyTorch peer on the same sizes. */
    double torch_s = -1;
    if (o.torch) {
        char args[256];
        snprintf(args, sizeof args,
                 "--batch %d --grid %d --dim %d --embed %d --out %d --branches %d "
                 "--threads 2",
                 o.batch, o.grid, o.dim, o.embed, o.out, o.branches);
        torch_s = bench_python_seconds("tests/bench_train.py", args);
    }
    if (torch_s > 0)
        printf("RESULT train ms_per_step=%.1f vs_torch=%.2f\n", ms, 1e3 * torch_s / ms);
    else
        printf("RESULT train ms_per_step=%.1f vs_torch=nan\n", ms);
    return CLI_OK;
}
