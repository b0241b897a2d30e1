/*
 * store.h - the HDF5 feature store.
 *
 * One file per (dataset, class, split) holds the fused features of every
 * image of that split: dataset "features" (N x M x d float32, one image per
 * chunk, shuffle + deflate), "paths" (N strings), "labels" (N int32: 0 good,
 * 1 defective). Attributes make the file self-describing:
 *   dataset, class, split          what it holds
 *   backbone, weights_hash         the network and a hash of its weights file
 *   input_size, grid, d            crop size, feature grid side, feature dim
 *   layer_groups                   the fused blocks, e.g. "1,2,3,4|5,6,7,8"
 *   config                         the resolved configuration (YAML)
 *   version                        sn_version() of the writer
 *   complete                       1, written last
 *
 * A writer writes "<path>.tmp.<pid>" and renames it into place only in
 * store_writer_finish, so a killed run never leaves a file under the final
 * name. A reader refuses a file whose attributes differ from the expected
 * ones, naming the first attribute that differs; config and version are
 * recorded but not compared (they do not change the features).
 *
 *   struct store_meta m;  store_meta_init(&m);  ...fill m...
 *   if (store_matches(path, &m)) skip;          extraction is a no-op
 *   store_writer_open(&w, path, &m, M);  store_writer_put(w, f, path, label);
 *   store_writer_finish(w);   (or store_writer_abort(w) on error)
 *
 *   store_reader_open(&r, path, &m);  store_reader_get(r, i, f);
 *   store_reader_close(r);
 */
#ifndef SNARM_STORE_H
#define SNARM_STORE_H

#include <hdf5.h>

#include "common.h"

/* Check an HDF5 call on a file this process created or already validated: a
 * failure there is not user-fixable, so it stops with the file and line. */
#define STORE_H5(call)                                                                   \
    do {                                                                                 \
        if ((call) < 0) sn_fatal("HDF5 call failed: %s", #call);                         \
    } while (0)

/* Evaluate an HDF5 probe into out with the library's error printing off
 * (an absent attribute or a foreign file is expected, not a fault). */
#define STORE_H5_QUIET(expr, out)                                                        \
    do {                                                                                 \
        H5E_auto2_t fn_;                                                                 \
        void *data_;                                                                     \
        H5Eget_auto2(H5E_DEFAULT, &fn_, &data_);                                         \
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);                                           \
        (out) = (expr);                                                                  \
        H5Eset_auto2(H5E_DEFAULT, fn_, data_);                                           \
    } while (0)

#define STORE_STR 256

struct store_meta {
    char dataset[STORE_STR];
    char class_name[STORE_STR];
    char split[32]; /* "train" or "test" */
    char backbone[STORE_STR];
    char weights_hash[STORE_STR]; /* hex digest of the weights file */
    int input_size;
    int grid;
    int d;
    char layer_groups[STORE_STR];
    const char *config_yaml; /* recorded, not compared; NULL: "" */
    char version[32];        /* filled by the writer; read back */
};

/* Zero every field (config_yaml NULL). */
void store_meta_init(struct store_meta *m);

/* The store file name for (dataset, class, split) under dir:
 * "<dir>/<dataset>/<class>_<split>.h5". */
int store_path(char *out, size_t cap, const char *dir, const char *dataset,
               const char *class_name, const char *split);

struct store_writer;
struct store_reader;

/* Create the temporary file for path; cells = grid^2 (rows per image). */
int store_writer_open(struct store_writer **w, const char *path,
                      const struct store_meta *m, int cells);
/* Append one image: features (cells x d), its source path and label; NaN or
 * infinite features are a user error naming the image. */
int store_writer_put(struct store_writer *w, const float *feat, const char *image_path,
                     int label);
/* Write the paths/labels and the complete flag, close and rename into place;
 * frees w. */
int store_writer_finish(struct store_writer *w);
/* Close and delete the temporary file; frees w. */
void store_writer_abort(struct store_writer *w);

/*
 * Open a complete store. expect may be NULL (no check); otherwise each
 * compared attribute must match, else a user error naming the file, the
 * attribute, the stored and the expected value.
 */
int store_reader_open(struct store_reader **r, const char *path,
                      const struct store_meta *expect);
long store_reader_count(const struct store_reader *r);
int store_reader_cells(const struct store_reader *r);
/* The attributes as stored (config_yaml points into the reader). */
const struct store_meta *store_reader_meta(const struct store_reader *r);
/* Features of image i (cells x d). */
int store_reader_get(struct store_reader *r, long i, float *feat);
/* Features of images first .. first+n-1, contiguous (n x cells x d). */
int store_reader_get_range(struct store_reader *r, long first, long n, float *feat);
const char *store_reader_path(const struct store_reader *r, long i);
int store_reader_label(const struct store_reader *r, long i);
void store_reader_close(struct store_reader *r);

/* 1 when path is a complete store whose attributes match m (so extracting
 * it again is a no-op), 0 otherwise; the reason is logged at info level. */
int store_matches(const char *path, const struct store_meta *m);

/* Hash of a file's contents as 16 hex digits (FNV-1a 64), for weights_hash. */
int store_hash_file(const char *path, char out[17]);

/*
 * Attribute helpers shared with the bank file (coreset.c). Readers return
 * SN_EUSER naming the attribute when it is absent or of the wrong kind;
 * strings come back sn_strdup'ed.
 */
void store_attr_put_str(hid_t obj, const char *name, const char *value);
void store_attr_put_long(hid_t obj, const char *name, long value);
int store_attr_get_str(hid_t obj, const char *name, char **value);
int store_attr_get_long(hid_t obj, const char *name, long *value);
/* Open an existing HDF5 file read-only; a user error naming it otherwise. */
int store_h5_open(const char *path, hid_t *file);
/* Close a freshly written temporary file, flush it to disk and rename it
 * into place. */
int store_h5_commit(hid_t file, const char *tmp, const char *path);

#endif
