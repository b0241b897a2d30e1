/* The gradient all-reduce under mpirun -n 3: sums in rank order bit for bit,
 * independent of timing and chunking; one rank versus a group of two in a
 * short data-parallel training within tolerance; repeated runs identical. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/config.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "dist/stage_mock.h"
#include "dist/sweep.h"
#include "test_dist_fake.h"
#include "testutil.h"

static int rank, size;

/* Rank r's contribution: normals spread over six decades so that the order
 * of the additions changes the float result. */
static void contribution(float *v, long n, int r, uint64_t tag)
{
    struct rng_state g;
    rng_seed(&g, 42 + tag, (uint64_t)r);
    for (long i = 0; i < n; i++) {
        static const float scale[6] = {1e-3f, 1e-2f, 1e-1f, 1.0f, 1e1f, 1e2f};
        v[i] = (float)rng_normal(&g) * scale[(i + r) % 6];
    }
}

/* The reference: every rank's data regenerated, added in rank order. */
static void reference(float *want, long n, int g, uint64_t tag)
{
    float *tmp = sn_malloc((size_t)SN_MAX(n, 1) * sizeof *tmp);
    contribution(want, n, 0, tag);
    for (int r = 1; r < g; r++) {
        contribution(tmp, n, r, tag);
        for (long i = 0; i < n; i++)
            want[i] += tmp[i];
    }
    sn_free(tmp);
}

static void test_sum_exact(struct comm *c)
{
    static const long sizes[] = {0, 1, 2, 5, 1000, 300001};
    static const long chunks[] = {COMM_CHUNK_DEFAULT, 7, 1000};
    for (size_t k = 0; k < SN_ARRAY_LEN(chunks); k++) {
        c->chunk = chunks[k];
        for (size_t j = 0; j < SN_ARRAY_LEN(sizes); j++) {
            long n = sizes[j];
            float *got = sn_malloc((size_t)SN_MAX(n, 1) * sizeof *got);
            float *want = sn_malloc((size_t)SN_MAX(n, 1) * sizeof *want);
            contribution(got, n, rank, j);
            reference(want, n, size, j);
            comm_allreduce_sum(c, got, n);
            TU_CHECK_MSG(memcmp(got, want, (size_t)n * sizeof *got) == 0,
                         "rank %d: n=%ld chunk=%ld differs from the rank-order sum", rank,
                         n, chunks[k]);
            sn_free(got);
            sn_free(want);
        }
    }
    c->chunk = COMM_CHUNK_DEFAULT;
}

