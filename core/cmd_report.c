/*
 * snarm report RUN_DIR... --out FILE.md: one Markdown page for finished runs,
 * built from what its units stored (metrics.csv, timing.tsv, the maps
 * files' attributes): the metrics of every unit in the paper's order, the
 * time per stage, the backbone (and whether it was pretrained), the machine
 * and the command that produced the run.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "maps.h"

#define REPORT_MAX_UNITS 4096
#define REPORT_MAX_RUNS 16

struct report_unit {
    char id[512];
    char backbone[256];
    char metrics[8192];  /* metrics.csv as read */
    double stage[5];     /* extract, bank, train, predict, metrics */
    double ips;          /* prediction images per second */
    long n_test, n_train;
};

struct report_run {
    const char *dir;
    char backbone[256];
    int n;
    struct report_unit *u;
};

/* nftw has no user pointer: the run being scanned. */
static struct {
    char units_dir[2048];
    struct report_run *run;
} g_scan;

static void read_timing(const char *dir, struct report_unit *u)
{
    char path[2300], line[256];
    snprintf(path, sizeof path, "%s/timing.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    static const char *names[] = {"extract", "bank", "train", "predict", "metrics"};
    while (fgets(line, sizeof line, f)) {
        char key[64];
        double v;
        if (sscanf(line, "%63s %lf", key, &v) != 2) {
            if (sscanf(line, "# %63s %lf", key, &v) != 2) continue;
            if (!strcmp(key, "train_samples")) u->n_train = (long)v;
            if (!strcmp(key, "test_images")) u->n_test = (long)v;
            if (!strcmp(key, "predict_images_per_second")) u->ips = v;
            continue;
        }
        for (int i = 0; i < 5; i++)
            if (!strcmp(key, names[i])) u->stage[i] = v;
    }
    fclose(f);
}

/* nftw callback: every folder holding a metrics.csv is a finished unit. */
static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    if (type != FTW_F || strcmp(path + ftw->base, "metrics.csv")) return 0;
    struct report_run *r = g_scan.run;
    if (r->n == REPORT_MAX_UNITS) return 1;
    struct report_unit *u = &r->u[r->n++];
    memset(u, 0, sizeof *u);
    char dir[2048];
    snprintf(dir, sizeof dir, "%.*s", ftw->base - 1, path);
    size_t skip = strlen(g_scan.units_dir) + 1;
    snprintf(u->id, sizeof u->id, "%.511s", strlen(dir) > skip ? dir + skip : dir);
    size_t n = 0;
    char *text = sn_read_file(path, &n);
    if (text) snprintf(u->metrics, sizeof u->metrics, "%s", text);
    sn_free(text);
    read_timing(dir, u);

    char maps[2300];
    struct maps_file m;
    snprintf(maps, sizeof maps, "%s/maps.h5", dir);
    if (maps_open(maps, &m) == SN_OK) snprintf(u->backbone, sizeof u->backbone, "%s",
                                               m.backbone);
    maps_file_free(&m);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct report_unit *)a)->id, ((const struct report_unit *)b)->id);
}

static void machine_line(FILE *out)
{
    char model[256] = "unknown processor", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            snprintf(model, sizeof model, "%s", c + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
    struct utsname un;
    uname(&un);
    fprintf(out, "- machine: %s, %ld logical cores, %s %s\n", model,
            sysconf(_SC_NPROCESSORS_ONLN), un.sysname, un.machine);
}

/* One class's row of a unit's metrics.csv: P-AP, PRO, P-AUROC, I-AUROC.
 * row < 0 asks for the row named cls; returns the number of rows seen or,
 * when found, 1 with the row's class in cls_out. */
static int metric_row(const struct report_unit *u, int row, const char *cls, char *cls_out,
                      double v[4])
{
    /* A unit of one class has a mean row equal to that class's: skip it. */
    int classes = -2; /* header and mean */
    for (const char *p = u->metrics; *p; p++) classes += *p == '\n';

    char buf[8192];
    snprintf(buf, sizeof buf, "%s", u->metrics);
    char *save = NULL;
    int i = -1; /* the header is row -1 */
    for (char *ln = strtok_r(buf, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save), i++) {
        char c[128];
        if (i < 0 || sscanf(ln, "%127[^,],%lf,%lf,%lf,%lf", c, &v[0], &v[1], &v[2], &v[3]) != 5)
            continue;
        if (classes == 1 && !strcmp(c, "mean")) continue;
        if (row >= 0 ? i == row : !strcmp(c, cls ? cls : "")) {
            if (cls_out) snprintf(cls_out, 128, "%s", c);
            return 1;
        }
    }
    return 0;
}

/* The unit id with its method component (the fourth) replaced. */
static int swap_method(const char *id, const char *from, const char *to, char *out, size_t cap)
{
    char parts[8][128];
    int n = 0;
    const char *p = id;
    while (n < 8) {
        size_t len = strcspn(p, "/");
        snprintf(parts[n++], sizeof parts[0], "%.*s", (int)len, p);
        if (!p[len]) break;
        p += len + 1;
    }
    if (n < 5 || strcmp(parts[3], from)) return 0;
    snprintf(parts[3], sizeof parts[3], "%s", to);
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s", i ? "/" : "",
                                 parts[i]);
    return used < cap;
}

