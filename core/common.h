/*
 * common.h - the conventions every snarm module shares.
 *
 * Two kinds of failure exist and are kept apart:
 *
 *  - A user-fixable problem (a missing file, a bad configuration key, a mask
 *    of the wrong size) is reported with sn_error(), which records one clear
 *    message and returns SN_EUSER. Callers pass the status up unchanged; the
 *    command at the top prints the message once and exits with status 1.
 *
 *  - A broken invariant or a failing library call that no user can fix
 *    (out of memory, an HDF5 call failing on a file we just created) stops the
 *    process through one of the check macros, which name the file, line, rank
 *    and host before exiting with status 3.
 *
 * Allocation goes through sn_malloc()/sn_calloc()/sn_free(), which count the
 * bytes in use so that long jobs can log their footprint.
 */
#ifndef SNARM_COMMON_H
#define SNARM_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SN_OK 0
#define SN_EUSER (-1)

#define SN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SN_PI 3.14159265358979323846

#if defined(__GNUC__)
#define SN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SN_NORETURN __attribute__((noreturn))
#else
#define SN_PRINTF(f, a)
#define SN_NORETURN
#endif

/* Record a user-fixable error; always returns SN_EUSER. The message should
 * name the file, key or image at fault. A later call replaces the message. */
int sn_error(const char *fmt, ...) SN_PRINTF(1, 2);
/* Prefix the recorded message with more context ("reading X: <old>"). */
int sn_error_prefix(const char *fmt, ...) SN_PRINTF(1, 2);
const char *sn_last_error(void);
void sn_error_clear(void);

/* Stop the process on a broken invariant or an unrecoverable library error. */
SN_NORETURN void sn_fatal_at(const char *file, int line, const char *fmt, ...)
    SN_PRINTF(3, 4);
#define sn_fatal(...) sn_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* An assertion that stays on in release builds: shapes and invariants. */
#define SN_ASSERT(cond)                                                         \
    do {                                                                        \
        if (!(cond)) sn_fatal("assertion failed: %s", #cond);                   \
    } while (0)

/* Counting allocator. Failure to allocate is fatal (names the size). */
void *sn_malloc_at(size_t bytes, const char *file, int line);
void *sn_calloc_at(size_t n, size_t size, const char *file, int line);
void *sn_realloc_at(void *p, size_t bytes, const char *file, int line);
char *sn_strdup_at(const char *s, const char *file, int line);
void sn_free(void *p);
size_t sn_bytes_in_use(void);
size_t sn_bytes_peak(void);
#define sn_malloc(b) sn_malloc_at((b), __FILE__, __LINE__)
#define sn_calloc(n, s) sn_calloc_at((n), (s), __FILE__, __LINE__)
#define sn_realloc(p, b) sn_realloc_at((p), (b), __FILE__, __LINE__)
#define sn_strdup(s) sn_strdup_at((s), __FILE__, __LINE__)
/* 64-byte aligned, for vectorised kernels; release with sn_free(). */
void *sn_aligned_at(size_t bytes, const char *file, int line);
#define sn_aligned(b) sn_aligned_at((b), __FILE__, __LINE__)

/* File I/O check: a failing stdio call on a file we own is fatal. */
#define SN_CHECK_IO(cond, path)                                                 \
    do {                                                                        \
        if (!(cond)) sn_fatal("I/O failure on %s", (path));                    \
    } while (0)

/* The rank used in log and fatal prefixes (0 outside MPI). */
void sn_set_rank(int rank, int nranks);
int sn_rank(void);
int sn_nranks(void);

/* Wall-clock seconds from a monotonic clock. */
double sn_now(void);

/* Small string helpers. */
int sn_ends_with(const char *s, const char *suffix);
/* snprintf that treats truncation as a user error naming the context. */
int sn_path_join(char *out, size_t cap, const char *a, const char *b);
/* mkdir -p; returns SN_EUSER with a message on failure. */
int sn_mkdirs(const char *path);
int sn_file_exists(const char *path);
int sn_dir_exists(const char *path);

/* Atomic file writes: write to "<path>.tmp.<pid>", then rename over path. */
void sn_tmp_name(char *out, size_t cap, const char *path);
int sn_rename_into_place(const char *tmp, const char *path);
/* Write a whole buffer atomically. */
int sn_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file; returns NULL with sn_error() set on failure. */
char *sn_read_file(const char *path, size_t *len);

/* Version string of the framework ("0.3.0"). */
const char *sn_version(void);

#endif
