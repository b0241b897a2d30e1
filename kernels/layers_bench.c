/*
 * layers_bench.c - `snarm bench layers`: the decoder head's dilated conv3x3
 * (32 maps = batch 8 x 4 scans, 49 x 49 cells, 128 -> 128 channels),
 * forward and backward, against PyTorch in the same run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bench.h"
#include "core/cli.h"
#include "core/common.h"
#include "core/rng.h"
#include "kernels/layers.h"

#define BENCH_MAPS 32
#define BENCH_CELLS 49
#define BENCH_CH 128
#define BENCH_REPS 2

/* Best forward + backward time of one dilation, in seconds. */
static double bench_conv3x3(int dil, struct rng_state *rng)
{
    struct conv3x3_shape s = {BENCH_MAPS, BENCH_CELLS, BENCH_CELLS,
                              BENCH_CH,   BENCH_CH,    dil};
    size_t nx = (size_t)BENCH_MAPS * BENCH_CELLS * BENCH_CELLS * BENCH_CH;
    size_t nw = (size_t)BENCH_CH * BENCH_CH * 9;
    float *x = sn_aligned(sizeof(float) * nx), *y = sn_aligned(sizeof(float) * nx);
    float *dx = sn_aligned(sizeof(float) * nx), *w = sn_aligned(sizeof(float) * nw);
    float *dw = sn_calloc(nw, sizeof(float)), *b = sn_calloc(BENCH_CH, sizeof(float));
    float *db = sn_calloc(BENCH_CH, sizeof(float));
    float *work = sn_aligned(sizeof(float) * conv3x3_work_floats(&s));
    rng_fill_normal(rng, x, (long)nx, 1.0f);
    rng_fill_normal(rng, w, (long)nw, 0.05f);

    /* The output doubles as its own gradient, as in the peer script. */
    double best = 1e30;
    for (int rep = 0; rep < BENCH_REPS; rep++) {
        double t0 = sn_now();
        conv3x3_forward(y, x, w, b, &s, work);
        conv3x3_backward(dx, dw, db, y, x, w, &s, work);
        best = SN_MIN(best, sn_now() - t0);
    }
    float *bufs[] = {x, y, dx, w, dw, b, db, work};
    for (size_t i = 0; i < SN_ARRAY_LEN(bufs); i++)
        sn_free(bufs[i]);
    return best;
}

int bench_layers(int argc, char **argv)
{
    const int dils[] = {3, 24};
    struct rng_state rng;
    (void)argc; /* takes no options: cmd_bench answers --help and refuses others */
    (void)argv;
    rng_seed(&rng, 1, 0);

    /* Ours, dilation by dilation, then the peer on the same machine. */
    double ours = 0;
    for (size_t i = 0; i < SN_ARRAY_LEN(dils); i++) {
        double t = bench_conv3x3(dils[i], &rng);
        printf("snarm conv3x3 dil %d: %.0f ms forward+backward\n", dils[i], t * 1e3);
        ours += t;
    }
    double torch = bench_python_seconds("tests/bench_layers.py", "--dils 3,24");
    double gemm = bench_sgemm_gflops(2401, 128, 384);
    printf("sgemm 2401 x 128 x 384: %.1f GFLOP/s\n", gemm);
    if (torch > 0)
        printf("RESULT layers conv3x3_ms=%.1f vs_torch=%.2f\n", ours / 2 * 1e3,
               torch / ours);
    else
        printf("RESULT layers conv3x3_ms=%.1f vs_torch=nan\n", ours / 2 * 1e3);
    return CLI_OK;
}
