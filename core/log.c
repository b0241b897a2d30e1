#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum log_level g_level = LOG_INFO;
static int g_level_from_env;
static int g_rank;
static FILE *g_stream;

static void level_from_env(void)
{
    if (g_level_from_env) return;
    g_level_from_env = 1;
    const char *e = getenv("SNARM_LOG");
    int l = e ? log_level_parse(e) : -1;
    if (l >= 0) g_level = (enum log_level)l;
}

void log_set_level(enum log_level level)
{
    g_level_from_env = 1;
    g_level = level;
}

enum log_level log_get_level(void)
{
    level_from_env();
    return g_level;
}

int log_level_parse(const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

void log_set_rank(int rank)
{
    g_rank = rank;
}

void log_set_stream(FILE *f)
{
    g_stream = f;
}

void log_at(enum log_level level, const char *fmt, ...)
{
    static const char *tag[] = {"error", "warn ", "info ", "debug"};
    if (level > log_get_level()) return;

    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);

    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    FILE *out = g_stream ? g_stream : stderr;
    fprintf(out, "%s [r%d] %s %s\n", stamp, g_rank, tag[level], msg);
    fflush(out);
}

static void fmt_duration(char *out, size_t cap, double s)
{
    if (s < 0 || s > 1e7) {
        snprintf(out, cap, "?");
    } else if (s < 60) {
        snprintf(out, cap, "%.0fs", s);
    } else if (s < 3600) {
        snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    } else {
        snprintf(out, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
    }
}

static void progress_print(struct log_progress *p, double now)
{
    p->printed = p->done;
    double el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], took[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    fmt_duration(took, sizeof took, el);
    double pct = p->total > 0 ? 100.0 * (double)p->done / (double)p->total : 100;
    log_info("%s: %ld/%ld (%.0f%%) %.2f %s/s, %s elapsed, %s left", p->what, p->done,
             p->total, pct, rate, p->unit, took, eta);
}

void log_progress_begin(struct log_progress *p, const char *what, const char *unit,
                        long total)
{
    p->what = what;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->start = p->last = sn_now();
    p->interval = 10.0;
    p->printed = -1;
    const char *e = getenv("SNARM_PROGRESS_SECONDS");
    if (e) p->interval = atof(e);
}

void log_progress_step(struct log_progress *p, long n)
{
    p->done += n;
    if (sn_rank() != 0) return;
    double now = sn_now();
    if (now - p->last < p->interval) return;
    p->last = now;
    progress_print(p, now);
}

void log_progress_end(struct log_progress *p)
{
    if (sn_rank() == 0 && p->printed != p->done) progress_print(p, sn_now());
}
