/*
 * bench_bank.c - "snarm bench knn" and "snarm bench coreset".
 *
 * knn: one image's search (2401 queries, top-3) against banks of uniform
 * random vectors, 10^4 and 10^5 of them at 512 and 1024 dims, next to the
 * bare matrix product (one cblas_sgemm of the same shape), faiss's
 * IndexFlatL2 (tests/bench_knn_faiss.cpp, compiled here when faiss is
 * installed) and torch cdist + topk (tests/bench_knn.py). Medians of the
 * repetitions, all measured in this run.
 *
 * coreset: 10^4 of 2 x 10^5 features of 1024 dims projected to 128, next to
 * PatchCore's loop and a tight torch loop (tests/bench_coreset.py) fed the
 * same features, projection and start point; the selections are compared.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "common.h"
#include "coreset.h"
#include "knn.h"
#include "log.h"
#include "rng.h"

#define BENCH_QUERIES 2401 /* one image: a 49 x 49 grid */
#define BENCH_K 3

/* Uniform values in [-1, 1): the timings do not depend on the values. */
static void fill_uniform(float *x, long n, uint64_t seed)
{
    struct rng_state r;
    rng_seed(&r, seed, 7);
    for (long i = 0; i < n; i++)
        x[i] = (float)((double)(rng_next(&r) >> 40) * 0x1.0p-23 - 1.0);
}

/* Run a command and return the number on its "TIME <seconds>" line. */
static double peer_seconds(const char *cmd)
{
    log_info("peer: %s", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[1024];
    double secs = -1;
    while (fgets(line, sizeof line, p))
        if (!strncmp(line, "TIME ", 5))
            secs = atof(line + 5);
        else
            fputs(line, stderr);
    int rc = pclose(p);
    return rc == 0 ? secs : -1;
}

/* Compile the faiss peer into a temporary file; 0 when faiss is absent. */
static int faiss_peer_build(char *exe, size_t cap)
{
    if (!sn_file_exists("/usr/include/faiss/IndexFlat.h")) {
        log_warn("faiss headers not found: no faiss peer");
        return 0;
    }
    snprintf(exe, cap, "/tmp/snarm-faiss-peer.%ld", (long)getpid());
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "c++ -O3 -march=native -fopenmp %s/tests/bench_knn_faiss.cpp"
             " -o %s -lfaiss -lblas -llapack",
             SNARM_SOURCE_DIR, exe);
    log_info("building the faiss peer: %s", cmd);
    if (system(cmd) != 0) {
        log_warn("the faiss peer did not build: no faiss peer");
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* kNN                                                                      */

struct knn_case {
    int d;
    long nb;
    double ours, gemm, faiss, torch; /* seconds per image; < 0: not measured */
};

static void time_knn_case(struct knn_case *c, int reps, int peers, const char *faiss)
{
    long nb = c->nb, nq = BENCH_QUERIES;
    int d = c->d;
    float *bank = sn_aligned(sizeof(float) * (size_t)nb * d);
    float *q = sn_aligned(sizeof(float) * (size_t)nq * d);
    float *bn = sn_aligned(sizeof(float) * (size_t)nb);
    float *full = sn_aligned(sizeof(float) * (size_t)nq * nb);
    int *idx = sn_malloc(sizeof(int) * (size_t)nq * BENCH_K);
    float *dist = sn_malloc(sizeof(float) * (size_t)nq * BENCH_K);
    fill_uniform(bank, nb * d, 1);
    fill_uniform(q, nq * d, 2);
    knn_norms(bank, nb, d, bn); /* part of building the bank, not of a search */

    /* ours and the bare product, interleaved, one warm-up each; the best
     * repetition, the one least disturbed by other work on the machine */
    c->ours = c->gemm = INFINITY;
    for (int r = 0; r <= reps; r++) {
        double t0 = sn_now();
        SN_ASSERT(knn_search(bank, bn, nb, d, q, nq, BENCH_K, idx, dist) == SN_OK);
        double t1 = sn_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nb, d, -2.0f,
                    q, d, bank, d, 0.0f, full, (int)nb);
        double t2 = sn_now();
        if (r) c->ours = fmin(c->ours, t1 - t0), c->gemm = fmin(c->gemm, t2 - t1);
    }
    sn_free(bank), sn_free(q), sn_free(bn), sn_free(full), sn_free(idx), sn_free(dist);

    /* the peers, on data of the same shape */
    char args[256], cmd[4400];
    snprintf(args, sizeof args, "%ld %d %ld %d %d", nb, d, nq, BENCH_K, reps);
    c->faiss = -1;
    if (faiss) {
        snprintf(cmd, sizeof cmd, "%s %s", faiss, args);
        c->faiss = peer_seconds(cmd);
    }
    c->torch = peers ? bench_python_seconds("tests/bench_knn.py", args) : -1;
}

static void print_knn_case(const struct knn_case *c)
{
    printf("knn d=%-4d bank=%-6ld  snarm %8.1f ms   gemm %8.1f ms (x%.2f)", c->d, c->nb,
           c->ours * 1e3, c->gemm * 1e3, c->gemm / c->ours);
    if (c->faiss > 0)
        printf("   faiss %8.1f ms (x%.2f)", c->faiss * 1e3, c->faiss / c->ours);
    if (c->torch > 0)
        printf("   torch %8.1f ms (x%.2f)", c->torch * 1e3, c->torch / c->ours);
    printf("\n");
    fflush(stdout);
}

/* Peer time over ours, summed over the cases of dimension d. */
static double knn_ratio(const struct knn_case *c, int n, int d, int which)
{
    double ours = 0, peer = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].d != d) continue;
        double p = which == 0 ? c[i].gemm : which == 1 ? c[i].faiss : c[i].torch;
        if (p < 0) return NAN;
        ours += c[i].ours;
        peer += p;
    }
    return ours > 0 ? peer / ours : NAN;
}

