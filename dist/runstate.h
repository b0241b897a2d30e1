/*
 * runstate.h - the run folder: what is done, what is not, and how a rerun
 * tells the difference.
 *
 * Layout under run.out_dir:
 *
 *   config.yaml       the resolved experiment; a rerun (--resume) must match
 *   index.tsv         one line per unit: id, its parts, state, group,
 *                     seconds; rewritten atomically by rank 0 (for people:
 *                     the unit folders, not this file, are the truth)
 *   grid.tsv          g<i> and the switches of each grid point
 *   units/<unit id>/  one folder per unit (ids contain slashes: nested)
 *   tables/           the collected metric tables
 *
 * A unit folder holds the unit's outputs (images.tsv, config.yaml, bank,
 * checkpoint, maps, metrics, ...) and at most these markers:
 *
 *   RUNNING  written when a group starts the unit (host, pid, rank);
 *   FAILED   the unit's error message;
 *   DONE     written last, atomically: every other file of the folder with
 *            its size and a 64-bit FNV-1a hash of its bytes.
 *
 * A unit counts as done only when DONE names the unit, every file it lists
 * is there with that size and hash, and the caller's validation callback
 * accepts the folder. Anything else (a folder without DONE, a file cut short
 * or changed, a leftover "*.tmp.*") is partial and the unit is redone. The
 * markers hold nothing that depends on time or place, so a finished unit's
 * folder is byte-for-byte the same whichever rank ran it.
 */
#ifndef SNARM_RUNSTATE_H
#define SNARM_RUNSTATE_H

#include <stdint.h>

#include "sweep.h"

#define RUNSTATE_DONE "DONE"
#define RUNSTATE_RUNNING "RUNNING"
#define RUNSTATE_FAILED "FAILED"

enum unit_state { UNIT_PENDING, UNIT_RUNNING, UNIT_DONE, UNIT_FAILED };

/* What the index shows of a unit. */
struct unit_status {
    enum unit_state state;
    int group;      /* the group that ran it in this session, else -1 */
    double seconds; /* its wall time (an earlier session's from the index), else < 0 */
};

/* Whether a finished unit's outputs read back (opens its files, checks
 * shapes); SN_OK or SN_EUSER with the reason. ctx is the caller's. */
typedef int (*unit_validate_fn)(const struct sweep_unit *u, const char *unit_dir,
                                void *ctx);

const char *unit_state_name(enum unit_state s);

/* Create the run folder and store config_text as config.yaml. A folder
 * already holding config.yaml is continued only with resume set and the same
 * experiment (runstate_check_config); otherwise a user error says what to do. */
int runstate_open(const char *run_dir, const char *config_text, int resume);

/* SN_OK when run_dir holds no config.yaml or one that describes the same
 * experiment as config_text: equal apart from comment lines and the keys
 * that only say how the run executes (run.threads, run.log). Otherwise a
 * user error naming the first key that differs and both of its values. */
int runstate_check_config(const char *run_dir, const char *config_text);

/* run_dir/units/<id>. */
int runstate_unit_dir(const char *run_dir, const struct sweep_unit *u, char *out,
                      size_t cap);

/* Examine a unit folder: UNIT_DONE (valid), UNIT_FAILED (FAILED marker, no
 * valid DONE), UNIT_RUNNING (RUNNING marker, no valid DONE: running
 * elsewhere or killed) or UNIT_PENDING (nothing, or partial). why receives a
 * one-line reason for anything but an absent folder (may be NULL). */
enum unit_state runstate_unit_check(const char *dir, const struct sweep_unit *u,
                                    unit_validate_fn validate, void *ctx, char *why,
                                    size_t cap);

/* Before a unit runs: create the folder, drop old markers and temporary
 * leftovers, write RUNNING naming who. Outputs of an earlier partial attempt
 * stay for the unit to overwrite or reuse (a checkpoint it validates). */
int runstate_unit_begin(const char *dir, const char *who);

/* After the unit succeeded: write DONE over the folder's files, then drop
 * RUNNING. */
int runstate_unit_finish(const char *dir, const struct sweep_unit *u);

/* After the unit failed: write FAILED with the message, drop RUNNING. */
int runstate_unit_fail(const char *dir, const char *message);

/* Units that are done and have no time in st take the seconds that the
 * run folder's index.tsv gives them, so that a resumed run keeps the times
 * of the units an earlier session finished. A missing or unreadable index
 * changes nothing. */
void runstate_keep_seconds(const char *run_dir, const struct sweep *s,
                           struct unit_status *st);

/* Rewrite index.tsv (and grid.tsv) atomically from st[0..s->n_units-1]. */
int runstate_write_index(const char *run_dir, const struct sweep *s,
                         const struct unit_status *st);

/* 64-bit FNV-1a of a file's bytes and its size; SN_EUSER if unreadable. */
int runstate_hash_file(const char *path, uint64_t *hash, long *size);

#endif
