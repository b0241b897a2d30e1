/*
 * test_cuda_nccl.c - the NCCL all-reduce (comm_open_nccl, gpu_grad_reduce)
 * against the MPI implementation of dist/comm.h on the same data.
 *
 * Run alone it is one rank: the all-reduce must be the identity, bit for
 * bit (NCCL is called directly through the ops table, since
 * comm_allreduce_sum skips groups of one). Under mpiexec with g ranks it
 * needs g visible GPUs (rank r uses device r) and skips otherwise. With two
 * ranks a sum of two floats does not depend on the order, so NCCL and MPI
 * must agree bit for bit; with more, to g ulps (rtol 1.2e-7 g). Reruns
 * must give the same bits, and every rank must hold the same result.
 */
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "kernels/gpu.h"
#include "testutil.h"

/* An odd size, above NCCL's small-message paths. */
#define NCCL_TEST_N 1000003L

static uint64_t fnv(const float *v, long n)
{
    const unsigned char *b = (const unsigned char *)v;
    uint64_t h = 1469598103934665603ull;
    for (long i = 0; i < n * (long)sizeof(float); i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The same bits on every rank: the hash's minimum equals its maximum. */
static int same_on_all_ranks(const float *v, long n)
{
    unsigned long long h = fnv(v, n), lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

static void run(int rank, int size)
{
    const long n = NCCL_TEST_N;
    const size_t bytes = sizeof(float) * (size_t)n;
    struct gpu_ctx *g = gpu_ctx_new(rank);
    struct gpu_arena mem;
    gpu_arena_init(&mem, 2 * bytes + 1024);
    float *d = gpu_arena_floats(&mem, (size_t)n), *d2 = gpu_arena_floats(&mem, (size_t)n);
    float *x = sn_malloc(bytes), *ref = sn_malloc(bytes), *got = sn_malloc(bytes);
    float *again = sn_malloc(bytes);
    struct rng_state r;
    rng_seed(&r, 5, (uint64_t)rank);
    rng_fill_normal(&r, x, n, 1.0f);

    /* the MPI sum on the host is the reference */
    struct comm cm, cn;
    comm_open_mpi(&cm, MPI_COMM_WORLD);
    TU_CHECK(comm_open_nccl(&cn, MPI_COMM_WORLD, rank) == SN_OK);
    memcpy(ref, x, bytes);
    comm_allreduce_sum(&cm, ref, n);

    /* NCCL directly, twice from the same input */
    gpu_upload(g, d, x, bytes);
    gpu_sync(g);
    cn.ops->allreduce_sum(&cn, d, n);
    gpu_download(g, got, d, bytes);
    gpu_upload(g, d, x, bytes);
    gpu_sync(g);
    cn.ops->allreduce_sum(&cn, d, n);
    gpu_download(g, again, d, bytes);
    double rtol = size <= 2 ? 0.0 : 1.2e-7 * size;
    TU_CLOSE("nccl sum vs mpi sum", got, ref, n, 0.0, rtol);
    TU_CHECK_MSG(memcmp(got, again, bytes) == 0, "NCCL rerun gave different bits");
    TU_CHECK_MSG(same_on_all_ranks(got, n), "ranks hold different sums");

    /* the trainer's mean gradient, on the device and on the host */
    gpu_upload(g, d2, x, bytes);
    gpu_sync(g);
    gpu_grad_reduce(d2, n, &cn);
    gpu_download(g, got, d2, bytes);
    memcpy(ref, x, bytes);
    comm_grad_reduce(ref, n, &cm);
    TU_CLOSE("nccl grad mean vs mpi grad mean", got, ref, n, 0.0, rtol);

    comm_close(&cn);
    comm_close(&cm);
    sn_free(x);
    sn_free(ref);
    sn_free(got);
    sn_free(again);
    gpu_arena_free(&mem);
    gpu_ctx_free(g);
}

int main(int argc, char **argv)
{
    /* skipping before MPI starts keeps every rank's exit status 77 */
    if (!gpu_available())
        tu_skip("test_cuda_nccl: no CUDA device visible (driver or GPU missing)");
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    sn_set_rank(rank, size);
    int ndev = gpu_device_count();
    if (ndev < size) {
        if (rank == 0)
            printf("SKIP: test_cuda_nccl: %d ranks need %d GPUs, %d visible\n", size,
                   size, ndev);
        MPI_Finalize();
        return 77;
    }

    printf("test_cuda_nccl: rank %d of %d on device %d\n", rank, size, rank);
    run(rank, size);
    int failed = tu_failed, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    int st = tu_finish("test_cuda_nccl");
    return any ? 1 : st;
}
