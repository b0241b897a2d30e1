/*
 * test_cuda_util.h - what the CUDA parity tests share: the skip rule, one
 * device arena per test, host/device copies and random host buffers.
 *
 * Each parity test runs the CPU twin and the device kernel on the same
 * random inputs (core/rng.h, fixed seeds) and compares with TU_CLOSE, which
 * prints the largest difference of every comparison. Tolerances are stated
 * at each comparison with the reason.
 */
#ifndef SNARM_TEST_CUDA_UTIL_H
#define SNARM_TEST_CUDA_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/gpu.h"
#include "testutil.h"

/* Device memory of one test (1 GiB is far above what the small shapes use). */
#define TCU_ARENA_BYTES ((size_t)1 << 30)

static struct gpu_ctx *tcu_g;
static struct gpu_arena tcu_mem;
static struct rng_state tcu_rng;

/* Host buffers of the test, released together at the end. */
static void *tcu_owned[1024];
static int tcu_nowned;

/* Skip (77) where this build or machine has no usable device. */
static inline void tcu_start(const char *name, uint64_t seed)
{
    if (!gpu_available())
        tu_skip("%s: no CUDA device visible (driver or GPU missing); the parity "
                "tests need one",
                name);
    tcu_g = gpu_ctx_new(0);
    gpu_arena_init(&tcu_mem, TCU_ARENA_BYTES);
    rng_seed(&tcu_rng, seed, rng_hash_str(name));
    char desc[256];
    gpu_ctx_describe(tcu_g, desc, sizeof desc);
    printf("%s on %s\n", name, desc);
}

static inline int tcu_finish(const char *name)
{
    gpu_sync(tcu_g);
    gpu_arena_free(&tcu_mem);
    gpu_ctx_free(tcu_g);
    for (int i = 0; i < tcu_nowned; i++)
        free(tcu_owned[i]);
    return tu_finish(name);
}

static inline void *tcu_host(size_t bytes)
{
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p || tcu_nowned == (int)SN_ARRAY_LEN(tcu_owned)) abort();
    tcu_owned[tcu_nowned++] = p;
    return p;
}

static inline float *tcu_floats(long n)
{
    return tcu_host(sizeof(float) * (size_t)n);
}

/* Host normals N(mean, scale^2). */
static inline float *tcu_randn(long n, float mean, float scale)
{
    float *p = tcu_floats(n);
    rng_fill_normal(&tcu_rng, p, n, scale);
    for (long i = 0; i < n; i++)
        p[i] += mean;
    return p;
}

/* Host uniforms in [lo, hi). */
static inline float *tcu_randu(long n, float lo, float hi)
{
    float *p = tcu_floats(n);
    for (long i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (float)rng_uniform(&tcu_rng);
    return p;
}

static inline float *tcu_copy(const float *src, long n)
{
    float *p = tcu_floats(n);
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

/* A device copy of n host floats (NULL stays NULL); synchronised, so the
 * host buffer may change right after. */
static inline float *tcu_dev(const float *host, long n)
{
    if (!host) return NULL;
    float *d = gpu_arena_floats(&tcu_mem, (size_t)(n ? n : 1));
    gpu_upload(tcu_g, d, host, sizeof(float) * (size_t)n);
    gpu_sync(tcu_g);
    return d;
}

static inline float *tcu_dev_zero(long n)
{
    float *d = gpu_arena_floats(&tcu_mem, (size_t)(n ? n : 1));
    gpu_zero(tcu_g, d, sizeof(float) * (size_t)n);
    return d;
}

/* A host copy of n device floats. */
static inline float *tcu_back(const float *dev, long n)
{
    float *h = tcu_floats(n);
    gpu_download(tcu_g, h, dev, sizeof(float) * (size_t)n);
    return h;
}

static inline float tcu_max_abs(const float *v, long n)
{
    float m = 0;
    for (long i = 0; i < n; i++)
        m = fmaxf(m, fabsf(v[i]));
    return m;
}

#endif
