/*
 * unit.h - one work unit of a sweep, end to end: bank, training (SNARM),
 * prediction into a maps file, and the unit's metrics.
 *
 * A unit folder holds, when the unit is done:
 *   images.tsv    which images went into the bank, training and test
 *   bank.h5       the coreset memory bank (with the kept indices)
 *   checkpoint.h5 the trained decoder (SNARM only)
 *   maps.h5       anomaly maps, masks, scores (core/maps.h)
 *   metrics.csv   per-class P-AP, PRO, P-AUROC, I-AUROC and their mean
 *   timing.tsv    seconds per stage and images per second
 * Every file is written atomically. The feature stores live in the shared
 * cache folder, not in the unit.
 */
#ifndef SNARM_UNIT_H
#define SNARM_UNIT_H

#include <mpi.h>

struct sweep;
struct sweep_unit;

struct unit_ctx {
    const struct sweep *sweep;
    char cache_dir[1024]; /* feature stores shared by all units */
};

/* The sweep's unit callback (ctx is a struct unit_ctx *). Every rank of the
 * group calls it; the group trains together and its rank 0 writes. */
int unit_run(const struct sweep_unit *u, const char *unit_dir, MPI_Comm group,
             void *ctx);

/* Whether a finished unit's outputs exist and read back (for resumption). */
int unit_outputs_valid(const struct sweep_unit *u, const char *unit_dir, void *ctx);

#endif
