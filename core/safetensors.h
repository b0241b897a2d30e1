/*
 * safetensors.h - reading pretrained weights from safetensors files.
 *
 * The format: an 8-byte little-endian header length, a JSON header mapping
 * each tensor name to {dtype, shape, data_offsets} (plus an optional
 * "__metadata__" object of strings), then the raw little-endian data. The
 * file is memory-mapped; tensors are converted to float32 on request from
 * F32, F16 or BF16. A PyTorch pickle (.pth, .pt, .bin) is recognised and
 * refused with a message saying how to obtain the safetensors file.
 */
#ifndef SNARM_SAFETENSORS_H
#define SNARM_SAFETENSORS_H

#include <stddef.h>

#define ST_MAX_DIMS 8

struct st_file;

/* Open and index a file. Returns SN_OK or SN_EUSER naming the file. */
int st_open(const char *path, struct st_file **out);
void st_close(struct st_file *f);

const char *st_path(const struct st_file *f);
/* Number of tensors and the i-th name (header order is not kept: sorted). */
int st_count(const struct st_file *f);
const char *st_name(const struct st_file *f, int i);
int st_has(const struct st_file *f, const char *name);
/* A string from "__metadata__", or NULL. */
const char *st_metadata(const struct st_file *f, const char *key);

/* Shape of a tensor: *ndim and dims[0..ndim). SN_EUSER when absent. */
int st_shape(const struct st_file *f, const char *name, int *ndim, long *dims);

/* Read a tensor as float32 into dst after checking that its shape is
 * exactly dims[0..ndim) (a missing tensor or a different shape is an error
 * naming the tensor, the file and both shapes). */
int st_read(const struct st_file *f, const char *name, int ndim, const long *dims,
            float *dst);

/* Hex SHA-256 of the whole file (65 bytes with the terminator); computed on
 * the first call and cached. */
const char *st_sha256(struct st_file *f);

/* SHA-256 of a buffer into 32 bytes (used for the file hash). */
void st_sha256_bytes(const void *data, size_t n, unsigned char digest[32]);

/* 1 if path looks like a PyTorch pickle checkpoint (by content or name). */
int st_is_torch_pickle(const char *path);

#endif