/* Ranks arrive in a different order each round; the bits do not change. */
static void test_sum_timing(struct comm *c)
{
    long n = 50001;
    float *first = sn_malloc((size_t)n * sizeof *first);
    float *again = sn_malloc((size_t)n * sizeof *again);
    contribution(first, n, rank, 9);
    comm_allreduce_sum(c, first, n);
    for (int round = 0; round < 6; round++) {
        struct timespec ts = {0, 1000000L * ((rank + round) % size) * 3};
        nanosleep(&ts, NULL);
        contribution(again, n, rank, 9);
        comm_allreduce_sum(c, again, n);
        TU_CHECK_MSG(memcmp(first, again, (size_t)n * sizeof *first) == 0,
                     "rank %d: round %d differs from round 0", rank, round);
    }

    /* every rank holds the same bits */
    uint64_t h = 0xcbf29ce484222325ULL, lo, hi;
    const unsigned char *b = (const unsigned char *)first;
    for (size_t i = 0; i < (size_t)n * sizeof *first; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    TU_CHECK(lo == hi);
    sn_free(first);
    sn_free(again);
}

static void test_grad_reduce(struct comm *c)
{
    float g[3] = {1.0f + (float)rank, 0.1f * (float)rank, -2.0f};
    comm_grad_reduce(g, 3, c);
    TU_CHECK(g[0] == (1.0f + 2.0f + 3.0f) / 3.0f);
    TU_CHECK(g[1] == ((0.0f + 0.1f) + 0.2f) / 3.0f);
    TU_CHECK(g[2] == -2.0f);
    float h[1] = {5.0f};
    comm_grad_reduce(h, 1, NULL); /* no group: untouched */
    TU_CHECK(h[0] == 5.0f);
}

static void test_share_range(void)
{
    long lo, hi, next = 0;
    for (int r = 0; r < 3; r++) {
        comm_share_range(10, r, 3, &lo, &hi);
        TU_CHECK(lo == next && hi - lo >= 3 && hi - lo <= 4);
        next = hi;
    }
    TU_CHECK(next == 10);
    comm_share_range(2, 2, 3, &lo, &hi);
    TU_CHECK(lo == 1 && hi == 2);
}

/* ---------------------------------------------------------------------------
 * Data-parallel training: a group of two against a single rank */

/* Least squares on fixed data with the mean gradient of equal shares
 * reduced by comm_grad_reduce, the trainer's callback. */
static void sgd_run(struct comm *c, float *loss, int steps)
{
    enum { N = 64, D = 8 };
    static float x[N][D], y[N];
    struct rng_state g;
    rng_seed(&g, 7, 0);
    for (int i = 0; i < N; i++) {
        rng_fill_normal(&g, x[i], D, 1.0f);
        y[i] = (float)rng_uniform(&g);
    }
    float w[D] = {0};
    long lo, hi;
    comm_share_range(N, c->rank, c->size, &lo, &hi);
    for (int t = 0; t < steps; t++) {
        float grad[D + 1] = {0};
        for (long i = lo; i < hi; i++) {
            float e = -y[i];
            for (int k = 0; k < D; k++)
                e += w[k] * x[i][k];
            for (int k = 0; k < D; k++)
                grad[k] += 2 * e * x[i][k] / (float)(hi - lo);
            grad[D] += e * e / (float)(hi - lo);
        }
        comm_grad_reduce(grad, D + 1, c);
        for (int k = 0; k < D; k++)
            w[k] -= 0.05f * grad[k];
        loss[t] = grad[D];
    }
}

static void test_groups(const struct sweep *s)
{
    /* ranks 0 and 1 train together; rank 2 alone */
    MPI_Comm group;
    int color = rank < 2 ? 0 : 1;
    MPI_Comm_split(MPI_COMM_WORLD, color, rank, &group);
    struct comm c;
    comm_open_mpi(&c, group);

    enum { STEPS = 40 };
    float w[MOCK_DIM], loss[MOCK_STEPS], loss2[MOCK_STEPS], sgd[STEPS], sgd2[STEPS];
    TU_CHECK(mock_train(s, &s->units[0], group, w, loss) == SN_OK);
    TU_CHECK(mock_train(s, &s->units[0], group, w, loss2) == SN_OK);
    TU_CHECK(memcmp(loss, loss2, sizeof loss) == 0); /* repeated: the same bits */
    sgd_run(&c, sgd, STEPS);
    sgd_run(&c, sgd2, STEPS);
    TU_CHECK(memcmp(sgd, sgd2, sizeof sgd) == 0);

    /* rank 2's single-rank curves against the pair's, on rank 0 */
    if (rank == 2) {
        MPI_Send(loss, MOCK_STEPS, MPI_FLOAT, 0, 1, MPI_COMM_WORLD);
        MPI_Send(sgd, STEPS, MPI_FLOAT, 0, 2, MPI_COMM_WORLD);
    }
    if (rank == 0) {
        float one[MOCK_STEPS], one_sgd[STEPS];
        MPI_Recv(one, MOCK_STEPS, MPI_FLOAT, 2, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Recv(one_sgd, STEPS, MPI_FLOAT, 2, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        /* Two ranks add two partial sums instead of one running sum: float
         * re-association of a few ulps per step, which a short run keeps
         * far below 1e-5 relative. */
        TU_CLOSE("mock loss, 2 ranks vs 1", loss, one, MOCK_STEPS, 1e-6, 1e-5);
        TU_CLOSE("sgd loss, 2 ranks vs 1", sgd, one_sgd, STEPS, 1e-6, 1e-5);
        TU_CHECK(loss[MOCK_STEPS - 1] < loss[0]); /* it did train */
    }
    comm_close(&c);
    MPI_Comm_free(&group);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    sn_set_rank(rank, size);
    if (size != 3) {
        if (rank == 0) fprintf(stderr, "test_dist_comm: run with mpirun -n 3\n");
        MPI_Finalize();
        return 1;
    }

    struct comm c;
    comm_open_mpi(&c, MPI_COMM_WORLD);
    test_sum_exact(&c);
    test_sum_timing(&c);
    test_grad_reduce(&c);
    comm_close(&c);
    test_share_range();

    /* a multi-class unit of 2 x 11 training images (11 + 12 with fake_dataset) */
    static struct sn_config cfg;
    struct ds_dataset ds;
    struct sweep s;
    fake_dataset(&ds, "mv", 2, 11, 4);
    config_defaults(&cfg);
    SN_ASSERT(config_set(&cfg, "data.roots", "[/fake/mv]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[multi]") == SN_OK);
    SN_ASSERT(sweep_expand(&s, &cfg, &ds, 1) == SN_OK);
    test_groups(&s);
    sweep_free(&s);
    dataset_free(&ds);

    int st = tu_finish("test_dist_comm");
    MPI_Finalize();
    return st;
}