static void knn_usage(FILE *out)
{
    fprintf(out,
            "usage: snarm bench knn [--reps N] [--quick] [--no-peers]\n\n"
            "One image's top-%d search (%d queries) against banks of 10^4 and\n"
            "10^5 vectors at 512 and 1024 dims, next to the bare matrix product,\n"
            "faiss IndexFlatL2 and torch cdist + topk. --quick: 10^4 only.\n",
            BENCH_K, BENCH_QUERIES);
}

int bench_knn(int argc, char **argv)
{
    static const struct option opts[] = {{"reps", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"no-peers", no_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long reps = 5;
    int quick = 0, peers = 1, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'r' && cli_parse_long("bench knn", "--reps", optarg, &reps)) return 2;
        if (o == 'q') quick = 1;
        if (o == 'n') peers = 0;
        if (o == 'h') return knn_usage(stdout), CLI_OK;
        if (o == '?') return cli_bad_option("bench knn", argv);
    }
    if (reps < 1 || reps > 64) return cli_usage("bench knn", "--reps must be 1..64");

    char exe[256];
    int have_faiss = peers && faiss_peer_build(exe, sizeof exe);
    struct knn_case cases[4] = {{.d = 512, .nb = 10000},
                                {.d = 512, .nb = 100000},
                                {.d = 1024, .nb = 10000},
                                {.d = 1024, .nb = 100000}};
    int n = 0;
    for (int i = 0; i < 4; i++) {
        if (quick && cases[i].nb > 10000) continue;
        cases[n] = cases[i];
        time_knn_case(&cases[n], (int)reps, peers, have_faiss ? exe : NULL);
        print_knn_case(&cases[n++]);
    }
    if (have_faiss) unlink(exe);

    double ms4 = NAN, ms5 = NAN;
    for (int i = 0; i < n; i++)
        if (cases[i].d == 1024)
            *(cases[i].nb == 10000 ? &ms4 : &ms5) = cases[i].ours * 1e3;
    printf(
        "RESULT knn ms_1e4=%.1f ms_1e5=%.1f vs_gemm=%.3f vs_faiss=%.3f vs_torch=%.3f\n",
        ms4, ms5, knn_ratio(cases, n, 1024, 0), knn_ratio(cases, n, 1024, 1),
        knn_ratio(cases, n, 1024, 2));
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* Coreset                                                                  */

struct coreset_run {
    long n, T;
    int d, p;
    uint64_t seed;
    const long *ours;
    char xfile[256], pfile[256], sfile[256];
};

/* The features, projection and start point for the peers, as raw files. */
static int coreset_write_inputs(struct coreset_run *cr, const float *x)
{
    long pid = (long)getpid();
    snprintf(cr->xfile, sizeof cr->xfile, "/tmp/snarm-coreset-x.%ld", pid);
    snprintf(cr->pfile, sizeof cr->pfile, "/tmp/snarm-coreset-p.%ld", pid);
    snprintf(cr->sfile, sizeof cr->sfile, "/tmp/snarm-coreset-sel.%ld", pid);
    float *proj = sn_malloc(sizeof(float) * (size_t)cr->p * cr->d);
    coreset_projection(cr->d, cr->p, cr->seed, proj);
    int st = sn_write_file_atomic(cr->xfile, x, sizeof(float) * (size_t)cr->n * cr->d);
    if (st == SN_OK)
        st = sn_write_file_atomic(cr->pfile, proj, sizeof(float) * (size_t)cr->p * cr->d);
    sn_free(proj);
    return st;
}

/* Run one peer loop; prints how its selection compares with ours. */
static double coreset_peer(const struct coreset_run *cr, const char *mode)
{
    char args[1024];
    snprintf(args, sizeof args, "%s %s %ld %d %s %d %ld %ld %s", mode, cr->xfile, cr->n,
             cr->d, cr->pfile, cr->p, coreset_start(cr->n, cr->seed), cr->T, cr->sfile);
    unlink(cr->sfile);
    double t = bench_python_seconds("tests/bench_coreset.py", args);
    size_t len = 0;
    char *buf = t > 0 ? sn_read_file(cr->sfile, &len) : NULL;
    if (!buf) return -1;
    const int64_t *sel = (const int64_t *)buf;
    long n = (long)(len / sizeof(int64_t)), first = -1, same = 0;
    for (long i = 0; i < cr->T; i++) {
        int eq = i < n && sel[i] == cr->ours[i];
        same += eq;
        if (!eq && first < 0) first = i;
    }
    if (first < 0)
        printf("coreset %-9s  same selection as snarm (%ld points)\n", mode, n);
    else
        printf(
            "coreset %-9s  selections differ from position %ld on (%ld of %ld equal)\n",
            mode, first, same, cr->T);
    sn_free(buf);
    unlink(cr->sfile);
    return t;
}

static void coreset_usage(FILE *out)
{
    fprintf(
        out,
        "usage: snarm bench coreset [--n N] [--d D] [--T T] [--proj P]\n"
        "                           [--peers patchcore,torch,float64 | --no-peers]\n\n"
        "Greedy k-centre selection of T [10000] of N [200000] uniform random\n"
        "features of D [1024] dims projected to P [128], next to PatchCore's\n"
        "loop and a tight torch loop on the same inputs [patchcore,torch];\n"
        "float64 adds the torch loop in double precision, which only checks\n"
        "the selection.\n");
}

static int coreset_args(int argc, char **argv, struct coreset_run *cr, char *peers,
                        size_t cap)
{
    static const struct option opts[] = {
        {"n", required_argument, 0, 'n'},     {"d", required_argument, 0, 'd'},
        {"T", required_argument, 0, 'T'},     {"proj", required_argument, 0, 'p'},
        {"peers", required_argument, 0, 'e'}, {"no-peers", no_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    long v;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'h') return coreset_usage(stdout), -1;
        if (o == '?') return cli_bad_option("bench coreset", argv);
        if (o == 'e') snprintf(peers, cap, "%s", optarg);
        if (o == 'x') peers[0] = 0;
        if (strchr("ndTp", o) && cli_parse_long("bench coreset", "option", optarg, &v))
            return CLI_EUSAGE;
        if (o == 'n') cr->n = v;
        if (o == 'd') cr->d = (int)v;
        if (o == 'T') cr->T = v;
        if (o == 'p') cr->p = (int)v;
    }
    if (cr->n < 2 || cr->d < 1 || cr->T < 1 || cr->T >= cr->n || cr->p < 1)
        return cli_usage("bench coreset", "need N >= 2, 1 <= T < N, D and P >= 1");
    return CLI_OK;
}

int bench_coreset(int argc, char **argv)
{
    struct coreset_run cr = {.n = 200000, .T = 10000, .d = 1024, .p = 128, .seed = 42};
    char peers[64] = "patchcore,torch";
    int st = coreset_args(argc, argv, &cr, peers, sizeof peers);
    if (st) return st < 0 ? CLI_OK : st;

    /* ours: projection and greedy loop */
    float *x = sn_aligned(sizeof(float) * (size_t)cr.n * cr.d);
    fill_uniform(x, cr.n * (long)cr.d, 3);
    long *sel = sn_malloc(sizeof(long) * (size_t)cr.T), ns;
    double t0 = sn_now();
    SN_ASSERT(coreset_select(x, cr.n, cr.d, cr.T, cr.p, cr.seed, sel, &ns) == SN_OK);
    double ours = sn_now() - t0;
    printf("coreset snarm      %.2f s (%ld of %ld, %d dims projected to %d)\n", ours,
           cr.T, cr.n, cr.d, cr.p);
    fflush(stdout);
    cr.ours = sel;

    /* the peers on the same inputs */
    double tp = -1, tt = -1;
    if (peers[0] && coreset_write_inputs(&cr, x) == SN_OK) {
        if (strstr(peers, "patchcore")) tp = coreset_peer(&cr, "patchcore");
        if (strstr(peers, "torch")) tt = coreset_peer(&cr, "torch");
        if (strstr(peers, "float64")) coreset_peer(&cr, "float64");
        unlink(cr.xfile);
        unlink(cr.pfile);
    }
    if (tp > 0) printf("coreset patchcore  %.2f s (x%.2f)\n", tp, tp / ours);
    if (tt > 0) printf("coreset torch      %.2f s (x%.2f)\n", tt, tt / ours);
    printf("RESULT coreset seconds=%.2f vs_patchcore=%.3f vs_torch=%.3f\n", ours,
           tp > 0 ? tp / ours : NAN, tt > 0 ? tt / ours : NAN);
    sn_free(x);
    sn_free(sel);
    return CLI_OK;
}
