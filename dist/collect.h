/*
 * collect.h - one metric table per setting and dataset for a whole sweep.
 *
 * Every finished unit holds metrics.csv (core/metrics.h: one row per
 * evaluated class, then "mean"). collect_tables() gathers them into
 *
 *   tables/<dataset>_<setting>.tsv  method, grid, seed, class, P-AP, PRO,
 *                                   P-AUROC, I-AUROC (percent, paper order);
 *                                   per (method, grid point, seed) the class
 *                                   rows, then their mean (NaN left out)
 *   tables/<dataset>_<setting>.md   the same as Markdown tables
 *
 * A single- or cross-class sweep contributes one class per unit; multi-class
 * and few-shot units contribute every class. Units that are not done are
 * listed as "# missing" lines and their group's mean row is labelled
 * "mean (partial)". The grid points' switches are in the run's grid.tsv.
 */
#ifndef SNARM_COLLECT_H
#define SNARM_COLLECT_H

#include "sweep.h"

/* Write the tables; *n_missing receives the number of units without
 * metrics. SN_EUSER if a metrics.csv cannot be read or a table written. */
int collect_tables(const struct sweep *s, const char *run_dir, int *n_missing);

#endif
