/*
 * sched.h - running a sweep's units over MPI ranks.
 *
 * Rank 0 plans: it examines every unit folder of its shard (runstate.h),
 * keeps the units that are done and validate, and queues the rest, longest
 * first by a rough cost estimate (images times training steps), so that long
 * units start early and short ones fill the gaps.
 *
 * The ranks are split into groups of sweep.group_size consecutive ranks
 * (MPI_Comm_split); a group runs one unit at a time, training it data-
 * parallel over its communicator. Units are handed out dynamically: the root
 * of a group that is idle asks rank 0 for the next unit, reporting how the
 * previous one ended, and broadcasts the answer to its group. On rank 0 a
 * dispatcher thread answers those requests (MPI_THREAD_MULTIPLE), so rank 0
 * runs units too. It polls with a short sleep rather than blocking in
 * MPI_Recv, which would spin a core in Open MPI.
 *
 * Around each unit the group root writes RUNNING, images.tsv (the unit's
 * image selection) and config.yaml (its resolved configuration), calls the
 * unit function on every rank of the group, and writes DONE when every rank
 * succeeded and the validation callback accepts the folder, FAILED
 * otherwise. A failing unit does not stop the sweep. Rank 0 rewrites
 * index.tsv as states change and logs progress: units done, running, left.
 *
 * Shards (--shard i/n, one per job-array task) take the units whose index is
 * i modulo n; concurrent shards share one run folder.
 */
#ifndef SNARM_SCHED_H
#define SNARM_SCHED_H

#include <mpi.h>

#include "runstate.h"
#include "sweep.h"

/* The work of one unit. Every rank of the group calls it with the group's
 * communicator (the unit's configuration comes from sweep_unit_config());
 * rank 0 of the group writes the outputs into unit_dir, which already holds
 * images.tsv and config.yaml. Returns SN_OK or SN_EUSER (with sn_error). */
typedef int (*unit_fn)(const struct sweep_unit *u, const char *unit_dir, MPI_Comm group,
                       void *ctx);

struct sched_opts {
    int group_size;      /* ranks per unit (sweep.group_size) */
    int shard, n_shards; /* this job's slice: index % n_shards == shard */
    unit_fn run;
    unit_validate_fn validate; /* may be NULL: DONE and hashes only */
    void *ctx;                 /* passed to run and validate */
    double progress_every;     /* seconds between progress lines (0: each unit) */
};

struct sched_result {
    int n_units;   /* in the sweep */
    int n_shard;   /* in this shard */
    int n_skipped; /* already done before this run */
    int n_done;    /* finished by this run */
    int n_failed;  /* failed in this run */
};

/* Run the shard's pending units. Collective over world; every rank returns
 * the same status and result. SN_EUSER for a bad group size or a run folder
 * that cannot be written; failed units are counted, not returned. */
int sched_run(const struct sweep *s, const char *run_dir, const struct sched_opts *o,
              MPI_Comm world, struct sched_result *res);

/* The state of every unit as a rerun would see it (no MPI, no writes):
 * st[i] for each unit, why[i] a reason (may be NULL). Used by --dry-run and
 * by the planner. */
void sched_plan(const struct sweep *s, const char *run_dir, const struct sched_opts *o,
                struct unit_status *st, char (*why)[256]);

/* Print the plan: one line per unit with its state and, for units of other
 * shards, "(other shard)". */
void sched_print_plan(const struct sweep *s, const char *run_dir,
                      const struct sched_opts *o, FILE *out);

/* Whether unit index i belongs to the shard. */
int sched_in_shard(const struct sched_opts *o, int i);

#endif
