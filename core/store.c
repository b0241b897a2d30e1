#define _POSIX_C_SOURCE 200809L
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"
#include "knn.h"
#include "log.h"

/* Deflate level: features compress little, so the fastest level keeps
 * extraction I/O cheap while shuffle still halves typical files. */
#define STORE_DEFLATE 1

struct store_writer {
    char path[4096];
    char tmp[4200];
    hid_t file, dset;
    int cells, d;
    long n, cap;
    char **paths;
    int *labels;
};

struct store_reader {
    char path[4096];
    hid_t file, dset;
    int cells, d;
    long n;
    char **paths;
    int *labels;
    struct store_meta meta;
    char *config;
};

/* ------------------------------------------------------------------------ */
/* Attribute helpers                                                        */

void store_attr_put_str(hid_t obj, const char *name, const char *value)
{
    if (!value) value = "";
    hid_t t = H5Tcopy(H5T_C_S1);
    STORE_H5(t);
    STORE_H5(H5Tset_size(t, strlen(value) + 1));
    STORE_H5(H5Tset_strpad(t, H5T_STR_NULLTERM));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    STORE_H5(a);
    STORE_H5(H5Awrite(a, t, value));
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

void store_attr_put_long(hid_t obj, const char *name, long value)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    STORE_H5(a);
    int64_t v = value;
    STORE_H5(H5Awrite(a, H5T_NATIVE_INT64, &v));
    H5Aclose(a);
    H5Sclose(sp);
}

static hid_t attr_open(hid_t obj, const char *name)
{
    htri_t has;
    STORE_H5_QUIET(H5Aexists(obj, name), has);
    if (has <= 0) return -1;
    return H5Aopen(obj, name, H5P_DEFAULT);
}

/* Read a string attribute stored either fixed-length or variable-length. */
static int attr_read_str(hid_t a, char **value)
{
    hid_t ft = H5Aget_type(a);
    int ok = H5Tget_class(ft) == H5T_STRING;
    if (ok && H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        ok = H5Aread(a, mt, &s) >= 0;
        *value = sn_strdup(ok && s ? s : "");
        if (s) H5free_memory(s);
        H5Tclose(mt);
    } else if (ok) {
        size_t n = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        char *s = sn_calloc(n + 2, 1);
        ok = H5Aread(a, mt, s) >= 0;
        *value = s;
        H5Tclose(mt);
    }
    H5Tclose(ft);
    return ok ? SN_OK : SN_EUSER;
}

int store_attr_get_str(hid_t obj, const char *name, char **value)
{
    *value = NULL;
    hid_t a = attr_open(obj, name);
    if (a < 0) return sn_error("attribute '%s' is missing", name);
    int st = attr_read_str(a, value);
    H5Aclose(a);
    if (st != SN_OK) return sn_error("attribute '%s' is not a string", name);
    return SN_OK;
}

int store_attr_get_long(hid_t obj, const char *name, long *value)
{
    hid_t a = attr_open(obj, name);
    if (a < 0) return sn_error("attribute '%s' is missing", name);
    hid_t ft = H5Aget_type(a);
    int64_t v = 0;
    int ok = H5Tget_class(ft) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, &v) >= 0;
    H5Tclose(ft);
    H5Aclose(a);
    if (!ok) return sn_error("attribute '%s' is not an integer", name);
    *value = (long)v;
    return SN_OK;
}

int store_h5_open(const char *path, hid_t *file)
{
    if (!sn_file_exists(path)) return sn_error("%s does not exist", path);
    htri_t is;
    STORE_H5_QUIET(H5Fis_hdf5(path), is);
    if (is <= 0) return sn_error("%s is not an HDF5 file", path);
    STORE_H5_QUIET(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), *file);
    if (*file < 0)
        return sn_error("cannot open HDF5 file %s (incomplete or damaged?)", path);
    return SN_OK;
}

int store_h5_commit(hid_t file, const char *tmp, const char *path)
{
    STORE_H5(H5Fclose(file));
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0) close(fd);
        unlink(tmp);
        return sn_error("cannot flush %s: %s", tmp, strerror(errno));
    }
    close(fd);
    return sn_rename_into_place(tmp, path);
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                 */

void store_meta_init(struct store_meta *m)
{
    memset(m, 0, sizeof(*m));
}

int store_path(char *out, size_t cap, const char *dir, const char *dataset,
               const char *class_name, const char *split)
{
    int n = snprintf(out, cap, "%s/%s/%s_%s.h5", dir, dataset, class_name, split);
    if (n < 0 || (size_t)n >= cap)
        return sn_error("feature store path for %s/%s/%s is too long", dataset,
                        class_name, split);
    return SN_OK;
}

