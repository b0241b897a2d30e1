#define _GNU_SOURCE
#include "safetensors.h"

#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* Float types are read; other types (e.g. BatchNorm's I64 counters) are
 * indexed so that files holding them open, and refused only when read. */
enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_OTHER };

static const struct {
    const char *name;
    enum st_dtype type;
    size_t size;
} st_dtypes[] = {{"F32", ST_F32, 4},   {"F16", ST_F16, 2},   {"BF16", ST_BF16, 2},
                 {"F64", ST_OTHER, 8}, {"I64", ST_OTHER, 8}, {"I32", ST_OTHER, 4},
                 {"I16", ST_OTHER, 2}, {"I8", ST_OTHER, 1},  {"U8", ST_OTHER, 1},
                 {"BOOL", ST_OTHER, 1}};

struct st_entry {
    char *name;
    enum st_dtype dtype;
    char dtype_name[8];
    size_t elem; /* bytes per element */
    int ndim;
    long dims[ST_MAX_DIMS];
    size_t begin, end; /* byte offsets into the data section */
};

struct st_file {
    char *path;
    const unsigned char *map;
    size_t size;
    const unsigned char *data; /* start of the data section */
    size_t data_size;
    int n;
    struct st_entry *e;
    json_t *meta;
    char sha[65];
};

/* Message for the checkpoints users most often have instead. */
static int st_error_pickle(const char *path)
{
    return sn_error(
        "%s is a PyTorch pickle checkpoint (.pth); snarm reads only safetensors "
        "files. Download model.safetensors of the Hugging Face model "
        "facebook/dinov2-with-registers-base (or the matching size), or convert "
        "the checkpoint where PyTorch is installed: python3 -c \"import torch; "
        "from safetensors.torch import save_file; "
        "sd = torch.load('%s', map_location='cpu'); "
        "save_file({k: v.contiguous() for k, v in sd.items()}, 'model.safetensors')\"",
        path, path);
}

int st_is_torch_pickle(const char *path)
{
    if (sn_ends_with(path, ".pth") || sn_ends_with(path, ".pt") ||
        sn_ends_with(path, ".ckpt"))
        return 1;
    /* Zip archives (torch.save since 1.6) and raw pickles (protocol 2+). */
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    unsigned char m[2] = {0, 0};
    size_t got = fread(m, 1, 2, fp);
    fclose(fp);
    return got == 2 && ((m[0] == 'P' && m[1] == 'K') || m[0] == 0x80);
}

static int st_dtype_parse(const char *s, struct st_entry *e)
{
    for (size_t i = 0; i < SN_ARRAY_LEN(st_dtypes); i++)
        if (!strcmp(s, st_dtypes[i].name)) {
            e->dtype = st_dtypes[i].type;
            e->elem = st_dtypes[i].size;
            snprintf(e->dtype_name, sizeof e->dtype_name, "%s", s);
            return SN_OK;
        }
    return SN_EUSER;
}

static int st_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct st_entry *)a)->name, ((const struct st_entry *)b)->name);
}

/* One header entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]}. */
static int st_entry_parse(struct st_file *f, const char *name, json_t *v,
                          struct st_entry *e)
{
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape");
    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_array_size(off) != 2 || json_array_size(sh) > ST_MAX_DIMS)
        return sn_error("%s: malformed header entry for tensor %s", f->path, name);
    if (st_dtype_parse(json_string_value(dt), e))
        return sn_error("%s: tensor %s has unknown dtype %s", f->path, name,
                        json_string_value(dt));

    /* Shape and byte range must agree with each other and the file. */
    size_t count = 1;
    e->ndim = (int)json_array_size(sh);
    for (int d = 0; d < e->ndim; d++) {
        json_t *x = json_array_get(sh, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return sn_error("%s: tensor %s has a bad shape", f->path, name);
        e->dims[d] = (long)json_integer_value(x);
        count *= (size_t)e->dims[d];
    }
    json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(en))
        return sn_error("%s: tensor %s has bad data_offsets", f->path, name);
    e->begin = (size_t)json_integer_value(b);
    e->end = (size_t)json_integer_value(en);
    if (e->end < e->begin || e->end > f->data_size ||
        e->end - e->begin != count * e->elem)
        return sn_error("%s: tensor %s: data_offsets do not match its shape or lie "
                        "outside the file (truncated download?)",
                        f->path, name);
    e->name = sn_strdup(name);
    return SN_OK;
}

static int st_header_parse(struct st_file *f, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sn_error("%s: the safetensors header is not a JSON object (%s)", f->path,
                        jerr.text);
    }
    f->e = sn_calloc(json_object_size(root) + 1, sizeof *f->e);
    const char *key;
    json_t *v;
    int rc = SN_OK;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__")) {
            f->meta = json_incref(v);
            continue;
        }
        rc = st_entry_parse(f, key, v, &f->e[f->n]);
        if (rc) break;
        f->n++;
    }
    json_decref(root);
    qsort(f->e, (size_t)f->n, sizeof *f->e, st_entry_cmp);
    return rc;
}

