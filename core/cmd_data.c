/*
 * cmd_data.c - "snarm datasets" (what a dataset root holds) and
 * "snarm demo-data" (write the built-in generated dataset).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/dataset.h"
#include "data/demo.h"
#include "log.h"

static void datasets_help(void)
{
    printf("usage: snarm datasets ROOT [--format auto|mvtec|mvtec3d|visa] [--verify]\n\n"
           "List the classes of a dataset root with their split counts: train images,\n"
           "test good, test defective (per defect type) and defective images whose mask\n"
           "is empty (allowed; each is named). Every problem (missing mask, mask of\n"
           "another size than its image, unreadable file, empty split) is reported at\n"
           "once.\n\n"
           "Layouts:\n"
           "  mvtec    CLASS/train/good, CLASS/test/<defect|good>,\n"
           "           CLASS/ground_truth/<defect>/<name>_mask.png\n"
           "  mvtec3d  the same with rgb/ image folders and gt/ mask folders\n"
           "  visa     ROOT/split_csv/1cls.csv (object,split,label,image,mask)\n"
           "  auto     (default) visa if that csv exists, mvtec3d if rgb/ folders, else "
           "mvtec\n"
           "Image files: .png, .jpg, .jpeg (any case). Masks: value != 0 is defect.\n\n"
           "options:\n"
           "  --format F   the layout (default auto)\n"
           "  --verify     also decode every image fully (default: headers only)\n"
           "  --log LEVEL  error, warn, info or debug\n");
}

/* "broken_large 20, broken_small 22" for one class. */
static void defect_counts(const struct ds_class *c, char *out, size_t cap)
{
    const char *names[256];
    int n = dataset_defect_types(c, names, 256);
    size_t len = 0;
    out[0] = 0;
    for (int k = 0; k < n && len < cap; k++) {
        int count = 0;
        for (int i = 0; i < c->n_test; i++)
            count += !strcmp(c->test[i].defect, names[k]);
        len += (size_t)snprintf(out + len, cap - len, "%s%s %d", k ? ", " : "", names[k],
                                count);
    }
}

static void datasets_print(const struct ds_dataset *ds)
{
    char defects[2048];
    int tot[4] = {0, 0, 0, 0};
    printf("dataset %s (%s layout, %d class%s) at %s\n\n", ds->name, ds->format,
           ds->n_classes, ds->n_classes == 1 ? "" : "es", ds->root);
    printf("%-20s %6s %9s %11s %11s  %s\n", "class", "train", "test good", "test defect",
           "empty masks", "defect types");
    for (int i = 0; i < ds->n_classes; i++) {
        const struct ds_class *c = &ds->classes[i];
        defect_counts(c, defects, sizeof defects);
        printf("%-20s %6d %9d %11d %11d  %s\n", c->name, c->n_train, c->n_test_good,
               c->n_test_defect, c->n_empty_masks, defects);
        tot[0] += c->n_train;
        tot[1] += c->n_test_good;
        tot[2] += c->n_test_defect;
        tot[3] += c->n_empty_masks;
    }
    if (ds->n_classes > 1)
        printf("%-20s %6d %9d %11d %11d\n", "total", tot[0], tot[1], tot[2], tot[3]);

    /* Every defective image has a readable mask of its size, or open failed. */
    printf("\nall %d masks found, readable and of their image's size\n", tot[2]);
    if (!tot[3]) return;
    printf("%d defective image%s with an empty mask (kept; no defect pixel to find):\n",
           tot[3], tot[3] == 1 ? "" : "s");
    for (int i = 0; i < ds->n_classes; i++)
        for (int k = 0; k < ds->classes[i].n_test; k++)
            if (ds->classes[i].test[k].empty_mask)
                printf("  %s (mask %s)\n", ds->classes[i].test[k].path,
                       ds->classes[i].test[k].mask_path);
}

int cmd_datasets(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, 0, 'f'},
                                         {"verify", no_argument, 0, 'v'},
                                         {"log", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *format = "auto";
    int verify = 0, c, st;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            datasets_help();
            return CLI_OK;
        }
        if (c == 'f')
            format = optarg;
        else if (c == 'v')
            verify = 1;
        else if (c == 'l' && (st = cli_set_log("datasets", optarg)))
            return st;
        else if (c == '?')
            return cli_bad_option("datasets", argv);
    }
    if (argc - optind != 1) return cli_usage("datasets", "expects one dataset ROOT");
    if (strcmp(format, "auto") && strcmp(format, "mvtec") && strcmp(format, "mvtec3d") &&
        strcmp(format, "visa"))
        return cli_usage("datasets", "--format expects auto, mvtec, mvtec3d or visa, got '%s'",
                         format);

    struct ds_dataset ds;
    st = verify ? dataset_open_decoded(argv[optind], format, &ds)
                : dataset_open(argv[optind], format, &ds);
    if (st != SN_OK) return cli_fail();
    datasets_print(&ds);
    if (verify) printf("every image decoded\n");
    dataset_free(&ds);
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */

static void demo_help(void)
{
    printf("usage: snarm demo-data DIR [--seed N]\n\n"
           "Write the built-in generated dataset into DIR in the MVTec AD layout:\n"
           "two products, 'weave' (a woven texture) and 'disc' (a shaded metal disc\n"
           "on a plain background), 256 x 256 RGB PNG; per product 20 train/good,\n"
           "6 test/good and 4 test images for each of scratch, spot and missing,\n"
           "with exact 0/255 masks. The same seed writes the same bytes. It shows\n"
           "that the pipeline runs; real benchmarks need real data.\n\n"
           "DIR must not exist, unless it is a complete demo dataset of the same seed\n"
           "(then nothing is written). A killed run leaves no partial DIR.\n\n"
           "options:\n"
           "  --seed N     base seed (default 1)\n"
           "  --log LEVEL  error, warn, info or debug\n");
}

int cmd_demo_data(int argc, char **argv)
{
    static const struct option opts[] = {{"seed", required_argument, 0, 's'},
                                         {"log", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long seed = 1;
    int c, st;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            demo_help();
            return CLI_OK;
        }
        if (c == 's' && (st = cli_parse_long("demo-data", "--seed", optarg, &seed)))
            return st;
        if (c == 'l' && (st = cli_set_log("demo-data", optarg))) return st;
        if (c == '?') return cli_bad_option("demo-data", argv);
    }
    if (argc - optind != 1) return cli_usage("demo-data", "expects one output DIR");
    if (seed < 0) return cli_usage("demo-data", "--seed must be >= 0");
    if (demo_write(argv[optind], (uint64_t)seed) != SN_OK) return cli_fail();
    return CLI_OK;
}
