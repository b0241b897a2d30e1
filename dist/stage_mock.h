/*
 * stage_mock.h - a stand-in for the unit pipeline, used to test the sweep
 * machinery (`snarm run --stage-mock`, a test hook).
 *
 * It does in a few milliseconds what a unit does, with the same folder
 * contents and the same communication pattern, so that scheduling,
 * resumption, data-parallel reduction and metric collection can be tested
 * without a backbone:
 *
 *   bank.h5        /bank (n_bank x 16) float32 "features" of the bank images,
 *                  /images (n_bank x 2) int32 class and sample index
 *   checkpoint.h5  /w (16) the "decoder" after MOCK_STEPS steps of
 *                  data-parallel gradient descent on the training images
 *                  (each rank takes a contiguous share, gradients are summed
 *                  with comm_allreduce_sum), /loss (MOCK_STEPS) the loss curve
 *   maps.h5        a maps file in the schema of core/maps.h: 8 x 8 maps of
 *                  the test images, square masks on defective images
 *   metrics.csv    computed from maps.h5 with the real metrics code
 *
 * Every value is a function of the unit's configuration, its images'
 * relative paths and its seed, so two runs of a unit write the same bytes
 * (HDF5 object time stamps are switched off).
 *
 * Fault hooks for the tests (environment):
 *   SNARM_MOCK_SLEEP_MS=N   each unit sleeps N ms (units overlap in time)
 *   SNARM_MOCK_KILL=ID      the group root running unit ID writes a cut-off
 *                           maps.h5, then kills itself with SIGKILL
 *   SNARM_MOCK_FAIL=ID      unit ID returns a user error
 */
#ifndef SNARM_STAGE_MOCK_H
#define SNARM_STAGE_MOCK_H

#include <mpi.h>

#include "sweep.h"

#define MOCK_DIM 16
#define MOCK_STEPS 25
#define MOCK_SIDE 8

struct mock_ctx {
    const struct sweep *sweep;
};

/* unit_fn and unit_validate_fn of the scheduler (ctx: struct mock_ctx *). */
int mock_unit_run(const struct sweep_unit *u, const char *unit_dir, MPI_Comm group,
                  void *ctx);
int mock_unit_validate(const struct sweep_unit *u, const char *unit_dir, void *ctx);

/* The loss curve of the mock's data-parallel training of a unit over a
 * group (every rank gets it): exposed for the 1-rank versus n-rank test. */
int mock_train(const struct sweep *s, const struct sweep_unit *u, MPI_Comm group,
               float *w, float *loss);

#endif
