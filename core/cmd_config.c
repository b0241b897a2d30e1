#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: snarm config [FILE.yaml] [--set section.key=value]...\n\n"
            "Print the fully resolved configuration: every default of the method,\n"
            "overridden by FILE and then by each --set. Without FILE, the defaults.\n\n"
            "options:\n"
            "  --set K=V   override one key (lists as [a, b])\n"
            "  -h, --help  this help\n");
}

/* Apply "section.key=value" overrides given on the command line. */
int cli_apply_sets(struct sn_config *cfg, int n, char **sets)
{
    for (int i = 0; i < n; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", sets[i]);
        char *eq = strchr(buf, '=');
        if (!eq) return sn_error("--set expects section.key=value, got '%s'", sets[i]);
        *eq = 0;
        const char *v = eq + 1;
        if (config_is_null(v))
            return sn_error("--set %s: '%s' is null; give a value, or leave the key out for "
                            "its default",
                            buf, v);
        if (config_set(cfg, buf, v)) return SN_EUSER;
    }
    return config_validate(cfg);
}

int cmd_config(int argc, char **argv)
{
    static const struct option opts[] = {
        {"set", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'}, {0}};
    char *sets[64];
    int nsets = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return CLI_OK;
        }
        if (ch != 's') return cli_bad_option("config", argv);
        if (nsets == 64) return cli_usage("config", "too many --set options");
        sets[nsets++] = optarg;
    }
    if (argc - optind > 1) return cli_usage("config", "takes at most one FILE");

    static struct sn_config cfg;
    config_defaults(&cfg);
    /* cli_apply_sets() checks across keys once the overrides are in */
    if (optind < argc && config_read(&cfg, argv[optind])) return cli_fail();
    if (cli_apply_sets(&cfg, nsets, sets)) return cli_fail();
    config_print(&cfg, stdout);
    return CLI_OK;
}