static const struct report_unit *find_unit(const struct report_run *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->u[i].id, id)) return &r->u[i];
    return NULL;
}

/* SNARM next to the PatchCore baseline of the same run, setting, class and
 * seed: one row per class, the difference in points. */
static void comparison(FILE *out, const struct report_run *runs, int nruns)
{
    int rows = 0;
    for (int k = 0; k < nruns; k++) {
        const struct report_run *r = &runs[k];
        for (int i = 0; i < r->n; i++) {
            char peer_id[512], cls[128];
            const struct report_unit *s = &r->u[i], *pc;
            if (!swap_method(s->id, "snarm", "patchcore", peer_id, sizeof peer_id)) continue;
            if (!(pc = find_unit(r, peer_id))) continue;
            double a[4], b[4];
            for (int row = 0; metric_row(s, row, NULL, cls, a); row++) {
                if (!metric_row(pc, -1, cls, NULL, b)) continue;
                if (!rows++)
                    fprintf(out,
                            "\n## SNARM against the PatchCore baseline (percent)\n\n"
                            "Same backbone, features and bank; each cell is SNARM / "
                            "PatchCore, then SNARM minus PatchCore in points.\n\n"
                            "| backbone | unit | class | P-AP | PRO | P-AUROC | I-AUROC |\n"
                            "|---|---|---|---|---|---|---|\n");
                fprintf(out, "| %.*s | %s | %s |", (int)strcspn(r->backbone, ","), r->backbone,
                        s->id, cls);
                for (int m = 0; m < 4; m++) {
                    double diff = 100 * (a[m] - b[m]);
                    if (fabs(diff) < 0.05) diff = 0; /* no "-0.0" */
                    fprintf(out, " %.1f / %.1f (%+.1f) |", 100 * a[m], 100 * b[m], diff);
                }
                fputc('\n', out);
            }
        }
    }
}

static void run_section(FILE *out, const struct report_run *r, int titled)
{
    if (titled) fprintf(out, "\n## Run `%s`\n\n", r->dir);
    else fputc('\n', out);
    fprintf(out, "- backbone: %s\n", r->backbone[0] ? r->backbone : "(not recorded)");
    if (strstr(r->backbone, "RANDOM"))
        fprintf(out, "- **The backbone is randomly initialised, not pretrained: these "
                     "figures test the machinery, not the method.**\n");
    double total = 0;
    for (int i = 0; i < r->n; i++)
        for (int s = 0; s < 5; s++) total += r->u[i].stage[s];
    fprintf(out, "- %d finished unit(s); their stage times add up to %.1f minutes\n", r->n,
            total / 60);

    fprintf(out, "\n%s Metrics (percent; the paper's order)\n\n", titled ? "###" : "##");
    fprintf(out, "| unit | class | P-AP | PRO | P-AUROC | I-AUROC |\n"
                 "|---|---|---|---|---|---|\n");
    for (int i = 0; i < r->n; i++) {
        char cls[128];
        double v[4];
        for (int row = 0; metric_row(&r->u[i], row, NULL, cls, v); row++)
            fprintf(out, "| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", r->u[i].id, cls,
                    100 * v[0], 100 * v[1], 100 * v[2], 100 * v[3]);
    }

    fprintf(out, "\n%s Time per stage (seconds)\n\n"
                 "Feature extraction is cached and shared: the first unit that needs a "
                 "class's features pays for them.\n\n"
                 "| unit | extract | bank | train | predict | metrics | train samples | "
                 "test images | predict images/s |\n|---|---|---|---|---|---|---|---|---|\n",
            titled ? "###" : "##");
    for (int i = 0; i < r->n; i++) {
        const struct report_unit *u = &r->u[i];
        fprintf(out, "| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %ld | %ld | %.2f |\n", u->id,
                u->stage[0], u->stage[1], u->stage[2], u->stage[3], u->stage[4], u->n_train,
                u->n_test, u->ips);
    }
}

