/*
 * snarm - train and evaluate Self-Navigated Residual Mamba anomaly detectors.
 * main() only finds the subcommand and hands it the arguments.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_command commands[] = {
    {"version", "print the version and the build's features", cmd_version},
    {"bench", "benchmarks against peers measured in the same run", cmd_bench},
    {"config", "print the fully resolved configuration of a YAML file", cmd_config},
    {"datasets", "list a dataset root's classes and split counts", cmd_datasets},
    {"demo-data", "write the built-in generated demo dataset", cmd_demo_data},
    {"metrics", "P-AP, PRO, P-AUROC, I-AUROC tables from maps files", cmd_metrics},
    {"render", "pictures of stored anomaly maps with an index page", cmd_render},
    {"run", "run a sweep of units (under mpirun or srun for many ranks)", cmd_run},
    {"classify", "top-5 ImageNet classes of images with a ViT classifier", cmd_classify},
    {"report", "one Markdown page of a run's metrics and stage times", cmd_report},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: snarm <command> [options]\n\n"
                 "SNARM (Self-Navigated Residual Mamba) industrial anomaly detection.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < SN_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nEvery command answers --help. Exit status: 0 success, "
                 "1 bad input or configuration, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EUSAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version")) name = "version";
    opterr = 0; /* each command names a refused option itself (cli_bad_option) */
    for (size_t i = 0; i < SN_ARRAY_LEN(commands); i++)
        if (!strcmp(commands[i].name, name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "snarm: unknown command '%s'\n\n", name);
    usage(stderr);
    return CLI_EUSAGE;
}
