/*
 * cmd_metrics.c - `snarm metrics`: score stored maps files without re-running
 * any model (SPEC section 6).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "metrics.h"

static void metrics_usage(FILE *out)
{
    fprintf(
        out,
        "usage: snarm metrics MAPS.h5... [--out DIR] [--log LEVEL]\n\n"
        "Compute P-AP, PRO (AUPRO up to FPR %g), P-AUROC and I-AUROC per class and\n"
        "their mean from maps files (schema in core/maps.h), exactly (no binning).\n"
        "For each MAPS file NAME.h5 it writes, atomically, under DIR [results]:\n"
        "  NAME.csv  class,p_ap,pro,p_auroc,i_auroc (one row per class, then 'mean';\n"
        "            fractions with 17 significant digits, nan where undefined)\n"
        "  NAME.md   the same as a Markdown table in percent (paper order)\n"
        "and, with several files, summary.md holding every table.\n"
        "A metric that is undefined for a class (e.g. only good test images) is\n"
        "nan, reported with a warning and left out of the mean.\n\n"
        "options:\n"
        "  --out DIR     output folder (created if needed) [results]\n"
        "  --log LEVEL   error, warn, info or debug [info]\n",
        METRICS_FPR_LIMIT);
}

/* NAME of DIR/NAME.h5 (or .hdf5): the stem of the output files. */
static void file_stem(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(out, cap, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out && (!strcmp(dot, ".h5") || !strcmp(dot, ".hdf5"))) *dot = 0;
}

/* Two inputs with the same stem would overwrite each other's tables. */
static int stems_check(char **files, int n)
{
    char a[512], b[512];
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            file_stem(files[i], a, sizeof a);
            file_stem(files[j], b, sizeof b);
            if (!strcmp(a, b) || !strcmp(a, "summary"))
                return sn_error("maps files %s and %s would both write %s.csv; rename "
                                "one",
                                files[i], files[j], a);
        }
    return SN_OK;
}

/* One maps file: compute its table and write NAME.csv and NAME.md. */
static int metrics_one(const char *file, const char *dir, struct metric_table *t)
{
    struct maps_file m;
    int rc = maps_open(file, &m);
    if (!rc) rc = metrics_compute(&m, METRICS_FPR_LIMIT, t);
    maps_file_free(&m);
    if (rc) return rc;

    char stem[512], path[4096];
    file_stem(file, stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s.csv", dir, stem);
    if ((rc = metrics_write_csv(t, path))) return rc;
    snprintf(path, sizeof path, "%s/%s.md", dir, stem);
    if ((rc = metrics_write_markdown(t, 1, path))) return rc;

    const struct metric_row *mean = &t->rows[t->n_rows - 1];
    printf("%s: %d classes, %ld images: P-AP %.1f  PRO %.1f  P-AUROC %.1f  I-AUROC %.1f"
           "  -> %s/%s.{csv,md}\n",
           file, t->n_rows - 1, mean->n_images, 100 * mean->p_ap, 100 * mean->pro,
           100 * mean->p_auroc, 100 * mean->i_auroc, dir, stem);
    return SN_OK;
}

static int metrics_run(char **files, int n, const char *dir)
{
    if (stems_check(files, n) || sn_mkdirs(dir)) return SN_EUSER;
    struct metric_table *t = sn_calloc((size_t)n, sizeof *t);
    int rc = SN_OK, done = 0;
    for (; done < n && !rc; done++)
        rc = metrics_one(files[done], dir, &t[done]);
    if (!rc && n > 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/summary.md", dir);
        rc = metrics_write_markdown(t, n, path);
    }
    for (int i = 0; i < done; i++)
        metric_table_free(&t[i]);
    sn_free(t);
    return rc;
}

int cmd_metrics(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"log", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = "results";
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'h') {
            metrics_usage(stdout);
            return CLI_OK;
        }
        if (c == 'o')
            dir = optarg;
        else if (c == 'l') {
            if ((rc = cli_set_log("metrics", optarg))) return rc;
        } else {
            return cli_bad_option("metrics", argv);
        }
    }
    if (optind >= argc) return cli_usage("metrics", "give at least one maps file");
    return metrics_run(argv + optind, argc - optind, dir) ? cli_fail() : CLI_OK;
}
