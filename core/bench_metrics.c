/*
 * bench_metrics.c - `snarm bench metrics`: the four metrics on 83 maps of
 * 392 x 392 (one MVTec-sized class, 12.8 M pixels), from memory, and the same
 * through a maps file written to a temporary folder.
 */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "log.h"
#include "metrics.h"
#include "postproc.h"
#include "rng.h"

#define BENCH_N 83
#define BENCH_SIDE 392
#define BENCH_REPS 3

/* Synthetic class: 60 % defective images with 1-3 elliptic defects; the map
 * is noise plus a bump over each defect, so the metrics are neither 0 nor 1. */
static void bench_fill(struct maps_file *m)
{
    struct rng_state r;
    rng_seed(&r, 1234, rng_hash_str("bench_metrics"));
    long hw = (long)m->H * m->W;
    for (int i = 0; i < m->N; i++) {
        float *map = m->maps + i * hw;
        uint8_t *mask = m->masks + i * hw;
        memset(mask, 0, (size_t)hw);
        for (long p = 0; p < hw; p++)
            map[p] = (float)(0.3 * rng_uniform(&r));
        m->labels[i] = rng_uniform(&r) < 0.6;
        int nd = m->labels[i] ? 1 + (int)rng_below(&r, 3) : 0;
        for (int d = 0; d < nd; d++) {
            double cy = rng_uniform(&r) * m->H, cx = rng_uniform(&r) * m->W;
            double ry = 4 + 30 * rng_uniform(&r), rx = 4 + 30 * rng_uniform(&r);
            double amp = 0.02 + 0.3 * rng_uniform(&r);
            for (int y = 0; y < m->H; y++)
                for (int x = 0; x < m->W; x++) {
                    double e = pow((y - cy) / ry, 2) + pow((x - cx) / rx, 2);
                    if (e < 1) mask[(long)y * m->W + x] = 1;
                    if (e < 4) map[(long)y * m->W + x] += (float)(amp * exp(-e));
                }
        }
        m->scores[i] = postproc_image_score(map, m->H, m->W, 16, 2);
        m->cls[i] = sn_strdup("bench");
        m->path[i] = sn_strdup("synthetic");
    }
}

static void bench_alloc(struct maps_file *m)
{
    memset(m, 0, sizeof *m);
    m->N = BENCH_N, m->H = m->W = BENCH_SIDE;
    long hw = (long)m->H * m->W;
    m->maps = sn_malloc(sizeof(float) * (size_t)hw * m->N);
    m->masks = sn_malloc((size_t)hw * m->N);
    m->scores = sn_malloc(sizeof(float) * (size_t)m->N);
    m->labels = sn_malloc((size_t)m->N);
    m->cls = sn_calloc((size_t)m->N, sizeof(char *));
    m->path = sn_calloc((size_t)m->N, sizeof(char *));
    snprintf(m->file, sizeof m->file, "(synthetic, in memory)");
}

/* Median seconds of computing the table of m. */
static double bench_time(struct maps_file *m, struct metric_table *t)
{
    double secs[BENCH_REPS];
    for (int k = 0; k < BENCH_REPS; k++) {
        double t0 = sn_now();
        if (metrics_compute(m, METRICS_FPR_LIMIT, t)) sn_fatal("%s", sn_last_error());
        secs[k] = sn_now() - t0;
        if (k < BENCH_REPS - 1) metric_table_free(t);
    }
    return bench_median(secs, BENCH_REPS);
}

/* The same class through a maps file: write it, then time read + compute. */
static double bench_file(const struct maps_file *m)
{
    char path[256];
    snprintf(path, sizeof path, "/tmp/snarm-bench-metrics-%ld.h5", (long)getpid());
    long hw = (long)m->H * m->W;
    struct maps_writer *w;
    if (maps_writer_open(path, m->N, m->H, m->W, "float32", 0, NULL, &w))
        sn_fatal("%s", sn_last_error());
    for (int i = 0; i < m->N; i++)
        if (maps_writer_put(w, i, m->maps + i * hw, m->masks + i * hw, m->scores[i],
                            m->labels[i], m->cls[i], m->path[i], NULL))
            sn_fatal("%s", sn_last_error());
    if (maps_writer_finish(w)) sn_fatal("%s", sn_last_error());

    double t0 = sn_now();
    struct maps_file f;
    struct metric_table t;
    if (maps_open(path, &f) || metrics_compute(&f, METRICS_FPR_LIMIT, &t))
        sn_fatal("%s", sn_last_error());
    double secs = sn_now() - t0;
    metric_table_free(&t);
    maps_file_free(&f);
    unlink(path);
    return secs;
}

int bench_metrics(int argc, char **argv)
{
    struct maps_file m;
    struct metric_table t;
    bench_alloc(&m);
    bench_fill(&m);
    long pixels = (long)m.N * m.H * m.W;
    log_set_level(LOG_WARN); /* the per-class progress line would be timed too */
    double secs = bench_time(&m, &t);
    const struct metric_row *row = &t.rows[0];
    printf("metrics: %d maps of %d x %d (%ld pixels), %d threads: %.3f s "
           "(median of %d)\n",
           m.N, m.H, m.W, pixels, omp_get_max_threads(), secs, BENCH_REPS);
    printf("  P-AP %.4f PRO %.4f P-AUROC %.4f I-AUROC %.4f\n", row->p_ap, row->pro,
           row->p_auroc, row->i_auroc);
    double with_file = bench_file(&m);
    printf("  from a maps file (read + compute): %.3f s\n", with_file);
    printf("RESULT metrics seconds=%.3f pixels=%ld threads=%d file_seconds=%.3f\n", secs,
           pixels, omp_get_max_threads(), with_file);
    metric_table_free(&t);
    maps_file_free(&m);
    return CLI_OK;
}
