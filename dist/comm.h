/*
 * comm.h - gradient all-reduce for data-parallel training of one unit over a
 * group of ranks.
 *
 * A struct comm wraps a group communicator (one per training group, split
 * from the world by the scheduler) behind one operation: sum a float buffer
 * over the group. Two implementations share the interface:
 *
 *   MPI  (comm_open_mpi, every build; host buffers). The sum is computed in
 *        a fixed order that does not depend on timing: each rank owns a
 *        contiguous slice of the buffer, receives that slice from every rank
 *        (MPI_Alltoallv), adds the contributions in rank order 0, 1, ...,
 *        g-1 in float, and the slices are gathered back to everyone
 *        (MPI_Allgatherv). Every element is therefore always
 *        ((x_0 + x_1) + x_2) + ..., whatever the slicing or the arrival order,
 *        so repeated runs are bit-identical and every rank holds the same
 *        bits. Large buffers go in chunks so the scratch space stays bounded.
 *
 *   NCCL (comm_open_nccl, CUDA builds only; device buffers). Implemented
 *        under kernels/cuda/: MPI hands out the ncclUniqueId from the group
 *        root (comm_share_bytes), NCCL moves the tensors. NCCL's own sum
 *        order is fixed for a fixed topology and algorithm, not across them;
 *        the implementation should pin the algorithm (ring) for bit-identical
 *        reruns.
 *
 * One rank versus g ranks: a group of g ranks splits each batch into g
 * shares and sums per-rank partial gradients, so its result differs from a
 * single rank's by float re-association only (relative differences of a few
 * ulps per reduction; the tests bound the drift of a short training run).
 */
#ifndef SNARM_COMM_H
#define SNARM_COMM_H

#include <mpi.h>

#include "common.h"

/* Floats reduced per round; bounds the scratch space at this many floats. */
#define COMM_CHUNK_DEFAULT (1L << 20)

struct comm;

struct comm_ops {
    void (*allreduce_sum)(struct comm *c, float *buf, long n);
    void (*close)(struct comm *c);
};

struct comm {
    const struct comm_ops *ops;
    MPI_Comm mpi; /* our duplicate of the group communicator */
    int rank, size;
    long chunk; /* floats per round (MPI); may be lowered, never raised */
    float *scratch;
    void *impl; /* implementation state (the NCCL communicator) */
};

/* Wrap a group communicator (duplicated, so our traffic cannot mix with the
 * caller's). Collective over the group. */
int comm_open_mpi(struct comm *c, MPI_Comm group);
/* Collective; releases what the implementation holds. */
void comm_close(struct comm *c);

/* Sum buf[0..n-1] over the group in place, in the fixed order described
 * above. Collective: every rank passes the same n. */
void comm_allreduce_sum(struct comm *c, float *buf, long n);

/* The trainer's grad_reduce callback (ctx is a struct comm *): the mean of
 * the gradient over the group. Each rank passes the mean gradient of an
 * equal share of the batch, so the group mean is the batch mean. A NULL ctx
 * or a group of one leaves the gradient untouched. */
void comm_grad_reduce(float *grad, long n, void *ctx);

/* Copy bytes from the group root to every rank (parameters at start, the
 * NCCL unique id). */
void comm_share_bytes(struct comm *c, void *buf, long bytes);

/* The share [*lo, *hi) of n items that rank r of a group of size g takes:
 * contiguous, sizes differing by at most one. */
void comm_share_range(long n, int r, int g, long *lo, long *hi);

#ifdef SNARM_HAVE_CUDA
/* NCCL communicator over the same group, on the given CUDA device; buffers
 * passed to comm_allreduce_sum are then device pointers. Defined under
 * kernels/cuda/. */
int comm_open_nccl(struct comm *c, MPI_Comm group, int device);
#endif

/* Check an MPI call; a failure is fatal and names the call. */
#define SN_MPI_CHECK(call)                                                               \
    do {                                                                                 \
        int mpi_rc_ = (call);                                                            \
        if (mpi_rc_ != MPI_SUCCESS)                                                      \
            sn_fatal("MPI call failed (error %d): %s", mpi_rc_, #call);                  \
    } while (0)

#endif
