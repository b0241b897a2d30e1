/*
 * decoder_io.c - the decoder's parameters and BatchNorm statistics in HDF5:
 * one float32 dataset per tensor with PyTorch's shape, under /params and
 * /buffers, and the dimensions as attributes of the root group (so that a
 * file made with other settings is refused with the key that differs).
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "decoder.h"
#include "h5util.h"
#include "store.h"

/* The dimension attributes: name, and where to find the value. */
struct dim_attr {
    const char *name;
    int value;
};

static int dim_attrs(const struct decoder_dims *dd, struct dim_attr *a)
{
    int n = 0;
    a[n++] = (struct dim_attr){"grid", dd->grid};
    a[n++] = (struct dim_attr){"d", dd->d};
    a[n++] = (struct dim_attr){"in_ch", dd->in_ch};
    a[n++] = (struct dim_attr){"e", dd->e};
    a[n++] = (struct dim_attr){"blocks", dd->blocks};
    a[n++] = (struct dim_attr){"scans", dd->scans};
    a[n++] = (struct dim_attr){"branches", dd->branches};
    a[n++] = (struct dim_attr){"d_state", dd->mx.n};
    a[n++] = (struct dim_attr){"d_conv", dd->mx.k};
    a[n++] = (struct dim_attr){"expand", dd->mx.E / dd->mx.e};
    return n;
}

static void attr_write_ints(hid_t loc, const char *name, const int *v, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t at = H5Acreate2(loc, name, H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT);
    STORE_H5(at);
    STORE_H5(H5Awrite(at, H5T_NATIVE_INT, v));
    H5Aclose(at);
    H5Sclose(sp);
}

void decoder_dims_write(hid_t file, const struct decoder_dims *dims)
{
    struct dim_attr a[16];
    int n = dim_attrs(dims, a);
    for (int i = 0; i < n; i++)
        attr_write_ints(file, a[i].name, &a[i].value, 1);
    attr_write_ints(file, "dilations", dims->dil, dims->branches);
}

/* Read an int attribute array of up to cap values; returns the count or -1. */
static int attr_read_ints(hid_t loc, const char *name, int *v, int cap)
{
    htri_t exists;
    STORE_H5_QUIET(H5Aexists(loc, name), exists);
    if (exists <= 0) return -1;
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(at);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int ok = n >= 1 && n <= cap && H5Aread(at, H5T_NATIVE_INT, v) >= 0;
    H5Sclose(sp);
    H5Aclose(at);
    return ok ? (int)n : -1;
}

int decoder_dims_check(hid_t file, const char *path, const struct decoder_dims *dims)
{
    struct dim_attr a[16];
    int n = dim_attrs(dims, a), v[DECODER_MAX_BRANCHES];

    for (int i = 0; i < n; i++) {
        if (attr_read_ints(file, a[i].name, v, 1) != 1)
            return sn_error("%s: no decoder attribute '%s' (not a decoder file?)", path,
                            a[i].name);
        if (v[0] != a[i].value)
            return sn_error("%s: decoder %s = %d, but the configuration gives %d", path,
                            a[i].name, v[0], a[i].value);
    }
    int nd = attr_read_ints(file, "dilations", v, DECODER_MAX_BRANCHES);
    if (nd != dims->branches || memcmp(v, dims->dil, sizeof(int) * (size_t)nd))
        return sn_error("%s: the decoder's dilations differ from the configuration's",
                        path);
    return SN_OK;
}

void decoder_tensors_write(hid_t file, const char *group, const struct decoder_tensor *t,
                           int n, const float *base)
{
    /* No time stamps: the same model gives the same bytes. */
    hid_t gcpl = h5_gcpl_untimed(), dcpl = h5_dcpl_untimed();
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    STORE_H5(g);
    for (int i = 0; i < n; i++) {
        hsize_t dims[4];
        for (int k = 0; k < t[i].ndim; k++)
            dims[k] = (hsize_t)t[i].shape[k];
        hid_t sp = H5Screate_simple(t[i].ndim, dims, NULL);
        hid_t ds =
            H5Dcreate2(g, t[i].name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        STORE_H5(ds);
        STORE_H5(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                          base + t[i].offset));
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Gclose(g);
    H5Pclose(gcpl);
    H5Pclose(dcpl);
}

/* Check one dataset's shape against the tensor's. */
static int tensor_shape_check(hid_t ds, const char *path, const char *group,
                              const struct decoder_tensor *t)
{
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    int ok = nd == t->ndim && nd <= 8;
    if (ok) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int k = 0; k < nd; k++)
            ok = ok && dims[k] == (hsize_t)t->shape[k];
    }
    H5Sclose(sp);
    if (!ok)
        return sn_error("%s: tensor %s/%s has a shape other than the configuration's",
                        path, group, t->name);
    return SN_OK;
}

int decoder_tensors_read(hid_t file, const char *path, const char *group,
                         const struct decoder_tensor *t, int n, float *base)
{
    htri_t exists;
    STORE_H5_QUIET(H5Lexists(file, group, H5P_DEFAULT), exists);
    if (exists <= 0) return sn_error("%s: no group %s", path, group);
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    STORE_H5(g);

    int st = SN_OK;
    for (int i = 0; i < n && st == SN_OK; i++) {
        STORE_H5_QUIET(H5Lexists(g, t[i].name, H5P_DEFAULT), exists);
        if (exists <= 0) {
            st = sn_error("%s: tensor %s/%s is missing", path, group, t[i].name);
            break;
        }
        hid_t ds = H5Dopen2(g, t[i].name, H5P_DEFAULT);
        st = tensor_shape_check(ds, path, group, &t[i]);
        if (st == SN_OK && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                   base + t[i].offset) < 0)
            st = sn_error("%s: cannot read tensor %s/%s", path, group, t[i].name);
        H5Dclose(ds);
    }
    H5Gclose(g);
    return st;
}

int decoder_save(const struct decoder *dec, const char *path)
{
    char tmp[4096];
    sn_tmp_name(tmp, sizeof tmp, path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return sn_error("cannot create %s", tmp);

    decoder_dims_write(f, &dec->dims);
    decoder_tensors_write(f, "/params", dec->tensors, dec->n_tensors, dec->params);
    decoder_tensors_write(f, "/buffers", dec->buffer_tensors, dec->n_buffer_tensors,
                          dec->buffers);
    STORE_H5(H5Fclose(f));
    return sn_rename_into_place(tmp, path);
}

int decoder_load(struct decoder *dec, const char *path)
{
    hid_t f;
    STORE_H5_QUIET(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), f);
    if (f < 0) return sn_error("cannot open decoder file %s", path);

    int st = decoder_dims_check(f, path, &dec->dims);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/params", dec->tensors, dec->n_tensors,
                                  dec->params);
    if (st == SN_OK)
        st = decoder_tensors_read(f, path, "/buffers", dec->buffer_tensors,
                                  dec->n_buffer_tensors, dec->buffers);
    H5Fclose(f);
    return st;
}
