#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int cli_fail(void)
{
    fprintf(stderr, "snarm: error: %s\n", sn_last_error());
    return CLI_EUSER;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "snarm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'snarm %s --help'.\n", cmd);
    va_end(ap);
    return CLI_EUSAGE;
}

int cli_bad_option(const char *cmd, char *const *argv)
{
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    if (optopt && !strncmp(word, "--", 2))
        return cli_usage(cmd, "option '%s' needs a value", word);
    if (optopt && word[0] == '-' && word[1] == optopt && !word[2])
        return cli_usage(cmd, "unknown option '%s', or it needs a value", word);
    if (optopt) return cli_usage(cmd, "unknown option '-%c' in '%s'", optopt, word);
    return cli_usage(cmd, "unknown option '%s'", word);
}

int cli_parse_long(const char *cmd, const char *opt, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return cli_usage(cmd, "%s expects an integer, got '%s'", opt, s);
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return cli_usage(cmd, "%s expects a number, got '%s'", opt, s);
    *out = v;
    return 0;
}

int cli_set_log(const char *cmd, const char *level)
{
    int l = log_level_parse(level);
    if (l < 0)
        return cli_usage(cmd, "--log expects error, warn, info or debug, got '%s'",
                         level);
    log_set_level((enum log_level)l);
    return 0;
}
