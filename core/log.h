/*
 * log.h - a small levelled logger.
 *
 * Each line carries the wall-clock time, the rank and the level:
 *   2026-12-03 14:02:11 [r0] info  extracting features: bottle train (209 images)
 * Messages below the current level are dropped before they are formatted.
 * The level comes from log_set_level() or the SNARM_LOG environment variable
 * (error, warn, info, debug). Progress lines are printed by rank 0 only.
 */
#ifndef SNARM_LOG_H
#define SNARM_LOG_H

#include "common.h"

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info" or "debug"; returns -1 if none matches. */
int log_level_parse(const char *name);
void log_set_rank(int rank);
/* Route log output to a stream (stderr by default). */
void log_set_stream(FILE *f);

void log_at(enum log_level level, const char *fmt, ...) SN_PRINTF(2, 3);
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)                                                           \
    do {                                                                        \
        if (log_get_level() >= LOG_WARN) log_at(LOG_WARN, __VA_ARGS__);         \
    } while (0)
#define log_info(...)                                                           \
    do {                                                                        \
        if (log_get_level() >= LOG_INFO) log_at(LOG_INFO, __VA_ARGS__);         \
    } while (0)
#define log_debug(...)                                                          \
    do {                                                                        \
        if (log_get_level() >= LOG_DEBUG) log_at(LOG_DEBUG, __VA_ARGS__);       \
    } while (0)

/*
 * Progress of a long loop: prints "what: done/total (pct) rate unit/s,
 * eta" at most once per interval seconds, and once at the end.
 */
struct log_progress {
    const char *what;
    const char *unit;
    long total;
    long done;
    double start;
    double last;
    double interval;
    long printed; /* done at the last printed line */
};

void log_progress_begin(struct log_progress *p, const char *what, const char *unit,
                        long total);
void log_progress_step(struct log_progress *p, long n);
void log_progress_end(struct log_progress *p);

#endif
