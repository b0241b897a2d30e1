#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#ifndef SNARM_VERSION
#define SNARM_VERSION "0.0.0"
#endif

static _Thread_local char err_buf[4096];
static int g_rank, g_nranks = 1;

int sn_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return SN_EUSER;
}

int sn_error_prefix(const char *fmt, ...)
{
    char old[sizeof err_buf], pre[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    snprintf(err_buf, sizeof err_buf, "%.1000s: %.3000s", pre, old);
    return SN_EUSER;
}

const char *sn_last_error(void)
{
    return err_buf[0] ? err_buf : "unknown error";
}

void sn_error_clear(void)
{
    err_buf[0] = 0;
}

void sn_fatal_at(const char *file, int line, const char *fmt, ...)
{
    char host[256] = "?", msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gethostname(host, sizeof host - 1);
    fprintf(stderr, "snarm: fatal [rank %d on %s] %s:%d: %s\n", g_rank, host, file,
            line, msg);
    fflush(stderr);
    exit(3);
}

/* Allocation with a byte count kept in a header in front of the block. The
 * header is 64 bytes so that the returned pointer keeps malloc's alignment
 * and the aligned variant stays 64-byte aligned. */
#define HDR 64
static size_t g_bytes, g_peak;

static void count(long delta)
{
    __atomic_add_fetch(&g_bytes, (size_t)delta, __ATOMIC_RELAXED);
    size_t now = __atomic_load_n(&g_bytes, __ATOMIC_RELAXED);
    if (now > g_peak) g_peak = now;
}

static void *wrap(void *raw, size_t bytes)
{
    size_t *h = raw;
    h[0] = bytes;
    count((long)bytes);
    return (char *)raw + HDR;
}

void *sn_malloc_at(size_t bytes, const char *file, int line)
{
    void *raw = NULL;
    if (posix_memalign(&raw, HDR, bytes + HDR) != 0 || !raw)
        sn_fatal_at(file, line, "out of memory allocating %zu bytes", bytes);
    return wrap(raw, bytes);
}

void *sn_aligned_at(size_t bytes, const char *file, int line)
{
    return sn_malloc_at(bytes, file, line);
}

void *sn_calloc_at(size_t n, size_t size, const char *file, int line)
{
    if (size && n > SIZE_MAX / size)
        sn_fatal_at(file, line, "allocation size overflow (%zu x %zu)", n, size);
    void *p = sn_malloc_at(n * size, file, line);
    memset(p, 0, n * size);
    return p;
}

void *sn_realloc_at(void *p, size_t bytes, const char *file, int line)
{
    if (!p) return sn_malloc_at(bytes, file, line);
    size_t old = *(size_t *)((char *)p - HDR);
    void *q = sn_malloc_at(bytes, file, line);
    memcpy(q, p, SN_MIN(old, bytes));
    sn_free(p);
    return q;
}

char *sn_strdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *d = sn_malloc_at(n, file, line);
    memcpy(d, s, n);
    return d;
}

void sn_free(void *p)
{
    if (!p) return;
    char *raw = (char *)p - HDR;
    count(-(long)*(size_t *)raw);
    free(raw);
}

size_t sn_bytes_in_use(void)
{
    return g_bytes;
}

size_t sn_bytes_peak(void)
{
    return g_peak;
}

void sn_set_rank(int rank, int nranks)
{
    g_rank = rank;
    g_nranks = nranks;
    log_set_rank(rank);
}

int sn_rank(void)
{
    return g_rank;
}

int sn_nranks(void)
{
    return g_nranks;
}

double sn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sn_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int sn_path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) return sn_error("path too long: %s/%s", a, b);
    return SN_OK;
}

int sn_mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return sn_error("path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return sn_error("cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return sn_error("cannot create directory %s: %s", buf, strerror(errno));
    if (!sn_dir_exists(buf)) return sn_error("%s exists and is not a directory", buf);
    return SN_OK;
}

int sn_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sn_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void sn_tmp_name(char *out, size_t cap, const char *path)
{
    snprintf(out, cap, "%s.tmp.%ld", path, (long)getpid());
}

int sn_rename_into_place(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0)
        return sn_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    return SN_OK;
}

int sn_write_file_atomic(const char *path, const void *data, size_t n)
{
    char tmp[4200];
    sn_tmp_name(tmp, sizeof tmp, path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return sn_error("cannot write %s: %s", tmp, strerror(errno));
    size_t w = fwrite(data, 1, n, f);
    int bad = (w != n) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
    bad |= fclose(f) != 0;
    if (bad) {
        unlink(tmp);
        return sn_error("cannot write %s: %s", path, strerror(errno));
    }
    return sn_rename_into_place(tmp, path);
}

char *sn_read_file(const char *path, size_t *len)
{
    if (sn_dir_exists(path)) {
        sn_error("%s is a folder, not a file", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        sn_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = sn_malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = sn_realloc(buf, cap + 1);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        sn_free(buf);
        sn_error("cannot read %s", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

const char *sn_version(void)
{
    return SNARM_VERSION;
}
