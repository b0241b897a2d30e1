/*
 * cli.h - the snarm program's subcommands.
 *
 * Each subcommand is a function taking its own argc/argv (argv[0] is the
 * subcommand's name) and returning the process exit status:
 *   0 success, 1 a user error (bad input, bad configuration), 2 a usage error.
 * Arguments are parsed with getopt_long; every subcommand answers --help.
 * A subcommand is listed in the table in core/main.c.
 */
#ifndef SNARM_CLI_H
#define SNARM_CLI_H

#include "common.h"

#define CLI_OK 0
#define CLI_EUSER 1
#define CLI_EUSAGE 2

struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* Print "snarm: error: <last error>" and return CLI_EUSER. */
int cli_fail(void);
/* Print "snarm <cmd>: <message>" plus a pointer to --help; return CLI_EUSAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) SN_PRINTF(2, 3);
/* The usage error for the option getopt_long just refused (it returned '?';
 * main() turns getopt's own messages off): names the option as typed. */
int cli_bad_option(const char *cmd, char *const *argv);
/* Parse a whole-string integer / float option value; usage error otherwise. */
int cli_parse_long(const char *cmd, const char *opt, const char *s, long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out);
/* Common: "--log LEVEL" handling, returns 0 or a usage status. */
int cli_set_log(const char *cmd, const char *level);

/* Apply "section.key=value" overrides (the --set options), then validate. */
struct sn_config;
int cli_apply_sets(struct sn_config *cfg, int n, char **sets);

/* The subcommands. */
int cmd_version(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_datasets(int argc, char **argv);
int cmd_demo_data(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_classify(int argc, char **argv);

#endif
