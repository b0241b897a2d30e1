/*
 * comm_nccl.cu - the NCCL implementation of the group all-reduce
 * (dist/comm.h): MPI starts the ranks and hands out the NCCL unique id from
 * the group root, NCCL moves the device buffers.
 *
 * Determinism. ncclAllReduce with ncclSum adds the ranks' contributions in
 * an order fixed by the communicator's topology, rank count, algorithm,
 * protocol and channel count, not by timing: for a fixed job layout on the
 * same machines and NCCL version, reruns are bit-identical. The algorithm
 * and protocol are pinned here (ring, simple) unless the environment
 * already sets NCCL_ALGO / NCCL_PROTO, so that NCCL's size-based tuning
 * cannot switch orders between buffers. The order is not the MPI
 * implementation's (rank order per element): the two differ by float
 * re-association, a few ulps per element.
 */
/* The C API only: this file is C++, and MPI's C++ bindings would need
 * their own library at link time. */
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "gpu_internal.cuh"

extern "C" {
#include "dist/comm.h"
}

#define NCCL_CHECK(call)                                                                 \
    do {                                                                                 \
        ncclResult_t nccl_rc_ = (call);                                                  \
        if (nccl_rc_ != ncclSuccess)                                                     \
            sn_fatal("NCCL error %d (%s): %s", (int)nccl_rc_,                            \
                     ncclGetErrorString(nccl_rc_), #call);                               \
    } while (0)

struct comm_nccl {
    ncclComm_t nccl;
    cudaStream_t stream;
    int device;
};

static void nccl_allreduce_sum(struct comm *c, float *buf, long n)
{
    struct comm_nccl *m = (struct comm_nccl *)c->impl;
    CUDA_CHECK(cudaSetDevice(m->device));
    NCCL_CHECK(
        ncclAllReduce(buf, buf, (size_t)n, ncclFloat, ncclSum, m->nccl, m->stream));
    /* synchronous, as the MPI implementation: the sum is ready on return */
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

static void nccl_close(struct comm *c)
{
    struct comm_nccl *m = (struct comm_nccl *)c->impl;
    CUDA_CHECK(cudaSetDevice(m->device));
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    NCCL_CHECK(ncclCommDestroy(m->nccl));
    CUDA_CHECK(cudaStreamDestroy(m->stream));
    sn_free(m);
    SN_MPI_CHECK(MPI_Comm_free(&c->mpi));
}

static const struct comm_ops nccl_ops = {nccl_allreduce_sum, nccl_close};

extern "C" int comm_open_nccl(struct comm *c, MPI_Comm group, int device)
{
    memset(c, 0, sizeof *c);
    SN_MPI_CHECK(MPI_Comm_dup(group, &c->mpi));
    SN_MPI_CHECK(MPI_Comm_rank(c->mpi, &c->rank));
    SN_MPI_CHECK(MPI_Comm_size(c->mpi, &c->size));
    c->ops = &nccl_ops;
    c->chunk = COMM_CHUNK_DEFAULT;

    /* a fixed reduction order: ring algorithm, simple protocol */
    setenv("NCCL_ALGO", "Ring", 0);
    setenv("NCCL_PROTO", "Simple", 0);

    /* the group root's unique id, to every rank over MPI */
    ncclUniqueId id;
    if (c->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    comm_share_bytes(c, &id, (long)sizeof id);

    struct comm_nccl *m = (struct comm_nccl *)sn_calloc(1, sizeof *m);
    m->device = device;
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
    NCCL_CHECK(ncclCommInitRank(&m->nccl, c->size, id, c->rank));
    c->impl = m;
    return SN_OK;
}

/* y = y / g element-wise (a division, as comm_grad_reduce: correctly
 * rounded for any group size). */
__global__ void grad_divide_kernel(float *grad, long n, float g)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x)
        grad[i] = __fdiv_rn(grad[i], g);
}

extern "C" void gpu_grad_reduce(float *grad, long n, void *ctx)
{
    struct comm *c = (struct comm *)ctx;
    if (!c || c->size == 1 || n <= 0) return;
    SN_ASSERT(c->ops == &nccl_ops);
    comm_allreduce_sum(c, grad, n);
    struct comm_nccl *m = (struct comm_nccl *)c->impl;
    grad_divide_kernel<<<gpu_blocks_capped(n, GPU_THREADS), GPU_THREADS, 0, m->stream>>>(
        grad, n, (float)c->size);
    KERNEL_CHECK();
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}
