/*
 * maps.c - the anomaly-maps HDF5 file: writer and reader (schema in maps.h).
 */
#define _GNU_SOURCE
#include "maps.h"

#include "h5util.h"

#include <hdf5.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* HDF5 check for calls on files we created or already validated: a failure
 * there is not something a user can fix. */
#define MAPS_H5(call)                                                                    \
    do {                                                                                 \
        if ((call) < 0) sn_fatal("HDF5 call failed: %s", #call);                         \
    } while (0)

struct maps_writer {
    char path[4096], tmp[4200];
    int N, H, W, with_images;
    hid_t file, dmaps, dmasks, dimages;
    float *scores;
    uint8_t *labels, *done;
    char **cls, **path_of;
    uint8_t *mask01; /* one binarised mask */
};

struct maps_h5 {
    hid_t file, dmaps, dmasks, dimages;
};

/* ---- types and attributes ------------------------------------------------ */

/* IEEE half precision little-endian, laid out as h5py and numpy's float16 so
 * files are interchangeable. */
static hid_t maps_type_f16(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    MAPS_H5(t);
    MAPS_H5(H5Tset_fields(t, 15, 10, 5, 0, 10));
    MAPS_H5(H5Tset_size(t, 2));
    MAPS_H5(H5Tset_ebias(t, 15));
    return t;
}

static hid_t maps_type_vstr(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    MAPS_H5(t);
    MAPS_H5(H5Tset_size(t, H5T_VARIABLE));
    MAPS_H5(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

static void attr_write(hid_t obj, const char *name, const char *value)
{
    hid_t t = maps_type_vstr(), sp = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) MAPS_H5(H5Adelete(obj, name));
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    MAPS_H5(a);
    MAPS_H5(H5Awrite(a, t, &value));
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* Read a scalar string attribute, variable or fixed length; NULL if absent
 * or not a string. The result is sn_malloc'ed. */
static char *attr_read(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        hid_t mt = maps_type_vstr();
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            out = sn_strdup(s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else if (H5Tget_class(ft) == H5T_STRING) {
        size_t n = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        out = sn_calloc(n + 2, 1);
        if (H5Aread(a, mt, out) < 0) out[0] = 0;
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

/* ---- writing ------------------------------------------------------------- */

static hid_t dataset_create(hid_t file, const char *name, hid_t type, int rank,
                            const hsize_t *dims, int shuffle)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = h5_dcpl_untimed();
    hsize_t chunk[4] = {1, dims[1], dims[2], rank > 3 ? dims[3] : 1};
    MAPS_H5(H5Pset_chunk(dcpl, rank, chunk));
    /* Masks and crops are mostly runs of equal bytes and compress well;
     * level 1 keeps writing cheap. */
    if (shuffle) MAPS_H5(H5Pset_shuffle(dcpl));
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) MAPS_H5(H5Pset_deflate(dcpl, 1));
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    MAPS_H5(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return d;
}

static int writer_check_args(const char *path, int N, int H, int W, const char *dtype)
{
    if (N <= 0 || H <= 0 || W <= 0)
        return sn_error("maps file %s: bad shape (%d, %d, %d)", path, N, H, W);
    if (dtype && strcmp(dtype, "float32") && strcmp(dtype, "float16"))
        return sn_error("maps file %s: maps dtype '%s' is neither float32 nor float16",
                        path, dtype);
    if (strlen(path) >= 4096) return sn_error("maps file path too long: %s", path);
    return SN_OK;
}

int maps_writer_open(const char *path, int N, int H, int W, const char *dtype,
                     int with_images, const char *attrs_yaml, struct maps_writer **out)
{
    *out = NULL;
    if (writer_check_args(path, N, H, W, dtype)) return SN_EUSER;
    int half = dtype && !strcmp(dtype, "float16");
    struct maps_writer *w = sn_calloc(1, sizeof *w);
    strcpy(w->path, path);
    sn_tmp_name(w->tmp, sizeof w->tmp, path);
    w->N = N, w->H = H, w->W = W, w->with_images = with_images;

    /* Create the temporary file; it only becomes `path` in finish. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        sn_free(w);
        return sn_error("cannot create maps file %s (is the folder writable?)", path);
    }

    /* The image-shaped datasets, one chunk per image. */
    hsize_t dims[4] = {(hsize_t)N, (hsize_t)H, (hsize_t)W, 3};
    hid_t mt = half ? maps_type_f16() : H5Tcopy(H5T_IEEE_F32LE);
    w->dmaps = dataset_create(w->file, "maps", mt, 3, dims, 1);
    H5Tclose(mt);
    w->dmasks = dataset_create(w->file, "masks", H5T_STD_U8LE, 3, dims, 0);
    w->dimages =
        with_images ? dataset_create(w->file, "images", H5T_STD_U8LE, 4, dims, 0) : -1;

    /* Per-image vectors are kept until finish. */
    w->scores = sn_calloc((size_t)N, sizeof(float));
    w->labels = sn_calloc((size_t)N, 1);
    w->done = sn_calloc((size_t)N, 1);
    w->cls = sn_calloc((size_t)N, sizeof(char *));
    w->path_of = sn_calloc((size_t)N, sizeof(char *));
    w->mask01 = sn_malloc((size_t)H * W);

    /* Root attributes every file carries. No creation time: the same run
     * must give the same bytes whenever it is made. */
    hid_t root = w->file;
    attr_write(root, "maps_dtype", half ? "float16" : "float32");
    attr_write(root, "version", sn_version());
    if (attrs_yaml) attr_write(root, "config", attrs_yaml);
    *out = w;
    return SN_OK;
}

static void slab_write(hid_t d, int rank, int i, const hsize_t *dims, hid_t mtype,
                       const void *buf)
{
    hid_t fs = H5Dget_space(d);
    hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, dims[1], dims[2], dims[3]};
    MAPS_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5Screate_simple(rank, count, NULL);
    MAPS_H5(H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf));
    H5Sclose(ms);
    H5Sclose(fs);
}

int maps_writer_put(struct maps_writer *w, int i, const float *map, const uint8_t *mask,
                    float score, int label, const char *cls, const char *path,
                    const uint8_t *rgb)
{
    SN_ASSERT(i >= 0 && i < w->N);
    long n = (long)w->H * w->W;
    for (long p = 0; p < n; p++)
        if (!isfinite(map[p]))
            return sn_error("maps file %s: the map of image %d (%s) has a non-finite "
                            "value at pixel (%ld, %ld)",
                            w->path, i, path ? path : "?", p / w->W, p % w->W);
    if (!isfinite(score))
        return sn_error("maps file %s: image %d (%s) has a non-finite score", w->path, i,
                        path ? path : "?");

    /* Maps, binarised masks and the optional crop. */
    hsize_t dims[4] = {(hsize_t)w->N, (hsize_t)w->H, (hsize_t)w->W, 3};
    for (long p = 0; p < n; p++)
        w->mask01[p] = mask[p] != 0;
    slab_write(w->dmaps, 3, i, dims, H5T_NATIVE_FLOAT, map);
    slab_write(w->dmasks, 3, i, dims, H5T_NATIVE_UINT8, w->mask01);
    if (w->with_images && rgb) slab_write(w->dimages, 4, i, dims, H5T_NATIVE_UINT8, rgb);

    /* The per-image vectors. */
    w->scores[i] = score;
    w->labels[i] = label != 0;
    sn_free(w->cls[i]);
    sn_free(w->path_of[i]);
    w->cls[i] = sn_strdup(cls ? cls : "");
    w->path_of[i] = sn_strdup(path ? path : "");
    w->done[i] = 1;
    return SN_OK;
}

int maps_writer_set_attr(struct maps_writer *w, const char *name, const char *value)
{
    if (!name || !*name) return sn_error("maps file %s: empty attribute name", w->path);
    attr_write(w->file, name, value ? value : "");
    return SN_OK;
}

static void vector_write(hid_t file, const char *name, hid_t ftype, hid_t mtype, int N,
                         const void *buf)
{
    hsize_t n = (hsize_t)N;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t dcpl = h5_dcpl_untimed();
    hid_t d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    MAPS_H5(d);
    MAPS_H5(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

static void writer_release(struct maps_writer *w)
{
    for (int i = 0; i < w->N; i++) {
        sn_free(w->cls[i]);
        sn_free(w->path_of[i]);
    }
    sn_free(w->cls);
    sn_free(w->path_of);
    sn_free(w->scores);
    sn_free(w->labels);
    sn_free(w->done);
    sn_free(w->mask01);
    sn_free(w);
}

static void writer_close_h5(struct maps_writer *w)
{
    if (w->dimages >= 0) H5Dclose(w->dimages);
    H5Dclose(w->dmasks);
    H5Dclose(w->dmaps);
    H5Fclose(w->file);
}

int maps_writer_finish(struct maps_writer *w)
{
    /* Every image must have been stored: a gap would be scored as zeros. */
    for (int i = 0; i < w->N; i++)
        if (!w->done[i]) {
            int rc = sn_error("maps file %s: image %d of %d was never written", w->path,
                              i, w->N);
            maps_writer_abort(w);
            return rc;
        }

    /* The per-image vectors, then close and move into place. */
    hid_t st = maps_type_vstr();
    vector_write(w->file, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, w->N, w->scores);
    vector_write(w->file, "labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, w->N, w->labels);
    vector_write(w->file, "class", st, st, w->N, w->cls);
    vector_write(w->file, "path", st, st, w->N, w->path_of);
    H5Tclose(st);
    writer_close_h5(w);
    int rc = sn_rename_into_place(w->tmp, w->path);
    if (rc)
        unlink(w->tmp);
    else
        log_debug("wrote maps file %s (%d images)", w->path, w->N);
    writer_release(w);
    return rc;
}

void maps_writer_abort(struct maps_writer *w)
{
    if (!w) return;
    writer_close_h5(w);
    unlink(w->tmp);
    writer_release(w);
}

/* ---- reading ------------------------------------------------------------- */

static int dataset_dims(hid_t file, const char *fname, const char *name, int want_rank,
                        hsize_t *dims, hid_t *out)
{
    *out = -1;
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
        return sn_error("maps file %s has no /%s dataset", fname, name);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return sn_error("maps file %s: /%s is not a dataset", fname, name);
    hid_t sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank == want_rank) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (rank != want_rank) {
        H5Dclose(d);
        return sn_error("maps file %s: /%s has %d dimensions, expected %d", fname, name,
                        rank, want_rank);
    }
    *out = d;
    return SN_OK;
}

/* Read a whole 1-D numeric dataset of length N, converted to mtype. */
static int vector_read(hid_t file, const char *fname, const char *name, int N,
                       hid_t mtype, void *buf)
{
    hsize_t n;
    hid_t d;
    if (dataset_dims(file, fname, name, 1, &n, &d)) return SN_EUSER;
    int rc = SN_OK;
    if ((long)n != N)
        rc = sn_error("maps file %s: /%s has %llu entries but /maps has %d images", fname,
                      name, (unsigned long long)n, N);
    else if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = sn_error("maps file %s: cannot read /%s as numbers", fname, name);
    H5Dclose(d);
    return rc;
}

/* Read a 1-D string dataset (variable or fixed length) into N strdup'ed
 * strings. */
static int strings_read(hid_t file, const char *fname, const char *name, int N,
                        char **out)
{
    hsize_t n;
    hid_t d;
    if (dataset_dims(file, fname, name, 1, &n, &d)) return SN_EUSER;
    hid_t ft = H5Dget_type(d);
    int rc = SN_OK;
    if ((long)n != N)
        rc = sn_error("maps file %s: /%s has %llu entries but /maps has %d images", fname,
                      name, (unsigned long long)n, N);
    else if (H5Tget_class(ft) != H5T_STRING)
        rc = sn_error("maps file %s: /%s does not hold strings", fname, name);
    else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = maps_type_vstr();
        char **tmp = sn_calloc((size_t)N, sizeof(char *));
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
            rc = sn_error("maps file %s: cannot read /%s", fname, name);
        for (int i = 0; i < N && !rc; i++)
            out[i] = sn_strdup(tmp[i] ? tmp[i] : "");
        if (!rc) {
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
            H5Sclose(sp);
        }
        sn_free(tmp);
        H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, len + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        char *buf = sn_calloc((size_t)N, len + 1);
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            rc = sn_error("maps file %s: cannot read /%s", fname, name);
        for (int i = 0; i < N && !rc; i++)
            out[i] = sn_strdup(buf + (size_t)i * (len + 1));
        sn_free(buf);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Dclose(d);
    return rc;
}

static void copy_attr(hid_t file, const char *name, char *dst, size_t cap)
{
    char *v = attr_read(file, name);
    snprintf(dst, cap, "%s", v ? v : "");
    sn_free(v);
}

/* /maps and /masks must describe the same N x H x W images. */
static int open_images(struct maps_file *m, struct maps_h5 *h)
{
    hsize_t dm[3], dk[3], di[4];
    if (dataset_dims(h->file, m->file, "maps", 3, dm, &h->dmaps)) return SN_EUSER;
    if (dataset_dims(h->file, m->file, "masks", 3, dk, &h->dmasks)) return SN_EUSER;
    if (dm[0] != dk[0] || dm[1] != dk[1] || dm[2] != dk[2])
        return sn_error("maps file %s: /maps is %llu x %llu x %llu but /masks is "
                        "%llu x %llu x %llu; maps and masks must have the same size",
                        m->file, (unsigned long long)dm[0], (unsigned long long)dm[1],
                        (unsigned long long)dm[2], (unsigned long long)dk[0],
                        (unsigned long long)dk[1], (unsigned long long)dk[2]);
    if (dm[0] == 0 || dm[1] == 0 || dm[2] == 0 || dm[0] > (1u << 30) ||
        dm[1] * dm[2] > (1u << 30))
        return sn_error("maps file %s: unusable /maps shape", m->file);
    m->N = (int)dm[0], m->H = (int)dm[1], m->W = (int)dm[2];

    /* The optional crops must match too, or rendering would misalign. */
    if (H5Lexists(h->file, "images", H5P_DEFAULT) > 0) {
        if (dataset_dims(h->file, m->file, "images", 4, di, &h->dimages)) return SN_EUSER;
        if (di[0] != dm[0] || di[1] != dm[1] || di[2] != dm[2] || di[3] != 3)
            return sn_error("maps file %s: /images must be %d x %d x %d x 3", m->file,
                            m->N, m->H, m->W);
        m->has_images = 1;
    }
    return SN_OK;
}

/* The per-image vectors; /path is optional for files written by other tools. */
static int open_vectors(struct maps_file *m, struct maps_h5 *h)
{
    int N = m->N;
    m->scores = sn_calloc((size_t)N, sizeof(float));
    m->labels = sn_calloc((size_t)N, 1);
    m->cls = sn_calloc((size_t)N, sizeof(char *));
    m->path = sn_calloc((size_t)N, sizeof(char *));
    if (vector_read(h->file, m->file, "scores", N, H5T_NATIVE_FLOAT, m->scores))
        return SN_EUSER;
    if (vector_read(h->file, m->file, "labels", N, H5T_NATIVE_UINT8, m->labels))
        return SN_EUSER;
    if (strings_read(h->file, m->file, "class", N, m->cls)) return SN_EUSER;
    if (H5Lexists(h->file, "path", H5P_DEFAULT) > 0) {
        if (strings_read(h->file, m->file, "path", N, m->path)) return SN_EUSER;
    } else {
        for (int i = 0; i < N; i++)
            m->path[i] = sn_strdup("(no /path)");
    }

    for (int i = 0; i < N; i++) {
        if (m->labels[i] > 1)
            return sn_error("maps file %s: image %d (%s) has label %d in /labels; labels "
                            "are 0 (good) or 1 (defective)",
                            m->file, i, m->path[i], m->labels[i]);
        if (!isfinite(m->scores[i]))
            return sn_error("maps file %s: image %d (%s) has a non-finite score %g",
                            m->file, i, m->path[i], (double)m->scores[i]);
    }
    return SN_OK;
}

static void open_attrs(struct maps_file *m, struct maps_h5 *h)
{
    copy_attr(h->file, "method", m->method, sizeof m->method);
    copy_attr(h->file, "setting", m->setting, sizeof m->setting);
    copy_attr(h->file, "dataset", m->dataset, sizeof m->dataset);
    copy_attr(h->file, "backbone", m->backbone, sizeof m->backbone);
    copy_attr(h->file, "version", m->version, sizeof m->version);
    copy_attr(h->file, "created", m->created, sizeof m->created);
    copy_attr(h->file, "maps_dtype", m->maps_dtype, sizeof m->maps_dtype);
    m->config = attr_read(h->file, "config");
    if (!m->maps_dtype[0]) {
        /* A foreign file without the attribute: name the stored type. */
        hid_t t = H5Dget_type(h->dmaps);
        snprintf(m->maps_dtype, sizeof m->maps_dtype, "%s%d",
                 H5Tget_class(t) == H5T_FLOAT ? "float" : "int", (int)H5Tget_size(t) * 8);
        H5Tclose(t);
    }
}

int maps_open(const char *path, struct maps_file *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->file, sizeof m->file, "%s", path);
    struct maps_h5 *h = sn_calloc(1, sizeof *h);
    h->file = h->dmaps = h->dmasks = h->dimages = -1;
    m->h5 = h;

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (sn_dir_exists(path)) return sn_error("%s is a folder, not a maps file", path);
    if (!sn_file_exists(path)) return sn_error("maps file %s does not exist", path);
    h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h->file < 0) return sn_error("%s is not a readable HDF5 maps file", path);
    if (open_images(m, h) || open_vectors(m, h)) return SN_EUSER;
    open_attrs(m, h);
    return SN_OK;
}

static void slab_read(hid_t d, int rank, int i, const hsize_t *dims, hid_t mtype,
                      void *buf, int *rc)
{
    hid_t fs = H5Dget_space(d);
    hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, dims[1], dims[2], dims[3]};
    MAPS_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5Screate_simple(rank, count, NULL);
    if (H5Dread(d, mtype, ms, fs, H5P_DEFAULT, buf) < 0) *rc = SN_EUSER;
    H5Sclose(ms);
    H5Sclose(fs);
}

int maps_load(struct maps_file *m, int i, float *map, uint8_t *mask)
{
    struct maps_h5 *h = m->h5;
    SN_ASSERT(h && i >= 0 && i < m->N);
    hsize_t dims[4] = {(hsize_t)m->N, (hsize_t)m->H, (hsize_t)m->W, 3};
    long n = (long)m->H * m->W;
    int rc = SN_OK;

    /* The map: converted to float, every value finite. */
    if (map) {
        slab_read(h->dmaps, 3, i, dims, H5T_NATIVE_FLOAT, map, &rc);
        if (rc)
            return sn_error("maps file %s: cannot read the map of image %d", m->file, i);
        for (long p = 0; p < n; p++)
            if (!isfinite(map[p]))
                return sn_error("maps file %s: the map of image %d (%s) has a non-finite "
                                "value (%g) at pixel (%ld, %ld)",
                                m->file, i, m->path[i], (double)map[p], p / m->W,
                                p % m->W);
    }

    /* The mask, binarised as value != 0 (0/255 masks are common). */
    if (mask) {
        slab_read(h->dmasks, 3, i, dims, H5T_NATIVE_UINT8, mask, &rc);
        if (rc)
            return sn_error("maps file %s: cannot read the mask of image %d", m->file, i);
        for (long p = 0; p < n; p++)
            mask[p] = mask[p] != 0;
    }
    return SN_OK;
}

int maps_load_rgb(struct maps_file *m, int i, uint8_t *rgb)
{
    struct maps_h5 *h = m->h5;
    SN_ASSERT(h && i >= 0 && i < m->N);
    if (!m->has_images)
        return sn_error("maps file %s has no /images (write it with the input crops "
                        "to render pictures)",
                        m->file);
    hsize_t dims[4] = {(hsize_t)m->N, (hsize_t)m->H, (hsize_t)m->W, 3};
    int rc = SN_OK;
    slab_read(h->dimages, 4, i, dims, H5T_NATIVE_UINT8, rgb, &rc);
    if (rc) return sn_error("maps file %s: cannot read the crop of image %d", m->file, i);
    return SN_OK;
}

int maps_read(const char *path, struct maps_file *m)
{
    if (maps_open(path, m)) return SN_EUSER;
    long n = (long)m->H * m->W;
    m->maps = sn_malloc(sizeof(float) * (size_t)n * m->N);
    m->masks = sn_malloc((size_t)n * m->N);
    for (int i = 0; i < m->N; i++)
        if (maps_load(m, i, m->maps + i * n, m->masks + i * n)) return SN_EUSER;
    return SN_OK;
}

void maps_file_free(struct maps_file *m)
{
    struct maps_h5 *h = m->h5;
    if (h) {
        if (h->dimages >= 0) H5Dclose(h->dimages);
        if (h->dmasks >= 0) H5Dclose(h->dmasks);
        if (h->dmaps >= 0) H5Dclose(h->dmaps);
        if (h->file >= 0) H5Fclose(h->file);
        sn_free(h);
    }
    for (int i = 0; m->cls && i < m->N; i++)
        sn_free(m->cls[i]);
    for (int i = 0; m->path && i < m->N; i++)
        sn_free(m->path[i]);
    sn_free(m->cls);
    sn_free(m->path);
    sn_free(m->scores);
    sn_free(m->labels);
    sn_free(m->maps);
    sn_free(m->masks);
    sn_free(m->config);
    memset(m, 0, sizeof *m);
}
