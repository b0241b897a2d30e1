/*
 * stage_mock.c - the test stand-in for a unit's pipeline (see stage_mock.h).
 */
#define _GNU_SOURCE
#include "stage_mock.h"

#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "common.h"
#include "log.h"
#include "metrics.h"
#include "rng.h"

/* HDF5 calls on files the mock just created: a failure is a broken
 * invariant. */
#define MOCK_H5(call)                                                                    \
    do {                                                                                 \
        if ((call) < 0) sn_fatal("HDF5 call failed: %s", #call);                         \
    } while (0)

#define MOCK_LR 0.05f

/* ---------------------------------------------------------------------------
 * Deterministic stand-ins for features */

struct mock_unit {
    const struct sweep_unit *u;
    struct unit_images im;
    uint64_t mix; /* hash of the unit's model configuration */
};

static const char *rel_path(const struct ds_dataset *ds, const char *path)
{
    size_t n = strlen(ds->root);
    if (strncmp(path, ds->root, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static const struct ds_sample *sample_of(const struct ds_dataset *ds,
                                         const struct unit_image *im, int test)
{
    const struct ds_class *c = &ds->classes[im->cls];
    return test ? &c->test[im->sample] : &c->train[im->sample];
}

/* The "feature" of an image: normals seeded by its path and the model
 * configuration, so a grid point that changes the model changes them. */
static void mock_feature(const struct mock_unit *m, const struct unit_image *im, int test,
                         float *x)
{
    struct rng_state r;
    const char *p = rel_path(m->u->ds, sample_of(m->u->ds, im, test)->path);
    rng_seed(&r, m->mix, rng_hash_str(p));
    rng_fill_normal(&r, x, MOCK_DIM, 1.0f);
}

static float mock_target(const struct mock_unit *m, const struct unit_image *im)
{
    const char *p = rel_path(m->u->ds, sample_of(m->u->ds, im, 0)->path);
    return (float)(rng_hash_str(p) % 1000) / 1000.0f;
}

static void mock_open(struct mock_unit *m, const struct sweep *s,
                      const struct sweep_unit *u)
{
    m->u = u;
    struct sn_config *c = sn_malloc(sizeof *c);
    sweep_unit_config(s, u, c);
    char *text = config_sections_string(c, "backbone,features,bank,matching,decoder,"
                                           "train,predict");
    m->mix = rng_hash_str(text);
    sn_free(text);
    sn_free(c);
}

/* ---------------------------------------------------------------------------
 * Data-parallel "training" */

static float dot(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < MOCK_DIM; i++)
        s += a[i] * b[i];
    return s;
}

/* This rank's share of one step: gradient sum and loss sum of a squared
 * error over its contiguous share of the training images. */
static void step_local(const struct mock_unit *m, const float *w, long lo, long hi,
                       float *acc)
{
    float x[MOCK_DIM];
    memset(acc, 0, (MOCK_DIM + 1) * sizeof *acc);
    for (long i = lo; i < hi; i++) {
        mock_feature(m, &m->im.train[i], 0, x);
        float e = dot(w, x) - mock_target(m, &m->im.train[i]);
        for (int k = 0; k < MOCK_DIM; k++)
            acc[k] += 2 * e * x[k];
        acc[MOCK_DIM] += e * e;
    }
}

static void train_group(const struct mock_unit *m, struct comm *c, float *w, float *loss)
{
    struct rng_state r;
    rng_seed(&r, (uint64_t)m->u->seed, rng_hash_str("mock/init"));
    rng_fill_normal(&r, w, MOCK_DIM, 0.1f);
    long n = m->im.n_train, lo, hi;
    comm_share_range(n, c->rank, c->size, &lo, &hi);
    for (int t = 0; t < MOCK_STEPS; t++) {
        float acc[MOCK_DIM + 1];
        if (n == 0) {
            loss[t] = 0;
            continue;
        }
        /* gradient all-reduce in the fixed rank order, then the update */
        step_local(m, w, lo, hi, acc);
        comm_allreduce_sum(c, acc, MOCK_DIM + 1);
        for (int k = 0; k < MOCK_DIM; k++)
            w[k] -= MOCK_LR * acc[k] / (float)n;
        loss[t] = acc[MOCK_DIM] / (float)n;
    }
}

int mock_train(const struct sweep *s, const struct sweep_unit *u, MPI_Comm group,
               float *w, float *loss)
{
    struct mock_unit m;
    mock_open(&m, s, u);
    if (sweep_unit_images(u, u->ds, &m.im) != SN_OK) return SN_EUSER;
    struct comm c;
    comm_open_mpi(&c, group);
    train_group(&m, &c, w, loss);
    comm_close(&c);
    unit_images_free(&m.im);
    return SN_OK;
}

/* ---------------------------------------------------------------------------
 * HDF5 without time stamps */

static hid_t h5_create(const char *path)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    MOCK_H5(fcpl);
    MOCK_H5(H5Pset_obj_track_times(fcpl, 0));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    return f;
}

static void h5_put(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                   const void *data)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    MOCK_H5(H5Pset_obj_track_times(dcpl, 0));
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    MOCK_H5(d);
    if (dims[0] > 0) MOCK_H5(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(dcpl);
}

/* n strings as one fixed-length string dataset. */
static void h5_put_strings(hid_t f, const char *name, const char *const *v, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len = SN_MAX(len, strlen(v[i]) + 1);
    char *buf = sn_calloc((size_t)SN_MAX(n, 1), len);
    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    MOCK_H5(H5Tset_size(t, len));
    MOCK_H5(H5Tset_strpad(t, H5T_STR_NULLTERM));
    hsize_t dims[1] = {(hsize_t)n};
    h5_put(f, name, t, 1, dims, buf);
    H5Tclose(t);
    sn_free(buf);
}

static void h5_attr(hid_t f, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    MOCK_H5(H5Tset_size(t, strlen(value) + 1));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    MOCK_H5(a);
    MOCK_H5(H5Awrite(a, t, value));
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* Create the temporary of path; h5_commit renames it into place. */
static hid_t h5_begin(const char *dir, const char *name, char *tmp, char *path)
{
    snprintf(path, 4200, "%s/%s", dir, name);
    sn_tmp_name(tmp, 4300, path);
    hid_t f = h5_create(tmp);
    if (f < 0) sn_error("cannot create %s", tmp);
    return f;
}

static int h5_commit(hid_t f, const char *tmp, const char *path)
{
    MOCK_H5(H5Fclose(f));
    return sn_rename_into_place(tmp, path);
}

/* ---------------------------------------------------------------------------
 * Outputs */

static int write_bank(const struct mock_unit *m, const char *dir)
{
    char tmp[4300], path[4200];
    hid_t f = h5_begin(dir, "bank.h5", tmp, path);
    if (f < 0) return SN_EUSER;
    int n = m->im.n_bank;
    float *bank = sn_calloc((size_t)SN_MAX(n, 1) * MOCK_DIM, sizeof *bank);
    int *idx = sn_calloc((size_t)SN_MAX(n, 1) * 2, sizeof *idx);
    for (int i = 0; i < n; i++) {
        mock_feature(m, &m->im.bank[i], 0, bank + (size_t)i * MOCK_DIM);
        idx[2 * i] = m->im.bank[i].cls;
        idx[2 * i + 1] = m->im.bank[i].sample;
    }
    hsize_t db[2] = {(hsize_t)n, MOCK_DIM}, di[2] = {(hsize_t)n, 2};
    h5_put(f, "bank", H5T_NATIVE_FLOAT, 2, db, bank);
    h5_put(f, "images", H5T_NATIVE_INT, 2, di, idx);
    sn_free(bank);
    sn_free(idx);
    return h5_commit(f, tmp, path);
}

static int write_checkpoint(const char *dir, const float *w, const float *loss)
{
    char tmp[4300], path[4200];
    hid_t f = h5_begin(dir, "checkpoint.h5", tmp, path);
    if (f < 0) return SN_EUSER;
    hsize_t dw[1] = {MOCK_DIM}, dl[1] = {MOCK_STEPS};
    h5_put(f, "w", H5T_NATIVE_FLOAT, 1, dw, w);
    h5_put(f, "loss", H5T_NATIVE_FLOAT, 1, dl, loss);
    return h5_commit(f, tmp, path);
}

/* One test image's map and mask: higher values inside a square "defect". */
static float mock_map(const struct mock_unit *m, const float *w, int j, float *map,
                      uint8_t *mask)
{
    const struct ds_sample *smp = sample_of(m->u->ds, &m->im.test[j], 1);
    float x[MOCK_DIM];
    mock_feature(m, &m->im.test[j], 1, x);
    float base = 1.0f / (1.0f + expf(-dot(w, x)));
    struct rng_state r;
    rng_seed(&r, m->mix, rng_hash_str(rel_path(m->u->ds, smp->path)) ^ 0x5eedULL);
    int a = (int)rng_below(&r, MOCK_SIDE - 2), b = (int)rng_below(&r, MOCK_SIDE - 2);
    float score = 0;
    for (int y = 0; y < MOCK_SIDE; y++)
        for (int z = 0; z < MOCK_SIDE; z++) {
            int p = y * MOCK_SIDE + z;
            mask[p] = smp->label && y >= a && y < a + 3 && z >= b && z < b + 3;
            map[p] = 0.3f * base + 0.4f * (float)rng_uniform(&r) +
                     (mask[p] ? 0.5f * (float)rng_uniform(&r) : 0.0f);
            score = SN_MAX(score, map[p]);
        }
    return score;
}

static int write_maps(const struct mock_unit *m, const char *dir, const float *w)
{
    char tmp[4300], path[4200];
    hid_t f = h5_begin(dir, "maps.h5", tmp, path);
    if (f < 0) return SN_EUSER;
    int n = m->im.n_test, px = MOCK_SIDE * MOCK_SIDE;
    float *maps = sn_calloc((size_t)SN_MAX(n, 1) * px, sizeof *maps);
    uint8_t *masks = sn_calloc((size_t)SN_MAX(n, 1) * px, 1);
    float *scores = sn_calloc((size_t)SN_MAX(n, 1), sizeof *scores);
    uint8_t *labels = sn_calloc((size_t)SN_MAX(n, 1), 1);
    const char **cls = sn_calloc((size_t)SN_MAX(n, 1), sizeof *cls);
    const char **paths = sn_calloc((size_t)SN_MAX(n, 1), sizeof *paths);
    for (int j = 0; j < n; j++) {
        const struct ds_sample *smp = sample_of(m->u->ds, &m->im.test[j], 1);
        scores[j] = mock_map(m, w, j, maps + (size_t)j * px, masks + (size_t)j * px);
        labels[j] = (uint8_t)smp->label;
        cls[j] = m->u->ds->classes[m->im.test[j].cls].name;
        paths[j] = rel_path(m->u->ds, smp->path);
    }

    /* the schema of core/maps.h */
    hsize_t d3[3] = {(hsize_t)n, MOCK_SIDE, MOCK_SIDE}, d1[1] = {(hsize_t)n};
    h5_put(f, "maps", H5T_NATIVE_FLOAT, 3, d3, maps);
    h5_put(f, "masks", H5T_NATIVE_UINT8, 3, d3, masks);
    h5_put(f, "scores", H5T_NATIVE_FLOAT, 1, d1, scores);
    h5_put(f, "labels", H5T_NATIVE_UINT8, 1, d1, labels);
    h5_put_strings(f, "class", cls, n);
    h5_put_strings(f, "path", paths, n);
    h5_attr(f, "maps_dtype", "float32");
    h5_attr(f, "method", m->u->method);
    h5_attr(f, "setting", sweep_setting_name(m->u->setting));
    h5_attr(f, "dataset", m->u->ds->name);
    sn_free(maps);
    sn_free(masks);
    sn_free(scores);
    sn_free(labels);
    sn_free(cls);
    sn_free(paths);
    return h5_commit(f, tmp, path);
}

static int write_metrics(const char *dir)
{
    char maps_path[4200], csv[4200];
    snprintf(maps_path, sizeof maps_path, "%s/maps.h5", dir);
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    struct maps_file mf;
    struct metric_table t;
    int st = maps_open(maps_path, &mf);
    if (st == SN_OK) st = metrics_compute(&mf, METRICS_FPR_LIMIT, &t);
    maps_file_free(&mf);
    if (st != SN_OK) return st;
    st = metrics_write_csv(&t, csv);
    metric_table_free(&t);
    return st;
}

/* ---------------------------------------------------------------------------
 * The unit */

static int hook_matches(const char *var, const struct sweep_unit *u)
{
    const char *v = getenv(var);
    return v && strcmp(v, u->id) == 0;
}

/* The fault test's kill: a maps file cut in half, then SIGKILL. */
static void hook_kill(const struct mock_unit *m, const char *dir, const float *w)
{
    char path[4200];
    if (write_maps(m, dir, w) != SN_OK) return;
    snprintf(path, sizeof path, "%s/maps.h5", dir);
    FILE *f = fopen(path, "rb+");
    if (f) {
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fclose(f);
        if (truncate(path, n / 2) != 0) log_warn("cannot truncate %s", path);
    }
    log_warn("unit %s: killing this rank (SNARM_MOCK_KILL)", m->u->id);
    fflush(NULL);
    raise(SIGKILL);
}

static void hook_sleep(void)
{
    const char *v = getenv("SNARM_MOCK_SLEEP_MS");
    long ms = v ? atol(v) : 0;
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int mock_write(const struct mock_unit *m, const char *dir, const float *w,
                      const float *loss)
{
    if (write_bank(m, dir) != SN_OK) return SN_EUSER;
    if (write_checkpoint(dir, w, loss) != SN_OK) return SN_EUSER;
    if (hook_matches("SNARM_MOCK_KILL", m->u)) hook_kill(m, dir, w);
    if (write_maps(m, dir, w) != SN_OK) return SN_EUSER;
    return write_metrics(dir);
}

int mock_unit_run(const struct sweep_unit *u, const char *unit_dir, MPI_Comm group,
                  void *ctx)
{
    const struct mock_ctx *mc = ctx;
    struct mock_unit m;
    mock_open(&m, mc->sweep, u);
    if (sweep_unit_images(u, u->ds, &m.im) != SN_OK) return SN_EUSER;
    hook_sleep();

    /* every rank trains; the group root writes */
    float w[MOCK_DIM], loss[MOCK_STEPS];
    struct comm c;
    comm_open_mpi(&c, group);
    train_group(&m, &c, w, loss);
    int st = SN_OK;
    if (hook_matches("SNARM_MOCK_FAIL", u))
        st = sn_error("unit %s: failing on request (SNARM_MOCK_FAIL)", u->id);
    else if (c.rank == 0)
        st = mock_write(&m, unit_dir, w, loss);
    comm_close(&c);
    unit_images_free(&m.im);
    return st;
}

/* ---------------------------------------------------------------------------
 * Validation: the files open and hold what the metrics and tables need */

static int h5_has(const char *dir, const char *name, const char *const *sets, int n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return sn_error("%s is not a readable HDF5 file", path);
    int st = SN_OK;
    for (int i = 0; i < n && st == SN_OK; i++)
        if (H5Lexists(f, sets[i], H5P_DEFAULT) <= 0)
            st = sn_error("%s has no /%s", path, sets[i]);
    H5Fclose(f);
    return st;
}

int mock_unit_validate(const struct sweep_unit *u, const char *unit_dir, void *ctx)
{
    static const char *const bank[] = {"bank", "images"}, *const ckpt[] = {"w", "loss"};
    if (h5_has(unit_dir, "bank.h5", bank, 2) != SN_OK) return SN_EUSER;
    if (h5_has(unit_dir, "checkpoint.h5", ckpt, 2) != SN_OK) return SN_EUSER;
    char path[4200];
    snprintf(path, sizeof path, "%s/maps.h5", unit_dir);
    struct maps_file mf;
    int st = maps_open(path, &mf);
    if (st == SN_OK && mf.N == 0) st = sn_error("%s holds no image", path);
    maps_file_free(&mf);
    if (st != SN_OK) return st;

    snprintf(path, sizeof path, "%s/metrics.csv", unit_dir);
    char *text = sn_read_file(path, NULL);
    if (!text) return SN_EUSER;
    st = strncmp(text, "class,p_ap,pro,p_auroc,i_auroc\n", 31) == 0
             ? SN_OK
             : sn_error("%s does not start with the metrics header", path);
    sn_free(text);
    (void)u;
    (void)ctx;
    return st;
}
