/*
 * comm.c - the MPI implementation of the group all-reduce, summing in rank
 * order so that the result is independent of timing.
 */
#include "comm.h"

#include <string.h>

/* Per-round slice layout, kept between calls. */
struct comm_mpi {
    int *send_counts, *send_displs, *recv_counts, *recv_displs;
};

void comm_share_range(long n, int r, int g, long *lo, long *hi)
{
    SN_ASSERT(g > 0 && r >= 0 && r < g && n >= 0);
    *lo = n * r / g;
    *hi = n * (r + 1) / g;
}

/* One round: slice j of buf goes to rank j, which adds the g copies of its
 * slice in rank order; then every rank gathers every summed slice. */
static void mpi_reduce_round(struct comm *c, float *buf, long n)
{
    struct comm_mpi *m = c->impl;
    int g = c->size;
    for (int j = 0; j < g; j++) {
        long lo, hi;
        comm_share_range(n, j, g, &lo, &hi);
        m->send_counts[j] = (int)(hi - lo);
        m->send_displs[j] = (int)lo;
    }
    int mine = m->send_counts[c->rank];
    for (int i = 0; i < g; i++) {
        m->recv_counts[i] = mine;
        m->recv_displs[i] = i * mine;
    }
    SN_MPI_CHECK(MPI_Alltoallv(buf, m->send_counts, m->send_displs, MPI_FLOAT, c->scratch,
                               m->recv_counts, m->recv_displs, MPI_FLOAT, c->mpi));

    /* the fixed order: contributions of ranks 0, 1, ..., g-1 */
    float *out = buf + m->send_displs[c->rank];
    for (int k = 0; k < mine; k++) {
        float acc = c->scratch[k];
        for (int i = 1; i < g; i++)
            acc += c->scratch[(long)i * mine + k];
        out[k] = acc;
    }
    SN_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->send_counts,
                                m->send_displs, MPI_FLOAT, c->mpi));
}

static void mpi_allreduce_sum(struct comm *c, float *buf, long n)
{
    /* the scratch space was sized for the default round */
    SN_ASSERT(c->chunk >= 1 && c->chunk <= COMM_CHUNK_DEFAULT);
    for (long at = 0; at < n; at += c->chunk)
        mpi_reduce_round(c, buf + at, SN_MIN(c->chunk, n - at));
}

static void mpi_close(struct comm *c)
{
    struct comm_mpi *m = c->impl;
    sn_free(m->send_counts);
    sn_free(m->send_displs);
    sn_free(m->recv_counts);
    sn_free(m->recv_displs);
    sn_free(m);
    sn_free(c->scratch);
    SN_MPI_CHECK(MPI_Comm_free(&c->mpi));
}

static const struct comm_ops mpi_ops = {mpi_allreduce_sum, mpi_close};

int comm_open_mpi(struct comm *c, MPI_Comm group)
{
    memset(c, 0, sizeof *c);
    SN_MPI_CHECK(MPI_Comm_dup(group, &c->mpi));
    SN_MPI_CHECK(MPI_Comm_rank(c->mpi, &c->rank));
    SN_MPI_CHECK(MPI_Comm_size(c->mpi, &c->size));
    c->ops = &mpi_ops;
    c->chunk = COMM_CHUNK_DEFAULT;

    /* scratch for g copies of one slice of the largest round */
    struct comm_mpi *m = sn_calloc(1, sizeof *m);
    size_t g = (size_t)c->size;
    m->send_counts = sn_calloc(g, sizeof(int));
    m->send_displs = sn_calloc(g, sizeof(int));
    m->recv_counts = sn_calloc(g, sizeof(int));
    m->recv_displs = sn_calloc(g, sizeof(int));
    c->impl = m;
    c->scratch = sn_malloc((size_t)(COMM_CHUNK_DEFAULT + c->size) * sizeof(float));
    return SN_OK;
}

void comm_close(struct comm *c)
{
    if (!c->ops) return;
    c->ops->close(c);
    memset(c, 0, sizeof *c);
}

void comm_allreduce_sum(struct comm *c, float *buf, long n)
{
    SN_ASSERT(n >= 0);
    if (c->size == 1 || n == 0) return;
    c->ops->allreduce_sum(c, buf, n);
}

void comm_grad_reduce(float *grad, long n, void *ctx)
{
    struct comm *c = ctx;
    if (!c || c->size == 1) return;
    comm_allreduce_sum(c, grad, n);
    /* division, not a reciprocal product: correctly rounded for any g */
    float g = (float)c->size;
    for (long i = 0; i < n; i++)
        grad[i] /= g;
}

void comm_share_bytes(struct comm *c, void *buf, long bytes)
{
    SN_ASSERT(bytes >= 0);
    for (long at = 0; at < bytes; at += 1L << 30) {
        int n = (int)SN_MIN(1L << 30, bytes - at);
        SN_MPI_CHECK(MPI_Bcast((char *)buf + at, n, MPI_BYTE, 0, c->mpi));
    }
}
