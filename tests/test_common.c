#define _GNU_SOURCE
/* Common utilities: the seeded RNG, the counting allocator, atomic writes and
 * the logger's level filter. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/rng.h"
#include "testutil.h"

static void test_rng(void)
{
    struct rng_state a, b, c;
    rng_seed(&a, 42, 0);
    rng_seed(&b, 42, 0);
    rng_seed(&c, 42, 1);
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a), y = rng_next(&b), z = rng_next(&c);
        same &= x == y;
        differ += x != z;
    }
    TU_CHECK(same);
    TU_CHECK(differ > 990);

    /* Moments of the normal and uniform draws. */
    double s = 0, s2 = 0, u = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double g = rng_normal(&a);
        s += g;
        s2 += g * g;
        u += rng_uniform(&a);
    }
    TU_CHECK_MSG(fabs(s / n) < 0.01, "normal mean %g", s / n);
    TU_CHECK_MSG(fabs(s2 / n - 1) < 0.02, "normal variance %g", s2 / n);
    TU_CHECK_MSG(fabs(u / n - 0.5) < 0.005, "uniform mean %g", u / n);

    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) hist[rng_below(&a, 7)]++;
    int ok = 1;
    for (int i = 0; i < 7; i++) ok &= hist[i] > 9500 && hist[i] < 10500;
    TU_CHECK(ok);

    /* A saved state reproduces the stream exactly (checkpoints rely on it). */
    struct rng_state saved = a;
    uint64_t first = rng_next(&a);
    TU_CHECK(rng_next(&saved) == first);

    int v[10];
    for (int i = 0; i < 10; i++) v[i] = i;
    rng_shuffle(&a, v, 10);
    int sum = 0;
    for (int i = 0; i < 10; i++) sum += v[i];
    TU_CHECK(sum == 45);
    TU_CHECK(rng_hash_str("bottle") != rng_hash_str("tile"));
}

static void test_alloc(void)
{
    size_t before = sn_bytes_in_use();
    float *p = sn_malloc(1000 * sizeof(float));
    TU_CHECK(sn_bytes_in_use() == before + 4000);
    TU_CHECK(((uintptr_t)sn_aligned(64) & 63) == 0);
    p = sn_realloc(p, 8000);
    TU_CHECK(sn_bytes_in_use() >= before + 8000);
    sn_free(p);
    char *s = sn_strdup("snarm");
    TU_CHECK(!strcmp(s, "snarm"));
    sn_free(s);
    float *z = sn_calloc(10, sizeof(float));
    TU_CHECK(z[9] == 0);
    sn_free(z);
}

static void test_files(void)
{
    const char *dir = tu_tmpdir("common");
    char path[4200], sub[4200];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    TU_CHECK(sn_write_file_atomic(path, "hello", 5) == SN_OK);
    size_t n = 0;
    char *back = sn_read_file(path, &n);
    TU_CHECK(back && n == 5 && !memcmp(back, "hello", 5));
    sn_free(back);
    TU_CHECK(sn_file_exists(path) && !sn_dir_exists(path));
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    TU_CHECK(sn_mkdirs(sub) == SN_OK && sn_dir_exists(sub));
    TU_CHECK_ERR(sn_mkdirs("/proc/definitely/not"), "cannot create directory");
    TU_CHECK(sn_read_file("/nonexistent/file", NULL) == NULL);
    TU_CHECK(strstr(sn_last_error(), "/nonexistent/file") != NULL);
    /* No temporary file is left behind by an atomic write. */
    char tmp[4300];
    sn_tmp_name(tmp, sizeof tmp, path);
    TU_CHECK(access(tmp, F_OK) != 0);
}

static void test_log(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    log_set_stream(f);
    log_set_level(LOG_WARN);
    log_info("hidden %d", 1);
    log_warn("shown %d", 2);
    log_set_level(LOG_DEBUG);
    log_debug("debug %d", 3);
    log_set_stream(NULL);
    fclose(f);
    TU_CHECK(!strstr(buf, "hidden"));
    TU_CHECK(strstr(buf, "[r0] warn  shown 2") != NULL);
    TU_CHECK(strstr(buf, "debug 3") != NULL);
    free(buf);
    TU_CHECK(log_level_parse("debug") == LOG_DEBUG && log_level_parse("loud") == -1);
}

int main(void)
{
    test_rng();
    test_alloc();
    test_files();
    test_log();
    return tu_finish("test_common");
}
