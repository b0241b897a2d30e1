/*
 * maps.h - the anomaly-maps file: one HDF5 file per evaluated run.
 *
 * The file holds everything the metrics need, so that scoring never re-runs
 * a model, and it is plain HDF5 so that any tool (h5py, another method) can
 * write one and have it scored by `snarm metrics`. N images of H x W pixels:
 *
 *   /maps    (N, H, W) float32, or float16 (IEEE half) to halve the size;
 *            the root attribute maps_dtype records which ("float32" or
 *            "float16"). The pixel anomaly scores at the input resolution.
 *   /masks   (N, H, W) uint8, ground truth; 1 = defect. Any non-zero value
 *            is read as defect, so masks stored as 0/255 are accepted.
 *   /scores  (N) float32, the image anomaly scores.
 *   /labels  (N) uint8, 1 = defective image, 0 = good.
 *   /class   (N) string (variable-length UTF-8; fixed-length also read), the
 *            class (category) of each image; metrics are computed per class.
 *   /path    (N) string, the source image of each entry (for messages).
 *   /images  (N, H, W, 3) uint8, optional: the pre-processed RGB input crops,
 *            used by `snarm render`.
 *   root attributes (strings): config (the fully resolved YAML), method,
 *            setting, dataset, backbone, version, created (optional, for
 *            files from other tools; snarm writes none, so that a run
 *            gives the same bytes whenever it is made),
 *            maps_dtype. Only maps_dtype matters to the reader; the others
 *            label tables and pictures and are optional for foreign files.
 *
 * Datasets are chunked one image per chunk and deflate-compressed, so reading
 * one image touches one chunk. Writing is atomic: the writer fills
 * "<path>.tmp.<pid>" and renames it over path only in maps_writer_finish();
 * an aborted or crashed run never leaves a half-written maps file in place.
 *
 * Reading validates what the metrics rely on and reports a user error naming
 * the file (and the image where relevant): /maps and /masks of different
 * shapes, vectors of the wrong length, a NaN or infinity in a map.
 */
#ifndef SNARM_MAPS_H
#define SNARM_MAPS_H

#include <stdint.h>

#include "common.h"

/* ---- writing ------------------------------------------------------------ */

struct maps_writer;

/*
 * Create the temporary file for N images of H x W. dtype is "float32" or
 * "float16" (NULL means float32); with_images adds /images. attrs_yaml, if not
 * NULL, is stored as the root attribute "config"; maps_dtype and version are
 * set here too. Every index 0..N-1 must be put (at least once;
 * a later put of the same index replaces it) before maps_writer_finish().
 */
int maps_writer_open(const char *path, int N, int H, int W, const char *dtype,
                     int with_images, const char *attrs_yaml, struct maps_writer **w);

/*
 * Store image i: map (H*W floats, row-major), mask (H*W bytes, non-zero =
 * defect; stored as 0/1), image score, label (0/1), class name, source path,
 * and rgb (H*W*3 bytes) when the file was opened with images (else ignored;
 * may be NULL, in which case the image is stored black). A non-finite value in
 * the map is a user error naming the image.
 */
int maps_writer_put(struct maps_writer *w, int i, const float *map, const uint8_t *mask,
                    float score, int label, const char *cls, const char *path,
                    const uint8_t *rgb);

/* Set a root string attribute (method, setting, dataset, backbone, ...). */
int maps_writer_set_attr(struct maps_writer *w, const char *name, const char *value);

/* Write the per-image vectors, close, and rename into place (atomic). Frees w
 * whatever the outcome; on failure the temporary file is removed. */
int maps_writer_finish(struct maps_writer *w);

/* Close and remove the temporary file; frees w. */
void maps_writer_abort(struct maps_writer *w);

/* ---- reading ------------------------------------------------------------ */

struct maps_file {
    int N, H, W;
    float *scores;   /* N */
    uint8_t *labels; /* N, 0/1 */
    char **cls;      /* N class names */
    char **path;     /* N source paths */
    /* Filled by maps_read() (NULL after maps_open() alone). */
    float *maps;    /* N*H*W */
    uint8_t *masks; /* N*H*W, 0/1 */
    int has_images; /* the file has /images */
    /* Root attributes; "" when absent. config is NULL when absent. */
    char method[64], setting[64], dataset[64], backbone[256];
    char version[32], created[40], maps_dtype[16];
    char *config;
    char file[1024]; /* the path the file was opened from */
    void *h5;        /* open HDF5 handles (internal) */
};

/* Open a maps file and read its metadata and the per-image vectors; the maps,
 * masks and images stay on disk until loaded. Whatever the outcome, release
 * m with maps_file_free(). */
int maps_open(const char *path, struct maps_file *m);

/* Load image i's map (H*W floats) and mask (H*W bytes, binarised to 0/1).
 * Either output may be NULL. A non-finite map value is a user error naming the
 * file, the index and the source path of the image. */
int maps_load(struct maps_file *m, int i, float *map, uint8_t *mask);

/* Load image i's RGB crop (H*W*3); user error if the file has no /images. */
int maps_load_rgb(struct maps_file *m, int i, uint8_t *rgb);

/* maps_open() followed by loading every map and mask into m->maps/m->masks. */
int maps_read(const char *path, struct maps_file *m);

/* Release everything maps_open()/maps_read() allocated and close the file. */
void maps_file_free(struct maps_file *m);

#endif
