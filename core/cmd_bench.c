#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "log.h"

struct bench_entry {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    int options; /* whether it parses options of its own beyond --help */
};

static const struct bench_entry benches[] = {
    {"sgemm", "this machine's single-precision GEMM rate", bench_sgemm, 0},
    {"knn", "top-3 kNN of one image vs the bare GEMM, faiss and torch", bench_knn, 1},
    {"coreset", "greedy k-centre coreset vs PatchCore's loop and torch", bench_coreset, 1},
    {"metrics", "all four metrics on 83 maps of 392 x 392", bench_metrics, 0},
    {"vit", "ViT-B/14-reg at 392 x 392, blocks 0-8, against PyTorch", bench_vit, 1},
    {"layers", "the decoder head's dilated conv3x3, forward and backward, against PyTorch",
     bench_layers, 0},
    {"train", "one decoder training step at the defaults, against PyTorch", bench_train,
     1},
};

double bench_median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

double bench_sgemm_gflops(int m, int n, int k)
{
    float *a = sn_aligned(sizeof(float) * (size_t)m * k);
    float *b = sn_aligned(sizeof(float) * (size_t)k * n);
    float *c = sn_aligned(sizeof(float) * (size_t)m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i % 7) - 3) * 0.01f;
    for (long i = 0; i < (long)k * n; i++) b[i] = (float)((i % 5) - 2) * 0.01f;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = sn_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b,
                    n, 0.0f, c, n);
        double t = sn_now() - t0;
        if (t < best) best = t;
    }
    sn_free(a);
    sn_free(b);
    sn_free(c);
    return 2.0 * m * n * (double)k / best * 1e-9;
}

double bench_python_seconds(const char *script, const char *args)
{
    const char *py = getenv("SNARM_PYTHON");
    if (!py) py = "/usr/bin/python3";
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s/%s %s", py, SNARM_SOURCE_DIR, script,
             args ? args : "");
    log_info("peer: %s", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) {
        log_warn("cannot start %s", cmd);
        return -1;
    }
    char line[1024];
    double secs = -1;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "TIME ", 5)) secs = atof(line + 5);
        else fputs(line, stderr);
    }
    int rc = pclose(p);
    if (rc != 0 || secs < 0) {
        log_warn("peer %s gave no time (exit %d)", script, rc);
        return -1;
    }
    return secs;
}

int bench_sgemm(int argc, char **argv)
{
    int sizes[][3] = {{2401, 768, 768}, {2401, 3072, 768}, {2401, 768, 3072},
                      {1024, 1024, 1024}};
    double best = 0;
    for (size_t i = 0; i < SN_ARRAY_LEN(sizes); i++) {
        double g = bench_sgemm_gflops(sizes[i][0], sizes[i][1], sizes[i][2]);
        printf("sgemm %d x %d x %d: %.1f GFLOP/s\n", sizes[i][0], sizes[i][1],
               sizes[i][2], g);
        if (g > best) best = g;
    }
    printf("RESULT sgemm gflops=%.1f threads=%d\n", best, openblas_get_num_threads());
    return CLI_OK;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: snarm bench <benchmark> [options]\n\nbenchmarks:\n");
    for (size_t i = 0; i < SN_ARRAY_LEN(benches); i++)
        fprintf(out, "  %-10s %s\n", benches[i].name, benches[i].summary);
    fprintf(out, "\nEach prints a final line 'RESULT <name> key=value ...'.\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EUSAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < SN_ARRAY_LEN(benches); i++) {
        const struct bench_entry *b = &benches[i];
        if (strcmp(b->name, argv[1])) continue;
        if (!b->options && argc > 2) {
            if (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
                printf("usage: snarm bench %s\n\nTimes %s; takes no options.\n",
                       b->name, b->summary);
                return CLI_OK;
            }
            char cmd[64];
            snprintf(cmd, sizeof cmd, "bench %s", b->name);
            return cli_usage(cmd, "takes no options or arguments, got '%s'", argv[2]);
        }
        return b->run(argc - 1, argv + 1);
    }
    return cli_usage("bench", "unknown benchmark '%s'", argv[1]);
}