static void meta_write(hid_t file, const struct store_meta *m)
{
    store_attr_put_str(file, "dataset", m->dataset);
    store_attr_put_str(file, "class", m->class_name);
    store_attr_put_str(file, "split", m->split);
    store_attr_put_str(file, "backbone", m->backbone);
    store_attr_put_str(file, "weights_hash", m->weights_hash);
    store_attr_put_long(file, "input_size", m->input_size);
    store_attr_put_long(file, "grid", m->grid);
    store_attr_put_long(file, "d", m->d);
    store_attr_put_str(file, "layer_groups", m->layer_groups);
    store_attr_put_str(file, "config", m->config_yaml);
    store_attr_put_str(file, "version", sn_version());
}

static int get_str_into(hid_t f, const char *name, char *out, size_t cap)
{
    char *s;
    int st = store_attr_get_str(f, name, &s);
    if (st != SN_OK) return st;
    snprintf(out, cap, "%s", s);
    sn_free(s);
    return SN_OK;
}

static int get_int_into(hid_t f, const char *name, int *out)
{
    long v;
    int st = store_attr_get_long(f, name, &v);
    *out = (int)v;
    return st;
}

/* Read every attribute; r->config owns the configuration text. */
static int meta_read(hid_t f, struct store_meta *m, char **config)
{
    store_meta_init(m);
    int st = get_str_into(f, "dataset", m->dataset, sizeof m->dataset);
    if (!st) st = get_str_into(f, "class", m->class_name, sizeof m->class_name);
    if (!st) st = get_str_into(f, "split", m->split, sizeof m->split);
    if (!st) st = get_str_into(f, "backbone", m->backbone, sizeof m->backbone);
    if (!st)
        st = get_str_into(f, "weights_hash", m->weights_hash, sizeof m->weights_hash);
    if (!st) st = get_int_into(f, "input_size", &m->input_size);
    if (!st) st = get_int_into(f, "grid", &m->grid);
    if (!st) st = get_int_into(f, "d", &m->d);
    if (!st)
        st = get_str_into(f, "layer_groups", m->layer_groups, sizeof m->layer_groups);
    if (!st) st = get_str_into(f, "version", m->version, sizeof m->version);
    if (!st) st = store_attr_get_str(f, "config", config);
    m->config_yaml = *config;
    return st;
}

static int differ_str(const char *path, const char *name, const char *have,
                      const char *want)
{
    if (!strcmp(have, want)) return SN_OK;
    return sn_error("feature store %s was made with %s '%s' but '%s' is expected; "
                    "delete it to extract again",
                    path, name, have, want);
}

static int differ_int(const char *path, const char *name, int have, int want)
{
    if (have == want) return SN_OK;
    return sn_error("feature store %s was made with %s %d but %d is expected; "
                    "delete it to extract again",
                    path, name, have, want);
}