static void write_report(FILE *out, const struct report_run *runs, int nruns,
                         const char *title, const char *command, const char *notes)
{
    fprintf(out, "# %s\n\n", title);
    fprintf(out, "Generated by `snarm report` (snarm %s) from the maps and metrics "
                 "stored under", sn_version());
    for (int k = 0; k < nruns; k++)
        fprintf(out, "%s `%s`", k == 0 ? "" : k == nruns - 1 ? " and" : ",", runs[k].dir);
    fprintf(out, ".\n\n");
    if (command) fprintf(out, "Command that produced the run:\n\n```sh\n%s\n```\n\n", command);
    if (notes) fprintf(out, "%s\n\n", notes);
    machine_line(out);
    if (nruns == 1) {
        run_section(out, &runs[0], 0);
        comparison(out, runs, nruns);
        return;
    }
    comparison(out, runs, nruns);
    for (int k = 0; k < nruns; k++) run_section(out, &runs[k], 1);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: snarm report RUN_DIR... --out FILE.md [--title T] [--command C] "
            "[--notes TEXT]\n\n"
            "Write one Markdown page for one or more runs: every finished unit's metrics\n"
            "(P-AP, PRO, P-AUROC, I-AUROC), SNARM next to the PatchCore baseline of the\n"
            "same run, setting and class, the seconds per stage, the backbone and the\n"
            "machine.\n\n"
            "options:\n"
            "  --out FILE     where to write (atomically)\n"
            "  --title T      the page title\n"
            "  --command C    the command that produced the run, shown verbatim\n"
            "  --notes TEXT   a paragraph placed under the command\n"
            "  -h, --help     this help\n");
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"title", required_argument, NULL, 't'},
                                         {"command", required_argument, NULL, 'c'},
                                         {"notes", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    const char *out = NULL, *title = "snarm run report", *command = NULL, *notes = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(stdout); return CLI_OK;
        case 'o': out = optarg; break;
        case 't': title = optarg; break;
        case 'c': command = optarg; break;
        case 'n': notes = optarg; break;
        default: return cli_bad_option("report", argv);
        }
    }
    int nruns = argc - optind;
    if (nruns < 1) return cli_usage("report", "expects at least one RUN_DIR");
    if (nruns > REPORT_MAX_RUNS) return cli_usage("report", "at most 16 RUN_DIRs");
    if (!out) return cli_usage("report", "--out FILE.md is required");
    for (int i = 1; i < nruns; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(argv[optind + i], argv[optind + j]))
                return cli_usage("report", "RUN_DIR %s is given twice", argv[optind + i]);

    struct report_run runs[REPORT_MAX_RUNS];
    memset(runs, 0, sizeof runs);
    int rc = 0, units = 0;
    for (int k = 0; k < nruns && !rc; k++) {
        struct report_run *r = &runs[k];
        r->dir = argv[optind + k];
        snprintf(g_scan.units_dir, sizeof g_scan.units_dir, "%s/units", r->dir);
        if (!sn_dir_exists(g_scan.units_dir)) {
            sn_error("%s has no units folder: not a run folder", r->dir);
            rc = 1;
            break;
        }
        r->u = sn_calloc(REPORT_MAX_UNITS, sizeof *r->u);
        g_scan.run = r;
        nftw(g_scan.units_dir, visit, 16, FTW_PHYS);
        qsort(r->u, (size_t)r->n, sizeof *r->u, by_id);
        if (r->n == 0) {
            /* an empty page would replace a good one without a word */
            sn_error("%s holds no finished unit (no units/*/metrics.csv); %s is left as "
                     "it was",
                     r->dir, out);
            rc = 1;
            break;
        }
        for (int i = 0; i < r->n && !r->backbone[0]; i++)
            snprintf(r->backbone, sizeof r->backbone, "%s", r->u[i].backbone);
        units += r->n;
    }
    if (!rc) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        write_report(mem, runs, nruns, title, command, notes);
        fclose(mem);
        rc = sn_write_file_atomic(out, text, len);
        free(text);
    }
    for (int k = 0; k < nruns; k++) sn_free(runs[k].u);
    if (rc) return cli_fail();
    log_info("report: %d unit(s) of %d run(s) written to %s", units, nruns, out);
    return CLI_OK;
}