static int st_map(struct st_file *f)
{
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return sn_error("cannot open weights file %s", f->path);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 8) {
        close(fd);
        return sn_error("%s is too short to be a safetensors file", f->path);
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return sn_error("cannot memory-map %s", f->path);
    f->map = m;
    return SN_OK;
}

int st_open(const char *path, struct st_file **out)
{
    *out = NULL;
    if (!sn_file_exists(path)) return sn_error("weights file %s does not exist", path);
    if (st_is_torch_pickle(path)) return st_error_pickle(path);

    struct st_file *f = sn_calloc(1, sizeof *f);
    f->path = sn_strdup(path);
    int rc = st_map(f);

    /* Header: 8-byte little-endian length, then that much JSON. */
    uint64_t hlen = 0;
    if (!rc) {
        for (int i = 7; i >= 0; i--)
            hlen = (hlen << 8) | f->map[i];
        if (hlen == 0 || hlen > f->size - 8)
            rc = sn_error("%s is not a safetensors file (header length %llu, file "
                          "size %zu)",
                          path, (unsigned long long)hlen, f->size);
    }
    if (!rc) {
        f->data = f->map + 8 + hlen;
        f->data_size = f->size - 8 - (size_t)hlen;
        rc = st_header_parse(f, (const char *)f->map + 8, (size_t)hlen);
    }
    if (rc) {
        st_close(f);
        return rc;
    }
    *out = f;
    return SN_OK;
}

void st_close(struct st_file *f)
{
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    for (int i = 0; i < f->n; i++)
        sn_free(f->e[i].name);
    sn_free(f->e);
    json_decref(f->meta);
    sn_free(f->path);
    sn_free(f);
}

const char *st_path(const struct st_file *f)
{
    return f->path;
}

int st_count(const struct st_file *f)
{
    return f->n;
}

const char *st_name(const struct st_file *f, int i)
{
    return f->e[i].name;
}

static const struct st_entry *st_find(const struct st_file *f, const char *name)
{
    struct st_entry key = {.name = (char *)name};
    return bsearch(&key, f->e, (size_t)f->n, sizeof key, st_entry_cmp);
}

int st_has(const struct st_file *f, const char *name)
{
    return st_find(f, name) != NULL;
}

const char *st_metadata(const struct st_file *f, const char *key)
{
    json_t *v = f->meta ? json_object_get(f->meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int st_shape(const struct st_file *f, const char *name, int *ndim, long *dims)
{
    const struct st_entry *e = st_find(f, name);
    if (!e) return sn_error("%s: tensor %s is missing", f->path, name);
    *ndim = e->ndim;
    memcpy(dims, e->dims, sizeof(long) * (size_t)e->ndim);
    return SN_OK;
}

static void st_shape_str(char *buf, size_t cap, int ndim, const long *dims)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%ld", d ? ", " : "", dims[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* IEEE half and bfloat16 to float, by their bit patterns. */
static float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, ex = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (ex == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (ex != 0) {
        bits = sign | ((ex + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* Subnormal half: normalise the mantissa. */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static void st_convert(const struct st_entry *e, const unsigned char *src, float *dst,
                       size_t count)
{
    if (e->dtype == ST_F32) {
        memcpy(dst, src, count * 4);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
        if (e->dtype == ST_F16) {
            dst[i] = st_f16_to_f32(h);
        } else {
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
    }
}

int st_read(const struct st_file *f, const char *name, int ndim, const long *dims,
            float *dst)
{
    const struct st_entry *e = st_find(f, name);
    if (!e) return sn_error("%s: tensor %s is missing", f->path, name);
    int same = e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = e->dims[d] == dims[d];
    if (!same) {
        char got[128], want[128];
        st_shape_str(got, sizeof got, e->ndim, e->dims);
        st_shape_str(want, sizeof want, ndim, dims);
        return sn_error("%s: tensor %s has shape %s, expected %s", f->path, name, got,
                        want);
    }
    if (e->dtype == ST_OTHER)
        return sn_error("%s: tensor %s has dtype %s; weights must be F32, F16 or BF16",
                        f->path, name, e->dtype_name);
    size_t count = (e->end - e->begin) / e->elem;
    st_convert(e, f->data + e->begin, dst, count);
    return SN_OK;
}

/* SHA-256 through OpenSSL's libcrypto. */
void st_sha256_bytes(const void *data, size_t n, unsigned char digest[32])
{
    unsigned int len = 0;
    if (!EVP_Digest(data, n, digest, &len, EVP_sha256(), NULL) || len != 32)
        sn_fatal("SHA-256 failed in libcrypto");
}

const char *st_sha256(struct st_file *f)
{
    if (!f->sha[0]) {
        unsigned char d[32];
        st_sha256_bytes(f->map, f->size, d);
        for (int i = 0; i < 32; i++)
            snprintf(f->sha + 2 * i, 3, "%02x", d[i]);
    }
    return f->sha;
}