/* The attributes that decide the features; config and version do not. */
static int meta_compare(const char *path, const struct store_meta *h,
                        const struct store_meta *w)
{
    int st = differ_str(path, "dataset", h->dataset, w->dataset);
    if (!st) st = differ_str(path, "class", h->class_name, w->class_name);
    if (!st) st = differ_str(path, "split", h->split, w->split);
    if (!st) st = differ_str(path, "backbone", h->backbone, w->backbone);
    if (!st) st = differ_str(path, "weights_hash", h->weights_hash, w->weights_hash);
    if (!st) st = differ_int(path, "input_size", h->input_size, w->input_size);
    if (!st) st = differ_int(path, "grid", h->grid, w->grid);
    if (!st) st = differ_int(path, "d", h->d, w->d);
    if (!st) st = differ_str(path, "layer_groups", h->layer_groups, w->layer_groups);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                   */

static hid_t features_create(hid_t file, int cells, int d)
{
    hsize_t dims[3] = {0, (hsize_t)cells, (hsize_t)d};
    hsize_t maxd[3] = {H5S_UNLIMITED, (hsize_t)cells, (hsize_t)d};
    hsize_t chunk[3] = {1, (hsize_t)cells, (hsize_t)d};
    hid_t sp = H5Screate_simple(3, dims, maxd);
    hid_t pl = h5_dcpl_untimed();
    STORE_H5(H5Pset_chunk(pl, 3, chunk));
    STORE_H5(H5Pset_shuffle(pl));
    STORE_H5(H5Pset_deflate(pl, STORE_DEFLATE));
    hid_t ds =
        H5Dcreate2(file, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    STORE_H5(ds);
    H5Pclose(pl);
    H5Sclose(sp);
    return ds;
}

static int parent_mkdirs(const char *path)
{
    char *dup = sn_strdup(path);
    int st = sn_mkdirs(dirname(dup));
    sn_free(dup);
    return st;
}

int store_writer_open(struct store_writer **wp, const char *path,
                      const struct store_meta *m, int cells)
{
    *wp = NULL;
    if (cells < 1 || m->d < 1)
        return sn_error("feature store %s: %d cells of dimension %d", path, cells, m->d);
    if (strlen(path) >= 4096) return sn_error("feature store path too long: %s", path);
    int st = parent_mkdirs(path);
    if (st != SN_OK) return st;

    struct store_writer *w = sn_calloc(1, sizeof(*w));
    snprintf(w->path, sizeof w->path, "%s", path);
    sn_tmp_name(w->tmp, sizeof w->tmp, path);
    STORE_H5_QUIET(H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), w->file);
    if (w->file < 0) {
        sn_free(w);
        return sn_error("cannot create %s.tmp.*: %s", path, strerror(errno));
    }
    meta_write(w->file, m);
    w->dset = features_create(w->file, cells, m->d);
    w->cells = cells;
    w->d = m->d;
    *wp = w;
    return SN_OK;
}

int store_writer_put(struct store_writer *w, const float *feat, const char *image_path,
                     int label)
{
    char what[4200];
    snprintf(what, sizeof what, "features of %s", image_path ? image_path : "(image)");
    int st = knn_check_finite(feat, w->cells, w->d, what);
    if (st != SN_OK) return st;

    /* one more image: extend by one chunk and write it */
    hsize_t dims[3] = {(hsize_t)w->n + 1, (hsize_t)w->cells, (hsize_t)w->d};
    STORE_H5(H5Dset_extent(w->dset, dims));
    hid_t fs = H5Dget_space(w->dset);
    hsize_t start[3] = {(hsize_t)w->n, 0, 0}, count[3] = {1, dims[1], dims[2]};
    STORE_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5Screate_simple(3, count, NULL);
    STORE_H5(H5Dwrite(w->dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, feat));
    H5Sclose(ms);
    H5Sclose(fs);

    /* its path and label, written with the rest at the end */
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->paths = sn_realloc(w->paths, sizeof(char *) * (size_t)w->cap);
        w->labels = sn_realloc(w->labels, sizeof(int) * (size_t)w->cap);
    }
    w->paths[w->n] = sn_strdup(image_path ? image_path : "");
    w->labels[w->n] = label;
    w->n++;
    return SN_OK;
}

static void write_paths_labels(hid_t file, char **paths, const int *labels, long n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t st = H5Tcopy(H5T_C_S1);
    STORE_H5(H5Tset_size(st, H5T_VARIABLE));
    hid_t pl = h5_dcpl_untimed();
    hid_t ds = H5Dcreate2(file, "paths", st, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    STORE_H5(ds);
    if (n) STORE_H5(H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, paths));
    H5Dclose(ds);
    H5Tclose(st);

    ds = H5Dcreate2(file, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    STORE_H5(ds);
    if (n) STORE_H5(H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels));
    H5Dclose(ds);
    H5Pclose(pl);
    H5Sclose(sp);
}

static void writer_free(struct store_writer *w)
{
    for (long i = 0; i < w->n; i++)
        sn_free(w->paths[i]);
    sn_free(w->paths);
    sn_free(w->labels);
    sn_free(w);
}

int store_writer_finish(struct store_writer *w)
{
    write_paths_labels(w->file, w->paths, w->labels, w->n);
    H5Dclose(w->dset);

    /* the flag a reader insists on, then the rename that publishes it */
    store_attr_put_long(w->file, "n_images", w->n);
    store_attr_put_long(w->file, "complete", 1);
    int st = store_h5_commit(w->file, w->tmp, w->path);
    if (st == SN_OK) log_info("feature store %s: %ld images", w->path, w->n);
    writer_free(w);
    return st;
}

void store_writer_abort(struct store_writer *w)
{
    if (!w) return;
    H5Dclose(w->dset);
    H5Fclose(w->file);
    unlink(w->tmp);
    writer_free(w);
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */

static int reader_shape(struct store_reader *r)
{
    hid_t ds;
    STORE_H5_QUIET(H5Dopen2(r->file, "features", H5P_DEFAULT), ds);
    if (ds < 0) return sn_error("feature store %s has no 'features' dataset", r->path);
    r->dset = ds;
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[3] = {0, 0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 3) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 3 || (int)dims[2] != r->meta.d)
        return sn_error("feature store %s: 'features' is not images x cells x %d",
                        r->path, r->meta.d);
    r->n = (long)dims[0];
    r->cells = (int)dims[1];
    r->d = (int)dims[2];
    return SN_OK;
}

static long dset_points(hid_t ds)
{
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    long n = (long)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n;
}

