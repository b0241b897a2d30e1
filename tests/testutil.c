#define _GNU_SOURCE
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"

int tu_passed, tu_failed;

void tu_check_err_at(int status, const char *needle, const char *file, int line)
{
    const char *msg = sn_last_error();
    if (status == SN_EUSER && strstr(msg, needle)) {
        tu_passed++;
        return;
    }
    tu_failed++;
    fprintf(stderr, "FAIL %s:%d: expected an error containing \"%s\", got status %d: %s\n",
            file, line, needle, status, status == SN_OK ? "(success)" : msg);
}

int tu_close(const char *what, const float *got, const float *want, long n,
             double atol, double rtol)
{
    double worst = 0, worst_excess = -1;
    long at = -1, bad = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim)) bad++;
        if (d > worst || isnan(d)) worst = d;
        if (d - lim > worst_excess || isnan(d)) {
            worst_excess = d - lim;
            at = i;
        }
    }
    fprintf(stderr, "  %-40s n=%ld max|diff|=%.3g (atol %.1g rtol %.1g)%s\n", what, n,
            worst, atol, rtol, bad ? " FAIL" : "");
    if (bad && at >= 0)
        fprintf(stderr, "    %ld outside; worst at %ld: got %.9g want %.9g\n", bad, at,
                (double)got[at], (double)want[at]);
    return bad == 0;
}

void tu_skip(const char *why, ...)
{
    va_list ap;
    va_start(ap, why);
    fprintf(stdout, "SKIP: ");
    vfprintf(stdout, why, ap);
    fputc('\n', stdout);
    va_end(ap);
    exit(77);
}

int tu_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

static char pathbuf[8][4096];
static int pathslot;

static char *next_slot(void)
{
    return pathbuf[pathslot++ % 8];
}

const char *tu_shared(const char *rel)
{
    const char *root = getenv("SNARM_SHARED");
    if (!root) root = SNARM_SOURCE_DIR "/../shared";
    char *p = next_slot();
    snprintf(p, 4096, "%s/%s", root, rel);
    struct stat st;
    return stat(p, &st) == 0 ? p : NULL;
}

const char *tu_ref_path(const char *name)
{
    const char *root = getenv("SNARM_TEST_REF");
    char *p = next_slot();
    snprintf(p, 4096, "%s/%s", root ? root : ".", name);
    return p;
}

const char *tu_tmpdir(const char *tag)
{
    char *p = next_slot();
    const char *t = getenv("TMPDIR");
    snprintf(p, 4096, "%s/snarm-%s-XXXXXX", t ? t : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        exit(1);
    }
    return p;
}

static hid_t open_ds(const char *file, const char *name, hid_t *fid)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    *fid = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*fid < 0) return -1;
    hid_t ds = H5Dopen2(*fid, name, H5P_DEFAULT);
    if (ds < 0) H5Fclose(*fid);
    return ds;
}

int tu_ref_has(const char *file, const char *name)
{
    hid_t fid, ds = open_ds(file, name, &fid);
    if (ds < 0) return 0;
    H5Dclose(ds);
    H5Fclose(fid);
    return 1;
}

long *tu_ref_shape(const char *file, const char *name, int *ndim)
{
    hid_t fid, ds = open_ds(file, name, &fid);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[16];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    long *out = calloc((size_t)nd + 1, sizeof(long));
    for (int i = 0; i < nd; i++) out[i] = (long)dims[i];
    *ndim = nd;
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(fid);
    return out;
}

float *tu_ref_read(const char *file, const char *name, long *n)
{
    hid_t fid, ds = open_ds(file, name, &fid);
    if (ds < 0) {
        tu_failed++;
        fprintf(stderr, "FAIL: golden tensor %s missing in %s\n", name, file);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    long cnt = (long)H5Sget_simple_extent_npoints(sp);
    float *buf = malloc(sizeof(float) * (size_t)(cnt ? cnt : 1));
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(fid);
    if (n) *n = cnt;
    return buf;
}

double tu_ref_scalar(const char *file, const char *name)
{
    long n = 0;
    float *v = tu_ref_read(file, name, &n);
    double x = (v && n > 0) ? v[0] : NAN;
    free(v);
    return x;
}