static int reader_paths_labels(struct store_reader *r)
{
    hid_t dp, dl;
    STORE_H5_QUIET(H5Dopen2(r->file, "paths", H5P_DEFAULT), dp);
    STORE_H5_QUIET(H5Dopen2(r->file, "labels", H5P_DEFAULT), dl);
    int ok = dset_points(dp) == r->n && dset_points(dl) == r->n;
    r->paths = sn_calloc((size_t)r->n + 1, sizeof(char *));
    r->labels = sn_calloc((size_t)r->n + 1, sizeof(int));
    if (ok && r->n) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        ok = H5Dread(dp, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->paths) >= 0 &&
             H5Dread(dl, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->labels) >= 0;
        H5Tclose(st);
    }
    if (dp >= 0) H5Dclose(dp);
    if (dl >= 0) H5Dclose(dl);
    if (!ok)
        return sn_error("feature store %s: 'paths' or 'labels' missing or of "
                        "the wrong length",
                        r->path);
    return SN_OK;
}

static int reader_load(struct store_reader *r, const struct store_meta *expect)
{
    long complete = 0;
    int st = store_attr_get_long(r->file, "complete", &complete);
    if (st != SN_OK || complete != 1)
        return sn_error("feature store %s is incomplete (no 'complete' flag); "
                        "delete it to extract again",
                        r->path);
    st = meta_read(r->file, &r->meta, &r->config);
    if (st != SN_OK) return sn_error_prefix("feature store %s", r->path);
    if (expect) st = meta_compare(r->path, &r->meta, expect);
    if (st == SN_OK) st = reader_shape(r);
    if (st == SN_OK) st = reader_paths_labels(r);
    return st;
}

int store_reader_open(struct store_reader **rp, const char *path,
                      const struct store_meta *expect)
{
    *rp = NULL;
    struct store_reader *r = sn_calloc(1, sizeof(*r));
    r->dset = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    int st = store_h5_open(path, &r->file);
    if (st != SN_OK) {
        sn_free(r);
        return sn_error_prefix("feature store");
    }
    st = reader_load(r, expect);
    if (st != SN_OK) {
        store_reader_close(r);
        return st;
    }
    *rp = r;
    return SN_OK;
}

long store_reader_count(const struct store_reader *r)
{
    return r->n;
}

int store_reader_cells(const struct store_reader *r)
{
    return r->cells;
}

const struct store_meta *store_reader_meta(const struct store_reader *r)
{
    return &r->meta;
}

int store_reader_get_range(struct store_reader *r, long first, long n, float *feat)
{
    if (first < 0 || n < 0 || first + n > r->n)
        return sn_error("feature store %s: images %ld..%ld requested, %ld stored",
                        r->path, first, first + n - 1, r->n);
    if (n == 0) return SN_OK;
    hid_t fs = H5Dget_space(r->dset);
    hsize_t start[3] = {(hsize_t)first, 0, 0};
    hsize_t count[3] = {(hsize_t)n, (hsize_t)r->cells, (hsize_t)r->d};
    STORE_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5Screate_simple(3, count, NULL);
    herr_t e;
    STORE_H5_QUIET(H5Dread(r->dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, feat), e);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return sn_error("feature store %s: cannot read images %ld..%ld "
                        "(damaged file?)",
                        r->path, first, first + n - 1);
    return SN_OK;
}

int store_reader_get(struct store_reader *r, long i, float *feat)
{
    return store_reader_get_range(r, i, 1, feat);
}

const char *store_reader_path(const struct store_reader *r, long i)
{
    SN_ASSERT(i >= 0 && i < r->n);
    return r->paths[i];
}

int store_reader_label(const struct store_reader *r, long i)
{
    SN_ASSERT(i >= 0 && i < r->n);
    return r->labels[i];
}

void store_reader_close(struct store_reader *r)
{
    if (!r) return;
    if (r->paths) {
        for (long i = 0; i < r->n; i++)
            if (r->paths[i]) H5free_memory(r->paths[i]);
        sn_free(r->paths);
    }
    sn_free(r->labels);
    sn_free(r->config);
    if (r->dset >= 0) H5Dclose(r->dset);
    H5Fclose(r->file);
    sn_free(r);
}

int store_matches(const char *path, const struct store_meta *m)
{
    if (!sn_file_exists(path)) {
        log_info("feature store %s: absent, extracting", path);
        return 0;
    }
    struct store_reader *r;
    if (store_reader_open(&r, path, m) != SN_OK) {
        log_info("%s", sn_last_error());
        sn_error_clear();
        return 0;
    }
    store_reader_close(r);
    return 1;
}

int store_hash_file(const char *path, char out[17])
{
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error("cannot open %s: %s", path, strerror(errno));
    uint64_t h = 14695981039346656037ULL; /* FNV-1a offset basis */
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ULL;
    int err = ferror(f);
    fclose(f);
    if (err) return sn_error("cannot read %s", path);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return SN_OK;
}
